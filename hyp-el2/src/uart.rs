//! The physical console UART (PL011 or BCM2835 mini-UART), polled, transmit only for now.
//! Only the console module calls it, under the console lock.

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
}
