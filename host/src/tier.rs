//! Tiers: the limits and scheduling priority a tenant buys.
//!
//! Tiers come from the `[tiers.NAME]` tables of the configuration file; `free`, `standard` and
//! `premium` exist by default and a file may override or add to them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;

/// The largest `params_bytes` a tier may set, bytes (16 MiB): a job's params travel whole in its
/// row, its assignment and every answer that shows the job; larger data belongs in its input.
pub const MAX_PARAMS_BYTES: u64 = 16 * MIB;

/// The limits of one tier. Every job of a tenant on this tier runs under them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Tier {
    /// Fuel units one job may consume over all its attempts (wasmtime fuel: roughly one unit per
    /// WebAssembly instruction).
    #[schema(minimum = 1)]
    pub fuel_per_job: u64,
    /// Linear memory one job may use, in bytes.
    #[schema(minimum = 1)]
    pub memory_bytes: u64,
    /// Wall-clock limit of one attempt, in milliseconds.
    #[schema(minimum = 1)]
    pub wall_clock_ms: u64,
    /// Jobs of the tenant that may run at once.
    #[schema(format = Int64, minimum = 0, maximum = 4_294_967_295_u64)]
    pub concurrent_jobs: u32,
    /// Jobs of the tenant that may wait in the queue at once.
    #[schema(format = Int64, minimum = 0, maximum = 4_294_967_295_u64)]
    pub queued_jobs: u32,
    /// Largest input of one job, in bytes.
    pub input_bytes: u64,
    /// Largest output of one job, in bytes.
    pub output_bytes: u64,
    /// Largest checkpoint state, in bytes.
    pub checkpoint_bytes: u64,
    /// Largest component a tenant may upload, in bytes.
    pub component_bytes: u64,
    /// Largest params of one job: bytes of their JSON text, as sent and as stored (compact).
    /// Over it, a submission answers 413 `params_too_large`. At most 16,777,216 (16 MiB); a tier
    /// defined without it gets 1,048,576 (1 MiB).
    #[serde(default = "default_params_bytes")]
    #[schema(minimum = 0, maximum = 16_777_216)]
    pub params_bytes: u64,
    /// Scheduling rank between tenants whose fair shares are equal (higher first); see `weight`.
    #[schema(minimum = -1000, maximum = 1000)]
    pub priority: i32,
    /// Fair-share weight, 1 to 1000: tenants competing for slots get them in proportion to their
    /// tiers' weights (a tenant's running jobs per unit of weight is kept level). Default 1.
    #[serde(default = "one")]
    #[schema(minimum = 1, maximum = 1000)]
    pub weight: u32,
    /// Jobs a tenant may submit per second, on average: the refill rate of its token bucket
    /// (one token per job; a batch takes one per job). Over it, submissions answer 429 with
    /// `Retry-After`. `None`: no limit. Enforced by each coordinator on its own.
    #[serde(default)]
    #[schema(format = Int64, minimum = 1, maximum = 4_294_967_295_u64)]
    pub submissions_per_second: Option<u32>,
    /// The bucket's size: jobs a tenant may submit at once after a quiet spell, and the largest
    /// batch. `None`: the same as `submissions_per_second`.
    #[serde(default)]
    #[schema(format = Int64, minimum = 1, maximum = 4_294_967_295_u64)]
    pub submission_burst: Option<u32>,
    /// Bytes a tenant may keep stored: its components (each distinct one once), its uploaded
    /// inputs and the params of its jobs not yet deleted by retention. An upload or submission
    /// that would pass it answers 403 `stored_bytes_quota`. `None`: no limit.
    #[serde(default)]
    pub stored_bytes: Option<u64>,
    /// Fuel units a tenant's jobs may consume per calendar month (UTC), as metered (see
    /// `GET /v1/usage`). Once used up, submissions answer 403 `fuel_budget` and queued jobs wait
    /// for the next month (or a larger budget); running jobs run on to their own `fuel_per_job`.
    /// `None`: no limit.
    #[serde(default)]
    #[schema(minimum = 1)]
    pub fuel_per_month: Option<u64>,
    /// Time compiling one uploaded component may take, in milliseconds (wall clock and CPU, one
    /// core). A slower compile is stopped and the upload answers 422 `compile_limit`; the
    /// compiled code may also be at most [`COMPILED_BYTES_PER_BYTE`] times `component_bytes`.
    /// Default 60,000.
    #[serde(default = "default_compile_ms")]
    #[schema(minimum = 1)]
    pub compile_ms: u64,
}

/// The compiled code of a component may be this many times the tier's `component_bytes`
/// (compiled machine code and metadata are typically 2 to 4 times the WebAssembly).
pub const COMPILED_BYTES_PER_BYTE: u64 = 8;

fn default_compile_ms() -> u64 {
    60_000
}

impl Tier {
    /// Checks a tier defined at run time. `max_memory_bytes` is the largest memory a job may
    /// have on this installation (fixed at start). Errors name the field.
    pub fn validate(&self, max_memory_bytes: u64) -> Result<(), String> {
        if self.memory_bytes > max_memory_bytes {
            return Err(format!(
                "memory_bytes is {}; this installation gives a job at most {max_memory_bytes} bytes (the largest tier's \
                 memory when it started: restart it with a configuration that names the larger tier)",
                self.memory_bytes
            ));
        }
        for (field, v) in [
            ("memory_bytes", self.memory_bytes),
            ("wall_clock_ms", self.wall_clock_ms),
            ("fuel_per_job", self.fuel_per_job),
            ("compile_ms", self.compile_ms),
        ] {
            if v == 0 {
                return Err(format!("{field} is 0; a job could never run"));
            }
        }
        for (field, v) in [
            ("fuel_per_job", Some(self.fuel_per_job)),
            ("memory_bytes", Some(self.memory_bytes)),
            ("wall_clock_ms", Some(self.wall_clock_ms)),
            ("input_bytes", Some(self.input_bytes)),
            ("output_bytes", Some(self.output_bytes)),
            ("checkpoint_bytes", Some(self.checkpoint_bytes)),
            ("component_bytes", Some(self.component_bytes)),
            ("params_bytes", Some(self.params_bytes)),
            ("stored_bytes", self.stored_bytes),
            ("fuel_per_month", self.fuel_per_month),
            ("compile_ms", Some(self.compile_ms)),
        ] {
            // Stored and compared as signed 64-bit integers (the OpenAPI `int64`).
            if v.is_some_and(|v| v > i64::MAX as u64) {
                return Err(format!("{field} is past the largest value, {}", i64::MAX));
            }
        }
        if self.params_bytes > MAX_PARAMS_BYTES {
            return Err(format!(
                "params_bytes is {}; a job's params may be at most {MAX_PARAMS_BYTES} bytes (larger data belongs in its input)",
                self.params_bytes
            ));
        }
        if self.fuel_per_month == Some(0) {
            return Err("fuel_per_month must be at least 1 (or null: no limit)".into());
        }
        if self.submissions_per_second == Some(0) || self.submission_burst == Some(0) {
            return Err("submissions_per_second and submission_burst must be at least 1 (or null: no limit)".into());
        }
        if !(1..=1000).contains(&self.weight) {
            return Err(format!("weight is {}; use 1 to 1000", self.weight));
        }
        if !(-1000..=1000).contains(&self.priority) {
            return Err(format!("priority is {}; use -1000 to 1000", self.priority));
        }
        Ok(())
    }
}

fn one() -> u32 {
    1
}

fn default_params_bytes() -> u64 {
    MIB
}

/// The tiers by name.
pub type Tiers = BTreeMap<String, Tier>;

/// The built-in tiers: `free`, `standard` and `premium`.
pub fn default_tiers() -> Tiers {
    let free = Tier {
        fuel_per_job: 20_000_000_000,
        memory_bytes: 32 * MIB,
        wall_clock_ms: 60_000,
        concurrent_jobs: 2,
        queued_jobs: 1_000,
        input_bytes: 64 * MIB,
        output_bytes: 16 * MIB,
        checkpoint_bytes: MIB,
        component_bytes: 16 * MIB,
        params_bytes: 64 * KIB,
        priority: 0,
        weight: 1,
        submissions_per_second: Some(10),
        submission_burst: Some(50),
        stored_bytes: Some(1024 * MIB),
        fuel_per_month: Some(1_000_000_000_000),
        compile_ms: 30_000,
    };
    let standard = Tier {
        fuel_per_job: 200_000_000_000,
        memory_bytes: 128 * MIB,
        wall_clock_ms: 600_000,
        concurrent_jobs: 16,
        queued_jobs: 100_000,
        input_bytes: 1024 * MIB,
        output_bytes: 256 * MIB,
        checkpoint_bytes: 8 * MIB,
        component_bytes: 32 * MIB,
        params_bytes: MIB,
        priority: 10,
        weight: 4,
        submissions_per_second: Some(500),
        submission_burst: Some(1_000),
        stored_bytes: Some(100 * 1024 * MIB),
        fuel_per_month: Some(100_000_000_000_000),
        compile_ms: 60_000,
    };
    let premium = Tier {
        fuel_per_job: 2_000_000_000_000,
        memory_bytes: 512 * MIB,
        wall_clock_ms: 3_600_000,
        concurrent_jobs: 64,
        queued_jobs: 1_000_000,
        input_bytes: 4096 * MIB,
        output_bytes: 1024 * MIB,
        checkpoint_bytes: 64 * MIB,
        component_bytes: 64 * MIB,
        params_bytes: 4 * MIB,
        priority: 20,
        weight: 16,
        submissions_per_second: None,
        submission_burst: None,
        stored_bytes: None,
        fuel_per_month: None,
        compile_ms: 120_000,
    };
    BTreeMap::from([("free".to_owned(), free), ("standard".to_owned(), standard), ("premium".to_owned(), premium)])
}

impl Tier {
    /// The bounds of compiling a component uploaded on this tier.
    pub fn compile_limits(&self) -> crate::runtime::CompileLimits {
        crate::runtime::CompileLimits {
            time: std::time::Duration::from_millis(self.compile_ms),
            compiled_bytes: self.component_bytes.saturating_mul(COMPILED_BYTES_PER_BYTE),
        }
    }
}

/// The largest memory limit of any tier, in bytes: the pooling allocator's slot size.
pub fn max_memory_bytes(tiers: &Tiers) -> u64 {
    tiers.values().map(|t| t.memory_bytes).max().unwrap_or(64 * MIB)
}

/// The HTTP body limit, in bytes, for the requests whose body is held in memory (component
/// uploads, JSON): the largest component size of any tier, and at least 16 MiB. Input uploads
/// (`POST /v1/inputs`) are streamed and limited by the tier's input size instead.
pub fn max_body_bytes(tiers: &Tiers) -> u64 {
    tiers.values().map(|t| t.component_bytes).max().unwrap_or(0).max(16 * MIB)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_built_in_tiers_are_valid_and_bad_fields_are_named() {
        let tiers = default_tiers();
        for t in tiers.values() {
            assert_eq!(t.validate(max_memory_bytes(&tiers)), Ok(()));
        }
        let mut t = tiers["free"].clone();
        t.wall_clock_ms = 1 << 63;
        assert!(t.validate(u64::MAX).is_err_and(|e| e.starts_with("wall_clock_ms is past the largest value")));
        t.wall_clock_ms = 1_000;
        t.stored_bytes = Some(u64::MAX);
        assert!(t.validate(u64::MAX).is_err_and(|e| e.starts_with("stored_bytes")));
        t.stored_bytes = Some(i64::MAX as u64);
        assert_eq!(t.validate(u64::MAX), Ok(()));
        t.weight = 0;
        assert!(t.validate(u64::MAX).is_err_and(|e| e.starts_with("weight")));
        t.weight = 1;
        t.params_bytes = MAX_PARAMS_BYTES + 1;
        assert!(t.validate(u64::MAX).is_err_and(|e| e.starts_with("params_bytes is 16777217")));
    }

    #[test]
    fn a_tier_stored_without_params_bytes_still_loads() {
        let mut spec = serde_json::to_value(&default_tiers()["free"]).unwrap();
        spec.as_object_mut().unwrap().remove("params_bytes");
        let tier: Tier = serde_json::from_value(spec).unwrap();
        assert_eq!(tier.params_bytes, MIB);
    }
}
