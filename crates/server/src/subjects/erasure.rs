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
use custodian_store::{ResealedRecord, ShredScope, StoredRecord, SubjectRequest};
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
    let subject_key = DataKeyId::Subject(pseudonym).encode();
    let scope = format!("subject/{}", hex(&pseudonym));

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
        let mut ids: Vec<String> = sorted.held.iter().flat_map(|(_, h)| h.clone()).collect();
        ids.sort_unstable();
        ids.dedup();
        let records = sorted.held.len() as u64;
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
        .complete_deletion(tenant, None, &erased, row, state.audit.entry(&event).await?)
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
        &request,
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
    let scanner = state.scanner()?;
    custodian_detect::anonymise::Anonymiser {
        scanner: &scanner,
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
