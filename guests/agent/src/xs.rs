//! A xenstore client over Linux's `/dev/xen/xenbus` (the same wire format as the ring:
//! 16-byte header `type, req_id, tx_id, len`, then the payload; docs/xen-abi.md §6.2).
//!
//! Owns: request/reply matching by `req_id`, and a queue of watch events that arrive between
//! replies. Invariant: at most one request is outstanding (the agent is single-threaded).

use std::collections::VecDeque;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;

/// Message types used here (`xs_wire.h`).
pub mod ty {
    /// Read a value.
    pub const READ: u32 = 2;
    /// List children.
    pub const DIRECTORY: u32 = 1;
    /// Register a watch.
    pub const WATCH: u32 = 4;
    /// Write a value.
    pub const WRITE: u32 = 11;
    /// An error reply (payload: errno name).
    pub const ERROR: u32 = 16;
    /// A watch event (payload: path, token).
    pub const WATCH_EVENT: u32 = 15;
}

/// Encodes one message.
pub fn encode(ty: u32, req_id: u32, payload: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(16 + payload.len());
    for v in [ty, req_id, 0, payload.len() as u32] {
        m.extend_from_slice(&v.to_le_bytes());
    }
    m.extend_from_slice(payload);
    m
}

/// Splits one complete message off the front of `buf`: `(type, req_id, payload)`.
pub fn decode(buf: &mut Vec<u8>) -> Option<(u32, u32, Vec<u8>)> {
    if buf.len() < 16 {
        return None;
    }
    let w = |i: usize| u32::from_le_bytes([buf[i], buf[i + 1], buf[i + 2], buf[i + 3]]);
    let (t, id, len) = (w(0), w(4), w(12) as usize);
    if buf.len() < 16 + len {
        return None;
    }
    let payload = buf[16..16 + len].to_vec();
    buf.drain(..16 + len);
    Some((t, id, payload))
}

/// Splits a NUL-separated payload (DIRECTORY replies, watch events) into strings.
pub fn strings(payload: &[u8]) -> Vec<String> {
    payload.split(|&b| b == 0).filter(|s| !s.is_empty()).map(|s| String::from_utf8_lossy(s).into_owned()).collect()
}

/// A connection to xenstore.
pub struct Xs {
    dev: File,
    next_id: u32,
    buf: Vec<u8>,
    events: VecDeque<(String, String)>,
}

impl Xs {
    /// Opens `/dev/xen/xenbus`.
    pub fn open() -> Result<Self, String> {
        let dev = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/xen/xenbus")
            .map_err(|e| format!("/dev/xen/xenbus: {e} (is this a Xen-aware domain?)"))?;
        Ok(Self { dev, next_id: 1, buf: Vec::new(), events: VecDeque::new() })
    }

    fn fill(&mut self) -> Result<(), String> {
        let mut b = [0u8; 4096];
        let n = self.dev.read(&mut b).map_err(|e| format!("xenbus read: {e}"))?;
        if n == 0 {
            return Err("xenbus closed".into());
        }
        self.buf.extend_from_slice(&b[..n]);
        Ok(())
    }

    /// One request and its reply payload; `Err` carries the errno name (`ENOENT`, ...).
    pub fn request(&mut self, ty: u32, payload: &[u8]) -> Result<Vec<u8>, String> {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        self.dev.write_all(&encode(ty, id, payload)).map_err(|e| format!("xenbus write: {e}"))?;
        loop {
            while let Some((t, rid, p)) = decode(&mut self.buf) {
                if t == ty::WATCH_EVENT {
                    let s = strings(&p);
                    if s.len() >= 2 {
                        self.events.push_back((s[0].clone(), s[1].clone()));
                    }
                    continue;
                }
                if rid != id {
                    continue;
                }
                if t == ty::ERROR {
                    return Err(String::from_utf8_lossy(&p).trim_end_matches('\0').to_string());
                }
                return Ok(p);
            }
            self.fill()?;
        }
    }

    fn path(p: &str) -> Vec<u8> {
        let mut v = p.as_bytes().to_vec();
        v.push(0);
        v
    }

    /// Reads a value (`None` if it does not exist or may not be read).
    pub fn read(&mut self, path: &str) -> Option<String> {
        self.request(ty::READ, &Self::path(path)).ok().map(|v| String::from_utf8_lossy(&v).into_owned())
    }

    /// Lists the children of `path` (empty if none).
    pub fn dir(&mut self, path: &str) -> Vec<String> {
        self.request(ty::DIRECTORY, &Self::path(path)).map(|v| strings(&v)).unwrap_or_default()
    }

    /// Writes a value.
    pub fn write(&mut self, path: &str, value: &str) -> Result<(), String> {
        let mut p = path.as_bytes().to_vec();
        p.push(0);
        p.extend_from_slice(value.as_bytes());
        self.request(ty::WRITE, &p).map(|_| ()).map_err(|e| format!("write {path}: {e}"))
    }

    /// Registers a watch.
    pub fn watch(&mut self, path: &str, token: &str) -> Result<(), String> {
        let mut p = Self::path(path);
        p.extend_from_slice(token.as_bytes());
        p.push(0);
        self.request(ty::WATCH, &p).map(|_| ()).map_err(|e| format!("watch {path}: {e}"))
    }

    /// Waits up to `ms` for watch events; returns the ones that arrived.
    pub fn wait_events(&mut self, ms: i32) -> Vec<(String, String)> {
        if self.events.is_empty() && crate::sys::readable(self.dev.as_raw_fd(), ms) && self.fill().is_ok() {
            while let Some((t, _, p)) = decode(&mut self.buf) {
                let s = strings(&p);
                if t == ty::WATCH_EVENT && s.len() >= 2 {
                    self.events.push_back((s[0].clone(), s[1].clone()));
                }
            }
        }
        self.events.drain(..).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codec_round_trip_and_partial_input() {
        let m = encode(ty::WRITE, 7, b"a/b\0v");
        assert_eq!(m.len(), 21);
        let mut buf = m[..10].to_vec();
        assert_eq!(decode(&mut buf), None, "a partial header waits");
        buf.extend_from_slice(&m[10..]);
        buf.extend_from_slice(&encode(ty::WATCH_EVENT, 0, b"p\0t\0"));
        assert_eq!(decode(&mut buf), Some((ty::WRITE, 7, b"a/b\0v".to_vec())));
        let (t, _, p) = decode(&mut buf).unwrap();
        assert_eq!((t, strings(&p)), (ty::WATCH_EVENT, vec!["p".to_string(), "t".to_string()]));
        assert!(buf.is_empty());
    }
}
