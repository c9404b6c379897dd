//! Generates the linker script for the selected board: the image is linked where U-Boot's
//! `booti` puts it (RAM base + text offset of the platform record).
use std::{env, fs, path::PathBuf};

fn main() {
    let p = if env::var_os("CARGO_FEATURE_PLATFORM_RPI4").is_some() { &platforms::RPI4 } else { &platforms::QEMU_VIRT };
    let out = PathBuf::from(env::var("OUT_DIR").unwrap());
    let script = format!(
        r#"ENTRY(_start)
SECTIONS {{
  . = {base:#x};
  __image_start = .;
  .text : {{ KEEP(*(.text.head)) *(.text .text.*) }}
  .rodata : ALIGN(16) {{ *(.rodata .rodata.*) }}
  .data : ALIGN(4096) {{ *(.data .data.*) *(.got .got.*) }}
  .bss (NOLOAD) : ALIGN(4096) {{ __bss_start = .; *(.bss .bss.*) *(COMMON) . = ALIGN(16); __bss_end = .; }}
  . = ALIGN(4096);
  __image_end = .;
  __image_size = __image_end - __image_start;
  /DISCARD/ : {{ *(.comment) *(.note*) *(.eh_frame*) }}
}}
ASSERT(__image_end - __image_start <= {size:#x}, "hypervisor image larger than its reserved region")
"#,
        base = p.hyp_base,
        size = p.hyp_size
    );
    fs::write(out.join("link.ld"), script).unwrap();
    println!("cargo:rustc-link-arg-bins=-T{}", out.join("link.ld").display());
    // The trace build keeps defmt's interned strings in a non-loaded `.defmt` section (its
    // linker script comes from the defmt crate's build output, on the link search path).
    if env::var_os("CARGO_FEATURE_TRACE").is_some() {
        println!("cargo:rustc-link-arg-bins=-Tdefmt.x");
    }
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=CARGO_FEATURE_PLATFORM_RPI4");
}
