//! The xenstore client: the wire codec of `io/xs_wire.h` and a synchronous client over any
//! [`Transport`] (on a guest, the store ring and its event channel).
//!
//! One request is outstanding at a time. Replies are matched by request id; watch events that
//! arrive meanwhile are queued and handed out by [`Xenstore::next_watch`]. The server is not
//! trusted: a header announcing more than [`xs::PAYLOAD_MAX`] bytes, a reply of the wrong type
//! or a malformed payload is a [`XsError::Protocol`] error, never a panic.

use alloc::collections::VecDeque;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use xen_abi::xs;

/// A xenstore failure.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum XsError {
    /// The server answered with an error (`"ENOENT"`, `"EACCES"`, `"EAGAIN"`, ...).
    Server(String),
    /// The server broke the protocol.
    Protocol(&'static str),
    /// The request does not fit in one message, or a path or value holds a NUL.
    BadRequest,
}

impl XsError {
    /// The server's errno name, if it sent one.
    pub fn errno(&self) -> Option<&str> {
        match self {
            Self::Server(e) => Some(e),
            _ => None,
        }
    }
}

impl core::fmt::Display for XsError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Server(e) => write!(f, "xenstore error {e}"),
            Self::Protocol(w) => write!(f, "xenstore protocol error: {w}"),
            Self::BadRequest => write!(f, "xenstore request too long or holding a NUL"),
        }
    }
}

/// A message header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// Message type (`xs::READ`, ...).
    pub ty: u32,
    /// Request id, echoed in the reply.
    pub req_id: u32,
    /// Transaction id (0: none).
    pub tx_id: u32,
    /// Payload length.
    pub len: u32,
}

/// Encodes one request: each of `parts` followed by a NUL, except a `WRITE`'s value (the last
/// part), which goes as is.
pub fn encode(ty: u32, req_id: u32, tx_id: u32, parts: &[&[u8]]) -> Result<Vec<u8>, XsError> {
    let mut payload = Vec::new();
    for (i, p) in parts.iter().enumerate() {
        let raw_value = ty == xs::WRITE && i == parts.len() - 1 && i > 0;
        if !raw_value && p.contains(&0) {
            return Err(XsError::BadRequest);
        }
        payload.extend_from_slice(p);
        if !raw_value {
            payload.push(0);
        }
    }
    if payload.len() > xs::PAYLOAD_MAX {
        return Err(XsError::BadRequest);
    }
    let mut m = Vec::with_capacity(xs::HEADER_SIZE + payload.len());
    for v in [ty, req_id, tx_id, payload.len() as u32] {
        m.extend_from_slice(&v.to_le_bytes());
    }
    m.extend_from_slice(&payload);
    Ok(m)
}

/// Splits reassembled input into messages.
#[derive(Default)]
pub struct Decoder {
    buf: Vec<u8>,
}

impl Decoder {
    /// Adds bytes read from the ring.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete message, if one has arrived.
    pub fn next_message(&mut self) -> Result<Option<(Header, Vec<u8>)>, XsError> {
        if self.buf.len() < xs::HEADER_SIZE {
            return Ok(None);
        }
        let w = |i: usize| u32::from_le_bytes([self.buf[i], self.buf[i + 1], self.buf[i + 2], self.buf[i + 3]]);
        let h = Header { ty: w(0), req_id: w(4), tx_id: w(8), len: w(12) };
        if h.len as usize > xs::PAYLOAD_MAX {
            return Err(XsError::Protocol("payload longer than 4096 bytes"));
        }
        let end = xs::HEADER_SIZE + h.len as usize;
        if self.buf.len() < end {
            return Ok(None);
        }
        let payload = self.buf[xs::HEADER_SIZE..end].to_vec();
        self.buf.drain(..end);
        Ok(Some((h, payload)))
    }
}

/// NUL-terminated strings of a payload (a trailing piece without NUL is kept too).
pub fn split_strings(p: &[u8]) -> Result<Vec<String>, XsError> {
    let body = p.strip_suffix(&[0]).unwrap_or(p);
    if body.is_empty() {
        return Ok(Vec::new());
    }
    body.split(|b| *b == 0)
        .map(|s| String::from_utf8(s.to_vec()).map_err(|_| XsError::Protocol("string is not UTF-8")))
        .collect()
}

/// A watch event: the path that changed and the token given to [`Xenstore::watch`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WatchEvent {
    /// Path of the change (relative if the watch was registered relative).
    pub path: String,
    /// The watch's token.
    pub token: String,
}

/// How the client reaches the server.
pub trait Transport {
    /// Queues bytes for the server; returns how many were taken (0 when its ring is full).
    fn send(&mut self, bytes: &[u8]) -> usize;
    /// Copies bytes the server has produced; returns how many (0 when none).
    fn recv(&mut self, out: &mut [u8]) -> usize;
    /// Tells the server there is work and waits until it may have answered (a notification,
    /// an interrupt, or simply a pause).
    fn wait(&mut self);
}

/// A transaction id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tx(pub u32);

/// No transaction.
pub const NO_TX: Tx = Tx(0);

/// A xenstore connection.
pub struct Xenstore<T: Transport> {
    t: T,
    dec: Decoder,
    next_id: u32,
    events: VecDeque<WatchEvent>,
}

impl<T: Transport> Xenstore<T> {
    /// A client on transport `t`.
    pub fn new(t: T) -> Self {
        Self { t, dec: Decoder::default(), next_id: 1, events: VecDeque::new() }
    }

    fn pump(&mut self) -> Result<bool, XsError> {
        let mut buf = [0u8; 256];
        let mut got = false;
        loop {
            let n = self.t.recv(&mut buf);
            if n == 0 {
                return Ok(got);
            }
            got = true;
            self.dec.push(&buf[..n.min(buf.len())]);
        }
    }

    /// Sends `bytes` as they are (a test of the server's decoder: they need not be a valid
    /// message), then waits for the next message that is not a watch event and returns its
    /// type, request id and payload. A later request still works once the server answered.
    pub fn raw_exchange(&mut self, bytes: &[u8]) -> Result<(u32, u32, Vec<u8>), XsError> {
        let mut sent = 0;
        while sent < bytes.len() {
            let n = self.t.send(&bytes[sent..]);
            sent += n;
            if n == 0 {
                self.t.wait();
            }
        }
        loop {
            while let Some((h, payload)) = self.dec.next_message()? {
                if h.ty != xs::WATCH_EVENT {
                    return Ok((h.ty, h.req_id, payload));
                }
            }
            if !self.pump()? {
                self.t.wait();
            }
        }
    }

    /// Sends a request and returns the payload of its reply.
    pub fn request(&mut self, ty: u32, tx: Tx, parts: &[&[u8]]) -> Result<Vec<u8>, XsError> {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        let msg = encode(ty, id, tx.0, parts)?;
        let mut sent = 0;
        while sent < msg.len() {
            let n = self.t.send(&msg[sent..]);
            sent += n;
            if n == 0 {
                self.t.wait();
            }
        }
        loop {
            while let Some((h, payload)) = self.dec.next_message()? {
                if h.ty == xs::WATCH_EVENT {
                    let v = split_strings(&payload)?;
                    if v.len() >= 2 {
                        self.events.push_back(WatchEvent { path: v[0].clone(), token: v[1].clone() });
                    }
                    continue;
                }
                if h.req_id != id {
                    return Err(XsError::Protocol("reply to a request that was not made"));
                }
                if h.ty == xs::ERROR_MSG {
                    let e = split_strings(&payload)?.into_iter().next().unwrap_or_default();
                    return Err(XsError::Server(e));
                }
                if h.ty != ty {
                    return Err(XsError::Protocol("reply of another type"));
                }
                return Ok(payload);
            }
            if !self.pump()? {
                self.t.wait();
            }
        }
    }

    /// Reads a node.
    pub fn read(&mut self, path: &str) -> Result<String, XsError> {
        self.read_in(NO_TX, path)
    }

    /// Reads a node inside a transaction.
    pub fn read_in(&mut self, tx: Tx, path: &str) -> Result<String, XsError> {
        let v = self.request(xs::READ, tx, &[path.as_bytes()])?;
        String::from_utf8(v).map_err(|_| XsError::Protocol("value is not UTF-8"))
    }

    /// Writes a node (creating it and missing parents).
    pub fn write(&mut self, path: &str, value: &str) -> Result<(), XsError> {
        self.write_in(NO_TX, path, value)
    }

    /// Writes a node inside a transaction.
    pub fn write_in(&mut self, tx: Tx, path: &str, value: &str) -> Result<(), XsError> {
        self.request(xs::WRITE, tx, &[path.as_bytes(), value.as_bytes()]).map(drop)
    }

    /// Creates a directory node.
    pub fn mkdir(&mut self, path: &str) -> Result<(), XsError> {
        self.request(xs::MKDIR, NO_TX, &[path.as_bytes()]).map(drop)
    }

    /// Removes a node and everything below it.
    pub fn rm(&mut self, path: &str) -> Result<(), XsError> {
        self.request(xs::RM, NO_TX, &[path.as_bytes()]).map(drop)
    }

    /// The names of a node's children.
    pub fn directory(&mut self, path: &str) -> Result<Vec<String>, XsError> {
        split_strings(&self.request(xs::DIRECTORY, NO_TX, &[path.as_bytes()])?)
    }

    /// Sets a node's permissions: `perms` in xenstore's text form (`"n1"`, `"r2"`, `"b3"`, the
    /// first naming the owner and everyone else's access).
    pub fn set_perms(&mut self, path: &str, perms: &[&str]) -> Result<(), XsError> {
        let mut parts: Vec<&[u8]> = alloc::vec![path.as_bytes()];
        parts.extend(perms.iter().map(|p| p.as_bytes()));
        self.request(xs::SET_PERMS, NO_TX, &parts).map(drop)
    }

    /// Registers a watch on `path` (it fires once at once, then on each change at or below it).
    pub fn watch(&mut self, path: &str, token: &str) -> Result<(), XsError> {
        self.request(xs::WATCH, NO_TX, &[path.as_bytes(), token.as_bytes()]).map(drop)
    }

    /// Removes a watch.
    pub fn unwatch(&mut self, path: &str, token: &str) -> Result<(), XsError> {
        self.events.retain(|e| e.token != token);
        self.request(xs::UNWATCH, NO_TX, &[path.as_bytes(), token.as_bytes()]).map(drop)
    }

    /// Starts a transaction.
    pub fn transaction_start(&mut self) -> Result<Tx, XsError> {
        let v = split_strings(&self.request(xs::TRANSACTION_START, NO_TX, &[b""])?)?;
        v.first()
            .and_then(|s| s.parse::<u32>().ok())
            .filter(|id| *id != 0)
            .map(Tx)
            .ok_or(XsError::Protocol("bad transaction id"))
    }

    /// Ends a transaction, committing it when `commit`. A conflict is `Server("EAGAIN")`: start
    /// again.
    pub fn transaction_end(&mut self, tx: Tx, commit: bool) -> Result<(), XsError> {
        self.request(xs::TRANSACTION_END, tx, &[if commit { b"T" } else { b"F" }]).map(drop)
    }

    /// Runs `f` in a transaction, retrying it on conflicts (up to 16 times).
    pub fn transaction<R>(&mut self, mut f: impl FnMut(&mut Self, Tx) -> Result<R, XsError>) -> Result<R, XsError> {
        for _ in 0..16 {
            let tx = self.transaction_start()?;
            let r = match f(self, tx) {
                Ok(r) => r,
                Err(e) => {
                    let _ = self.transaction_end(tx, false);
                    return Err(e);
                }
            };
            match self.transaction_end(tx, true) {
                Ok(()) => return Ok(r),
                Err(XsError::Server(e)) if e == "EAGAIN" => continue,
                Err(e) => return Err(e),
            }
        }
        Err(XsError::Server("EAGAIN".to_string()))
    }

    /// A queued watch event, if any (reads what the server has sent without waiting).
    pub fn try_watch(&mut self) -> Result<Option<WatchEvent>, XsError> {
        self.queue_events()?;
        Ok(self.events.pop_front())
    }

    /// Queues the watch events the server has sent (without waiting).
    fn queue_events(&mut self) -> Result<(), XsError> {
        self.pump()?;
        while let Some((h, payload)) = self.dec.next_message()? {
            if h.ty != xs::WATCH_EVENT {
                return Err(XsError::Protocol("reply without a request"));
            }
            let v = split_strings(&payload)?;
            if v.len() >= 2 {
                self.events.push_back(WatchEvent { path: v[0].clone(), token: v[1].clone() });
            }
        }
        Ok(())
    }

    /// Whether a watch event with `token` arrived (reads what the server has sent without
    /// waiting; those events are taken, others stay queued for [`Store::try_watch`]).
    pub fn take_watch(&mut self, token: &str) -> Result<bool, XsError> {
        self.queue_events()?;
        let before = self.events.len();
        self.events.retain(|e| e.token != token);
        Ok(self.events.len() != before)
    }

    /// Waits for the next watch event.
    pub fn next_watch(&mut self) -> Result<WatchEvent, XsError> {
        loop {
            if let Some(e) = self.try_watch()? {
                return Ok(e);
            }
            self.t.wait();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;
    use std::cell::RefCell;
    use std::rc::Rc;
    use xenstore::{Perm, Store};

    #[test]
    fn encoding_matches_xs_wire() {
        let m = encode(xs::WRITE, 7, 3, &[b"a/b", b"v\0x"]).unwrap();
        assert_eq!(&m[..16], &[11, 0, 0, 0, 7, 0, 0, 0, 3, 0, 0, 0, 7, 0, 0, 0]);
        assert_eq!(&m[16..], b"a/b\0v\0x");
        let m = encode(xs::WATCH, 1, 0, &[b"p", b"tok"]).unwrap();
        assert_eq!(&m[16..], b"p\0tok\0");
        assert_eq!(encode(xs::READ, 1, 0, &[b"a\0b"]), Err(XsError::BadRequest));
        assert_eq!(encode(xs::READ, 1, 0, &[&[b'a'; 4096]]), Err(XsError::BadRequest));
    }

    #[test]
    fn decoder_reassembles_split_messages_and_refuses_oversize() {
        let mut d = Decoder::default();
        let m = encode(xs::READ, 9, 0, &[b"hello"]).unwrap();
        d.push(&m[..5]);
        assert_eq!(d.next_message(), Ok(None));
        d.push(&m[5..]);
        d.push(&m[..3]);
        let (h, p) = d.next_message().unwrap().unwrap();
        assert_eq!((h.ty, h.req_id, h.len), (xs::READ, 9, 6));
        assert_eq!(p, b"hello\0");
        assert_eq!(d.next_message(), Ok(None));
        let mut d = Decoder::default();
        d.push(&[2, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 16, 0, 0]);
        assert!(matches!(d.next_message(), Err(XsError::Protocol(_))));
    }

    #[test]
    fn strings_split_on_nul() {
        assert_eq!(split_strings(b"a\0bc\0").unwrap(), vec!["a", "bc"]);
        assert_eq!(split_strings(b"").unwrap(), Vec::<String>::new());
        assert_eq!(split_strings(b"x").unwrap(), vec!["x"]);
        assert!(split_strings(&[0xff, 0]).is_err());
    }

    /// The client against the hypervisor's own xenstore server (crate `xenstore`), byte for byte.
    struct Loop {
        store: Rc<RefCell<Store>>,
        dom: u16,
        out: Vec<u8>,
        max_chunk: usize,
    }

    impl Transport for Loop {
        fn send(&mut self, bytes: &[u8]) -> usize {
            let n = bytes.len().min(self.max_chunk);
            self.store.borrow_mut().feed(self.dom, &bytes[..n])
        }
        fn recv(&mut self, out: &mut [u8]) -> usize {
            let mut s = self.store.borrow_mut();
            self.out.extend(s.take_output(self.dom, 4096));
            let n = out.len().min(self.out.len()).min(self.max_chunk);
            out[..n].copy_from_slice(&self.out[..n]);
            self.out.drain(..n);
            n
        }
        fn wait(&mut self) {}
    }

    fn client(store: &Rc<RefCell<Store>>, dom: u16) -> Xenstore<Loop> {
        store.borrow_mut().introduce(dom);
        Xenstore::new(Loop { store: Rc::clone(store), dom, out: Vec::new(), max_chunk: 7 })
    }

    #[test]
    fn read_write_directory_watch_and_transactions_against_the_server() {
        let store = Rc::new(RefCell::new(Store::new(Default::default())));
        let own = |d: u16| [Perm { dom: d, access: 0 }];
        store.borrow_mut().tool_write("/local/domain/1", b"", &own(1));
        store.borrow_mut().tool_write("/local/domain/1/name", b"hello", &own(1));
        store.borrow_mut().tool_write("/local/domain/2", b"", &own(2));
        let mut a = client(&store, 1);
        let mut b = client(&store, 2);
        assert_eq!(a.read("name").unwrap(), "hello");
        assert_eq!(a.read("/local/domain/1/name").unwrap(), "hello");
        assert_eq!(a.read("nope"), Err(XsError::Server("ENOENT".into())));
        assert_eq!(b.read("/local/domain/1/name").unwrap_err().errno(), Some("EACCES"));
        a.write("data/x", "1").unwrap();
        a.write("data/y", "2").unwrap();
        let mut d = a.directory("data").unwrap();
        d.sort();
        assert_eq!(d, vec!["x", "y"]);

        // A watch fires once at registration, then on a change; events that arrive while a
        // request is outstanding are queued.
        b.watch("/local/domain/1/data/shared", "t").unwrap();
        assert_eq!(
            b.next_watch().unwrap(),
            WatchEvent { path: "/local/domain/1/data/shared".into(), token: "t".into() }
        );
        a.write("data/shared", "v").unwrap();
        a.set_perms("data/shared", &["n1", "r2"]).unwrap();
        assert_eq!(b.read("/local/domain/1/data/shared").unwrap(), "v");
        assert_eq!(b.next_watch().unwrap().token, "t");

        // A transaction that conflicts fails with EAGAIN; `transaction` retries it.
        let t = a.transaction_start().unwrap();
        assert_eq!(a.read_in(t, "data/x").unwrap(), "1");
        a.write_in(t, "data/x", "10").unwrap();
        let mut a2 = Xenstore::new(Loop { store: Rc::clone(&store), dom: 1, out: Vec::new(), max_chunk: 64 });
        a2.write("data/x", "5").unwrap();
        assert_eq!(a.transaction_end(t, true), Err(XsError::Server("EAGAIN".into())));
        let mut tries = 0;
        let v = a
            .transaction(|c, t| {
                tries += 1;
                let v: u32 = c.read_in(t, "data/x")?.parse().unwrap();
                c.write_in(t, "data/x", &(v + 1).to_string())?;
                Ok(v + 1)
            })
            .unwrap();
        assert_eq!((v, tries), (6, 1));
        assert_eq!(a.read("data/x").unwrap(), "6");
        b.unwatch("/local/domain/1/data/shared", "t").unwrap();
        a.write("data/shared", "w").unwrap();
        assert_eq!(b.try_watch().unwrap(), None);
    }
}
