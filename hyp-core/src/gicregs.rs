//! The GIC's register map, shared by the hypervisor's physical GIC driver (`hyp-el2/src/gic.rs`,
//! whose `tock-registers` structures place their registers at these offsets) and the emulated
//! distributor and redistributors of the vGIC (`vgic.rs`, which decodes guest accesses with
//! them): register offsets, and the fields of the registers either side reads or builds, as
//! `tock-registers` bitfields. The numbers are the Arm GIC architecture specification's
//! (IHI 0048B for GICv2, IHI 0069 for GICv3).
//!
//! Invariant: nothing here touches hardware; a field is only a position and a width.

/// Distributor register offsets (`GICD_*`). A bank of one bit per interrupt is 0x80 bytes.
pub mod gicd {
    /// Control.
    pub const CTLR: u64 = 0x000;
    /// Type: interrupt lines, CPUs, ID bits.
    pub const TYPER: u64 = 0x004;
    /// Implementer identification.
    pub const IIDR: u64 = 0x008;
    /// Group, one bit per interrupt.
    pub const IGROUPR: u64 = 0x080;
    /// Set-enable.
    pub const ISENABLER: u64 = 0x100;
    /// Clear-enable.
    pub const ICENABLER: u64 = 0x180;
    /// Set-pending.
    pub const ISPENDR: u64 = 0x200;
    /// Clear-pending.
    pub const ICPENDR: u64 = 0x280;
    /// Set-active.
    pub const ISACTIVER: u64 = 0x300;
    /// Clear-active.
    pub const ICACTIVER: u64 = 0x380;
    /// Priority, one byte per interrupt.
    pub const IPRIORITYR: u64 = 0x400;
    /// GICv2 CPU targets, one byte per interrupt.
    pub const ITARGETSR: u64 = 0x800;
    /// Configuration (edge or level), two bits per interrupt.
    pub const ICFGR: u64 = 0xc00;
    /// The end of the configuration registers.
    pub const ICFGR_END: u64 = 0xd00;
    /// GICv2 software-generated interrupts.
    pub const SGIR: u64 = 0xf00;
    /// GICv2 peripheral ID 2 (architecture version in bits 7:4).
    pub const PIDR2_V2: u64 = 0xfe8;
    /// GICv3 interrupt routing, 8 bytes per interrupt (SGIs and PPIs have none: SPIs from
    /// [`IROUTER_SPI`]).
    pub const IROUTER: u64 = 0x6000;
    /// The first SPI's routing register.
    pub const IROUTER_SPI: u64 = IROUTER + 8 * 32;
    /// The end of the routing registers.
    pub const IROUTER_END: u64 = 0x8000;
    /// GICv3 peripheral ID 2.
    pub const PIDR2_V3: u64 = 0xffe8;
    /// Bytes of a one-bit-per-interrupt bank.
    pub const BANK: u64 = 0x80;
}

/// GICv3 redistributor register offsets (`GICR_*`), from the redistributor's base: the
/// control frame, then the SGI/PPI frame at [`gicr::SGI_FRAME`] holding the distributor's
/// registers for the private interrupts at the distributor's offsets.
pub mod gicr {
    /// Control.
    pub const CTLR: u64 = 0x0000;
    /// Implementer identification.
    pub const IIDR: u64 = 0x0004;
    /// Type (64 bits: affinity, processor number, last).
    pub const TYPER: u64 = 0x0008;
    /// Power management.
    pub const WAKER: u64 = 0x0014;
    /// Peripheral ID 2.
    pub const PIDR2: u64 = 0xffe8;
    /// The SGI/PPI frame.
    pub const SGI_FRAME: u64 = 0x1_0000;
}

/// The value every emulated `GICD_IIDR`/`GICR_IIDR` reads: implementer Arm, as a GIC-400 or
/// GIC-600 reports.
pub const IIDR_ARM: u32 = 0x0100_143b;
/// `GICD_PIDR2` of a GICv2 (architecture version 2 in bits 7:4).
pub const PIDR2_GICV2: u32 = 0x2b;
/// `GICD_PIDR2`/`GICR_PIDR2` of a GICv3.
pub const PIDR2_GICV3: u32 = 0x3b;

pub use fields::*;

/// The fields (the macro's register types carry no docs of their own).
#[allow(missing_docs)]
mod fields {
    use tock_registers::register_bitfields;

    register_bitfields! {u32,
        /// Distributor control.
        pub GICD_CTLR [
            /// GICv3: register write pending.
            RWP OFFSET(31) NUMBITS(1) [],
            /// GICv3: affinity routing enabled.
            ARE OFFSET(4) NUMBITS(1) [],
            /// Group 1 forwarding.
            ENABLE_GRP1 OFFSET(1) NUMBITS(1) [],
            /// Group 0 forwarding (GICv2: forwarding on).
            ENABLE_GRP0 OFFSET(0) NUMBITS(1) []
        ],
        /// Distributor type.
        pub GICD_TYPER [
            /// GICv3: interrupt ID bits - 1.
            ID_BITS OFFSET(19) NUMBITS(5) [],
            /// GICv2: CPU interfaces - 1.
            CPU_NUMBER OFFSET(5) NUMBITS(3) [],
            /// (Interrupt IDs / 32) - 1.
            IT_LINES OFFSET(0) NUMBITS(5) []
        ],
        /// GICv2 software-generated interrupt request.
        pub GICD_SGIR [
            /// Which CPUs get it.
            TARGET_FILTER OFFSET(24) NUMBITS(2) [
                /// The CPUs in `CPU_TARGETS`.
                List = 0,
                /// Every CPU but the requester.
                Others = 1,
                /// The requester only.
                SelfOnly = 2
            ],
            /// One bit per CPU interface.
            CPU_TARGETS OFFSET(16) NUMBITS(8) [],
            /// The SGI.
            INTID OFFSET(0) NUMBITS(4) []
        ],
        /// GICv2 CPU interface control.
        pub GICC_CTLR [
            /// Priority drop and deactivation are separate.
            EOI_MODE OFFSET(9) NUMBITS(1) [],
            /// Signalling on.
            ENABLE OFFSET(0) NUMBITS(1) []
        ],
        /// GICv2 virtual interface control (ICH_HCR_EL2 has the same low bits).
        pub GICH_HCR [
            /// Maintenance interrupt when at most one list register is in use.
            UIE OFFSET(1) NUMBITS(1) [],
            /// Virtual CPU interface on.
            EN OFFSET(0) NUMBITS(1) []
        ],
        /// GICv2 virtual interface type.
        pub GICH_VTR [
            /// List registers - 1.
            LIST_REGS OFFSET(0) NUMBITS(6) []
        ],
        /// GICv3 redistributor wake control.
        pub GICR_WAKER [
            /// The interfaces of this redistributor are asleep.
            CHILDREN_ASLEEP OFFSET(2) NUMBITS(1) [],
            /// The connected CPU is asleep.
            PROCESSOR_SLEEP OFFSET(1) NUMBITS(1) []
        ]
    }

    register_bitfields! {u64,
        /// GICv3 redistributor type.
        pub GICR_TYPER [
            /// Affinity of the CPU this redistributor serves (Aff3.Aff2.Aff1.Aff0).
            AFFINITY OFFSET(32) NUMBITS(32) [],
            /// Processor number (the redistributor's index).
            PROCESSOR_NUMBER OFFSET(8) NUMBITS(16) [],
            /// The last redistributor of the region.
            LAST OFFSET(4) NUMBITS(1) []
        ],
        /// GICv3 interrupt routing (`GICD_IROUTER<n>`).
        pub GICD_IROUTER [
            /// Affinity level 3.
            AFF3 OFFSET(32) NUMBITS(8) [],
            /// Interrupt routing mode: any participating CPU.
            IRM OFFSET(31) NUMBITS(1) [],
            /// Affinity level 2.
            AFF2 OFFSET(16) NUMBITS(8) [],
            /// Affinity level 1.
            AFF1 OFFSET(8) NUMBITS(8) [],
            /// Affinity level 0.
            AFF0 OFFSET(0) NUMBITS(8) []
        ],
        /// GICv3 SGI generation (`ICC_SGI1R_EL1`, trapped from guests).
        pub ICC_SGI1R [
            /// Affinity level 3 of the targets.
            AFF3 OFFSET(48) NUMBITS(8) [],
            /// Range selector (targets 16 * RS + bit).
            RS OFFSET(44) NUMBITS(4) [],
            /// Every CPU but the requester.
            IRM OFFSET(40) NUMBITS(1) [],
            /// Affinity level 2 of the targets.
            AFF2 OFFSET(32) NUMBITS(8) [],
            /// The SGI.
            INTID OFFSET(24) NUMBITS(4) [],
            /// Affinity level 1 of the targets.
            AFF1 OFFSET(16) NUMBITS(8) [],
            /// One bit per Aff0 value in the range.
            TARGET_LIST OFFSET(0) NUMBITS(16) []
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tock_registers::LocalRegisterCopy;

    #[test]
    fn fields_sit_where_the_specification_puts_them() {
        let sgir = LocalRegisterCopy::<u32, GICD_SGIR::Register>::new((1 << 24) | (0xa5 << 16) | 7);
        assert_eq!(sgir.read_as_enum(GICD_SGIR::TARGET_FILTER), Some(GICD_SGIR::TARGET_FILTER::Value::Others));
        assert_eq!(sgir.read(GICD_SGIR::CPU_TARGETS), 0xa5);
        assert_eq!(sgir.read(GICD_SGIR::INTID), 7);
        let typer = GICD_TYPER::IT_LINES.val(7) + GICD_TYPER::CPU_NUMBER.val(3) + GICD_TYPER::ID_BITS.val(9);
        assert_eq!(typer.value, 7 | (3 << 5) | (9 << 19));
        let sgi1r = LocalRegisterCopy::<u64, ICC_SGI1R::Register>::new((1 << 40) | (5 << 24) | (2 << 16) | 0b1010);
        assert!(sgi1r.is_set(ICC_SGI1R::IRM));
        assert_eq!(sgi1r.read(ICC_SGI1R::INTID), 5);
        assert_eq!(sgi1r.read(ICC_SGI1R::AFF1), 2);
        assert_eq!(sgi1r.read(ICC_SGI1R::TARGET_LIST), 0b1010);
        let r = (GICR_TYPER::AFFINITY.val(3) + GICR_TYPER::PROCESSOR_NUMBER.val(3) + GICR_TYPER::LAST::SET).value;
        assert_eq!(r, (3 << 32) | (3 << 8) | (1 << 4));
        assert_eq!(gicd::IROUTER_SPI, 0x6100);
        assert_eq!(gicd::ISENABLER + gicd::BANK, gicd::ICENABLER);
    }
}
