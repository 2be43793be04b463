//! The deployment files (`deploy/`): Kubernetes manifests, the compose file and the container
//! build file are parsed and checked against the binary (no container engine runs them here):
//! images carry this version, ports agree, every `NIYANTA_*` variable is one the command reads,
//! every Secret key referenced exists, and the tiers ConfigMap loads as a coordinator's
//! configuration.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use clap::CommandFactory;
use niyanta::config::cluster::{CoordinatorOverrides, CoordinatorSettings};
use serde::Deserialize;
use serde_yaml_ng::Value;

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

fn image() -> String {
    format!("ghcr.io/niyanta/niyanta:{}", env!("CARGO_PKG_VERSION"))
}

/// The environment variables `niyanta SUB` reads: its flags' and the admin key's.
fn envs_of(sub: &str) -> BTreeSet<String> {
    let cli = niyanta::cli::Cli::command();
    let cmd = cli.find_subcommand(sub).unwrap_or_else(|| panic!("niyanta has no `{sub}` command"));
    let mut envs: BTreeSet<String> =
        cmd.get_arguments().filter_map(|a| a.get_env()).map(|e| e.to_string_lossy().into_owned()).collect();
    if sub == "coordinator" || sub == "serve" {
        envs.insert("NIYANTA_ADMIN_KEY".to_owned());
    }
    envs
}

fn docs(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|d| Value::deserialize(d).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
        .collect()
}

fn s<'a>(v: &'a Value, path: &[&str]) -> &'a str {
    path.iter().fold(v, |v, k| &v[*k]).as_str().unwrap_or_else(|| panic!("no string at {path:?} in {v:?}"))
}

/// Checks a container of the niyanta image; returns its subcommand and its env (name → value).
fn check_container(c: &Value, command_key: &str, env: &[(String, String)]) -> String {
    assert_eq!(s(c, &["image"]), image(), "image of {c:?}");
    let sub = c[command_key][0].as_str().unwrap_or_else(|| panic!("no command in {c:?}")).to_owned();
    let known = envs_of(&sub);
    for (name, _) in env.iter().filter(|(n, _)| n.starts_with("NIYANTA_")) {
        assert!(known.contains(name), "`niyanta {sub}` reads no {name}; it reads {known:?}");
    }
    sub
}

fn listen_port(env: &[(String, String)]) -> Option<u16> {
    env.iter().find(|(n, _)| n == "NIYANTA_LISTEN").and_then(|(_, v)| v.rsplit(':').next()?.parse().ok())
}

#[test]
fn kubernetes_manifests_match_the_binary() {
    let all: Vec<Value> = ["coordinator", "worker", "config", "secret", "dependencies"]
        .iter()
        .flat_map(|f| docs(&deploy_dir().join(format!("k8s/{f}.yaml"))))
        .collect();
    let find = |kind: &str, name: &str| {
        all.iter()
            .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("no {kind} {name}"))
    };
    let secret = find("Secret", "niyanta-secrets");
    let config = find("ConfigMap", "niyanta-config");

    let mut subs = Vec::new();
    for name in ["niyanta-coordinator", "niyanta-worker"] {
        let dep = find("Deployment", name);
        let pod = &dep["spec"]["template"];
        assert_eq!(dep["spec"]["selector"]["matchLabels"], pod["metadata"]["labels"], "{name}: selector");
        let c = &pod["spec"]["containers"][0];
        let mut env = Vec::new();
        for e in c["env"].as_sequence().into_iter().flatten() {
            let n = s(e, &["name"]).to_owned();
            if let Some(key) = e["valueFrom"]["secretKeyRef"]["key"].as_str() {
                assert_eq!(s(e, &["valueFrom", "secretKeyRef", "name"]), "niyanta-secrets");
                assert!(secret["stringData"][key].is_string(), "{name}: Secret key {key} is missing");
            }
            env.push((n, e["value"].as_str().unwrap_or_default().to_owned()));
        }
        let sub = check_container(c, "args", &env);
        if sub == "coordinator" {
            assert_eq!(dep["spec"]["replicas"], 2, "two coordinators");
            let port = c["ports"][0]["containerPort"].as_u64();
            assert_eq!(port, listen_port(&env).map(u64::from), "containerPort and NIYANTA_LISTEN agree");
            let svc = find("Service", "niyanta");
            assert_eq!(svc["spec"]["selector"], pod["metadata"]["labels"], "the Service selects the coordinators");
            assert_eq!(svc["spec"]["ports"][0]["targetPort"], c["ports"][0]["name"]);
            for probe in ["readinessProbe", "livenessProbe"] {
                assert_eq!(c[probe]["httpGet"]["port"], c["ports"][0]["name"]);
            }
            // The mounted configuration is the ConfigMap's file, and it loads.
            let path = env.iter().find(|(n, _)| n == "NIYANTA_CONFIG").map(|(_, v)| v.clone()).expect("NIYANTA_CONFIG");
            let file = path.rsplit('/').next().expect("file name");
            let toml = s(config, &["data", file]);
            let dir = tempfile::tempdir().expect("tempdir");
            std::fs::write(dir.path().join(file), toml).expect("write");
            let over = CoordinatorOverrides {
                database_url: Some("postgres://x@h/db".into()),
                blob_url: Some("file:///b".into()),
                ..CoordinatorOverrides::default()
            };
            let cfg = CoordinatorSettings::load(Some(&dir.path().join(file)), &over)
                .expect("the ConfigMap's configuration loads");
            assert_eq!(cfg.tiers, niyanta::tier::default_tiers(), "the ConfigMap spells out the built-in tiers");
        }
        subs.push(sub);
    }
    assert_eq!(subs, ["coordinator", "worker"]);

    let hpa = find("HorizontalPodAutoscaler", "niyanta-worker");
    assert_eq!(s(hpa, &["spec", "scaleTargetRef", "name"]), "niyanta-worker");
    let metric = &hpa["spec"]["metrics"][0]["external"]["metric"]["name"];
    assert_eq!(metric.as_str(), Some("niyanta_jobs_queued"), "the HPA scales on the queue depth");
    for dep in ["postgres", "nats"] {
        assert_eq!(s(find("Service", dep), &["spec", "type"]), "ExternalName", "{dep} is a reference");
    }
}

#[test]
fn the_compose_file_and_the_container_build_match_the_binary() {
    let compose = docs(&deploy_dir().join("compose.yaml")).remove(0);
    let services = compose["services"].as_mapping().expect("services");
    let mut subs: HashMap<String, usize> = HashMap::new();
    for (name, svc) in services {
        if svc["image"].as_str() != Some(image().as_str()) {
            assert!(
                !svc["image"].as_str().unwrap_or_default().contains("niyanta"),
                "{name:?}: image {:?}",
                svc["image"]
            );
            continue;
        }
        let env: Vec<(String, String)> = svc["environment"]
            .as_mapping()
            .into_iter()
            .flatten()
            .map(|(k, v)| (k.as_str().unwrap_or_default().to_owned(), v.as_str().unwrap_or_default().to_owned()))
            .collect();
        let sub = check_container(svc, "command", &env);
        if sub == "coordinator" {
            let port = listen_port(&env).expect("NIYANTA_LISTEN");
            let published = s(&svc["ports"][0], &[]).to_owned();
            assert!(published.ends_with(&format!(":{port}")), "{name:?}: {published} does not reach port {port}");
        }
        *subs.entry(sub).or_default() += 1;
    }
    assert_eq!(subs.get("coordinator"), Some(&2), "{subs:?}");
    assert_eq!(subs.get("worker"), Some(&1), "{subs:?}");
    assert_eq!(subs.get("migrate"), Some(&1), "{subs:?}");

    let build = std::fs::read_to_string(deploy_dir().join("Containerfile")).expect("Containerfile");
    assert!(build.contains("--bin niyanta"), "builds the niyanta binary");
    assert!(build.lines().any(|l| l.trim() == "EXPOSE 7171"), "exposes the API port");
    assert!(build.contains("ENTRYPOINT [\"/usr/local/bin/niyanta\"]"));
    assert!(build.lines().any(|l| l.starts_with("FROM docker.io/library/rust:")), "a Rust build stage");
}
