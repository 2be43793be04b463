//! `hostile` (adversarial fixture): one misbehaviour per run, chosen by params
//! `{"mode": M, "bytes": N}`:
//!
//! - `recurse`: unbounded recursion (a stack overflow: the guest traps);
//! - `checkpoint-flood`: checkpoints without end (each one a durable round trip);
//! - `log-flood`: log lines without end;
//! - `huge-write`: one output write of `bytes` bytes (a single host call with a huge list);
//! - `huge-checkpoint`: one checkpoint of `bytes` bytes;
//! - `random-flood`: `wasi:random` calls of `bytes` bytes each, without end (host calls that
//!   work long and cost the guest almost no instructions);
//! - `random-u64-flood`: `wasi:random` calls of 8 bytes each, without end (host calls so small
//!   and frequent that the guest never runs a whole fuel slice between two of them);
//! - `memfill`: fills a buffer of `bytes` bytes again and again, without end (`memory.fill`: much
//!   work per instruction);
//! - `huge-log`: log lines of `bytes` bytes each, without end;
//! - `stdout-flood`: writes of `bytes` bytes to stdout, without end;
//! - `huge-error`: fails with an error message of `bytes` bytes.

use std::hint::black_box;
use std::io::Write;

use niyanta_guest::{Context, Job, JobError};
use serde::{Deserialize, Serialize};

#[derive(Deserialize)]
struct Params {
    mode: String,
    #[serde(default)]
    bytes: usize,
}

/// Checkpoint state: a counter and a filler.
#[derive(Serialize, Deserialize)]
pub struct State {
    n: u64,
    filler: String,
}

/// The hostile fixture.
pub struct Hostile;

/// `wasi:random/random`, imported directly (the guest SDK does not expose it).
mod random {
    wit_bindgen::generate!({
        inline: "
            package wasi:random@0.2.0;
            interface random {
                get-random-bytes: func(len: u64) -> list<u8>;
                get-random-u64: func() -> u64;
            }
            world imports {
                import random;
            }
        ",
        world: "imports",
    });
}

/// Recurses until WebAssembly's call stack is exhausted. The call goes through a function
/// pointer hidden by `black_box`, so it cannot be turned into a loop, and the frames hold only
/// locals (nothing on the shadow stack in linear memory).
fn recurse(depth: u64) -> u64 {
    let next: fn(u64) -> u64 = black_box(recurse);
    next(depth + 1).wrapping_add(depth)
}

impl Job for Hostile {
    type State = State;

    fn run(ctx: &mut Context<State>) -> Result<(), JobError> {
        let p: Params = ctx.params()?;
        match p.mode.as_str() {
            "recurse" => {
                black_box(recurse(0));
            }
            "checkpoint-flood" => {
                for n in 0.. {
                    ctx.checkpoint(&State { n, filler: "x".repeat(1024) })?;
                }
            }
            "log-flood" => {
                for n in 0u64.. {
                    ctx.info(&format!("flood line {n}"));
                }
            }
            "huge-write" => {
                let big = vec![b'x'; p.bytes];
                ctx.output().write_all(&big).map_err(|e| JobError::failed(e.to_string()))?;
            }
            "huge-checkpoint" => {
                ctx.checkpoint(&State { n: 0, filler: "x".repeat(p.bytes) })?;
            }
            "random-flood" => loop {
                black_box(random::wasi::random::random::get_random_bytes(p.bytes as u64));
            },
            "random-u64-flood" => loop {
                black_box(random::wasi::random::random::get_random_u64());
            },
            "memfill" => {
                let mut buf = vec![0u8; p.bytes];
                let mut n = 0u8;
                loop {
                    n = n.wrapping_add(1);
                    buf.fill(n);
                    black_box(&mut buf);
                }
            }
            "huge-log" => {
                let line = "y".repeat(p.bytes);
                loop {
                    ctx.info(&line);
                }
            }
            "stdout-flood" => {
                let chunk = vec![b'z'; p.bytes];
                loop {
                    std::io::stdout().write_all(&chunk).map_err(|e| JobError::failed(e.to_string()))?;
                }
            }
            "huge-error" => return Err(JobError::failed("e".repeat(p.bytes))),
            other => return Err(JobError::invalid_input(format!("unknown mode {other:?}"))),
        }
        Ok(())
    }
}

niyanta_guest::export_job!(Hostile);
