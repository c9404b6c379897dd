//! ferrum: a statically partitioning EL2 hypervisor for ARMv8 boards.
//!
//! This crate is the arch layer: it owns the registers, the MMU, the exception vectors and the
//! physical devices, and asks `hyp_core` (host-tested, no `unsafe`) for every decision over
//! data that the boot loader, the deployment or a guest controls.
//!
//! Boot: U-Boot `booti`s the image at EL2 with the host DTB in x0 ([`boot`]); the boot CPU maps
//! itself, prints the banner, parses and validates the plan from `/chosen`, loads every domain
//! and starts the other CPUs with PSCI; each CPU then runs the one vCPU pinned to it
//! ([`domain`]).
#![no_std]
#![no_main]

extern crate alloc;

mod arch;
mod boot;
mod console;
mod control;
mod crash;
mod domain;
mod exceptions;
mod gic;
mod grant;
mod heap;
mod irq;
mod mm;
mod mux;
mod p2m;
mod sync;
mod trace;
mod uart;
mod xen;

use aarch64_cpu::registers::{CurrentEL, Readable, CNTFRQ_EL0, CNTPCT_EL0, MPIDR_EL1};
use alloc::vec::Vec;
use console::hprintln;
use core::sync::atomic::{AtomicUsize, Ordering};
use domain::{Config, DomainCfg};
use hyp_core::addr::PhysRange;
use hyp_core::guestdt::{GuestGic, Hardware};
use hyp_core::hostdt::{self, Conduit};
use hyp_core::list::List;
use hyp_core::passthrough::{self, Device, Reserved};
use hyp_core::plan::{self, BoardLimits, Plan, PlanError};
use hyp_core::vgic::{Vdist, Version, CPUIF_SIZE, DIST_SIZE};
use platforms::Platform;

/// The board this image is built for.
#[cfg(not(feature = "platform-rpi4"))]
pub const PLATFORM: Platform = platforms::QEMU_VIRT;
/// The board this image is built for.
#[cfg(feature = "platform-rpi4")]
pub const PLATFORM: Platform = platforms::RPI4;

const VERSION: &str = env!("CARGO_PKG_VERSION");
static ONLINE: AtomicUsize = AtomicUsize::new(1);

/// CPUs that came up.
pub fn online_cpus() -> usize {
    ONLINE.load(Ordering::Acquire)
}

extern "C" {
    static __image_start: u8;
    static __image_end: u8;
    static __bss_start: u8;
}

fn image_bytes() -> (u64, u64) {
    let s = core::ptr::addr_of!(__image_start) as u64;
    (core::ptr::addr_of!(__bss_start) as u64 - s, core::ptr::addr_of!(__image_end) as u64 - s)
}

fn mib(b: u64) -> u64 {
    b >> 20
}

/// The console UART: the device tree's `stdout-path` when it names a PL011 or a mini-UART
/// inside the board's device windows, else the platform record's.
fn console_uart(board: Option<&hostdt::BoardInfo<'_>>) -> (u64, platforms::UartKind) {
    board
        .and_then(|b| b.uart)
        .filter(|u| PLATFORM.window_holds(platforms::MemKind::Device, u.0, 0x40))
        .unwrap_or((PLATFORM.uart_base, PLATFORM.uart_kind))
}

/// Boot CPU, MMU on, x0 from U-Boot.
extern "C" fn primary_main(dtb: u64) -> ! {
    exceptions::install();
    let fdt = host_fdt(dtb);
    let board = fdt.as_ref().ok().map(hostdt::parse_board);
    let (uart_base, uart_kind) = console_uart(board.as_ref());
    console::init(uart::Uart::new(uart_base, uart_kind));
    hprintln!("ferrum {VERSION} — static partitioning hypervisor for ARMv8");
    hprintln!("platform: {} ({}), running at EL{}", PLATFORM.name, PLATFORM.description, (CurrentEL.get() >> 2) & 3);
    let (fdt, board) = match (fdt, board) {
        (Ok(f), Some(b)) => (f, b),
        (r, _) => {
            let why = r.err().unwrap_or("unreadable");
            crash::power_off(false, format_args!("unusable device tree at {dtb:#x}: {why}"))
        }
    };
    let (file, total) = image_bytes();
    hprintln!("board model: {}", board.model);
    let kind = match uart_kind {
        platforms::UartKind::Pl011 => "PL011",
        platforms::UartKind::MiniUart => "mini-UART",
    };
    hprintln!("console: {kind} at {uart_base:#x} ({})", board.uart_path.unwrap_or("platform default"));
    let ram_total: u64 = board.memory.iter().map(|r| r.size).sum();
    for r in board.memory.iter() {
        hprintln!("RAM: {r} ({} MiB)", mib(r.size));
    }
    hprintln!("RAM total: {} MiB", mib(ram_total));
    match board.gic {
        Some(g) => {
            let second = if g.version == platforms::GicVersion::V2 { "GICC" } else { "GICR" };
            hprintln!(
                "GIC: {}, GICD {:#x}, {second} {:#x}, GICH {}, GICV {}",
                g.name,
                g.dist,
                g.cpu_or_redist,
                opt_hex(g.hyp),
                opt_hex(g.vcpu)
            );
        }
        None => hprintln!("GIC: none described in the device tree"),
    }
    let spin = board.cpu_start.iter().filter(|c| matches!(c, hostdt::CpuStart::SpinTable(_))).count();
    hprintln!(
        "CPUs: {} ({}), firmware PSCI: {}",
        board.cpus.len(),
        if spin > 0 { "spin-table" } else { "PSCI" },
        match board.psci {
            Some(Conduit::Smc) => "SMC",
            Some(Conduit::Hvc) => "HVC (unusable at EL2)",
            None => "none",
        }
    );
    crash::set_firmware_psci(board.psci == Some(Conduit::Smc));
    hprintln!(
        "hypervisor: {} KiB image + {} KiB data at {:#x} (reserved {} MiB), {} translation-table pages",
        file / 1024,
        (total - file) / 1024,
        PLATFORM.hyp_base,
        mib(PLATFORM.hyp_size),
        mm::POOL_PAGES
    );

    #[cfg(feature = "trace")]
    match hostdt::alias_uart(&fdt, "serial1").filter(|u| {
        u.2 == platforms::UartKind::Pl011
            && u.1 != uart_base
            && PLATFORM.window_holds(platforms::MemKind::Device, u.1, 0x1000)
    }) {
        Some((path, base, _)) => {
            trace::init(base);
            hprintln!("trace: defmt frames go to {path} at {base:#x}, which no domain gets");
        }
        None => {
            hprintln!("trace: built in, but the device tree names no second PL011 (serial1): frames stay in memory")
        }
    }

    let gic = match init_gic(&board) {
        Ok(g) => g,
        Err(why) => crash::power_off(false, format_args!("GIC: {why}")),
    };
    gic::init_cpu(0); // the boot CPU's interface mask is needed to route SPIs below
    hprintln!("GIC: {} interrupt IDs, {} list registers per CPU", gic.lines, gic.nr_lrs);

    let cfg = match build_config(&fdt, &board, dtb, gic) {
        Ok(c) => c,
        Err(()) => crash::power_off(false, format_args!("plan rejected, no domain was started")),
    };
    boot_cpus(&board, cfg)
}

fn init_gic(board: &hostdt::BoardInfo<'_>) -> Result<&'static gic::Gic, &'static str> {
    let g = board.gic.ok_or("the device tree describes no GIC")?;
    let version = match g.version {
        platforms::GicVersion::V2 => Version::V2,
        platforms::GicVersion::V3 => Version::V3,
    };
    gic::init(version, g.dist, g.cpu_or_redist, g.hyp.unwrap_or(0), g.vcpu.unwrap_or(0), &board.cpus)
}

fn opt_hex(v: Option<u64>) -> alloc::string::String {
    match v {
        Some(v) => alloc::format!("{v:#x}"),
        None => alloc::string::String::from("-"),
    }
}

fn host_fdt(dtb: u64) -> Result<fdt::Fdt<'static>, &'static str> {
    let in_ram = PLATFORM.ram.iter().any(|r| r.contains(dtb, 64));
    if !dtb.is_multiple_of(8) || !in_ram {
        return Err("not an 8-byte aligned address in RAM");
    }
    // SAFETY: 64 bytes of RAM (checked above), identity mapped and not written by anyone.
    let head = unsafe { mm::phys_slice(dtb, 64) };
    let magic = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
    let size = u64::from(u32::from_be_bytes([head[4], head[5], head[6], head[7]]));
    if magic != 0xd00d_feed {
        return Err("no FDT magic");
    }
    if size > 2 << 20 || !PLATFORM.ram.iter().any(|r| r.contains(dtb, size)) {
        return Err("larger than 2 MiB or beyond RAM");
    }
    // SAFETY: the whole blob lies in RAM (checked) and stays untouched: domain RAM may not
    // overlap the staging window where U-Boot put it (plan validation), and we never write it.
    let blob = unsafe { mm::phys_slice(dtb, size) };
    // A compacted copy on the heap (kept for good): the parser rejects the NOP tokens U-Boot
    // leaves behind, and the copy's structure is checked before anything parses it.
    let copy: &'static [u8] = hyp_core::fdtedit::compact(blob)?.leak();
    fdt::Fdt::new(copy).map_err(|_| "malformed FDT")
}

fn report_plan_error(plan: &Plan<'_>, e: &PlanError) {
    match e.domain {
        Some(i) => {
            let name = plan.domains.get(i).map_or("?", |d| d.name);
            hprintln!("plan rejected: domain #{i} '{name}', field '{}': {}", e.field, e.problem)
        }
        None => hprintln!("plan rejected: field '{}': {}", e.field, e.problem),
    }
}

/// What no passthrough device may share a page or an interrupt with.
fn reserved(board: &hostdt::BoardInfo<'_>, g: &gic::Gic) -> List<Reserved, 8> {
    let (uart_base, _) = console_uart(Some(board));
    let mut r = List::new();
    let page = |b: u64, s: u64| PhysRange::new(b & !0xfff, (b + s).next_multiple_of(0x1000) - (b & !0xfff));
    let _ = r.push(Reserved {
        what: "the hypervisor's console UART",
        range: page(uart_base, 0x1000),
        intid: board.uart_irq,
    });
    let _ = r.push(Reserved { what: "the GIC distributor", range: page(g.dist, DIST_SIZE), intid: None });
    let cpu_size = if g.version == Version::V3 { 0x2_0000 * board.cpus.len() as u64 } else { CPUIF_SIZE };
    let _ = r.push(Reserved {
        what: "the GIC CPU interface/redistributors",
        range: page(g.cpu_or_redist, cpu_size),
        intid: None,
    });
    #[cfg(feature = "trace")]
    if let Some(base) = trace::uart_base() {
        let _ = r.push(Reserved { what: "the hypervisor's trace UART", range: page(base, 0x1000), intid: None });
    }
    if g.version == Version::V2 {
        let _ = r.push(Reserved { what: "the GIC virtual interface", range: page(g.hyp, 0x1000), intid: None });
        let _ =
            r.push(Reserved { what: "the GIC virtual CPU interface", range: page(g.vcpu, CPUIF_SIZE), intid: None });
    }
    let _ = r.push(Reserved {
        what: "the domains' emulated console",
        range: PhysRange::new(0, 0),
        intid: Some(domain::VUART_INTID),
    });
    r
}

/// What the board-tree domain (`devices = ["/"]`) gets: every device window of the board minus
/// the hypervisor's pages and other domains' devices, every SPI nobody else has, and the board's
/// tree with the nodes behind those holes disabled.
struct BoardView {
    gic_path: alloc::string::String,
    hide: Vec<alloc::string::String>,
    maps: Vec<PhysRange>,
    spis: Vec<u32>,
}

fn board_view(
    fdt: &fdt::Fdt<'static>,
    board: &hostdt::BoardInfo<'_>,
    reserved: &[Reserved],
    given: &[(usize, Device<'static>)],
    me: usize,
    g: &gic::Gic,
) -> BoardView {
    let others: Vec<&Device<'static>> = given.iter().filter(|(j, _)| *j != me).map(|(_, d)| d).collect();
    let mut holes: Vec<PhysRange> = reserved.iter().map(|r| r.range).filter(|r| r.size > 0).collect();
    holes.extend(others.iter().flat_map(|d| d.pages.iter().copied()));
    let gic_path = hostdt::gic_path(fdt).unwrap_or_default();
    let mut hide: Vec<alloc::string::String> = others.iter().map(|d| alloc::string::String::from(d.path)).collect();
    if let Some(p) = board.uart_path {
        hide.push(p.into());
    }
    // Any other node whose registers touch a hole would fault in the domain: hide it too.
    hostdt::find_node_path::<()>(fdt, &mut |path, n| {
        if path != gic_path && n.property("reg").is_some() && !hide.iter().any(|h| h == path) {
            if let Ok(regs) = passthrough::translated_regs::<8>(fdt, path) {
                let device = |r: &PhysRange| PLATFORM.window_holds(platforms::MemKind::Device, r.base.0, r.size);
                if regs.iter().any(|r| device(r) && holes.iter().any(|h| h.overlaps(r))) {
                    hide.push(path.into());
                }
            }
        }
        None
    });
    let mut maps = Vec::new();
    for w in PLATFORM.windows.iter().filter(|w| w.kind == platforms::MemKind::Device) {
        maps.extend(passthrough::subtract(PhysRange::new(w.base, w.size), &holes));
    }
    let spis = (32..g.lines as u32)
        .filter(|n| !reserved.iter().any(|r| r.intid == Some(*n)) && !others.iter().any(|d| d.spis.contains(n)))
        .collect();
    BoardView { gic_path, hide, maps, spis }
}

fn build_config(
    fdt: &fdt::Fdt<'static>,
    board: &hostdt::BoardInfo<'_>,
    dtb_pa: u64,
    g: &'static gic::Gic,
) -> Result<Config, ()> {
    let dtb_size = fdt.total_size() as u64;
    let staging = PhysRange::new(PLATFORM.staging.base, PLATFORM.staging.size);
    let footprint = |m: PhysRange| -> Result<u64, hyp_core::image::ImageError> {
        if !staging.contains(&m) || m.size < 64 {
            return Ok(0); // validation reports the module as outside the staging window
        }
        // SAFETY: the module lies in the staging window (checked), RAM that only U-Boot wrote.
        let head = unsafe { mm::phys_slice(m.base.0, 64) };
        hyp_core::image::parse(head).map(|h| h.footprint(m.size))
    };
    let plan = match hostdt::parse_plan(fdt, &footprint) {
        Ok(p) => p,
        Err(e) => {
            report_plan_error(&Plan::default(), &e);
            return Err(());
        }
    };
    hprintln!("deployment '{}': {} domain(s)", board.deployment, plan.domains.len());
    // Domains may use the board's RAM as the DTB describes it, clipped to the platform record.
    let mut ram: List<PhysRange, 8> = List::new();
    for bank in board.memory.iter() {
        for w in PLATFORM.ram {
            let s = bank.base.0.max(w.base);
            let e = bank.end().min(w.end());
            if s < e {
                let _ = ram.push(PhysRange::new(s, e - s));
            }
        }
    }
    let limits = BoardLimits {
        ram: &ram,
        cpus: board.cpus.len().min(PLATFORM.cpus).min(boot::MAX_CPUS),
        hyp: PhysRange::new(PLATFORM.hyp_base, PLATFORM.hyp_size),
        staging,
    };
    if let Err(e) = plan::validate(&plan, &limits) {
        report_plan_error(&plan, &e);
        return Err(());
    }
    let dtb_range = PhysRange::new(dtb_pa, dtb_size);
    if let Some(d) = plan.domains.iter().find(|d| d.memory.overlaps(&dtb_range)) {
        hprintln!("plan rejected: the boot device tree at {dtb_range} lies in the RAM of domain '{}' (set fdt_high in U-Boot)", d.name);
        return Err(());
    }
    // Passthrough devices: resolve every path in the board's tree, keep them disjoint.
    let reserved = reserved(board, g);
    let mut given: Vec<(usize, Device<'static>)> = Vec::new();
    for (i, d) in plan.domains.iter().enumerate() {
        for &path in d.devices.iter().filter(|p| **p != "/") {
            let dev = passthrough::resolve(fdt, path).and_then(|dev| {
                let others: Vec<Device<'static>> = given.iter().filter(|(j, _)| *j != i).map(|(_, x)| *x).collect();
                let ram = board.memory.iter().map(|m| Reserved { what: "RAM", range: *m, intid: None });
                let all: Vec<Reserved> = reserved.iter().copied().chain(ram).collect();
                passthrough::check_disjoint(&dev, &all, &others).map(|()| dev)
            });
            // A unikernel sees its devices at their physical addresses among Xen's guest
            // layout: nothing of that layout may sit on a device page.
            let dev = dev.map_err(|e| alloc::format!("{e}")).and_then(|dev| {
                let clash = dev.pages.iter().find_map(|p| {
                    let what = plan::unikernel_clash(d.memory.size, p)?;
                    Some(alloc::format!("its MMIO page(s) {p} overlap the unikernel's {what} (Xen's guest layout)"))
                });
                match clash {
                    Some(why) if d.kind == plan::DomainKind::Unikernel => Err(why),
                    _ => Ok(dev),
                }
            });
            match dev {
                Ok(dev) => given.push((i, dev)),
                Err(e) => {
                    hprintln!("plan rejected: domain #{i} '{}', field 'devices': {path}: {e}", d.name);
                    return Err(());
                }
            }
        }
    }
    let board_dom = plan.domains.iter().position(|d| d.devices.contains(&"/"));
    let board_view = board_dom.map(|i| board_view(fdt, board, &reserved, &given, i, g));
    hprintln!("plan validated: CPUs, memory, images and devices are disjoint and inside the board");
    // A signed plan names each kernel's SHA-256: what was loaded must be what was signed.
    for d in plan.domains.iter() {
        let Some(want) = d.sha256 else { continue };
        // SAFETY: validated to lie in the staging window, RAM that only U-Boot wrote.
        let image = unsafe { mm::phys_slice(d.kernel.base.0, d.kernel.size) };
        if hyp_core::verify::sha256(image) != want {
            hprintln!(
                "plan rejected: domain '{}', field 'kernel': the image does not match the signed plan's SHA-256",
                d.name
            );
            return Err(());
        }
    }
    if plan.update_key.is_some() || plan.domains.iter().any(|d| d.sha256.is_some()) {
        let n = plan.domains.iter().filter(|d| d.sha256.is_some()).count();
        hprintln!(
            "signed plan: {n} kernel image(s) match their SHA-256; image updates {}",
            if plan.update_key.is_some() { "must be signed by its update key" } else { "are not restricted" }
        );
    }
    let boot_count = CNTPCT_EL0.get();

    // SAFETY: single-threaded boot; secondaries are not started yet.
    let mut pool = unsafe { mm::PoolMem::boot() };
    let mut cfg = Config { domains: List::new(), vcpu_of_pcpu: [None; boot::MAX_CPUS], update_key: plan.update_key };
    for (i, d) in plan.domains.iter().enumerate() {
        // SAFETY: validated to lie in the staging window.
        let head = unsafe { mm::phys_slice(d.kernel.base.0, 64) };
        let text_offset = hyp_core::image::parse(head).map(|h| h.text_offset).unwrap_or(0);
        let layout = plan::guest_layout(d, text_offset);
        let devices: Vec<Device<'static>> = given.iter().filter(|(j, _)| *j == i).map(|(_, x)| *x).collect();
        let ggic = match d.kind {
            plan::DomainKind::Linux => GuestGic { version: g.version, dist: g.dist, cpu_or_redist: g.cpu_or_redist },
            plan::DomainKind::Unikernel => GuestGic::xen_layout(g.version),
        };
        let view = board_view.as_ref().filter(|_| board_dom == Some(i));
        let hide: Vec<&str> =
            view.map(|v| v.hide.iter().map(alloc::string::String::as_str).collect()).unwrap_or_default();
        let board_tree = view.map(|v| hyp_core::guestdt::BoardTree { gic_path: &v.gic_path, hide: &hide });
        let hw = Hardware { gic: ggic, host: Some(fdt), devices: &devices, board: board_tree };
        let blob: Vec<u8> = hyp_core::guestdt::build(d, text_offset, d.initrd.map_or(0, |r| r.size), &hw);
        // Stage-2 device mappings: the GICv2 virtual CPU interface where the guest expects its
        // CPU interface, and every page of its passthrough devices (IPA == PA).
        let mut maps: Vec<(u64, u64, u64)> = Vec::new();
        if g.version == Version::V2 {
            maps.push((ggic.cpu_or_redist, g.vcpu, CPUIF_SIZE));
        }
        for dev in &devices {
            for p in dev.pages.iter() {
                if !maps.iter().any(|m| m.0 == p.base.0) {
                    maps.push((p.base.0, p.base.0, p.size));
                }
            }
        }
        if let Some(v) = view {
            maps.extend(v.maps.iter().map(|r| (r.base.0, r.base.0, r.size)));
        }
        let mut vd = Vdist::new(g.version, d.pcpus.len(), g.lines);
        vd.assign_spi(domain::VUART_INTID, false);
        if let Some(v) = view {
            for &intid in &v.spis {
                vd.assign_spi(intid, true);
                irq::assign_spi(intid, i, usize::from(d.pcpus[0]));
            }
            hprintln!(
                "domain '{}': the board's device tree: {} MiB of device windows, {} interrupts, {} node(s) hidden",
                d.name,
                v.maps.iter().map(|r| r.size).sum::<u64>() >> 20,
                v.spis.len(),
                v.hide.len()
            );
        }
        for dev in &devices {
            for &intid in dev.spis.iter() {
                vd.assign_spi(intid, true);
                irq::assign_spi(intid, i, usize::from(d.pcpus[0]));
            }
            hprintln!(
                "domain '{}': passthrough {} (MMIO {:?}, interrupts {:?})",
                d.name,
                dev.path,
                &dev.regs[..],
                &dev.spis[..]
            );
        }
        irq::install(i, vd, &d.pcpus);
        domain::set_dist_ipa(i, ggic.dist);
        let xen_pages = if d.xen { xen::stage2_pages(i) } else { Vec::new() };
        if d.xen {
            for (base, size) in xen::reserved_ipas() {
                let clash = |a: u64, s: u64| a < base + size && base < a + s;
                if clash(d.ipa_base().0, d.memory.size) || maps.iter().any(|m| clash(m.0, m.2)) {
                    hprintln!(
                        "plan rejected: domain '{}', field 'xen': the Xen pages at IPA {base:#x} overlap its RAM or devices",
                        d.name
                    );
                    return Err(());
                }
            }
        }
        let root = match mm::build_stage2(&mut pool, d.ipa_base().0, d.memory.base.0, d.memory.size, &maps, &xen_pages)
        {
            Ok(r) => r,
            Err(e) => {
                hprintln!("plan rejected: domain '{}': stage-2 tables: {e:?}", d.name);
                return Err(());
            }
        };
        let mut dc = DomainCfg {
            pcpus: d.pcpus,
            memory: d.memory,
            ipa_base: d.ipa_base().0,
            vttbr: root | ((i as u64 + 1) << 48),
            entry: layout.kernel.0,
            dtb: layout.dtb.0,
            kernel: d.kernel,
            initrd: d.initrd.zip(layout.initrd).map(|(r, ipa)| (r, ipa.0)),
            guest_dtb: blob.leak(),
            on_fault: d.on_fault,
            on_poweroff: d.on_poweroff,
            lifecycle: d.lifecycle,
            gic: Some(ggic),
            linux: d.kind == plan::DomainKind::Linux,
            xen: d.xen,
            cntvoff: boot_count,
            ..Default::default()
        };
        dc.set_name(d.name);
        for p in d.pv.iter() {
            let leak = |t: &str| -> &'static str { alloc::string::String::from(t).leak() };
            let backend = plan.domains.iter().position(|o| o.name == p.backend).unwrap_or(i);
            let dev = plan::PvDevice { backend: leak(p.backend), target: leak(p.target), ..*p };
            let _ = dc.pv.push(domain::PvCfg { dev, backend });
        }
        p2m::init(i, &dc);
        domain::load_images(&dc, true);
        for (v, &p) in d.pcpus.iter().enumerate() {
            cfg.vcpu_of_pcpu[usize::from(p)] = Some((i, v));
        }
        hprintln!(
            "domain #{i} '{}' ({}): {} vCPU(s) on pCPU {:?}, RAM {} ({} MiB) at IPA {:#x}, kernel {} KiB, on_fault={}, on_poweroff={}",
            d.name,
            d.kind.as_str(),
            d.pcpus.len(),
            &d.pcpus[..],
            d.memory,
            mib(d.memory.size),
            d.ipa_base().0,
            d.kernel.size / 1024,
            d.on_fault.as_str(),
            d.on_poweroff.as_str()
        );
        let _ = cfg.domains.push(dc);
    }
    hprintln!("stage-2 tables: {} pages used of {}", pool.used(), mm::POOL_PAGES);
    xen::init(&cfg.domains);
    hprintln!("heap: {} KiB in use", heap::used() / 1024);
    Ok(cfg)
}

/// Starts secondary CPU `idx` the way its `enable-method` says.
fn start_cpu(
    board: &hostdt::BoardInfo<'_>,
    domain_ram: &[PhysRange],
    idx: usize,
    mpidr: u64,
) -> Result<(), alloc::string::String> {
    use alloc::format;
    match board.cpu_start.get(idx).copied().unwrap_or_default() {
        hostdt::CpuStart::SpinTable(addr) => {
            let hyp = PhysRange::new(PLATFORM.hyp_base, PLATFORM.hyp_size);
            let slot = PhysRange::new(addr, 8);
            let ram = PLATFORM.window_holds(platforms::MemKind::Normal, addr, 8);
            if !addr.is_multiple_of(8) || !ram || slot.overlaps(&hyp) || domain_ram.iter().any(|r| r.overlaps(&slot)) {
                return Err(format!(
                    "cpu-release-addr {addr:#x} is not 8-byte aligned RAM outside the hypervisor and the domains"
                ));
            }
            boot::release_spin(idx, mpidr, addr);
            Ok(())
        }
        hostdt::CpuStart::Psci | hostdt::CpuStart::Unknown if board.psci == Some(Conduit::Smc) => {
            let r = arch::smc(0xc400_0003, mpidr, boot::secondary_entry as *const () as u64, idx as u64) as i64;
            if r == 0 {
                Ok(())
            } else {
                Err(format!("PSCI CPU_ON returned {r}"))
            }
        }
        _ => Err("its enable-method needs firmware PSCI over SMC, which the device tree does not describe".into()),
    }
}

fn boot_cpus(board: &hostdt::BoardInfo<'_>, cfg: Config) -> ! {
    let cfg_ram: Vec<PhysRange> = cfg.domains.iter().map(|d| d.memory).collect();
    domain::publish(cfg);
    // pCPU numbers in deployments are positions in /cpus; the boot CPU runs as pCPU 0, so it
    // must be the first entry (it is on QEMU virt and the Pi 4).
    let me = MPIDR_EL1.get() & 0xff_00ff_ffff;
    if board.cpus.first() != Some(&me) {
        crash::power_off(false, format_args!("the boot CPU (MPIDR {me:#x}) is not the first /cpus entry"));
    }
    let n = board.cpus.len().min(PLATFORM.cpus).min(boot::MAX_CPUS);
    let mut expected = 1;
    for (idx, &mpidr) in board.cpus.iter().enumerate().take(n).skip(1) {
        match start_cpu(board, &cfg_ram, idx, mpidr) {
            Ok(()) => expected += 1,
            Err(why) => hprintln!("CPU {idx} (MPIDR {mpidr:#x}) did not start: {why}"),
        }
    }
    let freq = CNTFRQ_EL0.get();
    let t0 = CNTPCT_EL0.get();
    while ONLINE.load(Ordering::Acquire) < expected && CNTPCT_EL0.get() - t0 < freq {
        core::hint::spin_loop();
    }
    hprintln!("CPUs online: {}/{}", ONLINE.load(Ordering::Acquire), n);
    if let Some(intid) = board.uart_irq {
        irq::set_uart_irq(intid);
        console::enable_input();
    }
    let focus = (0..domain::count()).find(|&d| domain::is_linux(d)).unwrap_or(0);
    mux::set_focus(focus);
    mux::announce();
    hprintln!("starting domains");
    domain::cpu_setup(0);
    domain::release_cpus();
    domain::cpu_run(0)
}

/// Secondary CPUs, MMU on, x0 = CPU index.
extern "C" fn secondary_main(cpu: u64) -> ! {
    exceptions::install();
    domain::cpu_setup(cpu as usize);
    ONLINE.fetch_add(1, Ordering::AcqRel);
    domain::cpu_run(cpu as usize)
}
