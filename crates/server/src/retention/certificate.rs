//! Deletion certificates: the fields of NIST SP 800-88 Rev. 2's certificate of sanitization,
//! signed by the deployment's key as a signed note, so a tenant or auditor can check one
//! offline.

use custodian_core::ids::{RecordId, TenantId};
use custodian_store::CertificateRow;
use jiff::Timestamp;
use serde::Serialize;

use crate::audit::hex;
use crate::{AppState, ServerError};

/// The first line of every deletion certificate's signed text.
pub const CERTIFICATE_HEADER: &str = "custodian deletion certificate v1";

/// A deletion certificate: the fields of NIST SP 800-88 Rev. 2's certificate of sanitization.
#[derive(Clone, Debug, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct Certificate {
    pub id: String,
    pub tenant: String,
    /// What was destroyed, e.g. `bucket/app_log/d2026-03-01`.
    pub scope: String,
    pub data_type: String,
    pub record_count: u64,
    /// SHA-256 of the destroyed record ids, in order, one per line.
    pub record_ids_sha256: String,
    pub key_ids: Vec<String>,
    /// SP 800-88 category (purge) and technique.
    pub sanitization: String,
    pub method: String,
    pub tool: String,
    pub tool_version: String,
    pub performed_by: String,
    pub reason: String,
    pub completed_at: Timestamp,
    pub verification: String,
}

impl Certificate {
    /// The text that is signed: the header line and the certificate as one JSON line.
    pub fn signed_text(&self) -> Result<String, ServerError> {
        let json = serde_json::to_string(self).map_err(|e| ServerError::Internal(e.to_string()))?;
        Ok(format!("{CERTIFICATE_HEADER}\n{json}\n"))
    }

    /// Reads a certificate back from its signed text (after the signature was checked).
    pub fn from_signed_text(text: &str) -> Option<Certificate> {
        let json = text.strip_prefix(CERTIFICATE_HEADER)?.strip_prefix('\n')?;
        serde_json::from_str(json.trim_end()).ok()
    }
}

/// Who destroys and why: goes into the certificate and the audit entry.
pub(crate) struct Destruction<'a> {
    pub(crate) performed_by: &'a str,
    pub(crate) reason: String,
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn issue(
    state: &AppState,
    tenant: &TenantId,
    scope: &str,
    data_type: &str,
    records: impl Iterator<Item = RecordId>,
    key_ids: Vec<String>,
    method: &str,
    destruction: &Destruction<'_>,
    verification: &str,
) -> Certificate {
    let mut ids = String::new();
    let mut count = 0u64;
    for id in records {
        ids.push_str(&id.to_string());
        ids.push('\n');
        count += 1;
    }
    Certificate {
        id: format!("del_{}", ulid::Ulid::new().to_string().to_lowercase()),
        tenant: tenant.to_string(),
        scope: scope.to_owned(),
        data_type: data_type.to_owned(),
        record_count: count,
        record_ids_sha256: hex(&custodian_crypto::sha256(ids.as_bytes())),
        key_ids,
        sanitization: "purge".into(),
        method: method.into(),
        tool: "custodian".into(),
        tool_version: env!("CARGO_PKG_VERSION").into(),
        performed_by: destruction.performed_by.into(),
        reason: destruction.reason.clone(),
        completed_at: state.clock.now(),
        verification: verification.into(),
    }
}

pub(crate) fn signed_row(
    state: &AppState,
    certificate: &Certificate,
) -> Result<CertificateRow, ServerError> {
    Ok(CertificateRow {
        id: certificate.id.clone(),
        scope: certificate.scope.clone(),
        issued_at: certificate.completed_at,
        note: state.audit.sign_note(&certificate.signed_text()?)?,
    })
}
