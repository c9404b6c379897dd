//! Entry: the arm64 Image header U-Boot's `booti` checks, the boot CPU path (BSS, stack, page
//! tables, MMU) and the secondary CPU paths: the PSCI `CPU_ON` target (context id = CPU index)
//! and the spin-table target (the Pi 4's firmware and QEMU's raspi4b stub), which finds its CPU
//! index by looking its MPIDR up in [`SPIN_MPIDR`]. No Rust code that takes a lock or uses
//! atomics runs before the MMU and caches are on (exclusives hang on the real Pi 4 with caches
//! off): the boot CPU only runs the page-table builder (plain aligned loads and stores) with the
//! MMU off, and secondaries only the MMU switch.

use crate::arch::{isb, write_sysreg};
use crate::mm;
use aarch64_cpu::registers::{Readable, ID_AA64MMFR0_EL1};
use core::arch::global_asm;
use core::sync::atomic::{AtomicU64, Ordering};

/// Bytes of stack per CPU.
pub const STACK_SIZE: usize = 64 * 1024;
/// Most physical CPUs.
pub const MAX_CPUS: usize = hyp_core::hostdt::MAX_CPUS;

#[repr(C, align(16))]
pub struct Stacks([[u8; STACK_SIZE]; MAX_CPUS]);

/// Per-CPU EL2 stacks.
#[no_mangle]
pub static mut STACKS: Stacks = Stacks([[0; STACK_SIZE]; MAX_CPUS]);

/// `booti` places the image at the start of RAM (2 MiB aligned) plus this offset.
const TEXT_OFFSET: u64 = crate::PLATFORM.hyp_base - crate::PLATFORM.dram_base();

/// MPIDR (affinity bits) of each CPU index that may arrive through a spin table; `u64::MAX`
/// for none. Written by the boot CPU and cleaned to the point of coherency before the CPU is
/// released: the spinning CPU reads it with its MMU and caches off.
#[no_mangle]
pub static SPIN_MPIDR: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(u64::MAX) }; MAX_CPUS];

global_asm!(
    r#"
.section .text.head, "ax"
.global _start
_start:
    b       primary_entry
    .long   0
    .quad   {text_offset}
    .quad   __image_size
    .quad   2                      // little endian, 4 KiB pages, placed at RAM base + text_offset
    .quad   0, 0, 0
    .ascii  "ARM\x64"
    .long   0

primary_entry:
    msr     daifset, #0xf
    mov     x19, x0                // DTB physical address
    mrs     x1, CurrentEL
    cmp     x1, #8
    b.ne    not_el2
    adrp    x1, __bss_start
    add     x1, x1, :lo12:__bss_start
    adrp    x2, __bss_end
    add     x2, x2, :lo12:__bss_end
1:  cmp     x1, x2
    b.hs    2f
    str     xzr, [x1], #8
    b       1b
2:  mov     x0, #0
    bl      set_stack
    bl      {build_tables}         // MMU off: page-table builder only
    bl      {enable_mmu}
    mov     x0, x19
    b       {primary_main}

.global secondary_entry
secondary_entry:
    msr     daifset, #0xf
    mov     x19, x0                // CPU index (PSCI context id)
    bl      set_stack
    bl      {enable_mmu}
    mov     x0, x19
    b       {secondary_main}

// Spin-table target: MMU off, any x0. Find this CPU's index by its MPIDR.
.global spin_entry
spin_entry:
    msr     daifset, #0xf
    mrs     x1, mpidr_el1
    movz    x2, #0xffff
    movk    x2, #0xff, lsl #16
    movk    x2, #0xff, lsl #32
    and     x1, x1, x2             // Aff3..Aff0
    adrp    x2, SPIN_MPIDR
    add     x2, x2, :lo12:SPIN_MPIDR
    mov     x0, #0
3:  ldr     x3, [x2, x0, lsl #3]
    cmp     x3, x1
    b.eq    secondary_entry
    add     x0, x0, #1
    cmp     x0, #{max_cpus}
    b.lo    3b
4:  wfe                            // not a CPU we released
    b       4b

// x0 = CPU index -> sp = top of that CPU's stack; TPIDR_EL2 = index.
set_stack:
    msr     tpidr_el2, x0
    adrp    x3, STACKS
    add     x3, x3, :lo12:STACKS
    mov     x2, #{stack_size}
    madd    x1, x0, x2, x2
    add     sp, x3, x1
    ret

not_el2:
    wfe
    b       not_el2
"#,
    text_offset = const TEXT_OFFSET,
    stack_size = const STACK_SIZE,
    max_cpus = const MAX_CPUS,
    build_tables = sym build_tables,
    enable_mmu = sym enable_mmu,
    primary_main = sym crate::primary_main,
    secondary_main = sym crate::secondary_main,
);

extern "C" {
    /// Entry point for secondary CPUs (PSCI CPU_ON target).
    pub fn secondary_entry();
    /// Entry point for secondary CPUs released from a spin table.
    fn spin_entry();
    static __image_start: u8;
    static __image_end: u8;
}

/// Releases CPU `idx` (MPIDR `mpidr`), which spins at `release_addr` with its MMU off: records
/// its MPIDR, cleans the hypervisor image to the point of coherency (the CPU reads the page
/// table root and [`SPIN_MPIDR`] with caches off), writes our entry point to the release address
/// and wakes it with `sev`. The caller has checked that `release_addr` is 8-byte aligned RAM
/// outside every domain and the hypervisor.
pub fn release_spin(idx: usize, mpidr: u64, release_addr: u64) {
    SPIN_MPIDR[idx].store(mpidr, Ordering::Release);
    let start = core::ptr::addr_of!(__image_start) as usize;
    let end = core::ptr::addr_of!(__image_end) as usize;
    crate::arch::clean_dcache_range(start, end - start);
    let entry = (spin_entry as *const ()) as u64;
    // SAFETY: `release_addr` is identity-mapped RAM that belongs to the firmware's spin table
    // (checked by the caller); the spinning CPU only reads it.
    unsafe { core::ptr::write_volatile(release_addr as *mut u64, entry) };
    crate::arch::clean_dcache_range(release_addr as usize, 8);
    crate::arch::sev();
}

/// Builds the EL2 identity map (boot CPU, MMU off).
extern "C" fn build_tables() {
    mm::build_el2_map();
}

/// Turns on the EL2 MMU and caches with the tables `build_tables` made.
extern "C" fn enable_mmu() {
    let parange = ID_AA64MMFR0_EL1.get() & 0xf;
    // SAFETY: the tables identity-map this code, its stack and all hypervisor data with the
    // attributes MAIR_EL2 describes; TLBs are invalidated before the MMU is turned on.
    unsafe {
        write_sysreg!("mair_el2", hyp_core::pgtable::MAIR_EL2);
        write_sysreg!("tcr_el2", hyp_core::pgtable::tcr_el2(parange));
        write_sysreg!("ttbr0_el2", mm::el2_root());
        isb();
        core::arch::asm!("tlbi alle2", "dsb nsh", "ic iallu", "dsb nsh", "isb", options(nostack));
        // M, C, SA, I, plus the RES1 bits of the non-VHE SCTLR_EL2.
        let sctlr = 0x30c5_0830u64 | 1 | (1 << 2) | (1 << 3) | (1 << 12);
        write_sysreg!("sctlr_el2", sctlr);
        isb();
    }
}
