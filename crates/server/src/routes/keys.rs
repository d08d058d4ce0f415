//! Key routes: key status and rotation per tenant, and the operator's routes for the root of
//! trust (init, unseal, seal, status) and key-store backup and restore.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use custodian_core::access::Action;
use custodian_core::audit::Decision;
use serde::{Deserialize, Serialize};

use super::{admit, admit_platform, anonymous};
use crate::keys::{KeyStatus, Rotation};
use crate::problem::Problem;
use crate::seal::SealStatus;
use crate::{AppState, ServerError};

/// A tenant's KEK version, its age, when it is due for rotation, and how many keys it wraps.
#[utoipa::path(
    get,
    path = "/v1/tenants/{tenant}/keys",
    params(("tenant" = String, Path)),
    responses(
        (status = 200, body = KeyStatus),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 503, body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])),
)]
pub async fn tenant_status(
    State(state): State<Arc<AppState>>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
) -> Result<Json<KeyStatus>, Problem> {
    let admitted = admit(&state, &headers, &tenant, Action::ReadKeyStatus).await?;
    state
        .keys
        .status(&admitted.tenant.id, &state.policy.keys.rotate_every)
        .await
        .map(Json)
        .map_err(ServerError::into_problem)
}

/// Every tenant's key status (operators).
#[utoipa::path(
    get,
    path = "/v1/system/keys",
    responses(
        (status = 200, body = Vec<KeyStatus>),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])),
)]
pub async fn all_status(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Result<Json<Vec<KeyStatus>>, Problem> {
    admit_platform(&state, &headers, Action::ListKeyStatus).await?;
    let mut all = Vec::with_capacity(state.policy.tenants.len());
    for tenant in &state.policy.tenants {
        all.push(
            state
                .keys
                .status(&tenant.id, &state.policy.keys.rotate_every)
                .await
                .map_err(ServerError::into_problem)?,
        );
    }
    Ok(Json(all))
}

/// Rotates the tenant's KEK now: a new version, every data key rewrapped under it (record
/// ciphertext untouched), then the old versions destroyed.
#[utoipa::path(
    post,
    path = "/v1/tenants/{tenant}/keys/rotate",
    params(("tenant" = String, Path)),
    responses(
        (status = 200, body = Rotation),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 503, body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])),
)]
pub async fn rotate(
    State(state): State<Arc<AppState>>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
) -> Result<Json<Rotation>, Problem> {
    let admitted = admit(&state, &headers, &tenant, Action::RotateKeys).await?;
    crate::keys::rotate_audited(&state, &admitted.actor, &admitted.tenant.id, "on request")
        .await
        .map(Json)
        .map_err(ServerError::into_problem)
}

/// Whether the server is initialised and sealed, and the unseal progress. Needs no credential.
#[utoipa::path(get, path = "/v1/system/seal-status", responses((status = 200, body = SealStatus)))]
pub async fn seal_status(State(state): State<Arc<AppState>>) -> Result<Json<SealStatus>, Problem> {
    crate::seal::status(&state)
        .await
        .map(Json)
        .map_err(ServerError::into_problem)
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct InitRequest {
    pub shares: u8,
    pub threshold: u8,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct InitResponse {
    /// The shares, shown this once and never stored. Give one to each operator.
    pub shares: Vec<String>,
    pub threshold: u8,
}

/// Creates the Shamir root key once and returns its shares. Like the unseal, it needs no
/// credential: before initialisation there is nothing to protect, and afterwards it refuses.
#[utoipa::path(
    post,
    path = "/v1/system/init",
    request_body = InitRequest,
    responses(
        (status = 200, body = InitResponse),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 409, body = Problem, content_type = "application/problem+json"),
    ),
)]
pub async fn init(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Json(request): Json<InitRequest>,
) -> Result<Response, Problem> {
    let shares = crate::seal::init_shamir(
        &state,
        &anonymous(&headers),
        request.shares,
        request.threshold,
    )
    .await
    .map_err(ServerError::into_problem)?;
    let body = InitResponse {
        shares: shares.iter().map(|s| s.to_string()).collect(),
        threshold: request.threshold,
    };
    // Never cached anywhere between here and the operator.
    Ok(([(header::CACHE_CONTROL, "no-store")], Json(body)).into_response())
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct UnsealRequest {
    /// One share, as printed by `custodian operator init`.
    pub share: String,
}

/// Gives one share. The server unseals when the threshold of distinct valid shares is reached.
#[utoipa::path(
    post,
    path = "/v1/system/unseal",
    request_body = UnsealRequest,
    responses(
        (status = 200, body = SealStatus),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ),
)]
pub async fn unseal(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Json(request): Json<UnsealRequest>,
) -> Result<Json<SealStatus>, Problem> {
    let request = zeroize::Zeroizing::new(request.share);
    crate::seal::unseal(&state, &anonymous(&headers), &request)
        .await
        .map(Json)
        .map_err(ServerError::into_problem)
}

/// Seals the server: every key in memory is dropped until operators unseal it again.
#[utoipa::path(
    post,
    path = "/v1/system/seal",
    responses(
        (status = 200, body = SealStatus),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])),
)]
pub async fn seal(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Result<Json<SealStatus>, Problem> {
    let actor = admit_platform(&state, &headers, Action::SealServer).await?;
    crate::seal::seal(&state, &actor)
        .await
        .map(Json)
        .map_err(ServerError::into_problem)
}

/// The whole key store, sealed under the root key (a JSON file).
#[utoipa::path(
    get,
    path = "/v1/system/keys/backup",
    responses(
        (status = 200, description = "The backup file", content_type = "application/json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 503, body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])),
)]
pub async fn backup(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    let actor = admit_platform(&state, &headers, Action::BackupKeys).await?;
    let run = async {
        let root = state.keys.root()?;
        let snapshot = state.keys.store().snapshot().await?;
        let keys = snapshot.data_keys.len();
        let file = crate::backup::seal(root.as_ref(), snapshot, state.clock.now())?;
        crate::seal::audit_system(
            &state,
            &actor,
            Action::BackupKeys.as_str(),
            Decision::Allow,
            format!("key-store backup of {keys} data keys"),
        )
        .await?;
        Ok::<_, ServerError>(file)
    };
    let file = run.await.map_err(ServerError::into_problem)?;
    Ok((
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        file,
    )
        .into_response())
}

/// Restores a key-store backup, then replays the shred log so nothing shredded since the
/// backup comes back.
#[utoipa::path(
    post,
    path = "/v1/system/keys/restore",
    request_body(content = String, content_type = "application/json", description = "A file from /v1/system/keys/backup"),
    responses(
        (status = 200, body = RestoreView),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
        (status = 503, body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])),
)]
pub async fn restore(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<RestoreView>, Problem> {
    let actor = admit_platform(&state, &headers, Action::RestoreKeys).await?;
    let run = async {
        let root = state.keys.root()?;
        let snapshot = crate::backup::open(root.as_ref(), &body)?;
        let report = state.keys.store().restore(snapshot).await?;
        // Keys in memory may be ones the restore replaced or destroyed again.
        state.keys.forget_all();
        crate::seal::audit_system(
            &state,
            &actor,
            Action::RestoreKeys.as_str(),
            Decision::Allow,
            format!(
                "key store restored: {} data keys, {} KEKs; {} destroyed again by the shred log",
                report.data_keys, report.keks, report.reshredded
            ),
        )
        .await?;
        Ok::<_, ServerError>(RestoreView {
            data_keys: report.data_keys,
            keks: report.keks,
            reshredded: report.reshredded,
        })
    };
    run.await.map(Json).map_err(ServerError::into_problem)
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct RestoreView {
    pub data_keys: u64,
    pub keks: u64,
    /// Keys in the backup destroyed again because they were shredded after it was made.
    pub reshredded: u64,
}
