//! Upload-time checks of a component: is it wasm, is it a component, does it compile, does it
//! import only what Niyanta provides, and does it implement the `workload` world.

use wasmtime::component::{Component, Linker};

use super::compile::CompileError;
use super::{HOST_INTERFACE, JobCtx, TYPES_INTERFACE, WorkloadPre};

/// What an accepted component looks like.
#[derive(Clone, Debug)]
pub struct ComponentInfo {
    /// Interface names the component imports.
    pub imports: Vec<String>,
    /// The compiled component (so the uploader can warm the caches).
    pub component: Component,
}

/// Why a component was refused. Each message says what to fix.
#[derive(Debug, thiserror::Error)]
pub enum ValidationError {
    #[error("the body is not WebAssembly: it does not start with the bytes \\0asm")]
    NotWasm,
    #[error(
        "this is a core WebAssembly module, not a component: build for wasm32-wasip2 (or run `wasm-tools component new`) against the niyanta:workload world"
    )]
    CoreModule,
    #[error("the component is malformed or uses unsupported features: {0}")]
    Invalid(String),
    #[error(
        "the component imports {0}, which Niyanta does not provide; allowed are niyanta:workload/*, wasi:clocks, wasi:random, wasi:cli, wasi:io and wasi:filesystem"
    )]
    DisallowedImport(String),
    #[error("the component does not implement the niyanta:workload/workload@0.1.0 world: {0}")]
    WorldMismatch(String),
    /// The component declares more than the tier allows (its initial memory).
    #[error("{0}")]
    OverTier(String),
    /// Compiling passed the tier's time limit (`compile_ms`) or compiled-code limit.
    #[error("{0}")]
    CompileLimit(String),
    /// The compile could not run (a host fault, not the component's).
    #[error("{0}")]
    Host(String),
}

impl From<CompileError> for ValidationError {
    fn from(e: CompileError) -> Self {
        match e {
            CompileError::Invalid(m) => Self::Invalid(m),
            CompileError::Timeout(_) | CompileError::TooLarge(_) | CompileError::Crashed(_) => {
                Self::CompileLimit(e.to_string())
            }
            CompileError::Host(_) => Self::Host(e.to_string()),
        }
    }
}

impl ValidationError {
    /// A stable machine-readable code for the API.
    pub fn code(&self) -> &'static str {
        match self {
            Self::NotWasm => "not_wasm",
            Self::CoreModule => "not_a_component",
            Self::Invalid(_) => "invalid_component",
            Self::DisallowedImport(_) => "disallowed_import",
            Self::WorldMismatch(_) => "world_mismatch",
            Self::CompileLimit(_) => "compile_limit",
            Self::OverTier(_) => "exceeds_tier",
            Self::Host(_) => "internal",
        }
    }
}

/// Interface name prefixes a workload may import.
const ALLOWED: [&str; 5] = ["wasi:clocks/", "wasi:random/", "wasi:cli/", "wasi:io/", "wasi:filesystem/"];

fn allowed(name: &str) -> bool {
    name == HOST_INTERFACE || name == TYPES_INTERFACE || ALLOWED.iter().any(|p| name.starts_with(p))
}

/// Checks that `bytes` start as a WebAssembly component (before anything is compiled).
pub fn header(bytes: &[u8]) -> Result<(), ValidationError> {
    if bytes.len() < 8 || &bytes[..4] != b"\0asm" {
        return Err(ValidationError::NotWasm);
    }
    // The header's version and layer fields: 1 (module) vs 0x0001000d (component).
    if bytes[4..8] == [1, 0, 0, 0] {
        return Err(ValidationError::CoreModule);
    }
    Ok(())
}

/// Checks that a compiled component's declared memory fits `memory_bytes` (the tier's): its
/// largest initial linear memory, in bytes (64 KiB pages). A component that imports core modules
/// cannot be sized here and is let through (its instantiation is limited all the same).
pub fn fits_tier(component: &Component, memory_bytes: u64) -> Result<(), ValidationError> {
    let Some(required) = component.resources_required() else { return Ok(()) };
    let initial = required.max_initial_memory_size.unwrap_or(0).saturating_mul(64 << 10);
    if initial > memory_bytes {
        return Err(ValidationError::OverTier(format!(
            "the component declares a linear memory of {initial} bytes at start; the tier allows {memory_bytes} bytes"
        )));
    }
    Ok(())
}

/// Checks a compiled component as a Niyanta workload: its imports and its world; returns what it
/// found and the component prepared for instantiation.
pub fn validate(
    linker: &Linker<JobCtx>,
    component: Component,
) -> Result<(ComponentInfo, WorkloadPre<JobCtx>), ValidationError> {
    let ty = component.component_type();
    let imports: Vec<String> = ty.imports(component.engine()).map(|(name, _)| name.to_owned()).collect();
    if let Some(bad) = imports.iter().find(|n| !allowed(n)) {
        return Err(ValidationError::DisallowedImport(bad.clone()));
    }
    let pre = linker.instantiate_pre(&component).map_err(|e| ValidationError::WorldMismatch(format!("{e:#}")))?;
    let pre = WorkloadPre::new(pre).map_err(|e| ValidationError::WorldMismatch(format!("{e:#}")))?;
    Ok((ComponentInfo { imports, component }, pre))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allow_list() {
        assert!(allowed("wasi:cli/stdout@0.2.6"));
        assert!(allowed("niyanta:workload/host@0.1.0"));
        assert!(!allowed("wasi:sockets/tcp@0.2.6"));
        assert!(!allowed("wasi:http/outgoing-handler@0.2.6"));
        assert!(!allowed("niyanta:workload/host@0.2.0"));
    }
}
