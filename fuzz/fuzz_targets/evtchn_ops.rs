//! The event-channel table as three domains drive it through EVTCHNOP_*: allocate, bind
//! (inter-domain, VIRQ, vCPU), send, status, close, service bindings and domain resets, in
//! any order with any port, domain and vCPU number. Nothing may panic; a bound port's peer
//! is bound back to it; a domain's reset leaves none of its ports open and no other domain's
//! port pointing at it.
#![no_main]

use hyp_core::evtchn::{self, Service, State, Table, Target, MAX_PORTS};
use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;

const DOMS: usize = 3;

fn port(u: &mut Unstructured<'_>) -> Result<u32> {
    Ok(if u.ratio(7, 8)? { u.int_in_range(0..=MAX_PORTS + 4)? } else { u.arbitrary()? })
}

fn check(t: &Table) {
    for d in 0..DOMS {
        for p in 0..MAX_PORTS {
            if let State::Interdomain { dom: remote, port } = t.state(d, p) {
                assert_eq!(
                    t.state(remote, port),
                    State::Interdomain { dom: d, port: p },
                    "{d}:{p} is bound to {remote}:{port}, which is not bound back"
                );
            }
        }
    }
}

/// Operations per input: enough to reach every state, few enough to keep runs fast.
const MAX_STEPS: usize = 128;

fn run(u: &mut Unstructured<'_>) -> Result<()> {
    let mut t = Table::new(DOMS);
    let mut budget = MAX_STEPS;
    while !u.is_empty() && budget > 0 {
        budget -= 1;
        let d = u.int_in_range(0..=DOMS - 1)?;
        let other = u.int_in_range(0..=DOMS)?; // one past the last: a domain that does not exist
        let nr_vcpus = u.int_in_range(1..=4usize)?;
        match u.int_in_range(0..=9u8)? {
            0 => {
                let _ = t.alloc_unbound(d, other);
            }
            1 => {
                let _ = t.bind_interdomain(d, other, port(u)?);
            }
            2 => {
                let _ = t.close(d, port(u)?);
            }
            3 => match t.send(d, port(u)?) {
                Ok(Target::Port(rd, rp)) => assert!(rd < DOMS && rp < MAX_PORTS),
                _ => {}
            },
            4 => {
                let _ = t.status(d, port(u)?);
            }
            5 => {
                let (virq, vcpu) = (u.int_in_range(0..=40u32)?, u.int_in_range(0..=5usize)?);
                if let Ok(p) = t.bind_virq(d, virq, vcpu, nr_vcpus) {
                    assert!(vcpu < nr_vcpus && p < MAX_PORTS);
                    assert_eq!(t.virq_port(d, virq, vcpu), Some(p));
                }
            }
            6 => {
                let (p, vcpu) = (port(u)?, u.int_in_range(0..=5usize)?);
                if t.bind_vcpu(d, p, vcpu, nr_vcpus).is_ok() {
                    assert_eq!(t.vcpu(d, p), vcpu);
                }
            }
            7 => {
                let s = if u.arbitrary()? { Service::Console } else { Service::Store };
                let _ = t.bind_service(d, s);
            }
            8 => {
                // Its ports all free; no peer left pointing at them (the final mutual check).
                t.reset(d);
                for p in 1..MAX_PORTS {
                    assert_eq!(t.state(d, p), State::Free, "port {p} of reset domain {d} is still open");
                }
            }
            _ => {
                let (id, count) = (u.arbitrary::<u16>()?, u.int_in_range(0..=8usize)?);
                if let Some(i) = evtchn::index_of(id, d, count) {
                    assert!(i < count);
                }
            }
        }
    }
    check(&t);
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    let _ = run(&mut Unstructured::new(data));
});
