//! BODYSTRUCTURE and ENVELOPE of every message in the shared corpus,
//! against the expectations in `corpus-structure.txt` (checked by hand
//! against the messages; see the notes at the top of that file).
//!
//! The messages are read the way the store hands them over: with CRLF
//! line ends whatever the file holds.

use std::path::PathBuf;

use mailhost_imap::envelope::{body_structure, envelope};
use mailhost_imap::mime::scan;

fn corpus_dir() -> PathBuf {
    match std::env::var_os("MAILHOST_CORPUS") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../../../shared/corpus"),
    }
}

/// Bare LF becomes CRLF, as `folder.read` returns it.
pub fn crlf(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + data.len() / 20);
    for (i, &b) in data.iter().enumerate() {
        if b == b'\n' && (i == 0 || data[i - 1] != b'\r') {
            out.push(b'\r');
        }
        out.push(b);
    }
    out
}

/// `name`, then its BODYSTRUCTURE, then its ENVELOPE, one per line.
fn render(name: &str, data: &[u8]) -> String {
    let data = crlf(data);
    let mut source: &[u8] = &data;
    let root = scan(&mut source, false).expect("scan");
    let mut structure = Vec::new();
    body_structure(&mut structure, &root, true);
    let envelope = envelope(&root.header);
    // Literals inside are shown with their CRLF escaped, one line each.
    let show = |bytes: &[u8]| {
        String::from_utf8_lossy(bytes)
            .replace('\r', "\\r")
            .replace('\n', "\\n")
    };
    format!("{name}\n{}\n{}\n", show(&structure), show(&envelope))
}

#[test]
fn corpus_structures_match_the_fixture() {
    let mut names: Vec<String> = std::fs::read_dir(corpus_dir())
        .expect("corpus directory")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".eml"))
        .collect();
    names.sort();
    assert_eq!(names.len(), 27);

    let mut actual = String::new();
    for name in &names {
        let data = std::fs::read(corpus_dir().join(name)).unwrap();
        actual.push_str(&render(name, &data));
    }

    let fixture = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/corpus-structure.txt");
    if std::env::var_os("UPDATE_FIXTURE").is_some() {
        std::fs::write(&fixture, &actual).unwrap();
    }
    let expected = std::fs::read_to_string(&fixture).unwrap();
    let expected: String = expected
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| format!("{l}\n"))
        .collect();
    for (e, a) in expected.lines().zip(actual.lines()) {
        assert_eq!(e, a);
    }
    assert_eq!(expected.lines().count(), actual.lines().count());
}
