//! The router: every route, its middleware, and the one access check every tenant route calls.

pub(crate) mod audit;
pub(crate) mod grants;
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
use custodian_core::access::{Action, Denial, Principal, authorize};
use custodian_core::audit::Decision;
use custodian_core::grant::{Authority, Grant, authorize_with, grant_may_help};
use custodian_core::ids::{RecordId, TenantId};
use custodian_core::policy::TenantPolicy;
use custodian_store::{AuditLog, StoredRecord};
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
        .route("/v1/grants", get(grants::list).post(grants::request))
        .route(
            "/v1/grants/break-glass",
            axum::routing::post(grants::break_glass),
        )
        .route("/v1/grants/{id}", get(grants::get_grant))
        .route(
            "/v1/grants/{id}/approve",
            axum::routing::post(grants::approve),
        )
        .route("/v1/grants/{id}/deny", axum::routing::post(grants::deny))
        .route(
            "/v1/grants/{id}/revoke",
            axum::routing::post(grants::revoke),
        )
        .route(
            "/v1/grants/{id}/review",
            axum::routing::post(grants::review),
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
    /// The grant the request runs under, when the principal's role alone does not allow it:
    /// only the records it reaches may be touched (see [`Admitted::reaches`]).
    pub grant: Option<Grant>,
    /// Why the caller reads payloads: its `X-Custodian-Reason`, or its grant's reason.
    pub purpose: Option<String>,
}

impl Admitted<'_> {
    /// Whether the request may touch this stored record: always under the principal's own
    /// role, within scope under a grant (the record's pseudonyms are only rendered then).
    pub fn reaches(&self, record: &StoredRecord) -> bool {
        self.grant
            .as_ref()
            .is_none_or(|g| g.reaches(&record.data_type, record.class, &subject_hexes(record)))
    }

    /// Whether the request may name this subject (pseudonym, hex).
    pub fn reaches_subject(&self, subject: &str) -> bool {
        self.grant
            .as_ref()
            .is_none_or(|g| g.scope.reaches_subject(subject))
    }

    /// Under a grant, refuses a stored record the grant does not reach (before anything is
    /// read or changed); a missing record is left to the route to answer.
    pub async fn guard_record(
        &self,
        state: &AppState,
        id: RecordId,
        action: Action,
    ) -> Result<(), Problem> {
        if self.grant.is_none() {
            return Ok(());
        }
        let record = state
            .store
            .get_record(&self.tenant.id, id)
            .await
            .map_err(|e| crate::ServerError::from(e).into_problem())?;
        match record {
            Some(r) if !self.reaches(&r) => Err(self.outside_grant(state, action).await),
            _ => Ok(()),
        }
    }

    /// The refusal of a record or subject outside the request's grant, audited like every
    /// refusal.
    pub async fn outside_grant(&self, state: &AppState, action: Action) -> Problem {
        let grant = self.grant.as_ref().map_or("", |g| g.id.as_str());
        let reason = Denial::OutsideGrant {
            grant: grant.to_owned(),
        }
        .to_string();
        audit_refusal(state, &self.actor, action, Some(&self.tenant.id), &reason).await;
        Problem::new(Kind::Forbidden, reason)
    }
}

/// A stored record's subject pseudonyms, hex, as grant scopes name them.
fn subject_hexes(record: &StoredRecord) -> Vec<String> {
    record
        .key_subjects
        .iter()
        .map(|p| crate::audit::hex(p))
        .collect()
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
    let decided = decide(state, headers, Some(tenant), action).await?;
    let Some(tenant) = TenantId::new(tenant)
        .ok()
        .and_then(|t| state.policy.tenant(&t))
    else {
        let detail = format!("tenant {tenant} is not defined in the policy");
        audit_refusal(state, &decided.actor, action, None, &detail).await;
        return Err(Problem::new(Kind::UnknownTenant, detail));
    };
    if state.keys.is_sealed() {
        return Err(crate::ServerError::Sealed.into_problem());
    }
    refuse_unmirrored_write(state, action)?;
    Ok(Admitted {
        principal: decided.principal,
        tenant,
        actor: decided.actor,
        grant: decided.grant,
        purpose: decided.purpose,
    })
}

/// Authenticates the caller and decides whether it may perform the platform `action`.
pub(crate) async fn admit_platform(
    state: &AppState,
    headers: &HeaderMap,
    action: Action,
) -> Result<Actor, Problem> {
    let decided = decide(state, headers, None, action).await?;
    refuse_unmirrored_write(state, action)?;
    Ok(decided.actor)
}

/// A required audit mirror that cannot be reached stops every write: the actions it would
/// record could not leave the box.
pub(crate) fn refuse_unmirrored_write(state: &AppState, action: Action) -> Result<(), Problem> {
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
        grant: None,
    }
}

/// Audits a refused request: in the tenant's log when `tenant` is one the policy defines,
/// otherwise in the system log. The request is refused either way; a failed audit write is
/// logged loudly.
pub(crate) async fn audit_refusal(
    state: &AppState,
    actor: &Actor,
    action: Action,
    tenant: Option<&TenantId>,
    reason: &str,
) {
    let tenant = tenant.filter(|t| state.policy.tenant(t).is_some());
    let mut event = state
        .audit
        .event(actor, action.as_str(), tenant, Decision::Deny);
    event.reason = Some(reason.to_owned());
    let log = tenant.cloned().map_or(AuditLog::System, AuditLog::Tenant);
    if let Err(e) = state.audit.record(&log, &event).await {
        tracing::error!(error = %e, "could not audit a refused request");
    }
}

/// Authenticates the caller of `action`; a refused credential is audited (in `tenant`'s log
/// when it is one the policy defines) under the identity it proved, if any, else `anonymous`.
pub(crate) async fn authenticate(
    state: &AppState,
    headers: &HeaderMap,
    action: Action,
    tenant: Option<&TenantId>,
) -> Result<(Principal, Actor), Problem> {
    let header = headers
        .get(header::AUTHORIZATION)
        .map(|v| v.to_str().unwrap_or(""));
    let mut actor = anonymous(headers);
    match crate::auth::authenticate(state, header).await {
        Ok(principal) => {
            actor.id = principal.id.clone();
            Ok((principal, actor))
        }
        Err(refusal) => {
            if let Some(id) = refusal.principal {
                actor.id = id;
            }
            let problem = refusal.problem;
            audit_refusal(state, &actor, action, tenant, &problem.detail).await;
            Err(problem)
        }
    }
}

/// The header in which callers say why they read payloads.
const REASON: HeaderName = HeaderName::from_static("x-custodian-reason");

/// The caller's purpose: `X-Custodian-Reason` (UTF-8 text) when sent, else its grant's reason.
fn purpose(headers: &HeaderMap, grant: Option<&Grant>) -> Result<Option<String>, Problem> {
    match headers.get(&REASON) {
        Some(v) => {
            let text = std::str::from_utf8(v.as_bytes())
                .map_err(|_| invalid("X-Custodian-Reason must be UTF-8 text"))?;
            required_text("X-Custodian-Reason", text.to_owned()).map(Some)
        }
        None => Ok(grant.map(|g| g.reason.clone())),
    }
}

/// Who asked and on what authority.
pub(crate) struct Decided {
    pub principal: Principal,
    pub actor: Actor,
    pub grant: Option<Grant>,
    pub purpose: Option<String>,
}

/// The decision itself: authentication, then [`authorize_with`] (the caller's live grants are
/// read only when its role alone is refused and a grant could lift that), then the purpose the
/// policy may require. Every refusal is audited with its reason.
pub(crate) async fn decide(
    state: &AppState,
    headers: &HeaderMap,
    tenant: Option<&str>,
    action: Action,
) -> Result<Decided, Problem> {
    let tenant_id = tenant.map(|t| TenantId::new(t).ok());
    let known_tenant = tenant_id
        .clone()
        .flatten()
        .filter(|t| state.policy.tenant(t).is_some());
    let (principal, mut actor) =
        authenticate(state, headers, action, known_tenant.as_ref()).await?;
    let decision = match &tenant_id {
        Some(None) => Err(Denial::OtherTenant),
        Some(Some(t)) => authorize(&principal, Some(t), action),
        None => authorize(&principal, None, action),
    };
    let decision = match (decision, &known_tenant) {
        (Ok(()), _) => Ok(None),
        (Err(denial), Some(t)) if grant_may_help(&principal, &denial) => {
            let now = state.clock.now();
            let grants = state
                .store
                .live_grants(t, &principal.id, now)
                .await
                .map_err(|e| crate::ServerError::from(e).into_problem())?;
            authorize_with(&principal, Some(t), action, &grants, now).map(|a| match a {
                Authority::Grant(g) => Some(g.clone()),
                Authority::Role => None,
            })
        }
        (Err(denial), _) => Err(denial),
    };
    let grant = match decision {
        Ok(grant) => grant,
        Err(denial) => {
            let reason = denial.to_string();
            tracing::info!(principal = %principal.id, tenant, action = action.as_str(), reason, "access denied");
            audit_refusal(state, &actor, action, known_tenant.as_ref(), &reason).await;
            return Err(Problem::new(Kind::Forbidden, reason));
        }
    };
    actor.grant = grant.as_ref().map(|g| g.id.clone());
    let purpose = match purpose(headers, grant.as_ref()) {
        Ok(p) => p,
        Err(problem) => {
            audit_refusal(
                state,
                &actor,
                action,
                known_tenant.as_ref(),
                &problem.detail,
            )
            .await;
            return Err(problem);
        }
    };
    if action.reads_payload()
        && purpose.is_none()
        && state
            .policy
            .access
            .reason_required
            .contains(&principal.role)
    {
        let detail = format!(
            "role {} must say why it reads payloads (the policy's access.reason_required): send the X-Custodian-Reason header",
            principal.role
        );
        audit_refusal(state, &actor, action, known_tenant.as_ref(), &detail).await;
        return Err(Problem::new(Kind::ReasonRequired, detail));
    }
    Ok(Decided {
        principal,
        actor,
        grant,
        purpose,
    })
}
