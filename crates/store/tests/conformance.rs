//! The store conformance suite: every case runs against SQLite and against PostgreSQL, each in
//! its own database file or schema, so both backends are held to one behaviour.

use custodian_core::access::{Principal, Role};
use custodian_core::grant::{Grant, GrantRequest, GrantRules, GrantScope};
use custodian_core::hold::{Hold, HoldScope, Release};
use custodian_core::ids::{Class, DataTypeName, RecordId, TenantId};
use custodian_store::{
    AppliedRetention, AuditEntry, AuditLog, BucketCount, CancelOutcome, CertificateRow,
    DeletionState, DeletionTarget, IdempotentResponse, InsertOutcome, PostgresStore, RekeyedRecord,
    ReleaseOutcome, ResealedRecord, RetentionEvent, RetentionStore, ScheduledDeletion, SqliteStore,
    Store, StoredRecord, SubjectRequest, SubjectStore, Termination, TerminationCancel, TokenRow,
    testing,
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
        event_ref: (n % 2 == 1).then(|| format!("INC-{n}")),
        key_bucket: format!("d2027-01-0{}", n % 3),
        key_subjects: subjects.iter().map(|s| [*s; 32]).collect(),
        sealed: vec![n as u8; 40],
    }
}

fn audit() -> AuditEntry {
    AuditEntry::clear(b"{\"action\":\"test\"}".to_vec())
}

fn clear(entries: &[Vec<u8>]) -> Vec<AuditEntry> {
    entries.iter().cloned().map(AuditEntry::clear).collect()
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
    tokens_are_listed_by_tenant_then_id,
    tokens_are_revoked_and_audited_once,
    ping_answers,
    audit_log_appends_and_proves,
    audit_tree_is_built_from_the_given_leaves_not_the_bodies,
    audit_entries_ride_with_their_action,
    system_secrets_are_written_once,
    holds_are_placed_listed_and_released_once,
    due_buckets_are_whole_and_purged_with_one_certificate,
    event_refs_round_trip,
    due_buckets_report_their_oldest_event_time,
    rekeyed_records_move_to_their_new_bucket,
    events_are_recorded_once_and_find_their_pending_records,
    tenant_buckets_count_every_bucket,
    terminations_happen_once_and_finish_with_one_certificate,
    scheduled_deletions_are_cancelled_or_completed_once,
    applied_retentions_are_replaced_and_records_page_by_type,
    terminations_are_withdrawn_only_before_their_purge,
    a_large_bucket_is_purged_whole_under_one_certificate,
    audit_heads_list_every_log_system_first,
    subject_requests_list_newest_first_within_their_tenant,
    subject_requests_are_answered_once,
    resealed_records_replace_their_subject_entries,
    grants_move_on_only_from_the_version_they_started_at,
    live_grants_are_approved_unexpired_and_open,
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
    let log = AuditLog::Tenant(token.tenant.clone());
    s.insert_token(token.clone(), &log, audit()).await.unwrap();
    assert_eq!(s.audit_size(&log).await.unwrap(), 1, "audited with it");
    assert_eq!(s.find_token("tok_abc").await.unwrap(), Some(token.clone()));
    assert_eq!(s.find_token("tok_nope").await.unwrap(), None);
    s.touch_token("tok_abc", ts("2025-02-01T00:00:00Z"))
        .await
        .unwrap();
    assert_eq!(
        s.find_token("tok_abc").await.unwrap().unwrap().last_used_at,
        Some(ts("2025-02-01T00:00:00Z"))
    );
    assert!(
        s.insert_token(token, &log, audit()).await.is_err(),
        "token ids are unique"
    );
    assert_eq!(
        s.audit_size(&log).await.unwrap(),
        1,
        "nothing appended for a refused token"
    );
}

fn token_row(id: &str, tenant: TenantId, role: &str, hash: u8) -> TokenRow {
    TokenRow {
        id: id.into(),
        tenant,
        role: role.into(),
        secret_hash: [hash; 32],
        created_at: ts("2025-01-01T00:00:00Z"),
        expires_at: None,
        revoked_at: None,
        last_used_at: None,
    }
}

/// The log a token's issuance and revocation are audited in.
fn token_log(token: &TokenRow) -> AuditLog {
    if token.tenant.is_platform() {
        AuditLog::System
    } else {
        AuditLog::Tenant(token.tenant.clone())
    }
}

async fn tokens_are_listed_by_tenant_then_id(s: &dyn Store) {
    assert!(s.tokens(None).await.unwrap().is_empty());
    // Inserted out of order, so the listing's order is the store's doing.
    let globex = token_row("tok_g1", tenant("globex"), "reader", 1);
    let acme_b = TokenRow {
        expires_at: Some(ts("2026-01-01T00:00:00Z")),
        ..token_row("tok_b", tenant("acme"), "writer", 2)
    };
    let operator = token_row("tok_op", TenantId::platform(), "operator", 3);
    let acme_a = token_row("tok_a", tenant("acme"), "admin", 4);
    for t in [&globex, &acme_b, &operator, &acme_a] {
        s.insert_token(t.clone(), &token_log(t), audit())
            .await
            .unwrap();
    }
    s.touch_token("tok_b", ts("2025-03-01T00:00:00Z"))
        .await
        .unwrap();
    let acme_b = TokenRow {
        last_used_at: Some(ts("2025-03-01T00:00:00Z")),
        ..acme_b
    };

    // The platform's `_platform` sorts before every tenant id (which starts with a letter or
    // digit); rows come back whole, hash and times included.
    assert_eq!(
        s.tokens(None).await.unwrap(),
        vec![
            operator.clone(),
            acme_a.clone(),
            acme_b.clone(),
            globex.clone()
        ]
    );
    assert_eq!(
        s.tokens(Some(&tenant("acme"))).await.unwrap(),
        vec![acme_a, acme_b]
    );
    assert_eq!(
        s.tokens(Some(&tenant("globex"))).await.unwrap(),
        vec![globex]
    );
    assert_eq!(
        s.tokens(Some(&TenantId::platform())).await.unwrap(),
        vec![operator]
    );
    assert!(
        s.tokens(Some(&tenant("initech"))).await.unwrap().is_empty(),
        "a tenant without tokens lists none"
    );
}

async fn tokens_are_revoked_and_audited_once(s: &dyn Store) {
    let acme = token_row("tok_a", tenant("acme"), "writer", 1);
    let other = token_row("tok_b", tenant("acme"), "reader", 2);
    let operator = token_row("tok_op", TenantId::platform(), "operator", 3);
    for t in [&acme, &other, &operator] {
        s.insert_token(t.clone(), &token_log(t), audit())
            .await
            .unwrap();
    }
    let log = token_log(&acme);
    assert_eq!(s.audit_size(&log).await.unwrap(), 2, "two issuances");

    let first = ts("2025-02-01T00:00:00Z");
    let revoked = TokenRow {
        revoked_at: Some(first),
        ..acme.clone()
    };
    assert_eq!(
        s.revoke_token("tok_a", first, &log, audit()).await.unwrap(),
        Some(revoked.clone())
    );
    assert_eq!(s.audit_size(&log).await.unwrap(), 3, "audited with it");
    assert_eq!(s.find_token("tok_a").await.unwrap(), Some(revoked.clone()));
    assert_eq!(
        s.find_token("tok_b").await.unwrap(),
        Some(other),
        "only the named token is revoked"
    );

    // Again, later: the first revocation stands and nothing is appended.
    let again = s
        .revoke_token("tok_a", ts("2025-03-01T00:00:00Z"), &log, audit())
        .await
        .unwrap();
    assert_eq!(again, Some(revoked.clone()), "unchanged");
    assert_eq!(s.audit_size(&log).await.unwrap(), 3, "not audited again");
    assert_eq!(s.find_token("tok_a").await.unwrap(), Some(revoked));

    // A platform token is audited in the system log.
    let system_before = s.audit_size(&AuditLog::System).await.unwrap();
    let out = s
        .revoke_token("tok_op", first, &AuditLog::System, audit())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(out.revoked_at, Some(first));
    assert_eq!(
        s.audit_size(&AuditLog::System).await.unwrap(),
        system_before + 1
    );

    // An unknown id: no row, nothing written.
    assert_eq!(
        s.revoke_token("tok_nope", first, &log, audit())
            .await
            .unwrap(),
        None
    );
    assert_eq!(s.audit_size(&log).await.unwrap(), 3, "nothing appended");
    assert_eq!(
        s.find_token("tok_nope").await.unwrap(),
        None,
        "nothing created"
    );
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

async fn audit_tree_is_built_from_the_given_leaves_not_the_bodies(s: &dyn Store) {
    use custodian_tlog::{NodeId, leaf_hash};
    let log = AuditLog::System;
    let entry = AuditEntry {
        leaf: leaf_hash(b"canonical"),
        body: b"Ssealed bytes".to_vec(),
    };
    s.append_audit(&log, vec![entry.clone()]).await.unwrap();
    assert_eq!(s.audit_entries(&log, 0, 1).await.unwrap(), vec![entry.body]);
    assert_eq!(
        s.audit_nodes(&log, &[NodeId::new(0, 0)]).await.unwrap(),
        vec![entry.leaf]
    );
}

async fn audit_log_appends_and_proves(s: &dyn Store) {
    use custodian_tlog::{Prefetched, Recorder, inclusion_proof, leaf_hash, reference, root};
    let log = AuditLog::Tenant(tenant("acme"));
    assert_eq!(s.audit_size(&log).await.unwrap(), 0);
    let entries: Vec<Vec<u8>> = (0..37u32)
        .map(|i| format!("entry {i}").into_bytes())
        .collect();
    assert_eq!(s.append_audit(&log, clear(&entries[..5])).await.unwrap(), 5);
    assert_eq!(
        s.append_audit(&log, clear(&entries[5..6])).await.unwrap(),
        6
    );
    assert_eq!(
        s.append_audit(&log, clear(&entries[6..])).await.unwrap(),
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
    assert_eq!(
        s.audit_entries(&log, 0, 4).await.unwrap(),
        vec![audit().body; 4]
    );
}

/// The audit tables refuse updates and deletes even from someone with direct SQL access.
#[tokio::test]
async fn sqlite_audit_rows_cannot_be_rewritten_through_sql() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.db");
    let s = SqliteStore::open(&path).await.unwrap();
    s.append_audit(
        &AuditLog::System,
        clear(&[b"one".to_vec(), b"two".to_vec()]),
    )
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
    s.append_audit(
        &AuditLog::System,
        clear(&[b"one".to_vec(), b"two".to_vec()]),
    )
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
        event_ref: None,
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

/// A record of `auth_log` sealed under `bucket`, its clock started (or never ending).
fn in_bucket(n: u64, bucket: &str, expires: Option<&str>, subjects: &[u8]) -> StoredRecord {
    StoredRecord {
        expires_at: expires.map(ts),
        pending_event: None,
        event_ref: None,
        key_bucket: bucket.into(),
        ..record(n, subjects)
    }
}

/// An `after_event` record waiting for `event` on `reference`.
fn waiting(n: u64, event: &str, reference: &str) -> StoredRecord {
    StoredRecord {
        expires_at: None,
        pending_event: Some(event.into()),
        event_ref: Some(reference.into()),
        key_bucket: "pticket_closed".into(),
        ..record(n, &[n as u8])
    }
}

async fn event_refs_round_trip(s: &dyn Store) {
    let acme = tenant("acme");
    let with_ref = waiting(80, "ticket_closed", "INC-42 / é");
    let without = in_bucket(81, "d2027-01-01", Some("2027-01-01T00:00:00Z"), &[81]);
    s.insert_records(
        &acme,
        vec![with_ref.clone(), without.clone()],
        None,
        audit(),
    )
    .await
    .unwrap();
    assert_eq!(
        s.get_record(&acme, with_ref.id).await.unwrap(),
        Some(with_ref.clone())
    );
    assert_eq!(
        s.get_record(&acme, without.id).await.unwrap(),
        Some(without)
    );
    assert_eq!(
        s.list_subject_records(&acme, &[80; 32], None, 10)
            .await
            .unwrap(),
        vec![with_ref.clone()]
    );
    assert_eq!(
        s.pending_records(&acme, "ticket_closed", "INC-42 / é", 10)
            .await
            .unwrap(),
        vec![with_ref]
    );
}

async fn due_buckets_report_their_oldest_event_time(s: &dyn Store) {
    let acme = tenant("acme");
    let at = |n: u64, event_time: &str| StoredRecord {
        event_time: ts(event_time),
        ..in_bucket(n, "d2026-03-01", Some("2026-03-01T10:00:00Z"), &[])
    };
    s.insert_records(
        &acme,
        vec![
            at(1, "2025-06-01T00:00:00Z"),
            at(2, "2025-01-15T08:30:00.000001Z"),
            at(3, "2025-09-01T00:00:00Z"),
        ],
        None,
        audit(),
    )
    .await
    .unwrap();
    let due = s
        .due_buckets(Some(&acme), ts("2026-03-02T00:00:00Z"))
        .await
        .unwrap();
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].oldest_event_time, ts("2025-01-15T08:30:00.000001Z"));
}

async fn rekeyed_records_move_to_their_new_bucket(s: &dyn Store) {
    let (acme, globex) = (tenant("acme"), tenant("globex"));
    let auth_log = DataTypeName::new("auth_log").unwrap();
    let old = "d2026-03-01";
    let due = Some("2026-03-01T10:00:00Z");
    let started = StoredRecord {
        pending_event: Some("ticket_closed".into()),
        event_ref: Some("INC-1".into()),
        expires_at: None,
        ..in_bucket(1, "pticket_closed", None, &[1])
    };
    s.insert_records(
        &acme,
        vec![
            in_bucket(2, old, due, &[2]),
            in_bucket(3, old, due, &[3]),
            in_bucket(4, old, due, &[4]),
            started.clone(),
        ],
        None,
        audit(),
    )
    .await
    .unwrap();
    // The other tenant has a record of the same id in a bucket of the same name.
    s.insert_records(&globex, vec![in_bucket(2, old, due, &[2])], None, audit())
        .await
        .unwrap();
    let before = s.audit_size(&AuditLog::Tenant(acme.clone())).await.unwrap();
    let moved = |n: u64, bucket: &str, expires: &str| RekeyedRecord {
        id: record(n, &[]).id,
        key_bucket: bucket.into(),
        expires_at: Some(ts(expires)),
        pending_event: None,
        sealed: vec![0xee; 48],
    };
    let n = s
        .rekey_records(
            &acme,
            vec![
                // Held records move out of the bucket about to be destroyed.
                moved(2, "d2026-06-01", "2026-06-01T00:00:00Z"),
                moved(3, "d2026-06-01", "2026-06-01T00:00:00Z"),
                // An after_event record whose clock started.
                moved(1, "d2026-04-01", "2026-04-01T00:00:00Z"),
                // Unknown to the tenant: skipped.
                moved(99, "d2026-06-01", "2026-06-01T00:00:00Z"),
            ],
            audit(),
        )
        .await
        .unwrap();
    assert_eq!(n, 3);
    assert_eq!(
        s.audit_size(&AuditLog::Tenant(acme.clone())).await.unwrap(),
        before + 1
    );
    let r2 = s
        .get_record(&acme, record(2, &[]).id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (r2.key_bucket.as_str(), r2.expires_at, r2.sealed.clone()),
        (
            "d2026-06-01",
            Some(ts("2026-06-01T00:00:00Z")),
            vec![0xee; 48]
        )
    );
    // Everything else about the record stays, its subjects and event reference included.
    assert_eq!(r2.key_subjects, vec![[2; 32]]);
    let r1 = s.get_record(&acme, started.id).await.unwrap().unwrap();
    assert_eq!(
        r1,
        StoredRecord {
            key_bucket: "d2026-04-01".into(),
            expires_at: Some(ts("2026-04-01T00:00:00Z")),
            pending_event: None,
            sealed: vec![0xee; 48],
            ..started
        }
    );
    assert_eq!(r1.event_ref.as_deref(), Some("INC-1"));
    let ids = |facts: Vec<custodian_store::BucketRecord>| -> Vec<RecordId> {
        facts.into_iter().map(|f| f.id).collect()
    };
    assert_eq!(
        ids(s.bucket_records(&acme, &auth_log, old).await.unwrap()),
        vec![record(4, &[]).id]
    );
    assert_eq!(
        ids(s
            .bucket_records(&acme, &auth_log, "d2026-06-01")
            .await
            .unwrap()),
        vec![record(2, &[]).id, record(3, &[]).id]
    );
    let due_now: Vec<(String, u64)> = s
        .due_buckets(Some(&acme), ts("2026-03-02T00:00:00Z"))
        .await
        .unwrap()
        .into_iter()
        .map(|b| (b.bucket, b.records))
        .collect();
    assert_eq!(due_now, [(old.to_owned(), 1)]);
    let due_later: Vec<String> = s
        .due_buckets(Some(&acme), ts("2026-07-01T00:00:00Z"))
        .await
        .unwrap()
        .into_iter()
        .map(|b| b.bucket)
        .collect();
    assert_eq!(due_later, [old, "d2026-04-01", "d2026-06-01"]);
    // The other tenant's record of the same id is untouched.
    assert_eq!(
        s.get_record(&globex, record(2, &[]).id).await.unwrap(),
        Some(in_bucket(2, old, due, &[2]))
    );
    assert_eq!(
        s.bucket_records(&globex, &auth_log, old)
            .await
            .unwrap()
            .len(),
        1
    );
}

async fn events_are_recorded_once_and_find_their_pending_records(s: &dyn Store) {
    let (acme, globex) = (tenant("acme"), tenant("globex"));
    let event = |reference: &str, at: &str, by: &str| RetentionEvent {
        event: "ticket_closed".into(),
        reference: reference.into(),
        at: ts(at),
        recorded_by: by.into(),
    };
    let log = AuditLog::Tenant(acme.clone());
    let first = event("INC-1", "2026-01-01T00:00:00Z", "token:a");
    assert_eq!(s.record_event(&acme, &first, audit()).await.unwrap(), None);
    // A second recording of the same event is refused with the first, and not audited.
    let second = event("INC-1", "2026-01-05T00:00:00Z", "token:b");
    assert_eq!(
        s.record_event(&acme, &second, audit()).await.unwrap(),
        Some(first.clone())
    );
    assert_eq!(s.audit_size(&log).await.unwrap(), 1);
    let other = event("INC-2", "2026-01-02T00:00:00Z", "token:a");
    assert_eq!(s.record_event(&acme, &other, audit()).await.unwrap(), None);
    let closed_contract = RetentionEvent {
        event: "contract_ended".into(),
        ..event("INC-1", "2026-01-03T00:00:00Z", "token:a")
    };
    assert_eq!(
        s.record_event(&acme, &closed_contract, audit())
            .await
            .unwrap(),
        None
    );
    // Events are per tenant.
    let theirs = event("INC-1", "2026-02-01T00:00:00Z", "token:z");
    assert_eq!(
        s.record_event(&globex, &theirs, audit()).await.unwrap(),
        None
    );
    assert_eq!(s.audit_size(&log).await.unwrap(), 3);

    let refs = |r: &[&str]| -> Vec<String> { r.iter().map(|s| (*s).to_owned()).collect() };
    assert_eq!(
        s.events(&acme, "ticket_closed", &refs(&["INC-3", "INC-2", "INC-1"]))
            .await
            .unwrap(),
        vec![first.clone(), other]
    );
    assert_eq!(
        s.events(&acme, "contract_ended", &refs(&["INC-1", "INC-2"]))
            .await
            .unwrap(),
        vec![closed_contract]
    );
    assert!(
        s.events(&acme, "ticket_closed", &[])
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        s.events(&globex, "ticket_closed", &refs(&["INC-1", "INC-2"]))
            .await
            .unwrap(),
        vec![theirs]
    );

    s.insert_records(
        &acme,
        vec![
            waiting(13, "ticket_closed", "INC-1"),
            waiting(11, "ticket_closed", "INC-1"),
            waiting(12, "ticket_closed", "INC-1"),
            waiting(14, "ticket_closed", "INC-2"),
            waiting(15, "contract_ended", "INC-1"),
        ],
        None,
        audit(),
    )
    .await
    .unwrap();
    s.insert_records(
        &globex,
        vec![waiting(16, "ticket_closed", "INC-1")],
        None,
        audit(),
    )
    .await
    .unwrap();
    let ids = |records: Vec<StoredRecord>| -> Vec<RecordId> {
        records.into_iter().map(|r| r.id).collect()
    };
    let id = |n: u64| record(n, &[]).id;
    assert_eq!(
        ids(s
            .pending_records(&acme, "ticket_closed", "INC-1", 10)
            .await
            .unwrap()),
        vec![id(11), id(12), id(13)]
    );
    assert_eq!(
        ids(s
            .pending_records(&acme, "ticket_closed", "INC-1", 2)
            .await
            .unwrap()),
        vec![id(11), id(12)]
    );
    assert_eq!(
        ids(s
            .pending_records(&acme, "contract_ended", "INC-1", 10)
            .await
            .unwrap()),
        vec![id(15)]
    );
    assert_eq!(
        ids(s
            .pending_records(&globex, "ticket_closed", "INC-1", 10)
            .await
            .unwrap()),
        vec![id(16)]
    );
    assert!(
        s.pending_records(&acme, "ticket_closed", "INC-9", 10)
            .await
            .unwrap()
            .is_empty()
    );
    // A record whose clock started (re-sealed with no pending event) waits no more.
    s.rekey_records(
        &acme,
        vec![RekeyedRecord {
            id: id(11),
            key_bucket: "d2026-02-01".into(),
            expires_at: Some(ts("2026-02-01T00:00:00Z")),
            pending_event: None,
            sealed: vec![1; 40],
        }],
        audit(),
    )
    .await
    .unwrap();
    assert_eq!(
        ids(s
            .pending_records(&acme, "ticket_closed", "INC-1", 10)
            .await
            .unwrap()),
        vec![id(12), id(13)]
    );
}

async fn tenant_buckets_count_every_bucket(s: &dyn Store) {
    let (acme, globex) = (tenant("acme"), tenant("globex"));
    let typed = |n: u64, data_type: &str, bucket: &str, expires: Option<&str>| StoredRecord {
        data_type: DataTypeName::new(data_type).unwrap(),
        ..in_bucket(n, bucket, expires, &[])
    };
    s.insert_records(
        &acme,
        vec![
            typed(1, "auth_log", "d2026-03-01", Some("2026-03-01T00:00:00Z")),
            typed(2, "auth_log", "d2026-03-01", Some("2026-03-01T01:00:00Z")),
            typed(3, "auth_log", "d2025-01-01", Some("2025-01-01T00:00:00Z")),
            typed(4, "app_log", "never", None),
            waiting(5, "ticket_closed", "INC-5"),
        ],
        None,
        audit(),
    )
    .await
    .unwrap();
    s.insert_records(
        &globex,
        vec![typed(6, "auth_log", "d2026-03-01", None)],
        None,
        audit(),
    )
    .await
    .unwrap();
    let count = |data_type: &str, bucket: &str, records: u64| BucketCount {
        data_type: DataTypeName::new(data_type).unwrap(),
        bucket: bucket.into(),
        records,
    };
    assert_eq!(
        s.tenant_buckets(&acme).await.unwrap(),
        vec![
            count("app_log", "never", 1),
            count("auth_log", "d2025-01-01", 1),
            count("auth_log", "d2026-03-01", 2),
            count("auth_log", "pticket_closed", 1),
        ]
    );
    assert_eq!(
        s.tenant_buckets(&globex).await.unwrap(),
        vec![count("auth_log", "d2026-03-01", 1)]
    );
    assert!(
        s.tenant_buckets(&tenant("initech"))
            .await
            .unwrap()
            .is_empty()
    );
}

async fn terminations_happen_once_and_finish_with_one_certificate(s: &dyn Store) {
    let (acme, globex) = (tenant("acme"), tenant("globex"));
    let termination = |t: &TenantId, at: &str, reason: &str| Termination {
        tenant: t.clone(),
        requested_by: "token:root".into(),
        reason: reason.into(),
        terminated_at: ts(at),
        purge_at: ts(at) + jiff::SignedDuration::from_hours(24 * 30),
        purged_at: None,
        certificate_id: None,
    };
    let log = AuditLog::Tenant(acme.clone());
    assert_eq!(s.termination(&acme).await.unwrap(), None);
    assert!(s.terminations().await.unwrap().is_empty());
    let first = termination(&acme, "2026-05-01T00:00:00Z", "contract ended");
    assert_eq!(s.terminate_tenant(&first, audit()).await.unwrap(), None);
    let again = termination(&acme, "2026-05-02T00:00:00Z", "changed mind");
    assert_eq!(
        s.terminate_tenant(&again, audit()).await.unwrap(),
        Some(first.clone())
    );
    assert_eq!(s.audit_size(&log).await.unwrap(), 1);
    let theirs = termination(&globex, "2026-04-01T00:00:00Z", "moved away");
    assert_eq!(s.terminate_tenant(&theirs, audit()).await.unwrap(), None);
    assert_eq!(
        s.audit_size(&AuditLog::Tenant(globex.clone()))
            .await
            .unwrap(),
        1
    );
    assert_eq!(s.termination(&acme).await.unwrap(), Some(first.clone()));
    assert_eq!(
        s.terminations().await.unwrap(),
        vec![theirs.clone(), first.clone()]
    );

    let certificate = |id: &str, at: &str| CertificateRow {
        id: id.into(),
        scope: "tenant/acme".into(),
        issued_at: ts(at),
        note: format!("certificate {id}\n"),
    };
    let purged_at = ts("2026-06-01T00:00:00Z");
    s.finish_termination(
        &acme,
        purged_at,
        certificate("c1", "2026-06-01T00:00:01Z"),
        audit(),
    )
    .await
    .unwrap();
    let finished = Termination {
        purged_at: Some(purged_at),
        certificate_id: Some("c1".into()),
        ..first
    };
    assert_eq!(s.termination(&acme).await.unwrap(), Some(finished.clone()));
    assert_eq!(s.audit_size(&log).await.unwrap(), 2);
    // Finished again (after a crash): no second certificate, the first purge stands.
    s.finish_termination(
        &acme,
        ts("2026-06-02T00:00:00Z"),
        certificate("c2", "2026-06-02T00:00:01Z"),
        audit(),
    )
    .await
    .unwrap();
    assert_eq!(s.termination(&acme).await.unwrap(), Some(finished));
    assert_eq!(
        s.certificates(&acme).await.unwrap(),
        vec![certificate("c1", "2026-06-01T00:00:01Z")]
    );
    assert_eq!(
        s.certificate(&acme, "c1").await.unwrap(),
        Some(certificate("c1", "2026-06-01T00:00:01Z"))
    );
    assert_eq!(s.certificate(&acme, "c2").await.unwrap(), None);
    assert_eq!(s.certificate(&globex, "c1").await.unwrap(), None);
    assert_eq!(s.termination(&globex).await.unwrap(), Some(theirs));
    // A tenant never terminated cannot be finished; nothing is certified or audited.
    let initech = tenant("initech");
    assert!(
        s.finish_termination(
            &initech,
            purged_at,
            certificate("c3", "2026-06-01T00:00:01Z"),
            audit()
        )
        .await
        .is_err()
    );
    assert!(s.certificates(&initech).await.unwrap().is_empty());
    assert_eq!(s.audit_size(&AuditLog::Tenant(initech)).await.unwrap(), 0);
}

async fn scheduled_deletions_are_cancelled_or_completed_once(s: &dyn Store) {
    let (acme, globex) = (tenant("acme"), tenant("globex"));
    let log = AuditLog::Tenant(acme.clone());
    s.insert_records(
        &acme,
        vec![
            in_bucket(1, "d2027-01-01", None, &[9]),
            in_bucket(2, "d2027-01-01", None, &[9, 8]),
            in_bucket(3, "d2027-01-01", None, &[8]),
        ],
        None,
        audit(),
    )
    .await
    .unwrap();
    s.insert_records(
        &globex,
        vec![in_bucket(3, "d2027-01-01", None, &[8])],
        None,
        audit(),
    )
    .await
    .unwrap();
    let scheduled = |t: &TenantId, id: &str, target: DeletionTarget, requested: &str, due: &str| {
        ScheduledDeletion {
            id: id.into(),
            tenant: t.clone(),
            target,
            reason: "erasure request".into(),
            requested_by: "token:a".into(),
            requested_at: ts(requested),
            due_at: ts(due),
            state: DeletionState::Scheduled,
        }
    };
    let by_record = scheduled(
        &acme,
        "del_1",
        DeletionTarget::Record(record(1, &[]).id),
        "2026-01-01T00:00:00Z",
        "2026-01-08T00:00:00Z",
    );
    let by_subject = scheduled(
        &acme,
        "del_2",
        DeletionTarget::Subject([9; 32]),
        "2026-01-02T00:00:00Z",
        "2026-01-09T00:00:00Z",
    );
    let theirs = scheduled(
        &globex,
        "del_3",
        DeletionTarget::Subject([8; 32]),
        "2026-01-01T00:00:00Z",
        "2026-01-07T00:00:00Z",
    );
    let before = s.audit_size(&log).await.unwrap();
    // Scheduled out of request order: listed oldest request first.
    s.schedule_deletion(&by_subject, audit()).await.unwrap();
    s.schedule_deletion(&by_record, audit()).await.unwrap();
    s.schedule_deletion(&theirs, audit()).await.unwrap();
    assert_eq!(s.audit_size(&log).await.unwrap(), before + 2);
    assert!(
        s.schedule_deletion(&by_record, audit()).await.is_err(),
        "deletion ids are unique per tenant"
    );
    assert_eq!(
        s.scheduled_deletions(&acme).await.unwrap(),
        vec![by_record.clone(), by_subject.clone()]
    );
    assert_eq!(
        s.scheduled_deletions(&globex).await.unwrap(),
        vec![theirs.clone()]
    );
    let due_ids =
        |due: Vec<ScheduledDeletion>| -> Vec<String> { due.into_iter().map(|d| d.id).collect() };
    assert!(
        s.due_deletions(ts("2026-01-06T23:59:59Z"))
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        due_ids(s.due_deletions(ts("2026-01-08T00:00:00Z")).await.unwrap()),
        ["del_3", "del_1"]
    );
    assert_eq!(
        s.due_deletions(ts("2026-02-01T00:00:00Z")).await.unwrap(),
        vec![theirs.clone(), by_record.clone(), by_subject.clone()]
    );

    // Cancelled once; a second cancel and another tenant's cancel change nothing.
    let at = ts("2026-01-03T00:00:00Z");
    let cancelled = ScheduledDeletion {
        state: DeletionState::Cancelled {
            by: "token:b".into(),
            at,
        },
        ..by_subject.clone()
    };
    let size = s.audit_size(&log).await.unwrap();
    assert_eq!(
        s.cancel_deletion(&acme, "del_2", "token:b", at, audit())
            .await
            .unwrap(),
        CancelOutcome::Cancelled(cancelled.clone())
    );
    assert_eq!(
        s.cancel_deletion(&acme, "del_2", "token:c", at, audit())
            .await
            .unwrap(),
        CancelOutcome::NotCancellable(cancelled.clone())
    );
    assert_eq!(
        s.cancel_deletion(&globex, "del_1", "token:c", at, audit())
            .await
            .unwrap(),
        CancelOutcome::NotFound
    );
    assert_eq!(s.audit_size(&log).await.unwrap(), size + 1);
    assert_eq!(
        due_ids(s.due_deletions(ts("2026-02-01T00:00:00Z")).await.unwrap()),
        ["del_3", "del_1"]
    );

    // Completion deletes the records with their index entries, certifies once, and marks the
    // deletion done.
    let certificate = |id: &str| CertificateRow {
        id: id.into(),
        scope: "deletion/del_1".into(),
        issued_at: ts("2026-01-08T00:00:05Z"),
        note: format!("certificate {id}\n"),
    };
    let size = s.audit_size(&log).await.unwrap();
    let doomed = [record(1, &[]).id, record(2, &[]).id];
    let deleted = s
        .complete_deletion(&acme, Some("del_1"), &doomed, certificate("c1"), audit())
        .await
        .unwrap();
    assert_eq!(deleted, 2);
    assert_eq!(s.audit_size(&log).await.unwrap(), size + 1);
    for id in doomed {
        assert!(s.get_record(&acme, id).await.unwrap().is_none());
    }
    assert!(
        s.list_subject_records(&acme, &[9; 32], None, 10)
            .await
            .unwrap()
            .is_empty()
    );
    let left: Vec<RecordId> = s
        .list_subject_records(&acme, &[8; 32], None, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(left, [record(3, &[]).id]);
    let done = ScheduledDeletion {
        state: DeletionState::Done {
            at: ts("2026-01-08T00:00:05Z"),
            certificate_id: "c1".into(),
        },
        ..by_record.clone()
    };
    assert_eq!(
        s.scheduled_deletions(&acme).await.unwrap(),
        vec![done.clone(), cancelled.clone()]
    );
    assert_eq!(
        due_ids(s.due_deletions(ts("2026-02-01T00:00:00Z")).await.unwrap()),
        ["del_3"]
    );
    assert_eq!(
        s.cancel_deletion(&acme, "del_1", "token:b", at, audit())
            .await
            .unwrap(),
        CancelOutcome::NotCancellable(done.clone())
    );
    // Run again (after a crash): nothing more deleted, no second certificate, first completion
    // stands.
    let again = s
        .complete_deletion(
            &acme,
            Some("del_1"),
            &doomed,
            CertificateRow {
                issued_at: ts("2026-01-09T00:00:00Z"),
                ..certificate("c2")
            },
            audit(),
        )
        .await
        .unwrap();
    assert_eq!(again, 0);
    assert_eq!(
        s.certificates(&acme).await.unwrap(),
        vec![certificate("c1")]
    );
    assert_eq!(
        s.certificate(&acme, "c1").await.unwrap(),
        Some(certificate("c1"))
    );
    assert_eq!(s.scheduled_deletions(&acme).await.unwrap()[0], done);
    // Tenant-scoped: the other tenant's completion never touches this tenant's record 3, and a
    // completion without a scheduled deletion (an immediate erasure) works too.
    let theirs_cert = CertificateRow {
        scope: "deletion/del_3".into(),
        ..certificate("c9")
    };
    assert_eq!(
        s.complete_deletion(&globex, None, &[record(1, &[]).id], theirs_cert, audit())
            .await
            .unwrap(),
        0
    );
    assert!(
        s.get_record(&acme, record(3, &[]).id)
            .await
            .unwrap()
            .is_some()
    );
    assert!(
        s.get_record(&globex, record(3, &[]).id)
            .await
            .unwrap()
            .is_some()
    );
    assert_eq!(s.certificate(&acme, "c9").await.unwrap(), None);
    assert_eq!(s.scheduled_deletions(&globex).await.unwrap(), vec![theirs]);
}

/// SQLite keeps recent subject index entries staged and merges them later: a completed
/// deletion leaves no entry behind in the merged index, whether the merge came before or
/// after it.
#[tokio::test]
async fn sqlite_completed_deletions_leave_no_index_entries() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.db");
    let s = SqliteStore::open(&path).await.unwrap();
    let acme = tenant("acme");
    s.insert_records(
        &acme,
        vec![
            in_bucket(1, "b", None, &[5]),
            in_bucket(2, "b", None, &[5, 6]),
        ],
        None,
        audit(),
    )
    .await
    .unwrap();
    s.merge_subject_index().await.unwrap();
    s.insert_records(&acme, vec![in_bucket(3, "b", None, &[5])], None, audit())
        .await
        .unwrap();
    let certificate = CertificateRow {
        id: "c1".into(),
        scope: "subject/05".into(),
        issued_at: ts("2026-01-01T00:00:00Z"),
        note: String::new(),
    };
    let all = [1, 2, 3].map(|n| record(n, &[]).id);
    assert_eq!(
        s.complete_deletion(&acme, None, &all, certificate, audit())
            .await
            .unwrap(),
        3
    );
    s.merge_subject_index().await.unwrap();
    let conn = rusqlite::Connection::open(&path).unwrap();
    let entries: i64 = conn
        .query_row("SELECT COUNT(*) FROM record_subjects", [], |r| r.get(0))
        .unwrap();
    assert_eq!(entries, 0);
}

#[tokio::test]
async fn postgres_completed_deletions_leave_no_index_entries() {
    if !testing::postgres_available().await {
        return;
    }
    let schema = testing::unique_schema("conformance");
    let s = PostgresStore::connect(&testing::postgres_url(), Some(&schema))
        .await
        .unwrap();
    let acme = tenant("acme");
    s.insert_records(
        &acme,
        vec![
            in_bucket(1, "b", None, &[5]),
            in_bucket(2, "b", None, &[5, 6]),
        ],
        None,
        audit(),
    )
    .await
    .unwrap();
    s.insert_records(
        &tenant("globex"),
        vec![in_bucket(1, "b", None, &[5])],
        None,
        audit(),
    )
    .await
    .unwrap();
    let certificate = CertificateRow {
        id: "c1".into(),
        scope: "subject/05".into(),
        issued_at: ts("2026-01-01T00:00:00Z"),
        note: String::new(),
    };
    let all = [1, 2].map(|n| record(n, &[]).id);
    assert_eq!(
        s.complete_deletion(&acme, None, &all, certificate, audit())
            .await
            .unwrap(),
        2
    );
    let (client, conn) = tokio_postgres::connect(&testing::postgres_url(), tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let count = |tenant: &'static str| {
        let (client, schema) = (&client, &schema);
        async move {
            client
                .query_one(
                    &format!("SELECT COUNT(*) FROM {schema}.record_subjects WHERE tenant_id = $1"),
                    &[&tenant],
                )
                .await
                .unwrap()
                .get::<_, i64>(0)
        }
    };
    assert_eq!(count("acme").await, 0);
    assert_eq!(count("globex").await, 1);
    testing::drop_schema(&schema).await;
}

/// SQLite's destruction lock holds nothing: the one process that owns the file serialises its
/// destructions itself, so nothing here may wait.
#[tokio::test]
async fn sqlite_destruction_lock_holds_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let s = SqliteStore::open(&dir.path().join("c.db")).await.unwrap();
    let wait = std::time::Duration::from_secs(5);
    let first = s.lock_destruction().await.unwrap();
    let second = tokio::time::timeout(wait, s.lock_destruction())
        .await
        .expect("a second guard at once")
        .unwrap();
    let hold = Hold {
        id: "h1".into(),
        scope: HoldScope::Tenant,
        case_id: "CASE-1".into(),
        reason: "r".into(),
        placed_by: "token:a".into(),
        placed_at: ts("2026-01-01T00:00:00Z"),
        released: None,
    };
    tokio::time::timeout(wait, s.insert_hold(&tenant("acme"), &hold, audit()))
        .await
        .expect("holds are placed beside the guard")
        .unwrap();
    drop((first, second));
}

/// On PostgreSQL the destruction lock spans nodes: while one store (node) holds it, another's
/// `lock_destruction` and `insert_hold` wait, and both go ahead once it is dropped. A waiter
/// that gives up leaves no lock behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_destruction_lock_spans_nodes() {
    use std::sync::Arc;
    use std::time::Duration;
    if !testing::postgres_available().await {
        return;
    }
    let schema = testing::unique_schema("conformance");
    let url = testing::postgres_url();
    let node_a = Arc::new(PostgresStore::connect(&url, Some(&schema)).await.unwrap());
    let node_b = Arc::new(PostgresStore::connect(&url, Some(&schema)).await.unwrap());
    let blocked = Duration::from_millis(300);
    let bound = Duration::from_secs(10);

    let guard = node_a.lock_destruction().await.unwrap();
    let b = node_b.clone();
    let mut second = tokio::spawn(async move { b.lock_destruction().await });
    let b = node_b.clone();
    let hold = Hold {
        id: "h1".into(),
        scope: HoldScope::Tenant,
        case_id: "CASE-1".into(),
        reason: "r".into(),
        placed_by: "token:a".into(),
        placed_at: ts("2026-01-01T00:00:00Z"),
        released: None,
    };
    let placed = hold.clone();
    let mut insert =
        tokio::spawn(async move { b.insert_hold(&tenant("acme"), &placed, audit()).await });
    assert!(
        tokio::time::timeout(blocked, &mut second).await.is_err(),
        "another node's lock_destruction waits"
    );
    assert!(
        tokio::time::timeout(blocked, &mut insert).await.is_err(),
        "another node's insert_hold waits"
    );
    assert!(node_b.holds(&tenant("acme")).await.unwrap().is_empty());
    drop(guard);
    // Whichever waiter goes first, the other follows once the second guard is dropped.
    let second_guard = tokio::time::timeout(bound, second)
        .await
        .expect("lock_destruction goes ahead once the lock is dropped")
        .unwrap()
        .unwrap();
    drop(second_guard);
    tokio::time::timeout(bound, insert)
        .await
        .expect("insert_hold goes ahead once the lock is dropped")
        .unwrap()
        .unwrap();
    assert_eq!(node_a.holds(&tenant("acme")).await.unwrap(), vec![hold]);

    // A waiter that gives up (its future dropped mid-wait) must not take the lock later on a
    // pooled connection and keep it.
    let guard = node_a.lock_destruction().await.unwrap();
    assert!(
        tokio::time::timeout(blocked, node_b.lock_destruction())
            .await
            .is_err()
    );
    drop(guard);
    tokio::time::sleep(blocked).await;
    let again = tokio::time::timeout(bound, node_a.lock_destruction())
        .await
        .expect("no abandoned waiter keeps the lock")
        .unwrap();
    drop(again);
    testing::drop_schema(&schema).await;
}

async fn applied_retentions_are_replaced_and_records_page_by_type(s: &dyn Store) {
    let (acme, globex) = (tenant("acme"), tenant("globex"));
    let applied = |rule: &str, done: bool| AppliedRetention {
        data_type: DataTypeName::new("auth_log").unwrap(),
        rule: rule.into(),
        since: ts("2026-12-01T00:00:00Z"),
        applied: done,
    };
    assert!(s.applied_retentions(&acme).await.unwrap().is_empty());
    s.put_applied_retention(&acme, &applied("24mo (tier standard)", true), None)
        .await
        .unwrap();
    let before = s.audit_size(&AuditLog::Tenant(acme.clone())).await.unwrap();
    s.put_applied_retention(
        &acme,
        &applied("36mo (tier extended)", false),
        Some(audit()),
    )
    .await
    .unwrap();
    assert_eq!(
        s.applied_retentions(&acme).await.unwrap(),
        vec![applied("36mo (tier extended)", false)]
    );
    assert_eq!(
        s.audit_size(&AuditLog::Tenant(acme.clone())).await.unwrap(),
        before + 1
    );
    assert!(s.applied_retentions(&globex).await.unwrap().is_empty());

    let mut other_type = record(9, &[1]);
    other_type.data_type = DataTypeName::new("app_log").unwrap();
    s.insert_records(
        &acme,
        vec![record(1, &[1]), record(2, &[2]), record(3, &[]), other_type],
        None,
        audit(),
    )
    .await
    .unwrap();
    s.insert_records(&globex, vec![record(4, &[1])], None, audit())
        .await
        .unwrap();
    let auth_log = DataTypeName::new("auth_log").unwrap();
    let first = s.records_of_type(&acme, &auth_log, None, 2).await.unwrap();
    assert_eq!(first, vec![record(1, &[1]), record(2, &[2])]);
    let rest = s
        .records_of_type(&acme, &auth_log, Some(first[1].id), 2)
        .await
        .unwrap();
    assert_eq!(rest, vec![record(3, &[])]);
    assert!(
        s.records_of_type(&acme, &auth_log, Some(rest[0].id), 2)
            .await
            .unwrap()
            .is_empty()
    );
}

async fn terminations_are_withdrawn_only_before_their_purge(s: &dyn Store) {
    let (acme, globex) = (tenant("acme"), tenant("globex"));
    let log = AuditLog::Tenant(acme.clone());
    let termination = Termination {
        tenant: acme.clone(),
        requested_by: "token:root".into(),
        reason: "contract ended".into(),
        terminated_at: ts("2026-05-01T00:00:00Z"),
        purge_at: ts("2026-05-08T00:00:00Z"),
        purged_at: None,
        certificate_id: None,
    };
    assert_eq!(
        s.cancel_termination(&acme, ts("2026-05-02T00:00:00Z"), audit())
            .await
            .unwrap(),
        TerminationCancel::NotTerminated
    );
    s.terminate_tenant(&termination, audit()).await.unwrap();
    // Another tenant cannot withdraw it; past the purge time nobody can.
    assert_eq!(
        s.cancel_termination(&globex, ts("2026-05-02T00:00:00Z"), audit())
            .await
            .unwrap(),
        TerminationCancel::NotTerminated
    );
    assert_eq!(
        s.cancel_termination(&acme, ts("2026-05-08T00:00:00Z"), audit())
            .await
            .unwrap(),
        TerminationCancel::PurgeStarted(termination.clone())
    );
    assert_eq!(s.audit_size(&log).await.unwrap(), 1);
    assert_eq!(
        s.cancel_termination(&acme, ts("2026-05-02T00:00:00Z"), audit())
            .await
            .unwrap(),
        TerminationCancel::Cancelled(termination)
    );
    assert_eq!(s.audit_size(&log).await.unwrap(), 2);
    assert_eq!(s.termination(&acme).await.unwrap(), None);
}

async fn a_large_bucket_is_purged_whole_under_one_certificate(s: &dyn Store) {
    let acme = tenant("acme");
    // More records than a backend deletes in one chunk.
    let records: Vec<StoredRecord> = (0..4500u64)
        .map(|n| {
            let mut r = record(n, &[(n % 7) as u8]);
            r.key_bucket = "d2027-01-01".into();
            r
        })
        .collect();
    s.insert_records(&acme, records, None, audit())
        .await
        .unwrap();
    let auth_log = DataTypeName::new("auth_log").unwrap();
    let certificate = CertificateRow {
        id: "del_large".into(),
        scope: "bucket/auth_log/d2027-01-01".into(),
        issued_at: ts("2027-01-02T00:00:00Z"),
        note: "signed".into(),
    };
    let purged = s
        .purge_bucket(
            &acme,
            &auth_log,
            "d2027-01-01",
            certificate.clone(),
            audit(),
        )
        .await
        .unwrap();
    assert_eq!(purged, 4500);
    assert!(
        s.bucket_records(&acme, &auth_log, "d2027-01-01")
            .await
            .unwrap()
            .is_empty()
    );
    for subject in 0..7u8 {
        assert!(
            s.list_subject_records(&acme, &[subject; 32], None, 10)
                .await
                .unwrap()
                .is_empty(),
            "subject {subject} still indexed"
        );
    }
    assert_eq!(s.certificates(&acme).await.unwrap(), vec![certificate]);
}

async fn audit_heads_list_every_log_system_first(s: &dyn Store) {
    assert!(s.audit_heads().await.unwrap().is_empty());
    let (acme, globex) = (tenant("acme"), tenant("globex"));
    s.append_audit(&AuditLog::Tenant(globex.clone()), vec![audit(), audit()])
        .await
        .unwrap();
    s.append_audit(&AuditLog::System, vec![audit()])
        .await
        .unwrap();
    s.append_audit(&AuditLog::Tenant(acme.clone()), vec![audit()])
        .await
        .unwrap();
    assert_eq!(
        s.audit_heads().await.unwrap(),
        vec![
            (AuditLog::System, 1),
            (AuditLog::Tenant(acme), 1),
            (AuditLog::Tenant(globex), 2),
        ]
    );
}

/// A request of `tenant`, open, its id the `n`th ULID (so a larger `n` is newer).
fn subject_request(tenant_id: &str, n: u64, kind: &str, subject: u8) -> SubjectRequest {
    SubjectRequest {
        tenant: tenant(tenant_id),
        id: ulid::Ulid::from_parts(1_750_000_000_000 + n, u128::from(n)).to_string(),
        kind: kind.into(),
        subject: [subject; 32],
        reference: format!("DSR-{n}"),
        reason: "the subject asked".into(),
        requested_by: "dpo@acme.example".into(),
        received_at: ts("2026-02-01T09:30:00.123456Z"),
        due_at: ts("2026-03-01T09:30:00.123456Z"),
        status: "open".into(),
        completed_at: None,
        outcome: None,
        certificate_id: None,
    }
}

async fn subject_requests_list_newest_first_within_their_tenant(s: &dyn Store) {
    let (acme, globex) = (tenant("acme"), tenant("globex"));
    let r1 = subject_request("acme", 1, "access", 1);
    let r2 = subject_request("acme", 2, "erasure", 2);
    let r3 = subject_request("acme", 3, "rectification", 1);
    // Inserted out of order: listings follow the ids, not the insertion.
    for r in [&r2, &r3, &r1] {
        s.insert_subject_request(r, audit()).await.unwrap();
    }
    // The other tenant has a request of the same id and subject.
    let theirs = subject_request("globex", 1, "anonymisation", 1);
    s.insert_subject_request(&theirs, audit()).await.unwrap();
    assert_eq!(
        s.audit_size(&AuditLog::Tenant(acme.clone())).await.unwrap(),
        3
    );
    assert_eq!(
        s.audit_size(&AuditLog::Tenant(globex.clone()))
            .await
            .unwrap(),
        1
    );

    assert_eq!(
        s.subject_request(&acme, &r1.id).await.unwrap(),
        Some(r1.clone())
    );
    assert_eq!(
        s.subject_request(&globex, &r1.id).await.unwrap(),
        Some(theirs.clone())
    );
    assert_eq!(s.subject_request(&globex, &r2.id).await.unwrap(), None);
    assert_eq!(
        s.subject_request(&acme, "01J0000000000000000000000X")
            .await
            .unwrap(),
        None
    );

    assert_eq!(
        s.subject_requests(&acme, None, 10).await.unwrap(),
        vec![r3.clone(), r2.clone(), r1.clone()]
    );
    assert_eq!(
        s.subject_requests(&acme, None, 2).await.unwrap(),
        vec![r3.clone(), r2.clone()]
    );
    assert_eq!(
        s.subject_requests(&acme, Some(&[1; 32]), 10).await.unwrap(),
        vec![r3.clone(), r1.clone()]
    );
    assert_eq!(
        s.subject_requests(&acme, Some(&[1; 32]), 1).await.unwrap(),
        vec![r3]
    );
    assert!(
        s.subject_requests(&acme, Some(&[9; 32]), 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        s.subject_requests(&globex, None, 10).await.unwrap(),
        vec![theirs.clone()]
    );
    assert_eq!(
        s.subject_requests(&globex, Some(&[1; 32]), 10)
            .await
            .unwrap(),
        vec![theirs]
    );
    assert!(
        s.subject_requests(&tenant("initech"), None, 10)
            .await
            .unwrap()
            .is_empty()
    );

    // A request id is used once per tenant; an unknown kind or status is refused. Neither
    // leaves an audit entry.
    assert!(s.insert_subject_request(&r2, audit()).await.is_err());
    let bad_kind = SubjectRequest {
        kind: "portability".into(),
        ..subject_request("acme", 4, "access", 1)
    };
    assert!(s.insert_subject_request(&bad_kind, audit()).await.is_err());
    let bad_status = SubjectRequest {
        status: "pending".into(),
        ..subject_request("acme", 5, "access", 1)
    };
    assert!(
        s.insert_subject_request(&bad_status, audit())
            .await
            .is_err()
    );
    assert_eq!(
        s.audit_size(&AuditLog::Tenant(acme.clone())).await.unwrap(),
        3
    );
    assert_eq!(s.subject_requests(&acme, None, 10).await.unwrap().len(), 3);
}

async fn subject_requests_are_answered_once(s: &dyn Store) {
    let (acme, globex) = (tenant("acme"), tenant("globex"));
    let erasure = subject_request("acme", 1, "erasure", 1);
    let access = subject_request("acme", 2, "access", 2);
    s.insert_subject_request(&erasure, audit()).await.unwrap();
    s.insert_subject_request(&access, audit()).await.unwrap();
    let log = AuditLog::Tenant(acme.clone());
    assert_eq!(s.audit_size(&log).await.unwrap(), 2);

    // Another tenant cannot answer it, even naming its id.
    let at = ts("2026-02-10T12:00:00.654321Z");
    assert!(
        !s.finish_subject_request(&globex, &erasure.id, "refused", "{}", at, None, audit())
            .await
            .unwrap()
    );
    assert_eq!(
        s.audit_size(&AuditLog::Tenant(globex.clone()))
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        s.subject_request(&acme, &erasure.id).await.unwrap(),
        Some(erasure.clone())
    );

    let outcome = r#"{"destroyed":3,"held":["h1"]}"#;
    assert!(
        s.finish_subject_request(
            &acme,
            &erasure.id,
            "partial",
            outcome,
            at,
            Some("cert-1"),
            audit()
        )
        .await
        .unwrap()
    );
    assert_eq!(s.audit_size(&log).await.unwrap(), 3);
    let answered = SubjectRequest {
        status: "partial".into(),
        completed_at: Some(at),
        outcome: Some(outcome.into()),
        certificate_id: Some("cert-1".into()),
        ..erasure.clone()
    };
    assert_eq!(
        s.subject_request(&acme, &erasure.id).await.unwrap(),
        Some(answered.clone())
    );

    // The first answer stands: a second one writes nothing and appends nothing.
    let later = ts("2026-02-11T12:00:00Z");
    assert!(
        !s.finish_subject_request(
            &acme,
            &erasure.id,
            "completed",
            "{}",
            later,
            Some("cert-2"),
            audit()
        )
        .await
        .unwrap()
    );
    assert_eq!(s.audit_size(&log).await.unwrap(), 3);
    assert_eq!(
        s.subject_request(&acme, &erasure.id).await.unwrap(),
        Some(answered.clone())
    );

    // Unknown ids are not answered either.
    assert!(
        !s.finish_subject_request(
            &acme,
            "01J0000000000000000000000X",
            "completed",
            "{}",
            at,
            None,
            audit()
        )
        .await
        .unwrap()
    );
    assert_eq!(s.audit_size(&log).await.unwrap(), 3);

    // The other request is still open, and answers without a certificate.
    assert!(
        s.finish_subject_request(
            &acme,
            &access.id,
            "completed",
            "{\"records\":2}",
            at,
            None,
            audit()
        )
        .await
        .unwrap()
    );
    assert_eq!(s.audit_size(&log).await.unwrap(), 4);
    assert_eq!(
        s.subject_requests(&acme, None, 10).await.unwrap(),
        vec![
            SubjectRequest {
                status: "completed".into(),
                completed_at: Some(at),
                outcome: Some("{\"records\":2}".into()),
                ..access
            },
            answered,
        ]
    );
}

fn resealed(n: u64, sealed: u8, subjects: &[u8]) -> ResealedRecord {
    ResealedRecord {
        id: record(n, &[]).id,
        sealed: vec![sealed; 48],
        key_subjects: subjects.iter().map(|s| [*s; 32]).collect(),
    }
}

async fn listed(s: &dyn Store, t: &TenantId, subject: u8) -> Vec<RecordId> {
    s.list_subject_records(t, &[subject; 32], None, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect()
}

async fn resealed_records_replace_their_subject_entries(s: &dyn Store) {
    let (acme, globex) = (tenant("acme"), tenant("globex"));
    let (anonymised, rectified, bystander) =
        (record(1, &[1, 2]), record(2, &[1, 2]), record(3, &[1]));
    let ids = |ns: &[u64]| -> Vec<RecordId> { ns.iter().map(|n| record(*n, &[]).id).collect() };
    // The other tenant has records of the same ids and subjects.
    s.insert_records(
        &globex,
        vec![record(1, &[1, 2]), record(2, &[1, 2])],
        None,
        audit(),
    )
    .await
    .unwrap();
    // Resealed right after the insert: on SQLite their index entries are still staged.
    s.insert_records(
        &acme,
        vec![anonymised.clone(), rectified.clone(), bystander.clone()],
        None,
        audit(),
    )
    .await
    .unwrap();
    let log = AuditLog::Tenant(acme.clone());
    let before = s.audit_size(&log).await.unwrap();
    let n = s
        .reseal_records(
            &acme,
            vec![
                resealed(1, 0xaa, &[]),
                resealed(2, 0xbb, &[1]),
                // Unknown to the tenant: skipped, not counted, not created.
                resealed(99, 0xcc, &[1]),
            ],
            audit(),
        )
        .await
        .unwrap();
    assert_eq!(n, 2);
    assert_eq!(s.audit_size(&log).await.unwrap(), before + 1);

    // Only the ciphertext and the subjects change.
    assert_eq!(
        s.get_record(&acme, anonymised.id).await.unwrap(),
        Some(StoredRecord {
            sealed: vec![0xaa; 48],
            key_subjects: vec![],
            ..anonymised.clone()
        })
    );
    assert_eq!(
        s.get_record(&acme, rectified.id).await.unwrap(),
        Some(StoredRecord {
            sealed: vec![0xbb; 48],
            key_subjects: vec![[1; 32]],
            ..rectified.clone()
        })
    );
    assert_eq!(
        s.get_record(&acme, bystander.id).await.unwrap(),
        Some(bystander.clone())
    );
    assert_eq!(s.get_record(&acme, record(99, &[]).id).await.unwrap(), None);
    // The anonymised record is under no subject; the rectified one under 1 only, once.
    assert_eq!(listed(s, &acme, 1).await, ids(&[2, 3]));
    assert!(listed(s, &acme, 2).await.is_empty());

    // Resealed again, now from the index itself: still exact.
    assert_eq!(
        s.reseal_records(
            &acme,
            vec![resealed(2, 0xdd, &[1]), resealed(1, 0xee, &[])],
            audit()
        )
        .await
        .unwrap(),
        2
    );
    assert_eq!(s.audit_size(&log).await.unwrap(), before + 2);
    assert_eq!(listed(s, &acme, 1).await, ids(&[2, 3]));
    assert!(listed(s, &acme, 2).await.is_empty());
    let rectified_now = s.get_record(&acme, rectified.id).await.unwrap().unwrap();
    assert_eq!(rectified_now.sealed, vec![0xdd; 48]);
    // And once more moved to another subject: the index follows key_subjects exactly.
    assert_eq!(
        s.reseal_records(&acme, vec![resealed(2, 0xdd, &[2, 3])], audit())
            .await
            .unwrap(),
        1
    );
    assert_eq!(listed(s, &acme, 1).await, ids(&[3]));
    assert_eq!(listed(s, &acme, 2).await, ids(&[2]));
    assert_eq!(listed(s, &acme, 3).await, ids(&[2]));

    // Nothing of the other tenant's changed.
    assert_eq!(
        s.get_record(&globex, record(1, &[]).id).await.unwrap(),
        Some(record(1, &[1, 2]))
    );
    assert_eq!(
        s.get_record(&globex, record(2, &[]).id).await.unwrap(),
        Some(record(2, &[1, 2]))
    );
    assert_eq!(listed(s, &globex, 1).await, ids(&[1, 2]));
    assert_eq!(listed(s, &globex, 2).await, ids(&[1, 2]));
    assert!(listed(s, &globex, 3).await.is_empty());
    // An empty reseal changes nothing but is still audited.
    assert_eq!(s.reseal_records(&globex, vec![], audit()).await.unwrap(), 0);
    assert_eq!(listed(s, &globex, 1).await, ids(&[1, 2]));
}

/// SQLite stages new subject index entries and merges them later: a reseal leaves exactly the
/// record's new entries in the merged index whether its old ones were merged or still staged,
/// and a later merge brings none of the old ones back.
#[tokio::test]
async fn sqlite_reseals_leave_the_index_exact_staged_or_merged() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.db");
    let s = SqliteStore::open(&path).await.unwrap();
    let acme = tenant("acme");
    s.insert_records(
        &acme,
        vec![record(1, &[1, 2]), record(2, &[1, 2])],
        None,
        audit(),
    )
    .await
    .unwrap();
    s.merge_subject_index().await.unwrap();
    s.insert_records(
        &acme,
        vec![record(3, &[1, 2]), record(4, &[1, 2])],
        None,
        audit(),
    )
    .await
    .unwrap();
    s.insert_records(&tenant("globex"), vec![record(3, &[1, 2])], None, audit())
        .await
        .unwrap();
    // 1 and 3 anonymised, 2 and 4 rectified: one of each merged, one of each staged.
    let n = s
        .reseal_records(
            &acme,
            vec![
                resealed(1, 0xaa, &[]),
                resealed(2, 0xbb, &[1]),
                resealed(3, 0xaa, &[]),
                resealed(4, 0xbb, &[1]),
            ],
            audit(),
        )
        .await
        .unwrap();
    assert_eq!(n, 4);
    let ids = |ns: &[u64]| -> Vec<RecordId> { ns.iter().map(|n| record(*n, &[]).id).collect() };
    assert_eq!(listed(&s, &acme, 1).await, ids(&[2, 4]));
    assert!(listed(&s, &acme, 2).await.is_empty());
    s.merge_subject_index().await.unwrap();
    assert_eq!(listed(&s, &acme, 1).await, ids(&[2, 4]));
    assert!(listed(&s, &acme, 2).await.is_empty());
    assert_eq!(listed(&s, &tenant("globex"), 2).await, ids(&[3]));
    let conn = rusqlite::Connection::open(&path).unwrap();
    let mut stmt = conn
        .prepare("SELECT tenant_id, subject, record_id FROM record_subjects ORDER BY 1, 2, 3")
        .unwrap();
    let entries: Vec<(String, Vec<u8>, String)> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let entry = |t: &str, subject: u8, n: u64| {
        (
            t.to_owned(),
            vec![subject; 32],
            record(n, &[]).id.to_string(),
        )
    };
    assert_eq!(
        entries,
        vec![
            entry("acme", 1, 2),
            entry("acme", 1, 4),
            entry("globex", 1, 3),
            entry("globex", 2, 3),
        ]
    );
}

fn principal(id: &str, tenant_id: &str, role: custodian_core::access::Role) -> Principal {
    Principal {
        id: id.into(),
        tenant: TenantId::from_stored(tenant_id).unwrap(),
        role,
    }
}

fn requested(id: &str, tenant_id: &str, grantee: &str, at: &str) -> Grant {
    Grant::request(
        id.into(),
        &principal(grantee, "_platform", Role::Support),
        GrantRequest {
            tenant: tenant(tenant_id),
            scope: GrantScope {
                data_types: Vec::new(),
                subjects: Vec::new(),
                write: false,
            },
            reason: "ticket review".into(),
            ticket: "SUP-1".into(),
            duration_secs: 3600,
        },
        GrantRules {
            jit_max_secs: 86_400,
            restricted: false,
            restricted_approvers: 2,
        },
        ts(at),
    )
    .unwrap()
}

async fn grants_move_on_only_from_the_version_they_started_at(s: &dyn Store) {
    let acme = tenant("acme");
    let g = requested("grt_01", "acme", "sam", "2026-01-01T00:00:00Z");
    s.insert_grant(&g, audit()).await.unwrap();
    assert_eq!(s.grant(None, "grt_01").await.unwrap(), Some(g.clone()));
    assert_eq!(
        s.grant(Some(&acme), "grt_01").await.unwrap(),
        Some(g.clone())
    );
    // Another tenant's principals do not find it.
    assert_eq!(
        s.grant(Some(&tenant("globex")), "grt_01").await.unwrap(),
        None
    );
    let at = ts("2026-01-01T00:10:00Z");
    let first = g
        .approve(&principal("ann", "_platform", Role::Approver), at)
        .unwrap();
    let second = g
        .deny(&principal("bob", "_platform", Role::Approver), "no", at)
        .unwrap();
    assert!(s.update_grant(&first, audit()).await.unwrap());
    // Started from the version `first` replaced: refused, nothing appended.
    let size = s.audit_size(&AuditLog::Tenant(acme.clone())).await.unwrap();
    assert!(!s.update_grant(&second, audit()).await.unwrap());
    assert_eq!(
        s.audit_size(&AuditLog::Tenant(acme.clone())).await.unwrap(),
        size
    );
    assert_eq!(s.grant(None, "grt_01").await.unwrap(), Some(first.clone()));
    // Insert and each accepted transition appended one entry to the tenant's log.
    assert_eq!(size, 2);
}

async fn live_grants_are_approved_unexpired_and_open(s: &dyn Store) {
    let acme = tenant("acme");
    let approver = principal("ann", "_platform", Role::Approver);
    let t0 = "2026-01-01T00:00:00Z";
    let pending = requested("grt_01", "acme", "sam", t0);
    let active = requested("grt_02", "acme", "sam", t0)
        .approve(&approver, ts("2026-01-01T00:30:00Z"))
        .unwrap();
    let revoked = requested("grt_03", "acme", "sam", t0)
        .approve(&approver, ts("2026-01-01T00:00:00Z"))
        .unwrap();
    let other_grantee = requested("grt_04", "acme", "kim", t0)
        .approve(&approver, ts("2026-01-01T00:00:00Z"))
        .unwrap();
    let other_tenant = requested("grt_05", "globex", "sam", t0)
        .approve(&approver, ts("2026-01-01T00:00:00Z"))
        .unwrap();
    for g in [&pending, &active, &revoked, &other_grantee, &other_tenant] {
        s.insert_grant(g, audit()).await.unwrap();
    }
    let closed = revoked
        .revoke(&approver, "done", ts("2026-01-01T00:05:00Z"))
        .unwrap();
    assert!(s.update_grant(&closed, audit()).await.unwrap());
    let ids = |gs: Vec<Grant>| gs.into_iter().map(|g| g.id).collect::<Vec<_>>();
    let live = s
        .live_grants(&acme, "sam", ts("2026-01-01T00:40:00Z"))
        .await
        .unwrap();
    assert_eq!(ids(live), ["grt_02"]);
    // At its expiry instant it is no longer live.
    let live = s
        .live_grants(&acme, "sam", ts("2026-01-01T01:30:00Z"))
        .await
        .unwrap();
    assert!(live.is_empty());
    // Listing: newest first, by tenant, paged by id.
    assert_eq!(
        ids(s.grants(Some(&acme), None, 10).await.unwrap()),
        ["grt_04", "grt_03", "grt_02", "grt_01"]
    );
    assert_eq!(
        ids(s.grants(Some(&acme), Some("grt_03"), 1).await.unwrap()),
        ["grt_02"]
    );
    assert_eq!(
        ids(s.grants(None, None, 2).await.unwrap()),
        ["grt_05", "grt_04"]
    );
}
