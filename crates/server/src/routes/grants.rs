//! Just-in-time grant routes: request, break-glass, approve, deny, revoke, review, list, read.
//!
//! Who may do what to a grant is decided in two places, both pure: [`authorize`] (the role may
//! act on grants of the grant's tenant) and the transition itself in [`custodian_core::grant`]
//! (an approver is not the requester, the grant is still pending, …). Every refusal is audited
//! in the grant's tenant log like every other refusal; every transition is stored with its
//! audit entry in one transaction, guarded by the grant's version so that concurrent
//! transitions cannot both land.

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use custodian_core::access::{Action, Principal, authorize};
use custodian_core::audit::Decision;
use custodian_core::grant::{
    Grant, GrantError, GrantRequest, GrantRules, GrantScope, GrantStatus, format_duration,
    parse_duration,
};
use custodian_core::ids::{Class, DataTypeName, TenantId};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{admit, audit_refusal, authenticate, invalid, json_problem, required_text};
use crate::audit::{Actor, hex};
use crate::problem::{Kind, Problem};
use crate::{AppState, ServerError};

const DEFAULT_PAGE: u32 = 100;
const MAX_PAGE: u32 = 1000;
/// Bounds on a scope's lists, so that a grant stays a small, reviewable document.
const MAX_SCOPE_ITEMS: usize = 100;

/// A grant as asked for.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GrantBody {
    /// The tenant whose records the grant reaches.
    pub tenant: String,
    /// Data types it reaches; empty or absent: every data type of the tenant.
    #[serde(default)]
    pub data_types: Vec<String>,
    /// Subject ids whose records it reaches; empty or absent: every subject. They are
    /// pseudonymised at once and never stored.
    #[serde(default)]
    pub subjects: Vec<String>,
    /// Also permit deleting and rectifying records (default: read-only).
    #[serde(default)]
    pub write: bool,
    pub reason: String,
    /// The ticket the access answers.
    pub ticket: String,
    /// How long the grant lasts once active: `30m`, `4h`, `1d`; at most the policy's
    /// `access.jit_max`.
    pub duration: String,
}

/// Why a grant is denied, revoked or its break-glass use accepted.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NoteBody {
    pub reason: String,
}

/// A grant, with where it stands now.
#[derive(Serialize, ToSchema)]
pub struct GrantView {
    /// `pending`, `active`, `expired`, `lapsed`, `denied` or `revoked`.
    pub status: &'static str,
    /// A break-glass grant nobody has reviewed yet.
    pub pending_review: bool,
    #[serde(flatten)]
    #[schema(value_type = Object)]
    pub grant: Grant,
}

/// One page of grants, newest first.
#[derive(Serialize, ToSchema)]
pub struct GrantPage {
    pub grants: Vec<GrantView>,
    /// Pass as `before` to get the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    /// Only this tenant's grants (a tenant's members always see only their own tenant's).
    tenant: Option<String>,
    /// Only grants in this status.
    status: Option<String>,
    /// Page size, 1 to 1000 (default 100).
    limit: Option<u32>,
    /// The `next` value of the previous page.
    before: Option<String>,
}

fn view(grant: Grant, now: Timestamp) -> GrantView {
    GrantView {
        status: grant.status(now).as_str(),
        pending_review: grant.pending_review(),
        grant,
    }
}

fn body<T>(b: Result<Json<T>, JsonRejection>) -> Result<T, Problem> {
    b.map(|Json(t)| t).map_err(json_problem)
}

/// Request a just-in-time grant
///
/// Support and operators have no standing access to records. A grant names its scope, a
/// reason, a ticket and a duration; it becomes active once approved by a different principal
/// with the approver role (two, or `access.restricted_approvers`, for Restricted data).
#[utoipa::path(
    post,
    path = "/v1/grants",
    request_body = GrantBody,
    responses(
        (status = 201, body = GrantView),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])),
)]
pub async fn request(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    grant: Result<Json<GrantBody>, JsonRejection>,
) -> Result<(StatusCode, Json<GrantView>), Problem> {
    open(&state, &headers, body(grant)?, Action::RequestGrant).await
}

/// Break glass: open a grant at once
///
/// A tenant's security officer opens access to its own tenant's records without approval, in
/// an emergency. The grant is flagged, counted in `custodian_break_glass_total`, audited, and
/// stays pending review until an approver or the tenant's admin or auditor reviews it.
#[utoipa::path(
    post,
    path = "/v1/grants/break-glass",
    request_body = GrantBody,
    responses(
        (status = 201, body = GrantView),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])),
)]
pub async fn break_glass(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    grant: Result<Json<GrantBody>, JsonRejection>,
) -> Result<(StatusCode, Json<GrantView>), Problem> {
    open(&state, &headers, body(grant)?, Action::BreakGlass).await
}

/// A new grant: requested (pending) or, for [`Action::BreakGlass`], active at once.
async fn open(
    state: &AppState,
    headers: &HeaderMap,
    body: GrantBody,
    action: Action,
) -> Result<(StatusCode, Json<GrantView>), Problem> {
    let admitted = admit(state, headers, &body.tenant, action).await?;
    let tenant = &admitted.tenant.id;
    let refuse = |detail: String| async {
        audit_refusal(state, &admitted.actor, action, Some(tenant), &detail).await;
        invalid(detail)
    };
    let (request, restricted) = match checked_request(state, tenant, body).await {
        Ok(ok) => ok,
        Err(detail) => return Err(refuse(detail).await),
    };
    let now = state.clock.now();
    let jit_max_secs = state
        .policy
        .access
        .jit_max
        .after(now)
        .map_or(0, |end| end.as_second() - now.as_second());
    let rules = GrantRules {
        jit_max_secs,
        restricted,
        restricted_approvers: state.policy.access.restricted_approvers,
    };
    let id = format!("grt_{}", ulid::Ulid::new().to_string().to_lowercase());
    let opened = if action == Action::BreakGlass {
        Grant::break_glass(id, &admitted.principal, request, rules, now)
    } else {
        Grant::request(id, &admitted.principal, request, rules, now)
    };
    let grant = match opened {
        Ok(g) => g,
        Err(e) if e.is_refusal() => {
            let detail = e.to_string();
            audit_refusal(state, &admitted.actor, action, Some(tenant), &detail).await;
            return Err(Problem::new(Kind::Forbidden, detail));
        }
        Err(e) => return Err(refuse(e.to_string()).await),
    };
    let mut actor = admitted.actor.clone();
    actor.grant = Some(grant.id.clone());
    let mut event = state
        .audit
        .event(&actor, action.as_str(), Some(tenant), Decision::Allow);
    event.objects = vec![format!("grant:{}", grant.id)];
    event.subjects = grant.scope.subjects.clone();
    event.reason = Some(format!(
        "{}ticket {}, {} for {}: {}",
        if grant.break_glass {
            "BREAK-GLASS, pending review; "
        } else {
            ""
        },
        grant.ticket,
        if grant.scope.write {
            "read-write"
        } else {
            "read-only"
        },
        format_duration(grant.duration_secs),
        grant.reason
    ));
    let entry = state
        .audit
        .entry(&event)
        .await
        .map_err(ServerError::into_problem)?;
    state
        .store
        .insert_grant(&grant, entry)
        .await
        .map_err(|e| ServerError::from(e).into_problem())?;
    if grant.break_glass {
        metrics::counter!("custodian_break_glass_total", "tenant" => tenant.to_string())
            .increment(1);
        tracing::warn!(grant = %grant.id, principal = %grant.grantee, %tenant, "break-glass access opened; it awaits review");
    }
    Ok((StatusCode::CREATED, Json(view(grant, now))))
}

/// Checks a grant body against the policy: the data types exist, the texts are sane, the
/// duration parses. Subjects become pseudonyms. Also says whether the scope reaches Restricted
/// data. The error is the refusal's detail.
async fn checked_request(
    state: &AppState,
    tenant: &TenantId,
    body: GrantBody,
) -> Result<(GrantRequest, bool), String> {
    if body.data_types.len() > MAX_SCOPE_ITEMS || body.subjects.len() > MAX_SCOPE_ITEMS {
        return Err(format!(
            "a grant names at most {MAX_SCOPE_ITEMS} data types and {MAX_SCOPE_ITEMS} subjects"
        ));
    }
    let mut data_types = Vec::new();
    for name in &body.data_types {
        let known = state
            .policy
            .data_type(name)
            .ok_or_else(|| format!("data type {name:?} is not defined in the policy"))?;
        data_types.push(known.name.clone());
    }
    let scoped: Vec<&DataTypeName> = if data_types.is_empty() {
        state.policy.data_types.iter().map(|d| &d.name).collect()
    } else {
        data_types.iter().collect()
    };
    let restricted = scoped.into_iter().any(|name| {
        state
            .policy
            .data_type(name.as_str())
            .is_some_and(|d| d.class == Class::Restricted)
    });
    let keys = state
        .keys
        .tenant(tenant)
        .await
        .map_err(|e| e.into_problem().detail)?;
    let mut subjects = Vec::new();
    for s in body.subjects {
        let s = required_text("a subject id", s).map_err(|p| p.detail)?;
        subjects.push(hex(&keys.pseudonym(&s)));
    }
    let request = GrantRequest {
        tenant: tenant.clone(),
        scope: GrantScope {
            data_types,
            subjects,
            write: body.write,
        },
        reason: required_text("reason", body.reason).map_err(|p| p.detail)?,
        ticket: required_text("ticket", body.ticket).map_err(|p| p.detail)?,
        duration_secs: parse_duration(&body.duration).map_err(|e| e.to_string())?,
    };
    Ok((request, restricted))
}

/// A grant the caller may see, with the caller: platform principals see every tenant's grants,
/// a tenant's members only their own tenant's. An unknown id and another tenant's id answer
/// alike, so ids cannot be probed.
async fn find(
    state: &AppState,
    headers: &HeaderMap,
    id: &str,
    action: Action,
) -> Result<(Grant, Principal, Actor), Problem> {
    let (principal, actor) = authenticate(state, headers, action, None).await?;
    let scope = (!principal.tenant.is_platform()).then_some(&principal.tenant);
    let grant = state
        .store
        .grant(scope, id)
        .await
        .map_err(|e| ServerError::from(e).into_problem())?
        .ok_or_else(|| Problem::new(Kind::GrantNotFound, format!("no grant {id}")))?;
    allow(state, &principal, &actor, Some(&grant.tenant), action).await?;
    Ok((grant, principal, actor))
}

/// The role decision for an authenticated caller; a refusal is audited.
async fn allow(
    state: &AppState,
    principal: &Principal,
    actor: &Actor,
    tenant: Option<&TenantId>,
    action: Action,
) -> Result<(), Problem> {
    if let Err(denial) = authorize(principal, tenant, action) {
        let reason = denial.to_string();
        audit_refusal(state, actor, action, tenant, &reason).await;
        return Err(Problem::new(Kind::Forbidden, reason));
    }
    Ok(())
}

/// Applies a transition to a stored grant and stores the result with its audit entry.
async fn transition(
    state: &AppState,
    headers: &HeaderMap,
    id: &str,
    action: Action,
    verb: &str,
    note: Option<String>,
    change: impl FnOnce(&Grant, &Principal, Timestamp) -> Result<Grant, GrantError>,
) -> Result<Json<GrantView>, Problem> {
    let (grant, principal, mut actor) = find(state, headers, id, action).await?;
    actor.grant = Some(grant.id.clone());
    if state.keys.is_sealed() {
        return Err(ServerError::Sealed.into_problem());
    }
    super::refuse_unmirrored_write(state, action)?;
    let now = state.clock.now();
    let next = match change(&grant, &principal, now) {
        Ok(next) => next,
        Err(e) => {
            let detail = format!("cannot {verb} grant {}: {e}", grant.id);
            audit_refusal(state, &actor, action, Some(&grant.tenant), &detail).await;
            let kind = if e.is_refusal() {
                Kind::Forbidden
            } else {
                Kind::GrantConflict
            };
            return Err(Problem::new(kind, detail));
        }
    };
    let mut event = state.audit.event(
        &actor,
        action.as_str(),
        Some(&grant.tenant),
        Decision::Allow,
    );
    event.objects = vec![format!("grant:{}", grant.id)];
    let status = next.status(now);
    event.reason = Some(match note {
        Some(note) => format!("{verb}: {note}; now {status}"),
        None => format!("{verb}; now {status}"),
    });
    let entry = state
        .audit
        .entry(&event)
        .await
        .map_err(ServerError::into_problem)?;
    let stored = state
        .store
        .update_grant(&next, entry)
        .await
        .map_err(|e| ServerError::from(e).into_problem())?;
    if !stored {
        return Err(Problem::new(
            Kind::GrantConflict,
            format!(
                "grant {} was changed by someone else at the same moment; read it again and retry",
                grant.id
            ),
        ));
    }
    if status == GrantStatus::Active && grant.status(now) == GrantStatus::Pending {
        tracing::info!(grant = %next.id, principal = %next.grantee, tenant = %next.tenant, "grant active");
    }
    Ok(Json(view(next, now)))
}

fn note(b: Result<Json<NoteBody>, JsonRejection>) -> Result<String, Problem> {
    required_text("reason", body(b)?.reason)
}

/// Approve a grant
#[utoipa::path(
    post,
    path = "/v1/grants/{id}/approve",
    params(("id" = String, Path)),
    responses(
        (status = 200, body = GrantView),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])),
)]
pub async fn approve(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Json<GrantView>, Problem> {
    transition(
        &state,
        &headers,
        &id,
        Action::DecideGrant,
        "approve",
        None,
        |g, p, now| g.approve(p, now),
    )
    .await
}

/// Deny a grant request
#[utoipa::path(
    post,
    path = "/v1/grants/{id}/deny",
    params(("id" = String, Path)),
    request_body = NoteBody,
    responses(
        (status = 200, body = GrantView),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])),
)]
pub async fn deny(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    b: Result<Json<NoteBody>, JsonRejection>,
) -> Result<Json<GrantView>, Problem> {
    let reason = note(b)?;
    transition(
        &state,
        &headers,
        &id,
        Action::DecideGrant,
        "deny",
        Some(reason.clone()),
        move |g, p, now| g.deny(p, &reason, now),
    )
    .await
}

/// Revoke a grant
///
/// By its grantee, an approver, or the tenant's admin or security officer; pending or active.
#[utoipa::path(
    post,
    path = "/v1/grants/{id}/revoke",
    params(("id" = String, Path)),
    request_body = NoteBody,
    responses(
        (status = 200, body = GrantView),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])),
)]
pub async fn revoke(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    b: Result<Json<NoteBody>, JsonRejection>,
) -> Result<Json<GrantView>, Problem> {
    let reason = note(b)?;
    transition(
        &state,
        &headers,
        &id,
        Action::RevokeGrant,
        "revoke",
        Some(reason.clone()),
        move |g, p, now| g.revoke(p, &reason, now),
    )
    .await
}

/// Review a break-glass grant
#[utoipa::path(
    post,
    path = "/v1/grants/{id}/review",
    params(("id" = String, Path)),
    request_body = NoteBody,
    responses(
        (status = 200, body = GrantView),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])),
)]
pub async fn review(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    b: Result<Json<NoteBody>, JsonRejection>,
) -> Result<Json<GrantView>, Problem> {
    let reason = note(b)?;
    transition(
        &state,
        &headers,
        &id,
        Action::ReviewGrant,
        "review",
        Some(reason.clone()),
        move |g, p, now| g.review(p, &reason, now),
    )
    .await
}

/// Read a grant
#[utoipa::path(
    get,
    path = "/v1/grants/{id}",
    params(("id" = String, Path)),
    responses(
        (status = 200, body = GrantView),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])),
)]
pub async fn get_grant(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Json<GrantView>, Problem> {
    let (grant, _, _) = find(&state, &headers, &id, Action::ListGrants).await?;
    Ok(Json(view(grant, state.clock.now())))
}

/// List grants
///
/// Newest first. Platform principals see every tenant's (or one tenant's, with `tenant`);
/// a tenant's members see their own tenant's.
#[utoipa::path(
    get,
    path = "/v1/grants",
    params(ListParams),
    responses(
        (status = 200, body = GrantPage),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])),
)]
pub async fn list(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    params: Result<Query<ListParams>, QueryRejection>,
) -> Result<Json<GrantPage>, Problem> {
    let Query(params) = params.map_err(|e| invalid(e.body_text()))?;
    let limit = params.limit.unwrap_or(DEFAULT_PAGE);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(invalid(format!("limit must be from 1 to {MAX_PAGE}")));
    }
    let status = params
        .status
        .as_deref()
        .map(|s| {
            GrantStatus::parse(s).ok_or_else(|| {
                invalid(format!(
                    "unknown status {s:?}; valid: {}",
                    GrantStatus::ALL.map(GrantStatus::as_str).join(", ")
                ))
            })
        })
        .transpose()?;
    let tenant = match params.tenant.as_deref() {
        Some(t) => Some(
            admit(&state, &headers, t, Action::ListGrants)
                .await?
                .tenant
                .id
                .clone(),
        ),
        None => {
            let (principal, actor) =
                authenticate(&state, &headers, Action::ListAllGrants, None).await?;
            if principal.tenant.is_platform() {
                allow(&state, &principal, &actor, None, Action::ListAllGrants).await?;
                None
            } else {
                // A tenant's member lists its own tenant's grants.
                let own = Some(&principal.tenant);
                allow(&state, &principal, &actor, own, Action::ListGrants).await?;
                own.cloned()
            }
        }
    };
    let now = state.clock.now();
    let mut grants = Vec::new();
    let mut before = params.before;
    // A status filter skips grants, so pages are read until one is full or the list ends.
    let next = loop {
        let page = state
            .store
            .grants(tenant.as_ref(), before.as_deref(), limit)
            .await
            .map_err(|e| ServerError::from(e).into_problem())?;
        let full = page.len() == limit as usize;
        before = page.last().map(|g| g.id.clone());
        grants.extend(
            page.into_iter()
                .filter(|g| status.is_none_or(|s| g.status(now) == s))
                .map(|g| view(g, now)),
        );
        if grants.len() >= limit as usize || !full {
            let more = full || grants.len() > limit as usize;
            grants.truncate(limit as usize);
            break more
                .then(|| grants.last().map(|g| g.grant.id.clone()))
                .flatten();
        }
    };
    Ok(Json(GrantPage { grants, next }))
}
