//! The device tree each domain boots with: its RAM, its vCPUs (PSCI over HVC), its virtual GIC
//! and timer, its console (the emulated PL011), command line and initrd, and, for a domain
//! that owns devices, copies of exactly those devices' host nodes. Everything else comes from
//! the validated plan; nothing else of the host tree leaks into a domain's view.
//!
//! The exception is the board-tree domain (`devices = ["/"]`, a direct-mapped Linux control
//! domain, as Xen's dom0 on a Pi 4): it sees the board's own tree, whose devices depend on each
//! other through phandles (the SD controller on firmware clocks and GPIO regulators), minus
//! what the hypervisor keeps (its UART; the GIC is cut down to distributor and CPU interface,
//! which are virtual) and with the nodes of other domains' devices disabled. Its `/chosen`,
//! memory, CPUs (PSCI over HVC, keeping the host CPUs' phandles) and `/hypervisor` are ours.

use crate::fdtw::FdtWriter;
use crate::passthrough::Device;
use crate::plan::{guest_layout, Domain};
use crate::psci::vmpidr;
use crate::vgic::{Version, CPUIF_SIZE, DIST_SIZE, REDIST_STRIDE};
use crate::vuart::{VUART_BASE, VUART_SIZE, VUART_SPI};
use alloc::format;
use alloc::vec::Vec;

/// Phandle of the guest's GIC.
const GIC_PHANDLE: u32 = 2;

/// Where a domain's virtual GIC appears in its guest-physical space.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GuestGic {
    /// GIC version (the host's).
    pub version: Version,
    /// Distributor IPA.
    pub dist: u64,
    /// GICv2: CPU interface IPA; GICv3: first redistributor IPA.
    pub cpu_or_redist: u64,
}

impl GuestGic {
    /// Xen's guest layout (`GUEST_GICD_BASE` / `GUEST_GICC_BASE` / `GUEST_GICV3_GICR0_BASE`).
    pub const fn xen_layout(version: Version) -> Self {
        match version {
            Version::V2 => Self { version, dist: 0x0300_1000, cpu_or_redist: 0x0300_2000 },
            Version::V3 => Self { version, dist: 0x0300_1000, cpu_or_redist: 0x0302_0000 },
        }
    }
}

/// The board tree a board-tree domain sees.
pub struct BoardTree<'h> {
    /// Path of the host GIC node.
    pub gic_path: &'h str,
    /// Paths of nodes to disable: the hypervisor's UART and other domains' devices.
    pub hide: &'h [&'h str],
}

/// What the domain sees besides RAM and CPUs.
pub struct Hardware<'h, 'a> {
    /// Its virtual GIC.
    pub gic: GuestGic,
    /// The host tree (source of the timer's interrupts and of passthrough nodes).
    pub host: Option<&'h fdt::Fdt<'a>>,
    /// Devices passed through (resolved by `passthrough::resolve`).
    pub devices: &'h [Device<'a>],
    /// `Some` for the board-tree domain (`host` must be set too).
    pub board: Option<BoardTree<'h>>,
}

/// Grant-table frames each Xen-aware domain has (all mapped at the start of its grant window).
pub const GRANT_FRAMES: u32 = 32;

/// The architected timer's interrupts: the host's (secure, non-secure, virtual, hypervisor
/// PPIs with their flags) or the usual 13/14/11/10 level-low.
fn timer_interrupts(host: Option<&fdt::Fdt<'_>>) -> Vec<u8> {
    if let Some(v) = host
        .and_then(|f| f.find_compatible(&["arm,armv8-timer", "arm,armv7-timer"]))
        .and_then(|n| n.property("interrupts"))
        .map(|p| p.value)
        .filter(|v| v.len() == 48)
    {
        return v.to_vec();
    }
    [1u32, 13, 0xf08, 1, 14, 0xf08, 1, 11, 0xf08, 1, 10, 0xf08].iter().flat_map(|c| c.to_be_bytes()).collect()
}

fn copy_device(w: &mut FdtWriter, host: &fdt::Fdt<'_>, dev: &Device<'_>) {
    let Some(node) = host.find_node(dev.path) else { return };
    let name = dev.path.rsplit('/').next().unwrap_or(node.name);
    w.begin_node(name);
    let regs: Vec<u64> = dev.regs.iter().flat_map(|r| [r.base.0, r.size]).collect();
    w.prop_u64s("reg", &regs);
    w.prop_u32("interrupt-parent", GIC_PHANDLE);
    for p in node.properties() {
        if matches!(p.name, "reg" | "interrupt-parent" | "phandle" | "linux,phandle") {
            continue;
        }
        w.prop(p.name, p.value);
    }
    w.end_node();
}

fn chosen(w: &mut FdtWriter, d: &Domain<'_>, initrd: Option<(u64, u64)>, stdout: Option<&str>) {
    w.begin_node("chosen");
    w.prop_str("bootargs", d.bootargs);
    if let Some(p) = stdout {
        w.prop_str("stdout-path", p);
    }
    w.prop_str("ferrum,domain-name", d.name);
    if let Some((at, size)) = initrd {
        w.prop_u64s("linux,initrd-start", &[at]);
        w.prop_u64s("linux,initrd-end", &[at + size]);
    }
    w.end_node();
}

/// `cells`: the root's (address, size) cells for the memory node.
fn memory(w: &mut FdtWriter, base: u64, size: u64, cells: (usize, usize)) {
    w.begin_node(&format!("memory@{base:x}"));
    w.prop_str("device_type", "memory");
    w.prop("reg", &reg_cells(&[(base, size)], cells));
    w.end_node();
}

fn cpus_and_psci(w: &mut FdtWriter, n: usize, phandles: &[Option<u32>]) {
    w.begin_node("cpus");
    w.prop_u32("#address-cells", 1);
    w.prop_u32("#size-cells", 0);
    for i in 0..n {
        w.begin_node(&format!("cpu@{i}"));
        w.prop_str("device_type", "cpu");
        w.prop_strs("compatible", &["arm,cortex-a72", "arm,armv8"]);
        w.prop_u32("reg", vmpidr(i) as u32 & 0xff_ffff);
        w.prop_str("enable-method", "psci");
        if let Some(Some(ph)) = phandles.get(i) {
            w.prop_u32("phandle", *ph);
        }
        w.end_node();
    }
    w.end_node();

    w.begin_node("psci");
    w.prop_strs("compatible", &["arm,psci-1.0", "arm,psci-0.2"]);
    w.prop_str("method", "hvc");
    w.end_node();
}

/// Encodes (address, size) pairs in `cells` = the parent's (#address-cells, #size-cells).
fn reg_cells(pairs: &[(u64, u64)], cells: (usize, usize)) -> Vec<u8> {
    let mut v = Vec::new();
    for &(a, s) in pairs {
        for (x, n) in [(a, cells.0), (s, cells.1)] {
            if n == 1 {
                v.extend_from_slice(&(x as u32).to_be_bytes());
            } else {
                v.extend_from_slice(&x.to_be_bytes());
            }
        }
    }
    v
}

fn hypervisor(w: &mut FdtWriter, gic_phandle: u32, cells: (usize, usize)) {
    // docs/xen-abi.md §1.1: exact node name, versioned compatible first, grant window as
    // region 0, event-channel PPI 31 level-low on every CPU.
    let (maj, min) = xen_abi::version::REPORTED;
    w.begin_node("hypervisor");
    w.prop_strs("compatible", &[&format!("xen,xen-{maj}.{min}"), "xen,xen"]);
    // Region 1: the extended region, where the domain maps other domains' grants.
    let regions = [
        (xen_abi::layout::GNTTAB_BASE, u64::from(GRANT_FRAMES) * xen_abi::PAGE_SIZE),
        (xen_abi::layout::EXT_BASE, xen_abi::layout::EXT_SIZE),
    ];
    w.prop("reg", &reg_cells(&regions, cells));
    w.prop_u32("interrupt-parent", gic_phandle);
    w.prop_cells("interrupts", &[1, xen_abi::layout::EVTCHN_PPI - 16, 0xf08]);
    w.end_node();
}

/// Builds the device tree for `d`. `initrd_size` is the initrd length (0 for none).
pub fn build(d: &Domain<'_>, text_offset: u64, initrd_size: u64, hw: &Hardware<'_, '_>) -> Vec<u8> {
    if let (Some(board), Some(host)) = (&hw.board, hw.host) {
        return build_board(d, text_offset, initrd_size, host, board);
    }
    let layout = guest_layout(d, text_offset);
    let base = d.ipa_base().0;
    let mut w = FdtWriter::new();
    w.begin_node("");
    w.prop_u32("#address-cells", 2);
    w.prop_u32("#size-cells", 2);
    w.prop_strs("compatible", &["ferrum,guest"]);
    w.prop_str("model", &format!("ferrum domain {}", d.name));
    w.prop_u32("interrupt-parent", GIC_PHANDLE);

    let initrd = layout.initrd.filter(|_| initrd_size > 0).map(|at| (at.0, initrd_size));
    chosen(&mut w, d, initrd, Some(&format!("/pl011@{VUART_BASE:x}")));
    memory(&mut w, base, d.memory.size, (2, 2));
    cpus_and_psci(&mut w, d.pcpus.len(), &[]);

    let g = hw.gic;
    w.begin_node(&format!("interrupt-controller@{:x}", g.dist));
    w.prop_u32("#interrupt-cells", 3);
    w.prop_u32("#address-cells", 0);
    w.prop_empty("interrupt-controller");
    match g.version {
        Version::V2 => {
            w.prop_strs("compatible", &["arm,cortex-a15-gic"]);
            w.prop_u64s("reg", &[g.dist, 0x1000, g.cpu_or_redist, CPUIF_SIZE]);
        }
        Version::V3 => {
            w.prop_strs("compatible", &["arm,gic-v3"]);
            w.prop_u32("#redistributor-regions", 1);
            let n = d.pcpus.len() as u64;
            w.prop_u64s("reg", &[g.dist, DIST_SIZE, g.cpu_or_redist, n * REDIST_STRIDE]);
        }
    }
    w.prop_u32("phandle", GIC_PHANDLE);
    w.end_node();

    w.begin_node("timer");
    w.prop_strs("compatible", &["arm,armv8-timer"]);
    w.prop("interrupts", &timer_interrupts(hw.host));
    w.end_node();

    w.begin_node("apb-pclk");
    w.prop_str("compatible", "fixed-clock");
    w.prop_u32("#clock-cells", 0);
    w.prop_u32("clock-frequency", 24_000_000);
    w.prop_str("clock-output-names", "clk24mhz");
    w.prop_u32("phandle", 1);
    w.end_node();

    w.begin_node(&format!("pl011@{VUART_BASE:x}"));
    w.prop_strs("compatible", &["arm,pl011", "arm,primecell"]);
    w.prop_u64s("reg", &[VUART_BASE, VUART_SIZE]);
    w.prop_cells("clocks", &[1, 1]);
    w.prop_strs("clock-names", &["uartclk", "apb_pclk"]);
    w.prop_cells("interrupts", &[0, VUART_SPI, 4]);
    w.end_node();

    if d.xen {
        hypervisor(&mut w, GIC_PHANDLE, (2, 2));
    }

    if let Some(host) = hw.host {
        for dev in hw.devices {
            copy_device(&mut w, host, dev);
        }
    }

    w.end_node();
    w.finish(0).expect("balanced tree")
}

fn u32_prop(n: &fdt::node::FdtNode<'_, '_>, name: &str) -> Option<u32> {
    n.property(name).map(|p| p.value).filter(|v| v.len() == 4).map(|v| u32::from_be_bytes([v[0], v[1], v[2], v[3]]))
}

/// The board-tree domain's device tree (see the module documentation).
fn build_board(d: &Domain<'_>, text_offset: u64, initrd_size: u64, host: &fdt::Fdt<'_>, b: &BoardTree<'_>) -> Vec<u8> {
    use crate::fdtedit::{compatible_with, copy_root, Action, NodeEdit};
    let layout = guest_layout(d, text_offset);
    let root = host.find_node("/");
    let cells = root.map_or((2, 1), |r| {
        (u32_prop(&r, "#address-cells").unwrap_or(2) as usize, u32_prop(&r, "#size-cells").unwrap_or(1) as usize)
    });
    // The GIC keeps distributor and CPU interface: reg entries 0 and 1 in its parent's cells.
    let gic_parent = b.gic_path.rsplit_once('/').map_or("/", |(p, _)| if p.is_empty() { "/" } else { p });
    let pcells = host.find_node(gic_parent).map_or(4, |p| {
        4 * (u32_prop(&p, "#address-cells").unwrap_or(2) + u32_prop(&p, "#size-cells").unwrap_or(1)) as usize
    });
    let gic_node = host.find_node(b.gic_path);
    let gic_phandle = gic_node.as_ref().and_then(|n| u32_prop(n, "phandle")).unwrap_or(GIC_PHANDLE);
    let gic_reg: Vec<u8> = gic_node
        .as_ref()
        .and_then(|n| n.property("reg"))
        .map(|p| p.value.get(..2 * pcells).unwrap_or(p.value).to_vec())
        .unwrap_or_default();
    // The host CPUs' phandles, for the vCPUs on them (cooling maps and the like refer to them).
    let host_cpus: Vec<Option<u32>> = host
        .find_node("/cpus")
        .map(|c| {
            c.children()
                .filter(|n| n.property("device_type").and_then(|p| p.as_str()) == Some("cpu"))
                .map(|n| u32_prop(&n, "phandle"))
                .collect()
        })
        .unwrap_or_default();
    let phandles: Vec<Option<u32>> =
        d.pcpus.iter().map(|&p| host_cpus.get(usize::from(p)).copied().flatten()).collect();

    let mut w = FdtWriter::new();
    for r in host.memory_reservations() {
        w.reserve(r.address() as u64, r.size() as u64);
    }
    w.begin_node("");
    copy_root(host, &mut w, &NodeEdit::default(), &mut |path, n| {
        let is_mem = n.property("device_type").and_then(|p| p.as_str()) == Some("memory");
        if matches!(path, "/chosen" | "/cpus" | "/psci" | "/hypervisor")
            || is_mem
            || compatible_with(n, &["arm,psci", "arm,psci-0.2", "arm,psci-1.0"])
        {
            Action::Drop
        } else if path == b.gic_path {
            Action::Edit(NodeEdit { set: alloc::vec![("reg", gic_reg.clone())], remove: alloc::vec!["interrupts"] })
        } else if b.hide.contains(&path) {
            Action::Edit(NodeEdit::disable())
        } else {
            Action::Copy
        }
    });
    let initrd = layout.initrd.filter(|_| initrd_size > 0).map(|at| (at.0, initrd_size));
    chosen(&mut w, d, initrd, None);
    memory(&mut w, d.ipa_base().0, d.memory.size, cells);
    cpus_and_psci(&mut w, d.pcpus.len(), &phandles);
    if d.xen {
        hypervisor(&mut w, gic_phandle, cells);
    }
    w.end_node();
    w.finish(0).expect("balanced tree")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::addr::PhysRange;
    use crate::list::List;

    #[test]
    fn guest_tree_describes_domain() {
        let d = Domain {
            name: "web",
            pcpus: List::from_slice(&[2, 3]).unwrap(),
            memory: PhysRange::new(0x5000_0000, 0x400_0000),
            kernel: PhysRange::new(0x4120_0000, 0x1000),
            initrd: Some(PhysRange::new(0x4140_0000, 0x1000)),
            kernel_footprint: 0x1000,
            bootargs: "mode=good",
            ..Default::default()
        };
        let hw = Hardware { gic: GuestGic::xen_layout(Version::V3), host: None, devices: &[], board: None };
        let blob = build(&d, 0, 0x1000, &hw);
        let fdt = fdt::Fdt::new(&blob).unwrap();
        assert_eq!(fdt.chosen().bootargs(), Some("mode=good"));
        let m = fdt.memory().regions().next().unwrap();
        assert_eq!((m.starting_address as u64, m.size), (0x4000_0000, Some(0x400_0000)));
        assert_eq!(fdt.cpus().count(), 2);
        assert_eq!(fdt.cpus().nth(1).unwrap().ids().first(), 1);
        assert!(fdt.find_node("/hypervisor").is_none());
        let xen = Domain { xen: true, ..d };
        let blob = build(&xen, 0, 0x1000, &hw);
        let fdt = fdt::Fdt::new(&blob).unwrap();
        let h = fdt.find_node("/hypervisor").unwrap();
        assert_eq!(h.compatible().unwrap().first(), "xen,xen-4.19");
        let r: Vec<_> = h.reg().unwrap().map(|r| (r.starting_address as u64, r.size.unwrap())).collect();
        assert_eq!(r, [(0x3800_0000, 32 * 4096), (0x40_0000_0000, 512 << 20)]);
        assert_eq!(h.property("interrupts").unwrap().value, &[0, 0, 0, 1, 0, 0, 0, 15, 0, 0, 0xf, 8]);
        assert_eq!(fdt.chosen().stdout().unwrap().name, "pl011@22000000");
        let chosen = fdt.find_node("/chosen").unwrap();
        assert_eq!(chosen.property("linux,initrd-start").unwrap().as_usize(), Some(0x4020_0000));
        assert_eq!(chosen.property("ferrum,domain-name").unwrap().as_str(), Some("web"));
        assert_eq!(fdt.find_node("/psci").unwrap().property("method").unwrap().as_str(), Some("hvc"));
        let gic = fdt.find_compatible(&["arm,gic-v3"]).unwrap();
        let r: Vec<_> = gic.reg().unwrap().map(|r| (r.starting_address as u64, r.size.unwrap())).collect();
        assert_eq!(r, [(0x0300_1000, 0x1_0000), (0x0302_0000, 0x4_0000)]);
        assert!(fdt.find_compatible(&["arm,armv8-timer"]).is_some());
    }

    #[test]
    fn passthrough_nodes_are_copied_with_our_gic() {
        let mut w = FdtWriter::new();
        w.begin_node("");
        w.prop_u32("#address-cells", 2);
        w.prop_u32("#size-cells", 2);
        w.begin_node("virtio_mmio@a003e00");
        w.prop_str("compatible", "virtio,mmio");
        w.prop_u64s("reg", &[0xa003e00, 0x200]);
        w.prop_cells("interrupts", &[0, 47, 1]);
        w.prop_u32("interrupt-parent", 0x8002);
        w.prop_empty("dma-coherent");
        w.end_node();
        w.begin_node("virtio_mmio@a003c00");
        w.prop_str("compatible", "virtio,mmio");
        w.prop_u64s("reg", &[0xa003c00, 0x200]);
        w.end_node();
        w.end_node();
        let host_blob = w.finish(0).unwrap();
        let host = fdt::Fdt::new(&host_blob).unwrap();
        let dev = crate::passthrough::resolve(&host, "/virtio_mmio@a003e00").unwrap();
        let d = Domain {
            name: "ctl",
            kind: crate::plan::DomainKind::Linux,
            pcpus: List::from_slice(&[0, 1]).unwrap(),
            memory: PhysRange::new(0x5000_0000, 0x1000_0000),
            kernel: PhysRange::new(0x4120_0000, 0x1000),
            kernel_footprint: 0x1000,
            ..Default::default()
        };
        let gic = GuestGic { version: Version::V2, dist: 0x800_0000, cpu_or_redist: 0x801_0000 };
        let blob = build(&d, 0, 0, &Hardware { gic, host: Some(&host), devices: &[dev], board: None });
        let fdt = fdt::Fdt::new(&blob).unwrap();
        let n = fdt.find_node("/virtio_mmio@a003e00").unwrap();
        assert_eq!(n.property("interrupt-parent").unwrap().as_usize(), Some(2));
        assert!(n.property("dma-coherent").is_some());
        assert!(fdt.find_node("/virtio_mmio@a003c00").is_none(), "only the given device is visible");
        let m = fdt.memory().regions().next().unwrap();
        assert_eq!(m.starting_address as u64, 0x5000_0000, "direct-mapped");
    }

    /// The board-tree domain on a Pi-4-shaped tree: the board's nodes stay (with their
    /// phandles), the GIC keeps distributor and CPU interface only, the hypervisor's UART and
    /// hidden nodes are disabled, and chosen, memory, CPUs, PSCI and /hypervisor are ours.
    #[test]
    fn board_tree_domain() {
        let mut w = FdtWriter::new();
        w.reserve(0, 0x1000);
        w.begin_node("");
        w.prop_u32("#address-cells", 2);
        w.prop_u32("#size-cells", 1);
        w.prop_str("model", "Raspberry Pi 4 Model B");
        w.prop_u32("interrupt-parent", 1);
        w.begin_node("chosen");
        w.prop_str("stdout-path", "serial1:115200n8");
        w.begin_node("domain@0");
        w.end_node();
        w.end_node();
        w.begin_node("memory@0");
        w.prop_str("device_type", "memory");
        w.prop_cells("reg", &[0, 0, 0x3c00_0000]);
        w.end_node();
        w.begin_node("cpus");
        for i in 0..4u32 {
            w.begin_node(&format!("cpu@{i}"));
            w.prop_str("device_type", "cpu");
            w.prop_u32("reg", i);
            w.prop_u32("phandle", 10 + i);
            w.end_node();
        }
        w.end_node();
        w.begin_node("soc");
        w.prop_u32("#address-cells", 1);
        w.prop_u32("#size-cells", 1);
        w.begin_node("interrupt-controller@40041000");
        w.prop_str("compatible", "arm,gic-400");
        w.prop_cells("reg", &[0x4004_1000, 0x1000, 0x4004_2000, 0x2000, 0x4004_4000, 0x2000, 0x4004_6000, 0x2000]);
        w.prop_cells("interrupts", &[1, 9, 0xf04]);
        w.prop_u32("phandle", 1);
        w.end_node();
        w.begin_node("serial@7e215040");
        w.prop_str("compatible", "brcm,bcm2835-aux-uart");
        w.end_node();
        w.begin_node("spi@7e215080");
        w.prop_str("compatible", "brcm,bcm2835-aux-spi");
        w.end_node();
        w.begin_node("mmc@7e340000");
        w.prop_str("compatible", "brcm,bcm2711-emmc2");
        w.prop_u32("vqmmc-supply", 5);
        w.end_node();
        w.end_node();
        w.end_node();
        let host_blob = w.finish(0).unwrap();
        let host = fdt::Fdt::new(&host_blob).unwrap();
        let d = Domain {
            name: "control",
            kind: crate::plan::DomainKind::Linux,
            pcpus: List::from_slice(&[0, 2]).unwrap(),
            memory: PhysRange::new(0x1100_0000, 0x2000_0000),
            kernel: PhysRange::new(0x0220_0000, 0x1000),
            kernel_footprint: 0x1000,
            xen: true,
            bootargs: "console=hvc0",
            ..Default::default()
        };
        let hide = ["/soc/serial@7e215040", "/soc/spi@7e215080"];
        let board = BoardTree { gic_path: "/soc/interrupt-controller@40041000", hide: &hide };
        let gic = GuestGic { version: Version::V2, dist: 0xff84_1000, cpu_or_redist: 0xff84_2000 };
        let blob = build(&d, 0, 0, &Hardware { gic, host: Some(&host), devices: &[], board: Some(board) });
        let fdt = fdt::Fdt::new(&blob).unwrap();
        assert_eq!(fdt.memory_reservations().count(), 1);
        assert_eq!(fdt.root().model(), "Raspberry Pi 4 Model B");
        let g = fdt.find_node("/soc/interrupt-controller@40041000").unwrap();
        assert_eq!(g.property("reg").unwrap().value.len(), 16, "GICD and GICC only");
        assert!(g.property("interrupts").is_none(), "no maintenance interrupt");
        assert_eq!(g.property("phandle").unwrap().as_usize(), Some(1));
        for p in hide {
            assert_eq!(fdt.find_node(p).unwrap().property("status").unwrap().as_str(), Some("disabled"));
        }
        let mmc = fdt.find_node("/soc/mmc@7e340000").unwrap();
        assert!(mmc.property("status").is_none());
        assert_eq!(mmc.property("vqmmc-supply").unwrap().as_usize(), Some(5));
        assert!(fdt.find_node("/chosen/domain@0").is_none(), "the plan is not the domain's business");
        assert_eq!(fdt.chosen().bootargs(), Some("console=hvc0"));
        let m = fdt.memory().regions().next().unwrap();
        assert_eq!((m.starting_address as u64, m.size), (0x1100_0000, Some(0x2000_0000)));
        let cpus: Vec<_> = fdt.find_node("/cpus").unwrap().children().collect();
        assert_eq!(cpus.len(), 2);
        assert_eq!(cpus[1].property("phandle").unwrap().as_usize(), Some(12), "vCPU 1 runs on host CPU 2");
        assert_eq!(fdt.find_node("/psci").unwrap().property("method").unwrap().as_str(), Some("hvc"));
        let h = fdt.find_node("/hypervisor").unwrap();
        assert_eq!(h.property("reg").unwrap().value.len(), 2 * 12, "root cells are 2 + 1");
        assert_eq!(h.property("interrupt-parent").unwrap().as_usize(), Some(1));
        assert!(fdt.find_node("/pl011@22000000").is_none(), "no emulated UART inside its RAM");
    }
}
