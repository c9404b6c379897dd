//! TCP segmentation offload for netfront (host-tested). smoltcp has none: it cuts its stream
//! into segments of the peer's MSS, so every 1,460 bytes cost the backend's netback, bridge and
//! NIC one packet each. With the backend's `feature-sg` and `feature-gso-tcpv4`, netfront
//! instead offers smoltcp a frame of up to [`MAX_GSO_FRAME`] bytes and keeps the wire honest
//! around it:
//!
//! - a received SYN or SYN-ACK's MSS option is recorded for its connection ([`Flows`]) and
//!   replaced by [`BIG_MSS`] before smoltcp reads it, so smoltcp builds large segments;
//! - a sent SYN's MSS option (smoltcp derives it from the large MTU) is replaced by what the
//!   link carries, [`LINK_MSS`], so the peer keeps sending ordinary frames;
//! - a sent TCP frame longer than the link's goes out with a GSO extra slot naming its
//!   connection's recorded MSS: the backend's stack (or its NIC) cuts it into segments, as it
//!   does for Linux's xen-netfront.
//!
//! Invariants: only a well-formed IPv4/TCP frame (Ethernet type 0x0800, IHL and lengths inside
//! the frame, no fragment, a SYN with an MSS option) is changed; its TCP checksum is recomputed
//! when it was complete (`complete`), and left for the offload otherwise. A connection with no
//! recorded MSS gets TCP's default, 536 (RFC 9293 §3.7.1).

use alloc::vec::Vec;

/// Ethernet header + MTU 1500: the largest frame the link carries.
pub const LINK_FRAME: usize = 1514;
/// The MSS of the link: MTU 1500 less the IPv4 and TCP headers.
pub const LINK_MSS: u16 = 1460;
/// The largest frame netfront sends with GSO: 16 pages less one byte (a request's size is
/// 16 bits; 16 data slots and the extra slot stay below netback's 18).
pub const MAX_GSO_FRAME: usize = 65535;
/// The MSS smoltcp is told its peers accept when GSO is on: what fits [`MAX_GSO_FRAME`].
pub const BIG_MSS: u16 = (MAX_GSO_FRAME - 14 - 20 - 20) as u16;
/// TCP's MSS for a connection whose peer sent none.
pub const DEFAULT_MSS: u16 = 536;

const ETH: usize = 14;
const SYN: u8 = 0x02;

/// A connection as seen from this end: (local port, remote address, remote port).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Key {
    local_port: u16,
    remote: [u8; 4],
    remote_port: u16,
}

/// The IPv4/TCP headers of a frame.
struct Tcp {
    /// Offset of the TCP header.
    at: usize,
    /// TCP header length.
    hlen: usize,
    /// IPv4 total length (bytes from the IP header on).
    total: usize,
    ihl: usize,
}

fn tcp(frame: &[u8]) -> Option<Tcp> {
    if frame.len() < ETH + 40 || frame[12..14] != [0x08, 0x00] {
        return None;
    }
    let ip = &frame[ETH..];
    let ihl = usize::from(ip[0] & 0xf) * 4;
    let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
    let fragmented = u16::from_be_bytes([ip[6], ip[7]]) & 0x3fff != 0;
    if ip[0] >> 4 != 4 || ihl < 20 || ip[9] != 6 || fragmented || total > ip.len() || total < ihl + 20 {
        return None;
    }
    let at = ETH + ihl;
    let hlen = usize::from(frame[at + 12] >> 4) * 4;
    (hlen >= 20 && ihl + hlen <= total).then_some(Tcp { at, hlen, total, ihl })
}

/// The connection of a received frame (its destination is this end).
pub fn rx_key(frame: &[u8]) -> Option<Key> {
    let t = tcp(frame)?;
    let p = |o: usize| u16::from_be_bytes([frame[t.at + o], frame[t.at + o + 1]]);
    Some(Key { local_port: p(2), remote: frame[ETH + 12..ETH + 16].try_into().ok()?, remote_port: p(0) })
}

/// The connection of a sent frame (its source is this end).
pub fn tx_key(frame: &[u8]) -> Option<Key> {
    let t = tcp(frame)?;
    let p = |o: usize| u16::from_be_bytes([frame[t.at + o], frame[t.at + o + 1]]);
    Some(Key { local_port: p(0), remote: frame[ETH + 16..ETH + 20].try_into().ok()?, remote_port: p(2) })
}

/// Offset of the MSS option's value in a SYN frame (`None`: not a SYN, or no MSS option).
fn mss_at(frame: &[u8]) -> Option<usize> {
    let t = tcp(frame)?;
    if frame[t.at + 13] & SYN == 0 {
        return None;
    }
    let (mut i, end) = (t.at + 20, t.at + t.hlen);
    while i < end {
        match frame[i] {
            0 => return None, // end of options
            1 => i += 1,      // no-op
            kind => {
                let len = usize::from(*frame.get(i + 1)?);
                if len < 2 || i + len > end {
                    return None;
                }
                if kind == 2 && len == 4 {
                    return Some(i + 2);
                }
                i += len;
            }
        }
    }
    None
}

/// The MSS option of a SYN frame.
pub fn mss(frame: &[u8]) -> Option<u16> {
    mss_at(frame).map(|i| u16::from_be_bytes([frame[i], frame[i + 1]]))
}

/// Replaces a SYN frame's MSS option by `new` and returns the old value (`None`: not a SYN
/// with an MSS option; the frame is untouched). `complete`: the frame's TCP checksum is a
/// full one, recomputed here; otherwise it is left as it is (an offloaded sum, filled later).
pub fn replace_mss(frame: &mut [u8], new: u16, complete: bool) -> Option<u16> {
    let i = mss_at(frame)?;
    let old = u16::from_be_bytes([frame[i], frame[i + 1]]);
    frame[i..i + 2].copy_from_slice(&new.to_be_bytes());
    if complete {
        let t = tcp(frame)?;
        frame[t.at + 16..t.at + 18].fill(0);
        let seg = ETH + t.ihl..ETH + t.total;
        let sum = tcp_checksum(&frame[ETH + 12..ETH + 20], &frame[seg]);
        frame[t.at + 16..t.at + 18].copy_from_slice(&sum.to_be_bytes());
    }
    Some(old)
}

/// The TCP checksum of `segment` (its checksum field zero) between the addresses `addrs`
/// (source then destination, 8 bytes).
pub fn tcp_checksum(addrs: &[u8], segment: &[u8]) -> u16 {
    let pseudo = crate::csum::sum16(addrs, 6 + segment.len() as u32);
    crate::csum::internet_checksum(segment, pseudo)
}

/// The TCP payload length of a frame (`None`: not IPv4/TCP).
pub fn payload_len(frame: &[u8]) -> Option<usize> {
    tcp(frame).map(|t| t.total - t.ihl - t.hlen)
}

/// The MSS each connection's peer announced, for the GSO extra slot; the oldest connection
/// is forgotten when the table is full.
pub struct Flows {
    entries: Vec<(Key, u16)>,
    cap: usize,
}

impl Flows {
    /// A table of at most `cap` connections.
    pub fn new(cap: usize) -> Self {
        Self { entries: Vec::with_capacity(cap), cap: cap.max(1) }
    }

    /// Records `mss` for connection `k` (a new SYN replaces what an old connection on the
    /// same ports left).
    pub fn record(&mut self, k: Key, mss: u16) {
        self.entries.retain(|(e, _)| *e != k);
        if self.entries.len() == self.cap {
            self.entries.remove(0);
        }
        self.entries.push((k, mss));
    }

    /// The MSS to cut connection `k`'s large frames to: its peer's, no more than the link's,
    /// TCP's default if it was never recorded.
    pub fn mss(&self, k: &Key) -> u16 {
        let m = self.entries.iter().find(|(e, _)| e == k).map_or(DEFAULT_MSS, |&(_, m)| m);
        m.clamp(88, LINK_MSS)
    }

    /// Connections recorded.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    /// An Ethernet + IPv4 + TCP frame from 10.0.2.21:40001 to 10.0.2.15:5001 with `options`
    /// (a multiple of 4 bytes), `flags` and `payload`, with a complete TCP checksum.
    fn frame(flags: u8, options: &[u8], payload: &[u8]) -> Vec<u8> {
        let mut f = vec![0u8; 14];
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        let hlen = 20 + options.len();
        let total = 20 + hlen + payload.len();
        let mut ip = vec![0x45, 0, (total >> 8) as u8, total as u8, 0, 1, 0x40, 0, 64, 6, 0, 0];
        ip.extend_from_slice(&[10, 0, 2, 21, 10, 0, 2, 15]);
        f.extend_from_slice(&ip);
        let mut tcp = vec![0x9c, 0x41, 0x13, 0x89, 0, 0, 0, 1, 0, 0, 0, 0, ((hlen / 4) << 4) as u8, flags, 0xff, 0xff];
        tcp.extend_from_slice(&[0, 0, 0, 0]);
        tcp.extend_from_slice(options);
        tcp.extend_from_slice(payload);
        let sum = tcp_checksum(&f[26..34], &tcp);
        tcp[16..18].copy_from_slice(&sum.to_be_bytes());
        f.extend_from_slice(&tcp);
        f
    }

    fn checksum_ok(f: &[u8]) -> bool {
        crate::csum::internet_checksum(&f[34..], crate::csum::sum16(&f[26..34], 6 + (f.len() - 34) as u32)) == 0
    }

    #[test]
    fn the_mss_option_is_found_behind_other_options() {
        let plain = frame(SYN, &[2, 4, 0x05, 0xb4], b"");
        assert_eq!(mss(&plain), Some(1460));
        // NOP, window scale, NOP, MSS: the value at an odd offset.
        let odd = frame(SYN | 0x10, &[1, 3, 3, 7, 1, 2, 4, 0x02, 0x18, 0, 0, 0], b"");
        assert_eq!(mss(&odd), Some(536));
        assert_eq!(mss(&frame(0x10, &[2, 4, 0x05, 0xb4], b"")), None, "not a SYN");
        assert_eq!(mss(&frame(SYN, &[1, 1, 1, 1], b"")), None, "no MSS option");
        assert_eq!(mss(&frame(SYN, &[3, 9, 0, 0], b"")), None, "an option running past the header");
        assert_eq!(mss(&frame(SYN, &[0, 2, 4, 0x05, 0xb4, 0, 0, 0], b"")), None, "after the end-of-options");
    }

    #[test]
    fn replacing_the_mss_keeps_a_complete_checksum_valid() {
        for opts in [&[2u8, 4, 0x05, 0xb4][..], &[1, 3, 3, 7, 1, 2, 4, 0x05, 0xb4, 0, 0, 0]] {
            let mut f = frame(SYN, opts, b"");
            assert!(checksum_ok(&f));
            assert_eq!(replace_mss(&mut f, BIG_MSS, true), Some(1460));
            assert_eq!(mss(&f), Some(BIG_MSS));
            assert!(checksum_ok(&f));
        }
        // An offloaded frame keeps its checksum field.
        let mut f = frame(SYN, &[2, 4, 0x05, 0xb4], b"");
        f[34 + 16..34 + 18].copy_from_slice(&[0x12, 0x34]);
        assert_eq!(replace_mss(&mut f, LINK_MSS, false), Some(1460));
        assert_eq!(&f[50..52], &[0x12, 0x34]);
    }

    #[test]
    fn other_frames_are_left_alone() {
        let mut ack = frame(0x10, &[], b"data");
        let before = ack.clone();
        assert_eq!(replace_mss(&mut ack, BIG_MSS, true), None);
        assert_eq!(ack, before);
        let mut udp = frame(SYN, &[2, 4, 0x05, 0xb4], b"");
        udp[14 + 9] = 17;
        assert_eq!(replace_mss(&mut udp, BIG_MSS, true), None);
        let mut short = frame(SYN, &[2, 4, 0x05, 0xb4], b"");
        short.truncate(50);
        assert_eq!(replace_mss(&mut short, BIG_MSS, true), None, "lengths beyond the frame");
        let mut arp = vec![0u8; 60];
        arp[12..14].copy_from_slice(&[0x08, 0x06]);
        assert_eq!(rx_key(&arp), None);
        assert_eq!(payload_len(&frame(0x10, &[], &[7; 100])), Some(100));
    }

    #[test]
    fn flows_remember_each_peers_mss() {
        let syn_ack = frame(SYN | 0x10, &[2, 4, 0x05, 0x78], b"");
        // The same connection seen from the other end: a frame this end sends.
        let mut out = frame(0x10, &[], &[0; 3000]);
        out[26..30].copy_from_slice(&[10, 0, 2, 15]);
        out[30..34].copy_from_slice(&[10, 0, 2, 21]);
        out[34..38].copy_from_slice(&[0x13, 0x89, 0x9c, 0x41]);
        let mut flows = Flows::new(2);
        let k = rx_key(&syn_ack).unwrap();
        assert_eq!(Some(k), tx_key(&out));
        assert_eq!(flows.mss(&k), DEFAULT_MSS, "unknown connection");
        flows.record(k, mss(&syn_ack).unwrap());
        assert_eq!(flows.mss(&k), 1400);
        flows.record(k, 9000);
        assert_eq!((flows.mss(&k), flows.len()), (LINK_MSS, 1), "a new SYN replaces; no more than the link");
        let other = Key { local_port: 1, ..k };
        flows.record(other, 1000);
        flows.record(Key { local_port: 2, ..k }, 1000);
        assert_eq!(flows.mss(&k), DEFAULT_MSS, "the oldest is forgotten");
        assert_eq!(flows.mss(&other), 1000);
    }
}
