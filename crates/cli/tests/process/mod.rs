//! The real `custodian` binary as a child process, for tests that need a whole server process:
//! killed with SIGKILL, restarted on the same data, or its log read as an operator would. A
//! [`Backend`] says where the data lives; a [`Server`] is one running `custodian serve`.

#![allow(dead_code)] // each test binary uses its own part of this module

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_custodian");

/// Environment variables of the binary that must not leak in from the caller's shell.
const CUSTODIAN_ENV: &[&str] = &[
    "CUSTODIAN_POLICY",
    "CUSTODIAN_DATA_DIR",
    "CUSTODIAN_DATABASE_URL",
    "CUSTODIAN_LISTEN",
    "CUSTODIAN_BODY_LIMIT",
    "CUSTODIAN_LOG_FORMAT",
    "CUSTODIAN_LOG",
];

/// Where a server keeps its data (SQLite in the data directory, or a PostgreSQL URL) and the
/// policy file it runs (the bundled development policy when `None`).
#[derive(Clone)]
pub struct Backend {
    pub name: &'static str,
    pub database_url: Option<String>,
    pub policy: Option<PathBuf>,
    /// Extra environment for every command (HSM configuration, PINs).
    pub env: Vec<(String, String)>,
}

impl Backend {
    pub fn sqlite() -> Backend {
        Backend {
            name: "sqlite",
            database_url: None,
            policy: None,
            env: Vec::new(),
        }
    }

    /// A fresh schema on the test PostgreSQL server, dropped when the guard drops; `None`
    /// (after a loud notice) when PostgreSQL is absent outside CI.
    pub async fn postgres(prefix: &str) -> Option<(Backend, SchemaGuard)> {
        if !custodian_store::testing::postgres_available().await {
            return None;
        }
        let admin_url = custodian_store::testing::postgres_url();
        let schema = custodian_store::testing::unique_schema(prefix);
        let out = Command::new("psql")
            .arg(&admin_url)
            .args(["-q", "-v", "ON_ERROR_STOP=1", "-c"])
            .arg(format!("CREATE SCHEMA {schema}"))
            .output()
            .expect("run psql (needed to create the test schema)");
        assert!(
            out.status.success(),
            "psql could not create schema {schema}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        // libpq's `options` in the URL (tokio-postgres parses and percent-decodes it): every
        // connection of the server's pool then works in the fresh schema.
        let sep = if admin_url.contains('?') { '&' } else { '?' };
        let url = format!("{admin_url}{sep}options=-csearch_path%3D{schema}");
        let backend = Backend {
            name: "postgres",
            database_url: Some(url),
            policy: None,
            env: Vec::new(),
        };
        Some((backend, SchemaGuard { admin_url, schema }))
    }

    pub fn with_policy(mut self, policy: PathBuf) -> Backend {
        self.policy = Some(policy);
        self
    }

    pub fn with_env(mut self, name: &str, value: &str) -> Backend {
        self.env.push((name.to_owned(), value.to_owned()));
        self
    }

    fn apply(&self, cmd: &mut Command, data_dir: &Path) {
        for var in CUSTODIAN_ENV {
            cmd.env_remove(var);
        }
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        cmd.arg("--data-dir").arg(data_dir);
        if let Some(url) = &self.database_url {
            cmd.arg("--database-url").arg(url);
        }
        if let Some(policy) = &self.policy {
            cmd.arg("--policy").arg(policy);
        }
    }

    /// Runs an offline command (`token create`, …) on this backend's data and returns its
    /// output, whatever its exit status.
    pub fn run(&self, data_dir: &Path, args: &[&str]) -> Output {
        let mut cmd = Command::new(BIN);
        cmd.args(args);
        self.apply(&mut cmd, data_dir);
        cmd.stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("run custodian {args:?}: {e}"))
    }

    /// `custodian token create`: a token for `tenant` (a platform token when `None`).
    pub fn create_token(&self, data_dir: &Path, tenant: Option<&str>, role: &str) -> String {
        let mut args = vec!["token", "create", "--role", role];
        if let Some(tenant) = tenant {
            args.extend(["--tenant", tenant]);
        }
        let out = self.run(data_dir, &args);
        assert!(
            out.status.success(),
            "custodian token create failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        let token = String::from_utf8(out.stdout)
            .expect("token is UTF-8")
            .trim()
            .to_owned();
        assert!(
            token.starts_with("cst_"),
            "unexpected token output {token:?}"
        );
        token
    }
}

/// Drops a test's PostgreSQL schema (and its key-store schema) when the test ends, however it
/// ends.
pub struct SchemaGuard {
    pub admin_url: String,
    pub schema: String,
}

impl Drop for SchemaGuard {
    fn drop(&mut self) {
        let _ = Command::new("psql")
            .arg(&self.admin_url)
            .args(["-q", "-v", "ON_ERROR_STOP=1", "-c"])
            .arg(format!(
                "DROP SCHEMA IF EXISTS {0} CASCADE; DROP SCHEMA IF EXISTS {0}_keys CASCADE",
                self.schema
            ))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// A running `custodian serve` whose stderr goes to `log`; killed (SIGKILL) and reaped when
/// dropped, even on panic.
pub struct Server {
    child: Option<Child>,
    pub base: String,
    log: PathBuf,
}

impl Server {
    fn spawn(backend: &Backend, data_dir: &Path, log: PathBuf, log_filter: &str) -> Server {
        let port = free_port();
        let stderr = File::create(&log).expect("create server log");
        let mut cmd = Command::new(BIN);
        cmd.arg("serve");
        backend.apply(&mut cmd, data_dir);
        cmd.arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .env("CUSTODIAN_LOG", log_filter)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr);
        let child = cmd.spawn().expect("spawn custodian serve");
        Server {
            child: Some(child),
            base: format!("http://127.0.0.1:{port}"),
            log,
        }
    }

    /// Starts `custodian serve` logging at `log_filter` (a `CUSTODIAN_LOG` value) and waits
    /// until it answers `/healthz`. The free port can be taken by someone else before the
    /// server binds it: then it starts again on another one.
    pub async fn start(
        backend: &Backend,
        data_dir: &Path,
        log: PathBuf,
        log_filter: &str,
    ) -> Server {
        let http = reqwest::Client::new();
        for _ in 0..5 {
            let mut server = Server::spawn(backend, data_dir, log.clone(), log_filter);
            if server.wait_healthy(&http).await {
                return server;
            }
        }
        panic!("custodian serve could not bind a free port in 5 attempts");
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn log_tail(&self) -> String {
        let text = self.log_text();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// Waits until this very process has bound its port (its log says so: the port cannot
    /// be answered by some other process) and `/healthz` answers 200. `false` when the port
    /// was taken; panics with the server log on any other failure.
    async fn wait_healthy(&mut self, http: &reqwest::Client) -> bool {
        let deadline = Instant::now() + Duration::from_secs(60);
        let listening = format!("custodian listening on {}", self.base);
        loop {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                if self.log_text().contains("cannot listen on") {
                    self.child = None;
                    return false;
                }
                panic!(
                    "custodian serve exited early with {status}; log:\n{}",
                    self.log_tail()
                );
            }
            if self.log_text().contains(&listening) {
                let answer = http
                    .get(format!("{}/healthz", self.base))
                    .timeout(Duration::from_secs(2))
                    .send()
                    .await;
                if matches!(&answer, Ok(r) if r.status() == reqwest::StatusCode::OK) {
                    return true;
                }
            }
            assert!(
                Instant::now() < deadline,
                "custodian serve did not answer /healthz within 60 s; log:\n{}",
                self.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGKILL: no graceful shutdown, no chance to flush anything.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().expect("kill custodian serve");
            let status = child.wait().expect("reap custodian serve");
            assert!(!status.success(), "the server was killed, not stopped");
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("find a free port")
        .port()
}
