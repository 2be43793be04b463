//! `niyanta usage`: what a tenant's jobs consumed over a time range (the tenant's own key, or
//! the admin key with `--tenant`).

use anyhow::Context as _;
use reqwest::Method;
use std::process::ExitCode;

use super::{Client, Remote, print_json};
use crate::api::usage::UsageReport;
use crate::ids::{parse_rfc3339, rfc3339};
use crate::state::Metered;

#[derive(Debug, clap::Args)]
pub struct UsageArgs {
    /// Tenant name (admin key); without it, the key's own tenant.
    #[arg(long)]
    tenant: Option<String>,
    /// Start: RFC 3339 (`2026-11-01T00:00:00Z`) or a UTC date (`2026-11-01`). Default: the start of
    /// this month.
    #[arg(long, value_parser = parse_time)]
    from: Option<i64>,
    /// End, exclusive, in the same forms. Default: now.
    #[arg(long, value_parser = parse_time)]
    to: Option<i64>,
    #[command(flatten)]
    remote: Remote,
}

/// Parses an RFC 3339 time or a date (midnight UTC) into Unix ms.
fn parse_time(s: &str) -> Result<i64, String> {
    let full = if s.len() == 10 { format!("{s}T00:00:00Z") } else { s.to_owned() };
    parse_rfc3339(&full).map_err(|e| format!("{e}; a date (2026-11-01) also works"))
}

pub async fn run(args: UsageArgs) -> anyhow::Result<ExitCode> {
    let client = Client::from_remote(&args.remote)?;
    let path = match &args.tenant {
        Some(name) => format!("/v1/tenants/{name}/usage"),
        None => "/v1/usage".to_owned(),
    };
    let mut query = Vec::new();
    if let Some(from) = args.from {
        query.push(("from_ms", from));
    }
    if let Some(to) = args.to {
        query.push(("to_ms", to));
    }
    let report: UsageReport =
        client.json(client.request(Method::GET, &path).query(&query)).await.context("reading usage")?;
    if args.remote.json {
        print_json(&report)?;
        return Ok(ExitCode::SUCCESS);
    }
    println!("usage of {} from {} to {}", report.tenant, rfc3339(report.from_ms), rfc3339(report.to_ms));
    println!(
        "WORKLOAD\tSUCCEEDED\tFAILED\tCANCELLED\tDEAD\tATTEMPTS\tFUEL\tWALL_MS\tMEMORY_PEAK_BYTES\tCHECKPOINTS\tCHECKPOINT_BYTES\tOUTPUT_BYTES\tHOST_ERRORS\tHOST_ERROR_FUEL\tHOST_ERROR_WALL_MS"
    );
    for w in &report.workloads {
        println!("{}\t{}", w.workload, row(&w.usage));
    }
    println!("TOTAL\t{}", row(&report.total));
    let s = &report.stored;
    let quota = s.quota_bytes.map_or("no limit".to_owned(), |q| format!("a quota of {q}"));
    println!(
        "stored now: {} bytes ({} of components, {} of inputs, {} of params), {quota}",
        s.total_bytes, s.bytes.components_bytes, s.bytes.inputs_bytes, s.bytes.params_bytes
    );
    Ok(ExitCode::SUCCESS)
}

fn row(m: &Metered) -> String {
    format!(
        "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
        m.succeeded,
        m.failed,
        m.cancelled,
        m.dead,
        m.attempts,
        m.fuel,
        m.wall_ms,
        m.memory_peak_bytes,
        m.checkpoints,
        m.checkpoint_bytes,
        m.output_bytes,
        m.host_errors,
        m.host_error_fuel,
        m.host_error_wall_ms
    )
}

#[cfg(test)]
mod tests {
    use super::parse_time;

    #[test]
    fn times_are_rfc3339_or_dates() {
        assert_eq!(parse_time("1970-01-02"), Ok(86_400_000));
        assert_eq!(parse_time("1970-01-01T00:00:01Z"), Ok(1_000));
        assert!(parse_time("yesterday").unwrap_err().contains("2026-11-01"));
    }
}
