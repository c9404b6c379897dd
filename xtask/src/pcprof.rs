//! Where each emulated CPU's time goes, by function, for `cargo xtask bench pv --pc-profile`:
//! QEMU is asked over its QMP socket, every few milliseconds, to stop the board, print every
//! CPU's registers (`info registers -a`) and go on; each sample is one (CPU, PC, exception
//! level) per emulated CPU. A PC is then named from the symbols of what runs there: the
//! hypervisor's ELF at EL2, the unikernel's ELF at EL1 of its CPU, and for a Linux domain the
//! kernel's function symbols the domains printed from `/proc/kallsyms` (`ksym` lines with
//! `ferrum.ksyms` on their command line; Debian's packages ship no real `System.map`).
//!
//! Stopping the board is the one way to read an exact PC under TCG (a running CPU's PC in
//! QEMU's state is only brought up to date at some block exits). While stopped, the guests'
//! virtual counters stop too, so a phase's length as a guest measured it is found back in host
//! time by skipping the pauses ([`Pauses::start_of`]).
//!
//! Invariants: samples and pauses are in time order and pauses do not overlap; a symbol table
//! is sorted by address and names a PC only from the nearest symbol at or below it, within
//! [`MAX_FN`] bytes.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A PC further than this above its nearest symbol is not named by it.
pub const MAX_FN: u64 = 256 << 10;

/// One CPU in one sample.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cpu {
    /// QEMU's CPU index.
    pub index: u8,
    /// Program counter.
    pub pc: u64,
    /// Exception level (0-3).
    pub el: u8,
}

/// Every CPU at one moment.
#[derive(Clone, Debug)]
pub struct Sample {
    /// When the board was stopped for it.
    pub at: Instant,
    /// Each CPU's PC and exception level.
    pub cpus: Vec<Cpu>,
}

/// The CPUs of an `info registers -a` print: each `CPU#n` block's `PC=` and the `ELnh`/`ELnt`
/// of its `PSTATE=` line.
pub fn parse_registers(text: &str) -> Vec<Cpu> {
    let mut out = Vec::new();
    let mut cur: Option<(u8, Option<u64>)> = None;
    for line in text.lines() {
        let line = line.trim();
        if let Some(n) = line.strip_prefix("CPU#") {
            cur = n.trim().parse().ok().map(|i| (i, None));
            continue;
        }
        let Some((index, pc)) = cur.as_mut() else { continue };
        if let Some(rest) = line.strip_prefix("PC=") {
            *pc = rest.split_whitespace().next().and_then(|h| u64::from_str_radix(h, 16).ok());
        } else if line.starts_with("PSTATE=") {
            let el = line.split_whitespace().find_map(|w| {
                let d = w.strip_prefix("EL")?.as_bytes();
                (d.len() == 2 && d[0].is_ascii_digit() && (d[1] == b'h' || d[1] == b't')).then(|| d[0] - b'0')
            });
            if let (Some(pc), Some(el)) = (*pc, el) {
                out.push(Cpu { index: *index, pc, el });
            }
            cur = None;
        }
    }
    out
}

/// The string a QMP reply line returns (`{"return": "..."}`), unescaped; `None` for any other
/// line (events, errors, non-string returns).
pub fn qmp_return_string(line: &str) -> Option<String> {
    let rest = line.trim_start().strip_prefix('{')?.trim_start().strip_prefix("\"return\"")?;
    let rest = rest.trim_start().strip_prefix(':')?.trim_start().strip_prefix('"')?;
    let mut out = String::new();
    let mut chars = rest.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => return Some(out),
            '\\' => match chars.next()? {
                'n' => out.push('\n'),
                'r' => out.push('\r'),
                't' => out.push('\t'),
                'b' => out.push('\u{8}'),
                'f' => out.push('\u{c}'),
                'u' => {
                    let h: String = chars.by_ref().take(4).collect();
                    out.push(char::from_u32(u32::from_str_radix(&h, 16).ok()?).unwrap_or('?'));
                }
                other => out.push(other),
            },
            c => out.push(c),
        }
    }
    None
}

/// The host-time spans the board was stopped for sampling.
#[derive(Clone, Debug, Default)]
pub struct Pauses(pub Vec<(Instant, Instant)>);

impl Pauses {
    /// When a phase that ended at `end` began, given its length `running` as the guests'
    /// counters measured it (which stand still while the board is stopped).
    pub fn start_of(&self, end: Instant, running: Duration) -> Instant {
        let mut left = running;
        let mut t = end;
        for &(a, b) in self.0.iter().rev() {
            if a >= t {
                continue;
            }
            let b = b.min(t);
            let gap = t.duration_since(b);
            if gap >= left {
                return t - left;
            }
            left -= gap;
            t = a;
        }
        t.checked_sub(left).unwrap_or(t)
    }
}

/// Samples a QEMU through its QMP socket until [`Sampler::finish`].
pub struct Sampler {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<(Vec<Sample>, Pauses, Option<String>)>,
}

struct Qmp {
    w: UnixStream,
    r: BufReader<UnixStream>,
}

impl Qmp {
    fn connect(path: &Path, stop: &AtomicBool) -> Result<Self, String> {
        let t0 = Instant::now();
        let s = loop {
            match UnixStream::connect(path) {
                Ok(s) => break s,
                Err(e) if t0.elapsed() > Duration::from_secs(60) || stop.load(Ordering::Relaxed) => {
                    return Err(format!("{}: {e}", path.display()))
                }
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        };
        let r = BufReader::new(s.try_clone().map_err(|e| e.to_string())?);
        let mut q = Self { w: s, r };
        q.read_reply()?; // the greeting
        q.call(r#"{"execute":"qmp_capabilities"}"#)?;
        Ok(q)
    }

    /// The next line that is not an event.
    fn read_reply(&mut self) -> Result<String, String> {
        loop {
            let mut line = String::new();
            if self.r.read_line(&mut line).map_err(|e| e.to_string())? == 0 {
                return Err("QMP closed".into());
            }
            if !line.contains("\"event\"") {
                return Ok(line);
            }
        }
    }

    fn call(&mut self, json: &str) -> Result<String, String> {
        self.w.write_all(json.as_bytes()).and_then(|_| self.w.write_all(b"\n")).map_err(|e| e.to_string())?;
        let reply = self.read_reply()?;
        if reply.contains("\"error\"") {
            return Err(format!("QMP {json}: {}", reply.trim()));
        }
        Ok(reply)
    }
}

impl Sampler {
    /// Connects to the QMP socket `path` (waiting for QEMU to make it) and samples every
    /// `every`.
    pub fn start(path: PathBuf, every: Duration) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let s2 = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let (mut out, mut pauses) = (Vec::new(), Pauses::default());
            let mut q = match Qmp::connect(&path, &s2) {
                Ok(q) => q,
                Err(e) => return (out, pauses, Some(e)),
            };
            let regs = r#"{"execute":"human-monitor-command","arguments":{"command-line":"info registers -a"}}"#;
            let mut err = None;
            while !s2.load(Ordering::Relaxed) {
                let a = Instant::now();
                let got = q
                    .call(r#"{"execute":"stop"}"#)
                    .and_then(|_| q.call(regs))
                    .and_then(|r| q.call(r#"{"execute":"cont"}"#).map(|_| r));
                let b = Instant::now();
                match got {
                    Ok(r) => {
                        pauses.0.push((a, b));
                        let cpus = parse_registers(&qmp_return_string(&r).unwrap_or_default());
                        if !cpus.is_empty() {
                            out.push(Sample { at: a, cpus });
                        }
                    }
                    // The board has ended (QMP closed) or QEMU refuses: stop sampling.
                    Err(e) => {
                        if !["closed", "Broken pipe", "reset"].iter().any(|w| e.contains(w)) {
                            err = Some(e);
                        }
                        break;
                    }
                }
                std::thread::sleep(every);
            }
            (out, pauses, err)
        });
        Self { stop, thread }
    }

    /// Stops sampling; returns the samples, the pauses and why sampling failed, if it did.
    pub fn finish(self) -> (Vec<Sample>, Pauses, Option<String>) {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap_or_default()
    }
}

/// Function symbols, sorted by address.
#[derive(Clone, Debug, Default)]
pub struct Symbols(Vec<(u64, String)>);

impl Symbols {
    /// From `(address, name)` pairs in any order.
    pub fn new(mut v: Vec<(u64, String)>) -> Self {
        v.sort_by_key(|x| x.0);
        Self(v)
    }

    /// The text symbols (`t`/`T`/`w`/`W`) of a `System.map` or `/proc/kallsyms` print, each
    /// moved by `offset`; a module symbol keeps its module as `name [module]`.
    pub fn from_map(text: &str, offset: i64) -> Vec<(u64, String)> {
        text.lines()
            .filter_map(|l| {
                let mut w = l.split_whitespace();
                let addr = u64::from_str_radix(w.next()?, 16).ok()?;
                let kind = w.next()?;
                if !matches!(kind, "t" | "T" | "w" | "W") {
                    return None;
                }
                let name = w.next()?;
                let name = match w.next() {
                    Some(m) if m.starts_with('[') => format!("{name} {m}"),
                    _ => name.to_string(),
                };
                Some((addr.wrapping_add_signed(offset), name))
            })
            .collect()
    }

    /// The symbols of an ELF file that lie in its code: functions, and the labels of assembly
    /// (vectors, entry points) that have no type.
    pub fn from_elf(bytes: &[u8]) -> Result<Vec<(u64, String)>, String> {
        use object::{Object, ObjectSection, ObjectSymbol, SectionKind, SymbolKind, SymbolSection};
        let f = object::File::parse(bytes).map_err(|e| e.to_string())?;
        let in_code = |s: &object::Symbol| match s.section() {
            SymbolSection::Section(i) => f.section_by_index(i).is_ok_and(|x| x.kind() == SectionKind::Text),
            _ => false,
        };
        Ok(f.symbols()
            .filter(|s| matches!(s.kind(), SymbolKind::Text | SymbolKind::Unknown) && in_code(s))
            .filter_map(|s| {
                Some((s.address(), s.name().ok().filter(|n| !n.is_empty() && !n.starts_with('$'))?.to_string()))
            })
            .collect())
    }

    /// The symbol `pc` falls in.
    pub fn name(&self, pc: u64) -> Option<&str> {
        let i = self.0.partition_point(|x| x.0 <= pc).checked_sub(1)?;
        let (a, n) = &self.0[i];
        (pc - a < MAX_FN).then_some(n.as_str())
    }
}

/// What runs on one emulated CPU, for naming its PCs.
pub struct CpuView<'a> {
    /// Column heading (`CPU0 control`).
    pub title: String,
    /// Symbols for its EL1 (the domain's kernel).
    pub el1: &'a Symbols,
    /// Symbols for EL2 (the hypervisor).
    pub el2: &'a Symbols,
}

/// A Rust symbol demangled (either mangling) without its hash and cut to its last two path
/// segments; any other name as it is.
pub fn short(name: &str) -> String {
    let d = format!("{:#}", rustc_demangle::demangle(name));
    let parts: Vec<&str> = d.split("::").collect();
    let n = parts.len();
    if n > 2 {
        parts[n - 2..].join("::")
    } else {
        d
    }
}

/// The category of one CPU's sample: `EL2 name`, `EL1 name` or `EL0 (user)`.
pub fn classify(c: &Cpu, v: &CpuView) -> String {
    match c.el {
        0 => "EL0 (user space)".into(),
        2 => format!("EL2 {}", v.el2.name(c.pc).map_or_else(|| format!("{:#x}", c.pc), short)),
        _ => format!("EL1 {}", v.el1.name(c.pc).map_or_else(|| format!("{:#x}", c.pc), short)),
    }
}

/// Each CPU's `top` most frequent categories over `windows`, with their share of that CPU's
/// samples there, and its share at EL2; (CPU, samples, EL2 share, [(category, share)]).
pub type CpuReport = (u8, usize, f64, Vec<(String, f64)>);

/// [`CpuReport`]s from the samples inside `windows`.
pub fn report(samples: &[Sample], windows: &[(Instant, Instant)], views: &[CpuView], top: usize) -> Vec<CpuReport> {
    let mut out = Vec::new();
    for (i, v) in views.iter().enumerate() {
        let mut counts: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
        let (mut n, mut el2) = (0usize, 0usize);
        for s in samples.iter().filter(|s| windows.iter().any(|(a, b)| s.at >= *a && s.at <= *b)) {
            let Some(c) = s.cpus.iter().find(|c| c.index as usize == i) else { continue };
            n += 1;
            el2 += usize::from(c.el == 2);
            *counts.entry(classify(c, v)).or_default() += 1;
        }
        let mut v: Vec<(String, usize)> = counts.into_iter().collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        let nn = n.max(1) as f64;
        out.push((i as u8, n, el2 as f64 / nn, v.into_iter().take(top).map(|(k, c)| (k, c as f64 / nn)).collect()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registers_and_qmp_replies_are_read() {
        let text = "CPU#0\n PC=ffff800080012345 X00=0\nPSTATE=600003c5 -ZC- EL1h    FPU disabled\n\n\
                    CPU#1\n PC=0000000040081000 X00=1\nPSTATE=200003c9 --C- EL2h\nCPU#2\n PC=400000 X00=2\n\
                    PSTATE=80000000 N--- EL0t\n";
        assert_eq!(
            parse_registers(text),
            vec![
                Cpu { index: 0, pc: 0xffff_8000_8001_2345, el: 1 },
                Cpu { index: 1, pc: 0x4008_1000, el: 2 },
                Cpu { index: 2, pc: 0x40_0000, el: 0 },
            ]
        );
        assert_eq!(qmp_return_string(r#"{"return": "CPU#0\r\n PC=1 \"q\"\u0041"}"#).unwrap(), "CPU#0\r\n PC=1 \"q\"A");
        assert_eq!(qmp_return_string(r#"{"return": {}}"#), None);
        assert_eq!(qmp_return_string(r#"{"event": "STOP"}"#), None);
    }

    #[test]
    fn symbols_name_the_function_a_pc_is_in() {
        let map = "ffff800080000000 T _text\nffff800080010000 t do_thing\nffff800080020000 D some_data\n\
                   ffff800080030000 W weak_fn\nffff80007a000000 t xen_blkif_schedule\t[xen_blkback]\n";
        let s = Symbols::new(Symbols::from_map(map, 0x1000));
        assert_eq!(s.name(0xffff_8000_8001_1004), Some("do_thing"));
        assert_eq!(s.name(0xffff_8000_8002_5000), Some("do_thing")); // data is not a function
        assert_eq!(s.name(0xffff_8000_7a00_1010), Some("xen_blkif_schedule [xen_blkback]"));
        assert_eq!(s.name(0x1000), None);
        assert_eq!(s.name(0xffff_8000_8003_1000 + MAX_FN), None);
        assert_eq!(short("_ZN7hyp_el23irq6inject17h0123456789abcdefE"), "irq::inject");
        assert_eq!(short("_RNvNtCs1234_7hyp_el23irq6inject"), "irq::inject");
        assert_eq!(short("cpu_do_idle"), "cpu_do_idle");
    }

    #[test]
    fn a_phase_is_found_back_in_host_time_around_the_pauses() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let p = Pauses(vec![(ms(10), ms(15)), (ms(30), ms(40))]);
        // 50 ms of host time from 0 to 50 hold 35 ms of running.
        assert_eq!(p.start_of(ms(50), Duration::from_millis(35)), ms(0));
        assert_eq!(p.start_of(ms(50), Duration::from_millis(5)), ms(45));
        assert_eq!(p.start_of(ms(50), Duration::from_millis(10)), ms(40));
        assert_eq!(p.start_of(ms(50), Duration::from_millis(11)), ms(29));
        assert_eq!(p.start_of(ms(35), Duration::from_millis(2)), ms(28));
    }

    #[test]
    fn a_report_counts_each_cpus_categories_in_the_windows() {
        let t0 = Instant::now();
        let hyp = Symbols::new(vec![(0x4000_0000, "_ZN7hyp_el24trap5entry17h0123456789abcdefE".into())]);
        let k = Symbols::new(vec![(0xffff_0000, "cpu_do_idle".into())]);
        let views = [CpuView { title: "CPU0".into(), el1: &k, el2: &hyp }];
        let s = |ms, pc, el| Sample { at: t0 + Duration::from_millis(ms), cpus: vec![Cpu { index: 0, pc, el }] };
        let samples = vec![s(1, 0x4000_0010, 2), s(2, 0xffff_0004, 1), s(3, 0xffff_0008, 1), s(9, 0, 0)];
        let r = report(&samples, &[(t0, t0 + Duration::from_millis(5))], &views, 5);
        assert_eq!(r[0].1, 3);
        assert!((r[0].2 - 1.0 / 3.0).abs() < 1e-9);
        assert_eq!(r[0].3[0].0, "EL1 cpu_do_idle");
        assert_eq!(r[0].3[1].0, "EL2 trap::entry");
    }
}
