//! The emulated PL011 each domain sees as its console, and the per-domain line buffer that
//! tags output before it reaches the physical UART.
//!
//! Only 32-bit-or-narrower accesses inside the 4 KiB register window reach this code (the trap
//! handler checks the syndrome). Reads of unknown offsets return 0, writes to them are ignored;
//! the transmitter is always ready and never full, the receiver holds up to [`RX_FIFO`] bytes of
//! console input. The interrupt line ([`Pl011::level`]) is `RIS & IMSC != 0`, as on the real
//! part; the arch layer delivers it as a level-sensitive SPI.

/// Guest physical base of the emulated PL011 (Xen's `GUEST_PL011_BASE`).
pub const VUART_BASE: u64 = 0x2200_0000;
/// Size of the register window.
pub const VUART_SIZE: u64 = 0x1000;
/// Guest SPI of the emulated PL011 (Xen's `GUEST_VPL011_SPI`).
pub const VUART_SPI: u32 = 0;

const DR: u64 = 0x000;
const FR: u64 = 0x018;
const IBRD: u64 = 0x024;
const FBRD: u64 = 0x028;
const LCR_H: u64 = 0x02c;
const CR: u64 = 0x030;
const IFLS: u64 = 0x034;
const IMSC: u64 = 0x038;
const RIS: u64 = 0x03c;
const MIS: u64 = 0x040;
const ICR: u64 = 0x044;

const FR_RXFE: u32 = 1 << 4;
const FR_RXFF: u32 = 1 << 6;
const FR_TXFE: u32 = 1 << 7;
const INT_RX: u32 = 1 << 4;
const INT_TX: u32 = 1 << 5;
const INT_RT: u32 = 1 << 6;
/// Depth of the receive FIFO.
pub const RX_FIFO: usize = 32;

/// PrimeCell identification registers 0xfe0..0xffc: PL011 r1p5.
const IDS: [u32; 8] = [0x11, 0x10, 0x34, 0x00, 0x0d, 0xf0, 0x05, 0xb1];

/// Register state of one emulated PL011.
#[derive(Clone, Copy, Debug, Default)]
pub struct Pl011 {
    ibrd: u32,
    fbrd: u32,
    lcr_h: u32,
    cr: u32,
    ifls: u32,
    imsc: u32,
    rx: [u8; RX_FIFO],
    rx_head: usize,
    rx_len: usize,
}

impl Pl011 {
    /// A PL011 out of reset (UART, TX and RX enabled as firmware leaves it).
    pub const fn new() -> Self {
        Self { ibrd: 0, fbrd: 0, lcr_h: 0, cr: 0x301, ifls: 0x12, imsc: 0, rx: [0; RX_FIFO], rx_head: 0, rx_len: 0 }
    }

    /// Queues a received byte; false (byte dropped) when the FIFO is full.
    pub fn push_rx(&mut self, b: u8) -> bool {
        if self.rx_len == RX_FIFO {
            return false;
        }
        self.rx[(self.rx_head + self.rx_len) % RX_FIFO] = b;
        self.rx_len += 1;
        true
    }

    fn ris(&self) -> u32 {
        INT_TX | if self.rx_len > 0 { INT_RX | INT_RT } else { 0 }
    }

    /// The interrupt output.
    pub fn level(&self) -> bool {
        self.ris() & self.imsc != 0
    }

    fn flags(&self) -> u32 {
        FR_TXFE
            | match self.rx_len {
                0 => FR_RXFE,
                RX_FIFO => FR_RXFF,
                _ => 0,
            }
    }

    /// A guest read of the data register: pops a received byte.
    pub fn read_data(&mut self) -> u32 {
        if self.rx_len == 0 {
            return 0;
        }
        let b = self.rx[self.rx_head];
        self.rx_head = (self.rx_head + 1) % RX_FIFO;
        self.rx_len -= 1;
        u32::from(b)
    }

    /// A guest read at `offset` from the base.
    pub fn read(&self, offset: u64) -> u32 {
        match offset {
            DR => 0,
            FR => self.flags(),
            IBRD => self.ibrd,
            FBRD => self.fbrd,
            LCR_H => self.lcr_h,
            CR => self.cr,
            IFLS => self.ifls,
            IMSC => self.imsc,
            RIS => self.ris(),
            MIS => self.ris() & self.imsc,
            0xfe0..=0xffc if offset.is_multiple_of(4) => IDS[((offset - 0xfe0) / 4) as usize],
            _ => 0,
        }
    }

    /// A guest write; returns the byte to transmit for a write to the data register.
    pub fn write(&mut self, offset: u64, val: u32) -> Option<u8> {
        match offset {
            DR => return Some(val as u8),
            IBRD => self.ibrd = val & 0xffff,
            FBRD => self.fbrd = val & 0x3f,
            LCR_H => self.lcr_h = val & 0xff,
            CR => self.cr = val & 0xffff,
            IFLS => self.ifls = val & 0x3f,
            IMSC => self.imsc = val & 0x7ff,
            ICR => {}
            _ => {}
        }
        None
    }
}

/// Longest line kept before it is flushed without a newline.
pub const LINE_MAX: usize = 320;

/// Collects one domain's output into whole lines so lines of different domains never mix.
#[derive(Clone, Copy)]
pub struct LineBuf {
    buf: [u8; LINE_MAX],
    len: usize,
}

impl Default for LineBuf {
    fn default() -> Self {
        Self::new()
    }
}

impl LineBuf {
    /// An empty buffer.
    pub const fn new() -> Self {
        Self { buf: [0; LINE_MAX], len: 0 }
    }

    /// Adds a byte. Returns a complete line (without the newline) when one is ready: at `\n`,
    /// or when the buffer is full. `\r` is dropped; other control bytes become `.`.
    pub fn push(&mut self, b: u8) -> Option<&[u8]> {
        match b {
            b'\n' => {
                let n = self.len;
                self.len = 0;
                return Some(&self.buf[..n]);
            }
            b'\r' => return None,
            0x20..=0x7e | b'\t' => self.buf[self.len] = b,
            _ => self.buf[self.len] = b'.',
        }
        self.len += 1;
        if self.len == LINE_MAX {
            self.len = 0;
            return Some(&self.buf[..LINE_MAX]);
        }
        None
    }

    /// Takes whatever partial line is buffered.
    pub fn take(&mut self) -> &[u8] {
        let n = self.len;
        self.len = 0;
        &self.buf[..n]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registers() {
        let mut u = Pl011::new();
        assert_eq!(u.read(FR) & FR_TXFE, FR_TXFE);
        assert_eq!(u.write(DR, 0x141), Some(0x41));
        assert_eq!(u.write(CR, 0xffff_0301), None);
        assert_eq!(u.read(CR), 0x301);
        assert_eq!(u.read(0xfe0), 0x11);
        assert_eq!(u.read(0xffc), 0xb1);
        assert_eq!(u.read(0xfe1), 0);
        assert_eq!(u.read(0x800), 0);
        u.write(IMSC, INT_TX);
        assert_eq!(u.read(MIS), INT_TX);
    }

    #[test]
    fn receive_fifo_and_interrupt_level() {
        let mut u = Pl011::new();
        assert!(!u.level());
        u.write(IMSC, INT_RX | INT_RT);
        assert!(!u.level());
        assert!(u.push_rx(b'a') && u.push_rx(b'b'));
        assert!(u.level());
        assert_eq!(u.read(FR) & FR_RXFE, 0);
        assert_eq!((u.read_data(), u.read_data()), (0x61, 0x62));
        assert!(!u.level());
        assert_eq!(u.read(FR) & FR_RXFE, FR_RXFE);
        for _ in 0..RX_FIFO {
            assert!(u.push_rx(b'x'));
        }
        assert!(!u.push_rx(b'y'), "full FIFO drops");
        assert_eq!(u.read(FR) & FR_RXFF, FR_RXFF);
    }

    #[test]
    fn lines() {
        let mut l = LineBuf::new();
        for &b in b"hi\r" {
            assert!(l.push(b).is_none());
        }
        assert_eq!(l.push(b'\n').unwrap(), b"hi");
        assert_eq!(l.push(0x1b), None);
        assert_eq!(l.take(), b".");
        let mut n = 0;
        for _ in 0..LINE_MAX * 2 {
            if let Some(line) = l.push(b'x') {
                assert_eq!(line.len(), LINE_MAX);
                n += 1;
            }
        }
        assert_eq!(n, 2);
    }
}
