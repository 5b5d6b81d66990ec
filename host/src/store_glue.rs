//! The store interfaces (`accounts`, `delivery`, `mailbox`) over the
//! Maildir store: capability handles a plugin holds, each scoped to what
//! its role and its login allow.

/// Proof of one successful login.
pub struct IdentityHandle;

/// A message being delivered.
pub struct TransactionHandle;

/// One account's mailboxes.
pub struct AccountHandle;

/// A message being appended.
pub struct AppenderHandle;

/// An open folder.
pub struct FolderHandle;

/// What a session may reach of the store.
#[derive(Clone)]
pub struct StoreCtx;

/// The store shared by every listener.
pub struct StoreRoot;

impl StoreRoot {
    /// The capabilities a listener's sessions get.
    pub fn for_listener(&self, _listener: &crate::config::ListenerConfig) -> StoreCtx {
        StoreCtx
    }
}

/// Open the store a config names, if it has accounts.
pub fn open(_config: &crate::config::Config) -> anyhow::Result<Option<StoreRoot>> {
    // TODO(#3): open the Maildir store and the accounts file.
    Ok(None)
}
