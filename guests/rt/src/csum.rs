//! Transmit checksum offload for netfront (host-tested): a frame smoltcp built without its
//! TCP checksum gets the pseudo-header sum in the checksum field, the way Linux leaves a
//! `CHECKSUM_PARTIAL` packet, and goes out with `NETTXF_csum_blank | NETTXF_data_validated`;
//! whoever forwards it last (the control domain's NIC, or its own stack) completes the sum.
//!
//! Invariant: only a well-formed IPv4/TCP frame (Ethernet type 0x0800, IHL and lengths inside
//! the frame, no fragment) is prepared for offload; anything else is left untouched.

/// `NETTXF_csum_blank | NETTXF_data_validated`.
pub const TX_OFFLOAD_FLAGS: u16 = 0b11;

/// The 16-bit one's complement sum of `bytes` (big-endian words) added to `acc`, unfolded.
pub fn sum16(bytes: &[u8], mut acc: u32) -> u32 {
    let mut chunks = bytes.chunks_exact(2);
    for c in &mut chunks {
        acc += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [last] = chunks.remainder() {
        acc += u32::from(*last) << 8;
    }
    acc
}

/// `acc` folded to 16 bits.
fn fold(mut acc: u32) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

/// Prepares `frame` (Ethernet) for transmit checksum offload: for an IPv4/TCP frame, writes
/// the folded pseudo-header sum into the TCP checksum field and returns true; returns false
/// (frame untouched) for anything else.
pub fn prepare_tcp_offload(frame: &mut [u8]) -> bool {
    const ETH: usize = 14;
    if frame.len() < ETH + 20 || frame[12..14] != [0x08, 0x00] {
        return false;
    }
    let ip = &frame[ETH..];
    let ihl = usize::from(ip[0] & 0xf) * 4;
    let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
    let fragmented = u16::from_be_bytes([ip[6], ip[7]]) & 0x3fff != 0;
    if ip[0] >> 4 != 4 || ihl < 20 || ip[9] != 6 || fragmented || total > ip.len() || total < ihl + 20 {
        return false;
    }
    let tcp_len = total - ihl;
    let mut acc = sum16(&ip[12..20], 0); // source and destination addresses
    acc += 6 + tcp_len as u32;
    let at = ETH + ihl + 16;
    frame[at..at + 2].copy_from_slice(&fold(acc).to_be_bytes());
    true
}

/// The Internet checksum of `bytes` (for the tests: what the completing side computes).
pub fn internet_checksum(bytes: &[u8], seed: u32) -> u16 {
    !fold(sum16(bytes, seed))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An Ethernet + IPv4 + TCP frame with `payload`, its TCP checksum 0.
    fn frame(payload: &[u8]) -> Vec<u8> {
        let mut f = vec![0u8; 14];
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        let total = 20 + 20 + payload.len();
        let mut ip = vec![0x45, 0, (total >> 8) as u8, total as u8, 0, 1, 0x40, 0, 64, 6, 0, 0];
        ip.extend_from_slice(&[10, 0, 2, 21, 10, 0, 2, 15]);
        let c = internet_checksum(&ip, 0);
        ip[10..12].copy_from_slice(&c.to_be_bytes());
        f.extend_from_slice(&ip);
        let tcp = [0x9c, 0x41, 0x13, 0x89, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x18, 0xff, 0xff, 0, 0, 0, 0];
        f.extend_from_slice(&tcp);
        f.extend_from_slice(payload);
        f
    }

    #[test]
    fn completing_the_offloaded_sum_gives_the_real_checksum() {
        for payload in [&b""[..], b"a", b"hello, world", &[0xffu8; 1460][..]] {
            let mut f = frame(payload);
            // What a full software checksum would have put there.
            let mut pseudo = Vec::from(&f[26..34]);
            let tcp_len = 20 + payload.len();
            pseudo.extend_from_slice(&[0, 6, (tcp_len >> 8) as u8, tcp_len as u8]);
            let want = internet_checksum(&f[34..], u32::from(!internet_checksum(&pseudo, 0)));
            assert!(prepare_tcp_offload(&mut f));
            // The completing side sums the TCP segment, the field holding the pseudo-header sum.
            let done = internet_checksum(&f[34..], 0);
            assert_eq!(done, want, "payload of {} bytes", payload.len());
        }
    }

    #[test]
    fn other_frames_are_left_alone() {
        let mut arp = vec![0u8; 60];
        arp[12..14].copy_from_slice(&[0x08, 0x06]);
        assert!(!prepare_tcp_offload(&mut arp));
        let mut udp = frame(b"x");
        udp[14 + 9] = 17;
        let before = udp.clone();
        assert!(!prepare_tcp_offload(&mut udp));
        assert_eq!(udp, before);
        let mut short = frame(b"");
        short.truncate(40);
        assert!(!prepare_tcp_offload(&mut short), "total length beyond the frame");
        let mut frag = frame(b"x");
        frag[14 + 6] = 0x20; // more fragments
        assert!(!prepare_tcp_offload(&mut frag));
    }
}
