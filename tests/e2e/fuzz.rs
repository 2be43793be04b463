//! The API fuzzed with schemathesis (PyPI) against the committed OpenAPI document
//! (`docs/openapi.json`): generated valid and invalid requests to every operation, with the
//! tenant's key on the tenant endpoints and the admin key on the admin ones. No answer may be a
//! 5xx, have a status the document does not list for the operation, or break the document's
//! schema, content type or headers; requests that break the schema must be refused.

use std::process::Command;
use std::time::Duration;

use reqwest::Method;
use serde_json::json;

use crate::common::{ADMIN_KEY, Server, Tenant};

/// The operations only the admin key may call.
const ADMIN_PATHS: &str = "^/v1/(tenants|tiers|cluster)";

/// Runs schemathesis against `server` with `key`; `filter` is `--include-path-regex` or
/// `--exclude-path-regex`. Returns whether it passed, and its output.
fn schemathesis(server: &Server, key: &str, filter: (&str, &str)) -> (bool, String) {
    let st = std::env::var("NIYANTA_TEST_SCHEMATHESIS")
        .expect("NIYANTA_TEST_SCHEMATHESIS is unset: scripts/test.sh installs schemathesis and sets it");
    let doc = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/openapi.json");
    let report = server.dir.path().join("schemathesis");
    let out = Command::new(st)
        .args(["run", doc, "--url", &server.url, "--header", &format!("Authorization: Bearer {key}")])
        .args([filter.0, filter.1])
        // Every check but `positive_data_acceptance`: some rules cannot be written in OpenAPI (a
        // component must be a valid one, `from_ms` at most `to_ms`), so a schema-valid request
        // may rightly be refused. One worker: CPython 3.11 can fail parsing in threads.
        .args(["--checks", "all", "--exclude-checks", "positive_data_acceptance"])
        .args(["--max-examples", "40", "--seed", "7", "--workers", "1"])
        .args(["--phases", "examples,coverage,fuzzing", "--request-timeout", "10"])
        .args(["--suppress-health-check", "all", "--no-color", "--generation-database", "none", "--report-dir"])
        .arg(&report)
        .current_dir(server.dir.path())
        .output()
        .expect("running schemathesis");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

#[tokio::test]
async fn schemathesis_finds_no_server_error_and_no_answer_outside_the_document() {
    let server = Server::start();
    let tenant = server.tenant("fuzz", "test").await;
    tenant.upload("echo").await;
    let job = tenant.submit(json!({"workload": "echo", "input": "hello"})).await;
    tenant.wait_end(&job.id, Duration::from_secs(30)).await;

    let (ok, out) = schemathesis(&server, &tenant.key, ("--exclude-path-regex", ADMIN_PATHS));
    assert!(ok, "schemathesis with a tenant key:\n{out}");
    let (ok, out) = schemathesis(&server, ADMIN_KEY, ("--include-path-regex", ADMIN_PATHS));
    assert!(ok, "schemathesis with the admin key:\n{out}");

    // The server is still healthy and what was stored before is intact. The admin pass may have
    // suspended the tenant or revoked its key (it reads names and ids from earlier answers): the
    // check goes through a new key of the resumed tenant.
    let admin = Tenant::new(&server.url, ADMIN_KEY);
    let (status, _) = admin.call(Method::GET, "/health", None).await;
    assert_eq!(status, 200);
    let (status, body) = admin.call(Method::POST, "/v1/tenants/fuzz/resume", None).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = admin.call(Method::POST, "/v1/tenants/fuzz/keys", None).await;
    assert_eq!(status, 201, "{body}");
    let tenant = Tenant::new(&server.url, body["api_key"].as_str().expect("key"));
    assert_eq!(tenant.job(&job.id).await.state, niyanta::state::JobState::Succeeded);
    assert_eq!(tenant.output(&job.id).await, b"hello");
}
