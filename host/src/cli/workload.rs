//! `niyanta workload upload|list|get`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use reqwest::Method;

use super::{Client, Remote, print_json};
use crate::api::views::WorkloadView;

#[derive(Debug, clap::Subcommand)]
pub enum WorkloadCmd {
    /// Upload a component (.wasm) under a name.
    Upload {
        /// The component file.
        file: PathBuf,
        /// Workload name (1 to 64 of a-z, 0-9, '-', '_', '.'); default: the file name without `.wasm`.
        #[arg(long)]
        name: Option<String>,
        #[command(flatten)]
        remote: Remote,
    },
    /// List the tenant's workloads.
    List {
        #[command(flatten)]
        remote: Remote,
    },
    /// Show one workload.
    Get {
        name: String,
        #[command(flatten)]
        remote: Remote,
    },
}

fn show(w: &WorkloadView) {
    println!("{}\tsha256:{}\t{} bytes\t{}", w.name, w.digest, w.size_bytes, w.created_at);
}

pub async fn run(cmd: WorkloadCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        WorkloadCmd::Upload { file, name, remote } => {
            let name = match name {
                Some(n) => n,
                None => file
                    .file_stem()
                    .and_then(|s| s.to_str())
                    .map(str::to_owned)
                    .context("cannot derive a workload name from the file name; pass --name")?,
            };
            let bytes = tokio::fs::read(&file).await.with_context(|| format!("reading {}", file.display()))?;
            let client = Client::from_remote(&remote)?;
            let rb = client
                .request(Method::PUT, &format!("/v1/workloads/{name}"))
                .header("content-type", "application/wasm")
                .body(bytes);
            let w: WorkloadView = client.json(rb).await.with_context(|| format!("uploading {}", file.display()))?;
            if remote.json { print_json(&w)? } else { show(&w) }
        }
        WorkloadCmd::List { remote } => {
            let client = Client::from_remote(&remote)?;
            // Page by page, each answer naming the next page's cursor.
            let mut all: Vec<WorkloadView> = Vec::new();
            let mut cursor: Option<String> = None;
            loop {
                let mut rb = client.request(Method::GET, "/v1/workloads");
                if let Some(c) = &cursor {
                    rb = rb.query(&[("cursor", c)]);
                }
                let resp = client.send(rb).await?;
                let next = resp.headers().get(crate::api::page::NEXT_CURSOR).and_then(|v| v.to_str().ok());
                cursor = next.map(str::to_owned);
                all.extend(resp.json::<Vec<WorkloadView>>().await.context("decoding the API's answer")?);
                if cursor.is_none() {
                    break;
                }
            }
            if remote.json { print_json(&all)? } else { all.iter().for_each(show) }
        }
        WorkloadCmd::Get { name, remote } => {
            let client = Client::from_remote(&remote)?;
            let w: WorkloadView = client.json(client.request(Method::GET, &format!("/v1/workloads/{name}"))).await?;
            if remote.json { print_json(&w)? } else { show(&w) }
        }
    }
    Ok(ExitCode::SUCCESS)
}
