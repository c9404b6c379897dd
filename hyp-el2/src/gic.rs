//! The physical GIC (v2 MMIO or v3 system registers + MMIO) and this CPU's virtual CPU
//! interface (list registers, maintenance control).
//!
//! The hypervisor runs with EOImode = 1: acknowledging and EOI-ing an interrupt only drops the
//! running priority; deactivation is separate. Interrupts the hypervisor consumes itself are
//! deactivated at once; interrupts forwarded to a guest with the list register's HW bit stay
//! active until the guest's own EOI deactivates them (so a level-sensitive device cannot storm).
//!
//! The MMIO register blocks (distributor, GICv2 CPU and virtual interface control, GICv3
//! redistributor frames) are `tock-registers` structures with named fields, at the offsets and
//! with the fields of `hyp_core::gicregs` (the same definitions the vGIC decodes guest
//! accesses with); the system registers
//! come from `aarch64-cpu`, except the ICC_* CPU-interface registers and ICH_ELRSR/ICH_EISR it
//! lacks (hand-written `mrs`/`msr`).
//!
//! Invariants: [`init`] runs once on the boot CPU before any other function here, [`init_cpu`]
//! once per CPU before it runs a guest; list registers are only touched by their own CPU.

use crate::arch::{self, read_sysreg, write_sysreg};
use crate::boot::MAX_CPUS;
use crate::sync::Once;
use aarch64_cpu::registers::{
    Readable, Writeable, ICC_SRE_EL2, ICH_HCR_EL2, ICH_LR0_EL2, ICH_LR1_EL2, ICH_LR2_EL2, ICH_LR3_EL2, ICH_LR4_EL2,
    ICH_LR5_EL2, ICH_LR6_EL2, ICH_LR7_EL2, ICH_VMCR_EL2, ICH_VTR_EL2, MPIDR_EL1,
};
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use hyp_core::gicregs::{
    gicd as d, gicr as r, GICC_CTLR, GICD_CTLR, GICD_TYPER, GICH_HCR, GICH_VTR, GICR_TYPER, GICR_WAKER,
};
use hyp_core::vgic::{Lr, Pending, Version};
use tock_registers::interfaces::ReadWriteable;
use tock_registers::register_structs;
use tock_registers::registers::{ReadOnly, ReadWrite, WriteOnly};

/// A register offset of `hyp_core::gicregs` as a structure offset.
const fn at(off: u64) -> usize {
    off as usize
}

/// SGI the hypervisor uses to make another CPU look at its vCPU's interrupt queue.
pub const SGI_KICK: u32 = 0;
/// GIC maintenance interrupt (PPI 9).
pub const MAINTENANCE: u32 = 25;
/// Spurious interrupt ID.
pub const SPURIOUS: u32 = 1023;
const PRIO: u32 = 0xa0;

/// The physical GIC as the device tree describes it.
#[derive(Clone, Copy, Debug)]
pub struct Gic {
    /// Version.
    pub version: Version,
    /// Distributor.
    pub dist: u64,
    /// GICv2 CPU interface or GICv3 redistributor region.
    pub cpu_or_redist: u64,
    /// GICv2 virtual interface control.
    pub hyp: u64,
    /// GICv2 virtual CPU interface.
    pub vcpu: u64,
    /// Interrupt IDs the distributor implements.
    pub lines: usize,
    /// List registers per CPU.
    pub nr_lrs: usize,
}

static GIC: Once<Gic> = Once::new();
/// What the per-interrupt paths need, as plain words set once by [`init`] before any
/// interrupt is taken (so those paths skip [`get`]'s check): GICv3 or not, the GICv2 CPU
/// interface and GICH bases, and the mask of the managed list registers.
static IS_V3: AtomicBool = AtomicBool::new(false);
static GICC_BASE: AtomicU64 = AtomicU64::new(0);
static GICH_BASE: AtomicU64 = AtomicU64::new(0);
static LR_MASK: AtomicU32 = AtomicU32::new(0);

#[inline]
fn v3() -> bool {
    IS_V3.load(Ordering::Relaxed)
}

#[inline]
fn gicc_fast() -> &'static Gicc {
    gicc(GICC_BASE.load(Ordering::Relaxed))
}

#[inline]
fn gich_fast() -> &'static Gich {
    gich(GICH_BASE.load(Ordering::Relaxed))
}
/// Per CPU: GICv2 CPU-interface mask (for GICD_SGIR) or GICv3 redistributor base.
static PER_CPU: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];
/// Per CPU: MPIDR affinity (GICv3 SGI targets).
static MPIDR: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];

register_structs! {
    /// The distributor's first 4 KiB (all of a GICv2's; a GICv3's banked SGI/PPI registers are
    /// in the redistributors).
    Gicd {
        (at(d::CTLR) => ctlr: ReadWrite<u32, GICD_CTLR::Register>),
        (at(d::TYPER) => typer: ReadOnly<u32, GICD_TYPER::Register>),
        (at(d::IIDR) => _r0),
        (at(d::IGROUPR) => igroupr: [ReadWrite<u32>; 32]),
        (at(d::ISENABLER) => isenabler: [ReadWrite<u32>; 32]),
        (at(d::ICENABLER) => icenabler: [ReadWrite<u32>; 32]),
        (at(d::ISPENDR) => _r1),
        (at(d::ICPENDR) => icpendr: [ReadWrite<u32>; 32]),
        (at(d::ISACTIVER) => _r2),
        (at(d::ICACTIVER) => icactiver: [ReadWrite<u32>; 32]),
        (at(d::IPRIORITYR) => ipriorityr: [ReadWrite<u32>; 255]),
        (at(d::ITARGETSR) - 4 => _r3),
        (at(d::ITARGETSR) => itargetsr: [ReadWrite<u8>; 1020]),
        (at(d::ICFGR) - 4 => _r4),
        (at(d::ICFGR) => icfgr: [ReadWrite<u32>; 64]),
        (at(d::ICFGR_END) => _r5),
        (at(d::SGIR) => sgir: WriteOnly<u32>),
        (at(d::SGIR) + 4 => _r6),
        (0x1000 => @END),
    },
    /// GICv3 distributor: interrupt routing (at distributor + `gicd::IROUTER`).
    GicdRouter {
        (0x000 => irouter: [ReadWrite<u64>; 1020]),
        (0x1fe0 => @END),
    },
    /// GICv2 CPU interface.
    Gicc {
        (0x000 => ctlr: ReadWrite<u32, GICC_CTLR::Register>),
        (0x004 => pmr: ReadWrite<u32>),
        (0x008 => _r0),
        (0x00c => iar: ReadOnly<u32>),
        (0x010 => eoir: WriteOnly<u32>),
        (0x014 => _r1),
        (0x1000 => dir: WriteOnly<u32>),
        (0x1004 => @END),
    },
    /// GICv2 virtual interface control.
    Gich {
        (0x000 => hcr: ReadWrite<u32, GICH_HCR::Register>),
        (0x004 => vtr: ReadOnly<u32, GICH_VTR::Register>),
        (0x008 => _r0),
        (0x020 => eisr0: ReadOnly<u32>),
        (0x024 => _r1),
        (0x030 => elrsr0: ReadOnly<u32>),
        (0x034 => _r2),
        (0x100 => lr: [ReadWrite<u32>; 64]),
        (0x200 => @END),
    },
    /// GICv3 redistributor: its control frame.
    GicrRd {
        (at(r::CTLR) => _r0),
        (at(r::TYPER) => typer: ReadOnly<u64, GICR_TYPER::Register>),
        (at(r::TYPER) + 8 => _r1),
        (at(r::WAKER) => waker: ReadWrite<u32, GICR_WAKER::Register>),
        (at(r::WAKER) + 4 => @END),
    },
    /// GICv3 redistributor: its SGI/PPI frame (at + `gicr::SGI_FRAME`), the distributor's
    /// registers for the private interrupts at the distributor's offsets.
    GicrSgi {
        (0x000 => _r0),
        (at(d::IGROUPR) => igroupr0: ReadWrite<u32>),
        (at(d::IGROUPR) + 4 => _r1),
        (at(d::ISENABLER) => isenabler0: ReadWrite<u32>),
        (at(d::ISENABLER) + 4 => _r2),
        (at(d::ICENABLER) => icenabler0: ReadWrite<u32>),
        (at(d::ICENABLER) + 4 => _r3),
        (at(d::ICACTIVER) => icactiver0: ReadWrite<u32>),
        (at(d::ICACTIVER) + 4 => _r4),
        (at(d::IPRIORITYR) => ipriorityr: [ReadWrite<u32>; 8]),
        (at(d::IPRIORITYR) + 32 => @END),
    }
}

/// The register block of type `T` at `addr`.
///
/// # Safety
/// `addr` must be the start of a `T`-sized GIC register block inside a region the device tree
/// names, identity-mapped as Device memory at EL2 for the hypervisor's whole run.
unsafe fn block<T>(addr: u64) -> &'static T {
    // SAFETY: the caller's contract; the blocks hold only volatile register cells.
    unsafe { &*(addr as *const T) }
}

/// The distributor at `dist` (the GIC node's first region, at least 4 KiB).
fn gicd(dist: u64) -> &'static Gicd {
    // SAFETY: `dist` is the device tree's distributor region (the only callers pass it).
    unsafe { block(dist) }
}

/// A GICv3 distributor's routing registers (`dist` + `gicd::IROUTER`; a GICv3 distributor is 64 KiB).
fn gicd_router(dist: u64) -> &'static GicdRouter {
    // SAFETY: as above, inside the 64 KiB GICv3 distributor region.
    unsafe { block(dist + d::IROUTER) }
}

/// The GICv2 CPU interface at `c` (the node's second region, 8 KiB).
fn gicc(c: u64) -> &'static Gicc {
    // SAFETY: `c` is the device tree's GICv2 CPU interface region.
    unsafe { block(c) }
}

/// The GICv2 virtual interface control at `h` (the node's third region, at least 512 bytes).
fn gich(h: u64) -> &'static Gich {
    // SAFETY: `h` is the device tree's GICH region.
    unsafe { block(h) }
}

/// This CPU's redistributor frames (control, SGI/PPI) at `rbase`.
fn gicr(rbase: u64) -> (&'static GicrRd, &'static GicrSgi) {
    // SAFETY: `rbase` is a redistributor of the GIC node's redistributor region (128 KiB each:
    // the control frame, then the SGI/PPI frame).
    unsafe { (block(rbase), block(rbase + r::SGI_FRAME)) }
}

/// The GIC (after [`init`]).
pub fn get() -> &'static Gic {
    match GIC.get() {
        Some(g) => g,
        None => crate::crash::power_off(false, format_args!("GIC used before initialisation")),
    }
}

fn wait_rwp(g: &Gic) {
    for _ in 0..1_000_000 {
        if !gicd(g.dist).ctlr.is_set(GICD_CTLR::RWP) {
            return;
        }
    }
}

/// Initialises the distributor (boot CPU). `cpus` are the MPIDRs in /cpus order.
pub fn init(
    version: Version,
    dist: u64,
    cpu_or_redist: u64,
    hyp: u64,
    vcpu: u64,
    cpus: &[u64],
) -> Result<&'static Gic, &'static str> {
    let lines = (gicd(dist).typer.read(GICD_TYPER::IT_LINES) as usize + 1) * 32;
    let lines = lines.min(1020);
    for (i, m) in cpus.iter().enumerate().take(MAX_CPUS) {
        MPIDR[i].store(*m, Ordering::Relaxed);
    }
    let nr_lrs = match version {
        Version::V2 => {
            if hyp == 0 || vcpu == 0 {
                return Err("the GICv2 node has no GICH/GICV regions (no virtualization extensions)");
            }
            gich(hyp).vtr.read(GICH_VTR::LIST_REGS) as usize + 1
        }
        Version::V3 => {
            // Enables the system-register interface at EL2 (and lets EL1 use its own); required
            // before any ICC_*/ICH_* access.
            ICC_SRE_EL2.set(0b1111);
            arch::isb();
            (ICH_VTR_EL2.get() as usize & 0x1f) + 1
        }
    };
    let g = Gic { version, dist, cpu_or_redist, hyp, vcpu, lines, nr_lrs };
    let d = gicd(dist);
    d.ctlr.set(0);
    if version == Version::V3 {
        wait_rwp(&g);
    }
    for w in 1..lines / 32 {
        d.icenabler[w].set(u32::MAX); // disable
        d.icpendr[w].set(u32::MAX); // clear pending
        d.icactiver[w].set(u32::MAX); // deactivate
        if version == Version::V3 {
            d.igroupr[w].set(u32::MAX); // group 1
        }
    }
    for n in 32..lines {
        if n % 4 == 0 {
            d.ipriorityr[n / 4].set(PRIO * 0x0101_0101);
        }
        if version == Version::V2 {
            d.itargetsr[n].set(1); // CPU interface 0 until routed
        }
    }
    if version == Version::V3 {
        let r = gicd_router(dist);
        for n in 32..lines {
            r.irouter[n].set(aff_route(cpus.first().copied().unwrap_or(0)));
        }
        d.ctlr.write(GICD_CTLR::ARE::SET + GICD_CTLR::ENABLE_GRP1::SET + GICD_CTLR::ENABLE_GRP0::SET);
        wait_rwp(&g);
    } else {
        d.ctlr.write(GICD_CTLR::ENABLE_GRP0::SET);
    }
    IS_V3.store(version == Version::V3, Ordering::Relaxed);
    if version == Version::V2 {
        GICC_BASE.store(cpu_or_redist, Ordering::Relaxed);
        GICH_BASE.store(hyp, Ordering::Relaxed);
    }
    LR_MASK.store((1u32 << nr_lrs.min(8)) - 1, Ordering::Relaxed);
    GIC.call_once(|| g);
    Ok(get())
}

fn aff_route(mpidr: u64) -> u64 {
    (mpidr & 0xff_ffff) | ((mpidr >> 32) & 0xff) << 32
}

/// Per-CPU set-up: CPU interface, private interrupts the hypervisor needs, virtual interface.
pub fn init_cpu(cpu: usize) {
    let g = get();
    let me = MPIDR_EL1.get() & 0xff_00ff_ffff;
    let wanted = (1 << SGI_KICK) | (1 << MAINTENANCE) | (1 << hyp_core::vgic::VTIMER_PPI) | (1 << arch::HYP_TIMER_PPI);
    match g.version {
        Version::V2 => {
            // The banked private-interrupt registers of this CPU.
            let d = gicd(g.dist);
            d.icenabler[0].set(u32::MAX);
            d.icactiver[0].set(u32::MAX);
            for p in &d.ipriorityr[..8] {
                p.set(PRIO * 0x0101_0101);
            }
            d.isenabler[0].set(wanted);
            // ITARGETSR0 reads back this CPU interface's own bit.
            PER_CPU[cpu].store(u64::from(d.itargetsr[0].get()), Ordering::Relaxed);
            let c = gicc(g.cpu_or_redist);
            c.pmr.set(0xff); // everything
            c.ctlr.write(GICC_CTLR::ENABLE::SET + GICC_CTLR::EOI_MODE::SET);
            let h = gich(g.hyp);
            h.hcr.write(GICH_HCR::EN::SET);
            for lr in &h.lr[..g.nr_lrs] {
                lr.set(0);
            }
        }
        Version::V3 => {
            let mut rbase = g.cpu_or_redist;
            let mut found = 0;
            for _ in 0..64 {
                let typer = gicr(rbase).0.typer.extract();
                let mine = (me & 0xff_ffff) | ((me >> 32) & 0xff) << 24;
                if typer.read(GICR_TYPER::AFFINITY) == mine {
                    found = rbase;
                    break;
                }
                if typer.is_set(GICR_TYPER::LAST) {
                    break;
                }
                rbase += 0x2_0000;
            }
            if found == 0 {
                crate::crash::power_off(false, format_args!("no GICv3 redistributor for MPIDR {me:#x}"));
            }
            PER_CPU[cpu].store(found, Ordering::Relaxed);
            let (rd, sgi) = gicr(found);
            rd.waker.modify(GICR_WAKER::PROCESSOR_SLEEP::CLEAR);
            for _ in 0..1_000_000 {
                if !rd.waker.is_set(GICR_WAKER::CHILDREN_ASLEEP) {
                    break;
                }
            }
            sgi.igroupr0.set(u32::MAX); // group 1
            sgi.icenabler0.set(u32::MAX);
            sgi.icactiver0.set(u32::MAX);
            for p in &sgi.ipriorityr {
                p.set(PRIO * 0x0101_0101);
            }
            sgi.isenabler0.set(wanted);
            // SAFETY: CPU-interface set-up of this CPU at EL2: system registers on, all
            // priorities unmasked, EOImode = 1, group 1 enabled, virtual interface on.
            unsafe {
                ICC_SRE_EL2.set(0b1111);
                arch::isb();
                write_sysreg!("icc_pmr_el1", 0xff);
                write_sysreg!("icc_bpr1_el1", 0);
                write_sysreg!("icc_ctlr_el1", 1 << 1);
                write_sysreg!("icc_igrpen1_el1", 1);
                ICH_VMCR_EL2.set(0);
                ICH_HCR_EL2.set(1);
            }
            arch::isb();
            for n in 0..g.nr_lrs {
                write_lr(n, 0);
            }
        }
    }
}

/// Acknowledges the highest-priority pending interrupt.
pub fn ack() -> u32 {
    if v3() {
        read_sysreg!("icc_iar1_el1") as u32 & 0xff_ffff
    } else {
        gicc_fast().iar.get() & 0x3ff
    }
}

/// Drops the running priority of `intid` (EOImode = 1: it stays active).
#[inline]
pub fn priority_drop(intid: u32) {
    if v3() {
        // SAFETY: EOI of an interrupt this CPU acknowledged.
        unsafe { write_sysreg!("icc_eoir1_el1", u64::from(intid)) }
    } else {
        gicc_fast().eoir.set(intid)
    }
}

/// Deactivates `intid` (acknowledged by this CPU, priority dropped).
pub fn deactivate(intid: u32) {
    if v3() {
        // SAFETY: deactivation of an interrupt this CPU acknowledged.
        unsafe { write_sysreg!("icc_dir_el1", u64::from(intid)) }
    } else {
        gicc_fast().dir.set(intid)
    }
}

/// Clears the active state of this CPU's private interrupt `intid` (vCPU reset).
pub fn clear_private_active(cpu: usize, intid: u32) {
    let g = get();
    match g.version {
        Version::V2 => gicd(g.dist).icactiver[0].set(1 << intid),
        Version::V3 => gicr(PER_CPU[cpu].load(Ordering::Relaxed)).1.icactiver0.set(1 << intid),
    }
}

/// Sends SGI `sgi` to physical CPU `cpu`.
pub fn send_sgi(cpu: usize, sgi: u32) {
    let g = get();
    arch::dsb_ish();
    match g.version {
        Version::V2 => {
            let mask = PER_CPU[cpu].load(Ordering::Relaxed) as u32;
            gicd(g.dist).sgir.set((mask << 16) | sgi);
        }
        Version::V3 => {
            let m = MPIDR[cpu].load(Ordering::Relaxed);
            let v = (1u64 << (m & 0xf))
                | ((m >> 8) & 0xff) << 16
                | u64::from(sgi) << 24
                | ((m >> 16) & 0xff) << 32
                | ((m >> 32) & 0xff) << 48;
            // SAFETY: generates an SGI; no memory effect.
            unsafe { write_sysreg!("icc_sgi1r_el1", v) };
            arch::isb();
        }
    }
}

/// Enables or disables SPI `intid`.
pub fn spi_enable(intid: u32, on: bool) {
    let g = get();
    let d = gicd(g.dist);
    let regs = if on { &d.isenabler } else { &d.icenabler };
    if let Some(r) = regs.get(intid as usize / 32) {
        r.set(1 << (intid % 32));
    }
}

/// Routes SPI `intid` to physical CPU `cpu`.
pub fn spi_route(intid: u32, cpu: usize) {
    let g = get();
    match g.version {
        Version::V2 => {
            // GICD_ITARGETSR is byte-accessible.
            if let Some(t) = gicd(g.dist).itargetsr.get(intid as usize) {
                t.set(PER_CPU[cpu].load(Ordering::Relaxed) as u8);
            }
        }
        Version::V3 => {
            if let Some(r) = gicd_router(g.dist).irouter.get(intid as usize) {
                r.set(aff_route(MPIDR[cpu].load(Ordering::Relaxed)));
            }
        }
    }
}

/// Sets SPI `intid`'s trigger mode.
pub fn spi_config(intid: u32, edge: bool) {
    let g = get();
    let Some(reg) = gicd(g.dist).icfgr.get(intid as usize / 16) else { return };
    let sh = 2 * (intid % 16) + 1;
    reg.set((reg.get() & !(1 << sh)) | (u32::from(edge) << sh));
}

/// Reads list register `n` of this CPU.
pub fn read_lr(n: usize) -> Lr {
    let g = get();
    match g.version {
        Version::V2 => Lr::decode_v2(gich(g.hyp).lr[n].get()),
        Version::V3 => Lr::decode_v3(read_lr_v3(n)),
    }
}

/// Writes list register `n` of this CPU.
pub fn write_lr_decoded(n: usize, lr: &Lr) {
    let g = get();
    match g.version {
        Version::V2 => gich(g.hyp).lr[n].set(lr.encode_v2()),
        Version::V3 => write_lr(n, lr.encode_v3()),
    }
}

fn read_lr_v3(n: usize) -> u64 {
    match n {
        0 => ICH_LR0_EL2.get(),
        1 => ICH_LR1_EL2.get(),
        2 => ICH_LR2_EL2.get(),
        3 => ICH_LR3_EL2.get(),
        4 => ICH_LR4_EL2.get(),
        5 => ICH_LR5_EL2.get(),
        6 => ICH_LR6_EL2.get(),
        7 => ICH_LR7_EL2.get(),
        _ => 0,
    }
}

fn write_lr(n: usize, v: u64) {
    if v3() {
        write_lr_v3(n, v);
    } else if let Some(lr) = gich_fast().lr.get(n) {
        lr.set(v as u32);
    }
}

#[inline]
fn write_lr_v3(n: usize, v: u64) {
    // List registers of this CPU's virtual interface; they only affect the guest.
    match n {
        0 => ICH_LR0_EL2.set(v),
        1 => ICH_LR1_EL2.set(v),
        2 => ICH_LR2_EL2.set(v),
        3 => ICH_LR3_EL2.set(v),
        4 => ICH_LR4_EL2.set(v),
        5 => ICH_LR5_EL2.set(v),
        6 => ICH_LR6_EL2.set(v),
        7 => ICH_LR7_EL2.set(v),
        _ => {}
    }
}

/// Puts `p` into a free list register of this CPU, unless none is free or one already holds
/// its ID (the caller then queues it, for the merge). The injection fast path: one read of
/// ELRSR, and the in-use registers' IDs only when some are in use.
#[inline]
pub fn try_inject(p: Pending) -> bool {
    let all = LR_MASK.load(Ordering::Relaxed);
    let lr = Lr::from_pending(p);
    if v3() {
        let empty = read_sysreg!("ich_elrsr_el2") as u32 & all;
        if empty == 0 || (empty != all && !ids_differ(empty, all, p.intid)) {
            return false;
        }
        write_lr_v3(empty.trailing_zeros() as usize, lr.encode_v3());
    } else {
        let h = gich_fast();
        let empty = h.elrsr0.get() & all;
        if empty == 0 || (empty != all && !ids_differ(empty, all, p.intid)) {
            return false;
        }
        h.lr[empty.trailing_zeros() as usize].set(lr.encode_v2());
    }
    true
}

/// Whether no list register outside `empty` (of `all`) holds `intid` (out of line: the usual
/// injection finds every register free).
#[inline(never)]
fn ids_differ(empty: u32, all: u32, intid: u16) -> bool {
    let mut used = !empty & all;
    while used != 0 {
        let i = used.trailing_zeros() as usize;
        used &= used - 1;
        if read_lr(i).intid == intid {
            return false;
        }
    }
    true
}

/// List registers in use (at most 8 are managed).
pub fn nr_lrs() -> usize {
    get().nr_lrs.min(8)
}

/// Bit mask of this CPU's list registers that hold no interrupt (ELRSR).
pub fn empty_lrs() -> u32 {
    let g = get();
    match g.version {
        Version::V2 => gich(g.hyp).elrsr0.get(),
        Version::V3 => read_sysreg!("ich_elrsr_el2") as u32,
    }
}

/// Bit mask of list registers whose guest EOI asked for maintenance.
pub fn eoi_status() -> u32 {
    let g = get();
    match g.version {
        Version::V2 => gich(g.hyp).eisr0.get(),
        Version::V3 => read_sysreg!("ich_eisr_el2") as u32,
    }
}

/// Asks for a maintenance interrupt when at most one list register is in use.
pub fn set_underflow(on: bool) {
    let g = get();
    let v = (GICH_HCR::EN::SET + GICH_HCR::UIE.val(u32::from(on))).value;
    match g.version {
        Version::V2 => gich(g.hyp).hcr.set(v),
        Version::V3 => ICH_HCR_EL2.set(u64::from(v)), // virtual interface control of this CPU
    }
}
