//! The test harness: a real custodian server in-process (SQLite in a temp dir, or PostgreSQL in
//! a fresh schema), tokens issued in its store, and an HTTP client that checks problem+json.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use custodian_core::access::Role;
use custodian_core::clock::Clock;
use custodian_core::ids::TenantId;
use custodian_core::policy::Policy;
pub use custodian_server::DEFAULT_BODY_LIMIT;
use custodian_server::clock::{ShiftedClock, SystemClock};
use custodian_server::{AppState, ServerConfig, ServerError};
use custodian_store::StoreConfig;
use jiff::Timestamp;
use reqwest::header::{self, HeaderMap};
use reqwest::{Method, StatusCode};
use serde_json::Value;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A record id that is well formed but names nothing.
pub const ABSENT_ID: &str = "01HZZZZZZZZZZZZZZZZZZZZZZZ";

/// The repository's `examples/policies` directory.
pub fn policies_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/policies")
}

/// The text of the development policy.
pub fn default_policy_text() -> String {
    let path = policies_dir().join("default.toml");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// The development policy every in-process server runs (tenants acme and globex).
pub fn default_policy() -> Policy {
    Policy::parse("default.toml", &default_policy_text())
        .unwrap_or_else(|d| panic!("the default policy is invalid:\n{d}"))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Defines one `#[tokio::test]` per backend for each `async fn name(server: TestServer)` named,
/// in submodules `sqlite` and `postgres`. PostgreSQL tests skip loudly when no server runs
/// (and fail under `CI=true`).
macro_rules! on_both_backends {
    ($($name:ident),+ $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let server = $crate::harness::TestServer::sqlite().await;
                    super::$name(server).await;
                }
            )+
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    if let Some(server) = $crate::harness::TestServer::postgres().await {
                        super::$name(server).await;
                    }
                }
            )+
        }
    };
}
pub(crate) use on_both_backends;

/// A running in-process server. Dropping it stops the server; dropping the first node also
/// removes the data (the temp directory and, on PostgreSQL, the schema).
pub struct TestServer {
    pub backend: Backend,
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    pub state: Arc<AppState>,
    /// The server's clock: `advance` it to move the server months ahead.
    pub clock: Arc<ShiftedClock>,
    /// The PostgreSQL schema holding this server's tables.
    pub schema: Option<String>,
    body_limit: usize,
    store_config: StoreConfig,
    data_dir: PathBuf,
    /// The temp dir, held by the first node only (which also drops the schema).
    owned_dir: Option<tempfile::TempDir>,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), ServerError>>>,
    http: reqwest::Client,
}

impl TestServer {
    /// Entries `[start, end)` of a log as the server reads them back: canonical bytes, with
    /// the bodies sealed at rest opened. Panics on a destroyed body.
    pub async fn audit_bodies(
        &self,
        log: &custodian_store::AuditLog,
        start: u64,
        end: u64,
    ) -> Vec<Vec<u8>> {
        self.state
            .audit
            .entries(log, start, end)
            .await
            .expect("audit entries")
            .into_iter()
            .map(|e| match e.body {
                custodian_server::audit::EntryBody::Bytes(b) => b,
                other => panic!("entry {} has no body: {other:?}", e.index),
            })
            .collect()
    }

    /// The events of `tenant`'s audit log, decoded, oldest first.
    pub async fn audit_events(&self, tenant: &str) -> Vec<Value> {
        let log = custodian_store::AuditLog::Tenant(TenantId::new(tenant).expect("tenant id"));
        let size = self.state.store.audit_size(&log).await.expect("audit size");
        self.audit_bodies(&log, 0, size)
            .await
            .iter()
            .map(|b| serde_json::from_slice(b).expect("audit event JSON"))
            .collect()
    }

    pub async fn sqlite() -> TestServer {
        TestServer::start(Backend::Sqlite, DEFAULT_BODY_LIMIT)
            .await
            .expect("SQLite is always available")
    }

    /// `None` (after a loud notice) when PostgreSQL is not reachable outside CI.
    pub async fn postgres() -> Option<TestServer> {
        TestServer::start(Backend::Postgres, DEFAULT_BODY_LIMIT).await
    }

    /// Starts a server on 127.0.0.1 (any free port) with the default policy, a fresh data
    /// directory and, on PostgreSQL, a fresh schema.
    pub async fn start(backend: Backend, body_limit: usize) -> Option<TestServer> {
        TestServer::start_with(backend, body_limit, default_policy()).await
    }

    /// `start` with another policy.
    pub async fn start_with(
        backend: Backend,
        body_limit: usize,
        policy: Policy,
    ) -> Option<TestServer> {
        let dir = tempfile::Builder::new()
            .prefix("custodian-it-")
            .tempdir()
            .expect("temp dir");
        let (store_config, schema) = match backend {
            Backend::Sqlite => (
                StoreConfig::Sqlite {
                    path: custodian_store::sqlite_path(dir.path()),
                },
                None,
            ),
            Backend::Postgres => {
                if !custodian_store::testing::postgres_available().await {
                    return None;
                }
                let schema = custodian_store::testing::unique_schema("it");
                (
                    StoreConfig::Postgres {
                        url: custodian_store::testing::postgres_url(),
                        schema: Some(schema.clone()),
                    },
                    Some(schema),
                )
            }
        };
        let data_dir = dir.path().to_owned();
        let clock = Arc::new(ShiftedClock::default());
        let mut server = TestServer::launch(
            backend,
            body_limit,
            policy,
            store_config,
            data_dir,
            schema,
            clock,
        )
        .await;
        server.owned_dir = Some(dir);
        Some(server)
    }

    /// Another node on the same database, root key and clock, as in a multi-node deployment.
    /// Drop it before the first node.
    pub async fn another_node(&self) -> TestServer {
        self.another_node_with((*self.state.policy).clone()).await
    }

    /// [`TestServer::another_node`] running another policy, as after a policy change.
    pub async fn another_node_with(&self, policy: Policy) -> TestServer {
        TestServer::launch(
            self.backend,
            self.body_limit,
            policy,
            self.store_config.clone(),
            self.data_dir.clone(),
            self.schema.clone(),
            self.clock.clone(),
        )
        .await
    }

    async fn launch(
        backend: Backend,
        body_limit: usize,
        policy: Policy,
        store_config: StoreConfig,
        data_dir: PathBuf,
        schema: Option<String>,
        clock: Arc<ShiftedClock>,
    ) -> TestServer {
        let listen: SocketAddr = "127.0.0.1:0".parse().expect("literal address");
        let config = ServerConfig {
            listen,
            data_dir: data_dir.clone(),
            database_url: None,
            body_limit,
        };
        let state = custodian_server::build_state(policy, &config, &store_config, clock.clone())
            .await
            .unwrap_or_else(|e| panic!("build_state ({backend:?}): {e}"));
        let (shutdown_tx, shutdown_rx) = oneshot::channel::<()>();
        let (bound_tx, bound_rx) = oneshot::channel::<SocketAddr>();
        let task = tokio::spawn(custodian_server::serve(
            state.clone(),
            listen,
            None,
            async move {
                let _ = shutdown_rx.await;
            },
            move |addr| {
                let _ = bound_tx.send(addr);
            },
        ));
        let addr = match bound_rx.await {
            Ok(addr) => addr,
            Err(_) => panic!("the server did not bind: {:?}", task.await),
        };
        TestServer {
            backend,
            base: format!("http://{addr}"),
            state,
            clock,
            schema,
            body_limit,
            store_config,
            data_dir,
            owned_dir: None,
            shutdown: Some(shutdown_tx),
            task: Some(task),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .expect("HTTP client"),
        }
    }

    /// The server's time.
    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    /// The data directory (the SQLite files and the development root key).
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Stops serving, waits for the server task and closes this node's store. The data
    /// directory stays until the returned guard is dropped; a PostgreSQL schema is removed.
    pub async fn stop(mut self) -> tempfile::TempDir {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(30), task)
                .await
                .expect("the server stops within 30 s")
                .expect("server task")
                .expect("server ran without error");
        }
        let dir = self
            .owned_dir
            .take()
            .expect("only the first node owns the data directory");
        self.drop_schema();
        dir
    }

    /// Best effort: a left-over schema only costs disk space.
    fn drop_schema(&self) {
        if let Some(schema) = &self.schema {
            let _ = psql(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"));
        }
    }

    /// Issues a token for `tenant` directly in the store. The tenant need not be in the policy.
    pub async fn token(&self, tenant: &str, role: Role) -> String {
        self.issue(TenantId::new(tenant).expect("valid tenant id"), role)
            .await
    }

    /// Issues a platform operator token.
    pub async fn operator_token(&self) -> String {
        self.issue(TenantId::platform(), Role::Operator).await
    }

    /// Issues a token of a platform role (operator, support, approver).
    pub async fn platform_token(&self, role: Role) -> String {
        self.issue(TenantId::platform(), role).await
    }

    async fn issue(&self, tenant: TenantId, role: Role) -> String {
        let issued = custodian_server::auth::issue_token(
            &self.state.audit,
            &SystemClock,
            &custodian_server::auth::TokenIssuer {
                actor: "test-harness",
                subsystem: "test",
            },
            &tenant,
            role,
            None,
        )
        .await
        .expect("issue token");
        issued.token.as_str().to_owned()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Sends any request; `token` becomes `Authorization: Bearer <token>`.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        headers: &[(&str, &str)],
        body: Option<Vec<u8>>,
    ) -> Reply {
        let mut request = self.http.request(method, self.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some(body) = body {
            request = request.body(body);
        }
        let response = request.send().await.expect("request sent");
        Reply {
            status: response.status(),
            headers: response.headers().clone(),
            body: response.bytes().await.expect("response body").to_vec(),
        }
    }

    /// POSTs a JSON body.
    pub async fn post_json(&self, path: &str, token: &str, body: &Value) -> Reply {
        let json = [("content-type", "application/json")];
        self.send(
            Method::POST,
            path,
            Some(token),
            &json,
            Some(body.to_string().into_bytes()),
        )
        .await
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> Reply {
        self.send(Method::GET, path, token, &[], None).await
    }

    pub async fn delete(&self, path: &str, token: &str) -> Reply {
        self.send(Method::DELETE, path, Some(token), &[], None)
            .await
    }

    /// POSTs an NDJSON batch to `tenant`, with an `Idempotency-Key` when given.
    pub async fn post_records(
        &self,
        tenant: &str,
        token: &str,
        body: &str,
        idempotency_key: Option<&str>,
    ) -> Reply {
        let mut headers = vec![("content-type", "application/x-ndjson")];
        if let Some(key) = idempotency_key {
            headers.push(("idempotency-key", key));
        }
        self.send(
            Method::POST,
            &format!("/v1/tenants/{tenant}/records"),
            Some(token),
            &headers,
            Some(body.as_bytes().to_vec()),
        )
        .await
    }

    /// Ingests a batch that must be accepted; returns the new ids in line order.
    pub async fn ingest(&self, tenant: &str, token: &str, body: &str) -> Vec<String> {
        ids_of(&self.post_records(tenant, token, body, None).await.ok_json())
    }

    pub async fn get_record(&self, tenant: &str, token: &str, id: &str) -> Reply {
        self.get(&format!("/v1/tenants/{tenant}/records/{id}"), Some(token))
            .await
    }

    /// One page of a subject's records; `query` is appended as is (`limit=2&after=…`).
    pub async fn list_subject(
        &self,
        tenant: &str,
        token: &str,
        subject: &str,
        query: &str,
    ) -> Reply {
        let mut path = format!("/v1/tenants/{tenant}/subjects/{subject}/records");
        if !query.is_empty() {
            path = format!("{path}?{query}");
        }
        self.get(&path, Some(token)).await
    }

    /// Every record id of a subject, following `next` with pages of `limit`.
    pub async fn subject_ids(
        &self,
        tenant: &str,
        token: &str,
        subject: &str,
        limit: u32,
    ) -> Vec<String> {
        let mut ids = Vec::new();
        let mut query = format!("limit={limit}");
        loop {
            let page = self
                .list_subject(tenant, token, subject, &query)
                .await
                .ok_json();
            let records = page["records"].as_array().expect("records array");
            assert!(
                records.len() <= limit as usize,
                "page larger than limit: {page}"
            );
            ids.extend(
                records
                    .iter()
                    .map(|r| r["id"].as_str().expect("id").to_owned()),
            );
            match page.get("next").and_then(Value::as_str) {
                Some(next) => query = format!("limit={limit}&after={next}"),
                None => return ids,
            }
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            task.abort();
        }
        if self.owned_dir.is_some() {
            self.drop_schema();
        }
    }
}

/// Runs one SQL statement with `psql` against the test database; rows as `|`-separated lines.
pub fn psql(sql: &str) -> Result<String, String> {
    let output = std::process::Command::new("psql")
        .args([
            custodian_store::testing::postgres_url().as_str(),
            "-X",
            "-A",
            "-t",
            "-v",
            "ON_ERROR_STOP=1",
            "-c",
            sql,
        ])
        .output()
        .map_err(|e| format!("cannot run psql: {e}"))?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(format!(
            "psql failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}

/// An HTTP answer, fully read.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(name)
            .map(|v| v.to_str().expect("ASCII header"))
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {} {}", self.status, self.text()))
    }

    /// Asserts `200 application/json` and returns the body.
    pub fn ok_json(&self) -> Value {
        assert_eq!(self.status, StatusCode::OK, "{}", self.text());
        let content_type = self.header(header::CONTENT_TYPE.as_str()).unwrap_or("");
        assert!(
            content_type.starts_with("application/json"),
            "content-type {content_type:?}"
        );
        self.json()
    }

    /// Asserts an RFC 9457 problem of `status` and type `/problems/<slug>`; returns it.
    pub fn problem(&self, status: u16, slug: &str) -> Value {
        assert_eq!(self.status.as_u16(), status, "{}", self.text());
        assert_eq!(
            self.header(header::CONTENT_TYPE.as_str()),
            Some("application/problem+json"),
            "every error is problem+json: {}",
            self.text()
        );
        let problem = self.json();
        assert_eq!(problem["type"], format!("/problems/{slug}"), "{problem}");
        assert_eq!(problem["status"], status, "{problem}");
        for field in ["title", "detail"] {
            assert!(
                problem[field].as_str().is_some_and(|s| !s.is_empty()),
                "problem without {field}: {problem}"
            );
        }
        if status == 401 {
            assert_eq!(
                self.header(header::WWW_AUTHENTICATE.as_str()),
                Some("Bearer realm=\"custodian\""),
                "401 without WWW-Authenticate"
            );
        }
        problem
    }
}

/// The record ids of an accepted batch's answer, checked against its count.
pub fn ids_of(answer: &Value) -> Vec<String> {
    let ids: Vec<String> = answer["ids"]
        .as_array()
        .expect("ids array")
        .iter()
        .map(|v| v.as_str().expect("id string").to_owned())
        .collect();
    assert_eq!(answer["accepted"], ids.len(), "{answer}");
    ids
}

/// One NDJSON line. Records of the default policy's `after_event` type wait for ticket
/// `INC-1` to close; [`pending_line`] names another ticket.
pub fn record_line(data_type: &str, subjects: &[&str], event_time: &str, payload: Value) -> String {
    let event_ref = (data_type == "incident_artifact").then_some("INC-1");
    pending_line(data_type, subjects, event_time, event_ref, payload)
}

/// One NDJSON line with an `event_ref`.
pub fn pending_line(
    data_type: &str,
    subjects: &[&str],
    event_time: &str,
    event_ref: Option<&str>,
    payload: Value,
) -> String {
    let mut line = serde_json::json!({
        "type": data_type,
        "subjects": subjects,
        "event_time": event_time,
        "payload": payload,
    });
    if let Some(r) = event_ref {
        line["event_ref"] = r.into();
    }
    line.to_string()
}

/// A fresh string nobody else uses, for subject ids and markers.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", ulid::Ulid::new())
}

pub fn sorted<T: Ord>(mut v: Vec<T>) -> Vec<T> {
    v.sort();
    v
}

/// Percent-encodes everything but RFC 3986 unreserved characters, for one path segment.
pub fn path_segment(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The system time, through the product's only clock.
pub fn now() -> Timestamp {
    SystemClock.now()
}

/// `t` as the RFC 3339 text a client sends, truncated to whole seconds.
pub fn rfc3339(t: Timestamp) -> String {
    Timestamp::from_second(t.as_second())
        .expect("in range")
        .to_string()
}

pub fn parse_time(v: &Value) -> Timestamp {
    v.as_str()
        .unwrap_or_else(|| panic!("not a timestamp: {v}"))
        .parse()
        .unwrap_or_else(|e| panic!("not a timestamp {v}: {e}"))
}

/// Runs the `custodian` binary off the async workers (so an in-process server keeps
/// answering), without a token from the environment.
pub async fn custodian_cli(args: &[&str]) -> std::process::Output {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_custodian"))
            .args(&args)
            .env_remove("CUSTODIAN_TOKEN")
            .output()
            .expect("run custodian")
    })
    .await
    .expect("custodian runner")
}
