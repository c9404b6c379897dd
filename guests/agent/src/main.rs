//! `ferrum-agent`: the control domain's helper, what Xen's hotplug scripts and `xl devd` do in
//! a driver domain (docs/xen-abi.md §6.11), plus `hypctl`.
//!
//! - `ferrum-agent setup`: loads the backend modules (`/lib/modules/backend-order`), creates
//!   the bridge `xenbr0` and makes the NIC (`eth0`) its uplink, so bridged vifs reach the
//!   board's network.
//! - `ferrum-agent daemon`: watches this domain's `backend` directory; for each vbd it
//!   resolves `params` (a block device, or a file through a loop device) to `physical-device`;
//!   for each vif it waits for netback's `vif<domid>.<handle>`, adds it to its bridge, brings it
//!   up and writes `hotplug-status = connected`. It reports every device state change.
//! - `hypctl` (or `ferrum-agent hypctl`): the control plane. `list` (domains with state,
//!   uptime, restarts, vCPU time and PV devices), `status`, `start`, `stop` (graceful through
//!   `control/shutdown`, forced after a timeout), `destroy`, `restart`, `pause`, `unpause`,
//!   `top`, `update` (a new kernel image for a stopped domain, `--persist` to the boot
//!   partition); through `/dev/xen/privcmd` (`ctl.rs`).
//! - `ferrum-agent bench …`: the Linux ends of `cargo xtask bench pv` (see `bench.rs`).
//!
//! Invariant: the agent only writes keys the backend domain owns (`physical-device`,
//! `hotplug-status`, `hotplug-error`); everything it reads from xenstore is checked before it
//! becomes a path or an interface name.
//!
//! Every line it prints goes out in one `write` (the `println!` below): the console is shared
//! with the kernel's messages, and a line written in two pieces (its text, then its newline, as
//! the standard `println!` does through stdout's line buffer) could get a kernel message
//! printed between them, which cuts both lines.

/// `println!`, but the line and its newline are formatted first and written at once.
macro_rules! println {
    ($($t:tt)*) => {
        $crate::say(&format!("{}\n", format_args!($($t)*)))
    };
}

mod bench;
mod ctl;
mod hotplug;
mod sys;
mod xs;

use std::collections::HashMap;
use xs::Xs;

/// Writes one whole line to stdout in a single `write` (see the module docs).
fn say(line: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(line.as_bytes());
    let _ = out.flush();
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let prog = args.first().map(|a| a.rsplit('/').next().unwrap_or(a).to_string()).unwrap_or_default();
    let rest: Vec<&str> = args.iter().skip(1).map(String::as_str).collect();
    let r = match (prog.as_str(), rest.as_slice()) {
        ("hypctl", r) | (_, ["hypctl", r @ ..]) => hypctl(r),
        (_, ["setup"]) => setup(),
        (_, ["daemon"]) => daemon(),
        (_, ["bench", r @ ..]) => bench::run(r),
        _ => Err(format!("usage: ferrum-agent setup | daemon | bench ... | hypctl ...\n{HYPCTL_USAGE}")),
    };
    if let Err(e) = r {
        eprintln!("{prog}: {e}");
        std::process::exit(1);
    }
}

/// The bridge that reaches the outside and its uplink.
const BRIDGE: &str = "xenbr0";
const UPLINK: &str = "eth0";

fn setup() -> Result<(), String> {
    let order = std::fs::read_to_string("/lib/modules/backend-order").unwrap_or_default();
    let mut loaded = Vec::new();
    for m in order.split_whitespace() {
        // Linux restricts privcmd in a domain that is not dom0 to one target domain unless told
        // otherwise; the control domain's `hypctl` needs it for every domain (the hypervisor
        // itself refuses the control operations to every other domain).
        let params = if m == "xen-privcmd" { "unrestricted=1" } else { "" };
        match sys::load_module(&format!("/lib/modules/{m}.ko"), params) {
            Ok(()) => loaded.push(m),
            Err(e) => println!("ferrum-agent: module {m}: {e}"),
        }
    }
    println!("ferrum-agent: backend modules loaded: {}", loaded.join(" "));
    sys::bridge_create(BRIDGE)?;
    if std::path::Path::new(&format!("/sys/class/net/{UPLINK}")).exists() {
        sys::link_up(UPLINK)?;
        sys::bridge_add(BRIDGE, UPLINK)?;
        println!("ferrum-agent: bridge {BRIDGE} with uplink {UPLINK}");
    } else {
        println!("ferrum-agent: bridge {BRIDGE} (no {UPLINK}: domains reach only each other)");
    }
    sys::link_up(BRIDGE)
}

fn daemon() -> Result<(), String> {
    let mut xs = Xs::open()?;
    let me = xs.read("domid").ok_or("cannot read my domid")?;
    let base = format!("/local/domain/{me}/backend");
    xs.watch(&base, "backend")?;
    println!("ferrum-agent: serving backends under {base}");
    let mut states: HashMap<String, String> = HashMap::new();
    let mut loops: HashMap<String, String> = HashMap::new();
    let mut bridged: HashMap<String, String> = HashMap::new();
    // The hypervisor raises VIRQ_DOM_EXC when a domain ends, restarts or stays stopped (as Xen
    // tells its toolstack domain): the agent reports each change.
    let mut virq = match sys::Virq::bind(xen_abi::evtchn::VIRQ_DOM_EXC) {
        Ok(v) => Some(v),
        Err(e) => {
            println!("ferrum-agent: no domain state events ({e})");
            None
        }
    };
    let mut domains = domain_states();
    loop {
        scan(&mut xs, &base, &mut states, &mut loops, &mut bridged);
        xs.wait_events(500);
        if virq.as_mut().is_some_and(sys::Virq::fired) {
            let now = domain_states();
            for (name, st) in &now {
                match domains.get(name) {
                    Some(old) if old == st => {}
                    old => println!("ferrum-agent: VIRQ_DOM_EXC: {name}: {} -> {st}", old.map_or("?", String::as_str)),
                }
            }
            domains = now;
        }
    }
}

/// Every domain's state as `hypctl list` words it (empty when the hypervisor cannot be asked).
fn domain_states() -> HashMap<String, String> {
    let mut m = HashMap::new();
    for i in ctl::list().unwrap_or_default() {
        if let Ok(s) = ctl::status(i.domid) {
            m.insert(s.name().to_string(), state_of(&s).to_string());
        }
    }
    m
}

/// One pass over every backend directory.
fn scan(
    xs: &mut Xs,
    base: &str,
    states: &mut HashMap<String, String>,
    loops: &mut HashMap<String, String>,
    bridged: &mut HashMap<String, String>,
) {
    let mut seen = Vec::new();
    for kind in ["vbd", "vif"] {
        for front in xs.dir(&format!("{base}/{kind}")) {
            for id in xs.dir(&format!("{base}/{kind}/{front}")) {
                let dir = format!("{base}/{kind}/{front}/{id}");
                seen.push(dir.clone());
                let r = match kind {
                    "vbd" => vbd(xs, &dir, loops),
                    _ => vif(xs, &dir, &front, &id, bridged),
                };
                if let Err(e) = r {
                    println!("ferrum-agent: {kind} {front}/{id}: {e}");
                    let _ = xs.write(&format!("{dir}/hotplug-error"), &e);
                }
                let st = xs.read(&format!("{dir}/state")).unwrap_or_default();
                if states.get(&dir) != Some(&st) {
                    println!("ferrum-agent: {kind} {front}/{id}: backend {}", hotplug::state_name(&st));
                    states.insert(dir, st);
                }
            }
        }
    }
    states.retain(|k, _| seen.contains(k));
}

fn vbd(xs: &mut Xs, dir: &str, loops: &mut HashMap<String, String>) -> Result<(), String> {
    if xs.read(&format!("{dir}/physical-device")).is_some() || xs.read(&format!("{dir}/hotplug-error")).is_some() {
        return Ok(());
    }
    let params = xs.read(&format!("{dir}/params")).ok_or("no params")?;
    let writable = xs.read(&format!("{dir}/mode")).as_deref() == Some("w");
    let target = hotplug::check_target(&params)?;
    let meta = std::fs::metadata(target).map_err(|e| format!("{target}: {e}"))?;
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let dev = if meta.file_type().is_block_device() {
        target.to_string()
    } else if meta.is_file() {
        match loops.get(target) {
            Some(d) => d.clone(),
            None => {
                let d = sys::loop_attach(target, writable)?;
                loops.insert(target.to_string(), d.clone());
                d
            }
        }
    } else {
        return Err(format!("{target} is neither a block device nor a file"));
    };
    let rdev = std::fs::metadata(&dev).map_err(|e| format!("{dev}: {e}"))?.rdev();
    let pd = hotplug::physical_device(rdev);
    xs.write(&format!("{dir}/physical-device"), &pd)?;
    println!("ferrum-agent: {dir}: {params} is {dev} ({pd}), physical-device written");
    Ok(())
}

/// Bridges a vif once netback created it for this backend device: its state is at least
/// InitWait and the interface is not the one bridged before under that name (after a frontend
/// restarts, the old `vif<d>.<n>` may still exist while the new backend directory appears;
/// bridging it would leave the new one out). `bridged`: interface name -> ifindex bridged.
fn vif(xs: &mut Xs, dir: &str, front: &str, id: &str, bridged: &mut HashMap<String, String>) -> Result<(), String> {
    if xs.read(&format!("{dir}/hotplug-status")).as_deref() == Some("connected") {
        return Ok(());
    }
    let name = hotplug::vif_name(front, id)?;
    let state: u32 = xs.read(&format!("{dir}/state")).and_then(|s| s.parse().ok()).unwrap_or(0);
    let ifindex = std::fs::read_to_string(format!("/sys/class/net/{name}/ifindex")).map(|s| s.trim().to_string());
    let Ok(ifindex) = ifindex else {
        return Ok(()); // netback has not created it yet
    };
    if state < 2 || bridged.get(&name) == Some(&ifindex) {
        return Ok(()); // not this device's interface yet
    }
    let bridge = xs.read(&format!("{dir}/bridge")).unwrap_or_else(|| BRIDGE.into());
    let bridge = hotplug::check_ifname(&bridge)?;
    sys::bridge_create(bridge)?;
    sys::link_up(bridge)?;
    sys::bridge_add(bridge, &name)?;
    sys::link_up(&name)?;
    xs.write(&format!("{dir}/hotplug-status"), "connected")?;
    bridged.insert(name.to_string(), ifindex);
    println!("ferrum-agent: {name} joined bridge {bridge}, hotplug-status connected");
    Ok(())
}

const HYPCTL_USAGE: &str =
    "usage: hypctl list | status NAME | start NAME | stop NAME [--timeout SECONDS] | destroy NAME \
| restart NAME | pause NAME | unpause NAME | top [-n ROUNDS] [-d SECONDS] | update NAME IMAGE [--persist] | save NAME FILE [--timeout S] | restore FILE [--slot NAME] | migrate NAME HOST:PORT | receive [--port N] | slots | update-deployment FILE [--tries N] | commit";

fn hypctl(args: &[&str]) -> Result<(), String> {
    use xen_abi::domctl as dc;
    match args {
        [] | ["list"] => list(),
        ["status", name] => {
            let id = ctl::find(name)?;
            let s = ctl::status(id)?;
            let state = state_of(&s);
            println!(
                "{name}: id {id}, {state}, uptime {}, restarts {}, vcpus {}, vcpu time {}, traps {}, hypercalls {}, irqs {}",
                ctl::duration(s.uptime_ns),
                s.restarts,
                s.vcpus,
                ctl::duration(s.cpu_time_ns),
                s.traps,
                s.hypercalls,
                s.irqs
            );
            if s.last_exit != 0 {
                println!("{name}: last exit: {}", hyp_core::control::state_text(s.last_exit));
            }
            println!("{name}: uptime_ms {}", s.uptime_ns / 1_000_000);
            Ok(())
        }
        ["start", name] => {
            ctl::op(dc::FERRUM_START, ctl::find(name)?).map_err(|e| format!("start {name}: {e}"))?;
            println!("hypctl: {name} started");
            Ok(())
        }
        ["stop", name] => stop(name, 10),
        ["stop", name, "--timeout", t] => stop(name, t.parse().map_err(|_| format!("bad --timeout '{t}'"))?),
        [op @ ("destroy" | "restart" | "pause" | "unpause"), name] => {
            let (cmd, done) = match *op {
                "destroy" => (dc::DESTROYDOMAIN, "destroyed"),
                "restart" => (dc::FERRUM_RESTART, "restarted"),
                "pause" => (dc::PAUSEDOMAIN, "paused"),
                _ => (dc::UNPAUSEDOMAIN, "unpaused"),
            };
            ctl::op(cmd, ctl::find(name)?).map_err(|e| format!("{op} {name}: {e}"))?;
            println!("hypctl: {name} {done}");
            Ok(())
        }
        ["top", rest @ ..] => top(rest),
        ["info"] => {
            let p = ctl::physinfo()?;
            let mib = |pages: u64| pages * 4 / 1024;
            println!(
                "board: {} CPUs online, counter {} kHz, RAM {} MiB, {} MiB assigned to no domain",
                p.nr_cpus,
                p.cpu_khz,
                mib(p.total_pages),
                mib(p.free_pages)
            );
            Ok(())
        }
        ["save", name, path] => save(name, path, 10),
        ["save", name, path, "--timeout", t] => {
            save(name, path, t.parse().map_err(|_| format!("bad --timeout '{t}'"))?)
        }
        ["restore", path] => restore(path, None),
        ["migrate", name, to] => migrate(name, to),
        ["receive"] => receive(7000),
        ["receive", "--port", p] => receive(p.parse().map_err(|_| format!("bad --port '{p}'"))?),
        ["restore", path, "--slot", slot] => restore(path, Some(slot)),
        ["update", name, path] => update(name, path, false),
        ["update", name, path, "--persist"] => update(name, path, true),
        ["slots"] => slots(),
        ["update-deployment", path] => update_deployment(path, 2),
        ["update-deployment", path, "--tries", n] => {
            update_deployment(path, n.parse().map_err(|_| format!("bad --tries '{n}'"))?)
        }
        ["commit"] => commit(),
        _ => Err(HYPCTL_USAGE.into()),
    }
}

/// `hypctl save NAME FILE`: asks NAME to suspend (`control/shutdown = suspend`, Xen's
/// protocol, which ferrum-rt applications such as kv honour), waits up to `secs` seconds,
/// writes its save stream (`hyp_core::savestream`: header, RAM, CRC-32) to FILE and destroys
/// the suspended domain.
fn save(name: &str, path: &str, secs: u64) -> Result<(), String> {
    let t0 = std::time::Instant::now();
    let (id, stream) = suspend_and_stream(name, secs, "save")?;
    std::fs::write(path, &stream).map_err(|e| format!("save {name}: {path}: {e}"))?;
    ctl::op(xen_abi::domctl::DESTROYDOMAIN, id).map_err(|e| format!("destroy {name}: {e}"))?;
    let crc = u32::from_le_bytes(stream[stream.len() - 8..stream.len() - 4].try_into().unwrap_or([0; 4]));
    println!(
        "hypctl: {name} saved to {path} ({} KiB, CRC-32 {crc:08x}) in {} ms and destroyed",
        stream.len() / 1024,
        t0.elapsed().as_millis()
    );
    Ok(())
}

/// Asks domain `name` to suspend, waits up to `secs` seconds and reads its whole save stream
/// (with its trailer). The domain stays suspended.
fn suspend_and_stream(name: &str, secs: u64, what: &str) -> Result<(u16, Vec<u8>), String> {
    let id = suspend_domain(name, secs, what, || Ok(false))?;
    Ok((id, read_stream(id).map_err(|e| format!("{what} {name}: {e}"))?))
}

/// Asks running unikernel `name` to suspend and waits up to `secs` seconds for it (a refused
/// wait cancels the request). `meanwhile` runs at each poll while it winds down; when it
/// returns `false` (nothing done) the wait sleeps a millisecond.
fn suspend_domain(
    name: &str,
    secs: u64,
    what: &str,
    mut meanwhile: impl FnMut() -> Result<bool, String>,
) -> Result<u16, String> {
    let id = ctl::find(name)?;
    let st = ctl::status(id)?;
    if st.linux {
        return Err(format!(
            "{what} {name}: Linux domains cannot be saved or migrated yet (only ferrum-rt unikernels)"
        ));
    }
    if st.state != 0 {
        return Err(format!("{what} {name}: it is not running"));
    }
    let mut xs = Xs::open()?;
    xs.write(&format!("/local/domain/{id}/control/shutdown"), "suspend")?;
    let t0 = std::time::Instant::now();
    while ctl::status(id)?.state != 13 {
        if t0.elapsed() > std::time::Duration::from_secs(secs) {
            let _ = xs.write(&format!("/local/domain/{id}/control/shutdown"), "");
            return Err(format!(
                "{what} {name}: it did not suspend within {secs} s (does its runtime support suspend?)"
            ));
        }
        if !meanwhile()? {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }
    Ok(id)
}

/// The whole save stream of suspended domain `id`, trailer included.
fn read_stream(id: u16) -> Result<Vec<u8>, String> {
    use hyp_core::savestream::{trailer, HEADER_SIZE};
    use xen_abi::domctl as dc;
    let mut head = vec![0xffu8; HEADER_SIZE];
    let total = hyp_core::control::stream_len(&ctl::xfer(dc::FERRUM_SAVE_READ, id, 0, &mut head)?);
    let mut stream = head;
    let mut chunk = vec![0xffu8; 1 << 20];
    let mut off = HEADER_SIZE as u64;
    while off < total {
        let n = ((total - off) as usize).min(chunk.len());
        ctl::xfer(dc::FERRUM_SAVE_READ, id, off, &mut chunk[..n])?;
        stream.extend_from_slice(&chunk[..n]);
        off += n as u64;
    }
    let crc = crc32fast::hash(&stream);
    stream.extend_from_slice(&trailer(crc));
    Ok(stream)
}

/// Pre-copy rounds at most, before the last (stop-and-copy) one.
const MIGRATE_ROUNDS: usize = 6;
/// Dirty pages under which the pre-copy stops early.
const MIGRATE_FEW: u64 = 64;

/// The migration wire protocol, records of a tag byte and their bytes:
/// - `T` our clock (u64 ns): the receiver answers `T` and its clock at once (the sender
///   estimates the offset of the two clocks from the exchange with the shortest round trip);
/// - `S` the 4 KiB header of the running domain's shape: the receiver checks its slot and
///   begins the restore, answering a line `OK` or `ERR <why>` (the domain never stops when
///   refused);
/// - `P` offset (u64), length (u32) and that many bytes of RAM (whole pages, at most 1 MiB),
///   written into the slot as they arrive;
/// - `Q` a sync: the receiver answers `Q` once everything before it is in the slot;
/// - `H` the final 4 KiB header and the suspend's time on the receiver's clock (u64 ns);
/// - `E` the end: the receiver resumes the domain, its counter moved on by the time since
///   its suspend, and answers `OK` or `ERR <why>`.
fn send_record(w: &mut impl std::io::Write, tag: u8, head: &[u8], body: &[u8]) -> std::io::Result<()> {
    w.write_all(&[tag])?;
    w.write_all(head)?;
    w.write_all(body)
}

/// Nanoseconds on this process's monotonic clock (from its first use).
fn mono_ns() -> u64 {
    static BASE: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    BASE.get_or_init(std::time::Instant::now).elapsed().as_nanos() as u64
}

/// Milliseconds, with one decimal, of `ns`.
fn ms(ns: u64) -> String {
    format!("{}.{}", ns / 1_000_000, (ns / 100_000) % 10)
}

/// Sends the RAM pages whose bits are set in `bitmap` (runs of them read at once).
fn send_dirty(w: &mut impl std::io::Write, id: u16, bitmap: &[u8], pages: u64) -> Result<u64, String> {
    thread_local! {
        // One buffer for every round (the last one runs while the domain is stopped).
        static BUF: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(vec![0xffu8; 256 * 4096]);
    }
    BUF.with(|b| send_dirty_with(w, id, bitmap, pages, &mut b.borrow_mut()))
}

fn send_dirty_with(
    w: &mut impl std::io::Write,
    id: u16,
    bitmap: &[u8],
    pages: u64,
    buf: &mut [u8],
) -> Result<u64, String> {
    use hyp_core::savestream::HEADER_SIZE;
    let set = |i: u64| bitmap.get((i / 8) as usize).is_some_and(|b| b & (1 << (i % 8)) != 0);
    let (mut i, mut sent) = (0u64, 0u64);
    while i < pages {
        if !set(i) {
            i += 1;
            continue;
        }
        let mut n = 1;
        while i + n < pages && n < 256 && set(i + n) {
            n += 1;
        }
        let len = (n * 4096) as usize;
        ctl::xfer(xen_abi::domctl::FERRUM_SAVE_READ, id, HEADER_SIZE as u64 + i * 4096, &mut buf[..len])?;
        let mut head = (i * 4096).to_le_bytes().to_vec();
        head.extend_from_slice(&(len as u32).to_le_bytes());
        send_record(w, b'P', &head, &buf[..len]).map_err(|e| e.to_string())?;
        sent += n;
        i += n;
    }
    Ok(sent)
}

/// Dirty logging of domain `id`: `op` 1 start, 2 read and clear into `bitmap`, 3 stop.
fn log_dirty(id: u16, op: u64, bitmap: &mut [u8]) -> Result<u64, String> {
    let b = ctl::xfer(xen_abi::domctl::FERRUM_LOG_DIRTY, id, op, bitmap)?;
    Ok(hyp_core::control::stream_len(&b))
}

/// `hypctl migrate NAME HOST:PORT`: moves a running unikernel to another board whose control
/// domain runs `hypctl receive`. The receiver checks its slot first (a refusal leaves the
/// domain running here, untouched); the RAM is copied while the domain runs, with dirty
/// logging, in rounds until few pages change; then the domain is suspended, its last dirty
/// pages and state sent, and it resumes there, its virtual counter moved on by the time since
/// its suspend (the two boards' clocks compared over the connection). It is destroyed here
/// only once the other side confirms; when the other side fails at the end it resumes here.
/// The downtime printed is from its suspend (the hypervisor's instant) to the confirmation.
fn migrate(name: &str, to: &str) -> Result<(), String> {
    use std::io::{BufRead, Read, Write};
    let id = ctl::find(name)?;
    let st = ctl::status(id)?;
    if st.linux {
        return Err(format!("migrate {name}: Linux domains cannot be migrated yet (only ferrum-rt unikernels)"));
    }
    if st.state != 0 {
        return Err(format!("migrate {name}: it is not running"));
    }
    let ram = ctl::list()?.iter().find(|i| i.domid == id).map_or(0, |i| i.tot_pages * 4096);
    let pages = ram / 4096;
    let t0 = std::time::Instant::now();
    let sock = loop {
        match std::net::TcpStream::connect(to) {
            Ok(s) => break s,
            Err(_) if t0.elapsed() < std::time::Duration::from_secs(60) => {
                std::thread::sleep(std::time::Duration::from_millis(500))
            }
            Err(e) => return Err(format!("migrate {name}: cannot reach {to}: {e}")),
        }
    };
    let _ = sock.set_read_timeout(Some(std::time::Duration::from_secs(120)));
    let _ = sock.set_nodelay(true);
    let mut rd = std::io::BufReader::new(&sock);
    let mut w = std::io::BufWriter::with_capacity(1 << 20, &sock);
    let line = |rd: &mut std::io::BufReader<&std::net::TcpStream>| -> Result<String, String> {
        let mut l = String::new();
        rd.read_line(&mut l).map_err(|e| e.to_string())?;
        if l.is_empty() {
            return Err("the connection closed".into());
        }
        Ok(l.trim().to_string())
    };
    // The two clocks: the exchange with the shortest round trip of five.
    let mut best: Option<(i64, u64)> = None;
    for _ in 0..5 {
        let t1 = mono_ns();
        send_record(&mut w, b'T', &t1.to_le_bytes(), &[]).and_then(|()| w.flush()).map_err(|e| e.to_string())?;
        let mut a = [0u8; 9];
        rd.read_exact(&mut a).map_err(|e| format!("migrate {name}: {to}: {e}"))?;
        if a[0] != b'T' {
            return Err(format!("migrate {name}: {to} does not speak this protocol"));
        }
        let t2 = u64::from_le_bytes(a[1..9].try_into().unwrap_or([0; 8]));
        let est = hyp_core::savestream::clock_offset(t1, t2, mono_ns());
        if best.is_none_or(|b| est.1 < b.1) {
            best = Some(est);
        }
    }
    let (offset, clock_err) = best.unwrap_or((0, 0));
    // The receiver checks its slot against the domain's shape before anything is copied.
    log_dirty(id, 1, &mut [])?;
    let begun = (|| -> Result<(), String> {
        let mut shape = vec![0xffu8; hyp_core::savestream::HEADER_SIZE];
        ctl::xfer(xen_abi::domctl::FERRUM_SAVE_READ, id, 0, &mut shape)?;
        send_record(&mut w, b'S', &shape, &[]).and_then(|()| w.flush()).map_err(|e| e.to_string())?;
        match line(&mut rd)? {
            r if r == "OK" => Ok(()),
            r => Err(r.strip_prefix("ERR ").unwrap_or(&r).to_string()),
        }
    })();
    if let Err(why) = begun {
        let _ = log_dirty(id, 3, &mut []);
        return Err(format!("migrate {name}: {to} refused: {why}; {name} keeps running here"));
    }
    println!("hypctl: {name}: {to} is ready; copying its {} MiB while it runs", ram >> 20);
    let mut bitmap = vec![0xffu8; (pages.div_ceil(64) * 8) as usize];
    let t_copy = std::time::Instant::now();
    let copied = (|| -> Result<(u64, usize), String> {
        log_dirty(id, 2, &mut bitmap)?;
        bitmap.iter_mut().for_each(|b| *b = 0xff); // round 0: all of it
        let mut sent = send_dirty(&mut w, id, &bitmap, pages)?;
        let mut rounds = 1;
        while rounds < MIGRATE_ROUNDS {
            let n = log_dirty(id, 2, &mut bitmap)?;
            sent += send_dirty(&mut w, id, &bitmap, pages)?;
            rounds += 1;
            if n <= MIGRATE_FEW {
                break;
            }
        }
        // Everything sent so far is in the slot over there before the suspend is asked: the
        // connection is idle when the last round starts.
        send_record(&mut w, b'Q', &[], &[]).and_then(|()| w.flush()).map_err(|e| e.to_string())?;
        let mut q = [0u8; 1];
        rd.read_exact(&mut q).map_err(|e| format!("{to}: {e}"))?;
        if q[0] != b'Q' {
            return Err(format!("{to} answered {:#x} to a sync", q[0]));
        }
        // Ask for the suspend; what it dirties while it winds down (it answers within its
        // control poll) waits in `pending` and goes with the last round, unless that grows
        // large: at the suspend the connection should be idle, the last round short.
        let mut pending = vec![0u8; bitmap.len()];
        let mut npending = 0u64;
        suspend_domain(name, 10, "migrate", || {
            if log_dirty(id, 2, &mut bitmap)? > 0 {
                for (p, b) in pending.iter_mut().zip(&bitmap) {
                    *p |= b;
                }
                npending = pending.iter().map(|b| u64::from(b.count_ones())).sum();
            }
            if npending <= MIGRATE_FEW {
                return Ok(false);
            }
            sent += send_dirty(&mut w, id, &pending, pages)?;
            w.flush().map_err(|e| e.to_string())?;
            pending.iter_mut().for_each(|b| *b = 0);
            npending = 0;
            Ok(true)
        })
        .map_err(|e| e.strip_prefix(&format!("migrate {name}: ")).unwrap_or(&e).to_string())?;
        // What is still pending goes with the last round.
        bitmap.copy_from_slice(&pending);
        Ok((sent, rounds))
    })();
    let (mut sent, rounds) = match copied {
        Ok(x) => x,
        Err(e) => {
            let _ = log_dirty(id, 3, &mut []);
            return Err(format!("migrate {name}: {e}"));
        }
    };
    // The last round: the domain is suspended; its last dirty pages and its state.
    let seen = mono_ns();
    let st = ctl::status(id)?;
    let suspended_at = seen.saturating_sub(st.since_end_ns);
    let mut sent_at = seen;
    let mut last_pages = 0;
    let last = (|| -> Result<u64, String> {
        let mut more = vec![0u8; bitmap.len()];
        log_dirty(id, 2, &mut more)?;
        for (b, m) in bitmap.iter_mut().zip(&more) {
            *b |= m;
        }
        last_pages = bitmap.iter().map(|b| u64::from(b.count_ones())).sum();
        let n = send_dirty(&mut w, id, &bitmap, pages)?;
        let mut head = vec![0xffu8; hyp_core::savestream::HEADER_SIZE];
        ctl::xfer(xen_abi::domctl::FERRUM_SAVE_READ, id, 0, &mut head)?;
        let there = (suspended_at as i64).saturating_add(offset).max(0) as u64;
        send_record(&mut w, b'H', &head, &there.to_le_bytes()).map_err(|e| e.to_string())?;
        send_record(&mut w, b'E', &[], &[]).map_err(|e| e.to_string())?;
        w.flush().map_err(|e| e.to_string())?;
        sent_at = mono_ns();
        Ok(n)
    })();
    let _ = log_dirty(id, 3, &mut []);
    let reply = last.and_then(|n| {
        sent += n;
        line(&mut rd)
    });
    match reply {
        Ok(r) if r == "OK" => {
            let downtime = mono_ns().saturating_sub(suspended_at);
            ctl::op(xen_abi::domctl::DESTROYDOMAIN, id).map_err(|e| format!("destroy {name}: {e}"))?;
            println!(
                "hypctl: {name} migrated to {to}: {rounds} pre-copy round(s), {sent} pages sent for {pages} pages of RAM, {} ms in all; {} ms from its suspend to the confirmation (suspend seen after {} ms, its last {last_pages} pages and state sent after {} ms; clocks compared within {} ms); its slot here is empty",
                t_copy.elapsed().as_millis(),
                ms(downtime),
                ms(seen.saturating_sub(suspended_at)),
                ms(sent_at.saturating_sub(suspended_at)),
                ms(clock_err)
            );
            Ok(())
        }
        other => {
            let why = match other {
                Ok(r) => r.strip_prefix("ERR ").unwrap_or(&r).to_string(),
                Err(e) => e,
            };
            println!("hypctl: migration of {name} to {to} failed: {why}; resuming it here");
            let mut stream = read_stream(id)?;
            restore_stream(&mut stream, Some(name), "(local copy)")?;
            Err(format!("migrate {name}: {to} failed: {why}"))
        }
    }
}

/// `hypctl receive [--port N]`: waits for one migration (from `hypctl migrate`) into the slot
/// of the same name, which must not be running: pages are written into the slot as they
/// arrive, and the domain resumes once its state has come. A slot that does not fit is
/// refused before anything is copied; a migration that fails on the way leaves the slot
/// stopped (its restore abandoned).
fn receive(port: u16) -> Result<(), String> {
    use hyp_core::savestream::{Header, HEADER_SIZE};
    use std::io::{Read, Write};
    let l = std::net::TcpListener::bind(("0.0.0.0", port)).map_err(|e| format!("receive: port {port}: {e}"))?;
    println!("hypctl: waiting for a migration on port {port}");
    let (mut sock, peer) = l.accept().map_err(|e| format!("receive: {e}"))?;
    let _ = sock.set_read_timeout(Some(std::time::Duration::from_secs(120)));
    let _ = sock.set_nodelay(true);
    let t0 = std::time::Instant::now();
    let mut slot: Option<(u16, String)> = None;
    let got = (|| -> Result<(String, u64, u64), String> {
        let mut r = std::io::BufReader::with_capacity(1 << 20, sock.try_clone().map_err(|e| e.to_string())?);
        let (mut head, mut there, mut bytes) = (Vec::new(), 0u64, 0u64);
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let mut tag = [0u8; 1];
            r.read_exact(&mut tag).map_err(|e| format!("{e} (truncated stream)"))?;
            match tag[0] {
                b'T' => {
                    let mut t = [0u8; 8];
                    r.read_exact(&mut t).map_err(|e| e.to_string())?;
                    let mut a = vec![b'T'];
                    a.extend_from_slice(&mono_ns().to_le_bytes());
                    sock.write_all(&a).map_err(|e| e.to_string())?;
                }
                b'S' => {
                    let mut shape = vec![0u8; HEADER_SIZE];
                    r.read_exact(&mut shape).map_err(|e| e.to_string())?;
                    let h = Header::decode(&shape).map_err(|e| e.to_string())?;
                    let name = h.name().to_string();
                    let id = ctl::find(&name)?;
                    if ctl::status(id)?.state == 0 {
                        return Err(format!("slot {name} is running; stop it first (hypctl stop {name})"));
                    }
                    begin_restore(id, &name, &h, &mut shape)?;
                    slot = Some((id, name));
                    sock.write_all(b"OK\n").map_err(|e| e.to_string())?;
                }
                b'P' => {
                    let Some((id, _)) = &slot else { return Err("pages before the slot was checked".into()) };
                    let mut h = [0u8; 12];
                    r.read_exact(&mut h).map_err(|e| e.to_string())?;
                    let off = u64::from_le_bytes(h[..8].try_into().unwrap_or([0; 8]));
                    let len = u32::from_le_bytes(h[8..].try_into().unwrap_or([0; 4])) as usize;
                    if len > buf.len() {
                        return Err(format!("a record of {len} bytes"));
                    }
                    r.read_exact(&mut buf[..len]).map_err(|e| e.to_string())?;
                    ctl::xfer(xen_abi::domctl::FERRUM_RESTORE_WRITE, *id, off, &mut buf[..len])
                        .map_err(|e| format!("pages at {off} (+{len}): {e}"))?;
                    bytes += len as u64;
                }
                b'Q' => sock.write_all(b"Q").map_err(|e| e.to_string())?,
                b'H' => {
                    head = vec![0u8; HEADER_SIZE];
                    r.read_exact(&mut head).map_err(|e| e.to_string())?;
                    let mut t = [0u8; 8];
                    r.read_exact(&mut t).map_err(|e| e.to_string())?;
                    there = u64::from_le_bytes(t);
                }
                b'E' => break,
                t => return Err(format!("unknown record {t:#x}")),
            }
        }
        let Some((id, name)) = &slot else { return Err("no slot was named".into()) };
        if head.is_empty() {
            return Err("no final header".into());
        }
        let age = mono_ns().saturating_sub(there);
        let code = ctl::restore_commit(*id, &mut head, age)?;
        if code < 0 {
            return Err(format!("slot {name}: the final state was refused: {}", ctl::err_text(code)));
        }
        Ok((name.clone(), bytes, age))
    })();
    match got {
        Ok((name, bytes, age)) => {
            let _ = sock.write_all(b"OK\n");
            println!(
                "hypctl: {name} received from {peer} ({} KiB of RAM sent, in {} ms) and resumed {} ms after its suspend there",
                bytes / 1024,
                t0.elapsed().as_millis(),
                ms(age)
            );
            Ok(())
        }
        Err(e) => {
            if let Some((id, _)) = slot {
                let _ = ctl::op(xen_abi::domctl::DESTROYDOMAIN, id); // abandons the restore
            }
            let _ = sock.write_all(format!("ERR {e}\n").as_bytes());
            Err(format!("receive from {peer}: {e}"))
        }
    }
}

/// Begins restoring into slot `id` (named `name`) with header `h` (its bytes in `head`),
/// explaining a refusal.
fn begin_restore(id: u16, name: &str, h: &hyp_core::savestream::Header, head: &mut [u8]) -> Result<(), String> {
    use xen_abi::errno;
    let code = ctl::restore_begin(id, head)?;
    if code >= 0 {
        return Ok(());
    }
    let have = ctl::list()?.iter().find(|i| i.domid == id).map_or(0, |i| i.tot_pages * 4096);
    Err(match -code {
        errno::E2BIG => format!("the stream's {} bytes of RAM do not fit slot {name}'s {have}", h.ram_size),
        errno::ENXIO => {
            format!("slot {name}'s shape differs (RAM size, guest-physical base, vCPUs or counter frequency)")
        }
        _ => format!("slot {name}: {}", ctl::err_text(code)),
    })
}

/// `hypctl restore FILE [--slot NAME]`: checks the whole stream (header, length, CRC-32)
/// before anything of the slot changes, then has the hypervisor check it against the slot
/// (the saved domain's by default), writes its RAM and resumes it.
fn restore(path: &str, slot: Option<&str>) -> Result<(), String> {
    let t0 = std::time::Instant::now();
    let mut stream = std::fs::read(path).map_err(|e| format!("restore: {path}: {e}"))?;
    let (name, slot) = restore_stream(&mut stream, slot, path)?;
    println!("hypctl: {name} restored from {path} into slot {slot} in {} ms; it resumes", t0.elapsed().as_millis());
    Ok(())
}

/// Restores a complete stream (checked whole first: header, length, CRC-32) into `slot` (the
/// saved domain's name by default); its counter continues from the saved value. `from` names
/// the stream in errors. Returns the saved domain's name and the slot's.
fn restore_stream(stream: &mut [u8], slot: Option<&str>, from: &str) -> Result<(String, String), String> {
    use hyp_core::savestream::{check_complete, Header, HEADER_SIZE, TRAILER_SIZE};
    use xen_abi::domctl as dc;
    let refused = |why: String| format!("restore: {from} refused: {why}");
    let h = Header::decode(stream).map_err(|e| refused(e.to_string()))?;
    let body = stream.len().saturating_sub(TRAILER_SIZE);
    let crc = crc32fast::hash(&stream[..body]);
    check_complete(stream.len() as u64, stream, &stream[body..], crc).map_err(|e| refused(e.to_string()))?;
    let name = slot.unwrap_or(h.name()).to_string();
    let id = ctl::find(&name).map_err(&refused)?;
    if ctl::status(id)?.state == 0 {
        return Err(refused(format!("slot {name} is running; stop it first (hypctl stop {name})")));
    }
    begin_restore(id, &name, &h, &mut stream[..HEADER_SIZE]).map_err(refused)?;
    let mut off = 0u64;
    let written = (|| -> Result<(), String> {
        while off < h.ram_size {
            let n = ((h.ram_size - off) as usize).min(1 << 20);
            let at = HEADER_SIZE + off as usize;
            ctl::xfer(dc::FERRUM_RESTORE_WRITE, id, off, &mut stream[at..at + n])?;
            off += n as u64;
        }
        match ctl::restore_commit(id, &mut stream[..HEADER_SIZE], 0)? {
            c if c < 0 => Err(ctl::err_text(c)),
            _ => Ok(()),
        }
    })();
    if let Err(e) = written {
        let _ = ctl::op(dc::DESTROYDOMAIN, id); // abandons the restore
        return Err(format!("restore {name}: {e}"));
    }
    Ok((h.name().to_string(), name))
}

/// The boot partition, where `update --persist` writes (mounted read-only by init).
const BOOT_DIR: &str = "/mnt/boot";

/// `hypctl update NAME IMAGE [--persist]`: loads an arm64 Image into the slot of NAME, which
/// must not be running (the hypervisor checks its header and that it fits the slot and the
/// domain's RAM), then starts NAME on it; with `--persist` also writes it over NAME's kernel
/// file on the boot partition, so the next board boot uses it.
fn update(name: &str, path: &str, persist: bool) -> Result<(), String> {
    use xen_abi::domctl as dc;
    let id = ctl::find(name)?;
    if ctl::status(id)?.state == 0 {
        return Err(format!("update {name}: it is running; stop it first (hypctl stop {name})"));
    }
    let mut image = std::fs::read(path).map_err(|e| format!("update {name}: {path}: {e}"))?;
    // Its signature, when there is one: `IMAGE.sig` (a signed deployment requires it).
    let sig_path = format!("{path}.sig");
    let mut sig =
        match std::fs::read(&sig_path) {
            Ok(b) => Some(<[u8; hyp_core::verify::SIG_SIZE]>::try_from(b.as_slice()).map_err(|_| {
                format!("update {name}: {sig_path}: {} bytes, not a 64-byte Ed25519 signature", b.len())
            })?),
            Err(_) => None,
        };
    let (code, limits) = ctl::load_image(id, &mut image, sig.as_mut())?;
    if code == -xen_abi::errno::EACCES {
        let why = if sig.is_some() {
            format!("{sig_path} does not verify with the signed deployment's update key")
        } else {
            format!("the signed deployment requires a signature by its update key and there is no {sig_path}")
        };
        return Err(format!("update {name}: {path} refused: {why}; {name} keeps its image"));
    }
    if code < 0 {
        return Err(format!("update {name}: {path} refused: {}", ctl::load_refusal(&image, limits, code)));
    }
    println!("hypctl: {name}: {path} loaded ({} KiB; its slot holds {} KiB)", image.len() / 1024, limits.0 / 1024);
    if persist {
        persist_image(name, &image)?;
    }
    ctl::op(dc::FERRUM_START, id).map_err(|e| format!("start {name}: {e}"))?;
    println!("hypctl: {name} started on the new image");
    Ok(())
}

/// Writes `image` over domain `name`'s kernel file on the boot partition (`domains.txt` names
/// it and its slot): to a new file first, synced, then renamed over the old one.
fn persist_image(name: &str, image: &[u8]) -> Result<(), String> {
    use std::io::Write;
    let manifest = std::fs::read_to_string(format!("{BOOT_DIR}/domains.txt"))
        .map_err(|e| format!("persist: {BOOT_DIR}/domains.txt: {e} (not a ferrum boot partition?)"))?;
    let (file, slot) = manifest
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            (w.next()? == name).then_some(())?;
            Some((w.next()?.to_string(), w.next()?.parse::<u64>().ok()?))
        })
        .next()
        .ok_or_else(|| format!("persist: {name} is not in {BOOT_DIR}/domains.txt"))?;
    if file.contains('/') || file.starts_with('.') {
        return Err(format!("persist: bad file name '{file}' in domains.txt"));
    }
    if image.len() as u64 > slot {
        return Err(format!("persist: {} bytes do not fit {name}'s boot slot of {slot} bytes", image.len()));
    }
    sys::remount(BOOT_DIR, true)?;
    let (tmp, dst) = (format!("{BOOT_DIR}/{file}.new"), format!("{BOOT_DIR}/{file}"));
    let written = (|| -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(image)?;
        f.sync_all()?;
        std::fs::rename(&tmp, &dst)?;
        std::fs::File::open(BOOT_DIR)?.sync_all()
    })();
    let ro = sys::remount(BOOT_DIR, false);
    written.map_err(|e| format!("persist: {dst}: {e}"))?;
    ro?;
    println!("hypctl: {name}: {dst} replaced; the next board boot uses it");
    Ok(())
}

/// The A/B boot-state record on the boot partition (a verified-boot disk).
const BOOTSTATE: &str = "bootstate.env";

fn read_bootstate() -> Result<hyp_core::abslot::BootState, String> {
    let text = std::fs::read(format!("{BOOT_DIR}/{BOOTSTATE}")).map_err(|e| {
        format!("{BOOT_DIR}/{BOOTSTATE}: {e} (not a verified-boot disk with A/B slots: cargo xtask image --sign)")
    })?;
    Ok(hyp_core::abslot::BootState::parse(&String::from_utf8_lossy(&text)))
}

/// Writes `bytes` to `name` on the boot partition (remounted writable meanwhile): to a new
/// file first, synced, then renamed over the old one. `progress`: say so every 8 MiB.
fn write_boot_file(name: &str, bytes: &[u8], progress: bool) -> Result<(), String> {
    use std::io::Write;
    sys::remount(BOOT_DIR, true)?;
    let (tmp, dst) = (format!("{BOOT_DIR}/{name}.new"), format!("{BOOT_DIR}/{name}"));
    let written = (|| -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        for (i, chunk) in bytes.chunks(8 << 20).enumerate() {
            f.write_all(chunk)?;
            if progress {
                println!(
                    "hypctl: {name}: {} of {} MiB written",
                    ((i + 1) * 8).min(bytes.len().div_ceil(1 << 20)),
                    bytes.len().div_ceil(1 << 20)
                );
            }
        }
        f.sync_all()?;
        std::fs::rename(&tmp, &dst)?;
        std::fs::File::open(BOOT_DIR)?.sync_all()
    })();
    let ro = sys::remount(BOOT_DIR, false);
    written.map_err(|e| format!("{dst}: {e}"))?;
    ro
}

/// `hypctl slots`: the A/B slots and which one runs.
fn slots() -> Result<(), String> {
    let s = read_bootstate()?;
    for slot in [hyp_core::abslot::Slot::A, hyp_core::abslot::Slot::B] {
        let f = format!("{BOOT_DIR}/slot-{}.itb", slot.as_str());
        let size = std::fs::metadata(&f).map(|m| format!("{} KiB", m.len() / 1024)).unwrap_or_else(|_| "empty".into());
        let mut what = Vec::new();
        if slot == s.active {
            what.push("active".to_string());
        }
        if s.tried == Some(slot) {
            what.push(format!("tried, {} more boot(s) allowed without a commit", s.tries));
        }
        if slot == s.running() {
            what.push("running".into());
        }
        println!(
            "slot {}: {size}{}",
            slot.as_str(),
            if what.is_empty() { String::new() } else { format!(" ({})", what.join(", ")) }
        );
    }
    Ok(())
}

/// `hypctl update-deployment FILE [--tries N]`: writes a signed deployment (`cargo xtask image
/// --sign`) into the inactive slot, whole and synced, then marks it to be tried at most N
/// boots (default 2); `hypctl commit` in the new deployment keeps it, otherwise the board comes
/// back on the active slot by itself. U-Boot checks its signature at the next boot.
fn update_deployment(path: &str, tries: u32) -> Result<(), String> {
    let s = read_bootstate()?;
    let next = s.update(tries).map_err(|e| format!("update-deployment: {e}"))?;
    let image = std::fs::read(path).map_err(|e| format!("update-deployment: {path}: {e}"))?;
    if image.get(..4) != Some(&[0xd0, 0x0d, 0xfe, 0xed][..]) {
        return Err(format!("update-deployment: {path} is not a FIT image (cargo xtask image --sign writes one)"));
    }
    let slot = s.inactive().as_str();
    println!("hypctl: writing {path} ({} KiB) into slot {slot}", image.len() / 1024);
    write_boot_file(&format!("slot-{slot}.itb"), &image, true).map_err(|e| format!("update-deployment: {e}"))?;
    write_boot_file(BOOTSTATE, next.format().as_bytes(), false).map_err(|e| format!("update-deployment: {e}"))?;
    println!(
        "hypctl: slot {slot} holds the new deployment; the next boot tries it (at most {tries} boot(s) without hypctl commit, then slot {} again)",
        s.active.as_str()
    );
    Ok(())
}

/// `hypctl commit`: the running deployment, being tried, is healthy: its slot becomes the
/// active one.
fn commit() -> Result<(), String> {
    let s = read_bootstate()?;
    let next = s.commit().map_err(|e| format!("commit: {e}"))?;
    write_boot_file(BOOTSTATE, next.format().as_bytes(), false).map_err(|e| format!("commit: {e}"))?;
    println!("hypctl: slot {} committed: it is the active slot from now on", next.active.as_str());
    Ok(())
}

/// The state column: running, paused, or why it ended.
fn state_of(s: &hyp_core::control::Status) -> &'static str {
    if s.state == 0 && s.paused {
        "paused"
    } else {
        hyp_core::control::state_text(s.state)
    }
}

/// `hypctl stop`: asks the domain to power off through `control/shutdown` (ferrum-rt and
/// Linux honour it), waits up to `secs` seconds, then destroys it.
fn stop(name: &str, secs: u64) -> Result<(), String> {
    let id = ctl::find(name)?;
    if ctl::status(id)?.state != 0 {
        return Err(format!("stop {name}: it is not running"));
    }
    let asked = Xs::open().and_then(|mut xs| xs.write(&format!("/local/domain/{id}/control/shutdown"), "poweroff"));
    if let Err(e) = asked {
        println!("hypctl: cannot ask {name} to power off ({e}); destroying it");
    } else {
        let t0 = std::time::Instant::now();
        while t0.elapsed() < std::time::Duration::from_secs(secs) {
            let s = ctl::status(id)?;
            if s.state != 0 {
                println!("hypctl: {name} stopped ({})", state_of(&s));
                return Ok(());
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        println!("hypctl: {name} did not power off within {secs} s; destroying it");
    }
    ctl::op(xen_abi::domctl::DESTROYDOMAIN, id).map_err(|e| format!("destroy {name}: {e}"))?;
    println!("hypctl: {name} destroyed");
    Ok(())
}

/// `hypctl top`: per-domain vCPU time, traps, hypercalls and injected interrupts, refreshed
/// every `-d` seconds (default 2) for `-n` rounds (default: until interrupted).
fn top(args: &[&str]) -> Result<(), String> {
    let (mut rounds, mut delay) = (u64::MAX, 2.0f64);
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let v = it.next().ok_or(HYPCTL_USAGE)?;
        match *a {
            "-n" => rounds = v.parse().map_err(|_| format!("bad -n '{v}'"))?,
            "-d" => delay = v.parse().ok().filter(|d: &f64| *d >= 0.1).ok_or(format!("bad -d '{v}'"))?,
            _ => return Err(HYPCTL_USAGE.into()),
        }
    }
    let mut last: HashMap<u16, (hyp_core::control::Status, std::time::Instant)> = HashMap::new();
    for round in 0..rounds {
        if round > 0 {
            std::thread::sleep(std::time::Duration::from_secs_f64(delay));
        }
        println!(
            "{:<3} {:<12} {:<16} {:>6} {:>10} {:>9} {:>9} {:>9} {:>9}",
            "ID", "NAME", "STATE", "VCPUS", "UPTIME", "CPU%", "TRAPS/s", "HCALLS/s", "IRQS/s"
        );
        for i in ctl::list()? {
            let s = ctl::status(i.domid)?;
            let now = std::time::Instant::now();
            let (cpu, traps, hc, irqs) = match last.get(&i.domid) {
                Some((p, t)) => {
                    let dt = now.duration_since(*t).as_secs_f64().max(1e-3);
                    let per = |a: u64, b: u64| format!("{:.0}", a.saturating_sub(b) as f64 / dt);
                    (
                        format!("{:.1}", s.cpu_time_ns.saturating_sub(p.cpu_time_ns) as f64 / (dt * 1e7)),
                        per(s.traps, p.traps),
                        per(s.hypercalls, p.hypercalls),
                        per(s.irqs, p.irqs),
                    )
                }
                None => ("-".into(), "-".into(), "-".into(), "-".into()),
            };
            println!(
                "{:<3} {:<12} {:<16} {:>6} {:>10} {:>9} {:>9} {:>9} {:>9}",
                i.domid,
                s.name(),
                state_of(&s),
                s.vcpus,
                ctl::duration(s.uptime_ns),
                cpu,
                traps,
                hc,
                irqs
            );
            last.insert(i.domid, (s, now));
        }
    }
    Ok(())
}

/// `hypctl list`: every domain with its state, CPUs, memory, uptime and restarts (from the
/// hypervisor) and, one per line below it, the PV devices its backends serve (from xenstore).
fn list() -> Result<(), String> {
    let mut xs = Xs::open()?;
    let me = xs.read("domid").unwrap_or_default();
    let infos = ctl::list()?;
    println!(
        "{:<3} {:<12} {:<10} {:<22} {:<6} {:<9} {:<9} {:<8} {:<9} LAST-EXIT",
        "ID", "NAME", "KIND", "STATE", "CPUS", "MEMORY", "UPTIME", "RESTARTS", "VCPU-TIME"
    );
    for info in infos {
        let id = info.domid;
        let s = ctl::status(id)?;
        let cpus = xs.read(&format!("/ferrum/domain/{id}/pcpus")).unwrap_or_else(|| "?".into());
        let kind = if s.linux { "linux" } else { "unikernel" };
        let mem = format!("{} MiB", info.tot_pages * 4 / 1024);
        let (up, cpu) = if s.state == 0 {
            (ctl::duration(s.uptime_ns), ctl::duration(s.cpu_time_ns))
        } else {
            ("-".to_string(), "-".to_string())
        };
        let last = if s.last_exit == 0 { "-" } else { hyp_core::control::state_text(s.last_exit) };
        println!(
            "{id:<3} {:<12} {kind:<10} {:<22} {cpus:<6} {mem:<9} {up:<9} {:<8} {cpu:<9} {last}",
            s.name(),
            state_of(&s),
            s.restarts
        );
        for kind in ["vbd", "vif"] {
            let bdir = format!("/local/domain/{me}/backend/{kind}/{id}");
            for devid in xs.dir(&bdir) {
                let d = format!("{bdir}/{devid}");
                let st = xs.read(&format!("{d}/state")).unwrap_or_default();
                let what = match kind {
                    "vbd" => format!(
                        "{} -> {}",
                        xs.read(&format!("{d}/dev")).unwrap_or_default(),
                        xs.read(&format!("{d}/params")).unwrap_or_default()
                    ),
                    _ => format!("vif{id}.{devid} on {}", xs.read(&format!("{d}/bridge")).unwrap_or_default()),
                };
                // A backend that failed (xenbus_dev_fatal) leaves its message under its own
                // `error/` tree; Linux's netback may still say "connected" after one.
                let err = xs.read(&format!("/local/domain/{me}/error/backend/{kind}/{id}/{devid}/error"));
                let st = hotplug::state_name(&st);
                match err {
                    Some(e) => println!("    {kind} {what} ({st}; backend error: {})", hotplug::printable(&e, 60)),
                    None => println!("    {kind} {what} ({st})"),
                }
            }
        }
    }
    Ok(())
}
