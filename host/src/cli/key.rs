//! `niyanta key create|list|revoke` (admin key): a tenant's API keys.

use std::process::ExitCode;

use reqwest::Method;

use super::{Client, Remote, print_json};
use crate::api::views::{CreateKey, CreatedKey, KeyView};

#[derive(Debug, clap::Subcommand)]
pub enum KeyCmd {
    /// Create a key for a tenant and print it (shown once).
    Create {
        /// Tenant name.
        tenant: String,
        /// The key may only read (GET).
        #[arg(long)]
        read_only: bool,
        #[command(flatten)]
        remote: Remote,
    },
    /// List a tenant's keys (ids, never the keys), revoked ones included.
    List {
        /// Tenant name.
        tenant: String,
        #[command(flatten)]
        remote: Remote,
    },
    /// Revoke a tenant's key: it is refused from now on.
    Revoke {
        /// Tenant name.
        tenant: String,
        /// Key id (see `niyanta key list`).
        id: String,
        #[command(flatten)]
        remote: Remote,
    },
}

pub async fn run(cmd: KeyCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        KeyCmd::Create { tenant, read_only, remote } => {
            let client = Client::from_remote(&remote)?;
            let rb = client.request(Method::POST, &format!("/v1/tenants/{tenant}/keys")).json(&CreateKey { read_only });
            let created: CreatedKey = client.json(rb).await?;
            if remote.json {
                print_json(&created)?;
            } else {
                let access = if created.key.read_only { "read-only" } else { "read-write" };
                println!("key {} ({access}) for tenant {tenant}", created.key.id);
                println!("api key (shown once, keep it): {}", created.api_key);
            }
        }
        KeyCmd::List { tenant, remote } => {
            let client = Client::from_remote(&remote)?;
            let keys: Vec<KeyView> =
                client.json(client.request(Method::GET, &format!("/v1/tenants/{tenant}/keys"))).await?;
            if remote.json {
                print_json(&keys)?;
            } else {
                for k in &keys {
                    let access = if k.read_only { "read-only" } else { "read-write" };
                    let status =
                        k.revoked_at.as_deref().map_or_else(|| "active".to_owned(), |at| format!("revoked {at}"));
                    println!("{}\t{access}\t{}\t{status}", k.id, k.created_at);
                }
            }
        }
        KeyCmd::Revoke { tenant, id, remote } => {
            let client = Client::from_remote(&remote)?;
            let k: KeyView =
                client.json(client.request(Method::POST, &format!("/v1/tenants/{tenant}/keys/{id}/revoke"))).await?;
            if remote.json {
                print_json(&k)?;
            } else {
                println!("key {} of tenant {tenant} revoked", k.id);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
