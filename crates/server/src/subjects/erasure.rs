//! Erasure of a subject: every record naming them is destroyed by destroying the subject's
//! key, then purged, under a signed certificate; records of data types the policy keeps for
//! aggregate use are anonymised instead; a legal hold covering any record refuses the whole
//! request, or, when the policy says `erasure_under_hold = "erase_rest"`, keeps only the held
//! records (sealed anew without the subject's key) and erases the rest.
//!
//! It runs under the destruction lock, as sweeps do, so a hold placed meanwhile is either seen
//! here or placed after the erasure is complete.

use custodian_core::hold::Hold;
use custodian_core::ids::{RecordId, TenantId};
use custodian_core::policy::DeleteMethod;
use custodian_crypto::DataKeyId;
use custodian_store::{
    DeletionState, DeletionTarget, ResealedRecord, ScheduledDeletion, ShredScope, StoredRecord,
    SubjectRequest,
};
use serde::Serialize;
use serde_json::json;

use super::{Asked, Pages, answer, open_request};
use crate::audit::{Actor, hex};
use crate::retention::certificate::{self, Certificate, Destruction};
use crate::{AppState, ServerError};

/// What an erasure request came to.
#[derive(Debug)]
pub enum ErasureOutcome {
    /// Done: the certificate, with what was erased and anonymised, and the records holds kept
    /// (with `erase_rest` only).
    Erased {
        certificate: Box<Certificate>,
        erased: u64,
        anonymised: u64,
        held: Vec<HeldRecord>,
    },
    /// The subject was erased before; the answer names the first erasure's certificate.
    AlreadyErased { certificate: Option<String> },
    /// Holds cover some of the subject's records and the policy refuses partial erasure.
    Refused { holds: Vec<String>, records: u64 },
    /// A data type of the subject's records has a cancel window: the erasure is carried out
    /// by the sweeper once it ends, unless the scheduled deletion is cancelled first.
    Scheduled { deletion: ScheduledDeletion },
}

#[derive(Clone, Debug, Serialize)]
pub struct HeldRecord {
    pub record: String,
    pub holds: Vec<String>,
}

/// The subject's records, sorted by what erasure does with each.
#[derive(Default)]
struct Sorted {
    erase: Vec<StoredRecord>,
    anonymise: Vec<StoredRecord>,
    held: Vec<(StoredRecord, Vec<String>)>,
}

/// Erases `subject` of `tenant`, logging the request and its answer.
pub async fn erase(
    state: &AppState,
    actor: &Actor,
    tenant: &TenantId,
    subject: &str,
    asked: &Asked<'_>,
) -> Result<(SubjectRequest, ErasureOutcome), ServerError> {
    let pseudonym = state.keys.tenant(tenant).await?.pseudonym(subject);
    let request = open_request(state, actor, tenant, pseudonym, asked).await?;
    let _destruction = state.destruction.lock().await;
    let _across_nodes = state.store.lock_destruction().await?;
    let (subject_key, scope) = key_and_scope(&pseudonym);

    if !state
        .keys
        .store()
        .shredded(tenant, std::slice::from_ref(&subject_key))
        .await?
        .is_empty()
    {
        let certificate = state
            .store
            .certificates(tenant)
            .await?
            .into_iter()
            .find(|c| c.scope == scope)
            .map(|c| c.id);
        let outcome = json!({"already_erased": true, "certificate": certificate});
        let answered = answer(
            state,
            actor,
            &request,
            "completed",
            &outcome,
            certificate.as_deref(),
        )
        .await?;
        return Ok((answered, ErasureOutcome::AlreadyErased { certificate }));
    }

    let mut holds = state.store.holds(tenant).await?;
    holds.retain(Hold::is_active);
    let sorted = sort_records(state, tenant, &pseudonym, &holds).await?;
    if !sorted.held.is_empty() && !state.policy.subject_rights.erase_rest_under_hold {
        let (ids, records) = refusal(&sorted);
        let outcome = json!({"refused": "legal hold", "holds": ids, "held_records": records});
        let answered = answer(state, actor, &request, "refused", &outcome, None).await?;
        return Ok((
            answered,
            ErasureOutcome::Refused {
                holds: ids,
                records,
            },
        ));
    }
    if let Some(due_at) = sorted.cancel_window_end(state, state.clock.now()) {
        // Asked again while an erasure of the subject waits out its window: that one will
        // answer for both, so this request is answered now, pointing at it.
        let pending = state
            .store
            .scheduled_deletions(tenant)
            .await?
            .into_iter()
            .find(|d| {
                d.state == DeletionState::Scheduled
                    && d.target == DeletionTarget::Subject(pseudonym)
            });
        if let Some(deletion) = pending {
            let outcome = json!({
                "scheduled": deletion.id,
                "due_at": deletion.due_at,
                "answered_by": request_id(&deletion.id),
            });
            let answered = answer(state, actor, &request, "completed", &outcome, None).await?;
            return Ok((answered, ErasureOutcome::Scheduled { deletion }));
        }
        let deletion = schedule(state, actor, &request, due_at).await?;
        return Ok((request, ErasureOutcome::Scheduled { deletion }));
    }
    carry_out(state, actor, &request, None, sorted).await
}

/// The sweeper's side of a scheduled erasure whose cancel window ended: carried out now, or
/// `Err` with the ids of the holds that keep it waiting.
pub(crate) async fn carry_out_scheduled(
    state: &AppState,
    holds: &[Hold],
    deletion: &ScheduledDeletion,
) -> Result<Result<Certificate, Vec<String>>, ServerError> {
    let DeletionTarget::Subject(pseudonym) = &deletion.target else {
        return Err(ServerError::Internal(format!(
            "deletion {} is not a subject erasure",
            deletion.id
        )));
    };
    let tenant = &deletion.tenant;
    let request = state
        .store
        .subject_request(tenant, &request_id(&deletion.id))
        .await?
        .ok_or_else(|| {
            ServerError::Internal(format!(
                "scheduled erasure {} has no subject request",
                deletion.id
            ))
        })?;
    let sorted = sort_records(state, tenant, pseudonym, holds).await?;
    if !sorted.held.is_empty() && !state.policy.subject_rights.erase_rest_under_hold {
        return Ok(Err(refusal(&sorted).0));
    }
    let actor = Actor::internal("retention sweeper (scheduled erasure)");
    match carry_out(state, &actor, &request, Some(&deletion.id), sorted).await? {
        (_, ErasureOutcome::Erased { certificate, .. }) => Ok(Ok(*certificate)),
        (_, other) => Err(ServerError::Internal(format!(
            "scheduled erasure {} ended as {other:?}",
            deletion.id
        ))),
    }
}

/// Answers the request of a scheduled erasure that was cancelled in its window.
pub(crate) async fn erasure_cancelled(
    state: &AppState,
    actor: &Actor,
    deletion: &ScheduledDeletion,
) -> Result<(), ServerError> {
    if let Some(request) = state
        .store
        .subject_request(&deletion.tenant, &request_id(&deletion.id))
        .await?
    {
        let outcome = json!({"cancelled": deletion.id, "cancelled_by": actor.id});
        answer(state, actor, &request, "refused", &outcome, None).await?;
    }
    Ok(())
}

/// The scheduled deletion of an erasure request is named after it (ULIDs are case-blind).
fn deletion_id(request: &str) -> String {
    format!("sdl_{}", request.to_lowercase())
}

/// The request a scheduled erasure carries out.
pub(crate) fn request_id(deletion: &str) -> String {
    deletion
        .strip_prefix("sdl_")
        .unwrap_or(deletion)
        .to_uppercase()
}

/// The subject's key id, and the scope of its erasure certificate.
fn key_and_scope(pseudonym: &[u8; 32]) -> (String, String) {
    (
        DataKeyId::Subject(*pseudonym).encode(),
        format!("subject/{}", hex(pseudonym)),
    )
}

/// The distinct holds that keep records, and how many records they keep.
fn refusal(sorted: &Sorted) -> (Vec<String>, u64) {
    let mut ids: Vec<String> = sorted.held.iter().flat_map(|(_, h)| h.clone()).collect();
    ids.sort_unstable();
    ids.dedup();
    (ids, sorted.held.len() as u64)
}

async fn schedule(
    state: &AppState,
    actor: &Actor,
    request: &SubjectRequest,
    due_at: jiff::Timestamp,
) -> Result<ScheduledDeletion, ServerError> {
    let now = state.clock.now();
    let deletion = ScheduledDeletion {
        id: deletion_id(&request.id),
        tenant: request.tenant.clone(),
        target: DeletionTarget::Subject(request.subject),
        reason: format!(
            "subject erasure request {} (reference {}): {}",
            request.id, request.reference, request.reason
        ),
        requested_by: actor.id.clone(),
        requested_at: now,
        due_at,
        state: DeletionState::Scheduled,
    };
    let mut event = state.audit.event(
        actor,
        "deletions.schedule",
        Some(&request.tenant),
        custodian_core::audit::Decision::Allow,
    );
    event.subjects = vec![hex(&request.subject)];
    event.objects = vec![deletion.id.clone(), request.id.clone()];
    event.reason = Some(format!(
        "{}; carried out at {due_at} unless cancelled",
        deletion.reason
    ));
    state
        .store
        .schedule_deletion(&deletion, state.audit.entry(&event).await?)
        .await?;
    Ok(deletion)
}

/// Erases what `sorted` says, under the destruction lock the caller holds: reseals what
/// stays, destroys the subject key, checks it is gone, purges the rest under a certificate,
/// and answers the request.
async fn carry_out(
    state: &AppState,
    actor: &Actor,
    request: &SubjectRequest,
    deletion: Option<&str>,
    sorted: Sorted,
) -> Result<(SubjectRequest, ErasureOutcome), ServerError> {
    let tenant = &request.tenant;
    let pseudonym = request.subject;
    let (subject_key, scope) = key_and_scope(&pseudonym);
    // Records that stay are sealed anew without the subject's key before it is destroyed.
    let mut resealed = Vec::new();
    for record in &sorted.anonymise {
        resealed.push(anonymised(state, tenant, record).await?);
    }
    for (record, _) in &sorted.held {
        let keep: Vec<[u8; 32]> = record
            .key_subjects
            .iter()
            .copied()
            .filter(|p| *p != pseudonym)
            .collect();
        let plaintext = crate::records::open(state, tenant, record).await?;
        let sealed =
            crate::records::seal_as(state, tenant, record, &record.key_bucket, &keep, &plaintext)
                .await?;
        resealed.push(ResealedRecord {
            id: record.id,
            sealed,
            key_subjects: keep,
        });
    }
    if !resealed.is_empty() {
        let mut event = state.audit.event(
            actor,
            "subjects.erase.reseal",
            Some(tenant),
            custodian_core::audit::Decision::Allow,
        );
        event.subjects = vec![hex(&pseudonym)];
        event.objects = resealed.iter().map(|r| r.id.to_string()).collect();
        event.reason = Some(format!(
            "{} anonymised, {} kept under hold without the subject's key",
            sorted.anonymise.len(),
            sorted.held.len()
        ));
        state
            .store
            .reseal_records(tenant, resealed, state.audit.entry(&event).await?)
            .await?;
    }

    state
        .keys
        .shred(tenant, ShredScope::Keys(vec![subject_key.clone()]))
        .await?;
    // The destruction is checked the way an attacker would try: by asking for the key.
    match state
        .keys
        .data_keys(tenant, &[DataKeyId::Subject(pseudonym)], false, "")
        .await
    {
        Err(ServerError::KeyDestroyed { .. }) => {}
        Ok(_) => {
            return Err(ServerError::Internal(format!(
                "subject key {subject_key} still unwraps after its destruction"
            )));
        }
        Err(other) => return Err(other),
    }

    let erased: Vec<RecordId> = sorted.erase.iter().map(|r| r.id).collect();
    let destruction = Destruction {
        performed_by: &actor.id,
        reason: format!(
            "subject erasure request {} (reference {}): {}",
            request.id, request.reference, request.reason
        ),
    };
    let certificate = certificate::issue(
        state,
        tenant,
        &scope,
        "*",
        erased.iter().copied(),
        vec![subject_key],
        "crypto-shred: the subject key was destroyed, so every copy of the subject's records (backups included) is unreadable; then their rows and subject-index entries were purged",
        &destruction,
        "an unwrap of the subject key after its destruction failed, as it must",
    );
    let mut event = state.audit.event(
        actor,
        "subjects.erase",
        Some(tenant),
        custodian_core::audit::Decision::Allow,
    );
    event.subjects = vec![hex(&pseudonym)];
    event.objects = vec![request.id.clone(), certificate.id.clone()];
    event.reason = Some(destruction.reason.clone());
    let row = certificate::signed_row(state, &certificate)?;
    state
        .store
        .complete_deletion(
            tenant,
            deletion,
            &erased,
            row,
            state.audit.entry(&event).await?,
        )
        .await?;

    let held: Vec<HeldRecord> = sorted
        .held
        .iter()
        .map(|(r, holds)| HeldRecord {
            record: r.id.to_string(),
            holds: holds.clone(),
        })
        .collect();
    let outcome = json!({
        "records_erased": erased.len(),
        "records_anonymised": sorted.anonymise.len(),
        "held": held,
        "certificate": certificate.id,
    });
    let status = if held.is_empty() {
        "completed"
    } else {
        "partial"
    };
    let answered = answer(
        state,
        actor,
        request,
        status,
        &outcome,
        Some(&certificate.id),
    )
    .await?;
    Ok((
        answered,
        ErasureOutcome::Erased {
            erased: erased.len() as u64,
            anonymised: sorted.anonymise.len() as u64,
            certificate: Box::new(certificate),
            held,
        },
    ))
}

impl Sorted {
    /// When the longest cancel window among the subject's records' data types ends, counted
    /// from `now`; `None` when none of them has one.
    fn cancel_window_end(&self, state: &AppState, now: jiff::Timestamp) -> Option<jiff::Timestamp> {
        self.erase
            .iter()
            .chain(&self.anonymise)
            .chain(self.held.iter().map(|(r, _)| r))
            .filter_map(|r| state.policy.data_type(r.data_type.as_str())?.cancel_window)
            .filter_map(|w| w.after(now))
            .max()
    }
}

/// Walks the subject's records once, sorting each by what erasure does with it.
async fn sort_records(
    state: &AppState,
    tenant: &TenantId,
    pseudonym: &[u8; 32],
    holds: &[Hold],
) -> Result<Sorted, ServerError> {
    let mut sorted = Sorted::default();
    let mut pages = Pages::new(tenant, pseudonym);
    while let Some(page) = pages.next(state).await? {
        for record in page {
            let keeping = crate::retention::holds_on(holds, &record);
            let anonymise = state
                .policy
                .data_type(record.data_type.as_str())
                .is_some_and(|t| t.delete == DeleteMethod::Anonymize);
            if !keeping.is_empty() {
                sorted.held.push((record, keeping));
            } else if anonymise {
                sorted.anonymise.push(record);
            } else {
                sorted.erase.push(record);
            }
        }
    }
    Ok(sorted)
}

/// The record with every identifier irreversibly replaced and no subject left: sealed under
/// its bucket key alone, out of every subject's reach.
async fn anonymised(
    state: &AppState,
    tenant: &TenantId,
    record: &StoredRecord,
) -> Result<ResealedRecord, ServerError> {
    #[derive(serde::Deserialize, Serialize)]
    struct Body {
        subjects: Vec<String>,
        payload: serde_json::Value,
    }
    let plaintext = crate::records::open(state, tenant, record).await?;
    let mut body: Body = serde_json::from_slice(&plaintext)
        .map_err(|e| ServerError::Internal(format!("sealed body: {e}")))?;
    let identifying: Vec<String> = state
        .policy
        .data_type(record.data_type.as_str())
        .map(|t| t.fields.iter().map(|f| f.field.clone()).collect())
        .unwrap_or_default();
    custodian_detect::anonymise::Anonymiser {
        scanner: crate::deidentify::scanner()?,
        identifying_fields: &identifying,
        subjects: &body.subjects,
    }
    .anonymise(&mut body.payload);
    body.subjects.clear();
    let plaintext = zeroize::Zeroizing::new(
        serde_json::to_vec(&body).map_err(|e| ServerError::Internal(e.to_string()))?,
    );
    let sealed =
        crate::records::seal_as(state, tenant, record, &record.key_bucket, &[], &plaintext).await?;
    Ok(ResealedRecord {
        id: record.id,
        sealed,
        key_subjects: Vec::new(),
    })
}
