//! The Xen guest ABI on arm64, written from Xen's public headers (`xen/include/public/`) as
//! summarised in `docs/xen-abi.md`: hypercall numbers, sub-operation numbers, errno values,
//! feature bits and the byte layouts of every structure the hypervisor and our guests
//! exchange. Structures are described as offsets into little-endian byte buffers rather than
//! `#[repr(C)]` types, so both sides decode untrusted memory without `unsafe`.
//!
//! Invariant: every constant here equals Xen's (checked against the headers named in each
//! module); nothing here is specific to our hypervisor.
#![no_std]
#![forbid(unsafe_code)]

/// Immediate of the `hvc` instruction that makes a Xen hypercall.
pub const HYPERCALL_TAG: u16 = 0xea1;
/// Guest page size (4 KiB granule only).
pub const PAGE_SIZE: u64 = 4096;

/// Hypercall numbers (`xen.h`), passed in x16.
#[allow(missing_docs)] // constants carry Xen\'s own names; see the header cited above
pub mod hc {
    pub const MEMORY_OP: u64 = 12;
    pub const XEN_VERSION: u64 = 17;
    pub const CONSOLE_IO: u64 = 18;
    pub const GRANT_TABLE_OP: u64 = 20;
    pub const VM_ASSIST: u64 = 21;
    pub const VCPU_OP: u64 = 24;
    pub const SCHED_OP: u64 = 29;
    pub const EVENT_CHANNEL_OP: u64 = 32;
    pub const PHYSDEV_OP: u64 = 33;
    pub const HVM_OP: u64 = 34;
    pub const SYSCTL: u64 = 35;
    pub const DOMCTL: u64 = 36;
}

/// Xen errno values (`errno.h`); hypercalls return them negated.
#[allow(missing_docs)] // constants carry Xen\'s own names; see the header cited above
pub mod errno {
    pub const EPERM: i64 = 1;
    pub const ENOENT: i64 = 2;
    pub const ESRCH: i64 = 3;
    pub const EAGAIN: i64 = 11;
    pub const ENOMEM: i64 = 12;
    pub const EACCES: i64 = 13;
    pub const EFAULT: i64 = 14;
    pub const EBUSY: i64 = 16;
    pub const EEXIST: i64 = 17;
    pub const EINVAL: i64 = 22;
    pub const ENOSPC: i64 = 28;
    pub const E2BIG: i64 = 7;
    pub const ENXIO: i64 = 6;
    pub const ENOSYS: i64 = 38;
    pub const ENOTEMPTY: i64 = 39;
}

/// Special domain ids (`xen.h`).
#[allow(missing_docs)] // constants carry Xen\'s own names; see the header cited above
pub mod domid {
    pub const SELF: u16 = 0x7ff0;
    pub const FIRST_RESERVED: u16 = 0x7ff0;
    pub const INVALID: u16 = 0x7ff4;
}

/// `xen_version` (`version.h`).
#[allow(missing_docs)] // constants carry Xen\'s own names; see the header cited above
pub mod version {
    pub const VERSION: u64 = 0;
    pub const EXTRAVERSION: u64 = 1;
    pub const COMPILE_INFO: u64 = 2;
    pub const CAPABILITIES: u64 = 3;
    pub const CHANGESET: u64 = 4;
    pub const PLATFORM_PARAMETERS: u64 = 5;
    pub const GET_FEATURES: u64 = 6;
    pub const PAGESIZE: u64 = 7;
    pub const GUEST_HANDLE: u64 = 8;
    pub const BUILD_ID: u64 = 10;
    /// The Xen version we report (`major << 16 | minor`).
    pub const REPORTED: (u32, u32) = (4, 19);
}

/// Feature bits of `XENVER_get_features` submap 0 (`features.h`).
#[allow(missing_docs)] // constants carry Xen\'s own names; see the header cited above
pub mod feature {
    pub const WRITABLE_PAGE_TABLES: u32 = 1 << 0;
    pub const AUTO_TRANSLATED_PHYSMAP: u32 = 1 << 2;
    pub const DOM0: u32 = 1 << 11;
    pub const NOT_DIRECT_MAPPED: u32 = 1 << 16;
    pub const DIRECT_MAPPED: u32 = 1 << 17;
}

/// `memory_op` (`memory.h`).
#[allow(missing_docs)] // constants carry Xen\'s own names; see the header cited above
pub mod memory {
    pub const INCREASE_RESERVATION: u64 = 0;
    pub const DECREASE_RESERVATION: u64 = 1;
    pub const CURRENT_RESERVATION: u64 = 3;
    pub const MAXIMUM_RESERVATION: u64 = 4;
    pub const POPULATE_PHYSMAP: u64 = 6;
    pub const ADD_TO_PHYSMAP: u64 = 7;
    pub const ADD_TO_PHYSMAP_BATCH: u64 = 23;
    pub const SPACE_SHARED_INFO: u32 = 0;
    pub const SPACE_GRANT_TABLE: u32 = 1;
    /// `xen_add_to_physmap`: 0 u16 domid, 2 u16 size, 4 u32 space, 8 u64 idx, 16 u64 gpfn.
    pub const ADD_TO_PHYSMAP_SIZE: usize = 24;
    /// `xen_memory_reservation`: 0 handle extent_start, 8 u64 nr_extents, 16 u32 extent_order,
    /// 20 u32 mem_flags, 24 u16 domid.
    pub const RESERVATION_SIZE: usize = 32;
    /// `memory_op`'s command is the low bits; the bits above say where a preempted call resumes.
    pub const MEMOP_CMD_MASK: u64 = 0x3f;
    pub const MEMOP_EXTENT_SHIFT: u32 = 6;

    /// A decoded `xen_memory_reservation`.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct Reservation {
        /// Guest handle (virtual address) of the `xen_pfn_t` extent list.
        pub extent_start: u64,
        pub nr_extents: u64,
        pub extent_order: u32,
        pub mem_flags: u32,
        pub domid: u16,
    }

    impl Reservation {
        /// Decodes the structure from its bytes (`None` when too short).
        pub fn parse(b: &[u8]) -> Option<Self> {
            Some(Self {
                extent_start: super::rd64(b, 0)?,
                nr_extents: super::rd64(b, 8)?,
                extent_order: super::rd32(b, 16)?,
                mem_flags: super::rd32(b, 20)?,
                domid: super::rd16(b, 24)?,
            })
        }
    }
}

/// `vcpu_op` (`vcpu.h`).
#[allow(missing_docs)] // constants carry Xen\'s own names; see the header cited above
pub mod vcpu {
    pub const REGISTER_RUNSTATE_MEMORY_AREA: u64 = 5;
    pub const REGISTER_VCPU_INFO: u64 = 10;
    /// `vcpu_register_vcpu_info`: 0 u64 mfn, 8 u32 offset, 12 u32 rsvd.
    pub const REGISTER_VCPU_INFO_SIZE: usize = 16;
}

/// `hvm_op` (`hvm_op.h`, `params.h`).
#[allow(missing_docs)] // constants carry Xen\'s own names; see the header cited above
pub mod hvm {
    pub const SET_PARAM: u64 = 0;
    pub const GET_PARAM: u64 = 1;
    /// `xen_hvm_param`: 0 u16 domid, 4 u32 index, 8 u64 value.
    pub const PARAM_SIZE: usize = 16;
    pub const PARAM_CALLBACK_IRQ: u32 = 0;
    pub const PARAM_STORE_PFN: u32 = 1;
    pub const PARAM_STORE_EVTCHN: u32 = 2;
    pub const PARAM_CONSOLE_PFN: u32 = 17;
    pub const PARAM_CONSOLE_EVTCHN: u32 = 18;
}

/// `sched_op` (`sched.h`).
#[allow(missing_docs)] // constants carry Xen\'s own names; see the header cited above
pub mod sched {
    pub const YIELD: u64 = 0;
    pub const BLOCK: u64 = 1;
    pub const SHUTDOWN: u64 = 2;
    pub const POLL: u64 = 3;
    /// `struct sched_watchdog { uint32_t id; uint32_t timeout; }` (seconds).
    pub const WATCHDOG: u64 = 6;
    pub const SHUTDOWN_POWEROFF: u32 = 0;
    pub const SHUTDOWN_REBOOT: u32 = 1;
    pub const SHUTDOWN_SUSPEND: u32 = 2;
    pub const SHUTDOWN_CRASH: u32 = 3;
    pub const SHUTDOWN_WATCHDOG: u32 = 4;
}

/// `domctl` (`public/domctl.h`, Xen 4.19): the control domain's operations on one domain.
/// `struct xen_domctl` is `cmd`, `interface_version`, `domain` and a 128-byte union at 16.
/// The `FERRUM_*` commands are ferrum's own, in a space Xen does not use (from `0xf000_0000`).
#[allow(missing_docs)] // constants carry Xen's own names; see the header cited above
pub mod domctl {
    pub const INTERFACE_VERSION: u32 = 0x17;
    pub const SIZE: usize = 144;
    pub const UNION: usize = 16;
    pub const DESTROYDOMAIN: u32 = 2;
    pub const PAUSEDOMAIN: u32 = 3;
    pub const UNPAUSEDOMAIN: u32 = 4;
    pub const GETDOMAININFO: u32 = 5;
    /// `struct xen_domctl_getdomaininfo` (Arm): domain@0 flags@4 tot_pages@8 max_pages@16
    /// shared_info_frame@48 cpu_time@56 nr_online_vcpus@64 max_vcpu_id@68 handle@76
    /// cpupool@92 gpaddr_bits@96 arch_config@104 (gic_version, tee_type, nr_spis,
    /// clock_frequency); 8-byte aligned.
    pub const INFO_SIZE: usize = 120;
    pub const DOMINF_DYING: u32 = 1 << 0;
    pub const DOMINF_SHUTDOWN: u32 = 1 << 2;
    pub const DOMINF_PAUSED: u32 = 1 << 3;
    pub const DOMINF_BLOCKED: u32 = 1 << 4;
    pub const DOMINF_RUNNING: u32 = 1 << 5;
    pub const DOMINF_HAP: u32 = 1 << 8;
    pub const DOMINF_SHUTDOWN_SHIFT: u32 = 16;
    /// Start a declared domain that is not running (ferrum).
    pub const FERRUM_START: u32 = 0xf000_0001;
    /// Stop a domain and start it again from its images (ferrum).
    pub const FERRUM_RESTART: u32 = 0xf000_0002;
    /// Read a domain's run-time status into the union (ferrum, [`STATUS_SIZE`] bytes).
    pub const FERRUM_STATUS: u32 = 0xf000_0003;
    /// Replace the kernel image of a domain that is not running (ferrum): buffer@0, size@8 of
    /// the union, the image's Ed25519 signature's address@40 (0: none; required when the
    /// signed plan names an update key); the answer gives the slot's size@16, the RAM room@24
    /// and the text offset@32.
    pub const FERRUM_LOAD_IMAGE: u32 = 0xf000_0004;
    /// Read bytes of a suspended domain's save stream (ferrum): offset@0, len@8, buffer@16 of
    /// the union; the answer gives the stream's length (without trailer) @24.
    pub const FERRUM_SAVE_READ: u32 = 0xf000_0005;
    /// Start restoring a save stream into a slot (ferrum): the 4 KiB header's address @0.
    pub const FERRUM_RESTORE_BEGIN: u32 = 0xf000_0006;
    /// Write whole pages of the stream's RAM, in any order (ferrum): offset@0, len@8, buffer@16.
    pub const FERRUM_RESTORE_WRITE: u32 = 0xf000_0007;
    /// Resume the restored domain (ferrum): its final 4 KiB header's address @0, the
    /// nanoseconds since its suspend @8 (its virtual counter moves on by them).
    pub const FERRUM_RESTORE_COMMIT: u32 = 0xf000_0008;
    /// Dirty logging for a live migration (ferrum): op@0 (1 start, 2 read and clear the
    /// bitmap, 3 stop), buffer@8, len@16; the answer gives the dirty pages @24.
    pub const FERRUM_LOG_DIRTY: u32 = 0xf000_0009;
    /// Ferrum's status record: state@0 (u8: 0 running, else the end reason), paused@1 (u8),
    /// vcpus@2 (u16), restarts@4 (u32), uptime_ns@8, cpu_time_ns@16, traps@24,
    /// hypercalls@32, irqs_injected@40, name@48 (32 bytes, NUL-padded), kind@80 (u8: 1 Linux),
    /// last_exit@81 (u8: why it last ended, 0 never), since_end_ns@88 (0 while it runs).
    pub const STATUS_SIZE: usize = 96;
}

/// `sysctl` (`public/sysctl.h`, Xen 4.19): `struct xen_sysctl` is `cmd`,
/// `interface_version` and a 128-byte union at 8.
#[allow(missing_docs)] // constants carry Xen's own names; see the header cited above
pub mod sysctl {
    pub const INTERFACE_VERSION: u32 = 0x15;
    pub const SIZE: usize = 136;
    pub const UNION: usize = 8;
    /// `xen_sysctl_getdomaininfolist`: first_domain@0 (u16), max_domains@4 (u32),
    /// buffer@8 (handle of [`super::domctl::INFO_SIZE`]-byte records), num_domains@16 (u32).
    pub const GETDOMAININFOLIST: u32 = 6;
    /// `xen_sysctl_physinfo`: threads_per_core@0, cores_per_socket@4, nr_cpus@8,
    /// max_cpu_id@12, nr_nodes@16, max_node_id@20, cpu_khz@24, capabilities@28,
    /// arch_capabilities@32, total_pages@40, free_pages@48, scrub_pages@56,
    /// outstanding_pages@64, max_mfn@72, hw_cap[8]@80 (u32).
    pub const PHYSINFO: u32 = 3;
    /// `XEN_SYSCTL_PHYSCAP_hap`.
    pub const PHYSCAP_HAP: u32 = 1 << 1;
}

/// `console_io` (`xen.h`).
#[allow(missing_docs)] // constants carry Xen\'s own names; see the header cited above
pub mod console_io {
    pub const WRITE: u64 = 0;
    pub const READ: u64 = 1;
}

/// `event_channel_op` (`event_channel.h`).
#[allow(missing_docs)] // constants carry Xen\'s own names; see the header cited above
pub mod evtchn {
    pub const BIND_INTERDOMAIN: u64 = 0;
    pub const BIND_VIRQ: u64 = 1;
    pub const CLOSE: u64 = 3;
    pub const SEND: u64 = 4;
    pub const STATUS: u64 = 5;
    pub const ALLOC_UNBOUND: u64 = 6;
    pub const BIND_VCPU: u64 = 8;
    pub const UNMASK: u64 = 9;
    pub const INIT_CONTROL: u64 = 11;
    pub const EXPAND_ARRAY: u64 = 12;
    pub const SET_PRIORITY: u64 = 13;
    /// Ports of the 2-level ABI on 64-bit guests.
    pub const NR_2L: u32 = 4096;
    /// `EVTCHNOP_status` results.
    pub const STATUS_CLOSED: u32 = 0;
    pub const STATUS_UNBOUND: u32 = 1;
    pub const STATUS_INTERDOMAIN: u32 = 2;
    pub const STATUS_VIRQ: u32 = 4;
    /// `evtchn_bind_virq`: 0 u32 virq, 4 u32 vcpu, 8 u32 port (out).
    pub const BIND_VIRQ_SIZE: usize = 12;
    /// Virtual IRQs (`xen.h`).
    pub const VIRQ_TIMER: u32 = 0;
    pub const VIRQ_DEBUG: u32 = 1;
    pub const VIRQ_CONSOLE: u32 = 2;
    pub const VIRQ_DOM_EXC: u32 = 3;
    pub const VIRQ_XENOPROF: u32 = 7;
    pub const VIRQ_XENPMU: u32 = 13;
    pub const NR_VIRQS: u32 = 24;
    /// Whether a virtual IRQ is global (bound on vCPU 0 only) rather than per vCPU, as Xen's
    /// `virq_is_global` decides on Arm.
    pub fn virq_is_global(virq: u32) -> bool {
        !matches!(virq, VIRQ_TIMER | VIRQ_DEBUG | VIRQ_XENOPROF | VIRQ_XENPMU)
    }
}

/// `sched_poll` (`sched.h`): 0 handle ports, 8 u32 nr_ports, 16 u64 timeout (system time, ns).
pub mod poll {
    /// Bytes of the structure.
    pub const SIZE: usize = 24;
    /// Most ports one `SCHEDOP_poll` may name (Xen's limit).
    pub const MAX_PORTS: u32 = 128;
}

/// Grant tables v1 (`grant_table.h`).
#[allow(missing_docs)] // constants carry Xen\'s own names; see the header cited above
pub mod gnttab {
    pub const MAP_GRANT_REF: u64 = 0;
    pub const UNMAP_GRANT_REF: u64 = 1;
    pub const SETUP_TABLE: u64 = 2;
    pub const COPY: u64 = 5;
    pub const QUERY_SIZE: u64 = 6;
    pub const SET_VERSION: u64 = 8;
    pub const GET_VERSION: u64 = 10;
    /// `gnttab_query_size`: 0 u16 dom, 4 u32 nr_frames, 8 u32 max_nr_frames, 12 i16 status.
    pub const QUERY_SIZE_SIZE: usize = 16;
    pub const ENTRY_SIZE: usize = 8;
    pub const ENTRIES_PER_FRAME: u32 = 512;
    pub const GTF_PERMIT_ACCESS: u16 = 1;
    pub const GTF_TYPE_MASK: u16 = 3;
    pub const GTF_READONLY: u16 = 1 << 2;
    pub const GTF_READING: u16 = 1 << 3;
    pub const GTF_WRITING: u16 = 1 << 4;
    pub const GNTST_OKAY: i16 = 0;
    pub const GNTST_GENERAL_ERROR: i16 = -1;
    pub const GNTST_BAD_DOMAIN: i16 = -2;
    pub const GNTST_BAD_GNTREF: i16 = -3;
    pub const GNTST_BAD_HANDLE: i16 = -4;
    pub const GNTST_BAD_VIRT_ADDR: i16 = -5;
    pub const GNTST_NO_DEVICE_SPACE: i16 = -7;
    pub const GNTST_PERMISSION_DENIED: i16 = -8;
    pub const GNTST_BAD_PAGE: i16 = -9;
    pub const GNTST_BAD_COPY_ARG: i16 = -10;
    pub const GNTMAP_DEVICE_MAP: u32 = 1 << 0;
    pub const GNTMAP_HOST_MAP: u32 = 1 << 1;
    pub const GNTMAP_READONLY: u32 = 1 << 2;
    pub const GNTMAP_APPLICATION_MAP: u32 = 1 << 3;
    pub const GNTMAP_CONTAINS_PTE: u32 = 1 << 4;
    pub const GNTCOPY_SOURCE_GREF: u16 = 1 << 0;
    pub const GNTCOPY_DEST_GREF: u16 = 1 << 1;
    /// `gnttab_map_grant_ref`: 0 u64 host_addr, 8 u32 flags, 12 u32 ref, 16 u16 dom,
    /// 18 i16 status, 20 u32 handle, 24 u64 dev_bus_addr.
    pub const MAP_SIZE: usize = 32;
    /// `gnttab_unmap_grant_ref`: 0 u64 host_addr, 8 u64 dev_bus_addr, 16 u32 handle, 20 i16 status.
    pub const UNMAP_SIZE: usize = 24;
    /// `gnttab_copy`: source {0 u64 ref/gmfn, 8 u16 domid, 10 u16 offset}, dest the same at 16,
    /// 32 u16 len, 34 u16 flags, 36 i16 status.
    pub const COPY_SIZE: usize = 40;

    /// A decoded `gnttab_map_grant_ref`.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct MapOp {
        pub host_addr: u64,
        pub flags: u32,
        pub gref: u32,
        pub dom: u16,
    }

    impl MapOp {
        /// Decodes the inputs (`None` when too short).
        pub fn parse(b: &[u8]) -> Option<Self> {
            Some(Self {
                host_addr: super::rd64(b, 0)?,
                flags: super::rd32(b, 8)?,
                gref: super::rd32(b, 12)?,
                dom: super::rd16(b, 16)?,
            })
        }
    }

    /// One side of a `gnttab_copy`.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct CopySide {
        /// A grant reference (when the side's `*_GREF` flag is set) or a frame of the caller.
        pub ref_or_gmfn: u64,
        pub domid: u16,
        pub offset: u16,
    }

    /// A decoded `gnttab_copy`.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct CopyOp {
        pub source: CopySide,
        pub dest: CopySide,
        pub len: u16,
        pub flags: u16,
    }

    impl CopyOp {
        /// Decodes the inputs (`None` when too short).
        pub fn parse(b: &[u8]) -> Option<Self> {
            let side = |o: usize| -> Option<CopySide> {
                Some(CopySide {
                    ref_or_gmfn: super::rd64(b, o)?,
                    domid: super::rd16(b, o + 8)?,
                    offset: super::rd16(b, o + 10)?,
                })
            };
            Some(Self { source: side(0)?, dest: side(16)?, len: super::rd16(b, 32)?, flags: super::rd16(b, 34)? })
        }
    }
}

/// shared_info / vcpu_info layout (`xen.h`, `arch-arm.h`).
#[allow(missing_docs)] // constants carry Xen\'s own names; see the header cited above
pub mod shared {
    pub const VCPU_INFO_SIZE: u64 = 48;
    pub const VCPU_UPCALL_PENDING: u64 = 0;
    pub const VCPU_PENDING_SEL: u64 = 8;
    pub const EVTCHN_PENDING: u64 = 48;
    pub const EVTCHN_MASK: u64 = 560;
    pub const WC_VERSION: u64 = 1072;
    pub const WC_SEC: u64 = 1076;
    pub const WC_NSEC: u64 = 1080;
    pub const WC_SEC_HI: u64 = 1084;
}

/// `xencons_interface` (`io/console.h`).
#[allow(missing_docs)] // constants carry Xen\'s own names; see the header cited above
pub mod cons {
    pub const IN: usize = 0;
    pub const IN_SIZE: u32 = 1024;
    pub const OUT: usize = 1024;
    pub const OUT_SIZE: u32 = 2048;
    pub const IN_CONS: usize = 3072;
    pub const IN_PROD: usize = 3076;
    pub const OUT_CONS: usize = 3080;
    pub const OUT_PROD: usize = 3084;
}

/// `xenstore_domain_interface` and the wire header (`io/xs_wire.h`).
#[allow(missing_docs)] // constants carry Xen\'s own names; see the header cited above
pub mod xs {
    pub const REQ: usize = 0;
    pub const RSP: usize = 1024;
    pub const RING_SIZE: u32 = 1024;
    pub const REQ_CONS: usize = 2048;
    pub const REQ_PROD: usize = 2052;
    pub const RSP_CONS: usize = 2056;
    pub const RSP_PROD: usize = 2060;
    pub const SERVER_FEATURES: usize = 2064;
    pub const CONNECTION: usize = 2068;
    pub const ERROR: usize = 2072;
    pub const HEADER_SIZE: usize = 16;
    /// Largest payload of one message.
    pub const PAYLOAD_MAX: usize = 4096;
    pub const CONTROL: u32 = 0;
    pub const DIRECTORY: u32 = 1;
    pub const READ: u32 = 2;
    pub const GET_PERMS: u32 = 3;
    pub const WATCH: u32 = 4;
    pub const UNWATCH: u32 = 5;
    pub const TRANSACTION_START: u32 = 6;
    pub const TRANSACTION_END: u32 = 7;
    pub const INTRODUCE: u32 = 8;
    pub const RELEASE: u32 = 9;
    pub const GET_DOMAIN_PATH: u32 = 10;
    pub const WRITE: u32 = 11;
    pub const MKDIR: u32 = 12;
    pub const RM: u32 = 13;
    pub const SET_PERMS: u32 = 14;
    pub const WATCH_EVENT: u32 = 15;
    pub const ERROR_MSG: u32 = 16;
    pub const IS_DOMAIN_INTRODUCED: u32 = 17;
    pub const RESUME: u32 = 18;
    pub const SET_TARGET: u32 = 19;
    pub const RESET_WATCHES: u32 = 21;
    pub const DIRECTORY_PART: u32 = 22;
}

/// Guest physical layout Xen gives a domU (`arch-arm.h`), used for the magic pages and the
/// grant window of domains that are not direct-mapped, and where free in direct-mapped ones.
#[allow(missing_docs)] // constants carry Xen\'s own names; see the header cited above
pub mod layout {
    pub const GNTTAB_BASE: u64 = 0x3800_0000;
    pub const GNTTAB_SIZE: u64 = 0x0100_0000;
    pub const MAGIC_BASE: u64 = 0x3900_0000;
    /// The extended region every Xen-aware domain gets (`/hypervisor` reg 1): unused IPA space
    /// where grants are mapped, 512 MiB at 256 GiB (128 MiB aligned, inside the 39-bit IPA
    /// space, far above any RAM the boards have).
    pub const EXT_BASE: u64 = 0x40_0000_0000;
    pub const EXT_SIZE: u64 = 0x2000_0000;
    /// Page offsets inside the magic area (xl: console 0, xenstore 1).
    pub const CONSOLE_PFN_OFFSET: u64 = 0;
    pub const STORE_PFN_OFFSET: u64 = 1;
    /// The event-channel PPI.
    pub const EVTCHN_PPI: u32 = 31;
}

/// Reads a little-endian `u16` at `off` (`None` when out of bounds).
pub fn rd16(b: &[u8], off: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(off..off.checked_add(2)?)?.try_into().ok()?))
}
/// Reads a little-endian `u32` at `off`.
pub fn rd32(b: &[u8], off: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(off..off.checked_add(4)?)?.try_into().ok()?))
}
/// Reads a little-endian `u64` at `off`.
pub fn rd64(b: &[u8], off: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(off..off.checked_add(8)?)?.try_into().ok()?))
}
/// Writes a little-endian `u16` at `off` (ignored when out of bounds).
pub fn wr16(b: &mut [u8], off: usize, v: u16) {
    if let Some(d) = off.checked_add(2).and_then(|end| b.get_mut(off..end)) {
        d.copy_from_slice(&v.to_le_bytes());
    }
}
/// Writes a little-endian `u32` at `off`.
pub fn wr32(b: &mut [u8], off: usize, v: u32) {
    if let Some(d) = off.checked_add(4).and_then(|end| b.get_mut(off..end)) {
        d.copy_from_slice(&v.to_le_bytes());
    }
}
/// Writes a little-endian `u64` at `off`.
pub fn wr64(b: &mut [u8], off: usize, v: u64) {
    if let Some(d) = off.checked_add(8).and_then(|end| b.get_mut(off..end)) {
        d.copy_from_slice(&v.to_le_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_match_xen_headers() {
        // shared_info: vcpu_info[1] (48) + pending[64] + mask[64] words, then wallclock.
        assert_eq!(shared::EVTCHN_PENDING, shared::VCPU_INFO_SIZE);
        assert_eq!(shared::EVTCHN_MASK, shared::EVTCHN_PENDING + 64 * 8);
        assert_eq!(shared::WC_VERSION, shared::EVTCHN_MASK + 64 * 8);
        assert_eq!(evtchn::NR_2L, 64 * 64);
        assert_eq!(cons::IN_CONS, cons::OUT + cons::OUT_SIZE as usize);
        assert_eq!(xs::REQ_CONS, 2 * xs::RING_SIZE as usize);
    }

    #[test]
    fn field_access_is_bounds_checked() {
        let mut b = [0u8; 8];
        wr32(&mut b, 4, 0xdead_beef);
        assert_eq!(rd32(&b, 4), Some(0xdead_beef));
        assert_eq!(rd32(&b, 5), None);
        wr64(&mut b, 4, 1); // out of bounds: ignored
        assert_eq!(rd64(&b, 0), Some(0xdead_beef_0000_0000));
        assert_eq!(rd16(&b, 6), Some(0xdead));
    }
}
