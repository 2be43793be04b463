//! Compiling components where a compile can be stopped: in a child process (`niyanta
//! compile-component`) under a wall-clock limit, a CPU-time limit and an address-space limit,
//! killed when it passes one, with its compiled code bounded in size. Compiles run a bounded
//! number at a time, and at most one per owner (tenant) at a time, so that one tenant's slow
//! compiles queue only its own uploads: another tenant's upload waits for a free compile slot at
//! most the longest compile limit.
//!
//! Without a helper executable (an embedding of the library, the benchmarks) components are
//! compiled on a blocking thread; the limit is then enforced by giving up waiting, and the thread
//! runs on to the end of the compile.

use std::collections::HashMap;
use std::io::Read as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use parking_lot::Mutex;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::sync::Semaphore;
use wasmtime::Engine;
use wasmtime::component::Component;

/// Bounds of one compile.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CompileLimits {
    /// Wall-clock time (and CPU time) the compile may take.
    pub time: Duration,
    /// Size of the compiled artifact (machine code and metadata), bytes.
    pub compiled_bytes: u64,
}

impl CompileLimits {
    /// The limits of compiles of components already accepted (a worker preparing a component an
    /// upload compiled within its tier's limits): 10 minutes, 1 GiB.
    pub const ACCEPTED: Self = Self { time: Duration::from_secs(600), compiled_bytes: 1 << 30 };
}

/// Why a compile did not produce a component.
#[derive(Debug, thiserror::Error)]
pub enum CompileError {
    /// Compiling took longer than allowed; the compile was stopped.
    #[error("compiling took longer than the tier's limit of {} ms and was stopped", .0.as_millis())]
    Timeout(Duration),
    /// The compile process died of a signal other than its time limit's (Cranelift passing the
    /// address-space limit aborts it).
    #[error(
        "compiling the component passed the compile process's limits (it ended by signal {0}); the address space is limited to {COMPILE_ADDRESS_SPACE} bytes"
    )]
    Crashed(i32),
    /// The compiled code is larger than allowed.
    #[error("the compiled code passes the tier's limit of {0} bytes")]
    TooLarge(u64),
    /// Cranelift or wasmtime refused the component (its message says why).
    #[error("{0}")]
    Invalid(String),
    /// The compile could not be run (no helper process, an I/O error).
    #[error("the compile could not run: {0:#}")]
    Host(anyhow::Error),
}

static HELPER: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();

/// Makes the running executable the compile helper of this process's runtimes: the `niyanta`
/// binary calls it at start, so that its runtimes compile in `niyanta compile-component`
/// processes.
pub fn register_this_executable() {
    if let Ok(exe) = std::env::current_exe() {
        let _ = HELPER.set(exe);
    }
}

/// The registered compile helper, if any (see [`register_this_executable`]).
pub fn helper() -> Option<PathBuf> {
    HELPER.get().cloned()
}

/// Address space a compile process may map, bytes (Cranelift's memory on large functions).
const COMPILE_ADDRESS_SPACE: u64 = 4 << 30;

/// Compile slots of a process and the owners compiling now.
pub struct Compiler {
    engine: Engine,
    helper: Option<PathBuf>,
    slots: Semaphore,
    owners: Mutex<HashMap<String, Arc<Semaphore>>>,
}

impl Compiler {
    /// Compiles for `engine` with `helper` (the `niyanta` executable) when given, at most
    /// `parallel` at a time.
    pub fn new(engine: Engine, helper: Option<PathBuf>, parallel: usize) -> Self {
        Self { engine, helper, slots: Semaphore::new(parallel.max(1)), owners: Mutex::new(HashMap::new()) }
    }

    /// Compiles `bytes` for `owner` within `limits`.
    pub async fn compile(
        &self,
        owner: &str,
        bytes: bytes::Bytes,
        limits: CompileLimits,
    ) -> Result<Component, CompileError> {
        let mine = self.owners.lock().entry(owner.to_owned()).or_insert_with(|| Arc::new(Semaphore::new(1))).clone();
        let _own = mine.acquire().await.map_err(|e| CompileError::Host(e.into()))?;
        let _slot = self.slots.acquire().await.map_err(|e| CompileError::Host(e.into()))?;
        let result = match &self.helper {
            Some(helper) => self.in_child(helper, bytes, limits).await,
            None => self.in_thread(bytes, limits).await,
        };
        let mut owners = self.owners.lock();
        if Arc::strong_count(&mine) <= 2 {
            owners.remove(owner);
        }
        result
    }

    async fn in_thread(&self, bytes: bytes::Bytes, limits: CompileLimits) -> Result<Component, CompileError> {
        let engine = self.engine.clone();
        let task = tokio::task::spawn_blocking(move || Component::new(&engine, &bytes));
        let component = tokio::time::timeout(limits.time, task)
            .await
            .map_err(|_| CompileError::Timeout(limits.time))?
            .map_err(|e| CompileError::Host(e.into()))?
            .map_err(|e| CompileError::Invalid(format!("{e:#}")))?;
        let size = image_bytes(&component) as u64;
        if size > limits.compiled_bytes {
            return Err(CompileError::TooLarge(limits.compiled_bytes));
        }
        Ok(component)
    }

    async fn in_child(
        &self,
        helper: &PathBuf,
        bytes: bytes::Bytes,
        limits: CompileLimits,
    ) -> Result<Component, CompileError> {
        let mut cmd = tokio::process::Command::new(helper);
        cmd.arg("compile-component")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        let cpu_seconds = limits.time.as_secs() + 1;
        // SAFETY: `setrlimit` is async-signal-safe; the closure allocates nothing.
        unsafe {
            cmd.pre_exec(move || {
                set_limit(libc::RLIMIT_CPU, cpu_seconds)?;
                set_limit(libc::RLIMIT_AS, COMPILE_ADDRESS_SPACE)?;
                Ok(())
            });
        }
        let mut child =
            cmd.spawn().with_context(|| format!("starting {}", helper.display())).map_err(CompileError::Host)?;
        let (Some(mut stdin), Some(stdout), Some(mut stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            return Err(CompileError::Host(anyhow::anyhow!("the compile process has no pipes")));
        };
        let run = async {
            let write = async move {
                // A process that dies early closes its stdin: its exit status says why.
                let _ = stdin.write_all(&bytes).await;
            };
            let mut artifact = Vec::new();
            let mut stdout = stdout.take(limits.compiled_bytes + 1);
            let read = stdout.read_to_end(&mut artifact);
            let mut message = String::new();
            let mut stderr = (&mut stderr).take(64 << 10);
            let errors = stderr.read_to_string(&mut message);
            let ((), read, _) = tokio::join!(write, read, errors);
            read.context("reading the compiled code").map_err(CompileError::Host)?;
            let status = child.wait().await.context("waiting for the compile").map_err(CompileError::Host)?;
            if artifact.len() as u64 > limits.compiled_bytes {
                return Err(CompileError::TooLarge(limits.compiled_bytes));
            }
            if !status.success() {
                use std::os::unix::process::ExitStatusExt as _;
                match status.signal() {
                    Some(libc::SIGXCPU | libc::SIGKILL) => return Err(CompileError::Timeout(limits.time)),
                    Some(signal) => return Err(CompileError::Crashed(signal)),
                    None => {}
                }
                let message = message.trim();
                return Err(match message.strip_prefix("invalid: ") {
                    Some(m) => CompileError::Invalid(m.to_owned()),
                    None => CompileError::Host(anyhow::anyhow!("the compile process failed ({status}): {message}")),
                });
            }
            Ok(artifact)
        };
        let artifact =
            tokio::time::timeout(limits.time, run).await.map_err(|_| CompileError::Timeout(limits.time))??;
        // SAFETY: the bytes were produced just now by this host's own executable compiling for an
        // engine of the same configuration (a mismatch is refused by `deserialize`); tenants'
        // bytes never reach `deserialize`.
        unsafe { Component::deserialize(&self.engine, &artifact) }.map_err(|e| CompileError::Invalid(format!("{e:#}")))
    }
}

/// Bytes of a compiled component's image (machine code and metadata).
pub fn image_bytes(component: &Component) -> usize {
    let range = component.image_range();
    (range.end as usize).saturating_sub(range.start as usize)
}

fn set_limit(resource: libc::__rlimit_resource_t, value: u64) -> std::io::Result<()> {
    let limit = libc::rlimit { rlim_cur: value, rlim_max: value };
    // SAFETY: a plain system call on a valid struct.
    if unsafe { libc::setrlimit(resource, &limit) } == 0 { Ok(()) } else { Err(std::io::Error::last_os_error()) }
}

/// The `niyanta compile-component` process: reads a component from stdin, compiles it for an
/// engine of `config`, writes the compiled artifact to stdout. Exit status 1 with `invalid: …`
/// on stderr when the component is refused.
pub fn child_main(config: &wasmtime::Config) -> std::process::ExitCode {
    let mut bytes = Vec::new();
    if let Err(e) = std::io::stdin().read_to_end(&mut bytes) {
        eprintln!("reading the component: {e}");
        return std::process::ExitCode::from(2);
    }
    let engine = match Engine::new(config) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("creating the engine: {e:#}");
            return std::process::ExitCode::from(2);
        }
    };
    match engine.precompile_component(&bytes) {
        Ok(artifact) => {
            use std::io::Write as _;
            match std::io::stdout().write_all(&artifact).and_then(|()| std::io::stdout().flush()) {
                Ok(()) => std::process::ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("writing the compiled code: {e}");
                    std::process::ExitCode::from(2)
                }
            }
        }
        Err(e) => {
            eprintln!("invalid: {e:#}");
            std::process::ExitCode::from(1)
        }
    }
}
