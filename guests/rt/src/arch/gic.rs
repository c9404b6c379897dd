//! The GIC CPU interface for vCPU 0: GICv2 through its memory-mapped CPU interface, GICv3
//! through the ICC system registers; the distributor (and on GICv3 the redistributor) only to
//! enable our private interrupts. Addresses come from the device tree.

use super::{mmio_read32, mmio_write32};
use core::arch::asm;
use core::sync::atomic::{AtomicU64, Ordering};

/// GICC base on GICv2; 0 on GICv3.
static GICC: AtomicU64 = AtomicU64::new(0);

/// Which GIC, and where.
#[derive(Clone, Copy, Debug)]
pub enum Gic {
    /// GICv2: distributor and CPU interface.
    V2 {
        /// GICD base.
        dist: u64,
        /// GICC base.
        cpu: u64,
    },
    /// GICv3: distributor and vCPU 0's redistributor.
    V3 {
        /// GICD base.
        dist: u64,
        /// GICR base of vCPU 0.
        redist: u64,
    },
}

/// Turns the CPU interface on and enables the private interrupts in `ppis` (a bit per INTID
/// 0-31).
pub fn init(g: Gic, ppis: u32) {
    match g {
        Gic::V3 { dist, redist } => {
            mmio_write32(dist, 0x12); // ARE | EnableGrp1NS
            let sgi = redist + 0x1_0000;
            // Wake the redistributor (GICR_WAKER.ProcessorSleep), as on hardware.
            let waker = mmio_read32(redist + 0x14);
            mmio_write32(redist + 0x14, waker & !2);
            mmio_write32(sgi + 0x80, u32::MAX); // private interrupts in group 1
            mmio_write32(sgi + 0x100, ppis);
            // SAFETY: this vCPU's GIC CPU interface (system register interface).
            unsafe {
                asm!("msr icc_sre_el1, {}", "isb", in(reg) 7u64, options(nostack));
                asm!("msr icc_pmr_el1, {}", in(reg) 0xffu64, options(nostack));
                asm!("msr icc_igrpen1_el1, {}", "isb", in(reg) 1u64, options(nostack));
            }
        }
        Gic::V2 { dist, cpu } => {
            GICC.store(cpu, Ordering::Relaxed);
            mmio_write32(dist, 1);
            mmio_write32(dist + 0x100, ppis);
            mmio_write32(cpu + 0x4, 0xff); // PMR
            mmio_write32(cpu, 1);
        }
    }
}

/// Acknowledges the highest-priority pending interrupt (1020-1023: none).
pub fn ack() -> u32 {
    let c = GICC.load(Ordering::Relaxed);
    if c == 0 {
        let v: u64;
        // SAFETY: acknowledges a group-1 interrupt on this vCPU.
        unsafe { asm!("mrs {}, icc_iar1_el1", out(reg) v, options(nostack)) };
        v as u32 & 0xff_ffff
    } else {
        mmio_read32(c + 0xc) & 0x3ff
    }
}

/// Ends an interrupt that [`ack`] returned.
pub fn eoi(intid: u32) {
    let c = GICC.load(Ordering::Relaxed);
    if c == 0 {
        // SAFETY: ends (drops priority and deactivates) an interrupt this vCPU acknowledged.
        unsafe { asm!("msr icc_eoir1_el1, {}", "isb", in(reg) u64::from(intid), options(nostack)) };
    } else {
        mmio_write32(c + 0x10, intid);
    }
}
