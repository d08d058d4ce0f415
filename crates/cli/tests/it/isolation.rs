//! Tenant isolation on both backends: a token of acme never reads, lists, deletes or writes
//! globex's records, whatever path or id it tries, and globex's data stays intact.

use custodian_core::access::Role;
use jiff::ToSpan;
use serde_json::json;

use crate::harness::{TestServer, now, on_both_backends, record_line, rfc3339, unique};

on_both_backends!(
    a_token_never_crosses_its_tenant,
    idempotency_keys_are_per_tenant
);

async fn a_token_never_crosses_its_tenant(server: TestServer) {
    let acme = server.token("acme", Role::Admin).await;
    let globex = server.token("globex", Role::Admin).await;
    let shared = unique("shared-subject");
    let globex_only = unique("globex-subject");
    let t = rfc3339(now() - 1.hour());

    let acme_ids = server
        .ingest(
            "acme",
            &acme,
            &record_line("app_log", &[&shared], &t, json!({"owner": "acme"})),
        )
        .await;
    let globex_body = [
        record_line(
            "customer_record",
            &[&shared],
            &t,
            json!({"owner": "globex"}),
        ),
        record_line("app_log", &[&globex_only], &t, json!({"owner": "globex"})),
    ]
    .join("\n");
    let globex_ids = server.ingest("globex", &globex, &globex_body).await;
    let before: Vec<_> = {
        let mut records = Vec::new();
        for id in &globex_ids {
            records.push(server.get_record("globex", &globex, id).await.ok_json());
        }
        records
    };

    for id in &globex_ids {
        // Through globex's path: refused outright.
        server
            .get_record("globex", &acme, id)
            .await
            .problem(403, "forbidden");
        server
            .delete(&format!("/v1/tenants/globex/records/{id}"), &acme)
            .await
            .problem(403, "forbidden");
        // Through acme's own path: globex's ids name nothing.
        server
            .get_record("acme", &acme, id)
            .await
            .problem(404, "record-not-found");
        server
            .delete(&format!("/v1/tenants/acme/records/{id}"), &acme)
            .await
            .problem(404, "record-not-found");
    }
    for subject in [&shared, &globex_only] {
        server
            .list_subject("globex", &acme, subject, "")
            .await
            .problem(403, "forbidden");
    }
    // The same subject id in two tenants: each sees only its own records.
    assert_eq!(
        server.subject_ids("acme", &acme, &shared, 100).await,
        acme_ids
    );
    assert_eq!(
        server.subject_ids("globex", &globex, &shared, 100).await,
        [globex_ids[0].clone()]
    );
    assert!(
        server
            .subject_ids("acme", &acme, &globex_only, 100)
            .await
            .is_empty()
    );
    // Nor may acme write into globex.
    server
        .post_records(
            "globex",
            &acme,
            &record_line("app_log", &[&globex_only], &t, json!({"owner": "acme"})),
            None,
        )
        .await
        .problem(403, "forbidden");
    // And globex cannot reach acme's record either.
    server
        .get_record("acme", &globex, &acme_ids[0])
        .await
        .problem(403, "forbidden");

    // globex's records are all still there, unchanged.
    for (id, earlier) in globex_ids.iter().zip(&before) {
        let record = server.get_record("globex", &globex, id).await.ok_json();
        assert_eq!(&record, earlier);
        assert_eq!(record["payload"], json!({"owner": "globex"}));
        assert_eq!(record["tenant"], "globex");
    }
    assert_eq!(
        server
            .subject_ids("globex", &globex, &globex_only, 100)
            .await,
        [globex_ids[1].clone()]
    );
}

/// A key acme used means nothing to globex: globex's batch is stored and answered afresh,
/// never with acme's ids.
async fn idempotency_keys_are_per_tenant(server: TestServer) {
    let acme = server.token("acme", Role::Writer).await;
    let globex = server.token("globex", Role::Writer).await;
    let subject = unique("s");
    let body = record_line("app_log", &[&subject], &rfc3339(now()), json!({"n": 1}));
    let key = unique("key");

    let acme_answer = server
        .post_records("acme", &acme, &body, Some(&key))
        .await
        .ok_json();
    let globex_reply = server
        .post_records("globex", &globex, &body, Some(&key))
        .await;
    let globex_answer = globex_reply.ok_json();
    assert_eq!(globex_reply.header("idempotent-replayed"), None);
    assert_ne!(globex_answer["ids"], acme_answer["ids"]);
    assert_eq!(
        server.subject_ids("globex", &globex, &subject, 100).await,
        [globex_answer["ids"][0].as_str().unwrap().to_owned()]
    );
    assert_eq!(
        server.subject_ids("acme", &acme, &subject, 100).await.len(),
        1
    );
}
