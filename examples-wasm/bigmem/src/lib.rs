//! `bigmem` (adversarial fixture): its core module declares a 1 GiB initial linear memory
//! (`build.rs`), far above any tier's memory limit. Its code would only write `ok`, but it must
//! never get to run.

use std::io::Write;

use niyanta_guest::{Context, Job, JobError};

/// The bigmem fixture.
pub struct BigMem;

impl Job for BigMem {
    type State = ();

    fn run(ctx: &mut Context<()>) -> Result<(), JobError> {
        ctx.output().write_all(b"ok")?;
        Ok(())
    }
}

niyanta_guest::export_job!(BigMem);
