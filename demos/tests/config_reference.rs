//! The config reference cannot drift from the config types:
//! `docs/config.md` holds `sampan-node --print-config`'s text verbatim,
//! and that text documents every key the types have (each key of a fully
//! set `NodeConfig`, serialized, must appear in its section, commented
//! out or not). A key added to a config struct and not documented fails
//! here, naming it.

use sampan::config::{Secret, ServiceCredential, TlsFiles};
use sampan_demos::config::{DEFAULT_CONFIG, NodeConfig};
use std::path::Path;

/// A config with every optional key set, so that serializing it shows
/// them all.
fn every_key_set() -> NodeConfig {
    let mut cfg = NodeConfig::local_demo(1, "/tmp/sampan".into());
    cfg.server.bind = Some("0.0.0.0".parse().expect("ip"));
    cfg.server.cluster_secret = Some(Secret("s".repeat(32)));
    cfg.server.credentials = vec![ServiceCredential {
        name: "ops".into(),
        token: Secret("t".into()),
        admin: true,
    }];
    cfg.server.tls = Some(TlsFiles {
        cert_file: "node-1.pem".into(),
        key_file: "node-1.key".into(),
        ca_file: "ca.pem".into(),
    });
    cfg.redis.requirepass = Some(Secret("p".into()));
    cfg.redis.users = vec![Secret("reader on >pass1 +@read".into())];
    cfg.redis.tls_cert_file = Some("node-1.pem".into());
    cfg.redis.tls_key_file = Some("node-1.key".into());
    cfg.redis.tls_ca_cert_file = Some("ca.pem".into());
    cfg.redis.cluster_nodes = "1,127.0.0.1:6381".into();
    cfg.metrics.address = Some("127.0.0.1:9101".into());
    cfg
}

/// `(section header, key)` for every leaf key of `value`, the section as
/// written in TOML (`[server.log]`, `[[group]]`).
fn keys(value: &toml::Value, path: &str, array: bool, out: &mut Vec<(String, String)>) {
    let Some(table) = value.as_table() else {
        return;
    };
    let header = if array {
        format!("[[{path}]]")
    } else {
        format!("[{path}]")
    };
    for (k, v) in table {
        let sub = if path.is_empty() {
            k.clone()
        } else {
            format!("{path}.{k}")
        };
        match v {
            toml::Value::Table(_) => keys(v, &sub, false, out),
            toml::Value::Array(items) if items.first().is_some_and(toml::Value::is_table) => {
                keys(&items[0], &sub, true, out)
            }
            _ => out.push((header.clone(), k.clone())),
        }
    }
}

/// The lines of `text` under the section header `header` (commented out
/// or not), up to the next header.
fn section<'a>(text: &'a str, header: &str) -> Vec<&'a str> {
    let is_header = |l: &str| {
        let l = l.trim_start_matches('#').trim();
        l.starts_with('[') && l.ends_with(']') && !l.contains(' ')
    };
    let mut lines = Vec::new();
    let mut inside = false;
    for l in text.lines() {
        if is_header(l) {
            inside = l.trim_start_matches('#').trim() == header;
            continue;
        }
        if inside {
            lines.push(l);
        }
    }
    lines
}

#[test]
fn the_printed_config_documents_every_key_of_the_config_types() {
    let value = toml::Value::try_from(every_key_set()).expect("config to toml");
    let mut all = Vec::new();
    keys(&value, "", false, &mut all);
    assert!(all.len() > 50, "{all:?}");
    let mut missing = Vec::new();
    for (header, key) in &all {
        let documented = section(DEFAULT_CONFIG, header).iter().any(|l| {
            let l = l.trim_start_matches('#').trim_start();
            l.strip_prefix(key.as_str())
                .is_some_and(|rest| rest.trim_start().starts_with('='))
        });
        if !documented {
            missing.push(format!("{header} {key}"));
        }
    }
    assert!(
        missing.is_empty(),
        "keys of the config types that `sampan-node --print-config` (DEFAULT_CONFIG in \
         demos/src/config.rs) does not document: {missing:?}"
    );
}

#[test]
fn docs_config_md_is_the_printed_config() {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/config.md");
    let doc = std::fs::read_to_string(&file).expect("docs/config.md");
    let block = doc
        .split_once("```toml\n")
        .and_then(|(_, rest)| rest.split_once("```\n"))
        .map(|(block, _)| block)
        .expect("a ```toml block in docs/config.md");
    assert!(
        block == DEFAULT_CONFIG,
        "docs/config.md is out of date: regenerate its block with \
         `cargo run -p sampan-demos --bin sampan-node -- --print-config`"
    );
}
