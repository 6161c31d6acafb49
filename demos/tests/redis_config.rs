//! A wrong config file: sampan-node refuses to start and names the field.

use sampan_demos::config::DEFAULT_CONFIG;
use std::process::Command;

fn start_with(text: &str) -> (bool, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("node.toml");
    std::fs::write(&file, text).expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_sampan-node"))
        .arg("--config")
        .arg(&file)
        .output()
        .expect("run sampan-node");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_wrong_config_names_the_field() {
    let cases = [
        (
            DEFAULT_CONFIG.replace("port = 6381", "port = 5001"),
            "redis.port",
        ),
        (
            DEFAULT_CONFIG.replace("port = 6381", "port = \"six\""),
            "port",
        ),
        (
            DEFAULT_CONFIG.replace("[redis]\n", "[redis]\nbind = 1\n"),
            "bind",
        ),
        (
            DEFAULT_CONFIG.replace("tick_ms = 50", "tick_ms = 0"),
            "server.tick_ms",
        ),
        (
            DEFAULT_CONFIG.replace("node_id = 1", "node_id = 7"),
            "server.node_id",
        ),
        (
            DEFAULT_CONFIG.replace("group_id = 2", "group_id = 1"),
            "group[1].group_id",
        ),
    ];
    for (text, field) in cases {
        let (ok, stderr) = start_with(&text);
        assert!(!ok, "{field}: the node started");
        assert!(stderr.contains("node.toml"), "{field}: {stderr}");
        assert!(stderr.contains(field), "{field}: {stderr}");
    }
}
