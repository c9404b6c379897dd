//! The console: [`print!`](crate::print)/[`println!`](crate::println) and input, over the best
//! device the platform offers, chosen at boot:
//!
//! 1. the Xen PV console ring (`io/console.h`), when the hypervisor publishes one through
//!    `HVM_PARAM_CONSOLE_PFN` (ferrum does for every Xen-aware domain);
//! 2. the PL011 / SBSA UART the device tree names (`/chosen/stdout-path`, else the first
//!    `arm,pl011` or `arm,sbsa-uart` node): what ferrum gives plain guests and what Xen offers a
//!    dom0less domU (`vpl011`);
//! 3. `HYPERVISOR_console_io` as a last resort.
//!
//! Invariants: output is serialised by masking IRQs (one vCPU); the ring is written only
//! through [`ByteRing`], which refuses corrupt indices from the other end.

use crate::arch::{self, SharedPage};
use crate::ring::ByteRing;
use core::fmt::{self, Write};
use core::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering};
use xen_abi::cons;

const NONE: u8 = 0;
const UART: u8 = 1;
const PV: u8 = 2;
const HYPERCALL: u8 = 3;

static KIND: AtomicU8 = AtomicU8::new(NONE);
static ADDR: AtomicU64 = AtomicU64::new(0);
static PORT: AtomicU32 = AtomicU32::new(0);
static FIRST_LINE: AtomicU64 = AtomicU64::new(0);

/// What the console writes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Device {
    /// Nothing found: output is dropped.
    None,
    /// A PL011-compatible UART at this address.
    Uart(u64),
    /// The Xen PV console ring page at this address, notified through this port.
    Pv(u64, u32),
    /// `HYPERVISOR_console_io`.
    Hypercall,
}

/// Switches the console to `d`.
pub fn set_device(d: Device) {
    let (k, a, p) = match d {
        Device::None => (NONE, 0, 0),
        Device::Uart(a) => (UART, a, 0),
        Device::Pv(a, p) => (PV, a, p),
        Device::Hypercall => (HYPERCALL, 0, 0),
    };
    ADDR.store(a, Ordering::Relaxed);
    PORT.store(p, Ordering::Relaxed);
    KIND.store(k, Ordering::Release);
}

/// The device in use.
pub fn device() -> Device {
    match KIND.load(Ordering::Acquire) {
        UART => Device::Uart(ADDR.load(Ordering::Relaxed)),
        PV => Device::Pv(ADDR.load(Ordering::Relaxed), PORT.load(Ordering::Relaxed)),
        HYPERCALL => Device::Hypercall,
        _ => Device::None,
    }
}

/// Counter value when the first line had been handed to the console device (0: not yet).
pub fn first_line_ticks() -> u64 {
    FIRST_LINE.load(Ordering::Relaxed)
}

const FR: u64 = 0x18;
const FR_TXFF: u32 = 1 << 5;
const FR_RXFE: u32 = 1 << 4;

fn out_ring(page: SharedPage) -> ByteRing<'static> {
    ByteRing::new(
        page.bytes(cons::OUT, cons::OUT_SIZE as usize),
        page.u32_at(cons::OUT_CONS),
        page.u32_at(cons::OUT_PROD),
    )
}

fn in_ring(page: SharedPage) -> ByteRing<'static> {
    ByteRing::new(page.bytes(cons::IN, cons::IN_SIZE as usize), page.u32_at(cons::IN_CONS), page.u32_at(cons::IN_PROD))
}

fn write_bytes(bytes: &[u8]) {
    match device() {
        Device::None => {}
        Device::Uart(base) => {
            for &b in bytes {
                if b == b'\n' {
                    uart_put(base, b'\r');
                }
                uart_put(base, b);
            }
        }
        Device::Pv(page, port) => {
            let ring = out_ring(SharedPage::at(page));
            let mut rest = bytes;
            let mut stalls = 0;
            while !rest.is_empty() {
                match ring.write(rest) {
                    Ok(0) => {
                        // Full: let the backend drain it.
                        crate::xen::notify(port);
                        crate::xen::yield_cpu();
                        stalls += 1;
                        if stalls > 100_000 {
                            return;
                        }
                    }
                    Ok(n) => rest = &rest[n..],
                    Err(_) => return, // the backend broke the ring: drop output
                }
            }
            crate::xen::notify(port);
        }
        Device::Hypercall => {
            crate::xen::console_io_write(bytes);
        }
    }
}

fn uart_put(base: u64, b: u8) {
    let mut spins = 0u32;
    while arch::mmio_read32(base + FR) & FR_TXFF != 0 && spins < 1_000_000 {
        spins += 1;
        core::hint::spin_loop();
    }
    arch::mmio_write32(base, u32::from(b));
}

/// Reads waiting input bytes into `buf` without blocking; returns how many.
pub fn read(buf: &mut [u8]) -> usize {
    match device() {
        Device::Uart(base) => {
            let mut n = 0;
            while n < buf.len() && arch::mmio_read32(base + FR) & FR_RXFE == 0 {
                buf[n] = arch::mmio_read32(base) as u8;
                n += 1;
            }
            n
        }
        Device::Pv(page, port) => {
            let n = in_ring(SharedPage::at(page)).read(buf).unwrap_or(0);
            if n > 0 {
                crate::xen::notify(port);
            }
            n
        }
        _ => 0,
    }
}

/// Waits for input and reads it into `buf`; returns how many bytes (at least 1).
pub fn read_blocking(buf: &mut [u8]) -> usize {
    if buf.is_empty() {
        return 0;
    }
    loop {
        let n = read(buf);
        if n > 0 {
            return n;
        }
        match device() {
            Device::Pv(_, port) => crate::xen::Port(port).wait(),
            _ => crate::time::sleep(core::time::Duration::from_millis(10)),
        }
    }
}

/// Waits for input until the counter reaches `deadline` and reads it into `buf`; returns how
/// many bytes (0: the deadline passed first), so a loop waiting for input can still kick its
/// watchdog and honour the control domain's requests.
pub fn read_until(buf: &mut [u8], deadline: u64) -> usize {
    if buf.is_empty() {
        return 0;
    }
    loop {
        let n = read(buf);
        if n > 0 || arch::counter() >= deadline {
            return n;
        }
        match device() {
            Device::Pv(_, port) => {
                crate::xen::Port(port).wait_until(deadline);
            }
            _ => crate::time::sleep(core::time::Duration::from_millis(10)),
        }
    }
}

struct Sink {
    buf: [u8; 256],
    len: usize,
}

impl Sink {
    fn flush(&mut self) {
        write_bytes(&self.buf[..self.len]);
        self.len = 0;
    }
}

impl Write for Sink {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for &b in s.as_bytes() {
            if self.len == self.buf.len() {
                self.flush();
            }
            self.buf[self.len] = b;
            self.len += 1;
        }
        Ok(())
    }
}

#[doc(hidden)]
pub fn _print(args: fmt::Arguments<'_>) {
    arch::without_irqs(|| {
        let mut s = Sink { buf: [0; 256], len: 0 };
        let _ = s.write_fmt(args);
        s.flush();
        if FIRST_LINE.load(Ordering::Relaxed) == 0 {
            FIRST_LINE.store(arch::counter(), Ordering::Relaxed);
        }
    });
}

/// Prints to the console.
#[macro_export]
macro_rules! print {
    ($($arg:tt)*) => { $crate::console::_print(format_args!($($arg)*)) };
}

/// Prints a line to the console (one write per line, so lines of one domain stay whole).
#[macro_export]
macro_rules! println {
    () => { $crate::console::_print(format_args!("\n")) };
    ($($arg:tt)*) => { $crate::console::_print(format_args!("{}\n", format_args!($($arg)*))) };
}
