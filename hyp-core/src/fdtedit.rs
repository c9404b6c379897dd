//! Copying a device tree with edits: the building block for trees derived from the board's
//! (the Linux control domain's view of the whole board, and the QEMU `raspi4b` tree with the
//! nodes QEMU does not emulate disabled).
//!
//! The copy walks the source tree depth-first and asks a callback what to do with each node
//! below the root: copy it, drop it with its subtree, or copy it with properties replaced,
//! added or removed. Phandles are copied like any property, so references between kept nodes
//! stay valid. Invariant: the output is balanced whatever the callback answers (nodes are
//! opened and closed by the walker only).

use crate::fdtw::FdtWriter;
use alloc::string::String;
use alloc::vec::Vec;
use fdt::node::FdtNode;
use fdt::Fdt;

/// Property changes for one node.
#[derive(Default)]
pub struct NodeEdit<'e> {
    /// Properties to set: replaced where they exist (in place), added at the end otherwise.
    pub set: Vec<(&'e str, Vec<u8>)>,
    /// Properties to leave out.
    pub remove: Vec<&'e str>,
}

impl<'e> NodeEdit<'e> {
    /// An edit that marks the node `status = "disabled"`.
    pub fn disable() -> Self {
        Self { set: alloc::vec![("status", b"disabled\0".to_vec())], remove: Vec::new() }
    }
}

/// What to do with a node.
pub enum Action<'e> {
    /// Copy it unchanged (its children are still asked about).
    Copy,
    /// Leave it and its subtree out.
    Drop,
    /// Copy it with changed properties (its children are still asked about).
    Edit(NodeEdit<'e>),
}

/// Depth at which the copy stops descending (deeper subtrees are dropped): bounds the
/// recursion on hostile input.
pub const MAX_DEPTH: usize = 16;

/// Copies the properties of the root node and then every child subtree of the root into `w`,
/// which must have the root open (`begin_node("")`). The caller closes the root after adding
/// nodes of its own. `root_edit` applies to the root's properties.
pub fn copy_root<'e>(
    fdt: &Fdt<'_>,
    w: &mut FdtWriter,
    root_edit: &NodeEdit<'e>,
    f: &mut dyn FnMut(&str, &FdtNode<'_, '_>) -> Action<'e>,
) {
    let Some(root) = fdt.find_node("/") else { return };
    props(w, &root, root_edit);
    let mut path = String::new();
    for c in root.children() {
        walk(w, &mut path, &c, 1, f);
    }
}

fn props(w: &mut FdtWriter, node: &FdtNode<'_, '_>, e: &NodeEdit<'_>) {
    let mut done: Vec<&str> = Vec::new();
    for p in node.properties() {
        if e.remove.contains(&p.name) || done.contains(&p.name) {
            continue;
        }
        match e.set.iter().find(|(n, _)| *n == p.name) {
            Some((n, v)) => {
                w.prop(n, v);
                done.push(n);
            }
            None => w.prop(p.name, p.value),
        }
    }
    for (n, v) in &e.set {
        if !done.contains(n) && !e.remove.contains(n) {
            w.prop(n, v);
        }
    }
}

fn walk<'e>(
    w: &mut FdtWriter,
    path: &mut String,
    node: &FdtNode<'_, '_>,
    depth: usize,
    f: &mut dyn FnMut(&str, &FdtNode<'_, '_>) -> Action<'e>,
) {
    if depth > MAX_DEPTH {
        return;
    }
    let len = path.len();
    path.push('/');
    path.push_str(node.name);
    let edit = match f(path, node) {
        Action::Drop => {
            path.truncate(len);
            return;
        }
        Action::Copy => NodeEdit::default(),
        Action::Edit(e) => e,
    };
    w.begin_node(node.name);
    props(w, node, &edit);
    for c in node.children() {
        walk(w, path, &c, depth + 1, f);
    }
    w.end_node();
    path.truncate(len);
}

/// Deepest node nesting [`compact`] accepts (the `fdt` crate keeps 64 parents).
pub const MAX_TREE_DEPTH: usize = 32;

/// Whether `node` is compatible with any of `list`.
pub fn compatible_with(node: &FdtNode<'_, '_>, list: &[&str]) -> bool {
    node.compatible().is_some_and(|c| c.all().any(|s| list.contains(&s)))
}

/// Rewrites a blob without `FDT_NOP` tokens in its structure block (boot loaders leave them
/// where they deleted properties or nodes; the `fdt` parser does not accept them between a
/// node's properties and its children), checking the token stream on the way: every token and
/// property lies inside the structure block, names are terminated, nodes are balanced.
///
/// The `fdt` crate panics on several malformed trees (found by `cargo xtask fuzz host_dt`), so
/// this is also its gatekeeper: a tree it accepts has a root node named "" first, node and
/// property names that are NUL-terminated UTF-8 inside their blocks, at most
/// [`MAX_TREE_DEPTH`] levels, every property before the node's children, 4-byte `#address-cells`/`#size-cells`, and a UTF-8 `/model`.
pub fn compact(blob: &[u8]) -> Result<Vec<u8>, &'static str> {
    let be32 = |o: usize| -> Result<u32, &'static str> {
        let b = blob.get(o..o + 4).ok_or("truncated")?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    };
    if be32(0)? != 0xd00d_feed {
        return Err("no FDT magic");
    }
    let total = be32(4)? as usize;
    let (off_struct, off_strings, off_rsv) = (be32(8)? as usize, be32(12)? as usize, be32(16)? as usize);
    let version = be32(20)?;
    let (size_strings, size_struct) = (be32(32)? as usize, be32(36)? as usize);
    let struct_end = off_struct.checked_add(size_struct).ok_or("bad header")?;
    let strings_end = off_strings.checked_add(size_strings).ok_or("bad header")?;
    if version < 17 || total > blob.len() || struct_end > total || strings_end > total || off_rsv >= off_struct {
        return Err("bad header (version 17 or later required)");
    }
    let mut out_struct: Vec<u8> = Vec::with_capacity(size_struct);
    let mut o = off_struct;
    let mut depth = 0usize;
    let mut nodes = 0usize;
    // Per level: a child node has begun (the format puts every property before the children).
    let mut had_child = [false; MAX_TREE_DEPTH + 1];
    loop {
        let tok = be32(o)?;
        if o + 4 > struct_end {
            return Err("structure block overrun");
        }
        let start = o;
        o += 4;
        match tok {
            1 => {
                let name = blob.get(o..struct_end).ok_or("structure block overrun")?;
                let n = name.iter().position(|&b| b == 0).ok_or("unterminated node name")?;
                let name = core::str::from_utf8(&name[..n]).map_err(|_| "node name is not UTF-8")?;
                if (depth == 0) != (nodes == 0) || (nodes == 0) != name.is_empty() {
                    return Err("the tree must be one root node named \"\"");
                }
                o += (n + 1).next_multiple_of(4);
                had_child[depth] = true;
                depth += 1;
                nodes += 1;
                if depth > MAX_TREE_DEPTH {
                    return Err("nodes nested too deep");
                }
                had_child[depth] = false;
            }
            2 => depth = depth.checked_sub(1).ok_or("unbalanced nodes")?,
            3 => {
                if depth == 0 {
                    return Err("property outside a node");
                }
                if had_child[depth] {
                    return Err("property after a child node");
                }
                let len = be32(o)? as usize;
                let nameoff = be32(o + 4)? as usize;
                if nameoff >= size_strings {
                    return Err("property name outside the strings block");
                }
                let name = &blob[off_strings + nameoff..strings_end];
                let n = name.iter().position(|&b| b == 0).ok_or("unterminated property name")?;
                let name = core::str::from_utf8(&name[..n]).map_err(|_| "property name is not UTF-8")?;
                let value =
                    o.checked_add(8).and_then(|v| blob.get(v..v.checked_add(len)?)).ok_or("structure block overrun")?;
                if (name == "#address-cells" || name == "#size-cells") && len != 4 {
                    return Err("#address-cells and #size-cells must be one cell");
                }
                if depth == 1 && name == "model" && core::str::from_utf8(value).is_err() {
                    return Err("/model is not UTF-8");
                }
                o = o
                    .checked_add(8 + len.checked_next_multiple_of(4).ok_or("structure block overrun")?)
                    .ok_or("structure block overrun")?;
            }
            4 => continue,
            9 => {
                if depth != 0 || nodes == 0 {
                    return Err("unbalanced nodes");
                }
                out_struct.extend_from_slice(&blob[start..o]);
                break;
            }
            _ => return Err("unknown structure token"),
        }
        if o > struct_end {
            return Err("structure block overrun");
        }
        out_struct.extend_from_slice(&blob[start..o]);
    }
    // Header, reservation map (up to the structure block), structure, strings.
    let rsv = blob.get(off_rsv..off_struct).ok_or("bad header")?;
    let new_struct = 40 + rsv.len().next_multiple_of(8);
    let new_strings = new_struct + out_struct.len();
    let new_total = new_strings + size_strings;
    let mut out = Vec::with_capacity(new_total);
    out.extend_from_slice(&blob[..40]);
    let put = |out: &mut Vec<u8>, at: usize, v: usize| out[at..at + 4].copy_from_slice(&(v as u32).to_be_bytes());
    put(&mut out, 4, new_total);
    put(&mut out, 8, new_struct);
    put(&mut out, 12, new_strings);
    put(&mut out, 16, 40);
    put(&mut out, 36, out_struct.len());
    out.extend_from_slice(rsv);
    out.resize(new_struct, 0);
    out.extend_from_slice(&out_struct);
    out.extend_from_slice(&blob[off_strings..strings_end]);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source() -> Vec<u8> {
        let mut w = FdtWriter::new();
        w.reserve(0, 0x1000);
        w.begin_node("");
        w.prop_u32("#address-cells", 1);
        w.prop_str("model", "board");
        w.begin_node("soc");
        w.begin_node("i2c@1000");
        w.prop_str("compatible", "brcm,brcmstb-i2c");
        w.prop_u32("phandle", 7);
        w.end_node();
        w.begin_node("mmc@2000");
        w.prop_str("compatible", "brcm,bcm2711-emmc2");
        w.prop_str("status", "okay");
        w.prop_u32("clocks", 7);
        w.end_node();
        w.end_node();
        w.begin_node("cpus");
        w.begin_node("cpu@0");
        w.end_node();
        w.end_node();
        w.end_node();
        w.finish(0).unwrap()
    }

    #[test]
    fn copy_with_edits() {
        let src = source();
        let fdt = Fdt::new(&src).unwrap();
        assert_eq!(fdt.memory_reservations().count(), 1);
        let mut w = FdtWriter::new();
        w.begin_node("");
        let mut seen = Vec::new();
        copy_root(
            &fdt,
            &mut w,
            &NodeEdit { set: alloc::vec![("model", b"copy\0".to_vec())], remove: Vec::new() },
            &mut |path, n| {
                seen.push(String::from(path));
                if path == "/cpus" {
                    Action::Drop
                } else if compatible_with(n, &["brcm,brcmstb-i2c"]) {
                    Action::Edit(NodeEdit::disable())
                } else if path == "/soc/mmc@2000" {
                    Action::Edit(NodeEdit {
                        set: alloc::vec![("extra", b"x\0".to_vec())],
                        remove: alloc::vec!["status"],
                    })
                } else {
                    Action::Copy
                }
            },
        );
        w.begin_node("added");
        w.end_node();
        w.end_node();
        let out = w.finish(0).unwrap();
        let fdt = Fdt::new(&out).unwrap();
        assert_eq!(seen, ["/soc", "/soc/i2c@1000", "/soc/mmc@2000", "/cpus"]);
        assert_eq!(fdt.root().model(), "copy");
        let i2c = fdt.find_node("/soc/i2c@1000").unwrap();
        assert_eq!(i2c.property("status").unwrap().as_str(), Some("disabled"));
        assert_eq!(i2c.property("phandle").unwrap().as_usize(), Some(7));
        let mmc = fdt.find_node("/soc/mmc@2000").unwrap();
        assert!(mmc.property("status").is_none());
        assert_eq!(mmc.property("extra").unwrap().as_str(), Some("x"));
        assert_eq!(mmc.property("clocks").unwrap().as_usize(), Some(7));
        assert!(fdt.find_node("/cpus").is_none());
        assert!(fdt.find_node("/added").is_some());
    }

    #[test]
    fn nops_are_removed() {
        let src = source();
        // Put a NOP between the root's properties and its first child, as U-Boot leaves them.
        let off_struct = u32::from_be_bytes(src[8..12].try_into().unwrap()) as usize;
        let begin_soc = (off_struct..src.len() - 8)
            .step_by(4)
            .find(|&o| src[o..o + 4] == [0, 0, 0, 1] && &src[o + 4..o + 8] == b"soc\0")
            .unwrap();
        let mut with_nop = src[..begin_soc].to_vec();
        with_nop.extend_from_slice(&[0, 0, 0, 4]);
        with_nop.extend_from_slice(&src[begin_soc..]);
        let bump = |b: &mut Vec<u8>, at: usize| {
            let v = u32::from_be_bytes(b[at..at + 4].try_into().unwrap()) + 4;
            b[at..at + 4].copy_from_slice(&v.to_be_bytes());
        };
        bump(&mut with_nop, 4); // totalsize
        bump(&mut with_nop, 12); // strings offset
        bump(&mut with_nop, 36); // structure size
        let out = compact(&with_nop).unwrap();
        assert_eq!(out, src, "compacting restores the NOP-free blob");
        let fdt = Fdt::new(&out).unwrap();
        assert!(fdt.find_node("/soc/mmc@2000").is_some());
        // Garbage and truncations are refused, never a panic.
        assert!(compact(&with_nop[..with_nop.len() - 9]).is_err());
        assert!(compact(b"not a tree at all, not at all, no no no no").is_err());
        let mut bad = src.clone();
        bad[off_struct + 3] = 7;
        assert!(compact(&bad).is_err());
    }

    #[test]
    fn reservations_are_written() {
        let src = source();
        let fdt = Fdt::new(&src).unwrap();
        let r: Vec<_> = fdt.memory_reservations().map(|r| (r.address() as u64, r.size())).collect();
        assert_eq!(r, [(0, 0x1000)]);
    }

    /// Found by `cargo xtask fuzz host_dt`: trees the `fdt` crate panics on (a node name that
    /// is not UTF-8, a one-byte `#address-cells`, nesting deeper than its parent stack, a
    /// property after a child node, a second root) are refused here, before it parses them; a tree without `/model` parses.
    #[test]
    fn trees_the_parser_would_panic_on_are_refused() {
        let patch = |from: &[u8], to: &[u8]| {
            let mut b = source();
            let at = b.windows(from.len()).position(|w| w == from).unwrap();
            b[at..at + to.len()].copy_from_slice(to);
            b
        };
        assert_eq!(compact(&patch(b"soc\0", b"s\x92c\0")), Err("node name is not UTF-8"));
        let mut w = FdtWriter::new();
        w.begin_node("");
        w.prop("#size-cells", &[1]);
        w.end_node();
        assert_eq!(compact(&w.finish(0).unwrap()), Err("#address-cells and #size-cells must be one cell"));
        let mut w = FdtWriter::new();
        for i in 0..=MAX_TREE_DEPTH {
            w.begin_node(if i == 0 { "" } else { "n" });
        }
        for _ in 0..=MAX_TREE_DEPTH {
            w.end_node();
        }
        assert_eq!(compact(&w.finish(0).unwrap()), Err("nodes nested too deep"));
        let mut w = FdtWriter::new();
        w.begin_node("");
        w.begin_node("a");
        w.end_node();
        w.prop_u32("late", 1);
        w.end_node();
        assert_eq!(compact(&w.finish(0).unwrap()), Err("property after a child node"));
        let mut w = FdtWriter::new();
        w.begin_node("");
        w.end_node();
        w.begin_node("");
        w.end_node();
        assert!(compact(&w.finish(0).unwrap_or_default()).is_err());
        let mut w = FdtWriter::new();
        w.begin_node("");
        w.begin_node("cpus");
        w.end_node();
        w.end_node();
        let copy = compact(&w.finish(0).unwrap()).unwrap();
        let fdt = Fdt::new(&copy).unwrap();
        assert_eq!(crate::hostdt::parse_board(&fdt).model, "");
    }
}
