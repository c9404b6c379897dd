//! A minimal EL1 test guest, the seed of the unikernel runtime.
//!
//! Boots as an arm64 Image (Xen guest layout: RAM at 0x4000_0000), turns on its MMU with an
//! identity map (first GiB device, next three GiB normal memory), prints through the PL011 its
//! device tree names (`stdout-path`), and behaves as `/chosen/bootargs` says:
//!
//! - `mode=smp`: starts its second vCPU with PSCI `CPU_ON`, waits for it to report and turn
//!   itself off (`AFFINITY_INFO`), does some work, prints `PASS`, powers off (`SYSTEM_OFF`).
//! - `mode=single`: the same on one vCPU (`delay=<ms>` waits that long on the virtual counter first).
//! - `mode=escape`: reads memory just past its own RAM; the hypervisor must inject an abort,
//!   which this guest catches and reports before powering off.
//! - `mode=panic`: takes an undefined-instruction exception and reports it.
//! - `mode=bench`: (Xen-aware) measures in counter ticks (one tick = one instruction under
//!   `cargo xtask bench hypercall`'s QEMU settings) a null hypercall round trip
//!   (`xen_version`), an emulated distributor MMIO load, an event-channel send to itself until
//!   its upcall vector, and the virtual timer's latency (counter passes CVAL until the IRQ
//!   vector) while spinning and while in WFI.
//! - `mode=events`: (Xen-aware) event channels end to end: a loop-back channel's upcall on
//!   PPI 31, a masked port seen by `SCHEDOP_poll`, a poll timeout, `SCHEDOP_block` woken by
//!   the virtual timer, `EVTCHNOP_bind_virq` and the errors of bad polls and bindings.
//! - `mode=restart`: (Xen-aware) makes a loop-back event channel, takes its upcall, then
//!   reboots with `SCHEDOP_shutdown(reboot)`; after the restart (told apart by its virtual
//!   counter, which keeps running across restarts) it must get the same fresh port numbers
//!   and a working channel again, then powers off.
//! - `mode=grant-offer peer=N`: (a Xen-aware domain) grants domain N write access to one of
//!   its pages through grant ref 8, waits for N's reply in it, checks the hypervisor cleared
//!   `GTF_reading`/`GTF_writing` after N unmapped, and revokes the grant.
//! - `mode=grant-map peer=N`: maps domain N's grant ref 8 into its extended region, reads it,
//!   replies through it, copies with `GNTTABOP_copy`, checks that bad maps, unmaps and copies
//!   get the right statuses, and unmaps.
#![no_std]
#![no_main]

mod irq;

use aarch64_cpu::asm::barrier;
use aarch64_cpu::registers::{Readable, Writeable, CNTFRQ_EL0, CNTVCT_EL0, MPIDR_EL1, VBAR_EL1};
use core::arch::{asm, global_asm};
use core::fmt::{self, Write};
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use xen_abi::domid::SELF as DOMID_SELF;
use xen_abi::gnttab::{self as gt, GTF_PERMIT_ACCESS, GTF_READING, GTF_WRITING};
use xen_abi::hc::{GRANT_TABLE_OP, MEMORY_OP};
use xen_abi::layout::{EXT_BASE, GNTTAB_BASE};

global_asm!(
    r#"
.section .text.head, "ax"
.global _start
_start:
    b       1f
    .long   0
    .quad   0                      // text_offset
    .quad   __image_size
    .quad   2                      // little endian, 4 KiB pages
    .quad   0, 0, 0
    .ascii  "ARM\x64"
    .long   0
1:  mov     x19, x0                // device tree
    mov     x1, #(3 << 20)
    msr     cpacr_el1, x1          // FP/SIMD on before any Rust code
    isb
    adrp    x1, __bss_start
    add     x1, x1, :lo12:__bss_start
    adrp    x2, __bss_end
    add     x2, x2, :lo12:__bss_end
2:  cmp     x1, x2
    b.hs    3f
    str     xzr, [x1], #8
    b       2b
3:  adrp    x1, TTB
    add     x1, x1, :lo12:TTB
    mov     x2, #0x405             // block, AttrIndx 1 (device), AF
    orr     x2, x2, #(3 << 53)     // PXN | UXN
    str     x2, [x1]
    mov     x3, #0x701             // block, AttrIndx 0 (normal), inner shareable, AF
    mov     x4, #0x40000000
    orr     x2, x3, x4
    str     x2, [x1, #8]
    add     x2, x2, x4
    str     x2, [x1, #16]
    add     x2, x2, x4
    str     x2, [x1, #24]
    // The first GiB through a level-2 table: device, except the Xen grant window and magic
    // pages (0x3800_0000..0x3920_0000), which are normal memory shared with the hypervisor.
    adrp    x5, TTB_LOW
    add     x5, x5, :lo12:TTB_LOW
    mov     x6, #0
    mov     x8, #0x405
    orr     x8, x8, #(3 << 53)
4:  lsl     x7, x6, #21
    cmp     x6, #448
    b.lo    5f
    cmp     x6, #457
    b.hs    5f
    orr     x7, x7, x3
    b       6f
5:  orr     x7, x7, x8
6:  str     x7, [x5, x6, lsl #3]
    add     x6, x6, #1
    cmp     x6, #512
    b.lo    4b
    orr     x2, x5, #3
    str     x2, [x1]
    // The Xen extended region (256 GiB): normal memory, for grant mappings.
    mov     x4, #0x4000000000
    orr     x2, x3, x4
    str     x2, [x1, #2048]
    mov     x0, #0
    bl      set_stack
    bl      mmu_on
    mov     x0, x19
    b       {main}

.global secondary_start
secondary_start:
    mov     x19, x0                // vCPU index (CPU_ON context)
    mov     x1, #(3 << 20)
    msr     cpacr_el1, x1
    isb
    bl      set_stack
    bl      mmu_on
    mov     x0, x19
    b       {secondary}

set_stack:
    adrp    x1, STACKS
    add     x1, x1, :lo12:STACKS
    mov     x2, #16384
    madd    x1, x0, x2, x2
    adrp    x3, STACKS
    add     x3, x3, :lo12:STACKS
    add     sp, x3, x1
    ret

mmu_on:
    mov     x1, #0x04ff            // attr0 normal WB, attr1 device-nGnRE
    msr     mair_el1, x1
    mrs     x1, id_aa64mmfr0_el1
    and     x1, x1, #7
    lsl     x1, x1, #32            // IPS
    mov     x2, #25                // T0SZ: 39-bit VA
    orr     x2, x2, #(1 << 8)      // IRGN0 WB
    orr     x2, x2, #(1 << 10)     // ORGN0 WB
    orr     x2, x2, #(3 << 12)     // SH0 inner
    orr     x2, x2, #(1 << 23)     // EPD1
    orr     x1, x1, x2
    msr     tcr_el1, x1
    adrp    x1, TTB
    add     x1, x1, :lo12:TTB
    msr     ttbr0_el1, x1
    isb
    tlbi    vmalle1
    dsb     nsh
    isb
    mrs     x1, sctlr_el1
    mov     x2, #0x1005            // M, C, I
    orr     x1, x1, x2
    msr     sctlr_el1, x1
    isb
    ret

.balign 2048
.global guest_vectors
guest_vectors:
.rept 4
.balign 0x80
    b       bad_vector
.endr
.balign 0x80
    b       sync_current
.balign 0x80
    b       irq_entry
.rept 10
.balign 0x80
    b       bad_vector
.endr

sync_current:
    mrs     x0, esr_el1
    mrs     x1, far_el1
    mrs     x2, elr_el1
    b       {sync}
bad_vector:
    mrs     x0, esr_el1
    mrs     x1, far_el1
    mrs     x2, elr_el1
    b       {bad}
"#,
    main = sym guest_main,
    secondary = sym secondary_main,
    sync = sym sync_exception,
    bad = sym bad_exception,
);

#[repr(C, align(4096))]
struct Table([u64; 512]);

#[no_mangle]
static mut TTB: Table = Table([0; 512]);

#[no_mangle]
static mut TTB_LOW: Table = Table([0; 512]);

#[repr(C, align(16))]
struct Stacks([[u8; 16384]; 2]);

#[no_mangle]
static mut STACKS: Stacks = Stacks([[0; 16384]; 2]);

extern "C" {
    static guest_vectors: u8;
    fn secondary_start();
}

static UART: AtomicU64 = AtomicU64::new(0x2200_0000);
static SECONDARY_SAID_HELLO: AtomicBool = AtomicBool::new(false);
/// vCPU 0 has made its second CPU_ON: vCPU 1 stays on until then, so that call must be refused.
static SECOND_CPU_ON_DONE: AtomicBool = AtomicBool::new(false);
static EXPECT_ABORT: AtomicBool = AtomicBool::new(false);
static mut NAME: [u8; 32] = [0; 32];

struct Console;

impl Write for Console {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let base = UART.load(Ordering::Relaxed);
        for b in s.bytes() {
            // SAFETY: `base` is the PL011 data register the device tree names; a plain 32-bit
            // store with a base register, so the hypervisor gets a full syndrome if it traps it.
            unsafe { asm!("str {v:w}, [{a}]", v = in(reg) u32::from(b), a = in(reg) base, options(nostack)) };
        }
        Ok(())
    }
}

static CONSOLE_LOCK: AtomicBool = AtomicBool::new(false);

/// Prints one line; the lock keeps lines of our two vCPUs from interleaving.
macro_rules! say {
    ($($arg:tt)*) => {{
        while CONSOLE_LOCK.swap(true, Ordering::Acquire) {
            core::hint::spin_loop();
        }
        let _ = writeln!(Console, $($arg)*);
        CONSOLE_LOCK.store(false, Ordering::Release);
    }};
}

fn hvc(f: u64, a1: u64, a2: u64, a3: u64) -> i64 {
    let r: u64;
    // SAFETY: SMCCC call through the hypervisor; x0-x3 carry arguments and results.
    unsafe {
        asm!("hvc #0", inout("x0") f => r, inout("x1") a1 => _, inout("x2") a2 => _, inout("x3") a3 => _, options(nostack))
    };
    r as i64
}

const PSCI_VERSION: u64 = 0x8400_0000;
const CPU_OFF: u64 = 0x8400_0002;
const CPU_ON: u64 = 0xc400_0003;
const AFFINITY_INFO: u64 = 0xc400_0004;
const SYSTEM_OFF: u64 = 0x8400_0008;

fn power_off() -> ! {
    hvc(SYSTEM_OFF, 0, 0, 0);
    say!("SYSTEM_OFF returned; spinning");
    loop {
        core::hint::spin_loop();
    }
}

fn counter() -> (u64, u64) {
    barrier::isb(barrier::SY);
    (CNTVCT_EL0.get(), CNTFRQ_EL0.get())
}

fn name() -> &'static str {
    // SAFETY: written once by vCPU 0 before any other vCPU starts.
    let n = unsafe { &*core::ptr::addr_of!(NAME) };
    let l = n.iter().position(|&b| b == 0).unwrap_or(32);
    core::str::from_utf8(&n[..l]).unwrap_or("?")
}

extern "C" fn guest_main(dtb: usize) -> ! {
    VBAR_EL1.set(core::ptr::addr_of!(guest_vectors) as u64); // this guest's own vector table
    barrier::isb(barrier::SY);
    // SAFETY: the hypervisor passes a device tree in x0 inside our RAM, mapped by our identity map.
    let fdt = match unsafe { fdt::Fdt::from_ptr(dtb as *const u8) } {
        Ok(f) => f,
        Err(_) => {
            say!("testguest: no usable device tree at {dtb:#x}");
            power_off();
        }
    };
    if let Some(base) = fdt.chosen().stdout().and_then(|n| n.reg()).and_then(|mut r| r.next()) {
        UART.store(base.starting_address as u64, Ordering::Relaxed);
    }
    let chosen = fdt.find_node("/chosen");
    let nm = chosen.and_then(|c| c.property("ferrum,domain-name")).and_then(|p| p.as_str()).unwrap_or("testguest");
    // SAFETY: single-threaded here; secondaries start later.
    unsafe {
        let n = &mut *core::ptr::addr_of_mut!(NAME);
        let l = nm.len().min(31);
        n[..l].copy_from_slice(&nm.as_bytes()[..l]);
    }
    let args = fdt.chosen().bootargs().unwrap_or("");
    let mode = args.split_whitespace().find_map(|a| a.strip_prefix("mode=")).unwrap_or("single");
    let ram = fdt.memory().regions().next();
    let (rbase, rsize) = ram.map_or((0, 0), |r| (r.starting_address as u64, r.size.unwrap_or(0) as u64));
    let ncpu = fdt.cpus().count();
    let v = hvc(PSCI_VERSION, 0, 0, 0);
    say!(
        "hello from {}: EL1, {} vCPU(s), {} MiB RAM at {rbase:#x}, PSCI {}.{}, mode={mode}",
        name(),
        ncpu,
        rsize >> 20,
        v >> 16,
        v & 0xffff
    );
    match mode {
        "smp" => {
            if ncpu < 2 {
                say!("FAIL: mode=smp needs 2 vCPUs");
                power_off();
            }
            let r = hvc(CPU_ON, 1, secondary_start as *const () as u64, 1);
            if r != 0 {
                say!("FAIL: CPU_ON returned {r}");
                power_off();
            }
            let again = hvc(CPU_ON, 1, secondary_start as *const () as u64, 1);
            SECOND_CPU_ON_DONE.store(true, Ordering::Release);
            let bad = hvc(CPU_ON, 7, secondary_start as *const () as u64, 1);
            // A second CPU_ON is refused with ALREADY_ON (-4) or ON_PENDING (-5), depending on timing.
            let refused = again == -4 || again == -5;
            say!("CPU_ON vCPU 1: ok; second CPU_ON refused: {refused}; vCPU 7: {bad}");
            while !SECONDARY_SAID_HELLO.load(Ordering::Acquire) {
                core::hint::spin_loop();
            }
            while hvc(AFFINITY_INFO, 1, 0, 0) != 1 {
                core::hint::spin_loop();
            }
            say!("vCPU 1 is off again (AFFINITY_INFO)");
            work(rbase);
            say!("PASS: {} finished", name());
            power_off();
        }
        "escape" => {
            let target = rbase + rsize + 0x10_0000;
            say!("reading IPA {target:#x}, outside my partition");
            EXPECT_ABORT.store(true, Ordering::SeqCst);
            // SAFETY: deliberately touches memory that is not ours: the hypervisor must stop it.
            let v = unsafe { core::ptr::read_volatile(target as *const u64) };
            say!("FAIL: read outside the partition returned {v:#x}");
            power_off();
        }
        "grant-offer" | "grant-map" => {
            let peer: u16 =
                args.split_whitespace().find_map(|a| a.strip_prefix("peer=")).and_then(|v| v.parse().ok()).unwrap_or(0);
            if mode == "grant-offer" {
                grant_offer(rbase, peer)
            } else {
                grant_map(rbase, peer)
            }
        }
        "bench" => bench(&fdt),
        "events" => events(&fdt),
        "restart" => restart(&fdt),
        "panic" => {
            say!("executing an undefined instruction");
            // SAFETY: deliberately undefined: exercises the guest's own exception path.
            unsafe { asm!("udf #0", options(nostack)) };
            power_off();
        }
        _ => {
            work(rbase);
            let delay_ms: u64 = args
                .split_whitespace()
                .find_map(|a| a.strip_prefix("delay="))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            if delay_ms > 0 {
                let (t0, f) = counter();
                while counter().0 - t0 < delay_ms * f / 1000 {
                    core::hint::spin_loop();
                }
                say!("waited {delay_ms} ms on the virtual counter");
            }
            say!("PASS: {} finished", name());
            power_off();
        }
    }
}

/// Median and minimum of `f`'s cost in counter ticks over 257 runs, minus the cost of the
/// measurement itself.
fn measure(mut f: impl FnMut()) -> (u64, u64) {
    let ticks = || counter().0;
    let mut empty = [0u64; 257];
    let mut cost = [0u64; 257];
    for e in empty.iter_mut() {
        let t0 = ticks();
        *e = ticks() - t0;
    }
    for c in cost.iter_mut() {
        let t0 = ticks();
        f();
        *c = ticks() - t0;
    }
    empty.sort_unstable();
    cost.sort_unstable();
    let base = empty[128];
    (cost[128].saturating_sub(base), cost[0].saturating_sub(base))
}

fn bench(fdt: &fdt::Fdt<'_>) -> ! {
    let (med, min) = measure(|| {
        xen_hc(xen_abi::hc::XEN_VERSION, xen_abi::version::VERSION, 0, 0);
    });
    say!("bench: null hypercall (xen_version) round trip: {med} ticks (median of 257, min {min})");
    let gicd = fdt
        .find_compatible(&["arm,gic-v3", "arm,cortex-a15-gic", "arm,gic-400"])
        .and_then(|n| n.reg())
        .and_then(|mut r| r.next())
        .map_or(0x0300_1000, |r| r.starting_address as u64);
    let (med, min) = measure(|| {
        let v: u32;
        // SAFETY: GICD_TYPER of our virtual distributor, a 32-bit load with a valid syndrome.
        unsafe { asm!("ldr {v:w}, [{a}]", v = out(reg) v, a = in(reg) gicd + 4, options(nostack)) };
        core::hint::black_box(v);
    });
    say!("bench: distributor MMIO load (GICD_TYPER): {med} ticks (median of 257, min {min})");
    gic_init(fdt);
    let Some((port, _)) = loopback_port() else {
        say!("FAIL: no loop-back event channel");
        power_off();
    };
    let base = measure(|| {}).0;
    let (med, min) = latency(base, |_| {
        let t0 = counter().0;
        let p = port.to_le_bytes();
        xen_hc(xen_abi::hc::EVENT_CHANNEL_OP, xen_abi::evtchn::SEND, p.as_ptr() as u64, 0);
        wait_irq(irq::EVTCHN, false);
        t0
    });
    say!("bench: event-channel send to self until the upcall vector: {med} ticks (median of 257, min {min})");
    for (wfi, what) in [(false, "spinning"), (true, "in WFI")] {
        let (med, min) = latency(0, |_| {
            let cval = counter().0 + 5000;
            irq::timer_at(cval);
            wait_irq(irq::VTIMER, wfi);
            cval
        });
        say!("bench: virtual timer, counter passes CVAL until the IRQ vector ({what}): {med} ticks (median of 257, min {min})");
    }
    say!("PASS: {} finished", name());
    power_off();
}

/// Sets up our GIC CPU interface from the device tree's GIC node and unmasks IRQs.
fn gic_init(fdt: &fdt::Fdt<'_>) {
    let gic = fdt.find_compatible(&["arm,gic-v3", "arm,cortex-a15-gic", "arm,gic-400"]);
    let is_v3 = gic.and_then(|n| n.compatible()).is_some_and(|c| c.all().any(|c| c == "arm,gic-v3"));
    let mut regs = gic.and_then(|n| n.reg()).into_iter().flatten().map(|r| r.starting_address as u64);
    let (dist, second) = (regs.next().unwrap_or(0), regs.next().unwrap_or(0));
    irq::init(is_v3, dist, second);
}

fn evtchn_op(cmd: u64, arg: &mut [u8]) -> i64 {
    xen_hc(xen_abi::hc::EVENT_CHANNEL_OP, cmd, arg.as_mut_ptr() as u64, 0)
}

fn sched_poll(ports: &[u32], timeout_ns: u64) -> i64 {
    let mut p = [0u8; xen_abi::poll::SIZE];
    p[..8].copy_from_slice(&(ports.as_ptr() as u64).to_le_bytes());
    p[8..12].copy_from_slice(&(ports.len() as u32).to_le_bytes());
    p[16..24].copy_from_slice(&timeout_ns.to_le_bytes());
    xen_hc(xen_abi::hc::SCHED_OP, xen_abi::sched::POLL, p.as_ptr() as u64, 0)
}

fn events(fdt: &fdt::Fdt<'_>) -> ! {
    use xen_abi::{evtchn as ev, sched, shared};
    gic_init(fdt);
    let Some((port, peer)) = loopback_port() else {
        say!("FAIL: no loop-back event channel");
        power_off();
    };
    // 1. A send arrives as an upcall on PPI 31.
    let before = irq::UPCALLS.load(Ordering::Acquire);
    evtchn_op(ev::SEND, &mut port.to_le_bytes());
    wait_irq(irq::EVTCHN, false);
    say!("events: send on port {port}: upcall with {} event(s)", irq::UPCALLS.load(Ordering::Acquire) - before);
    // 2. Masked: no upcall, but SCHEDOP_poll sees it pending and returns at once.
    let bit = 1u64 << (peer % 64);
    let word = 8 * u64::from(peer / 64);
    irq::shared_word(shared::EVTCHN_MASK + word).fetch_or(bit, Ordering::AcqRel);
    evtchn_op(ev::SEND, &mut port.to_le_bytes());
    let (t0, f) = counter();
    while counter().0 - t0 < f / 100 {
        core::hint::spin_loop();
    }
    let quiet = irq::SEEN.load(Ordering::Acquire) != irq::EVTCHN;
    let r = sched_poll(&[peer], 0);
    let pending = irq::shared_word(shared::EVTCHN_PENDING + word).fetch_and(!bit, Ordering::AcqRel) & bit != 0;
    say!("events: masked port: no upcall {quiet}; SCHEDOP_poll returned {r} with it pending {pending}");
    // 3. A poll that nobody answers ends at its timeout (system time = virtual counter in ns).
    let (c, f) = counter();
    let now_ns = (u128::from(c) * 1_000_000_000 / u128::from(f)) as u64;
    let r = sched_poll(&[peer], now_ns + 20_000_000);
    let waited_ms = (counter().0 - c) * 1000 / f;
    say!("events: poll with a 20 ms timeout returned {r} after >= 20 ms: {}", waited_ms >= 20);
    // 4. SCHEDOP_block returns once the virtual timer fires.
    irq::timer_at(counter().0 + f / 100);
    let r = xen_hc(xen_abi::hc::SCHED_OP, sched::BLOCK, 0, 0);
    wait_irq(irq::VTIMER, false);
    say!("events: SCHEDOP_block returned {r}, woken by the virtual timer");
    // 5. Virtual IRQ bindings.
    let mut b = [0u8; ev::BIND_VIRQ_SIZE];
    let mut bind = |virq: u32, vcpu: u32| {
        b[..4].copy_from_slice(&virq.to_le_bytes());
        b[4..8].copy_from_slice(&vcpu.to_le_bytes());
        (evtchn_op(ev::BIND_VIRQ, &mut b), u32::from_le_bytes([b[8], b[9], b[10], b[11]]))
    };
    let (r, vport) = bind(ev::VIRQ_TIMER, 0);
    let again = bind(ev::VIRQ_TIMER, 0).0;
    let global_elsewhere = bind(ev::VIRQ_DOM_EXC, 1).0;
    let unknown = bind(ev::NR_VIRQS, 0).0;
    let (g, _) = bind(ev::VIRQ_DOM_EXC, 0);
    let send = evtchn_op(ev::SEND, &mut vport.to_le_bytes());
    say!(
        "events: bind_virq timer {r}, again {again}, global on vCPU 1 {global_elsewhere}, unknown {unknown}, dom_exc {g}; send on it {send}"
    );
    // 6. Bad polls.
    let too_many = sched_poll(&[peer; 129], 1);
    let bad_port = sched_poll(&[9999], 1);
    let mut p = [0u8; xen_abi::poll::SIZE];
    p[..8].copy_from_slice(&0x10u64.to_le_bytes());
    p[8..12].copy_from_slice(&1u32.to_le_bytes());
    let bad_list = xen_hc(xen_abi::hc::SCHED_OP, sched::POLL, p.as_ptr() as u64, 0);
    say!("events: poll of 129 ports {too_many}, of port 9999 {bad_port}, of an unmapped list {bad_list}");
    say!("PASS: {} finished", name());
    power_off();
}

fn restart(fdt: &fdt::Fdt<'_>) -> ! {
    let (c, f) = counter();
    let second = c >= 2 * f;
    gic_init(fdt);
    let Some((port, peer)) = loopback_port() else {
        say!("FAIL: no loop-back event channel");
        power_off();
    };
    evtchn_op(xen_abi::evtchn::SEND, &mut port.to_le_bytes());
    wait_irq(irq::EVTCHN, false);
    say!("restart: boot {}: loop-back ports {peer}/{port}, upcall taken", if second { 2 } else { 1 });
    if second {
        say!("PASS: {} finished", name());
        power_off();
    }
    while counter().0 < 2 * f {
        core::hint::spin_loop();
    }
    let reason = xen_abi::sched::SHUTDOWN_REBOOT.to_le_bytes();
    xen_hc(xen_abi::hc::SCHED_OP, xen_abi::sched::SHUTDOWN, reason.as_ptr() as u64, 0);
    say!("FAIL: SCHEDOP_shutdown(reboot) returned");
    power_off();
}

/// Median and minimum over 257 runs of (IRQ vector's counter stamp - what `f` returns - `base`).
fn latency(base: u64, mut f: impl FnMut(usize) -> u64) -> (u64, u64) {
    let mut l = [0u64; 257];
    for (i, x) in l.iter_mut().enumerate() {
        let from = f(i);
        *x = irq::STAMP.load(Ordering::Acquire).wrapping_sub(from).saturating_sub(base);
    }
    l.sort_unstable();
    (l[128], l[0])
}

/// Waits (spinning, or in WFI) until the IRQ handler reports `intid`; gives up after 1 s.
fn wait_irq(intid: u32, wfi: bool) {
    let (t0, f) = counter();
    while irq::SEEN.load(Ordering::Acquire) != intid {
        if counter().0 - t0 > f {
            say!("FAIL: interrupt {intid} never arrived");
            power_off();
        }
        if wfi {
            aarch64_cpu::asm::wfi();
        } else {
            core::hint::spin_loop();
        }
    }
    irq::SEEN.store(1023, Ordering::Release);
}

#[repr(C, align(4096))]
struct Page([u8; 4096]);

static mut SHARED_INFO: Page = Page([0; 4096]);

/// Registers shared_info and makes an event channel to ourselves (alloc_unbound for our own
/// domain, then bind_interdomain to it); returns the port to send on and the one events
/// arrive on.
fn loopback_port() -> Option<(u32, u32)> {
    use xen_abi::{evtchn as ev, hc, memory as m};
    let si = core::ptr::addr_of!(SHARED_INFO) as u64;
    let mut a = [0u8; m::ADD_TO_PHYSMAP_SIZE];
    a[..2].copy_from_slice(&DOMID_SELF.to_le_bytes());
    a[4..8].copy_from_slice(&m::SPACE_SHARED_INFO.to_le_bytes());
    a[16..24].copy_from_slice(&(si >> 12).to_le_bytes());
    if xen_hc(hc::MEMORY_OP, m::ADD_TO_PHYSMAP, a.as_ptr() as u64, 0) != 0 {
        return None;
    }
    irq::set_shared_info(si);
    let mut u = [0u8; 8];
    u[..2].copy_from_slice(&DOMID_SELF.to_le_bytes());
    u[2..4].copy_from_slice(&DOMID_SELF.to_le_bytes());
    if xen_hc(hc::EVENT_CHANNEL_OP, ev::ALLOC_UNBOUND, u.as_mut_ptr() as u64, 0) != 0 {
        return None;
    }
    let mut b = [0u8; 12];
    b[..2].copy_from_slice(&DOMID_SELF.to_le_bytes());
    b[4..8].copy_from_slice(&u[4..8]);
    if xen_hc(hc::EVENT_CHANNEL_OP, ev::BIND_INTERDOMAIN, b.as_mut_ptr() as u64, 0) != 0 {
        return None;
    }
    // Binding left the new port pending: its upcall arrives now; start from a quiet state.
    wait_irq(irq::EVTCHN, false);
    Some((u32::from_le_bytes([b[8], b[9], b[10], b[11]]), u32::from_le_bytes([u[4], u[5], u[6], u[7]])))
}

fn xen_hc(nr: u64, a0: u64, a1: u64, a2: u64) -> i64 {
    let r: u64;
    // SAFETY: a Xen hypercall: number in x16, arguments x0-x2, result in x0; pointers passed
    // are to our own memory.
    unsafe {
        asm!("hvc #0xea1", inout("x0") a0 => r, inout("x1") a1 => _, inout("x2") a2 => _, in("x16") nr, options(nostack))
    };
    r as i64
}

const GREF: u32 = 8;
const REPLY: usize = 2048;
const ACK: usize = 3072;

fn entry_flags(gref: u32) -> u16 {
    // SAFETY: our grant frame 0, mapped normal (TTB_LOW); the hypervisor updates it atomically.
    unsafe { core::ptr::read_volatile((GNTTAB_BASE + u64::from(gref) * gt::ENTRY_SIZE as u64) as *const u16) }
}

/// Seconds on the virtual counter since `t0`.
fn waited(t0: u64) -> u64 {
    let (c, f) = counter();
    (c - t0) / f.max(1)
}

fn grant_offer(rbase: u64, peer: u16) -> ! {
    // Grant frame 0 into our physmap (XENMEM_add_to_physmap, space grant_table), as Linux does.
    let mut atp = [0u8; 24];
    atp[0..2].copy_from_slice(&DOMID_SELF.to_le_bytes());
    atp[4..8].copy_from_slice(&xen_abi::memory::SPACE_GRANT_TABLE.to_le_bytes());
    atp[16..24].copy_from_slice(&(GNTTAB_BASE >> 12).to_le_bytes());
    let r = xen_hc(MEMORY_OP, xen_abi::memory::ADD_TO_PHYSMAP, atp.as_ptr() as u64, 0);
    let page = rbase + 0x30_0000;
    let text = b"ferrum-grant-page";
    // SAFETY: a page of our own RAM above the image and the work area.
    unsafe {
        core::ptr::write_bytes(page as *mut u8, 0, 4096);
        core::ptr::copy_nonoverlapping(text.as_ptr(), page as *mut u8, text.len());
    }
    let e = GNTTAB_BASE + u64::from(GREF) * gt::ENTRY_SIZE as u64;
    // SAFETY: entry GREF of our grant table: frame and domid first, then the flags (v1 order).
    unsafe {
        core::ptr::write_volatile((e + 4) as *mut u32, (page >> 12) as u32);
        core::ptr::write_volatile((e + 2) as *mut u16, peer);
        asm!("dmb ishst", options(nostack));
        core::ptr::write_volatile(e as *mut u16, GTF_PERMIT_ACCESS);
    }
    say!("granted page {page:#x} to domain {peer} as ref {GREF} (grant frame added: {r})");
    let t0 = counter().0;
    let reply = (page + REPLY as u64) as *const u8;
    // SAFETY: our own page; the peer writes into it through its mapping.
    while unsafe { core::ptr::read_volatile(reply) } == 0 {
        if waited(t0) > 30 {
            say!("FAIL: no reply from domain {peer}");
            power_off();
        }
        core::hint::spin_loop();
    }
    let mut got = [0u8; 32];
    // SAFETY: as above.
    unsafe { core::ptr::copy_nonoverlapping(reply, got.as_mut_ptr(), 32) };
    let n = got.iter().position(|&b| b == 0).unwrap_or(32);
    let busy = entry_flags(GREF) & (GTF_READING | GTF_WRITING);
    // SAFETY: our own page: tells the mapper it may unmap now.
    unsafe { core::ptr::write_volatile((page + ACK as u64) as *mut u8, 1) };
    say!("reply in the granted page: {}", core::str::from_utf8(&got[..n]).unwrap_or("?"));
    while entry_flags(GREF) & (GTF_READING | GTF_WRITING) != 0 {
        if waited(t0) > 30 {
            say!("FAIL: GTF_reading/writing still set");
            power_off();
        }
        core::hint::spin_loop();
    }
    // SAFETY: no use is left (the flags say so): revoke the grant.
    unsafe { core::ptr::write_volatile(e as *mut u16, 0) };
    say!(
        "in use: reading+writing = {}; after the peer unmapped: cleared; grant revoked",
        busy == GTF_READING | GTF_WRITING
    );
    say!("PASS: {} finished", name());
    power_off();
}

#[repr(C)]
#[derive(Default)]
struct MapOp {
    host_addr: u64,
    flags: u32,
    gref: u32,
    dom: u16,
    status: i16,
    handle: u32,
    dev_bus_addr: u64,
}

fn map(dom: u16, gref: u32, at: u64, ro: bool) -> MapOp {
    let mut op = MapOp {
        host_addr: at,
        flags: gt::GNTMAP_HOST_MAP | if ro { gt::GNTMAP_READONLY } else { 0 },
        gref,
        dom,
        ..Default::default()
    };
    let r = xen_hc(GRANT_TABLE_OP, gt::MAP_GRANT_REF, &mut op as *mut MapOp as u64, 1);
    if r != 0 {
        say!("FAIL: map hypercall returned {r}");
        power_off();
    }
    op
}

fn unmap(at: u64, handle: u32) -> i16 {
    let mut op = [0u64; 3];
    op[0] = at;
    op[2] = u64::from(handle);
    let r = xen_hc(GRANT_TABLE_OP, gt::UNMAP_GRANT_REF, op.as_mut_ptr() as u64, 1);
    if r != 0 {
        say!("FAIL: unmap hypercall returned {r}");
        power_off();
    }
    (op[2] >> 32) as i16
}

/// `GNTTABOP_copy` of `len` bytes: (source ref or frame, domid, offset), the same for dest, flags.
fn copy(src: (u64, u16, u16), dst: (u64, u16, u16), len: u16, flags: u16) -> i16 {
    let mut b = [0u8; 40];
    for (o, (v, d, off)) in [(0, src), (16, dst)] {
        b[o..o + 8].copy_from_slice(&v.to_le_bytes());
        b[o + 8..o + 10].copy_from_slice(&d.to_le_bytes());
        b[o + 10..o + 12].copy_from_slice(&off.to_le_bytes());
    }
    b[32..34].copy_from_slice(&len.to_le_bytes());
    b[34..36].copy_from_slice(&flags.to_le_bytes());
    let r = xen_hc(GRANT_TABLE_OP, gt::COPY, b.as_mut_ptr() as u64, 1);
    if r != 0 {
        say!("FAIL: copy hypercall returned {r}");
        power_off();
    }
    i16::from_le_bytes([b[36], b[37]])
}

fn grant_map(rbase: u64, peer: u16) -> ! {
    let t0 = counter().0;
    let first = loop {
        let op = map(peer, GREF, EXT_BASE, false);
        if op.status == 0 {
            break op;
        }
        if waited(t0) > 30 {
            say!("FAIL: mapping ref {GREF} of domain {peer}: status {}", op.status);
            power_off();
        }
    };
    let mut got = [0u8; 17];
    // SAFETY: the granted page, mapped at EXT_BASE by the hypervisor (normal memory in TTB).
    unsafe { core::ptr::copy_nonoverlapping(EXT_BASE as *const u8, got.as_mut_ptr(), got.len()) };
    say!(
        "mapped domain {peer}'s ref {GREF} at {EXT_BASE:#x} (handle {}): it says {}",
        first.handle,
        core::str::from_utf8(&got).unwrap_or("?")
    );
    // Hostile and edge cases: each gets its own status, nothing else changes.
    let own_ram = rbase + 0x40_0000;
    say!(
        "statuses: unknown domain {}, bad ref {}, over own RAM {}, same place twice {}, bad handle {}",
        map(42, GREF, EXT_BASE + 0x1000, false).status,
        map(peer, 1 << 20, EXT_BASE + 0x1000, false).status,
        map(peer, GREF, own_ram, false).status,
        map(peer, GREF, EXT_BASE, false).status,
        unmap(0, 777)
    );
    let ro = map(peer, GREF, EXT_BASE + 0x1000, true);
    let ro_unmapped = unmap(EXT_BASE + 0x1000, ro.handle);
    say!("read-only map: {}, unmapped: {}, unmapped again: {}", ro.status, ro_unmapped, unmap(0, ro.handle));
    // Copy from the grant into our own frame, and refusals.
    let dst = rbase + 0x30_0000;
    let c_ok = copy((u64::from(GREF), peer, 0), (dst >> 12, DOMID_SELF, 0), 17, gt::GNTCOPY_SOURCE_GREF);
    let mut copied = [0u8; 17];
    // SAFETY: our own RAM, just written by the hypervisor's copy.
    unsafe { core::ptr::copy_nonoverlapping(dst as *const u8, copied.as_mut_ptr(), copied.len()) };
    say!(
        "copy: {} ({}), across a page end {}, into another domain's frame {}",
        c_ok,
        core::str::from_utf8(&copied).unwrap_or("?"),
        copy((u64::from(GREF), peer, 4000), (dst >> 12, DOMID_SELF, 0), 200, gt::GNTCOPY_SOURCE_GREF),
        copy((dst >> 12, DOMID_SELF, 0), (0x40000, peer, 0), 8, 0)
    );
    let reply = b"pong from the mapper";
    // SAFETY: the granted page is writable (a read-write mapping).
    unsafe { core::ptr::copy_nonoverlapping(reply.as_ptr(), (EXT_BASE + REPLY as u64) as *mut u8, reply.len()) };
    // SAFETY: the granted page, still mapped: wait for the granter's acknowledgement.
    while unsafe { core::ptr::read_volatile((EXT_BASE + ACK as u64) as *const u8) } == 0 {
        if waited(t0) > 30 {
            say!("FAIL: no acknowledgement from domain {peer}");
            power_off();
        }
        core::hint::spin_loop();
    }
    let st = unmap(EXT_BASE, first.handle);
    say!("replied through the mapping and unmapped it: {st}");
    say!("PASS: {} finished", name());
    power_off();
}

fn work(rbase: u64) {
    let (t0, f) = counter();
    let mut sum: u64 = 0;
    // Touch 1 MiB of our own RAM beyond the image.
    let buf = (rbase + 0x20_0000) as *mut u64;
    for i in 0..(1 << 17) {
        // SAFETY: inside our own RAM (validated size >= 4 MiB), above the image.
        unsafe {
            buf.add(i).write_volatile(i as u64 * 0x9e37_79b9);
            sum = sum.wrapping_add(buf.add(i).read_volatile());
        }
    }
    let (t1, _) = counter();
    say!("work: checksum {sum:#x} in {} us", (t1 - t0) * 1_000_000 / f.max(1));
}

extern "C" fn secondary_main(idx: u64) -> ! {
    let mpidr = MPIDR_EL1.get();
    VBAR_EL1.set(core::ptr::addr_of!(guest_vectors) as u64); // the shared vector table
    barrier::isb(barrier::SY);
    say!("{}: vCPU {idx} up (MPIDR {:#x}), turning itself off", name(), mpidr & 0xff_ffff);
    SECONDARY_SAID_HELLO.store(true, Ordering::Release);
    while !SECOND_CPU_ON_DONE.load(Ordering::Acquire) {
        core::hint::spin_loop();
    }
    hvc(CPU_OFF, 0, 0, 0);
    say!("FAIL: CPU_OFF returned");
    loop {
        core::hint::spin_loop();
    }
}

extern "C" fn sync_exception(esr: u64, far: u64, elr: u64) -> ! {
    let ec = esr >> 26;
    if EXPECT_ABORT.load(Ordering::SeqCst) && ec == 0x25 {
        say!("contained: synchronous external abort (ESR {esr:#x}) at VA {far:#x}, PC {elr:#x}");
    } else {
        say!("exception: ESR {esr:#x} (EC {ec:#x}), FAR {far:#x}, PC {elr:#x}");
    }
    power_off();
}

extern "C" fn bad_exception(esr: u64, far: u64, elr: u64) -> ! {
    say!("unexpected exception vector: ESR {esr:#x}, FAR {far:#x}, PC {elr:#x}");
    power_off();
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    say!("panic: {info}");
    power_off();
}
