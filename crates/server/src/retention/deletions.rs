//! Deletions asked for rather than due: a record delete (at once, or scheduled when its data
//! type has a cancel window), the scheduled deletions the sweeper carries out when their window
//! ends, and tenant termination with its purge and summary certificate. Every one is refused
//! where a legal hold covers what it would destroy.

use custodian_core::audit::Decision;
use custodian_core::hold::Hold;
use custodian_core::ids::{RecordId, TenantId};
use custodian_store::{
    CancelOutcome, DeletionState, DeletionTarget, ScheduledDeletion, ShredScope, StoredRecord,
    Termination, TerminationCancel,
};

use super::certificate::{self, Destruction, signed_row};
use super::{
    StopAfter, SweepReport, bucket_key, destroy_buckets, engine_actor, holds_on, holds_on_bucket,
    prepare_bucket, sweeper_event,
};
use crate::audit::{Actor, hex};
use crate::retention::Certificate;
use crate::{AppState, ServerError};

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
    let certificate = certificate::issue(
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
        .complete_deletion(
            tenant,
            deletion,
            &[record.id],
            row,
            state.audit.entry(&event).await?,
        )
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
    id: RecordId,
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
                .schedule_deletion(&deletion, state.audit.entry(&event).await?)
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
    // Under the lock every node's sweep takes: a cancel never races the deletion it cancels.
    let _destruction = state.destruction.lock().await;
    let _across_nodes = state.store.lock_destruction().await?;
    let mut event = state
        .audit
        .event(actor, "deletions.cancel", Some(tenant), Decision::Allow);
    event.objects = vec![id.to_owned()];
    let outcome = state
        .store
        .cancel_deletion(
            tenant,
            id,
            &actor.id,
            state.clock.now(),
            state.audit.entry(&event).await?,
        )
        .await?;
    // A cancelled erasure answers its subject request: nothing was erased.
    if let CancelOutcome::Cancelled(d) = &outcome
        && matches!(d.target, DeletionTarget::Subject(_))
    {
        crate::subjects::erasure_cancelled(state, actor, d).await?;
    }
    Ok(outcome)
}

/// Carries out a scheduled deletion whose window is over, unless a hold placed meanwhile
/// covers it (then it waits, and is tried again at every sweep).
pub(super) async fn carry_out_deletion(
    state: &AppState,
    holds: &[Hold],
    deletion: &ScheduledDeletion,
) -> Result<Result<Certificate, Vec<String>>, ServerError> {
    let tenant = &deletion.tenant;
    let DeletionTarget::Record(id) = &deletion.target else {
        return crate::subjects::carry_out_scheduled(state, holds, deletion).await;
    };
    let destruction = Destruction {
        performed_by: "retention sweeper (scheduled deletion)",
        reason: format!(
            "{} (requested by {} at {}, cancel window ended {})",
            deletion.reason, deletion.requested_by, deletion.requested_at, deletion.due_at
        ),
    };
    let actor = engine_actor("sweeper");
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
            let certificate = certificate::issue(
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
                    state.audit.entry(&event).await?,
                )
                .await?;
            Ok(Ok(certificate))
        }
    }
}

/// Terminates a tenant: writes are refused from now; the purge runs at the first sweep after
/// `purge_after`, and never before the longest `cancel_window` of the policy's data types, so
/// the termination can be withdrawn until then. A second termination changes nothing and
/// returns the first.
pub async fn terminate_tenant(
    state: &AppState,
    actor: &Actor,
    tenant: &TenantId,
    purge_after: Option<custodian_core::duration::CalDuration>,
    reason: String,
) -> Result<Result<Termination, Termination>, ServerError> {
    let now = state.clock.now();
    let mut purge_at = match purge_after {
        Some(d) => d
            .after(now)
            .ok_or_else(|| ServerError::Invalid("--purge-after is too long".into()))?,
        None => now,
    };
    for window in state
        .policy
        .data_types
        .iter()
        .filter_map(|t| t.cancel_window)
    {
        purge_at = purge_at.max(window.after(now).unwrap_or(purge_at));
    }
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
            .terminate_tenant(&termination, state.audit.entry(&event).await?)
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
pub(super) async fn purge_terminated(
    state: &AppState,
    holds: &[Hold],
    termination: &Termination,
    stop: StopAfter,
    report: &mut SweepReport,
) -> Result<(), ServerError> {
    let tenant = &termination.tenant;
    let reason = format!(
        "tenant terminated by {} at {}: {}",
        termination.requested_by, termination.terminated_at, termination.reason
    );
    let mut kept = Vec::new();
    let mut doomed = Vec::new();
    for bucket in state.store.tenant_buckets(tenant).await? {
        let held = holds_on_bucket(state, holds, tenant, &bucket.data_type, &bucket.bucket).await?;
        let destruction = Destruction {
            performed_by: "tenant termination",
            reason: reason.clone(),
        };
        report.rekeyed += held.records.len() as u64;
        doomed.extend(
            prepare_bucket(
                state,
                tenant,
                &bucket.data_type,
                &bucket.bucket,
                &held,
                destruction,
                stop,
            )
            .await?,
        );
        for id in held.ids {
            if !kept.contains(&id) {
                kept.push(id);
            }
        }
    }
    destroy_buckets(state, doomed, stop, report).await?;
    if !kept.is_empty() {
        report.held_terminations.push((tenant.clone(), kept));
        return Ok(());
    }
    // Nothing is left: every key of the tenant goes, the KEKs and index key included.
    let destruction = Destruction {
        performed_by: "tenant termination",
        reason,
    };
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
    let mut certificate = certificate::issue(
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
            state.audit.entry(&event).await?,
        )
        .await?;
    report.destroyed.push(certificate);
    Ok(())
}

/// Withdraws a termination before its purge time: the tenant takes writes again. Audited.
pub async fn cancel_termination(
    state: &AppState,
    actor: &Actor,
    tenant: &TenantId,
) -> Result<TerminationCancel, ServerError> {
    let _destruction = state.destruction.lock().await;
    let _across_nodes = state.store.lock_destruction().await?;
    let mut event = state.audit.event(
        actor,
        "tenants.cancel_termination",
        Some(tenant),
        Decision::Allow,
    );
    event.objects = vec![tenant.to_string()];
    Ok(state
        .store
        .cancel_termination(tenant, state.clock.now(), state.audit.entry(&event).await?)
        .await?)
}
