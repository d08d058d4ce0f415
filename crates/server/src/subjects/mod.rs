//! Data-subject rights (GDPR Art. 15–17 and 20): a portable, signed export of everything held
//! about a subject; erasure, which destroys the subject's key so every copy of their records
//! is unreadable at once (or, for data types the policy keeps for aggregate use, anonymises
//! them), unless a legal hold stops it; rectification of a record's payload; and each tenant's
//! request log, which shows an auditor when every request came in and was answered.
//!
//! Subjects are found through the keyed-pseudonym index and appear in storage and in the audit
//! log only as pseudonyms.

mod erasure;
mod export;
mod rectify;

pub use erasure::{ErasureOutcome, HeldRecord, erase};
pub(crate) use erasure::{carry_out_scheduled, erasure_cancelled};
pub use export::{
    EXPORT_FORMAT, ExportFile, ExportManifest, VerifiedExport, export, verify_export,
};
pub use rectify::{NotRectified, Rectified, rectify};

use custodian_core::audit::Decision;
use custodian_core::ids::{RecordId, TenantId};
use custodian_store::{StoredRecord, SubjectRequest};

use crate::audit::{Actor, hex};
use crate::{AppState, ServerError};

/// What a request asks and why, as its caller states it.
pub struct Asked<'a> {
    pub kind: &'static str,
    pub reference: &'a str,
    pub reason: &'a str,
}

/// Logs a new request for `pseudonym` of `tenant` (audited), due within the policy's
/// `answer_within`.
pub async fn open_request(
    state: &AppState,
    actor: &Actor,
    tenant: &TenantId,
    pseudonym: [u8; 32],
    asked: &Asked<'_>,
) -> Result<SubjectRequest, ServerError> {
    let now = state.clock.now();
    let due_at = state
        .policy
        .subject_rights
        .answer_within
        .after(now)
        .ok_or_else(|| ServerError::Internal("answer_within ends past year 9999".into()))?;
    let request = SubjectRequest {
        tenant: tenant.clone(),
        id: ulid::Ulid::new().to_string(),
        kind: asked.kind.to_owned(),
        subject: pseudonym,
        reference: asked.reference.to_owned(),
        reason: asked.reason.to_owned(),
        requested_by: actor.id.clone(),
        received_at: now,
        due_at,
        status: "open".into(),
        completed_at: None,
        outcome: None,
        certificate_id: None,
    };
    let mut event = state.audit.event(
        actor,
        &format!("subjects.{}.request", asked.kind),
        Some(tenant),
        Decision::Allow,
    );
    event.subjects = vec![hex(&pseudonym)];
    event.objects = vec![request.id.clone()];
    event.reason = Some(format!("{} (reference {})", asked.reason, asked.reference));
    state
        .store
        .insert_subject_request(&request, state.audit.entry(&event).await?)
        .await?;
    Ok(request)
}

/// Records the answer to `request` (audited) and returns the request as answered.
pub async fn answer(
    state: &AppState,
    actor: &Actor,
    request: &SubjectRequest,
    status: &str,
    outcome: &serde_json::Value,
    certificate: Option<&str>,
) -> Result<SubjectRequest, ServerError> {
    let at = state.clock.now();
    let mut event = state.audit.event(
        actor,
        &format!("subjects.{}.answer", request.kind),
        Some(&request.tenant),
        Decision::Allow,
    );
    event.subjects = vec![hex(&request.subject)];
    event.objects = std::iter::once(request.id.clone())
        .chain(certificate.map(str::to_owned))
        .collect();
    event.reason = Some(status.to_owned());
    let outcome = outcome.to_string();
    state
        .store
        .finish_subject_request(
            &request.tenant,
            &request.id,
            status,
            &outcome,
            at,
            certificate,
            state.audit.entry(&event).await?,
        )
        .await?;
    Ok(SubjectRequest {
        status: status.to_owned(),
        completed_at: Some(at),
        outcome: Some(outcome),
        certificate_id: certificate.map(str::to_owned),
        ..request.clone()
    })
}

/// A subject's records, a page at a time, in id order, through the pseudonym index.
pub(crate) struct Pages<'a> {
    tenant: &'a TenantId,
    pseudonym: &'a [u8; 32],
    after: Option<RecordId>,
    done: bool,
}

impl<'a> Pages<'a> {
    const SIZE: u32 = 500;

    pub(crate) fn new(tenant: &'a TenantId, pseudonym: &'a [u8; 32]) -> Pages<'a> {
        Pages {
            tenant,
            pseudonym,
            after: None,
            done: false,
        }
    }

    pub(crate) async fn next(
        &mut self,
        state: &AppState,
    ) -> Result<Option<Vec<StoredRecord>>, ServerError> {
        if self.done {
            return Ok(None);
        }
        let page = state
            .store
            .list_subject_records(self.tenant, self.pseudonym, self.after, Self::SIZE)
            .await?;
        self.done = page.len() < Self::SIZE as usize;
        self.after = page.last().map(|r| r.id);
        Ok((!page.is_empty()).then_some(page))
    }
}
