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
    let ok = report
        .lines()
        .filter(|line| line.starts_with("ok "))
        .count();
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
    std::fs::write(&expected, "@setting mode = \"panic\"\n@expect trap\n")
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

/// The plugin written in Python (`plugins/python-echo`, built by `just
/// python-plugin` with componentize-py) passes its transcripts on the
/// same host and WIT as the Rust ones.
#[test]
fn python_plugin_transcripts() {
    let wasm = repo().join("target/python/mailhost_python_echo.wasm");
    assert!(
        wasm.exists(),
        "{} is missing: `just python-plugin` builds it",
        wasm.display()
    );
    run_all(&wasm, "plugins/python-echo/transcripts");
}

/// Copy a directory tree.
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// `just new-plugin NAME` as a newcomer runs it: the script makes a crate
/// from the template in a workspace holding only the SDK, the crate
/// builds for wasm32-wasip2, and its own first transcripts pass.
#[test]
fn new_plugin_from_the_template_builds_and_passes_its_first_test() {
    let repo = repo();
    let work = tempfile::tempdir().unwrap();
    let root = work.path();
    copy_tree(&repo.join("wit"), &root.join("wit"));
    copy_tree(&repo.join("plugins/sdk"), &root.join("plugins/sdk"));
    copy_tree(
        &repo.join("plugins/template"),
        &root.join("plugins/template"),
    );
    for file in ["Cargo.lock", "rust-toolchain.toml"] {
        std::fs::copy(repo.join(file), root.join(file)).unwrap();
    }

    // The workspace manifest with its profiles, but only the SDK as a
    // member: the script adds the new crate after it.
    let manifest = std::fs::read_to_string(repo.join("Cargo.toml")).unwrap();
    let start = manifest.find("members = [").unwrap();
    let end = start + manifest[start..].find(']').unwrap() + 1;
    let manifest = format!(
        "{}members = [\n    \"plugins/sdk\",\n]{}",
        &manifest[..start],
        &manifest[end..]
    )
    .replace("default-members = [\"host\"]\n", "");
    std::fs::write(root.join("Cargo.toml"), manifest).unwrap();

    let script = root.join("plugins/template/new-plugin.sh");
    let created = std::process::Command::new(&script)
        .arg("demo-proto")
        .arg(root)
        .output()
        .unwrap();
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );
    let again = std::process::Command::new(&script)
        .args(["demo-proto".as_ref(), root.as_os_str()])
        .output()
        .unwrap();
    assert!(!again.status.success(), "a second run overwrote the plugin");

    // A target directory of its own that outlives the test, so only the
    // first run compiles the SDK's dependencies for wasm.
    let target = Path::new(env!("CARGO_TARGET_TMPDIR")).join("template");
    let built = std::process::Command::new("cargo")
        .current_dir(root)
        .env("CARGO_TARGET_DIR", &target)
        .args(["build", "--release", "--target", "wasm32-wasip2"])
        .args(["-p", "mailhost-demo-proto"])
        .output()
        .unwrap();
    assert!(
        built.status.success(),
        "{}",
        String::from_utf8_lossy(&built.stderr)
    );

    let wasm = target.join("wasm32-wasip2/release/mailhost_demo_proto.wasm");
    let files = transcripts(&root.join("plugins/demo-proto/transcripts"));
    let (passed, report) = plugin_test(&wasm, &files);
    assert!(passed, "{report}");
    let first = std::fs::read_to_string(&files[0]).unwrap();
    assert!(first.contains("hello from demo-proto"), "{first}");
}

#[test]
fn template_transcripts() {
    run_all(&plugin("template"), "plugins/template/transcripts");
}
