//! De-identification at ingest, end to end: field rules run before a record is sealed (a card
//! number is never stored, only its token, which only the detokenize permission opens), entity
//! rules transform what the scanner finds inside free text where it stands (a card number in a
//! note becomes a token that opens again), and each class's free-text policy flags, redacts or
//! refuses the rest.

use custodian_core::access::Role;
use custodian_core::policy::Policy;
use jiff::ToSpan;
use serde_json::{Value, json};

use crate::harness::{
    TestServer, default_policy_text, now, on_both_backends, record_line, rfc3339,
};

on_both_backends!(
    a_card_number_is_stored_only_as_its_token,
    free_text_is_flagged_redacted_or_refused_by_class,
    field_rules_transform_and_refuse_without_leaking,
    entity_rules_transform_values_inside_free_text,
    entity_rules_take_precedence_over_the_class_action,
);

/// A card number that passes Luhn and an issuer range (Visa), not a documented test card.
const PAN: &str = "4539578763621486";

fn policy(extra: &str) -> Policy {
    Policy::parse(
        "deid.toml",
        &format!("{}\n{extra}\n", default_policy_text()),
    )
    .unwrap()
}

async fn a_card_number_is_stored_only_as_its_token(server: TestServer) {
    let admin = server.token("acme", Role::Admin).await;
    let globex = server.token("globex", Role::Admin).await;
    let t = rfc3339(now() - 1.hour());
    let line = |amount: u32| {
        record_line(
            "payment",
            &["payer-1"],
            &t,
            json!({"card_number": PAN, "cvv": "123", "amount": amount}),
        )
    };
    let ids = server.ingest("acme", &admin, &line(10)).await;
    let again = server.ingest("acme", &admin, &line(11)).await;
    let other = server.ingest("globex", &globex, &line(12)).await;

    let stored = server.get_record("acme", &admin, &ids[0]).await.ok_json();
    let token = stored["payload"]["card_number"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(token.starts_with("tok_"), "{stored}");
    assert!(stored["payload"].get("cvv").is_none(), "cvv is dropped");
    assert_eq!(stored["payload"]["amount"], 10);
    // Deterministic within the tenant (records still join), different in another tenant.
    let second = server.get_record("acme", &admin, &again[0]).await.ok_json();
    assert_eq!(second["payload"]["card_number"], json!(token));
    let theirs = server
        .get_record("globex", &globex, &other[0])
        .await
        .ok_json();
    assert_ne!(theirs["payload"]["card_number"], json!(token));

    // Only the detokenize permission opens it, for the field that made it; audited.
    let ask = |token: &str, field: &str| json!({"type": "payment", "field": field, "token": token, "reason": "chargeback CB-1"});
    let opened = server
        .post_json(
            "/v1/tenants/acme/detokenize",
            &admin,
            &ask(&token, "card_number"),
        )
        .await
        .ok_json();
    assert_eq!(opened["value"], PAN);
    let reader = server.token("acme", Role::Reader).await;
    let refused = server
        .post_json(
            "/v1/tenants/acme/detokenize",
            &reader,
            &ask(&token, "card_number"),
        )
        .await;
    assert_eq!(refused.status, 403);
    server
        .post_json(
            "/v1/tenants/acme/detokenize",
            &admin,
            &ask(&token, "amount"),
        )
        .await
        .problem(400, "invalid-request");
    // Another tenant's token does not open with this tenant's key.
    let foreign = theirs["payload"]["card_number"].as_str().unwrap();
    server
        .post_json(
            "/v1/tenants/acme/detokenize",
            &admin,
            &ask(foreign, "card_number"),
        )
        .await
        .problem(400, "invalid-request");

    let log = custodian_store::AuditLog::Tenant("acme".parse().unwrap());
    let size = server.state.audit.size(&log).await.unwrap();
    let bodies = server.audit_bodies(&log, 0, size).await;
    let text = String::from_utf8_lossy(&bodies.concat()).into_owned();
    assert!(text.contains("tokens.detokenize") && text.contains("chargeback CB-1"));
    assert!(!text.contains(PAN) && !text.contains(&token));

    // No copy of the card number anywhere in the data directory (SQLite) or the server's
    // answers: the value never reached storage.
    if server.state.store.backend() == "sqlite" {
        for (name, bytes) in crate::at_rest::files_under(server.data_dir()) {
            assert!(
                !bytes.windows(PAN.len()).any(|w| w == PAN.as_bytes()),
                "the card number is in {name}"
            );
        }
    }
}

async fn free_text_is_flagged_redacted_or_refused_by_class(server: TestServer) {
    let admin = server.token("acme", Role::Admin).await;
    let t = rfc3339(now() - 1.hour());
    let note = json!({"note": "call ana at ana@example.org or +1 415 555 2671", "plan": "pro"});
    let line = record_line("customer_record", &["ana"], &t, note.clone());

    // No policy: nothing scanned, nothing changed.
    let plain = server.ingest("acme", &admin, &line).await;
    let stored = server.get_record("acme", &admin, &plain[0]).await.ok_json();
    assert_eq!(stored["payload"], note);
    assert!(stored.get("findings").is_none());

    let flag = server
        .another_node_with(policy("[classes.confidential]\npii = \"flag\""))
        .await;
    let flagged = flag.ingest("acme", &admin, &line).await;
    let stored = flag.get_record("acme", &admin, &flagged[0]).await.ok_json();
    assert_eq!(stored["payload"], note, "flag keeps the text");
    let entities: Vec<&str> = stored["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["entity"].as_str().unwrap())
        .collect();
    assert_eq!(entities, ["EMAIL_ADDRESS", "PHONE_NUMBER"]);
    let email = &stored["findings"][0];
    assert_eq!(email["field"], "note");
    let text = note["note"].as_str().unwrap();
    let (start, end) = (
        email["start"].as_u64().unwrap() as usize,
        email["end"].as_u64().unwrap() as usize,
    );
    assert_eq!(&text[start..end], "ana@example.org");
    assert_eq!(email["test"], true, "example.org is a documentation domain");
    drop(flag);

    let redact = server
        .another_node_with(policy("[classes.confidential]\npii = \"redact\""))
        .await;
    let redacted = redact.ingest("acme", &admin, &line).await;
    let stored = redact
        .get_record("acme", &admin, &redacted[0])
        .await
        .ok_json();
    assert_eq!(
        stored["payload"]["note"], "call ana at ana@example.org or <PHONE_NUMBER>",
        "redact replaces every finding but documentation values"
    );
    assert_eq!(stored["payload"]["plan"], "pro");
    drop(redact);

    let reject = server
        .another_node_with(policy("[classes.confidential]\npii = \"reject\""))
        .await;
    let refused = reject
        .post_records(
            "acme",
            &admin,
            &format!(
                "{}\n{line}",
                record_line("customer_record", &["ana"], &t, json!({"plan": "basic"}))
            ),
            None,
        )
        .await;
    let problem = refused.problem(422, "invalid-batch");
    assert_eq!(problem["errors"][0]["line"], 2);
    let reason = problem["errors"][0]["reason"].as_str().unwrap();
    assert!(
        reason.contains("field note: PHONE_NUMBER found"),
        "{reason}"
    );
    assert!(!refused.text().contains("415"), "the value is never echoed");
    drop(reject);
}

async fn field_rules_transform_and_refuse_without_leaking(server: TestServer) {
    let extra = r#"
[data_types.profile]
class = "confidential"
retention = "tier"

[data_types.profile.fields]
email = "pseudonymize"
phone = { transform = "mask", keep_last = 2 }
ip = "truncate_ip"
born = "generalize"
account = "fpe"
visits = "date_shift"
secret = "drop"
"#;
    let node = server.another_node_with(policy(extra)).await;
    let admin = node.token("acme", Role::Admin).await;
    let globex = node.token("globex", Role::Admin).await;
    let t = rfc3339(now() - 1.hour());
    let payload = json!({
        "email": "lu@corp.io", "phone": "+33 6 12 34 56 78", "ip": "203.0.113.77",
        "born": "1990-05-17", "account": "12345678901", "visits": ["2026-01-02", "2026-02-03"],
        "secret": {"nested": true}, "kept": "hello"
    });
    let line = record_line("profile", &["lu"], &t, payload.clone());
    let ids = node.ingest("acme", &admin, &line).await;
    let stored = node.get_record("acme", &admin, &ids[0]).await.ok_json()["payload"].clone();
    let email = stored["email"].as_str().unwrap();
    assert!(email != "lu@corp.io" && !email.contains("lu@"), "{stored}");
    assert_eq!(stored["phone"], "+** * ** ** ** 78");
    assert_eq!(stored["ip"], "203.0.113.0");
    assert_eq!(stored["born"], "1990");
    let account = stored["account"].as_str().unwrap();
    assert!(account.len() == 11 && account.chars().all(|c| c.is_ascii_digit()));
    assert_ne!(account, "12345678901");
    let visits: Vec<&str> = stored["visits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_ne!(visits, ["2026-01-02", "2026-02-03"]);
    assert!(stored.get("secret").is_none());
    assert_eq!(stored["kept"], "hello");

    // Pseudonyms join within a tenant and differ across tenants.
    let again = node.ingest("acme", &admin, &line).await;
    let same = node.get_record("acme", &admin, &again[0]).await.ok_json();
    assert_eq!(same["payload"]["email"], json!(email));
    assert_eq!(
        same["payload"]["visits"], stored["visits"],
        "one shift per subject"
    );
    let theirs = node.ingest("globex", &globex, &line).await;
    let other = node
        .get_record("globex", &globex, &theirs[0])
        .await
        .ok_json();
    assert_ne!(other["payload"]["email"], json!(email));

    // A transform that cannot apply refuses the line, naming field and transform only.
    let short = record_line("profile", &["lu"], &t, json!({"account": "123"}));
    let refused = node.post_records("acme", &admin, &short, None).await;
    let problem = refused.problem(422, "invalid-batch");
    let reason = problem["errors"][0]["reason"].as_str().unwrap().to_owned();
    assert!(
        reason.starts_with("field account: format-preserving encryption cannot apply"),
        "{reason}"
    );
    assert!(!refused.text().contains("\"123\""), "{}", refused.text());
    let nameless = record_line("profile", &[], &t, json!({"visits": "2026-01-02"}));
    let refused = node.post_records("acme", &admin, &nameless, None).await;
    let problem: Value = refused.problem(422, "invalid-batch");
    assert!(
        problem["errors"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("date_shift needs the record to name a subject")
    );
    drop(node);
}

/// The PAN of [`PAN`], grouped as people type it into a note.
const PAN_GROUPED: &str = "4539 5787 6362 1486";

/// Entity rules for the free text of a `support_ticket` data type of class confidential.
const TICKET_RULES: &str = r#"
[data_types.support_ticket]
class = "confidential"
retention = "tier"

[data_types.support_ticket.fields]
"note[CREDIT_CARD]" = "tokenize"
"*[EMAIL_ADDRESS]" = "pseudonymize"
"*[IP_ADDRESS]" = "truncate_ip"
"*[PHONE_NUMBER]" = { transform = "mask", keep_last = 4 }
"#;

/// The word of `text` that starts with `prefix`, without trailing punctuation.
fn word_with<'t>(text: &'t str, prefix: &str) -> &'t str {
    text.split_whitespace()
        .find(|w| w.starts_with(prefix))
        .unwrap_or_else(|| panic!("no {prefix}… in {text:?}"))
        .trim_end_matches([',', ';', '.'])
}

async fn entity_rules_transform_values_inside_free_text(server: TestServer) {
    let node = server.another_node_with(policy(TICKET_RULES)).await;
    let admin = node.token("acme", Role::Admin).await;
    let t = rfc3339(now() - 1.hour());
    let note = format!(
        "paid with {PAN_GROUPED}, wrote from lu@corp.io at 81.2.69.160; call +1 415 555 2671"
    );
    let payload =
        json!({"note": note, "meta": {"from": "lu@corp.io via 81.2.69.161"}, "plan": "pro"});
    let ids = node
        .ingest(
            "acme",
            &admin,
            &record_line("support_ticket", &["lu"], &t, payload),
        )
        .await;
    let stored = node.get_record("acme", &admin, &ids[0]).await.ok_json();
    let text = stored["payload"]["note"].as_str().unwrap().to_owned();
    let token = word_with(&text, "tok_").to_owned();
    let pseudonym = word_with(&text, "pse_").to_owned();
    assert_eq!(
        text,
        format!("paid with {token}, wrote from {pseudonym} at 81.2.69.0; call +* *** *** 2671"),
        "each value is transformed where it stands and the rest of the text is kept"
    );
    // A rule for every field (`*`) reaches nested ones; pseudonyms join across fields.
    assert_eq!(
        stored["payload"]["meta"]["from"],
        format!("{pseudonym} via 81.2.69.0")
    );
    assert_eq!(stored["payload"]["plan"], "pro");
    let found: Vec<(&str, &str)> = stored["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["field"].as_str().unwrap(), f["entity"].as_str().unwrap()))
        .collect();
    assert_eq!(
        found,
        [
            ("meta.from", "EMAIL_ADDRESS"),
            ("meta.from", "IP_ADDRESS"),
            ("note", "CREDIT_CARD"),
            ("note", "EMAIL_ADDRESS"),
            ("note", "IP_ADDRESS"),
            ("note", "PHONE_NUMBER"),
        ]
    );
    let answer = stored.to_string();
    for value in [
        PAN_GROUPED,
        PAN,
        "lu@corp.io",
        "81.2.69.160",
        "415 555 2671",
    ] {
        assert!(!answer.contains(value), "{value} is in {answer}");
    }

    // The token opens with the detokenize permission, naming the rule that made it.
    let ask = |field: &str| json!({"type": "support_ticket", "field": field, "token": token, "reason": "refund RF-7"});
    let opened = node
        .post_json(
            "/v1/tenants/acme/detokenize",
            &admin,
            &ask("note[CREDIT_CARD]"),
        )
        .await
        .ok_json();
    assert_eq!(opened["value"], PAN_GROUPED);
    // Not as a token of the whole field, which has no rule, nor for another tenant.
    node.post_json("/v1/tenants/acme/detokenize", &admin, &ask("note"))
        .await
        .problem(400, "invalid-request");
    let globex = node.token("globex", Role::Admin).await;
    node.post_json(
        "/v1/tenants/globex/detokenize",
        &globex,
        &ask("note[CREDIT_CARD]"),
    )
    .await
    .problem(400, "invalid-request");

    // Neither form of the card number reached storage.
    if node.state.store.backend() == "sqlite" {
        for (name, bytes) in crate::at_rest::files_under(node.data_dir()) {
            for value in [PAN, PAN_GROUPED] {
                assert!(
                    !bytes.windows(value.len()).any(|w| w == value.as_bytes()),
                    "the card number is in {name}"
                );
            }
        }
    }
    drop(node);
}

async fn entity_rules_take_precedence_over_the_class_action(server: TestServer) {
    let node = server
        .another_node_with(policy(&format!(
            "[classes.confidential]\npii = \"reject\"\n{TICKET_RULES}"
        )))
        .await;
    let admin = node.token("acme", Role::Admin).await;
    let t = rfc3339(now() - 1.hour());
    // Covered by an entity rule: transformed, not refused.
    let ok = record_line(
        "support_ticket",
        &["lu"],
        &t,
        json!({"note": format!("card {PAN_GROUPED}")}),
    );
    let ids = node.ingest("acme", &admin, &ok).await;
    let stored = node.get_record("acme", &admin, &ids[0]).await.ok_json();
    assert!(
        stored["payload"]["note"]
            .as_str()
            .unwrap()
            .starts_with("card tok_"),
        "{stored}"
    );
    // The card rule covers `note` only; elsewhere the class refuses it, without the value.
    let other = record_line(
        "support_ticket",
        &["lu"],
        &t,
        json!({"subject": format!("card {PAN_GROUPED}")}),
    );
    let refused = node.post_records("acme", &admin, &other, None).await;
    let problem = refused.problem(422, "invalid-batch");
    let reason = problem["errors"][0]["reason"].as_str().unwrap();
    assert!(
        reason.contains("field subject: CREDIT_CARD found"),
        "{reason}"
    );
    assert!(!refused.text().contains("4539"), "{}", refused.text());
    drop(node);
}
