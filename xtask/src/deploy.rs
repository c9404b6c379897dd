//! Deployment files: parsing the TOML, resolving images, placing domain memory and boot
//! modules, and validating the result with the same `hyp_core::plan::validate` the hypervisor
//! runs at boot. Every error names the file and the field.

use hyp_core::addr::PhysRange;
use hyp_core::list::List;
use hyp_core::plan::{
    self, BoardLimits, CrashPolicy, Domain, DomainKind, FaultPolicy, Lifecycle, Plan, PowerOffPolicy, Problem,
    PvDevice, PvKind, RebootPolicy,
};
use platforms::Platform;
use serde::Deserialize;
use std::path::{Path, PathBuf};

const MIB: u64 = 1 << 20;

/// A number written as an integer or as a string ("0x5000_0000", "32M", "1G").
#[derive(Deserialize, Debug, Clone)]
#[serde(untagged)]
pub enum Num {
    /// A plain integer.
    Int(u64),
    /// A string with optional hex prefix and size suffix.
    Str(String),
}

impl Num {
    fn value(&self) -> Result<u64, String> {
        match self {
            Num::Int(v) => Ok(*v),
            Num::Str(s) => parse_size(s),
        }
    }
}

/// Parses "4096", "0x1000", "32M", "32MiB", "1G", "512K".
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim().replace('_', "");
    let (num, mult) = match t.to_ascii_uppercase() {
        u if u.ends_with("KIB") || u.ends_with('K') => {
            (t.trim_end_matches(['K', 'k', 'i', 'B', 'b']).to_string(), 1u64 << 10)
        }
        u if u.ends_with("MIB") || u.ends_with('M') => {
            (t.trim_end_matches(['M', 'm', 'i', 'B', 'b']).to_string(), 1 << 20)
        }
        u if u.ends_with("GIB") || u.ends_with('G') => {
            (t.trim_end_matches(['G', 'g', 'i', 'B', 'b']).to_string(), 1 << 30)
        }
        _ => (t.clone(), 1),
    };
    let v = if let Some(h) = num.strip_prefix("0x").or_else(|| num.strip_prefix("0X")) {
        u64::from_str_radix(h, 16)
    } else {
        num.parse::<u64>()
    }
    .map_err(|_| format!("'{s}' is not a number or size (examples: 32M, 1G, 0x50000000)"))?;
    v.checked_mul(mult).ok_or_else(|| format!("'{s}' is too large"))
}

/// The file as written.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct DeploymentFile {
    /// Deployment name (defaults to the file name).
    pub name: Option<String>,
    /// Board name.
    pub platform: String,
    /// Domains in boot order.
    #[serde(default, rename = "domain")]
    pub domains: Vec<DomainFile>,
}

/// One `[[domain]]` table.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct DomainFile {
    /// Unique name.
    pub name: String,
    /// "unikernel" or "linux".
    #[serde(default = "default_kind")]
    pub kind: String,
    /// "guest:<name>" or a path relative to the deployment file.
    pub kernel: String,
    /// Optional initrd path.
    pub initrd: Option<String>,
    /// Physical CPUs, one per vCPU.
    pub cpus: Vec<u64>,
    /// RAM size.
    pub memory: Num,
    /// Optional physical base.
    pub memory_base: Option<Num>,
    /// Kernel command line.
    #[serde(default)]
    pub bootargs: String,
    /// "inject" or "stop".
    #[serde(default = "default_fault")]
    pub on_fault: String,
    /// "domain" or "board".
    #[serde(default = "default_poweroff")]
    pub on_poweroff: String,
    /// Start at boot (default); `false`: declared and checked, started by `hypctl start`.
    pub autostart: Option<bool>,
    /// "stop" (default), "restart" or "board": what a crash does.
    pub on_crash: Option<String>,
    /// "restart" (default) or "stop": what a reboot does.
    pub on_reboot: Option<String>,
    /// Restarts by policy allowed within `restart_window` (default 5).
    pub restart_limit: Option<u32>,
    /// "60s" (default), "5m", "1h".
    pub restart_window: Option<String>,
    /// Host device-tree paths of passthrough devices.
    #[serde(default)]
    pub devices: Vec<String>,
    /// Offer the Xen guest ABI (default: yes for Linux, no for unikernels).
    pub xen: Option<bool>,
    /// Virtual block devices this domain is the frontend of.
    #[serde(default)]
    pub vbd: Vec<VbdFile>,
    /// Virtual network interfaces this domain is the frontend of.
    #[serde(default)]
    pub vif: Vec<VifFile>,
}

/// One `[[domain.vbd]]` table: a disk served by a backend (driver) domain's xen-blkback.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct VbdFile {
    /// Name of the backend domain (a Linux domain with `xen = true`).
    pub backend: String,
    /// What the backend serves: a block device of the backend domain (`/dev/vda2`) or a file in
    /// it (served through a loop device).
    pub target: String,
    /// The frontend's device name, `xvda`..`xvdp` (default: `xvda`, `xvdb`, ... in order).
    pub vdev: Option<String>,
    /// "w" (default) or "r".
    pub mode: Option<String>,
}

/// One `[[domain.vif]]` table: a network interface served by a backend domain's xen-netback.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct VifFile {
    /// Name of the backend domain.
    pub backend: String,
    /// Bridge in the backend domain the interface joins (default `xenbr0`, which the control
    /// domain's agent bridges to its NIC).
    pub bridge: Option<String>,
    /// MAC address (default `00:16:3e:00:<domain id>:<n>`, in Xen's OUI).
    pub mac: Option<String>,
}

/// A resolved PV device.
#[derive(Debug, Clone)]
pub struct ResolvedPv {
    /// vbd or vif.
    pub kind: PvKind,
    /// Backend domain name.
    pub backend: String,
    /// Device id (vbd number or vif handle).
    pub devid: u32,
    /// vbd target or vif bridge.
    pub target: String,
    /// vbd writable.
    pub writable: bool,
    /// vif MAC.
    pub mac: [u8; 6],
}

/// Parses `xvda`..`xvdp` into Linux's device number (202 << 8 | disk << 4).
pub fn parse_vdev(s: &str) -> Result<u32, String> {
    match s.strip_prefix("xvd").map(str::as_bytes) {
        Some([c @ b'a'..=b'p']) => Ok((202 << 8) | (u32::from(c - b'a') << 4)),
        _ => Err(format!("'{s}' is not one of xvda..xvdp")),
    }
}

/// Parses `00:16:3e:00:00:02`.
pub fn parse_mac(s: &str) -> Result<[u8; 6], String> {
    let parts: Vec<_> = s.split(':').collect();
    let bad = || format!("'{s}' is not a MAC address such as 00:16:3e:00:00:02");
    if parts.len() != 6 {
        return Err(bad());
    }
    let mut m = [0u8; 6];
    for (o, p) in m.iter_mut().zip(parts) {
        if p.len() != 2 {
            return Err(bad());
        }
        *o = u8::from_str_radix(p, 16).map_err(|_| bad())?;
    }
    Ok(m)
}

fn default_kind() -> String {
    "unikernel".into()
}
fn default_fault() -> String {
    "inject".into()
}
fn default_poweroff() -> String {
    "domain".into()
}

/// A file placed in the staging window.
#[derive(Debug, Clone)]
pub struct Module {
    /// Source file on the host.
    pub path: PathBuf,
    /// Name on the boot partition.
    pub disk_name: String,
    /// Load address.
    pub addr: u64,
    /// Size in bytes.
    pub size: u64,
}

/// A resolved domain.
#[derive(Debug, Clone)]
pub struct ResolvedDomain {
    /// Name.
    pub name: String,
    /// Kind.
    pub kind: DomainKind,
    /// pCPUs.
    pub cpus: Vec<u8>,
    /// Physical RAM.
    pub memory: PhysRange,
    /// Kernel module.
    pub kernel: Module,
    /// Kernel text offset + image size.
    pub footprint: u64,
    /// Initrd module.
    pub initrd: Option<Module>,
    /// Command line.
    pub bootargs: String,
    /// Fault policy.
    pub on_fault: FaultPolicy,
    /// Power-off policy.
    pub on_poweroff: PowerOffPolicy,
    /// Autostart, crash and reboot policies.
    pub lifecycle: Lifecycle,
    /// Passthrough devices (host DT paths).
    pub devices: Vec<String>,
    /// Offered the Xen guest ABI.
    pub xen: bool,
    /// PV devices it is the frontend of.
    pub pv: Vec<ResolvedPv>,
}

/// A deployment ready to become a boot image.
#[derive(Debug, Clone)]
pub struct Deployment {
    /// Name.
    pub name: String,
    /// Where it was read from.
    pub file: PathBuf,
    /// Board.
    pub platform: &'static Platform,
    /// Domains.
    pub domains: Vec<ResolvedDomain>,
    /// Hypervisor image module.
    pub hyp: Module,
    /// Where the boot script copies the device tree.
    pub dtb_addr: u64,
    /// Where the boot script itself is loaded.
    pub script_addr: u64,
}

/// Staging layout: DTB working copy, then the script, then the hypervisor, then modules.
pub const DTB_SLOT: u64 = MIB;
/// Space reserved for the boot script.
pub const SCRIPT_SLOT: u64 = MIB;

/// Supplies the built images a deployment names.
pub trait ImageResolver {
    /// Path of the hypervisor image for `platform`, building it if needed.
    fn hypervisor(&mut self, platform: &Platform) -> Result<PathBuf, String>;
    /// Path of the built image for guest crate `name`, building it if needed.
    fn guest(&mut self, name: &str) -> Result<PathBuf, String>;
    /// Path of Debian's arm64 kernel Image of `series` (`kernel = "debian:6.12"`).
    fn linux_kernel(&mut self, series: &str) -> Result<PathBuf, String>;
    /// Path of the control-domain initramfs for `series` (`initrd = "initramfs:6.12"`).
    fn linux_initramfs(&mut self, series: &str) -> Result<PathBuf, String>;
}

fn field_err(file: &Path, i: usize, name: &str, field: &str, msg: impl std::fmt::Display) -> String {
    format!("{}: domain[{i}] \"{name}\".{field}: {msg}", file.display())
}

/// Reads, resolves, places and (unless `unchecked`) validates a deployment.
pub fn load(file: &Path, images: &mut dyn ImageResolver, unchecked: bool) -> Result<Deployment, String> {
    let text = std::fs::read_to_string(file).map_err(|e| format!("{}: cannot read: {e}", file.display()))?;
    load_text(file, &text, images, unchecked)
}

/// [`load`] on the text of `file` (read already): what `cargo xtask fuzz deployment_toml` drives.
pub fn load_text(
    file: &Path,
    text: &str,
    images: &mut dyn ImageResolver,
    unchecked: bool,
) -> Result<Deployment, String> {
    let df: DeploymentFile =
        toml::from_str(text).map_err(|e| format!("{}: {}", file.display(), e.to_string().trim_end()))?;
    let platform = platforms::by_name(&df.platform).ok_or_else(|| {
        let known: Vec<_> = platforms::ALL.iter().map(|p| p.name).collect();
        format!("{}: platform: unknown board '{}' (known: {})", file.display(), df.platform, known.join(", "))
    })?;
    let name = df
        .name
        .clone()
        .unwrap_or_else(|| file.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default());
    if df.domains.is_empty() {
        return Err(format!("{}: domain: the deployment has no [[domain]] table", file.display()));
    }
    let dir = file.parent().unwrap_or(Path::new("."));

    // Staging window layout.
    let st = platform.staging;
    let dtb_addr = st.base;
    let script_addr = st.base + DTB_SLOT;
    let mut next = st.base + DTB_SLOT + SCRIPT_SLOT;
    let mut place = |path: &Path, disk_name: String| -> Result<Module, String> {
        let size = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?.len();
        let addr = next.next_multiple_of(2 * MIB);
        next = addr + size;
        Ok(Module { path: path.to_path_buf(), disk_name, addr, size })
    };
    // The hypervisor is loaded where `booti` runs it (RAM base + its header's text_offset, the
    // start of its window): loaded anywhere else, U-Boot would first move all of it, BSS
    // included (12 MiB, 0.1 s under QEMU).
    let hyp_image = images.hypervisor(platform)?;
    let hyp_size = std::fs::metadata(&hyp_image).map_err(|e| format!("{}: {e}", hyp_image.display()))?.len();
    if hyp_size > platform.hyp_size {
        return Err(format!("{}: {hyp_size} bytes do not fit the hypervisor's window", hyp_image.display()));
    }
    let hyp = Module { path: hyp_image, disk_name: "ferrum.img".into(), addr: platform.hyp_base, size: hyp_size };

    // Free RAM for domains without a fixed base: board RAM minus hypervisor and staging.
    let mut cursor = platform.ram.iter().map(|w| w.base).min().unwrap_or(0);
    let reserved = [platform.hyp_window(), platform.staging];

    let mut domains = Vec::new();
    for (i, d) in df.domains.iter().enumerate() {
        let ferr = |field: &str, msg: &dyn std::fmt::Display| field_err(file, i, &d.name, field, msg);
        let kind = DomainKind::parse(&d.kind)
            .ok_or_else(|| ferr("kind", &format!("'{}' is not one of: unikernel, linux", d.kind)))?;
        let on_fault = FaultPolicy::parse(&d.on_fault)
            .ok_or_else(|| ferr("on_fault", &format!("'{}' is not one of: inject, stop", d.on_fault)))?;
        let on_poweroff = PowerOffPolicy::parse(&d.on_poweroff)
            .ok_or_else(|| ferr("on_poweroff", &format!("'{}' is not one of: domain, board", d.on_poweroff)))?;
        let mut lifecycle = Lifecycle { autostart: d.autostart.unwrap_or(true), ..Lifecycle::default() };
        if let Some(c) = &d.on_crash {
            lifecycle.on_crash = CrashPolicy::parse(c)
                .ok_or_else(|| ferr("on_crash", &format!("'{c}' is not one of: stop, restart, board")))?;
        }
        if let Some(r) = &d.on_reboot {
            lifecycle.on_reboot = RebootPolicy::parse(r)
                .ok_or_else(|| ferr("on_reboot", &format!("'{r}' is not one of: restart, stop")))?;
        }
        if let Some(n) = d.restart_limit {
            lifecycle.restart_limit = n;
        }
        if let Some(w) = &d.restart_window {
            lifecycle.restart_window = plan::parse_seconds(w).ok_or_else(|| {
                ferr("restart_window", &format!("'{w}' is not a duration such as \"60s\", \"5m\" or \"1h\""))
            })?;
        }
        let mut cpus = Vec::new();
        for &c in &d.cpus {
            cpus.push(
                u8::try_from(c).map_err(|_| ferr("cpus", &format!("physical CPU {c} does not exist on this board")))?,
            );
        }
        let size = d.memory.value().map_err(|e| ferr("memory", &e))?;
        let kernel_path = if let Some(g) = d.kernel.strip_prefix("guest:") {
            images.guest(g).map_err(|e| ferr("kernel", &e))?
        } else if let Some(series) = d.kernel.strip_prefix("debian:") {
            images.linux_kernel(series).map_err(|e| ferr("kernel", &e))?
        } else {
            let p = dir.join(&d.kernel);
            if !p.is_file() {
                return Err(ferr("kernel", &format!("file not found: {}", p.display())));
            }
            p
        };
        let head =
            std::fs::read(&kernel_path).map_err(|e| ferr("kernel", &format!("{}: {e}", kernel_path.display())))?;
        let hdr =
            hyp_core::image::parse(&head).map_err(|e| ferr("kernel", &format!("{}: {e}", kernel_path.display())))?;
        let kernel = place(&kernel_path, format!("d{i}-kernel.img")).map_err(|e| ferr("kernel", &e))?;
        let footprint = hdr.footprint(kernel.size);
        let initrd = match &d.initrd {
            None => None,
            Some(spec) if spec.starts_with("initramfs:") => {
                let p = images.linux_initramfs(&spec["initramfs:".len()..]).map_err(|e| ferr("initrd", &e))?;
                Some(place(&p, format!("d{i}-initrd.img")).map_err(|e| ferr("initrd", &e))?)
            }
            Some(p) => {
                let p = dir.join(p);
                if !p.is_file() {
                    return Err(ferr("initrd", &format!("file not found: {}", p.display())));
                }
                Some(place(&p, format!("d{i}-initrd.img")).map_err(|e| ferr("initrd", &e))?)
            }
        };
        let base = match &d.memory_base {
            Some(b) => b.value().map_err(|e| ferr("memory_base", &e))?,
            None => {
                // First fit after the previous automatic placement, skipping reserved regions.
                let mut b = cursor.next_multiple_of(2 * MIB);
                loop {
                    let r = PhysRange::new(b, size);
                    match reserved.iter().find(|w| r.overlaps(&PhysRange::new(w.base, w.size))) {
                        Some(w) => b = (w.base + w.size).next_multiple_of(2 * MIB),
                        None => break,
                    }
                }
                cursor = b + size;
                b
            }
        };
        let mut pv = Vec::new();
        for (k, v) in d.vbd.iter().enumerate() {
            let f = format!("vbd[{k}]");
            let devid = match &v.vdev {
                Some(n) => parse_vdev(n).map_err(|e| ferr(&format!("{f}.vdev"), &e))?,
                None => (202 << 8) | ((k as u32) << 4),
            };
            let writable = match v.mode.as_deref() {
                None | Some("w") => true,
                Some("r") => false,
                Some(m) => return Err(ferr(&format!("{f}.mode"), &format!("'{m}' is not one of: w, r"))),
            };
            pv.push(ResolvedPv {
                kind: PvKind::Vbd,
                backend: v.backend.clone(),
                devid,
                target: v.target.clone(),
                writable,
                mac: [0; 6],
            });
        }
        for (k, v) in d.vif.iter().enumerate() {
            let f = format!("vif[{k}]");
            let mac = match &v.mac {
                Some(m) => parse_mac(m).map_err(|e| ferr(&format!("{f}.mac"), &e))?,
                None => [0x00, 0x16, 0x3e, 0x00, (i + 1) as u8, k as u8],
            };
            let target = v.bridge.clone().unwrap_or_else(|| "xenbr0".into());
            pv.push(ResolvedPv {
                kind: PvKind::Vif,
                backend: v.backend.clone(),
                devid: k as u32,
                target,
                writable: true,
                mac,
            });
        }
        domains.push(ResolvedDomain {
            name: d.name.clone(),
            kind,
            cpus,
            memory: PhysRange::new(base, size),
            kernel,
            footprint,
            initrd,
            bootargs: d.bootargs.clone(),
            on_fault,
            on_poweroff,
            lifecycle,
            devices: d.devices.clone(),
            xen: d.xen.unwrap_or(kind == DomainKind::Linux),
            pv,
        });
    }
    if next > st.base + st.size {
        return Err(format!(
            "{}: the images need {} MiB of staging space, the {} board has {} MiB",
            file.display(),
            (next - st.base) >> 20,
            platform.name,
            st.size >> 20
        ));
    }
    let dep = Deployment { name, file: file.to_path_buf(), platform, domains, hyp, dtb_addr, script_addr };
    if !unchecked {
        validate(&dep)?;
    }
    Ok(dep)
}

/// Bytes of domain `i`'s kernel slot in the staging window: up to the next module or the
/// window's end (as the hypervisor computes it for `hypctl update`).
pub fn kernel_slot(dep: &Deployment, i: usize) -> u64 {
    let k = dep.domains[i].kernel.addr;
    let st = dep.platform.staging;
    dep.domains
        .iter()
        .flat_map(|d| [Some(d.kernel.addr), d.initrd.as_ref().map(|m| m.addr)])
        .flatten()
        .filter(|&a| a > k)
        .fold(st.base + st.size, u64::min)
        - k
}

/// Runs the shared plan validation on a resolved deployment.
pub fn validate(dep: &Deployment) -> Result<(), String> {
    let p = dep.platform;
    let mut plan = Plan::default();
    for d in &dep.domains {
        let pcpus =
            List::from_slice(&d.cpus).ok_or_else(|| field_err(&dep.file, 0, &d.name, "cpus", Problem::TooManyCpus))?;
        let dom = Domain {
            name: &d.name,
            kind: d.kind,
            pcpus,
            memory: d.memory,
            kernel: PhysRange::new(d.kernel.addr, d.kernel.size),
            initrd: d.initrd.as_ref().map(|m| PhysRange::new(m.addr, m.size)),
            kernel_footprint: d.footprint,
            bootargs: &d.bootargs,
            on_fault: d.on_fault,
            on_poweroff: d.on_poweroff,
            lifecycle: d.lifecycle,
            devices: List::from_slice(&d.devices.iter().map(String::as_str).collect::<Vec<_>>())
                .ok_or_else(|| field_err(&dep.file, 0, &d.name, "devices", Problem::TooManyDevices))?,
            xen: d.xen,
            sha256: None,
            pv: List::from_slice(
                &d.pv
                    .iter()
                    .map(|p| PvDevice {
                        kind: p.kind,
                        backend: &p.backend,
                        devid: p.devid,
                        target: &p.target,
                        writable: p.writable,
                        mac: p.mac,
                    })
                    .collect::<Vec<_>>(),
            )
            .ok_or_else(|| field_err(&dep.file, 0, &d.name, "vbd", Problem::TooManyPvDevices))?,
        };
        plan.domains.push(dom).map_err(|_| format!("{}: domain: {}", dep.file.display(), Problem::TooManyDomains))?;
    }
    let ram: Vec<PhysRange> = p.ram.iter().map(|w| PhysRange::new(w.base, w.size)).collect();
    let limits = BoardLimits {
        ram: &ram,
        cpus: p.cpus,
        hyp: PhysRange::new(p.hyp_base, p.hyp_size),
        staging: PhysRange::new(p.staging.base, p.staging.size),
    };
    plan::validate(&plan, &limits).map_err(|e| {
        let other = |j: usize| dep.domains.get(j).map_or(String::new(), |d| format!(" (\"{}\")", d.name));
        let extra = match e.problem {
            Problem::DuplicateName(j) | Problem::CpuUsedTwice(_, j) | Problem::OverlapsDomain(j, _) => other(j),
            _ => String::new(),
        };
        match e.domain {
            Some(i) => field_err(&dep.file, i, &dep.domains[i].name, e.field, format!("{}{extra}", e.problem)),
            None => format!("{}: {}: {}", dep.file.display(), e.field, e.problem),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("32M").unwrap(), 32 * MIB);
        assert_eq!(parse_size("32MiB").unwrap(), 32 * MIB);
        assert_eq!(parse_size("1G").unwrap(), 1 << 30);
        assert_eq!(parse_size("0x5000_0000").unwrap(), 0x5000_0000);
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert!(parse_size("lots").is_err());
        assert!(parse_size("99999999999999G").is_err());
    }
}

/// Every file in `tests/deployments` names the error it must produce on its first line
/// (`# expect-error: …`); files without that line must load.
#[cfg(test)]
mod fixtures {
    use super::*;

    struct FakeGuests(PathBuf);

    impl ImageResolver for FakeGuests {
        fn hypervisor(&mut self, _platform: &Platform) -> Result<PathBuf, String> {
            Ok(self.0.clone())
        }
        fn guest(&mut self, _name: &str) -> Result<PathBuf, String> {
            Ok(self.0.clone())
        }
        fn linux_kernel(&mut self, _series: &str) -> Result<PathBuf, String> {
            Ok(self.0.clone())
        }
        fn linux_initramfs(&mut self, _series: &str) -> Result<PathBuf, String> {
            Ok(self.0.clone())
        }
    }

    fn fake_image(dir: &Path) -> PathBuf {
        let mut img = vec![0u8; 8192];
        img[16..24].copy_from_slice(&0x4000u64.to_le_bytes());
        img[24..32].copy_from_slice(&2u64.to_le_bytes());
        img[56..60].copy_from_slice(&hyp_core::image::MAGIC.to_le_bytes());
        let p = dir.join("fake.img");
        std::fs::write(&p, img).unwrap();
        p
    }

    #[test]
    fn deployment_fixtures() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let tmp = std::env::temp_dir().join(format!("ferrum-fixtures-{}", std::process::id()));
        std::fs::create_dir_all(&tmp).unwrap();
        let img = fake_image(&tmp);
        let mut checked = 0;
        for dir in ["tests/deployments", "deployments"] {
            for e in std::fs::read_dir(root.join(dir)).unwrap().flatten() {
                let p = e.path();
                if p.extension().is_none_or(|x| x != "toml") {
                    continue;
                }
                let text = std::fs::read_to_string(&p).unwrap();
                let expect = text.lines().next().and_then(|l| l.strip_prefix("# expect-error: "));
                let r = load(&p, &mut FakeGuests(img.clone()), false);
                match (expect, r) {
                    (None, Ok(_)) => {}
                    (None, Err(e)) => panic!("{}: should load, got: {e}", p.display()),
                    (Some(want), Ok(_)) => panic!("{}: should fail with '{want}'", p.display()),
                    (Some(want), Err(e)) => {
                        assert!(e.contains(want), "{}:\n  want: {want}\n  got:  {e}", p.display());
                        assert!(e.starts_with(&p.display().to_string()), "error must name the file: {e}");
                    }
                }
                checked += 1;
            }
        }
        assert!(checked >= 10);
        std::fs::remove_dir_all(&tmp).unwrap();
    }
}
