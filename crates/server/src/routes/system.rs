//! Operational routes: health, readiness, metrics, the OpenAPI document, problem type pages,
//! and the fallbacks that turn every other error into problem+json.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::AppState;
use crate::problem::{Kind, Problem};

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", responses((status = 200, description = "Alive")))]
pub async fn healthz() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok" }))
}

/// Readiness: the database answers and keys are loaded.
#[utoipa::path(get, path = "/readyz", responses(
    (status = 200, description = "Ready"),
    (status = 503, body = Problem, content_type = "application/problem+json"),
))]
pub async fn readyz(
    State(state): State<Arc<AppState>>,
) -> Result<Json<serde_json::Value>, Problem> {
    match state.store.ping().await {
        Ok(()) => Ok(Json(json!({
            "status": "ready",
            "store": state.store.backend(),
            "root_key": state.keys.root_provider(),
        }))),
        Err(e) => {
            tracing::warn!(error = %e, "not ready");
            Err(Problem::new(
                Kind::StorageUnavailable,
                format!("the {} database does not answer", state.store.backend()),
            ))
        }
    }
}

/// Prometheus metrics in the text exposition format.
#[utoipa::path(get, path = "/metrics", responses((status = 200, description = "Prometheus text format", content_type = "text/plain")))]
pub async fn metrics() -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        crate::metrics::handle().render(),
    )
        .into_response()
}

/// This API's OpenAPI 3.1 document.
#[utoipa::path(get, path = "/openapi.json", responses((status = 200, description = "OpenAPI document")))]
pub async fn openapi() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        crate::openapi_json(),
    )
        .into_response()
}

/// What a problem type means.
#[utoipa::path(get, path = "/problems/{slug}", params(("slug" = String, Path)), responses(
    (status = 200, description = "The problem type's documentation"),
    (status = 404, body = Problem, content_type = "application/problem+json"),
))]
pub async fn problem_type(Path(slug): Path<String>) -> Result<Json<serde_json::Value>, Problem> {
    let kind = Kind::from_slug(&slug)
        .ok_or_else(|| Problem::new(Kind::NotFound, format!("no problem type {slug:?}")))?;
    Ok(Json(json!({
        "type": format!("/problems/{}", kind.slug()),
        "title": kind.title(),
        "status": kind.status().as_u16(),
        "description": kind.description(),
    })))
}

pub async fn not_found(req: Request) -> Problem {
    Problem::new(
        Kind::NotFound,
        format!(
            "{} does not name an endpoint; see /openapi.json",
            req.uri().path()
        ),
    )
}

pub async fn method_not_allowed(req: Request) -> Problem {
    Problem::new(
        Kind::MethodNotAllowed,
        format!("{} is not allowed on {}", req.method(), req.uri().path()),
    )
}

/// Turns error responses produced outside our handlers (extractor rejections, timeouts) into
/// problem+json, so clients meet one error format everywhere.
pub async fn problems_everywhere(req: Request, next: Next) -> Response {
    let response = next.run(req).await;
    let status = response.status();
    let is_problem = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/problem+json"));
    if !(status.is_client_error() || status.is_server_error()) || is_problem {
        return response;
    }
    let kind = match status {
        StatusCode::PAYLOAD_TOO_LARGE => Kind::PayloadTooLarge,
        StatusCode::NOT_FOUND => Kind::NotFound,
        StatusCode::METHOD_NOT_ALLOWED => Kind::MethodNotAllowed,
        s if s.is_client_error() => Kind::InvalidRequest,
        _ => Kind::Internal,
    };
    let body = axum::body::to_bytes(response.into_body(), 4096)
        .await
        .unwrap_or_default();
    let detail = String::from_utf8_lossy(&body).trim().to_owned();
    let detail = if detail.is_empty() {
        status.canonical_reason().unwrap_or("error").to_owned()
    } else {
        detail
    };
    let mut problem = Problem::new(kind, detail);
    problem.status = status.as_u16();
    problem.into_response()
}
