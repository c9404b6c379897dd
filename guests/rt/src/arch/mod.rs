//! The architecture layer: the only place with `unsafe`. It owns the boot path (arm64 Image
//! header, BSS, identity-mapped MMU, stack), the exception vectors, system registers (counter,
//! virtual timer, interrupt mask: through `aarch64-cpu`'s typed registers), trapped MMIO accessors, the `hvc` conduits (Xen hypercalls
//! and PSCI), typed views of pages shared with the hypervisor, and the global allocator.
//!
//! Invariants: the runtime runs on vCPU 0 only; interrupt handlers never allocate and only
//! touch atomics; MMIO that a hypervisor may trap uses single `ldr`/`str` with a base register
//! (a valid syndrome, ISV = 1); every raw address turned into a reference here is either one of
//! our statics or a page the hypervisor mapped for us (checked page-aligned and non-null).

pub mod gic;
pub mod probe;

use aarch64_cpu::asm::barrier;
use aarch64_cpu::registers::{
    ReadWriteable, Readable, Writeable, CNTFRQ_EL0, CNTVCT_EL0, CNTV_CTL_EL0, CNTV_CVAL_EL0, DAIF,
};
use core::arch::{asm, global_asm};
use core::sync::atomic::{AtomicU32, AtomicU64, AtomicU8};

global_asm!(
    r#"
.section .text.head, "ax"
.global _start
_start:
    b       1f
    .long   0
    .quad   0                      // text_offset
    .quad   __image_size
    .quad   2                      // little endian, 4 KiB pages
    .quad   0, 0, 0
    .ascii  "ARM\x64"
    .long   0
1:  isb
    mrs     x20, cntvct_el0        // hand-off time, for the first-line figure
    mov     x19, x0                // device tree
    mov     x1, #(3 << 20)
    msr     cpacr_el1, x1          // FP/SIMD on before any Rust code
    isb
    adrp    x1, __bss_start
    add     x1, x1, :lo12:__bss_start
    adrp    x2, __bss_end
    add     x2, x2, :lo12:__bss_end
2:  cmp     x1, x2
    b.hs    3f
    str     xzr, [x1], #8
    b       2b
3:  adrp    x1, RT_TTB
    add     x1, x1, :lo12:RT_TTB
    mov     x3, #0x701             // block, AttrIndx 0 (normal WB), inner shareable, AF
    mov     x4, #0x40000000
    // 1-4 GiB (RAM, and Xen's extended region above it), 8-9 GiB (Xen's second RAM bank,
    // where extended regions also lie) and 256-257 GiB (ferrum's extended region): normal.
    orr     x2, x3, x4
    str     x2, [x1, #8]
    add     x2, x2, x4
    str     x2, [x1, #16]
    add     x2, x2, x4
    str     x2, [x1, #24]
    mov     x4, #0x200000000
    orr     x2, x3, x4
    str     x2, [x1, #64]
    mov     x4, #0x4000000000
    orr     x2, x3, x4
    str     x2, [x1, #2048]
    // The first GiB by 2 MiB blocks: device memory, except the grant window and the Xen
    // magic pages (0x3800_0000..0x3920_0000), which are normal memory.
    adrp    x5, RT_TTB_LOW
    add     x5, x5, :lo12:RT_TTB_LOW
    mov     x6, #0
    mov     x8, #0x405             // block, AttrIndx 1 (device), AF
    orr     x8, x8, #(3 << 53)     // PXN | UXN
4:  lsl     x7, x6, #21
    cmp     x6, #448
    b.lo    5f
    cmp     x6, #457
    b.hs    5f
    orr     x7, x7, x3
    b       6f
5:  orr     x7, x7, x8
6:  str     x7, [x5, x6, lsl #3]
    add     x6, x6, #1
    cmp     x6, #512
    b.lo    4b
    orr     x2, x5, #3
    str     x2, [x1]
    adrp    x1, RT_STACK
    add     x1, x1, :lo12:RT_STACK
    add     x1, x1, #({STACK_KIB} / 4), lsl #12
    mov     sp, x1
    mov     x1, #0x04ff            // attr0 normal WB, attr1 device-nGnRE
    msr     mair_el1, x1
    mrs     x1, id_aa64mmfr0_el1
    and     x1, x1, #7
    lsl     x1, x1, #32            // IPS
    mov     x2, #25                // T0SZ: 39-bit VA
    orr     x2, x2, #(1 << 8)      // IRGN0 WB
    orr     x2, x2, #(1 << 10)     // ORGN0 WB
    orr     x2, x2, #(3 << 12)     // SH0 inner
    orr     x2, x2, #(1 << 23)     // EPD1
    orr     x1, x1, x2
    msr     tcr_el1, x1
    adrp    x1, RT_TTB
    add     x1, x1, :lo12:RT_TTB
    msr     ttbr0_el1, x1
    isb
    tlbi    vmalle1
    dsb     nsh
    isb
    mrs     x1, sctlr_el1
    mov     x2, #0x1005            // M, C, I
    orr     x1, x1, x2
    msr     sctlr_el1, x1
    isb
    adrp    x1, rt_vectors
    add     x1, x1, :lo12:rt_vectors
    msr     vbar_el1, x1
    isb
    mov     x0, x19
    mov     x1, x20
    bl      {start}
7:  wfi
    b       7b

.section .text
.balign 2048
rt_vectors:
.rept 4
.balign 0x80
    b       rt_bad
.endr
.balign 0x80
    b       rt_sync
.balign 0x80
    b       rt_irq
.rept 10
.balign 0x80
    b       rt_bad
.endr

// A synchronous exception: while a probe is armed (RT_PROBE[0] != 0, see `probe`), the
// faulting instruction is skipped and the syndrome recorded; otherwise it is fatal.
rt_sync:
    stp     x0, x1, [sp, #-16]!
    adrp    x0, RT_PROBE
    add     x0, x0, :lo12:RT_PROBE
    ldr     x1, [x0]
    cbz     x1, 8f
    str     xzr, [x0]
    mrs     x1, esr_el1
    str     x1, [x0, #8]
    mrs     x1, far_el1
    str     x1, [x0, #16]
    mrs     x1, elr_el1
    add     x1, x1, #4
    msr     elr_el1, x1
    ldp     x0, x1, [sp], #16
    eret
8:  ldp     x0, x1, [sp], #16
    mrs     x0, esr_el1
    mrs     x1, far_el1
    mrs     x2, elr_el1
    b       {sync}
rt_bad:
    mrs     x0, esr_el1
    mrs     x1, far_el1
    mrs     x2, elr_el1
    b       {bad}

// IRQ: the caller-saved integer registers and the whole FP/SIMD file (Rust code may use any
// vector register), then the Rust handler.
rt_irq:
    sub     sp, sp, #(176 + 528)
    stp     x0, x1, [sp]
    isb
    mrs     x0, cntvct_el0
    adrp    x1, {stamp}
    str     x0, [x1, :lo12:{stamp}]
    stp     x2, x3, [sp, #16]
    stp     x4, x5, [sp, #32]
    stp     x6, x7, [sp, #48]
    stp     x8, x9, [sp, #64]
    stp     x10, x11, [sp, #80]
    stp     x12, x13, [sp, #96]
    stp     x14, x15, [sp, #112]
    stp     x16, x17, [sp, #128]
    stp     x18, x29, [sp, #144]
    str     x30, [sp, #160]
    add     x0, sp, #176
    stp     q0, q1, [x0], #32
    stp     q2, q3, [x0], #32
    stp     q4, q5, [x0], #32
    stp     q6, q7, [x0], #32
    stp     q8, q9, [x0], #32
    stp     q10, q11, [x0], #32
    stp     q12, q13, [x0], #32
    stp     q14, q15, [x0], #32
    stp     q16, q17, [x0], #32
    stp     q18, q19, [x0], #32
    stp     q20, q21, [x0], #32
    stp     q22, q23, [x0], #32
    stp     q24, q25, [x0], #32
    stp     q26, q27, [x0], #32
    stp     q28, q29, [x0], #32
    stp     q30, q31, [x0], #32
    mrs     x1, fpsr
    mrs     x2, fpcr
    stp     x1, x2, [x0]
    bl      {irq}
    add     x0, sp, #176
    ldp     q0, q1, [x0], #32
    ldp     q2, q3, [x0], #32
    ldp     q4, q5, [x0], #32
    ldp     q6, q7, [x0], #32
    ldp     q8, q9, [x0], #32
    ldp     q10, q11, [x0], #32
    ldp     q12, q13, [x0], #32
    ldp     q14, q15, [x0], #32
    ldp     q16, q17, [x0], #32
    ldp     q18, q19, [x0], #32
    ldp     q20, q21, [x0], #32
    ldp     q22, q23, [x0], #32
    ldp     q24, q25, [x0], #32
    ldp     q26, q27, [x0], #32
    ldp     q28, q29, [x0], #32
    ldp     q30, q31, [x0], #32
    ldp     x1, x2, [x0]
    msr     fpsr, x1
    msr     fpcr, x2
    ldp     x2, x3, [sp, #16]
    ldp     x4, x5, [sp, #32]
    ldp     x6, x7, [sp, #48]
    ldp     x8, x9, [sp, #64]
    ldp     x10, x11, [sp, #80]
    ldp     x12, x13, [sp, #96]
    ldp     x14, x15, [sp, #112]
    ldp     x16, x17, [sp, #128]
    ldp     x18, x29, [sp, #144]
    ldr     x30, [sp, #160]
    ldp     x0, x1, [sp]
    add     sp, sp, #(176 + 528)
    eret
"#,
    start = sym crate::rt::rt_start,
    sync = sym crate::rt::sync_exception,
    bad = sym crate::rt::bad_exception,
    irq = sym crate::rt::irq_dispatch,
    stamp = sym crate::rt::IRQ_STAMP,
    STACK_KIB = const STACK_SIZE / 1024,
);

#[repr(C, align(4096))]
struct Table([u64; 512]);

#[no_mangle]
static mut RT_TTB: Table = Table([0; 512]);
#[no_mangle]
static mut RT_TTB_LOW: Table = Table([0; 512]);

/// Level-2 tables for the GiBs where passthrough devices are mapped (one each).
#[no_mangle]
static mut RT_TTB_DEV: [Table; DEV_TABLES] = [const { Table([0; 512]) }; DEV_TABLES];
const DEV_TABLES: usize = 4;
/// How many of [`RT_TTB_DEV`] are in use (only `map_device` changes it, on vCPU 0).
static DEV_TABLES_USED: core::sync::atomic::AtomicUsize = core::sync::atomic::AtomicUsize::new(0);

/// Maps `count` 2 MiB blocks from `first` (from [`crate::hal::device_blocks`], which keeps them
/// clear of our RAM and the first GiB's normal window) as device memory (nGnRE, never
/// executable). A GiB mapped as one normal block (RAM space) is split into 2 MiB blocks
/// first, the rest of it staying normal memory; the GiB holding our RAM is refused (it cannot
/// be unmapped while we run from it).
pub fn map_device(first: u64, count: u64, ram: (u64, u64)) -> Result<(), &'static str> {
    const GIB: u64 = 1 << 30;
    const BLOCK: u64 = 2 << 20;
    const NORMAL: u64 = 0x701; // block, AttrIndx 0, inner shareable, AF
    const DEVICE: u64 = 0x405 | 3 << 53; // block, AttrIndx 1, AF, PXN | UXN
    const ADDR: u64 = 0x0000_ffff_ffff_f000;
    let end = first + count * BLOCK;
    let mut gib = first / GIB;
    while gib * GIB < end {
        if gib == ram.0 / GIB && gib != 0 {
            return Err("it lies in the GiB of the domain's RAM");
        }
        // SAFETY: our level-1 table, only changed here and by the boot path, on vCPU 0 with
        // nothing else running; the entry read is an aligned u64 of a static.
        let l1 = unsafe { core::ptr::addr_of!(RT_TTB.0[gib as usize]).read_volatile() };
        let table: *mut Table = if l1 & 3 == 3 {
            (l1 & ADDR) as *mut Table
        } else {
            let i = DEV_TABLES_USED.fetch_add(1, core::sync::atomic::Ordering::Relaxed);
            if i >= DEV_TABLES {
                return Err("devices in more GiBs than the runtime has tables for");
            }
            // SAFETY: a spare table of ours, not yet reachable by the MMU (so plain writes).
            let t = unsafe { core::ptr::addr_of_mut!(RT_TTB_DEV[i]) };
            for k in 0..512u64 {
                let e = if l1 & 3 == 1 { (gib * GIB + k * BLOCK) | NORMAL } else { 0 };
                // SAFETY: as above.
                unsafe { (*t).0[k as usize] = e };
            }
            // SAFETY: replaces one level-1 entry of ours: break (invalid, TLB invalidated for
            // the GiB), then make (the table, which maps what the block did plus nothing else);
            // nothing of ours runs from or points into a GiB other than the RAM one.
            unsafe {
                let e = core::ptr::addr_of_mut!(RT_TTB.0[gib as usize]);
                e.write_volatile(0);
                asm!("dsb ishst", "tlbi vmalle1is", "dsb ish", "isb", options(nostack));
                e.write_volatile(t as u64 | 3);
                asm!("dsb ishst", "isb", options(nostack));
            }
            t
        };
        let lo = first.max(gib * GIB);
        let hi = end.min((gib + 1) * GIB);
        let mut a = lo;
        while a < hi {
            let k = ((a % GIB) / BLOCK) as usize;
            // SAFETY: one level-2 entry of our own table: break, invalidate that address, make
            // it a device block for the same address.
            unsafe {
                let e = core::ptr::addr_of_mut!((*table).0[k]);
                e.write_volatile(0);
                asm!("dsb ishst", "tlbi vaae1is, {}", "dsb ish", in(reg) a >> 12, options(nostack));
                e.write_volatile(a | DEVICE);
                asm!("dsb ishst", "isb", options(nostack));
            }
            a += BLOCK;
        }
        gib += 1;
    }
    Ok(())
}

const STACK_SIZE: usize = 64 * 1024;

#[repr(C, align(16))]
struct Stack([u8; STACK_SIZE]);

#[no_mangle]
#[link_section = ".rt_stack"]
static mut RT_STACK: Stack = Stack([0; STACK_SIZE]);

extern "C" {
    static __image_start: u8;
    static __image_end: u8;
}

/// Where our image starts and ends in RAM (BSS included).
pub fn image_range() -> (u64, u64) {
    (core::ptr::addr_of!(__image_start) as u64, core::ptr::addr_of!(__image_end) as u64)
}

/// The flattened device tree the boot loader passed in x0, as bytes (`totalsize` of them).
pub fn device_tree(addr: u64) -> Option<&'static [u8]> {
    if addr == 0 || !addr.is_multiple_of(8) {
        return None;
    }
    // SAFETY: the hypervisor passes a device tree in x0 inside our RAM, which the boot path maps
    // as normal memory; only its 8-byte header is read before its size is known.
    let hdr = unsafe { core::slice::from_raw_parts(addr as *const u8, 8) };
    let word = |o: usize| u32::from_be_bytes([hdr[o], hdr[o + 1], hdr[o + 2], hdr[o + 3]]);
    let total = word(4) as u64;
    if word(0) != 0xd00d_feed || !(40..=2 << 20).contains(&total) {
        return None;
    }
    // SAFETY: as above, `totalsize` bytes (at most 2 MiB, checked); the heap is placed clear of
    // them, so they stay intact for the rest of the run.
    Some(unsafe { core::slice::from_raw_parts(addr as *const u8, total as usize) })
}

/// The virtual counter, read after an ISB (so it is not read early).
pub fn counter() -> u64 {
    barrier::isb(barrier::SY);
    CNTVCT_EL0.get()
}

/// The counter's frequency in Hz.
pub fn counter_freq() -> u64 {
    CNTFRQ_EL0.get()
}

/// Arms the virtual timer for counter value `cval`.
pub fn timer_arm(cval: u64) {
    CNTV_CVAL_EL0.set(cval);
    CNTV_CTL_EL0.write(CNTV_CTL_EL0::ENABLE::SET + CNTV_CTL_EL0::IMASK::CLEAR);
    barrier::isb(barrier::SY);
}

/// Stops the virtual timer (and so its interrupt).
pub fn timer_off() {
    CNTV_CTL_EL0.set(0);
    barrier::isb(barrier::SY);
}

/// Runs `f` with IRQs masked.
pub fn without_irqs<R>(f: impl FnOnce() -> R) -> R {
    let saved = DAIF.get();
    DAIF.modify(DAIF::I::Masked);
    let r = f();
    DAIF.set(saved);
    r
}

/// Unmasks IRQs (the vector table is installed by the boot path).
pub fn irqs_on() {
    DAIF.modify(DAIF::I::Unmasked);
}

/// Waits until `done()` holds, sleeping in WFI between interrupts. The check runs with IRQs
/// masked, so an interrupt that makes it true cannot slip in between the check and the WFI
/// (WFI wakes on a pending interrupt even while it is masked).
pub fn wait_until(mut done: impl FnMut() -> bool) {
    loop {
        let ready = without_irqs(|| {
            if done() {
                return true;
            }
            aarch64_cpu::asm::wfi();
            false
        });
        if ready {
            return;
        }
    }
}

/// A 32-bit load from a device register.
pub fn mmio_read32(addr: u64) -> u32 {
    let v: u32;
    // SAFETY: `addr` is a register the device tree names, mapped as device memory; a single
    // `ldr` with a base register gives a trapping hypervisor a valid syndrome.
    unsafe { asm!("ldr {v:w}, [{a}]", v = out(reg) v, a = in(reg) addr, options(nostack)) };
    v
}

/// A 32-bit store to a device register.
pub fn mmio_write32(addr: u64, v: u32) {
    // SAFETY: as `mmio_read32`, a single `str` with a base register.
    unsafe { asm!("str {v:w}, [{a}]", v = in(reg) v, a = in(reg) addr, options(nostack)) };
}

/// A Xen hypercall (`hvc #0xEA1`, number in x16, arguments in x0-x4).
pub fn hypercall(nr: u64, a0: u64, a1: u64, a2: u64, a3: u64) -> i64 {
    let r: u64;
    // SAFETY: the Xen-on-Arm hypercall convention; x0-x4 are clobbered by the call, pointers
    // passed are to our own live buffers (see the callers).
    unsafe {
        asm!("hvc #0xea1", in("x16") nr, inout("x0") a0 => r, inout("x1") a1 => _, inout("x2") a2 => _,
             inout("x3") a3 => _, inout("x4") 0u64 => _, options(nostack))
    };
    r as i64
}

/// An SMCCC call through `hvc #0` (PSCI).
pub fn smccc(f: u64, a1: u64, a2: u64, a3: u64) -> i64 {
    let r: u64;
    // SAFETY: SMCCC over HVC; x0-x3 carry arguments and results.
    unsafe {
        asm!("hvc #0", inout("x0") f => r, inout("x1") a1 => _, inout("x2") a2 => _, inout("x3") a3 => _, options(nostack))
    };
    r as i64
}

/// One 4 KiB page shared with the hypervisor or another domain (`shared_info`, a ring page,
/// a grant frame, a page we grant or map), seen through atomics.
#[derive(Clone, Copy)]
pub struct SharedPage(u64);

impl SharedPage {
    /// The page at `addr`: one of our own page-aligned statics or heap pages, or a page the
    /// hypervisor maps at that address for us (the callers say which).
    pub fn at(addr: u64) -> Self {
        assert!(addr != 0 && addr.is_multiple_of(4096), "shared page {addr:#x}");
        Self(addr)
    }

    /// Its address.
    pub fn addr(self) -> u64 {
        self.0
    }

    /// Bytes `off..off + len`.
    pub fn bytes(self, off: usize, len: usize) -> &'static [AtomicU8] {
        assert!(off + len <= 4096);
        // SAFETY: inside one mapped page (checked), which lives for the rest of the run; bytes
        // shared with another agent are only accessed atomically.
        unsafe { core::slice::from_raw_parts((self.0 + off as u64) as *const AtomicU8, len) }
    }

    /// The 32-bit word at `off`.
    pub fn u32_at(self, off: usize) -> &'static AtomicU32 {
        assert!(off.is_multiple_of(4) && off + 4 <= 4096);
        // SAFETY: aligned, inside the page (checked), accessed atomically.
        unsafe { &*((self.0 + off as u64) as *const AtomicU32) }
    }

    /// The 64-bit word at `off`.
    pub fn u64_at(self, off: usize) -> &'static AtomicU64 {
        assert!(off.is_multiple_of(8) && off + 8 <= 4096);
        // SAFETY: aligned, inside the page (checked), accessed atomically.
        unsafe { &*((self.0 + off as u64) as *const AtomicU64) }
    }

    /// 64 words from `off`.
    pub fn words64(self, off: usize) -> &'static [AtomicU64; 64] {
        assert!(off.is_multiple_of(8) && off + 512 <= 4096);
        // SAFETY: aligned, inside the page (checked), accessed atomically.
        unsafe { &*((self.0 + off as u64) as *const [AtomicU64; 64]) }
    }

    /// The page as 1024 32-bit words (shared rings).
    pub fn words32(self) -> &'static [AtomicU32] {
        // SAFETY: the whole page, aligned, accessed atomically.
        unsafe { core::slice::from_raw_parts(self.0 as *const AtomicU32, 1024) }
    }

    /// Copies `src` into the page at `off` (a buffer we own while the peer does not use it:
    /// a transmit page before its request is published).
    pub fn write(self, off: usize, src: &[u8]) {
        assert!(off + src.len() <= 4096);
        // SAFETY: inside the page (checked); the peer only reads it after the release store
        // that publishes the request, so these plain stores are not racing its reads.
        unsafe { copy_bytes((self.0 + off as u64) as *mut u8, src.as_ptr(), src.len()) };
    }

    /// Runs `f` on the first `len` bytes of the page as a plain slice (a buffer we own while the
    /// peer does not use it: a transmit page before its request is published), so a frame is
    /// built in place rather than copied in.
    pub fn with_bytes_mut<R>(self, len: usize, f: impl FnOnce(&mut [u8]) -> R) -> R {
        assert!(len <= 4096);
        // SAFETY: inside the page (checked); the peer only reads it after the release store
        // that publishes the request, and nothing else in this domain aliases the slice for the
        // duration of `f`.
        f(unsafe { core::slice::from_raw_parts_mut(self.0 as *mut u8, len) })
    }

    /// Copies bytes from the page at `off` into `dst` (a receive page after its response was
    /// published; a misbehaving peer writing concurrently only garbles its own data).
    pub fn read(self, off: usize, dst: &mut [u8]) {
        assert!(off + dst.len() <= 4096);
        // SAFETY: inside the page (checked); bytes are plain data, any value is valid.
        unsafe { copy_bytes(dst.as_mut_ptr(), (self.0 + off as u64) as *const u8, dst.len()) };
    }

    /// The 512 words of this page and of the `frames - 1` pages after it (at most 4): the
    /// grant table's frames, mapped one after the other in the grant window.
    pub fn frame_words(self, frames: usize) -> &'static [AtomicU64] {
        assert!((1..=4).contains(&frames), "{frames} grant frames");
        // SAFETY: `SharedPage`s name pages this runtime owns; the grant window's first pages
        // (the only caller's) are mapped normal memory for the program's life, aligned, and
        // accessed atomically.
        unsafe { core::slice::from_raw_parts(self.0 as *const AtomicU64, 512 * frames) }
    }
}

/// A page-aligned, zeroed page in our BSS (for `shared_info`).
#[repr(C, align(4096))]
pub struct PageBuf(pub [u8; 4096]);

static mut SHARED_INFO_PAGE: PageBuf = PageBuf([0; 4096]);

/// The address of the page set aside for `shared_info`.
pub fn shared_info_page() -> u64 {
    core::ptr::addr_of!(SHARED_INFO_PAGE) as u64
}

/// The global allocator: a first-fit free list over the heap region, with IRQs masked while it
/// works (handlers never allocate, but this keeps the lock trivially uncontended).
pub struct Allocator(core::cell::UnsafeCell<linked_list_allocator::Heap>);

// SAFETY: one vCPU; every access happens with IRQs masked (see `alloc`/`dealloc`).
unsafe impl Sync for Allocator {}

#[global_allocator]
static HEAP: Allocator = Allocator(core::cell::UnsafeCell::new(linked_list_allocator::Heap::empty()));

/// Hands the allocator the region `[start, end)` of our RAM (once, at boot).
pub fn heap_init(start: u64, end: u64) {
    without_irqs(|| {
        // SAFETY: called once before any allocation, with a region of our RAM that nothing else
        // uses (the boot path chose it clear of the image and the device tree).
        unsafe { (*HEAP.0.get()).init(start as *mut u8, (end - start) as usize) }
    });
}

/// Bytes in use and free on the heap.
pub fn heap_usage() -> (usize, usize) {
    // SAFETY: reads the allocator's counters with IRQs masked.
    without_irqs(|| unsafe { ((*HEAP.0.get()).used(), (*HEAP.0.get()).free()) })
}

// SAFETY: delegates to the free-list allocator, serialised by masking IRQs on our only vCPU.
unsafe impl core::alloc::GlobalAlloc for Allocator {
    unsafe fn alloc(&self, l: core::alloc::Layout) -> *mut u8 {
        // SAFETY: exclusive access (IRQs masked, one vCPU).
        without_irqs(|| unsafe { (*self.0.get()).allocate_first_fit(l).map_or(core::ptr::null_mut(), |p| p.as_ptr()) })
    }
    unsafe fn dealloc(&self, p: *mut u8, l: core::alloc::Layout) {
        // SAFETY: `p` came from `alloc` with layout `l` (GlobalAlloc contract); exclusive access.
        without_irqs(|| unsafe { (*self.0.get()).deallocate(core::ptr::NonNull::new_unchecked(p), l) })
    }
}

extern "Rust" {
    fn __ferrum_rt_main(rt: &mut crate::Runtime);
}

/// Calls the application's entry point.
pub fn call_main(rt: &mut crate::Runtime) {
    // SAFETY: `__ferrum_rt_main` is defined by the application's `entry!` invocation with
    // exactly this signature (the macro writes it); a binary without it does not link.
    unsafe { __ferrum_rt_main(rt) }
}

/// Copies `len` bytes from `src` to `dst` 64 bytes per step through the SIMD registers (two
/// paired 128-bit loads and stores), the rest with `copy_nonoverlapping`. The toolchain's
/// `memcpy` for this target moves one 64-bit word per loop turn: four instructions per 8
/// bytes, against eight per 64 here, and under TCG every instruction counts (the data pages of
/// blkfront and netfront go through here).
///
/// # Safety
/// `src` readable and `dst` writable for `len` bytes, both normal memory (unaligned SIMD
/// accesses are allowed there), not overlapping.
unsafe fn copy_bytes(dst: *mut u8, src: *const u8, len: usize) {
    let blocks = len / 64;
    if blocks > 0 {
        // SAFETY: `blocks * 64 <= len` bytes read from `src` and written to `dst` (the
        // caller's ranges); v0-v3 are declared clobbered; no stack use.
        unsafe {
            asm!(
                "2:",
                "ldp q0, q1, [{s}]",
                "ldp q2, q3, [{s}, #32]",
                "add {s}, {s}, #64",
                "stp q0, q1, [{d}]",
                "stp q2, q3, [{d}, #32]",
                "add {d}, {d}, #64",
                "subs {n}, {n}, #1",
                "b.ne 2b",
                s = inout(reg) src => _,
                d = inout(reg) dst => _,
                n = inout(reg) blocks => _,
                out("v0") _, out("v1") _, out("v2") _, out("v3") _,
                options(nostack),
            );
        }
    }
    let done = blocks * 64;
    if done < len {
        // SAFETY: the remainder of the caller's ranges.
        unsafe { core::ptr::copy_nonoverlapping(src.add(done), dst.add(done), len - done) };
    }
}
