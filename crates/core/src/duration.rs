//! Calendar durations as written in a policy (`24h`, `90d`, `2w`, `12mo`, `7y`) and their exact
//! addition to a UTC instant.
//!
//! Months and years are calendar units, not a number of seconds: 31 January plus one month is
//! 28 (or 29) February, and 29 February plus one year is 28 February. Two durations of different
//! unit families (days against months) can only be ordered when the order holds for every start
//! date; [`CalDuration::partial_cmp_for_all_starts`] says when it does.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

use jiff::tz::TimeZone;
use jiff::{Span, Timestamp, ToSpan};

use crate::error::DurationError;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Unit {
    Hours,
    Days,
    Weeks,
    Months,
    Years,
}

impl Unit {
    fn suffix(self) -> &'static str {
        match self {
            Unit::Hours => "h",
            Unit::Days => "d",
            Unit::Weeks => "w",
            Unit::Months => "mo",
            Unit::Years => "y",
        }
    }

    /// Upper bound per unit, about 200 years, so that expiry maths never overflows.
    fn max_amount(self) -> u32 {
        match self {
            Unit::Hours => 200 * 366 * 24,
            Unit::Days => 200 * 366,
            Unit::Weeks => 200 * 53,
            Unit::Months => 200 * 12,
            Unit::Years => 200,
        }
    }
}

/// A positive duration in one calendar unit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CalDuration {
    amount: u32,
    unit: Unit,
}

pub const VALID_DURATION_FORMS: &str = "a whole number followed by h (hours), d (days), w (weeks), mo (months) or y (years), e.g. 24h, 90d, 12mo, 7y";

impl CalDuration {
    pub fn new(amount: u32, unit: Unit) -> Result<Self, DurationError> {
        if amount == 0 {
            return Err(DurationError::Zero);
        }
        if amount > unit.max_amount() {
            return Err(DurationError::TooLong {
                max: format!("{}{}", unit.max_amount(), unit.suffix()),
            });
        }
        Ok(Self { amount, unit })
    }

    pub fn amount(&self) -> u32 {
        self.amount
    }

    pub fn unit(&self) -> Unit {
        self.unit
    }

    fn span(&self) -> Span {
        let n = i64::from(self.amount);
        match self.unit {
            Unit::Hours => n.hours(),
            Unit::Days => n.days(),
            Unit::Weeks => n.weeks(),
            Unit::Months => n.months(),
            Unit::Years => n.years(),
        }
    }

    /// `start + self`, computed on the UTC calendar. `None` only past the year 9999.
    pub fn after(&self, start: Timestamp) -> Option<Timestamp> {
        start
            .to_zoned(TimeZone::UTC)
            .checked_add(self.span())
            .ok()
            .map(|z| z.timestamp())
    }

    /// Length in whole months when the unit is a calendar month or year.
    fn months(&self) -> Option<u32> {
        match self.unit {
            Unit::Months => Some(self.amount),
            Unit::Years => Some(self.amount * 12),
            _ => None,
        }
    }

    /// Length in hours when the unit has a fixed length (UTC has no daylight saving).
    fn fixed_hours(&self) -> Option<u64> {
        let n = u64::from(self.amount);
        match self.unit {
            Unit::Hours => Some(n),
            Unit::Days => Some(n * 24),
            Unit::Weeks => Some(n * 24 * 7),
            Unit::Months | Unit::Years => None,
        }
    }

    /// Shortest and longest length in seconds over every start day of a four-year window that
    /// holds one leap year: the extremes of calendar months repeat with that period (the
    /// centurial rule only removes leap days, which the window already has years without).
    fn bounds_secs(&self) -> (i64, i64) {
        if let Some(h) = self.fixed_hours() {
            let s = h as i64 * 3600;
            return (s, s);
        }
        let first = jiff::civil::date(2023, 1, 1);
        let (mut lo, mut hi) = (i64::MAX, i64::MIN);
        for offset in 0..(365 * 3 + 366) {
            let day = first
                .checked_add(offset.days())
                .expect("dates of 2023-2026 are valid");
            let start = day
                .to_zoned(TimeZone::UTC)
                .expect("UTC dates always exist")
                .timestamp();
            let end = self.after(start).expect("bounded durations never overflow");
            let secs = end.as_second() - start.as_second();
            lo = lo.min(secs);
            hi = hi.max(secs);
        }
        (lo, hi)
    }

    /// Orders two durations when the order is the same from every start instant, e.g.
    /// `180d < 12mo` always, `1y == 12mo` always, but `30d` against `1mo` depends on the month.
    pub fn partial_cmp_for_all_starts(&self, other: &CalDuration) -> Option<Ordering> {
        if let (Some(a), Some(b)) = (self.months(), other.months()) {
            return Some(a.cmp(&b));
        }
        if let (Some(a), Some(b)) = (self.fixed_hours(), other.fixed_hours()) {
            return Some(a.cmp(&b));
        }
        let (a_lo, a_hi) = self.bounds_secs();
        let (b_lo, b_hi) = other.bounds_secs();
        if a_hi < b_lo {
            Some(Ordering::Less)
        } else if a_lo > b_hi {
            Some(Ordering::Greater)
        } else {
            None
        }
    }
}

impl fmt::Display for CalDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.amount, self.unit.suffix())
    }
}

impl FromStr for CalDuration {
    type Err = DurationError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let digits_end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let (digits, suffix) = s.split_at(digits_end);
        if digits.is_empty() {
            return Err(DurationError::Malformed);
        }
        let unit = match suffix {
            "h" => Unit::Hours,
            "d" => Unit::Days,
            "w" => Unit::Weeks,
            "mo" => Unit::Months,
            "y" => Unit::Years,
            "m" => return Err(DurationError::AmbiguousMonth),
            "" => return Err(DurationError::MissingUnit),
            other => return Err(DurationError::UnknownUnit(other.to_owned())),
        };
        let amount: u32 = digits.parse().map_err(|_| DurationError::TooLong {
            max: format!("{}{}", unit.max_amount(), unit.suffix()),
        })?;
        CalDuration::new(amount, unit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> CalDuration {
        s.parse().unwrap()
    }

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn parses_every_unit_and_displays_it_back() {
        for s in ["24h", "90d", "2w", "12mo", "7y", "1d"] {
            assert_eq!(d(s).to_string(), s);
        }
        assert_eq!(d(" 30d ").to_string(), "30d");
    }

    #[test]
    fn rejects_bad_forms_with_a_reason() {
        assert_eq!("".parse::<CalDuration>(), Err(DurationError::Malformed));
        assert_eq!("d".parse::<CalDuration>(), Err(DurationError::Malformed));
        assert_eq!("90".parse::<CalDuration>(), Err(DurationError::MissingUnit));
        assert_eq!("0d".parse::<CalDuration>(), Err(DurationError::Zero));
        assert_eq!(
            "12m".parse::<CalDuration>(),
            Err(DurationError::AmbiguousMonth)
        );
        assert_eq!(
            "3s".parse::<CalDuration>(),
            Err(DurationError::UnknownUnit("s".into()))
        );
        assert!(matches!(
            "201y".parse::<CalDuration>(),
            Err(DurationError::TooLong { .. })
        ));
        assert!(matches!(
            "99999999999d".parse::<CalDuration>(),
            Err(DurationError::TooLong { .. })
        ));
        assert_eq!("-3d".parse::<CalDuration>(), Err(DurationError::Malformed));
        assert!("1.5y".parse::<CalDuration>().is_err());
    }

    #[test]
    fn months_clamp_to_the_end_of_the_month() {
        assert_eq!(
            d("1mo").after(ts("2025-01-31T10:00:00Z")),
            Some(ts("2025-02-28T10:00:00Z"))
        );
        assert_eq!(
            d("1mo").after(ts("2024-01-31T10:00:00Z")),
            Some(ts("2024-02-29T10:00:00Z"))
        );
        assert_eq!(
            d("12mo").after(ts("2024-02-29T00:00:00Z")),
            Some(ts("2025-02-28T00:00:00Z"))
        );
        assert_eq!(
            d("4y").after(ts("2024-02-29T00:00:00Z")),
            Some(ts("2028-02-29T00:00:00Z"))
        );
    }

    #[test]
    fn days_are_exactly_24_hours_in_utc() {
        assert_eq!(
            d("90d").after(ts("2025-03-01T00:00:00Z")),
            Some(ts("2025-05-30T00:00:00Z"))
        );
        assert_eq!(
            d("24h").after(ts("2024-02-28T12:00:00Z")),
            Some(ts("2024-02-29T12:00:00Z"))
        );
        assert_eq!(
            d("365d").after(ts("2024-01-01T00:00:00Z")),
            Some(ts("2024-12-31T00:00:00Z"))
        );
        assert_eq!(
            d("1y").after(ts("2024-01-01T00:00:00Z")),
            Some(ts("2025-01-01T00:00:00Z"))
        );
    }

    #[test]
    fn orders_when_the_order_holds_for_every_start() {
        use Ordering::*;
        let cmp = |a: &str, b: &str| d(a).partial_cmp_for_all_starts(&d(b));
        assert_eq!(cmp("1y", "12mo"), Some(Equal));
        assert_eq!(cmp("180d", "12mo"), Some(Less));
        assert_eq!(cmp("24mo", "36mo"), Some(Less));
        assert_eq!(cmp("48h", "2d"), Some(Equal));
        assert_eq!(cmp("2w", "15d"), Some(Less));
        assert_eq!(cmp("366d", "1y"), None);
        assert_eq!(cmp("367d", "1y"), Some(Greater));
        assert_eq!(cmp("364d", "1y"), Some(Less));
        assert_eq!(cmp("30d", "1mo"), None);
        assert_eq!(cmp("27d", "1mo"), Some(Less));
        assert_eq!(cmp("32d", "1mo"), Some(Greater));
        assert_eq!(cmp("1mo", "32d"), Some(Less));
    }

    #[test]
    fn the_largest_durations_never_overflow_from_today() {
        for s in ["200y", "2400mo", "73200d"] {
            assert!(d(s).after(ts("2026-11-23T00:00:00Z")).is_some());
        }
    }
}
