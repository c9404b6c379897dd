//! Fault-tolerant accesses for test and hostile-guest code: one instruction that may fault
//! (an abort the hypervisor injects, an undefined instruction), run with the probe armed so
//! that the synchronous vector skips it and records its syndrome instead of ending the
//! unikernel.
//!
//! Invariants: the probe slot `RT_PROBE` is `[armed, esr, far]`; it is armed only around one
//! `asm!` block holding the single instruction under test, and only on vCPU 0 (the runtime's
//! only vCPU); the vector clears `armed` before returning, so a second fault is fatal as usual.
//! A skipped load leaves its destination register as the block initialised it (0).

use core::arch::asm;
use core::sync::atomic::{AtomicU64, Ordering};

/// `[armed, ESR_EL1, FAR_EL1]`, read by the synchronous vector in `arch/mod.rs`.
#[no_mangle]
static RT_PROBE: [AtomicU64; 3] = [const { AtomicU64::new(0) }; 3];

/// What a faulting probe saw.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fault {
    /// ESR_EL1 of the exception.
    pub esr: u64,
    /// FAR_EL1 (the faulting address, for aborts).
    pub far: u64,
}

impl Fault {
    /// The exception class (ESR_EL1.EC).
    pub fn class(&self) -> u64 {
        self.esr >> 26
    }
}

fn arm() {
    RT_PROBE[0].store(1, Ordering::SeqCst);
}

fn disarm() -> Result<(), Fault> {
    // Armed still: the instruction did not fault.
    if RT_PROBE[0].swap(0, Ordering::SeqCst) != 0 {
        return Ok(());
    }
    Err(Fault { esr: RT_PROBE[1].load(Ordering::SeqCst), far: RT_PROBE[2].load(Ordering::SeqCst) })
}

/// Access widths.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Width {
    /// 8 bits (`ldrb`/`strb`).
    B,
    /// 16 bits (`ldrh`/`strh`).
    H,
    /// 32 bits.
    W,
    /// 64 bits.
    X,
}

impl Width {
    /// All four, narrowest first.
    pub const ALL: [Width; 4] = [Width::B, Width::H, Width::W, Width::X];

    /// Bytes.
    pub fn bytes(self) -> u64 {
        match self {
            Width::B => 1,
            Width::H => 2,
            Width::W => 4,
            Width::X => 8,
        }
    }
}

/// One load of `w` from `addr` (a single `ldr*` with a base register: a valid syndrome).
pub fn read(addr: u64, w: Width) -> Result<u64, Fault> {
    let mut v: u64 = 0;
    arm();
    // SAFETY: one load from an address the caller chose, possibly not ours: the hypervisor
    // either emulates it or injects an abort, which the armed vector skips. It touches no Rust
    // object (the address is not one the program holds a reference to).
    unsafe {
        match w {
            Width::B => asm!("ldrb {v:w}, [{a}]", v = inout(reg) v, a = in(reg) addr, options(nostack)),
            Width::H => asm!("ldrh {v:w}, [{a}]", v = inout(reg) v, a = in(reg) addr, options(nostack)),
            Width::W => asm!("ldr {v:w}, [{a}]", v = inout(reg) v, a = in(reg) addr, options(nostack)),
            Width::X => asm!("ldr {v}, [{a}]", v = inout(reg) v, a = in(reg) addr, options(nostack)),
        }
    }
    disarm().map(|()| v)
}

/// One store of `w` bytes of `v` to `addr`.
pub fn write(addr: u64, w: Width, v: u64) -> Result<(), Fault> {
    arm();
    // SAFETY: as `read`: one store the hypervisor emulates or refuses with an abort. The
    // caller must not aim it at its own memory (it is meant for device and foreign addresses).
    unsafe {
        match w {
            Width::B => asm!("strb {v:w}, [{a}]", v = in(reg) v, a = in(reg) addr, options(nostack)),
            Width::H => asm!("strh {v:w}, [{a}]", v = in(reg) v, a = in(reg) addr, options(nostack)),
            Width::W => asm!("str {v:w}, [{a}]", v = in(reg) v, a = in(reg) addr, options(nostack)),
            Width::X => asm!("str {v}, [{a}]", v = in(reg) v, a = in(reg) addr, options(nostack)),
        }
    }
    disarm()
}

/// A load pair (`ldp`): a trapped `ldp` has no valid syndrome (ISV = 0).
pub fn read_pair(addr: u64) -> Result<(u64, u64), Fault> {
    let (mut a, mut b) = (0u64, 0u64);
    arm();
    // SAFETY: as `read`.
    unsafe { asm!("ldp {a}, {b}, [{p}]", a = inout(reg) a, b = inout(reg) b, p = in(reg) addr, options(nostack)) };
    disarm().map(|()| (a, b))
}

/// A 32-bit load with base-register write-back (`ldr w, [x], #4`): ISV = 0 as well.
pub fn read_writeback(addr: u64) -> Result<u64, Fault> {
    let mut v: u64 = 0;
    let mut p = addr;
    arm();
    // SAFETY: as `read`; `p` is a scratch copy of the address.
    unsafe { asm!("ldr {v:w}, [{p}], #4", v = inout(reg) v, p = inout(reg) p, options(nostack)) };
    let _ = p;
    disarm().map(|()| v)
}

/// An SMC with function id `f` (PSCI / SMCCC over the secure-monitor conduit, which a
/// hypervisor traps).
pub fn smc(f: u64, a1: u64, a2: u64, a3: u64) -> Result<i64, Fault> {
    let r: u64;
    arm();
    // SAFETY: SMCCC over SMC: x0-x3 carry arguments and results; trapped by the hypervisor,
    // which answers or injects an undefined-instruction exception (skipped).
    unsafe {
        asm!("smc #0", inout("x0") f => r, inout("x1") a1 => _, inout("x2") a2 => _, inout("x3") a3 => _, options(nostack))
    };
    disarm().map(|()| r as i64)
}

/// An SMCCC call through `hvc #0` (PSCI), with any function id.
pub fn hvc0(f: u64, a1: u64, a2: u64, a3: u64) -> Result<i64, Fault> {
    let r: u64;
    arm();
    // SAFETY: SMCCC over HVC: x0-x3 carry arguments and results.
    unsafe {
        asm!("hvc #0", inout("x0") f => r, inout("x1") a1 => _, inout("x2") a2 => _, inout("x3") a3 => _, options(nostack))
    };
    disarm().map(|()| r as i64)
}

/// `hvc` with an immediate other than Xen's and PSCI's (`#0x1`).
pub fn hvc_other(nr: u64) -> Result<i64, Fault> {
    let r: u64;
    arm();
    // SAFETY: a hypervisor call with an unknown immediate; x0/x16 clobbered.
    unsafe { asm!("hvc #0x1", inout("x16") nr => _, inout("x0") 0u64 => r, options(nostack)) };
    disarm().map(|()| r as i64)
}

/// A raw Xen hypercall with all five arguments (x0-x4), for argument fuzzing.
pub fn hypercall5(nr: u64, a: [u64; 5]) -> i64 {
    let r: u64;
    // SAFETY: the Xen hypercall convention; whatever the arguments, the hypervisor validates
    // them and writes only into this domain's memory where the call says so. The caller must
    // not pass pointers to its live Rust objects unless the call may write them.
    unsafe {
        asm!("hvc #0xea1", in("x16") nr, inout("x0") a[0] => r, inout("x1") a[1] => _, inout("x2") a[2] => _,
             inout("x3") a[3] => _, inout("x4") a[4] => _, options(nostack))
    };
    r as i64
}

/// Writes ICC_SGI1R_EL1 (GICv3: an SGI to the vCPUs the value names).
pub fn icc_sgi1r(v: u64) -> Result<(), Fault> {
    arm();
    // SAFETY: a GIC system register the hypervisor traps and emulates (or refuses).
    unsafe { asm!("msr icc_sgi1r_el1, {}", "isb", in(reg) v, options(nostack)) };
    disarm()
}
