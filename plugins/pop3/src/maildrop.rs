//! The maildrop as one POP3 session sees it: the INBOX snapshot taken at
//! login, numbered from 1, with the session's deletion marks.
//!
//! Nothing here touches the store. Marks live in memory until QUIT, so a
//! session that ends any other way deletes nothing (RFC 1939 section 6).

/// One message of the snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub uid: u32,
    /// Octets with CRLF line ends: what RETR sends before stuffing.
    pub size: u64,
    /// Marked by DELE; cleared by RSET.
    pub deleted: bool,
    /// Sent whole by RETR; marked `\Seen` at QUIT.
    pub retrieved: bool,
}

/// Why a message number names no message the client may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    /// Out of range (0 or past the last message).
    NoSuchMessage,
    /// Marked deleted in this session.
    Deleted(u64),
}

impl Lookup {
    /// The reply text, without `-ERR `.
    pub fn reply(&self) -> String {
        match self {
            Lookup::NoSuchMessage => "no such message".to_owned(),
            Lookup::Deleted(number) => {
                format!("message {number} already deleted")
            }
        }
    }
}

#[derive(Debug)]
pub struct Maildrop {
    uid_validity: u32,
    entries: Vec<Entry>,
}

impl Maildrop {
    /// A maildrop from the folder's UIDVALIDITY and its messages as
    /// (uid, size) pairs, ascending by UID.
    pub fn new(
        uid_validity: u32,
        messages: impl IntoIterator<Item = (u32, u64)>,
    ) -> Self {
        let entries = messages
            .into_iter()
            .map(|(uid, size)| Entry {
                uid,
                size,
                deleted: false,
                retrieved: false,
            })
            .collect();
        Maildrop {
            uid_validity,
            entries,
        }
    }

    /// Count and total size of the messages not marked deleted (STAT).
    pub fn stat(&self) -> (usize, u64) {
        self.live().fold((0, 0), |(count, size), (_, entry)| {
            (count + 1, size + entry.size)
        })
    }

    /// The messages not marked deleted, with their numbers.
    pub fn live(&self) -> impl Iterator<Item = (u64, &Entry)> {
        self.entries
            .iter()
            .zip(1u64..)
            .filter(|(entry, _)| !entry.deleted)
            .map(|(entry, number)| (number, entry))
    }

    /// Message `number`, unless it is out of range or marked deleted.
    pub fn get(&self, number: u64) -> Result<&Entry, Lookup> {
        let entry = self.slot(number)?;
        if entry.deleted {
            return Err(Lookup::Deleted(number));
        }
        Ok(entry)
    }

    /// Mark message `number` deleted (DELE).
    pub fn delete(&mut self, number: u64) -> Result<(), Lookup> {
        self.get(number)?;
        self.slot_mut(number)?.deleted = true;
        Ok(())
    }

    /// Note that message `number` was retrieved whole (RETR).
    pub fn mark_retrieved(&mut self, number: u64) {
        if let Ok(entry) = self.slot_mut(number) {
            entry.retrieved = true;
        }
    }

    /// Clear every deletion mark (RSET).
    pub fn reset(&mut self) {
        for entry in &mut self.entries {
            entry.deleted = false;
        }
    }

    /// The unique-id listing of a message (UIDL).
    ///
    /// The format is Dovecot's default `pop3_uidl_format`, `%08Xu%08Xv`:
    /// the UID and then the UIDVALIDITY, each as eight upper-case hex
    /// digits. The store keeps both across restarts and never reuses a
    /// UID, so the value is unique and stable; a mailbox moved from a
    /// Dovecot with default settings keeps its UIDLs, so clients that
    /// leave mail on the server do not download it all again.
    pub fn uidl(&self, entry: &Entry) -> String {
        format!("{:08X}{:08X}", entry.uid, self.uid_validity)
    }

    /// UIDs of the messages marked deleted, ascending.
    pub fn deleted_uids(&self) -> Vec<u32> {
        self.entries
            .iter()
            .filter(|entry| entry.deleted)
            .map(|entry| entry.uid)
            .collect()
    }

    /// UIDs of the messages retrieved and not marked deleted, ascending.
    pub fn retrieved_uids(&self) -> Vec<u32> {
        self.entries
            .iter()
            .filter(|entry| entry.retrieved && !entry.deleted)
            .map(|entry| entry.uid)
            .collect()
    }

    fn index(&self, number: u64) -> Result<usize, Lookup> {
        let index = usize::try_from(number)
            .ok()
            .and_then(|number| number.checked_sub(1))
            .ok_or(Lookup::NoSuchMessage)?;
        if index >= self.entries.len() {
            return Err(Lookup::NoSuchMessage);
        }
        Ok(index)
    }

    fn slot(&self, number: u64) -> Result<&Entry, Lookup> {
        Ok(&self.entries[self.index(number)?])
    }

    fn slot_mut(&mut self, number: u64) -> Result<&mut Entry, Lookup> {
        let index = self.index(number)?;
        Ok(&mut self.entries[index])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drop3() -> Maildrop {
        Maildrop::new(7, [(4, 100), (9, 20), (12, 3)])
    }

    #[test]
    fn stat_counts_live_messages() {
        let mut drop = drop3();
        assert_eq!(drop.stat(), (3, 123));

        drop.delete(2).unwrap();
        assert_eq!(drop.stat(), (2, 103));
    }

    #[test]
    fn numbers_stay_put_after_a_delete() {
        let mut drop = drop3();
        drop.delete(1).unwrap();

        let live: Vec<_> = drop.live().map(|(n, e)| (n, e.uid)).collect();
        assert_eq!(live, [(2, 9), (3, 12)]);
        assert_eq!(drop.get(3).unwrap().uid, 12);
    }

    #[test]
    fn deleted_messages_are_refused() {
        let mut drop = drop3();
        drop.delete(2).unwrap();

        assert_eq!(drop.get(2), Err(Lookup::Deleted(2)));
        assert_eq!(drop.delete(2), Err(Lookup::Deleted(2)));
        assert_eq!(Lookup::Deleted(2).reply(), "message 2 already deleted");
    }

    #[test]
    fn attack_out_of_range_numbers() {
        let drop = drop3();
        for number in [0, 4, u64::MAX] {
            assert_eq!(
                drop.get(number),
                Err(Lookup::NoSuchMessage),
                "{number}"
            );
        }
    }

    #[test]
    fn reset_clears_marks() {
        let mut drop = drop3();
        drop.delete(1).unwrap();
        drop.delete(3).unwrap();
        assert_eq!(drop.deleted_uids(), [4, 12]);

        drop.reset();
        assert!(drop.deleted_uids().is_empty());
        assert_eq!(drop.stat(), (3, 123));
    }

    #[test]
    fn retrieved_and_then_deleted_is_not_marked_seen() {
        let mut drop = drop3();
        drop.mark_retrieved(1);
        drop.mark_retrieved(2);
        drop.delete(2).unwrap();
        assert_eq!(drop.retrieved_uids(), [4]);
    }

    #[test]
    fn uidl_follows_dovecot_default_format() {
        let drop = Maildrop::new(0x5f3a_0c01, [(1, 1), (0xabc, 1)]);
        assert_eq!(drop.uidl(drop.get(1).unwrap()), "000000015F3A0C01");
        assert_eq!(drop.uidl(drop.get(2).unwrap()), "00000ABC5F3A0C01");
    }
}
