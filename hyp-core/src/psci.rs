//! PSCI 1.1 / SMCCC 1.1 as the hypervisor offers them to guests (over `hvc #0` and `smc #0`):
//! function-ID decoding, argument checks and the vCPU power state machine.
//!
//! Invariants: a vCPU is `Off`, `OnPending` (CPU_ON accepted, not yet running) or `On`; only an
//! `Off` vCPU accepts CPU_ON; targets are the domain's own virtual MPIDRs (Aff0 = vCPU index,
//! higher affinity fields zero), so a guest can never address another domain's CPUs.

/// PSCI return codes.
pub mod ret {
    /// Success.
    pub const SUCCESS: i64 = 0;
    /// Function not supported.
    pub const NOT_SUPPORTED: i64 = -1;
    /// Invalid parameters.
    pub const INVALID_PARAMETERS: i64 = -2;
    /// Denied.
    pub const DENIED: i64 = -3;
    /// Target already on.
    pub const ALREADY_ON: i64 = -4;
    /// Target already being turned on.
    pub const ON_PENDING: i64 = -5;
    /// Entry point outside guest RAM.
    pub const INVALID_ADDRESS: i64 = -9;
}

/// Function IDs.
pub mod fid {
    /// PSCI_VERSION.
    pub const PSCI_VERSION: u32 = 0x8400_0000;
    /// CPU_SUSPEND (SMC32).
    pub const CPU_SUSPEND_32: u32 = 0x8400_0001;
    /// CPU_SUSPEND (SMC64).
    pub const CPU_SUSPEND_64: u32 = 0xc400_0001;
    /// CPU_OFF.
    pub const CPU_OFF: u32 = 0x8400_0002;
    /// CPU_ON (SMC32).
    pub const CPU_ON_32: u32 = 0x8400_0003;
    /// CPU_ON (SMC64).
    pub const CPU_ON_64: u32 = 0xc400_0003;
    /// AFFINITY_INFO (SMC32).
    pub const AFFINITY_INFO_32: u32 = 0x8400_0004;
    /// AFFINITY_INFO (SMC64).
    pub const AFFINITY_INFO_64: u32 = 0xc400_0004;
    /// MIGRATE_INFO_TYPE.
    pub const MIGRATE_INFO_TYPE: u32 = 0x8400_0006;
    /// SYSTEM_OFF.
    pub const SYSTEM_OFF: u32 = 0x8400_0008;
    /// SYSTEM_RESET.
    pub const SYSTEM_RESET: u32 = 0x8400_0009;
    /// PSCI_FEATURES.
    pub const PSCI_FEATURES: u32 = 0x8400_000a;
    /// SMCCC_VERSION.
    pub const SMCCC_VERSION: u32 = 0x8000_0000;
    /// SMCCC_ARCH_FEATURES.
    pub const SMCCC_ARCH_FEATURES: u32 = 0x8000_0001;
}

/// PSCI version reported: 1.1.
pub const PSCI_VERSION_1_1: i64 = 0x1_0001;
/// SMCCC version reported: 1.1.
pub const SMCCC_VERSION_1_1: i64 = 0x1_0001;

/// A decoded guest call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Call {
    /// PSCI_VERSION.
    Version,
    /// CPU_SUSPEND: treated as a WFI-like standby that returns at once.
    CpuSuspend,
    /// CPU_OFF for the calling vCPU.
    CpuOff,
    /// CPU_ON.
    CpuOn {
        /// Target virtual MPIDR.
        target: u64,
        /// Entry point (guest physical).
        entry: u64,
        /// Value for x0 at entry.
        context: u64,
    },
    /// AFFINITY_INFO.
    AffinityInfo {
        /// Target virtual MPIDR.
        target: u64,
        /// Lowest affinity level (only 0 supported).
        level: u64,
    },
    /// MIGRATE_INFO_TYPE.
    MigrateInfoType,
    /// SYSTEM_OFF.
    SystemOff,
    /// SYSTEM_RESET.
    SystemReset,
    /// PSCI_FEATURES.
    Features(u32),
    /// SMCCC_VERSION.
    SmcccVersion,
    /// SMCCC_ARCH_FEATURES.
    SmcccArchFeatures(u32),
    /// Anything else: answered NOT_SUPPORTED.
    Unknown(u32),
}

/// Decodes a call from the guest's x0..x3. SMC32/HVC32 variants see 32-bit arguments.
pub fn decode(x: [u64; 4]) -> Call {
    let f = x[0] as u32;
    let a32 = |v: u64| v & 0xffff_ffff;
    match f {
        fid::PSCI_VERSION => Call::Version,
        fid::CPU_SUSPEND_32 | fid::CPU_SUSPEND_64 => Call::CpuSuspend,
        fid::CPU_OFF => Call::CpuOff,
        fid::CPU_ON_32 => Call::CpuOn { target: a32(x[1]), entry: a32(x[2]), context: a32(x[3]) },
        fid::CPU_ON_64 => Call::CpuOn { target: x[1], entry: x[2], context: x[3] },
        fid::AFFINITY_INFO_32 => Call::AffinityInfo { target: a32(x[1]), level: a32(x[2]) },
        fid::AFFINITY_INFO_64 => Call::AffinityInfo { target: x[1], level: x[2] },
        fid::MIGRATE_INFO_TYPE => Call::MigrateInfoType,
        fid::SYSTEM_OFF => Call::SystemOff,
        fid::SYSTEM_RESET => Call::SystemReset,
        fid::PSCI_FEATURES => Call::Features(x[1] as u32),
        fid::SMCCC_VERSION => Call::SmcccVersion,
        fid::SMCCC_ARCH_FEATURES => Call::SmcccArchFeatures(x[1] as u32),
        other => Call::Unknown(other),
    }
}

/// PSCI_FEATURES answer for a function ID.
pub fn features(f: u32) -> i64 {
    match f {
        fid::PSCI_VERSION
        | fid::CPU_SUSPEND_32
        | fid::CPU_SUSPEND_64
        | fid::CPU_OFF
        | fid::CPU_ON_32
        | fid::CPU_ON_64
        | fid::AFFINITY_INFO_32
        | fid::AFFINITY_INFO_64
        | fid::MIGRATE_INFO_TYPE
        | fid::SYSTEM_OFF
        | fid::SYSTEM_RESET
        | fid::PSCI_FEATURES
        | fid::SMCCC_VERSION => ret::SUCCESS,
        _ => ret::NOT_SUPPORTED,
    }
}

/// The virtual MPIDR of vCPU `idx` (bit 31 is RES1; uniprocessor bit clear).
pub const fn vmpidr(idx: usize) -> u64 {
    (1 << 31) | idx as u64
}

/// The vCPU index a guest-supplied MPIDR names, if it is one of the domain's `nr` vCPUs.
pub fn vcpu_of_mpidr(mpidr: u64, nr: usize) -> Option<usize> {
    // Aff3 (39:32), Aff2 (23:16), Aff1 (15:8) must be zero; Aff0 selects the vCPU.
    if mpidr & 0xff_00ff_ff00 != 0 {
        return None;
    }
    let idx = (mpidr & 0xff) as usize;
    (idx < nr).then_some(idx)
}

/// Power state of a vCPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Power {
    /// Not running; accepts CPU_ON.
    Off,
    /// CPU_ON accepted; the pCPU will start it.
    OnPending,
    /// Running.
    On,
}

impl Power {
    /// Encoding for an atomic cell.
    pub const fn to_u8(self) -> u8 {
        match self {
            Self::Off => 0,
            Self::OnPending => 1,
            Self::On => 2,
        }
    }
    /// Decoding of [`Self::to_u8`].
    pub const fn from_u8(v: u8) -> Self {
        match v {
            0 => Self::Off,
            1 => Self::OnPending,
            _ => Self::On,
        }
    }
    /// AFFINITY_INFO return value.
    pub const fn affinity_info(self) -> i64 {
        match self {
            Self::On => 0,
            Self::Off => 1,
            Self::OnPending => 2,
        }
    }
    /// CPU_ON answer given the target's current state (`None`: accept).
    pub const fn cpu_on_refusal(self) -> Option<i64> {
        match self {
            Self::Off => None,
            Self::OnPending => Some(ret::ON_PENDING),
            Self::On => Some(ret::ALREADY_ON),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_cpu_on_widths() {
        let c = decode([fid::CPU_ON_64 as u64, 1 << 31 | 1, 0x1_4000_0000, 7]);
        assert_eq!(c, Call::CpuOn { target: (1 << 31) | 1, entry: 0x1_4000_0000, context: 7 });
        let c = decode([fid::CPU_ON_32 as u64, 0xdead_0000_0000_0001, 0x1_4000_0000, 7]);
        assert_eq!(c, Call::CpuOn { target: 1, entry: 0x4000_0000, context: 7 });
        // The upper half of x0 is ignored (SMCCC: function ID is w0).
        assert_eq!(decode([0xffff_ffff_8400_0008, 0, 0, 0]), Call::SystemOff);
        assert_eq!(decode([0x8400_00ff, 0, 0, 0]), Call::Unknown(0x8400_00ff));
    }

    #[test]
    fn features_answers() {
        assert_eq!(features(fid::CPU_ON_64), ret::SUCCESS);
        assert_eq!(features(0xc400_0012), ret::NOT_SUPPORTED);
    }

    #[test]
    fn mpidr_targets() {
        assert_eq!(vcpu_of_mpidr(vmpidr(1), 2), Some(1));
        assert_eq!(vcpu_of_mpidr(1, 2), Some(1));
        assert_eq!(vcpu_of_mpidr(2, 2), None);
        assert_eq!(vcpu_of_mpidr(0x100, 4), None);
        assert_eq!(vcpu_of_mpidr(0x1_0000_0000, 4), None);
    }

    #[test]
    fn power_states() {
        for p in [Power::Off, Power::OnPending, Power::On] {
            assert_eq!(Power::from_u8(p.to_u8()), p);
        }
        assert_eq!(Power::Off.cpu_on_refusal(), None);
        assert_eq!(Power::On.cpu_on_refusal(), Some(ret::ALREADY_ON));
        assert_eq!(Power::OnPending.cpu_on_refusal(), Some(ret::ON_PENDING));
        assert_eq!(Power::Off.affinity_info(), 1);
    }
}
