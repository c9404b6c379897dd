//! blkfront: a Xen virtual block device served by a backend domain's xen-blkback
//! (docs/xen-abi.md §6.9, §8.2): one ring page, one event channel; a transfer is split into
//! requests, several in flight (responses may come back in any order).
//!
//! Features, negotiated as blkif.h says (each can be turned off with [`Features`], e.g. from a
//! unikernel's boot arguments, to run the protocol without it):
//! - persistent grants (`feature-persistent`, written by the frontend): the data pages are
//!   granted once and reused for the device's life, so xen-blkback maps each once and keeps it
//!   instead of mapping and unmapping every grant of every request (4x the throughput under
//!   `cargo xtask bench pv`); without it the pages are still granted once, and the backend maps
//!   them per request;
//! - indirect requests (`feature-max-indirect-segments`, offered by the backend): a request's
//!   segments are listed in a granted page of its own (`BLKIF_OP_INDIRECT`), so one request
//!   moves up to [`IND_SEGS`] pages (256 KiB) instead of 11 (44 KiB); used when the backend
//!   offers at least that many segments, otherwise plain requests.
//!
//! Durability: [`Blkfront::flush`] sends `BLKIF_OP_FLUSH_DISKCACHE` (when the backend offers
//! `feature-flush-cache`), so a write followed by a flush is on the backend's disk once
//! `flush` returns `Ok`.
//!
//! Invariants: data pages are granted once (writable, never revoked while connected; 16 slots
//! of 11); a slot is reused only after its response came back; a response is accepted only for
//! an id in flight; sector ranges are checked against the disk's size before a request is made.

use crate::arch::SharedPage;
use crate::blkproto::DEPTH;
pub use crate::blkproto::{Features, Shape, IND_SEGS};
use crate::grants::GrantRef;
use crate::sring::FrontRing;
use crate::xen::{self, Port, Xen};
use crate::xenbus::{state, Device, FrontError};
use alloc::format;
use alloc::vec::Vec;

/// `BLKIF_OP_INDIRECT`.
const OP_INDIRECT: u8 = 6;
/// Bytes of one sector (the unit of `sector_number`).
pub const SECTOR: usize = 512;
const OP_READ: u8 = 0;
const OP_WRITE: u8 = 1;
const OP_FLUSH: u8 = 3;

/// An I/O failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlkError {
    /// Outside the disk, or not a whole number of sectors.
    Range,
    /// The disk is read-only.
    ReadOnly,
    /// The backend answered with this status (−1 error, −2 not supported).
    Status(i16),
    /// The backend broke the ring protocol; the device is stopped.
    Broken,
}

/// A connected blkfront.
pub struct Blkfront {
    ring: FrontRing<'static>,
    port: Port,
    /// Size in 512-byte sectors.
    pub sectors: u64,
    /// The backend refuses writes.
    pub readonly: bool,
    /// The backend offers cache flushes.
    pub flush_supported: bool,
    /// The features asked for and the request shape in use.
    pub features: Features,
    /// Request shape in use.
    pub shape: Shape,
    /// Data pages, `shape.segs` per slot.
    pages: Vec<(SharedPage, GrantRef)>,
    /// One indirect page per slot (indirect requests only).
    indirect_pages: Vec<(SharedPage, GrantRef)>,
    next_id: u64,
    broken: bool,
}

impl Blkfront {
    /// Connects vbd `devid` (51712 = xvda) with every feature the backend offers.
    pub fn connect(x: &mut Xen, devid: u32) -> Result<Self, FrontError> {
        Self::connect_with(x, devid, Features::default())
    }

    /// Connects vbd `devid`, asking only for `features`.
    pub fn connect_with(x: &mut Xen, devid: u32, features: Features) -> Result<Self, FrontError> {
        let dev = Device::find(x, "vbd", devid)?;
        dev.wait_backend(x, |s| s == state::INIT_WAIT || s == state::CONNECTED)?;
        let be = dev.backend_id;
        let num = |x: &mut Xen, k: &'static str| dev.backend_read(x, k).ok().and_then(|v| v.parse::<u64>().ok());
        // The backend writes its features before InitWait.
        let shape = Shape::negotiate(features, num(x, "feature-max-indirect-segments"));
        let rp = crate::alloc_page();
        let ring = FrontRing::init(rp.words32(), 112);
        let ring_ref = x.grant(be, rp, false).map_err(|_| FrontError::Setup("grant"))?;
        let mut grant_pages = |n: usize| -> Result<Vec<(SharedPage, GrantRef)>, FrontError> {
            (0..n)
                .map(|_| {
                    let p = crate::alloc_page();
                    Ok((p, x.grant(be, p, false).map_err(|_| FrontError::Setup("grant"))?))
                })
                .collect()
        };
        let pages = grant_pages(shape.segs * shape.depth)?;
        // The backend only reads an indirect page (the segment list), but with persistent
        // grants xen-blkback maps every page it keeps writable, as for data.
        let indirect_pages = if shape.indirect { grant_pages(shape.depth)? } else { Vec::new() };
        let port = xen::alloc_unbound(be).map_err(|_| FrontError::Setup("alloc_unbound"))?;
        let dir = dev.dir.clone();
        let persistent = if features.persistent { "1" } else { "0" };
        crate::xenbus::store(x)?
            .transaction(|s, t| {
                s.write_in(t, &format!("{dir}/ring-ref"), &format!("{}", ring_ref.0))?;
                s.write_in(t, &format!("{dir}/event-channel"), &format!("{}", port.0))?;
                s.write_in(t, &format!("{dir}/protocol"), "arm-abi")?;
                s.write_in(t, &format!("{dir}/feature-persistent"), persistent)?;
                s.write_in(t, &format!("{dir}/state"), "3")
            })
            .map_err(|e| FrontError::Store("publishing the ring", e))?;
        dev.wait_backend(x, |s| s == state::CONNECTED)?;
        let sectors = num(x, "sectors").ok_or(FrontError::Bad("sectors"))?;
        if num(x, "sector-size").unwrap_or(512) != 512 {
            return Err(FrontError::Bad("sector-size"));
        }
        let info = num(x, "info").unwrap_or(0);
        let flush_supported = num(x, "feature-flush-cache") == Some(1);
        dev.set_state(x, state::CONNECTED)?;
        Ok(Self {
            ring,
            port,
            sectors,
            readonly: info & 4 != 0,
            flush_supported,
            features,
            shape,
            pages,
            indirect_pages,
            next_id: 1,
            broken: false,
        })
    }

    /// The protocol in use, as `requests of 64 pages (indirect), 8 in flight, persistent
    /// grants`.
    pub fn describe(&self) -> alloc::string::String {
        format!(
            "requests of {} pages ({}), {} in flight, {}",
            self.shape.segs,
            if self.shape.indirect { "indirect" } else { "direct segments" },
            self.shape.depth,
            if self.features.persistent { "persistent grants" } else { "grants mapped per request" }
        )
    }

    /// Bytes one request can move.
    pub fn max_io(&self) -> usize {
        self.shape.segs * 4096
    }

    /// Slot `slot`'s data pages.
    fn slot_pages(&self, slot: usize) -> &[(SharedPage, GrantRef)] {
        &self.pages[slot * self.shape.segs..(slot + 1) * self.shape.segs]
    }

    /// Writes request `id` (`op` on `len` bytes at `sector`, data in slot `slot`'s pages)
    /// into the next ring entry; the caller publishes it. A data request on an indirect
    /// connection lists its segments in the slot's indirect page.
    fn fill(&mut self, op: u8, id: u64, sector: u64, len: usize, slot: usize) -> Result<(), BlkError> {
        let nseg = len.div_ceil(4096);
        let segs = self.shape.segs;
        let pages = &self.pages[slot * segs..(slot + 1) * segs];
        // Segment i: {u32 gref, u8 first_sect, u8 last_sect, u16 pad}.
        let seg = |i: usize| {
            let bytes = (len - i * 4096).min(4096);
            (pages[i].1 .0, (bytes / SECTOR - 1) as u8)
        };
        let indirect = self.shape.indirect && op != OP_FLUSH;
        let mut ind_gref = 0;
        if indirect {
            let (list, gref) = self.indirect_pages[slot];
            let mut descs = [0u8; 8 * IND_SEGS];
            for i in 0..nseg {
                let (g, last) = seg(i);
                descs[i * 8..i * 8 + 4].copy_from_slice(&g.to_le_bytes());
                descs[i * 8 + 5] = last;
            }
            list.write(0, &descs[..nseg * 8]);
            ind_gref = gref.0;
        }
        let e = self.ring.next_request().ok_or(BlkError::Broken)?;
        if indirect {
            // blkif_request_indirect: op, indirect_op, u16 nr_segments, id @8, sector @16,
            // u16 handle @24, u32 indirect_grefs[8] @28 (one page holds our segments).
            e.set_u8(0, OP_INDIRECT);
            e.set_u8(1, op);
            e.set_u16(2, nseg as u16);
            e.set_u64(8, id);
            e.set_u64(16, sector);
            e.set_u16(24, 0);
            e.set_u32(28, ind_gref);
        } else {
            e.set_u8(0, op);
            e.set_u8(1, nseg as u8);
            e.set_u16(2, 0);
            e.set_u64(8, id);
            e.set_u64(16, sector);
            for i in 0..nseg {
                let (g, last) = seg(i);
                let off = 24 + i * 8;
                e.set_u32(off, g);
                e.set_u8(off + 4, 0);
                e.set_u8(off + 5, last);
                e.set_u16(off + 6, 0);
            }
        }
        Ok(())
    }

    /// The next response `(id, status)`, waiting for it.
    fn next_response(&mut self) -> Result<(u64, i16), BlkError> {
        loop {
            match self.ring.next_response() {
                Ok(Some(r)) => return Ok((r.u64(0), r.u16(10) as i16)),
                Ok(None) => {
                    if !self.ring.final_check().map_err(|_| BlkError::Broken)? {
                        self.port.wait();
                    }
                }
                Err(_) => return Err(BlkError::Broken),
            }
        }
    }

    /// Moves `len` bytes from `sector` in [`Self::max_io`] requests, up to the shape's depth in flight (each
    /// in its own slot of pages); `from` fills a write's slot, `into` empties a read's. The
    /// first failed request stops new ones; those in flight are still collected.
    fn transfer(
        &mut self,
        op: u8,
        sector: u64,
        len: usize,
        mut from: impl FnMut(usize, &[(SharedPage, GrantRef)]),
        mut into: impl FnMut(usize, &[(SharedPage, GrantRef)]),
    ) -> Result<(), BlkError> {
        if self.broken {
            return Err(BlkError::Broken);
        }
        let max = self.max_io();
        let chunks = len.div_ceil(max);
        // Slot k: (request id, chunk index) while a request is in flight.
        let mut flight_buf: [Option<(u64, usize)>; DEPTH] = [None; DEPTH];
        let flight = &mut flight_buf[..self.shape.depth.min(DEPTH)];
        let (mut next, mut err) = (0, None);
        let r = loop {
            let mut pushed = false;
            while next < chunks && err.is_none() {
                let Some(slot) = flight.iter().position(Option::is_none) else { break };
                let off = next * max;
                let n = (len - off).min(max);
                from(next, self.slot_pages(slot));
                let id = self.next_id;
                self.next_id += 1;
                self.fill(op, id, sector + (off / SECTOR) as u64, n, slot)?;
                flight[slot] = Some((id, next));
                next += 1;
                pushed = true;
            }
            if pushed && self.ring.push_requests() {
                xen::notify(self.port.0);
            }
            if flight.iter().all(Option::is_none) {
                break err.map_or(Ok(()), Err);
            }
            let (id, st) = match self.next_response() {
                Ok(r) => r,
                Err(e) => break Err(e),
            };
            // A response for no request in flight: the backend is broken.
            let Some(slot) = flight.iter().position(|f| matches!(f, Some((i, _)) if *i == id)) else {
                break Err(BlkError::Broken);
            };
            let (_, chunk) = flight[slot].take().unwrap_or_default();
            if st != 0 {
                err.get_or_insert(BlkError::Status(st));
            } else {
                into(chunk, self.slot_pages(slot));
            }
        };
        if r == Err(BlkError::Broken) {
            self.broken = true;
        }
        r
    }

    fn check(&self, sector: u64, len: usize) -> Result<(), BlkError> {
        let n = (len / SECTOR) as u64;
        if len == 0 || !len.is_multiple_of(SECTOR) || sector.checked_add(n).is_none_or(|end| end > self.sectors) {
            return Err(BlkError::Range);
        }
        Ok(())
    }

    /// Reads `buf.len()` bytes (whole sectors) from `sector`.
    pub fn read(&mut self, sector: u64, buf: &mut [u8]) -> Result<(), BlkError> {
        self.check(sector, buf.len())?;
        let (len, max) = (buf.len(), self.max_io());
        self.transfer(
            OP_READ,
            sector,
            len,
            |_, _| {},
            |chunk, pages| {
                let part = &mut buf[chunk * max..len.min((chunk + 1) * max)];
                for (j, p) in part.chunks_mut(4096).enumerate() {
                    pages[j].0.read(0, p);
                }
            },
        )
    }

    /// Writes `buf` (whole sectors) at `sector`.
    pub fn write(&mut self, sector: u64, buf: &[u8]) -> Result<(), BlkError> {
        self.check(sector, buf.len())?;
        if self.readonly {
            return Err(BlkError::ReadOnly);
        }
        let (len, max) = (buf.len(), self.max_io());
        self.transfer(
            OP_WRITE,
            sector,
            len,
            |chunk, pages| {
                let part = &buf[chunk * max..len.min((chunk + 1) * max)];
                for (j, p) in part.chunks(4096).enumerate() {
                    pages[j].0.write(0, p);
                }
            },
            |_, _| {},
        )
    }

    /// Makes completed writes durable (`BLKIF_OP_FLUSH_DISKCACHE`); `Ok` at once when the
    /// backend has no write cache to flush.
    pub fn flush(&mut self) -> Result<(), BlkError> {
        if !self.flush_supported {
            return Ok(());
        }
        if self.broken {
            return Err(BlkError::Broken);
        }
        let id = self.next_id;
        self.next_id += 1;
        self.fill(OP_FLUSH, id, 0, 0, 0)?;
        if self.ring.push_requests() {
            xen::notify(self.port.0);
        }
        match self.next_response() {
            Ok((rid, 0)) if rid == id => Ok(()),
            Ok((rid, st)) if rid == id => Err(BlkError::Status(st)),
            Ok(_) | Err(_) => {
                self.broken = true;
                Err(BlkError::Broken)
            }
        }
    }
}
