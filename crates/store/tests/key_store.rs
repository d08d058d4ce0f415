//! Key-store conformance: every case runs against the SQLite and the PostgreSQL key store, each
//! in its own file or schema.

use custodian_core::ids::TenantId;
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
);
