//! The store conformance suite: every case runs against SQLite and against PostgreSQL, each in
//! its own database file or schema, so both backends are held to one behaviour.

use custodian_core::hold::{Hold, HoldScope, Release};
use custodian_core::ids::{Class, DataTypeName, RecordId, TenantId};
use custodian_store::{
    AuditLog, CertificateRow, IdempotentResponse, InsertOutcome, PostgresStore, ReleaseOutcome,
    SqliteStore, Store, StoredRecord, TokenRow, testing,
};
use jiff::Timestamp;

fn tenant(s: &str) -> TenantId {
    TenantId::new(s).unwrap()
}

fn ts(s: &str) -> Timestamp {
    s.parse().unwrap()
}

fn record(n: u64, subjects: &[u8]) -> StoredRecord {
    StoredRecord {
        id: RecordId::from_ulid(ulid::Ulid::from_parts(1_700_000_000_000 + n, u128::from(n))),
        data_type: DataTypeName::new("auth_log").unwrap(),
        class: Class::Confidential,
        event_time: ts("2025-01-01T00:00:00Z"),
        ingest_time: ts("2025-01-02T00:00:00.123456Z"),
        expires_at: n.is_multiple_of(2).then(|| ts("2027-01-01T00:00:00Z")),
        pending_event: (n % 2 == 1).then(|| "ticket_closed".to_owned()),
        key_bucket: format!("d2027-01-0{}", n % 3),
        key_subjects: subjects.iter().map(|s| [*s; 32]).collect(),
        sealed: vec![n as u8; 40],
    }
}

fn audit() -> Vec<u8> {
    b"{\"action\":\"test\"}".to_vec()
}

/// A backend for one test: a fresh SQLite file or a fresh PostgreSQL schema.
struct Backend {
    store: Box<dyn Store>,
    _dir: Option<tempfile::TempDir>,
    schema: Option<String>,
}

async fn sqlite() -> Option<Backend> {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("c.db")).await.unwrap();
    Some(Backend {
        store: Box::new(store),
        _dir: Some(dir),
        schema: None,
    })
}

async fn postgres() -> Option<Backend> {
    if !testing::postgres_available().await {
        return None;
    }
    let schema = testing::unique_schema("conformance");
    let store = PostgresStore::connect(&testing::postgres_url(), Some(&schema))
        .await
        .unwrap();
    Some(Backend {
        store: Box::new(store),
        _dir: None,
        schema: Some(schema),
    })
}

macro_rules! conformance {
    ($($case:ident),* $(,)?) => {
        mod sqlite_backend {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let b = super::sqlite().await.unwrap();
                    super::$case(b.store.as_ref()).await;
                }
            )*
        }
        mod postgres_backend {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    if let Some(b) = super::postgres().await {
                        super::$case(b.store.as_ref()).await;
                        if let Some(schema) = &b.schema {
                            custodian_store::testing::drop_schema(schema).await;
                        }
                    }
                }
            )*
        }
    };
}

conformance!(
    records_round_trip_exactly,
    tenants_never_see_each_other,
    a_failing_batch_stores_nothing,
    idempotent_replays_store_nothing_new,
    subject_listing_pages_in_id_order,
    delete_removes_record_and_index,
    tokens_are_found_and_touched,
    ping_answers,
    audit_log_appends_and_proves,
    audit_entries_ride_with_their_action,
    system_secrets_are_written_once,
    holds_are_placed_listed_and_released_once,
    due_buckets_are_whole_and_purged_with_one_certificate,
);

async fn records_round_trip_exactly(s: &dyn Store) {
    let acme = tenant("acme");
    let batch = vec![record(0, &[1]), record(1, &[1, 2])];
    let out = s
        .insert_records(&acme, batch.clone(), None, audit())
        .await
        .unwrap();
    assert_eq!(out, InsertOutcome::Inserted);
    for r in batch {
        let got = s.get_record(&acme, r.id).await.unwrap();
        assert_eq!(got, Some(r));
    }
    let missing = RecordId::from_ulid(ulid::Ulid::from_parts(1, 1));
    assert_eq!(s.get_record(&acme, missing).await.unwrap(), None);
}

async fn tenants_never_see_each_other(s: &dyn Store) {
    let (acme, globex) = (tenant("acme"), tenant("globex"));
    let r = record(2, &[7]);
    s.insert_records(&acme, vec![r.clone()], None, audit())
        .await
        .unwrap();
    assert!(s.get_record(&globex, r.id).await.unwrap().is_none());
    assert!(
        s.list_subject_records(&globex, &[7; 32], None, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(!s.delete_record(&globex, r.id, audit()).await.unwrap());
    assert!(s.get_record(&acme, r.id).await.unwrap().is_some());
    // The same record id may exist for two tenants without clashing.
    s.insert_records(&globex, vec![r.clone()], None, audit())
        .await
        .unwrap();
    assert!(s.delete_record(&globex, r.id, audit()).await.unwrap());
    assert!(s.get_record(&acme, r.id).await.unwrap().is_some());
}

async fn a_failing_batch_stores_nothing(s: &dyn Store) {
    let acme = tenant("acme");
    let dup = record(4, &[3]);
    let batch = vec![record(3, &[3]), dup.clone(), dup];
    assert!(s.insert_records(&acme, batch, None, audit()).await.is_err());
    assert!(
        s.get_record(&acme, record(3, &[]).id)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        s.list_subject_records(&acme, &[3; 32], None, 10)
            .await
            .unwrap()
            .is_empty()
    );
}

async fn idempotent_replays_store_nothing_new(s: &dyn Store) {
    let acme = tenant("acme");
    let first = IdempotentResponse {
        key: "req-1".into(),
        request_hash: [9; 32],
        status: 200,
        body: b"{\"accepted\":1}".to_vec(),
    };
    let out = s
        .insert_records(&acme, vec![record(10, &[])], Some(first.clone()), audit())
        .await
        .unwrap();
    assert_eq!(out, InsertOutcome::Inserted);
    let replay = IdempotentResponse {
        body: b"other".to_vec(),
        ..first.clone()
    };
    let out = s
        .insert_records(&acme, vec![record(11, &[])], Some(replay), audit())
        .await
        .unwrap();
    assert_eq!(out, InsertOutcome::Replayed(first.clone()));
    assert!(
        s.get_record(&acme, record(11, &[]).id)
            .await
            .unwrap()
            .is_none()
    );
    // Keys are per tenant.
    let out = s
        .insert_records(
            &tenant("globex"),
            vec![record(12, &[])],
            Some(first),
            audit(),
        )
        .await
        .unwrap();
    assert_eq!(out, InsertOutcome::Inserted);
}

async fn subject_listing_pages_in_id_order(s: &dyn Store) {
    let acme = tenant("acme");
    let batch: Vec<StoredRecord> = (20..27).rev().map(|n| record(n, &[5])).collect();
    s.insert_records(&acme, batch, None, audit()).await.unwrap();
    s.insert_records(&acme, vec![record(30, &[6])], None, audit())
        .await
        .unwrap();
    let page1 = s
        .list_subject_records(&acme, &[5; 32], None, 4)
        .await
        .unwrap();
    assert_eq!(page1.len(), 4);
    let page2 = s
        .list_subject_records(&acme, &[5; 32], Some(page1[3].id), 4)
        .await
        .unwrap();
    assert_eq!(page2.len(), 3);
    let ids: Vec<RecordId> = page1.iter().chain(&page2).map(|r| r.id).collect();
    let expected: Vec<RecordId> = (20..27).map(|n| record(n, &[]).id).collect();
    assert_eq!(ids, expected);
}

async fn delete_removes_record_and_index(s: &dyn Store) {
    let acme = tenant("acme");
    let r = record(40, &[8]);
    s.insert_records(&acme, vec![r.clone()], None, audit())
        .await
        .unwrap();
    assert!(s.delete_record(&acme, r.id, audit()).await.unwrap());
    assert!(s.get_record(&acme, r.id).await.unwrap().is_none());
    assert!(
        s.list_subject_records(&acme, &[8; 32], None, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(!s.delete_record(&acme, r.id, audit()).await.unwrap());
}

async fn tokens_are_found_and_touched(s: &dyn Store) {
    let token = TokenRow {
        id: "tok_abc".into(),
        tenant: tenant("acme"),
        role: "writer".into(),
        secret_hash: [4; 32],
        created_at: ts("2025-01-01T00:00:00Z"),
        expires_at: None,
        revoked_at: None,
        last_used_at: None,
    };
    s.insert_token(token.clone()).await.unwrap();
    assert_eq!(s.find_token("tok_abc").await.unwrap(), Some(token.clone()));
    assert_eq!(s.find_token("tok_nope").await.unwrap(), None);
    s.touch_token("tok_abc", ts("2025-02-01T00:00:00Z"))
        .await
        .unwrap();
    assert_eq!(
        s.find_token("tok_abc").await.unwrap().unwrap().last_used_at,
        Some(ts("2025-02-01T00:00:00Z"))
    );
    assert!(s.insert_token(token).await.is_err(), "token ids are unique");
}

async fn ping_answers(s: &dyn Store) {
    s.ping().await.unwrap();
    assert!(["sqlite", "postgres"].contains(&s.backend()));
}

#[tokio::test]
async fn sqlite_data_survives_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.db");
    let r = record(50, &[1]);
    {
        let s = SqliteStore::open(&path).await.unwrap();
        s.insert_records(&tenant("acme"), vec![r.clone()], None, audit())
            .await
            .unwrap();
    }
    let s = SqliteStore::open(&path).await.unwrap();
    assert!(s.get_record(&tenant("acme"), r.id).await.unwrap().is_some());
}

#[tokio::test]
async fn unreachable_postgres_is_a_clear_error() {
    let err = PostgresStore::connect("postgres://nobody@127.0.0.1:1/none", None)
        .await
        .err()
        .expect("port 1 has no database");
    let msg = err.to_string();
    assert!(
        msg.starts_with("the postgres database is unreachable"),
        "{msg}"
    );
}

async fn audit_log_appends_and_proves(s: &dyn Store) {
    use custodian_tlog::{Prefetched, Recorder, inclusion_proof, leaf_hash, reference, root};
    let log = AuditLog::Tenant(tenant("acme"));
    assert_eq!(s.audit_size(&log).await.unwrap(), 0);
    let entries: Vec<Vec<u8>> = (0..37u32)
        .map(|i| format!("entry {i}").into_bytes())
        .collect();
    assert_eq!(
        s.append_audit(&log, entries[..5].to_vec()).await.unwrap(),
        5
    );
    assert_eq!(
        s.append_audit(&log, entries[5..6].to_vec()).await.unwrap(),
        6
    );
    assert_eq!(
        s.append_audit(&log, entries[6..].to_vec()).await.unwrap(),
        37
    );
    assert_eq!(
        s.audit_entries(&log, 3, 7).await.unwrap(),
        entries[3..7].to_vec()
    );
    // Roots and proofs from stored nodes match the RFC's definitions over the entries.
    let leaves: Vec<_> = entries.iter().map(|e| leaf_hash(e)).collect();
    for size in [1u64, 6, 16, 37] {
        let recorder = Recorder::new();
        let _ = root(&recorder, size);
        let ids = recorder.into_ids();
        let hashes = s.audit_nodes(&log, &ids).await.unwrap();
        let nodes = Prefetched::new(ids.into_iter().zip(hashes));
        assert_eq!(
            root(&nodes, size).unwrap(),
            reference::mth(&leaves[..size as usize])
        );
    }
    let recorder = Recorder::new();
    let _ = inclusion_proof(&recorder, 12, 37);
    let ids = recorder.into_ids();
    let hashes = s.audit_nodes(&log, &ids).await.unwrap();
    let proof = inclusion_proof(&Prefetched::new(ids.into_iter().zip(hashes)), 12, 37).unwrap();
    assert_eq!(proof, reference::path(12, &leaves));
    // Logs are separate.
    assert_eq!(s.audit_size(&AuditLog::System).await.unwrap(), 0);
    assert_eq!(
        s.audit_size(&AuditLog::Tenant(tenant("globex")))
            .await
            .unwrap(),
        0
    );
    let missing = [custodian_tlog::NodeId::new(0, 99)];
    assert!(s.audit_nodes(&log, &missing).await.is_err());
}

async fn audit_entries_ride_with_their_action(s: &dyn Store) {
    let acme = tenant("acme");
    let log = AuditLog::Tenant(acme.clone());
    s.insert_records(&acme, vec![record(60, &[])], None, audit())
        .await
        .unwrap();
    assert_eq!(s.audit_size(&log).await.unwrap(), 1);
    // A failed batch leaves no audit entry of its success.
    let dup = record(61, &[]);
    assert!(
        s.insert_records(&acme, vec![dup.clone(), dup], None, audit())
            .await
            .is_err()
    );
    assert_eq!(s.audit_size(&log).await.unwrap(), 1);
    // A replay writes nothing, audit included.
    let idem = IdempotentResponse {
        key: "k".into(),
        request_hash: [1; 32],
        status: 200,
        body: vec![],
    };
    s.insert_records(&acme, vec![record(62, &[])], Some(idem.clone()), audit())
        .await
        .unwrap();
    s.insert_records(&acme, vec![record(63, &[])], Some(idem), audit())
        .await
        .unwrap();
    assert_eq!(s.audit_size(&log).await.unwrap(), 2);
    // Deletes are audited, found or not.
    s.delete_record(&acme, record(60, &[]).id, audit())
        .await
        .unwrap();
    s.delete_record(&acme, record(60, &[]).id, audit())
        .await
        .unwrap();
    assert_eq!(s.audit_size(&log).await.unwrap(), 4);
    assert_eq!(s.audit_entries(&log, 0, 4).await.unwrap(), vec![audit(); 4]);
}

/// The audit tables refuse updates and deletes even from someone with direct SQL access.
#[tokio::test]
async fn sqlite_audit_rows_cannot_be_rewritten_through_sql() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.db");
    let s = SqliteStore::open(&path).await.unwrap();
    s.append_audit(&AuditLog::System, vec![b"one".to_vec(), b"two".to_vec()])
        .await
        .unwrap();
    let conn = rusqlite::Connection::open(&path).unwrap();
    for sql in [
        "UPDATE audit_entries SET body = x'00'",
        "DELETE FROM audit_entries",
        "UPDATE audit_nodes SET hash = x'00'",
        "DELETE FROM audit_nodes",
    ] {
        let err = conn.execute(sql, []).expect_err(sql).to_string();
        assert!(err.contains("append-only"), "{sql}: {err}");
    }
    assert_eq!(s.audit_size(&AuditLog::System).await.unwrap(), 2);
}

#[tokio::test]
async fn postgres_audit_rows_cannot_be_rewritten_through_sql() {
    if !testing::postgres_available().await {
        return;
    }
    let schema = testing::unique_schema("conformance");
    let s = PostgresStore::connect(&testing::postgres_url(), Some(&schema))
        .await
        .unwrap();
    s.append_audit(&AuditLog::System, vec![b"one".to_vec(), b"two".to_vec()])
        .await
        .unwrap();
    let (client, conn) = tokio_postgres::connect(&testing::postgres_url(), tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    for sql in [
        "UPDATE audit_entries SET body = '\\x00'",
        "DELETE FROM audit_entries",
        "TRUNCATE audit_entries",
        "UPDATE audit_nodes SET hash = '\\x00'",
        "DELETE FROM audit_nodes",
    ] {
        let err = client
            .batch_execute(&format!("SET search_path = {schema}; {sql}"))
            .await
            .expect_err(sql);
        let msg = err
            .as_db_error()
            .map_or(err.to_string(), |e| e.message().to_owned());
        assert!(msg.contains("append-only"), "{sql}: {msg}");
    }
    assert_eq!(s.audit_size(&AuditLog::System).await.unwrap(), 2);
    testing::drop_schema(&schema).await;
}

async fn system_secrets_are_written_once(s: &dyn Store) {
    assert_eq!(s.system_secret("audit").await.unwrap(), None);
    assert!(s.insert_system_secret("audit", vec![1, 2]).await.unwrap());
    assert!(!s.insert_system_secret("audit", vec![3]).await.unwrap());
    assert_eq!(s.system_secret("audit").await.unwrap(), Some(vec![1, 2]));
}

/// SQLite stages subject index entries and merges them in sorted runs: listings are the same
/// before, across and after a merge, and entries of records deleted before the merge vanish.
#[tokio::test]
async fn sqlite_subject_index_is_the_same_staged_or_merged() {
    let dir = tempfile::tempdir().unwrap();
    let s = SqliteStore::open(&dir.path().join("c.db")).await.unwrap();
    let acme = tenant("acme");
    let list = |after| s.list_subject_records(&acme, &[5; 32], after, 100);
    s.insert_records(
        &acme,
        (70..75).map(|n| record(n, &[5])).collect(),
        None,
        audit(),
    )
    .await
    .unwrap();
    let staged = list(None).await.unwrap();
    assert_eq!(staged.len(), 5);
    assert!(s.merge_subject_index().await.unwrap() >= 5);
    assert_eq!(list(None).await.unwrap(), staged);
    // Half merged, half staged: one listing, in id order, paging across both.
    s.insert_records(
        &acme,
        (75..80).map(|n| record(n, &[5])).collect(),
        None,
        audit(),
    )
    .await
    .unwrap();
    let all = list(None).await.unwrap();
    let ids: Vec<RecordId> = all.iter().map(|r| r.id).collect();
    let expected: Vec<RecordId> = (70..80).map(|n| record(n, &[]).id).collect();
    assert_eq!(ids, expected);
    assert_eq!(list(Some(ids[6])).await.unwrap().len(), 3);
    // A record deleted while staged is gone from listings and never reaches the index.
    assert!(s.delete_record(&acme, ids[8], audit()).await.unwrap());
    assert_eq!(list(None).await.unwrap().len(), 9);
    assert_eq!(s.merge_subject_index().await.unwrap(), 5);
    assert_eq!(list(None).await.unwrap().len(), 9);
    assert_eq!(s.merge_subject_index().await.unwrap(), 0);
}

async fn holds_are_placed_listed_and_released_once(s: &dyn Store) {
    let (acme, globex) = (tenant("acme"), tenant("globex"));
    let hold = |id: &str, scope: HoldScope, at: &str| Hold {
        id: id.into(),
        scope,
        case_id: "CASE-7".into(),
        reason: "litigation hold".into(),
        placed_by: "token:abc".into(),
        placed_at: ts(at),
        released: None,
    };
    let subject = hold("h1", HoldScope::Subject([3; 32]), "2026-01-01T00:00:00Z");
    let range = hold(
        "h2",
        HoldScope::EventTime {
            from: ts("2025-01-01T00:00:00Z"),
            to: ts("2025-02-01T00:00:00Z"),
        },
        "2026-01-02T00:00:00Z",
    );
    let before = s.audit_size(&AuditLog::Tenant(acme.clone())).await.unwrap();
    s.insert_hold(&acme, &subject, audit()).await.unwrap();
    s.insert_hold(&acme, &range, audit()).await.unwrap();
    assert_eq!(
        s.holds(&acme).await.unwrap(),
        vec![subject.clone(), range.clone()]
    );
    assert!(s.holds(&globex).await.unwrap().is_empty());
    let release = Release {
        by: "token:def".into(),
        at: ts("2026-02-01T00:00:00Z"),
    };
    let released = Hold {
        released: Some(release.clone()),
        ..subject.clone()
    };
    assert_eq!(
        s.release_hold(&acme, "h1", release.clone(), audit())
            .await
            .unwrap(),
        ReleaseOutcome::Released(released.clone())
    );
    // A second release, another tenant's release and an unknown hold change nothing.
    assert_eq!(
        s.release_hold(&acme, "h1", release.clone(), audit())
            .await
            .unwrap(),
        ReleaseOutcome::AlreadyReleased(released.clone())
    );
    assert_eq!(
        s.release_hold(&globex, "h2", release.clone(), audit())
            .await
            .unwrap(),
        ReleaseOutcome::NotFound
    );
    assert_eq!(s.holds(&acme).await.unwrap(), vec![released, range]);
    // Two placements and one release were audited, nothing else.
    assert_eq!(
        s.audit_size(&AuditLog::Tenant(acme)).await.unwrap(),
        before + 3
    );
}

async fn due_buckets_are_whole_and_purged_with_one_certificate(s: &dyn Store) {
    let (acme, globex) = (tenant("acme"), tenant("globex"));
    let at = |n: u64, expires: Option<&str>, bucket: &str| StoredRecord {
        expires_at: expires.map(ts),
        pending_event: None,
        key_bucket: bucket.into(),
        ..record(n, &[n as u8])
    };
    s.insert_records(
        &acme,
        vec![
            at(1, Some("2026-03-01T10:00:00Z"), "d2026-03-01"),
            at(2, Some("2026-03-01T23:00:00Z"), "d2026-03-01"),
            at(3, Some("2026-03-02T01:00:00Z"), "d2026-03-02"),
            // A bucket with one record whose clock has not started is never due.
            at(4, Some("2026-03-01T05:00:00Z"), "pmixed-2026-03"),
            at(5, None, "pmixed-2026-03"),
        ],
        None,
        audit(),
    )
    .await
    .unwrap();
    s.insert_records(
        &globex,
        vec![at(6, Some("2026-02-01T00:00:00Z"), "d2026-02-01")],
        None,
        audit(),
    )
    .await
    .unwrap();
    let due = s
        .due_buckets(Some(&acme), ts("2026-03-01T23:30:00Z"))
        .await
        .unwrap();
    assert_eq!(due.len(), 1, "{due:?}");
    assert_eq!((due[0].bucket.as_str(), due[0].records), ("d2026-03-01", 2));
    assert_eq!(due[0].oldest_expiry, ts("2026-03-01T10:00:00Z"));
    assert_eq!(due[0].newest_expiry, ts("2026-03-01T23:00:00Z"));
    // Half a bucket due is not a due bucket.
    assert!(
        s.due_buckets(Some(&acme), ts("2026-03-01T12:00:00Z"))
            .await
            .unwrap()
            .is_empty()
    );
    let all = s
        .due_buckets(None, ts("2026-03-03T00:00:00Z"))
        .await
        .unwrap();
    let names: Vec<(&str, &str)> = all
        .iter()
        .map(|b| (b.tenant.as_str(), b.bucket.as_str()))
        .collect();
    assert_eq!(
        names,
        [
            ("globex", "d2026-02-01"),
            ("acme", "d2026-03-01"),
            ("acme", "d2026-03-02")
        ]
    );

    let auth_log = DataTypeName::new("auth_log").unwrap();
    let facts = s
        .bucket_records(&acme, &auth_log, "d2026-03-01")
        .await
        .unwrap();
    assert_eq!(facts.len(), 2);
    assert_eq!(facts[0].subjects, vec![[1u8; 32]]);
    let certificate = |id: &str| CertificateRow {
        id: id.into(),
        scope: "bucket/auth_log/d2026-03-01".into(),
        issued_at: ts("2026-03-02T00:00:05Z"),
        note: format!("certificate {id}\n"),
    };
    let purged = s
        .purge_bucket(&acme, &auth_log, "d2026-03-01", certificate("c1"), audit())
        .await
        .unwrap();
    assert_eq!(purged, 2);
    assert!(s.get_record(&acme, facts[0].id).await.unwrap().is_none());
    assert!(
        s.list_subject_records(&acme, &[2; 32], None, 10)
            .await
            .unwrap()
            .is_empty()
    );
    // A repeated purge (after a crash) deletes nothing more and keeps the first certificate.
    let again = s
        .purge_bucket(&acme, &auth_log, "d2026-03-01", certificate("c2"), audit())
        .await
        .unwrap();
    assert_eq!(again, 0);
    assert_eq!(
        s.certificates(&acme).await.unwrap(),
        vec![certificate("c1")]
    );
    assert!(s.certificates(&globex).await.unwrap().is_empty());
    // The other tenant's bucket of the same name is untouched.
    assert_eq!(
        s.due_buckets(Some(&globex), ts("2026-03-03T00:00:00Z"))
            .await
            .unwrap()
            .len(),
        1
    );
}
