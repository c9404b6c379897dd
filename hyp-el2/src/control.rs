//! The control interface's handlers (`domctl`, `sysctl`: Xen's `public/domctl.h`, `sysctl.h`): what the control domain's `hypctl`
//! asks through Linux's `/dev/xen/privcmd`. Requests are decoded by `hyp_core::control`
//! (host-tested); this module checks the caller and the target and acts through `domain`.
//!
//! Invariants: every caller but the control domain gets `-EPERM` before anything of its
//! request is read; a target is a declared domain (`-ESRCH` otherwise) and never the control
//! domain itself for an operation that would stop it (`-EINVAL`); guest memory is only
//! touched through the checked copy functions.

use crate::domain;
use crate::xen::{control_domain, copy_from_guest, copy_to_guest};
use hyp_core::control::{self, DomOp};
use hyp_core::evtchn::domid_of;
use xen_abi::{domctl as dc, errno, sysctl as sc, wr16};

/// The domain index of Xen domain id `id` (`-ESRCH`: no such domain).
fn target(id: u16) -> Result<usize, i64> {
    usize::from(id).checked_sub(1).filter(|&t| t < domain::count()).ok_or(-errno::ESRCH)
}

/// Reads the control domain's `N`-byte request at `arg`; `-EPERM` for every other caller,
/// before anything of its request is read.
fn request<const N: usize>(d: usize, arg: u64) -> Result<[u8; N], i64> {
    if control_domain() != Some(d) {
        return Err(-errno::EPERM);
    }
    let mut b = [0u8; N];
    copy_from_guest(d, arg, &mut b)?;
    Ok(b)
}

/// `domctl(arg)` from domain `d` (out of line: the hypercall fast path stays small).
#[inline(never)]
pub fn domctl(d: usize, arg: u64) -> i64 {
    domctl_op(d, arg).map_or_else(|e| e, |()| 0)
}

fn domctl_op(d: usize, arg: u64) -> Result<(), i64> {
    let mut b = request::<{ dc::SIZE }>(d, arg)?;
    let req = control::decode_domctl(&b)?;
    if req.op == DomOp::GetInfo {
        // As Xen: the first domain whose id is at least the one asked.
        let first = usize::from(req.domid).saturating_sub(1);
        let t = (first..domain::count()).next().ok_or(-errno::ESRCH)?;
        wr16(&mut b, 8, domid_of(t));
        b[dc::UNION..dc::UNION + dc::INFO_SIZE].copy_from_slice(&domain::info(t).encode());
        return copy_to_guest(d, arg, &b);
    }
    let t = target(req.domid)?;
    // What an operation answers goes back in the request's own union.
    let answered = match req.op {
        DomOp::Status => {
            b[dc::UNION..dc::UNION + dc::STATUS_SIZE].copy_from_slice(&domain::status(t).encode());
            Ok(())
        }
        _ if t == d => return Err(-errno::EINVAL),
        DomOp::SaveRead => {
            let (off, len, buf) = control::xfer_args(&b);
            domain::save_read(d, t, off, len, buf).map(|total| control::set_stream_len(&mut b, total))
        }
        DomOp::LogDirty => {
            let (op, len, buf) = control::xfer_args(&b);
            domain::log_dirty(d, t, op, buf, len).map(|n| control::set_stream_len(&mut b, n))
        }
        DomOp::LoadImage => {
            let (va, size) = control::load_args(&b);
            let sig = control::load_sig_arg(&b);
            let ((slot, room, text), r) = domain::load_image(d, t, va, size, sig);
            control::set_load_limits(&mut b, slot, room, text); // on a refusal too
            r
        }
        DomOp::RestoreBegin => return domain::restore_begin(d, t, control::xfer_args(&b).0),
        DomOp::RestoreWrite => {
            let (off, len, buf) = control::xfer_args(&b);
            return domain::restore_write(d, t, off, len, buf);
        }
        DomOp::RestoreCommit => {
            let (head, age_ns, _) = control::xfer_args(&b);
            return domain::restore_commit(d, t, head, age_ns);
        }
        DomOp::Pause => return domain::pause(t),
        DomOp::Unpause => return domain::unpause(t),
        DomOp::Destroy => return domain::destroy(t),
        DomOp::Start => return domain::start(t),
        DomOp::Restart => return domain::restart(t),
        DomOp::GetInfo => return Ok(()),
    };
    copy_to_guest(d, arg, &b)?;
    answered
}

/// `sysctl(arg)` from domain `d`: `getdomaininfolist` and `physinfo` (out of line).
#[inline(never)]
pub fn sysctl(d: usize, arg: u64) -> i64 {
    sysctl_op(d, arg).map_or_else(|e| e, |()| 0)
}

fn sysctl_op(d: usize, arg: u64) -> Result<(), i64> {
    let mut b = request::<{ sc::SIZE }>(d, arg)?;
    match control::decode_sysctl(&b)? {
        control::SysRequest::PhysInfo => domain::physinfo().encode_into(&mut b),
        control::SysRequest::InfoList(req) => {
            let first = usize::from(req.first).saturating_sub(1);
            let mut n = 0u32;
            for t in (first..domain::count()).take(req.max.min(hyp_core::plan::MAX_DOMAINS as u32) as usize) {
                let at = req.buffer.wrapping_add(u64::from(n) * dc::INFO_SIZE as u64);
                copy_to_guest(d, at, &domain::info(t).encode())?;
                n += 1;
            }
            control::set_num_domains(&mut b, n);
        }
    }
    copy_to_guest(d, arg, &b)
}
