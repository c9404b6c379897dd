//! The trace channel (cargo feature `trace`, off by default): traps, hypercalls with their
//! arguments and results, interrupt injections and domain state changes as `defmt` frames.
//!
//! Each CPU encodes its frames straight into its own ring, holding that ring's lock from defmt's
//! `acquire` to its `release` (only a CPU draining the rings ever waits for it). A frame that
//! does not fit is taken back whole and counted as dropped, so the ring only ever holds whole
//! frames, and frames of different CPUs follow one another whole in the stream (defmt's raw
//! encoding: the decoder needs no framing, only whole frames). When a ring holds 512 bytes, when
//! a CPU goes idle and at power-off, the rings are drained to the trace
//! UART: the device tree's `serial1` PL011, which the hypervisor then keeps from every domain.
//! `cargo xtask trace FILE` decodes what it wrote with defmt's decoder and this build's ELF.
//!
//! Without the feature the `ev!` macro expands to nothing: release builds carry no trace code.

#[cfg(feature = "trace")]
pub use on::*;

/// Logs one trace event (a `defmt` call at the given level) when the `trace` feature is on;
/// nothing otherwise.
#[macro_export]
macro_rules! ev {
    ($level:ident, $($t:tt)*) => {
        #[cfg(feature = "trace")]
        defmt::$level!($($t)*);
    };
}

#[cfg(feature = "trace")]
mod on {
    use crate::boot::MAX_CPUS;
    use crate::sync::{Once, SpinLock};
    use crate::uart::Uart;
    use aarch64_cpu::registers::{Readable, CNTFRQ_EL0};
    use core::cell::UnsafeCell;
    use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

    /// Bytes per CPU ring (a power of two).
    const RING: usize = 16 * 1024;
    /// A CPU that leaves this many bytes in its ring drains them all (about 15 frames: what
    /// a board stopped from outside loses at most, per CPU).
    const DRAIN_AT: usize = 512;

    /// A CPU's ring of whole frames: `head` and `tail` count bytes ever written and drained,
    /// so `head - tail` is what waits; `start` is where the open frame began.
    struct Ring {
        enc: defmt::Encoder,
        bytes: [u8; RING],
        head: usize,
        tail: usize,
        start: usize,
        overflow: bool,
    }

    impl Ring {
        /// Appends encoded bytes to the open frame, or marks it to be taken back.
        fn put(&mut self, b: &[u8]) {
            if self.overflow || RING - (self.head - self.tail) < b.len() {
                self.overflow = true;
                return;
            }
            let at = self.head % RING;
            match self.bytes.get_mut(at..at + b.len()) {
                // defmt writes the fixed-size integers one at a time: copies of a known size
                // are a load and a store, where a call to `memcpy` costs some twenty.
                Some(dst) => match b.len() {
                    1 => dst[0] = b[0],
                    2 => dst.copy_from_slice(&b[..2]),
                    4 => dst.copy_from_slice(&b[..4]),
                    8 => dst.copy_from_slice(&b[..8]),
                    _ => dst.copy_from_slice(b),
                },
                None => {
                    let first = RING - at;
                    self.bytes[at..].copy_from_slice(&b[..first]);
                    self.bytes[..b.len() - first].copy_from_slice(&b[first..]);
                }
            }
            self.head += b.len();
        }
    }

    /// One CPU's ring and its lock. `busy` is set by the owning CPU between `acquire` and
    /// `release`; a nested acquire (an EL2 exception while a frame is open) is counted in
    /// `nested` and its frame dropped, without touching the ring.
    struct PerCpu {
        lock: AtomicBool,
        busy: AtomicBool,
        nested: AtomicU32,
        ring: UnsafeCell<Ring>,
    }

    // SAFETY: `ring` is only touched by whoever holds `lock` (the owning CPU for one frame, or
    // a CPU draining it).
    unsafe impl Sync for PerCpu {}

    impl PerCpu {
        fn lock(&self) {
            while !self.try_lock() {
                core::hint::spin_loop();
            }
        }
        fn try_lock(&self) -> bool {
            self.lock.compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed).is_ok()
        }
        /// Takes the lock within `spins` attempts (a drain at power-off must not wait for ever
        /// on a CPU that stopped in the middle of a frame, possibly its own).
        fn lock_within(&self, spins: u32) -> bool {
            (0..spins).any(|_| {
                core::hint::spin_loop();
                self.try_lock()
            })
        }
        fn unlock(&self) {
            self.lock.store(false, Ordering::Release);
        }
    }

    static CPUS: [PerCpu; MAX_CPUS] = [const {
        PerCpu {
            lock: AtomicBool::new(false),
            busy: AtomicBool::new(false),
            nested: AtomicU32::new(0),
            ring: UnsafeCell::new(Ring {
                enc: defmt::Encoder::new(),
                bytes: [0; RING],
                head: 0,
                tail: 0,
                start: 0,
                overflow: false,
            }),
        }
    }; MAX_CPUS];

    /// Frames dropped because their ring was full (or nested in another frame).
    static DROPPED: AtomicU64 = AtomicU64::new(0);
    /// Frames written.
    static FRAMES: AtomicU64 = AtomicU64::new(0);
    /// The trace UART, once found.
    static OUT: Once<Uart> = Once::new();
    /// Held by the CPU draining the rings.
    static DRAIN: SpinLock<()> = SpinLock::new(());
    /// Microseconds per counter tick as a 32.32 fixed-point factor (set by `init`; 0 before, so
    /// early frames read 0 µs): the timestamp costs a multiplication, not a division.
    static US_PER_TICK: AtomicU64 = AtomicU64::new(0);

    /// Starts draining to the PL011 at `base` (identity-mapped device memory, kept from the
    /// domains by the caller).
    pub fn init(base: u64) {
        let freq = CNTFRQ_EL0.get().max(1);
        US_PER_TICK.store((1_000_000u64 << 32) / freq, Ordering::Relaxed);
        OUT.call_once(|| Uart::new(base, platforms::UartKind::Pl011));
    }

    /// The trace UART's base, once found.
    pub fn uart_base() -> Option<u64> {
        OUT.get().map(|u| u.base())
    }

    /// Frames written and dropped so far.
    pub fn counts() -> (u64, u64) {
        (FRAMES.load(Ordering::Relaxed), DROPPED.load(Ordering::Relaxed))
    }

    /// Writes every ring's waiting frames to the trace UART (if another CPU is already at it,
    /// leaves it to that CPU unless `wait`).
    pub fn drain(wait: bool) {
        let Some(out) = OUT.get() else { return };
        let _g = match if wait { crate::sync::try_lock_for(&DRAIN, 1 << 24) } else { DRAIN.try_lock() } {
            Some(g) => g,
            None => return,
        };
        for c in &CPUS {
            if !c.lock_within(1 << 20) {
                continue;
            }
            // SAFETY: `lock` is held; the owner never holds it outside one frame.
            let r = unsafe { &mut *c.ring.get() };
            // What waits, in at most two pieces (it may wrap at the ring's end); never the
            // open frame's bytes (the lock means there is none).
            while r.tail != r.head {
                let at = r.tail % RING;
                let n = (r.head - r.tail).min(RING - at);
                out.write_bytes(&r.bytes[at..at + n]);
                r.tail += n;
            }
            c.unlock();
        }
    }

    fn cpu() -> &'static PerCpu {
        &CPUS[crate::arch::cpu_index() % MAX_CPUS]
    }

    #[defmt::global_logger]
    struct Logger;

    // SAFETY: `acquire` gives this CPU's ring to one frame at a time under its lock (nested
    // frames are dropped, never interleaved), and `release` keeps the frame only when it is
    // whole.
    unsafe impl defmt::Logger for Logger {
        fn acquire() {
            let c = cpu();
            if c.busy.swap(true, Ordering::Acquire) {
                c.nested.fetch_add(1, Ordering::Relaxed);
                return;
            }
            c.lock();
            // SAFETY: this CPU holds the ring's lock.
            let r = unsafe { &mut *c.ring.get() };
            r.start = r.head;
            r.overflow = false;
            // The encoder is taken out while it writes into the ring (for defmt's raw
            // encoding it is empty, so this costs nothing).
            let mut enc = core::mem::replace(&mut r.enc, defmt::Encoder::new());
            enc.start_frame(|b| r.put(b));
            r.enc = enc;
        }

        unsafe fn flush() {}

        unsafe fn release() {
            let c = cpu();
            if c.nested.load(Ordering::Relaxed) > 0 {
                c.nested.fetch_sub(1, Ordering::Relaxed);
                DROPPED.fetch_add(1, Ordering::Relaxed);
                return;
            }
            // SAFETY: the outermost frame of this CPU holds the ring's lock.
            let r = unsafe { &mut *c.ring.get() };
            let mut enc = core::mem::replace(&mut r.enc, defmt::Encoder::new());
            enc.end_frame(|b| r.put(b));
            r.enc = enc;
            if r.overflow {
                r.head = r.start;
                DROPPED.fetch_add(1, Ordering::Relaxed);
            } else {
                FRAMES.fetch_add(1, Ordering::Relaxed);
            }
            let full = r.head - r.tail >= DRAIN_AT;
            c.unlock();
            c.busy.store(false, Ordering::Release);
            if full {
                drain(false);
            }
        }

        unsafe fn write(bytes: &[u8]) {
            let c = cpu();
            if c.nested.load(Ordering::Relaxed) > 0 {
                return;
            }
            // SAFETY: the outermost frame of this CPU holds the ring's lock.
            let r = unsafe { &mut *c.ring.get() };
            let mut enc = core::mem::replace(&mut r.enc, defmt::Encoder::new());
            enc.write(bytes, |b| r.put(b));
            r.enc = enc;
        }
    }

    defmt::timestamp!("{=u64:us}", {
        let f = US_PER_TICK.load(Ordering::Relaxed);
        ((u128::from(crate::arch::counter()) * u128::from(f)) >> 32) as u64
    });
}
