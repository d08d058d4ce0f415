//! `custodian keys status|rotate|backup|restore`: tenant key management through a running
//! server (the root key never leaves it).

use reqwest::Method;
use serde_json::Value;

use super::client::ServerClient;
use crate::args::KeysCommand;
use crate::exit::{CmdResult, invalid};

pub async fn run(cmd: KeysCommand) -> CmdResult {
    match cmd {
        KeysCommand::Status { server, tenant } => {
            let client = ServerClient::new(&server)?;
            let statuses: Vec<Value> = match tenant {
                Some(t) => vec![
                    client
                        .json(Method::GET, &format!("/v1/tenants/{t}/keys"), None)
                        .await?,
                ],
                None => client.json(Method::GET, "/v1/system/keys", None).await?,
            };
            print_status(&statuses);
            Ok(())
        }
        KeysCommand::Rotate { server, tenant } => {
            let client = ServerClient::new(&server)?;
            let r: Value = client
                .json(
                    Method::POST,
                    &format!("/v1/tenants/{tenant}/keys/rotate"),
                    None,
                )
                .await?;
            println!("{}", serde_json::to_string_pretty(&r).unwrap_or_default());
            eprintln!(
                "tenant {tenant}: KEK version {} -> {}, {} keys rewrapped",
                r["from_version"], r["to_version"], r["rewrapped"]
            );
            Ok(())
        }
        KeysCommand::Backup { server, out } => {
            let client = ServerClient::new(&server)?;
            let file = client
                .send(
                    Method::GET,
                    "/v1/system/keys/backup",
                    None,
                    "application/json",
                )
                .await?;
            write_new_file(&out, &file)?;
            eprintln!(
                "key-store backup written to {} ({} bytes); it opens only under this deployment's root key",
                out.display(),
                file.len()
            );
            Ok(())
        }
        KeysCommand::Restore { server, file } => {
            let client = ServerClient::new(&server)?;
            let bytes = std::fs::read(&file)
                .map_err(|e| invalid(format!("cannot read {}: {e}", file.display())))?;
            let report = client
                .send(
                    Method::POST,
                    "/v1/system/keys/restore",
                    Some(bytes.into()),
                    "application/json",
                )
                .await?;
            let report: Value = serde_json::from_slice(&report).unwrap_or_default();
            println!(
                "{}",
                serde_json::to_string_pretty(&report).unwrap_or_default()
            );
            eprintln!(
                "restored {} data keys and {} KEKs; {} keys shredded since the backup were destroyed again",
                report["data_keys"], report["keks"], report["reshredded"]
            );
            Ok(())
        }
    }
}

fn print_status(statuses: &[Value]) {
    println!(
        "{:<20} {:>7} {:<22} {:<22} {:>12} {:>10}",
        "TENANT", "KEK", "CREATED", "NEXT ROTATION", "WRAPPED", "OLDER KEK"
    );
    let text = |v: &Value| {
        v.as_str()
            .map_or("-".to_owned(), |s| s.chars().take(20).collect())
    };
    for s in statuses {
        println!(
            "{:<20} {:>7} {:<22} {:<22} {:>12} {:>10}",
            s["tenant"].as_str().unwrap_or("?"),
            s["kek_version"]
                .as_u64()
                .map_or("-".into(), |v| v.to_string()),
            text(&s["kek_created_at"]),
            text(&s["next_rotation_due"]),
            s["wrapped_keys"],
            s["wrapped_by_older_versions"],
        );
    }
}

/// Writes a file that must not exist yet, readable by its owner only.
pub fn write_new_file(path: &std::path::Path, bytes: &[u8]) -> CmdResult {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut f = options
        .open(path)
        .map_err(|e| invalid(format!("cannot create {}: {e}", path.display())))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(|e| invalid(format!("cannot write {}: {e}", path.display())))
}
