//! `pvbench`: the unikernel end of `cargo xtask bench pv`. It connects its vbd and vif, says
//! so (`data/bench-ready` = `1`: the control domain starts the first round once every domain
//! has), waits for its turn (the control domain, its disk's backend, writes `data/bench` = `<domid> <host
//! port> <disk MiB> <TCP MiB> <round> <rounds>`, readable by every domain), then measures and prints
//! `bench-result <label> <bytes> <microseconds>` lines:
//!
//! - `unikernel-disk-write`: the disk MiB written from sector 0 by blkfront (requests as negotiated, which
//!   it prints first: see `Blkfront::describe`), then a cache flush; `unikernel-disk-read`: the same range read back and checked;
//! - `unikernel-to-control-tcp`: the TCP MiB sent over smoltcp + netfront to the control domain's
//!   sink (`10.0.2.15:5001`), until the receiver has closed;
//! - `unikernel-to-host-tcp`: the same to the host's sink through the bridge and the NIC.
//!
//! Then it writes `data/bench-done` = `<round>` in its own subtree and waits for its next turn;
//! after the last round it idles.
//! Boot arguments: `ip=` (default 10.0.2.21/24), `gw=` (10.0.2.2).
#![no_std]
#![no_main]

extern crate alloc;

use alloc::format;
use alloc::vec::Vec;
use core::time::Duration;
use ferrum_rt::blkfront::{Blkfront, Features};
use ferrum_rt::netcfg::parse_cidr;
use ferrum_rt::netfront::{self, smoltcp_now as now, Netfront};
use ferrum_rt::xen::Xen;
use ferrum_rt::{println, shutdown, time, Reason, Runtime};
use smoltcp::iface::{Interface, SocketSet};
use smoltcp::socket::tcp;
use smoltcp::wire::{IpAddress, Ipv4Address};

ferrum_rt::entry!(main);

const CONTROL_SINK: (Ipv4Address, u16) = (Ipv4Address::new(10, 0, 2, 15), 5001);

fn fail(what: &str) -> ! {
    println!("pvbench: FAIL: {what}");
    shutdown(Reason::Crash);
}

fn result(label: &str, bytes: u64, t: time::Instant) {
    println!("bench-result {label} {bytes} {}", t.elapsed().as_micros());
}

/// A turn: the host sink's port, the MiB to move by disk and by TCP, this round, the rounds.
struct Turn {
    port: u16,
    disk_mib: u64,
    tcp_mib: u64,
    round: u64,
    rounds: u64,
}

/// Waits until the control domain's `data/bench` names us for round `round`.
fn wait_turn(x: &mut Xen, round: u64) -> Turn {
    let store = ferrum_rt::xenbus::store(x).unwrap_or_else(|e| fail(&format!("{e}")));
    let me = store.read("domid").unwrap_or_else(|_| fail("no domid"));
    // The control domain: its disk's backend (domain 1 under ferrum, dom0 under Xen).
    let ctl = store.read("device/vbd/51712/backend-id").unwrap_or_else(|_| "1".into());
    let key = format!("/local/domain/{ctl}/data/bench");
    loop {
        if let Ok(v) = store.read(&key) {
            let w: Vec<&str> = v.split_whitespace().collect();
            if w.first() == Some(&me.as_str()) {
                let num = |i: usize| w.get(i).and_then(|p| p.parse::<u64>().ok()).filter(|&n| n > 0 && n < 65536);
                match (num(1), num(2), num(3), num(4).unwrap_or(1), num(5).unwrap_or(1)) {
                    (Some(p), Some(m), Some(t), r, n) if r == round => {
                        return Turn { port: p as u16, disk_mib: m, tcp_mib: t, round: r, rounds: n }
                    }
                    (Some(_), Some(_), Some(_), _, _) => {}
                    _ => fail(&format!(
                        "bench key '{v}': want '<domid> <host port> <disk MiB> <TCP MiB> [<round> <rounds>]'"
                    )),
                }
            }
        }
        time::sleep(Duration::from_millis(200));
    }
}

fn disk(d: &mut Blkfront, mib: u64) {
    let bytes = mib << 20;
    if bytes / 512 > d.sectors {
        fail("the disk is smaller than mib=");
    }
    let mut buf = alloc::vec![0xa5u8; 1 << 20];
    let t = time::now();
    let mut done = 0u64;
    while done < bytes {
        let n = (bytes - done).min(buf.len() as u64) as usize;
        d.write(done / 512, &buf[..n]).unwrap_or_else(|e| fail(&format!("write: {e:?}")));
        done += n as u64;
    }
    d.flush().unwrap_or_else(|e| fail(&format!("flush: {e:?}")));
    result("unikernel-disk-write", bytes, t);
    let t = time::now();
    done = 0;
    while done < bytes {
        let n = (bytes - done).min(buf.len() as u64) as usize;
        // Only the ends are checked: clearing them is enough to see the read land (a full
        // clear would put a pass over the buffer in the timed phase that Linux's reads lack).
        buf[0] = 0;
        buf[n - 1] = 0;
        d.read(done / 512, &mut buf[..n]).unwrap_or_else(|e| fail(&format!("read: {e:?}")));
        if buf[0] != 0xa5 || buf[n - 1] != 0xa5 {
            fail("read back something else than was written");
        }
        done += n as u64;
    }
    result("unikernel-disk-read", bytes, t);
}

/// Sends `mib` MiB to `to` and waits until the receiver has closed.
fn tcp_send(iface: &mut Interface, nf: &mut Netfront, label: &str, to: (Ipv4Address, u16), mib: u64, port: u16) {
    let mut sockets = SocketSet::new(Vec::new());
    // The send buffer holds several 64 KiB GSO frames in flight.
    let s = tcp::Socket::new(
        tcp::SocketBuffer::new(alloc::vec![0; 4096]),
        tcp::SocketBuffer::new(alloc::vec![0; 256 * 1024]),
    );
    let h = sockets.add(s);
    let total = mib << 20;
    let chunk = [0x5au8; 4096];
    let t = time::now();
    sockets
        .get_mut::<tcp::Socket>(h)
        .connect(iface.context(), (IpAddress::Ipv4(to.0), to.1), port)
        .unwrap_or_else(|e| fail(&format!("connect: {e}")));
    let mut sent = 0u64;
    let deadline = time::now().after(Duration::from_secs(600));
    let (mut last, mut reported) = ((0u64, time::now()), false);
    loop {
        iface.poll(now(), nf, &mut sockets);
        let s = sockets.get_mut::<tcp::Socket>(h);
        while sent < total && s.can_send() {
            let n = (total - sent).min(chunk.len() as u64) as usize;
            match s.send_slice(&chunk[..n]) {
                Ok(0) | Err(_) => break,
                Ok(k) => sent += k as u64,
            }
        }
        if sent == total && s.state() == tcp::State::Established {
            s.close();
        }
        if sent == total && matches!(s.state(), tcp::State::Closed | tcp::State::TimeWait) {
            break;
        }
        if !s.is_open() && sent < total {
            fail(&format!("{label}: the connection closed after {sent} bytes"));
        }
        if time::now() > deadline || nf.is_broken() {
            fail(&format!("{label}: stuck after {sent} bytes"));
        }
        if sent != last.0 {
            last = (sent, time::now());
        } else if !reported && last.1.elapsed() > Duration::from_secs(20) {
            println!(
                "pvbench: {label}: no progress for 20 s after {sent} bytes ({:?}); {}",
                s.state(),
                nf.ring_state()
            );
            reported = true;
        }
        let wait = iface.poll_delay(now(), &sockets).map_or(Duration::from_millis(10), |d| {
            Duration::from_micros(d.total_micros()).min(Duration::from_millis(10))
        });
        if !wait.is_zero() {
            nf.port().wait_until(time::now().after(wait).ticks());
        }
    }
    result(label, total, t);
}

fn main(rt: &mut Runtime) {
    let (ip, prefix) = parse_cidr(rt.arg("ip").unwrap_or("10.0.2.21/24"))
        .unwrap_or_else(|| fail("ip=<a.b.c.d>/<prefix> is malformed"));
    let gw: Ipv4Address = rt.arg("gw").unwrap_or("10.0.2.2").parse().unwrap_or_else(|_| fail("gw= is malformed"));
    let features = Features::parse(rt.arg("blk").unwrap_or(""))
        .unwrap_or_else(|w| fail(&format!("blk=: unknown feature '{w}' (nopersistent, noindirect)")));
    let net_features = netfront::Features::parse(rt.arg("net").unwrap_or(""))
        .unwrap_or_else(|w| fail(&format!("net=: unknown feature '{w}' (nocsum, nogso)")));
    let Some(x) = rt.xen() else { fail("needs a Xen-compatible hypervisor") };
    let mut d = Blkfront::connect_with(x, 51712, features).unwrap_or_else(|e| fail(&format!("vbd: {e}")));
    println!("pvbench: vbd: {}", d.describe());
    let mut nf = Netfront::connect_with(x, 0, net_features).unwrap_or_else(|e| fail(&format!("vif: {e}")));
    println!(
        "pvbench: vif: TCP checksums {}, segmentation offload {}",
        if nf.features.csum { "offloaded (csum_blank)" } else { "computed here" },
        if nf.features.gso { "on (GSO TCPv4, up to 64 KiB frames)" } else { "off" }
    );
    println!("pvbench: vbd and vif connected ({} MiB disk); waiting for my turn", d.sectors / 2048);
    // The control domain starts the first round once every domain is ready.
    let store = ferrum_rt::xenbus::store(x).unwrap_or_else(|e| fail(&format!("{e}")));
    store.write("data/bench-ready", "1").unwrap_or_else(|_| fail("writing data/bench-ready"));
    let mut iface = None;
    let mut round = 1;
    loop {
        let turn = wait_turn(x, round);
        disk(&mut d, turn.disk_mib);
        let iface = iface.get_or_insert_with(|| netfront::interface(&mut nf, ip, prefix, gw));
        // A new local port each round: the previous connections may still be in TIME-WAIT.
        let port = 40001 + 2 * (turn.round as u16 % 1000);
        tcp_send(iface, &mut nf, "unikernel-to-control-tcp", CONTROL_SINK, turn.tcp_mib, port);
        tcp_send(iface, &mut nf, "unikernel-to-host-tcp", (gw, turn.port), turn.tcp_mib, port + 1);
        let store = ferrum_rt::xenbus::store(x).unwrap_or_else(|e| fail(&format!("{e}")));
        store.write("data/bench-done", &format!("{}", turn.round)).unwrap_or_else(|_| fail("writing data/bench-done"));
        if turn.round >= turn.rounds {
            break;
        }
        round += 1;
    }
    println!("pvbench: done");
    loop {
        time::sleep(Duration::from_secs(60));
    }
}
