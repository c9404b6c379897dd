//! The hypervisor heap: power-of-two size classes from 16 B to 8 KiB with intrusive free
//! lists, carved from one static arena by a bump pointer; larger blocks (boot-time device
//! trees) come straight from the bump pointer and are never returned.
//!
//! Runtime users are the xenstore tree and its connections, whose size per domain is bounded
//! by the xenstore quotas, so the arena cannot be exhausted by a guest beyond its quota.
//! Invariant: a freed block is only ever reused for its own size class.

use crate::sync::SpinLock;
use core::alloc::{GlobalAlloc, Layout};
use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicUsize, Ordering};

const HEAP_SIZE: usize = 6 << 20;
const MIN_SHIFT: u32 = 4;
const CLASSES: usize = 10; // 16 B .. 8 KiB

#[repr(C, align(4096))]
struct Arena(UnsafeCell<[u8; HEAP_SIZE]>);

// SAFETY: disjoint ranges are handed out by an atomic bump pointer and the locked free lists.
unsafe impl Sync for Arena {}

static ARENA: Arena = Arena(UnsafeCell::new([0; HEAP_SIZE]));

struct Heap {
    next: AtomicUsize,
    /// Head of each class's free list (0: empty); each free block stores the next address.
    free: SpinLock<[usize; CLASSES]>,
}

fn class_of(l: &Layout) -> Option<usize> {
    let size = l.size().max(l.align()).max(1 << MIN_SHIFT);
    let shift = usize::BITS - (size - 1).leading_zeros();
    let c = (shift - MIN_SHIFT) as usize;
    (c < CLASSES).then_some(c)
}

impl Heap {
    fn bump(&self, size: usize, align: usize) -> *mut u8 {
        let base = ARENA.0.get() as usize;
        let mut cur = self.next.load(Ordering::Relaxed);
        loop {
            let start = (base + cur).next_multiple_of(align) - base;
            let end = start + size;
            if end > HEAP_SIZE {
                return core::ptr::null_mut();
            }
            match self.next.compare_exchange_weak(cur, end, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return (base + start) as *mut u8,
                Err(v) => cur = v,
            }
        }
    }
}

/// Bytes of the arena handed out so far (blocks on free lists included).
pub fn used() -> usize {
    HEAP.next.load(Ordering::Relaxed)
}

// SAFETY: every block is a distinct, suitably aligned range of ARENA: either fresh from the
// bump pointer or taken off a free list it was put on by `dealloc` for the same class.
unsafe impl GlobalAlloc for Heap {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let Some(c) = class_of(&layout) else { return self.bump(layout.size(), layout.align().max(16)) };
        {
            let mut free = self.free.lock();
            let head = free[c];
            if head != 0 {
                // SAFETY: `head` is a free block of this class; its first word holds the next.
                free[c] = unsafe { *(head as *const usize) };
                return head as *mut u8;
            }
        }
        let size = 1usize << (c as u32 + MIN_SHIFT);
        self.bump(size, size.min(4096))
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        let Some(c) = class_of(&layout) else { return };
        let mut free = self.free.lock();
        // SAFETY: the caller returns a block of this class it no longer uses; it is at least
        // 16 bytes and 16-byte aligned, so its first word can link the list.
        unsafe { *ptr.cast::<usize>() = free[c] };
        free[c] = ptr as usize;
    }
}

#[global_allocator]
static HEAP: Heap = Heap { next: AtomicUsize::new(0), free: SpinLock::new([0; CLASSES]) };
