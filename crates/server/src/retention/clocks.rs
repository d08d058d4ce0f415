//! What moves a stored record's expiry after ingest: the event that starts an `after_event`
//! clock, and a policy whose retention changed since the record was stored. Either way the
//! record is sealed anew into the bucket of its new expiry day.

use custodian_core::audit::Decision;
use custodian_core::ids::{DataTypeName, TenantId};
use custodian_store::{AppliedRetention, RekeyedRecord, RetentionEvent};
use jiff::Timestamp;

use super::engine_event;
use crate::audit::Actor;
use crate::{AppState, ServerError};

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
        .record_event(tenant, &recorded, state.audit.entry(&audit).await?)
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
        let mut audit = engine_event(state, "retention", "retention.clock_started", tenant);
        audit.objects = moved.iter().map(|r| r.id.to_string()).collect();
        audit.reason = Some(format!(
            "{} for {} at {}",
            event.event, event.reference, event.at
        ));
        let count = moved.len() as u64;
        state
            .store
            .rekey_records(tenant, moved, state.audit.entry(&audit).await?)
            .await?;
        started += count;
    }
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
                    let mut event =
                        engine_event(state, "retention", "retention.policy_changed", &tenant.id);
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
                        .put_applied_retention(
                            &tenant.id,
                            &record,
                            Some(state.audit.entry(&event).await?),
                        )
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
            if custodian_core::retention::is_held_bucket(&record.key_bucket) {
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
        let mut event = engine_event(state, "retention", "retention.recomputed", tenant);
        event.objects = moved.iter().map(|r| r.id.to_string()).collect();
        event.reason = Some(format!("{data_type}: retention now {retention}"));
        changed += moved.len() as u64;
        state
            .store
            .rekey_records(tenant, moved, state.audit.entry(&event).await?)
            .await?;
    }
}
