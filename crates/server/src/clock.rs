//! The one place that reads the system time. Everything else takes a [`Clock`].

use std::sync::atomic::{AtomicI64, Ordering};

use custodian_core::clock::Clock;
use jiff::{SignedDuration, Timestamp};

#[derive(Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    #[allow(clippy::disallowed_methods)]
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }
}

/// The system time moved by an offset that only grows: simulations and tests jump ahead by
/// months while time keeps flowing, so ids and orderings stay as in production.
#[derive(Debug, Default)]
pub struct ShiftedClock {
    offset_us: AtomicI64,
}

impl ShiftedClock {
    /// Moves the clock `by` ahead (a negative duration is ignored: time never runs back).
    pub fn advance(&self, by: SignedDuration) {
        let us = i64::try_from(by.as_micros()).unwrap_or(i64::MAX).max(0);
        self.offset_us.fetch_add(us, Ordering::SeqCst);
    }
}

impl Clock for ShiftedClock {
    fn now(&self) -> Timestamp {
        let offset = SignedDuration::from_micros(self.offset_us.load(Ordering::SeqCst));
        SystemClock
            .now()
            .saturating_add(offset)
            .unwrap_or(Timestamp::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shifted_clock_only_moves_ahead() {
        let clock = ShiftedClock::default();
        let start = clock.now();
        clock.advance(SignedDuration::from_hours(24 * 365));
        let later = clock.now();
        assert!(later >= start + SignedDuration::from_hours(24 * 365));
        clock.advance(SignedDuration::from_hours(-48));
        assert!(clock.now() >= later);
    }
}
