//! Ballooning accounts for one domain: which pages of its planned RAM it has given back to the
//! hypervisor (`XENMEM_decrease_reservation`) and may take again (`XENMEM_populate_physmap`),
//! and the memory target the operator set for it.
//!
//! Static partitioning keeps every page of a domain's plan reserved for it: a page given back
//! leaves the domain's stage-2 and sits in the domain's own pool, so taking it again can never
//! grow the domain past its plan or reach another domain's memory.
//!
//! Invariants: `given` equals the number of bits set in `out`; only frames inside the plan's
//! RAM are ever accepted; a page is given back at most once before it is taken again.

use alloc::vec;
use alloc::vec::Vec;

/// Why a frame was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    /// Not a frame of the domain's planned RAM.
    NotRam,
    /// Given back already (decrease) or still populated (populate).
    WrongState,
    /// Extent order above [`MAX_ORDER`].
    Order,
}

/// Why a memory target was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TargetError {
    /// Above the plan.
    AbovePlan {
        /// The plan's memory in KiB.
        plan_kib: u64,
    },
    /// Below the floor a Linux domain needs to stay alive.
    BelowFloor {
        /// The floor in KiB.
        floor_kib: u64,
    },
}

/// Largest extent order accepted (2 MiB extents).
pub const MAX_ORDER: u32 = 9;
/// Lowest memory target accepted, in KiB.
pub const FLOOR_KIB: u64 = 64 * 1024;

/// One domain's balloon.
#[derive(Clone, Debug)]
pub struct Balloon {
    base_pfn: u64,
    pages: u64,
    out: Vec<u64>,
    given: u64,
    target_kib: u64,
}

impl Balloon {
    /// RAM of `size` bytes at guest-physical `ipa_base` (both 4 KiB aligned), all populated.
    pub fn new(ipa_base: u64, size: u64) -> Self {
        let pages = size >> 12;
        Self {
            base_pfn: ipa_base >> 12,
            pages,
            out: vec![0; pages.div_ceil(64) as usize],
            given: 0,
            target_kib: size >> 10,
        }
    }

    /// Pages in the plan.
    pub fn plan_pages(&self) -> u64 {
        self.pages
    }

    /// Pages the domain holds now.
    pub fn populated(&self) -> u64 {
        self.pages - self.given
    }

    /// Pages given back and held in the domain's pool.
    pub fn given_back(&self) -> u64 {
        self.given
    }

    fn index(&self, gpfn: u64) -> Option<usize> {
        gpfn.checked_sub(self.base_pfn).filter(|&i| i < self.pages).map(|i| i as usize)
    }

    /// Whether `gpfn` is a page of the plan that is given back now.
    pub fn is_out(&self, gpfn: u64) -> bool {
        self.index(gpfn).is_some_and(|i| self.out[i / 64] & (1 << (i % 64)) != 0)
    }

    /// Checks that every page of the extent `[gpfn, gpfn + 2^order)` can be given back
    /// (`give`) or taken again (`!give`), without changing anything.
    pub fn check(&self, gpfn: u64, order: u32, give: bool) -> Result<(), Refused> {
        if order > MAX_ORDER {
            return Err(Refused::Order);
        }
        let n = 1u64 << order;
        if !gpfn.is_multiple_of(n) {
            return Err(Refused::NotRam);
        }
        for f in gpfn..gpfn.checked_add(n).ok_or(Refused::NotRam)? {
            self.index(f).ok_or(Refused::NotRam)?;
            if self.is_out(f) == give {
                return Err(Refused::WrongState);
            }
        }
        Ok(())
    }

    /// Records that `gpfn` was given back.
    pub fn give_back(&mut self, gpfn: u64) -> Result<(), Refused> {
        self.check(gpfn, 0, true)?;
        let i = self.index(gpfn).ok_or(Refused::NotRam)?;
        self.out[i / 64] |= 1 << (i % 64);
        self.given += 1;
        Ok(())
    }

    /// Records that `gpfn` was taken again.
    pub fn take(&mut self, gpfn: u64) -> Result<(), Refused> {
        self.check(gpfn, 0, false)?;
        let i = self.index(gpfn).ok_or(Refused::NotRam)?;
        self.out[i / 64] &= !(1 << (i % 64));
        self.given -= 1;
        Ok(())
    }

    /// Takes every given-back page again (the domain restarts with its whole plan); returns them.
    pub fn refill(&mut self) -> Vec<u64> {
        let mut v = Vec::with_capacity(self.given as usize);
        for (w, bits) in self.out.iter_mut().enumerate() {
            let mut b = *bits;
            while b != 0 {
                let i = b.trailing_zeros() as u64;
                v.push(self.base_pfn + w as u64 * 64 + i);
                b &= b - 1;
            }
            *bits = 0;
        }
        self.given = 0;
        self.target_kib = self.pages << 2;
        v
    }

    /// The memory target in KiB.
    pub fn target_kib(&self) -> u64 {
        self.target_kib
    }

    /// Sets the memory target (KiB): at most the plan, at least [`FLOOR_KIB`] (or the plan when
    /// the plan is smaller).
    pub fn set_target(&mut self, kib: u64) -> Result<(), TargetError> {
        let plan_kib = self.pages << 2;
        let floor_kib = FLOOR_KIB.min(plan_kib);
        if kib > plan_kib {
            return Err(TargetError::AbovePlan { plan_kib });
        }
        if kib < floor_kib {
            return Err(TargetError::BelowFloor { floor_kib });
        }
        self.target_kib = kib;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: u64 = 0x4000_0000;

    #[test]
    fn give_back_and_take_again() {
        let mut b = Balloon::new(BASE, 1 << 20); // 256 pages
        let f = BASE >> 12;
        assert_eq!((b.plan_pages(), b.populated(), b.given_back()), (256, 256, 0));
        b.give_back(f + 3).unwrap();
        b.give_back(f + 255).unwrap();
        assert!(b.is_out(f + 3) && !b.is_out(f + 4));
        assert_eq!(b.give_back(f + 3), Err(Refused::WrongState));
        assert_eq!(b.give_back(f + 256), Err(Refused::NotRam));
        assert_eq!(b.give_back(f - 1), Err(Refused::NotRam));
        assert_eq!(b.give_back(u64::MAX), Err(Refused::NotRam));
        assert_eq!(b.populated(), 254);
        // Taking: only pages that are out; never past the plan.
        assert_eq!(b.take(f + 4), Err(Refused::WrongState));
        assert_eq!(b.take(f + 300), Err(Refused::NotRam));
        b.take(f + 3).unwrap();
        assert_eq!((b.populated(), b.given_back()), (255, 1));
        assert_eq!(b.refill(), [f + 255]);
        assert_eq!((b.populated(), b.given_back()), (256, 0));
    }

    #[test]
    fn extents_are_checked_whole() {
        let mut b = Balloon::new(BASE, 4 << 20);
        let f = BASE >> 12;
        assert_eq!(b.check(f, 9, true), Ok(()));
        assert_eq!(b.check(f + 1, 9, true), Err(Refused::NotRam)); // misaligned extent
        assert_eq!(b.check(f, 10, true), Err(Refused::Order));
        b.give_back(f + 511).unwrap();
        assert_eq!(b.check(f, 9, true), Err(Refused::WrongState));
        assert_eq!(b.check(f, 9, false), Err(Refused::WrongState));
        assert_eq!(b.check(f + 511, 0, false), Ok(()));
        assert_eq!(b.check(f + 1024, 9, true), Err(Refused::NotRam)); // runs past the plan
        assert_eq!(b.check(u64::MAX - 511, 9, true), Err(Refused::NotRam));
    }

    #[test]
    fn targets_stay_inside_the_plan() {
        let mut b = Balloon::new(BASE, 256 << 20);
        assert_eq!(b.target_kib(), 256 * 1024);
        assert_eq!(b.set_target(257 * 1024), Err(TargetError::AbovePlan { plan_kib: 256 * 1024 }));
        assert_eq!(b.set_target(1024), Err(TargetError::BelowFloor { floor_kib: FLOOR_KIB }));
        b.set_target(192 * 1024).unwrap();
        assert_eq!(b.target_kib(), 192 * 1024);
        let mut small = Balloon::new(BASE, 16 << 20);
        assert_eq!(small.set_target(8 * 1024), Err(TargetError::BelowFloor { floor_kib: 16 * 1024 }));
    }
}
