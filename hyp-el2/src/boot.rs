//! Entry: the arm64 Image header U-Boot's `booti` checks, the boot CPU path (BSS, stack, page
//! tables, MMU) and the secondary CPU path (PSCI `CPU_ON` target). No Rust code that takes a
//! lock or uses atomics runs before the MMU and caches are on: the boot CPU only runs the
//! page-table builder (plain aligned loads and stores) with the MMU off.

use crate::arch::{isb, read_sysreg, write_sysreg};
use crate::mm;
use core::arch::global_asm;

/// Bytes of stack per CPU.
pub const STACK_SIZE: usize = 64 * 1024;
/// Most physical CPUs.
pub const MAX_CPUS: usize = hyp_core::hostdt::MAX_CPUS;

#[repr(C, align(16))]
pub struct Stacks([[u8; STACK_SIZE]; MAX_CPUS]);

/// Per-CPU EL2 stacks.
#[no_mangle]
pub static mut STACKS: Stacks = Stacks([[0; STACK_SIZE]; MAX_CPUS]);

const TEXT_OFFSET: u64 = crate::PLATFORM.hyp_base - (crate::PLATFORM.hyp_base & !((2 << 20) - 1));

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
    build_tables = sym build_tables,
    enable_mmu = sym enable_mmu,
    primary_main = sym crate::primary_main,
    secondary_main = sym crate::secondary_main,
);

extern "C" {
    /// Entry point for secondary CPUs (PSCI CPU_ON target).
    pub fn secondary_entry();
}

/// Builds the EL2 identity map (boot CPU, MMU off).
extern "C" fn build_tables() {
    mm::build_el2_map();
}

/// Turns on the EL2 MMU and caches with the tables `build_tables` made.
extern "C" fn enable_mmu() {
    let parange = read_sysreg!("id_aa64mmfr0_el1") & 0xf;
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
