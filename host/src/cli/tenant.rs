//! `niyanta tenant create|list` (admin key).

use std::process::ExitCode;

use reqwest::Method;

use super::{Client, Remote, print_json};
use crate::api::views::{CreateTenant, CreatedTenant, TenantView};

#[derive(Debug, clap::Subcommand)]
pub enum TenantCmd {
    /// Create a tenant and print its API key (shown once).
    Create {
        /// Tenant name (1 to 64 of a-z, 0-9, '-', '_', '.').
        name: String,
        /// Tier name (free, standard, premium, or one from the configuration).
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
                    println!("{}\t{}\t{}\t{}", t.name, t.id, t.tier, t.created_at);
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
