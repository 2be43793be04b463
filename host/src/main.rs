//! The `niyanta` binary: see [`niyanta::cli`].

fn main() -> std::process::ExitCode {
    niyanta::cli::main()
}
