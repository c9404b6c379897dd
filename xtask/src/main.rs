//! `cargo xtask`: the project's single entry point.
//!
//! - `run-qemu-aarch64`: install what is missing, build, write the boot disk, boot QEMU `virt`
//!   through Debian's U-Boot into the hypervisor and the default deployment.
//! - `test`: formatting, clippy (host and aarch64), host unit tests, aarch64 builds and the QEMU
//!   scenarios of `tests/scenarios` on GICv2 and GICv3.
//! - `fuzz`: the cargo-fuzz targets, one per decoder a guest or the boot medium controls.
//! - `check`, `image`, `build`, `setup`: the pieces on their own.
//!
//! Run `cargo xtask help` for the options.
#![forbid(unsafe_code)]

mod bench;
mod deploy;
mod fuzz;
mod hostprof;
mod image;
mod linux;
mod pcprof;
mod qemu;
mod rpi4;
mod setup;
mod sign;
mod test;
mod xen;
mod xenpv;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

/// The workspace root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

const HELP: &str = "\
cargo xtask <command> [options]

commands:
  run-qemu-aarch64   build everything and boot a deployment on QEMU through U-Boot
      --platform P         qemu-virt (default) or rpi4 (QEMU raspi4b, from the SD card image)
      --gic 2|3            GIC version of the virtual board (default 2; the Pi 4 has GICv2)
      --deployment FILE    deployment file (default deployments/default.toml, deployments/rpi4.toml)
      --timeout SECONDS    stop QEMU after this long (exit status 124)
      --unchecked          skip the host-side plan check (the hypervisor still checks at boot)
      --sign KEY           boot it as a verified-boot disk signed with KEY (A/B slots; make a
                           development key with `cargo xtask keygen`)
      --keep-disk          boot the disk the previous run left (its slots and boot state, or
                           what hypctl update --persist wrote) instead of writing a new one
      --trace FILE         boot the hypervisor's trace build (QEMU virt): its defmt frames
                           (traps, hypercalls, injections, domain states) go to FILE through
                           the board's second UART; decode with `cargo xtask trace FILE`
  test               run every test: fmt, clippy, host unit tests, aarch64 builds, QEMU scenarios
      --no-qemu            skip the QEMU scenarios
  check FILE...      validate deployment files and print their partition plan
  image              build the boot disk image for a deployment (--deployment FILE, -o FILE);
                     --platform rpi4: the Raspberry Pi 4 SD card image (checked after writing);
                     --sign KEY [--gic 2|3] [--model board|qemu]: a verified-boot disk (QEMU
                     virt) or SD card (Pi 4; --model qemu: for QEMU raspi4b): one FIT image
                     (hypervisor, plan, domain images) whose configuration KEY.key signs, and
                     U-Boot's device tree with KEY.crt's public key, required
  keygen [--dir DIR] [--name NAME]
                     make development signing keys (default build/keys/ferrum-dev.key, .crt, and
                     the Ed25519 update key ferrum-dev-update.key)
  sign-update --domain NAME [--key KEY] IMAGE
                     write IMAGE.sig: what hypctl update NAME IMAGE needs on a signed deployment
  bench migrate [--gic 2|3] [--cycles N] [--max-downtime-ms MS]
                     live migration between two boards: rounds, pages, downtime (web, 16 MiB)
  bench boot [--runs N] [--gic 2|3] [--kernel 6.12|6.1] [--max-ratio R]
                     time Linux to its ready line natively and as the control domain
  bench hypercall [--gic 2|3] [--with-trace] [--trace FILE]
                     trap-path costs in instructions (null hypercall, distributor MMIO load,
                     event channel, virtual timer); --with-trace: also on the trace build (what
                     an event costs); --trace FILE: QEMU's instruction trace of each run
  bench pv [--gic 2|3] [--disk-mib N] [--tcp-mib N] [--runs N] [--blk LIST] [--net LIST] [--profile] [--pc-profile]
                     PV disk and network against direct access: N interleaved rounds (default 3),
                     median and spread of each figure and of its ratio to direct; --blk
                     nopersistent,noindirect / --net nocsum,nogso: the unikernel without those features;
                     --profile: also how busy each emulated CPU's host thread was in each figure;
                     --pc-profile: also which functions (hypervisor, kernels, unikernel) each
                     emulated CPU was in, sampled every 5 ms through QEMU's QMP socket
  fuzz [TARGET...] [--seconds N | --long]
                     run the cargo-fuzz targets (xenstore_wire, hypercall_args,
                     hypercall_dispatch, evtchn_ops, gnttab_ops, balloon, vgic_mmio, psci_esr,
                     host_dt, image_header, deployment_toml), N s each (default 60); --long: 10^7 executions each,
                     then the new inputs are merged into the committed corpus fuzz/corpus/
  soak [--minutes N] [--seed S] [--gic 2|3]
                     boot the hostile-guest scenario again and again for N minutes (default 10),
                     a new seed for the abuser each boot (printed; --seed S replays one)
  trace FILE [--elf ELF]
                     decode a trace FILE (run-qemu-aarch64 --trace) with defmt's decoder and
                     the last trace build's ELF (build/trace/hyp-el2-qemu-virt.elf)
  build              build the hypervisor and guest images
  setup              install missing host tools (QEMU, U-Boot, Rust targets)
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(cmd) = args.first() else {
        eprint!("{HELP}");
        return ExitCode::from(2);
    };
    let rest = &args[1..];
    let r = match cmd.as_str() {
        "run-qemu-aarch64" => qemu::cmd_run(rest),
        "test" => test::cmd_test(rest),
        "bench" => bench::cmd_bench(rest),
        "fuzz" => fuzz::cmd_fuzz(rest),
        "soak" => test::cmd_soak(rest),
        "check" => cmd_check(rest),
        "image" => cmd_image(rest),
        "keygen" => sign::cmd_keygen(rest),
        "sign-update" => sign::cmd_sign_update(rest),
        "trace" => cmd_trace(rest),
        "build" => build_all("qemu-virt").map(|_| 0),
        "setup" => setup::ensure_host_tools().map(|_| 0),
        "help" | "--help" | "-h" => {
            print!("{HELP}");
            Ok(0)
        }
        other => Err(format!("unknown command '{other}'\n\n{HELP}")),
    };
    match r {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}

/// Takes `--name VALUE` out of `args`.
pub fn opt(args: &[String], name: &str) -> Result<Option<String>, String> {
    match args.iter().position(|a| a == name) {
        None => Ok(None),
        Some(i) => args.get(i + 1).cloned().map(Some).ok_or_else(|| format!("{name} needs a value")),
    }
}

/// Rejects options the command does not know.
pub fn check_args(args: &[String], with_value: &[&str], flags: &[&str]) -> Result<(), String> {
    let mut i = 0;
    while i < args.len() {
        let a = args[i].as_str();
        if with_value.contains(&a) {
            i += 2;
        } else if flags.contains(&a) {
            i += 1;
        } else {
            return Err(format!("unknown option '{a}' (see cargo xtask help)"));
        }
    }
    Ok(())
}

/// The cargo that runs xtask (`$CARGO`), else `cargo`.
pub fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}

/// Runs cargo with `args` in the workspace root.
pub fn run_cargo(args: &[&str]) -> Result<(), String> {
    let st = Command::new(cargo()).args(args).current_dir(root()).status().map_err(|e| format!("cargo: {e}"))?;
    if st.success() {
        Ok(())
    } else {
        Err(format!("cargo {} failed", args.join(" ")))
    }
}

/// Builds an aarch64 binary crate and flattens it into `build/images/<name>.img`.
fn build_flat(pkg: &str, target: &str, features: &[&str], out_name: &str) -> Result<PathBuf, String> {
    let mut args = vec!["build", "--quiet", "--release", "-p", pkg, "--target", target];
    let feat = features.join(",");
    if !features.is_empty() {
        args.extend(["--no-default-features", "--features", &feat]);
    }
    run_cargo(&args)?;
    let elf = root().join("target").join(target).join("release").join(pkg);
    let bytes = std::fs::read(&elf).map_err(|e| format!("{}: {e}", elf.display()))?;
    let bin = image::elf_to_bin(&bytes).map_err(|e| format!("{}: {e}", elf.display()))?;
    let dir = root().join("build/images");
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let out = dir.join(format!("{out_name}.img"));
    std::fs::write(&out, bin).map_err(|e| e.to_string())?;
    Ok(out)
}

/// Builds the control domain's agent (a static `aarch64-unknown-linux-musl` binary).
pub fn build_agent() -> Result<PathBuf, String> {
    setup::ensure_targets()?;
    let target = "aarch64-unknown-linux-musl";
    run_cargo(&["build", "--quiet", "--release", "-p", "ferrum-agent", "--target", target])?;
    Ok(root().join("target").join(target).join("release").join("ferrum-agent"))
}

/// The default deployment of a platform (`None`: QEMU virt's).
pub fn default_deployment(platform: Option<&str>) -> Result<PathBuf, String> {
    match platform {
        None | Some("qemu-virt") => Ok(root().join("deployments/default.toml")),
        Some("rpi4") => Ok(root().join("deployments/rpi4.toml")),
        Some(p) => {
            let known: Vec<_> = platforms::ALL.iter().map(|p| p.name).collect();
            Err(format!("--platform {p}: unknown board (known: {})", known.join(", ")))
        }
    }
}

/// Decodes trace `file` with `elf`'s defmt table (the `ferrum-trace` host tool, built on
/// first use): one line per frame.
pub fn decode_trace(file: &Path, elf: &Path) -> Result<String, String> {
    if !elf.is_file() {
        return Err(format!("{}: no trace build yet (run-qemu-aarch64 --trace makes one)", elf.display()));
    }
    let out = Command::new(cargo())
        .args(["run", "--quiet", "--release", "-p", "ferrum-trace", "--"])
        .arg(elf)
        .arg(file)
        .current_dir(root())
        .output()
        .map_err(|e| format!("cargo: {e}"))?;
    let err = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        return Err(format!("decoding {}: {}", file.display(), err.trim()));
    }
    eprint!("{err}");
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `cargo xtask trace FILE [--elf ELF]`.
fn cmd_trace(args: &[String]) -> Result<u8, String> {
    let (file, rest) = match args.split_first() {
        Some((f, rest)) if !f.starts_with("--") => (PathBuf::from(f), rest),
        _ => return Err("trace: which file? (cargo xtask trace FILE [--elf ELF])".into()),
    };
    check_args(rest, &["--elf"], &[])?;
    let elf = opt(rest, "--elf")?.map_or_else(|| trace_elf("qemu-virt"), PathBuf::from);
    print!("{}", decode_trace(&file, &elf)?);
    Ok(0)
}

/// Whether deployments get the hypervisor's trace build (`run-qemu-aarch64 --trace`, the
/// trace scenarios, `bench hypercall --trace-build`); set for one boot at a time.
pub static TRACE_BUILD: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Builds the hypervisor for `platform` (its trace build while [`TRACE_BUILD`] is set).
pub fn build_hyp(platform: &str) -> Result<PathBuf, String> {
    if TRACE_BUILD.load(std::sync::atomic::Ordering::Relaxed) {
        return build_hyp_trace(platform).map(|(img, _)| img);
    }
    let feature = format!("platform-{platform}");
    build_flat("hyp-el2", "aarch64-unknown-none-softfloat", &[&feature], &format!("ferrum-{platform}"))
}

/// The ELF of the last trace build for `platform`: its `.defmt` table decodes the trace.
pub fn trace_elf(platform: &str) -> PathBuf {
    root().join("build/trace").join(format!("hyp-el2-{platform}.elf"))
}

/// Builds the hypervisor for `platform` with the defmt trace channel (feature `trace`, every
/// level kept: `DEFMT_LOG=trace`) in its own target directory, so the release build stays as
/// it is; returns the flat image and the ELF (copied to [`trace_elf`]).
pub fn build_hyp_trace(platform: &str) -> Result<(PathBuf, PathBuf), String> {
    let target = "aarch64-unknown-none-softfloat";
    let features = format!("platform-{platform},trace");
    let args = ["build", "--quiet", "--release", "-p", "hyp-el2", "--target", target, "--target-dir", "target/trace"];
    let st = Command::new(cargo())
        .args(args)
        .args(["--no-default-features", "--features", &features])
        .env("DEFMT_LOG", "trace")
        .current_dir(root())
        .status()
        .map_err(|e| format!("cargo: {e}"))?;
    if !st.success() {
        return Err(format!("cargo {} --features {features} failed", args.join(" ")));
    }
    let elf = root().join("target/trace").join(target).join("release/hyp-el2");
    let bytes = std::fs::read(&elf).map_err(|e| format!("{}: {e}", elf.display()))?;
    let bin = image::elf_to_bin(&bytes).map_err(|e| format!("{}: {e}", elf.display()))?;
    let kept = trace_elf(platform);
    std::fs::create_dir_all(kept.parent().unwrap()).map_err(|e| e.to_string())?;
    std::fs::write(&kept, &bytes).map_err(|e| format!("{}: {e}", kept.display()))?;
    let out = root().join("build/images").join(format!("ferrum-{platform}-trace.img"));
    std::fs::create_dir_all(out.parent().unwrap()).map_err(|e| e.to_string())?;
    std::fs::write(&out, bin).map_err(|e| e.to_string())?;
    Ok((out, kept))
}

/// Builds guests on demand for deployment files.
pub struct Guests;

impl deploy::ImageResolver for Guests {
    fn hypervisor(&mut self, platform: &platforms::Platform) -> Result<PathBuf, String> {
        build_hyp(platform.name)
    }
    fn guest(&mut self, name: &str) -> Result<PathBuf, String> {
        if !root().join("guests").join(name).join("Cargo.toml").is_file() {
            return Err(format!("no guest crate guests/{name}"));
        }
        build_flat(name, "aarch64-unknown-none", &[], name)
    }
    fn linux_kernel(&mut self, series: &str) -> Result<PathBuf, String> {
        Ok(linux::prepare(&root().join("build"), series)?.image)
    }
    fn linux_initramfs(&mut self, series: &str) -> Result<PathBuf, String> {
        Ok(linux::prepare(&root().join("build"), series)?.initramfs)
    }
}

fn build_all(platform: &str) -> Result<(), String> {
    setup::ensure_targets()?;
    let h = build_hyp(platform)?;
    let g = deploy::ImageResolver::guest(&mut Guests, "testguest")?;
    println!("{}\n{}", h.display(), g.display());
    Ok(())
}

/// Loads a deployment, building the images it names.
pub fn load_deployment(file: &Path, unchecked: bool) -> Result<deploy::Deployment, String> {
    deploy::load(file, &mut Guests, unchecked)
}

/// Writes the boot disk for a deployment; returns its path.
/// `extra` files are added to the boot partition (tests use it to hand the control domain its
/// self-test instructions).
pub fn write_disk(
    dep: &deploy::Deployment,
    out: Option<PathBuf>,
    extra: &[(String, Vec<u8>)],
    fresh_data: bool,
) -> Result<PathBuf, String> {
    let dir = root().join("build").join(dep.platform.name).join(&dep.name);
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let script = image::boot_script(dep);
    std::fs::write(dir.join("boot.cmd"), &script).map_err(|e| e.to_string())?;
    let mut files = vec![("boot.scr".to_string(), image::script_image(&script))];
    let rd = |p: &Path| std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()));
    files.push((dep.hyp.disk_name.clone(), rd(&dep.hyp.path)?));
    for d in &dep.domains {
        files.push((d.kernel.disk_name.clone(), rd(&d.kernel.path)?));
        if let Some(m) = &d.initrd {
            files.push((m.disk_name.clone(), rd(&m.path)?));
        }
    }
    let note = format!("ferrum boot partition of deployment '{}' ({} domains)\n", dep.name, dep.domains.len());
    files.push(("ferrum.txt".to_string(), note.into_bytes()));
    // For `hypctl update --persist`: which file on this partition is each domain's kernel, and
    // how many bytes its slot in the staging window holds.
    let mut manifest = String::from("# name kernel-file slot-bytes (written by cargo xtask; read by hypctl update)\n");
    for (i, d) in dep.domains.iter().enumerate() {
        manifest.push_str(&format!("{} {} {}\n", d.name, d.kernel.disk_name, deploy::kernel_slot(dep, i)));
    }
    files.push(("domains.txt".to_string(), manifest.into_bytes()));
    files.extend(extra.iter().cloned());
    let (layout, default_name) = match dep.platform.name {
        "rpi4" => {
            let fw = rpi4::fetch(&root().join("build"))?;
            files.extend(rpi4::boot_files(&fw, &dep.name)?);
            (image::SD_CARD, "sdcard.img")
        }
        _ => (image::VIRTIO_DISK, "disk.img"),
    };
    let disk = out.unwrap_or_else(|| dir.join(default_name));
    image::disk_image_with(&disk, &files, fresh_data, &layout)?;
    Ok(disk)
}

/// A verified-boot disk and what boots it.
pub struct SignedDisk {
    /// The disk (QEMU virt) or SD card image (Pi 4).
    pub disk: PathBuf,
    /// U-Boot's control device tree with the public key (QEMU: `-dtb`; on the Pi's card too).
    pub control_dtb: PathBuf,
    /// QEMU virt: U-Boot's environment (flash bank 1). Pi 4: the verified-boot U-Boot, its
    /// environment built in (also on the card).
    pub loader: PathBuf,
}

/// Writes the verified-boot disk of `dep` (QEMU virt with `gic`, or a Pi 4 SD card for the
/// board `model`): `slot-a.itb` signed with `key` (`<key>.key`, `.crt`), the boot-state record,
/// `ferrum.txt` and `extra`; for the Pi also its firmware, the verified-boot U-Boot and the
/// board tree with the public key.
pub fn write_signed_disk(
    dep: &deploy::Deployment,
    out: Option<PathBuf>,
    extra: &[(String, Vec<u8>)],
    fresh_data: bool,
    how: &sign::Signing,
) -> Result<SignedDisk, String> {
    let signed = sign::signed_image(dep, how)?;
    let dir = root().join("build").join(dep.platform.name).join(&dep.name);
    let note = format!("ferrum verified-boot partition of deployment '{}' ({} domains)\n", dep.name, dep.domains.len());
    // A/B slots: the deployment in slot A, active; slot B empty until an update.
    let state = hyp_core::abslot::BootState::default().format();
    let fit = signed.fit.len() as u64;
    let mut files = vec![
        ("slot-a.itb".to_string(), signed.fit),
        ("bootstate.env".to_string(), state.into_bytes()),
        ("ferrum.txt".to_string(), note.into_bytes()),
    ];
    files.extend(extra.iter().cloned());
    let rpi = dep.platform.name == "rpi4";
    let (base, name, loader) = if rpi {
        let build = root().join("build");
        let uboot = rpi4::uboot_verified(&build, &sign::rpi4_env())?;
        // The card's firmware with the verified-boot U-Boot and the board tree carrying the key.
        let fw = rpi4::Firmware { uboot: uboot.clone(), dtb: signed.control_dtb.clone(), ..rpi4::fetch(&build)? };
        files.extend(rpi4::boot_files(&fw, &dep.name)?);
        (image::SD_CARD, "sdcard.img", uboot)
    } else {
        (image::VIRTIO_DISK, "disk.img", dir.join("uboot-env.img"))
    };
    let disk = out.unwrap_or_else(|| dir.join(name));
    // Room for the other slot and a new copy of a slot while it is written.
    let payload: u64 = files.iter().map(|(_, b)| b.len() as u64).sum();
    let layout = image::DiskLayout { min_boot_mib: base.min_boot_mib.max(((payload + 2 * fit) >> 20) + 32), ..base };
    image::disk_image_with(&disk, &files, fresh_data, &layout)?;
    if !rpi {
        std::fs::write(&loader, sign::uboot_env_signed()).map_err(|e| e.to_string())?;
    }
    Ok(SignedDisk { disk, control_dtb: signed.control_dtb, loader })
}

/// Prints the partition plan of a deployment.
pub fn print_plan(dep: &deploy::Deployment) {
    println!("deployment '{}' ({}), platform {}:", dep.name, dep.file.display(), dep.platform.name);
    for d in &dep.domains {
        println!(
            "  {:<12} {:<9} pCPUs {:?}  RAM {} ({} MiB)  kernel {} ({} KiB)  on_fault={} on_poweroff={} on_crash={} on_reboot={} restart_limit={}/{}s{}",
            d.name,
            d.kind.as_str(),
            d.cpus,
            d.memory,
            d.memory.size >> 20,
            d.kernel.path.file_name().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default(),
            d.kernel.size / 1024,
            d.on_fault.as_str(),
            d.on_poweroff.as_str(),
            d.lifecycle.on_crash.as_str(),
            d.lifecycle.on_reboot.as_str(),
            d.lifecycle.restart_limit,
            d.lifecycle.restart_window,
            if d.lifecycle.autostart { "" } else { " autostart=false" }
        );
    }
}

fn cmd_check(args: &[String]) -> Result<u8, String> {
    if args.is_empty() {
        return Err("check needs one or more deployment files".into());
    }
    setup::ensure_targets()?;
    let mut bad = 0;
    for f in args {
        match load_deployment(Path::new(f), false) {
            Ok(dep) => {
                print_plan(&dep);
                println!("  ok");
            }
            Err(e) => {
                eprintln!("error: {e}");
                bad += 1;
            }
        }
    }
    Ok(if bad == 0 { 0 } else { 1 })
}

fn cmd_image(args: &[String]) -> Result<u8, String> {
    check_args(args, &["--deployment", "-o", "--platform", "--sign", "--gic", "--model"], &[])?;
    if let Some(key) = opt(args, "--sign")? {
        setup::ensure_host_tools()?;
        let gic: u8 = opt(args, "--gic")?.map_or(Ok(2), |v| match v.as_str() {
            "2" | "3" => Ok(v.parse().unwrap_or(2)),
            _ => Err(format!("--gic: '{v}' (2 or 3)")),
        })?;
        let platform = opt(args, "--platform")?;
        let file = match (opt(args, "--deployment")?, &platform) {
            (Some(f), _) => PathBuf::from(f),
            (None, p) => default_deployment(p.as_deref())?,
        };
        let dep = load_deployment(&file, false)?;
        let model = match opt(args, "--model")?.as_deref() {
            None | Some("board") => sign::Model::Board,
            Some("qemu") => sign::Model::Qemu,
            Some(m) => return Err(format!("--model: '{m}' (board or qemu)")),
        };
        print_plan(&dep);
        let s = write_signed_disk(
            &dep,
            opt(args, "-o")?.map(PathBuf::from),
            &[],
            false,
            &sign::Signing { key: Path::new(&key), gic, model, tamper: None },
        )?;
        if dep.platform.name == "rpi4" {
            for f in rpi4::check_sd(&s.disk)? {
                println!("checked: {f}");
            }
            println!("signed SD card image: {}", s.disk.display());
            println!("  its U-Boot (verifies the slots' signatures; environment built in): {}", s.loader.display());
            println!("  the board's device tree with the public key (on the card): {}", s.control_dtb.display());
            println!("flash it with: dd if={} of=/dev/sdX bs=4M conv=fsync status=progress", s.disk.display());
        } else {
            println!("signed disk image: {}", s.disk.display());
            println!("U-Boot's device tree with the public key (QEMU: -dtb): {}", s.control_dtb.display());
            println!("U-Boot's environment (QEMU: pflash unit 1): {}", s.loader.display());
        }
        return Ok(0);
    }
    setup::ensure_targets()?;
    let platform = opt(args, "--platform")?;
    let file = match (opt(args, "--deployment")?, &platform) {
        (Some(f), _) => PathBuf::from(f),
        (None, p) => default_deployment(p.as_deref())?,
    };
    let dep = load_deployment(&file, false)?;
    if let Some(p) = platform {
        if p != dep.platform.name {
            return Err(format!(
                "--platform {p}: {} is a deployment for platform {}",
                file.display(),
                dep.platform.name
            ));
        }
    }
    print_plan(&dep);
    let disk = write_disk(&dep, opt(args, "-o")?.map(PathBuf::from), &[], false)?;
    if dep.platform.name == "rpi4" {
        for f in rpi4::check_sd(&disk)? {
            println!("checked: {f}");
        }
        println!("SD card image: {}", disk.display());
        println!("flash it with: dd if={} of=/dev/sdX bs=4M conv=fsync status=progress", disk.display());
    } else {
        println!("disk image: {}", disk.display());
    }
    Ok(0)
}
