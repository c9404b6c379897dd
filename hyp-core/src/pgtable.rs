//! Translation-table construction for the EL2 stage-1 regime and for stage-2 (VMSAv8-64,
//! 4 KiB granule, 39-bit input addresses, walks start at level 1).
//!
//! The builder owns the algorithm (block vs page choice, table allocation, overlap detection,
//! descriptor encoding); the memory the tables live in is behind [`TableMemory`], so the same
//! code runs on the host against a fake and in the hypervisor against its page pool.
//!
//! Invariants: a mapping never silently replaces another one (overlap is an error); the largest
//! block that alignment allows is used (1 GiB at level 1, 2 MiB at level 2, else 4 KiB pages),
//! unless the table was made with [`PageTable::pages_only`] (see `platforms::Stage2Leaf`).

use platforms::MemKind;

/// Input address bits (T0SZ = 64 - 39 = 25), walks start at level 1.
pub const VA_BITS: u32 = 39;
/// Entries per table.
pub const ENTRIES: usize = 512;

const VALID: u64 = 1;
const TABLE: u64 = 1 << 1; // with VALID: table (levels 0-2) or page (level 3)
const AF: u64 = 1 << 10;
const SH_INNER: u64 = 0b11 << 8;
const XN: u64 = 1 << 54;
const ADDR_MASK: u64 = 0x0000_ffff_ffff_f000;
/// The access permission (AP / S2AP, bits 7:6) and execute-never (bits 54:53) fields: an entry
/// whose other bits stay may change them in place (the architecture needs no break before
/// make for a permission change).
const PERM_BITS: u64 = (0b11 << 6) | (0b11 << 53);

/// Access permissions of a mapping.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Perm {
    /// Read-only.
    Ro,
    /// Read-write.
    Rw,
}

/// Which translation regime the descriptors are for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Regime {
    /// EL2's own stage-1 (MAIR_EL2 index 0 = Normal WB, index 1 = Device-nGnRE).
    El2,
    /// A guest's stage-2 (MemAttr encodings, S2AP).
    Stage2,
}

/// MAIR_EL2 value matching the attribute indices used for [`Regime::El2`].
pub const MAIR_EL2: u64 = 0xff | (0x04 << 8);

/// Attributes of a mapping.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Attrs {
    /// Memory type.
    pub kind: MemKind,
    /// Permissions.
    pub perm: Perm,
    /// Executable.
    pub exec: bool,
}

impl Attrs {
    /// Normal RAM, read-write, executable.
    pub const RAM: Attrs = Attrs { kind: MemKind::Normal, perm: Perm::Rw, exec: true };
    /// Device MMIO, read-write, never executable.
    pub const DEVICE: Attrs = Attrs { kind: MemKind::Device, perm: Perm::Rw, exec: false };

    fn encode(self, regime: Regime) -> u64 {
        let mut d = AF;
        match regime {
            Regime::El2 => {
                d |= match self.kind {
                    MemKind::Normal => SH_INNER, // AttrIndx 0
                    MemKind::Device => 1 << 2,   // AttrIndx 1
                };
                d |= 1 << 6; // AP[1]: RES1 in the EL2 regime
                if self.perm == Perm::Ro {
                    d |= 1 << 7;
                }
            }
            Regime::Stage2 => {
                d |= match self.kind {
                    MemKind::Normal => (0b1111 << 2) | SH_INNER, // Normal, Inner/Outer WB
                    MemKind::Device => 0b0001 << 2,              // Device-nGnRE
                };
                d |= match self.perm {
                    Perm::Ro => 0b01 << 6,
                    Perm::Rw => 0b11 << 6,
                };
            }
        }
        if !self.exec {
            d |= XN;
        }
        d
    }

    fn decode(d: u64, regime: Regime) -> Attrs {
        let (kind, perm) = match regime {
            Regime::El2 => (
                if (d >> 2) & 7 == 0 { MemKind::Normal } else { MemKind::Device },
                if d & (1 << 7) != 0 { Perm::Ro } else { Perm::Rw },
            ),
            Regime::Stage2 => (
                if (d >> 2) & 0xf == 0b1111 { MemKind::Normal } else { MemKind::Device },
                if (d >> 6) & 3 == 0b11 { Perm::Rw } else { Perm::Ro },
            ),
        };
        Attrs { kind, perm, exec: d & XN == 0 }
    }
}

/// Storage for translation tables, addressed by their physical address.
pub trait TableMemory {
    /// Allocates a zeroed, 4 KiB aligned table; `None` when out of memory.
    fn alloc_table(&mut self) -> Option<u64>;
    /// Reads entry `idx` of the table at `table`.
    fn read(&self, table: u64, idx: usize) -> u64;
    /// Writes entry `idx` of the table at `table`.
    fn write(&mut self, table: u64, idx: usize, val: u64);
    /// Drops cached translations of `va` (for stage 2: of this table's VMID) after a valid entry
    /// covering it was changed or removed; returns once no walker can use the old entry.
    fn invalidate(&mut self, va: u64) {
        let _ = va;
    }
    /// As [`TableMemory::invalidate`], after only the permissions of a valid entry changed
    /// (no break): a memory may defer it and drop the whole table's cached translations once,
    /// after a batch of such changes, before its user relies on them.
    fn invalidate_permission(&mut self, va: u64) {
        self.invalidate(va)
    }
}

/// Why a mapping failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MapError {
    /// Addresses or size not 4 KiB aligned, or size zero.
    Misaligned,
    /// Beyond the 39-bit input range or the 48-bit output range.
    OutOfRange,
    /// Part of the range is already mapped.
    Overlap(u64),
    /// The table pool is exhausted.
    NoMemory,
}

fn shift(level: u32) -> u32 {
    12 + 9 * (3 - level)
}

/// A translation table tree with its root at level 1.
pub struct PageTable {
    root: u64,
    regime: Regime,
    blocks: bool,
}

impl PageTable {
    /// Allocates an empty root table.
    pub fn new(mem: &mut impl TableMemory, regime: Regime) -> Result<Self, MapError> {
        let root = mem.alloc_table().ok_or(MapError::NoMemory)?;
        Ok(Self { root, regime, blocks: true })
    }

    /// Makes every later mapping out of 4 KiB pages, never blocks.
    pub fn pages_only(mut self) -> Self {
        self.blocks = false;
        self
    }

    /// The table tree rooted at `root` (built earlier by [`PageTable::new`] with `blocks`
    /// deciding whether later mappings may use blocks).
    pub fn from_root(root: u64, regime: Regime, blocks: bool) -> Self {
        Self { root, regime, blocks }
    }

    /// Replaces the 4 KiB translation of `va` with `new` (an output address and attributes) or
    /// removes it (`None`), splitting a block that covers `va` into the next level first (break
    /// before make: the block entry is invalidated and its translations dropped before the
    /// table takes its place). Returns the output address it translated to before, if any.
    pub fn set_page(
        &mut self,
        mem: &mut impl TableMemory,
        va: u64,
        new: Option<(u64, Attrs)>,
    ) -> Result<Option<u64>, MapError> {
        if va & 0xfff != 0 || new.is_some_and(|(pa, _)| pa & 0xfff != 0) {
            return Err(MapError::Misaligned);
        }
        if va >= 1 << VA_BITS || new.is_some_and(|(pa, _)| pa >= 1 << 48) {
            return Err(MapError::OutOfRange);
        }
        let mut table = self.root;
        for level in 1..3 {
            let sh = shift(level);
            let idx = ((va >> sh) as usize) & (ENTRIES - 1);
            let e = mem.read(table, idx);
            if e & VALID == 0 {
                if new.is_none() {
                    return Ok(None);
                }
                let t = mem.alloc_table().ok_or(MapError::NoMemory)?;
                mem.write(table, idx, t | VALID | TABLE);
                table = t;
            } else if e & TABLE != 0 {
                table = e & ADDR_MASK;
            } else {
                // A block: rebuild it one level down, then swap it in (break before make).
                let t = mem.alloc_table().ok_or(MapError::NoMemory)?;
                let base = e & ADDR_MASK & !((1u64 << sh) - 1);
                let attrs = e & !ADDR_MASK;
                let sub = 1u64 << shift(level + 1);
                let leaf = if level + 1 == 3 { TABLE } else { 0 };
                for i in 0..ENTRIES {
                    mem.write(t, i, (base + i as u64 * sub) | attrs | leaf);
                }
                mem.write(table, idx, 0);
                mem.invalidate(va & !((1u64 << sh) - 1));
                mem.write(table, idx, t | VALID | TABLE);
                table = t;
            }
        }
        let idx = ((va >> 12) as usize) & (ENTRIES - 1);
        let old = mem.read(table, idx);
        let entry = new.map(|(pa, attrs)| pa | attrs.encode(self.regime) | VALID | TABLE);
        if let Some(e) = entry.filter(|&e| old & VALID != 0 && (old ^ e) & !PERM_BITS == 0) {
            // Only the permissions change (dirty logging's write protection): no break is
            // needed, so a CPU using the page never sees it unmapped.
            mem.write(table, idx, e);
            mem.invalidate_permission(va);
            return Ok(Some(old & ADDR_MASK));
        }
        if old & VALID != 0 {
            mem.write(table, idx, 0);
            mem.invalidate(va);
        }
        if let Some(e) = entry {
            mem.write(table, idx, e);
        }
        Ok((old & VALID != 0).then_some(old & ADDR_MASK))
    }

    /// Physical address of the root table (for TTBR0_EL2 / VTTBR_EL2).
    pub fn root(&self) -> u64 {
        self.root
    }

    /// Maps `[va, va+size)` to `[pa, pa+size)`.
    pub fn map(
        &mut self,
        mem: &mut impl TableMemory,
        va: u64,
        pa: u64,
        size: u64,
        attrs: Attrs,
    ) -> Result<(), MapError> {
        if size == 0 || (va | pa | size) & 0xfff != 0 {
            return Err(MapError::Misaligned);
        }
        let end = va.checked_add(size).ok_or(MapError::OutOfRange)?;
        if end > 1 << VA_BITS || pa.checked_add(size).is_none_or(|e| e > 1 << 48) {
            return Err(MapError::OutOfRange);
        }
        // Check first so that a failed map leaves no partial mapping behind.
        if let Some(hit) = self.first_mapped(mem, self.root, 1, va, end) {
            return Err(MapError::Overlap(hit));
        }
        let desc = attrs.encode(self.regime);
        self.map_level(mem, self.root, 1, va, end, pa, desc)
    }

    fn first_mapped(&self, mem: &impl TableMemory, table: u64, level: u32, va: u64, end: u64) -> Option<u64> {
        let sh = shift(level);
        let mut cur = va;
        while cur < end {
            let idx = ((cur >> sh) as usize) & (ENTRIES - 1);
            let next = ((cur >> sh) + 1) << sh;
            let e = mem.read(table, idx);
            if e & VALID != 0 {
                if level < 3 && e & TABLE != 0 {
                    if let Some(hit) = self.first_mapped(mem, e & ADDR_MASK, level + 1, cur, end.min(next)) {
                        return Some(hit);
                    }
                } else {
                    return Some(cur);
                }
            }
            cur = next;
        }
        None
    }

    #[allow(clippy::too_many_arguments)]
    fn map_level(
        &mut self,
        mem: &mut impl TableMemory,
        table: u64,
        level: u32,
        va: u64,
        end: u64,
        pa: u64,
        desc: u64,
    ) -> Result<(), MapError> {
        let sh = shift(level);
        let block = 1u64 << sh;
        let mut cur = va;
        while cur < end {
            let idx = ((cur >> sh) as usize) & (ENTRIES - 1);
            let next = ((cur >> sh) + 1) << sh;
            let chunk_end = end.min(next);
            let out = pa + (cur - va);
            let whole = cur & (block - 1) == 0 && chunk_end - cur == block && out & (block - 1) == 0;
            if whole && level == 3 {
                mem.write(table, idx, out | desc | VALID | TABLE);
            } else if whole && self.blocks {
                mem.write(table, idx, out | desc | VALID);
            } else {
                let e = mem.read(table, idx);
                let sub = if e & VALID != 0 {
                    e & ADDR_MASK
                } else {
                    let t = mem.alloc_table().ok_or(MapError::NoMemory)?;
                    mem.write(table, idx, t | VALID | TABLE);
                    t
                };
                self.map_level(mem, sub, level + 1, cur, chunk_end, out, desc)?;
            }
            cur = next;
        }
        Ok(())
    }

    /// Translates `va`: output address, attributes and the level of the leaf entry.
    pub fn translate(&self, mem: &impl TableMemory, va: u64) -> Option<(u64, Attrs, u32)> {
        if va >= 1 << VA_BITS {
            return None;
        }
        let mut table = self.root;
        for level in 1..=3 {
            let sh = shift(level);
            let e = mem.read(table, ((va >> sh) as usize) & (ENTRIES - 1));
            if e & VALID == 0 {
                return None;
            }
            if level < 3 && e & TABLE != 0 {
                table = e & ADDR_MASK;
                continue;
            }
            let base = e & ADDR_MASK & !((1u64 << sh) - 1);
            return Some((base | (va & ((1u64 << sh) - 1)), Attrs::decode(e, self.regime), level));
        }
        None
    }
}

/// VTCR_EL2 for these tables (see [`crate::sysregs::vtcr_el2`]).
pub fn vtcr_el2(ps: u64) -> u64 {
    crate::sysregs::vtcr_el2(ps)
}

/// TCR_EL2 for these tables (non-VHE layout): T0SZ=25, WB inner-shareable walks, 4 KiB granule.
pub fn tcr_el2(ps: u64) -> u64 {
    let t0sz = u64::from(64 - VA_BITS);
    (1 << 31) | (1 << 23) | t0sz | (1 << 8) | (1 << 10) | (0b11 << 12) | (ps.min(5) << 16)
}

/// TLB invalidations a change of stage-2 tables defers to its end: the IPAs whose 4 KiB leaves
/// it cleared, up to `N`, or the whole VMID (more than `N` pages, or a permission change of a
/// batch). The hypervisor carries them out before the change's lock is dropped and before any
/// frame it took away is handed on.
#[derive(Clone, Debug)]
pub struct Deferred<const N: usize> {
    ipas: [u64; N],
    n: usize,
    all: bool,
}

/// What a [`Deferred`] asks for at the end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flush<'a> {
    /// Nothing changed.
    Nothing,
    /// These IPAs, then the VMID's stage-1 entries once.
    Ipas(&'a [u64]),
    /// Everything the VMID has cached.
    Vmid,
}

impl<const N: usize> Default for Deferred<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> Deferred<N> {
    /// Nothing deferred yet.
    pub const fn new() -> Self {
        Self { ipas: [0; N], n: 0, all: false }
    }

    /// A leaf at `ipa` was cleared.
    pub fn page(&mut self, ipa: u64) {
        match self.ipas.get_mut(self.n) {
            Some(slot) => {
                *slot = ipa;
                self.n += 1;
            }
            None => self.all = true,
        }
    }

    /// Something needs the whole VMID invalidated.
    pub fn everything(&mut self) {
        self.all = true;
    }

    /// The invalidation to carry out.
    pub fn flush(&self) -> Flush<'_> {
        if self.all {
            Flush::Vmid
        } else if self.n == 0 {
            Flush::Nothing
        } else {
            Flush::Ipas(&self.ipas[..self.n])
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::collections::BTreeMap;
    use alloc::vec;
    use alloc::vec::Vec;

    #[derive(Default)]
    struct FakeMem {
        tables: BTreeMap<u64, Vec<u64>>,
        next: u64,
        limit: usize,
    }

    impl FakeMem {
        fn new(limit: usize) -> Self {
            Self { tables: BTreeMap::new(), next: 0x8000_0000, limit }
        }
    }

    impl TableMemory for FakeMem {
        fn alloc_table(&mut self) -> Option<u64> {
            if self.tables.len() >= self.limit {
                return None;
            }
            let a = self.next;
            self.next += 0x1000;
            self.tables.insert(a, vec![0; ENTRIES]);
            Some(a)
        }
        fn read(&self, t: u64, i: usize) -> u64 {
            self.tables[&t][i]
        }
        fn write(&mut self, t: u64, i: usize, v: u64) {
            self.tables.get_mut(&t).unwrap()[i] = v;
        }
    }

    const MIB: u64 = 1 << 20;
    const GIB: u64 = 1 << 30;

    #[test]
    fn set_page_splits_blocks_and_invalidates() {
        #[derive(Default)]
        struct Inv(FakeMem, Vec<u64>);
        impl TableMemory for Inv {
            fn alloc_table(&mut self) -> Option<u64> {
                self.0.alloc_table()
            }
            fn read(&self, t: u64, i: usize) -> u64 {
                self.0.read(t, i)
            }
            fn write(&mut self, t: u64, i: usize, v: u64) {
                self.0.write(t, i, v)
            }
            fn invalidate(&mut self, va: u64) {
                self.1.push(va);
            }
        }
        let mut m = Inv(FakeMem::new(16), Vec::new());
        let mut pt = PageTable::new(&mut m, Regime::Stage2).unwrap();
        pt.map(&mut m, GIB, 2 * GIB, GIB, Attrs::RAM).unwrap();
        // Removing one page splits the 1 GiB block into 2 MiB blocks, then one of those into pages.
        assert_eq!(pt.set_page(&mut m, GIB + 3 * MIB + 0x5000, None), Ok(Some(2 * GIB + 3 * MIB + 0x5000)));
        assert_eq!(m.1, [GIB, GIB + 2 * MIB, GIB + 3 * MIB + 0x5000]);
        assert!(pt.translate(&m, GIB + 3 * MIB + 0x5000).is_none());
        assert_eq!(pt.translate(&m, GIB + 3 * MIB + 0x4fff).unwrap(), (2 * GIB + 3 * MIB + 0x4fff, Attrs::RAM, 3));
        assert_eq!(pt.translate(&m, GIB + 3 * MIB + 0x6000).unwrap().0, 2 * GIB + 3 * MIB + 0x6000);
        assert_eq!(pt.translate(&m, GIB + 900 * MIB).unwrap(), (2 * GIB + 900 * MIB, Attrs::RAM, 2));
        // Removing it again changes nothing; putting it back maps it without invalidation.
        assert_eq!(pt.set_page(&mut m, GIB + 3 * MIB + 0x5000, None), Ok(None));
        let n = m.1.len();
        let ro = Attrs { perm: Perm::Ro, ..Attrs::RAM };
        assert_eq!(pt.set_page(&mut m, GIB + 3 * MIB + 0x5000, Some((0x7000, ro))), Ok(None));
        assert_eq!(m.1.len(), n);
        assert_eq!(pt.translate(&m, GIB + 3 * MIB + 0x5010).unwrap(), (0x7010, ro, 3));
        // An unmapped address gets fresh tables when something is put there.
        assert_eq!(pt.set_page(&mut m, 0x1000, None), Ok(None));
        assert_eq!(pt.set_page(&mut m, 0x1000, Some((0x9000, Attrs::RAM))), Ok(None));
        assert_eq!(pt.translate(&m, 0x1000).unwrap().0, 0x9000);
        assert_eq!(pt.set_page(&mut m, 0x1001, None), Err(MapError::Misaligned));
        assert_eq!(pt.set_page(&mut m, 1 << 40, None), Err(MapError::OutOfRange));
    }

    #[test]
    fn permission_change_is_made_in_place() {
        // Records every value written to the page's entry: a break writes 0 first.
        struct Rec(FakeMem, Vec<u64>, usize);
        impl TableMemory for Rec {
            fn alloc_table(&mut self) -> Option<u64> {
                self.0.alloc_table()
            }
            fn read(&self, t: u64, i: usize) -> u64 {
                self.0.read(t, i)
            }
            fn write(&mut self, t: u64, i: usize, v: u64) {
                if i == self.2 {
                    self.1.push(v);
                }
                self.0.write(t, i, v)
            }
            fn invalidate(&mut self, _va: u64) {}
        }
        let va = GIB + 0x5000;
        let mut m = Rec(FakeMem::new(16), Vec::new(), 5);
        let mut pt = PageTable::new(&mut m, Regime::Stage2).unwrap().pages_only();
        pt.set_page(&mut m, va, Some((0x7000, Attrs::RAM))).unwrap();
        let ro = Attrs { perm: Perm::Ro, ..Attrs::RAM };
        m.1.clear();
        assert_eq!(pt.set_page(&mut m, va, Some((0x7000, ro))), Ok(Some(0x7000)));
        assert_eq!(pt.set_page(&mut m, va, Some((0x7000, Attrs::RAM))), Ok(Some(0x7000)));
        assert!(m.1.iter().all(|&e| e & VALID != 0), "never unmapped: {:x?}", m.1);
        assert_eq!(pt.translate(&m, va).unwrap(), (0x7000, Attrs::RAM, 3));
        // Another frame, or another memory type, still breaks before it makes.
        m.1.clear();
        pt.set_page(&mut m, va, Some((0x9000, Attrs::RAM))).unwrap();
        assert_eq!(m.1.first(), Some(&0));
        m.1.clear();
        pt.set_page(&mut m, va, Some((0x9000, Attrs::DEVICE))).unwrap();
        assert_eq!(m.1.first(), Some(&0));
    }

    #[test]
    fn gib_block_uses_one_table() {
        let mut m = FakeMem::new(16);
        let mut pt = PageTable::new(&mut m, Regime::Stage2).unwrap();
        pt.map(&mut m, GIB, 2 * GIB, GIB, Attrs::RAM).unwrap();
        assert_eq!(m.tables.len(), 1);
        let (pa, a, level) = pt.translate(&m, GIB + 0x1234).unwrap();
        assert_eq!((pa, a, level), (2 * GIB + 0x1234, Attrs::RAM, 1));
        assert!(pt.translate(&m, 0).is_none());
    }

    #[test]
    fn block_vs_page_choice() {
        let mut m = FakeMem::new(16);
        let mut pt = PageTable::new(&mut m, Regime::Stage2).unwrap();
        // 2 MiB-aligned IPA and PA: 2 MiB blocks, plus a 4 KiB tail.
        pt.map(&mut m, 0x4000_0000, 0x5000_0000, 4 * MIB + 0x1000, Attrs::RAM).unwrap();
        assert_eq!(pt.translate(&m, 0x4000_0000).unwrap().2, 2);
        assert_eq!(pt.translate(&m, 0x4020_0000).unwrap().2, 2);
        assert_eq!(pt.translate(&m, 0x4040_0000).unwrap(), (0x5040_0000, Attrs::RAM, 3));
        assert!(pt.translate(&m, 0x4040_1000).is_none());
        // Misaligned output forces pages even when the input is aligned.
        pt.map(&mut m, 0x8000_0000, 0x5100_1000, 2 * MIB, Attrs::DEVICE).unwrap();
        let (pa, a, l) = pt.translate(&m, 0x801f_f008).unwrap();
        assert_eq!((pa, a, l), (0x5120_0008, Attrs::DEVICE, 3));
    }

    #[test]
    fn pages_only_never_uses_blocks() {
        let mut m = FakeMem::new(16);
        let mut pt = PageTable::new(&mut m, Regime::Stage2).unwrap().pages_only();
        pt.map(&mut m, 0x4000_0000, 0x4000_0000, 4 * MIB, Attrs::RAM).unwrap();
        // Root, one level-2 table, two level-3 tables.
        assert_eq!(m.tables.len(), 4);
        for a in [0x4000_0000, 0x401f_f000, 0x4020_0000, 0x403f_f000] {
            assert_eq!(pt.translate(&m, a).unwrap(), (a, Attrs::RAM, 3));
        }
        assert!(pt.translate(&m, 0x4040_0000).is_none());
    }

    #[test]
    fn overlap_is_rejected_without_side_effects() {
        let mut m = FakeMem::new(16);
        let mut pt = PageTable::new(&mut m, Regime::El2).unwrap();
        pt.map(&mut m, 0x4040_0000, 0x4040_0000, 0x1000, Attrs::RAM).unwrap();
        let before: Vec<_> = m.tables.values().cloned().collect();
        assert_eq!(pt.map(&mut m, 0x4000_0000, 0x4000_0000, 8 * MIB, Attrs::RAM), Err(MapError::Overlap(0x4040_0000)));
        let after: Vec<_> = m.tables.values().cloned().collect();
        assert_eq!(before, after);
        // A block already there also blocks a smaller mapping inside it.
        pt.map(&mut m, 0, 0, GIB, Attrs::DEVICE).unwrap();
        assert_eq!(pt.map(&mut m, 0x1000, 0x1000, 0x1000, Attrs::DEVICE), Err(MapError::Overlap(0x1000)));
    }

    #[test]
    fn argument_checks() {
        let mut m = FakeMem::new(4);
        let mut pt = PageTable::new(&mut m, Regime::Stage2).unwrap();
        assert_eq!(pt.map(&mut m, 0x1001, 0, 0x1000, Attrs::RAM), Err(MapError::Misaligned));
        assert_eq!(pt.map(&mut m, 0, 0, 0, Attrs::RAM), Err(MapError::Misaligned));
        assert_eq!(pt.map(&mut m, 1 << 39, 0, 0x1000, Attrs::RAM), Err(MapError::OutOfRange));
        assert_eq!(pt.map(&mut m, !0xfff, 0, 0x1000, Attrs::RAM), Err(MapError::OutOfRange));
        assert_eq!(pt.map(&mut m, 0, 1 << 48, 0x1000, Attrs::RAM), Err(MapError::OutOfRange));
        assert!(pt.translate(&m, 1 << 39).is_none());
    }

    #[test]
    fn pool_exhaustion_reported() {
        let mut m = FakeMem::new(2);
        let mut pt = PageTable::new(&mut m, Regime::Stage2).unwrap();
        assert_eq!(pt.map(&mut m, 0, 0, 0x1000, Attrs::RAM), Err(MapError::NoMemory));
    }

    #[test]
    fn descriptor_bits() {
        let s2 = Attrs::RAM.encode(Regime::Stage2);
        assert_eq!(s2 & (0xf << 2), 0xf << 2);
        assert_eq!((s2 >> 6) & 3, 3);
        assert_eq!(s2 & XN, 0);
        let dev = Attrs::DEVICE.encode(Regime::Stage2);
        assert_eq!((dev >> 2) & 0xf, 1);
        assert_ne!(dev & XN, 0);
        let ro = Attrs { perm: Perm::Ro, ..Attrs::RAM };
        assert_eq!(Attrs::decode(ro.encode(Regime::Stage2), Regime::Stage2), ro);
        assert_eq!(Attrs::decode(ro.encode(Regime::El2), Regime::El2), ro);
        assert_eq!(Attrs::decode(Attrs::DEVICE.encode(Regime::El2), Regime::El2), Attrs::DEVICE);
    }

    #[test]
    fn control_registers() {
        let v = vtcr_el2(2);
        assert_eq!(v & 0x3f, 25);
        assert_eq!((v >> 6) & 3, 1);
        assert_eq!((v >> 16) & 7, 2);
        assert_eq!((vtcr_el2(6) >> 16) & 7, 5);
        assert_eq!(tcr_el2(2) & 0x3f, 25);
    }

    #[test]
    fn deferred_invalidations_list_pages_then_give_up_for_the_vmid() {
        let mut d = Deferred::<2>::new();
        assert_eq!(d.flush(), Flush::Nothing);
        d.page(0x1000);
        d.page(0x5000);
        assert_eq!(d.flush(), Flush::Ipas(&[0x1000, 0x5000]));
        d.page(0x9000);
        assert_eq!(d.flush(), Flush::Vmid);
        let mut e = Deferred::<4>::default();
        e.page(0x2000);
        e.everything();
        assert_eq!(e.flush(), Flush::Vmid);
    }
}
