//! The CLI against a real server: exit statuses, `--wait`, `--json`, and messages that say what
//! to fix.

use std::process::Output;

use crate::common::{ADMIN_KEY, Server, cli, guests_dir};

fn niyanta(server: &Server, key: &str, args: &[&str]) -> Output {
    cli(&server.url, key, args)
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[tokio::test]
async fn cli_drives_a_tenant_from_creation_to_output() {
    let server = Server::start();
    let out = niyanta(&server, ADMIN_KEY, &["tenant", "create", "acme", "--tier", "test", "--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let created: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let key = created["api_key"].as_str().expect("key").to_owned();

    let guests = guests_dir();
    for w in ["echo", "panic", "primes"] {
        let file = guests.join(format!("{w}.wasm"));
        let out = niyanta(&server, &key, &["workload", "upload", file.to_str().expect("path"), "--name", w]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        assert!(text(&out.stdout).starts_with(&format!("{w}\tsha256:")), "{}", text(&out.stdout));
    }

    // --wait: the output on stdout, exit status 0.
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("in.txt");
    std::fs::write(&input, "hello from a file\n").expect("write");
    let out =
        niyanta(&server, &key, &["job", "submit", "echo", "--input-file", input.to_str().expect("path"), "--wait"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "hello from a file\n");

    // A job that fails: exit status 1 and the failure on stderr.
    let out = niyanta(&server, &key, &["job", "submit", "panic", "--wait"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("trap"), "{}", text(&out.stderr));

    // Submit without waiting, then get, watch, output and list.
    let out = niyanta(&server, &key, &["job", "submit", "primes", "--params", r#"{"below": 100000}"#]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let id = text(&out.stdout).trim().to_owned();
    let out = niyanta(&server, &key, &["job", "watch", &id, "--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let job: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(job["state"], "succeeded");
    let out = niyanta(&server, &key, &["job", "output", &id]);
    assert_eq!(text(&out.stdout), r#"{"below":100000,"count":9592}"#);
    let out = niyanta(&server, &key, &["job", "get", &id]);
    assert!(text(&out.stdout).contains("succeeded"), "{}", text(&out.stdout));
    let out = niyanta(&server, &key, &["job", "list", "--json"]);
    let page: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(page["jobs"].as_array().map(Vec::len), Some(3));
    let out = niyanta(&server, &key, &["job", "logs", &id]);
    assert!(out.status.success());

    // Mistakes come back as messages that say what to fix, with exit status 2.
    let out = niyanta(&server, &key, &["job", "submit", "echo", "--params", "{nope"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("--params is not valid JSON"), "{}", text(&out.stderr));
    let out = niyanta(&server, &key, &["job", "submit", "missing"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("upload it first"), "{}", text(&out.stderr));
    let out = niyanta(&server, "wrong-key", &["workload", "list"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("NIYANTA_API_KEY"), "{}", text(&out.stderr));
    let out = niyanta(&server, &key, &["workload", "upload", input.to_str().expect("path"), "--name", "bad"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("not WebAssembly"), "{}", text(&out.stderr));
}
