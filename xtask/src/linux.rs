//! Debian's arm64 Linux for the control domain: fetching the kernel and busybox packages with
//! `apt-get download`, unpacking them with `dpkg-deb -x`, and building the initramfs (busybox,
//! the kernel modules the passthrough devices need with their dependencies, and `/init`).
//!
//! Nothing of Linux is patched or rebuilt: the kernel Image is Debian's `vmlinuz` as shipped.
//! Everything is cached under `build/cache/` (packages) and `build/linux/<series>/` (Image,
//! initramfs); a series is resolved to a package through Debian's `linux-image-arm64`
//! metapackage of the suite that carries it.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Kernel series we support: (series, suite that has it).
pub const SERIES: &[(&str, &str)] = &[("6.12", "bookworm-backports"), ("6.1", "bookworm")];

/// Debian arm64 packages whose files go into the initramfs: (package, [(path in the package,
/// path in the initramfs)]). Debian's `xenstore-utils` (Xen 4.17's `xenstore-*` tools) with
/// the shared libraries it needs; `/dev/xen/xenbus` connects them to the hypervisor's xenstore.
const PACKAGE_FILES: &[(&str, &[(&str, &str)])] = &[
    ("xenstore-utils", &[("usr/bin/xenstore", "usr/bin/xenstore")]),
    ("libxenstore4", &[("usr/lib/aarch64-linux-gnu/libxenstore.so.4.0", "usr/lib/aarch64-linux-gnu/libxenstore.so.4")]),
    (
        "libxentoolcore1",
        &[("usr/lib/aarch64-linux-gnu/libxentoolcore.so.1.0", "usr/lib/aarch64-linux-gnu/libxentoolcore.so.1")],
    ),
    // glibc loads libgcc_s when a thread is cancelled (libxenstore's reader thread, at the
    // end of every `xenstore-watch`); without it the tool aborts.
    ("libgcc-s1", &[("lib/aarch64-linux-gnu/libgcc_s.so.1", "lib/aarch64-linux-gnu/libgcc_s.so.1")]),
    (
        "libc6",
        &[
            ("lib/aarch64-linux-gnu/ld-linux-aarch64.so.1", "lib/aarch64-linux-gnu/ld-linux-aarch64.so.1"),
            ("lib/aarch64-linux-gnu/libc.so.6", "lib/aarch64-linux-gnu/libc.so.6"),
        ],
    ),
];

/// Symbolic links in the initramfs: (link, target).
const SYMLINKS: &[(&str, &str)] = &[
    ("lib/ld-linux-aarch64.so.1", "aarch64-linux-gnu/ld-linux-aarch64.so.1"),
    ("usr/bin/xenstore-ls", "xenstore"),
    ("usr/bin/xenstore-read", "xenstore"),
    ("usr/bin/xenstore-write", "xenstore"),
    ("usr/bin/xenstore-list", "xenstore"),
    ("usr/bin/xenstore-rm", "xenstore"),
    ("usr/bin/xenstore-exists", "xenstore"),
    ("usr/bin/xenstore-chmod", "xenstore"),
    ("usr/bin/xenstore-watch", "xenstore"),
];

/// Modules `/init` loads in every Linux domain (dependencies are added automatically): the
/// passthrough devices' drivers, and Linux's own PV frontends for a Linux guest domain.
const MODULES: &[&str] = &[
    "virtio_mmio",
    "virtio_blk",
    "virtio_net",
    "vfat",
    "nls_cp437",
    "nls_ascii",
    "xen-blkfront",
    "xen-netfront",
    // The Raspberry Pi 4's SD/eMMC controllers (sdhci-iproc: EMMC2 and the Arasan SDHCI) and
    // what they depend on (the SD card's GPIO-switched I/O voltage, the firmware's resets).
    "sdhci-iproc",
    "gpio-regulator",
    "reset-raspberrypi",
];
/// Modules the agent loads in the control domain (`ferrum-agent setup`): Linux's own PV
/// backends, the bridge, and loop devices for file-backed vbds.
const BACKEND_MODULES: &[&str] = &["xen-blkback", "xen-netback", "bridge", "loop", "xen-privcmd", "xen-evtchn"];

pub fn run(cmd: &mut Command) -> Result<String, String> {
    let out = cmd.output().map_err(|e| format!("cannot run {cmd:?}: {e}"))?;
    if !out.status.success() {
        return Err(format!("{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr).trim()));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn is_root() -> bool {
    run(Command::new("id").arg("-u")).map(|s| s.trim() == "0").unwrap_or(false)
}

/// Makes sure dpkg knows the arm64 architecture (so `apt-get download PKG:arm64` works).
pub fn ensure_arm64_arch() -> Result<(), String> {
    let foreign = run(Command::new("dpkg").arg("--print-foreign-architectures"))?;
    let has_lists = run(Command::new("apt-cache").args(["show", "busybox-static:arm64"])).is_ok();
    if foreign.lines().any(|l| l.trim() == "arm64") && has_lists {
        return Ok(());
    }
    if !is_root() {
        return Err(
            "arm64 packages are not known to apt; run as root:\n  dpkg --add-architecture arm64 && apt-get update"
                .into(),
        );
    }
    println!("setup: dpkg --add-architecture arm64 && apt-get update");
    run(Command::new("dpkg").args(["--add-architecture", "arm64"]))?;
    run(Command::new("apt-get").args(["update", "-q"]))?;
    Ok(())
}

/// The linux-image package for `series`, from the `linux-image-arm64` metapackage.
fn kernel_package(series: &str) -> Result<String, String> {
    let info = run(Command::new("apt-cache").args(["show", "linux-image-arm64:arm64"]))?;
    let prefix = format!("linux-image-{series}.");
    for line in info.lines() {
        if let Some(deps) = line.strip_prefix("Depends:") {
            for dep in deps.split(',') {
                let name = dep.split_whitespace().next().unwrap_or("");
                if name.starts_with(&prefix) && name.ends_with("-arm64") {
                    return Ok(name.to_string());
                }
            }
        }
    }
    let suite = SERIES.iter().find(|s| s.0 == series).map_or("bookworm", |s| s.1);
    Err(format!(
        "no Debian arm64 kernel of series {series} is known to apt (is {suite} enabled? run `cargo xtask setup`)"
    ))
}

/// Downloads (once) and unpacks `pkg:arm64`; returns the unpacked tree.
pub fn fetch_unpack(cache: &Path, pkg: &str) -> Result<PathBuf, String> {
    fetch_unpack_spec(cache, pkg, &format!("{pkg}:arm64"))
}

/// Downloads (once) package `pkg` as apt names it in `spec` (`pkg:arm64`, or `pkg` for an
/// architecture-independent package) and unpacks it; returns the unpacked tree.
pub fn fetch_unpack_spec(cache: &Path, pkg: &str, spec: &str) -> Result<PathBuf, String> {
    let dir = cache.join("unpacked").join(pkg);
    if dir.join(".done").is_file() {
        return Ok(dir);
    }
    let debs = cache.join("debs");
    std::fs::create_dir_all(&debs).map_err(|e| e.to_string())?;
    let find = |debs: &Path| -> Option<PathBuf> {
        std::fs::read_dir(debs).ok()?.flatten().map(|e| e.path()).find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&format!("{pkg}_")) && n.ends_with(".deb"))
        })
    };
    let deb = match find(&debs) {
        Some(d) => d,
        None => {
            println!("fetch: apt-get download {spec}");
            run(Command::new("apt-get").current_dir(&debs).args(["download", "-q", spec]))?;
            find(&debs).ok_or_else(|| format!("apt-get download {spec} left no .deb in {}", debs.display()))?
        }
    };
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    println!("fetch: dpkg-deb -x {} {}", deb.display(), dir.display());
    run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&dir))?;
    std::fs::write(dir.join(".done"), b"").map_err(|e| e.to_string())?;
    Ok(dir)
}

/// The unpacked kernel package of `series` (its device trees and modules).
pub fn kernel_tree(build: &Path, series: &str) -> Result<PathBuf, String> {
    ensure_arm64_arch()?;
    fetch_unpack(&build.join("cache"), &kernel_package(series)?)
}

/// Paths of a prepared kernel series.
pub struct Linux {
    /// The arm64 Image (Debian's vmlinuz).
    pub image: PathBuf,
    /// The initramfs (gzip'd newc cpio).
    pub initramfs: PathBuf,
    /// Kernel release, e.g. 6.12.95+deb12-arm64.
    pub release: String,
}

/// Fetches and prepares `series` under `build/`.
pub fn prepare(build: &Path, series: &str) -> Result<Linux, String> {
    if !SERIES.iter().any(|s| s.0 == series) {
        let known: Vec<_> = SERIES.iter().map(|s| s.0).collect();
        return Err(format!("unknown kernel series '{series}' (supported: {})", known.join(", ")));
    }
    let out = build.join("linux").join(series);
    let stamp = out.join("release");
    let image = out.join("Image");
    let initramfs = out.join("initramfs.cpio.gz");
    let init_now = init_script();
    let agent = crate::build_agent()?;
    let agent_bytes = std::fs::read(&agent).map_err(|e| format!("{}: {e}", agent.display()))?;
    // What the initramfs is made of; a change rebuilds it.
    let recipe = format!(
        "{init_now}\n{PACKAGE_FILES:?}\n{SYMLINKS:?}\n{MODULES:?}\n{BACKEND_MODULES:?}\nagent {:08x}",
        crate::image::crc32(&agent_bytes)
    );
    let fresh = std::fs::read_to_string(out.join("init")).is_ok_and(|s| s == recipe);
    if let (Ok(release), true, true, true) =
        (std::fs::read_to_string(&stamp), image.is_file(), initramfs.is_file(), fresh)
    {
        return Ok(Linux { image, initramfs, release: release.trim().to_string() });
    }
    ensure_arm64_arch()?;
    let cache = build.join("cache");
    let pkg = kernel_package(series)?;
    let kdir = fetch_unpack(&cache, &pkg)?;
    let bdir = fetch_unpack(&cache, "busybox-static")?;
    let release = pkg.trim_start_matches("linux-image-").to_string();
    std::fs::create_dir_all(&out).map_err(|e| e.to_string())?;
    let vmlinuz = kdir.join("boot").join(format!("vmlinuz-{release}"));
    let img = std::fs::read(&vmlinuz).map_err(|e| format!("{}: {e}", vmlinuz.display()))?;
    let img = if img.starts_with(&[0x1f, 0x8b]) { gunzip(&img)? } else { img };
    hyp_core::image::parse(&img).map_err(|e| format!("{}: {e}", vmlinuz.display()))?;
    std::fs::write(&image, &img).map_err(|e| e.to_string())?;

    let moddir = kdir.join("lib/modules").join(&release);
    let mods = resolve_modules(&moddir, MODULES)?;
    let backend_mods: Vec<_> = resolve_modules(&moddir, BACKEND_MODULES)?
        .into_iter()
        .filter(|(n, _)| !mods.iter().any(|m| &m.0 == n))
        .collect();
    let busybox = std::fs::read(bdir.join("bin/busybox")).map_err(|e| format!("busybox: {e}"))?;
    let mut cpio = Cpio::default();
    for d in [
        "bin",
        "sbin",
        "dev",
        "proc",
        "sys",
        "mnt",
        "mnt/boot",
        "tmp",
        "etc",
        "lib",
        "lib/aarch64-linux-gnu",
        "lib/modules",
        "root",
        "usr",
        "usr/bin",
        "usr/lib",
        "usr/lib/aarch64-linux-gnu",
    ] {
        cpio.dir(d);
    }
    for (pkg, files) in PACKAGE_FILES {
        let dir = fetch_unpack(&cache, pkg)?;
        for (from, to) in *files {
            let bytes = std::fs::read(dir.join(from)).map_err(|e| format!("{pkg}: {from}: {e}"))?;
            cpio.file(to, 0o755, &bytes);
        }
    }
    for (link, target) in SYMLINKS {
        cpio.symlink(link, target);
    }
    cpio.file("bin/busybox", 0o755, &busybox);
    cpio.file("bin/ferrum-agent", 0o755, &agent_bytes);
    cpio.symlink("bin/hypctl", "ferrum-agent");
    cpio.file("init", 0o755, init_now.as_bytes());
    cpio.file("etc/udhcpc.script", 0o755, UDHCPC_SCRIPT.as_bytes());
    cpio.file("etc/inittab", 0o644, INITTAB.as_bytes());
    // `/init` loads `load-order`; the agent loads `backend-order` in the control domain.
    for (list, order_file) in [(&mods, "load-order"), (&backend_mods, "backend-order")] {
        let mut order = String::new();
        for (name, bytes) in list {
            cpio.file(&format!("lib/modules/{name}.ko"), 0o644, bytes);
            order.push_str(name);
            order.push('\n');
        }
        cpio.file(&format!("lib/modules/{order_file}"), 0o644, order.as_bytes());
    }
    let raw = cpio.finish();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
    gz.write_all(&raw).map_err(|e| e.to_string())?;
    std::fs::write(&initramfs, gz.finish().map_err(|e| e.to_string())?).map_err(|e| e.to_string())?;
    std::fs::write(out.join("init"), &recipe).map_err(|e| e.to_string())?;
    std::fs::write(&stamp, &release).map_err(|e| e.to_string())?;
    println!(
        "linux {series}: {release}, {} modules in the initramfs (+{} for the backends), ferrum-agent {} KiB",
        mods.len(),
        backend_mods.len(),
        agent_bytes.len() / 1024
    );
    Ok(Linux { image, initramfs, release })
}

fn gunzip(b: &[u8]) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(b).read_to_end(&mut out).map_err(|e| format!("gunzip: {e}"))?;
    Ok(out)
}

/// Finds `name`'s module file under `moddir/kernel` (`.ko` or `.ko.xz`) and returns its bytes,
/// decompressed.
fn module_bytes(index: &[(String, PathBuf)], name: &str) -> Result<Vec<u8>, String> {
    let (_, path) = index
        .iter()
        .find(|(n, _)| n == name || n.replace('-', "_") == name)
        .ok_or_else(|| format!("kernel module {name} not found in the package"))?;
    let raw = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if path.extension().is_some_and(|e| e == "xz") {
        let mut out = Vec::new();
        lzma_rs::xz_decompress(&mut &raw[..], &mut out).map_err(|e| format!("{}: {e:?}", path.display()))?;
        Ok(out)
    } else {
        Ok(raw)
    }
}

fn index_modules(dir: &Path, out: &mut Vec<(String, PathBuf)>) {
    let Ok(rd) = std::fs::read_dir(dir) else { return };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            index_modules(&p, out);
        } else if let Some(n) = p.file_name().and_then(|n| n.to_str()) {
            if let Some(stem) = n.strip_suffix(".ko.xz").or_else(|| n.strip_suffix(".ko")) {
                out.push((stem.to_string(), p.clone()));
            }
        }
    }
}

/// The `depends=` list in a module's `.modinfo`.
pub fn module_depends(ko: &[u8]) -> Vec<String> {
    let key = b"\0depends=";
    let Some(at) = ko.windows(key.len()).position(|w| w == key) else { return Vec::new() };
    let rest = &ko[at + key.len()..];
    let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
    String::from_utf8_lossy(&rest[..end]).split(',').filter(|s| !s.is_empty()).map(str::to_string).collect()
}

/// The modules `wanted` and their dependencies, dependencies first.
pub(crate) fn resolve_modules(moddir: &Path, wanted: &[&str]) -> Result<Vec<(String, Vec<u8>)>, String> {
    let mut index = Vec::new();
    index_modules(&moddir.join("kernel"), &mut index);
    let builtin = std::fs::read_to_string(moddir.join("modules.builtin")).unwrap_or_default();
    let is_builtin =
        |n: &str| builtin.lines().any(|l| l.rsplit('/').next().and_then(|f| f.strip_suffix(".ko")) == Some(n));
    let mut out: Vec<(String, Vec<u8>)> = Vec::new();
    fn visit(
        n: &str,
        index: &[(String, PathBuf)],
        is_builtin: &dyn Fn(&str) -> bool,
        out: &mut Vec<(String, Vec<u8>)>,
        depth: usize,
    ) -> Result<(), String> {
        if out.iter().any(|(m, _)| m == n) || is_builtin(n) {
            return Ok(());
        }
        if depth > 16 {
            return Err(format!("module dependency loop at {n}"));
        }
        let bytes = module_bytes(index, n)?;
        for dep in module_depends(&bytes) {
            visit(&dep, index, is_builtin, out, depth + 1)?;
        }
        out.push((n.to_string(), bytes));
        Ok(())
    }
    for w in wanted {
        visit(w, &index, &is_builtin, &mut out, 0)?;
    }
    Ok(out)
}

/// A newc cpio archive writer.
#[derive(Default)]
pub struct Cpio {
    buf: Vec<u8>,
    ino: u32,
}

impl Cpio {
    fn entry(&mut self, name: &str, mode: u32, data: &[u8]) {
        self.ino += 1;
        let namesz = name.len() + 1;
        let hdr = format!(
            "070701{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}",
            self.ino,
            mode,
            0,
            0,
            1,
            0,
            data.len(),
            0,
            0,
            0,
            0,
            namesz,
            0
        );
        self.buf.extend_from_slice(hdr.as_bytes());
        self.buf.extend_from_slice(name.as_bytes());
        self.buf.push(0);
        while !self.buf.len().is_multiple_of(4) {
            self.buf.push(0);
        }
        self.buf.extend_from_slice(data);
        while !self.buf.len().is_multiple_of(4) {
            self.buf.push(0);
        }
    }
    /// Adds a directory.
    pub fn dir(&mut self, name: &str) {
        self.entry(name, 0o040755, &[]);
    }
    /// Adds a symbolic link.
    pub fn symlink(&mut self, name: &str, target: &str) {
        self.entry(name, 0o120777, target.as_bytes());
    }
    /// Adds a regular file.
    pub fn file(&mut self, name: &str, perm: u32, data: &[u8]) {
        self.entry(name, 0o100000 | perm, data);
    }
    /// Ends the archive.
    pub fn finish(mut self) -> Vec<u8> {
        self.entry("TRAILER!!!", 0, &[]);
        self.buf
    }
}

/// busybox init, after `/init` has set the system up: a shell on the console, and a clean
/// unmount on `poweroff` (which ends in PSCI SYSTEM_OFF).
const INITTAB: &str = "::respawn:/bin/cttyhack /bin/sh\n::shutdown:/bin/umount -a -r\n";

const UDHCPC_SCRIPT: &str = r#"#!/bin/sh
case "$1" in
  bound|renew)
    ifconfig "$interface" "$ip" netmask "${subnet:-255.255.255.0}" up
    [ -n "$router" ] && route add default gw "${router%% *}" dev "$interface"
    ;;
esac
exit 0
"#;

/// The control domain's `/init`.
pub fn init_script() -> String {
    r#"#!/bin/busybox sh
# ferrum control domain init (busybox): mounts, modules, disk, network, then busybox init
# (a shell on the console; `poweroff` powers the domain off).
/bin/busybox --install -s /bin
export PATH=/bin:/sbin:/usr/bin
mount -t proc proc /proc
# Only warnings and worse reach the console from here on (the rest stays in dmesg): an info line
# such as a bridge port's state change must not land in the middle of a line init prints.
echo 5 > /proc/sys/kernel/printk
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
echo "ferrum-init: Linux $(uname -r), CPUs online: $(cat /sys/devices/system/cpu/online)"
if grep -qw ferrum.xendom0 /proc/cmdline; then
  # `cargo xtask bench pv --xen`: this is dom0 of Xen 4.17, which has no xenstore until dom0
  # runs one: Xen's own xenstored and xenconsoled (appended to this initramfs) start first.
  for m in $(cat /lib/modules/xen-order); do insmod /lib/modules/$m.ko 2>/dev/null; done
  mount -t xenfs xenfs /proc/xen
  # xenconsoled gives each guest console a pseudo-terminal.
  mkdir -p /dev/pts && mount -t devpts devpts /dev/pts
  xenstored --pid-file /var/run/xenstored.pid
  # What Xen's xencommons does: dom0's own nodes (xen-init-dom0), the CPU pool xl asks for.
  xen-init-dom0 >/dev/null
  xenstore-write /local/pool/0/name Pool-0
  xenconsoled --pid-file=/var/run/xenconsoled.pid --log=guest --log-dir=/var/log/xen/console
  echo "ferrum-init: Xen dom0: xenstored and xenconsoled started"
fi
# /sys/hypervisor/uuid is read through xenstore (the domain's `vm` key): a round trip over xenbus.
[ -r /sys/hypervisor/type ] && echo "ferrum-init: hypervisor $(cat /sys/hypervisor/type), uuid $(cat /sys/hypervisor/uuid 2>&1)"
for m in $(cat /lib/modules/load-order); do
  insmod /lib/modules/$m.ko || echo "ferrum-init: insmod $m failed"
done
# wait_for CONDITION TENTHS: polls a shell condition every 0.1 s, up to TENTHS times.
wait_for() { n=0; until eval "$1"; do [ $n -ge $2 ] && return 1; n=$((n + 1)); sleep 0.1; done; }
# Waits until the condition $2 holds, looking again each time the xenstore node $1 changes
# (a watch: its first event fires at once, the second on a change; 5 s at most between
# looks, at most $3 looks) rather than every second: each look costs a process, which under
# TCG takes the host CPU from what `bench pv` measures in another domain.
xs_wait() { n=0; until eval "$2"; do [ $n -ge $3 ] && return 1; n=$((n + 1)); timeout 5 xenstore-watch -n 2 "$1" >/dev/null 2>&1; done; }
# `cargo xtask bench pv --pc-profile` (ferrum.ksyms on the command line): the kernel's function
# symbols, which name the PCs sampled here (Debian ships no real System.map): all of them from
# the control domain, only `_text` (where KASLR put the kernel) and the modules' from a guest.
ksyms() {
  grep -qw ferrum.ksyms /proc/cmdline || return 0
  if [ $ROLE = control ]; then grep ' [tT] ' /proc/kallsyms; else grep -w _text /proc/kallsyms; grep ' [tT] .*\[' /proc/kallsyms; fi | sed 's/^/ksym /'
}
if ls /sys/bus/virtio/devices/ 2>/dev/null | grep -q .; then
  wait_for "[ -b /dev/vda1 ]" 20
  if mount -t vfat -o ro /dev/vda1 /mnt/boot; then
    echo "ferrum-init: boot partition mounted on /mnt/boot"
  else
    echo "ferrum-init: no boot partition (/dev/vda1)"
  fi
elif ls /sys/class/mmc_host/ 2>/dev/null | grep -q .; then
  # An SD card (the Raspberry Pi 4): partition 1 is the boot partition, 2 the data partition.
  if wait_for "ls /dev/mmcblk*p1 >/dev/null 2>&1" 100; then
    B=$(ls /dev/mmcblk*p1 | head -n 1)
    mount -t vfat -o ro $B /mnt/boot && echo "ferrum-init: SD card boot partition $B mounted on /mnt/boot"
  else
    echo "ferrum-init: no SD card partition appeared"
  fi
fi
ifconfig lo 127.0.0.1 up
# A link to another board (`cargo xtask test`'s two-board scenarios): the NIC whose MAC starts
# 52:54:00:77 becomes link0 with the /24 address in link.txt; the board's NIC stays eth0.
if [ -f /mnt/boot/link.txt ]; then
  L=
  for i in /sys/class/net/*; do
    case "$(cat $i/address)" in 52:54:00:77:*) L=${i##*/} ;; esac
  done
  if [ -n "$L" ]; then
    LMAC=$(cat /sys/class/net/$L/address)
    [ "$L" = link0 ] || nameif link0 $LMAC
    [ -d /sys/class/net/eth0 ] || nameif eth0 52:54:00:12:34:56
    A=$(cat /mnt/boot/link.txt); A=${A%/*}
    ifconfig link0 $A netmask 255.255.255.0 up && echo "ferrum-init: link0 ($LMAC) address $A"
  else
    echo "ferrum-init: link.txt names a link, but no NIC has a 52:54:00:77 MAC"
  fi
fi
# The control domain (the one that may read /ferrum) serves the PV backends: the agent loads
# them and bridges eth0 into xenbr0, whose address the domain then uses.
NET=eth0
ROLE=guest
if xenstore-exists /ferrum/domain 2>/dev/null || grep -qw ferrum.xendom0 /proc/cmdline; then
  ROLE=control
  ferrum-agent setup && NET=xenbr0
elif grep -qw ferrum.bridge /proc/cmdline; then
  # `cargo xtask bench boot`'s native run: the control domain's network set-up (backend modules,
  # which fail without Xen, and the bridge), so both runs do the same work before their ready line.
  ferrum-agent setup && NET=xenbr0
fi
# A guest domain's PV disks (xen-blkfront): each appears once the control domain's backend
# connects (it may still be booting), and is mounted on /mnt/<name> when it holds a filesystem.
if [ $ROLE = guest ]; then
  for v in /sys/bus/xen/devices/vbd-*; do
    [ -d "$v" ] || continue
    if wait_for "ls $v/block 2>/dev/null | grep -q ." 1200; then
      b=$(ls $v/block | head -n 1)
      mkdir -p /mnt/$b
      RO=; [ "$(cat /sys/block/$b/ro)" = 1 ] && RO="-o ro"
      KIB=$(( $(cat /sys/block/$b/size) / 2 ))
      if mount $RO /dev/$b /mnt/$b 2>/dev/null; then
        echo "ferrum-init: PV disk /dev/$b ($KIB KiB) mounted on /mnt/$b"
      else
        echo "ferrum-init: PV disk /dev/$b ($KIB KiB) holds no filesystem (format it: mkdosfs /dev/$b)"
      fi
    else
      echo "ferrum-init: PV disk ${v##*/} never connected"
    fi
  done
fi
ADDR=none
if ifconfig $NET up 2>/dev/null; then
  # A PV NIC (xen-netfront) has carrier once its backend is connected; the bridge once its
  # uplink port forwards. DHCP before that loses its first DISCOVER and waits a second to retry.
  carrier="grep -q 1 /sys/class/net/$NET/carrier 2>/dev/null"
  if [ -d /sys/bus/xen/devices/vif-0 ] && [ $NET = eth0 ]; then
    wait_for "$carrier" 1200 || echo "ferrum-init: PV NIC eth0 has no carrier"
  else
    wait_for "$carrier" 30
  fi
  udhcpc -i $NET -s /etc/udhcpc.script -q -n -t 8 -T 1 >/dev/null 2>&1
  ADDR=$(ifconfig $NET | sed -n 's/.*inet addr:\([0-9.]*\).*/\1/p')
fi
echo "ferrum-init: $NET address ${ADDR:-none}"
[ $ROLE = control ] && ferrum-agent daemon &
echo "FERRUM-READY $ROLE domain up: $(cat /sys/devices/system/cpu/online | tr -d '\n') online, $NET ${ADDR:-none}"
if [ -f /mnt/boot/selftest.txt ]; then
  URL=$(cat /mnt/boot/selftest.txt)
  irqs() { awk -v k="$1" '$0 ~ k { s = 0; for (i = 2; i <= NF; i++) if ($i ~ /^[0-9]+$/) s += $i; else break; t += s } END { print t + 0 }' /proc/interrupts; }
  t1=$(irqs arch_timer); v1=$(irqs virtio)
  sleep 1
  wget -q -O /tmp/page "$URL" && echo "selftest: fetched $URL: $(cat /tmp/page)" || echo "selftest: fetch of $URL failed"
  t2=$(irqs arch_timer); v2=$(irqs virtio)
  echo "selftest: cpus online $(cat /sys/devices/system/cpu/online)"
  [ "$t2" -gt "$t1" ] && echo "selftest: timer interrupts count up ($t1 -> $t2)"
  [ "$v2" -gt "$v1" ] && echo "selftest: virtio interrupts count up ($v1 -> $v2)"
  echo "selftest: disk file says: $(cat /mnt/boot/ferrum.txt)"
  # Debian's xenstore-utils against the hypervisor's xenstore.
  xenstore-ls -f /local/domain | grep -E '/(name|domid) = ' | sed 's/^/selftest: xenstore: /'
  ME=$(xenstore-read domid)
  xenstore-write /local/domain/$ME/data/selftest "written-by-$ME" && echo "selftest: xenstore: own subtree write ok: $(xenstore-read /local/domain/$ME/data/selftest)"
  xenstore-write /local/domain/$ME/name renamed 2>/dev/null && echo "selftest: FAIL: wrote its own read-only name" || echo "selftest: xenstore: write to its read-only name refused"
  xenstore-write /local/domain/2/data/x intruder 2>/dev/null && echo "selftest: FAIL: wrote another domain's subtree" || echo "selftest: xenstore: write to another domain's subtree refused"
  xenstore-write /tool/x intruder 2>/dev/null && echo "selftest: FAIL: wrote outside every domain's subtree" || echo "selftest: xenstore: write outside its subtree refused"
  grep -E 'arch_timer|virtio|uart' /proc/interrupts
  # A Linux guest domain's self-test (`ferrum.selftest` on its command line) fetches this URL.
  xenstore-write /local/domain/$ME/data/selftest-url "$URL" && xenstore-chmod /local/domain/$ME/data/selftest-url r$ME
  if [ -f /mnt/boot/selftest-wait ]; then
    # The host now reaches the domains' services (the web unikernel through the bridge and
    # QEMU's port forwarding), then types a line.
    echo "selftest: waiting for the host"
    read -t 180 REPLY
    hypctl list | sed 's/^/selftest: hypctl: /'
    # What each backend vif passed (towards the guest: tx), for a run where the host got no
    # answer from a guest.
    for i in /sys/class/net/vif*; do
      [ -d $i ] && echo "selftest: ${i##*/}: to the guest $(cat $i/statistics/tx_packets) packets, from it $(cat $i/statistics/rx_packets), carrier $(cat $i/carrier 2>/dev/null)"
    done
  fi
  echo "selftest: done, powering off"
  poweroff -f
fi
ME=$(xenstore-read domid 2>/dev/null)
if [ $ROLE = control ] && [ -f /mnt/boot/bench.txt ]; then
  # `cargo xtask bench pv`: the control domain measures its direct access to the disk and
  # the NIC, then gives every other domain its turn (data/bench names it) and waits for its
  # data/bench-done; its TCP sink serves them all.
  # Rounds interleave: direct, every other domain in turn, direct again, ... (bench.txt:
  # <host sink port> <disk MiB> <TCP MiB> <rounds>; data/bench: <domid> <port> <disk MiB>
  # <TCP MiB> <round> <rounds>; a domain answers with data/bench-done = <round>).
  set -- $(cat /mnt/boot/bench.txt)
  RUNS=${4:-1}
  ksyms
  ferrum-agent bench sink 5001 &
  if grep -qw ferrum.xendom0 /proc/cmdline; then
    # `bench pv --xen`: the guests are `xl` domains (xen1.cfg, xen2.cfg); xenconsoled writes
    # their consoles to files, copied to this console (where the figures are read).
    for c in /mnt/boot/xen*.cfg; do
      N=$(sed -n 's/^name = "\(.*\)"$/\1/p' $c)
      xl create $c || echo "bench: xl create $c failed"
      ( wait_for "[ -f /var/log/xen/console/guest-$N.log ]" 600 && tail -f /var/log/xen/console/guest-$N.log ) &
    done
  fi
  # The first round starts once every other domain is ready (booted, its PV devices up):
  # a domain still booting would take host CPU from the direct figures.
  for d in $(xenstore-list /local/domain); do
    [ "$d" = "$ME" ] && continue
    if xs_wait /local/domain/$d/data/bench-ready '[ -n "$(xenstore-read /local/domain/$d/data/bench-ready 2>/dev/null)" ]' 120; then
      echo "bench: domain $d ready at $(cut -d' ' -f1 /proc/uptime) s (looked $n times)"
    else
      echo "bench: domain $d is not ready; starting anyway ($(cut -d' ' -f1 /proc/uptime) s)"
    fi
  done
  r=1
  while [ $r -le $RUNS ]; do
    echo "bench: round $r of $RUNS"
    ferrum-agent bench disk control-direct /dev/vda2 $2
    ferrum-agent bench tcp-send control-direct-to-host 10.0.2.2:$1 $3
    for d in $(xenstore-list /local/domain); do
      [ "$d" = "$ME" ] && continue
      xenstore-write /local/domain/$ME/data/bench "$d $1 $2 $3 $r $RUNS" && xenstore-chmod /local/domain/$ME/data/bench r$ME
      xs_wait /local/domain/$d/data/bench-done '[ "$(xenstore-read /local/domain/$d/data/bench-done 2>/dev/null)" = "$r" ]' 900
    done
    r=$((r + 1))
  done
  echo "bench: done"
  # Under Xen the guest's console reaches this one through a file polled every second.
  grep -qw ferrum.xendom0 /proc/cmdline && sleep 2
  poweroff -f
fi
if [ $ROLE = guest ] && grep -qw ferrum.bench /proc/cmdline; then
  # A Linux guest's turn in `cargo xtask bench pv`: the same measurements through its
  # xen-blkfront and xen-netfront.
  # One turn per round (see the control domain's loop), the first once all are ready.
  ksyms
  # The control domain: the backend of its disk (domain 1 under ferrum, 0 under Xen).
  CTL=$(xenstore-read device/vbd/51712/backend-id 2>/dev/null || echo 1)
  xenstore-write /local/domain/$ME/data/bench-ready 1
  r=0
  while :; do
    xs_wait /local/domain/$CTL/data/bench '[ "$(xenstore-read /local/domain/$CTL/data/bench 2>/dev/null | cut -d" " -f1,5)" = "$ME $((r + 1))" ]' 100000
    set -- $(xenstore-read /local/domain/$CTL/data/bench)
    r=$5
    ferrum-agent bench disk guest /dev/xvda $3
    ferrum-agent bench tcp-send guest-to-control 10.0.2.15:5001 $4
    ferrum-agent bench tcp-send guest-to-host 10.0.2.2:$2 $4
    xenstore-write /local/domain/$ME/data/bench-done $r
    [ $r -ge $6 ] && break
  done
fi
if [ $ROLE = guest ] && grep -qw ferrum.selftest /proc/cmdline; then
  # A guest domain's self-test of its PV disk and NIC: formats the disk if it holds no
  # filesystem, counts its boots there, writes 1 MiB and reads it back from the backend (page
  # cache dropped), then fetches the page whose URL the control domain's self-test publishes.
  D=/mnt/xvda
  if ! grep -q " $D " /proc/mounts; then
    mkdosfs -n FERRUMDATA /dev/xvda >/dev/null && mount /dev/xvda $D && echo "guest-selftest: formatted /dev/xvda (vfat), mounted on $D"
  fi
  echo $(( $(cat $D/boots 2>/dev/null || echo 0) + 1 )) > $D/boots
  dd if=/dev/urandom of=$D/blob bs=4096 count=256 2>/dev/null
  sync
  S1=$(md5sum $D/blob | cut -d' ' -f1)
  echo 3 > /proc/sys/vm/drop_caches
  S2=$(md5sum $D/blob | cut -d' ' -f1)
  [ -n "$S1" ] && [ "$S1" = "$S2" ] && echo "guest-selftest: 1 MiB written to $D/blob and read back from the backend: same md5"
  echo "guest-selftest: boots counted on $D: $(cat $D/boots)"
  echo "guest-selftest: $(grep ' /mnt/xvda ' /proc/mounts | cut -d' ' -f1-3)"
  echo "guest-selftest: eth0 address $ADDR, default route via $(route -n | awk '$1 == "0.0.0.0" { print $2 }')"
  if wait_for "xenstore-read /local/domain/1/data/selftest-url >/tmp/url 2>/dev/null" 1200; then
    URL=$(cat /tmp/url)
    wget -q -O /tmp/page "$URL" && echo "guest-selftest: fetched $URL: $(cat /tmp/page)" || echo "guest-selftest: fetch of $URL failed"
  else
    echo "guest-selftest: no URL published by the control domain"
  fi
  echo "guest-selftest: done"
fi
echo "ferrum-init: type commands below; 'poweroff' powers this domain off (its on_poweroff says what follows)"
exec /bin/init
"#
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modinfo_depends() {
        let ko = b"\x7fELF....\0license=GPL\0depends=net_failover,failover\0name=virtio_net\0";
        assert_eq!(module_depends(ko), ["net_failover", "failover"]);
        assert!(module_depends(b"\0depends=\0").is_empty());
    }

    #[test]
    fn cpio_layout() {
        let mut c = Cpio::default();
        c.file("init", 0o755, b"hi");
        let b = c.finish();
        assert!(b.starts_with(b"070701"));
        assert_eq!(b.len() % 4, 0);
        let s = String::from_utf8_lossy(&b);
        assert!(s.contains("init\0") && s.contains("TRAILER!!!"));
    }
}
