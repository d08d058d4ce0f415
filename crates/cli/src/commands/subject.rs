//! `custodian subject`: data-subject requests against a running server, and the offline check
//! of an export.

use reqwest::Method;
use serde_json::{Value, json};

use super::client::{ServerClient, path};
use crate::args::{SubjectCommand, TenantArgs};
use crate::exit::{CmdResult, invalid};

pub async fn run(cmd: SubjectCommand) -> CmdResult {
    match cmd {
        SubjectCommand::Export {
            target,
            subject,
            reference,
            reason,
            out,
        } => {
            let client = ServerClient::new(&target.server)?;
            let route = subject_path(&target, &subject, &["export"]);
            let body = json!({"reference": reference, "reason": reason});
            let (bytes, headers) = client.download(Method::POST, &route, &body, &out).await?;
            let request = headers
                .get("custodian-subject-request")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("?");
            eprintln!(
                "exported {bytes} bytes to {} (request {request}); check it with `custodian subject verify-export {} --key KEY`",
                out.display(),
                out.display()
            );
            Ok(())
        }
        SubjectCommand::VerifyExport { archive, key } => {
            let verifier = custodian_tlog::Verifier::parse(&key)
                .map_err(|e| invalid(format!("--key is not a verifier key: {e}")))?;
            let file = std::fs::File::open(&archive)
                .map_err(|e| invalid(format!("cannot open {}: {e}", archive.display())))?;
            let verified =
                custodian_server::subjects::verify_export(std::io::BufReader::new(file), &verifier)
                    .map_err(|e| invalid(format!("{}: {e}", archive.display())))?;
            let m = &verified.manifest;
            println!(
                "{}: OK: {} records in {} files for subject {} of tenant {} (request {}, {}), signed by {}",
                archive.display(),
                verified.records,
                m.files.len(),
                m.subject,
                m.tenant,
                m.request,
                m.generated_at,
                verifier.name()
            );
            Ok(())
        }
        SubjectCommand::Erase {
            target,
            subject,
            reference,
            reason,
        } => {
            let body = json!({"reference": reference, "reason": reason});
            let answer: Value = ServerClient::new(&target.server)?
                .json(
                    Method::POST,
                    &subject_path(&target, &subject, &["erase"]),
                    Some(&body),
                )
                .await?;
            print_json(&answer)?;
            if answer["already_erased"] == true {
                eprintln!("the subject had been erased before; nothing more to do");
            } else {
                eprintln!(
                    "erased: {} records destroyed, {} anonymised, {} kept under hold; certificate {}",
                    answer["records_erased"],
                    answer["records_anonymised"],
                    answer["held"].as_array().map_or(0, Vec::len),
                    answer["certificate"].as_str().unwrap_or("-")
                );
            }
            Ok(())
        }
        SubjectCommand::Rectify {
            target,
            subject,
            record,
            payload,
            reference,
            reason,
        } => {
            let text = match payload.strip_prefix('@') {
                Some(file) => std::fs::read_to_string(file)
                    .map_err(|e| invalid(format!("cannot read --payload file {file}: {e}")))?,
                None => payload,
            };
            let payload: Value = serde_json::from_str(&text)
                .map_err(|e| invalid(format!("--payload is not JSON: {e}")))?;
            let body = json!({"payload": payload, "reference": reference, "reason": reason});
            let answer: Value = ServerClient::new(&target.server)?
                .json(
                    Method::POST,
                    &subject_path(&target, &subject, &["records", &record, "rectify"]),
                    Some(&body),
                )
                .await?;
            print_json(&answer)
        }
        SubjectCommand::Requests {
            target,
            subject,
            json,
        } => {
            let mut route = path(&["v1", "tenants", &target.tenant, "subject-requests"]);
            if let Some(s) = &subject {
                let query: String = reqwest::Url::parse_with_params("http://x/", [("subject", s)])
                    .map(|u| u.query().unwrap_or_default().to_owned())
                    .unwrap_or_default();
                route = format!("{route}?{query}");
            }
            let list: Value = ServerClient::new(&target.server)?
                .json(Method::GET, &route, None)
                .await?;
            if json {
                return print_json(&list);
            }
            println!(
                "{:<26}  {:<13}  {:<9}  {:<20}  {:<20}  {:<7}  reference",
                "request", "kind", "status", "received", "due", "in time"
            );
            for r in list["requests"].as_array().into_iter().flatten() {
                let short = |v: &Value| {
                    v.as_str()
                        .unwrap_or("-")
                        .chars()
                        .take(19)
                        .collect::<String>()
                };
                println!(
                    "{:<26}  {:<13}  {:<9}  {:<20}  {:<20}  {:<7}  {}",
                    r["id"].as_str().unwrap_or("-"),
                    r["kind"].as_str().unwrap_or("-"),
                    r["status"].as_str().unwrap_or("-"),
                    short(&r["received_at"]),
                    short(&r["due_at"]),
                    if r["in_time"] == true { "yes" } else { "NO" },
                    r["reference"].as_str().unwrap_or("-"),
                );
            }
            Ok(())
        }
    }
}

fn subject_path(target: &TenantArgs, subject: &str, rest: &[&str]) -> String {
    let mut segments = vec!["v1", "tenants", &target.tenant, "subjects", subject];
    segments.extend_from_slice(rest);
    path(&segments)
}

fn print_json(value: &Value) -> CmdResult {
    let text = serde_json::to_string_pretty(value)
        .map_err(|e| crate::exit::Failure::Internal(e.into()))?;
    println!("{text}");
    Ok(())
}
