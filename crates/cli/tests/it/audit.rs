//! The audit log over HTTP, on both backends: every record action and every refusal lands in
//! the right tenant's log as exactly one event; checkpoints are signed and verify offline;
//! inclusion and consistency proofs verify; nothing in the log is plaintext; a tenant sees only
//! its own log; bad proof requests are clear errors.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use custodian_core::access::Role;
use custodian_tlog::{
    Hash, Verifier, hash_from_slice, leaf_hash, verify_consistency, verify_inclusion,
};
use jiff::ToSpan;
use serde_json::{Value, json};

use crate::harness::{TestServer, now, on_both_backends, record_line, rfc3339, unique};

on_both_backends!(
    every_action_lands_once_in_its_tenant_log,
    checkpoints_and_proofs_verify,
    audit_requests_are_checked,
    operators_read_and_verify_the_system_log,
    audit_retention_destroys_bodies_and_keeps_every_proof,
);

struct Log {
    entries: Vec<Vec<u8>>,
    events: Vec<Value>,
}

async fn read_log(server: &TestServer, tenant: &str, token: &str) -> Log {
    let size = checkpoint(server, tenant, token).await.size;
    let reply = server
        .get(
            &format!("/v1/tenants/{tenant}/audit/entries?start=0&end={size}"),
            Some(token),
        )
        .await
        .ok_json();
    let items = reply["entries"].as_array().expect("entries").clone();
    assert_eq!(items.len() as u64, size);
    Log {
        entries: items
            .iter()
            .map(|e| STANDARD.decode(e["entry"].as_str().unwrap()).unwrap())
            .collect(),
        events: items.iter().map(|e| e["event"].clone()).collect(),
    }
}

async fn checkpoint(server: &TestServer, tenant: &str, token: &str) -> custodian_tlog::Checkpoint {
    let reply = server
        .get(
            &format!("/v1/tenants/{tenant}/audit/checkpoint"),
            Some(token),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let verifier = Verifier::parse(&server.state.audit.verifier_key().unwrap()).unwrap();
    let cp = custodian_tlog::open(&reply.text(), &verifier).expect("checkpoint verifies");
    assert_eq!(cp.origin, format!("custodian/local/{tenant}"));
    cp
}

fn hashes(v: &Value) -> Vec<Hash> {
    v["hashes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| hash_from_slice(&STANDARD.decode(h.as_str().unwrap()).unwrap()).unwrap())
        .collect()
}

async fn every_action_lands_once_in_its_tenant_log(server: TestServer) {
    let admin = server.token("acme", Role::Admin).await;
    let reader = server.token("acme", Role::Reader).await;
    let auditor = server.token("acme", Role::Auditor).await;
    let intruder = server.token("globex", Role::Admin).await;
    let marker = unique("audit-marker");
    let subject = unique("audit-subject");
    let t = rfc3339(now() - 1.hour());
    let body = [
        record_line("app_log", &[&subject], &t, json!({ "secret": marker })),
        record_line("customer_record", &[&subject], &t, json!({ "n": 1 })),
    ]
    .join("\n");
    let ids = server.ingest("acme", &admin, &body).await;
    server.get_record("acme", &reader, &ids[0]).await.ok_json();
    server.list_subject("acme", &reader, &subject, "").await;
    let refused = server
        .delete(&format!("/v1/tenants/acme/records/{}", ids[0]), &reader)
        .await;
    assert_eq!(refused.status, 403);
    let foreign = server.get_record("acme", &intruder, &ids[1]).await;
    assert_eq!(foreign.status, 403);
    let deleted = server
        .delete(&format!("/v1/tenants/acme/records/{}", ids[1]), &admin)
        .await;
    assert_eq!(deleted.status, 200);

    let log = read_log(&server, "acme", &auditor).await;
    // The three acme tokens were audited as they were issued; the actions follow.
    let (issued, events): (Vec<Value>, Vec<Value>) = log
        .events
        .iter()
        .cloned()
        .partition(|e| e["action"] == "tokens.create");
    assert_eq!(issued.len(), 3);
    assert!(issued.iter().all(|e| e["tenant"] == "acme"));
    let summary: Vec<(String, String)> = events
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap().to_owned(),
                e["decision"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let expected = [
        ("records.ingest", "allow"),
        ("records.read", "allow"),
        ("records.list_subject", "allow"),
        ("records.delete", "deny"),
        ("records.read", "deny"),
        ("records.delete", "allow"),
    ]
    .map(|(a, d)| (a.to_owned(), d.to_owned()));
    assert_eq!(summary, expected);
    let ingest = &events[0];
    assert_eq!(ingest["objects"], json!(ids));
    assert_eq!(ingest["tenant"], "acme");
    assert_eq!(
        ingest["subjects"].as_array().unwrap().len(),
        1,
        "one pseudonym"
    );
    assert!(ingest["request_id"].as_str().is_some_and(|r| r.len() == 26));
    assert_eq!(
        events[1]["subjects"], ingest["subjects"],
        "stable pseudonym"
    );
    assert_eq!(
        events[3]["reason"],
        "role reader may not perform records.delete; it needs one of: admin"
    );
    assert!(events[4]["actor"].as_str().unwrap().starts_with("token:"));
    let certificate = deleted.json()["certificate"].clone();
    assert_eq!(events[5]["objects"], json!([ids[1], certificate]));
    // Neither payloads nor subject ids are in the log.
    for entry in &log.entries {
        let text = String::from_utf8_lossy(entry);
        assert!(
            !text.contains(&marker) && !text.contains(&subject),
            "{text}"
        );
    }
    // Auditors read the log but not the records; globex's log is globex's alone.
    assert_eq!(
        server.get_record("acme", &auditor, &ids[0]).await.status,
        403
    );
    let globex_auditor = server.token("globex", Role::Auditor).await;
    assert_eq!(
        server
            .get("/v1/tenants/acme/audit/checkpoint", Some(&globex_auditor))
            .await
            .status,
        403
    );
    let globex_log = read_log(&server, "globex", &globex_auditor).await;
    assert!(
        globex_log
            .events
            .iter()
            .all(|e| e["tenant"] == "globex" || e["tenant"].is_null()),
        "{:?}",
        globex_log.events
    );
}

async fn checkpoints_and_proofs_verify(server: TestServer) {
    let admin = server.token("acme", Role::Admin).await;
    let t = rfc3339(now() - 1.hour());
    for i in 0..5 {
        server
            .ingest(
                "acme",
                &admin,
                &record_line("app_log", &[], &t, json!({ "i": i })),
            )
            .await;
    }
    let first = checkpoint(&server, "acme", &admin).await;
    for i in 0..6 {
        server
            .ingest(
                "acme",
                &admin,
                &record_line("app_log", &[], &t, json!({ "j": i })),
            )
            .await;
    }
    let second = checkpoint(&server, "acme", &admin).await;
    // Entry 0 is the admin token's issuance.
    assert_eq!((first.size, second.size), (6, 12));
    let log = read_log(&server, "acme", &admin).await;
    let log = &log.entries[..12];
    custodian_tlog::verify_log(log.iter(), &second.root, second.size).unwrap();
    for (index, entry) in log.iter().enumerate() {
        let proof = server
            .get(
                &format!("/v1/tenants/acme/audit/proof/inclusion?index={index}&size=12"),
                Some(&admin),
            )
            .await
            .ok_json();
        verify_inclusion(
            &leaf_hash(entry),
            index as u64,
            12,
            &hashes(&proof),
            &second.root,
        )
        .unwrap();
    }
    let proof = server
        .get(
            "/v1/tenants/acme/audit/proof/consistency?from=6&to=12",
            Some(&admin),
        )
        .await
        .ok_json();
    verify_consistency(6, 12, &hashes(&proof), &first.root, &second.root).unwrap();
    // A checkpoint from another key does not verify.
    let reply = server
        .get("/v1/tenants/acme/audit/checkpoint", Some(&admin))
        .await;
    let stranger =
        custodian_tlog::CheckpointSigner::from_seed("custodian-local", &[7; 32]).unwrap();
    let wrong = Verifier::parse(&stranger.verifier_key()).unwrap();
    assert!(custodian_tlog::open(&reply.text(), &wrong).is_err());
}

async fn audit_requests_are_checked(server: TestServer) {
    let admin = server.token("acme", Role::Admin).await;
    let reader = server.token("acme", Role::Reader).await;
    let t = rfc3339(now() - 1.hour());
    server
        .ingest("acme", &admin, &record_line("app_log", &[], &t, json!({})))
        .await;
    assert_eq!(
        server
            .get("/v1/tenants/acme/audit/checkpoint", Some(&reader))
            .await
            .status,
        403,
        "readers do not read the audit log"
    );
    // Taken after the refusal above, which is itself audited.
    let size = checkpoint(&server, "acme", &admin).await.size;
    for bad in [
        format!("proof/inclusion?index={size}&size={size}"),
        "proof/inclusion?index=0&size=0".to_owned(),
        format!("proof/inclusion?index=0&size={}", size + 5),
        "proof/consistency?from=3&to=1".to_owned(),
        "proof/consistency?from=0&to=1".to_owned(),
        format!("proof/consistency?from=1&to={}", size + 1),
        "proof/inclusion?index=x&size=1".to_owned(),
        format!("entries?start=0&end={}", size + 1),
        "entries?start=2&end=1".to_owned(),
        "entries?start=0&end=5000".to_owned(),
    ] {
        server
            .get(&format!("/v1/tenants/acme/audit/{bad}"), Some(&admin))
            .await
            .problem(400, "invalid-request");
    }
}

#[tokio::test]
async fn audit_key_prints_the_servers_verifier_key() {
    let server = TestServer::sqlite().await;
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_custodian"))
        .args(["audit", "key", "--data-dir"])
        .arg(server.data_dir())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed = String::from_utf8(out.stdout).unwrap();
    assert_eq!(printed.trim(), server.state.audit.verifier_key().unwrap());
    assert!(printed.starts_with("custodian-local+"));
}

#[tokio::test]
async fn token_creation_and_server_start_are_audited() {
    use custodian_store::AuditLog;
    let server = TestServer::sqlite().await;
    let system = server.audit_bodies(&AuditLog::System, 0, 1).await;
    // At rest the body is sealed under the log's period key: nothing of it reads in clear.
    let at_rest = server
        .state
        .store
        .audit_entries(&AuditLog::System, 0, 1)
        .await
        .unwrap();
    assert_eq!(at_rest[0][0], b'S');
    assert!(!String::from_utf8_lossy(&at_rest[0]).contains("server.start"));
    let start: Value = serde_json::from_slice(&system[0]).unwrap();
    assert_eq!(start["action"], "server.start");
    assert_eq!(start["subsystem"], "server");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_custodian"))
        .args([
            "token",
            "create",
            "--tenant",
            "acme",
            "--role",
            "reader",
            "--data-dir",
        ])
        .arg(server.data_dir())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let auditor = server.token("acme", Role::Auditor).await;
    let log = read_log(&server, "acme", &auditor).await;
    let created = log
        .events
        .iter()
        .find(|e| e["subsystem"] == "cli")
        .expect("the CLI's token issuance is audited");
    assert_eq!(created["action"], "tokens.create");
    assert!(created["actor"].as_str().unwrap().starts_with("cli:"));
    assert_eq!(created["reason"], "role reader");
    assert!(
        created["objects"][0]
            .as_str()
            .unwrap()
            .starts_with("token:")
    );
    // The token itself never reaches the log.
    let token = String::from_utf8(out.stdout).unwrap();
    assert!(
        log.entries
            .iter()
            .all(|e| !String::from_utf8_lossy(e).contains(token.trim()))
    );
}

fn custodian(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_custodian"))
        .args(args)
        .output()
        .unwrap()
}

// Multi-threaded: the in-process server must keep serving while the CLI child blocks a thread.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_then_verify_offline_and_catch_a_tampered_row() {
    let server = TestServer::sqlite().await;
    let admin = server.token("acme", Role::Admin).await;
    let t = rfc3339(now() - 1.hour());
    for i in 0..4 {
        server
            .ingest(
                "acme",
                &admin,
                &record_line("app_log", &[], &t, json!({ "i": i })),
            )
            .await;
    }
    let trusted = server
        .get("/v1/tenants/acme/audit/checkpoint", Some(&admin))
        .await
        .text();
    for i in 0..3 {
        server
            .ingest(
                "acme",
                &admin,
                &record_line("app_log", &[], &t, json!({ "j": i })),
            )
            .await;
    }
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("acme.bundle");
    let previous = dir.path().join("trusted.checkpoint");
    std::fs::write(&previous, &trusted).unwrap();
    let key = server.state.audit.verifier_key().unwrap();
    let bundle_s = bundle.to_str().unwrap();
    let export_bundle = || {
        custodian(&[
            "audit",
            "export",
            "--server",
            &server.base,
            "--token",
            &admin,
            "--tenant",
            "acme",
            "--out",
            bundle_s,
        ])
    };
    let export = export_bundle();
    assert!(
        export.status.success(),
        "{}",
        String::from_utf8_lossy(&export.stderr)
    );

    let ok = custodian(&[
        "audit",
        "verify",
        bundle_s,
        "--key",
        &key,
        "--previous",
        previous.to_str().unwrap(),
    ]);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(String::from_utf8_lossy(&ok.stdout).contains("OK: 8 entries of custodian/local/acme"));

    // A wrong key, and a truncated bundle, fail with exit 1.
    let stranger =
        custodian_tlog::CheckpointSigner::from_seed("custodian-local", &[9; 32]).unwrap();
    let wrong = custodian(&[
        "audit",
        "verify",
        bundle_s,
        "--key",
        &stranger.verifier_key(),
    ]);
    assert_eq!(wrong.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&wrong.stderr).contains("does not verify with this key"));
    let text = std::fs::read_to_string(&bundle).unwrap();
    let short = dir.path().join("short.bundle");
    std::fs::write(&short, &text[..text.len() - 60]).unwrap();
    let cut = custodian(&["audit", "verify", short.to_str().unwrap(), "--key", &key]);
    assert_eq!(cut.status.code(), Some(1));

    // An administrator with SQL access rewrites entry 2 (after disabling the guard trigger).
    let db = server.data_dir().join("custodian.db");
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute_batch(
        "DROP TRIGGER audit_entries_no_update;
         UPDATE audit_entries SET body = CAST('{\"action\":\"nothing to see\"}' AS BLOB)
          WHERE log_id = 'acme' AND idx = 2;",
    )
    .unwrap();
    let export = export_bundle();
    assert!(export.status.success());
    let caught = custodian(&["audit", "verify", bundle_s, "--key", &key]);
    assert_eq!(caught.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&caught.stderr);
    assert!(
        stderr.contains("entry 2 does not match the leaf hash stored for it"),
        "{stderr}"
    );
}

async fn system_checkpoint(server: &TestServer, token: &str) -> custodian_tlog::Checkpoint {
    let reply = server.get("/v1/system/audit/checkpoint", Some(token)).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let verifier = Verifier::parse(&server.state.audit.verifier_key().unwrap()).unwrap();
    custodian_tlog::open(&reply.text(), &verifier).expect("system checkpoint verifies")
}

async fn operators_read_and_verify_the_system_log(server: TestServer) {
    let operator = server.operator_token().await;
    let admin = server.token("acme", Role::Admin).await;
    let first = system_checkpoint(&server, &operator).await;
    assert!(first.size >= 1, "the server start is in the system log");
    // A refusal that names no known tenant lands in the system log.
    server
        .get(
            "/v1/tenants/nosuch/records/01HZZZZZZZZZZZZZZZZZZZZZZZ",
            Some(&admin),
        )
        .await;
    let second = system_checkpoint(&server, &operator).await;
    assert!(second.size > first.size);
    let entries = server
        .get(
            &format!("/v1/system/audit/entries?start=0&end={}", second.size),
            Some(&operator),
        )
        .await
        .ok_json();
    let entries = entries["entries"].as_array().unwrap();
    let bodies: Vec<Vec<u8>> = entries
        .iter()
        .map(|e| STANDARD.decode(e["entry"].as_str().unwrap()).unwrap())
        .collect();
    custodian_tlog::verify_log(bodies.iter(), &second.root, second.size).unwrap();
    let actions: Vec<&str> = entries
        .iter()
        .map(|e| e["event"]["action"].as_str().unwrap())
        .collect();
    assert!(actions.contains(&"server.start"), "{actions:?}");
    assert!(
        entries
            .iter()
            .any(|e| e["event"]["decision"] == "deny" && e["event"]["tenant"].is_null()),
        "{entries:?}"
    );
    // Proofs against the signed roots.
    let last = second.size - 1;
    let proof = server
        .get(
            &format!(
                "/v1/system/audit/proof/inclusion?index={last}&size={}",
                second.size
            ),
            Some(&operator),
        )
        .await
        .ok_json();
    verify_inclusion(
        &leaf_hash(&bodies[last as usize]),
        last,
        second.size,
        &hashes(&proof),
        &second.root,
    )
    .unwrap();
    let proof = server
        .get(
            &format!(
                "/v1/system/audit/proof/consistency?from={}&to={}",
                first.size, second.size
            ),
            Some(&operator),
        )
        .await
        .ok_json();
    verify_consistency(
        first.size,
        second.size,
        &hashes(&proof),
        &first.root,
        &second.root,
    )
    .unwrap();
    // Only operators: a tenant's admin is refused, a stranger is asked to authenticate.
    server
        .get("/v1/system/audit/checkpoint", Some(&admin))
        .await
        .problem(403, "forbidden");
    server
        .get("/v1/system/audit/entries?start=0&end=1", None)
        .await
        .problem(401, "unauthorized");
    server
        .get(
            &format!(
                "/v1/system/audit/proof/inclusion?index={}&size={}",
                second.size, second.size
            ),
            Some(&operator),
        )
        .await
        .problem(400, "invalid-request");
}

/// The NATS server every machine runs (JetStream enabled).
const NATS: &str = "nats://127.0.0.1:4222";

/// The development policy with an audit mirror.
fn mirror_policy(url: &str, stream: &str, required: bool) -> custodian_core::policy::Policy {
    let text = crate::harness::default_policy_text().replace(
        "[deployment]\nregion = \"local\"",
        &format!(
            "[deployment]\nregion = \"local\"\naudit_mirror = {{ url = \"{url}\", stream = \"{stream}\", required = {required} }}"
        ),
    );
    custodian_core::policy::Policy::parse("mirror.toml", &text).unwrap()
}

/// A fresh stream name, so tests run in parallel on one NATS server.
fn unique_stream() -> String {
    format!("it_{}", ulid::Ulid::new())
}

/// Whether NATS is reachable; under `CI=true` a missing server is a failure, locally a loud skip.
async fn nats_available(url: &str) -> bool {
    match async_nats::connect(url).await {
        Ok(_) => true,
        Err(e) => {
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!("NATS at {url} is unreachable and CI=true: {e}");
            }
            eprintln!("\n*** SKIPPING NATS test: no server at {url} ({e}) ***\n");
            false
        }
    }
}

/// Every entry and a signed checkpoint of every log reach the JetStream mirror, and the
/// mirrored entries rebuild the very tree the checkpoint signs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_log_is_mirrored_to_jetstream() {
    if !nats_available(NATS).await {
        return;
    }
    let stream_name = unique_stream();
    let policy = mirror_policy(NATS, &stream_name, false);
    let server = TestServer::start_with(
        crate::harness::Backend::Sqlite,
        crate::harness::DEFAULT_BODY_LIMIT,
        policy,
    )
    .await
    .unwrap();
    let admin = server.token("acme", Role::Admin).await;
    let t = rfc3339(now() - 1.hour());
    for i in 0..3 {
        server
            .ingest(
                "acme",
                &admin,
                &record_line("app_log", &[], &t, json!({ "i": i })),
            )
            .await;
    }
    let acme =
        custodian_store::AuditLog::Tenant(custodian_core::ids::TenantId::new("acme").unwrap());
    let size = server.state.store.audit_size(&acme).await.unwrap();

    let js = async_nats::jetstream::new(async_nats::connect(NATS).await.unwrap());
    let checkpoint_subject = custodian_server::mirror::checkpoint_subject(&stream_name, &acme);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let note = loop {
        if let Ok(stream) = js.get_stream(&stream_name).await
            && let Ok(m) = stream
                .get_last_raw_message_by_subject(&checkpoint_subject)
                .await
        {
            let note = String::from_utf8(m.payload.to_vec()).unwrap();
            if note.lines().nth(1) == Some(size.to_string().as_str()) {
                break note;
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the mirror did not catch up"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    let verifier = Verifier::parse(&server.state.audit.verifier_key().unwrap()).unwrap();
    let checkpoint = custodian_tlog::open(&note, &verifier).expect("mirrored checkpoint verifies");
    assert_eq!(checkpoint.size, size);
    // The mirrored entries, in index order, rebuild the signed tree.
    let mut stream = js.get_stream(&stream_name).await.unwrap();
    let last = stream.info().await.unwrap().state.last_sequence;
    let entry_subject = custodian_server::mirror::entry_subject(&stream_name, &acme);
    let mut entries: Vec<(u64, Vec<u8>)> = Vec::new();
    for seq in 1..=last {
        let m = stream.get_raw_message(seq).await.unwrap();
        if m.subject.as_str() == entry_subject {
            let index: u64 = m
                .headers
                .get(custodian_server::mirror::INDEX_HEADER)
                .unwrap()
                .as_str()
                .parse()
                .unwrap();
            entries.push((index, m.payload.to_vec()));
        }
    }
    entries.sort();
    assert_eq!(
        entries.iter().map(|(i, _)| *i).collect::<Vec<_>>(),
        (0..size).collect::<Vec<_>>(),
        "every entry once"
    );
    let bodies: Vec<&Vec<u8>> = entries.iter().map(|(_, b)| b).collect();
    custodian_tlog::verify_log(bodies.into_iter(), &checkpoint.root, checkpoint.size).unwrap();
    let stored = server.audit_bodies(&acme, 0, size).await;
    assert_eq!(
        entries.into_iter().map(|(_, b)| b).collect::<Vec<_>>(),
        stored
    );
    // The witness reads the same stream and finds every checkpoint consistent.
    let key = server.state.audit.verifier_key().unwrap();
    let watched = crate::harness::custodian_cli(&[
        "audit",
        "watch",
        "--nats",
        NATS,
        "--stream",
        &stream_name,
        "--key",
        &key,
        "--once",
    ])
    .await;
    let stdout = String::from_utf8_lossy(&watched.stdout);
    assert!(
        watched.status.success(),
        "{}",
        String::from_utf8_lossy(&watched.stderr)
    );
    assert!(
        stdout.contains(&format!("acme: checkpoint of {size} entries consistent")),
        "{stdout}"
    );
    // Stopped first, so its mirror cannot make the stream again.
    let _dir = server.stop().await;
    js.delete_stream(&stream_name).await.unwrap();
}

/// A fork cannot be caused without the deployment's signing key, so this test publishes a
/// forked history the way a compromised server would: two checkpoints of one size, signed by
/// the same key over different entries. The witness names the fork with both roots.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_watch_reports_a_fork_with_both_roots() {
    use async_nats::jetstream::context::Publish;
    if !nats_available(NATS).await {
        return;
    }
    let stream_name = unique_stream();
    let js = async_nats::jetstream::new(async_nats::connect(NATS).await.unwrap());
    js.get_or_create_stream(async_nats::jetstream::stream::Config {
        name: stream_name.clone(),
        subjects: vec![format!("{stream_name}.>")],
        ..Default::default()
    })
    .await
    .unwrap();
    let signer = custodian_tlog::CheckpointSigner::from_seed("custodian-local", &[9; 32]).unwrap();
    let log =
        custodian_store::AuditLog::Tenant(custodian_core::ids::TenantId::new("acme").unwrap());
    let publish_entry = |index: u64, body: &'static [u8]| {
        let js = js.clone();
        let subject = custodian_server::mirror::entry_subject(&stream_name, &log);
        async move {
            let publish = Publish::build().payload(body.into()).header(
                custodian_server::mirror::INDEX_HEADER,
                index.to_string().as_str(),
            );
            js.send_publish(subject, publish)
                .await
                .unwrap()
                .await
                .unwrap();
        }
    };
    let publish_checkpoint = |entries: &[&[u8]]| {
        let mut tree = custodian_tlog::Appender::new();
        for e in entries {
            tree.push(custodian_tlog::leaf_hash(e), |_| {}).unwrap();
        }
        let note = signer
            .sign(&custodian_tlog::Checkpoint::new(
                "custodian/local/acme",
                tree.size(),
                tree.root(),
            ))
            .unwrap();
        let js = js.clone();
        let subject = custodian_server::mirror::checkpoint_subject(&stream_name, &log);
        async move {
            let publish = Publish::build().payload(note.into_bytes().into());
            js.send_publish(subject, publish)
                .await
                .unwrap()
                .await
                .unwrap();
        }
    };
    publish_entry(0, b"first").await;
    publish_entry(1, b"second").await;
    publish_checkpoint(&[b"first", b"second"]).await;
    // The rewritten history: entry 1 replaced, signed at the same size.
    publish_checkpoint(&[b"first", b"rewritten"]).await;

    let watched = crate::harness::custodian_cli(&[
        "audit",
        "watch",
        "--nats",
        NATS,
        "--stream",
        &stream_name,
        "--key",
        &signer.verifier_key(),
        "--once",
    ])
    .await;
    let stderr = String::from_utf8_lossy(&watched.stderr);
    assert_eq!(watched.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("log acme: FORK at tree size 2"), "{stderr}");
    assert!(
        stderr.contains("the signed checkpoint's root is")
            && stderr.contains("the witnessed root is"),
        "{stderr}"
    );
    // The honest first checkpoint was reported consistent before the fork.
    assert!(
        String::from_utf8_lossy(&watched.stdout)
            .contains("acme: checkpoint of 2 entries consistent")
    );
    js.delete_stream(&stream_name).await.unwrap();
}

/// With `required = true`, writes stop while the mirror cannot be reached and resume once it
/// can; reads go on either way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_required_mirror_stops_writes_while_unreachable() {
    if !nats_available(NATS).await {
        return;
    }
    let t = rfc3339(now() - 1.hour());
    let line = record_line("app_log", &[], &t, json!({}));

    // Nothing listens on port 1: every write is refused, reads are not.
    let down = TestServer::start_with(
        crate::harness::Backend::Sqlite,
        crate::harness::DEFAULT_BODY_LIMIT,
        mirror_policy("nats://127.0.0.1:1", &unique_stream(), true),
    )
    .await
    .unwrap();
    let writer = down.token("acme", Role::Writer).await;
    let refused = down
        .post_records("acme", &writer, &line, None)
        .await
        .problem(503, "audit-mirror-unavailable");
    assert!(
        refused["detail"]
            .as_str()
            .unwrap()
            .contains("nothing was changed")
    );
    down.get_record("acme", &writer, crate::harness::ABSENT_ID)
        .await
        .problem(404, "record-not-found");

    // A reachable mirror: writes go through once its first round has run.
    let stream_name = unique_stream();
    let up = TestServer::start_with(
        crate::harness::Backend::Sqlite,
        crate::harness::DEFAULT_BODY_LIMIT,
        mirror_policy(NATS, &stream_name, true),
    )
    .await
    .unwrap();
    let writer = up.token("acme", Role::Writer).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        let reply = up.post_records("acme", &writer, &line, None).await;
        if reply.status == 200 {
            break;
        }
        assert_eq!(reply.status, 503, "{}", reply.text());
        assert!(
            std::time::Instant::now() < deadline,
            "the mirror never became reachable"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    // Stopped first, so its mirror cannot make the stream again.
    let _dir = up.stop().await;
    let js = async_nats::jetstream::new(async_nats::connect(NATS).await.unwrap());
    js.delete_stream(&stream_name).await.unwrap();
}

/// Operators export the system log and check it offline like a tenant's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_system_log_exports_and_verifies_offline() {
    let server = TestServer::sqlite().await;
    let operator = server.operator_token().await;
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("system.bundle");
    let bundle_s = bundle.to_str().unwrap().to_owned();
    let base = server.base.clone();
    let exported = tokio::task::spawn_blocking(move || {
        custodian(&[
            "audit", "export", "--system", "--server", &base, "--token", &operator, "--out",
            &bundle_s,
        ])
    })
    .await
    .unwrap();
    assert!(
        exported.status.success(),
        "{}",
        String::from_utf8_lossy(&exported.stderr)
    );
    assert!(String::from_utf8_lossy(&exported.stderr).contains("of the system log"));
    let key = server.state.audit.verifier_key().unwrap();
    let verified = custodian(&["audit", "verify", bundle.to_str().unwrap(), "--key", &key]);
    assert!(
        verified.status.success(),
        "{}",
        String::from_utf8_lossy(&verified.stderr)
    );
    assert!(String::from_utf8_lossy(&verified.stdout).contains("of custodian/local/_system"));
    // Neither a tenant nor --system: a usage error.
    let neither = custodian(&["audit", "export", "--out", "x.bundle"]);
    assert_eq!(neither.status.code(), Some(2));
}

/// Entries `[0, size)` of a tenant log as the API serves them, raw.
async fn entry_views(server: &TestServer, tenant: &str, token: &str, size: u64) -> Vec<Value> {
    server
        .get(
            &format!("/v1/tenants/{tenant}/audit/entries?start=0&end={size}"),
            Some(token),
        )
        .await
        .ok_json()["entries"]
        .as_array()
        .expect("entries")
        .clone()
}

async fn audit_retention_destroys_bodies_and_keeps_every_proof(server: TestServer) {
    let text = crate::harness::default_policy_text().replacen(
        "region = \"local\"",
        "region = \"local\"\naudit_retention = \"12mo\"",
        1,
    );
    let node = server
        .another_node_with(custodian_core::policy::Policy::parse("retention.toml", &text).unwrap())
        .await;
    let acme = node.token("acme", Role::Admin).await;
    let globex = node.token("globex", Role::Admin).await;
    let operator = node.operator_token().await;
    let t = rfc3339(now() - 1.hour());
    for (tenant, token) in [("acme", &acme), ("globex", &globex)] {
        node.ingest(
            tenant,
            token,
            &record_line("app_log", &[], &t, json!({"n": 1})),
        )
        .await;
    }
    let hold = node
        .post_json(
            "/v1/tenants/globex/holds",
            &globex,
            &json!({"scope": {"kind": "tenant"}, "case_id": "C-9", "reason": "litigation"}),
        )
        .await;
    assert_eq!(hold.status, 201, "{}", hold.text());
    let trusted = checkpoint(&node, "acme", &acme).await;
    let before = entry_views(&node, "acme", &acme, trusted.size).await;
    let period = custodian_core::audit::period_of(node.now());

    // Thirteen months on, the month those entries were written in has been kept 12 months.
    node.clock
        .advance(jiff::SignedDuration::from_hours(24 * 400));
    let swept = node
        .post_json("/v1/system/retention/sweep", &operator, &json!({}))
        .await
        .ok_json();
    let destroyed: Vec<&str> = swept["audit_periods_destroyed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    assert!(
        destroyed.contains(&format!("acme/{period}").as_str()),
        "{swept}"
    );
    assert!(
        destroyed.contains(&format!("_system/{period}").as_str()),
        "{swept}"
    );
    assert!(
        !destroyed.iter().any(|p| p.starts_with("globex/")),
        "{swept}"
    );
    assert_eq!(swept["audit_held"], json!(["globex"]));
    // A second sweep has nothing more to destroy.
    let again = node
        .post_json("/v1/system/retention/sweep", &operator, &json!({}))
        .await
        .ok_json();
    assert_eq!(again["audit_periods_destroyed"], json!([]));

    // The old entries are hashes only, with the same leaf hashes; later ones read.
    let now_cp = checkpoint(&node, "acme", &acme).await;
    assert!(now_cp.size > trusted.size, "the sweep's own work is logged");
    let after = entry_views(&node, "acme", &acme, now_cp.size).await;
    for (old, new) in before.iter().zip(&after) {
        assert!(old["entry"].is_string());
        assert_eq!(new["entry"], Value::Null);
        assert_eq!(new["event"], Value::Null);
        assert_eq!(new["destroyed"], json!(period));
        assert_eq!(new["leaf_hash"], old["leaf_hash"]);
    }
    assert!(
        after[trusted.size as usize..]
            .iter()
            .all(|e| e["entry"].is_string() && e["destroyed"].is_null())
    );
    let globex_cp = checkpoint(&node, "globex", &globex).await;
    assert!(
        entry_views(&node, "globex", &globex, globex_cp.size)
            .await
            .iter()
            .all(|e| e["entry"].is_string())
    );

    // Every proof still holds: the old checkpoint extends, an old leaf is still included.
    let proof = node
        .get(
            &format!(
                "/v1/tenants/acme/audit/proof/consistency?from={}&to={}",
                trusted.size, now_cp.size
            ),
            Some(&acme),
        )
        .await
        .ok_json();
    verify_consistency(
        trusted.size,
        now_cp.size,
        &hashes(&proof),
        &trusted.root,
        &now_cp.root,
    )
    .unwrap();
    let leaf0 = hash_from_slice(
        &STANDARD
            .decode(before[0]["leaf_hash"].as_str().unwrap())
            .unwrap(),
    )
    .unwrap();
    let proof = node
        .get(
            &format!(
                "/v1/tenants/acme/audit/proof/inclusion?index=0&size={}",
                now_cp.size
            ),
            Some(&acme),
        )
        .await
        .ok_json();
    verify_inclusion(&leaf0, 0, now_cp.size, &hashes(&proof), &now_cp.root).unwrap();

    // The offline bundle verifies and says how much of it is hashes only.
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("acme.bundle");
    let (base, token, out) = (
        node.base.clone(),
        acme.clone(),
        bundle.to_str().unwrap().to_owned(),
    );
    let export = tokio::task::spawn_blocking(move || {
        custodian(&[
            "audit", "export", "--server", &base, "--token", &token, "--tenant", "acme", "--out",
            &out,
        ])
    })
    .await
    .unwrap();
    assert!(
        export.status.success(),
        "{}",
        String::from_utf8_lossy(&export.stderr)
    );
    let key = node.state.audit.verifier_key().unwrap();
    let verified = custodian(&["audit", "verify", bundle.to_str().unwrap(), "--key", &key]);
    let stdout = String::from_utf8_lossy(&verified.stdout);
    assert!(
        verified.status.success(),
        "{}",
        String::from_utf8_lossy(&verified.stderr)
    );
    assert!(
        stdout.contains(&format!("({} of them hashes only", trusted.size)),
        "{stdout}"
    );

    // The destruction itself is in the system log, naming the periods; the system log's
    // own old entries are hashes only too.
    let system = custodian_store::AuditLog::System;
    let size = node.state.audit.size(&system).await.unwrap();
    let entries = node.state.audit.entries(&system, 0, size).await.unwrap();
    let (mut kept, mut gone) = (Vec::new(), 0);
    for e in entries {
        match e.body {
            custodian_server::audit::EntryBody::Bytes(b) => {
                kept.push(serde_json::from_slice::<Value>(&b).unwrap())
            }
            custodian_server::audit::EntryBody::Destroyed { .. } => gone += 1,
        }
    }
    assert!(gone > 0);
    assert!(
        kept.iter().any(|e| e["action"] == "audit.retention"
            && e["objects"] == json!([format!("acme/{period}")]))
    );
    drop(node);
}
