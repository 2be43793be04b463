//! Bounded capture of a guest's stdout and stderr.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use parking_lot::Mutex;
use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};

use super::limits::Meter;

/// An output stream that keeps the first `cap` bytes written to it and counts the rest. Writes
/// never fail, so a chatty guest is not stopped by a full pipe (a failing `println!` would panic);
/// every byte written, kept or not, is counted on the job's meter (and so charged as fuel).
#[derive(Clone)]
pub struct CappedPipe {
    inner: Arc<Mutex<Captured>>,
    meter: Meter,
}

#[derive(Default)]
struct Captured {
    kept: Vec<u8>,
    dropped: u64,
    cap: usize,
}

impl CappedPipe {
    /// A pipe keeping at most `cap` bytes, counting what is written on `meter`.
    pub fn new(cap: usize, meter: &Meter) -> Self {
        Self { inner: Arc::new(Mutex::new(Captured { cap, ..Captured::default() })), meter: meter.clone() }
    }

    /// The kept bytes and the count of dropped bytes.
    pub fn take(&self) -> (Vec<u8>, u64) {
        let mut c = self.inner.lock();
        (std::mem::take(&mut c.kept), c.dropped)
    }

    fn write(&self, buf: &[u8]) {
        self.meter.add(buf.len());
        {
            let mut c = self.inner.lock();
            let room = c.cap.saturating_sub(c.kept.len());
            let n = room.min(buf.len());
            c.kept.extend_from_slice(&buf[..n]);
            c.dropped += (buf.len() - n) as u64;
        }
    }
}

impl IsTerminal for CappedPipe {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for CappedPipe {
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

impl AsyncWrite for CappedPipe {
    fn poll_write(self: Pin<&mut Self>, _cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        self.write(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_first_bytes_and_counts_the_rest() {
        let p = CappedPipe::new(4, &Meter::default());
        p.write(b"abc");
        p.write(b"defg");
        assert_eq!(p.take(), (b"abcd".to_vec(), 3));
    }
}
