//! Synchronisation for EL2, from the `spin` crate: a test-and-test-and-set spin lock
//! (`spin::mutex::SpinMutex`, the same algorithm the hypervisor had by hand: a weak
//! compare-exchange with acquire ordering, then relaxed loads with `spin_loop` until the lock
//! looks free) and a write-once cell (`spin::Once`). Both rely on exclusive loads/stores, so they
//! must only be used once the MMU and caches are on (the entry code guarantees this before any
//! Rust code that takes a lock runs).

/// A spin lock.
pub type SpinLock<T> = spin::mutex::SpinMutex<T>;

/// A cell written once by the boot CPU (`call_once`) and read by all CPUs afterwards.
pub type Once<T> = spin::Once<T>;

/// Takes `lock` if it is free within `spins` attempts (the console, which must never wait for
/// ever on a CPU that crashed holding it).
pub fn try_lock_for<T>(lock: &SpinLock<T>, spins: usize) -> Option<spin::mutex::SpinMutexGuard<'_, T>> {
    for _ in 0..spins {
        if let Some(g) = lock.try_lock_weak() {
            return Some(g);
        }
        core::hint::spin_loop();
    }
    None
}
