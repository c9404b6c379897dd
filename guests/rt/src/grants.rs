//! Grant table v1, granting side (`xen/include/public/grant_table.h`): an entry is
//! `{ u16 flags, u16 domid, u32 frame }`, read here as one little-endian 64-bit word so that
//! granting and revoking are single atomic operations.
//!
//! A grant is published with one release store (frame and domain are visible before the
//! flags that make the entry valid). Revoking compares and swaps the whole entry to zero only
//! while the hypervisor has neither `GTF_reading` nor `GTF_writing` set: a page that another
//! domain still has mapped is never taken back (the caller gets [`GrantError::InUse`] and may
//! retry). References below [`FIRST_REF`] are reserved, as Linux reserves them.

use core::sync::atomic::{AtomicU64, Ordering};
use xen_abi::gnttab::{GTF_PERMIT_ACCESS, GTF_READING, GTF_READONLY, GTF_WRITING};

/// First grant reference handed out (0-7 are reserved for tools).
pub const FIRST_REF: u32 = 8;

/// A grant reference.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GrantRef(pub u32);

/// Why a grant operation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GrantError {
    /// Every entry is in use.
    Full,
    /// The other domain still has the page mapped (`GTF_reading`/`GTF_writing`).
    InUse,
    /// The reference was not granted by us.
    NotGranted,
}

/// The entries of the grant table's frames, and which ones we handed out.
pub struct GrantTable<'a> {
    entries: &'a [AtomicU64],
    used: [u64; 64],
}

fn flags(e: u64) -> u16 {
    e as u16
}

impl<'a> GrantTable<'a> {
    /// A table over `entries` (at most 4096 are used).
    pub fn new(entries: &'a [AtomicU64]) -> Self {
        let mut used = [0u64; 64];
        used[0] = (1 << FIRST_REF) - 1;
        Self { entries: &entries[..entries.len().min(4096)], used }
    }

    /// Grants `domid` access to our frame `frame` (read-only when `readonly`).
    pub fn grant(&mut self, domid: u16, frame: u32, readonly: bool) -> Result<GrantRef, GrantError> {
        let r = (0..self.entries.len()).find(|&i| self.used[i / 64] & (1 << (i % 64)) == 0).ok_or(GrantError::Full)?;
        self.used[r / 64] |= 1 << (r % 64);
        let fl = GTF_PERMIT_ACCESS | if readonly { GTF_READONLY } else { 0 };
        self.entries[r].store(u64::from(fl) | u64::from(domid) << 16 | u64::from(frame) << 32, Ordering::Release);
        Ok(GrantRef(r as u32))
    }

    /// The entry's flags as the hypervisor left them.
    pub fn flags(&self, r: GrantRef) -> u16 {
        self.entries.get(r.0 as usize).map_or(0, |e| flags(e.load(Ordering::Acquire)))
    }

    /// Takes a grant back; fails with [`GrantError::InUse`] while the page is mapped.
    pub fn revoke(&mut self, r: GrantRef) -> Result<(), GrantError> {
        let i = r.0 as usize;
        if i >= self.entries.len() || i < FIRST_REF as usize || self.used[i / 64] & (1 << (i % 64)) == 0 {
            return Err(GrantError::NotGranted);
        }
        let e = &self.entries[i];
        let mut cur = e.load(Ordering::Acquire);
        loop {
            if flags(cur) & (GTF_READING | GTF_WRITING) != 0 {
                return Err(GrantError::InUse);
            }
            match e.compare_exchange(cur, 0, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => break,
                Err(now) => cur = now,
            }
        }
        self.used[i / 64] &= !(1 << (i % 64));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grant_writes_the_v1_entry_and_revoke_respects_the_busy_flags() {
        let e: Vec<AtomicU64> = (0..16).map(|_| AtomicU64::new(0)).collect();
        let mut t = GrantTable::new(&e);
        let r = t.grant(3, 0x41234, false).unwrap();
        assert_eq!(r, GrantRef(8));
        let raw = e[8].load(Ordering::Relaxed).to_le_bytes();
        assert_eq!(u16::from_le_bytes([raw[0], raw[1]]), GTF_PERMIT_ACCESS);
        assert_eq!(u16::from_le_bytes([raw[2], raw[3]]), 3);
        assert_eq!(u32::from_le_bytes([raw[4], raw[5], raw[6], raw[7]]), 0x41234);
        let ro = t.grant(4, 1, true).unwrap();
        assert_eq!(t.flags(ro), GTF_PERMIT_ACCESS | GTF_READONLY);

        // The peer maps it: the hypervisor sets GTF_reading | GTF_writing.
        e[8].fetch_or(u64::from(GTF_READING | GTF_WRITING), Ordering::Relaxed);
        assert_eq!(t.revoke(r), Err(GrantError::InUse));
        e[8].fetch_and(!u64::from(GTF_WRITING), Ordering::Relaxed);
        assert_eq!(t.revoke(r), Err(GrantError::InUse));
        e[8].fetch_and(!u64::from(GTF_READING), Ordering::Relaxed);
        assert_eq!(t.revoke(r), Ok(()));
        assert_eq!(e[8].load(Ordering::Relaxed), 0);
        assert_eq!(t.revoke(r), Err(GrantError::NotGranted));
        assert_eq!(t.revoke(GrantRef(2)), Err(GrantError::NotGranted));
        assert_eq!(t.grant(5, 2, false), Ok(GrantRef(8)), "a revoked reference is reused");
    }

    #[test]
    fn a_full_table_says_so() {
        let e: Vec<AtomicU64> = (0..10).map(|_| AtomicU64::new(0)).collect();
        let mut t = GrantTable::new(&e);
        assert!(t.grant(1, 1, false).is_ok());
        assert!(t.grant(1, 2, false).is_ok());
        assert_eq!(t.grant(1, 3, false), Err(GrantError::Full));
    }
}
