//! The WASI context of a job: no network, no directories, no environment; stdout and stderr
//! captured with a bound; random bytes from per-job generators that count what they produce.

use std::convert::Infallible;

use rand::{SeedableRng as _, TryRng};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder};

use super::limits::{MAX_RANDOM_BYTES, Meter};
use super::pipe::CappedPipe;

/// A random generator whose output is counted on the job's meter (and so charged as fuel).
struct MeteredRng {
    inner: rand::rngs::StdRng,
    meter: Meter,
}

impl MeteredRng {
    /// A ChaCha generator seeded from the operating system's generator through the thread's.
    fn new(meter: Meter) -> Self {
        Self { inner: rand::rngs::StdRng::from_rng(&mut rand::rng()), meter }
    }
}

impl TryRng for MeteredRng {
    type Error = Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        self.meter.add(4);
        self.inner.try_next_u32()
    }

    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        self.meter.add(8);
        self.inner.try_next_u64()
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
        self.meter.add(dst.len());
        self.inner.try_fill_bytes(dst)
    }
}

/// The WASI context of one attempt.
pub(super) fn context(stdout: CappedPipe, stderr: CappedPipe, meter: &Meter) -> WasiCtx {
    WasiCtxBuilder::new()
        .stdout(stdout)
        .stderr(stderr)
        .secure_random(MeteredRng::new(meter.clone()))
        .insecure_random(MeteredRng::new(meter.clone()))
        .max_random_size(MAX_RANDOM_BYTES)
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false)
        .build()
}
