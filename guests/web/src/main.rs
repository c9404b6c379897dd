//! `web`: an HTTP server on netfront + smoltcp. It serves one page with live figures (uptime,
//! requests served, the interface's counters), answers `GET /stats` as plain text, and
//! `GET /blob` with 256 KiB of numbered lines (`blob 00…0N`, 32 bytes each) streamed from a
//! 16 KiB send buffer: a transfer large enough to use the netfront's segmentation offload,
//! whose order a client can check line by line.
//!
//! Boot arguments: `ip=<a.b.c.d>/<prefix>` (default 10.0.2.20/24), `gw=<a.b.c.d>` (default
//! 10.0.2.2, QEMU's user-network gateway), `port=<n>` (default 80), `vif=<devid>` (default 0).
//! The deployment bridges the vif to the control domain's NIC, so on QEMU the host reaches
//! the page through user-network port forwarding (`cargo xtask run-qemu-aarch64` forwards
//! host port 8080 to 10.0.2.20:80). `watchdog=<seconds>` (default 15, 0: none) arms a
//! hypervisor watchdog its loop kicks, so a hung web is handled by its deployment's
//! `on_crash` policy; `debug=1` adds `GET /debug/hang` and `GET /debug/panic` for the
//! crash-policy tests. It honours the control domain's `control/shutdown` (`hypctl stop`).
#![no_std]
#![no_main]

extern crate alloc;

use alloc::format;
use alloc::vec::Vec;
use core::time::Duration;
use ferrum_rt::netcfg::parse_cidr;
use ferrum_rt::netfront::{self, smoltcp_now as now, Netfront};
use ferrum_rt::xen::Watchdog;
use ferrum_rt::{println, shutdown, time, Reason, Runtime};
use smoltcp::iface::{SocketHandle, SocketSet};
use smoltcp::socket::tcp;

ferrum_rt::entry!(main);

/// Parallel connections served.
const SOCKETS: usize = 4;

fn fail(what: &str) -> ! {
    println!("web: FAIL: {what}");
    shutdown(Reason::Crash);
}

struct Conn {
    handle: SocketHandle,
    request: Vec<u8>,
    /// Bytes of `/blob` sent so far (`None`: not streaming it).
    blob: Option<usize>,
    /// The netfront's GSO frame count when `/blob` started.
    gso_before: u64,
}

/// Bytes of `GET /blob`: 8,192 lines of 32 bytes.
const BLOB_LEN: usize = 256 * 1024;
/// One line of the blob.
const BLOB_LINE: usize = 32;

/// Fills `buf` with the blob's bytes from offset `at` (line `i` is `blob ` and `i` in 26
/// digits, then a newline).
fn blob_bytes(at: usize, buf: &mut [u8]) {
    for (k, b) in buf.iter_mut().enumerate() {
        let (line, col) = ((at + k) / BLOB_LINE, (at + k) % BLOB_LINE);
        *b = match col {
            0..=4 => b"blob "[col],
            31 => b'\n',
            _ => b'0' + ((line / 10usize.pow((30 - col) as u32)) % 10) as u8,
        };
    }
}

fn main(rt: &mut Runtime) {
    let (ip, prefix) = parse_cidr(rt.arg("ip").unwrap_or("10.0.2.20/24"))
        .unwrap_or_else(|| fail("ip=<a.b.c.d>/<prefix> is malformed"));
    let gw = rt.arg("gw").unwrap_or("10.0.2.2").parse().unwrap_or_else(|_| fail("gw= is malformed"));
    let port: u16 = rt.arg("port").and_then(|p| p.parse().ok()).unwrap_or(80);
    let vif: u32 = rt.arg("vif").and_then(|p| p.parse().ok()).unwrap_or(0);
    // `net=nocsum`: send complete TCP checksums instead of offloading them; `net=nogso`: no
    // TCP segmentation offload.
    let features = netfront::Features::parse(rt.arg("net").unwrap_or(""))
        .unwrap_or_else(|w| fail(&format!("net=: unknown feature '{w}' (nocsum, nogso)")));
    let Some(x) = rt.xen() else { fail("needs a Xen-compatible hypervisor (netfront)") };
    println!("web: connecting vif {vif}");
    let mut nf = Netfront::connect_with(x, vif, features).unwrap_or_else(|e| fail(&format!("vif {vif}: {e}")));
    let m = nf.mac;
    println!(
        "web: vif {vif} connected, MAC {:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        m[0], m[1], m[2], m[3], m[4], m[5]
    );
    if !nf.features.csum {
        println!("web: vif {vif}: TCP checksums computed here (net=nocsum)");
    }
    if !nf.features.gso {
        println!("web: vif {vif}: no TCP segmentation offload (net=nogso, or the backend has none)");
    }
    let mut iface = netfront::interface(&mut nf, ip, prefix, gw);
    let mut sockets = SocketSet::new(Vec::new());
    let mut conns = Vec::new();
    for _ in 0..SOCKETS {
        let s = tcp::Socket::new(
            tcp::SocketBuffer::new(alloc::vec![0; 4096]),
            tcp::SocketBuffer::new(alloc::vec![0; 16384]),
        );
        conns.push(Conn { handle: sockets.add(s), request: Vec::new(), blob: None, gso_before: 0 });
    }
    // A hung web is handled by its deployment's on_crash policy (`watchdog=SECONDS`, 0: off).
    let secs: u32 = rt.arg("watchdog").and_then(|v| v.parse().ok()).unwrap_or(15);
    let mut wd = match (secs > 0).then(|| Watchdog::new(secs)).transpose() {
        Ok(w) => w,
        Err(e) => {
            println!("web: no watchdog: {e}");
            None
        }
    };
    if let Some(w) = &wd {
        println!("web: watchdog {} armed ({secs} s)", w.id());
    }
    // `debug=1`: GET /debug/hang stops kicking the watchdog, GET /debug/panic panics (for the
    // crash-policy tests; off unless the deployment asks).
    let debug = rt.arg("debug") == Some("1");
    println!("web: serving http://{ip}:{port}/ (gateway {gw})");
    let started = time::now();
    let mut served: u64 = 0;
    loop {
        let t = now();
        iface.poll(t, &mut nf, &mut sockets);
        for c in &mut conns {
            let s = sockets.get_mut::<tcp::Socket>(c.handle);
            if !s.is_open() {
                c.request.clear();
                c.blob = None;
                if s.listen(port).is_err() {
                    fail("listen");
                }
                continue;
            }
            // `/blob`: as much as the send buffer takes, then the close after the last byte.
            if let Some(at) = c.blob {
                let sent = s
                    .send(|buf| {
                        let n = buf.len().min(BLOB_LEN - at);
                        blob_bytes(at, &mut buf[..n]);
                        (n, n)
                    })
                    .unwrap_or(0);
                c.blob = Some(at + sent);
                if at + sent == BLOB_LEN {
                    s.close();
                    c.blob = None;
                    let gso = nf.stats.gso_frames - c.gso_before;
                    println!(
                        "web: GET /blob: all queued (segmentation offload used: {})",
                        if gso > 0 { "yes" } else { "no" }
                    );
                }
                continue;
            }
            if s.can_recv() {
                let _ = s.recv(|b| {
                    let n = b.len().min(2048 - c.request.len().min(2048));
                    c.request.extend_from_slice(&b[..n]);
                    (b.len(), ())
                });
                if c.request.windows(4).any(|w| w == b"\r\n\r\n") {
                    served += 1;
                    let path = core::str::from_utf8(&c.request)
                        .ok()
                        .and_then(|r| r.split_whitespace().nth(1))
                        .unwrap_or("/")
                        .chars()
                        .take(64)
                        .collect::<alloc::string::String>();
                    if debug && path == "/debug/hang" {
                        println!("web: /debug/hang: spinning without kicking the watchdog");
                        loop {
                            core::hint::spin_loop();
                        }
                    }
                    if debug && path == "/debug/panic" {
                        panic!("/debug/panic asked for it");
                    }
                    if path == "/blob" {
                        let head = format!(
                            "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {BLOB_LEN}\r\nConnection: close\r\nServer: ferrum-web\r\n\r\n"
                        );
                        let _ = s.send_slice(head.as_bytes());
                        c.blob = Some(0);
                        c.gso_before = nf.stats.gso_frames;
                        c.request.clear();
                        if served <= 3 || served.is_power_of_two() {
                            println!("web: request {served}: GET {path} ({BLOB_LEN} bytes)");
                        }
                        continue;
                    }
                    let up = started.elapsed();
                    let st = nf.stats;
                    let (body, ctype) = if path == "/stats" {
                        (
                            format!(
                                "uptime_ms {}\nrequests {served}\nrx_packets {}\ntx_packets {}\nrx_bytes {}\ntx_bytes {}\ngso_frames {}\n",
                                up.as_millis(),
                                st.rx_packets,
                                st.tx_packets,
                                st.rx_bytes,
                                st.tx_bytes,
                                st.gso_frames
                            ),
                            "text/plain",
                        )
                    } else {
                        (
                            format!(
                                "<!doctype html><html><head><title>ferrum web</title></head><body>\
                                 <h1>Hello from the ferrum web unikernel</h1>\
                                 <p>Served by a Rust unikernel over Xen netfront and smoltcp, through Linux's xen-netback.</p>\
                                 <ul><li>uptime: {}.{:03} s</li><li>requests served: {served}</li>\
                                 <li>frames received / sent: {} / {}</li><li>bytes received / sent: {} / {}</li></ul>\
                                 </body></html>\n",
                                up.as_secs(),
                                up.subsec_millis(),
                                st.rx_packets,
                                st.tx_packets,
                                st.rx_bytes,
                                st.tx_bytes
                            ),
                            "text/html",
                        )
                    };
                    let head = format!(
                        "HTTP/1.0 200 OK\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\nServer: ferrum-web\r\n\r\n",
                        body.len()
                    );
                    let _ = s.send_slice(head.as_bytes());
                    let _ = s.send_slice(body.as_bytes());
                    s.close();
                    c.request.clear();
                    if served <= 3 || served.is_power_of_two() {
                        println!("web: request {served}: GET {path}");
                    }
                }
            }
        }
        if nf.is_broken() {
            fail("the backend broke the ring protocol");
        }
        if let Some(x) = rt.xen() {
            // `hypctl stop web`: a clean poweroff; `hypctl save` / `migrate`: a suspend.
            if ferrum_rt::honour_control(x) {
                println!("web: suspending ({served} requests served)");
                match x.suspend() {
                    Ok(true) => {
                        let resumed_at = time::now();
                        // Resumed, maybe on another board: a new backend serves the vif, and the
                        // TCP connections of before are gone; the counters and uptime go on.
                        let gap = x.suspended_us();
                        println!(
                            "web: resumed {}.{} ms after its suspend (its own counter); reconnecting vif {vif}",
                            gap / 1000,
                            (gap / 100) % 10
                        );
                        let new = Netfront::connect_with(x, vif, features)
                            .unwrap_or_else(|e| fail(&format!("vif {vif}: {e}")));
                        core::mem::forget(core::mem::replace(&mut nf, new));
                        iface = netfront::interface(&mut nf, ip, prefix, gw);
                        // Tell the bridge and the neighbours where 10.0.2.20 lives now.
                        let garp = ferrum_rt::netcfg::gratuitous_arp(nf.mac, ip);
                        let sent = nf.send_with(garp.len(), |b| b.copy_from_slice(&garp)).is_some();
                        println!(
                            "web: gratuitous ARP for {ip} {}",
                            if sent { "sent" } else { "not sent (no TX slot)" }
                        );
                        for c in &mut conns {
                            sockets.get_mut::<tcp::Socket>(c.handle).abort();
                            c.request.clear();
                        }
                        wd = wd.take().and_then(|_| Watchdog::new(secs).ok());
                        println!(
                            "web: serving again after resume at uptime {} ms, {served} requests served so far; {} ms after its suspend",
                            started.elapsed().as_millis(),
                            (x.suspended_us() / 1000) + resumed_at.elapsed().as_millis() as u64
                        );
                    }
                    Ok(false) => println!("web: suspend cancelled"),
                    Err(e) => println!("web: suspend refused: {e}"),
                }
            }
        }
        if let Some(w) = wd.as_mut() {
            w.kick();
        }
        let wait = iface.poll_delay(now(), &sockets).map_or(Duration::from_millis(100), |d| {
            Duration::from_micros(d.total_micros()).min(Duration::from_millis(100))
        });
        if !wait.is_zero() {
            nf.port().wait_until(time::now().after(wait).ticks());
        }
    }
}
