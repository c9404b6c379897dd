//! AArch64 primitives: system-register access, barriers, cache and TLB maintenance, SMC/HVC
//! calls to firmware, WFE/SEV. Every register write that changes translation or exception
//! behaviour is an `unsafe fn` with its contract stated.

use aarch64_cpu::registers::{
    Readable, Writeable, AFSR0_EL1, AFSR1_EL1, AMAIR_EL1, CNTHP_CTL_EL2, CNTKCTL_EL1, CNTPCT_EL0, CNTV_CTL_EL0,
    CNTV_CVAL_EL0, CONTEXTIDR_EL1, CPACR_EL1, CSSELR_EL1, ELR_EL1, ESR_EL1, FAR_EL1, MAIR_EL1, MDSCR_EL1, PAR_EL1,
    SCTLR_EL1, SPSR_EL1, SP_EL0, SP_EL1, TCR_EL1, TPIDRRO_EL0, TPIDR_EL0, TPIDR_EL1, TPIDR_EL2, TTBR0_EL1, TTBR1_EL1,
    VBAR_EL1, VTTBR_EL2,
};
use core::arch::asm;
use core::sync::atomic::Ordering;

/// Reads a system register by name.
macro_rules! read_sysreg {
    ($name:literal) => {{
        let v: u64;
        // SAFETY: reading a system register has no side effects on memory safety.
        #[allow(unused_unsafe)]
        let () = unsafe { core::arch::asm!(concat!("mrs {}, ", $name), out(reg) v, options(nomem, nostack, preserves_flags)) };
        v
    }};
}
pub(crate) use read_sysreg;

/// Writes a system register by name. The caller's `unsafe` block states why the write is sound.
macro_rules! write_sysreg {
    ($name:literal, $v:expr) => {{
        let v: u64 = $v;
        core::arch::asm!(concat!("msr ", $name, ", {}"), in(reg) v, options(nostack, preserves_flags))
    }};
}
pub(crate) use write_sysreg;

/// Instruction synchronization barrier.
#[inline(always)]
pub fn isb() {
    // SAFETY: a barrier has no memory-safety effect.
    unsafe { asm!("isb", options(nostack, preserves_flags)) };
}

/// Full-system data synchronization barrier.
#[inline(always)]
pub fn dsb_sy() {
    // SAFETY: a barrier has no memory-safety effect.
    unsafe { asm!("dsb sy", options(nostack, preserves_flags)) };
}

/// Inner-shareable data synchronization barrier.
#[inline(always)]
pub fn dsb_ish() {
    // SAFETY: a barrier has no memory-safety effect.
    unsafe { asm!("dsb ish", options(nostack, preserves_flags)) };
}

/// Waits for an event.
#[inline(always)]
pub fn wfe() {
    // SAFETY: WFE only pauses this CPU.
    unsafe { asm!("wfe", options(nomem, nostack, preserves_flags)) };
}

/// Waits for an interrupt (pending, even if masked). Unlike WFE, QEMU's TCG really sleeps here.
#[inline(always)]
pub fn wfi() {
    dsb_sy();
    // SAFETY: WFI only pauses this CPU.
    unsafe { asm!("wfi", options(nomem, nostack, preserves_flags)) };
}

/// The physical counter (CNTPCT_EL0), ordered after earlier instructions.
pub fn counter() -> u64 {
    isb();
    CNTPCT_EL0.get()
}

/// Arms this CPU's EL2 physical timer (interrupt [`HYP_TIMER_PPI`]) for physical counter
/// value `cval`.
pub fn hyp_timer_set(cval: u64) {
    // SAFETY: the EL2 timer only raises this CPU's PPI 26, which the hypervisor handles.
    unsafe {
        write_sysreg!("cnthp_cval_el2", cval);
        CNTHP_CTL_EL2.set(1);
    }
    isb();
}

/// Disarms this CPU's EL2 physical timer (its interrupt line drops).
pub fn hyp_timer_off() {
    CNTHP_CTL_EL2.set(0);
    isb();
}

/// The EL2 physical timer's interrupt.
pub const HYP_TIMER_PPI: u32 = 26;

/// Signals an event to all CPUs.
#[inline(always)]
pub fn sev() {
    dsb_ish();
    // SAFETY: SEV only sets event registers.
    unsafe { asm!("sev", options(nomem, nostack, preserves_flags)) };
}

/// Index of this CPU as given at entry (kept in TPIDR_EL2's companion register).
pub fn cpu_index() -> usize {
    TPIDR_EL2.get() as usize
}

/// Copies `len` bytes from `src` to `dst`, 64 bytes per loop iteration with load/store pairs,
/// then the tail with the generic copy. Image loading moves tens of MiB; under QEMU's TCG the
/// generic `memcpy` costs about 20 times more per byte than this loop.
///
/// # Safety
/// Both ranges must be mapped normal memory owned by the caller and must not overlap.
pub unsafe fn copy_bulk(dst: *mut u8, src: *const u8, len: usize) {
    let bulk = len & !63;
    if bulk != 0 {
        // SAFETY: the caller guarantees both ranges; the loop touches exactly `bulk` bytes of
        // each, and normal memory allows unaligned pairs.
        unsafe {
            asm!(
                "2:",
                "ldp {a}, {b}, [{s}], #16",
                "ldp {c}, {e}, [{s}], #16",
                "stp {a}, {b}, [{d}], #16",
                "stp {c}, {e}, [{d}], #16",
                "ldp {a}, {b}, [{s}], #16",
                "ldp {c}, {e}, [{s}], #16",
                "stp {a}, {b}, [{d}], #16",
                "stp {c}, {e}, [{d}], #16",
                "subs {n}, {n}, #64",
                "b.ne 2b",
                s = inout(reg) src => _,
                d = inout(reg) dst => _,
                n = inout(reg) bulk => _,
                a = out(reg) _, b = out(reg) _, c = out(reg) _, e = out(reg) _,
                options(nostack),
            );
        }
    }
    // SAFETY: the rest of the caller's ranges.
    unsafe { core::ptr::copy_nonoverlapping(src.add(bulk), dst.add(bulk), len - bulk) };
}

/// Zeroes `len` bytes at `dst`, 64 bytes per loop iteration, then the tail generically.
///
/// # Safety
/// The range must be mapped normal memory owned by the caller.
pub unsafe fn zero_bulk(dst: *mut u8, len: usize) {
    let bulk = len & !63;
    if bulk != 0 {
        // SAFETY: the caller guarantees the range; the loop stores exactly `bulk` bytes.
        unsafe {
            asm!(
                "2:",
                "stp xzr, xzr, [{d}], #16",
                "stp xzr, xzr, [{d}], #16",
                "stp xzr, xzr, [{d}], #16",
                "stp xzr, xzr, [{d}], #16",
                "subs {n}, {n}, #64",
                "b.ne 2b",
                d = inout(reg) dst => _,
                n = inout(reg) bulk => _,
                options(nostack),
            );
        }
    }
    // SAFETY: the rest of the caller's range.
    unsafe { core::ptr::write_bytes(dst.add(bulk), 0, len - bulk) };
}

/// Stage-1 translation of guest virtual address `va` through the running guest's EL1 regime
/// (`AT S1E1R/W`, so EL1 read or write permission is checked). Returns the IPA. The guest's
/// PAR_EL1 is preserved.
pub fn guest_va_to_ipa(va: u64, write: bool) -> Option<u64> {
    let saved = PAR_EL1.get();
    // SAFETY: AT only writes PAR_EL1, which is restored below; the EL1 regime is the guest's
    // own, loaded because this runs in a trap from it.
    unsafe {
        if write {
            asm!("at s1e1w, {}", in(reg) va, options(nostack, preserves_flags));
        } else {
            asm!("at s1e1r, {}", in(reg) va, options(nostack, preserves_flags));
        }
    }
    isb();
    let par = PAR_EL1.get();
    PAR_EL1.set(saved); // the guest's own value
    (par & 1 == 0).then_some((par & 0x0000_ffff_ffff_f000) | (va & 0xfff))
}

/// Atomic OR on a 64-bit word of memory shared with a guest; returns the old value.
///
/// # Safety
/// `pa` must be an 8-byte aligned address of mapped normal memory.
pub unsafe fn shared_fetch_or(pa: u64, mask: u64) -> u64 {
    // SAFETY: caller contract; the guest updates the same word with atomics too.
    unsafe { core::sync::atomic::AtomicU64::from_ptr(pa as *mut u64) }.fetch_or(mask, Ordering::AcqRel)
}

/// Atomic AND on a 64-bit word of memory shared with a guest; returns the old value.
///
/// # Safety
/// As [`shared_fetch_or`].
pub unsafe fn shared_fetch_and(pa: u64, mask: u64) -> u64 {
    // SAFETY: caller contract.
    unsafe { core::sync::atomic::AtomicU64::from_ptr(pa as *mut u64) }.fetch_and(mask, Ordering::AcqRel)
}

/// Atomic exchange of a byte of memory shared with a guest; returns the old value.
///
/// # Safety
/// `pa` must be an address of mapped normal memory.
pub unsafe fn shared_swap_u8(pa: u64, v: u8) -> u8 {
    // SAFETY: caller contract.
    unsafe { core::sync::atomic::AtomicU8::from_ptr(pa as *mut u8) }.swap(v, Ordering::AcqRel)
}

/// Acquire load of a 64-bit word of memory shared with a guest.
///
/// # Safety
/// As [`shared_fetch_or`].
pub unsafe fn shared_load_u64(pa: u64) -> u64 {
    // SAFETY: caller contract.
    unsafe { core::sync::atomic::AtomicU64::from_ptr(pa as *mut u64) }.load(Ordering::Acquire)
}

/// Acquire load of a 32-bit ring index shared with a guest.
///
/// # Safety
/// `pa` must be a 4-byte aligned address of mapped normal memory.
pub unsafe fn shared_load_u32(pa: u64) -> u32 {
    // SAFETY: caller contract.
    unsafe { core::sync::atomic::AtomicU32::from_ptr(pa as *mut u32) }.load(Ordering::Acquire)
}

/// Compare-and-swap of a 32-bit word shared with a guest: `Ok(old)` when it held `old` and now
/// holds `new`, else `Err(current)`.
///
/// # Safety
/// As [`shared_load_u32`].
pub unsafe fn shared_cas_u32(pa: u64, old: u32, new: u32) -> Result<u32, u32> {
    // SAFETY: caller contract; the guest updates the same word with atomics too.
    unsafe { core::sync::atomic::AtomicU32::from_ptr(pa as *mut u32) }.compare_exchange(
        old,
        new,
        Ordering::AcqRel,
        Ordering::Acquire,
    )
}

/// Release store of a 32-bit ring index shared with a guest.
///
/// # Safety
/// As [`shared_load_u32`].
pub unsafe fn shared_store_u32(pa: u64, v: u32) {
    // SAFETY: caller contract.
    unsafe { core::sync::atomic::AtomicU32::from_ptr(pa as *mut u32) }.store(v, Ordering::Release)
}

/// Runs the TLB maintenance `flush` in the VMID of `vttbr`: the table writes are made visible
/// first; VTTBR_EL2 is switched only for its duration and restored before returning.
#[inline(always)]
fn in_vmid(vttbr: u64, flush: impl FnOnce()) {
    let cur = VTTBR_EL2.get();
    // SAFETY: TLB maintenance by VMID acts on the VMID in VTTBR_EL2, which is switched only for
    // its duration while this CPU is at EL2 (no EL1&0 translation happens meanwhile) and
    // restored before returning; the barriers order it after the table writes.
    unsafe {
        asm!("dsb ishst", options(nostack, preserves_flags));
        if cur != vttbr {
            write_sysreg!("vttbr_el2", vttbr);
            asm!("isb", options(nostack, preserves_flags));
        }
    }
    flush();
    // SAFETY: as above: the VMID of before comes back.
    unsafe {
        if cur != vttbr {
            write_sysreg!("vttbr_el2", cur);
        }
        asm!("isb", options(nostack, preserves_flags));
    }
}

/// Drops every CPU's cached translations of `ipa` in the VMID of `vttbr` (stage-2 entries and
/// the combined stage-1+2 entries built from them), after a stage-2 entry covering it changed.
/// Returns when the invalidation is complete everywhere.
pub fn tlb_flush_ipa(vttbr: u64, ipa: u64) {
    in_vmid(vttbr, || {
        // SAFETY: TLB invalidation by IPA, then of the VMID's stage-1 entries, with barriers:
        // it only drops cached translations.
        unsafe {
            asm!("tlbi ipas2e1is, {}", in(reg) (ipa >> 12) & 0xf_ffff_ffff, options(nostack, preserves_flags));
            asm!("dsb ish", "tlbi vmalle1is", "dsb ish", options(nostack, preserves_flags));
        }
    });
}

/// As [`tlb_flush_ipa`] for several IPAs: each invalidated by IPA, then the VMID's stage-1
/// entries once (not once per page: under TCG each is a stop of every emulated CPU).
pub fn tlb_flush_ipas(vttbr: u64, ipas: &[u64]) {
    in_vmid(vttbr, || {
        for &ipa in ipas {
            // SAFETY: TLB invalidation by IPA: it only drops cached translations.
            unsafe {
                asm!("tlbi ipas2e1is, {}", in(reg) (ipa >> 12) & 0xf_ffff_ffff, options(nostack, preserves_flags))
            };
        }
        // SAFETY: barriers and the invalidation of the VMID's stage-1 entries (combined ones
        // built from the dropped stage-2 entries): only cached translations go.
        unsafe { asm!("dsb ish", "tlbi vmalle1is", "dsb ish", options(nostack, preserves_flags)) };
    });
}

/// Drops every cached translation (stage 1 and 2) of the VMID in `vttbr`, on every CPU: one
/// flush after a batch of stage-2 permission changes instead of one per page.
pub fn tlb_flush_vmid(vttbr: u64) {
    in_vmid(vttbr, || {
        // SAFETY: TLB invalidation of the whole VMID, with a barrier: it only drops cached
        // translations.
        unsafe { asm!("tlbi vmalls12e1is", "dsb ish", options(nostack, preserves_flags)) };
    });
}

/// Data-cache line size in bytes (CTR_EL0.DminLine).
fn dline() -> usize {
    4 << ((read_sysreg!("ctr_el0") >> 16) & 0xf)
}

/// Cleans (and invalidates) the data cache to the point of coherency over `[start, start+len)`,
/// so a guest running with its MMU off sees what the hypervisor wrote through its caches.
pub fn clean_dcache_range(start: usize, len: usize) {
    let line = dline();
    let mut a = start & !(line - 1);
    while a < start + len {
        // SAFETY: DC CIVAC on a mapped identity address only writes back/invalidates cache lines.
        unsafe { asm!("dc civac, {}", in(reg) a, options(nostack, preserves_flags)) };
        a += line;
    }
    dsb_sy();
}

/// Invalidates the whole instruction cache (inner shareable).
pub fn invalidate_icache() {
    // SAFETY: IC IALLUIS only drops instruction-cache contents.
    unsafe { asm!("ic ialluis", "dsb ish", "isb", options(nostack, preserves_flags)) };
}

/// Calls firmware with `smc #0` (SMCCC: x0 = function, x1..x3 args, x0 result). Boards whose
/// PSCI conduit is not SMC are refused at boot, so this is the only firmware call.
pub fn smc(f: u64, a1: u64, a2: u64, a3: u64) -> u64 {
    let r: u64;
    // SAFETY: SMCCC calls clobber at most x0-x17; all are declared clobbered.
    unsafe {
        asm!("smc #0",
            inout("x0") f => r, inout("x1") a1 => _, inout("x2") a2 => _, inout("x3") a3 => _,
            out("x4") _, out("x5") _, out("x6") _, out("x7") _, out("x8") _, out("x9") _,
            out("x10") _, out("x11") _, out("x12") _, out("x13") _, out("x14") _, out("x15") _,
            out("x16") _, out("x17") _, options(nostack));
    }
    r
}

/// Reads this CPU's EL1/EL0 context in `hyp_core::savestream::SYSREGS` order (the vCPU that
/// runs here is stopped in the hypervisor).
pub fn save_el1_context() -> [u64; 26] {
    [
        SCTLR_EL1.get(),
        TTBR0_EL1.get(),
        TTBR1_EL1.get(),
        TCR_EL1.get(),
        MAIR_EL1.get(),
        AMAIR_EL1.get(),
        VBAR_EL1.get(),
        CONTEXTIDR_EL1.get(),
        TPIDR_EL0.get(),
        TPIDRRO_EL0.get(),
        TPIDR_EL1.get(),
        SP_EL0.get(),
        SP_EL1.get(),
        ELR_EL1.get(),
        SPSR_EL1.get(),
        ESR_EL1.get(),
        FAR_EL1.get(),
        AFSR0_EL1.get(),
        AFSR1_EL1.get(),
        PAR_EL1.get(),
        CPACR_EL1.get(),
        CNTKCTL_EL1.get(),
        CNTV_CTL_EL0.get(),
        CNTV_CVAL_EL0.get(),
        CSSELR_EL1.get(),
        MDSCR_EL1.get(),
    ]
}

/// Loads an EL1/EL0 context saved by [`save_el1_context`].
///
/// # Safety
/// No guest runs on this CPU; the context belongs to the vCPU about to enter here, whose
/// stage-2 tables (which bound everything its stage-1 registers can reach) are installed.
pub unsafe fn restore_el1_context(r: &[u64; 26]) {
    // Sound by the caller's contract (no guest runs here; the stage-2 tables bound the rest).
    SCTLR_EL1.set(r[0]);
    TTBR0_EL1.set(r[1]);
    TTBR1_EL1.set(r[2]);
    TCR_EL1.set(r[3]);
    MAIR_EL1.set(r[4]);
    AMAIR_EL1.set(r[5]);
    VBAR_EL1.set(r[6]);
    CONTEXTIDR_EL1.set(r[7]);
    TPIDR_EL0.set(r[8]);
    TPIDRRO_EL0.set(r[9]);
    TPIDR_EL1.set(r[10]);
    SP_EL0.set(r[11]);
    SP_EL1.set(r[12]);
    ELR_EL1.set(r[13]);
    SPSR_EL1.set(r[14]);
    ESR_EL1.set(r[15]);
    FAR_EL1.set(r[16]);
    AFSR0_EL1.set(r[17]);
    AFSR1_EL1.set(r[18]);
    PAR_EL1.set(r[19]);
    CPACR_EL1.set(r[20]);
    CNTKCTL_EL1.set(r[21]);
    CNTV_CVAL_EL0.set(r[23]);
    CNTV_CTL_EL0.set(r[22]);
    CSSELR_EL1.set(r[24]);
    MDSCR_EL1.set(r[25]);
    isb();
}

/// Stores this CPU's FP/SIMD registers (the guest's: the hypervisor is built without them)
/// into `q` and returns (FPCR, FPSR).
pub fn save_fp(q: &mut [u128; 32]) -> (u64, u64) {
    let (fpcr, fpsr): (u64, u64);
    // SAFETY: stores 512 bytes into `q`, which is that large; reads FP control registers.
    unsafe {
        asm!(
            ".arch_extension fp",
            ".arch_extension simd",
            "stp q0, q1, [{p}, #0]", "stp q2, q3, [{p}, #32]", "stp q4, q5, [{p}, #64]",
            "stp q6, q7, [{p}, #96]", "stp q8, q9, [{p}, #128]", "stp q10, q11, [{p}, #160]",
            "stp q12, q13, [{p}, #192]", "stp q14, q15, [{p}, #224]", "stp q16, q17, [{p}, #256]",
            "stp q18, q19, [{p}, #288]", "stp q20, q21, [{p}, #320]", "stp q22, q23, [{p}, #352]",
            "stp q24, q25, [{p}, #384]", "stp q26, q27, [{p}, #416]", "stp q28, q29, [{p}, #448]",
            "stp q30, q31, [{p}, #480]",
            "mrs {c}, fpcr", "mrs {s}, fpsr",
            p = in(reg) q.as_mut_ptr(), c = out(reg) fpcr, s = out(reg) fpsr,
            options(nostack, preserves_flags)
        );
    }
    (fpcr, fpsr)
}

/// Loads FP/SIMD registers saved by [`save_fp`] for the vCPU about to enter on this CPU.
pub fn restore_fp(q: &[u128; 32], fpcr: u64, fpsr: u64) {
    // SAFETY: loads 512 bytes from `q`; the FP registers belong to the guest (the hypervisor
    // does not use them), so nothing of ours is overwritten.
    unsafe {
        asm!(
            ".arch_extension fp",
            ".arch_extension simd",
            "ldp q0, q1, [{p}, #0]", "ldp q2, q3, [{p}, #32]", "ldp q4, q5, [{p}, #64]",
            "ldp q6, q7, [{p}, #96]", "ldp q8, q9, [{p}, #128]", "ldp q10, q11, [{p}, #160]",
            "ldp q12, q13, [{p}, #192]", "ldp q14, q15, [{p}, #224]", "ldp q16, q17, [{p}, #256]",
            "ldp q18, q19, [{p}, #288]", "ldp q20, q21, [{p}, #320]", "ldp q22, q23, [{p}, #352]",
            "ldp q24, q25, [{p}, #384]", "ldp q26, q27, [{p}, #416]", "ldp q28, q29, [{p}, #448]",
            "ldp q30, q31, [{p}, #480]",
            "msr fpcr, {c}", "msr fpsr, {s}",
            p = in(reg) q.as_ptr(), c = in(reg) fpcr, s = in(reg) fpsr,
            options(nostack, preserves_flags, readonly)
        );
    }
}
