//! Run-time lifecycle bookkeeping of a domain that the hypervisor keeps per domain: its
//! watchdogs (Xen's `SCHEDOP_watchdog`) and its restart-limit window (`restart_limit` within
//! `restart_window`). Pure logic on counter values, host-tested; the hypervisor holds one of
//! each per domain under a lock and arms its EL2 timer from [`Watchdogs::earliest`].
//!
//! Invariants: a watchdog id handed out is in `1..=MAX_WATCHDOGS` and names a slot in use until
//! it is stopped; [`Watchdogs::earliest`] is the smallest deadline of the slots in use.

use xen_abi::errno;

/// Watchdogs per domain (Xen has 2; more get `-ENOSPC`).
pub const MAX_WATCHDOGS: usize = 4;

/// A domain's watchdogs: (deadline in counter ticks, timeout in seconds; 0 = free).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Watchdogs {
    slots: [(u64, u32); MAX_WATCHDOGS],
}

impl Watchdogs {
    /// None in use.
    pub const fn new() -> Self {
        Self { slots: [(0, 0); MAX_WATCHDOGS] }
    }

    /// `SCHEDOP_watchdog(id, timeout)` at counter `now` (`freq` ticks per second): `id` 0 with
    /// a timeout allocates one and answers its id; a known `id` with a timeout kicks it; a
    /// known `id` with timeout 0 stops it. As Xen: `-ENOSPC` when all are in use, `-EINVAL`
    /// for an unknown id or an allocation without a timeout.
    pub fn op(&mut self, id: u32, timeout: u32, now: u64, freq: u64) -> i64 {
        let deadline = now.saturating_add(u64::from(timeout).saturating_mul(freq));
        if id == 0 {
            if timeout == 0 {
                return -errno::EINVAL;
            }
            return match self.slots.iter().position(|w| w.1 == 0) {
                None => -errno::ENOSPC,
                Some(i) => {
                    self.slots[i] = (deadline, timeout);
                    i as i64 + 1
                }
            };
        }
        let Some(w) = usize::try_from(id - 1).ok().and_then(|i| self.slots.get_mut(i)).filter(|w| w.1 != 0) else {
            return -errno::EINVAL;
        };
        *w = if timeout == 0 { (0, 0) } else { (deadline, timeout) };
        0
    }

    /// The earliest deadline of the watchdogs in use (`None`: none).
    pub fn earliest(&self) -> Option<u64> {
        self.slots.iter().filter(|w| w.1 != 0).map(|w| w.0).min()
    }
}

/// A domain's restart-limit window: a fixed window that opens at the first restart after the
/// previous one closed, and the restarts in it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RestartWindow {
    start: u64,
    count: u32,
}

impl RestartWindow {
    /// None yet.
    pub const fn new() -> Self {
        Self { start: 0, count: 0 }
    }

    /// Counts one more restart at counter `now` in a window of `window` ticks and says whether
    /// `limit` allows it (the `limit + 1`-th within the window is refused).
    pub fn allow(&mut self, now: u64, window: u64, limit: u32) -> bool {
        if self.count == 0 || now.wrapping_sub(self.start) > window {
            *self = Self { start: now, count: 0 };
        }
        self.count = self.count.saturating_add(1);
        self.count <= limit
    }

    /// Restarts counted in the current window.
    pub fn count(&self) -> u32 {
        self.count
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watchdogs_allocate_kick_stop() {
        let mut w = Watchdogs::new();
        assert_eq!(w.earliest(), None);
        assert_eq!(w.op(0, 3, 100, 10), 1);
        assert_eq!(w.earliest(), Some(130));
        assert_eq!(w.op(0, 1, 100, 10), 2);
        assert_eq!(w.earliest(), Some(110));
        assert_eq!(w.op(2, 5, 120, 10), 0); // kicked
        assert_eq!(w.earliest(), Some(130));
        assert_eq!(w.op(1, 0, 120, 10), 0); // stopped
        assert_eq!(w.earliest(), Some(170));
        assert_eq!(w.op(1, 3, 0, 10), -errno::EINVAL); // no longer known
        assert_eq!(w.op(0, 0, 0, 10), -errno::EINVAL);
        for id in [5, 99, u32::MAX] {
            assert_eq!(w.op(id, 1, 0, 10), -errno::EINVAL);
        }
        for _ in 1..MAX_WATCHDOGS {
            assert!(w.op(0, 1, 0, 10) > 0);
        }
        assert_eq!(w.op(0, 1, 0, 10), -errno::ENOSPC);
        assert_eq!(w.op(0, u32::MAX, u64::MAX, u64::MAX), -errno::ENOSPC);
        let mut big = Watchdogs::new();
        assert_eq!(big.op(0, u32::MAX, u64::MAX - 1, u64::MAX), 1);
        assert_eq!(big.earliest(), Some(u64::MAX)); // saturates, never wraps into the past
    }

    #[test]
    fn restart_window_counts_within_its_window() {
        let mut r = RestartWindow::new();
        assert!(r.allow(1000, 100, 2));
        assert!(r.allow(1050, 100, 2));
        assert!(!r.allow(1090, 100, 2)); // the third within 100 ticks
        assert!(!r.allow(1100, 100, 2));
        assert_eq!(r.count(), 4);
        assert!(r.allow(1101, 100, 2)); // the window closed: a new one opens
        assert_eq!(r.count(), 1);
    }
}
