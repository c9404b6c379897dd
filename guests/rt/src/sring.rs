//! The front end of a Xen shared ring (`io/ring.h`, docs/xen-abi.md §8.1) over one page seen
//! as 1024 atomic words: request production with the notify-if-needed rule, response
//! consumption with the final check, and the checks a frontend needs against a backend that
//! writes nonsense.
//!
//! Layout: word 0 `req_prod`, 1 `req_event`, 2 `rsp_prod`, 3 `rsp_event`, entries from byte 64,
//! `size` = largest power of two ≤ (4096 − 64) / entry size. Indices are free-running u32.
//!
//! Invariants: the frontend writes only request slots it owns (`rsp_cons ≤ i < rsp_cons +
//! size`) and publishes them with one release store; it never reads a response slot the
//! backend has not published, and treats `rsp_prod` beyond what it requested as a broken ring.

use core::sync::atomic::{fence, AtomicU32, Ordering};

const REQ_PROD: usize = 0;
const REQ_EVENT: usize = 1;
const RSP_PROD: usize = 2;
const RSP_EVENT: usize = 3;
const HEADER: usize = 64;

/// The backend published more responses than there were requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BrokenRing;

/// One ring entry, accessed by byte offset (little endian).
#[derive(Clone, Copy)]
pub struct Entry<'a> {
    words: &'a [AtomicU32],
}

impl Entry<'_> {
    fn word(&self, off: usize) -> (&AtomicU32, u32) {
        (&self.words[off / 4], (off % 4) as u32 * 8)
    }
    /// The u32 at byte `off` (4-aligned).
    pub fn u32(&self, off: usize) -> u32 {
        self.words[off / 4].load(Ordering::Relaxed)
    }
    /// The u16 at byte `off` (2-aligned).
    pub fn u16(&self, off: usize) -> u16 {
        let (w, sh) = self.word(off);
        (w.load(Ordering::Relaxed) >> sh) as u16
    }
    /// The u8 at byte `off`.
    pub fn u8(&self, off: usize) -> u8 {
        let (w, sh) = self.word(off);
        (w.load(Ordering::Relaxed) >> sh) as u8
    }
    /// The u64 at byte `off` (4-aligned halves, low first).
    pub fn u64(&self, off: usize) -> u64 {
        u64::from(self.u32(off)) | (u64::from(self.u32(off + 4)) << 32)
    }
    /// Sets the u32 at byte `off`.
    pub fn set_u32(&self, off: usize, v: u32) {
        self.words[off / 4].store(v, Ordering::Relaxed);
    }
    /// Sets the u16 at byte `off`.
    pub fn set_u16(&self, off: usize, v: u16) {
        let (w, sh) = self.word(off);
        let old = w.load(Ordering::Relaxed);
        w.store((old & !(0xffff << sh)) | (u32::from(v) << sh), Ordering::Relaxed);
    }
    /// Sets the u8 at byte `off`.
    pub fn set_u8(&self, off: usize, v: u8) {
        let (w, sh) = self.word(off);
        let old = w.load(Ordering::Relaxed);
        w.store((old & !(0xff << sh)) | (u32::from(v) << sh), Ordering::Relaxed);
    }
    /// Sets the u64 at byte `off`.
    pub fn set_u64(&self, off: usize, v: u64) {
        self.set_u32(off, v as u32);
        self.set_u32(off + 4, (v >> 32) as u32);
    }
}

/// The frontend's view of one shared ring.
pub struct FrontRing<'a> {
    words: &'a [AtomicU32],
    entry: usize,
    size: u32,
    /// Next request index to fill (not yet published beyond `req_prod`).
    pub req_prod_pvt: u32,
    /// Next response index to consume.
    pub rsp_cons: u32,
}

impl<'a> FrontRing<'a> {
    /// Initialises the ring in `words` (a 4 KiB page) for entries of `entry` bytes.
    pub fn init(words: &'a [AtomicU32], entry: usize) -> Self {
        assert!(words.len() == 1024 && entry.is_multiple_of(4) && entry > 0);
        for w in words {
            w.store(0, Ordering::Relaxed);
        }
        words[REQ_EVENT].store(1, Ordering::Relaxed);
        words[RSP_EVENT].store(1, Ordering::Relaxed);
        fence(Ordering::Release);
        let fit = ((4096 - HEADER) / entry) as u32;
        let size = 1 << (31 - fit.leading_zeros());
        Self { words, entry, size, req_prod_pvt: 0, rsp_cons: 0 }
    }

    /// Number of entries.
    pub fn size(&self) -> u32 {
        self.size
    }

    /// Slot `idx` (masked).
    pub fn slot(&self, idx: u32) -> Entry<'a> {
        let i = (idx & (self.size - 1)) as usize;
        let w = (HEADER + i * self.entry) / 4;
        Entry { words: &self.words[w..w + self.entry / 4] }
    }

    /// Request slots that may be filled now.
    pub fn free_requests(&self) -> u32 {
        self.size - self.req_prod_pvt.wrapping_sub(self.rsp_cons)
    }

    /// The next free request slot (advances `req_prod_pvt`), if any.
    pub fn next_request(&mut self) -> Option<Entry<'a>> {
        if self.free_requests() == 0 {
            return None;
        }
        let e = self.slot(self.req_prod_pvt);
        self.req_prod_pvt = self.req_prod_pvt.wrapping_add(1);
        Some(e)
    }

    /// Publishes the filled requests; returns whether the backend asked to be notified.
    pub fn push_requests(&mut self) -> bool {
        let old = self.words[REQ_PROD].load(Ordering::Relaxed);
        let new = self.req_prod_pvt;
        self.words[REQ_PROD].store(new, Ordering::Release);
        fence(Ordering::SeqCst);
        let ev = self.words[REQ_EVENT].load(Ordering::Relaxed);
        new.wrapping_sub(ev) < new.wrapping_sub(old)
    }

    /// The indices, for a diagnostic: (shared req_prod, req_event, rsp_prod, rsp_event,
    /// req_prod_pvt, rsp_cons).
    pub fn indices(&self) -> [u32; 6] {
        let w = |i: usize| self.words[i].load(Ordering::Acquire);
        [w(REQ_PROD), w(REQ_EVENT), w(RSP_PROD), w(RSP_EVENT), self.req_prod_pvt, self.rsp_cons]
    }

    /// Responses published and not consumed yet.
    pub fn unconsumed(&self) -> Result<u32, BrokenRing> {
        let prod = self.words[RSP_PROD].load(Ordering::Acquire);
        let n = prod.wrapping_sub(self.rsp_cons);
        if n > self.req_prod_pvt.wrapping_sub(self.rsp_cons) {
            return Err(BrokenRing);
        }
        Ok(n)
    }

    /// The next published response (advances `rsp_cons`).
    pub fn next_response(&mut self) -> Result<Option<Entry<'a>>, BrokenRing> {
        if self.unconsumed()? == 0 {
            return Ok(None);
        }
        let e = self.slot(self.rsp_cons);
        self.rsp_cons = self.rsp_cons.wrapping_add(1);
        Ok(Some(e))
    }

    /// Asks for a notification at the next response and re-checks (no response is missed
    /// between the check and the request). Returns whether responses are pending.
    pub fn final_check(&mut self) -> Result<bool, BrokenRing> {
        if self.unconsumed()? > 0 {
            return Ok(true);
        }
        self.words[RSP_EVENT].store(self.rsp_cons.wrapping_add(1), Ordering::Relaxed);
        fence(Ordering::SeqCst);
        Ok(self.unconsumed()? > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    extern crate std;
    use std::vec::Vec;

    fn page() -> Vec<AtomicU32> {
        (0..1024).map(|_| AtomicU32::new(0xdead_beef)).collect()
    }

    #[test]
    fn sizes_match_the_abi() {
        let p = page();
        assert_eq!(FrontRing::init(&p, 112).size(), 32, "blkif");
        assert_eq!(FrontRing::init(&p, 12).size(), 256, "netif tx");
        assert_eq!(FrontRing::init(&p, 8).size(), 256, "netif rx");
        assert_eq!(p[REQ_EVENT].load(Ordering::Relaxed), 1);
        assert_eq!(p[10].load(Ordering::Relaxed), 0, "zeroed");
    }

    #[test]
    fn requests_responses_and_notification_rule() {
        let p = page();
        let mut r = FrontRing::init(&p, 112);
        let e = r.next_request().unwrap();
        e.set_u8(0, 1);
        e.set_u8(1, 3);
        e.set_u16(2, 0xabcd);
        e.set_u64(8, 0x1122_3344_5566_7788);
        assert_eq!((e.u8(0), e.u8(1), e.u16(2), e.u64(8)), (1, 3, 0xabcd, 0x1122_3344_5566_7788));
        assert!(r.push_requests(), "req_event = 1: the first request notifies");
        assert_eq!(p[REQ_PROD].load(Ordering::Relaxed), 1);
        // The backend asks to hear only from request 5 on.
        p[REQ_EVENT].store(5, Ordering::Relaxed);
        r.next_request().unwrap();
        assert!(!r.push_requests());
        // Nothing answered yet; then one response.
        assert!(!r.final_check().unwrap());
        assert_eq!(p[RSP_EVENT].load(Ordering::Relaxed), 1);
        p[RSP_PROD].store(1, Ordering::Release);
        assert!(r.next_response().unwrap().is_some());
        assert!(r.next_response().unwrap().is_none());
        assert_eq!(r.free_requests(), 31);
    }

    #[test]
    fn full_ring_and_broken_backend() {
        let p = page();
        let mut r = FrontRing::init(&p, 112);
        for _ in 0..32 {
            r.next_request().unwrap();
        }
        assert!(r.next_request().is_none(), "never more than size in flight");
        r.push_requests();
        // A backend that claims 33 responses for 32 requests is broken.
        p[RSP_PROD].store(33, Ordering::Release);
        assert_eq!(r.unconsumed(), Err(BrokenRing));
        p[RSP_PROD].store(0u32.wrapping_sub(5), Ordering::Release);
        assert_eq!(r.next_response().err(), Some(BrokenRing));
    }
}
