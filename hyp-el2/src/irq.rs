//! Interrupt plumbing between the physical GIC and the domains' virtual GICs: physical IRQs
//! taken at EL2, the per-vCPU queues of interrupts waiting for a list register, delivery to
//! vCPUs on other pCPUs (queue + kick SGI), and list-register refill and maintenance.
//!
//! Invariants: a pCPU's list registers are only written by that pCPU ([`flush`], called on
//! every way back into its guest); other pCPUs only append to its queue under the queue's
//! lock and kick it. Lock order: a domain's vGIC lock, then a queue lock; never the reverse.

use crate::boot::MAX_CPUS;
use crate::domain;
use crate::gic::{self, MAINTENANCE, SGI_KICK, SPURIOUS};
use crate::sync::SpinLock;
use core::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use hyp_core::plan::MAX_DOMAINS;
use hyp_core::vgic::{self, Lr, Pending, PhysOp, Queue, Sink, Vdist, VTIMER_PPI};

/// Each domain's virtual distributor, set at boot.
pub static VDIST: [SpinLock<Option<Vdist>>; MAX_DOMAINS] = [const { SpinLock::new(None) }; MAX_DOMAINS];
/// Interrupts waiting for each pCPU's list registers.
static QUEUE: [SpinLock<Queue>; MAX_CPUS] = [const { SpinLock::new(vgic::empty_queue()) }; MAX_CPUS];
/// Whether each pCPU's queue may be non-empty (skips the lock on the fast path).
static QUEUED: [AtomicBool; MAX_CPUS] = [const { AtomicBool::new(false) }; MAX_CPUS];
/// Interrupts dropped because a queue was full (reported, never silent).
static DROPPED: AtomicU32 = AtomicU32::new(0);
/// The physical SPI of the hypervisor's console UART (0 = none).
static UART_IRQ: AtomicU32 = AtomicU32::new(0);

/// Queues `p` for pCPU `pcpu` and kicks it if it is not this CPU.
fn queue_on(pcpu: usize, p: Pending) {
    {
        let mut q = QUEUE[pcpu].lock();
        if !vgic::enqueue(&mut q, p) {
            DROPPED.fetch_add(1, Ordering::Relaxed);
        }
    }
    QUEUED[pcpu].store(true, Ordering::Release);
    if pcpu != crate::arch::cpu_index() {
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
        if let Some(&pcpu) = domain::pcpus(self.d).get(vcpu) {
            queue_on(usize::from(pcpu), p);
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

/// Raises `intid` in domain `d` on `vcpu`, asking for a maintenance interrupt at its EOI
/// (so the source can be re-sampled, see [`domain::level_eoi`]).
pub fn raise_notify(d: usize, vcpu: usize, intid: u32) -> bool {
    let mut g = VDIST[d].lock();
    match g.as_mut() {
        Some(vd) => {
            let ok = vd.raise(vcpu, intid, true, &mut DomainSink::new(d));
            crate::ev!(debug, "d{=usize}v{=usize} inject {=u32} (level, notify at EOI): {=bool}", d, vcpu, intid, ok);
            ok
        }
        None => false,
    }
}

/// Raises `intid` in domain `d` (private interrupts: on `vcpu`).
pub fn raise(d: usize, vcpu: usize, intid: u32) -> bool {
    let mut g = VDIST[d].lock();
    match g.as_mut() {
        Some(vd) => {
            let ok = vd.raise(vcpu, intid, false, &mut DomainSink::new(d));
            crate::ev!(debug, "d{=usize}v{=usize} inject {=u32}: {=bool}", d, vcpu, intid, ok);
            ok
        }
        None => false,
    }
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

/// Handles every pending physical interrupt on this pCPU (running vCPU `v` of domain `d`).
pub fn handle(d: usize, v: usize) {
    for _ in 0..64 {
        let intid = gic::ack();
        if intid >= SPURIOUS - 3 {
            break;
        }
        gic::priority_drop(intid);
        crate::ev!(trace, "cpu {=usize} physical interrupt {=u32}", crate::arch::cpu_index(), intid);
        if intid == SGI_KICK {
            gic::deactivate(intid);
        } else if intid == crate::arch::HYP_TIMER_PPI {
            // A blocked vCPU's deadline (it checks the time itself) or a watchdog's.
            crate::arch::hyp_timer_off();
            domain::hyp_timer_fired(d);
            gic::deactivate(intid);
        } else if intid == MAINTENANCE {
            maintenance(d);
            gic::deactivate(intid);
        } else if intid == VTIMER_PPI {
            // Forwarded with the HW bit: the guest's EOI deactivates it.
            if !raise(d, v, VTIMER_PPI) {
                gic::deactivate(intid);
            }
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
