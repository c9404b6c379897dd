//! The reference hypervisor: Debian's Xen 4.17 (`xen-hypervisor-4.17-arm64`, fetched and
//! unpacked like the kernel) booting a deployment's unikernels as dom0less domUs on the same
//! QEMU board, so the same images can be checked against real Xen (ABI fidelity) and measured
//! side by side (`cargo xtask bench unikernel`).
//!
//! Xen is started directly by QEMU (`-kernel`, EL2) with QEMU's own device tree for the same
//! machine plus a `/chosen` carrying Xen's command line and one `xen,domain` node per domain
//! (`memory`, `cpus`, `vpl011`, `xen,enhanced = "no-xenstore"`: grant table and event channels
//! without a xenstore, since there is no dom0), each with its image as a `multiboot,kernel`
//! module placed by `-device loader`. Domain ids follow the deployment's order (1, 2, ...), as
//! on ferrum.

use crate::deploy::Deployment;
use crate::linux::run;
use crate::{load_deployment, root};
use hyp_core::fdtw::FdtWriter;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Debian's package.
pub const PACKAGE: &str = "xen-hypervisor-4.17-arm64";
/// Board RAM for the Xen runs (the recipe's dom0less setting).
const RAM_MIB: u64 = 2048;
/// Where the first domain image goes; each gets a 16 MiB slot.
const MODULE_BASE: u64 = 0x5000_0000;
const MODULE_SLOT: u64 = 16 << 20;

/// The Xen binary (an arm64 Image), fetched and unpacked on first use.
pub fn binary() -> Result<PathBuf, String> {
    crate::linux::ensure_arm64_arch()?;
    let dir = crate::linux::fetch_unpack(&root().join("build/cache"), PACKAGE)?;
    let p = dir.join("boot/xen-4.17-arm64");
    if p.is_file() {
        Ok(p)
    } else {
        Err(format!("{PACKAGE} has no boot/xen-4.17-arm64 (looked in {})", dir.display()))
    }
}

pub(crate) fn machine(gic: u8) -> String {
    format!("virt,virtualization=on,gic-version={gic}")
}

/// Copies node `n` of `src` and its subtree into `w`; at `/chosen`, `extra` adds properties
/// and nodes.
fn copy_node(w: &mut FdtWriter, n: fdt::node::FdtNode<'_, '_>, name: &str, extra: &dyn Fn(&mut FdtWriter, &str)) {
    w.begin_node(name);
    for p in n.properties() {
        w.prop(p.name, p.value);
    }
    extra(w, name);
    for c in n.children() {
        copy_node(w, c, c.name, extra);
    }
    w.end_node();
}

/// The device tree Xen boots with: QEMU's own for the machine `board` completes (QEMU is run
/// once with `dumpdtb=dump`), plus Xen's `/chosen`: `xen,xen-bootargs` (the console on QEMU's
/// PL011, then `xen_args`), two address and size cells for its module nodes, and what
/// `chosen` adds (domains, modules).
pub(crate) fn device_tree_with(
    gic: u8,
    board: &dyn Fn(&mut Command),
    dump: &Path,
    xen_args: &str,
    chosen: &dyn Fn(&mut FdtWriter),
) -> Result<Vec<u8>, String> {
    let mut c = Command::new("qemu-system-aarch64");
    c.args(["-M", &format!("{},dumpdtb={}", machine(gic), dump.display())]);
    board(&mut c);
    run(&mut c)?;
    let raw = std::fs::read(dump).map_err(|e| format!("{}: {e}", dump.display()))?;
    let tree = fdt::Fdt::new(&raw).map_err(|e| format!("QEMU's device tree: {e:?}"))?;
    let uart =
        tree.find_compatible(&["arm,pl011"]).map(|n| n.name.to_string()).ok_or("QEMU's device tree has no PL011")?;
    let bootargs = format!("console=dtuart dtuart=/{uart} {xen_args}");
    let extra = |w: &mut FdtWriter, name: &str| {
        if name != "chosen" {
            return;
        }
        w.prop_str("xen,xen-bootargs", &bootargs);
        w.prop_u32("#address-cells", 2);
        w.prop_u32("#size-cells", 2);
        chosen(w);
    };
    let mut w = FdtWriter::new();
    let rootn = tree.find_node("/").ok_or("QEMU's device tree has no root")?;
    copy_node(&mut w, rootn, "", &extra);
    w.finish(0).ok_or_else(|| "device tree too large".to_string())
}

/// The dom0less device tree: one `xen,domain` node per domain of `dep`.
fn device_tree(gic: u8, dep: &Deployment, cpu: &str, out: &Path) -> Result<Vec<u8>, String> {
    let mut sizes = Vec::new();
    for d in &dep.domains {
        sizes.push(std::fs::metadata(&d.kernel.path).map_err(|e| e.to_string())?.len());
    }
    let board = |c: &mut Command| {
        c.args(["-cpu", cpu, "-smp", &dep.platform.cpus.to_string(), "-m", &RAM_MIB.to_string()]).args([
            "-nographic",
            "-nic",
            "none",
        ]);
    };
    let domains = |w: &mut FdtWriter| {
        for (i, d) in dep.domains.iter().enumerate() {
            w.begin_node(&format!("domU{}", i + 1));
            w.prop_strs("compatible", &["xen,domain"]);
            w.prop_u32("#address-cells", 2);
            w.prop_u32("#size-cells", 2);
            w.prop_u64s("memory", &[d.memory.size / 1024]);
            w.prop_u32("cpus", d.cpus.len() as u32);
            w.prop_empty("vpl011");
            w.prop_str("xen,enhanced", "no-xenstore");
            let addr = MODULE_BASE + i as u64 * MODULE_SLOT;
            w.begin_node(&format!("module@{addr:x}"));
            w.prop_strs("compatible", &["multiboot,kernel", "multiboot,module"]);
            w.prop_u64s("reg", &[addr, sizes[i]]);
            w.prop_str("bootargs", &d.bootargs);
            w.end_node();
            w.end_node();
        }
    };
    // `xsm=dummy`: Xen on Arm builds default to the SILO policy, which forbids event channels
    // and grants between two domUs (pingpong); the dummy policy allows them, as ferrum does.
    // `bootscrub=0`: no scrubbing of free RAM on idle CPUs, which under `-icount` would add
    // instructions to every measurement.
    device_tree_with(gic, &board, &out.with_extension("qemu.dtb"), "loglvl=all xsm=dummy bootscrub=0", &domains)
}

/// The QEMU command that boots `deployment`'s domains as dom0less domUs of Xen 4.17.
/// `deterministic`: DESIGN.md §7's settings (1 GHz counter, `-icount shift=0,sleep=off`).
pub fn command(gic: u8, deployment: &Path, deterministic: bool) -> Result<Command, String> {
    let dep = load_deployment(deployment, false)?;
    if let Some(d) = dep.domains.iter().find(|d| d.kind != hyp_core::plan::DomainKind::Unikernel) {
        return Err(format!(
            "{}: domain '{}': only unikernel domains run as Xen dom0less domUs here",
            deployment.display(),
            d.name
        ));
    }
    if dep.domains.iter().any(|d| d.kernel.size > MODULE_SLOT) {
        return Err(format!("{}: an image is larger than {} MiB", deployment.display(), MODULE_SLOT >> 20));
    }
    let xen = binary()?;
    let dir = root().join("build/xen").join(&dep.name);
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let cpu = if deterministic { "cortex-a72,cntfrq=1000000000" } else { "cortex-a72" };
    let dtb_path = dir.join(format!("xen-gicv{gic}.dtb"));
    let dtb = device_tree(gic, &dep, cpu, &dtb_path)?;
    std::fs::write(&dtb_path, dtb).map_err(|e| e.to_string())?;
    let mut c = Command::new("qemu-system-aarch64");
    c.args(["-M", &machine(gic)])
        .args(["-cpu", cpu, "-smp", &dep.platform.cpus.to_string(), "-m", &RAM_MIB.to_string()])
        // No NIC: the domUs have none, and QEMU's default one is a PCI device with an option ROM.
        .args(["-nographic", "-no-reboot", "-nic", "none"])
        .arg("-kernel")
        .arg(&xen)
        .arg("-dtb")
        .arg(&dtb_path);
    for (i, d) in dep.domains.iter().enumerate() {
        let addr = MODULE_BASE + i as u64 * MODULE_SLOT;
        c.args(["-device", &format!("loader,file={},addr={addr:#x},force-raw=on", d.kernel.path.display())]);
    }
    if deterministic {
        c.args(["-icount", "shift=0,sleep=off"]);
    }
    Ok(c)
}
