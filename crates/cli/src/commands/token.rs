//! `custodian token create`: issue a token directly in the store. The token is printed once on
//! stdout (so it can be captured by a script); only its hash is kept.

use custodian_core::access::Role;
use custodian_core::duration::CalDuration;
use custodian_core::ids::TenantId;

use custodian_server::auth;
use custodian_server::clock::SystemClock;

use crate::args::{TokenCommand, TokenRole};
use crate::exit::{CmdResult, invalid};

pub async fn run(cmd: TokenCommand) -> CmdResult {
    let TokenCommand::Create {
        store,
        tenant,
        role,
        expires_in,
    } = cmd;
    let policy = super::load_policy(store.policy.as_deref())?;
    let tenant = match (role, tenant) {
        (TokenRole::Operator, None) => TenantId::platform(),
        (TokenRole::Operator, Some(_)) => {
            return Err(invalid(
                "operator tokens act on the platform, not a tenant: drop --tenant",
            ));
        }
        (_, None) => {
            return Err(invalid(
                "--tenant is required for tenant roles (writer, reader, admin, auditor)",
            ));
        }
        (_, Some(t)) => TenantId::new(t).map_err(invalid)?,
    };
    if !tenant.is_platform() && policy.tenant(&tenant).is_none() {
        let known: Vec<&str> = policy.tenants.iter().map(|t| t.id.as_str()).collect();
        return Err(invalid(format!(
            "tenant {tenant} is not in the policy; known tenants: {}",
            known.join(", ")
        )));
    }
    let clock = SystemClock;
    let now = custodian_core::clock::Clock::now(&clock);
    let expires_at = match expires_in {
        None => None,
        Some(s) => {
            let d: CalDuration = s.parse().map_err(|e| {
                invalid(format!(
                    "--expires-in {s:?}: {e}; write {}",
                    custodian_core::duration::VALID_DURATION_FORMS
                ))
            })?;
            Some(
                d.after(now)
                    .ok_or_else(|| invalid("--expires-in is too long"))?,
            )
        }
    };
    let role = match role {
        TokenRole::Writer => Role::Writer,
        TokenRole::Reader => Role::Reader,
        TokenRole::Admin => Role::Admin,
        TokenRole::Auditor => Role::Auditor,
        TokenRole::Operator => Role::Operator,
    };
    let state = super::open_state(&store).await?;
    let actor = format!(
        "cli:{}",
        std::env::var("USER").unwrap_or_else(|_| "operator".into())
    );
    let issuer = auth::TokenIssuer {
        actor: &actor,
        subsystem: "cli",
    };
    let issued = auth::issue_token(&state.audit, &clock, &issuer, &tenant, role, expires_at)
        .await
        .map_err(super::server_failure)?;
    println!("{}", issued.token.as_str());
    let holder = if tenant.is_platform() {
        "the platform".to_owned()
    } else {
        format!("tenant {tenant}")
    };
    eprintln!(
        "token {} created for {holder} with role {role}{}; it is shown only once.",
        issued.row.id,
        expires_at.map_or(String::new(), |t| format!(", expires {t}")),
    );
    Ok(())
}
