//! `hostile`: the hostile-guest suite. One unikernel that attacks the hypervisor through every
//! interface a guest has, case after case, while other domains (a heartbeat, the `web`
//! unikernel served to the host, the Linux control domain) must carry on. Each case prints
//! what it did and what came back (`hostile: <case>: …`), checks that every refusal is a Xen
//! error code (or, for MMIO and stage-2 abuse, an abort injected into this domain only), and
//! ends with `hostile: case <case> done (N checks, M failures)`; a failed check prints
//! `hostile: FAIL …`. The seed (`seed=N`, default 1) drives every random choice, so a run
//! replays exactly. With `wait=console` it reads a line from its console before each case
//! (`hostile: ready for case <case>`), so a test can check the other domains between cases.
//!
//! Cases, in order (`cases=a,b,…` picks some):
//! - `hypercalls`: unknown numbers; thousands of random calls with boundary and random
//!   arguments (null, unaligned, page-crossing, past our RAM, device addresses, the grant
//!   frames, beyond the VA range, huge counts). Calls whose *success* would only hurt this
//!   domain (giving memory back, moving its shared pages or vcpu_info, closing its own ports,
//!   shutting itself down, blocking) get bad pointers only.
//! - `evtchn`: port exhaustion and recovery, binding other domains' ports, status of theirs,
//!   bad ports and vCPUs, close while sending, a storm of sends.
//! - `grants`: mapping its own grants, maptrack exhaustion (batched), stage-2 table pressure
//!   (a mapping every 2 MiB of the extended region), a revoked grant, other domains' refs,
//!   copies with overlapping, page-crossing and huge lengths, bad handles.
//! - `xenstore`: node, watch and transaction quotas, huge payloads, a header announcing more
//!   than the protocol allows, unknown message types, permissions of other domains' nodes.
//! - `psci`: CPU_ON of CPUs that are not ours and with bad entry points, AFFINITY_INFO,
//!   a CPU_SUSPEND loop, random SMCCC function ids over HVC and SMC, an unknown HVC immediate.
//! - `mmio`: every GIC distributor (and GICv3 redistributor) register read at every width,
//!   random writes, writes to read-only fields, accesses without a syndrome (ISV = 0), SGIs to
//!   vCPUs that do not exist; then the GIC is set up again and the timer must still work.
//! - `irq-storm`: SGIs to itself in a tight loop.
//! - `stage2`: loads and stores outside its partition in a tight loop, until the hypervisor's
//!   fault budget stops the domain (the last case: nothing runs after it).
#![no_std]
#![no_main]

extern crate alloc;

use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::time::Duration;
use ferrum_rt::probe::{self, Width};
use ferrum_rt::xen::{self, Port, Xen};
use ferrum_rt::{println, time, Runtime};
use xen_abi::gnttab as gt;
use xen_abi::{domid, errno, hc, layout};

ferrum_rt::entry!(main);

/// xorshift64*: small, seedable, good enough to pick arguments.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn pick<T: Copy>(&mut self, s: &[T]) -> T {
        s[self.below(s.len() as u64) as usize]
    }
}

/// Four pages of our own heap that hypercalls may write at will.
#[repr(C, align(4096))]
struct Scratch([u8; 4 * 4096]);

struct Suite {
    rng: Rng,
    checks: u64,
    failures: u64,
    ram: (u64, u64),
    scratch: u64,
    scratch_mem: &'static mut Scratch,
    me: u16,
    others: Vec<u16>,
}

impl Suite {
    fn check(&mut self, ok: bool, what: &str) {
        self.checks += 1;
        if !ok {
            self.failures += 1;
            println!("hostile: FAIL {what}");
        }
    }

    fn ram_end(&self) -> u64 {
        self.ram.0 + self.ram.1
    }

    /// Pointers a hypercall must refuse with -EFAULT (or ignore): none is our memory.
    fn bad_pointers(&self) -> [u64; 10] {
        [
            0,
            8,
            0x0300_1000,        // the GIC distributor: device memory, not RAM
            self.ram_end() - 2, // crosses the end of our RAM for any read of 4 bytes or more
            self.ram_end(),
            self.ram_end() + 0x10_0000,
            1 << 39, // beyond our 39-bit VA range
            1 << 48,
            u64::MAX - 7,
            1 << 63,
        ]
    }

    /// Any argument: bad pointers, our scratch pages (also unaligned and page-crossing), the
    /// grant frames' second half (refs we never use), boundary numbers, random bits.
    fn any_arg(&mut self) -> u64 {
        let s = self.scratch;
        let pool = [
            s,
            s + 1,
            s + 4095,
            s + 8192,
            layout::GNTTAB_BASE + 0x800,
            1,
            2,
            7,
            0xff,
            0xffff,
            u64::from(domid::SELF),
            u64::from(domid::INVALID),
            u64::from(u32::MAX),
            1 << 31,
            u64::MAX,
            4096,
        ];
        match self.rng.below(4) {
            0 => self.rng.pick(&self.bad_pointers()),
            1 => self.rng.next(),
            _ => self.rng.pick(&pool),
        }
    }

    fn fill_scratch(&mut self) {
        let mut v = [0u8; 4 * 4096];
        for c in v.chunks_mut(8) {
            c.copy_from_slice(&self.rng.next().to_le_bytes());
        }
        self.scratch_mem.0.copy_from_slice(&v);
    }
}

/// Whether `r` is a hypercall result Xen could give: a value, or a negated Xen errno.
fn xen_result(r: i64) -> bool {
    r >= 0 || (-133..=-1).contains(&r)
}

fn name_of(r: i64) -> String {
    match -r {
        errno::EPERM => "EPERM".into(),
        errno::ENOENT => "ENOENT".into(),
        errno::ESRCH => "ESRCH".into(),
        errno::EFAULT => "EFAULT".into(),
        errno::EINVAL => "EINVAL".into(),
        errno::ENOSPC => "ENOSPC".into(),
        errno::ENOSYS => "ENOSYS".into(),
        errno::EBUSY => "EBUSY".into(),
        errno::ENXIO => "ENXIO".into(),
        errno::E2BIG => "E2BIG".into(),
        errno::EEXIST => "EEXIST".into(),
        errno::EACCES => "EACCES".into(),
        _ if r >= 0 => "ok".into(),
        n => format!("errno {n}"),
    }
}

fn summary(h: &BTreeMap<String, u64>) -> String {
    let v: Vec<String> = h.iter().map(|(k, n)| format!("{k} x{n}")).collect();
    v.join(", ")
}

fn main(rt: &mut Runtime) {
    let seed: u64 = rt.arg("seed").and_then(|v| v.parse().ok()).unwrap_or(1);
    let calls: u64 = rt.arg("calls").and_then(|v| v.parse().ok()).unwrap_or(3000);
    let cases: Vec<String> = rt
        .arg("cases")
        .unwrap_or("hypercalls,evtchn,grants,xenstore,psci,mmio,irq-storm,stage2")
        .split(',')
        .map(String::from)
        .collect();
    let step = rt.arg("wait") == Some("console");
    let ram = rt.ram();
    let gic = rt.gic_frames();
    let scratch_mem: &'static mut Scratch = Box::leak(Box::new(Scratch([0; 4 * 4096])));
    let scratch = scratch_mem.0.as_ptr() as u64;
    let Some(x) = rt.xen() else {
        println!("hostile: FAIL no Xen interface");
        return;
    };
    let me = x.domid.unwrap_or(domid::SELF);
    // The other domains, by id (every id in /local/domain but ours; ids 1..=8 when hidden).
    let mut others: Vec<u16> = x
        .store
        .as_mut()
        .and_then(|s| s.directory("/local/domain").ok())
        .map(|v| v.iter().filter_map(|d| d.parse().ok()).collect())
        .unwrap_or_default();
    if others.is_empty() {
        others = (1..=8).collect();
    }
    others.retain(|&d| d != me);
    let mut s = Suite {
        rng: Rng(seed.max(1).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1),
        checks: 0,
        failures: 0,
        ram,
        scratch,
        scratch_mem,
        me,
        others,
    };
    println!("hostile: seed {seed}, domain {me}, others {:?}, cases {}", s.others, cases.join(","));
    let t0 = time::now();
    for c in &cases {
        if step {
            println!("hostile: ready for case {c}");
            let mut line = [0u8; 64];
            let mut n = 0;
            while n < line.len() && !line[..n].contains(&b'\n') && !line[..n].contains(&b'\r') {
                n += ferrum_rt::console::read_blocking(&mut line[n..]);
            }
        }
        let (checks, failures) = (s.checks, s.failures);
        let start = time::now();
        match c.as_str() {
            "hypercalls" => hypercalls(&mut s, calls),
            "evtchn" => evtchn(&mut s),
            "grants" => grants(&mut s, x),
            "xenstore" => xenstore(&mut s, x),
            "psci" => psci(&mut s),
            "mmio" => match gic {
                Some(g) => mmio(&mut s, g),
                None => println!("hostile: mmio: no GIC"),
            },
            "irq-storm" => match gic {
                Some(g) => irq_storm(&mut s, g),
                None => println!("hostile: irq-storm: no GIC"),
            },
            "stage2" => {
                println!(
                    "hostile: all cases before stage2 done: {} checks, {} failures, in {} ms (seed {seed})",
                    s.checks,
                    s.failures,
                    t0.elapsed().as_millis()
                );
                stage2(&mut s);
            }
            other => println!("hostile: FAIL unknown case '{other}'"),
        }
        println!(
            "hostile: case {c} done ({} checks, {} failures, {} ms)",
            s.checks - checks,
            s.failures - failures,
            start.elapsed().as_millis()
        );
    }
    println!("hostile: all cases done: {} checks, {} failures (seed {seed}); idling", s.checks, s.failures);
    loop {
        time::sleep(Duration::from_secs(3600));
    }
}

// ----- hypercalls -----

/// Hypercall numbers the hypervisor implements.
const HANDLED: [u64; 9] = [
    hc::MEMORY_OP,
    hc::XEN_VERSION,
    hc::CONSOLE_IO,
    hc::GRANT_TABLE_OP,
    hc::VM_ASSIST,
    hc::VCPU_OP,
    hc::SCHED_OP,
    hc::EVENT_CHANNEL_OP,
    hc::HVM_OP,
];

/// Whether a call's success would only hurt this domain (see the module doc): such calls get
/// bad pointers only.
fn self_harm(nr: u64, cmd: u64, a1: u64) -> bool {
    match nr {
        hc::MEMORY_OP => matches!(cmd & 0x3f, 1 | 6 | 7 | 15 | 23),
        hc::GRANT_TABLE_OP => matches!(cmd, 5 | 8),
        hc::VCPU_OP => a1 == 0 && matches!(cmd, 0..=3 | 10),
        hc::HVM_OP => cmd == 0,
        hc::EVENT_CHANNEL_OP => matches!(cmd, 0..=3 | 6 | 7 | 10 | 15),
        hc::SCHED_OP => matches!(cmd, 1..=4 | 6), // 6: SCHEDOP_watchdog would stop it later
        hc::CONSOLE_IO => cmd == 0,
        _ => false,
    }
}

fn hypercalls(s: &mut Suite, calls: u64) {
    // Unknown numbers.
    for nr in [0, 1, 33, 63, 64, 65, 1000, 1 << 32, u64::MAX] {
        let r = probe::hypercall5(nr, [0; 5]);
        s.check(r == -errno::ENOSYS, &format!("hypercall {nr:#x}: {r}, not -ENOSYS"));
    }
    // The control interface (domctl/sysctl): every operation, well formed and aimed at another
    // domain, is refused to a domain that is not the control domain.
    let target = s.others.first().copied().unwrap_or(1);
    let mut allowed = 0;
    let ops = [2u32, 3, 4, 5, 0xf000_0001, 0xf000_0002, 0xf000_0003];
    for cmd in ops {
        let mut b = [0u8; 144];
        b[0..4].copy_from_slice(&cmd.to_le_bytes());
        b[4..8].copy_from_slice(&xen_abi::domctl::INTERFACE_VERSION.to_le_bytes());
        b[8..10].copy_from_slice(&target.to_le_bytes());
        let r = probe::hypercall5(hc::DOMCTL, [b.as_mut_ptr() as u64, 0, 0, 0, 0]);
        if r != -errno::EPERM {
            allowed += 1;
            println!("hostile: control: domctl {cmd:#x} on domain {target}: {r}, not -EPERM");
        }
    }
    let mut b = [0u8; 136];
    b[0..4].copy_from_slice(&xen_abi::sysctl::GETDOMAININFOLIST.to_le_bytes());
    b[4..8].copy_from_slice(&xen_abi::sysctl::INTERFACE_VERSION.to_le_bytes());
    b[12..16].copy_from_slice(&8u32.to_le_bytes());
    b[16..24].copy_from_slice(&s.scratch.to_le_bytes());
    let r = probe::hypercall5(hc::SYSCTL, [b.as_mut_ptr() as u64, 0, 0, 0, 0]);
    if r != -errno::EPERM {
        allowed += 1;
        println!("hostile: control: sysctl getdomaininfolist: {r}, not -EPERM");
    }
    s.check(allowed == 0, &format!("control: {allowed} control operations not refused"));
    println!(
        "hostile: control: {} domctl operations and sysctl getdomaininfolist on domain {target}: -EPERM",
        ops.len()
    );
    // Bad pointers where a pointer is read or written.
    let bad = s.bad_pointers();
    let mut wrong = 0;
    for &p in &bad {
        let tries: [(u64, [u64; 5]); 7] = [
            (hc::XEN_VERSION, [1, p, 0, 0, 0]),
            (hc::MEMORY_OP, [1, p, 0, 0, 0]),
            (hc::CONSOLE_IO, [0, 64, p, 0, 0]),
            (hc::GRANT_TABLE_OP, [0, p, 1, 0, 0]),
            (hc::EVENT_CHANNEL_OP, [4, p, 0, 0, 0]),
            (hc::HVM_OP, [1, p, 0, 0, 0]),
            (hc::SCHED_OP, [2, p, 0, 0, 0]),
        ];
        for (nr, a) in tries {
            let r = probe::hypercall5(nr, a);
            // A batch hypercall reports a bad op array per op or as -EFAULT.
            if r != -errno::EFAULT && !(nr == hc::GRANT_TABLE_OP && xen_result(r)) {
                wrong += 1;
                println!("hostile: hypercalls: {nr} with pointer {p:#x}: {r}");
            }
        }
    }
    s.check(wrong == 0, &format!("hypercalls: {wrong} bad pointers not refused with -EFAULT"));
    println!("hostile: hypercalls: {} bad pointers x 7 calls: refused with -EFAULT", bad.len());
    // Huge counts.
    for (nr, a) in [
        (hc::GRANT_TABLE_OP, [0, s.scratch, u64::MAX, 0, 0]),
        (hc::GRANT_TABLE_OP, [5, s.scratch, 1 << 32, 0, 0]),
        (hc::CONSOLE_IO, [0, u64::MAX, 0x0300_1000, 0, 0]),
    ] {
        let r = probe::hypercall5(nr, a);
        s.check(xen_result(r) && r <= 0, &format!("hypercall {nr} with a huge count: {r}"));
    }
    // Random calls.
    let mut hist: BTreeMap<String, u64> = BTreeMap::new();
    let mut other = 0;
    for i in 0..calls {
        if i % 500 == 0 {
            println!("hostile: hypercalls: {i} random calls so far");
        }
        if i % 64 == 0 {
            s.fill_scratch();
        }
        let nr = if s.rng.below(8) == 0 { s.rng.below(72) } else { s.rng.pick(&HANDLED) };
        let mut cmd = if s.rng.below(4) == 0 { s.any_arg() } else { s.rng.below(24) };
        if nr == hc::SCHED_OP && cmd == 1 {
            cmd = 0; // SCHEDOP_block takes no pointer: it would wait for an event that never comes
        }
        let mut a = [cmd, s.any_arg(), s.any_arg(), s.any_arg(), s.any_arg()];
        if self_harm(nr, cmd, a[1]) {
            for v in a.iter_mut().skip(1) {
                *v = s.rng.pick(&bad);
            }
            if nr == hc::VCPU_OP {
                a[1] = 0;
            }
        }
        let r = probe::hypercall5(nr, a);
        if !xen_result(r) {
            other += 1;
            println!("hostile: hypercalls: {nr}({:#x}, {:#x}, {:#x}) gave {r}", a[0], a[1], a[2]);
        }
        *hist.entry(name_of(r)).or_default() += 1;
    }
    s.check(other == 0, &format!("hypercalls: {other} results that are not Xen's"));
    println!("hostile: hypercalls: {calls} random calls: {}", summary(&hist));
}

// ----- event channels -----

fn evtchn_raw(cmd: u64, buf: &mut [u8]) -> i64 {
    probe::hypercall5(hc::EVENT_CHANNEL_OP, [cmd, buf.as_mut_ptr() as u64, 0, 0, 0])
}

fn evtchn(s: &mut Suite) {
    // Exhaustion, then recovery.
    let mut ports: Vec<Port> = Vec::new();
    let err = loop {
        match xen::alloc_unbound(domid::SELF) {
            Ok(p) => ports.push(p),
            Err(e) => break e.0,
        }
        if ports.len() > 5000 {
            break 0;
        }
    };
    println!("hostile: evtchn: exhaustion: {} ports allocated, then {}", ports.len(), name_of(err));
    s.check(err == -errno::ENOSPC, "evtchn: exhaustion did not end in -ENOSPC");
    let n = ports.len();
    let closed = ports.drain(..).filter(|p| p.close().is_ok()).count();
    s.check(closed == n, "evtchn: closing the exhausted ports");
    let again = xen::alloc_unbound(domid::SELF);
    s.check(again.is_ok(), "evtchn: no port after closing them all");
    if let Ok(p) = again {
        let _ = p.close();
    }
    println!("hostile: evtchn: closed all {closed}; allocating works again");
    // Other domains' ports: none is offered to us.
    let mut refused = 0;
    let mut total = 0;
    for &d in &s.others.clone() {
        for port in [1u32, 2, 3, 4, 5, 8, 255, 256, 4095, u32::MAX] {
            total += 1;
            if xen::bind_interdomain(d, port).is_err() {
                refused += 1;
            }
        }
        let mut b = [0u8; 24];
        b[0..2].copy_from_slice(&d.to_le_bytes());
        b[4..8].copy_from_slice(&1u32.to_le_bytes());
        let r = evtchn_raw(5, &mut b);
        s.check(r == -errno::EPERM, &format!("evtchn: status of domain {d}'s port 1: {r}, not -EPERM"));
    }
    for d in [domid::INVALID, 999, 0x7ff1] {
        total += 1;
        if xen::bind_interdomain(d, 1).is_err() {
            refused += 1;
        }
    }
    s.check(refused == total, "evtchn: bound another domain's port");
    println!("hostile: evtchn: {refused}/{total} binds to other domains' ports refused; their status: -EPERM");
    // Bad ports and vCPUs.
    let mut hist: BTreeMap<String, u64> = BTreeMap::new();
    for port in [0u32, 4095, 4096, 1 << 20, u32::MAX] {
        let mut b = port.to_le_bytes();
        let r = evtchn_raw(4, &mut b);
        s.check(r < 0 && xen_result(r), &format!("evtchn: send on port {port}: {r}"));
        *hist.entry(format!("send {}", name_of(r))).or_default() += 1;
        let mut b = [0u8; 8];
        b[0..4].copy_from_slice(&port.to_le_bytes());
        let r = evtchn_raw(8, &mut b);
        *hist.entry(format!("bind_vcpu {}", name_of(r))).or_default() += 1;
    }
    if let Ok(p) = xen::alloc_unbound(domid::SELF) {
        for v in [1u32, 7, 64, u32::MAX] {
            let mut b = [0u8; 8];
            b[0..4].copy_from_slice(&p.0.to_le_bytes());
            b[4..8].copy_from_slice(&v.to_le_bytes());
            let r = evtchn_raw(8, &mut b);
            s.check(r < 0 && xen_result(r), &format!("evtchn: bind_vcpu to vCPU {v}: {r}"));
            *hist.entry(format!("bind_vcpu absent vCPU {}", name_of(r))).or_default() += 1;
        }
        let _ = p.close();
    }
    for virq in [24u32, 1000, u32::MAX] {
        let r = xen::bind_virq(virq).err().map_or(0, |e| e.0);
        s.check(r < 0 && xen_result(r), &format!("evtchn: bind_virq {virq}: {r}"));
        *hist.entry(format!("bind_virq {}", name_of(r))).or_default() += 1;
    }
    println!("hostile: evtchn: bad ports, vCPUs and VIRQs: {}", summary(&hist));
    // Close while sending, then a storm.
    match xen::alloc_unbound(domid::SELF).and_then(|a| xen::bind_interdomain(domid::SELF, a.0).map(|b| (a, b))) {
        Ok((a, b)) => {
            let t = time::now();
            let mut sent = 0u32;
            for _ in 0..20_000 {
                if a.send().is_ok() {
                    sent += 1;
                }
            }
            let got = b.wait_until(time::now().after(Duration::from_millis(100)).ticks());
            println!(
                "hostile: evtchn: storm: {sent} sends in {} ms, upcall {}",
                t.elapsed().as_millis(),
                if got { "arrived" } else { "missing" }
            );
            s.check(sent == 20_000 && got, "evtchn: storm");
            let closed = b.close();
            let after = a.send();
            println!("hostile: evtchn: send after the peer end closed: {:?}", after.map_err(|e| name_of(e.0)));
            s.check(closed.is_ok(), "evtchn: close while sending");
            let _ = a.close();
        }
        Err(e) => s.check(false, &format!("evtchn: loop-back pair: {e}")),
    }
}

// ----- grants -----

/// One map op (32 bytes): host_addr, flags, ref, dom; out: status @18, handle @20.
fn map_op(buf: &mut [u8], host: u64, gref: u32, dom: u16, readonly: bool) {
    buf[..32].fill(0);
    buf[0..8].copy_from_slice(&host.to_le_bytes());
    let flags = gt::GNTMAP_HOST_MAP | if readonly { gt::GNTMAP_READONLY } else { 0 };
    buf[8..12].copy_from_slice(&flags.to_le_bytes());
    buf[12..16].copy_from_slice(&gref.to_le_bytes());
    buf[16..18].copy_from_slice(&dom.to_le_bytes());
}

fn status_of(buf: &[u8]) -> i16 {
    i16::from_le_bytes([buf[18], buf[19]])
}

fn handle_of(buf: &[u8]) -> u32 {
    u32::from_le_bytes([buf[20], buf[21], buf[22], buf[23]])
}

/// Maps `(host, gref, dom)` in batches of 64; returns (handle or status) per op.
fn map_many(ops: &[(u64, u32, u16)]) -> Vec<Result<u32, i16>> {
    let mut out = Vec::new();
    let mut buf = alloc::vec![0u8; 64 * 32];
    for chunk in ops.chunks(64) {
        for (i, &(h, r, d)) in chunk.iter().enumerate() {
            map_op(&mut buf[i * 32..], h, r, d, true);
        }
        let r = probe::hypercall5(
            hc::GRANT_TABLE_OP,
            [gt::MAP_GRANT_REF, buf.as_mut_ptr() as u64, chunk.len() as u64, 0, 0],
        );
        for i in 0..chunk.len() {
            let op = &buf[i * 32..i * 32 + 32];
            out.push(if r != 0 {
                Err(r as i16)
            } else if status_of(op) == 0 {
                Ok(handle_of(op))
            } else {
                Err(status_of(op))
            });
        }
    }
    out
}

/// Unmaps (host, handle) pairs in batches of 64; returns how many succeeded.
fn unmap_many(maps: &[(u64, u32)]) -> usize {
    let mut ok = 0;
    let mut buf = alloc::vec![0u8; 64 * 24];
    for chunk in maps.chunks(64) {
        for (i, &(h, handle)) in chunk.iter().enumerate() {
            let op = &mut buf[i * 24..i * 24 + 24];
            op.fill(0);
            op[0..8].copy_from_slice(&h.to_le_bytes());
            op[16..20].copy_from_slice(&handle.to_le_bytes());
        }
        let r = probe::hypercall5(
            hc::GRANT_TABLE_OP,
            [gt::UNMAP_GRANT_REF, buf.as_mut_ptr() as u64, chunk.len() as u64, 0, 0],
        );
        if r == 0 {
            ok += (0..chunk.len()).filter(|i| buf[i * 24 + 20] == 0 && buf[i * 24 + 21] == 0).count();
        }
    }
    ok
}

/// One copy op (40 bytes): source {u64 ref/gmfn, domid, offset}, dest {…}, len, flags.
#[allow(clippy::too_many_arguments)]
fn copy_status(src: (u64, u16, u16), dst: (u64, u16, u16), len: u16, flags: u16) -> i16 {
    let mut b = [0u8; 40];
    for (o, (v, d, off)) in [(0usize, src), (16, dst)] {
        b[o..o + 8].copy_from_slice(&v.to_le_bytes());
        b[o + 8..o + 10].copy_from_slice(&d.to_le_bytes());
        b[o + 10..o + 12].copy_from_slice(&off.to_le_bytes());
    }
    b[32..34].copy_from_slice(&len.to_le_bytes());
    b[34..36].copy_from_slice(&flags.to_le_bytes());
    let r = probe::hypercall5(hc::GRANT_TABLE_OP, [gt::COPY, b.as_mut_ptr() as u64, 1, 0, 0]);
    if r != 0 {
        return r as i16;
    }
    i16::from_le_bytes([b[36], b[37]])
}

fn grants(s: &mut Suite, x: &mut Xen) {
    let page = ferrum_rt::alloc_page();
    let gref = match x.grant(s.me, page, true) {
        Ok(r) => r,
        Err(e) => {
            s.check(false, &format!("grants: granting a page to ourselves: {e:?}"));
            return;
        }
    };
    let base = layout::EXT_BASE + (256 << 20);
    // Our own grant, once.
    let one = map_many(&[(base, gref.0, s.me)]);
    println!("hostile: grants: mapping our own grant {}: {:?}", gref.0, one[0]);
    if let Ok(h) = one[0] {
        s.check(unmap_many(&[(base, h)]) == 1, "grants: unmapping our own grant");
    }
    // Maptrack exhaustion: the same grant at 5000 addresses.
    let ops: Vec<(u64, u32, u16)> = (0..5000u64).map(|i| (base + i * 4096, gref.0, s.me)).collect();
    let res = map_many(&ops);
    let mapped: Vec<(u64, u32)> = res.iter().zip(&ops).filter_map(|(r, o)| r.ok().map(|h| (o.0, h))).collect();
    let first_err = res.iter().find_map(|r| r.err());
    println!("hostile: grants: maptrack: {} of 5000 mappings made, then status {first_err:?}", mapped.len());
    s.check(!mapped.is_empty() && mapped.len() < 5000, "grants: maptrack has no limit");
    s.check(first_err == Some(gt::GNTST_NO_DEVICE_SPACE), "grants: maptrack exhaustion status");
    let revoke_busy = x.revoke(gref);
    s.check(revoke_busy.is_err(), "grants: revoke while mapped succeeded");
    let un = unmap_many(&mapped);
    s.check(un == mapped.len(), &format!("grants: only {un} of {} unmapped", mapped.len()));
    println!("hostile: grants: all {un} unmapped; revoke while they were mapped: refused");
    // Stage-2 table pressure: one mapping every 2 MiB of the extended region.
    let ops: Vec<(u64, u32, u16)> =
        (1..(layout::EXT_SIZE >> 21)).map(|i| (layout::EXT_BASE + (i << 21), gref.0, s.me)).collect();
    let res = map_many(&ops);
    let mapped: Vec<(u64, u32)> = res.iter().zip(&ops).filter_map(|(r, o)| r.ok().map(|h| (o.0, h))).collect();
    let mut hist: BTreeMap<i16, u64> = BTreeMap::new();
    for e in res.iter().filter_map(|r| r.err()) {
        *hist.entry(e).or_default() += 1;
    }
    println!(
        "hostile: grants: table pressure: {} of {} mappings 2 MiB apart made, refusals {hist:?}",
        mapped.len(),
        ops.len()
    );
    s.check(res.iter().all(|r| r.is_ok() || r == &Err(gt::GNTST_NO_DEVICE_SPACE)), "grants: table pressure status");
    let un = unmap_many(&mapped);
    s.check(un == mapped.len(), "grants: unmapping after table pressure");
    // Revoked grant.
    s.check(x.revoke(gref).is_ok(), "grants: revoke after unmapping");
    let r = map_many(&[(base, gref.0, s.me)]);
    println!("hostile: grants: mapping the revoked grant: {:?}", r[0]);
    s.check(r[0].is_err(), "grants: mapped a revoked grant");
    // Other domains' refs.
    let mut ops = Vec::new();
    for &d in &s.others {
        for r in [0u32, 1, 8, 9, 100, 511, 512, 1 << 20, u32::MAX] {
            ops.push((base + ops.len() as u64 * 4096, r, d));
        }
    }
    let res = map_many(&ops);
    let made: Vec<(u64, u32)> = res.iter().zip(&ops).filter_map(|(r, o)| r.ok().map(|h| (o.0, h))).collect();
    s.check(made.is_empty(), "grants: mapped another domain's ref never granted to us");
    unmap_many(&made);
    let mut hist: BTreeMap<i16, u64> = BTreeMap::new();
    for e in res.iter().filter_map(|r| r.err()) {
        *hist.entry(e).or_default() += 1;
    }
    println!("hostile: grants: {} maps of other domains' refs: all refused, statuses {hist:?}", ops.len());
    // Copies: between our own frames (allowed), overlapping; then bad lengths and offsets.
    let gfn = s.scratch >> 12;
    let me = domid::SELF;
    let ok = copy_status((gfn, me, 0), (gfn, me, 8), 100, 0);
    s.check(ok == 0, &format!("grants: overlapping copy within our own frame: {ok}"));
    let cases: [(&str, i16); 6] = [
        ("huge length", copy_status((gfn, me, 0), (gfn + 1, me, 0), 0xffff, 0)),
        ("crossing the source page", copy_status((gfn, me, 4095), (gfn + 1, me, 0), 2, 0)),
        ("crossing the destination page", copy_status((gfn, me, 0), (gfn + 1, me, 4000), 200, 0)),
        ("a frame outside our RAM", copy_status((gfn, me, 0), (s.ram_end() >> 12, me, 0), 8, 0)),
        ("another domain's frame", copy_status((gfn, me, 0), (0x40000, s.others[0], 0), 8, 0)),
        ("another domain's ref", copy_status((8, s.others[0], 0), (gfn, me, 0), 8, gt::GNTCOPY_SOURCE_GREF)),
    ];
    for (what, st) in cases {
        s.check(st < 0, &format!("grants: copy with {what} succeeded"));
    }
    println!(
        "hostile: grants: copies: overlapping within our frame ok; {}",
        cases.iter().map(|(w, st)| format!("{w}: {st}")).collect::<Vec<_>>().join(", ")
    );
    // Bad handles.
    let un = unmap_many(&[(base, u32::MAX), (base, 4095), (0, 7)]);
    s.check(un == 0, "grants: unmapping handles never issued");
}

// ----- xenstore -----

fn xenstore(s: &mut Suite, x: &mut Xen) {
    let Some(st) = x.store.as_mut() else {
        println!("hostile: xenstore: none offered");
        return;
    };
    let dir = "data/flood";
    // Node quota.
    let mut made = 0;
    let err = loop {
        match st.write(&format!("{dir}/n{made}"), "x") {
            Ok(()) => made += 1,
            Err(e) => break format!("{e:?}"),
        }
        if made > 5000 {
            break "no limit".into();
        }
    };
    println!("hostile: xenstore: node quota: {made} nodes written, then {err}");
    s.check(made < 5000, "xenstore: no node quota");
    s.check(st.rm(dir).is_ok(), "xenstore: removing the flood");
    // Value bytes: 4 KiB values until the byte quota.
    let big = "v".repeat(4000);
    let mut n = 0;
    let err = loop {
        match st.write(&format!("{dir}/b{n}"), &big) {
            Ok(()) => n += 1,
            Err(e) => break format!("{e:?}"),
        }
        if n > 1000 {
            break "no limit".into();
        }
    };
    println!("hostile: xenstore: byte quota: {n} values of 4000 bytes, then {err}");
    s.check(n < 1000, "xenstore: no byte quota");
    let _ = st.rm(dir);
    // Watches.
    let mut w = 0;
    let err = loop {
        match st.watch(&format!("{dir}/w{w}"), &format!("t{w}")) {
            Ok(()) => w += 1,
            Err(e) => break format!("{e:?}"),
        }
        if w > 5000 {
            break "no limit".into();
        }
    };
    println!("hostile: xenstore: watch quota: {w} watches, then {err}");
    s.check(w < 5000, "xenstore: no watch quota");
    let unw = (0..w).filter(|i| st.unwatch(&format!("{dir}/w{i}"), &format!("t{i}")).is_ok()).count();
    s.check(unw == w, "xenstore: unwatching");
    // Transactions.
    let mut txs = Vec::new();
    let err = loop {
        match st.transaction_start() {
            Ok(t) => txs.push(t),
            Err(e) => break format!("{e:?}"),
        }
        if txs.len() > 500 {
            break "no limit".into();
        }
    };
    println!("hostile: xenstore: transaction quota: {} open, then {err}", txs.len());
    s.check(txs.len() < 500, "xenstore: no transaction quota");
    let ended = txs.drain(..).filter(|&t| st.transaction_end(t, false).is_ok()).count();
    s.check(ended > 0, "xenstore: ending transactions");
    // A transaction that reads distinct, absent 3000-byte paths: what it records is bounded.
    if let Ok(t) = st.transaction_start() {
        let mut reads = 0u32;
        let err = loop {
            let mut m = Vec::new();
            let mut path = format!("{reads:08}");
            path.extend(core::iter::repeat_n('r', 2992));
            for v in [xen_abi::xs::READ, 950 + reads, t.0, path.len() as u32 + 1] {
                m.extend_from_slice(&v.to_le_bytes());
            }
            m.extend_from_slice(path.as_bytes());
            m.push(0);
            match st.raw_exchange(&m) {
                Ok((ty, _, p)) if ty == xen_abi::xs::ERROR_MSG && p.starts_with(b"ENOENT") => reads += 1,
                Ok((_, _, p)) => break String::from_utf8_lossy(&p).trim_end_matches('\0').into(),
                Err(e) => break format!("{e:?}"),
            }
            if reads > 5000 {
                break "no limit".into();
            }
        };
        println!("hostile: xenstore: transaction record quota: {reads} absent 3000-byte paths read, then {err}");
        s.check(err == "ENOSPC", "xenstore: transaction records unbounded");
        s.check(st.transaction_end(t, false).is_ok(), "xenstore: ending the recording transaction");
        s.check(st.read("name").is_ok(), "xenstore: connection after the recording transaction");
    }
    // Raw messages: a header announcing 4097 bytes (then the bytes), an unknown type, a path
    // without its NUL, a 3000-byte path.
    let hdr = |ty: u32, id: u32, len: u32| {
        let mut h = Vec::new();
        for v in [ty, id, 0, len] {
            h.extend_from_slice(&v.to_le_bytes());
        }
        h
    };
    let mut too_long = hdr(xen_abi::xs::WRITE, 900, 4097);
    too_long.extend(core::iter::repeat_n(b'a', 4097));
    let tries: [(&str, Vec<u8>); 4] = [
        ("a header announcing 4097 bytes", too_long),
        ("an unknown message type", {
            let mut m = hdr(9999, 901, 5);
            m.extend_from_slice(b"name\0");
            m
        }),
        ("a path without its NUL", {
            let mut m = hdr(xen_abi::xs::READ, 902, 4);
            m.extend_from_slice(b"name");
            m
        }),
        ("a 3000-byte path", {
            let mut m = hdr(xen_abi::xs::READ, 903, 3001);
            m.extend(core::iter::repeat_n(b'p', 3000));
            m.push(0);
            m
        }),
    ];
    for (what, msg) in tries {
        let r = st.raw_exchange(&msg);
        let text = match &r {
            Ok((ty, id, p)) if *ty == xen_abi::xs::ERROR_MSG => {
                format!("error {} (request {id})", String::from_utf8_lossy(p).trim_end_matches('\0'))
            }
            Ok((ty, id, _)) => format!("type {ty} (request {id})"),
            Err(e) => format!("{e:?}"),
        };
        println!("hostile: xenstore: {what}: {text}");
        s.check(matches!(r, Ok((ty, _, _)) if ty == xen_abi::xs::ERROR_MSG), &format!("xenstore: {what}: {text}"));
        let alive = st.read("name");
        s.check(alive.is_ok(), &format!("xenstore: connection after {what}"));
    }
    // Other domains' nodes.
    let mut refused = 0;
    for &d in &s.others {
        if st.write(&format!("/local/domain/{d}/name"), "pwned").is_err() {
            refused += 1;
        }
        let _ = st.read(&format!("/local/domain/{d}/data"));
    }
    s.check(refused == s.others.len(), "xenstore: wrote another domain's name");
    println!("hostile: xenstore: writes to {refused} other domains' names refused; our connection still answers");
}

// ----- PSCI -----

fn psci(s: &mut Suite) {
    const CPU_ON: u64 = 0xc400_0003;
    const AFFINITY_INFO: u64 = 0xc400_0004;
    const CPU_SUSPEND: u64 = 0xc400_0001;
    let v = probe::hvc0(0x8400_0000, 0, 0, 0);
    s.check(v == Ok(0x1_0001), &format!("psci: version {v:?}"));
    let mut hist: BTreeMap<String, u64> = BTreeMap::new();
    let entry_bad = [0u64, 1, s.ram_end(), 0x0300_1000, u64::MAX, s.ram.0 + 2];
    for mpidr in [0u64, 1, 2, 3, 7, 0x100, 0xff_ffff_ffff, u64::MAX] {
        for &e in &entry_bad {
            let r = probe::hvc0(CPU_ON, mpidr, e, 0);
            s.check(matches!(r, Ok(r) if r < 0), &format!("psci: CPU_ON({mpidr:#x}, {e:#x}): {r:?}"));
            *hist.entry(format!("CPU_ON {r:?}")).or_default() += 1;
        }
        let r = probe::hvc0(AFFINITY_INFO, mpidr, s.rng.below(4), 0);
        *hist.entry(format!("AFFINITY_INFO {r:?}")).or_default() += 1;
    }
    println!("hostile: psci: {}", summary(&hist));
    let t = time::now();
    let mut ok = 0;
    for _ in 0..2000 {
        if probe::hvc0(CPU_SUSPEND, 0, s.ram.0, 0) == Ok(0) {
            ok += 1;
        }
    }
    println!("hostile: psci: 2000 CPU_SUSPEND in {} ms: {ok} returned SUCCESS", t.elapsed().as_millis());
    // Random function ids, never SYSTEM_OFF / SYSTEM_RESET (they would end this domain).
    let mut hist: BTreeMap<String, u64> = BTreeMap::new();
    for _ in 0..2000 {
        let f = match s.rng.below(3) {
            0 => 0x8400_0000 | s.rng.below(0x20),
            1 => 0xc400_0000 | s.rng.below(0x20),
            _ => s.rng.next() & 0xffff_ffff,
        };
        if matches!(f, 0x8400_0008 | 0x8400_0009 | 0xc400_0008 | 0xc400_0009 | 0x8400_0002 | 0xc400_0002)
            || f & 0xffff_ffe0 == 0x8400_0000 && f & 0x1f >= 0x12
        {
            continue; // SYSTEM_OFF, SYSTEM_RESET, CPU_OFF, SYSTEM_RESET2 and later
        }
        let (a1, a2, a3) = (s.any_arg(), s.any_arg(), s.any_arg());
        let smc = s.rng.below(2) == 0;
        let r = if smc { probe::smc(f, a1, a2, a3) } else { probe::hvc0(f, a1, a2, a3) };
        let k = match r {
            Ok(v) if v < 0 => format!("{} error {v}", if smc { "smc" } else { "hvc" }),
            Ok(_) => format!("{} value", if smc { "smc" } else { "hvc" }),
            Err(f) => format!("{} fault EC {:#x}", if smc { "smc" } else { "hvc" }, f.class()),
        };
        *hist.entry(k).or_default() += 1;
    }
    println!("hostile: psci: random SMCCC calls: {}", summary(&hist));
    let r = probe::hvc_other(0);
    println!("hostile: psci: hvc #1: {:?}", r.map_err(|f| f.class()));
}

// ----- MMIO -----

fn mmio(s: &mut Suite, gic: (u8, u64, u64)) {
    let (ver, dist, other) = gic;
    let dist_size: u64 = if ver == 3 { 0x1_0000 } else { 0x1000 };
    // Every register, every width, read.
    let mut reads = 0u64;
    let mut faults = 0u64;
    let mut frames = alloc::vec![(dist, dist_size)];
    if ver == 3 {
        frames.push((other, 0x2_0000));
    }
    for &(base, size) in &frames {
        for off in (0..size).step_by(4) {
            for w in Width::ALL {
                reads += 1;
                if probe::read(base + off, w).is_err() {
                    faults += 1;
                }
            }
        }
    }
    println!("hostile: mmio: GICv{ver}: {reads} reads of every register at every width: {faults} aborts injected");
    // Read-only fields: TYPER and IIDR keep their values.
    let typer = probe::read(dist + 4, Width::W);
    let iidr = probe::read(dist + 8, Width::W);
    let _ = probe::write(dist + 4, Width::W, 0xffff_ffff);
    let _ = probe::write(dist + 8, Width::W, 0);
    s.check(
        probe::read(dist + 4, Width::W) == typer && probe::read(dist + 8, Width::W) == iidr,
        "mmio: GICD_TYPER/IIDR changed",
    );
    // Random writes (not to the CPU interface, which is the real hardware's virtual one).
    let mut wfaults = 0;
    for _ in 0..4000 {
        let &(base, size) = &frames[s.rng.below(frames.len() as u64) as usize];
        let off = s.rng.below(size) & !3;
        let w = s.rng.pick(&Width::ALL);
        let off = off & !(w.bytes() - 1);
        let v = s.rng.next();
        if probe::write(base + off, w, v).is_err() {
            wfaults += 1;
        }
    }
    // Routing of SPIs and SGIs to vCPUs that do not exist.
    for n in 32..64u64 {
        if ver == 3 {
            let _ = probe::write(dist + 0x6000 + 8 * n, Width::X, 0xff_0000_ffff);
        } else {
            let _ = probe::write(dist + 0x800 + n, Width::B, 0xfe);
        }
    }
    let mut sgis = 0;
    for _ in 0..2000 {
        let r = if ver == 3 {
            // Aff1 / target lists naming vCPUs 1-15, and IRM broadcast.
            let v =
                (s.rng.below(16) << 24) | (s.rng.below(2) << 40) | (s.rng.below(256) << 16) | (s.rng.next() & 0xfffe);
            probe::icc_sgi1r(v)
        } else {
            let v = (s.rng.below(3) << 24) | ((s.rng.next() & 0xfe) << 16) | s.rng.below(16);
            probe::write(dist + 0xf00, Width::W, v)
        };
        if r.is_ok() {
            sgis += 1;
        }
    }
    println!("hostile: mmio: 4000 random writes ({wfaults} aborts injected), SPI routing to absent vCPUs, {sgis}/2000 SGIs to absent vCPUs accepted");
    // No syndrome (ISV = 0): the hypervisor cannot emulate these; it injects an abort.
    let pair = probe::read_pair(dist);
    let wb = probe::read_writeback(dist + 4);
    println!(
        "hostile: mmio: ldp from GICD: {:?}; ldr with write-back: {:?}",
        pair.map(|_| ()).map_err(|f| format!("abort, ESR {:#x}", f.esr)),
        wb.map(|_| ()).map_err(|f| format!("abort, ESR {:#x}", f.esr))
    );
    s.check(pair.is_err() && wb.is_err(), "mmio: an ISV=0 access to the emulated GIC was not refused");
    // Our own GIC set up again: the timer must still wake us.
    ferrum_rt::reinit_gic();
    let prio = if ver == 3 { other + 0x1_0000 + 0x400 } else { dist + 0x400 };
    for intid in [27u64, 31] {
        let _ = probe::write(prio + intid, Width::B, 0xa0);
    }
    let t = time::now();
    time::sleep(Duration::from_millis(20));
    let slept = t.elapsed().as_millis();
    println!("hostile: mmio: GIC set up again; a 20 ms sleep took {slept} ms");
    s.check((20..2000).contains(&slept), "mmio: the timer no longer works after the GIC abuse");
}

fn irq_storm(s: &mut Suite, gic: (u8, u64, u64)) {
    let (ver, dist, _) = gic;
    let t = time::now();
    let n = 20_000;
    let mut ok = 0;
    for i in 0..n {
        let sgi = i % 16;
        let r = if ver == 3 {
            probe::icc_sgi1r(1 | (sgi << 24))
        } else {
            probe::write(dist + 0xf00, Width::W, (2 << 24) | sgi)
        };
        if r.is_ok() {
            ok += 1;
        }
    }
    let ms = t.elapsed().as_millis();
    println!("hostile: irq-storm: {ok}/{n} SGIs to ourselves in {ms} ms");
    s.check(ok == n, "irq-storm: SGI writes refused");
    let t = time::now();
    time::sleep(Duration::from_millis(20));
    s.check(t.elapsed().as_millis() < 2000, "irq-storm: timer after the storm");
}

fn stage2(s: &mut Suite) {
    let targets = [s.ram_end() + 0x1000, 0x0a00_0000, 0x1000_0000, 0x0800_0000, s.ram.0 - 0x1000];
    let mut faults = 0u64;
    println!(
        "hostile: stage2: loads and stores outside the partition in a tight loop, until the fault budget stops us"
    );
    for i in 0u64.. {
        let a = targets[(i % targets.len() as u64) as usize] + (s.rng.below(512) << 3);
        let r = if i % 2 == 0 { probe::read(a, Width::X).map(|_| ()) } else { probe::write(a, Width::X, i) };
        match r {
            Err(f) if f.class() == 0x25 => faults += 1,
            Err(f) => {
                s.check(false, &format!("stage2: unexpected exception class {:#x}", f.class()));
                break;
            }
            Ok(()) => {
                s.check(false, &format!("stage2: access to {a:#x} outside the partition succeeded"));
                break;
            }
        }
        if faults.is_power_of_two() {
            println!("hostile: stage2: {faults} aborts taken");
        }
    }
}
