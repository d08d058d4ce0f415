//! The PostgreSQL key store: its own schema, apart from the data's (see [`crate::keys`]).

use async_trait::async_trait;
use custodian_core::ids::TenantId;
use deadpool_postgres::Pool;
use deadpool_postgres::Transaction;
use jiff::Timestamp;
use tokio_postgres::Row;

use super::{connect_pool, db_err, unavailable};
use crate::keys::{
    KeyCounts, KeySnapshot, KeyStore, RestoreReport, ShredEntry, ShredScope, TENANT_SHRED,
    WrappedDataKey, WrappedKek,
};
use crate::{Result, StoreError};

/// Arbitrary, fixed: serialises key-store migrations across nodes.
const MIGRATION_LOCK: i64 = 0x0c05_70d1_a400_0002;

const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE index_keys (
    tenant_id TEXT  NOT NULL PRIMARY KEY,
    wrapped   BYTEA NOT NULL
);
CREATE TABLE keks (
    tenant_id  TEXT        NOT NULL,
    version    INTEGER     NOT NULL,
    wrapped    BYTEA       NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (tenant_id, version)
);
CREATE TABLE data_keys (
    tenant_id   TEXT    NOT NULL,
    id          TEXT    NOT NULL,
    kek_version INTEGER NOT NULL,
    wrapped     BYTEA   NOT NULL,
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX data_keys_by_kek ON data_keys (tenant_id, kek_version, id);
CREATE TABLE shred_log (
    seq         BIGSERIAL   PRIMARY KEY,
    tenant_id   TEXT        NOT NULL,
    id          TEXT        NOT NULL,
    shredded_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX shred_log_by_id ON shred_log (tenant_id, id);
"#,
    r#"
CREATE TABLE key_meta (
    name  TEXT  NOT NULL PRIMARY KEY,
    value BYTEA NOT NULL
);
"#,
];

/// The PostgreSQL key store.
pub struct PostgresKeyStore {
    pool: Pool,
}

impl PostgresKeyStore {
    /// Connects to the key store in `schema` (created if absent).
    pub async fn connect(url: &str, schema: &str) -> Result<PostgresKeyStore> {
        Ok(PostgresKeyStore {
            pool: connect_pool(url, Some(schema), MIGRATIONS, MIGRATION_LOCK).await?,
        })
    }

    async fn client(&self) -> Result<deadpool_postgres::Object> {
        self.pool.get().await.map_err(unavailable)
    }
}

fn data_key(row: &Row) -> WrappedDataKey {
    WrappedDataKey {
        id: row.get(0),
        kek_version: row.get::<_, i32>(1) as u32,
        wrapped: row.get(2),
    }
}

/// Data keys as the three arrays an `UNNEST` takes.
fn columns(keys: &[WrappedDataKey]) -> (Vec<&str>, Vec<i32>, Vec<&[u8]>) {
    (
        keys.iter().map(|k| k.id.as_str()).collect(),
        keys.iter().map(|k| k.kek_version as i32).collect(),
        keys.iter().map(|k| k.wrapped.as_slice()).collect(),
    )
}

async fn log_shred(
    client: &Transaction<'_>,
    tenant: &str,
    ids: &[String],
    at: Timestamp,
) -> Result<()> {
    client
        .execute(
            "INSERT INTO shred_log (tenant_id, id, shredded_at) SELECT $1, UNNEST($2::TEXT[]), $3",
            &[&tenant, &ids, &at],
        )
        .await
        .map_err(db_err)?;
    Ok(())
}

async fn read_shred_log(tx: &Transaction<'_>) -> Result<Vec<ShredEntry>> {
    tx.query(
        "SELECT tenant_id, id, shredded_at FROM shred_log ORDER BY seq",
        &[],
    )
    .await
    .map_err(db_err)?
    .iter()
    .map(|r| {
        Ok(ShredEntry {
            tenant: crate::parse_tenant(r.get(0))?,
            id: r.get(1),
            at: r.get(2),
        })
    })
    .collect()
}

async fn read_snapshot(tx: &Transaction<'_>) -> Result<KeySnapshot> {
    let mut snapshot = KeySnapshot {
        shred_log: read_shred_log(tx).await?,
        ..KeySnapshot::default()
    };
    for r in tx
        .query(
            "SELECT tenant_id, wrapped FROM index_keys ORDER BY tenant_id",
            &[],
        )
        .await
        .map_err(db_err)?
    {
        snapshot
            .index_keys
            .push((crate::parse_tenant(r.get(0))?, r.get(1)));
    }
    for r in tx
        .query(
            "SELECT tenant_id, version, wrapped, created_at FROM keks ORDER BY tenant_id, version",
            &[],
        )
        .await
        .map_err(db_err)?
    {
        let kek = WrappedKek {
            version: r.get::<_, i32>(1) as u32,
            wrapped: r.get(2),
            created_at: r.get(3),
        };
        snapshot.keks.push((crate::parse_tenant(r.get(0))?, kek));
    }
    for r in tx
        .query(
            "SELECT tenant_id, id, kek_version, wrapped FROM data_keys ORDER BY tenant_id, id",
            &[],
        )
        .await
        .map_err(db_err)?
    {
        let key = WrappedDataKey {
            id: r.get(1),
            kek_version: r.get::<_, i32>(2) as u32,
            wrapped: r.get(3),
        };
        snapshot
            .data_keys
            .push((crate::parse_tenant(r.get(0))?, key));
    }
    snapshot.meta = tx
        .query("SELECT name, value FROM key_meta ORDER BY name", &[])
        .await
        .map_err(db_err)?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    Ok(snapshot)
}

async fn write_snapshot(tx: &Transaction<'_>, snapshot: &KeySnapshot) -> Result<()> {
    tx.batch_execute(
        "DELETE FROM index_keys; DELETE FROM keks; DELETE FROM data_keys; DELETE FROM shred_log; DELETE FROM key_meta;",
    )
    .await
    .map_err(db_err)?;
    for (tenant, wrapped) in &snapshot.index_keys {
        tx.execute(
            "INSERT INTO index_keys (tenant_id, wrapped) VALUES ($1, $2)",
            &[&tenant.as_str(), wrapped],
        )
        .await
        .map_err(db_err)?;
    }
    for (tenant, k) in &snapshot.keks {
        tx.execute(
            "INSERT INTO keks (tenant_id, version, wrapped, created_at) VALUES ($1, $2, $3, $4)",
            &[
                &tenant.as_str(),
                &(k.version as i32),
                &k.wrapped,
                &k.created_at,
            ],
        )
        .await
        .map_err(db_err)?;
    }
    // Data keys can number millions: one UNNEST per tenant's run of keys.
    let mut rest = snapshot.data_keys.as_slice();
    while let Some((tenant, _)) = rest.first() {
        let n = rest.iter().take_while(|(t, _)| t == tenant).count();
        let keys: Vec<WrappedDataKey> = rest[..n].iter().map(|(_, k)| k.clone()).collect();
        let (ids, versions, wrapped) = columns(&keys);
        tx.execute(
            "INSERT INTO data_keys (tenant_id, id, kek_version, wrapped)
             SELECT $1, * FROM UNNEST($2::TEXT[], $3::INTEGER[], $4::BYTEA[])",
            &[&tenant.as_str(), &ids, &versions, &wrapped],
        )
        .await
        .map_err(db_err)?;
        rest = &rest[n..];
    }
    // The log can be long: one statement, in order, so `seq` keeps the log's order.
    let tenants: Vec<&str> = snapshot
        .shred_log
        .iter()
        .map(|e| e.tenant.as_str())
        .collect();
    let ids: Vec<&str> = snapshot.shred_log.iter().map(|e| e.id.as_str()).collect();
    let ats: Vec<Timestamp> = snapshot.shred_log.iter().map(|e| e.at).collect();
    tx.execute(
        "INSERT INTO shred_log (tenant_id, id, shredded_at)
         SELECT t, i, a FROM UNNEST($1::TEXT[], $2::TEXT[], $3::TIMESTAMPTZ[])
         WITH ORDINALITY AS l(t, i, a, n) ORDER BY n",
        &[&tenants, &ids, &ats],
    )
    .await
    .map_err(db_err)?;
    for (name, value) in &snapshot.meta {
        tx.execute(
            "INSERT INTO key_meta (name, value) VALUES ($1, $2)",
            &[name, value],
        )
        .await
        .map_err(db_err)?;
    }
    Ok(())
}

#[async_trait]
impl KeyStore for PostgresKeyStore {
    fn backend(&self) -> &'static str {
        super::BACKEND
    }

    async fn index_key(&self, tenant: &TenantId) -> Result<Option<Vec<u8>>> {
        let row = self
            .client()
            .await?
            .query_opt(
                "SELECT wrapped FROM index_keys WHERE tenant_id = $1",
                &[&tenant.as_str()],
            )
            .await
            .map_err(db_err)?;
        Ok(row.map(|r| r.get(0)))
    }

    async fn insert_index_key(&self, tenant: &TenantId, wrapped: Vec<u8>) -> Result<bool> {
        let n = self
            .client()
            .await?
            .execute(
                "INSERT INTO index_keys (tenant_id, wrapped) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                &[&tenant.as_str(), &wrapped],
            )
            .await
            .map_err(db_err)?;
        Ok(n == 1)
    }

    async fn keks(&self, tenant: &TenantId) -> Result<Vec<WrappedKek>> {
        let rows = self
            .client()
            .await?
            .query(
                "SELECT version, wrapped, created_at FROM keks WHERE tenant_id = $1 ORDER BY version",
                &[&tenant.as_str()],
            )
            .await
            .map_err(db_err)?;
        Ok(rows
            .iter()
            .map(|r| WrappedKek {
                version: r.get::<_, i32>(0) as u32,
                wrapped: r.get(1),
                created_at: r.get(2),
            })
            .collect())
    }

    async fn insert_kek(&self, tenant: &TenantId, kek: WrappedKek) -> Result<bool> {
        let n = self
            .client()
            .await?
            .execute(
                "INSERT INTO keks (tenant_id, version, wrapped, created_at) VALUES ($1, $2, $3, $4)
                 ON CONFLICT DO NOTHING",
                &[
                    &tenant.as_str(),
                    &(kek.version as i32),
                    &kek.wrapped,
                    &kek.created_at,
                ],
            )
            .await
            .map_err(db_err)?;
        Ok(n == 1)
    }

    async fn destroy_keks_before(
        &self,
        tenant: &TenantId,
        version: u32,
        at: Timestamp,
    ) -> Result<Vec<u32>> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db_err)?;
        let tenant = tenant.as_str();
        let version = version as i32;
        // Locks the tenant's KEK rows so a concurrent rewrap cannot slip an old-version key in.
        tx.execute(
            "SELECT 1 FROM keks WHERE tenant_id = $1 FOR UPDATE",
            &[&tenant],
        )
        .await
        .map_err(db_err)?;
        let in_use: i64 = tx
            .query_one(
                "SELECT COUNT(*) FROM data_keys WHERE tenant_id = $1 AND kek_version < $2",
                &[&tenant, &version],
            )
            .await
            .map_err(db_err)?
            .get(0);
        if in_use > 0 {
            return Ok(Vec::new());
        }
        let versions: Vec<u32> = tx
            .query(
                "DELETE FROM keks WHERE tenant_id = $1 AND version < $2 RETURNING version",
                &[&tenant, &version],
            )
            .await
            .map_err(db_err)?
            .iter()
            .map(|r| r.get::<_, i32>(0) as u32)
            .collect();
        let ids: Vec<String> = versions.iter().map(|v| format!("kek/{v}")).collect();
        log_shred(&tx, tenant, &ids, at).await?;
        tx.commit().await.map_err(db_err)?;
        Ok(versions)
    }

    async fn data_keys(&self, tenant: &TenantId, ids: &[String]) -> Result<Vec<WrappedDataKey>> {
        let rows = self
            .client()
            .await?
            .query(
                "SELECT id, kek_version, wrapped FROM data_keys WHERE tenant_id = $1 AND id = ANY($2)",
                &[&tenant.as_str(), &ids],
            )
            .await
            .map_err(db_err)?;
        Ok(rows.iter().map(data_key).collect())
    }

    async fn insert_data_keys(
        &self,
        tenant: &TenantId,
        keys: Vec<WrappedDataKey>,
    ) -> Result<Vec<String>> {
        let (ids, versions, wrapped) = columns(&keys);
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db_err)?;
        // FOR SHARE waits for a rotation's destroy (FOR UPDATE) and keeps it from retiring
        // these versions until this insert commits; it then finds the new keys and rewraps.
        let mut wanted: Vec<i32> = versions.clone();
        wanted.sort_unstable();
        wanted.dedup();
        let live: Vec<i32> = tx
            .query(
                "SELECT version FROM keks WHERE tenant_id = $1 AND version = ANY($2) FOR SHARE",
                &[&tenant.as_str(), &wanted],
            )
            .await
            .map_err(db_err)?
            .iter()
            .map(|r| r.get(0))
            .collect();
        if let Some(version) = wanted.iter().find(|v| !live.contains(v)) {
            return Err(StoreError::KekRetired {
                version: *version as u32,
            });
        }
        let inserted: std::collections::HashSet<String> = tx
            .query(
                "INSERT INTO data_keys (tenant_id, id, kek_version, wrapped)
                 SELECT $1, * FROM UNNEST($2::TEXT[], $3::INTEGER[], $4::BYTEA[])
                 ON CONFLICT DO NOTHING RETURNING id",
                &[&tenant.as_str(), &ids, &versions, &wrapped],
            )
            .await
            .map_err(db_err)?
            .iter()
            .map(|r| r.get(0))
            .collect();
        tx.commit().await.map_err(db_err)?;
        Ok(keys
            .into_iter()
            .map(|k| k.id)
            .filter(|id| !inserted.contains(id))
            .collect())
    }

    async fn data_keys_below(
        &self,
        tenant: &TenantId,
        version: u32,
        after: &str,
        limit: u32,
    ) -> Result<Vec<WrappedDataKey>> {
        let rows = self
            .client()
            .await?
            .query(
                "SELECT id, kek_version, wrapped FROM data_keys
                 WHERE tenant_id = $1 AND kek_version < $2 AND id > $3 ORDER BY id LIMIT $4",
                &[
                    &tenant.as_str(),
                    &(version as i32),
                    &after,
                    &i64::from(limit),
                ],
            )
            .await
            .map_err(db_err)?;
        Ok(rows.iter().map(data_key).collect())
    }

    async fn rewrap_data_keys(&self, tenant: &TenantId, keys: Vec<WrappedDataKey>) -> Result<()> {
        let (ids, versions, wrapped) = columns(&keys);
        self.client()
            .await?
            .execute(
                "UPDATE data_keys d SET kek_version = n.v, wrapped = n.w
                 FROM UNNEST($2::TEXT[], $3::INTEGER[], $4::BYTEA[]) AS n(id, v, w)
                 WHERE d.tenant_id = $1 AND d.id = n.id",
                &[&tenant.as_str(), &ids, &versions, &wrapped],
            )
            .await
            .map_err(db_err)?;
        Ok(())
    }

    async fn count_data_keys(&self, tenant: &TenantId) -> Result<KeyCounts> {
        let rows = self
            .client()
            .await?
            .query(
                "SELECT kek_version, COUNT(*) FROM data_keys WHERE tenant_id = $1
                 GROUP BY kek_version ORDER BY kek_version",
                &[&tenant.as_str()],
            )
            .await
            .map_err(db_err)?;
        Ok(KeyCounts {
            by_kek_version: rows
                .iter()
                .map(|r| (r.get::<_, i32>(0) as u32, r.get::<_, i64>(1) as u64))
                .collect(),
        })
    }

    async fn shred(
        &self,
        tenant: &TenantId,
        scope: ShredScope,
        at: Timestamp,
    ) -> Result<Vec<String>> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db_err)?;
        let tenant = tenant.as_str();
        let destroyed: Vec<String> = match scope {
            ShredScope::Keys(ids) => {
                let destroyed: Vec<String> = tx
                    .query(
                        "DELETE FROM data_keys WHERE tenant_id = $1 AND id = ANY($2) RETURNING id",
                        &[&tenant, &ids],
                    )
                    .await
                    .map_err(db_err)?
                    .iter()
                    .map(|r| r.get(0))
                    .collect();
                log_shred(&tx, tenant, &destroyed, at).await?;
                destroyed
            }
            ShredScope::Tenant => {
                let mut destroyed: Vec<String> = tx
                    .query(
                        "DELETE FROM data_keys WHERE tenant_id = $1 RETURNING id",
                        &[&tenant],
                    )
                    .await
                    .map_err(db_err)?
                    .iter()
                    .map(|r| r.get(0))
                    .collect();
                for r in tx
                    .query(
                        "DELETE FROM keks WHERE tenant_id = $1 RETURNING version",
                        &[&tenant],
                    )
                    .await
                    .map_err(db_err)?
                {
                    destroyed.push(format!("kek/{}", r.get::<_, i32>(0)));
                }
                if tx
                    .execute("DELETE FROM index_keys WHERE tenant_id = $1", &[&tenant])
                    .await
                    .map_err(db_err)?
                    == 1
                {
                    destroyed.push("index".into());
                }
                if !destroyed.is_empty() {
                    log_shred(&tx, tenant, &[TENANT_SHRED.to_owned()], at).await?;
                }
                destroyed
            }
        };
        tx.commit().await.map_err(db_err)?;
        Ok(destroyed)
    }

    async fn shredded(&self, tenant: &TenantId, ids: &[String]) -> Result<Vec<String>> {
        let rows = self
            .client()
            .await?
            .query(
                "SELECT i FROM UNNEST($2::TEXT[]) AS i
                 WHERE EXISTS (SELECT 1 FROM shred_log s WHERE s.tenant_id = $1 AND (s.id = i OR s.id = $3))",
                &[&tenant.as_str(), &ids, &TENANT_SHRED],
            )
            .await
            .map_err(db_err)?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    async fn meta(&self, name: &str) -> Result<Option<Vec<u8>>> {
        let row = self
            .client()
            .await?
            .query_opt("SELECT value FROM key_meta WHERE name = $1", &[&name])
            .await
            .map_err(db_err)?;
        Ok(row.map(|r| r.get(0)))
    }

    async fn insert_meta(&self, name: &str, value: Vec<u8>) -> Result<bool> {
        let n = self
            .client()
            .await?
            .execute(
                "INSERT INTO key_meta (name, value) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                &[&name, &value],
            )
            .await
            .map_err(db_err)?;
        Ok(n == 1)
    }

    async fn snapshot(&self) -> Result<KeySnapshot> {
        let mut client = self.client().await?;
        let tx = client
            .build_transaction()
            .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await
            .map_err(db_err)?;
        let snapshot = read_snapshot(&tx).await?;
        tx.commit().await.map_err(db_err)?;
        Ok(snapshot)
    }

    async fn restore(&self, snapshot: KeySnapshot) -> Result<RestoreReport> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db_err)?;
        // No shred may land between reading the log and replacing the store.
        tx.batch_execute(
            "LOCK TABLE shred_log, data_keys, keks, index_keys, key_meta IN EXCLUSIVE MODE",
        )
        .await
        .map_err(db_err)?;
        let current = read_shred_log(&tx).await?;
        let (snapshot, report) = crate::keys::prepare_restore(snapshot, &current);
        write_snapshot(&tx, &snapshot).await?;
        tx.commit().await.map_err(db_err)?;
        Ok(report)
    }
}
