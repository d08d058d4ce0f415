//! The audit service: appends events to the per-tenant and system Merkle logs, signs
//! checkpoints (C2SP signed notes) and serves proofs. The checkpoint signing key is a deployment
//! secret wrapped by the root key, so every node of a deployment signs with the same key.

use std::sync::{Arc, RwLock};

use custodian_core::audit::{AuditEvent, Decision};
use custodian_core::clock::Clock;
use custodian_core::ids::{Region, TenantId};
use custodian_crypto::RootKeyProvider;
use custodian_store::{AuditLog, Store};
use custodian_tlog::{Checkpoint, CheckpointSigner, Hash, HashReader, Prefetched, Recorder};

use crate::ServerError;

const SIGNING_SECRET: &str = "audit-checkpoint-signing-key";

pub struct Auditor {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    /// `None` while sealed: the signing key is wrapped by the root key.
    signer: RwLock<Option<Arc<CheckpointSigner>>>,
    region: Region,
}

/// Who did something and through which request: the part of an event every route knows.
#[derive(Clone, Debug)]
pub struct Actor {
    pub id: String,
    pub request_id: Option<String>,
}

impl Auditor {
    /// An auditor that appends but cannot sign checkpoints until [`Auditor::unlock`].
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>, region: Region) -> Auditor {
        Auditor {
            store,
            clock,
            signer: RwLock::new(None),
            region,
        }
    }

    /// Loads the deployment's checkpoint signing key (creating it on first start) with the
    /// root key.
    pub async fn unlock(&self, root: &dyn RootKeyProvider) -> Result<(), ServerError> {
        let store = &self.store;
        let wrapped = match store.system_secret(SIGNING_SECRET).await? {
            Some(w) => w,
            None => {
                let (_, wrapped) = root.new_secret(SIGNING_SECRET)?;
                // Another node may have stored its key first; that one wins.
                store.insert_system_secret(SIGNING_SECRET, wrapped).await?;
                store
                    .system_secret(SIGNING_SECRET)
                    .await?
                    .ok_or_else(|| ServerError::Internal("signing key vanished".into()))?
            }
        };
        let seed = root.unwrap_secret(SIGNING_SECRET, &wrapped)?;
        let signer = CheckpointSigner::from_seed(&format!("custodian-{}", self.region), &seed)
            .map_err(|e| ServerError::Internal(format!("checkpoint signer: {e}")))?;
        *self.signer.write().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(signer));
        Ok(())
    }

    /// Forgets the signing key (sealing).
    pub fn lock(&self) {
        *self.signer.write().unwrap_or_else(|p| p.into_inner()) = None;
    }

    fn signer(&self) -> Result<Arc<CheckpointSigner>, ServerError> {
        self.signer
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .ok_or(ServerError::Sealed)
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
        Ok(self
            .store
            .append_audit(log, vec![event.canonical_bytes()])
            .await?)
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

/// Lower-case hex, the form pseudonyms take in audit events.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn tlog_error(e: custodian_tlog::Error) -> ServerError {
    use custodian_tlog::Error as E;
    match e {
        E::IndexOutOfRange { .. } | E::InvalidRange { .. } => ServerError::Invalid(e.to_string()),
        other => ServerError::Internal(format!("audit log: {other}")),
    }
}
