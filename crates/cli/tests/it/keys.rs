//! The key hierarchy end to end: shredding makes records unreadable with a clear problem,
//! rotation rewraps keys without touching ciphertext and reads keep working.

use custodian_core::access::Role;
use custodian_core::ids::TenantId;
use custodian_crypto::DataKeyId;
use custodian_store::ShredScope;
use jiff::ToSpan;
use serde_json::json;

use reqwest::Method;

use crate::harness::{TestServer, custodian_cli, now, on_both_backends, record_line};

on_both_backends!(
    shredding_a_subject_or_bucket_makes_its_records_gone_for_good,
    rotation_keeps_ciphertext_and_reads,
    key_status_and_rotation_through_the_api,
    scheduled_rotation_rotates_only_tenants_that_are_due,
    a_restored_key_backup_does_not_bring_back_shredded_keys,
    a_crash_mid_rotation_leaves_every_record_readable,
);

fn rfc3339(t: jiff::Timestamp) -> String {
    t.to_string()
}

async fn shredding_a_subject_or_bucket_makes_its_records_gone_for_good(server: TestServer) {
    let token = server.token("acme", Role::Admin).await;
    let t = rfc3339(now() - 1.hour());
    let body = [
        record_line("app_log", &["erase-me"], &t, json!({"n": 1})),
        record_line("app_log", &["keep-me"], &t, json!({"n": 2})),
        record_line("customer_record", &[], &t, json!({"n": 3})),
    ]
    .join("\n");
    let ids = server.ingest("acme", &token, &body).await;
    let acme = TenantId::new("acme").unwrap();
    let keys = &server.state.keys;
    let pseudonym = keys.tenant(&acme).await.unwrap().pseudonym("erase-me");
    let subject = DataKeyId::Subject(pseudonym).encode();
    let destroyed = keys
        .shred(&acme, ShredScope::Keys(vec![subject.clone()]))
        .await
        .unwrap();
    assert_eq!(destroyed, vec![subject.clone()]);
    // Idempotent: nothing more to destroy.
    assert!(
        keys.shred(&acme, ShredScope::Keys(vec![subject]))
            .await
            .unwrap()
            .is_empty()
    );

    let gone = server.get_record("acme", &token, &ids[0]).await;
    gone.problem(410, "key-destroyed");
    assert!(gone.text().contains(&ids[0]), "{}", gone.text());
    server.get_record("acme", &token, &ids[1]).await.ok_json();

    // The customer record's bucket: every record in it goes at once.
    let record = server.get_record("acme", &token, &ids[2]).await.ok_json();
    let bucket = DataKeyId::Bucket {
        data_type: custodian_core::ids::DataTypeName::new("customer_record").unwrap(),
        bucket: record["key_bucket"].as_str().unwrap().to_owned(),
    };
    keys.shred(&acme, ShredScope::Keys(vec![bucket.encode()]))
        .await
        .unwrap();
    server
        .get_record("acme", &token, &ids[2])
        .await
        .problem(410, "key-destroyed");
}

async fn rotation_keeps_ciphertext_and_reads(server: TestServer) {
    let token = server.token("acme", Role::Admin).await;
    let t = rfc3339(now() - 1.hour());
    let body: Vec<String> = (0..20)
        .map(|i| record_line("app_log", &[&format!("user-{i}")], &t, json!({"i": i})))
        .collect();
    let ids = server.ingest("acme", &token, &body.join("\n")).await;
    let acme = TenantId::new("acme").unwrap();
    let id = ids[3].parse().unwrap();
    let before = server
        .state
        .store
        .get_record(&acme, id)
        .await
        .unwrap()
        .unwrap();

    let rotation = server.state.keys.rotate(&acme).await.unwrap();
    assert_eq!((rotation.from_version, rotation.to_version), (1, 2));
    // One bucket key plus twenty subject keys.
    assert_eq!(rotation.rewrapped, 21);
    assert_eq!(rotation.destroyed_versions, vec![1]);
    let counts = server
        .state
        .keys
        .store()
        .count_data_keys(&acme)
        .await
        .unwrap();
    assert_eq!(counts.by_kek_version, vec![(2, 21)]);

    let after = server
        .state
        .store
        .get_record(&acme, id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(before.sealed, after.sealed, "ciphertext is byte-identical");
    for (i, id) in ids.iter().enumerate() {
        let r = server.get_record("acme", &token, id).await.ok_json();
        assert_eq!(r["payload"], json!({"i": i}));
    }
    // A second rotation right away works too, and new records land under the new KEK.
    server.state.keys.rotate(&acme).await.unwrap();
    let more = server
        .ingest(
            "acme",
            &token,
            &record_line("app_log", &["new"], &t, json!({})),
        )
        .await;
    server.get_record("acme", &token, &more[0]).await.ok_json();
}

async fn ingest_subjects(server: &TestServer, token: &str, n: usize) -> Vec<String> {
    let t = rfc3339(now() - 1.hour());
    let body: Vec<String> = (0..n)
        .map(|i| record_line("app_log", &[&format!("user-{i}")], &t, json!({"i": i})))
        .collect();
    server.ingest("acme", token, &body.join("\n")).await
}

async fn key_status_and_rotation_through_the_api(server: TestServer) {
    let admin = server.token("acme", Role::Admin).await;
    ingest_subjects(&server, &admin, 5).await;
    let status = server
        .get("/v1/tenants/acme/keys", Some(&admin))
        .await
        .ok_json();
    assert_eq!(status["kek_version"], 1);
    assert_eq!(status["wrapped_keys"], 6);
    assert_eq!(status["wrapped_by_older_versions"], 0);
    let created = crate::harness::parse_time(&status["kek_created_at"]);
    let due = crate::harness::parse_time(&status["next_rotation_due"]);
    assert_eq!(
        due,
        created
            .to_zoned(jiff::tz::TimeZone::UTC)
            .checked_add(90.days())
            .unwrap()
            .timestamp()
    );

    // Who may rotate: the tenant's admin and operators; not a reader, not another tenant.
    let reader = server.token("acme", Role::Reader).await;
    let globex_admin = server.token("globex", Role::Admin).await;
    for token in [&reader, &globex_admin] {
        server
            .send(
                Method::POST,
                "/v1/tenants/acme/keys/rotate",
                Some(token),
                &[],
                None,
            )
            .await
            .problem(403, "forbidden");
    }
    let rotation = server
        .send(
            Method::POST,
            "/v1/tenants/acme/keys/rotate",
            Some(&admin),
            &[],
            None,
        )
        .await
        .ok_json();
    assert_eq!(
        (
            rotation["from_version"].clone(),
            rotation["to_version"].clone()
        ),
        (json!(1), json!(2))
    );
    assert_eq!(rotation["rewrapped"], 6);

    // Operators see every tenant (and rotate through the CLI), but never read records.
    let operator = server.operator_token().await;
    let all = server
        .get("/v1/system/keys", Some(&operator))
        .await
        .ok_json();
    let acme = all
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["tenant"] == "acme")
        .unwrap();
    assert_eq!(acme["kek_version"], 2);
    server
        .get("/v1/system/keys", Some(&admin))
        .await
        .problem(403, "forbidden");
    let ids = ingest_subjects(&server, &admin, 1).await;
    server
        .get(
            &format!("/v1/tenants/acme/records/{}", ids[0]),
            Some(&operator),
        )
        .await
        .problem(403, "forbidden");
    let out = custodian_cli(&[
        "keys",
        "rotate",
        "--server",
        &server.base,
        "--tenant",
        "acme",
        "--token",
        &operator,
    ])
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let status = server
        .get("/v1/tenants/acme/keys", Some(&admin))
        .await
        .ok_json();
    assert_eq!(status["kek_version"], 3);
    // The tenant's audit log has both rotations.
    let acme_id = TenantId::new("acme").unwrap();
    let log = custodian_store::AuditLog::Tenant(acme_id);
    let size = server.state.audit.size(&log).await.unwrap();
    let entries = server.audit_bodies(&log, 0, size).await;
    let texts: Vec<String> = entries
        .iter()
        .map(|e| String::from_utf8_lossy(e).into_owned())
        .collect();
    let with = |s: &str| texts.iter().filter(|t| t.contains(s)).count();
    // Two refusals (reader, globex's admin) and two rotations.
    assert_eq!(with("keys.rotate"), 4);
    assert_eq!(with("KEK version 1 -> 2"), 1);
    assert_eq!(with("KEK version 2 -> 3"), 1);
}

async fn scheduled_rotation_rotates_only_tenants_that_are_due(server: TestServer) {
    let admin = server.token("acme", Role::Admin).await;
    ingest_subjects(&server, &admin, 3).await;
    let state = &server.state;
    // globex has never been used: it has no KEK and nothing to rotate.
    assert!(
        custodian_server::keys::rotate_due(state, now())
            .await
            .is_empty()
    );
    assert!(
        custodian_server::keys::rotate_due(state, days_from_now(89))
            .await
            .is_empty()
    );
    let later = days_from_now(91);
    let done = custodian_server::keys::rotate_due(state, later).await;
    assert_eq!(done.len(), 1);
    let (tenant, result) = &done[0];
    assert_eq!(tenant.as_str(), "acme");
    let rotation = result.as_ref().unwrap();
    assert_eq!(
        (
            rotation.from_version,
            rotation.to_version,
            rotation.rewrapped
        ),
        (1, 2, 4)
    );
    // The new KEK is fresh: it is not due within its own 90 days.
    assert!(
        custodian_server::keys::rotate_due(state, days_from_now(89))
            .await
            .is_empty()
    );
}

async fn a_restored_key_backup_does_not_bring_back_shredded_keys(server: TestServer) {
    let admin = server.token("acme", Role::Admin).await;
    let operator = server.operator_token().await;
    let ids = ingest_subjects(&server, &admin, 3).await;
    server
        .get("/v1/system/keys/backup", Some(&admin))
        .await
        .problem(403, "forbidden");
    let backup = server.get("/v1/system/keys/backup", Some(&operator)).await;
    assert_eq!(backup.status, 200, "{}", backup.text());
    let backup = backup.body.clone();

    // After the backup: user-0 is erased (subject key shredded).
    let acme = TenantId::new("acme").unwrap();
    let keys = &server.state.keys;
    let pseudonym = keys.tenant(&acme).await.unwrap().pseudonym("user-0");
    keys.shred(
        &acme,
        ShredScope::Keys(vec![DataKeyId::Subject(pseudonym).encode()]),
    )
    .await
    .unwrap();
    server
        .get_record("acme", &admin, &ids[0])
        .await
        .problem(410, "key-destroyed");

    // Restoring the older backup does not bring user-0's key back.
    let restored = server
        .send(
            Method::POST,
            "/v1/system/keys/restore",
            Some(&operator),
            &[("content-type", "application/json")],
            Some(backup.clone()),
        )
        .await
        .ok_json();
    assert_eq!(restored["reshredded"], 1);
    server
        .get_record("acme", &admin, &ids[0])
        .await
        .problem(410, "key-destroyed");
    for id in &ids[1..] {
        server.get_record("acme", &admin, id).await.ok_json();
    }
    // A damaged backup changes nothing.
    let mut damaged = backup;
    let n = damaged.len();
    damaged[n / 2] ^= 0x01;
    server
        .send(
            Method::POST,
            "/v1/system/keys/restore",
            Some(&operator),
            &[("content-type", "application/json")],
            Some(damaged),
        )
        .await
        .problem(422, "invalid-backup");
    server.get_record("acme", &admin, &ids[1]).await.ok_json();
}

/// A rotation that stopped after its new KEK was stored and half the keys were rewrapped
/// (as a crash would leave it): every record still reads, and the next rotation finishes.
async fn a_crash_mid_rotation_leaves_every_record_readable(server: TestServer) {
    let admin = server.token("acme", Role::Admin).await;
    let ids = ingest_subjects(&server, &admin, 10).await;
    let acme = TenantId::new("acme").unwrap();
    let keys = &server.state.keys;
    let store = keys.store();
    let root = keys.root().unwrap();
    let tenant_keys = keys.tenant(&acme).await.unwrap();
    assert_eq!(tenant_keys.current_kek_version(), 1);
    // Steps of a rotation, cut short: KEK 2 stored, 5 of 11 keys rewrapped, KEK 1 kept.
    let (kek2, wrapped) = root.new_kek(&acme, 2).unwrap();
    store
        .insert_kek(
            &acme,
            custodian_store::WrappedKek {
                version: 2,
                wrapped,
                created_at: now(),
            },
        )
        .await
        .unwrap();
    let (_, wrapped1) = {
        let keks = store.keks(&acme).await.unwrap();
        (keks[0].version, keks[0].wrapped.clone())
    };
    let kek1 = root.unwrap_kek(&acme, 1, &wrapped1).unwrap();
    let half = store.data_keys_below(&acme, 2, "", 5).await.unwrap();
    let rewrapped = half
        .iter()
        .map(|w| {
            let id = DataKeyId::decode(&w.id).unwrap();
            let key = kek1.unwrap(&id, &w.wrapped).unwrap();
            custodian_store::WrappedDataKey {
                id: w.id.clone(),
                kek_version: 2,
                wrapped: kek2.wrap(&id, &key).unwrap(),
            }
        })
        .collect();
    store.rewrap_data_keys(&acme, rewrapped).await.unwrap();

    // A fresh node (nothing cached) reads every record across both KEK versions.
    let node = server.another_node().await;
    for (i, id) in ids.iter().enumerate() {
        let r = node.get_record("acme", &admin, id).await.ok_json();
        assert_eq!(r["payload"], json!({"i": i}));
    }
    // The next rotation finishes the job and retires both old versions.
    let rotation = node.state.keys.rotate(&acme).await.unwrap();
    assert_eq!(rotation.to_version, 3);
    assert_eq!(rotation.rewrapped, 11);
    assert_eq!(rotation.destroyed_versions, vec![1, 2]);
    for id in &ids {
        node.get_record("acme", &admin, id).await.ok_json();
    }
    drop(node);
}

fn days_from_now(n: i64) -> jiff::Timestamp {
    now()
        .to_zoned(jiff::tz::TimeZone::UTC)
        .checked_add(n.days())
        .unwrap()
        .timestamp()
}

/// Rows altered behind the server's back: a flipped ciphertext byte, a truncated blob, a
/// ciphertext copied onto another record, and a record moved to another tenant. Each is a
/// distinct, clear integrity failure and never plaintext.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampered_rows_fail_their_integrity_check() {
    let server = TestServer::sqlite().await;
    let acme = server.token("acme", Role::Admin).await;
    let globex = server.token("globex", Role::Admin).await;
    let t = rfc3339(now() - 1.hour());
    let line = |i: i32| record_line("app_log", &["same-person"], &t, json!({ "i": i }));
    let ids = server
        .ingest(
            "acme",
            &acme,
            &[line(0), line(1), line(2), line(3)].join("\n"),
        )
        .await;
    let globex_ids = server.ingest("globex", &globex, &line(9)).await;
    let db = rusqlite::Connection::open(server.data_dir().join("custodian.db")).unwrap();
    let exec = |sql: &str, id: &str| {
        let n = db.execute(sql, rusqlite::params![id]).unwrap();
        assert_eq!(n, 1, "{sql}");
    };
    // Flip one byte in the middle of the ciphertext.
    let mut sealed: Vec<u8> = db
        .query_row(
            "SELECT sealed FROM records WHERE tenant_id = 'acme' AND id = ?1",
            rusqlite::params![ids[0]],
            |r| r.get(0),
        )
        .unwrap();
    let middle = sealed.len() / 2;
    sealed[middle] ^= 1;
    db.execute(
        "UPDATE records SET sealed = ?2 WHERE tenant_id = 'acme' AND id = ?1",
        rusqlite::params![ids[0], sealed],
    )
    .unwrap();
    // Cut the tag off.
    exec(
        "UPDATE records SET sealed = substr(sealed, 1, length(sealed) - 16) WHERE tenant_id = 'acme' AND id = ?1",
        &ids[1],
    );
    // Another record's ciphertext (same type, bucket and subject) pasted in.
    db.execute(
        "UPDATE records SET sealed = (SELECT sealed FROM records WHERE tenant_id = 'acme' AND id = ?2) WHERE tenant_id = 'acme' AND id = ?1",
        rusqlite::params![ids[2], ids[3]],
    )
    .unwrap();
    for id in &ids[..3] {
        let reply = server.get_record("acme", &acme, id).await;
        let problem = reply.problem(500, "integrity-failure");
        assert!(!reply.text().contains("\"i\""), "{problem}");
    }
    server.get_record("acme", &acme, &ids[3]).await.ok_json();
    // A globex row moved into acme: acme's keys and context do not open it.
    db.execute(
        "UPDATE records SET tenant_id = 'acme' WHERE tenant_id = 'globex' AND id = ?1",
        rusqlite::params![globex_ids[0]],
    )
    .unwrap();
    let moved = server.get_record("acme", &acme, &globex_ids[0]).await;
    assert!(
        moved.status == 500 || moved.status == 410,
        "a moved row must not open: {}",
        moved.text()
    );
    assert!(!moved.text().contains("\"i\""), "{}", moved.text());
}
