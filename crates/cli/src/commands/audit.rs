//! `custodian audit key|export|verify|watch`: the deployment's verifier key, a tenant's log
//! exported as a bundle, the offline verification of such a bundle, and the witness that
//! follows the off-box mirror.

use std::io::{BufReader, Write};
use std::path::Path;

use anyhow::anyhow;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use custodian_tlog::bundle;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Deserialize;

use super::client::ServerClient;
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
        AuditCommand::Export {
            server,
            tenant,
            system,
            out,
        } => {
            let (prefix, name) = match (&tenant, system) {
                (Some(t), false) => (format!("/v1/tenants/{t}/audit"), format!("tenant {t}")),
                _ => ("/v1/system/audit".to_owned(), "the system log".to_owned()),
            };
            export(&ServerClient::new(&server)?, &prefix, &name, &out).await
        }
        AuditCommand::Verify {
            bundle,
            key,
            previous,
        } => verify(&bundle, &key, previous.as_deref()),
        AuditCommand::Watch {
            nats,
            stream,
            key,
            once,
        } => watch(&nats, &stream, &key, once).await,
    }
}

#[derive(Deserialize)]
struct Entries {
    entries: Vec<Entry>,
}

#[derive(Deserialize)]
struct Entry {
    index: u64,
    /// Absent once audit retention destroyed the body.
    entry: Option<String>,
    leaf_hash: String,
}

async fn export(client: &ServerClient, prefix: &str, name: &str, out: &Path) -> CmdResult {
    let internal = |e: &dyn std::fmt::Display| Failure::Internal(anyhow!("{e}"));
    let note = String::from_utf8(
        client
            .send(
                reqwest::Method::GET,
                &format!("{prefix}/checkpoint"),
                None,
                "text/plain",
            )
            .await?,
    )
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
        let page: Entries = client
            .json(
                reqwest::Method::GET,
                &format!("{prefix}/entries?start={start}&end={end}"),
                None,
            )
            .await?;
        for e in page.entries {
            let entry = e.entry.as_deref().unwrap_or(bundle::DESTROYED);
            writeln!(file, "{} {entry} {}", e.index, e.leaf_hash).map_err(write_err)?;
        }
        progress.set_position(end);
        start = end;
    }
    file.flush().map_err(write_err)?;
    progress.finish_and_clear();
    eprintln!("exported {size} entries of {name} to {}", out.display());
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
        "{}: OK: {} entries of {} match the checkpoint signed by {}{}{}",
        path.display(),
        verified.checkpoint.size,
        verified.checkpoint.origin,
        verifier.name(),
        if previous.is_some() {
            " and extend the trusted checkpoint"
        } else {
            ""
        },
        match verified.destroyed {
            0 => String::new(),
            n => format!(
                " ({n} of them hashes only: their bodies were destroyed by audit retention)"
            ),
        }
    );
    Ok(())
}

/// Follows the mirror stream from its first message, one witness per log.
async fn watch(nats: &str, stream_name: &str, key: &str, once: bool) -> CmdResult {
    use custodian_tlog::{Witness, WitnessError};
    let verifier = custodian_tlog::Verifier::parse(key).map_err(|e| {
        invalid(format!(
            "--key is not a verifier key ({e}); print it with `custodian audit key`"
        ))
    })?;
    let unreachable = |e: &dyn std::fmt::Display| {
        Failure::Unreachable(anyhow!("cannot read stream {stream_name} at {nats}: {e}"))
    };
    let client = async_nats::connect(nats)
        .await
        .map_err(|e| unreachable(&e))?;
    let js = async_nats::jetstream::new(client);
    let mut stream = js
        .get_stream(stream_name)
        .await
        .map_err(|e| unreachable(&e))?;
    let mut witnesses: std::collections::BTreeMap<String, Witness> = Default::default();
    let mut next = 1u64;
    loop {
        let last = stream
            .info()
            .await
            .map_err(|e| unreachable(&e))?
            .state
            .last_sequence;
        while next <= last {
            let message = stream
                .get_raw_message(next)
                .await
                .map_err(|e| unreachable(&e))?;
            next += 1;
            let subject = message.subject.as_str();
            let Some((log, kind)) = subject
                .strip_prefix(stream_name)
                .and_then(|rest| rest.strip_prefix('.'))
                .and_then(|rest| rest.rsplit_once('.'))
            else {
                continue;
            };
            let witness = witnesses
                .entry(log.to_owned())
                .or_insert_with(|| Witness::new(verifier.clone()));
            let found = match kind {
                "entry" => {
                    let index = message
                        .headers
                        .get(custodian_server::mirror::INDEX_HEADER)
                        .and_then(|v| v.as_str().parse::<u64>().ok());
                    let destroyed = message
                        .headers
                        .get(custodian_server::mirror::LEAF_HEADER)
                        .map(|v| {
                            STANDARD
                                .decode(v.as_str())
                                .ok()
                                .and_then(|l| custodian_tlog::hash_from_slice(l.as_slice()).ok())
                        });
                    match (index, destroyed) {
                        (Some(index), None) => witness.entry(index, &message.payload).map(|_| None),
                        (Some(index), Some(Some(leaf))) => witness.leaf(index, leaf).map(|_| None),
                        _ => continue,
                    }
                }
                "checkpoint" => witness
                    .checkpoint(&String::from_utf8_lossy(&message.payload))
                    .map(Some),
                _ => continue,
            };
            match found {
                Ok(Some(checkpoint)) => println!(
                    "{log}: checkpoint of {} entries consistent with the entries witnessed",
                    checkpoint.size
                ),
                Ok(None) => {}
                Err(e @ WitnessError::Fork { .. }) => {
                    return Err(invalid(format!("log {log}: {e}")));
                }
                Err(e) => return Err(invalid(format!("log {log}: {e}"))),
            }
        }
        if once {
            eprintln!(
                "read {} messages of {stream_name}: {} log(s) witnessed, no fork",
                next - 1,
                witnesses.len()
            );
            return Ok(());
        }
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
}
