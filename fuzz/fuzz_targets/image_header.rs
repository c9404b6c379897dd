//! The arm64 `Image` header of a kernel module, as the hypervisor reads it from the boot
//! medium to place a guest: any bytes, any file size. Nothing may panic; an accepted header
//! is little-endian with a 4 KiB aligned text offset below 2 MiB, and its footprint covers
//! both the text offset and the file.
#![no_main]

use hyp_core::image;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let file_size = data.get(..8).map_or(0, |b| u64::from_le_bytes(b.try_into().unwrap_or([0; 8])));
    for head in [data, data.get(8..).unwrap_or(&[])] {
        if let Ok(h) = image::parse(head) {
            assert_eq!(h.flags & 1, 0);
            assert!(h.text_offset < 2 << 20 && h.text_offset % 4096 == 0);
            let f = h.footprint(file_size);
            assert!(f >= h.text_offset && f >= file_size.min(u64::MAX - h.text_offset));
        }
    }
});
