//! Batch ingest: validate every NDJSON line against the policy, then seal each record.
//!
//! Validation runs over the whole batch before anything is encrypted or stored, so a client gets
//! every bad line in one answer and a bad batch leaves no trace.

use custodian_core::ids::{Class, DataTypeName, RecordId, TenantId};
use custodian_core::policy::{Policy, TenantPolicy};
use custodian_core::retention::Expiry;
use custodian_crypto::{DataKey, DataKeyId, RecordAad, RecordKeys};
use custodian_store::StoredRecord;
use jiff::{Timestamp, ToSpan};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::ServerError;
use crate::deidentify::{Deidentified, StoredFinding, TransformKeys, deidentify};
use crate::keys::{DataKeys, TenantKeys};
use crate::problem::LineError;

const MAX_SUBJECTS: usize = 64;
const MAX_SUBJECT_LEN: usize = 256;
/// Event times further ahead than this are refused: they would stretch retention.
const MAX_CLOCK_SKEW_HOURS: i64 = 24;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Line<'a> {
    #[serde(rename = "type")]
    data_type: String,
    #[serde(default)]
    subjects: Vec<String>,
    event_time: String,
    /// For `after_event` types: what the event will be about (e.g. a ticket id).
    #[serde(default)]
    event_ref: Option<String>,
    #[serde(borrow)]
    payload: &'a RawValue,
}

/// What is encrypted: the subjects (so they never rest in clear), the payload as sent after
/// the policy's de-identification, and what detection found in it.
#[derive(serde::Serialize, Deserialize)]
pub struct SealedBody<'a> {
    pub subjects: Vec<String>,
    #[serde(borrow)]
    pub payload: &'a RawValue,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub findings: Vec<StoredFinding>,
}

/// One line that passed validation: what it is, when it expires, and its body as sent.
pub struct ValidLine<'a> {
    /// Its line number in the batch (from 1).
    pub line: usize,
    pub data_type: DataTypeName,
    pub class: Class,
    pub event_time: Timestamp,
    pub expiry: Expiry,
    pub event_ref: Option<String>,
    pub subjects: Vec<String>,
    pub payload: &'a RawValue,
}

fn validate_line<'a>(
    policy: &Policy,
    tenant: &TenantPolicy,
    now: Timestamp,
    text: &'a str,
) -> Result<ValidLine<'a>, String> {
    let line: Line<'a> = serde_json::from_str(text).map_err(|e| {
        // serde_json reports "at line 1 column N": the column is the useful part.
        let msg = e.to_string();
        match msg.rsplit_once(" at line 1 ") {
            Some((what, col)) => format!("{what} (at {col})"),
            None => msg,
        }
    })?;
    let data_type = policy.data_type(&line.data_type).ok_or_else(|| {
        let known: Vec<&str> = policy.data_types.iter().map(|d| d.name.as_str()).collect();
        format!(
            "unknown data type {:?}; the policy defines: {}",
            line.data_type,
            known.join(", ")
        )
    })?;
    if data_type.class >= Class::Confidential && tenant.home_region != policy.deployment.region {
        return Err(format!(
            "{} data of tenant {} must stay in its home region {}; this node serves region {}",
            data_type.class, tenant.id, tenant.home_region, policy.deployment.region
        ));
    }
    let event_time: Timestamp = line.event_time.parse().map_err(|_| {
        format!(
            "event_time {:?} is not an RFC 3339 date-time with offset, e.g. 2025-01-31T09:30:00Z",
            line.event_time
        )
    })?;
    if event_time > now + MAX_CLOCK_SKEW_HOURS.hours() {
        return Err(format!(
            "event_time {event_time} is more than {MAX_CLOCK_SKEW_HOURS} hours in the future"
        ));
    }
    if !line.payload.get().starts_with('{') {
        return Err("payload must be a JSON object".into());
    }
    if line.subjects.len() > MAX_SUBJECTS {
        return Err(format!("at most {MAX_SUBJECTS} subjects per record"));
    }
    if let Some(bad) = line
        .subjects
        .iter()
        .find(|s| s.is_empty() || s.len() > MAX_SUBJECT_LEN)
    {
        return Err(format!(
            "subject ids must be 1 to {MAX_SUBJECT_LEN} bytes long (found one of {} bytes)",
            bad.len()
        ));
    }
    let retention = policy.effective_retention(tenant, data_type);
    let expiry = retention.expiry(event_time);
    // A record whose retention is over must not be kept: storing it would also reopen an
    // expiry bucket whose key may already be destroyed.
    if let Expiry::At(at) = expiry
        && at <= now
    {
        return Err(format!(
            "its retention ({retention}) ended at {at}: {} records with event_time {event_time} may no longer be kept",
            data_type.name
        ));
    }
    let event_ref = match (&expiry, line.event_ref) {
        (Expiry::PendingEvent(_), Some(r))
            if !r.is_empty() && r.len() <= MAX_SUBJECT_LEN && !r.chars().any(char::is_control) =>
        {
            Some(r)
        }
        (Expiry::PendingEvent(event), Some(_)) => {
            return Err(format!(
                "event_ref must be 1 to {MAX_SUBJECT_LEN} bytes without control characters (it names what {event} will be about)"
            ));
        }
        (Expiry::PendingEvent(event), None) => {
            return Err(format!(
                "{} records are kept until {event} plus a period: give event_ref, naming what the event will be about (e.g. a ticket id)",
                data_type.name
            ));
        }
        (_, Some(_)) => {
            return Err(format!(
                "event_ref is only for data types whose retention waits for an event; {} has retention {retention}",
                data_type.name
            ));
        }
        (_, None) => None,
    };
    Ok(ValidLine {
        line: 0,
        data_type: data_type.name.clone(),
        class: data_type.class,
        event_time,
        expiry,
        event_ref,
        subjects: line.subjects,
        payload: line.payload,
    })
}

/// Validates a whole NDJSON batch. Blank lines are skipped; line numbers count them.
pub fn validate_batch<'a>(
    policy: &Policy,
    tenant: &TenantPolicy,
    now: Timestamp,
    body: &'a str,
) -> Result<Vec<ValidLine<'a>>, Vec<LineError>> {
    let mut valid = Vec::new();
    let mut errors = Vec::new();
    for (i, text) in body.split('\n').enumerate() {
        let text = text.trim();
        if text.is_empty() {
            continue;
        }
        match validate_line(policy, tenant, now, text) {
            Ok(v) if errors.is_empty() => valid.push(ValidLine { line: i + 1, ..v }),
            Ok(_) => {}
            Err(reason) => errors.push(LineError {
                line: i + 1,
                reason,
            }),
        }
    }
    if valid.is_empty() && errors.is_empty() {
        errors.push(LineError {
            line: 1,
            reason: "the batch is empty: send one JSON record per line".into(),
        });
    }
    if errors.is_empty() {
        Ok(valid)
    } else {
        Err(errors)
    }
}

/// A validated, sealed batch ready for the store.
#[derive(Debug)]
pub struct SealedBatch {
    pub records: Vec<StoredRecord>,
    pub ids: Vec<RecordId>,
}

/// Validates `body` and seals every record under its bucket's DEK and its subjects' keys.
/// `resolve` gets (creating as needed) every data key the batch names, once; nothing is asked
/// of it for an invalid batch.
pub fn prepare_batch(
    policy: &Policy,
    tenant: &TenantPolicy,
    keys: &TenantKeys,
    resolve: impl FnOnce(&[DataKeyId]) -> Result<DataKeys, ServerError>,
    now: Timestamp,
    body: &[u8],
) -> Result<Result<SealedBatch, Vec<LineError>>, ServerError> {
    let Ok(body) = std::str::from_utf8(body) else {
        return Ok(Err(vec![LineError {
            line: 1 + body
                .iter()
                .take(
                    std::str::from_utf8(body)
                        .err()
                        .map_or(0, |e| e.valid_up_to()),
                )
                .filter(|b| **b == b'\n')
                .count(),
            reason: "the body is not valid UTF-8".into(),
        }]));
    };
    let lines = match validate_batch(policy, tenant, now, body) {
        Ok(lines) => lines,
        Err(errors) => return Ok(Err(errors)),
    };
    // De-identification may still refuse lines: it runs before any key is asked for.
    let transform_keys = TransformKeys::of(keys)?;
    let mut errors = Vec::new();
    let mut planned: Vec<(ValidLine<'_>, Deidentified, String, Vec<[u8; 32]>)> =
        Vec::with_capacity(lines.len());
    for line in lines {
        let Some(data_type) = policy.data_type(line.data_type.as_str()) else {
            return Err(ServerError::Internal("validated type vanished".into()));
        };
        let action = policy.class_info(line.class).and_then(|c| c.pii);
        match deidentify(
            &transform_keys,
            &tenant.id,
            data_type,
            action,
            &line.subjects,
            line.payload,
        ) {
            Ok(d) => {
                let bucket = line.expiry.bucket(now);
                let mut pseudonyms: Vec<[u8; 32]> =
                    line.subjects.iter().map(|s| keys.pseudonym(s)).collect();
                pseudonyms.sort_unstable();
                pseudonyms.dedup();
                planned.push((line, d, bucket, pseudonyms));
            }
            Err(reason) => errors.push(LineError {
                line: line.line,
                reason,
            }),
        }
    }
    if !errors.is_empty() {
        return Ok(Err(errors));
    }
    let mut wanted = std::collections::BTreeSet::new();
    for (line, _, bucket, pseudonyms) in &planned {
        wanted.insert(DataKeyId::Bucket {
            data_type: line.data_type.clone(),
            bucket: bucket.clone(),
        });
        wanted.extend(pseudonyms.iter().copied().map(DataKeyId::Subject));
    }
    let wanted: Vec<DataKeyId> = wanted.into_iter().collect();
    let data_keys = resolve(&wanted)?;
    let key = |id: &DataKeyId| {
        data_keys.get(id).ok_or_else(|| {
            ServerError::Internal(format!("data key {} was not resolved", id.encode()))
        })
    };
    let tenant_id: &TenantId = &tenant.id;
    let ms = now.as_millisecond().max(0) as u64;
    let mut records = Vec::with_capacity(planned.len());
    let mut ids = Vec::with_capacity(planned.len());
    let mut plaintext = Vec::new();
    for (line, deidentified, bucket, pseudonyms) in planned {
        let random = u128::from_be_bytes(custodian_crypto::random_bytes::<16>()?);
        let id = RecordId::from_ulid(ulid::Ulid::from_parts(ms, random));
        plaintext.clear();
        serde_json::to_writer(
            &mut plaintext,
            &SealedBody {
                subjects: line.subjects.clone(),
                payload: deidentified.payload.as_deref().unwrap_or(line.payload),
                findings: deidentified.findings,
            },
        )
        .map_err(|e| ServerError::Internal(e.to_string()))?;
        let bucket_key = key(&DataKeyId::Bucket {
            data_type: line.data_type.clone(),
            bucket: bucket.clone(),
        })?;
        let subject_keys: Vec<&DataKey> = pseudonyms
            .iter()
            .map(|p| key(&DataKeyId::Subject(*p)).map(|k| k.as_ref()))
            .collect::<Result<_, _>>()?;
        let aad = RecordAad {
            tenant: tenant_id,
            record: id,
            data_type: &line.data_type,
            class: line.class,
            bucket: &bucket,
            subjects: &pseudonyms,
        };
        let sealed = RecordKeys {
            bucket: bucket_key,
            subjects: &subject_keys,
        }
        .seal(&aad, &plaintext)?;
        let (expires_at, pending_event) = match line.expiry {
            Expiry::At(t) => (Some(t), None),
            Expiry::PendingEvent(e) => (None, Some(e)),
            Expiry::Never => (None, None),
        };
        records.push(StoredRecord {
            id,
            data_type: line.data_type,
            class: line.class,
            event_time: line.event_time,
            ingest_time: now,
            expires_at,
            pending_event,
            event_ref: line.event_ref,
            key_bucket: bucket,
            key_subjects: pseudonyms,
            sealed,
        });
        ids.push(id);
    }
    // Zero the last plaintext buffer; sealed bytes are all that leave this function.
    zeroize::Zeroize::zeroize(&mut plaintext);
    Ok(Ok(SealedBatch { records, ids }))
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: &str = r#"
[deployment]
region = "au-east"
[keys]
root = "dev"
[tiers]
standard = { retention = "12mo" }
[data_types.app_log]
class = "internal"
retention = { min = "90d", max = "180d" }
[data_types.ticket]
class = "confidential"
retention = { after_event = "ticket_closed", keep = "90d" }
[data_types.workload]
class = "internal"
retention = "until_deleted"
[tenants.acme]
tier = "standard"
home_region = "au-east"
[tenants.abroad]
tier = "standard"
home_region = "eu-west"
"#;

    fn setup() -> (Policy, TenantKeys) {
        let p = Policy::parse("t.toml", POLICY).unwrap();
        let tenant = TenantId::new("acme").unwrap();
        let keys = TenantKeys::new(
            custodian_crypto::IndexKey::new(&zeroize::Zeroizing::new([3; 32])),
            vec![custodian_crypto::Kek::new(
                tenant,
                1,
                &zeroize::Zeroizing::new([4; 32]),
            )],
        )
        .unwrap();
        (p, keys)
    }

    /// Fresh keys for whatever the batch names.
    fn fresh_keys(ids: &[DataKeyId]) -> Result<DataKeys, ServerError> {
        Ok(ids
            .iter()
            .map(|id| {
                (
                    id.clone(),
                    std::sync::Arc::new(DataKey::generate().unwrap()),
                )
            })
            .collect())
    }

    fn now() -> Timestamp {
        "2025-06-01T00:00:00Z".parse().unwrap()
    }

    fn run(tenant: &str, body: &str) -> Result<SealedBatch, Vec<LineError>> {
        let (p, k) = setup();
        let t = p.tenant(&TenantId::new(tenant).unwrap()).unwrap().clone();
        prepare_batch(&p, &t, &k, fresh_keys, now(), body.as_bytes()).unwrap()
    }

    #[test]
    fn a_good_batch_is_sealed_with_expiries() {
        let body = concat!(
            r#"{"type":"app_log","subjects":["alice","alice"],"event_time":"2025-05-01T00:00:00Z","payload":{"msg":"hello"}}"#,
            "\n\n",
            r#"{"type":"ticket","event_time":"2025-05-01T00:00:00+02:00","event_ref":"INC-42","payload":{}}"#,
            "\n",
            r#"{"type":"workload","event_time":"2025-05-01T00:00:00Z","payload":{"a":1}}"#,
            "\n",
        );
        let batch = run("acme", body).unwrap();
        assert_eq!(batch.records.len(), 3);
        let r: Vec<&StoredRecord> = batch.records.iter().collect();
        assert_eq!(
            r[0].expires_at,
            Some("2025-10-28T00:00:00Z".parse().unwrap())
        );
        assert_eq!(
            batch.records[0].key_subjects.len(),
            1,
            "duplicates collapse"
        );
        assert_eq!(r[1].pending_event.as_deref(), Some("ticket_closed"));
        assert_eq!(r[1].event_ref.as_deref(), Some("INC-42"));
        assert_eq!(r[0].event_ref, None);
        assert_eq!(r[1].expires_at, None);
        assert_eq!(r[2].expires_at, None);
        assert_eq!(r[2].pending_event, None);
        assert!(!r[0].sealed.windows(5).any(|w| w == b"hello"));
        assert!(!r[0].sealed.windows(5).any(|w| w == b"alice"));
        let ids: std::collections::HashSet<_> = batch.ids.iter().collect();
        assert_eq!(ids.len(), 3);
    }

    #[test]
    fn every_bad_line_is_reported() {
        let body = [
            r#"{"type":"app_log","event_time":"2025-05-01T00:00:00Z","payload":{}}"#,
            r#"{"type":"nope","event_time":"2025-05-01T00:00:00Z","payload":{}}"#,
            r#"{"type":"app_log","event_time":"yesterday","payload":{}}"#,
            r#"{"type":"app_log","payload":{}}"#,
            r#"not json"#,
            r#"{"type":"app_log","event_time":"2025-05-01T00:00:00Z","payload":[1]}"#,
            r#"{"type":"app_log","event_time":"2025-05-01T00:00:00Z","payload":{},"extra":1}"#,
            r#"{"type":"app_log","event_time":"2030-05-01T00:00:00Z","payload":{}}"#,
            r#"{"type":"app_log","event_time":"2025-05-01T00:00:00","payload":{}}"#,
            r#"{"type":5,"event_time":"2025-05-01T00:00:00Z","payload":{}}"#,
            r#"{"type":"app_log","subjects":[""],"event_time":"2025-05-01T00:00:00Z","payload":{}}"#,
            // app_log keeps 180 days at most: this one's time is over.
            r#"{"type":"app_log","event_time":"2024-12-01T23:59:59Z","payload":{}}"#,
            r#"{"type":"ticket","event_time":"2025-05-01T00:00:00Z","payload":{}}"#,
            r#"{"type":"app_log","event_time":"2025-05-01T00:00:00Z","event_ref":"INC-1","payload":{}}"#,
        ]
        .join("\n");
        let errors = run("acme", &body).unwrap_err();
        let lines: Vec<usize> = errors.iter().map(|e| e.line).collect();
        assert_eq!(lines, vec![2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14]);
        assert!(errors[0].reason.starts_with(
            "unknown data type \"nope\"; the policy defines: app_log, ticket, workload"
        ));
        assert!(errors[1].reason.contains("not an RFC 3339"));
        assert!(errors[2].reason.starts_with("missing field `event_time`"));
        assert!(errors[4].reason.contains("must be a JSON object"));
        assert!(errors[5].reason.starts_with("unknown field `extra`"));
        assert!(errors[6].reason.contains("in the future"));
        assert!(errors[7].reason.contains("not an RFC 3339"));
        assert!(errors[8].reason.starts_with("invalid type: integer `5`"));
        assert!(
            errors[10]
                .reason
                .contains("ended at 2025-05-30T23:59:59Z: app_log records"),
            "{}",
            errors[10].reason
        );
        assert!(errors[11].reason.contains("give event_ref"));
        assert!(errors[12].reason.contains("event_ref is only for"));
    }

    #[test]
    fn confidential_data_stays_in_its_home_region() {
        let ok = r#"{"type":"app_log","event_time":"2025-05-01T00:00:00Z","payload":{}}"#;
        assert!(run("abroad", ok).is_ok(), "internal data may be served");
        let conf = r#"{"type":"ticket","event_time":"2025-05-01T00:00:00Z","event_ref":"T-1","payload":{}}"#;
        let errors = run("abroad", conf).unwrap_err();
        assert!(
            errors[0]
                .reason
                .contains("must stay in its home region eu-west")
        );
    }

    #[test]
    fn empty_and_non_utf8_bodies_are_refused() {
        assert!(
            run("acme", "\n \n").unwrap_err()[0]
                .reason
                .contains("empty")
        );
        let (p, k) = setup();
        let t = p.tenants[0].clone();
        let errors = prepare_batch(&p, &t, &k, fresh_keys, now(), b"{}\n\xff\xfe")
            .unwrap()
            .unwrap_err();
        assert_eq!(errors[0].line, 2);
    }
}
