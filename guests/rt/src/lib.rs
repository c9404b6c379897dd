//! `ferrum-rt`: the runtime for small Rust unikernels on ferrum and on Xen on Arm.
//!
//! A unikernel is a `#![no_std]`, `#![no_main]` binary that depends on this crate, names its
//! entry with [`entry!`] and builds with `cargo xtask` (`kernel = "guest:<crate>"` in a
//! deployment). The runtime boots it as an arm64 Image at EL1 with the device tree in x0:
//! identity-mapped MMU (RAM and Xen's shared pages normal memory, the rest of the first GiB
//! device memory), exception vectors, a heap over the rest of RAM (`alloc` works), the virtual
//! timer and the GIC CPU interface (v2 or v3, from the device tree). On a Xen-compatible
//! hypervisor (ferrum, or Xen 4.17 itself) it maps `shared_info`, takes the event-channel upcall
//! on PPI 31, sets up the grant table, connects to xenstore and the PV console when offered.
//!
//! The API:
//! - [`entry!`]`(main)` with `fn main(rt: &mut Runtime)`; returning powers the domain off;
//! - [`println!`]/[`print!`] and [`console::read`] (console input);
//! - [`time`]: [`time::now`], [`time::sleep`], [`time::Instant`] (the virtual counter);
//! - [`Runtime::xen`]: event channels ([`xen::alloc_unbound`], [`xen::bind_interdomain`],
//!   [`xen::Port`]), grants ([`xen::Xen::grant`], [`xen::Xen::revoke`], [`xen::Xen::map`]),
//!   xenstore ([`xen::Xen::store`]: read, write, directory, watch, transactions);
//! - [`Runtime::device`]: a device the deployment passes through, mapped, for the embedded-hal
//!   drivers of [`hal`] ([`hal::Delay`], [`hal::bcm2711::Gpio`]);
//! - [`shutdown`] with a [`ShutdownReason`]; a panic prints its message and shuts down with
//!   `crash`.
//!
//! Limits: one vCPU (vCPU 0); interrupt handlers only record events (no callbacks run in
//! interrupt context). Logic modules ([`dt`], [`ring`], [`xs`], [`events`], [`grants`], [`time`]'s
//! conversions) are plain code, host-tested; `unsafe` lives in `arch` only.
#![cfg_attr(not(test), no_std)]

extern crate alloc;

pub mod blkproto;
pub mod csum;
pub mod dt;
pub mod events;
pub mod grants;
pub mod hal;
pub mod netcfg;
pub mod ring;
pub mod sring;
pub mod time;
pub mod tso;
pub mod xs;

#[cfg(target_os = "none")]
mod arch;
#[cfg(target_os = "none")]
pub mod blkfront;
#[cfg(target_os = "none")]
pub mod console;
#[cfg(target_os = "none")]
pub mod netfront;
#[cfg(target_os = "none")]
mod rt;
#[cfg(target_os = "none")]
pub mod xen;
#[cfg(target_os = "none")]
pub mod xenbus;
/// Fault-tolerant single accesses (MMIO and foreign addresses, SMC, raw hypercalls) for test
/// and hostile-guest code: a fault is returned, not fatal.
#[cfg(target_os = "none")]
pub use arch::probe;
#[cfg(target_os = "none")]
pub use rt::*;
