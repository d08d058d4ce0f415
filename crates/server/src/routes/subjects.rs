//! Data-subject routes: the access export, erasure, rectification, and the request log. The
//! subject id is in the path (percent-encoded as needed); it is pseudonymised at once and
//! never stored.

use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use custodian_core::access::Action;
use custodian_store::SubjectRequest;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use utoipa::{IntoParams, ToSchema};

use super::{admit, invalid, json_problem, required_text};
use crate::audit::hex;
use crate::problem::{Kind, Problem};
use crate::subjects::{self, Asked, ErasureOutcome, HeldRecord, NotRectified};
use crate::{AppState, ServerError};

const MAX_LIST: u32 = 1000;
/// The response header naming the request an export answers.
pub const REQUEST_HEADER: &str = "custodian-subject-request";

/// Why and on whose behalf: every subject request names both.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RequestBody {
    /// The request's reference (a ticket or case id).
    pub reference: String,
    pub reason: String,
}

impl RequestBody {
    fn checked(self) -> Result<RequestBody, Problem> {
        Ok(RequestBody {
            reference: required_text("reference", self.reference)?,
            reason: required_text("reason", self.reason)?,
        })
    }

    fn asked(&self, kind: &'static str) -> Asked<'_> {
        Asked {
            kind,
            reference: &self.reference,
            reason: &self.reason,
        }
    }
}

fn body<T>(b: Result<Json<T>, JsonRejection>) -> Result<T, Problem> {
    b.map(|Json(t)| t).map_err(json_problem)
}

/// A request as the log shows it.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct RequestView {
    pub id: String,
    pub kind: String,
    /// The subject's keyed pseudonym (hex).
    pub subject: String,
    pub reference: String,
    pub reason: String,
    pub requested_by: String,
    pub received_at: Timestamp,
    pub due_at: Timestamp,
    /// `open`, `completed`, `partial` or `refused`.
    pub status: String,
    pub completed_at: Option<Timestamp>,
    /// Answered (or still open) no later than `due_at`.
    pub in_time: bool,
    #[schema(value_type = Object)]
    pub outcome: Option<serde_json::Value>,
    pub certificate: Option<String>,
}

fn view(r: SubjectRequest, now: Timestamp) -> RequestView {
    RequestView {
        in_time: r.completed_at.unwrap_or(now) <= r.due_at,
        id: r.id,
        kind: r.kind,
        subject: hex(&r.subject),
        reference: r.reference,
        reason: r.reason,
        requested_by: r.requested_by,
        received_at: r.received_at,
        due_at: r.due_at,
        status: r.status,
        completed_at: r.completed_at,
        outcome: r.outcome.and_then(|o| serde_json::from_str(&o).ok()),
        certificate: r.certificate_id,
    }
}

/// Export everything held about a subject (GDPR Art. 15, 20)
///
/// A tar archive, streamed: `data/<type>.json` per data type, `schema.json`, `manifest.json`
/// (each file's SHA-256) and `manifest.sig` (a signed note over the manifest, verifiable
/// offline with `custodian subject verify-export`). An unknown subject gives an archive with no
/// data files. The request is logged and answered when the archive is complete.
#[utoipa::path(
    post,
    path = "/v1/tenants/{tenant}/subjects/{subject}/export",
    params(("tenant" = String, Path), ("subject" = String, Path)),
    request_body = RequestBody,
    responses(
        (status = 200, description = "The export (application/x-tar)", content_type = "application/x-tar"),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])),
)]
pub async fn export(
    State(state): State<Arc<AppState>>,
    Path((tenant, subject)): Path<(String, String)>,
    headers: HeaderMap,
    request: Result<Json<RequestBody>, JsonRejection>,
) -> Result<Response, Problem> {
    let admitted = admit(&state, &headers, &tenant, Action::ExportSubject).await?;
    let request = body(request)?.checked()?;
    let asked = request.asked("access");
    let tenant_id = admitted.tenant.id.clone();
    let (logged, chunks) = subjects::export(
        state.clone(),
        admitted.actor.clone(),
        tenant_id,
        &subject,
        &asked,
    )
    .await
    .map_err(ServerError::into_problem)?;
    let stream = futures_util::stream::unfold(chunks, |mut rx| async move {
        rx.recv().await.map(|chunk| (chunk, rx))
    });
    let mut response = Body::from_stream(stream).into_response();
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-tar"),
    );
    if let Ok(v) = HeaderValue::from_str(&format!(
        "attachment; filename=\"subject-export-{}.tar\"",
        logged.id
    )) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    if let Ok(v) = HeaderValue::from_str(&logged.id) {
        h.insert(REQUEST_HEADER, v);
    }
    Ok(response)
}

/// What an erasure did.
#[derive(Serialize, ToSchema)]
pub struct ErasureView {
    pub request: RequestView,
    /// The deletion certificate (`GET /v1/tenants/{tenant}/deletions/{id}`).
    pub certificate: Option<String>,
    pub records_erased: u64,
    pub records_anonymised: u64,
    /// Set when a cancel window applies: the scheduled deletion that will carry the erasure
    /// out at `due_at` (`DELETE /v1/tenants/{tenant}/scheduled-deletions/{id}` cancels it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scheduled_deletion: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub due_at: Option<Timestamp>,
    /// Records a hold keeps (only with `erasure_under_hold = "erase_rest"`).
    #[schema(value_type = Vec<Object>)]
    pub held: Vec<HeldRecord>,
    /// The subject had been erased before: nothing was left to do.
    pub already_erased: bool,
}

/// Erase a subject (GDPR Art. 17)
///
/// Destroys the subject's key (every record of theirs becomes unreadable at once, backups
/// included), purges the records and their index entries, and issues a signed certificate.
/// Records of data types the policy keeps for aggregate use (`delete = "anonymize"`) are
/// anonymised instead. Refused with 409 `under-hold` when a legal hold covers any of the
/// subject's records (unless the policy says `erasure_under_hold = "erase_rest"`). Idempotent:
/// a second erasure answers with the first one's certificate. When a data type of the
/// subject's records has a `cancel_window`, the erasure is scheduled (`scheduled_deletion`,
/// `due_at`) and the request stays open until the sweeper carries it out.
#[utoipa::path(
    post,
    path = "/v1/tenants/{tenant}/subjects/{subject}/erase",
    params(("tenant" = String, Path), ("subject" = String, Path)),
    request_body = RequestBody,
    responses(
        (status = 200, body = ErasureView),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 409, body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])),
)]
pub async fn erase(
    State(state): State<Arc<AppState>>,
    Path((tenant, subject)): Path<(String, String)>,
    headers: HeaderMap,
    request: Result<Json<RequestBody>, JsonRejection>,
) -> Result<Json<ErasureView>, Problem> {
    let admitted = admit(&state, &headers, &tenant, Action::EraseSubject).await?;
    let request = body(request)?.checked()?;
    let asked = request.asked("erasure");
    let (logged, outcome) = subjects::erase(
        &state,
        &admitted.actor,
        &admitted.tenant.id,
        &subject,
        &asked,
    )
    .await
    .map_err(ServerError::into_problem)?;
    let now = state.clock.now();
    match outcome {
        ErasureOutcome::Erased {
            certificate,
            erased,
            anonymised,
            held,
        } => Ok(Json(ErasureView {
            request: view(logged, now),
            certificate: Some(certificate.id),
            records_erased: erased,
            records_anonymised: anonymised,
            scheduled_deletion: None,
            due_at: None,
            held,
            already_erased: false,
        })),
        ErasureOutcome::Scheduled { deletion } => Ok(Json(ErasureView {
            request: view(logged, now),
            certificate: None,
            records_erased: 0,
            records_anonymised: 0,
            scheduled_deletion: Some(deletion.id),
            due_at: Some(deletion.due_at),
            held: Vec::new(),
            already_erased: false,
        })),
        ErasureOutcome::AlreadyErased { certificate } => Ok(Json(ErasureView {
            request: view(logged, now),
            certificate,
            records_erased: 0,
            records_anonymised: 0,
            scheduled_deletion: None,
            due_at: None,
            held: Vec::new(),
            already_erased: true,
        })),
        ErasureOutcome::Refused { holds, records } => Err(Problem::new(
            Kind::UnderHold,
            format!(
                "legal hold(s) {} cover {records} of the subject's records; nothing was erased (request {})",
                holds.join(", "),
                logged.id
            ),
        )
        .with_holds(holds)),
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RectifyBody {
    /// The corrected payload, in place of the stored one.
    #[schema(value_type = Object)]
    pub payload: Box<RawValue>,
    pub reference: String,
    pub reason: String,
}

#[derive(Serialize, ToSchema)]
pub struct RectifiedView {
    pub request: RequestView,
    pub record: String,
    /// SHA-256 (hex) of the payload before and after: the audit keeps these, not the values.
    pub before_sha256: String,
    pub after_sha256: String,
}

/// Rectify one of a subject's records (GDPR Art. 16)
#[utoipa::path(
    post,
    path = "/v1/tenants/{tenant}/subjects/{subject}/records/{id}/rectify",
    params(("tenant" = String, Path), ("subject" = String, Path), ("id" = String, Path)),
    request_body = RectifyBody,
    responses(
        (status = 200, body = RectifiedView),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])),
)]
pub async fn rectify(
    State(state): State<Arc<AppState>>,
    Path((tenant, subject, id)): Path<(String, String, String)>,
    headers: HeaderMap,
    request: Result<Json<RectifyBody>, JsonRejection>,
) -> Result<Json<RectifiedView>, Problem> {
    let admitted = admit(&state, &headers, &tenant, Action::RectifyRecord).await?;
    let request = body(request)?;
    let record = id
        .parse()
        .map_err(|_| invalid(format!("{id:?} is not a record id")))?;
    admitted
        .guard_record(&state, record, Action::RectifyRecord)
        .await?;
    let reason = RequestBody {
        reference: request.reference,
        reason: request.reason,
    }
    .checked()?;
    let asked = reason.asked("rectification");
    let done = subjects::rectify(
        &state,
        &admitted.actor,
        &admitted.tenant.id,
        &subject,
        record,
        &request.payload,
        &asked,
    )
    .await
    .map_err(ServerError::into_problem)?;
    match done {
        Ok(r) => Ok(Json(RectifiedView {
            request: view(r.request, state.clock.now()),
            record: id,
            before_sha256: r.before_sha256,
            after_sha256: r.after_sha256,
        })),
        Err(NotRectified::NotFound) => Err(Problem::new(
            Kind::RecordNotFound,
            format!("no record {id} of this subject in tenant {tenant}"),
        )),
        Err(NotRectified::Refused(reason)) => Err(invalid(reason)),
        Err(NotRectified::Held(logged, holds)) => Err(Problem::new(
            Kind::UnderHold,
            format!(
                "record {id} is under legal hold ({}); it was not changed (request {})",
                holds.join(", "),
                logged.id
            ),
        )
        .with_holds(holds)),
    }
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    /// Only this subject's requests (the subject id, pseudonymised on arrival).
    subject: Option<String>,
    /// At most this many, newest first (default and maximum 1000).
    limit: Option<u32>,
}

#[derive(Serialize, ToSchema)]
pub struct RequestList {
    pub requests: Vec<RequestView>,
}

/// The tenant's data-subject request log, newest first
#[utoipa::path(
    get,
    path = "/v1/tenants/{tenant}/subject-requests",
    params(("tenant" = String, Path), ListParams),
    responses(
        (status = 200, body = RequestList),
        (status = 400, body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])),
)]
pub async fn list_requests(
    State(state): State<Arc<AppState>>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
    params: Result<Query<ListParams>, QueryRejection>,
) -> Result<Json<RequestList>, Problem> {
    let admitted = admit(&state, &headers, &tenant, Action::ReadSubjectRequests).await?;
    let Query(params) = params.map_err(|e| invalid(e.body_text()))?;
    let limit = params.limit.unwrap_or(MAX_LIST);
    if !(1..=MAX_LIST).contains(&limit) {
        return Err(invalid(format!("limit must be from 1 to {MAX_LIST}")));
    }
    let pseudonym = match &params.subject {
        Some(s) => Some(
            state
                .keys
                .tenant(&admitted.tenant.id)
                .await
                .map_err(ServerError::into_problem)?
                .pseudonym(s),
        ),
        None => None,
    };
    let now = state.clock.now();
    let requests = state
        .store
        .subject_requests(&admitted.tenant.id, pseudonym.as_ref(), limit)
        .await
        .map_err(|e| ServerError::from(e).into_problem())?
        .into_iter()
        .map(|r| view(r, now))
        .collect();
    Ok(Json(RequestList { requests }))
}

/// One data-subject request, with its answer
#[utoipa::path(
    get,
    path = "/v1/tenants/{tenant}/subject-requests/{id}",
    params(("tenant" = String, Path), ("id" = String, Path)),
    responses(
        (status = 200, body = RequestView),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])),
)]
pub async fn get_request(
    State(state): State<Arc<AppState>>,
    Path((tenant, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Json<RequestView>, Problem> {
    let admitted = admit(&state, &headers, &tenant, Action::ReadSubjectRequests).await?;
    let found = state
        .store
        .subject_request(&admitted.tenant.id, &id)
        .await
        .map_err(|e| ServerError::from(e).into_problem())?
        .ok_or_else(|| {
            Problem::new(
                Kind::NotFound,
                format!("no subject request {id} in tenant {tenant}"),
            )
        })?;
    Ok(Json(view(found, state.clock.now())))
}
