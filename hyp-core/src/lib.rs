//! Pure hypervisor logic, free of registers and `unsafe`, tested on the host with `cargo test`.
//!
//! The EL2 binary (`hyp-el2`) owns the hardware and calls into this crate for every decision
//! that depends on data a guest, the boot loader or the deployment controls: the partition plan
//! and its validation, stage-1/stage-2 page-table construction, exception-syndrome decoding,
//! PSCI emulation, guest device-tree generation and the emulated PL011.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod abslot;
pub mod addr;
pub mod balloon;
pub mod command;
pub mod control;
pub mod diag;
pub mod esr;
pub mod evtchn;
pub mod fdtedit;
pub mod fdtw;
pub mod gicregs;
pub mod gnttab;
pub mod guestdt;
pub mod hostdt;
pub mod hypercall;
pub mod image;
pub mod lifecycle;
pub mod list;
pub mod passthrough;
pub mod pgtable;
pub mod plan;
pub mod psci;
pub mod pvdev;
pub mod savestream;
pub mod sysregs;
pub mod verify;
pub mod vgic;
pub mod vuart;
