//! The SQLite key store: its own file beside the data file (see [`crate::keys`]).

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use custodian_core::ids::TenantId;
use jiff::Timestamp;
use rusqlite::{Connection, OptionalExtension, params};

use super::{Db, db_err, from_us, json_strings, open_blocking, us};
use crate::keys::{
    AuditShred, KeyCounts, KeySnapshot, KeyStore, RestoreReport, ShredEntry, ShredScope,
    TENANT_SHRED, WrappedAuditKey, WrappedDataKey, WrappedKek,
};
use crate::{Result, StoreError};

const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE index_keys (
    tenant_id TEXT NOT NULL PRIMARY KEY,
    wrapped   BLOB NOT NULL
);
CREATE TABLE keks (
    tenant_id     TEXT    NOT NULL,
    version       INTEGER NOT NULL,
    wrapped       BLOB    NOT NULL,
    created_at_us INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, version)
);
CREATE TABLE data_keys (
    tenant_id   TEXT    NOT NULL,
    id          TEXT    NOT NULL,
    kek_version INTEGER NOT NULL,
    wrapped     BLOB    NOT NULL,
    PRIMARY KEY (tenant_id, id)
) WITHOUT ROWID;
CREATE INDEX data_keys_by_kek ON data_keys (tenant_id, kek_version, id);
CREATE TABLE shred_log (
    seq            INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id      TEXT    NOT NULL,
    id             TEXT    NOT NULL,
    shredded_at_us INTEGER NOT NULL
);
CREATE INDEX shred_log_by_id ON shred_log (tenant_id, id);
"#,
    r#"
CREATE TABLE key_meta (
    name  TEXT NOT NULL PRIMARY KEY,
    value BLOB NOT NULL
);
"#,
    r#"
CREATE TABLE audit_keys (
    log_id  TEXT NOT NULL,
    period  TEXT NOT NULL,
    id      TEXT NOT NULL,
    wrapped BLOB NOT NULL,
    PRIMARY KEY (log_id, id)
);
CREATE INDEX audit_keys_by_period ON audit_keys (log_id, period);
CREATE TABLE audit_shreds (
    log_id TEXT    NOT NULL,
    period TEXT    NOT NULL,
    at_us  INTEGER NOT NULL,
    PRIMARY KEY (log_id, period)
);
"#,
];

/// The SQLite key store.
pub struct SqliteKeyStore {
    db: Arc<Db>,
}

impl SqliteKeyStore {
    pub async fn open(path: &Path) -> Result<SqliteKeyStore> {
        let path = path.to_owned();
        open_blocking(move || {
            Ok(SqliteKeyStore {
                db: Arc::new(Db::open(path, MIGRATIONS, false)?),
            })
        })
        .await
    }
}

/// Runs `sql` and maps each row with `row` (which may fail on stored data).
fn select<T>(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
    mut row: impl FnMut(&rusqlite::Row<'_>) -> Result<T>,
) -> Result<Vec<T>> {
    let mut stmt = conn.prepare_cached(sql).map_err(db_err)?;
    let mut rows = stmt.query(params).map_err(db_err)?;
    let mut out = Vec::new();
    while let Some(r) = rows.next().map_err(db_err)? {
        out.push(row(r)?);
    }
    Ok(out)
}

fn select_data_keys(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
) -> Result<Vec<WrappedDataKey>> {
    select(conn, sql, params, |r| {
        Ok(WrappedDataKey {
            id: r.get(0).map_err(db_err)?,
            kek_version: r.get(1).map_err(db_err)?,
            wrapped: r.get(2).map_err(db_err)?,
        })
    })
}

fn read_shred_log(conn: &Connection) -> Result<Vec<ShredEntry>> {
    let mut stmt = conn
        .prepare("SELECT tenant_id, id, shredded_at_us FROM shred_log ORDER BY seq")
        .map_err(db_err)?;
    let rows = stmt
        .query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, i64>(2)?,
            ))
        })
        .map_err(db_err)?;
    rows.map(|r| {
        let (tenant, id, at) = r.map_err(db_err)?;
        Ok(ShredEntry {
            tenant: crate::parse_tenant(tenant)?,
            id,
            at: from_us(at)?,
        })
    })
    .collect()
}

fn select_audit_keys(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
) -> Result<Vec<WrappedAuditKey>> {
    select(conn, sql, params, |r| {
        Ok(WrappedAuditKey {
            log: r.get(0).map_err(db_err)?,
            period: r.get(1).map_err(db_err)?,
            id: r.get(2).map_err(db_err)?,
            wrapped: r.get(3).map_err(db_err)?,
        })
    })
}

fn select_audit_shreds(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
) -> Result<Vec<AuditShred>> {
    select(conn, sql, params, |r| {
        Ok(AuditShred {
            log: r.get(0).map_err(db_err)?,
            period: r.get(1).map_err(db_err)?,
            at: from_us(r.get(2).map_err(db_err)?)?,
        })
    })
}

fn read_audit_shreds(conn: &Connection) -> Result<Vec<AuditShred>> {
    select_audit_shreds(
        conn,
        "SELECT log_id, period, at_us FROM audit_shreds ORDER BY log_id, period",
        [],
    )
}

fn read_snapshot(c: &Connection) -> Result<KeySnapshot> {
    let mut snapshot = KeySnapshot {
        shred_log: read_shred_log(c)?,
        audit_keys: select_audit_keys(
            c,
            "SELECT log_id, period, id, wrapped FROM audit_keys ORDER BY log_id, id",
            [],
        )?,
        audit_shreds: read_audit_shreds(c)?,
        ..KeySnapshot::default()
    };
    let mut stmt = c
        .prepare("SELECT tenant_id, wrapped FROM index_keys ORDER BY tenant_id")
        .map_err(db_err)?;
    let mut rows = stmt.query([]).map_err(db_err)?;
    while let Some(r) = rows.next().map_err(db_err)? {
        let tenant = crate::parse_tenant(r.get(0).map_err(db_err)?)?;
        snapshot
            .index_keys
            .push((tenant, r.get(1).map_err(db_err)?));
    }
    let mut stmt = c
        .prepare("SELECT tenant_id, version, wrapped, created_at_us FROM keks ORDER BY tenant_id, version")
        .map_err(db_err)?;
    let mut rows = stmt.query([]).map_err(db_err)?;
    while let Some(r) = rows.next().map_err(db_err)? {
        let tenant = crate::parse_tenant(r.get(0).map_err(db_err)?)?;
        let kek = WrappedKek {
            version: r.get(1).map_err(db_err)?,
            wrapped: r.get(2).map_err(db_err)?,
            created_at: from_us(r.get(3).map_err(db_err)?)?,
        };
        snapshot.keks.push((tenant, kek));
    }
    let mut stmt = c
        .prepare("SELECT tenant_id, id, kek_version, wrapped FROM data_keys ORDER BY tenant_id, id")
        .map_err(db_err)?;
    let mut rows = stmt.query([]).map_err(db_err)?;
    while let Some(r) = rows.next().map_err(db_err)? {
        let tenant = crate::parse_tenant(r.get(0).map_err(db_err)?)?;
        let key = WrappedDataKey {
            id: r.get(1).map_err(db_err)?,
            kek_version: r.get(2).map_err(db_err)?,
            wrapped: r.get(3).map_err(db_err)?,
        };
        snapshot.data_keys.push((tenant, key));
    }
    let mut stmt = c
        .prepare("SELECT name, value FROM key_meta ORDER BY name")
        .map_err(db_err)?;
    snapshot.meta = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .and_then(|rows| rows.collect())
        .map_err(db_err)?;
    Ok(snapshot)
}

fn write_snapshot(c: &Connection, snapshot: &KeySnapshot) -> Result<()> {
    c.execute_batch(
        "DELETE FROM index_keys; DELETE FROM keks; DELETE FROM data_keys; DELETE FROM shred_log; DELETE FROM key_meta;
         DELETE FROM audit_keys; DELETE FROM audit_shreds;",
    )
    .map_err(db_err)?;
    let mut insert = c
        .prepare("INSERT INTO index_keys (tenant_id, wrapped) VALUES (?1, ?2)")
        .map_err(db_err)?;
    for (tenant, wrapped) in &snapshot.index_keys {
        insert
            .execute(params![tenant.as_str(), wrapped])
            .map_err(db_err)?;
    }
    let mut insert = c
        .prepare(
            "INSERT INTO keks (tenant_id, version, wrapped, created_at_us) VALUES (?1, ?2, ?3, ?4)",
        )
        .map_err(db_err)?;
    for (tenant, k) in &snapshot.keks {
        insert
            .execute(params![
                tenant.as_str(),
                k.version,
                k.wrapped,
                us(k.created_at)
            ])
            .map_err(db_err)?;
    }
    let mut insert = c
        .prepare(
            "INSERT INTO data_keys (tenant_id, id, kek_version, wrapped) VALUES (?1, ?2, ?3, ?4)",
        )
        .map_err(db_err)?;
    for (tenant, k) in &snapshot.data_keys {
        insert
            .execute(params![tenant.as_str(), k.id, k.kek_version, k.wrapped])
            .map_err(db_err)?;
    }
    for e in &snapshot.shred_log {
        log_shred(c, e.tenant.as_str(), &e.id, us(e.at))?;
    }
    let mut insert = c
        .prepare("INSERT INTO key_meta (name, value) VALUES (?1, ?2)")
        .map_err(db_err)?;
    for (name, value) in &snapshot.meta {
        insert.execute(params![name, value]).map_err(db_err)?;
    }
    let mut insert = c
        .prepare("INSERT INTO audit_keys (log_id, period, id, wrapped) VALUES (?1, ?2, ?3, ?4)")
        .map_err(db_err)?;
    for k in &snapshot.audit_keys {
        insert
            .execute(params![k.log, k.period, k.id, k.wrapped])
            .map_err(db_err)?;
    }
    let mut insert = c
        .prepare("INSERT INTO audit_shreds (log_id, period, at_us) VALUES (?1, ?2, ?3)")
        .map_err(db_err)?;
    for e in &snapshot.audit_shreds {
        insert
            .execute(params![e.log, e.period, us(e.at)])
            .map_err(db_err)?;
    }
    Ok(())
}

fn log_shred(conn: &Connection, tenant: &str, id: &str, at: i64) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO shred_log (tenant_id, id, shredded_at_us) VALUES (?1, ?2, ?3)",
    )
    .and_then(|mut s| s.execute(params![tenant, id, at]))
    .map_err(db_err)?;
    Ok(())
}

#[async_trait]
impl KeyStore for SqliteKeyStore {
    fn backend(&self) -> &'static str {
        super::BACKEND
    }

    async fn index_key(&self, tenant: &TenantId) -> Result<Option<Vec<u8>>> {
        let tenant = tenant.as_str().to_owned();
        self.db
            .read(move |c| {
                c.query_row(
                    "SELECT wrapped FROM index_keys WHERE tenant_id = ?1",
                    params![tenant],
                    |r| r.get(0),
                )
                .optional()
                .map_err(db_err)
            })
            .await
    }

    async fn insert_index_key(&self, tenant: &TenantId, wrapped: Vec<u8>) -> Result<bool> {
        let tenant = tenant.as_str().to_owned();
        self.db
            .write(move |c| {
                let n = c
                    .execute(
                        "INSERT OR IGNORE INTO index_keys (tenant_id, wrapped) VALUES (?1, ?2)",
                        params![tenant, wrapped],
                    )
                    .map_err(db_err)?;
                Ok(n == 1)
            })
            .await
    }

    async fn keks(&self, tenant: &TenantId) -> Result<Vec<WrappedKek>> {
        let tenant = tenant.as_str().to_owned();
        self.db
            .read(move |c| {
                let mut stmt = c
                    .prepare_cached(
                        "SELECT version, wrapped, created_at_us FROM keks WHERE tenant_id = ?1 ORDER BY version",
                    )
                    .map_err(db_err)?;
                let rows = stmt
                    .query_map(params![tenant], |r| {
                        Ok((r.get::<_, u32>(0)?, r.get::<_, Vec<u8>>(1)?, r.get::<_, i64>(2)?))
                    })
                    .map_err(db_err)?;
                rows.map(|r| {
                    let (version, wrapped, created) = r.map_err(db_err)?;
                    Ok(WrappedKek {
                        version,
                        wrapped,
                        created_at: from_us(created)?,
                    })
                })
                .collect()
            })
            .await
    }

    async fn insert_kek(&self, tenant: &TenantId, kek: WrappedKek) -> Result<bool> {
        let tenant = tenant.as_str().to_owned();
        self.db
            .write(move |c| {
                let n = c
                    .execute(
                        "INSERT OR IGNORE INTO keks (tenant_id, version, wrapped, created_at_us) VALUES (?1, ?2, ?3, ?4)",
                        params![tenant, kek.version, kek.wrapped, us(kek.created_at)],
                    )
                    .map_err(db_err)?;
                Ok(n == 1)
            })
            .await
    }

    async fn destroy_keks_before(
        &self,
        tenant: &TenantId,
        version: u32,
        at: Timestamp,
    ) -> Result<Vec<u32>> {
        let tenant = tenant.as_str().to_owned();
        self.db
            .write(move |c| {
                let in_use: i64 = c
                    .query_row(
                        "SELECT COUNT(*) FROM data_keys WHERE tenant_id = ?1 AND kek_version < ?2",
                        params![tenant, version],
                        |r| r.get(0),
                    )
                    .map_err(db_err)?;
                if in_use > 0 {
                    return Ok(Vec::new());
                }
                let versions: Vec<u32> = c
                    .prepare_cached(
                        "DELETE FROM keks WHERE tenant_id = ?1 AND version < ?2 RETURNING version",
                    )
                    .and_then(|mut s| {
                        s.query_map(params![tenant, version], |r| r.get(0))?
                            .collect()
                    })
                    .map_err(db_err)?;
                for v in &versions {
                    log_shred(c, &tenant, &format!("kek/{v}"), us(at))?;
                }
                Ok(versions)
            })
            .await
    }

    async fn data_keys(&self, tenant: &TenantId, ids: &[String]) -> Result<Vec<WrappedDataKey>> {
        let tenant = tenant.as_str().to_owned();
        let ids = ids.to_vec();
        self.db
            .read(move |c| {
                select_data_keys(
                    c,
                    "SELECT id, kek_version, wrapped FROM data_keys
                     WHERE tenant_id = ?1 AND id IN (SELECT value FROM json_each(?2))",
                    params![tenant, json_strings(&ids)],
                )
            })
            .await
    }

    async fn insert_data_keys(
        &self,
        tenant: &TenantId,
        keys: Vec<WrappedDataKey>,
    ) -> Result<Vec<String>> {
        let tenant = tenant.as_str().to_owned();
        self.db
            .write(move |c| {
                // In the writing transaction, so no rotation retires the version in between.
                let mut versions: Vec<u32> = keys.iter().map(|k| k.kek_version).collect();
                versions.sort_unstable();
                versions.dedup();
                for version in versions {
                    let live: bool = c
                        .query_row(
                            "SELECT EXISTS (SELECT 1 FROM keks WHERE tenant_id = ?1 AND version = ?2)",
                            params![tenant, version],
                            |r| r.get(0),
                        )
                        .map_err(db_err)?;
                    if !live {
                        return Err(StoreError::KekRetired { version });
                    }
                }
                let mut stmt = c
                    .prepare_cached(
                        "INSERT OR IGNORE INTO data_keys (tenant_id, id, kek_version, wrapped) VALUES (?1, ?2, ?3, ?4)",
                    )
                    .map_err(db_err)?;
                let mut existed = Vec::new();
                for k in keys {
                    let inserted = stmt
                        .execute(params![tenant, k.id, k.kek_version, k.wrapped])
                        .map_err(db_err)?;
                    if inserted == 0 {
                        existed.push(k.id);
                    }
                }
                Ok(existed)
            })
            .await
    }

    async fn data_keys_below(
        &self,
        tenant: &TenantId,
        version: u32,
        after: &str,
        limit: u32,
    ) -> Result<Vec<WrappedDataKey>> {
        let tenant = tenant.as_str().to_owned();
        let after = after.to_owned();
        self.db
            .read(move |c| {
                select_data_keys(
                    c,
                    "SELECT id, kek_version, wrapped FROM data_keys
                     WHERE tenant_id = ?1 AND kek_version < ?2 AND id > ?3 ORDER BY id LIMIT ?4",
                    params![tenant, version, after, limit],
                )
            })
            .await
    }

    async fn rewrap_data_keys(&self, tenant: &TenantId, keys: Vec<WrappedDataKey>) -> Result<()> {
        let tenant = tenant.as_str().to_owned();
        self.db
            .write(move |c| {
                let mut stmt = c
                    .prepare_cached(
                        "UPDATE data_keys SET kek_version = ?3, wrapped = ?4 WHERE tenant_id = ?1 AND id = ?2",
                    )
                    .map_err(db_err)?;
                for k in &keys {
                    stmt.execute(params![tenant, k.id, k.kek_version, k.wrapped])
                        .map_err(db_err)?;
                }
                Ok(())
            })
            .await
    }

    async fn count_data_keys(&self, tenant: &TenantId) -> Result<KeyCounts> {
        let tenant = tenant.as_str().to_owned();
        self.db
            .read(move |c| {
                let mut stmt = c
                    .prepare_cached(
                        "SELECT kek_version, COUNT(*) FROM data_keys WHERE tenant_id = ?1 GROUP BY kek_version ORDER BY kek_version",
                    )
                    .map_err(db_err)?;
                let rows = stmt
                    .query_map(params![tenant], |r| Ok((r.get::<_, u32>(0)?, r.get::<_, i64>(1)? as u64)))
                    .map_err(db_err)?;
                Ok(KeyCounts {
                    by_kek_version: rows.collect::<rusqlite::Result<_>>().map_err(db_err)?,
                })
            })
            .await
    }

    async fn shred(
        &self,
        tenant: &TenantId,
        scope: ShredScope,
        at: Timestamp,
    ) -> Result<Vec<String>> {
        let tenant = tenant.as_str().to_owned();
        self.db
            .write(move |c| {
                let at = us(at);
                match scope {
                    ShredScope::Keys(ids) => {
                        let mut destroyed = Vec::new();
                        let mut delete = c
                            .prepare_cached(
                                "DELETE FROM data_keys WHERE tenant_id = ?1 AND id = ?2",
                            )
                            .map_err(db_err)?;
                        for id in ids {
                            if delete.execute(params![tenant, id]).map_err(db_err)? == 1 {
                                log_shred(c, &tenant, &id, at)?;
                                destroyed.push(id);
                            }
                        }
                        Ok(destroyed)
                    }
                    ShredScope::Tenant => {
                        let mut destroyed: Vec<String> = c
                            .prepare("DELETE FROM data_keys WHERE tenant_id = ?1 RETURNING id")
                            .and_then(|mut s| s.query_map(params![tenant], |r| r.get(0))?.collect())
                            .map_err(db_err)?;
                        let keks: Vec<u32> = c
                            .prepare("DELETE FROM keks WHERE tenant_id = ?1 RETURNING version")
                            .and_then(|mut s| s.query_map(params![tenant], |r| r.get(0))?.collect())
                            .map_err(db_err)?;
                        destroyed.extend(keks.iter().map(|v| format!("kek/{v}")));
                        if c.execute(
                            "DELETE FROM index_keys WHERE tenant_id = ?1",
                            params![tenant],
                        )
                        .map_err(db_err)?
                            == 1
                        {
                            destroyed.push("index".into());
                        }
                        if !destroyed.is_empty() {
                            log_shred(c, &tenant, TENANT_SHRED, at)?;
                        }
                        Ok(destroyed)
                    }
                }
            })
            .await
    }

    async fn shredded(&self, tenant: &TenantId, ids: &[String]) -> Result<Vec<String>> {
        let tenant = tenant.as_str().to_owned();
        let ids = ids.to_vec();
        self.db
            .read(move |c| {
                let mut stmt = c
                    .prepare_cached(
                        "SELECT 1 FROM shred_log WHERE tenant_id = ?1 AND (id = ?2 OR id = ?3) LIMIT 1",
                    )
                    .map_err(db_err)?;
                let mut out = Vec::new();
                for id in ids {
                    if stmt.exists(params![tenant, id, TENANT_SHRED]).map_err(db_err)? {
                        out.push(id);
                    }
                }
                Ok(out)
            })
            .await
    }

    async fn meta(&self, name: &str) -> Result<Option<Vec<u8>>> {
        let name = name.to_owned();
        self.db
            .read(move |c| {
                c.query_row(
                    "SELECT value FROM key_meta WHERE name = ?1",
                    params![name],
                    |r| r.get(0),
                )
                .optional()
                .map_err(db_err)
            })
            .await
    }

    async fn insert_meta(&self, name: &str, value: Vec<u8>) -> Result<bool> {
        let name = name.to_owned();
        self.db
            .write(move |c| {
                let n = c
                    .execute(
                        "INSERT OR IGNORE INTO key_meta (name, value) VALUES (?1, ?2)",
                        params![name, value],
                    )
                    .map_err(db_err)?;
                Ok(n == 1)
            })
            .await
    }

    async fn insert_audit_key(&self, key: WrappedAuditKey) -> Result<bool> {
        self.db
            .write(move |c| {
                // One write on the single writer: no shred lands between check and insert.
                let destroyed = c
                    .prepare_cached("SELECT 1 FROM audit_shreds WHERE log_id = ?1 AND period = ?2")
                    .and_then(|mut s| s.exists(params![key.log, key.period]))
                    .map_err(db_err)?;
                if destroyed {
                    return Ok(false);
                }
                // Ids are random: an existing one is this same key stored before, so it stays.
                c.prepare_cached(
                    "INSERT OR IGNORE INTO audit_keys (log_id, period, id, wrapped) VALUES (?1, ?2, ?3, ?4)",
                )
                .and_then(|mut s| s.execute(params![key.log, key.period, key.id, key.wrapped]))
                .map_err(db_err)?;
                Ok(true)
            })
            .await
    }

    async fn audit_keys(&self, log: &str, ids: &[String]) -> Result<Vec<WrappedAuditKey>> {
        let log = log.to_owned();
        let ids = ids.to_vec();
        self.db
            .read(move |c| {
                select_audit_keys(
                    c,
                    "SELECT log_id, period, id, wrapped FROM audit_keys
                     WHERE log_id = ?1 AND id IN (SELECT value FROM json_each(?2))",
                    params![log, json_strings(&ids)],
                )
            })
            .await
    }

    async fn oldest_audit_periods(&self) -> Result<Vec<(String, String)>> {
        self.db
            .read(|c| {
                let mut stmt = c
                    .prepare_cached(
                        "SELECT log_id, MIN(period) FROM audit_keys GROUP BY log_id ORDER BY log_id",
                    )
                    .map_err(db_err)?;
                stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
                    .and_then(|rows| rows.collect())
                    .map_err(db_err)
            })
            .await
    }

    async fn shred_audit_periods(
        &self,
        log: &str,
        through: &str,
        at: Timestamp,
    ) -> Result<Vec<String>> {
        let log = log.to_owned();
        let through = through.to_owned();
        self.db
            .write(move |c| {
                // `YYYY-MM` periods order as text.
                let periods: Vec<String> = c
                    .prepare_cached(
                        "SELECT DISTINCT period FROM audit_keys WHERE log_id = ?1 AND period <= ?2 ORDER BY period",
                    )
                    .and_then(|mut s| s.query_map(params![log, through], |r| r.get(0))?.collect())
                    .map_err(db_err)?;
                c.prepare_cached("DELETE FROM audit_keys WHERE log_id = ?1 AND period <= ?2")
                    .and_then(|mut s| s.execute(params![log, through]))
                    .map_err(db_err)?;
                let mut insert = c
                    .prepare_cached(
                        "INSERT OR IGNORE INTO audit_shreds (log_id, period, at_us) VALUES (?1, ?2, ?3)",
                    )
                    .map_err(db_err)?;
                for period in &periods {
                    insert
                        .execute(params![log, period, us(at)])
                        .map_err(db_err)?;
                }
                Ok(periods)
            })
            .await
    }

    async fn audit_shreds(&self, log: &str) -> Result<Vec<AuditShred>> {
        let log = log.to_owned();
        self.db
            .read(move |c| {
                select_audit_shreds(
                    c,
                    "SELECT log_id, period, at_us FROM audit_shreds WHERE log_id = ?1 ORDER BY period",
                    params![log],
                )
            })
            .await
    }

    async fn snapshot(&self) -> Result<KeySnapshot> {
        // One read transaction, so the snapshot is consistent under concurrent writes.
        self.db
            .read(|c| {
                c.execute_batch("BEGIN").map_err(db_err)?;
                let snapshot = read_snapshot(c);
                // Ended whatever happened, so the pooled connection is clean for its next use.
                let ended = c.execute_batch("COMMIT").map_err(db_err);
                let snapshot = snapshot?;
                ended.map(|()| snapshot)
            })
            .await
    }

    async fn restore(&self, snapshot: KeySnapshot) -> Result<RestoreReport> {
        self.db
            .write(move |c| {
                let current = read_shred_log(c)?;
                let current_audit = read_audit_shreds(c)?;
                let (snapshot, report) =
                    crate::keys::prepare_restore(snapshot, &current, &current_audit);
                write_snapshot(c, &snapshot)?;
                Ok(report)
            })
            .await
    }
}
