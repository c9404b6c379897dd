//! A xenstore server as a pure state machine: the node tree with owners and permissions,
//! watches, transactions with conflict detection, per-domain quotas and the wire protocol of
//! `io/xs_wire.h`. It does no I/O: the hypervisor feeds it the bytes a domain put in its
//! request ring ([`Store::feed`]) and copies out what it produced ([`Store::take_output`]).
//!
//! Semantics follow `docs/misc/xenstore.txt` and what Linux relies on (docs/xen-abi.md §6):
//! relative paths resolve under `/local/domain/<domid>`; a watch fires once when registered
//! and then for every change at or below its path, with a relative event path when it was
//! registered relatively; transactions work on a snapshot (a constant-time copy of the
//! persistent node map, `rpds`) and fail with `EAGAIN` at commit if anything they read or
//! wrote changed meanwhile; writes inside a transaction fire watches only at commit.
//!
//! Invariants: every node's parent exists; a domain's owned nodes, value and path bytes,
//! watches (count and bytes), open transactions and what they record, and queued output stay
//! within [`Quota`], so a flooding domain only hurts itself and the heap it can take is
//! bounded; the toolstack API (`tool_*`, used by the hypervisor) bypasses permissions.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

use alloc::collections::{BTreeMap, BTreeSet, VecDeque};
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use rpds::RedBlackTreeMapSync;
use xen_abi::xs;

/// The toolstack's domain id: owner of the skeleton and of each domain's home.
pub const TOOLSTACK: u16 = 0;

/// Read access.
pub const PERM_READ: u8 = 1;
/// Write access.
pub const PERM_WRITE: u8 = 2;

/// One permission entry: the first of a node's list is its owner (and the access of every
/// domain not listed); the others grant access to one domain each.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Perm {
    /// Domain id.
    pub dom: u16,
    /// [`PERM_READ`] | [`PERM_WRITE`].
    pub access: u8,
}

impl Perm {
    fn letter(self) -> char {
        match self.access & 3 {
            0 => 'n',
            PERM_READ => 'r',
            PERM_WRITE => 'w',
            _ => 'b',
        }
    }

    fn parse(s: &str) -> Option<Perm> {
        let mut c = s.chars();
        let access = match c.next()? {
            'n' => 0,
            'r' => PERM_READ,
            'w' => PERM_WRITE,
            'b' => PERM_READ | PERM_WRITE,
            _ => return None,
        };
        let dom: u16 = c.as_str().parse().ok()?;
        Some(Perm { dom, access })
    }
}

/// Per-domain limits.
#[derive(Clone, Copy, Debug)]
pub struct Quota {
    /// Nodes a domain may own.
    pub nodes: usize,
    /// Bytes of values a domain may own.
    pub bytes: usize,
    /// Bytes of node paths a domain may own, and separately bytes of its watches' paths and
    /// tokens (a path is up to 3072 bytes: without this, 1000 nodes or 128 watches could
    /// hold megabytes of names).
    pub names: usize,
    /// Bytes a domain's open transactions may hold: what they record (every path they read
    /// or changed) and the map nodes their changes copied (the snapshot itself is shared with
    /// the store, so starting one costs nothing however large the store is).
    pub snapshots: usize,
    /// The same, for every domain's transactions together. The toolstack is bound by neither.
    pub all_snapshots: usize,
    /// Watches a domain may register.
    pub watches: usize,
    /// Transactions a domain may have open.
    pub transactions: usize,
    /// Bytes of replies and events queued for a domain that does not read them; events beyond
    /// it are dropped (replies never are: a domain has at most one request in flight per
    /// message it sent, and requests stop being read while output is over the limit).
    pub output: usize,
}

impl Default for Quota {
    fn default() -> Self {
        Self {
            nodes: 1000,
            bytes: 256 * 1024,
            names: 128 * 1024,
            snapshots: 512 * 1024,
            all_snapshots: 2 * 1024 * 1024,
            watches: 128,
            transactions: 8,
            output: 64 * 1024,
        }
    }
}

#[derive(Clone, Debug)]
struct Node {
    value: Vec<u8>,
    perms: Vec<Perm>,
    gen: u64,
}

impl Node {
    fn owner(&self) -> u16 {
        self.perms[0].dom
    }
}

/// The node tree (the store, or a transaction's snapshot of it). The nodes live in a
/// persistent map (`rpds`, structural sharing): a transaction's snapshot is a constant-time
/// copy, and its changes copy only the map nodes on their paths.
#[derive(Clone, Debug)]
struct Tree {
    nodes: RedBlackTreeMapSync<String, Node>,
    /// Nodes and value bytes owned per domain.
    owned: BTreeMap<u16, (usize, usize)>,
    /// Path bytes owned per domain.
    names: BTreeMap<u16, usize>,
}

impl Default for Tree {
    fn default() -> Self {
        Self { nodes: RedBlackTreeMapSync::new_sync(), owned: BTreeMap::new(), names: BTreeMap::new() }
    }
}

/// What a transaction's record of one path costs (the path, a map entry, a generation); a
/// change inside a transaction also copies the persistent map's nodes on its path.
const RECORD_OVERHEAD: usize = 64;
const CHANGE_OVERHEAD: usize = 1024;

fn parent_of(path: &str) -> Option<&str> {
    if path == "/" {
        return None;
    }
    match path.rfind('/') {
        Some(0) => Some("/"),
        Some(i) => Some(&path[..i]),
        None => None,
    }
}

fn is_below(path: &str, ancestor: &str) -> bool {
    ancestor == "/" && path != "/"
        || path.len() > ancestor.len() && path.starts_with(ancestor) && path.as_bytes()[ancestor.len()] == b'/'
}

impl Tree {
    fn account(&mut self, dom: u16, nodes: isize, bytes: isize) {
        let e = self.owned.entry(dom).or_insert((0, 0));
        e.0 = (e.0 as isize + nodes).max(0) as usize;
        e.1 = (e.1 as isize + bytes).max(0) as usize;
    }

    fn account_name(&mut self, dom: u16, path: &str, add: bool) {
        let e = self.names.entry(dom).or_insert(0);
        *e = if add { e.saturating_add(path.len()) } else { e.saturating_sub(path.len()) };
    }

    fn insert(&mut self, path: &str, node: Node) {
        self.account(node.owner(), 1, node.value.len() as isize);
        self.account_name(node.owner(), path, true);
        if let Some(old) = self.nodes.get(path) {
            let (owner, len) = (old.owner(), old.value.len());
            self.account(owner, -1, -(len as isize));
            self.account_name(owner, path, false);
        }
        self.nodes.insert_mut(path.to_string(), node);
    }

    fn remove(&mut self, path: &str) -> Option<Node> {
        let old = self.nodes.get(path)?.clone();
        self.nodes.remove_mut(path);
        self.account(old.owner(), -1, -(old.value.len() as isize));
        self.account_name(old.owner(), path, false);
        Some(old)
    }

    /// Every node strictly below `path`, in order, with the length of `path`'s prefix.
    fn below<'a>(&'a self, path: &str) -> (usize, impl Iterator<Item = &'a String> + 'a) {
        let prefix = if path == "/" { String::from("/") } else { format!("{path}/") };
        let len = prefix.len();
        let it = self.nodes.range(prefix.clone()..).map(|(k, _)| k).take_while(move |k| k.starts_with(&prefix));
        (len, it)
    }

    fn children(&self, path: &str) -> Vec<String> {
        let (len, it) = self.below(path);
        it.filter(|k| k.len() > len && !k[len..].contains('/')).map(|k| String::from(&k[len..])).collect()
    }

    fn subtree(&self, path: &str) -> Vec<String> {
        let mut v: Vec<String> = self.below(path).1.cloned().collect();
        v.push(path.to_string());
        v
    }

    /// The nearest existing node at or above `path`.
    fn nearest<'a>(&self, path: &'a str) -> (&'a str, &Node) {
        let mut p = path;
        loop {
            if let Some(n) = self.nodes.get(p) {
                return (p, n);
            }
            p = parent_of(p).unwrap_or("/");
        }
    }
}

/// Access `dom` has to a node with `perms`.
fn access_of(perms: &[Perm], dom: u16) -> u8 {
    if perms[0].dom == dom {
        return PERM_READ | PERM_WRITE;
    }
    perms[1..].iter().find(|p| p.dom == dom).map_or(perms[0].access, |p| p.access)
}

/// Errors, named as on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// Malformed request.
    Inval,
    /// Permission denied.
    Acces,
    /// No such node / watch / transaction.
    NoEnt,
    /// Node exists.
    Exist,
    /// Transaction conflict: retry.
    Again,
    /// Quota exceeded.
    NoSpc,
    /// Message or value too large.
    TooBig,
    /// Operation not supported.
    NoSys,
}

impl Error {
    /// The error's name on the wire.
    pub fn name(self) -> &'static str {
        match self {
            Error::Inval => "EINVAL",
            Error::Acces => "EACCES",
            Error::NoEnt => "ENOENT",
            Error::Exist => "EEXIST",
            Error::Again => "EAGAIN",
            Error::NoSpc => "ENOSPC",
            Error::TooBig => "E2BIG",
            Error::NoSys => "ENOSYS",
        }
    }
}

type Result<T> = core::result::Result<T, Error>;

#[derive(Clone, Debug)]
struct Watch {
    /// The path as the domain gave it (relative or absolute, or `@special`).
    given: String,
    /// Absolute form.
    abs: String,
    token: String,
}

#[derive(Debug)]
struct Tx {
    tree: Tree,
    /// Generation of every node the transaction looked at or changed, as of its start
    /// (0: absent).
    seen: BTreeMap<String, u64>,
    /// Changes to fire at commit: (path, removed subtree?).
    events: Vec<(String, bool)>,
    /// Paths whose state must be copied to the store at commit.
    dirty: BTreeSet<String>,
    /// Bytes its records (`seen`, `dirty`, `events`) and its copied map nodes hold, charged to
    /// the domain's `Quota::snapshots` while it is open.
    cost: usize,
}

#[derive(Debug, Default)]
struct Conn {
    watches: Vec<Watch>,
    txs: BTreeMap<u32, Tx>,
    next_tx: u32,
    /// Bytes of a request not yet complete.
    inbuf: Vec<u8>,
    /// Bytes of an oversized request still to discard.
    skip: usize,
    /// Replies and events waiting for the domain's response ring.
    out: VecDeque<u8>,
    /// Watch events dropped because `out` was over quota.
    dropped: u64,
}

/// The whole store: the tree, and one connection per introduced domain.
pub struct Store {
    tree: Tree,
    gen: u64,
    conns: BTreeMap<u16, Conn>,
    quota: Quota,
}

/// Counters the hypervisor reports.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    /// Nodes the domain owns.
    pub nodes: usize,
    /// Value bytes the domain owns.
    pub bytes: usize,
    /// Path bytes the domain owns.
    pub names: usize,
    /// Snapshot bytes its open transactions hold.
    pub snapshots: usize,
    /// Registered watches.
    pub watches: usize,
    /// Open transactions.
    pub transactions: usize,
    /// Queued output bytes.
    pub output: usize,
    /// Events dropped over the output quota.
    pub dropped: u64,
}

fn home(dom: u16) -> String {
    format!("/local/domain/{dom}")
}

fn valid_path(p: &str) -> bool {
    let ok_chars = p.bytes().all(|c| c.is_ascii_alphanumeric() || b"-/_@.".contains(&c));
    ok_chars && !p.is_empty() && p.len() <= 3072 && (p == "/" || !p.ends_with('/')) && !p.contains("//")
}

impl Store {
    /// A store holding `/`, `/local` and `/local/domain`, owned by the toolstack and readable
    /// by nobody else.
    pub fn new(quota: Quota) -> Self {
        let mut s = Self { tree: Tree::default(), gen: 0, conns: BTreeMap::new(), quota };
        for p in ["/", "/local", "/local/domain"] {
            s.gen += 1;
            let n = Node { value: Vec::new(), perms: alloc::vec![Perm { dom: TOOLSTACK, access: 0 }], gen: s.gen };
            s.tree.insert(p, n);
        }
        s
    }

    /// Opens a connection for `dom` (a domain with a xenstore ring).
    pub fn introduce(&mut self, dom: u16) {
        self.conns.entry(dom).or_default();
    }

    /// Starts `dom`'s connection afresh (its domain restarts): its watches, transactions and
    /// half-read requests and unsent replies are dropped. Nodes stay; the toolstack rewrites them.
    pub fn reset_connection(&mut self, dom: u16) {
        if let Some(c) = self.conns.get_mut(&dom) {
            *c = Conn::default();
        }
    }

    /// Resource use of `dom`.
    pub fn usage(&self, dom: u16) -> Usage {
        let (nodes, bytes) = self.tree.owned.get(&dom).copied().unwrap_or((0, 0));
        let c = self.conns.get(&dom);
        Usage {
            nodes,
            bytes,
            names: self.tree.names.get(&dom).copied().unwrap_or(0),
            snapshots: c.map_or(0, |c| c.txs.values().map(|t| t.cost).sum()),
            watches: c.map_or(0, |c| c.watches.len()),
            transactions: c.map_or(0, |c| c.txs.len()),
            output: c.map_or(0, |c| c.out.len()),
            dropped: c.map_or(0, |c| c.dropped),
        }
    }

    // ----- toolstack API (no permission checks) -----

    /// Writes `path` (absolute) as the toolstack, creating missing parents with `perms`.
    pub fn tool_write(&mut self, path: &str, value: &[u8], perms: &[Perm]) {
        let mut missing = Vec::new();
        let mut p = path;
        while !self.tree.nodes.contains_key(p) {
            missing.push(p.to_string());
            p = parent_of(p).unwrap_or("/");
        }
        for m in missing.iter().rev() {
            self.gen += 1;
            let n = Node { value: Vec::new(), perms: perms.to_vec(), gen: self.gen };
            self.tree.insert(m, n);
            self.touch_parent(m);
        }
        self.gen += 1;
        let n = Node { value: value.to_vec(), perms: perms.to_vec(), gen: self.gen };
        self.tree.insert(path, n);
        self.fire(path, false);
    }

    /// Whether `dom` watches `path` or a node below it (a backend still bound to a frontend's
    /// device watches the frontend's `state`).
    pub fn watches_below(&self, dom: u16, path: &str) -> bool {
        self.conns.get(&dom).is_some_and(|c| {
            c.watches.iter().any(|w| w.abs == path || w.abs.strip_prefix(path).is_some_and(|r| r.starts_with('/')))
        })
    }

    /// Replaces the permissions of an existing node `path`, as the toolstack (watches fire).
    pub fn tool_set_perms(&mut self, path: &str, perms: &[Perm]) {
        if perms.is_empty() {
            return;
        }
        if let Some(old) = self.tree.nodes.get(path) {
            self.gen += 1;
            let n = Node { value: old.value.clone(), perms: perms.to_vec(), gen: self.gen };
            self.tree.insert(path, n);
            self.fire(path, false);
        }
    }

    /// Reads `path` (absolute) as the toolstack.
    pub fn tool_read(&self, path: &str) -> Option<&[u8]> {
        self.tree.nodes.get(path).map(|n| n.value.as_slice())
    }

    /// Removes `path` and everything below it, as the toolstack.
    pub fn tool_rm(&mut self, path: &str) {
        if self.tree.nodes.contains_key(path) {
            for p in self.tree.subtree(path) {
                self.tree.remove(&p);
            }
            self.touch_parent(path);
            self.fire(path, true);
        }
    }

    fn touch_parent(&mut self, path: &str) {
        if let Some(par) = parent_of(path) {
            self.gen += 1;
            if let Some(n) = self.tree.nodes.get_mut(par) {
                n.gen = self.gen;
            }
        }
    }

    // ----- wire protocol -----

    /// Takes bytes from `dom`'s request ring and processes every complete request. Returns
    /// how many bytes were taken: fewer than given while `dom`'s output is over quota (the
    /// rest stays in its ring until it reads its replies).
    pub fn feed(&mut self, dom: u16, mut bytes: &[u8]) -> usize {
        let mut taken = 0;
        while !bytes.is_empty() {
            let Some(c) = self.conns.get_mut(&dom) else { return taken };
            if c.out.len() > self.quota.output {
                break;
            }
            if c.skip > 0 {
                let n = c.skip.min(bytes.len());
                c.skip -= n;
                bytes = &bytes[n..];
                taken += n;
                continue;
            }
            let want = if c.inbuf.len() < xs::HEADER_SIZE {
                xs::HEADER_SIZE - c.inbuf.len()
            } else {
                let len = xen_abi::rd32(&c.inbuf, 12).unwrap_or(0) as usize;
                xs::HEADER_SIZE + len - c.inbuf.len()
            };
            let n = want.min(bytes.len());
            c.inbuf.extend_from_slice(&bytes[..n]);
            bytes = &bytes[n..];
            taken += n;
            if c.inbuf.len() == xs::HEADER_SIZE {
                let len = xen_abi::rd32(&c.inbuf, 12).unwrap_or(0) as usize;
                if len > xs::PAYLOAD_MAX {
                    let hdr = core::mem::take(&mut c.inbuf);
                    c.skip = len;
                    self.reply_err(dom, &hdr, Error::TooBig);
                    continue;
                }
            }
            let len = xen_abi::rd32(&c.inbuf, 12).unwrap_or(u32::MAX) as usize;
            if c.inbuf.len() >= xs::HEADER_SIZE && c.inbuf.len() == xs::HEADER_SIZE + len {
                let msg = core::mem::take(&mut c.inbuf);
                self.process(dom, &msg);
            }
        }
        taken
    }

    /// Whether `dom` has output waiting.
    pub fn has_output(&self, dom: u16) -> bool {
        self.conns.get(&dom).is_some_and(|c| !c.out.is_empty())
    }

    /// Takes up to `max` bytes of `dom`'s output.
    pub fn take_output(&mut self, dom: u16, max: usize) -> Vec<u8> {
        match self.conns.get_mut(&dom) {
            Some(c) => {
                let n = max.min(c.out.len());
                c.out.drain(..n).collect()
            }
            None => Vec::new(),
        }
    }

    /// Domains with output waiting.
    pub fn domains_with_output(&self) -> Vec<u16> {
        self.conns.iter().filter(|(_, c)| !c.out.is_empty()).map(|(d, _)| *d).collect()
    }

    fn send(&mut self, dom: u16, ty: u32, req_id: u32, tx_id: u32, payload: &[u8]) {
        if let Some(c) = self.conns.get_mut(&dom) {
            let mut h = [0u8; xs::HEADER_SIZE];
            xen_abi::wr32(&mut h, 0, ty);
            xen_abi::wr32(&mut h, 4, req_id);
            xen_abi::wr32(&mut h, 8, tx_id);
            xen_abi::wr32(&mut h, 12, payload.len() as u32);
            c.out.extend(h);
            c.out.extend(payload);
        }
    }

    fn reply_err(&mut self, dom: u16, hdr: &[u8], e: Error) {
        let mut p = Vec::from(e.name().as_bytes());
        p.push(0);
        let (req, tx) = (xen_abi::rd32(hdr, 4).unwrap_or(0), xen_abi::rd32(hdr, 8).unwrap_or(0));
        self.send(dom, xs::ERROR_MSG, req, tx, &p);
    }

    fn process(&mut self, dom: u16, msg: &[u8]) {
        let ty = xen_abi::rd32(msg, 0).unwrap_or(u32::MAX);
        let req = xen_abi::rd32(msg, 4).unwrap_or(0);
        let tx = xen_abi::rd32(msg, 8).unwrap_or(0);
        let body = &msg[xs::HEADER_SIZE..];
        match self.handle(dom, ty, tx, body) {
            Ok(out) => {
                let reply_tx = if ty == xs::TRANSACTION_START { 0 } else { tx };
                self.send(dom, ty, req, reply_tx, &out);
                if ty == xs::WATCH {
                    // Initial fire, after the reply.
                    if let Some(w) = self.conns.get(&dom).and_then(|c| c.watches.last()).cloned() {
                        self.send_event(dom, &w.given, &w.token);
                    }
                }
            }
            Err(e) => self.reply_err(dom, msg, e),
        }
    }

    fn send_event(&mut self, dom: u16, path: &str, token: &str) {
        let mut p = Vec::with_capacity(path.len() + token.len() + 2);
        p.extend_from_slice(path.as_bytes());
        p.push(0);
        p.extend_from_slice(token.as_bytes());
        p.push(0);
        let quota = self.quota.output;
        if let Some(c) = self.conns.get_mut(&dom) {
            if c.out.len() + p.len() + xs::HEADER_SIZE > quota {
                c.dropped += 1;
                return;
            }
        }
        self.send(dom, xs::WATCH_EVENT, 0, 0, &p);
    }

    /// Whether `dom`'s open transactions hold their budget (`Quota::snapshots`), or every
    /// domain's together hold `Quota::all_snapshots`: requests inside a transaction are then
    /// refused with ENOSPC until it ends (each request adds a bounded amount, so the overshoot
    /// is at most one request's worth).
    fn over_tx_budget(&self, dom: u16) -> bool {
        let held = |c: &Conn| c.txs.values().map(|t| t.cost).sum::<usize>();
        let mine = self.conns.get(&dom).map_or(0, held);
        let all: usize = self.conns.iter().filter(|(d, _)| **d != TOOLSTACK).map(|(_, c)| held(c)).sum();
        mine >= self.quota.snapshots || all >= self.quota.all_snapshots
    }

    /// The absolute form of `p` for `dom`.
    fn abs(dom: u16, p: &str) -> Result<String> {
        let a = if p.starts_with('/') { p.to_string() } else { format!("{}/{p}", home(dom)) };
        if valid_path(&a) && !p.is_empty() && p.len() <= 3072 {
            Ok(a)
        } else {
            Err(Error::Inval)
        }
    }

    fn handle(&mut self, dom: u16, ty: u32, tx: u32, body: &[u8]) -> Result<Vec<u8>> {
        // Every argument is a NUL-terminated string, except the value that ends a WRITE (as
        // Xen's xenstored: a request whose last string lacks its NUL is EINVAL).
        if ty != xs::WRITE && !body.is_empty() && body.last() != Some(&0) {
            return Err(Error::Inval);
        }
        if tx != 0 && dom != TOOLSTACK && ty != xs::TRANSACTION_END && self.over_tx_budget(dom) {
            return Err(Error::NoSpc);
        }
        let args = split_args(body);
        let arg = |i: usize| args.get(i).copied().ok_or(Error::Inval);
        let ok = || Ok(Vec::from(&b"OK\0"[..]));
        match ty {
            xs::READ => {
                let p = Self::abs(dom, str_arg(arg(0)?)?)?;
                let t = self.view(dom, tx, &p)?;
                let n = t.nodes.get(&p);
                Self::check(t, dom, &p, PERM_READ, n.is_some())?;
                Ok(n.map(|n| n.value.clone()).unwrap_or_default())
            }
            xs::DIRECTORY => {
                let p = Self::abs(dom, str_arg(arg(0)?)?)?;
                let t = self.view(dom, tx, &p)?;
                Self::check(t, dom, &p, PERM_READ, t.nodes.contains_key(&p))?;
                let mut out = Vec::new();
                for c in t.children(&p) {
                    out.extend_from_slice(c.as_bytes());
                    out.push(0);
                }
                Ok(out)
            }
            xs::GET_PERMS => {
                let p = Self::abs(dom, str_arg(arg(0)?)?)?;
                let t = self.view(dom, tx, &p)?;
                let n = t.nodes.get(&p);
                Self::check(t, dom, &p, PERM_READ, n.is_some())?;
                let mut out = Vec::new();
                for pm in &n.ok_or(Error::NoEnt)?.perms {
                    out.extend_from_slice(format!("{}{}", pm.letter(), pm.dom).as_bytes());
                    out.push(0);
                }
                Ok(out)
            }
            xs::WRITE => {
                // The value is everything after the first NUL and may itself contain NULs.
                let cut = body.iter().position(|&b| b == 0).ok_or(Error::Inval)?;
                let p = Self::abs(dom, str_arg(&body[..cut])?)?;
                self.write(dom, tx, &p, Some(&body[cut + 1..]))?;
                ok()
            }
            xs::MKDIR => {
                let p = Self::abs(dom, str_arg(arg(0)?)?)?;
                self.write(dom, tx, &p, None)?;
                ok()
            }
            xs::RM => {
                let p = Self::abs(dom, str_arg(arg(0)?)?)?;
                self.rm(dom, tx, &p)?;
                ok()
            }
            xs::SET_PERMS => {
                let p = Self::abs(dom, str_arg(arg(0)?)?)?;
                let perms: Vec<Perm> = args[1..]
                    .iter()
                    .filter(|a| !a.is_empty())
                    .map(|a| str_arg(a).ok().and_then(Perm::parse).ok_or(Error::Inval))
                    .collect::<Result<_>>()?;
                self.set_perms(dom, tx, &p, perms)?;
                ok()
            }
            xs::WATCH => {
                let (given, token) = (str_arg(arg(0)?)?, str_arg(arg(1)?)?);
                let abs = if given.starts_with('@') { given.to_string() } else { Self::abs(dom, given)? };
                let (quota, names) = (self.quota.watches, self.quota.names);
                let c = self.conns.get_mut(&dom).ok_or(Error::Acces)?;
                if c.watches.iter().any(|w| w.given == given && w.token == token) {
                    return Err(Error::Exist);
                }
                let bytes = |g: &str, a: &str, t: &str| g.len() + a.len() + t.len();
                let held: usize = c.watches.iter().map(|w| bytes(&w.given, &w.abs, &w.token)).sum();
                if c.watches.len() >= quota || held + bytes(given, &abs, token) > names {
                    return Err(Error::NoSpc);
                }
                c.watches.push(Watch { given: given.to_string(), abs, token: token.to_string() });
                ok()
            }
            xs::UNWATCH => {
                let (given, token) = (str_arg(arg(0)?)?, str_arg(arg(1)?)?);
                let c = self.conns.get_mut(&dom).ok_or(Error::Acces)?;
                let i = c.watches.iter().position(|w| w.given == given && w.token == token).ok_or(Error::NoEnt)?;
                c.watches.remove(i);
                ok()
            }
            xs::TRANSACTION_START => {
                if tx != 0 {
                    return Err(Error::Inval);
                }
                let quota = self.quota.transactions;
                let c = self.conns.get_mut(&dom).ok_or(Error::Acces)?;
                if c.txs.len() >= quota {
                    return Err(Error::NoSpc);
                }
                let snapshot = self.tree.clone();
                c.next_tx = c.next_tx.wrapping_add(1).max(1);
                while c.txs.contains_key(&c.next_tx) {
                    c.next_tx = c.next_tx.wrapping_add(1).max(1);
                }
                let id = c.next_tx;
                let t =
                    Tx { tree: snapshot, seen: BTreeMap::new(), events: Vec::new(), dirty: BTreeSet::new(), cost: 0 };
                c.txs.insert(id, t);
                let mut out = Vec::from(id.to_string().as_bytes());
                out.push(0);
                Ok(out)
            }
            xs::TRANSACTION_END => {
                let commit = match str_arg(arg(0)?)? {
                    "T" => true,
                    "F" => false,
                    _ => return Err(Error::Inval),
                };
                let t = self.conns.get_mut(&dom).and_then(|c| c.txs.remove(&tx)).ok_or(Error::NoEnt)?;
                if commit {
                    self.commit(t)?;
                }
                ok()
            }
            xs::GET_DOMAIN_PATH => {
                let d: u16 = str_arg(arg(0)?)?.parse().map_err(|_| Error::Inval)?;
                let mut out = Vec::from(home(d).as_bytes());
                out.push(0);
                Ok(out)
            }
            xs::IS_DOMAIN_INTRODUCED => {
                let d: u16 = str_arg(arg(0)?)?.parse().map_err(|_| Error::Inval)?;
                Ok(Vec::from(if self.conns.contains_key(&d) { &b"T\0"[..] } else { &b"F\0"[..] }))
            }
            xs::RESET_WATCHES => {
                if let Some(c) = self.conns.get_mut(&dom) {
                    c.watches.clear();
                    c.txs.clear();
                }
                ok()
            }
            xs::CONTROL | xs::INTRODUCE | xs::RELEASE | xs::RESUME | xs::SET_TARGET => Err(Error::Acces),
            xs::DIRECTORY_PART => Err(Error::NoSys),
            _ => Err(Error::Inval),
        }
    }

    /// The tree a request works on: the store, or the transaction's snapshot (recording what
    /// it looked at).
    fn view(&mut self, dom: u16, tx: u32, path: &str) -> Result<&Tree> {
        if tx == 0 {
            return Ok(&self.tree);
        }
        let t = self.conns.get_mut(&dom).and_then(|c| c.txs.get_mut(&tx)).ok_or(Error::NoEnt)?;
        if !t.seen.contains_key(path) {
            let gen = t.tree.nodes.get(path).map_or(0, |n| n.gen);
            t.seen.insert(path.to_string(), gen);
            t.cost += path.len() + RECORD_OVERHEAD;
        }
        Ok(&t.tree)
    }

    /// Permission check: `need` on the node at `path` (or, for a missing node, on its nearest
    /// existing ancestor, answering ENOENT when that grants it).
    fn check(t: &Tree, dom: u16, path: &str, need: u8, exists: bool) -> Result<()> {
        let (_, n) = t.nearest(path);
        if access_of(&n.perms, dom) & need != need {
            return Err(Error::Acces);
        }
        if exists {
            Ok(())
        } else {
            Err(Error::NoEnt)
        }
    }

    /// The tree a change applies to, and for a transaction the record of start generations
    /// (filled by [`note`] before anything is modified).
    fn tree_mut(&mut self, dom: u16, tx: u32) -> Result<(&mut Tree, Option<Record<'_>>)> {
        if tx == 0 {
            return Ok((&mut self.tree, None));
        }
        let t = self.conns.get_mut(&dom).and_then(|c| c.txs.get_mut(&tx)).ok_or(Error::NoEnt)?;
        Ok((&mut t.tree, Some(Record { seen: &mut t.seen, cost: &mut t.cost })))
    }

    fn write(&mut self, dom: u16, tx: u32, path: &str, value: Option<&[u8]>) -> Result<()> {
        let quota = self.quota;
        if value.is_some_and(|v| v.len() > xs::PAYLOAD_MAX) {
            return Err(Error::TooBig);
        }
        self.gen += 1;
        let gen = self.gen;
        let (t, seen) = self.tree_mut(dom, tx)?;
        let exists = t.nodes.contains_key(path);
        if exists && value.is_none() {
            return Ok(()); // MKDIR of an existing node
        }
        let (_, near) = t.nearest(path);
        if access_of(&near.perms, dom) & PERM_WRITE == 0 {
            return Err(Error::Acces);
        }
        // Quotas: nodes this write creates and bytes it adds, charged to the owner.
        let mut missing = Vec::new();
        let mut p = path;
        while !t.nodes.contains_key(p) {
            missing.push(p.to_string());
            p = parent_of(p).unwrap_or("/");
        }
        let inherited = t.nodes.get(p).map(|n| n.perms.clone()).unwrap_or_default();
        let new_perms = |mut v: Vec<Perm>| {
            if dom != TOOLSTACK {
                v[0].dom = dom;
            }
            v
        };
        let (owned_nodes, owned_bytes) = t.owned.get(&dom).copied().unwrap_or((0, 0));
        let vlen = value.map_or(0, <[u8]>::len);
        let old_len = t.nodes.get(path).map_or(0, |n| n.value.len());
        if owned_nodes + missing.len() > quota.nodes || owned_bytes + vlen > quota.bytes + old_len {
            return Err(Error::NoSpc);
        }
        let owned_names = t.names.get(&dom).copied().unwrap_or(0);
        if dom != TOOLSTACK && owned_names + missing.iter().map(String::len).sum::<usize>() > quota.names {
            return Err(Error::NoSpc);
        }
        let mut touched: Vec<&str> = missing.iter().map(String::as_str).collect();
        touched.push(path);
        touched.push(p);
        note(t, seen, &touched);
        let mut changed = Vec::new();
        for m in missing.iter().rev() {
            let n = Node { value: Vec::new(), perms: new_perms(inherited.clone()), gen };
            t.insert(m, n);
            if let Some(par) = parent_of(m) {
                if let Some(pn) = t.nodes.get_mut(par) {
                    pn.gen = gen;
                }
                changed.push(par.to_string());
            }
            changed.push(m.clone());
        }
        if let Some(v) = value {
            let Some(mut n) = t.nodes.get(path).cloned() else { return Err(Error::NoEnt) };
            n.value = v.to_vec();
            n.gen = gen;
            t.insert(path, n);
            changed.push(path.to_string());
        }
        self.after_change(dom, tx, path, false, &changed);
        Ok(())
    }

    fn rm(&mut self, dom: u16, tx: u32, path: &str) -> Result<()> {
        if path == "/" || path == "/local" || path == "/local/domain" {
            return Err(Error::Acces);
        }
        self.gen += 1;
        let gen = self.gen;
        let (t, seen) = self.tree_mut(dom, tx)?;
        if !t.nodes.contains_key(path) {
            // Removing what is not there succeeds when the parent exists (xenstored).
            let par = parent_of(path).unwrap_or("/");
            return Self::check(t, dom, par, PERM_WRITE, t.nodes.contains_key(par));
        }
        if t.nodes.get(path).is_none_or(|n| access_of(&n.perms, dom) & PERM_WRITE == 0) {
            return Err(Error::Acces);
        }
        let gone = t.subtree(path);
        let mut touched: Vec<&str> = gone.iter().map(String::as_str).collect();
        touched.extend(parent_of(path));
        note(t, seen, &touched);
        for p in &gone {
            t.remove(p);
        }
        let mut changed = gone;
        if let Some(par) = parent_of(path) {
            if let Some(pn) = t.nodes.get_mut(par) {
                pn.gen = gen;
            }
            changed.push(par.to_string());
        }
        self.after_change(dom, tx, path, true, &changed);
        Ok(())
    }

    fn set_perms(&mut self, dom: u16, tx: u32, path: &str, perms: Vec<Perm>) -> Result<()> {
        if perms.is_empty() {
            return Err(Error::Inval);
        }
        self.gen += 1;
        let gen = self.gen;
        let (t, seen) = self.tree_mut(dom, tx)?;
        let n = t.nodes.get(path).ok_or(Error::NoEnt)?;
        if access_of(&n.perms, dom) & PERM_WRITE == 0 {
            return Err(Error::Acces);
        }
        // Only the toolstack hands a node to another owner.
        if dom != TOOLSTACK && perms[0].dom != n.owner() {
            return Err(Error::Acces);
        }
        let mut n = n.clone();
        note(t, seen, &[path]);
        n.perms = perms;
        n.gen = gen;
        t.insert(path, n);
        self.after_change(dom, tx, path, false, &[path.to_string()]);
        Ok(())
    }

    /// Records a change: fires watches now, or inside a transaction remembers it for commit.
    fn after_change(&mut self, dom: u16, tx: u32, path: &str, removed: bool, changed: &[String]) {
        if tx == 0 {
            self.fire(path, removed);
            return;
        }
        if let Some(t) = self.conns.get_mut(&dom).and_then(|c| c.txs.get_mut(&tx)) {
            for p in changed {
                if t.dirty.insert(p.clone()) {
                    t.cost += p.len() + CHANGE_OVERHEAD;
                }
            }
            t.events.push((path.to_string(), removed));
            t.cost += path.len() + RECORD_OVERHEAD;
        }
    }

    fn commit(&mut self, t: Tx) -> Result<()> {
        for (p, g) in &t.seen {
            if self.tree.nodes.get(p).map_or(0, |n| n.gen) != *g {
                return Err(Error::Again);
            }
        }
        self.gen += 1;
        for p in &t.dirty {
            match t.tree.nodes.get(p) {
                Some(n) => {
                    let mut n = n.clone();
                    n.gen = self.gen;
                    self.tree.insert(p, n);
                }
                None => {
                    self.tree.remove(p);
                }
            }
        }
        for (p, removed) in t.events {
            self.fire(&p, removed);
        }
        Ok(())
    }

    /// Sends the watch events for a change at `path` (and, for a removal, to watches below it).
    fn fire(&mut self, path: &str, removed: bool) {
        let mut events: Vec<(u16, String, String)> = Vec::new();
        for (&dom, c) in &self.conns {
            for w in &c.watches {
                let hit_above = w.abs == path || is_below(path, &w.abs);
                let hit_below = removed && is_below(&w.abs, path);
                if !(hit_above || hit_below) {
                    continue;
                }
                // Only to domains that may read the node (removals are always reported).
                if !removed {
                    if let Some(n) = self.tree.nodes.get(path) {
                        if access_of(&n.perms, dom) & PERM_READ == 0 {
                            continue;
                        }
                    }
                }
                let abs_event = if hit_above { path } else { w.abs.as_str() };
                let event = if w.given.starts_with('/') {
                    abs_event.to_string()
                } else {
                    let h = home(dom);
                    match abs_event.strip_prefix(&h).and_then(|r| r.strip_prefix('/')) {
                        Some(rel) => rel.to_string(),
                        None => abs_event.to_string(),
                    }
                };
                events.push((dom, event, w.token.clone()));
            }
        }
        for (dom, e, tok) in events {
            self.send_event(dom, &e, &tok);
        }
    }
}

/// A transaction's record of what it looked at, and what the record costs.
struct Record<'a> {
    seen: &'a mut BTreeMap<String, u64>,
    cost: &'a mut usize,
}

/// Records the generation (0: absent) of each path in a transaction's snapshot the first time
/// the transaction touches it, before it changes anything.
fn note(t: &Tree, rec: Option<Record<'_>>, paths: &[&str]) {
    if let Some(rec) = rec {
        for p in paths {
            if !rec.seen.contains_key(*p) {
                rec.seen.insert((*p).to_string(), t.nodes.get(*p).map_or(0, |n| n.gen));
                *rec.cost += p.len() + RECORD_OVERHEAD;
            }
        }
    }
}

fn split_args(body: &[u8]) -> Vec<&[u8]> {
    let mut v: Vec<&[u8]> = body.split(|&b| b == 0).collect();
    if body.last() == Some(&0) {
        v.pop();
    }
    v
}

fn str_arg(b: &[u8]) -> Result<&str> {
    core::str::from_utf8(b).map_err(|_| Error::Inval)
}

#[cfg(test)]
mod tests;
