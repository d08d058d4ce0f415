//! custodian's storage: the [`Store`] trait and its two backends, SQLite (the embedded default)
//! and PostgreSQL. Both pass one conformance suite (`tests/conformance.rs`).
//!
//! Every method on tenant data takes the tenant as its first parameter and every tenant table
//! leads its primary key with `tenant_id`: there is no way to read a record without naming its
//! tenant. The store only ever sees ciphertext and keyed pseudonyms; plaintext never reaches it.

#![forbid(unsafe_code)]

pub mod grants;
pub mod keys;
mod postgres;
pub mod retention;
mod sqlite;
pub mod subjects;

use std::path::Path;

use async_trait::async_trait;
use custodian_core::ids::{Class, DataTypeName, RecordId, TenantId};
use jiff::Timestamp;

pub use grants::GrantStore;
pub use keys::{
    AuditShred, KeySnapshot, KeyStore, RestoreReport, ShredEntry, ShredScope, WrappedAuditKey,
    WrappedDataKey, WrappedKek,
};
pub use postgres::{PostgresKeyStore, PostgresStore};
pub use retention::{
    AppliedRetention, BucketCount, BucketRecord, BucketSummary, CancelOutcome, CertificateRow,
    DeletionState, DeletionTarget, DestructionLock, RekeyedRecord, ReleaseOutcome, RetentionEvent,
    RetentionStore, ScheduledDeletion, Termination, TerminationCancel,
};
pub use sqlite::{SqliteKeyStore, SqliteStore};
pub use subjects::{ResealedRecord, SubjectRequest, SubjectStore};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the {backend} database is unreachable: {reason}")]
    Unavailable {
        backend: &'static str,
        reason: String,
    },
    #[error("database migration {version} failed: {reason}")]
    Migration { version: u32, reason: String },
    #[error("stored data is inconsistent: {0}")]
    Corrupt(String),
    /// A data key wrapped by a KEK version another node retired meanwhile; nothing was
    /// written. Reload the tenant's KEKs and wrap again.
    #[error("KEK version {version} was retired by a rotation; wrap with the current version")]
    KekRetired { version: u32 },
    #[error("audit log: {0}")]
    Audit(#[from] custodian_tlog::Error),
    #[error("{backend} error: {reason}")]
    Backend {
        backend: &'static str,
        reason: String,
    },
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// A record as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredRecord {
    pub id: RecordId,
    pub data_type: DataTypeName,
    pub class: Class,
    pub event_time: Timestamp,
    pub ingest_time: Timestamp,
    pub expires_at: Option<Timestamp>,
    /// The event that will start the retention clock, for `after_event` types.
    pub pending_event: Option<String>,
    /// The reference (e.g. a ticket id) whose event starts an `after_event` record's clock.
    pub event_ref: Option<String>,
    /// The expiry bucket whose DEK seals the record (with its subjects' keys).
    pub key_bucket: String,
    /// The keyed pseudonyms of the record's subjects, sorted and distinct: they name the
    /// subject keys that seal it and are its entries in the subject index.
    pub key_subjects: Vec<[u8; 32]>,
    pub sealed: Vec<u8>,
}

/// The first answer to a write carrying an `Idempotency-Key`, kept so replays get it again.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdempotentResponse {
    pub key: String,
    /// SHA-256 of the request body, so a reused key with another body is detected.
    pub request_hash: [u8; 32],
    pub status: u16,
    pub body: Vec<u8>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InsertOutcome {
    Inserted,
    /// The idempotency key was used before; nothing was written.
    Replayed(IdempotentResponse),
}

/// An audit log: one per tenant, plus the system log for actions outside any tenant.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum AuditLog {
    Tenant(TenantId),
    System,
}

impl AuditLog {
    /// The log stored under `key`.
    pub fn from_key(key: &str) -> Result<AuditLog> {
        if key == "_system" {
            return Ok(AuditLog::System);
        }
        parse_tenant(key.to_owned()).map(AuditLog::Tenant)
    }

    /// The key the log is stored under. Tenant ids start with a letter or digit, so the
    /// system log's key can never collide with a tenant's.
    pub fn key(&self) -> &str {
        match self {
            AuditLog::Tenant(t) => t.as_str(),
            AuditLog::System => "_system",
        }
    }
}

/// An audit entry as stored: the leaf hash of the event's canonical bytes, and a body that is
/// those bytes sealed under a period key (or, where no key can exist yet, the bytes in clear).
/// The store never looks inside a body; the tree is built from the leaf hashes, so a body
/// destroyed by retention leaves the tree and its proofs intact.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditEntry {
    pub leaf: custodian_tlog::Hash,
    pub body: Vec<u8>,
}

impl AuditEntry {
    /// An entry whose body is its canonical bytes in clear.
    pub fn clear(canonical: Vec<u8>) -> AuditEntry {
        AuditEntry {
            leaf: custodian_tlog::leaf_hash(&canonical),
            body: canonical,
        }
    }
}

/// The nodes an append adds to an audit log whose peaks are `appender`'s: each entry's leaf
/// and every subtree it completes. Shared by both backends so they build identical trees.
fn audit_append_nodes(
    mut appender: custodian_tlog::Appender,
    entries: &[AuditEntry],
) -> Result<Vec<custodian_tlog::Node>> {
    Ok(appender.append(entries.iter().map(|e| e.leaf))?)
}

/// An API token as stored: the secret itself is never kept, only its SHA-256.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenRow {
    pub id: String,
    pub tenant: TenantId,
    pub role: String,
    pub secret_hash: [u8; 32],
    pub created_at: Timestamp,
    pub expires_at: Option<Timestamp>,
    pub revoked_at: Option<Timestamp>,
    pub last_used_at: Option<Timestamp>,
}

#[async_trait]
pub trait Store: RetentionStore + SubjectStore + GrantStore + Send + Sync + 'static {
    /// `sqlite` or `postgres`.
    fn backend(&self) -> &'static str;

    /// Answers when the database can serve queries.
    async fn ping(&self) -> Result<()>;

    /// Writes all records, their subject index entries and the `audit` entry (to the tenant's
    /// log) in one transaction, or nothing. With `idempotency`, a key seen before returns the
    /// first response and writes nothing.
    async fn insert_records(
        &self,
        tenant: &TenantId,
        records: Vec<StoredRecord>,
        idempotency: Option<IdempotentResponse>,
        audit: AuditEntry,
    ) -> Result<InsertOutcome>;

    async fn get_record(&self, tenant: &TenantId, id: RecordId) -> Result<Option<StoredRecord>>;

    /// A subject's records in id order, `limit` at most, after the cursor `after`.
    async fn list_subject_records(
        &self,
        tenant: &TenantId,
        subject_pseudonym: &[u8; 32],
        after: Option<RecordId>,
        limit: u32,
    ) -> Result<Vec<StoredRecord>>;

    /// Deletes a record and its index entries, and appends `audit` to the tenant's log, in one
    /// transaction. `false` when the record did not exist (the attempt is still audited).
    async fn delete_record(
        &self,
        tenant: &TenantId,
        id: RecordId,
        audit: AuditEntry,
    ) -> Result<bool>;

    /// Appends entries to an audit log in one transaction; returns the new size.
    async fn append_audit(&self, log: &AuditLog, entries: Vec<AuditEntry>) -> Result<u64>;

    async fn audit_size(&self, log: &AuditLog) -> Result<u64>;

    /// Every audit log with its size, the system log first: what the off-box mirror follows.
    async fn audit_heads(&self) -> Result<Vec<(AuditLog, u64)>>;

    /// Stored subtree hashes of a log, in the order asked; a missing node is an error.
    async fn audit_nodes(
        &self,
        log: &AuditLog,
        ids: &[custodian_tlog::NodeId],
    ) -> Result<Vec<custodian_tlog::Hash>>;

    /// Entries `[start, end)` of a log, in order.
    async fn audit_entries(&self, log: &AuditLog, start: u64, end: u64) -> Result<Vec<Vec<u8>>>;

    /// A deployment secret wrapped by the root key (e.g. the audit signing seed).
    async fn system_secret(&self, name: &str) -> Result<Option<Vec<u8>>>;

    /// Stores a deployment secret unless one of that name exists; `false` when it did.
    async fn insert_system_secret(&self, name: &str, wrapped: Vec<u8>) -> Result<bool>;

    /// Stores a new token and appends `audit` to `log`, in one transaction.
    async fn insert_token(&self, token: TokenRow, log: &AuditLog, audit: AuditEntry) -> Result<()>;

    async fn find_token(&self, id: &str) -> Result<Option<TokenRow>>;

    async fn touch_token(&self, id: &str, at: Timestamp) -> Result<()>;

    /// Every token, or one tenant's (the platform's with [`TenantId::platform`]), ordered by
    /// tenant then id. Revoked and expired tokens are included.
    async fn tokens(&self, tenant: Option<&TenantId>) -> Result<Vec<TokenRow>>;

    /// Revokes a token at `at` and appends `audit` to `log`, in one transaction. Returns the
    /// row as it now stands: `None` when there is no such token; a token already revoked is
    /// returned unchanged (its first `revoked_at` kept) and nothing is appended, so a revocation
    /// is audited once however often it is repeated.
    async fn revoke_token(
        &self,
        id: &str,
        at: Timestamp,
        log: &AuditLog,
        audit: AuditEntry,
    ) -> Result<Option<TokenRow>>;
}

/// Where the data lives: the embedded SQLite default or a PostgreSQL server.
#[derive(Clone, Debug)]
pub enum StoreConfig {
    Sqlite {
        path: std::path::PathBuf,
    },
    Postgres {
        url: String,
        /// A schema to create and use instead of the URL's default (tests use one each).
        schema: Option<String>,
    },
}

/// Opens the configured store and runs its migrations.
pub async fn open(config: &StoreConfig) -> Result<Box<dyn Store>> {
    Ok(match config {
        StoreConfig::Sqlite { path } => Box::new(SqliteStore::open(path).await?),
        StoreConfig::Postgres { url, schema } => {
            Box::new(PostgresStore::connect(url, schema.as_deref()).await?)
        }
    })
}

/// Opens the key store that goes with the configured data store: a `keys.db` file beside the
/// SQLite data file, or a `<schema>_keys` PostgreSQL schema beside the data's schema (the one
/// configured, else the connection's current schema), so the data and its keys are backed up
/// and destroyed apart, and two deployments on one server never share keys.
pub async fn open_key_store(config: &StoreConfig) -> Result<Box<dyn KeyStore>> {
    Ok(match config {
        StoreConfig::Sqlite { path } => {
            Box::new(SqliteKeyStore::open(&path.with_file_name("keys.db")).await?)
        }
        StoreConfig::Postgres { url, schema } => {
            let data_schema = match schema {
                Some(s) => s.clone(),
                None => postgres::current_schema(url).await?,
            };
            Box::new(PostgresKeyStore::connect(url, &format!("{data_schema}_keys")).await?)
        }
    })
}

/// The SQLite file inside a data directory.
pub fn sqlite_path(data_dir: &Path) -> std::path::PathBuf {
    data_dir.join("custodian.db")
}

fn class_to_i16(class: Class) -> i16 {
    class as i16
}

fn class_from_i64(n: i64) -> Result<Class> {
    Class::ALL
        .into_iter()
        .find(|c| *c as i64 == n)
        .ok_or_else(|| StoreError::Corrupt(format!("unknown class code {n}")))
}

fn parse_record_id(s: &str) -> Result<RecordId> {
    s.parse()
        .map_err(|_| StoreError::Corrupt(format!("bad record id {s:?}")))
}

fn parse_data_type(s: String) -> Result<DataTypeName> {
    DataTypeName::new(s).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn parse_tenant(s: String) -> Result<TenantId> {
    TenantId::from_stored(&s).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn hash32(bytes: Vec<u8>, what: &str) -> Result<[u8; 32]> {
    bytes
        .try_into()
        .map_err(|_| StoreError::Corrupt(format!("{what} is not 32 bytes")))
}

/// Helpers for tests of this and other crates that need a real PostgreSQL.
pub mod testing {
    /// The PostgreSQL URL tests use: `CUSTODIAN_TEST_DATABASE_URL`, else the local server.
    pub fn postgres_url() -> String {
        std::env::var("CUSTODIAN_TEST_DATABASE_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
    }

    /// A fresh schema name, so tests run in parallel without seeing each other's rows.
    pub fn unique_schema(prefix: &str) -> String {
        format!("{prefix}_{}", ulid::Ulid::new().to_string().to_lowercase())
    }

    /// Drops a test schema and the key-store schema that goes with it.
    pub async fn drop_schema(schema: &str) {
        if let Ok((client, conn)) =
            tokio_postgres::connect(&postgres_url(), tokio_postgres::NoTls).await
        {
            tokio::spawn(conn);
            let _ = client
                .batch_execute(&format!(
                    "DROP SCHEMA IF EXISTS \"{schema}\" CASCADE; DROP SCHEMA IF EXISTS \"{schema}_keys\" CASCADE"
                ))
                .await;
        }
    }

    /// Whether PostgreSQL is reachable. When it is not: under `CI=true` this panics (a missing
    /// service is a failure there); locally it prints a loud notice and returns `false`.
    pub async fn postgres_available() -> bool {
        let url = postgres_url();
        let reachable = match tokio_postgres::connect(&url, tokio_postgres::NoTls).await {
            Ok((client, conn)) => {
                tokio::spawn(conn);
                client.simple_query("SELECT 1").await.is_ok()
            }
            Err(_) => false,
        };
        if !reachable {
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!(
                    "PostgreSQL at {url} is unreachable and CI=true: PostgreSQL tests must run in CI"
                );
            }
            eprintln!(
                "\n*** SKIPPING PostgreSQL test: no server at {url} (set CUSTODIAN_TEST_DATABASE_URL) ***\n"
            );
        }
        reachable
    }
}

/// Subject pseudonyms packed for storage: 32 bytes each.
fn pack_subjects(subjects: &[[u8; 32]]) -> Vec<u8> {
    subjects.concat()
}

fn unpack_subjects(bytes: &[u8]) -> Result<Vec<[u8; 32]>> {
    match bytes.as_chunks::<32>() {
        (pseudonyms, []) => Ok(pseudonyms.to_vec()),
        _ => Err(StoreError::Corrupt(
            "key subjects are not whole pseudonyms".into(),
        )),
    }
}
