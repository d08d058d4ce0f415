//! `custodian operator init|unseal|seal|status`: the root of trust of a server whose root key
//! is Shamir-split.

use std::io::BufRead;

use reqwest::Method;
use serde_json::{Value, json};

use super::client::ServerClient;
use crate::args::OperatorCommand;
use crate::exit::{CmdResult, invalid};

pub async fn run(cmd: OperatorCommand) -> CmdResult {
    match cmd {
        OperatorCommand::Init {
            server,
            shares,
            threshold,
        } => {
            let client = ServerClient::new(&server)?;
            let body = json!({ "shares": shares, "threshold": threshold });
            let answer: Value = client
                .json(Method::POST, "/v1/system/init", Some(&body))
                .await?;
            let shares = answer["shares"].as_array().cloned().unwrap_or_default();
            for (i, share) in shares.iter().enumerate() {
                println!("share {}: {}", i + 1, share.as_str().unwrap_or(""));
            }
            eprintln!(
                "\nThe root key exists now, split into {} shares; any {threshold} unseal the server.\nGive each share to a different operator. They are shown this once and never stored.\nThe server is sealed: unseal it with `custodian operator unseal`.",
                shares.len()
            );
            Ok(())
        }
        OperatorCommand::Unseal { server, share } => {
            let share = match share {
                Some(s) => zeroize::Zeroizing::new(s),
                None => {
                    eprintln!("share:");
                    let mut line = zeroize::Zeroizing::new(String::new());
                    std::io::stdin()
                        .lock()
                        .read_line(&mut line)
                        .map_err(|e| invalid(format!("cannot read the share from stdin: {e}")))?;
                    zeroize::Zeroizing::new(line.trim().to_owned())
                }
            };
            let client = ServerClient::new(&server)?;
            let body = json!({ "share": share.as_str() });
            let status: Value = client
                .json(Method::POST, "/v1/system/unseal", Some(&body))
                .await?;
            print_status(&status);
            Ok(())
        }
        OperatorCommand::Seal { server } => {
            let client = ServerClient::new(&server)?;
            let status: Value = client.json(Method::POST, "/v1/system/seal", None).await?;
            print_status(&status);
            Ok(())
        }
        OperatorCommand::Status { server } => {
            let client = ServerClient::new(&server)?;
            let status: Value = client
                .json(Method::GET, "/v1/system/seal-status", None)
                .await?;
            print_status(&status);
            Ok(())
        }
    }
}

fn print_status(status: &Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(status).unwrap_or_default()
    );
    if status["sealed"] == Value::Bool(true) && status["threshold"].is_u64() {
        eprintln!(
            "sealed: {} of {} shares given",
            status["progress"], status["threshold"]
        );
    } else if status["sealed"] == Value::Bool(false) {
        eprintln!("unsealed");
    }
}
