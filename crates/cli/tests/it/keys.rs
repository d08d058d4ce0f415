//! The key hierarchy end to end: shredding makes records unreadable with a clear problem,
//! rotation rewraps keys without touching ciphertext and reads keep working.

use custodian_core::access::Role;
use custodian_core::ids::TenantId;
use custodian_crypto::DataKeyId;
use custodian_store::ShredScope;
use jiff::ToSpan;
use serde_json::json;

use crate::harness::{TestServer, now, on_both_backends, record_line};

on_both_backends!(
    shredding_a_subject_or_bucket_makes_its_records_gone_for_good,
    rotation_keeps_ciphertext_and_reads,
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
