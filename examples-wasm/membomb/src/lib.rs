//! `membomb` (adversarial fixture): allocates 1 MiB blocks forever, writing to every page of
//! each and keeping them all, until the host refuses to grow the linear memory. The allocation
//! failure then aborts, which traps the component.

use niyanta_guest::{Context, Job, JobError};
use std::hint::black_box;

/// Size in bytes of one block.
const BLOCK: usize = 1024 * 1024;
/// Page size used to touch each block.
const PAGE: usize = 4096;

/// The membomb fixture.
pub struct MemBomb;

impl Job for MemBomb {
    type State = ();

    fn run(_ctx: &mut Context<()>) -> Result<(), JobError> {
        let mut blocks: Vec<Vec<u8>> = Vec::new();
        loop {
            let mut block = vec![0u8; BLOCK];
            for (i, byte) in block.iter_mut().step_by(PAGE).enumerate() {
                *byte = (i as u8).wrapping_add(1);
            }
            blocks.push(black_box(block));
            black_box(&blocks);
        }
    }
}

niyanta_guest::export_job!(MemBomb);
