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
use custodian_store::{
    AppliedRetention, BucketRecord, BucketSummary, CancelOutcome, CertificateRow, DeletionState,
    DeletionTarget, RekeyedRecord, ReleaseOutcome, RetentionEvent, ScheduledDeletion, ShredScope,
    StoredRecord, Termination,
};
use jiff::Timestamp;
use serde::Serialize;

use crate::audit::{Actor, hex};
use crate::{AppState, ServerError};

/// The first line of every deletion certificate's signed text.
pub const CERTIFICATE_HEADER: &str = "custodian deletion certificate v1";

/// What one sweep did.
#[derive(Debug, Default)]
pub struct SweepReport {
    pub destroyed: Vec<Certificate>,
    /// Due buckets a hold keeps (wholly or in part), with the ids of the holds.
    pub held: Vec<(BucketSummary, Vec<String>)>,
    /// Held records moved out of a destroyed bucket.
    pub rekeyed: u64,
    /// Ciphertext bytes of the records destroyed.
    pub bytes_destroyed: u64,
    /// Records whose expiry a policy change moved (first sweep after a start only).
    pub recomputed: u64,
    /// Scheduled deletions a hold placed during their window keeps waiting.
    pub held_deletions: Vec<(String, Vec<String>)>,
    /// Terminated tenants whose purge holds keep from finishing.
    pub held_terminations: Vec<(TenantId, Vec<String>)>,
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

/// One bucket in a retention plan: what a sweep at the plan's time would destroy, or why not.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct PlannedBucket {
    pub tenant: String,
    pub data_type: String,
    pub bucket: String,
    pub records: u64,
    /// The event time of the bucket's oldest record.
    pub oldest_record: Timestamp,
    pub oldest_expiry: Timestamp,
    pub newest_expiry: Timestamp,
    /// `destroy`; `held` (every record kept by `holds`); `partial` (the `held_records` are
    /// moved to a bucket of their own, the rest destroyed); or `open` (records may still
    /// arrive until `closes_at`; destroyed at the first sweep after it).
    pub action: &'static str,
    pub held_records: u64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub holds: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub closes_at: Option<Timestamp>,
}

/// What a sweep at `at` would destroy, of one tenant or of all, and which holds block what.
/// Reads only: nothing is shredded, purged or audited.
pub async fn plan(
    state: &AppState,
    tenant: Option<&TenantId>,
    at: Timestamp,
) -> Result<Vec<PlannedBucket>, ServerError> {
    let mut planned = Vec::new();
    let mut holds = ActiveHolds::default();
    for bucket in state.store.due_buckets(tenant, at).await? {
        let closes_at = custodian_core::retention::bucket_closes_at(&bucket.bucket);
        let mut held_records = 0;
        let (action, keeping) = if closes_at.is_none_or(|t| t > at) {
            ("open", Vec::new())
        } else {
            let records = state
                .store
                .bucket_records(&bucket.tenant, &bucket.data_type, &bucket.bucket)
                .await?;
            let active = holds.of(state, &bucket.tenant).await?;
            let held = bucket_holds(active, &bucket.data_type, &records);
            held_records = if held.whole {
                bucket.records
            } else {
                held.records.len() as u64
            };
            let action = match (held.ids.is_empty(), held.whole) {
                (true, _) => "destroy",
                (false, true) => "held",
                (false, false) => "partial",
            };
            (action, held.ids)
        };
        planned.push(PlannedBucket {
            tenant: bucket.tenant.to_string(),
            data_type: bucket.data_type.to_string(),
            bucket: bucket.bucket,
            records: bucket.records,
            oldest_record: bucket.oldest_event_time,
            oldest_expiry: bucket.oldest_expiry,
            newest_expiry: bucket.newest_expiry,
            action,
            held_records,
            holds: keeping,
            closes_at: closes_at.filter(|t| *t > at),
        });
    }
    Ok(planned)
}

/// Each tenant's active holds, read once per sweep or plan.
#[derive(Default)]
struct ActiveHolds(HashMap<TenantId, Vec<Hold>>);

impl ActiveHolds {
    async fn of(&mut self, state: &AppState, tenant: &TenantId) -> Result<&[Hold], ServerError> {
        Ok(match self.0.entry(tenant.clone()) {
            Entry::Occupied(e) => e.into_mut(),
            Entry::Vacant(e) => {
                let mut holds = state.store.holds(tenant).await?;
                holds.retain(Hold::is_active);
                e.insert(holds)
            }
        })
    }
}

/// The steps of one destruction, in order. A test can stop a sweep right after any of them to
/// stand for a crash there; the next sweep must finish the job.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Held records were sealed anew under a bucket of their own.
    Rekeyed,
    /// The bucket key was destroyed.
    Shredded,
    /// The attempted unwrap failed, as it must.
    Verified,
    /// Rows purged, certificate stored, audit appended (one transaction).
    Purged,
}

/// Where a sweep stops early (crash injection for tests), if anywhere.
#[derive(Clone, Copy, Debug, Default)]
pub struct StopAfter(pub Option<Step>);

impl StopAfter {
    fn check(self, step: Step) -> Result<(), ServerError> {
        if self.0 == Some(step) {
            return Err(ServerError::Internal(format!(
                "sweep stopped after step {step:?}"
            )));
        }
        Ok(())
    }
}

/// Who destroys and why: goes into the certificate and the audit entry.
struct Destruction<'a> {
    performed_by: &'a str,
    reason: String,
}

/// Destroys every expiry bucket due at `now` that no hold keeps, carries out scheduled
/// deletions whose cancel window is over, and purges terminated tenants whose time has come.
/// Idempotent: whatever a crash left half done is finished by the next sweep.
pub async fn sweep(state: &AppState, now: Timestamp) -> Result<SweepReport, ServerError> {
    sweep_stopping(state, now, StopAfter::default()).await
}

/// [`sweep`], stopping with an error right after `stop` (crash injection for tests).
pub async fn sweep_stopping(
    state: &AppState,
    now: Timestamp,
    stop: StopAfter,
) -> Result<SweepReport, ServerError> {
    let mut report = SweepReport::default();
    if state.keys.is_sealed() {
        return Ok(report);
    }
    let _destruction = state.destruction.lock().await;
    let _across_nodes = state.store.lock_destruction().await?;
    // Once per process: the policy it started with may change what is due.
    if !state
        .retention_applied
        .load(std::sync::atomic::Ordering::Acquire)
    {
        report.recomputed = apply_retention_changes(state).await?;
        state
            .retention_applied
            .store(true, std::sync::atomic::Ordering::Release);
    }
    let mut holds = ActiveHolds::default();
    for deletion in state.store.due_deletions(now).await? {
        let active = holds.of(state, &deletion.tenant).await?;
        match carry_out_deletion(state, active, &deletion).await? {
            Ok(certificate) => report.destroyed.push(certificate),
            Err(keeping) => report.held_deletions.push((deletion.id.clone(), keeping)),
        }
    }
    for termination in state.store.terminations().await? {
        if termination.purged_at.is_none() && termination.purge_at <= now {
            let active = holds.of(state, &termination.tenant).await?.to_vec();
            purge_terminated(state, &active, &termination, stop, &mut report).await?;
        }
    }
    for bucket in state.store.due_buckets(None, now).await? {
        // A bucket still open could take a late record after its key is gone.
        if custodian_core::retention::bucket_closes_at(&bucket.bucket).is_none_or(|t| t > now) {
            continue;
        }
        let active = holds.of(state, &bucket.tenant).await?;
        let destruction = Destruction {
            performed_by: "retention sweeper",
            reason: format!(
                "retention expired (records expiring {} to {})",
                bucket.oldest_expiry, bucket.newest_expiry
            ),
        };
        let records = state
            .store
            .bucket_records(&bucket.tenant, &bucket.data_type, &bucket.bucket)
            .await?;
        let held = bucket_holds(active, &bucket.data_type, &records);
        match destroy_bucket(
            state,
            &bucket.tenant,
            &bucket.data_type,
            &bucket.bucket,
            &records,
            &held,
            &destruction,
            stop,
        )
        .await?
        {
            Some(certificate) => {
                report.rekeyed += held.records.len() as u64;
                report.bytes_destroyed += destroyed_bytes(&records, &held);
                report.destroyed.push(certificate);
                if !held.ids.is_empty() {
                    let kept = BucketSummary {
                        records: held.records.len() as u64,
                        ..bucket
                    };
                    report.held.push((kept, held.ids));
                }
            }
            None => report.held.push((bucket, held.ids)),
        }
    }
    crate::metrics::record_sweep(state.clock.now(), &report);
    Ok(report)
}

/// What the active holds keep of one bucket.
#[derive(Default)]
struct BucketHolds {
    /// Ids of the holds that keep anything.
    ids: Vec<String>,
    /// Every record is kept: nothing is destroyed.
    whole: bool,
    /// The records kept, when only some are.
    records: std::collections::BTreeSet<custodian_core::ids::RecordId>,
}

fn bucket_holds(holds: &[Hold], data_type: &DataTypeName, records: &[BucketRecord]) -> BucketHolds {
    let mut held = BucketHolds {
        ids: holds
            .iter()
            .filter(|h| h.scope.covers_all_of(data_type))
            .map(|h| h.id.clone())
            .collect(),
        ..BucketHolds::default()
    };
    if !held.ids.is_empty() {
        held.whole = true;
        return held;
    }
    for record in records {
        let facts = RecordFacts {
            data_type,
            event_time: record.event_time,
            subjects: &record.subjects,
        };
        let covering = custodian_core::hold::holds_covering(holds, &facts);
        if !covering.is_empty() {
            held.records.insert(record.id);
        }
        for id in covering {
            if !held.ids.iter().any(|k| k == id) {
                held.ids.push(id.to_owned());
            }
        }
    }
    held.whole = !records.is_empty() && held.records.len() == records.len();
    held
}

fn destroyed_bytes(records: &[BucketRecord], held: &BucketHolds) -> u64 {
    records
        .iter()
        .filter(|r| !held.records.contains(&r.id))
        .map(|r| r.sealed_len)
        .sum()
}

/// Destroys one bucket: held records first move to a bucket of their own (sealed anew, so
/// this bucket's key can go), then the key is shredded and verified gone, then the rows are
/// purged with the certificate and audit entry. `None` when holds keep every record.
#[allow(clippy::too_many_arguments)]
async fn destroy_bucket(
    state: &AppState,
    tenant: &TenantId,
    data_type: &DataTypeName,
    bucket: &str,
    records: &[BucketRecord],
    held: &BucketHolds,
    destruction: &Destruction<'_>,
    stop: StopAfter,
) -> Result<Option<Certificate>, ServerError> {
    if held.whole {
        return Ok(None);
    }
    if !held.records.is_empty() {
        let moved_to =
            custodian_core::retention::held_bucket(&ulid::Ulid::new().to_string().to_lowercase());
        rekey_held(state, tenant, &held.records, &moved_to, &held.ids).await?;
        stop.check(Step::Rekeyed)?;
    }
    let destroyed: Vec<&BucketRecord> = records
        .iter()
        .filter(|r| !held.records.contains(&r.id))
        .collect();
    let key = bucket_key(data_type, bucket);
    state
        .keys
        .shred(tenant, ShredScope::Keys(vec![key.encode()]))
        .await?;
    stop.check(Step::Shredded)?;
    let verification = verify_destroyed(state, tenant, &key).await?;
    stop.check(Step::Verified)?;
    let scope = format!("bucket/{data_type}/{bucket}");
    let certificate = certificate(
        state,
        tenant,
        &scope,
        data_type.as_str(),
        destroyed.iter().map(|r| r.id),
        vec![key.encode()],
        "cryptographic erase (AES-256 data key destroyed) + record purge",
        destruction,
        verification,
    );
    let mut event = sweeper_event(state, tenant, "retention.destroy", &certificate);
    event.after = Some(format!("{} records destroyed", destroyed.len()));
    let row = signed_row(state, &certificate)?;
    state
        .store
        .purge_bucket(tenant, data_type, bucket, row, event.canonical_bytes())
        .await?;
    stop.check(Step::Purged)?;
    Ok(Some(certificate))
}

/// Seals the held records anew under `bucket`, in one transaction with its audit entry.
async fn rekey_held(
    state: &AppState,
    tenant: &TenantId,
    ids: &std::collections::BTreeSet<custodian_core::ids::RecordId>,
    bucket: &str,
    holds: &[String],
) -> Result<(), ServerError> {
    let mut moved = Vec::with_capacity(ids.len());
    for id in ids {
        let Some(record) = state.store.get_record(tenant, *id).await? else {
            continue;
        };
        moved.push(RekeyedRecord {
            id: *id,
            key_bucket: bucket.to_owned(),
            expires_at: record.expires_at,
            pending_event: record.pending_event.clone(),
            sealed: crate::records::reseal(state, tenant, &record, bucket).await?,
        });
    }
    let actor = sweeper_actor();
    let mut event = state.audit.event(
        &actor,
        "retention.rekey_held",
        Some(tenant),
        Decision::Allow,
    );
    event.subsystem = "sweeper".into();
    event.objects = moved.iter().map(|r| r.id.to_string()).collect();
    event.reason = Some(format!(
        "kept by {}; moved to bucket {bucket} so the rest of their bucket can be destroyed",
        holds.join(", ")
    ));
    state
        .store
        .rekey_records(tenant, moved, event.canonical_bytes())
        .await?;
    Ok(())
}

/// The verification an SP 800-88 certificate records: an attempted unwrap of the destroyed
/// key, which must fail.
async fn verify_destroyed(
    state: &AppState,
    tenant: &TenantId,
    key: &DataKeyId,
) -> Result<&'static str, ServerError> {
    match state
        .keys
        .data_keys(tenant, std::slice::from_ref(key), false, "")
        .await
    {
        Err(ServerError::KeyDestroyed { .. }) => {
            Ok("attempted unwrap of the bucket key failed: key_destroyed")
        }
        Ok(_) => Err(ServerError::Internal(format!(
            "bucket key {} still unwraps after its shred",
            key.encode()
        ))),
        Err(e) => Err(e),
    }
}

#[allow(clippy::too_many_arguments)]
fn certificate(
    state: &AppState,
    tenant: &TenantId,
    scope: &str,
    data_type: &str,
    records: impl Iterator<Item = custodian_core::ids::RecordId>,
    key_ids: Vec<String>,
    method: &str,
    destruction: &Destruction<'_>,
    verification: &str,
) -> Certificate {
    let mut ids = String::new();
    let mut count = 0u64;
    for id in records {
        ids.push_str(&id.to_string());
        ids.push('\n');
        count += 1;
    }
    Certificate {
        id: format!("del_{}", ulid::Ulid::new().to_string().to_lowercase()),
        tenant: tenant.to_string(),
        scope: scope.to_owned(),
        data_type: data_type.to_owned(),
        record_count: count,
        record_ids_sha256: hex(&custodian_crypto::sha256(ids.as_bytes())),
        key_ids,
        sanitization: "purge".into(),
        method: method.into(),
        tool: "custodian".into(),
        tool_version: env!("CARGO_PKG_VERSION").into(),
        performed_by: destruction.performed_by.into(),
        reason: destruction.reason.clone(),
        completed_at: state.clock.now(),
        verification: verification.into(),
    }
}

fn signed_row(state: &AppState, certificate: &Certificate) -> Result<CertificateRow, ServerError> {
    Ok(CertificateRow {
        id: certificate.id.clone(),
        scope: certificate.scope.clone(),
        issued_at: certificate.completed_at,
        note: state.audit.sign_note(&certificate.signed_text()?)?,
    })
}

fn sweeper_actor() -> Actor {
    Actor {
        id: "system:sweeper".into(),
        request_id: None,
    }
}

fn sweeper_event(
    state: &AppState,
    tenant: &TenantId,
    action: &str,
    certificate: &Certificate,
) -> custodian_core::audit::AuditEvent {
    let mut event = state
        .audit
        .event(&sweeper_actor(), action, Some(tenant), Decision::Allow);
    event.subsystem = "sweeper".into();
    event.objects = vec![certificate.id.clone(), certificate.scope.clone()];
    event
}

fn bucket_key(data_type: &DataTypeName, bucket: &str) -> DataKeyId {
    DataKeyId::Bucket {
        data_type: data_type.clone(),
        bucket: bucket.to_owned(),
    }
}

/// The hold ids that cover `record`, if any.
fn holds_on(holds: &[Hold], record: &StoredRecord) -> Vec<String> {
    let facts = RecordFacts {
        data_type: &record.data_type,
        event_time: record.event_time,
        subjects: &record.key_subjects,
    };
    custodian_core::hold::holds_covering(holds, &facts)
        .into_iter()
        .map(str::to_owned)
        .collect()
}

/// Deletes one record now: its row and index entries are purged with a certificate, in one
/// transaction. Its bucket key lives on for the bucket's other records; copies of the row in
/// backups become unreadable when that key is destroyed at the bucket's expiry.
async fn purge_record(
    state: &AppState,
    tenant: &TenantId,
    deletion: Option<&str>,
    record: &StoredRecord,
    destruction: &Destruction<'_>,
    actor: &Actor,
    action: &str,
) -> Result<Certificate, ServerError> {
    let key = bucket_key(&record.data_type, &record.key_bucket);
    let backups = match record.expires_at {
        Some(t) => format!("at the bucket's expiry ({t})"),
        None => "when the bucket or the record's subjects are destroyed".to_owned(),
    };
    let certificate = certificate(
        state,
        tenant,
        &format!("record/{}", record.id),
        record.data_type.as_str(),
        std::iter::once(record.id),
        vec![key.encode()],
        &format!(
            "record purge (ciphertext row and subject-index entries deleted); backup copies become unreadable when bucket key {} is destroyed {backups}",
            key.encode()
        ),
        destruction,
        "row deleted in the transaction that stored this certificate",
    );
    let mut event = state
        .audit
        .event(actor, action, Some(tenant), Decision::Allow);
    event.objects = vec![record.id.to_string(), certificate.id.clone()];
    if let Some(id) = deletion {
        event.objects.push(id.to_owned());
    }
    event.reason = Some(destruction.reason.clone());
    let row = signed_row(state, &certificate)?;
    state
        .store
        .complete_deletion(tenant, deletion, &[record.id], row, event.canonical_bytes())
        .await?;
    Ok(certificate)
}

/// What a record delete did: destroyed now, or scheduled until its cancel window ends.
pub enum DeleteOutcome {
    Destroyed(Certificate),
    Scheduled(ScheduledDeletion),
    /// Holds cover the record; nothing was done (the refusal is audited).
    Held(Vec<String>),
    NotFound,
}

/// A record delete: refused under a hold, carried out at once when the data type has no
/// cancel window, else scheduled for the sweeper.
pub async fn delete_record(
    state: &AppState,
    actor: &Actor,
    tenant: &TenantId,
    id: custodian_core::ids::RecordId,
    reason: Option<String>,
) -> Result<DeleteOutcome, ServerError> {
    let _destruction = state.destruction.lock().await;
    let _across_nodes = state.store.lock_destruction().await?;
    let Some(record) = state.store.get_record(tenant, id).await? else {
        let mut event = state
            .audit
            .event(actor, "records.delete", Some(tenant), Decision::Allow);
        event.objects = vec![id.to_string()];
        event.reason = Some("no such record".into());
        state
            .audit
            .record(&custodian_store::AuditLog::Tenant(tenant.clone()), &event)
            .await?;
        return Ok(DeleteOutcome::NotFound);
    };
    let mut holds = state.store.holds(tenant).await?;
    holds.retain(Hold::is_active);
    let keeping = holds_on(&holds, &record);
    if !keeping.is_empty() {
        let mut event = state
            .audit
            .event(actor, "records.delete", Some(tenant), Decision::Deny);
        event.objects = vec![id.to_string()];
        event.reason = Some(format!("under hold: {}", keeping.join(", ")));
        state
            .audit
            .record(&custodian_store::AuditLog::Tenant(tenant.clone()), &event)
            .await?;
        return Ok(DeleteOutcome::Held(keeping));
    }
    let reason = reason.unwrap_or_else(|| "deleted on request".to_owned());
    let window = state
        .policy
        .data_type(record.data_type.as_str())
        .and_then(|t| t.cancel_window);
    let now = state.clock.now();
    match window.and_then(|w| w.after(now)) {
        None => {
            let destruction = Destruction {
                performed_by: &actor.id,
                reason,
            };
            purge_record(
                state,
                tenant,
                None,
                &record,
                &destruction,
                actor,
                "records.delete",
            )
            .await
            .map(DeleteOutcome::Destroyed)
        }
        Some(due_at) => {
            let deletion = ScheduledDeletion {
                id: format!("sdl_{}", ulid::Ulid::new().to_string().to_lowercase()),
                tenant: tenant.clone(),
                target: DeletionTarget::Record(id),
                reason,
                requested_by: actor.id.clone(),
                requested_at: now,
                due_at,
                state: DeletionState::Scheduled,
            };
            let mut event =
                state
                    .audit
                    .event(actor, "deletions.schedule", Some(tenant), Decision::Allow);
            event.objects = vec![deletion.id.clone(), id.to_string()];
            event.reason = Some(format!(
                "{}; carried out at {due_at} unless cancelled",
                deletion.reason
            ));
            state
                .store
                .schedule_deletion(&deletion, event.canonical_bytes())
                .await?;
            Ok(DeleteOutcome::Scheduled(deletion))
        }
    }
}

/// Cancels a scheduled deletion while its window is open; audited.
pub async fn cancel_deletion(
    state: &AppState,
    actor: &Actor,
    tenant: &TenantId,
    id: &str,
) -> Result<CancelOutcome, ServerError> {
    let _destruction = state.destruction.lock().await;
    let mut event = state
        .audit
        .event(actor, "deletions.cancel", Some(tenant), Decision::Allow);
    event.objects = vec![id.to_owned()];
    Ok(state
        .store
        .cancel_deletion(
            tenant,
            id,
            &actor.id,
            state.clock.now(),
            event.canonical_bytes(),
        )
        .await?)
}

/// Carries out a scheduled deletion whose window is over, unless a hold placed meanwhile
/// covers it (then it waits, and is tried again at every sweep).
async fn carry_out_deletion(
    state: &AppState,
    holds: &[Hold],
    deletion: &ScheduledDeletion,
) -> Result<Result<Certificate, Vec<String>>, ServerError> {
    let tenant = &deletion.tenant;
    let DeletionTarget::Record(id) = &deletion.target else {
        // Subject erasure is carried out by the subject-rights service, which schedules it.
        return Ok(Err(Vec::new()));
    };
    let destruction = Destruction {
        performed_by: "retention sweeper (scheduled deletion)",
        reason: format!(
            "{} (requested by {} at {}, cancel window ended {})",
            deletion.reason, deletion.requested_by, deletion.requested_at, deletion.due_at
        ),
    };
    let actor = sweeper_actor();
    match state.store.get_record(tenant, *id).await? {
        Some(record) => {
            let keeping = holds_on(holds, &record);
            if !keeping.is_empty() {
                return Ok(Err(keeping));
            }
            purge_record(
                state,
                tenant,
                Some(&deletion.id),
                &record,
                &destruction,
                &actor,
                "records.destroy",
            )
            .await
            .map(Ok)
        }
        // Destroyed meanwhile (its bucket expired): the deletion is done, with a
        // certificate that says so.
        None => {
            let certificate = certificate(
                state,
                tenant,
                &format!("record/{id}"),
                "",
                std::iter::empty(),
                Vec::new(),
                "none needed: the record was already destroyed",
                &destruction,
                "record not found at the end of the cancel window",
            );
            let mut event = sweeper_event(state, tenant, "records.destroy", &certificate);
            event.objects.push(deletion.id.clone());
            let row = signed_row(state, &certificate)?;
            state
                .store
                .complete_deletion(
                    tenant,
                    Some(&deletion.id),
                    &[],
                    row,
                    event.canonical_bytes(),
                )
                .await?;
            Ok(Ok(certificate))
        }
    }
}

/// Terminates a tenant: writes are refused from now; the purge runs at the first sweep after
/// `purge_after`. A second termination changes nothing and returns the first.
pub async fn terminate_tenant(
    state: &AppState,
    actor: &Actor,
    tenant: &TenantId,
    purge_after: Option<custodian_core::duration::CalDuration>,
    reason: String,
) -> Result<Result<Termination, Termination>, ServerError> {
    let now = state.clock.now();
    let purge_at = match purge_after {
        Some(d) => d
            .after(now)
            .ok_or_else(|| ServerError::Invalid("--purge-after is too long".into()))?,
        None => now,
    };
    let termination = Termination {
        tenant: tenant.clone(),
        requested_by: actor.id.clone(),
        reason,
        terminated_at: now,
        purge_at,
        purged_at: None,
        certificate_id: None,
    };
    let mut event = state
        .audit
        .event(actor, "tenants.terminate", Some(tenant), Decision::Allow);
    event.reason = Some(format!(
        "{}; writes refused from now, purge at {purge_at}",
        termination.reason
    ));
    Ok(
        match state
            .store
            .terminate_tenant(&termination, event.canonical_bytes())
            .await?
        {
            None => Ok(termination),
            Some(existing) => Err(existing),
        },
    )
}

/// Purges a terminated tenant: every bucket destroyed (held records moved aside), then, when
/// nothing is left, every key of the tenant and one summary certificate. While holds keep
/// records, the termination stays open and each sweep tries again.
async fn purge_terminated(
    state: &AppState,
    holds: &[Hold],
    termination: &Termination,
    stop: StopAfter,
    report: &mut SweepReport,
) -> Result<(), ServerError> {
    let tenant = &termination.tenant;
    let destruction = Destruction {
        performed_by: "tenant termination",
        reason: format!(
            "tenant terminated by {} at {}: {}",
            termination.requested_by, termination.terminated_at, termination.reason
        ),
    };
    let mut kept = Vec::new();
    for bucket in state.store.tenant_buckets(tenant).await? {
        let records = state
            .store
            .bucket_records(tenant, &bucket.data_type, &bucket.bucket)
            .await?;
        let held = bucket_holds(holds, &bucket.data_type, &records);
        if let Some(certificate) = destroy_bucket(
            state,
            tenant,
            &bucket.data_type,
            &bucket.bucket,
            &records,
            &held,
            &destruction,
            stop,
        )
        .await?
        {
            report.rekeyed += held.records.len() as u64;
            report.bytes_destroyed += destroyed_bytes(&records, &held);
            report.destroyed.push(certificate);
        }
        for id in held.ids {
            if !kept.contains(&id) {
                kept.push(id);
            }
        }
    }
    if !kept.is_empty() {
        report.held_terminations.push((tenant.clone(), kept));
        return Ok(());
    }
    // Nothing is left: every key of the tenant goes, the KEKs and index key included.
    state.keys.shred(tenant, ShredScope::Tenant).await?;
    let verification = match state.keys.tenant(tenant).await {
        Err(ServerError::KeyDestroyed { .. }) => {
            "attempted load of the tenant's key-encryption key failed: key_destroyed"
        }
        Ok(_) => {
            return Err(ServerError::Internal(format!(
                "tenant {tenant}'s keys still load after the tenant shred"
            )));
        }
        Err(e) => return Err(e),
    };
    let verifier = custodian_tlog::note::Verifier::parse(&state.audit.verifier_key()?)
        .map_err(|e| ServerError::Internal(e.to_string()))?;
    let mut buckets = Vec::new();
    let mut records = 0;
    for row in state.store.certificates(tenant).await? {
        if row.issued_at < termination.terminated_at {
            continue;
        }
        if let Some(c) = verifier
            .open_text(&row.note)
            .ok()
            .and_then(Certificate::from_signed_text)
        {
            records += c.record_count;
            buckets.push(c.id);
        }
    }
    let mut certificate = certificate(
        state,
        tenant,
        &format!("tenant/{tenant}"),
        "*",
        std::iter::empty(),
        vec![format!(
            "tenant/{tenant}: every KEK, the index key and every data key"
        )],
        "cryptographic erase of every tenant key + record purge",
        &destruction,
        verification,
    );
    certificate.record_count = records;
    certificate.record_ids_sha256 = hex(&custodian_crypto::sha256(buckets.join("\n").as_bytes()));
    certificate.reason = format!(
        "{}; summary of {} bucket certificate(s) (record_ids_sha256 hashes their ids)",
        destruction.reason,
        buckets.len()
    );
    let mut event = sweeper_event(state, tenant, "tenants.purge", &certificate);
    event.after = Some(format!("{records} records destroyed, every key shredded"));
    let row = signed_row(state, &certificate)?;
    state
        .store
        .finish_termination(
            tenant,
            certificate.completed_at,
            row,
            event.canonical_bytes(),
        )
        .await?;
    report.destroyed.push(certificate);
    Ok(())
}

/// Records an event that starts `after_event` retention clocks, then starts the clock of
/// every pending record waiting for it. The first recording wins; recording it again starts
/// any clock still pending (so a crash between the two steps is finished by a retry) and
/// returns the first. Records that arrive later for a recorded event get their clock at once.
pub async fn record_event(
    state: &AppState,
    actor: &Actor,
    tenant: &TenantId,
    event: &str,
    reference: &str,
) -> Result<(RetentionEvent, bool, u64), ServerError> {
    // Stored to the microsecond: the clocks run from the time as stored.
    let now = state.clock.now();
    let at = Timestamp::from_microsecond(now.as_microsecond()).unwrap_or(now);
    let recorded = RetentionEvent {
        event: event.to_owned(),
        reference: reference.to_owned(),
        at,
        recorded_by: actor.id.clone(),
    };
    let mut audit = state
        .audit
        .event(actor, "retention.event", Some(tenant), Decision::Allow);
    audit.objects = vec![format!("{event}:{reference}")];
    let (recorded, new) = match state
        .store
        .record_event(tenant, &recorded, audit.canonical_bytes())
        .await?
    {
        None => (recorded, true),
        Some(first) => (first, false),
    };
    let started = start_clocks(state, tenant, &recorded).await?;
    Ok((recorded, new, started))
}

/// Starts the retention clock of every record of `tenant` pending on `event`: each is sealed
/// anew under the bucket of its new expiry day, in batches, each batch with its audit entry.
pub async fn start_clocks(
    state: &AppState,
    tenant: &TenantId,
    event: &RetentionEvent,
) -> Result<u64, ServerError> {
    const BATCH: u32 = 500;
    let Some(tenant_policy) = state.policy.tenant(tenant) else {
        return Ok(0);
    };
    let mut started = 0;
    loop {
        let pending = state
            .store
            .pending_records(tenant, &event.event, &event.reference, BATCH)
            .await?;
        if pending.is_empty() {
            return Ok(started);
        }
        let now = state.clock.now();
        let mut moved = Vec::with_capacity(pending.len());
        for record in &pending {
            let expiry = state
                .policy
                .data_type(record.data_type.as_str())
                .and_then(|t| {
                    state
                        .policy
                        .effective_retention(tenant_policy, t)
                        .expiry_after_event(event.at)
                })
                .ok_or_else(|| {
                    ServerError::Internal(format!(
                        "record {} waits for {} but its type has no after_event retention",
                        record.id, event.event
                    ))
                })?;
            // An event recorded long ago (a retry, a late record) may give an expiry already
            // past: today's bucket is still open and closes tonight.
            let bucket = custodian_core::retention::Expiry::At(expiry.max(now)).bucket(now);
            moved.push(RekeyedRecord {
                id: record.id,
                sealed: crate::records::reseal(state, tenant, record, &bucket).await?,
                key_bucket: bucket,
                expires_at: Some(expiry),
                pending_event: None,
            });
        }
        let actor = Actor {
            id: "system:retention".into(),
            request_id: None,
        };
        let mut audit = state.audit.event(
            &actor,
            "retention.clock_started",
            Some(tenant),
            Decision::Allow,
        );
        audit.subsystem = "retention".into();
        audit.objects = moved.iter().map(|r| r.id.to_string()).collect();
        audit.reason = Some(format!(
            "{} for {} at {}",
            event.event, event.reference, event.at
        ));
        let count = moved.len() as u64;
        state
            .store
            .rekey_records(tenant, moved, audit.canonical_bytes())
            .await?;
        started += count;
    }
}

/// Runs [`sweep`] every `interval` until the server stops. A failed sweep is logged and
/// retried at the next tick; `custodian_retention_sweep_failures_total` counts them, and
/// `custodian_retention_last_sweep_timestamp_seconds` stops moving, which is what to alert on.
pub fn spawn_sweeper(
    state: std::sync::Arc<AppState>,
    interval: std::time::Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            match sweep(&state, state.clock.now()).await {
                Ok(report) => {
                    if !report.destroyed.is_empty() || !report.held.is_empty() {
                        tracing::info!(
                            certificates = report.destroyed.len(),
                            records = report.destroyed.iter().map(|c| c.record_count).sum::<u64>(),
                            held_buckets = report.held.len(),
                            "retention sweep"
                        );
                    }
                }
                Err(e) => {
                    metrics::counter!("custodian_retention_sweep_failures_total").increment(1);
                    tracing::error!(error = %e, "retention sweep failed; it is retried at the next tick");
                }
            }
        }
    })
}

/// Applies the policy's retentions to the records stored under an earlier one, once per
/// change: each record of a changed tenant × data type gets the expiry the policy now gives
/// it and moves (sealed anew) to that expiry's bucket. A lengthening applies at once; a
/// shortening never ends a record before the change was first seen plus the deployment's
/// grace period. Crash-safe: a change is marked applied only once every record is done, and
/// its start time is kept, so a restart resumes with the same grace. Records moved aside by
/// a hold and those whose clock an event started (their event time is not kept) keep their
/// expiry. Returns how many records changed.
pub async fn apply_retention_changes(state: &AppState) -> Result<u64, ServerError> {
    let now = state.clock.now();
    let mut changed = 0;
    for tenant in &state.policy.tenants {
        let applied = state.store.applied_retentions(&tenant.id).await?;
        for data_type in &state.policy.data_types {
            let retention = state.policy.effective_retention(tenant, data_type);
            let rule = retention.to_string();
            let mut record = AppliedRetention {
                data_type: data_type.name.clone(),
                rule: rule.clone(),
                since: now,
                applied: false,
            };
            match applied.iter().find(|a| a.data_type == data_type.name) {
                // First seen: the stored records were computed under this very rule.
                None => {
                    record.applied = true;
                    state
                        .store
                        .put_applied_retention(&tenant.id, &record, None)
                        .await?;
                    continue;
                }
                Some(a) if a.rule == rule && a.applied => continue,
                Some(a) if a.rule == rule => record.since = a.since,
                Some(a) => {
                    let actor = Actor {
                        id: "system:retention".into(),
                        request_id: None,
                    };
                    let mut event = state.audit.event(
                        &actor,
                        "retention.policy_changed",
                        Some(&tenant.id),
                        Decision::Allow,
                    );
                    event.subsystem = "retention".into();
                    event.objects = vec![data_type.name.to_string()];
                    event.reason = Some(format!("{} -> {rule}", a.rule));
                    tracing::warn!(
                        tenant = %tenant.id,
                        data_type = %data_type.name,
                        before = %a.rule,
                        after = %rule,
                        "retention changed by the policy: stored records get new expiries (a shortening waits out deployment.retention_shortening_grace)"
                    );
                    state
                        .store
                        .put_applied_retention(&tenant.id, &record, Some(event.canonical_bytes()))
                        .await?;
                }
            }
            changed +=
                recompute_expiries(state, &tenant.id, &data_type.name, &retention, record.since)
                    .await?;
            record.applied = true;
            state
                .store
                .put_applied_retention(&tenant.id, &record, None)
                .await?;
        }
    }
    Ok(changed)
}

async fn recompute_expiries(
    state: &AppState,
    tenant: &TenantId,
    data_type: &DataTypeName,
    retention: &custodian_core::retention::EffectiveRetention,
    since: Timestamp,
) -> Result<u64, ServerError> {
    use custodian_core::retention::{Expiry, recomputed_expiry};
    const PAGE: u32 = 500;
    let grace = state.policy.deployment.shortening_grace.as_ref();
    let mut after = None;
    let mut changed = 0;
    loop {
        let page = state
            .store
            .records_of_type(tenant, data_type, after, PAGE)
            .await?;
        let Some(last) = page.last() else {
            return Ok(changed);
        };
        after = Some(last.id);
        let now = state.clock.now();
        let mut moved = Vec::new();
        for record in &page {
            if custodian_core::retention::bucket_closes_at(&record.key_bucket)
                == Some(Timestamp::MIN)
            {
                continue; // moved aside by a hold
            }
            let target = match retention.expiry(record.event_time) {
                Expiry::At(t) => recomputed_expiry(record.expires_at, Some(t), since, grace),
                Expiry::Never => None,
                // Waiting for an event, or its clock started by one: left as it is.
                Expiry::PendingEvent(_) => continue,
            };
            let bucket = match target {
                Some(t) => Expiry::At(t.max(now)).bucket(now),
                None => Expiry::Never.bucket(record.ingest_time),
            };
            if target == record.expires_at && bucket == record.key_bucket {
                continue;
            }
            let sealed = if bucket == record.key_bucket {
                record.sealed.clone()
            } else {
                crate::records::reseal(state, tenant, record, &bucket).await?
            };
            moved.push(RekeyedRecord {
                id: record.id,
                key_bucket: bucket,
                expires_at: target,
                pending_event: None,
                sealed,
            });
        }
        if moved.is_empty() {
            continue;
        }
        let actor = Actor {
            id: "system:retention".into(),
            request_id: None,
        };
        let mut event = state.audit.event(
            &actor,
            "retention.recomputed",
            Some(tenant),
            Decision::Allow,
        );
        event.subsystem = "retention".into();
        event.objects = moved.iter().map(|r| r.id.to_string()).collect();
        event.reason = Some(format!("{data_type}: retention now {retention}"));
        changed += moved.len() as u64;
        state
            .store
            .rekey_records(tenant, moved, event.canonical_bytes())
            .await?;
    }
}
