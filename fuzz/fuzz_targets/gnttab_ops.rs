//! Grant-table bookkeeping as mappers and granters drive it through GNTTABOP_map_grant_ref,
//! unmap_grant_ref and copy: claims on arbitrary entry words, pins and unpins, maptrack
//! handles (real, stale and forged), domain restarts revoking everything a domain is part
//! of. Nothing may panic; a claim never changes the granter's domain field or drops a flag;
//! maptrack stops at its limit; a handle names the mapping it was given for until unmapped.
#![no_main]

use hyp_core::gnttab::{claim, Grants, Mapping, MAPTRACK_LIMIT};
use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use std::collections::HashMap;

const DOMS: usize = 3;

/// Operations per input: enough to reach every state (maptrack exhaustion included), few
/// enough to keep runs fast.
const MAX_STEPS: usize = 5000;

fn run(u: &mut Unstructured<'_>) -> Result<()> {
    let mut g = Grants::new();
    // What we expect each live handle to be: (mapper, handle) -> mapping.
    let mut live: HashMap<(usize, u32), Mapping> = HashMap::new();
    let mut budget = MAX_STEPS;
    while !u.is_empty() && budget > 0 {
        budget -= 1;
        let mapper = u.int_in_range(0..=DOMS - 1)?;
        match u.int_in_range(0..=6u8)? {
            0 => {
                let (word, user, write) = (u.arbitrary::<u32>()?, u.arbitrary::<u16>()?, u.arbitrary()?);
                if let Ok(new) = claim(word, user, write) {
                    assert_eq!(new >> 16, word >> 16, "a claim changed the domid field");
                    assert_eq!(new & word, word, "a claim dropped a flag");
                    assert_eq!(word >> 16, u32::from(user));
                }
            }
            1 | 2 => {
                // A successful map: pin, then track.
                let m = Mapping {
                    granter: u.int_in_range(0..=DOMS - 1)?,
                    gref: u.int_in_range(0..=31u32)?,
                    ipa: u.arbitrary::<u64>()? & !0xfff,
                    frame: u.arbitrary::<u64>()? >> 12,
                    write: u.arbitrary()?,
                    revoked: false,
                };
                g.pin(m.granter, m.gref, m.frame, m.write);
                assert!(g.pinned_frame(m.granter, m.gref).is_some());
                match g.track(mapper, m) {
                    Ok(h) => {
                        assert!((h as usize) < MAPTRACK_LIMIT);
                        assert!(live.insert((mapper, h), m).is_none(), "handle {h} handed out twice");
                        assert!(g.mapped_at(mapper, m.ipa));
                    }
                    Err(_) => {
                        assert_eq!(live.keys().filter(|(d, _)| *d == mapper).count(), MAPTRACK_LIMIT);
                        let _ = g.unpin(m.granter, m.gref, m.write);
                    }
                }
            }
            3 => {
                // Unmap: a live handle or any number.
                let h = if u.arbitrary()? {
                    live.keys().filter(|(d, _)| *d == mapper).map(|&(_, h)| h).nth(u.int_in_range(0..=7usize)?)
                } else {
                    Some(u.arbitrary()?)
                };
                if let Some(h) = h {
                    match g.untrack(mapper, h) {
                        Ok(m) => {
                            assert_eq!(live.remove(&(mapper, h)), Some(m), "handle {h} named another mapping");
                            let _ = g.unpin(m.granter, m.gref, m.write);
                        }
                        Err(_) => assert!(!live.contains_key(&(mapper, h)), "live handle {h} refused"),
                    }
                }
            }
            4 => {
                let h = u.arbitrary()?;
                assert_eq!(g.lookup(mapper, h).ok(), live.get(&(mapper, h)).copied());
            }
            5 => {
                // A copy pins and unpins at once.
                let (granter, gref, write) = (u.int_in_range(0..=DOMS - 1)?, u.arbitrary::<u32>()?, u.arbitrary()?);
                let had = g.pinned_frame(granter, gref);
                g.pin(granter, gref, 7, write);
                let _ = g.unpin(granter, gref, write);
                assert_eq!(g.pinned_frame(granter, gref), had);
            }
            _ => {
                // Domain `mapper` restarts: everything it maps or granted goes.
                for (m, h) in g.involving(mapper) {
                    let map = g.untrack(m, h).expect("a handle involving() listed");
                    assert_eq!(live.remove(&(m, h)), Some(map));
                    let _ = g.unpin(map.granter, map.gref, map.write);
                }
                assert!(g.involving(mapper).is_empty());
                assert!(live.values().all(|m| m.granter != mapper));
            }
        }
    }
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    let _ = run(&mut Unstructured::new(data));
});
