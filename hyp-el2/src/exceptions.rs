//! The EL2 vector table and the world switch.
//!
//! While a guest runs, SP_EL2 points at its vCPU's [`GuestRegs`] frame. A trap from the guest
//! saves x0-x30, ELR_EL2 and SPSR_EL2 into that frame, switches to the CPU's hypervisor stack
//! (`stack_top` in the frame) and calls the Rust handler with the frame; returning restores the
//! frame and `eret`s. The frame also names its pCPU, domain and vCPU, so a trap handler needs
//! no look-up to know whose trap it is (the hot paths of DESIGN.md §7 stay short). Nothing else is saved: EL1 system registers and FP/SIMD state stay live in
//! the CPU because each pCPU runs exactly one vCPU. Offsets come from `offset_of!`.
//!
//! An exception taken from EL2 itself is a hypervisor bug: the registers are saved on the
//! current stack and a crash report is printed.

use aarch64_cpu::registers::{Readable, ESR_EL2, FAR_EL2};
use core::arch::global_asm;
use core::mem::offset_of;

/// A vCPU's general-purpose register frame.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct GuestRegs {
    /// x0..x30.
    pub x: [u64; 31],
    /// Guest PC to return to.
    pub elr: u64,
    /// Guest PSTATE to return with.
    pub spsr: u64,
    /// Top of this CPU's hypervisor stack (handler stack while the guest is out).
    pub stack_top: u64,
    /// The pCPU this frame belongs to.
    pub cpu: usize,
    /// Index of the domain whose vCPU runs on it (valid once `bound`).
    pub dom: usize,
    /// That vCPU's index in its domain.
    pub vcpu: usize,
    /// Whether the domain is offered the Xen ABI (decides hypercall dispatch without a
    /// configuration look-up).
    pub xen: bool,
    /// Whether `dom`/`vcpu` were filled in (the pCPU runs a vCPU).
    pub bound: bool,
}

impl GuestRegs {
    /// An empty frame.
    pub const EMPTY: Self =
        Self { x: [0; 31], elr: 0, spsr: 0, stack_top: 0, cpu: 0, dom: 0, vcpu: 0, xen: false, bound: false };
}

global_asm!(
    r#"
// Stores x0-x30, ELR_EL2 and SPSR_EL2 into the GuestRegs frame at sp; leaves x0 = sp.
.macro save_frame
    stp     x0, x1, [sp, #0]
    stp     x2, x3, [sp, #16]
    stp     x4, x5, [sp, #32]
    stp     x6, x7, [sp, #48]
    stp     x8, x9, [sp, #64]
    stp     x10, x11, [sp, #80]
    stp     x12, x13, [sp, #96]
    stp     x14, x15, [sp, #112]
    stp     x16, x17, [sp, #128]
    stp     x18, x19, [sp, #144]
    stp     x20, x21, [sp, #160]
    stp     x22, x23, [sp, #176]
    stp     x24, x25, [sp, #192]
    stp     x26, x27, [sp, #208]
    stp     x28, x29, [sp, #224]
    mrs     x1, elr_el2
    mrs     x2, spsr_el2
    stp     x30, x1, [sp, #240]
    str     x2, [sp, #{spsr}]
    mov     x0, sp
.endm

// From a guest: sp is the vCPU frame; save into it, then switch to the hypervisor stack.
.macro save_guest
    save_frame
    ldr     x1, [sp, #{stack_top}]
    mov     sp, x1
.endm

// From EL2 itself: push a frame on the current stack.
.macro save_hyp
    sub     sp, sp, #{frame_size}
    save_frame
.endm

.section .text.vectors, "ax"
.balign 2048
.global hyp_vectors
hyp_vectors:
// Current EL with SP0: never used.
.balign 0x80
    save_hyp
    mov x1, #0
    b {hyp_exc}
.balign 0x80
    save_hyp
    mov x1, #1
    b {hyp_exc}
.balign 0x80
    save_hyp
    mov x1, #2
    b {hyp_exc}
.balign 0x80
    save_hyp
    mov x1, #3
    b {hyp_exc}
// Current EL with SPx.
.balign 0x80
    save_hyp
    mov x1, #0
    b {hyp_exc}
.balign 0x80
    save_hyp
    mov x1, #1
    b {hyp_exc}
.balign 0x80
    save_hyp
    mov x1, #2
    b {hyp_exc}
.balign 0x80
    save_hyp
    mov x1, #3
    b {hyp_exc}
// Lower EL, AArch64.
.balign 0x80
    b       guest_sync_entry
.balign 0x80
    b       guest_irq_entry
.balign 0x80
    b       guest_fiq_entry
.balign 0x80
    b       guest_serror_entry
// Lower EL, AArch32 (never allowed: HCR_EL2.RW=1 makes EL1 AArch64).
.balign 0x80
    b       guest_fiq_entry
.balign 0x80
    b       guest_fiq_entry
.balign 0x80
    b       guest_fiq_entry
.balign 0x80
    b       guest_fiq_entry

.section .text
guest_sync_entry:
    save_guest
    bl      {guest_sync}
    b       enter_guest
guest_irq_entry:
    save_guest
    mov     x1, #1
    bl      {guest_other}
    b       enter_guest
guest_fiq_entry:
    save_guest
    mov     x1, #2
    bl      {guest_other}
    b       enter_guest
guest_serror_entry:
    save_guest
    mov     x1, #3
    bl      {guest_other}
    b       enter_guest

// x0 = &GuestRegs: restore it and return to the guest.
.global enter_guest
enter_guest:
    mov     sp, x0
    ldr     x2, [sp, #{spsr}]
    ldp     x30, x1, [sp, #240]
    msr     elr_el2, x1
    msr     spsr_el2, x2
    ldp     x0, x1, [sp, #0]
    ldp     x2, x3, [sp, #16]
    ldp     x4, x5, [sp, #32]
    ldp     x6, x7, [sp, #48]
    ldp     x8, x9, [sp, #64]
    ldp     x10, x11, [sp, #80]
    ldp     x12, x13, [sp, #96]
    ldp     x14, x15, [sp, #112]
    ldp     x16, x17, [sp, #128]
    ldp     x18, x19, [sp, #144]
    ldp     x20, x21, [sp, #160]
    ldp     x22, x23, [sp, #176]
    ldp     x24, x25, [sp, #192]
    ldp     x26, x27, [sp, #208]
    ldp     x28, x29, [sp, #224]
    eret
"#,
    spsr = const offset_of!(GuestRegs, spsr),
    stack_top = const offset_of!(GuestRegs, stack_top),
    frame_size = const core::mem::size_of::<GuestRegs>(),
    hyp_exc = sym hyp_exception,
    guest_sync = sym crate::domain::guest_sync,
    guest_other = sym crate::domain::guest_async,
);

// The asm above hard-codes x30/ELR at 240/248; make sure the struct agrees.
const _: () = assert!(offset_of!(GuestRegs, elr) == 248 && offset_of!(GuestRegs, x) == 0);
const _: () = assert!(core::mem::size_of::<GuestRegs>().is_multiple_of(16));

extern "C" {
    static hyp_vectors: u8;
    /// Restores `regs` and returns to the guest. Never returns.
    pub fn enter_guest(regs: *mut GuestRegs) -> !;
}

/// Installs the vector table on this CPU.
pub fn install() {
    // SAFETY: `hyp_vectors` is a 2 KiB aligned table of valid handlers.
    unsafe {
        crate::arch::write_sysreg!("vbar_el2", core::ptr::addr_of!(hyp_vectors) as u64);
    }
    crate::arch::isb();
}

extern "C" fn hyp_exception(regs: &GuestRegs, kind: u64) -> ! {
    let esr = ESR_EL2.get();
    let far = FAR_EL2.get();
    crate::crash::report(regs, kind, esr, far)
}
