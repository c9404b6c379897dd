//! Event channels, 2-level ABI: every domain's port table, the `EVTCHNOP_*` state machine, and
//! the delivery algorithm over shared_info / vcpu_info (docs/xen-abi.md §3.5, §4.3).
//!
//! Domains are numbered by their index `d`; their Xen domain id is `d + 1` ([`domid_of`]), so
//! id 0 (the toolstack's in Xen) is nobody. The hypervisor's own services (xenstore, PV
//! console) are the far end of ports in state [`State::Service`].
//!
//! Invariants: port 0 is never handed out; an interdomain pair always points at each other
//! (closing one end makes the other `Unbound` toward the closer); a domain can only bind to
//! an unbound port that waits for it. Bits in guest memory are only changed through
//! [`EventWords`], whose implementation must use atomic read-modify-writes.

use crate::plan::MAX_DOMAINS;
use alloc::vec;
use alloc::vec::Vec;
use xen_abi::{errno, evtchn as ev};

/// Ports per domain (of the 4096 the 2-level ABI can address).
pub const MAX_PORTS: u32 = 256;

/// The Xen domain id of domain index `d`.
pub fn domid_of(d: usize) -> u16 {
    d as u16 + 1
}

/// The domain index of Xen domain id `id` (`DOMID_SELF` resolves to `me`).
pub fn index_of(id: u16, me: usize, count: usize) -> Option<usize> {
    if id == xen_abi::domid::SELF {
        return Some(me);
    }
    let d = usize::from(id).checked_sub(1)?;
    (d < count).then_some(d)
}

/// A hypervisor-side endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Service {
    /// The xenstore server.
    Store,
    /// The PV console backend.
    Console,
}

/// State of one port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Not allocated.
    Free,
    /// Waiting for domain index `remote` to bind to it.
    Unbound {
        /// Who may bind.
        remote: usize,
    },
    /// Connected to `port` of domain index `dom`.
    Interdomain {
        /// Peer domain index.
        dom: usize,
        /// Peer port.
        port: u32,
    },
    /// Connected to a hypervisor service.
    Service(Service),
    /// Bound to a virtual IRQ (`EVTCHNOP_bind_virq`).
    Virq(u32),
}

#[derive(Clone, Copy, Debug)]
struct Slot {
    state: State,
    vcpu: u8,
}

/// Where a send goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// Set `port` pending in domain index `dom`.
    Port(usize, u32),
    /// A hypervisor service was notified.
    Service(Service),
    /// Nobody listens (unbound): dropped, as in Xen.
    Nobody,
}

/// Every domain's port table.
pub struct Table {
    /// Heap-allocated (too large for a boot stack), one row of [`MAX_PORTS`] per domain.
    ports: Vec<Slot>,
    domains: usize,
}

type R<T> = Result<T, i64>;

impl Table {
    /// Tables for `domains` domains, all ports free.
    pub fn new(domains: usize) -> Self {
        let domains = domains.min(MAX_DOMAINS);
        let free = Slot { state: State::Free, vcpu: 0 };
        Self { ports: vec![free; domains * MAX_PORTS as usize], domains }
    }

    /// Index of port `p` of domain `d` in `ports`, if both are in range.
    #[inline]
    fn index(&self, d: usize, p: u32) -> R<usize> {
        if p == 0 || p >= MAX_PORTS || d >= self.domains {
            return Err(-errno::EINVAL);
        }
        Ok(d * MAX_PORTS as usize + p as usize)
    }

    #[inline]
    fn slot(&self, d: usize, p: u32) -> R<&Slot> {
        let i = self.index(d, p)?;
        self.ports.get(i).ok_or(-errno::EINVAL)
    }

    fn slot_mut(&mut self, d: usize, p: u32) -> R<&mut Slot> {
        let i = self.index(d, p)?;
        self.ports.get_mut(i).ok_or(-errno::EINVAL)
    }

    /// Domain `d`'s ports (0 included, never used).
    fn row(&self, d: usize) -> Option<&[Slot]> {
        self.ports.get(d.checked_mul(MAX_PORTS as usize)?..)?.get(..MAX_PORTS as usize)
    }

    /// State of a port (`Free` for out-of-range ones).
    #[inline]
    pub fn state(&self, d: usize, p: u32) -> State {
        self.slot(d, p).map_or(State::Free, |s| s.state)
    }

    /// The vCPU that is notified for a port.
    #[inline]
    pub fn vcpu(&self, d: usize, p: u32) -> usize {
        self.slot(d, p).map_or(0, |s| usize::from(s.vcpu))
    }

    fn alloc(&mut self, d: usize, state: State) -> R<u32> {
        let slots = self.row(d).ok_or(-errno::ESRCH)?;
        let p = (1..MAX_PORTS).find(|&p| slots[p as usize].state == State::Free).ok_or(-errno::ENOSPC)?;
        *self.slot_mut(d, p)? = Slot { state, vcpu: 0 };
        Ok(p)
    }

    /// Binds a new port of `d` to a hypervisor service (at domain build).
    pub fn bind_service(&mut self, d: usize, s: Service) -> R<u32> {
        self.alloc(d, State::Service(s))
    }

    /// `EVTCHNOP_alloc_unbound`: a port of `d` waiting for `remote`.
    pub fn alloc_unbound(&mut self, d: usize, remote: usize) -> R<u32> {
        if remote >= self.domains {
            return Err(-errno::ESRCH);
        }
        self.alloc(d, State::Unbound { remote })
    }

    /// `EVTCHNOP_bind_interdomain`: binds a new port of `d` to `rport` of `rd`, which must be
    /// unbound and waiting for `d`. The new port is left pending by the caller (Xen does).
    pub fn bind_interdomain(&mut self, d: usize, rd: usize, rport: u32) -> R<u32> {
        if rd >= self.domains {
            return Err(-errno::ESRCH);
        }
        match self.slot(rd, rport)?.state {
            State::Unbound { remote } if remote == d => {}
            _ => return Err(-errno::EINVAL),
        }
        let p = self.alloc(d, State::Interdomain { dom: rd, port: rport })?;
        if rd == d && p == rport {
            return Err(-errno::EINVAL);
        }
        self.slot_mut(rd, rport)?.state = State::Interdomain { dom: d, port: p };
        Ok(p)
    }

    /// `EVTCHNOP_close`.
    pub fn close(&mut self, d: usize, p: u32) -> R<()> {
        let s = self.slot(d, p)?.state;
        match s {
            State::Free => return Err(-errno::EINVAL),
            State::Interdomain { dom, port } => {
                if let Ok(peer) = self.slot_mut(dom, port) {
                    if peer.state == (State::Interdomain { dom: d, port: p }) {
                        peer.state = State::Unbound { remote: d };
                    }
                }
            }
            _ => {}
        }
        *self.slot_mut(d, p)? = Slot { state: State::Free, vcpu: 0 };
        Ok(())
    }

    /// `EVTCHNOP_bind_virq`: a new port of `d` for virtual IRQ `virq` on `vcpu`. A global
    /// virtual IRQ binds on vCPU 0 only; each (virq, vCPU) binds once (`-EEXIST`).
    pub fn bind_virq(&mut self, d: usize, virq: u32, vcpu: usize, nr_vcpus: usize) -> R<u32> {
        if virq >= ev::NR_VIRQS || (ev::virq_is_global(virq) && vcpu != 0) {
            return Err(-errno::EINVAL);
        }
        if vcpu >= nr_vcpus {
            return Err(-errno::ENOENT);
        }
        if self.virq_port(d, virq, vcpu).is_some() {
            return Err(-errno::EEXIST);
        }
        let p = self.alloc(d, State::Virq(virq))?;
        self.slot_mut(d, p)?.vcpu = vcpu as u8;
        Ok(p)
    }

    /// The port of `d` bound to `virq` for `vcpu` (for a global one: wherever it is bound).
    pub fn virq_port(&self, d: usize, virq: u32, vcpu: usize) -> Option<u32> {
        let slots = self.row(d)?;
        (1..MAX_PORTS).find(|&p| {
            let s = &slots[p as usize];
            s.state == State::Virq(virq) && (ev::virq_is_global(virq) || usize::from(s.vcpu) == vcpu)
        })
    }

    /// `EVTCHNOP_send`: where the notification goes.
    #[inline]
    pub fn send(&self, d: usize, p: u32) -> R<Target> {
        match self.slot(d, p)?.state {
            State::Free | State::Virq(_) => Err(-errno::EINVAL),
            State::Unbound { .. } => Ok(Target::Nobody),
            State::Interdomain { dom, port } => Ok(Target::Port(dom, port)),
            State::Service(s) => Ok(Target::Service(s)),
        }
    }

    /// `EVTCHNOP_bind_vcpu`.
    pub fn bind_vcpu(&mut self, d: usize, p: u32, vcpu: usize, nr_vcpus: usize) -> R<()> {
        if vcpu >= nr_vcpus {
            return Err(-errno::ENOENT);
        }
        let s = self.slot_mut(d, p)?;
        match s.state {
            State::Free => return Err(-errno::EINVAL),
            State::Virq(virq) if !ev::virq_is_global(virq) => return Err(-errno::EINVAL),
            _ => {}
        }
        s.vcpu = vcpu as u8;
        Ok(())
    }

    /// `EVTCHNOP_status`: (status, vcpu, word 1, word 2) as the ABI lays them out.
    pub fn status(&self, d: usize, p: u32) -> R<(u32, u32, u32, u32)> {
        if p >= MAX_PORTS {
            return Err(-errno::EINVAL);
        }
        if p == 0 {
            return Ok((ev::STATUS_CLOSED, 0, 0, 0));
        }
        let s = self.slot(d, p)?;
        let v = u32::from(s.vcpu);
        Ok(match s.state {
            State::Free => (ev::STATUS_CLOSED, v, 0, 0),
            State::Unbound { remote } => (ev::STATUS_UNBOUND, v, u32::from(domid_of(remote)), 0),
            State::Interdomain { dom, port } => (ev::STATUS_INTERDOMAIN, v, u32::from(domid_of(dom)), port),
            // A service looks like a port bound to the toolstack's domain.
            State::Service(_) => (ev::STATUS_INTERDOMAIN, v, 0, 0),
            State::Virq(virq) => (ev::STATUS_VIRQ, v, virq, 0),
        })
    }

    /// Frees every port of `d` (domain restart), unbinding its peers.
    pub fn reset(&mut self, d: usize) {
        for p in 1..MAX_PORTS {
            if self.state(d, p) != State::Free {
                let _ = self.close(d, p);
            }
        }
    }
}

/// Atomic bit operations on one domain's shared_info and a vCPU's vcpu_info.
pub trait EventWords {
    /// Atomically sets bit `bit` of `evtchn_pending`; returns its old value.
    fn set_pending(&mut self, bit: u32) -> bool;
    /// Bit `bit` of `evtchn_pending`.
    fn pending(&self, bit: u32) -> bool;
    /// Bit `bit` of `evtchn_mask`.
    fn masked(&self, bit: u32) -> bool;
    /// Atomically clears bit `bit` of `evtchn_mask`; returns its old value.
    fn clear_mask(&mut self, bit: u32) -> bool;
    /// Atomically sets bit `bit` of the vCPU's `evtchn_pending_sel`; returns its old value.
    fn set_sel(&mut self, bit: u32) -> bool;
    /// Atomically sets the vCPU's `evtchn_upcall_pending`; returns its old value.
    fn set_upcall(&mut self) -> bool;
}

/// Marks `port` pending (docs/xen-abi.md §4.3). True when the vCPU's upcall went 0 → 1 and
/// the event PPI must be raised.
pub fn deliver(w: &mut impl EventWords, port: u32) -> bool {
    if w.set_pending(port) || w.masked(port) || w.set_sel(port / 64) {
        return false;
    }
    !w.set_upcall()
}

/// `EVTCHNOP_unmask`: true when a pending event was released and the PPI must be raised.
pub fn unmask(w: &mut impl EventWords, port: u32) -> bool {
    if !w.clear_mask(port) || !w.pending(port) || w.set_sel(port / 64) {
        return false;
    }
    !w.set_upcall()
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fake {
        pending: [u64; 64],
        mask: [u64; 64],
        sel: u64,
        upcall: bool,
    }

    impl Default for Fake {
        fn default() -> Self {
            Self { pending: [0; 64], mask: [0; 64], sel: 0, upcall: false }
        }
    }

    fn tas(w: &mut u64, bit: u32) -> bool {
        let old = *w & (1 << bit) != 0;
        *w |= 1 << bit;
        old
    }

    impl EventWords for Fake {
        fn set_pending(&mut self, b: u32) -> bool {
            tas(&mut self.pending[(b / 64) as usize], b % 64)
        }
        fn pending(&self, b: u32) -> bool {
            self.pending[(b / 64) as usize] & (1 << (b % 64)) != 0
        }
        fn masked(&self, b: u32) -> bool {
            self.mask[(b / 64) as usize] & (1 << (b % 64)) != 0
        }
        fn clear_mask(&mut self, b: u32) -> bool {
            let w = &mut self.mask[(b / 64) as usize];
            let old = *w & (1 << (b % 64)) != 0;
            *w &= !(1 << (b % 64));
            old
        }
        fn set_sel(&mut self, b: u32) -> bool {
            tas(&mut self.sel, b)
        }
        fn set_upcall(&mut self) -> bool {
            core::mem::replace(&mut self.upcall, true)
        }
    }

    #[test]
    fn delivery_follows_the_2l_rules() {
        let mut f = Fake::default();
        assert!(deliver(&mut f, 70)); // 0 -> 1: raise
        assert!(!deliver(&mut f, 70)); // already pending
        assert!(!deliver(&mut f, 71)); // same word, upcall already pending
        assert_eq!(f.sel, 1 << 1);
        // Masked: latched only, released by unmask.
        let mut f = Fake::default();
        f.mask[0] = 1 << 5;
        assert!(!deliver(&mut f, 5));
        assert!(f.pending(5) && f.sel == 0 && !f.upcall);
        assert!(unmask(&mut f, 5));
        assert!(!unmask(&mut f, 5)); // not masked any more
                                     // Unmask of a port with nothing pending does nothing.
        let mut f = Fake::default();
        f.mask[0] = 1 << 6;
        assert!(!unmask(&mut f, 6));
    }

    #[test]
    fn interdomain_lifecycle() {
        let mut t = Table::new(3);
        let p = t.alloc_unbound(1, 2).unwrap();
        assert_eq!(p, 1);
        assert_eq!(t.send(1, p), Ok(Target::Nobody));
        // Only the awaited domain may bind.
        assert_eq!(t.bind_interdomain(0, 1, p), Err(-errno::EINVAL));
        let q = t.bind_interdomain(2, 1, p).unwrap();
        assert_eq!(t.send(2, q), Ok(Target::Port(1, p)));
        assert_eq!(t.send(1, p), Ok(Target::Port(2, q)));
        assert_eq!(t.status(1, p), Ok((ev::STATUS_INTERDOMAIN, 0, 3, q)));
        // Binding twice fails: the port is no longer unbound.
        assert_eq!(t.bind_interdomain(2, 1, p), Err(-errno::EINVAL));
        t.close(2, q).unwrap();
        assert_eq!(t.state(1, p), State::Unbound { remote: 2 });
        assert_eq!(t.close(2, q), Err(-errno::EINVAL));
        // Reset unbinds peers too.
        let q = t.bind_interdomain(2, 1, p).unwrap();
        t.reset(1);
        assert_eq!(t.state(2, q), State::Unbound { remote: 1 });
    }

    #[test]
    fn bad_arguments_are_errors() {
        let mut t = Table::new(2);
        assert_eq!(t.send(0, 0), Err(-errno::EINVAL));
        assert_eq!(t.send(0, MAX_PORTS), Err(-errno::EINVAL));
        assert_eq!(t.send(0, u32::MAX), Err(-errno::EINVAL));
        assert_eq!(t.alloc_unbound(0, 5), Err(-errno::ESRCH));
        assert_eq!(t.bind_interdomain(0, 7, 1), Err(-errno::ESRCH));
        assert_eq!(t.close(0, 3), Err(-errno::EINVAL));
        let p = t.bind_service(0, Service::Store).unwrap();
        assert_eq!(t.send(0, p), Ok(Target::Service(Service::Store)));
        assert_eq!(t.bind_vcpu(0, p, 2, 2), Err(-errno::ENOENT));
        t.bind_vcpu(0, p, 1, 2).unwrap();
        assert_eq!(t.vcpu(0, p), 1);
        for _ in 2..MAX_PORTS {
            t.alloc_unbound(0, 1).unwrap();
        }
        assert_eq!(t.alloc_unbound(0, 1), Err(-errno::ENOSPC));
        assert_eq!(index_of(xen_abi::domid::SELF, 1, 2), Some(1));
        assert_eq!(index_of(0, 1, 2), None);
        assert_eq!(index_of(2, 0, 2), Some(1));
        assert_eq!(index_of(3, 0, 2), None);
    }

    #[test]
    fn virq_binding() {
        use xen_abi::evtchn::{VIRQ_DEBUG, VIRQ_DOM_EXC, VIRQ_TIMER};
        let mut t = Table::new(2);
        // Per-vCPU: once per vCPU; global: vCPU 0 only.
        let a = t.bind_virq(0, VIRQ_TIMER, 0, 2).unwrap();
        let b = t.bind_virq(0, VIRQ_TIMER, 1, 2).unwrap();
        assert_ne!(a, b);
        assert_eq!(t.bind_virq(0, VIRQ_TIMER, 1, 2), Err(-errno::EEXIST));
        assert_eq!(t.bind_virq(0, VIRQ_DEBUG, 2, 2), Err(-errno::ENOENT));
        assert_eq!(t.bind_virq(0, VIRQ_DOM_EXC, 1, 2), Err(-errno::EINVAL));
        assert_eq!(t.bind_virq(0, xen_abi::evtchn::NR_VIRQS, 0, 2), Err(-errno::EINVAL));
        let g = t.bind_virq(0, VIRQ_DOM_EXC, 0, 2).unwrap();
        assert_eq!((t.virq_port(0, VIRQ_TIMER, 1), t.vcpu(0, b)), (Some(b), 1));
        assert_eq!(t.virq_port(1, VIRQ_TIMER, 0), None);
        // A global one may move to another vCPU and is still found; a per-vCPU one may not move.
        t.bind_vcpu(0, g, 1, 2).unwrap();
        assert_eq!(t.virq_port(0, VIRQ_DOM_EXC, 0), Some(g));
        assert_eq!(t.bind_vcpu(0, a, 1, 2), Err(-errno::EINVAL));
        assert_eq!(t.status(0, g), Ok((xen_abi::evtchn::STATUS_VIRQ, 1, VIRQ_DOM_EXC, 0)));
        // Sending on a virq port is refused; closing frees the binding.
        assert_eq!(t.send(0, a), Err(-errno::EINVAL));
        t.close(0, a).unwrap();
        assert_eq!(t.bind_virq(0, VIRQ_TIMER, 0, 2), Ok(a));
        t.reset(0);
        assert_eq!(t.virq_port(0, VIRQ_DOM_EXC, 0), None);
    }
}
