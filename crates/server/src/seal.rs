//! The root of trust's life cycle: initialising it, unsealing (installing the root key in the
//! key service and the audit signer) and sealing (forgetting every key in memory).
//!
//! The key store keeps one root record, written once: which provider made the root key and a
//! root check only that key opens, plus, for Shamir, the threshold and a fingerprint of every
//! share. A root key that fails the check is refused whatever its provider, so a wrong key
//! file, a wrong HSM key or a wrong set of shares never unlocks anything; a share whose
//! fingerprint is unknown is refused the moment it is offered.

use std::sync::{Arc, Mutex};

use custodian_core::audit::Decision;
use custodian_core::policy::RootKeyConfig;
use custodian_crypto::shamir::{self, Share};
use custodian_crypto::{
    CryptoError, Pkcs11Config, Pkcs11RootKey, RootKeyProvider, SoftwareRootKey,
};
use custodian_store::AuditLog;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::audit::Actor;
use crate::{AppState, ServerError};

/// The key-store meta entry holding the [`RootRecord`].
const ROOT_RECORD: &str = "root";

#[derive(Serialize, Deserialize)]
struct RootRecord {
    provider: String,
    check: Vec<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    shamir: Option<ShamirRecord>,
}

#[derive(Serialize, Deserialize)]
struct ShamirRecord {
    shares: u8,
    threshold: u8,
    fingerprints: Vec<[u8; 32]>,
}

/// Shares given so far in the current unseal. Dropping a share wipes it.
#[derive(Default)]
pub struct Unsealer {
    pending: Mutex<Vec<Share>>,
}

impl Unsealer {
    fn pending(&self) -> std::sync::MutexGuard<'_, Vec<Share>> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// What `GET /v1/system/seal-status` and each unseal step answer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SealStatus {
    /// The provider the policy names: dev, shamir or pkcs11.
    pub provider: &'static str,
    pub initialized: bool,
    pub sealed: bool,
    /// Shamir: shares needed, shares made, and shares given so far in this unseal.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub threshold: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shares: Option<u8>,
    pub progress: u8,
}

async fn load_record(state: &AppState) -> Result<Option<RootRecord>, ServerError> {
    let Some(bytes) = state.keys.store().meta(ROOT_RECORD).await? else {
        return Ok(None);
    };
    let record: RootRecord = serde_json::from_slice(&bytes).map_err(|e| {
        ServerError::Internal(format!("the key store's root record is damaged: {e}"))
    })?;
    let configured = state.policy.keys.root.name();
    if record.provider != configured {
        return Err(ServerError::Config(format!(
            "this deployment's root key was made by the {} provider, but the policy's [keys] root is {configured:?}; moving a deployment between root providers is not supported",
            record.provider
        )));
    }
    Ok(Some(record))
}

async fn store_record(state: &AppState, record: &RootRecord) -> Result<(), ServerError> {
    let bytes = serde_json::to_vec(record)
        .map_err(|e| ServerError::Internal(format!("root record: {e}")))?;
    if state.keys.store().insert_meta(ROOT_RECORD, bytes).await? {
        Ok(())
    } else {
        Err(ServerError::AlreadyInitialized(
            "another node initialised the root key first".into(),
        ))
    }
}

/// Opens the root key the policy configures at start-up. Dev and PKCS#11 keys are loaded
/// (and on first start created and recorded); Shamir leaves the server sealed.
pub async fn open_configured_root(state: &AppState) -> Result<(), ServerError> {
    let record = load_record(state).await?;
    let root: Arc<dyn RootKeyProvider> = match &state.policy.keys.root {
        RootKeyConfig::Dev => Arc::new(crate::load_dev_root_key(&state.data_dir)?),
        RootKeyConfig::Pkcs11 {
            module,
            slot,
            token_label,
            key_label,
            pin_env,
        } => {
            let pin = std::env::var(pin_env).map_err(|_| {
                ServerError::Config(format!(
                    "the HSM PIN is read from ${pin_env} (the policy's [keys] pin_env), which is not set"
                ))
            })?;
            let config = Pkcs11Config {
                module: module.clone(),
                slot: *slot,
                token_label: token_label.clone(),
                key_label: key_label.clone(),
                pin: Zeroizing::new(pin),
            };
            let (key, created) = Pkcs11RootKey::open(&config, record.is_none())?;
            if created {
                tracing::warn!(key_label, "created the root key inside the HSM");
            }
            Arc::new(key)
        }
        RootKeyConfig::Shamir { .. } => {
            if record.is_some() {
                tracing::warn!(
                    "SEALED: no data can be read or written until operators unseal the server with `custodian operator unseal`"
                );
            } else {
                tracing::warn!(
                    "SEALED and not initialised: run `custodian operator init` once to create the root key and its shares"
                );
            }
            return Ok(());
        }
    };
    match record {
        Some(record) => verify(root.as_ref(), &record)?,
        None => {
            let record = RootRecord {
                provider: root.name().to_owned(),
                check: root.new_root_check()?,
                shamir: None,
            };
            store_record(state, &record).await?;
        }
    }
    unlock(state, root).await
}

fn verify(root: &dyn RootKeyProvider, record: &RootRecord) -> Result<(), ServerError> {
    root.verify_root_check(&record.check).map_err(|e| match e {
        CryptoError::WrongRootKey => ServerError::Config(format!(
            "the {} root key is not the one this deployment's keys were made under (the root check fails); check the key file, HSM token and key label",
            root.name()
        )),
        other => other.into(),
    })
}

async fn unlock(state: &AppState, root: Arc<dyn RootKeyProvider>) -> Result<(), ServerError> {
    state.audit.unlock(root.as_ref()).await?;
    state.keys.install_root(root);
    Ok(())
}

fn shamir_config(state: &AppState) -> Result<(u8, u8), ServerError> {
    match state.policy.keys.root {
        RootKeyConfig::Shamir { shares, threshold } => Ok((shares, threshold)),
        ref other => Err(ServerError::Invalid(format!(
            "the policy's root-key provider is {:?}; init and unseal apply to root = \"shamir\"",
            other.name()
        ))),
    }
}

/// Creates the Shamir root key and returns its shares, once. The shares are never stored;
/// the server stays sealed until operators unseal it with them.
pub async fn init_shamir(
    state: &AppState,
    actor: &Actor,
    shares: u8,
    threshold: u8,
) -> Result<Vec<Zeroizing<String>>, ServerError> {
    let (want_shares, want_threshold) = shamir_config(state)?;
    if (shares, threshold) != (want_shares, want_threshold) {
        return Err(ServerError::Invalid(format!(
            "the policy says {want_threshold} of {want_shares} shares; asked for {threshold} of {shares} (change [keys] in the policy to change this)"
        )));
    }
    if load_record(state).await?.is_some() {
        return Err(ServerError::AlreadyInitialized(
            "the root key exists; its shares were printed when it was created".into(),
        ));
    }
    let key = custodian_crypto::random_key()?;
    let split = shamir::split(&key, shares, threshold)?;
    let root = SoftwareRootKey::new("shamir", &key);
    let record = RootRecord {
        provider: "shamir".into(),
        check: (&root as &dyn RootKeyProvider).new_root_check()?,
        shamir: Some(ShamirRecord {
            shares,
            threshold,
            fingerprints: split.iter().map(Share::fingerprint).collect(),
        }),
    };
    store_record(state, &record).await?;
    audit_system(
        state,
        actor,
        "operator.init",
        Decision::Allow,
        format!("Shamir root key created: {threshold} of {shares} shares"),
    )
    .await?;
    Ok(split.iter().map(Share::to_text).collect())
}

/// Takes one share. Refuses a malformed, foreign or repeated share without forgetting the
/// shares already given; at the threshold, rebuilds the root key, checks it and unseals.
pub async fn unseal(
    state: &AppState,
    actor: &Actor,
    text: &str,
) -> Result<SealStatus, ServerError> {
    shamir_config(state)?;
    if !state.keys.is_sealed() {
        return status(state).await;
    }
    let record = load_record(state).await?.ok_or_else(|| {
        ServerError::Invalid(
            "the root key does not exist yet; run `custodian operator init`".into(),
        )
    })?;
    let shamir = record
        .shamir
        .as_ref()
        .ok_or_else(|| ServerError::Internal("the Shamir root record has no shares".into()))?;
    let share = Share::parse(text).map_err(|e| ServerError::InvalidShare(e.to_string()))?;
    if !shamir.fingerprints.contains(&share.fingerprint()) {
        audit_system(
            state,
            actor,
            "operator.unseal",
            Decision::Deny,
            "refused a share that is not one of this deployment's".into(),
        )
        .await?;
        return Err(ServerError::InvalidShare(
            "this share is not one of this deployment's shares".into(),
        ));
    }
    let combined = {
        let mut pending = state.unsealer.pending();
        if pending.iter().any(|s| s.index() == share.index()) {
            return Err(ServerError::InvalidShare(format!(
                "share {} was already given in this unseal; {} distinct shares are needed",
                share.index(),
                shamir.threshold
            )));
        }
        pending.push(share);
        if pending.len() < shamir.threshold as usize {
            None
        } else {
            let taken = std::mem::take(&mut *pending);
            Some(shamir::combine(&taken))
        }
    };
    let Some(key) = combined else {
        audit_system(
            state,
            actor,
            "operator.unseal",
            Decision::Allow,
            "share accepted; still sealed".into(),
        )
        .await?;
        return status(state).await;
    };
    let root = Arc::new(SoftwareRootKey::new("shamir", &*key?));
    verify(root.as_ref(), &record)?;
    unlock(state, root).await?;
    audit_system(
        state,
        actor,
        "operator.unseal",
        Decision::Allow,
        "threshold reached; unsealed".into(),
    )
    .await?;
    tracing::info!("unsealed");
    status(state).await
}

/// Seals: the root key, every unwrapped tenant key and the audit signer are dropped (and
/// wiped). Only Shamir deployments can seal, since only they can unseal without a restart.
pub async fn seal(state: &AppState, actor: &Actor) -> Result<SealStatus, ServerError> {
    shamir_config(state)?;
    // Audited before the keys go, while the audit signer still works.
    audit_system(
        state,
        actor,
        "operator.seal",
        Decision::Allow,
        "sealed by an operator".into(),
    )
    .await?;
    state.keys.seal();
    state.audit.lock();
    state.unsealer.pending().clear();
    tracing::warn!("SEALED by an operator");
    status(state).await
}

pub async fn status(state: &AppState) -> Result<SealStatus, ServerError> {
    let record = load_record(state).await?;
    let shamir = record.as_ref().and_then(|r| r.shamir.as_ref());
    Ok(SealStatus {
        provider: state.policy.keys.root.name(),
        initialized: record.is_some(),
        sealed: state.keys.is_sealed(),
        threshold: shamir.map(|s| s.threshold),
        shares: shamir.map(|s| s.shares),
        progress: state.unsealer.pending().len() as u8,
    })
}

/// Records a key or root-of-trust event in the system log.
pub(crate) async fn audit_system(
    state: &AppState,
    actor: &Actor,
    action: &str,
    decision: Decision,
    reason: String,
) -> Result<(), ServerError> {
    let mut event = state.audit.event(actor, action, None, decision);
    event.subsystem = "keys".into();
    event.reason = Some(reason);
    state
        .audit
        .record(&AuditLog::System, &event)
        .await
        .map(|_| ())
}
