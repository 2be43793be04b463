//! One attempt of a job inside a store: the host functions of the WIT world, the limits, and the
//! classification of how the attempt ended.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use tokio::sync::watch;
use wasmtime::component::{Linker, ResourceTable};
use wasmtime::{Engine, ResourceLimiter, Store, StoreContextMut, Trap};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use super::niyanta::workload::types::Outcome as GuestOutcome;
use super::pipe::CappedPipe;
use super::{InterruptReason, JobError, JobInfo, LogLevel, WorkloadPre};
use crate::ids::{JobId, now_ms};
use crate::state::{Checkpoint, FailureClass, INLINE_LIMIT, LogLine, Outcome, OutputRef, Progress, Usage};

/// The WIT interface the host implements.
pub const HOST_INTERFACE: &str = "niyanta:workload/host@0.1.0";
/// The WIT interface of shared types (no functions).
pub const TYPES_INTERFACE: &str = "niyanta:workload/types@0.1.0";

/// Output is flushed to the object store in parts of this many bytes.
pub const OUTPUT_PART_BYTES: usize = 4 * 1024 * 1024;
/// Largest read one `read-input` call returns, in bytes.
pub const MAX_READ_BYTES: u32 = 1024 * 1024;
/// Log lines kept per attempt; later ones are counted and dropped.
pub const MAX_LOG_LINES: u32 = 1_000;
/// Longest log line or progress message kept, in bytes (longer ones are cut).
pub const MAX_MESSAGE_BYTES: usize = 4 * 1024;
/// Bytes of stdout and of stderr kept per attempt.
pub const MAX_STDIO_BYTES: usize = 64 * 1024;

/// Why a job is asked to stop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Interrupt {
    /// Cancelled through the API.
    Cancel,
    /// The worker is shutting down.
    Shutdown,
}

/// Signals from the worker to a running attempt: the interrupt the guest sees through
/// `interrupted()`, and a forced stop after the grace period.
#[derive(Debug)]
pub struct Signals {
    interrupt: AtomicU8,
    abandoned: std::sync::atomic::AtomicBool,
    force: watch::Sender<bool>,
}

impl Default for Signals {
    fn default() -> Self {
        Self { interrupt: AtomicU8::new(0), abandoned: false.into(), force: watch::Sender::new(false) }
    }
}

impl Signals {
    /// Asks the guest to stop (it sees the reason through `interrupted()`). A cancel overrides a
    /// shutdown, not the other way round.
    pub fn interrupt(&self, why: Interrupt) {
        let v = match why {
            Interrupt::Cancel => 1,
            Interrupt::Shutdown => 2,
        };
        let _ = self.interrupt.compare_exchange(0, v, Ordering::SeqCst, Ordering::SeqCst);
        if why == Interrupt::Cancel {
            self.interrupt.store(1, Ordering::SeqCst);
        }
    }

    /// The pending interrupt, if any.
    pub fn reason(&self) -> Option<Interrupt> {
        match self.interrupt.load(Ordering::SeqCst) {
            1 => Some(Interrupt::Cancel),
            2 => Some(Interrupt::Shutdown),
            _ => None,
        }
    }

    /// Stops the guest at its next fuel yield, whatever it is doing.
    pub fn force_stop(&self) {
        self.force.send_replace(true);
    }

    /// Stops the guest by force because the lease is gone: the attempt reports nothing.
    pub fn abandon(&self) {
        self.abandoned.store(true, Ordering::SeqCst);
        self.force_stop();
    }

    async fn forced(&self) {
        let mut rx = self.force.subscribe();
        let _ = rx.wait_for(|v| *v).await;
    }
}

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

/// A limit the host enforced by ending the attempt.
#[derive(Debug, thiserror::Error)]
enum Fault {
    #[error("{1}")]
    Limit(FailureClass, String),
    #[error("lease lost")]
    LeaseLost,
    #[error("host failure: {0:#}")]
    Host(anyhow::Error),
}

struct MemoryLimiter {
    limit: usize,
    total: usize,
    peak: usize,
    refused: Option<usize>,
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
        Ok(desired <= 1_000_000)
    }
}

struct Output {
    buf: Vec<u8>,
    parts: u32,
    bytes: u64,
}

/// The data of a job's store.
pub struct JobCtx {
    wasi: WasiCtx,
    table: ResourceTable,
    limiter: MemoryLimiter,
    io: Box<dyn JobIo>,
    signals: Arc<Signals>,
    output: Output,
    fault: Option<Fault>,
    limits: JobLimits,
    attempt: u32,
    input_size: u64,
    fuel_budget: u64,
    fuel_before: u64,
    log_lines: u32,
    log_dropped: u64,
    stdout: CappedPipe,
    stderr: CappedPipe,
    stderr_tail: Option<String>,
}

impl WasiView for JobCtx {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

fn cut(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push('…');
    }
    s
}

impl JobCtx {
    fn fail(&mut self, f: Fault) -> wasmtime::Error {
        let msg = f.to_string();
        self.fault = Some(f);
        wasmtime::Error::msg(msg)
    }

    fn fuel_used(&self, remaining: u64) -> u64 {
        self.fuel_before + self.fuel_budget.saturating_sub(remaining)
    }

    async fn flush_part(&mut self) -> wasmtime::Result<()> {
        let part = self.output.parts;
        let bytes = std::mem::take(&mut self.output.buf);
        if let Err(e) = self.io.flush_output(part, bytes).await {
            return Err(self.fail(Fault::Host(e)));
        }
        self.output.parts += 1;
        Ok(())
    }

    async fn write_output(&mut self, data: Vec<u8>) -> wasmtime::Result<()> {
        let total = self.output.bytes + data.len() as u64;
        if total > self.limits.output_bytes {
            let msg = format!("the output reached {total} bytes; the tier allows {} bytes", self.limits.output_bytes);
            return Err(self.fail(Fault::Limit(FailureClass::OutputLimit, msg)));
        }
        self.output.bytes = total;
        self.output.buf.extend_from_slice(&data);
        if self.output.buf.len() >= OUTPUT_PART_BYTES {
            self.flush_part().await?;
        }
        Ok(())
    }

    async fn checkpoint(&mut self, state: Vec<u8>, fuel_remaining: u64) -> wasmtime::Result<()> {
        if state.len() as u64 > self.limits.checkpoint_bytes {
            let msg = format!(
                "a checkpoint of {} bytes exceeds the tier's checkpoint limit of {} bytes",
                state.len(),
                self.limits.checkpoint_bytes
            );
            return Err(self.fail(Fault::Limit(FailureClass::OutputLimit, msg)));
        }
        if self.output.buf.len() > INLINE_LIMIT {
            self.flush_part().await?;
        }
        let cp = Checkpoint {
            seq: 0,
            state,
            output_bytes: self.output.bytes,
            output_parts: self.output.parts,
            output_tail: self.output.buf.clone(),
            fuel_used: self.fuel_used(fuel_remaining),
        };
        let size = cp.state.len();
        let started = Instant::now();
        match self.io.checkpoint(cp).await {
            Ok(()) => {
                crate::metrics::CHECKPOINT_BYTES.observe(size as f64);
                crate::metrics::CHECKPOINT_LATENCY.observe(started.elapsed().as_secs_f64());
                Ok(())
            }
            Err(e) if e.is::<LeaseLost>() => Err(self.fail(Fault::LeaseLost)),
            Err(e) => Err(self.fail(Fault::Host(e))),
        }
    }

    fn log(&mut self, level: &str, message: String) {
        if self.log_lines >= MAX_LOG_LINES {
            self.log_dropped += 1;
            return;
        }
        self.log_lines += 1;
        let line = LogLine {
            at_ms: now_ms(),
            attempt: self.attempt,
            level: level.to_owned(),
            message: cut(message, MAX_MESSAGE_BYTES),
        };
        self.io.log(line);
    }
}

fn level_name(l: LogLevel) -> &'static str {
    match l {
        LogLevel::Trace => "trace",
        LogLevel::Debug => "debug",
        LogLevel::Info => "info",
        LogLevel::Warn => "warn",
        LogLevel::Error => "error",
    }
}

/// The linker every job uses: WASI p2 (no network, no preopened directories) and the host
/// interface.
pub fn linker(engine: &Engine) -> anyhow::Result<Linker<JobCtx>> {
    let mut linker = Linker::<JobCtx>::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    linker.instance(TYPES_INTERFACE)?;
    let mut host = linker.instance(HOST_INTERFACE)?;
    host.func_wrap_async("read-input", |mut store: StoreContextMut<'_, JobCtx>, (offset, max_len): (u64, u32)| {
        Box::new(async move {
            let ctx = store.data_mut();
            if offset >= ctx.input_size {
                return Ok((Vec::new(),));
            }
            let len = max_len.min(MAX_READ_BYTES);
            match ctx.io.read_input(offset, len).await {
                Ok(b) => Ok((b,)),
                Err(e) => Err(ctx.fail(Fault::Host(e))),
            }
        })
    })?;
    host.func_wrap_async("write-output", |mut store: StoreContextMut<'_, JobCtx>, (data,): (Vec<u8>,)| {
        Box::new(async move { store.data_mut().write_output(data).await })
    })?;
    host.func_wrap_async("checkpoint", |mut store: StoreContextMut<'_, JobCtx>, (state,): (Vec<u8>,)| {
        Box::new(async move {
            let remaining = store.get_fuel()?;
            store.data_mut().checkpoint(state, remaining).await
        })
    })?;
    host.func_wrap(
        "progress",
        |mut store: StoreContextMut<'_, JobCtx>, (done, total, message): (u64, u64, String)| {
            let p = Progress { done, total, message: cut(message, 256) };
            store.data_mut().io.progress(p);
            Ok(())
        },
    )?;
    host.func_wrap("interrupted", |store: StoreContextMut<'_, JobCtx>, (): ()| {
        Ok((store.data().signals.reason().map(|r| match r {
            Interrupt::Cancel => InterruptReason::Cancel,
            Interrupt::Shutdown => InterruptReason::Shutdown,
        }),))
    })?;
    host.func_wrap("log", |mut store: StoreContextMut<'_, JobCtx>, (level, message): (LogLevel, String)| {
        store.data_mut().log(level_name(level), message);
        Ok(())
    })?;
    Ok(linker)
}

enum Ended {
    Returned(wasmtime::Result<Result<GuestOutcome, JobError>>),
    Timeout,
    Forced,
}

/// Runs one attempt: instantiates the component in a fresh store with the job's limits, calls
/// `run`, and classifies the end. Never panics on guest behaviour; every guest fault becomes a
/// failure class.
pub async fn run(
    engine: &Engine,
    pre: &WorkloadPre<JobCtx>,
    spec: JobSpec,
    io: Box<dyn JobIo>,
    signals: Arc<Signals>,
) -> RunResult {
    let started = Instant::now();
    let budget = spec.limits.fuel.saturating_sub(spec.fuel_used_before);
    let stdout = CappedPipe::new(MAX_STDIO_BYTES);
    let stderr = CappedPipe::new(MAX_STDIO_BYTES);
    let wasi = WasiCtxBuilder::new()
        .stdout(stdout.clone())
        .stderr(stderr.clone())
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false)
        .build();
    let output = match &spec.resume {
        Some(cp) => Output { buf: cp.output_tail.clone(), parts: cp.output_parts, bytes: cp.output_bytes },
        None => Output { buf: Vec::new(), parts: 0, bytes: 0 },
    };
    let ctx = JobCtx {
        wasi,
        table: ResourceTable::new(),
        limiter: MemoryLimiter {
            limit: usize::try_from(spec.limits.memory_bytes).unwrap_or(usize::MAX),
            total: 0,
            peak: 0,
            refused: None,
        },
        io,
        signals: signals.clone(),
        output,
        fault: None,
        limits: spec.limits.clone(),
        attempt: spec.attempt,
        input_size: spec.input_size,
        fuel_budget: budget,
        fuel_before: spec.fuel_used_before,
        log_lines: 0,
        log_dropped: 0,
        stdout,
        stderr,
        stderr_tail: None,
    };
    let mut store = Store::new(engine, ctx);
    store.limiter(|c| &mut c.limiter);
    let setup = store.set_fuel(budget).and_then(|()| store.fuel_async_yield_interval(Some(super::FUEL_YIELD_INTERVAL)));
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
        let call = async {
            let instance = pre.instantiate_async(&mut store).await?;
            instance.call_run(&mut store, &info).await
        };
        tokio::select! {
            r = call => Ended::Returned(r),
            () = tokio::time::sleep(spec.limits.wall_clock) => Ended::Timeout,
            () = signals.forced() => Ended::Forced,
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
    let verdict = classify(ctx, ended, &spec);
    let outcome = match verdict {
        Verdict::LeaseLost => None,
        Verdict::Suspended => Some(Outcome::Suspended),
        Verdict::Succeeded => match finish_output(ctx).await {
            Ok(output) => Some(Outcome::Succeeded { output }),
            Err(e) => Some(Outcome::Failed {
                class: FailureClass::Trap,
                message: format!("storing the output failed: {e:#}"),
                output: OutputRef::default(),
            }),
        },
        Verdict::Failed(class, message) => {
            let output = finish_output(ctx).await.unwrap_or_default();
            Some(Outcome::Failed { class, message, output })
        }
    };
    RunResult { outcome, usage, elapsed }
}

enum Verdict {
    Succeeded,
    Failed(FailureClass, String),
    Suspended,
    LeaseLost,
}

fn classify(ctx: &mut JobCtx, ended: Ended, spec: &JobSpec) -> Verdict {
    if ctx.signals.abandoned.load(Ordering::SeqCst) {
        return Verdict::LeaseLost;
    }
    let interrupt = ctx.signals.reason();
    match ended {
        Ended::Returned(Ok(Ok(GuestOutcome::Completed))) => Verdict::Succeeded,
        Ended::Returned(Ok(Ok(GuestOutcome::Suspended))) => match interrupt {
            Some(Interrupt::Shutdown) => Verdict::Suspended,
            Some(Interrupt::Cancel) => {
                Verdict::Failed(FailureClass::Cancelled, "cancelled; the job stopped when asked".to_owned())
            }
            None => Verdict::Failed(
                FailureClass::GuestError,
                "the workload returned `suspended` although no shutdown was asked for".to_owned(),
            ),
        },
        Ended::Returned(Ok(Err(_))) if interrupt == Some(Interrupt::Cancel) => {
            Verdict::Failed(FailureClass::Cancelled, "cancelled; the job stopped when asked".to_owned())
        }
        Ended::Returned(Ok(Err(_))) if interrupt == Some(Interrupt::Shutdown) => Verdict::Suspended,
        Ended::Returned(Ok(Err(JobError::InvalidInput(m)))) => Verdict::Failed(FailureClass::InvalidInput, m),
        Ended::Returned(Ok(Err(JobError::Retryable(m)))) => Verdict::Failed(FailureClass::Retryable, m),
        Ended::Returned(Ok(Err(JobError::Failed(m)))) => Verdict::Failed(FailureClass::GuestError, m),
        Ended::Timeout => Verdict::Failed(
            FailureClass::Timeout,
            format!("the attempt ran past the tier's wall-clock limit of {} ms", spec.limits.wall_clock.as_millis()),
        ),
        Ended::Forced => match interrupt {
            Some(Interrupt::Shutdown) => Verdict::Suspended,
            _ => Verdict::Failed(
                FailureClass::Cancelled,
                "cancelled; the job did not stop within the grace period and was stopped by force".to_owned(),
            ),
        },
        Ended::Returned(Err(e)) => classify_error(ctx, &e, spec),
    }
}

fn classify_error(ctx: &mut JobCtx, e: &wasmtime::Error, spec: &JobSpec) -> Verdict {
    match ctx.fault.take() {
        Some(Fault::Limit(class, msg)) => return Verdict::Failed(class, msg),
        Some(Fault::LeaseLost) => return Verdict::LeaseLost,
        Some(Fault::Host(err)) => return Verdict::Failed(FailureClass::Trap, format!("a host call failed: {err:#}")),
        None => {}
    }
    if let Some(total) = ctx.limiter.refused {
        return Verdict::Failed(
            FailureClass::MemoryLimit,
            format!(
                "the guest tried to grow its memory to {total} bytes; the tier allows {} bytes",
                spec.limits.memory_bytes
            ),
        );
    }
    if let Some(Trap::OutOfFuel) = e.downcast_ref::<Trap>() {
        return Verdict::Failed(
            FailureClass::FuelExhausted,
            format!("the job used up its fuel budget of {} units", spec.limits.fuel),
        );
    }
    let mut msg = match e.downcast_ref::<Trap>() {
        Some(trap) => format!("the guest trapped: {trap}"),
        None => format!("the guest failed: {e}"),
    };
    if let Some(line) = ctx.stderr_tail.take() {
        msg.push_str(&format!(" (stderr: {line})"));
    }
    Verdict::Failed(FailureClass::Trap, msg)
}

fn flush_stdio(ctx: &mut JobCtx) {
    for (name, pipe) in [("stdout", ctx.stdout.clone()), ("stderr", ctx.stderr.clone())] {
        let (kept, dropped) = pipe.take();
        if kept.is_empty() && dropped == 0 {
            continue;
        }
        let mut text = String::from_utf8_lossy(&kept).into_owned();
        if dropped > 0 {
            text.push_str(&format!("\n[{dropped} more bytes dropped]"));
        }
        if name == "stderr" {
            // The last two meaningful lines: for a Rust panic, the location and the message.
            let lines: Vec<&str> =
                text.lines().filter(|l| !l.trim().is_empty() && !l.starts_with("note: run with")).collect();
            let tail = lines[lines.len().saturating_sub(2)..].join(" ");
            ctx.stderr_tail = (!tail.is_empty()).then(|| cut(tail, 512));
        }
        for line in text.lines() {
            ctx.log(name, line.to_owned());
        }
    }
    if ctx.log_dropped > 0 {
        let n = ctx.log_dropped;
        ctx.log_lines = 0;
        ctx.log("warn", format!("{n} log lines dropped: the log keeps {MAX_LOG_LINES} lines per attempt"));
    }
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
