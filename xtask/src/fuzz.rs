//! `cargo xtask fuzz`: runs the cargo-fuzz targets in `fuzz/` (xenstore wire decoder,
//! hypercall argument decoding), each for a while; installs cargo-fuzz from crates.io first if
//! it is missing. `cargo xtask test` runs each target briefly.
//!
//! The targets build on the stable toolchain with `--sanitizer none` (libFuzzer's coverage
//! guidance without AddressSanitizer, which needs nightly); the code under test is safe Rust,
//! so memory errors would be bugs in the compiler or `core`, not in it.

use crate::root;
use std::process::Command;

/// The fuzz targets.
pub const TARGETS: &[&str] = &["xenstore_wire", "hypercall_args"];

fn have_cargo_fuzz() -> bool {
    Command::new(crate::cargo()).args(["fuzz", "--version"]).output().is_ok_and(|o| o.status.success())
}

/// Installs cargo-fuzz when `cargo fuzz` is not available.
pub fn ensure_cargo_fuzz() -> Result<(), String> {
    if have_cargo_fuzz() {
        return Ok(());
    }
    println!("setup: cargo install cargo-fuzz --locked");
    let st = Command::new(crate::cargo())
        .args(["install", "cargo-fuzz", "--locked"])
        .status()
        .map_err(|e| format!("cargo install: {e}"))?;
    if !st.success() || !have_cargo_fuzz() {
        return Err("cannot install cargo-fuzz; install it by hand: cargo install cargo-fuzz --locked".into());
    }
    Ok(())
}

/// Runs `target` for `seconds`; a crash fails with the reproducer's path in the message.
pub fn run(target: &str, seconds: u64) -> Result<(), String> {
    let corpus = root().join("build/fuzz-corpus").join(target);
    std::fs::create_dir_all(&corpus).map_err(|e| format!("{}: {e}", corpus.display()))?;
    let st = Command::new(crate::cargo())
        .current_dir(root().join("fuzz"))
        .args(["fuzz", "run", "--sanitizer", "none", target])
        .arg(&corpus)
        .args(["--", &format!("-max_total_time={seconds}"), "-print_final_stats=1"])
        .status()
        .map_err(|e| format!("cargo fuzz: {e}"))?;
    if st.success() {
        Ok(())
    } else {
        Err(format!("fuzz target {target} failed (the crashing input is under fuzz/artifacts/{target}/)"))
    }
}

/// `cargo xtask fuzz [--seconds N] [TARGET...]`.
pub fn cmd_fuzz(args: &[String]) -> Result<u8, String> {
    let seconds = match crate::opt(args, "--seconds")? {
        Some(s) => s.parse::<u64>().map_err(|_| format!("--seconds: '{s}' is not a number"))?,
        None => 60,
    };
    let named: Vec<&str> = args
        .iter()
        .enumerate()
        .filter(|&(i, a)| !a.starts_with("--") && (i == 0 || args[i - 1] != "--seconds"))
        .map(|(_, a)| a.as_str())
        .collect();
    if let Some(bad) = named.iter().find(|n| !TARGETS.contains(n)) {
        return Err(format!("unknown fuzz target '{bad}' (targets: {})", TARGETS.join(", ")));
    }
    ensure_cargo_fuzz()?;
    let list = if named.is_empty() { TARGETS.to_vec() } else { named };
    for t in list {
        println!("xtask fuzz: {t} for {seconds} s");
        run(t, seconds)?;
    }
    Ok(0)
}
