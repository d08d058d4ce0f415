//! De-identification at ingest, before a record is sealed: the data type's field rules
//! transform (or drop) the payload fields they name; its entity rules (`"note[CREDIT_CARD]" =
//! "tokenize"`, `"*[EMAIL_ADDRESS]" = "pseudonymize"`) transform the values of an entity that
//! the scanner finds inside free text; and the class's free-text action (`pii = "flag" |
//! "redact" | "reject"`) decides for every other finding. A card number under a `tokenize`
//! rule, whole field or entity, is never stored: only its token is.
//!
//! Keyed transforms use keys expanded from the tenant's index key, one per transform, so
//! pseudonyms and tokens are stable within a tenant, unlinkable across tenants, and die with
//! the tenant's keys. Tokens and format-preserving ciphertexts are bound to tenant, data type
//! and field. Errors name the field, the transform or entity, never the value.

use std::sync::OnceLock;

use custodian_core::ids::TenantId;
use custodian_core::policy::{DataType, EntityScope, FieldRule, PiiAction, Transform};
use custodian_crypto::IndexKey;
use custodian_detect::transform::{self, Generalization, MaskOptions, SecretKey};
use custodian_detect::{Entity, Finding, ScanConfig, Scanner};
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

/// Applies `data_type`'s field and entity rules and `action` for free text to one record's
/// payload. Free text is scanned when the class sets an action or the data type has entity
/// rules; findings no entity rule covers then get the class's action (`flag` when it sets
/// none). `Err` is the reason the line is refused.
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
    let (entity_rules, whole_rules): (Vec<&FieldRule>, Vec<&FieldRule>) = data_type
        .fields
        .iter()
        .partition(|r| r.entity_scope().is_some());
    for rule in &whole_rules {
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
    if action.is_some() || !entity_rules.is_empty() {
        let free_text = FreeText {
            scanner: scanner().map_err(|e| e.to_string())?,
            action: action.unwrap_or(PiiAction::Flag),
            ruled: whole_rules.iter().map(|r| r.field.as_str()).collect(),
            entity_rules: entity_rules
                .iter()
                .filter_map(|r| Some((r.entity_scope()?, *r)))
                .collect(),
            keys,
            tenant,
            data_type,
            subjects,
        };
        let mut path = String::new();
        free_text.scan(&mut value, &mut path, &mut findings, &mut changed)?;
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
    // Dropped fields are removed by `at_path`; a value reaching here is refused, not kept.
    if t == Transform::Drop {
        return Err(format!("field {field}: drop applies to object fields"));
    }
    if t == Transform::DateShift && subjects.is_empty() {
        return Err(format!(
            "field {field}: date_shift needs the record to name a subject"
        ));
    }
    let out = transform_text(keys, tenant, data_type, field, t, subjects, &text)
        .map_err(|e| format!("field {field}: {t} cannot apply: {e}"))?;
    *value = Value::String(match out {
        Some(out) => out,
        None => REDACTED.to_owned(),
    });
    Ok(())
}

/// `text` transformed by `t` under the rule keyed `rule` (which tokens and format-preserving
/// ciphertexts are bound to). `None` for a redaction, which the caller writes as it wants.
fn transform_text(
    keys: &TransformKeys,
    tenant: &TenantId,
    data_type: &DataType,
    rule: &str,
    t: Transform,
    subjects: &[String],
    text: &str,
) -> Result<Option<String>, custodian_detect::DetectError> {
    use custodian_detect::DetectError;
    Ok(Some(match t {
        Transform::Redact => return Ok(None),
        // The policy refuses drop for values found inside free text, and the caller removes
        // whole fields itself.
        Transform::Drop => return Err(DetectError::InvalidInput("drop removes whole fields")),
        Transform::Mask { keep_last } => transform::mask(
            text,
            &MaskOptions {
                keep_last: usize::from(keep_last),
                ..MaskOptions::default()
            },
        ),
        Transform::Pseudonymize => transform::pseudonymize(&keys.pseudonym, text)?,
        Transform::Tokenize => transform::tokenize(
            &keys.token,
            &context(tenant, data_type.name.as_str(), rule),
            text,
        )?,
        Transform::Fpe => transform::fpe(
            &keys.fpe,
            &context(tenant, data_type.name.as_str(), rule),
            text,
        )?,
        Transform::TruncateIp => transform::truncate_ip(text)?,
        Transform::DateShift => {
            let subject = subjects
                .first()
                .ok_or(DetectError::InvalidInput("date_shift needs a subject"))?;
            transform::date_shift(&keys.date_shift, subject, text, transform::MAX_SHIFT_DAYS)?
        }
        // A date keeps its year; a whole number is an age and keeps its band; anything else is
        // a postcode and keeps its first three characters.
        Transform::Generalize => {
            let kind = if transform::generalize(Generalization::Year, text).is_ok() {
                Generalization::Year
            } else if text.trim().parse::<u32>().is_ok() {
                Generalization::AgeBand
            } else {
                Generalization::Postcode
            };
            transform::generalize(kind, text)?
        }
    }))
}

/// What free text is scanned with, and what is done with each finding.
struct FreeText<'a> {
    scanner: &'a Scanner,
    /// For findings that no entity rule covers.
    action: PiiAction,
    /// Fields under a whole-field rule: already transformed, not scanned.
    ruled: Vec<&'a str>,
    entity_rules: Vec<(EntityScope<'a>, &'a FieldRule)>,
    keys: &'a TransformKeys,
    tenant: &'a TenantId,
    data_type: &'a DataType,
    subjects: &'a [String],
}

impl FreeText<'_> {
    /// The entity rule for `entity` in the field at `path`: one naming the field wins over
    /// one for every field (`*`).
    fn rule_for(&self, path: &str, entity: Entity) -> Option<&FieldRule> {
        let of_entity =
            |(scope, _): &&(EntityScope<'_>, &FieldRule)| scope.entity == entity.as_str();
        let rules = || self.entity_rules.iter().filter(of_entity);
        rules()
            .find(|(scope, _)| scope.field == Some(path))
            .or_else(|| rules().find(|(scope, _)| scope.field.is_none()))
            .map(|(_, rule)| *rule)
    }

    /// Scans every string not under a whole-field rule, recording findings and acting on them.
    fn scan(
        &self,
        value: &mut Value,
        path: &mut String,
        findings: &mut Vec<StoredFinding>,
        changed: &mut bool,
    ) -> Result<(), String> {
        if self.ruled.contains(&path.as_str()) {
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
                    self.scan(child, path, findings, changed)?;
                    path.truncate(len);
                }
            }
            Value::Array(items) => {
                for item in items {
                    self.scan(item, path, findings, changed)?;
                }
            }
            Value::String(text) => {
                let found = self.scanner.scan(text);
                if found.is_empty() {
                    return Ok(());
                }
                let field = if path.is_empty() {
                    "(payload)"
                } else {
                    path.as_str()
                };
                if self.action == PiiAction::Reject
                    && let Some(f) = found
                        .iter()
                        .find(|f| !f.test && self.rule_for(path, f.entity).is_none())
                {
                    return Err(format!(
                        "field {field}: {} found; this data type's class does not accept personal data or secrets in free text",
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
                if let Some(rewritten) = self.rewrite(text, path, &found)? {
                    *text = rewritten;
                    *changed = true;
                }
            }
            Value::Number(_) | Value::Bool(_) | Value::Null => {}
        }
        Ok(())
    }

    /// `text` with each finding an entity rule covers transformed by it, and the others
    /// redacted when the class says so; documentation and test values are kept. `None` when
    /// nothing changed.
    fn rewrite(&self, text: &str, path: &str, found: &[Finding]) -> Result<Option<String>, String> {
        let field = if path.is_empty() { "(payload)" } else { path };
        let mut out = String::with_capacity(text.len());
        let mut pos = 0;
        let mut any = false;
        for f in found {
            let (Some(before), Some(value)) = (text.get(pos..f.start), text.get(f.range())) else {
                // The scanner's findings are sorted, disjoint and on char boundaries.
                return Err(format!("field {field}: findings out of order"));
            };
            out.push_str(before);
            pos = f.end;
            let rule = if f.test {
                None
            } else {
                self.rule_for(path, f.entity)
            };
            match rule {
                Some(rule) => {
                    let t = rule.transform;
                    let replaced = transform_text(
                        self.keys,
                        self.tenant,
                        self.data_type,
                        &rule.field,
                        t,
                        self.subjects,
                        value,
                    )
                    .map_err(|e| format!("field {field}: {t} cannot apply to {}: {e}", f.entity))?;
                    out.push_str(&replaced.unwrap_or_else(|| transform::redact(f.entity, None)));
                    any = true;
                }
                None if !f.test && self.action == PiiAction::Redact => {
                    out.push_str(&transform::redact(f.entity, None));
                    any = true;
                }
                None => out.push_str(value),
            }
        }
        out.push_str(text.get(pos..).unwrap_or_default());
        Ok(any.then_some(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The policy checks entity rules against its own list of the scanner's entity names.
    #[test]
    fn the_policy_knows_every_entity_the_scanner_reports() {
        let scanner: Vec<&str> = Entity::ALL.iter().map(|e| e.as_str()).collect();
        assert_eq!(custodian_core::policy::ENTITY_NAMES, scanner.as_slice());
    }
}
