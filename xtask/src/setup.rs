//! Host set-up: the one list of host prerequisites every command and test needs ([`PREREQS`]:
//! QEMU ≥ 9 from bookworm-backports, QEMU's option ROMs from `ipxe-qemu`, U-Boot for QEMU, a C++
//! compiler for the fuzz targets' libFuzzer) and the rustup targets. [`ensure_host_tools`]
//! checks each, installs what is missing from Debian saying what it installs, and checks again;
//! when it cannot install (not root, no apt-get) it fails naming every missing item and the
//! exact command. [`preflight`] is the check alone, printed one line per item, which
//! `cargo xtask test` runs before any test so a missing tool is reported up front, not as a
//! scenario failure.
//!
//! Debian installs QEMU here with `--no-install-recommends` (so nothing unrelated comes along);
//! the recommends a test needs are therefore listed explicitly (`ipxe-qemu`: `efi-virtio.rom`,
//! which QEMU loads for any virtio-net PCI NIC, including the default NIC of a run without
//! `-nic none`).

use std::path::{Path, PathBuf};
use std::process::Command;

/// U-Boot for QEMU's arm64 virt board, from Debian's `u-boot-qemu`.
pub const UBOOT_QEMU: &str = "/usr/lib/u-boot/qemu_arm64/u-boot.bin";
pub const BACKPORTS_LIST: &str = "/etc/apt/sources.list.d/ferrum-bookworm-backports.list";
const TARGETS: [&str; 3] = ["aarch64-unknown-none-softfloat", "aarch64-unknown-none", "aarch64-unknown-linux-musl"];

/// One host prerequisite: what it is, how to tell it is there, and the Debian package that
/// brings it (`backports`: from `<suite>-backports`).
pub struct Prereq {
    pub what: &'static str,
    pub package: &'static str,
    pub backports: bool,
    pub present: fn() -> bool,
}

/// Everything on the host that a command or test of this project uses, besides Debian's base
/// system (apt-get, dpkg-deb) and rustup.
pub const PREREQS: &[Prereq] = &[
    Prereq { what: "qemu-system-aarch64 >= 9", package: "qemu-system-arm", backports: true, present: qemu_ok },
    Prereq { what: "U-Boot for QEMU virt (u-boot.bin)", package: "u-boot-qemu", backports: false, present: uboot_ok },
    Prereq { what: "QEMU option ROM efi-virtio.rom", package: "ipxe-qemu", backports: false, present: roms_ok },
    Prereq {
        what: "C++ compiler (libFuzzer for the fuzz targets)",
        package: "g++",
        backports: false,
        present: || have("c++"),
    },
    Prereq {
        what: "mkimage (signed FIT images)",
        package: "u-boot-tools",
        backports: false,
        present: || have("mkimage"),
    },
    Prereq {
        what: "dtc (device trees for signed images)",
        package: "device-tree-compiler",
        backports: false,
        present: || have("dtc"),
    },
    Prereq { what: "openssl (signing keys)", package: "openssl", backports: false, present: || have("openssl") },
    // The Pi 4's verified-boot U-Boot, built from Debian's u-boot source package
    // (`rpi4::uboot_verified`): Debian's u-boot-rpi has no FIT support.
    Prereq {
        what: "aarch64 cross compiler (the Pi 4's U-Boot)",
        package: "gcc-aarch64-linux-gnu",
        backports: false,
        present: || have("aarch64-linux-gnu-gcc"),
    },
    Prereq { what: "make (the Pi 4's U-Boot)", package: "make", backports: false, present: || have("make") },
    Prereq { what: "bison (the Pi 4's U-Boot)", package: "bison", backports: false, present: || have("bison") },
    Prereq { what: "flex (the Pi 4's U-Boot)", package: "flex", backports: false, present: || have("flex") },
    Prereq { what: "bc (the Pi 4's U-Boot)", package: "bc", backports: false, present: || have("bc") },
    Prereq { what: "xxd (the Pi 4's U-Boot environment)", package: "xxd", backports: false, present: || have("xxd") },
    Prereq {
        what: "OpenSSL headers (the Pi 4's U-Boot tools)",
        package: "libssl-dev",
        backports: false,
        present: ssl_dev_ok,
    },
    Prereq {
        what: "dpkg-source (unpacks the U-Boot source package)",
        package: "dpkg-dev",
        backports: false,
        present: || have("dpkg-source"),
    },
];

fn ssl_dev_ok() -> bool {
    Path::new("/usr/include/openssl/evp.h").is_file()
}

fn qemu_ok() -> bool {
    qemu_major().is_some_and(|v| v >= 9)
}

fn uboot_ok() -> bool {
    Path::new(UBOOT_QEMU).is_file()
}

/// QEMU's firmware search path (`-L help`), else Debian's default.
fn qemu_data_dirs() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = Command::new("qemu-system-aarch64")
        .args(["-L", "help"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).lines().map(|l| PathBuf::from(l.trim())).collect())
        .unwrap_or_default();
    dirs.push("/usr/share/qemu".into());
    dirs
}

fn roms_ok() -> bool {
    // `is_file` follows the symlink qemu-system-data makes into ipxe-qemu's files.
    qemu_data_dirs().iter().any(|d| d.join("efi-virtio.rom").is_file())
}

/// The prerequisites missing now.
pub fn missing() -> Vec<&'static Prereq> {
    PREREQS.iter().filter(|p| !(p.present)()).collect()
}

/// Prints each prerequisite's state; fails naming the missing ones and how to install them.
pub fn preflight() -> Result<(), String> {
    let mut bad = Vec::new();
    for p in PREREQS {
        let ok = (p.present)();
        println!("xtask: prerequisite {:<48} {}", p.what, if ok { "ok" } else { "MISSING" });
        if !ok {
            bad.push(p);
        }
    }
    let targets = missing_targets()?;
    for t in TARGETS {
        let ok = !targets.contains(&t);
        println!("xtask: prerequisite {:<48} {}", format!("Rust target {t}"), if ok { "ok" } else { "MISSING" });
    }
    if bad.is_empty() && targets.is_empty() {
        return Ok(());
    }
    let mut msg = String::from("host prerequisites missing:");
    for p in &bad {
        msg += &format!("\n  {} (Debian package {})", p.what, p.package);
    }
    for t in &targets {
        msg += &format!("\n  Rust target {t}");
    }
    msg += "\ninstall them with `cargo xtask setup` (as root), or by hand:";
    if !bad.is_empty() {
        msg += &format!("\n  {}", manual_command(&bad));
    }
    if !targets.is_empty() {
        msg += &format!("\n  rustup target add {}", targets.join(" "));
    }
    Err(msg)
}

fn manual_command(list: &[&Prereq]) -> String {
    let suite = codename().unwrap_or_else(|| "bookworm".into());
    let bpo: Vec<&str> = list.iter().filter(|p| p.backports).map(|p| p.package).collect();
    let plain: Vec<&str> = list.iter().filter(|p| !p.backports).map(|p| p.package).collect();
    let mut cmd = String::new();
    if !bpo.is_empty() {
        cmd += &format!("echo 'deb http://deb.debian.org/debian {suite}-backports main' > {BACKPORTS_LIST} && ");
    }
    cmd += "apt-get update";
    if !bpo.is_empty() {
        cmd += &format!(" && apt-get install -y -t {suite}-backports {}", bpo.join(" "));
    }
    if !plain.is_empty() {
        cmd += &format!(" && apt-get install -y {}", plain.join(" "));
    }
    cmd
}

fn have(cmd: &str) -> bool {
    Command::new("sh").arg("-c").arg(format!("command -v {cmd} >/dev/null 2>&1")).status().is_ok_and(|s| s.success())
}

fn qemu_major() -> Option<u32> {
    let out = Command::new("qemu-system-aarch64").arg("--version").output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let v = text.split_whitespace().skip_while(|w| *w != "version").nth(1)?;
    v.split('.').next()?.parse().ok()
}

pub fn is_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

fn run(desc: &str, cmd: &str) -> Result<(), String> {
    eprintln!("xtask: {desc}\nxtask:   $ {cmd}");
    let st = Command::new("sh").arg("-c").arg(cmd).status().map_err(|e| format!("{cmd}: {e}"))?;
    if st.success() {
        Ok(())
    } else {
        Err(format!("'{cmd}' failed ({st}); run it by hand as root, then retry"))
    }
}

/// Debian suite codename of this machine, if it is Debian.
pub fn codename() -> Option<String> {
    let t = std::fs::read_to_string("/etc/os-release").ok()?;
    t.lines().find_map(|l| l.strip_prefix("VERSION_CODENAME=")).map(|s| s.trim_matches('"').to_string())
}

/// Makes sure every prerequisite and Rust target is present, installing what is missing.
pub fn ensure_host_tools() -> Result<(), String> {
    let need = missing();
    if !need.is_empty() {
        let suite = codename().unwrap_or_else(|| "bookworm".into());
        let names: Vec<&str> = need.iter().map(|p| p.package).collect();
        let manual = manual_command(&need);
        if !is_root() || !have("apt-get") {
            return Err(format!(
                "missing host packages: {} (QEMU ≥ 9 comes from {suite}-backports). Install them as root with:\n  {manual}",
                names.join(", ")
            ));
        }
        for p in &need {
            eprintln!("xtask: installing {} for: {}", p.package, p.what);
        }
        if need.iter().any(|p| p.backports) && !backports_enabled(&suite) {
            run(
                &format!("enabling {suite}-backports (QEMU ≥ 9)"),
                &format!("echo 'deb http://deb.debian.org/debian {suite}-backports main' > {BACKPORTS_LIST}"),
            )?;
        }
        run("updating the package lists", "apt-get update -q")?;
        let bpo: Vec<&str> = need.iter().filter(|p| p.backports).map(|p| p.package).collect();
        let plain: Vec<&str> = need.iter().filter(|p| !p.backports).map(|p| p.package).collect();
        if !bpo.is_empty() {
            run(
                &format!("installing {} from {suite}-backports", bpo.join(" ")),
                &format!("DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends -t {suite}-backports {}", bpo.join(" ")),
            )?;
        }
        if !plain.is_empty() {
            run(
                &format!("installing {}", plain.join(" ")),
                &format!(
                    "DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends {}",
                    plain.join(" ")
                ),
            )?;
        }
        let still: Vec<&str> = missing().iter().map(|p| p.what).collect();
        if !still.is_empty() {
            return Err(format!(
                "still missing after installing: {}; install by hand with:\n  {manual}",
                still.join(", ")
            ));
        }
    }
    ensure_targets()
}

pub fn backports_enabled(suite: &str) -> bool {
    let needle = format!("{suite}-backports");
    let mut texts = vec![std::fs::read_to_string("/etc/apt/sources.list").unwrap_or_default()];
    if let Ok(rd) = std::fs::read_dir("/etc/apt/sources.list.d") {
        for e in rd.flatten() {
            texts.push(std::fs::read_to_string(e.path()).unwrap_or_default());
        }
    }
    texts.iter().any(|t| t.lines().any(|l| !l.trim_start().starts_with('#') && l.contains(&needle)))
}

/// The rustup targets not installed yet.
fn missing_targets() -> Result<Vec<&'static str>, String> {
    let out = Command::new("rustup").args(["target", "list", "--installed"]).output();
    let installed = match out {
        Ok(o) => String::from_utf8_lossy(&o.stdout).into_owned(),
        Err(_) => {
            return Err(format!(
                "rustup not found; install the targets with:\n  rustup target add {}",
                TARGETS.join(" ")
            ))
        }
    };
    Ok(TARGETS.iter().copied().filter(|t| !installed.lines().any(|l| l.trim() == *t)).collect())
}

/// Installs the rustup targets the aarch64 crates need.
pub fn ensure_targets() -> Result<(), String> {
    let missing = missing_targets()?;
    if !missing.is_empty() {
        run(
            &format!("installing Rust targets {}", missing.join(" ")),
            &format!("rustup target add {}", missing.join(" ")),
        )?;
    }
    Ok(())
}
