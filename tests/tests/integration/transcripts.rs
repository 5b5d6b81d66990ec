//! Every plugin's `C:`/`S:` transcripts, run by `mailhost plugin test`:
//! no port, a store in a temporary directory, the same sandbox and limits
//! as a listener. The format is in `docs/plugins.md`.

use std::path::{Path, PathBuf};

use mailhost_tests::{mailhost, plugin};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Compiled plugins are cached here between runs of the suite.
fn cache() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("transcript-cache")
}

/// The `.txt` files of a transcript directory, sorted.
fn transcripts(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|err| panic!("{}: {err}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "txt"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no transcripts in {}", dir.display());
    files
}

/// `mailhost plugin test WASM FILES...`: its exit success and stdout.
fn plugin_test(wasm: &Path, files: &[PathBuf]) -> (bool, String) {
    let cache = cache();
    let mut args = vec!["plugin", "test", wasm.to_str().unwrap()];
    args.extend(files.iter().map(|file| file.to_str().unwrap()));
    args.extend(["--cache", cache.to_str().unwrap()]);

    let output = mailhost(&args, b"");
    let mut report = String::from_utf8_lossy(&output.stdout).into_owned();
    report.push_str(&String::from_utf8_lossy(&output.stderr));
    (output.status.success(), report)
}

/// Run every transcript in `dir` against `wasm`; each must pass.
fn run_all(wasm: &Path, dir: &str) {
    let files = transcripts(&repo().join(dir));
    let (passed, report) = plugin_test(wasm, &files);
    assert!(passed, "{report}");

    // One `ok` line per file: a transcript that silently did not run
    // would otherwise look like a pass.
    let ok = report.lines().filter(|line| line.starts_with("ok ")).count();
    assert_eq!(ok, files.len(), "{report}");
}

#[test]
fn smtp_transcripts() {
    run_all(&plugin("smtp"), "plugins/smtp/transcripts");
}

#[test]
fn pop3_transcripts() {
    run_all(&plugin("pop3"), "plugins/pop3/transcripts");
}

#[test]
fn imap_transcripts() {
    run_all(&plugin("imap"), "plugins/imap/transcripts");
}

#[test]
fn echo_transcripts() {
    run_all(&plugin("echo"), "plugins/echo/transcripts");
}

/// The runner must fail on a wrong reply, name the line and show what
/// came instead; otherwise every transcript test above proves nothing.
#[test]
fn a_wrong_expectation_fails_and_names_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("wrong.txt");
    std::fs::write(&file, "S: OK echo ready\nC: hello\nS: ECHO goodbye\n")
        .unwrap();

    let (passed, report) = plugin_test(&plugin("echo"), &[file]);
    assert!(!passed, "{report}");
    assert!(report.contains("wrong.txt:3"), "{report}");
    assert!(report.contains("got \"ECHO hello\""), "{report}");
}

/// A plugin that traps fails its transcript unless it says `@expect trap`.
#[test]
fn a_trap_fails_the_transcript_unless_expected() {
    let dir = tempfile::tempdir().unwrap();
    let plain = dir.path().join("panic.txt");
    std::fs::write(
        &plain,
        "@setting mode = \"panic\"\n@listener protocol = \"other\"\n",
    )
    .unwrap();
    let expected = dir.path().join("panic-expected.txt");
    std::fs::write(
        &expected,
        "@setting mode = \"panic\"\n@expect trap\n",
    )
    .unwrap();

    let hostile = plugin("hostile");
    let (passed, report) = plugin_test(&hostile, &[plain]);
    assert!(!passed && report.contains("trapped"), "{report}");
    let (passed, report) = plugin_test(&hostile, &[expected]);
    assert!(passed, "{report}");
}

/// `@expect messages` counts what is in the folder after the session.
#[test]
fn a_wrong_message_count_fails() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("count.txt");
    let message = mailhost_tests::corpus("001-plain-ascii.eml");
    std::fs::write(
        &file,
        format!(
            "@role mailbox\n@user alice@example.org secret\n\
             @message alice@example.org {}\n\
             @expect messages alice@example.org 2\n",
            message.display()
        ),
    )
    .unwrap();

    let (passed, report) = plugin_test(&plugin("pop3"), &[file]);
    assert!(!passed, "{report}");
    assert!(report.contains("the folder holds 1"), "{report}");
}
