//! The xenstore wire decoder and request handling: arbitrary bytes from three domains, fed in
//! arbitrary pieces, with replies drained in arbitrary amounts. Nothing may panic, and no
//! domain's use may exceed its quota.
#![no_main]

use libfuzzer_sys::fuzz_target;
use xenstore::{Perm, Quota, Store, PERM_READ, TOOLSTACK};

fuzz_target!(|data: &[u8]| {
    let quota = Quota {
        nodes: 64,
        bytes: 4096,
        names: 2048,
        snapshots: 64 * 1024,
        all_snapshots: 128 * 1024,
        watches: 8,
        transactions: 2,
        output: 8192,
    };
    let mut s = Store::new(quota);
    for d in 1..=3u16 {
        s.introduce(d);
        let home = format!("/local/domain/{d}");
        s.tool_write(&home, b"", &[Perm { dom: d, access: 0 }]);
        s.tool_write(
            &format!("{home}/name"),
            b"x",
            &[Perm { dom: TOOLSTACK, access: 0 }, Perm { dom: d, access: PERM_READ }],
        );
    }
    // Each chunk: a control byte (domain, piece length, drain amount), then the piece.
    let mut rest = data;
    while let Some((&ctl, tail)) = rest.split_first() {
        let dom = u16::from(ctl % 3) + 1;
        let len = usize::from(ctl >> 2).min(tail.len());
        let (piece, after) = tail.split_at(len);
        let taken = s.feed(dom, piece);
        assert!(taken <= piece.len());
        if ctl & 2 != 0 {
            let _ = s.take_output(dom, usize::from(ctl) * 16);
        }
        for d in 1..=3u16 {
            let u = s.usage(d);
            assert!(u.nodes <= quota.nodes + 2, "nodes over quota: {u:?}");
            assert!(u.watches <= quota.watches && u.transactions <= quota.transactions, "{u:?}");
        }
        rest = after;
    }
});
