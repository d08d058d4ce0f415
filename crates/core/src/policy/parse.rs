//! The policy parser: TOML text → spanned tree → validated [`Policy`].
//!
//! It walks the spanned tree by hand rather than through serde so that it can report every
//! problem in one pass (serde stops at the first), each with its line, column and key path, and
//! reject unknown keys while still checking the rest of the file.

use std::ops::Range;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::{
    AccessSettings, AuditMirror, ClassInfo, DataType, DeleteMethod, Deployment, Diagnostic,
    Diagnostics, FieldRule, JwsAlgorithm, KeySettings, Meta, MetricAllow, OidcIssuer, PiiAction,
    Policy, RootKeyConfig, Severity, SubjectRights, Telemetry, TenantPolicy, Tier, Transform,
};
use crate::access::Role;
use crate::duration::{CalDuration, Unit, VALID_DURATION_FORMS};
use crate::ids::{Class, DataTypeName, Region, TenantId, TierName};
use crate::retention::RetentionRule;

type Value<'i> = Spanned<DeValue<'i>>;

pub(super) fn parse(file: &str, text: &str) -> Result<Policy, Diagnostics> {
    let mut cx = Cx {
        file,
        src: text,
        errors: Vec::new(),
        warnings: Vec::new(),
    };
    let root = match DeTable::parse(text) {
        Ok(root) => root,
        Err(e) => {
            let span = e.span().unwrap_or(0..0);
            let message = format!("not valid TOML: {}", e.message().trim_end());
            cx.error(&span, "", message);
            return Err(Diagnostics(cx.errors));
        }
    };
    let root = Table {
        path: String::new(),
        span: root.span(),
        entries: root.get_ref(),
    };
    let policy = cx.policy(&root);
    match policy {
        Some(p) if cx.errors.is_empty() => Ok(Policy {
            warnings: cx.warnings,
            ..p
        }),
        _ => Err(Diagnostics(cx.errors)),
    }
}

struct Cx<'s> {
    file: &'s str,
    src: &'s str,
    errors: Vec<Diagnostic>,
    warnings: Vec<Diagnostic>,
}

/// A table being validated, with the dotted path that leads to it.
struct Table<'a, 'i> {
    path: String,
    span: Range<usize>,
    entries: &'a DeTable<'i>,
}

impl<'a, 'i> Table<'a, 'i> {
    fn get(&self, key: &str) -> Option<&'a Value<'i>> {
        self.entries
            .iter()
            .find(|(k, _)| k.get_ref() == key)
            .map(|(_, v)| v)
    }

    fn key_path(&self, key: &str) -> String {
        let bare = !key.is_empty()
            && key
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        let key = if bare {
            key.to_owned()
        } else {
            format!("{key:?}")
        };
        if self.path.is_empty() {
            key
        } else {
            format!("{}.{key}", self.path)
        }
    }

    fn iter(&self) -> impl Iterator<Item = (&'a str, Range<usize>, &'a Value<'i>)> + 'a {
        self.entries
            .iter()
            .map(|(k, v)| (k.get_ref().as_ref(), k.span(), v))
    }
}

fn describe(v: &DeValue<'_>) -> &'static str {
    match v {
        DeValue::String(_) => "a string",
        DeValue::Integer(_) => "an integer",
        DeValue::Float(_) => "a float",
        DeValue::Boolean(_) => "a boolean",
        DeValue::Datetime(_) => "a date-time",
        DeValue::Array(_) => "an array",
        DeValue::Table(_) => "a table",
    }
}

impl<'s> Cx<'s> {
    fn diagnostic(
        &self,
        severity: Severity,
        span: &Range<usize>,
        key: &str,
        message: String,
    ) -> Diagnostic {
        let start = span.start.min(self.src.len());
        let before = &self.src[..start];
        let line = before.matches('\n').count() + 1;
        let column = before[before.rfind('\n').map_or(0, |i| i + 1)..]
            .chars()
            .count()
            + 1;
        Diagnostic {
            severity,
            file: self.file.to_owned(),
            line,
            column,
            key: key.to_owned(),
            message,
        }
    }

    fn error(&mut self, span: &Range<usize>, key: &str, message: impl Into<String>) {
        let d = self.diagnostic(Severity::Error, span, key, message.into());
        self.errors.push(d);
    }

    fn warn(&mut self, span: &Range<usize>, key: &str, message: impl Into<String>) {
        let d = self.diagnostic(Severity::Warning, span, key, message.into());
        self.warnings.push(d);
    }

    /// Reports every key of `table` that is not in `allowed`.
    fn check_keys(&mut self, table: &Table<'_, '_>, allowed: &[&str]) {
        for (key, span, _) in table.iter() {
            if !allowed.contains(&key) {
                let path = table.key_path(key);
                self.error(
                    &span,
                    &path,
                    format!("unknown key; valid keys here are: {}", allowed.join(", ")),
                );
            }
        }
    }

    fn table<'a, 'i>(&mut self, v: &'a Value<'i>, path: String) -> Option<Table<'a, 'i>> {
        match v.get_ref() {
            DeValue::Table(entries) => Some(Table {
                path,
                span: v.span(),
                entries,
            }),
            other => {
                self.error(
                    &v.span(),
                    &path,
                    format!("expected a table, found {}", describe(other)),
                );
                None
            }
        }
    }

    fn required<'a, 'i>(&mut self, t: &Table<'a, 'i>, key: &str) -> Option<&'a Value<'i>> {
        let v = t.get(key);
        if v.is_none() {
            let what = if t.path.is_empty() {
                format!("missing required section [{key}]")
            } else {
                format!("missing required key `{key}` in [{}]", t.path)
            };
            self.error(&t.span, &t.key_path(key), what);
        }
        v
    }

    fn sub_table<'a, 'i>(&mut self, t: &Table<'a, 'i>, key: &str) -> Option<Table<'a, 'i>> {
        let v = t.get(key)?;
        self.table(v, t.key_path(key))
    }

    fn string(&mut self, v: &Value<'_>, path: &str) -> Option<String> {
        match v.get_ref() {
            DeValue::String(s) => Some(s.to_string()),
            other => {
                self.error(
                    &v.span(),
                    path,
                    format!("expected a string, found {}", describe(other)),
                );
                None
            }
        }
    }

    fn opt_string(&mut self, t: &Table<'_, '_>, key: &str) -> Option<String> {
        let v = t.get(key)?;
        self.string(v, &t.key_path(key))
    }

    fn req_string(&mut self, t: &Table<'_, '_>, key: &str) -> Option<(String, Range<usize>)> {
        let v = self.required(t, key)?;
        Some((self.string(v, &t.key_path(key))?, v.span()))
    }

    fn integer(&mut self, v: &Value<'_>, path: &str, range: Range<i64>) -> Option<i64> {
        let n = match v.get_ref() {
            DeValue::Integer(i) => i64::from_str_radix(i.as_str(), i.radix()).ok(),
            other => {
                self.error(
                    &v.span(),
                    path,
                    format!("expected an integer, found {}", describe(other)),
                );
                return None;
            }
        };
        match n {
            Some(n) if range.contains(&n) => Some(n),
            _ => {
                self.error(
                    &v.span(),
                    path,
                    format!(
                        "must be an integer from {} to {}",
                        range.start,
                        range.end - 1
                    ),
                );
                None
            }
        }
    }

    fn boolean(&mut self, v: &Value<'_>, path: &str) -> Option<bool> {
        match v.get_ref() {
            DeValue::Boolean(b) => Some(*b),
            other => {
                self.error(
                    &v.span(),
                    path,
                    format!("expected true or false, found {}", describe(other)),
                );
                None
            }
        }
    }

    /// A duration where `0d` is allowed and means none (a window or grace, not a retention).
    fn duration_or_zero(&mut self, v: &Value<'_>, path: &str) -> Option<Option<CalDuration>> {
        match self.string(v, path)?.parse::<CalDuration>() {
            Err(crate::error::DurationError::Zero) => Some(None),
            _ => self.duration(v, path).map(Some),
        }
    }

    fn duration(&mut self, v: &Value<'_>, path: &str) -> Option<CalDuration> {
        let s = self.string(v, path)?;
        match s.parse::<CalDuration>() {
            Ok(d) => Some(d),
            Err(e) => {
                self.error(
                    &v.span(),
                    path,
                    format!("{s:?} is not a valid duration ({e}); write {VALID_DURATION_FORMS}"),
                );
                None
            }
        }
    }

    fn string_array(&mut self, v: &Value<'_>, path: &str) -> Option<Vec<(String, Range<usize>)>> {
        match v.get_ref() {
            DeValue::Array(items) => {
                let mut out = Vec::new();
                for (i, item) in items.iter().enumerate() {
                    if let Some(s) = self.string(item, &format!("{path}[{i}]")) {
                        out.push((s, item.span()));
                    }
                }
                Some(out)
            }
            other => {
                self.error(
                    &v.span(),
                    path,
                    format!("expected an array of strings, found {}", describe(other)),
                );
                None
            }
        }
    }

    fn id<T>(
        &mut self,
        span: &Range<usize>,
        path: &str,
        parsed: Result<T, crate::error::InvalidId>,
    ) -> Option<T> {
        parsed
            .map_err(|e| self.error(span, path, e.to_string()))
            .ok()
    }

    // ----- sections -----

    fn policy(&mut self, root: &Table<'_, '_>) -> Option<Policy> {
        self.check_keys(
            root,
            &[
                "policy",
                "deployment",
                "keys",
                "classes",
                "tiers",
                "data_types",
                "access",
                "telemetry",
                "subject_rights",
                "tenants",
            ],
        );
        let meta = self.meta(root);
        let deployment = self.deployment(root);
        let keys = self.keys(root);
        let classes = self.classes(root);
        let tiers = self.tiers(root);
        let data_types = self.data_types(root);
        let access = self.access(root);
        let telemetry = self.telemetry(root);
        let subject_rights = self.subject_rights(root);
        let tenants = self.tenants(
            root,
            &tiers,
            &data_types,
            deployment.as_ref().map(|d| &d.region),
        );
        Some(Policy {
            meta,
            deployment: deployment?,
            keys: keys?,
            classes,
            tiers,
            data_types,
            access: access?,
            telemetry,
            subject_rights: subject_rights?,
            tenants,
            warnings: Vec::new(),
        })
    }

    fn meta(&mut self, root: &Table<'_, '_>) -> Meta {
        let Some(t) = self.sub_table(root, "policy") else {
            return Meta::default();
        };
        self.check_keys(&t, &["name", "description"]);
        Meta {
            name: self.opt_string(&t, "name"),
            description: self.opt_string(&t, "description"),
        }
    }

    fn deployment(&mut self, root: &Table<'_, '_>) -> Option<Deployment> {
        let v = self.required(root, "deployment")?;
        let t = self.table(v, "deployment".into())?;
        self.check_keys(
            &t,
            &[
                "region",
                "retention_shortening_grace",
                "audit_mirror",
                "audit_retention",
            ],
        );
        let audit_retention = t
            .get("audit_retention")
            .map(|v| self.duration(v, "deployment.audit_retention"));
        let audit_mirror = self
            .sub_table(&t, "audit_mirror")
            .map(|m| self.audit_mirror(&m));
        let shortening_grace = match t.get("retention_shortening_grace") {
            None => Some(Some("30d".parse().expect("valid literal"))),
            Some(v) => self.duration_or_zero(v, "deployment.retention_shortening_grace"),
        };
        let (region, span) = self.req_string(&t, "region")?;
        let region = self.id(&span, "deployment.region", Region::new(region))?;
        Some(Deployment {
            region,
            shortening_grace: shortening_grace?,
            audit_retention: match audit_retention {
                None => None,
                Some(r) => Some(r?),
            },
            audit_mirror: match audit_mirror {
                None => None,
                Some(m) => Some(m?),
            },
        })
    }

    fn audit_mirror(&mut self, t: &Table<'_, '_>) -> Option<AuditMirror> {
        self.check_keys(t, &["url", "stream", "required"]);
        let (url, span) = self.req_string(t, "url")?;
        if !url.starts_with("nats://") {
            self.error(
                &span,
                &t.key_path("url"),
                format!("{url:?} is not a NATS URL; write nats://host:port"),
            );
            return None;
        }
        let stream = self
            .opt_string(t, "stream")
            .unwrap_or_else(|| "CUSTODIAN_AUDIT".to_owned());
        if stream.is_empty()
            || !stream
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            let span = t.get("stream").map(|v| v.span()).unwrap_or(span);
            self.error(
                &span,
                &t.key_path("stream"),
                format!("stream {stream:?} must be letters, digits, - or _"),
            );
            return None;
        }
        let required = match t.get("required") {
            None => false,
            Some(v) => self.boolean(v, &t.key_path("required"))?,
        };
        Some(AuditMirror {
            url,
            stream,
            required,
        })
    }

    fn keys(&mut self, root: &Table<'_, '_>) -> Option<KeySettings> {
        let v = self.required(root, "keys")?;
        let t = self.table(v, "keys".into())?;
        self.check_keys(&t, &["root", "rotate_every", "shamir", "pkcs11"]);
        let rotate_every = match t.get("rotate_every") {
            Some(v) => self.duration(v, "keys.rotate_every"),
            None => Some("90d".parse().expect("valid literal")),
        };
        let (root_name, span) = self.req_string(&t, "root")?;
        let shamir = self.sub_table(&t, "shamir");
        let pkcs11 = self.sub_table(&t, "pkcs11");
        for (present, name) in [(&shamir, "shamir"), (&pkcs11, "pkcs11")] {
            if let Some(section) = present
                && root_name != name
            {
                self.warn(
                    &section.span,
                    &section.path,
                    format!("ignored: root is {root_name:?}, not {name:?}"),
                );
            }
        }
        let root = match root_name.as_str() {
            "dev" => RootKeyConfig::Dev,
            "shamir" => {
                let Some(s) = shamir else {
                    self.error(
                        &span,
                        "keys.root",
                        "root \"shamir\" needs a [keys.shamir] table with shares and threshold",
                    );
                    return None;
                };
                self.check_keys(&s, &["shares", "threshold"]);
                let shares = self
                    .required(&s, "shares")
                    .and_then(|v| self.integer(v, "keys.shamir.shares", 2..256));
                let threshold = self
                    .required(&s, "threshold")
                    .and_then(|v| self.integer(v, "keys.shamir.threshold", 2..256));
                let (shares, threshold) = (shares? as u8, threshold? as u8);
                if threshold > shares {
                    self.error(
                        &s.span,
                        "keys.shamir.threshold",
                        format!("threshold {threshold} is more than the {shares} shares"),
                    );
                    return None;
                }
                RootKeyConfig::Shamir { shares, threshold }
            }
            "pkcs11" => {
                let Some(p) = pkcs11 else {
                    self.error(
                        &span,
                        "keys.root",
                        "root \"pkcs11\" needs a [keys.pkcs11] table with module, key_label and pin_env",
                    );
                    return None;
                };
                self.check_keys(
                    &p,
                    &["module", "slot", "token_label", "key_label", "pin_env"],
                );
                let module = self.req_string(&p, "module").map(|(s, _)| s);
                let key_label = self.req_string(&p, "key_label").map(|(s, _)| s);
                let pin_env = self.req_string(&p, "pin_env").map(|(s, _)| s);
                let slot = p
                    .get("slot")
                    .and_then(|v| self.integer(v, "keys.pkcs11.slot", 0..i64::MAX))
                    .map(|n| n as u64);
                let token_label = self.opt_string(&p, "token_label");
                RootKeyConfig::Pkcs11 {
                    module: module?,
                    slot,
                    token_label,
                    key_label: key_label?,
                    pin_env: pin_env?,
                }
            }
            other => {
                self.error(
                    &span,
                    "keys.root",
                    format!("unknown root-key provider {other:?}; valid: dev, shamir, pkcs11"),
                );
                return None;
            }
        };
        Some(KeySettings {
            root,
            rotate_every: rotate_every?,
        })
    }

    fn classes(&mut self, root: &Table<'_, '_>) -> Vec<ClassInfo> {
        let Some(t) = self.sub_table(root, "classes") else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for (name, span, v) in t.iter() {
            let path = t.key_path(name);
            let Some(class) = Class::parse(name) else {
                self.error(
                    &span,
                    &path,
                    "unknown class; valid classes are public, internal, confidential, restricted",
                );
                continue;
            };
            let Some(c) = self.table(v, path) else {
                continue;
            };
            self.check_keys(&c, &["description", "examples", "storage", "access", "pii"]);
            let pii = match c.get("pii") {
                None => None,
                Some(v) => match self.string(v, &c.key_path("pii")).as_deref() {
                    Some("flag") => Some(PiiAction::Flag),
                    Some("redact") => Some(PiiAction::Redact),
                    Some("reject") => Some(PiiAction::Reject),
                    Some(other) => {
                        self.error(
                            &v.span(),
                            &c.key_path("pii"),
                            format!(
                                "{other:?} is not an action; write \"flag\", \"redact\" or \"reject\""
                            ),
                        );
                        None
                    }
                    None => None,
                },
            };
            out.push(ClassInfo {
                class,
                description: self.opt_string(&c, "description"),
                examples: self.opt_string(&c, "examples"),
                storage: self.opt_string(&c, "storage"),
                access: self.opt_string(&c, "access"),
                pii,
            });
        }
        out.sort_by_key(|c| c.class);
        out
    }

    fn tiers(&mut self, root: &Table<'_, '_>) -> Vec<Tier> {
        let Some(v) = self.required(root, "tiers") else {
            return Vec::new();
        };
        let Some(t) = self.table(v, "tiers".into()) else {
            return Vec::new();
        };
        if t.entries.is_empty() {
            self.error(
                &t.span,
                "tiers",
                "define at least one tier, e.g. standard = { retention = \"12mo\" }",
            );
        }
        let mut out = Vec::new();
        for (name, span, v) in t.iter() {
            let path = t.key_path(name);
            let name = self.id(&span, &path, TierName::new(name));
            let Some(tier) = self.table(v, path.clone()) else {
                continue;
            };
            self.check_keys(&tier, &["retention", "at_least", "description"]);
            let retention = self
                .required(&tier, "retention")
                .and_then(|v| self.duration(v, &format!("{path}.retention")));
            let at_least = tier
                .get("at_least")
                .and_then(|v| self.boolean(v, &format!("{path}.at_least")))
                .unwrap_or(false);
            let description = self.opt_string(&tier, "description");
            if let (Some(name), Some(retention)) = (name, retention) {
                out.push(Tier {
                    name,
                    retention,
                    at_least,
                    description,
                });
            }
        }
        out
    }

    fn data_types(&mut self, root: &Table<'_, '_>) -> Vec<DataType> {
        let Some(v) = self.required(root, "data_types") else {
            return Vec::new();
        };
        let Some(t) = self.table(v, "data_types".into()) else {
            return Vec::new();
        };
        if t.entries.is_empty() {
            self.error(&t.span, "data_types", "define at least one data type");
        }
        let mut out = Vec::new();
        for (name, span, v) in t.iter() {
            let path = t.key_path(name);
            let name = self.id(&span, &path, DataTypeName::new(name));
            let Some(dt) = self.table(v, path.clone()) else {
                continue;
            };
            if let Some(d) = name.and_then(|name| self.data_type(name, &dt)) {
                out.push(d);
            }
        }
        out
    }

    fn data_type(&mut self, name: DataTypeName, t: &Table<'_, '_>) -> Option<DataType> {
        self.check_keys(
            t,
            &[
                "class",
                "retention",
                "delete",
                "cancel_window",
                "fields",
                "description",
                "notes",
            ],
        );
        let class = self.req_string(t, "class").and_then(|(s, span)| {
            let c = Class::parse(&s);
            if c.is_none() {
                self.error(
                    &span,
                    &t.key_path("class"),
                    format!(
                        "unknown class {s:?}; valid classes are public, internal, confidential, restricted"
                    ),
                );
            }
            c
        });
        let retention = self
            .required(t, "retention")
            .and_then(|v| self.retention_rule(v, &t.key_path("retention")));
        let delete = match t.get("delete") {
            None => Some(DeleteMethod::CryptoShred),
            Some(v) => {
                let path = t.key_path("delete");
                match self.string(v, &path).as_deref() {
                    Some("crypto-shred") => Some(DeleteMethod::CryptoShred),
                    Some("anonymize") => Some(DeleteMethod::Anonymize),
                    Some(other) => {
                        self.error(
                            &v.span(),
                            &path,
                            format!(
                                "unknown deletion method {other:?}; valid: crypto-shred, anonymize"
                            ),
                        );
                        None
                    }
                    None => None,
                }
            }
        };
        let cancel_window = match t.get("cancel_window") {
            None => Some(None),
            Some(v) => self.duration_or_zero(v, &t.key_path("cancel_window")),
        };
        let fields = match self.sub_table(t, "fields") {
            Some(f) => self.field_rules(&f, delete),
            None => Vec::new(),
        };
        let description = self.opt_string(t, "description");
        let notes = self.opt_string(t, "notes");
        Some(DataType {
            name,
            class: class?,
            retention: retention?,
            delete: delete?,
            cancel_window: cancel_window?,
            fields,
            description,
            notes,
        })
    }

    fn retention_rule(&mut self, v: &Value<'_>, path: &str) -> Option<RetentionRule> {
        const FORMS: &str = "a duration (\"7y\"), \"tier\", \"until_deleted\", \
             { min = \"…\", max = \"…\" } or { after_event = \"…\", keep = \"…\" }";
        match v.get_ref() {
            DeValue::String(s) => match s.as_ref() {
                "until_deleted" => Some(RetentionRule::UntilDeleted),
                "tier" => Some(RetentionRule::Tier {
                    min: None,
                    max: None,
                }),
                _ => self.duration(v, path).map(RetentionRule::Fixed),
            },
            DeValue::Table(_) => {
                let t = self.table(v, path.to_owned())?;
                self.check_keys(&t, &["min", "max", "after_event", "keep"]);
                if t.get("after_event").is_some() || t.get("keep").is_some() {
                    if t.get("min").is_some() || t.get("max").is_some() {
                        self.error(
                            &t.span,
                            path,
                            "min/max cannot be combined with after_event/keep",
                        );
                        return None;
                    }
                    let event = self.req_string(&t, "after_event").and_then(|(e, span)| {
                        self.id(&span, &t.key_path("after_event"), DataTypeName::new(e))
                    });
                    let keep = self
                        .required(&t, "keep")
                        .and_then(|k| self.duration(k, &t.key_path("keep")));
                    return Some(RetentionRule::AfterEvent {
                        event: event?.as_str().to_owned(),
                        keep: keep?,
                    });
                }
                let min = t
                    .get("min")
                    .map(|m| (self.duration(m, &t.key_path("min")), m));
                let max = t
                    .get("max")
                    .map(|m| (self.duration(m, &t.key_path("max")), m));
                if let (Some((Some(lo), _)), Some((Some(hi), hv))) = (&min, &max)
                    && lo.partial_cmp_for_all_starts(hi) == Some(std::cmp::Ordering::Greater)
                {
                    self.error(
                        &hv.span(),
                        &t.key_path("max"),
                        format!("max {hi} is shorter than min {lo}"),
                    );
                    return None;
                }
                Some(RetentionRule::Tier {
                    min: match min {
                        Some((d, _)) => Some(d?),
                        None => None,
                    },
                    max: match max {
                        Some((d, _)) => Some(d?),
                        None => None,
                    },
                })
            }
            other => {
                self.error(
                    &v.span(),
                    path,
                    format!("expected {FORMS}, found {}", describe(other)),
                );
                None
            }
        }
    }

    /// The `fields` table: keys naming a field (`card_number`, `"contact.email"`) transform
    /// its whole value; keys naming a field and an entity (`"note[CREDIT_CARD]"`, `"*[IP_ADDRESS]"`
    /// for every free-text field) transform the values of that entity the scanner finds in it.
    fn field_rules(&mut self, t: &Table<'_, '_>, delete: Option<DeleteMethod>) -> Vec<FieldRule> {
        let valid = Transform::NAMES.join(", ");
        let mut out: Vec<FieldRule> = Vec::new();
        // Whole-field rules, to refuse entity rules on a field that is transformed whole.
        let whole: Vec<&str> = t
            .iter()
            .map(|(k, _, _)| k)
            .filter(|k| !k.contains('['))
            .collect();
        for (field, key_span, v) in t.iter() {
            let path = t.key_path(field);
            let (name, keep_last, span) = match v.get_ref() {
                DeValue::String(s) => (s.to_string(), None, v.span()),
                DeValue::Table(_) => {
                    let Some(rule) = self.table(v, path.clone()) else {
                        continue;
                    };
                    self.check_keys(&rule, &["transform", "keep_last"]);
                    let Some((name, span)) = self.req_string(&rule, "transform") else {
                        continue;
                    };
                    let keep_last = rule
                        .get("keep_last")
                        .and_then(|k| self.integer(k, &rule.key_path("keep_last"), 0..33))
                        .map(|n| n as u8);
                    if keep_last.is_some() && name != "mask" {
                        self.error(&span, &path, "keep_last only applies to transform \"mask\"");
                        continue;
                    }
                    (name, keep_last, span)
                }
                other => {
                    self.error(
                        &v.span(),
                        &path,
                        format!(
                            "expected a transform name or {{ transform = …, keep_last = … }}, found {}",
                            describe(other)
                        ),
                    );
                    continue;
                }
            };
            let Some(transform) = Transform::from_name(&name, keep_last) else {
                self.error(
                    &span,
                    &path,
                    format!("unknown transform {name:?}; valid: {valid}"),
                );
                continue;
            };
            let field = if field.contains(['[', ']']) {
                match self.entity_key(field, &key_span, &path, transform, &span, &whole, delete) {
                    Some(key) => key,
                    None => continue,
                }
            } else {
                field.to_owned()
            };
            if out.iter().any(|r| r.field == field) {
                self.error(&key_span, &path, format!("{field} has a rule already"));
                continue;
            }
            out.push(FieldRule { field, transform });
        }
        out
    }

    /// Checks an entity rule's key (`note[CREDIT_CARD]`, `*[email_address]`) and its transform;
    /// the key as stored, with the entity's name in upper case.
    #[allow(clippy::too_many_arguments)]
    fn entity_key(
        &mut self,
        key: &str,
        key_span: &Range<usize>,
        path: &str,
        transform: Transform,
        transform_span: &Range<usize>,
        whole: &[&str],
        delete: Option<DeleteMethod>,
    ) -> Option<String> {
        let form = "write field[ENTITY], e.g. \"note[CREDIT_CARD]\", or \"*[EMAIL_ADDRESS]\" for every free-text field";
        let Some((field, entity)) = super::split_entity_key(key) else {
            self.error(
                key_span,
                path,
                format!("{key:?} is not a field rule key; {form}"),
            );
            return None;
        };
        let field_ok = field == "*"
            || (!field.is_empty()
                && !field.contains(['[', ']', '*'])
                && field.split('.').all(|part| !part.is_empty()));
        if !field_ok {
            self.error(
                key_span,
                path,
                format!("{field:?} is not a field path or *; {form}"),
            );
            return None;
        }
        let Some(entity) = super::ENTITY_NAMES
            .iter()
            .find(|e| e.eq_ignore_ascii_case(entity))
        else {
            self.error(
                key_span,
                path,
                format!(
                    "unknown entity {entity:?}; valid: {}",
                    super::ENTITY_NAMES.join(", ")
                ),
            );
            return None;
        };
        if let Some(why) = transform.refuses_entity(entity) {
            self.error(
                transform_span,
                path,
                format!("{transform} cannot apply to {entity}: {why}"),
            );
            return None;
        }
        if whole.contains(&field) {
            self.error(
                key_span,
                path,
                format!(
                    "field {field} has a rule for its whole value, so no free text is left in it to search for {entity}"
                ),
            );
            return None;
        }
        // Anonymisation finds tokens and pseudonyms in free text by their prefix; enciphered
        // digits look like any other number and would stay reversible in an anonymised record.
        if transform == Transform::Fpe && delete == Some(DeleteMethod::Anonymize) {
            self.error(
                transform_span,
                path,
                "fpe inside free text cannot be found again when a record of this type is anonymised (delete = \"anonymize\"), so it would stay reversible; use tokenize, pseudonymize, mask or redact",
            );
            return None;
        }
        Some(format!("{field}[{entity}]"))
    }

    fn access(&mut self, root: &Table<'_, '_>) -> Option<AccessSettings> {
        let mut settings = AccessSettings {
            mfa_required: Vec::new(),
            reason_required: Vec::new(),
            jit_max: "24h".parse().expect("valid literal"),
            restricted_approvers: 2,
            oidc: Vec::new(),
        };
        let Some(t) = self.sub_table(root, "access") else {
            return Some(settings);
        };
        self.check_keys(
            &t,
            &[
                "mfa_required",
                "reason_required",
                "jit_max",
                "restricted_approvers",
                "oidc",
            ],
        );
        let mut ok = true;
        if let Some(oidc) = self.sub_table(&t, "oidc") {
            match self.oidc_issuers(&oidc) {
                Some(issuers) => settings.oidc = issuers,
                None => ok = false,
            }
        }
        for (key, roles) in [
            ("mfa_required", &mut settings.mfa_required),
            ("reason_required", &mut settings.reason_required),
        ] {
            if let Some(v) = t.get(key) {
                ok &= self.roles(v, &format!("access.{key}"), roles);
            }
        }
        if let Some(v) = t.get("jit_max") {
            match self.duration(v, "access.jit_max") {
                Some(d) if matches!(d.unit(), Unit::Months | Unit::Years) => {
                    ok = false;
                    self.error(
                        &v.span(),
                        "access.jit_max",
                        format!("{d} is far too long for just-in-time access; use hours or days (at most 7d)"),
                    );
                }
                Some(d)
                    if d.partial_cmp_for_all_starts(&"7d".parse().expect("valid literal"))
                        == Some(std::cmp::Ordering::Greater) =>
                {
                    ok = false;
                    self.error(
                        &v.span(),
                        "access.jit_max",
                        format!("{d} is longer than the 7d a just-in-time grant may last"),
                    );
                }
                Some(d) => settings.jit_max = d,
                None => ok = false,
            }
        }
        if let Some(v) = t.get("restricted_approvers") {
            match self.integer(v, "access.restricted_approvers", 1..6) {
                Some(n) => settings.restricted_approvers = n as u8,
                None => ok = false,
            }
        }
        ok.then_some(settings)
    }

    /// A list of role names into `out`; `false` when any is unknown.
    fn roles(&mut self, v: &Value<'_>, path: &str, out: &mut Vec<Role>) -> bool {
        let mut ok = true;
        for (name, span) in self.string_array(v, path).unwrap_or_default() {
            match Role::parse(&name) {
                Some(r) if !out.contains(&r) => out.push(r),
                Some(_) => {}
                None => {
                    ok = false;
                    self.error(
                        &span,
                        path,
                        format!(
                            "unknown role {name:?}; valid roles: {}",
                            Role::valid_names()
                        ),
                    );
                }
            }
        }
        ok
    }

    /// `[access.oidc.<name>]` tables, each checked in full; `None` when any is invalid.
    fn oidc_issuers(&mut self, t: &Table<'_, '_>) -> Option<Vec<OidcIssuer>> {
        let mut out: Vec<OidcIssuer> = Vec::new();
        let mut seen: Vec<(String, String)> = Vec::new();
        let mut ok = true;
        for (name, span, v) in t.iter() {
            let path = t.key_path(name);
            let Some(table) = self.table(v, path.clone()) else {
                ok = false;
                continue;
            };
            // The name becomes part of principal ids (`oidc:<name>:<sub>`), which are split
            // on `:` when read: keep it to a plain identifier.
            let plain = !name.is_empty()
                && name.len() <= 64
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            if !plain {
                ok = false;
                self.error(
                    &span,
                    &path,
                    format!("{name:?} is not a valid provider name; use letters, digits, - or _ (at most 64)"),
                );
            }
            // Checked on the text as written, so a twin is reported even when either table
            // has other errors.
            if let Some(v) = table.get("issuer")
                && let DeValue::String(url) = v.get_ref()
            {
                if let Some((other, _)) = seen.iter().find(|(_, u)| u == url.as_ref()) {
                    ok = false;
                    self.error(
                        &v.span(),
                        &table.key_path("issuer"),
                        format!(
                            "issuer {url:?} is already configured as [access.oidc.{other}]; a token is matched to its provider by `iss`, so each issuer appears once"
                        ),
                    );
                } else {
                    seen.push((name.to_owned(), url.to_string()));
                }
            }
            match self.oidc_issuer(name, &table) {
                Some(issuer) => out.push(issuer),
                None => ok = false,
            }
        }
        ok.then_some(out)
    }

    fn oidc_issuer(&mut self, name: &str, t: &Table<'_, '_>) -> Option<OidcIssuer> {
        self.check_keys(
            t,
            &[
                "issuer",
                "audience",
                "algorithms",
                "leeway",
                "tenant_claim",
                "roles_claim",
                "mfa_amr",
                "mfa_acr",
            ],
        );
        let issuer = match self.req_string(t, "issuer") {
            Some((url, span)) => match check_issuer_url(&url) {
                Ok(()) => Some(url),
                Err(why) => {
                    self.error(&span, &t.key_path("issuer"), format!("{url:?} {why}"));
                    None
                }
            },
            None => None,
        };
        let audience = match self.req_string(t, "audience") {
            Some((aud, span)) if aud.trim().is_empty() => {
                self.error(&span, &t.key_path("audience"), "must not be empty");
                None
            }
            other => other.map(|(aud, _)| aud),
        };
        let algorithms = match t.get("algorithms") {
            None => Some(OidcIssuer::DEFAULT_ALGORITHMS.to_vec()),
            Some(v) => self.jws_algorithms(v, &t.key_path("algorithms")),
        };
        let leeway_secs = match t.get("leeway") {
            None => Some(OidcIssuer::DEFAULT_LEEWAY_SECS),
            Some(v) => self.leeway(v, &t.key_path("leeway")),
        };
        let claim = |cx: &mut Self, key: &str, default: &str| match t.get(key) {
            None => Some(default.to_owned()),
            Some(v) => {
                let path = t.key_path(key);
                let s = cx.string(v, &path)?;
                if s.is_empty() {
                    cx.error(&v.span(), &path, "must name a claim; it is empty");
                    return None;
                }
                Some(s)
            }
        };
        let tenant_claim = claim(self, "tenant_claim", OidcIssuer::DEFAULT_TENANT_CLAIM);
        let roles_claim = claim(self, "roles_claim", OidcIssuer::DEFAULT_ROLES_CLAIM);
        let values = |cx: &mut Self, key: &str, default: &[&str]| match t.get(key) {
            None => Some(default.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>()),
            Some(v) => {
                let path = t.key_path(key);
                let items = cx.string_array(v, &path)?;
                let mut out = Vec::new();
                for (i, (s, span)) in items.into_iter().enumerate() {
                    if s.is_empty() {
                        cx.error(&span, &format!("{path}[{i}]"), "must not be empty");
                        return None;
                    }
                    out.push(s);
                }
                Some(out)
            }
        };
        let mfa_amr = values(self, "mfa_amr", &OidcIssuer::DEFAULT_MFA_AMR);
        let mfa_acr = values(self, "mfa_acr", &[]);
        if let (Some(amr), Some(acr)) = (&mfa_amr, &mfa_acr)
            && amr.is_empty()
            && acr.is_empty()
        {
            let span = t.get("mfa_amr").map_or(t.span.clone(), |v| v.span());
            self.warn(
                &span,
                &t.key_path("mfa_amr"),
                "no amr or acr value shows MFA: this provider's callers never get the roles in access.mfa_required",
            );
        }
        // Every field was checked above, so one table reports all its errors at once.
        let (
            Some(issuer),
            Some(audience),
            Some(algorithms),
            Some(leeway_secs),
            Some(tenant_claim),
            Some(roles_claim),
            Some(mfa_amr),
            Some(mfa_acr),
        ) = (
            issuer,
            audience,
            algorithms,
            leeway_secs,
            tenant_claim,
            roles_claim,
            mfa_amr,
            mfa_acr,
        )
        else {
            return None;
        };
        Some(OidcIssuer {
            name: name.to_owned(),
            issuer,
            audience,
            algorithms,
            leeway_secs,
            tenant_claim,
            roles_claim,
            mfa_amr,
            mfa_acr,
        })
    }

    fn jws_algorithms(&mut self, v: &Value<'_>, path: &str) -> Option<Vec<JwsAlgorithm>> {
        let items = self.string_array(v, path)?;
        if items.is_empty() {
            self.error(
                &v.span(),
                path,
                format!(
                    "allows no algorithm, so no token could verify; list some of: {}",
                    JwsAlgorithm::valid_names()
                ),
            );
            return None;
        }
        let mut out = Vec::new();
        let mut ok = true;
        for (i, (name, span)) in items.into_iter().enumerate() {
            let item = format!("{path}[{i}]");
            if let Some(alg) = JwsAlgorithm::parse(&name) {
                if !out.contains(&alg) {
                    out.push(alg);
                }
                continue;
            }
            ok = false;
            let why = if name.eq_ignore_ascii_case("none") {
                "\"none\" means an unsigned token that anyone can forge; it is never accepted"
                    .to_owned()
            } else if name.to_ascii_uppercase().starts_with("HS") {
                format!(
                    "{name:?} is an HMAC algorithm: its key is a secret shared with the provider, and a verifier that accepts it can be fooled by a token keyed with the provider's public key; allow only public-key algorithms ({})",
                    JwsAlgorithm::valid_names()
                )
            } else {
                format!(
                    "unknown algorithm {name:?}; valid (case-sensitive): {}",
                    JwsAlgorithm::valid_names()
                )
            };
            self.error(&span, &item, why);
        }
        ok.then_some(out)
    }

    /// A leeway: whole seconds or minutes (`30s`, `2m`, `0s`), at most five minutes.
    fn leeway(&mut self, v: &Value<'_>, path: &str) -> Option<u64> {
        let s = self.string(v, path)?;
        let max = OidcIssuer::MAX_LEEWAY_SECS;
        match parse_seconds(&s) {
            Some(secs) if secs <= max => Some(secs),
            Some(_) => {
                self.error(
                    &v.span(),
                    path,
                    format!(
                        "{s:?} is more clock skew than the {}m a token's times may be stretched by",
                        max / 60
                    ),
                );
                None
            }
            None => {
                self.error(
                    &v.span(),
                    path,
                    format!(
                        "{s:?} is not a valid leeway; write whole seconds or minutes, e.g. \"30s\", \"2m\" or \"0s\""
                    ),
                );
                None
            }
        }
    }

    fn subject_rights(&mut self, root: &Table<'_, '_>) -> Option<SubjectRights> {
        let mut rights = SubjectRights::default();
        let Some(t) = self.sub_table(root, "subject_rights") else {
            return Some(rights);
        };
        self.check_keys(&t, &["answer_within", "erasure_under_hold"]);
        let mut ok = true;
        if let Some(v) = t.get("answer_within") {
            match self.duration(v, "subject_rights.answer_within") {
                Some(d) => rights.answer_within = d,
                None => ok = false,
            }
        }
        if let Some(v) = t.get("erasure_under_hold") {
            match self
                .string(v, "subject_rights.erasure_under_hold")
                .as_deref()
            {
                Some("refuse") => rights.erase_rest_under_hold = false,
                Some("erase_rest") => rights.erase_rest_under_hold = true,
                Some(other) => {
                    ok = false;
                    self.error(
                        &v.span(),
                        "subject_rights.erasure_under_hold",
                        format!("{other:?} is not a choice; write \"refuse\" or \"erase_rest\""),
                    );
                }
                None => ok = false,
            }
        }
        ok.then_some(rights)
    }

    fn telemetry(&mut self, root: &Table<'_, '_>) -> Telemetry {
        let Some(t) = self.sub_table(root, "telemetry") else {
            return Telemetry::default();
        };
        self.check_keys(&t, &["allow"]);
        let mut allow = Vec::new();
        if let Some(v) = t.get("allow") {
            for (s, span) in self.string_array(v, "telemetry.allow").unwrap_or_default() {
                match parse_metric_allow(&s) {
                    Some(m) => allow.push(m),
                    None => self.error(
                        &span,
                        "telemetry.allow",
                        format!(
                            "{s:?} is not a metric selector; write name{{label,label}}, e.g. http_requests_total{{route,status}}"
                        ),
                    ),
                }
            }
        }
        Telemetry { allow }
    }

    fn tenants(
        &mut self,
        root: &Table<'_, '_>,
        tiers: &[Tier],
        data_types: &[DataType],
        region: Option<&Region>,
    ) -> Vec<TenantPolicy> {
        let Some(t) = self.sub_table(root, "tenants") else {
            self.warn(
                &(0..0),
                "tenants",
                "no tenants are defined: every tenant request will answer 404",
            );
            return Vec::new();
        };
        let mut out = Vec::new();
        for (id, span, v) in t.iter() {
            let path = t.key_path(id);
            let id = self.id(&span, &path, TenantId::new(id));
            let Some(tt) = self.table(v, path.clone()) else {
                continue;
            };
            self.check_keys(
                &tt,
                &["name", "tier", "home_region", "base_retention", "retention"],
            );
            let name = self.opt_string(&tt, "name");
            let tier = self.req_string(&tt, "tier").and_then(|(s, span)| {
                let found = tiers.iter().find(|t| t.name.as_str() == s);
                // A declared but invalid tier was already reported where it is declared.
                let declared = declared_keys(root, "tiers");
                if found.is_none() && !declared.contains(&s.as_str()) {
                    self.error(
                        &span,
                        &tt.key_path("tier"),
                        format!("unknown tier {s:?}; defined tiers: {}", declared.join(", ")),
                    );
                }
                found
            });
            let home_region = self.req_string(&tt, "home_region").and_then(|(s, span)| {
                let r = self.id(&span, &tt.key_path("home_region"), Region::new(s))?;
                if let Some(deployed) = region
                    && *deployed != r
                {
                    self.warn(
                        &span,
                        &tt.key_path("home_region"),
                        format!(
                            "home region {r} differs from this deployment's region {deployed}: this node will refuse the tenant's confidential data"
                        ),
                    );
                }
                Some(r)
            });
            let base_retention = tt.get("base_retention").and_then(|v| {
                let p = tt.key_path("base_retention");
                let d = self.duration(v, &p)?;
                let tier = tier?;
                if !tier.at_least {
                    self.error(
                        &v.span(),
                        &p,
                        format!(
                            "tier {} has a fixed retention; base_retention needs a tier with at_least = true",
                            tier.name
                        ),
                    );
                    return None;
                }
                if d.partial_cmp_for_all_starts(&tier.retention) == Some(std::cmp::Ordering::Less)
                {
                    self.error(
                        &v.span(),
                        &p,
                        format!(
                            "{d} is shorter than tier {}'s minimum of {}",
                            tier.name, tier.retention
                        ),
                    );
                    return None;
                }
                Some(d)
            });
            let overrides = match self.sub_table(&tt, "retention") {
                Some(r) => self.overrides(root, &r, data_types),
                None => Vec::new(),
            };
            if let (Some(id), Some(tier), Some(home_region)) = (id, tier, home_region) {
                out.push(TenantPolicy {
                    id,
                    name,
                    tier: tier.name.clone(),
                    home_region,
                    base_retention,
                    overrides,
                });
            }
        }
        out
    }

    fn overrides(
        &mut self,
        root: &Table<'_, '_>,
        t: &Table<'_, '_>,
        data_types: &[DataType],
    ) -> Vec<(DataTypeName, CalDuration)> {
        let mut out = Vec::new();
        for (name, span, v) in t.iter() {
            let path = t.key_path(name);
            let Some(dt) = data_types.iter().find(|d| d.name.as_str() == name) else {
                if !declared_keys(root, "data_types").contains(&name) {
                    self.error(&span, &path, "unknown data type");
                }
                continue;
            };
            let Some(d) = self.duration(v, &path) else {
                continue;
            };
            let RetentionRule::Tier { min, max } = &dt.retention else {
                self.error(
                    &v.span(),
                    &path,
                    format!(
                        "the retention of {} is fixed by the policy; only tier-based types accept a tenant override",
                        dt.name
                    ),
                );
                continue;
            };
            let outside = |bound: &Option<CalDuration>, side| {
                bound.is_some_and(|b| d.partial_cmp_for_all_starts(&b) == Some(side))
            };
            let below = outside(min, std::cmp::Ordering::Less);
            let above = outside(max, std::cmp::Ordering::Greater);
            if below || above {
                let range = format!(
                    "[{}, {}]",
                    min.map_or("-".into(), |m| m.to_string()),
                    max.map_or("-".into(), |m| m.to_string())
                );
                self.error(
                    &v.span(),
                    &path,
                    format!(
                        "{d} is outside the range {range} that data type {} allows",
                        dt.name
                    ),
                );
                continue;
            }
            out.push((dt.name.clone(), d));
        }
        out
    }
}

/// Why an issuer URL is refused, if it is: tokens and keys must come over TLS, except from a
/// provider on this machine (development and tests).
fn check_issuer_url(url: &str) -> Result<(), &'static str> {
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("is not a URL: it contains spaces or control characters");
    }
    if url.contains(['?', '#']) {
        return Err("must not have a query or fragment (OpenID Connect Discovery §3)");
    }
    let (rest, tls) = if let Some(rest) = url.strip_prefix("https://") {
        (rest, true)
    } else if let Some(rest) = url.strip_prefix("http://") {
        (rest, false)
    } else {
        return Err("is not an https:// URL");
    };
    let authority = rest.split('/').next().unwrap_or_default();
    if authority.contains('@') {
        return Err("must not carry credentials");
    }
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => authority.split(':').next().unwrap_or_default(),
    };
    if host.is_empty() {
        return Err("has no host");
    }
    if !tls && !matches!(host, "127.0.0.1" | "localhost" | "::1") {
        return Err(
            "must use https://; plain http:// is allowed only for a provider on this machine (127.0.0.1, localhost or [::1])",
        );
    }
    Ok(())
}

/// `30s`, `2m`, `0s`, `0` as seconds.
fn parse_seconds(s: &str) -> Option<u64> {
    if s == "0" {
        return Some(0);
    }
    let (digits, scale) = if let Some(d) = s.strip_suffix('s') {
        (d, 1)
    } else if let Some(d) = s.strip_suffix('m') {
        (d, 60)
    } else {
        return None;
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse::<u64>().ok()?.checked_mul(scale)
}

/// Names declared under a top-level section, valid or not.
fn declared_keys<'a>(root: &Table<'a, '_>, section: &str) -> Vec<&'a str> {
    match root.get(section).map(|v| v.get_ref()) {
        Some(DeValue::Table(t)) => t.iter().map(|(k, _)| k.get_ref().as_ref()).collect(),
        _ => Vec::new(),
    }
}

/// Parses `name{label,label}` or a bare `name`.
fn parse_metric_allow(s: &str) -> Option<MetricAllow> {
    let is_name = |n: &str| {
        let mut chars = n.chars();
        chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
    };
    let (name, labels) = match s.split_once('{') {
        None => (s, Vec::new()),
        Some((name, rest)) => {
            let inner = rest.strip_suffix('}')?;
            let labels: Vec<String> = if inner.trim().is_empty() {
                Vec::new()
            } else {
                inner.split(',').map(|l| l.trim().to_owned()).collect()
            };
            if labels.iter().any(|l| !is_name(l) || l.contains(':')) {
                return None;
            }
            (name, labels)
        }
    };
    is_name(name).then(|| MetricAllow {
        name: name.to_owned(),
        labels,
    })
}
