//! Passthrough devices: resolving a host device-tree path named by the plan into the MMIO
//! ranges (translated to physical addresses through the parents' `ranges`) and the SPIs that
//! the owning domain gets, and checking that what is handed out stays disjoint.
//!
//! Invariants of a [`Device`] returned by [`resolve`]: the node exists and is not disabled, it
//! has at least one non-empty MMIO range, every range is page-aligned after rounding (the caller
//! maps whole 4 KiB pages), and every interrupt is an SPI of the host GIC (3-cell specifier).
//! [`check_disjoint`] then refuses devices whose pages or SPIs would be shared between domains
//! or with the hypervisor's own devices.

use crate::addr::PhysRange;
use crate::list::List;
use core::fmt;
use fdt::node::FdtNode;
use fdt::Fdt;

/// Most MMIO ranges of one device.
pub const MAX_REGS: usize = 4;
/// Most interrupts of one device.
pub const MAX_IRQS: usize = 4;
const PAGE: u64 = 0x1000;

/// A resolved passthrough device.
#[derive(Clone, Copy, Debug, Default)]
pub struct Device<'a> {
    /// Host device-tree path.
    pub path: &'a str,
    /// MMIO ranges, physical, rounded out to whole pages.
    pub pages: List<PhysRange, MAX_REGS>,
    /// The exact MMIO ranges (for the guest's `reg`).
    pub regs: List<PhysRange, MAX_REGS>,
    /// SPI interrupt IDs (32 + SPI number).
    pub spis: List<u32, MAX_IRQS>,
}

/// Why a device cannot be passed through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DevError {
    /// No node at that path.
    NotFound,
    /// `status` is not "okay".
    Disabled,
    /// No usable `reg`.
    NoRegs,
    /// An address could not be translated through a parent's `ranges`.
    Untranslatable,
    /// `interrupts` is not a list of 3-cell GIC specifiers.
    BadInterrupts,
    /// A per-CPU interrupt (PPI) cannot be given to one domain.
    PerCpuInterrupt(u32),
    /// Too many ranges or interrupts.
    TooBig,
    /// Shares a page with something else (what).
    SharesPage(&'static str),
    /// Uses an interrupt that something else uses (what).
    SharesInterrupt(u32, &'static str),
}

impl fmt::Display for DevError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotFound => write!(f, "no such node in the board's device tree"),
            Self::Disabled => write!(f, "the node's status is not \"okay\""),
            Self::NoRegs => write!(f, "the node has no MMIO 'reg'"),
            Self::Untranslatable => write!(f, "an address does not translate through the parents' 'ranges'"),
            Self::BadInterrupts => write!(f, "'interrupts' is not a list of GIC specifiers"),
            Self::PerCpuInterrupt(n) => write!(f, "interrupt {n} is per-CPU (a PPI) and cannot be given to one domain"),
            Self::TooBig => write!(f, "more than {MAX_REGS} MMIO ranges or {MAX_IRQS} interrupts"),
            Self::SharesPage(w) => write!(f, "its MMIO shares a 4 KiB page with {w}"),
            Self::SharesInterrupt(n, w) => write!(f, "interrupt {n} is also used by {w}"),
        }
    }
}

use crate::hostdt::cells as be;

fn cells(node: &FdtNode<'_, '_>, name: &str, default: usize) -> usize {
    node.property(name).and_then(|p| p.as_usize()).unwrap_or(default)
}

/// The ancestors of `path` from the root down, and the node itself.
fn chain<'b, 'a>(fdt: &'b Fdt<'a>, path: &str) -> Option<([Option<FdtNode<'b, 'a>>; 8], usize)> {
    let mut out = [None; 8];
    out[0] = Some(fdt.find_node("/")?);
    let mut n = 1;
    let mut end = 0;
    let bytes = path.as_bytes();
    while end < bytes.len() {
        end += 1;
        while end < bytes.len() && bytes[end] != b'/' {
            end += 1;
        }
        *out.get_mut(n)? = Some(fdt.find_node(&path[..end])?);
        n += 1;
    }
    Some((out, n))
}

/// Translates `addr` (in `bus`'s child address space) into its parent's space.
fn up(bus: &FdtNode<'_, '_>, parent_ac: usize, addr: u64, size: u64) -> Option<u64> {
    let Some(r) = bus.property("ranges") else { return Some(addr) };
    if r.value.is_empty() {
        return Some(addr);
    }
    let (cac, csc) = (cells(bus, "#address-cells", 2), cells(bus, "#size-cells", 1));
    // A bus address is at most 4 cells (PCI's are 3; only the low 64 bits are kept); anything
    // larger, or an entry of no bytes at all, is no range this code can translate.
    if cac == 0 || cac > 4 || parent_ac == 0 || parent_ac > 4 || csc > 4 {
        return None;
    }
    let stride = 4 * (cac + parent_ac + csc);
    for e in r.value.chunks_exact(stride) {
        let child = be(&e[..4 * cac]);
        let parent = be(&e[4 * cac..4 * (cac + parent_ac)]);
        let len = be(&e[4 * (cac + parent_ac)..]);
        if addr >= child && addr.checked_add(size)? <= child.checked_add(len)? {
            return parent.checked_add(addr - child);
        }
    }
    None
}

/// The node at `path` with its ancestors, root first (at most 8 levels), and how many.
type Chain<'b, 'a> = ([FdtNode<'b, 'a>; 8], usize);

fn nodes_of<'b, 'a>(fdt: &'b Fdt<'a>, path: &str) -> Result<Chain<'b, 'a>, DevError> {
    let (chain, n) = chain(fdt, path).ok_or(DevError::NotFound)?;
    if n < 2 {
        return Err(DevError::NotFound);
    }
    let mut nodes: [FdtNode<'b, 'a>; 8] = [chain[0].ok_or(DevError::NotFound)?; 8];
    for (k, slot) in chain.iter().enumerate().take(n) {
        nodes[k] = slot.ok_or(DevError::NotFound)?;
    }
    Ok((nodes, n))
}

/// The `reg` ranges of the node at `path`, translated to physical addresses through every
/// parent bus's `ranges` (exact, not rounded to pages). At most `N` ranges.
pub fn translated_regs<const N: usize>(fdt: &Fdt<'_>, path: &str) -> Result<List<PhysRange, N>, DevError> {
    let (nodes, n) = nodes_of(fdt, path)?;
    reg_ranges(&nodes[..n])
}

fn reg_ranges<const N: usize>(nodes: &[FdtNode<'_, '_>]) -> Result<List<PhysRange, N>, DevError> {
    let node = nodes[nodes.len() - 1];
    let parent = nodes[nodes.len() - 2];
    let (ac, sc) = (cells(&parent, "#address-cells", 2), cells(&parent, "#size-cells", 1));
    let reg = node.property("reg").map(|p| p.value).unwrap_or(&[]);
    let stride = 4 * (ac + sc);
    if ac == 0 || ac > 2 || sc > 2 || reg.is_empty() || !reg.len().is_multiple_of(stride) {
        return Err(DevError::NoRegs);
    }
    let mut out = List::new();
    for e in reg.chunks_exact(stride) {
        let (mut addr, size) = (be(&e[..4 * ac]), be(&e[4 * ac..]));
        if size == 0 {
            return Err(DevError::NoRegs);
        }
        // Walk up: each bus between the device and the root translates through its ranges.
        for k in (1..nodes.len() - 1).rev() {
            let bus = nodes[k];
            let pac = cells(&nodes[k - 1], "#address-cells", 2);
            addr = up(&bus, pac, addr, size).ok_or(DevError::Untranslatable)?;
        }
        addr.checked_add(size).ok_or(DevError::Untranslatable)?;
        out.push(PhysRange::new(addr, size)).map_err(|_| DevError::TooBig)?;
    }
    Ok(out)
}

/// Resolves the device at `path` in the host tree.
pub fn resolve<'a>(fdt: &Fdt<'a>, path: &'a str) -> Result<Device<'a>, DevError> {
    let (nodes, n) = nodes_of(fdt, path)?;
    let nodes = &nodes[..n];
    let node = nodes[n - 1];
    if node.property("status").and_then(|p| p.as_str()).is_some_and(|s| s != "okay" && s != "ok") {
        return Err(DevError::Disabled);
    }
    let mut dev = Device { path, ..Device::default() };
    for r in reg_ranges::<MAX_REGS>(nodes)?.iter() {
        let start = r.base.0 & !(PAGE - 1);
        let end = (r.base.0 + r.size).next_multiple_of(PAGE);
        dev.regs.push(*r).map_err(|_| DevError::TooBig)?;
        dev.pages.push(PhysRange::new(start, end - start)).map_err(|_| DevError::TooBig)?;
    }
    if let Some(p) = node.property("interrupts") {
        if !p.value.len().is_multiple_of(12) {
            return Err(DevError::BadInterrupts);
        }
        for spec in p.value.chunks_exact(12) {
            let (kind, num) = (be(&spec[..4]), be(&spec[4..8]) as u32);
            match kind {
                0 if num < 988 => dev.spis.push(32 + num).map_err(|_| DevError::TooBig)?,
                1 => return Err(DevError::PerCpuInterrupt(16 + num)),
                _ => return Err(DevError::BadInterrupts),
            }
        }
    } else if node.property("interrupts-extended").is_some() {
        return Err(DevError::BadInterrupts);
    }
    Ok(dev)
}

/// `window` minus `holes`, as ascending disjoint ranges (the board-tree domain's device
/// mappings: every device window minus the hypervisor's pages and other domains' devices).
pub fn subtract(window: PhysRange, holes: &[PhysRange]) -> alloc::vec::Vec<PhysRange> {
    let mut sorted: alloc::vec::Vec<PhysRange> = holes.iter().copied().filter(|h| h.overlaps(&window)).collect();
    sorted.sort_by_key(|h| h.base.0);
    let mut out = alloc::vec::Vec::new();
    let mut at = window.base.0;
    for h in sorted {
        if h.base.0 > at {
            out.push(PhysRange::new(at, h.base.0 - at));
        }
        at = at.max(h.end());
    }
    if at < window.end() {
        out.push(PhysRange::new(at, window.end() - at));
    }
    out
}

/// Something a device must not share pages or interrupts with.
#[derive(Clone, Copy, Debug, Default)]
pub struct Reserved {
    /// What it is, for messages.
    pub what: &'static str,
    /// Its MMIO (or RAM).
    pub range: PhysRange,
    /// Its interrupt, if any.
    pub intid: Option<u32>,
}

/// Checks `dev` against what is reserved and against devices already handed out.
pub fn check_disjoint(dev: &Device<'_>, reserved: &[Reserved], given: &[Device<'_>]) -> Result<(), DevError> {
    for p in dev.pages.iter() {
        if let Some(r) = reserved.iter().find(|r| r.range.overlaps(p)) {
            return Err(DevError::SharesPage(r.what));
        }
        if given.iter().any(|g| g.pages.iter().any(|q| q.overlaps(p))) {
            return Err(DevError::SharesPage("a device given to another domain"));
        }
    }
    for &n in dev.spis.iter() {
        if let Some(r) = reserved.iter().find(|r| r.intid == Some(n)) {
            return Err(DevError::SharesInterrupt(n, r.what));
        }
        if given.iter().any(|g| g.spis.contains(&n)) {
            return Err(DevError::SharesInterrupt(n, "a device given to another domain"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subtract_holes() {
        let w = PhysRange::new(0x1000, 0x9000);
        let holes = [PhysRange::new(0x5000, 0x1000), PhysRange::new(0x0, 0x2000), PhysRange::new(0x5800, 0x1000)];
        assert_eq!(subtract(w, &holes), [PhysRange::new(0x2000, 0x3000), PhysRange::new(0x6800, 0x3800)]);
        assert_eq!(subtract(w, &[]), [w]);
        assert!(subtract(w, &[PhysRange::new(0, 0x10000)]).is_empty());
    }
    use crate::fdtw::FdtWriter;
    use alloc::vec::Vec;

    fn tree() -> Vec<u8> {
        let mut w = FdtWriter::new();
        w.begin_node("");
        w.prop_u32("#address-cells", 2);
        w.prop_u32("#size-cells", 2);
        w.begin_node("virtio_mmio@a003e00");
        w.prop_u64s("reg", &[0xa003e00, 0x200]);
        w.prop_cells("interrupts", &[0, 47, 1]);
        w.end_node();
        w.begin_node("off@a000000");
        w.prop_u64s("reg", &[0xa000000, 0x200]);
        w.prop_str("status", "disabled");
        w.end_node();
        w.begin_node("soc");
        w.prop_u32("#address-cells", 1);
        w.prop_u32("#size-cells", 1);
        w.prop_cells("ranges", &[0x7e00_0000, 0, 0xfe00_0000, 0x0180_0000]);
        w.begin_node("mmc@7e340000");
        w.prop_cells("reg", &[0x7e34_0000, 0x100]);
        w.prop_cells("interrupts", &[0, 126, 4]);
        w.end_node();
        w.begin_node("timer@7e003000");
        w.prop_cells("reg", &[0x7e00_3000, 0x1000]);
        w.prop_cells("interrupts", &[1, 9, 4]);
        w.end_node();
        w.end_node();
        w.end_node();
        w.finish(0).unwrap()
    }

    #[test]
    fn resolves_root_and_translated_devices() {
        let blob = tree();
        let fdt = Fdt::new(&blob).unwrap();
        let d = resolve(&fdt, "/virtio_mmio@a003e00").unwrap();
        assert_eq!(&d.regs[..], &[PhysRange::new(0xa003e00, 0x200)]);
        assert_eq!(&d.pages[..], &[PhysRange::new(0xa003000, 0x1000)]);
        assert_eq!(&d.spis[..], &[79]);
        let m = resolve(&fdt, "/soc/mmc@7e340000").unwrap();
        assert_eq!(m.regs[0], PhysRange::new(0xfe34_0000, 0x100));
        assert_eq!(&m.spis[..], &[158]);
        assert_eq!(resolve(&fdt, "/nope").unwrap_err(), DevError::NotFound);
        assert_eq!(resolve(&fdt, "/off@a000000").unwrap_err(), DevError::Disabled);
        assert_eq!(resolve(&fdt, "/soc/timer@7e003000").unwrap_err(), DevError::PerCpuInterrupt(25));
    }

    /// Found by the `host_dt` fuzz target: a `ranges` entry whose parent address plus the
    /// offset wraps, and degenerate cell counts (an entry of zero bytes), are untranslatable.
    #[test]
    fn bad_ranges_are_untranslatable() {
        let with = |cells: [u32; 3], ranges: &[u32]| {
            let mut w = FdtWriter::new();
            w.begin_node("");
            w.prop_u32("#address-cells", cells[0]);
            w.prop_u32("#size-cells", 1);
            w.begin_node("bus");
            w.prop_u32("#address-cells", cells[1]);
            w.prop_u32("#size-cells", cells[2]);
            w.prop_cells("ranges", ranges);
            w.begin_node("dev@100");
            w.prop_cells("reg", &[0x100, 0x10][..(cells[1] + cells[2]).clamp(1, 2) as usize]);
            w.end_node();
            w.end_node();
            w.end_node();
            let blob = w.finish(0).unwrap();
            translated_regs::<2>(&Fdt::new(&blob).unwrap(), "/bus/dev@100").map(|l| l[0])
        };
        assert_eq!(with([2, 1, 1], &[0, 0xffff_ffff, 0xffff_ff80, 0x1000]), Err(DevError::Untranslatable));
        assert_eq!(with([2, 1, 1], &[0, 0, 0x1000, 0x1000]), Ok(PhysRange::new(0x1100, 0x10)));
        assert_eq!(with([0, 1, 1], &[0, 0x1000]), Err(DevError::Untranslatable));
        assert_eq!(with([2, 1, 1], &[0, 0, 0x1000, 0x1000][..0]), Ok(PhysRange::new(0x100, 0x10)));
    }

    #[test]
    fn refuses_shared_pages_and_interrupts() {
        let blob = tree();
        let fdt = Fdt::new(&blob).unwrap();
        let d = resolve(&fdt, "/virtio_mmio@a003e00").unwrap();
        let uart =
            Reserved { what: "the hypervisor's UART", range: PhysRange::new(0x900_0000, 0x1000), intid: Some(33) };
        assert_eq!(check_disjoint(&d, &[uart], &[]), Ok(()));
        let mut other = d;
        other.spis = List::from_slice(&[80]).unwrap();
        assert_eq!(
            check_disjoint(&d, &[uart], &[other]),
            Err(DevError::SharesPage("a device given to another domain"))
        );
        let vuart = Reserved { what: "the console", range: PhysRange::new(0, 0), intid: Some(79) };
        assert!(matches!(check_disjoint(&d, &[vuart], &[]), Err(DevError::SharesInterrupt(79, _))));
    }
}
