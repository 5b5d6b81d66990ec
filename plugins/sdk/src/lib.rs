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

pub mod base64;
pub mod sasl;
mod session;

pub use session::{Line, ReadError, Session};

/// Raw bindings generated from the WIT package in `wit/`.
pub mod bindings {
    wit_bindgen::generate!({
        world: "all-roles",
        path: "../../wit",
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

/// The listener setting `key` parsed as `T`, or `default` when it is
/// missing or does not parse.
pub fn setting_or<T: std::str::FromStr>(key: &str, default: T) -> T {
    settings::get(key)
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}
