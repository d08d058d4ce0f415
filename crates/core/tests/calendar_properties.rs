//! Property tests for the calendar maths retention rests on: durations added on the UTC
//! calendar, their ordering for every start date, the clamp of a tier's retention to a type's
//! range, expiry buckets and the grace a shortened retention waits out.

use custodian_core::duration::{CalDuration, Unit};
use custodian_core::retention::{
    Basis, EffectiveRetention, Expiry, bucket_closes_at, recomputed_expiry,
};
use jiff::{SignedDuration, Timestamp};
use proptest::prelude::*;
use std::cmp::Ordering;

/// Instants from 1970 to about 2200, to the microsecond.
fn instant() -> impl Strategy<Value = Timestamp> {
    (0i64..7_258_118_400_000_000).prop_map(|us| Timestamp::from_microsecond(us).unwrap())
}

fn unit() -> impl Strategy<Value = Unit> {
    prop_oneof![
        Just(Unit::Hours),
        Just(Unit::Days),
        Just(Unit::Weeks),
        Just(Unit::Months),
        Just(Unit::Years),
    ]
}

/// Durations up to about 30 years in any unit.
fn duration() -> impl Strategy<Value = CalDuration> {
    (unit(), 1u32..=360).prop_map(|(unit, n)| {
        let n = match unit {
            Unit::Hours => n * 24,
            Unit::Years => n % 30 + 1,
            _ => n,
        };
        CalDuration::new(n, unit).unwrap()
    })
}

fn tier(
    base: CalDuration,
    min: Option<CalDuration>,
    max: Option<CalDuration>,
) -> EffectiveRetention {
    EffectiveRetention::Duration {
        base,
        basis: Basis::TypeFixed,
        min,
        max,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn a_duration_always_moves_forward_and_keeps_order(d in duration(), a in instant(), b in instant()) {
        let (ea, eb) = (d.after(a).unwrap(), d.after(b).unwrap());
        prop_assert!(ea > a);
        // Later starts never end earlier.
        if a <= b {
            prop_assert!(ea <= eb, "{d} after {a} = {ea}, after {b} = {eb}");
        }
    }

    #[test]
    fn an_order_for_all_starts_holds_from_every_start(x in duration(), y in duration(), start in instant()) {
        let (ex, ey) = (x.after(start).unwrap(), y.after(start).unwrap());
        match x.partial_cmp_for_all_starts(&y) {
            Some(Ordering::Less) => prop_assert!(ex < ey, "{x} < {y} from {start}"),
            Some(Ordering::Greater) => prop_assert!(ex > ey, "{x} > {y} from {start}"),
            Some(Ordering::Equal) => prop_assert_eq!(ex, ey),
            None => {}
        }
        prop_assert_eq!(
            x.partial_cmp_for_all_starts(&y),
            y.partial_cmp_for_all_starts(&x).map(Ordering::reverse)
        );
    }

    #[test]
    fn a_clamped_expiry_stays_within_the_range(
        base in duration(), lo in duration(), hi in duration(), start in instant()
    ) {
        let (mut lo_at, mut hi_at) = (lo.after(start).unwrap(), hi.after(start).unwrap());
        let (lo, hi) = if lo_at <= hi_at { (lo, hi) } else {
            std::mem::swap(&mut lo_at, &mut hi_at);
            (hi, lo)
        };
        let Expiry::At(t) = tier(base, Some(lo), Some(hi)).expiry(start) else {
            return Err(TestCaseError::fail("a duration retention always expires"));
        };
        prop_assert!(lo_at <= t && t <= hi_at, "{base} in [{lo}, {hi}] from {start}: {t}");
        let unclamped = base.after(start).unwrap();
        if lo_at <= unclamped && unclamped <= hi_at {
            prop_assert_eq!(t, unclamped);
        }
    }

    #[test]
    fn a_static_duration_agrees_with_the_calendar(
        base in duration(), lo in duration(), hi in duration(), start in instant()
    ) {
        let retention = tier(base, Some(lo), Some(hi));
        if let Some((d, _)) = retention.static_duration() {
            prop_assert_eq!(retention.expiry(start), Expiry::At(d.after(start).unwrap()));
        }
    }

    #[test]
    fn a_dated_bucket_closes_within_a_day_after_its_records_expire(
        expiry in instant(), ingest in instant()
    ) {
        let bucket = Expiry::At(expiry).bucket(ingest);
        let closes = bucket_closes_at(&bucket).unwrap();
        prop_assert!(closes > expiry, "{bucket} closes at {closes}, before {expiry}");
        prop_assert!(closes.duration_since(expiry) <= SignedDuration::from_hours(24));
        // Every record of the same UTC day lands in the same bucket.
        let same_day = Timestamp::from_second(closes.as_second() - 1).unwrap();
        prop_assert_eq!(Expiry::At(same_day).bucket(ingest), bucket);
    }

    #[test]
    fn waiting_buckets_close_when_their_arrival_month_ends(ingest in instant()) {
        for expiry in [Expiry::Never, Expiry::PendingEvent("ticket_closed".into())] {
            let bucket = expiry.bucket(ingest);
            let closes = bucket_closes_at(&bucket).unwrap();
            prop_assert!(closes > ingest);
            prop_assert!(closes.duration_since(ingest) <= SignedDuration::from_hours(31 * 24));
        }
    }

    #[test]
    fn a_recomputed_expiry_never_ends_before_the_grace_unless_it_already_did(
        old in instant(), new in instant(), changed_at in instant(), grace in duration()
    ) {
        let grace_end = grace.after(changed_at).unwrap();
        let got = recomputed_expiry(Some(old), Some(new), changed_at, Some(&grace)).unwrap();
        if new >= old {
            prop_assert_eq!(got, new, "lengthened: at once");
        } else {
            // Shortened: never later than before, never before the grace ends (unless the
            // record was due even sooner), never before the new expiry.
            prop_assert!(got <= old);
            prop_assert!(got >= new);
            prop_assert!(got >= grace_end.min(old));
        }
    }
}
