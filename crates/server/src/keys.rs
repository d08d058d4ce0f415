//! The key service: the key hierarchy at run time. It holds the root key while the server is
//! unsealed, unwraps a tenant's index key and KEKs on first use (creating them for a new
//! tenant), gets or creates the bucket DEKs and subject keys a batch needs, and shreds and
//! rotates. Unwrapped keys are cached in memory only, and sealing drops them all; wrapped keys
//! live in the key store, apart from the data.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use custodian_core::clock::Clock;
use custodian_core::duration::CalDuration;
use custodian_core::ids::TenantId;
use custodian_crypto::{DataKey, DataKeyId, IndexKey, Kek, RootKeyProvider};
use custodian_store::{KeyStore, ShredScope, WrappedDataKey, WrappedKek};
use jiff::Timestamp;

use crate::ServerError;

/// Above this many cached data keys a tenant's cache starts over (a simple bound on memory).
const MAX_CACHED_DATA_KEYS: usize = 200_000;
/// Data keys rewrapped per key-store write during rotation.
const REWRAP_PAGE: u32 = 1000;

/// A tenant's unwrapped index key and live KEK versions.
#[derive(Debug)]
pub struct TenantKeys {
    index: IndexKey,
    keks: HashMap<u32, Arc<Kek>>,
    current: Arc<Kek>,
}

impl TenantKeys {
    /// Fails without a KEK: a tenant always has one.
    pub fn new(index: IndexKey, keks: Vec<Kek>) -> Result<TenantKeys, ServerError> {
        let keks: HashMap<u32, Arc<Kek>> = keks
            .into_iter()
            .map(|k| (k.version(), Arc::new(k)))
            .collect();
        let current = keks
            .keys()
            .max()
            .map(|v| keks[v].clone())
            .ok_or_else(|| ServerError::Internal("a tenant needs a KEK".into()))?;
        Ok(TenantKeys {
            index,
            keks,
            current,
        })
    }

    /// The tenant-keyed pseudonym of a subject id.
    pub fn pseudonym(&self, subject: &str) -> [u8; 32] {
        self.index.pseudonym(subject)
    }

    /// The index key, which de-identification keys are expanded from.
    pub fn index_key(&self) -> &IndexKey {
        &self.index
    }

    pub fn current_kek_version(&self) -> u32 {
        self.current.version()
    }
}

/// The data keys a batch or a record needs, by id.
pub type DataKeys = HashMap<DataKeyId, Arc<DataKey>>;

/// What a rotation did.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct Rotation {
    pub from_version: u32,
    pub to_version: u32,
    pub rewrapped: u64,
    pub destroyed_versions: Vec<u32>,
}

/// A tenant's key status, for `custodian keys status`.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct KeyStatus {
    pub tenant: String,
    /// The current KEK version, or none before the tenant's first use.
    pub kek_version: Option<u32>,
    #[schema(value_type = Option<String>)]
    pub kek_created_at: Option<Timestamp>,
    #[schema(value_type = Option<String>)]
    pub next_rotation_due: Option<Timestamp>,
    /// Bucket DEKs and subject keys, wrapped by a KEK.
    pub wrapped_keys: u64,
    /// Wrapped keys still under an older KEK version (an unfinished rotation).
    pub wrapped_by_older_versions: u64,
}

pub struct KeyService {
    /// `None` while sealed.
    root: RwLock<Option<Arc<dyn RootKeyProvider>>>,
    store: Arc<dyn KeyStore>,
    clock: Arc<dyn Clock>,
    tenants: RwLock<HashMap<TenantId, Arc<TenantKeys>>>,
    data: RwLock<HashMap<TenantId, HashMap<DataKeyId, Arc<DataKey>>>>,
    /// One rotation at a time on this node.
    rotating: tokio::sync::Mutex<()>,
}

fn read<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|p| p.into_inner())
}

fn write<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|p| p.into_inner())
}

impl KeyService {
    /// A sealed key service: nothing works until [`KeyService::install_root`].
    pub fn new(store: Arc<dyn KeyStore>, clock: Arc<dyn Clock>) -> KeyService {
        KeyService {
            root: RwLock::new(None),
            store,
            clock,
            tenants: RwLock::new(HashMap::new()),
            data: RwLock::new(HashMap::new()),
            rotating: tokio::sync::Mutex::new(()),
        }
    }

    /// The root key's provider, or `sealed`.
    pub fn root_provider(&self) -> &'static str {
        read(&self.root).as_ref().map_or("sealed", |r| r.name())
    }

    pub fn is_sealed(&self) -> bool {
        read(&self.root).is_none()
    }

    /// The root key, or `Sealed`.
    pub fn root(&self) -> Result<Arc<dyn RootKeyProvider>, ServerError> {
        read(&self.root).clone().ok_or(ServerError::Sealed)
    }

    /// Unseals: from now on tenant keys can be unwrapped. The caller has verified the root.
    pub(crate) fn install_root(&self, root: Arc<dyn RootKeyProvider>) {
        *write(&self.root) = Some(root);
    }

    /// Seals: forgets the root key and every unwrapped key (each wiped as it drops).
    pub(crate) fn seal(&self) {
        *write(&self.root) = None;
        self.forget_all();
    }

    /// Drops every cached unwrapped key, e.g. after a key-store restore.
    pub(crate) fn forget_all(&self) {
        write(&self.tenants).clear();
        write(&self.data).clear();
    }

    pub fn store(&self) -> &dyn KeyStore {
        self.store.as_ref()
    }

    /// The tenant's index key and KEKs, loading or creating them on first use.
    pub async fn tenant(&self, tenant: &TenantId) -> Result<Arc<TenantKeys>, ServerError> {
        if let Some(k) = read(&self.tenants).get(tenant) {
            return Ok(k.clone());
        }
        let root = self.root()?;
        let index = match self.store.index_key(tenant).await? {
            Some(w) => w,
            None => {
                self.refuse_if_tenant_shredded(tenant).await?;
                let (_, wrapped) = root.new_index_key(tenant)?;
                // Another node may have been first: its key wins and is reloaded.
                self.store.insert_index_key(tenant, wrapped).await?;
                self.store
                    .index_key(tenant)
                    .await?
                    .ok_or_else(|| ServerError::Internal("index key creation left no key".into()))?
            }
        };
        let mut wrapped = self.store.keks(tenant).await?;
        if wrapped.is_empty() {
            self.refuse_if_tenant_shredded(tenant).await?;
            let (_, bytes) = root.new_kek(tenant, 1)?;
            self.store
                .insert_kek(
                    tenant,
                    WrappedKek {
                        version: 1,
                        wrapped: bytes,
                        created_at: self.clock.now(),
                    },
                )
                .await?;
            wrapped = self.store.keks(tenant).await?;
        }
        let unwrapped = wrapped
            .iter()
            .map(|w| root.unwrap_kek(tenant, w.version, &w.wrapped))
            .collect::<Result<Vec<_>, _>>()?;
        let keys = Arc::new(TenantKeys::new(
            root.unwrap_index_key(tenant, &index)?,
            unwrapped,
        )?);
        // A seal that raced this load must win: cache nothing without a root.
        if !self.is_sealed() {
            write(&self.tenants).insert(tenant.clone(), keys.clone());
        }
        Ok(keys)
    }

    /// The data keys `ids`, unwrapped. With `create`, missing ones are made (ingest);
    /// without, a missing key is destroyed (`KeyDestroyed`, naming `record`) or corrupt.
    pub async fn data_keys(
        &self,
        tenant: &TenantId,
        ids: &[DataKeyId],
        create: bool,
        record: &str,
    ) -> Result<DataKeys, ServerError> {
        let mut found = DataKeys::with_capacity(ids.len());
        let mut missing = Vec::new();
        {
            let cache = read(&self.data);
            let cached = cache.get(tenant);
            for id in ids {
                match cached.and_then(|c| c.get(id)) {
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
        let mut keys = self.tenant(tenant).await?;
        let texts: Vec<String> = missing.iter().map(DataKeyId::encode).collect();
        let mut stored = self.store.data_keys(tenant, &texts).await?;
        // Keys made here are used as generated: no second read, no unwrap.
        // Ordered: concurrent batches then insert shared new ids in the same order, so two
        // of them never wait on each other's rows (a deadlock on PostgreSQL).
        let mut created: std::collections::BTreeMap<String, (DataKeyId, DataKey)> =
            Default::default();
        if create && stored.len() < missing.len() {
            let have: std::collections::HashSet<&str> =
                stored.iter().map(|w| w.id.as_str()).collect();
            let absent: Vec<String> = texts
                .iter()
                .filter(|t| !have.contains(t.as_str()))
                .cloned()
                .collect();
            // A destroyed key is never made again: records sealed under a new key of the
            // same id would land in a bucket or under a subject already certified destroyed.
            if let Some(gone) = self
                .store
                .shredded(tenant, &absent)
                .await?
                .into_iter()
                .next()
            {
                return Err(ServerError::KeyDestroyed {
                    record: record.to_owned(),
                    key: gone,
                });
            }
            for (id, text) in missing.iter().zip(&texts) {
                if !have.contains(text.as_str()) {
                    created.insert(text.clone(), (id.clone(), DataKey::generate()?));
                }
            }
            let wrap_all = |keys: &TenantKeys| {
                created
                    .iter()
                    .map(|(text, (id, key))| {
                        Ok(WrappedDataKey {
                            id: text.clone(),
                            kek_version: keys.current.version(),
                            wrapped: keys.current.wrap(id, key)?,
                        })
                    })
                    .collect::<Result<Vec<_>, ServerError>>()
            };
            // Written (and durable) before any record is sealed under them. Where a
            // concurrent writer stored a key for the same id first, its key wins. Where
            // another node's rotation retired the KEK this node holds, they are wrapped again
            // under the current one.
            let lost = match self.store.insert_data_keys(tenant, wrap_all(&keys)?).await {
                Err(custodian_store::StoreError::KekRetired { .. }) => {
                    keys = self.reload(tenant).await?;
                    self.store
                        .insert_data_keys(tenant, wrap_all(&keys)?)
                        .await?
                }
                other => other?,
            };
            if !lost.is_empty() {
                for id in &lost {
                    created.remove(id);
                }
                stored.extend(self.store.data_keys(tenant, &lost).await?);
            }
        }
        let by_text: HashMap<&str, &WrappedDataKey> =
            stored.iter().map(|w| (w.id.as_str(), w)).collect();
        if let Some(gone) = texts
            .iter()
            .find(|t| !by_text.contains_key(t.as_str()) && !created.contains_key(*t))
        {
            return Err(self.missing_key(tenant, gone, record).await);
        }
        // Another node may have rotated since this node loaded the tenant's KEKs.
        let keys = if stored
            .iter()
            .any(|w| !keys.keks.contains_key(&w.kek_version))
        {
            self.reload(tenant).await?
        } else {
            keys
        };
        let mut all = write(&self.data);
        let cache = all.entry(tenant.clone()).or_default();
        if cache.len() + missing.len() > MAX_CACHED_DATA_KEYS {
            cache.clear();
        }
        for (id, text) in missing.iter().zip(&texts) {
            let key = match created.remove(text) {
                Some((_, key)) => Arc::new(key),
                None => {
                    let w = by_text[text.as_str()];
                    let kek = keys.keks.get(&w.kek_version).ok_or_else(|| {
                        ServerError::Internal(format!(
                            "data key {text} is wrapped by KEK version {} which is not live",
                            w.kek_version
                        ))
                    })?;
                    Arc::new(kek.unwrap(id, &w.wrapped)?)
                }
            };
            cache.insert(id.clone(), key.clone());
            found.insert(id.clone(), key);
        }
        Ok(found)
    }

    /// A tenant whose keys were all shredded (terminated) never gets new ones: its data and
    /// pseudonyms stay gone.
    async fn refuse_if_tenant_shredded(&self, tenant: &TenantId) -> Result<(), ServerError> {
        let all = custodian_store::keys::TENANT_SHRED.to_owned();
        if self.store.shredded(tenant, &[all]).await?.is_empty() {
            Ok(())
        } else {
            Err(ServerError::KeyDestroyed {
                record: String::new(),
                key: format!("tenant/{tenant} (every key of the tenant)"),
            })
        }
    }

    async fn missing_key(&self, tenant: &TenantId, id: &str, record: &str) -> ServerError {
        match self.store.shredded(tenant, &[id.to_owned()]).await {
            Ok(s) if !s.is_empty() => ServerError::KeyDestroyed {
                record: record.to_owned(),
                key: id.to_owned(),
            },
            Ok(_) => ServerError::Internal(format!("data key {id} is missing from the key store")),
            Err(e) => e.into(),
        }
    }

    /// Destroys data keys (a bucket, a subject) or, with `ShredScope::Tenant`, every key of
    /// the tenant. Idempotent; returns the key ids destroyed by this call.
    pub async fn shred(
        &self,
        tenant: &TenantId,
        scope: ShredScope,
    ) -> Result<Vec<String>, ServerError> {
        let destroyed = self
            .store
            .shred(tenant, scope.clone(), self.clock.now())
            .await?;
        // Forget the unwrapped copies too, so this node stops using them at once.
        let mut cache = write(&self.data);
        match &scope {
            ShredScope::Keys(ids) => {
                if let Some(cached) = cache.get_mut(tenant) {
                    for id in ids.iter().filter_map(|id| DataKeyId::decode(id)) {
                        cached.remove(&id);
                    }
                }
            }
            ShredScope::Tenant => {
                cache.remove(tenant);
                write(&self.tenants).remove(tenant);
            }
        }
        Ok(destroyed)
    }

    /// Makes a new KEK version, rewraps every data key under it (record ciphertext is not
    /// touched), then destroys the older versions. Crash-safe: until the last step both
    /// versions are live, and running it again finishes the job.
    pub async fn rotate(&self, tenant: &TenantId) -> Result<Rotation, ServerError> {
        let _one_at_a_time = self.rotating.lock().await;
        let before = self.reload(tenant).await?;
        let to_version = before.keks.keys().max().copied().unwrap_or(0) + 1;
        let (_, wrapped) = self.root()?.new_kek(tenant, to_version)?;
        self.store
            .insert_kek(
                tenant,
                WrappedKek {
                    version: to_version,
                    wrapped,
                    created_at: self.clock.now(),
                },
            )
            .await?;
        let keys = self.reload(tenant).await?;
        let rewrapped = self.finish_rotation(tenant, &keys).await?;
        let destroyed_versions = self
            .store
            .destroy_keks_before(tenant, to_version, self.clock.now())
            .await?;
        self.reload(tenant).await?;
        Ok(Rotation {
            from_version: before.current.version(),
            to_version,
            rewrapped,
            destroyed_versions,
        })
    }

    /// Rewraps every data key still under an older KEK version with the current one.
    async fn finish_rotation(
        &self,
        tenant: &TenantId,
        keys: &TenantKeys,
    ) -> Result<u64, ServerError> {
        let current = &keys.current;
        let mut after = String::new();
        let mut rewrapped = 0u64;
        loop {
            let page = self
                .store
                .data_keys_below(tenant, current.version(), &after, REWRAP_PAGE)
                .await?;
            let Some(last) = page.last() else {
                return Ok(rewrapped);
            };
            after = last.id.clone();
            let mut out = Vec::with_capacity(page.len());
            for w in &page {
                let id = DataKeyId::decode(&w.id).ok_or_else(|| {
                    ServerError::Internal(format!("data key id {:?} is malformed", w.id))
                })?;
                let old = keys.keks.get(&w.kek_version).ok_or_else(|| {
                    ServerError::Internal(format!(
                        "data key {} is wrapped by KEK version {} which is not live",
                        w.id, w.kek_version
                    ))
                })?;
                let key = old.unwrap(&id, &w.wrapped)?;
                out.push(WrappedDataKey {
                    id: w.id.clone(),
                    kek_version: current.version(),
                    wrapped: current.wrap(&id, &key)?,
                });
            }
            rewrapped += out.len() as u64;
            self.store.rewrap_data_keys(tenant, out).await?;
        }
    }

    async fn reload(&self, tenant: &TenantId) -> Result<Arc<TenantKeys>, ServerError> {
        write(&self.tenants).remove(tenant);
        self.tenant(tenant).await
    }

    /// The tenant's newest KEK version, wrapped (`None` before its first use).
    async fn current_kek(&self, tenant: &TenantId) -> Result<Option<WrappedKek>, ServerError> {
        Ok(self.store.keks(tenant).await?.pop())
    }

    /// Whether the tenant's current KEK is older than `rotate_every` at `now`.
    pub async fn rotation_due(
        &self,
        tenant: &TenantId,
        rotate_every: &CalDuration,
        now: Timestamp,
    ) -> Result<bool, ServerError> {
        Ok(match self.current_kek(tenant).await? {
            Some(kek) => due_at(&kek, rotate_every).is_some_and(|due| due <= now),
            None => false,
        })
    }

    /// The tenant's KEK version, its age and the keys it wraps. Reads only wrapped keys, so
    /// it answers while sealed too.
    pub async fn status(
        &self,
        tenant: &TenantId,
        rotate_every: &CalDuration,
    ) -> Result<KeyStatus, ServerError> {
        let current = self.current_kek(tenant).await?;
        let counts = self.store.count_data_keys(tenant).await?;
        let version = current.as_ref().map(|k| k.version);
        let total: u64 = counts.by_kek_version.iter().map(|(_, n)| n).sum();
        let older: u64 = counts
            .by_kek_version
            .iter()
            .filter(|(v, _)| Some(*v) < version)
            .map(|(_, n)| n)
            .sum();
        Ok(KeyStatus {
            tenant: tenant.to_string(),
            kek_version: version,
            kek_created_at: current.as_ref().map(|k| k.created_at),
            next_rotation_due: current.as_ref().and_then(|k| due_at(k, rotate_every)),
            wrapped_keys: total,
            wrapped_by_older_versions: older,
        })
    }
}

fn due_at(kek: &WrappedKek, rotate_every: &CalDuration) -> Option<Timestamp> {
    rotate_every.after(kek.created_at)
}

/// Rotates `tenant` and records it in the tenant's audit log.
pub async fn rotate_audited(
    state: &crate::AppState,
    actor: &crate::audit::Actor,
    tenant: &TenantId,
    why: &str,
) -> Result<Rotation, ServerError> {
    let rotation = state.keys.rotate(tenant).await?;
    let mut event = state.audit.event(
        actor,
        custodian_core::access::Action::RotateKeys.as_str(),
        Some(tenant),
        custodian_core::audit::Decision::Allow,
    );
    event.subsystem = "keys".into();
    event.objects = vec![
        format!("kek/{}", rotation.from_version),
        format!("kek/{}", rotation.to_version),
    ];
    event.reason = Some(format!(
        "{why}: KEK version {} -> {}, {} data keys rewrapped, versions {:?} destroyed",
        rotation.from_version, rotation.to_version, rotation.rewrapped, rotation.destroyed_versions
    ));
    state
        .audit
        .record(&custodian_store::AuditLog::Tenant(tenant.clone()), &event)
        .await?;
    tracing::info!(%tenant, from = rotation.from_version, to = rotation.to_version, rewrapped = rotation.rewrapped, "KEK rotated");
    Ok(rotation)
}

/// Rotates every policy tenant whose KEK is older than the policy's `rotate_every` at `now`.
/// A sealed server rotates nothing. Returns what it did per tenant.
pub async fn rotate_due(
    state: &crate::AppState,
    now: Timestamp,
) -> Vec<(TenantId, Result<Rotation, ServerError>)> {
    let actor = crate::audit::Actor::internal("system");
    let mut done = Vec::new();
    if state.keys.is_sealed() {
        return done;
    }
    let every = &state.policy.keys.rotate_every;
    for tenant in &state.policy.tenants {
        match state.keys.rotation_due(&tenant.id, every, now).await {
            Ok(false) => {}
            Ok(true) => {
                let why = format!("scheduled (rotate_every {every})");
                let result = rotate_audited(state, &actor, &tenant.id, &why).await;
                done.push((tenant.id.clone(), result));
            }
            Err(e) => done.push((tenant.id.clone(), Err(e))),
        }
    }
    done
}

/// Checks every `interval` for tenants due for rotation, until the server stops.
pub fn spawn_rotation_job(
    state: std::sync::Arc<crate::AppState>,
    interval: std::time::Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            for (tenant, result) in rotate_due(&state, state.clock.now()).await {
                if let Err(e) = result {
                    tracing::error!(%tenant, error = %e, "scheduled KEK rotation failed; it is retried at the next check");
                }
            }
        }
    })
}
