//! `csv-groupby`: streaming group-by over a CSV with a header row.
//!
//! Params: `{"group_by": "<column>", "value": "<column>"}` (both required). Output: a compact
//! JSON object, keys sorted (byte order), no trailing newline:
//! `{"<group>":{"count":n,"sum":s,"mean":m},...}` where `count` is the number of rows of the
//! group whose value field is a number (trimmed, parsed as a finite `f64`), `sum` their sum and
//! `mean = sum / count`. Rows whose value is not a number (empty, `NA`, text) are skipped; a
//! group with no numeric value does not appear. Unknown columns fail with `invalid-input`
//! naming the column and listing the header; so do malformed rows (a different number of
//! fields than the header).
//!
//! The input is streamed (never held in memory), so it runs on large files under a small memory
//! limit. Every 5,000 rows the job reports progress (bytes read out of the input size) and asks
//! for interrupts; every 50,000 rows it checkpoints `{"offset", "line", "rows", "groups"}`: the
//! byte offset of the next row and the partial aggregates. On resume it reads the header again
//! (for the column indexes) and continues at that offset. Shutdown: checkpoint and return `Ok`;
//! cancel: fail with `cancelled`.

pub mod groupby;

use groupby::{Flow, State};
use niyanta_guest::{Context, Interrupt, Job, JobError};
use serde::Deserialize;

/// Rows between two progress reports / interrupt checks.
const TICK_ROWS: u64 = 5_000;
/// Rows between two checkpoints (a multiple of `TICK_ROWS`).
const CHECKPOINT_ROWS: u64 = 50_000;

/// Params of the job.
#[derive(Deserialize)]
struct Params {
    group_by: String,
    value: String,
}

/// The csv-groupby job.
pub struct CsvGroupBy;

impl Job for CsvGroupBy {
    type State = State;

    fn run(ctx: &mut Context<State>) -> Result<(), JobError> {
        let params: Params = ctx.params()?;
        let mut state = ctx.take_resume().unwrap_or_default();
        if state.offset > 0 {
            ctx.info(&format!("resuming at byte {} after {} rows", state.offset, state.rows));
        }
        let size = ctx.input_size();
        let input = ctx.input();
        let flow = groupby::group_by(input, &params.group_by, &params.value, &mut state, TICK_ROWS, |st| {
            ctx.progress(st.offset, size, "bytes read");
            let checkpointed = st.rows.is_multiple_of(CHECKPOINT_ROWS);
            if checkpointed {
                ctx.checkpoint(st)?;
            }
            match ctx.interrupted() {
                None => Ok(Flow::Continue),
                Some(Interrupt::Cancel) => Err(JobError::cancelled()),
                Some(Interrupt::Shutdown) => {
                    ctx.suspend(st)?;
                    Ok(Flow::Stop)
                }
            }
        })?;
        if flow == Flow::Stop {
            return Ok(());
        }
        ctx.progress(size, size, "bytes read");
        serde_json::to_writer(ctx.output(), &state.summary())?;
        Ok(())
    }
}

niyanta_guest::export_job!(CsvGroupBy);
