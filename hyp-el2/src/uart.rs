//! The physical console UART (PL011 or BCM2835 mini-UART): polled transmit, interrupt-driven
//! receive. Only the console module calls it, under the console lock.
//!
//! The register blocks are `tock-registers` structures with named fields (offsets and bit
//! positions checked at compile time); the one `unsafe` is turning the device-tree base into a
//! reference to the block.

use platforms::UartKind;
use tock_registers::interfaces::{Readable, Writeable};
use tock_registers::registers::{ReadOnly, ReadWrite};
use tock_registers::{register_bitfields, register_structs};

register_bitfields! {u32,
    /// PL011 flag register.
    FR [
        /// Transmit FIFO full.
        TXFF OFFSET(5) NUMBITS(1) [],
        /// Receive FIFO empty.
        RXFE OFFSET(4) NUMBITS(1) []
    ],
    /// PL011 interrupt mask set/clear.
    IMSC [
        /// Receive timeout interrupt.
        RTIM OFFSET(6) NUMBITS(1) [],
        /// Receive interrupt.
        RXIM OFFSET(4) NUMBITS(1) []
    ],
    /// Mini-UART line status.
    LSR [
        /// The transmitter can take a byte.
        TX_EMPTY OFFSET(5) NUMBITS(1) [],
        /// A received byte is waiting.
        DATA_READY OFFSET(0) NUMBITS(1) []
    ],
    /// Mini-UART interrupt enable (the BCM2835 needs bits 0 and 2 for receive).
    IER [
        /// Receive interrupt (with bit 2, which the BCM2835 documents wrongly as transmit).
        RX OFFSET(0) NUMBITS(1) [],
        /// Line status interrupt, required for receive on the BCM2835.
        RX_LINE OFFSET(2) NUMBITS(1) []
    ]
}

register_structs! {
    /// The ARM PL011's registers the console uses.
    Pl011 {
        (0x00 => dr: ReadWrite<u32>),
        (0x04 => _r0),
        (0x18 => fr: ReadOnly<u32, FR::Register>),
        (0x1c => _r1),
        (0x38 => imsc: ReadWrite<u32, IMSC::Register>),
        (0x3c => @END),
    },
    /// The BCM2835 auxiliary mini-UART's registers (from `AUX_MU_IO`).
    MiniUart {
        (0x00 => io: ReadWrite<u32>),
        (0x04 => ier: ReadWrite<u32, IER::Register>),
        (0x08 => _r0),
        (0x14 => lsr: ReadOnly<u32, LSR::Register>),
        (0x18 => @END),
    }
}

/// A physical UART at an identity-mapped MMIO base.
pub struct Uart {
    base: usize,
    kind: UartKind,
}

/// The UART's register block.
enum Regs {
    Pl011(&'static Pl011),
    Mini(&'static MiniUart),
}

impl Regs {
    /// Sends one byte, waiting (boundedly) for room in the transmit FIFO.
    fn send(&self, b: u8) {
        for _ in 0..1_000_000 {
            let room = match self {
                Regs::Pl011(r) => !r.fr.is_set(FR::TXFF),
                Regs::Mini(r) => r.lsr.is_set(LSR::TX_EMPTY),
            };
            if room {
                break;
            }
        }
        match self {
            Regs::Pl011(r) => r.dr.set(u32::from(b)),
            Regs::Mini(r) => r.io.set(u32::from(b)),
        }
    }
}

impl Uart {
    /// Describes the UART; nothing is touched until the first write.
    pub const fn new(base: u64, kind: UartKind) -> Self {
        Self { base: base as usize, kind }
    }

    /// The UART's physical base.
    #[cfg(feature = "trace")]
    pub fn base(&self) -> u64 {
        self.base as u64
    }

    fn regs(&self) -> Regs {
        // SAFETY: `base` is the console UART the device tree (and the platform record) names,
        // identity-mapped as Device memory at EL2 for the hypervisor's whole run; the blocks
        // cover only registers of that UART, accessed through volatile cells.
        unsafe {
            match self.kind {
                UartKind::Pl011 => Regs::Pl011(&*(self.base as *const Pl011)),
                UartKind::MiniUart => Regs::Mini(&*(self.base as *const MiniUart)),
            }
        }
    }

    /// Sends one byte, waiting (boundedly) for room in the transmit FIFO.
    pub fn putc(&self, b: u8) {
        self.regs().send(b);
    }

    /// Sends `bytes` as [`Uart::putc`] does, the register block looked up once.
    #[cfg(feature = "trace")]
    pub fn write_bytes(&self, bytes: &[u8]) {
        let regs = self.regs();
        bytes.iter().for_each(|&b| regs.send(b));
    }

    /// Reads one received byte, if any.
    pub fn getc(&self) -> Option<u8> {
        match self.regs() {
            Regs::Pl011(r) => (!r.fr.is_set(FR::RXFE)).then(|| r.dr.get() as u8),
            Regs::Mini(r) => r.lsr.is_set(LSR::DATA_READY).then(|| r.io.get() as u8),
        }
    }

    /// Turns on the receive (and receive-timeout) interrupt.
    pub fn enable_rx_irq(&self) {
        match self.regs() {
            Regs::Pl011(r) => r.imsc.write(IMSC::RXIM::SET + IMSC::RTIM::SET),
            Regs::Mini(r) => r.ier.write(IER::RX::SET + IER::RX_LINE::SET),
        }
    }
}
