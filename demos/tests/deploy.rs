//! The deployment files in `demos/deploy/`: the entrypoint writes a valid
//! node config for every pod of the StatefulSet and every compose service
//! (node ids 1..3, the same servers and groups everywhere), refuses to
//! start without a secret and names it, and the manifests set the
//! variables the entrypoint reads.
//!
//! The entrypoint runs in its print mode (`--print`): no node starts, no
//! network is used. The manifests are read as text, line by line.

use sampan::config::Durability;
use sampan_demos::config::NodeConfig;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The shells the entrypoint must run under: bash, and the image's
/// `/bin/sh` (dash on Debian).
const SHELLS: [&str; 2] = ["bash", "sh"];

/// The secrets the entrypoint needs, by variable.
const SECRET_VARS: [&str; 3] = [
    "SAMPAN_CLUSTER_SECRET",
    "SAMPAN_ADMIN_TOKEN",
    "SAMPAN_REDIS_PASSWORD",
];

fn deploy_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("deploy")
}

fn read(name: &str) -> String {
    let path = deploy_dir().join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn script() -> PathBuf {
    deploy_dir().join("sampan-entrypoint.sh")
}

/// Runs the entrypoint with `shell` in print mode with only `env` (and
/// `PATH`) set.
fn print_config(shell: &str, env: &BTreeMap<String, String>) -> Output {
    let mut cmd = Command::new(shell);
    cmd.arg(script()).arg("--print").env_clear();
    if let Some(path) = std::env::var_os("PATH") {
        cmd.env("PATH", path);
    }
    cmd.envs(env)
        .output()
        .unwrap_or_else(|e| panic!("run {shell}: {e}"))
}

/// The node config the entrypoint prints for `env`, parsed and validated.
fn node_config(shell: &str, env: &BTreeMap<String, String>, name: &str) -> (NodeConfig, String) {
    let out = print_config(shell, env);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "{shell}, {name}: the entrypoint failed: {stderr}"
    );
    let file = format!("{name}.toml");
    let cfg = NodeConfig::parse(&stdout, Path::new(&file))
        .unwrap_or_else(|e| panic!("{shell}, {name}: {e}\n{stdout}"));
    cfg.validate()
        .unwrap_or_else(|e| panic!("{shell}, {name}: {e}\n{stdout}"));
    (cfg, stdout)
}

fn unquote(s: &str) -> String {
    let s = s.trim();
    let s = s
        .strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .unwrap_or(s);
    s.to_string()
}

/// The container's environment in the StatefulSet, in order: `(name,
/// Some(value))` for `value:`, `(name, None)` for `valueFrom:`.
fn k8s_env(yaml: &str) -> Vec<(String, Option<String>)> {
    let lines: Vec<&str> = yaml.lines().map(str::trim).collect();
    let mut env = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let Some(name) = line.strip_prefix("- name: ") else {
            continue;
        };
        if !name.starts_with("SAMPAN_") && name != "RUST_LOG" {
            continue;
        }
        let value = lines
            .get(i + 1)
            .and_then(|next| next.strip_prefix("value: "))
            .map(unquote);
        env.push((name.to_string(), value));
    }
    env
}

/// The Secret's `stringData`: key to value.
fn k8s_secret(yaml: &str) -> BTreeMap<String, String> {
    let mut data = BTreeMap::new();
    let mut inside = false;
    for line in yaml.lines() {
        if line.trim() == "stringData:" {
            inside = true;
            continue;
        }
        if !inside {
            continue;
        }
        if !line.starts_with("  ") || line.trim_start().starts_with('#') {
            break;
        }
        let (key, value) = line.trim().split_once(':').expect("key: value");
        data.insert(key.to_string(), unquote(value));
    }
    data
}

/// `KEY: value` lines of the compose file whose key starts with `SAMPAN_`
/// or is `RUST_LOG`, in order.
fn compose_env(yaml: &str) -> Vec<(String, String)> {
    yaml.lines()
        .map(str::trim)
        .filter(|l| l.starts_with("SAMPAN_") || l.starts_with("RUST_LOG:"))
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.to_string(), unquote(v)))
        .collect()
}

/// The `SAMPAN_*` names in `text`, whole words only.
fn var_names(text: &str) -> BTreeSet<String> {
    text.split(|c: char| !(c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'))
        .filter(|w| w.starts_with("SAMPAN_"))
        .map(String::from)
        .collect()
}

/// `KEY=value` lines of an env file.
fn env_file(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The StatefulSet's environment for pod `sampan-<ordinal>` in namespace
/// `default`, with the Secret's files written under `secrets`.
fn k8s_pod_env(ordinal: u64, secrets: &Path) -> BTreeMap<String, String> {
    let yaml = read("k8s/sampan.yaml");
    let mut env = BTreeMap::new();
    for (name, value) in k8s_env(&yaml) {
        match value {
            Some(v) if name.ends_with("_FILE") => {
                let file = Path::new(&v).file_name().expect("a file name");
                env.insert(name, secrets.join(file).display().to_string());
            }
            Some(v) => {
                env.insert(name, v.replace("$(SAMPAN_NAMESPACE)", "default"));
            }
            None => {}
        }
    }
    env.insert("SAMPAN_POD_NAME".into(), format!("sampan-{ordinal}"));
    env.insert("SAMPAN_NAMESPACE".into(), "default".into());
    env
}

/// Writes the Secret's example values as the files Kubernetes mounts.
fn write_k8s_secrets(dir: &Path) {
    for (key, value) in k8s_secret(&read("k8s/sampan.yaml")) {
        std::fs::write(dir.join(key), value).expect("write a secret file");
    }
}

#[test]
fn every_pod_of_the_statefulset_gets_a_valid_config() {
    let yaml = read("k8s/sampan.yaml");
    let env = k8s_env(&yaml);
    let value = |name: &str| -> Option<String> {
        env.iter()
            .find(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("the StatefulSet sets no {name}"))
            .1
            .clone()
    };
    // The id comes from the pod's name.
    assert_eq!(value("SAMPAN_POD_NAME"), None, "from metadata.name");
    assert!(yaml.contains("fieldPath: metadata.name"), "{yaml}");
    let replicas = value("SAMPAN_REPLICAS").expect("a value");
    assert!(
        yaml.contains(&format!("replicas: {replicas}\n")),
        "SAMPAN_REPLICAS ({replicas}) is the StatefulSet's replicas"
    );
    let groups: usize = value("SAMPAN_GROUPS")
        .expect("a value")
        .parse()
        .expect("a number");
    // The secrets come from the mounted Secret's files.
    let secret = k8s_secret(&yaml);
    for var in SECRET_VARS {
        let file = value(&format!("{var}_FILE")).expect("a path");
        let (dir, key) = file.rsplit_once('/').expect("a path");
        assert!(
            secret.contains_key(key),
            "{var}_FILE: no key {key} in the Secret"
        );
        assert!(
            yaml.contains(&format!("mountPath: {dir}\n")),
            "{dir} is not mounted"
        );
    }

    let secrets = tempfile::tempdir().expect("tempdir");
    write_k8s_secrets(secrets.path());
    for shell in SHELLS {
        let mut configs = Vec::new();
        for ordinal in 0..3u64 {
            let env = k8s_pod_env(ordinal, secrets.path());
            let name = format!("sampan-{ordinal}");
            let (cfg, text) = node_config(shell, &env, &name);
            assert_eq!(cfg.server.node_id, ordinal + 1, "{shell}, {name}");
            assert!(
                cfg.server.servers.contains(&format!(
                    "{},sampan-{ordinal}.sampan.default.svc.cluster.local:4001,5001",
                    ordinal + 1
                )),
                "{shell}, {name}: {}",
                cfg.server.servers
            );
            assert!(
                text.contains("\nbind = \"0.0.0.0\"\n"),
                "{shell}, {name}: {text}"
            );
            assert_eq!(cfg.server.data_dir, PathBuf::from("/data"));
            assert_eq!(cfg.server.shards, 1, "one shard: one replication port");
            assert_eq!(cfg.server.replicate_port, 4001);
            assert_eq!(cfg.server.service_port, 5001);
            assert_eq!(cfg.redis.port, 6379);
            assert!(cfg.redis.requirepass.is_some(), "{shell}, {name}");
            assert_eq!(cfg.metrics.address.as_deref(), Some("0.0.0.0:9100"));
            assert!(cfg.server.cluster_secret.is_some(), "{shell}, {name}");
            assert!(
                cfg.server
                    .credentials
                    .iter()
                    .any(|c| c.admin && c.name == "admin"),
                "{shell}, {name}: an admin credential"
            );
            assert_eq!(cfg.groups.len(), groups, "{shell}, {name}");
            for (i, g) in cfg.groups.iter().enumerate() {
                assert_eq!(g.group_id, i as u64 + 1);
                assert_eq!(g.members, "1,2,3");
                assert_eq!(g.durability, Durability::Sync);
                assert!(!g.join);
            }
            configs.push(cfg);
        }
        for c in &configs[1..] {
            assert_eq!(c.server.servers, configs[0].server.servers, "{shell}");
            assert_eq!(c.groups, configs[0].groups, "{shell}");
            assert_eq!(c.server.cluster_secret, configs[0].server.cluster_secret);
            assert_eq!(c.server.cluster_id, configs[0].server.cluster_id);
        }
    }
}

#[test]
fn a_node_added_by_scaling_up_starts_with_no_groups() {
    let secrets = tempfile::tempdir().expect("tempdir");
    write_k8s_secrets(secrets.path());
    for shell in SHELLS {
        // The StatefulSet scaled to 4 with its env unchanged: the new pod
        // lists the first three and itself, and runs no group until
        // `sampan-cli add-node` makes it a member.
        let env = k8s_pod_env(3, secrets.path());
        let (cfg, _) = node_config(shell, &env, "sampan-3");
        assert_eq!(cfg.server.node_id, 4);
        assert!(
            cfg.server
                .servers
                .ends_with(";4,sampan-3.sampan.default.svc.cluster.local:4001,5001"),
            "{}",
            cfg.server.servers
        );
        assert!(cfg.groups.is_empty(), "it joins by sampan-cli add-node");
        // The first nodes keep their list and their groups.
        let env = k8s_pod_env(0, secrets.path());
        let (cfg, _) = node_config(shell, &env, "sampan-0");
        assert!(!cfg.server.servers.contains("4,"), "{}", cfg.server.servers);
        assert!(!cfg.groups.is_empty());
        assert!(cfg.groups.iter().all(|g| g.members == "1,2,3"));
    }
}

#[test]
fn a_missing_secret_stops_the_entrypoint_and_is_named() {
    let secrets = tempfile::tempdir().expect("tempdir");
    write_k8s_secrets(secrets.path());
    for shell in SHELLS {
        for var in SECRET_VARS {
            let mut env = k8s_pod_env(0, secrets.path());
            assert!(env.remove(&format!("{var}_FILE")).is_some(), "{var}_FILE");
            let out = print_config(shell, &env);
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(!out.status.success(), "{shell}: ran without {var}");
            assert!(stderr.contains(var), "{shell}: {var} not named: {stderr}");
            assert!(
                out.stdout.is_empty(),
                "{shell}: printed a config without {var}"
            );
        }
        // A short cluster secret, and a file that is not there.
        let mut env = k8s_pod_env(0, secrets.path());
        env.remove("SAMPAN_CLUSTER_SECRET_FILE");
        env.insert("SAMPAN_CLUSTER_SECRET".into(), "too-short".into());
        let out = print_config(shell, &env);
        assert!(!out.status.success(), "{shell}: a 9-byte cluster secret");
        assert!(String::from_utf8_lossy(&out.stderr).contains("16 bytes"));
        let mut env = k8s_pod_env(0, secrets.path());
        env.insert(
            "SAMPAN_ADMIN_TOKEN_FILE".into(),
            secrets.path().join("absent").display().to_string(),
        );
        let out = print_config(shell, &env);
        assert!(!out.status.success(), "{shell}: an unreadable token file");
        assert!(String::from_utf8_lossy(&out.stderr).contains("SAMPAN_ADMIN_TOKEN_FILE"));
        // No ordinal in the host name and no SAMPAN_NODE_ID.
        let mut env = k8s_pod_env(0, secrets.path());
        env.insert("SAMPAN_POD_NAME".into(), "sampan".into());
        let out = print_config(shell, &env);
        assert!(!out.status.success(), "{shell}: no node id");
        assert!(String::from_utf8_lossy(&out.stderr).contains("SAMPAN_NODE_ID"));
    }
}

#[test]
fn every_compose_service_gets_a_valid_config() {
    let yaml = read("compose.yaml");
    let example = env_file(&read("sampan.env.example"));
    let secret_names: Vec<&str> = example.keys().map(String::as_str).collect();
    assert_eq!(secret_names, {
        let mut v = SECRET_VARS.to_vec();
        v.sort_unstable();
        v
    });
    assert!(
        yaml.contains("- sampan.env\n"),
        "the services read sampan.env"
    );
    let mut shared = BTreeMap::new();
    let mut node_ids = Vec::new();
    for (k, v) in compose_env(&yaml) {
        if k == "SAMPAN_NODE_ID" {
            node_ids.push(v);
        } else {
            assert!(shared.insert(k.clone(), v).is_none(), "{k} is set twice");
        }
    }
    assert_eq!(node_ids, ["1", "2", "3"]);
    let hostnames: Vec<&str> = yaml
        .lines()
        .filter_map(|l| l.trim().strip_prefix("hostname: "))
        .collect();
    assert_eq!(hostnames, ["sampan-0", "sampan-1", "sampan-2"]);
    let groups: usize = shared
        .get("SAMPAN_GROUPS")
        .expect("compose.yaml sets SAMPAN_GROUPS")
        .parse()
        .expect("a number");
    for shell in SHELLS {
        let mut configs = Vec::new();
        for (i, id) in node_ids.iter().enumerate() {
            let mut env = shared.clone();
            env.extend(example.clone());
            env.insert("SAMPAN_NODE_ID".into(), id.clone());
            let name = format!("sampan-{i}");
            let (cfg, _) = node_config(shell, &env, &name);
            assert_eq!(cfg.server.node_id, i as u64 + 1, "{shell}, {name}");
            assert!(
                cfg.server
                    .servers
                    .contains(&format!("{},sampan-{i}:4001,5001", i + 1)),
                "{}",
                cfg.server.servers
            );
            assert_eq!(cfg.groups.len(), groups, "{shell}, {name}");
            configs.push(cfg);
        }
        for c in &configs[1..] {
            assert_eq!(c.server.servers, configs[0].server.servers, "{shell}");
            assert_eq!(c.groups, configs[0].groups, "{shell}");
        }
    }
}

#[test]
fn the_manifests_set_only_variables_the_entrypoint_reads() {
    let read_by_script = var_names(&std::fs::read_to_string(script()).expect("the entrypoint"));
    let k8s = read("k8s/sampan.yaml");
    let compose = read("compose.yaml");
    let example = read("sampan.env.example");
    let mut names: Vec<(String, &str)> = Vec::new();
    names.extend(
        k8s_env(&k8s)
            .into_iter()
            .map(|(n, _)| (n, "k8s/sampan.yaml")),
    );
    names.extend(
        compose_env(&compose)
            .into_iter()
            .map(|(n, _)| (n, "compose.yaml")),
    );
    names.extend(
        env_file(&example)
            .into_keys()
            .map(|n| (n, "sampan.env.example")),
    );
    // Read by the node itself, or set only for another variable's value.
    let not_the_scripts = ["RUST_LOG", "SAMPAN_LOG_FORMAT", "SAMPAN_NAMESPACE"];
    for (name, file) in &names {
        if not_the_scripts.contains(&name.as_str()) {
            continue;
        }
        assert!(
            read_by_script.contains(name),
            "{file} sets {name}, which sampan-entrypoint.sh does not read"
        );
    }
    // Every port the manifests use is one the image exposes.
    let dockerfile = read("Dockerfile");
    let expose = dockerfile
        .lines()
        .find_map(|l| l.strip_prefix("EXPOSE "))
        .expect("an EXPOSE line");
    let exposed: Vec<&str> = expose.split_whitespace().collect();
    for (name, value) in k8s_env(&k8s) {
        if name.ends_with("_PORT") {
            let port = value.expect("a port");
            assert!(
                exposed.contains(&port.as_str()),
                "{name} {port}: not exposed"
            );
            assert!(
                k8s.contains(&format!("containerPort: {port}\n")),
                "{name} {port}: no containerPort"
            );
        }
    }
    // The image runs the entrypoint under tini, as a user, with /data.
    assert!(dockerfile.contains("COPY --chmod=0755 demos/deploy/sampan-entrypoint.sh"));
    assert!(dockerfile.contains("\"/usr/local/bin/sampan-entrypoint\"]"));
    assert!(dockerfile.contains("/usr/bin/tini"));
    assert!(dockerfile.contains("USER 10001"));
    assert!(dockerfile.contains("VOLUME [\"/data\"]"));
    assert!(k8s.contains("runAsUser: 10001"));
    // Readiness is /health on the metrics port, in both.
    assert!(k8s.contains("path: /health"));
    assert!(compose.contains("http://127.0.0.1:9100/health"));
    assert!(k8s.contains("publishNotReadyAddresses: true"));
    assert!(k8s.contains("terminationGracePeriodSeconds: "));
    assert!(compose.contains("stop_grace_period: "));
}
