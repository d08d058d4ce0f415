//! The project's OIDC test provider (`scripts/oidc-provider/server.mjs`: `oidc-provider` on
//! Node), run on a free loopback port and issuing JWT access tokens by the client_credentials
//! grant. The integration tests and the access benchmark each include this file; each decides
//! what a missing provider means for it (a skip, or a failure under CI).

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

/// A running provider; dropping it stops the process.
pub struct OidcProvider {
    child: Child,
    /// `http://127.0.0.1:<port>`.
    pub issuer: String,
    pub http: reqwest::Client,
}

fn provider_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scripts/oidc-provider")
}

/// Why the provider cannot run here, if it cannot (`scripts/install-test-deps` installs it).
pub fn provider_missing() -> Option<String> {
    match Command::new("node").arg("--version").output() {
        Ok(out) if out.status.success() => {}
        Ok(out) => return Some(format!("`node --version` failed: {}", out.status)),
        Err(e) => return Some(format!("node is not installed ({e})")),
    }
    let package = provider_dir().join("node_modules/oidc-provider/package.json");
    (!package.exists()).then(|| format!("{} is missing", package.display()))
}

impl OidcProvider {
    /// Starts the provider with these clients (each with its tenant, roles and optionally
    /// `alg`, `amr`, `ttl`) for tokens of `audience`. Check [`provider_missing`] first.
    pub async fn launch(clients: &Value, audience: &str) -> OidcProvider {
        let mut child = Command::new("node")
            .arg("server.mjs")
            .args(["--port", "0", "--exit-with-stdin"])
            .current_dir(provider_dir())
            .env("CUSTODIAN_TEST_OIDC_CLIENTS", clients.to_string())
            .env("OIDC_AUDIENCE", audience)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn node");
        let stdout = child.stdout.take().expect("piped stdout");
        let line = tokio::time::timeout(
            Duration::from_secs(30),
            tokio::task::spawn_blocking(move || {
                let mut line = String::new();
                BufReader::new(stdout).read_line(&mut line).map(|_| line)
            }),
        )
        .await
        .expect("the provider starts within 30 s")
        .expect("reader task")
        .expect("read the provider's stdout");
        let issuer = line
            .trim()
            .strip_prefix("listening ")
            .unwrap_or_else(|| panic!("unexpected first line from the provider: {line:?}"))
            .to_owned();
        assert!(
            issuer.starts_with("http://127.0.0.1:"),
            "the provider must listen on loopback: {issuer}"
        );
        OidcProvider {
            child,
            issuer,
            http: reqwest::Client::new(),
        }
    }

    /// An access token for `client_id` (whose secret is `<client_id>-secret`) for `resource`,
    /// the audience.
    pub async fn token_for(&self, client_id: &str, resource: &str) -> String {
        let form = reqwest::Url::parse_with_params(
            "http://form/",
            [("grant_type", "client_credentials"), ("resource", resource)],
        )
        .expect("a form body");
        let reply = self
            .http
            .post(format!("{}/token", self.issuer))
            .basic_auth(client_id, Some(format!("{client_id}-secret")))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form.query().unwrap_or_default().to_owned())
            .send()
            .await
            .expect("token request");
        let status = reply.status();
        let body: Value = reply.json().await.expect("token response JSON");
        assert!(
            status.is_success(),
            "token for {client_id}: {status} {body}"
        );
        body["access_token"]
            .as_str()
            .expect("access_token")
            .to_owned()
    }

    /// New signing keys with new kids; the old ones are no longer published.
    pub async fn rotate(&self) -> Value {
        let reply = self
            .http
            .post(format!("{}/test/rotate", self.issuer))
            .send()
            .await
            .expect("rotate request");
        assert!(reply.status().is_success(), "rotate: {}", reply.status());
        reply.json().await.expect("rotation JSON")
    }
}

impl Drop for OidcProvider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
