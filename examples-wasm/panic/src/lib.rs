//! `panic` (adversarial fixture): panics with the message
//! `deliberate panic from the panic fixture`. On wasm32 a panic aborts, so the component traps;
//! the SDK writes the panic message to the job log (level error) and stderr first.
//!
//! With params `{"error": "<message>"}` it instead returns `JobError::Failed(message)`: a
//! workload that fails cleanly (class `guest_error`).

use niyanta_guest::{Context, Job, JobError};
use serde::Deserialize;

/// The panic fixture.
pub struct Panic;

#[derive(Deserialize, Default)]
struct Params {
    error: Option<String>,
}

impl Job for Panic {
    type State = ();

    fn run(ctx: &mut Context<()>) -> Result<(), JobError> {
        let params: Params = ctx.params()?;
        if let Some(message) = params.error {
            return Err(JobError::Failed(message));
        }
        panic!("deliberate panic from the panic fixture");
    }
}

niyanta_guest::export_job!(Panic);
