//! Raspberry Pi 4: the boot firmware from Debian packages, the SD card's boot partition
//! (`config.txt`, firmware, TF-A, U-Boot, device tree, boot script, hypervisor, domain images)
//! and the device tree QEMU's `raspi4b` machine boots U-Boot with.
//!
//! Everything comes from Debian: `raspi-firmware` (start4.elf, fixup4.dat; component
//! non-free-firmware, enabled here when missing), `arm-trusted-firmware` (rpi4/bl31.bin),
//! `u-boot-rpi` (rpi_arm64/u-boot.bin) and the kernel package's `bcm2711-rpi-4-b.dtb`. Packages
//! are downloaded and unpacked under `build/cache/`, never installed. A verified-boot card gets
//! its own U-Boot instead of `u-boot-rpi` (which has no FIT support): Debian's `u-boot` source
//! package built here with signature checking and the A/B commands built in
//! ([`uboot_verified`]).

use crate::linux::{fetch_unpack_spec, run};
use hyp_core::fdtedit::{self, Action, NodeEdit};
use hyp_core::fdtw::FdtWriter;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The board's device tree in the kernel package (and on the SD card).
pub const BOARD_DTB: &str = "bcm2711-rpi-4-b.dtb";
/// U-Boot build used on the Pi 4 (64-bit, Pi 3 and 4).
pub const UBOOT_FLAVOUR: &str = "rpi_arm64";
/// Compatible substrings of the nodes QEMU's raspi4b does not emulate: Linux faults on them
/// (synchronous external aborts in their probes), so the tree QEMU boots with disables them
/// (measured in docs: qemu-recipes §4).
pub const QEMU_MISSING: &[&str] = &[
    "l2-intc",
    "brcmstb-i2c",
    "hdmi",
    "hvs",
    "pixelvalve",
    "vc4",
    "vc5",
    "avs-monitor",
    "dsi",
    "txp",
    "v3d",
    "cec",
    "bcm2711-pcie",
    "rng200",
    "bcm2711-thermal",
    "genet",
];

/// Paths of the unpacked boot firmware.
#[derive(Clone)]
pub struct Firmware {
    /// VideoCore firmware (loads config.txt, the armstub, the "kernel" and the device tree).
    pub start4: PathBuf,
    /// Its memory-split companion.
    pub fixup4: PathBuf,
    /// TF-A BL31 for the Pi 4: the armstub, PSCI for the CPUs.
    pub bl31: PathBuf,
    /// U-Boot.
    pub uboot: PathBuf,
    /// The board's device tree from the kernel package.
    pub dtb: PathBuf,
}

const NON_FREE_FW: &str = "/etc/apt/sources.list.d/ferrum-non-free-firmware.sources";

/// The `Signed-By` of the deb822 entry for deb.debian.org's main suite, if there is one: a
/// second entry for the same archive must repeat it (apt refuses conflicting values).
fn debian_signed_by(suite: &str) -> Option<String> {
    let dir = std::fs::read_dir("/etc/apt/sources.list.d").ok()?;
    for e in dir.flatten() {
        let p = e.path();
        if p.extension().and_then(|x| x.to_str()) != Some("sources") || p == Path::new(NON_FREE_FW) {
            continue;
        }
        let text = std::fs::read_to_string(&p).unwrap_or_default();
        for stanza in text.split("\n\n") {
            let field = |k: &str| stanza.lines().find_map(|l| l.strip_prefix(k)).map(|v| v.trim().to_string());
            let uris = field("URIs:").unwrap_or_default();
            let suites = field("Suites:").unwrap_or_default();
            if uris.contains("deb.debian.org/debian")
                && !uris.contains("security")
                && suites.split_whitespace().any(|s| s == suite)
            {
                return field("Signed-By:");
            }
        }
    }
    None
}

/// Makes Debian's non-free-firmware component known to apt (raspi-firmware lives there).
fn ensure_non_free_firmware() -> Result<(), String> {
    let known = Command::new("apt-cache").args(["show", "raspi-firmware"]).output();
    if known.is_ok_and(|o| o.status.success() && !o.stdout.is_empty()) {
        return Ok(());
    }
    let suite = crate::setup::codename().unwrap_or_else(|| "bookworm".into());
    let mut entry =
        format!("Types: deb\nURIs: http://deb.debian.org/debian\nSuites: {suite}\nComponents: non-free-firmware\n");
    if let Some(k) = debian_signed_by(&suite) {
        entry.push_str(&format!("Signed-By: {k}\n"));
    }
    let manual = format!("printf '{}' > {NON_FREE_FW} && apt-get update", entry.replace('\n', "\\n"));
    if !crate::setup::is_root() {
        return Err(format!("raspi-firmware needs Debian's non-free-firmware component; as root run:\n  {manual}"));
    }
    println!("setup: enabling Debian's non-free-firmware component for raspi-firmware ({NON_FREE_FW})");
    std::fs::write(NON_FREE_FW, &entry).map_err(|e| format!("{NON_FREE_FW}: {e}; run as root:\n  {manual}"))?;
    println!("setup: apt-get update");
    run(Command::new("apt-get").args(["update", "-q"])).map_err(|e| format!("{e}\nrun as root:\n  {manual}"))?;
    Ok(())
}

/// Downloads and unpacks the Pi 4 boot firmware (once per machine), resolving the paths once per
/// xtask run (writing the card and starting QEMU both need them).
pub fn fetch(build: &Path) -> Result<Firmware, String> {
    static DONE: std::sync::OnceLock<Firmware> = std::sync::OnceLock::new();
    if let Some(f) = DONE.get() {
        return Ok(f.clone());
    }
    let f = fetch_uncached(build)?;
    Ok(DONE.get_or_init(|| f).clone())
}

fn fetch_uncached(build: &Path) -> Result<Firmware, String> {
    let cache = build.join("cache");
    let done = |dir: &Path| dir.join(".done").is_file();
    if !done(&cache.join("unpacked/raspi-firmware")) {
        ensure_non_free_firmware()?;
    }
    crate::linux::ensure_arm64_arch()?;
    let fw = fetch_unpack_spec(&cache, "raspi-firmware", "raspi-firmware")?;
    let atf = fetch_unpack_spec(&cache, "arm-trusted-firmware", "arm-trusted-firmware:arm64")?;
    let ub = fetch_unpack_spec(&cache, "u-boot-rpi", "u-boot-rpi:arm64")?;
    let kdir = crate::linux::kernel_tree(build, "6.12")?;
    let dtb = std::fs::read_dir(kdir.join("usr/lib"))
        .map_err(|e| e.to_string())?
        .flatten()
        .map(|e| e.path().join("broadcom").join(BOARD_DTB))
        .find(|p| p.is_file())
        .ok_or_else(|| format!("{BOARD_DTB} not found in the kernel package under {}", kdir.display()))?;
    let f = Firmware {
        start4: fw.join("usr/lib/raspi-firmware/start4.elf"),
        fixup4: fw.join("usr/lib/raspi-firmware/fixup4.dat"),
        bl31: atf.join("usr/lib/arm-trusted-firmware/rpi4/bl31.bin"),
        uboot: ub.join(format!("usr/lib/u-boot/{UBOOT_FLAVOUR}/u-boot.bin")),
        dtb,
    };
    for p in [&f.start4, &f.fixup4, &f.bl31, &f.uboot] {
        if !p.is_file() {
            return Err(format!("{}: missing from its Debian package", p.display()));
        }
    }
    Ok(f)
}

/// What the Pi 4's verified-boot U-Boot adds to Debian's `rpi_arm64` configuration: FIT images
/// with signature checking (RSA, SHA-256), FAT writes (the boot-state record) and `setexpr`;
/// the environment is built in (`env`, the A/B boot command) and never read from the card, so
/// a changed `uboot.env` on the card cannot change what boots.
const UBOOT_VERIFIED_CONFIG: &str = "\
CONFIG_FIT=y
CONFIG_FIT_SIGNATURE=y
CONFIG_FIT_VERBOSE=y
CONFIG_RSA=y
CONFIG_FAT_WRITE=y
CONFIG_CMD_SETEXPR=y
CONFIG_ENV_IS_NOWHERE=y
# CONFIG_ENV_IS_IN_FAT is not set
CONFIG_USE_DEFAULT_ENV_FILE=y
";

/// The `apt-get` options that read a private list of Debian's source archives (deb-src) under
/// `dir`, leaving the system's apt configuration alone.
fn apt_src_opts(dir: &Path) -> Vec<String> {
    vec![
        format!("-oDir::Etc::SourceList={}", dir.join("sources.list").display()),
        "-oDir::Etc::SourceParts=/nonexistent".into(),
        format!("-oDir::State::Lists={}", dir.join("lists").display()),
        format!("-oDir::Cache={}", dir.join("cache").display()),
        "-oAPT::Sandbox::User=root".into(),
        "-q".into(),
    ]
}

/// Debian's U-Boot source package, downloaded and unpacked under `build/cache/u-boot-src`
/// (once per machine); returns the source tree.
fn uboot_source(build: &Path) -> Result<PathBuf, String> {
    let dir = build.join("cache/u-boot-src");
    let tree = dir.join("tree");
    if tree.join(".done").is_file() {
        return Ok(tree);
    }
    let suite = crate::setup::codename().unwrap_or_else(|| "bookworm".into());
    for d in ["lists/partial", "cache/archives/partial", "dl"] {
        std::fs::create_dir_all(dir.join(d)).map_err(|e| format!("{}: {e}", dir.join(d).display()))?;
    }
    let keyring = "/usr/share/keyrings/debian-archive-keyring.gpg";
    let list = format!(
        "deb-src [signed-by={keyring}] http://deb.debian.org/debian {suite} main\n\
         deb-src [signed-by={keyring}] http://deb.debian.org/debian {suite}-updates main\n\
         deb-src [signed-by={keyring}] http://deb.debian.org/debian-security {suite}-security main\n"
    );
    std::fs::write(dir.join("sources.list"), list).map_err(|e| e.to_string())?;
    let opts = apt_src_opts(&dir);
    println!("u-boot: fetching Debian's u-boot source package ({suite}; private package lists in {})", dir.display());
    run(Command::new("apt-get").args(&opts).arg("update"))
        .map_err(|e| format!("{e}\n(the source lists come from deb.debian.org; check the network)"))?;
    run(Command::new("apt-get").current_dir(dir.join("dl")).args(&opts).args(["source", "--download-only", "u-boot"]))?;
    let dsc = std::fs::read_dir(dir.join("dl"))
        .map_err(|e| e.to_string())?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "dsc"))
        .ok_or("apt-get source left no .dsc")?;
    let _ = std::fs::remove_dir_all(&tree);
    println!("u-boot: dpkg-source -x {}", dsc.display());
    run(Command::new("dpkg-source").arg("-x").arg(&dsc).arg(&tree))?;
    std::fs::write(tree.join(".done"), dsc.file_name().unwrap_or_default().as_encoded_bytes())
        .map_err(|e| e.to_string())?;
    Ok(tree)
}

/// U-Boot for the Pi 4 that verifies signed deployments: Debian's U-Boot source (the same
/// release as `u-boot-rpi`, whose build has no FIT support at all) built for `rpi_arm64` with
/// [`UBOOT_VERIFIED_CONFIG`] and `env` (U-Boot's built-in environment: `name=value` lines) by
/// Debian's cross compiler. Built once per source, configuration and environment, under
/// `build/cache/u-boot-verified/<digest>/`; returns its `u-boot.bin`.
pub fn uboot_verified(build: &Path, env: &str) -> Result<PathBuf, String> {
    let tree = uboot_source(build)?;
    let source = std::fs::read_to_string(tree.join(".done")).unwrap_or_default();
    let digest = hyp_core::verify::sha256(format!("{source}\n{UBOOT_VERIFIED_CONFIG}\n{env}").as_bytes());
    let tag: String = digest[..6].iter().map(|b| format!("{b:02x}")).collect();
    let out = build.join("cache/u-boot-verified").join(tag);
    let bin = out.join("u-boot.bin");
    if bin.is_file() {
        return Ok(bin);
    }
    std::fs::create_dir_all(&out).map_err(|e| e.to_string())?;
    let env_file = out.join("ferrum-env.txt");
    std::fs::write(&env_file, env).map_err(|e| e.to_string())?;
    let base = std::fs::read_to_string(tree.join(format!("configs/{UBOOT_FLAVOUR}_defconfig")))
        .map_err(|e| format!("{UBOOT_FLAVOUR}_defconfig: {e}"))?;
    let defconfig = format!(
        "{base}\n# ferrum: verified boot (xtask/src/rpi4.rs)\n{UBOOT_VERIFIED_CONFIG}CONFIG_DEFAULT_ENV_FILE=\"{}\"\n",
        env_file.display()
    );
    std::fs::write(tree.join("configs/ferrum_rpi_verified_defconfig"), defconfig).map_err(|e| e.to_string())?;
    // Reproducible: the build date is the source package's.
    let epoch = run(Command::new("dpkg-parsechangelog").current_dir(&tree).args(["-STimestamp"]))
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "0".into());
    let jobs = std::thread::available_parallelism().map_or(2, |n| n.get()).to_string();
    println!(
        "u-boot: building U-Boot {UBOOT_FLAVOUR} with FIT signature checking in {} (about a minute)",
        out.display()
    );
    let make = |target: &str| {
        run(Command::new("make")
            .current_dir(&tree)
            .env("SOURCE_DATE_EPOCH", &epoch)
            .arg(format!("O={}", out.display()))
            .args(["CROSS_COMPILE=aarch64-linux-gnu-", "-j", &jobs, target]))
    };
    make("ferrum_rpi_verified_defconfig")?;
    make("u-boot.bin")
        .map_err(|e| format!("U-Boot build: {}", e.lines().rev().take(8).collect::<Vec<_>>().join(" | ")))?;
    if !bin.is_file() {
        return Err(format!("U-Boot build left no {}", bin.display()));
    }
    Ok(bin)
}

/// The firmware's configuration file.
pub fn config_txt(deployment: &str) -> String {
    format!(
        "# ferrum on the Raspberry Pi 4: deployment '{deployment}' (written by cargo xtask image)\n\
         [pi4]\n\
         # 64-bit: the firmware starts the armstub at EL3 in AArch64.\n\
         arm_64bit=1\n\
         # Serial console on GPIO 14 (TX) / 15 (RX), 115200 8N1 (the mini-UART; fixes the core clock).\n\
         enable_uart=1\n\
         # Route interrupts through the GIC-400 (the hypervisor virtualizes it).\n\
         enable_gic=1\n\
         # TF-A BL31 as the armstub: PSCI, so CPUs start and the board powers off through firmware.\n\
         armstub=bl31.bin\n\
         # U-Boot runs in place of a kernel; it runs boot.scr, which boots the hypervisor.\n\
         kernel=u-boot.bin\n\
         device_tree={BOARD_DTB}\n\
         # The GPU only needs the minimum: the hypervisor and the domains get the rest.\n\
         gpu_mem=64\n\
         [all]\n"
    )
}

/// Keys `config.txt` must set (checked by the SD image tests).
pub const CONFIG_KEYS: &[(&str, &str)] = &[
    ("arm_64bit", "1"),
    ("enable_uart", "1"),
    ("enable_gic", "1"),
    ("armstub", "bl31.bin"),
    ("kernel", "u-boot.bin"),
    ("device_tree", BOARD_DTB),
];

/// The board tree as QEMU's raspi4b should boot U-Boot with it: the nodes QEMU does not
/// emulate are disabled (what the real firmware hands over describes real devices).
pub fn qemu_dtb(board: &[u8]) -> Result<Vec<u8>, String> {
    let fdt = fdt::Fdt::new(board).map_err(|e| format!("{BOARD_DTB}: {e:?}"))?;
    let mut w = FdtWriter::new();
    for r in fdt.memory_reservations() {
        w.reserve(r.address() as u64, r.size() as u64);
    }
    w.begin_node("");
    fdtedit::copy_root(&fdt, &mut w, &NodeEdit::default(), &mut |_, n| {
        let missing = n.compatible().is_some_and(|c| c.all().any(|s| QEMU_MISSING.iter().any(|m| s.contains(m))));
        if missing {
            Action::Edit(NodeEdit::disable())
        } else if fdtedit::compatible_with(n, &["brcm,bcm4329-fmac"]) {
            // QEMU puts the SD card where the real board has its Wi-Fi chip (the Arasan SDHCI)
            // and has no Wi-Fi power sequencer (its GPIOs sit behind firmware QEMU lacks).
            Action::Drop
        } else if fdtedit::compatible_with(n, &["brcm,bcm2835-sdhci"]) {
            Action::Edit(NodeEdit { set: Vec::new(), remove: vec!["mmc-pwrseq"] })
        } else {
            Action::Copy
        }
    });
    w.end_node();
    w.finish(0).ok_or_else(|| "unbalanced tree".to_string())
}

/// The firmware files of the boot partition: (name on the card, contents).
pub fn boot_files(fw: &Firmware, deployment: &str) -> Result<Vec<(String, Vec<u8>)>, String> {
    let rd = |p: &Path| std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()));
    Ok(vec![
        ("config.txt".into(), config_txt(deployment).into_bytes()),
        ("start4.elf".into(), rd(&fw.start4)?),
        ("fixup4.dat".into(), rd(&fw.fixup4)?),
        ("bl31.bin".into(), rd(&fw.bl31)?),
        ("u-boot.bin".into(), rd(&fw.uboot)?),
        (BOARD_DTB.into(), rd(&fw.dtb)?),
    ])
}

/// The structural check of an SD card image: MBR with a bootable FAT32 boot partition and a
/// Linux data partition inside a power-of-two image; the boot partition holds the firmware,
/// TF-A, U-Boot, the board DTB (a device tree), `config.txt` with the keys the boot needs, a
/// valid boot script, the hypervisor (an arm64 Image) and every file the script loads, each of
/// a sane size. Returns one line per fact checked.
pub fn check_sd(path: &Path) -> Result<Vec<String>, String> {
    use std::io::Read;
    let img = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut facts = Vec::new();
    if !img.len().is_power_of_two() {
        return Err(format!("image size {} is not a power of two (QEMU's SD cards must be)", img.len()));
    }
    facts.push(format!("image: {} MiB, a power of two", img.len() >> 20));
    let parts: Vec<_> = crate::image::mbr_partitions(&img)
        .ok_or("no MBR signature")?
        .iter()
        .map(|p| (p.kind, p.boot, p.lba, p.sectors))
        .collect();
    let [(t0, boot, lba0, n0), (t1, _, lba1, n1)] = parts[..] else {
        return Err(format!("expected 2 partitions, found {}", parts.len()));
    };
    if t0 != 0x0c || !boot {
        return Err(format!("partition 1: type {t0:#x} (bootable: {boot}), want a bootable FAT32 LBA (0x0c)"));
    }
    if t1 != 0x83 || lba1 < lba0 + n0 || (lba1 + n1) * 512 > img.len() as u64 {
        return Err(format!("partition 2: type {t1:#x} at {lba1}+{n1}: want Linux (0x83) after the boot partition"));
    }
    facts.push(format!(
        "MBR: bootable FAT32 partition {} MiB, data partition {} MiB",
        (n0 * 512) >> 20,
        (n1 * 512) >> 20
    ));
    let part = img[(lba0 * 512) as usize..((lba0 + n0) * 512) as usize].to_vec();
    let mut cur = std::io::Cursor::new(part);
    let fs = fatfs::FileSystem::new(&mut cur, fatfs::FsOptions::new()).map_err(|e| format!("boot partition: {e}"))?;
    if fs.fat_type() != fatfs::FatType::Fat32 {
        return Err(format!("boot partition is {:?}, not FAT32", fs.fat_type()));
    }
    let root = fs.root_dir();
    let read = |name: &str| -> Result<Vec<u8>, String> {
        let mut f = root.open_file(name).map_err(|e| format!("boot partition: {name}: {e}"))?;
        let mut b = Vec::new();
        f.read_to_end(&mut b).map_err(|e| format!("{name}: {e}"))?;
        Ok(b)
    };
    let sized = |name: &str, min: usize, max: usize| -> Result<Vec<u8>, String> {
        let b = read(name)?;
        if b.len() < min || b.len() > max {
            return Err(format!("{name}: {} bytes, expected {min}..{max}", b.len()));
        }
        Ok(b)
    };
    sized("start4.elf", 1 << 20, 8 << 20)?;
    sized("fixup4.dat", 1 << 10, 64 << 10)?;
    sized("bl31.bin", 16 << 10, 512 << 10)?;
    let ub = sized("u-boot.bin", 256 << 10, 4 << 20)?;
    if !ub.windows(6).any(|w| w == b"U-Boot") {
        return Err("u-boot.bin does not look like U-Boot".into());
    }
    let dtb = sized(BOARD_DTB, 16 << 10, 1 << 20)?;
    fdt::Fdt::new(&dtb).map_err(|e| format!("{BOARD_DTB}: not a device tree: {e:?}"))?;
    facts
        .push("firmware: start4.elf, fixup4.dat, bl31.bin, u-boot.bin, bcm2711-rpi-4-b.dtb present, sizes sane".into());
    let cfg = String::from_utf8(read("config.txt")?).map_err(|_| "config.txt: not text")?;
    for (k, v) in CONFIG_KEYS {
        let found = cfg.lines().map(str::trim).filter(|l| !l.starts_with('#')).any(|l| l == format!("{k}={v}"));
        if !found {
            return Err(format!("config.txt: missing {k}={v}"));
        }
    }
    facts.push(format!(
        "config.txt: {}",
        CONFIG_KEYS.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(" ")
    ));
    if root.open_file("boot.scr").is_err() {
        facts.extend(check_signed(&dtb, &read("slot-a.itb")?, &read("bootstate.env")?)?);
        return Ok(facts);
    }
    let scr = read("boot.scr")?;
    let script = crate::image::script_text(&scr).map_err(|e| format!("boot.scr: {e}"))?;
    let hyp = read("ferrum.img")?;
    if hyp.len() < 64 || &hyp[56..60] != b"ARM\x64" {
        return Err("ferrum.img: no arm64 Image header".into());
    }
    let mut loaded = 0;
    for l in script.lines().filter(|l| l.starts_with("load ")) {
        let name = l.split_whitespace().nth(4).ok_or_else(|| format!("boot.scr: bad line {l}"))?;
        if read(name)?.is_empty() {
            return Err(format!("{name}: empty"));
        }
        loaded += 1;
    }
    if !script.contains("booti ") {
        return Err("boot.scr: no booti".into());
    }
    facts.push(format!(
        "boot.scr: valid script image; the hypervisor (arm64 Image) and all {loaded} files it loads are present"
    ));
    Ok(facts)
}

/// The verified-boot part of a card (no boot script): the board tree carries a required
/// signing key, slot A is a FIT whose configuration is signed with it, the boot-state record
/// parses.
fn check_signed(dtb: &[u8], slot: &[u8], state: &[u8]) -> Result<Vec<String>, String> {
    let tree = fdt::Fdt::new(dtb).map_err(|e| format!("{BOARD_DTB}: {e:?}"))?;
    let key = tree
        .find_node("/signature")
        .and_then(|s| s.children().find(|k| k.name.starts_with("key-")))
        .ok_or(format!("{BOARD_DTB}: no /signature/key-* node (the public key U-Boot checks with)"))?;
    if key.property("required").and_then(|p| p.as_str()) != Some("conf") {
        return Err(format!("{BOARD_DTB}: /signature/{} is not required = \"conf\"", key.name));
    }
    let hint = key.property("key-name-hint").and_then(|p| p.as_str()).unwrap_or("");
    let fit = fdt::Fdt::new(slot).map_err(|e| format!("slot-a.itb: not a FIT image: {e:?}"))?;
    let sig =
        fit.find_node("/configurations/conf-1/signature-1").ok_or("slot-a.itb: configuration conf-1 is not signed")?;
    if sig.property("key-name-hint").and_then(|p| p.as_str()) != Some(hint) || sig.property("value").is_none() {
        return Err(format!("slot-a.itb: conf-1 is not signed with the card's key '{hint}'"));
    }
    let state = hyp_core::abslot::BootState::parse(&String::from_utf8_lossy(state));
    Ok(vec![
        format!("verified boot: {BOARD_DTB} requires key '{hint}'; slot-a.itb's configuration is signed with it"),
        format!("bootstate.env: active slot {}", state.active.as_str()),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_has_every_key() {
        let c = config_txt("x");
        for (k, v) in CONFIG_KEYS {
            assert!(c.lines().any(|l| l == format!("{k}={v}")), "{k}");
        }
    }
}
