//! The hypervisor console: one lock around the physical UART so lines from the hypervisor and
//! from every domain come out whole. Hypervisor lines start with `(hyp) `, domain lines with
//! `[name] `.

use crate::sync::SpinLock;
use crate::uart::Uart;
use core::fmt::{self, Write};

static CONSOLE: SpinLock<Option<Uart>> = SpinLock::new(None);

/// Sets the UART the console writes to.
pub fn init(uart: Uart) {
    *CONSOLE.lock() = Some(uart);
}

struct Out<'a>(&'a Uart);

impl Write for Out<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for b in s.bytes() {
            if b == b'\n' {
                self.0.putc(b'\r');
            }
            self.0.putc(b);
        }
        Ok(())
    }
}

/// Reads one byte of input from the physical UART, if any.
pub fn getc() -> Option<u8> {
    CONSOLE.lock().as_ref().and_then(|u| u.getc())
}

/// Lets the UART interrupt on input.
pub fn enable_input() {
    if let Some(u) = CONSOLE.lock().as_ref() {
        u.enable_rx_irq();
    }
}

/// Prints a hypervisor line.
pub fn hyp_line(args: fmt::Arguments<'_>) {
    let g = CONSOLE.lock();
    if let Some(u) = g.as_ref() {
        let mut o = Out(u);
        let _ = o.write_str("(hyp) ");
        let _ = o.write_fmt(args);
        let _ = o.write_str("\n");
    }
}

/// Prints one line of a domain's output, tagged with its name.
pub fn domain_line(name: &str, line: &[u8]) {
    let g = CONSOLE.lock();
    if let Some(u) = g.as_ref() {
        let mut o = Out(u);
        let _ = write!(o, "[{name}] ");
        for &b in line {
            u.putc(b);
        }
        let _ = o.write_str("\n");
    }
}

/// Echoes bytes typed at the hypervisor's command line.
pub fn echo(bytes: &[u8]) {
    let g = CONSOLE.lock();
    if let Some(u) = g.as_ref() {
        for &b in bytes {
            if b == b'\n' {
                u.putc(b'\r');
            }
            u.putc(b);
        }
    }
}

/// Prints without waiting long for the lock: used on the crash path, where the lock may be
/// held by the CPU that crashed.
pub fn emergency(args: fmt::Arguments<'_>) {
    let g = crate::sync::try_lock_for(&CONSOLE, 1_000_000);
    let fallback = Uart::new(crate::PLATFORM.uart_base, crate::PLATFORM.uart_kind);
    let u = match &g {
        Some(g) => g.as_ref().unwrap_or(&fallback),
        None => &fallback,
    };
    let mut o = Out(u);
    let _ = o.write_fmt(args);
}

/// `println!` for the hypervisor's own messages.
macro_rules! hprintln {
    ($($arg:tt)*) => { $crate::console::hyp_line(format_args!($($arg)*)) };
}
pub(crate) use hprintln;
