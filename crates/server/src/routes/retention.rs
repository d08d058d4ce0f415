//! Retention routes: legal holds, the dry-run plan, a sweep on demand, and the deletion
//! certificates a tenant can list, fetch and verify offline.

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use custodian_core::access::Action;
use custodian_core::hold::{Hold, HoldScope};
use custodian_core::ids::{DataTypeName, TenantId};
use custodian_store::ReleaseOutcome;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{admit, admit_platform, invalid, json_problem, required_text};
use crate::audit::hex;
use crate::problem::{Kind, Problem};
use crate::retention::{Certificate, PlannedBucket};
use crate::{AppState, ServerError};

/// What a hold covers, as a client names it. A subject is given in clear and pseudonymised
/// at once: the server never stores it.
#[derive(Deserialize, ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum ScopeRequest {
    Tenant,
    DataType { data_type: String },
    Subject { subject: String },
    EventTime { from: Timestamp, to: Timestamp },
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HoldRequest {
    pub scope: ScopeRequest,
    /// The legal case or incident the hold serves.
    pub case_id: String,
    pub reason: String,
}

/// A hold as shown: a subject scope by its pseudonym, never in clear.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct HoldView {
    pub id: String,
    /// `tenant`, `data_type`, `subject` or `event_time`.
    pub kind: String,
    /// The scope in words.
    pub scope: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_type: Option<String>,
    /// The subject's keyed pseudonym (hex).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject_pseudonym: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<Timestamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to: Option<Timestamp>,
    pub case_id: String,
    pub reason: String,
    pub placed_by: String,
    pub placed_at: Timestamp,
    pub active: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub released_by: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub released_at: Option<Timestamp>,
}

impl From<&Hold> for HoldView {
    fn from(hold: &Hold) -> HoldView {
        let (data_type, subject_pseudonym, from, to) = match &hold.scope {
            HoldScope::Tenant => (None, None, None, None),
            HoldScope::DataType(t) => (Some(t.to_string()), None, None, None),
            HoldScope::Subject(p) => (None, Some(hex(p)), None, None),
            HoldScope::EventTime { from, to } => (None, None, Some(*from), Some(*to)),
        };
        HoldView {
            id: hold.id.clone(),
            kind: hold.scope.kind().to_owned(),
            scope: hold.scope.to_string(),
            data_type,
            subject_pseudonym,
            from,
            to,
            case_id: hold.case_id.clone(),
            reason: hold.reason.clone(),
            placed_by: hold.placed_by.clone(),
            placed_at: hold.placed_at,
            active: hold.is_active(),
            released_by: hold.released.as_ref().map(|r| r.by.clone()),
            released_at: hold.released.as_ref().map(|r| r.at),
        }
    }
}

/// Place a legal hold
///
/// While the hold is active, nothing it covers is destroyed by any path: the sweeper, record
/// deletes, subject erasure, tenant termination or key shredding. Placing waits for a
/// destruction in progress to finish.
#[utoipa::path(
    post,
    path = "/v1/tenants/{tenant}/holds",
    params(("tenant" = String, Path)),
    request_body = HoldRequest,
    responses(
        (status = 201, body = HoldView),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])),
)]
pub async fn place_hold(
    State(state): State<Arc<AppState>>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
    body: Result<Json<HoldRequest>, JsonRejection>,
) -> Result<(StatusCode, Json<HoldView>), Problem> {
    let admitted = admit(&state, &headers, &tenant, Action::PlaceHold).await?;
    let Json(request) = body.map_err(json_problem)?;
    let tenant = &admitted.tenant.id;
    let scope = match request.scope {
        ScopeRequest::Tenant => HoldScope::Tenant,
        ScopeRequest::DataType { data_type } => {
            let known = DataTypeName::new(&data_type)
                .ok()
                .filter(|t| state.policy.data_type(t.as_str()).is_some());
            HoldScope::DataType(known.ok_or_else(|| {
                invalid(format!(
                    "unknown data type {data_type:?}; the policy defines: {}",
                    state
                        .policy
                        .data_types
                        .iter()
                        .map(|d| d.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            })?)
        }
        ScopeRequest::Subject { subject } => {
            let subject = required_text("subject", subject)?;
            let keys = state
                .keys
                .tenant(tenant)
                .await
                .map_err(ServerError::into_problem)?;
            HoldScope::Subject(keys.pseudonym(&subject))
        }
        ScopeRequest::EventTime { from, to } if from < to => HoldScope::EventTime { from, to },
        ScopeRequest::EventTime { from, to } => {
            return Err(invalid(format!(
                "an event-time hold needs from < to (got from {from}, to {to})"
            )));
        }
    };
    let case_id = required_text("case_id", request.case_id)?;
    let reason = required_text("reason", request.reason)?;
    let hold =
        crate::retention::place_hold(&state, &admitted.actor, tenant, scope, case_id, reason)
            .await
            .map_err(ServerError::into_problem)?;
    Ok((StatusCode::CREATED, Json(HoldView::from(&hold))))
}

/// List the tenant's holds, released ones included
#[utoipa::path(
    get,
    path = "/v1/tenants/{tenant}/holds",
    params(("tenant" = String, Path)),
    responses(
        (status = 200, body = Vec<HoldView>),
        (status = 403, body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])),
)]
pub async fn list_holds(
    State(state): State<Arc<AppState>>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
) -> Result<Json<Vec<HoldView>>, Problem> {
    let admitted = admit(&state, &headers, &tenant, Action::ListHolds).await?;
    let holds = state
        .store
        .holds(&admitted.tenant.id)
        .await
        .map_err(|e| ServerError::from(e).into_problem())?;
    Ok(Json(holds.iter().map(HoldView::from).collect()))
}

/// Release a hold
///
/// Records it kept that are past their retention become due at the next sweep. A hold is
/// released once; a second release is refused with `hold-already-released`.
#[utoipa::path(
    delete,
    path = "/v1/tenants/{tenant}/holds/{id}",
    params(("tenant" = String, Path), ("id" = String, Path)),
    responses(
        (status = 200, body = HoldView),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])),
)]
pub async fn release_hold(
    State(state): State<Arc<AppState>>,
    Path((tenant, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Json<HoldView>, Problem> {
    let admitted = admit(&state, &headers, &tenant, Action::ReleaseHold).await?;
    let outcome = crate::retention::release_hold(&state, &admitted.actor, &admitted.tenant.id, &id)
        .await
        .map_err(ServerError::into_problem)?;
    match outcome {
        ReleaseOutcome::Released(hold) => Ok(Json(HoldView::from(&hold))),
        ReleaseOutcome::AlreadyReleased(hold) => {
            let (by, at) = hold
                .released
                .as_ref()
                .map(|r| (r.by.as_str(), r.at.to_string()))
                .unwrap_or_default();
            Err(Problem::new(
                Kind::HoldReleased,
                format!("hold {id} was released by {by} at {at}"),
            ))
        }
        ReleaseOutcome::NotFound => Err(Problem::new(
            Kind::HoldNotFound,
            format!("tenant {tenant} has no hold {id}"),
        )),
    }
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct PlanParams {
    /// The time to plan for (RFC 3339, or a date `2027-01-31` meaning its start in UTC);
    /// now when absent.
    at: Option<String>,
}

/// What a sweep at a given time would destroy.
#[derive(Serialize, ToSchema)]
pub struct PlanView {
    pub at: Timestamp,
    pub buckets: Vec<PlannedBucket>,
}

fn plan_time(
    state: &AppState,
    params: Result<Query<PlanParams>, QueryRejection>,
) -> Result<Timestamp, Problem> {
    let Query(params) = params.map_err(|e| invalid(e.body_text()))?;
    match params.at.as_deref() {
        None => Ok(state.clock.now()),
        Some(text) => custodian_core::retention::parse_instant(text).ok_or_else(|| {
            invalid(format!(
                "at {text:?} is neither an RFC 3339 time (2027-01-31T00:00:00Z) nor a date (2027-01-31)"
            ))
        }),
    }
}

/// Dry run: what a sweep at `at` would destroy in this tenant
///
/// Counts per data type and bucket, the oldest record, and the holds that would keep a
/// bucket. Nothing is destroyed.
#[utoipa::path(
    get,
    path = "/v1/tenants/{tenant}/retention/plan",
    params(("tenant" = String, Path), PlanParams),
    responses(
        (status = 200, body = PlanView),
        (status = 400, body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])),
)]
pub async fn tenant_plan(
    State(state): State<Arc<AppState>>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
    params: Result<Query<PlanParams>, QueryRejection>,
) -> Result<Json<PlanView>, Problem> {
    let admitted = admit(&state, &headers, &tenant, Action::ReadRetentionPlan).await?;
    let at = plan_time(&state, params)?;
    let buckets = crate::retention::plan(&state, Some(&admitted.tenant.id), at)
        .await
        .map_err(ServerError::into_problem)?;
    Ok(Json(PlanView { at, buckets }))
}

/// Dry run over every tenant (operators)
#[utoipa::path(
    get,
    path = "/v1/system/retention/plan",
    params(PlanParams),
    responses(
        (status = 200, body = PlanView),
        (status = 400, body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])),
)]
pub async fn system_plan(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    params: Result<Query<PlanParams>, QueryRejection>,
) -> Result<Json<PlanView>, Problem> {
    admit_platform(&state, &headers, Action::ReadAllRetentionPlans).await?;
    let at = plan_time(&state, params)?;
    if state.keys.is_sealed() {
        return Err(ServerError::Sealed.into_problem());
    }
    let buckets = crate::retention::plan(&state, None, at)
        .await
        .map_err(ServerError::into_problem)?;
    Ok(Json(PlanView { at, buckets }))
}

/// What a sweep did.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct SweepView {
    /// Ids of the certificates issued.
    pub certificates: Vec<String>,
    pub records_destroyed: u64,
    /// Due buckets kept by a hold, as `tenant/type/bucket`.
    pub held: Vec<String>,
    /// Audit periods whose entry bodies were destroyed (`deployment.audit_retention`), as
    /// `log/YYYY-MM`; leaf hashes stay.
    #[serde(default)]
    pub audit_periods_destroyed: Vec<String>,
    /// Tenant logs whose expired audit periods a tenant-wide hold keeps.
    #[serde(default)]
    pub audit_held: Vec<String>,
}

/// Run a sweep now (operators)
///
/// The background job runs the same sweep on its interval; this one runs at once.
#[utoipa::path(
    post,
    path = "/v1/system/retention/sweep",
    responses(
        (status = 200, body = SweepView),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 503, body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])),
)]
pub async fn sweep(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Result<Json<SweepView>, Problem> {
    admit_platform(&state, &headers, Action::RunSweep).await?;
    if state.keys.is_sealed() {
        return Err(ServerError::Sealed.into_problem());
    }
    let report = crate::retention::sweep(&state, state.clock.now())
        .await
        .map_err(ServerError::into_problem)?;
    Ok(Json(SweepView {
        certificates: report.destroyed.iter().map(|c| c.id.clone()).collect(),
        records_destroyed: report.destroyed.iter().map(|c| c.record_count).sum(),
        held: report
            .held
            .iter()
            .map(|(b, _)| format!("{}/{}/{}", b.tenant, b.data_type, b.bucket))
            .collect(),
        audit_periods_destroyed: report
            .audit
            .destroyed
            .iter()
            .flat_map(|(log, periods)| periods.iter().map(move |p| format!("{log}/{p}")))
            .collect(),
        audit_held: report
            .audit
            .held
            .iter()
            .map(|(log, _)| log.clone())
            .collect(),
    }))
}

/// A deletion certificate: its fields, and the signed note that proves them.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct CertificateView {
    #[schema(value_type = Object)]
    pub certificate: Certificate,
    /// The certificate as a signed note: `custodian deletions verify` checks it offline
    /// with the deployment's verifier key.
    pub signed_note: String,
}

async fn certificate_view(
    state: &AppState,
    row: custodian_store::CertificateRow,
) -> Result<CertificateView, Problem> {
    let verifier = state
        .audit
        .verifier_key()
        .and_then(|k| {
            custodian_tlog::note::Verifier::parse(&k)
                .map_err(|e| ServerError::Internal(e.to_string()))
        })
        .map_err(ServerError::into_problem)?;
    let certificate = verifier
        .open_text(&row.note)
        .ok()
        .and_then(Certificate::from_signed_text)
        .ok_or_else(|| {
            ServerError::Internal(format!("stored certificate {} does not verify", row.id))
                .into_problem()
        })?;
    Ok(CertificateView {
        certificate,
        signed_note: row.note,
    })
}

/// List the tenant's deletion certificates, oldest first
#[utoipa::path(
    get,
    path = "/v1/tenants/{tenant}/deletions",
    params(("tenant" = String, Path)),
    responses(
        (status = 200, body = Vec<CertificateView>),
        (status = 403, body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])),
)]
pub async fn list_deletions(
    State(state): State<Arc<AppState>>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
) -> Result<Json<Vec<CertificateView>>, Problem> {
    let admitted = admit(&state, &headers, &tenant, Action::ReadDeletions).await?;
    let rows = state
        .store
        .certificates(&admitted.tenant.id)
        .await
        .map_err(|e| ServerError::from(e).into_problem())?;
    let mut views = Vec::with_capacity(rows.len());
    for row in rows {
        views.push(certificate_view(&state, row).await?);
    }
    Ok(Json(views))
}

/// Fetch one deletion certificate
#[utoipa::path(
    get,
    path = "/v1/tenants/{tenant}/deletions/{id}",
    params(("tenant" = String, Path), ("id" = String, Path)),
    responses(
        (status = 200, body = CertificateView),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])),
)]
pub async fn get_deletion(
    State(state): State<Arc<AppState>>,
    Path((tenant, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Json<CertificateView>, Problem> {
    let admitted = admit(&state, &headers, &tenant, Action::ReadDeletions).await?;
    let tenant_id: &TenantId = &admitted.tenant.id;
    let row = state
        .store
        .certificate(tenant_id, &id)
        .await
        .map_err(|e| ServerError::from(e).into_problem())?
        .ok_or_else(|| {
            Problem::new(
                Kind::CertificateNotFound,
                format!("tenant {tenant} has no deletion certificate {id}"),
            )
        })?;
    certificate_view(&state, row).await.map(Json)
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EventRequest {
    /// An event some data type's `after_event` retention waits for, e.g. `ticket_closed`.
    pub event: String,
    /// What the event is about, as the records name it in `event_ref` (e.g. `INC-42`).
    #[serde(alias = "ticket")]
    #[serde(rename = "ref")]
    pub reference: String,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct EventView {
    pub event: String,
    #[serde(rename = "ref")]
    pub reference: String,
    /// When custodian first recorded it: the clocks run from here.
    pub recorded_at: Timestamp,
    pub recorded_by: String,
    /// Pending records whose clock this call started.
    pub clocks_started: u64,
}

/// Record an event that starts retention clocks
///
/// Every record of a type with `retention = { after_event = "<event>", keep = … }` whose
/// `event_ref` is `ref` gets its expiry: the event's time plus `keep`. The first recording
/// wins (201); sending it again answers 200 with the first time. An event may arrive before
/// its records: it is kept, and records that arrive later start their clock at once.
#[utoipa::path(
    post,
    path = "/v1/tenants/{tenant}/events",
    params(("tenant" = String, Path)),
    request_body = EventRequest,
    responses(
        (status = 201, body = EventView),
        (status = 200, description = "Recorded before", body = EventView),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 409, body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])),
)]
pub async fn record_event(
    State(state): State<Arc<AppState>>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
    body: Result<Json<EventRequest>, JsonRejection>,
) -> Result<(StatusCode, Json<EventView>), Problem> {
    let admitted = admit(&state, &headers, &tenant, Action::RecordEvent).await?;
    let Json(request) = body.map_err(json_problem)?;
    let events = state.policy.retention_events();
    if !events.iter().any(|e| *e == request.event) {
        return Err(invalid(format!(
            "unknown event {:?}; the policy's after_event retentions wait for: {}",
            request.event,
            if events.is_empty() {
                "none".to_owned()
            } else {
                events.join(", ")
            }
        )));
    }
    let reference = required_text("ref", request.reference)?;
    refuse_if_terminated(&state, &admitted.tenant.id).await?;
    let (recorded, new, started) = crate::retention::record_event(
        &state,
        &admitted.actor,
        &admitted.tenant.id,
        &request.event,
        &reference,
    )
    .await
    .map_err(ServerError::into_problem)?;
    let status = if new {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        Json(EventView {
            event: recorded.event,
            reference: recorded.reference,
            recorded_at: recorded.at,
            recorded_by: recorded.recorded_by,
            clocks_started: started,
        }),
    ))
}

/// Where a termination's purge stands, in words.
fn purge_state(t: &custodian_store::Termination) -> String {
    match t.purged_at {
        Some(at) => format!("done at {at}"),
        None => format!("due at {}", t.purge_at),
    }
}

/// 409 `tenant-terminated` once the tenant was terminated: no new data is accepted.
pub(crate) async fn refuse_if_terminated(
    state: &AppState,
    tenant: &TenantId,
) -> Result<(), Problem> {
    match state
        .store
        .termination(tenant)
        .await
        .map_err(|e| ServerError::from(e).into_problem())?
    {
        None => Ok(()),
        Some(t) => Err(Problem::new(
            Kind::TenantTerminated,
            format!(
                "tenant {tenant} was terminated at {} by {}; it accepts no new data (purge {})",
                t.terminated_at,
                t.requested_by,
                purge_state(&t)
            ),
        )),
    }
}

/// A scheduled (two-step) deletion as shown.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct ScheduledDeletionView {
    pub id: String,
    /// `record:<id>` or `subject:<pseudonym>`.
    pub target: String,
    pub reason: String,
    pub requested_by: String,
    pub requested_at: Timestamp,
    pub due_at: Timestamp,
    /// `scheduled`, `cancelled` or `done`.
    pub state: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cancelled_by: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub certificate: Option<String>,
}

impl From<&custodian_store::ScheduledDeletion> for ScheduledDeletionView {
    fn from(d: &custodian_store::ScheduledDeletion) -> ScheduledDeletionView {
        use custodian_store::{DeletionState, DeletionTarget};
        let (state, cancelled_by, certificate) = match &d.state {
            DeletionState::Scheduled => ("scheduled", None, None),
            DeletionState::Cancelled { by, .. } => ("cancelled", Some(by.clone()), None),
            DeletionState::Done { certificate_id, .. } => {
                ("done", None, Some(certificate_id.clone()))
            }
        };
        ScheduledDeletionView {
            id: d.id.clone(),
            target: match &d.target {
                DeletionTarget::Record(id) => format!("record:{id}"),
                DeletionTarget::Subject(p) => format!("subject:{}", hex(p)),
            },
            reason: d.reason.clone(),
            requested_by: d.requested_by.clone(),
            requested_at: d.requested_at,
            due_at: d.due_at,
            state: state.to_owned(),
            cancelled_by,
            certificate,
        }
    }
}

/// List the tenant's scheduled deletions, whatever their state
#[utoipa::path(
    get,
    path = "/v1/tenants/{tenant}/scheduled-deletions",
    params(("tenant" = String, Path)),
    responses((status = 200, body = Vec<ScheduledDeletionView>)),
    security(("bearer" = [])),
)]
pub async fn list_scheduled(
    State(state): State<Arc<AppState>>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
) -> Result<Json<Vec<ScheduledDeletionView>>, Problem> {
    let admitted = admit(&state, &headers, &tenant, Action::ReadDeletions).await?;
    let all = state
        .store
        .scheduled_deletions(&admitted.tenant.id)
        .await
        .map_err(|e| ServerError::from(e).into_problem())?;
    Ok(Json(all.iter().map(ScheduledDeletionView::from).collect()))
}

/// Cancel a scheduled deletion before its window ends
#[utoipa::path(
    delete,
    path = "/v1/tenants/{tenant}/scheduled-deletions/{id}",
    params(("tenant" = String, Path), ("id" = String, Path)),
    responses(
        (status = 200, body = ScheduledDeletionView),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])),
)]
pub async fn cancel_scheduled(
    State(state): State<Arc<AppState>>,
    Path((tenant, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Json<ScheduledDeletionView>, Problem> {
    use custodian_store::CancelOutcome;
    let admitted = admit(&state, &headers, &tenant, Action::CancelDeletion).await?;
    match crate::retention::cancel_deletion(&state, &admitted.actor, &admitted.tenant.id, &id)
        .await
        .map_err(ServerError::into_problem)?
    {
        CancelOutcome::Cancelled(d) => Ok(Json(ScheduledDeletionView::from(&d))),
        CancelOutcome::NotCancellable(d) => {
            let view = ScheduledDeletionView::from(&d);
            Err(Problem::new(
                Kind::DeletionNotCancellable,
                format!(
                    "deletion {id} is {} and can no longer be cancelled",
                    view.state
                ),
            ))
        }
        CancelOutcome::NotFound => Err(Problem::new(
            Kind::DeletionNotFound,
            format!("tenant {tenant} has no scheduled deletion {id}"),
        )),
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TerminateRequest {
    /// How long to wait before the purge, e.g. `30d`; at the next sweep when absent.
    pub purge_after: Option<String>,
    pub reason: String,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct TerminationView {
    pub tenant: String,
    pub requested_by: String,
    pub reason: String,
    pub terminated_at: Timestamp,
    pub purge_at: Timestamp,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub purged_at: Option<Timestamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub certificate: Option<String>,
}

impl From<custodian_store::Termination> for TerminationView {
    fn from(t: custodian_store::Termination) -> TerminationView {
        TerminationView {
            tenant: t.tenant.to_string(),
            requested_by: t.requested_by,
            reason: t.reason,
            terminated_at: t.terminated_at,
            purge_at: t.purge_at,
            purged_at: t.purged_at,
            certificate: t.certificate_id,
        }
    }
}

/// Terminate a tenant (operators)
///
/// New writes are refused at once. At the first sweep after `purge_after`, everything not
/// under a legal hold is destroyed, keys first, and one summary certificate is issued; held
/// data stays until its holds are released. Done once: a second request is refused.
#[utoipa::path(
    post,
    path = "/v1/tenants/{tenant}/terminate",
    params(("tenant" = String, Path)),
    request_body = TerminateRequest,
    responses(
        (status = 201, body = TerminationView),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 409, body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])),
)]
pub async fn terminate(
    State(state): State<Arc<AppState>>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
    body: Result<Json<TerminateRequest>, JsonRejection>,
) -> Result<(StatusCode, Json<TerminationView>), Problem> {
    let admitted = admit(&state, &headers, &tenant, Action::TerminateTenant).await?;
    let Json(request) = body.map_err(json_problem)?;
    let purge_after = request
        .purge_after
        .map(|d| {
            d.parse::<custodian_core::duration::CalDuration>()
                .map_err(|e| {
                    invalid(format!(
                        "purge_after {d:?} is not a duration ({e}); write {}",
                        custodian_core::duration::VALID_DURATION_FORMS
                    ))
                })
        })
        .transpose()?;
    let reason = required_text("reason", request.reason)?;
    match crate::retention::terminate_tenant(
        &state,
        &admitted.actor,
        &admitted.tenant.id,
        purge_after,
        reason,
    )
    .await
    .map_err(ServerError::into_problem)?
    {
        Ok(t) => Ok((StatusCode::CREATED, Json(TerminationView::from(t)))),
        Err(first) => Err(Problem::new(
            Kind::AlreadyTerminated,
            format!(
                "tenant {tenant} was terminated at {} by {}; purge {}",
                first.terminated_at,
                first.requested_by,
                purge_state(&first)
            ),
        )),
    }
}

/// Withdraw a termination before its purge (operators)
///
/// Possible until `purge_at` (at least the longest cancel window of the policy's data types
/// after the termination); the tenant then takes writes again.
#[utoipa::path(
    delete,
    path = "/v1/tenants/{tenant}/terminate",
    params(("tenant" = String, Path)),
    responses(
        (status = 200, body = TerminationView),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])),
)]
pub async fn cancel_termination(
    State(state): State<Arc<AppState>>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
) -> Result<Json<TerminationView>, Problem> {
    use custodian_store::TerminationCancel;
    let admitted = admit(&state, &headers, &tenant, Action::TerminateTenant).await?;
    match crate::retention::cancel_termination(&state, &admitted.actor, &admitted.tenant.id)
        .await
        .map_err(ServerError::into_problem)?
    {
        TerminationCancel::Cancelled(t) => Ok(Json(TerminationView::from(t))),
        TerminationCancel::PurgeStarted(t) => Err(Problem::new(
            Kind::DeletionNotCancellable,
            format!(
                "tenant {tenant}'s purge was due at {}; the termination can no longer be withdrawn",
                t.purge_at
            ),
        )),
        TerminationCancel::NotTerminated => Err(Problem::new(
            Kind::NotTerminated,
            format!("tenant {tenant} is not terminated"),
        )),
    }
}
