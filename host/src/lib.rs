//! Niyanta: a multi-tenant host for WebAssembly workloads.
//!
//! Tenants upload components built against the `niyanta:workload` WIT world and submit jobs;
//! workers run each job in a wasmtime sandbox with fuel, memory and time limits from the tenant's
//! tier. Jobs read their input, write their output, report progress, save checkpoints and notice
//! cancellation through the WIT interface; an interrupted job resumes from its last checkpoint.
//!
//! The parts, each behind a trait or a small type so the backends can change:
//! - [`runtime`]: the sandbox (engine, linker, limits, compiled-artifact cache);
//! - [`state`]: the source of truth ([`state::StateStore`]: SQLite embedded, PostgreSQL distributed);
//! - [`blobs`]: component binaries, inputs and outputs in an object store;
//! - [`broker`]: messages between coordinator and workers ([`broker::Broker`]: in-process or NATS);
//! - [`coordinator`]: accepts jobs, schedules them, applies workers' reports;
//! - [`worker`]: runs assigned jobs in job slots;
//! - [`api`]: the HTTP API (axum) with its OpenAPI document;
//! - [`embedded`] and [`cluster`]: the processes (`serve`; `coordinator`, `worker`);
//! - [`cli`]: the `niyanta` command.
//!
//! See `docs/architecture.md` for how data flows between them.

pub mod api;
pub mod blobs;
pub mod broker;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod coordinator;
pub mod domain;
pub mod embedded;
pub mod ids;
pub mod metrics;
pub mod process;
pub mod runtime;
pub mod state;
pub mod tier;
pub mod trace;
pub mod worker;
