//! custodian's HTTP server: the API routes, authentication, the key service and the start-up
//! sequence (open the store, load the root key, bind, serve until shutdown).

#![forbid(unsafe_code)]

pub mod audit;
pub mod auth;
mod backup;
pub mod clock;
pub mod deidentify;
pub mod ingest;
pub mod keys;
mod metrics;
pub mod mirror;
pub mod oidc;
mod openapi;
pub mod problem;
pub mod records;
pub mod retention;
mod routes;
pub mod seal;
pub mod subjects;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use custodian_core::clock::Clock;
use custodian_core::policy::Policy;
use custodian_crypto::{CryptoError, SoftwareRootKey};
use custodian_store::{Store, StoreConfig, StoreError};

use crate::keys::KeyService;
use crate::problem::{Kind, Problem};

pub use openapi::openapi_json;

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    #[error("cannot listen on {addr}: {reason}")]
    Bind { addr: SocketAddr, reason: String },
    #[error("{0}")]
    Config(String),
    /// A request parameter the domain refused (e.g. a proof beyond the log).
    #[error("{0}")]
    Invalid(String),
    /// A key the record needs was shredded: it is gone for good.
    #[error("record {record} is unreadable: key {key} was destroyed")]
    KeyDestroyed { record: String, key: String },
    #[error("the server is sealed: no root key is loaded")]
    Sealed,
    #[error("{0}")]
    InvalidShare(String),
    #[error("{0}")]
    AlreadyInitialized(String),
    #[error("{0}")]
    InvalidBackup(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl ServerError {
    /// The API's answer for this error. Details of internal failures stay in the log.
    pub fn into_problem(self) -> Problem {
        match &self {
            ServerError::Invalid(detail) => Problem::new(Kind::InvalidRequest, detail.clone()),
            ServerError::KeyDestroyed { .. } => Problem::new(Kind::KeyDestroyed, self.to_string()),
            ServerError::Sealed => Problem::new(
                Kind::Sealed,
                "the server is sealed; operators unseal it with `custodian operator unseal`",
            ),
            ServerError::InvalidShare(detail) => Problem::new(Kind::InvalidShare, detail.clone()),
            ServerError::AlreadyInitialized(detail) => {
                Problem::new(Kind::AlreadyInitialized, detail.clone())
            }
            ServerError::InvalidBackup(detail) => Problem::new(Kind::InvalidBackup, detail.clone()),
            ServerError::Crypto(CryptoError::Decrypt | CryptoError::Malformed(_)) => {
                tracing::error!(error = %self, "integrity check failed");
                Problem::new(
                    Kind::IntegrityFailure,
                    format!("{self}; nothing was returned"),
                )
            }
            ServerError::Store(StoreError::Unavailable { .. }) => {
                tracing::error!(error = %self, "storage unavailable");
                Problem::new(
                    Kind::StorageUnavailable,
                    "the database cannot be reached; nothing was stored",
                )
            }
            _ => {
                tracing::error!(error = %self, "request failed");
                Problem::new(
                    Kind::Internal,
                    "an unexpected error occurred; nothing was half-stored",
                )
            }
        }
    }
}

/// Everything a request handler needs.
pub struct AppState {
    pub policy: Arc<Policy>,
    pub store: Arc<dyn Store>,
    pub keys: KeyService,
    pub audit: audit::Auditor,
    pub clock: Arc<dyn Clock>,
    pub body_limit: usize,
    pub unsealer: seal::Unsealer,
    /// Where the development root key lives.
    pub data_dir: PathBuf,
    /// Held by every destruction and by hold placement, so a hold is never placed between a
    /// destruction's hold check and its shred.
    pub destruction: tokio::sync::Mutex<()>,
    /// Set once this process applied its policy's retentions to the stored records.
    pub retention_applied: std::sync::atomic::AtomicBool,
    /// Whether the audit mirror's last round reached it (see [`mirror`]).
    pub mirror_reachable: std::sync::atomic::AtomicBool,
    /// Verifies OIDC bearer tokens; `None` when the policy lists no `[access.oidc]` provider.
    pub oidc: Option<oidc::OidcVerifier>,
}

/// How to run the server.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub database_url: Option<String>,
    pub body_limit: usize,
}

pub const DEFAULT_BODY_LIMIT: usize = 16 * 1024 * 1024;

/// Buckets fall due at midnight UTC; a sweep every ten minutes destroys them soon after at
/// the cost of one index scan.
pub const DEFAULT_SWEEP_INTERVAL: std::time::Duration = std::time::Duration::from_secs(600);

/// How often the server looks for tenants whose KEK is due for rotation. Rotation periods
/// are days long; a minute's lateness does not matter.
const ROTATION_CHECK_INTERVAL: std::time::Duration = std::time::Duration::from_secs(60);

impl ServerConfig {
    pub fn store_config(&self) -> StoreConfig {
        match &self.database_url {
            Some(url) => StoreConfig::Postgres {
                url: url.clone(),
                schema: None,
            },
            None => StoreConfig::Sqlite {
                path: custodian_store::sqlite_path(&self.data_dir),
            },
        }
    }
}

/// Loads (creating on first start) the development root key in `data_dir`, and says loudly
/// what it is.
pub fn load_dev_root_key(data_dir: &std::path::Path) -> Result<SoftwareRootKey, ServerError> {
    std::fs::create_dir_all(data_dir).map_err(|e| {
        ServerError::Config(format!(
            "cannot create data directory {}: {e}",
            data_dir.display()
        ))
    })?;
    let path = data_dir.join("dev-root.key");
    let (key, created) = SoftwareRootKey::load_or_create_dev(&path)?;
    let verb = if created { "created" } else { "loaded" };
    tracing::warn!(
        path = %path.display(),
        "DEVELOPMENT ROOT KEY {verb}: anyone who can read this file can decrypt every record. Never use root = \"dev\" in production; choose shamir or pkcs11 in the policy's [keys] section."
    );
    Ok(key)
}

/// Opens the store and keys and builds the application state.
pub async fn build_state(
    policy: Policy,
    config: &ServerConfig,
    store_config: &StoreConfig,
    clock: Arc<dyn Clock>,
) -> Result<Arc<AppState>, ServerError> {
    // Install the metrics recorder before the first request, so no count is lost.
    metrics::handle();
    let store: Arc<dyn Store> = Arc::from(custodian_store::open(store_config).await?);
    let key_store: Arc<dyn custodian_store::KeyStore> =
        Arc::from(custodian_store::open_key_store(store_config).await?);
    tracing::info!(backend = store.backend(), "store and key store opened");
    let audit = audit::Auditor::new(
        store.clone(),
        key_store.clone(),
        clock.clone(),
        policy.deployment.region.clone(),
    );
    let oidc = if policy.access.oidc.is_empty() {
        None
    } else {
        let http = oidc::http_client().map_err(|e| ServerError::Config(e.to_string()))?;
        Some(oidc::OidcVerifier::new(policy.access.oidc.clone(), http).with_clock(clock.clone()))
    };
    let state = Arc::new(AppState {
        policy: Arc::new(policy),
        audit,
        keys: KeyService::new(key_store, clock.clone()),
        store,
        clock,
        body_limit: config.body_limit,
        unsealer: seal::Unsealer::default(),
        data_dir: config.data_dir.clone(),
        destruction: tokio::sync::Mutex::new(()),
        retention_applied: std::sync::atomic::AtomicBool::new(false),
        mirror_reachable: std::sync::atomic::AtomicBool::new(false),
        oidc,
    });
    seal::open_configured_root(&state).await?;
    Ok(state)
}

/// Builds the router for `state`.
pub fn router(state: Arc<AppState>) -> axum::Router {
    routes::router(state)
}

/// Binds `listen` and serves until `shutdown` resolves, sweeping every `sweep_interval`
/// (none: sweeps run only on request). Plain HTTP is refused on
/// anything but loopback: custody data never crosses a network unencrypted.
pub async fn serve(
    state: Arc<AppState>,
    listen: SocketAddr,
    sweep_interval: Option<std::time::Duration>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    on_bound: impl FnOnce(SocketAddr),
) -> Result<(), ServerError> {
    if !listen.ip().is_loopback() {
        return Err(ServerError::Config(format!(
            "refusing to serve plain HTTP on non-loopback address {listen}; listen on 127.0.0.1 or ::1 and put a TLS-terminating proxy in front"
        )));
    }
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| ServerError::Bind {
            addr: listen,
            reason: e.to_string(),
        })?;
    let bound = listener.local_addr().map_err(|e| ServerError::Bind {
        addr: listen,
        reason: e.to_string(),
    })?;
    // Audited before anyone is told the server is up, so the log never misses a start.
    lifecycle_event(&state, "server.start", format!("listening on {bound}")).await?;
    on_bound(bound);
    let rotation = keys::spawn_rotation_job(state.clone(), ROTATION_CHECK_INTERVAL);
    let sweeper = sweep_interval.map(|every| retention::spawn_sweeper(state.clone(), every));
    let mirror = state
        .policy
        .deployment
        .audit_mirror
        .clone()
        .map(|config| mirror::spawn(state.clone(), config));
    let served = axum::serve(listener, router(state.clone()))
        .with_graceful_shutdown(shutdown)
        .await;
    rotation.abort();
    for job in [sweeper, mirror].into_iter().flatten() {
        job.abort();
    }
    served.map_err(|e| ServerError::Internal(e.to_string()))?;
    lifecycle_event(&state, "server.stop", "graceful shutdown".into()).await
}

/// Start and stop are audited in the system log (seed 003: process start-up and shutdown).
async fn lifecycle_event(
    state: &AppState,
    action: &str,
    reason: String,
) -> Result<(), ServerError> {
    let actor = audit::Actor::internal("system");
    let mut event = state
        .audit
        .event(&actor, action, None, custodian_core::audit::Decision::Allow);
    event.subsystem = "server".into();
    event.reason = Some(format!(
        "{reason}; store {}; root key {}",
        state.store.backend(),
        state.keys.root_provider()
    ));
    state
        .audit
        .record(&custodian_store::AuditLog::System, &event)
        .await
        .map(|_| ())
}
