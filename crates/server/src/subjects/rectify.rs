//! Rectification (GDPR Art. 16): one of a subject's records gets a corrected payload, sealed
//! under the same keys in place of the old one. The audit keeps the SHA-256 of the payload
//! before and after, never either value. A record under a legal hold is evidence and is not
//! changed.

use custodian_core::hold::Hold;
use custodian_core::ids::{RecordId, TenantId};
use custodian_store::{ResealedRecord, SubjectRequest};
use serde_json::json;
use serde_json::value::RawValue;

use super::{Asked, answer, open_request};
use crate::audit::{Actor, hex};
use crate::ingest::SealedBody;
use crate::{AppState, ServerError};

/// A rectification carried out.
#[derive(Debug)]
pub struct Rectified {
    pub request: SubjectRequest,
    pub before_sha256: String,
    pub after_sha256: String,
}

/// Why a rectification was not carried out.
#[derive(Debug)]
pub enum NotRectified {
    /// The tenant has no such record naming this subject.
    NotFound,
    /// Holds cover the record (their ids); the refusal is logged with the request.
    Held(Box<SubjectRequest>, Vec<String>),
    /// The corrected payload is refused by the data type's de-identification policy (why).
    Refused(String),
}

/// Replaces the payload of `record` of `subject` with `payload`, logging the request.
pub async fn rectify(
    state: &AppState,
    actor: &Actor,
    tenant: &TenantId,
    subject: &str,
    record: RecordId,
    payload: &RawValue,
    asked: &Asked<'_>,
) -> Result<Result<Rectified, NotRectified>, ServerError> {
    let pseudonym = state.keys.tenant(tenant).await?.pseudonym(subject);
    let Some(stored) = state.store.get_record(tenant, record).await? else {
        return Ok(Err(NotRectified::NotFound));
    };
    if !stored.key_subjects.contains(&pseudonym) {
        return Ok(Err(NotRectified::NotFound));
    }
    let request = open_request(state, actor, tenant, pseudonym, asked).await?;
    // Under the destruction lock: a hold placed now waits until the record is rewritten.
    let _destruction = state.destruction.lock().await;
    let _across_nodes = state.store.lock_destruction().await?;
    let mut holds = state.store.holds(tenant).await?;
    holds.retain(Hold::is_active);
    let keeping = crate::retention::holds_on(&holds, &stored);
    if !keeping.is_empty() {
        let outcome =
            json!({"refused": "legal hold", "holds": keeping, "record": record.to_string()});
        let answered = answer(state, actor, &request, "refused", &outcome, None).await?;
        return Ok(Err(NotRectified::Held(Box::new(answered), keeping)));
    }
    let plaintext = crate::records::open(state, tenant, &stored).await?;
    let body: SealedBody<'_> = serde_json::from_slice(&plaintext)
        .map_err(|e| ServerError::Internal(format!("sealed body: {e}")))?;
    // The correction goes through the same field rules and free-text policy as ingest.
    let data_type = state
        .policy
        .data_type(stored.data_type.as_str())
        .ok_or_else(|| ServerError::Internal("stored type not in the policy".into()))?;
    let action = state.policy.class_info(stored.class).and_then(|c| c.pii);
    let keys = crate::deidentify::TransformKeys::of(&*state.keys.tenant(tenant).await?)?;
    let deidentified = match crate::deidentify::deidentify(
        &keys,
        tenant,
        data_type,
        action,
        &body.subjects,
        payload,
    ) {
        Ok(d) => d,
        Err(reason) => {
            let outcome = json!({"refused": reason, "record": record.to_string()});
            answer(state, actor, &request, "refused", &outcome, None).await?;
            return Ok(Err(NotRectified::Refused(reason)));
        }
    };
    let payload = deidentified.payload.as_deref().unwrap_or(payload);
    let before = hex(&custodian_crypto::sha256(body.payload.get().as_bytes()));
    let after = hex(&custodian_crypto::sha256(payload.get().as_bytes()));
    let corrected = zeroize::Zeroizing::new(
        serde_json::to_vec(&SealedBody {
            subjects: body.subjects,
            payload,
            findings: deidentified.findings,
        })
        .map_err(|e| ServerError::Internal(e.to_string()))?,
    );
    let sealed = crate::records::seal_as(
        state,
        tenant,
        &stored,
        &stored.key_bucket,
        &stored.key_subjects,
        &corrected,
    )
    .await?;
    let mut event = state.audit.event(
        actor,
        "subjects.rectify",
        Some(tenant),
        custodian_core::audit::Decision::Allow,
    );
    event.subjects = vec![hex(&pseudonym)];
    event.objects = vec![record.to_string(), request.id.clone()];
    event.before = Some(before.clone());
    event.after = Some(after.clone());
    event.reason = Some(asked.reason.to_owned());
    state
        .store
        .reseal_records(
            tenant,
            vec![ResealedRecord {
                id: record,
                sealed,
                key_subjects: stored.key_subjects.clone(),
            }],
            state.audit.entry(&event).await?,
        )
        .await?;
    let outcome =
        json!({"record": record.to_string(), "before_sha256": before, "after_sha256": after});
    let request = answer(state, actor, &request, "completed", &outcome, None).await?;
    Ok(Ok(Rectified {
        request,
        before_sha256: before,
        after_sha256: after,
    }))
}
