//! What a `#![no_std]` plugin needs from outside `core` and `alloc`: a
//! memory allocator and a panic handler. [`no_std_runtime!`] installs
//! both in the plugin crate; this module holds their workings.
//!
//! [`no_std_runtime!`]: crate::no_std_runtime

use core::alloc::{GlobalAlloc, Layout};
use core::cell::{Cell, UnsafeCell};
use core::fmt::Write;
use core::ptr;
use core::sync::atomic::{AtomicBool, Ordering};

use dlmalloc::Dlmalloc;

use crate::Level;

/// Granularity of the allocator's requests for fresh memory, in bytes.
/// Small, so a session that needs little is served from the room the
/// linker leaves after the data at the end of the initial memory, and
/// never grows its memory (which costs the host two `mprotect` calls).
const HEAP_GRANULARITY: usize = 4 << 10;

/// Bytes in a wasm page, the unit `memory.grow` counts in.
const WASM_PAGE: usize = 64 << 10;

/// The plugin's allocator: dlmalloc, the algorithm the C library and the
/// standard library use on wasm, over [`LinearMemory`].
pub struct Allocator(UnsafeCell<Dlmalloc<LinearMemory>>);

// SAFETY: `wasm32-wasip2` has no threads; an instance runs one session
// on one thread, so the allocator is never entered twice at once.
unsafe impl Sync for Allocator {}

impl Allocator {
    #[allow(clippy::new_without_default)]
    pub const fn new() -> Self {
        let mut heap = Dlmalloc::new_with_allocator(LinearMemory::new());
        heap.set_granularity(HEAP_GRANULARITY);
        Allocator(UnsafeCell::new(heap))
    }

    /// The allocator's state. Sound only because nothing runs beside the
    /// caller (see the `Sync` impl) and no call below re-enters.
    #[allow(clippy::mut_from_ref)]
    fn heap(&self) -> &mut Dlmalloc<LinearMemory> {
        // SAFETY: see above.
        unsafe { &mut *self.0.get() }
    }
}

// SAFETY: dlmalloc honours size and alignment; the methods pass the
// caller's layout through unchanged.
unsafe impl GlobalAlloc for Allocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as `GlobalAlloc::alloc`.
        unsafe { self.heap().malloc(layout.size(), layout.align()) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as `GlobalAlloc::alloc_zeroed`.
        unsafe { self.heap().calloc(layout.size(), layout.align()) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from this allocator with `layout`.
        unsafe { self.heap().free(ptr, layout.size(), layout.align()) }
    }

    unsafe fn realloc(
        &self,
        ptr: *mut u8,
        layout: Layout,
        new_size: usize,
    ) -> *mut u8 {
        // SAFETY: `ptr` came from this allocator with `layout`.
        unsafe {
            self.heap()
                .realloc(ptr, layout.size(), layout.align(), new_size)
        }
    }
}

unsafe extern "C" {
    /// Where the linker ends the stack and data: the heap starts here.
    static __heap_base: u8;
}

/// Fresh memory for dlmalloc, handed out like `sbrk`: first the room
/// between `__heap_base` and the end of the memory at the first request
/// (the initial memory: nothing else in a plugin grows it), then pages
/// added with `memory.grow`. Every piece follows the last, so dlmalloc
/// merges them into one segment. Nothing is ever given back: the
/// instance, and its memory, end with the session.
pub struct LinearMemory {
    /// The next byte to hand out; zero until the first request.
    next: Cell<usize>,
    /// The end of the memory as last seen.
    end: Cell<usize>,
}

impl LinearMemory {
    const fn new() -> Self {
        LinearMemory {
            next: Cell::new(0),
            end: Cell::new(0),
        }
    }
}

// SAFETY: regions handed out are fresh, never handed out twice, and
// zero (untouched room of the initial memory, or newly grown pages).
unsafe impl dlmalloc::Allocator for LinearMemory {
    fn alloc(&self, size: usize) -> (*mut u8, usize, u32) {
        if self.next.get() == 0 {
            let base = (&raw const __heap_base) as usize;
            self.next.set(base.next_multiple_of(HEAP_GRANULARITY));
            self.end.set(core::arch::wasm32::memory_size(0) * WASM_PAGE);
        }

        loop {
            let start = self.next.get();
            let Some(stop) = start.checked_add(size) else {
                return (ptr::null_mut(), 0, 0);
            };
            if stop <= self.end.get() {
                self.next.set(stop);
                return (start as *mut u8, size, 0);
            }

            let pages = (stop - self.end.get()).div_ceil(WASM_PAGE);
            let previous = core::arch::wasm32::memory_grow(0, pages);
            if previous == usize::MAX {
                return (ptr::null_mut(), 0, 0);
            }
            // Something else grew the memory since: carry on from the
            // new pages, leaving the rest of the old room unused.
            if previous * WASM_PAGE != self.end.get() {
                self.next.set(previous * WASM_PAGE);
            }
            self.end.set((previous + pages) * WASM_PAGE);
        }
    }

    fn remap(&self, _: *mut u8, _: usize, _: usize, _: bool) -> *mut u8 {
        ptr::null_mut()
    }

    fn free_part(&self, _: *mut u8, _: usize, _: usize) -> bool {
        false
    }

    fn free(&self, _: *mut u8, _: usize) -> bool {
        false
    }

    fn can_release_part(&self, _: u32) -> bool {
        false
    }

    fn allocates_zeros(&self) -> bool {
        true
    }

    fn page_size(&self) -> usize {
        WASM_PAGE
    }
}

/// Longest panic message logged, in bytes; the rest is cut. The message
/// is formatted without allocating, since the panic may be an
/// allocation failure.
pub const PANIC_MESSAGE_LIMIT: usize = 512;

/// Set by the first panic, so a panic while reporting one traps at once.
static PANICKING: AtomicBool = AtomicBool::new(false);

/// Log the panic through the host at error level, then trap. The host
/// ends the session with the listener's error reply, as it does for a
/// standard-library plugin that panics.
pub fn panicked(info: &core::panic::PanicInfo<'_>) -> ! {
    if !PANICKING.swap(true, Ordering::Relaxed) {
        let mut message = FixedText::new();
        let _ = match info.location() {
            Some(at) => write!(message, "plugin panicked at {at}: "),
            None => write!(message, "plugin panicked: "),
        };
        let _ = write!(message, "{}", info.message());
        crate::log(Level::Error, message.as_str());
    }
    core::arch::wasm32::unreachable()
}

/// `cabi_realloc` of the canonical ABI: the host asks the plugin for
/// memory to put a call's results in. A zero `old_len` is a fresh
/// allocation; a zero `new_len` gets a well-aligned dangling pointer.
/// Out of memory, or a nonsensical layout, traps, which ends the session
/// with the error reply. It cannot be logged from here: the component
/// model forbids calls to the host while `cabi_realloc` runs, so the
/// host's own record of the trap is what tells.
///
/// # Safety
///
/// `old` with `old_len` and `align` must describe a live allocation made
/// by this function, or `old_len` must be zero.
pub unsafe fn canonical_realloc(
    old: *mut u8,
    old_len: usize,
    align: usize,
    new_len: usize,
) -> *mut u8 {
    use alloc::alloc::Layout;

    if new_len == 0 {
        return align as *mut u8;
    }
    let Ok(wanted) = Layout::from_size_align(new_len, align) else {
        core::arch::wasm32::unreachable()
    };

    let new = if old_len == 0 {
        // SAFETY: `wanted` has a nonzero size.
        unsafe { alloc::alloc::alloc(wanted) }
    } else {
        // SAFETY: the caller vouches that `old_len` and `align` describe
        // `old`, and `align` is valid, as `wanted` shows.
        unsafe {
            let old_layout = Layout::from_size_align_unchecked(old_len, align);
            alloc::alloc::realloc(old, old_layout, new_len)
        }
    };
    if new.is_null() {
        core::arch::wasm32::unreachable()
    }
    new
}

/// `memcmp` of the C library, which a `no_std` build has not got and
/// the compiler calls to compare byte strings.
///
/// # Safety
///
/// `left` and `right` must each be valid for reads of `len` bytes.
pub unsafe fn compare_bytes(
    left: *const u8,
    right: *const u8,
    len: usize,
) -> i32 {
    for offset in 0..len {
        // SAFETY: the caller vouches for `len` readable bytes at each.
        let (a, b) = unsafe { (*left.add(offset), *right.add(offset)) };
        if a != b {
            return i32::from(a) - i32::from(b);
        }
    }
    0
}

/// Text in a fixed buffer: writes past the end are cut at a character
/// boundary and reported as an error.
struct FixedText {
    bytes: [u8; PANIC_MESSAGE_LIMIT],
    len: usize,
}

impl FixedText {
    fn new() -> Self {
        FixedText {
            bytes: [0; PANIC_MESSAGE_LIMIT],
            len: 0,
        }
    }

    fn as_str(&self) -> &str {
        // Only whole characters are ever copied in.
        core::str::from_utf8(&self.bytes[..self.len]).unwrap_or_default()
    }
}

impl Write for FixedText {
    fn write_str(&mut self, text: &str) -> core::fmt::Result {
        let room = PANIC_MESSAGE_LIMIT - self.len;
        let mut take = text.len().min(room);
        while !text.is_char_boundary(take) {
            take -= 1;
        }

        self.bytes[self.len..self.len + take]
            .copy_from_slice(&text.as_bytes()[..take]);
        self.len += take;
        if take < text.len() {
            return Err(core::fmt::Error);
        }
        Ok(())
    }
}
