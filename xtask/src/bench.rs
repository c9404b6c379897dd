//! Benchmarks (commands, not tests): `cargo xtask bench boot` boots the same Debian kernel and
//! initramfs natively (U-Boot → Linux) and as the control domain (U-Boot → ferrum → Linux), on
//! the same QEMU machine, interleaved, and reports the median wall time from QEMU start to the
//! initramfs' ready line and the ratio. Both runs go through the same U-Boot, disk and NIC; the
//! native kernel is limited to the control domain's CPUs and memory (`maxcpus=2 mem=512M`).
//! Each boot uses its natural console: the PL011 natively, the Xen PV console (`hvc0`) as the
//! Xen-aware control domain. Both do the same work before the ready line (the native run does
//! the control domain's bridge set-up too, `ferrum.bridge`); the median time of each boot phase
//! is printed, and the command fails when the ratio is above `--max-ratio` (default
//! [`BOOT_TARGET`]).

use crate::qemu::{self, RunOpts};
use crate::{check_args, linux, opt, root, setup};
use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const READY: &str = "FERRUM-READY";

/// `bench boot`'s target: the control domain's boot time over the native boot's.
pub const BOOT_TARGET: f64 = 1.10;

/// `cargo xtask bench …`.
pub fn cmd_bench(args: &[String]) -> Result<u8, String> {
    match args.first().map(String::as_str) {
        Some("boot") => bench_boot(&args[1..]),
        Some("hypercall") => bench_hypercall(&args[1..]),
        Some("unikernel") => bench_unikernel(&args[1..]),
        Some("pv") => bench_pv(&args[1..]),
        Some("migrate") => bench_migrate(&args[1..]),
        _ => Err("usage: cargo xtask bench boot [--runs N] [--gic 2|3] [--kernel 6.12|6.1] [--append \"KERNEL ARGS\"] [--max-ratio R]\n       cargo xtask bench hypercall [--gic 2|3] [--trace FILE]\n       cargo xtask bench unikernel [--gic 2|3] [--rounds N]\n       cargo xtask bench pv [--gic 2|3] [--disk-mib N] [--tcp-mib N] [--runs N] [--blk LIST] [--net LIST] [--profile] [--pc-profile] [--xen]\n       cargo xtask bench migrate [--gic 2|3] [--cycles N] [--max-downtime-ms MS]"
            .into()),
    }
}

fn bench_boot(args: &[String]) -> Result<u8, String> {
    check_args(args, &["--runs", "--gic", "--kernel", "--append", "--max-ratio"], &[])?;
    let max_ratio: f64 = opt(args, "--max-ratio")?
        .map_or(Ok(BOOT_TARGET), |v| v.parse().map_err(|_| format!("--max-ratio: '{v}' is not a number")))?;
    let runs: usize = opt(args, "--runs")?.map_or(Ok(5), |v| v.parse().map_err(|_| format!("--runs: '{v}'")))?;
    let gic: u8 = opt(args, "--gic")?.map_or(Ok(3), |v| v.parse().map_err(|_| format!("--gic: '{v}'")))?;
    let series = opt(args, "--kernel")?.unwrap_or_else(|| "6.12".into());
    // Extra kernel arguments for both boots (e.g. `earlycon` to see where early boot spends time).
    let append = opt(args, "--append")?.map(|a| format!(" {a}")).unwrap_or_default();
    setup::ensure_host_tools()?;
    let dir = root().join("build/bench");
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;

    // As the control domain: a deployment with only the control domain.
    let dep_file = dir.join(format!("boot-{series}.toml"));
    let toml = format!(
        "name = \"bench-boot\"\nplatform = \"qemu-virt\"\n\n[[domain]]\nname = \"control\"\nkind = \"linux\"\n\
         kernel = \"debian:{series}\"\ninitrd = \"initramfs:{series}\"\ncpus = [0, 1]\nmemory = \"512M\"\n\
         devices = [\"/virtio_mmio@a003e00\", \"/virtio_mmio@a003c00\"]\nbootargs = \"console=hvc0{append}\"\n\
         on_poweroff = \"board\"\n"
    );
    std::fs::write(&dep_file, toml).map_err(|e| e.to_string())?;
    let o = RunOpts { timeout: Some(300), ..RunOpts::new(gic, dep_file) };
    qemu::prepare(&o)?; // builds everything once

    // Natively: the same Image and initramfs booted by U-Boot with QEMU's own device tree.
    let l = linux::prepare(&root().join("build"), &series)?;
    let script_addr = 0x4010_0000u64;
    let script = format!(
        "echo ferrum-bench: native boot\n\
         load virtio 0:1 0x40400000 Image\n\
         load virtio 0:1 0x48000000 initrd.img\n\
         setenv bootargs console=ttyAMA0 maxcpus=2 mem=512M ferrum.bridge{append}\n\
         booti 0x40400000 0x48000000:${{filesize}} ${{fdtcontroladdr}}\n"
    );
    let rd = |p: &PathBuf| std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()));
    let files = vec![
        ("boot.scr".to_string(), crate::image::script_image(&script)),
        ("Image".to_string(), rd(&l.image)?),
        ("initrd.img".to_string(), rd(&l.initramfs)?),
    ];
    let native_disk = dir.join("native-disk.img");
    crate::image::disk_image(&native_disk, &files, true)?;
    let native_env = dir.join("native-env.img");
    std::fs::write(&native_env, crate::image::uboot_env_qemu(script_addr)).map_err(|e| e.to_string())?;

    println!(
        "bench boot: Debian {series} ({}), GICv{gic}, {runs} runs each, interleaved; time = QEMU start -> '{READY}'",
        l.release
    );
    let (mut native, mut hyp): (Vec<Timeline>, Vec<Timeline>) = (Vec::new(), Vec::new());
    for i in 0..runs {
        let log = |kind: &str| dir.join(format!("boot-{kind}-gicv{gic}-{}.log", i + 1));
        let n = timed_boot(
            qemu::qemu_command(gic, &platforms::QEMU_VIRT, &native_disk, &native_env, None),
            &log("native"),
        )?;
        let h = timed_boot(qemu::prepare(&o)?, &log("ferrum"))?;
        let ready = |t: &Timeline| t[PHASES.len() - 1].unwrap_or(f64::NAN);
        println!("  run {}: native {:.2} s, control domain {:.2} s", i + 1, ready(&n), ready(&h));
        native.push(n);
        hyp.push(h);
    }
    // The median time of each phase, and what it adds to the one before.
    let phase_median = |runs: &[Timeline], k: usize| {
        let mut v: Vec<f64> = runs.iter().filter_map(|t| t[k]).collect();
        (!v.is_empty()).then(|| median(&mut v))
    };
    println!(
        "  {:<12} {:>9} {:>15}   (median seconds from QEMU start; logs in {})",
        "phase",
        "native",
        "control domain",
        dir.display()
    );
    for (k, (name, _)) in PHASES.iter().enumerate() {
        let f = |x: Option<f64>| x.map_or("-".to_string(), |x| format!("{x:.2}"));
        println!("  {name:<12} {:>9} {:>15}", f(phase_median(&native, k)), f(phase_median(&hyp, k)));
    }
    let last = PHASES.len() - 1;
    let (mn, mh) = (phase_median(&native, last).unwrap_or(f64::NAN), phase_median(&hyp, last).unwrap_or(f64::NAN));
    let ratio = mh / mn;
    println!(
        "median: native {mn:.2} s, control domain under ferrum {mh:.2} s, ratio {ratio:.3} (target <= {BOOT_TARGET:.2}{})",
        if max_ratio == BOOT_TARGET { String::new() } else { format!(", failing above {max_ratio:.2}") }
    );
    // NaN (a phase never seen) fails too.
    if ratio.is_nan() || ratio > max_ratio {
        return Err(format!("bench boot: ratio {ratio:.3} is above {max_ratio:.2}"));
    }
    Ok(0)
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// The points of a boot `bench boot` times, in the order they appear: (name, text that marks
/// it in the console output). The hypervisor's line appears only under the hypervisor.
const PHASES: &[(&str, &str)] = &[
    ("U-Boot", "U-Boot 20"),
    ("booti", "Starting kernel"),
    ("hypervisor", "static partitioning hypervisor"),
    ("Linux init", "Run /init as init process"),
    ("ready", READY),
];

/// When each of [`PHASES`] was seen, in seconds from QEMU's start (`None`: not seen).
type Timeline = Vec<Option<f64>>;

/// Starts QEMU, records when each of [`PHASES`] appears in its output (kept in `log`, each
/// line stamped with its arrival time), stops
/// QEMU at the ready line.
fn timed_boot(mut cmd: Command, log: &std::path::Path) -> Result<Timeline, String> {
    let start = Instant::now();
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| format!("cannot start qemu: {e}"))?;
    let mut out = child.stdout.take().ok_or("no stdout")?;
    let (tx, rx) = std::sync::mpsc::channel();
    let log_path = log.to_path_buf();
    std::thread::spawn(move || {
        let mut seen = Vec::new();
        // The log: each line stamped with the seconds since QEMU's start when it arrived.
        let (mut stamped, mut at_line_start) = (Vec::new(), true);
        let mut when: Timeline = vec![None; PHASES.len()];
        let mut buf = [0u8; 4096];
        // Where the search for each phase's text resumes (each is found once).
        let mut from = vec![0usize; PHASES.len()];
        while let Ok(n) = out.read(&mut buf) {
            if n == 0 {
                break;
            }
            let t = start.elapsed().as_secs_f64();
            seen.extend_from_slice(&buf[..n]);
            for &b in &buf[..n] {
                if at_line_start {
                    stamped.extend_from_slice(format!("{t:7.3} ").as_bytes());
                }
                stamped.push(b);
                at_line_start = b == b'\n';
            }
            for (k, (_, text)) in PHASES.iter().enumerate() {
                if when[k].is_some() {
                    continue;
                }
                let text = text.as_bytes();
                if seen[from[k]..].windows(text.len()).any(|w| w == text) {
                    when[k] = Some(t);
                }
                from[k] = seen.len().saturating_sub(text.len());
            }
            if when[PHASES.len() - 1].is_some() {
                let _ = std::fs::write(&log_path, &stamped);
                let _ = tx.send(when);
                return;
            }
        }
        let _ = std::fs::write(&log_path, &stamped);
    });
    let r = rx.recv_timeout(Duration::from_secs(300));
    let _ = child.kill();
    let _ = child.wait();
    r.map_err(|e| match e {
        std::sync::mpsc::RecvTimeoutError::Timeout => format!("no ready line within 300 s (log {})", log.display()),
        std::sync::mpsc::RecvTimeoutError::Disconnected => {
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                let _ = e.read_to_string(&mut err);
            }
            format!("QEMU stopped before the ready line (log {}): {}", log.display(), err.trim())
        }
    })
}

/// `cargo xtask bench hypercall`: a Xen-aware test guest measures trap paths in counter ticks
/// under DESIGN.md §7's deterministic QEMU settings (`-icount shift=0,sleep=off`, 1 GHz
/// counter: one tick is one instruction), on GICv2 and GICv3 unless `--gic` picks one.
/// `--trace FILE` also writes QEMU's trace of the hypervisor's executed instructions to
/// `FILE-gicvN` (large: hundreds of MB).
fn bench_hypercall(args: &[String]) -> Result<u8, String> {
    check_args(args, &["--gic", "--trace"], &["--with-trace"])?;
    let trace = opt(args, "--trace")?;
    let with_trace = args.iter().any(|a| a == "--with-trace");
    let gics: Vec<u8> = match opt(args, "--gic")? {
        Some(v) => vec![v.parse().map_err(|_| format!("--gic: '{v}'"))?],
        None => vec![2, 3],
    };
    setup::ensure_host_tools()?;
    let dir = root().join("build/bench");
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let dep_file = dir.join("hypercall.toml");
    let toml = "name = \"bench-hypercall\"\nplatform = \"qemu-virt\"\n\n[[domain]]\nname = \"bench\"\nkind = \"unikernel\"\nkernel = \"guest:testguest\"\ncpus = [0]\nmemory = \"32M\"\nxen = true\nbootargs = \"mode=bench\"\n";
    std::fs::write(&dep_file, toml).map_err(|e| e.to_string())?;
    // (what, Xen 4.17 on GICv2 / GICv3, our target), from DESIGN.md §7.
    let rows: [(&str, &str, [u32; 2], u32); 5] = [
        ("null hypercall (xen_version)", "bench: null hypercall", [419, 417], 100),
        ("distributor MMIO load", "bench: distributor MMIO load", [637, 599], 150),
        ("event-channel send to self", "bench: event-channel send to self", [1435, 1462], 400),
        ("virtual timer -> guest vector", "IRQ vector (spinning)", [1063, 1085], 250),
        ("virtual timer, guest in WFI", "IRQ vector (in WFI)", [47279, 47279], 400),
    ];
    print!("{:<32} {:>5} {:>12} {:>10} {:>8}", "path (instructions, median)", "GIC", "ferrum", "Xen 4.17", "target");
    if with_trace {
        // The same paths on the trace build, its frames drained to the second UART (captured
        // into build/bench/hypercall-gicv<N>.defmt): the difference is what tracing costs.
        print!(" {:>12} {:>8}", "trace build", "+ trace");
    }
    println!();
    // Xen's WFI figure is with its default timer_slop (6320 with timer_slop=0), DESIGN.md §7.
    for gic in gics {
        let mut figures: Vec<Vec<u64>> = Vec::new();
        for traced in [false, true].into_iter().take(if with_trace { 2 } else { 1 }) {
            let o = RunOpts {
                timeout: Some(300),
                trace: traced.then(|| dir.join(format!("hypercall-gicv{gic}.defmt"))),
                ..RunOpts::new(gic, dep_file.clone())
            };
            let mut cmd = qemu::prepare(&o)?;
            crate::TRACE_BUILD.store(false, std::sync::atomic::Ordering::Relaxed);
            // Later -cpu wins: the same CPU with a 1 GHz counter; icount makes time = instructions.
            cmd.args(["-cpu", "cortex-a72,cntfrq=1000000000", "-icount", "shift=0,sleep=off"]);
            if let Some(t) = &trace {
                // Every instruction executed inside the hypervisor's image (loaded at the start of
                // RAM), one translation block per instruction: the trace tells where a path's
                // instructions go (match the addresses against the hypervisor ELF's symbols).
                let image =
                    if traced { crate::build_hyp_trace("qemu-virt")?.0 } else { crate::build_hyp("qemu-virt")? };
                let size = std::fs::metadata(image).map_err(|e| e.to_string())?.len();
                let file = format!("{t}-gicv{gic}{}", if traced { "-trace-build" } else { "" });
                cmd.args(["-accel", "tcg,one-insn-per-tb=on", "-d", "exec,nochain"]).args([
                    "-dfilter",
                    &format!("0x40000000+{size:#x}"),
                    "-D",
                    &file,
                ]);
                println!("(tracing the hypervisor's instructions into {file})");
            }
            let run = qemu::run_batch(cmd, Some(300), false, &[], None)?;
            let suffix = if traced { "-trace" } else { "" };
            let log = dir.join(format!("hypercall-gicv{gic}{suffix}.log"));
            let _ = std::fs::write(&log, &run.log);
            let mut col = Vec::new();
            for (_, marker, _, _) in rows {
                col.push(figure(&run.log, marker, " ticks").ok_or_else(|| {
                    format!("GICv{gic}: the guest printed no '{marker}' figure (log: {})", log.display())
                })?);
            }
            figures.push(col);
        }
        for (i, (what, _, xen, target)) in rows.iter().enumerate() {
            let ticks = figures[0][i];
            print!("{what:<32} {gic:>5} {ticks:>12} {:>10} {:>8}", xen[usize::from(gic == 3)], format!("<= {target}"));
            if let Some(t) = figures.get(1) {
                print!(" {:>12} {:>8}", t[i], format!("{:+}", t[i] as i64 - ticks as i64));
            }
            println!();
        }
    }
    Ok(0)
}

/// The number before `unit` in the first log line containing `marker`.
fn figure(log: &str, marker: &str, unit: &str) -> Option<u64> {
    let line = log.lines().find(|l| l.contains(marker))?;
    line[line.find(marker)? + marker.len()..].split(unit).next()?.trim().rsplit(' ').next()?.parse().ok()
}

/// `cargo xtask bench unikernel`: the same ferrum-rt images on ferrum and as dom0less domUs of
/// Debian's Xen 4.17, under DESIGN.md §7's deterministic settings (one counter tick = one
/// instruction): instructions from the hypervisor's hand-off (the unikernel's first instruction)
/// to its first console line (`hello` alone on the board), and the event-channel ping-pong round
/// trip between two unikernels (the `pingpong` pair alone; median), side by side with the ratio.
/// Under `-icount` every CPU's instructions advance the one clock, so each figure is measured
/// with nothing else running.
fn bench_unikernel(args: &[String]) -> Result<u8, String> {
    check_args(args, &["--gic", "--rounds"], &[])?;
    let gics: Vec<u8> = match opt(args, "--gic")? {
        Some(v) => vec![v.parse().map_err(|_| format!("--gic: '{v}'"))?],
        None => vec![2, 3],
    };
    let rounds: u32 = opt(args, "--rounds")?.map_or(Ok(200), |v| v.parse().map_err(|_| format!("--rounds: '{v}'")))?;
    setup::ensure_host_tools()?;
    let dir = root().join("build/bench");
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let head = "platform = \"qemu-virt\"\n\n";
    let dom = |name: &str, kernel: &str, cpu: u32, args: &str| {
        format!("[[domain]]\nname = \"{name}\"\nkernel = \"guest:{kernel}\"\ncpus = [{cpu}]\nmemory = \"16M\"\nxen = true\nbootargs = \"{args}\"\n\n")
    };
    let hello = dir.join("unikernel-hello.toml");
    std::fs::write(&hello, format!("name = \"bench-hello\"\n{head}{}", dom("hello", "hello", 0, "sleep=1 profile")))
        .map_err(|e| e.to_string())?;
    let pp = dir.join("unikernel-pingpong.toml");
    std::fs::write(
        &pp,
        format!(
            "name = \"bench-pingpong\"\n{head}{}{}",
            dom("ping", "pingpong", 0, &format!("role=ping peer=2 rounds={rounds}")),
            dom("pong", "pingpong", 1, "role=pong peer=1")
        ),
    )
    .map_err(|e| e.to_string())?;
    println!(
        "{:<44} {:>4} {:>10} {:>10} {:>7} {:>7}",
        "instructions (median)", "GIC", "ferrum", "Xen 4.17", "ratio", "target"
    );
    let mut all_met = true;
    let rows = [
        (
            "hand-off -> first console line (hello)",
            &hello,
            "hello: first line ",
            " counter ticks",
            "hello: shutting down",
        ),
        ("event-channel ping-pong round trip", &pp, "round trips: median ", " ticks", "pingpong: ping: done"),
    ];
    for gic in gics {
        for (what, file, marker, unit, stop) in rows {
            let o = RunOpts { timeout: Some(600), ..RunOpts::new(gic, file.clone()) };
            let mut ours = qemu::prepare(&o)?;
            ours.args(["-cpu", "cortex-a72,cntfrq=1000000000", "-icount", "shift=0,sleep=off"]);
            let ours = qemu::run_batch(ours, Some(600), false, &[], None)?;
            let stem = file.file_stem().unwrap_or_default().to_string_lossy().into_owned();
            let _ = std::fs::write(dir.join(format!("{stem}-ferrum-gicv{gic}.log")), &ours.log);
            let xen = crate::xen::command(gic, file, true)?;
            let xen = qemu::run_batch(xen, Some(600), false, &[], Some((stop, std::time::Duration::from_secs(1))))?;
            let _ = std::fs::write(dir.join(format!("{stem}-xen-gicv{gic}.log")), &xen.log);
            let get = |log: &str, who: &str| {
                figure(log, marker, unit).ok_or_else(|| {
                    format!("GICv{gic}: no '{marker}' figure on {who} (logs: build/bench/{stem}-*-gicv{gic}.log)")
                })
            };
            let (a, b) = (get(&ours.log, "ferrum")?, get(&xen.log, "Xen")?);
            let ratio = a as f64 / b as f64;
            all_met &= ratio <= 0.3;
            println!("{what:<44} {gic:>4} {a:>10} {b:>10} {ratio:>7.3} {:>7}", "<= 0.3");
        }
    }
    println!("(hello's first line goes to the Xen PV console ring on ferrum and to the vpl011 UART that Xen");
    println!(" offers a dom0less domU; ping-pong: {rounds} rounds, both ends waiting in WFI between messages;");
    println!(" boot phases: build/bench/unikernel-hello-*.log)");
    Ok(if all_met { 0 } else { 1 })
}

/// A TCP sink on the host (QEMU's user network reaches it as 10.0.2.2:<port>): each
/// connection is read to its end, then closed.
fn start_sink() -> Result<u16, String> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| format!("TCP sink: {e}"))?;
    let port = l.local_addr().map_err(|e| e.to_string())?.port();
    std::thread::spawn(move || {
        for mut c in l.incoming().flatten() {
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 1 << 16];
                while matches!(c.read(&mut buf), Ok(n) if n > 0) {}
            });
        }
    });
    Ok(port)
}

/// `cargo xtask bench pv`: one boot of a control domain, the `pvbench` unikernel and a Linux
/// guest domain, measured one after another (the control domain hands out the turns through
/// xenstore): sequential disk write (with flush) and read, and TCP send, first by the control
/// domain on the board's own disk (`/dev/vda2`) and NIC, then through the PV split drivers by
/// the unikernel (ferrum-rt's blkfront/netfront) and by the Linux guest (xen-blkfront /
/// xen-netfront), both served by the control domain's xen-blkback / xen-netback on that same
/// partition and bridged NIC. `--runs N` rounds interleave (direct, unikernel, Linux guest,
/// direct, ...); each figure is printed as its median over the rounds with the spread (lowest
/// and highest), and its ratio to the direct one as the median of the rounds' own ratios.
fn bench_pv(args: &[String]) -> Result<u8, String> {
    check_args(
        args,
        &["--gic", "--disk-mib", "--tcp-mib", "--runs", "--blk", "--net"],
        &["--profile", "--pc-profile", "--xen"],
    )?;
    let profile = args.iter().any(|a| a == "--profile");
    let pc_profile = args.iter().any(|a| a == "--pc-profile");
    let xen = args.iter().any(|a| a == "--xen");
    if xen && (pc_profile || opt(args, "--blk")?.is_some() || opt(args, "--net")?.is_some()) {
        return Err("--xen: the reference run on Xen 4.17 takes no --blk, --net or --pc-profile".into());
    }
    // `ferrum.ksyms`: the Linux domains print where their kernel and modules lie (pcprof).
    let ksyms = if pc_profile { " ferrum.ksyms" } else { "" };
    let gic: u8 = opt(args, "--gic")?.map_or(Ok(3), |v| v.parse().map_err(|_| format!("--gic: '{v}'")))?;
    // The unikernel's protocol features to leave out (its `blk=` and `net=` boot arguments).
    let word = |name: &str| -> Result<String, String> {
        let v = opt(args, name)?.unwrap_or_default();
        if v.chars().all(|c| c.is_ascii_lowercase() || c == ',') {
            Ok(v)
        } else {
            Err(format!("{name}: '{v}' (a list such as nopersistent,noindirect or nocsum,nogso)"))
        }
    };
    let (blk, net) = (word("--blk")?, word("--net")?);
    let num = |name: &str, default: u64, max: u64| -> Result<u64, String> {
        opt(args, name)?.map_or(Ok(default), |v| {
            v.parse::<u64>().ok().filter(|n| (1..=max).contains(n)).ok_or(format!("{name}: '{v}' (1 to {max})"))
        })
    };
    let disk_mib = num("--disk-mib", 16, crate::image::DATA_MIB)?;
    let tcp_mib = num("--tcp-mib", 32, 1024)?;
    let runs = num("--runs", 3, 20)?;
    setup::ensure_host_tools()?;
    let dir = root().join("build/bench");
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let dep = dir.join("pv.toml");
    let control = format!(
        "[[domain]]\nname = \"control\"\nkind = \"linux\"\nkernel = \"debian:6.12\"\ninitrd = \"initramfs:6.12\"\n\
        cpus = [0, 1]\nmemory = \"512M\"\ndevices = [\"/virtio_mmio@a003e00\", \"/virtio_mmio@a003c00\"]\n\
        bootargs = \"console=hvc0{ksyms}\"\non_poweroff = \"board\"\n\n"
    );
    let pv = "[[domain.vbd]]\nbackend = \"control\"\ntarget = \"/dev/vda2\"\nvdev = \"xvda\"\n\n\
        [[domain.vif]]\nbackend = \"control\"\n\n";
    let toml = format!(
        "name = \"bench-pv\"\nplatform = \"qemu-virt\"\n\n{control}\
         [[domain]]\nname = \"pvbench\"\nkind = \"unikernel\"\nkernel = \"guest:pvbench\"\ncpus = [2]\nmemory = \"32M\"\n\
         xen = true\nbootargs = \"ip=10.0.2.21/24 gw=10.0.2.2 blk={blk} net={net}\"\n\n{pv}\
         [[domain]]\nname = \"guest\"\nkind = \"linux\"\nkernel = \"debian:6.12\"\ninitrd = \"initramfs:6.12\"\ncpus = [3]\n\
         memory = \"256M\"\nbootargs = \"console=hvc0 ferrum.bench{ksyms}\"\n\n{pv}"
    );
    std::fs::write(&dep, toml).map_err(|e| e.to_string())?;
    let sink = start_sink()?;
    let mut extra_files = vec![("bench.txt".into(), format!("{sink} {disk_mib} {tcp_mib} {runs}\n").into_bytes())];
    let mut cmd = if xen {
        // The same boot disk, with the guest's `xl` configuration; Xen boots dom0 itself.
        let d = crate::load_deployment(&dep, false)?;
        extra_files.extend(crate::xenpv::guest_configs(&d)?);
        let disk = crate::write_disk(&d, None, &extra_files, true)?;
        let control = d.domains.iter().find(|x| x.name == "control").ok_or("no control domain")?;
        crate::xenpv::command(gic, &disk, &format!("{} earlycon=xenboot ferrum.xendom0", control.bootargs))?
    } else {
        let o = RunOpts { timeout: Some(1200), extra_files, fresh_data: true, ..RunOpts::new(gic, dep) };
        qemu::prepare(&o)?
    };
    if profile {
        // Names each emulated CPU's thread `CPU n/TCG`, which the profile groups by.
        cmd.args(["-name", "bench-pv,debug-threads=on"]);
    }
    let on = if xen { format!(" on Xen 4.17 ({})", crate::xenpv::XEN_ARGS) } else { String::new() };
    println!(
        "bench pv{on}: GICv{gic}, {disk_mib} MiB of disk I/O, {tcp_mib} MiB per TCP transfer, {runs} interleaved round(s) in one boot; running..."
    );
    let qmp = dir.join("qmp.sock");
    if pc_profile {
        let _ = std::fs::remove_file(&qmp);
        cmd.arg("-qmp").arg(format!("unix:{},server=on,wait=off", qmp.display()));
    }
    let sampler = profile.then(|| crate::hostprof::Sampler::start(std::time::Duration::from_millis(10)));
    let pc_sampler =
        pc_profile.then(|| crate::pcprof::Sampler::start(qmp.clone(), std::time::Duration::from_millis(PC_EVERY_MS)));
    let run = qemu::run_batch(cmd, Some(1200 * runs), std::env::var_os("XTASK_ECHO").is_some(), &[], None);
    let samples = sampler.map(crate::hostprof::Sampler::finish);
    let pc_samples = pc_sampler.map(crate::pcprof::Sampler::finish);
    let run = run?;
    let logf = dir.join(format!("pv-{}gicv{gic}.log", if xen { "xen-" } else { "" }));
    let _ = std::fs::write(&logf, &run.log);
    // bench-result <label> <bytes> <microseconds>, once per round, in round order.
    let mut got: std::collections::HashMap<String, Vec<f64>> = std::collections::HashMap::new();
    for l in run.log.lines() {
        let Some(r) = l.split("bench-result ").nth(1) else { continue };
        let w: Vec<&str> = r.split_whitespace().collect();
        if let [label, bytes, us] = w[..] {
            if let (Ok(b), Ok(us)) = (bytes.parse::<f64>(), us.parse::<f64>()) {
                got.entry(label.to_string()).or_default().push(b / us.max(1.0));
            }
        }
    }
    // (test, the direct figure's label, [(who, label)] through the PV drivers)
    type Row<'a> = (&'a str, &'a str, &'a [(&'a str, &'a str)]);
    let rows: [Row; 4] = [
        (
            "disk write + flush",
            "control-direct-disk-write",
            &[("unikernel (blkfront)", "unikernel-disk-write"), ("Linux guest (xen-blkfront)", "guest-disk-write")],
        ),
        (
            "disk read",
            "control-direct-disk-read",
            &[("unikernel (blkfront)", "unikernel-disk-read"), ("Linux guest (xen-blkfront)", "guest-disk-read")],
        ),
        (
            "TCP send to the host",
            "control-direct-to-host-tcp",
            &[
                ("unikernel (netfront, bridge, NIC)", "unikernel-to-host-tcp"),
                ("Linux guest (xen-netfront)", "guest-to-host-tcp"),
            ],
        ),
        (
            "TCP send to the control domain",
            "control-direct-to-host-tcp",
            &[
                ("unikernel -> control (netfront)", "unikernel-to-control-tcp"),
                ("Linux guest -> control", "guest-to-control-tcp"),
            ],
        ),
    ];
    println!("{:<32} {:<36} {:>22} {:>22}", "test", "who", "MB/s median [spread]", "ratio median [spread]");
    let mut missing = Vec::new();
    for (test, direct, others) in rows {
        let d = got.get(direct).filter(|v| !v.is_empty());
        let direct_who =
            if test.ends_with("control domain") { "(direct: control -> host, NIC)" } else { "control domain (direct)" };
        match d {
            Some(v) => println!("{test:<32} {direct_who:<36} {:>22} {:>22}", spread(v, 1), "1.00"),
            None => missing.push(direct),
        }
        for (who, label) in others {
            match (got.get(*label).filter(|v| !v.is_empty()), d) {
                (Some(v), Some(d)) => {
                    // Each round's ratio against that round's own direct figure.
                    let ratios: Vec<f64> = v.iter().zip(d.iter()).map(|(a, b)| a / b).collect();
                    println!("{:<32} {who:<36} {:>22} {:>22}", "", spread(v, 1), spread(&ratios, 2));
                }
                (Some(v), None) => println!("{:<32} {who:<36} {:>22} {:>22}", "", spread(v, 1), "-"),
                (None, _) => missing.push(label),
            }
        }
    }
    let rounds = got.values().map(Vec::len).min().unwrap_or(0);
    if rounds < runs as usize {
        println!("bench pv: only {rounds} of {runs} round(s) completed for every figure");
    }
    println!("(MB = 10^6 bytes; timed inside each domain by its own counter; log: {})", logf.display());
    if let Some(samples) = samples {
        print_profile(
            &samples,
            &run.stamps,
            rows.iter().flat_map(|(_, d, o)| std::iter::once(*d).chain(o.iter().map(|x| x.1))),
        );
    }
    if let Some((samples, pauses, err)) = pc_samples {
        if let Some(e) = err {
            println!("pc profile: sampling stopped: {e}");
        }
        print_pc_profile(
            &samples,
            &pauses,
            &run.stamps,
            &run.log,
            rows.iter().flat_map(|(_, d, o)| std::iter::once(*d).chain(o.iter().map(|x| x.1))),
        )?;
    }
    if !missing.is_empty() {
        missing.dedup();
        return Err(format!("bench pv: no figure for {} (log: {})", missing.join(", "), logf.display()));
    }
    Ok(0)
}

/// `bench pv --profile`: for each figure, the host's view of QEMU's threads over its phase
/// (from the phase's end, the arrival of its `bench-result` line, back by its own duration):
/// the median over the rounds of each emulated CPU's and of the device threads' time running
/// on a host core and waiting for one.
fn print_profile<'a>(
    samples: &[crate::hostprof::Sample],
    stamps: &[(std::time::Instant, String)],
    labels: impl Iterator<Item = &'a str>,
) {
    use crate::hostprof::{window, Group};
    let groups = [Group::Cpu(0), Group::Cpu(1), Group::Cpu(2), Group::Cpu(3), Group::Devices];
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "host profile: % of each figure's phase that QEMU's threads ran on one of the host's {cores} cores \
         [% runnable but waiting for one], median over the rounds ({} samples)",
        samples.len()
    );
    println!(
        "{:<28} {:>11} {:>11} {:>11} {:>11} {:>11} {:>9}",
        "figure", "CPU0 contr", "CPU1 contr", "CPU2 uni", "CPU3 guest", "devices", "cores"
    );
    let mut seen = Vec::new();
    for label in labels {
        if seen.contains(&label) {
            continue;
        }
        seen.push(label);
        // Per round: each group's (running, waiting).
        let rounds: Vec<Vec<(Group, f64, f64)>> = stamps
            .iter()
            .filter_map(|(at, line)| {
                let w: Vec<&str> = line.split("bench-result ").nth(1)?.split_whitespace().collect();
                let us: u64 = w.get(2)?.parse().ok()?;
                (w.first() == Some(&label)).then_some(())?;
                window(samples, at.checked_sub(std::time::Duration::from_micros(us))?, *at)
            })
            .collect();
        if rounds.is_empty() {
            println!("{label:<28} (no samples)");
            continue;
        }
        let pick = |g: Group, run: bool| -> Vec<f64> {
            rounds
                .iter()
                .map(|r| r.iter().find(|x| x.0 == g).map_or(0.0, |x| if run { x.1 } else { x.2 }) * 100.0)
                .collect()
        };
        let mut line = format!("{label:<28}");
        for g in groups {
            line +=
                &format!(" {:>11}", format!("{:.0} [{:.0}]", median(&mut pick(g, true)), median(&mut pick(g, false))));
        }
        let mut total: Vec<f64> = rounds.iter().map(|r| r.iter().map(|x| x.1).sum::<f64>()).collect();
        line += &format!(" {:>9.2}", median(&mut total));
        println!("{line}");
    }
}

/// Milliseconds between `bench pv --pc-profile` samples.
const PC_EVERY_MS: u64 = 5;

/// `bench pv --pc-profile`: for each figure, over its phase in every round, the functions
/// each emulated CPU was found in (`crate::pcprof`): the hypervisor's at EL2, the domain's
/// kernel's at EL1 (Linux: the `/proc/kallsyms` the control domain printed, moved to where each
/// domain's `_text` is, and the module symbols each printed), user space at EL0.
fn print_pc_profile<'a>(
    samples: &[crate::pcprof::Sample],
    pauses: &crate::pcprof::Pauses,
    stamps: &[(std::time::Instant, String)],
    log: &str,
    labels: impl Iterator<Item = &'a str>,
) -> Result<(), String> {
    use crate::pcprof::{report, CpuView, Symbols};
    let read = |p: std::path::PathBuf| std::fs::read(&p).map_err(|e| format!("{}: {e}", p.display()));
    let elf = |rel: &str| -> Result<Symbols, String> {
        let p = root().join(rel);
        Symbols::from_elf(&read(p.clone())?).map(Symbols::new).map_err(|e| format!("{}: {e}", p.display()))
    };
    let hyp = elf("target/aarch64-unknown-none-softfloat/release/hyp-el2")?;
    let uni = elf("target/aarch64-unknown-none/release/pvbench")?;
    // What a Linux domain printed of its /proc/kallsyms: all the kernel's function symbols from
    // the control domain, `_text` and the modules' from the guest (the same kernel).
    let printed = |dom: &str| -> Vec<(u64, String)> {
        let tag = format!("[{dom}] ksym ");
        let lines: Vec<&str> = log.lines().filter_map(|l| l.split_once(tag.as_str()).map(|x| x.1)).collect();
        if lines.is_empty() {
            println!("pc profile: domain {dom} printed no symbols; its kernel's functions stay unnamed");
        }
        Symbols::from_map(&lines.join("\n"), 0)
    };
    let text_of = |v: &[(u64, String)]| v.iter().find(|x| x.1 == "_text").map(|x| x.0);
    // The control domain's list is complete as printed; the guest's is the kernel's part of
    // it, moved to where the guest's `_text` is, and the guest's own modules.
    let (mine, theirs) = (printed("control"), printed("guest"));
    let offset = match (text_of(&theirs), text_of(&mine)) {
        (Some(a), Some(b)) => a.wrapping_sub(b) as i64,
        _ => 0,
    };
    let guest = Symbols::new(
        mine.iter()
            .filter(|x| !x.1.contains('['))
            .map(|(a, n)| (a.wrapping_add_signed(offset), n.clone()))
            .chain(theirs.into_iter().filter(|x| x.1 != "_text"))
            .collect(),
    );
    let control = Symbols::new(mine);
    let views = [
        CpuView { title: "CPU0 control".into(), el1: &control, el2: &hyp },
        CpuView { title: "CPU1 control".into(), el1: &control, el2: &hyp },
        CpuView { title: "CPU2 unikernel".into(), el1: &uni, el2: &hyp },
        CpuView { title: "CPU3 guest".into(), el1: &guest, el2: &hyp },
    ];
    let stopped: f64 = pauses.0.iter().map(|(a, b)| b.duration_since(*a).as_secs_f64()).sum();
    let span = match (pauses.0.first(), pauses.0.last()) {
        (Some(a), Some(b)) => b.1.duration_since(a.0).as_secs_f64(),
        _ => 0.0,
    };
    println!(
        "pc profile: {} samples, one every {PC_EVERY_MS} ms of running; the board stood stopped {:.0} % of the time \
         for them (the guests' counters stand still meanwhile); per figure, each CPU's share at EL2 and its most \
         frequent places over the phase in every round",
        samples.len(),
        100.0 * stopped / span.max(1e-9)
    );
    let mut seen = Vec::new();
    for label in labels {
        if seen.contains(&label) {
            continue;
        }
        seen.push(label);
        let windows: Vec<_> = stamps
            .iter()
            .filter_map(|(at, line)| {
                let w: Vec<&str> = line.split("bench-result ").nth(1)?.split_whitespace().collect();
                let us: u64 = w.get(2)?.parse().ok()?;
                (w.first() == Some(&label)).then_some(())?;
                Some((pauses.start_of(*at, std::time::Duration::from_micros(us)), *at))
            })
            .collect();
        println!("{label} ({} round(s))", windows.len());
        for (cpu, n, el2, top) in report(samples, &windows, &views, 6) {
            let places: Vec<String> = top.iter().map(|(k, f)| format!("{:.0}% {k}", f * 100.0)).collect();
            println!(
                "  {:<15} {n:>4} samples, EL2 {:>3.0}%: {}",
                views[cpu as usize].title,
                el2 * 100.0,
                places.join(", ")
            );
        }
    }
    Ok(())
}

/// `median [lowest-highest]` of `v` with `prec` decimals (`median` alone for one value).
pub fn spread(v: &[f64], prec: usize) -> String {
    let mut s = v.to_vec();
    if s.is_empty() {
        return "-".into();
    }
    let med = median(&mut s);
    let (lo, hi) = (s[0], s[s.len() - 1]);
    if s.len() > 1 {
        format!("{med:.prec$} [{lo:.prec$}-{hi:.prec$}]")
    } else {
        format!("{med:.prec$}")
    }
}

/// `bench migrate`'s target: the guest-visible downtime of a 16 MiB unikernel, in ms.
pub const MIGRATE_DOWNTIME_TARGET_MS: f64 = 50.0;
/// And the pages sent over the guest's RAM.
pub const MIGRATE_PAGES_TARGET: f64 = 1.5;

/// `cargo xtask bench migrate`: two boards joined by their Ethernet link (as the `migrate`
/// scenario), `web` moved back and forth: A → B with web idle, then B → A while the host
/// fetches its page in a loop, `--cycles` times. For each move: pre-copy rounds, pages sent
/// (and over its RAM), the whole time, the guest-visible downtime (web's own counter from its
/// suspend hypercall on one board to its first instruction on the other), when it served
/// again, the source's view (suspend to the confirmation) and, under load, the longest any
/// request waited. Fails when the median downtime or pages ratio of either kind is over its
/// target.
fn bench_migrate(args: &[String]) -> Result<u8, String> {
    check_args(args, &["--gic", "--cycles", "--max-downtime-ms"], &[])?;
    let gic: u8 = opt(args, "--gic")?.map_or(Ok(3), |v| v.parse().map_err(|_| format!("--gic: '{v}'")))?;
    let cycles: usize = opt(args, "--cycles")?.map_or(Ok(3), |v| {
        v.parse().ok().filter(|n| (1..=10).contains(n)).ok_or(format!("--cycles: '{v}' (1 to 10)"))
    })?;
    let max_down: f64 = opt(args, "--max-downtime-ms")?.map_or(Ok(MIGRATE_DOWNTIME_TARGET_MS), |v| {
        v.parse().ok().filter(|n: &f64| *n > 0.0).ok_or(format!("--max-downtime-ms: '{v}'"))
    })?;
    setup::ensure_host_tools()?;
    setup::preflight()?;
    let text = migrate_script(cycles);
    println!(
        "bench migrate: GICv{gic}, two boards, web (16 MiB) moved {} times (idle A -> B, loaded B -> A); running...",
        2 * cycles
    );
    let (verdict, log_a, log_b) = crate::test::run_scenario_text("bench-migrate", &text, gic)?;
    if let Err(e) = &verdict {
        println!("bench migrate: the run did not go as scripted: {}", e.lines().next().unwrap_or(""));
    }
    // Move k: from A when k is even (idle), from B when odd (loaded); the receiver's log has
    // web's own lines.
    let sent = |log: &str| -> Vec<String> {
        log.lines().filter(|l| l.contains("hypctl: web migrated to")).map(String::from).collect()
    };
    let resumed = |log: &str| -> Vec<(f64, f64)> {
        let g: Vec<f64> =
            log.lines().filter_map(|l| num_before(l.split("web: resumed ").nth(1)?, " ms after its suspend")).collect();
        let s: Vec<f64> = log
            .lines()
            .filter(|l| l.contains("web: serving again after resume"))
            .filter_map(|l| num_before(l.split("; ").last()?, " ms after its suspend"))
            .collect();
        g.into_iter().zip(s).collect()
    };
    let loops: Vec<f64> =
        log_b.lines().filter_map(|l| num_before(l.split("the longest waited ").nth(1)?, " ms")).collect();
    let (sa, sb, ra, rb) = (sent(&log_a), sent(&log_b), resumed(&log_a), resumed(&log_b));
    println!(
        "{:<4} {:<7} {:<7} {:>6} {:>12} {:>8} {:>9} {:>13} {:>14} {:>13} {:>13}",
        "move",
        "from",
        "load",
        "rounds",
        "pages sent",
        "x RAM",
        "total ms",
        "guest down ms",
        "serving ms",
        "source ms",
        "loop wait ms"
    );
    let mut by_kind: [Vec<(f64, f64)>; 2] = [Vec::new(), Vec::new()];
    for k in 0..2 * cycles {
        let loaded = k % 2 == 1;
        let line = if loaded { sb.get(k / 2) } else { sa.get(k / 2) };
        // web's first resume on B is move 0, on A move 1 (the boot does not resume).
        let guest = if loaded { ra.get(k / 2) } else { rb.get(k / 2) };
        let (Some(line), Some(&(down, serving))) = (line, guest) else {
            println!("{k:<4} (no figures: see build/logs/bench-migrate*-gicv{gic}.log)");
            continue;
        };
        let rounds = num_before(line.split(": ").nth(2).unwrap_or(""), " pre-copy").unwrap_or(0.0);
        let pages = num_before(line.split("round(s), ").nth(1).unwrap_or(""), " pages sent").unwrap_or(0.0);
        let ram = num_before(line.split("pages sent for ").nth(1).unwrap_or(""), " pages of RAM").unwrap_or(1.0);
        let total = num_before(line.split("pages of RAM, ").nth(1).unwrap_or(""), " ms in all").unwrap_or(0.0);
        let source = num_before(line.split("ms in all; ").nth(1).unwrap_or(""), " ms from its suspend").unwrap_or(0.0);
        let wait = if loaded { loops.get(k / 2).map_or("-".into(), |w| format!("{w:.0}")) } else { "-".into() };
        println!(
            "{k:<4} {:<7} {:<7} {rounds:>6.0} {pages:>12.0} {:>8.2} {total:>9.0} {down:>13.1} {serving:>14.0} {source:>13.1} {wait:>13}",
            if loaded { "B" } else { "A" },
            if loaded { "loaded" } else { "idle" },
            pages / ram.max(1.0)
        );
        by_kind[usize::from(loaded)].push((down, pages / ram.max(1.0)));
    }
    let mut fail = verdict.is_err();
    for (i, kind) in ["idle", "loaded"].iter().enumerate() {
        let mut d: Vec<f64> = by_kind[i].iter().map(|x| x.0).collect();
        let mut p: Vec<f64> = by_kind[i].iter().map(|x| x.1).collect();
        if d.is_empty() {
            println!("{kind}: no move measured");
            fail = true;
            continue;
        }
        let (md, mp) = (median(&mut d), median(&mut p));
        let ok = md <= max_down && mp <= MIGRATE_PAGES_TARGET;
        fail |= !ok;
        println!(
            "{kind}: median guest-visible downtime {md:.1} ms over {} moves ({:.1} to {:.1}; target <= {max_down:.0}), pages sent {mp:.2} x RAM (target <= {MIGRATE_PAGES_TARGET}){}",
            d.len(),
            d[0],
            d[d.len() - 1],
            if ok { "" } else { "  <- over target" }
        );
    }
    println!(
        "(times from the control domains' clocks and web's own counter; logs: build/logs/bench-migrate*-gicv{gic}.log)"
    );
    Ok(u8::from(fail))
}

/// The number just before `suffix` in `text` (`"12.5 ms"` → 12.5).
fn num_before(text: &str, suffix: &str) -> Option<f64> {
    let head = &text[..text.find(suffix)?];
    head.rsplit(|c: char| !(c.is_ascii_digit() || c == '.')).next()?.parse().ok()
}

/// The two boards' script for `bench migrate`: each cycle moves web from A to B (idle) and
/// back (while the host fetches in a loop from board B).
fn migrate_script(cycles: usize) -> String {
    let q = |s: &str| format!("{s:?}");
    let mut a = vec![("FERRUM-READY control domain up".to_string(), "@http-get /".to_string())];
    let mut b = vec![("FERRUM-READY control domain up".to_string(), "hypctl receive --port 7000\n".to_string())];
    let mut marker_a = "host: body:".to_string();
    for c in 0..cycles {
        let last = c + 1 == cycles;
        a.push((marker_a.clone(), "@wait 2".into()));
        a.push((marker_a.clone(), "hypctl migrate web {peer}\n".into()));
        a.push(("hypctl: web migrated to".into(), "hypctl receive --port 7000\n".into()));
        marker_a = "hypctl: web received from".into();
        b.push(("hypctl: web received from".into(), "@wait 3".into()));
        b.push(("hypctl: web received from".into(), "@http-loop /".into()));
        b.push(("host: loop started".into(), "@wait 2".into()));
        b.push(("host: loop started".into(), "hypctl migrate web {peer}\n".into()));
        b.push(("hypctl: web migrated to".into(), "@wait 3".into()));
        b.push(("hypctl: web migrated to".into(), "@http-loop-end".into()));
        b.push(("host: loop: ".into(), if last { "poweroff\n".into() } else { "hypctl receive --port 7000\n".into() }));
    }
    a.push((marker_a.clone(), "@wait 2".into()));
    a.push((marker_a, "hypctl list; poweroff\n".into()));
    let list =
        |v: &[(String, String)]| v.iter().map(|(m, t)| format!("    [{}, {}],\n", q(m), q(t))).collect::<String>();
    let timeout = 240 + 120 * cycles;
    format!(
        "description = \"bench migrate: board A\"\ndeployment = \"tests/deployments/migrate-a.toml\"\ngic = [3]\n\
         timeout = {timeout}\nending = \"clean\"\nhttp = true\ninput = [\n{}]\nexpect = [\"(hyp) domain 'control' ended: powered off\"]\n\n\
         [board_b]\ndescription = \"bench migrate: board B\"\ndeployment = \"tests/deployments/migrate-b.toml\"\ngic = [3]\n\
         timeout = {timeout}\nending = \"clean\"\nhttp = true\ninput = [\n{}]\nexpect = [\"(hyp) domain 'control' ended: powered off\"]\n",
        list(&a),
        list(&b)
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn spread_reads_median_and_range() {
        assert_eq!(super::spread(&[3.0, 1.0, 2.0], 1), "2.0 [1.0-3.0]");
        assert_eq!(super::spread(&[0.5], 2), "0.50");
        assert_eq!(super::spread(&[], 2), "-");
    }
}
