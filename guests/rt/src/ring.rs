//! Byte rings shared with another domain or the hypervisor, as `io/console.h` and
//! `io/xs_wire.h` define them: a data area whose size is a power of two and two free-running
//! 32-bit indices, `cons` (advanced by the reader) and `prod` (advanced by the writer).
//!
//! The other end is not trusted: indices that claim more data than the ring holds make every
//! operation return [`RingError::Corrupt`] instead of reading or writing out of place. Only
//! the data area is ever indexed, always modulo its size.
//!
//! Ordering: a writer reads `cons` (acquire), fills the bytes, then publishes `prod` (release);
//! a reader reads `prod` (acquire), copies the bytes, then publishes `cons` (release). Those are
//! the barriers Xen's ring macros place.

use core::sync::atomic::{AtomicU32, AtomicU8, Ordering};

/// The other end broke the ring's invariant (`prod - cons > size`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RingError {
    /// Indices out of range.
    Corrupt,
}

/// Bytes waiting to be read between `cons` and `prod` in a ring of `size` bytes.
pub fn used(cons: u32, prod: u32, size: u32) -> Result<u32, RingError> {
    let n = prod.wrapping_sub(cons);
    if n > size {
        Err(RingError::Corrupt)
    } else {
        Ok(n)
    }
}

/// Bytes that may be written.
pub fn free(cons: u32, prod: u32, size: u32) -> Result<u32, RingError> {
    used(cons, prod, size).map(|n| size - n)
}

/// The data-area offset of free-running index `idx` and how many of `n` bytes fit before the
/// end of the area (the rest wraps to offset 0).
pub fn span(idx: u32, n: u32, size: u32) -> (usize, usize) {
    let off = idx & (size - 1);
    (off as usize, n.min(size - off) as usize)
}

/// One direction of a shared byte ring.
pub struct ByteRing<'a> {
    data: &'a [AtomicU8],
    cons: &'a AtomicU32,
    prod: &'a AtomicU32,
}

impl<'a> ByteRing<'a> {
    /// A ring over `data` (its length a power of two) with its two indices.
    pub fn new(data: &'a [AtomicU8], cons: &'a AtomicU32, prod: &'a AtomicU32) -> Self {
        assert!(data.len().is_power_of_two() && data.len() <= 1 << 30, "ring size");
        Self { data, cons, prod }
    }

    fn size(&self) -> u32 {
        self.data.len() as u32
    }

    /// Writer side: copies as much of `bytes` as fits; returns how many were written.
    pub fn write(&self, bytes: &[u8]) -> Result<usize, RingError> {
        let cons = self.cons.load(Ordering::Acquire);
        let prod = self.prod.load(Ordering::Relaxed);
        let room = free(cons, prod, self.size())? as usize;
        let n = bytes.len().min(room);
        for (i, b) in bytes[..n].iter().enumerate() {
            let (off, _) = span(prod.wrapping_add(i as u32), 1, self.size());
            self.data[off].store(*b, Ordering::Relaxed);
        }
        self.prod.store(prod.wrapping_add(n as u32), Ordering::Release);
        Ok(n)
    }

    /// Reader side: copies up to `out.len()` waiting bytes; returns how many were read.
    pub fn read(&self, out: &mut [u8]) -> Result<usize, RingError> {
        let prod = self.prod.load(Ordering::Acquire);
        let cons = self.cons.load(Ordering::Relaxed);
        let n = (used(cons, prod, self.size())? as usize).min(out.len());
        for (i, o) in out[..n].iter_mut().enumerate() {
            let (off, _) = span(cons.wrapping_add(i as u32), 1, self.size());
            *o = self.data[off].load(Ordering::Relaxed);
        }
        self.cons.store(cons.wrapping_add(n as u32), Ordering::Release);
        Ok(n)
    }

    /// Bytes waiting for the reader.
    pub fn pending(&self) -> Result<u32, RingError> {
        used(self.cons.load(Ordering::Acquire), self.prod.load(Ordering::Acquire), self.size())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring(size: usize) -> (Vec<AtomicU8>, AtomicU32, AtomicU32) {
        ((0..size).map(|_| AtomicU8::new(0)).collect(), AtomicU32::new(0), AtomicU32::new(0))
    }

    #[test]
    fn arithmetic_across_the_index_wrap() {
        assert_eq!(used(u32::MAX - 2, 3, 16), Ok(6));
        assert_eq!(free(u32::MAX - 2, 3, 16), Ok(10));
        assert_eq!(used(5, 4, 16), Err(RingError::Corrupt));
        assert_eq!(used(0, 17, 16), Err(RingError::Corrupt));
        assert_eq!(span(14, 5, 16), (14, 2));
        assert_eq!(span(u32::MAX, 1, 16), (15, 1));
    }

    #[test]
    fn write_then_read_wraps_the_data_area() {
        let (d, c, p) = ring(8);
        c.store(u32::MAX - 3, Ordering::Relaxed);
        p.store(u32::MAX - 3, Ordering::Relaxed);
        let r = ByteRing::new(&d, &c, &p);
        assert_eq!(r.write(b"abcdefghij"), Ok(8));
        assert_eq!(r.write(b"x"), Ok(0));
        assert_eq!(r.pending(), Ok(8));
        let mut out = [0u8; 5];
        assert_eq!(r.read(&mut out), Ok(5));
        assert_eq!(&out, b"abcde");
        assert_eq!(r.write(b"klm"), Ok(3));
        let mut out = [0u8; 16];
        assert_eq!(r.read(&mut out), Ok(6));
        assert_eq!(&out[..6], b"fghklm");
        assert_eq!(p.load(Ordering::Relaxed), 7);
    }

    #[test]
    fn corrupt_indices_are_refused_without_touching_data() {
        let (d, c, p) = ring(8);
        p.store(100, Ordering::Relaxed);
        let r = ByteRing::new(&d, &c, &p);
        assert_eq!(r.read(&mut [0u8; 4]), Err(RingError::Corrupt));
        assert_eq!(r.write(b"a"), Err(RingError::Corrupt));
        assert_eq!(c.load(Ordering::Relaxed), 0);
    }
}
