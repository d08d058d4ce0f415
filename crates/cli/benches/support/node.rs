//! A server state on a fresh, empty store (SQLite in a temporary directory, or a PostgreSQL
//! schema of its own), shared by the benchmarks that load records straight into the store or
//! serve it over HTTP. Each benchmark crate that includes it defines `POLICY` (the policy of
//! [`Node::fresh`]) and `tenant()`.

use std::sync::Arc;

use custodian_core::policy::Policy;
use custodian_server::clock::SystemClock;
use custodian_server::keys::TenantKeys;
use custodian_server::{AppState, ServerConfig};
use custodian_store::{StoreConfig, testing};

#[derive(Clone, Copy, PartialEq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

/// A node on a fresh, empty store.
pub struct Node {
    pub backend: Backend,
    pub state: Arc<AppState>,
    pub keys: Arc<TenantKeys>,
    pub config: StoreConfig,
    _dir: tempfile::TempDir,
}

impl Node {
    pub async fn fresh(backend: Backend) -> Node {
        let policy = Policy::parse("default.toml", crate::POLICY).expect("default policy is valid");
        Node::with_policy(backend, policy).await
    }

    /// A node on a fresh, empty store under `policy`.
    pub async fn with_policy(backend: Backend, policy: Policy) -> Node {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = match backend {
            Backend::Sqlite => StoreConfig::Sqlite {
                path: custodian_store::sqlite_path(dir.path()),
            },
            Backend::Postgres => StoreConfig::Postgres {
                url: testing::postgres_url(),
                schema: Some(testing::unique_schema("bench")),
            },
        };
        let server = ServerConfig {
            listen: "127.0.0.1:0".parse().expect("address"),
            data_dir: dir.path().to_owned(),
            database_url: None,
            body_limit: custodian_server::DEFAULT_BODY_LIMIT,
        };
        let state = custodian_server::build_state(policy, &server, &config, Arc::new(SystemClock))
            .await
            .expect("build server state");
        let keys = state
            .keys
            .tenant(&crate::tenant())
            .await
            .expect("tenant keys");
        Node {
            backend,
            state,
            keys,
            config,
            _dir: dir,
        }
    }

    /// Drops the node and, on PostgreSQL, its schemas.
    pub async fn close(self) {
        let Node { state, config, .. } = self;
        drop(state);
        if let StoreConfig::Postgres {
            schema: Some(schema),
            ..
        } = config
        {
            testing::drop_schema(&schema).await;
        }
    }
}
