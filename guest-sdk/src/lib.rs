//! # niyanta-guest: write Niyanta workloads in Rust
//!
//! Niyanta runs each tenant job as a sandboxed WebAssembly component that implements the world
//! `workload` of the WIT package `niyanta:workload@0.1.0` (see `wit/workload.wit` in the Niyanta
//! repository). This crate hides the generated bindings behind a small, safe API:
//!
//! * implement [`Job`] (its checkpoint [`State`](Job::State) type and its [`run`](Job::run)
//!   function) and export it with [`export_job!`];
//! * inside `run`, the [`Context`] gives the params ([`Context::params`]), the input as a
//!   streaming [`Input`] (`Read + BufRead + Seek`), the output as a buffered [`Output`]
//!   (`Write`), typed checkpoints ([`Context::checkpoint`], [`Context::resume`]), progress,
//!   interrupts ([`Context::interrupted`], [`Context::stop_requested`]) and the job log;
//! * fail with a [`JobError`]; `?` converts I/O and JSON errors.
//!
//! ## Example: count lines
//!
//! ```no_run
//! use niyanta_guest::{Context, Job, JobError};
//! use serde::{Deserialize, Serialize};
//! use std::io::{BufRead, Write};
//!
//! #[derive(Serialize, Deserialize)]
//! struct Progress {
//!     offset: u64, // byte offset of the next line to read
//!     lines: u64,  // lines counted before `offset`
//! }
//!
//! struct LineCount;
//!
//! impl Job for LineCount {
//!     type State = Progress;
//!
//!     fn run(ctx: &mut Context<Progress>) -> Result<(), JobError> {
//!         let mut state = ctx.take_resume().unwrap_or(Progress { offset: 0, lines: 0 });
//!         let mut input = ctx.input_at(state.offset);
//!         let mut line = Vec::new();
//!         while input.read_until(b'\n', &mut line)? > 0 {
//!             line.clear();
//!             state.lines += 1;
//!             if state.lines % 100_000 == 0 {
//!                 state.offset = input.position();
//!                 ctx.checkpoint(&state)?;
//!                 ctx.progress(state.offset, ctx.input_size(), "bytes read");
//!                 if ctx.stop_requested(&state)? {
//!                     return Ok(()); // shutting down: checkpointed, resumes elsewhere
//!                 }
//!             }
//!         }
//!         writeln!(ctx.output(), "{}", state.lines)?;
//!         Ok(()) // the SDK flushes the output
//!     }
//! }
//!
//! niyanta_guest::export_job!(LineCount);
//! ```
//!
//! The job crate is a `cdylib` depending on `niyanta-guest` and `serde` (with `derive`), built
//! with `cargo build --release --target wasm32-wasip2`; the `.wasm` it produces is a component
//! ready for Niyanta. It does not need to depend on `wit-bindgen`.
//!
//! Short jobs run faster when the module starts with room for its heap. By default `wasm-ld`
//! makes the initial linear memory just large enough for the data and the 1 MiB stack, so the
//! job's first allocation grows the memory, and on the worker each growth costs two `mprotect`
//! calls that interrupt the worker's other CPUs to flush their TLBs. Reserving heap in the
//! initial memory avoids that for jobs that allocate less than the reservation, for instance
//! 896 KiB in the crate's `.cargo/config.toml`:
//!
//! ```toml
//! [target.wasm32-wasip2]
//! rustflags = ["-C", "link-arg=--initial-heap=917504"]
//! ```
//!
//! The reservation counts against the tier's memory limit like any memory. Niyanta's examples
//! are built this way (`examples-wasm/.cargo/config.toml`); on one machine it saved an `echo`
//! job about 8 µs on an idle worker and 12 to 40 µs of CPU in a fully loaded installation
//! (Niyanta's `docs/benchmarks-history.md`, "Twelfth machine").
//!
//! ## Semantics every job must respect
//!
//! * **At-least-once between checkpoints.** When a worker dies or shuts down, the job runs again
//!   (a new attempt, [`Context::attempt`] + 1) from its last acknowledged checkpoint. Code
//!   between two checkpoints may therefore run more than once: keep it deterministic.
//! * **Output after the last checkpoint is discarded on resume.** A checkpoint stores the state
//!   *and* the output written so far; when a job resumes, the output written after its last
//!   checkpoint is gone, so the resumed attempt must write it again. Write output as a function
//!   of the state, and a resumed run's output equals an undisturbed run's.
//! * **Output is flushed** (sent to the host) before every checkpoint and when `run` returns
//!   `Ok`. Output still buffered when `run` returns an error is dropped.
//! * **Interrupts.** Ask [`Context::interrupted`] every few thousand units of work. On
//!   [`Interrupt::Shutdown`]: [`Context::suspend`] (it checkpoints) and return `Ok(())`; on
//!   [`Interrupt::Cancel`]: return an error ([`JobError::cancelled`]). [`Context::stop_requested`]
//!   does both. A job that finishes anyway may simply return `Ok(())`: it then counts as done.
//! * **Panics trap.** A panic aborts the attempt (the component traps); the SDK first writes
//!   the panic message to the job log at [`Level::Error`].
//! * **Sizes** are in bytes: [`Context::input_size`], [`Input::position`],
//!   [`Output::bytes_written`]. Checkpoint state is stored as JSON (`serde_json`).
//! * **Imports.** The host links the `niyanta:workload` interfaces and WASI p2 clocks, random,
//!   cli, io and filesystem (no preopened directories). A component importing anything else
//!   (for example `wasi:sockets`, pulled in by `std::net`) is refused.

#![warn(missing_docs)]

mod context;
mod error;
mod io;

pub use context::{Context, Interrupt, Level, log};
pub use error::JobError;
pub use io::{BUFFER_SIZE, Input, MAX_READ, Output};

/// Bindings generated from `wit/workload.wit`; an implementation detail of [`export_job!`].
#[doc(hidden)]
#[allow(missing_docs, clippy::all)]
pub mod bindings {
    wit_bindgen::generate!({
        world: "workload",
        path: "../wit",
        pub_export_macro: true,
        export_macro_name: "__export_workload",
        default_bindings_module: "::niyanta_guest::bindings",
    });
}

/// A Niyanta job: implement it on a (usually empty) type and export that type with
/// [`export_job!`].
pub trait Job {
    /// The checkpoint state: what [`Context::checkpoint`] stores and [`Context::resume`] gives
    /// back to the next attempt. Serialized as JSON; use `()` for a job that never checkpoints.
    type State: serde::Serialize + serde::de::DeserializeOwned;

    /// Runs one attempt of the job. The host calls it once per attempt.
    ///
    /// Return `Ok(())` when the job is complete, or after [`Context::suspend`] on
    /// [`Interrupt::Shutdown`] (the host then resumes it from that checkpoint); the SDK flushes
    /// the output. Return a [`JobError`] to fail.
    ///
    /// # Errors
    /// Whatever the job decides; see [`JobError`] for how the host classifies each variant.
    fn run(ctx: &mut Context<Self::State>) -> Result<(), JobError>;
}

/// Exports a [`Job`] implementation as the component's `run` function.
///
/// Use it once, at the top level of the job's `cdylib` crate:
///
/// ```no_run
/// struct MyJob;
/// impl niyanta_guest::Job for MyJob {
///     type State = ();
///     fn run(_ctx: &mut niyanta_guest::Context<()>) -> Result<(), niyanta_guest::JobError> {
///         Ok(())
///     }
/// }
/// niyanta_guest::export_job!(MyJob);
/// ```
///
/// The expansion refers only to this crate (through `$crate`), so the job crate needs no
/// `wit-bindgen` dependency. It also embeds the component-type custom section that makes the
/// built `.wasm` a component of the `workload` world.
#[macro_export]
macro_rules! export_job {
    ($job:ty) => {
        const _: () = {
            #[doc(hidden)]
            pub struct __NiyantaWorkload;

            impl $crate::bindings::Guest for __NiyantaWorkload {
                fn run(
                    job: $crate::bindings::JobInfo,
                ) -> ::core::result::Result<$crate::bindings::Outcome, $crate::bindings::JobError> {
                    $crate::__run_job::<$job>(job)
                }
            }

            $crate::bindings::__export_workload!(
                __NiyantaWorkload with_types_in $crate::bindings
            );
        };
    };
}

/// Runs one attempt of `J`: decodes the resume state, builds the [`Context`], calls
/// [`Job::run`] and flushes the output on success. Called by [`export_job!`].
#[doc(hidden)]
pub fn __run_job<J: Job>(job: bindings::JobInfo) -> Result<bindings::Outcome, bindings::JobError> {
    install_panic_hook();
    let resume = match job.resume {
        None => None,
        Some(bytes) => match serde_json::from_slice::<J::State>(&bytes) {
            Ok(state) => Some(state),
            Err(e) => {
                let msg = format!("cannot decode the checkpoint state to resume from: {e}");
                return Err(JobError::Failed(msg).into());
            }
        },
    };
    let mut ctx = Context::new(job.id, job.attempt, job.params, job.input_size, resume);
    J::run(&mut ctx)?;
    ctx.finish();
    Ok(if ctx.is_suspended() { bindings::Outcome::Suspended } else { bindings::Outcome::Completed })
}

/// Logs panic messages to the job log (then runs the default hook, which prints to stderr).
fn install_panic_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let message = info
                .payload()
                .downcast_ref::<&str>()
                .copied()
                .or_else(|| info.payload().downcast_ref::<String>().map(String::as_str))
                .unwrap_or("(non-text panic payload)");
            let at = info.location().map(|l| format!(" at {}:{}", l.file(), l.line())).unwrap_or_default();
            log(Level::Error, &format!("job panicked{at}: {message}"));
            previous(info);
        }));
    });
}
