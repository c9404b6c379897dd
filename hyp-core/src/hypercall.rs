//! Hypercall dispatch (docs/xen-abi.md §2): which service a trapped `hvc #0xEA1` asks for,
//! decided from x16 and the argument registers before any guest memory is read. What the
//! registers alone settle (an unknown hypercall or sub-command, a batch count or vCPU index
//! out of range, `VM_ASSIST`) is answered here; the rest becomes a [`Call`] for the
//! hypervisor's handlers with those checks done.
//!
//! Invariants: [`decode`] never panics and touches no state; a [`Call`] other than
//! [`Call::Answer`] names a sub-command its handler implements, a grant batch count is at most
//! [`MAX_BATCH`] and a vCPU index is below the domain's vCPU count.

use xen_abi::{errno, hc};

/// Most operations one `GNTTABOP_map_grant_ref` / `unmap_grant_ref` / `copy` may carry.
pub const MAX_BATCH: u64 = 1024;

/// A decoded hypercall.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Call {
    /// `xen_version(cmd, arg)`.
    XenVersion {
        /// Sub-command.
        cmd: u64,
        /// Guest pointer for the answer.
        arg: u64,
    },
    /// `memory_op(cmd, arg)`; `cmd` keeps its extent-start bits above `MEMOP_CMD_MASK`.
    MemoryOp {
        /// Sub-command (with the continuation's start extent in its high bits).
        cmd: u64,
        /// Guest pointer to the argument structure.
        arg: u64,
    },
    /// `grant_table_op(cmd, arg, count)`.
    GrantTableOp {
        /// Sub-command.
        cmd: u64,
        /// Guest pointer to the first operation.
        arg: u64,
        /// Operations (at most [`MAX_BATCH`] for the batch operations).
        count: u64,
    },
    /// `vcpu_op(cmd, vcpu, arg)`.
    VcpuOp {
        /// Sub-command.
        cmd: u64,
        /// The vCPU it is about (below the domain's count).
        vcpu: usize,
        /// Guest pointer to the argument structure.
        arg: u64,
    },
    /// `hvm_op(cmd, arg)`.
    HvmOp {
        /// `HVMOP_set_param` or `HVMOP_get_param`.
        cmd: u64,
        /// Guest pointer to `xen_hvm_param`.
        arg: u64,
    },
    /// `event_channel_op(cmd, arg)`.
    EventChannelOp {
        /// Sub-command.
        cmd: u64,
        /// Guest pointer to the argument structure.
        arg: u64,
    },
    /// `sched_op(cmd, arg)` (its handler needs the whole frame: it may block or end the vCPU).
    SchedOp {
        /// Sub-command.
        cmd: u64,
    },
    /// `console_io(cmd, count, buf)`.
    ConsoleIo {
        /// `CONSOLEIO_write` or `CONSOLEIO_read`.
        cmd: u64,
        /// Bytes.
        count: u64,
        /// Guest pointer to the bytes.
        buf: u64,
    },
    /// `domctl(arg)`: the control interface (`crate::control`); privilege checked by the handler.
    Domctl {
        /// Guest pointer to `struct xen_domctl`.
        arg: u64,
    },
    /// `sysctl(arg)`: the control interface; privilege checked by the handler.
    Sysctl {
        /// Guest pointer to `struct xen_sysctl`.
        arg: u64,
    },
    /// Settled from the registers: what goes to x0.
    Answer(i64),
}

/// Decodes hypercall `nr` (x16) with arguments `x` (x0..x4) from a domain whose vCPU count
/// `nr_vcpus` gives (asked only for `VCPUOP_*`: the fast paths do not look the domain up).
#[inline(always)]
pub fn decode(nr: u64, x: [u64; 5], nr_vcpus: impl FnOnce() -> usize) -> Call {
    use xen_abi::{
        console_io as ci, evtchn as e, gnttab as g, hvm as h, memory as m, sched as s, vcpu as vc, version as v,
    };
    let no = |code: i64| Call::Answer(-code);
    let (cmd, arg) = (x[0], x[1]);
    match nr {
        hc::XEN_VERSION => match cmd {
            v::VERSION
            | v::EXTRAVERSION
            | v::COMPILE_INFO
            | v::CAPABILITIES
            | v::CHANGESET
            | v::PLATFORM_PARAMETERS
            | v::GET_FEATURES
            | v::PAGESIZE
            | v::GUEST_HANDLE => Call::XenVersion { cmd, arg },
            _ => no(errno::ENOSYS),
        },
        hc::MEMORY_OP => match cmd & m::MEMOP_CMD_MASK {
            m::DECREASE_RESERVATION
            | m::POPULATE_PHYSMAP
            | m::CURRENT_RESERVATION
            | m::MAXIMUM_RESERVATION
            | m::ADD_TO_PHYSMAP => Call::MemoryOp { cmd, arg },
            _ => no(errno::ENOSYS),
        },
        hc::GRANT_TABLE_OP => {
            let count = x[2];
            match cmd {
                g::MAP_GRANT_REF | g::UNMAP_GRANT_REF | g::COPY if count > MAX_BATCH => no(errno::EINVAL),
                g::MAP_GRANT_REF | g::UNMAP_GRANT_REF | g::COPY | g::QUERY_SIZE | g::SET_VERSION | g::GET_VERSION => {
                    Call::GrantTableOp { cmd, arg, count }
                }
                _ => no(errno::ENOSYS),
            }
        }
        hc::VCPU_OP => {
            let Some(vcpu) = usize::try_from(arg).ok().filter(|&i| i < nr_vcpus()) else { return no(errno::ENOENT) };
            match cmd {
                vc::REGISTER_VCPU_INFO | vc::REGISTER_RUNSTATE_MEMORY_AREA => Call::VcpuOp { cmd, vcpu, arg: x[2] },
                _ => no(errno::EINVAL),
            }
        }
        hc::HVM_OP => match cmd {
            h::SET_PARAM | h::GET_PARAM => Call::HvmOp { cmd, arg },
            _ => no(errno::ENOSYS),
        },
        hc::EVENT_CHANNEL_OP => match cmd {
            e::ALLOC_UNBOUND
            | e::BIND_INTERDOMAIN
            | e::CLOSE
            | e::SEND
            | e::STATUS
            | e::BIND_VCPU
            | e::UNMASK
            | e::BIND_VIRQ => Call::EventChannelOp { cmd, arg },
            _ => no(errno::ENOSYS),
        },
        hc::SCHED_OP => match cmd {
            s::YIELD | s::BLOCK | s::POLL | s::SHUTDOWN | s::WATCHDOG => Call::SchedOp { cmd },
            _ => no(errno::ENOSYS),
        },
        hc::CONSOLE_IO => match cmd {
            ci::WRITE | ci::READ => Call::ConsoleIo { cmd, count: x[1], buf: x[2] },
            _ => no(errno::EINVAL),
        },
        hc::DOMCTL => Call::Domctl { arg: cmd },
        hc::SYSCTL => Call::Sysctl { arg: cmd },
        // VMASST_CMD_enable / disable of VMASST_TYPE_runstate_update_flag: accepted.
        hc::VM_ASSIST => Call::Answer(if cmd <= 1 && arg == 5 { 0 } else { -errno::EINVAL }),
        _ => no(errno::ENOSYS),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_hypercalls_and_subcommands() {
        assert_eq!(decode(u64::MAX, [0; 5], || 1), Call::Answer(-errno::ENOSYS));
        assert_eq!(decode(hc::PHYSDEV_OP, [0; 5], || 1), Call::Answer(-errno::ENOSYS));
        assert_eq!(decode(hc::XEN_VERSION, [99, 0, 0, 0, 0], || 1), Call::Answer(-errno::ENOSYS));
        assert_eq!(decode(hc::CONSOLE_IO, [7, 0, 0, 0, 0], || 1), Call::Answer(-errno::EINVAL));
        assert_eq!(decode(hc::XEN_VERSION, [0, 0x1000, 0, 0, 0], || 1), Call::XenVersion { cmd: 0, arg: 0x1000 });
    }

    #[test]
    fn registers_alone_bound_counts_and_vcpus() {
        use xen_abi::gnttab as g;
        let map = |count| decode(hc::GRANT_TABLE_OP, [g::MAP_GRANT_REF, 0x1000, count, 0, 0], || 1);
        assert_eq!(map(MAX_BATCH), Call::GrantTableOp { cmd: g::MAP_GRANT_REF, arg: 0x1000, count: MAX_BATCH });
        assert_eq!(map(MAX_BATCH + 1), Call::Answer(-errno::EINVAL));
        assert_eq!(map(u64::MAX), Call::Answer(-errno::EINVAL));
        let vcpu = |v| decode(hc::VCPU_OP, [xen_abi::vcpu::REGISTER_VCPU_INFO, v, 0x2000, 0, 0], || 2);
        assert_eq!(vcpu(1), Call::VcpuOp { cmd: xen_abi::vcpu::REGISTER_VCPU_INFO, vcpu: 1, arg: 0x2000 });
        assert_eq!(vcpu(2), Call::Answer(-errno::ENOENT));
        assert_eq!(vcpu(u64::MAX), Call::Answer(-errno::ENOENT));
        assert_eq!(decode(hc::VM_ASSIST, [1, 5, 0, 0, 0], || 1), Call::Answer(0));
        assert_eq!(decode(hc::VM_ASSIST, [2, 5, 0, 0, 0], || 1), Call::Answer(-errno::EINVAL));
        assert_eq!(decode(hc::DOMCTL, [0x3000, 0, 0, 0, 0], || 1), Call::Domctl { arg: 0x3000 });
        assert_eq!(decode(hc::SYSCTL, [0x3000, 0, 0, 0, 0], || 1), Call::Sysctl { arg: 0x3000 });
    }
}
