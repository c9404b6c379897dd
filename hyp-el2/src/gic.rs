//! The physical GIC (v2 MMIO or v3 system registers + MMIO) and this CPU's virtual CPU
//! interface (list registers, maintenance control).
//!
//! The hypervisor runs with EOImode = 1: acknowledging and EOI-ing an interrupt only drops the
//! running priority; deactivation is separate. Interrupts the hypervisor consumes itself are
//! deactivated at once; interrupts forwarded to a guest with the list register's HW bit stay
//! active until the guest's own EOI deactivates them (so a level-sensitive device cannot storm).
//!
//! Invariants: [`init`] runs once on the boot CPU before any other function here, [`init_cpu`]
//! once per CPU before it runs a guest; list registers are only touched by their own CPU.

use crate::arch::{self, read_sysreg, write_sysreg};
use crate::boot::MAX_CPUS;
use crate::sync::Once;
use core::ptr;
use core::sync::atomic::{AtomicU64, Ordering};
use hyp_core::vgic::{Lr, Version};

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
/// Per CPU: GICv2 CPU-interface mask (for GICD_SGIR) or GICv3 redistributor base.
static PER_CPU: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];
/// Per CPU: MPIDR affinity (GICv3 SGI targets).
static MPIDR: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];

fn rd(addr: u64) -> u32 {
    // SAFETY: `addr` is a GIC register inside a region the device tree names, identity mapped
    // as Device memory at EL2.
    unsafe { ptr::read_volatile(addr as *const u32) }
}

fn wr(addr: u64, v: u32) {
    // SAFETY: as in `rd`; GIC register writes have no memory-safety effect on the hypervisor.
    unsafe { ptr::write_volatile(addr as *mut u32, v) }
}

fn wr64(addr: u64, v: u64) {
    // SAFETY: as in `rd` (GICD_IROUTER is a 64-bit register).
    unsafe { ptr::write_volatile(addr as *mut u64, v) }
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
        if rd(g.dist) & (1 << 31) == 0 {
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
    let lines = ((rd(dist + 4) as usize & 0x1f) + 1) * 32;
    let lines = lines.min(1020);
    for (i, m) in cpus.iter().enumerate().take(MAX_CPUS) {
        MPIDR[i].store(*m, Ordering::Relaxed);
    }
    let nr_lrs = match version {
        Version::V2 => {
            if hyp == 0 || vcpu == 0 {
                return Err("the GICv2 node has no GICH/GICV regions (no virtualization extensions)");
            }
            (rd(hyp + 4) as usize & 0x3f) + 1
        }
        Version::V3 => {
            // SAFETY: enables the system-register interface at EL2 (and lets EL1 use its own);
            // required before any ICC_*/ICH_* access.
            unsafe {
                write_sysreg!("icc_sre_el2", 0b1111);
            }
            arch::isb();
            (read_sysreg!("ich_vtr_el2") as usize & 0x1f) + 1
        }
    };
    let g = Gic { version, dist, cpu_or_redist, hyp, vcpu, lines, nr_lrs };
    wr(dist, 0);
    if version == Version::V3 {
        wait_rwp(&g);
    }
    for n in (32..lines).step_by(32) {
        let w = (n / 32 * 4) as u64;
        wr(dist + 0x180 + w, u32::MAX); // disable
        wr(dist + 0x280 + w, u32::MAX); // clear pending
        wr(dist + 0x380 + w, u32::MAX); // deactivate
        if version == Version::V3 {
            wr(dist + 0x080 + w, u32::MAX); // group 1
        }
    }
    for n in (32..lines).step_by(4) {
        wr(dist + 0x400 + n as u64, PRIO * 0x0101_0101);
        if version == Version::V2 {
            wr(dist + 0x800 + n as u64, 0x0101_0101); // CPU interface 0 until routed
        }
    }
    if version == Version::V3 {
        for n in 32..lines {
            wr64(dist + 0x6000 + 8 * n as u64, aff_route(cpus.first().copied().unwrap_or(0)));
        }
        wr(dist, (1 << 4) | 0b11); // ARE, group 0 and 1
        wait_rwp(&g);
    } else {
        wr(dist, 1);
    }
    GIC.set(g);
    Ok(get())
}

fn aff_route(mpidr: u64) -> u64 {
    (mpidr & 0xff_ffff) | ((mpidr >> 32) & 0xff) << 32
}

/// Per-CPU set-up: CPU interface, private interrupts the hypervisor needs, virtual interface.
pub fn init_cpu(cpu: usize) {
    let g = get();
    let me = read_sysreg!("mpidr_el1") & 0xff_00ff_ffff;
    let wanted = (1 << SGI_KICK) | (1 << MAINTENANCE) | (1 << hyp_core::vgic::VTIMER_PPI) | (1 << arch::HYP_TIMER_PPI);
    match g.version {
        Version::V2 => {
            let d = g.dist;
            wr(d + 0x180, u32::MAX);
            wr(d + 0x380, u32::MAX);
            for n in (0..32).step_by(4) {
                wr(d + 0x400 + n, PRIO * 0x0101_0101);
            }
            wr(d + 0x100, wanted);
            PER_CPU[cpu].store(u64::from(rd(d + 0x800) & 0xff), Ordering::Relaxed);
            let c = g.cpu_or_redist;
            wr(c + 0x4, 0xff); // PMR: everything
            wr(c, 1 | (1 << 9)); // enable, EOImode
            wr(g.hyp, 1); // GICH_HCR.En
            for n in 0..g.nr_lrs {
                wr(g.hyp + 0x100 + 4 * n as u64, 0);
            }
        }
        Version::V3 => {
            let mut rbase = g.cpu_or_redist;
            let mut found = 0;
            for _ in 0..64 {
                let typer = u64::from(rd(rbase + 8)) | u64::from(rd(rbase + 12)) << 32;
                let aff = typer >> 32;
                let mine = (me & 0xff_ffff) | ((me >> 32) & 0xff) << 24;
                if aff == mine {
                    found = rbase;
                    break;
                }
                if typer & (1 << 4) != 0 {
                    break;
                }
                rbase += 0x2_0000;
            }
            if found == 0 {
                crate::crash::power_off(false, format_args!("no GICv3 redistributor for MPIDR {me:#x}"));
            }
            PER_CPU[cpu].store(found, Ordering::Relaxed);
            let waker = found + 0x14;
            wr(waker, rd(waker) & !(1 << 1));
            for _ in 0..1_000_000 {
                if rd(waker) & (1 << 2) == 0 {
                    break;
                }
            }
            let sgi = found + 0x1_0000;
            wr(sgi + 0x080, u32::MAX); // group 1
            wr(sgi + 0x180, u32::MAX);
            wr(sgi + 0x380, u32::MAX);
            for n in (0..32).step_by(4) {
                wr(sgi + 0x400 + n, PRIO * 0x0101_0101);
            }
            wr(sgi + 0x100, wanted);
            // SAFETY: CPU-interface set-up of this CPU at EL2: system registers on, all
            // priorities unmasked, EOImode = 1, group 1 enabled, virtual interface on.
            unsafe {
                write_sysreg!("icc_sre_el2", 0b1111);
                arch::isb();
                write_sysreg!("icc_pmr_el1", 0xff);
                write_sysreg!("icc_bpr1_el1", 0);
                write_sysreg!("icc_ctlr_el1", 1 << 1);
                write_sysreg!("icc_igrpen1_el1", 1);
                write_sysreg!("ich_vmcr_el2", 0);
                write_sysreg!("ich_hcr_el2", 1);
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
    let g = get();
    match g.version {
        Version::V2 => rd(g.cpu_or_redist + 0xc) & 0x3ff,
        Version::V3 => read_sysreg!("icc_iar1_el1") as u32 & 0xff_ffff,
    }
}

/// Drops the running priority of `intid` (EOImode = 1: it stays active).
pub fn priority_drop(intid: u32) {
    let g = get();
    match g.version {
        Version::V2 => wr(g.cpu_or_redist + 0x10, intid),
        // SAFETY: EOI of an interrupt this CPU acknowledged.
        Version::V3 => unsafe { write_sysreg!("icc_eoir1_el1", u64::from(intid)) },
    }
}

/// Deactivates `intid` (acknowledged by this CPU, priority dropped).
pub fn deactivate(intid: u32) {
    let g = get();
    match g.version {
        Version::V2 => wr(g.cpu_or_redist + 0x1000, intid),
        // SAFETY: deactivation of an interrupt this CPU acknowledged.
        Version::V3 => unsafe { write_sysreg!("icc_dir_el1", u64::from(intid)) },
    }
}

/// Clears the active state of this CPU's private interrupt `intid` (vCPU reset).
pub fn clear_private_active(cpu: usize, intid: u32) {
    let g = get();
    match g.version {
        Version::V2 => wr(g.dist + 0x380, 1 << intid),
        Version::V3 => wr(PER_CPU[cpu].load(Ordering::Relaxed) + 0x1_0380, 1 << intid),
    }
}

/// Sends SGI `sgi` to physical CPU `cpu`.
pub fn send_sgi(cpu: usize, sgi: u32) {
    let g = get();
    arch::dsb_ish();
    match g.version {
        Version::V2 => {
            let mask = PER_CPU[cpu].load(Ordering::Relaxed) as u32;
            wr(g.dist + 0xf00, (mask << 16) | sgi);
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
    let reg = if on { 0x100 } else { 0x180 };
    wr(g.dist + reg + u64::from(intid / 32) * 4, 1 << (intid % 32));
}

/// Routes SPI `intid` to physical CPU `cpu`.
pub fn spi_route(intid: u32, cpu: usize) {
    let g = get();
    match g.version {
        Version::V2 => {
            let mask = PER_CPU[cpu].load(Ordering::Relaxed) as u8;
            // SAFETY: GICD_ITARGETSR is byte-accessible; `intid` < lines (owned SPI).
            unsafe { ptr::write_volatile((g.dist + 0x800 + u64::from(intid)) as *mut u8, mask) };
        }
        Version::V3 => wr64(g.dist + 0x6000 + 8 * u64::from(intid), aff_route(MPIDR[cpu].load(Ordering::Relaxed))),
    }
}

/// Sets SPI `intid`'s trigger mode.
pub fn spi_config(intid: u32, edge: bool) {
    let g = get();
    let reg = g.dist + 0xc00 + u64::from(intid / 16) * 4;
    let sh = 2 * (intid % 16) + 1;
    let v = (rd(reg) & !(1 << sh)) | (u32::from(edge) << sh);
    wr(reg, v);
}

/// Reads list register `n` of this CPU.
pub fn read_lr(n: usize) -> Lr {
    let g = get();
    match g.version {
        Version::V2 => Lr::decode_v2(rd(g.hyp + 0x100 + 4 * n as u64)),
        Version::V3 => Lr::decode_v3(read_lr_v3(n)),
    }
}

/// Writes list register `n` of this CPU.
pub fn write_lr_decoded(n: usize, lr: &Lr) {
    let g = get();
    match g.version {
        Version::V2 => wr(g.hyp + 0x100 + 4 * n as u64, lr.encode_v2()),
        Version::V3 => write_lr(n, lr.encode_v3()),
    }
}

fn read_lr_v3(n: usize) -> u64 {
    match n {
        0 => read_sysreg!("ich_lr0_el2"),
        1 => read_sysreg!("ich_lr1_el2"),
        2 => read_sysreg!("ich_lr2_el2"),
        3 => read_sysreg!("ich_lr3_el2"),
        4 => read_sysreg!("ich_lr4_el2"),
        5 => read_sysreg!("ich_lr5_el2"),
        6 => read_sysreg!("ich_lr6_el2"),
        7 => read_sysreg!("ich_lr7_el2"),
        _ => 0,
    }
}

fn write_lr(n: usize, v: u64) {
    let g = get();
    if g.version == Version::V2 {
        wr(g.hyp + 0x100 + 4 * n as u64, v as u32);
        return;
    }
    // SAFETY: list registers of this CPU's virtual interface; they only affect the guest.
    unsafe {
        match n {
            0 => write_sysreg!("ich_lr0_el2", v),
            1 => write_sysreg!("ich_lr1_el2", v),
            2 => write_sysreg!("ich_lr2_el2", v),
            3 => write_sysreg!("ich_lr3_el2", v),
            4 => write_sysreg!("ich_lr4_el2", v),
            5 => write_sysreg!("ich_lr5_el2", v),
            6 => write_sysreg!("ich_lr6_el2", v),
            7 => write_sysreg!("ich_lr7_el2", v),
            _ => {}
        }
    }
}

/// List registers in use (at most 8 are managed).
pub fn nr_lrs() -> usize {
    get().nr_lrs.min(8)
}

/// Bit mask of this CPU's list registers that hold no interrupt (ELRSR).
pub fn empty_lrs() -> u32 {
    let g = get();
    match g.version {
        Version::V2 => rd(g.hyp + 0x30),
        Version::V3 => read_sysreg!("ich_elrsr_el2") as u32,
    }
}

/// Bit mask of list registers whose guest EOI asked for maintenance.
pub fn eoi_status() -> u32 {
    let g = get();
    match g.version {
        Version::V2 => rd(g.hyp + 0x20),
        Version::V3 => read_sysreg!("ich_eisr_el2") as u32,
    }
}

/// Asks for a maintenance interrupt when at most one list register is in use.
pub fn set_underflow(on: bool) {
    let g = get();
    let v = 1 | (u32::from(on) << 1);
    match g.version {
        Version::V2 => wr(g.hyp, v),
        // SAFETY: virtual interface control of this CPU.
        Version::V3 => unsafe { write_sysreg!("ich_hcr_el2", u64::from(v)) },
    }
}
