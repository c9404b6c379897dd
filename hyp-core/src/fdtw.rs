//! A flattened-device-tree (DTB v17) writer: nodes, properties and a string table with
//! de-duplicated property names. Used to build each guest's device tree at boot.
//!
//! Invariant: `finish` only succeeds when every node opened was closed, so a produced blob is
//! always structurally valid (checked against the `fdt` parser in the tests).

use alloc::vec::Vec;

const MAGIC: u32 = 0xd00d_feed;
const BEGIN_NODE: u32 = 1;
const END_NODE: u32 = 2;
const PROP: u32 = 3;
const END: u32 = 9;
const HEADER: usize = 40;
const RSVMAP: usize = 16;

/// Builds a device tree blob.
#[derive(Default)]
pub struct FdtWriter {
    reserved: Vec<(u64, u64)>,
    structs: Vec<u8>,
    strings: Vec<u8>,
    depth: usize,
}

fn pad4(v: &mut Vec<u8>) {
    while !v.len().is_multiple_of(4) {
        v.push(0);
    }
}

impl FdtWriter {
    /// An empty tree; call [`Self::begin_node`] with `""` for the root first.
    pub fn new() -> Self {
        Self::default()
    }

    fn word(&mut self, w: u32) {
        self.structs.extend_from_slice(&w.to_be_bytes());
    }

    /// Adds a memory reservation block entry (`/memreserve/ base size`).
    pub fn reserve(&mut self, base: u64, size: u64) {
        self.reserved.push((base, size));
    }

    /// Opens a node.
    pub fn begin_node(&mut self, name: &str) {
        self.word(BEGIN_NODE);
        self.structs.extend_from_slice(name.as_bytes());
        self.structs.push(0);
        pad4(&mut self.structs);
        self.depth += 1;
    }

    /// Closes the innermost open node.
    pub fn end_node(&mut self) {
        self.word(END_NODE);
        self.depth = self.depth.saturating_sub(1);
    }

    fn name_offset(&mut self, name: &str) -> u32 {
        let n = name.as_bytes();
        let mut i = 0;
        while i < self.strings.len() {
            let end = self.strings[i..].iter().position(|&b| b == 0).map_or(self.strings.len(), |p| i + p);
            if &self.strings[i..end] == n {
                return i as u32;
            }
            i = end + 1;
        }
        let off = self.strings.len() as u32;
        self.strings.extend_from_slice(n);
        self.strings.push(0);
        off
    }

    /// Adds a property with raw bytes.
    pub fn prop(&mut self, name: &str, value: &[u8]) {
        let off = self.name_offset(name);
        self.word(PROP);
        self.word(value.len() as u32);
        self.word(off);
        self.structs.extend_from_slice(value);
        pad4(&mut self.structs);
    }

    /// An empty (boolean) property.
    pub fn prop_empty(&mut self, name: &str) {
        self.prop(name, &[]);
    }

    /// A list of 32-bit cells.
    pub fn prop_cells(&mut self, name: &str, cells: &[u32]) {
        let mut v = Vec::with_capacity(cells.len() * 4);
        for c in cells {
            v.extend_from_slice(&c.to_be_bytes());
        }
        self.prop(name, &v);
    }

    /// A single cell.
    pub fn prop_u32(&mut self, name: &str, v: u32) {
        self.prop_cells(name, &[v]);
    }

    /// A list of 64-bit values, each as two cells.
    pub fn prop_u64s(&mut self, name: &str, vals: &[u64]) {
        let mut v = Vec::with_capacity(vals.len() * 8);
        for x in vals {
            v.extend_from_slice(&x.to_be_bytes());
        }
        self.prop(name, &v);
    }

    /// A string.
    pub fn prop_str(&mut self, name: &str, s: &str) {
        self.prop_strs(name, &[s]);
    }

    /// A string list.
    pub fn prop_strs(&mut self, name: &str, list: &[&str]) {
        let mut v = Vec::new();
        for s in list {
            v.extend_from_slice(s.as_bytes());
            v.push(0);
        }
        self.prop(name, &v);
    }

    /// Produces the blob; `None` if a node is still open.
    pub fn finish(mut self, boot_cpuid: u32) -> Option<Vec<u8>> {
        if self.depth != 0 {
            return None;
        }
        self.word(END);
        let rsvmap = RSVMAP * (self.reserved.len() + 1);
        let off_struct = HEADER + rsvmap;
        let off_strings = off_struct + self.structs.len();
        let total = off_strings + self.strings.len();
        let mut out = Vec::with_capacity(total);
        for w in [
            MAGIC,
            total as u32,
            off_struct as u32,
            off_strings as u32,
            HEADER as u32,
            17,
            16,
            boot_cpuid,
            self.strings.len() as u32,
            self.structs.len() as u32,
        ] {
            out.extend_from_slice(&w.to_be_bytes());
        }
        for (b, sz) in &self.reserved {
            out.extend_from_slice(&b.to_be_bytes());
            out.extend_from_slice(&sz.to_be_bytes());
        }
        out.extend_from_slice(&[0; RSVMAP]);
        out.extend_from_slice(&self.structs);
        out.extend_from_slice(&self.strings);
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_through_parser() {
        let mut w = FdtWriter::new();
        w.begin_node("");
        w.prop_u32("#address-cells", 2);
        w.prop_u32("#size-cells", 2);
        w.prop_str("compatible", "test,board");
        w.begin_node("memory@40000000");
        w.prop_str("device_type", "memory");
        w.prop_u64s("reg", &[0x4000_0000, 0x200_0000]);
        w.end_node();
        w.begin_node("chosen");
        w.prop_str("bootargs", "mode=good");
        w.prop_empty("flag");
        w.end_node();
        w.end_node();
        let blob = w.finish(0).unwrap();
        let fdt = fdt::Fdt::new(&blob).unwrap();
        assert_eq!(fdt.root().compatible().first(), "test,board");
        let r = fdt.memory().regions().next().unwrap();
        assert_eq!((r.starting_address as u64, r.size), (0x4000_0000, Some(0x200_0000)));
        assert_eq!(fdt.chosen().bootargs(), Some("mode=good"));
        assert!(fdt.find_node("/chosen").unwrap().property("flag").is_some());
        // "compatible" appears once in the string table even if used twice.
        assert_eq!(blob.windows(10).filter(|s| s == b"compatible").count(), 1);
    }

    #[test]
    fn unbalanced_tree_refused() {
        let mut w = FdtWriter::new();
        w.begin_node("");
        assert!(w.finish(0).is_none());
    }
}
