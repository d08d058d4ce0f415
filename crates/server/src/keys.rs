//! The key service: unwraps tenant keys on first use and keeps them in memory, creating a
//! tenant's first key when it has none. The cache holds only unwrapped keys of tenants that
//! were used; wrapped keys live in the store.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use custodian_core::clock::Clock;
use custodian_core::ids::TenantId;
use custodian_crypto::{RootKeyProvider, TenantKey};
use custodian_store::{Store, WrappedTenantKey};

use crate::ServerError;

/// All unwrapped key versions of one tenant.
#[derive(Debug)]
pub struct Keyring {
    versions: HashMap<u32, Arc<TenantKey>>,
    current: Arc<TenantKey>,
}

impl Keyring {
    pub fn current(&self) -> &Arc<TenantKey> {
        &self.current
    }

    pub fn version(&self, v: u32) -> Option<&Arc<TenantKey>> {
        self.versions.get(&v)
    }
}

pub struct KeyService {
    root: Arc<dyn RootKeyProvider>,
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    cache: RwLock<HashMap<TenantId, Arc<Keyring>>>,
}

impl KeyService {
    pub fn new(
        root: Arc<dyn RootKeyProvider>,
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
    ) -> KeyService {
        KeyService {
            root,
            store,
            clock,
            cache: RwLock::new(HashMap::new()),
        }
    }

    pub fn root_provider(&self) -> &str {
        self.root.name()
    }

    /// The tenant's keyring, loading or creating it on first use.
    pub async fn keyring(&self, tenant: &TenantId) -> Result<Arc<Keyring>, ServerError> {
        if let Some(k) = self
            .cache
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(tenant)
        {
            return Ok(k.clone());
        }
        let mut wrapped = self.store.tenant_keys(tenant).await?;
        if wrapped.is_empty() {
            let (_, bytes) = self.root.new_tenant_key(tenant, 1)?;
            let key = WrappedTenantKey {
                version: 1,
                wrapped: bytes,
                created_at: self.clock.now(),
            };
            // Another node may have created version 1 first; its key wins and is reloaded.
            self.store.insert_tenant_key(tenant, key).await?;
            wrapped = self.store.tenant_keys(tenant).await?;
        }
        let mut versions = HashMap::new();
        for w in &wrapped {
            let key = self.root.unwrap_tenant_key(tenant, w.version, &w.wrapped)?;
            versions.insert(w.version, Arc::new(key));
        }
        let newest = wrapped
            .iter()
            .map(|w| w.version)
            .max()
            .ok_or_else(|| ServerError::Internal("tenant key creation left no key".into()))?;
        let keyring = Arc::new(Keyring {
            current: versions[&newest].clone(),
            versions,
        });
        self.cache
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(tenant.clone(), keyring.clone());
        Ok(keyring)
    }
}
