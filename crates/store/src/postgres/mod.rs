//! The PostgreSQL backend, for deployments beyond one machine: any number of custodian nodes in
//! front of one database. Batches are written with one `INSERT … SELECT FROM UNNEST(…)` per
//! table, so a thousand records cost two statements. Migrations run at start under an advisory
//! lock, so nodes starting together never race.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use custodian_core::ids::{RecordId, TenantId};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use jiff::Timestamp;
use tokio_postgres::{GenericClient, NoTls, Row, Transaction};

use crate::{
    AuditEntry, AuditLog, IdempotentResponse, InsertOutcome, Result, Store, StoreError,
    StoredRecord, TokenRow,
};

mod grants;
mod keys;
mod retention;
mod subjects;

pub use keys::PostgresKeyStore;

const BACKEND: &str = "postgres";
/// Arbitrary, fixed: the advisory lock that serialises migrations across nodes.
const MIGRATION_LOCK: i64 = 0x0c05_70d1_a400_0001;
/// Arbitrary, fixed (and apart from the key store's `…0002`): the advisory lock that
/// serialises destructions and hold placements across nodes. Advisory locks belong to the
/// database, not the schema, so deployments in schemas of one database share it: they only
/// wait for each other, never miss a lock.
const DESTRUCTION_LOCK: i64 = 0x0c05_70d1_a400_0003;

const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE records (
    tenant_id     TEXT        NOT NULL,
    id            TEXT        NOT NULL,
    data_type     TEXT        NOT NULL,
    class         SMALLINT    NOT NULL,
    event_time    TIMESTAMPTZ NOT NULL,
    ingest_time   TIMESTAMPTZ NOT NULL,
    expires_at    TIMESTAMPTZ,
    pending_event TEXT,
    key_version   INTEGER     NOT NULL,
    sealed        BYTEA       NOT NULL,
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX records_by_expiry ON records (tenant_id, expires_at);
CREATE TABLE record_subjects (
    tenant_id TEXT  NOT NULL,
    subject   BYTEA NOT NULL,
    record_id TEXT  NOT NULL,
    PRIMARY KEY (tenant_id, subject, record_id)
);
CREATE INDEX record_subjects_by_record ON record_subjects (tenant_id, record_id);
CREATE TABLE tenant_keys (
    tenant_id  TEXT        NOT NULL,
    version    INTEGER     NOT NULL,
    wrapped    BYTEA       NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (tenant_id, version)
);
CREATE TABLE idempotency (
    tenant_id    TEXT    NOT NULL,
    key          TEXT    NOT NULL,
    request_hash BYTEA   NOT NULL,
    status       INTEGER NOT NULL,
    body         BYTEA   NOT NULL,
    PRIMARY KEY (tenant_id, key)
);
CREATE TABLE api_tokens (
    id           TEXT        NOT NULL PRIMARY KEY,
    tenant_id    TEXT        NOT NULL,
    role         TEXT        NOT NULL,
    secret_hash  BYTEA       NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL,
    expires_at   TIMESTAMPTZ,
    revoked_at   TIMESTAMPTZ,
    last_used_at TIMESTAMPTZ
);
CREATE INDEX api_tokens_by_tenant ON api_tokens (tenant_id, id);
"#,
    r#"
CREATE TABLE audit_heads (
    log_id TEXT   NOT NULL PRIMARY KEY,
    size   BIGINT NOT NULL
);
CREATE TABLE audit_entries (
    log_id TEXT   NOT NULL,
    idx    BIGINT NOT NULL,
    body   BYTEA  NOT NULL,
    PRIMARY KEY (log_id, idx)
);
CREATE TABLE audit_nodes (
    log_id TEXT     NOT NULL,
    level  SMALLINT NOT NULL,
    idx    BIGINT   NOT NULL,
    hash   BYTEA    NOT NULL,
    PRIMARY KEY (log_id, level, idx)
);
CREATE TABLE system_secrets (
    name    TEXT  NOT NULL PRIMARY KEY,
    wrapped BYTEA NOT NULL
);
-- The log is append-only for everyone who goes through SQL, administrators included.
CREATE FUNCTION audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the audit log is append-only';
END
$$;
CREATE TRIGGER audit_entries_append_only BEFORE UPDATE OR DELETE ON audit_entries
    FOR EACH ROW EXECUTE FUNCTION audit_append_only();
CREATE TRIGGER audit_entries_no_truncate BEFORE TRUNCATE ON audit_entries
    FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only();
CREATE TRIGGER audit_nodes_append_only BEFORE UPDATE OR DELETE ON audit_nodes
    FOR EACH ROW EXECUTE FUNCTION audit_append_only();
CREATE TRIGGER audit_nodes_no_truncate BEFORE TRUNCATE ON audit_nodes
    FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only();
"#,
    r#"
-- Keys moved to the key store, apart from the data; records name the data keys that seal them.
DROP TABLE tenant_keys;
ALTER TABLE records DROP COLUMN key_version;
ALTER TABLE records ADD COLUMN key_bucket TEXT NOT NULL DEFAULT '';
ALTER TABLE records ADD COLUMN key_subjects BYTEA NOT NULL DEFAULT ''::bytea;
"#,
    r#"
-- Retention: records found and purged by expiry bucket, legal holds, deletion certificates.
CREATE INDEX records_by_bucket ON records (tenant_id, data_type, key_bucket, expires_at);
CREATE TABLE holds (
    tenant_id   TEXT        NOT NULL,
    id          TEXT        NOT NULL,
    scope_kind  TEXT        NOT NULL,
    scope_value BYTEA       NOT NULL,
    case_id     TEXT        NOT NULL,
    reason      TEXT        NOT NULL,
    placed_by   TEXT        NOT NULL,
    placed_at   TIMESTAMPTZ NOT NULL,
    released_by TEXT,
    released_at TIMESTAMPTZ,
    PRIMARY KEY (tenant_id, id)
);
CREATE TABLE deletion_certificates (
    tenant_id TEXT        NOT NULL,
    id        TEXT        NOT NULL,
    scope     TEXT        NOT NULL,
    issued_at TIMESTAMPTZ NOT NULL,
    note      TEXT        NOT NULL,
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, scope)
);
"#,
    r#"
-- Events that start after_event clocks, tenant terminations, two-step deletions.
-- A record waiting for an event names the reference (e.g. a ticket id) it waits on. The
-- trailing id hands a reference's records over in id order, a page at a time, without a sort.
ALTER TABLE records ADD COLUMN event_ref TEXT;
CREATE INDEX records_by_pending_event ON records (tenant_id, pending_event, event_ref, id)
    WHERE pending_event IS NOT NULL;
CREATE TABLE retention_events (
    tenant_id   TEXT        NOT NULL,
    event       TEXT        NOT NULL,
    reference   TEXT        NOT NULL,
    at          TIMESTAMPTZ NOT NULL,
    recorded_by TEXT        NOT NULL,
    PRIMARY KEY (tenant_id, event, reference)
);
CREATE TABLE tenant_terminations (
    tenant_id      TEXT        NOT NULL PRIMARY KEY,
    requested_by   TEXT        NOT NULL,
    reason         TEXT        NOT NULL,
    terminated_at  TIMESTAMPTZ NOT NULL,
    purge_at       TIMESTAMPTZ NOT NULL,
    purged_at      TIMESTAMPTZ,
    certificate_id TEXT
);
CREATE TABLE scheduled_deletions (
    tenant_id      TEXT        NOT NULL,
    id             TEXT        NOT NULL,
    target_kind    TEXT        NOT NULL CHECK (target_kind IN ('record', 'subject')),
    target         BYTEA       NOT NULL,
    reason         TEXT        NOT NULL,
    requested_by   TEXT        NOT NULL,
    requested_at   TIMESTAMPTZ NOT NULL,
    due_at         TIMESTAMPTZ NOT NULL,
    cancelled_by   TEXT,
    cancelled_at   TIMESTAMPTZ,
    done_at        TIMESTAMPTZ,
    certificate_id TEXT,
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX scheduled_deletions_due ON scheduled_deletions (due_at)
    WHERE cancelled_at IS NULL AND done_at IS NULL;
"#,
    r#"
-- The retention each tenant's data type was last applied with, so a policy change is found
-- and applied to stored records once.
CREATE TABLE applied_retentions (
    tenant_id TEXT        NOT NULL,
    data_type TEXT        NOT NULL,
    rule      TEXT        NOT NULL,
    since     TIMESTAMPTZ NOT NULL,
    applied   BOOLEAN     NOT NULL,
    PRIMARY KEY (tenant_id, data_type)
);
"#,
    r#"
-- Data-subject requests and the answer given to each; a subject's requests are found by its
-- pseudonym, newest first.
CREATE TABLE subject_requests (
    tenant_id      TEXT        NOT NULL,
    id             TEXT        NOT NULL,
    kind           TEXT        NOT NULL
        CHECK (kind IN ('access', 'erasure', 'rectification', 'anonymisation')),
    subject        BYTEA       NOT NULL,
    reference      TEXT        NOT NULL,
    reason         TEXT        NOT NULL,
    requested_by   TEXT        NOT NULL,
    received_at    TIMESTAMPTZ NOT NULL,
    due_at         TIMESTAMPTZ NOT NULL,
    status         TEXT        NOT NULL
        CHECK (status IN ('open', 'completed', 'partial', 'refused')),
    completed_at   TIMESTAMPTZ,
    outcome        TEXT,
    certificate_id TEXT,
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX subject_requests_by_subject ON subject_requests (tenant_id, subject, id);
"#,
    r#"
-- Just-in-time grants, each stored whole (JSON) with the columns it is found by; `version`
-- guards transitions against concurrent ones.
CREATE TABLE grants (
    id         TEXT        NOT NULL PRIMARY KEY,
    tenant_id  TEXT        NOT NULL,
    grantee    TEXT        NOT NULL,
    expires_at TIMESTAMPTZ,
    closed     BOOLEAN     NOT NULL,
    version    BIGINT      NOT NULL,
    body       TEXT        NOT NULL
);
CREATE INDEX grants_by_grantee ON grants (tenant_id, grantee, expires_at);
CREATE INDEX grants_by_tenant ON grants (tenant_id, id);
"#,
];

const RECORD_COLUMNS: &str = "id, data_type, class, event_time, ingest_time, expires_at, pending_event, key_bucket, key_subjects, sealed, event_ref";

pub struct PostgresStore {
    pool: Pool,
}

fn db_err(e: tokio_postgres::Error) -> StoreError {
    StoreError::Backend {
        backend: BACKEND,
        reason: e
            .as_db_error()
            .map_or_else(|| e.to_string(), |d| d.to_string()),
    }
}

fn unavailable(reason: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable {
        backend: BACKEND,
        reason: reason.to_string(),
    }
}

fn record_from_row(row: &Row) -> Result<StoredRecord> {
    Ok(StoredRecord {
        id: crate::parse_record_id(row.get::<_, &str>(0))?,
        data_type: crate::parse_data_type(row.get(1))?,
        class: crate::class_from_i64(i64::from(row.get::<_, i16>(2)))?,
        event_time: row.get(3),
        ingest_time: row.get(4),
        expires_at: row.get(5),
        pending_event: row.get(6),
        event_ref: row.get(10),
        key_bucket: row.get(7),
        key_subjects: crate::unpack_subjects(row.get(8))?,
        sealed: row.get(9),
    })
}

const TOKEN_COLUMNS: &str =
    "id, tenant_id, role, secret_hash, created_at, expires_at, revoked_at, last_used_at";

fn token_from_row(row: &Row) -> Result<TokenRow> {
    Ok(TokenRow {
        id: row.get(0),
        tenant: crate::parse_tenant(row.get(1))?,
        role: row.get(2),
        secret_hash: crate::hash32(row.get(3), "token hash")?,
        created_at: row.get(4),
        expires_at: row.get(5),
        revoked_at: row.get(6),
        last_used_at: row.get(7),
    })
}

fn idempotent_from_row(key: &str, row: &Row) -> Result<IdempotentResponse> {
    Ok(IdempotentResponse {
        key: key.to_owned(),
        request_hash: crate::hash32(row.get(0), "request hash")?,
        status: row.get::<_, i32>(1) as u16,
        body: row.get(2),
    })
}

/// Stored nodes of a log, in the order of `ids`; a missing node is an error.
async fn fetch_nodes(
    client: &impl GenericClient,
    log: &str,
    ids: &[custodian_tlog::NodeId],
) -> Result<Vec<custodian_tlog::Hash>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let levels: Vec<i16> = ids.iter().map(|id| i16::from(id.level)).collect();
    let indexes: Vec<i64> = ids.iter().map(|id| id.index as i64).collect();
    let rows = client
        .query(
            "SELECT n.level, n.idx, n.hash FROM audit_nodes n
             JOIN UNNEST($2::int2[], $3::int8[]) AS want(level, idx)
               ON n.level = want.level AND n.idx = want.idx
             WHERE n.log_id = $1",
            &[&log, &levels, &indexes],
        )
        .await
        .map_err(db_err)?;
    let found: std::collections::HashMap<(i16, i64), Vec<u8>> = rows
        .iter()
        .map(|r| ((r.get(0), r.get(1)), r.get(2)))
        .collect();
    ids.iter()
        .map(|id| {
            let hash = found.get(&(i16::from(id.level), id.index as i64)).ok_or(
                custodian_tlog::Error::MissingNode {
                    level: id.level,
                    index: id.index,
                },
            )?;
            Ok(custodian_tlog::hash_from_slice(hash)?)
        })
        .collect()
}

/// Appends entries to a log inside the caller's transaction; returns the new size. The head
/// row is locked, so concurrent appends to one log queue here and never fork the tree.
async fn append_audit_tx(tx: &Transaction<'_>, log: &str, entries: &[AuditEntry]) -> Result<u64> {
    tx.execute(
        "INSERT INTO audit_heads (log_id, size) VALUES ($1, 0) ON CONFLICT DO NOTHING",
        &[&log],
    )
    .await
    .map_err(db_err)?;
    let size = tx
        .query_one(
            "SELECT size FROM audit_heads WHERE log_id = $1 FOR UPDATE",
            &[&log],
        )
        .await
        .map_err(db_err)?
        .get::<_, i64>(0) as u64;
    // The appender asks for the log's peaks in one read: record which, fetch them, resume.
    let recorder = custodian_tlog::Recorder::new();
    let _ = custodian_tlog::Appender::resume(&recorder, size);
    let ids = recorder.into_ids();
    let hashes = fetch_nodes(tx, log, &ids).await?;
    let peaks = custodian_tlog::Prefetched::new(ids.into_iter().zip(hashes));
    let appender = custodian_tlog::Appender::resume(&peaks, size)?;
    let nodes = crate::audit_append_nodes(appender, entries)?;
    let indexes: Vec<i64> = (0..entries.len() as u64)
        .map(|i| (size + i) as i64)
        .collect();
    let bodies: Vec<&[u8]> = entries.iter().map(|e| e.body.as_slice()).collect();
    tx.execute(
        "INSERT INTO audit_entries (log_id, idx, body) SELECT $1, * FROM UNNEST($2::int8[], $3::bytea[])",
        &[&log, &indexes, &bodies],
    )
    .await
    .map_err(db_err)?;
    let levels: Vec<i16> = nodes.iter().map(|n| i16::from(n.id.level)).collect();
    let node_indexes: Vec<i64> = nodes.iter().map(|n| n.id.index as i64).collect();
    let hashes: Vec<&[u8]> = nodes.iter().map(|n| n.hash.as_slice()).collect();
    tx.execute(
        "INSERT INTO audit_nodes (log_id, level, idx, hash) SELECT $1, * FROM UNNEST($2::int2[], $3::int8[], $4::bytea[])",
        &[&log, &levels, &node_indexes, &hashes],
    )
    .await
    .map_err(db_err)?;
    let new_size = size + entries.len() as u64;
    tx.execute(
        "UPDATE audit_heads SET size = $2 WHERE log_id = $1",
        &[&log, &(new_size as i64)],
    )
    .await
    .map_err(db_err)?;
    Ok(new_size)
}

fn parse_url(url: &str) -> Result<tokio_postgres::Config> {
    let mut config = tokio_postgres::Config::from_str(url)
        .map_err(|e| unavailable(format!("invalid database URL: {e}")))?;
    config.connect_timeout(Duration::from_secs(5));
    Ok(config)
}

/// Runs `f` on a connection of its own (for set-up work before the pool exists).
async fn with_one_client<T, F, Fut>(config: &tokio_postgres::Config, f: F) -> Result<T>
where
    F: FnOnce(tokio_postgres::Client) -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    let (client, conn) = config.connect(NoTls).await.map_err(unavailable)?;
    let task = tokio::spawn(conn);
    let out = f(client).await;
    // The client is dropped by now, so the connection task ends.
    let _ = task.await;
    out
}

/// Connects a pool, creating `schema` when given (and using it for every query), and applies
/// `migrations` under the advisory lock `lock`.
async fn connect_pool(
    url: &str,
    schema: Option<&str>,
    migrations: &[&str],
    lock: i64,
) -> Result<Pool> {
    let mut config = parse_url(url)?;
    if let Some(schema) = schema {
        if !schema
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        {
            return Err(unavailable(format!(
                "schema name {schema:?} must be lowercase letters, digits and _"
            )));
        }
        let create = format!("CREATE SCHEMA IF NOT EXISTS {schema}");
        with_one_client(&config, |client| async move {
            client.batch_execute(&create).await.map_err(db_err)
        })
        .await?;
        config.options(format!("-c search_path={schema}"));
    }
    let manager = Manager::from_config(
        config,
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    let pool = Pool::builder(manager)
        .max_size(16)
        .build()
        .map_err(unavailable)?;
    migrate(&pool, migrations, lock).await?;
    Ok(pool)
}

/// The schema unqualified names resolve to on a connection to `url` (its `search_path`).
pub(crate) async fn current_schema(url: &str) -> Result<String> {
    let schema: Option<String> = with_one_client(&parse_url(url)?, |client| async move {
        Ok(client
            .query_one("SELECT current_schema()", &[])
            .await
            .map_err(db_err)?
            .get(0))
    })
    .await?;
    schema.ok_or_else(|| unavailable("the connection has no current schema (check search_path)"))
}

async fn migrate(pool: &Pool, migrations: &[&str], lock: i64) -> Result<()> {
    let mut client = pool.get().await.map_err(unavailable)?;
    let tx = client.transaction().await.map_err(db_err)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&lock])
        .await
        .map_err(db_err)?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())",
    )
    .await
    .map_err(db_err)?;
    let applied: i32 = tx
        .query_one(
            "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
            &[],
        )
        .await
        .map_err(db_err)?
        .get(0);
    for (i, sql) in migrations.iter().enumerate().skip(applied as usize) {
        let version = i as u32 + 1;
        let fail = |e: tokio_postgres::Error| StoreError::Migration {
            version,
            reason: e.to_string(),
        };
        tx.batch_execute(sql).await.map_err(fail)?;
        tx.execute(
            "INSERT INTO schema_migrations (version) VALUES ($1)",
            &[&(version as i32)],
        )
        .await
        .map_err(fail)?;
    }
    tx.commit().await.map_err(db_err)
}

impl PostgresStore {
    /// Runs a query on a pooled connection and maps every row it returns.
    async fn select<T>(
        &self,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
        row: fn(&Row) -> Result<T>,
    ) -> Result<Vec<T>> {
        self.client()
            .await?
            .query(sql, params)
            .await
            .map_err(db_err)?
            .iter()
            .map(row)
            .collect()
    }

    /// Connects, creates `schema` when given (and uses it for every query), and migrates.
    pub async fn connect(url: &str, schema: Option<&str>) -> Result<PostgresStore> {
        Ok(PostgresStore {
            pool: connect_pool(url, schema, MIGRATIONS, MIGRATION_LOCK).await?,
        })
    }

    async fn client(&self) -> Result<deadpool_postgres::Object> {
        self.pool.get().await.map_err(unavailable)
    }
}

#[async_trait]
impl Store for PostgresStore {
    fn backend(&self) -> &'static str {
        BACKEND
    }

    async fn ping(&self) -> Result<()> {
        self.client()
            .await?
            .simple_query("SELECT 1")
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn insert_records(
        &self,
        tenant: &TenantId,
        records: Vec<StoredRecord>,
        idempotency: Option<IdempotentResponse>,
        audit: AuditEntry,
    ) -> Result<InsertOutcome> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db_err)?;
        let tenant = tenant.as_str();
        if let Some(idem) = &idempotency {
            // ON CONFLICT waits for a concurrent holder of the key to commit, so the row read
            // afterwards is that request's final answer.
            let inserted = tx
                .execute(
                    "INSERT INTO idempotency (tenant_id, key, request_hash, status, body) VALUES ($1, $2, $3, $4, $5)
                     ON CONFLICT (tenant_id, key) DO NOTHING",
                    &[
                        &tenant,
                        &idem.key,
                        &idem.request_hash.as_slice(),
                        &i32::from(idem.status),
                        &idem.body,
                    ],
                )
                .await
                .map_err(db_err)?;
            if inserted == 0 {
                let row = tx
                    .query_one(
                        "SELECT request_hash, status, body FROM idempotency WHERE tenant_id = $1 AND key = $2",
                        &[&tenant, &idem.key],
                    )
                    .await
                    .map_err(db_err)?;
                return Ok(InsertOutcome::Replayed(idempotent_from_row(
                    &idem.key, &row,
                )?));
            }
        }
        let n = records.len();
        let mut ids = Vec::with_capacity(n);
        let mut types = Vec::with_capacity(n);
        let mut classes = Vec::with_capacity(n);
        let mut event_times = Vec::with_capacity(n);
        let mut ingest_times = Vec::with_capacity(n);
        let mut expiries = Vec::with_capacity(n);
        let mut pending = Vec::with_capacity(n);
        let mut event_refs = Vec::with_capacity(n);
        let mut buckets = Vec::with_capacity(n);
        let mut key_subjects = Vec::with_capacity(n);
        let mut sealed = Vec::with_capacity(n);
        let mut subject_hashes: Vec<&[u8]> = Vec::new();
        let mut subject_records = Vec::new();
        for r in &records {
            let id = r.id.to_string();
            for s in &r.key_subjects {
                subject_hashes.push(s.as_slice());
                subject_records.push(id.clone());
            }
            ids.push(id);
            types.push(r.data_type.as_str());
            classes.push(crate::class_to_i16(r.class));
            event_times.push(r.event_time);
            ingest_times.push(r.ingest_time);
            expiries.push(r.expires_at);
            pending.push(r.pending_event.as_deref());
            event_refs.push(r.event_ref.as_deref());
            buckets.push(r.key_bucket.as_str());
            key_subjects.push(crate::pack_subjects(&r.key_subjects));
            sealed.push(r.sealed.as_slice());
        }
        tx.execute(
            "INSERT INTO records (tenant_id, id, data_type, class, event_time, ingest_time, expires_at, pending_event, key_bucket, key_subjects, sealed, event_ref)
             SELECT $1, * FROM UNNEST($2::text[], $3::text[], $4::int2[], $5::timestamptz[], $6::timestamptz[], $7::timestamptz[], $8::text[], $9::text[], $10::bytea[], $11::bytea[], $12::text[])",
            &[
                &tenant,
                &ids,
                &types,
                &classes,
                &event_times,
                &ingest_times,
                &expiries,
                &pending,
                &buckets,
                &key_subjects,
                &sealed,
                &event_refs,
            ],
        )
        .await
        .map_err(db_err)?;
        if !subject_hashes.is_empty() {
            tx.execute(
                "INSERT INTO record_subjects (tenant_id, subject, record_id)
                 SELECT $1, * FROM UNNEST($2::bytea[], $3::text[]) ON CONFLICT DO NOTHING",
                &[&tenant, &subject_hashes, &subject_records],
            )
            .await
            .map_err(db_err)?;
        }
        // Last, so the log's head row is locked only for the commit.
        append_audit_tx(&tx, tenant, &[audit]).await?;
        tx.commit().await.map_err(db_err)?;
        Ok(InsertOutcome::Inserted)
    }

    async fn get_record(&self, tenant: &TenantId, id: RecordId) -> Result<Option<StoredRecord>> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(&format!(
                "SELECT {RECORD_COLUMNS} FROM records WHERE tenant_id = $1 AND id = $2"
            ))
            .await
            .map_err(db_err)?;
        client
            .query_opt(&stmt, &[&tenant.as_str(), &id.to_string()])
            .await
            .map_err(db_err)?
            .as_ref()
            .map(record_from_row)
            .transpose()
    }

    async fn list_subject_records(
        &self,
        tenant: &TenantId,
        subject_pseudonym: &[u8; 32],
        after: Option<RecordId>,
        limit: u32,
    ) -> Result<Vec<StoredRecord>> {
        let client = self.client().await?;
        let after = after.map(|a| a.to_string()).unwrap_or_default();
        let rows = client
            .query(
                "SELECT r.id, r.data_type, r.class, r.event_time, r.ingest_time, r.expires_at, r.pending_event, r.key_bucket, r.key_subjects, r.sealed, r.event_ref
                 FROM record_subjects s
                 JOIN records r ON r.tenant_id = s.tenant_id AND r.id = s.record_id
                 WHERE s.tenant_id = $1 AND s.subject = $2 AND s.record_id > $3
                 ORDER BY s.record_id
                 LIMIT $4",
                &[
                    &tenant.as_str(),
                    &subject_pseudonym.as_slice(),
                    &after,
                    &i64::from(limit),
                ],
            )
            .await
            .map_err(db_err)?;
        rows.iter().map(record_from_row).collect()
    }

    async fn delete_record(
        &self,
        tenant: &TenantId,
        id: RecordId,
        audit: AuditEntry,
    ) -> Result<bool> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db_err)?;
        let id = id.to_string();
        tx.execute(
            "DELETE FROM record_subjects WHERE tenant_id = $1 AND record_id = $2",
            &[&tenant.as_str(), &id],
        )
        .await
        .map_err(db_err)?;
        let n = tx
            .execute(
                "DELETE FROM records WHERE tenant_id = $1 AND id = $2",
                &[&tenant.as_str(), &id],
            )
            .await
            .map_err(db_err)?;
        append_audit_tx(&tx, tenant.as_str(), &[audit]).await?;
        tx.commit().await.map_err(db_err)?;
        Ok(n > 0)
    }

    async fn append_audit(&self, log: &AuditLog, entries: Vec<AuditEntry>) -> Result<u64> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db_err)?;
        let size = append_audit_tx(&tx, log.key(), &entries).await?;
        tx.commit().await.map_err(db_err)?;
        Ok(size)
    }

    async fn audit_size(&self, log: &AuditLog) -> Result<u64> {
        let row = self
            .client()
            .await?
            .query_opt(
                "SELECT size FROM audit_heads WHERE log_id = $1",
                &[&log.key()],
            )
            .await
            .map_err(db_err)?;
        Ok(row.map_or(0, |r| r.get::<_, i64>(0) as u64))
    }

    async fn audit_heads(&self) -> Result<Vec<(AuditLog, u64)>> {
        self.client()
            .await?
            .query(
                "SELECT log_id, size FROM audit_heads ORDER BY log_id <> '_system', log_id",
                &[],
            )
            .await
            .map_err(db_err)?
            .iter()
            .map(|r| Ok((AuditLog::from_key(r.get(0))?, r.get::<_, i64>(1) as u64)))
            .collect()
    }

    async fn audit_nodes(
        &self,
        log: &AuditLog,
        ids: &[custodian_tlog::NodeId],
    ) -> Result<Vec<custodian_tlog::Hash>> {
        let client = self.client().await?;
        fetch_nodes(&**client, log.key(), ids).await
    }

    async fn audit_entries(&self, log: &AuditLog, start: u64, end: u64) -> Result<Vec<Vec<u8>>> {
        let rows = self
            .client()
            .await?
            .query(
                "SELECT body FROM audit_entries WHERE log_id = $1 AND idx >= $2 AND idx < $3 ORDER BY idx",
                &[&log.key(), &(start as i64), &(end as i64)],
            )
            .await
            .map_err(db_err)?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    async fn system_secret(&self, name: &str) -> Result<Option<Vec<u8>>> {
        let row = self
            .client()
            .await?
            .query_opt(
                "SELECT wrapped FROM system_secrets WHERE name = $1",
                &[&name],
            )
            .await
            .map_err(db_err)?;
        Ok(row.map(|r| r.get(0)))
    }

    async fn insert_system_secret(&self, name: &str, wrapped: Vec<u8>) -> Result<bool> {
        let n = self
            .client()
            .await?
            .execute(
                "INSERT INTO system_secrets (name, wrapped) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                &[&name, &wrapped],
            )
            .await
            .map_err(db_err)?;
        Ok(n == 1)
    }

    async fn insert_token(&self, token: TokenRow, log: &AuditLog, audit: AuditEntry) -> Result<()> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db_err)?;
        tx.execute(
                "INSERT INTO api_tokens (id, tenant_id, role, secret_hash, created_at, expires_at, revoked_at, last_used_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                &[
                    &token.id,
                    &token.tenant.as_str(),
                    &token.role,
                    &token.secret_hash.as_slice(),
                    &token.created_at,
                    &token.expires_at,
                    &token.revoked_at,
                    &token.last_used_at,
                ],
            )
            .await
            .map_err(db_err)?;
        append_audit_tx(&tx, log.key(), &[audit]).await?;
        tx.commit().await.map_err(db_err)
    }

    async fn find_token(&self, id: &str) -> Result<Option<TokenRow>> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(&format!(
                "SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE id = $1"
            ))
            .await
            .map_err(db_err)?;
        client
            .query_opt(&stmt, &[&id])
            .await
            .map_err(db_err)?
            .as_ref()
            .map(token_from_row)
            .transpose()
    }

    async fn touch_token(&self, id: &str, at: Timestamp) -> Result<()> {
        self.client()
            .await?
            .execute(
                "UPDATE api_tokens SET last_used_at = $2 WHERE id = $1",
                &[&id, &at],
            )
            .await
            .map_err(db_err)?;
        Ok(())
    }

    async fn tokens(&self, tenant: Option<&TenantId>) -> Result<Vec<TokenRow>> {
        // Byte order, as SQLite sorts: under a language collation `_platform` would sort by
        // `platform`, among the tenants, and the backends would list in different orders.
        self.select(
            &format!(
                "SELECT {TOKEN_COLUMNS} FROM api_tokens
                 WHERE $1::TEXT IS NULL OR tenant_id = $1
                 ORDER BY tenant_id COLLATE \"C\", id COLLATE \"C\""
            ),
            &[&tenant.map(TenantId::as_str)],
            token_from_row,
        )
        .await
    }

    async fn revoke_token(
        &self,
        id: &str,
        at: Timestamp,
        log: &AuditLog,
        audit: AuditEntry,
    ) -> Result<Option<TokenRow>> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db_err)?;
        // `revoked_at IS NULL` keeps the first revocation's time and makes a repeat change
        // nothing, so only the revocation that took effect is audited. A concurrent revocation
        // holds the row lock until it commits; this UPDATE then re-reads the row and matches
        // nothing.
        let revoked = tx
            .execute(
                "UPDATE api_tokens SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL",
                &[&id, &at],
            )
            .await
            .map_err(db_err)?;
        if revoked == 1 {
            append_audit_tx(&tx, log.key(), &[audit]).await?;
        }
        let row = tx
            .query_opt(
                &format!("SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE id = $1"),
                &[&id],
            )
            .await
            .map_err(db_err)?
            .as_ref()
            .map(token_from_row)
            .transpose()?;
        tx.commit().await.map_err(db_err)?;
        Ok(row)
    }
}
