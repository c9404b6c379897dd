//! The arm64 Linux `Image` header (Documentation/arch/arm64/booting.rst): what U-Boot's `booti`
//! reads to place the hypervisor, and what the hypervisor reads to place a guest kernel.

/// Header size in bytes.
pub const HEADER_SIZE: usize = 64;
/// `"ARM\x64"` at offset 56.
pub const MAGIC: u32 = 0x644d_5241;

/// The fields of an Image header that matter for placement.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ImageHeader {
    /// Offset from a 2 MiB aligned RAM base at which the image must be placed.
    pub text_offset: u64,
    /// Bytes the image occupies once loaded, BSS included (0 in very old kernels).
    pub image_size: u64,
    /// Flags: bit 0 big-endian, bits 1-2 page size, bit 3 placement anywhere.
    pub flags: u64,
}

/// Why a header was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImageError {
    /// Shorter than a header.
    TooShort,
    /// No `ARM\x64` magic.
    BadMagic,
    /// A big-endian kernel.
    BigEndian,
    /// Text offset not below 2 MiB or not 4 KiB aligned.
    BadTextOffset,
}

impl core::fmt::Display for ImageError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Self::TooShort => "shorter than an arm64 Image header",
            Self::BadMagic => "not an arm64 Image (no ARM\\x64 magic at offset 56)",
            Self::BigEndian => "big-endian images are not supported",
            Self::BadTextOffset => "text_offset must be 4 KiB aligned and below 2 MiB",
        })
    }
}

fn le64(b: &[u8], off: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[off..off + 8]);
    u64::from_le_bytes(a)
}

/// Parses the header at the start of `image`.
pub fn parse(image: &[u8]) -> Result<ImageHeader, ImageError> {
    if image.len() < HEADER_SIZE {
        return Err(ImageError::TooShort);
    }
    let magic = u32::from_le_bytes([image[56], image[57], image[58], image[59]]);
    if magic != MAGIC {
        return Err(ImageError::BadMagic);
    }
    let h = ImageHeader { text_offset: le64(image, 8), image_size: le64(image, 16), flags: le64(image, 24) };
    if h.flags & 1 != 0 {
        return Err(ImageError::BigEndian);
    }
    if h.text_offset >= 2 << 20 || h.text_offset & 0xfff != 0 {
        return Err(ImageError::BadTextOffset);
    }
    Ok(h)
}

impl ImageHeader {
    /// Bytes of RAM needed from the 2 MiB aligned base: text offset plus loaded size (or the
    /// file size when the header gives none).
    pub fn footprint(&self, file_size: u64) -> u64 {
        self.text_offset.saturating_add(self.image_size.max(file_size))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(text: u64, size: u64, flags: u64) -> [u8; 64] {
        let mut h = [0u8; 64];
        h[8..16].copy_from_slice(&text.to_le_bytes());
        h[16..24].copy_from_slice(&size.to_le_bytes());
        h[24..32].copy_from_slice(&flags.to_le_bytes());
        h[56..60].copy_from_slice(&MAGIC.to_le_bytes());
        h
    }

    #[test]
    fn parses_linux_like_header() {
        let h = parse(&header(0, 0x0200_0000, 0xa)).unwrap();
        assert_eq!(h.image_size, 0x200_0000);
        assert_eq!(h.footprint(0x100), 0x200_0000);
        assert_eq!(parse(&header(0x8_0000, 0, 2)).unwrap().footprint(0x1234), 0x8_1234);
    }

    #[test]
    fn rejects_bad_headers() {
        assert_eq!(parse(&[0; 10]), Err(ImageError::TooShort));
        assert_eq!(parse(&[0; 64]), Err(ImageError::BadMagic));
        assert_eq!(parse(&header(0, 0, 1)), Err(ImageError::BigEndian));
        assert_eq!(parse(&header(0x20_0000, 0, 0)), Err(ImageError::BadTextOffset));
        assert_eq!(parse(&header(0x10, 0, 0)), Err(ImageError::BadTextOffset));
    }
}
