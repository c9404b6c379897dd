//! The partition plan: which domains exist, their CPUs, memory, images and policies, and the one
//! validation routine that both `xtask` (on the host, before an image is built) and the
//! hypervisor (at boot, before anything runs) apply.
//!
//! Invariants a validated [`Plan`] guarantees:
//! - every domain has a unique, well-formed name, 1..=[`MAX_VCPUS`] vCPUs, each pinned to a
//!   distinct physical CPU that exists, and no physical CPU serves two vCPUs;
//! - domain RAM is 2 MiB aligned, inside the board's RAM, disjoint from every other domain, the
//!   hypervisor and the boot staging window;
//! - each kernel (and initrd) module lies in the staging window and fits in its domain's RAM
//!   together with the guest device tree.
//!
//! Errors carry the domain index and the name of the deployment-file field at fault, so both
//! sides print the same message.

use crate::addr::{Ipa, PhysRange, BLOCK_2M};
use crate::list::List;
use core::fmt;

/// Most domains in one plan.
pub const MAX_DOMAINS: usize = 8;
/// Most vCPUs of one domain (and physical CPUs of a board).
pub const MAX_VCPUS: usize = 8;
/// Longest domain name.
pub const MAX_NAME: usize = 31;
/// Longest kernel command line.
pub const MAX_BOOTARGS: usize = 1024;
/// Most passthrough devices of one domain.
pub const MAX_DEVICES: usize = 8;
/// Most PV devices (vbd + vif) of one frontend domain.
pub const MAX_PV: usize = 4;
/// Longest vbd target or bridge name.
pub const MAX_TARGET: usize = 64;
/// Bytes at the top of a domain's RAM reserved for its device tree.
pub const GUEST_DTB_SLOT: u64 = BLOCK_2M;
/// Guest physical base of unikernel RAM (Xen's `GUEST_RAM0_BASE`).
pub const GUEST_RAM0_BASE: Ipa = Ipa(0x4000_0000);
/// Largest unikernel RAM bank (Xen's `GUEST_RAM0_SIZE`, 3 GiB).
pub const GUEST_RAM0_SIZE: u64 = 0xc000_0000;

/// What runs in a domain.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum DomainKind {
    /// A Rust unikernel (Xen guest memory layout).
    #[default]
    Unikernel,
    /// Linux, direct-mapped (IPA == PA) so passthrough devices can DMA.
    Linux,
}

impl DomainKind {
    /// Spelling in deployment files and device trees.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Unikernel => "unikernel",
            Self::Linux => "linux",
        }
    }
    /// Parses the spelling of [`Self::as_str`].
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "unikernel" => Some(Self::Unikernel),
            "linux" => Some(Self::Linux),
            _ => None,
        }
    }
}

/// What happens when a guest touches memory outside its partition.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum FaultPolicy {
    /// Inject a synchronous external abort; the guest may handle it.
    #[default]
    Inject,
    /// Stop the domain.
    Stop,
}

impl FaultPolicy {
    /// Spelling in deployment files and device trees.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Inject => "inject",
            Self::Stop => "stop",
        }
    }
    /// Parses the spelling of [`Self::as_str`].
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "inject" => Some(Self::Inject),
            "stop" => Some(Self::Stop),
            _ => None,
        }
    }
}

/// What a guest's PSCI `SYSTEM_OFF` does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum PowerOffPolicy {
    /// Only this domain ends; the board powers off once every domain has ended.
    #[default]
    Domain,
    /// The whole board powers off.
    Board,
}

impl PowerOffPolicy {
    /// Spelling in deployment files and device trees.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Domain => "domain",
            Self::Board => "board",
        }
    }
    /// Parses the spelling of [`Self::as_str`].
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "domain" => Some(Self::Domain),
            "board" => Some(Self::Board),
            _ => None,
        }
    }
}

/// What happens when a domain crashes: it panics (`SCHEDOP_shutdown(crash)`), takes an
/// unrecoverable exception, is stopped by `on_fault = "stop"` or its watchdog expires.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum CrashPolicy {
    /// It stays stopped until the control domain starts it (`hypctl start`).
    #[default]
    Stop,
    /// It is restarted from its images, up to `restart_limit` times within `restart_window`.
    Restart,
    /// The whole board powers off.
    Board,
}

impl CrashPolicy {
    /// Spelling in deployment files and device trees.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Stop => "stop",
            Self::Restart => "restart",
            Self::Board => "board",
        }
    }
    /// Parses the spelling of [`Self::as_str`].
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "stop" => Some(Self::Stop),
            "restart" => Some(Self::Restart),
            "board" => Some(Self::Board),
            _ => None,
        }
    }
}

/// What a guest's reboot (PSCI `SYSTEM_RESET`, `SCHEDOP_shutdown(reboot)`) does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum RebootPolicy {
    /// It restarts from its images (counted against its restart limit as well).
    #[default]
    Restart,
    /// It stops.
    Stop,
}

impl RebootPolicy {
    /// Spelling in deployment files and device trees.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Restart => "restart",
            Self::Stop => "stop",
        }
    }
    /// Parses the spelling of [`Self::as_str`].
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "restart" => Some(Self::Restart),
            "stop" => Some(Self::Stop),
            _ => None,
        }
    }
}

/// Most restarts `restart_limit` may allow.
pub const MAX_RESTART_LIMIT: u32 = 1000;
/// Longest `restart_window`, in seconds (a day).
pub const MAX_RESTART_WINDOW: u32 = 86_400;

/// A domain's lifecycle policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lifecycle {
    /// Started at boot (otherwise declared and checked, started by `hypctl start`).
    pub autostart: bool,
    /// What a crash does.
    pub on_crash: CrashPolicy,
    /// What a reboot does.
    pub on_reboot: RebootPolicy,
    /// Restarts (by policy) allowed within `restart_window` seconds; one more and the domain
    /// stays stopped.
    pub restart_limit: u32,
    /// The window of `restart_limit`, in seconds.
    pub restart_window: u32,
}

impl Default for Lifecycle {
    fn default() -> Self {
        Self {
            autostart: true,
            on_crash: CrashPolicy::Stop,
            on_reboot: RebootPolicy::Restart,
            restart_limit: 5,
            restart_window: 60,
        }
    }
}

/// Parses a duration in whole seconds: `"90"`, `"90s"`, `"5m"` or `"1h"`.
pub fn parse_seconds(s: &str) -> Option<u32> {
    let s = s.trim();
    let (num, mul) = match s.as_bytes().last()? {
        b's' => (&s[..s.len() - 1], 1),
        b'm' => (&s[..s.len() - 1], 60),
        b'h' => (&s[..s.len() - 1], 3600),
        _ => (s, 1),
    };
    if num.is_empty() || !num.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    num.parse::<u32>().ok()?.checked_mul(mul)
}

/// The kind of a PV device.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum PvKind {
    /// A virtual block device (blkfront ↔ blkback).
    #[default]
    Vbd,
    /// A virtual network interface (netfront ↔ netback).
    Vif,
}

impl PvKind {
    /// Spelling in deployment files, device trees and xenstore paths.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Vbd => "vbd",
            Self::Vif => "vif",
        }
    }
}

/// A PV device of a frontend domain, served by a backend (driver) domain. The hypervisor writes
/// both xenstore directories from it at boot, as Xen's toolstack would.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct PvDevice<'a> {
    /// vbd or vif.
    pub kind: PvKind,
    /// Name of the backend domain.
    pub backend: &'a str,
    /// Device id: a vbd's `virtual-device` number (xvda = 51712), a vif's handle (0, 1, ...).
    pub devid: u32,
    /// vbd: what the backend serves (a block device such as `/dev/vda2`, or a file path in the
    /// backend domain); vif: the bridge the backend attaches the interface to.
    pub target: &'a str,
    /// vbd: the frontend may write.
    pub writable: bool,
    /// vif: the frontend's MAC address.
    pub mac: [u8; 6],
}

/// One domain of the plan. Strings borrow from the device tree or the deployment file.
#[derive(Clone, Copy, Debug, Default)]
pub struct Domain<'a> {
    /// Unique name, used to tag console output.
    pub name: &'a str,
    /// What runs in it.
    pub kind: DomainKind,
    /// Physical CPU of each vCPU (vCPU i runs on `pcpus[i]`).
    pub pcpus: List<u8, MAX_VCPUS>,
    /// Physical RAM of the domain.
    pub memory: PhysRange,
    /// Where the kernel image sits in the staging window.
    pub kernel: PhysRange,
    /// Where the initial ramdisk sits, if any.
    pub initrd: Option<PhysRange>,
    /// Bytes the kernel needs from the start of RAM: text offset + image size from its header.
    pub kernel_footprint: u64,
    /// Kernel command line.
    pub bootargs: &'a str,
    /// Stage-2 fault policy.
    pub on_fault: FaultPolicy,
    /// `SYSTEM_OFF` policy.
    pub on_poweroff: PowerOffPolicy,
    /// Autostart, crash and reboot policies.
    pub lifecycle: Lifecycle,
    /// Host device-tree paths of the devices passed through to this domain.
    pub devices: List<&'a str, MAX_DEVICES>,
    /// Offered the Xen guest ABI (hypercalls, event channels, grant tables, xenstore, PV
    /// console) with a `/hypervisor` node in its device tree.
    pub xen: bool,
    /// PV devices this domain is the frontend of.
    pub pv: List<PvDevice<'a>, MAX_PV>,
    /// The kernel image's SHA-256, from a signed plan (`ferrum,sha256`): checked before it starts.
    pub sha256: Option<[u8; 32]>,
}

impl Domain<'_> {
    /// Guest physical base of the domain's RAM.
    pub fn ipa_base(&self) -> Ipa {
        match self.kind {
            DomainKind::Linux => Ipa(self.memory.base.0),
            DomainKind::Unikernel => GUEST_RAM0_BASE,
        }
    }
}

/// The board-side facts validation needs.
#[derive(Clone, Copy, Debug)]
pub struct BoardLimits<'a> {
    /// RAM domains may use.
    pub ram: &'a [PhysRange],
    /// Number of physical CPUs.
    pub cpus: usize,
    /// The hypervisor's own region.
    pub hyp: PhysRange,
    /// Where boot modules are staged.
    pub staging: PhysRange,
}

/// A whole deployment.
#[derive(Clone, Copy, Debug, Default)]
pub struct Plan<'a> {
    /// Domains, in boot order.
    pub domains: List<Domain<'a>, MAX_DOMAINS>,
    /// The Ed25519 key image updates must be signed with (`/chosen/ferrum,update-key`, a
    /// signed plan's), if any.
    pub update_key: Option<[u8; 32]>,
}

/// What is wrong with a plan.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Problem {
    /// No domain at all.
    NoDomains,
    /// More domains than supported.
    TooManyDomains,
    /// The name is empty, too long or has characters outside `[a-z0-9_-]`.
    BadName,
    /// Two domains share a name (the other's index).
    DuplicateName(usize),
    /// No vCPU.
    NoCpus,
    /// More vCPUs than supported.
    TooManyCpus,
    /// This physical CPU does not exist on the board.
    NoSuchCpu(u8),
    /// This physical CPU is used twice (by the domain with that index).
    CpuUsedTwice(u8, usize),
    /// Size zero, or not a multiple of 2 MiB.
    BadSize(u64),
    /// Base not 2 MiB aligned.
    Misaligned(u64),
    /// Not inside the board's RAM.
    OutsideRam(PhysRange),
    /// Overlaps another domain's RAM (its index).
    OverlapsDomain(usize, PhysRange),
    /// Overlaps the hypervisor.
    OverlapsHypervisor(PhysRange),
    /// Overlaps the boot staging window.
    OverlapsStaging(PhysRange),
    /// A unikernel's RAM is larger than Xen's guest layout allows.
    TooLargeForGuestLayout(u64),
    /// The module is empty or outside the staging window.
    ModuleOutsideStaging(PhysRange),
    /// The kernel (plus initrd and device tree) does not fit in the domain's RAM.
    DoesNotFit {
        /// Bytes needed.
        need: u64,
        /// Bytes available.
        have: u64,
    },
    /// The command line is longer than [`MAX_BOOTARGS`].
    BootargsTooLong(usize),
    /// The kernel module is not a usable arm64 Image.
    BadImage(crate::image::ImageError),
    /// A device-tree property is missing or malformed (its name).
    BadProperty(&'static str),
    /// The board tree (`"/"`) needs a direct-mapped (`kind = "linux"`) domain.
    BoardTreeNeedsDirectMap,
    /// Not an absolute device-tree path.
    BadDevicePath,
    /// The device is already given to the domain with that index.
    DeviceUsedTwice(usize),
    /// `"/"` (the rest of the board) must be the domain's only entry, in one domain only.
    BoardTreeNotAlone,
    /// More than [`MAX_DEVICES`] devices.
    TooManyDevices,
    /// More than [`MAX_PV`] PV devices.
    TooManyPvDevices,
    /// PV devices need the Xen guest ABI on both ends (`xen = true`).
    PvNeedsXen,
    /// The backend names no domain of the plan.
    NoSuchBackend,
    /// A domain cannot be its own backend.
    SelfBackend,
    /// Backends run in a Linux driver domain (`kind = "linux"`, which runs xen-blkback and
    /// xen-netback).
    BackendNotLinux,
    /// Two PV devices of the same kind share a device id.
    DuplicateDevid(u32),
    /// The vbd target or bridge name is empty, too long or has characters outside
    /// `[A-Za-z0-9/._:-]`.
    BadTarget,
    /// The MAC address is a multicast or all-zero address.
    BadMac,
    /// The control domain (the first Xen-aware Linux domain) must start at boot.
    ControlNotAutostart,
    /// `restart_limit` outside `1..=MAX_RESTART_LIMIT`.
    BadRestartLimit(u32),
    /// `restart_window` outside `1..=MAX_RESTART_WINDOW` seconds.
    BadRestartWindow(u32),
}

/// A validation error: which domain, which field, what is wrong.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PlanError {
    /// Index of the domain at fault, if any.
    pub domain: Option<usize>,
    /// Deployment-file field at fault.
    pub field: &'static str,
    /// The problem.
    pub problem: Problem,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoDomains => write!(f, "the deployment has no domain"),
            Self::TooManyDomains => write!(f, "more than {MAX_DOMAINS} domains"),
            Self::BadName => write!(f, "must be 1..={MAX_NAME} characters of a-z, 0-9, '-' or '_'"),
            Self::DuplicateName(i) => write!(f, "the same name is used by domain #{i}"),
            Self::NoCpus => write!(f, "a domain needs at least one CPU"),
            Self::TooManyCpus => write!(f, "more than {MAX_VCPUS} CPUs"),
            Self::NoSuchCpu(c) => write!(f, "physical CPU {c} does not exist on this board"),
            Self::CpuUsedTwice(c, i) => write!(f, "physical CPU {c} is already used by domain #{i}"),
            Self::BadSize(s) => write!(f, "size {s:#x} must be a non-zero multiple of 2 MiB"),
            Self::Misaligned(b) => write!(f, "base {b:#x} must be 2 MiB aligned"),
            Self::OutsideRam(r) => write!(f, "region {r} is outside the board's RAM"),
            Self::OverlapsDomain(i, r) => write!(f, "region {r} overlaps the memory of domain #{i}"),
            Self::OverlapsHypervisor(r) => write!(f, "region {r} overlaps the hypervisor"),
            Self::OverlapsStaging(r) => write!(f, "region {r} overlaps the boot staging window"),
            Self::TooLargeForGuestLayout(s) => {
                write!(f, "{s:#x} bytes exceed the 3 GiB guest RAM bank of a unikernel")
            }
            Self::ModuleOutsideStaging(r) => write!(f, "module at {r} is empty or outside the staging window"),
            Self::DoesNotFit { need, have } => {
                write!(f, "needs {need:#x} bytes of RAM (image + initrd + device tree), the domain has {have:#x}")
            }
            Self::BootargsTooLong(n) => write!(f, "{n} bytes, more than {MAX_BOOTARGS}"),
            Self::BadImage(e) => write!(f, "{e}"),
            Self::BadProperty(p) => write!(f, "device-tree property '{p}' is missing or malformed"),
            Self::BoardTreeNeedsDirectMap => write!(
                f,
                "\"/\" (the board's devices) needs a direct-mapped domain (kind = \"linux\"): its devices DMA to physical addresses"
            ),
            Self::BadDevicePath => write!(f, "must be an absolute device-tree path such as \"/virtio_mmio@a003e00\""),
            Self::DeviceUsedTwice(i) => write!(f, "the device is already given to domain #{i}"),
            Self::BoardTreeNotAlone => write!(
                f,
                "\"/\" (every device not kept by the hypervisor or given to another domain) must be the only entry, and only one domain may have it"
            ),
            Self::TooManyDevices => write!(f, "more than {MAX_DEVICES} devices"),
            Self::TooManyPvDevices => write!(f, "more than {MAX_PV} PV devices (vbd + vif)"),
            Self::PvNeedsXen => write!(f, "PV devices need the Xen guest ABI on both ends (xen = true)"),
            Self::ControlNotAutostart => {
                write!(f, "the control domain (the first Linux domain with xen = true) must start at boot")
            }
            Self::BadRestartLimit(n) => write!(f, "{n} is not in 1..={MAX_RESTART_LIMIT}"),
            Self::BadRestartWindow(n) => write!(f, "{n} s is not in 1..={MAX_RESTART_WINDOW} s"),
            Self::NoSuchBackend => write!(f, "names no domain of this deployment"),
            Self::SelfBackend => write!(f, "a domain cannot be its own backend"),
            Self::BackendNotLinux => {
                write!(
                    f,
                    "the backend must be a Linux driver domain (kind = \"linux\"): it runs xen-blkback / xen-netback"
                )
            }
            Self::DuplicateDevid(id) => write!(f, "device id {id} is used twice"),
            Self::BadTarget => {
                write!(f, "must be 1..={MAX_TARGET} characters of A-Z, a-z, 0-9, '/', '.', '_', ':' or '-'")
            }
            Self::BadMac => write!(f, "must be a unicast, non-zero MAC address such as \"00:16:3e:00:00:02\""),
        }
    }
}

fn err(domain: usize, field: &'static str, problem: Problem) -> PlanError {
    PlanError { domain: Some(domain), field, problem }
}

/// A vbd target or bridge name: no spaces, quotes or shell characters (the backend domain's
/// agent uses it as a path or interface name).
pub fn target_ok(t: &str) -> bool {
    !t.is_empty()
        && t.len() <= MAX_TARGET
        && t.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'.' | b'_' | b':' | b'-'))
}

/// Checks the PV devices of domain `i` against the plan.
fn validate_pv(doms: &[Domain<'_>], i: usize) -> Result<(), PlanError> {
    let d = &doms[i];
    for (k, p) in d.pv.iter().enumerate() {
        let field = p.kind.as_str();
        if !d.xen {
            return Err(err(i, field, Problem::PvNeedsXen));
        }
        let b = doms.iter().position(|o| o.name == p.backend).ok_or(err(i, field, Problem::NoSuchBackend))?;
        if b == i {
            return Err(err(i, field, Problem::SelfBackend));
        }
        if doms[b].kind != DomainKind::Linux {
            return Err(err(i, field, Problem::BackendNotLinux));
        }
        if !doms[b].xen {
            return Err(err(i, field, Problem::PvNeedsXen));
        }
        if d.pv[..k].iter().any(|o| o.kind == p.kind && o.devid == p.devid) {
            return Err(err(i, field, Problem::DuplicateDevid(p.devid)));
        }
        if !target_ok(p.target) {
            return Err(err(i, field, Problem::BadTarget));
        }
        if p.kind == PvKind::Vif && (p.mac[0] & 1 != 0 || p.mac == [0; 6]) {
            return Err(err(i, field, Problem::BadMac));
        }
    }
    Ok(())
}

fn name_ok(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

/// Checks a plan against a board. On success the invariants in the module docs hold.
pub fn validate(plan: &Plan<'_>, board: &BoardLimits<'_>) -> Result<(), PlanError> {
    let doms = &plan.domains;
    if doms.is_empty() {
        return Err(PlanError { domain: None, field: "domain", problem: Problem::NoDomains });
    }
    let mut cpu_owner: [Option<usize>; 256] = [None; 256];
    for (i, d) in doms.iter().enumerate() {
        if !name_ok(d.name) {
            return Err(err(i, "name", Problem::BadName));
        }
        if let Some(j) = doms[..i].iter().position(|o| o.name == d.name) {
            return Err(err(i, "name", Problem::DuplicateName(j)));
        }
        if d.pcpus.is_empty() {
            return Err(err(i, "cpus", Problem::NoCpus));
        }
        let l = d.lifecycle;
        if !(1..=MAX_RESTART_LIMIT).contains(&l.restart_limit) {
            return Err(err(i, "restart_limit", Problem::BadRestartLimit(l.restart_limit)));
        }
        if !(1..=MAX_RESTART_WINDOW).contains(&l.restart_window) {
            return Err(err(i, "restart_window", Problem::BadRestartWindow(l.restart_window)));
        }
        if !l.autostart
            && d.xen
            && d.kind == DomainKind::Linux
            && !doms[..i].iter().any(|o| o.xen && o.kind == DomainKind::Linux)
        {
            return Err(err(i, "autostart", Problem::ControlNotAutostart));
        }
        for &c in d.pcpus.iter() {
            if usize::from(c) >= board.cpus {
                return Err(err(i, "cpus", Problem::NoSuchCpu(c)));
            }
            if let Some(j) = cpu_owner[usize::from(c)] {
                return Err(err(i, "cpus", Problem::CpuUsedTwice(c, j)));
            }
            cpu_owner[usize::from(c)] = Some(i);
        }
        let m = d.memory;
        if m.size == 0 || m.size % BLOCK_2M != 0 {
            return Err(err(i, "memory", Problem::BadSize(m.size)));
        }
        if !m.base.is_aligned(BLOCK_2M) {
            return Err(err(i, "memory_base", Problem::Misaligned(m.base.0)));
        }
        if !board.ram.iter().any(|r| r.contains(&m)) {
            return Err(err(i, "memory", Problem::OutsideRam(m)));
        }
        if m.overlaps(&board.hyp) {
            return Err(err(i, "memory", Problem::OverlapsHypervisor(m)));
        }
        if m.overlaps(&board.staging) {
            return Err(err(i, "memory", Problem::OverlapsStaging(m)));
        }
        if let Some(j) = doms[..i].iter().position(|o| o.memory.overlaps(&m)) {
            return Err(err(i, "memory", Problem::OverlapsDomain(j, m)));
        }
        if d.kind == DomainKind::Unikernel && m.size > GUEST_RAM0_SIZE {
            return Err(err(i, "memory", Problem::TooLargeForGuestLayout(m.size)));
        }
        let k = d.kernel;
        if k.size == 0 || !board.staging.contains(&k) {
            return Err(err(i, "kernel", Problem::ModuleOutsideStaging(k)));
        }
        let mut need = d.kernel_footprint.max(k.size);
        if let Some(rd) = d.initrd {
            if rd.size == 0 || !board.staging.contains(&rd) {
                return Err(err(i, "initrd", Problem::ModuleOutsideStaging(rd)));
            }
            need = need.next_multiple_of(BLOCK_2M).saturating_add(rd.size);
        }
        let need = need.saturating_add(GUEST_DTB_SLOT);
        if need > m.size {
            return Err(err(i, "memory", Problem::DoesNotFit { need, have: m.size }));
        }
        if d.bootargs.len() > MAX_BOOTARGS {
            return Err(err(i, "bootargs", Problem::BootargsTooLong(d.bootargs.len())));
        }
        for dev in d.devices.iter() {
            if *dev == "/" {
                if d.kind != DomainKind::Linux {
                    return Err(err(i, "devices", Problem::BoardTreeNeedsDirectMap));
                }
                let elsewhere = doms.iter().enumerate().any(|(j, o)| j != i && o.devices.contains(&"/"));
                if d.devices.len() != 1 || elsewhere {
                    return Err(err(i, "devices", Problem::BoardTreeNotAlone));
                }
                continue;
            }
            if !dev.starts_with('/') || dev.len() < 2 || dev.contains("//") {
                return Err(err(i, "devices", Problem::BadDevicePath));
            }
            let mut earlier = doms[..=i].iter().enumerate().flat_map(|(j, o)| o.devices.iter().map(move |p| (j, *p)));
            let first = earlier.find(|(_, p)| p == dev).map(|(j, _)| j);
            let count_here = d.devices.iter().filter(|p| *p == dev).count();
            match first {
                Some(j) if j != i => return Err(err(i, "devices", Problem::DeviceUsedTwice(j))),
                Some(_) if count_here > 1 => return Err(err(i, "devices", Problem::DeviceUsedTwice(i))),
                _ => {}
            }
        }
        validate_pv(doms, i)?;
    }
    Ok(())
}

/// What a unikernel's guest-physical space holds besides its passthrough devices (which appear
/// at their physical addresses): Xen's guest layout, which the hypervisor emulates or maps.
/// A device page inside one of these would be shadowed or would shadow it.
pub fn unikernel_layout(memory: u64) -> [(&'static str, PhysRange); 6] {
    use xen_abi::layout as x;
    [
        ("virtual GIC", PhysRange::new(0x0300_0000, 0x0100_0000)),
        ("emulated console (PL011)", PhysRange::new(crate::vuart::VUART_BASE, crate::vuart::VUART_SIZE)),
        ("grant-table window", PhysRange::new(x::GNTTAB_BASE, x::GNTTAB_SIZE)),
        ("Xen magic pages", PhysRange::new(x::MAGIC_BASE, 0x0100_0000)),
        ("RAM", PhysRange::new(GUEST_RAM0_BASE.0, memory)),
        ("grant mapping window", PhysRange::new(x::EXT_BASE, x::EXT_SIZE)),
    ]
}

/// The part of a unikernel's layout that `r` (a passthrough device's pages) overlaps, if any.
pub fn unikernel_clash(memory: u64, r: &PhysRange) -> Option<&'static str> {
    unikernel_layout(memory).into_iter().find(|(_, l)| l.overlaps(r)).map(|(what, _)| what)
}

/// Where the pieces of a domain go in its guest-physical space.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GuestLayout {
    /// Where the kernel image is copied (RAM base + text offset).
    pub kernel: Ipa,
    /// Where the initrd is copied, if any.
    pub initrd: Option<Ipa>,
    /// Where the device tree is written.
    pub dtb: Ipa,
}

/// Places kernel, initrd and device tree of a validated domain. `text_offset` comes from the
/// kernel's arm64 Image header.
pub fn guest_layout(d: &Domain<'_>, text_offset: u64) -> GuestLayout {
    let base = d.ipa_base();
    let kernel = Ipa(base.0 + text_offset);
    let initrd = d.initrd.map(|_| Ipa(base.0 + d.kernel_footprint.max(d.kernel.size).next_multiple_of(BLOCK_2M)));
    let dtb = Ipa(base.0 + d.memory.size - GUEST_DTB_SLOT);
    GuestLayout { kernel, initrd, dtb }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    fn board() -> ([PhysRange; 1], BoardLimits<'static>) {
        static RAM: [PhysRange; 1] = [PhysRange::new(0x4000_0000, 0x8000_0000)];
        (
            RAM,
            BoardLimits {
                ram: &RAM,
                cpus: 4,
                hyp: PhysRange::new(0x4000_0000, 16 * MIB),
                staging: PhysRange::new(0x4100_0000, 240 * MIB),
            },
        )
    }

    fn dom(name: &'static str, cpus: &[u8], base: u64, size: u64) -> Domain<'static> {
        Domain {
            name,
            pcpus: List::from_slice(cpus).unwrap(),
            memory: PhysRange::new(base, size),
            kernel: PhysRange::new(0x4120_0000, 0x10000),
            kernel_footprint: 0x20000,
            ..Default::default()
        }
    }

    fn plan(doms: &[Domain<'static>]) -> Plan<'static> {
        Plan { domains: List::from_slice(doms).unwrap(), update_key: None }
    }

    fn check(doms: &[Domain<'static>]) -> Result<(), PlanError> {
        validate(&plan(doms), &board().1)
    }

    #[test]
    fn good_plan_passes() {
        let a = dom("a", &[0, 1], 0x5000_0000, 32 * MIB);
        let b = dom("b-2", &[2], 0x5200_0000, 32 * MIB);
        assert_eq!(check(&[a, b]), Ok(()));
    }

    #[test]
    fn lifecycle_fields_are_checked_and_named() {
        let a = dom("a", &[0, 1], 0x5000_0000, 32 * MIB);
        let b = dom("b", &[2], 0x5200_0000, 32 * MIB);
        let with = |l: Lifecycle| {
            let mut d = b;
            d.lifecycle = l;
            d
        };
        let ok = Lifecycle {
            autostart: false,
            on_crash: CrashPolicy::Restart,
            restart_limit: 3,
            restart_window: 30,
            ..Lifecycle::default()
        };
        assert_eq!(check(&[a, with(ok)]), Ok(()));
        let e = check(&[a, with(Lifecycle { restart_limit: 0, ..ok })]).unwrap_err();
        assert_eq!((e.domain, e.field, e.problem), (Some(1), "restart_limit", Problem::BadRestartLimit(0)));
        let e = check(&[a, with(Lifecycle { restart_window: MAX_RESTART_WINDOW + 1, ..ok })]).unwrap_err();
        assert_eq!(e.field, "restart_window");
        // The control domain (first Xen-aware Linux) must start at boot; a later Linux may not.
        let linux = |mut d: Domain<'static>, autostart| {
            d.kind = DomainKind::Linux;
            d.xen = true;
            d.lifecycle.autostart = autostart;
            d
        };
        let e = check(&[linux(a, false), b]).unwrap_err();
        assert_eq!((e.domain, e.field, e.problem), (Some(0), "autostart", Problem::ControlNotAutostart));
        assert_eq!(check(&[linux(a, true), linux(b, false)]), Ok(()));
    }

    #[test]
    fn durations() {
        assert_eq!(parse_seconds("60s"), Some(60));
        assert_eq!(parse_seconds("90"), Some(90));
        assert_eq!(parse_seconds("5m"), Some(300));
        assert_eq!(parse_seconds("2h"), Some(7200));
        for bad in ["", "s", "-1s", "1.5s", "10d", "99999999999h", " m"] {
            assert_eq!(parse_seconds(bad), None, "{bad}");
        }
        for p in [CrashPolicy::Stop, CrashPolicy::Restart, CrashPolicy::Board] {
            assert_eq!(CrashPolicy::parse(p.as_str()), Some(p));
        }
        for p in [RebootPolicy::Stop, RebootPolicy::Restart] {
            assert_eq!(RebootPolicy::parse(p.as_str()), Some(p));
        }
    }

    #[test]
    fn board_tree_is_alone_and_once() {
        let linux = |name, cpus: &[u8], base, devices: &[&'static str]| Domain {
            kind: DomainKind::Linux,
            devices: List::from_slice(devices).unwrap(),
            ..dom(name, cpus, base, 64 * MIB)
        };
        assert_eq!(check(&[linux("a", &[0], 0x5000_0000, &["/"])]), Ok(()));
        let e = check(&[linux("a", &[0], 0x5000_0000, &["/", "/soc/mmc@7e340000"])]).unwrap_err();
        assert_eq!((e.field, e.problem), ("devices", Problem::BoardTreeNotAlone));
        let e = check(&[linux("a", &[0], 0x5000_0000, &["/"]), linux("b", &[1], 0x5800_0000, &["/"])]).unwrap_err();
        assert_eq!((e.domain, e.problem), (Some(0), Problem::BoardTreeNotAlone));
        let uni = Domain { devices: List::from_slice(&["/"]).unwrap(), ..dom("u", &[0], 0x5000_0000, 32 * MIB) };
        assert_eq!(check(&[uni]).unwrap_err().problem, Problem::BoardTreeNeedsDirectMap);
        // One device (no DMA: a GPIO block) may go to a unikernel.
        let gpio = Domain {
            devices: List::from_slice(&["/soc/gpio@7e200000"]).unwrap(),
            ..dom("g", &[0], 0x5000_0000, 32 * MIB)
        };
        assert_eq!(check(&[gpio]), Ok(()));
    }

    #[test]
    fn unikernel_devices_stay_clear_of_its_layout() {
        let at = |base, size| PhysRange::new(base, size);
        assert_eq!(unikernel_clash(32 * MIB, &at(0xfe20_0000, 0x1000)), None); // the Pi's GPIO
        assert_eq!(unikernel_clash(32 * MIB, &at(0x0903_0000, 0x1000)), None); // virt's PL061
        assert_eq!(unikernel_clash(32 * MIB, &at(0x0300_1000, 0x1000)), Some("virtual GIC"));
        assert_eq!(unikernel_clash(32 * MIB, &at(0x41ff_f000, 0x1000)), Some("RAM"));
        assert_eq!(unikernel_clash(32 * MIB, &at(0x4200_0000, 0x1000)), None);
        assert_eq!(unikernel_clash(32 * MIB, &at(0x2200_0000, 0x1000)), Some("emulated console (PL011)"));
    }

    #[test]
    fn empty_plan() {
        assert_eq!(check(&[]).unwrap_err().problem, Problem::NoDomains);
    }

    #[test]
    fn names() {
        let e = check(&[dom("Bad Name", &[0], 0x5000_0000, 32 * MIB)]).unwrap_err();
        assert_eq!((e.domain, e.field, e.problem), (Some(0), "name", Problem::BadName));
        let e = check(&[dom("", &[0], 0x5000_0000, 32 * MIB)]).unwrap_err();
        assert_eq!(e.problem, Problem::BadName);
        let e = check(&[dom("a", &[0], 0x5000_0000, 32 * MIB), dom("a", &[1], 0x5400_0000, 32 * MIB)]).unwrap_err();
        assert_eq!((e.domain, e.field, e.problem), (Some(1), "name", Problem::DuplicateName(0)));
    }

    #[test]
    fn cpus() {
        let e = check(&[dom("a", &[], 0x5000_0000, 32 * MIB)]).unwrap_err();
        assert_eq!((e.field, e.problem), ("cpus", Problem::NoCpus));
        let e = check(&[dom("a", &[4], 0x5000_0000, 32 * MIB)]).unwrap_err();
        assert_eq!(e.problem, Problem::NoSuchCpu(4));
        let e = check(&[dom("a", &[1], 0x5000_0000, 32 * MIB), dom("b", &[2, 1], 0x5400_0000, 32 * MIB)]).unwrap_err();
        assert_eq!((e.domain, e.problem), (Some(1), Problem::CpuUsedTwice(1, 0)));
        let e = check(&[dom("a", &[1, 1], 0x5000_0000, 32 * MIB)]).unwrap_err();
        assert_eq!(e.problem, Problem::CpuUsedTwice(1, 0));
    }

    #[test]
    fn memory_errors() {
        let e = check(&[dom("a", &[0], 0x5000_0000, 0)]).unwrap_err();
        assert_eq!((e.field, e.problem), ("memory", Problem::BadSize(0)));
        let e = check(&[dom("a", &[0], 0x5000_0000, 3 * MIB)]).unwrap_err();
        assert_eq!(e.problem, Problem::BadSize(3 * MIB));
        let e = check(&[dom("a", &[0], 0x5010_0000, 32 * MIB)]).unwrap_err();
        assert_eq!((e.field, e.problem), ("memory_base", Problem::Misaligned(0x5010_0000)));
        let e = check(&[dom("a", &[0], 0xbf00_0000, 32 * MIB)]).unwrap_err();
        assert!(matches!(e.problem, Problem::OutsideRam(_)));
        let e = check(&[dom("a", &[0], 0x3000_0000, 32 * MIB)]).unwrap_err();
        assert!(matches!(e.problem, Problem::OutsideRam(_)));
        let e = check(&[dom("a", &[0], 0x4000_0000, 32 * MIB)]).unwrap_err();
        assert!(matches!(e.problem, Problem::OverlapsHypervisor(_)));
        let e = check(&[dom("a", &[0], 0x4200_0000, 32 * MIB)]).unwrap_err();
        assert!(matches!(e.problem, Problem::OverlapsStaging(_)));
        let e = check(&[dom("a", &[0], 0x5000_0000, 64 * MIB), dom("b", &[1], 0x5200_0000, 32 * MIB)]).unwrap_err();
        assert_eq!((e.domain, e.problem), (Some(1), Problem::OverlapsDomain(0, PhysRange::new(0x5200_0000, 32 * MIB))));
        // Overflowing ranges never pass.
        let e = check(&[dom("a", &[0], 0xffff_ffff_ffe0_0000, 4 * MIB)]).unwrap_err();
        assert!(matches!(e.problem, Problem::OutsideRam(_)));
    }

    #[test]
    fn modules_and_fit() {
        let mut a = dom("a", &[0], 0x5000_0000, 4 * MIB);
        a.kernel = PhysRange::new(0x6000_0000, 0x1000);
        let e = check(&[a]).unwrap_err();
        assert_eq!(e.field, "kernel");
        let mut a = dom("a", &[0], 0x5000_0000, 4 * MIB);
        a.kernel_footprint = 3 * MIB;
        let e = check(&[a]).unwrap_err();
        assert_eq!((e.field, e.problem), ("memory", Problem::DoesNotFit { need: 5 * MIB, have: 4 * MIB }));
        let mut a = dom("a", &[0], 0x5000_0000, 8 * MIB);
        a.initrd = Some(PhysRange::new(0x4200_0000, 3 * MIB));
        assert_eq!(check(&[a]), Ok(()));
        a.initrd = Some(PhysRange::new(0x4200_0000, 5 * MIB));
        assert!(matches!(check(&[a]).unwrap_err().problem, Problem::DoesNotFit { .. }));
        a.initrd = Some(PhysRange::new(0x4200_0000, 0));
        assert_eq!(check(&[a]).unwrap_err().field, "initrd");
    }

    #[test]
    fn bootargs_limit() {
        static LONG: [u8; 1100] = [b'x'; 1100];
        let mut a = dom("a", &[0], 0x5000_0000, 4 * MIB);
        a.bootargs = core::str::from_utf8(&LONG).unwrap();
        assert_eq!(check(&[a]).unwrap_err().problem, Problem::BootargsTooLong(1100));
    }

    #[test]
    fn layout() {
        let mut a = dom("a", &[0], 0x5000_0000, 8 * MIB);
        a.initrd = Some(PhysRange::new(0x4200_0000, MIB));
        let l = guest_layout(&a, 0);
        assert_eq!(l.kernel, Ipa(0x4000_0000));
        assert_eq!(l.initrd, Some(Ipa(0x4020_0000)));
        assert_eq!(l.dtb, Ipa(0x4060_0000));
        a.kind = DomainKind::Linux;
        assert_eq!(guest_layout(&a, 0).kernel, Ipa(0x5000_0000));
    }

    #[test]
    fn pv_devices() {
        let mut ctl = dom("ctl", &[0], 0x5000_0000, 32 * MIB);
        ctl.kind = DomainKind::Linux;
        ctl.xen = true;
        let mut web = dom("web", &[1], 0x5200_0000, 32 * MIB);
        web.xen = true;
        let vif = PvDevice {
            kind: PvKind::Vif,
            backend: "ctl",
            devid: 0,
            target: "xenbr0",
            mac: [0, 0x16, 0x3e, 0, 0, 2],
            ..Default::default()
        };
        let vbd = PvDevice {
            kind: PvKind::Vbd,
            backend: "ctl",
            devid: 51712,
            target: "/dev/vda2",
            writable: true,
            ..Default::default()
        };
        web.pv = List::from_slice(&[vif, vbd]).unwrap();
        assert_eq!(check(&[ctl, web]), Ok(()));
        let field_problem = |ctl: Domain<'static>, web: Domain<'static>| {
            let e = check(&[ctl, web]).unwrap_err();
            (e.domain, e.field, e.problem)
        };
        let mut w = web;
        w.pv = List::from_slice(&[PvDevice { backend: "nobody", ..vbd }]).unwrap();
        assert_eq!(field_problem(ctl, w), (Some(1), "vbd", Problem::NoSuchBackend));
        w.pv = List::from_slice(&[PvDevice { backend: "web", ..vif }]).unwrap();
        assert_eq!(field_problem(ctl, w), (Some(1), "vif", Problem::SelfBackend));
        w.pv = List::from_slice(&[vbd, vbd]).unwrap();
        assert_eq!(field_problem(ctl, w), (Some(1), "vbd", Problem::DuplicateDevid(51712)));
        w.pv = List::from_slice(&[PvDevice { target: "/dev/vda2; rm -rf /", ..vbd }]).unwrap();
        assert_eq!(field_problem(ctl, w), (Some(1), "vbd", Problem::BadTarget));
        w.pv = List::from_slice(&[PvDevice { mac: [1, 0, 0, 0, 0, 1], ..vif }]).unwrap();
        assert_eq!(field_problem(ctl, w), (Some(1), "vif", Problem::BadMac));
        let mut w = web;
        w.xen = false;
        assert_eq!(field_problem(ctl, w), (Some(1), "vif", Problem::PvNeedsXen));
        let mut c = ctl;
        c.kind = DomainKind::Unikernel;
        assert_eq!(field_problem(c, web), (Some(1), "vif", Problem::BackendNotLinux));
        let mut c = ctl;
        c.xen = false;
        assert_eq!(field_problem(c, web), (Some(1), "vif", Problem::PvNeedsXen));
    }

    #[test]
    fn policies_round_trip() {
        for k in [DomainKind::Linux, DomainKind::Unikernel] {
            assert_eq!(DomainKind::parse(k.as_str()), Some(k));
        }
        for p in [FaultPolicy::Inject, FaultPolicy::Stop] {
            assert_eq!(FaultPolicy::parse(p.as_str()), Some(p));
        }
        for p in [PowerOffPolicy::Domain, PowerOffPolicy::Board] {
            assert_eq!(PowerOffPolicy::parse(p.as_str()), Some(p));
        }
        assert_eq!(DomainKind::parse("windows"), None);
    }
}
