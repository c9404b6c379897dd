//! `blinky`: a unikernel that owns the Raspberry Pi 4's GPIO block (passed through to it by the
//! deployment) and drives it through embedded-hal 1.0 traits only.
//!
//! It takes the block with `Runtime::device("brcm,bcm2711-gpio")`, makes `pin` (default 42, the
//! Pi 4's green activity LED) an output and blinks it `count` times (default 3) every `ms`
//! milliseconds (default 100) with a driver written against `OutputPin` + `StatefulOutputPin`
//! and `DelayNs` alone ([`blink`]); after each edge it reads the line's level back from the
//! block (`GPLEVn`) and prints it with the raw registers. An `input` pin (default 17) is made an
//! input and read through `InputPin`. It ends with the LED off and powers its domain off.
//!
//! Boot arguments: `pin=N`, `count=N`, `ms=N`, `input=N`.
#![no_std]
#![no_main]

use embedded_hal::delay::DelayNs;
use embedded_hal::digital::{InputPin, OutputPin, StatefulOutputPin};
use ferrum_rt::hal::{bcm2711, Delay};
use ferrum_rt::{println, Runtime};

ferrum_rt::entry!(main);

fn main(rt: &mut Runtime) {
    let arg = |k: &str, d: u32| rt.arg(k).and_then(|v| v.parse().ok()).unwrap_or(d);
    let (led, count, ms, input) = (arg("pin", 42) as u8, arg("count", 3), arg("ms", 100), arg("input", 17) as u8);
    let mmio = match rt.device(bcm2711::COMPATIBLE) {
        Ok(m) => m,
        Err(e) => {
            println!("blinky: FAIL: GPIO block ({}): {e}", bcm2711::COMPATIBLE);
            return;
        }
    };
    println!("blinky: GPIO block at {:#x} ({} bytes), mapped as device memory", mmio.base(), mmio.size());
    let mut gpio = bcm2711::Gpio::new(mmio);
    let (Ok(pin), Ok(inp)) = (gpio.pin(led), gpio.pin(input)) else {
        println!("blinky: FAIL: GPIO{led} or GPIO{input} is not a pin of the block");
        return;
    };
    if gpio.pin(led).is_ok() {
        println!("blinky: FAIL: GPIO{led} was handed out twice");
        return;
    }
    let mut pin = pin.into_output();
    let (fsel_off, shift) = bcm2711::fsel(led);
    println!(
        "blinky: GPIO{led} is an output: GPFSEL{} = {:#010x} (function {:#05b})",
        fsel_off / 4,
        mmio.read32(fsel_off),
        mmio.read32(fsel_off) >> shift & 7
    );
    let mut delay = Delay;
    let start = ferrum_rt::time::now();
    let edges = blink(&mut pin, &mut delay, count, ms, |high| {
        let (_, _, lev, bit) = bcm2711::bank(led);
        let raw = mmio.read32(lev);
        println!(
            "blinky: GPIO{led} set {}: GPLEV{} = {raw:#010x}, bit {} reads {}",
            if high { "high" } else { "low" },
            lev.saturating_sub(0x34) / 4,
            bit.trailing_zeros(),
            u32::from(raw & bit != 0)
        );
    });
    let took = start.elapsed().as_millis();
    match edges {
        Ok(n) => {
            println!("blinky: {n} edges read back as set, {count} blinks in {took} ms (DelayNs on the virtual timer)")
        }
        Err(n) => println!("blinky: FAIL: edge {n} did not read back as set"),
    }
    let mut inp = inp.into_input();
    let level = inp.is_high().unwrap_or(false);
    println!("blinky: GPIO{input} is an input (function {}), level {}", inp.function(), u8::from(level));
    let _ = pin.set_low();
    println!("blinky: done, GPIO{led} low");
}

/// Blinks `pin` `count` times, `ms` apart, with nothing but embedded-hal traits; after each
/// edge checks that the pin reads back as set and tells `seen`. Returns the edges checked, or
/// the first one that did not read back.
fn blink<P, D>(pin: &mut P, delay: &mut D, count: u32, ms: u32, mut seen: impl FnMut(bool)) -> Result<u32, u32>
where
    P: OutputPin + StatefulOutputPin,
    D: DelayNs,
{
    let mut edges = 0;
    for _ in 0..count {
        for high in [true, false] {
            let _ = if high { pin.set_high() } else { pin.set_low() };
            edges += 1;
            if pin.is_set_high().ok() != Some(high) {
                return Err(edges);
            }
            seen(high);
            delay.delay_ms(ms);
        }
    }
    Ok(edges)
}
