//! `kv`: a small durable key-value store on a Xen virtual disk (blkfront).
//!
//! The disk holds an append-only log from sector 1: one 512-byte record per `put` (magic
//! `FKV1`, sequence number, key, value, CRC-32). A `put` is acknowledged only after its record
//! was written **and** the backend completed a cache flush (`BLKIF_OP_FLUSH_DISKCACHE`), so an
//! acknowledged value survives a crash of the unikernel, of the control domain or of the whole
//! board. At start the log is replayed up to the first record that is not valid (a torn or
//! never-written sector ends the log).
//!
//! Commands on its console (Ctrl-A three times gives it the focus): `put <key> <value>`,
//! `get <key>`, `list`, `restart` (reboots the unikernel: it reconnects and replays),
//! `poweroff`. Boot arguments: `vbd=<devid>` (default 51712, xvda); `watchdog=<seconds>`
//! (default 15, 0: none): a hypervisor watchdog it kicks while it waits for commands, so a
//! hung kv is handled by its deployment's `on_crash` policy. It honours the control domain's
//! `control/shutdown` (`hypctl stop`).
#![no_std]
#![no_main]

extern crate alloc;

use alloc::collections::BTreeMap;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use ferrum_rt::blkfront::{Blkfront, Features, SECTOR};
use ferrum_rt::xen::{Watchdog, Xen};
use ferrum_rt::{println, shutdown, time, Reason, Runtime};

ferrum_rt::entry!(main);

const MAGIC: &[u8; 4] = b"FKV1";
const MAX_KEY: usize = 64;
const MAX_VALUE: usize = 400;
/// Sectors read per replay step.
const CHUNK: usize = 64;

fn fail(what: &str) -> ! {
    println!("kv: FAIL: {what}");
    shutdown(Reason::Crash);
}

fn crc32(data: &[u8]) -> u32 {
    let mut c = !0u32;
    for &b in data {
        c ^= u32::from(b);
        for _ in 0..8 {
            c = if c & 1 != 0 { 0xedb8_8320 ^ (c >> 1) } else { c >> 1 };
        }
    }
    !c
}

fn encode(seq: u64, key: &str, value: &str) -> [u8; SECTOR] {
    let mut r = [0u8; SECTOR];
    r[0..4].copy_from_slice(MAGIC);
    r[4..12].copy_from_slice(&seq.to_le_bytes());
    r[12] = key.len() as u8;
    r[13..15].copy_from_slice(&(value.len() as u16).to_le_bytes());
    r[16..16 + key.len()].copy_from_slice(key.as_bytes());
    r[16 + key.len()..16 + key.len() + value.len()].copy_from_slice(value.as_bytes());
    let c = crc32(&r[..508]);
    r[508..].copy_from_slice(&c.to_le_bytes());
    r
}

fn decode(r: &[u8], seq: u64) -> Option<(String, String)> {
    if &r[0..4] != MAGIC || u64::from_le_bytes(r[4..12].try_into().ok()?) != seq {
        return None;
    }
    if crc32(&r[..508]).to_le_bytes() != r[508..512] {
        return None;
    }
    let kl = usize::from(r[12]);
    let vl = usize::from(u16::from_le_bytes([r[13], r[14]]));
    if kl == 0 || kl > MAX_KEY || vl > MAX_VALUE {
        return None;
    }
    let k = core::str::from_utf8(&r[16..16 + kl]).ok()?;
    let v = core::str::from_utf8(&r[16 + kl..16 + kl + vl]).ok()?;
    Some((k.to_string(), v.to_string()))
}

struct Store {
    disk: Blkfront,
    map: BTreeMap<String, String>,
    /// Records in the log (the next record goes to sector `1 + records`).
    records: u64,
}

impl Store {
    fn replay(disk: Blkfront) -> Self {
        let mut s = Self { disk, map: BTreeMap::new(), records: 0 };
        let mut buf = alloc::vec![0u8; CHUNK * SECTOR];
        'log: loop {
            let first = 1 + s.records;
            let n = (s.disk.sectors.saturating_sub(first) as usize).min(CHUNK);
            if n == 0 {
                break;
            }
            s.disk.read(first, &mut buf[..n * SECTOR]).unwrap_or_else(|e| fail(&alloc::format!("replay read: {e:?}")));
            for r in buf[..n * SECTOR].chunks(SECTOR) {
                match decode(r, s.records + 1) {
                    Some((k, v)) => {
                        s.map.insert(k, v);
                        s.records += 1;
                    }
                    None => break 'log,
                }
            }
        }
        s
    }

    fn put(&mut self, key: &str, value: &str) -> Result<u64, String> {
        if key.is_empty() || key.len() > MAX_KEY || value.len() > MAX_VALUE {
            return Err(alloc::format!("keys are 1..={MAX_KEY} bytes, values up to {MAX_VALUE}"));
        }
        let seq = self.records + 1;
        if 1 + seq > self.disk.sectors {
            return Err("the log is full".into());
        }
        let rec = encode(seq, key, value);
        self.disk.write(seq, &rec).map_err(|e| alloc::format!("write: {e:?}"))?;
        self.disk.flush().map_err(|e| alloc::format!("flush: {e:?}"))?;
        self.records = seq;
        self.map.insert(key.to_string(), value.to_string());
        Ok(seq)
    }
}

/// Reads a console line; while it waits, it kicks the watchdog and honours a shutdown the
/// control domain asks for. `None`: the control domain asks for a suspend.
fn read_line(x: &mut Xen, wd: &mut Option<Watchdog>) -> Option<String> {
    let mut line = Vec::new();
    let mut b = [0u8; 1];
    loop {
        if let Some(w) = wd.as_mut() {
            w.kick();
        }
        if ferrum_rt::honour_control(x) {
            return None;
        }
        let deadline = time::now().after(core::time::Duration::from_millis(500)).ticks();
        if ferrum_rt::console::read_until(&mut b, deadline) == 0 {
            continue;
        }
        match b[0] {
            b'\r' | b'\n' if !line.is_empty() => break,
            b'\r' | b'\n' => {}
            c if line.len() < 512 => line.push(c),
            _ => {}
        }
    }
    Some(String::from_utf8_lossy(&line).into_owned())
}

fn main(rt: &mut Runtime) {
    let devid: u32 = rt.arg("vbd").and_then(|v| v.parse().ok()).unwrap_or(51712);
    let rt_watchdog_secs: u32 = rt.arg("watchdog").and_then(|v| v.parse().ok()).unwrap_or(15);
    // `blk=nopersistent,noindirect`: run the block protocol without those features.
    let features = Features::parse(rt.arg("blk").unwrap_or(""))
        .unwrap_or_else(|w| fail(&alloc::format!("blk=: unknown feature '{w}' (nopersistent, noindirect)")));
    let Some(x) = rt.xen() else { fail("needs a Xen-compatible hypervisor (blkfront)") };
    let disk = Blkfront::connect_with(x, devid, features).unwrap_or_else(|e| fail(&alloc::format!("vbd {devid}: {e}")));
    println!(
        "kv: disk {devid}: {} sectors ({} KiB){}{}",
        disk.sectors,
        disk.sectors / 2,
        if disk.flush_supported { ", cache flush supported" } else { ", no write cache" },
        if disk.readonly { ", read-only" } else { "" }
    );
    println!("kv: disk {devid}: {}", disk.describe());
    let mut s = Store::replay(disk);
    println!("kv: replayed {} record(s), {} key(s)", s.records, s.map.len());
    for (k, v) in s.map.iter().take(16) {
        println!("kv:   {k} = {v}");
    }
    // A hung kv is restarted by its deployment's on_crash policy (`watchdog=SECONDS`, 0: off).
    let secs: u32 = rt_watchdog_secs;
    let mut wd = (secs > 0).then(|| Watchdog::new(secs)).transpose().unwrap_or_else(|e| {
        println!("kv: no watchdog: {e}");
        None
    });
    if let Some(w) = &wd {
        println!("kv: watchdog {} armed ({secs} s)", w.id());
    }
    println!("kv: ready: put <key> <value> | get <key> | list | restart | poweroff");
    loop {
        let Some(line) = read_line(x, &mut wd) else {
            // `hypctl save`: the disk goes quiet (every put was flushed), the hypervisor keeps
            // our state; after a restore the disk reconnects to its new backend.
            let before = time::now().ticks();
            println!("kv: suspending ({} key(s) in memory)", s.map.len());
            match x.suspend() {
                Ok(true) => {
                    let now = time::now().ticks();
                    let ms = |t: u64| t / (time::frequency() / 1000).max(1);
                    let gap = x.suspended_us();
                    println!(
                        "kv: resumed {}.{} ms after its suspend (its own counter); reconnecting vbd {devid}",
                        gap / 1000,
                        (gap / 100) % 10
                    );
                    let disk = Blkfront::connect_with(x, devid, features)
                        .unwrap_or_else(|e| fail(&alloc::format!("vbd {devid}: {e}")));
                    core::mem::forget(core::mem::replace(&mut s.disk, disk));
                    if now >= before {
                        println!("kv: uptime continues: {} ms at suspend, {} ms now", ms(before), ms(now));
                    } else {
                        println!("kv: FAIL uptime went back: {} ms at suspend, {} ms now", ms(before), ms(now));
                    }
                    println!("kv: resumed with {} key(s), {} record(s)", s.map.len(), s.records);
                    wd = wd.take().and_then(|_| Watchdog::new(secs).ok());
                }
                Ok(false) => println!("kv: suspend cancelled"),
                Err(e) => println!("kv: suspend refused: {e}"),
            }
            continue;
        };
        let mut w = line.splitn(3, ' ');
        match (w.next(), w.next(), w.next()) {
            (Some("put"), Some(k), Some(v)) => match s.put(k, v.trim()) {
                Ok(n) => println!("kv: put {k}: acknowledged (record {n}, written and flushed)"),
                Err(e) => println!("kv: put {k}: refused: {e}"),
            },
            (Some("get"), Some(k), None) => match s.map.get(k) {
                Some(v) => println!("kv: {k} = {v}"),
                None => println!("kv: {k}: not found"),
            },
            (Some("list"), None, None) => {
                for (k, v) in &s.map {
                    println!("kv:   {k} = {v}");
                }
                println!("kv: {} key(s), {} record(s)", s.map.len(), s.records);
            }
            (Some("restart"), None, None) => {
                println!("kv: restarting");
                shutdown(Reason::Reboot);
            }
            (Some("poweroff"), None, None) => shutdown(Reason::Poweroff),
            _ => println!("kv: commands: put <key> <value> | get <key> | list | restart | poweroff"),
        }
    }
}
