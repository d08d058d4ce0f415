//! Key-store conformance: every case runs against the SQLite and the PostgreSQL key store, each
//! in its own file or schema.

use custodian_core::ids::TenantId;
use custodian_store::keys::{
    AuditShred, KeySnapshot, ShredEntry, WrappedAuditKey, merge_audit_shreds, prepare_restore,
};
use custodian_store::{
    KeyStore, PostgresKeyStore, ShredScope, SqliteKeyStore, StoreError, WrappedDataKey, WrappedKek,
    testing,
};
use jiff::Timestamp;

fn tenant(s: &str) -> TenantId {
    TenantId::new(s).unwrap()
}

fn at() -> Timestamp {
    "2026-01-01T00:00:00Z".parse().unwrap()
}

fn dk(id: &str, version: u32) -> WrappedDataKey {
    WrappedDataKey {
        id: id.into(),
        kek_version: version,
        wrapped: format!("{id}@{version}").into_bytes(),
    }
}

fn ak(log: &str, period: &str, id: &str) -> WrappedAuditKey {
    WrappedAuditKey {
        log: log.into(),
        period: period.into(),
        id: id.into(),
        wrapped: format!("{log}/{id}").into_bytes(),
    }
}

fn audit_shred(log: &str, period: &str, at: Timestamp) -> AuditShred {
    AuditShred {
        log: log.into(),
        period: period.into(),
        at,
    }
}

fn ids(ids: &[&str]) -> Vec<String> {
    ids.iter().map(|&i| i.to_owned()).collect()
}

/// The audit keys of `log` among `wanted`, by id (backends return them in no set order).
async fn audit_keys_by_id(s: &dyn KeyStore, log: &str, wanted: &[&str]) -> Vec<WrappedAuditKey> {
    let mut found = s.audit_keys(log, &ids(wanted)).await.unwrap();
    found.sort_by(|a, b| a.id.cmp(&b.id));
    found
}

fn kek(version: u32) -> WrappedKek {
    WrappedKek {
        version,
        wrapped: vec![version as u8; 8],
        created_at: at(),
    }
}

async fn first_writer_wins_for_index_keys_and_keks(s: &dyn KeyStore) {
    let acme = tenant("acme");
    assert_eq!(s.index_key(&acme).await.unwrap(), None);
    assert!(s.insert_index_key(&acme, vec![1]).await.unwrap());
    assert!(!s.insert_index_key(&acme, vec![2]).await.unwrap());
    assert_eq!(s.index_key(&acme).await.unwrap(), Some(vec![1]));
    assert_eq!(s.index_key(&tenant("globex")).await.unwrap(), None);

    assert!(s.insert_kek(&acme, kek(1)).await.unwrap());
    assert!(
        !s.insert_kek(
            &acme,
            WrappedKek {
                wrapped: vec![9],
                ..kek(1)
            }
        )
        .await
        .unwrap()
    );
    assert!(s.insert_kek(&acme, kek(2)).await.unwrap());
    assert_eq!(s.keks(&acme).await.unwrap(), vec![kek(1), kek(2)]);
    assert!(s.keks(&tenant("globex")).await.unwrap().is_empty());
}

async fn data_keys_are_tenant_scoped_and_never_overwritten(s: &dyn KeyStore) {
    let (acme, globex) = (tenant("acme"), tenant("globex"));
    // A key wrapped by a KEK version that is not live (retired by another node's rotation,
    // or never made) is refused, and nothing of the batch is written.
    assert!(matches!(
        s.insert_data_keys(&acme, vec![dk("b/t/0", 1)]).await,
        Err(StoreError::KekRetired { version: 1 })
    ));
    assert!(
        s.data_keys(&acme, &["b/t/0".into()])
            .await
            .unwrap()
            .is_empty()
    );
    s.insert_kek(&acme, kek(1)).await.unwrap();
    let existed = s
        .insert_data_keys(&acme, vec![dk("b/t/1", 1), dk("s/aa", 1)])
        .await
        .unwrap();
    assert!(existed.is_empty(), "{existed:?}");
    // A concurrent writer's second key for the same id loses, and is told so.
    let existed = s
        .insert_data_keys(
            &acme,
            vec![
                WrappedDataKey {
                    wrapped: vec![0],
                    ..dk("s/aa", 1)
                },
                dk("s/bb", 1),
            ],
        )
        .await
        .unwrap();
    assert_eq!(existed, ["s/aa"]);
    let mut found = s
        .data_keys(&acme, &["s/aa".into(), "b/t/1".into(), "nope".into()])
        .await
        .unwrap();
    found.sort_by(|a, b| a.id.cmp(&b.id));
    assert_eq!(found, vec![dk("b/t/1", 1), dk("s/aa", 1)]);
    assert!(
        s.data_keys(&globex, &["s/aa".into()])
            .await
            .unwrap()
            .is_empty()
    );
}

async fn rotation_rewraps_then_destroys_old_keks(s: &dyn KeyStore) {
    let acme = tenant("acme");
    s.insert_kek(&acme, kek(1)).await.unwrap();
    s.insert_data_keys(&acme, (0..5).map(|i| dk(&format!("s/{i}"), 1)).collect())
        .await
        .unwrap();
    s.insert_kek(&acme, kek(2)).await.unwrap();
    // Old KEKs stay while any data key needs them.
    assert!(
        s.destroy_keks_before(&acme, 2, at())
            .await
            .unwrap()
            .is_empty()
    );
    let page = s.data_keys_below(&acme, 2, "", 3).await.unwrap();
    assert_eq!(
        page.iter().map(|k| k.id.as_str()).collect::<Vec<_>>(),
        ["s/0", "s/1", "s/2"]
    );
    s.rewrap_data_keys(&acme, page.iter().map(|k| dk(&k.id, 2)).collect())
        .await
        .unwrap();
    let rest = s.data_keys_below(&acme, 2, "s/2", 3).await.unwrap();
    assert_eq!(rest.len(), 2);
    assert_eq!(
        s.count_data_keys(&acme).await.unwrap().by_kek_version,
        vec![(1, 2), (2, 3)]
    );
    s.rewrap_data_keys(&acme, rest.iter().map(|k| dk(&k.id, 2)).collect())
        .await
        .unwrap();
    assert_eq!(
        s.destroy_keks_before(&acme, 2, at()).await.unwrap(),
        vec![1]
    );
    assert_eq!(s.keks(&acme).await.unwrap(), vec![kek(2)]);
    assert_eq!(
        s.data_keys(&acme, &["s/4".into()]).await.unwrap(),
        vec![dk("s/4", 2)]
    );
    assert_eq!(
        s.shredded(&acme, &["kek/1".into()]).await.unwrap(),
        ["kek/1"]
    );
}

async fn shreds_destroy_log_and_are_idempotent(s: &dyn KeyStore) {
    let (acme, globex) = (tenant("acme"), tenant("globex"));
    for t in [&acme, &globex] {
        s.insert_index_key(t, vec![1]).await.unwrap();
        s.insert_kek(t, kek(1)).await.unwrap();
        s.insert_data_keys(t, vec![dk("b/t/1", 1), dk("b/t/2", 1), dk("s/aa", 1)])
            .await
            .unwrap();
    }
    let ids = vec!["b/t/1".to_owned(), "missing".to_owned()];
    assert_eq!(
        s.shred(&acme, ShredScope::Keys(ids.clone()), at())
            .await
            .unwrap(),
        ["b/t/1"]
    );
    assert!(
        s.shred(&acme, ShredScope::Keys(ids), at())
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        s.data_keys(&acme, &["b/t/1".into()])
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        s.shredded(&acme, &["b/t/1".into(), "b/t/2".into()])
            .await
            .unwrap(),
        ["b/t/1"]
    );
    // Another tenant's key of the same id is untouched.
    assert_eq!(
        s.data_keys(&globex, &["b/t/1".into()]).await.unwrap().len(),
        1
    );
    assert!(
        s.shredded(&globex, &["b/t/1".into()])
            .await
            .unwrap()
            .is_empty()
    );

    let mut destroyed = s.shred(&acme, ShredScope::Tenant, at()).await.unwrap();
    destroyed.sort();
    assert_eq!(destroyed, ["b/t/2", "index", "kek/1", "s/aa"]);
    assert!(
        s.shred(&acme, ShredScope::Tenant, at())
            .await
            .unwrap()
            .is_empty()
    );
    assert!(s.keks(&acme).await.unwrap().is_empty());
    assert_eq!(s.index_key(&acme).await.unwrap(), None);
    assert_eq!(s.shredded(&acme, &["s/aa".into()]).await.unwrap(), ["s/aa"]);
    assert_eq!(s.keks(&globex).await.unwrap().len(), 1);
}

async fn meta_values_are_written_once(s: &dyn KeyStore) {
    assert_eq!(s.meta("root-check").await.unwrap(), None);
    assert!(s.insert_meta("root-check", vec![1, 2]).await.unwrap());
    assert!(!s.insert_meta("root-check", vec![3]).await.unwrap());
    assert_eq!(s.meta("root-check").await.unwrap(), Some(vec![1, 2]));
}

async fn restoring_an_old_snapshot_replays_later_shreds(s: &dyn KeyStore) {
    let (acme, globex) = (tenant("acme"), tenant("globex"));
    s.insert_meta("root-check", vec![7]).await.unwrap();
    for t in [&acme, &globex] {
        s.insert_index_key(t, vec![1]).await.unwrap();
        s.insert_kek(t, kek(1)).await.unwrap();
        s.insert_data_keys(t, vec![dk("b/t/1", 1), dk("s/aa", 1), dk("s/bb", 1)])
            .await
            .unwrap();
    }
    let backup = s.snapshot().await.unwrap();
    assert_eq!(backup.data_keys.len(), 6);
    assert_eq!(backup.keks.len(), 2);
    assert_eq!(backup.meta, vec![("root-check".to_owned(), vec![7])]);

    // After the backup: a subject shredded, globex terminated, acme rotated to KEK 2.
    s.shred(&acme, ShredScope::Keys(vec!["s/aa".into()]), at())
        .await
        .unwrap();
    s.shred(&globex, ShredScope::Tenant, at()).await.unwrap();
    s.insert_kek(&acme, kek(2)).await.unwrap();
    s.rewrap_data_keys(&acme, vec![dk("b/t/1", 2), dk("s/bb", 2)])
        .await
        .unwrap();
    s.destroy_keks_before(&acme, 2, at()).await.unwrap();
    s.insert_data_keys(&acme, vec![dk("s/cc", 2)])
        .await
        .unwrap();

    let report = s.restore(backup).await.unwrap();
    // acme's s/aa and all of globex (index key, KEK, 3 data keys) are destroyed again.
    assert_eq!(report.reshredded, 6);
    let mut ids: Vec<String> = s
        .data_keys(
            &acme,
            &["b/t/1".into(), "s/aa".into(), "s/bb".into(), "s/cc".into()],
        )
        .await
        .unwrap()
        .into_iter()
        .map(|k| k.id)
        .collect();
    ids.sort();
    // The backup's keys under KEK 1 come back with KEK 1 (retired by rotation, not shredded);
    // a key made after the backup is not in it.
    assert_eq!(ids, ["b/t/1", "s/bb"]);
    assert_eq!(s.keks(&acme).await.unwrap(), vec![kek(1)]);
    assert!(s.keks(&globex).await.unwrap().is_empty());
    assert_eq!(s.index_key(&globex).await.unwrap(), None);
    // The merged log still answers "destroyed" for what was shredded.
    assert_eq!(s.shredded(&acme, &["s/aa".into()]).await.unwrap(), ["s/aa"]);
    assert_eq!(
        s.shredded(&globex, &["s/bb".into()]).await.unwrap(),
        ["s/bb"]
    );
    assert_eq!(s.meta("root-check").await.unwrap(), Some(vec![7]));
    // Restoring twice changes nothing more.
    let again = s.snapshot().await.unwrap();
    s.restore(again.clone()).await.unwrap();
    assert_eq!(s.snapshot().await.unwrap(), again);
}

async fn audit_keys_are_log_scoped_and_kept_per_id(s: &dyn KeyStore) {
    assert!(
        s.audit_keys("acme", &ids(&["k1"]))
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        s.insert_audit_key(ak("acme", "2026-01", "k1"))
            .await
            .unwrap()
    );
    // A repeat of an id keeps the key stored first.
    assert!(
        s.insert_audit_key(WrappedAuditKey {
            wrapped: vec![0],
            ..ak("acme", "2026-01", "k1")
        })
        .await
        .unwrap()
    );
    assert!(
        s.insert_audit_key(ak("acme", "2026-02", "k2"))
            .await
            .unwrap()
    );
    // The same id in another log is another key.
    assert!(
        s.insert_audit_key(ak("globex", "2026-01", "k1"))
            .await
            .unwrap()
    );

    assert_eq!(
        audit_keys_by_id(s, "acme", &["k2", "k1", "nope"]).await,
        vec![ak("acme", "2026-01", "k1"), ak("acme", "2026-02", "k2")]
    );
    assert_eq!(
        audit_keys_by_id(s, "globex", &["k1", "k2"]).await,
        vec![ak("globex", "2026-01", "k1")]
    );
    assert!(
        audit_keys_by_id(s, "_system", &["k1", "k2"])
            .await
            .is_empty()
    );
    assert!(audit_keys_by_id(s, "acme", &[]).await.is_empty());
}

async fn oldest_audit_periods_name_each_logs_oldest_live_period(s: &dyn KeyStore) {
    assert!(s.oldest_audit_periods().await.unwrap().is_empty());
    for key in [
        ak("acme", "2026-03", "a3"),
        ak("acme", "2026-01", "a1"),
        ak("acme", "2026-01", "a1b"),
        ak("acme", "2026-02", "a2"),
        ak("globex", "2026-02", "g2"),
        ak("_system", "2025-12", "s0"),
    ] {
        assert!(s.insert_audit_key(key).await.unwrap());
    }
    let pair = |l: &str, p: &str| (l.to_owned(), p.to_owned());
    assert_eq!(
        s.oldest_audit_periods().await.unwrap(),
        vec![
            pair("_system", "2025-12"),
            pair("acme", "2026-01"),
            pair("globex", "2026-02"),
        ]
    );
    s.shred_audit_periods("acme", "2026-01", at())
        .await
        .unwrap();
    s.shred_audit_periods("_system", "2025-12", at())
        .await
        .unwrap();
    // A log whose keys are all destroyed drops out.
    assert_eq!(
        s.oldest_audit_periods().await.unwrap(),
        vec![pair("acme", "2026-02"), pair("globex", "2026-02")]
    );
}

async fn audit_period_shreds_destroy_log_and_are_final(s: &dyn KeyStore) {
    for key in [
        ak("acme", "2025-12", "a0"),
        ak("acme", "2026-01", "a1"),
        ak("acme", "2026-01", "a1b"),
        ak("acme", "2026-02", "a2"),
        ak("acme", "2026-03", "a3"),
        ak("globex", "2026-01", "g1"),
    ] {
        assert!(s.insert_audit_key(key).await.unwrap());
    }
    let all = ["a0", "a1", "a1b", "a2", "a3"];
    assert_eq!(
        s.shred_audit_periods("acme", "2026-02", at())
            .await
            .unwrap(),
        ["2025-12", "2026-01", "2026-02"]
    );
    assert_eq!(
        audit_keys_by_id(s, "acme", &all).await,
        vec![ak("acme", "2026-03", "a3")]
    );
    assert_eq!(
        s.audit_shreds("acme").await.unwrap(),
        vec![
            audit_shred("acme", "2025-12", at()),
            audit_shred("acme", "2026-01", at()),
            audit_shred("acme", "2026-02", at()),
        ]
    );
    // Another log's keys of the same periods are untouched.
    assert_eq!(
        audit_keys_by_id(s, "globex", &["g1"]).await,
        vec![ak("globex", "2026-01", "g1")]
    );
    assert!(s.audit_shreds("globex").await.unwrap().is_empty());

    // A repeat destroys nothing more, and the log keeps the first time.
    let later: Timestamp = "2026-04-01T00:00:00Z".parse().unwrap();
    assert!(
        s.shred_audit_periods("acme", "2026-02", later)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(s.audit_shreds("acme").await.unwrap().len(), 3);
    assert_eq!(s.audit_shreds("acme").await.unwrap()[2].at, at());

    // A destroyed period never gets a key again; a later one still does.
    assert!(
        !s.insert_audit_key(ak("acme", "2026-02", "a2c"))
            .await
            .unwrap()
    );
    assert!(audit_keys_by_id(s, "acme", &["a2c"]).await.is_empty());
    assert!(
        s.insert_audit_key(ak("acme", "2026-04", "a4"))
            .await
            .unwrap()
    );
    assert_eq!(
        audit_keys_by_id(s, "acme", &["a3", "a4"]).await,
        vec![ak("acme", "2026-03", "a3"), ak("acme", "2026-04", "a4")]
    );
    // The period is destroyed for this log only.
    assert!(
        s.insert_audit_key(ak("globex", "2026-02", "g2"))
            .await
            .unwrap()
    );
}

async fn restoring_an_old_snapshot_destroys_shredded_audit_periods_again(s: &dyn KeyStore) {
    let before: Timestamp = "2025-12-31T00:00:00Z".parse().unwrap();
    for key in [
        ak("_system", "2025-11", "s0"),
        ak("_system", "2025-12", "s1"),
        ak("acme", "2026-01", "a1"),
        ak("acme", "2026-02", "a2"),
        ak("globex", "2026-01", "g1"),
    ] {
        assert!(s.insert_audit_key(key).await.unwrap());
    }
    s.shred_audit_periods("_system", "2025-11", before)
        .await
        .unwrap();
    let backup = s.snapshot().await.unwrap();
    assert_eq!(backup.audit_keys.len(), 4);
    assert_eq!(
        backup.audit_shreds,
        vec![audit_shred("_system", "2025-11", before)]
    );

    // After the backup: acme's January destroyed, and a key made for March.
    s.shred_audit_periods("acme", "2026-01", at())
        .await
        .unwrap();
    s.insert_audit_key(ak("acme", "2026-03", "a3"))
        .await
        .unwrap();

    let report = s.restore(backup).await.unwrap();
    assert_eq!(report.reshredded, 1);
    // January stays destroyed; a key made after the backup is not in it.
    assert_eq!(
        audit_keys_by_id(s, "acme", &["a1", "a2", "a3"]).await,
        vec![ak("acme", "2026-02", "a2")]
    );
    assert_eq!(
        audit_keys_by_id(s, "globex", &["g1"]).await,
        vec![ak("globex", "2026-01", "g1")]
    );
    assert_eq!(
        audit_keys_by_id(s, "_system", &["s0", "s1"]).await,
        vec![ak("_system", "2025-12", "s1")]
    );
    // Both shred logs survive the restore, and still refuse keys for their periods.
    assert_eq!(
        s.audit_shreds("acme").await.unwrap(),
        vec![audit_shred("acme", "2026-01", at())]
    );
    assert_eq!(
        s.audit_shreds("_system").await.unwrap(),
        vec![audit_shred("_system", "2025-11", before)]
    );
    assert!(
        !s.insert_audit_key(ak("acme", "2026-01", "a1c"))
            .await
            .unwrap()
    );
    assert!(
        !s.insert_audit_key(ak("_system", "2025-11", "s0c"))
            .await
            .unwrap()
    );
    // Restoring twice changes nothing more.
    let again = s.snapshot().await.unwrap();
    assert_eq!(s.restore(again.clone()).await.unwrap().reshredded, 0);
    assert_eq!(s.snapshot().await.unwrap(), again);
}

async fn no_audit_key_outlives_a_concurrent_shred_of_its_period(s: &dyn KeyStore) {
    for round in 0..20 {
        let period = format!("20{:02}-01", 30 + round);
        assert!(
            s.insert_audit_key(ak("acme", &period, &format!("old{round}")))
                .await
                .unwrap()
        );
        let new = format!("new{round}");
        let (inserted, shredded) = tokio::join!(
            s.insert_audit_key(ak("acme", &period, &new)),
            s.shred_audit_periods("acme", &period, at()),
        );
        inserted.unwrap();
        assert_eq!(shredded.unwrap(), [period.as_str()]);
        // Stored before the shred and destroyed by it, or refused after it: never left behind.
        assert!(
            audit_keys_by_id(s, "acme", &[&new]).await.is_empty(),
            "{period}"
        );
    }
}

#[test]
fn merged_audit_shred_logs_hold_each_period_once_in_order() {
    let (early, late): (Timestamp, Timestamp) = (
        "2026-01-01T00:00:00Z".parse().unwrap(),
        "2026-02-01T00:00:00Z".parse().unwrap(),
    );
    let ours = vec![
        audit_shred("acme", "2026-01", late),
        audit_shred("acme", "2025-12", early),
    ];
    let theirs = vec![
        audit_shred("acme", "2026-01", early),
        audit_shred("_system", "2026-01", late),
        audit_shred("acme", "2025-12", early),
    ];
    let merged = vec![
        audit_shred("_system", "2026-01", late),
        audit_shred("acme", "2025-12", early),
        audit_shred("acme", "2026-01", early),
    ];
    assert_eq!(merge_audit_shreds(&ours, &theirs), merged);
    assert_eq!(merge_audit_shreds(&theirs, &ours), merged);
    assert!(merge_audit_shreds(&[], &[]).is_empty());
}

#[test]
fn prepare_restore_drops_audit_keys_of_destroyed_periods() {
    let acme = tenant("acme");
    let snapshot = KeySnapshot {
        data_keys: vec![(acme.clone(), dk("s/aa", 1)), (acme.clone(), dk("s/bb", 1))],
        audit_keys: vec![
            ak("acme", "2025-12", "a0"),
            ak("acme", "2026-01", "a1"),
            ak("acme", "2026-01", "a1b"),
            ak("acme", "2026-02", "a2"),
            ak("globex", "2026-01", "g1"),
        ],
        audit_shreds: vec![audit_shred("acme", "2025-12", at())],
        ..KeySnapshot::default()
    };
    let current_log = vec![ShredEntry {
        tenant: acme.clone(),
        id: "s/aa".into(),
        at: at(),
    }];
    let current_audit = vec![audit_shred("acme", "2026-01", at())];
    let (restored, report) = prepare_restore(snapshot, &current_log, &current_audit);
    // s/aa, and acme's keys of 2025-12 (from the snapshot's own log) and 2026-01.
    assert_eq!(report.reshredded, 4);
    assert_eq!(report.data_keys, 1);
    assert_eq!(
        restored.audit_keys,
        vec![ak("acme", "2026-02", "a2"), ak("globex", "2026-01", "g1")]
    );
    assert_eq!(
        restored.audit_shreds,
        vec![
            audit_shred("acme", "2025-12", at()),
            audit_shred("acme", "2026-01", at()),
        ]
    );
    assert_eq!(restored.shred_log, current_log);
}

macro_rules! key_store_conformance {
    ($($case:ident),* $(,)?) => {
        mod sqlite_backend {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let dir = tempfile::tempdir().unwrap();
                    let s = super::SqliteKeyStore::open(&dir.path().join("keys.db")).await.unwrap();
                    super::$case(&s).await;
                }
            )*
        }
        mod postgres_backend {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    if !super::testing::postgres_available().await {
                        return;
                    }
                    let schema = super::testing::unique_schema("keys");
                    let s = super::PostgresKeyStore::connect(&super::testing::postgres_url(), &schema)
                        .await
                        .unwrap();
                    super::$case(&s).await;
                    super::testing::drop_schema(&schema).await;
                }
            )*
        }
    };
}

key_store_conformance!(
    first_writer_wins_for_index_keys_and_keks,
    data_keys_are_tenant_scoped_and_never_overwritten,
    rotation_rewraps_then_destroys_old_keks,
    shreds_destroy_log_and_are_idempotent,
    meta_values_are_written_once,
    restoring_an_old_snapshot_replays_later_shreds,
    audit_keys_are_log_scoped_and_kept_per_id,
    oldest_audit_periods_name_each_logs_oldest_live_period,
    audit_period_shreds_destroy_log_and_are_final,
    restoring_an_old_snapshot_destroys_shredded_audit_periods_again,
    no_audit_key_outlives_a_concurrent_shred_of_its_period,
);
