//! Host set-up: finds the tools a run needs and installs what is missing from Debian (QEMU ≥ 9
//! from bookworm-backports, U-Boot for QEMU) and rustup (the aarch64 targets), saying what it
//! installs. When it cannot install (not root, no apt-get), it fails with the exact command.

use std::path::Path;
use std::process::Command;

/// U-Boot for QEMU's arm64 virt board, from Debian's `u-boot-qemu`.
pub const UBOOT_QEMU: &str = "/usr/lib/u-boot/qemu_arm64/u-boot.bin";
pub const BACKPORTS_LIST: &str = "/etc/apt/sources.list.d/ferrum-bookworm-backports.list";
const TARGETS: [&str; 3] = ["aarch64-unknown-none-softfloat", "aarch64-unknown-none", "aarch64-unknown-linux-musl"];

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

/// Makes sure QEMU, U-Boot and the Rust targets are present.
pub fn ensure_host_tools() -> Result<(), String> {
    let mut apt: Vec<(&str, bool)> = Vec::new();
    let qemu_ok = qemu_major().is_some_and(|v| v >= 9);
    if !qemu_ok {
        apt.push(("qemu-system-arm", true));
    }
    if !Path::new(UBOOT_QEMU).is_file() {
        apt.push(("u-boot-qemu", false));
    }
    if !apt.is_empty() {
        let suite = codename().unwrap_or_else(|| "bookworm".into());
        let names: Vec<&str> = apt.iter().map(|a| a.0).collect();
        let manual = format!(
            "echo 'deb http://deb.debian.org/debian {suite}-backports main' > {BACKPORTS_LIST} && apt-get update && apt-get install -y -t {suite}-backports {}",
            names.join(" ")
        );
        if !is_root() || !have("apt-get") {
            return Err(format!(
                "missing host packages: {} (QEMU ≥ 9 comes from {suite}-backports). Install them as root with:\n  {manual}",
                names.join(", ")
            ));
        }
        eprintln!("xtask: installing missing host packages: {}", names.join(", "));
        let need_bpo = apt.iter().any(|a| a.1);
        if need_bpo && !backports_enabled(&suite) {
            run(
                &format!("enabling {suite}-backports (QEMU ≥ 9)"),
                &format!("echo 'deb http://deb.debian.org/debian {suite}-backports main' > {BACKPORTS_LIST}"),
            )?;
        }
        run("updating the package lists", "apt-get update -q")?;
        let bpo: Vec<&str> = apt.iter().filter(|a| a.1).map(|a| a.0).collect();
        let plain: Vec<&str> = apt.iter().filter(|a| !a.1).map(|a| a.0).collect();
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
        if qemu_major().is_none_or(|v| v < 9) {
            return Err(format!("qemu-system-aarch64 ≥ 9 is still missing; install it with:\n  {manual}"));
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

/// Installs the rustup targets the aarch64 crates need.
pub fn ensure_targets() -> Result<(), String> {
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
    let missing: Vec<&str> = TARGETS.iter().copied().filter(|t| !installed.lines().any(|l| l.trim() == *t)).collect();
    if !missing.is_empty() {
        run(
            &format!("installing Rust targets {}", missing.join(" ")),
            &format!("rustup target add {}", missing.join(" ")),
        )?;
    }
    Ok(())
}
