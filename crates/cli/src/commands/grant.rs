//! `custodian grant`: just-in-time access to a tenant's records against a running server.

use reqwest::Method;
use serde_json::{Value, json};

use super::client::{ServerClient, path};
use crate::args::{GrantArgs, GrantCommand, ServerArgs};
use crate::exit::{CmdResult, Failure};

pub async fn run(cmd: GrantCommand) -> CmdResult {
    match cmd {
        GrantCommand::Request(args) => open(args, &["v1", "grants"]).await,
        GrantCommand::BreakGlass(args) => open(args, &["v1", "grants", "break-glass"]).await,
        GrantCommand::Approve { server, id } => change(&server, &id, "approve", None).await,
        GrantCommand::Deny { server, id, reason } => {
            change(&server, &id, "deny", Some(reason)).await
        }
        GrantCommand::Revoke { server, id, reason } => {
            change(&server, &id, "revoke", Some(reason)).await
        }
        GrantCommand::Review { server, id, note } => {
            change(&server, &id, "review", Some(note)).await
        }
        GrantCommand::Show { server, id } => {
            let grant: Value = ServerClient::new(&server)?
                .json(Method::GET, &path(&["v1", "grants", &id]), None)
                .await?;
            print_json(&grant)
        }
        GrantCommand::List {
            server,
            tenant,
            status,
            json,
        } => list(&server, tenant, status, json).await,
    }
}

async fn open(args: GrantArgs, route: &[&str]) -> CmdResult {
    let body = json!({
        "tenant": args.target.tenant,
        "data_types": args.data_types,
        "subjects": args.subjects,
        "write": args.write,
        "reason": args.reason,
        "ticket": args.ticket,
        "duration": args.duration,
    });
    let grant: Value = ServerClient::new(&args.target.server)?
        .json(Method::POST, &path(route), Some(&body))
        .await?;
    print_json(&grant)?;
    let id = grant["id"].as_str().unwrap_or("?");
    if grant["break_glass"] == true {
        eprintln!(
            "break-glass grant {id} is active until {}; it is flagged and awaits review (`custodian grant review {id}`)",
            grant["expires_at"].as_str().unwrap_or("?")
        );
    } else {
        eprintln!(
            "grant {id} awaits {} approval(s); an approver runs `custodian grant approve {id}`",
            grant["approvals_needed"]
        );
    }
    Ok(())
}

async fn change(server: &ServerArgs, id: &str, verb: &str, reason: Option<String>) -> CmdResult {
    let body = reason.map(|r| json!({ "reason": r }));
    let grant: Value = ServerClient::new(server)?
        .json(
            Method::POST,
            &path(&["v1", "grants", id, verb]),
            Some(&body.unwrap_or_else(|| json!({}))),
        )
        .await?;
    print_json(&grant)?;
    eprintln!(
        "grant {id} is now {}",
        grant["status"].as_str().unwrap_or("?")
    );
    Ok(())
}

async fn list(
    server: &ServerArgs,
    tenant: Option<String>,
    status: Option<String>,
    json: bool,
) -> CmdResult {
    let query: Vec<(&str, String)> = [("tenant", tenant), ("status", status)]
        .into_iter()
        .filter_map(|(k, v)| v.map(|v| (k, v)))
        .collect();
    let mut route = path(&["v1", "grants"]);
    if !query.is_empty() {
        let encoded = reqwest::Url::parse_with_params("http://x/", &query)
            .map(|u| u.query().unwrap_or_default().to_owned())
            .unwrap_or_default();
        route = format!("{route}?{encoded}");
    }
    let page: Value = ServerClient::new(server)?
        .json(Method::GET, &route, None)
        .await?;
    if json {
        return print_json(&page);
    }
    println!(
        "{:<30}  {:<12}  {:<8}  {:<10}  {:<20}  {:<12}  grantee",
        "grant", "tenant", "status", "access", "expires", "ticket"
    );
    for g in page["grants"].as_array().into_iter().flatten() {
        let access = match (g["break_glass"] == true, g["scope"]["write"] == true) {
            (true, _) if g["pending_review"] == true => "GLASS!",
            (true, _) => "glass",
            (false, true) => "read-write",
            (false, false) => "read",
        };
        println!(
            "{:<30}  {:<12}  {:<8}  {:<10}  {:<20}  {:<12}  {}",
            g["id"].as_str().unwrap_or("-"),
            g["tenant"].as_str().unwrap_or("-"),
            g["status"].as_str().unwrap_or("-"),
            access,
            g["expires_at"]
                .as_str()
                .unwrap_or("-")
                .chars()
                .take(19)
                .collect::<String>(),
            g["ticket"].as_str().unwrap_or("-"),
            g["grantee"].as_str().unwrap_or("-"),
        );
    }
    Ok(())
}

fn print_json(value: &Value) -> CmdResult {
    let text = serde_json::to_string_pretty(value).map_err(|e| Failure::Internal(e.into()))?;
    println!("{text}");
    Ok(())
}
