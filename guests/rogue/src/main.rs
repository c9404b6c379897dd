//! `rogue`: a hostile Xen frontend, for the test that shows a misbehaving domain is refused or
//! cut off by the control domain's backends while the hypervisor and the other domains carry
//! on. It speaks the ring protocols itself (with ferrum-rt's xenbus, grant and ring pieces) so
//! that it can break them on purpose:
//!
//! - vif 1 and vbd 51728 (xvdb) publish ring references it never granted: the backends fail
//!   to map them and report the error (xen-blkback also closes the device, state 5);
//! - vbd 51712 (xvda) connects properly; a valid read works, then requests with a grant
//!   reference it never granted, 200 segments, and a sector past the end each get
//!   `BLKIF_RSP_ERROR`, a valid read still works, and a `req_prod` 100 entries ahead of the
//!   backend (more than the ring holds) makes xen-blkback halt the ring;
//! - vif 0 connects properly; a valid frame is sent, a frame in a page it never granted and a
//!   10-byte frame get `XEN_NETIF_RSP_ERROR`, and a request crossing its page makes
//!   xen-netback disable the interface (no answer to anything after it).
//!
//! Every outcome is printed (`rogue: …`); the unikernel then idles so that the control domain
//! can list its devices' states.
#![no_std]
#![no_main]

extern crate alloc;

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::time::Duration;
use ferrum_rt::sring::{Entry, FrontRing};
use ferrum_rt::xen::{self, Port, Xen};
use ferrum_rt::xenbus::{self, state, Device, FrontError};
use ferrum_rt::{println, shutdown, time, Page as SharedPage, Reason, Runtime};

ferrum_rt::entry!(main);

/// A grant reference this domain never issued.
const FORGED_REF: u32 = 0x7fff_fff0;
/// `BLKIF_RSP_ERROR`, `XEN_NETIF_RSP_ERROR`.
const RSP_ERROR: i16 = -1;
/// How long to wait for an answer that a halted ring never gives.
const SILENCE: Duration = Duration::from_secs(3);

fn fail(what: &str) -> ! {
    println!("rogue: FAIL: {what}");
    shutdown(Reason::Crash);
}

/// Finds `device/<kind>/<devid>` and waits until its backend is ready for a frontend.
fn open(x: &mut Xen, kind: &str, devid: u32) -> Device {
    let dev = Device::find(x, kind, devid).unwrap_or_else(|e| fail(&format!("{kind} {devid}: {e}")));
    dev.wait_backend(x, |s| s == state::INIT_WAIT || s == state::CONNECTED)
        .unwrap_or_else(|e| fail(&format!("{kind} {devid}: {e}")));
    dev
}

/// Writes `keys` (relative to the device directory) in one transaction, `state` last.
fn publish(x: &mut Xen, dev: &Device, keys: &[(&str, String)]) {
    let dir = dev.dir.clone();
    xenbus::store(x)
        .and_then(|s| {
            s.transaction(|s, t| {
                for (k, v) in keys {
                    s.write_in(t, &format!("{dir}/{k}"), v)?;
                }
                Ok(())
            })
            .map_err(|e| FrontError::Store("publishing", e))
        })
        .unwrap_or_else(|e| fail(&format!("{dir}: {e}")));
}

/// Publishes `keys` and state 4/3 for a device whose ring references are forged, and reports
/// the backend's state once it has answered.
fn forged_rings(x: &mut Xen, kind: &str, devid: u32, refs: &[(&str, u32)]) {
    let dev = open(x, kind, devid);
    let port = xen::alloc_unbound(dev.backend_id).unwrap_or_else(|_| fail("alloc_unbound"));
    let mut keys: Vec<(&str, String)> = refs.iter().map(|(k, v)| (*k, format!("{v}"))).collect();
    keys.push(("event-channel", format!("{}", port.0)));
    keys.extend(if kind == "vif" {
        [("request-rx-copy", "1".into()), ("state", "4".into())]
    } else {
        [("protocol", "arm-abi".into()), ("state", "3".into())]
    });
    publish(x, &dev, &keys);
    // xen-blkback closes the device and stays closed; xen-netback reports the failure, closes,
    // then writes "connected" again over a device it never mapped, so the state seen here
    // depends on timing: the control domain's log and `hypctl` show the backend's error.
    let st = match dev.wait_backend(x, |s| s == state::CONNECTED) {
        Err(FrontError::Closed(st)) | Ok(st) => st,
        Err(e) => fail(&format!("{kind} {devid}: {e}")),
    };
    println!("rogue: {kind} {devid}: published ring refs never granted; backend state {st}");
}

/// A blkif response: {u64 id, u8 operation, pad, i16 status at 10}.
fn blk_status(r: Entry) -> (u64, i16) {
    (r.u64(0), r.u16(10) as i16)
}

/// A netif TX response: {u16 id, i16 status}.
fn net_status(r: Entry) -> (u64, i16) {
    (u64::from(r.u16(0)), r.u16(2) as i16)
}

/// A connected device's ring, event channel and one data page (granted to the backend).
struct Conn {
    ring: FrontRing<'static>,
    ring_page: SharedPage,
    port: Port,
    data: SharedPage,
    data_ref: u32,
}

impl Conn {
    /// Publishes the filled requests and waits for one response (`None`: silence).
    fn exchange(&mut self, decode: fn(Entry) -> (u64, i16)) -> Option<(u64, i16)> {
        if self.ring.push_requests() {
            xen::notify(self.port.0);
        }
        self.wait_response(decode)
    }

    /// The next response as `decode` reads its (id, status), or `None` after [`SILENCE`].
    fn wait_response(&mut self, decode: fn(Entry) -> (u64, i16)) -> Option<(u64, i16)> {
        let deadline = time::now().after(SILENCE).ticks();
        loop {
            match self.ring.next_response() {
                Ok(Some(r)) => return Some(decode(r)),
                Ok(None) => {}
                Err(_) => fail("the backend broke the ring"),
            }
            if time::now().ticks() >= deadline {
                return None;
            }
            if !self.ring.final_check().unwrap_or(true) {
                self.port.wait_until(deadline);
            }
        }
    }
}

/// Connects vbd `devid` properly (one data page).
fn blk_connect(x: &mut Xen, devid: u32) -> (Conn, u64) {
    let dev = open(x, "vbd", devid);
    let be = dev.backend_id;
    let (rp, data) = (ferrum_rt::alloc_page(), ferrum_rt::alloc_page());
    let ring = FrontRing::init(rp.words32(), 112);
    let ring_ref = x.grant(be, rp, false).unwrap_or_else(|_| fail("grant"));
    let data_ref = x.grant(be, data, false).unwrap_or_else(|_| fail("grant"));
    let port = xen::alloc_unbound(be).unwrap_or_else(|_| fail("alloc_unbound"));
    let keys = [
        ("ring-ref", format!("{}", ring_ref.0)),
        ("event-channel", format!("{}", port.0)),
        ("protocol", "arm-abi".into()),
        ("state", "3".into()),
    ];
    publish(x, &dev, &keys);
    dev.wait_backend(x, |s| s == state::CONNECTED).unwrap_or_else(|e| fail(&format!("vbd {devid}: {e}")));
    let sectors = dev.backend_read(x, "sectors").ok().and_then(|v| v.parse().ok()).unwrap_or(0);
    dev.set_state(x, state::CONNECTED).unwrap_or_else(|e| fail(&format!("vbd {devid}: {e}")));
    (Conn { ring, ring_page: rp, port, data, data_ref: data_ref.0 }, sectors)
}

/// One read request: `nseg` segments all naming `gref`, from `sector`.
fn blk_read(c: &mut Conn, id: u64, nseg: u8, gref: u32, sector: u64) -> Option<(u64, i16)> {
    let e = c.ring.next_request().unwrap_or_else(|| fail("vbd ring full"));
    e.set_u8(0, 0); // BLKIF_OP_READ
    e.set_u8(1, nseg);
    e.set_u16(2, 0);
    e.set_u64(8, id);
    e.set_u64(16, sector);
    // The entry holds 11 segment descriptors; a larger count is a lie the backend must catch.
    for i in 0..usize::from(nseg).min(11) {
        e.set_u32(24 + 8 * i, gref);
        e.set_u8(24 + 8 * i + 4, 0);
        e.set_u8(24 + 8 * i + 5, 7);
        e.set_u16(24 + 8 * i + 6, 0);
    }
    c.exchange(blk_status)
}

fn report(what: &str, r: Option<(u64, i16)>, id: u64, want: i16) {
    match r {
        Some((rid, st)) if rid == id && st == want => {
            let how = if st == 0 { "done (status 0)" } else { "refused with an error response (status -1)" };
            println!("rogue: {what}: {how}");
        }
        Some((rid, st)) => println!("rogue: FAIL: {what}: response id {rid} status {st}"),
        None => println!("rogue: FAIL: {what}: no response"),
    }
}

fn block(x: &mut Xen) {
    let (mut c, sectors) = blk_connect(x, 51712);
    println!("rogue: vbd 51712: connected, {sectors} sectors");
    let good = c.data_ref;
    report("vbd 51712: read of sector 0", blk_read(&mut c, 1, 1, good, 0), 1, 0);
    report("vbd 51712: read into a grant ref never issued", blk_read(&mut c, 2, 1, FORGED_REF, 0), 2, RSP_ERROR);
    report("vbd 51712: read with 200 segments", blk_read(&mut c, 3, 200, good, 0), 3, RSP_ERROR);
    report("vbd 51712: read past the end of the disk", blk_read(&mut c, 4, 1, good, sectors), 4, RSP_ERROR);
    report("vbd 51712: read of sector 0 after the refusals", blk_read(&mut c, 5, 1, good, 0), 5, 0);
    let mut sig = [0u8; 2];
    c.data.read(510, &mut sig);
    println!("rogue: vbd 51712: sector 0 ends with {:02x}{:02x}", sig[0], sig[1]);
    // Ring indices out of range: claim 100 more requests than were made (the ring holds 32).
    let w = c.ring_page.words32();
    let prod = w[0].load(core::sync::atomic::Ordering::Relaxed);
    w[0].store(prod.wrapping_add(100), core::sync::atomic::Ordering::Release);
    xen::notify(c.port.0);
    match c.wait_response(blk_status) {
        None => println!("rogue: vbd 51712: req_prod 100 past the ring: no answer, the backend halted the ring"),
        Some((id, st)) => println!("rogue: FAIL: vbd 51712: answer id {id} status {st} to an impossible req_prod"),
    }
}

/// Connects vif `devid` properly: TX ring, RX ring (no buffers posted), one TX page.
fn net_connect(x: &mut Xen, devid: u32) -> Conn {
    let dev = open(x, "vif", devid);
    let be = dev.backend_id;
    let (txp, rxp, data) = (ferrum_rt::alloc_page(), ferrum_rt::alloc_page(), ferrum_rt::alloc_page());
    let ring = FrontRing::init(txp.words32(), 12);
    let _rx = FrontRing::init(rxp.words32(), 8);
    let tx_ref = x.grant(be, txp, false).unwrap_or_else(|_| fail("grant"));
    let rx_ref = x.grant(be, rxp, false).unwrap_or_else(|_| fail("grant"));
    let data_ref = x.grant(be, data, true).unwrap_or_else(|_| fail("grant"));
    let port = xen::alloc_unbound(be).unwrap_or_else(|_| fail("alloc_unbound"));
    let keys = [
        ("tx-ring-ref", format!("{}", tx_ref.0)),
        ("rx-ring-ref", format!("{}", rx_ref.0)),
        ("event-channel", format!("{}", port.0)),
        ("request-rx-copy", "1".into()),
        ("feature-no-csum-offload", "1".into()),
        ("state", "4".into()),
    ];
    publish(x, &dev, &keys);
    dev.wait_backend(x, |s| s == state::CONNECTED).unwrap_or_else(|e| fail(&format!("vif {devid}: {e}")));
    Conn { ring, ring_page: txp, port, data, data_ref: data_ref.0 }
}

/// One TX request.
fn net_send(c: &mut Conn, id: u16, gref: u32, offset: u16, size: u16) -> Option<(u64, i16)> {
    let e = c.ring.next_request().unwrap_or_else(|| fail("vif ring full"));
    e.set_u32(0, gref);
    e.set_u16(4, offset);
    e.set_u16(6, 0);
    e.set_u16(8, id);
    e.set_u16(10, size);
    c.exchange(net_status)
}

fn network(x: &mut Xen) {
    let mut c = net_connect(x, 0);
    println!("rogue: vif 0: connected");
    // A gratuitous ARP request for 10.0.2.99 from 00:16:3e:00:03:00, padded to 60 bytes.
    let mut f = [0u8; 60];
    f[0..6].copy_from_slice(&[0xff; 6]);
    f[6..12].copy_from_slice(&[0x00, 0x16, 0x3e, 0x00, 0x03, 0x00]);
    f[12..14].copy_from_slice(&[0x08, 0x06]);
    f[14..22].copy_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1]);
    f[22..28].copy_from_slice(&[0x00, 0x16, 0x3e, 0x00, 0x03, 0x00]);
    f[28..32].copy_from_slice(&[10, 0, 2, 99]);
    f[38..42].copy_from_slice(&[10, 0, 2, 99]);
    c.data.write(0, &f);
    let good = c.data_ref;
    report("vif 0: a valid frame", net_send(&mut c, 1, good, 0, 60), 1, 0);
    report("vif 0: a frame in a grant ref never issued", net_send(&mut c, 2, FORGED_REF, 0, 60), 2, RSP_ERROR);
    report("vif 0: a 10-byte frame", net_send(&mut c, 3, good, 0, 10), 3, RSP_ERROR);
    match net_send(&mut c, 4, good, 4000, 1000) {
        None => println!("rogue: vif 0: a frame crossing its page: no answer, the backend disabled the interface"),
        Some((id, st)) => println!("rogue: FAIL: vif 0: answer id {id} status {st} to a frame crossing its page"),
    }
    match net_send(&mut c, 5, good, 0, 60) {
        None => println!("rogue: vif 0: a valid frame now gets no answer either"),
        Some((id, st)) => println!("rogue: FAIL: vif 0: the disabled interface answered id {id} status {st}"),
    }
}

fn main(rt: &mut Runtime) {
    let Some(x) = rt.xen() else { fail("needs a Xen-compatible hypervisor") };
    forged_rings(x, "vif", 1, &[("tx-ring-ref", FORGED_REF), ("rx-ring-ref", FORGED_REF + 1)]);
    forged_rings(x, "vbd", 51728, &[("ring-ref", FORGED_REF)]);
    block(x);
    network(x);
    println!("rogue: done; idling");
    loop {
        time::sleep(Duration::from_secs(60));
    }
}
