//! Frontend side of a xenbus device (docs/xen-abi.md §6.9–6.10): finding `device/<kind>/<id>`
//! and its backend, following the backend's `state`, and publishing ours.
//!
//! Invariant: every value read from the backend's directory is parsed and range-checked here
//! before a driver uses it.

use crate::xen::{StoreRing, Xen};
use crate::xs::{Xenstore, XsError};
use alloc::format;
use alloc::string::String;

/// Xenbus states (`xenbus.h`).
pub mod state {
    /// Initialising.
    pub const INITIALISING: u32 = 1;
    /// Backend waits for the frontend.
    pub const INIT_WAIT: u32 = 2;
    /// Frontend published its rings.
    pub const INITIALISED: u32 = 3;
    /// Connected.
    pub const CONNECTED: u32 = 4;
    /// Closing.
    pub const CLOSING: u32 = 5;
    /// Closed.
    pub const CLOSED: u32 = 6;
}

/// Why a device could not be set up.
#[derive(Debug)]
pub enum FrontError {
    /// The runtime has no xenstore (not on a Xen-compatible hypervisor with xenstore).
    NoStore,
    /// A xenstore request failed.
    Store(&'static str, XsError),
    /// A value in xenstore is missing or malformed (its key).
    Bad(&'static str),
    /// The backend closed the device (its state).
    Closed(u32),
    /// Granting a page or allocating a port failed.
    Setup(&'static str),
    /// The backend broke the ring protocol.
    BrokenRing,
}

impl core::fmt::Display for FrontError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::NoStore => write!(f, "no xenstore"),
            Self::Store(w, e) => write!(f, "xenstore {w}: {e}"),
            Self::Bad(k) => write!(f, "'{k}' is missing or malformed"),
            Self::Closed(s) => write!(f, "the backend closed the device (state {s})"),
            Self::Setup(w) => write!(f, "{w} failed"),
            Self::BrokenRing => write!(f, "the backend broke the ring protocol"),
        }
    }
}

/// A device directory and its backend.
pub struct Device {
    /// Our directory, relative to our home (`device/vif/0`).
    pub dir: String,
    /// The backend's directory (absolute).
    pub backend: String,
    /// The backend's domain id.
    pub backend_id: u16,
}

/// The store, or [`FrontError::NoStore`].
pub fn store(x: &mut Xen) -> Result<&mut Xenstore<StoreRing>, FrontError> {
    x.store.as_mut().ok_or(FrontError::NoStore)
}

impl Device {
    /// Finds `device/<kind>/<devid>` (waiting for the hypervisor to write it: after a restart
    /// it appears once the backend let go of the previous connection).
    pub fn find(x: &mut Xen, kind: &str, devid: u32) -> Result<Self, FrontError> {
        let s = store(x)?;
        let dir = format!("device/{kind}/{devid}");
        let token = format!("dev-{kind}-{devid}");
        let key = format!("{dir}/backend-id");
        s.watch(&key, &token).map_err(|e| FrontError::Store("watch", e))?;
        let id = loop {
            if let Ok(v) = s.read(&key) {
                break v;
            }
            s.next_watch().map_err(|e| FrontError::Store("watch", e))?;
        };
        let _ = s.unwatch(&key, &token);
        let backend_id = id.parse().map_err(|_| FrontError::Bad("backend-id"))?;
        let backend = s.read(&format!("{dir}/backend")).map_err(|_| FrontError::Bad("backend"))?;
        if !backend.starts_with("/local/domain/") || backend.len() > 128 {
            return Err(FrontError::Bad("backend"));
        }
        Ok(Self { dir, backend, backend_id })
    }

    /// Reads one of our keys.
    pub fn read(&self, x: &mut Xen, key: &'static str) -> Result<String, FrontError> {
        store(x)?.read(&format!("{}/{key}", self.dir)).map_err(|_| FrontError::Bad(key))
    }

    /// Reads one of the backend's keys.
    pub fn backend_read(&self, x: &mut Xen, key: &'static str) -> Result<String, FrontError> {
        store(x)?.read(&format!("{}/{key}", self.backend)).map_err(|_| FrontError::Bad(key))
    }

    /// The backend's state (0 when it has none yet).
    pub fn backend_state(&self, x: &mut Xen) -> u32 {
        self.backend_read(x, "state").ok().and_then(|v| v.parse().ok()).unwrap_or(0)
    }

    /// Publishes our state.
    pub fn set_state(&self, x: &mut Xen, st: u32) -> Result<(), FrontError> {
        store(x)?.write(&format!("{}/state", self.dir), &format!("{st}")).map_err(|e| FrontError::Store("state", e))
    }

    /// Waits until the backend's state satisfies `ok`; a backend that closes first is an error.
    pub fn wait_backend(&self, x: &mut Xen, ok: impl Fn(u32) -> bool) -> Result<u32, FrontError> {
        let path = format!("{}/state", self.backend);
        let token = format!("be-{}", self.dir);
        let s = store(x)?;
        s.watch(&path, &token).map_err(|e| FrontError::Store("watch", e))?;
        let r = loop {
            let st = s.read(&path).ok().and_then(|v| v.parse().ok()).unwrap_or(0);
            if ok(st) {
                break Ok(st);
            }
            if st == state::CLOSING || st == state::CLOSED {
                break Err(FrontError::Closed(st));
            }
            if let Err(e) = s.next_watch() {
                break Err(FrontError::Store("watch", e));
            }
        };
        let _ = s.unwatch(&path, &token);
        r
    }
}
