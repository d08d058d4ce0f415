//! De-identification at ingest, before a record is sealed: the data type's field rules
//! transform (or drop) the payload fields they name, and the free text of classes whose policy
//! asks for it (`pii = "flag" | "redact" | "reject"`) is scanned for personal data and secrets.
//! A card number under a `tokenize` rule is never stored: only its token is.
//!
//! Keyed transforms use keys expanded from the tenant's index key, one per transform, so
//! pseudonyms and tokens are stable within a tenant, unlinkable across tenants, and die with
//! the tenant's keys. Tokens and format-preserving ciphertexts are bound to tenant, data type
//! and field. Errors name the field, the transform or entity, never the value.

use std::sync::OnceLock;

use custodian_core::ids::TenantId;
use custodian_core::policy::{DataType, PiiAction, Transform};
use custodian_crypto::IndexKey;
use custodian_detect::transform::{self, Generalization, MaskOptions, SecretKey};
use custodian_detect::{ScanConfig, Scanner};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;

use crate::ServerError;
use crate::keys::TenantKeys;

/// What replaces a value under a `redact` field rule.
pub const REDACTED: &str = "<REDACTED>";

/// The scanner ingest and anonymisation use (every entity, default settings), built once.
pub fn scanner() -> Result<&'static Scanner, ServerError> {
    static SCANNER: OnceLock<Scanner> = OnceLock::new();
    if let Some(s) = SCANNER.get() {
        return Ok(s);
    }
    let built = Scanner::new(ScanConfig::default())
        .map_err(|e| ServerError::Internal(format!("scanner: {e}")))?;
    Ok(SCANNER.get_or_init(|| built))
}

/// The tenant's de-identification keys.
pub struct TransformKeys {
    pseudonym: SecretKey,
    token: SecretKey,
    fpe: SecretKey,
    date_shift: SecretKey,
}

impl TransformKeys {
    pub fn of(keys: &TenantKeys) -> Result<TransformKeys, ServerError> {
        TransformKeys::from_index_key(keys.index_key())
    }

    /// The keys an index key expands to (offline de-identification brings its own).
    pub fn from_index_key(index: &IndexKey) -> Result<TransformKeys, ServerError> {
        Ok(TransformKeys {
            pseudonym: index.derive("transform/pseudonymize", 32)?.into(),
            token: index.derive("transform/tokenize", 64)?.into(),
            fpe: index.derive("transform/fpe", 32)?.into(),
            date_shift: index.derive("transform/date_shift", 32)?.into(),
        })
    }

    /// A token back to its value (the detokenize permission's work).
    pub fn detokenize(
        &self,
        tenant: &TenantId,
        data_type: &str,
        field: &str,
        token: &str,
    ) -> Result<String, String> {
        transform::detokenize(&self.token, &context(tenant, data_type, field), token)
            .map_err(|e| e.to_string())
    }
}

/// Personal data or a secret found in a field's value as sent: where, and what — never the
/// value.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StoredFinding {
    /// The field's path from the payload's root (`note`, `contact.email`).
    pub field: String,
    /// The entity, as Presidio names it where it has it (`EMAIL_ADDRESS`, `AWS_ACCESS_KEY`).
    pub entity: String,
    /// Byte offsets into the field's value as sent.
    pub start: usize,
    pub end: usize,
    /// A value reserved for documentation or testing (a test card number, an example address).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub test: bool,
}

/// The payload to seal and the findings to store with it.
pub struct Deidentified {
    /// `None` when nothing changed: the payload is sealed as sent.
    pub payload: Option<Box<RawValue>>,
    pub findings: Vec<StoredFinding>,
}

/// Applies `data_type`'s field rules and `action` for free text to one record's payload.
/// `Err` is the reason the line is refused.
pub fn deidentify(
    keys: &TransformKeys,
    tenant: &TenantId,
    data_type: &DataType,
    action: Option<PiiAction>,
    subjects: &[String],
    payload: &RawValue,
) -> Result<Deidentified, String> {
    if data_type.fields.is_empty() && action.is_none() {
        return Ok(Deidentified {
            payload: None,
            findings: Vec::new(),
        });
    }
    let mut value: Value =
        serde_json::from_str(payload.get()).map_err(|e| format!("payload: {e}"))?;
    let mut changed = false;
    for rule in &data_type.fields {
        let path: Vec<&str> = rule.field.split('.').collect();
        let mut apply = |v: &mut Value| {
            transform_value(
                keys,
                tenant,
                data_type,
                &rule.field,
                rule.transform,
                subjects,
                v,
            )
        };
        changed |= at_path(
            &mut value,
            &path,
            rule.transform == Transform::Drop,
            &mut apply,
        )?;
    }
    let mut findings = Vec::new();
    if let Some(action) = action {
        let scanner = scanner().map_err(|e| e.to_string())?;
        let ruled: Vec<&str> = data_type.fields.iter().map(|r| r.field.as_str()).collect();
        let mut path = String::new();
        scan_text(
            scanner,
            action,
            &ruled,
            &mut value,
            &mut path,
            &mut findings,
            &mut changed,
        )?;
    }
    let payload = if changed {
        Some(serde_json::value::to_raw_value(&value).map_err(|e| format!("payload: {e}"))?)
    } else {
        None
    };
    Ok(Deidentified { payload, findings })
}

/// Calls `apply` on the value at `path` (each element, when it is an array), or removes it
/// when `drop`. Whether anything was found there.
fn at_path(
    value: &mut Value,
    path: &[&str],
    drop: bool,
    apply: &mut impl FnMut(&mut Value) -> Result<(), String>,
) -> Result<bool, String> {
    match (path, value) {
        ([], Value::Array(items)) => {
            let mut any = false;
            for item in items {
                any |= at_path(item, &[], drop, apply)?;
            }
            Ok(any)
        }
        ([], v) if v.is_null() => Ok(false),
        ([], v) => apply(v).map(|()| true),
        ([last], Value::Object(map)) if drop => Ok(map.remove(*last).is_some()),
        ([first, rest @ ..], Value::Object(map)) => match map.get_mut(*first) {
            Some(child) => at_path(child, rest, drop, apply),
            None => Ok(false),
        },
        (_, Value::Array(items)) => {
            let mut any = false;
            for item in items {
                any |= at_path(item, path, drop, apply)?;
            }
            Ok(any)
        }
        _ => Ok(false),
    }
}

/// The context tokens and format-preserving ciphertexts of a field are bound to.
fn context(tenant: &TenantId, data_type: &str, field: &str) -> Vec<u8> {
    format!("{tenant}/{data_type}/{field}").into_bytes()
}

fn transform_value(
    keys: &TransformKeys,
    tenant: &TenantId,
    data_type: &DataType,
    field: &str,
    t: Transform,
    subjects: &[String],
    value: &mut Value,
) -> Result<(), String> {
    let text = match value {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ if t == Transform::Redact => {
            *value = Value::String(REDACTED.into());
            return Ok(());
        }
        _ => return Err(format!("field {field}: {t} needs a string or a number")),
    };
    let fail = |e: custodian_detect::DetectError| format!("field {field}: {t} cannot apply: {e}");
    let out = match t {
        // Dropped fields are removed by `at_path`; a value reaching here is refused, not kept.
        Transform::Drop => return Err(format!("field {field}: drop applies to object fields")),
        Transform::Redact => REDACTED.to_owned(),
        Transform::Mask { keep_last } => transform::mask(
            &text,
            &MaskOptions {
                keep_last: usize::from(keep_last),
                ..MaskOptions::default()
            },
        ),
        Transform::Pseudonymize => transform::pseudonymize(&keys.pseudonym, &text).map_err(fail)?,
        Transform::Tokenize => transform::tokenize(
            &keys.token,
            &context(tenant, data_type.name.as_str(), field),
            &text,
        )
        .map_err(fail)?,
        Transform::Fpe => transform::fpe(
            &keys.fpe,
            &context(tenant, data_type.name.as_str(), field),
            &text,
        )
        .map_err(fail)?,
        Transform::TruncateIp => transform::truncate_ip(&text).map_err(fail)?,
        Transform::DateShift => {
            let subject = subjects.first().ok_or_else(|| {
                format!("field {field}: date_shift needs the record to name a subject")
            })?;
            transform::date_shift(&keys.date_shift, subject, &text, transform::MAX_SHIFT_DAYS)
                .map_err(fail)?
        }
        // A date keeps its year; a whole number is an age and keeps its band; anything else is
        // a postcode and keeps its first three characters.
        Transform::Generalize => {
            let kind = if transform::generalize(Generalization::Year, &text).is_ok() {
                Generalization::Year
            } else if text.trim().parse::<u32>().is_ok() {
                Generalization::AgeBand
            } else {
                Generalization::Postcode
            };
            transform::generalize(kind, &text).map_err(fail)?
        }
    };
    *value = Value::String(out);
    Ok(())
}

/// Scans every string not under a field rule, recording findings and acting on them.
fn scan_text(
    scanner: &Scanner,
    action: PiiAction,
    ruled: &[&str],
    value: &mut Value,
    path: &mut String,
    findings: &mut Vec<StoredFinding>,
    changed: &mut bool,
) -> Result<(), String> {
    if ruled.contains(&path.as_str()) {
        return Ok(());
    }
    match value {
        Value::Object(map) => {
            for (key, child) in map.iter_mut() {
                let len = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(key);
                scan_text(scanner, action, ruled, child, path, findings, changed)?;
                path.truncate(len);
            }
        }
        Value::Array(items) => {
            for item in items {
                scan_text(scanner, action, ruled, item, path, findings, changed)?;
            }
        }
        Value::String(text) => {
            let found = scanner.scan(text);
            if found.is_empty() {
                return Ok(());
            }
            if action == PiiAction::Reject
                && let Some(f) = found.iter().find(|f| !f.test)
            {
                return Err(format!(
                    "field {}: {} found; this data type's class does not accept personal data or secrets in free text",
                    if path.is_empty() { "(payload)" } else { path },
                    f.entity
                ));
            }
            findings.extend(found.iter().map(|f| StoredFinding {
                field: path.clone(),
                entity: f.entity.as_str().to_owned(),
                start: f.start,
                end: f.end,
                test: f.test,
            }));
            if action == PiiAction::Redact {
                let real: Vec<custodian_detect::Finding> =
                    found.into_iter().filter(|f| !f.test).collect();
                if !real.is_empty() {
                    *text =
                        transform::apply(text, &real, |f, _| Ok(transform::redact(f.entity, None)))
                            .map_err(|e| format!("field {path}: {e}"))?;
                    *changed = true;
                }
            }
        }
        Value::Number(_) | Value::Bool(_) | Value::Null => {}
    }
    Ok(())
}
