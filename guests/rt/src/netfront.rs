//! netfront: a Xen virtual network interface served by a backend domain's xen-netback
//! (docs/xen-abi.md §6.10, §8.3): one TX and one RX ring, one event channel, receive-copy
//! mode (the backend copies into pages we post), no scatter-gather (every packet fits one
//! page).
//!
//! Checksums: received frames come with complete checksums (`feature-no-csum-offload = 1`);
//! sent TCP frames are offloaded by default (smoltcp leaves the TCP checksum out, [`crate::csum`]
//! puts the pseudo-header sum in its place and the request carries `NETTXF_csum_blank |
//! NETTXF_data_validated`, which every netback accepts); `connect_with(.., Features { csum:
//! false })` (boot argument `net=nocsum` in the example unikernels) sends complete checksums.
//!
//! Buffers are granted once at setup and reused: `TX_BUFS` transmit pages granted read-only,
//! `RX_BUFS` receive pages granted writable, each ring request naming its buffer by id.
//!
//! Invariants: a TX buffer is reused only after its response came back; every response's id,
//! offset and length are checked against our buffers before a byte is read, and a backend
//! that answers what we never asked gets the device stopped (`FrontError::BrokenRing`).

use crate::arch::SharedPage;
use crate::grants::GrantRef;
use crate::sring::FrontRing;
use crate::xen::{self, Port, Xen};
use crate::xenbus::{state, Device, FrontError};
use alloc::collections::VecDeque;
use alloc::format;
use alloc::vec::Vec;

/// Transmit buffers (packets in flight).
pub const TX_BUFS: usize = 64;
/// Receive buffers posted to the backend.
pub const RX_BUFS: usize = 64;
/// Largest frame (no scatter-gather): Ethernet header + MTU 1500.
pub const MAX_FRAME: usize = 1514;

const TX_ENTRY: usize = 12;
const RX_ENTRY: usize = 8;

/// Interface counters.
#[derive(Clone, Copy, Debug, Default)]
pub struct Stats {
    /// Frames received.
    pub rx_packets: u64,
    /// Bytes received.
    pub rx_bytes: u64,
    /// Frames sent.
    pub tx_packets: u64,
    /// Bytes sent.
    pub tx_bytes: u64,
    /// Frames the backend reported as failed or dropped.
    pub errors: u64,
}

pub use crate::netcfg::NetFeatures as Features;

/// A connected netfront.
pub struct Netfront {
    tx: FrontRing<'static>,
    rx: FrontRing<'static>,
    port: Port,
    /// Our MAC address (from `device/vif/<id>/mac`).
    pub mac: [u8; 6],
    tx_pages: Vec<(SharedPage, GrantRef)>,
    tx_free: Vec<u16>,
    rx_pages: Vec<(SharedPage, GrantRef)>,
    rx_posted: [bool; RX_BUFS],
    received: VecDeque<Vec<u8>>,
    broken: bool,
    /// The features in use.
    pub features: Features,
    /// Counters.
    pub stats: Stats,
}

fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut m = [0u8; 6];
    let mut parts = s.split(':');
    for b in &mut m {
        let p = parts.next()?;
        if p.len() != 2 {
            return None;
        }
        *b = u8::from_str_radix(p, 16).ok()?;
    }
    parts.next().is_none().then_some(m)
}

impl Netfront {
    /// Connects vif `devid`: waits for the backend, publishes rings and port, waits until
    /// the backend is connected.
    pub fn connect(x: &mut Xen, devid: u32) -> Result<Self, FrontError> {
        Self::connect_with(x, devid, Features::default())
    }

    /// Connects vif `devid` using only `features`.
    pub fn connect_with(x: &mut Xen, devid: u32, features: Features) -> Result<Self, FrontError> {
        let dev = Device::find(x, "vif", devid)?;
        let mac = dev.read(x, "mac").ok().and_then(|m| parse_mac(&m)).ok_or(FrontError::Bad("mac"))?;
        dev.wait_backend(x, |s| s == state::INIT_WAIT || s == state::CONNECTED)?;
        if dev.backend_read(x, "feature-rx-copy").ok().as_deref() != Some("1") {
            return Err(FrontError::Bad("feature-rx-copy"));
        }
        let be = dev.backend_id;
        let (txp, rxp) = (crate::alloc_page(), crate::alloc_page());
        let tx = FrontRing::init(txp.words32(), TX_ENTRY);
        let rx = FrontRing::init(rxp.words32(), RX_ENTRY);
        let g = |x: &mut Xen, p: SharedPage, ro: bool| x.grant(be, p, ro).map_err(|_| FrontError::Setup("grant"));
        let tx_ref = g(x, txp, false)?;
        let rx_ref = g(x, rxp, false)?;
        let mut tx_pages = Vec::with_capacity(TX_BUFS);
        for _ in 0..TX_BUFS {
            let p = crate::alloc_page();
            tx_pages.push((p, g(x, p, true)?));
        }
        let mut rx_pages = Vec::with_capacity(RX_BUFS);
        for _ in 0..RX_BUFS {
            let p = crate::alloc_page();
            rx_pages.push((p, g(x, p, false)?));
        }
        let port = xen::alloc_unbound(be).map_err(|_| FrontError::Setup("alloc_unbound"))?;
        let mut nf = Self {
            tx,
            rx,
            port,
            mac,
            tx_free: (0..TX_BUFS as u16).rev().collect(),
            tx_pages,
            rx_pages,
            rx_posted: [false; RX_BUFS],
            received: VecDeque::new(),
            broken: false,
            features,
            stats: Stats::default(),
        };
        for id in 0..RX_BUFS {
            nf.post_rx(id);
        }
        nf.rx.push_requests();
        let dir = dev.dir.clone();
        let store = crate::xenbus::store(x)?;
        store
            .transaction(|s, t| {
                s.write_in(t, &format!("{dir}/tx-ring-ref"), &format!("{}", tx_ref.0))?;
                s.write_in(t, &format!("{dir}/rx-ring-ref"), &format!("{}", rx_ref.0))?;
                s.write_in(t, &format!("{dir}/event-channel"), &format!("{}", port.0))?;
                s.write_in(t, &format!("{dir}/request-rx-copy"), "1")?;
                s.write_in(t, &format!("{dir}/feature-rx-notify"), "1")?;
                s.write_in(t, &format!("{dir}/feature-no-csum-offload"), "1")?;
                s.write_in(t, &format!("{dir}/feature-sg"), "0")?;
                s.write_in(t, &format!("{dir}/feature-gso-tcpv4"), "0")?;
                s.write_in(t, &format!("{dir}/state"), "4")
            })
            .map_err(|e| FrontError::Store("publishing the rings", e))?;
        dev.wait_backend(x, |s| s == state::CONNECTED)?;
        xen::notify(port.0);
        Ok(nf)
    }

    fn post_rx(&mut self, id: usize) {
        if let Some(e) = self.rx.next_request() {
            e.set_u16(0, id as u16);
            e.set_u16(2, 0);
            e.set_u32(4, self.rx_pages[id].1 .0);
            self.rx_posted[id] = true;
        }
    }

    /// The event channel (wait on it for traffic).
    pub fn port(&self) -> Port {
        self.port
    }

    /// Whether the backend broke the protocol (the device is stopped).
    pub fn is_broken(&self) -> bool {
        self.broken
    }

    /// Collects transmit completions and received frames; returns whether anything happened.
    pub fn poll(&mut self) -> bool {
        if self.broken {
            return false;
        }
        let mut any = false;
        let r = (|| -> Result<(), FrontError> {
            loop {
                while let Some(e) = self.tx.next_response().map_err(|_| FrontError::BrokenRing)? {
                    any = true;
                    let (id, status) = (usize::from(e.u16(0)), e.u16(2) as i16);
                    if id >= TX_BUFS || self.tx_free.contains(&(id as u16)) {
                        return Err(FrontError::BrokenRing);
                    }
                    if status == 1 {
                        continue; // NULL: a slot that carried extra info
                    }
                    if status < 0 {
                        self.stats.errors += 1;
                    }
                    self.tx_free.push(id as u16);
                }
                if !self.tx.final_check().map_err(|_| FrontError::BrokenRing)? {
                    break;
                }
            }
            let mut reposted = false;
            loop {
                while let Some(e) = self.rx.next_response().map_err(|_| FrontError::BrokenRing)? {
                    any = true;
                    let (id, off, flags, st) =
                        (usize::from(e.u16(0)), usize::from(e.u16(2)), e.u16(4), e.u16(6) as i16);
                    if id >= RX_BUFS || !self.rx_posted[id] {
                        return Err(FrontError::BrokenRing);
                    }
                    self.rx_posted[id] = false;
                    let len = st.max(0) as usize;
                    if st > 0 && off + len <= 4096 && len <= MAX_FRAME && flags & 0xc == 0 {
                        let mut v = alloc::vec![0u8; len];
                        self.rx_pages[id].0.read(off, &mut v);
                        self.stats.rx_packets += 1;
                        self.stats.rx_bytes += len as u64;
                        self.received.push_back(v);
                    } else {
                        self.stats.errors += 1; // errors, fragments and extras are dropped
                    }
                    self.post_rx(id);
                    reposted = true;
                }
                if !self.rx.final_check().map_err(|_| FrontError::BrokenRing)? {
                    break;
                }
            }
            if reposted && self.rx.push_requests() {
                xen::notify(self.port.0);
            }
            Ok(())
        })();
        if r.is_err() {
            self.broken = true;
        }
        any
    }

    /// The next received frame.
    pub fn recv(&mut self) -> Option<Vec<u8>> {
        self.received.pop_front()
    }

    /// Whether a frame can be sent now.
    pub fn can_send(&self) -> bool {
        !self.broken && !self.tx_free.is_empty() && self.tx.free_requests() > 0
    }

    /// Sends one frame built by `fill` into a `len`-byte buffer (`len` ≤ [`MAX_FRAME`]).
    pub fn send_with<R>(&mut self, len: usize, fill: impl FnOnce(&mut [u8]) -> R) -> Option<R> {
        if !self.can_send() || !(14..=MAX_FRAME).contains(&len) {
            return None;
        }
        let id = self.tx_free.pop()?;
        let (page, gref) = self.tx_pages[usize::from(id)];
        let csum = self.features.csum;
        let (r, flags) = page.with_bytes_mut(len, |b| {
            let r = fill(b);
            let offloaded = csum && crate::csum::prepare_tcp_offload(b);
            (r, if offloaded { crate::csum::TX_OFFLOAD_FLAGS } else { 0 })
        });
        let e = self.tx.next_request()?;
        e.set_u32(0, gref.0);
        e.set_u16(4, 0);
        e.set_u16(6, flags);
        e.set_u16(8, id);
        e.set_u16(10, len as u16);
        self.stats.tx_packets += 1;
        self.stats.tx_bytes += len as u64;
        if self.tx.push_requests() {
            xen::notify(self.port.0);
        }
        Some(r)
    }
}

#[cfg(feature = "net")]
pub use phy::{interface, smoltcp_now};

#[cfg(feature = "net")]
mod phy {
    //! `smoltcp` device on a [`Netfront`].
    use super::{Netfront, MAX_FRAME};
    use alloc::vec::Vec;
    use core::net::Ipv4Addr;
    use smoltcp::iface::{Config, Interface};
    use smoltcp::phy::{self, Device, DeviceCapabilities, Medium};
    use smoltcp::time::Instant;
    use smoltcp::wire::{EthernetAddress, IpCidr};

    /// The runtime's clock as smoltcp's (microseconds since boot).
    pub fn smoltcp_now() -> Instant {
        Instant::from_micros(crate::time::now().since_start().as_micros() as i64)
    }

    /// A smoltcp interface on `nf` (its MAC) with address `ip/prefix` and a default route via
    /// `gw`.
    pub fn interface(nf: &mut Netfront, ip: Ipv4Addr, prefix: u8, gw: Ipv4Addr) -> Interface {
        let mut iface = Interface::new(Config::new(EthernetAddress(nf.mac).into()), nf, smoltcp_now());
        iface.update_ip_addrs(|a| {
            let _ = a.push(IpCidr::new(ip.into(), prefix));
        });
        let _ = iface.routes_mut().add_default_ipv4_route(gw);
        iface
    }

    /// A received frame.
    pub struct Rx(Vec<u8>);
    /// Permission to send one frame.
    pub struct Tx<'a>(&'a mut Netfront);

    impl phy::RxToken for Rx {
        fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
            f(&self.0)
        }
    }

    impl phy::TxToken for Tx<'_> {
        fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
            let mut f = Some(f);
            match self.0.send_with(len, |b| (f.take().unwrap())(b)) {
                Some(r) => r,
                None => {
                    // Cannot happen: the token was handed out only with a free slot. Build the
                    // frame anyway (smoltcp expects a result) and drop it.
                    let mut scratch = alloc::vec![0u8; len];
                    (f.take().unwrap())(&mut scratch)
                }
            }
        }
    }

    impl Device for Netfront {
        type RxToken<'a> = Rx;
        type TxToken<'a> = Tx<'a>;

        fn receive(&mut self, _t: Instant) -> Option<(Rx, Tx<'_>)> {
            if self.received.is_empty() {
                self.poll();
            }
            if !self.can_send() {
                self.poll();
            }
            let frame = self.received.pop_front()?;
            Some((Rx(frame), Tx(self)))
        }

        fn transmit(&mut self, _t: Instant) -> Option<Tx<'_>> {
            if !self.can_send() {
                self.poll();
            }
            self.can_send().then_some(Tx(self))
        }

        fn capabilities(&self) -> DeviceCapabilities {
            let mut c = DeviceCapabilities::default();
            c.medium = Medium::Ethernet;
            c.max_transmission_unit = MAX_FRAME;
            c.max_burst_size = Some(16);
            if self.features.csum {
                // TCP checksums are completed downstream (see `crate::csum`).
                c.checksum.tcp = smoltcp::phy::Checksum::Rx;
            }
            c
        }
    }
}
