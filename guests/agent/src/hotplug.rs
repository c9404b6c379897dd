//! Hotplug decisions, free of system calls: what a backend directory's values may be and how
//! they become device numbers and interface names.

/// Xenbus state names (`xenbus.h`).
pub fn state_name(s: &str) -> &'static str {
    match s {
        "1" => "initialising",
        "2" => "init-wait",
        "3" => "initialised",
        "4" => "connected",
        "5" => "closing",
        "6" => "closed",
        "" => "gone",
        _ => "unknown",
    }
}

/// `physical-device` as blkback reads it: `"%x:%x"` of the Linux `dev_t`.
pub fn physical_device(rdev: u64) -> String {
    let major = ((rdev >> 8) & 0xfff) | ((rdev >> 32) & !0xfff);
    let minor = (rdev & 0xff) | ((rdev >> 12) & !0xff);
    format!("{major:x}:{minor:x}")
}

/// A vbd target must be an absolute path without `..` (the plan allows no other characters
/// than `[A-Za-z0-9/._:-]`; the agent checks again, since it reads xenstore).
pub fn check_target(t: &str) -> Result<&str, String> {
    let ok = t.starts_with('/')
        && t.len() <= 64
        && !t.split('/').any(|c| c == "..")
        && t.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'.' | b'_' | b':' | b'-'));
    if ok {
        Ok(t)
    } else {
        Err(format!("target '{t}' must be an absolute path of the backend domain"))
    }
}

/// An interface name: 1..=15 characters of `[A-Za-z0-9._-]`.
pub fn check_ifname(n: &str) -> Result<&str, String> {
    let ok = !n.is_empty()
        && n.len() <= 15
        && n.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(n)
    } else {
        Err(format!("'{n}' is not an interface name"))
    }
}

/// netback's interface for frontend domain `front`, handle `handle`: `vif<front>.<handle>`.
pub fn vif_name(front: &str, handle: &str) -> Result<String, String> {
    let f: u16 = front.parse().map_err(|_| format!("bad frontend id '{front}'"))?;
    let h: u32 = handle.parse().map_err(|_| format!("bad handle '{handle}'"))?;
    Ok(format!("vif{f}.{h}"))
}

/// A value read from xenstore, fit for one line of output: at most `max` characters, anything
/// but printable ASCII shown as `?` (a backend's error text is written by another domain's
/// kernel, but the store holds whatever bytes were put there).
pub fn printable(s: &str, max: usize) -> String {
    let mut out: String = s.chars().take(max).map(|c| if c == ' ' || c.is_ascii_graphic() { c } else { '?' }).collect();
    if s.chars().count() > max {
        out.push_str("...");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printable_values() {
        assert_eq!(printable("-22 mapping ring-ref port 5", 60), "-22 mapping ring-ref port 5");
        assert_eq!(printable("a\nb\x1b[2J", 60), "a?b?[2J");
        assert_eq!(printable("abcdef", 3), "abc...");
    }

    #[test]
    fn device_numbers() {
        // makedev(254, 2) with glibc/musl's encoding, and a large minor.
        assert_eq!(physical_device((254 << 8) | 2), "fe:2");
        let (major, minor) = (7u64, 0x12345u64);
        let dev = (major << 8) | (minor & 0xff) | ((minor & !0xff) << 12);
        assert_eq!(physical_device(dev), "7:12345");
    }

    #[test]
    fn names_and_targets() {
        assert_eq!(vif_name("2", "0").unwrap(), "vif2.0");
        assert!(vif_name("2;x", "0").is_err());
        assert!(check_target("/dev/vda2").is_ok());
        assert!(check_target("/data/kv.img").is_ok());
        assert!(check_target("dev/vda2").is_err());
        assert!(check_target("/dev/../etc/shadow").is_err());
        assert!(check_target("/dev/vda2 /x").is_err());
        assert!(check_ifname("xenbr0").is_ok());
        assert!(check_ifname("a-very-long-bridge-name").is_err());
        assert_eq!(state_name("4"), "connected");
    }
}
