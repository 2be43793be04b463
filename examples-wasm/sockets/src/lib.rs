//! `sockets` (adversarial fixture): calls `std::net::TcpStream::connect("127.0.0.1:9")`, which
//! on wasm32-wasip2 makes the component import `wasi:sockets/*`. The host links no sockets, so
//! it must refuse to instantiate this component. Were it ever run, it writes `connected\n` on
//! success and fails with the connection error otherwise.

use niyanta_guest::{Context, Job, JobError};
use std::io::Write;
use std::net::TcpStream;

/// The sockets fixture.
pub struct Sockets;

impl Job for Sockets {
    type State = ();

    fn run(ctx: &mut Context<()>) -> Result<(), JobError> {
        match TcpStream::connect("127.0.0.1:9") {
            Ok(_stream) => {
                ctx.output().write_all(b"connected\n")?;
                Ok(())
            }
            Err(e) => Err(JobError::failed(format!("connect to 127.0.0.1:9 failed: {e}"))),
        }
    }
}

niyanta_guest::export_job!(Sockets);
