//! `hello`: the smallest useful unikernel on ferrum-rt.
//!
//! Prints its name and domain id from xenstore (or says that this Xen offers no xenstore),
//! shows the event channels working (a loop-back channel: send on one end, the upcall arrives
//! on the other) and the grant table (grants a page and takes it back), sleeps on the virtual
//! timer, prints the time and shuts down with `SCHEDOP_shutdown(poweroff)`.
//!
//! Boot arguments: `sleep=<ms>` (default 100), `profile` (print the runtime's boot phases), `echo` (read a line from the console and
//! echo it), `panic` (panic after the greeting: the runtime
//! reports it and shuts down with `crash`).
#![no_std]
#![no_main]

extern crate alloc;

use core::time::Duration;
use ferrum_rt::{println, time, xen, Runtime};

ferrum_rt::entry!(main);

fn main(rt: &mut Runtime) {
    let first = rt.first_line_ticks();
    let ms: u64 = rt.arg("sleep").and_then(|v| v.parse().ok()).unwrap_or(100);
    let crash = rt.bootargs().split_whitespace().any(|w| w == "panic");
    let profile = rt.bootargs().split_whitespace().any(|w| w == "profile");
    let boot = rt.boot_profile();
    let Some(x) = rt.xen() else {
        println!("hello: no Xen here; a plain guest");
        sleep_and_report(ms);
        return;
    };
    match x.store.as_mut() {
        Some(s) => {
            let name = s.read("name").unwrap_or_else(alloc_str);
            let domid = s.read("domid").unwrap_or_else(alloc_str);
            println!("hello from {name}, domid {domid} (read from xenstore)");
        }
        None => println!("hello: this Xen offers no xenstore (dom0less without it); carrying on without a name"),
    }
    println!("hello: first line {first} counter ticks after the hand-off");
    if profile {
        for (what, ticks) in boot {
            println!("hello: boot profile: {what}: {ticks} ticks");
        }
    }

    // Event channels: a loop-back channel, send on one end, the upcall arrives on the other.
    match xen::alloc_unbound(xen_abi::domid::SELF)
        .and_then(|a| xen::bind_interdomain(xen_abi::domid::SELF, a.0).map(|b| (a, b)))
    {
        Ok((a, b)) => {
            let t0 = time::now();
            let sent = a.send();
            let got = b.wait_until(t0.after(Duration::from_millis(100)).ticks());
            println!(
                "hello: event channel {}->{}: sent {:?}, upcall {}",
                a.0,
                b.0,
                sent.is_ok(),
                if got { "arrived" } else { "missing" }
            );
        }
        Err(e) => println!("hello: loop-back event channel refused: {e}"),
    }

    // The grant table: grant a page to ourselves, then take it back.
    let page = ferrum_rt::alloc_page();
    let me = x.domid.unwrap_or(xen_abi::domid::SELF);
    match x.grant(me, page, true) {
        Ok(r) => println!(
            "hello: grant table v1: ref {} granted (flags {:#x}), revoked: {:?}",
            r.0,
            x.grant_flags(r),
            x.revoke(r).is_ok()
        ),
        Err(e) => println!("hello: grant failed: {e:?}"),
    }
    if crash {
        panic!("hello was asked to panic");
    }
    if rt.bootargs().split_whitespace().any(|w| w == "echo") {
        echo_line();
    }
    sleep_and_report(ms);
}

/// Reads one line from the console (PV console input on a Xen-aware domain) and echoes it.
fn echo_line() {
    println!("hello: type a line:");
    let mut line = alloc::vec::Vec::new();
    let mut buf = [0u8; 64];
    while line.len() < 256 {
        let n = ferrum_rt::console::read_blocking(&mut buf);
        if let Some(end) = buf[..n].iter().position(|&b| b == b'\r' || b == b'\n') {
            line.extend_from_slice(&buf[..end]);
            break;
        }
        line.extend_from_slice(&buf[..n]);
    }
    println!("hello: you typed '{}'", core::str::from_utf8(&line).unwrap_or("<not UTF-8>"));
}

fn alloc_str(e: ferrum_rt::xs::XsError) -> alloc::string::String {
    alloc::format!("<{e}>")
}

fn sleep_and_report(ms: u64) {
    let t0 = time::now();
    time::sleep(Duration::from_millis(ms));
    let slept = t0.elapsed();
    let up = time::now().since_start();
    println!(
        "hello: slept {} ms on the virtual timer (asked {ms}: {}); time since boot {}.{:06} s",
        slept.as_millis(),
        if slept >= Duration::from_millis(ms) { "not early" } else { "EARLY" },
        up.as_secs(),
        up.subsec_micros()
    );
    println!("hello: shutting down (poweroff)");
}
