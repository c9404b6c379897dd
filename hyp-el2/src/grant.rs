//! Grant tables v1 at run time: `GNTTABOP_map_grant_ref`, `unmap_grant_ref` and `copy` for a
//! batch of operations, and the revocation of every mapping that involves a restarting domain.
//!
//! Decisions (claims on the granter's entry, pins, handles) are `hyp_core::gnttab`'s; stage-2
//! changes are `p2m`'s. Each operation of a batch gets its own status; the hypercall itself
//! returns 0 once the batch was read (Linux `BUG()`s otherwise). An unmap batch leaves the
//! mapper's stage 2 with one TLB invalidation (the mapper's VMID, once) rather than one per
//! page.
//!
//! Invariants: lock order is `GRANTS`, then a domain's `p2m` lock; the granter's entry holds
//! `GTF_reading` (and `GTF_writing` for a writable use) from before a frame is mapped or copied
//! until after the mapping is gone from the mapper's stage-2 and TLBs; a granted frame stays
//! pinned in the granter (not ballooned away) while mapped.

use crate::domain::config;
use crate::sync::SpinLock;
use crate::{arch, mm, p2m, xen};
use alloc::vec::Vec;
use hyp_core::evtchn::index_of;
use hyp_core::gnttab::{claim, Grants, Mapping};
use hyp_core::guestdt::GRANT_FRAMES;
use hyp_core::hypercall::MAX_BATCH;
use xen_abi::gnttab::{self as g, CopyOp, CopySide, MapOp};
use xen_abi::{domid, errno};

static GRANTS: SpinLock<Option<Grants>> = SpinLock::new(None);

/// Refs in each domain's table.
const REFS: u32 = GRANT_FRAMES * g::ENTRIES_PER_FRAME;

/// Sets up the (empty) grant state.
pub fn init() {
    *GRANTS.lock() = Some(Grants::new());
}

/// The granter index for `dom` as named by domain `me`, if it is a Xen-aware domain.
fn granter_of(dom: u16, me: usize) -> Option<usize> {
    let n = config().domains.len();
    index_of(dom, me, n).filter(|&d| config().domains[d].xen)
}

/// Claims entry `gref` of `granter` for `user` (a domid): sets GTF_reading / GTF_writing.
/// Returns the entry's frame.
fn claim_entry(granter: usize, gref: u32, user: u16, write: bool) -> Result<u64, i16> {
    if gref >= REFS {
        return Err(g::GNTST_BAD_GNTREF);
    }
    let pa = xen::grant_entry_pa(granter, gref);
    // SAFETY: the entry lies in one of the granter's grant frames (hypervisor pages).
    let mut cur = unsafe { arch::shared_load_u32(pa) };
    for _ in 0..4 {
        let want = claim(cur, user, write)?;
        // SAFETY: as above.
        match unsafe { arch::shared_cas_u32(pa, cur, want) } {
            Ok(_) => {
                // SAFETY: the entry's frame field, in the same hypervisor page.
                return Ok(u64::from(unsafe { arch::shared_load_u32(pa + 4) }));
            }
            Err(now) => cur = now,
        }
    }
    Err(g::GNTST_GENERAL_ERROR) // the granter keeps changing it
}

/// Clears `bits` in entry `gref` of `granter`.
fn release_entry(granter: usize, gref: u32, bits: u16) {
    if bits == 0 || gref >= REFS {
        return;
    }
    let pa = xen::grant_entry_pa(granter, gref);
    // SAFETY: as in `claim_entry`.
    let mut cur = unsafe { arch::shared_load_u32(pa) };
    // SAFETY: as above.
    while let Err(now) = unsafe { arch::shared_cas_u32(pa, cur, cur & !u32::from(bits)) } {
        cur = now;
    }
}

/// A use of a granter's entry: claimed in the entry, pinned in `Grants` and in the granter's
/// p2m.
#[derive(Clone, Copy)]
struct Held {
    granter: usize,
    gref: u32,
    frame: u64,
    write: bool,
}

/// Claims and pins entry `gref` of the domain `dom` names (as seen by `d`) for `d`'s use.
/// Returns the frame's PA and what to release.
fn hold(gs: &mut Grants, d: usize, dom: u16, gref: u32, write: bool) -> Result<(u64, Held), i16> {
    let granter = granter_of(dom, d).ok_or(g::GNTST_BAD_DOMAIN)?;
    let entry_frame = claim_entry(granter, gref, hyp_core::evtchn::domid_of(d), write)?;
    let frame = gs.pinned_frame(granter, gref).unwrap_or(entry_frame);
    gs.pin(granter, gref, frame, write);
    let h = Held { granter, gref, frame, write };
    match p2m::pin(granter, &config().domains[granter], frame) {
        Ok(pa) => {
            if write {
                p2m::mark_dirty_pa(pa); // a migration sends it again: the user may write it
            }
            Ok((pa, h))
        }
        Err(e) => {
            let bits = gs.unpin(granter, gref, write);
            release_entry(granter, gref, bits);
            Err(e)
        }
    }
}

/// Undoes [`hold`].
fn release(gs: &mut Grants, h: Held) {
    p2m::unpin(h.granter, h.frame);
    if h.write {
        p2m::mark_dirty_pa(config().domains[h.granter].ipa_to_pa(h.frame << 12));
    }
    let bits = gs.unpin(h.granter, h.gref, h.write);
    release_entry(h.granter, h.gref, bits);
}

/// One map operation by domain `d`: its handle and the frame's bus address.
fn map_one(gs: &mut Grants, d: usize, op: MapOp) -> Result<(u32, u64), i16> {
    use g::*;
    let refused = GNTMAP_DEVICE_MAP | GNTMAP_APPLICATION_MAP | GNTMAP_CONTAINS_PTE;
    if op.flags & GNTMAP_HOST_MAP == 0 || op.flags & refused != 0 {
        return Err(GNTST_GENERAL_ERROR);
    }
    if op.host_addr & 0xfff != 0 {
        return Err(GNTST_BAD_VIRT_ADDR);
    }
    if gs.mapped_at(d, op.host_addr) {
        return Err(GNTST_GENERAL_ERROR);
    }
    let write = op.flags & GNTMAP_READONLY == 0;
    let (pa, h) = hold(gs, d, op.dom, op.gref, write)?;
    if let Err(e) = p2m::map_foreign(d, &config().domains[d], op.host_addr, pa, write) {
        release(gs, h);
        return Err(e);
    }
    let m = Mapping { granter: h.granter, gref: h.gref, ipa: op.host_addr, frame: h.frame, write, revoked: false };
    // A direct-mapped domain's devices DMA to machine addresses: it gets the frame's PA (its
    // swiotlb-xen translates through it); any other domain the IPA it mapped.
    let bus = if config().domains[d].linux { pa } else { op.host_addr };
    gs.track(d, m).map(|h| (h, bus)).inspect_err(|_| remove(gs, d, m))
}

/// Removes mapping `m` of mapper `d` (stage-2 first, then pins and entry bits); its handle
/// is already gone.
fn remove(gs: &mut Grants, d: usize, m: Mapping) {
    let _ = p2m::unmap_foreign(d, m.ipa);
    if !m.revoked {
        release(gs, Held { granter: m.granter, gref: m.gref, frame: m.frame, write: m.write });
    }
}

/// Checks and forgets the mapping `handle` of domain `d` (its page is still mapped: see
/// [`unmap_batch`]).
fn unmap_one(gs: &mut Grants, d: usize, host_addr: u64, handle: u32) -> Result<Mapping, i16> {
    let m = gs.lookup(d, handle)?;
    if host_addr != 0 && host_addr != m.ipa {
        return Err(g::GNTST_GENERAL_ERROR);
    }
    gs.untrack(d, handle)?;
    Ok(m)
}

/// `GNTTABOP_unmap_grant_ref` for domain `d`: `count` operations at guest VA `arg`. Every
/// operation is checked and answered first, then the pages leave `d`'s stage 2 with one TLB
/// invalidation for the batch (a backend unmaps a packet's or a request's pages together),
/// and only then do their granters get their entries back. Returns the hypercall result.
fn unmap_batch(gs: &mut Grants, d: usize, arg: u64, count: u64) -> i64 {
    let mut gone: Vec<Mapping> = Vec::new();
    let mut rc = 0;
    for i in 0..count {
        let va = arg.wrapping_add(i * g::UNMAP_SIZE as u64);
        let mut b = [0u8; g::UNMAP_SIZE];
        if xen::copy_from_guest(d, va, &mut b).is_err() {
            rc = -errno::EFAULT;
            break;
        }
        let (host, handle) = (xen_abi::rd64(&b, 0).unwrap_or(0), xen_abi::rd32(&b, 16).unwrap_or(u32::MAX));
        let st = match unmap_one(gs, d, host, handle) {
            Ok(m) => {
                gone.push(m);
                g::GNTST_OKAY
            }
            Err(e) => e,
        };
        xen_abi::wr16(&mut b, 20, st as u16);
        if xen::copy_to_guest(d, va, &b).is_err() {
            rc = -errno::EFAULT;
            break;
        }
    }
    // The operations taken before a fault stand, as those of a batch without one.
    p2m::unmap_foreign_batch(d, gone.iter().map(|m| m.ipa));
    for m in gone {
        if !m.revoked {
            release(gs, Held { granter: m.granter, gref: m.gref, frame: m.frame, write: m.write });
        }
    }
    rc
}

/// One side of a copy by domain `d`: the PA of its first byte, and what to release.
fn copy_side(gs: &mut Grants, d: usize, s: CopySide, gref: bool, write: bool) -> Result<(u64, Option<Held>), i16> {
    if gref {
        let r = u32::try_from(s.ref_or_gmfn).map_err(|_| g::GNTST_BAD_GNTREF)?;
        let (pa, h) = hold(gs, d, s.domid, r, write)?;
        Ok((pa + u64::from(s.offset), Some(h)))
    } else {
        if s.domid != domid::SELF && index_of(s.domid, d, config().domains.len()) != Some(d) {
            return Err(g::GNTST_PERMISSION_DENIED);
        }
        let pa = p2m::own_frame(d, &config().domains[d], s.ref_or_gmfn).ok_or(g::GNTST_BAD_PAGE)?;
        Ok((pa + u64::from(s.offset), None))
    }
}

fn copy_one(gs: &mut Grants, d: usize, op: CopyOp) -> Result<(), i16> {
    let fits = |off: u16| u32::from(off) + u32::from(op.len) <= 4096;
    if !fits(op.source.offset) || !fits(op.dest.offset) {
        return Err(g::GNTST_BAD_COPY_ARG);
    }
    let (src, sh) = copy_side(gs, d, op.source, op.flags & g::GNTCOPY_SOURCE_GREF != 0, false)?;
    let (dst, dh) = match copy_side(gs, d, op.dest, op.flags & g::GNTCOPY_DEST_GREF != 0, true) {
        Ok(x) => x,
        Err(e) => {
            if let Some(h) = sh {
                release(gs, h);
            }
            return Err(e);
        }
    };
    let mut buf = [0u8; 4096];
    let n = usize::from(op.len);
    // SAFETY: each range lies inside one populated frame, pinned (a grant) or the caller's own.
    unsafe {
        mm::read_phys(src, &mut buf[..n]);
        mm::write_phys(dst, &buf[..n]);
    }
    p2m::mark_dirty_pa(dst);
    for h in [sh, dh].into_iter().flatten() {
        release(gs, h);
    }
    Ok(())
}

/// `GNTTABOP_map_grant_ref` / `unmap_grant_ref` / `copy` for domain `d`: `count` operations at
/// guest VA `arg`. Returns the hypercall result.
pub fn batch(d: usize, cmd: u64, arg: u64, count: u64) -> i64 {
    let size = match cmd {
        g::MAP_GRANT_REF => g::MAP_SIZE,
        g::UNMAP_GRANT_REF => g::UNMAP_SIZE,
        _ => g::COPY_SIZE,
    };
    if count > MAX_BATCH {
        return -errno::EINVAL;
    }
    let mut guard = GRANTS.lock();
    let Some(gs) = guard.as_mut() else { return -errno::ENOSYS };
    if cmd == g::UNMAP_GRANT_REF {
        return unmap_batch(gs, d, arg, count);
    }
    for i in 0..count {
        let va = arg.wrapping_add(i * size as u64);
        let mut b = [0u8; g::COPY_SIZE];
        if xen::copy_from_guest(d, va, &mut b[..size]).is_err() {
            return -errno::EFAULT;
        }
        let b = &mut b[..size];
        match cmd {
            g::MAP_GRANT_REF => {
                let Some(op) = MapOp::parse(b) else { return -errno::EFAULT };
                let (st, h, bus) = match map_one(gs, d, op) {
                    Ok((h, bus)) => (g::GNTST_OKAY, h, bus),
                    Err(e) => (e, u32::MAX, 0),
                };
                xen_abi::wr16(b, 18, st as u16);
                xen_abi::wr32(b, 20, h);
                xen_abi::wr64(b, 24, bus);
            }
            _ => {
                let Some(op) = CopyOp::parse(b) else { return -errno::EFAULT };
                let st = copy_one(gs, d, op).map_or_else(|e| e, |()| g::GNTST_OKAY);
                xen_abi::wr16(b, 36, st as u16);
            }
        }
        if xen::copy_to_guest(d, va, b).is_err() {
            return -errno::EFAULT;
        }
    }
    0
}

/// Revokes every mapping that involves domain `d` (it restarts): its own mappings of others'
/// frames leave its stage-2 tables; others' mappings of its frames are pointed at the scratch
/// page (`p2m::quarantine_foreign`), so a backend that still touches them does not fault.
/// Either way no CPU uses the old frames (TLBs invalidated in the mapper's VMID) before its
/// memory is reloaded. Returns how many were revoked.
pub fn revoke_all(d: usize) -> usize {
    let mut guard = GRANTS.lock();
    let Some(gs) = guard.as_mut() else { return 0 };
    let list = gs.involving(d);
    for &(mapper, handle) in &list {
        if mapper == d {
            if let Ok(m) = gs.untrack(mapper, handle) {
                remove(gs, mapper, m);
            }
        } else if let Ok(m) = gs.mark_revoked(mapper, handle) {
            // Another, running domain (a backend) keeps a harmless page at that address
            // until it unmaps; its handle stays valid, so that unmap succeeds.
            let _ = p2m::quarantine_foreign(mapper, m.ipa);
            release(gs, Held { granter: m.granter, gref: m.gref, frame: m.frame, write: m.write });
        }
    }
    list.len()
}
