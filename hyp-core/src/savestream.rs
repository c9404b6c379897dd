//! The save stream of a suspended domain (`hypctl save` / `hypctl restore`), version 1: a
//! 4 KiB header, then the domain's RAM, then (written and checked by `hypctl`) a CRC-32 of
//! both and a trailer magic. All little-endian.
//!
//! Header: `magic` "FERRUMSV" @0, `version` u32 @8, `header_size` u32 @12 (4096), `ram_size`
//! u64 @16, `ipa_base` u64 @24, `vcpus` u32 @32, `kind` u32 @36 (0 unikernel), `vcnt` u64 @40
//! (the guest's virtual counter when it suspended), `cntfrq` u64 @48, `name` 32 bytes @56,
//! then the vCPU @128: x0..x30, pc (ELR), pstate (SPSR), the EL1 system registers of
//! [`SYSREGS`] in that order, fpcr, fpsr, then q0..q31 (16 bytes each).
//!
//! What is not in the stream, because the guest rebuilds it after `SCHEDOP_shutdown(suspend)`
//! returns (Xen's protocol): event channels, grant entries, `shared_info`, the xenstore and
//! console rings, the virtual GIC's configuration (ferrum-rt sets its GIC up again).
//!
//! A live migration sends the same header twice: first [`Header::shape`] (no vCPU state), for
//! the receiver to check its slot before any RAM is copied, then the final one; [`PageSet`]
//! tracks the pages a restore wrote (in any order), [`clock_offset`] compares two boards'
//! clocks and [`Header::resumed_vcnt`] moves the guest's counter on by the time it was stopped.
//!
//! Invariants: [`Header::decode`] never panics and accepts only a header this version wrote;
//! [`Header::fits`] says whether a stream can go into a slot of a given shape; a [`PageSet`]
//! is complete only once every page was marked.

use xen_abi::{rd32, rd64, wr32, wr64};

/// "FERRUMSV".
pub const MAGIC: [u8; 8] = *b"FERRUMSV";
/// What follows the CRC at the very end of a complete stream.
pub const TRAILER_MAGIC: [u8; 4] = *b"FSV1";
/// This format's version.
pub const VERSION: u32 = 1;
/// Bytes of the header.
pub const HEADER_SIZE: usize = 4096;
/// Bytes after the RAM: CRC-32 (u32) and [`TRAILER_MAGIC`].
pub const TRAILER_SIZE: usize = 8;

/// The EL1/EL0 system registers saved, in stream order.
pub const SYSREGS: [&str; 26] = [
    "sctlr_el1",
    "ttbr0_el1",
    "ttbr1_el1",
    "tcr_el1",
    "mair_el1",
    "amair_el1",
    "vbar_el1",
    "contextidr_el1",
    "tpidr_el0",
    "tpidrro_el0",
    "tpidr_el1",
    "sp_el0",
    "sp_el1",
    "elr_el1",
    "spsr_el1",
    "esr_el1",
    "far_el1",
    "afsr0_el1",
    "afsr1_el1",
    "par_el1",
    "cpacr_el1",
    "cntkctl_el1",
    "cntv_ctl_el0",
    "cntv_cval_el0",
    "csselr_el1",
    "mdscr_el1",
];

const CPU_AT: usize = 128;
const SYSREGS_AT: usize = CPU_AT + 33 * 8;
const FP_CTL_AT: usize = SYSREGS_AT + SYSREGS.len() * 8;
const Q_AT: usize = FP_CTL_AT + 16;
const _: () = assert!(Q_AT + 32 * 16 <= HEADER_SIZE);

/// One vCPU's state at its suspend.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CpuState {
    /// x0..x30.
    pub x: [u64; 31],
    /// Where it resumes (after its `hvc`).
    pub pc: u64,
    /// Its PSTATE.
    pub pstate: u64,
    /// [`SYSREGS`], in order.
    pub sysregs: [u64; SYSREGS.len()],
    /// FPCR.
    pub fpcr: u64,
    /// FPSR.
    pub fpsr: u64,
    /// q0..q31.
    pub q: [u128; 32],
}

impl Default for CpuState {
    fn default() -> Self {
        Self { x: [0; 31], pc: 0, pstate: 0, sysregs: [0; SYSREGS.len()], fpcr: 0, fpsr: 0, q: [0; 32] }
    }
}

/// A stream's header.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Header {
    /// Bytes of RAM that follow.
    pub ram_size: u64,
    /// Guest-physical base of that RAM.
    pub ipa_base: u64,
    /// vCPUs (1: only single-vCPU domains are saved).
    pub vcpus: u32,
    /// The guest's virtual counter at its suspend (it continues from there).
    pub vcnt: u64,
    /// The counter frequency it ran with.
    pub cntfrq: u64,
    /// The saved domain's name.
    pub name: [u8; 32],
    /// Its vCPU.
    pub cpu: CpuState,
}

/// Why a stream is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamError {
    /// Shorter than its header, or than its header says.
    Truncated,
    /// Not a ferrum save stream.
    BadMagic,
    /// Written by another version of the format.
    Version(u32),
    /// Its CRC does not match (a bit changed).
    Corrupt,
    /// Its RAM is larger than the slot's.
    TooLarge {
        /// The stream's.
        need: u64,
        /// The slot's.
        have: u64,
    },
    /// The slot has another shape (RAM size, guest-physical base, vCPUs, counter frequency).
    Shape(&'static str),
}

impl core::fmt::Display for StreamError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Truncated => write!(f, "the stream is truncated"),
            Self::BadMagic => write!(f, "not a ferrum save stream"),
            Self::Version(v) => write!(f, "stream version {v}, this hypervisor reads version {VERSION}"),
            Self::Corrupt => write!(f, "the stream is corrupted (CRC mismatch)"),
            Self::TooLarge { need, have } => write!(f, "the stream's {need} bytes of RAM do not fit the slot's {have}"),
            Self::Shape(what) => write!(f, "the slot's {what} differs from the saved domain's"),
        }
    }
}

impl Header {
    /// The header's bytes.
    pub fn encode(&self) -> [u8; HEADER_SIZE] {
        let mut b = [0u8; HEADER_SIZE];
        b[0..8].copy_from_slice(&MAGIC);
        wr32(&mut b, 8, VERSION);
        wr32(&mut b, 12, HEADER_SIZE as u32);
        wr64(&mut b, 16, self.ram_size);
        wr64(&mut b, 24, self.ipa_base);
        wr32(&mut b, 32, self.vcpus);
        wr64(&mut b, 40, self.vcnt);
        wr64(&mut b, 48, self.cntfrq);
        b[56..88].copy_from_slice(&self.name);
        let c = &self.cpu;
        for (i, v) in c.x.iter().chain([&c.pc, &c.pstate]).enumerate() {
            wr64(&mut b, CPU_AT + 8 * i, *v);
        }
        for (i, v) in c.sysregs.iter().enumerate() {
            wr64(&mut b, SYSREGS_AT + 8 * i, *v);
        }
        wr64(&mut b, FP_CTL_AT, c.fpcr);
        wr64(&mut b, FP_CTL_AT + 8, c.fpsr);
        for (i, q) in c.q.iter().enumerate() {
            b[Q_AT + 16 * i..Q_AT + 16 * i + 16].copy_from_slice(&q.to_le_bytes());
        }
        b
    }

    /// Reads a header back.
    pub fn decode(b: &[u8]) -> Result<Self, StreamError> {
        if b.len() < HEADER_SIZE {
            return Err(StreamError::Truncated);
        }
        if b[0..8] != MAGIC {
            return Err(StreamError::BadMagic);
        }
        let v = rd32(b, 8).unwrap_or(0);
        if v != VERSION || rd32(b, 12) != Some(HEADER_SIZE as u32) {
            return Err(StreamError::Version(v));
        }
        let r = |off: usize| rd64(b, off).unwrap_or(0);
        let mut cpu = CpuState::default();
        for (i, x) in cpu.x.iter_mut().enumerate() {
            *x = r(CPU_AT + 8 * i);
        }
        cpu.pc = r(CPU_AT + 31 * 8);
        cpu.pstate = r(CPU_AT + 32 * 8);
        for (i, s) in cpu.sysregs.iter_mut().enumerate() {
            *s = r(SYSREGS_AT + 8 * i);
        }
        cpu.fpcr = r(FP_CTL_AT);
        cpu.fpsr = r(FP_CTL_AT + 8);
        for (i, q) in cpu.q.iter_mut().enumerate() {
            let mut w = [0u8; 16];
            w.copy_from_slice(&b[Q_AT + 16 * i..Q_AT + 16 * i + 16]);
            *q = u128::from_le_bytes(w);
        }
        let mut name = [0u8; 32];
        name.copy_from_slice(&b[56..88]);
        Ok(Self {
            ram_size: r(16),
            ipa_base: r(24),
            vcpus: rd32(b, 32).unwrap_or(0),
            vcnt: r(40),
            cntfrq: r(48),
            name,
            cpu,
        })
    }

    /// Bytes of the whole stream, trailer included.
    pub fn stream_len(&self) -> u64 {
        (HEADER_SIZE as u64).saturating_add(self.ram_size).saturating_add(TRAILER_SIZE as u64)
    }

    /// Whether the stream can be restored into a slot with `ram_size` bytes of RAM at
    /// `ipa_base`, `vcpus` vCPUs, on a board whose counter runs at `cntfrq`.
    pub fn fits(&self, ram_size: u64, ipa_base: u64, vcpus: u32, cntfrq: u64) -> Result<(), StreamError> {
        if self.ram_size > ram_size {
            return Err(StreamError::TooLarge { need: self.ram_size, have: ram_size });
        }
        if self.ram_size != ram_size {
            return Err(StreamError::Shape("RAM size"));
        }
        if self.ipa_base != ipa_base {
            return Err(StreamError::Shape("guest-physical RAM base"));
        }
        if self.vcpus != vcpus {
            return Err(StreamError::Shape("vCPU count"));
        }
        if self.cntfrq != cntfrq {
            return Err(StreamError::Shape("counter frequency"));
        }
        Ok(())
    }

    /// The saved domain's name.
    pub fn name(&self) -> &str {
        let n = self.name.iter().position(|&c| c == 0).unwrap_or(32);
        core::str::from_utf8(&self.name[..n]).unwrap_or("?")
    }
}

impl Header {
    /// Whether `other` describes the same domain in the same shape (name, RAM size and base,
    /// vCPUs, counter frequency): a live migration's final header must match the one its
    /// restore began with.
    pub fn same_shape(&self, other: &Header) -> bool {
        self.name == other.name
            && self.ram_size == other.ram_size
            && self.ipa_base == other.ipa_base
            && self.vcpus == other.vcpus
            && self.cntfrq == other.cntfrq
    }

    /// The header of a domain's shape alone (no vCPU state): what a live migration sends
    /// first, so the receiver checks its slot before any RAM is copied.
    pub fn shape(ram_size: u64, ipa_base: u64, vcpus: u32, cntfrq: u64, name: &str) -> Self {
        let mut n = [0u8; 32];
        let b = name.as_bytes();
        let len = b.len().min(32);
        n[..len].copy_from_slice(&b[..len]);
        Header { ram_size, ipa_base, vcpus, vcnt: 0, cntfrq, name: n, cpu: CpuState::default() }
    }

    /// The virtual counter a restored guest resumes with: the saved one moved on by `age_ns`
    /// nanoseconds (the time since its suspend, which a migration measures, 0 for a restore
    /// from a file), at this header's frequency.
    pub fn resumed_vcnt(&self, age_ns: u64) -> u64 {
        let ticks = u128::from(age_ns) * u128::from(self.cntfrq) / 1_000_000_000;
        self.vcnt.wrapping_add(ticks.min(u128::from(u64::MAX)) as u64)
    }
}

/// The longest time a migration may say passed since the suspend (an hour): more is refused.
pub const MAX_AGE_NS: u64 = 3600 * 1_000_000_000;

/// Which RAM pages of a restore have been written (a restore is committed only once every
/// page has been, at least once; a live migration writes pages in any order and some twice).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PageSet {
    bits: alloc::vec::Vec<u64>,
    pages: u64,
    set: u64,
}

impl PageSet {
    /// Bytes per page.
    pub const PAGE: u64 = 4096;

    /// No page written yet of `ram_size` bytes.
    pub fn new(ram_size: u64) -> Self {
        let pages = ram_size / Self::PAGE;
        Self { bits: alloc::vec![0; pages.div_ceil(64) as usize], pages, set: 0 }
    }

    /// Marks `[off, off + len)` written. `false` (nothing marked) unless it is whole pages
    /// inside the RAM.
    pub fn mark(&mut self, off: u64, len: u64) -> bool {
        if !self.fits(off, len) {
            return false;
        }
        for p in off / Self::PAGE..(off + len) / Self::PAGE {
            let (w, b) = ((p / 64) as usize, 1u64 << (p % 64));
            if self.bits[w] & b == 0 {
                self.bits[w] |= b;
                self.set += 1;
            }
        }
        true
    }

    /// `[off, off + len)` is whole pages inside the RAM.
    pub fn fits(&self, off: u64, len: u64) -> bool {
        let whole = off.is_multiple_of(Self::PAGE) && len.is_multiple_of(Self::PAGE);
        whole && off.checked_add(len).is_some_and(|e| e <= self.pages * Self::PAGE)
    }

    /// Every page has been written.
    pub fn complete(&self) -> bool {
        self.set == self.pages
    }

    /// Pages written so far.
    pub fn written(&self) -> u64 {
        self.set
    }
}

/// The offset of a peer's clock from ours, from one exchange: we sent at `t1` (our clock),
/// the peer answered with its time `t2`, we received the answer at `t3`. Returns (offset,
/// error bound): the peer's clock reads ours plus `offset`, within `error` (half the round
/// trip). All in nanoseconds.
pub fn clock_offset(t1: u64, t2: u64, t3: u64) -> (i64, u64) {
    let rtt = t3.saturating_sub(t1);
    let mid = t1 + rtt / 2;
    (t2 as i64 - mid as i64, rtt.div_ceil(2))
}

/// Checks a complete stream's length and trailer, given its header and what `crc` (CRC-32 of
/// everything before the trailer) computes; returns the header.
pub fn check_complete(bytes_len: u64, head: &[u8], trailer: &[u8], crc: u32) -> Result<Header, StreamError> {
    let h = Header::decode(head)?;
    if bytes_len != h.stream_len() || trailer.len() != TRAILER_SIZE {
        return Err(StreamError::Truncated);
    }
    if trailer[4..8] != TRAILER_MAGIC || rd32(trailer, 0) != Some(crc) {
        return Err(StreamError::Corrupt);
    }
    Ok(h)
}

/// The trailer for a stream whose bytes before it have CRC-32 `crc`.
pub fn trailer(crc: u32) -> [u8; TRAILER_SIZE] {
    let mut t = [0u8; TRAILER_SIZE];
    t[0..4].copy_from_slice(&crc.to_le_bytes());
    t[4..8].copy_from_slice(&TRAILER_MAGIC);
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> Header {
        let mut cpu = CpuState::default();
        cpu.x[0] = 2;
        cpu.x[30] = 0x4000_1234;
        cpu.pc = 0x4000_2000;
        cpu.pstate = 0x3c5;
        cpu.sysregs[12] = 0x40ff_f000;
        cpu.fpcr = 7;
        cpu.q[31] = u128::MAX - 5;
        let mut name = [0u8; 32];
        name[..2].copy_from_slice(b"kv");
        Header { ram_size: 16 << 20, ipa_base: 0x4000_0000, vcpus: 1, vcnt: 123_456, cntfrq: 62_500_000, name, cpu }
    }

    #[test]
    fn header_round_trip() {
        let h = header();
        let b = h.encode();
        assert_eq!(Header::decode(&b), Ok(h));
        assert_eq!(h.name(), "kv");
        assert_eq!(h.stream_len(), 4096 + (16 << 20) + 8);
    }

    #[test]
    fn bad_headers_are_refused() {
        let b = header().encode();
        assert_eq!(Header::decode(&b[..100]), Err(StreamError::Truncated));
        let mut m = b;
        m[3] ^= 1;
        assert_eq!(Header::decode(&m), Err(StreamError::BadMagic));
        let mut v = b;
        v[8] = 2;
        assert_eq!(Header::decode(&v), Err(StreamError::Version(2)));
    }

    #[test]
    fn shapes() {
        let h = header();
        assert_eq!(h.fits(16 << 20, 0x4000_0000, 1, 62_500_000), Ok(()));
        assert_eq!(
            h.fits(8 << 20, 0x4000_0000, 1, 62_500_000),
            Err(StreamError::TooLarge { need: 16 << 20, have: 8 << 20 })
        );
        assert_eq!(h.fits(32 << 20, 0x4000_0000, 1, 62_500_000), Err(StreamError::Shape("RAM size")));
        assert_eq!(h.fits(16 << 20, 0x5000_0000, 1, 62_500_000), Err(StreamError::Shape("guest-physical RAM base")));
        assert_eq!(h.fits(16 << 20, 0x4000_0000, 2, 62_500_000), Err(StreamError::Shape("vCPU count")));
    }

    #[test]
    fn completeness() {
        let h = header();
        let b = h.encode();
        let t = trailer(0xdead_beef);
        assert_eq!(check_complete(h.stream_len(), &b, &t, 0xdead_beef), Ok(h));
        assert_eq!(check_complete(h.stream_len() - 1, &b, &t, 0xdead_beef), Err(StreamError::Truncated));
        assert_eq!(check_complete(h.stream_len(), &b, &t, 0xdead_beee), Err(StreamError::Corrupt));
        assert_eq!(check_complete(h.stream_len(), &b, &t[..4], 0xdead_beef), Err(StreamError::Truncated));
    }

    #[test]
    fn page_set_counts_each_page_once() {
        let mut s = PageSet::new(4 * 4096);
        assert!(!s.complete());
        assert!(s.mark(4096, 8192));
        assert!(s.mark(4096, 4096)); // again: counted once
        assert_eq!(s.written(), 2);
        assert!(!s.mark(100, 4096), "not page aligned");
        assert!(!s.mark(0, 100), "not whole pages");
        assert!(!s.mark(3 * 4096, 8192), "past the end");
        assert!(!s.mark(u64::MAX - 4095, 4096), "overflow");
        assert_eq!(s.written(), 2);
        assert!(s.mark(0, 4096) && s.mark(3 * 4096, 4096));
        assert!(s.complete());
        assert!(PageSet::new(0).complete());
    }

    #[test]
    fn shapes_and_resumed_counter() {
        let h = header();
        let s = Header::shape(h.ram_size, h.ipa_base, h.vcpus, h.cntfrq, "kv");
        assert!(h.same_shape(&s) && s.same_shape(&h));
        assert_eq!(Header::decode(&s.encode()), Ok(s));
        assert!(!h.same_shape(&Header::shape(h.ram_size, h.ipa_base, h.vcpus, h.cntfrq, "web")));
        assert!(!h.same_shape(&Header::shape(h.ram_size * 2, h.ipa_base, h.vcpus, h.cntfrq, "kv")));
        assert!(!h.same_shape(&Header::shape(h.ram_size, h.ipa_base, 2, h.cntfrq, "kv")));
        // 62.5 MHz: 2 ms is 125,000 ticks.
        assert_eq!(h.resumed_vcnt(0), h.vcnt);
        assert_eq!(h.resumed_vcnt(2_000_000), h.vcnt + 125_000);
        let long = Header::shape(4096, 0, 1, u64::MAX, "x");
        assert_eq!(long.resumed_vcnt(u64::MAX), u64::MAX, "saturates, never panics");
        let name = Header::shape(0, 0, 1, 1, "a-name-longer-than-thirty-two-bytes-is-cut");
        assert_eq!(name.name().len(), 32);
    }

    #[test]
    fn clock_offset_from_one_exchange() {
        // The peer is 1,000 ns ahead; the exchange took 200 ns each way.
        assert_eq!(clock_offset(10_000, 11_200, 10_400), (1_000, 200));
        // A peer behind us.
        assert_eq!(clock_offset(5_000_000, 1_000_050, 5_000_100), (-4_000_000, 50));
        // A clock that went backwards does not panic.
        assert_eq!(clock_offset(100, 0, 50).1, 0);
    }
}
