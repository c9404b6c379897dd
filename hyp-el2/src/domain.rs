//! Domains at run time: loading their images, their vCPUs' lives on the pinned pCPUs, their
//! lifecycle (start, destroy, restart, pause, crash and reboot policies, watchdogs, suspend,
//! save and restore), and the guest trap handlers (PSCI over HVC/SMC, Xen hypercall entry, MMIO
//! emulation of the vGIC distributor/redistributors and the vPL011, SGI system registers,
//! physical interrupts, stage-2 faults, everything else).
//!
//! Invariants: a pCPU only ever runs the one vCPU the plan pins to it; a domain goes Running ->
//! Ended, and back to Running only through `start`/`restore_commit`/its policy, once every one
//! of its pCPUs is parked (runs none of its code); a restore resumes a domain only once every
//! page of its RAM was written and with a final header of the shape it began with; all
//! guest-controlled values are decoded by `hyp_core` before use.

use crate::arch::{self, read_sysreg, write_sysreg};
use crate::console::{domain_line, hprintln};
use crate::crash;
use crate::exceptions::{enter_guest, GuestRegs};
use crate::mm;
use crate::sync::{Once, SpinLock};
use aarch64_cpu::registers::{
    Readable, Writeable, CNTFRQ_EL0, CNTHCTL_EL2, CNTKCTL_EL1, CNTP_CTL_EL0, CNTVOFF_EL2, CNTV_CTL_EL0, CPACR_EL1,
    CPTR_EL2, ELR_EL1, ESR_EL1, ESR_EL2, FAR_EL1, FAR_EL2, HPFAR_EL2, ID_AA64MMFR0_EL1, MDCR_EL2, MIDR_EL1, SCTLR_EL1,
    SPSR_EL1, VBAR_EL1, VMPIDR_EL2,
};
use alloc::boxed::Box;
use core::ptr::addr_of_mut;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use hyp_core::addr::PhysRange;
use hyp_core::esr::{self, Class, Esr};
use hyp_core::guestdt::GuestGic;
use hyp_core::lifecycle::{RestartWindow, Watchdogs};
use hyp_core::list::List;
use hyp_core::plan::{
    CrashPolicy, FaultPolicy, Lifecycle, PowerOffPolicy, PvDevice, RebootPolicy, MAX_DOMAINS, MAX_PV, MAX_VCPUS,
};
use hyp_core::psci::{self, Call, Power};
use hyp_core::savestream::{CpuState, Header, PageSet, StreamError, HEADER_SIZE, MAX_AGE_NS};
use hyp_core::vgic::{Version, DIST_SIZE, REDIST_STRIDE};
use hyp_core::vuart::{LineBuf, Pl011, VUART_BASE, VUART_SIZE, VUART_SPI};

/// Interrupt ID of every domain's emulated PL011.
pub const VUART_INTID: u32 = 32 + VUART_SPI;

use crate::boot::MAX_CPUS;

/// Xen's `-ENOSYS`.
/// Faults after which an `inject` domain is stopped anyway.
const MAX_FAULTS: u32 = 64;
/// PSTATE for a fresh EL1h entry with DAIF masked.
const SPSR_EL1H_MASKED: u64 = 0x3c5;
/// SCTLR_EL1 at vCPU reset: RES1 bits only (MMU and caches off, little endian).
const SCTLR_EL1_RESET: u64 = 0x30d0_0800;

/// Static description of a loaded domain.
#[derive(Clone, Copy, Default)]
pub struct DomainCfg {
    pub(crate) name: [u8; 32],
    pub(crate) name_len: usize,
    /// pCPU of each vCPU.
    pub pcpus: List<u8, MAX_VCPUS>,
    /// Physical RAM.
    pub memory: PhysRange,
    /// Guest physical base of RAM.
    pub ipa_base: u64,
    /// VTTBR_EL2 (stage-2 root and VMID).
    pub vttbr: u64,
    /// Kernel entry (IPA).
    pub entry: u64,
    /// Device tree (IPA) passed in x0.
    pub dtb: u64,
    /// Kernel module in the staging window, kept for restarts.
    pub kernel: PhysRange,
    /// Initrd module and its IPA.
    pub initrd: Option<(PhysRange, u64)>,
    /// Guest device tree, built at boot.
    pub guest_dtb: &'static [u8],
    /// Fault policy.
    pub on_fault: FaultPolicy,
    /// Power-off policy.
    pub on_poweroff: PowerOffPolicy,
    /// Autostart, crash and reboot policies.
    pub lifecycle: Lifecycle,
    /// Where its virtual GIC sits.
    pub gic: Option<GuestGic>,
    /// CNTVOFF_EL2: its virtual counter starts near zero when it is created.
    pub cntvoff: u64,
    /// Runs Linux (gets the console focus first).
    pub linux: bool,
    /// Offered the Xen guest ABI.
    pub xen: bool,
    /// PV devices it is the frontend of (names and targets copied out of the boot DTB).
    pub pv: List<PvCfg, MAX_PV>,
}

/// A PV device of a frontend domain, with its backend resolved to a domain index.
#[derive(Clone, Copy, Default)]
pub struct PvCfg {
    /// The device as planned (its backend name and target live as long as the hypervisor).
    pub dev: PvDevice<'static>,
    /// Index of the backend domain.
    pub backend: usize,
}

impl DomainCfg {
    /// The domain's name.
    pub fn name(&self) -> &str {
        core::str::from_utf8(&self.name[..self.name_len]).unwrap_or("?")
    }
    /// Sets the name (truncated to 32 bytes; validated names are shorter).
    pub fn set_name(&mut self, n: &str) {
        let l = n.len().min(32);
        self.name[..l].copy_from_slice(&n.as_bytes()[..l]);
        self.name_len = l;
    }
    /// PA of an IPA of its RAM (check with [`Self::ipa_in_ram`] first).
    #[inline]
    pub fn ipa_to_pa(&self, ipa: u64) -> u64 {
        self.memory.base.0 + (ipa - self.ipa_base)
    }
    /// Whether `ipa` is in its RAM.
    #[inline]
    pub fn ipa_in_ram(&self, ipa: u64) -> bool {
        ipa >= self.ipa_base && ipa - self.ipa_base < self.memory.size
    }
}

/// The whole configuration, published once by the boot CPU.
pub struct Config {
    /// Domains in plan order.
    pub domains: List<DomainCfg, MAX_DOMAINS>,
    /// For each pCPU: (domain index, vCPU index).
    pub vcpu_of_pcpu: [Option<(usize, usize)>; MAX_CPUS],
    /// A signed plan's Ed25519 key: `hypctl update` images must carry its signature.
    pub update_key: Option<[u8; 32]>,
}

/// Why a domain ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum EndReason {
    /// Still running.
    Running = 0,
    /// PSCI SYSTEM_OFF or SCHEDOP_shutdown(poweroff).
    PowerOff = 1,
    /// Every vCPU called CPU_OFF.
    AllCpusOff = 2,
    /// Stopped by the fault policy (`on_fault = stop`).
    Fault = 3,
    /// SError or other unrecoverable guest exception.
    Crashed = 4,
    /// SYSTEM_RESET that could not be honoured.
    Reset = 5,
    /// `on_fault = inject`, but its budget of stage-2 faults (`MAX_FAULTS`) is spent.
    FaultBudget = 6,
    /// `on_fault = inject`, but the guest cannot take the abort (no vector table yet).
    FaultUntakeable = 7,
    /// Destroyed by the control domain (`hypctl stop`/`destroy`).
    Destroyed = 8,
    /// Its watchdog (`SCHEDOP_watchdog`) expired.
    Watchdog = 9,
    /// It crashed once more than `restart_limit` allows within `restart_window`.
    RestartLimit = 10,
    /// Declared with `autostart = false` and not started yet.
    NotStarted = 11,
    /// It asked for a reboot and `on_reboot = "stop"`.
    RebootStopped = 12,
    /// Suspended (`SCHEDOP_shutdown(suspend)`): its state is kept for `hypctl save`.
    Suspended = 13,
}

impl EndReason {
    fn from_u8(v: u8) -> Self {
        match v {
            1 => Self::PowerOff,
            2 => Self::AllCpusOff,
            3 => Self::Fault,
            4 => Self::Crashed,
            5 => Self::Reset,
            6 => Self::FaultBudget,
            7 => Self::FaultUntakeable,
            8 => Self::Destroyed,
            9 => Self::Watchdog,
            10 => Self::RestartLimit,
            11 => Self::NotStarted,
            12 => Self::RebootStopped,
            13 => Self::Suspended,
            _ => Self::Running,
        }
    }
    fn text(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::PowerOff => "powered off",
            Self::AllCpusOff => "all vCPUs off",
            Self::Fault => "stopped after a fault (on_fault = stop)",
            Self::FaultBudget => "stopped after a fault (its fault budget is spent)",
            Self::FaultUntakeable => "stopped after a fault it could not take",
            Self::Crashed => "crashed",
            Self::Reset => "reset requested with other vCPUs running; stopped",
            Self::Destroyed => "destroyed by the control domain",
            Self::Watchdog => "its watchdog expired",
            Self::RestartLimit => "stopped: restart limit reached",
            Self::NotStarted => "not started (autostart = false)",
            Self::RebootStopped => "stopped on reboot (on_reboot = stop)",
            Self::Suspended => "suspended",
        }
    }
    /// A crash in the sense of `on_crash`.
    fn is_crash(self) -> bool {
        matches!(self, Self::Crashed | Self::Fault | Self::FaultBudget | Self::FaultUntakeable | Self::Watchdog)
    }
}

/// Mutable run-time state of a domain.
pub struct DomainRt {
    end: AtomicU8,
    faults: AtomicU32,
    /// Diagnostics about the domain's own bad accesses so far (`hyp_core::diag`).
    diags: AtomicU32,
    restarts: AtomicU32,
    power: [AtomicU8; MAX_VCPUS],
    on_entry: [AtomicU64; MAX_VCPUS],
    on_ctx: [AtomicU64; MAX_VCPUS],
    console: SpinLock<(Pl011, LineBuf)>,
    /// The vPL011 interrupt is in a list register (or latched) until the guest EOIs it.
    uart_inflight: AtomicBool,
    /// Paused by the control domain: its vCPUs wait in [`pause_wait`].
    paused: AtomicBool,
    /// Physical counter when it was paused.
    paused_at: AtomicU64,
    /// Counter ticks it spent paused since it last started.
    paused_ticks: AtomicU64,
    /// CNTVOFF_EL2 of its vCPUs: set when it starts, moved on by each pause so its virtual
    /// counter does not advance while it is paused.
    cntvoff: AtomicU64,
    /// Physical counter when it last started.
    started_at: AtomicU64,
    /// Sum of its pCPUs' blocked ticks when it last started.
    blocked_base: AtomicU64,
    /// A start is in progress (one at a time).
    starting: AtomicBool,
    /// Its restart-limit window.
    window: SpinLock<RestartWindow>,
    /// Its watchdogs.
    watchdogs: SpinLock<Watchdogs>,
    /// Earliest watchdog deadline (`u64::MAX`: none).
    wd_deadline: AtomicU64,
    /// A watchdog expired: the next exit of one of its vCPUs applies `on_crash`.
    wd_fired: AtomicBool,
    /// Bytes of its kernel image in its staging slot (`hypctl update` may change it).
    kernel_size: AtomicU64,
    /// Why it last ended (0: never).
    last_end: AtomicU8,
    /// The physical counter when it last ended (its suspend, for a suspended domain).
    ended_at: AtomicU64,
    /// Its state at its last suspend (what `hypctl save` streams), or the restored state its
    /// vCPU 0 resumes from.
    saved: SpinLock<Option<Box<Header>>>,
    /// A restore in progress: the header it began with (the shape the final header must
    /// have) and the RAM pages written so far.
    restoring: SpinLock<Option<(Box<Header>, PageSet)>>,
    /// vCPU 0 resumes from `saved` instead of starting from the image.
    resume: AtomicBool,
}

impl DomainRt {
    const fn new() -> Self {
        Self {
            end: AtomicU8::new(0),
            faults: AtomicU32::new(0),
            diags: AtomicU32::new(0),
            restarts: AtomicU32::new(0),
            power: [const { AtomicU8::new(0) }; MAX_VCPUS],
            on_entry: [const { AtomicU64::new(0) }; MAX_VCPUS],
            on_ctx: [const { AtomicU64::new(0) }; MAX_VCPUS],
            console: SpinLock::new((Pl011::new(), LineBuf::new())),
            uart_inflight: AtomicBool::new(false),
            paused: AtomicBool::new(false),
            paused_at: AtomicU64::new(0),
            paused_ticks: AtomicU64::new(0),
            cntvoff: AtomicU64::new(0),
            started_at: AtomicU64::new(0),
            blocked_base: AtomicU64::new(0),
            starting: AtomicBool::new(false),
            window: SpinLock::new(RestartWindow::new()),
            watchdogs: SpinLock::new(Watchdogs::new()),
            wd_deadline: AtomicU64::new(u64::MAX),
            wd_fired: AtomicBool::new(false),
            kernel_size: AtomicU64::new(0),
            last_end: AtomicU8::new(0),
            ended_at: AtomicU64::new(0),
            saved: SpinLock::new(None),
            restoring: SpinLock::new(None),
            resume: AtomicBool::new(false),
        }
    }
    fn power(&self, v: usize) -> Power {
        Power::from_u8(self.power[v].load(Ordering::Acquire))
    }
}

static CONFIG: Once<Config> = Once::new();
static RT: [DomainRt; MAX_DOMAINS] = [const { DomainRt::new() }; MAX_DOMAINS];
static ENDED: AtomicUsize = AtomicUsize::new(0);
/// Whether each pCPU waits in [`idle`] (runs no guest code): a domain is only reloaded once
/// all its pCPUs are.
static PARKED: [AtomicBool; MAX_CPUS] = [const { AtomicBool::new(false) }; MAX_CPUS];

/// Counters of the vCPU a pCPU runs, since the board booted (written by that pCPU only).
pub struct CpuStats {
    /// Traps from the guest other than hypercalls (synchronous and interrupts): a reader
    /// adds `hypercalls` for all traps (one counter per trap keeps the hypercall path short).
    pub traps: AtomicU64,
    /// Xen hypercalls.
    pub hypercalls: AtomicU64,
    /// Virtual interrupts put into list registers.
    pub irqs: AtomicU64,
    /// Counter ticks spent blocked in `SCHEDOP_block`/`SCHEDOP_poll`.
    pub blocked: AtomicU64,
}

/// Per-pCPU counters.
pub static STATS: [CpuStats; MAX_CPUS] = [const {
    CpuStats {
        traps: AtomicU64::new(0),
        hypercalls: AtomicU64::new(0),
        irqs: AtomicU64::new(0),
        blocked: AtomicU64::new(0),
    }
}; MAX_CPUS];

/// The counters of pCPU `cpu` (a trap frame's own index, always below [`MAX_CPUS`]: the mask
/// keeps the trap path free of a bounds check).
#[inline(always)]
pub fn stats_of(cpu: usize) -> &'static CpuStats {
    const _: () = assert!(MAX_CPUS.is_power_of_two());
    &STATS[cpu & (MAX_CPUS - 1)]
}

/// Adds `n` to a counter only this pCPU writes (no atomic read-modify-write on trap paths).
#[inline(always)]
pub fn bump(c: &AtomicU64, n: u64) {
    c.store(c.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
}
static GO: AtomicBool = AtomicBool::new(false);
static mut FRAMES: [GuestRegs; MAX_CPUS] = [GuestRegs::EMPTY; MAX_CPUS];

/// Publishes the configuration (boot CPU).
pub fn publish(cfg: Config) {
    for (d, c) in cfg.domains.iter().enumerate() {
        RT[d].cntvoff.store(c.cntvoff, Ordering::Relaxed);
        RT[d].started_at.store(c.cntvoff, Ordering::Relaxed);
        RT[d].kernel_size.store(c.kernel.size, Ordering::Relaxed);
        if !c.lifecycle.autostart {
            RT[d].end.store(EndReason::NotStarted as u8, Ordering::Relaxed);
            ENDED.fetch_add(1, Ordering::Relaxed);
        }
    }
    CONFIG.call_once(|| cfg);
}

/// Domain `d`'s current CNTVOFF_EL2 (its virtual counter is the physical one minus this).
pub fn cntvoff(d: usize) -> u64 {
    RT.get(d).map_or(0, |rt| rt.cntvoff.load(Ordering::Acquire))
}

pub fn config() -> &'static Config {
    match CONFIG.get() {
        Some(c) => c,
        None => crash::power_off(false, format_args!("configuration used before it was published")),
    }
}

/// Physical CPUs of domain `d`'s vCPUs.
pub fn pcpus(d: usize) -> &'static [u8] {
    config().domains.get(d).map_or(&[], |c| &c.pcpus[..])
}

/// Name of domain `d`.
pub fn name(d: usize) -> &'static str {
    config().domains.get(d).map_or("?", |c| c.name())
}

/// Number of domains.
pub fn count() -> usize {
    config().domains.len()
}

/// Whether domain `d` runs Linux.
pub fn is_linux(d: usize) -> bool {
    config().domains.get(d).is_some_and(|c| c.linux)
}

/// Whether domain `d` has not ended.
pub fn is_running(d: usize) -> bool {
    d < MAX_DOMAINS && RT[d].end.load(Ordering::Acquire) == EndReason::Running as u8
}

/// How often domain `d` was restarted.
pub fn restarts(d: usize) -> u32 {
    RT.get(d).map_or(0, |rt| rt.restarts.load(Ordering::Relaxed))
}

/// Domain `d`'s state in words ("running", or why it ended).
pub fn state_text(d: usize) -> &'static str {
    if d >= MAX_DOMAINS {
        return "?";
    }
    EndReason::from_u8(RT[d].end.load(Ordering::Acquire)).text()
}

/// A byte of console input for domain `d`.
pub fn console_input(d: usize, b: u8) {
    if !is_running(d) {
        return;
    }
    if crate::xen::has_pv_console(d) {
        crate::xen::console_input(d, b);
        return;
    }
    let _ = RT[d].console.lock().0.push_rx(b);
    uart_update(d);
}

/// Re-evaluates domain `d`'s vPL011 interrupt line.
fn uart_update(d: usize) {
    let level = RT[d].console.lock().0.level();
    if level && !RT[d].uart_inflight.swap(true, Ordering::AcqRel) && !crate::irq::raise(d, 0, VUART_INTID) {
        RT[d].uart_inflight.store(false, Ordering::Release);
    }
}

/// The guest EOI'd a level-sensitive software interrupt: re-sample its source.
pub fn level_eoi(d: usize, intid: u32) {
    if intid == VUART_INTID {
        RT[d].uart_inflight.store(false, Ordering::Release);
        uart_update(d);
    }
}

/// Copies a domain's kernel, initrd and device tree into its RAM and cleans them to the point
/// of coherency (the guest starts with its MMU and caches off). `fresh` RAM (first boot) holds
/// nothing of anyone else's; a restart first wipes the domain's whole RAM.
pub fn load_images(d: &DomainCfg, fresh: bool) {
    let ksize = config_index(d).map_or(d.kernel.size, |i| RT[i].kernel_size.load(Ordering::Acquire).max(64));
    let kpa = d.ipa_to_pa(d.entry);
    let dtb_pa = d.ipa_to_pa(d.dtb);
    // SAFETY: the plan was validated: the kernel module lies in the staging window and the
    // destination inside the domain's RAM, which no one else uses; the two never overlap.
    unsafe {
        if !fresh {
            mm::zero_phys(d.memory.base.0, d.memory.size);
        }
        mm::copy_phys(kpa, d.kernel.base.0, ksize);
        if let Some((rd, ipa)) = d.initrd {
            mm::copy_phys(d.ipa_to_pa(ipa), rd.base.0, rd.size);
        }
        mm::copy_phys(dtb_pa, d.guest_dtb.as_ptr() as u64, d.guest_dtb.len() as u64);
    }
    if fresh {
        arch::clean_dcache_range(kpa as usize, ksize as usize);
        if let Some((rd, ipa)) = d.initrd {
            arch::clean_dcache_range(d.ipa_to_pa(ipa) as usize, rd.size as usize);
        }
        arch::clean_dcache_range(dtb_pa as usize, d.guest_dtb.len());
    } else {
        arch::clean_dcache_range(d.memory.base.0 as usize, d.memory.size as usize);
    }
    arch::invalidate_icache();
}

/// The index of domain configuration `d` once the configuration is published (`None` while
/// the boot CPU still builds it: then its images are the planned ones).
fn config_index(d: &DomainCfg) -> Option<usize> {
    let cfg = CONFIG.get()?;
    cfg.domains.iter().position(|c| core::ptr::eq(c, d))
}

/// Bytes of domain `d`'s kernel slot in the staging window: up to the next module (any
/// domain's kernel or initrd) or the window's end. U-Boot loads the boot disk's image there, so
/// an image written to the disk (`hypctl update --persist`) must fit it as well.
pub fn kernel_slot(d: usize) -> u64 {
    let cfg = config();
    let k = cfg.domains[d].kernel.base.0;
    let st = &crate::PLATFORM.staging;
    let end = cfg
        .domains
        .iter()
        .flat_map(|c| [Some(c.kernel.base.0), c.initrd.map(|(r, _)| r.base.0)])
        .flatten()
        .filter(|&b| b > k)
        .fold(st.base + st.size, u64::min);
    end - k
}

/// Replaces the kernel image of domain `d` (not running) by `size` bytes the control domain
/// `ctl` has at `va` (`FERRUM_LOAD_IMAGE`): checked by `hyp_core::control::check_update`,
/// read whole once before a byte of the slot changes (a bad address leaves it intact), then
/// copied into the slot; the next start uses it. Returns the slot's and the room's sizes
/// with the outcome.
pub fn load_image(ctl: usize, d: usize, va: u64, size: u64, sig_va: u64) -> ((u64, u64, u64), Result<(), i64>) {
    use xen_abi::errno;
    let dom = &config().domains[d];
    let slot = kernel_slot(d);
    let room = match dom.initrd {
        Some((_, ipa)) => ipa - dom.ipa_base,
        None => dom.memory.size - hyp_core::plan::GUEST_DTB_SLOT,
    };
    let text_offset = dom.entry - dom.ipa_base;
    let limits = (slot, room, text_offset);
    if is_running(d) || RT[d].starting.load(Ordering::Acquire) {
        return (limits, Err(-errno::EBUSY));
    }
    let mut head = [0u8; hyp_core::image::HEADER_SIZE];
    if size < head.len() as u64 {
        return (limits, Err(-errno::EINVAL));
    }
    if let Err(e) = crate::xen::copy_from_guest(ctl, va, &mut head) {
        return (limits, Err(e));
    }
    if let Err(e) = hyp_core::control::check_update(&head, size, text_offset, slot, room) {
        hprintln!("domain '{}': image update refused: {e}", dom.name());
        let code =
            if matches!(e, hyp_core::control::UpdateError::Slot { .. } | hyp_core::control::UpdateError::Ram { .. }) {
                -errno::E2BIG
            } else {
                -errno::EINVAL
            };
        return (limits, Err(code));
    }
    let mut buf = [0u8; 4096];
    for pass in 0..2 {
        let mut off = 0;
        let mut hash = hyp_core::verify::Hasher::default();
        while off < size {
            let n = (size - off).min(buf.len() as u64) as usize;
            if let Err(e) = crate::xen::copy_from_guest(ctl, va + off, &mut buf[..n]) {
                if pass == 1 {
                    // Only the control domain changing its own mappings midway gets here.
                    RT[d].kernel_size.store(0, Ordering::Release);
                }
                return (limits, Err(e));
            }
            if pass == 0 {
                hash.update(&buf[..n]);
            }
            if pass == 1 {
                // SAFETY: the destination lies in domain `d`'s kernel slot in the staging window
                // (`off + n <= size <= slot`), which only its loads read; it is not running.
                unsafe { mm::copy_phys(dom.kernel.base.0 + off, buf.as_ptr() as u64, n as u64) };
            }
            off += n as u64;
        }
        if pass == 0 {
            // A signed deployment: the image must be signed for this domain by its update key.
            if let Some(key) = config().update_key {
                let mut sig = [0u8; hyp_core::verify::SIG_SIZE];
                let have = if sig_va == 0 {
                    None
                } else {
                    if let Err(e) = crate::xen::copy_from_guest(ctl, sig_va, &mut sig) {
                        return (limits, Err(e));
                    }
                    Some(&sig)
                };
                if let Err(e) = hyp_core::verify::check_update_sig(&key, dom.name(), &hash.finish(), have) {
                    hprintln!("domain '{}': image update refused: {e}; it keeps its image", dom.name());
                    return (limits, Err(-errno::EACCES));
                }
            }
        }
    }
    RT[d].kernel_size.store(size, Ordering::Release);
    hprintln!("domain '{}': new kernel image loaded ({size} bytes; its slot has {slot})", dom.name());
    (limits, Ok(()))
}

/// Per-CPU EL2 set-up for running guests.
pub fn cpu_setup(cpu: usize) {
    let stack_top = core::ptr::addr_of!(crate::boot::STACKS) as u64 + ((cpu + 1) * crate::boot::STACK_SIZE) as u64;
    // SAFETY: each CPU only touches its own frame.
    unsafe {
        let f = &mut (*addr_of_mut!(FRAMES))[cpu];
        (f.stack_top, f.cpu) = (stack_top, cpu);
    }
    let parange = ID_AA64MMFR0_EL1.get() & 0xf;
    let pmcr_n = (read_sysreg!("pmcr_el0") >> 11) & 0x1f;
    crate::gic::init_cpu(cpu);
    // SAFETY: these registers configure how this CPU traps and translates guests; no guest runs
    // on it yet.
    unsafe {
        write_sysreg!("vtcr_el2", hyp_core::pgtable::vtcr_el2(parange));
        write_sysreg!("hcr_el2", hyp_core::sysregs::hcr_el2_guest());
        CNTHCTL_EL2.set(hyp_core::sysregs::cnthctl_el2_guest());
        CNTVOFF_EL2.set(0);
        CPTR_EL2.set(hyp_core::sysregs::CPTR_EL2_NO_TRAPS);
        MDCR_EL2.set(pmcr_n);
        write_sysreg!("vpidr_el2", MIDR_EL1.get());
    }
    arch::isb();
}

/// Lets every CPU start its vCPU (boot CPU, once the banner is out).
pub fn release_cpus() {
    GO.store(true, Ordering::Release);
    arch::sev();
}

/// Runs this pCPU's vCPU for good.
pub fn cpu_run(cpu: usize) -> ! {
    while !GO.load(Ordering::Acquire) {
        arch::wfe();
    }
    let cfg = config();
    let Some((d, v)) = cfg.vcpu_of_pcpu[cpu] else {
        crash::park();
    };
    let dom = &cfg.domains[d];
    // SAFETY: this CPU's own frame; its guest does not run yet.
    unsafe {
        let f = &mut *frame(cpu);
        (f.dom, f.vcpu, f.xen, f.bound) = (d, v, dom.xen, true);
    }
    // SAFETY: installs this domain's stage-2 tables and VMID on this CPU only, then drops any
    // stale translations for it.
    unsafe {
        write_sysreg!("vttbr_el2", dom.vttbr);
        CNTVOFF_EL2.set(RT[d].cntvoff.load(Ordering::Acquire));
        arch::isb();
        core::arch::asm!("tlbi vmalls12e1", "dsb nsh", "isb", options(nostack));
    }
    if v == 0 && !dom.lifecycle.autostart {
        hprintln!(
            "domain '{}': declared, not started (autostart = false; `hypctl start {}` starts it)",
            dom.name(),
            dom.name()
        );
    }
    if v == 0 && dom.lifecycle.autostart {
        RT[d].on_entry[0].store(dom.entry, Ordering::Relaxed);
        RT[d].on_ctx[0].store(dom.dtb, Ordering::Relaxed);
        RT[d].power[0].store(Power::OnPending.to_u8(), Ordering::Release);
    }
    idle(cpu)
}

/// Waits until this pCPU's vCPU is asked to start, then enters it.
fn idle(cpu: usize) -> ! {
    let cfg = config();
    let Some((d, v)) = cfg.vcpu_of_pcpu[cpu] else { crash::park() };
    PARKED[cpu].store(true, Ordering::Release);
    loop {
        if RT[d].end.load(Ordering::Acquire) == EndReason::Running as u8
            && !RT[d].starting.load(Ordering::Acquire)
            && RT[d].power(v) == Power::OnPending
        {
            let entry = RT[d].on_entry[v].load(Ordering::Relaxed);
            let ctx = RT[d].on_ctx[v].load(Ordering::Relaxed);
            RT[d].power[v].store(Power::On.to_u8(), Ordering::Release);
            PARKED[cpu].store(false, Ordering::Release);
            if v == 0 && RT[d].resume.swap(false, Ordering::AcqRel) {
                // Out of the lock (and the box freed) first: `resume_vcpu` does not return.
                let state = RT[d].saved.lock().take().map(|h| h.cpu);
                if let Some(c) = state {
                    resume_vcpu(cpu, v, &c);
                }
            }
            start_vcpu(cpu, v, entry, ctx);
        }
        crate::irq::idle_wait();
    }
}

fn frame(cpu: usize) -> *mut GuestRegs {
    // SAFETY: computing the address of this CPU's own frame.
    unsafe { addr_of_mut!((*addr_of_mut!(FRAMES))[cpu]) }
}

/// Enters vCPU `v` on this pCPU with a restored state: its EL1 context, FP registers and
/// general registers as they were at its suspend, `SCHEDOP_shutdown` answering 0 (resumed in
/// a new domain, as Xen says).
fn resume_vcpu(cpu: usize, v: usize, c: &CpuState) -> ! {
    let mut st = *c;
    if let Some((d, _)) = config().vcpu_of_pcpu[cpu] {
        crate::ev!(info, "d{=usize}v{=usize} resumes on cpu {=usize} at {=u64:#x}", d, v, cpu, st.pc);
        crate::irq::with_vdist(d, v, |vd| vd.reset_vcpu(v));
        st.sysregs[22] &= !1; // its timer: the runtime arms it again after resume
                              // SAFETY: no guest runs on this CPU; the context is the vCPU's own, its stage-2 tables
                              // (installed at `cpu_run`) bound what it reaches.
        unsafe {
            arch::restore_el1_context(&st.sysregs);
            VMPIDR_EL2.set(psci::vmpidr(v));
            CNTVOFF_EL2.set(RT[d].cntvoff.load(Ordering::Acquire));
            arch::isb();
            core::arch::asm!("tlbi vmalle1", "dsb nsh", "isb", options(nostack));
        }
    }
    crate::irq::reset_cpu(cpu);
    arch::restore_fp(&st.q, st.fpcr, st.fpsr);
    let f = frame(cpu);
    // SAFETY: this CPU's frame; the guest is not running.
    unsafe {
        let regs = &mut *f;
        regs.x = st.x;
        regs.x[0] = 0;
        regs.elr = st.pc;
        regs.spsr = st.pstate;
        enter_guest(f)
    }
}

fn start_vcpu(cpu: usize, v: usize, entry: u64, ctx: u64) -> ! {
    if let Some((d, _)) = config().vcpu_of_pcpu[cpu] {
        crate::ev!(info, "d{=usize}v{=usize} starts on cpu {=usize} at {=u64:#x}", d, v, cpu, entry);
        crate::irq::with_vdist(d, v, |vd| vd.reset_vcpu(v));
    }
    crate::irq::reset_cpu(cpu);
    // SAFETY: fresh EL1 state for a vCPU that is not running; guest RAM at `entry` was loaded.
    unsafe {
        SCTLR_EL1.set(SCTLR_EL1_RESET);
        CPACR_EL1.set(3 << 20);
        VBAR_EL1.set(0);
        CNTKCTL_EL1.set(0);
        CNTV_CTL_EL0.set(0);
        CNTP_CTL_EL0.set(0);
        VMPIDR_EL2.set(psci::vmpidr(v));
        if let Some((d, _)) = config().vcpu_of_pcpu[cpu] {
            CNTVOFF_EL2.set(RT[d].cntvoff.load(Ordering::Acquire));
        }
        arch::isb();
        core::arch::asm!("tlbi vmalle1", "dsb nsh", "isb", options(nostack));
    }
    let f = frame(cpu);
    // SAFETY: this CPU's frame; the guest is not running.
    unsafe {
        let regs = &mut *f;
        regs.x = [0; 31];
        regs.x[0] = ctx;
        regs.elr = entry;
        regs.spsr = SPSR_EL1H_MASKED;
        enter_guest(f)
    }
}

fn current() -> (usize, usize, usize) {
    let cpu = arch::cpu_index();
    match config().vcpu_of_pcpu.get(cpu).copied().flatten() {
        Some((d, v)) => (cpu, d, v),
        None => crash::power_off(false, format_args!("trap from a guest on CPU {cpu}, which runs no vCPU")),
    }
}

/// Synchronous exception from a guest. Returns the frame to resume.
///
/// Xen hypercalls take the short way (DESIGN.md §7): the frame says whose trap it is and
/// whether the domain speaks Xen, so nothing is looked up before the dispatch.
pub extern "C" fn guest_sync(regs: &mut GuestRegs) -> *mut GuestRegs {
    let stats = stats_of(regs.cpu);
    let e = Esr(ESR_EL2.get());
    if regs.xen && e.is_hvc64(xen_abi::HYPERCALL_TAG) {
        bump(&stats.hypercalls, 1);
        crate::xen::hypercall(regs);
    } else {
        bump(&stats.traps, 1);
        crate::ev!(
            trace,
            "cpu {=usize} d{=usize}v{=usize} trap EC {=u8:#x} ESR {=u64:#x} at {=u64:#x}",
            regs.cpu,
            regs.dom,
            regs.vcpu,
            e.ec(),
            e.0,
            regs.elr
        );
        if regs.bound && e.is_data_abort_lower() {
            data_abort(regs, e);
        } else {
            guest_sync_other(regs, e);
        }
    }
    crate::irq::flush(regs.cpu);
    regs
}

#[inline(never)]
fn guest_sync_other(regs: &mut GuestRegs, e: Esr) {
    let (cpu, d, v) = current();
    match e.class() {
        Class::Hvc64 => match e.imm16() {
            0 => handle_psci(regs, cpu, d, v),
            // A Xen hypercall the fast test missed (RES0 syndrome bits set).
            xen_abi::HYPERCALL_TAG if regs.xen => crate::xen::hypercall(regs),
            xen_abi::HYPERCALL_TAG => regs.x[0] = (-xen_abi::errno::ENOSYS) as u64,
            _ => inject_undef(regs),
        },
        Class::Smc64 => {
            regs.elr = regs.elr.wrapping_add(4);
            if e.imm16() == 0 {
                handle_psci(regs, cpu, d, v);
            } else {
                regs.x[0] = psci::ret::NOT_SUPPORTED as u64;
            }
        }
        Class::InstAbortLower => {
            let ipa = fault_ipa();
            stage2_fault(regs, cpu, d, "instruction fetch", ipa, false, false);
        }
        Class::Wfx => regs.elr = regs.elr.wrapping_add(4),
        Class::SysReg => sysreg(regs, d, v, e),
        _ => inject_undef(regs),
    }
}

/// Trapped system registers: only the GICv3 SGI generation registers are emulated.
fn sysreg(regs: &mut GuestRegs, d: usize, v: usize, e: Esr) {
    let s = e.sysreg();
    let is_sgi = (s.op0, s.op1, s.crn, s.crm) == (3, 0, 12, 11) && (5..=7).contains(&s.op2);
    if !is_sgi || s.read {
        inject_undef(regs);
        return;
    }
    let val = if s.reg == 31 { 0 } else { regs.x[usize::from(s.reg)] };
    crate::irq::with_vdist_raising(d, |vd| {
        let (targets, sgi) = vd.decode_sgi1r(v, val);
        vd.send_sgi(targets, sgi, &mut crate::irq::DomainSink::new(d));
    });
    regs.elr = regs.elr.wrapping_add(4);
}

/// IRQ, FIQ or SError from a guest.
pub extern "C" fn guest_async(regs: &mut GuestRegs, kind: u64) -> *mut GuestRegs {
    let (cpu, d, v) = if regs.bound { (regs.cpu, regs.dom, regs.vcpu) } else { current() };
    bump(&STATS[cpu].traps, 1);
    crate::ev!(trace, "cpu {=usize} d{=usize}v{=usize} exit: {=u64} (1 IRQ, 2 FIQ, 3 SError)", cpu, d, v, kind);
    if kind == 1 {
        crate::irq::handle(d, v);
        after_irqs(cpu, d, v);
    }
    if kind == 3 {
        let name = config().domains[d].name();
        hprintln!("domain '{name}': SError (ESR_EL2={:#x}) at PC {:#x}; stopping it", ESR_EL2.get(), regs.elr);
        crash(cpu, d, EndReason::Crashed);
    }
    crate::irq::flush(cpu);
    regs
}

fn fault_ipa() -> u64 {
    let hpfar = HPFAR_EL2.get();
    let far = FAR_EL2.get();
    (((hpfar >> 4) & 0xff_ffff_ffff) << 12) | (far & 0xfff)
}

/// An emulated MMIO device a trapped access hit.
enum Emu {
    Uart(u64),
    Dist(u64),
    Redist(usize, u64),
}

fn emulated(dom: &DomainCfg, ipa: u64) -> Option<Emu> {
    if (VUART_BASE..VUART_BASE + VUART_SIZE).contains(&ipa) {
        return Some(Emu::Uart(ipa - VUART_BASE));
    }
    let g = dom.gic?;
    if (g.dist..g.dist + DIST_SIZE).contains(&ipa) {
        return Some(Emu::Dist(ipa - g.dist));
    }
    let rsize = dom.pcpus.len() as u64 * REDIST_STRIDE;
    if g.version == Version::V3 && (g.cpu_or_redist..g.cpu_or_redist + rsize).contains(&ipa) {
        let off = ipa - g.cpu_or_redist;
        return Some(Emu::Redist((off / REDIST_STRIDE) as usize, off % REDIST_STRIDE));
    }
    None
}

/// A data abort: an emulated register (vGIC distributor/redistributor, vPL011) or a fault
/// outside the partition. The emulation path is one of DESIGN.md §7's timed paths: the frame
/// names the vCPU, and the rare outcomes (faults, bad accesses) are out of line.
#[inline(never)]
fn data_abort(regs: &mut GuestRegs, e: Esr) {
    let ipa = fault_ipa();
    // The commonest emulated access first, a 32-bit load of the virtual distributor's control
    // or identification registers (what Linux polls: GICD_CTLR.RWP): no configuration
    // look-up, no device match, no general register decoder, no vGIC lock (ISS: ISV set, WnR
    // clear, SAS 32-bit).
    const ISV_WNR_SAS: u32 = 1 << 24 | 1 << 6 | 3 << 22;
    if e.iss() & ISV_WNR_SAS == 1 << 24 | 2 << 22 {
        let off = ipa.wrapping_sub(DIST_IPA[regs.dom & (MAX_DOMAINS - 1)].load(Ordering::Relaxed));
        if let Some(w) = crate::irq::dist_head(regs.dom, off) {
            complete_load(regs, &e.data_abort(), u64::from(w));
            return;
        }
    }
    data_abort_emulated(regs, e, ipa);
}

/// Each domain's virtual distributor IPA (`u64::MAX`: none), for [`data_abort`]'s fast path.
static DIST_IPA: [AtomicU64; MAX_DOMAINS] = [const { AtomicU64::new(u64::MAX) }; MAX_DOMAINS];

/// Records domain `d`'s virtual distributor IPA (boot).
pub fn set_dist_ipa(d: usize, ipa: u64) {
    if let Some(a) = DIST_IPA.get(d) {
        a.store(ipa, Ordering::Relaxed);
    }
}

/// Writes a load's value to its target register as the syndrome says (width, sign
/// extension, 32-bit view) and steps over the instruction.
#[inline(always)]
fn complete_load(regs: &mut GuestRegs, da: &hyp_core::esr::DataAbort, mut val: u64) {
    let size = da.size;
    let mask = if size == 8 { u64::MAX } else { (1u64 << (8 * u32::from(size))) - 1 };
    val &= mask;
    if da.sign_extend && size < 8 && val & (1 << (8 * u32::from(size) - 1)) != 0 {
        val |= !mask;
    }
    if !da.sixty_four {
        val &= 0xffff_ffff;
    }
    if da.reg != 31 {
        regs.x[usize::from(da.reg)] = val;
    }
    regs.elr = regs.elr.wrapping_add(4);
}

#[inline(never)]
fn data_abort_emulated(regs: &mut GuestRegs, e: Esr, ipa: u64) {
    // Any other load from the distributor next, still without the configuration look-up.
    let iss = e.iss();
    let off = ipa.wrapping_sub(DIST_IPA[regs.dom & (MAX_DOMAINS - 1)].load(Ordering::Relaxed));
    if iss & (1 << 24 | 1 << 6) == 1 << 24 && off < DIST_SIZE {
        let (v, size) = (regs.vcpu, 1u8 << ((iss >> 22) & 3));
        if let Some(Some(val)) = crate::irq::with_vdist_raising(regs.dom, |vd| vd.mmio_read(v, off, size)) {
            complete_load(regs, &e.data_abort(), val);
            return;
        }
    }
    let (cpu, d, v) = (regs.cpu, regs.dom, regs.vcpu);
    let da = e.data_abort();
    let dom = &config().domains[d];
    let Some(dev) = emulated(dom, ipa) else {
        stage2_fault(regs, cpu, d, if da.write { "write" } else { "read" }, ipa, true, da.write);
        return;
    };
    if !da.isv || da.size > 8 {
        return no_syndrome(regs, d, dom, ipa, da.write);
    }
    let mask = if da.size == 8 { u64::MAX } else { (1u64 << (8 * u32::from(da.size))) - 1 };
    let wval = if da.reg == 31 { 0 } else { regs.x[usize::from(da.reg)] } & mask;
    let size = da.size;
    let result = match dev {
        Emu::Uart(off) => uart_access(d, off, size, da.write, wval),
        // GICD_SGIR (GICv2 IPIs) only raises: no refresh of the hot copies.
        Emu::Dist(off) if da.write && off != hyp_core::gicregs::gicd::SGIR => crate::irq::with_vdist(d, v, |vd| {
            vd.mmio_write(v, off, size, wval, &mut crate::irq::DomainSink::new(d)).then_some(0)
        })
        .flatten(),
        Emu::Dist(off) if da.write => crate::irq::with_vdist_raising(d, |vd| {
            vd.mmio_write(v, off, size, wval, &mut crate::irq::DomainSink::new(d)).then_some(0)
        })
        .flatten(),
        Emu::Dist(off) => crate::irq::with_vdist_raising(d, |vd| vd.mmio_read(v, off, size)).flatten(),
        Emu::Redist(rv, off) if da.write => crate::irq::with_vdist(d, rv, |vd| {
            (rv < vd.nr_vcpus())
                .then(|| vd.redist_write(rv, off, size, wval, &mut crate::irq::DomainSink::new(d)).then_some(0))
                .flatten()
        })
        .flatten(),
        Emu::Redist(rv, off) => crate::irq::with_vdist_raising(d, |vd| {
            (rv < vd.nr_vcpus()).then(|| vd.redist_read(rv, off, size)).flatten()
        })
        .flatten(),
    };
    let Some(val) = result else {
        return bad_register(regs, d, dom, ipa, size, da.write);
    };
    if da.write {
        regs.elr = regs.elr.wrapping_add(4);
    } else {
        complete_load(regs, &da, val);
    }
}

/// Prints a diagnostic about domain `d`'s own bad access, within `hyp_core::diag`'s budget
/// (the rest are counted and shown in the summary).
fn diag(d: usize, args: core::fmt::Arguments<'_>) {
    use hyp_core::diag::{verdict, Verdict};
    match verdict(RT[d].diags.fetch_add(1, Ordering::Relaxed)) {
        Verdict::Print => hprintln!("{args}"),
        Verdict::PrintLast => {
            hprintln!("{args}");
            hprintln!(
                "domain '{}': {} diagnostics printed; further ones are counted, not printed",
                config().domains[d].name(),
                hyp_core::diag::BURST
            );
        }
        Verdict::Count => {}
    }
}

#[cold]
#[inline(never)]
fn no_syndrome(regs: &mut GuestRegs, d: usize, dom: &DomainCfg, ipa: u64, write: bool) {
    diag(
        d,
        format_args!(
            "domain '{}': emulated MMIO access at IPA {ipa:#x} without a usable syndrome (ISV=0) at PC {:#x}; injecting an abort",
            dom.name(),
            regs.elr
        ),
    );
    inject_abort(regs, true, write, FAR_EL2.get());
}

#[cold]
#[inline(never)]
fn bad_register(regs: &mut GuestRegs, d: usize, dom: &DomainCfg, ipa: u64, size: u8, write: bool) {
    diag(
        d,
        format_args!(
            "domain '{}': bad {}-byte {} of emulated register at IPA {ipa:#x} (PC {:#x}); injecting an abort",
            dom.name(),
            size,
            if write { "write" } else { "read" },
            regs.elr
        ),
    );
    inject_abort(regs, true, write, FAR_EL2.get());
}

fn uart_access(d: usize, off: u64, size: u8, write: bool, val: u64) -> Option<u64> {
    if size > 4 {
        return None;
    }
    let rt = &RT[d];
    let r = {
        let mut uart = rt.console.lock();
        if write {
            if let Some(b) = uart.0.write(off, val as u32) {
                if let Some(line) = uart.1.push(b) {
                    domain_line(config().domains[d].name(), line);
                }
            }
            0
        } else if off == 0 {
            u64::from(uart.0.read_data())
        } else {
            u64::from(uart.0.read(off & !3))
        }
    };
    uart_update(d);
    Some(r)
}

#[cold]
#[inline(never)]
fn stage2_fault(regs: &mut GuestRegs, cpu: usize, d: usize, what: &str, ipa: u64, data: bool, write: bool) {
    let dom = &config().domains[d];
    if data && write && crate::p2m::dirty_fault(d, dom, ipa) {
        return; // dirty logging: the page is writable again, the write retried
    }
    if crate::p2m::allows_now(d, ipa, data && write, !data) {
        return; // it raced with a change of its tables (a block split): retried
    }
    if data && dom.linux && dom.xen && crate::p2m::scratch_fill(d, ipa) {
        diag(
            d,
            format_args!(
                "domain '{}': {what} at IPA {ipa:#x} in its grant window with nothing mapped (PC {:#x}): a scratch page answers",
                dom.name(),
                regs.elr
            ),
        );
        return;
    }
    let n = RT[d].faults.fetch_add(1, Ordering::Relaxed) + 1;
    let far = FAR_EL2.get();
    diag(
        d,
        format_args!(
            "domain '{}': stage-2 fault: {what} at IPA {ipa:#x} (VA {far:#x}, PC {:#x}) is outside its partition",
            dom.name(),
            regs.elr
        ),
    );
    let vbar = VBAR_EL1.get();
    let in_vectors = vbar != 0 && regs.elr.wrapping_sub(vbar) < 0x800;
    let give_up = n > MAX_FAULTS || in_vectors || vbar == 0 || !dom.ipa_in_ram(vbar);
    match dom.on_fault {
        FaultPolicy::Inject if !give_up => {
            diag(
                d,
                format_args!(
                    "domain '{}': injected a synchronous external abort (fault #{n}); the domain keeps running",
                    dom.name()
                ),
            );
            inject_abort(regs, data, write, far);
        }
        _ => {
            let (why, end) = if dom.on_fault == FaultPolicy::Stop {
                ("on_fault = stop", EndReason::Fault)
            } else if n > MAX_FAULTS {
                ("its budget of stage-2 faults is spent", EndReason::FaultBudget)
            } else {
                ("the guest cannot take the abort", EndReason::FaultUntakeable)
            };
            hprintln!("domain '{}': stopping it ({why})", dom.name());
            crash(cpu, d, end);
        }
    }
}

/// Vector offset and ESR "from EL0" flag for an exception taken to EL1 from `spsr`'s mode.
fn vector_for(spsr: u64) -> (u64, bool) {
    match spsr & 0xf {
        0b0101 => (0x200, false), // EL1h: current EL with SPx
        0b0100 => (0x000, false), // EL1t: current EL with SP0
        _ => (0x400, true),       // EL0: lower EL, AArch64
    }
}

fn inject(regs: &mut GuestRegs, esr: u64, far: u64) {
    let (off, _) = vector_for(regs.spsr);
    let vbar = VBAR_EL1.get();
    // EL1 exception registers of the vCPU running on this CPU.
    ESR_EL1.set(esr);
    FAR_EL1.set(far);
    ELR_EL1.set(regs.elr);
    SPSR_EL1.set(regs.spsr);
    // Guest values (its PC, its VBAR_EL1) wrap as the hardware's would; overflow checks are on.
    regs.elr = vbar.wrapping_add(off);
    regs.spsr = SPSR_EL1H_MASKED;
}

fn inject_abort(regs: &mut GuestRegs, data: bool, write: bool, far: u64) {
    let (_, from_el0) = vector_for(regs.spsr);
    inject(regs, esr::injected_abort_esr(data, from_el0, write), far);
}

fn inject_undef(regs: &mut GuestRegs) {
    inject(regs, esr::injected_undef_esr(), 0);
}

fn handle_psci(regs: &mut GuestRegs, cpu: usize, d: usize, v: usize) {
    let dom = &config().domains[d];
    let rt = &RT[d];
    let nr = dom.pcpus.len();
    let r: i64 = match psci::decode([regs.x[0], regs.x[1], regs.x[2], regs.x[3]]) {
        Call::Version => psci::PSCI_VERSION_1_1,
        Call::CpuSuspend => psci::ret::SUCCESS,
        Call::CpuOff => {
            rt.power[v].store(Power::Off.to_u8(), Ordering::Release);
            if (0..nr).all(|i| rt.power(i) == Power::Off) {
                end_domain(d, EndReason::AllCpusOff);
            }
            idle(cpu);
        }
        Call::CpuOn { target, entry, context } => match psci::vcpu_of_mpidr(target, nr) {
            None => psci::ret::INVALID_PARAMETERS,
            Some(_) if !dom.ipa_in_ram(entry) => psci::ret::INVALID_ADDRESS,
            Some(t) => {
                let cur = rt.power(t);
                match cur.cpu_on_refusal() {
                    Some(err) => err,
                    None => {
                        rt.on_entry[t].store(entry, Ordering::Relaxed);
                        rt.on_ctx[t].store(context, Ordering::Relaxed);
                        match rt.power[t].compare_exchange(
                            cur.to_u8(),
                            Power::OnPending.to_u8(),
                            Ordering::AcqRel,
                            Ordering::Acquire,
                        ) {
                            Ok(_) => {
                                crate::gic::send_sgi(usize::from(dom.pcpus[t]), crate::gic::SGI_KICK);
                                psci::ret::SUCCESS
                            }
                            Err(_) => psci::ret::ON_PENDING,
                        }
                    }
                }
            }
        },
        Call::AffinityInfo { target, level } => match (psci::vcpu_of_mpidr(target, nr), level) {
            (Some(t), 0) => rt.power(t).affinity_info(),
            _ => psci::ret::INVALID_PARAMETERS,
        },
        Call::MigrateInfoType => 2,
        Call::SystemOff => {
            end_domain(d, EndReason::PowerOff);
            idle(cpu);
        }
        Call::SystemReset => restart_domain(cpu, d, v),
        Call::Features(f) => psci::features(f),
        Call::SmcccVersion => psci::SMCCC_VERSION_1_1,
        Call::SmcccArchFeatures(_) | Call::Unknown(_) => psci::ret::NOT_SUPPORTED,
    };
    regs.x[0] = r as u64;
}

/// Whether each pCPU's vCPU is blocked in [`block`] (a sender then kicks it).
static BLOCKED: [AtomicBool; MAX_CPUS] = [const { AtomicBool::new(false) }; MAX_CPUS];
/// How many vCPUs are blocked: deliveries skip the look-up while nobody is.
static NR_BLOCKED: AtomicUsize = AtomicUsize::new(0);

/// Blocks the calling vCPU (`SCHEDOP_block`, `SCHEDOP_poll`) until `ready()` holds, a virtual
/// interrupt waits for it, the physical counter reaches `deadline`, or its domain ends (then
/// this never returns). Physical interrupts taken meanwhile are handled as usual. A sender
/// that makes `ready()` true calls [`kick_blocked`] afterwards, so no wake-up is lost.
pub fn block(cpu: usize, d: usize, v: usize, deadline: Option<u64>, mut ready: impl FnMut() -> bool) {
    if let Some(t) = deadline {
        arch::hyp_timer_set(t.min(RT[d].wd_deadline.load(Ordering::Acquire)));
    }
    BLOCKED[cpu].store(true, Ordering::SeqCst);
    NR_BLOCKED.fetch_add(1, Ordering::SeqCst);
    let t0 = arch::counter();
    loop {
        core::sync::atomic::fence(Ordering::SeqCst);
        if ready() || crate::irq::vcpu_has_pending(cpu) || deadline.is_some_and(|t| arch::counter() >= t) {
            break;
        }
        arch::wfi();
        crate::irq::handle(d, v);
        if !is_running(d) || RT[d].wd_fired.load(Ordering::Acquire) {
            unblock(cpu);
            after_irqs(cpu, d, v); // returns only if neither (another exit handled it)
            BLOCKED[cpu].store(true, Ordering::SeqCst);
            NR_BLOCKED.fetch_add(1, Ordering::SeqCst);
        }
    }
    unblock(cpu);
    bump(&STATS[cpu].blocked, arch::counter().wrapping_sub(t0));
    if RT[d].paused.load(Ordering::Acquire) {
        pause_wait(cpu, d, v);
    }
}

/// Holds a vCPU of a paused domain on its pCPU (interrupts for it are taken and queued)
/// until the domain is unpaused, then gives it the moved-on virtual counter offset; leaves
/// for [`idle`] when the domain ends meanwhile.
#[cold]
#[inline(never)]
fn pause_wait(cpu: usize, d: usize, v: usize) {
    while RT[d].paused.load(Ordering::Acquire) {
        arch::wfi();
        crate::irq::handle(d, v);
        if !is_running(d) {
            idle(cpu);
        }
    }
    // The virtual counter offset of the vCPU running on this CPU, about to re-enter.
    CNTVOFF_EL2.set(RT[d].cntvoff.load(Ordering::Acquire));
    arch::isb();
}

fn kick_pcpus(d: usize) {
    let me = arch::cpu_index();
    for &p in pcpus(d).iter().filter(|&&p| usize::from(p) != me) {
        crate::gic::send_sgi(usize::from(p), crate::gic::SGI_KICK);
    }
}

/// Pauses domain `d` (`XEN_DOMCTL_pausedomain`): its vCPUs stop at their next exit, which the
/// kick forces now. Pausing a paused domain is a no-op; one that is not running, `-EINVAL`.
pub fn pause(d: usize) -> Result<(), i64> {
    if !is_running(d) {
        return Err(-xen_abi::errno::EINVAL);
    }
    let rt = &RT[d];
    rt.paused_at.store(arch::counter(), Ordering::Relaxed);
    if !rt.paused.swap(true, Ordering::AcqRel) {
        hprintln!("domain '{}': paused by the control domain", name(d));
        crate::ev!(info, "domain {=usize} paused", d);
        kick_pcpus(d);
    }
    Ok(())
}

/// Unpauses domain `d`: its virtual counter resumes where it stopped (CNTVOFF moves on by the
/// time it was paused). Unpausing a domain that is not paused is a no-op.
pub fn unpause(d: usize) -> Result<(), i64> {
    let rt = &RT[d];
    if !rt.paused.load(Ordering::Acquire) {
        return Ok(());
    }
    let dt = arch::counter().wrapping_sub(rt.paused_at.load(Ordering::Relaxed));
    rt.cntvoff.fetch_add(dt, Ordering::AcqRel);
    rt.paused_ticks.fetch_add(dt, Ordering::Relaxed);
    rt.paused.store(false, Ordering::Release);
    hprintln!("domain '{}': unpaused by the control domain", name(d));
    crate::ev!(info, "domain {=usize} unpaused", d);
    kick_pcpus(d);
    Ok(())
}

/// Destroys domain `d` (`XEN_DOMCTL_destroydomain`): it ends at once, its PV devices close
/// (the backends see their frontend directories go) and its slot stays declared, ready for
/// [`start`]. A domain that already ended stays as it is.
pub fn destroy(d: usize) -> Result<(), i64> {
    if is_running(d) {
        end_domain(d, EndReason::Destroyed);
    } else if RT[d].saved.lock().take().is_some() {
        // A suspended domain (saved or not): its kept state goes.
        RT[d].end.store(EndReason::Destroyed as u8, Ordering::Release);
        hprintln!("domain '{}' ended: {}", name(d), EndReason::Destroyed.text());
        crate::xen::domain_changed(d);
    }
    RT[d].paused.store(false, Ordering::Release);
    clear_watchdogs(d);
    crate::p2m::log_stop(d, &config().domains[d]);
    if RT[d].restoring.lock().take().is_some() {
        RT[d].starting.store(false, Ordering::Release); // an abandoned restore
    }
    Ok(())
}

/// Starts declared domain `d`, which is not running, from its images in the staging window:
/// once its pCPUs have left it (at most a second), its Xen state is reset, its RAM reloaded
/// and its boot vCPU started. `-EBUSY` when it runs, is being started, or a pCPU does not
/// come back.
pub fn start(d: usize) -> Result<(), i64> {
    start_as(d, "by the control domain")
}

fn start_as(d: usize, who: &str) -> Result<(), i64> {
    use xen_abi::errno;
    let cfg = config();
    let dom = &cfg.domains[d];
    let rt = &RT[d];
    if is_running(d) || rt.starting.swap(true, Ordering::AcqRel) {
        return Err(-errno::EBUSY);
    }
    crate::p2m::log_stop(d, dom);
    if is_running(d) {
        rt.starting.store(false, Ordering::Release);
        return Err(-errno::EBUSY);
    }
    if !wait_parked(d) {
        rt.starting.store(false, Ordering::Release);
        hprintln!("domain '{}': not started: its vCPUs did not stop within a second", dom.name());
        return Err(-errno::EBUSY);
    }
    flush_console(d);
    crate::xen::reset(d);
    crate::p2m::refill(d, dom);
    load_images(dom, false);
    reset_runtime(d, 0, arch::counter());
    rt.on_entry[0].store(dom.entry, Ordering::Relaxed);
    rt.on_ctx[0].store(dom.dtb, Ordering::Relaxed);
    hprintln!("domain '{}': started {who}", dom.name());
    release_vcpu0(d);
    crate::xen::domain_changed(d);
    Ok(())
}

/// Fresh run-time state for domain `d`, which runs again (started or restored) once its pCPUs
/// are parked: console, vCPUs off, not paused, no watchdog, its uptime and vCPU time from now,
/// its virtual counter reading `vcnt` at physical count `at`.
fn reset_runtime(d: usize, vcnt: u64, at: u64) {
    let dom = &config().domains[d];
    let rt = &RT[d];
    *rt.console.lock() = (Pl011::new(), LineBuf::new());
    rt.uart_inflight.store(false, Ordering::Relaxed);
    for v in 0..dom.pcpus.len() {
        rt.power[v].store(Power::Off.to_u8(), Ordering::Relaxed);
    }
    let now = arch::counter();
    rt.paused.store(false, Ordering::Relaxed);
    clear_watchdogs(d);
    rt.paused_ticks.store(0, Ordering::Relaxed);
    rt.cntvoff.store(at.wrapping_sub(vcnt), Ordering::Relaxed);
    rt.started_at.store(now, Ordering::Relaxed);
    let blocked = dom.pcpus.iter().map(|&p| STATS[usize::from(p)].blocked.load(Ordering::Relaxed)).sum();
    rt.blocked_base.store(blocked, Ordering::Relaxed);
}

/// Marks domain `d` running with its vCPU 0 pending (the end of a start or a restore, whose
/// `starting` guard it drops) and kicks that vCPU's pCPU out of its idle wait.
fn release_vcpu0(d: usize) {
    let rt = &RT[d];
    rt.power[0].store(Power::OnPending.to_u8(), Ordering::Release);
    rt.end.store(EndReason::Running as u8, Ordering::Release);
    crate::ev!(info, "domain {=usize} running", d);
    ENDED.fetch_sub(1, Ordering::AcqRel);
    rt.starting.store(false, Ordering::Release);
    if let Some(&p) = pcpus(d).first() {
        if usize::from(p) != arch::cpu_index() {
            crate::gic::send_sgi(usize::from(p), crate::gic::SGI_KICK);
        }
    }
}

/// Stops domain `d` if it runs and starts it again (`hypctl restart`), counted as a restart.
pub fn restart(d: usize) -> Result<(), i64> {
    destroy(d)?;
    start(d)?;
    RT[d].restarts.fetch_add(1, Ordering::Relaxed);
    Ok(())
}

/// `SCHEDOP_shutdown(suspend)` from vCPU `regs`: a single-vCPU unikernel's vCPU state is
/// kept (its RAM stays as it is) and the domain ends as suspended, ready for `hypctl save`.
/// Linux and multi-vCPU domains get `-EOPNOTSUPP`-like `-ENOSYS` (not supported yet).
pub fn suspend(regs: &GuestRegs) -> i64 {
    let (cpu, d) = (regs.cpu, regs.dom);
    let dom = &config().domains[d];
    if dom.linux || dom.pcpus.len() != 1 {
        hprintln!("domain '{}': suspend refused: only single-vCPU unikernels can be suspended", dom.name());
        return -xen_abi::errno::ENOSYS;
    }
    let mut cpu_state = CpuState {
        x: regs.x,
        pc: regs.elr,
        pstate: regs.spsr,
        sysregs: arch::save_el1_context(),
        ..CpuState::default()
    };
    (cpu_state.fpcr, cpu_state.fpsr) = arch::save_fp(&mut cpu_state.q);
    let mut name = [0u8; 32];
    name[..dom.name_len].copy_from_slice(&dom.name[..dom.name_len]);
    let h = Header {
        ram_size: dom.memory.size,
        ipa_base: dom.ipa_base,
        vcpus: 1,
        vcnt: arch::counter().wrapping_sub(cntvoff(d)),
        cntfrq: CNTFRQ_EL0.get(),
        name,
        cpu: cpu_state,
    };
    *RT[d].saved.lock() = Some(Box::new(h));
    // Stops the suspended vCPU's virtual timer on this CPU; nothing runs it any more.
    CNTV_CTL_EL0.set(0);
    hprintln!("domain '{}': suspended (its state is kept for hypctl save)", dom.name());
    end_domain(d, EndReason::Suspended);
    idle(cpu)
}

/// `FERRUM_LOG_DIRTY`: `op` 1 starts dirty logging of domain `d` (running), 2 copies its dirty
/// bitmap (bit per RAM page) to the control domain's buffer at `va` (`len` bytes) and clears
/// it, 3 stops it. Returns the number of dirty pages for 2.
pub fn log_dirty(ctl: usize, d: usize, op: u64, va: u64, len: u64) -> Result<u64, i64> {
    use xen_abi::errno;
    let dom = &config().domains[d];
    match op {
        1 if is_running(d) && !dom.linux => {
            if crate::p2m::log_start(d, dom) {
                Ok(0)
            } else {
                Err(-errno::ENOMEM)
            }
        }
        2 => {
            let words = (dom.memory.size / 4096).div_ceil(64) as usize;
            if len < (words * 8) as u64 {
                return Err(-errno::EINVAL);
            }
            let mut bm = alloc::vec![0u64; words];
            let n = crate::p2m::log_peek_clean(d, dom, &mut bm, is_running(d)).ok_or(-errno::EINVAL)?;
            let bytes: alloc::vec::Vec<u8> = bm.iter().flat_map(|w| w.to_le_bytes()).collect();
            crate::xen::copy_to_guest(ctl, va, &bytes)?;
            Ok(n)
        }
        3 => {
            crate::p2m::log_stop(d, dom);
            Ok(0)
        }
        _ => Err(-errno::EINVAL),
    }
}

/// The physical address of byte `off` of domain `d`'s RAM.
fn ram_pa(d: usize, off: u64) -> u64 {
    config().domains[d].memory.base.0 + off
}

/// `FERRUM_SAVE_READ`: bytes `[off, off + len)` of suspended domain `d`'s stream (header, then
/// RAM) into the control domain's buffer at `va`. Returns the stream's length without its
/// trailer.
pub fn save_read(ctl: usize, d: usize, off: u64, len: u64, va: u64) -> Result<u64, i64> {
    use xen_abi::errno;
    let suspended = !is_running(d) && EndReason::from_u8(RT[d].end.load(Ordering::Acquire)) == EndReason::Suspended;
    // A running domain's RAM may be read while it is being migrated live (dirty logging on).
    let live = is_running(d) && crate::p2m::logging(d);
    if !suspended && !live {
        return Err(-errno::EINVAL);
    }
    let dom = &config().domains[d];
    let saved = RT[d].saved.lock().as_deref().copied();
    if suspended && saved.is_none() {
        return Err(-errno::EINVAL);
    }
    let total = HEADER_SIZE as u64 + dom.memory.size;
    if len > 1 << 20 || off.checked_add(len).is_none_or(|e| e > total) {
        return Err(-errno::EINVAL);
    }
    // The header only when it is read: the saved one, or while it runs its shape alone (for
    // the receiver to check its slot first).
    let head = (off < HEADER_SIZE as u64).then(|| match saved.filter(|_| suspended) {
        Some(h) => h.encode(),
        None => {
            let freq = CNTFRQ_EL0.get();
            Header::shape(dom.memory.size, dom.ipa_base, dom.pcpus.len() as u32, freq, dom.name()).encode()
        }
    });
    let mut buf = [0u8; 4096];
    let mut done = 0;
    while done < len {
        let at = off + done;
        let n = (len - done).min(4096 - (at % 4096)) as usize;
        if let Some(head) = head.as_ref().filter(|_| at < HEADER_SIZE as u64) {
            let a = at as usize;
            buf[..n].copy_from_slice(&head[a..a + n]);
        } else {
            // SAFETY: the source lies in domain `d`'s RAM (bounds checked above): suspended, so
            // nothing writes it, or logged while it runs, so a page it writes meanwhile is sent
            // again; the destination is a local buffer.
            unsafe { mm::copy_phys(buf.as_mut_ptr() as u64, ram_pa(d, at - HEADER_SIZE as u64), n as u64) };
        }
        crate::xen::copy_to_guest(ctl, va + done, &buf[..n])?;
        done += n as u64;
    }
    Ok(total)
}

/// Maps a refused stream to the code `hypctl` gets (it explains truncation and corruption
/// itself; the hypervisor says the rest on its console).
fn stream_code(e: StreamError) -> i64 {
    use xen_abi::errno;
    match e {
        StreamError::TooLarge { .. } => -errno::E2BIG,
        StreamError::Shape(_) => -errno::ENXIO,
        _ => -errno::EINVAL,
    }
}

/// `FERRUM_RESTORE_BEGIN`: checks the header at `va` (a saved one, or a running domain's
/// shape for a live migration) against slot `d` (not running) and, when it fits, gets the
/// slot ready: its pCPUs parked, its Xen state reset (no backend keeps mapping its old
/// frames). Nothing of the slot changes when the header is refused. A restore that was begun
/// and not committed may begin again.
pub fn restore_begin(ctl: usize, d: usize, va: u64) -> Result<(), i64> {
    use xen_abi::errno;
    let dom = &config().domains[d];
    let rt = &RT[d];
    let mut head = [0u8; HEADER_SIZE];
    crate::xen::copy_from_guest(ctl, va, &mut head)?;
    let h = Header::decode(&head).map_err(stream_code)?;
    if let Err(e) = h.fits(dom.memory.size, dom.ipa_base, dom.pcpus.len() as u32, CNTFRQ_EL0.get()) {
        hprintln!("domain '{}': restore of '{}' refused: {e}", dom.name(), h.name());
        return Err(stream_code(e));
    }
    if dom.linux {
        hprintln!("domain '{}': restore refused: Linux domains cannot be restored yet", dom.name());
        return Err(-errno::ENXIO);
    }
    if is_running(d) || (rt.starting.swap(true, Ordering::AcqRel) && rt.restoring.lock().is_none()) {
        return Err(-errno::EBUSY);
    }
    if !wait_parked(d) {
        rt.starting.store(false, Ordering::Release);
        return Err(-errno::EBUSY);
    }
    flush_console(d);
    crate::p2m::log_stop(d, dom);
    crate::xen::reset(d);
    *rt.restoring.lock() = Some((Box::new(h), PageSet::new(h.ram_size)));
    hprintln!("domain '{}': restoring '{}' into it", dom.name(), h.name());
    Ok(())
}

/// Waits (at most a second) until every pCPU of domain `d` runs none of its code.
fn wait_parked(d: usize) -> bool {
    let freq = CNTFRQ_EL0.get();
    let deadline = arch::counter() + freq;
    while pcpus(d).iter().any(|&p| !PARKED[usize::from(p)].load(Ordering::Acquire)) {
        if arch::counter() > deadline {
            return false;
        }
        core::hint::spin_loop();
    }
    true
}

/// `FERRUM_RESTORE_WRITE`: `len` bytes of the stream's RAM at RAM offset `off` (whole pages,
/// in any order, at most 1 MiB) from the control domain's buffer at `va`.
pub fn restore_write(ctl: usize, d: usize, off: u64, len: u64, va: u64) -> Result<(), i64> {
    use xen_abi::errno;
    let mut g = RT[d].restoring.lock();
    let Some((_, written)) = g.as_mut() else { return Err(-errno::EINVAL) };
    if len > 1 << 20 || !written.fits(off, len) {
        return Err(-errno::EINVAL);
    }
    let mut buf = [0u8; 4096];
    let mut done = 0;
    while done < len {
        let n = (len - done).min(4096) as usize;
        crate::xen::copy_from_guest(ctl, va + done, &mut buf[..n])?;
        // SAFETY: the destination lies in domain `d`'s RAM (bounds checked above); the domain is
        // not running and its Xen state was reset (no one maps its frames).
        unsafe { mm::copy_phys(ram_pa(d, off + done), buf.as_ptr() as u64, n as u64) };
        done += n as u64;
    }
    written.mark(off, len);
    Ok(())
}

/// `FERRUM_RESTORE_COMMIT`: once every page of the RAM is written, domain `d` resumes from
/// the final header at `va` (same name and shape as the one the restore began with): its
/// stage-2 tables as planned, its virtual counter continuing from the saved value moved on by
/// `age_ns` (the time since its suspend; at most [`MAX_AGE_NS`]), `SCHEDOP_shutdown`
/// answering 0. A refused commit changes nothing: the restore stays open.
pub fn restore_commit(ctl: usize, d: usize, va: u64, age_ns: u64) -> Result<(), i64> {
    use xen_abi::errno;
    // The instant `age_ns` was measured for (the call's): the work below counts as stopped time.
    let entered = arch::counter();
    let dom = &config().domains[d];
    let rt = &RT[d];
    let mut head = [0u8; HEADER_SIZE];
    crate::xen::copy_from_guest(ctl, va, &mut head)?;
    let last = Header::decode(&head).map_err(stream_code)?;
    if age_ns > MAX_AGE_NS {
        return Err(-errno::EINVAL);
    }
    let h = {
        let mut g = rt.restoring.lock();
        match g.take() {
            Some((begun, w)) if w.complete() && begun.same_shape(&last) => Box::new(last),
            other => {
                *g = other;
                return Err(-errno::EINVAL);
            }
        }
    };
    crate::p2m::refill(d, dom);
    arch::clean_dcache_range(dom.memory.base.0 as usize, dom.memory.size as usize);
    arch::invalidate_icache();
    reset_runtime(d, h.resumed_vcnt(age_ns), entered);
    let name = alloc::string::String::from(h.name());
    *rt.saved.lock() = Some(h);
    rt.resume.store(true, Ordering::Release);
    let us = arch::counter().wrapping_sub(entered) * 1_000_000 / CNTFRQ_EL0.get().max(1);
    release_vcpu0(d);
    crate::xen::domain_changed(d);
    hprintln!("domain '{}': restored from '{name}'s saved state ({us} us to commit); resuming it", dom.name());
    Ok(())
}

/// Ferrum's status record of domain `d`.
pub fn status(d: usize) -> hyp_core::control::Status {
    let dom = &config().domains[d];
    let rt = &RT[d];
    let now = arch::counter();
    let freq = u128::from(CNTFRQ_EL0.get().max(1));
    let ns = |t: u64| (u128::from(t) * 1_000_000_000 / freq) as u64;
    let running = is_running(d);
    let paused = running && rt.paused.load(Ordering::Acquire);
    let mut up = now.wrapping_sub(rt.started_at.load(Ordering::Relaxed));
    up = up.saturating_sub(rt.paused_ticks.load(Ordering::Relaxed));
    if paused {
        up = up.saturating_sub(now.wrapping_sub(rt.paused_at.load(Ordering::Relaxed)));
    }
    let pc = dom.pcpus.iter().map(|&p| &STATS[usize::from(p)]);
    let sum = |f: fn(&CpuStats) -> &AtomicU64| pc.clone().map(|s| f(s).load(Ordering::Relaxed)).sum::<u64>();
    let online = (0..dom.pcpus.len()).filter(|&v| rt.power(v) == Power::On).count() as u64;
    let blocked = sum(|s| &s.blocked).wrapping_sub(rt.blocked_base.load(Ordering::Relaxed));
    let mut s = hyp_core::control::Status {
        state: rt.end.load(Ordering::Acquire),
        paused,
        vcpus: dom.pcpus.len() as u16,
        restarts: rt.restarts.load(Ordering::Relaxed),
        uptime_ns: if running { ns(up) } else { 0 },
        cpu_time_ns: if running { ns(up.saturating_mul(online).saturating_sub(blocked)) } else { 0 },
        traps: sum(|s| &s.traps).wrapping_add(sum(|s| &s.hypercalls)),
        hypercalls: sum(|s| &s.hypercalls),
        irqs: sum(|s| &s.irqs),
        linux: dom.linux,
        last_exit: rt.last_end.load(Ordering::Relaxed),
        since_end_ns: if running { 0 } else { ns(now.wrapping_sub(rt.ended_at.load(Ordering::Relaxed))) },
        ..Default::default()
    };
    s.set_name(dom.name());
    s
}

/// Xen's `physinfo` of the board: CPUs online, the counter's frequency, RAM and what no
/// domain has (the hypervisor's own window counts as used).
pub fn physinfo() -> hyp_core::control::PhysInfo {
    let cfg = config();
    let p = &crate::PLATFORM;
    let total: u64 = p.ram.iter().map(|w| w.size).sum();
    let used: u64 = cfg.domains.iter().map(|c| c.memory.size).sum::<u64>() + p.hyp_size + p.staging.size;
    hyp_core::control::PhysInfo {
        nr_cpus: crate::online_cpus() as u32,
        cpu_khz: (CNTFRQ_EL0.get() / 1000) as u32,
        total_pages: total / 4096,
        free_pages: total.saturating_sub(used) / 4096,
    }
}

/// Xen's `getdomaininfo` record of domain `d`.
pub fn info(d: usize) -> hyp_core::control::DomInfo {
    use xen_abi::domctl as dc;
    let dom = &config().domains[d];
    let st = status(d);
    let end = EndReason::from_u8(st.state);
    let flags = dc::DOMINF_HAP
        | match end {
            EndReason::Running if st.paused => dc::DOMINF_PAUSED,
            EndReason::Running => dc::DOMINF_RUNNING,
            EndReason::Destroyed => dc::DOMINF_DYING,
            EndReason::PowerOff | EndReason::AllCpusOff => dc::DOMINF_SHUTDOWN,
            _ => dc::DOMINF_SHUTDOWN | (xen_abi::sched::SHUTDOWN_CRASH << dc::DOMINF_SHUTDOWN_SHIFT),
        };
    hyp_core::control::DomInfo {
        domid: hyp_core::evtchn::domid_of(d),
        flags,
        tot_pages: dom.memory.size / 4096,
        max_pages: dom.memory.size / 4096,
        cpu_time: st.cpu_time_ns,
        online_vcpus: (0..dom.pcpus.len()).filter(|&v| RT[d].power(v) == Power::On).count() as u32,
        max_vcpu_id: dom.pcpus.len().saturating_sub(1) as u32,
        gic_version: match dom.gic.map(|g| g.version) {
            Some(Version::V2) => 1,
            Some(Version::V3) => 2,
            None => 0,
        },
    }
}

fn unblock(cpu: usize) {
    BLOCKED[cpu].store(false, Ordering::Relaxed);
    NR_BLOCKED.fetch_sub(1, Ordering::SeqCst);
    arch::hyp_timer_off();
    if let Some((d, _)) = config().vcpu_of_pcpu[cpu] {
        arm_watchdog_timer(d);
    }
}

/// What a vCPU checks after taking physical interrupts: a watchdog that fired (its domain
/// crashes), its domain ended elsewhere (it leaves), or a pause (it waits).
fn after_irqs(cpu: usize, d: usize, v: usize) {
    if RT[d].wd_fired.load(Ordering::Acquire) && RT[d].wd_fired.swap(false, Ordering::AcqRel) && is_running(d) {
        hprintln!("domain '{}': watchdog expired", name(d));
        crash(cpu, d, EndReason::Watchdog);
    }
    if !is_running(d) {
        idle(cpu); // the domain ended elsewhere and kicked this vCPU out
    }
    if RT[d].paused.load(Ordering::Acquire) {
        pause_wait(cpu, d, v);
    }
}

/// Arms this pCPU's EL2 timer for domain `d`'s earliest watchdog deadline, if it has one.
fn arm_watchdog_timer(d: usize) {
    let t = RT[d].wd_deadline.load(Ordering::Acquire);
    if t != u64::MAX {
        arch::hyp_timer_set(t);
    }
}

/// This pCPU's EL2 timer fired while it runs domain `d`: a watchdog whose deadline passed
/// fires (handled by [`after_irqs`]); one that was kicked meanwhile is armed again.
pub fn hyp_timer_fired(d: usize) {
    let t = RT[d].wd_deadline.load(Ordering::Acquire);
    if t == u64::MAX {
        return;
    }
    if arch::counter() >= t {
        RT[d].wd_deadline.store(u64::MAX, Ordering::Release);
        RT[d].wd_fired.store(true, Ordering::Release);
    } else {
        arch::hyp_timer_set(t);
    }
}

/// `SCHEDOP_watchdog` of domain `d` (`hyp_core::lifecycle::Watchdogs::op`), then its EL2
/// timer is armed for the earliest deadline.
pub fn watchdog_op(d: usize, id: u32, timeout: u32) -> i64 {
    let freq = CNTFRQ_EL0.get();
    let mut wds = RT[d].watchdogs.lock();
    let r = wds.op(id, timeout, arch::counter(), freq);
    RT[d].wd_deadline.store(wds.earliest().unwrap_or(u64::MAX), Ordering::Release);
    drop(wds);
    arm_watchdog_timer(d);
    r
}

fn clear_watchdogs(d: usize) {
    *RT[d].watchdogs.lock() = Watchdogs::new();
    RT[d].wd_deadline.store(u64::MAX, Ordering::Release);
    RT[d].wd_fired.store(false, Ordering::Release);
}

/// Domain `d` crashed (`why`, on this pCPU): it ends, then its `on_crash` policy applies —
/// stop, power the board off, or restart it within its restart limit. Never returns.
pub fn crash(cpu: usize, d: usize, why: EndReason) -> ! {
    end_domain(d, why);
    let dom = &config().domains[d];
    match dom.lifecycle.on_crash {
        CrashPolicy::Stop => {}
        CrashPolicy::Board => {
            summary();
            crash::power_off(false, format_args!("domain '{}' crashed (on_crash = board)", dom.name()));
        }
        CrashPolicy::Restart => policy_restart(cpu, d, "on_crash = restart"),
    }
    idle(cpu)
}

/// Counts one more restart of domain `d` (by policy or its own reboot) in its restart-limit
/// window (a fixed window that opens at the first restart after the previous one closed) and
/// says whether the limit allows it.
fn limit_allows(d: usize) -> bool {
    let l = config().domains[d].lifecycle;
    let window = u64::from(l.restart_window).saturating_mul(CNTFRQ_EL0.get());
    RT[d].window.lock().allow(arch::counter(), window, l.restart_limit)
}

/// Restarts domain `d` by policy from one of its own pCPUs (this one, which no longer runs
/// its guest), unless that exceeds its restart limit: then it stays stopped and the control
/// domain is told (`VIRQ_DOM_EXC`).
fn policy_restart(cpu: usize, d: usize, why: &str) {
    let dom = &config().domains[d];
    let rt = &RT[d];
    let l = dom.lifecycle;
    if !limit_allows(d) {
        rt.end.store(EndReason::RestartLimit as u8, Ordering::Release);
        hprintln!(
            "domain '{}': not restarted: {} restarts within {} s already (restart_limit); it stays stopped",
            dom.name(),
            l.restart_limit,
            l.restart_window
        );
        crate::xen::domain_changed(d);
        return;
    }
    let n = rt.window.lock().count();
    hprintln!(
        "domain '{}': restarting it ({why}, restart {n} of {} within {} s)",
        dom.name(),
        l.restart_limit,
        l.restart_window
    );
    PARKED[cpu].store(true, Ordering::Release);
    if start_as(d, "by its policy").is_ok() {
        rt.restarts.fetch_add(1, Ordering::Relaxed);
    }
}

/// Wakes domain `d`'s vCPUs that are blocked in [`block`] on other pCPUs.
pub fn kick_blocked(d: usize) {
    core::sync::atomic::fence(Ordering::SeqCst);
    if NR_BLOCKED.load(Ordering::SeqCst) == 0 {
        return;
    }
    let me = arch::cpu_index();
    for &p in pcpus(d) {
        let p = usize::from(p);
        if p != me && BLOCKED[p].load(Ordering::SeqCst) {
            crate::gic::send_sgi(p, crate::gic::SGI_KICK);
        }
    }
}

/// `SCHEDOP_shutdown` with a reason other than reboot: the domain ends as PSCI `SYSTEM_OFF`
/// would (poweroff) or as a crash.
pub fn shutdown_from_hypercall(d: usize, why: EndReason) -> ! {
    let cpu = arch::cpu_index();
    if why.is_crash() {
        crash(cpu, d, why);
    }
    end_domain(d, why);
    idle(cpu)
}

/// `SCHEDOP_shutdown(reboot)`: as PSCI `SYSTEM_RESET`.
pub fn reboot_from_hypercall(d: usize, v: usize) -> ! {
    restart_domain(arch::cpu_index(), d, v)
}

fn restart_domain(cpu: usize, d: usize, v: usize) -> ! {
    let dom = &config().domains[d];
    let rt = &RT[d];
    let others_running = (0..dom.pcpus.len()).any(|i| i != v && rt.power(i) != Power::Off);
    if others_running {
        end_domain(d, EndReason::Reset);
        idle(cpu);
    }
    if dom.lifecycle.on_reboot == RebootPolicy::Stop {
        hprintln!("domain '{}': asked for a reboot; on_reboot = stop", dom.name());
        end_domain(d, EndReason::RebootStopped);
        idle(cpu);
    }
    if !limit_allows(d) {
        hprintln!(
            "domain '{}': not restarted: {} restarts within {} s already (restart_limit); it stays stopped",
            dom.name(),
            dom.lifecycle.restart_limit,
            dom.lifecycle.restart_window
        );
        end_domain(d, EndReason::RestartLimit);
        idle(cpu);
    }
    clear_watchdogs(d);
    let n = rt.restarts.fetch_add(1, Ordering::Relaxed) + 1;
    hprintln!("domain '{}': SYSTEM_RESET: reloading its images and restarting it (restart #{n})", dom.name());
    flush_console(d);
    crate::xen::reset(d);
    crate::xen::domain_changed(d);
    crate::p2m::refill(d, dom);
    load_images(dom, false);
    rt.power[v].store(Power::Off.to_u8(), Ordering::Relaxed);
    rt.on_entry[0].store(dom.entry, Ordering::Relaxed);
    rt.on_ctx[0].store(dom.dtb, Ordering::Relaxed);
    rt.power[0].store(Power::OnPending.to_u8(), Ordering::Release);
    arch::sev();
    idle(cpu)
}

fn flush_console(d: usize) {
    let mut c = RT[d].console.lock();
    let rest = c.1.take();
    if !rest.is_empty() {
        domain_line(config().domains[d].name(), rest);
    }
}

/// Ends a domain; powers the board off when the policy or the last domain says so.
pub fn end_domain(d: usize, why: EndReason) {
    let cfg = config();
    if RT[d].end.compare_exchange(0, why as u8, Ordering::AcqRel, Ordering::Acquire).is_err() {
        return;
    }
    flush_console(d);
    clear_watchdogs(d);
    RT[d].last_end.store(why as u8, Ordering::Relaxed);
    RT[d].ended_at.store(arch::counter(), Ordering::Relaxed);
    let dom = &cfg.domains[d];
    hprintln!("domain '{}' ended: {}", dom.name(), why.text());
    crate::ev!(info, "domain {=usize} ended: {=str}", d, why.text());
    crate::xen::domain_changed(d);
    kick_pcpus(d); // stop its other vCPUs now
    let ended = ENDED.fetch_add(1, Ordering::AcqRel) + 1;
    if why == EndReason::PowerOff && dom.on_poweroff == PowerOffPolicy::Board {
        summary();
        crash::power_off(true, format_args!("domain '{}' powered off the board (on_poweroff = board)", dom.name()));
    }
    if ended == cfg.domains.len() {
        summary();
        crash::power_off(true, format_args!("all domains ended"));
    }
}

fn summary() {
    let cfg = config();
    hprintln!("summary of {} domain(s):", cfg.domains.len());
    for (i, dom) in cfg.domains.iter().enumerate() {
        let rt = &RT[i];
        hprintln!(
            "  {:<16} {:<38} faults contained: {}, restarts: {}{}",
            dom.name(),
            EndReason::from_u8(rt.end.load(Ordering::Acquire)).text(),
            rt.faults.load(Ordering::Relaxed),
            rt.restarts.load(Ordering::Relaxed),
            match rt.diags.load(Ordering::Relaxed).saturating_sub(hyp_core::diag::BURST) {
                0 => alloc::string::String::new(),
                n => alloc::format!(", diagnostics not printed: {n}"),
            }
        );
    }
}
