//! `heartbeat`: an innocent bystander for the hostile-guest tests. Every `period=<ms>`
//! (default 200) of virtual-counter time it prints `heartbeat: beat N at T ms`, T being the
//! counter's time since the hypervisor's hand-off, for ever (the board's power-off ends it).
//! A test reads the beats back and checks that none is missing and no gap exceeds its bound:
//! a hypervisor stalled by another domain's abuse shows up as a gap or as the beats stopping.
#![no_std]
#![no_main]

use core::time::Duration;
use ferrum_rt::{println, time, Runtime};

ferrum_rt::entry!(main);

fn main(rt: &mut Runtime) {
    let period: u64 = rt.arg("period").and_then(|v| v.parse().ok()).unwrap_or(200).max(10);
    let start = time::now();
    println!("heartbeat: every {period} ms");
    let mut n: u64 = 0;
    loop {
        n += 1;
        let at = start.after(Duration::from_millis(period * n));
        time::sleep_until(at);
        let ms = time::now().duration_since(start).as_millis();
        println!("heartbeat: beat {n} at {ms} ms");
    }
}
