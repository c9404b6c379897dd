//! The physical console UART (PL011 or BCM2835 mini-UART): polled transmit, interrupt-driven
//! receive. Only the console module calls it, under the console lock.

use core::ptr;
use platforms::UartKind;

/// A physical UART at an identity-mapped MMIO base.
pub struct Uart {
    base: usize,
    kind: UartKind,
}

impl Uart {
    /// Describes the UART; nothing is touched until the first write.
    pub const fn new(base: u64, kind: UartKind) -> Self {
        Self { base: base as usize, kind }
    }

    /// Sends one byte, waiting for room in the transmit FIFO.
    pub fn putc(&self, b: u8) {
        let (status, mask_full_is_set, data) = match self.kind {
            // PL011: FR.TXFF (bit 5) set means full.
            UartKind::Pl011 => (self.base + 0x18, Some(1u32 << 5), self.base),
            // Mini-UART: LSR bit 5 (transmitter empty-able) set means room.
            UartKind::MiniUart => (self.base + 0x14, None, self.base),
        };
        for _ in 0..1_000_000 {
            // SAFETY: `status` is a register of the console UART, mapped Device at EL2.
            let s = unsafe { ptr::read_volatile(status as *const u32) };
            let ready = match mask_full_is_set {
                Some(m) => s & m == 0,
                None => s & (1 << 5) != 0,
            };
            if ready {
                break;
            }
        }
        // SAFETY: `data` is the UART's data register, mapped Device at EL2.
        unsafe { ptr::write_volatile(data as *mut u32, u32::from(b)) };
    }

    /// Reads one received byte, if any.
    pub fn getc(&self) -> Option<u8> {
        let (status, empty_when_set, data) = match self.kind {
            // PL011: FR.RXFE (bit 4) set means empty.
            UartKind::Pl011 => (self.base + 0x18, true, self.base),
            // Mini-UART: LSR bit 0 set means data ready.
            UartKind::MiniUart => (self.base + 0x14, false, self.base),
        };
        // SAFETY: status register of the console UART, mapped Device at EL2.
        let s = unsafe { ptr::read_volatile(status as *const u32) };
        let has = if empty_when_set { s & (1 << 4) == 0 } else { s & 1 != 0 };
        // SAFETY: the UART's data register; reading pops the received byte.
        has.then(|| unsafe { ptr::read_volatile(data as *const u32) } as u8)
    }

    /// Turns on the receive (and receive-timeout) interrupt.
    pub fn enable_rx_irq(&self) {
        match self.kind {
            // SAFETY: PL011 IMSC: RXIM | RTIM; only changes what the UART signals.
            UartKind::Pl011 => unsafe { ptr::write_volatile((self.base + 0x38) as *mut u32, (1 << 4) | (1 << 6)) },
            // SAFETY: mini-UART IER: receive interrupt enable (bits 0 and 2 on the BCM2835).
            UartKind::MiniUart => unsafe { ptr::write_volatile((self.base + 0x04) as *mut u32, 0b101) },
        }
    }
}
