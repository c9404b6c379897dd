//! Minimal synchronisation for EL2: a spin lock and a write-once cell. Both rely on exclusive
//! loads/stores, so they must only be used once the MMU and caches are on (the entry code
//! guarantees this before any Rust code that takes a lock runs).

use core::cell::UnsafeCell;
use core::ops::{Deref, DerefMut};
use core::sync::atomic::{AtomicBool, AtomicU8, Ordering};

/// A test-and-test-and-set spin lock.
pub struct SpinLock<T> {
    locked: AtomicBool,
    value: UnsafeCell<T>,
}

// SAFETY: access to `value` is serialised by `locked`.
unsafe impl<T: Send> Sync for SpinLock<T> {}

/// Guard of a held [`SpinLock`].
pub struct Guard<'a, T> {
    lock: &'a SpinLock<T>,
}

impl<T> SpinLock<T> {
    /// A new unlocked lock.
    pub const fn new(v: T) -> Self {
        Self { locked: AtomicBool::new(false), value: UnsafeCell::new(v) }
    }

    /// Takes the lock, spinning.
    pub fn lock(&self) -> Guard<'_, T> {
        loop {
            if self.locked.compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed).is_ok() {
                return Guard { lock: self };
            }
            while self.locked.load(Ordering::Relaxed) {
                core::hint::spin_loop();
            }
        }
    }

    /// Takes the lock if it is free within `spins` attempts.
    pub fn try_lock_for(&self, spins: usize) -> Option<Guard<'_, T>> {
        for _ in 0..spins {
            if self.locked.compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed).is_ok() {
                return Some(Guard { lock: self });
            }
            core::hint::spin_loop();
        }
        None
    }
}

impl<T> Deref for Guard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the guard proves exclusive access.
        unsafe { &*self.lock.value.get() }
    }
}

impl<T> DerefMut for Guard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: the guard proves exclusive access.
        unsafe { &mut *self.lock.value.get() }
    }
}

impl<T> Drop for Guard<'_, T> {
    fn drop(&mut self) {
        self.lock.locked.store(false, Ordering::Release);
    }
}

/// A cell written once by the boot CPU and read by all CPUs afterwards.
pub struct Once<T> {
    state: AtomicU8,
    value: UnsafeCell<Option<T>>,
}

// SAFETY: the value is written once before `state` is released and only read afterwards.
unsafe impl<T: Send + Sync> Sync for Once<T> {}

impl<T> Once<T> {
    /// An empty cell.
    pub const fn new() -> Self {
        Self { state: AtomicU8::new(0), value: UnsafeCell::new(None) }
    }

    /// Stores the value; returns false if it was already set.
    pub fn set(&self, v: T) -> bool {
        if self.state.compare_exchange(0, 1, Ordering::Acquire, Ordering::Relaxed).is_err() {
            return false;
        }
        // SAFETY: state 1 means this caller alone writes; readers wait for state 2.
        unsafe { *self.value.get() = Some(v) };
        self.state.store(2, Ordering::Release);
        true
    }

    /// The value, once set.
    pub fn get(&self) -> Option<&T> {
        if self.state.load(Ordering::Acquire) == 2 {
            // SAFETY: state 2 is only published after the write completed; never written again.
            unsafe { (*self.value.get()).as_ref() }
        } else {
            None
        }
    }
}
