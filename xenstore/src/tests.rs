extern crate std;

use super::*;
use alloc::vec;

const D1: u16 = 1;
const D2: u16 = 2;

fn msg(ty: u32, req: u32, tx: u32, payload: &[u8]) -> Vec<u8> {
    let mut m = vec![0u8; 16];
    xen_abi::wr32(&mut m, 0, ty);
    xen_abi::wr32(&mut m, 4, req);
    xen_abi::wr32(&mut m, 8, tx);
    xen_abi::wr32(&mut m, 12, payload.len() as u32);
    m.extend_from_slice(payload);
    m
}

/// Parsed output messages: (type, req_id, tx_id, payload).
fn drain(s: &mut Store, dom: u16) -> Vec<(u32, u32, u32, Vec<u8>)> {
    let out = s.take_output(dom, usize::MAX);
    let mut v = Vec::new();
    let mut i = 0;
    while i < out.len() {
        let len = xen_abi::rd32(&out, i + 12).unwrap() as usize;
        v.push((
            xen_abi::rd32(&out, i).unwrap(),
            xen_abi::rd32(&out, i + 4).unwrap(),
            xen_abi::rd32(&out, i + 8).unwrap(),
            out[i + 16..i + 16 + len].to_vec(),
        ));
        i += 16 + len;
    }
    v
}

fn req(s: &mut Store, dom: u16, ty: u32, tx: u32, payload: &[u8]) -> (u32, Vec<u8>) {
    let m = msg(ty, 7, tx, payload);
    assert_eq!(s.feed(dom, &m), m.len());
    let r = drain(s, dom);
    let first = r.into_iter().find(|m| m.0 != xs::WATCH_EVENT).expect("a reply");
    assert_eq!(first.1, 7, "req_id echoed");
    (first.0, first.3)
}

fn write(s: &mut Store, dom: u16, tx: u32, path: &str, val: &str) -> (u32, Vec<u8>) {
    let mut p = Vec::from(path.as_bytes());
    p.push(0);
    p.extend_from_slice(val.as_bytes());
    req(s, dom, xs::WRITE, tx, &p)
}

fn z(s: &str) -> Vec<u8> {
    let mut v = Vec::from(s.as_bytes());
    v.push(0);
    v
}

fn err(name: &str) -> (u32, Vec<u8>) {
    (xs::ERROR_MSG, z(name))
}

/// A store with two domains, each owning its home as the hypervisor sets it up.
fn setup() -> Store {
    let mut s = Store::new(Quota::default());
    for d in [D1, D2] {
        s.introduce(d);
        let perms = [Perm { dom: TOOLSTACK, access: 0 }, Perm { dom: d, access: PERM_READ }];
        s.tool_write(&home(d), b"", &perms);
        s.tool_write(&format!("{}/name", home(d)), format!("dom{d}").as_bytes(), &perms);
        let own = [Perm { dom: d, access: 0 }];
        s.tool_write(&format!("{}/data", home(d)), b"", &own);
    }
    s
}

#[test]
fn read_write_relative_and_absolute() {
    let mut s = setup();
    assert_eq!(write(&mut s, D1, 0, "data/x", "42"), (xs::WRITE, z("OK")));
    assert_eq!(req(&mut s, D1, xs::READ, 0, &z("data/x")), (xs::READ, b"42".to_vec()));
    assert_eq!(req(&mut s, D1, xs::READ, 0, &z("/local/domain/1/data/x")), (xs::READ, b"42".to_vec()));
    assert_eq!(req(&mut s, D1, xs::READ, 0, &z("name")), (xs::READ, b"dom1".to_vec()));
    assert_eq!(req(&mut s, D1, xs::DIRECTORY, 0, &z("data")), (xs::DIRECTORY, z("x")));
    assert_eq!(req(&mut s, D1, xs::READ, 0, &z("data/nope")), err("ENOENT"));
    assert_eq!(s.tool_read("/local/domain/1/data/x"), Some(&b"42"[..]));
    // Values may contain NULs.
    let mut p = z("data/bin");
    p.extend_from_slice(&[1, 0, 2]);
    assert_eq!(req(&mut s, D1, xs::WRITE, 0, &p).0, xs::WRITE);
    assert_eq!(req(&mut s, D1, xs::READ, 0, &z("data/bin")), (xs::READ, vec![1, 0, 2]));
}

#[test]
fn permissions_confine_each_domain() {
    let mut s = setup();
    // Its home is read-only to it: only data/ is writable.
    assert_eq!(write(&mut s, D1, 0, "name", "evil"), err("EACCES"));
    assert_eq!(write(&mut s, D1, 0, "/local/domain/2/data/x", "1"), err("EACCES"));
    assert_eq!(req(&mut s, D1, xs::READ, 0, &z("/local/domain/2/name")), err("EACCES"));
    assert_eq!(req(&mut s, D1, xs::DIRECTORY, 0, &z("/local/domain")), err("EACCES"));
    assert_eq!(write(&mut s, D1, 0, "/tool", "1"), err("EACCES"));
    assert_eq!(req(&mut s, D1, xs::RM, 0, &z("name")), err("EACCES"));
    // A missing node under an unreadable parent reads as EACCES, not ENOENT.
    assert_eq!(req(&mut s, D1, xs::READ, 0, &z("/local/domain/2/data/none")), err("EACCES"));
    // Sharing: D1 lets D2 read one of its nodes.
    write(&mut s, D1, 0, "data/shared", "hi");
    assert_eq!(req(&mut s, D1, xs::SET_PERMS, 0, b"data/shared\0n1\0r2\0"), (xs::SET_PERMS, z("OK")));
    assert_eq!(req(&mut s, D2, xs::READ, 0, &z("/local/domain/1/data/shared")), (xs::READ, b"hi".to_vec()));
    assert_eq!(write(&mut s, D2, 0, "/local/domain/1/data/shared", "x"), err("EACCES"));
    assert_eq!(req(&mut s, D1, xs::GET_PERMS, 0, &z("data/shared")), (xs::GET_PERMS, b"n1\0r2\0".to_vec()));
    // Nobody but the toolstack gives a node away.
    assert_eq!(req(&mut s, D1, xs::SET_PERMS, 0, b"data/shared\0n2\0"), err("EACCES"));
    // New nodes belong to their creator.
    write(&mut s, D1, 0, "data/a/b", "1");
    assert_eq!(req(&mut s, D1, xs::GET_PERMS, 0, &z("data/a")), (xs::GET_PERMS, z("n1")));
}

#[test]
fn watches_fire_at_registration_and_on_change_with_relative_paths() {
    let mut s = setup();
    let m = msg(xs::WATCH, 1, 0, b"data\0tok\0");
    s.feed(D1, &m);
    let out = drain(&mut s, D1);
    assert_eq!(out[0].0, xs::WATCH);
    assert_eq!(out[1], (xs::WATCH_EVENT, 0, 0, b"data\0tok\0".to_vec()));
    write(&mut s, D1, 0, "data/k", "v");
    // `write` drained the event already; watch D2 absolutely and check both shapes.
    let m = msg(xs::WATCH, 2, 0, b"/local/domain/1/data\0abs\0");
    s.feed(D2, &m);
    drain(&mut s, D2);
    s.tool_write("/local/domain/1/data/k", b"w", &[Perm { dom: D1, access: PERM_READ }]);
    assert_eq!(drain(&mut s, D1), vec![(xs::WATCH_EVENT, 0, 0, b"data/k\0tok\0".to_vec())]);
    assert_eq!(drain(&mut s, D2), vec![(xs::WATCH_EVENT, 0, 0, b"/local/domain/1/data/k\0abs\0".to_vec())]);
    // Watches on a missing path fire when it appears; removals reach watches below.
    s.feed(D1, &msg(xs::WATCH, 3, 0, b"data/later/deep\0t2\0"));
    drain(&mut s, D1);
    write(&mut s, D1, 0, "data/later/deep", "1");
    let m = msg(xs::RM, 4, 0, &z("data/later"));
    s.feed(D1, &m);
    let ev: Vec<_> = drain(&mut s, D1).into_iter().filter(|m| m.0 == xs::WATCH_EVENT).map(|m| m.3).collect();
    assert!(ev.contains(&b"data/later\0tok\0".to_vec()), "{ev:?}");
    assert!(ev.contains(&b"data/later/deep\0t2\0".to_vec()), "{ev:?}");
    // Unwatch.
    assert_eq!(req(&mut s, D1, xs::UNWATCH, 0, b"data\0tok\0"), (xs::UNWATCH, z("OK")));
    assert_eq!(req(&mut s, D1, xs::UNWATCH, 0, b"data\0tok\0"), err("ENOENT"));
}

#[test]
fn events_only_reach_domains_that_may_read() {
    let mut s = setup();
    s.feed(D2, &msg(xs::WATCH, 1, 0, b"/local/domain/1\0spy\0"));
    drain(&mut s, D2);
    write(&mut s, D1, 0, "data/secret", "x");
    assert!(drain(&mut s, D2).is_empty());
}

#[test]
fn transactions_commit_atomically_and_detect_conflicts() {
    let mut s = setup();
    let (_, id) = req(&mut s, D1, xs::TRANSACTION_START, 0, b"\0");
    let id: u32 = core::str::from_utf8(&id[..id.len() - 1]).unwrap().parse().unwrap();
    assert_ne!(id, 0);
    write(&mut s, D1, id, "data/t", "1");
    // Not visible outside before commit.
    assert_eq!(req(&mut s, D1, xs::READ, 0, &z("data/t")), err("ENOENT"));
    assert_eq!(req(&mut s, D1, xs::READ, id, &z("data/t")), (xs::READ, b"1".to_vec()));
    assert_eq!(req(&mut s, D1, xs::TRANSACTION_END, id, &z("T")), (xs::TRANSACTION_END, z("OK")));
    assert_eq!(req(&mut s, D1, xs::READ, 0, &z("data/t")), (xs::READ, b"1".to_vec()));
    // Conflict: something the transaction read changes underneath.
    let (_, id) = req(&mut s, D1, xs::TRANSACTION_START, 0, b"\0");
    let id: u32 = core::str::from_utf8(&id[..id.len() - 1]).unwrap().parse().unwrap();
    req(&mut s, D1, xs::READ, id, &z("data/t"));
    write(&mut s, D1, id, "data/u", "2");
    write(&mut s, D1, 0, "data/t", "changed");
    assert_eq!(req(&mut s, D1, xs::TRANSACTION_END, id, &z("T")), err("EAGAIN"));
    assert_eq!(req(&mut s, D1, xs::READ, 0, &z("data/u")), err("ENOENT"));
    // Abort discards; unknown ids are refused.
    let (_, id) = req(&mut s, D1, xs::TRANSACTION_START, 0, b"\0");
    let id: u32 = core::str::from_utf8(&id[..id.len() - 1]).unwrap().parse().unwrap();
    write(&mut s, D1, id, "data/v", "3");
    assert_eq!(req(&mut s, D1, xs::TRANSACTION_END, id, &z("F")), (xs::TRANSACTION_END, z("OK")));
    assert_eq!(req(&mut s, D1, xs::READ, 0, &z("data/v")), err("ENOENT"));
    assert_eq!(req(&mut s, D1, xs::READ, 999, &z("data/t")), err("ENOENT"));
    // Another domain's transaction id is not ours.
    let (_, id) = req(&mut s, D1, xs::TRANSACTION_START, 0, b"\0");
    let id: u32 = core::str::from_utf8(&id[..id.len() - 1]).unwrap().parse().unwrap();
    assert_eq!(write(&mut s, D2, id, "data/x", "1"), err("ENOENT"));
}

#[test]
fn transaction_writes_fire_watches_only_at_commit() {
    let mut s = setup();
    s.feed(D1, &msg(xs::WATCH, 1, 0, b"data\0w\0"));
    drain(&mut s, D1);
    let m = msg(xs::TRANSACTION_START, 2, 0, b"\0");
    s.feed(D1, &m);
    let id = drain(&mut s, D1)[0].3.clone();
    let id: u32 = core::str::from_utf8(&id[..id.len() - 1]).unwrap().parse().unwrap();
    let mut p = z("data/q");
    p.extend_from_slice(b"1");
    s.feed(D1, &msg(xs::WRITE, 3, id, &p));
    assert!(drain(&mut s, D1).iter().all(|m| m.0 != xs::WATCH_EVENT));
    s.feed(D1, &msg(xs::TRANSACTION_END, 4, id, &z("T")));
    assert!(drain(&mut s, D1).iter().any(|m| m.0 == xs::WATCH_EVENT && m.3 == b"data/q\0w\0"));
}

#[test]
fn quotas_bound_a_flooding_domain() {
    let q = Quota { nodes: 5, bytes: 16, watches: 2, transactions: 1, output: 4096, ..Quota::default() };
    let mut s = Store::new(q);
    s.introduce(D1);
    s.tool_write(&home(D1), b"", &[Perm { dom: D1, access: 0 }]);
    // The home it owns counts: four more nodes fit.
    for i in 0..4 {
        assert_eq!(write(&mut s, D1, 0, &format!("n{i}"), "").0, xs::WRITE, "node {i}");
    }
    assert_eq!(write(&mut s, D1, 0, "n4", ""), err("ENOSPC"));
    assert_eq!(write(&mut s, D1, 0, "n0", "0123456789abcdef"), (xs::WRITE, z("OK")));
    assert_eq!(write(&mut s, D1, 0, "n1", "x"), err("ENOSPC"));
    assert_eq!(req(&mut s, D1, xs::WATCH, 0, b"a\0t\0").0, xs::WATCH);
    assert_eq!(req(&mut s, D1, xs::WATCH, 0, b"b\0t\0").0, xs::WATCH);
    assert_eq!(req(&mut s, D1, xs::WATCH, 0, b"c\0t\0"), err("ENOSPC"));
    assert_eq!(req(&mut s, D1, xs::TRANSACTION_START, 0, b"\0").0, xs::TRANSACTION_START);
    assert_eq!(req(&mut s, D1, xs::TRANSACTION_START, 0, b"\0"), err("ENOSPC"));
    let u = s.usage(D1);
    assert_eq!((u.nodes, u.watches, u.transactions), (5, 2, 1));
}

#[test]
fn unread_output_stops_intake_and_drops_events() {
    let q = Quota { output: 200, ..Quota::default() };
    let mut s = Store::new(q);
    for d in [D1, D2] {
        s.introduce(d);
        s.tool_write(&home(d), b"", &[Perm { dom: d, access: PERM_READ }]);
    }
    s.feed(D2, &msg(xs::WATCH, 1, 0, b"/local/domain/1\0t\0"));
    // D2 never reads; D1 keeps writing and is not slowed down.
    for i in 0..50 {
        assert_eq!(write(&mut s, D1, 0, &format!("k{i}"), "v").0, xs::WRITE);
    }
    let u = s.usage(D2);
    assert!(u.output <= 200 + 64, "{u:?}");
    assert!(u.dropped > 0);
    // A domain that does not read its replies stops being served.
    let m = msg(xs::READ, 1, 0, &z("k1"));
    let mut fed = 0;
    for _ in 0..50 {
        fed += s.feed(D1, &m);
    }
    assert!(fed < 50 * m.len());
}

#[test]
fn framing_handles_split_and_bad_messages() {
    let mut s = setup();
    let m = msg(xs::READ, 9, 0, &z("name"));
    for b in &m {
        assert_eq!(s.feed(D1, core::slice::from_ref(b)), 1);
    }
    assert_eq!(drain(&mut s, D1), vec![(xs::READ, 9, 0, b"dom1".to_vec())]);
    // Oversized: E2BIG, the payload is skipped, the next message still works.
    let mut big = msg(xs::WRITE, 1, 0, b"");
    xen_abi::wr32(&mut big, 12, 5000);
    big.extend(std::iter::repeat_n(b'a', 5000));
    big.extend(msg(xs::READ, 2, 0, &z("name")));
    assert_eq!(s.feed(D1, &big), big.len());
    let out = drain(&mut s, D1);
    assert_eq!(out[0], (xs::ERROR_MSG, 1, 0, z("E2BIG")));
    assert_eq!(out[1], (xs::READ, 2, 0, b"dom1".to_vec()));
    // Garbage types and paths.
    assert_eq!(req(&mut s, D1, 999, 0, b""), err("EINVAL"));
    assert_eq!(req(&mut s, D1, xs::READ, 0, &z("a//b")), err("EINVAL"));
    assert_eq!(req(&mut s, D1, xs::READ, 0, &z("bad path")), err("EINVAL"));
    assert_eq!(req(&mut s, D1, xs::READ, 0, &[0xff, 0]), err("EINVAL"));
    assert_eq!(req(&mut s, D1, xs::WRITE, 0, b"nonul"), err("EINVAL"));
    assert_eq!(req(&mut s, D1, xs::INTRODUCE, 0, b"3\0"), err("EACCES"));
    // Requests from a domain without a connection are ignored.
    assert_eq!(s.feed(9, &m), 0);
}

#[test]
fn domain_path_reset_and_introduced() {
    let mut s = setup();
    assert_eq!(req(&mut s, D1, xs::GET_DOMAIN_PATH, 0, &z("2")), (xs::GET_DOMAIN_PATH, z("/local/domain/2")));
    assert_eq!(req(&mut s, D1, xs::IS_DOMAIN_INTRODUCED, 0, &z("2")), (xs::IS_DOMAIN_INTRODUCED, z("T")));
    assert_eq!(req(&mut s, D1, xs::IS_DOMAIN_INTRODUCED, 0, &z("5")), (xs::IS_DOMAIN_INTRODUCED, z("F")));
    req(&mut s, D1, xs::WATCH, 0, b"data\0t\0");
    req(&mut s, D1, xs::TRANSACTION_START, 0, b"\0");
    assert_eq!(req(&mut s, D1, xs::RESET_WATCHES, 0, b""), (xs::RESET_WATCHES, z("OK")));
    assert_eq!(s.usage(D1).watches, 0);
    assert_eq!(s.usage(D1).transactions, 0);
}

#[test]
fn toolstack_grants_read_on_upper_nodes() {
    let mut s = Store::new(Quota::default());
    s.introduce(D1);
    s.tool_write("/local/domain/2/name", b"guest", &[Perm { dom: TOOLSTACK, access: 0 }]);
    let dir = |s: &mut Store| req(s, D1, xs::DIRECTORY, 0, b"/local/domain\0").0;
    assert_eq!(dir(&mut s), xs::ERROR_MSG);
    s.tool_set_perms("/local/domain", &[Perm { dom: TOOLSTACK, access: 0 }, Perm { dom: D1, access: PERM_READ }]);
    assert_eq!(dir(&mut s), xs::DIRECTORY);
    // Reading the list does not open the nodes below it.
    assert_eq!(req(&mut s, D1, xs::READ, 0, b"/local/domain/2/name\0").0, xs::ERROR_MSG);
    s.tool_set_perms("/nonexistent", &[Perm { dom: D1, access: 0 }]);
    assert_eq!(s.tool_read("/nonexistent"), None);
}

#[test]
fn watches_below_a_path() {
    let mut s = setup();
    s.feed(D2, &msg(xs::WATCH, 1, 0, b"/local/domain/1/data/dev/state\0be\0"));
    drain(&mut s, D2);
    assert!(s.watches_below(D2, "/local/domain/1/data"));
    assert!(s.watches_below(D2, "/local/domain/1/data/dev/state"));
    assert!(!s.watches_below(D2, "/local/domain/1/da"), "a path prefix is not a parent");
    assert!(!s.watches_below(D1, "/local/domain/1/data"));
    s.feed(D2, &msg(xs::UNWATCH, 2, 0, b"/local/domain/1/data/dev/state\0be\0"));
    drain(&mut s, D2);
    assert!(!s.watches_below(D2, "/local/domain/1/data"));
}

/// Found by the hostile-guest suite: a path without its terminating NUL was accepted.
#[test]
fn strings_must_end_in_nul() {
    let mut s = setup();
    assert_eq!(req(&mut s, D1, xs::READ, 0, b"name"), err("EINVAL"));
    assert_eq!(req(&mut s, D1, xs::READ, 0, &z("name")), (xs::READ, b"dom1".to_vec()));
    // A WRITE's value is the one argument without a NUL.
    assert_eq!(write(&mut s, D1, 0, "data/v", "x"), (xs::WRITE, z("OK")));
    assert_eq!(req(&mut s, D1, xs::MKDIR, 0, b"data/d"), err("EINVAL"));
}

/// Heap bounds a hostile domain could otherwise get past (found while auditing the quotas
/// for the hostile suite): 1000 nodes with 3072-byte paths would be 3 MB of names, and a
/// transaction recorded every path it read, absent ones included, without limit.
#[test]
fn names_and_snapshots_are_quota_bound() {
    let q = Quota { names: 200, snapshots: 4 * 1024, ..Quota::default() };
    let mut s = Store::new(q);
    s.introduce(D1);
    s.tool_write(&home(D1), b"", &[Perm { dom: D1, access: 0 }]);
    let long = "x".repeat(100);
    assert_eq!(write(&mut s, D1, 0, &long, "").0, xs::WRITE);
    // A second 100-byte name passes the 200-byte budget with its "/local/domain/1/" prefix.
    assert_eq!(write(&mut s, D1, 0, &"y".repeat(100), ""), err("ENOSPC"));
    assert!(s.usage(D1).names > 100);
    // Transactions: starting one costs nothing (the snapshot is shared); what it records does.
    let big = "z".repeat(3000);
    for _ in 0..8 {
        assert_eq!(req(&mut s, D1, xs::TRANSACTION_START, 0, b"\0").0, xs::TRANSACTION_START);
    }
    // Reads of distinct (even absent) long paths inside transaction 1 until the budget says no.
    let mut refused = false;
    for i in 0..100 {
        let mut body = Vec::from(format!("{big}{i}").as_bytes());
        body.push(0);
        let r = req(&mut s, D1, xs::READ, 1, &body);
        if r == err("ENOSPC") {
            refused = true;
            break;
        }
        assert_eq!(r, err("ENOENT"), "read {i}");
    }
    assert!(refused, "the transaction budget never refused");
    assert!(s.usage(D1).snapshots <= 4 * 1024 + 3200);
    // The other transactions are refused too (the budget is the domain's), outside them not.
    assert_eq!(req(&mut s, D1, xs::READ, 2, b"a\0"), err("ENOSPC"));
    assert_eq!(req(&mut s, D1, xs::READ, 0, b"a\0"), err("ENOENT"));
    // Ending the transaction gives its charge back.
    assert_eq!(req(&mut s, D1, xs::TRANSACTION_END, 1, b"F\0").0, xs::TRANSACTION_END);
    assert_eq!(req(&mut s, D1, xs::READ, 2, b"a\0"), err("ENOENT"));
}
