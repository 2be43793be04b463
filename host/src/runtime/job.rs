//! One attempt of a job inside a store: its data, what it needs from the worker, and the run from
//! instantiation to the classified outcome. The host calls are in [`super::host`], the limits in
//! [`super::limits`], the classification in [`super::classify`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use wasmtime::component::ResourceTable;
use wasmtime::{Engine, Store, Trap};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::classify::{Ended, Verdict, classify, flush_stdio};
use super::host::{HostWait, Output};
use super::limits::{self, Deadline, JobLimits, MAX_RESOURCE_HANDLES, MAX_STDIO_BYTES, MemoryLimiter, Meter};
use super::pipe::CappedPipe;
use super::signals::Signals;
use super::slice::{self, Stopped};
use super::{JobInfo, WorkloadPre};
use crate::domain::{Checkpoint, FailureClass, INLINE_LIMIT, LogLine, Outcome, OutputRef, Progress, Usage};
use crate::ids::JobId;

/// What a running job needs from its worker. Implemented by the worker over the broker and the
/// object store; every method may fail, which ends the attempt.
#[async_trait]
pub trait JobIo: Send + Sync + 'static {
    /// Input bytes `offset..offset+len` (shorter at the end of the input).
    async fn read_input(&mut self, offset: u64, len: u32) -> anyhow::Result<Vec<u8>>;
    /// Stores output part `part` (parts are numbered from 0 and written in order).
    async fn flush_output(&mut self, part: u32, bytes: Vec<u8>) -> anyhow::Result<()>;
    /// Stores a checkpoint durably; returns after the commit. An error of type [`LeaseLost`]
    /// means another worker now holds the job.
    async fn checkpoint(&mut self, cp: Checkpoint) -> anyhow::Result<()>;
    /// Reports progress (the worker may coalesce reports).
    fn progress(&mut self, p: Progress);
    /// Appends a log line.
    fn log(&mut self, line: LogLine);
}

/// The coordinator refused a report because the lease moved on: stop and report nothing.
#[derive(Debug, thiserror::Error)]
#[error("the lease on this job was lost: another worker holds it now")]
pub struct LeaseLost;

/// One attempt to run.
#[derive(Clone, Debug)]
pub struct JobSpec {
    pub id: JobId,
    pub attempt: u32,
    /// JSON text.
    pub params: String,
    /// Bytes.
    pub input_size: u64,
    /// The checkpoint to resume from.
    pub resume: Option<Checkpoint>,
    /// Fuel units used by earlier attempts (as of the checkpoint resumed from).
    pub fuel_used_before: u64,
    pub limits: JobLimits,
}

/// How an attempt ended.
#[derive(Debug)]
pub struct RunResult {
    /// `None` when the lease was lost: the worker reports nothing.
    pub outcome: Option<Outcome>,
    pub usage: Usage,
    /// Time spent in the guest, instantiation included.
    pub elapsed: Duration,
}

/// The data of a job's store.
pub struct JobCtx {
    wasi: WasiCtx,
    table: ResourceTable,
    pub(super) limiter: MemoryLimiter,
    pub(super) io: Box<dyn JobIo>,
    pub(super) signals: Arc<Signals>,
    pub(super) output: Output,
    pub(super) limits: JobLimits,
    pub(super) deadline: Deadline,
    pub(super) attempt: u32,
    pub(super) input_size: u64,
    fuel_budget: u64,
    fuel_before: u64,
    /// Fuel left when the guest last called the host (set by the call hook).
    pub(super) fuel_at_call: u64,
    /// Bytes moved by host calls, charged as fuel by the call hook.
    pub(super) meter: Meter,
    /// When the call hook last yielded to the executor (or the attempt started).
    pub(super) slice_started: Instant,
    pub(super) log_lines: u32,
    pub(super) log_bytes: usize,
    pub(super) log_dropped: u64,
    pub(super) stdout: CappedPipe,
    pub(super) stderr: CappedPipe,
    pub(super) stderr_tail: Option<String>,
    /// The guest's last wait on a host service (see [`HostWait`]).
    pub(super) host_wait: Option<HostWait>,
}

impl WasiView for JobCtx {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

impl JobCtx {
    /// Fuel used by the job so far, all attempts, when `remaining` units are left.
    pub(super) fn fuel_used(&self, remaining: u64) -> u64 {
        self.fuel_before + self.fuel_budget.saturating_sub(remaining)
    }
}

/// Runs one attempt: instantiates the component in a fresh store with the job's limits, calls
/// `run`, and classifies the end. Never panics on guest behaviour; every guest fault becomes a
/// failure class. The attempt ends at its wall-clock limit or a forced stop even while the guest
/// computes (it yields every [`limits::YIELD_FUEL`] fuel units, and [`slice::drive`] checks both
/// at each yield), calls the host in a loop (the call hook checks both), or waits in a host call
/// (`drive` arms a timer and the stop signal).
pub async fn run(
    engine: &Engine,
    pre: &WorkloadPre<JobCtx>,
    spec: JobSpec,
    io: Box<dyn JobIo>,
    signals: Arc<Signals>,
) -> RunResult {
    let started = Instant::now();
    let budget = spec.limits.fuel.saturating_sub(spec.fuel_used_before);
    let meter = Meter::default();
    let stdout = CappedPipe::new(MAX_STDIO_BYTES, &meter);
    let stderr = CappedPipe::new(MAX_STDIO_BYTES, &meter);
    let output = match &spec.resume {
        Some(cp) => Output { buf: cp.output_tail.clone(), parts: cp.output_parts, bytes: cp.output_bytes },
        None => Output { buf: Vec::new(), parts: 0, bytes: 0 },
    };
    let mut table = ResourceTable::new();
    table.set_max_capacity(MAX_RESOURCE_HANDLES);
    let ctx = JobCtx {
        wasi: super::wasi::context(stdout.clone(), stderr.clone(), &meter),
        table,
        limiter: MemoryLimiter::new(spec.limits.memory_bytes),
        io,
        signals: signals.clone(),
        output,
        limits: spec.limits.clone(),
        deadline: Deadline { at: started + spec.limits.wall_clock, wall_clock: spec.limits.wall_clock },
        attempt: spec.attempt,
        input_size: spec.input_size,
        fuel_budget: budget,
        fuel_before: spec.fuel_used_before,
        fuel_at_call: budget,
        meter,
        slice_started: started,
        log_lines: 0,
        log_bytes: 0,
        log_dropped: 0,
        stdout,
        stderr,
        stderr_tail: None,
        host_wait: None,
    };
    let mut store = Store::new(engine, ctx);
    store.limiter(|c| &mut c.limiter);
    store.call_hook_async(limits::Hook);
    store.set_max_component_handles(limits::MAX_COMPONENT_HANDLES);
    let setup = store.set_fuel(budget).and_then(|()| store.fuel_async_yield_interval(Some(limits::YIELD_FUEL)));
    store.set_hostcall_fuel(
        usize::try_from(spec.limits.checkpoint_bytes.max(8 << 20) + (1 << 20)).unwrap_or(usize::MAX),
    );
    let info = JobInfo {
        id: spec.id.to_string(),
        attempt: spec.attempt,
        params: spec.params.clone(),
        input_size: spec.input_size,
        resume: spec.resume.as_ref().map(|c| c.state.clone()),
    };

    let ended = if let Err(e) = setup {
        Ended::Returned(Err(e))
    } else if budget == 0 {
        Ended::Returned(Err(wasmtime::Error::from(Trap::OutOfFuel)))
    } else {
        let call = std::pin::pin!(async {
            let instance = pre.instantiate_async(&mut store).await?;
            instance.call_run(&mut store, &info).await
        });
        match slice::drive(call, started + spec.limits.wall_clock, &signals).await {
            Ok(r) => Ended::Returned(r),
            Err(Stopped::Timeout) => Ended::Timeout,
            Err(Stopped::Forced) => Ended::Forced,
        }
    };

    let remaining = store.get_fuel().unwrap_or(0);
    let elapsed = started.elapsed();
    let ctx = store.data_mut();
    let usage = Usage {
        fuel_used: ctx.fuel_used(remaining),
        memory_peak_bytes: ctx.limiter.peak as u64,
        wall_ms: elapsed.as_millis() as u64,
    };
    flush_stdio(ctx);
    let outcome = match classify(ctx, ended, &spec, elapsed) {
        Verdict::LeaseLost => None,
        Verdict::Suspended => Some(Outcome::Suspended),
        Verdict::Succeeded => match finish_output(ctx).await {
            Ok(output) => Some(Outcome::Succeeded { output }),
            Err(e) if e.is::<LeaseLost>() => None,
            Err(e) => Some(Outcome::Failed {
                class: FailureClass::HostError,
                message: format!("storing the output in the object store failed: {e:#}"),
                output: OutputRef::default(),
            }),
        },
        // The job runs again: its output so far is in its last checkpoint.
        Verdict::Failed(FailureClass::HostError, message) => {
            Some(Outcome::Failed { class: FailureClass::HostError, message, output: OutputRef::default() })
        }
        Verdict::Failed(class, message) => {
            let output = finish_output(ctx).await.unwrap_or_default();
            Some(Outcome::Failed { class, message, output })
        }
    };
    RunResult { outcome, usage, elapsed }
}

async fn finish_output(ctx: &mut JobCtx) -> anyhow::Result<OutputRef> {
    if ctx.output.parts == 0 && ctx.output.buf.len() <= INLINE_LIMIT {
        return Ok(OutputRef { inline: std::mem::take(&mut ctx.output.buf), parts: 0, bytes: ctx.output.bytes });
    }
    if !ctx.output.buf.is_empty() {
        let part = ctx.output.parts;
        let bytes = std::mem::take(&mut ctx.output.buf);
        ctx.io.flush_output(part, bytes).await?;
        ctx.output.parts += 1;
    }
    Ok(OutputRef { inline: Vec::new(), parts: ctx.output.parts, bytes: ctx.output.bytes })
}
