//! `custodian token create`: issue a token directly in the store. The token is printed once on
//! stdout (so it can be captured by a script); only its hash is kept.

use custodian_core::access::Role;
use custodian_core::duration::CalDuration;
use custodian_core::ids::TenantId;
use std::sync::Arc;

use custodian_core::audit::Decision;
use custodian_server::audit::{Actor, Auditor};
use custodian_server::auth;
use custodian_server::clock::SystemClock;
use custodian_store::AuditLog;

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
    let tenant = TenantId::new(tenant).map_err(invalid)?;
    if policy.tenant(&tenant).is_none() {
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
    };
    let args_data_dir = store.data_dir.clone();
    let store = super::open_store(&store).await?;
    let issued = auth::issue_token(store.as_ref(), &clock, &tenant, role, expires_at)
        .await
        .map_err(super::server_failure)?;
    // Token changes are audited in the tenant's log, like every other action.
    let root = custodian_server::root_key_provider(&policy, &args_data_dir)
        .map_err(super::server_failure)?;
    let auditor = Auditor::load(
        store.clone(),
        Arc::new(SystemClock),
        root.as_ref(),
        policy.deployment.region.clone(),
    )
    .await
    .map_err(super::server_failure)?;
    let actor = Actor {
        id: format!(
            "cli:{}",
            std::env::var("USER").unwrap_or_else(|_| "operator".into())
        ),
        request_id: None,
    };
    let mut event = auditor.event(&actor, "tokens.create", Some(&tenant), Decision::Allow);
    event.subsystem = "cli".into();
    event.objects = vec![format!("token:{}", issued.row.id)];
    event.reason = Some(format!("role {role}"));
    auditor
        .record(&AuditLog::Tenant(tenant.clone()), &event)
        .await
        .map_err(super::server_failure)?;
    println!("{}", issued.token.as_str());
    eprintln!(
        "token {} created for tenant {tenant} with role {role}{}; it is shown only once.",
        issued.row.id,
        expires_at.map_or(String::new(), |t| format!(", expires {t}")),
    );
    Ok(())
}
