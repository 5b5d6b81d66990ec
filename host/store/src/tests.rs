//! Store behaviour on real files in temporary directories.

use std::collections::HashSet;
use std::fs;
use std::path::Path;
use std::sync::Arc;
use std::thread;

use crate::fsutil::{self, Step};
use crate::*;

const ALICE: &str = "alice@example.org";
const MAX: u64 = 1 << 20;

fn store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("data")).unwrap();
    (dir, store)
}

fn deliver(store: &Store, to: &str, body: &[u8]) -> Result<(), DeliveryError> {
    let mut d = store.begin_delivery_to(
        "sender@example.net",
        vec![(to.to_owned(), Ok(vec![to.to_owned()]))],
        MAX,
    )?;
    d.write(body)?;
    d.commit()?.remove(0).1
}

fn names_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    v.sort();
    v
}

fn uids(folder: &Folder) -> Vec<u32> {
    folder.messages().iter().map(|m| m.uid).collect()
}

#[test]
fn new_account_has_dovecot_layout() {
    let (_d, store) = store();
    let acct = store.account("Alice@Example.org").unwrap();
    let root = store.data_dir().join("example.org/alice/Maildir");
    assert_eq!(acct.root(), root);
    for sub in [
        "cur",
        "new",
        "tmp",
        ".Sent/cur",
        ".Trash/new",
        ".Archive/tmp",
    ] {
        assert!(root.join(sub).is_dir(), "{sub}");
    }
    assert!(root.join(".Drafts/maildirfolder").is_file());
    let subs = fs::read_to_string(root.join("subscriptions")).unwrap();
    assert!(subs.starts_with("V\t2\n\nINBOX\nSent\n"), "{subs:?}");

    let list = acct.list_folders().unwrap();
    let names: Vec<&str> = list.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(
        names,
        ["INBOX", "Archive", "Drafts", "Junk", "Sent", "Trash"]
    );
    assert_eq!(list[4].special_use.as_deref(), Some("Sent"));
    assert!(list.iter().all(|f| f.subscribed));
}

#[test]
fn uids_stable_and_monotonic_across_reopen() {
    let (_d, store) = store();
    let acct = store.account(ALICE).unwrap();
    for i in 0..5 {
        deliver(
            &store,
            ALICE,
            format!("Subject: {i}\r\n\r\nx\r\n").as_bytes(),
        )
        .unwrap();
    }

    let mut inbox = acct.open("INBOX", OpenMode::ReadWrite).unwrap();
    let validity = inbox.uid_validity();
    assert!(validity >= 1);
    assert_eq!(uids(&inbox), [1, 2, 3, 4, 5]);
    assert!(inbox.messages().iter().all(|m| m.recent));

    inbox
        .set_flags(&[2, 4], FlagOperation::Add, &["\\Deleted".into()])
        .unwrap();
    assert_eq!(inbox.expunge(None).unwrap(), [2, 4]);
    drop(inbox);

    deliver(&store, ALICE, b"Subject: later\r\n\r\n").unwrap();
    let again = acct.open("INBOX", OpenMode::ReadWrite).unwrap();
    assert_eq!(again.uid_validity(), validity);
    assert_eq!(uids(&again), [1, 3, 5, 6], "expunged UIDs are never reused");
    let recent: Vec<bool> = again.messages().iter().map(|m| m.recent).collect();
    assert_eq!(recent, [false, false, false, true]);

    // A second store over the same files (a restart) sees the same.
    let restarted = Store::open(store.data_dir()).unwrap();
    let inbox = restarted
        .account(ALICE)
        .unwrap()
        .open("INBOX", OpenMode::ReadOnly)
        .unwrap();
    assert_eq!(uids(&inbox), [1, 3, 5, 6]);
    assert_eq!(inbox.uid_next(), 7);
}

#[test]
fn concurrent_deliverers_and_flag_changer_lose_nothing() {
    const DELIVERERS: usize = 6;
    const EACH: usize = 40;
    let (_d, store) = store();
    let acct = store.account(ALICE).unwrap();

    let writers: Vec<_> = (0..DELIVERERS)
        .map(|t| {
            let store = store.clone();
            thread::spawn(move || {
                for i in 0..EACH {
                    let body = format!("Subject: t{t} m{i}\r\n\r\nbody\r\n");
                    deliver(&store, ALICE, body.as_bytes()).unwrap();
                }
            })
        })
        .collect();

    // Two sessions refresh, flag and read while the deliveries run,
    // checking that a UID never changes its message.
    let sessions: Vec<_> = (0..2)
        .map(|s| {
            let acct = acct.clone();
            thread::spawn(move || {
                let mut f = acct.open("INBOX", OpenMode::ReadWrite).unwrap();
                let mut subject_of = std::collections::HashMap::new();
                for round in 0..30 {
                    f.refresh().unwrap();
                    let all = uids(&f);
                    assert!(all.windows(2).all(|w| w[0] < w[1]), "ascending");
                    let pick: Vec<u32> =
                        all.iter().copied().filter(|u| u % 2 == s).collect();
                    let flag =
                        if round % 2 == 0 { "\\Seen" } else { "$Label1" };
                    f.set_flags(&pick, FlagOperation::Add, &[flag.into()])
                        .unwrap();
                    for &uid in all.iter().rev().take(5) {
                        let text = match f.read(uid, 0, 4096) {
                            Ok(t) => String::from_utf8(t).unwrap(),
                            Err(StoreError::NotFound) => continue,
                            Err(e) => panic!("{e}"),
                        };
                        let subject = text.lines().nth(1).unwrap().to_owned();
                        let prev =
                            subject_of.entry(uid).or_insert(subject.clone());
                        assert_eq!(*prev, subject, "UID {uid} renumbered");
                    }
                }
            })
        })
        .collect();

    for w in writers {
        w.join().unwrap();
    }
    for s in sessions {
        s.join().unwrap();
    }

    let inbox = acct.open("INBOX", OpenMode::ReadWrite).unwrap();
    let all = uids(&inbox);
    let total = DELIVERERS * EACH;
    assert_eq!(all.len(), total, "no message lost or duplicated");
    assert_eq!(
        all,
        (1..=total as u32).collect::<Vec<_>>(),
        "dense, no gaps"
    );
    let files = names_in(&acct.root().join("cur")).len()
        + names_in(&acct.root().join("new")).len();
    assert_eq!(files, total);
    assert!(!acct.root().join("dovecot-uidlist.lock").exists());
}

#[test]
fn delivery_syncs_file_before_rename_before_dir() {
    let (_d, store) = store();
    let acct = store.account(ALICE).unwrap();

    fsutil::record_steps();
    deliver(&store, ALICE, b"Subject: durable\r\n\r\n").unwrap();
    let steps = fsutil::take_steps();

    let new_dir = acct.root().join("new");
    let sync_file = steps
        .iter()
        .position(|s| matches!(s, Step::SyncFile(p) if p.starts_with(acct.root().join("tmp"))));
    let tmp_dir = acct.root().join("tmp");
    let place = steps.iter().position(|s| {
        matches!(s, Step::Place { from, to }
            if from.starts_with(&tmp_dir) && to.starts_with(&new_dir))
    });
    let sync_dir = steps
        .iter()
        .position(|s| *s == Step::SyncDir(new_dir.clone()));
    let (a, b, c) = (sync_file.unwrap(), place.unwrap(), sync_dir.unwrap());
    assert!(a < b && b < c, "order was {steps:?}");
    assert!(names_in(&acct.root().join("tmp")).is_empty(), "tmp cleaned");

    // APPEND: file synced, linked into cur/, cur/ synced, and only then
    // the uidlist (which makes the UID the client is told durable).
    let mut ap = acct.begin_append("INBOX", &[], None, MAX).unwrap();
    ap.write(b"Subject: appended\r\n\r\n").unwrap();
    fsutil::record_steps();
    ap.commit().unwrap();
    let steps = fsutil::take_steps();
    let cur = acct.root().join("cur");
    let tmp = acct.root().join("tmp");
    let sync_file = steps
        .iter()
        .position(|s| matches!(s, Step::SyncFile(p) if p.starts_with(&tmp)));
    let place = steps.iter().position(
        |s| matches!(s, Step::Place { from, to } if from.starts_with(&tmp) && to.starts_with(&cur)),
    );
    let sync_cur = steps.iter().position(|s| *s == Step::SyncDir(cur.clone()));
    let uidlist = steps
        .iter()
        .position(|s| matches!(s, Step::Place { to, .. } if to.ends_with("dovecot-uidlist")));
    let order = [sync_file, place, sync_cur, uidlist].map(Option::unwrap);
    assert!(order.windows(2).all(|w| w[0] < w[1]), "order was {steps:?}");
}

#[test]
fn partial_or_oversized_message_never_visible() {
    let (_d, store) = store();
    let acct = store.account(ALICE).unwrap();
    let target = || vec![(ALICE.to_owned(), Ok(vec![ALICE.to_owned()]))];

    // Half written: only tmp/ holds it, and no reader finds it.
    let mut d = store
        .begin_delivery_to("s@example.net", target(), MAX)
        .unwrap();
    d.write(b"Subject: half\r\n\r\npart one").unwrap();
    assert!(names_in(&acct.root().join("new")).is_empty());
    assert!(names_in(&acct.root().join("cur")).is_empty());
    assert_eq!(
        acct.open("INBOX", OpenMode::ReadWrite)
            .unwrap()
            .messages()
            .len(),
        0
    );
    assert_eq!(names_in(&acct.root().join("tmp")).len(), 1);
    drop(d);
    assert!(
        names_in(&acct.root().join("tmp")).is_empty(),
        "dropped: discarded"
    );

    // Over the cap: refused, every later write refused, nothing left.
    let mut d = store
        .begin_delivery_to("s@example.net", target(), 100)
        .unwrap();
    d.write(&[b'a'; 60]).unwrap();
    assert!(matches!(d.write(&[b'a'; 60]), Err(DeliveryError::TooLarge)));
    assert!(matches!(d.write(b"x"), Err(DeliveryError::TooLarge)));
    assert!(matches!(d.commit(), Err(DeliveryError::TooLarge)));
    assert!(names_in(&acct.root().join("tmp")).is_empty());
    assert!(names_in(&acct.root().join("new")).is_empty());

    // Commit twice: the second is refused.
    let mut d = store
        .begin_delivery_to("s@example.net", target(), MAX)
        .unwrap();
    d.write(b"Subject: once\r\n\r\n").unwrap();
    assert!(d.commit().unwrap()[0].1.is_ok());
    assert!(matches!(d.commit(), Err(DeliveryError::InvalidArgument(_))));
}

#[test]
fn return_path_header_injection_refused() {
    let (_d, store) = store();
    let t = || vec![(ALICE.to_owned(), Ok(vec![ALICE.to_owned()]))];
    for bad in ["a@b>\r\nBcc: x@y", "a@b\nX: y", "<a@b>", "a\0b"] {
        let err = store.begin_delivery_to(bad, t(), MAX).unwrap_err();
        assert!(matches!(err, DeliveryError::InvalidArgument(_)), "{bad:?}");
    }
    assert!(
        store
            .begin_delivery_to("ok@example.net", vec![], MAX)
            .is_err()
    );
    let many = (0..=MAX_RECIPIENTS)
        .map(|_| (ALICE.to_owned(), Ok(vec![ALICE.to_owned()])))
        .collect();
    assert!(
        store
            .begin_delivery_to("ok@example.net", many, MAX)
            .is_err()
    );
}

#[test]
fn multi_recipient_delivery_with_crlf_and_results() {
    let dir = tempfile::tempdir().unwrap();
    let users = dir.path().join("users");
    let hash = crate::password::hash_password("pw").unwrap();
    fs::write(
        &users,
        format!("alice@example.org:{hash}\nbob@example.org:{hash}\n"),
    )
    .unwrap();
    let aliases = dir.path().join("aliases");
    fs::write(
        &aliases,
        "all@example.org: alice@example.org, bob@example.org\n",
    )
    .unwrap();
    let accounts =
        Accounts::load(&users, Some(&aliases), &["example.org".into()])
            .unwrap();
    let store = Store::open(dir.path().join("data")).unwrap();

    let rcpts = vec![
        "alice@example.org".into(),
        "all@example.org".into(),
        "carol@example.org".into(),
    ];
    let mut d = store.begin_delivery(&accounts, "", rcpts, MAX).unwrap();
    d.write(b"Subject: bare\nLF lines\r").unwrap();
    d.write(b"\nsplit CRLF\n").unwrap();
    let results = d.commit().unwrap();
    assert!(results[0].1.is_ok() && results[1].1.is_ok());
    assert!(matches!(results[2].1, Err(DeliveryError::UnknownUser)));

    for user in ["alice@example.org", "bob@example.org"] {
        let acct = store.account(user).unwrap();
        let mut inbox = acct.open("INBOX", OpenMode::ReadWrite).unwrap();
        assert_eq!(
            inbox.messages().len(),
            1,
            "{user}: one copy even via alias"
        );
        let m = inbox.messages()[0].clone();
        let text = inbox.read(m.uid, 0, 4096).unwrap();
        let want =
            b"Return-Path: <>\r\nSubject: bare\r\nLF lines\r\nsplit CRLF\r\n";
        assert_eq!(text, want);
        assert_eq!(m.size, want.len() as u64);
        let name = &names_in(&acct.root().join("cur"))[0];
        assert!(
            name.contains(&format!(",S={0},W={0}:2,", want.len())),
            "{name}"
        );

        // Reads in pieces and past the end.
        assert_eq!(inbox.read(m.uid, 6, 5).unwrap(), b"-Path");
        assert!(inbox.read(m.uid, m.size, 10).unwrap().is_empty());
        assert!(matches!(inbox.read(999, 0, 1), Err(StoreError::NotFound)));
    }
}

#[test]
fn flags_keywords_and_refresh_between_sessions() {
    let (_d, store) = store();
    let acct = store.account(ALICE).unwrap();
    deliver(&store, ALICE, b"a\r\n").unwrap();
    deliver(&store, ALICE, b"b\r\n").unwrap();

    let mut one = acct.open("INBOX", OpenMode::ReadWrite).unwrap();
    let mut two = acct.open("INBOX", OpenMode::ReadWrite).unwrap();
    assert!(one.messages().iter().all(|m| m.recent));
    assert!(
        two.messages().iter().all(|m| !m.recent),
        "recent for the first only"
    );

    let out = one
        .set_flags(
            &[1, 77],
            FlagOperation::Add,
            &["\\Seen".into(), "\\Flagged".into(), "$Junk".into()],
        )
        .unwrap();
    assert_eq!(out.len(), 1, "unknown UID skipped");
    assert_eq!(out[0].flags, ["$Junk", "\\Flagged", "\\Seen"]);
    let kw = fs::read_to_string(acct.root().join("dovecot-keywords")).unwrap();
    assert_eq!(kw, "0 $Junk\n");
    let cur = names_in(&acct.root().join("cur"));
    assert!(cur.iter().any(|n| n.ends_with(":2,FSa")), "{cur:?}");

    let changes = two.refresh().unwrap();
    assert_eq!(changes.flags_changed.len(), 1);
    assert_eq!(
        changes.flags_changed[0].flags,
        ["$Junk", "\\Flagged", "\\Seen"]
    );

    // Two reads the message after its rename by one.
    assert_eq!(two.read(1, 0, 10).unwrap(), b"Return-Pat");

    one.set_flags(&[1], FlagOperation::Remove, &["\\flagged".into()])
        .unwrap();
    let out = one
        .set_flags(&[1, 2], FlagOperation::Replace, &["\\Answered".into()])
        .unwrap();
    assert_eq!(out[0].flags, ["\\Answered"]);
    assert_eq!(out[1].flags, ["\\Answered"]);

    assert!(matches!(
        one.set_flags(&[1], FlagOperation::Add, &["\\Bogus".into()]),
        Err(StoreError::InvalidArgument(_))
    ));
    let mut ro = acct.open("INBOX", OpenMode::ReadOnly).unwrap();
    assert!(matches!(
        ro.set_flags(&[1], FlagOperation::Add, &[]),
        Err(StoreError::ReadOnly)
    ));
    assert!(matches!(ro.expunge(None), Err(StoreError::ReadOnly)));
}

#[test]
fn expunge_checks_current_flags_and_refresh_reports_it() {
    let (_d, store) = store();
    let acct = store.account(ALICE).unwrap();
    for _ in 0..3 {
        deliver(&store, ALICE, b"x\r\n").unwrap();
    }
    let mut one = acct.open("INBOX", OpenMode::ReadWrite).unwrap();
    let mut two = acct.open("INBOX", OpenMode::ReadWrite).unwrap();
    one.set_flags(&[1, 2, 3], FlagOperation::Add, &["\\Deleted".into()])
        .unwrap();
    assert_eq!(
        two.expunge(Some(&[2, 3])).unwrap(),
        [2, 3],
        "sees one's flags"
    );
    assert_eq!(uids(&two), [1]);
    let changes = one.refresh().unwrap();
    assert_eq!(changes.expunged, [2, 3]);
    assert_eq!(uids(&one), [1]);
}

#[test]
fn append_copy_move_give_uids() {
    let (_d, store) = store();
    let acct = store.account(ALICE).unwrap();
    acct.create_folder("Projects/2024").unwrap();

    let mut ap = acct
        .begin_append(
            "Projects/2024",
            &["\\Seen".into(), "$Work".into()],
            Some(1_000_000_000),
            MAX,
        )
        .unwrap();
    ap.write(b"Subject: appended\n\nbody\n").unwrap();
    let (validity, uid) = ap.commit().unwrap();
    assert_eq!(uid, 1);

    let mut f = acct.open("Projects/2024", OpenMode::ReadWrite).unwrap();
    assert_eq!(f.uid_validity(), validity);
    let m = f.messages()[0].clone();
    assert_eq!(m.internal_date, 1_000_000_000);
    assert_eq!(m.flags, ["$Work", "\\Seen"]);
    assert_eq!(
        f.read(1, 0, 100).unwrap(),
        b"Subject: appended\r\n\r\nbody\r\n"
    );

    let (tv, pairs) = f.copy(&[1, 5], "Archive").unwrap();
    assert_eq!(pairs, [(1, 1)]);
    let (tv2, pairs) = f.move_(&[1], "Archive").unwrap();
    assert_eq!((tv2, pairs), (tv, vec![(1, 2)]));
    assert!(f.messages().is_empty());

    let archive = acct.open("Archive", OpenMode::ReadOnly).unwrap();
    assert_eq!(uids(&archive), [1, 2]);
    for m in archive.messages() {
        assert_eq!(m.internal_date, 1_000_000_000, "date kept by copy");
        assert_eq!(m.flags, ["$Work", "\\Seen"], "flags kept by copy");
    }
    assert!(matches!(f.copy(&[1], "Nope"), Err(StoreError::NotFound)));

    // Appends over the cap leave nothing; dropped appends too.
    let mut big = acct.begin_append("INBOX", &[], None, 10).unwrap();
    assert!(matches!(big.write(&[b'x'; 11]), Err(StoreError::TooLarge)));
    assert!(matches!(big.commit(), Err(StoreError::TooLarge)));
    let dropped = acct.begin_append("INBOX", &[], None, 10).unwrap();
    drop(dropped);
    assert!(names_in(&acct.root().join("tmp")).is_empty());
    assert!(matches!(
        acct.begin_append("Nope", &[], None, 10),
        Err(StoreError::NotFound)
    ));
}

#[test]
fn folder_management() {
    let (_d, store) = store();
    let acct = store.account(ALICE).unwrap();
    acct.create_folder("a/b/c").unwrap();
    acct.create_folder("Entwürfe").unwrap();
    assert!(acct.root().join(".a.b.c/cur").is_dir());
    assert!(acct.root().join(".Entw&APw-rfe/cur").is_dir());
    assert!(matches!(
        acct.create_folder("a/b"),
        Err(StoreError::AlreadyExists)
    ));
    assert!(matches!(
        acct.create_folder("inbox"),
        Err(StoreError::AlreadyExists)
    ));
    assert!(matches!(
        acct.create_folder("x.y"),
        Err(StoreError::InvalidName)
    ));
    assert!(matches!(
        acct.create_folder("../../escape"),
        Err(StoreError::InvalidName)
    ));

    let list = acct.list_folders().unwrap();
    let a = list.iter().find(|f| f.name == "a").unwrap();
    assert!(a.has_children && !a.subscribed);
    assert!(list.iter().any(|f| f.name == "Entwürfe"));

    acct.rename_folder("a", "z").unwrap();
    assert!(acct.root().join(".z.b.c/cur").is_dir());
    assert!(!acct.root().join(".a").exists());
    assert!(matches!(
        acct.rename_folder("z", "z/in"),
        Err(StoreError::InvalidName)
    ));
    assert!(matches!(
        acct.rename_folder("nope", "q"),
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        acct.rename_folder("z", "Sent"),
        Err(StoreError::AlreadyExists)
    ));

    acct.delete_folder("z/b/c").unwrap();
    assert!(matches!(
        acct.delete_folder("z/b/c"),
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        acct.delete_folder("INBOX"),
        Err(StoreError::InvalidName)
    ));
    assert!(
        !names_in(acct.root()).iter().any(|n| n.starts_with("..")),
        "trash removed"
    );

    acct.set_subscribed("z", true).unwrap();
    acct.set_subscribed("Sent", false).unwrap();
    let subs = acct.subscriptions().unwrap();
    assert!(
        subs.contains(&"z".to_owned()) && !subs.contains(&"Sent".to_owned())
    );

    // Renaming INBOX moves its messages and leaves it empty.
    deliver(&store, ALICE, b"x\r\n").unwrap();
    acct.rename_folder("INBOX", "Old").unwrap();
    assert_eq!(acct.status("Old").unwrap().messages, 1);
    assert_eq!(acct.status("INBOX").unwrap().messages, 0);
}

#[test]
fn status_counts_without_moving() {
    let (_d, store) = store();
    let acct = store.account(ALICE).unwrap();
    deliver(&store, ALICE, b"12345\r\n").unwrap();
    deliver(&store, ALICE, b"12345\r\n").unwrap();
    let st = acct.status("INBOX").unwrap();
    assert_eq!(
        (st.messages, st.recent, st.unseen, st.uid_next),
        (2, 2, 2, 3)
    );
    assert_eq!(
        names_in(&acct.root().join("new")).len(),
        2,
        "status moves nothing"
    );
    let size =
        acct.open("INBOX", OpenMode::ReadOnly).unwrap().messages()[0].size;
    assert_eq!(st.size, 2 * size);
    assert!(matches!(acct.status("Nope"), Err(StoreError::NotFound)));
}

#[test]
fn exclusive_open_refuses_second_until_dropped() {
    let (_d, store) = store();
    let acct = store.account(ALICE).unwrap();
    let first = acct.open("INBOX", OpenMode::Exclusive).unwrap();
    assert!(matches!(
        acct.open("INBOX", OpenMode::Exclusive),
        Err(StoreError::InUse)
    ));
    let other_store_handle = store.account(ALICE).unwrap();
    assert!(matches!(
        other_store_handle.open("inbox", OpenMode::Exclusive),
        Err(StoreError::InUse)
    ));
    assert!(
        acct.open("INBOX", OpenMode::ReadWrite).is_ok(),
        "IMAP still opens"
    );
    assert!(acct.open("Sent", OpenMode::Exclusive).is_ok(), "per folder");
    drop(first);
    assert!(acct.open("INBOX", OpenMode::Exclusive).is_ok());
}

#[test]
fn change_notifier_shared_and_woken_by_delivery() {
    let (_d, store) = store();
    let acct = store.account(ALICE).unwrap();
    let inbox = acct.open("INBOX", OpenMode::ReadWrite).unwrap();
    let other = acct.open("INBOX", OpenMode::ReadOnly).unwrap();
    assert!(Arc::ptr_eq(
        &inbox.change_notifier(),
        &other.change_notifier()
    ));

    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let notify = inbox.change_notifier();
    let before = inbox.generation();
    rt.block_on(async {
        let waiting = notify.notified();
        tokio::pin!(waiting);
        waiting.as_mut().enable();
        deliver(&store, ALICE, b"wake\r\n").unwrap();
        waiting.await;
    });
    assert!(inbox.generation() > before);
}

#[test]
fn corrupt_uidlist_names_file_and_line() {
    let (_d, store) = store();
    let acct = store.account(ALICE).unwrap();
    deliver(&store, ALICE, b"x\r\n").unwrap();
    drop(acct.open("INBOX", OpenMode::ReadWrite).unwrap());
    let path = acct.root().join("dovecot-uidlist");
    let good = fs::read_to_string(&path).unwrap();
    fs::write(&path, format!("{good}garbage line\n")).unwrap();

    let err = acct
        .open("INBOX", OpenMode::ReadWrite)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(&format!("`{}` line 3", path.display())),
        "{err}"
    );
    assert_eq!(
        fs::read_to_string(&path).unwrap(),
        format!("{good}garbage line\n"),
        "untouched"
    );

    // Unreadable: a directory where the file should be.
    fs::remove_file(&path).unwrap();
    fs::create_dir(&path).unwrap();
    let err = acct
        .open("INBOX", OpenMode::ReadWrite)
        .unwrap_err()
        .to_string();
    assert!(err.contains(&path.display().to_string()), "{err}");
}

#[test]
fn foreign_lf_file_read_as_crlf_with_mtime_date() {
    let (_d, store) = store();
    let acct = store.account(ALICE).unwrap();
    let name = "1600000000.M1P2.otherhost";
    let path = acct.root().join("cur").join(format!("{name}:2,S"));
    fs::write(&path, b"Subject: lf\n\nline\n").unwrap();
    let f = fs::File::options().write(true).open(&path).unwrap();
    f.set_modified(crate::place::system_time(1_500_000_000))
        .unwrap();
    drop(f);

    let mut inbox = acct.open("INBOX", OpenMode::ReadWrite).unwrap();
    let m = inbox.messages()[0].clone();
    assert_eq!(m.internal_date, 1_500_000_000, "mtime, not the name");
    assert_eq!(m.size, 21);
    assert_eq!(m.flags, ["\\Seen"]);
    assert_eq!(
        inbox.read(m.uid, 0, 100).unwrap(),
        b"Subject: lf\r\n\r\nline\r\n"
    );
    assert_eq!(inbox.read(m.uid, 8, 4).unwrap(), b" lf\r");
    let list = fs::read_to_string(acct.root().join("dovecot-uidlist")).unwrap();
    assert!(list.contains(&format!("1 W21 :{name}:2,S")), "{list}");
}

#[test]
fn hostile_folder_and_account_names_refused() {
    let (_d, store) = store();
    for bad in ["../evil@example.org", "a/b@example.org", "x@../../etc"] {
        assert!(
            matches!(store.account(bad), Err(StoreError::InvalidName)),
            "{bad}"
        );
    }
    let acct = store.account(ALICE).unwrap();
    for bad in ["../x", "a/../../b", ".hidden", "a\r\nb", "", "x/"] {
        assert!(
            matches!(
                acct.open(bad, OpenMode::ReadOnly),
                Err(StoreError::InvalidName)
            ),
            "{bad:?}"
        );
        assert!(
            matches!(acct.create_folder(bad), Err(StoreError::InvalidName)),
            "{bad:?}"
        );
    }
    assert!(!store.data_dir().join("evil").exists());
}

#[test]
fn uid_validity_differs_for_recreated_folder() {
    let (_d, store) = store();
    let acct = store.account(ALICE).unwrap();
    acct.create_folder("tmpbox").unwrap();
    let first = acct.status("tmpbox").unwrap().uid_validity;
    acct.delete_folder("tmpbox").unwrap();
    acct.create_folder("tmpbox").unwrap();
    let second = acct.status("tmpbox").unwrap().uid_validity;
    assert_ne!(first, second);
    let seen: HashSet<u32> = [first, second].into();
    assert!(!seen.contains(&0));
}

/// Age every stamped file of a folder so its next scan may be cached.
fn age_folder(dir: &Path) {
    let old = crate::place::system_time(1_600_000_000);
    for p in ["new", "cur", "dovecot-uidlist", "dovecot-keywords"] {
        if let Ok(f) = fs::File::open(dir.join(p)) {
            f.set_modified(old).unwrap();
        }
    }
}

#[test]
fn cached_scan_sees_changes_made_outside_the_process() {
    let (_d, store) = store();
    let acct = store.account(ALICE).unwrap();
    deliver(&store, ALICE, b"x\r\n").unwrap();
    drop(acct.open("INBOX", OpenMode::ReadWrite).unwrap());
    age_folder(acct.root());

    // Scanned and cached; then another program renames the file.
    let first = acct.open("INBOX", OpenMode::ReadWrite).unwrap();
    assert!(first.messages()[0].flags.is_empty());
    let cur = acct.root().join("cur");
    let name = names_in(&cur).remove(0);
    fs::rename(cur.join(&name), cur.join(format!("{name}F"))).unwrap();

    let mut again = acct.open("INBOX", OpenMode::ReadWrite).unwrap();
    assert_eq!(again.messages()[0].flags, ["\\Flagged"], "rename seen");
    age_folder(acct.root());
    assert!(again.refresh().unwrap().flags_changed.is_empty());

    // A delivery after the cached scan is seen too.
    deliver(&store, ALICE, b"y\r\n").unwrap();
    assert_eq!(again.refresh().unwrap().added.len(), 1);
    assert_eq!(
        acct.open("INBOX", OpenMode::ReadOnly)
            .unwrap()
            .messages()
            .len(),
        2
    );
}
