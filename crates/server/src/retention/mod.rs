//! The retention engine's service side: the sweeper that destroys expiry buckets when their
//! time is up, the dry-run plan, and the parts it carries out: legal holds ([`holds`]),
//! deletion certificates ([`certificate`]), record deletes, two-step deletions and tenant
//! termination ([`deletions`]), and the clocks that events and policy changes move
//! ([`clocks`]).
//!
//! Due buckets are destroyed in this order, so a crash at any point is safe: records a hold
//! keeps are first sealed anew into a bucket of their own; then every due bucket's data key is
//! shredded, one transaction per tenant (from then on no copy of their records can be read,
//! backups included, however many there are); each destruction is verified by an attempted
//! unwrap that must fail; then each bucket's rows are purged in the transaction that stores
//! its certificate and audit entry. A crash after the shred leaves rows that can no longer be
//! read; the next sweep finds the buckets again, shreds nothing more and purges and certifies
//! them. Holds are checked and destructions run under one lock (in the process and,
//! on PostgreSQL, across nodes), so a hold placed during a sweep waits for it.

pub(crate) mod certificate;
mod clocks;
mod deletions;
mod holds;

use std::collections::HashMap;
use std::collections::hash_map::Entry;

use custodian_core::audit::Decision;
use custodian_core::hold::{Hold, HoldScope, RecordFacts};
use custodian_core::ids::{DataTypeName, RecordId, TenantId};
use custodian_crypto::DataKeyId;
use custodian_store::{
    AuditLog, BucketRecord, BucketSummary, RekeyedRecord, ShredScope, StoredRecord,
};
use jiff::Timestamp;
use serde::Serialize;

use crate::audit::Actor;
use crate::{AppState, ServerError};

pub use certificate::{CERTIFICATE_HEADER, Certificate};
pub use clocks::{apply_retention_changes, record_event, start_clocks};
pub use deletions::{
    DeleteOutcome, cancel_deletion, cancel_termination, delete_record, terminate_tenant,
};
pub use holds::{place_hold, release_hold};

use certificate::{Destruction, signed_row};
use deletions::{carry_out_deletion, purge_terminated};

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
    /// Audit entry bodies destroyed (and kept by holds) under `deployment.audit_retention`.
    pub audit: crate::audit::AuditExpiry,
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
            let active = holds.of(state, &bucket.tenant).await?;
            let held = holds_on_bucket(
                state,
                active,
                &bucket.tenant,
                &bucket.data_type,
                &bucket.bucket,
            )
            .await?;
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
    let mut doomed = Vec::new();
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
        let held = holds_on_bucket(
            state,
            active,
            &bucket.tenant,
            &bucket.data_type,
            &bucket.bucket,
        )
        .await?;
        let prepared = prepare_bucket(
            state,
            &bucket.tenant,
            &bucket.data_type,
            &bucket.bucket,
            &held,
            destruction,
            stop,
        )
        .await?;
        report.rekeyed += held.records.len() as u64;
        match prepared {
            Some(d) => {
                doomed.push(d);
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
    destroy_buckets(state, doomed, stop, &mut report).await?;
    if let Some(retention) = &state.policy.deployment.audit_retention {
        report.audit = expire_audit(state, now, retention, &mut holds).await?;
    }
    crate::metrics::record_sweep(state.clock.now(), &report);
    Ok(report)
}

/// Destroys the audit entry bodies whose retention ended, log by log. A tenant-wide hold
/// keeps everything of its tenant, the tenant's audit trail included.
async fn expire_audit(
    state: &AppState,
    now: Timestamp,
    retention: &custodian_core::duration::CalDuration,
    holds: &mut ActiveHolds,
) -> Result<crate::audit::AuditExpiry, ServerError> {
    let mut report = crate::audit::AuditExpiry::default();
    let Some((through, logs)) = state.audit.expired_logs(now, retention).await? else {
        return Ok(report);
    };
    for log in logs {
        if let AuditLog::Tenant(tenant) = &log {
            let holding: Vec<String> = holds
                .of(state, tenant)
                .await?
                .iter()
                .filter(|h| matches!(h.scope, HoldScope::Tenant))
                .map(|h| h.id.clone())
                .collect();
            if !holding.is_empty() {
                report.held.push((log.key().to_owned(), holding));
                continue;
            }
        }
        let why = format!("deployment.audit_retention {retention} ended");
        let periods = state
            .audit
            .destroy_periods(&log, &through, now, &why)
            .await?;
        if !periods.is_empty() {
            report.destroyed.push((log.key().to_owned(), periods));
        }
    }
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
    records: std::collections::BTreeSet<RecordId>,
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

/// A bucket chosen for destruction, its held records already moved aside.
struct Doomed {
    tenant: TenantId,
    data_type: DataTypeName,
    bucket: String,
    destruction: Destruction<'static>,
}

/// Gets a bucket ready for destruction: records a hold keeps move to a bucket of their own
/// (sealed anew, so this bucket's key can go). `None` when holds keep every record.
async fn prepare_bucket(
    state: &AppState,
    tenant: &TenantId,
    data_type: &DataTypeName,
    bucket: &str,
    held: &BucketHolds,
    destruction: Destruction<'static>,
    stop: StopAfter,
) -> Result<Option<Doomed>, ServerError> {
    if held.whole {
        return Ok(None);
    }
    if !held.records.is_empty() {
        let moved_to =
            custodian_core::retention::held_bucket(&ulid::Ulid::new().to_string().to_lowercase());
        rekey_held(state, tenant, &held.records, &moved_to, &held.ids).await?;
        stop.check(Step::Rekeyed)?;
    }
    Ok(Some(Doomed {
        tenant: tenant.clone(),
        data_type: data_type.clone(),
        bucket: bucket.to_owned(),
        destruction,
    }))
}

/// What the active holds keep of a bucket. Its records are read only when some hold might
/// cover one of them: without holds, nothing stands between a due bucket and its shred.
async fn holds_on_bucket(
    state: &AppState,
    holds: &[Hold],
    tenant: &TenantId,
    data_type: &DataTypeName,
    bucket: &str,
) -> Result<BucketHolds, ServerError> {
    if holds.is_empty() {
        return Ok(BucketHolds::default());
    }
    let records = state
        .store
        .bucket_records(tenant, data_type, bucket)
        .await?;
    Ok(bucket_holds(holds, data_type, &records))
}

/// Destroys prepared buckets: every key first, one shred per tenant (from then on none of
/// their records can be read, backups included), each verified gone by an attempted unwrap;
/// then each bucket's rows are purged with its certificate and audit entry. Making everything
/// unreadable costs one transaction per tenant, however many records the buckets hold.
async fn destroy_buckets(
    state: &AppState,
    doomed: Vec<Doomed>,
    stop: StopAfter,
    report: &mut SweepReport,
) -> Result<(), ServerError> {
    let mut by_tenant: std::collections::BTreeMap<&TenantId, Vec<String>> = Default::default();
    for d in &doomed {
        by_tenant
            .entry(&d.tenant)
            .or_default()
            .push(bucket_key(&d.data_type, &d.bucket).encode());
    }
    for (tenant, keys) in by_tenant {
        state.keys.shred(tenant, ShredScope::Keys(keys)).await?;
    }
    if !doomed.is_empty() {
        stop.check(Step::Shredded)?;
    }
    let mut verified = Vec::with_capacity(doomed.len());
    for d in &doomed {
        let key = bucket_key(&d.data_type, &d.bucket);
        verified.push(verify_destroyed(state, &d.tenant, &key).await?);
    }
    if !doomed.is_empty() {
        stop.check(Step::Verified)?;
    }
    for (d, verification) in doomed.into_iter().zip(verified) {
        // Read after the shred: what is left in the bucket is exactly what was destroyed.
        let records = state
            .store
            .bucket_records(&d.tenant, &d.data_type, &d.bucket)
            .await?;
        let key = bucket_key(&d.data_type, &d.bucket);
        let scope = format!("bucket/{}/{}", d.data_type, d.bucket);
        let certificate = certificate::issue(
            state,
            &d.tenant,
            &scope,
            d.data_type.as_str(),
            records.iter().map(|r| r.id),
            vec![key.encode()],
            "cryptographic erase (AES-256 data key destroyed) + record purge",
            &d.destruction,
            verification,
        );
        let mut event = sweeper_event(state, &d.tenant, "retention.destroy", &certificate);
        event.after = Some(format!("{} records destroyed", records.len()));
        let row = signed_row(state, &certificate)?;
        state
            .store
            .purge_bucket(
                &d.tenant,
                &d.data_type,
                &d.bucket,
                row,
                state.audit.entry(&event).await?,
            )
            .await?;
        report.bytes_destroyed += records.iter().map(|r| r.sealed_len).sum::<u64>();
        report.destroyed.push(certificate);
        stop.check(Step::Purged)?;
    }
    Ok(())
}

/// Seals the held records anew under `bucket`, in one transaction with its audit entry.
async fn rekey_held(
    state: &AppState,
    tenant: &TenantId,
    ids: &std::collections::BTreeSet<RecordId>,
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
    let mut event = engine_event(state, "sweeper", "retention.rekey_held", tenant);
    event.objects = moved.iter().map(|r| r.id.to_string()).collect();
    event.reason = Some(format!(
        "kept by {}; moved to bucket {bucket} so the rest of their bucket can be destroyed",
        holds.join(", ")
    ));
    state
        .store
        .rekey_records(tenant, moved, state.audit.entry(&event).await?)
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

/// The actor of what the engine does by itself, with no request behind it.
fn engine_actor(subsystem: &str) -> Actor {
    Actor::internal(format!("system:{subsystem}"))
}

/// An audit event of the engine's own doing (`sweeper`, `retention`).
fn engine_event(
    state: &AppState,
    subsystem: &str,
    action: &str,
    tenant: &TenantId,
) -> custodian_core::audit::AuditEvent {
    let mut event = state.audit.event(
        &engine_actor(subsystem),
        action,
        Some(tenant),
        Decision::Allow,
    );
    event.subsystem = subsystem.into();
    event
}

/// The sweeper's audit event for a destruction under `certificate`.
fn sweeper_event(
    state: &AppState,
    tenant: &TenantId,
    action: &str,
    certificate: &Certificate,
) -> custodian_core::audit::AuditEvent {
    let mut event = engine_event(state, "sweeper", action, tenant);
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
pub(crate) fn holds_on(holds: &[Hold], record: &StoredRecord) -> Vec<String> {
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
