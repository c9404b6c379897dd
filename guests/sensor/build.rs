//! Links the unikernel with ferrum-rt's linker script (arm64 Image at 0x4000_0000).
fn main() {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../rt/link.ld");
    println!("cargo:rustc-link-arg-bins=-T{}", script.display());
    println!("cargo:rerun-if-changed={}", script.display());
}
