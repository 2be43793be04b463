//! `panic` (adversarial fixture): panics with the message
//! `deliberate panic from the panic fixture`. On wasm32 a panic aborts, so the component traps;
//! the SDK writes the panic message to the job log (level error) and stderr first.
//!
//! With params `{"error": "<message>"}` it instead returns `JobError::Failed(message)`: a
//! workload that fails cleanly (class `guest_error`).
//!
//! With params `{"retryable": "<message>", "succeed_on_attempt": N}` it returns
//! `JobError::Retryable(message)` on attempts before `N` and succeeds on attempt `N` and later,
//! writing `succeeded on attempt N`; without `succeed_on_attempt` it always fails retryably.

use niyanta_guest::{Context, Job, JobError};
use serde::Deserialize;
use std::io::Write;

/// The panic fixture.
pub struct Panic;

#[derive(Deserialize, Default)]
struct Params {
    error: Option<String>,
    retryable: Option<String>,
    succeed_on_attempt: Option<u32>,
}

impl Job for Panic {
    type State = ();

    fn run(ctx: &mut Context<()>) -> Result<(), JobError> {
        let params: Params = ctx.params()?;
        if let Some(message) = params.error {
            return Err(JobError::Failed(message));
        }
        if let Some(message) = params.retryable {
            let attempt = ctx.attempt();
            if params.succeed_on_attempt.is_none_or(|n| attempt < n) {
                return Err(JobError::Retryable(format!("{message} (attempt {attempt})")));
            }
            ctx.output().write_all(format!("succeeded on attempt {attempt}").as_bytes())?;
            return Ok(());
        }
        panic!("deliberate panic from the panic fixture");
    }
}

niyanta_guest::export_job!(Panic);
