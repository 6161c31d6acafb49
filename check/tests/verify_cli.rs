//! The `sampan-check verify` binary end to end: exit status 0, 1 or 2, the
//! violation page written, the JSON verdict.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn testdata(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("testdata")
        .join(name)
}

/// Runs `sampan-check verify` on a copy of `name` in `dir` (so the default
/// page lands there).
fn verify(dir: &Path, name: &str, extra: &[&str]) -> (Output, PathBuf) {
    let copy = dir.join(name);
    std::fs::copy(testdata(name), &copy).expect("copy testdata");
    let out = Command::new(env!("CARGO_BIN_EXE_sampan-check"))
        .arg("verify")
        .arg(&copy)
        .args(extra)
        .output()
        .expect("run sampan-check");
    (out, copy)
}

#[test]
fn a_linearizable_history_exits_0_without_a_page() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (out, _) = verify(dir.path(), "linearizable.jsonl", &[]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("Linearizable: 3 keys"));
    assert!(!dir.path().join("linearizable.violation.html").exists());
}

#[test]
fn a_violation_exits_1_and_draws_the_page() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (out, _) = verify(dir.path(), "stale_read.jsonl", &[]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("key \"k\" is not linearizable"), "{stdout}");
    let page = std::fs::read_to_string(dir.path().join("stale_read.violation.html"))
        .expect("page written");
    assert!(page.contains("<svg") && page.contains("Longest partial linearization"));

    let elsewhere = dir.path().join("here.html");
    let (out, _) = verify(
        dir.path(),
        "duplicate_token.jsonl",
        &["--json", "--html", elsewhere.to_str().expect("utf-8")],
    );
    assert_eq!(out.status.code(), Some(1));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON verdict");
    assert_eq!(json["outcome"], "not_linearizable");
    let said = json["keys"][0]["diagnoses"][0]
        .as_str()
        .expect("a diagnosis");
    assert!(
        said.starts_with("duplicate token t1.1 in read by process 3 at line 6"),
        "{said}"
    );
    assert!(elsewhere.exists());
}

#[test]
fn bad_input_exits_2_naming_the_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (name, line) in [
        ("bad_invoke_twice.jsonl", "line 2"),
        ("bad_invoke_after_info.jsonl", "line 3"),
        ("bad_unknown_f.jsonl", "line 2"),
        ("bad_garbage.jsonl", "line 3"),
    ] {
        let (out, _) = verify(dir.path(), name, &[]);
        assert_eq!(out.status.code(), Some(2), "{name}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(line), "{name}: {stderr}");
    }
    let (out, _) = verify(dir.path(), "linearizable.jsonl", &["--time-limit", "x"]);
    assert_eq!(out.status.code(), Some(2), "clap refuses a bad option");
}
