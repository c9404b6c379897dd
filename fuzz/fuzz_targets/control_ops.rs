//! The control interface's codecs (`hyp_core::control`), as the hypervisor decodes what the
//! control domain's `hypctl` sends: any `struct xen_domctl` / `struct xen_sysctl` bytes, and any
//! image head, size and limits for an update. Nothing may panic; a decoded request names a
//! command the hypervisor implements, with Xen 4.19's interface version; an accepted update
//! fits its slot and its RAM room.
#![no_main]

use hyp_core::control::{self, DomInfo, Status};
use libfuzzer_sys::fuzz_target;
use xen_abi::{domctl as dc, sysctl as sc};

fuzz_target!(|data: &[u8]| {
    let mut d = [0u8; dc::SIZE];
    let n = data.len().min(dc::SIZE);
    d[..n].copy_from_slice(&data[..n]);
    if let Ok(r) = control::decode_domctl(&d) {
        assert_eq!(u32::from_le_bytes([d[4], d[5], d[6], d[7]]), dc::INTERFACE_VERSION);
        assert!(r.domid < xen_abi::domid::FIRST_RESERVED || r.op == control::DomOp::GetInfo);
        if r.op == control::DomOp::LoadImage {
            let _ = control::load_args(&d);
        }
    }
    let mut s = [0u8; sc::SIZE];
    s[..data.len().min(sc::SIZE)].copy_from_slice(&data[..data.len().min(sc::SIZE)]);
    if control::decode_sysctl(&s).is_ok() {
        assert_eq!(u32::from_le_bytes([s[4], s[5], s[6], s[7]]), sc::INTERFACE_VERSION);
    }
    let _ = DomInfo::decode(data);
    if let Some(st) = Status::decode(data) {
        let _ = st.name();
        assert_eq!(Status::decode(&st.encode()), Some(st));
    }
    // An update: limits from the first 24 bytes, the head after them.
    if data.len() >= 24 {
        let word = |i: usize| u64::from_le_bytes(data[i..i + 8].try_into().unwrap_or([0; 8]));
        let (size, slot, room) = (word(0) >> 40, word(8) >> 40, word(16) >> 40);
        let head = &data[24..];
        if control::check_update(head, size, 0, slot, room).is_ok() {
            assert!(size <= slot);
            let h = hyp_core::image::parse(head).unwrap();
            assert!(h.footprint(size) <= room);
        }
    }
});
