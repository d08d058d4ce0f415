//! The retention engine end to end on both backends, with the server's clock moved ahead
//! instead of sleeping: due buckets destroyed with signed certificates, held records moved
//! aside and kept, every delete path stopped by a hold, the dry-run plan, retention events,
//! two-step deletes, tenant termination, and a sweep cut off after each of its steps.

use custodian_core::access::Role;
use custodian_core::ids::TenantId;
use custodian_server::retention::{self, Certificate, Step, StopAfter};
use jiff::{SignedDuration, ToSpan};
use serde_json::{Value, json};

use crate::harness::{
    TestServer, default_policy_text, on_both_backends, pending_line, record_line, rfc3339,
};

on_both_backends!(
    held_records_are_moved_aside_and_the_rest_destroyed,
    every_delete_path_stops_at_a_hold,
    events_start_retention_clocks,
    record_deletes_wait_out_their_cancel_window,
    a_terminated_tenant_is_purged_with_one_summary_certificate,
    a_sweep_cut_off_after_any_step_is_finished_by_the_next,
    holds_are_managed_over_http_with_clear_errors,
    a_policy_change_moves_stored_expiries_with_a_grace_for_shortenings,
);

const DAY: SignedDuration = SignedDuration::from_hours(24);

fn days(n: i64) -> SignedDuration {
    DAY * i32::try_from(n).unwrap()
}

async fn place_hold(server: &TestServer, token: &str, scope: Value) -> String {
    let reply = server
        .post_json(
            "/v1/tenants/acme/holds",
            token,
            &json!({"scope": scope, "case_id": "CASE-7", "reason": "litigation"}),
        )
        .await;
    assert_eq!(reply.status, 201, "{}", reply.text());
    reply.json()["id"].as_str().unwrap().to_owned()
}

async fn release_hold(server: &TestServer, token: &str, id: &str) -> Value {
    server
        .delete(&format!("/v1/tenants/acme/holds/{id}"), token)
        .await
        .ok_json()
}

/// Checks a certificate's signature with the deployment's key and returns what it says.
fn verified(server: &TestServer, note: &str) -> Certificate {
    let verifier =
        custodian_tlog::note::Verifier::parse(&server.state.audit.verifier_key().unwrap()).unwrap();
    Certificate::from_signed_text(verifier.open_text(note).unwrap()).unwrap()
}

async fn held_records_are_moved_aside_and_the_rest_destroyed(server: TestServer) {
    let state = server.state.clone();
    let writer = server.token("acme", Role::Writer).await;
    let admin = server.token("acme", Role::Admin).await;
    let auditor = server.token("acme", Role::Auditor).await;
    // app_log keeps 180 days: these three share one bucket, due 181 days on.
    let start = rfc3339(server.now() - 1.hour());
    let body = ["alice", "bob", "carol"]
        .map(|s| record_line("app_log", &[s], &start, json!({"who": s})))
        .join("\n");
    let ids = server.ingest("acme", &writer, &body).await;
    let (alice, bob, carol) = (&ids[0], &ids[1], &ids[2]);
    let hold = place_hold(
        &server,
        &admin,
        json!({"kind": "subject", "subject": "alice"}),
    )
    .await;

    server.clock.advance(days(200));
    // A record whose retention is already over is refused, not stored.
    let refused = server
        .post_records(
            "acme",
            &writer,
            &record_line("app_log", &["dave"], &start, json!({})),
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
    let dave = &server
        .ingest(
            "acme",
            &writer,
            &record_line("app_log", &["dave"], &recent, json!({})),
        )
        .await[0];

    // The dry run says what will happen and changes nothing.
    let plan = server
        .get("/v1/tenants/acme/retention/plan", Some(&auditor))
        .await
        .ok_json();
    let buckets = plan["buckets"].as_array().unwrap();
    assert_eq!(buckets.len(), 1, "{plan}");
    assert_eq!(buckets[0]["action"], "partial");
    assert_eq!(buckets[0]["records"], 3);
    assert_eq!(buckets[0]["held_records"], 1);
    assert_eq!(buckets[0]["holds"], json!([hold]));
    let bad_date = server
        .get(
            "/v1/tenants/acme/retention/plan?at=tomorrow",
            Some(&auditor),
        )
        .await
        .problem(400, "invalid-request");
    assert!(
        bad_date["detail"]
            .as_str()
            .unwrap()
            .contains("neither an RFC 3339 time")
    );
    server.get_record("acme", &writer, bob).await.ok_json();

    // The sweep destroys bob and carol; alice moves to a bucket of her own and stays readable.
    let report = retention::sweep(&state, server.now()).await.unwrap();
    assert_eq!(report.destroyed.len(), 1);
    assert_eq!(report.rekeyed, 1);
    assert!(report.bytes_destroyed > 2 * 28, "two sealed records");
    let certificate = &report.destroyed[0];
    assert_eq!(certificate.record_count, 2);
    for id in [bob, carol] {
        server
            .get_record("acme", &writer, id)
            .await
            .problem(404, "record-not-found");
    }
    let kept = server.get_record("acme", &writer, alice).await.ok_json();
    assert_eq!(kept["payload"], json!({"who": "alice"}));
    assert!(
        kept["key_bucket"].as_str().unwrap().starts_with('h'),
        "{kept}"
    );
    server.get_record("acme", &writer, dave).await.ok_json();

    // The certificate is listed for the tenant, verifies, and matches the sweep's.
    let listed = server
        .get("/v1/tenants/acme/deletions", Some(&auditor))
        .await
        .ok_json();
    let note = listed[0]["signed_note"].as_str().unwrap();
    assert_eq!(&verified(&server, note), certificate);
    assert!(certificate.verification.contains("key_destroyed"));
    assert_eq!(certificate.sanitization, "purge");
    let fetched = server
        .get(
            &format!("/v1/tenants/acme/deletions/{}", certificate.id),
            Some(&auditor),
        )
        .await
        .ok_json();
    assert_eq!(fetched["certificate"]["id"], certificate.id.as_str());
    server
        .get("/v1/tenants/acme/deletions/del_nope", Some(&auditor))
        .await
        .problem(404, "certificate-not-found");
    let tampered = note.replace("\"record_count\":2", "\"record_count\":1");
    let verifier =
        custodian_tlog::note::Verifier::parse(&state.audit.verifier_key().unwrap()).unwrap();
    assert!(verifier.open_text(&tampered).is_err());

    // The figures an operator alerts on.
    let metrics = server.get("/metrics", None).await.text();
    for name in [
        "custodian_retention_overdue_records",
        "custodian_retention_oldest_overdue_age_seconds",
        "custodian_retention_last_sweep_timestamp_seconds",
        "custodian_retention_records_destroyed_total",
        "custodian_retention_bytes_destroyed_total",
    ] {
        assert!(metrics.contains(name), "{name} missing from /metrics");
    }

    // Idempotent: nothing more is due.
    let again = retention::sweep(&state, server.now()).await.unwrap();
    assert!(again.destroyed.is_empty());
    assert_eq!(again.held.len(), 1, "alice's bucket is due and held");

    // Released: alice is destroyed at the next sweep, under a certificate of her own.
    let released = release_hold(&server, &admin, &hold).await;
    assert_eq!(released["active"], false);
    let report = retention::sweep(&state, server.now()).await.unwrap();
    assert_eq!(report.destroyed.len(), 1);
    assert_eq!(report.destroyed[0].record_count, 1);
    server
        .get_record("acme", &writer, alice)
        .await
        .problem(404, "record-not-found");
    server.get_record("acme", &writer, dave).await.ok_json();
    let acme = TenantId::new("acme").unwrap();
    assert_eq!(state.store.certificates(&acme).await.unwrap().len(), 2);

    // A destroyed key is never made again: a record for an erased subject is refused whole.
    let frank = state.keys.tenant(&acme).await.unwrap().pseudonym("frank");
    let now = rfc3339(server.now());
    server
        .ingest(
            "acme",
            &writer,
            &record_line("app_log", &["frank"], &now, json!({})),
        )
        .await;
    state
        .keys
        .shred(
            &acme,
            custodian_store::ShredScope::Keys(vec![
                custodian_crypto::DataKeyId::Subject(frank).encode(),
            ]),
        )
        .await
        .unwrap();
    let body = [
        record_line("app_log", &["erin"], &now, json!({})),
        record_line("app_log", &["frank"], &now, json!({})),
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

async fn every_delete_path_stops_at_a_hold(server: TestServer) {
    let state = server.state.clone();
    let writer = server.token("acme", Role::Writer).await;
    let admin = server.token("acme", Role::Admin).await;
    let operator = server.operator_token().await;
    let t = rfc3339(server.now() - 1.hour());
    let body = [
        record_line("app_log", &["alice"], &t, json!({})),
        record_line("customer_record", &["bob"], &t, json!({})),
    ]
    .join("\n");
    let ids = server.ingest("acme", &writer, &body).await;
    let hold = place_hold(
        &server,
        &admin,
        json!({"kind": "data_type", "data_type": "app_log"}),
    )
    .await;

    // Record DELETE: refused, audited as a denial.
    let refused = server
        .delete(&format!("/v1/tenants/acme/records/{}", ids[0]), &admin)
        .await
        .problem(409, "under-hold");
    assert_eq!(refused["holds"], json!([hold]));

    // Sweeper: the whole due bucket is held; nothing is shredded.
    server.clock.advance(days(200));
    let report = retention::sweep(&state, server.now()).await.unwrap();
    assert!(report.destroyed.is_empty());
    assert_eq!(report.held[0].1, vec![hold.clone()]);
    assert_eq!(report.rekeyed, 0);
    server.get_record("acme", &writer, &ids[0]).await.ok_json();

    // Termination (and the key shredding it does): everything else goes, the held record and
    // the tenant's keys stay until the hold is released.
    let terminated = server
        .post_json(
            "/v1/tenants/acme/terminate",
            &operator,
            &json!({"reason": "contract ended"}),
        )
        .await;
    assert_eq!(terminated.status, 201, "{}", terminated.text());
    // The purge waits out the policy's longest cancel window (payment: 7 days).
    server.clock.advance(days(8));
    let report = retention::sweep(&state, server.now()).await.unwrap();
    assert_eq!(report.held_terminations.len(), 1);
    server.get_record("acme", &admin, &ids[0]).await.ok_json();
    server
        .get_record("acme", &admin, &ids[1])
        .await
        .problem(404, "record-not-found");
}

async fn events_start_retention_clocks(server: TestServer) {
    let state = server.state.clone();
    let writer = server.token("acme", Role::Writer).await;
    let reader = server.token("acme", Role::Reader).await;
    let t = rfc3339(server.now() - 1.hour());
    let body = [
        pending_line(
            "incident_artifact",
            &["x"],
            &t,
            Some("INC-42"),
            json!({"n": 1}),
        ),
        pending_line(
            "incident_artifact",
            &["y"],
            &t,
            Some("INC-43"),
            json!({"n": 2}),
        ),
    ]
    .join("\n");
    let ids = server.ingest("acme", &writer, &body).await;
    let post_event = |body: Value| {
        let server = &server;
        let writer = writer.clone();
        async move {
            server
                .post_json("/v1/tenants/acme/events", &writer, &body)
                .await
        }
    };

    let first = post_event(json!({"event": "ticket_closed", "ticket": "INC-42"})).await;
    assert_eq!(first.status, 201, "{}", first.text());
    let first = first.json();
    assert_eq!(first["clocks_started"], 1);
    let closed = server.get_record("acme", &reader, &ids[0]).await.ok_json();
    assert_eq!(closed["retention"]["state"], "scheduled");
    let recorded_at: jiff::Timestamp = first["recorded_at"].as_str().unwrap().parse().unwrap();
    assert_eq!(
        closed["expires_at"].as_str().unwrap(),
        (recorded_at + (90 * 24).hours()).to_string()
    );
    let open = server.get_record("acme", &reader, &ids[1]).await.ok_json();
    assert_eq!(open["retention"]["state"], "pending_event");
    // Sent again: the first time stands.
    let again = post_event(json!({"event": "ticket_closed", "ref": "INC-42"})).await;
    assert_eq!(again.status, 200);
    assert_eq!(again.json()["recorded_at"], first["recorded_at"]);
    // An event before its records: kept, and the records' clock starts when they arrive.
    let early = post_event(json!({"event": "ticket_closed", "ref": "INC-99"})).await;
    assert_eq!(early.status, 201);
    assert_eq!(early.json()["clocks_started"], 0);
    let late = server
        .ingest(
            "acme",
            &writer,
            &pending_line("incident_artifact", &["z"], &t, Some("INC-99"), json!({})),
        )
        .await;
    let late = server.get_record("acme", &reader, &late[0]).await.ok_json();
    assert_eq!(late["retention"]["state"], "scheduled", "{late}");
    // Bad events are refused clearly.
    let unknown = post_event(json!({"event": "ticket_opened", "ref": "INC-1"})).await;
    assert_eq!(unknown.status, 400);
    assert!(unknown.text().contains("wait for: ticket_closed"));
    assert_eq!(
        post_event(json!({"event": "ticket_closed"})).await.status,
        400
    );
    assert_eq!(
        post_event(json!({"event": "ticket_closed", "ref": ""}))
            .await
            .status,
        400
    );

    // 90 days on, the closed ticket's record is destroyed; the open one stays.
    server.clock.advance(days(92));
    let report = retention::sweep(&state, server.now()).await.unwrap();
    assert_eq!(
        report.destroyed.iter().map(|c| c.record_count).sum::<u64>(),
        2
    );
    server
        .get_record("acme", &reader, &ids[0])
        .await
        .problem(404, "record-not-found");
    server.get_record("acme", &reader, &ids[1]).await.ok_json();
}

async fn record_deletes_wait_out_their_cancel_window(server: TestServer) {
    let state = server.state.clone();
    let writer = server.token("acme", Role::Writer).await;
    let admin = server.token("acme", Role::Admin).await;
    let t = rfc3339(server.now() - 1.hour());
    // payment has a 7-day cancel window in the development policy; app_log none.
    let body = [
        record_line("payment", &["p1"], &t, json!({"n": 1})),
        record_line("payment", &["p2"], &t, json!({"n": 2})),
        record_line("app_log", &["p3"], &t, json!({"n": 3})),
    ]
    .join("\n");
    let ids = server.ingest("acme", &writer, &body).await;
    let path = |id: &str| format!("/v1/tenants/acme/records/{id}");

    let at_once = server.delete(&path(&ids[2]), &admin).await.ok_json();
    assert_eq!(at_once["state"], "destroyed");
    let scheduled = server.delete(&path(&ids[0]), &admin).await;
    assert_eq!(scheduled.status, 202, "{}", scheduled.text());
    assert!(scheduled.json()["due_at"].is_string());
    let second = server.delete(&path(&ids[1]), &admin).await.json()["deletion"]
        .as_str()
        .unwrap()
        .to_owned();
    // Still readable during the window; the second is cancelled.
    server.get_record("acme", &writer, &ids[0]).await.ok_json();
    let cancelled = server
        .delete(
            &format!("/v1/tenants/acme/scheduled-deletions/{second}"),
            &admin,
        )
        .await
        .ok_json();
    assert_eq!(cancelled["state"], "cancelled");
    server
        .delete(
            &format!("/v1/tenants/acme/scheduled-deletions/{second}"),
            &admin,
        )
        .await
        .problem(409, "deletion-not-cancellable");
    server
        .delete("/v1/tenants/acme/scheduled-deletions/sdl_nope", &admin)
        .await
        .problem(404, "deletion-not-found");
    // Before the window ends a sweep does nothing; after, the first is destroyed.
    assert!(
        retention::sweep(&state, server.now())
            .await
            .unwrap()
            .destroyed
            .is_empty()
    );
    server.clock.advance(days(8));
    let report = retention::sweep(&state, server.now()).await.unwrap();
    assert_eq!(report.destroyed.len(), 1);
    assert_eq!(report.destroyed[0].scope, format!("record/{}", ids[0]));
    server
        .get_record("acme", &writer, &ids[0])
        .await
        .problem(404, "record-not-found");
    server.get_record("acme", &writer, &ids[1]).await.ok_json();
    let listed = server
        .get("/v1/tenants/acme/scheduled-deletions", Some(&admin))
        .await
        .ok_json();
    let states: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["state"].as_str().unwrap())
        .collect();
    assert_eq!(states, ["done", "cancelled"]);
    assert_eq!(
        listed[0]["certificate"].as_str().unwrap(),
        report.destroyed[0].id
    );
}

async fn a_terminated_tenant_is_purged_with_one_summary_certificate(server: TestServer) {
    let state = server.state.clone();
    let writer = server.token("acme", Role::Writer).await;
    let admin = server.token("acme", Role::Admin).await;
    let operator = server.operator_token().await;
    let t = rfc3339(server.now() - 1.hour());
    let body = [
        record_line("app_log", &["a"], &t, json!({})),
        record_line("customer_record", &["b"], &t, json!({})),
        record_line("incident_artifact", &["c"], &t, json!({})),
        record_line("customer_record", &["held"], &t, json!({"keep": true})),
    ]
    .join("\n");
    let ids = server.ingest("acme", &writer, &body).await;
    let globex_writer = server.token("globex", Role::Writer).await;
    let other = server
        .ingest(
            "globex",
            &globex_writer,
            &record_line("app_log", &["a"], &t, json!({})),
        )
        .await;
    let hold = place_hold(
        &server,
        &admin,
        json!({"kind": "subject", "subject": "held"}),
    )
    .await;
    let terminate = |body: Value| {
        let server = &server;
        let operator = operator.clone();
        async move {
            server
                .post_json("/v1/tenants/acme/terminate", &operator, &body)
                .await
        }
    };
    assert_eq!(
        terminate(json!({"reason": "x", "purge_after": "soon"}))
            .await
            .status,
        400
    );
    server
        .post_json(
            "/v1/tenants/acme/terminate",
            &admin,
            &json!({"reason": "x"}),
        )
        .await
        .problem(403, "forbidden");
    // A termination can be withdrawn before its purge: globex takes writes again.
    let globex = server
        .post_json(
            "/v1/tenants/globex/terminate",
            &operator,
            &json!({"reason": "mistake"}),
        )
        .await;
    assert_eq!(globex.status, 201, "{}", globex.text());
    server
        .post_records(
            "globex",
            &globex_writer,
            &record_line("app_log", &["a"], &t, json!({})),
            None,
        )
        .await
        .problem(409, "tenant-terminated");
    server
        .delete("/v1/tenants/globex/terminate", &operator)
        .await
        .ok_json();
    server
        .delete("/v1/tenants/globex/terminate", &operator)
        .await
        .problem(404, "not-terminated");
    server
        .ingest(
            "globex",
            &globex_writer,
            &record_line("app_log", &["a"], &t, json!({})),
        )
        .await;

    let first = terminate(json!({"reason": "contract ended", "purge_after": "30d"})).await;
    assert_eq!(first.status, 201, "{}", first.text());
    terminate(json!({"reason": "again"}))
        .await
        .problem(409, "already-terminated");
    // Writes are refused at once; reads go on until the purge.
    server
        .post_records(
            "acme",
            &writer,
            &record_line("app_log", &["n"], &t, json!({})),
            None,
        )
        .await
        .problem(409, "tenant-terminated");
    server.get_record("acme", &writer, &ids[0]).await.ok_json();
    assert!(
        retention::sweep(&state, server.now())
            .await
            .unwrap()
            .destroyed
            .is_empty(),
        "the purge waits 30 days"
    );

    server.clock.advance(days(31));
    server
        .delete("/v1/tenants/acme/terminate", &operator)
        .await
        .problem(409, "deletion-not-cancellable");
    let report = retention::sweep(&state, server.now()).await.unwrap();
    assert_eq!(report.held_terminations.len(), 1);
    for id in &ids[..3] {
        server
            .get_record("acme", &admin, id)
            .await
            .problem(404, "record-not-found");
    }
    server.get_record("acme", &admin, &ids[3]).await.ok_json();
    // Released: the last record goes, then every key, and one summary certificate.
    release_hold(&server, &admin, &hold).await;
    let report = retention::sweep(&state, server.now()).await.unwrap();
    let summary = report
        .destroyed
        .iter()
        .find(|c| c.scope == "tenant/acme")
        .expect("summary certificate");
    assert_eq!(summary.record_count, 4);
    assert!(summary.verification.contains("failed"));
    let acme = TenantId::new("acme").unwrap();
    assert!(state.keys.tenant(&acme).await.is_err(), "every key is gone");
    let stored = state.store.certificates(&acme).await.unwrap();
    let row = stored.iter().find(|r| r.scope == "tenant/acme").unwrap();
    assert_eq!(&verified(&server, &row.note), summary);
    assert_eq!(
        state
            .store
            .termination(&acme)
            .await
            .unwrap()
            .unwrap()
            .certificate_id,
        Some(summary.id.clone())
    );
    // Another tenant is untouched; a further sweep does nothing.
    server
        .get_record("globex", &globex_writer, &other[0])
        .await
        .ok_json();
    assert!(
        retention::sweep(&state, server.now())
            .await
            .unwrap()
            .destroyed
            .is_empty()
    );
}

async fn a_sweep_cut_off_after_any_step_is_finished_by_the_next(server: TestServer) {
    let writer = server.token("acme", Role::Writer).await;
    let admin = server.token("acme", Role::Admin).await;
    for step in [Step::Rekeyed, Step::Shredded, Step::Verified, Step::Purged] {
        let t = rfc3339(server.now() - 1.hour());
        let body = ["kept", "gone-1", "gone-2"]
            .map(|s| record_line("app_log", &[s], &t, json!({})))
            .join("\n");
        let ids = server.ingest("acme", &writer, &body).await;
        let hold = place_hold(
            &server,
            &admin,
            json!({"kind": "subject", "subject": "kept"}),
        )
        .await;
        server.clock.advance(days(200));
        let cut =
            retention::sweep_stopping(&server.state, server.now(), StopAfter(Some(step))).await;
        assert!(cut.is_err(), "{step:?}");
        // After the cut, on a fresh node (nothing cached): the held record is readable, and
        // the others are never readable once their key is shredded.
        let node = server.another_node().await;
        node.get_record("acme", &writer, &ids[0]).await.ok_json();
        for id in &ids[1..] {
            let status = node.get_record("acme", &writer, id).await.status;
            match step {
                Step::Rekeyed => assert_eq!(status, 200, "{step:?}"),
                Step::Shredded | Step::Verified => assert_eq!(status, 410, "{step:?}"),
                Step::Purged => assert_eq!(status, 404, "{step:?}"),
            }
        }
        // The next sweep finishes: one certificate for the bucket, whatever the step.
        let report = retention::sweep(&node.state, node.now()).await.unwrap();
        let acme = TenantId::new("acme").unwrap();
        let certificates = node.state.store.certificates(&acme).await.unwrap();
        let scopes: Vec<&str> = certificates.iter().map(|c| c.scope.as_str()).collect();
        let mut distinct = scopes.clone();
        distinct.dedup();
        assert_eq!(scopes, distinct, "one certificate per bucket ({step:?})");
        if step != Step::Purged {
            assert_eq!(report.destroyed.len(), 1, "{step:?}");
            assert_eq!(report.destroyed[0].record_count, 2, "{step:?}");
        }
        for id in &ids[1..] {
            node.get_record("acme", &writer, id)
                .await
                .problem(404, "record-not-found");
        }
        node.get_record("acme", &writer, &ids[0]).await.ok_json();
        drop(node);
        release_hold(&server, &admin, &hold).await;
        retention::sweep(&server.state, server.now()).await.unwrap();
        server
            .get_record("acme", &writer, &ids[0])
            .await
            .problem(404, "record-not-found");
    }
}

async fn holds_are_managed_over_http_with_clear_errors(server: TestServer) {
    let admin = server.token("acme", Role::Admin).await;
    let officer = server.token("acme", Role::SecurityOfficer).await;
    let reader = server.token("acme", Role::Reader).await;
    let post = |token: &str, body: Value| {
        let server = &server;
        let token = token.to_owned();
        async move {
            server
                .post_json("/v1/tenants/acme/holds", &token, &body)
                .await
        }
    };
    let range = json!({"scope": {"kind": "event_time", "from": "2026-01-01T00:00:00Z", "to": "2026-02-01T00:00:00Z"}, "case_id": "C-1", "reason": "audit"});
    let placed = post(&officer, range).await;
    assert_eq!(placed.status, 201, "{}", placed.text());
    let id = placed.json()["id"].as_str().unwrap().to_owned();
    let tenant_wide = post(
        &admin,
        json!({"scope": {"kind": "tenant"}, "case_id": "C-2", "reason": "breach"}),
    )
    .await;
    assert_eq!(tenant_wide.status, 201);
    // Bad input: each a clear 400 naming the problem.
    for (body, says) in [
        (
            json!({"scope": {"kind": "data_type", "data_type": "nope"}, "case_id": "C", "reason": "r"}),
            "unknown data type",
        ),
        (
            json!({"scope": {"kind": "event_time", "from": "2026-02-01T00:00:00Z", "to": "2026-01-01T00:00:00Z"}, "case_id": "C", "reason": "r"}),
            "from < to",
        ),
        (
            json!({"scope": {"kind": "tenant"}, "case_id": "", "reason": "r"}),
            "case_id",
        ),
        (
            json!({"scope": {"kind": "galaxy"}, "case_id": "C", "reason": "r"}),
            "not the expected JSON",
        ),
    ] {
        let reply = post(&admin, body).await;
        assert_eq!(reply.status, 400, "{}", reply.text());
        assert!(reply.text().contains(says), "{}", reply.text());
    }
    post(
        &reader,
        json!({"scope": {"kind": "tenant"}, "case_id": "C", "reason": "r"}),
    )
    .await
    .problem(403, "forbidden");
    let operator = server.operator_token().await;
    let unknown = server
        .post_json(
            "/v1/tenants/nosuch/holds",
            &operator,
            &json!({"scope": {"kind": "tenant"}, "case_id": "C", "reason": "r"}),
        )
        .await;
    assert!(
        unknown.status == 403 || unknown.status == 404,
        "{}",
        unknown.text()
    );

    let listed = server
        .get("/v1/tenants/acme/holds", Some(&officer))
        .await
        .ok_json();
    assert_eq!(listed.as_array().unwrap().len(), 2);
    assert_eq!(listed[0]["kind"], "event_time");
    assert!(
        listed[0]["placed_by"]
            .as_str()
            .unwrap()
            .starts_with("token:")
    );
    release_hold(&server, &officer, &id).await;
    let twice = server
        .delete(&format!("/v1/tenants/acme/holds/{id}"), &officer)
        .await
        .problem(409, "hold-already-released");
    assert!(
        twice["detail"]
            .as_str()
            .unwrap()
            .contains("released by token:")
    );
    server
        .delete("/v1/tenants/acme/holds/hold_nope", &officer)
        .await
        .problem(404, "hold-not-found");
    let listed = server
        .get("/v1/tenants/acme/holds", Some(&officer))
        .await
        .ok_json();
    assert_eq!(listed[0]["active"], false);
    assert_eq!(listed[1]["active"], true);
}

async fn a_policy_change_moves_stored_expiries_with_a_grace_for_shortenings(server: TestServer) {
    let writer = server.token("acme", Role::Writer).await;
    let t = rfc3339(server.now() - 1.hour());
    let body = [
        record_line("app_log", &["a"], &t, json!({"n": 1})),
        record_line("customer_record", &["b"], &t, json!({"n": 2})),
    ]
    .join("\n");
    let ids = server.ingest("acme", &writer, &body).await;
    // The first sweep records the retentions the stored records were computed under.
    let first = retention::sweep(&server.state, server.now()).await.unwrap();
    assert_eq!(first.recomputed, 0);
    let before = server.get_record("acme", &writer, &ids[0]).await.ok_json();

    // A new policy: app_log down to 7 days at most, the standard tier up to 24 months.
    let text = default_policy_text()
        .replace(
            "retention = { min = \"90d\", max = \"180d\" }",
            "retention = { min = \"1d\", max = \"7d\" }",
        )
        .replace(
            "[tiers.standard]\nretention = \"12mo\"",
            "[tiers.standard]\nretention = \"24mo\"",
        );
    let policy = custodian_core::policy::Policy::parse("changed.toml", &text).unwrap();
    let changes = policy.retention_changes(&server.state.policy);
    assert!(
        changes
            .iter()
            .any(|c| c.row.data_type.name.as_str() == "app_log"
                && c.change == custodian_core::retention::Change::Shortened)
    );
    let node = server.another_node_with(policy).await;
    let changed_at = node.now();
    let report = retention::sweep(&node.state, node.now()).await.unwrap();
    assert_eq!(report.recomputed, 2, "both records: {report:?}");
    // Shortened: kept until the 30-day grace ends, in a new bucket, still readable.
    let log = node.get_record("acme", &writer, &ids[0]).await.ok_json();
    let expires: jiff::Timestamp = log["expires_at"].as_str().unwrap().parse().unwrap();
    assert!(
        expires >= changed_at + days(30) && expires < changed_at + days(31),
        "{log}"
    );
    assert_ne!(log["key_bucket"], before["key_bucket"]);
    assert_eq!(log["payload"], json!({"n": 1}));
    // Lengthened: 24 months from the event, at once.
    let customer = node.get_record("acme", &writer, &ids[1]).await.ok_json();
    let event: jiff::Timestamp = t.parse().unwrap();
    let two_years = event
        .to_zoned(jiff::tz::TimeZone::UTC)
        .checked_add(24.months())
        .unwrap()
        .timestamp();
    assert_eq!(
        customer["expires_at"].as_str().unwrap(),
        two_years.to_string()
    );
    // Applied once: a later sweep recomputes nothing; after the grace the log record goes.
    assert_eq!(
        retention::sweep(&node.state, node.now())
            .await
            .unwrap()
            .recomputed,
        0
    );
    node.clock.advance(days(32));
    retention::sweep(&node.state, node.now()).await.unwrap();
    node.get_record("acme", &writer, &ids[0])
        .await
        .problem(404, "record-not-found");
    node.get_record("acme", &writer, &ids[1]).await.ok_json();
}
