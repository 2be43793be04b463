//! Streaming access to the job's input ([`Input`]) and output ([`Output`]) through the host's
//! `read-input` and `write-output` functions.
//!
//! Both are buffered in chunks of [`BUFFER_SIZE`] bytes (64 KiB), so a job can stream an input far
//! larger than its memory limit and write output without one host call per line.

use std::io::{self, BufRead, Read, Seek, SeekFrom, Write};

/// Default size in bytes of the [`Input`] and [`Output`] buffers: 64 KiB.
pub const BUFFER_SIZE: usize = 64 * 1024;

/// Largest number of bytes the host returns from one `read-input` call: 1 MiB.
pub const MAX_READ: usize = 1024 * 1024;

type Fetch = fn(u64, u32) -> Vec<u8>;
type Sink = fn(&[u8]);

fn host_fetch(offset: u64, max_len: u32) -> Vec<u8> {
    crate::bindings::niyanta::workload::host::read_input(offset, max_len)
}

fn host_sink(data: &[u8]) {
    crate::bindings::niyanta::workload::host::write_output(data)
}

/// The job's input: a [`Read`] + [`BufRead`] + [`Seek`] stream over the host's `read-input`.
///
/// Made by [`Context::input`](crate::Context::input) (from byte 0) or
/// [`Context::input_at`](crate::Context::input_at) (from a byte offset, typically one saved in a
/// checkpoint). It does not borrow the [`Context`](crate::Context), so a job can keep a reader
/// (for example a `csv::Reader<Input>`) alive while it writes output and checkpoints.
///
/// Data is fetched in chunks of [`BUFFER_SIZE`] bytes (change it with
/// [`with_buffer_size`](Input::with_buffer_size)); [`position`](Input::position) is the offset in
/// bytes, from the start of the input, of the next byte [`read`](Read::read) or
/// [`fill_buf`](BufRead::fill_buf) returns. Reading never fails: the end of the input reads as
/// end-of-file.
pub struct Input {
    fetch: Fetch,
    /// Input offset of the byte after the last one fetched.
    next: u64,
    /// Size of the whole input in bytes (from `job-info`).
    size: u64,
    buf: Vec<u8>,
    pos: usize,
    chunk: usize,
}

impl Input {
    pub(crate) fn new(offset: u64, size: u64) -> Self {
        Self::with_fetch(host_fetch, offset, size)
    }

    fn with_fetch(fetch: Fetch, offset: u64, size: u64) -> Self {
        Input { fetch, next: offset, size, buf: Vec::new(), pos: 0, chunk: BUFFER_SIZE }
    }

    /// Sets how many bytes one host call fetches (clamped to 1..=[`MAX_READ`]). Larger chunks mean
    /// fewer host calls for pure streaming jobs (like `echo`) at the cost of memory.
    pub fn with_buffer_size(mut self, bytes: usize) -> Self {
        self.chunk = bytes.clamp(1, MAX_READ);
        self
    }

    /// Offset in bytes from the start of the input of the next byte to be read.
    pub fn position(&self) -> u64 {
        self.next - (self.buf.len() - self.pos) as u64
    }

    /// Size of the whole input in bytes (the same as [`Context::input_size`](crate::Context::input_size)).
    pub fn len(&self) -> u64 {
        self.size
    }

    /// Whether the input is empty (0 bytes).
    pub fn is_empty(&self) -> bool {
        self.size == 0
    }

    /// Moves to byte `offset` (from the start of the input), dropping buffered data unless the
    /// offset falls inside it. An offset at or past the end reads as end-of-file.
    pub fn set_position(&mut self, offset: u64) {
        let start = self.next - self.buf.len() as u64;
        if offset >= start && offset <= self.next {
            self.pos = (offset - start) as usize;
        } else {
            self.buf.clear();
            self.pos = 0;
            self.next = offset;
        }
    }

    fn fetch(&mut self, max: usize) -> Vec<u8> {
        let max = max.clamp(1, MAX_READ);
        let mut data = (self.fetch)(self.next, max as u32);
        data.truncate(max);
        self.next += data.len() as u64;
        data
    }
}

impl Read for Input {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if out.is_empty() {
            return Ok(0);
        }
        // A large read with nothing buffered goes straight to the host.
        if self.pos == self.buf.len() && out.len() >= self.chunk {
            let data = self.fetch(out.len());
            out[..data.len()].copy_from_slice(&data);
            self.buf.clear();
            self.pos = 0;
            return Ok(data.len());
        }
        let available = self.fill_buf()?;
        let n = available.len().min(out.len());
        out[..n].copy_from_slice(&available[..n]);
        self.consume(n);
        Ok(n)
    }
}

impl BufRead for Input {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        if self.pos == self.buf.len() {
            self.buf = self.fetch(self.chunk);
            self.pos = 0;
        }
        Ok(&self.buf[self.pos..])
    }

    fn consume(&mut self, amt: usize) {
        self.pos = (self.pos + amt).min(self.buf.len());
    }
}

impl Seek for Input {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        let target = match pos {
            SeekFrom::Start(o) => Some(o),
            SeekFrom::End(d) => self.size.checked_add_signed(d),
            SeekFrom::Current(d) => self.position().checked_add_signed(d),
        };
        let target = target
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "seek to a negative or overflowing offset"))?;
        self.set_position(target);
        Ok(target)
    }
}

/// The job's output: a [`Write`] buffered in [`BUFFER_SIZE`] bytes over the host's
/// `write-output`.
///
/// Reached through [`Context::output`](crate::Context::output). Writes never fail: going past the
/// tier's output limit makes the host end the job (class `output_limit`) during a flush. The SDK
/// flushes the buffer before every [`Context::checkpoint`](crate::Context::checkpoint) and after
/// [`Job::run`](crate::Job::run) returns `Ok`; output still buffered when `run` returns an error
/// is dropped.
pub struct Output {
    sink: Sink,
    buf: Vec<u8>,
    flushed: u64,
}

impl Output {
    pub(crate) fn new() -> Self {
        Self::with_sink(host_sink)
    }

    fn with_sink(sink: Sink) -> Self {
        Output { sink, buf: Vec::with_capacity(BUFFER_SIZE), flushed: 0 }
    }

    /// Total bytes written by this attempt so far, buffered or not.
    pub fn bytes_written(&self) -> u64 {
        self.flushed + self.buf.len() as u64
    }

    fn send(&mut self, data: &[u8]) {
        for piece in data.chunks(MAX_READ) {
            (self.sink)(piece);
        }
        self.flushed += data.len() as u64;
    }

    pub(crate) fn flush_buffer(&mut self) {
        if !self.buf.is_empty() {
            let buf = std::mem::take(&mut self.buf);
            self.send(&buf);
            self.buf = buf;
            self.buf.clear();
        }
    }
}

impl Write for Output {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.buf.len() + data.len() > BUFFER_SIZE {
            self.flush_buffer();
        }
        if data.len() >= BUFFER_SIZE {
            self.send(data);
        } else {
            self.buf.extend_from_slice(data);
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.flush_buffer();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    const DATA_LEN: usize = 200_000;

    fn data() -> Vec<u8> {
        (0..DATA_LEN).map(|i| (i % 251) as u8).collect()
    }

    fn fake_fetch(offset: u64, max: u32) -> Vec<u8> {
        let d = data();
        let start = (offset as usize).min(d.len());
        let end = (start + max as usize).min(d.len());
        d[start..end].to_vec()
    }

    #[test]
    fn reads_everything_in_chunks() {
        let mut input = Input::with_fetch(fake_fetch, 0, DATA_LEN as u64);
        let mut all = Vec::new();
        input.read_to_end(&mut all).unwrap();
        assert_eq!(all, data());
        assert_eq!(input.position(), DATA_LEN as u64);
    }

    #[test]
    fn starts_at_offset_and_tracks_position() {
        let mut input = Input::with_fetch(fake_fetch, 70_000, DATA_LEN as u64);
        let mut two = [0u8; 2];
        input.read_exact(&mut two).unwrap();
        assert_eq!(two[..], data()[70_000..70_002]);
        assert_eq!(input.position(), 70_002);
        input.seek(SeekFrom::Current(-2)).unwrap();
        assert_eq!(input.position(), 70_000);
        input.seek(SeekFrom::Start(5)).unwrap();
        let mut rest = Vec::new();
        input.read_to_end(&mut rest).unwrap();
        assert_eq!(rest, data()[5..]);
        assert_eq!(input.seek(SeekFrom::End(-1)).unwrap(), DATA_LEN as u64 - 1);
    }

    thread_local!(static SINK: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) });

    fn fake_sink(d: &[u8]) {
        SINK.with(|s| s.borrow_mut().push(d.to_vec()));
    }

    #[test]
    fn output_buffers_and_flushes() {
        let mut out = Output::with_sink(fake_sink);
        for _ in 0..1000 {
            out.write_all(b"0123456789").unwrap();
        }
        out.write_all(&vec![7u8; BUFFER_SIZE * 2]).unwrap();
        out.flush().unwrap();
        let calls = SINK.with(|s| s.borrow().clone());
        assert_eq!(calls.len(), 2, "one flush of the small writes, one direct large write");
        assert_eq!(calls.iter().map(Vec::len).sum::<usize>() as u64, out.bytes_written());
        assert_eq!(out.bytes_written(), 10_000 + 2 * BUFFER_SIZE as u64);
    }
}
