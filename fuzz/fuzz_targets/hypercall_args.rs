//! The hypercall argument structures a guest hands over by pointer (memory reservations,
//! grant map and copy operations, event-channel and vCPU arguments read as words) and the
//! hypervisor console's command parser. Nothing may panic; what parses reads only the bytes
//! it was given.
#![no_main]

use libfuzzer_sys::fuzz_target;
use xen_abi::gnttab::{CopyOp, MapOp};
use xen_abi::memory::Reservation;

fuzz_target!(|data: &[u8]| {
    for start in 0..data.len().min(8) {
        let b = &data[start..];
        let _ = Reservation::parse(b);
        let _ = MapOp::parse(b);
        let _ = CopyOp::parse(b);
        for off in [0usize, 2, 4, 8, 16, usize::MAX - 1] {
            let _ = (xen_abi::rd16(b, off), xen_abi::rd32(b, off), xen_abi::rd64(b, off));
        }
    }
    if let Ok(line) = core::str::from_utf8(data) {
        let _ = hyp_core::command::parse(line);
        let _ = hyp_core::command::parse_kib(line);
    }
});
