//! What a trapped guest instruction hands the hypervisor before any handler runs: the
//! syndrome (ESR_EL2) decoding of every exception class, the data-abort and system-register
//! fields, the PSCI/SMCCC call decoding of x0..x3 and the MPIDR a CPU_ON or AFFINITY_INFO
//! names. Nothing may panic; decoded fields stay inside their architectural ranges.
#![no_main]

use hyp_core::esr::{self, Esr};
use hyp_core::psci::{self, Call};
use libfuzzer_sys::fuzz_target;

fn word(data: &[u8], i: usize) -> u64 {
    let mut w = [0u8; 8];
    for (k, b) in w.iter_mut().enumerate() {
        *b = data.get(i * 8 + k).copied().unwrap_or(0);
    }
    u64::from_le_bytes(w)
}

fuzz_target!(|data: &[u8]| {
    let x = [word(data, 0), word(data, 1), word(data, 2), word(data, 3)];
    let nr = (word(data, 4) % 9) as usize;

    // The syndrome, as the trap path reads it.
    let e = Esr(x[0]);
    assert!(e.iss() < 1 << 25);
    let _ = e.class();
    let _ = esr::class_name(e.ec());
    let _ = (e.il(), e.imm16(), e.is_hvc64(0xea1), e.is_data_abort_lower(), e.is_wfe());
    let da = e.data_abort();
    assert!(matches!(da.size, 1 | 2 | 4 | 8), "access size {}", da.size);
    assert!(da.reg < 32, "register {}", da.reg);
    let _ = (da.is_translation_fault(), esr::fsc_name(da.fsc));
    let sr = e.sysreg();
    assert!(sr.reg < 32);
    for (d, el0, w) in [(true, false, true), (false, true, false)] {
        let inj = Esr(esr::injected_abort_esr(d, el0, w));
        assert!(inj.il(), "an injected abort is a 32-bit instruction's");
    }
    let _ = esr::injected_undef_esr();

    // PSCI / SMCCC.
    match psci::decode(x) {
        Call::CpuOn { target, .. } | Call::AffinityInfo { target, .. } => {
            if let Some(v) = psci::vcpu_of_mpidr(target, nr) {
                assert!(v < nr);
                assert_eq!(psci::vcpu_of_mpidr(psci::vmpidr(v), nr), Some(v));
            }
        }
        Call::Features(f) | Call::SmcccArchFeatures(f) => {
            let _ = psci::features(f);
        }
        _ => {}
    }
    if let Some(v) = psci::vcpu_of_mpidr(x[1], nr) {
        assert!(v < nr);
    }
});
