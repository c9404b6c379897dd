//! `cargo xtask bench pv --xen`: the reference run of the PV benchmark on Debian's Xen 4.17, so
//! the split drivers' cost under ferrum is compared with Xen's on the same host, in the same
//! TCG emulation, with the same Linux on both ends.
//!
//! The board is the one `bench pv` boots (QEMU virt, 4 CPUs, the same boot disk with its data
//! partition, the same NIC on QEMU's user network), but QEMU starts Xen directly (`-kernel`,
//! EL2), with QEMU's own device tree for that machine plus a `/chosen` naming dom0's kernel and
//! initramfs as multiboot modules. Dom0 is the control domain's kernel and initramfs, 2 vCPUs
//! and 512 MiB as under ferrum, with Xen's own tools appended to the initramfs as a second
//! cpio archive (Linux unpacks concatenated archives in order): `xenstored`, `xenconsoled`
//! and `xl` from Debian's `xen-utils-4.17`, the shared libraries they need (found by walking
//! their `DT_NEEDED` entries through the packages listed in [`LIB_PACKAGES`]) and the dom0
//! modules (`xenfs`, `xen-gntdev`, ...). `ferrum.xendom0` on dom0's command line makes the
//! init script start them; in its bench branch dom0 then creates the two guests with
//! `xl create` ([`guest_configs`]: the `pvbench` unikernel and the Linux guest, 1 vCPU each,
//! pinned to pCPU 2 and 3, the data partition as their `xvda` and a vif on `xenbr0`), the
//! guests `bench pv` runs under ferrum, from the same images. Xen's hotplug scripts do nothing
//! ([`HOTPLUG_SCRIPT`]): `ferrum-agent daemon` does their job in dom0, as it does in ferrum's
//! control domain. The guests' consoles are written to files by `xenconsoled`, which dom0
//! copies to its own console, where `bench pv` reads the figures.
//!
//! Xen runs as recommended for static partitioning on embedded boards: `sched=null` (each
//! vCPU on its own pCPU), `vwfi=native` (a guest's WFI is not trapped), dom0's vCPUs pinned.

use crate::deploy::Deployment;
use crate::linux::{fetch_unpack, Cpio};
use hyp_core::fdtw::FdtWriter;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Board RAM: Xen, dom0's 512 MiB (allocated 1:1 in one piece), the guest's 256 MiB.
const RAM_MIB: u64 = 2048;
/// Where dom0's kernel and initramfs are placed (each in a 64 MiB slot).
const KERNEL_ADDR: u64 = 0x5000_0000;
const INITRD_ADDR: u64 = 0x5400_0000;
const SLOT: u64 = 64 << 20;

/// Xen's command line (the console on QEMU's PL011 is appended).
pub const XEN_ARGS: &str =
    "dom0_mem=512M dom0_max_vcpus=2 dom0_vcpus_pin sched=null vwfi=native bootscrub=0 loglvl=warning";

/// Xen's tools in dom0: (file in `xen-utils-4.17`, path in the initramfs).
const TOOLS: &[(&str, &str)] = &[
    ("usr/lib/xen-4.17/bin/xenstored", "usr/bin/xenstored"),
    ("usr/lib/xen-4.17/bin/xenconsoled", "usr/bin/xenconsoled"),
    ("usr/lib/xen-4.17/bin/xl", "usr/bin/xl"),
    ("usr/lib/xen-4.17/bin/xen-init-dom0", "usr/bin/xen-init-dom0"),
];
/// The package of [`TOOLS`].
const TOOLS_PACKAGE: &str = "xen-utils-4.17";
/// Packages the tools' shared libraries come from.
const LIB_PACKAGES: &[&str] = &[
    "libxenmisc4.17",
    "libxenstore4",
    "libxentoolcore1",
    "libxentoollog1",
    "libxenevtchn1",
    "libxengnttab1",
    "libxencall1",
    "libxenforeignmemory1",
    "libxendevicemodel1",
    "libxenhypfs1",
    "libyajl2",
    "libuuid1",
    "libfdt1",
    "zlib1g",
    "libc6",
];
/// What dom0 needs of Linux's Xen drivers beyond the control domain's modules.
const DOM0_MODULES: &[&str] = &["xenfs", "xen-evtchn", "xen-privcmd", "xen-gntdev", "xen-gntalloc"];

/// Xen's hotplug scripts `block` and `vif-bridge` (`xl` ran `block` for the `phy:` disk here
/// even with `run_hotplug_scripts=0` in `xl.conf`): `ferrum-agent daemon` does their work
/// (`physical-device`, the vif on the bridge, `hotplug-status`), as in ferrum's control
/// domain, so they only answer success.
const HOTPLUG_SCRIPT: &str = "#!/bin/sh\n# ferrum-agent daemon serves this device (bench pv --xen)\nexit 0\n";

/// `xl`'s configuration: no hotplug scripts (the agent does their work), no ballooning of
/// dom0 (its memory is fixed by `dom0_mem`).
const XL_CONF: &str = "run_hotplug_scripts=0\nautoballoon=\"off\"\n";

/// The `DT_NEEDED` names of an ELF shared object or executable.
pub fn needed(elf: &[u8]) -> Result<Vec<String>, String> {
    use object::{Object, ObjectSection};
    let f = object::File::parse(elf).map_err(|e| format!("not an ELF file: {e}"))?;
    let (Some(dynamic), Some(dynstr)) = (f.section_by_name(".dynamic"), f.section_by_name(".dynstr")) else {
        return Ok(Vec::new());
    };
    let d = dynamic.data().map_err(|e| e.to_string())?;
    let s = dynstr.data().map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    for e in d.chunks_exact(16) {
        let tag = u64::from_le_bytes(e[..8].try_into().unwrap_or_default());
        let val = u64::from_le_bytes(e[8..].try_into().unwrap_or_default()) as usize;
        match tag {
            0 => break,
            1 => {
                let name = s.get(val..).ok_or("DT_NEEDED outside .dynstr")?;
                let end = name.iter().position(|&b| b == 0).ok_or("unterminated DT_NEEDED")?;
                out.push(String::from_utf8_lossy(&name[..end]).into_owned());
            }
            _ => {}
        }
    }
    Ok(out)
}

/// Every shared library in the unpacked packages `dirs`, by file name (symbolic links
/// resolved inside the package).
fn index_libs(dirs: &[PathBuf]) -> BTreeMap<String, PathBuf> {
    let mut m = BTreeMap::new();
    for d in dirs {
        for sub in ["lib/aarch64-linux-gnu", "usr/lib/aarch64-linux-gnu"] {
            let Ok(rd) = std::fs::read_dir(d.join(sub)) else { continue };
            for e in rd.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if name.contains(".so") {
                    if let Ok(real) = std::fs::canonicalize(e.path()) {
                        m.entry(name).or_insert(real);
                    }
                }
            }
        }
    }
    m
}

/// The shared libraries `roots` need, directly or not: (soname, file), in a stable order.
/// A name no package provides is an error naming it.
pub fn closure(
    roots: &[Vec<String>],
    libs: &BTreeMap<String, PathBuf>,
    read: &dyn Fn(&Path) -> Result<Vec<u8>, String>,
) -> Result<Vec<(String, PathBuf)>, String> {
    let mut todo: Vec<String> = roots.iter().flatten().cloned().collect();
    let mut done: BTreeMap<String, PathBuf> = BTreeMap::new();
    while let Some(n) = todo.pop() {
        if done.contains_key(&n) {
            continue;
        }
        let p = libs.get(&n).ok_or_else(|| format!("no package in the list provides {n}"))?;
        todo.extend(needed(&read(p)?)?);
        done.insert(n, p.clone());
    }
    Ok(done.into_iter().collect())
}

/// The cpio archive appended to dom0's initramfs: Xen's tools, their libraries, `xl.conf`,
/// the directories the tools write to, and the dom0 modules (`lib/modules/xen-order`).
fn tools_archive(cache: &Path, moddir: &Path) -> Result<Vec<u8>, String> {
    let rd = |p: &Path| std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()));
    let tools = fetch_unpack(cache, TOOLS_PACKAGE)?;
    let mut dirs = Vec::new();
    for p in LIB_PACKAGES {
        dirs.push(fetch_unpack(cache, p)?);
    }
    let libs = index_libs(&dirs);
    let mut cpio = Cpio::default();
    for d in [
        "etc/xen",
        "var",
        "var/lib",
        "var/lib/xen",
        "var/run",
        "var/run/xen",
        "var/run/xenstored",
        "var/log",
        "var/log/xen",
        "var/log/xen/console",
        "run",
        "run/xen",
    ] {
        cpio.dir(d);
    }
    let mut roots = Vec::new();
    for (from, to) in TOOLS {
        let b = rd(&tools.join(from))?;
        roots.push(needed(&b)?);
        cpio.file(to, 0o755, &b);
    }
    for (name, path) in closure(&roots, &libs, &rd)? {
        cpio.file(&format!("usr/lib/aarch64-linux-gnu/{name}"), 0o755, &rd(&path)?);
    }
    cpio.file("etc/xen/xl.conf", 0o644, XL_CONF.as_bytes());
    cpio.dir("etc/xen/scripts");
    for script in ["block", "vif-bridge"] {
        cpio.file(&format!("etc/xen/scripts/{script}"), 0o755, HOTPLUG_SCRIPT.as_bytes());
    }
    let mut order = String::new();
    for (name, bytes) in crate::linux::resolve_modules(moddir, DOM0_MODULES)? {
        cpio.file(&format!("lib/modules/{name}.ko"), 0o644, &bytes);
        order.push_str(&name);
        order.push('\n');
    }
    cpio.file("lib/modules/xen-order", 0o644, order.as_bytes());
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
    gz.write_all(&cpio.finish()).map_err(|e| e.to_string())?;
    gz.finish().map_err(|e| e.to_string())
}

/// The `xl` configurations of the deployment's two guests, as files for the boot partition:
/// `xen1.cfg` the unikernel `pvbench` (created first: domain 1, its vCPU on pCPU 2) and
/// `xen2.cfg` the Linux `guest` (domain 2, pCPU 3), each with its kernel (and initramfs) from
/// the boot partition, its command line and memory, the data partition as `xvda` and a vif on
/// the bridge: the domains `bench pv` runs under ferrum.
pub fn guest_configs(dep: &Deployment) -> Result<Vec<(String, Vec<u8>)>, String> {
    let mut out = Vec::new();
    for (i, (name, cpu)) in [("pvbench", 2), ("guest", 3)].into_iter().enumerate() {
        let g = dep.domains.iter().find(|d| d.name == name).ok_or(format!("the deployment has no domain '{name}'"))?;
        let ramdisk =
            g.initrd.as_ref().map(|m| format!("ramdisk = \"/mnt/boot/{}\"\n", m.disk_name)).unwrap_or_default();
        let cfg = format!(
            "name = \"{name}\"\ntype = \"pvh\"\nkernel = \"/mnt/boot/{}\"\n{ramdisk}extra = \"{}\"\n\
             memory = {}\nvcpus = 1\ncpus = \"{cpu}\"\ndisk = [ \"phy:/dev/vda2,xvda,w\" ]\n\
             vif = [ \"bridge=xenbr0,mac=00:16:3e:00:00:{:02x}\" ]\n",
            g.kernel.disk_name,
            g.bootargs,
            g.memory.size >> 20,
            i + 1
        );
        out.push((format!("xen{}.cfg", i + 1), cfg.into_bytes()));
    }
    Ok(out)
}

/// The board `bench pv` runs on, as under ferrum: 4 CPUs, the boot disk and the NIC.
fn board_args(c: &mut Command, disk: &Path) {
    c.args(["-cpu", "cortex-a72", "-smp", "4", "-m", &RAM_MIB.to_string(), "-nographic", "-no-reboot"]);
    crate::qemu::disk_and_nic(c, disk, "user,id=net0");
}

/// The QEMU command booting Xen 4.17 with dom0 (the control domain's Linux, `dom0_args` its
/// command line) on `disk` (the bench's boot disk: the guests' `xl` configurations and images
/// on its boot partition).
pub fn command(gic: u8, disk: &Path, dom0_args: &str) -> Result<Command, String> {
    let build = crate::root().join("build");
    let xen = crate::xen::binary()?;
    let linux = crate::linux::prepare(&build, "6.12")?;
    let kdir = crate::linux::kernel_tree(&build, "6.12")?;
    let moddir = kdir.join("lib/modules").join(&linux.release);
    let dir = build.join("xen/bench-pv");
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let tools = tools_archive(&build.join("cache"), &moddir)?;
    let mut initrd = std::fs::read(&linux.initramfs).map_err(|e| format!("{}: {e}", linux.initramfs.display()))?;
    initrd.extend_from_slice(&tools);
    let initrd_path = dir.join("dom0-initrd.cpio.gz");
    std::fs::write(&initrd_path, &initrd).map_err(|e| e.to_string())?;
    let ksize = std::fs::metadata(&linux.image).map_err(|e| e.to_string())?.len();
    if ksize > SLOT || initrd.len() as u64 > SLOT {
        return Err(format!("dom0's kernel or initramfs is larger than {} MiB", SLOT >> 20));
    }
    let modules = |w: &mut FdtWriter| {
        w.prop_str("xen,dom0-bootargs", dom0_args);
        for (addr, size, kind) in
            [(KERNEL_ADDR, ksize, "multiboot,kernel"), (INITRD_ADDR, initrd.len() as u64, "multiboot,ramdisk")]
        {
            w.begin_node(&format!("module@{addr:x}"));
            w.prop_strs("compatible", &[kind, "multiboot,module"]);
            w.prop_u64s("reg", &[addr, size]);
            w.end_node();
        }
    };
    let board = |c: &mut Command| board_args(c, disk);
    let dump = dir.join(format!("qemu-gicv{gic}.dtb"));
    let dtb = crate::xen::device_tree_with(gic, &board, &dump, XEN_ARGS, &modules)?;
    let dtb_path = dir.join(format!("xen-gicv{gic}.dtb"));
    std::fs::write(&dtb_path, dtb).map_err(|e| e.to_string())?;
    let mut c = Command::new("qemu-system-aarch64");
    c.args(["-M", &crate::xen::machine(gic)]);
    board_args(&mut c, disk);
    c.arg("-kernel").arg(&xen).arg("-dtb").arg(&dtb_path);
    c.args(["-device", &format!("loader,file={},addr={KERNEL_ADDR:#x},force-raw=on", linux.image.display())]);
    c.args(["-device", &format!("loader,file={},addr={INITRD_ADDR:#x},force-raw=on", initrd_path.display())]);
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn needed_reads_the_dynamic_section_of_this_test_binary() {
        // The test binary itself is a dynamically linked ELF on the host: it needs libc.
        let me = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        let n = needed(&me).unwrap();
        assert!(n.iter().any(|l| l.starts_with("libc.so")), "{n:?}");
        assert!(needed(b"not an elf").is_err());
    }

    #[test]
    fn closure_names_a_missing_library() {
        let libs = BTreeMap::new();
        let e = closure(&[vec!["libnothere.so.1".into()]], &libs, &|_| Ok(Vec::new())).unwrap_err();
        assert!(e.contains("libnothere.so.1"), "{e}");
    }
}
