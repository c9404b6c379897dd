//! Interrupts for the test guest's benchmarks: the IRQ vector (which stamps the virtual counter
//! as its first act), the GIC CPU interface (GICv2 memory-mapped, GICv3 system registers), the
//! virtual timer and a loop-back event channel whose upcall arrives on PPI 31.
//!
//! Invariants: only vCPU 0 takes interrupts; [`STAMP`] and [`SEEN`] are written by the handler
//! and read by the code that waits for it.

use aarch64_cpu::asm::barrier;
use aarch64_cpu::registers::{ReadWriteable, Writeable, CNTV_CTL_EL0, CNTV_CVAL_EL0, DAIF};
use core::arch::{asm, global_asm};
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use xen_abi::shared;

/// Virtual counter value at the IRQ vector's entry, for the last interrupt.
pub static STAMP: AtomicU64 = AtomicU64::new(0);
/// INTID of the last interrupt handled (1023: none yet).
pub static SEEN: AtomicU32 = AtomicU32::new(1023);
/// Event-channel upcalls handled.
pub static UPCALLS: AtomicU32 = AtomicU32::new(0);

/// The virtual timer's PPI.
pub const VTIMER: u32 = 27;
/// Xen's event-channel upcall PPI.
pub const EVTCHN: u32 = 31;

static GICC: AtomicU64 = AtomicU64::new(0);
static SHARED_INFO: AtomicU64 = AtomicU64::new(0);

global_asm!(
    r#"
.section .text
.global irq_entry
irq_entry:
    sub     sp, sp, #176
    stp     x0, x1, [sp]
    isb
    mrs     x0, cntvct_el0
    adrp    x1, {stamp}
    str     x0, [x1, :lo12:{stamp}]
    stp     x2, x3, [sp, #16]
    stp     x4, x5, [sp, #32]
    stp     x6, x7, [sp, #48]
    stp     x8, x9, [sp, #64]
    stp     x10, x11, [sp, #80]
    stp     x12, x13, [sp, #96]
    stp     x14, x15, [sp, #112]
    stp     x16, x17, [sp, #128]
    stp     x18, x29, [sp, #144]
    str     x30, [sp, #160]
    bl      {handler}
    ldp     x2, x3, [sp, #16]
    ldp     x4, x5, [sp, #32]
    ldp     x6, x7, [sp, #48]
    ldp     x8, x9, [sp, #64]
    ldp     x10, x11, [sp, #80]
    ldp     x12, x13, [sp, #96]
    ldp     x14, x15, [sp, #112]
    ldp     x16, x17, [sp, #128]
    ldp     x18, x29, [sp, #144]
    ldr     x30, [sp, #160]
    ldp     x0, x1, [sp]
    add     sp, sp, #176
    eret
"#,
    stamp = sym STAMP,
    handler = sym irq_handler,
);

fn rd32(a: u64) -> u32 {
    let v: u32;
    // SAFETY: a 32-bit load from a GIC register the device tree names (base register only,
    // so a trapped access has a full syndrome).
    unsafe { asm!("ldr {v:w}, [{a}]", v = out(reg) v, a = in(reg) a, options(nostack)) };
    v
}

fn wr32(a: u64, v: u32) {
    // SAFETY: as `rd32`, a store.
    unsafe { asm!("str {v:w}, [{a}]", v = in(reg) v, a = in(reg) a, options(nostack)) };
}

fn v3() -> bool {
    GICC.load(Ordering::Relaxed) == 0
}

/// Sets up the GIC for vCPU 0 (`cpu_or_redist` is GICC on GICv2, the redistributor on GICv3),
/// enables the virtual timer and event-channel PPIs and unmasks IRQs.
pub fn init(v3: bool, dist: u64, cpu_or_redist: u64) {
    let ppis = (1 << VTIMER) | (1 << EVTCHN);
    if v3 {
        wr32(dist, 0x12); // ARE | EnableGrp1NS
        let sgi = cpu_or_redist + 0x1_0000;
        wr32(sgi + 0x80, u32::MAX); // every private interrupt in group 1
        wr32(sgi + 0x100, ppis);
        // SAFETY: this vCPU's GIC CPU interface registers (system register interface).
        unsafe {
            asm!("msr icc_sre_el1, {}", "isb", in(reg) 7u64, options(nostack));
            asm!("msr icc_pmr_el1, {}", in(reg) 0xffu64, options(nostack));
            asm!("msr icc_igrpen1_el1, {}", "isb", in(reg) 1u64, options(nostack));
        }
    } else {
        GICC.store(cpu_or_redist, Ordering::Relaxed);
        wr32(dist, 1);
        wr32(dist + 0x100, ppis);
        wr32(cpu_or_redist + 0x4, 0xff); // PMR
        wr32(cpu_or_redist, 1); // enable
    }
    DAIF.modify(DAIF::I::Unmasked); // the vector table is installed
}

fn ack() -> u32 {
    if v3() {
        let v: u64;
        // SAFETY: acknowledges the highest-priority group-1 interrupt.
        unsafe { asm!("mrs {}, icc_iar1_el1", out(reg) v, options(nostack)) };
        v as u32 & 0xff_ffff
    } else {
        rd32(GICC.load(Ordering::Relaxed) + 0xc) & 0x3ff
    }
}

fn eoi(intid: u32) {
    if v3() {
        // SAFETY: ends (drops and deactivates) an interrupt this vCPU acknowledged.
        unsafe { asm!("msr icc_eoir1_el1, {}", "isb", in(reg) u64::from(intid), options(nostack)) };
    } else {
        wr32(GICC.load(Ordering::Relaxed) + 0x10, intid);
    }
}

extern "C" fn irq_handler() {
    loop {
        let intid = ack();
        if intid >= 1020 {
            return;
        }
        match intid {
            VTIMER => timer_off(),
            EVTCHN => drain_events(),
            _ => {}
        }
        eoi(intid);
        SEEN.store(intid, Ordering::Release);
    }
}

/// Arms the virtual timer for virtual counter value `cval`.
pub fn timer_at(cval: u64) {
    CNTV_CVAL_EL0.set(cval);
    CNTV_CTL_EL0.write(CNTV_CTL_EL0::ENABLE::SET);
    barrier::isb(barrier::SY);
}

fn timer_off() {
    CNTV_CTL_EL0.set(0);
    barrier::isb(barrier::SY);
}

/// Uses the page at `page` (ours, 4 KiB aligned) as shared_info.
pub fn set_shared_info(page: u64) {
    SHARED_INFO.store(page, Ordering::Release);
}

/// The 8-byte word at offset `off` of our shared_info page (set with [`set_shared_info`]).
pub fn shared_word(off: u64) -> &'static AtomicU64 {
    let si = SHARED_INFO.load(Ordering::Acquire);
    assert!(si != 0 && off.is_multiple_of(8) && off < 4096, "shared_info word {off:#x}");
    // SAFETY: an 8-byte aligned word of our shared_info page (checked above), which the
    // hypervisor updates only with atomic operations.
    unsafe { &*((si + off) as *const AtomicU64) }
}

/// The 2-level upcall: clear `evtchn_upcall_pending`, then take the pending selector and
/// clear each selected word's pending, unmasked bits.
fn drain_events() {
    let si = SHARED_INFO.load(Ordering::Acquire);
    if si == 0 {
        return;
    }
    // SAFETY: byte 0 of vcpu_info[0] is evtchn_upcall_pending.
    unsafe { core::ptr::write_volatile((si + shared::VCPU_UPCALL_PENDING) as *mut u8, 0) };
    let mut sel = shared_word(shared::VCPU_PENDING_SEL).swap(0, Ordering::AcqRel);
    while sel != 0 {
        let w = u64::from(sel.trailing_zeros());
        sel &= sel - 1;
        let mask = shared_word(shared::EVTCHN_MASK + 8 * w).load(Ordering::Acquire);
        let bits = shared_word(shared::EVTCHN_PENDING + 8 * w).fetch_and(mask, Ordering::AcqRel) & !mask;
        UPCALLS.fetch_add(bits.count_ones(), Ordering::Relaxed);
    }
}
