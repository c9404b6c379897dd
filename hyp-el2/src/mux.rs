//! Console multiplexing, input side: bytes typed on the physical UART go to the focused
//! domain's console; Ctrl-A pressed three times in a row moves the focus to the next running
//! domain and, after the last one, to the hypervisor's own command line (as Xen's console
//! does), and says so on the console. Commands are parsed by `hyp_core::command`.
//!
//! Invariant: only the CPU that takes the UART interrupt (pCPU 0) runs [`uart_input`], so the
//! escape-sequence state and the command line are only ever touched there (the lock around the
//! line is uncontended).

use crate::console::{echo, hprintln};
use crate::sync::SpinLock;
use crate::{domain, p2m, xen};
use core::sync::atomic::{AtomicUsize, Ordering};
use hyp_core::balloon::TargetError;
use hyp_core::command::{self, Command};

const CTRL_A: u8 = 0x01;
const LINE_MAX: usize = 120;
static FOCUS: AtomicUsize = AtomicUsize::new(0);
static CTRL_A_SEEN: AtomicUsize = AtomicUsize::new(0);
static LINE: SpinLock<([u8; LINE_MAX], usize)> = SpinLock::new(([0; LINE_MAX], 0));

/// Sets the initial focus.
pub fn set_focus(d: usize) {
    FOCUS.store(d, Ordering::Relaxed);
}

/// Announces where input goes.
pub fn announce() {
    let d = FOCUS.load(Ordering::Relaxed);
    if d == domain::count() {
        hprintln!("console input goes to the hypervisor: type 'help' (press Ctrl-A three times to switch)");
    } else {
        hprintln!("console input goes to domain '{}' (press Ctrl-A three times to switch)", domain::name(d));
    }
}

/// Next focus: the next running domain, the hypervisor after the last domain.
fn switch() {
    let n = domain::count();
    let cur = FOCUS.load(Ordering::Relaxed);
    for k in 1..=n + 1 {
        let next = (cur + k) % (n + 1);
        if next == n || domain::is_running(next) {
            FOCUS.store(next, Ordering::Relaxed);
            break;
        }
    }
    announce();
}

/// Drains the UART's receive FIFO (UART interrupt).
pub fn uart_input() {
    while let Some(b) = crate::console::getc() {
        if b == CTRL_A {
            let seen = CTRL_A_SEEN.fetch_add(1, Ordering::Relaxed) + 1;
            if seen == 3 {
                CTRL_A_SEEN.store(0, Ordering::Relaxed);
                switch();
            }
            continue;
        }
        let d = FOCUS.load(Ordering::Relaxed);
        let held = CTRL_A_SEEN.swap(0, Ordering::Relaxed);
        if d == domain::count() {
            command_byte(b);
            continue;
        }
        for _ in 0..held {
            domain::console_input(d, CTRL_A);
        }
        domain::console_input(d, b);
    }
}

/// A byte typed at the hypervisor's command line: echoed, edited, run at Enter.
fn command_byte(b: u8) {
    let mut g = LINE.lock();
    let (buf, len) = &mut *g;
    match b {
        b'\r' | b'\n' => {
            echo(b"\n");
            let mut line = [0u8; LINE_MAX];
            let n = *len;
            line[..n].copy_from_slice(&buf[..n]);
            *len = 0;
            drop(g);
            run(core::str::from_utf8(&line[..n]).unwrap_or(""));
        }
        0x08 | 0x7f if *len > 0 => {
            *len -= 1;
            echo(b"\x08 \x08");
        }
        0x20..=0x7e if *len < LINE_MAX => {
            buf[*len] = b;
            *len += 1;
            echo(&[b]);
        }
        _ => {}
    }
}

fn run(line: &str) {
    match command::parse(line) {
        Ok(Command::Empty) => {}
        Ok(Command::Help) => {
            for l in command::HELP {
                hprintln!("  {l}");
            }
        }
        Ok(Command::Domains) => domains(),
        Ok(Command::Mem { name, kib }) => mem(name, kib),
        Err(e) => hprintln!("'{line}': {e}"),
    }
}

fn domains() {
    hprintln!("  {:<16} {:>5} {:>10} {:>10} {:>10}  state", "domain", "vCPUs", "plan KiB", "holds KiB", "target KiB");
    for d in 0..domain::count() {
        let c = &domain::config().domains[d];
        let f = p2m::figures(d);
        let kib = |v: Option<u64>| v.map_or_else(|| alloc::string::String::from("-"), |k| alloc::format!("{k}"));
        hprintln!(
            "  {:<16} {:>5} {:>10} {:>10} {:>10}  {}",
            c.name(),
            c.pcpus.len(),
            kib(f.map(|f| f.plan * 4)),
            kib(f.map(|f| f.populated * 4)),
            kib(f.filter(|_| c.xen).map(|f| f.target_kib)),
            domain::state_text(d)
        );
    }
}

fn mem(name: &str, kib: u64) {
    let cfg = domain::config();
    let Some(d) = cfg.domains.iter().position(|c| c.name() == name) else {
        hprintln!("mem: no domain is called '{name}'");
        return;
    };
    if !cfg.domains[d].xen || !domain::is_running(d) {
        hprintln!("mem: domain '{name}' has no balloon (it is not a running Xen-aware domain)");
        return;
    }
    match xen::set_memory_target(d, kib) {
        Ok(()) => hprintln!("domain '{name}': memory target set to {kib} KiB; its balloon driver moves the pages"),
        Err(TargetError::AbovePlan { plan_kib }) => {
            hprintln!("mem: refused: {kib} KiB is more than domain '{name}''s plan ({plan_kib} KiB)")
        }
        Err(TargetError::BelowFloor { floor_kib }) => {
            hprintln!("mem: refused: {kib} KiB is below the floor of {floor_kib} KiB")
        }
    }
}
