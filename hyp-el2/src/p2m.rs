//! Run-time changes to a domain's stage-2 ("physical-to-machine") tables: pages a guest gives
//! back by ballooning leave its stage-2 and return to it zeroed; the operator's memory target;
//! other domains' granted frames mapped in ("foreign" pages) and the pins that keep a granted
//! frame from being ballooned away while in use; dirty logging for a live migration (RAM pages
//! write-protected, a write fault marks and unprotects one); the scratch page that answers a
//! Linux backend's late access to its grant window.
//!
//! The decisions (which frames may move, targets inside the plan) are `hyp_core::balloon`'s; this
//! module applies them to the tables with break-before-make and TLB invalidation in the domain's
//! VMID on every CPU.
//!
//! Invariants: one lock per domain serializes every change to its tables and its balloon; a page
//! is out of the stage-2, with no CPU able to use a stale translation, before it is counted as
//! given back; a page is zeroed before it is mapped again; only frames of the domain's own plan
//! ever move, and always back to the same physical page, so a domain never exceeds its plan; a
//! foreign page sits only at a ballooned-out frame or in the extended region, never over the
//! domain's own populated RAM; a pinned frame is never given back; while a domain is logged,
//! every page written since the last read of its bitmap is marked dirty, whether the guest, the
//! hypervisor or a grant user wrote it.

use crate::domain::DomainCfg;
use crate::mm::PoolMem;
use crate::sync::SpinLock;
use crate::{arch, mm};
use alloc::collections::{BTreeMap, BTreeSet};
use alloc::vec::Vec;
use hyp_core::balloon::{Balloon, Refused, TargetError};
use hyp_core::pgtable::Perm;
use hyp_core::pgtable::{Attrs, Deferred, Flush, PageTable, Regime, TableMemory};
use hyp_core::plan::MAX_DOMAINS;
use platforms::MemKind;
use xen_abi::gnttab as g;
use xen_abi::layout::{EXT_BASE, EXT_SIZE};

struct P2m {
    vttbr: u64,
    /// Dirty logging for a live migration: (dirty, write-protected) bits per RAM page.
    log: Option<(Vec<u64>, Vec<u64>)>,
    balloon: Balloon,
    /// Frames of this domain that grant mappings or copies use, with their use counts.
    pinned: BTreeMap<u64, u32>,
    /// IPAs where this domain has another domain's frame mapped.
    foreign: BTreeSet<u64>,
}

static P2M: [SpinLock<Option<P2m>>; MAX_DOMAINS] = [const { SpinLock::new(None) }; MAX_DOMAINS];

/// Unmapped pages a batch may invalidate by IPA at its end (beyond, the whole VMID is
/// invalidated once, `TLBI VMALLS12E1IS`). None: by IPA, each page costs its own broadcast
/// `TLBI IPAS2E1IS` and the VMID's stage-1 entries must go anyway (`TLBI VMALLE1IS`: the
/// combined stage-1+2 entries built from a page cannot be dropped by IPA), so one whole-VMID
/// invalidation per batch drops barely more, in one broadcast instead of pages + 1; it is
/// what Xen's p2m does after removals. Under TCG each broadcast stops every emulated CPU:
/// with 64 by IPA, a backend's grant unmaps took a third of its vCPU's time
/// (`bench pv --pc-profile`).
const DEFER_MAX: usize = 0;

/// The pool, plus TLB invalidation in one domain's VMID. `batch`: permission changes are
/// invalidated once, for the whole VMID, when the change ends. `defer`: every invalidation is
/// deferred to the end of the change ([`DEFER_MAX`]: the whole VMID once); only for changes
/// that clear 4 KiB leaves and whose frames nobody else gets back before the end (a grant
/// unmap batch).
struct S2Mem {
    pool: PoolMem,
    vttbr: u64,
    batch: bool,
    defer: bool,
    deferred: Deferred<DEFER_MAX>,
}

impl TableMemory for S2Mem {
    fn alloc_table(&mut self) -> Option<u64> {
        self.pool.alloc_table()
    }
    fn read(&self, table: u64, idx: usize) -> u64 {
        self.pool.read(table, idx)
    }
    fn write(&mut self, table: u64, idx: usize, val: u64) {
        self.pool.write(table, idx, val)
    }
    fn invalidate(&mut self, ipa: u64) {
        if self.defer {
            self.deferred.page(ipa);
        } else {
            arch::tlb_flush_ipa(self.vttbr, ipa);
        }
    }
    fn invalidate_permission(&mut self, ipa: u64) {
        if self.batch || self.defer {
            self.deferred.everything();
        } else {
            arch::tlb_flush_ipa(self.vttbr, ipa);
        }
    }
}

/// Starts domain `d`'s accounts (boot, before the domain runs).
pub fn init(d: usize, c: &DomainCfg) {
    *P2M[d].lock() = Some(P2m {
        vttbr: c.vttbr,
        balloon: Balloon::new(c.ipa_base, c.memory.size),
        pinned: BTreeMap::new(),
        foreign: BTreeSet::new(),
        log: None,
    });
}

/// Domains with dirty logging on (bit per domain): the hypervisor's own writes check it.
static LOGGING: core::sync::atomic::AtomicUsize = core::sync::atomic::AtomicUsize::new(0);

fn bit(v: &[u64], i: usize) -> bool {
    v.get(i / 64).is_some_and(|w| w & (1 << (i % 64)) != 0)
}
fn set_bit(v: &mut [u64], i: usize, on: bool) {
    if let Some(w) = v.get_mut(i / 64) {
        if on {
            *w |= 1 << (i % 64);
        } else {
            *w &= !(1 << (i % 64));
        }
    }
}

/// RAM attributes while a page is write-protected for dirty logging.
const RAM_RO: Attrs = Attrs { kind: MemKind::Normal, perm: Perm::Ro, exec: true };

/// Starts dirty logging of domain `d` (a live migration): every populated page of its RAM is
/// write-protected in its stage-2 (blocks split into pages) and counted dirty; a guest write
/// to one faults once ([`dirty_fault`]) and makes it dirty and writable again.
pub fn log_start(d: usize, c: &DomainCfg) -> bool {
    let pages = (c.memory.size / 4096) as usize;
    // On before the first page is protected: a write racing with the start (the domain runs
    // on another pCPU) waits for this domain's lock in `dirty_fault` and then finds it logged.
    LOGGING.fetch_or(1 << d, core::sync::atomic::Ordering::AcqRel);
    let ok = with_batched(d, |p, pt, mem| {
        let words = pages.div_ceil(64);
        let (mut dirty, mut prot) = (alloc::vec![0u64; words], alloc::vec![0u64; words]);
        let mut ok = true;
        for i in 0..pages {
            let ipa = c.ipa_base + (i as u64) * 4096;
            if p.balloon.is_out(ipa >> 12) || p.foreign.contains(&ipa) {
                continue;
            }
            if pt.set_page(mem, ipa, Some((c.ipa_to_pa(ipa), RAM_RO))).is_err() {
                ok = false;
                break;
            }
            set_bit(&mut dirty, i, true);
            set_bit(&mut prot, i, true);
        }
        p.log = Some((dirty, prot)); // on failure too: `log_stop` unprotects what was protected
        ok
    })
    .unwrap_or(false);
    if !ok {
        log_stop(d, c);
    }
    ok
}

/// Stops dirty logging of domain `d`: its protected pages are writable again.
///
/// Logging goes off only under the domain's lock, once the pages are writable again in its
/// tables (their TLB invalidation follows before the lock is dropped): a write that faulted
/// on a protected page meanwhile (the domain runs on another pCPU) either finds logging on
/// and waits for the lock in [`dirty_fault`], or finds it off and waits for the lock in
/// [`allows_now`], and then the page writable. Turned off before the lock was taken, a fault
/// in between found neither and was reported as outside the partition (a refused migration
/// crashed the domain it left running).
pub fn log_stop(d: usize, c: &DomainCfg) {
    let off = || LOGGING.fetch_and(!(1 << d), core::sync::atomic::Ordering::AcqRel);
    let done = with_batched(d, |p, pt, mem| {
        if let Some((_, prot)) = p.log.take() {
            for i in (0..prot.len() * 64).filter(|&i| bit(&prot, i)) {
                let ipa = c.ipa_base + (i as u64) * 4096;
                let _ = pt.set_page(mem, ipa, Some((c.ipa_to_pa(ipa), Attrs::RAM)));
            }
        }
        off();
    });
    if done.is_none() {
        off();
    }
}

/// Whether domain `d` has dirty logging on.
pub fn logging(d: usize) -> bool {
    LOGGING.load(core::sync::atomic::Ordering::Acquire) & (1 << d) != 0
}

/// A write fault of domain `d` at `ipa`: when logging protected that page, it becomes dirty and
/// writable and the write is retried (`true`).
pub fn dirty_fault(d: usize, c: &DomainCfg, ipa: u64) -> bool {
    if !logging(d) || !c.ipa_in_ram(ipa) {
        return false;
    }
    let page = ipa & !0xfff;
    let i = ((page - c.ipa_base) / 4096) as usize;
    with(d, |p, pt, mem| {
        let Some((dirty, prot)) = p.log.as_mut() else { return false };
        if !bit(prot, i) {
            return false;
        }
        set_bit(dirty, i, true);
        set_bit(prot, i, false);
        pt.set_page(mem, page, Some((c.ipa_to_pa(page), Attrs::RAM))).is_ok()
    })
    .unwrap_or(false)
}

/// Whether domain `d`'s stage-2 now allows the access at `ipa` that faulted (a write: a
/// writable page; an instruction fetch: an executable one): the fault raced with a change of
/// its tables on another CPU (a block split breaks before it makes) and is retried. Waits for
/// a change in progress (the domain's lock).
pub fn allows_now(d: usize, ipa: u64, write: bool, fetch: bool) -> bool {
    with(d, |_, pt, mem| {
        pt.translate(mem, ipa).is_some_and(|(_, a, _)| (!write || a.perm == Perm::Rw) && (!fetch || a.exec))
    })
    .unwrap_or(false)
}

/// The hypervisor wrote physical page `pa` (a hypercall's answer, a grant copy, a writable
/// grant use): when it belongs to a domain with dirty logging on, it is dirty.
#[inline]
pub fn mark_dirty_pa(pa: u64) {
    let on = LOGGING.load(core::sync::atomic::Ordering::Acquire);
    if on == 0 {
        return;
    }
    for (d, c) in crate::domain::config().domains.iter().enumerate() {
        if on & (1 << d) != 0 && pa >= c.memory.base.0 && pa - c.memory.base.0 < c.memory.size {
            let i = ((pa - c.memory.base.0) / 4096) as usize;
            if let Some(Some((dirty, _))) = P2M[d].lock().as_mut().map(|p| p.log.as_mut()) {
                set_bit(dirty, i, true);
            }
        }
    }
}

/// Copies domain `d`'s dirty bitmap into `out` (bit per RAM page; frames a grant holds count
/// as dirty too: a backend may write them through its own mapping), clears it and, when
/// `reprotect` (the domain runs), write-protects those pages again. Returns how many pages
/// were dirty.
pub fn log_peek_clean(d: usize, c: &DomainCfg, out: &mut [u64], reprotect: bool) -> Option<u64> {
    with_batched(d, |p, pt, mem| {
        let (dirty, prot) = p.log.as_mut()?;
        for &gfn in p.pinned.keys() {
            if let Some(i) = gfn.checked_sub(c.ipa_base >> 12) {
                set_bit(dirty, i as usize, true);
            }
        }
        let mut n = 0;
        for (w, o) in dirty.iter_mut().zip(out.iter_mut()) {
            *o = *w;
            n += u64::from(w.count_ones());
        }
        for i in 0..dirty.len() * 64 {
            if reprotect && bit(dirty, i) && !bit(prot, i) {
                let ipa = c.ipa_base + (i as u64) * 4096;
                if !p.balloon.is_out(ipa >> 12)
                    && !p.foreign.contains(&ipa)
                    && pt.set_page(mem, ipa, Some((c.ipa_to_pa(ipa), RAM_RO))).is_ok()
                {
                    set_bit(prot, i, true);
                }
            }
        }
        dirty.iter_mut().for_each(|w| *w = 0);
        Some(n)
    })
    .flatten()
}

fn with<R>(d: usize, f: impl FnOnce(&mut P2m, &mut PageTable, &mut S2Mem) -> R) -> Option<R> {
    with_mode(d, false, false, f)
}

/// As [`with`], with the permission changes' TLB invalidation batched: one flush of the
/// domain's VMID at the end, before its lock is dropped (dirty logging changes thousands).
fn with_batched<R>(d: usize, f: impl FnOnce(&mut P2m, &mut PageTable, &mut S2Mem) -> R) -> Option<R> {
    with_mode(d, true, false, f)
}

fn with_mode<R>(
    d: usize,
    batch: bool,
    defer: bool,
    f: impl FnOnce(&mut P2m, &mut PageTable, &mut S2Mem) -> R,
) -> Option<R> {
    let mut g = P2M[d].lock();
    let p = g.as_mut()?;
    let blocks = crate::PLATFORM.stage2_leaf == platforms::Stage2Leaf::Block;
    let mut pt = PageTable::from_root(p.vttbr & 0x0000_ffff_ffff_fffe, Regime::Stage2, blocks);
    // SAFETY: we hold domain `d`'s lock and touch only its tables.
    let pool = unsafe { PoolMem::runtime() };
    let mut mem = S2Mem { pool, vttbr: p.vttbr, batch, defer, deferred: Deferred::new() };
    let r = f(p, &mut pt, &mut mem);
    match mem.deferred.flush() {
        Flush::Nothing => {}
        Flush::Ipas(ipas) => arch::tlb_flush_ipas(mem.vttbr, ipas),
        Flush::Vmid => arch::tlb_flush_vmid(mem.vttbr),
    }
    Some(r)
}

/// Domain `d` gives back the extent of `2^order` frames at `gpfn`: all of it or nothing.
pub fn give_back(d: usize, gpfn: u64, order: u32) -> Result<(), Refused> {
    with(d, |p, pt, mem| {
        p.balloon.check(gpfn, order, true)?;
        if p.pinned.range(gpfn..gpfn + (1 << order)).next().is_some() {
            return Err(Refused::WrongState); // granted and in use by another domain
        }
        for f in gpfn..gpfn + (1 << order) {
            let ipa = f << 12;
            // Removing a page never allocates (a block is split with a table from the pool, and
            // the pool is sized for page-granular RAM); a failure leaves the page mapped.
            if pt.set_page(mem, ipa, None).is_err() {
                return Err(Refused::WrongState);
            }
            p.balloon.give_back(f)?;
        }
        Ok(())
    })
    .unwrap_or(Err(Refused::NotRam))
}

/// Domain `d` takes the extent of `2^order` frames at `gpfn` again: zeroed, at the same place.
pub fn populate(d: usize, c: &DomainCfg, gpfn: u64, order: u32) -> Result<(), Refused> {
    with(d, |p, pt, mem| {
        p.balloon.check(gpfn, order, false)?;
        if p.foreign.range(gpfn << 12..(gpfn + (1 << order)) << 12).next().is_some() {
            return Err(Refused::WrongState); // a grant is mapped there
        }
        for f in gpfn..gpfn + (1 << order) {
            let ipa = f << 12;
            let pa = c.ipa_to_pa(ipa);
            // SAFETY: a page of the domain's own RAM that its stage-2 does not map now.
            unsafe { mm::zero_phys(pa, 4096) };
            if pt.set_page(mem, ipa, Some((pa, Attrs::RAM))).is_err() {
                return Err(Refused::WrongState);
            }
            p.balloon.take(f)?;
        }
        Ok(())
    })
    .unwrap_or(Err(Refused::NotRam))
}

/// Pins frame `gfn` of domain `d` for a grant use: it must be populated RAM. Returns its PA.
pub fn pin(d: usize, c: &DomainCfg, gfn: u64) -> Result<u64, i16> {
    let mut g = P2M[d].lock();
    let p = g.as_mut().ok_or(g::GNTST_BAD_DOMAIN)?;
    let ipa = gfn.checked_mul(4096).filter(|&a| c.ipa_in_ram(a)).ok_or(g::GNTST_BAD_PAGE)?;
    if p.balloon.is_out(gfn) {
        return Err(g::GNTST_BAD_PAGE);
    }
    *p.pinned.entry(gfn).or_insert(0) += 1;
    Ok(c.ipa_to_pa(ipa))
}

/// Drops one pin of frame `gfn` of domain `d`.
pub fn unpin(d: usize, gfn: u64) {
    if let Some(p) = P2M[d].lock().as_mut() {
        if let Some(n) = p.pinned.get_mut(&gfn) {
            *n -= 1;
            if *n == 0 {
                p.pinned.remove(&gfn);
            }
        }
    }
}

/// Maps another domain's frame at `pa` into domain `d` at `ipa`: only at one of its
/// ballooned-out frames or in its extended region, and only where nothing foreign is yet.
pub fn map_foreign(d: usize, c: &DomainCfg, ipa: u64, pa: u64, write: bool) -> Result<(), i16> {
    let in_ext = ipa >= EXT_BASE && ipa - EXT_BASE < EXT_SIZE;
    let attrs = Attrs { kind: MemKind::Normal, perm: if write { Perm::Rw } else { Perm::Ro }, exec: false };
    with(d, |p, pt, mem| {
        // Checked under the lock, so a concurrent populate cannot refill the frame meanwhile.
        let vacated = c.ipa_in_ram(ipa) && p.balloon.is_out(ipa >> 12);
        if ipa & 0xfff != 0 || !(in_ext || vacated) || p.foreign.contains(&ipa) {
            return Err(g::GNTST_GENERAL_ERROR);
        }
        pt.set_page(mem, ipa, Some((pa, attrs))).map_err(|_| g::GNTST_NO_DEVICE_SPACE)?;
        p.foreign.insert(ipa);
        Ok(())
    })
    .unwrap_or(Err(g::GNTST_BAD_DOMAIN))
}

/// Removes the foreign page at `ipa` of domain `d` (every CPU stops using it before this returns).
pub fn unmap_foreign(d: usize, ipa: u64) -> Result<(), i16> {
    with(d, |p, pt, mem| {
        if !p.foreign.remove(&ipa) {
            return Err(g::GNTST_GENERAL_ERROR);
        }
        let _ = pt.set_page(mem, ipa, None);
        Ok(())
    })
    .unwrap_or(Err(g::GNTST_BAD_DOMAIN))
}

/// Removes the foreign pages at `ipas` of domain `d` (those that are not foreign pages are
/// left alone) with one TLB invalidation for all of them ([`DEFER_MAX`]: the whole VMID).
/// Every CPU stops using them before this returns, so the caller gives the frames back to
/// their granters only afterwards.
pub fn unmap_foreign_batch(d: usize, ipas: impl Iterator<Item = u64>) {
    with_mode(d, false, true, |p, pt, mem| {
        for ipa in ipas {
            if p.foreign.remove(&ipa) {
                let _ = pt.set_page(mem, ipa, None);
            }
        }
    });
}

/// The page a revoked mapping of a still-running domain is pointed at (see
/// [`quarantine_foreign`]): hypervisor memory that belongs to no domain, its contents junk.
#[repr(C, align(4096))]
struct Scratch([u8; 4096]);
static mut SCRATCH: Scratch = Scratch([0; 4096]);

/// Points the foreign page at `ipa` of running domain `d` at the scratch page instead of the
/// granter's frame (the granter restarts and its memory is reloaded). A Linux backend still
/// touches its mapping until it notices the frontend went away; a hole would kill it with a
/// stage-2 fault, the scratch page lets it read junk and write nowhere that matters. Every CPU
/// stops using the old frame before this returns; the IPA is free for a new mapping.
pub fn quarantine_foreign(d: usize, ipa: u64) -> Result<(), i16> {
    let scratch = core::ptr::addr_of!(SCRATCH) as u64;
    let attrs = Attrs { kind: MemKind::Normal, perm: Perm::Rw, exec: false };
    with(d, |p, pt, mem| {
        if !p.foreign.remove(&ipa) {
            return Err(g::GNTST_GENERAL_ERROR);
        }
        if pt.set_page(mem, ipa, Some((scratch, attrs))).is_err() {
            let _ = pt.set_page(mem, ipa, None); // no table memory: a hole, still safe for others
        }
        Ok(())
    })
    .unwrap_or(Err(g::GNTST_BAD_DOMAIN))
}

/// A data access of domain `d` at `ipa` in its grant-mapping window (the extended region)
/// where nothing is mapped: the scratch page goes there and the access is retried. Linux's
/// backends may touch a mapping in the instant between their unmap and their own teardown (a
/// frontend that vanished at once, `hypctl restart`); on Xen that is a fault that kills the
/// backend domain, here it reads junk. The IPA stays free for a real mapping (which replaces
/// the scratch page). Returns whether it was filled.
pub fn scratch_fill(d: usize, ipa: u64) -> bool {
    let page = ipa & !0xfff;
    if !(EXT_BASE..EXT_BASE + EXT_SIZE).contains(&page) {
        return false;
    }
    let scratch = core::ptr::addr_of!(SCRATCH) as u64;
    let attrs = Attrs { kind: MemKind::Normal, perm: Perm::Rw, exec: false };
    with(d, |p, pt, mem| !p.foreign.contains(&page) && pt.set_page(mem, page, Some((scratch, attrs))).is_ok())
        .unwrap_or(false)
}

/// PA of populated frame `gfn` of domain `d` (for a grant copy from or to its own frame).
pub fn own_frame(d: usize, c: &DomainCfg, gfn: u64) -> Option<u64> {
    let ipa = gfn.checked_mul(4096).filter(|&a| c.ipa_in_ram(a))?;
    let populated = P2M[d].lock().as_ref().is_some_and(|p| !p.balloon.is_out(gfn));
    populated.then(|| c.ipa_to_pa(ipa))
}

/// Maps every given-back page of domain `d` again (it restarts with its whole plan).
pub fn refill(d: usize, c: &DomainCfg) {
    with(d, |p, pt, mem| {
        for f in p.balloon.refill() {
            let ipa = f << 12;
            let _ = pt.set_page(mem, ipa, Some((c.ipa_to_pa(ipa), Attrs::RAM)));
        }
    });
}

/// Memory figures of domain `d`.
#[derive(Clone, Copy)]
pub struct Figures {
    /// Pages in the plan.
    pub plan: u64,
    /// Pages it holds.
    pub populated: u64,
    /// Memory target in KiB.
    pub target_kib: u64,
}

/// Domain `d`'s memory figures.
pub fn figures(d: usize) -> Option<Figures> {
    let g = P2M[d].lock();
    let b = &g.as_ref()?.balloon;
    Some(Figures { plan: b.plan_pages(), populated: b.populated(), target_kib: b.target_kib() })
}

/// Sets domain `d`'s memory target (KiB).
pub fn set_target(d: usize, kib: u64) -> Result<(), TargetError> {
    let mut g = P2M[d].lock();
    match g.as_mut() {
        Some(p) => p.balloon.set_target(kib),
        None => Err(TargetError::AbovePlan { plan_kib: 0 }),
    }
}
