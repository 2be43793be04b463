//! `echo`: the output is the input, byte for byte, streamed in 1 MiB chunks.
//!
//! The trivial job, for benchmarks: no params, no checkpoint; progress (bytes) only every
//! 16 MiB, so small inputs make no progress calls.

use niyanta_guest::{Context, Job, JobError};
use std::io::{BufRead, Write};

/// Bytes between two progress reports.
const PROGRESS_EVERY: u64 = 16 * 1024 * 1024;

/// The echo job.
pub struct Echo;

impl Job for Echo {
    type State = ();

    fn run(ctx: &mut Context<()>) -> Result<(), JobError> {
        let size = ctx.input_size();
        let mut input = ctx.input().with_buffer_size(niyanta_guest::MAX_READ);
        let mut next_report = PROGRESS_EVERY;
        loop {
            let chunk = input.fill_buf()?;
            if chunk.is_empty() {
                return Ok(());
            }
            let n = chunk.len();
            ctx.output().write_all(chunk)?;
            input.consume(n);
            if input.position() >= next_report {
                ctx.progress(input.position(), size, "bytes copied");
                next_report += PROGRESS_EVERY;
            }
        }
    }
}

niyanta_guest::export_job!(Echo);
