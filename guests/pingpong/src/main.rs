//! `pingpong`: two unikernels exchange messages through a granted page and event channels, and
//! report the round-trip cost in counter ticks.
//!
//! Boot arguments: `role=ping|pong`, `peer=<domid>` (the other domain; on ferrum a domain's id is
//! its position in the deployment + 1, on Xen dom0less the order of the `/chosen` domain nodes),
//! `rounds=<N>` (ping only, default 1000).
//!
//! - **ping** grants `peer` write access to one of its pages and allocates an unbound event
//!   channel for it. With xenstore it publishes both in `data/pingpong/` (readable by the peer:
//!   `set_perms`) and sets `ready` in one transaction; without xenstore (a dom0less Xen) it
//!   writes the port into the page itself, behind a magic word.
//! - **pong** watches `/local/domain/<peer>/data/pingpong/ready`, reads the grant reference and
//!   port, maps the page and binds the channel (without xenstore it retries mapping the peer's
//!   first grant reference, 8, until it is offered, then reads the port from the page).
//! - ping writes sequence number i and notifies; pong copies it to its reply word and notifies
//!   back; ping times each round trip. Then ping checks that it cannot revoke the grant while
//!   pong still maps it, tells pong to finish, and revokes it once pong has unmapped.
#![no_std]
#![no_main]

extern crate alloc;

use alloc::string::ToString;
use alloc::vec::Vec;
use core::sync::atomic::Ordering;
use core::time::Duration;
use ferrum_rt::xen::{self, Port, Xen};
use ferrum_rt::{println, shutdown, time, GrantError, GrantRef, Page, Reason, Runtime};

ferrum_rt::entry!(main);

/// Page layout: magic (u32) at 0, ping's port at 4, rounds at 8, ping's sequence at 64,
/// pong's reply at 128 (separate cache lines).
const MAGIC: u32 = 0x504f_4e47;
const OFF_MAGIC: usize = 0;
const OFF_PORT: usize = 4;
const OFF_ROUNDS: usize = 8;
const OFF_PING: usize = 64;
const OFF_PONG: usize = 128;
/// Sequence number that tells pong to unmap and finish.
const FINISH: u32 = u32::MAX;

fn fail(what: &str) -> ! {
    println!("pingpong: FAIL: {what}");
    shutdown(Reason::Crash);
}

fn main(rt: &mut Runtime) {
    let role = rt.arg("role").unwrap_or("").to_string();
    let Some(peer) = rt.arg("peer").and_then(|v| v.parse::<u16>().ok()) else {
        fail("boot argument peer=<domid> missing");
    };
    let rounds: u32 = rt.arg("rounds").and_then(|v| v.parse().ok()).unwrap_or(1000).clamp(1, 1_000_000);
    let Some(x) = rt.xen() else { fail("needs a Xen-compatible hypervisor") };
    match role.as_str() {
        "ping" => ping(x, peer, rounds),
        "pong" => pong(x, peer),
        _ => fail("boot argument role=ping|pong missing"),
    }
}

fn ping(x: &mut Xen, peer: u16, rounds: u32) {
    let page = ferrum_rt::alloc_page();
    let gref = x.grant(peer, page, false).unwrap_or_else(|e| fail(&alloc::format!("grant: {e:?}")));
    let port = xen::alloc_unbound(peer).unwrap_or_else(|e| fail(&alloc::format!("alloc_unbound: {e}")));
    page.u32_at(OFF_ROUNDS).store(rounds, Ordering::Relaxed);
    match x.store.as_mut() {
        Some(s) => {
            let me = x.domid.unwrap_or(0);
            let r = s
                .mkdir("data/pingpong")
                .and_then(|_| s.set_perms("data/pingpong", &[&alloc::format!("n{me}"), &alloc::format!("r{peer}")]));
            r.and_then(|_| {
                s.transaction(|c, t| {
                    c.write_in(t, "data/pingpong/gref", &gref.0.to_string())?;
                    c.write_in(t, "data/pingpong/port", &port.0.to_string())?;
                    c.write_in(t, "data/pingpong/ready", "1")
                })
            })
            .unwrap_or_else(|e| fail(&alloc::format!("publishing in xenstore: {e}")));
            println!("pingpong: ping: offered grant {} and port {} to domain {peer} through xenstore", gref.0, port.0);
        }
        None => {
            page.u32_at(OFF_PORT).store(port.0, Ordering::Relaxed);
            page.u32_at(OFF_MAGIC).store(MAGIC, Ordering::Release);
            println!(
                "pingpong: ping: no xenstore; offered grant {} and port {} to domain {peer} in the page",
                gref.0, port.0
            );
        }
    }
    // Pong says hello with a first notification once it is connected.
    port.wait();
    println!("pingpong: ping: domain {peer} connected, {rounds} round trips");
    let mut rtt = Vec::with_capacity(rounds as usize);
    for i in 1..=rounds {
        let t0 = time::now();
        page.u32_at(OFF_PING).store(i, Ordering::Release);
        port.send().unwrap_or_else(|e| fail(&alloc::format!("send: {e}")));
        while page.u32_at(OFF_PONG).load(Ordering::Acquire) != i {
            port.wait();
        }
        rtt.push(time::now().ticks() - t0.ticks());
    }
    rtt.sort_unstable();
    let sum: u64 = rtt.iter().sum();
    println!(
        "pingpong: ping: {rounds} round trips: median {} ticks, min {}, max {}, mean {} (counter at {} Hz)",
        rtt[rtt.len() / 2],
        rtt[0],
        rtt[rtt.len() - 1],
        sum / u64::from(rounds),
        time::frequency()
    );
    let busy = x.revoke(gref);
    println!("pingpong: ping: revoke while the peer maps the page: {}", describe(busy));
    page.u32_at(OFF_PING).store(FINISH, Ordering::Release);
    let _ = port.send();
    let deadline = time::now().after(Duration::from_secs(5));
    loop {
        match x.revoke(gref) {
            Ok(()) => break,
            Err(GrantError::InUse) if time::now() < deadline => {
                port.wait_until(time::now().after(Duration::from_millis(1)).ticks());
            }
            Err(e) => fail(&alloc::format!("revoke after the peer unmapped: {e:?}")),
        }
    }
    println!("pingpong: ping: peer unmapped; grant {} revoked", gref.0);
    println!("pingpong: ping: done");
}

fn describe(r: Result<(), GrantError>) -> &'static str {
    match r {
        Ok(()) => "revoked (WRONG: the page is still mapped)",
        Err(GrantError::InUse) => "refused, in use (GTF_reading/GTF_writing set)",
        Err(_) => "refused (not granted)",
    }
}

fn pong(x: &mut Xen, peer: u16) {
    let (gref, rport) = match x.store.as_mut() {
        Some(s) => {
            let base = alloc::format!("/local/domain/{peer}/data/pingpong");
            let ready = alloc::format!("{base}/ready");
            s.watch(&ready, "pingpong").unwrap_or_else(|e| fail(&alloc::format!("watch: {e}")));
            loop {
                if s.read(&ready).is_ok_and(|v| v == "1") {
                    break;
                }
                s.next_watch().unwrap_or_else(|e| fail(&alloc::format!("watch event: {e}")));
            }
            let _ = s.unwatch(&ready, "pingpong");
            let num = |s: &mut ferrum_rt::xs::Xenstore<xen::StoreRing>, k: &str| -> u32 {
                s.read(&alloc::format!("{base}/{k}")).ok().and_then(|v| v.parse().ok()).unwrap_or_else(|| fail(k))
            };
            let (g, p) = (num(s, "gref"), num(s, "port"));
            println!("pingpong: pong: found grant {g} and port {p} of domain {peer} in xenstore");
            (GrantRef(g), Some(p))
        }
        None => (GrantRef(ferrum_rt::grants::FIRST_REF), None),
    };
    let deadline = time::now().after(Duration::from_secs(10));
    let m = loop {
        match x.map(peer, gref, false) {
            Ok(m) => break m,
            Err(st) if rport.is_none() && time::now() < deadline => {
                let _ = st;
                time::sleep(Duration::from_millis(1));
            }
            Err(st) => fail(&alloc::format!("mapping grant {} of domain {peer}: status {st}", gref.0)),
        }
    };
    let page: Page = m.page();
    let rport = rport.unwrap_or_else(|| {
        while page.u32_at(OFF_MAGIC).load(Ordering::Acquire) != MAGIC {
            time::sleep(Duration::from_millis(1));
        }
        page.u32_at(OFF_PORT).load(Ordering::Relaxed)
    });
    let port: Port =
        xen::bind_interdomain(peer, rport).unwrap_or_else(|e| fail(&alloc::format!("bind_interdomain: {e}")));
    println!(
        "pingpong: pong: mapped grant {} at {:#x}, bound port {} to domain {peer}'s port {rport}; {} rounds",
        gref.0,
        m.addr,
        port.0,
        page.u32_at(OFF_ROUNDS).load(Ordering::Relaxed)
    );
    let _ = port.send();
    let mut answered = 0u32;
    loop {
        let s = page.u32_at(OFF_PING).load(Ordering::Acquire);
        if s == FINISH {
            break;
        }
        if s != 0 && s != page.u32_at(OFF_PONG).load(Ordering::Relaxed) {
            page.u32_at(OFF_PONG).store(s, Ordering::Release);
            let _ = port.send();
            answered += 1;
            continue;
        }
        port.wait();
    }
    x.unmap(m).unwrap_or_else(|st| fail(&alloc::format!("unmap: status {st}")));
    let _ = port.send();
    println!("pingpong: pong: answered {answered} messages, unmapped the page");
    println!("pingpong: pong: done");
}
