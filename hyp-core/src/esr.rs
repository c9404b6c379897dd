//! Exception syndrome (ESR_ELx) decoding: exception class, data-abort ISS, HVC/SMC immediates,
//! WFx and MSR/MRS traps, plus human-readable names for crash reports.
//!
//! Every field the hypervisor acts on comes through here; nothing reads syndrome bits directly.

/// Exception classes the hypervisor distinguishes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    /// EC 0x00.
    Unknown,
    /// EC 0x01: WFI or WFE.
    Wfx,
    /// EC 0x07: FP/SIMD access trapped.
    FpAccess,
    /// EC 0x0e: illegal execution state.
    IllegalState,
    /// EC 0x15: SVC from AArch64.
    Svc64,
    /// EC 0x16: HVC from AArch64.
    Hvc64,
    /// EC 0x17: SMC from AArch64.
    Smc64,
    /// EC 0x18: MSR/MRS/system instruction.
    SysReg,
    /// EC 0x20: instruction abort from a lower EL.
    InstAbortLower,
    /// EC 0x21: instruction abort from the same EL.
    InstAbortSame,
    /// EC 0x22: PC alignment fault.
    PcAlignment,
    /// EC 0x24: data abort from a lower EL.
    DataAbortLower,
    /// EC 0x25: data abort from the same EL.
    DataAbortSame,
    /// EC 0x26: SP alignment fault.
    SpAlignment,
    /// EC 0x2f: SError.
    SError,
    /// EC 0x3c: BRK.
    Brk,
    /// Anything else.
    Other(u8),
}

/// A decoded syndrome.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Esr(pub u64);

impl Esr {
    /// Raw exception class.
    pub fn ec(self) -> u8 {
        ((self.0 >> 26) & 0x3f) as u8
    }
    /// Instruction length bit (1 = 32-bit instruction).
    pub fn il(self) -> bool {
        self.0 & (1 << 25) != 0
    }
    /// Instruction-specific syndrome.
    pub fn iss(self) -> u32 {
        (self.0 & 0x1ff_ffff) as u32
    }
    /// Decoded class.
    pub fn class(self) -> Class {
        match self.ec() {
            0x00 => Class::Unknown,
            0x01 => Class::Wfx,
            0x07 => Class::FpAccess,
            0x0e => Class::IllegalState,
            0x15 => Class::Svc64,
            0x16 => Class::Hvc64,
            0x17 => Class::Smc64,
            0x18 => Class::SysReg,
            0x20 => Class::InstAbortLower,
            0x21 => Class::InstAbortSame,
            0x22 => Class::PcAlignment,
            0x24 => Class::DataAbortLower,
            0x25 => Class::DataAbortSame,
            0x26 => Class::SpAlignment,
            0x2f => Class::SError,
            0x3c => Class::Brk,
            ec => Class::Other(ec),
        }
    }
    /// The 16-bit immediate of HVC/SMC/BRK.
    pub fn imm16(self) -> u16 {
        (self.0 & 0xffff) as u16
    }
    /// Whether this is `HVC #imm` from AArch64: one comparison of the low 32 bits for the
    /// hypercall fast path (EC 0x16, IL 1, ISS = `imm`: its bits 16-24 are RES0). A syndrome
    /// with RES0 bits set fails this test and takes the general way ([`Esr::class`]).
    #[inline]
    pub fn is_hvc64(self, imm: u16) -> bool {
        self.0 as u32 == (0x16 << 26) | (1 << 25) | u32::from(imm)
    }
    /// Whether this is a data abort from a lower EL (EC 0x24): the MMIO emulation fast path.
    #[inline]
    pub fn is_data_abort_lower(self) -> bool {
        (self.0 >> 26) & 0x3f == 0x24
    }
    /// For WFx: true for WFE, false for WFI.
    pub fn is_wfe(self) -> bool {
        self.0 & 1 != 0
    }
    /// Data-abort details (meaningful for data-abort classes).
    pub fn data_abort(self) -> DataAbort {
        let iss = self.iss();
        DataAbort {
            isv: iss & (1 << 24) != 0,
            size: 1 << ((iss >> 22) & 3),
            sign_extend: iss & (1 << 21) != 0,
            reg: ((iss >> 16) & 0x1f) as u8,
            sixty_four: iss & (1 << 15) != 0,
            far_not_valid: iss & (1 << 10) != 0,
            s1ptw: iss & (1 << 7) != 0,
            write: iss & (1 << 6) != 0,
            fsc: (iss & 0x3f) as u8,
        }
    }
    /// MSR/MRS details (meaningful for [`Class::SysReg`]).
    pub fn sysreg(self) -> SysRegAccess {
        let iss = self.iss();
        SysRegAccess {
            op0: ((iss >> 20) & 3) as u8,
            op2: ((iss >> 17) & 7) as u8,
            op1: ((iss >> 14) & 7) as u8,
            crn: ((iss >> 10) & 0xf) as u8,
            reg: ((iss >> 5) & 0x1f) as u8,
            crm: ((iss >> 1) & 0xf) as u8,
            read: iss & 1 != 0,
        }
    }
}

/// A decoded data-abort ISS.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DataAbort {
    /// The syndrome describes the access (ISV); without it nothing below except `write`/`fsc` is valid.
    pub isv: bool,
    /// Access size in bytes.
    pub size: u8,
    /// Sign-extend a load.
    pub sign_extend: bool,
    /// Transfer register (31 = XZR/WZR).
    pub reg: u8,
    /// 64-bit register width.
    pub sixty_four: bool,
    /// FAR is not valid.
    pub far_not_valid: bool,
    /// The fault happened on a stage-1 table walk.
    pub s1ptw: bool,
    /// A write (WnR).
    pub write: bool,
    /// Fault status code.
    pub fsc: u8,
}

impl DataAbort {
    /// Stage-2 translation fault (the IPA is not mapped) at any level.
    pub fn is_translation_fault(&self) -> bool {
        (0x04..=0x07).contains(&self.fsc)
    }
}

/// A decoded MSR/MRS trap.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SysRegAccess {
    /// op0.
    pub op0: u8,
    /// op2.
    pub op2: u8,
    /// op1.
    pub op1: u8,
    /// CRn.
    pub crn: u8,
    /// Transfer register.
    pub reg: u8,
    /// CRm.
    pub crm: u8,
    /// MRS (read) rather than MSR.
    pub read: bool,
}

/// A short name for an exception class, for crash reports.
pub fn class_name(ec: u8) -> &'static str {
    match ec {
        0x00 => "unknown reason",
        0x01 => "WFI/WFE",
        0x07 => "FP/SIMD access",
        0x0e => "illegal execution state",
        0x15 => "SVC (AArch64)",
        0x16 => "HVC (AArch64)",
        0x17 => "SMC (AArch64)",
        0x18 => "MSR/MRS/system instruction",
        0x20 => "instruction abort (lower EL)",
        0x21 => "instruction abort (same EL)",
        0x22 => "PC alignment fault",
        0x24 => "data abort (lower EL)",
        0x25 => "data abort (same EL)",
        0x26 => "SP alignment fault",
        0x2f => "SError",
        0x30 | 0x31 => "breakpoint",
        0x32 | 0x33 => "software step",
        0x34 | 0x35 => "watchpoint",
        0x3c => "BRK instruction",
        _ => "other",
    }
}

/// A short name for an abort fault status code.
pub fn fsc_name(fsc: u8) -> &'static str {
    match fsc {
        0x00..=0x03 => "address size fault",
        0x04..=0x07 => "translation fault",
        0x09..=0x0b => "access flag fault",
        0x0d..=0x0f => "permission fault",
        0x10 => "synchronous external abort",
        0x21 => "alignment fault",
        0x30 => "TLB conflict",
        _ => "other fault",
    }
}

/// ESR_EL1 value for a synchronous external abort injected into a guest: data or instruction
/// abort, taken from `from_el0` or the current EL, with WnR copied for data aborts.
pub fn injected_abort_esr(data: bool, from_el0: bool, write: bool) -> u64 {
    let ec: u64 = match (data, from_el0) {
        (true, true) => 0x24,
        (true, false) => 0x25,
        (false, true) => 0x20,
        (false, false) => 0x21,
    };
    let wnr = if data && write { 1 << 6 } else { 0 };
    (ec << 26) | (1 << 25) | wnr | 0x10
}

/// ESR_EL1 value for an injected "unknown reason" (undefined instruction) exception.
pub const fn injected_undef_esr() -> u64 {
    1 << 25
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hvc_xen_tag() {
        // hvc #0xea1 from AArch64.
        let e = Esr((0x16 << 26) | (1 << 25) | 0xea1);
        assert_eq!(e.class(), Class::Hvc64);
        assert_eq!(e.imm16(), 0xea1);
        assert!(e.is_hvc64(0xea1) && !e.is_hvc64(0) && !Esr(0x17 << 26 | 1 << 25 | 0xea1).is_hvc64(0xea1));
        // RES0 ISS bits set, or the upper 32 bits (ISS2): the fast test says no, or ignores them.
        assert!(!Esr(e.0 | 1 << 16).is_hvc64(0xea1) && Esr(e.0 | 1 << 32).is_hvc64(0xea1));
        assert!(!e.is_data_abort_lower() && Esr(0x24 << 26 | 1 << 24).is_data_abort_lower());
        assert_eq!(Esr(0x24 << 26).class(), Class::DataAbortLower);
        assert!(e.il());
    }

    #[test]
    fn data_abort_with_syndrome() {
        // str w1, [x0] to an unmapped IPA: ISV, SAS=2 (word), SRT=1, WnR, FSC=level-3 translation.
        let iss = (1 << 24) | (2 << 22) | (1 << 16) | (1 << 6) | 0x07;
        let e = Esr((0x24 << 26) | (1 << 25) | iss);
        assert_eq!(e.class(), Class::DataAbortLower);
        let d = e.data_abort();
        assert!(d.isv && d.write && d.is_translation_fault());
        assert_eq!((d.size, d.reg, d.sixty_four), (4, 1, false));
        // ldrb x3 sign-extended, 64-bit.
        let iss = (1 << 24) | (1 << 21) | (3 << 16) | (1 << 15) | 0x06;
        let d = Esr((0x24 << 26) | iss).data_abort();
        assert_eq!((d.size, d.reg, d.sign_extend, d.sixty_four, d.write), (1, 3, true, true, false));
    }

    #[test]
    fn data_abort_without_syndrome() {
        let d = Esr((0x24 << 26) | 0x05).data_abort();
        assert!(!d.isv);
        assert!(d.is_translation_fault());
        assert!(!Esr((0x24 << 26) | 0x10).data_abort().is_translation_fault());
    }

    #[test]
    fn sysreg_fields() {
        // mrs x2, cntpct_el0: op0=3 op1=3 CRn=14 CRm=0 op2=1.
        let iss = (3 << 20) | (1 << 17) | (3 << 14) | (14 << 10) | (2 << 5) | 1;
        let s = Esr((0x18 << 26) | iss).sysreg();
        assert_eq!((s.op0, s.op1, s.crn, s.crm, s.op2, s.reg, s.read), (3, 3, 14, 0, 1, 2, true));
    }

    #[test]
    fn classes_and_names() {
        assert_eq!(Esr(0x01 << 26 | 1).class(), Class::Wfx);
        assert!(Esr(0x01 << 26 | 1).is_wfe());
        assert_eq!(Esr(0x3f << 26).class(), Class::Other(0x3f));
        assert_eq!(class_name(0x24), "data abort (lower EL)");
        assert_eq!(fsc_name(0x10), "synchronous external abort");
    }

    #[test]
    fn injected_syndromes() {
        let e = Esr(injected_abort_esr(true, false, true));
        assert_eq!(e.ec(), 0x25);
        assert!(e.data_abort().write);
        assert_eq!(e.data_abort().fsc, 0x10);
        assert_eq!(Esr(injected_abort_esr(false, true, true)).ec(), 0x20);
        assert_eq!(Esr(injected_abort_esr(false, true, true)).iss() & (1 << 6), 0);
        assert_eq!(Esr(injected_undef_esr()).ec(), 0);
    }
}
