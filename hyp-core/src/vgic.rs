//! The virtual GIC of one domain: its distributor (and, for GICv3, its redistributors) as the
//! guest sees them through trapped MMIO, the queue of interrupts waiting for a list register,
//! and the list-register encodings of both GIC versions.
//!
//! One model serves GICv2 and GICv3; only register layouts differ. The arch layer owns the
//! physical GIC and the list registers; it calls [`Vdist::mmio_read`] / [`Vdist::mmio_write`]
//! / [`Vdist::redist_read`] / [`Vdist::redist_write`] for trapped accesses, [`Vdist::raise`]
//! when a source fires, and [`flush`] to move queued interrupts into list registers.
//!
//! Invariants:
//! - a domain only ever reads or changes the interrupts it owns: its SGIs/PPIs (banked per
//!   vCPU) and the SPIs the plan gives it; every other SPI reads as zero and ignores writes;
//! - physical side effects (enable, routing, trigger mode) are only ever requested for SPIs the
//!   domain owns and that are hardware-mapped to it, and for routing only to its own vCPUs;
//! - a vCPU index passed in is `< nr_vcpus` (the arch layer's own pinning guarantees it); guest
//!   values (targets, affinities, offsets) are range-checked here.

use crate::gicregs::{
    gicd, gicr, GICD_CTLR, GICD_IROUTER, GICD_SGIR, GICD_TYPER, GICR_TYPER, GICR_WAKER, ICC_SGI1R, IIDR_ARM,
    PIDR2_GICV2, PIDR2_GICV3,
};
use crate::list::List;
use tock_registers::LocalRegisterCopy;

/// Interrupt IDs the model covers (SGIs, PPIs and SPIs 32..511).
pub const NR_IRQS: usize = 512;
/// Private interrupts (SGIs and PPIs) per vCPU.
pub const NR_PRIVATE: usize = 32;
/// Most vCPUs of one domain.
pub const MAX_VCPUS: usize = crate::plan::MAX_VCPUS;
/// The virtual timer PPI.
pub const VTIMER_PPI: u32 = 27;
/// Size of the distributor window the guest sees.
pub const DIST_SIZE: u64 = 0x1_0000;
/// Size of one GICv3 redistributor (RD_base + SGI_base frames).
pub const REDIST_STRIDE: u64 = 0x2_0000;
/// Size of the GICv2 CPU interface window the guest sees (mapped onto GICV).
pub const CPUIF_SIZE: u64 = 0x2000;

/// GIC architecture version the guest sees (always the host's).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    /// GICv2 (GIC-400).
    V2,
    /// GICv3 without LPIs/ITS.
    V3,
}

/// State of one interrupt as the guest programs it.
#[derive(Clone, Copy, Debug, Default)]
struct Irq {
    enabled: bool,
    /// Raised while disabled; delivered when enabled.
    latched: bool,
    priority: u8,
    edge: bool,
    group1: bool,
    /// vCPU the SPI is routed to.
    target: u8,
    /// SPI given to this domain by the plan.
    owned: bool,
    /// Backed by the physical interrupt with the same ID (passthrough).
    hw: bool,
}

/// An interrupt on its way to a vCPU.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pending {
    /// Virtual interrupt ID.
    pub intid: u16,
    /// Guest-programmed priority.
    pub priority: u8,
    /// Group 1 (GICv3 guests) or group 0 (GICv2 guests).
    pub group1: bool,
    /// The physical interrupt of the same ID is deactivated by the guest's EOI.
    pub hw: bool,
    /// Ask for a maintenance interrupt at EOI (software level-sensitive sources).
    pub eoi_notify: bool,
}

impl Pending {
    /// An empty entry (queue storage).
    pub const NONE: Pending = Pending { intid: 0, priority: 0, group1: false, hw: false, eoi_notify: false };

    /// One word holding the entry (never 0), for lock-free copies; see [`Pending::unpack`].
    pub const fn pack(self) -> u64 {
        1 << 63
            | self.intid as u64
            | (self.priority as u64) << 16
            | (self.group1 as u64) << 24
            | (self.hw as u64) << 25
            | (self.eoi_notify as u64) << 26
    }

    /// The entry [`Pending::pack`] made; `None` for 0 (no entry).
    pub const fn unpack(w: u64) -> Option<Self> {
        if w >> 63 == 0 {
            return None;
        }
        Some(Pending {
            intid: w as u16,
            priority: (w >> 16) as u8,
            group1: w & 1 << 24 != 0,
            hw: w & 1 << 25 != 0,
            eoi_notify: w & 1 << 26 != 0,
        })
    }
}

/// An empty queue, usable in `const` contexts.
pub const fn empty_queue() -> Queue {
    Queue::with_storage([Pending::NONE; 64])
}

/// What raising an interrupt came to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Raised {
    /// Deliver this to that vCPU now.
    Deliver(usize, Pending),
    /// Disabled: held until the guest enables it.
    Latched,
    /// Not the domain's (or a private interrupt of a vCPU it does not have).
    Refused,
}

/// Physical side effects a distributor write asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PhysOp {
    /// Enable (true) or disable the physical SPI.
    Enable(u16, bool),
    /// Route the physical SPI to the pCPU running this vCPU.
    Route(u16, u8),
    /// Set the physical SPI's trigger mode (true = edge).
    Config(u16, bool),
}

/// Receives what a distributor operation produces.
pub trait Sink {
    /// Queue `p` for `vcpu`.
    fn deliver(&mut self, vcpu: usize, p: Pending);
    /// Apply a physical side effect.
    fn phys(&mut self, op: PhysOp);
}

/// A domain's virtual distributor and redistributors.
#[derive(Clone)]
pub struct Vdist {
    version: Version,
    nr_vcpus: usize,
    /// Number of interrupt IDs presented (multiple of 32, <= NR_IRQS).
    lines: usize,
    ctlr: u32,
    /// `GICD_TYPER` as it reads (fixed at creation).
    typer: u32,
    spis: [Irq; NR_IRQS - NR_PRIVATE],
    private: [[Irq; NR_PRIVATE]; MAX_VCPUS],
    /// GICR_WAKER.ProcessorSleep per vCPU.
    asleep: [bool; MAX_VCPUS],
}

const fn bit(n: usize) -> u32 {
    1 << n
}

impl Vdist {
    /// A distributor out of reset for `nr_vcpus` vCPUs presenting `lines` interrupt IDs.
    pub fn new(version: Version, nr_vcpus: usize, lines: usize) -> Self {
        let lines = lines.clamp(64, NR_IRQS) & !31;
        let mut private = [[Irq::default(); NR_PRIVATE]; MAX_VCPUS];
        for bank in private.iter_mut() {
            for (i, irq) in bank.iter_mut().enumerate() {
                irq.edge = i < 16;
                irq.owned = true;
            }
        }
        let nr_vcpus = nr_vcpus.clamp(1, MAX_VCPUS);
        let it_lines = GICD_TYPER::IT_LINES.val(lines as u32 / 32 - 1);
        let typer = match version {
            Version::V3 => it_lines + GICD_TYPER::ID_BITS.val(9), // 10 ID bits: no LPIs
            Version::V2 => it_lines + GICD_TYPER::CPU_NUMBER.val(nr_vcpus as u32 - 1),
        };
        Self {
            version,
            nr_vcpus,
            lines,
            ctlr: 0,
            typer: typer.value,
            spis: [Irq::default(); NR_IRQS - NR_PRIVATE],
            private,
            asleep: [true; MAX_VCPUS],
        }
    }

    /// GIC version presented.
    pub fn version(&self) -> Version {
        self.version
    }

    /// Gives SPI `intid` to this domain; `hw` if a physical device drives it.
    pub fn assign_spi(&mut self, intid: u32, hw: bool) -> bool {
        let i = intid as usize;
        if !(NR_PRIVATE..self.lines).contains(&i) {
            return false;
        }
        let irq = &mut self.spis[i - NR_PRIVATE];
        irq.owned = true;
        irq.hw = hw;
        true
    }

    /// Whether the domain owns `intid` (SGIs and PPIs always).
    pub fn owns(&self, intid: u32) -> bool {
        let i = intid as usize;
        i < NR_PRIVATE || (i < self.lines && self.spis[i - NR_PRIVATE].owned)
    }

    fn irq(&self, vcpu: usize, intid: usize) -> Option<&Irq> {
        if intid < NR_PRIVATE {
            self.private.get(vcpu).map(|b| &b[intid])
        } else if intid < self.lines && self.spis[intid - NR_PRIVATE].owned {
            Some(&self.spis[intid - NR_PRIVATE])
        } else {
            None
        }
    }

    fn irq_mut(&mut self, vcpu: usize, intid: usize) -> Option<&mut Irq> {
        if intid < NR_PRIVATE {
            self.private.get_mut(vcpu).map(|b| &mut b[intid])
        } else if intid < self.lines && self.spis[intid - NR_PRIVATE].owned {
            Some(&mut self.spis[intid - NR_PRIVATE])
        } else {
            None
        }
    }

    fn pending_of(&self, irq: &Irq, intid: usize, eoi_notify: bool) -> Pending {
        let hw = irq.hw || intid == VTIMER_PPI as usize;
        Pending {
            intid: intid as u16,
            priority: irq.priority,
            group1: irq.group1 || self.version == Version::V3,
            hw,
            // A level-sensitive software source is re-sampled when the guest EOIs it.
            eoi_notify: !hw && (eoi_notify || (intid >= NR_PRIVATE && !irq.edge)),
        }
    }

    /// A source raised `intid` (for a private interrupt: on `vcpu`). Delivers it if enabled,
    /// otherwise latches it until the guest enables it. `eoi_notify` asks for a maintenance
    /// interrupt at the guest's EOI (level-sensitive software sources). Returns false for an
    /// interrupt the domain does not own (or a private one of a vCPU it does not have).
    pub fn raise(&mut self, vcpu: usize, intid: u32, eoi_notify: bool, sink: &mut impl Sink) -> bool {
        match self.raise_to(vcpu, intid, eoi_notify) {
            Raised::Deliver(to, p) => {
                sink.deliver(to, p);
                true
            }
            Raised::Latched => true,
            Raised::Refused => false,
        }
    }

    /// [`Vdist::raise`] without the sink: what is to be delivered, and to which vCPU, is
    /// returned for the caller to place (a fast path that writes a list register itself).
    #[inline]
    pub fn raise_to(&mut self, vcpu: usize, intid: u32, eoi_notify: bool) -> Raised {
        let i = intid as usize;
        if vcpu >= self.nr_vcpus && i < NR_PRIVATE {
            return Raised::Refused;
        }
        let Some(irq) = self.irq_mut(vcpu, i) else { return Raised::Refused };
        if !irq.enabled {
            irq.latched = true;
            return Raised::Latched;
        }
        let irq = *irq;
        let to = if i < NR_PRIVATE { vcpu } else { usize::from(irq.target) };
        Raised::Deliver(to, self.pending_of(&irq, i, eoi_notify))
    }

    /// What raising private interrupt `intid` on `vcpu` would deliver now, packed
    /// ([`Pending::pack`]), or 0 when it would not be delivered (disabled: it would latch;
    /// or no such vCPU). Kept in lock-free copies for the hottest interrupts (the virtual
    /// timer and the event-channel upcall), refreshed after every change to the vGIC.
    pub fn private_entry(&self, vcpu: usize, intid: u32) -> u64 {
        let i = intid as usize;
        match self.private.get(vcpu) {
            Some(bank) if vcpu < self.nr_vcpus && i < NR_PRIVATE && bank[i].enabled => {
                self.pending_of(&bank[i], i, false).pack()
            }
            _ => 0,
        }
    }

    /// Sends SGI `sgi` from `from` to every vCPU in `targets` (bit n = vCPU n).
    pub fn send_sgi(&mut self, targets: u32, sgi: u32, sink: &mut impl Sink) {
        if sgi >= 16 {
            return;
        }
        for v in 0..self.nr_vcpus {
            if targets & bit(v) != 0 {
                self.raise(v, sgi, false, sink);
            }
        }
    }

    /// Target mask of a GICv3 `ICC_SGI1R_EL1` write from `from`, and the SGI number.
    pub fn decode_sgi1r(&self, from: usize, val: u64) -> (u32, u32) {
        let r = LocalRegisterCopy::<u64, ICC_SGI1R::Register>::new(val);
        let sgi = r.read(ICC_SGI1R::INTID) as u32;
        let all_mask = (bit(self.nr_vcpus) - 1) & !bit(from);
        if r.is_set(ICC_SGI1R::IRM) {
            return (all_mask, sgi);
        }
        // Our vCPUs have Aff3.Aff2.Aff1 = 0 and Aff0 = index (range 0).
        if [ICC_SGI1R::AFF1, ICC_SGI1R::AFF2, ICC_SGI1R::AFF3, ICC_SGI1R::RS].iter().any(|f| r.read(*f) != 0) {
            return (0, sgi);
        }
        (r.read(ICC_SGI1R::TARGET_LIST) as u32 & (bit(self.nr_vcpus) - 1), sgi)
    }

    fn set_enable(&mut self, vcpu: usize, i: usize, on: bool, sink: &mut impl Sink) {
        let Some(irq) = self.irq_mut(vcpu, i) else { return };
        if irq.enabled == on {
            return;
        }
        irq.enabled = on;
        let irq = *irq;
        if irq.hw && i >= NR_PRIVATE {
            sink.phys(PhysOp::Enable(i as u16, on));
        }
        if on && irq.latched {
            if let Some(m) = self.irq_mut(vcpu, i) {
                m.latched = false;
            }
            let to = if i < NR_PRIVATE { vcpu } else { usize::from(irq.target) };
            sink.deliver(to, self.pending_of(&irq, i, false));
        }
    }

    /// Bits of a 1-bit-per-interrupt register covering IDs `first..first+32`.
    fn bits(&self, vcpu: usize, first: usize, f: impl Fn(&Irq) -> bool) -> u32 {
        (0..32).filter(|&n| self.irq(vcpu, first + n).is_some_and(&f)).fold(0, |acc, n| acc | bit(n))
    }

    /// The first interrupt ID a one-bit-per-interrupt register at `off` covers (`off` within
    /// one of the set/clear banks of [`gicd::BANK`] bytes).
    fn bank_first(off: u64) -> usize {
        (off % gicd::BANK) as usize * 8
    }

    fn read_common(&self, vcpu: usize, off: u64, size: u8) -> Option<u64> {
        Some(match off {
            gicd::IGROUPR..gicd::ISENABLER => u64::from(self.bits(vcpu, Self::bank_first(off), |q| q.group1)),
            gicd::ISENABLER..gicd::ISPENDR => u64::from(self.bits(vcpu, Self::bank_first(off), |q| q.enabled)),
            gicd::ISPENDR..gicd::ISACTIVER => u64::from(self.bits(vcpu, Self::bank_first(off), |q| q.latched)),
            gicd::ISACTIVER..gicd::IPRIORITYR => 0,
            gicd::IPRIORITYR..gicd::ITARGETSR => {
                let first = (off - gicd::IPRIORITYR) as usize;
                (0..usize::from(size))
                    .map(|k| u64::from(self.irq(vcpu, first + k).map_or(0, |q| q.priority)) << (8 * k))
                    .fold(0, |a, b| a | b)
            }
            gicd::ICFGR..gicd::ICFGR_END => {
                // Two bits per interrupt; the upper one says edge-triggered.
                let first = (off - gicd::ICFGR) as usize * 4;
                (0..16)
                    .filter(|&k| self.irq(vcpu, first + k).is_some_and(|q| q.edge))
                    .fold(0u64, |a, k| a | (2 << (2 * k)))
            }
            _ => return None,
        })
    }

    fn write_common(&mut self, vcpu: usize, off: u64, size: u8, val: u64, sink: &mut impl Sink) -> bool {
        let v32 = val as u32;
        match off {
            gicd::IGROUPR..gicd::ISENABLER => {
                let first = Self::bank_first(off);
                for n in 0..32 {
                    if let Some(q) = self.irq_mut(vcpu, first + n) {
                        q.group1 = v32 & bit(n) != 0;
                    }
                }
            }
            gicd::ISENABLER..gicd::ISPENDR => {
                let first = Self::bank_first(off);
                for n in (0..32).filter(|n| v32 & bit(*n) != 0) {
                    self.set_enable(vcpu, first + n, off < gicd::ICENABLER, sink);
                }
            }
            gicd::ISPENDR..gicd::ICPENDR => {
                let first = Self::bank_first(off);
                for n in (0..32).filter(|n| v32 & bit(*n) != 0) {
                    // Software-set pending only for interrupts no device drives.
                    if self.irq(vcpu, first + n).is_some_and(|q| !q.hw && first + n != VTIMER_PPI as usize) {
                        self.raise(vcpu, (first + n) as u32, false, sink);
                    }
                }
            }
            gicd::ICPENDR..gicd::ISACTIVER => {
                let first = Self::bank_first(off);
                for n in (0..32).filter(|n| v32 & bit(*n) != 0) {
                    if let Some(q) = self.irq_mut(vcpu, first + n) {
                        q.latched = false;
                    }
                }
            }
            gicd::ISACTIVER..gicd::IPRIORITYR => {}
            gicd::IPRIORITYR..gicd::ITARGETSR => {
                let first = (off - gicd::IPRIORITYR) as usize;
                for k in 0..usize::from(size) {
                    if let Some(q) = self.irq_mut(vcpu, first + k) {
                        q.priority = (val >> (8 * k)) as u8;
                    }
                }
            }
            gicd::ICFGR..gicd::ICFGR_END => {
                let first = (off - gicd::ICFGR) as usize * 4;
                for k in 0..16 {
                    let i = first + k;
                    if i < 16 {
                        continue; // SGIs are always edge
                    }
                    let edge = v32 & (2 << (2 * k)) != 0;
                    if let Some(q) = self.irq_mut(vcpu, i) {
                        if q.edge != edge {
                            q.edge = edge;
                            if q.hw && i >= NR_PRIVATE {
                                sink.phys(PhysOp::Config(i as u16, edge));
                            }
                        }
                    }
                }
            }
            _ => return false,
        }
        true
    }

    fn valid_size(off: u64, size: u8) -> bool {
        match size {
            4 => off.is_multiple_of(4),
            // The priority and target bytes.
            1 => (gicd::IPRIORITYR..gicd::ICFGR).contains(&off),
            8 => off.is_multiple_of(8) && (gicd::IROUTER..gicd::IROUTER_END).contains(&off),
            _ => false,
        }
    }

    /// The first three distributor words, `GICD_CTLR`, `GICD_TYPER` and `GICD_IIDR` (offsets
    /// 0, 4 and 8), as every vCPU reads them. The trap path answers 32-bit loads of them from
    /// a lock-free copy of this, refreshed after every change to the distributor.
    pub fn head(&self) -> [u32; 3] {
        let are = if self.version == Version::V3 { GICD_CTLR::ARE::SET.value } else { 0 };
        [self.ctlr | are, self.typer, IIDR_ARM]
    }

    /// A 32-bit read of the control or an identification register (`GICD_CTLR`, `TYPER`,
    /// `IIDR`: [`Vdist::head`]); `None` for anything else.
    #[inline]
    pub fn read_fixed(&self, off: u64, size: u8) -> Option<u64> {
        if size != 4 || !off.is_multiple_of(4) {
            return None;
        }
        let i = usize::try_from(off / 4).ok()?;
        self.head().get(i).map(|&w| u64::from(w))
    }

    /// A guest read of the distributor at `off` by `vcpu`. `None` for an access that is not a
    /// register access (bad size or alignment, or a vCPU the domain does not have): the caller injects an abort.
    pub fn mmio_read(&self, vcpu: usize, off: u64, size: u8) -> Option<u64> {
        if vcpu >= self.nr_vcpus || !Self::valid_size(off, size) {
            return None;
        }
        let v3 = self.version == Version::V3;
        // The control and identification registers first: a guest reads them most.
        if let Some(v) = self.read_fixed(off, size) {
            return Some(v);
        }
        // Private interrupts are reached through the redistributor on GICv3 (ARE=1).
        if v3 && (gicd::IGROUPR..gicd::ICFGR_END).contains(&off) && Self::private_window(off) {
            return Some(0);
        }
        if let Some(v) = self.read_common(vcpu, off, size) {
            return Some(v);
        }
        Some(match off {
            gicd::ITARGETSR..gicd::ICFGR if !v3 => {
                let first = (off - gicd::ITARGETSR) as usize;
                (0..usize::from(size))
                    .map(|k| {
                        let i = first + k;
                        let t = if i < NR_PRIVATE {
                            u64::from(bit(vcpu) as u8)
                        } else {
                            self.irq(vcpu, i).map_or(0, |q| 1u64 << q.target)
                        };
                        t << (8 * k)
                    })
                    .fold(0, |a, b| a | b)
            }
            gicd::IROUTER_SPI..gicd::IROUTER_END if v3 => {
                let i = ((off - gicd::IROUTER) / 8) as usize;
                // Aff0 names the vCPU (our vCPUs' other affinity levels are 0).
                let t = self.irq(vcpu, i).map_or(0, |q| GICD_IROUTER::AFF0.val(u64::from(q.target)).value);
                if size == 4 && off % 8 == 4 {
                    0
                } else {
                    t
                }
            }
            gicd::PIDR2_V2 if !v3 => u64::from(PIDR2_GICV2),
            gicd::PIDR2_V3 if v3 => u64::from(PIDR2_GICV3),
            _ => 0,
        })
    }

    /// The distributor registers that hold private interrupts' state (SGIs and PPIs: the
    /// first register of each one-bit bank, the first 32 priority bytes, ICFGR0/1), which a
    /// GICv3 reaches through the redistributor's SGI/PPI frame at the same offsets.
    fn private_window(off: u64) -> bool {
        matches!(
            off,
            gicd::IGROUPR
                | gicd::ISENABLER
                | gicd::ICENABLER
                | gicd::ISPENDR
                | gicd::ICPENDR
                | gicd::ISACTIVER
                | gicd::ICACTIVER
                | gicd::ICFGR
        ) || (gicd::IPRIORITYR..gicd::IPRIORITYR + 32).contains(&off)
            || off == gicd::ICFGR + 4
    }

    /// A guest write of the distributor. Returns false for a bad access (abort), or from a vCPU the domain does not have.
    pub fn mmio_write(&mut self, vcpu: usize, off: u64, size: u8, val: u64, sink: &mut impl Sink) -> bool {
        if vcpu >= self.nr_vcpus || !Self::valid_size(off, size) {
            return false;
        }
        let v3 = self.version == Version::V3;
        if v3 && Self::private_window(off) {
            return true;
        }
        if self.write_common(vcpu, off, size, val, sink) {
            return true;
        }
        match off {
            gicd::CTLR => {
                let enables = GICD_CTLR::ENABLE_GRP0::SET + GICD_CTLR::ENABLE_GRP1::SET;
                self.ctlr = val as u32 & enables.mask();
            }
            gicd::ITARGETSR..gicd::ICFGR if !v3 => {
                let first = (off - gicd::ITARGETSR) as usize;
                for k in 0..usize::from(size) {
                    let i = first + k;
                    let mask = (val >> (8 * k)) as u8 as u32 & (bit(self.nr_vcpus) - 1);
                    if i < NR_PRIVATE || mask == 0 {
                        continue;
                    }
                    self.route(vcpu, i, mask.trailing_zeros() as u8, sink);
                }
            }
            gicd::IROUTER_SPI..gicd::IROUTER_END if v3 => {
                let i = ((off - gicd::IROUTER) / 8) as usize;
                if size == 8 || off.is_multiple_of(8) {
                    // Aff0 names the vCPU; other affinity levels must be 0, IRM routing is
                    // not offered (one target).
                    let r = LocalRegisterCopy::<u64, GICD_IROUTER::Register>::new(val);
                    let aff0 = r.read(GICD_IROUTER::AFF0) as u8;
                    let others = [GICD_IROUTER::AFF1, GICD_IROUTER::AFF2, GICD_IROUTER::AFF3, GICD_IROUTER::IRM];
                    if (aff0 as usize) < self.nr_vcpus && others.iter().all(|f| r.read(*f) == 0) {
                        self.route(vcpu, i, aff0, sink);
                    }
                }
            }
            gicd::SGIR if !v3 => {
                use GICD_SGIR::TARGET_FILTER::Value as Filter;
                let r = LocalRegisterCopy::<u32, GICD_SGIR::Register>::new(val as u32);
                let all = bit(self.nr_vcpus) - 1;
                let targets = match r.read_as_enum(GICD_SGIR::TARGET_FILTER) {
                    Some(Filter::List) => r.read(GICD_SGIR::CPU_TARGETS) & all,
                    Some(Filter::Others) => all & !bit(vcpu),
                    Some(Filter::SelfOnly) => bit(vcpu),
                    None => 0,
                };
                self.send_sgi(targets, r.read(GICD_SGIR::INTID), sink);
            }
            _ => {}
        }
        true
    }

    fn route(&mut self, vcpu: usize, i: usize, to: u8, sink: &mut impl Sink) {
        if let Some(q) = self.irq_mut(vcpu, i) {
            if q.target != to {
                q.target = to;
                if q.hw {
                    sink.phys(PhysOp::Route(i as u16, to));
                }
            }
        }
    }

    /// The vCPU an SPI is routed to.
    pub fn target_of(&self, intid: u32) -> Option<usize> {
        self.irq(0, intid as usize).filter(|_| intid as usize >= NR_PRIVATE).map(|q| usize::from(q.target))
    }

    /// A guest read of `vcpu`'s GICv3 redistributor frames (`off` < [`REDIST_STRIDE`]); `None`
    /// for a bad access or a redistributor beyond the domain's vCPUs.
    pub fn redist_read(&self, vcpu: usize, off: u64, size: u8) -> Option<u64> {
        if vcpu >= self.nr_vcpus || off >= REDIST_STRIDE {
            return None;
        }
        if !(size == 4 && off.is_multiple_of(4) || size == 8 && off.is_multiple_of(8)) {
            return None;
        }
        if off >= gicr::SGI_FRAME {
            let o = off - gicr::SGI_FRAME;
            return Some(if Self::private_window(o) { self.read_common(vcpu, o, size.min(4)).unwrap_or(0) } else { 0 });
        }
        Some(match off {
            gicr::CTLR => 0, // no LPIs
            gicr::IIDR => u64::from(IIDR_ARM),
            o if o == gicr::TYPER || o == gicr::TYPER + 4 => {
                let last = GICR_TYPER::LAST.val(u64::from(vcpu + 1 == self.nr_vcpus));
                let typer =
                    (GICR_TYPER::AFFINITY.val(vcpu as u64) + GICR_TYPER::PROCESSOR_NUMBER.val(vcpu as u64) + last)
                        .value;
                if off == gicr::TYPER + 4 {
                    typer >> 32
                } else if size == 4 {
                    typer & 0xffff_ffff
                } else {
                    typer
                }
            }
            gicr::WAKER if self.asleep[vcpu] => {
                u64::from((GICR_WAKER::PROCESSOR_SLEEP::SET + GICR_WAKER::CHILDREN_ASLEEP::SET).value)
            }
            gicr::PIDR2 => u64::from(PIDR2_GICV3),
            _ => 0,
        })
    }

    /// A guest write of `vcpu`'s GICv3 redistributor frames. False for a bad access or a
    /// redistributor beyond the domain's vCPUs.
    pub fn redist_write(&mut self, vcpu: usize, off: u64, size: u8, val: u64, sink: &mut impl Sink) -> bool {
        if vcpu >= self.nr_vcpus || off >= REDIST_STRIDE {
            return false;
        }
        if !(size == 4 && off.is_multiple_of(4) || size == 8 && off.is_multiple_of(8)) {
            return false;
        }
        if off >= gicr::SGI_FRAME {
            let o = off - gicr::SGI_FRAME;
            if Self::private_window(o) {
                self.write_common(vcpu, o, 4, val, sink);
            }
            return true;
        }
        if off == gicr::WAKER {
            let w = LocalRegisterCopy::<u32, GICR_WAKER::Register>::new(val as u32);
            self.asleep[vcpu] = w.is_set(GICR_WAKER::PROCESSOR_SLEEP);
        }
        true
    }

    /// Number of vCPUs.
    pub fn nr_vcpus(&self) -> usize {
        self.nr_vcpus
    }

    /// Forgets `vcpu`'s private interrupt state (vCPU reset by PSCI CPU_ON).
    pub fn reset_vcpu(&mut self, vcpu: usize) {
        if let Some(bank) = self.private.get_mut(vcpu) {
            for (i, irq) in bank.iter_mut().enumerate() {
                *irq = Irq { edge: i < 16, owned: true, ..Irq::default() };
            }
        }
    }
}

/// State of a list register.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LrState {
    /// Free.
    #[default]
    Invalid,
    /// Pending.
    Pending,
    /// Active.
    Active,
    /// Active and pending again.
    PendingActive,
}

/// A decoded list register.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Lr {
    /// Virtual interrupt ID.
    pub intid: u16,
    /// State.
    pub state: LrState,
    /// Priority (8-bit scale).
    pub priority: u8,
    /// Group 1.
    pub group1: bool,
    /// Hardware interrupt (physical ID == virtual ID).
    pub hw: bool,
    /// Maintenance interrupt at EOI (software interrupts only).
    pub eoi: bool,
}

impl LrState {
    fn bits(self) -> u64 {
        match self {
            Self::Invalid => 0,
            Self::Pending => 1,
            Self::Active => 2,
            Self::PendingActive => 3,
        }
    }
    fn from_bits(b: u64) -> Self {
        match b & 3 {
            0 => Self::Invalid,
            1 => Self::Pending,
            2 => Self::Active,
            _ => Self::PendingActive,
        }
    }
}

impl Lr {
    /// From a queued interrupt.
    pub fn from_pending(p: Pending) -> Self {
        Self {
            intid: p.intid,
            state: LrState::Pending,
            priority: p.priority,
            group1: p.group1,
            hw: p.hw,
            eoi: p.eoi_notify && !p.hw,
        }
    }

    /// GICH_LR encoding (GICv2).
    pub fn encode_v2(&self) -> u32 {
        if self.state == LrState::Invalid {
            return 0;
        }
        let mut v = u32::from(self.intid) & 0x3ff;
        if self.hw {
            v |= (u32::from(self.intid) & 0x3ff) << 10 | 1 << 31;
        } else if self.eoi {
            v |= 1 << 19;
        }
        v |= u32::from(self.priority >> 3) << 23;
        v |= (self.state.bits() as u32) << 28;
        if self.group1 {
            v |= 1 << 30;
        }
        v
    }

    /// Decodes a GICH_LR value.
    pub fn decode_v2(v: u32) -> Self {
        let hw = v & (1 << 31) != 0;
        Self {
            intid: (v & 0x3ff) as u16,
            state: LrState::from_bits(u64::from(v >> 28)),
            priority: (((v >> 23) & 0x1f) << 3) as u8,
            group1: v & (1 << 30) != 0,
            hw,
            eoi: !hw && v & (1 << 19) != 0,
        }
    }

    /// ICH_LR<n>_EL2 encoding (GICv3).
    pub fn encode_v3(&self) -> u64 {
        if self.state == LrState::Invalid {
            return 0;
        }
        let mut v = u64::from(self.intid);
        if self.hw {
            v |= u64::from(self.intid) << 32 | 1 << 61;
        } else if self.eoi {
            v |= 1 << 41;
        }
        v |= u64::from(self.priority) << 48;
        if self.group1 {
            v |= 1 << 60;
        }
        v | self.state.bits() << 62
    }

    /// Decodes an ICH_LR<n>_EL2 value.
    pub fn decode_v3(v: u64) -> Self {
        let hw = v & (1 << 61) != 0;
        Self {
            intid: (v & 0xffff) as u16,
            state: LrState::from_bits(v >> 62),
            priority: (v >> 48) as u8,
            group1: v & (1 << 60) != 0,
            hw,
            eoi: !hw && v & (1 << 41) != 0,
        }
    }
}

/// Interrupts waiting for a list register, per vCPU.
pub type Queue = List<Pending, 64>;

/// Adds `p` to `q` unless it is already queued. False if the queue is full.
pub fn enqueue(q: &mut Queue, p: Pending) -> bool {
    if q.iter().any(|x| x.intid == p.intid) {
        return true;
    }
    q.push(p).is_ok()
}

/// Moves queued interrupts into the list registers `lrs`, highest priority (lowest value)
/// first; a queued interrupt of higher priority evicts a merely pending one of lower priority
/// back into the queue. Returns the bit mask of list registers changed.
pub fn flush(q: &mut Queue, lrs: &mut [Lr]) -> u32 {
    // The usual case, one interrupt and every register free, without the search below (it
    // would pick the same register).
    if q.len() == 1 && lrs.iter().all(|l| l.state == LrState::Invalid) {
        if let (Some(p), Some(first)) = (q.remove(0), lrs.first_mut()) {
            *first = Lr::from_pending(p);
            return 1;
        }
    }
    let mut changed = 0;
    while let Some(best) = q.iter().enumerate().min_by_key(|(_, p)| p.priority).map(|(i, _)| i) {
        let p = q[best];
        if let Some(n) = lrs.iter().position(|l| l.state != LrState::Invalid && l.intid == p.intid) {
            // Already in flight: an edge that comes again while active is pending again.
            if lrs[n].state == LrState::Active && !lrs[n].hw {
                lrs[n].state = LrState::PendingActive;
                changed |= bit(n);
            }
            remove(q, best);
            continue;
        }
        let slot = lrs.iter().position(|l| l.state == LrState::Invalid).or_else(|| {
            lrs.iter()
                .enumerate()
                .filter(|(_, l)| l.state == LrState::Pending && l.priority > p.priority)
                .max_by_key(|(_, l)| l.priority)
                .map(|(i, _)| i)
        });
        let Some(n) = slot else { break };
        remove(q, best);
        if lrs[n].state == LrState::Pending {
            let old = lrs[n];
            let _ = q.push(Pending {
                intid: old.intid,
                priority: old.priority,
                group1: old.group1,
                hw: old.hw,
                eoi_notify: old.eoi,
            });
        }
        lrs[n] = Lr::from_pending(p);
        changed |= bit(n);
    }
    changed
}

fn remove(q: &mut Queue, i: usize) {
    let _ = q.remove(i);
}

#[cfg(test)]
mod tests {
    use super::*;
    extern crate std;
    use std::vec::Vec;

    #[test]
    fn read_fixed_agrees_with_the_full_decoder() {
        for version in [Version::V2, Version::V3] {
            let mut vd = Vdist::new(version, 2, 96);
            let mut sink = Rec::default();
            assert!(vd.mmio_write(0, gicd::CTLR, 4, 1, &mut sink));
            for off in (0..0x1000).step_by(4) {
                for size in [1u8, 4, 8] {
                    if let Some(v) = vd.read_fixed(off, size) {
                        assert_eq!(Some(v), vd.mmio_read(1, off, size), "{version:?} offset {off:#x} size {size}");
                    }
                }
            }
            assert!([gicd::CTLR, gicd::TYPER, gicd::IIDR].iter().all(|&o| vd.read_fixed(o, 4).is_some()));
            assert_eq!(vd.read_fixed(gicd::TYPER, 1), None);
        }
    }

    #[test]
    fn pending_packs_into_one_word_and_back() {
        let all = [false, true];
        for &(intid, priority) in &[(0u16, 0u8), (27, 0xa0), (31, 0xff), (1019, 0x10)] {
            for g in all {
                for hw in all {
                    for eoi in all {
                        let p = Pending { intid, priority, group1: g, hw, eoi_notify: eoi };
                        assert_ne!(p.pack(), 0);
                        assert_eq!(Pending::unpack(p.pack()), Some(p));
                    }
                }
            }
        }
        assert_eq!(Pending::unpack(0), None);
    }

    #[test]
    fn private_entry_follows_enable_and_priority() {
        let mut vd = Vdist::new(Version::V3, 2, 64);
        assert_eq!(vd.private_entry(1, VTIMER_PPI), 0, "disabled out of reset");
        // GICR_ISENABLER0 / IPRIORITYR of vCPU 1's SGI frame.
        let mut sink = Rec::default();
        assert!(vd.redist_write(1, 0x1_0000 + 0x100, 4, 1 << VTIMER_PPI, &mut sink));
        assert!(vd.redist_write(1, 0x1_0000 + 0x400 + 24, 4, 0x80 << 24, &mut sink));
        let p = Pending::unpack(vd.private_entry(1, VTIMER_PPI)).unwrap();
        assert_eq!((p.intid, p.priority, p.hw, p.group1), (27, 0x80, true, true));
        assert_eq!(vd.private_entry(0, VTIMER_PPI), 0, "banked per vCPU");
        assert_eq!(vd.private_entry(2, VTIMER_PPI), 0, "no such vCPU");
        assert_eq!(
            Pending::unpack(vd.private_entry(1, VTIMER_PPI)),
            match vd.raise_to(1, VTIMER_PPI, false) {
                Raised::Deliver(1, p) => Some(p),
                other => panic!("{other:?}"),
            }
        );
        assert!(vd.redist_write(1, 0x1_0000 + 0x180, 4, 1 << VTIMER_PPI, &mut sink));
        assert_eq!(vd.private_entry(1, VTIMER_PPI), 0, "disabled again");
    }

    #[derive(Default)]
    struct Rec {
        delivered: Vec<(usize, Pending)>,
        ops: Vec<PhysOp>,
    }
    impl Sink for Rec {
        fn deliver(&mut self, vcpu: usize, p: Pending) {
            self.delivered.push((vcpu, p));
        }
        fn phys(&mut self, op: PhysOp) {
            self.ops.push(op);
        }
    }

    #[test]
    fn unowned_spis_read_as_zero_and_ignore_writes() {
        let mut d = Vdist::new(Version::V2, 2, 288);
        let mut r = Rec::default();
        d.assign_spi(79, true);
        assert!(d.mmio_write(0, 0x100 + 8, 4, u64::MAX, &mut r)); // ISENABLER2: 64..95
        assert_eq!(d.mmio_read(0, 0x100 + 8, 4), Some(1 << (79 - 64)));
        assert_eq!(r.ops, [PhysOp::Enable(79, true)]);
        // Another domain's SPI 78 cannot be raised here.
        assert!(!d.raise(0, 78, false, &mut r));
        assert_eq!(d.mmio_read(0, 0x400 + 78, 1), Some(0));
    }

    #[test]
    fn latched_until_enabled_then_delivered_to_target() {
        let mut d = Vdist::new(Version::V2, 2, 288);
        let mut r = Rec::default();
        d.assign_spi(40, false);
        d.mmio_write(0, 0x800 + 40, 1, 0b10, &mut r); // route to vCPU 1
        d.mmio_write(0, 0x400 + 40, 1, 0xa0, &mut r);
        assert!(d.raise(0, 40, true, &mut r));
        assert!(r.delivered.is_empty());
        d.mmio_write(0, 0x104, 4, 1 << 8, &mut r);
        assert_eq!(r.delivered.len(), 1);
        let (v, p) = r.delivered[0];
        assert_eq!((v, p.intid, p.priority, p.hw), (1, 40, 0xa0, false));
        assert_eq!(d.mmio_read(1, 0x800 + 40, 1), Some(0b10));
    }

    #[test]
    fn sgis_v2_and_v3() {
        let mut d = Vdist::new(Version::V2, 2, 288);
        let mut r = Rec::default();
        d.mmio_write(1, 0x100, 4, 0xffff, &mut r);
        d.mmio_write(0, 0xf00, 4, (1 << 24) | 3, &mut r); // to all but self
        d.mmio_write(1, 0xf00, 4, (2 << 24) | 4, &mut r); // to self: vCPU 1
        d.mmio_write(1, 0xf00, 4, (1 << 16) | 6, &mut r); // vCPU 0 has SGIs disabled: latched
        assert_eq!(r.delivered.iter().map(|(v, p)| (*v, p.intid)).collect::<Vec<_>>(), [(1, 3), (1, 4)]);
        let d3 = Vdist::new(Version::V3, 4, 288);
        assert_eq!(d3.decode_sgi1r(0, (2 << 24) | 0b1010), (0b1010, 2));
        assert_eq!(d3.decode_sgi1r(1, 1 << 40), (0b1101, 0));
        assert_eq!(d3.decode_sgi1r(0, (1 << 16) | 1).0, 0, "Aff1 != 0 names no vCPU of ours");
    }

    #[test]
    fn v3_routing_and_redistributor() {
        let mut d = Vdist::new(Version::V3, 2, 288);
        let mut r = Rec::default();
        d.assign_spi(78, true);
        d.mmio_write(0, 0x6000 + 78 * 8, 8, 1, &mut r);
        assert_eq!(r.ops, [PhysOp::Route(78, 1)]);
        d.mmio_write(0, 0x6000 + 78 * 8, 8, 7, &mut r);
        assert_eq!(d.target_of(78), Some(1), "vCPU 7 does not exist: ignored");
        assert_eq!(d.redist_read(1, 0x8, 8), Some((1 << 32) | (1 << 8) | (1 << 4)));
        assert_eq!(d.redist_read(0, 0x14, 4), Some(0b110));
        d.redist_write(0, 0x14, 4, 0, &mut r);
        assert_eq!(d.redist_read(0, 0x14, 4), Some(0));
        d.redist_write(1, 0x1_0100, 4, 1 << 27, &mut r);
        assert!(d.raise(1, 27, false, &mut r));
        let (v, p) = *r.delivered.last().unwrap();
        assert_eq!((v, p.intid, p.hw, p.group1), (1, 27, true, true));
        assert_eq!(d.mmio_read(0, 0x0, 4), Some(0x10));
        assert_eq!(d.mmio_read(0, 0x3, 4), None, "misaligned");
    }

    #[test]
    fn list_register_encodings_round_trip() {
        let l = Lr { intid: 79, state: LrState::Pending, priority: 0xa0, group1: false, hw: true, eoi: false };
        assert_eq!(Lr::decode_v2(l.encode_v2()), l);
        assert_eq!(l.encode_v2(), 79 | 79 << 10 | 1 << 31 | (0xa0 >> 3) << 23 | 1 << 28);
        let s = Lr { intid: 32, state: LrState::Active, priority: 0x80, group1: true, hw: false, eoi: true };
        assert_eq!(Lr::decode_v3(s.encode_v3()), s);
        assert_eq!(s.encode_v3(), 32 | 1 << 41 | 0x80 << 48 | 1 << 60 | 2 << 62);
    }

    #[test]
    fn flush_one_into_free_registers() {
        let mut q = empty_queue();
        let p = Pending { intid: 27, priority: 0xa0, group1: true, hw: true, eoi_notify: false };
        q.push(p).unwrap();
        let mut lrs = [Lr::default(); 4];
        assert_eq!(flush(&mut q, &mut lrs), 1);
        assert!(q.is_empty());
        assert_eq!(lrs[0], Lr::from_pending(p));
        assert!(lrs[1..].iter().all(|l| l.state == LrState::Invalid));
        // Again while it is in flight: nothing changes, the queue empties.
        q.push(p).unwrap();
        lrs[0].state = LrState::Active;
        assert_eq!(flush(&mut q, &mut lrs), 0);
        assert!(q.is_empty());
    }

    #[test]
    fn flush_orders_by_priority_and_evicts() {
        let p = |intid, priority| Pending { intid, priority, ..Pending::default() };
        let mut q = Queue::new();
        for (i, pr) in [(40, 0xc0), (41, 0x80), (42, 0xa0)] {
            enqueue(&mut q, p(i, pr));
        }
        enqueue(&mut q, p(41, 0x80));
        assert_eq!(q.len(), 3);
        let mut lrs = [Lr::default(); 2];
        assert_eq!(flush(&mut q, &mut lrs), 0b11);
        assert_eq!((lrs[0].intid, lrs[1].intid), (41, 42));
        assert_eq!(q[0].intid, 40);
        // A more urgent interrupt evicts the lowest-priority pending one.
        enqueue(&mut q, p(43, 0x10));
        flush(&mut q, &mut lrs);
        assert_eq!((lrs[0].intid, lrs[1].intid), (41, 43));
        assert_eq!(q.iter().map(|x| x.intid).collect::<Vec<_>>(), [40, 42]);
        // An edge while active becomes pending+active.
        lrs[0].state = LrState::Active;
        enqueue(&mut q, p(41, 0x80));
        flush(&mut q, &mut lrs);
        assert_eq!(lrs[0].state, LrState::PendingActive);
    }

    /// Found by `cargo xtask fuzz vgic_mmio`: a redistributor index past the domain's vCPUs
    /// (and past `MAX_VCPUS`) indexed the per-vCPU state. Now refused like a bad access.
    #[test]
    fn redistributor_beyond_the_vcpus_is_refused() {
        let mut vd = Vdist::new(Version::V3, 2, 64);
        let mut sink = Rec::default();
        for v in [2, MAX_VCPUS, 15, usize::MAX] {
            assert_eq!(vd.redist_read(v, 0x14, 4), None);
            assert!(!vd.redist_write(v, 0x14, 4, 0, &mut sink));
        }
        assert_eq!(vd.redist_read(1, REDIST_STRIDE, 4), None);
        assert!(vd.redist_read(1, 0x14, 4).is_some());
    }

    /// Found by `cargo xtask fuzz vgic_mmio`: a set-pending write "from" a vCPU the domain does
    /// not have delivered a private interrupt to it. The trap path never passes one, but the
    /// distributor now refuses it itself.
    #[test]
    fn vcpus_the_domain_does_not_have_are_refused() {
        let mut vd = Vdist::new(Version::V2, 1, 64);
        let mut sink = Rec::default();
        assert!(vd.mmio_write(0, 0x100, 4, u64::MAX, &mut sink));
        assert!(!vd.mmio_write(1, 0x200, 4, 1, &mut sink));
        assert_eq!(vd.mmio_read(1, 0x100, 4), None);
        assert!(!vd.raise(1, 5, false, &mut sink));
        assert!(sink.delivered.is_empty());
        assert!(vd.raise(0, 5, false, &mut sink));
        assert_eq!(sink.delivered.len(), 1);
    }
}
