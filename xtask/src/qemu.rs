//! Booting a deployment on QEMU `virt` through Debian's U-Boot, interactively (a terminal on
//! stdin: QEMU owns the terminal, Ctrl-] X quits; QEMU's escape key is moved off Ctrl-A so that
//! Ctrl-A reaches the hypervisor's console switch) or as a batch run (output copied to stdout
//! and a log; the exit status says how the board ended: 0 only for a clean power-off).

use crate::sign::{Model, Signing};
use crate::{check_args, load_deployment, opt, root, setup, write_disk};
use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How a batch run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// The hypervisor powered the board off cleanly.
    Clean,
    /// The hypervisor powered off with an error status (plan rejected, crash).
    Error,
    /// The timeout expired.
    Timeout,
    /// QEMU exited without the hypervisor's power-off line.
    NoStatus,
    /// The run was stopped once its stop marker appeared (runs whose hypervisor never powers
    /// the board off, such as Xen with dom0less domains only).
    Stopped,
}

/// A finished batch run.
pub struct RunResult {
    /// How it ended.
    pub ending: Ending,
    /// Everything the serial port printed.
    pub log: String,
    /// Wall time.
    pub secs: f64,
    /// When each `bench-result ` line (the benchmarks' protocol) arrived, with the line: a
    /// figure's phase ends at its arrival, which lets `bench pv --profile` line it up with the
    /// host's view of QEMU's threads.
    pub stamps: Vec<(Instant, String)>,
}

/// Options of one boot.
pub struct RunOpts {
    /// GIC version.
    pub gic: u8,
    /// Deployment file.
    pub deployment: PathBuf,
    /// Timeout.
    pub timeout: Option<u64>,
    /// Skip host validation.
    pub unchecked: bool,
    /// Extra files for the boot partition.
    pub extra_files: Vec<(String, Vec<u8>)>,
    /// Host port forwarded to the `web` unikernel's HTTP port ([`WEB_GUEST`]); `None`: none.
    pub http_port: Option<u16>,
    /// Start with an empty data partition (tests); otherwise its contents are kept.
    pub fresh_data: bool,
    /// Boot the disk the previous run left (its boot partition as that run changed it, e.g.
    /// by `hypctl update --persist`) instead of writing a new one; tests only.
    pub keep_disk: bool,
    /// `--platform`, when given (checked against the deployment's).
    pub platform: Option<String>,
    /// A second NIC wired to another board's (a migration test): see [`Link`].
    pub link: Option<Link>,
    /// Verified boot: a signed FIT with this key (`<key>.key`, `.crt`), altered as said
    /// (tests); see `sign`.
    pub sign: Option<(PathBuf, Option<crate::sign::Tamper>)>,
    /// The hypervisor's trace build, its defmt frames captured from QEMU virt's second PL011
    /// into this file (`cargo xtask trace` decodes it).
    pub trace: Option<PathBuf>,
}

impl RunOpts {
    /// A batch boot of `deployment` on GIC `gic` with nothing else asked for (no timeout, no
    /// forwarded port, the data partition kept, a fresh disk); callers set what they need.
    pub fn new(gic: u8, deployment: PathBuf) -> Self {
        Self {
            gic,
            deployment,
            timeout: None,
            unchecked: false,
            extra_files: Vec::new(),
            http_port: None,
            fresh_data: false,
            keep_disk: false,
            platform: None,
            link: None,
            sign: None,
            trace: None,
        }
    }
}

/// An Ethernet link between two boards on this host: a third virtio-net NIC (virtio-mmio
/// transport `0x0a003a00`, which a deployment passes to the control domain) whose frames go
/// over a TCP connection between the two QEMUs on a loopback port (QEMU's `stream` netdev:
/// one board listens, the other connects; a stream loses no frame when a guest is slow to
/// take them, where datagrams were dropped and TCP inside waited for its retransmission
/// timer). The control domain's init renames it `link0` (it knows it by its MAC,
/// `52:54:00:77:00:<board>`) and gives it `addr` (from `link.txt` on the boot partition).
#[derive(Clone, Debug)]
pub struct Link {
    /// The loopback port of the connection.
    pub port: u16,
    /// This board listens (the other connects, retrying every 100 ms).
    pub server: bool,
    /// 1 or 2: the last byte of the NIC's MAC.
    pub board: u8,
    /// The control domain's address on the link, with its prefix (`192.168.77.1/24`).
    pub addr: String,
}

/// What the hypervisor prints when it halts a board it cannot power off.
pub const HALTED: &str = "(hyp) no firmware power-off";

/// Where deployments put the `web` unikernel on QEMU's user network (its default `ip=`).
pub const WEB_GUEST: &str = "10.0.2.20:80";
/// Host port forwarded to it by default.
pub const DEFAULT_HTTP_PORT: u16 = 8080;

/// Builds everything for `o` and returns the QEMU command line.
pub fn prepare(o: &RunOpts) -> Result<Command, String> {
    crate::TRACE_BUILD.store(o.trace.is_some(), std::sync::atomic::Ordering::Relaxed);
    let dep = load_deployment(&o.deployment, o.unchecked)?;
    if o.trace.is_some() && dep.platform.name != "qemu-virt" {
        return Err(format!(
            "--trace: the trace UART is QEMU virt's second PL011; {} is a deployment for {}",
            o.deployment.display(),
            dep.platform.name
        ));
    }
    if let Some(p) = &o.platform {
        if p != dep.platform.name {
            return Err(format!(
                "--platform {p}: {} is a deployment for platform {}",
                o.deployment.display(),
                dep.platform.name
            ));
        }
    }
    if let Some((key, tamper)) = &o.sign {
        let rpi = dep.platform.name == "rpi4";
        let dir = crate::root().join("build").join(dep.platform.name).join(&dep.name);
        let (disk, control) = (dir.join(if rpi { "sdcard.img" } else { "disk.img" }), dir.join("signed/control.dtb"));
        let s = if o.keep_disk && disk.is_file() && control.is_file() {
            // The disk as the previous run left it (its slots and boot-state record).
            println!("xtask: booting the disk the previous run left: {}", disk.display());
            let loader = if rpi {
                crate::rpi4::uboot_verified(&root().join("build"), &crate::sign::rpi4_env())?
            } else {
                let env = dir.join("uboot-env.img");
                std::fs::write(&env, crate::sign::uboot_env_signed()).map_err(|e| e.to_string())?;
                env
            };
            crate::SignedDisk { disk, control_dtb: control, loader }
        } else {
            crate::write_signed_disk(
                &dep,
                None,
                &o.extra_files,
                o.fresh_data,
                &Signing { key, gic: o.gic, model: Model::Qemu, tamper: *tamper },
            )?
        };
        if rpi {
            return Ok(raspi4b_command(&s.loader, &s.control_dtb, &s.disk));
        }
        let mut c = qemu_command(o.gic, dep.platform, &s.disk, &s.loader, o.http_port);
        c.arg("-dtb").arg(s.control_dtb);
        trace_serial(&mut c, o.trace.as_deref())?;
        return Ok(c);
    }
    let kept = crate::root().join("build").join(dep.platform.name).join(&dep.name).join("disk.img");
    let disk = if o.keep_disk && kept.is_file() {
        println!("xtask: booting the disk the previous run left: {}", kept.display());
        kept
    } else {
        let mut extra = o.extra_files.clone();
        if let Some(l) = &o.link {
            extra.push(("link.txt".into(), format!("{}\n", l.addr).into_bytes()));
        }
        write_disk(&dep, None, &extra, o.fresh_data)?
    };
    if dep.platform.name == "rpi4" {
        if o.gic != 2 {
            return Err(format!("--gic {}: the Raspberry Pi 4 has a GIC-400 (GICv2)", o.gic));
        }
        let fw = crate::rpi4::fetch(&root().join("build"))?;
        let board = std::fs::read(&fw.dtb).map_err(|e| format!("{}: {e}", fw.dtb.display()))?;
        let dtb = disk.with_file_name("qemu-raspi4b.dtb");
        std::fs::write(&dtb, crate::rpi4::qemu_dtb(&board)?).map_err(|e| format!("{}: {e}", dtb.display()))?;
        return Ok(raspi4b_command(&fw.uboot, &dtb, &disk));
    }
    // Next to the disk: two boards (a migration test) run at once.
    let env = disk.with_file_name("uboot-env.img");
    std::fs::write(&env, crate::image::uboot_env_qemu(dep.script_addr)).map_err(|e| e.to_string())?;
    let mut c = qemu_command(o.gic, dep.platform, &disk, &env, o.http_port);
    trace_serial(&mut c, o.trace.as_deref())?;
    if let Some(l) = &o.link {
        let netdev = if l.server {
            format!("stream,id=link0,server=on,addr.type=inet,addr.host=127.0.0.1,addr.port={}", l.port)
        } else {
            format!(
                "stream,id=link0,server=off,addr.type=inet,addr.host=127.0.0.1,addr.port={},reconnect-ms=100",
                l.port
            )
        };
        c.args(["-netdev", &netdev])
            .args(["-device", &format!("virtio-net-device,netdev=link0,mac=52:54:00:77:00:{:02x}", l.board)]);
    }
    if let Some(p) = o.http_port {
        // Fail early and clearly when the port is taken (QEMU's own message is cryptic).
        std::net::TcpListener::bind(("127.0.0.1", p)).map_err(|e| {
            format!("host port {p} for the web unikernel is not free ({e}); choose another with --http-port")
        })?;
    }
    Ok(c)
}

/// With a trace file: the console stays on standard input and output (`-nographic`'s own
/// choice, given explicitly), and QEMU virt's second PL011 (`serial1` in its device tree),
/// which the trace build drains its rings to, writes into `file` (emptied first).
fn trace_serial(c: &mut Command, file: Option<&Path>) -> Result<(), String> {
    if let Some(f) = file {
        if let Some(dir) = f.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        }
        std::fs::write(f, b"").map_err(|e| format!("{}: {e}", f.display()))?;
        c.args(["-serial", "mon:stdio", "-serial", &format!("file:{}", f.display())]);
    }
    Ok(())
}

/// QEMU's Raspberry Pi 4 (`raspi4b`, 2 GiB, 4 Cortex-A72). QEMU stands in for the VideoCore
/// firmware: it starts U-Boot (`-kernel`) at EL2 with the device tree in x0 and holds the
/// secondary CPUs in a spin table. Both UARTs (PL011 and mini-UART) go to the terminal.
pub fn raspi4b_command(uboot: &Path, dtb: &Path, sd: &Path) -> Command {
    let mut c = Command::new("qemu-system-aarch64");
    c.args(["-M", "raspi4b", "-display", "none", "-no-reboot", "-echr", "0x1d", "-monitor", "none"])
        .args(["-chardev", "stdio,id=c0,mux=on,signal=off", "-serial", "chardev:c0", "-serial", "chardev:c0"])
        .arg("-kernel")
        .arg(uboot)
        .arg("-dtb")
        .arg(dtb)
        .args(["-drive", &format!("if=sd,format=raw,file={}", sd.display())]);
    c
}

/// The QEMU command line. `http_port`: host port forwarded (TCP, 127.0.0.1) to [`WEB_GUEST`].
pub fn qemu_command(gic: u8, p: &platforms::Platform, disk: &Path, env: &Path, http_port: Option<u16>) -> Command {
    let netdev = match http_port {
        Some(port) => format!("user,id=net0,hostfwd=tcp:127.0.0.1:{port}-{WEB_GUEST}"),
        None => "user,id=net0".into(),
    };
    let mut c = Command::new("qemu-system-aarch64");
    c.args(["-M", &format!("virt,virtualization=on,gic-version={gic}")])
        .args(["-cpu", "cortex-a72", "-smp", &p.cpus.to_string(), "-m", &p.qemu_ram_mib.to_string()])
        .args(["-nographic", "-no-reboot", "-echr", "0x1d"])
        .args(["-bios", setup::UBOOT_QEMU])
        .args(["-drive", &format!("if=pflash,format=raw,index=1,file={},readonly=on", env.display())]);
    disk_and_nic(&mut c, disk, &netdev);
    c
}

/// The board's disk (`disk`, raw) and NIC (on `netdev`, whose id is `net0`). virtio-mmio
/// transports fill from the top: the disk lands at 0x0a003e00 (SPI 47), the NIC at 0x0a003c00
/// (SPI 46); deployments pass them through by those DT paths.
pub fn disk_and_nic(c: &mut Command, disk: &Path, netdev: &str) {
    c.args(["-drive", &format!("if=none,format=raw,id=hd0,file={}", disk.display())])
        .args(["-device", "virtio-blk-device,drive=hd0"])
        .args(["-netdev", netdev])
        .args(["-device", "virtio-net-device,netdev=net0,mac=52:54:00:12:34:56"]);
}

/// The answer of one GET of `target` (`127.0.0.1:8080/path`) with short timeouts: the HTTP
/// answer, or why there was none.
fn get_once(target: &str, timeout: Duration) -> Result<String, String> {
    let (addr, path) = target.split_once('/').map_or((target, "/".to_string()), |(a, p)| (a, format!("/{p}")));
    let sa: std::net::SocketAddr = addr.parse().map_err(|e| format!("{addr}: {e}"))?;
    let mut s = std::net::TcpStream::connect_timeout(&sa, timeout).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(timeout)).map_err(|e| e.to_string())?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\nUser-Agent: ferrum-xtask\r\n\r\n").map_err(|e| e.to_string())?;
    let mut r = Vec::new();
    s.read_to_end(&mut r).map_err(|e| e.to_string())?;
    let r = String::from_utf8_lossy(&r).into_owned();
    if r.starts_with("HTTP/1.") {
        Ok(r)
    } else {
        Err(format!("connection closed after {} bytes", r.len()))
    }
}

/// A large body in one line: its length and, for web's `/blob` (lines `blob <26 digits>`),
/// whether every line is there in order.
fn summarise_body(body: &str) -> String {
    let lines: Vec<&str> = body.split_terminator('\n').collect();
    if !lines.first().is_some_and(|l| l.starts_with("blob ")) {
        return format!("{} bytes", body.len());
    }
    match lines.iter().enumerate().find(|(i, l)| **l != format!("blob {i:026}")) {
        None => format!("{} bytes, blob lines 0..{} in order", body.len(), lines.len() - 1),
        Some((i, l)) => {
            format!("{} bytes, blob broken at line {i}: '{}'", body.len(), l.chars().take(40).collect::<String>())
        }
    }
}

/// How long one loop attempt waits for an answer before the next target is tried (web
/// answers in milliseconds; QEMU's user network accepts a connection to a guest that is gone
/// and only never answers).
const LOOP_TRY: Duration = Duration::from_millis(300);
/// The longest a loop request is retried before it counts as failed.
const LOOP_GIVE_UP: Duration = Duration::from_secs(30);
/// At most this many loop requests (it is bounded even if nobody stops it).
const LOOP_MAX: usize = 5000;

/// GETs in a loop (a steady load, one at a time, 50 ms apart) until `stop`: each request
/// goes to the target that answered last and, when it gets no answer, to the next one (the
/// boards a migrating service may be on), retried until one answers or [`LOOP_GIVE_UP`]. The
/// summary line says how many were answered, the longest wait of one request and whether the
/// page's `requests served: N` counter only went up.
pub fn http_loop(targets: &[String], stop: &std::sync::atomic::AtomicBool) -> String {
    use std::sync::atomic::Ordering;
    let (mut n, mut failed, mut retried, mut longest) = (0usize, 0usize, 0usize, Duration::ZERO);
    let mut cur = 0usize;
    let mut by = vec![0usize; targets.len()];
    let (mut first, mut last, mut went_back) = (None::<u64>, None::<u64>, None::<(u64, u64)>);
    let mut moves = Vec::new();
    while !stop.load(Ordering::Relaxed) && n < LOOP_MAX && !targets.is_empty() {
        n += 1;
        let t0 = Instant::now();
        let mut tries = 0usize;
        let answer = loop {
            match get_once(&targets[cur], LOOP_TRY) {
                Ok(r) => break Some(r),
                Err(_) if t0.elapsed() < LOOP_GIVE_UP => {
                    tries += 1;
                    cur = (cur + 1) % targets.len();
                    if tries.is_multiple_of(targets.len()) {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                }
                Err(_) => break None,
            }
        };
        let took = t0.elapsed();
        longest = longest.max(took);
        if tries > 0 {
            retried += 1;
        }
        let Some(r) = answer else {
            failed += 1;
            continue;
        };
        if by.iter().enumerate().any(|(i, &c)| c > 0 && i != cur) && by[cur] == 0 {
            moves.push(format!(
                "request {n} answered by board {} after {} ms",
                (b'A' + cur as u8) as char,
                took.as_millis()
            ));
        }
        by[cur] += 1;
        let served = r
            .split("requests served: ")
            .nth(1)
            .and_then(|t| t.split(|c: char| !c.is_ascii_digit()).next().and_then(|d| d.parse::<u64>().ok()));
        if let Some(v) = served {
            if let Some(l) = last {
                if v <= l && went_back.is_none() {
                    went_back = Some((l, v));
                }
            }
            first = first.or(Some(v));
            last = Some(v);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let boards: Vec<String> =
        by.iter().enumerate().map(|(i, c)| format!("board {}: {c}", (b'A' + i as u8) as char)).collect();
    let counter = match (first, last, went_back) {
        (_, _, Some((a, b))) => format!("the counter went back from {a} to {b}"),
        (Some(a), Some(b), None) => format!("requests served {a} to {b}, never reset"),
        _ => "no counter seen".into(),
    };
    let mut out = format!(
        "host: loop: {n} requests, {} answered, {failed} failed; {retried} retried, the longest waited {} ms; answered by {}; {counter}",
        n - failed,
        longest.as_millis(),
        boards.join(", ")
    );
    for m in moves {
        out.push_str(&format!("\nhost: loop: {m}"));
    }
    out
}

/// `GET http://<target>` (`127.0.0.1:8080/path`), tried once and then again until an HTTP
/// answer arrives or `within` passes. Returns log lines: `host: GET <path> -> <status line>` and `host: body: …`.
pub fn http_get(target: &str, within: Duration) -> String {
    let path = target.split_once('/').map_or("/".to_string(), |(_, p)| format!("/{p}"));
    let start = Instant::now();
    let mut last;
    loop {
        match get_once(target, Duration::from_secs(10)) {
            Ok(r) => {
                let status = r.lines().next().unwrap_or("").trim().to_string();
                let body = r.split_once("\r\n\r\n").map_or("", |b| b.1);
                let body = if body.len() > 4096 {
                    summarise_body(body)
                } else {
                    body.split_whitespace().collect::<Vec<_>>().join(" ")
                };
                return format!("\nhost: GET {path} -> {status}\nhost: body: {body}\n");
            }
            Err(e) => last = e,
        }
        if start.elapsed() >= within {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    format!("\nhost: GET {path} failed: {last}\n")
}

/// Runs QEMU without a terminal, capturing the serial output. `input` is a script of
/// (marker, bytes): once the output contains the marker (after the previous step's), the bytes
/// are typed on the serial console. `stop`: QEMU is stopped one second after this text appears.
pub fn run_batch(
    mut cmd: Command,
    timeout: Option<u64>,
    echo: bool,
    input: &[(String, String)],
    stop: Option<(&str, Duration)>,
) -> Result<RunResult, String> {
    let start = Instant::now();
    cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| format!("cannot start qemu-system-aarch64: {e}"))?;
    let mut stdin = child.stdin.take();
    let mut step = 0;
    let mut seen_upto = 0;
    let log = Arc::new(Mutex::new(Vec::<u8>::new()));
    let mut out = child.stdout.take().unwrap();
    let l2 = Arc::clone(&log);
    let stamps = Arc::new(Mutex::new(Vec::<(Instant, String)>::new()));
    let s2 = Arc::clone(&stamps);
    let reader = std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        let mut line = Vec::new();
        while let Ok(n) = out.read(&mut buf) {
            if n == 0 {
                break;
            }
            for &b in &buf[..n] {
                if b != b'\n' {
                    line.push(b);
                    continue;
                }
                if line.windows(13).any(|w| w == b"bench-result ") {
                    s2.lock().unwrap().push((Instant::now(), String::from_utf8_lossy(&line).trim().to_string()));
                }
                line.clear();
            }
            if echo {
                let mut so = std::io::stdout().lock();
                let _ = so.write_all(&buf[..n]);
                let _ = so.flush();
            }
            l2.lock().unwrap().extend_from_slice(&buf[..n]);
        }
    });
    let mut err = child.stderr.take().unwrap();
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let mut wait_until: Option<Instant> = None;
    let mut looping: Option<(Arc<std::sync::atomic::AtomicBool>, std::thread::JoinHandle<String>)> = None;
    let mut timed_out = false;
    let mut halted = false;
    let mut stop_seen: Option<Instant> = None;
    let mut stopped = false;
    let status = loop {
        if let Some(st) = child.try_wait().map_err(|e| e.to_string())? {
            break Some(st);
        }
        if let (Some((marker, text)), Some(w)) = (input.get(step), stdin.as_mut()) {
            let hit = {
                let l = log.lock().unwrap();
                let hay = &l[seen_upto.min(l.len())..];
                hay.windows(marker.len().max(1))
                    .position(|w| w == marker.as_bytes())
                    .map(|p| seen_upto + p + marker.len())
            };
            if let Some(end) = hit.filter(|_| wait_until.is_none_or(|t| Instant::now() >= t)) {
                if let Some(secs) = text.strip_prefix("@wait ") {
                    // A host action: the next step waits this many seconds more (its marker
                    // may be this one's: the search does not move on).
                    wait_until = Some(Instant::now() + Duration::from_secs(secs.trim().parse().unwrap_or(1)));
                    let _ = end;
                    step += 1;
                    continue;
                }
                if let Some(targets) = text.strip_prefix("@http-loop ") {
                    // A host action: GETs in a loop, in the background, until `@http-loop-end`.
                    let targets: Vec<String> = targets.split_whitespace().map(String::from).collect();
                    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
                    let s2 = Arc::clone(&stop);
                    looping = Some((stop, std::thread::spawn(move || http_loop(&targets, &s2))));
                    log.lock().unwrap().extend_from_slice(b"\nhost: loop started\n");
                    seen_upto = end;
                    step += 1;
                    continue;
                }
                if text == "@http-loop-end" {
                    let summary = match looping.take() {
                        Some((stop, h)) => {
                            stop.store(true, std::sync::atomic::Ordering::Relaxed);
                            h.join().unwrap_or_else(|_| "host: loop: its thread panicked".into())
                        }
                        None => "host: loop: none was started".into(),
                    };
                    log.lock().unwrap().extend_from_slice(format!("\n{summary}\n").as_bytes());
                    seen_upto = end;
                    step += 1;
                    continue;
                }
                let probe = text.strip_prefix("@http-probe ");
                if let Some(target) = text.strip_prefix("@http-get ").or(probe) {
                    // A host action: an HTTP GET through QEMU's port forwarding, its result
                    // appended to the log for the scenario's expectations.
                    let mut got = http_get(target, Duration::from_secs(if probe.is_some() { 0 } else { 90 }));
                    if probe.is_some() && got.contains(" failed: ") {
                        let path = target.split_once('/').map_or("/".to_string(), |(_, p)| format!("/{p}"));
                        got = format!("\nhost: GET {path} -> no answer\n");
                    }
                    log.lock().unwrap().extend_from_slice(got.as_bytes());
                    seen_upto = end;
                    step += 1;
                    continue;
                }
                std::thread::sleep(Duration::from_millis(300));
                // Type slowly: the guest's UART FIFO is small and input arrives by interrupt.
                for b in text.bytes() {
                    let _ = w.write_all(&[b]);
                    let _ = w.flush();
                    std::thread::sleep(Duration::from_millis(15));
                }
                seen_upto = end;
                step += 1;
            }
        }
        if let Some((m, grace)) = stop {
            if stop_seen.is_none() && log.lock().unwrap().windows(m.len().max(1)).any(|w| w == m.as_bytes()) {
                stop_seen = Some(Instant::now());
            }
            if stop_seen.is_some_and(|t| t.elapsed() >= grace) {
                let _ = child.kill();
                let _ = child.wait();
                stopped = true;
                break None;
            }
        }
        // Boards without firmware power-off (the Pi 4 without PSCI) halt after the status line.
        if log.lock().unwrap().windows(HALTED.len()).rev().take(8192).any(|w| w == HALTED.as_bytes()) {
            std::thread::sleep(Duration::from_millis(200));
            let _ = child.kill();
            let _ = child.wait();
            halted = true;
            break None;
        }
        if timeout.is_some_and(|t| start.elapsed() > Duration::from_secs(t)) {
            let _ = child.kill();
            let _ = child.wait();
            timed_out = true;
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let _ = reader.join();
    let stderr = err_reader.join().unwrap_or_default();
    let mut log = String::from_utf8_lossy(&log.lock().unwrap()).replace('\r', "");
    if !stderr.trim().is_empty() {
        log.push_str(&format!("\n[qemu stderr] {}\n", stderr.trim()));
        if echo {
            eprintln!("qemu: {}", stderr.trim());
        }
    }
    let ending = if stopped {
        Ending::Stopped
    } else if timed_out {
        Ending::Timeout
    } else if log.contains("(hyp) power off (status: clean)") && (halted || status.is_some_and(|s| s.success())) {
        Ending::Clean
    } else if log.contains("(hyp) power off (status: error)") {
        Ending::Error
    } else {
        Ending::NoStatus
    };
    let stamps = std::mem::take(&mut *stamps.lock().unwrap());
    Ok(RunResult { ending, log, secs: start.elapsed().as_secs_f64(), stamps })
}

/// Parses the common run options.
pub fn parse_opts(args: &[String]) -> Result<RunOpts, String> {
    check_args(
        args,
        &["--gic", "--deployment", "--timeout", "--platform", "--http-port", "--sign", "--trace"],
        &["--unchecked", "--keep-disk"],
    )?;
    let gic = match opt(args, "--gic")?.as_deref() {
        None | Some("2") => 2,
        Some("3") => 3,
        Some(v) => return Err(format!("--gic {v}: the virt board has GIC version 2 or 3")),
    };
    let platform = opt(args, "--platform")?;
    let deployment = match opt(args, "--deployment")? {
        Some(f) => PathBuf::from(f),
        None => crate::default_deployment(platform.as_deref())?,
    };
    let timeout = match opt(args, "--timeout")? {
        None => None,
        Some(t) => Some(t.parse::<u64>().map_err(|_| format!("--timeout {t}: not a number of seconds"))?),
    };
    let http_port = match opt(args, "--http-port")? {
        None => DEFAULT_HTTP_PORT,
        Some(p) => {
            p.parse::<u16>().ok().filter(|&p| p != 0).ok_or_else(|| format!("--http-port {p}: not a TCP port"))?
        }
    };
    Ok(RunOpts {
        gic,
        deployment,
        timeout,
        unchecked: args.iter().any(|a| a == "--unchecked"),
        extra_files: Vec::new(),
        http_port: Some(http_port),
        fresh_data: false,
        keep_disk: args.iter().any(|a| a == "--keep-disk"),
        link: None,
        // A verified-boot disk signed with this key (QEMU's model of the board; see sign.rs).
        sign: opt(args, "--sign")?.map(|k| (PathBuf::from(k), None)),
        trace: opt(args, "--trace")?.map(PathBuf::from),
        platform,
    })
}

/// `cargo xtask run-qemu-aarch64`.
pub fn cmd_run(args: &[String]) -> Result<u8, String> {
    let o = parse_opts(args)?;
    setup::ensure_host_tools()?;
    let mut cmd = prepare(&o)?;
    if let Some(t) = &o.trace {
        eprintln!(
            "xtask: the hypervisor's trace build; its frames go to {} (decode: cargo xtask trace {})",
            t.display(),
            t.display()
        );
    }
    let interactive = std::io::stdin().is_terminal() && std::io::stdout().is_terminal();
    let board = if cmd.get_args().any(|a| a == "raspi4b") {
        "QEMU raspi4b (Raspberry Pi 4)".to_string()
    } else {
        format!("QEMU virt (GICv{})", o.gic)
    };
    eprintln!(
        "xtask: booting {} on {board}{}",
        o.deployment.display(),
        if interactive {
            " — press Ctrl-] then X to quit QEMU; Ctrl-A three times switches the console between domains"
        } else {
            ""
        }
    );
    if interactive {
        let st = if let Some(t) = o.timeout {
            let mut child = cmd.spawn().map_err(|e| e.to_string())?;
            let start = Instant::now();
            loop {
                if let Some(st) = child.try_wait().map_err(|e| e.to_string())? {
                    break st;
                }
                if start.elapsed() > Duration::from_secs(t) {
                    let _ = child.kill();
                    eprintln!("\nxtask: timed out after {t} s");
                    return Ok(124);
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        } else {
            cmd.status().map_err(|e| e.to_string())?
        };
        return Ok(if st.success() { 0 } else { 1 });
    }
    let r = run_batch(cmd, o.timeout, true, &[], None)?;
    let (code, what) = match r.ending {
        Ending::Clean => (0, "clean power-off".to_string()),
        Ending::Error => (1, "the hypervisor powered off with an error status".to_string()),
        Ending::Timeout => (124, format!("timed out after {} s", o.timeout.unwrap_or(0))),
        Ending::NoStatus => (1, "QEMU exited without the hypervisor's power-off line".to_string()),
        Ending::Stopped => (0, "stopped at its marker".to_string()),
    };
    eprintln!("xtask: {what} after {:.1} s", r.secs);
    Ok(code)
}

#[cfg(test)]
mod tests {
    use super::summarise_body;

    #[test]
    fn a_large_body_is_summarised_and_the_blob_checked() {
        let blob: String = (0..200).map(|i| format!("blob {i:026}\n")).collect();
        assert_eq!(summarise_body(&blob), "6400 bytes, blob lines 0..199 in order");
        let broken = blob.replacen("blob 00000000000000000000000007", "blob 00000000000000000000000008", 1);
        assert!(
            summarise_body(&broken).starts_with("6400 bytes, blob broken at line 7: 'blob 0"),
            "{}",
            summarise_body(&broken)
        );
        let short: String = blob.lines().filter(|l| !l.ends_with("0042")).map(|l| format!("{l}\n")).collect();
        assert!(summarise_body(&short).contains("broken at line 42"));
        assert_eq!(summarise_body(&"x".repeat(5000)), "5000 bytes");
    }
}
