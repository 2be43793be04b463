//! `outflood` (adversarial fixture): writes 64 KiB chunks of `x` to the output forever, until
//! the host ends the job for going past the output limit.

use niyanta_guest::{Context, Job, JobError};
use std::io::Write;

/// Size in bytes of one chunk.
const CHUNK: usize = 64 * 1024;

/// The outflood fixture.
pub struct OutFlood;

impl Job for OutFlood {
    type State = ();

    fn run(ctx: &mut Context<()>) -> Result<(), JobError> {
        let chunk = vec![b'x'; CHUNK];
        loop {
            ctx.output().write_all(&chunk)?;
        }
    }
}

niyanta_guest::export_job!(OutFlood);
