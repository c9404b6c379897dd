//! Network settings as unikernels take them from boot arguments (`ip=10.0.2.20/24`,
//! `gw=10.0.2.2`): parsed here, host-tested; the address types are `core::net`'s. Also the
//! gratuitous ARP a unikernel sends after it resumed elsewhere (a migration), so bridges and
//! neighbours learn where its address now lives. And the netfront features a boot argument
//! turns off (`net=nocsum`, `net=nogso`).

use core::net::Ipv4Addr;

/// `a.b.c.d/prefix` (prefix 0..=32; without `/prefix`, 24).
pub fn parse_cidr(s: &str) -> Option<(Ipv4Addr, u8)> {
    let (a, p) = s.split_once('/').unwrap_or((s, "24"));
    let prefix = p.parse::<u8>().ok().filter(|&p| p <= 32)?;
    Some((a.parse().ok()?, prefix))
}

/// Bytes of a gratuitous ARP frame (padded to Ethernet's minimum).
pub const GARP_LEN: usize = 60;

/// A gratuitous ARP request (RFC 5227's announcement): broadcast, sender and target protocol
/// address both `ip`, sender hardware address `mac`.
pub fn gratuitous_arp(mac: [u8; 6], ip: Ipv4Addr) -> [u8; GARP_LEN] {
    let mut f = [0u8; GARP_LEN];
    f[0..6].copy_from_slice(&[0xff; 6]);
    f[6..12].copy_from_slice(&mac);
    f[12..14].copy_from_slice(&[0x08, 0x06]); // ARP
    f[14..22].copy_from_slice(&[0, 1, 0x08, 0x00, 6, 4, 0, 1]); // Ethernet, IPv4, request
    f[22..28].copy_from_slice(&mac);
    f[28..32].copy_from_slice(&ip.octets());
    f[38..42].copy_from_slice(&ip.octets()); // target hardware address stays zero
    f
}

/// The optional protocol features a netfront uses (`netfront::Features`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NetFeatures {
    /// Transmit checksum offload for TCP.
    pub csum: bool,
    /// TCP segmentation offload: large TCP frames cut into segments by the backend (used only
    /// when the backend offers `feature-sg` and `feature-gso-tcpv4`).
    pub gso: bool,
}

impl Default for NetFeatures {
    fn default() -> Self {
        Self { csum: true, gso: true }
    }
}

impl NetFeatures {
    /// From a comma-separated list such as `nocsum,nogso` (a boot argument); unknown words are
    /// refused.
    pub fn parse(s: &str) -> Result<Self, &str> {
        let mut f = Self::default();
        for w in s.split(',').filter(|w| !w.is_empty()) {
            match w {
                "nocsum" => f.csum = false,
                "csum" => f.csum = true,
                "nogso" => f.gso = false,
                "gso" => f.gso = true,
                other => return Err(other),
            }
        }
        Ok(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn net_features_from_boot_arguments() {
        assert_eq!(NetFeatures::parse(""), Ok(NetFeatures { csum: true, gso: true }));
        assert_eq!(NetFeatures::parse("nocsum"), Ok(NetFeatures { csum: false, gso: true }));
        assert_eq!(NetFeatures::parse("nogso,csum"), Ok(NetFeatures { csum: true, gso: false }));
        assert_eq!(NetFeatures::parse("nocsum,tso"), Err("tso"));
    }

    #[test]
    fn cidr() {
        assert_eq!(parse_cidr("10.0.2.20/24"), Some((Ipv4Addr::new(10, 0, 2, 20), 24)));
        assert_eq!(parse_cidr("10.0.2.21"), Some((Ipv4Addr::new(10, 0, 2, 21), 24)));
        assert_eq!(parse_cidr("10.0.2.20/33"), None);
        assert_eq!(parse_cidr("10.0.2/24"), None);
        assert_eq!(parse_cidr("10.0.2.256/8"), None);
    }

    #[test]
    fn garp() {
        let f = gratuitous_arp([0, 0x16, 0x3e, 0, 2, 0], Ipv4Addr::new(10, 0, 2, 20));
        assert_eq!(&f[0..6], &[0xff; 6]);
        assert_eq!(&f[12..14], &[8, 6]);
        assert_eq!(&f[20..22], &[0, 1]);
        assert_eq!(&f[28..32], &[10, 0, 2, 20]);
        assert_eq!(&f[38..42], &[10, 0, 2, 20]);
        assert_eq!(&f[32..38], &[0; 6]);
    }
}
