//! The key store: wrapped tenant keys, kept apart from the data (its own SQLite file, its own
//! PostgreSQL schema) so a data backup holds ciphertext without keys, and destroying a key here
//! makes every copy of its records unreadable, old backups included.
//!
//! It holds only wrapped keys: KEKs and index keys wrapped by the root key, bucket DEKs and
//! subject keys wrapped by a KEK. Destroyed keys leave a line in the shred log (which key,
//! when), so a read can tell "destroyed" from "missing", and a restored old key-store backup can
//! be brought back in line by replaying the log.

use async_trait::async_trait;
use custodian_core::ids::TenantId;
use jiff::Timestamp;

use crate::Result;

/// A version of a tenant's KEK, wrapped by the root key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WrappedKek {
    pub version: u32,
    pub wrapped: Vec<u8>,
    pub created_at: Timestamp,
}

/// A bucket DEK or subject key (by its text id), wrapped by KEK version `kek_version`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WrappedDataKey {
    pub id: String,
    pub kek_version: u32,
    pub wrapped: Vec<u8>,
}

/// A key that seals the bodies of one audit log's entries for one calendar month (`period`,
/// `YYYY-MM`, UTC), wrapped to the deployment's audit public key. A period may have several
/// keys (each process start or unseal makes its own); destroying a period destroys them all,
/// and the entries they sealed keep only their leaf hashes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WrappedAuditKey {
    /// The log's key ([`crate::AuditLog::key`]).
    pub log: String,
    pub period: String,
    /// Unique within the log; the sealed body names it.
    pub id: String,
    pub wrapped: Vec<u8>,
}

/// One line of the audit shred log: every key of `log` for `period` was destroyed at `at`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct AuditShred {
    pub log: String,
    pub period: String,
    pub at: Timestamp,
}

/// What a shred destroys.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ShredScope {
    /// These data keys (bucket DEKs or subject keys).
    Keys(Vec<String>),
    /// Every key of the tenant: KEKs, index key, data keys.
    Tenant,
}

/// The shred log's id for a whole-tenant shred.
pub const TENANT_SHRED: &str = "*";

/// One line of the shred log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShredEntry {
    pub tenant: TenantId,
    /// A data key id, `kek/<version>` (an old KEK after rotation) or [`TENANT_SHRED`].
    pub id: String,
    pub at: Timestamp,
}

/// The whole key store, for backup. Every key in it is wrapped (by the root key or a KEK).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeySnapshot {
    pub index_keys: Vec<(TenantId, Vec<u8>)>,
    pub keks: Vec<(TenantId, WrappedKek)>,
    pub data_keys: Vec<(TenantId, WrappedDataKey)>,
    pub shred_log: Vec<ShredEntry>,
    pub meta: Vec<(String, Vec<u8>)>,
    pub audit_keys: Vec<WrappedAuditKey>,
    pub audit_shreds: Vec<AuditShred>,
}

/// What a restore put back and what the shred-log replay destroyed again.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RestoreReport {
    pub data_keys: u64,
    pub keks: u64,
    /// Keys in the backup destroyed again because the shred log says they were shredded.
    pub reshredded: u64,
}

/// Which keys a merged shred log destroys in a restored snapshot: every data key named, and
/// every key of a tenant shredded whole. Old KEK versions (`kek/N`, retired by rotation) are
/// not destroyed again: a backup from before the rotation still has data keys wrapped by
/// them, and those keys are as live as their rotated copies were.
pub fn replay_shreds(snapshot: &mut KeySnapshot, log: &[ShredEntry]) -> u64 {
    use std::collections::HashSet;
    let tenants: HashSet<&TenantId> = log
        .iter()
        .filter(|e| e.id == TENANT_SHRED)
        .map(|e| &e.tenant)
        .collect();
    let keys: HashSet<(&TenantId, &str)> = log
        .iter()
        .filter(|e| e.id != TENANT_SHRED && !e.id.starts_with("kek/"))
        .map(|e| (&e.tenant, e.id.as_str()))
        .collect();
    let before = snapshot.data_keys.len() + snapshot.keks.len() + snapshot.index_keys.len();
    snapshot
        .data_keys
        .retain(|(t, k)| !tenants.contains(t) && !keys.contains(&(t, k.id.as_str())));
    snapshot.keks.retain(|(t, _)| !tenants.contains(t));
    snapshot.index_keys.retain(|(t, _)| !tenants.contains(t));
    let after = snapshot.data_keys.len() + snapshot.keks.len() + snapshot.index_keys.len();
    (before - after) as u64
}

/// Which audit keys a merged audit shred log destroys in a restored snapshot: every key of a
/// destroyed (log, period).
pub fn replay_audit_shreds(snapshot: &mut KeySnapshot, log: &[AuditShred]) -> u64 {
    use std::collections::HashSet;
    let periods: HashSet<(&str, &str)> = log
        .iter()
        .map(|s| (s.log.as_str(), s.period.as_str()))
        .collect();
    let before = snapshot.audit_keys.len();
    snapshot
        .audit_keys
        .retain(|k| !periods.contains(&(k.log.as_str(), k.period.as_str())));
    (before - snapshot.audit_keys.len()) as u64
}

/// What a backend's `restore` writes: the snapshot with the current shred logs (data keys and
/// audit periods) merged in and replayed, and the report of it.
pub fn prepare_restore(
    mut snapshot: KeySnapshot,
    current_log: &[ShredEntry],
    current_audit_shreds: &[AuditShred],
) -> (KeySnapshot, RestoreReport) {
    snapshot.shred_log = merge_shred_logs(&snapshot.shred_log, current_log);
    let log = std::mem::take(&mut snapshot.shred_log);
    let mut reshredded = replay_shreds(&mut snapshot, &log);
    snapshot.shred_log = log;
    snapshot.audit_shreds = merge_audit_shreds(&snapshot.audit_shreds, current_audit_shreds);
    let audit_log = std::mem::take(&mut snapshot.audit_shreds);
    reshredded += replay_audit_shreds(&mut snapshot, &audit_log);
    snapshot.audit_shreds = audit_log;
    let report = RestoreReport {
        data_keys: snapshot.data_keys.len() as u64,
        keks: snapshot.keks.len() as u64,
        reshredded,
    };
    (snapshot, report)
}

/// The union of two shred logs, each line once, in time order.
pub fn merge_shred_logs(a: &[ShredEntry], b: &[ShredEntry]) -> Vec<ShredEntry> {
    let mut all: Vec<ShredEntry> = a.iter().chain(b).cloned().collect();
    all.sort_by(|x, y| {
        (x.at, x.tenant.as_str(), x.id.as_str()).cmp(&(y.at, y.tenant.as_str(), y.id.as_str()))
    });
    all.dedup();
    all
}

/// The union of two audit shred logs, by log then period, each period once: a period is
/// destroyed once, so two lines for it (two stores that each logged it) keep the earlier time.
pub fn merge_audit_shreds(a: &[AuditShred], b: &[AuditShred]) -> Vec<AuditShred> {
    let mut all: Vec<AuditShred> = a.iter().chain(b).cloned().collect();
    all.sort();
    all.dedup_by(|later, first| later.log == first.log && later.period == first.period);
    all
}

/// How many data keys each KEK version wraps, for status and rotation.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeyCounts {
    pub by_kek_version: Vec<(u32, u64)>,
}

#[async_trait]
pub trait KeyStore: Send + Sync {
    fn backend(&self) -> &'static str;

    /// The tenant's subject-index key, wrapped by the root key.
    async fn index_key(&self, tenant: &TenantId) -> Result<Option<Vec<u8>>>;
    /// Stores the index key unless the tenant has one; false if another was there first.
    async fn insert_index_key(&self, tenant: &TenantId, wrapped: Vec<u8>) -> Result<bool>;

    /// Every live KEK version of the tenant, oldest first.
    async fn keks(&self, tenant: &TenantId) -> Result<Vec<WrappedKek>>;
    /// Stores a KEK version unless it exists; false if another was there first.
    async fn insert_kek(&self, tenant: &TenantId, kek: WrappedKek) -> Result<bool>;
    /// Destroys KEK versions older than `version` once no data key is wrapped by them; returns
    /// the versions destroyed. Refuses (destroys nothing) while any data key still needs one.
    async fn destroy_keks_before(
        &self,
        tenant: &TenantId,
        version: u32,
        at: Timestamp,
    ) -> Result<Vec<u32>>;

    /// The wrapped data keys among `ids` that exist.
    async fn data_keys(&self, tenant: &TenantId, ids: &[String]) -> Result<Vec<WrappedDataKey>>;
    /// Stores data keys that do not exist yet and returns the ids that did exist: a concurrent
    /// writer's key wins, and the caller loads those instead of its own.
    async fn insert_data_keys(
        &self,
        tenant: &TenantId,
        keys: Vec<WrappedDataKey>,
    ) -> Result<Vec<String>>;
    /// Up to `limit` data keys wrapped by a KEK version below `version`, by id after `after`.
    async fn data_keys_below(
        &self,
        tenant: &TenantId,
        version: u32,
        after: &str,
        limit: u32,
    ) -> Result<Vec<WrappedDataKey>>;
    /// Replaces the wrapping of existing data keys (rotation). A key destroyed meanwhile
    /// stays destroyed.
    async fn rewrap_data_keys(&self, tenant: &TenantId, keys: Vec<WrappedDataKey>) -> Result<()>;
    async fn count_data_keys(&self, tenant: &TenantId) -> Result<KeyCounts>;

    /// Destroys keys and logs it; returns the ids actually destroyed now (a repeat destroys
    /// nothing more and returns an empty list).
    async fn shred(
        &self,
        tenant: &TenantId,
        scope: ShredScope,
        at: Timestamp,
    ) -> Result<Vec<String>>;
    /// Which of `ids` were shredded (a whole-tenant shred counts for every id).
    async fn shredded(&self, tenant: &TenantId, ids: &[String]) -> Result<Vec<String>>;

    /// A deployment-wide value (the root check, Shamir share fingerprints, wrapped secrets).
    async fn meta(&self, name: &str) -> Result<Option<Vec<u8>>>;
    /// Stores a value unless the name has one; false if another was there first.
    async fn insert_meta(&self, name: &str, value: Vec<u8>) -> Result<bool>;

    /// Stores an audit period key. `false` (nothing stored) when that period of the log was
    /// destroyed: a destroyed period never gets a key again.
    async fn insert_audit_key(&self, key: WrappedAuditKey) -> Result<bool>;
    /// The audit keys of `log` among `ids` that exist.
    async fn audit_keys(&self, log: &str, ids: &[String]) -> Result<Vec<WrappedAuditKey>>;
    /// Every log with live audit keys and its oldest live period, by log: what the sweeper
    /// looks at.
    async fn oldest_audit_periods(&self) -> Result<Vec<(String, String)>>;
    /// Destroys every audit key of `log` for periods up to and including `through`, and logs
    /// each period destroyed; returns those periods, oldest first (a repeat returns none).
    async fn shred_audit_periods(
        &self,
        log: &str,
        through: &str,
        at: Timestamp,
    ) -> Result<Vec<String>>;
    /// The audit shred log of `log`, oldest period first.
    async fn audit_shreds(&self, log: &str) -> Result<Vec<AuditShred>>;

    /// Everything in the key store, read in one transaction.
    async fn snapshot(&self) -> Result<KeySnapshot>;
    /// Replaces the whole key store with `snapshot` in one transaction, after merging the
    /// current shred log into the snapshot's and replaying it, so a key shredded after the
    /// backup was taken stays destroyed.
    async fn restore(&self, snapshot: KeySnapshot) -> Result<RestoreReport>;
}
