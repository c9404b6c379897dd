//! The control interface's handlers (`domctl`, `sysctl`: Xen's `public/domctl.h`, `sysctl.h`): what the control domain's `hypctl`
//! asks through Linux's `/dev/xen/privcmd`. Requests are decoded by `hyp_core::control`
//! (host-tested); this module checks the caller and the target and acts through `domain`.
//!
//! Invariants: every caller but the control domain gets `-EPERM` before anything of its
//! request is read; a target is a declared domain (`-ESRCH` otherwise) and never the control
//! domain itself for an operation that would stop it (`-EINVAL`); guest memory is only
//! touched through the checked copy functions.

use crate::domain::{self, config};
use crate::xen::{control_domain, copy_from_guest, copy_to_guest};
use hyp_core::control::{self, DomOp};
use hyp_core::evtchn::domid_of;
use xen_abi::{domctl as dc, errno, sysctl as sc, wr16};

/// The domain index of Xen domain id `id` (`-ESRCH`: no such domain).
fn target(id: u16) -> Result<usize, i64> {
    usize::from(id).checked_sub(1).filter(|&t| t < domain::count()).ok_or(-errno::ESRCH)
}

/// `domctl(arg)` from domain `d`.
pub fn domctl(d: usize, arg: u64) -> i64 {
    if control_domain() != Some(d) {
        return -errno::EPERM;
    }
    let mut b = [0u8; dc::SIZE];
    if let Err(e) = copy_from_guest(d, arg, &mut b) {
        return e;
    }
    let req = match control::decode_domctl(&b) {
        Ok(r) => r,
        Err(e) => return e,
    };
    let r = (|| -> Result<i64, i64> {
        if req.op == DomOp::GetInfo {
            // As Xen: the first domain whose id is at least the one asked.
            let first = usize::from(req.domid).saturating_sub(1);
            let t = (first..domain::count()).next().ok_or(-errno::ESRCH)?;
            wr16(&mut b, 8, domid_of(t));
            b[dc::UNION..dc::UNION + dc::INFO_SIZE].copy_from_slice(&domain::info(t).encode());
            copy_to_guest(d, arg, &b)?;
            return Ok(0);
        }
        let t = target(req.domid)?;
        match req.op {
            DomOp::Status => {
                b[dc::UNION..dc::UNION + dc::STATUS_SIZE].copy_from_slice(&domain::status(t).encode());
                copy_to_guest(d, arg, &b)?;
                return Ok(0);
            }
            _ if t == d => return Err(-errno::EINVAL),
            DomOp::SaveRead => {
                let (off, len, buf) = control::xfer_args(&b);
                let total = domain::save_read(d, t, off, len, buf)?;
                control::set_stream_len(&mut b, total);
                copy_to_guest(d, arg, &b)?;
                Ok(())
            }
            DomOp::RestoreBegin => domain::restore_begin(d, t, control::xfer_args(&b).0),
            DomOp::RestoreWrite => {
                let (off, len, buf) = control::xfer_args(&b);
                domain::restore_write(d, t, off, len, buf)
            }
            DomOp::RestoreCommit => domain::restore_commit(t),
            DomOp::LogDirty => {
                let (op, len, buf) = control::xfer_args(&b);
                let n = domain::log_dirty(d, t, op, buf, len)?;
                control::set_stream_len(&mut b, n);
                copy_to_guest(d, arg, &b)?;
                Ok(())
            }
            DomOp::LoadImage => {
                let (va, size) = control::load_args(&b);
                let ((slot, room, text), r) = domain::load_image(d, t, va, size);
                control::set_load_limits(&mut b, slot, room, text);
                copy_to_guest(d, arg, &b)?;
                r
            }
            DomOp::Pause => domain::pause(t),
            DomOp::Unpause => domain::unpause(t),
            DomOp::Destroy => domain::destroy(t),
            DomOp::Start => domain::start(t),
            DomOp::Restart => domain::restart(t),
            DomOp::GetInfo => Ok(()),
        }?;
        Ok(0)
    })();
    r.unwrap_or_else(|e| e)
}

/// `sysctl(arg)` from domain `d`: `getdomaininfolist` only.
pub fn sysctl(d: usize, arg: u64) -> i64 {
    if control_domain() != Some(d) {
        return -errno::EPERM;
    }
    let mut b = [0u8; sc::SIZE];
    if let Err(e) = copy_from_guest(d, arg, &mut b) {
        return e;
    }
    let req = match control::decode_sysctl(&b) {
        Ok(control::SysRequest::InfoList(r)) => r,
        Ok(control::SysRequest::PhysInfo) => {
            domain::physinfo().encode_into(&mut b);
            return match copy_to_guest(d, arg, &b) {
                Ok(()) => 0,
                Err(e) => e,
            };
        }
        Err(e) => return e,
    };
    let first = usize::from(req.first).saturating_sub(1);
    let mut n = 0u32;
    for t in (first..domain::count()).take(req.max.min(hyp_core::plan::MAX_DOMAINS as u32) as usize) {
        let at = req.buffer.wrapping_add(u64::from(n) * dc::INFO_SIZE as u64);
        if let Err(e) = copy_to_guest(d, at, &domain::info(t).encode()) {
            return e;
        }
        n += 1;
    }
    control::set_num_domains(&mut b, n);
    match copy_to_guest(d, arg, &b) {
        Ok(()) => 0,
        Err(e) => e,
    }
}

/// Whether `d` is the control domain (for the other modules' checks).
#[allow(dead_code)]
pub fn is_control(d: usize) -> bool {
    control_domain() == Some(d) && d < config().domains.len()
}
