//! Console multiplexing, input side: bytes typed on the physical UART go to the focused
//! domain's console; Ctrl-A pressed three times in a row moves the focus to the next running
//! domain (as Xen's console does) and says so on the console.
//!
//! Invariant: only the CPU that takes the UART interrupt (pCPU 0) runs [`uart_input`], so the
//! escape-sequence state needs no lock.

use crate::console::hprintln;
use crate::domain;
use core::sync::atomic::{AtomicUsize, Ordering};

const CTRL_A: u8 = 0x01;
static FOCUS: AtomicUsize = AtomicUsize::new(0);
static CTRL_A_SEEN: AtomicUsize = AtomicUsize::new(0);

/// Sets the initial focus.
pub fn set_focus(d: usize) {
    FOCUS.store(d, Ordering::Relaxed);
}

/// Announces where input goes.
pub fn announce() {
    let d = FOCUS.load(Ordering::Relaxed);
    hprintln!("console input goes to domain '{}' (press Ctrl-A three times to switch)", domain::name(d));
}

fn switch() {
    let n = domain::count();
    let cur = FOCUS.load(Ordering::Relaxed);
    for k in 1..=n {
        let next = (cur + k) % n;
        if domain::is_running(next) {
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
        for _ in 0..CTRL_A_SEEN.swap(0, Ordering::Relaxed) {
            domain::console_input(d, CTRL_A);
        }
        domain::console_input(d, b);
    }
}
