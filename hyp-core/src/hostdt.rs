//! Reading the host device tree that U-Boot hands over: the board facts (RAM, CPUs, GIC, PSCI
//! conduit, console UART) and the deployment's domain nodes under `/chosen`.
//!
//! Domain nodes follow Xen's dom0less binding where it has names (`compatible = "xen,domain"`,
//! `cpus`, `memory` in KiB, `multiboot,kernel` / `multiboot,ramdisk` module nodes with `reg` and
//! `bootargs`), extended with `ferrum,*` properties for what Xen lacks (name, kind, physical
//! CPUs, physical RAM base, policies). See docs/deployment.md.
//!
//! Everything read here is untrusted input until `plan::validate` accepts it; the parser itself
//! never panics on a malformed tree, it reports the property at fault.

use crate::addr::PhysRange;
use crate::image::ImageError;
use crate::list::List;
use crate::passthrough::translated_regs;
use crate::plan::{
    CrashPolicy, Domain, DomainKind, FaultPolicy, Lifecycle, Plan, PlanError, PowerOffPolicy, Problem, PvDevice,
    PvKind, RebootPolicy, MAX_DOMAINS,
};
use alloc::string::String;
use fdt::node::FdtNode;
use fdt::Fdt;
use platforms::{GicVersion, UartKind};

/// Most physical CPUs the hypervisor supports.
pub const MAX_CPUS: usize = 8;
/// Most RAM banks read from `/memory`.
pub const MAX_BANKS: usize = 8;
/// The first interrupt ID past the SPIs (1020..1023 are special): a described SPI at or above
/// it is no interrupt the hypervisor can route.
pub const MAX_SPI_INTID: u32 = 1020;

/// The GIC as the device tree describes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GicInfo {
    /// Model name for messages ("GIC-400", "GICv3", …).
    pub name: &'static str,
    /// Architecture version.
    pub version: GicVersion,
    /// Distributor base.
    pub dist: u64,
    /// GICv2: CPU interface base; GICv3: first redistributor region base.
    pub cpu_or_redist: u64,
    /// GICv2 virtual interface control (GICH), if described.
    pub hyp: Option<u64>,
    /// GICv2 virtual CPU interface (GICV), if described.
    pub vcpu: Option<u64>,
}

/// How a physical CPU is started, from its `enable-method`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CpuStart {
    /// `psci`: PSCI `CPU_ON`.
    Psci,
    /// `spin-table`: write the entry point to `cpu-release-addr`, then `sev`.
    SpinTable(u64),
    /// No or an unknown method (the boot CPU usually has none).
    #[default]
    Unknown,
}

/// How firmware PSCI is called.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Conduit {
    /// `smc #0`.
    Smc,
    /// `hvc #0`.
    Hvc,
}

/// Board facts from the host tree.
#[derive(Clone, Copy, Debug)]
pub struct BoardInfo<'a> {
    /// `/model`.
    pub model: &'a str,
    /// RAM banks from the memory nodes.
    pub memory: List<PhysRange, MAX_BANKS>,
    /// MPIDR of each CPU, in tree order.
    pub cpus: List<u64, MAX_CPUS>,
    /// The GIC.
    pub gic: Option<GicInfo>,
    /// PSCI conduit, if firmware offers PSCI.
    pub psci: Option<Conduit>,
    /// How each CPU (same order as `cpus`) is started, from its `enable-method`.
    pub cpu_start: List<CpuStart, MAX_CPUS>,
    /// The `stdout-path` UART, if it is a model the hypervisor drives (base translated through
    /// the parents' `ranges`).
    pub uart: Option<(u64, UartKind)>,
    /// Path of the `stdout-path` UART node (also when its model is not supported).
    pub uart_path: Option<&'a str>,
    /// Interrupt ID of the `stdout-path` UART (an SPI, below [`MAX_SPI_INTID`]), if described.
    pub uart_irq: Option<u32>,
    /// `/chosen/ferrum,deployment`.
    pub deployment: &'a str,
}

fn regs<'a>(node: &FdtNode<'_, 'a>, addr_cells: usize, size_cells: usize) -> impl Iterator<Item = (u64, u64)> + 'a {
    let v = node.property("reg").map_or(&[][..], |p| p.value);
    let stride = 4 * (addr_cells + size_cells);
    let n = v.len().checked_div(stride).unwrap_or(0);
    (0..n).map(move |i| {
        let e = &v[i * stride..(i + 1) * stride];
        (cells(&e[..4 * addr_cells]), cells(&e[4 * addr_cells..]))
    })
}

pub(crate) fn cells(b: &[u8]) -> u64 {
    b.chunks(4).fold(0u64, |acc, c| (acc << 32) | u64::from(u32::from_be_bytes([c[0], c[1], c[2], c[3]])))
}

fn cell_prop(node: &FdtNode<'_, '_>, name: &str, default: usize) -> usize {
    node.property(name).and_then(|p| p.as_usize()).unwrap_or(default)
}

/// Visits every node depth-first with its full path; stops at the first `Some`.
pub fn find_node_path<'a, T>(fdt: &Fdt<'a>, f: &mut dyn FnMut(&str, &FdtNode<'_, 'a>) -> Option<T>) -> Option<T> {
    fn walk<'a, T>(
        path: &mut String,
        node: FdtNode<'_, 'a>,
        depth: usize,
        f: &mut dyn FnMut(&str, &FdtNode<'_, 'a>) -> Option<T>,
    ) -> Option<T> {
        if let Some(v) = f(if path.is_empty() { "/" } else { path }, &node) {
            return Some(v);
        }
        if depth >= 7 {
            return None; // deeper than anything `passthrough` translates
        }
        for c in node.children() {
            let len = path.len();
            path.push('/');
            path.push_str(c.name);
            let r = walk(path, c, depth + 1, f);
            path.truncate(len);
            if r.is_some() {
                return r;
            }
        }
        None
    }
    walk(&mut String::new(), fdt.find_node("/")?, 0, f)
}

const GICV3_COMPAT: &[&str] = &["arm,gic-v3"];
const GICV2_COMPAT: &[&str] = &["arm,gic-400", "arm,cortex-a15-gic", "arm,cortex-a9-gic", "arm,cortex-a7-gic"];

/// Path of the GIC node [`parse_board`] reads.
pub fn gic_path(fdt: &Fdt<'_>) -> Option<String> {
    path_of_compatible(fdt, GICV3_COMPAT).or_else(|| path_of_compatible(fdt, GICV2_COMPAT))
}

/// Path of the first node compatible with one of `compat` (and not disabled).
pub fn path_of_compatible(fdt: &Fdt<'_>, compat: &[&str]) -> Option<String> {
    find_node_path(fdt, &mut |path, n| {
        let ok = n.property("status").and_then(|p| p.as_str()).is_none_or(|s| s == "okay" || s == "ok");
        (ok && n.compatible().is_some_and(|c| c.all().any(|x| compat.contains(&x)))).then(|| String::from(path))
    })
}

/// The node path `stdout-path` names (an alias is resolved through `/aliases`).
fn stdout_path<'a>(fdt: &Fdt<'a>) -> Option<&'a str> {
    let chosen = fdt.find_node("/chosen")?;
    let v = chosen.property("stdout-path").or_else(|| chosen.property("linux,stdout-path"))?.as_str()?;
    let v = v.split(':').next()?;
    if v.starts_with('/') {
        return Some(v);
    }
    fdt.find_node("/aliases")?.property(v)?.as_str()
}

/// The UART an `/aliases` entry (such as `serial1`) names, if it is a model the hypervisor
/// drives and not disabled: its node path, translated base and model.
pub fn alias_uart<'a>(fdt: &Fdt<'a>, alias: &str) -> Option<(&'a str, u64, UartKind)> {
    let path = fdt.find_node("/aliases")?.property(alias)?.as_str()?;
    let node = fdt.find_node(path)?;
    if node.property("status").and_then(|p| p.as_str()).is_some_and(|s| s != "okay" && s != "ok") {
        return None;
    }
    let kind = uart_kind(&node)?;
    let base = translated_regs::<2>(fdt, path).ok()?.first()?.base.0;
    Some((path, base, kind))
}

fn uart_kind(n: &FdtNode<'_, '_>) -> Option<UartKind> {
    n.compatible()?.all().find_map(|c| match c {
        "arm,pl011" => Some(UartKind::Pl011),
        "brcm,bcm2835-aux-uart" => Some(UartKind::MiniUart),
        _ => None,
    })
}

/// Reads the board facts. Memory nodes use the root's `#address-cells`/`#size-cells`; the GIC
/// and the console UART may sit behind buses (`/soc` on the Pi 4) and are translated through
/// their `ranges`.
pub fn parse_board<'a>(fdt: &Fdt<'a>) -> BoardInfo<'a> {
    let rootnode = fdt.find_node("/");
    let (ac, sc) = rootnode.map_or((2, 1), |n| (cell_prop(&n, "#address-cells", 2), cell_prop(&n, "#size-cells", 1)));
    let mut memory = List::new();
    for node in fdt.all_nodes() {
        let is_mem = node.property("device_type").and_then(|p| p.as_str()) == Some("memory");
        if is_mem && node.property("status").and_then(|p| p.as_str()).is_none_or(|s| s == "okay") {
            for (b, s) in regs(&node, ac, sc) {
                if s > 0 {
                    let _ = memory.push(PhysRange::new(b, s));
                }
            }
        }
    }
    let mut cpus = List::new();
    let mut cpu_start = List::new();
    if let Some(cpus_node) = fdt.find_node("/cpus") {
        let cac = cell_prop(&cpus_node, "#address-cells", 1);
        for c in cpus_node.children() {
            if c.property("device_type").and_then(|p| p.as_str()) == Some("cpu") {
                if let Some((mpidr, _)) = regs(&c, cac, 0).next() {
                    let start = match c.property("enable-method").and_then(|p| p.as_str()) {
                        Some("psci") => CpuStart::Psci,
                        Some("spin-table") => c
                            .property("cpu-release-addr")
                            .map(|p| p.value)
                            .filter(|v| v.len() == 8 || v.len() == 4)
                            .map_or(CpuStart::Unknown, |v| CpuStart::SpinTable(cells(v))),
                        _ => CpuStart::Unknown,
                    };
                    if cpus.push(mpidr).is_ok() {
                        let _ = cpu_start.push(start);
                    }
                }
            }
        }
    }
    let gic_at = |compat: &[&str], version: GicVersion, name: &'static str| -> Option<GicInfo> {
        let path = path_of_compatible(fdt, compat)?;
        let r = translated_regs::<8>(fdt, &path).ok()?;
        // GICv2: GICD, GICC, GICH, GICV. GICv3: GICD, GICR, GICC, GICH, GICV.
        let (h, v) = if version == GicVersion::V3 { (3, 4) } else { (2, 3) };
        r.first().map(|d| GicInfo {
            name,
            version,
            dist: d.base.0,
            cpu_or_redist: r.get(1).map_or(0, |x| x.base.0),
            hyp: r.get(h).map(|x| x.base.0),
            vcpu: r.get(v).map(|x| x.base.0),
        })
    };
    let gic = gic_at(GICV3_COMPAT, GicVersion::V3, "GICv3")
        .or_else(|| gic_at(&["arm,gic-400"], GicVersion::V2, "GIC-400"))
        .or_else(|| gic_at(GICV2_COMPAT, GicVersion::V2, "GICv2"));
    let psci = fdt
        .find_compatible(&["arm,psci-1.0", "arm,psci-0.2", "arm,psci"])
        .and_then(|n| n.property("method").and_then(|p| p.as_str()))
        .and_then(|m| match m {
            "smc" => Some(Conduit::Smc),
            "hvc" => Some(Conduit::Hvc),
            _ => None,
        });
    let uart_path = stdout_path(fdt);
    let uart_node = uart_path.and_then(|p| fdt.find_node(p));
    let uart = uart_path
        .zip(uart_node.as_ref().and_then(uart_kind))
        .and_then(|(p, kind)| translated_regs::<2>(fdt, p).ok().and_then(|r| r.first().map(|r| (r.base.0, kind))));
    let deployment =
        fdt.find_node("/chosen").and_then(|c| c.property("ferrum,deployment")).and_then(|p| p.as_str()).unwrap_or("");
    let uart_irq = uart_node
        .and_then(|n| n.property("interrupts").map(|p| p.value))
        .filter(|v| v.len() >= 12 && v[..4] == [0, 0, 0, 0])
        .and_then(|v| u32::from_be_bytes([v[4], v[5], v[6], v[7]]).checked_add(32))
        .filter(|&intid| intid < MAX_SPI_INTID);
    // Not `fdt.root().model()`: it panics on a tree without a UTF-8 `/model`.
    let model = fdt.find_node("/").and_then(|r| r.property("model")).and_then(|p| p.as_str()).unwrap_or("");
    BoardInfo { model, memory, cpus, cpu_start, gic, psci, uart, uart_path, uart_irq, deployment }
}

/// Reads the domain nodes of `/chosen` into a plan, in the order of their unit addresses
/// (`domain@0`, `domain@1`, …; boot loaders may add nodes in any order). `footprint` reads the
/// arm64 Image header of a kernel module (from memory, on the target) and returns text offset +
/// image size.
pub fn parse_plan<'a>(
    fdt: &Fdt<'a>,
    footprint: &dyn Fn(PhysRange) -> Result<u64, ImageError>,
) -> Result<Plan<'a>, PlanError> {
    let mut plan = Plan::default();
    let mut order: List<u64, MAX_DOMAINS> = List::new();
    let Some(chosen) = fdt.find_node("/chosen") else {
        return Ok(plan);
    };
    if let Some(p) = chosen.property("ferrum,update-key") {
        plan.update_key = Some(<[u8; 32]>::try_from(p.value).map_err(|_| PlanError {
            domain: None,
            field: "update-key",
            problem: Problem::BadProperty("ferrum,update-key"),
        })?);
    }
    for node in chosen.children() {
        let is_domain = node.compatible().is_some_and(|c| c.all().any(|s| s == "xen,domain"));
        if !is_domain {
            continue;
        }
        let i = plan.domains.len();
        if i == MAX_DOMAINS {
            return Err(PlanError { domain: Some(i), field: "domain", problem: Problem::TooManyDomains });
        }
        let d = parse_domain(&node, i, footprint)?;
        let unit = node.name.split_once('@').and_then(|(_, u)| u64::from_str_radix(u, 16).ok()).unwrap_or(u64::MAX);
        let _ = plan.domains.push(d);
        let _ = order.push(unit);
    }
    // Stable insertion sort by unit address (at most MAX_DOMAINS entries).
    for i in 1..plan.domains.len() {
        let mut j = i;
        while j > 0 && order[j - 1] > order[j] {
            order.swap(j - 1, j);
            plan.domains.swap(j - 1, j);
            j -= 1;
        }
    }
    Ok(plan)
}

fn parse_domain<'a>(
    node: &FdtNode<'_, 'a>,
    i: usize,
    footprint: &dyn Fn(PhysRange) -> Result<u64, ImageError>,
) -> Result<Domain<'a>, PlanError> {
    let bad = |field: &'static str, prop: &'static str| PlanError {
        domain: Some(i),
        field,
        problem: Problem::BadProperty(prop),
    };
    let s = |prop: &str| node.property(prop).and_then(|p| p.as_str());
    let name = s("ferrum,name").unwrap_or(node.name);
    let kind = match s("ferrum,kind") {
        None => DomainKind::Unikernel,
        Some(k) => DomainKind::parse(k).ok_or(bad("kind", "ferrum,kind"))?,
    };
    let on_fault = match s("ferrum,on-fault") {
        None => FaultPolicy::default(),
        Some(k) => FaultPolicy::parse(k).ok_or(bad("on_fault", "ferrum,on-fault"))?,
    };
    let on_poweroff = match s("ferrum,on-poweroff") {
        None => PowerOffPolicy::default(),
        Some(k) => PowerOffPolicy::parse(k).ok_or(bad("on_poweroff", "ferrum,on-poweroff"))?,
    };
    let mut lifecycle = Lifecycle::default();
    match s("ferrum,autostart") {
        None | Some("yes") => {}
        Some("no") => lifecycle.autostart = false,
        Some(_) => return Err(bad("autostart", "ferrum,autostart")),
    }
    if let Some(k) = s("ferrum,on-crash") {
        lifecycle.on_crash = CrashPolicy::parse(k).ok_or(bad("on_crash", "ferrum,on-crash"))?;
    }
    if let Some(k) = s("ferrum,on-reboot") {
        lifecycle.on_reboot = RebootPolicy::parse(k).ok_or(bad("on_reboot", "ferrum,on-reboot"))?;
    }
    let u32_prop = |prop: &'static str, field: &'static str| -> Result<Option<u32>, PlanError> {
        match node.property(prop) {
            None => Ok(None),
            Some(p) if p.value.len() == 4 => {
                Ok(Some(u32::from_be_bytes([p.value[0], p.value[1], p.value[2], p.value[3]])))
            }
            Some(_) => Err(bad(field, prop)),
        }
    };
    if let Some(n) = u32_prop("ferrum,restart-limit", "restart_limit")? {
        lifecycle.restart_limit = n;
    }
    if let Some(n) = u32_prop("ferrum,restart-window", "restart_window")? {
        lifecycle.restart_window = n;
    }
    let xen = match s("ferrum,xen") {
        None | Some("no") => false,
        Some("yes") => true,
        Some(_) => return Err(bad("xen", "ferrum,xen")),
    };
    let nr = node.property("cpus").and_then(|p| p.as_usize()).ok_or(bad("cpus", "cpus"))?;
    let pcpus_raw = node.property("ferrum,pcpus").ok_or(bad("cpus", "ferrum,pcpus"))?.value;
    if pcpus_raw.len() % 4 != 0 || pcpus_raw.len() / 4 != nr {
        return Err(bad("cpus", "ferrum,pcpus"));
    }
    let mut pcpus = List::new();
    for c in pcpus_raw.chunks(4) {
        let v = u32::from_be_bytes([c[0], c[1], c[2], c[3]]);
        let v = u8::try_from(v).map_err(|_| bad("cpus", "ferrum,pcpus"))?;
        pcpus.push(v).map_err(|_| PlanError { domain: Some(i), field: "cpus", problem: Problem::TooManyCpus })?;
    }
    let kib = node
        .property("memory")
        .map(|p| p.value)
        .filter(|v| v.len() == 8 || v.len() == 4)
        .map(cells)
        .ok_or(bad("memory", "memory"))?;
    let base = node
        .property("ferrum,memory-base")
        .map(|p| p.value)
        .filter(|v| v.len() == 8)
        .map(cells)
        .ok_or(bad("memory_base", "ferrum,memory-base"))?;
    let size = kib.checked_mul(1024).ok_or(bad("memory", "memory"))?;
    let ac = cell_prop(node, "#address-cells", 2);
    let sc = cell_prop(node, "#size-cells", 2);
    if !(1..=2).contains(&ac) || !(1..=2).contains(&sc) {
        return Err(bad("kernel", "#address-cells"));
    }
    let mut kernel = None;
    let mut initrd = None;
    let mut bootargs = "";
    let mut pv = List::new();
    for m in node.children() {
        let Some(compat) = m.compatible() else { continue };
        if let Some(kind) = compat.all().find_map(|c| match c {
            "ferrum,vbd" => Some(PvKind::Vbd),
            "ferrum,vif" => Some(PvKind::Vif),
            _ => None,
        }) {
            let field = kind.as_str();
            let bad = |prop: &'static str| PlanError { domain: Some(i), field, problem: Problem::BadProperty(prop) };
            let ms = |prop: &'static str| m.property(prop).and_then(|p| p.as_str()).ok_or(bad(prop));
            let devid = m
                .property("ferrum,devid")
                .map(|p| p.value)
                .filter(|v| v.len() == 4)
                .map(cells)
                .ok_or(bad("ferrum,devid"))?;
            let mut dev = PvDevice {
                kind,
                backend: ms("ferrum,backend")?,
                devid: devid as u32,
                target: ms("ferrum,target")?,
                ..Default::default()
            };
            match kind {
                PvKind::Vbd => {
                    dev.writable = match ms("ferrum,mode")? {
                        "w" => true,
                        "r" => false,
                        _ => return Err(bad("ferrum,mode")),
                    }
                }
                PvKind::Vif => {
                    let mac = m.property("local-mac-address").map(|p| p.value).ok_or(bad("local-mac-address"))?;
                    dev.mac = mac.try_into().map_err(|_| bad("local-mac-address"))?;
                }
            }
            pv.push(dev).map_err(|_| PlanError { domain: Some(i), field, problem: Problem::TooManyPvDevices })?;
            continue;
        }
        let r = regs(&m, ac, sc).next().map(|(b, s)| PhysRange::new(b, s));
        if compat.all().any(|c| c == "multiboot,kernel") {
            kernel = Some(r.ok_or(bad("kernel", "reg"))?);
            bootargs = m.property("bootargs").and_then(|p| p.as_str()).unwrap_or("");
        } else if compat.all().any(|c| c == "multiboot,ramdisk") {
            initrd = Some(r.ok_or(bad("initrd", "reg"))?);
        }
    }
    let kernel = kernel.ok_or(bad("kernel", "multiboot,kernel"))?;
    let mut devices = List::new();
    if let Some(p) = node.property("ferrum,passthrough") {
        let v = p.value.strip_suffix(&[0]).ok_or(bad("devices", "ferrum,passthrough"))?;
        for path in v.split(|&b| b == 0) {
            let path = core::str::from_utf8(path).map_err(|_| bad("devices", "ferrum,passthrough"))?;
            devices.push(path).map_err(|_| PlanError {
                domain: Some(i),
                field: "devices",
                problem: Problem::TooManyDevices,
            })?;
        }
    }
    let kernel_footprint =
        footprint(kernel).map_err(|e| PlanError { domain: Some(i), field: "kernel", problem: Problem::BadImage(e) })?;
    Ok(Domain {
        name,
        kind,
        pcpus,
        memory: PhysRange::new(base, size),
        kernel,
        initrd,
        kernel_footprint,
        bootargs,
        on_fault,
        on_poweroff,
        lifecycle,
        devices,
        xen,
        pv,
        sha256: match node.property("ferrum,sha256") {
            None => None,
            Some(p) => Some(<[u8; 32]>::try_from(p.value).map_err(|_| bad("sha256", "ferrum,sha256"))?),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fdtw::FdtWriter;
    use alloc::vec::Vec;

    fn host_tree(domain: impl Fn(&mut FdtWriter)) -> Vec<u8> {
        let mut w = FdtWriter::new();
        w.begin_node("");
        w.prop_u32("#address-cells", 2);
        w.prop_u32("#size-cells", 2);
        w.prop_str("model", "linux,dummy-virt");
        w.begin_node("memory@40000000");
        w.prop_str("device_type", "memory");
        w.prop_u64s("reg", &[0x4000_0000, 0x8000_0000]);
        w.end_node();
        w.begin_node("cpus");
        w.prop_u32("#address-cells", 1);
        w.prop_u32("#size-cells", 0);
        for i in 0..4 {
            w.begin_node(&alloc::format!("cpu@{i}"));
            w.prop_str("device_type", "cpu");
            w.prop_u32("reg", i);
            w.end_node();
        }
        w.end_node();
        w.begin_node("psci");
        w.prop_strs("compatible", &["arm,psci-1.0", "arm,psci-0.2", "arm,psci"]);
        w.prop_str("method", "smc");
        w.end_node();
        w.begin_node("intc@8000000");
        w.prop_strs("compatible", &["arm,cortex-a15-gic"]);
        w.prop_u64s("reg", &[0x800_0000, 0x1_0000, 0x801_0000, 0x1_0000, 0x803_0000, 0x1_0000, 0x804_0000, 0x1_0000]);
        w.end_node();
        w.begin_node("pl011@9000000");
        w.prop_strs("compatible", &["arm,pl011", "arm,primecell"]);
        w.prop_u64s("reg", &[0x900_0000, 0x1000]);
        w.end_node();
        w.begin_node("pl011@9040000");
        w.prop_strs("compatible", &["arm,pl011", "arm,primecell"]);
        w.prop_u64s("reg", &[0x904_0000, 0x1000]);
        w.end_node();
        w.begin_node("aliases");
        w.prop_str("serial0", "/pl011@9000000");
        w.prop_str("serial1", "/pl011@9040000");
        w.prop_str("serial2", "/nothing@0");
        w.end_node();
        w.begin_node("chosen");
        w.prop_str("stdout-path", "/pl011@9000000");
        w.prop_str("ferrum,deployment", "default");
        domain(&mut w);
        w.end_node();
        w.end_node();
        w.finish(0).unwrap()
    }

    fn good_domain(w: &mut FdtWriter) {
        w.begin_node("domain@0");
        w.prop_str("compatible", "xen,domain");
        w.prop_u32("#address-cells", 2);
        w.prop_u32("#size-cells", 2);
        w.prop_str("ferrum,name", "guest-a");
        w.prop_str("ferrum,kind", "unikernel");
        w.prop_u32("cpus", 2);
        w.prop_cells("ferrum,pcpus", &[1, 2]);
        w.prop_u64s("memory", &[32 * 1024]);
        w.prop_u64s("ferrum,memory-base", &[0x5000_0000]);
        w.prop_str("ferrum,on-poweroff", "board");
        w.prop_str("ferrum,autostart", "no");
        w.prop_str("ferrum,on-crash", "restart");
        w.prop_u32("ferrum,restart-limit", 3);
        w.prop_u32("ferrum,restart-window", 30);
        w.begin_node("module@41200000");
        w.prop_strs("compatible", &["multiboot,kernel", "multiboot,module"]);
        w.prop_u64s("reg", &[0x4120_0000, 0x8000]);
        w.prop_str("bootargs", "mode=good");
        w.end_node();
        w.end_node();
    }

    #[test]
    fn board_facts() {
        let blob = host_tree(|_| {});
        let fdt = Fdt::new(&blob).unwrap();
        let b = parse_board(&fdt);
        assert_eq!(b.model, "linux,dummy-virt");
        assert_eq!(&b.memory[..], &[PhysRange::new(0x4000_0000, 0x8000_0000)]);
        assert_eq!(&b.cpus[..], &[0, 1, 2, 3]);
        assert_eq!(b.psci, Some(Conduit::Smc));
        assert_eq!(b.uart, Some((0x900_0000, UartKind::Pl011)));
        assert_eq!(b.uart_path, Some("/pl011@9000000"));
        assert_eq!(alias_uart(&fdt, "serial1"), Some(("/pl011@9040000", 0x904_0000, UartKind::Pl011)));
        assert_eq!(alias_uart(&fdt, "serial2"), None, "an alias to a missing node");
        assert_eq!(alias_uart(&fdt, "serial3"), None, "no such alias");
        assert_eq!(b.cpu_start[1], CpuStart::Unknown);
        assert_eq!(b.deployment, "default");
        let g = b.gic.unwrap();
        assert_eq!(
            (g.version, g.dist, g.cpu_or_redist, g.hyp, g.vcpu),
            (GicVersion::V2, 0x800_0000, 0x801_0000, Some(0x803_0000), Some(0x804_0000))
        );
    }

    /// The shape of the Pi 4's tree: GIC-400 and both UARTs behind `/soc`'s `ranges`, the
    /// console named by an alias, CPUs started by spin tables, memory filled in by firmware.
    #[test]
    fn pi4_board_facts() {
        let mut w = FdtWriter::new();
        w.begin_node("");
        w.prop_u32("#address-cells", 2);
        w.prop_u32("#size-cells", 1);
        w.prop_str("model", "Raspberry Pi 4 Model B");
        w.begin_node("aliases");
        w.prop_str("serial0", "/soc/serial@7e201000");
        w.prop_str("serial1", "/soc/serial@7e215040");
        w.end_node();
        w.begin_node("chosen");
        w.prop_str("stdout-path", "serial1:115200n8");
        w.end_node();
        w.begin_node("soc");
        w.prop_u32("#address-cells", 1);
        w.prop_u32("#size-cells", 1);
        w.prop_cells("ranges", &[0x7e00_0000, 0, 0xfe00_0000, 0x180_0000, 0x4000_0000, 0, 0xff80_0000, 0x80_0000]);
        w.begin_node("serial@7e201000");
        w.prop_strs("compatible", &["arm,pl011", "arm,primecell"]);
        w.prop_cells("reg", &[0x7e20_1000, 0x200]);
        w.end_node();
        w.begin_node("serial@7e215040");
        w.prop_str("compatible", "brcm,bcm2835-aux-uart");
        w.prop_cells("reg", &[0x7e21_5040, 0x40]);
        w.prop_cells("interrupts", &[0, 93, 4]);
        w.end_node();
        w.begin_node("interrupt-controller@40041000");
        w.prop_str("compatible", "arm,gic-400");
        w.prop_cells("reg", &[0x4004_1000, 0x1000, 0x4004_2000, 0x2000, 0x4004_4000, 0x2000, 0x4004_6000, 0x2000]);
        w.end_node();
        w.end_node();
        w.begin_node("cpus");
        w.prop_u32("#address-cells", 1);
        w.prop_u32("#size-cells", 0);
        for i in 0..4u32 {
            w.begin_node(&alloc::format!("cpu@{i}"));
            w.prop_str("device_type", "cpu");
            w.prop_u32("reg", i);
            w.prop_str("enable-method", "spin-table");
            w.prop_u64s("cpu-release-addr", &[0xd8 + 8 * u64::from(i)]);
            w.end_node();
        }
        w.end_node();
        w.begin_node("memory@0");
        w.prop_str("device_type", "memory");
        w.prop_cells("reg", &[0, 0, 0]);
        w.end_node();
        w.end_node();
        let blob = w.finish(0).unwrap();
        let fdt = Fdt::new(&blob).unwrap();
        let b = parse_board(&fdt);
        let g = b.gic.unwrap();
        assert_eq!(
            (g.name, g.version, g.dist, g.cpu_or_redist, g.hyp, g.vcpu),
            ("GIC-400", GicVersion::V2, 0xff84_1000, 0xff84_2000, Some(0xff84_4000), Some(0xff84_6000))
        );
        assert_eq!(b.uart, Some((0xfe21_5040, UartKind::MiniUart)));
        assert_eq!(b.uart_path, Some("/soc/serial@7e215040"));
        assert_eq!(b.uart_irq, Some(32 + 93));
        assert_eq!(b.cpu_start[2], CpuStart::SpinTable(0xe8));
        assert!(b.memory.is_empty(), "an empty memory node is no RAM");
        assert_eq!(b.psci, None);
    }

    /// Found by the `host_dt` fuzz target: an SPI number near `u32::MAX` overflowed `32 + n`.
    #[test]
    fn uart_spi_out_of_range_is_no_interrupt() {
        for (spi, want) in [(93u32, Some(125u32)), (987, Some(1019)), (988, None), (u32::MAX - 20, None)] {
            let mut w = FdtWriter::new();
            w.begin_node("");
            w.prop_u32("#address-cells", 2);
            w.prop_u32("#size-cells", 2);
            w.begin_node("pl011@9000000");
            w.prop_strs("compatible", &["arm,pl011", "arm,primecell"]);
            w.prop_u64s("reg", &[0x900_0000, 0x1000]);
            w.prop_cells("interrupts", &[0, spi, 4]);
            w.end_node();
            w.begin_node("chosen");
            w.prop_str("stdout-path", "/pl011@9000000");
            w.end_node();
            w.end_node();
            let blob = w.finish(0).unwrap();
            assert_eq!(parse_board(&Fdt::new(&blob).unwrap()).uart_irq, want, "SPI {spi}");
        }
    }

    #[test]
    fn domain_nodes_to_plan() {
        let blob = host_tree(good_domain);
        let fdt = Fdt::new(&blob).unwrap();
        let plan = parse_plan(&fdt, &|_| Ok(0x9000)).unwrap();
        assert_eq!(plan.domains.len(), 1);
        let d = plan.domains[0];
        assert_eq!(d.name, "guest-a");
        assert_eq!(&d.pcpus[..], &[1, 2]);
        assert_eq!(d.memory, PhysRange::new(0x5000_0000, 32 << 20));
        assert_eq!(d.kernel, PhysRange::new(0x4120_0000, 0x8000));
        assert_eq!(d.kernel_footprint, 0x9000);
        assert_eq!(d.bootargs, "mode=good");
        assert_eq!(d.on_poweroff, PowerOffPolicy::Board);
        assert_eq!(d.on_fault, FaultPolicy::Inject);
        let l = Lifecycle {
            autostart: false,
            on_crash: CrashPolicy::Restart,
            restart_limit: 3,
            restart_window: 30,
            ..Lifecycle::default()
        };
        assert_eq!(d.lifecycle, l);
    }

    #[test]
    fn pv_device_nodes() {
        let with = |mode: &'static str, mac: &'static [u8]| {
            host_tree(move |w| {
                good_domain(w);
                w.begin_node("domain@1");
                w.prop_str("compatible", "xen,domain");
                w.prop_str("ferrum,name", "web");
                w.prop_u32("cpus", 1);
                w.prop_cells("ferrum,pcpus", &[3]);
                w.prop_u64s("memory", &[16 * 1024]);
                w.prop_u64s("ferrum,memory-base", &[0x5400_0000]);
                w.begin_node("module@41300000");
                w.prop_strs("compatible", &["multiboot,kernel", "multiboot,module"]);
                w.prop_u64s("reg", &[0x4130_0000, 0x8000]);
                w.end_node();
                w.begin_node("vbd@ca00");
                w.prop_str("compatible", "ferrum,vbd");
                w.prop_str("ferrum,backend", "guest-a");
                w.prop_u32("ferrum,devid", 51712);
                w.prop_str("ferrum,target", "/dev/vda2");
                w.prop_str("ferrum,mode", mode);
                w.end_node();
                w.begin_node("vif@0");
                w.prop_str("compatible", "ferrum,vif");
                w.prop_str("ferrum,backend", "guest-a");
                w.prop_u32("ferrum,devid", 0);
                w.prop_str("ferrum,target", "xenbr0");
                w.prop("local-mac-address", mac);
                w.end_node();
                w.end_node();
            })
        };
        let blob = with("w", &[0, 0x16, 0x3e, 0, 0, 2]);
        let plan = parse_plan(&Fdt::new(&blob).unwrap(), &|_| Ok(0x9000)).unwrap();
        let pv = &plan.domains[1].pv;
        assert_eq!(pv.len(), 2);
        assert_eq!(
            (pv[0].kind, pv[0].backend, pv[0].devid, pv[0].target, pv[0].writable),
            (PvKind::Vbd, "guest-a", 51712, "/dev/vda2", true)
        );
        assert_eq!((pv[1].kind, pv[1].target, pv[1].mac), (PvKind::Vif, "xenbr0", [0, 0x16, 0x3e, 0, 0, 2]));
        let blob = with("rw", &[0, 0x16, 0x3e, 0, 0, 2]);
        let e = parse_plan(&Fdt::new(&blob).unwrap(), &|_| Ok(0x9000)).unwrap_err();
        assert_eq!((e.domain, e.field, e.problem), (Some(1), "vbd", Problem::BadProperty("ferrum,mode")));
        let blob = with("r", &[0, 0x16, 0x3e]);
        let e = parse_plan(&Fdt::new(&blob).unwrap(), &|_| Ok(0x9000)).unwrap_err();
        assert_eq!((e.field, e.problem), ("vif", Problem::BadProperty("local-mac-address")));
    }

    #[test]
    fn malformed_domains_name_the_field() {
        let blob = host_tree(|w| {
            w.begin_node("domain@0");
            w.prop_str("compatible", "xen,domain");
            w.prop_u32("cpus", 2);
            w.prop_cells("ferrum,pcpus", &[1]);
            w.end_node();
        });
        let e = parse_plan(&Fdt::new(&blob).unwrap(), &|_| Ok(0)).unwrap_err();
        assert_eq!((e.domain, e.field), (Some(0), "cpus"));

        let blob = host_tree(|w| {
            w.begin_node("domain@0");
            w.prop_str("compatible", "xen,domain");
            w.prop_str("ferrum,kind", "windows");
            w.end_node();
        });
        let e = parse_plan(&Fdt::new(&blob).unwrap(), &|_| Ok(0)).unwrap_err();
        assert_eq!(e.field, "kind");

        let blob = host_tree(good_domain);
        let e = parse_plan(&Fdt::new(&blob).unwrap(), &|_| Err(ImageError::BadMagic)).unwrap_err();
        assert_eq!((e.field, e.problem), ("kernel", Problem::BadImage(ImageError::BadMagic)));
    }

    #[test]
    fn signed_plan_digest_and_update_key() {
        let blob = host_tree(|w| {
            w.prop("ferrum,update-key", &[7; 32]);
            good_domain(w);
        });
        let plan = parse_plan(&Fdt::new(&blob).unwrap(), &|_| Ok(0x9000)).unwrap();
        assert_eq!(plan.update_key, Some([7; 32]));
        assert_eq!(plan.domains[0].sha256, None);
        let blob = host_tree(|w| {
            w.prop("ferrum,update-key", &[7; 31]);
            good_domain(w);
        });
        let e = parse_plan(&Fdt::new(&blob).unwrap(), &|_| Ok(0)).unwrap_err();
        assert_eq!((e.domain, e.field), (None, "update-key"));
        for (len, ok) in [(32, true), (20, false)] {
            let blob = host_tree(move |w| {
                w.begin_node("domain@0");
                w.prop_str("compatible", "xen,domain");
                w.prop_u32("#address-cells", 2);
                w.prop_u32("#size-cells", 2);
                w.prop_u32("cpus", 1);
                w.prop_cells("ferrum,pcpus", &[1]);
                w.prop_u64s("memory", &[32 << 10]);
                w.prop_u64s("ferrum,memory-base", &[0x5000_0000]);
                w.prop("ferrum,sha256", &alloc::vec![9; len]);
                w.begin_node("module@41200000");
                w.prop_strs("compatible", &["multiboot,kernel", "multiboot,module"]);
                w.prop_u64s("reg", &[0x4120_0000, 0x8000]);
                w.end_node();
                w.end_node();
            });
            let r = parse_plan(&Fdt::new(&blob).unwrap(), &|_| Ok(0x9000));
            match ok {
                true => assert_eq!(r.unwrap().domains[0].sha256, Some([9; 32])),
                false => assert_eq!(r.unwrap_err().field, "sha256"),
            }
        }
    }

    #[test]
    fn domains_sorted_by_unit_address() {
        let blob = host_tree(|w| {
            for (unit, name) in [(2, "c"), (0, "a"), (1, "b")] {
                w.begin_node(&alloc::format!("domain@{unit}"));
                w.prop_str("compatible", "xen,domain");
                w.prop_u32("#address-cells", 2);
                w.prop_u32("#size-cells", 2);
                w.prop_str("ferrum,name", name);
                w.prop_u32("cpus", 1);
                w.prop_cells("ferrum,pcpus", &[unit]);
                w.prop_u64s("memory", &[4096]);
                w.prop_u64s("ferrum,memory-base", &[0x5000_0000]);
                w.begin_node("module@0");
                w.prop_strs("compatible", &["multiboot,kernel", "multiboot,module"]);
                w.prop_u64s("reg", &[0x4120_0000, 0x8000]);
                w.end_node();
                w.end_node();
            }
        });
        let plan = parse_plan(&Fdt::new(&blob).unwrap(), &|_| Ok(0)).unwrap();
        let names: Vec<&str> = plan.domains.iter().map(|d| d.name).collect();
        assert_eq!(names, ["a", "b", "c"]);
    }

    #[test]
    fn no_chosen_means_empty_plan() {
        let mut w = FdtWriter::new();
        w.begin_node("");
        w.end_node();
        let blob = w.finish(0).unwrap();
        assert!(parse_plan(&Fdt::new(&blob).unwrap(), &|_| Ok(0)).unwrap().domains.is_empty());
    }
}
