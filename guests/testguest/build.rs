//! Links the guest at Xen's guest RAM base (0x4000_0000), text offset 0.
use std::{env, fs, path::PathBuf};

fn main() {
    let out = PathBuf::from(env::var("OUT_DIR").unwrap());
    let script = r#"ENTRY(_start)
SECTIONS {
  . = 0x40000000;
  __image_start = .;
  .text : { KEEP(*(.text.head)) *(.text .text.*) }
  .rodata : ALIGN(16) { *(.rodata .rodata.*) }
  .data : ALIGN(4096) { *(.data .data.*) *(.got .got.*) }
  .bss (NOLOAD) : ALIGN(4096) { __bss_start = .; *(.bss .bss.*) *(COMMON) . = ALIGN(16); __bss_end = .; }
  . = ALIGN(4096);
  __image_end = .;
  __image_size = __image_end - __image_start;
  /DISCARD/ : { *(.comment) *(.note*) *(.eh_frame*) }
}
"#;
    fs::write(out.join("guest.ld"), script).unwrap();
    println!("cargo:rustc-link-arg-bins=-T{}", out.join("guest.ld").display());
    println!("cargo:rerun-if-changed=build.rs");
}
