//! `sensor`: a unikernel that owns one of the Raspberry Pi 4's I2C controllers (passed through
//! to it by the deployment) and reads a TI TMP105-compatible temperature sensor on that bus
//! (the TMP102/TMP105/LM75 register map) through embedded-hal 1.0's `I2c` trait only.
//!
//! It takes the controller with `Runtime::device("brcm,bcm2711-i2c")`, then, with a driver
//! written against `embedded_hal::i2c::I2c` alone ([`Tmp105`]):
//! - sets the sensor's resolution to 12 bits and reads the configuration back;
//! - reads the temperature;
//! - reads the high limit (`T_HIGH`), writes a new one and reads it back;
//! - probes an address nobody answers and reports the error kind (no acknowledge).
//!
//! It powers its domain off after. On a real board the firmware muxes the pins
//! (`dtparam=i2c_arm=on` in `config.txt` for I2C1 on GPIO2/3).
//!
//! Boot arguments: `addr=N` (the sensor, default 0x48 = 72), `absent=N` (default 0x49 = 73),
//! `limit=N` (the new high limit in °C, default 45).
#![no_std]
#![no_main]

use embedded_hal::i2c::{Error as _, I2c};
use ferrum_rt::hal::bsc;
use ferrum_rt::{println, Runtime};

ferrum_rt::entry!(main);

/// TMP105 registers.
const TEMPERATURE: u8 = 0;
const CONFIG: u8 = 1;
const T_HIGH: u8 = 3;
/// Configuration bits R1:R0 = 11: 12-bit resolution (0.0625 °C).
const RES_12BIT: u8 = 0b0110_0000;

/// A TMP105 on any embedded-hal I2C bus.
struct Tmp105<I> {
    i2c: I,
    addr: u8,
}

impl<I: I2c> Tmp105<I> {
    fn read16(&mut self, reg: u8) -> Result<u16, I::Error> {
        let mut b = [0u8; 2];
        self.i2c.write_read(self.addr, &[reg], &mut b)?;
        Ok(u16::from_be_bytes(b))
    }

    fn write16(&mut self, reg: u8, v: u16) -> Result<(), I::Error> {
        let [hi, lo] = v.to_be_bytes();
        self.i2c.write(self.addr, &[reg, hi, lo])
    }

    fn config(&mut self) -> Result<u8, I::Error> {
        let mut b = [0u8; 1];
        self.i2c.write_read(self.addr, &[CONFIG], &mut b)?;
        Ok(b[0])
    }

    fn set_config(&mut self, v: u8) -> Result<(), I::Error> {
        self.i2c.write(self.addr, &[CONFIG, v])
    }
}

/// A left-justified 12-bit two's-complement reading in sixteenths of a degree.
fn sixteenths(raw: u16) -> i32 {
    i32::from(raw as i16 >> 4)
}

/// Sixteenths of a degree as `-12.3456` (no floating point).
struct Celsius(i32);

impl core::fmt::Display for Celsius {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let a = self.0.unsigned_abs();
        write!(f, "{sign}{}.{:04}", a / 16, (a % 16) * 625)
    }
}

fn main(rt: &mut Runtime) {
    let arg = |k: &str, d: u32| rt.arg(k).and_then(|v| v.parse().ok()).unwrap_or(d);
    let (addr, absent, limit) = (arg("addr", 0x48) as u8, arg("absent", 0x49) as u8, arg("limit", 45) as i32);
    let mmio = match rt.device(bsc::COMPATIBLE) {
        Ok(m) => m,
        Err(e) => {
            println!("sensor: FAIL: I2C controller ({}): {e}", bsc::COMPATIBLE);
            return;
        }
    };
    println!("sensor: I2C controller at {:#x} ({} bytes), mapped as device memory", mmio.base(), mmio.size());
    let mut t = Tmp105 { i2c: bsc::I2c::new(mmio), addr };
    match t.config().and_then(|before| t.set_config(RES_12BIT).and_then(|()| t.config()).map(|after| (before, after))) {
        Ok((before, after)) => println!("sensor: TMP105 at {addr:#04x}: configuration {before:#04x} -> {after:#04x}"),
        Err(e) => {
            println!("sensor: FAIL: TMP105 at {addr:#04x}: {:?}", e.kind());
            return;
        }
    }
    match t.read16(TEMPERATURE) {
        Ok(raw) => println!("sensor: temperature {} C (raw {raw:#06x})", Celsius(sixteenths(raw))),
        Err(e) => println!("sensor: FAIL: temperature: {:?}", e.kind()),
    }
    let new = ((limit * 16) as i16 as u16) << 4;
    match t.read16(T_HIGH).and_then(|old| t.write16(T_HIGH, new).and_then(|()| t.read16(T_HIGH)).map(|b| (old, b))) {
        Ok((old, back)) => println!(
            "sensor: T_HIGH {} C, set to {} C, reads back {back:#06x}{}",
            Celsius(sixteenths(old)),
            Celsius(sixteenths(new)),
            if back == new { "" } else { " (FAIL: not what was written)" }
        ),
        Err(e) => println!("sensor: FAIL: T_HIGH: {:?}", e.kind()),
    }
    let mut b = [0u8; 1];
    match t.i2c.read(absent, &mut b) {
        Ok(()) => println!("sensor: FAIL: address {absent:#04x} answered"),
        Err(e) => println!("sensor: address {absent:#04x}: no device ({:?})", e.kind()),
    }
    println!("sensor: done");
}
