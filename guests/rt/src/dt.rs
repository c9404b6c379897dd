//! What the runtime needs from the device tree, read in one pass over the flattened tree's
//! structure block (no allocation, no search): `/chosen` (`bootargs`, `stdout-path`), the memory
//! node, the GIC, PL011/SBSA UARTs, Xen's `/hypervisor` node and the other devices (the
//! domain's passthrough devices: `compatible` and `reg`), all children of the root.
//!
//! Bounded lists (a node's `reg` entries, the UARTs, the devices) are `heapless` vectors: no
//! allocation, and a tree with more than fits keeps the first ones.
//!
//! The tree comes from the hypervisor and is still checked: every offset and length is bounds-
//! checked, and a malformed tree is an error, never a panic or an out-of-range read.

/// At most this many `reg` entries are kept per node.
pub const MAX_REGS: usize = 4;
/// At most this many other devices are kept.
pub const MAX_DEVICES: usize = 8;

/// A device node of the tree that the runtime does not use itself (a passthrough device).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeviceNode<'a> {
    /// Node name (`gpio@7e200000`).
    pub name: &'a [u8],
    /// `compatible`: NUL-separated strings.
    pub compatible: &'a [u8],
    /// `reg`, in the root's cells (physical addresses: the hypervisor translated them).
    pub regs: Regs,
}

impl DeviceNode<'_> {
    /// Whether one of its `compatible` strings is `c`.
    pub fn is_compatible(&self, c: &str) -> bool {
        has_compat(self.compatible, &[c.as_bytes()])
    }
}

/// A node's first `reg` entries: (address, size).
pub type Regs = heapless::Vec<(u64, u64), MAX_REGS>;

/// The GIC the tree describes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GicNode {
    /// GICv2: distributor, CPU interface.
    V2(u64, u64),
    /// GICv3: distributor, first redistributor.
    V3(u64, u64),
}

/// What the runtime reads from the tree.
#[derive(Clone, Debug, Default)]
pub struct BootInfo<'a> {
    /// `/chosen/bootargs`.
    pub bootargs: &'a str,
    /// First memory node's first bank.
    pub memory: Option<(u64, u64)>,
    /// The GIC.
    pub gic: Option<GicNode>,
    /// The UART `stdout-path` names, else the first PL011/SBSA UART.
    pub uart: Option<u64>,
    /// `/hypervisor`'s `reg` when it is compatible with `xen,xen`.
    pub hypervisor: Option<Regs>,
    /// Other device nodes with `compatible` and `reg` (the first [`MAX_DEVICES`]).
    pub devices: heapless::Vec<DeviceNode<'a>, MAX_DEVICES>,
}

impl<'a> BootInfo<'a> {
    /// The first other device compatible with `c`.
    pub fn device(&self, c: &str) -> Option<DeviceNode<'a>> {
        self.devices.iter().find(|d| d.is_compatible(c)).cloned()
    }
}

/// A malformed tree.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DtError(pub &'static str);

fn be32(b: &[u8], off: usize) -> Result<u32, DtError> {
    b.get(off..off + 4).map(|s| u32::from_be_bytes([s[0], s[1], s[2], s[3]])).ok_or(DtError("truncated"))
}

fn cstr(b: &[u8], off: usize) -> Result<&[u8], DtError> {
    let s = b.get(off..).ok_or(DtError("string out of range"))?;
    let end = s.iter().position(|&c| c == 0).ok_or(DtError("unterminated string"))?;
    Ok(&s[..end])
}

fn has_compat(list: &[u8], any: &[&[u8]]) -> bool {
    list.split(|&c| c == 0).any(|c| any.contains(&c))
}

fn regs(v: &[u8], acells: u32, scells: u32) -> Regs {
    let mut out = Regs::default();
    let cell = |o: usize, n: u32| -> Option<u64> {
        (0..n as usize).try_fold(0u64, |acc, i| Some(acc << 32 | u64::from(be32(v, o + 4 * i).ok()?)))
    };
    let step = 4 * (acells + scells) as usize;
    if step == 0 {
        return out;
    }
    let mut o = 0;
    while o + step <= v.len() && !out.is_full() {
        if let (Some(a), Some(s)) = (cell(o, acells), cell(o + 4 * acells as usize, scells)) {
            let _ = out.push((a, s));
        }
        o += step;
    }
    out
}

#[derive(Default)]
struct Node<'a> {
    name: &'a [u8],
    compatible: &'a [u8],
    reg: &'a [u8],
    device_type: &'a [u8],
}

/// Reads the tree `blob` (its header's `totalsize` bytes).
pub fn parse(blob: &[u8]) -> Result<BootInfo<'_>, DtError> {
    if be32(blob, 0)? != 0xd00d_feed {
        return Err(DtError("bad magic"));
    }
    let total = be32(blob, 4)? as usize;
    let blob = blob.get(..total).ok_or(DtError("shorter than its header says"))?;
    let off_struct = be32(blob, 8)? as usize;
    let off_strings = be32(blob, 12)? as usize;
    let strings = blob.get(off_strings..).ok_or(DtError("strings block out of range"))?;
    let (mut acells, mut scells) = (2u32, 1u32);
    let mut info = BootInfo::default();
    let mut stdout: &[u8] = b"";
    let mut uarts: heapless::Vec<(&[u8], u64), 8> = heapless::Vec::new();
    let mut depth = 0usize;
    let mut node = Node::default();
    let mut p = off_struct;
    loop {
        let tok = be32(blob, p)?;
        p += 4;
        match tok {
            1 => {
                let name = cstr(blob, p)?;
                p = (p + name.len() + 1).next_multiple_of(4);
                depth += 1;
                if depth == 2 {
                    node = Node { name, ..Node::default() };
                }
            }
            2 => {
                if depth == 0 {
                    return Err(DtError("unbalanced END_NODE"));
                }
                if depth == 2 {
                    let base = node.name.split(|&c| c == b'@').next().unwrap_or(b"");
                    let r = regs(node.reg, acells, scells);
                    if base == b"memory" || node.device_type == b"memory" {
                        if info.memory.is_none() && !r.is_empty() {
                            info.memory = Some(r[0]);
                        }
                    } else if node.name == b"hypervisor" && has_compat(node.compatible, &[b"xen,xen"]) {
                        info.hypervisor = Some(r);
                    } else if has_compat(node.compatible, &[b"arm,gic-v3"]) && r.len() >= 2 {
                        info.gic = Some(GicNode::V3(r[0].0, r[1].0));
                    } else if has_compat(
                        node.compatible,
                        &[b"arm,cortex-a15-gic", b"arm,gic-400", b"arm,cortex-a9-gic", b"arm,gic-v2"],
                    ) && r.len() >= 2
                    {
                        info.gic = Some(GicNode::V2(r[0].0, r[1].0));
                    } else if has_compat(node.compatible, &[b"arm,pl011", b"arm,sbsa-uart"])
                        && !r.is_empty()
                        && !uarts.is_full()
                    {
                        let _ = uarts.push((node.name, r[0].0));
                    } else if !node.compatible.is_empty() && !r.is_empty() {
                        // Beyond MAX_DEVICES the rest are not kept.
                        let _ = info.devices.push(DeviceNode { name: node.name, compatible: node.compatible, regs: r });
                    }
                }
                depth -= 1;
            }
            3 => {
                let len = be32(blob, p)? as usize;
                let name = cstr(strings, be32(blob, p + 4)? as usize)?;
                let value = blob.get(p + 8..p + 8 + len).ok_or(DtError("property out of range"))?;
                p = (p + 8 + len).next_multiple_of(4);
                let text = value.strip_suffix(&[0]).unwrap_or(value);
                match depth {
                    1 if name == b"#address-cells" => acells = be32(value, 0)?.min(2),
                    1 if name == b"#size-cells" => scells = be32(value, 0)?.min(2),
                    2 if node.name == b"chosen" && name == b"bootargs" => {
                        info.bootargs = core::str::from_utf8(text).map_err(|_| DtError("bootargs not UTF-8"))?;
                    }
                    2 if node.name == b"chosen" && name == b"stdout-path" => stdout = text,
                    2 if name == b"compatible" => node.compatible = value,
                    2 if name == b"reg" => node.reg = value,
                    2 if name == b"device_type" => node.device_type = text,
                    _ => {}
                }
            }
            4 => {}
            9 => break,
            _ => return Err(DtError("bad token")),
        }
    }
    // `stdout-path` = "/node[:options]" picks that UART; an alias or nothing: the first one.
    let path = stdout.split(|&c| c == b':').next().unwrap_or(b"");
    let named = path.strip_prefix(b"/").and_then(|n| uarts.iter().find(|u| u.0 == n));
    info.uart = named.or(uarts.first()).map(|u| u.1);
    Ok(info)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyp_core::fdtw::FdtWriter;

    fn tree(v3: bool, stdout: &str) -> Vec<u8> {
        let mut w = FdtWriter::new();
        w.begin_node("");
        w.prop_u32("#address-cells", 2);
        w.prop_u32("#size-cells", 2);
        w.begin_node("chosen");
        w.prop_str("bootargs", "role=ping peer=3");
        w.prop_str("stdout-path", stdout);
        w.end_node();
        w.begin_node("memory@40000000");
        w.prop_str("device_type", "memory");
        w.prop_u64s("reg", &[0x4000_0000, 0x100_0000]);
        w.end_node();
        w.begin_node("interrupt-controller@3001000");
        w.prop_strs("compatible", &[if v3 { "arm,gic-v3" } else { "arm,cortex-a15-gic" }]);
        w.prop_u64s("reg", &[0x300_1000, 0x1000, 0x300_2000, 0x2000]);
        w.begin_node("v2m@8020000");
        w.prop_strs("compatible", &["arm,gic-v2m-frame"]);
        w.end_node();
        w.end_node();
        for a in [0x900_0000u64, 0x2200_0000] {
            w.begin_node(&format!("pl011@{a:x}"));
            w.prop_strs("compatible", &["arm,pl011", "arm,primecell"]);
            w.prop_u64s("reg", &[a, 0x1000]);
            w.end_node();
        }
        w.begin_node("gpio@7e200000");
        w.prop_strs("compatible", &["brcm,bcm2711-gpio", "brcm,bcm2835-gpio"]);
        w.prop_u64s("reg", &[0xfe20_0000, 0xb4]);
        w.end_node();
        w.begin_node("hypervisor");
        w.prop_strs("compatible", &["xen,xen-4.17", "xen,xen"]);
        w.prop_u64s("reg", &[0x3800_0000, 0x100_0000, 0x41_0000_0000, 0x2000_0000]);
        w.end_node();
        w.end_node();
        w.finish(0).unwrap()
    }

    #[test]
    fn one_pass_finds_what_the_runtime_needs() {
        let t = tree(false, "/pl011@22000000");
        let i = parse(&t).unwrap();
        assert_eq!(i.bootargs, "role=ping peer=3");
        assert_eq!(i.memory, Some((0x4000_0000, 0x100_0000)));
        assert_eq!(i.gic, Some(GicNode::V2(0x300_1000, 0x300_2000)));
        assert_eq!(i.uart, Some(0x2200_0000));
        assert_eq!(
            i.hypervisor.as_ref().unwrap().as_slice(),
            &[(0x3800_0000, 0x100_0000), (0x41_0000_0000, 0x2000_0000)]
        );
        let gpio = i.device("brcm,bcm2835-gpio").unwrap();
        assert_eq!((gpio.name, gpio.regs.as_slice()), (&b"gpio@7e200000"[..], &[(0xfe20_0000, 0xb4)][..]));
        assert!(i.device("arm,pl011").is_none(), "the runtime's own devices are not listed");
        assert_eq!(i.devices.len(), 1);
        let t = tree(true, "serial0:115200n8");
        let i = parse(&t).unwrap();
        assert_eq!(i.gic, Some(GicNode::V3(0x300_1000, 0x300_2000)));
        assert_eq!(i.uart, Some(0x900_0000), "an alias falls back to the first UART");
    }

    #[test]
    fn malformed_trees_are_errors() {
        let t = tree(false, "/x");
        assert_eq!(parse(&t[..40]).unwrap_err(), DtError("shorter than its header says"));
        let mut bad = t.clone();
        bad[0] = 0;
        assert!(parse(&bad).is_err());
        // Every truncation or corruption of the structure block fails cleanly.
        for i in 40..t.len() {
            let mut c = t.clone();
            c[i] ^= 0xff;
            let _ = parse(&c);
        }
    }
}
