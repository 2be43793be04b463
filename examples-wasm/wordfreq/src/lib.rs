//! `wordfreq`: the N most frequent words of a UTF-8 text.
//!
//! Params: `{"top": N}` (default 10). Output: a compact JSON array
//! `[{"word":"the","count":3},...]` of at most N entries, sorted by count descending then word
//! ascending (Unicode code point order), with no trailing newline.
//!
//! Words are maximal runs of Unicode alphanumeric characters, lowercased; one apostrophe (`'`
//! or `’`, output as `'`) between two alphanumeric characters stays inside the word (`don't`).
//! See [`count::WordCounter`]. Input that is not valid UTF-8 fails with `invalid-input` naming
//! the byte offset. The input is streamed (memory grows with the number of distinct words
//! only); progress is reported in bytes about every MiB. No checkpoints: the job restarts from
//! the beginning when resumed. On cancel it fails with `cancelled`; on shutdown it keeps going
//! (there is no state to save; the host stops it after the grace period).

pub mod count;

use niyanta_guest::{Context, Interrupt, Job, JobError};
use serde::Deserialize;

/// Bytes between two progress reports.
const PROGRESS_EVERY: u64 = 1 << 20;

/// Params of the job.
#[derive(Deserialize)]
struct Params {
    #[serde(default = "default_top")]
    top: usize,
}

fn default_top() -> usize {
    10
}

/// The wordfreq job.
pub struct WordFreq;

impl Job for WordFreq {
    type State = ();

    fn run(ctx: &mut Context<()>) -> Result<(), JobError> {
        let params: Params = ctx.params()?;
        let size = ctx.input_size();
        let mut next_report = PROGRESS_EVERY;
        let counter = count::count_words(ctx.input(), |done| {
            if done >= next_report {
                next_report = done + PROGRESS_EVERY;
                ctx.progress(done, size, "bytes read");
                if ctx.interrupted() == Some(Interrupt::Cancel) {
                    return Err(JobError::cancelled());
                }
            }
            Ok(())
        })?;
        ctx.progress(size, size, "bytes read");
        serde_json::to_writer(ctx.output(), &counter.top(params.top))?;
        Ok(())
    }
}

niyanta_guest::export_job!(WordFreq);
