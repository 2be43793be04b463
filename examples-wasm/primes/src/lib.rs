//! `primes`: counts the primes below N with a segmented sieve, checkpointing after each
//! segment.
//!
//! Params: `{"below": N}` (required, 0 ≤ N ≤ 10^14). Output: `{"below":N,"count":c}` (compact
//! JSON, no trailing newline). π(100) = 25, π(10^6) = 78,498, π(10^9) = 50,847,534.
//!
//! Segments hold 2^20 numbers and always start at multiples of 2^20. After each segment the job
//! checkpoints `{"next": <start of the next segment>, "count": <primes below it>}`, reports
//! progress (numbers sieved out of N) and honours interrupts (shutdown: return `Ok`, already
//! checkpointed; cancel: fail with `cancelled`).

mod sieve;

use niyanta_guest::{Context, Interrupt, Job, JobError};
use serde::{Deserialize, Serialize};
use sieve::{MAX_BELOW, SEGMENT, Sieve};

/// Params of the job.
#[derive(Deserialize)]
struct Params {
    below: u64,
}

/// Checkpoint state.
#[derive(Serialize, Deserialize)]
pub struct State {
    /// Start of the next segment to sieve.
    next: u64,
    /// Primes below `next`.
    count: u64,
}

/// The output document.
#[derive(Serialize)]
struct Answer {
    below: u64,
    count: u64,
}

/// The primes job.
pub struct Primes;

impl Job for Primes {
    type State = State;

    fn run(ctx: &mut Context<State>) -> Result<(), JobError> {
        let Params { below } = ctx.params()?;
        if below > MAX_BELOW {
            return Err(JobError::invalid_input(format!("`below` must be at most {MAX_BELOW}, got {below}")));
        }
        let mut state = ctx.take_resume().unwrap_or(State { next: 0, count: 0 });
        if state.next > below || (!state.next.is_multiple_of(SEGMENT) && state.next != below) {
            return Err(JobError::failed(format!("resume state `next` = {} does not fit below = {below}", state.next)));
        }
        let mut sieve = Sieve::new(below);
        while state.next < below {
            let hi = (state.next + SEGMENT).min(below);
            state.count += sieve.count(state.next, hi);
            state.next = hi;
            ctx.checkpoint(&state)?;
            ctx.progress(state.next, below, "numbers sieved");
            match ctx.interrupted() {
                None => {}
                Some(Interrupt::Shutdown) => return ctx.suspend(&state),
                Some(Interrupt::Cancel) => return Err(JobError::cancelled()),
            }
        }
        serde_json::to_writer(ctx.output(), &Answer { below, count: state.count })?;
        Ok(())
    }
}

niyanta_guest::export_job!(Primes);
