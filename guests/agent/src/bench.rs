//! `ferrum-agent bench …`: the measuring ends of `cargo xtask bench pv`, run in the control
//! domain (direct access to the board's disk and NIC) and in a Linux guest domain (through
//! xen-blkfront and xen-netfront). Each prints `bench-result <label> <bytes> <microseconds>`,
//! the line xtask collects.
//!
//! - `bench disk <label> <device> <MiB>`: sequential write of `MiB` (1 MiB `O_DIRECT` writes,
//!   then `fsync`), then sequential read of the same range (`O_DIRECT`, no page cache);
//! - `bench tcp-send <label> <ip:port> <MiB>`: connects, sends `MiB`, shuts its side down and
//!   waits for the receiver to close: the time covers every byte received;
//! - `bench sink <port>`: accepts connections one after another, reads each to its end, then
//!   closes it.

use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::time::Instant;

const CHUNK: usize = 1 << 20;

fn result(label: &str, bytes: u64, t: Instant) {
    println!("bench-result {label} {bytes} {}", t.elapsed().as_micros());
}

fn mib(s: &str) -> Result<u64, String> {
    s.parse::<u64>().ok().filter(|&m| (1..=4096).contains(&m)).ok_or_else(|| format!("'{s}': MiB from 1 to 4096"))
}

/// A 1 MiB buffer aligned to 4 KiB (what `O_DIRECT` asks of user memory), filled with `fill`.
fn aligned(v: &mut Vec<u8>, fill: u8) -> &mut [u8] {
    v.resize(CHUNK + 4096, fill);
    let off = v.as_ptr().align_offset(4096);
    &mut v[off..off + CHUNK]
}

fn disk(label: &str, dev: &str, mib: u64) -> Result<(), String> {
    let err = |what: &str, e: std::io::Error| format!("{dev}: {what}: {e}");
    let mut buf = Vec::new();
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_DIRECT)
        .open(dev)
        .map_err(|e| err("open", e))?;
    let t = Instant::now();
    for _ in 0..mib {
        f.write_all(aligned(&mut buf, 0xa5)).map_err(|e| err("write", e))?;
    }
    f.sync_all().map_err(|e| err("fsync", e))?;
    result(&format!("{label}-disk-write"), mib * CHUNK as u64, t);
    let mut f =
        std::fs::OpenOptions::new().read(true).custom_flags(libc::O_DIRECT).open(dev).map_err(|e| err("open", e))?;
    let t = Instant::now();
    for _ in 0..mib {
        let b = aligned(&mut buf, 0);
        f.read_exact(b).map_err(|e| err("read", e))?;
        if b[0] != 0xa5 || b[CHUNK - 1] != 0xa5 {
            return Err(format!("{dev}: read back something else than was written"));
        }
    }
    result(&format!("{label}-disk-read"), mib * CHUNK as u64, t);
    Ok(())
}

fn tcp_send(label: &str, to: &str, mib: u64) -> Result<(), String> {
    let err = |what: &str, e: std::io::Error| format!("{to}: {what}: {e}");
    let buf = vec![0x5au8; 64 * 1024];
    let t = Instant::now();
    let mut s = std::net::TcpStream::connect(to).map_err(|e| err("connect", e))?;
    for _ in 0..mib * 16 {
        s.write_all(&buf).map_err(|e| err("send", e))?;
    }
    s.shutdown(std::net::Shutdown::Write).map_err(|e| err("shutdown", e))?;
    let mut rest = [0u8; 64];
    while s.read(&mut rest).map_err(|e| err("waiting for the close", e))? > 0 {}
    result(&format!("{label}-tcp"), mib * CHUNK as u64, t);
    Ok(())
}

fn sink(port: &str) -> Result<(), String> {
    let port: u16 = port.parse().map_err(|_| format!("'{port}': a TCP port"))?;
    let l = std::net::TcpListener::bind(("0.0.0.0", port)).map_err(|e| format!("port {port}: {e}"))?;
    let mut buf = vec![0u8; 64 * 1024];
    for mut c in l.incoming().flatten() {
        while matches!(c.read(&mut buf), Ok(n) if n > 0) {}
    }
    Ok(())
}

/// `ferrum-agent bench …`.
pub fn run(args: &[&str]) -> Result<(), String> {
    match args {
        ["disk", label, dev, m] => disk(label, dev, mib(m)?),
        ["tcp-send", label, to, m] => tcp_send(label, to, mib(m)?),
        ["sink", port] => sink(port),
        _ => Err("usage: ferrum-agent bench disk LABEL DEVICE MIB | tcp-send LABEL IP:PORT MIB | sink PORT".into()),
    }
}
