//! Hypercall argument decoding and the decisions taken on it: memory reservations and
//! ballooning, grant map/copy structures, grant-entry claims and handle bookkeeping, event
//! channel operations, and the hypervisor console's command parser. Nothing may panic, and
//! the bookkeeping invariants hold after every step.
#![no_main]

use hyp_core::balloon::Balloon;
use hyp_core::evtchn::Table;
use hyp_core::gnttab::{claim, Grants, Mapping};
use libfuzzer_sys::fuzz_target;
use xen_abi::gnttab::{CopyOp, MapOp};
use xen_abi::memory::Reservation;

fuzz_target!(|data: &[u8]| {
    let _ = Reservation::parse(data);
    let _ = MapOp::parse(data);
    let _ = CopyOp::parse(data);
    if let Ok(line) = core::str::from_utf8(data) {
        let _ = hyp_core::command::parse(line);
    }
    let mut balloon = Balloon::new(0x4000_0000, 4 << 20);
    let mut grants = Grants::new();
    let mut table = Table::new(3);
    let mut handles = Vec::new();
    for op in data.chunks(12) {
        let mut w = [0u8; 12];
        w[..op.len()].copy_from_slice(op);
        let a = u64::from_le_bytes(w[..8].try_into().unwrap());
        let b = u32::from_le_bytes(w[8..].try_into().unwrap());
        let d = usize::from(w[0] % 3);
        match w[11] % 8 {
            0 => {
                let before = balloon.populated();
                let ok = balloon.check(a >> 20, b % 12, true).is_ok();
                if ok && b % 12 == 0 {
                    balloon.give_back(a >> 20).unwrap();
                    assert_eq!(balloon.populated(), before - 1);
                }
            }
            1 => {
                let _ = balloon.take(a >> 20);
                let _ = balloon.set_target(a);
            }
            2 => {
                if let Ok(new) = claim(b, (a as u16) % 4, a & 1 != 0) {
                    assert_eq!(new & 0xffff_0000, b & 0xffff_0000);
                    assert_eq!(new & b, b);
                }
            }
            3 => {
                let m = Mapping { granter: d, gref: b % 16, ipa: a & !0xfff, frame: a >> 12, write: a & 1 != 0 };
                grants.pin(m.granter, m.gref, m.frame, m.write);
                if let Ok(h) = grants.track(usize::from(w[1] % 3), m) {
                    handles.push((usize::from(w[1] % 3), h));
                }
            }
            4 => {
                if let Some((mapper, h)) = handles.pop() {
                    let m = grants.untrack(mapper, h).expect("tracked handle");
                    let _ = grants.unpin(m.granter, m.gref, m.write);
                }
                let _ = grants.untrack(d, b);
            }
            5 => {
                let _ = table.alloc_unbound(d, usize::from(w[1] % 3));
                let _ = table.bind_interdomain(d, usize::from(w[1] % 3), b % 300);
            }
            6 => {
                let _ = table.close(d, b % 300);
                let _ = table.send(d, b % 300);
                let _ = table.status(d, b);
            }
            _ => {
                let _ = table.bind_vcpu(d, b % 300, usize::from(w[1]), 2);
                let _ = grants.involving(d);
            }
        }
        assert_eq!(balloon.populated() + balloon.given_back(), balloon.plan_pages());
    }
});
