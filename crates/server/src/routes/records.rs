//! Record routes: batch ingest, read, list a subject's records, delete.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{FromRequest, Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use custodian_core::access::Action;
use custodian_core::audit::Decision;
use custodian_core::ids::{Class, RecordId, TenantId};
use custodian_store::{AuditLog, IdempotentResponse, InsertOutcome, StoredRecord};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use utoipa::{IntoParams, ToSchema};

use super::{admit, invalid};
use crate::audit::hex;
use crate::ingest::SealedBody;
use crate::keys::TenantKeys;
use crate::problem::{Kind, Problem};
use crate::{AppState, ServerError};

const IDEMPOTENCY_KEY: &str = "idempotency-key";
const MAX_IDEMPOTENCY_KEY_LEN: usize = 255;
const DEFAULT_PAGE: u32 = 100;
const MAX_PAGE: u32 = 1000;

/// The answer to an accepted batch.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct IngestResponse {
    /// How many records were stored.
    pub accepted: usize,
    /// Their ids, in the order of the lines.
    pub ids: Vec<String>,
}

/// When a record's retention ends.
#[derive(Serialize, ToSchema)]
pub struct RetentionView {
    /// `scheduled` (expires at `expires_at`), `pending_event` (the clock starts when `event`
    /// arrives) or `until_deleted`.
    pub state: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event: Option<String>,
}

/// A record with its decrypted payload.
#[derive(Serialize, ToSchema)]
pub struct RecordView {
    pub id: String,
    pub tenant: String,
    #[serde(rename = "type")]
    pub data_type: String,
    pub class: String,
    pub subjects: Vec<String>,
    pub event_time: Timestamp,
    pub ingest_time: Timestamp,
    pub expires_at: Option<Timestamp>,
    pub retention: RetentionView,
    /// The expiry bucket whose key seals the record.
    pub key_bucket: String,
    #[schema(value_type = Object)]
    pub payload: Box<RawValue>,
    /// What detection found in the payload's free text at ingest (never the values).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub findings: Vec<crate::deidentify::StoredFinding>,
}

/// One page of a subject's records.
#[derive(Serialize, ToSchema)]
pub struct RecordPage {
    pub records: Vec<RecordView>,
    /// Pass as `after` to get the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct PageParams {
    /// Page size, 1 to 1000 (default 100).
    limit: Option<u32>,
    /// The `next` value of the previous page.
    after: Option<String>,
}

fn body_problem(rejection: BytesRejection) -> Problem {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        Problem::new(
            Kind::PayloadTooLarge,
            "the body is larger than this server's limit (--body-limit); send smaller batches",
        )
    } else {
        invalid(format!("the body could not be read: {rejection}"))
    }
}

fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, Problem> {
    let Some(value) = headers.get(IDEMPOTENCY_KEY) else {
        return Ok(None);
    };
    let visible = |k: &str| k.bytes().all(|b| b.is_ascii_graphic());
    match value.to_str() {
        Ok(k) if !k.is_empty() && k.len() <= MAX_IDEMPOTENCY_KEY_LEN && visible(k) => {
            Ok(Some(k.to_owned()))
        }
        _ => Err(invalid(format!(
            "Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY_LEN} visible ASCII characters"
        ))),
    }
}

fn parse_id(id: &str) -> Result<RecordId, Problem> {
    id.parse()
        .map_err(|e: custodian_core::error::InvalidId| invalid(e.to_string()))
}

/// Store a batch of records
///
/// The body is NDJSON, one record per line. The whole batch is validated first: if any line is
/// bad the answer is 422 with every bad line and nothing is stored. Otherwise all records are
/// stored in one transaction. With an `Idempotency-Key`, a replay returns the first answer and
/// stores nothing new.
#[utoipa::path(
    post,
    path = "/v1/tenants/{tenant}/records",
    params(
        ("tenant" = String, Path, description = "Tenant id"),
        ("Idempotency-Key" = Option<String>, Header, description = "Makes retries safe"),
    ),
    request_body(content = String, content_type = "application/x-ndjson",
        description = r#"One record per line: {"type": "...", "subjects": ["..."], "event_time": "RFC 3339", "payload": {...}}"#),
    responses(
        (status = 200, description = "All records stored", body = IngestResponse),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 413, body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Bad lines; nothing stored", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])),
)]
pub async fn ingest(
    State(state): State<Arc<AppState>>,
    Path(tenant): Path<String>,
    request: Request,
) -> Result<Response, Problem> {
    let admitted = admit(&state, request.headers(), &tenant, Action::IngestRecords).await?;
    super::retention::refuse_if_terminated(&state, &admitted.tenant.id).await?;
    let idempotency_key = idempotency_key(request.headers())?;
    // The body is read only once the caller is admitted: strangers cannot make us buffer it.
    let body = Bytes::from_request(request, &())
        .await
        .map_err(body_problem)?;
    let tenant_keys = state
        .keys
        .tenant(&admitted.tenant.id)
        .await
        .map_err(ServerError::into_problem)?;
    let now = state.clock.now();
    let task_state = state.clone();
    let tenant_policy = admitted.tenant.clone();
    let runtime = tokio::runtime::Handle::current();
    // Validation and sealing are CPU work: keep them off the async workers. The data keys the
    // batch names are fetched (or made) in between, from this blocking thread.
    let prepared = tokio::task::spawn_blocking(move || {
        let state = task_state;
        let resolve = |ids: &[custodian_crypto::DataKeyId]| {
            runtime.block_on(state.keys.data_keys(&tenant_policy.id, ids, true, ""))
        };
        crate::ingest::prepare_batch(
            &state.policy,
            &tenant_policy,
            &tenant_keys,
            resolve,
            now,
            &body,
        )
        .map(|r| r.map(|batch| (batch, custodian_crypto::sha256(&body))))
    })
    .await
    .map_err(|e| ServerError::Internal(e.to_string()).into_problem())?
    .map_err(|e| match e {
        ServerError::KeyDestroyed { key, .. } => Problem::new(
            Kind::KeyDestroyed,
            format!(
                "the batch would be sealed under key {key}, which was destroyed (its subject was erased or its bucket destroyed); nothing was stored"
            ),
        ),
        e => e.into_problem(),
    })?;
    let (batch, request_hash) = match prepared {
        Ok(ok) => ok,
        Err(errors) => {
            let detail = format!("{} line(s) are invalid; nothing was stored", errors.len());
            return Err(Problem::new(Kind::InvalidBatch, detail).with_errors(errors));
        }
    };
    let answer = IngestResponse {
        accepted: batch.ids.len(),
        ids: batch.ids.iter().map(|id| id.to_string()).collect(),
    };
    let answer_bytes = serde_json::to_vec(&answer)
        .map_err(|e| ServerError::Internal(e.to_string()).into_problem())?;
    let event = state
        .audit
        .ingest_event(&admitted.actor, &admitted.tenant.id, &batch);
    let idempotency = idempotency_key.map(|key| IdempotentResponse {
        key,
        request_hash,
        status: 200,
        body: answer_bytes.clone(),
    });
    // Per event the records wait for, the references they name.
    let mut waiting: std::collections::BTreeMap<String, std::collections::BTreeSet<String>> =
        Default::default();
    for r in &batch.records {
        if let (Some(event), Some(reference)) = (&r.pending_event, &r.event_ref) {
            waiting
                .entry(event.clone())
                .or_default()
                .insert(reference.clone());
        }
    }
    let outcome = state
        .store
        .insert_records(
            &admitted.tenant.id,
            batch.records,
            idempotency,
            state
                .audit
                .entry(&event)
                .await
                .map_err(ServerError::into_problem)?,
        )
        .await
        .map_err(|e| ServerError::from(e).into_problem())?;
    match outcome {
        InsertOutcome::Inserted => {
            start_recorded_clocks(&state, &admitted.tenant.id, &waiting)
                .await
                .map_err(ServerError::into_problem)?;
            metrics::counter!("custodian_records_ingested_total", "tenant" => admitted.tenant.id.to_string())
                .increment(answer.accepted as u64);
            Ok(json_bytes(StatusCode::OK, answer_bytes, false))
        }
        InsertOutcome::Replayed(first) if first.request_hash == request_hash => Ok(json_bytes(
            StatusCode::from_u16(first.status).unwrap_or(StatusCode::OK),
            first.body,
            true,
        )),
        InsertOutcome::Replayed(_) => Err(Problem::new(
            Kind::IdempotencyKeyReused,
            "this Idempotency-Key was used for a different body; nothing was stored",
        )),
    }
}

/// Records that arrive after the event they wait for start their clock at once. One query
/// per event name in the batch; nothing when no record waits for an event.
async fn start_recorded_clocks(
    state: &AppState,
    tenant: &TenantId,
    waiting: &std::collections::BTreeMap<String, std::collections::BTreeSet<String>>,
) -> Result<(), ServerError> {
    for (event, refs) in waiting {
        let refs: Vec<String> = refs.iter().cloned().collect();
        for recorded in state.store.events(tenant, event, &refs).await? {
            crate::retention::start_clocks(state, tenant, &recorded).await?;
        }
    }
    Ok(())
}

fn json_bytes(status: StatusCode, body: Vec<u8>, replayed: bool) -> Response {
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        axum::http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if replayed {
        headers.insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    response
}

/// Decrypts a record: fetches its bucket's and subjects' keys and opens the ciphertext.
async fn view(
    state: &AppState,
    tenant: &TenantId,
    record: StoredRecord,
) -> Result<RecordView, Problem> {
    let plaintext = crate::records::open(state, tenant, &record)
        .await
        .map_err(ServerError::into_problem)?;
    let body: SealedBody<'_> = serde_json::from_slice(&plaintext)
        .map_err(|e| ServerError::Internal(format!("sealed body: {e}")).into_problem())?;
    let retention = match (&record.expires_at, &record.pending_event) {
        (Some(_), _) => RetentionView {
            state: "scheduled",
            event: None,
        },
        (None, Some(e)) => RetentionView {
            state: "pending_event",
            event: Some(e.clone()),
        },
        (None, None) => RetentionView {
            state: "until_deleted",
            event: None,
        },
    };
    Ok(RecordView {
        id: record.id.to_string(),
        tenant: tenant.to_string(),
        data_type: record.data_type.to_string(),
        class: Class::as_str(record.class).to_owned(),
        subjects: body.subjects,
        event_time: record.event_time,
        ingest_time: record.ingest_time,
        expires_at: record.expires_at,
        retention,
        key_bucket: record.key_bucket,
        payload: body.payload.to_owned(),
        findings: body.findings,
    })
}

/// Read one record
#[utoipa::path(
    get,
    path = "/v1/tenants/{tenant}/records/{id}",
    params(("tenant" = String, Path), ("id" = String, Path, description = "Record id (ULID)")),
    responses(
        (status = 200, body = RecordView),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])),
)]
pub async fn get_record(
    State(state): State<Arc<AppState>>,
    Path((tenant, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Json<RecordView>, Problem> {
    let admitted = admit(&state, &headers, &tenant, Action::ReadRecord).await?;
    let id = parse_id(&id)?;
    let record = state
        .store
        .get_record(&admitted.tenant.id, id)
        .await
        .map_err(|e| ServerError::from(e).into_problem())?
        .ok_or_else(|| {
            Problem::new(
                Kind::RecordNotFound,
                format!("no record {id} in tenant {tenant}"),
            )
        })?;
    if !admitted.reaches(&record) {
        return Err(admitted.outside_grant(&state, Action::ReadRecord).await);
    }
    let tenant_keys = state
        .keys
        .tenant(&admitted.tenant.id)
        .await
        .map_err(ServerError::into_problem)?;
    let view = view(&state, &admitted.tenant.id, record).await?;
    audit_read(
        &state,
        &admitted,
        Action::ReadRecord,
        &tenant_keys,
        &view.subjects,
        vec![view.id.clone()],
    )
    .await?;
    Ok(Json(view))
}

/// Audits a read before its data leaves the server: no audit entry, no data.
async fn audit_read(
    state: &AppState,
    admitted: &super::Admitted<'_>,
    action: Action,
    tenant_keys: &TenantKeys,
    subjects: &[String],
    objects: Vec<String>,
) -> Result<(), Problem> {
    let mut event = state.audit.event(
        &admitted.actor,
        action.as_str(),
        Some(&admitted.tenant.id),
        Decision::Allow,
    );
    let mut pseudonyms: Vec<String> = subjects
        .iter()
        .map(|s| hex(&tenant_keys.pseudonym(s)))
        .collect();
    pseudonyms.sort_unstable();
    pseudonyms.dedup();
    event.subjects = pseudonyms;
    event.objects = objects;
    event.reason = admitted.purpose.clone();
    state
        .audit
        .record(&AuditLog::Tenant(admitted.tenant.id.clone()), &event)
        .await
        .map(|_| ())
        .map_err(ServerError::into_problem)
}

/// List a subject's records
///
/// Subjects are found through a keyed index: the subject id itself is never stored in clear.
#[utoipa::path(
    get,
    path = "/v1/tenants/{tenant}/subjects/{subject}/records",
    params(("tenant" = String, Path), ("subject" = String, Path), PageParams),
    responses(
        (status = 200, body = RecordPage),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])),
)]
pub async fn list_subject_records(
    State(state): State<Arc<AppState>>,
    Path((tenant, subject)): Path<(String, String)>,
    params: Result<Query<PageParams>, QueryRejection>,
    headers: HeaderMap,
) -> Result<Json<RecordPage>, Problem> {
    let admitted = admit(&state, &headers, &tenant, Action::ListSubjectRecords).await?;
    let Query(params) = params.map_err(|e| invalid(e.body_text()))?;
    let limit = params.limit.unwrap_or(DEFAULT_PAGE);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(invalid(format!("limit must be from 1 to {MAX_PAGE}")));
    }
    let after = params.after.as_deref().map(parse_id).transpose()?;
    let tenant_keys = state
        .keys
        .tenant(&admitted.tenant.id)
        .await
        .map_err(ServerError::into_problem)?;
    let pseudonym = tenant_keys.pseudonym(&subject);
    if !admitted.reaches_subject(&hex(&pseudonym)) {
        return Err(admitted
            .outside_grant(&state, Action::ListSubjectRecords)
            .await);
    }
    let records = state
        .store
        .list_subject_records(&admitted.tenant.id, &pseudonym, after, limit)
        .await
        .map_err(|e| ServerError::from(e).into_problem())?;
    let next = (records.len() == limit as usize)
        .then(|| records.last().map(|r| r.id.to_string()))
        .flatten();
    let mut views = Vec::with_capacity(records.len());
    // Under a grant, the subject's records of other types (or Restricted ones the grant was
    // not approved for) are left out of the page, unread.
    for r in records {
        if admitted.reaches(&r) {
            views.push(view(&state, &admitted.tenant.id, r).await?);
        }
    }
    let records = views;
    let objects = records.iter().map(|r| r.id.clone()).collect();
    audit_read(
        &state,
        &admitted,
        Action::ListSubjectRecords,
        &tenant_keys,
        std::slice::from_ref(&subject),
        objects,
    )
    .await?;
    Ok(Json(RecordPage { records, next }))
}

/// A record delete carried out at once (`destroyed`, with its certificate id) or scheduled
/// until the data type's cancel window ends (`scheduled`, cancellable until `due_at`).
#[derive(Serialize, ToSchema)]
pub struct DeleteView {
    pub state: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub certificate: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deletion: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub due_at: Option<Timestamp>,
}

/// Delete a record
///
/// Refused with 409 `under-hold` while a legal hold covers the record. When the data type
/// has no cancel window the record is purged at once with a deletion certificate (200);
/// otherwise the deletion is scheduled (202) and carried out by the sweeper when the window
/// ends, unless cancelled through `/scheduled-deletions/{id}`.
#[utoipa::path(
    delete,
    path = "/v1/tenants/{tenant}/records/{id}",
    params(("tenant" = String, Path), ("id" = String, Path)),
    responses(
        (status = 200, description = "Destroyed", body = DeleteView),
        (status = 202, description = "Scheduled", body = DeleteView),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])),
)]
pub async fn delete_record(
    State(state): State<Arc<AppState>>,
    Path((tenant, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<(StatusCode, Json<DeleteView>), Problem> {
    let admitted = admit(&state, &headers, &tenant, Action::DeleteRecord).await?;
    let id = parse_id(&id)?;
    admitted
        .guard_record(&state, id, Action::DeleteRecord)
        .await?;
    let outcome = crate::retention::delete_record(
        &state,
        &admitted.actor,
        &admitted.tenant.id,
        id,
        admitted.purpose.clone(),
    )
    .await
    .map_err(ServerError::into_problem)?;
    use crate::retention::DeleteOutcome;
    match outcome {
        DeleteOutcome::Destroyed(certificate) => {
            tracing::info!(principal = %admitted.principal.id, tenant, record = %id, "record destroyed");
            Ok((
                StatusCode::OK,
                Json(DeleteView {
                    state: "destroyed",
                    certificate: Some(certificate.id),
                    deletion: None,
                    due_at: None,
                }),
            ))
        }
        DeleteOutcome::Scheduled(deletion) => Ok((
            StatusCode::ACCEPTED,
            Json(DeleteView {
                state: "scheduled",
                certificate: None,
                deletion: Some(deletion.id),
                due_at: Some(deletion.due_at),
            }),
        )),
        DeleteOutcome::Held(holds) => Err(Problem::new(
            Kind::UnderHold,
            format!("record {id} is under legal hold ({})", holds.join(", ")),
        )
        .with_holds(holds)),
        DeleteOutcome::NotFound => Err(Problem::new(
            Kind::RecordNotFound,
            format!("no record {id} in tenant {tenant}"),
        )),
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DetokenizeRequest {
    /// The data type and field whose rule made the token: a token opens only there.
    #[serde(rename = "type")]
    pub data_type: String,
    pub field: String,
    pub token: String,
    /// Why the value is needed; kept in the audit log.
    pub reason: String,
}

#[derive(Serialize, ToSchema)]
pub struct DetokenizeView {
    pub value: String,
}

/// Turn a token back into its value
///
/// For principals with the detokenize permission (admin, security-officer). Every call is
/// audited with the data type, field and reason (never the value or the token).
#[utoipa::path(
    post,
    path = "/v1/tenants/{tenant}/detokenize",
    params(("tenant" = String, Path)),
    request_body = DetokenizeRequest,
    responses(
        (status = 200, body = DetokenizeView),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])),
)]
pub async fn detokenize(
    State(state): State<Arc<AppState>>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
    body: Result<Json<DetokenizeRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<DetokenizeView>, Problem> {
    let admitted = admit(&state, &headers, &tenant, Action::Detokenize).await?;
    let Json(request) = body.map_err(super::json_problem)?;
    let reason = super::required_text("reason", request.reason)?;
    let tokenized = state.policy.data_type(&request.data_type).is_some_and(|t| {
        t.fields.iter().any(|r| {
            r.field == request.field && r.transform == custodian_core::policy::Transform::Tokenize
        })
    });
    if !tokenized {
        return Err(invalid(format!(
            "data type {:?} has no tokenize rule on field {:?}",
            request.data_type, request.field
        )));
    }
    let tenant_keys = state
        .keys
        .tenant(&admitted.tenant.id)
        .await
        .map_err(ServerError::into_problem)?;
    let keys =
        crate::deidentify::TransformKeys::of(&tenant_keys).map_err(ServerError::into_problem)?;
    let value = keys
        .detokenize(
            &admitted.tenant.id,
            &request.data_type,
            &request.field,
            &request.token,
        )
        .map_err(|e| invalid(format!("the token does not open here: {e}")))?;
    let mut event = state.audit.event(
        &admitted.actor,
        Action::Detokenize.as_str(),
        Some(&admitted.tenant.id),
        Decision::Allow,
    );
    event.objects = vec![format!("{}.{}", request.data_type, request.field)];
    event.reason = Some(reason);
    state
        .audit
        .record(&AuditLog::Tenant(admitted.tenant.id.clone()), &event)
        .await
        .map_err(ServerError::into_problem)?;
    Ok(Json(DetokenizeView { value }))
}
