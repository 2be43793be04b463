//! `ticker` (test fixture for checkpoint/resume): `steps` slow steps with a checkpoint after
//! each.
//!
//! Params: `{"steps": N, "sleep_ms": M, "pad_bytes": P}` (all default to 0 when missing).
//!
//! For each step `i` from the resume state's `next` (0 on a fresh start) to `N - 1`: sleep `M`
//! milliseconds, write the line `step {i}\n`, checkpoint `{"next": i + 1}`, report progress
//! `(i + 1, N)`, then honour interrupts (shutdown: return `Ok` — the step is checkpointed;
//! cancel: fail with `cancelled`).
//!
//! With `P > 0` each line is `step {i} attempt {a} {P dots}\n` instead, `a` the attempt that
//! wrote it: past 64 KiB, each step's line is stored as its own output part before its
//! checkpoint, and the output shows which attempt wrote each part.
//!
//! With `P = 0` the output is always exactly `step 0\n` … `step {N-1}\n`, so a resumed run's
//! output equals an undisturbed run's (the output written after the last checkpoint is discarded
//! on resume and every step writes its line before its checkpoint). The step an attempt resumed
//! from is only logged (`resumed from step k`, level info).

use niyanta_guest::{Context, Interrupt, Job, JobError};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::time::Duration;

/// Params of the ticker.
#[derive(Deserialize)]
struct Params {
    #[serde(default)]
    steps: u64,
    #[serde(default)]
    sleep_ms: u64,
    #[serde(default)]
    pad_bytes: usize,
}

/// Checkpoint state: the next step to run.
#[derive(Serialize, Deserialize)]
pub struct State {
    next: u64,
}

/// The ticker fixture.
pub struct Ticker;

impl Job for Ticker {
    type State = State;

    fn run(ctx: &mut Context<State>) -> Result<(), JobError> {
        let params: Params = ctx.params()?;
        let start = ctx.resume().map_or(0, |s| s.next);
        ctx.info(&format!("resumed from step {start}"));
        for i in start..params.steps {
            if params.sleep_ms > 0 {
                std::thread::sleep(Duration::from_millis(params.sleep_ms));
            }
            if params.pad_bytes > 0 {
                let attempt = ctx.attempt();
                writeln!(ctx.output(), "step {i} attempt {attempt} {}", ".".repeat(params.pad_bytes))?;
            } else {
                writeln!(ctx.output(), "step {i}")?;
            }
            let state = State { next: i + 1 };
            ctx.checkpoint(&state)?;
            ctx.progress(i + 1, params.steps, "steps");
            match ctx.interrupted() {
                None => {}
                Some(Interrupt::Shutdown) => return ctx.suspend(&state),
                Some(Interrupt::Cancel) => return Err(JobError::cancelled()),
            }
        }
        Ok(())
    }
}

niyanta_guest::export_job!(Ticker);
