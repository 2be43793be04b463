//! `niyanta tenant create|list|suspend|resume|set-tier` (admin key).

use std::process::ExitCode;

use reqwest::Method;

use super::{Client, Remote, print_json};
use crate::api::views::{CreateTenant, CreatedTenant, SetTier, TenantView};

#[derive(Debug, clap::Subcommand)]
pub enum TenantCmd {
    /// Create a tenant and print its API key (shown once).
    Create {
        /// Tenant name (1 to 64 of a-z, 0-9, '-', '_', '.').
        name: String,
        /// Tier name (see `niyanta tier list`).
        #[arg(long, default_value = "standard")]
        tier: String,
        #[command(flatten)]
        remote: Remote,
    },
    /// List tenants.
    List {
        #[command(flatten)]
        remote: Remote,
    },
    /// Suspend a tenant: its keys are refused and its queued jobs wait (running ones run on).
    Suspend {
        /// Tenant name.
        name: String,
        #[command(flatten)]
        remote: Remote,
    },
    /// Resume a suspended tenant.
    Resume {
        /// Tenant name.
        name: String,
        #[command(flatten)]
        remote: Remote,
    },
    /// Move a tenant to another tier.
    SetTier {
        /// Tenant name.
        name: String,
        /// Tier name (see `niyanta tier list`).
        tier: String,
        #[command(flatten)]
        remote: Remote,
    },
}

pub async fn run(cmd: TenantCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        TenantCmd::Create { name, tier, remote } => {
            let client = Client::from_remote(&remote)?;
            let rb = client.request(Method::POST, "/v1/tenants").json(&CreateTenant { name, tier });
            let created: CreatedTenant = client.json(rb).await?;
            if remote.json {
                print_json(&created)?;
            } else {
                println!("tenant {} ({}) on tier {}", created.tenant.name, created.tenant.id, created.tenant.tier);
                println!("api key (shown once, keep it): {}", created.api_key);
            }
        }
        TenantCmd::List { remote } => {
            let client = Client::from_remote(&remote)?;
            let all: Vec<TenantView> = client.json(client.request(Method::GET, "/v1/tenants")).await?;
            if remote.json {
                print_json(&all)?;
            } else {
                for t in &all {
                    let status = if t.suspended { "suspended" } else { "active" };
                    println!("{}\t{}\t{}\t{}\t{}", t.name, t.id, t.tier, status, t.created_at);
                }
            }
        }
        TenantCmd::Suspend { name, remote } => {
            change(&remote, Method::POST, &format!("/v1/tenants/{name}/suspend"), None).await?
        }
        TenantCmd::Resume { name, remote } => {
            change(&remote, Method::POST, &format!("/v1/tenants/{name}/resume"), None).await?
        }
        TenantCmd::SetTier { name, tier, remote } => {
            change(&remote, Method::PUT, &format!("/v1/tenants/{name}/tier"), Some(SetTier { tier })).await?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn change(remote: &Remote, method: Method, path: &str, body: Option<SetTier>) -> anyhow::Result<()> {
    let client = Client::from_remote(remote)?;
    let mut rb = client.request(method, path);
    if let Some(b) = body {
        rb = rb.json(&b);
    }
    let t: TenantView = client.json(rb).await?;
    if remote.json {
        print_json(&t)?;
    } else {
        let status = if t.suspended { "suspended" } else { "active" };
        println!("tenant {} on tier {}: {status}", t.name, t.tier);
    }
    Ok(())
}
