//! `niyanta tier list|set`: the tiers and their limits; `set` needs the admin key.

use std::process::ExitCode;

use anyhow::Context as _;
use reqwest::Method;

use super::{Client, Remote, print_json};
use crate::tier::{Tier, Tiers};

#[derive(Debug, clap::Subcommand)]
pub enum TierCmd {
    /// List the tiers and their limits.
    List {
        #[command(flatten)]
        remote: Remote,
    },
    /// Define a tier or change its limits: starts from the tier itself (or `--like` another) and
    /// applies FIELD=VALUE settings, e.g. `niyanta tier set gold --like premium concurrent_jobs=128`.
    Set {
        /// Tier name (1 to 64 of a-z, 0-9, '-', '_', '.').
        name: String,
        /// Start from this tier's limits (required for a new tier).
        #[arg(long)]
        like: Option<String>,
        /// Limits to set, as FIELD=VALUE (fields as `niyanta tier list --json` shows them).
        settings: Vec<String>,
        #[command(flatten)]
        remote: Remote,
    },
}

pub async fn run(cmd: TierCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        TierCmd::List { remote } => {
            let client = Client::new(&remote.url, remote.api_key.clone());
            let tiers: Tiers = client.json(client.request(Method::GET, "/v1/tiers")).await?;
            if remote.json {
                print_json(&tiers)?;
            } else {
                println!("tier\tpriority\tconcurrent\tqueued\tmemory_bytes\tfuel_per_job\twall_clock_ms");
                for (name, t) in &tiers {
                    println!(
                        "{name}\t{}\t{}\t{}\t{}\t{}\t{}",
                        t.priority, t.concurrent_jobs, t.queued_jobs, t.memory_bytes, t.fuel_per_job, t.wall_clock_ms
                    );
                }
            }
        }
        TierCmd::Set { name, like, settings, remote } => {
            let client = Client::from_remote(&remote)?;
            let tiers: Tiers = client.json(client.request(Method::GET, "/v1/tiers")).await?;
            let base_name = like.as_deref().unwrap_or(&name);
            let base = tiers.get(base_name).with_context(|| {
                let known: Vec<&str> = tiers.keys().map(String::as_str).collect();
                format!(
                    "tier {base_name:?} does not exist (the tiers are {}); name one to start from with --like",
                    known.join(", ")
                )
            })?;
            let tier = apply_settings(base, &settings)?;
            let rb = client.request(Method::PUT, &format!("/v1/tiers/{name}")).json(&tier);
            let stored: Tier = client.json(rb).await?;
            if remote.json {
                print_json(&stored)?;
            } else {
                println!("tier {name} set");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `base` with each `FIELD=VALUE` applied (VALUE as JSON: a number). Errors name the setting and the fields there are.
fn apply_settings(base: &Tier, settings: &[String]) -> anyhow::Result<Tier> {
    let mut v = serde_json::to_value(base)?;
    let Some(obj) = v.as_object_mut() else { anyhow::bail!("a tier is not a JSON object") };
    for s in settings {
        let (field, value) = s.split_once('=').with_context(|| format!("{s:?} is not FIELD=VALUE"))?;
        if !obj.contains_key(field) {
            let fields: Vec<&str> = obj.keys().map(String::as_str).collect();
            anyhow::bail!("{field:?} is not a tier field; the fields are {}", fields.join(", "));
        }
        let value: serde_json::Value =
            serde_json::from_str(value).with_context(|| format!("{s:?}: the value must be a number"))?;
        obj.insert(field.to_owned(), value);
    }
    serde_json::from_value(v).context("the settings do not make a valid tier")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tier::default_tiers;

    #[test]
    fn settings_apply_over_the_base_and_bad_ones_are_named() {
        let base = default_tiers()["premium"].clone();
        let t = apply_settings(&base, &["concurrent_jobs=128".into(), "priority=30".into()]).expect("apply");
        assert_eq!((t.concurrent_jobs, t.priority, t.memory_bytes), (128, 30, base.memory_bytes));
        let e = apply_settings(&base, &["slots=3".into()]).expect_err("unknown field");
        assert!(format!("{e:#}").contains("\"slots\" is not a tier field"), "{e:#}");
        let e = apply_settings(&base, &["priority=high".into()]).expect_err("not a number");
        assert!(format!("{e:#}").contains("must be a number"), "{e:#}");
    }
}
