//! The xenstore directories of a PV device (vbd or vif) between a frontend and a backend
//! domain, as Xen's toolstack (`libxl`) writes them (docs/xen-abi.md §6.9, §6.10): the
//! hypervisor writes them at boot from the plan, so Linux's xen-blkback / xen-netback and any
//! frontend (Linux's or ferrum-rt's) find their devices without a toolstack.
//!
//! Invariants: both directories start in state 1 (Initialising), the only state in which
//! Linux's xenbus probes a device; the backend keys Linux's backends refuse to run without
//! (`dev`, `mode`, `params` for a vbd; `handle`, `mac`, `script` for a vif) are always there.

use crate::plan::{PvDevice, PvKind};
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

/// One directory: its path and `(key, value)` pairs (the directory itself comes first, as
/// `("", "")`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dir {
    /// Absolute path.
    pub path: String,
    /// Keys below it, in writing order.
    pub keys: Vec<(&'static str, String)>,
}

/// Frontend path of `dev` in domain `front`.
pub fn frontend_path(front: u16, dev: &PvDevice<'_>) -> String {
    format!("/local/domain/{front}/device/{}/{}", dev.kind.as_str(), dev.devid)
}

/// Backend path of `dev` of frontend `front`, served by `back`.
pub fn backend_path(back: u16, front: u16, dev: &PvDevice<'_>) -> String {
    format!("/local/domain/{back}/backend/{}/{front}/{}", dev.kind.as_str(), dev.devid)
}

/// Linux's name of a vbd device number: 202:(disk << 4) → `xvd<letter>`.
pub fn vbd_name(devid: u32) -> String {
    let disk = (devid >> 4) & 0xf;
    match devid >> 8 {
        202 => format!("xvd{}", char::from(b'a' + disk as u8)),
        _ => format!("vbd{devid}"),
    }
}

/// Formats a MAC address as xenstore carries it.
pub fn mac_text(m: &[u8; 6]) -> String {
    format!("{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}", m[0], m[1], m[2], m[3], m[4], m[5])
}

/// The frontend and backend directories of `dev`.
pub fn dirs(front: u16, back: u16, dev: &PvDevice<'_>) -> (Dir, Dir) {
    let fpath = frontend_path(front, dev);
    let bpath = backend_path(back, front, dev);
    let s = |v: &str| String::from(v);
    let mut f = alloc::vec![
        ("backend", bpath.clone()),
        ("backend-id", format!("{back}")),
        ("state", s("1")),
        ("trusted", s("1")),
    ];
    let mut b = alloc::vec![
        ("frontend", fpath.clone()),
        ("frontend-id", format!("{front}")),
        ("online", s("1")),
        ("state", s("1")),
    ];
    match dev.kind {
        PvKind::Vbd => {
            f.extend([("virtual-device", format!("{}", dev.devid)), ("device-type", s("disk"))]);
            b.extend([
                ("dev", vbd_name(dev.devid)),
                ("mode", s(if dev.writable { "w" } else { "r" })),
                ("type", s("phy")),
                ("params", s(dev.target)),
                ("removable", s("0")),
                ("bootable", s("1")),
                ("device-type", s("disk")),
                ("discard-enable", s("0")),
            ]);
        }
        PvKind::Vif => {
            let mac = mac_text(&dev.mac);
            f.extend([("handle", format!("{}", dev.devid)), ("mac", mac.clone())]);
            b.extend([
                ("handle", format!("{}", dev.devid)),
                ("mac", mac),
                ("script", s("ferrum-agent")),
                ("bridge", s(dev.target)),
                ("type", s("vif")),
                ("hotplug-status", s("")),
            ]);
        }
    }
    (Dir { path: fpath, keys: f }, Dir { path: bpath, keys: b })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get<'a>(d: &'a Dir, k: &str) -> Option<&'a str> {
        d.keys.iter().find(|e| e.0 == k).map(|e| e.1.as_str())
    }

    #[test]
    fn vbd_dirs() {
        let dev = PvDevice {
            kind: PvKind::Vbd,
            backend: "control",
            devid: 51712,
            target: "/dev/vda2",
            writable: true,
            mac: [0; 6],
        };
        let (f, b) = dirs(3, 1, &dev);
        assert_eq!(f.path, "/local/domain/3/device/vbd/51712");
        assert_eq!(b.path, "/local/domain/1/backend/vbd/3/51712");
        assert_eq!(get(&f, "backend"), Some(b.path.as_str()));
        assert_eq!(get(&f, "backend-id"), Some("1"));
        assert_eq!(get(&f, "state"), Some("1"));
        assert_eq!(get(&f, "virtual-device"), Some("51712"));
        assert_eq!(get(&b, "frontend"), Some(f.path.as_str()));
        assert_eq!(get(&b, "frontend-id"), Some("3"));
        assert_eq!(get(&b, "state"), Some("1"));
        assert_eq!(get(&b, "dev"), Some("xvda"));
        assert_eq!(get(&b, "mode"), Some("w"));
        assert_eq!(get(&b, "params"), Some("/dev/vda2"));
        assert_eq!(get(&b, "physical-device"), None, "the agent resolves it in the backend domain");
    }

    #[test]
    fn vif_dirs() {
        let dev = PvDevice {
            kind: PvKind::Vif,
            backend: "control",
            devid: 0,
            target: "xenbr0",
            writable: false,
            mac: [0, 0x16, 0x3e, 0, 2, 0xa],
        };
        let (f, b) = dirs(2, 1, &dev);
        assert_eq!(f.path, "/local/domain/2/device/vif/0");
        assert_eq!(get(&f, "mac"), Some("00:16:3e:00:02:0a"));
        assert_eq!(get(&f, "handle"), Some("0"));
        for k in ["handle", "mac", "script", "bridge", "hotplug-status"] {
            assert!(get(&b, k).is_some(), "{k}");
        }
        assert_eq!(get(&b, "bridge"), Some("xenbr0"));
    }

    #[test]
    fn names() {
        assert_eq!(vbd_name(51712), "xvda");
        assert_eq!(vbd_name(51728), "xvdb");
        assert_eq!(vbd_name(7), "vbd7");
    }
}
