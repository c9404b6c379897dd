//! Interrupt plumbing between the physical GIC and the domains' virtual GICs: physical IRQs
//! taken at EL2, the per-vCPU queues of interrupts waiting for a list register, delivery to
//! vCPUs on other pCPUs (queue + kick SGI), and list-register refill and maintenance.
//!
//! Also the lock-free copies the hottest paths read instead of taking a vGIC's lock: the
//! delivery entries of the virtual timer and the event-channel upcall per vCPU, and the
//! distributor's control and identification words per domain.
//!
//! Invariants: a pCPU's list registers are only written by that pCPU ([`flush`], called on
//! every way back into its guest, or a direct injection when its queue is empty); other pCPUs
//! only append to its queue under the queue's lock and kick it. The lock-free copies are
//! written only under the vGIC's lock, after every change to it. Lock order: a domain's vGIC
//! lock, then a queue lock; never the reverse.

use crate::boot::MAX_CPUS;
use crate::domain;
use crate::gic::{self, MAINTENANCE, SGI_KICK, SPURIOUS};
use crate::sync::SpinLock;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, Ordering};
use hyp_core::plan::{MAX_DOMAINS, MAX_VCPUS};
use hyp_core::vgic::{self, Lr, Pending, PhysOp, Queue, Raised, Sink, Vdist, VTIMER_PPI};

/// Each domain's virtual distributor, set at boot; changed only through [`with_vdist`].
static VDIST: [SpinLock<Option<Vdist>>; MAX_DOMAINS] = [const { SpinLock::new(None) }; MAX_DOMAINS];
/// The private interrupts raised on the hottest paths.
#[derive(Clone, Copy)]
pub enum Hot {
    /// The virtual timer (PPI 27).
    Vtimer = 0,
    /// The event-channel upcall (PPI 31).
    Upcall = 1,
}
const HOT: [u32; 2] = [VTIMER_PPI, xen_abi::layout::EVTCHN_PPI];
/// Per domain and vCPU, lock-free copies of what raising each [`HOT`] interrupt delivers
/// ([`Hot`] order; [`Vdist::private_entry`]: 0 = not deliverable now, take the vGIC's lock). Written only
/// under the vGIC's lock, after every change to it; a raise that reads a copy a concurrent
/// change is replacing is ordered before that change, as it would be with the lock.
static HOT_ENTRY: [[[AtomicU64; 2]; MAX_VCPUS]; MAX_DOMAINS] =
    [const { [const { [const { AtomicU64::new(0) }; 2] }; MAX_VCPUS] }; MAX_DOMAINS];
/// Per domain, a lock-free copy of [`Vdist::head`] (the distributor's control and
/// identification words), for guest loads of them without the vGIC's lock. Written with
/// [`HOT_ENTRY`], under the lock after every change; a load that reads a copy a concurrent
/// write is replacing is ordered before that write.
static DIST_HEAD: [[AtomicU32; 3]; MAX_DOMAINS] = [const { [const { AtomicU32::new(0) }; 3] }; MAX_DOMAINS];
/// Interrupts waiting for each pCPU's list registers.
static QUEUE: [SpinLock<Queue>; MAX_CPUS] = [const { SpinLock::new(vgic::empty_queue()) }; MAX_CPUS];
/// Whether each pCPU's queue may be non-empty (skips the lock on the fast path).
static QUEUED: [AtomicBool; MAX_CPUS] = [const { AtomicBool::new(false) }; MAX_CPUS];
/// Interrupts dropped because a queue was full (reported, never silent).
static DROPPED: AtomicU32 = AtomicU32::new(0);
/// The physical SPI of the hypervisor's console UART (0 = none).
static UART_IRQ: AtomicU32 = AtomicU32::new(0);

/// Queues `p` for pCPU `pcpu` and kicks it if it is not this CPU. For this CPU's own vCPU
/// with nothing queued, `p` goes straight into a free list register instead (what the next
/// [`flush`] would do with it, without the queue).
#[inline]
fn queue_on(pcpu: usize, p: Pending) {
    let here = crate::arch::cpu_index();
    // The vCPU of a pCPU is fixed by the plan, so this pCPU's list registers are the target's.
    if pcpu == here && !QUEUED[pcpu & (MAX_CPUS - 1)].load(Ordering::Acquire) && gic::try_inject(p) {
        crate::domain::bump(&crate::domain::STATS[here & (MAX_CPUS - 1)].irqs, 1);
        return;
    }
    enqueue_on(pcpu, here, p);
}

#[inline(never)]
fn enqueue_on(pcpu: usize, here: usize, p: Pending) {
    let Some(q) = QUEUE.get(pcpu) else { return };
    if !vgic::enqueue(&mut q.lock(), p) {
        DROPPED.fetch_add(1, Ordering::Relaxed);
    }
    QUEUED[pcpu].store(true, Ordering::Release);
    if pcpu != here {
        gic::send_sgi(pcpu, SGI_KICK);
    }
}

/// Carries out what a domain's vGIC asks for.
pub struct DomainSink {
    d: usize,
}

impl DomainSink {
    /// A sink for domain `d`.
    pub fn new(d: usize) -> Self {
        Self { d }
    }
}

impl Sink for DomainSink {
    fn deliver(&mut self, vcpu: usize, p: Pending) {
        if let Some(pcpu) = pcpu_of(self.d, vcpu) {
            queue_on(pcpu, p);
        }
    }
    fn phys(&mut self, op: PhysOp) {
        match op {
            PhysOp::Enable(i, on) => gic::spi_enable(u32::from(i), on),
            PhysOp::Route(i, v) => {
                if let Some(&p) = domain::pcpus(self.d).get(usize::from(v)) {
                    gic::spi_route(u32::from(i), usize::from(p));
                }
            }
            PhysOp::Config(i, edge) => gic::spi_config(u32::from(i), edge),
        }
    }
}

/// Installs domain `d`'s virtual distributor (boot) and its vCPU → pCPU pinning.
pub fn install(d: usize, vd: Vdist, pcpus: &[u8]) {
    set_pcpus(d, pcpus);
    if let Some(lock) = VDIST.get(d) {
        let mut g = lock.lock();
        let vd = g.insert(vd);
        for v in 0..MAX_VCPUS {
            refresh_hot(d, v, vd);
        }
    }
}

/// Runs `f` on domain `d`'s virtual distributor under its lock (`None`: it has none), then
/// refreshes the lock-free copies of vCPU `v`'s hot interrupts (`f` may change only `v`'s
/// private interrupts: the banked registers `v` sees, or `v`'s redistributor).
pub fn with_vdist<R>(d: usize, v: usize, f: impl FnOnce(&mut Vdist) -> R) -> Option<R> {
    let mut g = VDIST.get(d)?.lock();
    let vd = g.as_mut()?;
    let r = f(vd);
    refresh_hot(d, v, vd);
    Some(r)
}

/// Runs `f` on domain `d`'s virtual distributor under its lock for what changes no
/// interrupt's enable, priority or group (reads, raising and sending SGIs).
pub fn with_vdist_raising<R>(d: usize, f: impl FnOnce(&mut Vdist) -> R) -> Option<R> {
    VDIST.get(d)?.lock().as_mut().map(f)
}

/// Domain `d`'s distributor word at byte offset `off` if it is one of [`Vdist::head`]'s
/// (`off` 4-byte aligned, below 12), read without the vGIC's lock.
#[inline]
pub fn dist_head(d: usize, off: u64) -> Option<u32> {
    let i = usize::try_from(off / 4).ok().filter(|_| off.is_multiple_of(4))?;
    DIST_HEAD[d & (MAX_DOMAINS - 1)].get(i).map(|w| w.load(Ordering::Relaxed))
}

fn refresh_hot(d: usize, v: usize, vd: &Vdist) {
    if let Some(words) = DIST_HEAD.get(d) {
        for (w, val) in words.iter().zip(vd.head()) {
            w.store(val, Ordering::Relaxed);
        }
    }
    if let Some(entries) = HOT_ENTRY.get(d).and_then(|h| h.get(v)) {
        for (e, &intid) in entries.iter().zip(&HOT) {
            e.store(vd.private_entry(v, intid), Ordering::Relaxed);
        }
    }
}

/// Raises hot interrupt `which` on vCPU `v` of domain `d`: without the vGIC's lock when its
/// copy says it is deliverable, through [`raise`] otherwise (disabled: latched).
#[inline]
pub fn raise_hot(d: usize, v: usize, which: Hot) -> bool {
    let w = HOT_ENTRY[d & (MAX_DOMAINS - 1)][v & (MAX_VCPUS - 1)][which as usize].load(Ordering::Relaxed);
    match (Pending::unpack(w), pcpu_of(d, v)) {
        (Some(p), Some(pcpu)) => {
            crate::ev!(debug, "d{=usize}v{=usize} inject {=u32}: true", d, v, u32::from(p.intid));
            queue_on(pcpu, p);
            true
        }
        _ => raise(d, v, HOT[which as usize]),
    }
}

/// Raises `intid` in domain `d` (private interrupts: on `vcpu`). The vGIC decides under its
/// lock; the delivery goes straight to a list register when the target vCPU is this pCPU's.
pub fn raise(d: usize, vcpu: usize, intid: u32) -> bool {
    let Some(lock) = VDIST.get(d) else { return false };
    let mut g = lock.lock();
    let r = match g.as_mut() {
        Some(vd) => vd.raise_to(vcpu, intid, false),
        None => Raised::Refused,
    };
    crate::ev!(debug, "d{=usize}v{=usize} inject {=u32}: {=bool}", d, vcpu, intid, r != Raised::Refused);
    match r {
        Raised::Deliver(to, p) => {
            if let Some(pcpu) = pcpu_of(d, to) {
                queue_on(pcpu, p);
            }
            true
        }
        Raised::Latched => true,
        Raised::Refused => false,
    }
}

/// The pCPU of each domain's vCPUs (`u8::MAX`: none), copied from the plan at boot so that
/// delivery needs no configuration look-up.
static PCPU_OF: [[AtomicU8; MAX_VCPUS]; MAX_DOMAINS] =
    [const { [const { AtomicU8::new(u8::MAX) }; MAX_VCPUS] }; MAX_DOMAINS];

/// Records domain `d`'s vCPU → pCPU pinning (boot, from the validated plan).
fn set_pcpus(d: usize, pcpus: &[u8]) {
    if let Some(row) = PCPU_OF.get(d) {
        for (slot, &p) in row.iter().zip(pcpus) {
            slot.store(p, Ordering::Relaxed);
        }
    }
}

#[inline]
fn pcpu_of(d: usize, v: usize) -> Option<usize> {
    let p = PCPU_OF.get(d)?.get(v)?.load(Ordering::Relaxed);
    (usize::from(p) < MAX_CPUS).then_some(usize::from(p))
}

/// Physical SPIs owned by domains, for dispatch: intid -> domain index + 1 (0 = none).
static SPI_OWNER: [AtomicU32; vgic::NR_IRQS] = [const { AtomicU32::new(0) }; vgic::NR_IRQS];

/// Records that physical SPI `intid` belongs to domain `d` and routes it to `pcpu`.
pub fn assign_spi(intid: u32, d: usize, pcpu: usize) {
    if let Some(o) = SPI_OWNER.get(intid as usize) {
        o.store(d as u32 + 1, Ordering::Relaxed);
        gic::spi_route(intid, pcpu);
    }
}

/// Takes the console UART's receive interrupt on this (the boot) CPU.
pub fn set_uart_irq(intid: u32) {
    UART_IRQ.store(intid, Ordering::Relaxed);
    gic::spi_route(intid, 0);
    gic::spi_enable(intid, true);
}

/// Handles the physical interrupt that made this pCPU leave its guest (running vCPU `v` of
/// domain `d`). One per exit: a second pending interrupt makes the guest exit again at once
/// (HCR_EL2.IMO routes every physical IRQ to EL2), which costs less than a second
/// acknowledge on every exit when, as almost always, there is none.
pub fn handle(d: usize, v: usize) {
    let intid = gic::ack();
    if intid >= SPURIOUS - 3 {
        return;
    }
    gic::priority_drop(intid);
    crate::ev!(trace, "cpu {=usize} physical interrupt {=u32}", crate::arch::cpu_index(), intid);
    if intid == VTIMER_PPI {
        // Forwarded with the HW bit: the guest's EOI deactivates it.
        if !raise_hot(d, v, Hot::Vtimer) {
            gic::deactivate(intid);
        }
    } else if intid == SGI_KICK {
        gic::deactivate(intid);
    } else if intid == crate::arch::HYP_TIMER_PPI {
        // A blocked vCPU's deadline (it checks the time itself) or a watchdog's.
        crate::arch::hyp_timer_off();
        domain::hyp_timer_fired(d);
        gic::deactivate(intid);
    } else if intid == MAINTENANCE {
        maintenance(d);
        gic::deactivate(intid);
    } else if intid == UART_IRQ.load(Ordering::Relaxed) && intid != 0 {
        crate::mux::uart_input();
        gic::deactivate(intid);
    } else {
        let owner = SPI_OWNER.get(intid as usize).map_or(0, |o| o.load(Ordering::Relaxed));
        if owner == 0 || !raise(owner as usize - 1, 0, intid) {
            gic::deactivate(intid);
        }
    }
}

/// Maintenance: list registers whose guest EOI asked for it are freed and their (software,
/// level-sensitive) source re-sampled.
fn maintenance(d: usize) {
    let eisr = gic::eoi_status();
    for n in 0..gic::nr_lrs() {
        if eisr & (1 << n) == 0 {
            continue;
        }
        let lr = gic::read_lr(n);
        gic::write_lr_decoded(n, &Lr::default());
        domain::level_eoi(d, u32::from(lr.intid));
    }
}

/// Sleeps until an interrupt arrives for this pCPU while it runs no vCPU, then consumes the
/// physical interrupts (a kick, or a source of a vCPU that is off: dropped).
pub fn idle_wait() {
    #[cfg(feature = "trace")]
    crate::trace::drain(false);
    crate::arch::wfi();
    for _ in 0..64 {
        let intid = gic::ack();
        if intid >= SPURIOUS - 3 {
            break;
        }
        gic::priority_drop(intid);
        if intid == UART_IRQ.load(Ordering::Relaxed) && intid != 0 {
            crate::mux::uart_input();
        } else if intid == crate::arch::HYP_TIMER_PPI {
            crate::arch::hyp_timer_off();
        }
        gic::deactivate(intid);
    }
}

/// Forgets everything queued for this pCPU and clears its list registers (vCPU reset).
pub fn reset_cpu(cpu: usize) {
    *QUEUE[cpu].lock() = vgic::empty_queue();
    QUEUED[cpu].store(false, Ordering::Relaxed);
    for n in 0..gic::nr_lrs() {
        gic::write_lr_decoded(n, &Lr::default());
    }
    gic::set_underflow(false);
    gic::clear_private_active(cpu, VTIMER_PPI);
}

/// Moves this pCPU's queued interrupts into its list registers. Called before every return
/// to the guest.
#[inline]
pub fn flush(cpu: usize) {
    // `cpu` is a trap frame's own index (below MAX_CPUS, a power of two): masked, not checked.
    if QUEUED[cpu & (MAX_CPUS - 1)].load(Ordering::Acquire) {
        flush_queue(cpu);
    }
}

#[inline(never)]
fn flush_queue(cpu: usize) {
    let n = gic::nr_lrs();
    let mut lrs = [Lr::default(); 8];
    // Only registers in use are read (ELRSR), only changed ones written.
    let mut used = !gic::empty_lrs() & ((1 << n) - 1);
    while used != 0 {
        let i = used.trailing_zeros() as usize;
        used &= used - 1;
        lrs[i] = gic::read_lr(i);
    }
    let mut q = QUEUE[cpu].lock();
    let mut changed = vgic::flush(&mut q, &mut lrs[..n]);
    crate::domain::bump(&crate::domain::STATS[cpu].irqs, u64::from(changed.count_ones()));
    while changed != 0 {
        let i = changed.trailing_zeros() as usize;
        changed &= changed - 1;
        gic::write_lr_decoded(i, &lrs[i]);
    }
    let more = !q.is_empty();
    QUEUED[cpu].store(more, Ordering::Release);
    drop(q);
    gic::set_underflow(more);
}

/// Whether a virtual interrupt waits for this pCPU's vCPU: queued, or pending in a list
/// register (what wakes a vCPU blocked in `SCHEDOP_block`/`SCHEDOP_poll`).
pub fn vcpu_has_pending(cpu: usize) -> bool {
    let empty = gic::empty_lrs();
    QUEUED[cpu].load(Ordering::Acquire)
        || (0..gic::nr_lrs())
            .filter(|n| empty & (1 << n) == 0)
            .any(|n| matches!(gic::read_lr(n).state, vgic::LrState::Pending | vgic::LrState::PendingActive))
}

/// Interrupts dropped on full queues so far.
#[allow(dead_code)]
pub fn dropped() -> u32 {
    DROPPED.load(Ordering::Relaxed)
}
