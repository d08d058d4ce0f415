//! The router: every route, its middleware, and the one access check every tenant route calls.

pub(crate) mod audit;
pub(crate) mod keys;
pub(crate) mod records;
pub(crate) mod retention;
pub(crate) mod subjects;
pub(crate) mod system;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderMap, HeaderName, header};
use axum::routing::get;
use custodian_core::access::{Action, Principal, authorize};
use custodian_core::audit::Decision;
use custodian_core::ids::TenantId;
use custodian_core::policy::TenantPolicy;
use custodian_store::AuditLog;
use tower_http::request_id::{
    MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use crate::AppState;
use crate::audit::Actor;
use crate::problem::{Kind, Problem};

/// A key-store backup holds every wrapped key (about 200 bytes each): room for millions.
const RESTORE_BODY_LIMIT: usize = 2 * 1024 * 1024 * 1024;

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
        .route(
            "/v1/tenants/{tenant}/detokenize",
            axum::routing::post(records::detokenize),
        )
        .route(
            "/v1/tenants/{tenant}/subjects/{subject}/export",
            axum::routing::post(subjects::export),
        )
        .route(
            "/v1/tenants/{tenant}/subjects/{subject}/erase",
            axum::routing::post(subjects::erase),
        )
        .route(
            "/v1/tenants/{tenant}/subjects/{subject}/records/{id}/rectify",
            axum::routing::post(subjects::rectify),
        )
        .route(
            "/v1/tenants/{tenant}/subject-requests",
            get(subjects::list_requests),
        )
        .route(
            "/v1/tenants/{tenant}/subject-requests/{id}",
            get(subjects::get_request),
        )
        .route(
            "/v1/tenants/{tenant}/audit/checkpoint",
            get(audit::checkpoint),
        )
        .route("/v1/tenants/{tenant}/audit/entries", get(audit::entries))
        .route(
            "/v1/tenants/{tenant}/audit/proof/inclusion",
            get(audit::inclusion),
        )
        .route(
            "/v1/tenants/{tenant}/audit/proof/consistency",
            get(audit::consistency),
        )
        .route(
            "/v1/tenants/{tenant}/holds",
            get(retention::list_holds).post(retention::place_hold),
        )
        .route(
            "/v1/tenants/{tenant}/holds/{id}",
            axum::routing::delete(retention::release_hold),
        )
        .route(
            "/v1/tenants/{tenant}/retention/plan",
            get(retention::tenant_plan),
        )
        .route(
            "/v1/tenants/{tenant}/deletions",
            get(retention::list_deletions),
        )
        .route(
            "/v1/tenants/{tenant}/deletions/{id}",
            get(retention::get_deletion),
        )
        .route(
            "/v1/tenants/{tenant}/events",
            axum::routing::post(retention::record_event),
        )
        .route(
            "/v1/tenants/{tenant}/scheduled-deletions",
            get(retention::list_scheduled),
        )
        .route(
            "/v1/tenants/{tenant}/scheduled-deletions/{id}",
            axum::routing::delete(retention::cancel_scheduled),
        )
        .route(
            "/v1/tenants/{tenant}/terminate",
            axum::routing::post(retention::terminate).delete(retention::cancel_termination),
        )
        .route("/v1/system/retention/plan", get(retention::system_plan))
        .route(
            "/v1/system/retention/sweep",
            axum::routing::post(retention::sweep),
        )
        .route("/v1/tenants/{tenant}/keys", get(keys::tenant_status))
        .route(
            "/v1/tenants/{tenant}/keys/rotate",
            axum::routing::post(keys::rotate),
        )
        .route("/v1/system/audit/key", get(audit::verifier_key))
        .route("/v1/system/audit/checkpoint", get(audit::system_checkpoint))
        .route("/v1/system/audit/entries", get(audit::system_entries))
        .route(
            "/v1/system/audit/proof/inclusion",
            get(audit::system_inclusion),
        )
        .route(
            "/v1/system/audit/proof/consistency",
            get(audit::system_consistency),
        )
        .route("/v1/system/keys", get(keys::all_status))
        .route("/v1/system/keys/backup", get(keys::backup))
        .route(
            "/v1/system/keys/restore",
            axum::routing::post(keys::restore).layer(DefaultBodyLimit::max(RESTORE_BODY_LIMIT)),
        )
        .route("/v1/system/seal-status", get(keys::seal_status))
        .route("/v1/system/init", axum::routing::post(keys::init))
        .route("/v1/system/unseal", axum::routing::post(keys::unseal))
        .route("/v1/system/seal", axum::routing::post(keys::seal))
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

/// A request admitted to a tenant: who asked, the tenant's policy, and the actor to audit.
/// A 400 `invalid-request` saying what was wrong.
pub(crate) fn invalid(detail: impl Into<String>) -> Problem {
    Problem::new(Kind::InvalidRequest, detail)
}

const MAX_TEXT: usize = 1024;

/// A free-text field a caller must give (a reason, a case or request reference), trimmed.
pub(crate) fn required_text(name: &str, value: String) -> Result<String, Problem> {
    let value = value.trim().to_owned();
    if value.is_empty() || value.len() > MAX_TEXT || value.chars().any(char::is_control) {
        return Err(invalid(format!(
            "{name} must be 1 to {MAX_TEXT} bytes of text without control characters"
        )));
    }
    Ok(value)
}

/// A JSON body that did not parse as the route expects.
pub(crate) fn json_problem(rejection: axum::extract::rejection::JsonRejection) -> Problem {
    invalid(format!(
        "the body is not the expected JSON: {}",
        rejection.body_text()
    ))
}

pub(crate) struct Admitted<'a> {
    pub principal: Principal,
    pub tenant: &'a TenantPolicy,
    pub actor: Actor,
}

fn request_id(headers: &HeaderMap) -> Option<String> {
    headers
        .get(&REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// Authenticates the caller and decides whether it may perform `action` on the tenant named
/// in the path. Membership is checked before existence, so a foreign credential cannot probe
/// which tenants exist. Every refusal is audited: in the tenant's log when the tenant exists,
/// otherwise in the system log. A sealed server admits nobody to tenant data.
pub(crate) async fn admit<'a>(
    state: &'a AppState,
    headers: &HeaderMap,
    tenant: &str,
    action: Action,
) -> Result<Admitted<'a>, Problem> {
    let (principal, actor) = decide(state, headers, Some(tenant), action).await?;
    let tenant = TenantId::new(tenant)
        .ok()
        .and_then(|t| state.policy.tenant(&t))
        .ok_or_else(|| {
            Problem::new(
                Kind::UnknownTenant,
                format!("tenant {tenant} is not defined in the policy"),
            )
        })?;
    if state.keys.is_sealed() {
        return Err(crate::ServerError::Sealed.into_problem());
    }
    refuse_unmirrored_write(state, action)?;
    Ok(Admitted {
        principal,
        tenant,
        actor,
    })
}

/// Authenticates the caller and decides whether it may perform the platform `action`.
pub(crate) async fn admit_platform(
    state: &AppState,
    headers: &HeaderMap,
    action: Action,
) -> Result<Actor, Problem> {
    let actor = decide(state, headers, None, action)
        .await
        .map(|(_, actor)| actor)?;
    refuse_unmirrored_write(state, action)?;
    Ok(actor)
}

/// A required audit mirror that cannot be reached stops every write: the actions it would
/// record could not leave the box.
fn refuse_unmirrored_write(state: &AppState, action: Action) -> Result<(), Problem> {
    if action.writes() && crate::mirror::refuses_writes(state) {
        return Err(Problem::new(
            Kind::AuditMirrorUnavailable,
            "the policy requires the audit mirror and it cannot be reached; nothing was changed",
        ));
    }
    Ok(())
}

/// The caller as an actor before any credential is checked (for routes that take none).
pub(crate) fn anonymous(headers: &HeaderMap) -> Actor {
    Actor {
        id: "anonymous".into(),
        request_id: request_id(headers),
    }
}

async fn decide(
    state: &AppState,
    headers: &HeaderMap,
    tenant: Option<&str>,
    action: Action,
) -> Result<(Principal, Actor), Problem> {
    let header = headers
        .get(header::AUTHORIZATION)
        .map(|v| v.to_str().unwrap_or(""));
    let tenant_id = tenant.map(|t| TenantId::new(t).ok());
    let known_tenant = tenant_id
        .clone()
        .flatten()
        .filter(|t| state.policy.tenant(t).is_some());
    let deny = |actor: &Actor, reason: String| {
        let mut event = state.audit.event(
            actor,
            action.as_str(),
            known_tenant.as_ref(),
            Decision::Deny,
        );
        event.reason = Some(reason);
        let log = known_tenant
            .clone()
            .map_or(AuditLog::System, AuditLog::Tenant);
        async move {
            // The request is refused either way; a failed audit write is logged loudly.
            if let Err(e) = state.audit.record(&log, &event).await {
                tracing::error!(error = %e, "could not audit a refused request");
            }
        }
    };
    let anonymous = anonymous(headers);
    let principal = match crate::auth::authenticate(state, header).await {
        Ok(p) => p,
        Err(problem) => {
            deny(&anonymous, problem.detail.clone()).await;
            return Err(problem);
        }
    };
    let actor = Actor {
        id: principal.id.clone(),
        request_id: anonymous.request_id,
    };
    let decision = match &tenant_id {
        Some(None) => Err(custodian_core::access::Denial::OtherTenant),
        Some(Some(t)) => authorize(&principal, Some(t), action),
        None => authorize(&principal, None, action),
    };
    if let Err(denial) = decision {
        let reason = denial.to_string();
        tracing::info!(principal = %principal.id, tenant, action = action.as_str(), reason, "access denied");
        deny(&actor, reason.clone()).await;
        return Err(Problem::new(Kind::Forbidden, reason));
    }
    Ok((principal, actor))
}
