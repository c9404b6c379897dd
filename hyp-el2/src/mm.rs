//! Memory management at EL2: the static page pool that holds every translation table, the
//! EL2 identity map built from the board record, per-domain stage-2 tables, and raw access to
//! physical memory (identity mapped) for loading guest images.
//!
//! Invariants: pool pages are handed out by an atomic bump counter and never freed; during boot
//! only the boot CPU builds tables, later each domain's stage-2 is changed only under that
//! domain's lock in `p2m`.

use crate::PLATFORM;
use core::ptr::{addr_of, addr_of_mut};
use core::sync::atomic::{AtomicUsize, Ordering};
use hyp_core::pgtable::{Attrs, MapError, PageTable, Regime, TableMemory, ENTRIES};
use platforms::MemKind;

/// Pages in the translation-table pool.
pub const POOL_PAGES: usize = crate::PLATFORM.table_pages;

#[repr(C, align(4096))]
struct Pool([[u64; ENTRIES]; POOL_PAGES]);

static mut POOL: Pool = Pool([[0; ENTRIES]; POOL_PAGES]);
static POOL_NEXT: AtomicUsize = AtomicUsize::new(0);
static mut EL2_ROOT: u64 = 0;

/// The page pool as a [`TableMemory`]. Whoever holds one writes only tables it owns: during
/// boot the boot CPU, later the holder of a domain's `p2m` lock for that domain's tables.
pub struct PoolMem(());

impl PoolMem {
    /// Access to the pool during single-threaded boot.
    ///
    /// # Safety
    /// Only the boot CPU may call this, before secondary CPUs are started.
    pub unsafe fn boot() -> Self {
        Self(())
    }

    /// Access for changing one domain's stage-2 at run time.
    ///
    /// # Safety
    /// The caller holds that domain's `p2m` lock and writes only that domain's tables.
    pub unsafe fn runtime() -> Self {
        Self(())
    }

    /// Pages used so far.
    pub fn used(&self) -> usize {
        POOL_NEXT.load(Ordering::Relaxed)
    }
}

impl TableMemory for PoolMem {
    fn alloc_table(&mut self) -> Option<u64> {
        let next = POOL_NEXT.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < POOL_PAGES).then_some(n + 1));
        // SAFETY: only the address is taken; the page was zeroed BSS and is handed out once.
        next.ok().map(|n| unsafe { addr_of!((*addr_of!(POOL)).0[n]) as u64 })
    }
    fn read(&self, table: u64, idx: usize) -> u64 {
        assert!(idx < ENTRIES && is_pool_page(table));
        // SAFETY: `table` is a pool page (checked) and idx is in range.
        unsafe { core::ptr::read_volatile((table as *const u64).add(idx)) }
    }
    fn write(&mut self, table: u64, idx: usize, val: u64) {
        assert!(idx < ENTRIES && is_pool_page(table));
        // SAFETY: as for `read`; the write is visible to the walker after the caller's barriers.
        unsafe { core::ptr::write_volatile((table as *mut u64).add(idx), val) };
    }
}

fn is_pool_page(a: u64) -> bool {
    let base = addr_of!(POOL) as u64;
    a >= base && a < base + (POOL_PAGES * 4096) as u64 && a.is_multiple_of(4096)
}

/// Builds the EL2 identity map from the board's windows. Runs with the MMU off.
pub fn build_el2_map() {
    // SAFETY: called once by the boot CPU before anything else runs.
    let mut mem = unsafe { PoolMem::boot() };
    let Ok(mut pt) = PageTable::new(&mut mem, Regime::El2) else { halt() };
    for w in PLATFORM.windows {
        let attrs = match w.kind {
            MemKind::Normal => Attrs::RAM,
            MemKind::Device => Attrs::DEVICE,
        };
        if pt.map(&mut mem, w.base, w.base, w.size, attrs).is_err() {
            halt();
        }
    }
    // SAFETY: single-threaded boot; read by `el2_root` on every CPU after this store, which the
    // CPU_ON call orders.
    unsafe { *addr_of_mut!(EL2_ROOT) = pt.root() };
}

fn halt() -> ! {
    loop {
        crate::arch::wfe();
    }
}

/// Root of the EL2 tables for TTBR0_EL2.
pub fn el2_root() -> u64 {
    // SAFETY: written once by the boot CPU before any reader runs.
    unsafe { *addr_of!(EL2_ROOT) }
}

/// Builds stage-2 tables mapping `[ipa, ipa+size)` to `[pa, pa+size)` as normal RAM, each
/// `(ipa, pa, size)` of `devices` as device MMIO and each of `pages` as normal memory.
pub fn build_stage2(
    mem: &mut PoolMem,
    ipa: u64,
    pa: u64,
    size: u64,
    devices: &[(u64, u64, u64)],
    pages: &[(u64, u64, u64)],
) -> Result<u64, MapError> {
    let mut pt = PageTable::new(mem, Regime::Stage2)?;
    if crate::PLATFORM.stage2_leaf == platforms::Stage2Leaf::Page {
        pt = pt.pages_only();
    }
    pt.map(mem, ipa, pa, size, Attrs::RAM)?;
    for &(i, p, s) in devices {
        pt.map(mem, i, p, s, Attrs::DEVICE)?;
    }
    for &(i, p, s) in pages {
        pt.map(mem, i, p, s, Attrs::RAM)?;
    }
    Ok(pt.root())
}

/// Copies `len` bytes between physical addresses (both identity mapped as normal memory).
///
/// # Safety
/// Both ranges must be RAM owned by the caller for the duration and must not overlap.
pub unsafe fn copy_phys(dst: u64, src: u64, len: u64) {
    // SAFETY: caller contract.
    unsafe { crate::arch::copy_bulk(dst as *mut u8, src as *const u8, len as usize) };
}

/// Zeroes `len` bytes at a physical address.
///
/// # Safety
/// The range must be RAM owned by the caller.
pub unsafe fn zero_phys(dst: u64, len: u64) {
    // SAFETY: caller contract.
    unsafe { crate::arch::zero_bulk(dst as *mut u8, len as usize) };
}

/// A read-only view of physical memory.
///
/// # Safety
/// The range must be mapped RAM that nobody writes while the slice lives.
pub unsafe fn phys_slice<'a>(pa: u64, len: u64) -> &'a [u8] {
    // SAFETY: caller contract.
    unsafe { core::slice::from_raw_parts(pa as *const u8, len as usize) }
}

/// Copies physical memory into `buf`.
///
/// # Safety
/// `[pa, pa+len)` must be mapped normal memory (RAM or hypervisor pages).
pub unsafe fn read_phys(pa: u64, buf: &mut [u8]) {
    // SAFETY: caller contract; `buf` is ours.
    unsafe { core::ptr::copy_nonoverlapping(pa as *const u8, buf.as_mut_ptr(), buf.len()) };
}

/// Copies `buf` into physical memory.
///
/// # Safety
/// `[pa, pa+len)` must be mapped normal memory that the caller may write.
pub unsafe fn write_phys(pa: u64, buf: &[u8]) {
    // SAFETY: caller contract.
    unsafe { core::ptr::copy_nonoverlapping(buf.as_ptr(), pa as *mut u8, buf.len()) };
}
