//! Legal holds: what a hold covers and whether it stops the destruction of a record. While any
//! active hold covers a record, no path may destroy it (sweeper, record delete, erasure,
//! termination, key shredding). Subjects are named by their keyed pseudonym, so a hold never
//! stores a subject id in clear.

use std::fmt;

use jiff::Timestamp;

use crate::ids::DataTypeName;

/// What a hold covers within its tenant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HoldScope {
    /// Every record of the tenant.
    Tenant,
    /// Every record of one data type.
    DataType(DataTypeName),
    /// Every record naming this subject (its keyed pseudonym).
    Subject([u8; 32]),
    /// Every record whose event time is in `[from, to)`.
    EventTime { from: Timestamp, to: Timestamp },
}

/// The facts of a record a hold is decided on.
#[derive(Clone, Copy, Debug)]
pub struct RecordFacts<'a> {
    pub data_type: &'a DataTypeName,
    pub event_time: Timestamp,
    /// Sorted pseudonyms of the record's subjects.
    pub subjects: &'a [[u8; 32]],
}

impl HoldScope {
    pub fn covers(&self, record: &RecordFacts<'_>) -> bool {
        match self {
            HoldScope::Tenant => true,
            HoldScope::DataType(t) => t == record.data_type,
            HoldScope::Subject(p) => record.subjects.binary_search(p).is_ok(),
            HoldScope::EventTime { from, to } => {
                *from <= record.event_time && record.event_time < *to
            }
        }
    }

    /// Whether the scope covers every record of `data_type`, whatever its subjects and time:
    /// then a whole bucket of that type is held without looking at its records.
    pub fn covers_all_of(&self, data_type: &DataTypeName) -> bool {
        match self {
            HoldScope::Tenant => true,
            HoldScope::DataType(t) => t == data_type,
            HoldScope::Subject(_) | HoldScope::EventTime { .. } => false,
        }
    }

    /// The kind, as stored and shown: `tenant`, `data_type`, `subject`, `event_time`.
    pub fn kind(&self) -> &'static str {
        match self {
            HoldScope::Tenant => "tenant",
            HoldScope::DataType(_) => "data_type",
            HoldScope::Subject(_) => "subject",
            HoldScope::EventTime { .. } => "event_time",
        }
    }
}

impl fmt::Display for HoldScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HoldScope::Tenant => f.write_str("the whole tenant"),
            HoldScope::DataType(t) => write!(f, "data type {t}"),
            HoldScope::Subject(p) => {
                f.write_str("subject ")?;
                for b in &p[..6] {
                    write!(f, "{b:02x}")?;
                }
                f.write_str("…")
            }
            HoldScope::EventTime { from, to } => write!(f, "event time in [{from}, {to})"),
        }
    }
}

/// A legal hold as placed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hold {
    pub id: String,
    pub scope: HoldScope,
    pub case_id: String,
    pub reason: String,
    pub placed_by: String,
    pub placed_at: Timestamp,
    pub released: Option<Release>,
}

/// Who released a hold, and when.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Release {
    pub by: String,
    pub at: Timestamp,
}

impl Hold {
    pub fn is_active(&self) -> bool {
        self.released.is_none()
    }
}

/// The ids of the active holds among `holds` that cover `record`, in the order given.
pub fn holds_covering<'h>(holds: &'h [Hold], record: &RecordFacts<'_>) -> Vec<&'h str> {
    holds
        .iter()
        .filter(|h| h.is_active() && h.scope.covers(record))
        .map(|h| h.id.as_str())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn hold(id: &str, scope: HoldScope) -> Hold {
        Hold {
            id: id.into(),
            scope,
            case_id: "CASE-1".into(),
            reason: "litigation".into(),
            placed_by: "token:abc".into(),
            placed_at: ts("2026-01-01T00:00:00Z"),
            released: None,
        }
    }

    #[test]
    fn each_scope_covers_exactly_its_records() {
        let app_log = DataTypeName::new("app_log").unwrap();
        let ticket = DataTypeName::new("ticket").unwrap();
        let subjects = [[1u8; 32], [7u8; 32]];
        let record = RecordFacts {
            data_type: &app_log,
            event_time: ts("2026-03-10T12:00:00Z"),
            subjects: &subjects,
        };
        assert!(HoldScope::Tenant.covers(&record));
        assert!(HoldScope::DataType(app_log.clone()).covers(&record));
        assert!(!HoldScope::DataType(ticket.clone()).covers(&record));
        assert!(HoldScope::Subject([7u8; 32]).covers(&record));
        assert!(!HoldScope::Subject([2u8; 32]).covers(&record));
        // Half-open range: the start is in, the end is out.
        let range = |from: &str, to: &str| HoldScope::EventTime {
            from: ts(from),
            to: ts(to),
        };
        assert!(range("2026-03-10T12:00:00Z", "2026-03-11T00:00:00Z").covers(&record));
        assert!(!range("2026-03-01T00:00:00Z", "2026-03-10T12:00:00Z").covers(&record));
        assert!(!range("2026-03-10T12:00:01Z", "2026-04-01T00:00:00Z").covers(&record));
        // A record without subjects is covered by no subject hold.
        let anonymous = RecordFacts {
            subjects: &[],
            ..record
        };
        assert!(!HoldScope::Subject([7u8; 32]).covers(&anonymous));
    }

    #[test]
    fn whole_type_scopes_are_known_without_records() {
        let app_log = DataTypeName::new("app_log").unwrap();
        let ticket = DataTypeName::new("ticket").unwrap();
        assert!(HoldScope::Tenant.covers_all_of(&app_log));
        assert!(HoldScope::DataType(app_log.clone()).covers_all_of(&app_log));
        assert!(!HoldScope::DataType(ticket).covers_all_of(&app_log));
        assert!(!HoldScope::Subject([0; 32]).covers_all_of(&app_log));
        let range = HoldScope::EventTime {
            from: Timestamp::MIN,
            to: Timestamp::MAX,
        };
        assert!(!range.covers_all_of(&app_log));
    }

    #[test]
    fn released_holds_cover_nothing() {
        let app_log = DataTypeName::new("app_log").unwrap();
        let record = RecordFacts {
            data_type: &app_log,
            event_time: ts("2026-03-10T12:00:00Z"),
            subjects: &[],
        };
        let mut released = hold("h1", HoldScope::Tenant);
        released.released = Some(Release {
            by: "token:def".into(),
            at: ts("2026-02-01T00:00:00Z"),
        });
        let holds = [released, hold("h2", HoldScope::DataType(app_log.clone()))];
        assert_eq!(holds_covering(&holds, &record), ["h2"]);
        assert!(holds_covering(&holds[..1], &record).is_empty());
    }

    #[test]
    fn scopes_display_without_revealing_a_whole_pseudonym() {
        let shown = HoldScope::Subject([0xab; 32]).to_string();
        assert_eq!(shown, "subject abababababab…");
        assert_eq!(HoldScope::Tenant.kind(), "tenant");
    }
}
