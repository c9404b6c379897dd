//! Converting between the architected counter's ticks and [`Duration`]s, without overflow for
//! any counter frequency (the arithmetic is done in 128 bits and saturates).

use core::time::Duration;

/// Ticks of a `freq` Hz counter in `d` (rounded up, so a sleep never ends early).
pub fn ticks(d: Duration, freq: u64) -> u64 {
    let t = (d.as_nanos() * u128::from(freq)).div_ceil(1_000_000_000);
    u64::try_from(t).unwrap_or(u64::MAX)
}

/// The duration of `t` ticks of a `freq` Hz counter (rounded down).
pub fn duration(t: u64, freq: u64) -> Duration {
    if freq == 0 {
        return Duration::ZERO;
    }
    let ns = u128::from(t) * 1_000_000_000 / u128::from(freq);
    Duration::from_nanos(u64::try_from(ns).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversions_round_safely() {
        assert_eq!(ticks(Duration::from_millis(1), 62_500_000), 62_500);
        assert_eq!(ticks(Duration::from_nanos(1), 62_500_000), 1);
        assert_eq!(ticks(Duration::MAX, 1_000_000_000), u64::MAX);
        assert_eq!(duration(62_500_000, 62_500_000), Duration::from_secs(1));
        assert_eq!(duration(u64::MAX, 1), Duration::from_nanos(u64::MAX));
        assert_eq!(duration(5, 0), Duration::ZERO);
    }
}

#[cfg(target_os = "none")]
pub use clock::*;

#[cfg(target_os = "none")]
mod clock {
    use crate::arch;
    use core::time::Duration;

    /// A point in time: a value of the virtual counter.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
    pub struct Instant(pub u64);

    impl Instant {
        /// Counter ticks since the counter started (near boot of this domain).
        pub fn ticks(self) -> u64 {
            self.0
        }
        /// Time since the counter started.
        pub fn since_start(self) -> Duration {
            super::duration(self.0, frequency())
        }
        /// Time from `earlier` to this instant (zero if `earlier` is later).
        pub fn duration_since(self, earlier: Instant) -> Duration {
            super::duration(self.0.saturating_sub(earlier.0), frequency())
        }
        /// Time since this instant.
        pub fn elapsed(self) -> Duration {
            now().duration_since(self)
        }
        /// This instant plus `d`.
        pub fn after(self, d: Duration) -> Instant {
            Instant(self.0.saturating_add(super::ticks(d, frequency())))
        }
    }

    /// Now.
    pub fn now() -> Instant {
        Instant(arch::counter())
    }

    /// The counter's frequency in Hz.
    pub fn frequency() -> u64 {
        arch::counter_freq()
    }

    /// Arms the virtual timer so that a waiter wakes at counter value `deadline`.
    pub(crate) fn arm_deadline(deadline: u64) {
        arch::timer_arm(deadline);
    }

    /// The timer interrupt: the deadline has passed; waiters re-check their condition.
    pub(crate) fn on_timer_irq() {
        arch::timer_off();
    }

    /// Sleeps until `t` (in WFI: the virtual timer's interrupt wakes us).
    pub fn sleep_until(t: Instant) {
        arm_deadline(t.0);
        arch::wait_until(|| arch::counter() >= t.0);
        arch::timer_off();
    }

    /// Sleeps for `d`.
    pub fn sleep(d: Duration) {
        sleep_until(now().after(d));
    }
}
