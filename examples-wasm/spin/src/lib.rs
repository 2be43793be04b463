//! `spin` (adversarial fixture): loops forever without any host call, so only the host's
//! CPU/time limits (fuel or epoch interruption) can stop it. `black_box` keeps the loop from
//! being optimized away.

use niyanta_guest::{Context, Job, JobError};
use std::hint::black_box;

/// The spin fixture.
pub struct Spin;

impl Job for Spin {
    type State = ();

    fn run(_ctx: &mut Context<()>) -> Result<(), JobError> {
        let mut counter: u64 = 0;
        loop {
            counter = black_box(counter.wrapping_add(1));
        }
    }
}

niyanta_guest::export_job!(Spin);
