//! The retention engine's service side: legal holds, the sweeper that destroys expiry buckets
//! when their time is up, and the signed deletion certificates that prove each destruction.
//!
//! A bucket is destroyed in this order, so a crash at any point is safe: its data key is
//! shredded (from then on no copy of its records can be read, backups included), the
//! destruction is verified by an attempted unwrap that must fail, then its rows are purged in
//! the same transaction that stores the certificate and the audit entry. A crash after the
//! shred leaves rows that can no longer be read; the next sweep finds the bucket again, shreds
//! nothing more and purges and certifies it. Holds are checked and destructions run under one
//! lock, so a hold placed during a sweep waits for it or stops it.

use std::collections::HashMap;
use std::collections::hash_map::Entry;

use custodian_core::audit::Decision;
use custodian_core::hold::{Hold, HoldScope, RecordFacts, Release};
use custodian_core::ids::{DataTypeName, TenantId};
use custodian_crypto::DataKeyId;
use custodian_store::{BucketRecord, BucketSummary, CertificateRow, ReleaseOutcome, ShredScope};
use jiff::Timestamp;
use serde::Serialize;

use crate::audit::Actor;
use crate::{AppState, ServerError};

/// The first line of every deletion certificate's signed text.
pub const CERTIFICATE_HEADER: &str = "custodian deletion certificate v1";

/// What one sweep did.
#[derive(Debug, Default)]
pub struct SweepReport {
    pub destroyed: Vec<Certificate>,
    /// Due buckets a hold keeps, with the ids of the holds.
    pub held: Vec<(BucketSummary, Vec<String>)>,
}

/// A deletion certificate: the fields of NIST SP 800-88 Rev. 2's certificate of sanitization.
#[derive(Clone, Debug, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct Certificate {
    pub id: String,
    pub tenant: String,
    /// What was destroyed, e.g. `bucket/app_log/d2026-03-01`.
    pub scope: String,
    pub data_type: String,
    pub record_count: u64,
    /// SHA-256 of the destroyed record ids, in order, one per line.
    pub record_ids_sha256: String,
    pub key_ids: Vec<String>,
    /// SP 800-88 category (purge) and technique.
    pub sanitization: String,
    pub method: String,
    pub tool: String,
    pub tool_version: String,
    pub performed_by: String,
    pub reason: String,
    pub completed_at: Timestamp,
    pub verification: String,
}

impl Certificate {
    /// The text that is signed: the header line and the certificate as one JSON line.
    pub fn signed_text(&self) -> Result<String, ServerError> {
        let json = serde_json::to_string(self).map_err(|e| ServerError::Internal(e.to_string()))?;
        Ok(format!("{CERTIFICATE_HEADER}\n{json}\n"))
    }

    /// Reads a certificate back from its signed text (after the signature was checked).
    pub fn from_signed_text(text: &str) -> Option<Certificate> {
        let json = text.strip_prefix(CERTIFICATE_HEADER)?.strip_prefix('\n')?;
        serde_json::from_str(json.trim_end()).ok()
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Places a hold and audits it in one transaction. Waits for a running destruction to end.
pub async fn place_hold(
    state: &AppState,
    actor: &Actor,
    tenant: &TenantId,
    scope: HoldScope,
    case_id: String,
    reason: String,
) -> Result<Hold, ServerError> {
    let _destruction = state.destruction.lock().await;
    let hold = Hold {
        id: format!("hold_{}", ulid::Ulid::new().to_string().to_lowercase()),
        scope,
        case_id,
        reason,
        placed_by: actor.id.clone(),
        placed_at: state.clock.now(),
        released: None,
    };
    let mut event = state
        .audit
        .event(actor, "holds.place", Some(tenant), Decision::Allow);
    event.objects = vec![hold.id.clone(), hold.case_id.clone()];
    event.after = Some(format!("{} ({})", hold.scope, hold.reason));
    state
        .store
        .insert_hold(tenant, &hold, event.canonical_bytes())
        .await?;
    Ok(hold)
}

/// Releases a hold and audits it in one transaction; overdue records it kept become due at
/// the next sweep.
pub async fn release_hold(
    state: &AppState,
    actor: &Actor,
    tenant: &TenantId,
    id: &str,
) -> Result<ReleaseOutcome, ServerError> {
    let release = Release {
        by: actor.id.clone(),
        at: state.clock.now(),
    };
    let mut event = state
        .audit
        .event(actor, "holds.release", Some(tenant), Decision::Allow);
    event.objects = vec![id.to_owned()];
    Ok(state
        .store
        .release_hold(tenant, id, release, event.canonical_bytes())
        .await?)
}

/// The ids of the active `holds` that keep any of a bucket's `records`.
fn holds_keeping(
    holds: &[Hold],
    data_type: &DataTypeName,
    records: &[BucketRecord],
) -> Vec<String> {
    let mut keeping: Vec<String> = holds
        .iter()
        .filter(|h| h.scope.covers_all_of(data_type))
        .map(|h| h.id.clone())
        .collect();
    if keeping.is_empty() {
        for record in records {
            let facts = RecordFacts {
                data_type,
                event_time: record.event_time,
                subjects: &record.subjects,
            };
            for id in custodian_core::hold::holds_covering(holds, &facts) {
                if !keeping.iter().any(|k| k == id) {
                    keeping.push(id.to_owned());
                }
            }
        }
    }
    keeping
}

/// Destroys every expiry bucket due at `now` that no hold keeps. Idempotent: a bucket half
/// destroyed by a crash is finished by the next sweep.
pub async fn sweep(state: &AppState, now: Timestamp) -> Result<SweepReport, ServerError> {
    let mut report = SweepReport::default();
    if state.keys.is_sealed() {
        return Ok(report);
    }
    let _destruction = state.destruction.lock().await;
    let mut active_holds: HashMap<TenantId, Vec<Hold>> = HashMap::new();
    for bucket in state.store.due_buckets(None, now).await? {
        // A bucket still open could take a late record after its key is gone.
        if custodian_core::retention::bucket_closes_at(&bucket.bucket).is_none_or(|t| t > now) {
            continue;
        }
        let holds = match active_holds.entry(bucket.tenant.clone()) {
            Entry::Occupied(e) => e.into_mut(),
            Entry::Vacant(e) => {
                let mut holds = state.store.holds(&bucket.tenant).await?;
                holds.retain(Hold::is_active);
                e.insert(holds)
            }
        };
        let records = state
            .store
            .bucket_records(&bucket.tenant, &bucket.data_type, &bucket.bucket)
            .await?;
        let keeping = holds_keeping(holds, &bucket.data_type, &records);
        if keeping.is_empty() {
            report
                .destroyed
                .push(destroy_bucket(state, &bucket, &records).await?);
        } else {
            report.held.push((bucket, keeping));
        }
    }
    Ok(report)
}

async fn destroy_bucket(
    state: &AppState,
    bucket: &BucketSummary,
    records: &[BucketRecord],
) -> Result<Certificate, ServerError> {
    let tenant = &bucket.tenant;
    let mut ids = String::with_capacity(records.len() * 27);
    for r in records {
        ids.push_str(&r.id.to_string());
        ids.push('\n');
    }
    let key = bucket_key(&bucket.data_type, &bucket.bucket);
    state
        .keys
        .shred(tenant, ShredScope::Keys(vec![key.encode()]))
        .await?;
    let verification = match state
        .keys
        .data_keys(tenant, std::slice::from_ref(&key), false, "")
        .await
    {
        Err(ServerError::KeyDestroyed { .. }) => {
            "attempted unwrap of the bucket key failed: key_destroyed"
        }
        Ok(_) => {
            return Err(ServerError::Internal(format!(
                "bucket key {} still unwraps after its shred",
                key.encode()
            )));
        }
        Err(e) => return Err(e),
    };
    let scope = format!("bucket/{}/{}", bucket.data_type, bucket.bucket);
    let certificate = Certificate {
        id: format!("del_{}", ulid::Ulid::new().to_string().to_lowercase()),
        tenant: tenant.to_string(),
        scope: scope.clone(),
        data_type: bucket.data_type.to_string(),
        record_count: records.len() as u64,
        record_ids_sha256: hex(&custodian_crypto::sha256(ids.as_bytes())),
        key_ids: vec![key.encode()],
        sanitization: "purge".into(),
        method: "cryptographic erase (AES-256 data key destroyed) + record purge".into(),
        tool: "custodian".into(),
        tool_version: env!("CARGO_PKG_VERSION").into(),
        performed_by: "retention sweeper".into(),
        reason: format!(
            "retention expired (records expiring {} to {})",
            bucket.oldest_expiry, bucket.newest_expiry
        ),
        completed_at: state.clock.now(),
        verification: verification.into(),
    };
    let note = state.audit.sign_note(&certificate.signed_text()?)?;
    let actor = Actor {
        id: "system:sweeper".into(),
        request_id: None,
    };
    let mut event = state
        .audit
        .event(&actor, "retention.destroy", Some(tenant), Decision::Allow);
    event.subsystem = "sweeper".into();
    event.objects = vec![certificate.id.clone(), scope.clone()];
    event.after = Some(format!("{} records destroyed", records.len()));
    let row = CertificateRow {
        id: certificate.id.clone(),
        scope,
        issued_at: certificate.completed_at,
        note,
    };
    state
        .store
        .purge_bucket(
            tenant,
            &bucket.data_type,
            &bucket.bucket,
            row,
            event.canonical_bytes(),
        )
        .await?;
    Ok(certificate)
}

fn bucket_key(data_type: &DataTypeName, bucket: &str) -> DataKeyId {
    DataKeyId::Bucket {
        data_type: data_type.clone(),
        bucket: bucket.to_owned(),
    }
}
