//! Host-side bindings generated from the WIT package in `wit/`.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "all-roles",
    imports: { default: async | trappable },
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
