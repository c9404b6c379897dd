//! Network settings as unikernels take them from boot arguments (`ip=10.0.2.20/24`,
//! `gw=10.0.2.2`): parsed here, host-tested; the address types are `core::net`'s.

use core::net::Ipv4Addr;

/// `a.b.c.d/prefix` (prefix 0..=32; without `/prefix`, 24).
pub fn parse_cidr(s: &str) -> Option<(Ipv4Addr, u8)> {
    let (a, p) = s.split_once('/').unwrap_or((s, "24"));
    let prefix = p.parse::<u8>().ok().filter(|&p| p <= 32)?;
    Some((a.parse().ok()?, prefix))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr() {
        assert_eq!(parse_cidr("10.0.2.20/24"), Some((Ipv4Addr::new(10, 0, 2, 20), 24)));
        assert_eq!(parse_cidr("10.0.2.21"), Some((Ipv4Addr::new(10, 0, 2, 21), 24)));
        assert_eq!(parse_cidr("10.0.2.20/33"), None);
        assert_eq!(parse_cidr("10.0.2/24"), None);
        assert_eq!(parse_cidr("10.0.2.256/8"), None);
    }
}
