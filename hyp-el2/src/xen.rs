//! The Xen guest ABI for Xen-aware domains: hypercall dispatch (`hvc #0xEA1`, number in x16,
//! arguments x0–x4, result in x0), guest-virtual argument access, the per-domain Xen pages
//! (PV console ring, xenstore ring, grant-table frames), event-channel delivery through
//! shared_info / vcpu_info and PPI 31, the PV console backend, the xenstore service, and the
//! memory_op reservation calls (ballooning; stage-2 work in `p2m`). Grant map/unmap/copy are
//! dispatched to `grant`.
//!
//! Decisions live in host-tested crates: port states and the 2-level delivery rules in
//! `hyp_core::evtchn`, the store in `xenstore`, layouts in `xen_abi`. This module moves bytes
//! between them and guest memory and validates every guest-controlled value on the way:
//! pointers are translated through the guest's stage-1 with its own permissions and must land
//! in its RAM or its Xen pages; ring indices are checked against the ring size.
//!
//! Invariants: lock order is `EVTCHN`, then `STORE`, then a vGIC lock; the hypervisor never
//! keeps a guest virtual address; only a domain's own memory is ever touched on its behalf.

use crate::console::{domain_line, hprintln};
use crate::domain::{self, config, DomainCfg};
use crate::exceptions::GuestRegs;
use crate::sync::SpinLock;
use crate::{arch, mm};
use aarch64_cpu::registers::{Readable, CNTFRQ_EL0};
use alloc::vec::Vec;
use core::ptr::addr_of;
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use hyp_core::evtchn::{self, domid_of, index_of, EventWords, Service, Table, Target};
use hyp_core::guestdt::GRANT_FRAMES;
use hyp_core::plan::{MAX_DOMAINS, MAX_VCPUS};
use hyp_core::vuart::LineBuf;
use xen_abi::{errno, layout, shared, PAGE_SIZE};
use xenstore::{Perm, Store, PERM_READ, PERM_WRITE, TOOLSTACK};

/// Xen pages per domain: console ring, xenstore ring, grant frames.
const PAGES: usize = 2 + GRANT_FRAMES as usize;
const CONSOLE_PAGE: usize = 0;
const STORE_PAGE: usize = 1;

#[repr(C, align(4096))]
struct XenPages([[[u8; 4096]; PAGES]; MAX_DOMAINS]);

static mut XEN_PAGES: XenPages = XenPages([[[0; 4096]; PAGES]; MAX_DOMAINS]);

/// Physical address of Xen page `i` of domain `d`.
fn page_pa(d: usize, i: usize) -> u64 {
    // SAFETY: only the address is taken.
    unsafe { addr_of!(XEN_PAGES.0[d][i]) as u64 }
}

/// Per-domain Xen state that hypercalls change.
struct XenDom {
    shared_info: AtomicU64,
    vcpu_info: [AtomicU64; MAX_VCPUS],
    store_port: AtomicU64,
    console_port: AtomicU64,
}

static XD: [XenDom; MAX_DOMAINS] = [const {
    XenDom {
        shared_info: AtomicU64::new(0),
        vcpu_info: [const { AtomicU64::new(0) }; MAX_VCPUS],
        store_port: AtomicU64::new(0),
        console_port: AtomicU64::new(0),
    }
}; MAX_DOMAINS];

static EVTCHN: SpinLock<Option<Table>> = SpinLock::new(None);
static STORE: SpinLock<Option<Store>> = SpinLock::new(None);
static CONSOLE_LINES: [SpinLock<LineBuf>; MAX_DOMAINS] = [const { SpinLock::new(LineBuf::new()) }; MAX_DOMAINS];

/// Physical address of entry `gref` (v1, 8 bytes) of domain `d`'s grant table.
pub fn grant_entry_pa(d: usize, gref: u32) -> u64 {
    let per = xen_abi::gnttab::ENTRIES_PER_FRAME;
    page_pa(d, 2 + (gref / per) as usize) + u64::from(gref % per) * xen_abi::gnttab::ENTRY_SIZE as u64
}

/// Stage-2 mappings of a Xen-aware domain's Xen pages: (IPA, PA, size), as normal memory.
pub fn stage2_pages(d: usize) -> Vec<(u64, u64, u64)> {
    let mut v = Vec::new();
    v.push((layout::MAGIC_BASE, page_pa(d, CONSOLE_PAGE), PAGE_SIZE));
    v.push((layout::MAGIC_BASE + PAGE_SIZE, page_pa(d, STORE_PAGE), PAGE_SIZE));
    for f in 0..GRANT_FRAMES as usize {
        v.push((layout::GNTTAB_BASE + f as u64 * PAGE_SIZE, page_pa(d, 2 + f), PAGE_SIZE));
    }
    v
}

/// IPA ranges a Xen-aware domain gets besides its RAM (for overlap checks).
pub fn reserved_ipas() -> [(u64, u64); 3] {
    [
        (layout::GNTTAB_BASE, u64::from(GRANT_FRAMES) * PAGE_SIZE),
        (layout::MAGIC_BASE, 2 * PAGE_SIZE),
        (layout::EXT_BASE, layout::EXT_SIZE),
    ]
}

/// Sets up event channels, the store and each Xen-aware domain's ports and xenstore tree.
pub fn init(cfg: &[DomainCfg]) {
    let control = cfg.iter().position(|c| c.xen && c.linux);
    CONTROL.store(control.unwrap_or(usize::MAX), Ordering::Relaxed);
    let mut t = Table::new(cfg.len());
    let mut s = Store::new(xenstore::Quota::default());
    for (d, c) in cfg.iter().enumerate() {
        if !c.xen {
            write_entry(&mut s, d, c); // listed for the control domain's tools, no connection
            continue;
        }
        bind_services(&mut t, d);
        write_tree(&mut s, d, c);
    }
    for (d, c) in cfg.iter().enumerate() {
        if c.lifecycle.autostart {
            write_pv(&mut s, d, c);
        } // else when it starts (`reset` writes them)
        write_status(&mut s, d, c);
    }
    // The upper nodes list every domain: readable by the control domain (not the others).
    let mut upper = alloc::vec![Perm { dom: TOOLSTACK, access: 0 }];
    upper.extend(control.map(|c| Perm { dom: domid_of(c), access: PERM_READ }));
    for p in ["/", "/local", "/local/domain", "/vm"] {
        s.tool_set_perms(p, &upper);
    }
    *EVTCHN.lock() = Some(t);
    *STORE.lock() = Some(s);
    crate::grant::init();
}

/// Binds domain `d`'s xenstore and console ports to the hypervisor's services and records
/// them for its HVM params.
fn bind_services(t: &mut Table, d: usize) {
    let store = t.bind_service(d, Service::Store).unwrap_or(0);
    let console = t.bind_service(d, Service::Console).unwrap_or(0);
    XD[d].store_port.store(u64::from(store), Ordering::Relaxed);
    XD[d].console_port.store(u64::from(console), Ordering::Relaxed);
}

/// The control domain: the first Xen-aware Linux domain. Besides its own subtree it may read
/// every domain's (so `xenstore-ls` there shows every domain, and its backends can read their
/// frontends' entries); it writes only where a domain's permissions let it.
pub fn control_domain() -> Option<usize> {
    Some(CONTROL.load(Ordering::Relaxed)).filter(|&d| d < MAX_DOMAINS)
}

/// Index of the control domain (`usize::MAX`: none), set by [`init`].
static CONTROL: AtomicUsize = AtomicUsize::new(usize::MAX);

/// Permissions of a node the toolstack owns and domain `id` (and the control domain) may read.
fn ro_perms(id: u16) -> Vec<Perm> {
    let mut v = alloc::vec![Perm { dom: TOOLSTACK, access: 0 }, Perm { dom: id, access: PERM_READ }];
    if let Some(c) = control_domain().map(domid_of).filter(|&c| c != id) {
        v.push(Perm { dom: c, access: PERM_READ });
    }
    v
}

/// Writes what every domain has in xenstore, Xen-aware or not: its home with name, domid, vm
/// and memory, and its `/vm/<uuid>` entry, all read-only to it.
fn write_entry(s: &mut Store, d: usize, c: &DomainCfg) {
    let id = domid_of(d);
    let home = alloc::format!("/local/domain/{id}");
    let ro = ro_perms(id);
    let kib = alloc::format!("{}", c.memory.size / 1024);
    let idtxt = alloc::format!("{id}");
    let uuid = alloc::format!("00000000-0000-0000-0000-{:012x}", id);
    let vm = alloc::format!("/vm/{uuid}");
    s.tool_write(&alloc::format!("{vm}/uuid"), uuid.as_bytes(), &ro);
    s.tool_write(&alloc::format!("{vm}/name"), c.name().as_bytes(), &ro);
    for (p, v) in [
        ("", ""),
        ("/vm", vm.as_str()),
        ("/name", c.name()),
        ("/domid", idtxt.as_str()),
        ("/memory/static-max", kib.as_str()),
        ("/memory/target", kib.as_str()),
    ] {
        s.tool_write(&alloc::format!("{home}{p}"), v.as_bytes(), &ro);
    }
}

/// Writes Xen-aware domain `d`'s xenstore tree from the plan (docs/xen-abi.md §6.8).
fn write_tree(s: &mut Store, d: usize, c: &DomainCfg) {
    let id = domid_of(d);
    s.introduce(id);
    write_entry(s, d, c);
    let home = alloc::format!("/local/domain/{id}");
    let ro = ro_perms(id);
    let mut own = alloc::vec![Perm { dom: id, access: 0 }];
    own.extend(ro.iter().skip(2).copied());
    // The control domain asks for a shutdown (`hypctl stop`) by writing `control/shutdown`,
    // as Xen's toolstack does.
    let mut shut = alloc::vec![Perm { dom: id, access: 0 }];
    shut.extend(
        control_domain().map(domid_of).filter(|&c| c != id).map(|c| Perm { dom: c, access: PERM_READ | PERM_WRITE }),
    );
    for (p, v, perms) in [
        ("/control", "", &ro),
        ("/control/shutdown", "", &shut),
        ("/control/sysrq", "", &own),
        ("/control/feature-poweroff", "", &own),
        ("/control/feature-reboot", "", &own),
        ("/control/feature-suspend", "", &own),
        ("/control/platform-feature-xs_reset_watches", "1", &ro),
        ("/device", "", &ro),
        ("/data", "", &own),
        ("/drivers", "", &own),
        ("/feature", "", &own),
        ("/attr", "", &own),
        ("/error", "", &own),
    ] {
        s.tool_write(&alloc::format!("{home}{p}"), v.as_bytes(), perms);
    }
}

/// Publishes domain `d`'s name, kind and state under `/ferrum/domain/<id>` for the control
/// domain's `hypctl` (read-only to it, invisible to the others).
fn write_status(s: &mut Store, d: usize, c: &DomainCfg) {
    let mut perms = alloc::vec![Perm { dom: TOOLSTACK, access: 0 }];
    perms.extend(control_domain().map(|c| Perm { dom: domid_of(c), access: PERM_READ }));
    let base = alloc::format!("/ferrum/domain/{}", domid_of(d));
    let kind = if c.linux { "linux" } else { "unikernel" };
    let cpus: Vec<alloc::string::String> = c.pcpus.iter().map(|p| alloc::format!("{p}")).collect();
    for (k, v) in [
        ("name", alloc::string::String::from(c.name())),
        ("kind", kind.into()),
        ("pcpus", cpus.join(",")),
        ("memory-kib", alloc::format!("{}", c.memory.size / 1024)),
        ("state", domain::state_text(d).into()),
        ("restarts", alloc::format!("{}", domain::restarts(d))),
    ] {
        s.tool_write(&alloc::format!("{base}/{k}"), v.as_bytes(), &perms);
    }
    for p in ["/ferrum", "/ferrum/domain", base.as_str()] {
        s.tool_set_perms(p, &perms);
    }
}

/// Frontends whose PV directories wait to be written again (bit per domain index): after a
/// frontend restarts, its backends must first let go of the old device.
static PV_PENDING: AtomicUsize = AtomicUsize::new(0);

/// Writes the PV directories of every pending frontend whose backends no longer watch its old
/// devices (Linux's backends unregister a device whose frontend directory vanished; writing
/// the new one earlier would let the old device read `state = 1` and stay as it was).
fn write_pending_pv(s: &mut Store) {
    let pending = PV_PENDING.load(Ordering::Acquire);
    if pending == 0 {
        return;
    }
    for (d, c) in config().domains.iter().enumerate().filter(|(d, _)| pending & (1 << d) != 0) {
        let f = domid_of(d);
        let busy =
            c.pv.iter().any(|p| s.watches_below(domid_of(p.backend), &hyp_core::pvdev::frontend_path(f, &p.dev)));
        if !busy {
            PV_PENDING.fetch_and(!(1 << d), Ordering::AcqRel);
            write_pv(s, d, c);
        }
    }
}

/// Writes the frontend and backend directories of frontend `d`'s PV devices, owned by their
/// side and readable by the other (as libxl sets them).
fn write_pv(s: &mut Store, d: usize, c: &DomainCfg) {
    let f = domid_of(d);
    for p in c.pv.iter() {
        let b = domid_of(p.backend);
        let (fd, bd) = hyp_core::pvdev::dirs(f, b, &p.dev);
        for (dir, owner, other) in [(&fd, f, b), (&bd, b, f)] {
            let perms = [Perm { dom: owner, access: 0 }, Perm { dom: other, access: PERM_READ }];
            s.tool_write(&dir.path, b"", &perms);
            for (k, v) in &dir.keys {
                s.tool_write(&alloc::format!("{}/{k}", dir.path), v.as_bytes(), &perms);
            }
        }
    }
}

// ----- guest memory -----

/// PA of guest IPA `ipa` of domain `d` when it is its RAM or one of its Xen pages.
fn ipa_to_pa(d: usize, ipa: u64) -> Option<u64> {
    let c = &config().domains[d];
    if c.ipa_in_ram(ipa) {
        return Some(c.ipa_to_pa(ipa));
    }
    if !c.xen {
        return None;
    }
    stage2_pages(d).iter().find(|m| ipa >= m.0 && ipa - m.0 < m.2).map(|m| m.1 + (ipa - m.0))
}

/// Walks `[va, va+len)` of the running domain `d` page by page through its stage-1 (with
/// write permission when `write`), calling `f(pa, offset, n)` for each piece that lands in its
/// RAM or Xen pages.
fn guest_pages(d: usize, va: u64, len: usize, write: bool, mut f: impl FnMut(u64, usize, usize)) -> Result<(), i64> {
    let mut done = 0;
    while done < len {
        let a = va.checked_add(done as u64).ok_or(-errno::EFAULT)?;
        let n = ((PAGE_SIZE - (a & 0xfff)) as usize).min(len - done);
        let ipa = arch::guest_va_to_ipa(a, write).ok_or(-errno::EFAULT)?;
        f(ipa_to_pa(d, ipa).ok_or(-errno::EFAULT)?, done, n);
        done += n;
    }
    Ok(())
}

/// Copies `buf.len()` bytes from guest virtual address `va` of the running domain `d`.
pub fn copy_from_guest(d: usize, va: u64, buf: &mut [u8]) -> Result<(), i64> {
    // SAFETY: each piece lies in one page of the domain's RAM or Xen pages.
    guest_pages(d, va, buf.len(), false, |pa, off, n| unsafe { mm::read_phys(pa, &mut buf[off..off + n]) })
}

/// Copies `buf` to guest virtual address `va` of the running domain `d`.
pub fn copy_to_guest(d: usize, va: u64, buf: &[u8]) -> Result<(), i64> {
    guest_pages(d, va, buf.len(), true, |pa, off, n| {
        // SAFETY: as in `copy_from_guest`; the domain owns this memory.
        unsafe { mm::write_phys(pa, &buf[off..off + n]) };
        crate::p2m::mark_dirty_pa(pa);
    })
}

// ----- rings in the Xen pages -----

/// Copies `out.len()` bytes of a byte ring at `data` (`size` a power of two) from index `from`.
fn ring_read(data: u64, size: u32, from: u32, out: &mut [u8]) {
    let start = (from & (size - 1)) as usize;
    let first = out.len().min(size as usize - start);
    // SAFETY: both pieces lie inside the ring, which is one of our Xen pages.
    unsafe {
        mm::read_phys(data + start as u64, &mut out[..first]);
        mm::read_phys(data, &mut out[first..]);
    }
}

/// Copies `bytes` into a byte ring at `data` from index `from`.
fn ring_write(data: u64, size: u32, from: u32, bytes: &[u8]) {
    let start = (from & (size - 1)) as usize;
    let first = bytes.len().min(size as usize - start);
    // SAFETY: as in `ring_read`.
    unsafe {
        mm::write_phys(data + start as u64, &bytes[..first]);
        mm::write_phys(data, &bytes[first..]);
    }
}

/// (consumer, producer) indices of a ring in one of our Xen pages.
fn ring_indices(page: u64, cons: usize, prod: usize) -> (u32, u32) {
    // SAFETY: both indices lie in the page, which is ours and mapped.
    unsafe { (arch::shared_load_u32(page + cons as u64), arch::shared_load_u32(page + prod as u64)) }
}

/// Publishes a ring index in one of our Xen pages.
fn ring_set(page: u64, at: usize, v: u32) {
    // SAFETY: as in `ring_indices`.
    unsafe { arch::shared_store_u32(page + at as u64, v) };
}

// ----- event delivery -----

/// shared_info and one vCPU's vcpu_info of a domain, as physical addresses.
struct Words {
    si: u64,
    vi: u64,
}

impl Words {
    /// Address of the 64-bit word holding bit `bit` of the array at `off`, and its mask.
    #[inline]
    fn word(&self, off: u64, bit: u32) -> (u64, u64) {
        (self.si + off + u64::from(bit / 64) * 8, 1 << (bit % 64))
    }
    #[inline]
    fn test(&self, off: u64, bit: u32) -> bool {
        let (w, m) = self.word(off, bit);
        // SAFETY: `si` is a page of the domain's RAM (checked at registration).
        unsafe { arch::shared_load_u64(w) & m != 0 }
    }
}

impl EventWords for Words {
    #[inline]
    fn set_pending(&mut self, bit: u32) -> bool {
        let (w, m) = self.word(shared::EVTCHN_PENDING, bit);
        // SAFETY: as in `test`.
        unsafe { arch::shared_fetch_or(w, m) & m != 0 }
    }
    #[inline]
    fn pending(&self, bit: u32) -> bool {
        self.test(shared::EVTCHN_PENDING, bit)
    }
    #[inline]
    fn masked(&self, bit: u32) -> bool {
        self.test(shared::EVTCHN_MASK, bit)
    }
    #[inline]
    fn clear_mask(&mut self, bit: u32) -> bool {
        let (w, m) = self.word(shared::EVTCHN_MASK, bit);
        // SAFETY: as in `test`.
        unsafe { arch::shared_fetch_and(w, !m) & m != 0 }
    }
    #[inline]
    fn set_sel(&mut self, bit: u32) -> bool {
        // SAFETY: `vi` is 8-byte aligned inside one page of the domain's RAM.
        unsafe { arch::shared_fetch_or(self.vi + shared::VCPU_PENDING_SEL, 1 << bit) & (1 << bit) != 0 }
    }
    #[inline]
    fn set_upcall(&mut self) -> bool {
        // SAFETY: as above.
        unsafe { arch::shared_swap_u8(self.vi + shared::VCPU_UPCALL_PENDING, 1) != 0 }
    }
}

#[inline]
fn words(d: usize, v: usize) -> Option<Words> {
    let si = XD[d].shared_info.load(Ordering::Acquire);
    if si == 0 {
        return None;
    }
    let vi = match XD[d].vcpu_info[v].load(Ordering::Acquire) {
        0 if v == 0 => si,
        0 => return None,
        vi => vi,
    };
    Some(Words { si, vi })
}

/// Raises PPI 31 on vCPU `v`. Called on every 0 → 1 edge of `evtchn_upcall_pending` (as
/// Xen's `vcpu_mark_events_pending`), never gated on hypervisor-side state: an extra PPI is
/// harmless (the guest finds nothing to do), a missing one loses events for good. An edge
/// that comes while the guest still handles the last one makes the PPI pending again behind
/// its active state (the list-register merge), so the guest, which clears the flag before it
/// scans, is interrupted again after its EOI; the EOI itself costs no exit.
fn raise_upcall(d: usize, v: usize) {
    crate::irq::raise_hot(d, v, crate::irq::Hot::Upcall);
}

/// Sets `port` of domain `d` pending and raises its upcall if needed.
fn deliver(t: &Table, d: usize, port: u32) {
    let v = t.vcpu(d, port);
    if let Some(mut w) = words(d, v) {
        if evtchn::deliver(&mut w, port) {
            raise_upcall(d, v);
        }
        domain::kick_blocked(d); // a vCPU polling this port wakes even when it is masked
    }
}

/// Forgets a domain's Xen state (restart).
pub fn reset(d: usize) {
    // Its grant table empties first (no new use of its frames can start), then every mapping
    // that involves it is revoked, before its memory is reloaded.
    for f in 0..GRANT_FRAMES as usize {
        // SAFETY: the domain's own grant frame, a hypervisor page; the domain is not running.
        unsafe { mm::zero_phys(page_pa(d, 2 + f), PAGE_SIZE) };
    }
    let n = crate::grant::revoke_all(d);
    if n > 0 {
        hprintln!("domain '{}': {n} grant mapping(s) revoked", config().domains[d].name());
    }
    // It restarts with its whole plan: ring pages empty, no port bound but its xenstore and
    // console ones (new numbers, published again through its HVM params), no watch or
    // transaction, its xenstore home rewritten (memory target back to the plan).
    let c = &config().domains[d];
    if c.xen {
        for page in [CONSOLE_PAGE, STORE_PAGE] {
            // SAFETY: the domain's own ring page, a hypervisor page; the domain is not running.
            unsafe { mm::zero_phys(page_pa(d, page), PAGE_SIZE) };
        }
        *CONSOLE_LINES[d].lock() = LineBuf::new();
        let mut et = EVTCHN.lock();
        let mut st = STORE.lock();
        if let (Some(t), Some(s)) = (et.as_mut(), st.as_mut()) {
            t.reset(d);
            bind_services(t, d);
            let id = domid_of(d);
            s.reset_connection(id);
            s.tool_rm(&alloc::format!("/local/domain/{id}"));
            for p in c.pv.iter() {
                s.tool_rm(&hyp_core::pvdev::backend_path(domid_of(p.backend), id, &p.dev));
            }
            write_tree(s, d, c);
            if !c.pv.is_empty() {
                PV_PENDING.fetch_or(1 << d, Ordering::AcqRel);
                write_pending_pv(s);
            }
            push_store_output(t, s);
        }
    }
    XD[d].shared_info.store(0, Ordering::Release);
    for v in 0..MAX_VCPUS {
        XD[d].vcpu_info[v].store(0, Ordering::Release);
    }
}

/// Domain `d` ended or restarts: the control domain hears of it through `VIRQ_DOM_EXC` when
/// it bound one, as Xen's toolstack domain does.
pub fn domain_changed(d: usize) {
    let cfg = &config().domains[d];
    let et = EVTCHN.lock();
    let Some(t) = et.as_ref() else { return };
    if let Some(s) = STORE.lock().as_mut() {
        write_status(s, d, cfg);
        if cfg.xen && !cfg.pv.is_empty() && !domain::is_running(d) {
            // Its frontends are gone: their backends see the directories vanish and let go.
            s.tool_rm(&alloc::format!("/local/domain/{}/device", domid_of(d)));
        }
        push_store_output(t, s);
    }
    if let Some(c) = control_domain().filter(|&c| c != d) {
        if let Some(p) = t.virq_port(c, xen_abi::evtchn::VIRQ_DOM_EXC, 0) {
            deliver(t, c, p);
        }
    }
}

// ----- PV console -----

/// Emits console bytes of domain `d` (PV ring or `console_io`), tagged line by line.
fn console_out(d: usize, bytes: &[u8]) {
    let name = config().domains[d].name();
    let mut lb = CONSOLE_LINES[d].lock();
    for &b in bytes {
        if let Some(line) = lb.push(b) {
            domain_line(name, line);
        }
    }
}

/// Moves what domain `d` wrote to its console ring to the console multiplexer.
#[inline(never)]
fn drain_console(d: usize) {
    use xen_abi::cons;
    let page = page_pa(d, CONSOLE_PAGE);
    let (c, p) = ring_indices(page, cons::OUT_CONS, cons::OUT_PROD);
    let n = p.wrapping_sub(c);
    if n == 0 || n > cons::OUT_SIZE {
        return; // nothing, or indices the guest corrupted: ignore until it fixes them
    }
    let mut buf = [0u8; cons::OUT_SIZE as usize];
    ring_read(page + cons::OUT as u64, cons::OUT_SIZE, c, &mut buf[..n as usize]);
    console_out(d, &buf[..n as usize]);
    ring_set(page, cons::OUT_CONS, p);
}

/// Whether domain `d` reads its console input from the PV console.
pub fn has_pv_console(d: usize) -> bool {
    config().domains.get(d).is_some_and(|c| c.xen)
}

/// A byte of console input for domain `d`'s PV console.
pub fn console_input(d: usize, b: u8) {
    use xen_abi::cons;
    let page = page_pa(d, CONSOLE_PAGE);
    let (c, p) = ring_indices(page, cons::IN_CONS, cons::IN_PROD);
    if p.wrapping_sub(c) >= cons::IN_SIZE {
        return; // full (or corrupted): the byte is dropped
    }
    ring_write(page + cons::IN as u64, cons::IN_SIZE, p, &[b]);
    ring_set(page, cons::IN_PROD, p.wrapping_add(1));
    let port = XD[d].console_port.load(Ordering::Relaxed) as u32;
    if let Some(t) = EVTCHN.lock().as_ref() {
        deliver(t, d, port);
    }
}

// ----- xenstore -----

/// Serves domain `d`'s request ring, then pushes every domain's pending replies and events.
#[inline(never)]
fn serve_store(t: &Table, d: usize) {
    let mut guard = STORE.lock();
    let Some(s) = guard.as_mut() else { return };
    use xen_abi::xs;
    let page = page_pa(d, STORE_PAGE);
    loop {
        let (c, p) = ring_indices(page, xs::REQ_CONS, xs::REQ_PROD);
        let n = p.wrapping_sub(c);
        if n == 0 || n > xs::RING_SIZE {
            break;
        }
        let mut bytes = [0u8; xs::RING_SIZE as usize];
        ring_read(page + xs::REQ as u64, xs::RING_SIZE, c, &mut bytes[..n as usize]);
        let taken = s.feed(domid_of(d), &bytes[..n as usize]) as u32;
        ring_set(page, xs::REQ_CONS, c.wrapping_add(taken));
        if taken < n {
            break; // its replies are not being read: leave the rest in its ring
        }
    }
    write_pending_pv(s);
    push_store_output(t, s);
}

/// Moves pending xenstore replies and watch events into each domain's response ring.
fn push_store_output(t: &Table, s: &mut Store) {
    use xen_abi::xs;
    let cfg = config();
    for id in s.domains_with_output() {
        let Some(e) = index_of(id, usize::MAX, cfg.domains.len()) else { continue };
        let page = page_pa(e, STORE_PAGE);
        let (c, p) = ring_indices(page, xs::RSP_CONS, xs::RSP_PROD);
        let used = p.wrapping_sub(c);
        if used > xs::RING_SIZE {
            continue;
        }
        let out = s.take_output(id, (xs::RING_SIZE - used) as usize);
        if !out.is_empty() {
            ring_write(page + xs::RSP as u64, xs::RING_SIZE, p, &out);
            ring_set(page, xs::RSP_PROD, p.wrapping_add(out.len() as u32));
            deliver(t, e, XD[e].store_port.load(Ordering::Relaxed) as u32);
        }
    }
}

/// Sets Xen-aware domain `d`'s memory target (KiB): checked against its plan, then written to
/// its `memory/target`, which its balloon driver watches.
pub fn set_memory_target(d: usize, kib: u64) -> Result<(), hyp_core::balloon::TargetError> {
    crate::p2m::set_target(d, kib)?;
    let mut et = EVTCHN.lock();
    let mut st = STORE.lock();
    if let (Some(t), Some(s)) = (et.as_mut(), st.as_mut()) {
        write_target(s, d, kib);
        push_store_output(t, s);
    }
    Ok(())
}

/// Writes domain `d`'s `memory/target` (KiB), which its balloon driver watches.
fn write_target(s: &mut Store, d: usize, kib: u64) {
    let id = domid_of(d);
    let path = alloc::format!("/local/domain/{id}/memory/target");
    s.tool_write(&path, alloc::format!("{kib}").as_bytes(), &ro_perms(id));
}

// ----- hypercalls -----

/// Handles `hvc #0xEA1` from a Xen-aware domain's vCPU (the frame names it): x16 and the
/// argument registers are decoded by `hyp_core::hypercall::decode` (every register-only check
/// done there, host-tested and fuzzed), then the handler runs; the result goes to x0.
#[inline(always)] // the trap entry's fast path; the calls themselves are out of line
pub fn hypercall(regs: &mut GuestRegs) {
    use hyp_core::hypercall::{decode, Call};
    let d = regs.dom;
    let x = [regs.x[0], regs.x[1], regs.x[2], regs.x[3], regs.x[4]];
    regs.x[0] = match decode(regs.x[16], x, || config().domains[d].pcpus.len()) {
        Call::XenVersion { cmd, arg } => xen_version(d, cmd, arg),
        Call::MemoryOp { cmd, arg } => memory_op(d, cmd, arg),
        Call::GrantTableOp { cmd, arg, count } => grant_table_op(d, cmd, arg, count),
        Call::VcpuOp { cmd, vcpu, arg } => vcpu_op(d, &config().domains[d], cmd, vcpu, arg),
        Call::HvmOp { cmd, arg } => hvm_op(d, cmd, arg),
        Call::EventChannelOp { cmd: xen_abi::evtchn::SEND, arg } => evtchn_send(d, arg),
        Call::EventChannelOp { cmd, arg } => event_channel_op(d, &config().domains[d], cmd, arg),
        Call::SchedOp { .. } => {
            // Logged on the way in too: a shutdown or a suspend does not come back here.
            crate::ev!(
                trace,
                "d{=usize}v{=usize} hypercall sched_op ({=u64:#x}, {=u64:#x}) entered",
                d,
                regs.vcpu,
                x[0],
                x[1]
            );
            sched_op(regs)
        }
        Call::ConsoleIo { cmd, count, buf } => console_io(d, cmd, count, buf),
        Call::Domctl { arg } => crate::control::domctl(d, arg),
        Call::Sysctl { arg } => crate::control::sysctl(d, arg),
        Call::Answer(v) => v,
    } as u64;
    crate::ev!(
        trace,
        "d{=usize}v{=usize} hypercall {=istr} ({=u64:#x}, {=u64:#x}, {=u64:#x}) -> {=i64}",
        d,
        regs.vcpu,
        hypercall_name(regs.x[16]),
        x[0],
        x[1],
        x[2],
        regs.x[0] as i64
    );
}

/// A hypercall number's name for the trace (interned: two bytes per frame).
#[cfg(feature = "trace")]
fn hypercall_name(nr: u64) -> defmt::Str {
    use xen_abi::hc as h;
    match nr {
        h::XEN_VERSION => defmt::intern!("xen_version"),
        h::MEMORY_OP => defmt::intern!("memory_op"),
        h::GRANT_TABLE_OP => defmt::intern!("grant_table_op"),
        h::VCPU_OP => defmt::intern!("vcpu_op"),
        h::HVM_OP => defmt::intern!("hvm_op"),
        h::EVENT_CHANNEL_OP => defmt::intern!("event_channel_op"),
        h::SCHED_OP => defmt::intern!("sched_op"),
        h::CONSOLE_IO => defmt::intern!("console_io"),
        h::DOMCTL => defmt::intern!("domctl"),
        h::SYSCTL => defmt::intern!("sysctl"),
        h::VM_ASSIST => defmt::intern!("vm_assist"),
        h::PHYSDEV_OP => defmt::intern!("physdev_op"),
        _ => defmt::intern!("other"),
    }
}

/// A little-endian `u32` at guest virtual address `va` of the running domain `d`: an aligned
/// word in its RAM with one stage-1 translation and one load; anything else through
/// [`copy_from_guest`].
#[inline]
fn read_u32(d: usize, va: u64) -> Result<u32, i64> {
    if va & 3 == 0 {
        if let Some(pa) = arch::guest_va_to_ipa(va, false).and_then(|ipa| ram_pa(d, ipa)) {
            // SAFETY: an aligned word of the domain's own RAM (normal memory, mapped at EL2).
            return Ok(u32::from_le(unsafe { arch::shared_load_u32(pa) }));
        }
    }
    read::<4>(d, va).map(u32::from_le_bytes)
}

/// The physical address of `ipa` when it lies in domain `d`'s RAM.
#[inline]
fn ram_pa(d: usize, ipa: u64) -> Option<u64> {
    let c = config().domains.get(d)?;
    c.ipa_in_ram(ipa).then(|| c.ipa_to_pa(ipa))
}

fn read<const N: usize>(d: usize, va: u64) -> Result<[u8; N], i64> {
    let mut b = [0u8; N];
    copy_from_guest(d, va, &mut b)?;
    Ok(b)
}

/// `xen_version`: the numeric queries are answered at once, the rest copy into the guest.
fn xen_version(d: usize, cmd: u64, arg: u64) -> i64 {
    use xen_abi::version as ver;
    match cmd {
        ver::VERSION => {
            let (maj, min) = ver::REPORTED;
            i64::from((maj << 16) | min)
        }
        ver::PAGESIZE => PAGE_SIZE as i64,
        _ => xen_version_copy(d, cmd, arg),
    }
}

#[inline(never)]
fn xen_version_copy(d: usize, cmd: u64, arg: u64) -> i64 {
    let put = |bytes: &[u8], len: usize| {
        let mut b = alloc::vec![0u8; len];
        let n = bytes.len().min(len - 1);
        b[..n].copy_from_slice(&bytes[..n]);
        copy_to_guest(d, arg, &b).map_or_else(|e| e, |()| 0)
    };
    use xen_abi::version as ver;
    match cmd {
        ver::GET_FEATURES => {
            let Ok(b) = read::<8>(d, arg) else { return -errno::EFAULT };
            if xen_abi::rd32(&b, 0) != Some(0) {
                return -errno::EINVAL;
            }
            // A direct-mapped (Linux) domain is told so: its swiotlb-xen then hands devices the
            // machine address of grant-mapped pages (their `dev_bus_addr`), so a passthrough
            // disk or NIC can DMA into a frontend's granted page.
            let mapping = if config().domains[d].linux {
                xen_abi::feature::DIRECT_MAPPED
            } else {
                xen_abi::feature::NOT_DIRECT_MAPPED
            };
            let f = xen_abi::feature::WRITABLE_PAGE_TABLES | xen_abi::feature::AUTO_TRANSLATED_PHYSMAP | mapping;
            copy_to_guest(d, arg.wrapping_add(4), &f.to_le_bytes()).map_or_else(|e| e, |()| 0)
        }
        ver::EXTRAVERSION => put(b".0-ferrum", 16),
        ver::CAPABILITIES => put(b"xen-3.0-aarch64", 1024),
        ver::CHANGESET => put(b"ferrum", 64),
        ver::COMPILE_INFO => put(b"rustc", 144),
        ver::PLATFORM_PARAMETERS => copy_to_guest(d, arg, &[0; 8]).map_or_else(|e| e, |()| 0),
        ver::GUEST_HANDLE => {
            let mut h = [0u8; 16];
            h[14..].copy_from_slice(&domid_of(d).to_be_bytes());
            copy_to_guest(d, arg, &h).map_or_else(|e| e, |()| 0)
        }
        _ => -errno::ENOSYS,
    }
}

/// Most extents one `decrease_reservation` / `populate_physmap` call handles (Linux passes at
/// most one page of frame numbers: 512); the count done is returned, as Xen does.
const MAX_EXTENTS: u64 = 4096;

/// `XENMEM_decrease_reservation` / `XENMEM_populate_physmap` for domain `d` (itself only):
/// returns the number of extents done; stops at the first frame refused.
fn reservation(d: usize, cmd: u64, arg: u64) -> i64 {
    use xen_abi::memory as m;
    let Ok(b) = read::<{ m::RESERVATION_SIZE }>(d, arg) else { return -errno::EFAULT };
    let Some(r) = m::Reservation::parse(&b) else { return -errno::EFAULT };
    if index_of(r.domid, d, config().domains.len()) != Some(d) {
        return -errno::EPERM;
    }
    let start = cmd >> m::MEMOP_EXTENT_SHIFT;
    if start > r.nr_extents {
        return -errno::EINVAL;
    }
    let give = cmd & m::MEMOP_CMD_MASK == m::DECREASE_RESERVATION;
    let c = &config().domains[d];
    let end = r.nr_extents.min(start + MAX_EXTENTS);
    let mut done = start;
    while done < end {
        let Some(va) = done.checked_mul(8).and_then(|o| r.extent_start.checked_add(o)) else { break };
        let Ok(f) = read::<8>(d, va) else { break };
        let gpfn = u64::from_le_bytes(f);
        let moved = if give {
            crate::p2m::give_back(d, gpfn, r.extent_order)
        } else {
            crate::p2m::populate(d, c, gpfn, r.extent_order)
        };
        if moved.is_err() {
            break;
        }
        done += 1;
    }
    if done > start {
        balloon_progress(d);
    }
    done as i64
}

/// Says when a domain's balloon has reached the target the operator set.
fn balloon_progress(d: usize) {
    let Some(f) = crate::p2m::figures(d) else { return };
    if f.populated * 4 == f.target_kib {
        hprintln!(
            "domain '{}': balloon reached its target: {} KiB populated, {} pages given back to its pool (plan {} KiB)",
            config().domains[d].name(),
            f.populated * 4,
            f.plan - f.populated,
            f.plan * 4
        );
    }
}

#[inline(never)]
fn memory_op(d: usize, cmd: u64, arg: u64) -> i64 {
    use xen_abi::memory as m;
    match cmd & m::MEMOP_CMD_MASK {
        m::DECREASE_RESERVATION | m::POPULATE_PHYSMAP => reservation(d, cmd, arg),
        m::CURRENT_RESERVATION | m::MAXIMUM_RESERVATION => {
            let Ok(b) = read::<2>(d, arg) else { return -errno::EFAULT };
            if index_of(u16::from_le_bytes(b), d, config().domains.len()) != Some(d) {
                return -errno::EPERM;
            }
            let Some(f) = crate::p2m::figures(d) else { return -errno::EINVAL };
            if cmd & m::MEMOP_CMD_MASK == m::CURRENT_RESERVATION {
                f.populated as i64
            } else {
                f.plan as i64
            }
        }
        m::ADD_TO_PHYSMAP => {
            let Ok(b) = read::<{ m::ADD_TO_PHYSMAP_SIZE }>(d, arg) else { return -errno::EFAULT };
            let (dom, space) = (xen_abi::rd16(&b, 0).unwrap_or(0), xen_abi::rd32(&b, 4).unwrap_or(u32::MAX));
            let (idx, gpfn) = (xen_abi::rd64(&b, 8).unwrap_or(0), xen_abi::rd64(&b, 16).unwrap_or(0));
            if index_of(dom, d, config().domains.len()) != Some(d) {
                return -errno::EPERM;
            }
            let Some(ipa) = gpfn.checked_mul(PAGE_SIZE) else { return -errno::EINVAL };
            match space {
                m::SPACE_SHARED_INFO if idx == 0 => {
                    let c = &config().domains[d];
                    if !c.ipa_in_ram(ipa) {
                        return -errno::EINVAL;
                    }
                    let pa = c.ipa_to_pa(ipa);
                    if XD[d].shared_info.swap(pa, Ordering::AcqRel) != pa {
                        // As Xen's: a domain's shared_info starts empty (no port pending or
                        // masked), also after a restart or a restore, whose RAM holds the old one.
                        // SAFETY: one page-aligned page of the domain's own RAM (checked above).
                        unsafe { mm::zero_phys(pa & !(PAGE_SIZE - 1), PAGE_SIZE) };
                    }
                    0
                }
                m::SPACE_GRANT_TABLE if idx < u64::from(GRANT_FRAMES) => {
                    // Frames are mapped at boot, each at its place in the grant window.
                    if ipa == layout::GNTTAB_BASE + idx * PAGE_SIZE {
                        0
                    } else {
                        -errno::EINVAL
                    }
                }
                _ => -errno::EINVAL,
            }
        }
        _ => -errno::ENOSYS,
    }
}

#[inline(never)]
fn grant_table_op(d: usize, cmd: u64, arg: u64, count: u64) -> i64 {
    use xen_abi::gnttab as g;
    match cmd {
        g::QUERY_SIZE => {
            if count != 1 {
                return -errno::EINVAL;
            }
            let mut b = [0u8; g::QUERY_SIZE_SIZE];
            if copy_from_guest(d, arg, &mut b).is_err() {
                return -errno::EFAULT;
            }
            xen_abi::wr32(&mut b, 4, GRANT_FRAMES);
            xen_abi::wr32(&mut b, 8, GRANT_FRAMES);
            xen_abi::wr16(&mut b, 12, 0);
            copy_to_guest(d, arg, &b).map_or_else(|e| e, |()| 0)
        }
        g::MAP_GRANT_REF | g::UNMAP_GRANT_REF | g::COPY => crate::grant::batch(d, cmd, arg, count),
        g::SET_VERSION | g::GET_VERSION => {
            let off = if cmd == g::SET_VERSION { 0 } else { 4 };
            copy_to_guest(d, arg.wrapping_add(off), &1u32.to_le_bytes()).map_or_else(|e| e, |()| 0)
        }
        _ => -errno::ENOSYS,
    }
}

#[inline(never)]
fn vcpu_op(d: usize, c: &DomainCfg, cmd: u64, v: usize, arg: u64) -> i64 {
    use xen_abi::vcpu as vc;
    match cmd {
        vc::REGISTER_VCPU_INFO => {
            let Ok(b) = read::<{ vc::REGISTER_VCPU_INFO_SIZE }>(d, arg) else { return -errno::EFAULT };
            let (mfn, off) = (xen_abi::rd64(&b, 0).unwrap_or(0), u64::from(xen_abi::rd32(&b, 8).unwrap_or(0)));
            if off % 8 != 0 || off + shared::VCPU_INFO_SIZE > PAGE_SIZE {
                return -errno::ENXIO;
            }
            let Some(ipa) = mfn.checked_mul(PAGE_SIZE) else { return -errno::EINVAL };
            if !c.ipa_in_ram(ipa) {
                return -errno::EINVAL;
            }
            let pa = c.ipa_to_pa(ipa) + off;
            if XD[d].vcpu_info[v].load(Ordering::Acquire) != 0 {
                return -errno::EBUSY;
            }
            // Carry over what the legacy slot held, then announce a (spurious) event so the
            // guest scans everything once.
            let mut cur = [0u8; shared::VCPU_INFO_SIZE as usize];
            if let Some(w) = words(d, v) {
                // SAFETY: the old vcpu_info lies in the domain's RAM.
                unsafe { mm::read_phys(w.vi, &mut cur) };
            }
            // SAFETY: the new area lies in one page of the domain's RAM.
            unsafe { mm::write_phys(pa, &cur) };
            XD[d].vcpu_info[v].store(pa, Ordering::Release);
            // SAFETY: as above.
            unsafe {
                arch::shared_fetch_or(pa + shared::VCPU_PENDING_SEL, u64::MAX);
                arch::shared_swap_u8(pa + shared::VCPU_UPCALL_PENDING, 1);
            }
            raise_upcall(d, v);
            0
        }
        vc::REGISTER_RUNSTATE_MEMORY_AREA => 0, // accepted; steal time reads 0
        _ => -errno::EINVAL,
    }
}

#[inline(never)]
fn hvm_op(d: usize, cmd: u64, arg: u64) -> i64 {
    use xen_abi::hvm as h;
    let Ok(mut b) = read::<{ h::PARAM_SIZE }>(d, arg) else { return -errno::EFAULT };
    let dom = xen_abi::rd16(&b, 0).unwrap_or(0);
    if index_of(dom, d, config().domains.len()) != Some(d) {
        return -errno::EPERM;
    }
    let index = xen_abi::rd32(&b, 4).unwrap_or(u32::MAX);
    let magic = layout::MAGIC_BASE / PAGE_SIZE;
    let value = match index {
        h::PARAM_CALLBACK_IRQ => (2 << 56) | (2 << 8) | u64::from(layout::EVTCHN_PPI),
        h::PARAM_STORE_PFN => magic + layout::STORE_PFN_OFFSET,
        h::PARAM_STORE_EVTCHN => XD[d].store_port.load(Ordering::Relaxed),
        h::PARAM_CONSOLE_PFN => magic + layout::CONSOLE_PFN_OFFSET,
        h::PARAM_CONSOLE_EVTCHN => XD[d].console_port.load(Ordering::Relaxed),
        _ => return -errno::EINVAL,
    };
    match cmd {
        h::GET_PARAM => {
            xen_abi::wr64(&mut b, 8, value);
            copy_to_guest(d, arg, &b).map_or_else(|e| e, |()| 0)
        }
        h::SET_PARAM => -errno::EPERM,
        _ => -errno::ENOSYS,
    }
}

/// `EVTCHNOP_send`, the hottest event-channel operation (every ring kick), on its own: the
/// port is read as one word, then looked up and delivered under the table's lock.
#[inline(never)]
fn evtchn_send(d: usize, arg: u64) -> i64 {
    let port = match read_u32(d, arg) {
        Ok(p) => p,
        Err(e) => return e,
    };
    let mut guard = EVTCHN.lock();
    let Some(t) = guard.as_mut() else { return -errno::ENOSYS };
    match t.send(d, port) {
        Ok(Target::Port(rd, rp)) => deliver(t, rd, rp),
        Ok(Target::Service(Service::Console)) => drain_console(d),
        Ok(Target::Service(Service::Store)) => serve_store(t, d),
        Ok(Target::Nobody) => {}
        Err(e) => return e,
    }
    0
}

#[inline(never)]
fn event_channel_op(d: usize, c: &DomainCfg, cmd: u64, arg: u64) -> i64 {
    use xen_abi::evtchn as e;
    let n = config().domains.len();
    let mut guard = EVTCHN.lock();
    let Some(t) = guard.as_mut() else { return -errno::ENOSYS };
    let r: Result<i64, i64> = (|| match cmd {
        e::ALLOC_UNBOUND => {
            let mut b = read::<8>(d, arg)?;
            let dom = xen_abi::rd16(&b, 0).unwrap_or(0);
            let remote = xen_abi::rd16(&b, 2).unwrap_or(0);
            if index_of(dom, d, n) != Some(d) {
                return Err(-errno::EPERM);
            }
            let rd = index_of(remote, d, n).ok_or(-errno::ESRCH)?;
            let p = t.alloc_unbound(d, rd)?;
            xen_abi::wr32(&mut b, 4, p);
            copy_to_guest(d, arg, &b)?;
            Ok(0)
        }
        e::BIND_INTERDOMAIN => {
            let mut b = read::<12>(d, arg)?;
            let rd = index_of(xen_abi::rd16(&b, 0).unwrap_or(0), d, n).ok_or(-errno::ESRCH)?;
            let p = t.bind_interdomain(d, rd, xen_abi::rd32(&b, 4).unwrap_or(0))?;
            xen_abi::wr32(&mut b, 8, p);
            if let Err(err) = copy_to_guest(d, arg, &b) {
                let _ = t.close(d, p);
                return Err(err);
            }
            deliver(t, d, p);
            Ok(0)
        }
        e::CLOSE => {
            let b = read::<4>(d, arg)?;
            let p = xen_abi::rd32(&b, 0).unwrap_or(0);
            if matches!(t.state(d, p), evtchn::State::Service(_)) {
                return Ok(0); // the hypervisor's end stays; the guest may bind it again via params
            }
            t.close(d, p)?;
            Ok(0)
        }
        e::STATUS => {
            let mut b = read::<24>(d, arg)?;
            if index_of(xen_abi::rd16(&b, 0).unwrap_or(0), d, n) != Some(d) {
                return Err(-errno::EPERM);
            }
            let (st, vcpu, a, p) = t.status(d, xen_abi::rd32(&b, 4).unwrap_or(u32::MAX))?;
            xen_abi::wr32(&mut b, 8, st);
            xen_abi::wr32(&mut b, 12, vcpu);
            xen_abi::wr16(&mut b, 16, a as u16); // unbound: remote dom; interdomain: peer dom
            if st == e::STATUS_INTERDOMAIN {
                xen_abi::wr32(&mut b, 20, p);
            }
            copy_to_guest(d, arg, &b)?;
            Ok(0)
        }
        e::BIND_VCPU => {
            let b = read::<8>(d, arg)?;
            let (p, v) = (xen_abi::rd32(&b, 0).unwrap_or(0), xen_abi::rd32(&b, 4).unwrap_or(u32::MAX));
            t.bind_vcpu(d, p, v as usize, c.pcpus.len())?;
            Ok(0)
        }
        e::UNMASK => {
            let b = read::<4>(d, arg)?;
            let p = xen_abi::rd32(&b, 0).unwrap_or(0);
            if p == 0 || p >= xen_abi::evtchn::NR_2L {
                return Err(-errno::EINVAL);
            }
            let v = t.vcpu(d, p);
            if let Some(mut w) = words(d, v) {
                if evtchn::unmask(&mut w, p) {
                    raise_upcall(d, v);
                }
            }
            Ok(0)
        }
        e::BIND_VIRQ => {
            let mut b = read::<{ e::BIND_VIRQ_SIZE }>(d, arg)?;
            let virq = xen_abi::rd32(&b, 0).unwrap_or(u32::MAX);
            let vcpu = xen_abi::rd32(&b, 4).unwrap_or(u32::MAX) as usize;
            let p = t.bind_virq(d, virq, vcpu, c.pcpus.len())?;
            xen_abi::wr32(&mut b, 8, p);
            if let Err(err) = copy_to_guest(d, arg, &b) {
                let _ = t.close(d, p);
                return Err(err);
            }
            Ok(0)
        }
        e::INIT_CONTROL | e::EXPAND_ARRAY | e::SET_PRIORITY => Err(-errno::ENOSYS),
        _ => Err(-errno::ENOSYS),
    })();
    r.unwrap_or_else(|e| e)
}

#[inline(never)]
fn sched_op(r: &mut GuestRegs) -> i64 {
    use xen_abi::sched as s;
    let (d, v) = (r.dom, r.vcpu);
    match r.x[0] {
        s::YIELD => {
            drain_console(d);
            0
        }
        s::BLOCK => {
            // As Xen on Arm: event delivery (the vCPU's IRQs) is enabled, then the vCPU waits
            // for an interrupt to be pending for it.
            r.spsr &= !PSTATE_I;
            domain::block(r.cpu, d, v, None, || upcall_pending(d, v));
            0
        }
        s::POLL => poll(r.cpu, d, v, r.x[1]),
        s::WATCHDOG => match read::<8>(d, r.x[1]) {
            Ok(b) => domain::watchdog_op(d, xen_abi::rd32(&b, 0).unwrap_or(0), xen_abi::rd32(&b, 4).unwrap_or(0)),
            Err(e) => e,
        },
        s::SHUTDOWN => {
            let reason = match read::<4>(d, r.x[1]) {
                Ok(b) => u32::from_le_bytes(b),
                Err(e) => return e,
            };
            drain_console(d);
            if reason == s::SHUTDOWN_SUSPEND {
                return domain::suspend(r);
            }
            let name = config().domains[d].name();
            let why = match reason {
                s::SHUTDOWN_POWEROFF => domain::EndReason::PowerOff,
                s::SHUTDOWN_REBOOT => {
                    hprintln!("domain '{name}': SCHEDOP_shutdown(reboot)");
                    domain::reboot_from_hypercall(d, v)
                }
                _ => domain::EndReason::Crashed,
            };
            let what = match reason {
                s::SHUTDOWN_POWEROFF => "poweroff",
                s::SHUTDOWN_SUSPEND => "suspend",
                s::SHUTDOWN_CRASH => "crash",
                s::SHUTDOWN_WATCHDOG => "watchdog",
                _ => "unknown reason: treated as a crash",
            };
            hprintln!("domain '{name}': SCHEDOP_shutdown({what})");
            domain::shutdown_from_hypercall(d, why)
        }
        _ => -errno::ENOSYS,
    }
}

/// PSTATE.I: IRQs masked.
const PSTATE_I: u64 = 1 << 7;

/// Whether vCPU `v`'s `evtchn_upcall_pending` is set.
fn upcall_pending(d: usize, v: usize) -> bool {
    // SAFETY: vcpu_info lies in the domain's RAM (checked when it was registered).
    words(d, v).is_some_and(|w| unsafe { arch::shared_load_u64(w.vi) } & 0xff != 0)
}

/// `SCHEDOP_poll`: waits until one of the named ports is pending (masked or not), an
/// interrupt waits for the vCPU, or the timeout (system time: the domain's virtual counter
/// in ns; 0 = none) passes. Returns at once when a port is already pending.
fn poll(cpu: usize, d: usize, v: usize, arg: u64) -> i64 {
    use xen_abi::poll as p;
    let Ok(b) = read::<{ p::SIZE }>(d, arg) else { return -errno::EFAULT };
    let (Some(list), Some(n), Some(timeout)) = (xen_abi::rd64(&b, 0), xen_abi::rd32(&b, 8), xen_abi::rd64(&b, 16))
    else {
        return -errno::EFAULT;
    };
    if n > p::MAX_PORTS {
        return -errno::EINVAL;
    }
    let mut raw = [0u8; 4 * p::MAX_PORTS as usize];
    let raw = &mut raw[..4 * n as usize];
    if copy_from_guest(d, list, raw).is_err() {
        return -errno::EFAULT;
    }
    let mut ports = [0u32; p::MAX_PORTS as usize];
    for (i, port) in ports.iter_mut().take(n as usize).enumerate() {
        *port = xen_abi::rd32(raw, 4 * i).unwrap_or(u32::MAX);
        if *port >= evtchn::MAX_PORTS {
            return -errno::EINVAL;
        }
    }
    let ports = &ports[..n as usize];
    let deadline = (timeout != 0).then(|| {
        let freq = u128::from(CNTFRQ_EL0.get());
        let ticks = (u128::from(timeout) * freq / 1_000_000_000).min(u128::from(u64::MAX / 2)) as u64;
        ticks.saturating_add(domain::cntvoff(d))
    });
    let pending = || words(d, 0).is_some_and(|w| ports.iter().any(|&p| evtchn::EventWords::pending(&w, p)));
    domain::block(cpu, d, v, deadline, pending);
    0
}

#[inline(never)]
fn console_io(d: usize, cmd: u64, count: u64, buf: u64) -> i64 {
    use xen_abi::console_io as ci;
    match cmd {
        ci::WRITE => {
            let n = count.min(4096) as usize;
            let mut b = alloc::vec![0u8; n];
            if copy_from_guest(d, buf, &mut b).is_err() {
                return -errno::EFAULT;
            }
            console_out(d, &b);
            0
        }
        ci::READ => 0,
        _ => -errno::EINVAL,
    }
}
