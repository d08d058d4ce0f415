//! Data-subject rights end to end over HTTP and the CLI: export, offline verification, erasure
//! (with holds, anonymisation and idempotency), rectification, the request log, and tenant
//! isolation of all of them.

use std::io::Read;

use custodian_core::access::Role;
use custodian_core::policy::Policy;
use custodian_crypto::DataKeyId;
use custodian_server::retention::Certificate;
use jiff::ToSpan;
use serde_json::{Value, json};

use crate::harness::{
    TestServer, default_policy_text, now, on_both_backends, path_segment, record_line, rfc3339,
};

on_both_backends!(
    export_verify_then_erase,
    erasure_stops_at_a_hold_unless_the_policy_erases_the_rest,
    anonymised_types_stay_without_their_subject,
    rectification_rewrites_one_record_and_audits_only_hashes,
    erasure_waits_out_a_cancel_window,
    a_large_export_streams_every_page,
);

fn custodian(args: Vec<String>) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_custodian"))
        .args(args)
        .output()
        .unwrap()
}

/// The CLI off the async workers, so the in-process server keeps answering meanwhile.
async fn custodian_async(args: &[&str]) -> std::process::Output {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    tokio::task::spawn_blocking(move || custodian(args))
        .await
        .unwrap()
}

fn request(reference: &str) -> Value {
    json!({"reference": reference, "reason": "data subject request"})
}

async fn erase(server: &TestServer, tenant: &str, token: &str, subject: &str) -> (u16, Value) {
    let reply = server
        .post_json(
            &format!(
                "/v1/tenants/{tenant}/subjects/{}/erase",
                path_segment(subject)
            ),
            token,
            &request("DSR-7"),
        )
        .await;
    (reply.status.as_u16(), reply.json())
}

/// Exports `subject` with the CLI into a temp dir; returns the archive's path (the dir lives
/// as long as the returned guard).
async fn export(
    server: &TestServer,
    token: &str,
    subject: &str,
) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("export.tar");
    let run = custodian_async(&[
        "subject",
        "export",
        "--server",
        &server.base,
        "--token",
        token,
        "--tenant",
        "acme",
        subject,
        "--reference",
        "DSR-1",
        "--out",
        out.to_str().unwrap(),
    ])
    .await;
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    (dir, out)
}

/// The archive's files, by path.
fn files(archive: &std::path::Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    let mut out = std::collections::BTreeMap::new();
    let mut tar = tar::Archive::new(std::fs::File::open(archive).unwrap());
    for entry in tar.entries().unwrap() {
        let mut entry = entry.unwrap();
        let path = entry.path().unwrap().to_string_lossy().into_owned();
        let mut bytes = Vec::new();
        entry.read_to_end(&mut bytes).unwrap();
        out.insert(path, bytes);
    }
    out
}

fn verify(server: &TestServer, archive: &std::path::Path) -> std::process::Output {
    custodian(vec![
        "subject".into(),
        "verify-export".into(),
        archive.to_str().unwrap().into(),
        "--key".into(),
        server.state.audit.verifier_key().unwrap(),
    ])
}

async fn export_verify_then_erase(server: TestServer) {
    let admin = server.token("acme", Role::Admin).await;
    let globex = server.token("globex", Role::Admin).await;
    let auditor = server.token("acme", Role::Auditor).await;
    // An id with characters a URL path must escape.
    let ada = "ada lovelace/ü?#1";
    let t = rfc3339(now() - 1.hour());
    let body = [
        record_line("customer_record", &[ada], &t, json!({"note": "ada-1"})),
        record_line("customer_record", &[ada], &t, json!({"note": "ada-2"})),
        record_line("auth_log", &[ada], &t, json!({"login": "ada-3"})),
        record_line("customer_record", &["bob"], &t, json!({"note": "bob-1"})),
    ]
    .join("\n");
    let ids = server.ingest("acme", &admin, &body).await;
    let other = server
        .ingest(
            "globex",
            &globex,
            &record_line("customer_record", &[ada], &t, json!({"note": "globex-ada"})),
        )
        .await;

    // Export: every record of the subject in this tenant, none of another tenant's.
    let (_dir, archive) = export(&server, &admin, ada).await;
    let verified = verify(&server, &archive);
    let stdout = String::from_utf8_lossy(&verified.stdout);
    assert!(
        verified.status.success(),
        "{}",
        String::from_utf8_lossy(&verified.stderr)
    );
    assert!(stdout.contains("OK: 3 records in 3 files"), "{stdout}");
    let content = files(&archive);
    assert_eq!(
        content.keys().collect::<Vec<_>>(),
        [
            "data/auth_log.json",
            "data/customer_record.json",
            "manifest.json",
            "manifest.sig",
            "schema.json"
        ]
    );
    let customers: Vec<Value> =
        serde_json::from_slice(&content["data/customer_record.json"]).unwrap();
    assert_eq!(customers.len(), 2);
    assert!(customers.iter().all(|r| r["subjects"] == json!([ada])));
    assert!(customers.iter().all(|r| r["retention"].is_string()));
    let all = String::from_utf8_lossy(&content["data/customer_record.json"]).into_owned()
        + &String::from_utf8_lossy(&content["data/auth_log.json"]);
    assert!(all.contains("ada-1") && all.contains("ada-3"));
    assert!(
        !all.contains("globex-ada") && !all.contains("bob-1"),
        "{all}"
    );
    let schema: Value = serde_json::from_slice(&content["schema.json"]).unwrap();
    assert_eq!(
        schema["x-custodian-data-types"]["customer_record"]["class"],
        "confidential"
    );

    // A changed file, or a manifest changed to match it, fails verification.
    let forged = archive.with_extension("forged.tar");
    rewrite(&archive, &forged, "data/auth_log.json", |b| {
        String::from_utf8(b.to_vec())
            .unwrap()
            .replace("ada-3", "ada-X")
            .into_bytes()
    });
    let caught = verify(&server, &forged);
    assert_eq!(caught.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&caught.stderr).contains("data/auth_log.json does not match"));
    rewrite(&archive, &forged, "manifest.json", |b| {
        String::from_utf8(b.to_vec())
            .unwrap()
            .replace("\"records\": 2", "\"records\": 9")
            .into_bytes()
    });
    let caught = verify(&server, &forged);
    assert_eq!(caught.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&caught.stderr).contains("manifest.json was changed"));

    // An unknown subject: an empty export, not an error.
    let (_empty_dir, empty) = export(&server, &admin, "nobody-at-all").await;
    let run = verify(&server, &empty);
    assert!(String::from_utf8_lossy(&run.stdout).contains("OK: 0 records in 1 files"));

    // Erase: every record of the subject unreadable and gone; others untouched.
    let (status, erased) = erase(&server, "acme", &admin, ada).await;
    assert_eq!(status, 200, "{erased}");
    assert_eq!(erased["records_erased"], 3);
    assert_eq!(erased["request"]["status"], "completed");
    let certificate_id = erased["certificate"].as_str().unwrap().to_owned();
    for id in &ids[..3] {
        assert_eq!(server.get_record("acme", &admin, id).await.status, 404);
    }
    assert!(
        server
            .subject_ids("acme", &admin, &path_segment(ada), 10)
            .await
            .is_empty()
    );
    assert_eq!(server.get_record("acme", &admin, &ids[3]).await.status, 200);
    assert_eq!(
        server.get_record("globex", &globex, &other[0]).await.status,
        200,
        "the same subject id in another tenant is another subject"
    );
    let tenant = "acme".parse().unwrap();
    let pseudonym = server
        .state
        .keys
        .tenant(&tenant)
        .await
        .unwrap()
        .pseudonym(ada);
    assert!(matches!(
        server
            .state
            .keys
            .data_keys(&tenant, &[DataKeyId::Subject(pseudonym)], false, "")
            .await,
        Err(custodian_server::ServerError::KeyDestroyed { .. })
    ));

    // The certificate is signed by the deployment and names the subject key.
    let cert = server
        .get(
            &format!("/v1/tenants/acme/deletions/{certificate_id}"),
            Some(&admin),
        )
        .await
        .ok_json();
    let verifier =
        custodian_tlog::Verifier::parse(&server.state.audit.verifier_key().unwrap()).unwrap();
    let certificate = Certificate::from_signed_text(
        verifier
            .open_text(cert["signed_note"].as_str().unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(certificate.record_count, 3);
    assert_eq!(
        certificate.key_ids,
        vec![DataKeyId::Subject(pseudonym).encode()]
    );

    // Again: the same answer, nothing more done.
    let (status, again) = erase(&server, "acme", &admin, ada).await;
    assert_eq!(status, 200);
    assert_eq!(again["already_erased"], true);
    assert_eq!(again["certificate"], json!(certificate_id));

    // The request log shows each request answered in time, to an auditor too.
    let log = server
        .get("/v1/tenants/acme/subject-requests", Some(&auditor))
        .await
        .ok_json();
    let kinds: Vec<(&str, &str)> = log["requests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["kind"].as_str().unwrap(), r["status"].as_str().unwrap()))
        .collect();
    assert_eq!(
        kinds,
        [
            ("erasure", "completed"),
            ("erasure", "completed"),
            ("access", "completed"),
            ("access", "completed"),
        ]
    );
    assert!(
        log["requests"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["in_time"] == true)
    );
    let globex_log = server
        .get("/v1/tenants/globex/subject-requests", Some(&globex))
        .await
        .ok_json();
    assert_eq!(globex_log["requests"], json!([]));
    // A reader may not erase; an auditor may not export.
    let reader = server.token("acme", Role::Reader).await;
    assert_eq!(erase(&server, "acme", &reader, "bob").await.0, 403);
    let refused = server
        .post_json(
            "/v1/tenants/acme/subjects/bob/export",
            &auditor,
            &request("X"),
        )
        .await;
    assert_eq!(refused.status, 403);
    let blank = server
        .post_json(
            "/v1/tenants/acme/subjects/bob/erase",
            &admin,
            &json!({"reference": " ", "reason": "r"}),
        )
        .await;
    blank.problem(400, "invalid-request");

    // The audit log has the requests, the erasure and its answer, with pseudonyms only.
    let acme_log = custodian_store::AuditLog::Tenant(tenant.clone());
    let size = server.state.audit.size(&acme_log).await.unwrap();
    let events: Vec<Value> = server
        .audit_bodies(&acme_log, 0, size)
        .await
        .iter()
        .map(|b| serde_json::from_slice(b).unwrap())
        .collect();
    for action in [
        "subjects.access.request",
        "subjects.access.answer",
        "subjects.erasure.request",
        "subjects.erase",
        "subjects.erasure.answer",
    ] {
        assert!(
            events.iter().any(|e| e["action"] == action),
            "{action} missing"
        );
    }
    let text = serde_json::to_string(&events).unwrap();
    assert!(
        !text.contains("lovelace"),
        "a subject id reached the audit log"
    );
}

/// Copies a tar archive, replacing one file's bytes.
fn rewrite(
    from: &std::path::Path,
    to: &std::path::Path,
    path: &str,
    change: impl Fn(&[u8]) -> Vec<u8>,
) {
    let mut out = tar::Builder::new(std::fs::File::create(to).unwrap());
    for (name, bytes) in files(from) {
        let bytes = if name == path { change(&bytes) } else { bytes };
        let mut header = tar::Header::new_ustar();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        out.append_data(&mut header, &name, bytes.as_slice())
            .unwrap();
    }
    out.finish().unwrap();
}

async fn erasure_stops_at_a_hold_unless_the_policy_erases_the_rest(server: TestServer) {
    let admin = server.token("acme", Role::Admin).await;
    let t = rfc3339(now() - 1.hour());
    let body = [
        record_line("customer_record", &["carol"], &t, json!({"n": 1})),
        record_line("auth_log", &["carol"], &t, json!({"n": 2})),
    ]
    .join("\n");
    let ids = server.ingest("acme", &admin, &body).await;
    let hold = server
        .post_json(
            "/v1/tenants/acme/holds",
            &admin,
            &json!({"scope": {"kind": "data_type", "data_type": "auth_log"}, "case_id": "C-1", "reason": "litigation"}),
        )
        .await;
    assert_eq!(hold.status, 201, "{}", hold.text());
    let hold = hold.json();
    let hold_id = hold["id"].as_str().unwrap();

    let (status, problem) = erase(&server, "acme", &admin, "carol").await;
    assert_eq!(status, 409, "{problem}");
    assert_eq!(problem["type"], "/problems/under-hold");
    assert_eq!(problem["holds"], json!([hold_id]));
    for id in &ids {
        assert_eq!(server.get_record("acme", &admin, id).await.status, 200);
    }
    let log = server
        .get(
            "/v1/tenants/acme/subject-requests?subject=carol",
            Some(&admin),
        )
        .await
        .ok_json();
    assert_eq!(log["requests"][0]["status"], "refused");
    assert_eq!(log["requests"][0]["outcome"]["holds"], json!([hold_id]));

    // A deployment whose policy erases the rest: the held record stays, readable, and no
    // longer under the subject; the other is destroyed.
    let text = format!(
        "{}\n[subject_rights]\nerasure_under_hold = \"erase_rest\"\n",
        default_policy_text()
    );
    let node = server
        .another_node_with(Policy::parse("rest.toml", &text).unwrap())
        .await;
    let (status, erased) = erase(&node, "acme", &admin, "carol").await;
    assert_eq!(status, 200, "{erased}");
    assert_eq!(erased["request"]["status"], "partial");
    assert_eq!(erased["records_erased"], 1);
    assert_eq!(
        erased["held"],
        json!([{"record": ids[1], "holds": [hold_id]}])
    );
    assert_eq!(node.get_record("acme", &admin, &ids[0]).await.status, 404);
    let kept = node.get_record("acme", &admin, &ids[1]).await.ok_json();
    assert_eq!(kept["payload"], json!({"n": 2}));
    assert!(
        node.subject_ids("acme", &admin, "carol", 10)
            .await
            .is_empty()
    );
    drop(node);
}

async fn anonymised_types_stay_without_their_subject(server: TestServer) {
    let text = default_policy_text().replacen(
        "[data_types.customer_record]\n",
        "[data_types.customer_record]\ndelete = \"anonymize\"\nfields = { name = \"redact\" }\n",
        1,
    );
    let node = server
        .another_node_with(Policy::parse("anon.toml", &text).unwrap())
        .await;
    let admin = node.token("acme", Role::Admin).await;
    let t = rfc3339(now() - 1.hour());
    let body = [
        record_line(
            "customer_record",
            &["dave-77"],
            &t,
            json!({"name": "Dave Doe", "plan": "pro", "note": "dave-77 mailed dave@doe.org"}),
        ),
        record_line("auth_log", &["dave-77"], &t, json!({"ok": true})),
    ]
    .join("\n");
    let ids = node.ingest("acme", &admin, &body).await;
    let (status, erased) = erase(&node, "acme", &admin, "dave-77").await;
    assert_eq!(status, 200, "{erased}");
    assert_eq!(
        (
            erased["records_erased"].clone(),
            erased["records_anonymised"].clone()
        ),
        (json!(1), json!(1))
    );
    assert_eq!(node.get_record("acme", &admin, &ids[1]).await.status, 404);
    let kept = node.get_record("acme", &admin, &ids[0]).await.ok_json();
    assert_eq!(kept["subjects"], json!([]));
    assert_eq!(
        kept["payload"],
        json!({"name": "<REMOVED>", "plan": "pro", "note": "<SUBJECT> mailed <EMAIL_ADDRESS>"})
    );
    assert!(
        node.subject_ids("acme", &admin, "dave-77", 10)
            .await
            .is_empty()
    );
    drop(node);
}

async fn rectification_rewrites_one_record_and_audits_only_hashes(server: TestServer) {
    let admin = server.token("acme", Role::Admin).await;
    let t = rfc3339(now() - 1.hour());
    let ids = server
        .ingest(
            "acme",
            &admin,
            &[
                record_line("customer_record", &["erin"], &t, json!({"city": "Lyon"})),
                record_line("auth_log", &["erin"], &t, json!({"ok": true})),
            ]
            .join("\n"),
        )
        .await;
    let rectify = |id: &str, payload: Value| {
        let path = format!("/v1/tenants/acme/subjects/erin/records/{id}/rectify");
        let body = json!({"payload": payload, "reference": "DSR-9", "reason": "moved"});
        let server = &server;
        let admin = admin.clone();
        async move { server.post_json(&path, &admin, &body).await }
    };
    let done = rectify(&ids[0], json!({"city": "Paris"})).await.ok_json();
    assert_eq!(done["request"]["kind"], "rectification");
    let record = server.get_record("acme", &admin, &ids[0]).await.ok_json();
    assert_eq!(record["payload"], json!({"city": "Paris"}));
    assert_eq!(record["subjects"], json!(["erin"]));
    assert_eq!(
        server.subject_ids("acme", &admin, "erin", 10).await.len(),
        2
    );

    let tenant = "acme".parse().unwrap();
    let log = custodian_store::AuditLog::Tenant(tenant);
    let size = server.state.audit.size(&log).await.unwrap();
    let events = server.audit_bodies(&log, 0, size).await;
    let event: Value = events
        .iter()
        .map(|b| serde_json::from_slice::<Value>(b).unwrap())
        .find(|e| e["action"] == "subjects.rectify")
        .unwrap();
    assert_eq!(event["before"], done["before_sha256"]);
    assert_eq!(event["after"], done["after_sha256"]);
    let text = String::from_utf8_lossy(&events.concat()).into_owned();
    assert!(!text.contains("Paris") && !text.contains("Lyon"));

    // Another subject's record, an unknown id, and a held record are refused.
    let other = server
        .ingest(
            "acme",
            &admin,
            &record_line("customer_record", &["frank"], &t, json!({})),
        )
        .await;
    rectify(&other[0], json!({}))
        .await
        .problem(404, "record-not-found");
    server
        .post_json(
            "/v1/tenants/acme/holds",
            &admin,
            &json!({"scope": {"kind": "subject", "subject": "erin"}, "case_id": "C", "reason": "r"}),
        )
        .await
        .json();
    rectify(&ids[1], json!({"ok": false}))
        .await
        .problem(409, "under-hold");
    let unchanged = server.get_record("acme", &admin, &ids[1]).await.ok_json();
    assert_eq!(unchanged["payload"], json!({"ok": true}));
}

async fn erasure_waits_out_a_cancel_window(server: TestServer) {
    let admin = server.token("acme", Role::Admin).await;
    let operator = server.operator_token().await;
    let t = rfc3339(now() - 1.hour());
    // Payments have a 7-day cancel window in the default policy.
    let ids = server
        .ingest(
            "acme",
            &admin,
            &[
                record_line("payment", &["gina"], &t, json!({"amount": 5})),
                record_line("customer_record", &["gina"], &t, json!({})),
            ]
            .join("\n"),
        )
        .await;
    let (status, first) = erase(&server, "acme", &admin, "gina").await;
    assert_eq!(status, 200, "{first}");
    let deletion = first["scheduled_deletion"].as_str().unwrap().to_owned();
    assert!(first["due_at"].is_string());
    assert_eq!(first["request"]["status"], "open");
    for id in &ids {
        assert_eq!(server.get_record("acme", &admin, id).await.status, 200);
    }
    // Cancelled in its window: nothing erased, the request answered as refused.
    let cancelled = server
        .delete(
            &format!("/v1/tenants/acme/scheduled-deletions/{deletion}"),
            &admin,
        )
        .await;
    assert_eq!(cancelled.status, 200, "{}", cancelled.text());
    let request = first["request"]["id"].as_str().unwrap();
    let answered = server
        .get(
            &format!("/v1/tenants/acme/subject-requests/{request}"),
            Some(&admin),
        )
        .await
        .ok_json();
    assert_eq!(answered["status"], "refused");
    assert_eq!(answered["outcome"]["cancelled"], json!(deletion));

    // Asked again and left alone, the sweeper carries it out once the window ends.
    let (_, second) = erase(&server, "acme", &admin, "gina").await;
    let request = second["request"]["id"].as_str().unwrap().to_owned();
    // Asked once more meanwhile: answered by the erasure already waiting.
    let (_, third) = erase(&server, "acme", &admin, "gina").await;
    assert_eq!(third["scheduled_deletion"], second["scheduled_deletion"]);
    assert_eq!(third["request"]["status"], "completed");
    assert_eq!(third["request"]["outcome"]["answered_by"], json!(request));
    server
        .clock
        .advance(jiff::SignedDuration::from_hours(24 * 8));
    server
        .post_json("/v1/system/retention/sweep", &operator, &json!({}))
        .await
        .ok_json();
    for id in &ids {
        assert_eq!(server.get_record("acme", &admin, id).await.status, 404);
    }
    let done = server
        .get(
            &format!("/v1/tenants/acme/subject-requests/{request}"),
            Some(&admin),
        )
        .await
        .ok_json();
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["outcome"]["records_erased"], 2);
    assert!(done["certificate"].is_string());
}

/// More records than one page of the subject index: the export walks every page twice (size,
/// then send) and the archive still verifies.
async fn a_large_export_streams_every_page(server: TestServer) {
    let admin = server.token("acme", Role::Admin).await;
    let t = rfc3339(now() - 1.hour());
    let body: Vec<String> = (0..1_234)
        .map(|i| {
            let kind = if i % 3 == 0 {
                "auth_log"
            } else {
                "customer_record"
            };
            record_line(kind, &["hana"], &t, json!({"i": i, "pad": "x".repeat(200)}))
        })
        .collect();
    server.ingest("acme", &admin, &body.join("\n")).await;
    let (_dir, archive) = export(&server, &admin, "hana").await;
    let verified = verify(&server, &archive);
    let stdout = String::from_utf8_lossy(&verified.stdout);
    assert!(stdout.contains("OK: 1234 records in 3 files"), "{stdout}");
    let content = files(&archive);
    let logs: Vec<Value> = serde_json::from_slice(&content["data/auth_log.json"]).unwrap();
    assert_eq!(logs.len(), 412);
    let mut seen: Vec<u64> = logs
        .iter()
        .map(|r| r["payload"]["i"].as_u64().unwrap())
        .collect();
    seen.sort_unstable();
    assert_eq!(seen, (0..1_234).step_by(3).collect::<Vec<u64>>());
}
