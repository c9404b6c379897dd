//! The control interface (`domctl`/`sysctl`, Xen's `public/domctl.h` and `sysctl.h`): decoding the control
//! domain's requests and encoding the answers, in Xen's layouts where Xen has the operation
//! (`getdomaininfo`, `pausedomain`, `unpausedomain`, `destroydomain`,
//! `sysctl getdomaininfolist` and `physinfo`) and ferrum's own op space (`domctl::FERRUM_*`) for the rest.
//! Both the hypervisor and `hypctl` use these codecs, so the two sides cannot disagree.
//!
//! Invariants: decoding never panics; a decoded [`DomRequest`] names a command the
//! hypervisor implements and a domain id that is not a reserved one (the hypervisor still
//! checks it against its plan); an interface version other than Xen 4.19's is `-EACCES`, as
//! Xen answers it.

use xen_abi::{domctl as dc, errno, rd16, rd32, rd64, sysctl as sc, wr16, wr32, wr64};

/// A `domctl` command ferrum implements.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DomOp {
    /// `XEN_DOMCTL_destroydomain`: stop it for good (until started again).
    Destroy,
    /// `XEN_DOMCTL_pausedomain`.
    Pause,
    /// `XEN_DOMCTL_unpausedomain`.
    Unpause,
    /// `XEN_DOMCTL_getdomaininfo`: the first domain with an id `>=` the one given.
    GetInfo,
    /// Ferrum: start a declared domain that is not running.
    Start,
    /// Ferrum: stop a domain and start it again from its images.
    Restart,
    /// Ferrum: its run-time status ([`Status`]).
    Status,
    /// Ferrum: replace the kernel image of a domain that is not running ([`check_update`]).
    LoadImage,
    /// Ferrum: read a suspended domain's save stream ([`crate::savestream`]).
    SaveRead,
    /// Ferrum: check a stream's header against a slot and get it ready.
    RestoreBegin,
    /// Ferrum: write the next part of the stream's RAM.
    RestoreWrite,
    /// Ferrum: resume the restored domain.
    RestoreCommit,
    /// Ferrum: dirty logging for a live migration.
    LogDirty,
}

/// A decoded `domctl`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DomRequest {
    /// What to do.
    pub op: DomOp,
    /// Xen domain id it is about.
    pub domid: u16,
}

/// Decodes a `struct xen_domctl`.
pub fn decode_domctl(b: &[u8; dc::SIZE]) -> Result<DomRequest, i64> {
    let cmd = rd32(b, 0).unwrap_or(0);
    if rd32(b, 4) != Some(dc::INTERFACE_VERSION) {
        return Err(-errno::EACCES);
    }
    let domid = rd16(b, 8).unwrap_or(u16::MAX);
    let op = match cmd {
        dc::DESTROYDOMAIN => DomOp::Destroy,
        dc::PAUSEDOMAIN => DomOp::Pause,
        dc::UNPAUSEDOMAIN => DomOp::Unpause,
        dc::GETDOMAININFO => DomOp::GetInfo,
        dc::FERRUM_START => DomOp::Start,
        dc::FERRUM_RESTART => DomOp::Restart,
        dc::FERRUM_STATUS => DomOp::Status,
        dc::FERRUM_LOAD_IMAGE => DomOp::LoadImage,
        dc::FERRUM_SAVE_READ => DomOp::SaveRead,
        dc::FERRUM_RESTORE_BEGIN => DomOp::RestoreBegin,
        dc::FERRUM_RESTORE_WRITE => DomOp::RestoreWrite,
        dc::FERRUM_RESTORE_COMMIT => DomOp::RestoreCommit,
        dc::FERRUM_LOG_DIRTY => DomOp::LogDirty,
        _ => return Err(-errno::ENOSYS),
    };
    if domid >= xen_abi::domid::FIRST_RESERVED && op != DomOp::GetInfo {
        return Err(-errno::ESRCH);
    }
    Ok(DomRequest { op, domid })
}

/// Encodes a `struct xen_domctl` (what `hypctl` sends).
pub fn encode_domctl(cmd: u32, domid: u16) -> [u8; dc::SIZE] {
    let mut b = [0u8; dc::SIZE];
    wr32(&mut b, 0, cmd);
    wr32(&mut b, 4, dc::INTERFACE_VERSION);
    wr16(&mut b, 8, domid);
    b
}

/// A decoded `XEN_SYSCTL_getdomaininfolist`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InfoList {
    /// Lowest domain id wanted.
    pub first: u16,
    /// Records the buffer holds.
    pub max: u32,
    /// Guest pointer to the records.
    pub buffer: u64,
}

/// A decoded `struct xen_sysctl`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SysRequest {
    /// `XEN_SYSCTL_getdomaininfolist`.
    InfoList(InfoList),
    /// `XEN_SYSCTL_physinfo`.
    PhysInfo,
}

/// Decodes a `struct xen_sysctl`; `getdomaininfolist` and `physinfo` are implemented.
pub fn decode_sysctl(b: &[u8; sc::SIZE]) -> Result<SysRequest, i64> {
    if rd32(b, 4) != Some(sc::INTERFACE_VERSION) {
        return Err(-errno::EACCES);
    }
    let u = sc::UNION;
    match rd32(b, 0) {
        Some(sc::GETDOMAININFOLIST) => Ok(SysRequest::InfoList(InfoList {
            first: rd16(b, u).unwrap_or(0),
            max: rd32(b, u + 4).unwrap_or(0),
            buffer: rd64(b, u + 8).unwrap_or(0),
        })),
        Some(sc::PHYSINFO) => Ok(SysRequest::PhysInfo),
        _ => Err(-errno::ENOSYS),
    }
}

/// What `physinfo` says of the board (the fields ferrum fills).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PhysInfo {
    /// CPUs online.
    pub nr_cpus: u32,
    /// Counter frequency in kHz (ferrum reports the generic timer's; Arm has no fixed CPU clock).
    pub cpu_khz: u32,
    /// Pages of RAM on the board.
    pub total_pages: u64,
    /// Pages no domain and not the hypervisor use.
    pub free_pages: u64,
}

/// Encodes a `physinfo` request.
pub fn encode_sysctl_physinfo() -> [u8; sc::SIZE] {
    let mut b = [0u8; sc::SIZE];
    wr32(&mut b, 0, sc::PHYSINFO);
    wr32(&mut b, 4, sc::INTERFACE_VERSION);
    b
}

impl PhysInfo {
    /// Writes the answer into a `physinfo` request.
    pub fn encode_into(&self, b: &mut [u8; sc::SIZE]) {
        let u = sc::UNION;
        b[u..].fill(0);
        wr32(b, u, 1); // threads_per_core
        wr32(b, u + 4, self.nr_cpus); // cores_per_socket
        wr32(b, u + 8, self.nr_cpus);
        wr32(b, u + 12, self.nr_cpus.saturating_sub(1));
        wr32(b, u + 16, 1); // nr_nodes
        wr32(b, u + 24, self.cpu_khz);
        wr32(b, u + 28, sc::PHYSCAP_HAP);
        wr64(b, u + 40, self.total_pages);
        wr64(b, u + 48, self.free_pages);
    }
    /// Reads an answer back.
    pub fn decode(b: &[u8; sc::SIZE]) -> Self {
        let u = sc::UNION;
        Self {
            nr_cpus: rd32(b, u + 8).unwrap_or(0),
            cpu_khz: rd32(b, u + 24).unwrap_or(0),
            total_pages: rd64(b, u + 40).unwrap_or(0),
            free_pages: rd64(b, u + 48).unwrap_or(0),
        }
    }
}

/// Encodes a `getdomaininfolist` request.
pub fn encode_sysctl_list(first: u16, max: u32, buffer: u64) -> [u8; sc::SIZE] {
    let mut b = [0u8; sc::SIZE];
    wr32(&mut b, 0, sc::GETDOMAININFOLIST);
    wr32(&mut b, 4, sc::INTERFACE_VERSION);
    wr16(&mut b, sc::UNION, first);
    wr32(&mut b, sc::UNION + 4, max);
    wr64(&mut b, sc::UNION + 8, buffer);
    b
}

/// Sets the number of records written in a `getdomaininfolist` answer.
pub fn set_num_domains(b: &mut [u8; sc::SIZE], n: u32) {
    wr32(b, sc::UNION + 16, n);
}

/// Reads the number of records of a `getdomaininfolist` answer.
pub fn num_domains(b: &[u8; sc::SIZE]) -> u32 {
    rd32(b, sc::UNION + 16).unwrap_or(0)
}

/// What `getdomaininfo` says of a domain (the fields ferrum fills; the rest are zero).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DomInfo {
    /// Xen domain id.
    pub domid: u16,
    /// `XEN_DOMINF_*` flags, with the shutdown code in bits 16..24.
    pub flags: u32,
    /// Pages it has.
    pub tot_pages: u64,
    /// Pages it may have.
    pub max_pages: u64,
    /// Nanoseconds its vCPUs ran.
    pub cpu_time: u64,
    /// vCPUs online.
    pub online_vcpus: u32,
    /// Highest vCPU id.
    pub max_vcpu_id: u32,
    /// GIC version (`XEN_DOMCTL_CONFIG_GIC_V2` = 1, `V3` = 2; 0: none).
    pub gic_version: u8,
}

impl DomInfo {
    /// Xen's `struct xen_domctl_getdomaininfo` bytes.
    pub fn encode(&self) -> [u8; dc::INFO_SIZE] {
        let mut b = [0u8; dc::INFO_SIZE];
        wr16(&mut b, 0, self.domid);
        wr32(&mut b, 4, self.flags);
        wr64(&mut b, 8, self.tot_pages);
        wr64(&mut b, 16, self.max_pages);
        wr64(&mut b, 56, self.cpu_time);
        wr32(&mut b, 64, self.online_vcpus);
        wr32(&mut b, 68, self.max_vcpu_id);
        b[104] = self.gic_version;
        b
    }
    /// Reads one record back (`None`: too short).
    pub fn decode(b: &[u8]) -> Option<Self> {
        Some(Self {
            domid: rd16(b, 0)?,
            flags: rd32(b, 4)?,
            tot_pages: rd64(b, 8)?,
            max_pages: rd64(b, 16)?,
            cpu_time: rd64(b, 56)?,
            online_vcpus: rd32(b, 64)?,
            max_vcpu_id: rd32(b, 68)?,
            gic_version: *b.get(104)?,
        })
    }
}

/// Ferrum's run-time status of a domain (`domctl::FERRUM_STATUS`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Status {
    /// 0: running; otherwise the code of why it ended (the hypervisor's `EndReason`).
    pub state: u8,
    /// Paused by the control domain.
    pub paused: bool,
    /// vCPUs it has.
    pub vcpus: u16,
    /// Times it was restarted (by itself, by policy or by the control domain).
    pub restarts: u32,
    /// Nanoseconds it has run since it last started, pauses excluded.
    pub uptime_ns: u64,
    /// Nanoseconds its vCPUs were not blocked in the hypervisor since it last started.
    pub cpu_time_ns: u64,
    /// Traps taken from it (hypercalls included).
    pub traps: u64,
    /// Hypercalls.
    pub hypercalls: u64,
    /// Virtual interrupts injected into it.
    pub irqs: u64,
    /// Its name (at most 32 bytes).
    pub name: [u8; 32],
    /// It runs Linux.
    pub linux: bool,
    /// Why it last ended (a [`state_text`] code; 0: it never ended).
    pub last_exit: u8,
    /// Nanoseconds since it ended (0 while it runs): for a suspended domain, the time since
    /// its suspend, which a migration carries to the other board.
    pub since_end_ns: u64,
}

impl Status {
    /// The record's bytes (they go into the domctl's union).
    pub fn encode(&self) -> [u8; dc::STATUS_SIZE] {
        let mut b = [0u8; dc::STATUS_SIZE];
        b[0] = self.state;
        b[1] = u8::from(self.paused);
        wr16(&mut b, 2, self.vcpus);
        wr32(&mut b, 4, self.restarts);
        for (i, v) in [self.uptime_ns, self.cpu_time_ns, self.traps, self.hypercalls, self.irqs].into_iter().enumerate()
        {
            wr64(&mut b, 8 + 8 * i, v);
        }
        b[48..80].copy_from_slice(&self.name);
        b[80] = u8::from(self.linux);
        b[81] = self.last_exit;
        wr64(&mut b, 88, self.since_end_ns);
        b
    }
    /// Reads a record back (`None`: too short).
    pub fn decode(b: &[u8]) -> Option<Self> {
        let mut name = [0u8; 32];
        name.copy_from_slice(b.get(48..80)?);
        Some(Self {
            state: *b.first()?,
            paused: *b.get(1)? != 0,
            vcpus: rd16(b, 2)?,
            restarts: rd32(b, 4)?,
            uptime_ns: rd64(b, 8)?,
            cpu_time_ns: rd64(b, 16)?,
            traps: rd64(b, 24)?,
            hypercalls: rd64(b, 32)?,
            irqs: rd64(b, 40)?,
            name,
            linux: *b.get(80)? != 0,
            last_exit: *b.get(81)?,
            since_end_ns: rd64(b, 88)?,
        })
    }
    /// The name as text.
    pub fn name(&self) -> &str {
        let n = self.name.iter().position(|&c| c == 0).unwrap_or(32);
        core::str::from_utf8(&self.name[..n]).unwrap_or("?")
    }
    /// Sets the name (truncated to 32 bytes).
    pub fn set_name(&mut self, n: &str) {
        let l = n.len().min(32);
        self.name = [0; 32];
        self.name[..l].copy_from_slice(&n.as_bytes()[..l]);
    }
}

/// Why a new kernel image cannot replace a domain's (`hypctl update`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UpdateError {
    /// Its header is not a usable arm64 Image's.
    Header(crate::image::ImageError),
    /// Its `text_offset` differs from the current image's (the domain's layout depends on it).
    TextOffset {
        /// The new image's.
        new: u64,
        /// The current image's.
        current: u64,
    },
    /// It is larger than the domain's kernel slot in the staging window.
    Slot {
        /// Its size.
        need: u64,
        /// The slot's.
        have: u64,
    },
    /// Loaded, it would not fit the domain's RAM below its initrd and device tree.
    Ram {
        /// Its footprint (text offset + loaded size).
        need: u64,
        /// What the domain's layout leaves for the kernel.
        have: u64,
    },
}

impl core::fmt::Display for UpdateError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Header(e) => write!(f, "{e}"),
            Self::TextOffset { new, current } => {
                write!(f, "its text_offset {new:#x} differs from the current image's {current:#x}")
            }
            Self::Slot { need, have } => write!(f, "{need} bytes do not fit the domain's image slot of {have} bytes"),
            Self::Ram { need, have } => {
                write!(f, "it needs {need} bytes of the domain's RAM, its layout leaves {have}")
            }
        }
    }
}

/// Checks a new kernel image for a domain: `head` is the start of the file (at least its
/// header), `size` its length, `text_offset` the current image's, `slot` the bytes of its
/// staging slot, `room` the bytes of RAM its layout leaves for the kernel (from the RAM base to
/// the initrd, or to the device tree).
pub fn check_update(head: &[u8], size: u64, text_offset: u64, slot: u64, room: u64) -> Result<(), UpdateError> {
    let h = crate::image::parse(head).map_err(UpdateError::Header)?;
    if h.text_offset != text_offset {
        return Err(UpdateError::TextOffset { new: h.text_offset, current: text_offset });
    }
    if size > slot {
        return Err(UpdateError::Slot { need: size, have: slot });
    }
    let need = h.footprint(size);
    if need > room {
        return Err(UpdateError::Ram { need, have: room });
    }
    Ok(())
}

/// Ferrum's `FERRUM_LOAD_IMAGE` request: the image's guest address and size at 0 and 8 of the
/// union; the hypervisor answers with the slot's and the RAM room's sizes at 16 and 24 and the
/// current text offset at 32.
pub fn encode_load(domid: u16, buffer: u64, size: u64, sig: u64) -> [u8; dc::SIZE] {
    let mut b = encode_domctl(dc::FERRUM_LOAD_IMAGE, domid);
    wr64(&mut b, dc::UNION, buffer);
    wr64(&mut b, dc::UNION + 8, size);
    wr64(&mut b, dc::UNION + 40, sig);
    b
}

/// The address of a `FERRUM_LOAD_IMAGE` request's 64-byte Ed25519 signature (0: none).
pub fn load_sig_arg(b: &[u8; dc::SIZE]) -> u64 {
    rd64(b, dc::UNION + 40).unwrap_or(0)
}

/// The (buffer, size) of a `FERRUM_LOAD_IMAGE` request.
pub fn load_args(b: &[u8; dc::SIZE]) -> (u64, u64) {
    (rd64(b, dc::UNION).unwrap_or(0), rd64(b, dc::UNION + 8).unwrap_or(0))
}

/// Writes the slot and room sizes and the current image's text offset into a
/// `FERRUM_LOAD_IMAGE` answer (what [`check_update`] needs to explain a refusal).
pub fn set_load_limits(b: &mut [u8; dc::SIZE], slot: u64, room: u64, text_offset: u64) {
    wr64(b, dc::UNION + 16, slot);
    wr64(b, dc::UNION + 24, room);
    wr64(b, dc::UNION + 32, text_offset);
}

/// Reads (slot, room, text offset) of a `FERRUM_LOAD_IMAGE` answer.
pub fn load_limits(b: &[u8; dc::SIZE]) -> (u64, u64, u64) {
    (rd64(b, dc::UNION + 16).unwrap_or(0), rd64(b, dc::UNION + 24).unwrap_or(0), rd64(b, dc::UNION + 32).unwrap_or(0))
}

/// A ranged transfer (`FERRUM_SAVE_READ`, `FERRUM_RESTORE_WRITE`): offset@0, len@8, buffer@16.
pub fn encode_xfer(cmd: u32, domid: u16, off: u64, len: u64, buffer: u64) -> [u8; dc::SIZE] {
    let mut b = encode_domctl(cmd, domid);
    wr64(&mut b, dc::UNION, off);
    wr64(&mut b, dc::UNION + 8, len);
    wr64(&mut b, dc::UNION + 16, buffer);
    b
}

/// (offset, len, buffer) of a ranged transfer.
pub fn xfer_args(b: &[u8; dc::SIZE]) -> (u64, u64, u64) {
    (rd64(b, dc::UNION).unwrap_or(0), rd64(b, dc::UNION + 8).unwrap_or(0), rd64(b, dc::UNION + 16).unwrap_or(0))
}

/// The stream length a `FERRUM_SAVE_READ` answer carries.
pub fn set_stream_len(b: &mut [u8; dc::SIZE], n: u64) {
    wr64(b, dc::UNION + 24, n);
}

/// Reads the stream length of a `FERRUM_SAVE_READ` answer.
pub fn stream_len(b: &[u8; dc::SIZE]) -> u64 {
    rd64(b, dc::UNION + 24).unwrap_or(0)
}

/// Why a domain is not running, in words, from [`Status::state`] (the hypervisor's codes).
pub fn state_text(state: u8) -> &'static str {
    match state {
        0 => "running",
        1 => "powered off",
        2 => "all vCPUs off",
        3 => "stopped (fault)",
        4 => "crashed",
        5 => "stopped (reset)",
        6 => "stopped (fault budget)",
        7 => "stopped (fault)",
        8 => "destroyed",
        9 => "stopped (watchdog)",
        10 => "stopped (restart limit)",
        11 => "not started",
        12 => "stopped (reboot)",
        13 => "suspended",
        _ => "?",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domctl_round_trip_and_rejections() {
        let b = encode_domctl(dc::PAUSEDOMAIN, 2);
        assert_eq!(decode_domctl(&b), Ok(DomRequest { op: DomOp::Pause, domid: 2 }));
        let b = encode_domctl(dc::FERRUM_STATUS, 3);
        assert_eq!(decode_domctl(&b), Ok(DomRequest { op: DomOp::Status, domid: 3 }));
        let mut old = encode_domctl(dc::PAUSEDOMAIN, 2);
        wr32(&mut old, 4, 0x15);
        assert_eq!(decode_domctl(&old), Err(-errno::EACCES));
        assert_eq!(decode_domctl(&encode_domctl(1, 2)), Err(-errno::ENOSYS)); // createdomain
        assert_eq!(decode_domctl(&encode_domctl(0xf000_0000, 2)), Err(-errno::ENOSYS));
        assert_eq!(decode_domctl(&encode_domctl(dc::DESTROYDOMAIN, 0x7ff0)), Err(-errno::ESRCH));
        assert_eq!(decode_domctl(&encode_domctl(dc::GETDOMAININFO, 0x7ff0)).map(|r| r.op), Ok(DomOp::GetInfo));
        assert_eq!(decode_domctl(&[0xff; dc::SIZE]), Err(-errno::EACCES));
    }

    #[test]
    fn sysctl_round_trip() {
        let mut b = encode_sysctl_list(1, 8, 0x1234_5000);
        assert_eq!(decode_sysctl(&b), Ok(SysRequest::InfoList(InfoList { first: 1, max: 8, buffer: 0x1234_5000 })));
        let mut p = encode_sysctl_physinfo();
        assert_eq!(decode_sysctl(&p), Ok(SysRequest::PhysInfo));
        let info = PhysInfo { nr_cpus: 4, cpu_khz: 62_500, total_pages: 1 << 20, free_pages: 1 << 18 };
        info.encode_into(&mut p);
        assert_eq!(PhysInfo::decode(&p), info);
        assert_eq!(rd32(&p, sc::UNION), Some(1)); // threads_per_core
        set_num_domains(&mut b, 3);
        assert_eq!(num_domains(&b), 3);
        let mut bad = b;
        wr32(&mut bad, 0, 1); // readconsole
        assert_eq!(decode_sysctl(&bad), Err(-errno::ENOSYS));
        wr32(&mut bad, 4, 0x14);
        assert_eq!(decode_sysctl(&bad), Err(-errno::EACCES));
    }

    #[test]
    fn info_layout_is_xens() {
        let i = DomInfo {
            domid: 2,
            flags: dc::DOMINF_PAUSED | dc::DOMINF_HAP,
            tot_pages: 4096,
            max_pages: 4096,
            cpu_time: 77,
            online_vcpus: 1,
            max_vcpu_id: 0,
            gic_version: 2,
        };
        let b = i.encode();
        assert_eq!(&b[0..2], &[2, 0]);
        assert_eq!(rd32(&b, 4), Some((1 << 3) | (1 << 8)));
        assert_eq!(rd64(&b, 56), Some(77));
        assert_eq!(b[104], 2);
        assert_eq!(DomInfo::decode(&b), Some(i));
        assert_eq!(DomInfo::decode(&b[..100]), None);
    }

    #[test]
    fn updates_are_checked() {
        let mut h = [0u8; 64];
        h[16..24].copy_from_slice(&0x3_0000u64.to_le_bytes()); // image_size
        h[56..60].copy_from_slice(&crate::image::MAGIC.to_le_bytes());
        assert_eq!(check_update(&h, 0x2_0000, 0, 0x20_0000, 0x40_0000), Ok(()));
        assert!(matches!(check_update(&[0; 64], 100, 0, 1 << 21, 1 << 22), Err(UpdateError::Header(_))));
        assert_eq!(
            check_update(&h, 0x2_0000, 0x8_0000, 1 << 21, 1 << 22),
            Err(UpdateError::TextOffset { new: 0, current: 0x8_0000 })
        );
        assert_eq!(
            check_update(&h, 0x30_0000, 0, 0x20_0000, 1 << 30),
            Err(UpdateError::Slot { need: 0x30_0000, have: 0x20_0000 })
        );
        assert_eq!(
            check_update(&h, 0x2_0000, 0, 1 << 21, 0x2_0000),
            Err(UpdateError::Ram { need: 0x3_0000, have: 0x2_0000 })
        );
        let x = encode_xfer(dc::FERRUM_SAVE_READ, 2, 4096, 65536, 0x8000);
        assert_eq!(decode_domctl(&x).map(|r| r.op), Ok(DomOp::SaveRead));
        assert_eq!(xfer_args(&x), (4096, 65536, 0x8000));
        let mut x = x;
        set_stream_len(&mut x, 99);
        assert_eq!(stream_len(&x), 99);
        let b = encode_load(2, 0x1000, 0x2_0000, 0x9000);
        assert_eq!(decode_domctl(&b).map(|r| r.op), Ok(DomOp::LoadImage));
        assert_eq!(load_args(&b), (0x1000, 0x2_0000));
        assert_eq!(load_sig_arg(&b), 0x9000);
        let mut b = b;
        set_load_limits(&mut b, 5, 6, 7);
        assert_eq!(load_limits(&b), (5, 6, 7));
    }

    #[test]
    fn status_round_trip() {
        let mut s = Status {
            state: 8,
            paused: true,
            vcpus: 2,
            restarts: 5,
            uptime_ns: 1,
            irqs: 9,
            last_exit: 9,
            since_end_ns: 77_000_000,
            ..Default::default()
        };
        s.set_name("web");
        let d = Status::decode(&s.encode()).unwrap();
        assert_eq!(d, s);
        assert_eq!(d.name(), "web");
        assert_eq!(state_text(d.state), "destroyed");
        assert!(Status::decode(&[0; 10]).is_none());
    }
}
