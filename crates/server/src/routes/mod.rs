//! The router: every route, its middleware, and the one access check every tenant route calls.

pub(crate) mod records;
pub(crate) mod system;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderMap, HeaderName, header};
use axum::routing::get;
use custodian_core::access::{Action, Principal, authorize};
use custodian_core::ids::TenantId;
use custodian_core::policy::TenantPolicy;
use tower_http::request_id::{
    MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use crate::AppState;
use crate::problem::{Kind, Problem};

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

pub(crate) fn router(state: Arc<AppState>) -> Router {
    let body_limit = state.body_limit;
    Router::new()
        .route(
            "/v1/tenants/{tenant}/records",
            axum::routing::post(records::ingest),
        )
        .route(
            "/v1/tenants/{tenant}/records/{id}",
            get(records::get_record).delete(records::delete_record),
        )
        .route(
            "/v1/tenants/{tenant}/subjects/{subject}/records",
            get(records::list_subject_records),
        )
        .route("/healthz", get(system::healthz))
        .route("/readyz", get(system::readyz))
        .route("/metrics", get(system::metrics))
        .route("/openapi.json", get(system::openapi))
        .route("/problems/{slug}", get(system::problem_type))
        .fallback(system::not_found)
        .method_not_allowed_fallback(system::method_not_allowed)
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(TimeoutLayer::with_status_code(
            axum::http::StatusCode::REQUEST_TIMEOUT,
            Duration::from_secs(120),
        ))
        .layer(axum::middleware::from_fn(system::problems_everywhere))
        .layer(axum::middleware::from_fn(crate::metrics::track))
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(TraceLayer::new_for_http())
        .layer(SetRequestIdLayer::new(REQUEST_ID, UlidRequestId))
        .with_state(state)
}

/// Request ids are ULIDs: unique across nodes and sortable by time in the logs.
#[derive(Clone, Copy, Default)]
struct UlidRequestId;

impl MakeRequestId for UlidRequestId {
    fn make_request_id<B>(&mut self, _: &axum::http::Request<B>) -> Option<RequestId> {
        axum::http::HeaderValue::from_str(&ulid::Ulid::new().to_string())
            .ok()
            .map(RequestId::new)
    }
}

/// A request admitted to a tenant: who asked, and the tenant's policy.
pub(crate) struct Admitted<'a> {
    pub principal: Principal,
    pub tenant: &'a TenantPolicy,
}

/// Authenticates the caller and decides whether it may perform `action` on the tenant named
/// in the path. Membership is checked before existence, so a foreign credential cannot probe
/// which tenants exist.
pub(crate) async fn admit<'a>(
    state: &'a AppState,
    headers: &HeaderMap,
    tenant: &str,
    action: Action,
) -> Result<Admitted<'a>, Problem> {
    let header = headers
        .get(header::AUTHORIZATION)
        .map(|v| v.to_str().unwrap_or(""));
    let principal =
        crate::auth::authenticate(state.store.as_ref(), state.clock.as_ref(), header).await?;
    let forbidden = |reason: String| {
        tracing::info!(principal = %principal.id, tenant, action = action.as_str(), reason, "access denied");
        Problem::new(Kind::Forbidden, reason)
    };
    let Ok(tenant_id) = TenantId::new(tenant) else {
        return Err(forbidden(
            custodian_core::access::Denial::OtherTenant.to_string(),
        ));
    };
    if let Err(denial) = authorize(&principal, &tenant_id, action) {
        return Err(forbidden(denial.to_string()));
    }
    let tenant = state.policy.tenant(&tenant_id).ok_or_else(|| {
        Problem::new(
            Kind::UnknownTenant,
            format!("tenant {tenant_id} is not defined in the policy"),
        )
    })?;
    Ok(Admitted { principal, tenant })
}
