//! Retention maths: the rule a data type declares, the effective retention for one tenant, and
//! the expiry of a record. All of it is pure; `now` never appears here, only the record's times.

use std::cmp::Ordering;
use std::fmt;

use jiff::Timestamp;

use crate::duration::CalDuration;
use crate::ids::TierName;

/// What a data type's `retention = …` says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RetentionRule {
    /// The tenant's tier decides, clamped to `[min, max]` where given.
    Tier {
        min: Option<CalDuration>,
        max: Option<CalDuration>,
    },
    /// The same for every tenant (e.g. billing records, 7 years).
    Fixed(CalDuration),
    /// Kept for `keep` after an event (e.g. a ticket closing) reaches custodian.
    AfterEvent { event: String, keep: CalDuration },
    /// Never expires by itself; deleted on request or at account closure.
    UntilDeleted,
}

/// Where the base duration of an effective retention came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Basis {
    Tier(TierName),
    TenantOverride,
    TypeFixed,
}

/// The retention that applies to one tenant's records of one data type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EffectiveRetention {
    Duration {
        base: CalDuration,
        basis: Basis,
        min: Option<CalDuration>,
        max: Option<CalDuration>,
    },
    AfterEvent {
        event: String,
        keep: CalDuration,
    },
    UntilDeleted,
}

/// When a record expires.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Expiry {
    At(Timestamp),
    /// The clock has not started: it starts when this event arrives.
    PendingEvent(String),
    Never,
}

impl EffectiveRetention {
    /// Expiry of a record whose retention clock starts at `start` (its event time). An
    /// `after_event` retention stays pending until [`EffectiveRetention::expiry_after_event`].
    pub fn expiry(&self, start: Timestamp) -> Expiry {
        match self {
            EffectiveRetention::Duration { base, min, max, .. } => {
                clamped_expiry(start, base, min.as_ref(), max.as_ref())
                    .map_or(Expiry::Never, Expiry::At)
            }
            EffectiveRetention::AfterEvent { event, .. } => Expiry::PendingEvent(event.clone()),
            EffectiveRetention::UntilDeleted => Expiry::Never,
        }
    }

    /// Expiry once the event that starts an `after_event` clock arrived at `event_at`.
    pub fn expiry_after_event(&self, event_at: Timestamp) -> Option<Timestamp> {
        match self {
            EffectiveRetention::AfterEvent { keep, .. } => keep.after(event_at),
            _ => None,
        }
    }

    /// The duration that applies from every start date, when one does: the clamped result
    /// when the clamp's outcome does not depend on the calendar.
    pub fn static_duration(&self) -> Option<(CalDuration, Clamp)> {
        let EffectiveRetention::Duration { base, min, max, .. } = self else {
            return None;
        };
        let mut chosen = (*base, Clamp::None);
        if let Some(min) = min {
            match base.partial_cmp_for_all_starts(min)? {
                Ordering::Less => chosen = (*min, Clamp::RaisedToMin),
                Ordering::Equal | Ordering::Greater => {}
            }
        }
        if let Some(max) = max {
            match chosen.0.partial_cmp_for_all_starts(max)? {
                Ordering::Greater => chosen = (*max, Clamp::LoweredToMax),
                Ordering::Equal | Ordering::Less => {}
            }
        }
        Some(chosen)
    }
}

/// How a tenant's retention for a data type changed between two policies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    /// Records are kept for less time: applied only after the grace period.
    Shortened,
    Lengthened,
    /// Neither always shorter nor always longer (it depends on the start date, or the kind
    /// of retention changed, e.g. to `after_event`).
    Reshaped,
}

impl EffectiveRetention {
    /// How `self` (the retention in force) changes when `new` replaces it; `None` when the
    /// two keep every record equally long.
    pub fn change_to(&self, new: &EffectiveRetention) -> Option<Change> {
        use EffectiveRetention as R;
        let order = match (self, new) {
            (R::UntilDeleted, R::UntilDeleted) => Some(Ordering::Equal),
            (R::UntilDeleted, R::Duration { .. } | R::AfterEvent { .. }) => Some(Ordering::Less),
            (R::Duration { .. } | R::AfterEvent { .. }, R::UntilDeleted) => Some(Ordering::Greater),
            (R::AfterEvent { event: a, keep: k }, R::AfterEvent { event: b, keep: l })
                if a == b =>
            {
                l.partial_cmp_for_all_starts(k)
            }
            (R::Duration { .. }, R::Duration { .. }) => {
                match (self.static_duration(), new.static_duration()) {
                    (Some((old, _)), Some((new, _))) => new.partial_cmp_for_all_starts(&old),
                    _ if self == new => Some(Ordering::Equal),
                    _ => None,
                }
            }
            _ => None,
        };
        match order {
            Some(Ordering::Equal) => None,
            Some(Ordering::Less) => Some(Change::Shortened),
            Some(Ordering::Greater) => Some(Change::Lengthened),
            None => Some(Change::Reshaped),
        }
    }
}

/// A record's expiry after a retention change at `changed_at`: what the new retention says,
/// except that a shorter retention never ends a record before `changed_at + grace`, so a
/// policy edit cannot destroy data without notice.
pub fn recomputed_expiry(
    current: Option<Timestamp>,
    new: Option<Timestamp>,
    changed_at: Timestamp,
    grace: Option<&CalDuration>,
) -> Option<Timestamp> {
    match (current, new) {
        (Some(old), Some(new)) if new < old => {
            let floor = grace
                .and_then(|g| g.after(changed_at))
                .unwrap_or(changed_at);
            Some(new.max(floor.min(old)))
        }
        (None, Some(new)) => {
            let floor = grace
                .and_then(|g| g.after(changed_at))
                .unwrap_or(changed_at);
            Some(new.max(floor))
        }
        (_, new) => new,
    }
}

/// How the type's `[min, max]` changed a base retention.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Clamp {
    None,
    RaisedToMin,
    LoweredToMax,
}

fn clamped_expiry(
    start: Timestamp,
    base: &CalDuration,
    min: Option<&CalDuration>,
    max: Option<&CalDuration>,
) -> Option<Timestamp> {
    let mut expiry = base.after(start)?;
    if let Some(floor) = min.and_then(|m| m.after(start)) {
        expiry = expiry.max(floor);
    }
    if let Some(ceiling) = max.and_then(|m| m.after(start)) {
        expiry = expiry.min(ceiling);
    }
    Some(expiry)
}

impl fmt::Display for EffectiveRetention {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EffectiveRetention::Duration {
                base,
                basis,
                min,
                max,
            } => {
                let source = match basis {
                    Basis::Tier(t) => format!("tier {t}"),
                    Basis::TenantOverride => "tenant override".to_owned(),
                    Basis::TypeFixed => "fixed".to_owned(),
                };
                match self.static_duration() {
                    Some((d, Clamp::None)) => write!(f, "{d} ({source})"),
                    Some((d, Clamp::RaisedToMin)) => {
                        write!(f, "{d} ({source} {base}, raised to the type's minimum)")
                    }
                    Some((d, Clamp::LoweredToMax)) => {
                        write!(f, "{d} ({source} {base}, lowered to the type's maximum)")
                    }
                    None => {
                        write!(f, "{base} ({source}) clamped to [")?;
                        match min {
                            Some(m) => write!(f, "{m}")?,
                            None => f.write_str("-")?,
                        }
                        f.write_str(", ")?;
                        match max {
                            Some(m) => write!(f, "{m}")?,
                            None => f.write_str("-")?,
                        }
                        f.write_str("] per start date")
                    }
                }
            }
            EffectiveRetention::AfterEvent { event, keep } => write!(f, "{keep} after {event}"),
            EffectiveRetention::UntilDeleted => f.write_str("until deleted"),
        }
    }
}

impl Expiry {
    /// The expiry bucket: records of one data type in one bucket share a data key and are
    /// destroyed together when the bucket ends. Dated records are bucketed by the UTC day their
    /// retention ends (`d2027-03-01`), so a bucket is due the moment that day is over; records
    /// whose clock has not started (`p<event>-2026-11`) or never runs out (`n2026-11`) by the
    /// UTC month they arrived.
    pub fn bucket(&self, ingest: Timestamp) -> String {
        let utc = |t: Timestamp| t.to_zoned(jiff::tz::TimeZone::UTC).date();
        match self {
            Expiry::At(t) => format!("d{}", utc(*t)),
            Expiry::PendingEvent(event) => {
                let d = utc(ingest);
                format!("p{event}-{:04}-{:02}", d.year(), d.month())
            }
            Expiry::Never => {
                let d = utc(ingest);
                format!("n{:04}-{:02}", d.year(), d.month())
            }
        }
    }
}

/// An instant as people type it: RFC 3339 (`2027-01-31T09:00:00Z`), or a calendar date
/// (`2027-01-31`) meaning its first instant in UTC.
pub fn parse_instant(text: &str) -> Option<Timestamp> {
    text.parse::<Timestamp>().ok().or_else(|| {
        // A date alone: jiff would also take a civil date-time here and drop its time.
        (text.len() == "2027-01-31".len())
            .then(|| text.parse::<jiff::civil::Date>().ok())
            .flatten()
            .and_then(|d| d.to_zoned(jiff::tz::TimeZone::UTC).ok())
            .map(|z| z.timestamp())
    })
}

/// The bucket that records kept by a legal hold move to when the rest of their bucket is
/// destroyed: named by `unique` (a fresh id), closed from the start (ingest never adds to it).
pub fn held_bucket(unique: &str) -> String {
    format!("{HELD_BUCKET_PREFIX}{unique}")
}

const HELD_BUCKET_PREFIX: char = 'h';

/// Whether `bucket` holds records a legal hold kept past their own bucket's destruction.
pub fn is_held_bucket(bucket: &str) -> bool {
    bucket.len() > 1 && bucket.starts_with(HELD_BUCKET_PREFIX)
}

/// When no new record can land in `bucket` any more: the end of its expiry day for dated
/// buckets, the end of its arrival month for pending and never-expiring ones, and always for
/// the buckets of held records. A bucket is destroyed only once it is closed and every record
/// in it has expired, so a late record never finds its bucket's key gone. `None` for a name
/// this version does not make.
pub fn bucket_closes_at(bucket: &str) -> Option<Timestamp> {
    let utc = |d: jiff::civil::Date| d.to_zoned(jiff::tz::TimeZone::UTC).ok();
    if is_held_bucket(bucket) {
        return Some(Timestamp::MIN);
    }
    if let Some(day) = bucket.strip_prefix('d') {
        let date: jiff::civil::Date = day.parse().ok()?;
        return Some(utc(date.tomorrow().ok()?)?.timestamp());
    }
    let month = match bucket.as_bytes().first()? {
        b'p' | b'n' => bucket.get(bucket.len().checked_sub(7)?..)?,
        _ => return None,
    };
    let date: jiff::civil::Date = format!("{month}-01").parse().ok()?;
    Some(utc(date.last_of_month().tomorrow().ok()?)?.timestamp())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn days(n: u32) -> CalDuration {
        CalDuration::new(n, crate::duration::Unit::Days).unwrap()
    }

    fn fixed(d: CalDuration) -> EffectiveRetention {
        EffectiveRetention::Duration {
            base: d,
            basis: Basis::TypeFixed,
            min: None,
            max: None,
        }
    }

    #[test]
    fn changes_are_classified_for_every_start_date() {
        let months = |n| CalDuration::new(n, crate::duration::Unit::Months).unwrap();
        assert_eq!(fixed(days(90)).change_to(&fixed(days(90))), None);
        assert_eq!(
            fixed(days(180)).change_to(&fixed(days(90))),
            Some(Change::Shortened)
        );
        assert_eq!(
            fixed(days(90)).change_to(&fixed(months(12))),
            Some(Change::Lengthened)
        );
        // 30 days against one month depends on the month.
        assert_eq!(
            fixed(days(30)).change_to(&fixed(months(1))),
            Some(Change::Reshaped)
        );
        let never = EffectiveRetention::UntilDeleted;
        assert_eq!(never.change_to(&fixed(days(1))), Some(Change::Shortened));
        assert_eq!(fixed(days(1)).change_to(&never), Some(Change::Lengthened));
        assert_eq!(never.change_to(&never), None);
        let after = |event: &str, keep| EffectiveRetention::AfterEvent {
            event: event.into(),
            keep,
        };
        assert_eq!(
            after("closed", days(90)).change_to(&after("closed", days(30))),
            Some(Change::Shortened)
        );
        assert_eq!(
            after("closed", days(90)).change_to(&after("opened", days(90))),
            Some(Change::Reshaped)
        );
        assert_eq!(
            fixed(days(90)).change_to(&after("closed", days(90))),
            Some(Change::Reshaped)
        );
    }

    #[test]
    fn a_shorter_retention_waits_out_the_grace_period() {
        let changed = ts("2026-12-01T00:00:00Z");
        let grace = days(30);
        let old = Some(ts("2027-06-01T00:00:00Z"));
        // Shortened to before the grace ends: kept until the grace ends.
        assert_eq!(
            recomputed_expiry(old, Some(ts("2026-06-01T00:00:00Z")), changed, Some(&grace)),
            Some(ts("2026-12-31T00:00:00Z"))
        );
        // Shortened to after the grace ends: the new expiry.
        assert_eq!(
            recomputed_expiry(old, Some(ts("2027-03-01T00:00:00Z")), changed, Some(&grace)),
            Some(ts("2027-03-01T00:00:00Z"))
        );
        // Never later than the old expiry, whatever the grace.
        let soon = Some(ts("2026-12-10T00:00:00Z"));
        assert_eq!(
            recomputed_expiry(
                soon,
                Some(ts("2026-12-05T00:00:00Z")),
                changed,
                Some(&grace)
            ),
            soon
        );
        // Lengthened: at once. Until-deleted: no expiry.
        assert_eq!(
            recomputed_expiry(old, Some(ts("2028-01-01T00:00:00Z")), changed, Some(&grace)),
            Some(ts("2028-01-01T00:00:00Z"))
        );
        assert_eq!(recomputed_expiry(old, None, changed, Some(&grace)), None);
        // From until-deleted to a duration: the grace applies too.
        assert_eq!(
            recomputed_expiry(
                None,
                Some(ts("2026-01-01T00:00:00Z")),
                changed,
                Some(&grace)
            ),
            Some(ts("2026-12-31T00:00:00Z"))
        );
        // No grace: the new expiry at once.
        assert_eq!(
            recomputed_expiry(old, Some(ts("2026-06-01T00:00:00Z")), changed, None),
            Some(changed)
        );
    }

    #[test]
    fn held_buckets_are_closed_from_the_start() {
        let b = held_bucket("01kb0000000000000000000000");
        assert_eq!(b, "h01kb0000000000000000000000");
        assert_eq!(bucket_closes_at(&b), Some(Timestamp::MIN));
        assert!(is_held_bucket(&b) && !is_held_bucket("h") && !is_held_bucket("d2027-01-01"));
        assert_eq!(bucket_closes_at("h"), None);
    }

    #[test]
    fn instants_are_rfc3339_or_dates() {
        assert_eq!(
            parse_instant("2027-01-31"),
            Some(ts("2027-01-31T00:00:00Z"))
        );
        assert_eq!(
            parse_instant("2027-01-31T09:30:00+02:00"),
            Some(ts("2027-01-31T07:30:00Z"))
        );
        for bad in [
            "",
            "2027-02-30",
            "31/01/2027",
            "2027-01-31T09:30:00",
            "tomorrow",
        ] {
            assert_eq!(parse_instant(bad), None, "{bad}");
        }
    }

    #[test]
    fn buckets_close_when_no_record_can_land_in_them() {
        assert_eq!(
            bucket_closes_at("d2027-02-28"),
            Some(ts("2027-03-01T00:00:00Z"))
        );
        assert_eq!(
            bucket_closes_at("d2024-12-31"),
            Some(ts("2025-01-01T00:00:00Z"))
        );
        assert_eq!(
            bucket_closes_at("pticket_closed-2026-11"),
            Some(ts("2026-12-01T00:00:00Z"))
        );
        assert_eq!(
            bucket_closes_at("n2024-02"),
            Some(ts("2024-03-01T00:00:00Z"))
        );
        for bad in ["", "d", "d2027-13-01", "x2026-11", "p-2026", "n2026-1x"] {
            assert_eq!(bucket_closes_at(bad), None, "{bad}");
        }
        // Every bucket a record gets closes after the record's expiry or arrival.
        let ingest = ts("2026-11-30T23:59:59Z");
        for expiry in [
            Expiry::At(ts("2027-02-28T23:59:59.999Z")),
            Expiry::PendingEvent("ticket_closed".into()),
            Expiry::Never,
        ] {
            let closes = bucket_closes_at(&expiry.bucket(ingest)).unwrap();
            let floor = match expiry {
                Expiry::At(t) => t,
                _ => ingest,
            };
            assert!(closes > floor, "{expiry:?}");
        }
    }

    fn d(s: &str) -> CalDuration {
        s.parse().unwrap()
    }
    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }
    fn tier(base: &str, min: Option<&str>, max: Option<&str>) -> EffectiveRetention {
        EffectiveRetention::Duration {
            base: d(base),
            basis: Basis::Tier(TierName::new("standard").unwrap()),
            min: min.map(d),
            max: max.map(d),
        }
    }

    #[test]
    fn buckets_follow_the_utc_day_of_expiry_or_the_month_of_arrival() {
        let ingest = ts("2026-11-30T23:59:59Z");
        assert_eq!(
            Expiry::At(ts("2027-02-28T23:59:59.999Z")).bucket(ingest),
            "d2027-02-28"
        );
        assert_eq!(
            Expiry::At(ts("2027-03-01T00:00:00Z")).bucket(ingest),
            "d2027-03-01"
        );
        assert_eq!(
            Expiry::PendingEvent("ticket_closed".into()).bucket(ingest),
            "pticket_closed-2026-11"
        );
        assert_eq!(Expiry::Never.bucket(ts("2027-01-01T00:00:00Z")), "n2027-01");
    }

    #[test]
    fn tier_retention_is_clamped_to_the_type_range() {
        let start = ts("2025-01-15T08:00:00Z");
        // Standard (12 months) for auth logs (24-36 months) is raised to 24 months.
        let raised = tier("12mo", Some("24mo"), Some("36mo"));
        assert_eq!(raised.expiry(start), Expiry::At(ts("2027-01-15T08:00:00Z")));
        assert_eq!(
            raised.static_duration(),
            Some((d("24mo"), Clamp::RaisedToMin))
        );
        // Custom (36+ months, here 60) for app logs (90-180 days) is lowered to 180 days.
        let lowered = tier("60mo", Some("90d"), Some("180d"));
        assert_eq!(
            lowered.expiry(start),
            Expiry::At(ts("2025-07-14T08:00:00Z"))
        );
        assert_eq!(
            lowered.static_duration(),
            Some((d("180d"), Clamp::LoweredToMax))
        );
        // Inside the range: unchanged.
        let inside = tier("180d", Some("90d"), Some("12mo"));
        assert_eq!(inside.expiry(start), Expiry::At(ts("2025-07-14T08:00:00Z")));
        assert_eq!(inside.static_duration(), Some((d("180d"), Clamp::None)));
    }

    #[test]
    fn a_calendar_dependent_clamp_is_decided_per_record() {
        // 30 days against a one-month floor: February starts are raised, others not.
        let r = tier("30d", Some("1mo"), None);
        assert_eq!(r.static_duration(), None);
        assert_eq!(
            r.expiry(ts("2025-02-01T00:00:00Z")),
            Expiry::At(ts("2025-03-03T00:00:00Z"))
        );
        assert_eq!(
            r.expiry(ts("2025-01-01T00:00:00Z")),
            Expiry::At(ts("2025-02-01T00:00:00Z"))
        );
        assert_eq!(
            r.to_string(),
            "30d (tier standard) clamped to [1mo, -] per start date"
        );
    }

    #[test]
    fn after_event_waits_for_its_event() {
        let r = EffectiveRetention::AfterEvent {
            event: "ticket_closed".into(),
            keep: d("90d"),
        };
        assert_eq!(
            r.expiry(ts("2025-01-01T00:00:00Z")),
            Expiry::PendingEvent("ticket_closed".into())
        );
        assert_eq!(
            r.expiry_after_event(ts("2025-03-01T00:00:00Z")),
            Some(ts("2025-05-30T00:00:00Z"))
        );
        assert_eq!(r.to_string(), "90d after ticket_closed");
    }

    #[test]
    fn until_deleted_never_expires() {
        let r = EffectiveRetention::UntilDeleted;
        assert_eq!(r.expiry(ts("2025-01-01T00:00:00Z")), Expiry::Never);
        assert_eq!(r.expiry_after_event(ts("2025-01-01T00:00:00Z")), None);
    }

    #[test]
    fn leap_day_records_expire_on_the_last_day_of_february() {
        let r = EffectiveRetention::Duration {
            base: d("7y"),
            basis: Basis::TypeFixed,
            min: None,
            max: None,
        };
        assert_eq!(
            r.expiry(ts("2024-02-29T23:59:59Z")),
            Expiry::At(ts("2031-02-28T23:59:59Z"))
        );
        assert_eq!(r.to_string(), "7y (fixed)");
    }
}
