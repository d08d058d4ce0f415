//! `custodian audit key|export|verify`: the deployment's verifier key, a tenant's log exported
//! as a bundle, and the offline verification of such a bundle.

use std::io::{BufReader, Write};
use std::path::Path;

use anyhow::anyhow;
use custodian_tlog::bundle;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Deserialize;

use super::client::{Client, refused, unreachable};
use crate::args::AuditCommand;
use crate::exit::{CmdResult, Failure, invalid};

const PAGE: u64 = 1000;

pub async fn run(cmd: AuditCommand) -> CmdResult {
    match cmd {
        AuditCommand::Key { store: args } => {
            let state = super::open_state(&args).await?;
            let key = state.audit.verifier_key().map_err(|e| match e {
                custodian_server::ServerError::Sealed => invalid(
                    "the root key is Shamir-split, so this command cannot open it offline; ask a running, unsealed server (GET /v1/system/audit/key)",
                ),
                other => super::server_failure(other),
            })?;
            println!("{key}");
            Ok(())
        }
        AuditCommand::Export { client, out } => export(Client::new(&client)?, &out).await,
        AuditCommand::Verify {
            bundle,
            key,
            previous,
        } => verify(&bundle, &key, previous.as_deref()),
    }
}

#[derive(Deserialize)]
struct Entries {
    entries: Vec<Entry>,
}

#[derive(Deserialize)]
struct Entry {
    index: u64,
    entry: String,
    leaf_hash: String,
}

async fn get(client: &Client, rest: &str) -> Result<reqwest::Response, Failure> {
    let response = client
        .http
        .get(client.url(rest))
        .bearer_auth(&client.token)
        .send()
        .await
        .map_err(|e| unreachable(&client.base, e))?;
    if response.status().is_success() {
        Ok(response)
    } else {
        Err(refused(response, 1).await)
    }
}

async fn export(client: Client, out: &Path) -> CmdResult {
    let internal = |e: &dyn std::fmt::Display| Failure::Internal(anyhow!("{e}"));
    let note = get(&client, "audit/checkpoint")
        .await?
        .text()
        .await
        .map_err(|e| internal(&e))?;
    let size: u64 = note
        .lines()
        .nth(1)
        .and_then(|l| l.parse().ok())
        .ok_or_else(|| internal(&"the server's checkpoint has no tree size"))?;
    let file = std::fs::File::create(out)
        .map_err(|e| invalid(format!("cannot create {}: {e}", out.display())))?;
    let mut file = std::io::BufWriter::new(file);
    let write_err = |e: std::io::Error| invalid(format!("cannot write {}: {e}", out.display()));
    file.write_all(bundle::header(&note).as_bytes())
        .map_err(write_err)?;
    let progress = ProgressBar::new(size).with_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} entries ({eta} left)")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let mut start = 0;
    while start < size {
        let end = (start + PAGE).min(size);
        let page: Entries = get(&client, &format!("audit/entries?start={start}&end={end}"))
            .await?
            .json()
            .await
            .map_err(|e| internal(&e))?;
        for e in page.entries {
            writeln!(file, "{} {} {}", e.index, e.entry, e.leaf_hash).map_err(write_err)?;
        }
        progress.set_position(end);
        start = end;
    }
    file.flush().map_err(write_err)?;
    progress.finish_and_clear();
    eprintln!(
        "exported {size} entries of tenant {} to {}",
        client.tenant,
        out.display()
    );
    Ok(())
}

fn verify(path: &Path, key: &str, previous: Option<&Path>) -> CmdResult {
    let verifier = custodian_tlog::Verifier::parse(key).map_err(|e| {
        invalid(format!(
            "--key is not a verifier key ({e}); print it with `custodian audit key`"
        ))
    })?;
    let previous = previous
        .map(|p| {
            std::fs::read_to_string(p)
                .map_err(|e| invalid(format!("cannot read {}: {e}", p.display())))
        })
        .transpose()?;
    let file = std::fs::File::open(path)
        .map_err(|e| invalid(format!("cannot open {}: {e}", path.display())))?;
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let progress = ProgressBar::new(len).with_style(
        ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} verified")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let reader = BufReader::new(progress.wrap_read(file));
    let verified = bundle::verify(reader, &verifier, previous.as_deref(), |_| {})
        .map_err(|e| invalid(format!("{}: {e}", path.display())));
    progress.finish_and_clear();
    let verified = verified?;
    println!(
        "{}: OK: {} entries of {} match the checkpoint signed by {}{}",
        path.display(),
        verified.checkpoint.size,
        verified.checkpoint.origin,
        verifier.name(),
        if previous.is_some() {
            " and extend the trusted checkpoint"
        } else {
            ""
        }
    );
    Ok(())
}
