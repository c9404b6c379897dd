//! `cargo xtask test`: every check the project has, in the order a developer wants failures:
//! formatting, clippy (host and both aarch64 targets), host unit tests, the aarch64 builds, and
//! the QEMU scenarios in `tests/scenarios/*.toml`, each booted on the GIC versions it lists.
//! Ends with a `N passed, N failed` line.

use crate::qemu::{self, Ending, RunOpts};
use crate::{root, run_cargo, setup};
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A QEMU scenario file.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Scenario {
    /// What it shows.
    description: String,
    /// Deployment file, relative to the workspace root.
    deployment: String,
    /// GIC versions to boot with.
    gic: Vec<u8>,
    /// Seconds before QEMU is stopped.
    timeout: u64,
    /// "clean" or "error": how the board must end; "stopped": the run is stopped once the last
    /// `expect` line has appeared (for hypervisors that never power off, such as Xen dom0less);
    /// "unbooted": the board powers off without the hypervisor's status line (U-Boot refused
    /// the deployment).
    ending: String,
    /// "ferrum" (default) or "xen-4.17": boot the deployment's unikernels as dom0less domUs of
    /// Debian's Xen 4.17 instead (ABI fidelity).
    #[serde(default)]
    hypervisor: Option<String>,
    /// Skip the host-side plan check.
    #[serde(default)]
    unchecked: bool,
    /// Lines that must appear, in this order.
    expect: Vec<String>,
    /// Lines that must appear, in any order (output of independent domains).
    #[serde(default)]
    expect_unordered: Vec<String>,
    /// Text that must not appear.
    #[serde(default)]
    forbid: Vec<String>,
    /// Start an HTTP server on the host and tell the control domain's init (through
    /// `selftest.txt` on the boot partition) to run its self-test against it.
    #[serde(default)]
    selftest: bool,
    /// Console input: (marker, text) pairs; the text is typed once the marker has appeared.
    /// `\u0001` is Ctrl-A. A text `@http-get /path` is a host action instead: an HTTP GET
    /// through the forwarded web port (needs `http = true`), retried for up to 90 s until it is
    /// answered, logged as `host: GET /path -> …`; `@http-probe /path` tries once (a
    /// retry could reach the service after it restarted) and logs `host: GET /path -> no
    /// answer` when nothing answers. `@http-loop /path` starts GETs in a loop in the
    /// background (to this board's web, and when it gets no answer to board B's: where a
    /// migrated web answers), `@http-loop-end` stops it and logs `host: loop: …` (requests
    /// answered and failed, the longest wait, whether web's request counter only went up).
    /// `@wait N`: the next step waits N seconds more (its marker is searched from where this
    /// one's search began, so it may be the same).
    #[serde(default)]
    input: Vec<(String, String)>,
    /// Forward a free host port to the web unikernel (10.0.2.20:80) for `@http-get` actions.
    #[serde(default)]
    http: bool,
    /// Keep the data partition of the previous run (default: start with an empty one).
    #[serde(default)]
    keep_data: bool,
    /// Boot the whole disk the previous run left, boot partition included (a scenario that
    /// checks what an earlier one persisted, e.g. `hypctl update --persist`).
    #[serde(default)]
    keep_disk: bool,
    /// Verified boot: the deployment as one signed FIT (the development key of
    /// `cargo xtask keygen`, made when missing), U-Boot's device tree requiring the key.
    #[serde(default)]
    signed: bool,
    /// Boot the hypervisor's trace build, its defmt frames captured from the second UART and
    /// decoded after the run (`build/logs/<name>-gicv<N>.trace.txt`).
    #[serde(default)]
    trace: bool,
    /// Extra QEMU arguments (devices on the board's buses, e.g. an I2C sensor).
    #[serde(default)]
    qemu_args: Vec<String>,
    /// With `trace`: texts the decoded trace must contain, in any order.
    #[serde(default)]
    trace_expect: Vec<String>,
    /// With `signed`: alter the image before the boot ("hypervisor", "plan", "image": one byte
    /// of it; "unsigned": no signature), which U-Boot must refuse.
    #[serde(default)]
    tamper: Option<String>,
    /// With `signed`: update images for this domain on the boot partition (its own image):
    /// `<name>-signed.img` (+ `.sig` by the deployment's update key), `<name>-unsigned.img`,
    /// `<name>-otherkey.img` (+ `.sig` by another key) and `<name>-otherdomain.img` (+ `.sig`
    /// by the right key, for another domain).
    #[serde(default)]
    update_images: Option<String>,
    /// With `signed`: more deployments, signed with the same key, on the boot partition:
    /// (file name, deployment file), for `hypctl update-deployment`. They are not checked on
    /// the host (a plan the hypervisor refuses can be one).
    #[serde(default)]
    extra_deployments: Vec<(String, String)>,
    /// A second board booted at the same time (a migration test): its own deployment (a file
    /// with another name, so another disk), input and expectations. The two control domains
    /// share an Ethernet link ([`qemu::Link`]: `192.168.77.1` here, `.2` there; both
    /// deployments pass `/virtio_mmio@a003a00` to their control domain); `{peer}` in this
    /// board's input becomes `192.168.77.2:7000`, in board B's `192.168.77.1:7000`; each
    /// board's `@http-loop` tries its own web, then the other board's.
    #[serde(default)]
    board_b: Option<Box<Scenario>>,
    /// A domain's heartbeat lines that must be unbroken (see [`check_heartbeat`]).
    #[serde(default)]
    heartbeat: Option<Heartbeat>,
}

/// The beats of a heartbeat domain (`guests/heartbeat`): lines `<prefix>N at T ms`.
#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct Heartbeat {
    /// Text before the beat number, e.g. `[beat] heartbeat: beat `.
    pub prefix: String,
    /// Largest gap allowed between two beats, in the domain's own (virtual counter) time.
    pub max_gap_ms: u64,
    /// Fewest beats the run must show.
    pub min_beats: u64,
}

/// Checks that the beats are numbered 1, 2, 3, … without a hole, that no two are further
/// apart than the bound, and that there are enough of them. Returns (beats, largest gap).
pub fn check_heartbeat(h: &Heartbeat, log: &str) -> Result<(u64, u64), String> {
    let mut last: Option<(u64, u64)> = None;
    let mut worst = 0;
    let mut n = 0;
    for line in log.lines() {
        let Some(rest) = line.find(&h.prefix).map(|i| &line[i + h.prefix.len()..]) else { continue };
        let mut w = rest.split_whitespace();
        let (Some(num), Some("at"), Some(ms)) = (w.next(), w.next(), w.next()) else { continue };
        let (Ok(num), Ok(ms)) = (num.parse::<u64>(), ms.parse::<u64>()) else { continue };
        if let Some((pn, pms)) = last {
            if num != pn + 1 {
                return Err(format!("heartbeat: beat {num} follows beat {pn}"));
            }
            let gap = ms.saturating_sub(pms);
            worst = worst.max(gap);
            if gap > h.max_gap_ms {
                return Err(format!("heartbeat: {gap} ms between beats {pn} and {num} (bound {} ms)", h.max_gap_ms));
            }
        }
        last = Some((num, ms));
        n += 1;
    }
    if n < h.min_beats {
        return Err(format!("heartbeat: {n} beats, fewer than {}", h.min_beats));
    }
    Ok((n, worst))
}

/// A TCP port on 127.0.0.1 that is free right now.
/// The two boards' link network (board A is `.1`, board B `.2`).
const LINK_NET: &str = "192.168.77";

fn free_port() -> Result<u16, String> {
    let l = std::net::TcpListener::bind(("127.0.0.1", 0)).map_err(|e| format!("no free host port: {e}"))?;
    l.local_addr().map(|a| a.port()).map_err(|e| e.to_string())
}

/// Body the host's test HTTP server answers with.
pub const HTTP_BODY: &str = "ferrum-http-ok";

/// Starts a tiny HTTP server on 127.0.0.1 (reachable from the guest as 10.0.2.2 through QEMU's
/// user network); returns its port. It serves until xtask exits.
pub fn start_http_server() -> Result<u16, String> {
    use std::io::{Read, Write};
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| format!("http server: {e}"))?;
    let port = l.local_addr().map_err(|e| e.to_string())?.port();
    std::thread::spawn(move || {
        for mut c in l.incoming().flatten() {
            let mut buf = [0u8; 2048];
            let _ = c.set_read_timeout(Some(std::time::Duration::from_secs(5)));
            let _ = c.read(&mut buf);
            let body = format!("{HTTP_BODY}\n");
            let _ = write!(
                c,
                "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
        }
    });
    Ok(port)
}

struct Tally {
    passed: Vec<String>,
    /// Each failed step with its reason (printed again at the end of the run).
    failed: Vec<(String, String)>,
}

impl Tally {
    fn record(&mut self, name: &str, r: Result<(), String>, t: Instant) {
        match r {
            Ok(()) => {
                println!("xtask test: PASS {name} ({:.1} s)", t.elapsed().as_secs_f64());
                self.passed.push(name.into());
            }
            Err(e) => {
                println!("xtask test: FAIL {name}: {e}");
                self.failed.push((name.into(), e));
            }
        }
    }
}

fn step(t: &mut Tally, name: &str, f: impl FnOnce() -> Result<(), String>) {
    let start = Instant::now();
    println!("xtask test: --- {name}");
    let r = f();
    t.record(name, r, start);
}

/// `text`'s first line and, when it has more, its last `lines` lines.
fn shorten(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    if all.len() <= lines + 1 {
        return text.to_string();
    }
    format!("{}\n[... {} lines ...]\n{}", all[0], all.len() - lines - 1, all[all.len() - lines..].join("\n"))
}

/// Checks a serial log against a scenario.
fn judge(s: &Scenario, ending: Ending, log: &str) -> Result<(), String> {
    let want = match s.ending.as_str() {
        "clean" => Ending::Clean,
        "error" => Ending::Error,
        "stopped" | "killed" => Ending::Stopped,
        // The board powered off before the hypervisor ran (U-Boot refused the deployment).
        "unbooted" => Ending::NoStatus,
        other => return Err(format!("scenario ending '{other}' is not clean, error, stopped, killed or unbooted")),
    };
    if ending != want {
        return Err(format!("the board ended {ending:?}, expected {want:?}"));
    }
    let mut pos = 0;
    for e in &s.expect {
        match log[pos..].find(e.as_str()) {
            Some(i) => pos += i + e.len(),
            None => {
                return Err(if log.contains(e.as_str()) {
                    format!("'{e}' appeared, but not after the previous expectation")
                } else {
                    format!("'{e}' never appeared")
                })
            }
        }
    }
    if let Some(e) = s.expect_unordered.iter().find(|e| !log.contains(e.as_str())) {
        return Err(format!("'{e}' never appeared"));
    }
    if let Some(f) = s.forbid.iter().find(|f| log.contains(f.as_str())) {
        return Err(format!("'{f}' appeared"));
    }
    Ok(())
}

fn scenarios() -> Result<Vec<(String, Scenario)>, String> {
    let dir = root().join("tests/scenarios");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(&p).map_err(|e| e.to_string())?;
            let s: Scenario = toml::from_str(&text).map_err(|e| format!("{}: {e}", p.display()))?;
            Ok((p.file_stem().unwrap().to_string_lossy().into_owned(), s))
        })
        .collect()
}

/// The workspace minus the crates that only build for aarch64 (the hypervisor binary and the
/// guest binaries: `no_main`, their panic handler and entry only exist on the target).
const HOST_CRATES: &[&str] = &[
    "--workspace",
    "--exclude",
    "hyp-el2",
    "--exclude",
    "testguest",
    "--exclude",
    "hello",
    "--exclude",
    "pingpong",
    "--exclude",
    "web",
    "--exclude",
    "kv",
    "--exclude",
    "rogue",
    "--exclude",
    "pvbench",
    "--exclude",
    "hostile",
    "--exclude",
    "heartbeat",
    "--exclude",
    "blinky",
    "--exclude",
    "sensor",
];

/// Formatting, lints, host unit tests and the aarch64 builds.
fn static_checks(t: &mut Tally) {
    step(t, "fmt", || run_cargo(&["fmt", "--all", "--check"]));
    let host_clippy = [HOST_CRATES, &["--all-targets"]].concat();
    let clippy: [(&str, &[&str]); 6] = [
        ("clippy (host)", &host_clippy),
        ("clippy (aarch64 hypervisor, qemu-virt)", &["-p", "hyp-el2", "--target", "aarch64-unknown-none-softfloat"]),
        (
            "clippy (aarch64 hypervisor, trace build)",
            &["-p", "hyp-el2", "--target", "aarch64-unknown-none-softfloat", "--features", "trace"],
        ),
        (
            "clippy (aarch64 hypervisor, rpi4)",
            &[
                "-p",
                "hyp-el2",
                "--target",
                "aarch64-unknown-none-softfloat",
                "--no-default-features",
                "--features",
                "platform-rpi4",
            ],
        ),
        (
            "clippy (aarch64 guests)",
            &[
                "-p",
                "testguest",
                "-p",
                "ferrum-rt",
                "-p",
                "hello",
                "-p",
                "pingpong",
                "-p",
                "web",
                "-p",
                "kv",
                "-p",
                "rogue",
                "-p",
                "pvbench",
                "-p",
                "hostile",
                "-p",
                "heartbeat",
                "-p",
                "blinky",
                "-p",
                "sensor",
                "--target",
                "aarch64-unknown-none",
            ],
        ),
        ("clippy (control-domain agent, musl)", &["-p", "ferrum-agent", "--target", "aarch64-unknown-linux-musl"]),
    ];
    for (name, sel) in clippy {
        step(t, name, || run_cargo(&[&["clippy", "--quiet"], sel, &["--", "-D", "warnings"]].concat()));
    }
    step(t, "host unit tests", || run_cargo(&[&["test"], HOST_CRATES].concat()));
    step(t, "no_std crates build for aarch64", || {
        run_cargo(&[
            "build",
            "--quiet",
            "-p",
            "hyp-core",
            "-p",
            "platforms",
            "--target",
            "aarch64-unknown-none-softfloat",
        ])
    });
    for target in crate::fuzz::TARGETS {
        step(t, &format!("fuzz {target} (committed corpus, then 10 s)"), || {
            crate::fuzz::ensure_cargo_fuzz()?;
            crate::fuzz::run(target, crate::fuzz::Budget::Seconds(10)).map(|_| ())
        });
    }
    step(t, "hypervisor builds for every board", || {
        crate::build_hyp("qemu-virt")?;
        crate::build_hyp("rpi4").map(|_| ())
    });
}

/// The ratio above which `cargo xtask test`'s short boot benchmark fails (`bench boot`'s own
/// target is [`crate::bench::BOOT_TARGET`]).
const BOOT_GUARD: f64 = 1.15;

/// `cargo xtask test`.
pub fn cmd_test(args: &[String]) -> Result<u8, String> {
    crate::check_args(args, &["--only"], &["--no-qemu"])?;
    let no_qemu = args.iter().any(|a| a == "--no-qemu");
    // `--only NAME`: just the QEMU scenarios whose file name contains NAME.
    let only = crate::opt(args, "--only")?;
    if no_qemu {
        setup::ensure_targets()?;
    } else {
        setup::ensure_host_tools()?;
        // Every prerequisite once more, one line each, before any test runs.
        setup::preflight()?;
    }
    let mut t = Tally { passed: vec![], failed: vec![] };
    if only.is_none() {
        static_checks(&mut t);
    }
    if !no_qemu {
        let list = match scenarios() {
            Ok(l) => l,
            Err(e) => {
                t.record("scenario files", Err(e), Instant::now());
                Vec::new()
            }
        };
        for (name, s) in list.iter().filter(|(n, _)| only.as_deref().is_none_or(|o| n.contains(o))) {
            for &gic in &s.gic {
                let label = format!("qemu {name} gicv{gic}");
                let start = Instant::now();
                println!("xtask test: --- {label}: {}", s.description);
                let r = run_scenario(name, s, gic, &root().join(&s.deployment));
                t.record(&label, r, start);
            }
        }
    }
    // The boot-time guard: a short `bench boot` per GIC, failing above BOOT_GUARD (looser than
    // the benchmark's own target, for the noise of three runs).
    if !no_qemu && only.as_deref().is_none_or(|o| "bench-boot".contains(o)) {
        for gic in ["3", "2"] {
            step(&mut t, &format!("bench boot gicv{gic} (3 runs, ratio <= {BOOT_GUARD})"), || {
                let args: Vec<String> = ["boot", "--runs", "3", "--gic", gic, "--max-ratio", &BOOT_GUARD.to_string()]
                    .iter()
                    .map(|a| a.to_string())
                    .collect();
                crate::bench::cmd_bench(&args).map(|_| ())
            });
        }
    }
    println!();
    // The reasons once more at the end, shortened: a CI log is often read from its tail.
    for (name, why) in &t.failed {
        println!("xtask test: why {name} failed: {}", shorten(why, 30));
    }
    if !t.failed.is_empty() {
        let names: Vec<&str> = t.failed.iter().map(|(n, _)| n.as_str()).collect();
        println!("failed: {}", names.join(", "));
    }
    println!("{} passed, {} failed", t.passed.len(), t.failed.len());
    Ok(if t.failed.is_empty() { 0 } else { 1 })
}

/// Runs a scenario given as TOML text (a benchmark's script) on GIC `gic`, named `name`;
/// returns its verdict and the serial logs of board A and board B (empty without one), which
/// stay in `build/logs/<name>[-b]-gicv<gic>.log`.
pub fn run_scenario_text(name: &str, text: &str, gic: u8) -> Result<(Result<(), String>, String, String), String> {
    let s: Scenario = toml::from_str(text).map_err(|e| format!("{name}: {e}"))?;
    let verdict = run_scenario(name, &s, gic, &root().join(&s.deployment));
    let dir = root().join("build/logs");
    let read = |n: String| std::fs::read_to_string(dir.join(format!("{n}-gicv{gic}.log"))).unwrap_or_default();
    Ok((verdict, read(name.to_string()), read(format!("{name}-b"))))
}

/// The update images of `update_images` for domain `name` of `deployment`.
fn update_images(deployment: &Path, name: &str) -> Result<Vec<(String, Vec<u8>)>, String> {
    use crate::sign;
    let dep = crate::load_deployment(deployment, true)?;
    let d = dep.domains.iter().find(|d| d.name == name).ok_or(format!("update_images: no domain '{name}'"))?;
    let image = std::fs::read(&d.kernel.path).map_err(|e| format!("{}: {e}", d.kernel.path.display()))?;
    let dir = sign::default_key_dir();
    let (own, _) = sign::update_key(&dir, sign::DEFAULT_KEY)?;
    let (other, _) = sign::update_key(&dir, "other")?;
    let f = |n: &str| format!("{name}-{n}");
    Ok(vec![
        (f("signed.img"), image.clone()),
        (f("signed.img.sig"), sign::sign_update(&own, name, &image).to_vec()),
        (f("unsigned.img"), image.clone()),
        (f("otherkey.img"), image.clone()),
        (f("otherkey.img.sig"), sign::sign_update(&other, name, &image).to_vec()),
        (f("otherdomain.img"), image.clone()),
        (f("otherdomain.img.sig"), sign::sign_update(&own, "control", &image).to_vec()),
    ])
}

/// Boots scenario `s` (file name `name`) on GIC `gic` with `deployment` (its own, or a
/// variant such as the soak's reseeded copy) and judges what the guests printed.
/// A scenario's board ready to boot: its command, options, console script and stop rule.
struct Launch<'a> {
    cmd: std::process::Command,
    o: RunOpts,
    input: Vec<(String, String)>,
    stop: Option<(&'a str, Duration)>,
}

/// Builds board `s` (its images, disk and QEMU command). `link`: its link to another board;
/// `peer`: what `{peer}` in its input becomes.
fn launch<'a>(
    name: &str,
    s: &'a Scenario,
    gic: u8,
    deployment: &Path,
    link: Option<qemu::Link>,
    peer: Option<&str>,
    (http_port, other_http): (Option<u16>, Option<u16>),
) -> Result<Launch<'a>, String> {
    let o = RunOpts {
        gic,
        deployment: deployment.to_path_buf(),
        timeout: Some(s.timeout),
        unchecked: s.unchecked,
        http_port,
        fresh_data: !s.keep_data,
        keep_disk: s.keep_disk,
        link,
        sign: if s.signed {
            let dir = crate::sign::default_key_dir();
            crate::sign::keygen(&dir, crate::sign::DEFAULT_KEY)?;
            let tamper = s.tamper.as_deref().map(crate::sign::Tamper::parse).transpose()?;
            Some((dir.join(crate::sign::DEFAULT_KEY), tamper))
        } else {
            None
        },
        platform: None,
        trace: s.trace.then(|| root().join(format!("build/trace/{name}-gicv{gic}.defmt"))),
        extra_files: if s.update_images.is_some() || !s.extra_deployments.is_empty() {
            let mut v = match &s.update_images {
                Some(name) => update_images(deployment, name)?,
                None => Vec::new(),
            };
            for (file, dep) in &s.extra_deployments {
                let dep = crate::load_deployment(&root().join(dep), true)?;
                let key = crate::sign::default_key_dir().join(crate::sign::DEFAULT_KEY);
                v.push((
                    file.clone(),
                    crate::sign::signed_image(
                        &dep,
                        &crate::sign::Signing { key: &key, gic, model: crate::sign::Model::Qemu, tamper: None },
                    )?
                    .fit,
                ));
            }
            v
        } else if s.selftest {
            let port = start_http_server()?;
            let mut v = vec![("selftest.txt".into(), format!("http://10.0.2.2:{port}/").into_bytes())];
            if !s.input.is_empty() {
                v.push(("selftest-wait".into(), b"the host acts, then types a line\n".to_vec()));
            }
            v
        } else {
            Vec::new()
        },
    };
    let mut cmd = match s.hypervisor.as_deref() {
        None | Some("ferrum") => qemu::prepare(&o)?,
        Some("xen-4.17") => crate::xen::command(gic, &o.deployment, false)?,
        Some(h) => return Err(format!("{name}: hypervisor '{h}' is not ferrum or xen-4.17")),
    };
    cmd.args(&s.qemu_args);
    // "stopped": QEMU is stopped a second after the last expected line; "killed":
    // at once (a power cut right after that line).
    let grace = match s.ending.as_str() {
        "stopped" => Some(Duration::from_secs(1)),
        "killed" => Some(Duration::ZERO),
        _ => None,
    };
    let stop = grace.and_then(|g| s.expect.last().map(|l| (l.as_str(), g)));
    let input: Vec<(String, String)> = s
        .input
        .iter()
        .map(|(m, t)| {
            let t = match peer {
                Some(p) => t.replace("{peer}", p),
                None => t.clone(),
            };
            if let (Some(path), Some(p)) = (t.strip_prefix("@http-loop "), o.http_port) {
                // This board's web first, then the other board's (where it may migrate).
                let mut targets = format!("@http-loop 127.0.0.1:{p}{path}");
                if let Some(q) = other_http {
                    targets.push_str(&format!(" 127.0.0.1:{q}{path}"));
                }
                return (m.clone(), targets);
            }
            let action = ["@http-get ", "@http-probe "].into_iter().find_map(|a| Some((a, t.strip_prefix(a)?)));
            match (action, o.http_port) {
                (Some((a, path)), Some(p)) => (m.clone(), format!("{a}127.0.0.1:{p}{path}")),
                _ => (m.clone(), t.clone()),
            }
        })
        .collect();
    Ok(Launch { cmd, o, input, stop })
}

/// Boots scenario `s` (file name `name`) on GIC `gic` with `deployment` (its own, or a
/// variant such as the soak's reseeded copy) and judges what the guests printed; with a
/// second board, boots both at once and judges both.
fn run_scenario(name: &str, s: &Scenario, gic: u8, deployment: &Path) -> Result<(), String> {
    let mut other = None;
    let mut peer = None;
    let mut link_a = None;
    let http_a = if s.http { Some(free_port()?) } else { None };
    let http_b = if s.board_b.as_ref().is_some_and(|b| b.http) { Some(free_port()?) } else { None };
    if let Some(b) = &s.board_b {
        // The boards' control domains talk over their own Ethernet link (board B, started
        // first, listens on a loopback port; A connects).
        let port = free_port()?;
        let link = |board: u8| qemu::Link { port, server: board == 2, board, addr: format!("{LINK_NET}.{board}/24") };
        link_a = Some(link(1));
        let bdep = root().join(&b.deployment);
        let peer_a = format!("{LINK_NET}.1:7000");
        let l = launch(name, b, gic, &bdep, Some(link(2)), Some(&peer_a), (http_b, http_a))?;
        let bname = format!("{name}-b");
        other = Some(std::thread::spawn(move || {
            qemu::run_batch(l.cmd, l.o.timeout, false, &l.input, None).map(|r| (bname, r))
        }));
        peer = Some(format!("{LINK_NET}.2:7000"));
    }
    let l = launch(name, s, gic, deployment, link_a, peer.as_deref(), (http_a, http_b))?;
    let (cmd, o, input, stop) = (l.cmd, l.o, l.input, l.stop);
    // A Pi 4 scenario boots the SD card image `cargo xtask image` writes: its
    // structure is checked first, and the facts go into the log.
    let sd_facts = match cmd
        .get_args()
        .find_map(|a| a.to_str().and_then(|a| a.strip_prefix("if=sd,format=raw,file=")).map(PathBuf::from))
    {
        Some(sd) => crate::rpi4::check_sd(&sd)
            .map_err(|e| format!("SD card image {}: {e}", sd.display()))?
            .iter()
            .map(|f| format!("sd-check: {f}\n"))
            .collect::<String>(),
        None => String::new(),
    };
    let mut run = qemu::run_batch(cmd, o.timeout, false, &input, stop)?;
    run.log.insert_str(0, &sd_facts);
    let dir = root().join("build/logs");
    let _ = std::fs::create_dir_all(&dir);
    let logf = dir.join(format!("{name}-gicv{gic}.log"));
    let _ = std::fs::write(&logf, &run.log);
    let beats = s.heartbeat.as_ref().map(|h| check_heartbeat(h, &run.log));
    if let Some(Ok((n, worst))) = &beats {
        println!("xtask test: heartbeat: {n} beats, largest gap {worst} ms");
    }
    let mut beat_err = beats.and_then(|b| b.err());
    if s.trace && beat_err.is_none() {
        beat_err = check_trace(s, &root().join(format!("build/trace/{name}-gicv{gic}.defmt")), &dir, name, gic).err();
    }
    let verdict = judge(s, run.ending, &run.log).and_then(|()| beat_err.map_or(Ok(()), Err)).map_err(|e| {
        let tail: Vec<&str> = run.log.lines().rev().take(60).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        format!("{e}\n--- serial log ({}) last lines:\n{}\n---", logf.display(), tail.join("\n"))
    });
    if let (Some(h), Some(b)) = (other, &s.board_b) {
        let (bname, brun) = h.join().map_err(|_| "the second board's runner panicked".to_string())??;
        let blog = dir.join(format!("{bname}-gicv{gic}.log"));
        let _ = std::fs::write(&blog, &brun.log);
        judge(b, brun.ending, &brun.log).map_err(|e| {
            let tail: Vec<&str> = brun.log.lines().rev().take(60).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            format!("board B: {e}\n--- serial log ({}) last lines:\n{}\n---", blog.display(), tail.join("\n"))
        })?;
    }
    verdict
}

/// Decodes a trace scenario's capture (kept beside its serial log) and looks for each of its
/// `trace_expect` texts.
fn check_trace(s: &Scenario, file: &Path, logs: &Path, name: &str, gic: u8) -> Result<(), String> {
    let text = crate::decode_trace(file, &crate::trace_elf("qemu-virt"))?;
    let out = logs.join(format!("{name}-gicv{gic}.trace.txt"));
    let _ = std::fs::write(&out, &text);
    println!("xtask test: trace: {} frames decoded ({})", text.lines().count(), out.display());
    match s.trace_expect.iter().find(|e| !text.contains(e.as_str())) {
        Some(e) => Err(format!("the decoded trace ({}) has no '{e}'", out.display())),
        None => Ok(()),
    }
}

/// Seeds for the soak: SplitMix64 from the clock (a replay passes `--seed`).
fn next_seed(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    (z ^ (z >> 31)) % 1_000_000_000
}

/// The hostile deployment with `seed=1` in the abuser's bootargs replaced by `seed`.
pub fn reseed(deployment: &str, seed: u64) -> Result<String, String> {
    if deployment.matches("seed=1 ").count() + deployment.matches("seed=1\"").count() != 1 {
        return Err("tests/deployments/hostile.toml: expected exactly one 'seed=1' in the bootargs".into());
    }
    Ok(deployment.replacen("seed=1 ", &format!("seed={seed} "), 1).replacen("seed=1\"", &format!("seed={seed}\""), 1))
}

/// `cargo xtask soak [--minutes N] [--seed S] [--gic 2|3]`: boots the hostile scenario again
/// and again, each boot with a new seed for the abuser (printed first, so a failure replays
/// with `--seed`), alternating GICv2 and GICv3 unless `--gic` is given, until N minutes
/// (default 10) have passed or a boot fails.
pub fn cmd_soak(args: &[String]) -> Result<u8, String> {
    crate::check_args(args, &["--minutes", "--seed", "--gic"], &[])?;
    let num = |name: &str| -> Result<Option<u64>, String> {
        crate::opt(args, name)?
            .map(|v| v.parse::<u64>().map_err(|_| format!("{name}: '{v}' is not a number")))
            .transpose()
    };
    let minutes = num("--minutes")?.unwrap_or(10);
    let replay = num("--seed")?;
    let gic = match num("--gic")? {
        None => None,
        Some(g @ (2 | 3)) => Some(g as u8),
        Some(g) => return Err(format!("--gic: {g} is not 2 or 3")),
    };
    setup::ensure_host_tools()?;
    setup::preflight()?;
    let (name, s) =
        scenarios()?.into_iter().find(|(n, _)| n == "hostile").ok_or("tests/scenarios/hostile.toml is missing")?;
    let text = std::fs::read_to_string(root().join(&s.deployment)).map_err(|e| format!("{}: {e}", s.deployment))?;
    let dir = root().join("build/soak");
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut state =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64);
    let start = Instant::now();
    let mut boots = 0u32;
    loop {
        let seed = replay.unwrap_or_else(|| next_seed(&mut state));
        let g = gic.unwrap_or(if boots.is_multiple_of(2) { 2 } else { 3 });
        boots += 1;
        println!("xtask soak: boot {boots}: seed {seed}, GICv{g} (replay: cargo xtask soak --seed {seed} --gic {g})");
        let file = dir.join(format!("hostile-seed{seed}.toml"));
        std::fs::write(&file, reseed(&text, seed)?).map_err(|e| format!("{}: {e}", file.display()))?;
        let t0 = Instant::now();
        if let Err(e) = run_scenario(&format!("soak-{name}-seed{seed}"), &s, g, &file) {
            println!("xtask soak: FAIL boot {boots}, seed {seed}, GICv{g}: {e}");
            println!("xtask soak: replay with: cargo xtask soak --seed {seed} --gic {g}");
            return Ok(1);
        }
        println!("xtask soak: PASS boot {boots}, seed {seed}, GICv{g} ({:.1} s)", t0.elapsed().as_secs_f64());
        let _ = std::fs::remove_file(&file);
        if replay.is_some() || start.elapsed() >= Duration::from_secs(minutes * 60) {
            break;
        }
    }
    println!("xtask soak: {boots} boot(s) passed in {:.1} min", start.elapsed().as_secs_f64() / 60.0);
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shorten_keeps_the_reason_and_the_log_tail() {
        assert_eq!(shorten("one\ntwo", 3), "one\ntwo");
        let long: String = (0..10).map(|i| format!("l{i}\n")).collect();
        assert_eq!(shorten(&long, 2), "l0\n[... 7 lines ...]\nl8\nl9");
    }

    fn sc(expect: &[&str], forbid: &[&str]) -> Scenario {
        Scenario {
            description: String::new(),
            deployment: String::new(),
            gic: vec![2],
            timeout: 1,
            ending: "clean".into(),
            hypervisor: None,
            unchecked: false,
            expect: expect.iter().map(|s| s.to_string()).collect(),
            expect_unordered: vec!["b".into()],
            forbid: forbid.iter().map(|s| s.to_string()).collect(),
            selftest: false,
            input: Vec::new(),
            http: false,
            keep_data: false,
            keep_disk: false,
            board_b: None,
            signed: false,
            trace: false,
            qemu_args: vec![],
            trace_expect: vec![],
            tamper: None,
            update_images: None,
            extra_deployments: Vec::new(),
            heartbeat: None,
        }
    }

    #[test]
    fn soak_reseeds_the_one_seed() {
        let d = "bootargs = \"ip=1\"\nbootargs = \"seed=1 wait=console\"\n";
        assert_eq!(reseed(d, 42).unwrap(), "bootargs = \"ip=1\"\nbootargs = \"seed=42 wait=console\"\n");
        assert!(reseed("bootargs = \"x\"", 4).is_err());
        let (mut a, mut b) = (7, 7);
        assert_eq!(next_seed(&mut a), next_seed(&mut b));
        let first = next_seed(&mut a);
        assert_ne!(first, next_seed(&mut a), "successive seeds differ");
    }

    #[test]
    fn heartbeat_holes_and_gaps() {
        let h = Heartbeat { prefix: "[b] beat ".into(), max_gap_ms: 300, min_beats: 2 };
        let ok = "[b] beat 1 at 200 ms\nother\n[b] beat 2 at 400 ms\n[b] beat 3 at 600 ms\n";
        assert_eq!(check_heartbeat(&h, ok), Ok((3, 200)));
        assert!(check_heartbeat(&h, "[b] beat 1 at 200 ms\n[b] beat 3 at 400 ms\n").unwrap_err().contains("follows"));
        assert!(check_heartbeat(&h, "[b] beat 1 at 200 ms\n[b] beat 2 at 900 ms\n").unwrap_err().contains("700 ms"));
        assert!(check_heartbeat(&h, "[b] beat 1 at 200 ms\n").unwrap_err().contains("fewer"));
    }

    #[test]
    fn judging_order_and_forbidden_text() {
        let log = "a\nb\nc\n";
        assert!(judge(&sc(&["a", "c"], &[]), Ending::Clean, log).is_ok());
        assert!(judge(&sc(&["c", "a"], &[]), Ending::Clean, log).unwrap_err().contains("not after"));
        assert!(judge(&sc(&["z"], &[]), Ending::Clean, log).unwrap_err().contains("never"));
        assert!(judge(&sc(&[], &["b"]), Ending::Clean, log).is_err());
        assert!(judge(&sc(&[], &[]), Ending::Error, log).is_err());
    }

    #[test]
    fn scenario_files_parse() {
        let l = scenarios().unwrap();
        assert!(!l.is_empty());
        for (name, s) in l {
            assert!(root().join(&s.deployment).is_file(), "{name}: deployment missing");
            assert!(s.gic.iter().all(|g| *g == 2 || *g == 3), "{name}");
        }
    }
}
