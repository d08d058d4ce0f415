//! The retention sweeper end to end on both backends: due buckets destroyed with a signed
//! certificate, a legal hold keeping a bucket and stopping a record delete, release making the
//! bucket due at the next sweep, a sweep interrupted after the shred finished by the next one,
//! and repeated sweeps doing nothing more.

use custodian_core::access::Role;
use custodian_core::hold::HoldScope;
use custodian_core::ids::TenantId;
use custodian_server::audit::Actor;
use custodian_server::retention::{self, Certificate};
use custodian_store::{ReleaseOutcome, ShredScope};
use jiff::ToSpan;
use serde_json::json;

use crate::harness::{TestServer, ids_of, on_both_backends, record_line, rfc3339};

on_both_backends!(sweeper_destroys_due_buckets_unless_held);

fn admin_actor() -> Actor {
    Actor {
        id: "token:test-admin".into(),
        request_id: None,
    }
}

async fn sweeper_destroys_due_buckets_unless_held(server: TestServer) {
    let state = server.state.clone();
    let acme = TenantId::new("acme").unwrap();
    let writer = server.token("acme", Role::Writer).await;
    let admin = server.token("acme", Role::Admin).await;
    // app_log keeps 180 days: these three share one bucket, due 200 days on.
    let start = rfc3339(server.now() - 1.hour());
    let body = [
        record_line("app_log", &["alice"], &start, json!({"n": 1})),
        record_line("app_log", &["bob"], &start, json!({"n": 2})),
        record_line("app_log", &["carol"], &start, json!({"n": 3})),
    ]
    .join("\n");
    let mut ids = ids_of(
        &server
            .post_records("acme", &writer, &body, None)
            .await
            .ok_json(),
    );
    server
        .clock
        .advance(jiff::SignedDuration::from_hours(200 * 24));
    // A record whose retention is already over is refused, not stored.
    let refused = server
        .post_records(
            "acme",
            &writer,
            &record_line("app_log", &["dave"], &start, json!({"n": 0})),
            None,
        )
        .await
        .problem(422, "invalid-batch");
    assert!(
        refused["errors"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("may no longer be kept")
    );
    let recent = rfc3339(server.now() - 1.hour());
    ids.extend(
        server
            .ingest(
                "acme",
                &writer,
                &record_line("app_log", &["dave"], &recent, json!({"n": 4})),
            )
            .await,
    );
    let (alice, bob, carol, dave) = (&ids[0], &ids[1], &ids[2], &ids[3]);

    // A hold on alice keeps the whole due bucket and stops her record's delete.
    let pseudonym = state.keys.tenant(&acme).await.unwrap().pseudonym("alice");
    let hold = retention::place_hold(
        &state,
        &admin_actor(),
        &acme,
        HoldScope::Subject(pseudonym),
        "CASE-42".into(),
        "litigation".into(),
    )
    .await
    .unwrap();
    let report = retention::sweep(&state, server.now()).await.unwrap();
    assert!(report.destroyed.is_empty());
    assert_eq!(report.held.len(), 1);
    assert_eq!(report.held[0].1, vec![hold.id.clone()]);
    let refused = server
        .delete(&format!("/v1/tenants/acme/records/{alice}"), &admin)
        .await
        .problem(409, "under-hold");
    assert_eq!(refused["holds"], json!([hold.id]));
    server.get_record("acme", &writer, alice).await.ok_json();
    // Records the hold does not cover can still be deleted.
    let deleted = server
        .delete(&format!("/v1/tenants/acme/records/{bob}"), &admin)
        .await;
    assert_eq!(deleted.status, 204, "{}", deleted.text());

    // Released: the bucket is due at the next sweep, and destroyed with one certificate.
    let released = retention::release_hold(&state, &admin_actor(), &acme, &hold.id)
        .await
        .unwrap();
    assert!(matches!(released, ReleaseOutcome::Released(_)));
    assert!(matches!(
        retention::release_hold(&state, &admin_actor(), &acme, &hold.id)
            .await
            .unwrap(),
        ReleaseOutcome::AlreadyReleased(_)
    ));
    let report = retention::sweep(&state, server.now()).await.unwrap();
    assert!(report.held.is_empty());
    assert_eq!(report.destroyed.len(), 1);
    let certificate = &report.destroyed[0];
    assert_eq!(certificate.record_count, 2, "alice and carol");
    for id in [alice, carol] {
        server
            .get_record("acme", &writer, id)
            .await
            .problem(404, "record-not-found");
    }
    server.get_record("acme", &writer, dave).await.ok_json();

    // The stored certificate verifies with the deployment's key and says what the sweep said.
    let stored = state.store.certificates(&acme).await.unwrap();
    assert_eq!(stored.len(), 1);
    let verifier =
        custodian_tlog::note::Verifier::parse(&state.audit.verifier_key().unwrap()).unwrap();
    let text = verifier.open_text(&stored[0].note).unwrap();
    let signed = Certificate::from_signed_text(text).unwrap();
    assert_eq!(&signed, certificate);
    assert_eq!(signed.tenant, "acme");
    assert_eq!(signed.sanitization, "purge");
    assert!(signed.verification.contains("key_destroyed"));
    let mut tampered = stored[0]
        .note
        .replace("\"record_count\":2", "\"record_count\":1");
    assert!(verifier.open_text(&tampered).is_err());
    tampered.clear();

    // Idempotent: nothing is due any more.
    let again = retention::sweep(&state, server.now()).await.unwrap();
    assert!(again.destroyed.is_empty() && again.held.is_empty());

    // A sweep cut off after its shred: the rows are unreadable at once, and the next sweep
    // purges and certifies them.
    let ids = [dave.clone()];
    server
        .clock
        .advance(jiff::SignedDuration::from_hours(200 * 24));
    let due = state
        .store
        .due_buckets(Some(&acme), server.now())
        .await
        .unwrap();
    assert_eq!(due.len(), 1);
    let key = custodian_crypto::DataKeyId::Bucket {
        data_type: due[0].data_type.clone(),
        bucket: due[0].bucket.clone(),
    };
    state
        .keys
        .shred(&acme, ShredScope::Keys(vec![key.encode()]))
        .await
        .unwrap();
    server
        .get_record("acme", &writer, &ids[0])
        .await
        .problem(410, "key-destroyed");
    let finished = retention::sweep(&state, server.now()).await.unwrap();
    assert_eq!(finished.destroyed.len(), 1);
    assert_eq!(finished.destroyed[0].record_count, 1);
    server
        .get_record("acme", &writer, &ids[0])
        .await
        .problem(404, "record-not-found");
    assert_eq!(state.store.certificates(&acme).await.unwrap().len(), 2);

    // A destroyed key is never made again: a record for an erased subject is refused whole.
    let now = rfc3339(server.now());
    server
        .ingest(
            "acme",
            &writer,
            &record_line("app_log", &["frank"], &now, json!({"n": 5})),
        )
        .await;
    let frank = state.keys.tenant(&acme).await.unwrap().pseudonym("frank");
    state
        .keys
        .shred(
            &acme,
            ShredScope::Keys(vec![custodian_crypto::DataKeyId::Subject(frank).encode()]),
        )
        .await
        .unwrap();
    let body = [
        record_line("app_log", &["erin"], &now, json!({"n": 6})),
        record_line("app_log", &["frank"], &now, json!({"n": 7})),
    ]
    .join("\n");
    let refused = server
        .post_records("acme", &writer, &body, None)
        .await
        .problem(410, "key-destroyed");
    assert!(
        refused["detail"]
            .as_str()
            .unwrap()
            .contains("nothing was stored")
    );
}
