//! One domain's balloon as XENMEM_decrease_reservation / populate_physmap and the control
//! domain's memory target drive it: extents of any order at any frame, targets of any size,
//! refills at restart. Nothing may panic; populated plus given-back pages always equal the
//! plan; a page is given back at most once; the target stays between the floor and the plan.
#![no_main]

use hyp_core::balloon::{Balloon, FLOOR_KIB};
use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;

/// Operations per input: enough to reach every state, few enough to keep runs fast.
const MAX_STEPS: usize = 256;

fn run(u: &mut Unstructured<'_>) -> Result<()> {
    let base: u64 = u.int_in_range(0..=0xffff_ffffu64)? << 12;
    let size: u64 = u.int_in_range(0..=8192u64)? << 12;
    let mut b = Balloon::new(base, size);
    let plan = b.plan_pages();
    let pfn0 = base >> 12;
    let mut budget = MAX_STEPS;
    while !u.is_empty() && budget > 0 {
        budget -= 1;
        let gpfn = if u.arbitrary()? { pfn0 + u.int_in_range(0..=plan + 8)? } else { u.arbitrary()? };
        match u.int_in_range(0..=4u8)? {
            0 => {
                let order = u.int_in_range(0..=12u32)?;
                let give = u.arbitrary()?;
                if b.check(gpfn, order, give).is_ok() {
                    let n = 1u64 << order;
                    for f in gpfn..gpfn + n {
                        assert_eq!(b.is_out(f), !give);
                        if give { b.give_back(f) } else { b.take(f) }.expect("a checked extent");
                    }
                }
            }
            1 => {
                let was = b.is_out(gpfn);
                if b.give_back(gpfn).is_ok() {
                    assert!(!was && b.is_out(gpfn));
                }
            }
            2 => {
                let was = b.is_out(gpfn);
                if b.take(gpfn).is_ok() {
                    assert!(was && !b.is_out(gpfn));
                }
            }
            3 => {
                let kib = u.arbitrary()?;
                if b.set_target(kib).is_ok() {
                    assert_eq!(b.target_kib(), kib);
                    assert!(kib <= plan * 4 && kib >= FLOOR_KIB.min(plan * 4));
                }
            }
            _ => {
                let given = b.given_back();
                let back = b.refill();
                assert_eq!(back.len() as u64, given);
                assert_eq!(b.given_back(), 0);
            }
        }
        assert_eq!(b.populated() + b.given_back(), plan, "pages lost or made up");
    }
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    let _ = run(&mut Unstructured::new(data));
});
