//! Every hard limit of the IMAP session in one place. Each one bounds what
//! a hostile client can make the plugin hold in memory or do per command.

/// Longest command line (one line between literals), in bytes. RFC 7162
/// asks for at least 8192; large UID sets need far more, so we allow 256
/// KiB.
pub const MAX_LINE: u32 = 256 * 1024;

/// Largest literal accepted inside an ordinary command (not the message
/// of an APPEND), in bytes.
pub const MAX_LITERAL: u64 = 64 * 1024;

/// Largest non-synchronising literal LITERAL- allows (RFC 7888 section 5).
pub const LITERAL_MINUS_MAX: u64 = 4096;

/// A refused non-synchronising literal up to this size is read and
/// dropped so the session can go on; a larger one ends the session,
/// since skipping it would let one client hold the connection busy.
pub const MAX_DISCARD: u64 = 256 * 1024;

/// Most bytes one whole command may take, lines and literals together.
pub const MAX_COMMAND: usize = 1024 * 1024;

/// Longest tag we echo back.
pub const MAX_TAG: usize = 64;

/// Failed or malformed commands in a row before we hang up.
pub const MAX_BAD_COMMANDS: u32 = 20;

/// Failed LOGIN/AUTHENTICATE attempts per session before we hang up.
/// The host slows each failure and refuses more after a few anyway.
pub const MAX_AUTH_FAILURES: u32 = 3;

/// Bytes asked of `folder.read` per call.
pub const READ_CHUNK: u32 = 64 * 1024;

/// Queued output that forces a flush while streaming a big literal.
pub const OUTPUT_HIGH_WATER: usize = 256 * 1024;

/// Header bytes of one MIME part kept for parsing; the rest is skipped.
pub const MAX_PART_HEADER: usize = 64 * 1024;

/// Deepest MIME nesting parsed; deeper parts are treated as opaque text.
pub const MAX_MIME_DEPTH: usize = 32;

/// Most MIME parts parsed per message; later ones fold into their parent.
pub const MAX_MIME_PARTS: usize = 1000;

/// Line prefix kept while scanning bodies for boundaries. A boundary is at
/// most 70 characters (RFC 2046 5.1.1) plus dashes and white space.
pub const MAX_BOUNDARY_LINE: usize = 200;

/// Nesting of parentheses and NOT/OR in a SEARCH, or of lists in any
/// command.
pub const MAX_NESTING: usize = 32;

/// Keepalive interval during IDLE, in milliseconds (Dovecot's 2 minutes).
pub const IDLE_KEEPALIVE_MS: u32 = 120_000;

/// How often IDLE looks at the mailbox by itself, in milliseconds. The
/// store wakes IDLE at once for changes made through the host (deliveries,
/// appends, other sessions); this catches mail an outside program drops
/// into the Maildir, which the host is not told about.
pub const IDLE_POLL_MS: u32 = 2_000;

/// How old the mailbox snapshot may grow before a command rescans the
/// folder although the host reported no change, in milliseconds. The
/// host reports changes made through it at once; this bounds how late
/// a command notices mail an outside program drops into the Maildir.
/// NOOP, CHECK and IDLE always rescan.
pub const MAX_SNAPSHOT_AGE_MS: u64 = 2_000;

/// Longest IDLE before we log the client out (RFC 2177 suggests clients
/// re-issue IDLE every 29 minutes; servers may drop them after 30).
pub const MAX_IDLE_MS: u64 = 30 * 60 * 1000;

/// Most structures kept in the per-session BODYSTRUCTURE cache.
pub const STRUCTURE_CACHE: usize = 64;

/// Longest SEARCH string, in bytes. Matching costs text × needle steps,
/// so an unbounded needle would let one command burn the CPU slice.
pub const MAX_SEARCH_STRING: usize = 1024;

/// Longest LIST pattern, in bytes (matching costs pattern × name steps).
pub const MAX_LIST_PATTERN: usize = 1024;

/// Keywords (user flags) in one STORE or APPEND.
pub const MAX_FLAGS: usize = 64;

/// Longest SASL response line, in bytes.
pub const MAX_SASL_LINE: u32 = 16 * 1024;
