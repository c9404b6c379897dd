//! Typed addresses: physical (`PhysAddr`), guest physical (`Ipa`) and guest virtual (`GuestVa`).
//!
//! The types never convert into each other implicitly; a translation is always explicit, so an
//! IPA can never be dereferenced as a physical address by mistake.

use core::fmt;

macro_rules! addr_type {
    ($(#[$m:meta])* $name:ident) => {
        $(#[$m])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
        pub struct $name(pub u64);

        impl $name {
            /// The raw address.
            pub const fn raw(self) -> u64 {
                self.0
            }
            /// `self + off`, or `None` on overflow.
            pub const fn checked_add(self, off: u64) -> Option<Self> {
                match self.0.checked_add(off) {
                    Some(v) => Some(Self(v)),
                    None => None,
                }
            }
            /// Whether the address is a multiple of `align` (a power of two).
            pub const fn is_aligned(self, align: u64) -> bool {
                self.0 & (align - 1) == 0
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "({:#x})"), self.0)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{:#x}", self.0)
            }
        }
    };
}

addr_type!(
    /// A host physical address.
    PhysAddr
);
addr_type!(
    /// An intermediate physical address (guest physical, stage-2 input).
    Ipa
);
addr_type!(
    /// A guest virtual address (stage-1 input of the guest).
    GuestVa
);

/// 4 KiB.
pub const PAGE_SIZE: u64 = 4096;
/// 2 MiB, the level-2 block size.
pub const BLOCK_2M: u64 = 2 << 20;

/// A half-open range of physical memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct PhysRange {
    /// First byte.
    pub base: PhysAddr,
    /// Length in bytes.
    pub size: u64,
}

impl PhysRange {
    /// Builds a range.
    pub const fn new(base: u64, size: u64) -> Self {
        Self { base: PhysAddr(base), size }
    }
    /// One past the last byte (saturating).
    pub const fn end(&self) -> u64 {
        self.base.0.saturating_add(self.size)
    }
    /// Whether the two ranges share a byte.
    pub const fn overlaps(&self, other: &PhysRange) -> bool {
        self.size != 0 && other.size != 0 && self.base.0 < other.end() && other.base.0 < self.end()
    }
    /// Whether `other` lies entirely inside `self`.
    pub const fn contains(&self, other: &PhysRange) -> bool {
        other.base.0 >= self.base.0 && other.end() <= self.end() && self.base.0.checked_add(self.size).is_some()
    }
}

impl fmt::Display for PhysRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}..{:#x}", self.base.0, self.end())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        let a = PhysRange::new(0x1000, 0x1000);
        let b = PhysRange::new(0x1fff, 1);
        let c = PhysRange::new(0x2000, 0x10);
        assert!(a.overlaps(&b));
        assert!(!a.overlaps(&c));
        assert!(a.contains(&b));
        assert!(!a.contains(&c));
        assert!(!PhysRange::new(0, 0).overlaps(&a));
        assert_eq!(PhysRange::new(u64::MAX, 10).end(), u64::MAX);
        assert!(PhysAddr(0x200000).is_aligned(BLOCK_2M));
        assert_eq!(PhysAddr(u64::MAX).checked_add(1), None);
        assert_eq!(alloc_free_fmt(), "0x1000..0x2000");
    }

    fn alloc_free_fmt() -> alloc::string::String {
        alloc::format!("{}", PhysRange::new(0x1000, 0x1000))
    }
}
