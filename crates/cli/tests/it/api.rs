//! The HTTP API end to end: ingest and read back, batch validation, idempotency, body limit,
//! pagination, deletion, roles, tenants, authentication, routing errors and the system routes.
//! The core record flows run on SQLite and PostgreSQL.

use std::sync::Arc;

use custodian_core::access::Role;
use custodian_server::problem::Kind;
use custodian_store::TokenRow;
use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan};
use reqwest::Method;
use serde_json::{Value, json};
use tokio::task::JoinSet;

use crate::harness::{
    ABSENT_ID, Backend, TestServer, now, on_both_backends, parse_time, path_segment, record_line,
    rfc3339, sorted, unique,
};

on_both_backends!(
    round_trip_preserves_everything,
    invalid_batch_lists_every_bad_line_and_stores_nothing,
    idempotency_key_replays_and_refuses_reuse,
    subject_listing_pages_in_id_order,
    only_admins_delete,
    bad_credentials_get_401,
    readiness_names_the_store,
    concurrent_retries_with_one_key_store_once,
    concurrent_batches_all_land,
);

async fn round_trip_preserves_everything(server: TestServer) {
    let token = server.token("acme", Role::Writer).await;
    let alice = unique("alice");
    let email = format!("{}@example.com", unique("bob"));
    let event_time = rfc3339(now() - 48.hours());
    let log_payload = json!({
        "msg": "login ok",
        "n": 42,
        "ratio": 0.25,
        "nested": {"list": [1, "two", null, true]},
        "unicode": "héllo ✓ \u{1F512}",
        "escaped": "quote \" backslash \\ newline \n",
    });
    let body = [
        record_line(
            "app_log",
            &[&alice, &email],
            &event_time,
            log_payload.clone(),
        ),
        record_line(
            "customer_record",
            &[&alice],
            &event_time,
            json!({"name": "Alice"}),
        ),
        record_line(
            "incident_artifact",
            &[&email],
            &event_time,
            json!({"case": 7}),
        ),
    ]
    .join("\n");
    let before = now();
    let ids = server.ingest("acme", &token, &body).await;
    let after = now();
    assert_eq!(ids.len(), 3);

    let sent: Timestamp = event_time.parse().unwrap();
    let reply = server.get_record("acme", &token, &ids[0]).await;
    let log = reply.ok_json();
    assert!(
        reply.text().contains(&log_payload.to_string()),
        "the payload comes back byte for byte as sent: {}",
        reply.text()
    );
    assert_eq!(log["id"], ids[0]);
    assert_eq!(log["tenant"], "acme");
    assert_eq!(log["type"], "app_log");
    assert_eq!(log["class"], "internal");
    assert_eq!(log["subjects"], json!([alice, email]));
    assert_eq!(log["payload"], log_payload);
    assert_eq!(parse_time(&log["event_time"]), sent);
    let ingested = parse_time(&log["ingest_time"]);
    // Stores keep microseconds.
    assert!(
        ingested >= before - 1.microsecond() && ingested <= after,
        "{log}"
    );
    // Tier standard is 12mo; app_log clamps it to its max of 180d.
    assert_eq!(
        parse_time(&log["expires_at"]),
        sent + (180 * 24).hours(),
        "{log}"
    );
    assert_eq!(log["retention"], json!({"state": "scheduled"}));
    assert!(
        log["key_bucket"].as_str().unwrap().starts_with('d'),
        "{log}"
    );

    let customer = server.get_record("acme", &token, &ids[1]).await.ok_json();
    assert_eq!(customer["type"], "customer_record");
    assert_eq!(customer["class"], "confidential");
    assert_eq!(customer["payload"], json!({"name": "Alice"}));
    let twelve_months = sent
        .to_zoned(TimeZone::UTC)
        .checked_add(12.months())
        .unwrap()
        .timestamp();
    assert_eq!(parse_time(&customer["expires_at"]), twelve_months);

    let artifact = server.get_record("acme", &token, &ids[2]).await.ok_json();
    assert_eq!(artifact["expires_at"], Value::Null);
    assert_eq!(
        artifact["retention"],
        json!({"state": "pending_event", "event": "ticket_closed"})
    );

    // Subjects are found through the index, including ones that need percent-encoding.
    assert_eq!(
        server.subject_ids("acme", &token, &alice, 100).await,
        sorted(vec![ids[0].clone(), ids[1].clone()])
    );
    assert_eq!(
        server
            .subject_ids("acme", &token, &path_segment(&email), 100)
            .await,
        sorted(vec![ids[0].clone(), ids[2].clone()])
    );
    let page = server
        .list_subject("acme", &token, &alice, "")
        .await
        .ok_json();
    assert!(page.get("next").is_none(), "{page}");
    let listed = page["records"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == ids[0])
        .expect("listed");
    assert_eq!(listed, &log, "a listed record equals the record read alone");
}

async fn invalid_batch_lists_every_bad_line_and_stores_nothing(server: TestServer) {
    let token = server.token("acme", Role::Writer).await;
    let subject = unique("s");
    let t = rfc3339(now() - 1.hour());
    let good = record_line("app_log", &[&subject], &t, json!({"ok": 1}));
    let body = [
        good.clone(),
        record_line("no_such_type", &[&subject], &t, json!({})),
        record_line("app_log", &[&subject], "yesterday", json!({})),
        r#"{"type":"app_log","payload":{}}"#.to_owned(),
        r#"{"type":"app_log","event_time":"#.to_owned(),
        String::new(),
        record_line("app_log", &[&subject], &t, json!([1, 2])),
        good,
    ]
    .join("\n");
    let reply = server.post_records("acme", &token, &body, None).await;
    let problem = reply.problem(422, "invalid-batch");
    let lines: Vec<u64> = problem["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .map(|e| e["line"].as_u64().unwrap())
        .collect();
    assert_eq!(lines, [2, 3, 4, 5, 7], "{problem}");
    assert!(
        problem["detail"].as_str().unwrap().contains('5'),
        "{problem}"
    );
    let reasons: Vec<&str> = problem["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["reason"].as_str().unwrap())
        .collect();
    assert!(reasons[0].contains("unknown data type \"no_such_type\""));
    assert!(reasons[1].contains("not an RFC 3339"));
    assert!(reasons[2].contains("missing field `event_time`"));
    assert!(reasons[4].contains("must be a JSON object"));
    assert!(
        server
            .subject_ids("acme", &token, &subject, 100)
            .await
            .is_empty(),
        "a refused batch stores nothing, not even its valid lines"
    );
}

/// Every kind of bad line, alone in a batch, is refused with a reason naming it.
#[tokio::test]
async fn each_kind_of_bad_line_is_explained() {
    let server = TestServer::sqlite().await;
    let token = server.token("acme", Role::Writer).await;
    let t = rfc3339(now() - 1.hour());
    let future = rfc3339(now() + 48.hours());
    let cases: Vec<(String, &str)> = vec![
        (
            record_line("nope", &[], &t, json!({})),
            "unknown data type \"nope\"; the policy defines: app_log",
        ),
        (
            record_line("app_log", &[], "2025-13-45T00:00:00Z", json!({})),
            "not an RFC 3339",
        ),
        (
            record_line("app_log", &[], "2025-05-01T00:00:00", json!({})),
            "not an RFC 3339",
        ),
        (
            record_line("app_log", &[], &future, json!({})),
            "in the future",
        ),
        (
            json!({"event_time": t, "payload": {}}).to_string(),
            "missing field `type`",
        ),
        (
            json!({"type": "app_log", "event_time": t}).to_string(),
            "missing field `payload`",
        ),
        (
            json!({"type": "app_log", "event_time": t, "payload": {}, "extra": 1}).to_string(),
            "unknown field `extra`",
        ),
        ("{\"type\": \"app_log\",".to_owned(), "EOF"),
        ("not json at all".to_owned(), "expected"),
        ("[1, 2, 3]".to_owned(), "invalid type"),
        (
            record_line("app_log", &[], &t, json!([1, 2])),
            "payload must be a JSON object",
        ),
        (
            record_line("app_log", &[], &t, json!("text")),
            "payload must be a JSON object",
        ),
        (
            record_line("app_log", &[], &t, Value::Null),
            "payload must be a JSON object",
        ),
        (
            record_line("app_log", &[""], &t, json!({})),
            "subject ids must be 1 to 256 bytes",
        ),
        (
            record_line("app_log", &[&"x".repeat(257)], &t, json!({})),
            "subject ids must be 1 to 256 bytes",
        ),
    ];
    for (line, expected) in &cases {
        let reply = server.post_records("acme", &token, line, None).await;
        let problem = reply.problem(422, "invalid-batch");
        let errors = problem["errors"].as_array().expect("errors");
        assert_eq!(errors.len(), 1, "{line}: {problem}");
        assert_eq!(errors[0]["line"], 1, "{line}: {problem}");
        let reason = errors[0]["reason"].as_str().unwrap();
        assert!(
            reason.contains(expected),
            "{line}: reason {reason:?} lacks {expected:?}"
        );
    }
    for empty in ["", "\n", "  \n\n \n"] {
        let reply = server.post_records("acme", &token, empty, None).await;
        let problem = reply.problem(422, "invalid-batch");
        assert!(
            problem["errors"][0]["reason"]
                .as_str()
                .unwrap()
                .contains("empty"),
            "{problem}"
        );
    }
    // Invalid UTF-8 on the third line.
    let mut body = format!(
        "{}\n{}\n",
        record_line("app_log", &[], &t, json!({})),
        record_line("app_log", &[], &t, json!({}))
    )
    .into_bytes();
    body.extend_from_slice(b"{\"type\": \"\xff\xfe\"}\n");
    let reply = server
        .send(
            Method::POST,
            "/v1/tenants/acme/records",
            Some(&token),
            &[],
            Some(body),
        )
        .await;
    let problem = reply.problem(422, "invalid-batch");
    assert_eq!(problem["errors"][0]["line"], 3, "{problem}");
    assert!(
        problem["errors"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("UTF-8")
    );
}

async fn idempotency_key_replays_and_refuses_reuse(server: TestServer) {
    let token = server.token("acme", Role::Writer).await;
    let subject = unique("s");
    let t = rfc3339(now() - 1.hour());
    let body = [
        record_line("app_log", &[&subject], &t, json!({"n": 1})),
        record_line("app_log", &[&subject], &t, json!({"n": 2})),
    ]
    .join("\n");
    let key = unique("key");

    // A refused batch does not consume the key.
    let bad = record_line("nope", &[&subject], &t, json!({}));
    server
        .post_records("acme", &token, &bad, Some(&key))
        .await
        .problem(422, "invalid-batch");

    let first = server.post_records("acme", &token, &body, Some(&key)).await;
    let answer = first.ok_json();
    assert_eq!(answer["accepted"], 2);
    assert_eq!(first.header("idempotent-replayed"), None);

    let replay = server.post_records("acme", &token, &body, Some(&key)).await;
    replay.ok_json();
    assert_eq!(replay.header("idempotent-replayed"), Some("true"));
    assert_eq!(replay.body, first.body, "a replay returns the first answer");
    assert_eq!(
        server
            .subject_ids("acme", &token, &subject, 100)
            .await
            .len(),
        2
    );

    let other = record_line("app_log", &[&subject], &t, json!({"n": 3}));
    let reused = server
        .post_records("acme", &token, &other, Some(&key))
        .await;
    let problem = reused.problem(422, "idempotency-key-reused");
    assert!(problem.get("errors").is_none(), "{problem}");
    assert_eq!(
        server
            .subject_ids("acme", &token, &subject, 100)
            .await
            .len(),
        2,
        "a reused key stores nothing"
    );

    // A new key is a new request.
    server
        .post_records("acme", &token, &body, Some(&unique("key")))
        .await
        .ok_json();
    assert_eq!(
        server
            .subject_ids("acme", &token, &subject, 100)
            .await
            .len(),
        4
    );
}

/// Clients retrying in parallel with one key: exactly one request stores, the others replay
/// its answer, never a 500 from the race on the key.
async fn concurrent_retries_with_one_key_store_once(server: TestServer) {
    let server = Arc::new(server);
    let token = server.token("acme", Role::Writer).await;
    let subject = unique("s");
    let t = rfc3339(now());
    let body = (0..3)
        .map(|i| record_line("app_log", &[&subject], &t, json!({"i": i})))
        .collect::<Vec<_>>()
        .join("\n");
    let key = unique("key");
    let mut requests = JoinSet::new();
    for _ in 0..8 {
        let (server, token, body, key) = (server.clone(), token.clone(), body.clone(), key.clone());
        requests.spawn(async move { server.post_records("acme", &token, &body, Some(&key)).await });
    }
    let replies = requests.join_all().await;
    for reply in &replies {
        reply.ok_json();
        assert_eq!(
            reply.body, replies[0].body,
            "every retry gets the same answer"
        );
    }
    let fresh = replies
        .iter()
        .filter(|r| r.header("idempotent-replayed").is_none())
        .count();
    assert_eq!(fresh, 1, "exactly one request stored the batch");
    assert_eq!(
        server
            .subject_ids("acme", &token, &subject, 100)
            .await
            .len(),
        3
    );
}

/// Parallel batches on a fresh server (so they also race to create the tenant's first key):
/// every record lands once and reads back.
async fn concurrent_batches_all_land(server: TestServer) {
    let server = Arc::new(server);
    let token = server.token("acme", Role::Writer).await;
    let subject = unique("s");
    let t = rfc3339(now());
    let mut batches = JoinSet::new();
    for batch in 0..12 {
        let (server, token, subject, t) =
            (server.clone(), token.clone(), subject.clone(), t.clone());
        batches.spawn(async move {
            let body = (0..25)
                .map(|i| record_line("app_log", &[&subject], &t, json!({"batch": batch, "i": i})))
                .collect::<Vec<_>>()
                .join("\n");
            server.ingest("acme", &token, &body).await
        });
    }
    let ingested = sorted(batches.join_all().await.into_iter().flatten().collect());
    assert_eq!(ingested.len(), 300);
    let listed = server.subject_ids("acme", &token, &subject, 1000).await;
    assert_eq!(listed, ingested, "listed once each, in id order");
    for id in [&ingested[0], &ingested[150], &ingested[299]] {
        server.get_record("acme", &token, id).await.ok_json();
    }
}

#[tokio::test]
async fn malformed_idempotency_keys_are_refused() {
    let server = TestServer::sqlite().await;
    let token = server.token("acme", Role::Writer).await;
    let subject = unique("s");
    let body = record_line("app_log", &[&subject], &rfc3339(now()), json!({}));
    let long = "k".repeat(256);
    for key in ["", long.as_str()] {
        server
            .post_records("acme", &token, &body, Some(key))
            .await
            .problem(400, "invalid-request");
    }
    let max = "k".repeat(255);
    server
        .post_records("acme", &token, &body, Some(&max))
        .await
        .ok_json();
    assert_eq!(
        server
            .subject_ids("acme", &token, &subject, 100)
            .await
            .len(),
        1
    );
}

#[tokio::test]
async fn bodies_over_the_limit_get_413_and_store_nothing() {
    let server = TestServer::start(Backend::Sqlite, 1024).await.unwrap();
    let token = server.token("acme", Role::Writer).await;
    let subject = unique("s");
    let t = rfc3339(now());
    let line = record_line("app_log", &[&subject], &t, json!({"pad": "x".repeat(300)}));
    let small = [line.as_str(), line.as_str()].join("\n");
    assert!(small.len() < 1024);
    let large = [line.as_str(); 4].join("\n");
    assert!(large.len() > 1024);

    let problem = server
        .post_records("acme", &token, &large, None)
        .await
        .problem(413, "payload-too-large");
    assert!(problem["detail"].as_str().unwrap().contains("limit"));
    assert!(
        server
            .subject_ids("acme", &token, &subject, 100)
            .await
            .is_empty()
    );

    assert_eq!(server.ingest("acme", &token, &small).await.len(), 2);
    assert_eq!(
        server
            .subject_ids("acme", &token, &subject, 100)
            .await
            .len(),
        2
    );
}

async fn subject_listing_pages_in_id_order(server: TestServer) {
    let token = server.token("acme", Role::Reader).await;
    let writer = server.token("acme", Role::Writer).await;
    let subject = unique("s");
    let other = unique("other");
    let t = rfc3339(now() - 1.hour());
    let mut ids = Vec::new();
    // Two batches, so ids come from two different milliseconds as well as one.
    for batch in 0..2 {
        let mut lines: Vec<String> = (0..3)
            .map(|i| record_line("app_log", &[&subject], &t, json!({"batch": batch, "i": i})))
            .collect();
        lines.push(record_line("app_log", &[&other], &t, json!({})));
        let mut got = server.ingest("acme", &writer, &lines.join("\n")).await;
        got.pop();
        ids.extend(got);
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    ids.sort();

    // limit 4 over 6 records: a full page with `next`, then the rest without.
    let first = server
        .list_subject("acme", &token, &subject, "limit=4")
        .await
        .ok_json();
    let page_ids = |page: &Value| -> Vec<String> {
        page["records"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(page_ids(&first), ids[..4]);
    assert_eq!(first["next"], ids[3]);
    let second = server
        .list_subject(
            "acme",
            &token,
            &subject,
            &format!("limit=4&after={}", ids[3]),
        )
        .await
        .ok_json();
    assert_eq!(page_ids(&second), ids[4..]);
    assert!(second.get("next").is_none(), "{second}");

    // Every page size walks the same ids, in order, each once.
    for limit in [1, 2, 3, 6, 7] {
        assert_eq!(
            server.subject_ids("acme", &token, &subject, limit).await,
            ids,
            "limit {limit}"
        );
    }
    let end = server
        .list_subject("acme", &token, &subject, &format!("after={}", ids[5]))
        .await
        .ok_json();
    assert_eq!(end, json!({"records": []}));
    assert_eq!(
        server.subject_ids("acme", &token, &other, 100).await.len(),
        2
    );

    for query in [
        "limit=0",
        "limit=1001",
        "limit=two",
        "after=nope",
        "sort=asc",
    ] {
        server
            .list_subject("acme", &token, &subject, query)
            .await
            .problem(400, "invalid-request");
    }
}

async fn only_admins_delete(server: TestServer) {
    let admin = server.token("acme", Role::Admin).await;
    let writer = server.token("acme", Role::Writer).await;
    let reader = server.token("acme", Role::Reader).await;
    let subject = unique("s");
    let t = rfc3339(now());
    let body = [
        record_line("app_log", &[&subject], &t, json!({"keep": false})),
        record_line("app_log", &[&subject], &t, json!({"keep": true})),
    ]
    .join("\n");
    let ids = server.ingest("acme", &writer, &body).await;
    let path = format!("/v1/tenants/acme/records/{}", ids[0]);

    for token in [&writer, &reader] {
        server.delete(&path, token).await.problem(403, "forbidden");
    }
    server.get_record("acme", &reader, &ids[0]).await.ok_json();

    let deleted = server.delete(&path, &admin).await.ok_json();
    assert_eq!(deleted["state"], "destroyed");
    assert!(deleted["certificate"].as_str().unwrap().starts_with("del_"));
    server
        .get_record("acme", &admin, &ids[0])
        .await
        .problem(404, "record-not-found");
    server
        .delete(&path, &admin)
        .await
        .problem(404, "record-not-found");
    assert_eq!(
        server.subject_ids("acme", &reader, &subject, 100).await,
        [ids[1].clone()],
        "the index forgets a deleted record"
    );
    let kept = server.get_record("acme", &reader, &ids[1]).await.ok_json();
    assert_eq!(kept["payload"], json!({"keep": true}));
}

#[tokio::test]
async fn readers_cannot_ingest() {
    let server = TestServer::sqlite().await;
    let reader = server.token("acme", Role::Reader).await;
    let subject = unique("s");
    let body = record_line("app_log", &[&subject], &rfc3339(now()), json!({}));
    server
        .post_records("acme", &reader, &body, None)
        .await
        .problem(403, "forbidden");
    // Roles with no standing access to records get nothing either.
    let auditor = server.token("acme", Role::Auditor).await;
    server
        .post_records("acme", &auditor, &body, None)
        .await
        .problem(403, "forbidden");
    server
        .list_subject("acme", &auditor, &subject, "")
        .await
        .problem(403, "forbidden");
    assert!(
        server
            .subject_ids("acme", &reader, &subject, 100)
            .await
            .is_empty()
    );
}

#[tokio::test]
async fn tenant_membership_is_checked_before_existence() {
    let server = TestServer::sqlite().await;
    let acme = server.token("acme", Role::Admin).await;
    let body = record_line("app_log", &[], &rfc3339(now()), json!({}));
    // A tenant that does not exist looks the same as one that belongs to someone else.
    for tenant in ["nope", "Not-A-Valid-Id"] {
        server
            .get(
                &format!("/v1/tenants/{tenant}/records/{ABSENT_ID}"),
                Some(&acme),
            )
            .await
            .problem(403, "forbidden");
        server
            .post_records(tenant, &acme, &body, None)
            .await
            .problem(403, "forbidden");
    }
    // A token of a tenant the policy does not define learns that it is unknown.
    let stray = server.token("initech", Role::Admin).await;
    server
        .get(
            &format!("/v1/tenants/initech/records/{ABSENT_ID}"),
            Some(&stray),
        )
        .await
        .problem(404, "unknown-tenant");
    server
        .post_records("initech", &stray, &body, None)
        .await
        .problem(404, "unknown-tenant");
}

async fn bad_credentials_get_401(server: TestServer) {
    let good = server.token("acme", Role::Reader).await;
    let path = format!("/v1/tenants/acme/records/{ABSENT_ID}");
    let (id, secret) = good
        .strip_prefix("cst_")
        .and_then(|s| s.split_once('_'))
        .expect("token shape");
    let flipped = format!(
        "cst_{id}_{}{}",
        &secret[..63],
        if secret.ends_with('0') { '1' } else { '0' }
    );

    let t0 = now();
    let expired = custodian_server::auth::issue_token(
        &server.state.audit,
        &custodian_server::clock::SystemClock,
        &custodian_server::auth::TokenIssuer {
            actor: "test",
            subsystem: "test",
        },
        &"acme".parse().unwrap(),
        Role::Reader,
        Some(t0 - 1.second()),
    )
    .await
    .unwrap();
    let revoked_secret = "ab".repeat(32);
    let revoked_id: String = custodian_crypto::random_bytes::<8>()
        .unwrap()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    server
        .state
        .store
        .insert_token(
            TokenRow {
                id: revoked_id.clone(),
                tenant: "acme".parse().unwrap(),
                role: "reader".into(),
                secret_hash: custodian_crypto::sha256(revoked_secret.as_bytes()),
                created_at: t0 - 2.hours(),
                expires_at: None,
                revoked_at: Some(t0 - 1.hour()),
                last_used_at: None,
            },
            &custodian_store::AuditLog::Tenant("acme".parse().unwrap()),
            custodian_store::AuditEntry::clear(b"{}".to_vec()),
        )
        .await
        .unwrap();
    let revoked = format!("cst_{revoked_id}_{revoked_secret}");

    let bearer = |t: &str| format!("Bearer {t}");
    let cases: Vec<(Option<String>, &str)> = vec![
        (None, "Authorization"),
        (Some(String::new()), "Bearer"),
        (Some("Basic dXNlcjpwYXNz".into()), "Bearer"),
        (Some(good.clone()), "Bearer"),
        (Some(bearer("garbage")), "not a custodian token"),
        (
            Some(bearer(&format!("cst_{}_{secret}", "0".repeat(16)))),
            "not valid",
        ),
        (Some(bearer(&flipped)), "not valid"),
        (Some(bearer(expired.token.as_str())), "expired"),
        (Some(bearer(&revoked)), "revoked"),
    ];
    for (authorization, detail) in &cases {
        let headers: Vec<(&str, &str)> = authorization
            .as_deref()
            .map(|a| vec![("authorization", a)])
            .unwrap_or_default();
        let reply = server.send(Method::GET, &path, None, &headers, None).await;
        let problem = reply.problem(401, "unauthorized");
        assert!(
            problem["detail"].as_str().unwrap().contains(detail),
            "{authorization:?}: {problem}"
        );
    }
    // The same path with the good token gets past authentication.
    server
        .get(&path, Some(&good))
        .await
        .problem(404, "record-not-found");
}

#[tokio::test]
async fn malformed_paths_and_methods_are_problems() {
    let server = TestServer::sqlite().await;
    let token = server.token("acme", Role::Admin).await;
    for id in [
        "not-a-ulid",
        "01HZZZZZZZZZZZZZZZZZZZZZZ",
        "01HZZZZZZZZZZZZZZZZZZZZZZUU",
    ] {
        server
            .get(&format!("/v1/tenants/acme/records/{id}"), Some(&token))
            .await
            .problem(400, "invalid-request");
        server
            .delete(&format!("/v1/tenants/acme/records/{id}"), &token)
            .await
            .problem(400, "invalid-request");
    }
    for path in [
        "/",
        "/v1",
        "/v1/tenants/acme",
        "/v1/tenants/acme/records/a/b",
        "/healthz/x",
    ] {
        let problem = server
            .get(path, Some(&token))
            .await
            .problem(404, "not-found");
        assert!(
            problem["detail"].as_str().unwrap().contains(path),
            "{problem}"
        );
    }
    let record = format!("/v1/tenants/acme/records/{ABSENT_ID}");
    let wrong: [(Method, &str, &str); 4] = [
        (Method::PUT, "/v1/tenants/acme/records", "POST"),
        (Method::GET, "/v1/tenants/acme/records", "POST"),
        (Method::POST, &record, "GET,HEAD,DELETE"),
        (Method::DELETE, "/healthz", "GET,HEAD"),
    ];
    for (method, path, allow) in wrong {
        let reply = server.send(method, path, Some(&token), &[], None).await;
        reply.problem(405, "method-not-allowed");
        let mut allowed: Vec<&str> = reply.header("allow").expect("Allow").split(',').collect();
        allowed.sort();
        let mut expected: Vec<&str> = allow.split(',').collect();
        expected.sort();
        assert_eq!(allowed, expected, "{path}");
    }
}

#[tokio::test]
async fn system_routes_answer() {
    let server = TestServer::sqlite().await;
    let health = server.get("/healthz", None).await;
    assert_eq!(health.ok_json(), json!({"status": "ok"}));
    let request_id = health.header("x-request-id").expect("x-request-id");
    assert!(request_id.parse::<ulid::Ulid>().is_ok(), "{request_id}");

    let openapi = server.get("/openapi.json", None).await.ok_json();
    assert!(
        openapi["openapi"].as_str().unwrap().starts_with("3."),
        "{openapi}"
    );
    let paths = &openapi["paths"];
    for (path, method) in [
        ("/v1/tenants/{tenant}/records", "post"),
        ("/v1/tenants/{tenant}/records/{id}", "get"),
        ("/v1/tenants/{tenant}/records/{id}", "delete"),
        ("/v1/tenants/{tenant}/subjects/{subject}/records", "get"),
        ("/v1/tenants/{tenant}/holds", "post"),
        ("/v1/tenants/{tenant}/holds", "get"),
        ("/v1/tenants/{tenant}/holds/{id}", "delete"),
        ("/v1/tenants/{tenant}/events", "post"),
        ("/v1/tenants/{tenant}/retention/plan", "get"),
        ("/v1/tenants/{tenant}/deletions", "get"),
        ("/v1/tenants/{tenant}/deletions/{id}", "get"),
        ("/v1/tenants/{tenant}/scheduled-deletions", "get"),
        ("/v1/tenants/{tenant}/scheduled-deletions/{id}", "delete"),
        ("/v1/tenants/{tenant}/terminate", "post"),
        ("/v1/tenants/{tenant}/terminate", "delete"),
        ("/v1/system/retention/plan", "get"),
        ("/v1/system/retention/sweep", "post"),
    ] {
        assert!(paths[path][method].is_object(), "{method} {path} missing");
    }

    for kind in Kind::ALL {
        let doc = server
            .get(&format!("/problems/{}", kind.slug()), None)
            .await
            .ok_json();
        assert_eq!(doc["type"], format!("/problems/{}", kind.slug()));
        assert_eq!(doc["status"], kind.status().as_u16());
        assert_eq!(doc["title"], kind.title());
        assert!(!doc["description"].as_str().unwrap().is_empty());
    }
    let batch = server.get("/problems/invalid-batch", None).await.ok_json();
    assert_eq!(batch["status"], 422);
    assert!(batch["description"].as_str().unwrap().contains("errors"));
    server
        .get("/problems/no-such-problem", None)
        .await
        .problem(404, "not-found");
}

async fn readiness_names_the_store(server: TestServer) {
    let ready = server.get("/readyz", None).await.ok_json();
    let backend = match server.backend {
        Backend::Sqlite => "sqlite",
        Backend::Postgres => "postgres",
    };
    assert_eq!(
        ready,
        json!({"status": "ready", "store": backend, "root_key": "dev"})
    );
}

#[tokio::test]
async fn metrics_count_requests_without_record_data() {
    let server = TestServer::sqlite().await;
    let token = server.token("acme", Role::Writer).await;
    let subject = unique("metric-subject");
    // The recorder is process-wide; make sure it is installed before counting.
    server.get("/metrics", None).await;
    let ids = server
        .ingest(
            "acme",
            &token,
            &record_line("app_log", &[&subject], &rfc3339(now()), json!({})),
        )
        .await;
    server.get_record("acme", &token, &ids[0]).await.ok_json();
    server
        .list_subject("acme", &token, &subject, "")
        .await
        .ok_json();
    server
        .get("/no/such/route", None)
        .await
        .problem(404, "not-found");

    let metrics = server.get("/metrics", None).await;
    assert_eq!(metrics.status, 200);
    assert!(
        metrics
            .header("content-type")
            .unwrap()
            .starts_with("text/plain")
    );
    let text = metrics.text();
    assert!(text.contains("http_requests_total"), "{text}");
    assert!(
        text.lines().any(|l| l.starts_with("http_requests_total")
            && l.contains("route=\"/v1/tenants/{tenant}/records/{id}\"")
            && l.contains("status=\"200\"")),
        "{text}"
    );
    assert!(text.contains("route=\"unmatched\""), "{text}");
    for secret in [subject.as_str(), ids[0].as_str(), "/no/such/route"] {
        assert!(!text.contains(secret), "metrics leak {secret:?}");
    }
}

/// The ULID spec bounds ids at `7ZZZZZZZZZZZZZZZZZZZZZZZZZ`; a larger one must be refused, not
/// wrapped around to alias another record's id.
#[tokio::test]
async fn overflowing_record_ids_are_refused() {
    let server = TestServer::sqlite().await;
    let token = server.token("acme", Role::Writer).await;
    let ids = server
        .ingest(
            "acme",
            &token,
            &record_line("app_log", &[], &rfc3339(now()), json!({})),
        )
        .await;
    let first = ids[0].chars().next().unwrap().to_digit(10).unwrap();
    let alias = format!("{}{}", first + 8, &ids[0][1..]);
    server
        .get_record("acme", &token, &alias)
        .await
        .problem(400, "invalid-request");
}

/// Two nodes on one PostgreSQL database: started together, they agree on the tenant's first
/// key, read each other's records, share idempotency keys and see each other's deletions.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nodes_share_one_postgres_database() {
    let Some(a) = TestServer::postgres().await else {
        return;
    };
    let b = a.another_node().await;
    let writer = a.token("acme", Role::Writer).await;
    let admin = b.token("acme", Role::Admin).await;
    let subject = unique("s");
    let t = rfc3339(now());
    let line = |n: u32| record_line("app_log", &[&subject], &t, json!({"n": n}));
    let lines: Vec<String> = (1..=4).map(line).collect();
    // Neither node has acme's key yet: these race to create it.
    let (from_a, from_b, more_a, more_b) = tokio::join!(
        a.ingest("acme", &writer, &lines[0]),
        b.ingest("acme", &writer, &lines[1]),
        a.ingest("acme", &writer, &lines[2]),
        b.ingest("acme", &writer, &lines[3]),
    );
    for (node, id) in [
        (&b, &from_a[0]),
        (&a, &from_b[0]),
        (&b, &more_a[0]),
        (&a, &more_b[0]),
    ] {
        let record = node.get_record("acme", &writer, id).await.ok_json();
        assert!(record["key_bucket"].is_string());
    }
    assert_eq!(a.subject_ids("acme", &writer, &subject, 100).await.len(), 4);

    let key = unique("key");
    let first = a.post_records("acme", &writer, &line(5), Some(&key)).await;
    first.ok_json();
    let replay = b.post_records("acme", &writer, &line(5), Some(&key)).await;
    replay.ok_json();
    assert_eq!(replay.header("idempotent-replayed"), Some("true"));
    assert_eq!(replay.body, first.body);

    let path = format!("/v1/tenants/acme/records/{}", from_a[0]);
    assert_eq!(b.delete(&path, &admin).await.status, 200);
    a.get_record("acme", &writer, &from_a[0])
        .await
        .problem(404, "record-not-found");
    drop(b);
}
