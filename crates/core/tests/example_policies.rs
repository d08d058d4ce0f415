//! The example policies in `examples/policies/`: one per seed policy plus the development default.
//! Every one must parse without errors or warnings, and each must say what its seed says. The
//! files in `examples/policies/broken/` must fail, each with the diagnostic it was written for.

use std::fs;
use std::path::{Path, PathBuf};

use custodian_core::ids::{Class, TenantId};
use custodian_core::policy::{
    DeleteMethod, FieldRule, Policy, RenderFormat, RootKeyConfig, Transform, render,
};
use custodian_core::retention::RetentionRule;

fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/policies")
}

/// The `*.toml` files directly in `dir` (not in subdirectories such as `broken/`), sorted.
fn toml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    files
}

fn file_name(path: &Path) -> String {
    path.file_name().unwrap().to_string_lossy().into_owned()
}

fn load(name: &str) -> Policy {
    let path = examples_dir().join(name);
    let text =
        fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let policy = Policy::parse(name, &text).unwrap_or_else(|e| panic!("{name}:\n{e}"));
    assert!(
        policy.warnings.is_empty(),
        "{name} has warnings:\n{}",
        policy
            .warnings
            .iter()
            .map(|w| w.to_string())
            .collect::<Vec<_>>()
            .join("\n")
    );
    policy
}

fn dur(s: &str) -> custodian_core::duration::CalDuration {
    s.parse().unwrap()
}

fn names(policy: &Policy) -> Vec<&str> {
    policy.data_types.iter().map(|d| d.name.as_str()).collect()
}

fn retention<'p>(policy: &'p Policy, data_type: &str) -> &'p RetentionRule {
    &policy
        .data_type(data_type)
        .unwrap_or_else(|| panic!("no data type {data_type}"))
        .retention
}

fn range(min: &str, max: &str) -> RetentionRule {
    RetentionRule::Tier {
        min: Some(dur(min)),
        max: Some(dur(max)),
    }
}

fn tenant(id: &str) -> TenantId {
    TenantId::new(id).unwrap()
}

#[test]
fn every_example_policy_parses_without_warnings() {
    let files = toml_files(&examples_dir());
    let names: Vec<String> = files.iter().map(|p| file_name(p)).collect();
    assert!(
        files.len() >= 6,
        "expected at least 6 policies, found {names:?}"
    );
    for expected in [
        "000-mssp.toml",
        "001-cloud-host.toml",
        "002-xdr.toml",
        "003-template.toml",
        "004-saas.toml",
        "default.toml",
    ] {
        assert!(names.iter().any(|n| n == expected), "{expected} is missing");
    }
    assert!(
        !names.iter().any(|n| n.contains("broken")),
        "broken/ must not be in the loop"
    );
    for name in &names {
        let p = load(name);
        assert!(!p.tenants.is_empty(), "{name} defines no tenants");
        // Every effective retention can be explained and the page can be rendered.
        assert_eq!(
            p.retention_table().len(),
            p.tenants.len() * p.data_types.len()
        );
        let md = render(&p, RenderFormat::Markdown);
        assert!(md.starts_with("# "), "{name}");
    }
}

#[test]
fn mssp_000_has_the_seed_tiers_data_types_and_classes() {
    let p = load("000-mssp.toml");
    let tiers: Vec<(&str, _, bool)> = p
        .tiers
        .iter()
        .map(|t| (t.name.as_str(), t.retention, t.at_least))
        .collect();
    assert_eq!(
        tiers,
        vec![
            ("base", dur("180d"), false),
            ("standard", dur("12mo"), false),
            ("compliance-plus", dur("24mo"), false),
            ("custom", dur("36mo"), true),
        ]
    );
    assert_eq!(
        names(&p),
        vec![
            "auth_log",
            "security_alert",
            "endpoint_telemetry",
            "network_flow",
            "siem_event",
            "audit_trail",
            "app_log",
            "incident_artifact",
            "config_backup",
        ]
    );
    assert_eq!(*retention(&p, "auth_log"), range("24mo", "36mo"));
    assert_eq!(*retention(&p, "security_alert"), range("24mo", "36mo"));
    assert_eq!(*retention(&p, "endpoint_telemetry"), range("12mo", "24mo"));
    assert_eq!(
        *retention(&p, "network_flow"),
        RetentionRule::Fixed(dur("12mo"))
    );
    assert_eq!(*retention(&p, "siem_event"), range("24mo", "36mo"));
    assert_eq!(
        *retention(&p, "audit_trail"),
        RetentionRule::Fixed(dur("36mo"))
    );
    assert_eq!(*retention(&p, "app_log"), range("90d", "180d"));
    assert!(matches!(
        retention(&p, "incident_artifact"),
        RetentionRule::AfterEvent { event, .. } if event == "ticket_closed"
    ));
    assert_eq!(
        *retention(&p, "config_backup"),
        RetentionRule::Fixed(dur("180d"))
    );

    let classes: Vec<Class> = p.classes.iter().map(|c| c.class).collect();
    assert_eq!(
        classes,
        vec![Class::Public, Class::Internal, Class::Confidential]
    );
    assert_eq!(
        p.class_info(Class::Confidential)
            .unwrap()
            .examples
            .as_deref(),
        Some("Vault keys, client secrets, PII")
    );
    assert_eq!(
        p.keys.root,
        RootKeyConfig::Shamir {
            shares: 5,
            threshold: 3
        }
    );
    let mfa: Vec<&str> = p.access.mfa_required.iter().map(|r| r.as_str()).collect();
    assert!(mfa.contains(&"admin") && mfa.contains(&"security-officer"));

    // Tenants across all four tiers; the custom tier's floor is raised by the tenant.
    let mut tenant_tiers: Vec<&str> = p.tenants.iter().map(|t| t.tier.as_str()).collect();
    tenant_tiers.sort();
    tenant_tiers.dedup();
    assert_eq!(tenant_tiers.len(), 4);
    let ngo = p.tenant(&tenant("harbour-ngo")).unwrap();
    assert_eq!(
        p.effective_retention(ngo, p.data_type("auth_log").unwrap())
            .to_string(),
        "24mo (tier base 180d, raised to the type's minimum)"
    );
    assert_eq!(
        p.effective_retention(ngo, p.data_type("app_log").unwrap())
            .to_string(),
        "180d (tier base)"
    );
    let health = p.tenant(&tenant("state-health")).unwrap();
    assert_eq!(health.base_retention, Some(dur("60mo")));
}

#[test]
fn cloud_host_001_has_the_seed_retention_schedule() {
    let p = load("001-cloud-host.toml");
    assert_eq!(
        p.tier(&"standard".parse().unwrap()).unwrap().retention,
        dur("90d")
    );
    assert_eq!(
        p.tier(&"compliance".parse().unwrap()).unwrap().retention,
        dur("365d")
    );
    assert_eq!(
        *retention(&p, "infrastructure_log"),
        RetentionRule::Tier {
            min: None,
            max: None
        }
    );
    assert_eq!(*retention(&p, "workload"), RetentionRule::UntilDeleted);
    assert_eq!(*retention(&p, "billing"), RetentionRule::Fixed(dur("7y")));
    assert_eq!(
        *retention(&p, "support_record"),
        RetentionRule::Fixed(dur("7y"))
    );
    assert_eq!(*retention(&p, "backup_copy"), range("1d", "365d"));
    let pii = p.data_type("pii").unwrap();
    assert_eq!(pii.delete, DeleteMethod::Anonymize);
    assert!(!pii.fields.is_empty());

    assert_eq!(p.keys.rotate_every, dur("90d"));
    match &p.keys.root {
        RootKeyConfig::Pkcs11 { module, .. } => {
            assert_eq!(module, "/usr/lib/softhsm/libsofthsm2.so")
        }
        other => panic!("expected pkcs11, found {other:?}"),
    }

    let northwind = p.tenant(&tenant("northwind")).unwrap();
    assert_eq!(
        northwind.overrides,
        vec![("backup_copy".parse().unwrap(), dur("30d"))]
    );
    assert_eq!(
        p.effective_retention(northwind, p.data_type("backup_copy").unwrap())
            .to_string(),
        "30d (tenant override)"
    );
    let fabrikam = p.tenant(&tenant("fabrikam")).unwrap();
    assert_eq!(
        p.effective_retention(fabrikam, p.data_type("infrastructure_log").unwrap())
            .to_string(),
        "365d (tier compliance)"
    );
    assert_eq!(
        p.effective_retention(fabrikam, p.data_type("billing").unwrap())
            .to_string(),
        "7y (fixed)"
    );
}

#[test]
fn xdr_002_covers_the_seed_data_and_defaults_to_one_year() {
    let p = load("002-xdr.toml");
    for name in [
        "security_telemetry",
        "incident",
        "user_account",
        "workflow",
        "agent_ops",
        "ml_training_data",
        "audit_log",
    ] {
        assert!(p.data_type(name).is_some(), "{name} is missing");
    }
    let standard = p.tier(&"standard".parse().unwrap()).unwrap();
    assert_eq!(standard.retention, dur("1y"));
    let blue = p.tenant(&tenant("blue-team")).unwrap();
    assert_eq!(
        p.effective_retention(blue, p.data_type("incident").unwrap())
            .to_string(),
        "1y (tier standard)"
    );
    let ml = p.data_type("ml_training_data").unwrap();
    assert_eq!(ml.delete, DeleteMethod::Anonymize);
    assert!(ml.fields.contains(&FieldRule {
        field: "username".into(),
        transform: Transform::Pseudonymize
    }));
    let user = p.data_type("user_account").unwrap();
    assert!(user.fields.contains(&FieldRule {
        field: "auth_token".into(),
        transform: Transform::Drop
    }));
}

#[test]
fn template_003_is_classification_driven_always_off_and_pseudonymising() {
    let p = load("003-template.toml");
    assert_eq!(p.classes.len(), 4);
    let mfa: Vec<&str> = p.access.mfa_required.iter().map(|r| r.as_str()).collect();
    for role in ["operator", "support"] {
        assert!(mfa.contains(&role), "{role} must need MFA");
    }
    assert_eq!(p.access.jit_max, dur("24h"));
    let log = p.data_type("event_log").unwrap();
    assert!(!log.fields.is_empty());
    assert!(
        log.fields
            .iter()
            .all(|f| f.transform == Transform::Pseudonymize)
    );
}

#[test]
fn saas_004_has_four_classes_tokenised_pan_and_three_metrics() {
    let p = load("004-saas.toml");
    let classes: Vec<Class> = p.classes.iter().map(|c| c.class).collect();
    assert_eq!(classes, Class::ALL.to_vec());
    let restricted = p.class_info(Class::Restricted).unwrap();
    assert_eq!(
        restricted.examples.as_deref(),
        Some("PAN, CVV (not stored), employee compensation")
    );
    assert_eq!(restricted.storage.as_deref(), Some("Vault, KMS-encrypted"));
    assert_eq!(
        restricted.access.as_deref(),
        Some("Two-person rule, logged")
    );

    let payment = p.data_type("payment").unwrap();
    assert_eq!(payment.class, Class::Restricted);
    assert!(payment.fields.contains(&FieldRule {
        field: "card_number".into(),
        transform: Transform::Tokenize
    }));
    assert!(payment.fields.contains(&FieldRule {
        field: "cvv".into(),
        transform: Transform::Drop
    }));

    // A card number pasted into a payment's free text is tokenised too, and the analytics
    // events that feed central telemetry keep no email, card, phone or IP address in free text.
    assert!(payment.fields.contains(&FieldRule {
        field: "*[CREDIT_CARD]".into(),
        transform: Transform::Tokenize
    }));
    let analytics = p.data_type("product_analytics").unwrap();
    let in_text: Vec<(&str, Transform)> = analytics
        .fields
        .iter()
        .filter_map(|r| Some((r.entity_scope()?.entity, r.transform)))
        .collect();
    assert_eq!(
        in_text,
        vec![
            ("EMAIL_ADDRESS", Transform::Pseudonymize),
            ("IP_ADDRESS", Transform::TruncateIp),
            ("CREDIT_CARD", Transform::Redact),
            ("PHONE_NUMBER", Transform::Mask { keep_last: 4 }),
        ]
    );
    let md = render(&p, RenderFormat::Markdown);
    assert!(
        md.contains("EMAIL\\_ADDRESS found in any free text: pseudonymize"),
        "{md}"
    );

    let metrics: Vec<String> = p.telemetry.allow.iter().map(|m| m.to_string()).collect();
    assert_eq!(
        metrics,
        vec![
            "http_requests_total{route,status}",
            "billing_total{tenant}",
            "webhook_success{host}",
        ]
    );
    assert_eq!(p.access.restricted_approvers, 2);
    assert_eq!(p.access.jit_max, dur("24h"));
    assert!(
        p.access
            .mfa_required
            .iter()
            .any(|r| r.as_str() == "support")
    );

    // The seed's raw HTML is in the policy and comes out of the renderer as text.
    assert!(
        p.meta
            .description
            .as_deref()
            .unwrap()
            .contains("<div class=\"text-muted\">")
    );
    let html = render(&p, RenderFormat::Html);
    assert!(!html.contains("<div"));
    assert!(html.contains("&lt;div class=&quot;text-muted&quot;&gt;"));
    let md = render(&p, RenderFormat::Markdown);
    assert!(!md.contains("<div"));
    assert!(md.contains("&lt;div class=&quot;text-muted&quot;&gt;"));
}

#[test]
fn default_policy_is_the_development_policy() {
    let p = load("default.toml");
    assert_eq!(p.keys.root, RootKeyConfig::Dev);
    assert_eq!(p.deployment.region.as_str(), "local");
    for id in ["acme", "globex"] {
        let t = p
            .tenant(&tenant(id))
            .unwrap_or_else(|| panic!("tenant {id}"));
        assert_eq!(t.tier.as_str(), "standard");
        assert_eq!(t.home_region.as_str(), "local");
    }
    let app_log = p.data_type("app_log").unwrap();
    assert_eq!(app_log.class, Class::Internal);
    assert_eq!(app_log.retention, range("90d", "180d"));
    let customer = p.data_type("customer_record").unwrap();
    assert_eq!(customer.class, Class::Confidential);
    assert_eq!(
        customer.retention,
        RetentionRule::Tier {
            min: None,
            max: None
        }
    );
    for name in ["auth_log", "payment"] {
        assert!(p.data_type(name).is_some(), "{name} is missing");
    }
    assert_eq!(
        *retention(&p, "incident_artifact"),
        RetentionRule::AfterEvent {
            event: "ticket_closed".into(),
            keep: dur("90d")
        }
    );
}

/// (file, line, column, key, message prefix) of the single error each broken policy must produce.
const BROKEN: &[(&str, usize, usize, &str, &str)] = &[
    (
        "bad-duration.toml",
        9,
        26,
        "tiers.standard.retention",
        "\"12m\" is not a valid duration ('m' is ambiguous; write 'mo' for months)",
    ),
    (
        "unknown-key.toml",
        4,
        1,
        "deployment.zone",
        "unknown key; valid keys here are: region",
    ),
    (
        "unknown-tier.toml",
        16,
        8,
        "tenants.acme.tier",
        "unknown tier \"gold\"; defined tiers: standard",
    ),
];

#[test]
fn broken_policies_fail_with_the_expected_diagnostic() {
    let dir = examples_dir().join("broken");
    let files: Vec<String> = toml_files(&dir).iter().map(|p| file_name(p)).collect();
    let expected: Vec<&str> = BROKEN.iter().map(|b| b.0).collect();
    assert_eq!(files, expected, "every broken policy needs an expectation");
    for &(name, line, column, key, message) in BROKEN {
        let text = fs::read_to_string(dir.join(name)).unwrap();
        let errors = match Policy::parse(name, &text) {
            Ok(_) => panic!("{name} should not parse"),
            Err(e) => e.0,
        };
        assert_eq!(errors.len(), 1, "{name}: {errors:?}");
        let e = &errors[0];
        assert_eq!((e.line, e.column), (line, column), "{name}: {e}");
        assert_eq!(e.key, key, "{name}: {e}");
        assert!(e.message.starts_with(message), "{name}: {e}");
        assert!(
            e.to_string()
                .starts_with(&format!("{name}:{line}:{column}: error: {key}: ")),
            "{e}"
        );
    }
}
