//! Boot, the application entry, interrupts, exceptions, panics and shutdown: the glue between
//! the arch layer and the services.
//!
//! Boot order: device tree → RAM → heap (clear of image and device tree) → console (UART from
//! the tree) → GIC → Xen (`shared_info`, grants, xenstore, PV console) → IRQs on → the first
//! line → the application.

use crate::arch::{self, gic, SharedPage};
use crate::console::{self, Device};
use crate::xen::{self, ShutdownReason, Xen};
use alloc::boxed::Box;
use alloc::string::{String, ToString};
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

pub use crate::grants::{GrantError, GrantRef};
pub use crate::xen::ShutdownReason as Reason;
pub use arch::SharedPage as Page;

/// Counter value at the IRQ vector's entry for the last interrupt (for latency figures).
pub static IRQ_STAMP: AtomicU64 = AtomicU64::new(0);
static HANDOFF: AtomicU64 = AtomicU64::new(0);
static PANICKING: AtomicBool = AtomicBool::new(false);

/// Boot phases, in order, for [`Runtime::boot_profile`].
const PHASES: [&str; 6] = ["rust entry", "device tree and heap", "GIC", "Xen setup", "IRQs on", "first line"];
static PHASE_AT: [AtomicU64; 6] = [const { AtomicU64::new(0) }; 6];

fn phase(i: usize) {
    PHASE_AT[i].store(arch::counter(), Ordering::Relaxed);
}

/// The virtual timer's PPI.
pub const VTIMER_PPI: u32 = 27;
/// Xen's event-channel upcall PPI.
pub const EVTCHN_PPI: u32 = xen_abi::layout::EVTCHN_PPI;

/// Names `main` (`fn main(rt: &mut ferrum_rt::Runtime)`) as the unikernel's entry point.
#[macro_export]
macro_rules! entry {
    ($main:path) => {
        #[no_mangle]
        fn __ferrum_rt_main(rt: &mut $crate::Runtime) {
            let f: fn(&mut $crate::Runtime) = $main;
            f(rt)
        }
    };
}

/// What the application gets: boot facts and the Xen services.
pub struct Runtime {
    bootargs: String,
    ram: (u64, u64),
    gic: Option<gic::Gic>,
    handoff: u64,
    xen: Option<Xen>,
    xen_error: Option<String>,
    /// The device tree (read again when a device is asked for).
    dtb: &'static [u8],
}

impl Runtime {
    /// `/chosen/bootargs`.
    pub fn bootargs(&self) -> &str {
        &self.bootargs
    }

    /// The value of `key=value` in the boot arguments.
    pub fn arg(&self, key: &str) -> Option<&str> {
        self.bootargs.split_whitespace().find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
    }

    /// Our RAM: (base, size).
    pub fn ram(&self) -> (u64, u64) {
        self.ram
    }

    /// The passthrough device compatible with `compatible` (its first `reg` window), mapped as
    /// device memory for the rest of the run: what the `hal` drivers take.
    pub fn device(&mut self, compatible: &str) -> Result<crate::hal::Mmio, crate::hal::DeviceError> {
        use crate::hal::DeviceError;
        let node = crate::dt::parse(self.dtb).ok().and_then(|i| i.device(compatible)).ok_or(DeviceError::NotFound)?;
        let (base, size) = *node.regs.first().ok_or(DeviceError::NotFound)?;
        let (first, count) = crate::hal::device_blocks(base, size, self.ram).map_err(DeviceError::Unmappable)?;
        arch::map_device(first, count, self.ram).map_err(DeviceError::Unmappable)?;
        Ok(crate::hal::Mmio::new(base, size))
    }

    /// The Xen services, when running on a Xen-compatible hypervisor.
    pub fn xen(&mut self) -> Option<&mut Xen> {
        self.xen.as_mut()
    }

    /// Why Xen was found but could not be set up.
    pub fn xen_error(&self) -> Option<&str> {
        self.xen_error.as_deref()
    }

    /// Counter ticks from the hypervisor's hand-off (our first instruction) to the moment the
    /// first console line had been handed to the console device.
    pub fn first_line_ticks(&self) -> u64 {
        console::first_line_ticks().saturating_sub(self.handoff)
    }

    /// Counter ticks each boot phase took, from the hand-off to the first line (the boot
    /// path before Rust — BSS, page tables, MMU — is the "rust entry" phase).
    pub fn boot_profile(&self) -> [(&'static str, u64); 6] {
        let mut prev = self.handoff;
        core::array::from_fn(|i| {
            let t = PHASE_AT[i].load(Ordering::Relaxed);
            let d = t.saturating_sub(prev);
            prev = t;
            (PHASES[i], d)
        })
    }

    /// The GIC's register frames: (version, distributor, GICv2 CPU interface or GICv3 vCPU 0
    /// redistributor).
    pub fn gic_frames(&self) -> Option<(u8, u64, u64)> {
        match self.gic? {
            gic::Gic::V2 { dist, cpu } => Some((2, dist, cpu)),
            gic::Gic::V3 { dist, redist } => Some((3, dist, redist)),
        }
    }

    /// The GIC version in use (2 or 3; 0 if none was found).
    pub fn gic_version(&self) -> u8 {
        match self.gic {
            Some(gic::Gic::V2 { .. }) => 2,
            Some(gic::Gic::V3 { .. }) => 3,
            None => 0,
        }
    }
}

/// The GIC as set up at boot, for [`reinit_gic`].
static BOOT_GIC: spin_free::Cell = spin_free::Cell::new();

mod spin_free {
    use super::gic::Gic;
    use core::sync::atomic::{AtomicU64, Ordering};

    /// A `Gic` kept in atomics: (version, first frame, second frame, private interrupts).
    pub struct Cell([AtomicU64; 4]);

    impl Cell {
        pub const fn new() -> Self {
            Self([const { AtomicU64::new(0) }; 4])
        }
        pub fn set(&self, g: Gic, ppis: u32) {
            let (v, a, b) = match g {
                Gic::V2 { dist, cpu } => (2, dist, cpu),
                Gic::V3 { dist, redist } => (3, dist, redist),
            };
            self.0[1].store(a, Ordering::Relaxed);
            self.0[2].store(b, Ordering::Relaxed);
            self.0[3].store(u64::from(ppis), Ordering::Relaxed);
            self.0[0].store(v, Ordering::Release);
        }
        pub fn get(&self) -> Option<(Gic, u32)> {
            let (a, b) = (self.0[1].load(Ordering::Relaxed), self.0[2].load(Ordering::Relaxed));
            let ppis = self.0[3].load(Ordering::Relaxed) as u32;
            match self.0[0].load(Ordering::Acquire) {
                2 => Some((Gic::V2 { dist: a, cpu: b }, ppis)),
                3 => Some((Gic::V3 { dist: a, redist: b }, ppis)),
                _ => None,
            }
        }
    }
}

/// Sets the GIC up again as at boot (after code that wrote its registers at random, such as
/// the hostile-guest tests).
pub fn reinit_gic() {
    if let Some((g, ppis)) = BOOT_GIC.get() {
        arch::without_irqs(|| gic::init(g, ppis));
    }
}

/// A zeroed page of our RAM that lives for the rest of the run (to grant, or as a ring).
pub fn alloc_page() -> SharedPage {
    let p: &'static mut arch::PageBuf = Box::leak(Box::new(arch::PageBuf([0; 4096])));
    SharedPage::at(p as *mut arch::PageBuf as u64)
}

/// Honours a shutdown the control domain asked for (`hypctl stop`, `xl shutdown`): when
/// `control/shutdown` says `poweroff` or `reboot`, the domain says so and shuts down. Call
/// it from the application's loop; it costs a counter read between its xenstore reads.
/// Returns `true` when a suspend is asked (`hypctl save`): an application that supports it
/// quiesces its frontends and calls [`Xen::suspend`]; one that does not ignores it (the save
/// then times out and the domain keeps running).
pub fn honour_control(x: &mut Xen) -> bool {
    match x.control_request() {
        Some(ShutdownReason::Suspend) => true,
        Some(r) => {
            crate::println!("ferrum-rt: control/shutdown asks for {r:?}: shutting down");
            shutdown(r);
        }
        None => false,
    }
}

/// Shuts the domain down: `SCHEDOP_shutdown` on Xen, else PSCI `SYSTEM_OFF`/`SYSTEM_RESET`.
pub fn shutdown(r: ShutdownReason) -> ! {
    if xen::present() {
        let e = xen::shutdown(r);
        crate::println!("ferrum-rt: SCHEDOP_shutdown({r:?}) returned {e}");
    }
    arch::smccc(if r == ShutdownReason::Reboot { 0x8400_0009 } else { 0x8400_0008 }, 0, 0, 0);
    loop {
        arch::wait_until(|| false);
    }
}

/// The Rust side of the boot path: `dtb` from x0, `handoff` the counter at our first instruction.
pub(crate) extern "C" fn rt_start(dtb: u64, handoff: u64) -> ! {
    HANDOFF.store(handoff, Ordering::Relaxed);
    phase(0);
    let Some(blob) = arch::device_tree(dtb) else {
        shutdown(ShutdownReason::Crash);
    };
    let info = match crate::dt::parse(blob) {
        Ok(i) => i,
        Err(_) => shutdown(ShutdownReason::Crash),
    };
    if let Some(u) = info.uart {
        console::set_device(Device::Uart(u));
    }
    let (img_start, img_end) = arch::image_range();
    let ram = info.memory.filter(|&(b, s)| (b..b + s).contains(&img_start)).unwrap_or((img_start, 16 << 20));
    let ram_end = ram.0 + ram.1;
    // The heap: the larger piece of RAM after our image that the device tree does not cover.
    let (dt_start, dt_end) = (dtb, (dtb + blob.len() as u64).next_multiple_of(4096));
    let lo = img_end.next_multiple_of(4096);
    let pieces = if dt_start >= lo && dt_start < ram_end {
        [(lo, dt_start & !4095), (dt_end, ram_end)]
    } else {
        [(lo, ram_end), (0, 0)]
    };
    let heap = pieces.into_iter().max_by_key(|&(s, e)| e.saturating_sub(s)).unwrap_or((lo, ram_end));
    if heap.1 <= heap.0 + (64 << 10) {
        crate::println!("ferrum-rt: RAM {:#x}+{:#x} leaves no room for a heap", ram.0, ram.1);
        shutdown(ShutdownReason::Crash);
    }
    arch::heap_init(heap.0, heap.1);
    let bootargs = info.bootargs.to_string();
    let gic = info.gic.map(|g| match g {
        crate::dt::GicNode::V2(dist, cpu) => gic::Gic::V2 { dist, cpu },
        crate::dt::GicNode::V3(dist, redist) => gic::Gic::V3 { dist, redist },
    });
    phase(1);
    phase(2);
    let mut xen_error = None;
    let xen = match info.hypervisor {
        Some(regs) => match xen::init(regs.as_slice(), ram_end) {
            Ok(x) => Some(x),
            Err(e) => {
                xen_error = Some(e.to_string());
                None
            }
        },
        None => None,
    };
    phase(3);
    if let Some(g) = gic {
        let ppis = 1 << VTIMER_PPI | if xen.is_some() { 1 << EVTCHN_PPI } else { 0 };
        gic::init(g, ppis);
        BOOT_GIC.set(g, ppis);
        arch::irqs_on();
    }
    if console::device() == Device::None && xen.is_some() {
        console::set_device(Device::Hypercall);
    }
    phase(4);
    let mut rt = Runtime { bootargs, ram, gic, handoff, xen, xen_error, dtb: blob };
    let hyp = match rt.xen.as_ref() {
        Some(x) => alloc::format!("Xen {}.{} interface", x.version.0, x.version.1),
        None => "no Xen".to_string(),
    };
    let cons = match console::device() {
        Device::Pv(..) => "Xen PV console",
        Device::Uart(_) => "UART",
        Device::Hypercall => "console_io",
        Device::None => "none",
    };
    crate::println!(
        "ferrum-rt {}: EL1, {hyp}, GICv{}, {} MiB RAM, heap {} KiB, console: {cons}",
        env!("CARGO_PKG_VERSION"),
        rt.gic_version(),
        ram.1 >> 20,
        (heap.1 - heap.0) >> 10
    );
    phase(5);
    if let Some(e) = &rt.xen_error {
        crate::println!("ferrum-rt: Xen found but not usable: {e}");
    }
    if let Some(x) = rt.xen.as_mut() {
        if let Some(s) = x.store.as_mut() {
            x.domid = s.read("domid").ok().and_then(|v| v.parse().ok());
        }
    }
    arch::call_main(&mut rt);
    shutdown(ShutdownReason::Poweroff);
}

/// The IRQ vector's Rust half: acknowledges and handles every pending interrupt.
pub(crate) extern "C" fn irq_dispatch() {
    loop {
        let intid = gic::ack();
        if intid >= 1020 {
            return;
        }
        match intid {
            VTIMER_PPI => crate::time::on_timer_irq(),
            EVTCHN_PPI => xen::upcall(),
            _ => {}
        }
        gic::eoi(intid);
    }
}

fn exception_class(esr: u64) -> &'static str {
    match esr >> 26 {
        0x00 => "undefined instruction",
        0x15 => "SVC",
        0x20 | 0x21 => "instruction abort",
        0x22 => "PC alignment fault",
        0x24 | 0x25 => "data abort",
        0x26 => "SP alignment fault",
        0x3c => "BRK",
        _ => "exception",
    }
}

/// A synchronous exception at EL1: fatal, reported, then `crash`.
pub(crate) extern "C" fn sync_exception(esr: u64, far: u64, elr: u64) -> ! {
    crate::println!("ferrum-rt: fatal {} (ESR {esr:#x}) at PC {elr:#x}, address {far:#x}", exception_class(esr));
    shutdown(ShutdownReason::Crash);
}

/// An exception from a vector we do not use (SError, EL0, SP_EL0): fatal.
pub(crate) extern "C" fn bad_exception(esr: u64, far: u64, elr: u64) -> ! {
    crate::println!("ferrum-rt: unexpected exception (ESR {esr:#x}) at PC {elr:#x}, address {far:#x}");
    shutdown(ShutdownReason::Crash);
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    if !PANICKING.swap(true, Ordering::AcqRel) {
        match info.location() {
            Some(l) => crate::println!("panic at {}:{}: {}", l.file(), l.line(), info.message()),
            None => crate::println!("panic: {}", info.message()),
        }
    }
    shutdown(ShutdownReason::Crash);
}

/// Heap bytes (in use, free).
pub fn heap_usage() -> (usize, usize) {
    arch::heap_usage()
}
