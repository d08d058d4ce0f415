//! The clock seam. Domain code never reads the system time; it receives a [`Clock`], so tests
//! can move time by years without sleeping.

use jiff::Timestamp;

pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> Timestamp;
}
