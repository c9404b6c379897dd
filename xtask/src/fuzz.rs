//! `cargo xtask fuzz`: runs the cargo-fuzz targets in `fuzz/`, one per decoder a guest or the
//! boot medium controls (see [`TARGETS`]); installs cargo-fuzz from crates.io first if it is
//! missing. `cargo xtask test` runs each target briefly; `--long` runs each for
//! [`LONG_RUNS`] executions and merges what it found into the committed corpus.
//!
//! Corpus: `fuzz/corpus/<target>/` is committed (minimized by `--long`); runs read it and
//! write new inputs to `build/fuzz-corpus/<target>/`, where the seeds made from the project's
//! own files (deployment files, board-shaped trees) are written first. A crash stops the run
//! with the reproducer's path; each crash found so far is a unit test next to the code.
//!
//! The targets build on the stable toolchain with `--sanitizer none` (libFuzzer's coverage
//! guidance without AddressSanitizer, which needs nightly; the code under test is safe Rust)
//! and with debug assertions and overflow checks on (`-a`), as the hypervisor's release
//! profile has them.

use crate::root;
use std::path::Path;
use std::process::{Command, Stdio};

/// The fuzz targets: what each one drives is in its file's `//!` comment.
pub const TARGETS: &[&str] = &[
    "xenstore_wire",
    "hypercall_args",
    "hypercall_dispatch",
    "evtchn_ops",
    "gnttab_ops",
    "balloon",
    "vgic_mmio",
    "psci_esr",
    "host_dt",
    "image_header",
    "deployment_toml",
    "control_ops",
];

/// Executions per target for `--long`.
pub const LONG_RUNS: u64 = 10_000_000;

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

/// How long one run lasts.
#[derive(Clone, Copy, Debug)]
pub enum Budget {
    /// Wall-clock seconds.
    Seconds(u64),
    /// Executions.
    Runs(u64),
}

/// What one run did (libFuzzer's final statistics).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Inputs executed.
    pub runs: u64,
    /// Executions per second.
    pub per_second: u64,
}

/// Reads libFuzzer's `-print_final_stats=1` lines.
fn parse_stats(log: &str) -> Stats {
    let field = |name: &str| {
        log.lines()
            .filter_map(|l| l.strip_prefix(name))
            .filter_map(|r| r.trim_start_matches(':').trim().parse::<u64>().ok())
            .next_back()
            .unwrap_or(0)
    };
    Stats { runs: field("stat::number_of_executed_units"), per_second: field("stat::average_exec_per_sec") }
}

/// Runs `target` within `budget`; a crash fails with the reproducer's path in the message.
pub fn run(target: &str, budget: Budget) -> Result<Stats, String> {
    let work = root().join("build/fuzz-corpus").join(target);
    let kept = root().join("fuzz/corpus").join(target);
    let logs = root().join("build/fuzz-logs");
    for d in [&work, &kept, &logs] {
        std::fs::create_dir_all(d).map_err(|e| format!("{}: {e}", d.display()))?;
    }
    write_seeds(target, &work)?;
    let limit = match budget {
        Budget::Seconds(s) => format!("-max_total_time={s}"),
        Budget::Runs(n) => format!("-runs={n}"),
    };
    let log_path = logs.join(format!("{target}.log"));
    let log = std::fs::File::create(&log_path).map_err(|e| format!("{}: {e}", log_path.display()))?;
    let st = Command::new(crate::cargo())
        .current_dir(root().join("fuzz"))
        .args(["fuzz", "run", "--sanitizer", "none", "-a", target])
        .arg(&work)
        .arg(&kept)
        .args(["--", &limit, "-print_final_stats=1", "-max_len=8192"])
        .stdout(Stdio::null())
        .stderr(log)
        .status()
        .map_err(|e| format!("cargo fuzz: {e}"))?;
    let text = std::fs::read_to_string(&log_path).unwrap_or_default();
    if !st.success() {
        let tail: Vec<&str> = text.lines().rev().take(30).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        return Err(format!(
            "fuzz target {target} failed (the crashing input is under fuzz/artifacts/{target}/; log {}):\n{}",
            log_path.display(),
            tail.join("\n")
        ));
    }
    Ok(parse_stats(&text))
}

/// Merges the inputs that add coverage from the working corpus into the committed one,
/// keeping it minimal (libFuzzer's `-merge=1` into a fresh directory).
fn merge_into_repo(target: &str) -> Result<usize, String> {
    let work = root().join("build/fuzz-corpus").join(target);
    let kept = root().join("fuzz/corpus").join(target);
    let fresh = root().join("build/fuzz-merge").join(target);
    let _ = std::fs::remove_dir_all(&fresh);
    std::fs::create_dir_all(&fresh).map_err(|e| format!("{}: {e}", fresh.display()))?;
    let st = Command::new(crate::cargo())
        .current_dir(root().join("fuzz"))
        .args(["fuzz", "run", "--sanitizer", "none", "-a", target])
        .arg(&fresh)
        .arg(&kept)
        .arg(&work)
        // Edge coverage only: the smallest set that keeps every edge (counters would keep
        // thousands of near-duplicates).
        .args(["--", "-merge=1", "-max_len=8192", "-use_counters=0"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map_err(|e| format!("cargo fuzz: {e}"))?;
    if !st.success() {
        return Err(format!("fuzz target {target}: merging the corpus failed"));
    }
    let _ = std::fs::remove_dir_all(&kept);
    std::fs::rename(&fresh, &kept).map_err(|e| format!("{}: {e}", kept.display()))?;
    Ok(std::fs::read_dir(&kept).map(|r| r.count()).unwrap_or(0))
}

/// `cargo xtask fuzz [TARGET...] [--seconds N | --long]`.
pub fn cmd_fuzz(args: &[String]) -> Result<u8, String> {
    if let Some(bad) = args.iter().find(|a| a.starts_with("--") && *a != "--seconds" && *a != "--long") {
        return Err(format!("unknown option '{bad}' (see cargo xtask help)"));
    }
    let long = args.iter().any(|a| a == "--long");
    let budget = match (crate::opt(args, "--seconds")?, long) {
        (Some(_), true) => return Err("fuzz: --seconds and --long exclude each other".into()),
        (Some(s), false) => Budget::Seconds(s.parse::<u64>().map_err(|_| format!("--seconds: '{s}' is not a number"))?),
        (None, true) => Budget::Runs(LONG_RUNS),
        (None, false) => Budget::Seconds(60),
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
    let mut table = Vec::new();
    for t in list {
        match budget {
            Budget::Seconds(s) => println!("xtask fuzz: {t} for {s} s"),
            Budget::Runs(n) => println!("xtask fuzz: {t} for {n} executions"),
        }
        let start = std::time::Instant::now();
        let stats = run(t, budget)?;
        let kept = if long { Some(merge_into_repo(t)?) } else { None };
        println!(
            "xtask fuzz: {t}: {} executions in {:.0} s ({} per second){}",
            stats.runs,
            start.elapsed().as_secs_f64(),
            stats.per_second,
            kept.map(|k| format!(", corpus fuzz/corpus/{t}: {k} inputs")).unwrap_or_default()
        );
        if let Budget::Runs(n) = budget {
            if stats.runs < n {
                return Err(format!("fuzz target {t}: only {} of {n} executions ran", stats.runs));
            }
        }
        table.push((t, stats));
    }
    println!("xtask fuzz: summary");
    for (t, s) in table {
        println!("xtask fuzz:   {t:<16} {:>11} executions  {:>7}/s", s.runs, s.per_second);
    }
    Ok(0)
}

/// A 64-byte arm64 Image header (the `host_dt` target reads every kernel's header from the
/// first 64 bytes of its input).
fn image_header() -> Vec<u8> {
    let mut h = vec![0u8; 64];
    h[16..24].copy_from_slice(&(2u64 << 20).to_le_bytes());
    h[56..60].copy_from_slice(&hyp_core::image::MAGIC.to_le_bytes());
    h
}

/// Host trees shaped like the ones U-Boot hands the hypervisor: QEMU virt with GICv2 or GICv3
/// and a Pi-4-like tree with a translated bus, each with a deployment under `/chosen` (a
/// unikernel with PV devices, a Linux domain with a passthrough device or the board's tree).
fn host_dt_seeds() -> Vec<(String, Vec<u8>)> {
    use hyp_core::fdtw::FdtWriter;
    let mut out = Vec::new();
    for (name, gicv3, bus) in [("virt-gicv2", false, false), ("virt-gicv3", true, false), ("pi4-like", false, true)] {
        let mut w = FdtWriter::new();
        w.begin_node("");
        w.prop_u32("#address-cells", 2);
        w.prop_u32("#size-cells", 2);
        w.prop_str("model", if bus { "Raspberry Pi 4 Model B" } else { "linux,dummy-virt" });
        w.begin_node("memory@40000000");
        w.prop_str("device_type", "memory");
        w.prop_u64s("reg", &[0x4000_0000, 0x8000_0000]);
        w.end_node();
        w.begin_node("cpus");
        w.prop_u32("#address-cells", 1);
        w.prop_u32("#size-cells", 0);
        for i in 0..4 {
            w.begin_node(&format!("cpu@{i}"));
            w.prop_str("device_type", "cpu");
            w.prop_u32("reg", i);
            w.prop_str("enable-method", if bus { "spin-table" } else { "psci" });
            if bus {
                w.prop_u64s("cpu-release-addr", &[0xd8 + 8 * u64::from(i)]);
            }
            w.end_node();
        }
        w.end_node();
        w.begin_node("psci");
        w.prop_strs("compatible", &["arm,psci-1.0", "arm,psci-0.2"]);
        w.prop_str("method", "smc");
        w.end_node();
        w.begin_node("timer");
        w.prop_strs("compatible", &["arm,armv8-timer"]);
        w.prop_cells("interrupts", &[1, 13, 0xf08, 1, 14, 0xf08, 1, 11, 0xf08, 1, 10, 0xf08]);
        w.end_node();
        if gicv3 {
            w.begin_node("intc@8000000");
            w.prop_strs("compatible", &["arm,gic-v3"]);
            w.prop_u64s("reg", &[0x800_0000, 0x1_0000, 0x80a_0000, 0xf6_0000]);
        } else {
            w.begin_node("intc@8000000");
            w.prop_strs("compatible", &["arm,cortex-a15-gic", "arm,gic-400"]);
            w.prop_u64s(
                "reg",
                &[0x800_0000, 0x1_0000, 0x801_0000, 0x1_0000, 0x803_0000, 0x1_0000, 0x804_0000, 0x1_0000],
            );
        }
        w.prop_empty("interrupt-controller");
        w.prop_u32("#interrupt-cells", 3);
        w.end_node();
        let (uart, dev) = if bus {
            w.begin_node("soc");
            w.prop_strs("compatible", &["simple-bus"]);
            w.prop_u32("#address-cells", 1);
            w.prop_u32("#size-cells", 1);
            w.prop_cells("ranges", &[0x7e00_0000, 0, 0xfe00_0000, 0x0180_0000]);
            w.begin_node("serial@7e215040");
            w.prop_strs("compatible", &["brcm,bcm2835-aux-uart"]);
            w.prop_cells("reg", &[0x7e21_5040, 0x40]);
            w.prop_cells("interrupts", &[0, 93, 4]);
            w.end_node();
            w.begin_node("mmc@7e340000");
            w.prop_strs("compatible", &["brcm,bcm2711-emmc2"]);
            w.prop_cells("reg", &[0x7e34_0000, 0x100]);
            w.prop_cells("interrupts", &[0, 126, 4]);
            w.end_node();
            w.end_node();
            ("/soc/serial@7e215040", "/soc/mmc@7e340000")
        } else {
            w.begin_node("pl011@9000000");
            w.prop_strs("compatible", &["arm,pl011", "arm,primecell"]);
            w.prop_u64s("reg", &[0x900_0000, 0x1000]);
            w.prop_cells("interrupts", &[0, 1, 4]);
            w.end_node();
            w.begin_node("virtio_mmio@a000000");
            w.prop_strs("compatible", &["virtio,mmio"]);
            w.prop_u64s("reg", &[0xa00_0000, 0x200]);
            w.prop_cells("interrupts", &[0, 16, 1]);
            w.end_node();
            ("/pl011@9000000", "/virtio_mmio@a000000")
        };
        w.begin_node("chosen");
        w.prop_str("stdout-path", uart);
        w.prop_str("ferrum,deployment", name);
        for (i, (dname, kind, mem_base, devices)) in
            [("control", "linux", 0x4800_0000u64, if gicv3 { "/" } else { dev }), ("web", "unikernel", 0x5800_0000, "")]
                .into_iter()
                .enumerate()
        {
            w.begin_node(&format!("domain@{i}"));
            w.prop_str("compatible", "xen,domain");
            w.prop_u32("#address-cells", 2);
            w.prop_u32("#size-cells", 2);
            w.prop_str("ferrum,name", dname);
            w.prop_str("ferrum,kind", kind);
            w.prop_u32("cpus", 1);
            w.prop_cells("ferrum,pcpus", &[i as u32]);
            w.prop_u64s("memory", &[64 * 1024]);
            w.prop_u64s("ferrum,memory-base", &[mem_base]);
            w.prop_str("ferrum,on-fault", "inject");
            w.prop_str("ferrum,on-poweroff", if i == 0 { "board" } else { "domain" });
            w.prop_str("ferrum,xen", "yes");
            if !devices.is_empty() {
                w.prop_str("ferrum,passthrough", devices);
            }
            w.begin_node(&format!("module@{:x}", 0x4240_0000 + i * 0x40_0000));
            w.prop_strs("compatible", &["multiboot,kernel", "multiboot,module"]);
            w.prop_u64s("reg", &[0x4240_0000 + i as u64 * 0x40_0000, 0x20_0000]);
            w.prop_str("bootargs", "console=hvc0");
            w.end_node();
            if i == 1 {
                w.begin_node("vbd@0");
                w.prop_strs("compatible", &["ferrum,vbd"]);
                w.prop_cells("ferrum,devid", &[51712]);
                w.prop_str("ferrum,backend", "control");
                w.prop_str("ferrum,target", "/dev/vda2");
                w.prop_str("ferrum,mode", "w");
                w.end_node();
                w.begin_node("vif@0");
                w.prop_strs("compatible", &["ferrum,vif"]);
                w.prop_cells("ferrum,devid", &[0]);
                w.prop_str("ferrum,backend", "control");
                w.prop_str("ferrum,target", "xenbr0");
                w.prop("local-mac-address", &[0, 0x16, 0x3e, 0, 2, 0]);
                w.end_node();
            }
            w.end_node();
        }
        w.end_node();
        w.end_node();
        if let Some(blob) = w.finish(0) {
            let mut input = image_header();
            input.extend_from_slice(&blob);
            out.push((format!("seed-{name}"), input));
        }
    }
    out
}

/// Seed inputs made from the project's own files, written into `corpus` before each run
/// (the committed corpus holds what the fuzzer found from them): real deployment files for
/// `deployment_toml`, board-shaped trees for `host_dt`, the hostile suite's TOML for nothing.
fn write_seeds(target: &str, corpus: &Path) -> Result<(), String> {
    let mut seeds: Vec<(String, Vec<u8>)> = Vec::new();
    match target {
        "deployment_toml" => {
            for dir in ["deployments", "tests/deployments"] {
                let Ok(rd) = std::fs::read_dir(root().join(dir)) else { continue };
                for e in rd.flatten() {
                    let p = e.path();
                    if p.extension().is_some_and(|x| x == "toml") {
                        let text = std::fs::read(&p).map_err(|e| format!("{}: {e}", p.display()))?;
                        let stem = p.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
                        seeds.push((format!("seed-{}-{stem}", dir.replace('/', "-")), text));
                    }
                }
            }
        }
        "host_dt" => seeds = host_dt_seeds(),
        "control_ops" => {
            use xen_abi::domctl as dc;
            for (i, cmd) in
                [dc::DESTROYDOMAIN, dc::PAUSEDOMAIN, dc::GETDOMAININFO, dc::FERRUM_STATUS, dc::FERRUM_LOAD_IMAGE]
                    .into_iter()
                    .enumerate()
            {
                seeds.push((format!("seed-domctl-{i}"), hyp_core::control::encode_domctl(cmd, 2).to_vec()));
            }
            seeds.push(("seed-sysctl-list".into(), hyp_core::control::encode_sysctl_list(0, 8, 0x1000).to_vec()));
            let mut upd = Vec::new();
            for v in [0x3_0000u64 << 40, 0x20_0000 << 40, 0x40_0000 << 40] {
                upd.extend_from_slice(&v.to_le_bytes());
            }
            upd.extend(image_header());
            seeds.push(("seed-update".into(), upd));
        }
        "image_header" => {
            let mut h = (image_header().len() as u64).to_le_bytes().to_vec();
            h.extend(image_header());
            seeds.push(("seed-header".into(), h));
        }
        _ => {}
    }
    for (name, bytes) in seeds {
        let p = corpus.join(name);
        std::fs::write(&p, bytes).map_err(|e| format!("{}: {e}", p.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn final_stats_are_read() {
        let log = "INFO: Seed: 1\n#100 DONE cov: 5\nstat::number_of_executed_units: 10000001\nstat::average_exec_per_sec:     52341\nstat::new_units_added:          12\n";
        assert_eq!(parse_stats(log), Stats { runs: 10_000_001, per_second: 52341 });
        assert_eq!(parse_stats("crash"), Stats::default());
    }
}
