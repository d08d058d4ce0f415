//! The HTTP client of the commands that talk to a running server, and how its errors become
//! exit codes: an unreachable server exits 3, a refused request 1 with the problem's detail.

use std::time::Duration;

use anyhow::anyhow;
use serde::Deserialize;

use crate::args::ClientArgs;
use crate::exit::{Failure, invalid};

#[derive(Deserialize)]
struct Problem {
    title: String,
    detail: String,
    #[serde(default)]
    errors: Vec<LineError>,
}

#[derive(Deserialize)]
struct LineError {
    line: usize,
    reason: String,
}

pub struct Client {
    pub http: reqwest::Client,
    pub base: String,
    pub token: String,
    pub tenant: String,
}

impl Client {
    pub fn new(args: &ClientArgs) -> Result<Client, Failure> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(300))
            .build()
            .map_err(|e| Failure::Internal(e.into()))?;
        Ok(Client {
            http,
            base: args.server.trim_end_matches('/').to_owned(),
            token: args.token.clone(),
            tenant: args.tenant.clone(),
        })
    }

    pub fn url(&self, rest: &str) -> String {
        format!("{}/v1/tenants/{}/{rest}", self.base, self.tenant)
    }
}

/// A client for routes outside any tenant (`/v1/system/...`, or a tenant named per call).
pub struct ServerClient {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

impl ServerClient {
    pub fn new(args: &crate::args::ServerArgs) -> Result<ServerClient, Failure> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(3600))
            .build()
            .map_err(|e| Failure::Internal(e.into()))?;
        Ok(ServerClient {
            http,
            base: args.server.trim_end_matches('/').to_owned(),
            token: args.token.clone(),
        })
    }

    /// Sends a request to `path`, with the token when one was given, and returns the body of
    /// a success; an error answer becomes the matching failure.
    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<reqwest::Body>,
        content_type: &str,
    ) -> Result<Vec<u8>, Failure> {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .header(reqwest::header::CONTENT_TYPE, content_type);
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.body(body);
        }
        let response = request
            .send()
            .await
            .map_err(|e| unreachable(&self.base, e))?;
        if !response.status().is_success() {
            return Err(refused(response, 1).await);
        }
        response
            .bytes()
            .await
            .map(|b| b.to_vec())
            .map_err(|e| unreachable(&self.base, e))
    }

    /// Sends a JSON request and streams the answer's body into `out`, a chunk at a time;
    /// returns the bytes written and the answer's headers.
    pub async fn download(
        &self,
        method: reqwest::Method,
        path: &str,
        body: &serde_json::Value,
        out: &std::path::Path,
    ) -> Result<(u64, reqwest::header::HeaderMap), Failure> {
        use std::io::Write;
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.to_string());
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        let mut response = request
            .send()
            .await
            .map_err(|e| unreachable(&self.base, e))?;
        if !response.status().is_success() {
            return Err(refused(response, 1).await);
        }
        let headers = response.headers().clone();
        let file = std::fs::File::create(out)
            .map_err(|e| invalid(format!("cannot create {}: {e}", out.display())))?;
        let mut file = std::io::BufWriter::new(file);
        let write_err = |e: std::io::Error| invalid(format!("cannot write {}: {e}", out.display()));
        let mut written = 0u64;
        while let Some(chunk) = response.chunk().await.map_err(|e| {
            Failure::Internal(anyhow!(
                "the download from {} broke off after {written} bytes: {e}",
                self.base
            ))
        })? {
            file.write_all(&chunk).map_err(write_err)?;
            written += chunk.len() as u64;
        }
        file.flush().map_err(write_err)?;
        Ok((written, headers))
    }

    /// `send` for JSON in and out.
    pub async fn json<T: serde::de::DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<T, Failure> {
        let body = body.map(|b| reqwest::Body::from(b.to_string()));
        let bytes = self.send(method, path, body, "application/json").await?;
        serde_json::from_slice(&bytes).map_err(|e| {
            Failure::Internal(anyhow!("the server's answer is not the expected JSON: {e}"))
        })
    }
}

/// A URL path from segments, each percent-encoded as a path segment needs (a subject id may
/// hold `/`, `?`, spaces or any other character).
pub fn path(segments: &[&str]) -> String {
    let mut url = reqwest::Url::parse("http://localhost/").expect("a fixed, valid URL");
    if let Ok(mut parts) = url.path_segments_mut() {
        parts.pop_if_empty().extend(segments);
    }
    url.path().to_owned()
}

pub fn unreachable(server: &str, e: reqwest::Error) -> Failure {
    Failure::Unreachable(anyhow!(
        "cannot reach the server at {server}: {e}; is `custodian serve` running? (set --server or CUSTODIAN_ADDR)"
    ))
}

/// Turns an error answer into a failure, renumbering batch lines to file lines.
pub async fn refused(response: reqwest::Response, first_line: usize) -> Failure {
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    let Ok(problem) = serde_json::from_str::<Problem>(&text) else {
        return Failure::Internal(anyhow!("the server answered {status}: {text}"));
    };
    let mut msg = format!("{} ({status}): {}", problem.title, problem.detail);
    for e in &problem.errors {
        msg.push_str(&format!(
            "\n  line {}: {}",
            e.line + first_line - 1,
            e.reason
        ));
    }
    if status.is_server_error() {
        Failure::Internal(anyhow!(msg))
    } else {
        invalid(msg)
    }
}
