//! The block protocol's shape, negotiated by blkfront (`blkfront.rs`, target-only) and
//! host-tested here: which optional features a frontend asks for (persistent grants, indirect
//! requests), and how big and how many its requests are given what the backend offers.
//!
//! Invariants: every shape fits the one-page ring (32 entries); an indirect request's segment
//! list fits one page.

/// Segments per plain request (`BLKIF_MAX_SEGMENTS_PER_REQUEST`).
pub const SEGS: usize = 11;
/// Plain requests in flight at most (each with its own `SEGS` pages; the ring holds 32).
pub const DEPTH: usize = 16;
/// Segments per indirect request (one indirect page holds up to 512 descriptors; the backend
/// must offer at least this many).
pub const IND_SEGS: usize = 64;
/// Indirect requests in flight at most (each with its own `IND_SEGS` pages and indirect page).
pub const IND_DEPTH: usize = 8;

// Every shape fits the ring (32 entries), and a segment list fits one page.
const _: () = assert!(DEPTH <= 32 && IND_DEPTH <= DEPTH && IND_SEGS * 8 <= 4096);

/// The protocol features a blkfront asks for (both on by default).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Features {
    /// Persistent grants.
    pub persistent: bool,
    /// Indirect requests, when the backend offers them.
    pub indirect: bool,
}

impl Default for Features {
    fn default() -> Self {
        Self { persistent: true, indirect: true }
    }
}

impl Features {
    /// From a comma-separated list such as `nopersistent,noindirect` (a boot argument): each
    /// `no<feature>` turns one off; unknown words are refused.
    pub fn parse(s: &str) -> Result<Self, &str> {
        let mut f = Self::default();
        for w in s.split(',').filter(|w| !w.is_empty()) {
            match w {
                "nopersistent" => f.persistent = false,
                "noindirect" => f.indirect = false,
                "persistent" => f.persistent = true,
                "indirect" => f.indirect = true,
                other => return Err(other),
            }
        }
        Ok(f)
    }
}

/// The request shape a connection uses: segments per request and requests in flight.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shape {
    /// Pages one request moves.
    pub segs: usize,
    /// Requests in flight at most.
    pub depth: usize,
    /// Requests are indirect.
    pub indirect: bool,
}

impl Shape {
    /// What to use given our features and the backend's `feature-max-indirect-segments`.
    pub fn negotiate(want: Features, backend_max_indirect: Option<u64>) -> Self {
        match backend_max_indirect {
            Some(n) if want.indirect && n >= IND_SEGS as u64 => {
                Self { segs: IND_SEGS, depth: IND_DEPTH, indirect: true }
            }
            _ => Self { segs: SEGS, depth: DEPTH, indirect: false },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn features_from_boot_arguments() {
        assert_eq!(Features::parse(""), Ok(Features::default()));
        assert_eq!(Features::parse("nopersistent"), Ok(Features { persistent: false, indirect: true }));
        assert_eq!(Features::parse("noindirect,nopersistent"), Ok(Features { persistent: false, indirect: false }));
        assert_eq!(Features::parse("nope"), Err("nope"));
    }

    #[test]
    fn indirect_requests_only_when_both_sides_have_them() {
        let plain = Shape { segs: SEGS, depth: DEPTH, indirect: false };
        let ind = Shape { segs: IND_SEGS, depth: IND_DEPTH, indirect: true };
        assert_eq!(Shape::negotiate(Features::default(), Some(256)), ind);
        assert_eq!(Shape::negotiate(Features::default(), Some(64)), ind);
        assert_eq!(Shape::negotiate(Features::default(), Some(32)), plain, "too few indirect segments");
        assert_eq!(Shape::negotiate(Features::default(), None), plain, "a backend without the feature");
        assert_eq!(Shape::negotiate(Features { indirect: false, persistent: true }, Some(256)), plain);
    }
}
