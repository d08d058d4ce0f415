//! The PostgreSQL key store: its own schema, apart from the data's (see [`crate::keys`]).

use async_trait::async_trait;
use custodian_core::ids::TenantId;
use deadpool_postgres::Pool;
use deadpool_postgres::Transaction;
use jiff::Timestamp;
use tokio_postgres::Row;

use super::{connect_pool, db_err, unavailable};
use crate::keys::{
    AuditShred, KeyCounts, KeySnapshot, KeyStore, RestoreReport, ShredEntry, ShredScope,
    TENANT_SHRED, WrappedAuditKey, WrappedDataKey, WrappedKek,
};
use crate::{Result, StoreError};

/// Arbitrary, fixed: serialises key-store migrations across nodes.
const MIGRATION_LOCK: i64 = 0x0c05_70d1_a400_0002;

/// Arbitrary, fixed: the first key of the two-key advisory lock (the second is the log's hash)
/// that serialises storing and destroying one audit log's period keys. Two-key advisory locks
/// are a space apart from the one-key locks above.
const AUDIT_LOG_LOCK: i32 = 0x0c05_a0d1;

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
    // Byte order, as on SQLite, whatever the database's collation: periods compare as text,
    // and both backends list logs and keys alike.
    r#"
CREATE TABLE audit_keys (
    log_id  TEXT COLLATE "C" NOT NULL,
    period  TEXT COLLATE "C" NOT NULL,
    id      TEXT COLLATE "C" NOT NULL,
    wrapped BYTEA            NOT NULL,
    PRIMARY KEY (log_id, id)
);
CREATE INDEX audit_keys_by_period ON audit_keys (log_id, period);
CREATE TABLE audit_shreds (
    log_id      TEXT COLLATE "C" NOT NULL,
    period      TEXT COLLATE "C" NOT NULL,
    shredded_at TIMESTAMPTZ      NOT NULL,
    PRIMARY KEY (log_id, period)
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

fn audit_key(row: &Row) -> WrappedAuditKey {
    WrappedAuditKey {
        log: row.get(0),
        period: row.get(1),
        id: row.get(2),
        wrapped: row.get(3),
    }
}

fn audit_shred(row: &Row) -> AuditShred {
    AuditShred {
        log: row.get(0),
        period: row.get(1),
        at: row.get(2),
    }
}

async fn read_audit_shreds(tx: &Transaction<'_>) -> Result<Vec<AuditShred>> {
    Ok(tx
        .query(
            "SELECT log_id, period, shredded_at FROM audit_shreds ORDER BY log_id, period",
            &[],
        )
        .await
        .map_err(db_err)?
        .iter()
        .map(audit_shred)
        .collect())
}

/// Holds, until the transaction ends, the lock that orders this log's audit key writes.
async fn lock_audit_log(tx: &Transaction<'_>, log: &str) -> Result<()> {
    tx.execute(
        "SELECT pg_advisory_xact_lock($1, hashtext($2))",
        &[&AUDIT_LOG_LOCK, &log],
    )
    .await
    .map_err(db_err)?;
    Ok(())
}

async fn read_snapshot(tx: &Transaction<'_>) -> Result<KeySnapshot> {
    let mut snapshot = KeySnapshot {
        shred_log: read_shred_log(tx).await?,
        audit_shreds: read_audit_shreds(tx).await?,
        ..KeySnapshot::default()
    };
    snapshot.audit_keys = tx
        .query(
            "SELECT log_id, period, id, wrapped FROM audit_keys ORDER BY log_id, id",
            &[],
        )
        .await
        .map_err(db_err)?
        .iter()
        .map(audit_key)
        .collect();
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
        "DELETE FROM index_keys; DELETE FROM keks; DELETE FROM data_keys; DELETE FROM shred_log; DELETE FROM key_meta;
         DELETE FROM audit_keys; DELETE FROM audit_shreds;",
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
    let logs: Vec<&str> = snapshot.audit_keys.iter().map(|k| k.log.as_str()).collect();
    let periods: Vec<&str> = snapshot
        .audit_keys
        .iter()
        .map(|k| k.period.as_str())
        .collect();
    let ids: Vec<&str> = snapshot.audit_keys.iter().map(|k| k.id.as_str()).collect();
    let wrapped: Vec<&[u8]> = snapshot
        .audit_keys
        .iter()
        .map(|k| k.wrapped.as_slice())
        .collect();
    tx.execute(
        "INSERT INTO audit_keys (log_id, period, id, wrapped)
         SELECT * FROM UNNEST($1::TEXT[], $2::TEXT[], $3::TEXT[], $4::BYTEA[])",
        &[&logs, &periods, &ids, &wrapped],
    )
    .await
    .map_err(db_err)?;
    let logs: Vec<&str> = snapshot
        .audit_shreds
        .iter()
        .map(|e| e.log.as_str())
        .collect();
    let periods: Vec<&str> = snapshot
        .audit_shreds
        .iter()
        .map(|e| e.period.as_str())
        .collect();
    let ats: Vec<Timestamp> = snapshot.audit_shreds.iter().map(|e| e.at).collect();
    tx.execute(
        "INSERT INTO audit_shreds (log_id, period, shredded_at)
         SELECT * FROM UNNEST($1::TEXT[], $2::TEXT[], $3::TIMESTAMPTZ[])",
        &[&logs, &periods, &ats],
    )
    .await
    .map_err(db_err)?;
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

    async fn insert_audit_key(&self, key: WrappedAuditKey) -> Result<bool> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db_err)?;
        // The log's advisory lock waits out a concurrent shred, so the check below sees it.
        lock_audit_log(&tx, &key.log).await?;
        let destroyed = tx
            .query_opt(
                "SELECT 1 FROM audit_shreds WHERE log_id = $1 AND period = $2",
                &[&key.log, &key.period],
            )
            .await
            .map_err(db_err)?
            .is_some();
        if destroyed {
            return Ok(false);
        }
        // Ids are random: an existing one is this same key stored before, so it stays.
        tx.execute(
            "INSERT INTO audit_keys (log_id, period, id, wrapped) VALUES ($1, $2, $3, $4)
             ON CONFLICT DO NOTHING",
            &[&key.log, &key.period, &key.id, &key.wrapped],
        )
        .await
        .map_err(db_err)?;
        tx.commit().await.map_err(db_err)?;
        Ok(true)
    }

    async fn audit_keys(&self, log: &str, ids: &[String]) -> Result<Vec<WrappedAuditKey>> {
        let rows = self
            .client()
            .await?
            .query(
                "SELECT log_id, period, id, wrapped FROM audit_keys WHERE log_id = $1 AND id = ANY($2)",
                &[&log, &ids],
            )
            .await
            .map_err(db_err)?;
        Ok(rows.iter().map(audit_key).collect())
    }

    async fn oldest_audit_periods(&self) -> Result<Vec<(String, String)>> {
        let rows = self
            .client()
            .await?
            .query(
                "SELECT log_id, MIN(period) FROM audit_keys GROUP BY log_id ORDER BY log_id",
                &[],
            )
            .await
            .map_err(db_err)?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    async fn shred_audit_periods(
        &self,
        log: &str,
        through: &str,
        at: Timestamp,
    ) -> Result<Vec<String>> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db_err)?;
        lock_audit_log(&tx, log).await?;
        let mut periods: Vec<String> = tx
            .query(
                "DELETE FROM audit_keys WHERE log_id = $1 AND period <= $2 RETURNING period",
                &[&log, &through],
            )
            .await
            .map_err(db_err)?
            .iter()
            .map(|r| r.get(0))
            .collect();
        periods.sort_unstable();
        periods.dedup();
        tx.execute(
            "INSERT INTO audit_shreds (log_id, period, shredded_at)
             SELECT $1, UNNEST($2::TEXT[]), $3 ON CONFLICT DO NOTHING",
            &[&log, &periods, &at],
        )
        .await
        .map_err(db_err)?;
        tx.commit().await.map_err(db_err)?;
        Ok(periods)
    }

    async fn audit_shreds(&self, log: &str) -> Result<Vec<AuditShred>> {
        let rows = self
            .client()
            .await?
            .query(
                "SELECT log_id, period, shredded_at FROM audit_shreds WHERE log_id = $1 ORDER BY period",
                &[&log],
            )
            .await
            .map_err(db_err)?;
        Ok(rows.iter().map(audit_shred).collect())
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
            "LOCK TABLE shred_log, data_keys, keks, index_keys, key_meta, audit_keys, audit_shreds
             IN EXCLUSIVE MODE",
        )
        .await
        .map_err(db_err)?;
        let current = read_shred_log(&tx).await?;
        let current_audit = read_audit_shreds(&tx).await?;
        let (snapshot, report) = crate::keys::prepare_restore(snapshot, &current, &current_audit);
        write_snapshot(&tx, &snapshot).await?;
        tx.commit().await.map_err(db_err)?;
        Ok(report)
    }
}
