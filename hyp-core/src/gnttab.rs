//! Grant tables v1, the decisions: the claim a mapping or copy makes on a granter's entry (the
//! `{flags, domid}` word the granter shares with us), which refs are in use and how (pin counts
//! per granter entry), and each mapper's handles (maptrack).
//!
//! The hypervisor applies these decisions to the shared words and stage-2 tables; this module
//! holds no guest memory. Revocation safety: `GTF_reading` / `GTF_writing` stay set in the
//! granter's entry while any mapping or copy uses it, and are cleared only by [`Grants::unpin`]
//! telling the caller to, after the mapping is gone (the granter's `end_foreign_access` refuses
//! while they are set).
//!
//! Invariants: a pin exists for every live maptrack entry; an entry's `GTF_writing` is set
//! while it has a writable pin, `GTF_reading` while it has any pin; a handle names at most one
//! mapping and is never reused while that mapping lives. A mapper's free handles and the
//! addresses it has mapped are indexed beside its maptrack (kept with every change to it), so a
//! map or unmap costs the same with thousands of mappings live (a backend's persistent grants)
//! as with none.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use xen_abi::gnttab::{
    GNTST_BAD_HANDLE, GNTST_GENERAL_ERROR, GNTST_NO_DEVICE_SPACE, GTF_PERMIT_ACCESS, GTF_READING, GTF_READONLY,
    GTF_TYPE_MASK, GTF_WRITING,
};

/// Handles one domain may hold at once.
pub const MAPTRACK_LIMIT: usize = 4096;

/// The `{flags, domid}` word of a v1 entry as the hypervisor wants it after claiming it for a
/// `write` (or read-only) use by domain `user`; `Err(status)` when the entry does not allow it.
pub fn claim(word: u32, user: u16, write: bool) -> Result<u32, i16> {
    let flags = word as u16;
    let domid = (word >> 16) as u16;
    if flags & GTF_TYPE_MASK != GTF_PERMIT_ACCESS || domid != user {
        return Err(GNTST_GENERAL_ERROR);
    }
    if write && flags & GTF_READONLY != 0 {
        return Err(GNTST_GENERAL_ERROR);
    }
    let set = GTF_READING | if write { GTF_WRITING } else { 0 };
    Ok(word | u32::from(set))
}

/// A live mapping.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mapping {
    /// Granting domain (index).
    pub granter: usize,
    /// Grant reference in the granter's table.
    pub gref: u32,
    /// Where the mapper has it (guest-physical).
    pub ipa: u64,
    /// The granter's frame (guest-physical frame number in the granter).
    pub frame: u64,
    /// Writable.
    pub write: bool,
    /// Revoked because its granter restarted: the mapper's address holds a scratch page and
    /// the granter's pin is released; the mapper's own unmap then just clears it (as Xen
    /// keeps a dying domain's frames until its mappers let go, a backend's late unmap must
    /// succeed: Linux leaks the page and warns otherwise).
    pub revoked: bool,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Pin {
    readers: u32,
    writers: u32,
    frame: u64,
}

/// Every domain's grant use.
#[derive(Debug, Default)]
pub struct Grants {
    /// Pins per (granter, ref).
    pins: BTreeMap<(usize, u32), Pin>,
    /// Maptrack per mapper: handle = index.
    maptrack: BTreeMap<usize, Vec<Option<Mapping>>>,
    /// Per mapper, the handles of its maptrack's empty slots.
    free: BTreeMap<usize, Vec<u32>>,
    /// Live mappings per (mapper, address).
    at: BTreeMap<(usize, u64), u32>,
}

/// Which `GTF_*` bits of an entry to clear once its last pin of a kind is gone.
pub fn clear_bits(readers_left: u32, writers_left: u32) -> u16 {
    (if readers_left == 0 { GTF_READING } else { 0 }) | (if writers_left == 0 { GTF_WRITING } else { 0 })
}

impl Grants {
    /// An empty state.
    pub fn new() -> Self {
        Self::default()
    }

    /// The frame a pinned entry uses (a later use of the same ref uses the same frame even if
    /// the granter rewrote the entry meanwhile).
    pub fn pinned_frame(&self, granter: usize, gref: u32) -> Option<u64> {
        self.pins.get(&(granter, gref)).map(|p| p.frame)
    }

    /// Records one more use of (granter, gref) at `frame` (after a successful [`claim`]).
    pub fn pin(&mut self, granter: usize, gref: u32, frame: u64, write: bool) {
        let p = self.pins.entry((granter, gref)).or_insert(Pin { frame, ..Pin::default() });
        p.readers += 1;
        if write {
            p.writers += 1;
        }
    }

    /// Drops one use; returns the `GTF_*` bits the caller must now clear in the entry.
    pub fn unpin(&mut self, granter: usize, gref: u32, write: bool) -> u16 {
        let Some(p) = self.pins.get_mut(&(granter, gref)) else { return 0 };
        p.readers = p.readers.saturating_sub(1);
        if write {
            p.writers = p.writers.saturating_sub(1);
        }
        let bits = clear_bits(p.readers, p.writers);
        if p.readers == 0 {
            self.pins.remove(&(granter, gref));
        }
        bits
    }

    /// Gives `m` a handle in `mapper`'s maptrack.
    pub fn track(&mut self, mapper: usize, m: Mapping) -> Result<u32, i16> {
        let t = self.maptrack.entry(mapper).or_default();
        let h = match self.free.get_mut(&mapper).and_then(Vec::pop) {
            Some(h) => {
                t[h as usize] = Some(m);
                h
            }
            None if t.len() >= MAPTRACK_LIMIT => return Err(GNTST_NO_DEVICE_SPACE),
            None => {
                t.push(Some(m));
                (t.len() - 1) as u32
            }
        };
        *self.at.entry((mapper, m.ipa)).or_default() += 1;
        Ok(h)
    }

    /// The mapping behind `handle` of `mapper`.
    pub fn lookup(&self, mapper: usize, handle: u32) -> Result<Mapping, i16> {
        self.maptrack.get(&mapper).and_then(|t| t.get(handle as usize).copied().flatten()).ok_or(GNTST_BAD_HANDLE)
    }

    /// Releases `handle` of `mapper` (the caller has removed the mapping and unpins it).
    pub fn untrack(&mut self, mapper: usize, handle: u32) -> Result<Mapping, i16> {
        let slot = self.maptrack.get_mut(&mapper).and_then(|t| t.get_mut(handle as usize)).ok_or(GNTST_BAD_HANDLE)?;
        let m = slot.take().ok_or(GNTST_BAD_HANDLE)?;
        self.free.entry(mapper).or_default().push(handle);
        if let Some(n) = self.at.get_mut(&(mapper, m.ipa)) {
            *n -= 1;
            if *n == 0 {
                self.at.remove(&(mapper, m.ipa));
            }
        }
        Ok(m)
    }

    /// Whether `mapper` has something mapped at `ipa`.
    pub fn mapped_at(&self, mapper: usize, ipa: u64) -> bool {
        self.at.contains_key(&(mapper, ipa))
    }

    /// Marks mapping `handle` of `mapper` revoked (see [`Mapping::revoked`]) and returns it
    /// as it was.
    pub fn mark_revoked(&mut self, mapper: usize, handle: u32) -> Result<Mapping, i16> {
        let slot = self.maptrack.get_mut(&mapper).and_then(|t| t.get_mut(handle as usize)).ok_or(GNTST_BAD_HANDLE)?;
        let m = slot.as_mut().ok_or(GNTST_BAD_HANDLE)?;
        let was = *m;
        m.revoked = true;
        Ok(was)
    }

    /// Every live (mapper, handle) that involves domain `d` as mapper, or as granter and not
    /// yet revoked (a restart revokes them all).
    pub fn involving(&self, d: usize) -> Vec<(usize, u32)> {
        let mut v = Vec::new();
        for (&mapper, t) in &self.maptrack {
            for (h, m) in t.iter().enumerate() {
                if m.is_some_and(|m| mapper == d || (m.granter == d && !m.revoked)) {
                    v.push((mapper, h as u32));
                }
            }
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ENTRY_RW: u32 = (7 << 16) | GTF_PERMIT_ACCESS as u32;
    const ENTRY_RO: u32 = ENTRY_RW | GTF_READONLY as u32;

    #[test]
    fn claims_follow_the_entry() {
        assert_eq!(claim(ENTRY_RW, 7, true), Ok(ENTRY_RW | u32::from(GTF_READING | GTF_WRITING)));
        assert_eq!(claim(ENTRY_RW, 7, false), Ok(ENTRY_RW | u32::from(GTF_READING)));
        assert_eq!(claim(ENTRY_RO, 7, false), Ok(ENTRY_RO | u32::from(GTF_READING)));
        assert_eq!(claim(ENTRY_RO, 7, true), Err(GNTST_GENERAL_ERROR)); // write-pin of a r/o grant
        assert_eq!(claim(ENTRY_RW, 8, false), Err(GNTST_GENERAL_ERROR)); // granted to someone else
        assert_eq!(claim(7 << 16, 7, false), Err(GNTST_GENERAL_ERROR)); // not granted
        assert_eq!(claim((7 << 16) | 2, 7, false), Err(GNTST_GENERAL_ERROR)); // transfer type
                                                                              // A claim on an entry already in use keeps the bits the other use set.
        let busy = ENTRY_RW | u32::from(GTF_READING | GTF_WRITING);
        assert_eq!(claim(busy, 7, false), Ok(busy));
    }

    #[test]
    fn pins_decide_when_bits_clear() {
        let mut g = Grants::new();
        g.pin(1, 5, 0x4_0123, true);
        g.pin(1, 5, 0x9_9999, false); // the frame of the first pin stays
        assert_eq!(g.pinned_frame(1, 5), Some(0x4_0123));
        assert_eq!(g.unpin(1, 5, true), GTF_WRITING); // a reader is left
        assert_eq!(g.unpin(1, 5, false), GTF_READING | GTF_WRITING);
        assert_eq!(g.pinned_frame(1, 5), None);
        assert_eq!(g.unpin(1, 5, false), 0); // nothing pinned: nothing to clear
    }

    #[test]
    fn handles() {
        let mut g = Grants::new();
        let m = Mapping { granter: 1, gref: 5, ipa: 0x40_0000_0000, frame: 0x4_0123, write: false, revoked: false };
        let h0 = g.track(0, m).unwrap();
        let h1 = g.track(0, Mapping { ipa: 0x40_0000_1000, ..m }).unwrap();
        assert_ne!(h0, h1);
        assert!(g.mapped_at(0, 0x40_0000_1000) && !g.mapped_at(1, 0x40_0000_1000));
        assert_eq!(g.lookup(0, h0), Ok(m));
        assert_eq!(g.lookup(1, h0), Err(GNTST_BAD_HANDLE));
        assert_eq!(g.lookup(0, 999), Err(GNTST_BAD_HANDLE));
        assert_eq!(g.involving(1), [(0, h0), (0, h1)]);
        assert_eq!(g.involving(0), [(0, h0), (0, h1)]);
        assert!(g.involving(2).is_empty());
        assert_eq!(g.untrack(0, h0), Ok(m));
        assert_eq!(g.untrack(0, h0), Err(GNTST_BAD_HANDLE)); // twice
        assert!(!g.mapped_at(0, m.ipa));
        assert_eq!(g.track(0, m), Ok(h0)); // the slot is free again
        assert!(g.mapped_at(0, m.ipa));
        // Two mappings at one address (refused by the caller, but counted right): the address
        // stays taken until both are gone.
        let h2 = g.track(0, m).unwrap();
        assert_eq!(g.untrack(0, h2), Ok(m));
        assert!(g.mapped_at(0, m.ipa));
        assert_eq!(g.untrack(0, h1), Ok(Mapping { ipa: 0x40_0000_1000, ..m }));
        assert!(!g.mapped_at(0, 0x40_0000_1000));
        // Freed handles are used again before the table grows.
        assert_eq!(g.track(0, m), Ok(h1));
        assert_eq!(g.track(0, m), Ok(h2));
        assert_eq!(g.track(0, m), Ok(3));
        for _ in 2..MAPTRACK_LIMIT {
            g.track(3, m).unwrap();
        }
        g.track(3, m).unwrap();
        g.track(3, m).unwrap();
        assert_eq!(g.track(3, m), Err(GNTST_NO_DEVICE_SPACE));
    }

    #[test]
    fn revoked_mappings_stay_until_their_mapper_unmaps() {
        let mut g = Grants::new();
        let m = Mapping { granter: 1, gref: 5, ipa: 0x40_0000_0000, frame: 0x4_0123, write: true, revoked: false };
        let h = g.track(0, m).unwrap();
        assert_eq!(g.mark_revoked(0, h), Ok(m));
        assert_eq!(g.lookup(0, h), Ok(Mapping { revoked: true, ..m })); // the backend's unmap finds it
        assert!(g.involving(1).is_empty()); // the granter's next restart does not revoke it again
        assert_eq!(g.involving(0), [(0, h)]); // the mapper's own restart clears it
        assert!(g.mapped_at(0, m.ipa)); // the address stays taken
        assert_eq!(g.mark_revoked(0, 999), Err(GNTST_BAD_HANDLE));
    }
}
