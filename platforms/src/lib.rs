//! Boards as data.
//!
//! Each supported board is one `const` [`Platform`] record: where RAM may be, which windows hold
//! devices, the console UART, the GIC and its bases, the CPUs, where U-Boot loads the hypervisor
//! and its boot modules. The hypervisor is built for one board (cargo feature of `hyp-el2`) and
//! uses the record for its early EL2 memory map and console; `xtask` uses the same record to
//! validate deployments and to lay out boot images. Values the device tree also carries (RAM size,
//! GIC bases, MPIDRs) are read from the DTB at boot and checked against this record.
//!
//! Invariants (checked by the unit tests below): windows are 2 MiB aligned and do not overlap,
//! the hypervisor region and the boot staging window lie inside RAM and do not overlap.
#![no_std]
#![forbid(unsafe_code)]

/// Kind of memory behind an address window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemKind {
    /// Normal, write-back cacheable memory (RAM).
    Normal,
    /// Device-nGnRE memory (MMIO).
    Device,
}

/// A physical address window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    /// First byte.
    pub base: u64,
    /// Length in bytes.
    pub size: u64,
    /// How it is mapped.
    pub kind: MemKind,
}

impl Window {
    /// One past the last byte.
    pub const fn end(&self) -> u64 {
        self.base + self.size
    }
    /// Whether `[base, base+size)` lies inside this window.
    pub const fn contains(&self, base: u64, size: u64) -> bool {
        base >= self.base && size <= self.size && base - self.base <= self.size - size
    }
}

/// Console UART model.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UartKind {
    /// ARM PL011.
    Pl011,
    /// BCM2835 auxiliary mini-UART (8250-like register file).
    MiniUart,
}

/// GIC architecture version.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GicVersion {
    /// GICv2 (GIC-400 on the Pi 4).
    V2,
    /// GICv3.
    V3,
}

/// How secondary physical CPUs are started.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CpuBoot {
    /// PSCI `CPU_ON` through firmware (conduit from the DTB).
    Psci,
    /// Spin tables (`cpu-release-addr` in the DTB).
    SpinTable,
}

/// A board description.
#[derive(Clone, Copy, Debug)]
pub struct Platform {
    /// Short name used in deployment files (`platform = "qemu-virt"`).
    pub name: &'static str,
    /// Human readable name for the banner.
    pub description: &'static str,
    /// Every address window the hypervisor maps for itself at EL2 (RAM as Normal, MMIO as Device).
    /// Addresses outside these windows are never touched by the hypervisor.
    pub windows: &'static [Window],
    /// RAM that domains may be given (a subset of the Normal windows, minus firmware holes).
    pub ram: &'static [Window],
    /// Where the hypervisor image runs (U-Boot `booti` relocates it to RAM base + text offset).
    pub hyp_base: u64,
    /// Bytes reserved for the hypervisor image, stacks and page pool from `hyp_base`.
    pub hyp_size: u64,
    /// Window where U-Boot loads the boot script, the device tree and the domain images.
    pub staging: Window,
    /// Console UART base used before the DTB is parsed.
    pub uart_base: u64,
    /// Console UART model.
    pub uart_kind: UartKind,
    /// Number of physical CPUs the board has.
    pub cpus: usize,
    /// GIC versions the board can have (QEMU virt: either, Pi 4: GICv2).
    pub gic_versions: &'static [GicVersion],
    /// How secondary CPUs start.
    pub cpu_boot: CpuBoot,
    /// Memory QEMU is started with for this board, in MiB (0 when QEMU fixes it).
    pub qemu_ram_mib: u64,
    /// The largest leaf of the domains' stage-2 tables.
    pub stage2_leaf: Stage2Leaf,
    /// Translation-table pages the hypervisor reserves for the domains' stage-2 tables; enough
    /// for all of `ram` at this board's `stage2_leaf` plus device mappings.
    pub table_pages: usize,
}

/// The largest leaf entry stage-2 tables use.
///
/// Blocks (2 MiB, 1 GiB) are what silicon wants: fewer table walks and TLB entries. QEMU's TCG
/// is the exception: it records each guest TLB entry with the *larger* of the stage-1 and
/// stage-2 page sizes, and a guest's TLB invalidation by address that falls inside such a
/// "large page" flushes that guest's whole software TLB. Linux invalidates by address on every
/// fixmap update (ftrace and alternatives patch ~50,000 call sites at boot), so with block
/// mappings a Linux domain boots about 1.6 times slower under TCG than with 4 KiB pages
/// (`cargo xtask bench boot`: 1.23 vs 0.95 of native).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage2Leaf {
    /// 4 KiB pages only (2 MiB of tables per GiB of domain RAM).
    Page,
    /// The largest block that alignment allows.
    Block,
}

impl Platform {
    /// Start of RAM as U-Boot's `booti` sees it: the base of the first Normal window.
    pub const fn dram_base(&self) -> u64 {
        let mut i = 0;
        while i < self.windows.len() {
            if matches!(self.windows[i].kind, MemKind::Normal) {
                return self.windows[i].base;
            }
            i += 1;
        }
        0
    }

    /// Whether `[base, base+size)` lies inside one window of `kind`.
    pub fn window_holds(&self, kind: MemKind, base: u64, size: u64) -> bool {
        self.windows.iter().any(|w| w.kind == kind && w.contains(base, size))
    }

    /// The hypervisor's reserved region.
    pub const fn hyp_window(&self) -> Window {
        Window { base: self.hyp_base, size: self.hyp_size, kind: MemKind::Normal }
    }
}

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

/// QEMU `virt` with `virtualization=on`, 4 Cortex-A72, 2 GiB RAM at 0x4000_0000.
pub const QEMU_VIRT: Platform = Platform {
    name: "qemu-virt",
    description: "QEMU virt (virtualization=on)",
    windows: &[
        // Flash, GIC, UART, RTC, GPIO, fw_cfg, virtio-mmio, PCIe MMIO/ECAM: all below 1 GiB.
        Window { base: 0, size: GIB, kind: MemKind::Device },
        Window { base: GIB, size: 2 * GIB, kind: MemKind::Normal },
    ],
    ram: &[Window { base: GIB, size: 2 * GIB, kind: MemKind::Normal }],
    hyp_base: 0x4000_0000,
    hyp_size: 16 * MIB,
    staging: Window { base: 0x4100_0000, size: 240 * MIB, kind: MemKind::Normal },
    uart_base: 0x0900_0000,
    uart_kind: UartKind::Pl011,
    cpus: 4,
    gic_versions: &[GicVersion::V2, GicVersion::V3],
    cpu_boot: CpuBoot::Psci,
    qemu_ram_mib: 2048,
    // An emulated board: see [`Stage2Leaf`] for why pages beat blocks under TCG.
    stage2_leaf: Stage2Leaf::Page,
    // One level-3 table per 2 MiB of the 2 GiB of RAM, plus upper levels and device pages.
    table_pages: 1024 + 64,
};

/// Raspberry Pi 4 Model B (BCM2711): GIC-400, 4 Cortex-A72, RAM from 0 with the VideoCore
/// carve-out at the top of the first GiB, peripherals at 0xfc00_0000.
pub const RPI4: Platform = Platform {
    name: "rpi4",
    description: "Raspberry Pi 4 Model B (BCM2711)",
    windows: &[
        Window { base: 0, size: 0xfc00_0000, kind: MemKind::Normal },
        Window { base: 0xfc00_0000, size: 0x0400_0000, kind: MemKind::Device },
        Window { base: 0x1_0000_0000, size: 7 * GIB, kind: MemKind::Normal },
        // PCIe window (VL805 USB) and the SoC's "full 35-bit" peripheral alias.
        Window { base: 0x6_0000_0000, size: 4 * GIB, kind: MemKind::Device },
    ],
    // Low memory below the GPU carve-out (0x3c00_0000 with the default gpu_mem=64), minus the
    // first 2 MiB that hold the armstub / TF-A BL31.
    ram: &[Window { base: 0x0020_0000, size: 0x3be0_0000, kind: MemKind::Normal }],
    hyp_base: 0x0020_0000,
    hyp_size: 16 * MIB,
    staging: Window { base: 0x0200_0000, size: 240 * MIB, kind: MemKind::Normal },
    uart_base: 0xfe20_1000,
    uart_kind: UartKind::Pl011,
    cpus: 4,
    gic_versions: &[GicVersion::V2],
    cpu_boot: CpuBoot::SpinTable,
    qemu_ram_mib: 0,
    stage2_leaf: Stage2Leaf::Block,
    // Blocks at boot; ballooning and grant mappings split 2 MiB blocks at run time, one table
    // each: 512 covers ballooning 1 GiB in scattered pages.
    table_pages: 768,
};

/// Every supported board.
pub const ALL: &[&Platform] = &[&QEMU_VIRT, &RPI4];

/// Finds a board by its deployment-file name.
pub fn by_name(name: &str) -> Option<&'static Platform> {
    ALL.iter().copied().find(|p| p.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn overlaps(a: &Window, b: &Window) -> bool {
        a.base < b.end() && b.base < a.end()
    }

    #[test]
    fn windows_are_aligned_and_disjoint() {
        for p in ALL {
            for (i, w) in p.windows.iter().enumerate() {
                assert_eq!(w.base % (2 * MIB), 0, "{}: window {i} base", p.name);
                assert_eq!(w.size % (2 * MIB), 0, "{}: window {i} size", p.name);
                for v in &p.windows[i + 1..] {
                    assert!(!overlaps(w, v), "{}: windows overlap", p.name);
                }
            }
        }
    }

    #[test]
    fn reserved_regions_inside_ram_and_disjoint() {
        for p in ALL {
            let in_ram = |w: &Window| p.ram.iter().any(|r| r.contains(w.base, w.size));
            assert!(in_ram(&p.hyp_window()), "{}: hypervisor outside RAM", p.name);
            assert!(in_ram(&p.staging), "{}: staging outside RAM", p.name);
            assert!(!overlaps(&p.hyp_window(), &p.staging), "{}", p.name);
            for r in p.ram {
                assert!(p.windows.iter().any(|w| w.kind == MemKind::Normal && w.contains(r.base, r.size)));
            }
        }
    }

    #[test]
    fn table_pool_covers_all_ram_with_pages() {
        for p in ALL.iter().filter(|p| p.stage2_leaf == Stage2Leaf::Page) {
            let ram: u64 = p.ram.iter().map(|r| r.size).sum();
            assert!(p.table_pages as u64 >= ram / (2 * MIB) + 16, "{}", p.name);
        }
    }

    #[test]
    fn lookup_by_name() {
        assert_eq!(by_name("rpi4").unwrap().uart_base, 0xfe20_1000);
        assert!(by_name("pi5").is_none());
    }

    #[test]
    fn contains_handles_edges() {
        let w = Window { base: 0x1000, size: 0x1000, kind: MemKind::Normal };
        assert!(w.contains(0x1000, 0x1000));
        assert!(!w.contains(0x1000, 0x1001));
        assert!(!w.contains(0xfff, 1));
        assert!(!w.contains(0x1fff, u64::MAX));
    }
}
