//! The OpenAPI document, generated from the route annotations so it cannot drift from the code.

use std::sync::OnceLock;

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::problem::{LineError, Problem};
use crate::routes::{audit, grants, keys, records, retention, subjects, system};

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("cst_<id>_<secret>")
                    .build(),
            ),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "custodian",
        description = "Multi-tenant data custody: classified, encrypted, retained by policy, audited."
    ),
    paths(
        records::ingest,
        records::get_record,
        records::list_subject_records,
        records::delete_record,
        audit::checkpoint,
        audit::entries,
        audit::inclusion,
        audit::consistency,
        audit::verifier_key,
        audit::system_checkpoint,
        audit::system_entries,
        audit::system_inclusion,
        audit::system_consistency,
        retention::place_hold,
        retention::list_holds,
        retention::release_hold,
        retention::tenant_plan,
        retention::system_plan,
        retention::sweep,
        retention::list_deletions,
        retention::get_deletion,
        retention::record_event,
        retention::list_scheduled,
        retention::cancel_scheduled,
        retention::terminate,
        retention::cancel_termination,
        records::detokenize,
        subjects::export,
        subjects::erase,
        subjects::rectify,
        subjects::list_requests,
        subjects::get_request,
        grants::request,
        grants::break_glass,
        grants::list,
        grants::get_grant,
        grants::approve,
        grants::deny,
        grants::revoke,
        grants::review,
        keys::tenant_status,
        keys::rotate,
        keys::all_status,
        keys::seal_status,
        keys::init,
        keys::unseal,
        keys::seal,
        keys::backup,
        keys::restore,
        system::healthz,
        system::readyz,
        system::metrics,
        system::openapi,
        system::problem_type,
    ),
    components(schemas(Problem, LineError, records::IngestResponse, records::RecordView, records::RecordPage, records::RetentionView, audit::EntriesView, audit::EntryView, audit::ProofView, crate::keys::KeyStatus, crate::keys::Rotation, crate::seal::SealStatus, keys::InitRequest, keys::InitResponse, keys::UnsealRequest, keys::RestoreView, retention::HoldRequest, retention::ScopeRequest, retention::HoldView, retention::PlanView, crate::retention::PlannedBucket, retention::SweepView, retention::CertificateView, retention::EventRequest, retention::EventView, retention::ScheduledDeletionView, retention::TerminateRequest, retention::TerminationView, records::DeleteView, subjects::RequestBody, subjects::RequestView, subjects::ErasureView, subjects::RectifyBody, subjects::RectifiedView, subjects::RequestList, records::DetokenizeRequest, records::DetokenizeView, crate::deidentify::StoredFinding, grants::GrantBody, grants::NoteBody, grants::GrantView, grants::GrantPage)),
    modifiers(&BearerAuth),
)]
struct ApiDoc;

/// The OpenAPI document as JSON, built once.
pub fn openapi_json() -> String {
    static JSON: OnceLock<String> = OnceLock::new();
    JSON.get_or_init(|| {
        ApiDoc::openapi()
            .to_pretty_json()
            .unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
    })
    .clone()
}
