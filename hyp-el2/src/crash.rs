//! Fatal paths: the crash report for an exception taken at EL2, the Rust panic handler, and
//! the board power-off that ends every run with a status line the test harness reads:
//! `(hyp) power off (status: clean): …` or `(hyp) power off (status: error): …`.

use crate::arch;
use crate::console::emergency;
use crate::exceptions::GuestRegs;
use core::sync::atomic::{AtomicBool, Ordering};
use hyp_core::esr::{class_name, Esr};

static POWERING_OFF: AtomicBool = AtomicBool::new(false);
static FIRMWARE_PSCI: AtomicBool = AtomicBool::new(false);

/// Records whether firmware offers PSCI over SMC (the Pi 4 without TF-A does not: then
/// "power off" halts every CPU instead of calling `SYSTEM_OFF`, which would be undefined).
pub fn set_firmware_psci(present: bool) {
    FIRMWARE_PSCI.store(present, Ordering::SeqCst);
}

const PSCI_SYSTEM_OFF: u64 = 0x8400_0008;

/// Prints the status line and powers the board off. Only the first caller proceeds; others park.
pub fn power_off(clean: bool, why: core::fmt::Arguments<'_>) -> ! {
    if POWERING_OFF.swap(true, Ordering::SeqCst) {
        park();
    }
    #[cfg(feature = "trace")]
    {
        crate::trace::drain(true);
        let (frames, dropped) = crate::trace::counts();
        emergency(format_args!("(hyp) trace: {frames} frames written, {dropped} dropped\r\n"));
    }
    let status = if clean { "clean" } else { "error" };
    emergency(format_args!("(hyp) power off (status: {status}): {why}\r\n"));
    if FIRMWARE_PSCI.load(Ordering::SeqCst) {
        arch::smc(PSCI_SYSTEM_OFF, 0, 0, 0);
        emergency(format_args!("(hyp) firmware did not power off; halted\r\n"));
    } else {
        emergency(format_args!("(hyp) no firmware power-off (no PSCI); halted, safe to remove power\r\n"));
    }
    park()
}

/// Stops this CPU for good.
pub fn park() -> ! {
    loop {
        arch::wfi();
    }
}

/// Reports an exception taken at EL2 and stops the board.
pub fn report(regs: &GuestRegs, kind: u64, esr: u64, far: u64) -> ! {
    let e = Esr(esr);
    let cpu = arch::cpu_index();
    let kinds = ["synchronous", "IRQ", "FIQ", "SError"];
    let k = kinds.get(kind as usize).copied().unwrap_or("?");
    emergency(format_args!(
        "\r\n(hyp) *** hypervisor crash on CPU {cpu}: {k} exception at EL2: {} (ESR_EL2={esr:#x}, EC={:#x}, ISS={:#x})\r\n",
        class_name(e.ec()),
        e.ec(),
        e.iss()
    ));
    if matches!(e.ec(), 0x24 | 0x25 | 0x20 | 0x21) {
        emergency(format_args!("(hyp)     fault: {}\r\n", hyp_core::esr::fsc_name(e.data_abort().fsc)));
    }
    emergency(format_args!("(hyp)     FAR={far:#018x} ELR={:#018x} SPSR={:#010x}\r\n", regs.elr, regs.spsr));
    for (i, pair) in regs.x.chunks(4).enumerate() {
        emergency(format_args!("(hyp)    "));
        for (j, v) in pair.iter().enumerate() {
            emergency(format_args!(" x{:<2}={v:#018x}", i * 4 + j));
        }
        emergency(format_args!("\r\n"));
    }
    power_off(false, format_args!("hypervisor crash on CPU {cpu}"))
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    let cpu = arch::cpu_index();
    match info.location() {
        Some(l) => emergency(format_args!(
            "\r\n(hyp) *** panic on CPU {cpu} at {}:{}:{}: {}\r\n",
            l.file(),
            l.line(),
            l.column(),
            info.message()
        )),
        None => emergency(format_args!("\r\n(hyp) *** panic on CPU {cpu}: {}\r\n", info.message())),
    }
    power_off(false, format_args!("hypervisor panic on CPU {cpu}"))
}
