//! The streaming group-by over CSV: pure logic over any `Read + Seek`, tested natively.

use niyanta_guest::JobError;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::{Read, Seek};

/// Partial aggregate of one group.
#[derive(Debug, Default, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Agg {
    /// Rows whose value parsed as a number.
    pub count: u64,
    /// Sum of those values.
    pub sum: f64,
}

/// Where the scan is and what it found so far: the checkpoint state.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct State {
    /// Byte offset of the next row to read (0: the scan has not started).
    pub offset: u64,
    /// Line number (1-based) of that row, for error messages.
    pub line: u64,
    /// Data rows read so far (with or without a numeric value).
    pub rows: u64,
    /// Aggregates per group, for the rows before `offset`.
    pub groups: BTreeMap<String, Agg>,
}

/// One group of the output.
#[derive(Debug, PartialEq, Serialize)]
pub struct Stats {
    /// Rows of the group whose value is a number.
    pub count: u64,
    /// Sum of those values.
    pub sum: f64,
    /// `sum / count`.
    pub mean: f64,
}

impl State {
    /// The output object: groups sorted by key, each with count, sum and mean.
    pub fn summary(&self) -> BTreeMap<&str, Stats> {
        self.groups
            .iter()
            .map(|(k, a)| (k.as_str(), Stats { count: a.count, sum: a.sum, mean: a.sum / a.count as f64 }))
            .collect()
    }
}

/// What the tick callback of [`group_by`] wants next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Keep scanning.
    Continue,
    /// Stop now (the caller has checkpointed).
    Stop,
}

/// Parses a value field: UTF-8, trimmed, a finite `f64`. Anything else (empty, `NA`, `NaN`,
/// `inf`, text) is a missing value.
pub fn parse_value(field: &[u8]) -> Option<f64> {
    let v: f64 = std::str::from_utf8(field).ok()?.trim().parse().ok()?;
    v.is_finite().then_some(v)
}

/// Maps a `csv` error: I/O errors are failures, malformed CSV is invalid input.
pub fn csv_error(e: csv::Error) -> JobError {
    if e.is_io_error() {
        JobError::failed(format!("reading the input: {e}"))
    } else {
        JobError::invalid_input(format!("malformed CSV: {e}"))
    }
}

fn column(headers: &csv::ByteRecord, param: &str, name: &str) -> Result<usize, JobError> {
    headers.iter().position(|h| h == name.as_bytes()).ok_or_else(|| {
        let list: Vec<String> = headers.iter().map(|h| String::from_utf8_lossy(h).into_owned()).collect();
        JobError::invalid_input(format!(
            "unknown column {name:?} given as `{param}`; the header has: {}",
            list.join(", ")
        ))
    })
}

/// Scans the CSV `input` (header row first) from `state.offset`, adding each row whose `value`
/// column is a number to the aggregate of its `group_by` column.
///
/// Every `tick_rows` rows it updates `state.offset`/`state.line` to the next row and calls
/// `tick(&state)`; returning [`Flow::Stop`] ends the scan at once. Returns [`Flow::Continue`]
/// when the input is exhausted (`state` then covers every row).
///
/// # Errors
/// `InvalidInput` for unknown columns (listing the header), malformed CSV (rows of a different
/// length, invalid UTF-8 in a group of a counted row); `Failed` for I/O; any error of `tick`.
pub fn group_by<R: Read + Seek>(
    input: R,
    group_col: &str,
    value_col: &str,
    state: &mut State,
    tick_rows: u64,
    mut tick: impl FnMut(&State) -> Result<Flow, JobError>,
) -> Result<Flow, JobError> {
    let mut rdr = csv::ReaderBuilder::new().has_headers(true).from_reader(input);
    let headers = rdr.byte_headers().map_err(csv_error)?.clone();
    let gi = column(&headers, "group_by", group_col)?;
    let vi = column(&headers, "value", value_col)?;
    if state.offset > 0 {
        let mut pos = csv::Position::new();
        pos.set_byte(state.offset).set_line(state.line).set_record(state.rows + 1);
        rdr.seek(pos).map_err(csv_error)?;
    }
    let mut record = csv::ByteRecord::new();
    while rdr.read_byte_record(&mut record).map_err(csv_error)? {
        state.rows += 1;
        if let Some(v) = parse_value(&record[vi]) {
            let group = std::str::from_utf8(&record[gi]).map_err(|_| {
                let line = record.position().map_or(0, |p| p.line());
                JobError::invalid_input(format!("group field on line {line} is not valid UTF-8"))
            })?;
            let agg = match state.groups.get_mut(group) {
                Some(agg) => agg,
                None => state.groups.entry(group.to_string()).or_default(),
            };
            agg.count += 1;
            agg.sum += v;
        }
        if state.rows.is_multiple_of(tick_rows) {
            state.offset = rdr.position().byte();
            state.line = rdr.position().line();
            if tick(state)? == Flow::Stop {
                return Ok(Flow::Stop);
            }
        }
    }
    state.offset = rdr.position().byte();
    state.line = rdr.position().line();
    Ok(Flow::Continue)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    const CSV: &str = "k,v,w\nA,1,x\nB,2.5,y\nA, 3 ,z\nB,NA,q\nC,,r\nA,-1e1,s\n\"B\",\"4\",t\n";

    fn run(csv: &str, g: &str, v: &str) -> Result<State, JobError> {
        let mut state = State::default();
        group_by(Cursor::new(csv.as_bytes().to_vec()), g, v, &mut state, 2, |_| Ok(Flow::Continue))?;
        Ok(state)
    }

    #[test]
    fn aggregates_and_skips_missing_values() {
        let state = run(CSV, "k", "v").unwrap();
        assert_eq!(state.rows, 7);
        let s = state.summary();
        assert_eq!(s.keys().copied().collect::<Vec<_>>(), ["A", "B"], "C has no numeric value");
        assert_eq!(s["A"], Stats { count: 3, sum: -6.0, mean: -2.0 });
        assert_eq!(s["B"], Stats { count: 2, sum: 6.5, mean: 3.25 });
        assert_eq!(
            serde_json::to_string(&s).unwrap(),
            r#"{"A":{"count":3,"sum":-6.0,"mean":-2.0},"B":{"count":2,"sum":6.5,"mean":3.25}}"#
        );
    }

    #[test]
    fn unknown_column_names_it_and_lists_the_header() {
        let err = run(CSV, "k", "nope").unwrap_err();
        match err {
            JobError::InvalidInput(m) => {
                assert!(m.contains("\"nope\"") && m.contains("k, v, w"), "{m}")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn ragged_rows_are_invalid_input() {
        assert!(matches!(run("k,v\nA,1\nB\n", "k", "v"), Err(JobError::InvalidInput(_))));
    }

    #[test]
    fn resuming_from_any_tick_gives_the_same_result() {
        let full = run(CSV, "k", "v").unwrap();
        for stop_at in 1..=3 {
            // First attempt: stop at the `stop_at`-th tick, keeping a JSON copy of the state.
            let mut state = State::default();
            let mut ticks = 0;
            let mut saved = String::new();
            let flow = group_by(Cursor::new(CSV.as_bytes().to_vec()), "k", "v", &mut state, 2, |st| {
                ticks += 1;
                saved = serde_json::to_string(st).unwrap();
                Ok(if ticks == stop_at { Flow::Stop } else { Flow::Continue })
            })
            .unwrap();
            assert_eq!(flow, Flow::Stop);
            // Second attempt from the saved state.
            let mut resumed: State = serde_json::from_str(&saved).unwrap();
            let flow =
                group_by(Cursor::new(CSV.as_bytes().to_vec()), "k", "v", &mut resumed, 2, |_| Ok(Flow::Continue))
                    .unwrap();
            assert_eq!(flow, Flow::Continue);
            assert_eq!(resumed, full, "stop_at={stop_at}");
        }
    }
}
