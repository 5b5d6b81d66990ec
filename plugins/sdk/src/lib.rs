//! Guest-side kit for mailhost protocol plugins.
//!
//! A plugin is a `cdylib` built for `wasm32-wasip2`. It implements
//! [`Guest`] (the session entry point) and names its type with
//! [`export!`]:
//!
//! ```no_run
//! use mailhost_sdk::{Connection, Guest, Session};
//!
//! struct Hello;
//!
//! impl Guest for Hello {
//!     fn run(conn: Connection) {
//!         let mut session = Session::new(conn);
//!         let _ = session.write_all(b"hello\r\n");
//!     }
//! }
//!
//! mailhost_sdk::export!(Hello);
//! # fn main() {}
//! ```
//!
//! The bindings come from the `all-roles` world: a built component imports
//! only the interfaces it calls, and the host checks those against the role
//! of the listener it is loaded for. Use `accounts` and `mailbox` in a
//! mailbox-role plugin, `accounts` and `delivery` in a submission-role one.
//!
//! The kit needs only `core` and `alloc`. A plugin that needs no more can
//! leave out the standard library, whose printing, environment and exit
//! support makes every component import thirteen WASI interfaces it never
//! calls; each import costs the host work at every instantiation. Such a
//! plugin starts with `#![cfg_attr(target_arch = "wasm32", no_std)]` and
//! `extern crate alloc;`, and calls [`no_std_runtime!`] once for the
//! allocator and panic handler the standard library would have supplied.

#![cfg_attr(not(test), no_std)]

extern crate alloc;

pub mod base64;
#[cfg(target_arch = "wasm32")]
pub mod runtime;
pub mod sasl;
mod session;

pub use session::{Line, ReadError, Session};

/// Raw bindings generated from the WIT package in `wit/`.
///
/// The generator puts its `std::error::Error` impls behind a `std`
/// feature, which this crate leaves out to stay `no_std`; the error
/// types implement `core::error::Error` (the same trait) below instead.
#[allow(unexpected_cfgs)]
pub mod bindings {
    wit_bindgen::generate!({
        world: "all-roles",
        path: "../../wit",
        std_feature,
        pub_export_macro: true,
        export_macro_name: "export",
        default_bindings_module: "mailhost_sdk::bindings",
    });
}

pub use bindings::export;
pub use bindings::exports::mailhost::plugin::handler::Guest;
pub use bindings::mailhost::plugin::connection::{
    Connection, IoError, SessionInfo, TlsError, TlsInfo,
};
pub use bindings::mailhost::plugin::{accounts, delivery, mailbox, settings};

/// Log a record through the host, which adds the connection's fields.
pub fn log(level: bindings::mailhost::plugin::log::Level, message: &str) {
    bindings::mailhost::plugin::log::write(level, message);
}

pub use bindings::mailhost::plugin::log::Level;

impl core::error::Error for IoError {}
impl core::error::Error for TlsError {}
impl core::error::Error for accounts::AuthError {}
impl core::error::Error for delivery::DeliveryError {}
impl core::error::Error for mailbox::StoreError {}

/// The listener setting `key` parsed as `T`, or `default` when it is
/// missing or does not parse.
pub fn setting_or<T: core::str::FromStr>(key: &str, default: T) -> T {
    settings::get(key)
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

/// Install the allocator and panic handler of a `#![no_std]` plugin.
/// Call it once, at the top level of the plugin crate:
///
/// ```
/// #![cfg_attr(target_arch = "wasm32", no_std)]
/// extern crate alloc;
///
/// mailhost_sdk::no_std_runtime!();
/// ```
///
/// Off wasm (a plugin's unit tests on the build machine) it expands to
/// nothing and the standard library supplies both.
#[macro_export]
macro_rules! no_std_runtime {
    () => {
        #[cfg(target_arch = "wasm32")]
        #[global_allocator]
        static MAILHOST_ALLOCATOR: $crate::runtime::Allocator =
            $crate::runtime::Allocator::new();

        #[cfg(target_arch = "wasm32")]
        #[panic_handler]
        fn mailhost_panic(info: &::core::panic::PanicInfo<'_>) -> ! {
            $crate::runtime::panicked(info)
        }

        /// # Safety
        ///
        /// As the canonical ABI's `cabi_realloc`.
        #[cfg(target_arch = "wasm32")]
        #[unsafe(no_mangle)]
        unsafe extern "C" fn cabi_realloc(
            old: *mut u8,
            old_len: usize,
            align: usize,
            new_len: usize,
        ) -> *mut u8 {
            // SAFETY: the host holds to the canonical ABI's contract.
            unsafe {
                $crate::runtime::canonical_realloc(old, old_len, align, new_len)
            }
        }

        /// # Safety
        ///
        /// As C's `memcmp`.
        #[cfg(target_arch = "wasm32")]
        #[unsafe(no_mangle)]
        unsafe extern "C" fn memcmp(
            left: *const u8,
            right: *const u8,
            len: usize,
        ) -> i32 {
            // SAFETY: the caller holds to `memcmp`'s contract.
            unsafe { $crate::runtime::compare_bytes(left, right, len) }
        }
    };
}
