//! The audit service: appends events to the per-tenant and system Merkle logs, signs
//! checkpoints (C2SP signed notes), serves entries and proofs, and destroys the bodies of
//! entries older than the policy's audit retention.
//!
//! The checkpoint signing key is a deployment secret wrapped by the root key, so every node of
//! a deployment signs with the same key. Entry bodies are sealed under period keys (one log, one
//! calendar month) wrapped to the deployment's audit public key: appending needs no secret, so
//! a sealed server still logs what it refuses, and reading needs the root key. Retention
//! destroys a month's period keys; the entries' leaf hashes stay, so every checkpoint and proof
//! still verifies.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

use custodian_core::audit::{AuditEvent, Decision, period_of};
use custodian_core::clock::Clock;
use custodian_core::ids::{Region, TenantId};
use custodian_crypto::{
    AuditPublicKey, AuditReaderKey, PeriodKey, PeriodSlot, RootKeyProvider, SealedBody,
};
use custodian_store::{AuditEntry, AuditLog, KeyStore, Store, WrappedAuditKey};
use custodian_tlog::{Checkpoint, CheckpointSigner, Hash, HashReader, Prefetched, Recorder};
use jiff::Timestamp;

use crate::ServerError;

const SIGNING_SECRET: &str = "audit-checkpoint-signing-key";
/// The secret the audit key pair is derived from, wrapped by the root key.
const BODY_SECRET: &str = "audit-body-key";
/// The audit public key, in clear: appenders need it before anyone has entered a root key.
const BODY_PUBLIC: &str = "audit-body-public-key";

pub struct Auditor {
    store: Arc<dyn Store>,
    key_store: Arc<dyn KeyStore>,
    clock: Arc<dyn Clock>,
    /// `None` while sealed: the signing key is wrapped by the root key.
    signer: RwLock<Option<Arc<CheckpointSigner>>>,
    region: Region,
    bodies: BodyKeys,
}

/// The keys of entry bodies this process holds.
#[derive(Default)]
struct BodyKeys {
    public: RwLock<Option<AuditPublicKey>>,
    /// `None` while sealed.
    reader: RwLock<Option<Arc<AuditReaderKey>>>,
    /// The key each (log, period) seals new entries under in this process.
    sealing: Mutex<HashMap<(String, String), NamedKey>>,
    /// Unwrapped keys for reading, by (log, key id).
    opening: Mutex<HashMap<(String, String), Arc<PeriodKey>>>,
}

/// A period key and its id.
type NamedKey = (String, Arc<PeriodKey>);

/// An entry as read back: its stored leaf hash and what is left of its body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogEntry {
    pub index: u64,
    pub leaf: Hash,
    pub body: EntryBody,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EntryBody {
    /// The bytes read: the entry's canonical bytes, unless the row was tampered with (its
    /// leaf hash then no longer matches, which is how verification tells).
    Bytes(Vec<u8>),
    /// Destroyed by audit retention with the rest of its period; the leaf hash stays.
    Destroyed { period: String },
}

/// What one audit retention pass did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuditExpiry {
    /// Periods whose bodies were destroyed, by log key.
    pub destroyed: Vec<(String, Vec<String>)>,
    /// Tenant logs a tenant-wide legal hold keeps whole, with the hold ids.
    pub held: Vec<(String, Vec<String>)>,
}

/// Who did something and through which request: the part of an event every route knows.
#[derive(Clone, Debug)]
pub struct Actor {
    pub id: String,
    pub request_id: Option<String>,
    /// The just-in-time grant the request runs under, carried into each of its events.
    pub grant: Option<String>,
}

impl Actor {
    /// A part of custodian acting on its own (a sweeper, start-up), outside any request.
    pub fn internal(id: impl Into<String>) -> Actor {
        Actor {
            id: id.into(),
            request_id: None,
            grant: None,
        }
    }
}

impl Auditor {
    /// An auditor that appends but cannot sign checkpoints until [`Auditor::unlock`].
    pub fn new(
        store: Arc<dyn Store>,
        key_store: Arc<dyn KeyStore>,
        clock: Arc<dyn Clock>,
        region: Region,
    ) -> Auditor {
        Auditor {
            store,
            key_store,
            clock,
            signer: RwLock::new(None),
            region,
            bodies: BodyKeys::default(),
        }
    }

    /// The data store the logs live in.
    pub fn store(&self) -> &dyn Store {
        self.store.as_ref()
    }

    /// Loads the deployment's checkpoint signing key and audit key pair (creating them on
    /// first start) with the root key.
    pub async fn unlock(&self, root: &dyn RootKeyProvider) -> Result<(), ServerError> {
        let seed = self.deployment_secret(root, SIGNING_SECRET).await?;
        let signer = CheckpointSigner::from_seed(&format!("custodian-{}", self.region), &seed)
            .map_err(|e| ServerError::Internal(format!("checkpoint signer: {e}")))?;
        let reader = AuditReaderKey::derive(&self.deployment_secret(root, BODY_SECRET).await?);
        let public = reader.public().to_bytes();
        self.store
            .insert_system_secret(BODY_PUBLIC, public.clone())
            .await?;
        // A public key that is not this deployment's would have every later entry sealed to
        // someone else: refuse to run on a data store that says so.
        if self.store.system_secret(BODY_PUBLIC).await?.as_deref() != Some(public.as_slice()) {
            return Err(ServerError::Config(
                "the audit public key in the data store does not belong to this deployment's audit key (the store was altered, or belongs to another deployment)".into(),
            ));
        }
        *write(&self.bodies.public) = Some(reader.public().clone());
        *write(&self.bodies.reader) = Some(Arc::new(reader));
        *write(&self.signer) = Some(Arc::new(signer));
        Ok(())
    }

    /// A deployment secret wrapped by the root key, made on first use; across nodes the first
    /// one stored wins.
    async fn deployment_secret(
        &self,
        root: &dyn RootKeyProvider,
        name: &str,
    ) -> Result<zeroize::Zeroizing<[u8; 32]>, ServerError> {
        let store = &self.store;
        let wrapped = match store.system_secret(name).await? {
            Some(w) => w,
            None => {
                let (_, wrapped) = root.new_secret(name)?;
                store.insert_system_secret(name, wrapped).await?;
                store
                    .system_secret(name)
                    .await?
                    .ok_or_else(|| ServerError::Internal(format!("{name} vanished")))?
            }
        };
        Ok(root.unwrap_secret(name, &wrapped)?)
    }

    /// Forgets every secret it holds (sealing): the signing key, the audit private key and
    /// the period keys. Entries written while sealed go under new period keys.
    pub fn lock(&self) {
        *write(&self.signer) = None;
        *write(&self.bodies.reader) = None;
        lock(&self.bodies.sealing).clear();
        lock(&self.bodies.opening).clear();
    }

    fn signer(&self) -> Result<Arc<CheckpointSigner>, ServerError> {
        read(&self.signer).clone().ok_or(ServerError::Sealed)
    }

    /// The public key that verifies this deployment's checkpoints (note verifier-key format).
    pub fn verifier_key(&self) -> Result<String, ServerError> {
        Ok(self.signer()?.verifier_key())
    }

    /// Signs `text` as a signed note with the deployment key (deletion certificates).
    pub fn sign_note(&self, text: &str) -> Result<String, ServerError> {
        self.signer()?
            .note_signer()
            .sign_text(text)
            .map_err(tlog_error)
    }

    /// The checkpoint origin of a log: unique per deployment region and log.
    pub fn origin(&self, log: &AuditLog) -> String {
        format!("custodian/{}/{}", self.region, log.key())
    }

    /// A new event at the current time.
    pub fn event(
        &self,
        actor: &Actor,
        action: &str,
        tenant: Option<&TenantId>,
        decision: Decision,
    ) -> AuditEvent {
        AuditEvent {
            time: self.clock.now(),
            action: action.to_owned(),
            subsystem: "api".to_owned(),
            actor: actor.id.clone(),
            tenant: tenant.cloned(),
            subjects: Vec::new(),
            objects: Vec::new(),
            before: None,
            after: None,
            decision,
            reason: None,
            request_id: actor.request_id.clone(),
            grant: actor.grant.clone(),
        }
    }

    /// The event of an accepted ingest batch: every record id and each subject pseudonym once.
    pub fn ingest_event(
        &self,
        actor: &Actor,
        tenant: &TenantId,
        batch: &crate::ingest::SealedBatch,
    ) -> AuditEvent {
        let mut event = self.event(
            actor,
            custodian_core::access::Action::IngestRecords.as_str(),
            Some(tenant),
            Decision::Allow,
        );
        event.objects = batch.ids.iter().map(|id| id.to_string()).collect();
        let mut subjects: Vec<[u8; 32]> = batch
            .records
            .iter()
            .flat_map(|r| r.key_subjects.iter().copied())
            .collect();
        subjects.sort_unstable();
        subjects.dedup();
        event.subjects = subjects.iter().map(|p| hex(p)).collect();
        event
    }

    /// Appends one event; the caller's action must fail if this does.
    pub async fn record(&self, log: &AuditLog, event: &AuditEvent) -> Result<u64, ServerError> {
        let entry = self.seal(log, event).await?;
        Ok(self.store.append_audit(log, vec![entry]).await?)
    }

    /// The entry an event becomes in `log`: its leaf hash and its body sealed under the
    /// log's key for the event's month. Before the deployment's first unseal there is no
    /// audit key yet and the body stays in clear.
    pub async fn seal(
        &self,
        log: &AuditLog,
        event: &AuditEvent,
    ) -> Result<AuditEntry, ServerError> {
        let canonical = event.canonical_bytes();
        let period = period_of(event.time);
        let Some((key_id, key)) = self.sealing_key(log, &period).await? else {
            return Ok(AuditEntry::clear(canonical));
        };
        let leaf = custodian_tlog::leaf_hash(&canonical);
        let body = key.seal(&key_id, &entry_context(log, &leaf), &canonical)?;
        Ok(AuditEntry { leaf, body })
    }

    /// [`Auditor::seal`] into the log of the event's tenant, or the system log.
    pub async fn entry(&self, event: &AuditEvent) -> Result<AuditEntry, ServerError> {
        let log = match &event.tenant {
            Some(t) => AuditLog::Tenant(t.clone()),
            None => AuditLog::System,
        };
        self.seal(&log, event).await
    }

    async fn sealing_key(
        &self,
        log: &AuditLog,
        period: &str,
    ) -> Result<Option<NamedKey>, ServerError> {
        let slot = (log.key().to_owned(), period.to_owned());
        if let Some(found) = lock(&self.bodies.sealing).get(&slot) {
            return Ok(Some(found.clone()));
        }
        let Some(public) = self.public_key().await? else {
            return Ok(None);
        };
        // Concurrent first appends may each make a key; a period may have several.
        let id = format!("{period}/{}", hex(&custodian_crypto::random_bytes::<12>()?));
        let place = PeriodSlot {
            log: log.key(),
            period,
            id: &id,
        };
        let (key, wrapped) = PeriodKey::generate(&public, &place)?;
        let stored = self
            .key_store
            .insert_audit_key(WrappedAuditKey {
                log: log.key().to_owned(),
                period: period.to_owned(),
                id: id.clone(),
                wrapped,
            })
            .await?;
        if !stored {
            return Err(ServerError::Internal(format!(
                "audit period {period} of log {} was destroyed by retention; an event dated in it cannot be logged (is the clock wrong?)",
                log.key()
            )));
        }
        let key = Arc::new(key);
        lock(&self.bodies.sealing).insert(slot, (id.clone(), key.clone()));
        Ok(Some((id, key)))
    }

    async fn public_key(&self) -> Result<Option<AuditPublicKey>, ServerError> {
        if let Some(public) = read(&self.bodies.public).clone() {
            return Ok(Some(public));
        }
        let Some(bytes) = self.store.system_secret(BODY_PUBLIC).await? else {
            return Ok(None);
        };
        let public = AuditPublicKey::from_bytes(&bytes)?;
        *write(&self.bodies.public) = Some(public.clone());
        Ok(Some(public))
    }

    /// Entries `[start, end)` of a log with their stored leaf hashes, bodies opened.
    pub async fn entries(
        &self,
        log: &AuditLog,
        start: u64,
        end: u64,
    ) -> Result<Vec<LogEntry>, ServerError> {
        let bodies = self.store.audit_entries(log, start, end).await?;
        let leaf_ids: Vec<custodian_tlog::NodeId> = (start..end)
            .map(|i| custodian_tlog::NodeId::new(0, i))
            .collect();
        let leaves = self.store.audit_nodes(log, &leaf_ids).await?;
        let mut wanted: Vec<String> = Vec::new();
        for body in &bodies {
            if let Ok(SealedBody::Sealed { key_id, .. }) = SealedBody::parse(body) {
                wanted.push(key_id.to_owned());
            }
        }
        wanted.sort_unstable();
        wanted.dedup();
        let keys = self.opening_keys(log, &wanted).await?;
        let shredded: Vec<String> = if keys.len() < wanted.len() {
            let shreds = self.key_store.audit_shreds(log.key()).await?;
            shreds.into_iter().map(|s| s.period).collect()
        } else {
            Vec::new()
        };
        let mut out = Vec::with_capacity(bodies.len());
        for ((body, leaf), index) in bodies.into_iter().zip(leaves).zip(start..) {
            let opened = match SealedBody::parse(&body) {
                Ok(SealedBody::Sealed { key_id, .. }) => match keys.get(key_id) {
                    Some(key) => match key.open(&body, &entry_context(log, &leaf)) {
                        Ok(canonical) => EntryBody::Bytes(canonical),
                        // Tampered: hand back what is stored, which no longer hashes to
                        // the leaf.
                        Err(_) => EntryBody::Bytes(body),
                    },
                    None => {
                        let period = key_id.split('/').next().unwrap_or_default().to_owned();
                        if shredded.contains(&period) {
                            EntryBody::Destroyed { period }
                        } else {
                            return Err(ServerError::Internal(format!(
                                "audit key {key_id} of log {} is missing from the key store, and its period was never destroyed",
                                log.key()
                            )));
                        }
                    }
                },
                _ => EntryBody::Bytes(body),
            };
            out.push(LogEntry {
                index,
                leaf,
                body: opened,
            });
        }
        Ok(out)
    }

    /// The period keys `ids` of `log` that still exist, unwrapped.
    async fn opening_keys(
        &self,
        log: &AuditLog,
        ids: &[String],
    ) -> Result<HashMap<String, Arc<PeriodKey>>, ServerError> {
        let mut found = HashMap::new();
        let mut missing = Vec::new();
        {
            let cache = lock(&self.bodies.opening);
            for id in ids {
                match cache.get(&(log.key().to_owned(), id.clone())) {
                    Some(k) => {
                        found.insert(id.clone(), k.clone());
                    }
                    None => missing.push(id.clone()),
                }
            }
        }
        if missing.is_empty() {
            return Ok(found);
        }
        let reader = read(&self.bodies.reader)
            .clone()
            .ok_or(ServerError::Sealed)?;
        for wrapped in self.key_store.audit_keys(log.key(), &missing).await? {
            let slot = PeriodSlot {
                log: log.key(),
                period: &wrapped.period,
                id: &wrapped.id,
            };
            let key = Arc::new(PeriodKey::unwrap(&reader, &slot, &wrapped.wrapped)?);
            lock(&self.bodies.opening)
                .insert((log.key().to_owned(), wrapped.id.clone()), key.clone());
            found.insert(wrapped.id, key);
        }
        Ok(found)
    }

    /// The logs holding periods whose audit retention ended by `now`, and the last such
    /// period: every period up to it may be destroyed.
    pub async fn expired_logs(
        &self,
        now: Timestamp,
        retention: &custodian_core::duration::CalDuration,
    ) -> Result<Option<(String, Vec<AuditLog>)>, ServerError> {
        let Some(through) = custodian_core::audit::last_expired_period(now, retention) else {
            return Ok(None);
        };
        let mut logs = Vec::new();
        for (log, oldest) in self.key_store.oldest_audit_periods().await? {
            if oldest <= through {
                logs.push(AuditLog::from_key(&log)?);
            }
        }
        Ok(Some((through, logs)))
    }

    /// Destroys the bodies of `log`'s entries of every period up to `through` by destroying
    /// their period keys, and audits it in the system log. Returns the periods destroyed.
    pub async fn destroy_periods(
        &self,
        log: &AuditLog,
        through: &str,
        now: Timestamp,
        why: &str,
    ) -> Result<Vec<String>, ServerError> {
        let log_key = log.key().to_owned();
        let periods = self
            .key_store
            .shred_audit_periods(&log_key, through, now)
            .await?;
        if periods.is_empty() {
            return Ok(periods);
        }
        lock(&self.bodies.sealing).retain(|(l, p), _| l != &log_key || p.as_str() > through);
        lock(&self.bodies.opening)
            .retain(|(l, id), _| l != &log_key || id.split('/').next().is_none_or(|p| p > through));
        let mut event = self.event(
            &Actor::internal("retention sweeper"),
            "audit.retention",
            match log {
                AuditLog::Tenant(t) => Some(t),
                AuditLog::System => None,
            },
            Decision::Allow,
        );
        event.subsystem = "sweeper".into();
        event.objects = periods.iter().map(|p| format!("{log_key}/{p}")).collect();
        event.reason = Some(format!(
            "{why}: entry bodies of {} destroyed, leaf hashes kept",
            periods.join(", ")
        ));
        self.record(&AuditLog::System, &event).await?;
        tracing::info!(log = %log_key, periods = %periods.join(","), "audit entry bodies destroyed by retention");
        Ok(periods)
    }

    pub async fn size(&self, log: &AuditLog) -> Result<u64, ServerError> {
        Ok(self.store.audit_size(log).await?)
    }

    /// Runs a tlog computation over stored nodes: it names the nodes it needs, they are
    /// fetched in one query, and it runs again over them.
    async fn with_nodes<T>(
        &self,
        log: &AuditLog,
        f: impl Fn(&dyn HashReader) -> Result<T, custodian_tlog::Error>,
    ) -> Result<T, ServerError> {
        let recorder = Recorder::new();
        if let Ok(done) = f(&recorder) {
            return Ok(done);
        }
        let ids = recorder.into_ids();
        let hashes = self.store.audit_nodes(log, &ids).await?;
        f(&Prefetched::new(ids.into_iter().zip(hashes))).map_err(tlog_error)
    }

    /// A freshly signed checkpoint of the log's current head.
    pub async fn checkpoint(&self, log: &AuditLog) -> Result<String, ServerError> {
        let size = self.size(log).await?;
        let root = self
            .with_nodes(log, |r| custodian_tlog::root(r, size))
            .await?;
        self.signer()?
            .sign(&Checkpoint::new(self.origin(log), size, root))
            .map_err(tlog_error)
    }

    pub async fn inclusion_proof(
        &self,
        log: &AuditLog,
        index: u64,
        size: u64,
    ) -> Result<Vec<Hash>, ServerError> {
        self.check_size(log, size).await?;
        self.with_nodes(log, |r| custodian_tlog::inclusion_proof(r, index, size))
            .await
    }

    pub async fn consistency_proof(
        &self,
        log: &AuditLog,
        from: u64,
        to: u64,
    ) -> Result<Vec<Hash>, ServerError> {
        self.check_size(log, to).await?;
        self.with_nodes(log, |r| custodian_tlog::consistency_proof(r, from, to))
            .await
    }

    async fn check_size(&self, log: &AuditLog, size: u64) -> Result<(), ServerError> {
        let current = self.size(log).await?;
        if size > current {
            return Err(ServerError::Invalid(format!(
                "size {size} is beyond the log's current size {current}"
            )));
        }
        Ok(())
    }
}

/// What a sealed body is bound to: its log and leaf hash, so it cannot be moved to another
/// place in any log.
fn entry_context(log: &AuditLog, leaf: &Hash) -> Vec<u8> {
    let mut context = log.key().as_bytes().to_vec();
    context.push(b'\n');
    context.extend_from_slice(leaf);
    context
}

fn read<T: Clone>(lock: &RwLock<T>) -> T {
    lock.read().unwrap_or_else(|p| p.into_inner()).clone()
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(|p| p.into_inner())
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

/// Lower-case hex, the form pseudonyms take in audit events.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    out
}

fn tlog_error(e: custodian_tlog::Error) -> ServerError {
    use custodian_tlog::Error as E;
    match e {
        E::IndexOutOfRange { .. } | E::InvalidRange { .. } => ServerError::Invalid(e.to_string()),
        other => ServerError::Internal(format!("audit log: {other}")),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn hex_is_lower_case_two_digits_per_byte() {
        assert_eq!(super::hex(&[0x00, 0x0f, 0xab, 0xff]), "000fabff");
        assert_eq!(super::hex(&[]), "");
    }
}
