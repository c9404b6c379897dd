//! The values the hypervisor writes into its EL2 control registers, built from `aarch64-cpu`'s
//! typed register fields (named fields and enumerated values instead of shifts and magic
//! numbers). Plain values, host-tested: `hyp-el2`'s arch layer writes them.
//!
//! Invariant: each function returns exactly the value the hypervisor has always used (the tests
//! pin the raw encodings), so a field renamed or moved upstream cannot change behaviour unseen.

use aarch64_cpu::registers::{CNTHCTL_EL2, HCR_EL2, VTCR_EL2};
use tock_registers::fields::FieldValue;

fn raw<R: tock_registers::RegisterLongName>(v: FieldValue<u64, R>) -> u64 {
    v.value
}

/// HCR_EL2 while guests run: stage 2 on (VM), set/way invalidation as clean+invalidate
/// (SWIO); physical FIQs, IRQs and SErrors to EL2 (FMO, IMO, AMO); EL1's TLB and cache
/// maintenance broadcast inner-shareable (FB, BSU); SMC trapped (PSCI is emulated; TSC);
/// implementation-defined registers trapped (TIDCP); EL1 is AArch64 (RW).
pub fn hcr_el2_guest() -> u64 {
    raw(HCR_EL2::VM::Enable
        + HCR_EL2::SWIO::SET
        + HCR_EL2::FMO::EnableVirtualFIQ
        + HCR_EL2::IMO::EnableVirtualIRQ
        + HCR_EL2::AMO::SET
        + HCR_EL2::FB::SET
        + HCR_EL2::BSU::InnerShareable
        + HCR_EL2::TSC::EnableTrapEl1SmcToEl2
        + HCR_EL2::TIDCP::SET
        + HCR_EL2::RW::EL1IsAarch64)
}

/// CNTHCTL_EL2 while guests run: EL1 may read the physical counter (EL1PCTEN); its physical
/// timer traps to EL2 (EL1PCEN clear).
pub fn cnthctl_el2_guest() -> u64 {
    raw(CNTHCTL_EL2::EL1PCTEN::SET + CNTHCTL_EL2::EL1PCEN::CLEAR)
}

/// CPTR_EL2: nothing trapped (FP/SIMD included; the RES1 bits 0-7, 9, 12-13 set).
pub const CPTR_EL2_NO_TRAPS: u64 = 0x33ff;

/// VTCR_EL2 for the stage-2 tables of `pgtable` (39-bit IPA: T0SZ = 25, walks start at level 1,
/// 4 KiB granule, inner-shareable write-back walks) with physical address size `parange` (the
/// ID_AA64MMFR0_EL1.PARange encoding, capped at 48 bits).
pub fn vtcr_el2(parange: u64) -> u64 {
    raw(VTCR_EL2::RES1::SET
        + VTCR_EL2::T0SZ.val(u64::from(64 - crate::pgtable::VA_BITS))
        + VTCR_EL2::SL0::Granule4KBLevel1
        + VTCR_EL2::IRGN0::NormalWBRAWA
        + VTCR_EL2::ORGN0::NormalWBRAWA
        + VTCR_EL2::SH0::Inner
        + VTCR_EL2::TG0::Granule4KB
        + VTCR_EL2::PS.val(parange.min(5)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodings_are_the_ones_always_used() {
        let hcr = 1 | 1 << 1 | 1 << 3 | 1 << 4 | 1 << 5 | 1 << 9 | 1 << 10 | 1 << 19 | 1 << 20 | 1 << 31;
        assert_eq!(hcr_el2_guest(), hcr);
        assert_eq!(cnthctl_el2_guest(), 0b01);
        for ps in 0..8 {
            let old = (1 << 31) | 25 | (1 << 6) | (1 << 8) | (1 << 10) | (0b11 << 12) | (ps.min(5) << 16);
            assert_eq!(vtcr_el2(ps), old, "PARange {ps}");
        }
    }
}
