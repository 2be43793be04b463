#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

//! End-to-end tests: real `niyanta serve` processes, and real coordinator and worker processes
//! over PostgreSQL and NATS, on loopback, running real components from
//! `examples-wasm/` (build them with `scripts/build-guests.sh`), driven over HTTP and through the
//! CLI.

mod admin;
mod bounds;
mod cli;
mod cluster;
mod common;
mod contained;
mod deploy;
mod distributed;
mod durability;
mod examples;
mod fair_share;
mod fuzz;
mod gc;
mod host_faults;
mod hostile;
mod isolation;
mod leases;
mod lifecycle;
mod limits;
mod metering;
mod observability;
mod openapi;
mod pauses;
mod policies;
mod private;
mod quotas;
mod recovery;
mod retention;
mod submit;
mod traces;
mod upload;
