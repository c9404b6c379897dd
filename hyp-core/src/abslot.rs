//! A/B deployment slots: the boot disk holds two signed deployments (`slot-a.itb`,
//! `slot-b.itb`) and a small boot-state record (`bootstate.env`, U-Boot's `env export -t`
//! text: `active=a`, `tried=none|a|b`, `tries=N`, `booted=a|b`). These are the rules; U-Boot's
//! boot command
//! (written by xtask) and `hypctl` (`update-deployment`, `commit`) follow them:
//!
//! - an update writes the inactive slot whole first, then marks it tried with N attempts
//!   ([`BootState::update`]): a power cut before that leaves the record as it was;
//! - each boot of a tried slot uses one attempt, recorded before it boots ([`BootState::decide`]);
//!   with no attempt left, the record forgets it and the active slot boots;
//! - when U-Boot refuses the tried slot (signature, hash), the same boot falls back to the
//!   active one ([`BootState::refused`]);
//! - every boot records the slot it boots (`booted`), so the control domain knows what runs;
//!   it confirms a tried slot that booted with [`BootState::commit`]: it becomes the active one
//!   (a slot written in this boot and not booted yet cannot be committed).
//!
//! Invariants: the active slot only changes by a commit of a tried slot that booted; nothing
//! here panics on any record text; an unknown or malformed record reads as slot A active.

use core::fmt::Write;

/// One of the two slots.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Slot {
    /// `slot-a.itb`.
    A,
    /// `slot-b.itb`.
    B,
}

impl Slot {
    /// `a` or `b`.
    pub fn as_str(self) -> &'static str {
        match self {
            Slot::A => "a",
            Slot::B => "b",
        }
    }
    /// The other slot.
    pub fn other(self) -> Slot {
        match self {
            Slot::A => Slot::B,
            Slot::B => Slot::A,
        }
    }
    fn parse(s: &str) -> Option<Slot> {
        match s {
            "a" => Some(Slot::A),
            "b" => Some(Slot::B),
            _ => None,
        }
    }
}

/// The most attempts an update may give its slot.
pub const MAX_TRIES: u32 = 9;

/// The boot-state record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BootState {
    /// The last confirmed slot.
    pub active: Slot,
    /// A slot being tried, if any.
    pub tried: Option<Slot>,
    /// Boots of `tried` still allowed.
    pub tries: u32,
    /// The slot the last boot started.
    pub booted: Option<Slot>,
}

impl Default for BootState {
    fn default() -> Self {
        BootState { active: Slot::A, tried: None, tries: 0, booted: None }
    }
}

/// Why an update or a commit is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AbError {
    /// A commit while no slot is being tried.
    NothingTried,
    /// A commit of a tried slot that has not booted yet (it was written in this boot).
    NotBooted,
    /// An update asked for no attempt, or more than [`MAX_TRIES`].
    BadTries(u32),
}

impl core::fmt::Display for AbError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            AbError::NothingTried => {
                f.write_str("no slot is being tried (the running deployment is already the active one)")
            }
            AbError::NotBooted => f.write_str("the tried slot has not booted yet (reboot into it first)"),
            AbError::BadTries(n) => write!(f, "{n} attempts: give 1 to {MAX_TRIES}"),
        }
    }
}

impl BootState {
    /// Reads a record (`key=value` lines; unknown keys and bad values are ignored).
    pub fn parse(text: &str) -> BootState {
        let mut s = BootState::default();
        for line in text.split(['\n', '\0']) {
            let Some((k, v)) = line.trim().split_once('=') else { continue };
            match k {
                "active" => s.active = Slot::parse(v).unwrap_or(Slot::A),
                "tried" => s.tried = Slot::parse(v),
                "tries" => s.tries = v.parse::<u32>().ok().filter(|n| *n <= MAX_TRIES).unwrap_or(0),
                "booted" => s.booted = Slot::parse(v),
                _ => {}
            }
        }
        if s.tried == Some(s.active) {
            s.tried = None;
        }
        if s.tried.is_none() {
            s.tries = 0;
        }
        s
    }

    /// The record's text.
    pub fn format(&self) -> alloc::string::String {
        let mut out = alloc::string::String::new();
        let _ = write!(
            out,
            "active={}\ntried={}\ntries={}\nbooted={}\n",
            self.active.as_str(),
            self.tried.map_or("none", Slot::as_str),
            self.tries,
            self.booted.map_or("none", Slot::as_str)
        );
        out
    }

    /// The slot an update writes (the inactive one).
    pub fn inactive(&self) -> Slot {
        self.active.other()
    }

    /// The record once the inactive slot holds a new deployment: tried `tries` times.
    pub fn update(&self, tries: u32) -> Result<BootState, AbError> {
        if tries == 0 || tries > MAX_TRIES {
            return Err(AbError::BadTries(tries));
        }
        Ok(BootState { tried: Some(self.inactive()), tries, ..*self })
    }

    /// At a boot: the slot to boot and the record to write before booting it.
    pub fn decide(&self) -> (Slot, BootState) {
        let (slot, s) = match self.tried {
            Some(t) if self.tries > 0 => (t, BootState { tries: self.tries - 1, ..*self }),
            Some(_) => (self.active, BootState { tried: None, tries: 0, ..*self }),
            None => (self.active, *self),
        };
        (slot, BootState { booted: Some(slot), ..s })
    }

    /// The record when the boot loader refused the tried slot: the active one boots now.
    pub fn refused(&self) -> BootState {
        BootState { tried: None, tries: 0, booted: Some(self.active), ..*self }
    }

    /// The record once the running (tried) deployment is confirmed healthy.
    pub fn commit(&self) -> Result<BootState, AbError> {
        match self.tried {
            Some(t) if self.booted == Some(t) => Ok(BootState { active: t, tried: None, tries: 0, booted: Some(t) }),
            Some(_) => Err(AbError::NotBooted),
            None => Err(AbError::NothingTried),
        }
    }

    /// The slot running now (the last boot's).
    pub fn running(&self) -> Slot {
        self.booted.unwrap_or(self.active)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_round_trip_and_bad_text() {
        let s = BootState { active: Slot::B, tried: Some(Slot::A), tries: 2, booted: Some(Slot::B) };
        assert_eq!(BootState::parse(&s.format()), s);
        assert_eq!(s.format(), "active=b\ntried=a\ntries=2\nbooted=b\n");
        // U-Boot's `env export -t` ends with a NUL; unknown keys and junk are ignored.
        assert_eq!(BootState::parse("active=b\ntried=a\ntries=2\nbooted=b\nbootcmd=evil\n\0"), s);
        assert_eq!(BootState::parse(""), BootState::default());
        assert_eq!(BootState::parse("active=c\ntries=99\ntried=x"), BootState::default());
        assert_eq!(BootState::parse("active=a\ntried=a\ntries=3"), BootState::default(), "tried = active is nothing");
    }

    #[test]
    fn an_unconfirmed_update_falls_back_after_its_attempts() {
        let (_, s0) = BootState::default().decide();
        let s1 = s0.update(2).unwrap();
        assert_eq!((s1.tried, s1.tries, s0.inactive()), (Some(Slot::B), 2, Slot::B));
        assert_eq!((s1.running(), s1.commit()), (Slot::A, Err(AbError::NotBooted)), "written, not booted");
        let (b1, s2) = s1.decide();
        assert_eq!((b1, s2.tries, s2.running()), (Slot::B, 1, Slot::B));
        let (b2, s3) = s2.decide();
        assert_eq!((b2, s3.tries), (Slot::B, 0));
        let (b3, s4) = s3.decide();
        assert_eq!((b3, s4), (Slot::A, s0), "no attempt left: back to A, forgotten");
        assert_eq!(s4.commit(), Err(AbError::NothingTried));
        assert_eq!(s0.update(0), Err(AbError::BadTries(0)));
        assert_eq!(s0.update(MAX_TRIES + 1), Err(AbError::BadTries(MAX_TRIES + 1)));
    }

    #[test]
    fn a_confirmed_update_stays_and_a_refused_one_falls_back_at_once() {
        let s1 = BootState::default().update(1).unwrap();
        let (b, s2) = s1.decide();
        assert_eq!((b, s2.running()), (Slot::B, Slot::B));
        let s3 = s2.commit().unwrap();
        assert_eq!(s3, BootState { active: Slot::B, tried: None, tries: 0, booted: Some(Slot::B) });
        assert_eq!(s3.decide(), (Slot::B, s3), "stays on B");
        assert_eq!(s3.inactive(), Slot::A, "the next update writes A");
        let (_, s4) = s3.update(3).unwrap().decide();
        assert_eq!(s4.refused(), s3, "U-Boot refused A: B again, A forgotten");
        assert_eq!(s4.refused().running(), Slot::B);
    }
}
