//! [`Context`]: everything a running job can ask of the host.

use crate::JobError;
use crate::bindings::niyanta::workload::host;
use crate::bindings::niyanta::workload::types::{InterruptReason, LogLevel};
use crate::io::{Input, Output};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::marker::PhantomData;

/// Why the host asks the job to stop early; returned by [`Context::interrupted`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interrupt {
    /// The job was cancelled through the API: return soon, typically with
    /// [`JobError::cancelled`]. The job ends `cancelled`; a job that keeps running is stopped by
    /// force after the grace period.
    Cancel,
    /// The worker is shutting down: [`suspend`](Context::suspend) (which checkpoints) and return
    /// `Ok(())`; the job resumes elsewhere from that checkpoint.
    Shutdown,
}

/// Severity of a log line written with [`Context::log`] or [`log`](crate::log()).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// Very detailed tracing.
    Trace,
    /// Debugging detail.
    Debug,
    /// Normal operation.
    Info,
    /// Something unexpected that the job survived.
    Warn,
    /// A failure.
    Error,
}

/// Appends a line to the job's log through the host. Usable anywhere (also outside
/// [`Job::run`](crate::Job::run), for example in a panic hook). The host bounds the log; lines
/// past the bound are counted and dropped.
pub fn log(level: Level, message: &str) {
    let level = match level {
        Level::Trace => LogLevel::Trace,
        Level::Debug => LogLevel::Debug,
        Level::Info => LogLevel::Info,
        Level::Warn => LogLevel::Warn,
        Level::Error => LogLevel::Error,
    };
    host::log(level, message);
}

/// The job's view of one attempt: its identity, params, input, output, checkpoints, progress,
/// interrupts and log. `S` is the job's checkpoint state type ([`Job::State`](crate::Job::State)).
///
/// One `Context` is made per attempt by the code [`export_job!`](crate::export_job) generates
/// and handed to [`Job::run`](crate::Job::run).
pub struct Context<S> {
    id: String,
    attempt: u32,
    params: String,
    input_size: u64,
    resume: Option<S>,
    output: Output,
    suspended: bool,
    _state: PhantomData<fn(S)>,
}

impl<S: Serialize + DeserializeOwned> Context<S> {
    pub(crate) fn new(id: String, attempt: u32, params: String, input_size: u64, resume: Option<S>) -> Self {
        Context {
            id,
            attempt,
            params,
            input_size,
            resume,
            output: Output::new(),
            suspended: false,
            _state: PhantomData,
        }
    }

    /// The job's id (a UUID in its text form).
    pub fn job_id(&self) -> &str {
        &self.id
    }

    /// Attempt number, starting at 1; raised each time the job is started again (after a retry
    /// or when a worker died or shut down).
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// Size of the job's input in bytes.
    pub fn input_size(&self) -> u64 {
        self.input_size
    }

    /// The job's params as the raw JSON text the host passed (`null` when none were given).
    pub fn params_json(&self) -> &str {
        &self.params
    }

    /// Deserializes the job's params (a JSON document) into `T`.
    ///
    /// When the job was given no params (`null`), `T` is first read from `null` (which suits
    /// `Option<_>` and `()`) and, failing that, from `{}`, so a struct whose fields all have
    /// `#[serde(default)]` works without params.
    ///
    /// # Errors
    /// [`JobError::InvalidInput`] with serde's message (naming the missing or mistyped field and
    /// its position) when the params do not fit `T`; without params, the message says
    /// `none were given` and names what `{}` lacks (for example ``missing field `below` ``).
    pub fn params<T: DeserializeOwned>(&self) -> Result<T, JobError> {
        let text = self.params.trim();
        match serde_json::from_str(text) {
            Ok(v) => Ok(v),
            Err(_) if text.is_empty() || text == "null" => serde_json::from_str("{}")
                .map_err(|e| JobError::invalid_input(format!("invalid job params: none were given ({e})"))),
            Err(e) => Err(JobError::invalid_input(format!("invalid job params: {e}"))),
        }
    }

    /// The state of the last acknowledged checkpoint when this attempt resumes a job, `None` on
    /// a fresh start. See [`take_resume`](Context::take_resume) to take it by value.
    pub fn resume(&self) -> Option<&S> {
        self.resume.as_ref()
    }

    /// Takes the resume state out of the context (later calls to [`resume`](Context::resume)
    /// return `None`); handy when the state holds large partial results.
    pub fn take_resume(&mut self) -> Option<S> {
        self.resume.take()
    }

    /// A new reader over the input from byte 0. Each call makes an independent reader with its
    /// own 64 KiB buffer.
    pub fn input(&self) -> Input {
        Input::new(0, self.input_size)
    }

    /// A new reader over the input starting at byte `offset` (for example an offset saved in a
    /// checkpoint). An offset at or past the end reads as end-of-file.
    pub fn input_at(&self, offset: u64) -> Input {
        Input::new(offset, self.input_size)
    }

    /// The job's output stream (buffered, see [`Output`]).
    pub fn output(&mut self) -> &mut Output {
        &mut self.output
    }

    /// Durably records `state` as the job's checkpoint, together with all output written so
    /// far: flushes the output buffer, serializes `state` as JSON and calls the host's
    /// `checkpoint`, which returns once the state store committed it.
    ///
    /// If the attempt dies later, the next attempt starts with this state as
    /// [`resume`](Context::resume), and the output written after this call is discarded. Work
    /// between two checkpoints may therefore run more than once (at-least-once): make it
    /// deterministic, or at least idempotent.
    ///
    /// # Errors
    /// [`JobError::Failed`] when `state` cannot be serialized. A serialized state larger than the
    /// tier's checkpoint limit (bytes) makes the host end the job (class `output_limit`).
    pub fn checkpoint(&mut self, state: &S) -> Result<(), JobError> {
        let bytes = serde_json::to_vec(state)
            .map_err(|e| JobError::failed(format!("cannot serialize the checkpoint state: {e}")))?;
        self.output.flush_buffer();
        host::checkpoint(&bytes);
        Ok(())
    }

    /// Reports progress: `done` out of `total` units of the job's choosing (bytes, rows, steps),
    /// with a short message. Visible through the API within a second; cheap, but there is no
    /// point calling it more than a few times a second.
    pub fn progress(&self, done: u64, total: u64, message: &str) {
        host::progress(done, total, message);
    }

    /// Whether the host asks this job to stop, and why. Long-running jobs should ask every
    /// few thousand units of work (one host call, cheap).
    pub fn interrupted(&self) -> Option<Interrupt> {
        host::interrupted().map(|r| match r {
            InterruptReason::Cancel => Interrupt::Cancel,
            InterruptReason::Shutdown => Interrupt::Shutdown,
        })
    }

    /// The usual interrupt handling in one call: on [`Interrupt::Cancel`] returns
    /// `Err(`[`JobError::cancelled`]`())`; on [`Interrupt::Shutdown`] [suspends](Context::suspend)
    /// with `state` and returns `Ok(true)` (the job should then return `Ok(())` at once);
    /// otherwise `Ok(false)`.
    ///
    /// ```no_run
    /// # use niyanta_guest::{Context, JobError};
    /// # fn step(ctx: &mut Context<u64>, state: u64) -> Result<(), JobError> {
    /// if ctx.stop_requested(&state)? {
    ///     return Ok(()); // checkpointed and suspended; the job resumes elsewhere
    /// }
    /// # Ok(()) }
    /// ```
    pub fn stop_requested(&mut self, state: &S) -> Result<bool, JobError> {
        match self.interrupted() {
            None => Ok(false),
            Some(Interrupt::Cancel) => Err(JobError::cancelled()),
            Some(Interrupt::Shutdown) => {
                self.suspend(state)?;
                Ok(true)
            }
        }
    }

    /// Stops the job early for a shutdown: checkpoints `state` and records that the attempt is
    /// suspended, so that when [`Job::run`](crate::Job::run) then returns `Ok(())` the host
    /// resumes the job from this checkpoint instead of taking it as finished.
    /// [`stop_requested`](Context::stop_requested) calls it.
    ///
    /// # Errors
    /// Those of [`checkpoint`](Context::checkpoint).
    pub fn suspend(&mut self, state: &S) -> Result<(), JobError> {
        self.checkpoint(state)?;
        self.suspended = true;
        Ok(())
    }

    /// Whether [`suspend`](Context::suspend) was called in this attempt.
    pub fn is_suspended(&self) -> bool {
        self.suspended
    }

    /// Appends a line to the job's log (see [`log`](crate::log())).
    pub fn log(&self, level: Level, message: &str) {
        log(level, message);
    }

    /// [`log`](Context::log) at [`Level::Debug`].
    pub fn debug(&self, message: &str) {
        log(Level::Debug, message);
    }

    /// [`log`](Context::log) at [`Level::Info`].
    pub fn info(&self, message: &str) {
        log(Level::Info, message);
    }

    /// [`log`](Context::log) at [`Level::Warn`].
    pub fn warn(&self, message: &str) {
        log(Level::Warn, message);
    }

    /// [`log`](Context::log) at [`Level::Error`].
    pub fn error(&self, message: &str) {
        log(Level::Error, message);
    }

    pub(crate) fn finish(&mut self) {
        self.output.flush_buffer();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug, PartialEq)]
    struct P {
        #[serde(default = "ten")]
        top: u32,
    }

    fn ten() -> u32 {
        10
    }

    fn ctx(params: &str) -> Context<()> {
        Context::new("id".into(), 1, params.into(), 0, None)
    }

    #[test]
    fn params_defaults_and_errors() {
        assert_eq!(ctx("null").params::<P>().unwrap(), P { top: 10 });
        assert_eq!(ctx("{\"top\": 3}").params::<P>().unwrap(), P { top: 3 });
        assert_eq!(ctx("null").params::<Option<P>>().unwrap(), None);
        let err = ctx("{\"top\": \"x\"}").params::<P>().unwrap_err();
        assert!(matches!(&err, JobError::InvalidInput(m) if m.contains("invalid type")), "{err:?}");
        #[derive(serde::Deserialize, Debug)]
        #[allow(dead_code)]
        struct Required {
            below: u64,
        }
        let err = ctx("null").params::<Required>().unwrap_err();
        assert!(
            matches!(&err, JobError::InvalidInput(m) if m.contains("none were given") && m.contains("`below`")),
            "{err:?}"
        );
    }
}
