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

impl Serialize for TenantId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for TenantId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        TenantId::new(s).map_err(serde::de::Error::custom)
    }
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
