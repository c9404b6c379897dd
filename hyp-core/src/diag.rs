//! How many diagnostic lines a domain may make the hypervisor print about its own misdeeds
//! (bad MMIO accesses, stage-2 faults, accesses without a syndrome). A hostile domain can
//! trigger one per instruction; printing each would flood the shared console and spend the
//! hypervisor's time on the UART. The first [`BURST`] are printed, then one notice, and the
//! rest are only counted (the summary at power-off shows the count).
//!
//! Invariant: the decision depends only on how many diagnostics the domain had before, so it
//! is a single atomic increment on the trap path.

/// Diagnostics printed per domain before the rest are only counted.
pub const BURST: u32 = 16;

/// What to do with a domain's `n`-th diagnostic (0-based).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Print it.
    Print,
    /// Print it, then say that further ones are counted, not printed.
    PrintLast,
    /// Count it only.
    Count,
}

/// The verdict for diagnostic number `n` (0-based) of one domain.
pub fn verdict(n: u32) -> Verdict {
    match n.checked_add(1) {
        Some(k) if k < BURST => Verdict::Print,
        Some(k) if k == BURST => Verdict::PrintLast,
        _ => Verdict::Count,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_counted() {
        let v: alloc::vec::Vec<Verdict> = (0..BURST + 2).map(verdict).collect();
        assert!(v[..BURST as usize - 1].iter().all(|&x| x == Verdict::Print));
        assert_eq!(v[BURST as usize - 1], Verdict::PrintLast);
        assert_eq!(v[BURST as usize], Verdict::Count);
        assert_eq!(verdict(u32::MAX), Verdict::Count);
    }
}
