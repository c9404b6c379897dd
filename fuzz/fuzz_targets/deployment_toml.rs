//! Deployment files as `cargo xtask check`, `image` and `run-qemu-aarch64` read them: any
//! text through the TOML parser, the field checks, image resolution and placement, and the
//! shared plan validation. Nothing may panic (every mistake is an error naming the file and
//! the field); an accepted deployment keeps its domains' memory inside the board's RAM.
#![no_main]

#[allow(dead_code)]
#[path = "../../xtask/src/deploy.rs"]
mod deploy;

use deploy::ImageResolver;
use libfuzzer_sys::fuzz_target;
use platforms::Platform;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// A directory with one small file holding a valid arm64 Image header, standing for every
/// image a deployment can name.
fn image() -> &'static Path {
    static IMAGE: OnceLock<PathBuf> = OnceLock::new();
    IMAGE.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("ferrum-fuzz-deploy-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let mut h = vec![0u8; 4096];
        h[16..24].copy_from_slice(&(1u64 << 20).to_le_bytes());
        h[56..60].copy_from_slice(&hyp_core::image::MAGIC.to_le_bytes());
        let p = dir.join("kernel.img");
        std::fs::write(&p, &h).expect("temp image");
        p
    })
}

struct Images;

impl ImageResolver for Images {
    fn hypervisor(&mut self, _: &Platform) -> Result<PathBuf, String> {
        Ok(image().to_path_buf())
    }
    fn guest(&mut self, name: &str) -> Result<PathBuf, String> {
        if name.is_empty() || name.contains('/') {
            return Err(format!("no guest crate '{name}'"));
        }
        Ok(image().to_path_buf())
    }
    fn linux_kernel(&mut self, series: &str) -> Result<PathBuf, String> {
        if series == "6.12" || series == "6.1" {
            Ok(image().to_path_buf())
        } else {
            Err(format!("no series {series}"))
        }
    }
    fn linux_initramfs(&mut self, series: &str) -> Result<PathBuf, String> {
        self.linux_kernel(series)
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let file = image().with_file_name("fuzzed.toml");
    for unchecked in [false, true] {
        if let Ok(dep) = deploy::load_text(&file, text, &mut Images, unchecked) {
            if !unchecked {
                for d in &dep.domains {
                    assert!(
                        dep.platform.ram.iter().any(|w| w.base <= d.memory.base.0 && d.memory.end() <= w.base + w.size),
                        "accepted domain '{}' at {} outside the board's RAM",
                        d.name,
                        d.memory
                    );
                }
            }
        }
    }
});
