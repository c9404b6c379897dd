//! The boot medium's device tree as the hypervisor reads it at boot: the structure check and
//! compaction (U-Boot's NOPs), the board facts (memory, CPUs, GIC, PSCI, UART through the
//! parents' `ranges`), the deployment plan under `/chosen` (with a fuzzed Image header for
//! each kernel), the plan's validation, every passthrough device path resolved and checked
//! disjoint, and each domain's guest tree built from it. Nothing may panic; a validated plan
//! keeps domains inside the board; a resolved device's pages cover its registers.
#![no_main]

use hyp_core::addr::PhysRange;
use hyp_core::guestdt::{self, BoardTree, GuestGic, Hardware};
use hyp_core::hostdt;
use hyp_core::list::List;
use hyp_core::passthrough::{self, Reserved};
use hyp_core::plan::{self, BoardLimits};
use hyp_core::vgic::Version;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The first 64 bytes stand for every kernel's Image header; the rest is the tree.
    let (head, blob) = data.split_at(data.len().min(64));
    let Ok(copy) = hyp_core::fdtedit::compact(blob) else { return };
    let Ok(fdt) = fdt::Fdt::new(&copy) else { return };
    let board = hostdt::parse_board(&fdt);
    let _ = hostdt::gic_path(&fdt);
    let footprint = |m: PhysRange| hyp_core::image::parse(head).map(|h| h.footprint(m.size));
    let Ok(plan) = hostdt::parse_plan(&fdt, &footprint) else { return };
    let mut ram: List<PhysRange, 8> = List::new();
    for bank in board.memory.iter() {
        let _ = ram.push(*bank);
    }
    let limits = BoardLimits {
        ram: &ram,
        cpus: board.cpus.len(),
        hyp: PhysRange::new(0x4000_0000, 16 << 20),
        staging: PhysRange::new(0x4100_0000, 256 << 20),
    };
    if plan::validate(&plan, &limits).is_err() {
        return;
    }
    for d in plan.domains.iter() {
        assert!(ram.iter().any(|r| r.contains(&d.memory)), "domain '{}' outside the board's RAM", d.name);
    }
    let reserved = [Reserved { what: "hypervisor", range: limits.hyp, intid: None }];
    let mut given = Vec::new();
    for (i, d) in plan.domains.iter().enumerate() {
        for &path in d.devices.iter().filter(|p| **p != "/") {
            if let Ok(dev) = passthrough::resolve(&fdt, path) {
                for (r, p) in dev.regs.iter().zip(dev.pages.iter()) {
                    assert!(p.base.0 <= r.base.0 && p.end() >= r.end(), "pages {p} do not cover {r}");
                }
                let others: Vec<_> = given.iter().filter(|(j, _)| *j != i).map(|(_, x)| *x).collect();
                if passthrough::check_disjoint(&dev, &reserved, &others).is_ok() {
                    given.push((i, dev));
                }
            }
            let _ = passthrough::translated_regs::<4>(&fdt, path);
        }
    }
    let gic_path = hostdt::gic_path(&fdt).unwrap_or_default();
    for (i, d) in plan.domains.iter().enumerate() {
        let devices: Vec<_> = given.iter().filter(|(j, _)| *j == i).map(|(_, x)| *x).collect();
        let version = if i % 2 == 0 { Version::V2 } else { Version::V3 };
        let board_tree = d.devices.contains(&"/").then(|| BoardTree { gic_path: &gic_path, hide: &[] });
        let hw =
            Hardware { gic: GuestGic::xen_layout(version), host: Some(&fdt), devices: &devices, board: board_tree };
        let out = guestdt::build(d, 0x8_0000, d.initrd.map_or(0, |r| r.size), &hw);
        assert!(fdt::Fdt::new(&out).is_ok(), "the guest tree of '{}' does not parse", d.name);
    }
});
