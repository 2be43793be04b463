//! The limits of one attempt and the mechanisms that enforce them: the memory limiter, the bytes
//! a job moves through host calls (charged as fuel), the fuel slices after which a running guest
//! yields (so that its deadline and a forced stop are seen while it computes), the call hook that
//! checks both at every host call, and the per-job caps of the pooling allocator.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use async_trait::async_trait;
use wasmtime::{CallHook, CallHookHandler, Enabled, PoolingAllocationConfig, ResourceLimiter, StoreContextMut, Trap};

use super::classify::Fault;
use super::job::JobCtx;

/// Largest read one `read-input` call returns, in bytes.
pub const MAX_READ_BYTES: u32 = 1024 * 1024;
/// Largest `wasi:random` request, in bytes: a larger one traps (wasmtime-wasi's default, 64 MiB,
/// let one synchronous call hold an executor thread for about a second).
pub const MAX_RANDOM_BYTES: u64 = 1024 * 1024;
/// Log lines kept per attempt; later ones are counted and dropped.
pub const MAX_LOG_LINES: u32 = 1_000;
/// Bytes of log text kept per attempt (stdout and stderr lines included); later lines are
/// counted and dropped. With [`MAX_LOG_LINES`], this bounds what one attempt adds to the state
/// store's log table.
pub const MAX_LOG_BYTES: usize = 256 * 1024;
/// Longest log line or progress message kept, in bytes (longer ones are cut).
pub const MAX_MESSAGE_BYTES: usize = 4 * 1024;
/// Longest failure message kept, in bytes: a guest's `job-error` text or a trap's message is cut
/// to this before it is stored or served.
pub const MAX_ERROR_BYTES: usize = 4 * 1024;
/// Bytes of stdout and of stderr kept per attempt.
pub const MAX_STDIO_BYTES: usize = 64 * 1024;
/// Resource handles (WASI streams, pollables, …) one job may hold at once; one more makes the
/// host call that creates it fail (the guest sees a trap).
pub const MAX_RESOURCE_HANDLES: usize = 10_000;
/// Component-model handles one job may hold at once in the instance's own tables (resources
/// its components define and create with `resource.new`, borrows, streams): wasmtime's store-wide
/// limit (`Store::set_max_component_handles`, 100,000 by default), lowered to this. One more
/// traps.
pub const MAX_COMPONENT_HANDLES: usize = 10_000;
/// Fuel units charged per byte a host call moves between the guest and the host (input read,
/// output written, checkpoint and log text, stdout and stderr, random bytes), on top of the fuel
/// the guest's own instructions use.
pub const FUEL_PER_BYTE: u64 = 1;
/// Fuel units a guest runs between two yields (`Store::fuel_async_yield_interval`). At each
/// yield [`super::slice::drive`] checks the attempt's deadline and forced stop, so they end a
/// computing guest within one slice. Fuel tracks work, not only instructions: wasmtime charges
/// `memory.fill`, `memory.copy`, `memory.init` and the table operations per byte or element
/// (`wasmtime_environ::VariableOperatorCost`), so no single instruction runs long for one unit.
/// A yield that only checks (see `slice`) is a fiber switch each way, cheap at this interval:
/// `primes` ran within its benchmark's noise of fuel metering alone.
pub const YIELD_FUEL: u64 = 1_000_000;
/// Longest a guest holds its thread before giving it back to the executor: [`super::slice::drive`]
/// gives it back at the first fuel yield past this, and the call hook at the first host call
/// past it (a host call that moves bytes refills the current fuel slice, so a guest that keeps
/// calling the host may never reach a fuel yield).
pub const SLICE: Duration = Duration::from_millis(10);

/// Core module instances one job's component may create (the pooling allocator refuses more at
/// compile time, so such a component is refused at upload). Rust components built for
/// `wasm32-wasip2` use 3 to 5.
pub const CORE_INSTANCES_PER_JOB: u32 = 16;
/// Linear memories one job's component may define.
pub const MEMORIES_PER_JOB: u32 = 2;
/// Tables one job's component may define.
pub const TABLES_PER_JOB: u32 = 4;
/// Elements of one table (the pooling allocator's slot size); a component declaring more is
/// refused at upload.
pub const TABLE_ELEMENTS: usize = 100_000;

/// Bytes of each linear memory kept resident (reset with `memset` instead of `madvise`) when an
/// instance slot is freed, so the next job in the slot takes no page faults on the memory it
/// touches first. 2 MiB covers the initial memory of typical Rust components: about 1.1 MiB for
/// data and stack, 1.9 MiB with the heap reservation Niyanta's examples are linked with
/// (`examples-wasm/.cargo/config.toml`).
/// Where the kernel has the `PAGEMAP_SCAN` ioctl (Linux 6.7 and later) only the pages the guest
/// wrote are reset, not the whole 2 MiB (wasmtime's `PoolingAllocationConfig::pagemap_scan`).
pub const KEEP_RESIDENT_BYTES: usize = 2 << 20;

/// The pooling allocator of the engine: `instances` component instances, each capped at
/// [`CORE_INSTANCES_PER_JOB`] core instances, [`MEMORIES_PER_JOB`] memories of up to
/// `max_memory_bytes` and [`TABLES_PER_JOB`] tables, and the pool holding `instances` times
/// each cap, so that `instances` jobs can always run at once whatever their components declare.
pub fn pooling_config(max_memory_bytes: u64, instances: u32) -> anyhow::Result<PoolingAllocationConfig> {
    let mut pool = PoolingAllocationConfig::new();
    pool.total_component_instances(instances)
        .max_core_instances_per_component(CORE_INSTANCES_PER_JOB)
        .max_memories_per_component(MEMORIES_PER_JOB)
        .max_tables_per_component(TABLES_PER_JOB)
        .total_core_instances(instances.saturating_mul(CORE_INSTANCES_PER_JOB))
        .total_memories(instances.saturating_mul(MEMORIES_PER_JOB))
        .total_tables(instances.saturating_mul(TABLES_PER_JOB))
        .table_elements(TABLE_ELEMENTS)
        .total_stacks(instances)
        .max_memory_size(usize::try_from(max_memory_bytes).context("memory limit too large")?)
        .linear_memory_keep_resident(KEEP_RESIDENT_BYTES)
        .table_keep_resident(64 << 10)
        .pagemap_scan(Enabled::Auto);
    Ok(pool)
}

/// Limits of one attempt, from the tenant's tier.
#[derive(Clone, Debug)]
pub struct JobLimits {
    /// Fuel units for the whole job, over all attempts.
    pub fuel: u64,
    /// Linear memory, bytes (all memories of the instance together).
    pub memory_bytes: u64,
    /// Wall-clock limit of this attempt.
    pub wall_clock: Duration,
    /// Output, bytes.
    pub output_bytes: u64,
    /// Checkpoint state, bytes.
    pub checkpoint_bytes: u64,
}

/// Refuses memory growth past the job's limit (all memories together) and records the peak.
pub(super) struct MemoryLimiter {
    pub limit: usize,
    pub total: usize,
    pub peak: usize,
    /// The total a refused growth asked for.
    pub refused: Option<usize>,
}

impl MemoryLimiter {
    pub fn new(limit: u64) -> Self {
        Self { limit: usize::try_from(limit).unwrap_or(usize::MAX), total: 0, peak: 0, refused: None }
    }
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(&mut self, current: usize, desired: usize, _max: Option<usize>) -> wasmtime::Result<bool> {
        let total = self.total.saturating_sub(current).saturating_add(desired);
        if total > self.limit {
            self.refused = Some(total);
            return Ok(false);
        }
        self.total = total;
        self.peak = self.peak.max(total);
        Ok(true)
    }

    fn table_growing(&mut self, _current: usize, desired: usize, _max: Option<usize>) -> wasmtime::Result<bool> {
        Ok(desired <= TABLE_ELEMENTS)
    }
}

/// Bytes moved by host calls and not yet charged, shared with the parts of the store that move
/// bytes without the store at hand (stdout, stderr, the random generators).
#[derive(Clone, Debug, Default)]
pub struct Meter(Arc<AtomicU64>);

impl Meter {
    /// Counts `bytes` moved.
    pub fn add(&self, bytes: usize) {
        self.0.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    fn take(&self) -> u64 {
        self.0.swap(0, Ordering::Relaxed)
    }
}

/// The store's call hook. When the guest calls the host it notes the fuel left (a checkpoint
/// stores the fuel used so far). When the host call returns it charges the bytes the call moved
/// ([`FUEL_PER_BYTE`]; a charge past the fuel left ends the job with `fuel_exhausted`), ends the
/// attempt if it is past its deadline ([`Fault::Timeout`]) or stopped by force ([`Fault::Forced`]),
/// and yields to the executor once the guest has run for a [`SLICE`] since it last did here.
pub(super) struct Hook;

#[async_trait]
impl CallHookHandler<JobCtx> for Hook {
    async fn handle_call_event(&self, mut store: StoreContextMut<'_, JobCtx>, hook: CallHook) -> wasmtime::Result<()> {
        match hook {
            CallHook::CallingHost => {
                let fuel = store.get_fuel()?;
                store.data_mut().fuel_at_call = fuel;
            }
            CallHook::ReturningFromHost => {
                charge(&mut store)?;
                let now = Instant::now();
                let ctx = store.data_mut();
                if now >= ctx.deadline.at {
                    return Err(Fault::Timeout(ctx.deadline.wall_clock).into());
                }
                if ctx.signals.is_forced() {
                    return Err(Fault::Forced.into());
                }
                if now.duration_since(ctx.slice_started) >= SLICE {
                    ctx.slice_started = now;
                    tokio::task::yield_now().await;
                }
            }
            CallHook::CallingWasm | CallHook::ReturningFromWasm => {}
        }
        Ok(())
    }
}

/// Charges the bytes moved since the last charge as fuel.
fn charge(store: &mut StoreContextMut<'_, JobCtx>) -> wasmtime::Result<()> {
    let moved = store.data().meter.take();
    if moved > 0 {
        let fuel = store.get_fuel()?;
        let charge = moved.saturating_mul(FUEL_PER_BYTE);
        store.set_fuel(fuel.saturating_sub(charge))?;
        if charge > fuel {
            return Err(Trap::OutOfFuel.into());
        }
    }
    Ok(())
}

/// When the attempt must end.
pub(super) struct Deadline {
    pub at: Instant,
    pub wall_clock: Duration,
}

/// `s` cut to at most `max` bytes (at a character boundary, with `…` appended when cut), copied
/// into an allocation of its own size: a cut string never keeps the guest's larger allocation.
pub fn cut(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    let mut out = String::with_capacity(end + '…'.len_utf8());
    out.push_str(&s[..end]);
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cut_string_is_a_copy_of_its_own_size() {
        let big = "é".repeat(1 << 20);
        let c = cut(&big, 5);
        assert_eq!(c, "éé…");
        assert!(c.capacity() <= 8, "capacity {}", c.capacity());
        assert_eq!(cut("short", 5), "short");
    }

    #[test]
    fn the_meter_hands_out_what_was_added_once() {
        let m = Meter::default();
        m.add(3);
        m.clone().add(4);
        assert_eq!(m.take(), 7);
        assert_eq!(m.take(), 0);
    }
}
