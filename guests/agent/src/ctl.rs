//! `hypctl`'s control operations: Xen's `domctl`/`sysctl` (and ferrum's own `domctl` ops)
//! through Linux's `/dev/xen/privcmd`, with the request and answer layouts of
//! `hyp_core::control`, which the hypervisor decodes with the same code.
//!
//! Invariant: every buffer handed to the hypervisor is written by this process first, so its
//! pages are present and private when the hypervisor copies to or from them.

use hyp_core::control::{self, DomInfo, Status};
use xen_abi::{domctl as dc, errno, hc};

/// Linux's errno name of a negative Xen error code, for messages.
pub fn err_text(e: i64) -> String {
    let what = match -e {
        errno::EPERM => "not permitted (only the control domain may do this)",
        errno::ESRCH => "no such domain",
        errno::EBUSY => "busy (it is running, or being started)",
        errno::EINVAL => "invalid (not for this domain in its state)",
        errno::EACCES => "interface version mismatch",
        errno::ENOSYS => "not implemented by this hypervisor",
        errno::EFAULT => "bad address",
        _ => "error",
    };
    format!("{what} (Xen error {e})")
}

fn domctl(cmd: u32, domid: u16) -> Result<[u8; dc::SIZE], String> {
    let mut b = control::encode_domctl(cmd, domid);
    let r = crate::sys::privcmd_hypercall(hc::DOMCTL, [b.as_mut_ptr() as u64, 0, 0, 0, 0])?;
    if r < 0 {
        return Err(err_text(r));
    }
    Ok(b)
}

/// Every domain's Xen record (`XEN_SYSCTL_getdomaininfolist`).
pub fn list() -> Result<Vec<DomInfo>, String> {
    let mut buf = vec![0u8; 64 * dc::INFO_SIZE];
    let mut req = control::encode_sysctl_list(0, 64, buf.as_mut_ptr() as u64);
    let r = crate::sys::privcmd_hypercall(hc::SYSCTL, [req.as_mut_ptr() as u64, 0, 0, 0, 0])?;
    if r < 0 {
        return Err(err_text(r));
    }
    let n = (control::num_domains(&req) as usize).min(64);
    Ok(buf.chunks_exact(dc::INFO_SIZE).take(n).filter_map(DomInfo::decode).collect())
}

/// Ferrum's status of domain `domid`.
pub fn status(domid: u16) -> Result<Status, String> {
    let b = domctl(dc::FERRUM_STATUS, domid)?;
    Status::decode(&b[dc::UNION..]).ok_or_else(|| "short status record".into())
}

/// The domain id of the domain named `name`.
pub fn find(name: &str) -> Result<u16, String> {
    let mut names = Vec::new();
    for i in list()? {
        let s = status(i.domid)?;
        if s.name() == name {
            return Ok(i.domid);
        }
        names.push(s.name().to_string());
    }
    Err(format!("no domain named '{name}' (domains: {})", names.join(", ")))
}

/// A lifecycle operation on domain `domid`.
pub fn op(cmd: u32, domid: u16) -> Result<(), String> {
    domctl(cmd, domid).map(|_| ())
}

/// Nanoseconds as `1h02m`, `3m07s` or `12.3s`.
pub fn duration(ns: u64) -> String {
    let s = ns / 1_000_000_000;
    match s {
        0..=59 => format!("{}.{}s", s, (ns / 100_000_000) % 10),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, (s / 60) % 60),
    }
}

/// Loads `image` into the slot of domain `domid` (not running). Returns the hypervisor's
/// answer code and (slot, room, text offset).
pub fn load_image(
    domid: u16,
    image: &mut [u8],
    sig: Option<&mut [u8; hyp_core::verify::SIG_SIZE]>,
) -> Result<(i64, (u64, u64, u64)), String> {
    let sig = sig.map_or(0, |s| s.as_mut_ptr() as u64);
    let mut b = control::encode_load(domid, image.as_mut_ptr() as u64, image.len() as u64, sig);
    let r = crate::sys::privcmd_hypercall(hc::DOMCTL, [b.as_mut_ptr() as u64, 0, 0, 0, 0])?;
    Ok((r, control::load_limits(&b)))
}

/// Explains a refused load: what `check_update` says with the hypervisor's limits, or the code.
pub fn load_refusal(image: &[u8], limits: (u64, u64, u64), code: i64) -> String {
    let (slot, room, text) = limits;
    match control::check_update(image, image.len() as u64, text, slot, room) {
        Err(e) => e.to_string(),
        Ok(()) => err_text(code),
    }
}

/// The board (`XEN_SYSCTL_physinfo`).
pub fn physinfo() -> Result<control::PhysInfo, String> {
    let mut req = control::encode_sysctl_physinfo();
    let r = crate::sys::privcmd_hypercall(hc::SYSCTL, [req.as_mut_ptr() as u64, 0, 0, 0, 0])?;
    if r < 0 {
        return Err(err_text(r));
    }
    Ok(control::PhysInfo::decode(&req))
}

/// A ranged transfer (`FERRUM_SAVE_READ` into `buf`, `FERRUM_RESTORE_WRITE` from it); returns
/// the answer.
pub fn xfer(cmd: u32, domid: u16, off: u64, buf: &mut [u8]) -> Result<[u8; xen_abi::domctl::SIZE], String> {
    let mut b = control::encode_xfer(cmd, domid, off, buf.len() as u64, buf.as_mut_ptr() as u64);
    let r = crate::sys::privcmd_hypercall(hc::DOMCTL, [b.as_mut_ptr() as u64, 0, 0, 0, 0])?;
    if r < 0 {
        return Err(err_text(r));
    }
    Ok(b)
}

/// `FERRUM_RESTORE_COMMIT` with the final header and the nanoseconds since the suspend;
/// returns the hypervisor's code.
pub fn restore_commit(domid: u16, head: &mut [u8], age_ns: u64) -> Result<i64, String> {
    let mut b =
        control::encode_xfer(xen_abi::domctl::FERRUM_RESTORE_COMMIT, domid, head.as_mut_ptr() as u64, age_ns, 0);
    crate::sys::privcmd_hypercall(hc::DOMCTL, [b.as_mut_ptr() as u64, 0, 0, 0, 0])
}

/// `FERRUM_RESTORE_BEGIN` with the stream's header; returns the hypervisor's code.
pub fn restore_begin(domid: u16, head: &mut [u8]) -> Result<i64, String> {
    let mut b = control::encode_xfer(xen_abi::domctl::FERRUM_RESTORE_BEGIN, domid, head.as_mut_ptr() as u64, 0, 0);
    crate::sys::privcmd_hypercall(hc::DOMCTL, [b.as_mut_ptr() as u64, 0, 0, 0, 0])
}
