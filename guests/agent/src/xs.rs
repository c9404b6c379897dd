//! The agent's xenstore connection: ferrum-rt's client (`ferrum_rt::xs`, the same codec and
//! request/reply matching the unikernels use) over Linux's `/dev/xen/xenbus`.
//!
//! Invariant: the transport never blocks in `recv` (it polls first), so the client's own
//! "nothing yet → wait" loop is the only place that sleeps.

use ferrum_rt::xs::{Transport, Xenstore};
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;

/// `/dev/xen/xenbus` as a [`Transport`].
pub struct Xenbus(File);

impl Transport for Xenbus {
    fn send(&mut self, bytes: &[u8]) -> usize {
        self.0.write_all(bytes).map_or(0, |()| bytes.len())
    }
    fn recv(&mut self, out: &mut [u8]) -> usize {
        if !crate::sys::readable(self.0.as_raw_fd(), 0) {
            return 0;
        }
        self.0.read(out).unwrap_or(0)
    }
    fn wait(&mut self) {
        crate::sys::readable(self.0.as_raw_fd(), 1000);
    }
}

/// A connection to xenstore, and a second handle on the device to wait on.
pub struct Xs {
    /// The client.
    pub c: Xenstore<Xenbus>,
    dev: File,
}

impl Xs {
    /// Opens `/dev/xen/xenbus`.
    pub fn open() -> Result<Self, String> {
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/xen/xenbus")
            .map_err(|e| format!("/dev/xen/xenbus: {e} (is this a Xen-aware domain?)"))?;
        let dev = f.try_clone().map_err(|e| format!("/dev/xen/xenbus: {e}"))?;
        Ok(Self { c: Xenstore::new(Xenbus(f)), dev })
    }

    /// Reads a value (`None` if it does not exist or may not be read).
    pub fn read(&mut self, path: &str) -> Option<String> {
        self.c.read(path).ok()
    }

    /// Lists the children of `path` (empty if none).
    pub fn dir(&mut self, path: &str) -> Vec<String> {
        self.c.directory(path).unwrap_or_default()
    }

    /// Writes a value.
    pub fn write(&mut self, path: &str, value: &str) -> Result<(), String> {
        self.c.write(path, value).map_err(|e| format!("write {path}: {e}"))
    }

    /// Registers a watch.
    pub fn watch(&mut self, path: &str, token: &str) -> Result<(), String> {
        self.c.watch(path, token).map_err(|e| format!("watch {path}: {e}"))
    }

    /// Waits up to `ms` for watch events and drains them; returns how many arrived.
    pub fn wait_events(&mut self, ms: i32) -> usize {
        let mut n = 0;
        if crate::sys::readable(self.dev.as_raw_fd(), ms) {
            while let Ok(Some(_)) = self.c.try_watch() {
                n += 1;
            }
        }
        n
    }
}
