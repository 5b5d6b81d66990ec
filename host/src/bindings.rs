//! Host-side bindings generated from the WIT package in `wit/`.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "all-roles",
    // Calls that never wait are synchronous: an async host call costs a
    // boxed future and a poll on every call, and these run on every line.
    imports: {
        default: async | trappable,
        "mailhost:plugin/connection.max-read": trappable,
        "mailhost:plugin/connection.max-write": trappable,
        "mailhost:plugin/connection.[method]connection.buffered": trappable,
        "mailhost:plugin/connection.[method]connection.info": trappable,
        "mailhost:plugin/log.write": trappable,
        "mailhost:plugin/settings.get": trappable,
        "mailhost:plugin/settings.all": trappable,
    },
    exports: { default: async },
    with: {
        "mailhost:plugin/connection.connection": crate::conn::ConnectionHandle,
        "mailhost:plugin/accounts.identity": crate::store_glue::IdentityHandle,
        "mailhost:plugin/delivery.transaction": crate::store_glue::TransactionHandle,
        "mailhost:plugin/mailbox.account": crate::store_glue::AccountHandle,
        "mailhost:plugin/mailbox.appender": crate::store_glue::AppenderHandle,
        "mailhost:plugin/mailbox.folder": crate::store_glue::FolderHandle,
    },
});

pub use mailhost::plugin::connection::{
    IoError, SessionInfo, TlsError, TlsInfo,
};
