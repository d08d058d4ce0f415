//! Policy as code: the validated model of a policy file and the questions the rest of the
//! service asks of it (which data types exist, what a tenant's effective retention is).
//!
//! A policy is parsed once by [`Policy::parse`], which reports every problem it finds with the
//! file, line, column and key, and then never changes; a value of [`Policy`] is always valid.

mod parse;
mod render;

use std::fmt;

pub use render::{RenderFormat, render};

use crate::access::Role;
use crate::duration::CalDuration;
use crate::ids::{Class, DataTypeName, Region, TenantId, TierName};
use crate::retention::{Basis, EffectiveRetention, RetentionRule};

/// A validated policy.
#[derive(Clone, Debug)]
pub struct Policy {
    pub meta: Meta,
    pub deployment: Deployment,
    pub keys: KeySettings,
    pub classes: Vec<ClassInfo>,
    pub tiers: Vec<Tier>,
    pub data_types: Vec<DataType>,
    pub access: AccessSettings,
    pub telemetry: Telemetry,
    pub subject_rights: SubjectRights,
    pub tenants: Vec<TenantPolicy>,
    /// Things that are valid but probably not meant; `policy check` prints them.
    pub warnings: Vec<Diagnostic>,
}

#[derive(Clone, Debug, Default)]
pub struct Meta {
    pub name: Option<String>,
    pub description: Option<String>,
}

#[derive(Clone, Debug)]
pub struct Deployment {
    pub region: Region,
    /// How long a shortened retention waits before it applies to records already stored
    /// (`retention_shortening_grace`, default 30d; `0d` applies it at once).
    pub shortening_grace: Option<CalDuration>,
    /// How long audit entry bodies are kept, counted from the end of the calendar month they
    /// were written in (`audit_retention`; absent: for ever). Their leaf hashes are kept.
    pub audit_retention: Option<CalDuration>,
    /// Where every audit entry and checkpoint is copied, off the box (`audit_mirror`).
    pub audit_mirror: Option<AuditMirror>,
}

/// The off-box copy of the audit logs: a NATS JetStream stream the operators do not control.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditMirror {
    pub url: String,
    pub stream: String,
    /// When the mirror cannot be reached, refuse writes rather than buffer them.
    pub required: bool,
}

#[derive(Clone, Debug)]
pub struct KeySettings {
    pub root: RootKeyConfig,
    pub rotate_every: CalDuration,
}

/// Which root of trust protects the tenant keys.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RootKeyConfig {
    /// A key file next to the data: development only.
    Dev,
    /// A root key split into `shares`, `threshold` of which unseal the server.
    Shamir { shares: u8, threshold: u8 },
    /// A non-extractable key inside a PKCS#11 module.
    Pkcs11 {
        module: String,
        slot: Option<u64>,
        token_label: Option<String>,
        key_label: String,
        pin_env: String,
    },
}

impl RootKeyConfig {
    pub fn name(&self) -> &'static str {
        match self {
            RootKeyConfig::Dev => "dev",
            RootKeyConfig::Shamir { .. } => "shamir",
            RootKeyConfig::Pkcs11 { .. } => "pkcs11",
        }
    }
}

/// Human descriptions of a class, shown on the rendered policy page.
#[derive(Clone, Debug)]
pub struct ClassInfo {
    pub class: Class,
    pub description: Option<String>,
    pub examples: Option<String>,
    pub storage: Option<String>,
    pub access: Option<String>,
    /// What ingest does when it finds personal data or secrets in the free text of a record
    /// of this class (`pii`); `None`: free text is not scanned.
    pub pii: Option<PiiAction>,
}

/// What ingest does with personal data or secrets found in free text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PiiAction {
    /// Keep the text; store the findings (entity, field, offsets) with the record.
    Flag,
    /// Replace each finding with `<ENTITY>` before the record is sealed; store the findings.
    Redact,
    /// Refuse the record (422 naming the field and the entity, never the value).
    Reject,
}

impl PiiAction {
    pub fn as_str(self) -> &'static str {
        match self {
            PiiAction::Flag => "flag",
            PiiAction::Redact => "redact",
            PiiAction::Reject => "reject",
        }
    }
}

#[derive(Clone, Debug)]
pub struct Tier {
    pub name: TierName,
    pub retention: CalDuration,
    /// The tier's retention is a floor: tenants may set a longer one (`base_retention`).
    pub at_least: bool,
    pub description: Option<String>,
}

#[derive(Clone, Debug)]
pub struct DataType {
    pub name: DataTypeName,
    pub class: Class,
    pub retention: RetentionRule,
    pub delete: DeleteMethod,
    /// How long a requested deletion (record delete, subject erasure, termination purge)
    /// waits, cancellable, before it is carried out. `None` (`0d`, the default): at once.
    pub cancel_window: Option<CalDuration>,
    pub fields: Vec<FieldRule>,
    pub description: Option<String>,
    pub notes: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeleteMethod {
    /// Destroy the keys, then purge rows and metadata.
    CryptoShred,
    /// Keep the record for aggregate use with every identifier irreversibly transformed.
    Anonymize,
}

impl DeleteMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            DeleteMethod::CryptoShred => "crypto-shred",
            DeleteMethod::Anonymize => "anonymize",
        }
    }
}

/// A de-identification rule: for one payload field's whole value (`card_number = "tokenize"`),
/// or for the values of one entity that the scanner finds inside free text
/// (`"note[CREDIT_CARD]" = "tokenize"`, `"*[EMAIL_ADDRESS]" = "pseudonymize"`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldRule {
    /// The rule's key as written: a field path (`card_number`, `contact.email`), or a field
    /// path and an entity name in brackets, `*` standing for every free-text field. Tokens and
    /// format-preserving ciphertexts are bound to it, so a token opens only where its rule is.
    pub field: String,
    pub transform: Transform,
}

/// Which detected values an entity rule (`field[ENTITY]`) transforms.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EntityScope<'r> {
    /// The free-text field searched; `None` for `*`: every field without a whole-field rule.
    pub field: Option<&'r str>,
    /// The entity's name as the scanner reports it (`CREDIT_CARD`), one of [`ENTITY_NAMES`].
    pub entity: &'r str,
}

impl FieldRule {
    /// For a rule on the values of an entity inside free text, which ones; `None` for a rule
    /// on a whole field.
    pub fn entity_scope(&self) -> Option<EntityScope<'_>> {
        let (field, entity) = split_entity_key(&self.field)?;
        Some(EntityScope {
            field: (field != "*").then_some(field),
            entity,
        })
    }
}

/// `field[ENTITY]` split into its field and entity, when the key has that form.
fn split_entity_key(key: &str) -> Option<(&str, &str)> {
    let (field, rest) = key.split_once('[')?;
    let entity = rest.strip_suffix(']')?;
    Some((field, entity))
}

/// The entities the scanner detects, as it names them (Presidio's names where Presidio has
/// the entity), for the policy's entity rules. The server checks that this list and the
/// scanner's agree.
pub const ENTITY_NAMES: &[&str] = &[
    "EMAIL_ADDRESS",
    "PHONE_NUMBER",
    "CREDIT_CARD",
    "IBAN_CODE",
    "US_SSN",
    "IP_ADDRESS",
    "MAC_ADDRESS",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "GITHUB_TOKEN",
    "GITLAB_TOKEN",
    "SLACK_TOKEN",
    "SLACK_WEBHOOK_URL",
    "STRIPE_KEY",
    "JWT",
    "PRIVATE_KEY",
    "GENERIC_SECRET",
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transform {
    Drop,
    Redact,
    Mask { keep_last: u8 },
    Pseudonymize,
    Tokenize,
    Fpe,
    TruncateIp,
    DateShift,
    Generalize,
}

impl Transform {
    pub const NAMES: &'static [&'static str] = &[
        "drop",
        "redact",
        "mask",
        "pseudonymize",
        "tokenize",
        "fpe",
        "truncate_ip",
        "date_shift",
        "generalize",
    ];

    fn from_name(name: &str, keep_last: Option<u8>) -> Option<Transform> {
        Some(match name {
            "drop" => Transform::Drop,
            "redact" => Transform::Redact,
            "mask" => Transform::Mask {
                keep_last: keep_last.unwrap_or(4),
            },
            "pseudonymize" => Transform::Pseudonymize,
            "tokenize" => Transform::Tokenize,
            "fpe" => Transform::Fpe,
            "truncate_ip" => Transform::TruncateIp,
            "date_shift" => Transform::DateShift,
            "generalize" => Transform::Generalize,
            _ => return None,
        })
    }
}

impl Transform {
    /// Why this transform cannot apply to values of `entity` found inside free text, if it
    /// cannot: the reason names what it would apply to instead.
    pub fn refuses_entity(self, entity: &str) -> Option<&'static str> {
        match self {
            Transform::Redact
            | Transform::Mask { .. }
            | Transform::Pseudonymize
            | Transform::Tokenize => None,
            Transform::Drop => Some(
                "drop removes a whole field; for values found inside free text write \"redact\"",
            ),
            Transform::TruncateIp => (entity != "IP_ADDRESS")
                .then_some("truncate_ip applies to IP_ADDRESS only"),
            // FF1 enciphers the digits and keeps everything else, so the value must be mostly
            // digits, and at least six of them.
            Transform::Fpe => (!matches!(
                entity,
                "CREDIT_CARD" | "PHONE_NUMBER" | "US_SSN" | "IBAN_CODE"
            ))
            .then_some(
                "fpe enciphers digits; it applies to CREDIT_CARD, PHONE_NUMBER, US_SSN and IBAN_CODE",
            ),
            Transform::DateShift => Some(
                "date_shift applies to dates, which are not among the entities found in free text",
            ),
            Transform::Generalize => Some(
                "generalize applies to dates, ages and postcodes, which are not among the entities found in free text",
            ),
        }
    }
}

impl fmt::Display for Transform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Transform::Drop => f.write_str("drop"),
            Transform::Redact => f.write_str("redact"),
            Transform::Mask { keep_last } => write!(f, "mask (keep last {keep_last})"),
            Transform::Pseudonymize => f.write_str("pseudonymize"),
            Transform::Tokenize => f.write_str("tokenize"),
            Transform::Fpe => f.write_str("format-preserving encryption"),
            Transform::TruncateIp => f.write_str("truncate IP"),
            Transform::DateShift => f.write_str("date shift"),
            Transform::Generalize => f.write_str("generalize"),
        }
    }
}

#[derive(Clone, Debug)]
pub struct AccessSettings {
    pub mfa_required: Vec<Role>,
    /// Roles that must give a purpose (`X-Custodian-Reason`, or a grant's reason) to read
    /// payloads.
    pub reason_required: Vec<Role>,
    pub jit_max: CalDuration,
    pub restricted_approvers: u8,
    /// OpenID Connect providers whose JWT access tokens authenticate callers, besides API
    /// tokens (`[access.oidc.<name>]`), in file order.
    pub oidc: Vec<OidcIssuer>,
}

impl AccessSettings {
    /// The configured provider whose `issuer` is exactly `iss`.
    pub fn oidc_issuer(&self, iss: &str) -> Option<&OidcIssuer> {
        self.oidc.iter().find(|o| o.issuer == iss)
    }
}

/// One OpenID Connect provider trusted to vouch for callers (`[access.oidc.<name>]`).
///
/// Its tokens name the caller's tenant and roles in claims; the provider is trusted with
/// both, as an operator issuing an API token is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OidcIssuer {
    /// The table's name: principals read `oidc:<name>:<sub>`.
    pub name: String,
    /// The exact `iss` of its tokens, and where `/.well-known/openid-configuration` is found.
    pub issuer: String,
    /// The `aud` its tokens must carry for this deployment.
    pub audience: String,
    /// Signature algorithms accepted (public-key only: never `none`, never HMAC).
    pub algorithms: Vec<JwsAlgorithm>,
    /// Clock skew tolerated on `exp` and `nbf`, in seconds (default 60, at most 300).
    pub leeway_secs: u64,
    /// The claim naming the caller's tenant (default `custodian_tenant`).
    pub tenant_claim: String,
    /// The claim listing the caller's roles (default `custodian_roles`).
    pub roles_claim: String,
    /// `amr` values that show multi-factor authentication (default mfa, otp, hwk, swk).
    pub mfa_amr: Vec<String>,
    /// `acr` values that show multi-factor authentication (default none).
    pub mfa_acr: Vec<String>,
}

impl OidcIssuer {
    pub const DEFAULT_ALGORITHMS: [JwsAlgorithm; 3] = [
        JwsAlgorithm::RS256,
        JwsAlgorithm::ES256,
        JwsAlgorithm::EdDSA,
    ];
    pub const DEFAULT_LEEWAY_SECS: u64 = 60;
    pub const MAX_LEEWAY_SECS: u64 = 300;
    pub const DEFAULT_TENANT_CLAIM: &'static str = "custodian_tenant";
    pub const DEFAULT_ROLES_CLAIM: &'static str = "custodian_roles";
    pub const DEFAULT_MFA_AMR: [&'static str; 4] = ["mfa", "otp", "hwk", "swk"];
}

/// A JWS signature algorithm a policy may allow for OIDC tokens: public-key algorithms only,
/// so that nothing the provider publishes can be used to forge a token.
#[allow(clippy::upper_case_acronyms)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum JwsAlgorithm {
    RS256,
    RS384,
    RS512,
    PS256,
    PS384,
    PS512,
    ES256,
    ES384,
    EdDSA,
}

impl JwsAlgorithm {
    pub const ALL: [JwsAlgorithm; 9] = [
        JwsAlgorithm::RS256,
        JwsAlgorithm::RS384,
        JwsAlgorithm::RS512,
        JwsAlgorithm::PS256,
        JwsAlgorithm::PS384,
        JwsAlgorithm::PS512,
        JwsAlgorithm::ES256,
        JwsAlgorithm::ES384,
        JwsAlgorithm::EdDSA,
    ];

    /// The `alg` header value (RFC 7518).
    pub fn as_str(self) -> &'static str {
        match self {
            JwsAlgorithm::RS256 => "RS256",
            JwsAlgorithm::RS384 => "RS384",
            JwsAlgorithm::RS512 => "RS512",
            JwsAlgorithm::PS256 => "PS256",
            JwsAlgorithm::PS384 => "PS384",
            JwsAlgorithm::PS512 => "PS512",
            JwsAlgorithm::ES256 => "ES256",
            JwsAlgorithm::ES384 => "ES384",
            JwsAlgorithm::EdDSA => "EdDSA",
        }
    }

    /// Exact, case-sensitive, as `alg` is.
    pub fn parse(s: &str) -> Option<JwsAlgorithm> {
        JwsAlgorithm::ALL.into_iter().find(|a| a.as_str() == s)
    }

    pub fn valid_names() -> String {
        JwsAlgorithm::ALL.map(JwsAlgorithm::as_str).join(", ")
    }
}

impl fmt::Display for JwsAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How data-subject requests are answered (`[subject_rights]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubjectRights {
    /// How long the operator has to answer a request (`answer_within`, default `1mo`, the
    /// GDPR's one month).
    pub answer_within: CalDuration,
    /// Under a legal hold, erase the records it does not cover and list the held ones
    /// (`erasure_under_hold = "erase_rest"`), rather than refuse the whole erasure (`"refuse"`,
    /// the default).
    pub erase_rest_under_hold: bool,
}

impl Default for SubjectRights {
    fn default() -> SubjectRights {
        SubjectRights {
            answer_within: "1mo".parse().expect("valid literal"),
            erase_rest_under_hold: false,
        }
    }
}

#[derive(Clone, Debug, Default)]
pub struct Telemetry {
    pub allow: Vec<MetricAllow>,
}

/// A metric that may leave the region, with the only labels it may carry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MetricAllow {
    pub name: String,
    pub labels: Vec<String>,
}

impl fmt::Display for MetricAllow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{{{}}}", self.name, self.labels.join(","))
    }
}

#[derive(Clone, Debug)]
pub struct TenantPolicy {
    pub id: TenantId,
    pub name: Option<String>,
    pub tier: TierName,
    pub home_region: Region,
    /// Longer retention than the tier's, for tiers marked `at_least`.
    pub base_retention: Option<CalDuration>,
    /// Per data type retention chosen by the tenant, inside the type's `[min, max]`.
    pub overrides: Vec<(DataTypeName, CalDuration)>,
}

/// One problem found in a policy file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    pub severity: Severity,
    pub file: String,
    pub line: usize,
    pub column: usize,
    /// Dotted key path, e.g. `data_types.auth_log.retention.min`.
    pub key: String,
    pub message: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Severity {
    Error,
    Warning,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let level = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(f, "{}:{}:{}: {level}: ", self.file, self.line, self.column)?;
        if !self.key.is_empty() {
            write!(f, "{}: ", self.key)?;
        }
        f.write_str(&self.message)
    }
}

/// Every error found in a policy file (warnings are kept on the [`Policy`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostics {}

/// A tenant's retention for a data type that a new policy changes.
#[derive(Clone, Debug)]
pub struct RetentionChange<'p> {
    pub row: RetentionRow<'p>,
    pub before: EffectiveRetention,
    pub change: crate::retention::Change,
}

/// One row of the effective-retention table.
#[derive(Clone, Debug)]
pub struct RetentionRow<'p> {
    pub tenant: &'p TenantPolicy,
    pub data_type: &'p DataType,
    pub retention: EffectiveRetention,
}

impl Policy {
    /// Parses and validates a policy. `file` names the source in diagnostics.
    pub fn parse(file: &str, text: &str) -> Result<Policy, Diagnostics> {
        parse::parse(file, text)
    }

    pub fn tenant(&self, id: &TenantId) -> Option<&TenantPolicy> {
        self.tenants.iter().find(|t| t.id == *id)
    }

    pub fn data_type(&self, name: &str) -> Option<&DataType> {
        self.data_types.iter().find(|t| t.name.as_str() == name)
    }

    /// The events `after_event` retentions wait for, each once, in policy order.
    pub fn retention_events(&self) -> Vec<&str> {
        let mut events: Vec<&str> = Vec::new();
        for t in &self.data_types {
            if let RetentionRule::AfterEvent { event, .. } = &t.retention
                && !events.contains(&event.as_str())
            {
                events.push(event);
            }
        }
        events
    }

    pub fn tier(&self, name: &TierName) -> Option<&Tier> {
        self.tiers.iter().find(|t| t.name == *name)
    }

    pub fn class_info(&self, class: Class) -> Option<&ClassInfo> {
        self.classes.iter().find(|c| c.class == class)
    }

    /// The retention that applies to `tenant`'s records of `data_type`.
    pub fn effective_retention(
        &self,
        tenant: &TenantPolicy,
        data_type: &DataType,
    ) -> EffectiveRetention {
        match &data_type.retention {
            RetentionRule::Fixed(d) => EffectiveRetention::Duration {
                base: *d,
                basis: Basis::TypeFixed,
                min: None,
                max: None,
            },
            RetentionRule::AfterEvent { event, keep } => EffectiveRetention::AfterEvent {
                event: event.clone(),
                keep: *keep,
            },
            RetentionRule::UntilDeleted => EffectiveRetention::UntilDeleted,
            RetentionRule::Tier { min, max } => {
                let override_ = tenant
                    .overrides
                    .iter()
                    .find(|(t, _)| *t == data_type.name)
                    .map(|(_, d)| *d);
                let (base, basis) = match override_ {
                    Some(d) => (d, Basis::TenantOverride),
                    None => {
                        // Validation guarantees the tier exists.
                        let tier = self
                            .tier(&tenant.tier)
                            .expect("validated policy names existing tiers");
                        (
                            tenant.base_retention.unwrap_or(tier.retention),
                            Basis::Tier(tier.name.clone()),
                        )
                    }
                };
                EffectiveRetention::Duration {
                    base,
                    basis,
                    min: *min,
                    max: *max,
                }
            }
        }
    }

    /// The effective retention of every tenant × data type, in file order.
    /// What changes for stored records when this policy replaces `previous`: every tenant
    /// and data type present in both whose effective retention differs.
    pub fn retention_changes<'p>(&'p self, previous: &Policy) -> Vec<RetentionChange<'p>> {
        let mut changes = Vec::new();
        for row in self.retention_table() {
            let before = previous.tenant(&row.tenant.id).and_then(|t| {
                previous
                    .data_type(row.data_type.name.as_str())
                    .map(|d| previous.effective_retention(t, d))
            });
            if let Some(before) = before
                && let Some(change) = before.change_to(&row.retention)
            {
                changes.push(RetentionChange {
                    before,
                    change,
                    row,
                });
            }
        }
        changes
    }

    pub fn retention_table(&self) -> Vec<RetentionRow<'_>> {
        self.tenants
            .iter()
            .flat_map(|tenant| {
                self.data_types.iter().map(move |data_type| RetentionRow {
                    tenant,
                    data_type,
                    retention: self.effective_retention(tenant, data_type),
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests;
