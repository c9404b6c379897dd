//! netfront: a Xen virtual network interface served by a backend domain's xen-netback
//! (docs/xen-abi.md §6.10, §8.3): one TX and one RX ring, one event channel, receive-copy
//! mode (the backend copies into pages we post). Received frames fit one page (we announce
//! neither `feature-sg` nor `feature-gso-tcpv4`, so the backend sends nothing larger).
//!
//! Sending: with the backend's `feature-sg` and `feature-gso-tcpv4` (and [`Features`]'s `gso`,
//! on by default; boot argument `net=nogso` turns it off) a TCP frame of up to
//! [`crate::tso::MAX_GSO_FRAME`] bytes goes out as one packet: its pages in consecutive slots
//! (`NETTXF_more_data`), a GSO extra slot (`XEN_NETIF_EXTRA_TYPE_GSO`, TCPv4, its connection's
//! MSS) after the first; the backend cuts it into segments. smoltcp is offered that frame size
//! and the connections' MSS options are rewritten around it ([`crate::tso`]). Without those
//! features every frame fits one page (MTU 1500).
//!
//! Checksums: received frames come with complete checksums (`feature-no-csum-offload = 1`);
//! sent TCP frames are offloaded by default (smoltcp leaves the TCP checksum out, [`crate::csum`]
//! puts the pseudo-header sum in its place and the request carries `NETTXF_csum_blank |
//! NETTXF_data_validated`, which every netback accepts); `connect_with(.., Features { csum:
//! false, .. })` (boot argument `net=nocsum` in the example unikernels) sends complete
//! checksums, except in GSO frames, whose segments the backend checksums.
//!
//! Buffers are granted once at setup and reused: `TX_BUFS` transmit pages granted read-only,
//! `RX_BUFS` receive pages granted writable, each ring request naming its page by id (a
//! large frame takes one page per slot).
//!
//! Invariants: a TX page is reused only after its slot's response came back; a packet's
//! slots are published in one `req_prod` update; every response's id, offset and length are
//! checked against our buffers before a byte is read, and a backend that answers what we
//! never asked gets the device stopped (`FrontError::BrokenRing`).

use crate::arch::SharedPage;
use crate::grants::GrantRef;
use crate::sring::FrontRing;
use crate::xen::{self, Port, Xen};
use crate::xenbus::{state, Device, FrontError};
use alloc::collections::VecDeque;
use alloc::format;
use alloc::vec::Vec;

/// Transmit pages (at most this many pages of frames in flight: 8 full GSO frames).
pub const TX_BUFS: usize = 128;
/// Receive buffers posted to the backend.
pub const RX_BUFS: usize = 64;
/// Largest frame without GSO: Ethernet header + MTU 1500.
pub const MAX_FRAME: usize = crate::tso::LINK_FRAME;
/// Pages of the largest GSO frame.
const GSO_PAGES: usize = crate::tso::MAX_GSO_FRAME.div_ceil(4096);
/// TX flags (docs/xen-abi.md §8.3).
const NETTXF_MORE_DATA: u16 = 1 << 2;
const NETTXF_EXTRA_INFO: u16 = 1 << 3;
/// `XEN_NETIF_EXTRA_TYPE_GSO`, `XEN_NETIF_GSO_TYPE_TCPV4`.
const EXTRA_TYPE_GSO: u8 = 1;
const GSO_TYPE_TCPV4: u8 = 1;

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
    /// Frames sent with GSO (each cut into segments by the backend).
    pub gso_frames: u64,
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
    /// Large frames are built here, then copied into their pages.
    scratch: Vec<u8>,
    /// Each connection's MSS (GSO).
    flows: crate::tso::Flows,
    /// The features in use (`gso` only when the backend offers it too).
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
        let mut features = features;
        // Sending large frames takes both scatter-gather and TCPv4 segmentation in the backend.
        let offered = |x: &mut Xen, k: &'static str| dev.backend_read(x, k).ok().as_deref() == Some("1");
        features.gso = features.gso && offered(x, "feature-sg") && offered(x, "feature-gso-tcpv4");
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
            scratch: Vec::new(),
            flows: crate::tso::Flows::new(64),
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

    /// The rings' indices and the counters, for a diagnostic line.
    pub fn ring_state(&self) -> alloc::string::String {
        let f = |r: [u32; 6]| {
            format!(
                "req_prod {} req_event {} rsp_prod {} rsp_event {} pvt {} cons {}",
                r[0], r[1], r[2], r[3], r[4], r[5]
            )
        };
        format!("tx: {}; rx: {}; stats {:?}", f(self.tx.indices()), f(self.rx.indices()), self.stats)
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
                    if status == 1 {
                        continue; // NULL: the slot that carried the GSO extra (no id)
                    }
                    if id >= TX_BUFS || self.tx_free.contains(&(id as u16)) {
                        return Err(FrontError::BrokenRing);
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
                        if self.features.gso {
                            self.learn_mss(&mut v);
                        }
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

    /// Records the MSS a received SYN announces and gives smoltcp the large one instead
    /// (the backend cuts what smoltcp builds to the recorded MSS).
    fn learn_mss(&mut self, frame: &mut [u8]) {
        if let (Some(k), Some(m)) = (crate::tso::rx_key(frame), crate::tso::mss(frame)) {
            self.flows.record(k, m);
            crate::tso::replace_mss(frame, crate::tso::BIG_MSS, true);
        }
    }

    /// The largest frame [`Netfront::send_with`] takes.
    pub fn max_frame(&self) -> usize {
        if self.features.gso {
            crate::tso::MAX_GSO_FRAME
        } else {
            MAX_FRAME
        }
    }

    /// Whether a frame of any size up to [`Netfront::max_frame`] can be sent now.
    pub fn can_send(&self) -> bool {
        let (pages, slots) = if self.features.gso { (GSO_PAGES, GSO_PAGES as u32 + 1) } else { (1, 1) };
        !self.broken && self.tx_free.len() >= pages && self.tx.free_requests() >= slots
    }

    /// Sends one frame built by `fill` into a `len`-byte buffer (`len` ≤
    /// [`Netfront::max_frame`]).
    pub fn send_with<R>(&mut self, len: usize, fill: impl FnOnce(&mut [u8]) -> R) -> Option<R> {
        if !self.can_send() || !(14..=self.max_frame()).contains(&len) {
            return None;
        }
        let npages = len.div_ceil(4096);
        let ids: Vec<u16> = (0..npages).filter_map(|_| self.tx_free.pop()).collect();
        let (gso, csum) = (self.features.gso, self.features.csum);
        // Build, then fix up: the SYN's MSS (GSO), the checksum offload, the GSO MSS.
        let fixup = |flows: &crate::tso::Flows, b: &mut [u8]| -> Option<(u16, Option<u16>)> {
            if gso {
                crate::tso::replace_mss(b, crate::tso::LINK_MSS, !csum);
            }
            if b.len() > MAX_FRAME {
                // Only TCP is cut by the backend, and its segments need the offloaded sum.
                let mss = flows.mss(&crate::tso::tx_key(b)?);
                crate::csum::prepare_tcp_offload(b).then_some((crate::csum::TX_OFFLOAD_FLAGS, Some(mss)))
            } else {
                let offloaded = csum && crate::csum::prepare_tcp_offload(b);
                Some((if offloaded { crate::csum::TX_OFFLOAD_FLAGS } else { 0 }, None))
            }
        };
        let (r, fixed) = if npages == 1 {
            let page = self.tx_pages[usize::from(ids[0])].0;
            let flows = &self.flows;
            page.with_bytes_mut(len, |b| {
                let r = fill(b);
                (r, fixup(flows, b))
            })
        } else {
            self.scratch.resize(len, 0);
            let r = fill(&mut self.scratch[..len]);
            let fixed = fixup(&self.flows, &mut self.scratch[..len]);
            for (chunk, &id) in self.scratch[..len].chunks(4096).zip(&ids) {
                self.tx_pages[usize::from(id)].0.write(0, chunk);
            }
            (r, fixed)
        };
        let Some((flags, gso_mss)) = fixed else {
            // A large frame that is not TCP: nothing would cut it; dropped.
            self.tx_free.extend_from_slice(&ids);
            self.stats.errors += 1;
            return Some(r);
        };
        for (i, &id) in ids.iter().enumerate() {
            let Some(e) = self.tx.next_request() else { break };
            let more = if i + 1 < npages { NETTXF_MORE_DATA } else { 0 };
            e.set_u32(0, self.tx_pages[usize::from(id)].1 .0);
            e.set_u16(4, 0);
            e.set_u16(8, id);
            if i == 0 {
                // The first slot: the whole frame's length, the flags, the GSO extra after it.
                let extra = if gso_mss.is_some() { NETTXF_EXTRA_INFO } else { 0 };
                e.set_u16(6, flags | more | extra);
                e.set_u16(10, len as u16);
                if let Some(mss) = gso_mss {
                    let Some(x) = self.tx.next_request() else { break };
                    x.set_u8(0, EXTRA_TYPE_GSO);
                    x.set_u8(1, 0);
                    x.set_u16(2, mss);
                    x.set_u8(4, GSO_TYPE_TCPV4);
                    x.set_u8(5, 0);
                    x.set_u16(6, 0);
                    self.stats.gso_frames += 1;
                }
            } else {
                e.set_u16(6, more);
                e.set_u16(10, (len - i * 4096).min(4096) as u16);
            }
        }
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
    use super::Netfront;
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
            c.max_transmission_unit = self.max_frame();
            c.max_burst_size = Some(16);
            if self.features.csum {
                // TCP checksums are completed downstream (see `crate::csum`).
                c.checksum.tcp = smoltcp::phy::Checksum::Rx;
            }
            c
        }
    }
}
