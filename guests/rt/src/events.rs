//! Event-channel dispatch, 2-level ABI (`xen/include/public/xen.h`): which ports an upcall
//! delivers, and per-port "fired" flags that waiting code consumes.
//!
//! The upcall clears `evtchn_upcall_pending`, swaps the pending selector to zero, and for each
//! selected word takes the bits that are pending and not masked, clearing exactly those
//! pending bits (masked ones stay pending, as Xen expects: unmasking re-delivers them). Each
//! taken port is recorded in [`Fired`]; nothing else runs in interrupt context.

use core::sync::atomic::{AtomicU64, AtomicU8, Ordering};

/// Number of ports of the 2-level ABI on a 64-bit guest.
pub const NR_PORTS: u32 = 4096;

/// The event-channel words of `shared_info` and of vCPU 0's `vcpu_info`.
pub struct SharedView<'a> {
    /// `vcpu_info.evtchn_upcall_pending`.
    pub upcall_pending: &'a AtomicU8,
    /// `vcpu_info.evtchn_pending_sel`.
    pub pending_sel: &'a AtomicU64,
    /// `shared_info.evtchn_pending`.
    pub pending: &'a [AtomicU64; 64],
    /// `shared_info.evtchn_mask`.
    pub mask: &'a [AtomicU64; 64],
}

/// Handles one upcall: calls `f` for every port it takes. Returns how many.
pub fn drain(v: &SharedView<'_>, mut f: impl FnMut(u32)) -> u32 {
    v.upcall_pending.store(0, Ordering::Release);
    let mut n = 0;
    let mut sel = v.pending_sel.swap(0, Ordering::AcqRel);
    while sel != 0 {
        let w = sel.trailing_zeros() as usize;
        sel &= sel - 1;
        let mask = v.mask[w].load(Ordering::Acquire);
        let mut bits = v.pending[w].fetch_and(mask, Ordering::AcqRel) & !mask;
        while bits != 0 {
            let b = bits.trailing_zeros();
            bits &= bits - 1;
            f(w as u32 * 64 + b);
            n += 1;
        }
    }
    n
}

/// Ports that have fired and not yet been consumed.
pub struct Fired {
    bits: [AtomicU64; 64],
}

impl Default for Fired {
    fn default() -> Self {
        Self::new()
    }
}

impl Fired {
    /// No port fired.
    pub const fn new() -> Self {
        Self { bits: [const { AtomicU64::new(0) }; 64] }
    }

    /// Records that `port` fired (ports out of range are ignored).
    pub fn set(&self, port: u32) {
        if port < NR_PORTS {
            self.bits[port as usize / 64].fetch_or(1 << (port % 64), Ordering::AcqRel);
        }
    }

    /// Forgets every fired port (after a resume: the ports are new).
    pub fn clear(&self) {
        for b in &self.bits {
            b.store(0, Ordering::Release);
        }
    }

    /// Whether `port` fired since the last call, clearing the flag.
    pub fn take(&self, port: u32) -> bool {
        port < NR_PORTS
            && self.bits[port as usize / 64].fetch_and(!(1 << (port % 64)), Ordering::AcqRel) & (1 << (port % 64)) != 0
    }

    /// Whether `port` fired, without clearing.
    pub fn peek(&self, port: u32) -> bool {
        port < NR_PORTS && self.bits[port as usize / 64].load(Ordering::Acquire) & (1 << (port % 64)) != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Si {
        up: AtomicU8,
        sel: AtomicU64,
        pending: [AtomicU64; 64],
        mask: [AtomicU64; 64],
    }

    fn si() -> Si {
        Si {
            up: AtomicU8::new(1),
            sel: AtomicU64::new(0),
            pending: [const { AtomicU64::new(0) }; 64],
            mask: [const { AtomicU64::new(0) }; 64],
        }
    }

    fn raise(s: &Si, port: u32) {
        s.pending[port as usize / 64].fetch_or(1 << (port % 64), Ordering::Relaxed);
        s.sel.fetch_or(1 << (port / 64), Ordering::Relaxed);
    }

    #[test]
    fn upcall_takes_pending_unmasked_ports_in_order() {
        let s = si();
        for p in [3, 70, 64, 4095] {
            raise(&s, p);
        }
        s.mask[1].store(1 << 6, Ordering::Relaxed); // port 70 masked
        let v = SharedView { upcall_pending: &s.up, pending_sel: &s.sel, pending: &s.pending, mask: &s.mask };
        let mut got = Vec::new();
        assert_eq!(drain(&v, |p| got.push(p)), 3);
        assert_eq!(got, vec![3, 64, 4095]);
        assert_eq!(s.up.load(Ordering::Relaxed), 0);
        assert_eq!(s.sel.load(Ordering::Relaxed), 0);
        // The masked port stays pending for a later unmask; the others are cleared.
        assert_eq!(s.pending[1].load(Ordering::Relaxed), 1 << 6);
        assert_eq!(s.pending[0].load(Ordering::Relaxed), 0);
        assert_eq!(drain(&v, |_| panic!("nothing selected")), 0);
    }

    #[test]
    fn fired_flags_are_consumed_once() {
        let f = Fired::new();
        f.set(5);
        f.set(5000); // out of range: ignored
        assert!(f.peek(5));
        assert!(f.take(5));
        assert!(!f.take(5));
        assert!(!f.take(5000));
    }
}
