//! `ferrum-trace ELF FILE`: decodes the defmt frames the hypervisor's trace build wrote to its
//! trace UART (`FILE`) with the string table of that build's ELF (`ELF`), one line per frame:
//! the time since boot, the level and the event. The hypervisor uses defmt's raw encoding and
//! only ever writes whole frames, so a capture decodes from its first byte to its last; with an
//! encoding that frames its output (rzCOBS) a damaged frame would be skipped and counted, with
//! the raw one decoding stops there with an error naming how many frames came before.
//!
//! `cargo xtask trace` runs it with the ELF the last trace build left.

use defmt_decoder::{DecodeError, Table};
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [elf, file] = &args[..] else {
        eprintln!("usage: ferrum-trace ELF FILE");
        return ExitCode::from(2);
    };
    match run(elf, file) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ferrum-trace: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(elf: &str, file: &str) -> Result<(), String> {
    let elf_bytes = std::fs::read(elf).map_err(|e| format!("{elf}: {e}"))?;
    let table = Table::parse(&elf_bytes)
        .map_err(|e| format!("{elf}: {e}"))?
        .ok_or_else(|| format!("{elf}: no .defmt section: not a trace build of the hypervisor"))?;
    let data = std::fs::read(file).map_err(|e| format!("{file}: {e}"))?;
    let mut dec = table.new_stream_decoder();
    dec.received(&data);
    let (mut frames, mut bad) = (0u64, 0u64);
    loop {
        match dec.decode() {
            Ok(f) => {
                frames += 1;
                let level = f.level().map_or("", |l| l.as_str());
                let ts = f.display_timestamp().map(|t| t.to_string()).unwrap_or_default();
                println!("{ts:>12} {level:<5} {}", f.display_message());
            }
            Err(DecodeError::UnexpectedEof) => break,
            Err(DecodeError::Malformed) if table.encoding().can_recover() => bad += 1,
            Err(DecodeError::Malformed) => return Err(format!("{file}: malformed frame after {frames} frames")),
        }
    }
    eprintln!("ferrum-trace: {frames} frames decoded from {file} ({} bytes), {bad} skipped", data.len());
    Ok(())
}
