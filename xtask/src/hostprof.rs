//! The host's view of a QEMU run, for `cargo xtask bench pv --profile`: how much of each of
//! QEMU's threads' time went to running on a host core and to waiting for one, from the
//! kernel's per-thread scheduler statistics (`/proc/<pid>/task/<tid>/schedstat`: nanoseconds
//! on a CPU, nanoseconds runnable but waiting for one, timeslices), sampled every few
//! milliseconds while the board runs, and summed over a figure's phase.
//!
//! Under TCG each emulated CPU is one host thread (named `CPU n/TCG`): its running time is all
//! the work done on that CPU, by the guest and by the hypervisor at EL2; its waiting time says
//! every host core was busy with another thread. QEMU's other threads (main loop, block I/O
//! workers, RCU) form one group: the emulated devices (virtio disk, user network).
//!
//! Invariants: samples are in time order; over a window a thread counts from its value in the
//! window's first sample, or from zero when it was born inside the window (QEMU starts and
//! ends its I/O workers as needed); a thread that ended inside the window is not counted.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Which part of QEMU a thread is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Group {
    /// An emulated CPU (its index).
    Cpu(u8),
    /// Everything else: main loop, I/O workers, RCU.
    Devices,
}

/// The group of a thread named `comm`.
pub fn group_of(comm: &str) -> Group {
    comm.trim()
        .strip_prefix("CPU ")
        .and_then(|r| r.split('/').next())
        .and_then(|n| n.parse().ok())
        .map_or(Group::Devices, Group::Cpu)
}

/// (running ns, waiting ns) from a `schedstat` line.
pub fn parse_schedstat(s: &str) -> Option<(u64, u64)> {
    let mut w = s.split_whitespace().map(|x| x.parse::<u64>().ok());
    Some((w.next()??, w.next()??))
}

/// One look at every thread: (tid, group, running ns, waiting ns).
#[derive(Clone, Debug)]
pub struct Sample {
    /// When it was taken.
    pub at: Instant,
    /// Each thread's counters.
    pub threads: Vec<(u32, Group, u64, u64)>,
}

/// Each group's share of the window `[from, to]`: (group, running, waiting), as fractions of
/// the time between the samples that enclose it; `None` when fewer than two samples do.
pub fn window(samples: &[Sample], from: Instant, to: Instant) -> Option<Vec<(Group, f64, f64)>> {
    let a = samples.iter().rposition(|s| s.at <= from)?;
    let b = a + samples[a..].iter().position(|s| s.at >= to)?;
    if b <= a {
        return None;
    }
    let span = samples[b].at.duration_since(samples[a].at).as_nanos() as f64;
    let before: HashMap<u32, (u64, u64)> = samples[a].threads.iter().map(|&(t, _, r, w)| (t, (r, w))).collect();
    let mut sum: HashMap<Group, (u64, u64)> = HashMap::new();
    for &(tid, g, r, w) in &samples[b].threads {
        let (r0, w0) = before.get(&tid).copied().unwrap_or((0, 0));
        let e = sum.entry(g).or_default();
        e.0 += r.saturating_sub(r0);
        e.1 += w.saturating_sub(w0);
    }
    let mut v: Vec<(Group, f64, f64)> =
        sum.into_iter().map(|(g, (r, w))| (g, r as f64 / span, w as f64 / span)).collect();
    v.sort_by_key(|x| x.0);
    Some(v)
}

/// The child process of this one named `qemu-system*`, if it has started.
fn find_qemu() -> Option<u32> {
    let me = std::process::id();
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: u32 = e.file_name().to_str()?.parse().ok()?;
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // "pid (comm) state ppid ...": the comm may hold spaces, so split at its last ')'.
        let (head, tail) = stat.rsplit_once(')')?;
        let comm = head.split_once('(')?.1;
        let ppid: u32 = tail.split_whitespace().nth(1)?.parse().ok()?;
        (ppid == me && comm.starts_with("qemu-system")).then_some(pid)
    })
}

fn sample(pid: u32, names: &mut HashMap<u32, Group>) -> Option<Sample> {
    let mut threads = Vec::new();
    for e in std::fs::read_dir(format!("/proc/{pid}/task")).ok()?.flatten() {
        let Some(tid) = e.file_name().to_str().and_then(|t| t.parse::<u32>().ok()) else { continue };
        // An emulated CPU's name is final; any other is read again, as QEMU names a thread
        // only after it has started.
        let g = match names.get(&tid) {
            Some(&g @ Group::Cpu(_)) => g,
            _ => {
                let Ok(comm) = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/comm")) else { continue };
                let g = group_of(&comm);
                names.insert(tid, g);
                g
            }
        };
        if let Some((r, w)) =
            std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/schedstat")).ok().and_then(|s| parse_schedstat(&s))
        {
            threads.push((tid, g, r, w));
        }
    }
    Some(Sample { at: Instant::now(), threads })
}

/// Samples the QEMU child of this process every `every` until [`Sampler::finish`].
pub struct Sampler {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Vec<Sample>>,
}

impl Sampler {
    /// Starts sampling (the QEMU process is looked for until it appears).
    pub fn start(every: Duration) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let s2 = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let (mut out, mut names, mut pid) = (Vec::new(), HashMap::new(), None);
            while !s2.load(Ordering::Relaxed) {
                if pid.is_none() {
                    pid = find_qemu();
                }
                if let Some(p) = pid {
                    match sample(p, &mut names) {
                        Some(s) => out.push(s),
                        None => break,
                    }
                }
                std::thread::sleep(every);
            }
            out
        });
        Self { stop, thread }
    }

    /// Stops sampling and returns the samples.
    pub fn finish(self) -> Vec<Sample> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thread_names_and_counters_are_read() {
        assert_eq!(group_of("CPU 3/TCG\n"), Group::Cpu(3));
        assert_eq!(group_of("qemu-system-aar"), Group::Devices);
        assert_eq!(group_of("worker"), Group::Devices);
        assert_eq!(parse_schedstat("123 45 6\n"), Some((123, 45)));
        assert_eq!(parse_schedstat("x"), None);
    }

    #[test]
    fn a_window_sums_each_group_between_the_enclosing_samples() {
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        let s = |ms, threads| Sample { at: at(ms), threads };
        let samples = vec![
            s(0, vec![(1, Group::Cpu(0), 0, 0), (2, Group::Devices, 0, 0), (3, Group::Devices, 5_000_000, 0)]),
            s(10, vec![(1, Group::Cpu(0), 5_000_000, 1_000_000), (2, Group::Devices, 1_000_000, 0)]),
            // Thread 4 was born in the window, thread 3 ended in it.
            s(
                20,
                vec![
                    (1, Group::Cpu(0), 15_000_000, 1_000_000),
                    (2, Group::Devices, 2_000_000, 0),
                    (4, Group::Devices, 3_000_000, 0),
                ],
            ),
        ];
        let w = window(&samples, at(10), at(20)).unwrap();
        assert_eq!(w.len(), 2);
        assert_eq!(w[0].0, Group::Cpu(0));
        assert!((w[0].1 - 1.0).abs() < 1e-9 && w[0].2.abs() < 1e-9);
        assert!((w[1].1 - 0.4).abs() < 1e-9);
        // A window inside one interval widens to its enclosing samples.
        let w = window(&samples, at(12), at(18)).unwrap();
        assert!((w[0].1 - 1.0).abs() < 1e-9);
        // Nothing encloses a window that starts before the first sample or ends after the last.
        assert!(window(&samples, t0 - Duration::from_millis(1), at(5)).is_none());
        assert!(window(&samples, at(15), at(25)).is_none());
    }
}
