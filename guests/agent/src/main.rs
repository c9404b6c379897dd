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
//! - `hypctl list` (or `ferrum-agent hypctl list`): domains with their state and PV devices.
//! - `ferrum-agent bench …`: the Linux ends of `cargo xtask bench pv` (see `bench.rs`).
//!
//! Invariant: the agent only writes keys the backend domain owns (`physical-device`,
//! `hotplug-status`, `hotplug-error`); everything it reads from xenstore is checked before it
//! becomes a path or an interface name.

mod bench;
mod hotplug;
mod sys;
mod xs;

use std::collections::HashMap;
use xs::Xs;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let prog = args.first().map(|a| a.rsplit('/').next().unwrap_or(a).to_string()).unwrap_or_default();
    let rest: Vec<&str> = args.iter().skip(1).map(String::as_str).collect();
    let r = match (prog.as_str(), rest.as_slice()) {
        ("hypctl", r) | (_, ["hypctl", r @ ..]) => hypctl(r),
        (_, ["setup"]) => setup(),
        (_, ["daemon"]) => daemon(),
        (_, ["bench", r @ ..]) => bench::run(r),
        _ => Err("usage: ferrum-agent setup | daemon | bench ... | hypctl list".into()),
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
        match sys::load_module(&format!("/lib/modules/{m}.ko")) {
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
    loop {
        scan(&mut xs, &base, &mut states, &mut loops);
        xs.wait_events(500);
    }
}

/// One pass over every backend directory.
fn scan(xs: &mut Xs, base: &str, states: &mut HashMap<String, String>, loops: &mut HashMap<String, String>) {
    let mut seen = Vec::new();
    for kind in ["vbd", "vif"] {
        for front in xs.dir(&format!("{base}/{kind}")) {
            for id in xs.dir(&format!("{base}/{kind}/{front}")) {
                let dir = format!("{base}/{kind}/{front}/{id}");
                seen.push(dir.clone());
                let r = match kind {
                    "vbd" => vbd(xs, &dir, loops),
                    _ => vif(xs, &dir, &front, &id),
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

fn vif(xs: &mut Xs, dir: &str, front: &str, id: &str) -> Result<(), String> {
    if xs.read(&format!("{dir}/hotplug-status")).as_deref() == Some("connected") {
        return Ok(());
    }
    let name = hotplug::vif_name(front, id)?;
    if !std::path::Path::new(&format!("/sys/class/net/{name}")).exists() {
        return Ok(()); // netback has not created it yet
    }
    let bridge = xs.read(&format!("{dir}/bridge")).unwrap_or_else(|| BRIDGE.into());
    let bridge = hotplug::check_ifname(&bridge)?;
    sys::bridge_create(bridge)?;
    sys::link_up(bridge)?;
    sys::bridge_add(bridge, &name)?;
    sys::link_up(&name)?;
    xs.write(&format!("{dir}/hotplug-status"), "connected")?;
    println!("ferrum-agent: {name} joined bridge {bridge}, hotplug-status connected");
    Ok(())
}

fn hypctl(args: &[&str]) -> Result<(), String> {
    match args {
        [] | ["list"] => {}
        _ => return Err("usage: hypctl list".into()),
    }
    let mut xs = Xs::open()?;
    let me = xs.read("domid").unwrap_or_default();
    let mut ids: Vec<u32> = xs.dir("/ferrum/domain").iter().filter_map(|s| s.parse().ok()).collect();
    ids.sort_unstable();
    if ids.is_empty() {
        return Err("no domain status in xenstore (/ferrum/domain): not the control domain?".into());
    }
    println!("{:<3} {:<12} {:<10} {:<22} {:<6} {:<9} DEVICES", "ID", "NAME", "KIND", "STATE", "CPUS", "MEMORY");
    for id in ids {
        let f = |xs: &mut Xs, k: &str| xs.read(&format!("/ferrum/domain/{id}/{k}")).unwrap_or_else(|| "?".into());
        let (name, kind, state, cpus) =
            (f(&mut xs, "name"), f(&mut xs, "kind"), f(&mut xs, "state"), f(&mut xs, "pcpus"));
        let mem = f(&mut xs, "memory-kib").parse::<u64>().map_or("?".into(), |k| format!("{} MiB", k / 1024));
        let mut devs = Vec::new();
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
                devs.push(match err {
                    Some(e) => format!("{kind} {what} ({st}; backend error: {})", hotplug::printable(&e, 60)),
                    None => format!("{kind} {what} ({st})"),
                });
            }
        }
        // One device per line: the first beside the domain, the others under it.
        let mut devs = devs.into_iter();
        let first = devs.next().unwrap_or_else(|| "-".to_string());
        println!("{id:<3} {name:<12} {kind:<10} {state:<22} {cpus:<6} {mem:<9} {first}");
        for d in devs {
            println!("{:68}{d}", "");
        }
    }
    Ok(())
}
