//! Audit events: what happened, by whom, to what, and whether it was allowed.
//!
//! An event carries the elements the seed policies ask for (type of action, subsystem, subject
//! and object identifiers, before/after values, UTC time, allowed or denied with a reason) plus
//! the request id. Subject identifiers are tenant-keyed pseudonyms and before/after values are
//! hashes: no payload or personal identifier ever enters the log in clear.
//!
//! [`AuditEvent::canonical_bytes`] is the one encoding that is hashed into the Merkle log: the
//! same event always yields the same bytes (fixed field order, no insignificant whitespace).

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::duration::CalDuration;
use crate::ids::TenantId;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    Allow,
    Deny,
}

/// One audited action. Field order is the canonical order; do not reorder.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditEvent {
    /// When it happened (UTC).
    pub time: Timestamp,
    /// What was done, e.g. `records.ingest`, `records.read`, `auth.authenticate`.
    pub action: String,
    /// Which part of custodian did it, e.g. `api`, `cli`, `sweeper`.
    pub subsystem: String,
    /// Who asked: a principal id such as `token:0123456789abcdef`, or `anonymous`.
    pub actor: String,
    /// The tenant acted on; `None` for system events.
    pub tenant: Option<TenantId>,
    /// Pseudonyms (hex) of the people the action concerned.
    pub subjects: Vec<String>,
    /// Ids of the objects acted on (record ids, token ids, key versions).
    pub objects: Vec<String>,
    /// SHA-256 (hex) of the value before an update, never the value.
    pub before: Option<String>,
    /// SHA-256 (hex) of the value after an update, never the value.
    pub after: Option<String>,
    pub decision: Decision,
    /// Why it was denied (or notable context for an allowed action).
    pub reason: Option<String>,
    /// The request id (`x-request-id`) that carried the action, when there was one.
    pub request_id: Option<String>,
    /// The just-in-time grant the action was allowed under. Absent (and so absent from the
    /// canonical bytes, which keeps earlier entries' encoding) when none was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grant: Option<String>,
}

impl AuditEvent {
    /// The canonical bytes hashed into the log.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        // Serialising a struct of strings, vectors and timestamps cannot fail.
        serde_json::to_vec(self).expect("audit events always serialise")
    }

    /// Parses canonical bytes back, refusing anything that does not re-encode identically.
    pub fn from_canonical(bytes: &[u8]) -> Option<AuditEvent> {
        let event: AuditEvent = serde_json::from_slice(bytes).ok()?;
        (event.canonical_bytes() == bytes).then_some(event)
    }
}

/// The calendar month (UTC) an event falls in, `YYYY-MM`: the unit in which audit entry
/// bodies are sealed and, when retention ends, destroyed.
pub fn period_of(time: Timestamp) -> String {
    let d = time.to_zoned(jiff::tz::TimeZone::UTC).date();
    format!("{:04}-{:02}", d.year(), d.month())
}

/// The first instant of a `YYYY-MM` period, or `None` if `period` is not one.
pub fn period_start(period: &str) -> Option<Timestamp> {
    let (year, month) = period.split_once('-')?;
    if year.len() != 4 || month.len() != 2 {
        return None;
    }
    let date = jiff::civil::Date::new(year.parse().ok()?, month.parse().ok()?, 1).ok()?;
    date.to_zoned(jiff::tz::TimeZone::UTC)
        .ok()
        .map(|z| z.timestamp())
}

/// The latest period whose entries have all been kept for `retention` at `now`: every
/// period up to and including it may be destroyed. A period ends when the next one starts,
/// so its last entry reaches the end of its retention at that moment plus `retention`.
pub fn last_expired_period(now: Timestamp, retention: &CalDuration) -> Option<String> {
    let mut month = now
        .to_zoned(jiff::tz::TimeZone::UTC)
        .date()
        .first_of_month();
    // A retention is at most a few hundred months; the bound only guards against a
    // retention that never ends (a duration whose end is not representable).
    for _ in 0..12_000 {
        let end = month.to_zoned(jiff::tz::TimeZone::UTC).ok()?.timestamp();
        if retention.after(end)? <= now {
            let previous = month.checked_sub(jiff::Span::new().months(1)).ok()?;
            return Some(format!("{:04}-{:02}", previous.year(), previous.month()));
        }
        month = month.checked_sub(jiff::Span::new().months(1)).ok()?;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event() -> AuditEvent {
        AuditEvent {
            time: "2026-11-23T10:00:00.5Z".parse().unwrap(),
            action: "records.read".into(),
            subsystem: "api".into(),
            actor: "token:0123456789abcdef".into(),
            tenant: Some(TenantId::new("acme").unwrap()),
            subjects: vec!["ab".repeat(32)],
            objects: vec!["01M841GZ025FTHY6JFCMEXNJJ7".into()],
            before: None,
            after: None,
            decision: Decision::Allow,
            reason: None,
            request_id: Some("01M841GZ3EW1WAE056QBHCKXGV".into()),
            grant: None,
        }
    }

    #[test]
    fn canonical_bytes_are_stable_and_round_trip() {
        let e = event();
        let bytes = e.canonical_bytes();
        assert_eq!(bytes, event().canonical_bytes());
        assert_eq!(
            std::str::from_utf8(&bytes).unwrap(),
            concat!(
                r#"{"time":"2026-11-23T10:00:00.5Z","action":"records.read","subsystem":"api","#,
                r#""actor":"token:0123456789abcdef","tenant":"acme","#,
                r#""subjects":["abababababababababababababababababababababababababababababababab"],"#,
                r#""objects":["01M841GZ025FTHY6JFCMEXNJJ7"],"before":null,"after":null,"#,
                r#""decision":"allow","reason":null,"request_id":"01M841GZ3EW1WAE056QBHCKXGV"}"#
            )
        );
        assert_eq!(AuditEvent::from_canonical(&bytes), Some(e));
    }

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn periods_are_utc_calendar_months() {
        assert_eq!(period_of(at("2026-11-30T23:59:59.999Z")), "2026-11");
        assert_eq!(period_of(at("2026-12-01T00:00:00Z")), "2026-12");
        assert_eq!(period_of(at("2026-12-01T00:30:00+01:00")), "2026-11");
        assert_eq!(period_start("2026-02"), Some(at("2026-02-01T00:00:00Z")));
        for bad in [
            "2026-13", "2026-1", "26-01", "2026/01", "", "2026-00", "abcd-ef",
        ] {
            assert_eq!(period_start(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_period_expires_when_its_last_instant_has_been_kept_for_the_retention() {
        let months = |n| CalDuration::new(n, crate::duration::Unit::Months).unwrap();
        let days = |n| CalDuration::new(n, crate::duration::Unit::Days).unwrap();
        // November 2023 ends at 2023-12-01; kept 36 months, it may go at 2026-12-01.
        assert_eq!(
            last_expired_period(at("2026-12-01T00:00:00Z"), &months(36)).as_deref(),
            Some("2023-11")
        );
        assert_eq!(
            last_expired_period(at("2026-11-30T23:59:59Z"), &months(36)).as_deref(),
            Some("2023-10")
        );
        // 365 days from 2025-12-01 is 2026-12-01.
        assert_eq!(
            last_expired_period(at("2026-12-01T00:00:00Z"), &days(365)).as_deref(),
            Some("2025-11")
        );
        assert_eq!(
            last_expired_period(at("2026-11-15T00:00:00Z"), &days(1)).as_deref(),
            Some("2026-10")
        );
        // Every period after the one returned is still within its retention.
        for now in [
            "2026-01-31T12:00:00Z",
            "2024-02-29T00:00:00Z",
            "2026-07-01T00:00:00Z",
        ] {
            let now = at(now);
            for n in [1, 12, 36] {
                let last = last_expired_period(now, &months(n)).unwrap();
                let next_start = |p: &str| {
                    let s = period_start(p).unwrap();
                    period_start(&period_of(
                        s.to_zoned(jiff::tz::TimeZone::UTC)
                            .checked_add(jiff::Span::new().months(1))
                            .unwrap()
                            .timestamp(),
                    ))
                    .unwrap()
                };
                let end = next_start(&last);
                assert!(months(n).after(end).unwrap() <= now);
                assert!(months(n).after(next_start(&period_of(end))).unwrap() > now);
            }
        }
    }

    #[test]
    fn non_canonical_or_foreign_bytes_are_refused() {
        let spaced = String::from_utf8(event().canonical_bytes())
            .unwrap()
            .replace(",\"action\"", ", \"action\"");
        assert_eq!(AuditEvent::from_canonical(spaced.as_bytes()), None);
        assert_eq!(AuditEvent::from_canonical(b"{}"), None);
        assert_eq!(AuditEvent::from_canonical(b"\xff"), None);
    }
}
