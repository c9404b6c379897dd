//! The agent's system layer: every Linux call the safe standard library does not offer
//! (poll, module loading, bridge and interface ioctls, loop devices), each `unsafe` block with
//! its reason. Nothing here decides anything.

use std::ffi::CString;
use std::fs::{File, OpenOptions};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;

const SIOCGIFFLAGS: libc::c_ulong = 0x8913;
const SIOCSIFFLAGS: libc::c_ulong = 0x8914;
const SIOCGIFINDEX: libc::c_ulong = 0x8933;
const SIOCBRADDBR: libc::c_ulong = 0x89a0;
const SIOCBRADDIF: libc::c_ulong = 0x89a2;
const LOOP_SET_FD: libc::c_ulong = 0x4c00;
const LOOP_CTL_GET_FREE: libc::c_ulong = 0x4c82;
/// `IOCTL_PRIVCMD_HYPERCALL`: `_IOC(_IOC_NONE, 'P', 0, sizeof(struct privcmd_hypercall))`.
const IOCTL_PRIVCMD_HYPERCALL: libc::c_ulong = 0x0030_5000;

/// `struct privcmd_hypercall`: the hypercall number and five arguments.
#[repr(C)]
struct PrivcmdHypercall {
    op: u64,
    arg: [u64; 5],
}

/// Issues Xen hypercall `op` through Linux's `/dev/xen/privcmd` and returns what the
/// hypervisor put in x0 (a negative Xen error code on failure). Pointer arguments must point
/// at memory this process wrote (present, private pages).
pub fn privcmd_hypercall(op: u64, arg: [u64; 5]) -> Result<i64, String> {
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/xen/privcmd")
        .map_err(|e| format!("/dev/xen/privcmd: {e} (is xen-privcmd loaded, in the control domain?)"))?;
    let mut h = PrivcmdHypercall { op, arg };
    // SAFETY: a valid fd and a valid `struct privcmd_hypercall` alive for the call; the
    // hypervisor reads and writes only the buffers the arguments name, which the caller owns.
    let r = unsafe { libc::ioctl(f.as_raw_fd(), IOCTL_PRIVCMD_HYPERCALL as _, &mut h as *mut PrivcmdHypercall) };
    if r >= 0 {
        return Ok(i64::from(r));
    }
    // privcmd returns the hypervisor's negative code as the ioctl's result: errno carries it.
    let e = std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::EIO);
    Ok(-i64::from(e))
}

/// `struct ifreq`: a name and a union (index or flags) padded to 40 bytes.
#[repr(C)]
struct IfReq {
    name: [u8; 16],
    value: i32,
    _pad: [u8; 20],
}

impl IfReq {
    fn new(name: &str) -> Result<Self, String> {
        if name.is_empty() || name.len() > 15 {
            return Err(format!("bad interface name '{name}'"));
        }
        let mut r = Self { name: [0; 16], value: 0, _pad: [0; 20] };
        r.name[..name.len()].copy_from_slice(name.as_bytes());
        Ok(r)
    }
}

fn err(what: &str) -> String {
    format!("{what}: {}", std::io::Error::last_os_error())
}

/// Whether `fd` becomes readable within `ms` milliseconds.
pub fn readable(fd: RawFd, ms: i32) -> bool {
    let mut pfd = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
    // SAFETY: one valid pollfd, alive for the duration of the call.
    unsafe { libc::poll(&mut pfd, 1, ms) > 0 }
}

/// Loads a kernel module file with module parameters `params` (`"a=1 b=2"`; `EEXIST`:
/// already loaded, fine).
pub fn load_module(path: &str, params: &str) -> Result<(), String> {
    let f = File::open(path).map_err(|e| format!("{path}: {e}"))?;
    let params = CString::new(params).map_err(|_| format!("{path}: bad module parameters"))?;
    // SAFETY: a valid open fd and a NUL-terminated (empty) parameter string.
    let r = unsafe { libc::syscall(libc::SYS_finit_module, f.as_raw_fd(), params.as_ptr(), 0) };
    if r != 0 && std::io::Error::last_os_error().raw_os_error() != Some(libc::EEXIST) {
        return Err(err(path));
    }
    Ok(())
}

fn sock() -> Result<File, String> {
    // SAFETY: plain socket creation; the fd is owned by the returned File.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(err("socket"));
    }
    // SAFETY: `fd` is a fresh descriptor nobody else owns.
    Ok(unsafe { <File as std::os::fd::FromRawFd>::from_raw_fd(fd) })
}

fn ifreq_ioctl(s: &File, req: libc::c_ulong, r: &mut IfReq) -> bool {
    // SAFETY: `r` is a properly sized, initialised `struct ifreq` that outlives the call.
    unsafe { libc::ioctl(s.as_raw_fd(), req as _, r as *mut IfReq) == 0 }
}

/// Creates bridge `name` (fine if it exists).
pub fn bridge_create(name: &str) -> Result<(), String> {
    let s = sock()?;
    let c = CString::new(name).map_err(|_| format!("bad bridge name '{name}'"))?;
    // SAFETY: SIOCBRADDBR takes a NUL-terminated name that outlives the call.
    let r = unsafe { libc::ioctl(s.as_raw_fd(), SIOCBRADDBR as _, c.as_ptr()) };
    if r != 0 && std::io::Error::last_os_error().raw_os_error() != Some(libc::EEXIST) {
        return Err(err(&format!("create bridge {name}")));
    }
    Ok(())
}

/// Adds interface `port` to bridge `br` (fine if it is already a port).
pub fn bridge_add(br: &str, port: &str) -> Result<(), String> {
    let s = sock()?;
    let mut q = IfReq::new(port)?;
    if !ifreq_ioctl(&s, SIOCGIFINDEX, &mut q) {
        return Err(err(&format!("interface {port}")));
    }
    let mut b = IfReq::new(br)?;
    b.value = q.value;
    if !ifreq_ioctl(&s, SIOCBRADDIF, &mut b) && std::io::Error::last_os_error().raw_os_error() != Some(libc::EBUSY) {
        return Err(err(&format!("add {port} to bridge {br}")));
    }
    Ok(())
}

/// Brings interface `name` up.
pub fn link_up(name: &str) -> Result<(), String> {
    let s = sock()?;
    let mut q = IfReq::new(name)?;
    if !ifreq_ioctl(&s, SIOCGIFFLAGS, &mut q) {
        return Err(err(&format!("interface {name}")));
    }
    q.value |= libc::IFF_UP;
    if !ifreq_ioctl(&s, SIOCSIFFLAGS, &mut q) {
        return Err(err(&format!("bring {name} up")));
    }
    Ok(())
}

/// Attaches `file` to a free loop device; returns its path.
pub fn loop_attach(file: &str, writable: bool) -> Result<String, String> {
    let ctl = File::open("/dev/loop-control").map_err(|e| format!("/dev/loop-control: {e}"))?;
    // SAFETY: LOOP_CTL_GET_FREE takes no argument and returns a device number.
    let n = unsafe { libc::ioctl(ctl.as_raw_fd(), LOOP_CTL_GET_FREE as _) };
    if n < 0 {
        return Err(err("LOOP_CTL_GET_FREE"));
    }
    let dev = format!("/dev/loop{n}");
    let backing = OpenOptions::new().read(true).write(writable).open(file).map_err(|e| format!("{file}: {e}"))?;
    let mut lp = Err(String::new());
    for _ in 0..50 {
        lp = OpenOptions::new().read(true).write(writable).open(&dev).map_err(|e| format!("{dev}: {e}"));
        if lp.is_ok() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20)); // devtmpfs creates it
    }
    let lp = lp?;
    // SAFETY: LOOP_SET_FD takes the backing file's descriptor, valid for the call; the loop
    // device keeps its own reference afterwards.
    if unsafe { libc::ioctl(lp.as_raw_fd(), LOOP_SET_FD as _, backing.as_raw_fd()) } != 0 {
        return Err(err(&format!("attach {file} to {dev}")));
    }
    Ok(dev)
}

/// Remounts the filesystem at `target` read-write (`rw`) or read-only.
pub fn remount(target: &str, rw: bool) -> Result<(), String> {
    let t = CString::new(target).map_err(|_| format!("bad path '{target}'"))?;
    let flags = libc::MS_REMOUNT | if rw { 0 } else { libc::MS_RDONLY };
    // SAFETY: NUL-terminated strings alive for the call; a remount takes no source or data.
    let r = unsafe { libc::mount(c"".as_ptr(), t.as_ptr(), std::ptr::null(), flags, std::ptr::null()) };
    if r != 0 {
        return Err(err(&format!("remount {target} {}", if rw { "rw" } else { "ro" })));
    }
    Ok(())
}

/// `IOCTL_EVTCHN_BIND_VIRQ`: `_IOC(_IOC_NONE, 'E', 0, sizeof(struct ioctl_evtchn_bind_virq))`.
const IOCTL_EVTCHN_BIND_VIRQ: libc::c_ulong = 0x0004_4500;

/// A virtual interrupt bound through Linux's `/dev/xen/evtchn`.
pub struct Virq {
    f: File,
    port: u32,
}

impl Virq {
    /// Binds `virq` (e.g. `VIRQ_DOM_EXC`); reads do not block.
    pub fn bind(virq: u32) -> Result<Self, String> {
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open("/dev/xen/evtchn")
            .map_err(|e| format!("/dev/xen/evtchn: {e}"))?;
        let mut v = virq;
        // SAFETY: a valid fd and a valid `struct ioctl_evtchn_bind_virq` (one u32) for the call.
        let r = unsafe { libc::ioctl(f.as_raw_fd(), IOCTL_EVTCHN_BIND_VIRQ as _, &mut v as *mut u32) };
        if r < 0 {
            return Err(err(&format!("bind VIRQ {virq}")));
        }
        Ok(Self { f, port: r as u32 })
    }
    /// Whether it fired since the last call (it is unmasked again).
    pub fn fired(&mut self) -> bool {
        use std::io::{Read, Write};
        let mut b = [0u8; 64];
        let mut any = false;
        while let Ok(n) = self.f.read(&mut b) {
            if n == 0 {
                break;
            }
            any = true;
        }
        if any {
            let _ = self.f.write_all(&self.port.to_le_bytes());
        }
        any
    }
}
