//! Declares a 64 MiB (1,024 pages of 64 KiB) initial linear memory when built for WebAssembly:
//! the component asks for it before any of its code runs.
fn main() {
    if std::env::var("CARGO_CFG_TARGET_ARCH").as_deref() == Ok("wasm32") {
        println!("cargo:rustc-link-arg=--initial-memory=67108864");
    }
}
