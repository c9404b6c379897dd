//! Hypercall dispatch as a trapped `hvc #0xEA1` reaches it: any x16 and any x0..x4 from a
//! domain of any vCPU count. Nothing may panic; what the registers alone settle agrees with
//! the ABI (unknown hypercalls are -ENOSYS, a grant batch count is bounded, a vCPU index is
//! one of the domain's); a call handed on names only implemented sub-commands.
#![no_main]

use hyp_core::hypercall::{decode, Call, MAX_BATCH};
use libfuzzer_sys::fuzz_target;
use xen_abi::{errno, hc};

fn word(data: &[u8], i: usize) -> u64 {
    let mut w = [0u8; 8];
    for (k, b) in w.iter_mut().enumerate() {
        *b = data.get(i * 8 + k).copied().unwrap_or(0);
    }
    u64::from_le_bytes(w)
}

fuzz_target!(|data: &[u8]| {
    // Mostly the hypercall numbers that exist, sometimes any.
    let raw = word(data, 0);
    let nr = if raw & 1 == 0 { (raw >> 1) % 40 } else { raw >> 1 };
    let x = [word(data, 1), word(data, 2), word(data, 3), word(data, 4), word(data, 5)];
    let nr_vcpus = (word(data, 6) % 9) as usize;
    let mut asked = false;
    let call = decode(nr, x, || {
        asked = true;
        nr_vcpus
    });
    let known = [
        hc::XEN_VERSION,
        hc::MEMORY_OP,
        hc::GRANT_TABLE_OP,
        hc::VCPU_OP,
        hc::HVM_OP,
        hc::EVENT_CHANNEL_OP,
        hc::SCHED_OP,
        hc::CONSOLE_IO,
        hc::VM_ASSIST,
        hc::DOMCTL,
        hc::SYSCTL,
    ];
    if !known.contains(&nr) {
        assert_eq!(call, Call::Answer(-errno::ENOSYS), "hypercall {nr}");
    }
    assert!(asked == (nr == hc::VCPU_OP), "the vCPU count is asked for VCPUOP only");
    match call {
        Call::GrantTableOp { count, cmd, .. } => {
            assert!(nr == hc::GRANT_TABLE_OP && cmd == x[0]);
            if matches!(cmd, 0 | 1 | 5) {
                assert!(count <= MAX_BATCH);
            }
        }
        Call::VcpuOp { vcpu, arg, .. } => {
            assert!(vcpu < nr_vcpus && vcpu as u64 == x[1] && arg == x[2]);
        }
        Call::Answer(v) => assert!(v <= 0, "answers are 0 or an error code"),
        Call::XenVersion { cmd, arg } | Call::HvmOp { cmd, arg } | Call::EventChannelOp { cmd, arg } => {
            assert_eq!((cmd, arg), (x[0], x[1]));
        }
        Call::MemoryOp { cmd, arg } => assert!(nr == hc::MEMORY_OP && (cmd, arg) == (x[0], x[1])),
        Call::SchedOp { cmd } => assert!(cmd <= 3 || cmd == xen_abi::sched::WATCHDOG),
        Call::Domctl { arg } => assert!(nr == hc::DOMCTL && arg == x[0]),
        Call::Sysctl { arg } => assert!(nr == hc::SYSCTL && arg == x[0]),
        Call::ConsoleIo { cmd, count, buf } => assert!(cmd <= 1 && (count, buf) == (x[1], x[2])),
    }
});
