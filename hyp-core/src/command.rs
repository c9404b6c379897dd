//! The hypervisor console's command language: what an operator types after moving the console
//! focus to the hypervisor (Ctrl-A three times). Parsing only; the hypervisor carries commands
//! out.
//!
//! Invariant: every line parses to a [`Command`] or to an error text that says what was wrong.

/// A parsed command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command<'a> {
    /// Nothing typed.
    Empty,
    /// `help`: lists the commands.
    Help,
    /// `domains`: every domain with its state and memory.
    Domains,
    /// `mem NAME SIZE`: sets a Xen-aware domain's memory target (its balloon follows).
    Mem {
        /// Domain name.
        name: &'a str,
        /// Target in KiB.
        kib: u64,
    },
}

/// The help text, one command a line.
pub const HELP: &[&str] = &[
    "help               this list",
    "domains            each domain: state, vCPUs, memory plan, populated, target",
    "mem NAME SIZE      set a Xen-aware domain's memory target (SIZE: 192M, 196608K, 1G; plain = MiB)",
];

/// Parses a size: a number with an optional K, M or G suffix (plain numbers are MiB); KiB out.
pub fn parse_kib(s: &str) -> Option<u64> {
    let (num, mul) = match s.as_bytes().last()? {
        b'K' | b'k' => (&s[..s.len() - 1], 1),
        b'M' | b'm' => (&s[..s.len() - 1], 1024),
        b'G' | b'g' => (&s[..s.len() - 1], 1024 * 1024),
        _ => (s, 1024),
    };
    if num.is_empty() || !num.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    num.parse::<u64>().ok()?.checked_mul(mul)
}

/// Parses one line.
pub fn parse(line: &str) -> Result<Command<'_>, &'static str> {
    let mut w = line.split_ascii_whitespace();
    let Some(cmd) = w.next() else { return Ok(Command::Empty) };
    let args: [Option<&str>; 3] = [w.next(), w.next(), w.next()];
    match (cmd, args) {
        ("help" | "?", [None, ..]) => Ok(Command::Help),
        ("domains" | "list", [None, ..]) => Ok(Command::Domains),
        ("mem", [Some(name), Some(size), None]) => {
            let kib = parse_kib(size).ok_or("SIZE must be a number with an optional K, M or G suffix")?;
            Ok(Command::Mem { name, kib })
        }
        ("mem", _) => Err("usage: mem NAME SIZE"),
        ("help" | "?" | "domains" | "list", _) => Err("this command takes no arguments"),
        _ => Err("unknown command (type 'help')"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_kib("192"), Some(192 * 1024));
        assert_eq!(parse_kib("192M"), Some(192 * 1024));
        assert_eq!(parse_kib("196608K"), Some(196608));
        assert_eq!(parse_kib("1g"), Some(1024 * 1024));
        for bad in ["", "M", "-1", "1.5G", "12X", "99999999999999999999", "18446744073709551615G"] {
            assert_eq!(parse_kib(bad), None, "{bad}");
        }
    }

    #[test]
    fn lines() {
        assert_eq!(parse("   "), Ok(Command::Empty));
        assert_eq!(parse("help"), Ok(Command::Help));
        assert_eq!(parse(" domains "), Ok(Command::Domains));
        assert_eq!(parse("mem control 192M"), Ok(Command::Mem { name: "control", kib: 192 * 1024 }));
        assert_eq!(parse("mem control"), Err("usage: mem NAME SIZE"));
        assert_eq!(parse("mem control 1 2"), Err("usage: mem NAME SIZE"));
        assert!(parse("mem control lots").is_err());
        assert!(parse("domains now").is_err());
        assert_eq!(parse("reboot"), Err("unknown command (type 'help')"));
    }
}
