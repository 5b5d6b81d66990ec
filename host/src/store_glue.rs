//! The store interfaces (`accounts`, `delivery`, `mailbox`) over the
//! Maildir store: capability handles a plugin holds, each scoped to what
//! its role and its login allow.
//!
//! Store calls touch the disk, so they run on tokio's blocking pool: the
//! value a handle owns moves into the blocking task and back, and the
//! session's fiber sleeps meanwhile.

use std::sync::{Arc, RwLock};
use std::time::Instant;

use anyhow::Context;
use mailhost_store::{Accounts, Delivery, Folder, LoginThrottle, Store};
use wasmtime::component::Resource;

use crate::bindings::IoError;
use crate::bindings::mailhost::plugin::{accounts, delivery, mailbox};
use crate::config::{Config, ListenerConfig};
use crate::session::SessionState;

/// Password attempts one session may make before every further attempt
/// is refused outright.
const MAX_LOGIN_ATTEMPTS: u32 = 5;

/// Proof of one successful login.
pub struct IdentityHandle(mailhost_store::Identity);

/// A message being delivered; `None` while a blocking call holds it.
pub struct TransactionHandle(Option<Delivery>);

/// One account's mailboxes.
pub struct AccountHandle(Arc<mailhost_store::Account>);

/// A message being appended; `None` while a blocking call holds it.
pub struct AppenderHandle(Option<mailhost_store::Appender>);

/// An open folder; `None` while a blocking call holds it.
pub struct FolderHandle {
    folder: Option<Folder>,
    /// The store's change counter when this session last looked, so a
    /// change between `refresh` and `wait` is not missed.
    seen_generation: u64,
}

/// The store shared by every listener.
pub struct StoreRoot {
    store: Arc<Store>,
    accounts: Arc<RwLock<Arc<Accounts>>>,
    throttle: Arc<LoginThrottle>,
}

impl StoreRoot {
    /// Take the accounts (users, aliases, domains) `fresh` loaded: a
    /// config reload changes who may log in and what is deliverable
    /// without reopening the store. Sessions logged in stay logged in.
    pub fn adopt_accounts(&self, fresh: &StoreRoot) {
        let accounts = fresh.accounts.read().unwrap().clone();
        *self.accounts.write().unwrap() = accounts;
    }

    /// The capabilities a listener's sessions get.
    pub fn for_listener(&self, listener: &ListenerConfig) -> StoreCtx {
        StoreCtx {
            store: self.store.clone(),
            accounts: self.accounts.clone(),
            throttle: self.throttle.clone(),
            max_message_size: listener.max_message_size,
            login_attempts: 0,
            logged_in: false,
        }
    }
}

/// Open the store and the accounts a config names, if it has accounts.
/// Errors name the file and line at fault.
pub fn open(config: &Config) -> anyhow::Result<Option<StoreRoot>> {
    let Some(accounts) = &config.accounts else {
        return Ok(None);
    };

    let loaded = Accounts::load(
        &accounts.users_file,
        accounts.aliases_file.as_deref(),
        &accounts.domains,
    )?;
    std::fs::create_dir_all(&config.data_dir).with_context(|| {
        format!("failed to create data-dir `{}`", config.data_dir.display())
    })?;
    let store = Store::open(&config.data_dir).map_err(|err| {
        anyhow::anyhow!(
            "failed to open the store in `{}`: {err}",
            config.data_dir.display()
        )
    })?;

    Ok(Some(StoreRoot {
        store: Arc::new(store),
        accounts: Arc::new(RwLock::new(Arc::new(loaded))),
        throttle: Arc::new(LoginThrottle::new()),
    }))
}

/// What one session may reach of the store.
#[derive(Clone)]
pub struct StoreCtx {
    store: Arc<Store>,
    accounts: Arc<RwLock<Arc<Accounts>>>,
    throttle: Arc<LoginThrottle>,
    max_message_size: u64,
    login_attempts: u32,
    logged_in: bool,
}

impl StoreCtx {
    fn accounts(&self) -> Arc<Accounts> {
        self.accounts.read().unwrap().clone()
    }
}

/// The address a recipient means: the bare `postmaster` that every SMTP
/// server must accept (RFC 5321 4.5.1) is the first local domain's.
fn recipient_address(accounts: &Accounts, address: &str) -> String {
    match accounts.domains().first() {
        Some(domain) if address.eq_ignore_ascii_case("postmaster") => {
            format!("postmaster@{domain}")
        }
        _ => address.to_owned(),
    }
}

/// Run `work` on `value` in the blocking pool and hand both back.
async fn blocking<T, R>(
    mut value: T,
    work: impl FnOnce(&mut T) -> R + Send + 'static,
) -> wasmtime::Result<(T, R)>
where
    T: Send + 'static,
    R: Send + 'static,
{
    let joined = tokio::task::spawn_blocking(move || {
        let result = work(&mut value);
        (value, result)
    })
    .await;
    joined.map_err(|err| wasmtime::format_err!("store task failed: {err}"))
}

impl SessionState {
    fn store_ctx(&mut self) -> wasmtime::Result<&mut StoreCtx> {
        // Unreachable through the linker: store interfaces are linked only
        // for roles whose listeners have a store.
        self.store
            .as_mut()
            .ok_or_else(|| wasmtime::format_err!("no store for this listener"))
    }
}

fn store_error(err: mailhost_store::StoreError) -> mailbox::StoreError {
    use mailhost_store::StoreError as E;
    match err {
        E::NotFound => mailbox::StoreError::NotFound,
        E::AlreadyExists => mailbox::StoreError::AlreadyExists,
        E::InvalidName => mailbox::StoreError::InvalidName,
        E::InUse => mailbox::StoreError::InUse,
        E::TooLarge => mailbox::StoreError::TooLarge,
        E::ReadOnly => mailbox::StoreError::ReadOnly,
        E::InvalidArgument(why) => {
            tracing::debug!(cause = %why, "store call refused");
            mailbox::StoreError::InvalidArgument
        }
        E::Temporary(why) => {
            tracing::warn!(cause = %why, "store failure");
            mailbox::StoreError::TemporaryFailure
        }
    }
}

fn delivery_error(
    err: mailhost_store::DeliveryError,
) -> delivery::DeliveryError {
    use mailhost_store::DeliveryError as E;
    match err {
        E::UnknownUser => delivery::DeliveryError::UnknownUser,
        E::TooLarge => delivery::DeliveryError::TooLarge,
        E::InvalidArgument(why) => {
            tracing::debug!(cause = %why, "delivery refused");
            delivery::DeliveryError::InvalidArgument
        }
        E::Temporary(why) => {
            tracing::warn!(cause = %why, "delivery failure");
            delivery::DeliveryError::TemporaryFailure
        }
    }
}

// ---- accounts -------------------------------------------------------

impl accounts::Host for SessionState {
    async fn authenticate(
        &mut self,
        username: String,
        password: String,
    ) -> wasmtime::Result<Result<Resource<IdentityHandle>, accounts::AuthError>>
    {
        let plaintext_ok = self.session_info().plaintext_auth_allowed;
        let peer = self.facts.peer.ip();
        let ctx = self.store_ctx()?;

        if ctx.logged_in || ctx.login_attempts >= MAX_LOGIN_ATTEMPTS {
            return Ok(Err(accounts::AuthError::NotAllowed));
        }
        if !plaintext_ok {
            tracing::info!(user = %username, "login refused: plaintext without TLS");
            return Ok(Err(accounts::AuthError::PlaintextRefused));
        }
        ctx.login_attempts += 1;

        // Password hashes are slow on purpose; keep them off the runtime.
        let accounts = ctx.accounts();
        let user = username.clone();
        let (_, verdict) =
            blocking((), move |_| accounts.verify(&user, &password)).await?;
        let ctx = self.store_ctx()?;
        match verdict {
            Ok(identity) => {
                ctx.throttle.success(&identity.name);
                ctx.logged_in = true;
                tracing::info!(user = %identity.name, "login");
                let handle = self.table.push(IdentityHandle(identity))?;
                Ok(Ok(handle))
            }
            Err(mailhost_store::AuthError::InvalidCredentials) => {
                let delay =
                    ctx.throttle.failure(peer, &username, Instant::now());
                tracing::warn!(
                    user = %username,
                    delay_ms = delay.as_millis() as u64,
                    "login failed"
                );
                tokio::time::sleep(delay).await;
                Ok(Err(accounts::AuthError::InvalidCredentials))
            }
            Err(mailhost_store::AuthError::Temporary(why)) => {
                tracing::warn!(cause = %why, "login check failed");
                Ok(Err(accounts::AuthError::TemporaryFailure))
            }
        }
    }
}

impl accounts::HostIdentity for SessionState {
    async fn name(
        &mut self,
        who: Resource<IdentityHandle>,
    ) -> wasmtime::Result<String> {
        Ok(self.table.get(&who)?.0.name.clone())
    }

    async fn addresses(
        &mut self,
        who: Resource<IdentityHandle>,
    ) -> wasmtime::Result<Vec<String>> {
        Ok(self.table.get(&who)?.0.addresses.clone())
    }

    async fn drop(
        &mut self,
        who: Resource<IdentityHandle>,
    ) -> wasmtime::Result<()> {
        self.table.delete(who)?;
        Ok(())
    }
}

// ---- delivery -------------------------------------------------------

impl delivery::Host for SessionState {
    async fn check_recipient(
        &mut self,
        address: String,
    ) -> wasmtime::Result<delivery::RecipientStatus> {
        use mailhost_store::RecipientStatus as S;
        let accounts = self.store_ctx()?.accounts();
        let address = recipient_address(&accounts, &address);
        let status = match accounts.check_recipient(&address) {
            S::Local(_) => delivery::RecipientStatus::Local,
            S::UnknownUser => delivery::RecipientStatus::UnknownUser,
            S::NotLocal => delivery::RecipientStatus::NotLocal,
        };
        Ok(status)
    }

    async fn max_message_size(&mut self) -> wasmtime::Result<u64> {
        Ok(self.store_ctx()?.max_message_size)
    }

    async fn begin(
        &mut self,
        return_path: String,
        recipients: Vec<String>,
    ) -> wasmtime::Result<
        Result<Resource<TransactionHandle>, delivery::DeliveryError>,
    > {
        let ctx = self.store_ctx()?;
        let (store, accounts) = (ctx.store.clone(), ctx.accounts());
        let max = ctx.max_message_size;
        let recipients = recipients
            .iter()
            .map(|address| recipient_address(&accounts, address))
            .collect();
        let (_, begun) = blocking((), move |_| {
            store.begin_delivery(&accounts, &return_path, recipients, max)
        })
        .await?;

        match begun {
            Ok(delivery) => {
                Ok(Ok(self.table.push(TransactionHandle(Some(delivery)))?))
            }
            Err(err) => Ok(Err(delivery_error(err))),
        }
    }
}

impl delivery::HostTransaction for SessionState {
    async fn write(
        &mut self,
        tx: Resource<TransactionHandle>,
        data: Vec<u8>,
    ) -> wasmtime::Result<Result<(), delivery::DeliveryError>> {
        let Some(delivery) = self.table.get_mut(&tx)?.0.take() else {
            return Ok(Err(delivery::DeliveryError::InvalidArgument));
        };
        let (delivery, written) =
            blocking(delivery, move |d| d.write(&data)).await?;
        self.table.get_mut(&tx)?.0 = Some(delivery);
        Ok(written.map_err(delivery_error))
    }

    async fn commit(
        &mut self,
        tx: Resource<TransactionHandle>,
    ) -> wasmtime::Result<
        Result<Vec<delivery::RecipientResult>, delivery::DeliveryError>,
    > {
        let Some(delivery) = self.table.get_mut(&tx)?.0.take() else {
            return Ok(Err(delivery::DeliveryError::InvalidArgument));
        };
        let (delivery, committed) = blocking(delivery, |d| d.commit()).await?;
        self.table.get_mut(&tx)?.0 = Some(delivery);

        let results = match committed {
            Ok(results) => results,
            Err(err) => return Ok(Err(delivery_error(err))),
        };
        let delivered = results.iter().filter(|(_, r)| r.is_ok()).count();
        tracing::info!(
            recipients = results.len(),
            delivered,
            "message delivered"
        );
        Ok(Ok(results
            .into_iter()
            .map(|(recipient, outcome)| delivery::RecipientResult {
                recipient,
                outcome: outcome.map_err(delivery_error),
            })
            .collect()))
    }

    async fn drop(
        &mut self,
        tx: Resource<TransactionHandle>,
    ) -> wasmtime::Result<()> {
        // An uncommitted delivery removes its temporary file on drop,
        // which touches the disk: do that off the runtime too.
        if let Some(delivery) = self.table.delete(tx)?.0 {
            blocking(delivery, |_| ()).await?;
        }
        Ok(())
    }
}

// ---- mailbox --------------------------------------------------------

fn message_info(info: &mailhost_store::MessageInfo) -> mailbox::MessageInfo {
    mailbox::MessageInfo {
        uid: info.uid,
        flags: info.flags.clone(),
        size: info.size,
        internal_date: info.internal_date,
        recent: info.recent,
    }
}

fn folder_status(
    status: mailhost_store::FolderStatus,
) -> mailbox::FolderStatus {
    mailbox::FolderStatus {
        messages: status.messages,
        recent: status.recent,
        unseen: status.unseen,
        uid_next: status.uid_next,
        uid_validity: status.uid_validity,
        size: status.size,
    }
}

impl mailbox::Host for SessionState {
    async fn open_account(
        &mut self,
        who: Resource<IdentityHandle>,
    ) -> wasmtime::Result<Result<Resource<AccountHandle>, mailbox::StoreError>>
    {
        let name = self.table.get(&who)?.0.name.clone();
        let store = self.store_ctx()?.store.clone();
        let (_, opened) = blocking((), move |_| store.account(&name)).await?;

        match opened {
            Ok(account) => {
                Ok(Ok(self.table.push(AccountHandle(Arc::new(account)))?))
            }
            Err(err) => Ok(Err(store_error(err))),
        }
    }
}

impl SessionState {
    /// Run `work` on the account behind `handle` in the blocking pool.
    async fn with_account<R: Send + 'static>(
        &mut self,
        handle: &Resource<AccountHandle>,
        work: impl FnOnce(&mailhost_store::Account) -> R + Send + 'static,
    ) -> wasmtime::Result<R> {
        let account = self.table.get(handle)?.0.clone();
        let (_, result) =
            blocking(account, move |account| work(account)).await?;
        Ok(result)
    }

    /// Run `work` on the folder behind `handle` in the blocking pool.
    async fn with_folder<R: Send + 'static>(
        &mut self,
        handle: &Resource<FolderHandle>,
        work: impl FnOnce(&mut Folder) -> R + Send + 'static,
    ) -> wasmtime::Result<R> {
        let folder = self
            .table
            .get_mut(handle)?
            .folder
            .take()
            .ok_or_else(|| wasmtime::format_err!("folder in use"))?;
        let (folder, result) = blocking(folder, work).await?;
        self.table.get_mut(handle)?.folder = Some(folder);
        Ok(result)
    }

    fn folder(
        &self,
        handle: &Resource<FolderHandle>,
    ) -> wasmtime::Result<&Folder> {
        self.table
            .get(handle)?
            .folder
            .as_ref()
            .ok_or_else(|| wasmtime::format_err!("folder in use"))
    }
}

type StoreResult<T> = wasmtime::Result<Result<T, mailbox::StoreError>>;

impl mailbox::HostAccount for SessionState {
    async fn list_folders(
        &mut self,
        account: Resource<AccountHandle>,
    ) -> StoreResult<Vec<mailbox::FolderInfo>> {
        let listed = self.with_account(&account, |a| a.list_folders()).await?;
        Ok(listed.map_err(store_error).map(|folders| {
            folders
                .into_iter()
                .map(|f| mailbox::FolderInfo {
                    name: f.name,
                    special_use: f.special_use,
                    subscribed: f.subscribed,
                    has_children: f.has_children,
                })
                .collect()
        }))
    }

    async fn create_folder(
        &mut self,
        account: Resource<AccountHandle>,
        name: String,
    ) -> StoreResult<()> {
        let created =
            self.with_account(&account, move |a| a.create_folder(&name));
        Ok(created.await?.map_err(store_error))
    }

    async fn delete_folder(
        &mut self,
        account: Resource<AccountHandle>,
        name: String,
    ) -> StoreResult<()> {
        let deleted =
            self.with_account(&account, move |a| a.delete_folder(&name));
        Ok(deleted.await?.map_err(store_error))
    }

    async fn rename_folder(
        &mut self,
        account: Resource<AccountHandle>,
        old_name: String,
        new_name: String,
    ) -> StoreResult<()> {
        let renamed = self.with_account(&account, move |a| {
            a.rename_folder(&old_name, &new_name)
        });
        Ok(renamed.await?.map_err(store_error))
    }

    async fn set_subscribed(
        &mut self,
        account: Resource<AccountHandle>,
        name: String,
        subscribed: bool,
    ) -> StoreResult<()> {
        let changed = self.with_account(&account, move |a| {
            a.set_subscribed(&name, subscribed)
        });
        Ok(changed.await?.map_err(store_error))
    }

    async fn status(
        &mut self,
        account: Resource<AccountHandle>,
        name: String,
    ) -> StoreResult<mailbox::FolderStatus> {
        let status = self.with_account(&account, move |a| a.status(&name));
        Ok(status.await?.map(folder_status).map_err(store_error))
    }

    async fn open(
        &mut self,
        account: Resource<AccountHandle>,
        name: String,
        mode: mailbox::OpenMode,
    ) -> StoreResult<Resource<FolderHandle>> {
        let mode = match mode {
            mailbox::OpenMode::ReadWrite => mailhost_store::OpenMode::ReadWrite,
            mailbox::OpenMode::ReadOnly => mailhost_store::OpenMode::ReadOnly,
            mailbox::OpenMode::Exclusive => mailhost_store::OpenMode::Exclusive,
        };
        // TODO(#3): read the change counter before the snapshot is taken;
        // a delivery landing between the two is seen only at the next
        // change (IDLE also polls, so it is late, not lost).
        let opened = self.with_account(&account, move |a| a.open(&name, mode));
        match opened.await? {
            Ok(folder) => {
                let seen_generation = folder.generation();
                let handle = FolderHandle {
                    folder: Some(folder),
                    seen_generation,
                };
                Ok(Ok(self.table.push(handle)?))
            }
            Err(err) => Ok(Err(store_error(err))),
        }
    }

    async fn begin_append(
        &mut self,
        account: Resource<AccountHandle>,
        name: String,
        flags: Vec<String>,
        internal_date: Option<i64>,
    ) -> StoreResult<Resource<AppenderHandle>> {
        let max = self.store_ctx()?.max_message_size;
        let begun = self.with_account(&account, move |a| {
            a.begin_append(&name, &flags, internal_date, max)
        });
        match begun.await? {
            Ok(appender) => {
                Ok(Ok(self.table.push(AppenderHandle(Some(appender)))?))
            }
            Err(err) => Ok(Err(store_error(err))),
        }
    }

    async fn drop(
        &mut self,
        account: Resource<AccountHandle>,
    ) -> wasmtime::Result<()> {
        self.table.delete(account)?;
        Ok(())
    }
}

impl mailbox::HostAppender for SessionState {
    async fn write(
        &mut self,
        appender: Resource<AppenderHandle>,
        data: Vec<u8>,
    ) -> StoreResult<()> {
        let Some(inner) = self.table.get_mut(&appender)?.0.take() else {
            return Ok(Err(mailbox::StoreError::InvalidArgument));
        };
        let (inner, written) = blocking(inner, move |a| a.write(&data)).await?;
        self.table.get_mut(&appender)?.0 = Some(inner);
        Ok(written.map_err(store_error))
    }

    async fn commit(
        &mut self,
        appender: Resource<AppenderHandle>,
    ) -> StoreResult<(u32, u32)> {
        let Some(inner) = self.table.get_mut(&appender)?.0.take() else {
            return Ok(Err(mailbox::StoreError::InvalidArgument));
        };
        let (_, committed) =
            blocking(Some(inner), |a| a.take().unwrap().commit()).await?;
        Ok(committed.map_err(store_error))
    }

    async fn drop(
        &mut self,
        appender: Resource<AppenderHandle>,
    ) -> wasmtime::Result<()> {
        if let Some(inner) = self.table.delete(appender)?.0 {
            blocking(inner, |_| ()).await?;
        }
        Ok(())
    }
}

impl mailbox::HostFolder for SessionState {
    async fn uid_validity(
        &mut self,
        folder: Resource<FolderHandle>,
    ) -> wasmtime::Result<u32> {
        Ok(self.folder(&folder)?.uid_validity())
    }

    async fn messages(
        &mut self,
        folder: Resource<FolderHandle>,
    ) -> wasmtime::Result<Vec<mailbox::MessageInfo>> {
        Ok(self
            .folder(&folder)?
            .messages()
            .iter()
            .map(message_info)
            .collect())
    }

    async fn refresh(
        &mut self,
        folder: Resource<FolderHandle>,
    ) -> StoreResult<mailbox::Changes> {
        let refreshed = self
            .with_folder(&folder, |f| {
                let generation = f.generation();
                (generation, f.refresh())
            })
            .await?;
        let (generation, changes) = refreshed;
        self.table.get_mut(&folder)?.seen_generation = generation;

        Ok(changes.map_err(store_error).map(|c| mailbox::Changes {
            expunged: c.expunged,
            added: c.added.iter().map(message_info).collect(),
            flags_changed: c.flags_changed.iter().map(message_info).collect(),
            uid_next: c.uid_next,
        }))
    }

    async fn read(
        &mut self,
        folder: Resource<FolderHandle>,
        uid: u32,
        offset: u64,
        max_len: u32,
    ) -> StoreResult<Vec<u8>> {
        let read =
            self.with_folder(&folder, move |f| f.read(uid, offset, max_len));
        Ok(read.await?.map_err(store_error))
    }

    async fn set_flags(
        &mut self,
        folder: Resource<FolderHandle>,
        uids: Vec<u32>,
        op: mailbox::FlagOperation,
        flags: Vec<String>,
    ) -> StoreResult<Vec<mailbox::MessageInfo>> {
        let op = match op {
            mailbox::FlagOperation::Add => mailhost_store::FlagOperation::Add,
            mailbox::FlagOperation::Remove => {
                mailhost_store::FlagOperation::Remove
            }
            mailbox::FlagOperation::Replace => {
                mailhost_store::FlagOperation::Replace
            }
        };
        let changed =
            self.with_folder(&folder, move |f| f.set_flags(&uids, op, &flags));
        Ok(changed
            .await?
            .map(|infos| infos.iter().map(message_info).collect())
            .map_err(store_error))
    }

    async fn expunge(
        &mut self,
        folder: Resource<FolderHandle>,
        uids: Option<Vec<u32>>,
    ) -> StoreResult<Vec<u32>> {
        let expunged =
            self.with_folder(&folder, move |f| f.expunge(uids.as_deref()));
        Ok(expunged.await?.map_err(store_error))
    }

    async fn copy(
        &mut self,
        folder: Resource<FolderHandle>,
        uids: Vec<u32>,
        target: String,
    ) -> StoreResult<(u32, Vec<(u32, u32)>)> {
        let copied = self.with_folder(&folder, move |f| f.copy(&uids, &target));
        Ok(copied.await?.map_err(store_error))
    }

    async fn move_(
        &mut self,
        folder: Resource<FolderHandle>,
        uids: Vec<u32>,
        target: String,
    ) -> StoreResult<(u32, Vec<(u32, u32)>)> {
        let moved = self.with_folder(&folder, move |f| f.move_(&uids, &target));
        Ok(moved.await?.map_err(store_error))
    }

    async fn wait(
        &mut self,
        folder: Resource<FolderHandle>,
        _conn: Resource<crate::conn::ConnectionHandle>,
        timeout_ms: u32,
    ) -> wasmtime::Result<Result<mailbox::WaitEvent, IoError>> {
        let seen = self.table.get(&folder)?.seen_generation;
        let (notify, generation) = {
            let folder = self.folder(&folder)?;
            (folder.change_notifier(), folder.generation())
        };
        if generation != seen {
            return Ok(Ok(mailbox::WaitEvent::Changed));
        }
        if self.io.has_input() {
            return Ok(Ok(mailbox::WaitEvent::Input));
        }

        // Register for the wake-up before the last look at the counter,
        // so a change landing in between is caught either way.
        let notified = notify.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if self.folder(&folder)?.generation() != seen {
            return Ok(Ok(mailbox::WaitEvent::Changed));
        }

        // Replies held for pipelined input go out before the wait, not
        // inside the race below, where a change could cut them off.
        if let Err(err) = self.io.send_held().await {
            return Ok(Err(err));
        }

        let timeout = std::time::Duration::from_millis(u64::from(timeout_ms));
        let event = tokio::select! {
            filled = self.io.wait_for_input() => filled.map(|()| mailbox::WaitEvent::Input),
            () = &mut notified => Ok(mailbox::WaitEvent::Changed),
            () = tokio::time::sleep(timeout) => Ok(mailbox::WaitEvent::Timeout),
        };

        // Input or a change is an event from outside: the work it causes
        // starts a new CPU slice, as a read does. A timeout is not, or a
        // plugin could reset its slice at will with short waits, and nor
        // is an error, which may come at once. The wait itself counts at
        // most one tick of the slice (see `cpu_slice_check`).
        if matches!(
            event,
            Ok(mailbox::WaitEvent::Input | mailbox::WaitEvent::Changed)
        ) {
            self.resume_cpu();
        }
        Ok(event)
    }

    async fn drop(
        &mut self,
        folder: Resource<FolderHandle>,
    ) -> wasmtime::Result<()> {
        // Dropping a folder releases its exclusive lock and may write the
        // uidlist: off the runtime.
        if let Some(inner) = self.table.delete(folder)?.folder {
            blocking(inner, |_| ()).await?;
        }
        Ok(())
    }
}
