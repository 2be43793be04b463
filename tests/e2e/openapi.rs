//! The served OpenAPI document is the committed `docs/openapi.json` (regenerate with `BLESS=1`).

use std::path::Path;

use crate::common::Server;

#[tokio::test]
async fn served_openapi_matches_the_committed_document() {
    let server = Server::start();
    let anon = niyanta::cli::Client::new(&server.url, None);
    let resp = anon.send(anon.request(reqwest::Method::GET, "/v1/openapi.json")).await.expect("openapi");
    let served: serde_json::Value = resp.json().await.expect("json");
    assert_eq!(served["openapi"].as_str().map(|v| v.starts_with("3.")), Some(true));
    for path in ["/v1/jobs", "/v1/jobs/{id}", "/v1/jobs/{id}/events", "/v1/workloads/{name}", "/v1/tenants"] {
        assert!(served["paths"].get(path).is_some(), "{path} is documented");
    }
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/openapi.json");
    let generated = niyanta::api::openapi_json();
    if std::env::var_os("BLESS").is_some() {
        std::fs::create_dir_all(file.parent().expect("docs dir")).expect("creating docs/");
        std::fs::write(&file, format!("{generated}\n")).expect("writing docs/openapi.json");
    }
    let committed: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&file).expect("docs/openapi.json exists (BLESS=1 writes it)"))
            .expect("json");
    assert_eq!(served, committed, "docs/openapi.json is stale: run the tests with BLESS=1");
}
