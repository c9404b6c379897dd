//! The virtual GIC as a guest drives it: distributor (GICv2 and GICv3) and redistributor
//! accesses at any offset, width and value from any vCPU, interrupts raised by sources, SGIs
//! (the GICD_SGIR path and ICC_SGI1R decoding), vCPU resets, and the list-register encodings.
//! Nothing may panic; every interrupt delivered names one of the domain's vCPUs and an
//! interrupt the domain owns; a physical side effect only ever touches an SPI given to the
//! domain with a physical device behind it.
#![no_main]

use hyp_core::vgic::{self, Lr, LrState, Pending, PhysOp, Sink, Vdist, Version, DIST_SIZE, REDIST_STRIDE};
use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;

/// The SPIs the fuzzed domain was given: 40 (software) and 48 (with a device behind it).
const SOFT_SPI: u32 = 40;
const HW_SPI: u32 = 48;

struct Check {
    nr_vcpus: usize,
    delivered: Vec<(usize, Pending)>,
}

impl Sink for Check {
    fn deliver(&mut self, vcpu: usize, p: Pending) {
        assert!(vcpu < self.nr_vcpus, "delivered to vCPU {vcpu} of {}", self.nr_vcpus);
        let id = u32::from(p.intid);
        assert!(id < 32 || id == SOFT_SPI || id == HW_SPI, "delivered unowned interrupt {id}");
        self.delivered.push((vcpu, p));
    }
    fn phys(&mut self, op: PhysOp) {
        let id = match op {
            PhysOp::Enable(i, _) | PhysOp::Route(i, _) | PhysOp::Config(i, _) => u32::from(i),
        };
        assert_eq!(id, HW_SPI, "physical side effect on {op:?}");
        if let PhysOp::Route(_, v) = op {
            assert!(usize::from(v) < self.nr_vcpus, "routed to vCPU {v}");
        }
    }
}

fn width(u: &mut Unstructured<'_>) -> Result<u8> {
    // Mostly the widths an access can have, sometimes anything.
    Ok(match u.int_in_range(0..=9u8)? {
        0 => 1,
        1 => 2,
        2 | 3 | 4 => 4,
        5 | 6 => 8,
        _ => u.arbitrary()?,
    })
}

fn offset(u: &mut Unstructured<'_>, window: u64) -> Result<u64> {
    Ok(match u.int_in_range(0..=3u8)? {
        // Register-aligned offsets in the window: where the registers are.
        0 | 1 => u.int_in_range(0..=window / 4 - 1)? * 4,
        2 => u.int_in_range(0..=window - 1)?,
        _ => u.arbitrary()?,
    })
}

/// Operations per input: enough to reach every state, few enough to keep runs fast.
const MAX_STEPS: usize = 256;

fn run(u: &mut Unstructured<'_>) -> Result<()> {
    let version = if u.arbitrary()? { Version::V3 } else { Version::V2 };
    let nr_vcpus = u.int_in_range(1..=vgic::MAX_VCPUS)?;
    let lines = u.int_in_range(0..=1024usize)?;
    let mut vd = Vdist::new(version, nr_vcpus, lines);
    vd.assign_spi(SOFT_SPI, false);
    vd.assign_spi(HW_SPI, true);
    let mut sink = Check { nr_vcpus, delivered: Vec::new() };
    let mut budget = MAX_STEPS;
    while !u.is_empty() && budget > 0 {
        budget -= 1;
        // A vCPU index as the trap path computes it (its own), sometimes out of range.
        let vcpu = if u.ratio(1, 16)? { u.int_in_range(0..=15usize)? } else { u.int_in_range(0..=nr_vcpus - 1)? };
        match u.int_in_range(0..=9u8)? {
            0 | 1 => {
                let (off, size) = (offset(u, DIST_SIZE)?, width(u)?);
                if let Some(v) = vd.mmio_read(vcpu, off, size) {
                    if matches!(size, 1 | 2 | 4) {
                        assert_eq!(v >> (u32::from(size) * 8), 0, "a {size}-byte read at {off:#x} returned {v:#x}");
                    }
                }
            }
            2 | 3 | 4 => {
                let (off, size, val) = (offset(u, DIST_SIZE)?, width(u)?, u.arbitrary()?);
                vd.mmio_write(vcpu, off, size, val, &mut sink);
            }
            5 => {
                let (off, size) = (offset(u, REDIST_STRIDE)?, width(u)?);
                let _ = vd.redist_read(vcpu, off, size);
            }
            6 => {
                let (off, size, val) = (offset(u, REDIST_STRIDE)?, width(u)?, u.arbitrary()?);
                vd.redist_write(vcpu, off, size, val, &mut sink);
            }
            7 => {
                let intid = if u.arbitrary()? { u.int_in_range(0..=63u32)? } else { u.arbitrary()? };
                if vd.raise(vcpu, intid, u.arbitrary()?, &mut sink) {
                    assert!(vd.owns(intid), "raised {intid}, which the domain does not own");
                }
            }
            8 => {
                let from = vcpu.min(nr_vcpus - 1);
                let (targets, sgi) = vd.decode_sgi1r(from, u.arbitrary()?);
                assert!(sgi < 16);
                assert_eq!(targets >> nr_vcpus, 0, "SGI1R targets beyond the vCPUs");
                vd.send_sgi(targets, u.arbitrary()?, &mut sink);
                vd.send_sgi(targets, sgi, &mut sink);
            }
            _ => {
                if vcpu < nr_vcpus && u.ratio(1, 4)? {
                    vd.reset_vcpu(vcpu);
                }
                if let Some(to) = vd.target_of(u.arbitrary()?) {
                    assert!(to < nr_vcpus);
                }
                let v2: u32 = u.arbitrary()?;
                let lr = Lr::decode_v2(v2);
                if lr.state != LrState::Invalid {
                    assert_eq!(Lr::decode_v2(lr.encode_v2()), lr, "v2 list register round trip of {v2:#x}");
                }
                let v3: u64 = u.arbitrary()?;
                let lr = Lr::decode_v3(v3);
                if lr.state != LrState::Invalid {
                    assert_eq!(Lr::decode_v3(lr.encode_v3()), lr, "v3 list register round trip of {v3:#x}");
                }
            }
        }
    }
    // Everything delivered fits the list registers' queue discipline.
    let mut q = vgic::empty_queue();
    for (_, p) in sink.delivered.iter().take(200) {
        vgic::enqueue(&mut q, *p);
    }
    let mut lrs = [Lr::default(); 4];
    let used = vgic::flush(&mut q, &mut lrs);
    assert!(used.count_ones() <= 4);
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    let _ = run(&mut Unstructured::new(data));
});
