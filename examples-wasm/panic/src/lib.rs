//! `panic` (adversarial fixture): panics with the message
//! `deliberate panic from the panic fixture`. On wasm32 a panic aborts, so the component traps;
//! the SDK writes the panic message to the job log (level error) and stderr first.

use niyanta_guest::{Context, Job, JobError};

/// The panic fixture.
pub struct Panic;

impl Job for Panic {
    type State = ();

    fn run(_ctx: &mut Context<()>) -> Result<(), JobError> {
        panic!("deliberate panic from the panic fixture");
    }
}

niyanta_guest::export_job!(Panic);
