//! HTTP errors as RFC 9457 problem details. Every error the API returns has a stable `type`
//! (`/problems/<slug>`, documented at that address by the server itself), a title that never
//! changes for that type, and a detail that says what was wrong and how to fix it.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

/// The kinds of error, each with its status, slug and title.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Unauthorized,
    Forbidden,
    MfaRequired,
    UnknownTenant,
    RecordNotFound,
    NotFound,
    MethodNotAllowed,
    InvalidRequest,
    InvalidBatch,
    PayloadTooLarge,
    IdempotencyKeyReused,
    KeyDestroyed,
    UnderHold,
    HoldNotFound,
    HoldReleased,
    CertificateNotFound,
    DeletionNotFound,
    DeletionNotCancellable,
    TenantTerminated,
    AlreadyTerminated,
    NotTerminated,
    AuditMirrorUnavailable,
    Sealed,
    InvalidShare,
    AlreadyInitialized,
    InvalidBackup,
    IntegrityFailure,
    StorageUnavailable,
    IdentityProviderUnavailable,
    ReasonRequired,
    GrantNotFound,
    GrantConflict,
    Internal,
}

impl Kind {
    pub const ALL: [Kind; 33] = [
        Kind::Unauthorized,
        Kind::Forbidden,
        Kind::MfaRequired,
        Kind::UnknownTenant,
        Kind::RecordNotFound,
        Kind::NotFound,
        Kind::MethodNotAllowed,
        Kind::InvalidRequest,
        Kind::InvalidBatch,
        Kind::PayloadTooLarge,
        Kind::IdempotencyKeyReused,
        Kind::KeyDestroyed,
        Kind::UnderHold,
        Kind::HoldNotFound,
        Kind::HoldReleased,
        Kind::CertificateNotFound,
        Kind::DeletionNotFound,
        Kind::DeletionNotCancellable,
        Kind::TenantTerminated,
        Kind::AlreadyTerminated,
        Kind::NotTerminated,
        Kind::AuditMirrorUnavailable,
        Kind::Sealed,
        Kind::InvalidShare,
        Kind::AlreadyInitialized,
        Kind::InvalidBackup,
        Kind::IntegrityFailure,
        Kind::StorageUnavailable,
        Kind::IdentityProviderUnavailable,
        Kind::ReasonRequired,
        Kind::GrantNotFound,
        Kind::GrantConflict,
        Kind::Internal,
    ];

    pub fn status(self) -> StatusCode {
        match self {
            Kind::Unauthorized => StatusCode::UNAUTHORIZED,
            Kind::Forbidden | Kind::MfaRequired => StatusCode::FORBIDDEN,
            Kind::UnknownTenant | Kind::RecordNotFound | Kind::NotFound => StatusCode::NOT_FOUND,
            Kind::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Kind::InvalidRequest | Kind::ReasonRequired => StatusCode::BAD_REQUEST,
            Kind::GrantNotFound => StatusCode::NOT_FOUND,
            Kind::GrantConflict => StatusCode::CONFLICT,
            Kind::InvalidBatch
            | Kind::IdempotencyKeyReused
            | Kind::InvalidShare
            | Kind::InvalidBackup => StatusCode::UNPROCESSABLE_ENTITY,
            Kind::AlreadyInitialized
            | Kind::UnderHold
            | Kind::HoldReleased
            | Kind::DeletionNotCancellable
            | Kind::TenantTerminated
            | Kind::AlreadyTerminated => StatusCode::CONFLICT,
            Kind::HoldNotFound
            | Kind::CertificateNotFound
            | Kind::DeletionNotFound
            | Kind::NotTerminated => StatusCode::NOT_FOUND,
            Kind::Sealed | Kind::AuditMirrorUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            Kind::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Kind::KeyDestroyed => StatusCode::GONE,
            Kind::StorageUnavailable | Kind::IdentityProviderUnavailable => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Kind::Internal | Kind::IntegrityFailure => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn slug(self) -> &'static str {
        match self {
            Kind::Unauthorized => "unauthorized",
            Kind::Forbidden => "forbidden",
            Kind::MfaRequired => "mfa-required",
            Kind::UnknownTenant => "unknown-tenant",
            Kind::RecordNotFound => "record-not-found",
            Kind::NotFound => "not-found",
            Kind::MethodNotAllowed => "method-not-allowed",
            Kind::InvalidRequest => "invalid-request",
            Kind::InvalidBatch => "invalid-batch",
            Kind::PayloadTooLarge => "payload-too-large",
            Kind::IdempotencyKeyReused => "idempotency-key-reused",
            Kind::KeyDestroyed => "key-destroyed",
            Kind::UnderHold => "under-hold",
            Kind::HoldNotFound => "hold-not-found",
            Kind::HoldReleased => "hold-already-released",
            Kind::CertificateNotFound => "certificate-not-found",
            Kind::DeletionNotFound => "deletion-not-found",
            Kind::DeletionNotCancellable => "deletion-not-cancellable",
            Kind::TenantTerminated => "tenant-terminated",
            Kind::AlreadyTerminated => "already-terminated",
            Kind::NotTerminated => "not-terminated",
            Kind::AuditMirrorUnavailable => "audit-mirror-unavailable",
            Kind::Sealed => "sealed",
            Kind::InvalidShare => "invalid-share",
            Kind::AlreadyInitialized => "already-initialized",
            Kind::InvalidBackup => "invalid-backup",
            Kind::IntegrityFailure => "integrity-failure",
            Kind::StorageUnavailable => "storage-unavailable",
            Kind::IdentityProviderUnavailable => "identity-provider-unavailable",
            Kind::ReasonRequired => "reason-required",
            Kind::GrantNotFound => "grant-not-found",
            Kind::GrantConflict => "grant-conflict",
            Kind::Internal => "internal",
        }
    }

    pub fn title(self) -> &'static str {
        match self {
            Kind::Unauthorized => "Authentication required",
            Kind::Forbidden => "Not allowed",
            Kind::MfaRequired => "Multi-factor authentication required",
            Kind::UnknownTenant => "Unknown tenant",
            Kind::RecordNotFound => "Record not found",
            Kind::NotFound => "No such endpoint",
            Kind::MethodNotAllowed => "Method not allowed",
            Kind::InvalidRequest => "Invalid request",
            Kind::InvalidBatch => "Invalid batch: nothing was stored",
            Kind::PayloadTooLarge => "Request body too large",
            Kind::IdempotencyKeyReused => "Idempotency key reused with a different body",
            Kind::KeyDestroyed => "Key destroyed: the record is unreadable",
            Kind::UnderHold => "A legal hold stops this deletion",
            Kind::HoldNotFound => "Hold not found",
            Kind::HoldReleased => "Hold already released",
            Kind::CertificateNotFound => "Deletion certificate not found",
            Kind::DeletionNotFound => "Scheduled deletion not found",
            Kind::DeletionNotCancellable => "Deletion can no longer be cancelled",
            Kind::TenantTerminated => "Tenant terminated",
            Kind::AlreadyTerminated => "Tenant already terminated",
            Kind::NotTerminated => "Tenant not terminated",
            Kind::AuditMirrorUnavailable => "Audit mirror unavailable",
            Kind::Sealed => "Server sealed",
            Kind::InvalidShare => "Invalid unseal share",
            Kind::AlreadyInitialized => "Already initialised",
            Kind::InvalidBackup => "Invalid key-store backup",
            Kind::IntegrityFailure => "Stored data failed its integrity check",
            Kind::StorageUnavailable => "Storage unavailable",
            Kind::IdentityProviderUnavailable => "Identity provider unavailable",
            Kind::ReasonRequired => "A reason is required",
            Kind::GrantNotFound => "Grant not found",
            Kind::GrantConflict => "Grant cannot make this change",
            Kind::Internal => "Internal error",
        }
    }

    /// What the type means and what a client should do; served at the type URI.
    pub fn description(self) -> &'static str {
        match self {
            Kind::Unauthorized => {
                "The request has no valid credential. Send `Authorization: Bearer <token>` with a token from `custodian token create`, or a JWT access token from an OpenID Connect provider the policy lists under [access.oidc]; expired and revoked tokens, and tokens with the wrong issuer, audience, algorithm or signature, are refused. The detail says which check failed."
            }
            Kind::Forbidden => {
                "The credential is valid but may not perform this action on this tenant: it belongs to another tenant, its role lacks the permission (docs/permissions.md has the matrix), or the just-in-time grant it acts under does not reach this data. Support and operators have no standing access to records: they request a grant."
            }
            Kind::MfaRequired => {
                "The token's role is one the policy's access.mfa_required lists, and the OIDC token does not show multi-factor authentication (no amr value or acr the provider's mfa_amr / mfa_acr accept). Sign in at the identity provider with a second factor and use the new token. API tokens are exempt: operators issue them offline."
            }
            Kind::UnknownTenant => "The tenant in the path is not defined in the policy.",
            Kind::RecordNotFound => {
                "No record with this id exists for this tenant (it may have been deleted or expired)."
            }
            Kind::NotFound => "The path does not name an endpoint; see /openapi.json.",
            Kind::MethodNotAllowed => {
                "The endpoint exists but not for this HTTP method; see /openapi.json."
            }
            Kind::InvalidRequest => {
                "A path segment, query parameter or header is malformed; the detail names it."
            }
            Kind::InvalidBatch => {
                "At least one line of the NDJSON batch is invalid. `errors` lists every bad line with its number and reason. No line of the batch was stored; fix the lines and resend the whole batch."
            }
            Kind::PayloadTooLarge => "The body is larger than the server's limit; split the batch.",
            Kind::IdempotencyKeyReused => {
                "This Idempotency-Key was first used with a different body. Use a new key for a new request."
            }
            Kind::KeyDestroyed => {
                "A key that sealed this record was destroyed (its retention bucket expired, its subject was erased or its tenant terminated). The ciphertext can never be read again, by anyone; this is by design."
            }
            Kind::UnderHold => {
                "A legal hold covers what this request would destroy, so nothing was deleted. `holds` names the holds; the deletion can be asked again once they are released."
            }
            Kind::HoldNotFound => {
                "No hold with this id exists for the tenant. `GET /v1/tenants/{tenant}/holds` lists them."
            }
            Kind::HoldReleased => {
                "The hold was released before; releasing is done once. The answer's detail says by whom and when."
            }
            Kind::CertificateNotFound => {
                "No deletion certificate with this id exists for the tenant. `GET /v1/tenants/{tenant}/deletions` lists them."
            }
            Kind::DeletionNotFound => {
                "No scheduled deletion with this id exists for the tenant. `GET /v1/tenants/{tenant}/scheduled-deletions` lists them."
            }
            Kind::DeletionNotCancellable => {
                "The scheduled deletion was already carried out (its certificate exists) or cancelled before. A destruction cannot be undone."
            }
            Kind::TenantTerminated => {
                "The tenant was terminated: new writes are refused and its data is purged at the time the termination set (data under a legal hold is kept until the hold is released)."
            }
            Kind::AlreadyTerminated => {
                "A termination is done once. The detail says when it happened and when the purge is due."
            }
            Kind::NotTerminated => "There is no termination of this tenant to withdraw.",
            Kind::AuditMirrorUnavailable => {
                "The policy requires every audit entry to be copied off the box (deployment.audit_mirror.required) and the mirror cannot be reached, so writes are refused until it can; reads go on. Nothing was changed."
            }
            Kind::Sealed => {
                "The server holds no root key, so no tenant key can be used: it has not been unsealed since it started, or an operator sealed it. Operators unseal it with `custodian operator unseal` (one share each, until the threshold is reached). Nothing was read or stored."
            }
            Kind::InvalidShare => {
                "The unseal share was refused: mistyped, not one of this deployment's shares, or already given in this unseal. The shares given before it still count; the server stays sealed until the threshold of distinct valid shares is reached."
            }
            Kind::AlreadyInitialized => {
                "The deployment's root key already exists. Initialisation happens once; its shares were printed then."
            }
            Kind::InvalidBackup => {
                "The key-store backup cannot be restored: it is damaged, of an unknown format, or was made under another root key. Nothing was changed."
            }
            Kind::IntegrityFailure => {
                "A stored ciphertext or wrapped key does not verify against its key and context: it was altered, truncated, or moved to another record or tenant. No plaintext was returned. Restore the row from a backup and check who could write to the database."
            }
            Kind::StorageUnavailable => {
                "The database cannot be reached. Nothing was stored; retry later."
            }
            Kind::IdentityProviderUnavailable => {
                "The OIDC token could not be checked because its provider's signing keys could not be fetched (discovery or JWKS failed). The token may be fine; nothing was done. Retry later."
            }
            Kind::ReasonRequired => {
                "The caller's role is one the policy's access.reason_required lists, and reading payloads needs a purpose: send it in the `X-Custodian-Reason` header (1 to 1024 bytes of text), or act under a grant, whose reason counts. The reason is written to the audit log. Nothing was read."
            }
            Kind::GrantNotFound => {
                "No just-in-time grant with this id exists that the caller may see. `GET /v1/grants` lists them."
            }
            Kind::GrantConflict => {
                "The grant is not in a state that allows this change (e.g. approving a grant that expired, lapsed, or was denied; approving it twice; reviewing what was reviewed), or another principal changed it at the same moment. The detail says which; read the grant again before retrying. (Who may not act on a grant at all, such as a requester approving their own request, gets 403 forbidden.)"
            }
            Kind::Internal => {
                "An unexpected error occurred. Nothing was half-stored; the request id identifies the failure in the server log."
            }
        }
    }

    pub fn from_slug(slug: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.slug() == slug)
    }
}

/// One invalid line of a batch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, ToSchema)]
pub struct LineError {
    /// 1-based line number in the request body.
    pub line: usize,
    pub reason: String,
}

/// An RFC 9457 problem document.
#[derive(Debug, Serialize, ToSchema)]
pub struct Problem {
    #[serde(rename = "type")]
    pub type_uri: String,
    pub title: &'static str,
    pub status: u16,
    pub detail: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<LineError>,
    /// The legal holds that stopped a deletion (`under-hold`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub holds: Vec<String>,
    #[serde(skip)]
    kind: Option<Kind>,
}

impl Problem {
    pub fn new(kind: Kind, detail: impl Into<String>) -> Problem {
        Problem {
            type_uri: format!("/problems/{}", kind.slug()),
            title: kind.title(),
            status: kind.status().as_u16(),
            detail: detail.into(),
            errors: Vec::new(),
            holds: Vec::new(),
            kind: Some(kind),
        }
    }

    pub fn with_errors(mut self, errors: Vec<LineError>) -> Problem {
        self.errors = errors;
        self
    }

    pub fn with_holds(mut self, holds: Vec<String>) -> Problem {
        self.holds = holds;
        self
    }

    pub fn kind(&self) -> Option<Kind> {
        self.kind
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let unauthorized = self.kind == Some(Kind::Unauthorized);
        let mut response = (status, Json(self)).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if unauthorized {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"custodian\""),
            );
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_are_unique_and_round_trip() {
        for k in Kind::ALL {
            assert_eq!(Kind::from_slug(k.slug()), Some(k));
        }
        let mut slugs: Vec<_> = Kind::ALL.iter().map(|k| k.slug()).collect();
        slugs.sort();
        slugs.dedup();
        assert_eq!(slugs.len(), Kind::ALL.len());
    }

    #[test]
    fn problems_serialise_per_rfc_9457() {
        let p = Problem::new(Kind::InvalidBatch, "2 bad lines").with_errors(vec![LineError {
            line: 3,
            reason: "bad".into(),
        }]);
        let v = serde_json::to_value(&p).unwrap();
        assert_eq!(v["type"], "/problems/invalid-batch");
        assert_eq!(v["status"], 422);
        assert_eq!(v["title"], "Invalid batch: nothing was stored");
        assert_eq!(v["errors"][0]["line"], 3);
        let r = Problem::new(Kind::Unauthorized, "x").into_response();
        assert_eq!(
            r.headers()[header::CONTENT_TYPE],
            "application/problem+json"
        );
        assert!(r.headers().contains_key(header::WWW_AUTHENTICATE));
    }
}
