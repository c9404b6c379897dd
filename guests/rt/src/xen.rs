//! Xen on Arm, guest side: detection through the device tree's `/hypervisor` node, the
//! hypercalls the runtime uses, `shared_info` and the 2-level event-channel upcall, the grant
//! table (granting and mapping), the xenstore ring, `SCHEDOP_shutdown`.
//!
//! The same code runs on ferrum and on Xen 4.17: only what the device tree and the HVM
//! parameters say is used (grant window and extended regions from `/hypervisor` `reg`, the
//! store and console rings from `HVM_PARAM_*`). A Xen without xenstore (a dom0less domain
//! without `xen,enhanced = "enabled"`) leaves [`Xen::store`] empty.
//!
//! Invariants: `shared_info` lives in a page of our BSS that the hypervisor replaced with its
//! own; event ports fired by the upcall are recorded in [`FIRED`] and consumed by waiters; a
//! grant-mapped slot of the extended region is reused only after its unmap succeeded.

use crate::arch::{self, SharedPage};
use crate::events::{self, Fired, SharedView};
use crate::grants::{GrantError, GrantRef, GrantTable};
use crate::ring::ByteRing;
use crate::xs::{Transport, Xenstore};
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use xen_abi::{domid, evtchn as ev, gnttab as gt, hc, hvm, memory, sched, shared, xs};

/// Ports fired by upcalls and not yet consumed.
pub static FIRED: Fired = Fired::new();
static SHARED_INFO: AtomicU64 = AtomicU64::new(0);
static PRESENT: AtomicBool = AtomicBool::new(false);

/// A hypercall's error: Xen's negative errno.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct XenError(pub i64);

impl core::fmt::Display for XenError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let name = match -self.0 {
            1 => "EPERM",
            2 => "ENOENT",
            3 => "ESRCH",
            12 => "ENOMEM",
            13 => "EACCES",
            14 => "EFAULT",
            16 => "EBUSY",
            17 => "EEXIST",
            22 => "EINVAL",
            28 => "ENOSPC",
            38 => "ENOSYS",
            _ => "error",
        };
        write!(f, "{name} ({})", self.0)
    }
}

fn check(r: i64) -> Result<i64, XenError> {
    if r < 0 {
        Err(XenError(r))
    } else {
        Ok(r)
    }
}

fn hcall(nr: u64, a0: u64, a1: u64) -> i64 {
    arch::hypercall(nr, a0, a1, 0, 0)
}

/// Whether the runtime found Xen and set it up.
pub fn present() -> bool {
    PRESENT.load(Ordering::Acquire)
}

/// An event-channel port of this domain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Port(pub u32);

fn evtchn_op(cmd: u64, arg: &mut [u8]) -> Result<i64, XenError> {
    check(hcall(hc::EVENT_CHANNEL_OP, cmd, arg.as_mut_ptr() as u64))
}

/// Allocates a port that domain `remote` may bind to.
pub fn alloc_unbound(remote: u16) -> Result<Port, XenError> {
    let mut a = [0u8; 8];
    a[0..2].copy_from_slice(&domid::SELF.to_le_bytes());
    a[2..4].copy_from_slice(&remote.to_le_bytes());
    evtchn_op(ev::ALLOC_UNBOUND, &mut a)?;
    Ok(Port(u32::from_le_bytes([a[4], a[5], a[6], a[7]])))
}

/// Connects a new local port to port `remote_port` of domain `remote`.
pub fn bind_interdomain(remote: u16, remote_port: u32) -> Result<Port, XenError> {
    let mut a = [0u8; 12];
    a[0..2].copy_from_slice(&remote.to_le_bytes());
    a[4..8].copy_from_slice(&remote_port.to_le_bytes());
    evtchn_op(ev::BIND_INTERDOMAIN, &mut a)?;
    Ok(Port(u32::from_le_bytes([a[8], a[9], a[10], a[11]])))
}

/// Binds virtual IRQ `virq` (`VIRQ_*`) of vCPU 0 to a new port.
pub fn bind_virq(virq: u32) -> Result<Port, XenError> {
    let mut a = [0u8; ev::BIND_VIRQ_SIZE];
    a[0..4].copy_from_slice(&virq.to_le_bytes());
    evtchn_op(ev::BIND_VIRQ, &mut a)?;
    Ok(Port(u32::from_le_bytes([a[8], a[9], a[10], a[11]])))
}

/// Sends an event on `port` (errors are ignored: a notification to a closed peer is lost, as
/// on Xen).
pub fn notify(port: u32) {
    let mut a = port.to_le_bytes();
    let _ = evtchn_op(ev::SEND, &mut a);
}

impl Port {
    /// Notifies the other end.
    pub fn send(self) -> Result<(), XenError> {
        let mut a = self.0.to_le_bytes();
        evtchn_op(ev::SEND, &mut a).map(drop)
    }

    /// Whether an event arrived since the last `take`/`wait`, consuming it.
    pub fn take(self) -> bool {
        FIRED.take(self.0)
    }

    /// Waits for an event on this port (returns at once if one arrived since the last
    /// `take`/`wait`).
    pub fn wait(self) {
        arch::wait_until(|| FIRED.peek(self.0));
        FIRED.take(self.0);
    }

    /// Waits for an event or until counter value `deadline`; returns whether the event came.
    pub fn wait_until(self, deadline: u64) -> bool {
        crate::time::arm_deadline(deadline);
        arch::wait_until(|| FIRED.peek(self.0) || arch::counter() >= deadline);
        FIRED.take(self.0)
    }

    /// Unmasks the port (delivering an event that arrived while masked).
    pub fn unmask(self) -> Result<(), XenError> {
        let mut a = self.0.to_le_bytes();
        evtchn_op(ev::UNMASK, &mut a).map(drop)
    }

    /// Closes the port.
    pub fn close(self) -> Result<(), XenError> {
        let mut a = self.0.to_le_bytes();
        evtchn_op(ev::CLOSE, &mut a).map(drop)
    }
}

/// `SCHEDOP_yield`.
pub fn yield_cpu() {
    hcall(hc::SCHED_OP, sched::YIELD, 0);
}

/// Writes through `HYPERVISOR_console_io` (the hypervisor may refuse; output is then lost).
pub fn console_io_write(bytes: &[u8]) {
    arch::hypercall(hc::CONSOLE_IO, xen_abi::console_io::WRITE, bytes.len() as u64, bytes.as_ptr() as u64, 0);
}

/// Why a domain shuts down.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShutdownReason {
    /// Power off.
    Poweroff,
    /// Restart.
    Reboot,
    /// Crashed.
    Crash,
    /// Suspend (`hypctl save`): the domain's state is kept and it resumes later, maybe on
    /// another board ([`Xen::suspend`]).
    Suspend,
}

/// `SCHEDOP_shutdown`: returns only if the hypervisor refused.
pub fn shutdown(r: ShutdownReason) -> XenError {
    let code = match r {
        ShutdownReason::Poweroff => sched::SHUTDOWN_POWEROFF,
        ShutdownReason::Reboot => sched::SHUTDOWN_REBOOT,
        ShutdownReason::Crash => sched::SHUTDOWN_CRASH,
        ShutdownReason::Suspend => sched::SHUTDOWN_SUSPEND,
    };
    let a = code.to_le_bytes();
    XenError(hcall(hc::SCHED_OP, sched::SHUTDOWN, a.as_ptr() as u64))
}

fn watchdog_call(id: u32, timeout: u32) -> Result<i64, XenError> {
    let mut a = [0u8; 8];
    a[0..4].copy_from_slice(&id.to_le_bytes());
    a[4..8].copy_from_slice(&timeout.to_le_bytes());
    check(hcall(hc::SCHED_OP, sched::WATCHDOG, a.as_ptr() as u64))
}

/// A hypervisor watchdog (`SCHEDOP_watchdog`): unless it is kicked within its timeout, the
/// domain counts as crashed and its deployment's `on_crash` policy applies (e.g. a restart).
/// A domain may have several (a hung subsystem each).
#[derive(Debug)]
pub struct Watchdog {
    id: u32,
    timeout: u32,
    next_kick: u64,
}

impl Watchdog {
    /// Arms a new watchdog with `timeout_s` seconds (at least 1).
    pub fn new(timeout_s: u32) -> Result<Self, XenError> {
        let timeout = timeout_s.max(1);
        let id = watchdog_call(0, timeout)? as u32;
        Ok(Self { id, timeout, next_kick: 0 })
    }
    /// Its id (from 1).
    pub fn id(&self) -> u32 {
        self.id
    }
    /// Kicks it: the timeout starts again. Cheap enough for every turn of a loop: the
    /// hypercall is made at most four times per timeout.
    pub fn kick(&mut self) {
        let now = arch::counter();
        if now < self.next_kick {
            return;
        }
        self.next_kick = now + u64::from(self.timeout) * arch::counter_freq() / 4;
        let _ = watchdog_call(self.id, self.timeout);
    }
    /// Stops it.
    pub fn stop(self) -> Result<(), XenError> {
        watchdog_call(self.id, 0).map(drop)
    }
}

fn add_to_physmap(space: u32, idx: u64, gpfn: u64) -> Result<(), XenError> {
    let mut a = [0u8; memory::ADD_TO_PHYSMAP_SIZE];
    a[0..2].copy_from_slice(&domid::SELF.to_le_bytes());
    a[4..8].copy_from_slice(&space.to_le_bytes());
    a[8..16].copy_from_slice(&idx.to_le_bytes());
    a[16..24].copy_from_slice(&gpfn.to_le_bytes());
    check(hcall(hc::MEMORY_OP, memory::ADD_TO_PHYSMAP, a.as_mut_ptr() as u64)).map(drop)
}

fn hvm_param(index: u32) -> Result<u64, XenError> {
    let mut a = [0u8; hvm::PARAM_SIZE];
    a[0..2].copy_from_slice(&domid::SELF.to_le_bytes());
    a[4..8].copy_from_slice(&index.to_le_bytes());
    check(hcall(hc::HVM_OP, hvm::GET_PARAM, a.as_mut_ptr() as u64))?;
    Ok(u64::from_le_bytes(a[8..16].try_into().unwrap_or([0; 8])))
}

/// Handles an upcall on the event PPI: records every port it delivers.
pub(crate) fn upcall() {
    let si = SHARED_INFO.load(Ordering::Acquire);
    if si == 0 {
        return;
    }
    let p = SharedPage::at(si);
    let bytes = p.bytes(shared::VCPU_UPCALL_PENDING as usize, 1);
    let v = SharedView {
        upcall_pending: &bytes[0],
        pending_sel: p.u64_at(shared::VCPU_PENDING_SEL as usize),
        pending: p.words64(shared::EVTCHN_PENDING as usize),
        mask: p.words64(shared::EVTCHN_MASK as usize),
    };
    events::drain(&v, |port| FIRED.set(port));
}

/// The xenstore ring and its port.
pub struct StoreRing {
    page: SharedPage,
    port: Port,
}

impl StoreRing {
    fn req(&self) -> ByteRing<'static> {
        ByteRing::new(
            self.page.bytes(xs::REQ, xs::RING_SIZE as usize),
            self.page.u32_at(xs::REQ_CONS),
            self.page.u32_at(xs::REQ_PROD),
        )
    }
    fn rsp(&self) -> ByteRing<'static> {
        ByteRing::new(
            self.page.bytes(xs::RSP, xs::RING_SIZE as usize),
            self.page.u32_at(xs::RSP_CONS),
            self.page.u32_at(xs::RSP_PROD),
        )
    }
}

impl Transport for StoreRing {
    fn send(&mut self, bytes: &[u8]) -> usize {
        let n = self.req().write(bytes).unwrap_or(0);
        if n > 0 {
            notify(self.port.0);
        }
        n
    }
    fn recv(&mut self, out: &mut [u8]) -> usize {
        let n = self.rsp().read(out).unwrap_or(0);
        if n > 0 {
            notify(self.port.0);
        }
        n
    }
    fn wait(&mut self) {
        let rsp = self.rsp();
        arch::wait_until(|| FIRED.peek(self.port.0) || rsp.pending().is_ok_and(|n| n > 0));
        FIRED.take(self.port.0);
    }
}

/// A grant of another domain mapped into our extended region.
#[derive(Debug)]
pub struct Mapping {
    /// Where the page appears in our address space.
    pub addr: u64,
    handle: u32,
    slot: usize,
}

impl Mapping {
    /// The mapped page.
    pub fn page(&self) -> SharedPage {
        SharedPage::at(self.addr)
    }
}

/// What the runtime set up on Xen.
pub struct Xen {
    /// Xen's version (major, minor) from `XENVER_version`.
    pub version: (u32, u32),
    /// The xenstore connection, when this Xen offers one.
    pub store: Option<Xenstore<StoreRing>>,
    /// Our domain id, once known (from xenstore's `domid`).
    pub domid: Option<u16>,
    grants: GrantTable<'static>,
    map_base: u64,
    map_slots: Vec<bool>,
    /// Counter value before which [`Xen::control_request`] does not ask xenstore again.
    control_next: u64,
    /// Ticks of our counter between the last suspend and its resume.
    suspended_ticks: u64,
    /// A watch on `control/shutdown` is registered.
    control_watched: bool,
    /// `/hypervisor`'s regions and the end of RAM, for [`Xen::suspend`]'s set-up again.
    regs: Vec<(u64, u64)>,
    ram_end: u64,
}

/// A Xen setup failure.
#[derive(Debug)]
pub enum SetupError {
    /// `/hypervisor` has no usable grant window.
    NoGrantWindow,
    /// A hypercall failed.
    Hypercall(&'static str, XenError),
}

impl core::fmt::Display for SetupError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::NoGrantWindow => write!(f, "/hypervisor has no grant-table window"),
            Self::Hypercall(w, e) => write!(f, "{w} failed: {e}"),
        }
    }
}

/// Sets Xen up: version, `shared_info`, the grant table, the xenstore ring, and the PV console
/// when offered (the console switches to it). `ram_end` bounds where grant mappings may go.
pub fn init(regs: &[(u64, u64)], ram_end: u64) -> Result<Xen, SetupError> {
    let v = hcall(hc::XEN_VERSION, xen_abi::version::VERSION, 0);
    let version = ((v as u64 >> 16) as u32, (v as u64 & 0xffff) as u32);

    let (grants, map_base, store) = setup(regs, ram_end)?;
    Ok(Xen {
        version,
        store,
        domid: None,
        grants,
        map_base,
        map_slots: Vec::new(),
        control_next: 0,
        suspended_ticks: 0,
        control_watched: false,
        regs: regs.to_vec(),
        ram_end,
    })
}

type Setup = (GrantTable<'static>, u64, Option<Xenstore<StoreRing>>);

/// What a domain sets up with Xen at boot and again after a resume: `shared_info`, the grant
/// table's frames, the xenstore ring and the PV console from the HVM parameters.
/// Grant-table frames the runtime maps.
const GRANT_FRAMES: u64 = 2;

fn setup(regs: &[(u64, u64)], ram_end: u64) -> Result<Setup, SetupError> {
    let si = arch::shared_info_page();
    add_to_physmap(memory::SPACE_SHARED_INFO, 0, si >> 12).map_err(|e| SetupError::Hypercall("shared_info", e))?;
    SHARED_INFO.store(si, Ordering::Release);

    let &(gbase, gsize) = regs.first().ok_or(SetupError::NoGrantWindow)?;
    if gbase == 0 || !gbase.is_multiple_of(4096) || gsize < 4096 {
        return Err(SetupError::NoGrantWindow);
    }
    // Two frames (1,024 entries): blkfront's indirect requests alone keep 520 granted.
    let frames = (gsize / 4096).min(GRANT_FRAMES);
    for f in 0..frames {
        add_to_physmap(memory::SPACE_GRANT_TABLE, f, (gbase >> 12) + f)
            .map_err(|e| SetupError::Hypercall("grant table", e))?;
    }
    let grants = GrantTable::new(SharedPage::at(gbase).frame_words(frames as usize));

    // Grant mappings go to the first extended region our page tables map as normal memory.
    let mapped = |a: u64| {
        (0x4000_0000..0x1_0000_0000).contains(&a)
            || (0x2_0000_0000..0x2_4000_0000).contains(&a)
            || (0x40_0000_0000..0x40_4000_0000).contains(&a)
    };
    let map_base = regs
        .iter()
        .skip(1)
        .map(|&(b, s)| (b.max(ram_end).next_multiple_of(4096), b + s))
        .find(|&(b, e)| e > b + 64 * 4096 && mapped(b) && mapped(b + 64 * 4096 - 1))
        .map_or(0, |(b, _)| b);

    PRESENT.store(true, Ordering::Release);

    let store = match (hvm_param(hvm::PARAM_STORE_PFN), hvm_param(hvm::PARAM_STORE_EVTCHN)) {
        (Ok(pfn), Ok(port)) if pfn != 0 && pfn != u64::MAX && pfn < 1 << 36 && port != 0 => {
            Some(Xenstore::new(StoreRing { page: SharedPage::at(pfn << 12), port: Port(port as u32) }))
        }
        _ => None,
    };
    if let (Ok(pfn), Ok(port)) = (hvm_param(hvm::PARAM_CONSOLE_PFN), hvm_param(hvm::PARAM_CONSOLE_EVTCHN)) {
        if pfn != 0 && pfn != u64::MAX && pfn < 1 << 36 && port != 0 {
            crate::console::set_device(crate::console::Device::Pv(pfn << 12, port as u32));
        }
    }
    Ok((grants, map_base, store))
}

impl Xen {
    /// Suspends the domain (Xen's protocol, as the control domain's `hypctl save` asks through
    /// `control/shutdown = suspend`): the caller has quiesced its frontends; the hypervisor
    /// keeps our state; when a restore resumes it (here or on another board) this returns
    /// `Ok(true)` once `shared_info`, the grant table, the xenstore ring and the console are set
    /// up again and the GIC is configured as at boot. The caller then reconnects its frontends
    /// (their backends are new). `Ok(false)`: the suspend was cancelled and nothing changed.
    pub fn suspend(&mut self) -> Result<bool, XenError> {
        let _ = self.store.as_mut().map(|s| s.write("control/shutdown", ""));
        let before = arch::counter();
        let r = shutdown(ShutdownReason::Suspend);
        // The first instruction after the resume: the gap on our own counter is how long we
        // were stopped (a migration moves the counter on by the time that passed).
        self.suspended_ticks = arch::counter().wrapping_sub(before);
        match r.0 {
            0 => {}
            1 => return Ok(false),
            _ => return Err(r),
        }
        // Resumed in a new domain: its event channels, grants and rings are new.
        FIRED.clear();
        crate::rt::reinit_gic();
        let (grants, map_base, store) = setup(&self.regs, self.ram_end).map_err(|e| match e {
            SetupError::Hypercall(_, x) => x,
            SetupError::NoGrantWindow => XenError(-22),
        })?;
        (self.grants, self.map_base, self.store) = (grants, map_base, store);
        self.map_slots.clear();
        self.control_next = 0;
        self.control_watched = false; // the new xenstore connection has no watch
        Ok(true)
    }

    /// Microseconds our own counter moved between the last [`Xen::suspend`]'s hypercall and
    /// its resume: the downtime as the guest saw it (0 before any suspend).
    pub fn suspended_us(&self) -> u64 {
        (u128::from(self.suspended_ticks) * 1_000_000 / u128::from(arch::counter_freq().max(1))) as u64
    }

    /// What the control domain asks of us through `control/shutdown` (Xen's protocol, as
    /// Linux's `manage.c` honours it): `poweroff`/`halt` or `reboot`, acknowledged by writing
    /// the node empty. A xenstore watch on the node tells when it changes (checking for its
    /// event reads shared memory only), with a read every second besides, so an application
    /// loop may call it on every turn; `None` without xenstore or when nothing is asked.
    pub fn control_request(&mut self) -> Option<ShutdownReason> {
        const TOKEN: &str = "ferrum-rt-control";
        let st = self.store.as_mut()?;
        if !self.control_watched {
            self.control_watched = st.watch("control/shutdown", TOKEN).is_ok();
        }
        let fired = self.control_watched && st.take_watch(TOKEN).unwrap_or(false);
        let now = arch::counter();
        if !fired && now < self.control_next {
            return None;
        }
        self.control_next = now + arch::counter_freq();
        let r = match st.read("control/shutdown").ok()?.as_str() {
            "poweroff" | "halt" => ShutdownReason::Poweroff,
            "reboot" => ShutdownReason::Reboot,
            "suspend" => ShutdownReason::Suspend,
            _ => return None,
        };
        let _ = st.write("control/shutdown", "");
        Some(r)
    }

    /// Grants `dom` access to our page `page` (read-only when `readonly`).
    pub fn grant(&mut self, dom: u16, page: SharedPage, readonly: bool) -> Result<GrantRef, GrantError> {
        self.grants.grant(dom, (page.addr() >> 12) as u32, readonly)
    }

    /// The grant entry's flags (`GTF_reading`/`GTF_writing` while the peer has it mapped).
    pub fn grant_flags(&self, r: GrantRef) -> u16 {
        self.grants.flags(r)
    }

    /// Takes a grant back; [`GrantError::InUse`] while the peer still has it mapped.
    pub fn revoke(&mut self, r: GrantRef) -> Result<(), GrantError> {
        self.grants.revoke(r)
    }

    /// Maps domain `dom`'s grant `r` into our extended region. Errors are `GNTST_*` statuses.
    pub fn map(&mut self, dom: u16, r: GrantRef, readonly: bool) -> Result<Mapping, i16> {
        if self.map_base == 0 {
            return Err(gt::GNTST_NO_DEVICE_SPACE);
        }
        let slot = match self.map_slots.iter().position(|used| !used) {
            Some(s) => s,
            None if self.map_slots.len() < 64 => {
                self.map_slots.push(false);
                self.map_slots.len() - 1
            }
            None => return Err(gt::GNTST_NO_DEVICE_SPACE),
        };
        let addr = self.map_base + slot as u64 * 4096;
        let mut a = [0u8; gt::MAP_SIZE];
        a[0..8].copy_from_slice(&addr.to_le_bytes());
        let flags = gt::GNTMAP_HOST_MAP | if readonly { gt::GNTMAP_READONLY } else { 0 };
        a[8..12].copy_from_slice(&flags.to_le_bytes());
        a[12..16].copy_from_slice(&r.0.to_le_bytes());
        a[16..18].copy_from_slice(&dom.to_le_bytes());
        // gnttab_map_grant_ref: host_addr, flags, ref, dom; out: status @18, handle @20.
        if arch::hypercall(hc::GRANT_TABLE_OP, gt::MAP_GRANT_REF, a.as_mut_ptr() as u64, 1, 0) != 0 {
            return Err(gt::GNTST_GENERAL_ERROR);
        }
        let status = i16::from_le_bytes([a[18], a[19]]);
        if status != gt::GNTST_OKAY {
            return Err(status);
        }
        self.map_slots[slot] = true;
        Ok(Mapping { addr, handle: u32::from_le_bytes([a[20], a[21], a[22], a[23]]), slot })
    }

    /// Unmaps a grant mapping. Errors are `GNTST_*` statuses.
    pub fn unmap(&mut self, m: Mapping) -> Result<(), i16> {
        let mut a = [0u8; gt::UNMAP_SIZE];
        a[0..8].copy_from_slice(&m.addr.to_le_bytes());
        a[16..20].copy_from_slice(&m.handle.to_le_bytes());
        // gnttab_unmap_grant_ref: host_addr, dev_bus_addr, handle @16; out: status @20.
        if arch::hypercall(hc::GRANT_TABLE_OP, gt::UNMAP_GRANT_REF, a.as_mut_ptr() as u64, 1, 0) != 0 {
            return Err(gt::GNTST_GENERAL_ERROR);
        }
        let status = i16::from_le_bytes([a[20], a[21]]);
        if status != gt::GNTST_OKAY {
            return Err(status);
        }
        self.map_slots[m.slot] = false;
        Ok(())
    }
}
