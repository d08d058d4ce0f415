use super::*;
use crate::retention::{Clamp, Expiry};

const VALID: &str = r#"
[policy]
name = "Acme data handling"

[deployment]
region = "au-east"

[keys]
root = "shamir"
rotate_every = "90d"
shamir = { shares = 5, threshold = 3 }

[classes.restricted]
examples = "PAN, CVV (not stored)"
storage = "Vault, KMS-encrypted"
access = "Two-person rule, logged"

[tiers]
base = { retention = "180d" }
standard = { retention = "12mo" }
custom = { retention = "36mo", at_least = true }

[data_types.auth_log]
class = "confidential"
retention = { min = "24mo", max = "36mo" }
delete = "crypto-shred"

[data_types.app_log]
class = "internal"
retention = { min = "90d", max = "180d" }

[data_types.incident_artifact]
class = "confidential"
retention = { after_event = "ticket_closed", keep = "90d" }

[data_types.workload]
class = "confidential"
retention = "until_deleted"

[data_types.billing]
class = "confidential"
retention = "7y"

[data_types.backup_copy]
class = "confidential"
retention = { min = "1d", max = "365d" }

[data_types.payment]
class = "restricted"
fields.card_number = "tokenize"
fields.email = "pseudonymize"
fields.phone = { transform = "mask", keep_last = 2 }
retention = "tier"

[access]
mfa_required = ["admin", "security-officer", "support"]
reason_required = ["support", "operator"]
jit_max = "24h"
restricted_approvers = 2

[telemetry]
allow = ["http_requests_total{route,status}", "billing_total{tenant}", "up"]

[tenants.acme]
tier = "standard"
home_region = "au-east"
retention = { backup_copy = "30d" }

[tenants.health]
tier = "custom"
home_region = "au-east"
base_retention = "60mo"
"#;

fn parse(text: &str) -> Result<Policy, Diagnostics> {
    Policy::parse("policy.toml", text)
}

fn errors(text: &str) -> Vec<Diagnostic> {
    parse(text).expect_err("policy should be invalid").0
}

fn ts(s: &str) -> jiff::Timestamp {
    s.parse().unwrap()
}

#[test]
fn a_complete_policy_parses() {
    let p = parse(VALID).unwrap();
    assert_eq!(p.meta.name.as_deref(), Some("Acme data handling"));
    assert_eq!(p.deployment.region.as_str(), "au-east");
    assert_eq!(
        p.keys.root,
        RootKeyConfig::Shamir {
            shares: 5,
            threshold: 3
        }
    );
    assert_eq!(p.tiers.len(), 3);
    assert_eq!(p.data_types.len(), 7);
    assert_eq!(
        p.data_type("payment").unwrap().fields,
        vec![
            FieldRule {
                field: "card_number".into(),
                transform: Transform::Tokenize
            },
            FieldRule {
                field: "email".into(),
                transform: Transform::Pseudonymize
            },
            FieldRule {
                field: "phone".into(),
                transform: Transform::Mask { keep_last: 2 }
            },
        ]
    );
    assert_eq!(p.access.mfa_required.len(), 3);
    assert_eq!(
        p.access.reason_required,
        vec![Role::Support, Role::Operator]
    );
    assert_eq!(p.telemetry.allow[0].labels, vec!["route", "status"]);
    assert_eq!(p.telemetry.allow[2].labels, Vec::<String>::new());
    assert!(p.warnings.is_empty(), "{:?}", p.warnings);
}

#[test]
fn effective_retention_follows_tier_type_and_overrides() {
    let p = parse(VALID).unwrap();
    let acme = p.tenant(&TenantId::new("acme").unwrap()).unwrap();
    let health = p.tenant(&TenantId::new("health").unwrap()).unwrap();
    let eff = |t, d: &str| p.effective_retention(t, p.data_type(d).unwrap());

    assert_eq!(
        eff(acme, "auth_log").static_duration(),
        Some(("24mo".parse().unwrap(), Clamp::RaisedToMin))
    );
    assert_eq!(
        eff(acme, "app_log").static_duration(),
        Some(("180d".parse().unwrap(), Clamp::LoweredToMax))
    );
    assert_eq!(
        eff(acme, "backup_copy").to_string(),
        "30d (tenant override)"
    );
    assert_eq!(eff(acme, "billing").to_string(), "7y (fixed)");
    assert_eq!(eff(acme, "workload").to_string(), "until deleted");
    assert_eq!(
        eff(acme, "incident_artifact").to_string(),
        "90d after ticket_closed"
    );
    assert_eq!(eff(acme, "payment").to_string(), "12mo (tier standard)");
    // A custom-tier tenant's own base retention (60 months) is capped by the type's max.
    assert_eq!(
        eff(health, "auth_log").static_duration(),
        Some(("36mo".parse().unwrap(), Clamp::LoweredToMax))
    );
    assert_eq!(eff(health, "payment").to_string(), "60mo (tier custom)");
    assert_eq!(
        eff(acme, "auth_log").expiry(ts("2024-02-29T12:00:00Z")),
        Expiry::At(ts("2026-02-28T12:00:00Z"))
    );
    assert_eq!(p.retention_table().len(), 14);
}

#[test]
fn every_error_is_reported_with_line_and_key() {
    let text = r#"
[deployment]
region = "au-east"
colour = "blue"

[keys]
root = "dev"
rotate_every = "90 days"

[tiers]
standard = { retention = "12m" }

[data_types.auth_log]
class = "secret"
retention = { min = "36mo", max = "24mo" }

[data_types.notes]
class = "internal"
retention = "forever"
fields.body = "encrypt"

[tenants.Acme]
tier = "gold"
home_region = "au-east"
"#;
    let errs = errors(text);
    let lines: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
    let expect = [
        "policy.toml:4:1: error: deployment.colour: unknown key; valid keys here are: region",
        "policy.toml:8:16: error: keys.rotate_every: \"90 days\" is not a valid duration",
        "policy.toml:11:26: error: tiers.standard.retention: \"12m\" is not a valid duration ('m' is ambiguous; write 'mo' for months)",
        "policy.toml:14:9: error: data_types.auth_log.class: unknown class \"secret\"",
        "policy.toml:15:35: error: data_types.auth_log.retention.max: max 24mo is shorter than min 36mo",
        "policy.toml:19:13: error: data_types.notes.retention: \"forever\" is not a valid duration",
        "policy.toml:20:15: error: data_types.notes.fields.body: unknown transform \"encrypt\"",
        "policy.toml:22:10: error: tenants.Acme: invalid tenant id \"Acme\"",
        "policy.toml:23:8: error: tenants.Acme.tier: unknown tier \"gold\"; defined tiers: standard",
    ];
    for e in expect {
        assert!(
            lines.iter().any(|l| l.starts_with(e)),
            "missing {e:?} in\n{}",
            lines.join("\n")
        );
    }
    assert_eq!(lines.len(), expect.len(), "{}", lines.join("\n"));
}

#[test]
fn missing_sections_are_named() {
    let errs = errors("[policy]\nname = \"x\"\n");
    let msgs: Vec<&str> = errs.iter().map(|e| e.message.as_str()).collect();
    for section in ["deployment", "keys", "tiers", "data_types"] {
        assert!(
            msgs.contains(&format!("missing required section [{section}]").as_str()),
            "{msgs:?}"
        );
    }
}

#[test]
fn syntax_errors_point_at_the_line() {
    let errs = errors("[deployment]\nregion = \"au-east\n");
    assert_eq!(errs.len(), 1);
    assert_eq!(errs[0].line, 2);
    assert!(errs[0].message.starts_with("not valid TOML"));
}

#[test]
fn wrong_value_types_say_what_was_found() {
    let text = VALID.replace("rotate_every = \"90d\"", "rotate_every = 90");
    let errs = errors(&text);
    assert_eq!(errs.len(), 1);
    assert_eq!(errs[0].key, "keys.rotate_every");
    assert_eq!(errs[0].message, "expected a string, found an integer");
}

#[test]
fn key_provider_settings_are_checked() {
    let no_table = VALID.replace("shamir = { shares = 5, threshold = 3 }\n", "");
    assert!(
        errors(&no_table)[0]
            .message
            .contains("needs a [keys.shamir] table")
    );

    let bad_threshold = VALID.replace("threshold = 3", "threshold = 7");
    assert_eq!(
        errors(&bad_threshold)[0].message,
        "threshold 7 is more than the 5 shares"
    );

    let unknown = VALID.replace("root = \"shamir\"", "root = \"vault\"");
    assert!(
        errors(&unknown)[0]
            .message
            .contains("unknown root-key provider \"vault\"")
    );

    let pkcs11 = VALID.replace(
        "root = \"shamir\"",
        "root = \"pkcs11\"\npkcs11 = { module = \"/usr/lib/softhsm/libsofthsm2.so\", key_label = \"root\", pin_env = \"HSM_PIN\", slot = 0 }",
    );
    let p = parse(&pkcs11).unwrap();
    assert_eq!(p.keys.root.name(), "pkcs11");
    assert_eq!(p.warnings.len(), 1, "the unused shamir table is flagged");
}

#[test]
fn access_settings_are_bounded() {
    let long = VALID.replace("jit_max = \"24h\"", "jit_max = \"3mo\"");
    assert!(errors(&long)[0].message.contains("far too long"));
    let week = VALID.replace("jit_max = \"24h\"", "jit_max = \"8d\"");
    assert!(errors(&week)[0].message.contains("longer than the 7d"));
    let role = VALID.replace("\"support\"]", "\"tenant-admin\"]");
    assert!(
        errors(&role)[0]
            .message
            .starts_with("unknown role \"tenant-admin\"")
    );
    let reason = VALID.replace(
        "reason_required = [\"support\", \"operator\"]",
        "reason_required = [\"helpdesk\"]",
    );
    let e = &errors(&reason)[0];
    assert_eq!(e.key, "access.reason_required");
    assert!(e.message.starts_with("unknown role \"helpdesk\""));
    let approvers = VALID.replace("restricted_approvers = 2", "restricted_approvers = 0");
    assert_eq!(
        errors(&approvers)[0].message,
        "must be an integer from 1 to 5"
    );
}

#[test]
fn tenant_retention_choices_are_checked() {
    let outside = VALID.replace("backup_copy = \"30d\"", "backup_copy = \"400d\"");
    assert_eq!(
        errors(&outside)[0].message,
        "400d is outside the range [1d, 365d] that data type backup_copy allows"
    );
    let fixed = VALID.replace("backup_copy = \"30d\"", "billing = \"1y\"");
    assert!(errors(&fixed)[0].message.contains("fixed by the policy"));
    let unknown = VALID.replace("backup_copy = \"30d\"", "nope = \"1y\"");
    assert_eq!(errors(&unknown)[0].message, "unknown data type");
    let short = VALID.replace("base_retention = \"60mo\"", "base_retention = \"24mo\"");
    assert!(
        errors(&short)[0]
            .message
            .contains("shorter than tier custom's minimum")
    );
    let not_at_least = VALID.replace(
        "tier = \"custom\"\nhome_region = \"au-east\"\nbase_retention",
        "tier = \"base\"\nhome_region = \"au-east\"\nbase_retention",
    );
    assert!(errors(&not_at_least)[0].message.contains("at_least = true"));
}

#[test]
fn suspicious_but_valid_choices_are_warnings() {
    let other_region = VALID.replace(
        "tier = \"standard\"\nhome_region = \"au-east\"",
        "tier = \"standard\"\nhome_region = \"eu-west\"",
    );
    let p = parse(&other_region).unwrap();
    assert_eq!(p.warnings.len(), 1);
    assert!(
        p.warnings[0]
            .to_string()
            .contains("warning: tenants.acme.home_region")
    );
}

#[test]
fn telemetry_selectors_are_checked() {
    let bad = VALID.replace("\"up\"]", "\"bad name{x}\", \"m{a,}\"]");
    assert_eq!(errors(&bad).len(), 2);
}

#[test]
fn retention_forms_do_not_mix() {
    let mixed = VALID.replace(
        "retention = { after_event = \"ticket_closed\", keep = \"90d\" }",
        "retention = { after_event = \"ticket_closed\", keep = \"90d\", min = \"1d\" }",
    );
    assert!(errors(&mixed)[0].message.contains("cannot be combined"));
    let missing_keep = VALID.replace(", keep = \"90d\" }", " }");
    assert!(
        errors(&missing_keep)[0]
            .message
            .contains("missing required key `keep`")
    );
}

#[test]
fn render_escapes_raw_html_everywhere() {
    let text = VALID.replace(
        "name = \"Acme data handling\"",
        "name = \"<b>Acme</b>\"\ndescription = \"<div class=\\\"text-muted\\\">Raw HTML passes through the renderer</div><script>alert(1)</script>\"",
    );
    let p = parse(&text).unwrap();
    let html = render(&p, RenderFormat::Html);
    assert!(!html.contains("<div class"));
    assert!(!html.contains("<script>"));
    assert!(!html.contains("<b>"));
    assert!(html.contains("&lt;div class=&quot;text-muted&quot;&gt;"));
    assert!(html.contains("<title>&lt;b&gt;Acme&lt;&#x2F;b&gt;</title>"));
    let md = render(&p, RenderFormat::Markdown);
    assert!(!md.contains("<div"));
    assert!(!md.contains("<script>"));
    assert!(md.contains("&lt;script&gt;"));
}

#[test]
fn render_shows_classes_retention_tiers_and_access() {
    let p = parse(VALID).unwrap();
    let md = render(&p, RenderFormat::Markdown);
    assert!(md.starts_with("# Acme data handling\n"));
    assert!(
        md.contains(
            "| Restricted |  | PAN, CVV (not stored) | Vault, KMS\\-encrypted"
                .replace("\\-", "-")
                .as_str()
        )
    );
    assert!(md.contains("| billing | Confidential | 7y | crypto-shred |"));
    assert!(md.contains("| custom | at least 36mo |"));
    assert!(md.contains("24mo (tier standard 12mo, raised to the type's minimum)"));
    assert!(md.contains("- Restricted data needs 2 distinct approver(s) (two-person rule)."));
    assert!(md.contains("- http\\_requests\\_total{route,status}"));
    assert!(md.contains("card\\_number: tokenize"));
}

#[test]
fn cancel_windows_default_to_at_once() {
    let with = |window: &str| {
        VALID.replace(
            "[data_types.app_log]\nclass = \"internal\"",
            &format!("[data_types.app_log]\nclass = \"internal\"\ncancel_window = {window}"),
        )
    };
    let p = parse(VALID).unwrap();
    assert_eq!(p.data_type("app_log").unwrap().cancel_window, None);
    let p = parse(&with("\"7d\"")).unwrap();
    assert_eq!(
        p.data_type("app_log").unwrap().cancel_window,
        Some("7d".parse().unwrap())
    );
    let p = parse(&with("\"0d\"")).unwrap();
    assert_eq!(p.data_type("app_log").unwrap().cancel_window, None);
    let errs = errors(&with("\"a week\""));
    assert_eq!(errs.len(), 1);
    assert!(
        errs[0]
            .to_string()
            .contains("data_types.app_log.cancel_window: \"a week\" is not a valid duration"),
        "{}",
        errs[0]
    );
    assert_eq!(p.retention_events(), vec!["ticket_closed"]);
}

#[test]
fn a_new_policy_lists_the_retentions_it_changes() {
    use crate::retention::Change;
    let previous = parse(VALID).unwrap();
    assert!(previous.retention_changes(&previous).is_empty());
    let text = VALID
        .replace("retention = \"7y\"", "retention = \"5y\"")
        .replace(
            "standard = { retention = \"12mo\" }",
            "standard = { retention = \"24mo\" }",
        )
        .replace(
            "region = \"au-east\"\n\n[keys]",
            "region = \"au-east\"\nretention_shortening_grace = \"0d\"\n\n[keys]",
        );
    let next = parse(&text).unwrap();
    assert_eq!(next.deployment.shortening_grace, None);
    assert_eq!(
        previous.deployment.shortening_grace,
        Some("30d".parse().unwrap()),
        "30 days unless the policy says otherwise"
    );
    let changes: Vec<(String, String, Change)> = next
        .retention_changes(&previous)
        .iter()
        .map(|c| {
            (
                c.row.tenant.id.to_string(),
                c.row.data_type.name.to_string(),
                c.change,
            )
        })
        .collect();
    let expect = |t: &str, d: &str, c| (t.to_owned(), d.to_owned(), c);
    assert!(
        changes.contains(&expect("acme", "billing", Change::Shortened)),
        "{changes:?}"
    );
    assert!(changes.contains(&expect("health", "billing", Change::Shortened)));
    assert!(changes.contains(&expect("acme", "payment", Change::Lengthened)));
    assert!(
        !changes.iter().any(|c| c.0 == "health" && c.1 == "payment"),
        "health's tier did not change: {changes:?}"
    );
}

#[test]
fn audit_retention_is_a_calendar_duration_or_absent() {
    assert_eq!(parse(VALID).unwrap().deployment.audit_retention, None);
    let with = |value: &str| {
        VALID.replace(
            "region = \"au-east\"\n\n[keys]",
            &format!("region = \"au-east\"\naudit_retention = {value}\n\n[keys]"),
        )
    };
    assert_eq!(
        parse(&with("\"36mo\"")).unwrap().deployment.audit_retention,
        Some("36mo".parse().unwrap())
    );
    let err = parse(&with("\"forever\"")).unwrap_err().to_string();
    assert!(err.contains("deployment.audit_retention"), "{err}");
    assert!(parse(&with("36")).is_err());
}

#[test]
fn an_audit_mirror_names_a_nats_url_and_a_stream() {
    let with = |mirror: &str| {
        VALID.replace(
            "region = \"au-east\"\n\n[keys]",
            &format!("region = \"au-east\"\naudit_mirror = {mirror}\n\n[keys]"),
        )
    };
    assert_eq!(parse(VALID).unwrap().deployment.audit_mirror, None);
    let p = parse(&with("{ url = \"nats://127.0.0.1:4222\" }")).unwrap();
    assert_eq!(
        p.deployment.audit_mirror,
        Some(AuditMirror {
            url: "nats://127.0.0.1:4222".into(),
            stream: "CUSTODIAN_AUDIT".into(),
            required: false,
        })
    );
    let p = parse(&with(
        "{ url = \"nats://mirror:4222\", stream = \"acme-audit\", required = true }",
    ))
    .unwrap();
    assert!(p.deployment.audit_mirror.unwrap().required);
    for (mirror, says) in [
        ("{ url = \"http://x\" }", "is not a NATS URL"),
        (
            "{ url = \"nats://x\", stream = \"a.b\" }",
            "must be letters, digits",
        ),
        ("{ url = \"nats://x\", colour = \"red\" }", "unknown key"),
        ("{ stream = \"s\" }", "url"),
    ] {
        let errs = errors(&with(mirror));
        assert!(
            errs.iter().any(|e| e.to_string().contains(says)),
            "{mirror}: {errs:?}"
        );
    }
}

#[test]
fn subject_rights_default_to_one_month_and_refusal_under_hold() {
    let p = parse(VALID).unwrap();
    assert_eq!(p.subject_rights, super::SubjectRights::default());
    assert_eq!(p.subject_rights.answer_within, "1mo".parse().unwrap());
    assert!(!p.subject_rights.erase_rest_under_hold);
    let with = |body: &str| format!("{VALID}\n[subject_rights]\n{body}\n");
    let p = parse(&with(
        "answer_within = \"30d\"\nerasure_under_hold = \"erase_rest\"",
    ))
    .unwrap();
    assert_eq!(p.subject_rights.answer_within, "30d".parse().unwrap());
    assert!(p.subject_rights.erase_rest_under_hold);
    let err = parse(&with("erasure_under_hold = \"maybe\""))
        .unwrap_err()
        .to_string();
    assert!(err.contains("subject_rights.erasure_under_hold"), "{err}");
    assert!(err.contains("erase_rest"), "{err}");
    assert!(parse(&with("answer_within = \"soon\"")).is_err());
    assert!(parse(&with("deadline = \"1mo\"")).is_err());
}

#[test]
fn a_class_says_what_ingest_does_with_pii_in_free_text() {
    let p = parse(VALID).unwrap();
    assert!(p.classes.iter().all(|c| c.pii.is_none()));
    let with = |value: &str| {
        VALID.replacen(
            "[classes.restricted]\n",
            &format!("[classes.restricted]\npii = {value}\n"),
            1,
        )
    };
    let p = parse(&with("\"reject\"")).unwrap();
    let restricted = p.class_info(crate::ids::Class::Restricted).unwrap();
    assert_eq!(restricted.pii, Some(super::PiiAction::Reject));
    let err = parse(&with("\"shred\"")).unwrap_err().to_string();
    assert!(err.contains("classes.restricted.pii"), "{err}");
    assert!(err.contains("\"flag\", \"redact\" or \"reject\""), "{err}");
}

fn with_oidc(tables: &str) -> String {
    VALID.replace(
        "restricted_approvers = 2\n",
        &format!("restricted_approvers = 2\n\n{tables}\n"),
    )
}

#[test]
fn oidc_providers_take_defaults_and_keep_file_order() {
    assert!(parse(VALID).unwrap().access.oidc.is_empty());
    let p = parse(&with_oidc(
        r#"[access.oidc.corp]
issuer = "https://login.example.com/tenant-1/"
audience = "custodian-prod"

[access.oidc.local]
issuer = "http://127.0.0.1:8080"
audience = "urn:custodian"
algorithms = ["ES256", "PS256", "ES256"]
leeway = "2m"
tenant_claim = "org"
roles_claim = "groups"
mfa_amr = ["hwk"]
mfa_acr = ["urn:example:loa:3"]"#,
    ))
    .unwrap();
    assert!(p.warnings.is_empty(), "{:?}", p.warnings);
    let [corp, local] = p.access.oidc.as_slice() else {
        panic!("two providers: {:?}", p.access.oidc)
    };
    assert_eq!(
        *corp,
        OidcIssuer {
            name: "corp".into(),
            issuer: "https://login.example.com/tenant-1/".into(),
            audience: "custodian-prod".into(),
            algorithms: vec![
                JwsAlgorithm::RS256,
                JwsAlgorithm::ES256,
                JwsAlgorithm::EdDSA
            ],
            leeway_secs: 60,
            tenant_claim: "custodian_tenant".into(),
            roles_claim: "custodian_roles".into(),
            mfa_amr: vec!["mfa".into(), "otp".into(), "hwk".into(), "swk".into()],
            mfa_acr: vec![],
        }
    );
    assert_eq!(
        local.algorithms,
        vec![JwsAlgorithm::ES256, JwsAlgorithm::PS256]
    );
    assert_eq!(local.leeway_secs, 120);
    assert_eq!(local.tenant_claim, "org");
    assert_eq!(local.roles_claim, "groups");
    assert_eq!(local.mfa_amr, vec!["hwk".to_owned()]);
    assert_eq!(local.mfa_acr, vec!["urn:example:loa:3".to_owned()]);
    assert_eq!(
        p.access
            .oidc_issuer("http://127.0.0.1:8080")
            .map(|o| o.name.as_str()),
        Some("local")
    );
    assert!(p.access.oidc_issuer("http://127.0.0.1:8080/").is_none());
    // The other [access] keys are untouched by the new tables.
    assert_eq!(p.access.mfa_required.len(), 3);
    assert_eq!(p.access.restricted_approvers, 2);
}

#[test]
fn oidc_algorithms_refuse_none_and_hmac() {
    let with_algs = |algs: &str| {
        with_oidc(&format!(
            "[access.oidc.idp]\nissuer = \"https://idp.example\"\naudience = \"a\"\nalgorithms = {algs}"
        ))
    };
    let errs = errors(&with_algs(
        r#"["RS256", "none", "HS256", "hs512", "rs256", "ES512"]"#,
    ));
    let lines: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
    assert_eq!(lines.len(), 5, "{}", lines.join("\n"));
    assert!(
        lines[0].contains("access.oidc.idp.algorithms[1]: \"none\" means an unsigned token"),
        "{}",
        lines[0]
    );
    assert!(
        lines[1].contains("algorithms[2]: \"HS256\" is an HMAC algorithm"),
        "{}",
        lines[1]
    );
    assert!(
        lines[2].contains("algorithms[3]: \"hs512\" is an HMAC algorithm"),
        "{}",
        lines[2]
    );
    assert!(
        lines[3].contains("algorithms[4]: unknown algorithm \"rs256\""),
        "{}",
        lines[3]
    );
    assert!(
        lines[4].contains("algorithms[5]: unknown algorithm \"ES512\""),
        "{}",
        lines[4]
    );
    assert!(
        lines[4].contains("valid (case-sensitive): RS256"),
        "{}",
        lines[4]
    );
    let empty = errors(&with_algs("[]"));
    assert!(
        empty[0].message.starts_with("allows no algorithm"),
        "{empty:?}"
    );
    let wrong_type = errors(&with_algs("\"RS256\""));
    assert_eq!(
        wrong_type[0].message,
        "expected an array of strings, found a string"
    );
}

#[test]
fn oidc_tables_report_every_problem_with_its_line_and_key() {
    let text = with_oidc(
        r#"[access.oidc.corp]
issuer = "http://idp.example.com"
audience = ""
leeway = "10m"
tenant_claim = ""
mfa_amr = "mfa"
colour = "blue"

[access.oidc."bad name"]
issuer = "ftp://idp"
audience = "x"

[access.oidc.nolee]
audience = "x"
leeway = "1h"

[access.oidc.twin]
issuer = "http://localhost:9000"
audience = "x"
leeway = "soon"

[access.oidc.twin2]
issuer = "http://localhost:9000"
audience = "x""#,
    );
    let errs = errors(&text);
    let lines: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
    let line_of = |needle: &str| {
        text.lines()
            .position(|l| l.contains(needle))
            .map(|i| i + 1)
            .unwrap_or_else(|| panic!("{needle} not in the text"))
    };
    let expect = [
        format!(
            "policy.toml:{}:1: error: access.oidc.corp.colour: unknown key; valid keys here are: issuer, audience, algorithms, leeway, tenant_claim, roles_claim, mfa_amr, mfa_acr",
            line_of("colour")
        ),
        format!(
            "policy.toml:{}:10: error: access.oidc.corp.issuer: \"http://idp.example.com\" must use https://",
            line_of("http://idp.example.com")
        ),
        format!(
            "policy.toml:{}:12: error: access.oidc.corp.audience: must not be empty",
            line_of("audience = \"\"")
        ),
        format!(
            "policy.toml:{}:10: error: access.oidc.corp.leeway: \"10m\" is more clock skew than the 5m",
            line_of("\"10m\"")
        ),
        format!(
            "policy.toml:{}:16: error: access.oidc.corp.tenant_claim: must name a claim",
            line_of("tenant_claim = \"\"")
        ),
        format!(
            "policy.toml:{}:11: error: access.oidc.corp.mfa_amr: expected an array of strings, found a string",
            line_of("mfa_amr = \"mfa\"")
        ),
        format!(
            "policy.toml:{}:14: error: access.oidc.\"bad name\": \"bad name\" is not a valid provider name",
            line_of("\"bad name\"")
        ),
        "error: access.oidc.\"bad name\".issuer: \"ftp://idp\" is not an https:// URL".to_owned(),
        "error: access.oidc.nolee.issuer: missing required key `issuer` in [access.oidc.nolee]"
            .to_owned(),
        "error: access.oidc.nolee.leeway: \"1h\" is not a valid leeway; write whole seconds or minutes"
            .to_owned(),
        "error: access.oidc.twin.leeway: \"soon\" is not a valid leeway".to_owned(),
        "error: access.oidc.twin2.issuer: issuer \"http://localhost:9000\" is already configured as [access.oidc.twin]"
            .to_owned(),
    ];
    for e in &expect {
        assert!(
            lines.iter().any(|l| l.contains(e.as_str())),
            "missing {e:?} in\n{}",
            lines.join("\n")
        );
    }
    assert_eq!(lines.len(), expect.len(), "{}", lines.join("\n"));
}

#[test]
fn oidc_issuer_urls_need_tls_except_on_loopback() {
    let with_issuer = |url: &str| {
        with_oidc(&format!(
            "[access.oidc.idp]\nissuer = {url:?}\naudience = \"a\""
        ))
    };
    for ok in [
        "https://idp.example",
        "https://idp.example:8443/realms/x",
        "http://127.0.0.1:4000",
        "http://localhost",
        "http://[::1]:9000/",
    ] {
        assert!(parse(&with_issuer(ok)).is_ok(), "{ok}");
    }
    for (bad, says) in [
        ("idp.example", "is not an https:// URL"),
        ("http://10.0.0.1", "must use https://"),
        ("http://127.0.0.1.evil.example", "must use https://"),
        ("https://", "has no host"),
        ("https://user:pw@idp.example", "must not carry credentials"),
        ("https://idp.example/?x=1", "query or fragment"),
        ("https://idp example", "contains spaces"),
    ] {
        let errs = errors(&with_issuer(bad));
        assert!(
            errs.iter().any(|e| e.message.contains(says)),
            "{bad}: {errs:?}"
        );
    }
}

#[test]
fn oidc_leeway_is_seconds_or_minutes_up_to_five_minutes() {
    let with_leeway = |leeway: &str| {
        with_oidc(&format!(
            "[access.oidc.idp]\nissuer = \"https://idp.example\"\naudience = \"a\"\nleeway = {leeway}"
        ))
    };
    for (text, secs) in [
        ("\"0s\"", 0),
        ("\"0\"", 0),
        ("\"45s\"", 45),
        ("\"5m\"", 300),
        ("\"300s\"", 300),
    ] {
        assert_eq!(
            parse(&with_leeway(text)).unwrap().access.oidc[0].leeway_secs,
            secs,
            "{text}"
        );
    }
    for bad in [
        "\"301s\"", "\"6m\"", "\"1h\"", "\"-1s\"", "\"s\"", "\"1.5m\"", "60",
    ] {
        assert!(parse(&with_leeway(bad)).is_err(), "{bad}");
    }
}

#[test]
fn an_oidc_provider_that_can_never_show_mfa_is_a_warning() {
    let p = parse(&with_oidc(
        "[access.oidc.idp]\nissuer = \"https://idp.example\"\naudience = \"a\"\nmfa_amr = []",
    ))
    .unwrap();
    assert_eq!(p.warnings.len(), 1, "{:?}", p.warnings);
    assert_eq!(p.warnings[0].key, "access.oidc.idp.mfa_amr");
    let unknown = errors(&with_oidc("[access]\noidc = 3"));
    assert!(!unknown.is_empty());
    let not_a_table = errors(&with_oidc("[access.oidc]\nidp = \"https://idp.example\""));
    assert_eq!(
        not_a_table[0].to_string().split(": ").nth(2),
        Some("access.oidc.idp")
    );
}

/// `VALID` with a `support_ticket` data type whose fields table holds `rules`.
fn with_ticket_rules(rules: &str, delete: &str) -> String {
    format!(
        "{VALID}\n[data_types.support_ticket]\nclass = \"confidential\"\nretention = \"tier\"\ndelete = \"{delete}\"\n\n[data_types.support_ticket.fields]\n{rules}\n"
    )
}

#[test]
fn entity_rules_transform_values_found_in_free_text() {
    let p = parse(&with_ticket_rules(
        r#"customer_email = "pseudonymize"
"note[CREDIT_CARD]" = "tokenize"
"*[email_address]" = "pseudonymize"
"*[IP_ADDRESS]" = "truncate_ip"
"*[PHONE_NUMBER]" = { transform = "mask", keep_last = 4 }
"contact.remark[US_SSN]" = "fpe""#,
        "crypto-shred",
    ))
    .unwrap();
    let t = p.data_type("support_ticket").unwrap();
    let rules: Vec<(&str, Transform, Option<EntityScope<'_>>)> = t
        .fields
        .iter()
        .map(|r| (r.field.as_str(), r.transform, r.entity_scope()))
        .collect();
    let scope = |field, entity| Some(EntityScope { field, entity });
    assert_eq!(
        rules,
        vec![
            ("customer_email", Transform::Pseudonymize, None),
            (
                "note[CREDIT_CARD]",
                Transform::Tokenize,
                scope(Some("note"), "CREDIT_CARD")
            ),
            // Entity names are stored as the scanner reports them.
            (
                "*[EMAIL_ADDRESS]",
                Transform::Pseudonymize,
                scope(None, "EMAIL_ADDRESS")
            ),
            (
                "*[IP_ADDRESS]",
                Transform::TruncateIp,
                scope(None, "IP_ADDRESS")
            ),
            (
                "*[PHONE_NUMBER]",
                Transform::Mask { keep_last: 4 },
                scope(None, "PHONE_NUMBER")
            ),
            (
                "contact.remark[US_SSN]",
                Transform::Fpe,
                scope(Some("contact.remark"), "US_SSN")
            ),
        ]
    );
    let md = render(&p, RenderFormat::Markdown);
    assert!(md.contains("CREDIT\\_CARD found in note: tokenize"), "{md}");
    assert!(
        md.contains("EMAIL\\_ADDRESS found in any free text: pseudonymize"),
        "{md}"
    );
    assert!(md.contains("customer\\_email: pseudonymize"), "{md}");
}

#[test]
fn entity_rules_are_checked_with_clear_errors() {
    let cases = [
        (
            r#""note[CREDIT_CRD]" = "tokenize""#,
            "data_types.support_ticket.fields.\"note[CREDIT_CRD]\": unknown entity \"CREDIT_CRD\"; valid: EMAIL_ADDRESS, PHONE_NUMBER,",
        ),
        (
            r#""note[CREDIT_CARD]" = "truncate_ip""#,
            "truncate IP cannot apply to CREDIT_CARD: truncate_ip applies to IP_ADDRESS only",
        ),
        (
            r#""*[EMAIL_ADDRESS]" = "fpe""#,
            "format-preserving encryption cannot apply to EMAIL_ADDRESS: fpe enciphers digits",
        ),
        (
            r#""*[IP_ADDRESS]" = "drop""#,
            "drop cannot apply to IP_ADDRESS: drop removes a whole field; for values found inside free text write \"redact\"",
        ),
        (
            r#""*[PHONE_NUMBER]" = "date_shift""#,
            "date shift cannot apply to PHONE_NUMBER",
        ),
        (
            r#""*[US_SSN]" = "generalize""#,
            "generalize cannot apply to US_SSN",
        ),
        (
            r#""note[CREDIT_CARD" = "tokenize""#,
            "is not a field rule key; write field[ENTITY]",
        ),
        (
            r#""[CREDIT_CARD]" = "tokenize""#,
            "\"\" is not a field path or *",
        ),
        (
            r#""a..b[CREDIT_CARD]" = "tokenize""#,
            "\"a..b\" is not a field path or *",
        ),
        (
            "note = \"redact\"\n\"note[CREDIT_CARD]\" = \"tokenize\"",
            "field note has a rule for its whole value, so no free text is left in it to search for CREDIT_CARD",
        ),
        (
            "\"note[CREDIT_CARD]\" = \"tokenize\"\n\"note[credit_card]\" = \"redact\"",
            "note[CREDIT_CARD] has a rule already",
        ),
        (
            r#""note[CREDIT_CARD]" = { transform = "tokenize", keep_last = 4 }"#,
            "keep_last only applies to transform \"mask\"",
        ),
    ];
    for (rules, want) in cases {
        let errs = errors(&with_ticket_rules(rules, "crypto-shred"));
        let text: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
        assert_eq!(errs.len(), 1, "{rules}: {}", text.join("\n"));
        assert!(text[0].contains(want), "{rules}: {}", text[0]);
        assert!(text[0].starts_with("policy.toml:"), "{}", text[0]);
    }
    // Anonymisation finds tokens and pseudonyms again, not enciphered digits.
    let errs = errors(&with_ticket_rules(
        r#""*[CREDIT_CARD]" = "fpe""#,
        "anonymize",
    ));
    assert_eq!(errs.len(), 1);
    assert!(
        errs[0].message.contains("would stay reversible"),
        "{}",
        errs[0]
    );
    assert!(
        parse(&with_ticket_rules(
            r#""*[CREDIT_CARD]" = "tokenize""#,
            "anonymize"
        ))
        .is_ok()
    );
}
