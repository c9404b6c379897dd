//! Verified boot with the boot loader users already have: a deployment packed into one FIT
//! image whose configuration is signed (RSA-2048, SHA-256), and U-Boot's control device tree
//! carrying the public key, marked `required`, so U-Boot refuses an unsigned or altered
//! deployment before anything of it runs.
//!
//! The FIT holds the hypervisor (the `kernel`, booted as Linux would be: x0 = the device tree),
//! the plan (the board's device tree with the `/chosen` domain nodes the boot script writes
//! otherwise, so the plan is signed too) and every domain image (`loadables`, each at its
//! address in the staging window). Its one configuration signs all of them. QEMU virt: the
//! board's tree comes from QEMU itself (`dumpdtb`, the same machine as the boot), the key node
//! goes into a copy of it (`mkimage -K`), which QEMU then hands U-Boot with `-dtb`; U-Boot's
//! environment (the board's flash, not the disk) loads the slot's FIT and runs `bootm` on it.
//! Raspberry Pi 4: the board's tree from the kernel package (or QEMU raspi4b's version of it,
//! [`Model`]), the key node in the card's copy, which the firmware hands U-Boot; the A/B
//! commands are built into the card's own U-Boot (`rpi4::uboot_verified`). On neither board
//! does a script from the disk take part.
//!
//! Tools: `openssl` (keys), `dtc` and `mkimage` (Debian's `device-tree-compiler`,
//! `u-boot-tools`), installed by `cargo xtask setup`.
//!
//! Invariants: the plan in the FIT says what the unsigned boot script would (the same
//! `/chosen` nodes, module sizes from the files); nothing boots from a signed disk except
//! through U-Boot's verification.

use crate::deploy::Deployment;
use crate::{image, root};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Where `cargo xtask keygen` keeps the development key.
pub fn default_key_dir() -> PathBuf {
    root().join("build/keys")
}

/// The development key's name (`<dir>/<name>.key`, `.crt`; U-Boot's node `key-<name>`).
pub const DEFAULT_KEY: &str = "ferrum-dev";

/// `cargo xtask keygen [--dir DIR] [--name NAME]`: a development RSA-2048 key and its
/// self-signed certificate for `image --sign`.
pub fn cmd_keygen(args: &[String]) -> Result<u8, String> {
    crate::check_args(args, &["--dir", "--name"], &[])?;
    crate::setup::ensure_host_tools()?;
    let dir = crate::opt(args, "--dir")?.map_or_else(default_key_dir, PathBuf::from);
    let name = crate::opt(args, "--name")?.unwrap_or_else(|| DEFAULT_KEY.to_string());
    let (key, crt) = keygen(&dir, &name)?;
    let (_, public) = update_key(&dir, &name)?;
    println!("keygen: private key {} (keep it secret: it signs deployments)", key.display());
    println!("keygen: certificate {} (its public key goes into U-Boot's device tree)", crt.display());
    println!(
        "keygen: update key {} (Ed25519; its public key {} goes into the signed plan: hypctl update images must be signed with it)",
        dir.join(format!("{name}-update.key")).display(),
        hex(&public)
    );
    println!("keygen: sign a deployment with: cargo xtask image --sign {}", dir.join(&name).display());
    println!(
        "keygen: sign an update with: cargo xtask sign-update --key {} --domain NAME IMAGE",
        dir.join(&name).display()
    );
    Ok(0)
}

/// Makes `<dir>/<name>.key` and `.crt` unless they exist; returns their paths.
pub fn keygen(dir: &Path, name: &str) -> Result<(PathBuf, PathBuf), String> {
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
        return Err(format!("key name '{name}': use letters, digits, '-' and '_'"));
    }
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let (key, crt) = (dir.join(format!("{name}.key")), dir.join(format!("{name}.crt")));
    if !key.is_file() {
        run(Command::new("openssl")
            .args(["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out"])
            .arg(&key))?;
    }
    if !crt.is_file() {
        run(Command::new("openssl")
            .args(["req", "-batch", "-new", "-x509", "-days", "3650", "-subj", &format!("/CN={name}"), "-key"])
            .arg(&key)
            .arg("-out")
            .arg(&crt))?;
    }
    Ok((key, crt))
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The Ed25519 update key beside the signing key `<dir>/<name>`: `<name>-update.key` (its
/// 32-byte seed, hex), made when missing. Returns (key pair, public key).
pub fn update_key(dir: &Path, name: &str) -> Result<(ed25519_compact::KeyPair, [u8; 32]), String> {
    let path = dir.join(format!("{name}-update.key"));
    if !path.is_file() {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let seed = ed25519_compact::Seed::generate();
        std::fs::write(&path, format!("{}\n", hex(seed.as_ref()))).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let bytes: Vec<u8> = (0..text.trim().len() / 2)
        .filter_map(|i| u8::from_str_radix(text.trim().get(2 * i..2 * i + 2)?, 16).ok())
        .collect();
    let seed =
        <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| format!("{}: not a 32-byte hex seed", path.display()))?;
    let kp = ed25519_compact::KeyPair::from_seed(ed25519_compact::Seed::new(seed));
    let public = *kp.pk;
    Ok((kp, public))
}

/// The signature of `image` as domain `name`'s update, by update key `kp`.
pub fn sign_update(kp: &ed25519_compact::KeyPair, name: &str, image: &[u8]) -> [u8; 64] {
    let msg = hyp_core::verify::update_message(name, &hyp_core::verify::sha256(image));
    *kp.sk.sign(msg, None)
}

/// `cargo xtask sign-update --domain NAME [--key KEY] IMAGE`: writes `IMAGE.sig`, the
/// signature `hypctl update NAME IMAGE` needs on a signed deployment.
pub fn cmd_sign_update(args: &[String]) -> Result<u8, String> {
    let image = args
        .last()
        .filter(|a| !a.starts_with("--"))
        .ok_or("usage: cargo xtask sign-update --domain NAME [--key KEY] IMAGE")?;
    let rest = &args[..args.len() - 1];
    crate::check_args(rest, &["--domain", "--key"], &[])?;
    let name =
        crate::opt(rest, "--domain")?.ok_or("sign-update: --domain NAME is needed (a signature is for one domain)")?;
    let key = crate::opt(rest, "--key")?.map_or_else(|| default_key_dir().join(DEFAULT_KEY), PathBuf::from);
    let (dir, kname) = (key.parent().unwrap_or(Path::new(".")), key.file_name().and_then(|n| n.to_str()).unwrap_or(""));
    if !dir.join(format!("{kname}-update.key")).is_file() {
        return Err(format!("sign-update: no {kname}-update.key in {} (cargo xtask keygen makes one)", dir.display()));
    }
    let (kp, _) = update_key(dir, kname)?;
    let bytes = std::fs::read(image).map_err(|e| format!("{image}: {e}"))?;
    let out = format!("{image}.sig");
    std::fs::write(&out, sign_update(&kp, &name, &bytes)).map_err(|e| format!("{out}: {e}"))?;
    println!(
        "sign-update: {out} (domain {name}, {} bytes, SHA-256 {})",
        bytes.len(),
        hex(&hyp_core::verify::sha256(&bytes))
    );
    Ok(0)
}

fn run(c: &mut Command) -> Result<String, String> {
    let o = c.output().map_err(|e| format!("{:?}: {e}", c.get_program()))?;
    if !o.status.success() {
        return Err(format!(
            "{:?} failed: {}",
            c.get_program(),
            String::from_utf8_lossy(&o.stderr).lines().take(6).collect::<Vec<_>>().join("; ")
        ));
    }
    Ok(String::from_utf8_lossy(&o.stdout).into_owned())
}

/// What to change in a signed image (tests: U-Boot must refuse each).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tamper {
    /// One byte of the hypervisor image.
    Hypervisor,
    /// One byte of the plan (the device tree with the domain nodes).
    Plan,
    /// One byte of the first domain's kernel image.
    DomainImage,
    /// No signature at all (the key is still required).
    Unsigned,
}

impl Tamper {
    /// From a scenario's `tamper` field.
    pub fn parse(s: &str) -> Result<Self, String> {
        Ok(match s {
            "hypervisor" => Self::Hypervisor,
            "plan" => Self::Plan,
            "image" => Self::DomainImage,
            "unsigned" => Self::Unsigned,
            _ => return Err(format!("tamper '{s}': hypervisor, plan, image or unsigned")),
        })
    }
}

/// A signed deployment: the FIT and U-Boot's control device tree with the key in it.
pub struct Signed {
    /// `ferrum.itb`.
    pub fit: Vec<u8>,
    /// The board's device tree with `/signature/key-<name>` (`required = "conf"`).
    pub control_dtb: PathBuf,
}

/// Which board tree a signed image is built on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Model {
    /// The real board (the Pi 4's tree from the kernel package, as its firmware hands it over).
    Board,
    /// QEMU's model of it (virt: QEMU's own `dumpdtb`; raspi4b: the Pi's tree with the devices
    /// QEMU lacks disabled, `rpi4::qemu_dtb`).
    Qemu,
}

/// How to sign a deployment.
#[derive(Clone, Copy, Debug)]
pub struct Signing<'a> {
    /// `<key>.key` and `<key>.crt`.
    pub key: &'a Path,
    /// QEMU virt's GIC version (its board tree depends on it).
    pub gic: u8,
    /// Which board tree the plan is built on.
    pub model: Model,
    /// What to alter afterwards (tests).
    pub tamper: Option<Tamper>,
}

/// Builds the signed FIT of `dep`. The plan's board tree: QEMU virt with `gic` (dumped by QEMU
/// with the same machine options as the boot), or the Pi 4's (`model`).
pub fn signed_image(dep: &Deployment, how: &Signing) -> Result<Signed, String> {
    let Signing { key, gic, model, tamper } = *how;
    let (dir, name) = (key.parent().unwrap_or(Path::new(".")), key.file_name().and_then(|n| n.to_str()).unwrap_or(""));
    if !dir.join(format!("{name}.key")).is_file() || !dir.join(format!("{name}.crt")).is_file() {
        return Err(format!(
            "--sign {}: no {name}.key and {name}.crt there (make a development key with: cargo xtask keygen)",
            key.display()
        ));
    }
    let work = root().join("build").join(dep.platform.name).join(&dep.name).join("signed");
    std::fs::create_dir_all(&work).map_err(|e| e.to_string())?;
    let board = work.join("board.dtb");
    let p = dep.platform;
    if p.name == "rpi4" {
        let fw = crate::rpi4::fetch(&root().join("build"))?;
        let tree = std::fs::read(&fw.dtb).map_err(|e| format!("{}: {e}", fw.dtb.display()))?;
        let tree = if model == Model::Qemu { crate::rpi4::qemu_dtb(&tree)? } else { tree };
        std::fs::write(&board, tree).map_err(|e| format!("{}: {e}", board.display()))?;
    } else {
        run(Command::new("qemu-system-aarch64")
            .args(["-M", &format!("virt,virtualization=on,gic-version={gic},dumpdtb={}", board.display())])
            .args(["-cpu", "cortex-a72", "-smp", &p.cpus.to_string(), "-m", &p.qemu_ram_mib.to_string()])
            .args(["-display", "none"]))?;
    }
    // The plan: the board's tree plus the /chosen nodes the boot script would write.
    let board_dts = run(Command::new("dtc").args(["-q", "-I", "dtb", "-O", "dts"]).arg(&board))?;
    let plan_dts = work.join("plan.dts");
    let sizes: Vec<u64> = dep.domains.iter().map(|d| d.kernel.size).collect();
    let mut chosen = chosen_dts(&image::boot_script(dep), &sizes)?;
    // What the hypervisor checks at run time: each kernel's SHA-256, the update key.
    let bytes = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<Vec<_>>().join(" ");
    let (_, public) = update_key(dir, name)?;
    chosen = chosen.replacen(
        "    chosen {\n",
        &format!("    chosen {{\n        ferrum,update-key = [{}];\n", bytes(&public)),
        1,
    );
    for (i, d) in dep.domains.iter().enumerate() {
        let k = std::fs::read(&d.kernel.path).map_err(|e| format!("{}: {e}", d.kernel.path.display()))?;
        let digest = hyp_core::verify::sha256(&k);
        let at = format!("        domain@{i} {{\n");
        chosen = chosen.replacen(&at, &format!("{at}            ferrum,sha256 = [{}];\n", bytes(&digest)), 1);
    }
    let text = format!("{board_dts}\n{chosen}");
    std::fs::write(&plan_dts, text).map_err(|e| e.to_string())?;
    let plan = work.join("plan.dtb");
    run(Command::new("dtc").args(["-q", "-I", "dts", "-O", "dtb", "-o"]).arg(&plan).arg(&plan_dts))?;
    // The FIT source.
    let its = work.join("ferrum.its");
    std::fs::write(&its, its_text(dep, &plan, if tamper == Some(Tamper::Unsigned) { None } else { Some(name) }))
        .map_err(|e| e.to_string())?;
    let control = work.join("control.dtb");
    std::fs::copy(&board, &control).map_err(|e| e.to_string())?;
    let fit = work.join("ferrum.itb");
    if tamper == Some(Tamper::Unsigned) {
        // The key still goes into U-Boot's tree (from a signed build that is then discarded).
        let signed_its = work.join("keyonly.its");
        std::fs::write(&signed_its, its_text(dep, &plan, Some(name))).map_err(|e| e.to_string())?;
        run(Command::new("mkimage")
            .arg("-f")
            .arg(&signed_its)
            .arg("-k")
            .arg(dir)
            .arg("-K")
            .arg(&control)
            .arg("-r")
            .arg(work.join("keyonly.itb")))?;
        run(Command::new("mkimage").arg("-f").arg(&its).arg(&fit))?;
    } else {
        run(Command::new("mkimage")
            .arg("-f")
            .arg(&its)
            .arg("-k")
            .arg(dir)
            .arg("-K")
            .arg(&control)
            .arg("-r")
            .arg(&fit))?;
    }
    let mut bytes = std::fs::read(&fit).map_err(|e| e.to_string())?;
    if let Some(t) = tamper.filter(|&t| t != Tamper::Unsigned) {
        let image = match t {
            Tamper::Hypervisor => "hypervisor",
            Tamper::Plan => "plan",
            _ => "domain-0",
        };
        let at = data_offset(&bytes, image).ok_or(format!("no image '{image}' in the FIT"))?;
        bytes[at + 64] ^= 0x01;
    }
    Ok(Signed { fit: bytes, control_dtb: control })
}

/// The offset in `fit` of the `data` of image node `/images/<name>`.
fn data_offset(fit: &[u8], name: &str) -> Option<usize> {
    let t = fdt::Fdt::new(fit).ok()?;
    let node = t.find_node(&format!("/images/{name}"))?;
    let data = node.property("data")?.value;
    let at = data.as_ptr() as usize - fit.as_ptr() as usize;
    (data.len() > 64).then_some(at)
}

/// The FIT source: the hypervisor, the plan, each domain's kernel (and initrd) at its address,
/// one configuration; signed with key `key` when given.
fn its_text(dep: &Deployment, plan: &Path, key: Option<&str>) -> String {
    let hash = "            hash-1 { algo = \"sha256\"; };\n";
    let addr = |a: u64| format!("<0x{:x} 0x{:x}>", a >> 32, a & 0xffff_ffff);
    let mut s = String::from(
        "/dts-v1/;\n\n/ {\n    description = \"ferrum deployment\";\n    #address-cells = <2>;\n\n    images {\n",
    );
    s.push_str(&format!(
        "        hypervisor {{\n            description = \"ferrum hypervisor\";\n            data = /incbin/(\"{}\");\n            type = \"kernel\";\n            arch = \"arm64\";\n            os = \"linux\";\n            compression = \"none\";\n            load = {};\n            entry = {};\n{hash}        }};\n",
        dep.hyp.path.display(),
        addr(dep.hyp.addr),
        addr(dep.hyp.addr)
    ));
    s.push_str(&format!(
        "        plan {{\n            description = \"board device tree and the deployment's plan\";\n            data = /incbin/(\"{}\");\n            type = \"flat_dt\";\n            arch = \"arm64\";\n            compression = \"none\";\n            load = {};\n{hash}        }};\n",
        plan.display(),
        addr(dep.dtb_addr)
    ));
    let mut loadables = Vec::new();
    for (i, d) in dep.domains.iter().enumerate() {
        let mut mods = vec![(format!("domain-{i}"), &d.kernel, format!("{} kernel", d.name))];
        if let Some(m) = &d.initrd {
            mods.push((format!("domain-{i}-initrd"), m, format!("{} initrd", d.name)));
        }
        for (node, m, what) in mods {
            s.push_str(&format!(
                "        {node} {{\n            description = \"{what}\";\n            data = /incbin/(\"{}\");\n            type = \"firmware\";\n            arch = \"arm64\";\n            compression = \"none\";\n            load = {};\n{hash}        }};\n",
                m.path.display(),
                addr(m.addr)
            ));
            loadables.push(format!("\"{node}\""));
        }
    }
    s.push_str("    };\n\n    configurations {\n        default = \"conf-1\";\n        conf-1 {\n");
    s.push_str(&format!(
        "            description = \"deployment {}\";\n            kernel = \"hypervisor\";\n            fdt = \"plan\";\n            loadables = {};\n",
        dep.name,
        loadables.join(", ")
    ));
    if let Some(k) = key {
        s.push_str(&format!(
            "            signature-1 {{\n                algo = \"sha256,rsa2048\";\n                key-name-hint = \"{k}\";\n                sign-images = \"kernel\", \"fdt\", \"loadables\";\n            }};\n"
        ));
    }
    s.push_str("        };\n    };\n};\n");
    s
}

/// Device-tree nodes by path: their properties (name, source value) and children, in order.
type Nodes = BTreeMap<String, (Vec<(String, String)>, Vec<String>)>;

/// The `/chosen` nodes of a boot script (its `fdt set` and `fdt mknod` lines) as device-tree
/// source; `${ferrum_k<i>}` (a module size the script takes from the loaded file) becomes
/// `sizes[i]`.
pub fn chosen_dts(script: &str, sizes: &[u64]) -> Result<String, String> {
    // Node path -> (properties in order, children in order).
    let mut nodes: Nodes = BTreeMap::new();
    nodes.insert("/chosen".into(), Default::default());
    for line in script.lines() {
        let Some(rest) = line.strip_prefix("fdt ") else { continue };
        if let Some(a) = rest.strip_prefix("mknod ") {
            let (parent, child) = a.split_once(' ').ok_or(format!("boot script: '{line}'"))?;
            let path = format!("{parent}/{child}");
            nodes.get_mut(parent).ok_or(format!("boot script: no node {parent}"))?.1.push(path.clone());
            nodes.insert(path, Default::default());
        } else if let Some(a) = rest.strip_prefix("set ") {
            let (path, a) = a.split_once(' ').ok_or(format!("boot script: '{line}'"))?;
            let (prop, value) = if let Some(q) = a.strip_prefix('"') {
                let (p, v) = q.split_once("\" ").ok_or(format!("boot script: '{line}'"))?;
                (p.to_string(), v)
            } else {
                let (p, v) = a.split_once(' ').ok_or(format!("boot script: '{line}'"))?;
                (p.to_string(), v)
            };
            let mut value = value.to_string();
            for (i, sz) in sizes.iter().enumerate() {
                value = value.replace(&format!("0x${{ferrum_k{i}}}"), &format!("0x{sz:x}"));
            }
            if value.contains('$') {
                return Err(format!("boot script: a value the plan cannot know: '{line}'"));
            }
            nodes.get_mut(path).ok_or(format!("boot script: no node {path}"))?.0.push((prop, dts_value(&value)));
        }
    }
    fn emit(nodes: &Nodes, path: &str, depth: usize, out: &mut String) {
        let pad = "    ".repeat(depth);
        let name = path.rsplit('/').next().unwrap_or(path);
        out.push_str(&format!("{pad}{name} {{\n"));
        if let Some((props, children)) = nodes.get(path) {
            for (p, v) in props {
                out.push_str(&format!("{pad}    {p} = {v};\n"));
            }
            for c in children {
                emit(nodes, c, depth + 1, out);
            }
        }
        out.push_str(&format!("{pad}}};\n"));
    }
    let mut out = String::from("/ {\n");
    emit(&nodes, "/chosen", 1, &mut out);
    out.push_str("};\n");
    Ok(out)
}

/// A U-Boot `fdt set` value as device-tree source: a list of strings gets commas.
fn dts_value(v: &str) -> String {
    if !v.starts_with('"') {
        return v.to_string();
    }
    let mut items = Vec::new();
    let mut cur = String::new();
    let (mut inside, mut esc) = (false, false);
    for c in v.chars() {
        if inside {
            if esc {
                cur.push(c);
                esc = false;
            } else if c == '\\' {
                cur.push(c);
                esc = true;
            } else if c == '"' {
                items.push(format!("\"{cur}\""));
                cur.clear();
                inside = false;
            } else {
                cur.push(c);
            }
        } else if c == '"' {
            inside = true;
        }
    }
    items.join(", ")
}

/// Where a board's U-Boot finds a verified-boot deployment and what it does when none boots.
pub struct BootMedia {
    /// U-Boot's device and partition of the boot partition.
    pub dev: &'static str,
    /// Commands that make the device known first (with their `; `).
    pub scan: &'static str,
    /// Where the slot's FIT is loaded: above every staging address, below U-Boot; it is only
    /// read before the hypervisor starts.
    pub fit_addr: u64,
    /// Where the boot-state record is loaded.
    pub state_addr: u64,
    /// Run when nothing boots (with its `; `): QEMU virt powers off through PSCI; the Pi 4's
    /// U-Boot has no power-off and stays at its prompt.
    pub halt: &'static str,
}

/// QEMU's virt board: the virtio disk; RAM from 1 GiB to 3 GiB.
pub const VIRT_MEDIA: BootMedia = BootMedia {
    dev: "virtio 0:1",
    scan: "virtio scan; ",
    fit_addr: 0xa000_0000,
    state_addr: 0x9f00_0000,
    halt: "; poweroff",
};

/// The Raspberry Pi 4: the SD card (the staging window ends at 0x1100_0000; U-Boot relocates
/// itself to the top of the first 960 MiB).
pub const RPI4_MEDIA: BootMedia =
    BootMedia { dev: "mmc 0:1", scan: "", fit_addr: 0x1800_0000, state_addr: 0x1700_0000, halt: "" };

/// U-Boot's A/B commands (`name=value`) for a verified-boot disk on `m`: `hyp_core::abslot`'s
/// rules in U-Boot's shell. Neither board's U-Boot has bootcount, so the counting lives in
/// `bootstate.env` on the boot partition, read with `env import` of its four variables only
/// and written with `fatwrite` at every boot; then `bootm` of the slot's FIT (U-Boot checks
/// the configuration's signature and every image's hash first); a refused tried slot falls
/// back to the active one in the same boot.
pub fn ab_commands(m: &BootMedia) -> Vec<String> {
    let st = format!("0x{:x}", m.state_addr);
    let fit = format!("0x{:x}", m.fit_addr);
    let (dev, scan, halt) = (m.dev, m.scan, m.halt);
    vec![
        format!("ferrum_load=setenv active a; setenv tried none; setenv tries 0; if load {dev} {st} bootstate.env; then env import -t {st} ${{filesize}} active tried tries booted; fi; if test \"${{tried}}\" = \"${{active}}\"; then setenv tried none; fi"),
        format!("ferrum_save=env export -t {st} active tried tries booted; fatwrite {dev} {st} bootstate.env ${{filesize}}"),
        "ferrum_decide=setenv slot ${active}; if test \"${tried}\" != \"none\"; then if test ${tries} -gt 0; then setexpr tries ${tries} - 1; setenv slot ${tried}; echo ferrum-boot: trying slot ${tried}, boots left after this one: ${tries}; else echo ferrum-boot: slot ${tried} was not confirmed, back to slot ${active}; setenv tried none; setenv tries 0; fi; fi; setenv booted ${slot}; run ferrum_save".into(),
        format!("ferrum_boot=echo ferrum-boot: verified boot of slot ${{slot}}; load {dev} {fit} slot-${{slot}}.itb && bootm {fit}#conf-1"),
        "ferrum_fallback=if test \"${slot}\" != \"${active}\"; then echo ferrum-boot: slot ${slot} was refused, back to slot ${active}; setenv tried none; setenv tries 0; setenv slot ${active}; setenv booted ${active}; run ferrum_save; run ferrum_boot; fi".into(),
        format!("bootcmd={scan}run ferrum_load; run ferrum_decide; run ferrum_boot; run ferrum_fallback; echo ferrum-boot: ERROR: the signed deployment did not boot{halt}"),
    ]
}

/// U-Boot's environment for a verified-boot disk on QEMU's virt board (its flash bank 1).
pub fn uboot_env_signed() -> Vec<u8> {
    image::uboot_env_vars(&ab_commands(&VIRT_MEDIA))
}

/// The Pi 4's U-Boot's built-in environment (`name=value` lines, U-Boot's
/// `CONFIG_DEFAULT_ENV_FILE`): no autoboot delay, the device tree and initrd used in place,
/// and the A/B commands.
pub fn rpi4_env() -> String {
    let mut lines =
        vec!["bootdelay=0".to_string(), "fdt_high=ffffffffffffffff".into(), "initrd_high=ffffffffffffffff".into()];
    lines.extend(ab_commands(&RPI4_MEDIA));
    lines.join("\n") + "\n"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chosen_nodes_become_source() {
        let script = "fdt set /chosen ferrum,deployment \"d\"\nfdt mknod /chosen domain@0\n\
            fdt set /chosen/domain@0 \"#size-cells\" <0x2>\nfdt set /chosen/domain@0 ferrum,passthrough \"/a@1\" \"/b@2\"\n\
            fdt mknod /chosen/domain@0 module@41000000\n\
            fdt set /chosen/domain@0/module@41000000 reg <0x0 0x41000000 0x0 0x${ferrum_k0}>\n\
            fdt set /chosen/domain@0/module@41000000 bootargs \"ip=1 \\\"q\\\"\"\nbooti 0x1 - 0x2\n";
        let d = chosen_dts(script, &[0x1234]).unwrap();
        assert!(d.contains("chosen {\n        ferrum,deployment = \"d\";"), "{d}");
        assert!(d.contains("#size-cells = <0x2>;"), "{d}");
        assert!(d.contains("ferrum,passthrough = \"/a@1\", \"/b@2\";"), "{d}");
        assert!(d.contains("reg = <0x0 0x41000000 0x0 0x1234>;"), "{d}");
        assert!(d.contains("bootargs = \"ip=1 \\\"q\\\"\";"), "{d}");
        assert!(d.find("domain@0 {").unwrap() < d.find("module@41000000 {").unwrap());
        assert!(chosen_dts("fdt set /chosen x <0x${other}>\n", &[]).is_err());
        assert!(chosen_dts("fdt set /nowhere x <1>\n", &[]).is_err());
    }

    #[test]
    fn both_boards_run_the_same_ab_commands() {
        let (virt, pi) = (ab_commands(&VIRT_MEDIA), ab_commands(&RPI4_MEDIA));
        assert_eq!(virt.len(), pi.len());
        for (v, p) in virt.iter().zip(&pi) {
            let v = v.replace("virtio 0:1", "mmc 0:1").replace("virtio scan; ", "").replace("; poweroff", "");
            let v = v.replace("0xa0000000", "0x18000000").replace("0x9f000000", "0x17000000");
            assert_eq!(&v, p);
        }
        // U-Boot's default-environment file: one `name=value` per line, nothing the Pi lacks.
        let env = rpi4_env();
        assert!(env.lines().all(|l| l.split_once('=').is_some_and(|(k, _)| !k.is_empty() && !k.contains(' '))));
        assert!(env.contains("bootcmd=run ferrum_load;") && !env.contains("poweroff") && !env.contains("virtio"));
    }
}
