//! `custodian records put|get`: a client of a running server.
//!
//! `put` streams an NDJSON file in batches, each with its own Idempotency-Key, and retries a
//! batch whose answer was lost: the server stores it at most once. Stored ids go to stdout, one
//! per line; progress and the summary go to stderr.

use std::io::BufRead;
use std::time::Duration;

use reqwest::StatusCode;
use serde::Deserialize;

use super::client::{Client, refused, unreachable};
use crate::args::RecordsCommand;
use crate::exit::{CmdResult, Failure, invalid};

const ATTEMPTS: u32 = 4;

#[derive(Deserialize)]
struct Accepted {
    accepted: usize,
    ids: Vec<String>,
}

pub async fn run(cmd: RecordsCommand) -> CmdResult {
    match cmd {
        RecordsCommand::Put {
            client,
            file,
            batch_size,
        } => put(Client::new(&client)?, &file, batch_size as usize).await,
        RecordsCommand::Get { client, id, reason } => {
            let c = Client::new(&client)?;
            let mut request = c
                .http
                .get(c.url(&format!("records/{id}")))
                .bearer_auth(&c.token);
            if let Some(reason) = reason {
                request = request.header("x-custodian-reason", reason);
            }
            let response = request.send().await.map_err(|e| unreachable(&c.base, e))?;
            if !response.status().is_success() {
                return Err(refused(response, 1).await);
            }
            let value: serde_json::Value = response
                .json()
                .await
                .map_err(|e| Failure::Internal(e.into()))?;
            println!(
                "{}",
                serde_json::to_string_pretty(&value).map_err(|e| Failure::Internal(e.into()))?
            );
            Ok(())
        }
    }
}

async fn put(client: Client, file: &std::path::Path, batch_size: usize) -> CmdResult {
    let (mut lines, progress) = super::open_input(file)?;
    let mut stored = 0usize;
    let mut line_no = 0usize;
    loop {
        let first_line = line_no + 1;
        let mut body = String::new();
        let mut count = 0;
        while count < batch_size {
            let before = body.len();
            let n = lines
                .read_line(&mut body)
                .map_err(|e| invalid(format!("cannot read {}: {e}", file.display())))?;
            if n == 0 {
                break;
            }
            line_no += 1;
            // Blank lines stay in the body (the server's line numbers keep matching the
            // file's) but do not count as records.
            if !body[before..].trim().is_empty() {
                count += 1;
            }
        }
        if count == 0 {
            break;
        }
        let accepted = send_batch(&client, &body, first_line).await?;
        stored += accepted.accepted;
        for id in &accepted.ids {
            println!("{id}");
        }
        progress.set_message(format!("{stored} records"));
    }
    progress.finish_and_clear();
    eprintln!("stored {stored} records for tenant {}", client.tenant);
    Ok(())
}

async fn send_batch(client: &Client, body: &str, first_line: usize) -> Result<Accepted, Failure> {
    let key: String = custodian_crypto::random_bytes::<16>()
        .map_err(|e| Failure::Internal(e.into()))?
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let mut attempt = 0;
    loop {
        attempt += 1;
        let result = client
            .http
            .post(client.url("records"))
            .bearer_auth(&client.token)
            .header("content-type", "application/x-ndjson")
            .header("idempotency-key", &key)
            .body(body.to_owned())
            .send()
            .await;
        let retry = match result {
            Ok(r) if r.status() == StatusCode::OK => {
                return r.json().await.map_err(|e| Failure::Internal(e.into()));
            }
            Ok(r) if r.status().is_server_error() && attempt < ATTEMPTS => {
                format!("server answered {}", r.status())
            }
            Ok(r) => return Err(refused(r, first_line).await),
            Err(e) if attempt < ATTEMPTS => e.to_string(),
            Err(e) => return Err(unreachable(&client.base, e)),
        };
        tracing::warn!(
            attempt,
            reason = retry,
            "batch failed; retrying with the same idempotency key"
        );
        tokio::time::sleep(Duration::from_millis(250 * u64::from(2u32.pow(attempt)))).await;
    }
}
