//! Audit routes: a log's signed checkpoint, its entries, and inclusion and consistency
//! proofs, for a tenant's log (its members only) and for the system log (operators). Each
//! handler pair shares one body; only the admission differs.

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use custodian_core::access::Action;
use custodian_core::audit::AuditEvent;
use custodian_store::AuditLog;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{admit, admit_platform, invalid};
use crate::audit::EntryBody;
use crate::problem::Problem;
use crate::{AppState, ServerError};

const MAX_ENTRIES: u64 = 1000;

fn query<T>(q: Result<Query<T>, QueryRejection>) -> Result<T, Problem> {
    q.map(|Query(t)| t).map_err(|e| invalid(e.body_text()))
}

async fn tenant_log(
    state: &AppState,
    headers: &HeaderMap,
    tenant: &str,
) -> Result<AuditLog, Problem> {
    let admitted = admit(state, headers, tenant, Action::ReadAudit).await?;
    Ok(AuditLog::Tenant(admitted.tenant.id.clone()))
}

async fn system_log(state: &AppState, headers: &HeaderMap) -> Result<AuditLog, Problem> {
    admit_platform(state, headers, Action::ReadSystemAudit).await?;
    if state.keys.is_sealed() {
        return Err(ServerError::Sealed.into_problem());
    }
    Ok(AuditLog::System)
}

/// The tenant log's current head, as a C2SP signed note
#[utoipa::path(
    get,
    path = "/v1/tenants/{tenant}/audit/checkpoint",
    params(("tenant" = String, Path)),
    responses(
        (status = 200, description = "Signed checkpoint (text/plain)", content_type = "text/plain"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])),
)]
pub async fn checkpoint(
    State(state): State<Arc<AppState>>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    let log = tenant_log(&state, &headers, &tenant).await?;
    checkpoint_of(&state, &log).await
}

/// The system log's current head, as a C2SP signed note (operators)
#[utoipa::path(
    get,
    path = "/v1/system/audit/checkpoint",
    responses(
        (status = 200, description = "Signed checkpoint (text/plain)", content_type = "text/plain"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])),
)]
pub async fn system_checkpoint(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    let log = system_log(&state, &headers).await?;
    checkpoint_of(&state, &log).await
}

async fn checkpoint_of(state: &AppState, log: &AuditLog) -> Result<Response, Problem> {
    let note = state
        .audit
        .checkpoint(log)
        .await
        .map_err(ServerError::into_problem)?;
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], note).into_response())
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct EntriesParams {
    /// First index (inclusive).
    start: u64,
    /// Last index (exclusive); at most 1000 entries per call.
    end: u64,
}

/// One log entry: its canonical bytes, the leaf hash stored for it when it was appended, and
/// the decoded event. An entry edited later no longer matches its stored leaf hash. An entry
/// whose audit retention ended has no bytes any more, only its leaf hash and the period
/// destroyed.
#[derive(Serialize, ToSchema)]
pub struct EntryView {
    pub index: u64,
    /// Base64 of the canonical bytes; absent once destroyed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entry: Option<String>,
    /// The period (`YYYY-MM`) whose bodies audit retention destroyed, this one's included.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub destroyed: Option<String>,
    /// Base64 of the stored leaf hash, `SHA-256(0x00 ‖ entry)` as it was at append time.
    pub leaf_hash: String,
    #[schema(value_type = Object)]
    pub event: Option<AuditEvent>,
}

#[derive(Serialize, ToSchema)]
pub struct EntriesView {
    pub entries: Vec<EntryView>,
}

/// Entries `[start, end)` of the tenant's log
#[utoipa::path(
    get,
    path = "/v1/tenants/{tenant}/audit/entries",
    params(("tenant" = String, Path), EntriesParams),
    responses(
        (status = 200, body = EntriesView),
        (status = 400, body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])),
)]
pub async fn entries(
    State(state): State<Arc<AppState>>,
    Path(tenant): Path<String>,
    params: Result<Query<EntriesParams>, QueryRejection>,
    headers: HeaderMap,
) -> Result<Json<EntriesView>, Problem> {
    let log = tenant_log(&state, &headers, &tenant).await?;
    entries_of(&state, &log, query(params)?).await
}

/// Entries `[start, end)` of the system log (operators)
#[utoipa::path(
    get,
    path = "/v1/system/audit/entries",
    params(EntriesParams),
    responses(
        (status = 200, body = EntriesView),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])),
)]
pub async fn system_entries(
    State(state): State<Arc<AppState>>,
    params: Result<Query<EntriesParams>, QueryRejection>,
    headers: HeaderMap,
) -> Result<Json<EntriesView>, Problem> {
    let log = system_log(&state, &headers).await?;
    entries_of(&state, &log, query(params)?).await
}

async fn entries_of(
    state: &AppState,
    log: &AuditLog,
    EntriesParams { start, end }: EntriesParams,
) -> Result<Json<EntriesView>, Problem> {
    if start > end || end - start > MAX_ENTRIES {
        return Err(invalid(format!(
            "need start <= end and at most {MAX_ENTRIES} entries per call"
        )));
    }
    let size = state
        .audit
        .size(log)
        .await
        .map_err(ServerError::into_problem)?;
    if end > size {
        return Err(invalid(format!(
            "end {end} is beyond the log's size {size}"
        )));
    }
    let entries = state
        .audit
        .entries(log, start, end)
        .await
        .map_err(ServerError::into_problem)?
        .into_iter()
        .map(|e| {
            let leaf_hash = STANDARD.encode(e.leaf);
            match e.body {
                EntryBody::Bytes(bytes) => EntryView {
                    index: e.index,
                    event: AuditEvent::from_canonical(&bytes),
                    entry: Some(STANDARD.encode(&bytes)),
                    destroyed: None,
                    leaf_hash,
                },
                EntryBody::Destroyed { period } => EntryView {
                    index: e.index,
                    event: None,
                    entry: None,
                    destroyed: Some(period),
                    leaf_hash,
                },
            }
        })
        .collect();
    Ok(Json(EntriesView { entries }))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct InclusionParams {
    index: u64,
    size: u64,
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ConsistencyParams {
    from: u64,
    to: u64,
}

/// A proof: the hashes (base64), in RFC 9162 order.
#[derive(Serialize, ToSchema)]
pub struct ProofView {
    pub hashes: Vec<String>,
}

fn proof_view(hashes: Vec<custodian_tlog::Hash>) -> Json<ProofView> {
    Json(ProofView {
        hashes: hashes.iter().map(|h| STANDARD.encode(h)).collect(),
    })
}

/// Inclusion proof of entry `index` in the tree of `size` entries
#[utoipa::path(
    get,
    path = "/v1/tenants/{tenant}/audit/proof/inclusion",
    params(("tenant" = String, Path), InclusionParams),
    responses(
        (status = 200, body = ProofView),
        (status = 400, body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])),
)]
pub async fn inclusion(
    State(state): State<Arc<AppState>>,
    Path(tenant): Path<String>,
    params: Result<Query<InclusionParams>, QueryRejection>,
    headers: HeaderMap,
) -> Result<Json<ProofView>, Problem> {
    let log = tenant_log(&state, &headers, &tenant).await?;
    inclusion_of(&state, &log, query(params)?).await
}

/// Inclusion proof of entry `index` in the system log's tree of `size` entries (operators)
#[utoipa::path(
    get,
    path = "/v1/system/audit/proof/inclusion",
    params(InclusionParams),
    responses(
        (status = 200, body = ProofView),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])),
)]
pub async fn system_inclusion(
    State(state): State<Arc<AppState>>,
    params: Result<Query<InclusionParams>, QueryRejection>,
    headers: HeaderMap,
) -> Result<Json<ProofView>, Problem> {
    let log = system_log(&state, &headers).await?;
    inclusion_of(&state, &log, query(params)?).await
}

async fn inclusion_of(
    state: &AppState,
    log: &AuditLog,
    InclusionParams { index, size }: InclusionParams,
) -> Result<Json<ProofView>, Problem> {
    state
        .audit
        .inclusion_proof(log, index, size)
        .await
        .map(proof_view)
        .map_err(ServerError::into_problem)
}

/// Consistency proof between tree sizes `from` and `to`
#[utoipa::path(
    get,
    path = "/v1/tenants/{tenant}/audit/proof/consistency",
    params(("tenant" = String, Path), ConsistencyParams),
    responses(
        (status = 200, body = ProofView),
        (status = 400, body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])),
)]
pub async fn consistency(
    State(state): State<Arc<AppState>>,
    Path(tenant): Path<String>,
    params: Result<Query<ConsistencyParams>, QueryRejection>,
    headers: HeaderMap,
) -> Result<Json<ProofView>, Problem> {
    let log = tenant_log(&state, &headers, &tenant).await?;
    consistency_of(&state, &log, query(params)?).await
}

/// Consistency proof between the system log's tree sizes `from` and `to` (operators)
#[utoipa::path(
    get,
    path = "/v1/system/audit/proof/consistency",
    params(ConsistencyParams),
    responses(
        (status = 200, body = ProofView),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])),
)]
pub async fn system_consistency(
    State(state): State<Arc<AppState>>,
    params: Result<Query<ConsistencyParams>, QueryRejection>,
    headers: HeaderMap,
) -> Result<Json<ProofView>, Problem> {
    let log = system_log(&state, &headers).await?;
    consistency_of(&state, &log, query(params)?).await
}

async fn consistency_of(
    state: &AppState,
    log: &AuditLog,
    ConsistencyParams { from, to }: ConsistencyParams,
) -> Result<Json<ProofView>, Problem> {
    state
        .audit
        .consistency_proof(log, from, to)
        .await
        .map(proof_view)
        .map_err(ServerError::into_problem)
}

/// The public key that verifies this deployment's checkpoints, in the signed-note
/// verifier-key format. Public by design; answers once the server is unsealed.
#[utoipa::path(get, path = "/v1/system/audit/key", responses(
    (status = 200, description = "The verifier key", content_type = "text/plain"),
    (status = 503, body = Problem, content_type = "application/problem+json"),
))]
pub async fn verifier_key(State(state): State<Arc<AppState>>) -> Result<String, Problem> {
    state
        .audit
        .verifier_key()
        .map_err(crate::ServerError::into_problem)
}
