//! embedded-hal 1.0 over the devices a deployment passes through to a unikernel.
//!
//! A device the deployment gives a unikernel (`devices = ["/soc/gpio@7e200000"]`) appears in its
//! device tree at its physical address; [`crate::Runtime::device`] finds it by `compatible` and
//! maps its registers as device memory, giving an [`Mmio`] window. On that, this module offers:
//! - [`Delay`]: [`embedded_hal::delay::DelayNs`] on the virtual counter (sleeping in WFI for
//!   long waits, spinning for short ones);
//! - [`bcm2711::Gpio`]: the Raspberry Pi 4's GPIO block; its [`bcm2711::Pin`]s implement
//!   [`embedded_hal::digital::OutputPin`], [`StatefulOutputPin`](embedded_hal::digital::StatefulOutputPin)
//!   and [`InputPin`](embedded_hal::digital::InputPin), so drivers written against embedded-hal
//!   run unchanged;
//! - [`bsc::I2c`]: the Raspberry Pi 4's I2C masters as an [`embedded_hal::i2c::I2c`].
//!
//! Invariants: an [`Mmio`] only reaches its own window (every offset is checked, accesses are
//! aligned 32-bit single loads and stores); a GPIO pin is handed out once ([`bcm2711::Gpio::pin`]
//! refuses a pin already taken), so two drivers cannot fight over one line. The register
//! arithmetic ([`bcm2711::fsel`], [`bcm2711::bank`]) is plain code, host-tested.

/// Why a device cannot be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceError {
    /// No device node with that `compatible` in our device tree (not passed through).
    NotFound,
    /// Its registers cannot be mapped (why).
    Unmappable(&'static str),
}

impl core::fmt::Display for DeviceError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::NotFound => {
                write!(f, "no such device in this domain's device tree (is it in the deployment's `devices`?)")
            }
            Self::Unmappable(why) => write!(f, "its registers cannot be mapped: {why}"),
        }
    }
}

/// The 2 MiB blocks of our stage-1 translation that hold a device window `base..base + size`:
/// `(first block address, number of blocks)`. Refused: an empty or wrapping window, and one whose
/// blocks touch `ram` (our RAM stays normal memory) or the first GiB's normal window (Xen's
/// grant table and magic pages, `0x3800_0000..0x3920_0000`).
pub fn device_blocks(base: u64, size: u64, ram: (u64, u64)) -> Result<(u64, u64), &'static str> {
    const BLOCK: u64 = 2 << 20;
    let end = base.checked_add(size).filter(|_| size > 0).ok_or("empty or wrapping window")?;
    let first = base & !(BLOCK - 1);
    let last = end.checked_next_multiple_of(BLOCK).ok_or("wrapping window")?;
    let touches = |s: u64, e: u64| first < e && s < last;
    if touches(ram.0, ram.0.saturating_add(ram.1)) {
        return Err("it shares a 2 MiB block with the domain's RAM");
    }
    if touches(0x3800_0000, 0x3920_0000) {
        return Err("it shares a 2 MiB block with Xen's grant table or magic pages");
    }
    if last > 1 << 39 {
        return Err("it lies above the 512 GiB the runtime's stage 1 covers");
    }
    Ok((first, (last - first) / BLOCK))
}

/// A device's register window, mapped as device memory (nGnRE, never executable).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mmio {
    base: u64,
    size: u64,
}

impl Mmio {
    /// The window at `base` (already mapped as device memory; see [`crate::Runtime::device`]).
    #[cfg_attr(not(target_os = "none"), allow(dead_code))] // the runtime hands them out on the target
    pub(crate) const fn new(base: u64, size: u64) -> Self {
        Self { base, size }
    }

    /// Its physical (and virtual) base address.
    pub fn base(&self) -> u64 {
        self.base
    }

    /// Its size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The address of the 32-bit register at `off`; panics outside the window or unaligned (a
    /// driver bug, not a device state).
    #[cfg_attr(not(target_os = "none"), allow(dead_code))]
    fn reg(&self, off: u64) -> u64 {
        assert!(off.is_multiple_of(4) && off + 4 <= self.size, "register {off:#x} outside {:#x} bytes", self.size);
        self.base + off
    }

    /// Reads the 32-bit register at `off`.
    #[cfg(target_os = "none")]
    pub fn read32(&self, off: u64) -> u32 {
        crate::arch::mmio_read32(self.reg(off))
    }

    /// Writes the 32-bit register at `off`.
    #[cfg(target_os = "none")]
    pub fn write32(&self, off: u64, v: u32) {
        crate::arch::mmio_write32(self.reg(off), v)
    }
}

/// [`embedded_hal::delay::DelayNs`] on the virtual counter: waits of 1 ms or more sleep (the
/// vCPU idles in WFI until the timer), shorter ones spin on the counter.
#[derive(Clone, Copy, Debug, Default)]
pub struct Delay;

#[cfg(target_os = "none")]
impl Delay {
    fn wait(d: core::time::Duration) {
        if d >= core::time::Duration::from_millis(1) {
            crate::time::sleep(d);
        } else {
            let until = crate::time::now().after(d);
            while crate::time::now() < until {
                core::hint::spin_loop();
            }
        }
    }
}

#[cfg(target_os = "none")]
impl embedded_hal::delay::DelayNs for Delay {
    fn delay_ns(&mut self, ns: u32) {
        Self::wait(core::time::Duration::from_nanos(u64::from(ns)));
    }

    // Whole waits (the trait's defaults split them into 1 ms or 1 us steps).
    fn delay_us(&mut self, us: u32) {
        Self::wait(core::time::Duration::from_micros(u64::from(us)));
    }

    fn delay_ms(&mut self, ms: u32) {
        Self::wait(core::time::Duration::from_millis(u64::from(ms)));
    }
}

/// The Raspberry Pi 4's GPIO block (BCM2711, `brcm,bcm2711-gpio`): 58 lines, each with a
/// function select (input, output, alternate functions), set/clear registers and a level.
pub mod bcm2711 {
    use super::Mmio;

    /// Lines of the block.
    pub const PINS: u8 = 58;
    /// The `compatible` of its device-tree node.
    pub const COMPATIBLE: &str = "brcm,bcm2711-gpio";
    /// Function-select value: input.
    pub const FSEL_INPUT: u32 = 0b000;
    /// Function-select value: output.
    pub const FSEL_OUTPUT: u32 = 0b001;
    const GPSET0: u64 = 0x1c;
    const GPCLR0: u64 = 0x28;
    const GPLEV0: u64 = 0x34;

    /// Where pin `n`'s function select lives: (register offset, bit shift) of its 3-bit field
    /// (`GPFSELn`, ten pins per register).
    pub const fn fsel(n: u8) -> (u64, u32) {
        ((n as u64 / 10) * 4, (n as u32 % 10) * 3)
    }

    /// Pin `n`'s bank registers: (`GPSETn`, `GPCLRn`, `GPLEVn` offsets, its bit).
    pub const fn bank(n: u8) -> (u64, u64, u64, u32) {
        let b = (n as u64 / 32) * 4;
        (GPSET0 + b, GPCLR0 + b, GPLEV0 + b, 1 << (n % 32))
    }

    /// Why a pin cannot be had.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub enum PinError {
        /// Not a line of the block.
        NoSuchPin(u8),
        /// Handed out already.
        Taken(u8),
    }

    impl core::fmt::Display for PinError {
        fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
            match self {
                Self::NoSuchPin(n) => write!(f, "GPIO{n}: the block has {PINS} lines"),
                Self::Taken(n) => write!(f, "GPIO{n} is handed out already"),
            }
        }
    }

    /// The GPIO block: hands out each pin once.
    #[derive(Debug)]
    pub struct Gpio {
        mmio: Mmio,
        taken: u64,
    }

    impl Gpio {
        /// The block at `mmio` (from [`crate::Runtime::device`] with [`COMPATIBLE`]).
        pub fn new(mmio: Mmio) -> Self {
            Self { mmio, taken: 0 }
        }

        /// Its registers.
        pub fn mmio(&self) -> Mmio {
            self.mmio
        }

        /// Pin `n`, its function unchanged; configure it with [`Pin::into_output`] or
        /// [`Pin::into_input`].
        pub fn pin(&mut self, n: u8) -> Result<Pin, PinError> {
            if n >= PINS {
                return Err(PinError::NoSuchPin(n));
            }
            if self.taken & 1 << n != 0 {
                return Err(PinError::Taken(n));
            }
            self.taken |= 1 << n;
            Ok(Pin { mmio: self.mmio, n })
        }
    }

    /// One GPIO line. Its embedded-hal traits never fail (`Error = Infallible`): the registers
    /// are memory-mapped and always there.
    #[derive(Debug)]
    pub struct Pin {
        #[cfg_attr(not(target_os = "none"), allow(dead_code))]
        mmio: Mmio,
        n: u8,
    }

    impl Pin {
        /// Its line number.
        pub fn number(&self) -> u8 {
            self.n
        }
    }

    #[cfg(target_os = "none")]
    impl Pin {
        fn set_function(&mut self, f: u32) {
            let (off, shift) = fsel(self.n);
            let v = self.mmio.read32(off) & !(0b111 << shift) | f << shift;
            self.mmio.write32(off, v);
        }

        /// Its 3-bit function select as the block reports it.
        pub fn function(&self) -> u32 {
            let (off, shift) = fsel(self.n);
            self.mmio.read32(off) >> shift & 0b111
        }

        /// Makes it an output (driving its last set level).
        pub fn into_output(mut self) -> Self {
            self.set_function(FSEL_OUTPUT);
            self
        }

        /// Makes it an input.
        pub fn into_input(mut self) -> Self {
            self.set_function(FSEL_INPUT);
            self
        }

        /// The line's level as the block reads it (`GPLEVn`).
        pub fn level(&self) -> bool {
            let (_, _, lev, bit) = bank(self.n);
            self.mmio.read32(lev) & bit != 0
        }
    }

    impl embedded_hal::digital::ErrorType for Pin {
        type Error = core::convert::Infallible;
    }

    #[cfg(target_os = "none")]
    impl embedded_hal::digital::OutputPin for Pin {
        fn set_high(&mut self) -> Result<(), Self::Error> {
            let (set, _, _, bit) = bank(self.n);
            self.mmio.write32(set, bit);
            Ok(())
        }

        fn set_low(&mut self) -> Result<(), Self::Error> {
            let (_, clr, _, bit) = bank(self.n);
            self.mmio.write32(clr, bit);
            Ok(())
        }
    }

    #[cfg(target_os = "none")]
    impl embedded_hal::digital::StatefulOutputPin for Pin {
        fn is_set_high(&mut self) -> Result<bool, Self::Error> {
            Ok(self.level())
        }

        fn is_set_low(&mut self) -> Result<bool, Self::Error> {
            Ok(!self.level())
        }
    }

    #[cfg(target_os = "none")]
    impl embedded_hal::digital::InputPin for Pin {
        fn is_high(&mut self) -> Result<bool, Self::Error> {
            Ok(self.level())
        }

        fn is_low(&mut self) -> Result<bool, Self::Error> {
            Ok(!self.level())
        }
    }
}

/// The Broadcom Serial Controller (BSC, `brcm,bcm2711-i2c` / `brcm,bcm2835-i2c`): the Raspberry
/// Pi 4's I2C masters, as an [`embedded_hal::i2c::I2c`] (7-bit addresses), polled.
///
/// A transaction's adjacent operations of one direction are one transfer (their buffers one
/// after the other); a change of direction starts a new transfer. The BSC ends each transfer
/// with a STOP (it can only keep the bus by starting the next transfer before the FIFO runs
/// dry, a race a polled driver does not run): a repeated start becomes STOP + START, which
/// register-pointer devices (TMP102/105, LM75, EEPROMs, most sensors) accept. A transfer
/// holds at most 65,535 bytes (the length register's width).
pub mod bsc {
    // The registers are only touched on the target; the host tests the transfer plan.
    #![cfg_attr(not(target_os = "none"), allow(dead_code, unused_imports))]
    use super::Mmio;
    use embedded_hal::i2c::{ErrorKind, NoAcknowledgeSource, Operation, SevenBitAddress};

    /// The `compatible` of its device-tree node.
    pub const COMPATIBLE: &str = "brcm,bcm2711-i2c";
    const C: u64 = 0x00;
    const S: u64 = 0x04;
    const DLEN: u64 = 0x08;
    const A: u64 = 0x0c;
    const FIFO: u64 = 0x10;
    const C_I2CEN: u32 = 1 << 15;
    const C_ST: u32 = 1 << 7;
    const C_CLEAR: u32 = 0b11 << 4;
    const C_READ: u32 = 1;
    const S_CLKT: u32 = 1 << 9;
    const S_ERR: u32 = 1 << 8;
    const S_RXD: u32 = 1 << 5;
    const S_TXD: u32 = 1 << 4;
    const S_DONE: u32 = 1 << 1;
    /// Status polls before a transfer counts as stuck (far more than a 64 KiB transfer at
    /// 100 kHz needs on real hardware).
    const POLLS: u32 = 50_000_000;

    /// Why a transfer failed.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub enum Error {
        /// Nobody acknowledged (the address, or a byte written).
        NoAcknowledge,
        /// The device held the clock low too long (`CLKT`).
        ClockStretchTimeout,
        /// The controller never finished (no `DONE`).
        Stuck,
        /// More than 65,535 bytes in one direction.
        TooLong,
    }

    impl embedded_hal::i2c::Error for Error {
        fn kind(&self) -> ErrorKind {
            match self {
                Self::NoAcknowledge => ErrorKind::NoAcknowledge(NoAcknowledgeSource::Unknown),
                Self::ClockStretchTimeout | Self::Stuck => ErrorKind::Bus,
                Self::TooLong => ErrorKind::Overrun,
            }
        }
    }

    /// How a transaction's operations become transfers: `(read, first op, ops, bytes)` for
    /// each run of adjacent operations of one direction (`ops` gives each one's direction
    /// and length). Host-tested.
    pub fn transfers(ops: &[(bool, usize)]) -> impl Iterator<Item = (bool, usize, usize, usize)> + '_ {
        let mut i = 0;
        core::iter::from_fn(move || {
            let &(read, _) = ops.get(i)?;
            let first = i;
            let mut bytes = 0;
            while let Some(&(r, n)) = ops.get(i).filter(|(r, _)| *r == read) {
                debug_assert_eq!(r, read);
                bytes += n;
                i += 1;
            }
            Some((read, first, i - first, bytes))
        })
    }

    /// One BSC.
    #[derive(Debug)]
    pub struct I2c {
        mmio: Mmio,
    }

    impl I2c {
        /// The controller at `mmio` (from [`crate::Runtime::device`] with [`COMPATIBLE`]).
        pub fn new(mmio: Mmio) -> Self {
            Self { mmio }
        }
    }

    #[cfg(target_os = "none")]
    impl I2c {
        /// Waits until the status has one of `bits` (or an error), boundedly.
        fn wait(&self, bits: u32) -> Result<u32, Error> {
            for _ in 0..POLLS {
                let s = self.mmio.read32(S);
                if s & S_ERR != 0 {
                    return Err(Error::NoAcknowledge);
                }
                if s & S_CLKT != 0 {
                    return Err(Error::ClockStretchTimeout);
                }
                if s & bits != 0 {
                    return Ok(s);
                }
                core::hint::spin_loop();
            }
            Err(Error::Stuck)
        }

        /// One transfer to or from `addr` over `bufs` (all one direction), ended by a STOP.
        fn transfer(&mut self, addr: u8, read: bool, bytes: usize, ops: &mut [Operation<'_>]) -> Result<(), Error> {
            let len = u32::try_from(bytes).ok().filter(|&n| n <= 0xffff).ok_or(Error::TooLong)?;
            // Clear the last transfer's status and the FIFO (without I2CEN: QEMU's model
            // starts a transfer on any control write that sets it), then one START.
            self.mmio.write32(S, S_CLKT | S_ERR | S_DONE);
            self.mmio.write32(C, C_CLEAR);
            self.mmio.write32(A, u32::from(addr));
            self.mmio.write32(DLEN, len);
            self.mmio.write32(C, C_I2CEN | C_ST | if read { C_READ } else { 0 });
            let r = self.move_bytes(read, ops).and_then(|()| self.wait(S_DONE).map(|_| ()));
            self.mmio.write32(S, S_CLKT | S_ERR | S_DONE);
            if r.is_err() {
                self.mmio.write32(C, C_CLEAR);
            }
            r
        }

        fn move_bytes(&mut self, read: bool, ops: &mut [Operation<'_>]) -> Result<(), Error> {
            for op in ops {
                match op {
                    Operation::Read(buf) if read => {
                        for b in buf.iter_mut() {
                            self.wait(S_RXD)?;
                            *b = self.mmio.read32(FIFO) as u8;
                        }
                    }
                    Operation::Write(buf) if !read => {
                        for &b in buf.iter() {
                            self.wait(S_TXD)?;
                            self.mmio.write32(FIFO, u32::from(b));
                        }
                    }
                    _ => unreachable!("a transfer holds operations of one direction"),
                }
            }
            Ok(())
        }
    }

    impl embedded_hal::i2c::ErrorType for I2c {
        type Error = Error;
    }

    #[cfg(target_os = "none")]
    impl embedded_hal::i2c::I2c<SevenBitAddress> for I2c {
        fn transaction(&mut self, address: u8, operations: &mut [Operation<'_>]) -> Result<(), Self::Error> {
            let shape: heapless::Vec<(bool, usize), 32> = operations
                .iter()
                .map(|op| match op {
                    Operation::Read(b) => (true, b.len()),
                    Operation::Write(b) => (false, b.len()),
                })
                .collect();
            if shape.len() < operations.len() {
                return Err(Error::TooLong);
            }
            for (read, first, n, bytes) in transfers(&shape) {
                self.transfer(address, read, bytes, &mut operations[first..first + n])?;
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::bcm2711::{bank, fsel, Gpio, PinError};
    use super::*;

    #[test]
    fn i2c_operations_become_transfers() {
        let t: Vec<_> = bsc::transfers(&[(false, 1), (false, 2), (true, 2), (true, 0), (false, 3)]).collect();
        assert_eq!(t, [(false, 0, 2, 3), (true, 2, 2, 2), (false, 4, 1, 3)]);
        assert_eq!(bsc::transfers(&[]).count(), 0);
        assert_eq!(bsc::transfers(&[(true, 4)]).collect::<Vec<_>>(), [(true, 0, 1, 4)]);
    }

    #[test]
    fn register_arithmetic() {
        assert_eq!(fsel(0), (0x00, 0));
        assert_eq!(fsel(9), (0x00, 27));
        assert_eq!(fsel(10), (0x04, 0));
        assert_eq!(fsel(42), (0x10, 6));
        assert_eq!(fsel(57), (0x14, 21));
        assert_eq!(bank(0), (0x1c, 0x28, 0x34, 1));
        assert_eq!(bank(31), (0x1c, 0x28, 0x34, 1 << 31));
        assert_eq!(bank(42), (0x20, 0x2c, 0x38, 1 << 10));
    }

    #[test]
    fn pins_are_handed_out_once() {
        let mut g = Gpio::new(Mmio::new(0xfe20_0000, 0xb4));
        let p = g.pin(42).unwrap();
        assert_eq!(p.number(), 42);
        assert_eq!(g.pin(42).unwrap_err(), PinError::Taken(42));
        assert_eq!(g.pin(58).unwrap_err(), PinError::NoSuchPin(58));
        assert!(g.pin(57).is_ok());
    }

    #[test]
    #[should_panic(expected = "outside")]
    fn registers_stay_inside_the_window() {
        Mmio::new(0xfe20_0000, 0xb4).reg(0xb4);
    }

    #[test]
    fn device_windows_map_clear_of_ram() {
        let ram = (0x4000_0000, 32 << 20);
        assert_eq!(device_blocks(0xfe20_0000, 0xb4, ram), Ok((0xfe20_0000, 1)));
        assert_eq!(device_blocks(0x0903_0000, 0x1000, ram), Ok((0x0900_0000, 1)));
        assert_eq!(device_blocks(0x09ff_f000, 0x2000, ram), Ok((0x09e0_0000, 2)));
        assert!(device_blocks(0x4100_0000, 0x1000, ram).is_err());
        assert!(device_blocks(0x4200_0000, 0x1000, ram).is_ok());
        assert!(device_blocks(0x3900_0000, 0x1000, ram).is_err());
        assert!(device_blocks(0, 0, ram).is_err());
        assert!(device_blocks(u64::MAX - 0xfff, 0x1000, ram).is_err());
        assert!(device_blocks(1 << 39, 0x1000, ram).is_err());
    }
}
