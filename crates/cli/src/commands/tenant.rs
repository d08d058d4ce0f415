//! `custodian tenant terminate|cancel-termination`: the end of a tenant's custody, through a
//! running server.

use reqwest::Method;
use serde_json::{Value, json};

use super::client::ServerClient;
use crate::args::TenantCommand;
use crate::exit::CmdResult;

pub async fn run(cmd: TenantCommand) -> CmdResult {
    match cmd {
        TenantCommand::Terminate {
            server,
            tenant,
            purge_after,
            reason,
        } => {
            let client = ServerClient::new(&server)?;
            let body = json!({"purge_after": purge_after, "reason": reason});
            let t: Value = client
                .json(
                    Method::POST,
                    &format!("/v1/tenants/{tenant}/terminate"),
                    Some(&body),
                )
                .await?;
            println!("{}", serde_json::to_string_pretty(&t).unwrap_or_default());
            eprintln!(
                "tenant {tenant} terminated: writes are refused from now; everything not under a legal hold is destroyed at the first sweep after {}",
                t["purge_at"].as_str().unwrap_or("now")
            );
            Ok(())
        }
        TenantCommand::CancelTermination { server, tenant } => {
            let client = ServerClient::new(&server)?;
            client
                .json::<Value>(
                    Method::DELETE,
                    &format!("/v1/tenants/{tenant}/terminate"),
                    None,
                )
                .await?;
            eprintln!("tenant {tenant}'s termination withdrawn: it accepts writes again");
            Ok(())
        }
    }
}
