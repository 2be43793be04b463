//! The `niyanta` command: `serve` runs the embedded node, `coordinator` and `worker` the
//! distributed processes, `migrate` prepares PostgreSQL; the other commands talk to the HTTP API
//! (`NIYANTA_URL`, `NIYANTA_API_KEY`). Every command takes `--json` for machine-readable output.
//!
//! Exit status: 0 success; 1 a job that did not succeed (`job submit --wait`, `job watch`);
//! 2 a usage, connection or API error (the message says what to fix).

mod client;
mod cluster;
mod job;
mod key;
mod log;
mod serve;
mod sse;
mod tenant;
mod tier;
mod usage;
mod workload;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub use client::Client;

/// Run tenants' WebAssembly components as sandboxed jobs.
#[derive(Debug, Parser)]
#[command(name = "niyanta", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Where the API is and who is calling.
#[derive(Debug, Clone, clap::Args)]
pub struct Remote {
    /// URL of the Niyanta API.
    #[arg(long, env = "NIYANTA_URL", default_value = "http://127.0.0.1:7171")]
    url: String,
    /// API key (a tenant's key, or the admin key for `tenant` commands).
    #[arg(long, env = "NIYANTA_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// Print machine-readable JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run coordinator, worker and API in one process (SQLite, in-process channels, local blobs).
    Serve(serve::ServeArgs),
    /// Run a coordinator: the API, and while elected leader the scheduler (PostgreSQL, NATS, object storage).
    Coordinator(cluster::CoordinatorArgs),
    /// Run a worker: job slots fed by the leader coordinator over NATS.
    Worker(cluster::WorkerArgs),
    /// Apply the PostgreSQL migrations and exit (the coordinator also migrates on start).
    Migrate(cluster::StateArgs),
    /// Upload and inspect workloads (components).
    #[command(subcommand)]
    Workload(workload::WorkloadCmd),
    /// Submit and follow jobs.
    #[command(subcommand)]
    Job(job::JobCmd),
    /// Administer tenants (admin key).
    #[command(subcommand)]
    Tenant(tenant::TenantCmd),
    /// Create, list and revoke a tenant's API keys (admin key).
    #[command(subcommand)]
    Key(key::KeyCmd),
    /// List tiers; define and edit them (admin key).
    #[command(subcommand)]
    Tier(tier::TierCmd),
    /// Show what a tenant's jobs consumed (fuel, time, memory, bytes, outcomes) per workload.
    Usage(usage::UsageArgs),
    /// Print the OpenAPI document of the HTTP API.
    Openapi,
    /// Compile a component read from stdin and write the compiled code to stdout (run by the
    /// server itself, under limits).
    #[command(hide = true)]
    CompileComponent,
}

/// Parses the command line and runs the command.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::CompileComponent = cli.command {
        return crate::runtime::compile_child_main();
    }
    crate::runtime::compile::register_this_executable();
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let result = rt.block_on(async move {
        match cli.command {
            Command::Serve(args) => serve::run(args).await.map(|()| ExitCode::SUCCESS),
            Command::Coordinator(args) => cluster::coordinator(args).await.map(|()| ExitCode::SUCCESS),
            Command::Worker(args) => cluster::worker(args).await.map(|()| ExitCode::SUCCESS),
            Command::Migrate(args) => cluster::migrate(args).await.map(|()| ExitCode::SUCCESS),
            Command::Workload(cmd) => workload::run(cmd).await,
            Command::Job(cmd) => job::run(cmd).await,
            Command::Tenant(cmd) => tenant::run(cmd).await,
            Command::Key(cmd) => key::run(cmd).await,
            Command::Tier(cmd) => tier::run(cmd).await,
            Command::Usage(args) => usage::run(args).await,
            Command::Openapi => {
                println!("{}", crate::api::openapi_json());
                Ok(ExitCode::SUCCESS)
            }
            Command::CompileComponent => Ok(crate::runtime::compile_child_main()),
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// Prints `value` as pretty JSON.
fn print_json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}
