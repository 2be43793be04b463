//! The `niyanta:workload/host` interface, implemented on the job's store data through the
//! bindings `bindgen!` generates from `wit/workload.wit` (a WIT change breaks the build here).
//!
//! Every call counts the bytes it moves on the job's [`Meter`](super::limits::Meter); the call
//! hook charges them as fuel when the call returns.

use std::time::Instant;

use super::classify::Fault;
use super::job::{JobCtx, LeaseLost};
use super::limits::{MAX_LOG_BYTES, MAX_LOG_LINES, MAX_MESSAGE_BYTES, MAX_READ_BYTES, cut};
use super::niyanta::workload::{host, types};
use super::signals::Interrupt;
use super::{InterruptReason, LogLevel};
use crate::domain::{Checkpoint, FailureClass, INLINE_LIMIT, LogLine, Progress};
use crate::ids::now_ms;

/// A wait of the guest on a host service (the object store, the broker) inside a host call.
#[derive(Clone, Copy, Debug)]
pub(super) struct HostWait {
    /// What the host was doing, for the failure message.
    pub what: &'static str,
    pub since: Instant,
    /// When the wait ended; `None` while it lasts.
    pub until: Option<Instant>,
}

impl HostWait {
    fn begin(what: &'static str) -> Self {
        Self { what, since: Instant::now(), until: None }
    }

    fn end(self) -> Self {
        Self { until: Some(Instant::now()), ..self }
    }

    /// Whether this wait put the attempt past `deadline`: it lasted at least `long` and was going
    /// on at the deadline. Such an attempt failed for the host's sake, not the guest's.
    pub fn overran(&self, deadline: Instant, long: std::time::Duration) -> bool {
        let until = self.until.unwrap_or_else(Instant::now);
        self.since <= deadline && until >= deadline && until.duration_since(self.since) >= long
    }
}

/// Output is flushed to the object store in parts of this many bytes.
pub const OUTPUT_PART_BYTES: usize = 4 * 1024 * 1024;
/// Longest progress message kept, in bytes.
pub const MAX_PROGRESS_BYTES: usize = 256;

/// Output written and not yet stored, and what was stored.
pub(super) struct Output {
    pub buf: Vec<u8>,
    pub parts: u32,
    pub bytes: u64,
}

impl types::Host for JobCtx {}

impl host::Host for JobCtx {
    async fn read_input(&mut self, offset: u64, max_len: u32) -> wasmtime::Result<Vec<u8>> {
        if offset >= self.input_size {
            return Ok(Vec::new());
        }
        let len = max_len.min(MAX_READ_BYTES);
        self.host_wait = Some(HostWait::begin("reading the input from the object store"));
        let read = self.io.read_input(offset, len).await;
        self.host_wait = self.host_wait.take().map(HostWait::end);
        match read {
            Ok(b) => {
                self.meter.add(b.len());
                Ok(b)
            }
            Err(e) => Err(self.host_fault(e)),
        }
    }

    async fn write_output(&mut self, data: Vec<u8>) -> wasmtime::Result<()> {
        self.meter.add(data.len());
        let total = self.output.bytes + data.len() as u64;
        if total > self.limits.output_bytes {
            let msg = format!("the output reached {total} bytes; the tier allows {} bytes", self.limits.output_bytes);
            return Err(Fault::Limit(FailureClass::OutputLimit, msg).into());
        }
        self.output.bytes = total;
        self.output.buf.extend_from_slice(&data);
        if self.output.buf.len() >= OUTPUT_PART_BYTES {
            self.flush_part().await?;
        }
        Ok(())
    }

    async fn checkpoint(&mut self, state: Vec<u8>) -> wasmtime::Result<()> {
        self.meter.add(state.len());
        if state.len() as u64 > self.limits.checkpoint_bytes {
            let msg = format!(
                "a checkpoint of {} bytes exceeds the tier's checkpoint limit of {} bytes",
                state.len(),
                self.limits.checkpoint_bytes
            );
            return Err(Fault::Limit(FailureClass::OutputLimit, msg).into());
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
            fuel_used: self.fuel_used(self.fuel_at_call),
        };
        let size = cp.state.len();
        let started = Instant::now();
        self.host_wait = Some(HostWait::begin("storing a checkpoint"));
        let stored = self.io.checkpoint(cp).await;
        self.host_wait = self.host_wait.take().map(HostWait::end);
        match stored {
            Ok(()) => {
                crate::metrics::CHECKPOINT_BYTES.observe(size as f64);
                crate::metrics::CHECKPOINT_LATENCY.observe(started.elapsed().as_secs_f64());
                Ok(())
            }
            Err(e) if e.is::<LeaseLost>() => Err(Fault::LeaseLost.into()),
            Err(e) => Err(self.host_fault(e)),
        }
    }

    fn progress(&mut self, done: u64, total: u64, message: String) -> wasmtime::Result<()> {
        self.meter.add(message.len());
        self.io.progress(Progress { done, total, message: cut(&message, MAX_PROGRESS_BYTES) });
        Ok(())
    }

    fn interrupted(&mut self) -> wasmtime::Result<Option<InterruptReason>> {
        Ok(self.signals.reason().map(|r| match r {
            Interrupt::Cancel => InterruptReason::Cancel,
            Interrupt::Shutdown => InterruptReason::Shutdown,
        }))
    }

    fn log(&mut self, level: LogLevel, message: String) -> wasmtime::Result<()> {
        self.meter.add(message.len());
        self.log_line(level_name(level), &message);
        Ok(())
    }
}

impl JobCtx {
    /// Stores the buffered output as the next part.
    pub(super) async fn flush_part(&mut self) -> wasmtime::Result<()> {
        let part = self.output.parts;
        let bytes = std::mem::take(&mut self.output.buf);
        self.host_wait = Some(HostWait::begin("storing output in the object store"));
        let stored = self.io.flush_output(part, bytes).await;
        self.host_wait = self.host_wait.take().map(HostWait::end);
        match stored {
            Ok(()) => {
                self.output.parts += 1;
                Ok(())
            }
            Err(e) if e.is::<LeaseLost>() => Err(Fault::LeaseLost.into()),
            Err(e) => Err(self.host_fault(e)),
        }
    }

    /// The fault of a host service's error `e`, naming what the host was doing.
    fn host_fault(&self, e: anyhow::Error) -> wasmtime::Error {
        let what = self.host_wait.map_or("calling a host service", |w| w.what);
        Fault::Host(e.context(what)).into()
    }

    /// Appends a line to the job's log, cut to [`MAX_MESSAGE_BYTES`] (a copy: the guest's
    /// allocation is never kept), or counts it as dropped past [`MAX_LOG_LINES`] lines or
    /// [`MAX_LOG_BYTES`] bytes in the attempt.
    pub(super) fn log_line(&mut self, level: &str, message: &str) {
        let message = cut(message, MAX_MESSAGE_BYTES);
        if self.log_lines >= MAX_LOG_LINES || self.log_bytes + message.len() > MAX_LOG_BYTES {
            self.log_dropped += 1;
            return;
        }
        self.log_lines += 1;
        self.log_bytes += message.len();
        self.push_log(level, message);
    }

    /// Appends a line to the job's log, past the bounds (the host's own notes).
    pub(super) fn push_log(&mut self, level: &str, message: String) {
        self.io.log(LogLine { at_ms: now_ms(), attempt: self.attempt, level: level.to_owned(), message });
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
