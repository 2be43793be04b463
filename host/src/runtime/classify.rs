//! How an attempt ended, classified: the faults the host raises inside the guest's call stack,
//! and the verdict that becomes the job's outcome.

use std::time::Duration;

use wasmtime::Trap;

use super::JobError;
use super::job::{JobCtx, JobSpec};
use super::limits::{MAX_ERROR_BYTES, MAX_LOG_BYTES, MAX_LOG_LINES, cut};
use super::niyanta::workload::types::Outcome as GuestOutcome;
use super::signals::Interrupt;
use crate::domain::FailureClass;

/// Why the host ended an attempt from inside it. Raised as the error of a host call or of the
/// call hook, it unwinds the guest and is found again by downcasting the error `run` returns.
#[derive(Debug, thiserror::Error)]
pub(super) enum Fault {
    /// A limit of the tier was passed; the message names the figures.
    #[error("{1}")]
    Limit(FailureClass, String),
    /// The attempt ran past its wall-clock limit (found by the call hook).
    #[error("the attempt ran past the tier's wall-clock limit of {} ms", .0.as_millis())]
    Timeout(Duration),
    /// The worker stopped the attempt by force (found by the call hook).
    #[error("stopped by force")]
    Forced,
    /// Another worker holds the job now.
    #[error("lease lost")]
    LeaseLost,
    /// A host service (object store, broker, state store) failed.
    #[error("host failure: {0:#}")]
    Host(anyhow::Error),
}

/// How the call of `run` ended.
pub(super) enum Ended {
    Returned(wasmtime::Result<Result<GuestOutcome, JobError>>),
    Timeout,
    Forced,
}

/// What the attempt comes to.
pub(super) enum Verdict {
    Succeeded,
    Failed(FailureClass, String),
    Suspended,
    LeaseLost,
}

const CANCELLED: &str = "cancelled; the job stopped when asked";
const CANCELLED_BY_FORCE: &str = "cancelled; the job did not stop within the grace period and was stopped by force";

/// Classifies the end of an attempt that ran for `elapsed`. A guest that returns `completed` past
/// its deadline (a host call that outlived it) has timed out all the same. Failure messages are
/// cut to [`MAX_ERROR_BYTES`].
pub(super) fn classify(ctx: &mut JobCtx, ended: Ended, spec: &JobSpec, elapsed: Duration) -> Verdict {
    match classify_uncut(ctx, ended, spec, elapsed) {
        Verdict::Failed(class, msg) => Verdict::Failed(class, cut(&msg, MAX_ERROR_BYTES)),
        v => v,
    }
}

/// A wait on a host service at least this long that was going on when the attempt reached its
/// deadline makes the timeout the host's: the object store and the broker answer in
/// milliseconds when healthy, and no guest call makes them take this long.
pub(super) const HOST_WAIT_BLAME: Duration = Duration::from_secs(1);

/// A timeout, unless a long wait on a host service caused it (then a host error).
fn timeout(ctx: &JobCtx, spec: &JobSpec) -> Verdict {
    if let Some(wait) = ctx.host_wait.filter(|w| w.overran(ctx.deadline.at, HOST_WAIT_BLAME)) {
        let waited = wait.until.unwrap_or_else(std::time::Instant::now).duration_since(wait.since);
        return host_error(
            ctx.signals.reason(),
            format!(
                "the attempt reached its wall-clock limit of {} ms while the host spent {} ms {}",
                spec.limits.wall_clock.as_millis(),
                waited.as_millis(),
                wait.what
            ),
        );
    }
    Verdict::Failed(
        FailureClass::Timeout,
        format!("the attempt ran past the tier's wall-clock limit of {} ms", spec.limits.wall_clock.as_millis()),
    )
}

/// A host error, unless the job was asked to stop meanwhile: a cancelled job ends `cancelled`
/// (a host retry would run it again, and the cancel would be lost), one stopped for a drain is
/// suspended, as it would have been without the fault.
fn host_error(interrupt: Option<Interrupt>, message: String) -> Verdict {
    match interrupt {
        Some(Interrupt::Cancel) => Verdict::Failed(FailureClass::Cancelled, CANCELLED.to_owned()),
        Some(Interrupt::Shutdown) => Verdict::Suspended,
        None => Verdict::Failed(FailureClass::HostError, message),
    }
}

fn forced(interrupt: Option<Interrupt>) -> Verdict {
    match interrupt {
        Some(Interrupt::Shutdown) => Verdict::Suspended,
        _ => Verdict::Failed(FailureClass::Cancelled, CANCELLED_BY_FORCE.to_owned()),
    }
}

fn classify_uncut(ctx: &mut JobCtx, ended: Ended, spec: &JobSpec, elapsed: Duration) -> Verdict {
    if ctx.signals.is_abandoned() {
        return Verdict::LeaseLost;
    }
    let interrupt = ctx.signals.reason();
    match ended {
        Ended::Returned(Ok(_)) if elapsed > spec.limits.wall_clock => timeout(ctx, spec),
        Ended::Returned(Ok(Ok(GuestOutcome::Completed))) => Verdict::Succeeded,
        Ended::Returned(Ok(Ok(GuestOutcome::Suspended))) => match interrupt {
            Some(Interrupt::Shutdown) => Verdict::Suspended,
            Some(Interrupt::Cancel) => Verdict::Failed(FailureClass::Cancelled, CANCELLED.to_owned()),
            None => Verdict::Failed(
                FailureClass::GuestError,
                "the workload returned `suspended` although no shutdown was asked for".to_owned(),
            ),
        },
        Ended::Returned(Ok(Err(_))) if interrupt == Some(Interrupt::Cancel) => {
            Verdict::Failed(FailureClass::Cancelled, CANCELLED.to_owned())
        }
        Ended::Returned(Ok(Err(_))) if interrupt == Some(Interrupt::Shutdown) => Verdict::Suspended,
        Ended::Returned(Ok(Err(JobError::InvalidInput(m)))) => Verdict::Failed(FailureClass::InvalidInput, m),
        Ended::Returned(Ok(Err(JobError::Retryable(m)))) => Verdict::Failed(FailureClass::Retryable, m),
        Ended::Returned(Ok(Err(JobError::Failed(m)))) => Verdict::Failed(FailureClass::GuestError, m),
        Ended::Timeout => timeout(ctx, spec),
        Ended::Forced => forced(interrupt),
        Ended::Returned(Err(e)) => classify_error(ctx, &e, spec, interrupt),
    }
}

fn classify_error(ctx: &mut JobCtx, e: &wasmtime::Error, spec: &JobSpec, interrupt: Option<Interrupt>) -> Verdict {
    match e.downcast_ref::<Fault>() {
        Some(Fault::Limit(class, msg)) => return Verdict::Failed(*class, msg.clone()),
        Some(Fault::Timeout(_)) => return timeout(ctx, spec),
        Some(Fault::Forced) => return forced(interrupt),
        Some(Fault::LeaseLost) => return Verdict::LeaseLost,
        Some(Fault::Host(err)) => return host_error(interrupt, format!("a host service failed: {err:#}")),
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

/// Moves what the guest wrote to stdout and stderr into the job's log (stderr's last lines are
/// kept for the failure message), and notes the lines dropped.
pub(super) fn flush_stdio(ctx: &mut JobCtx) {
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
            ctx.stderr_tail = (!tail.is_empty()).then(|| cut(&tail, 512));
        }
        for line in text.lines() {
            ctx.log_line(name, line);
        }
    }
    if ctx.log_dropped > 0 {
        let n = ctx.log_dropped;
        ctx.push_log(
            "warn",
            format!("{n} log lines dropped: the log keeps {MAX_LOG_LINES} lines and {MAX_LOG_BYTES} bytes per attempt"),
        );
    }
}
