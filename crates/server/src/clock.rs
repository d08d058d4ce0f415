//! The one place that reads the system time. Everything else takes a [`Clock`].

use custodian_core::clock::Clock;
use jiff::Timestamp;

#[derive(Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    #[allow(clippy::disallowed_methods)]
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }
}
