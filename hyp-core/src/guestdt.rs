//! The device tree each domain boots with: its RAM, its vCPUs (PSCI over HVC), its console
//! (the emulated PL011), command line and initrd. Everything in it comes from the validated
//! plan; nothing of the host tree leaks into a unikernel's view.

use crate::fdtw::FdtWriter;
use crate::plan::{guest_layout, Domain};
use crate::psci::vmpidr;
use crate::vuart::{VUART_BASE, VUART_SIZE};
use alloc::format;
use alloc::vec::Vec;

/// Builds the device tree for `d`. `initrd_size` is the initrd length (0 for none).
pub fn build(d: &Domain<'_>, text_offset: u64, initrd_size: u64) -> Vec<u8> {
    let layout = guest_layout(d, text_offset);
    let base = d.ipa_base().0;
    let mut w = FdtWriter::new();
    w.begin_node("");
    w.prop_u32("#address-cells", 2);
    w.prop_u32("#size-cells", 2);
    w.prop_strs("compatible", &["ferrum,guest"]);
    w.prop_str("model", &format!("ferrum domain {}", d.name));
    w.prop_u32("interrupt-parent", 2);

    w.begin_node("chosen");
    w.prop_str("bootargs", d.bootargs);
    w.prop_str("stdout-path", &format!("/pl011@{VUART_BASE:x}"));
    w.prop_str("ferrum,domain-name", d.name);
    if let (Some(at), true) = (layout.initrd, initrd_size > 0) {
        w.prop_u64s("linux,initrd-start", &[at.0]);
        w.prop_u64s("linux,initrd-end", &[at.0 + initrd_size]);
    }
    w.end_node();

    w.begin_node(&format!("memory@{base:x}"));
    w.prop_str("device_type", "memory");
    w.prop_u64s("reg", &[base, d.memory.size]);
    w.end_node();

    w.begin_node("cpus");
    w.prop_u32("#address-cells", 1);
    w.prop_u32("#size-cells", 0);
    for i in 0..d.pcpus.len() {
        w.begin_node(&format!("cpu@{i}"));
        w.prop_str("device_type", "cpu");
        w.prop_strs("compatible", &["arm,cortex-a72", "arm,armv8"]);
        w.prop_u32("reg", vmpidr(i) as u32 & 0xff_ffff);
        w.prop_str("enable-method", "psci");
        w.end_node();
    }
    w.end_node();

    w.begin_node("psci");
    w.prop_strs("compatible", &["arm,psci-1.0", "arm,psci-0.2"]);
    w.prop_str("method", "hvc");
    w.end_node();

    w.begin_node("apb-pclk");
    w.prop_str("compatible", "fixed-clock");
    w.prop_u32("#clock-cells", 0);
    w.prop_u32("clock-frequency", 24_000_000);
    w.prop_str("clock-output-names", "clk24mhz");
    w.prop_u32("phandle", 1);
    w.end_node();

    w.begin_node(&format!("pl011@{VUART_BASE:x}"));
    w.prop_strs("compatible", &["arm,pl011", "arm,primecell"]);
    w.prop_u64s("reg", &[VUART_BASE, VUART_SIZE]);
    w.prop_cells("clocks", &[1, 1]);
    w.prop_strs("clock-names", &["uartclk", "apb_pclk"]);
    w.end_node();

    w.end_node();
    w.finish(0).expect("balanced tree")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::addr::PhysRange;
    use crate::list::List;

    #[test]
    fn guest_tree_describes_domain() {
        let d = Domain {
            name: "web",
            pcpus: List::from_slice(&[2, 3]).unwrap(),
            memory: PhysRange::new(0x5000_0000, 0x400_0000),
            kernel: PhysRange::new(0x4120_0000, 0x1000),
            initrd: Some(PhysRange::new(0x4140_0000, 0x1000)),
            kernel_footprint: 0x1000,
            bootargs: "mode=good",
            ..Default::default()
        };
        let blob = build(&d, 0, 0x1000);
        let fdt = fdt::Fdt::new(&blob).unwrap();
        assert_eq!(fdt.chosen().bootargs(), Some("mode=good"));
        let m = fdt.memory().regions().next().unwrap();
        assert_eq!((m.starting_address as u64, m.size), (0x4000_0000, Some(0x400_0000)));
        assert_eq!(fdt.cpus().count(), 2);
        assert_eq!(fdt.cpus().nth(1).unwrap().ids().first(), 1);
        assert_eq!(fdt.chosen().stdout().unwrap().name, "pl011@22000000");
        let chosen = fdt.find_node("/chosen").unwrap();
        assert_eq!(chosen.property("linux,initrd-start").unwrap().as_usize(), Some(0x4020_0000));
        assert_eq!(chosen.property("ferrum,domain-name").unwrap().as_str(), Some("web"));
        assert_eq!(fdt.find_node("/psci").unwrap().property("method").unwrap().as_str(), Some("hvc"));
    }
}
