//! `custodian token create|list|revoke`, directly on the store.
//!
//! `create` prints the token once on stdout (so it can be captured by a script); only its hash
//! is kept. `list` shows tokens without their secret or its hash. `revoke` marks a token
//! revoked, audited like its issuance, after which authentication refuses it.

use custodian_core::access::Role;
use custodian_core::audit::{AuditEvent, Decision};
use custodian_core::clock::Clock;
use custodian_core::duration::CalDuration;
use custodian_core::ids::TenantId;
use custodian_server::audit::Auditor;
use custodian_server::auth;
use custodian_server::clock::SystemClock;
use custodian_store::{AuditLog, TokenRow};
use jiff::Timestamp;
use serde_json::{Value, json};

use crate::args::{StoreArgs, TokenCommand, TokenRole};
use crate::exit::{CmdResult, Failure, invalid};

pub async fn run(cmd: TokenCommand) -> CmdResult {
    match cmd {
        TokenCommand::Create {
            store,
            tenant,
            role,
            expires_in,
        } => create(store, tenant, role, expires_in).await,
        TokenCommand::List {
            store,
            tenant,
            platform,
            json,
        } => list(store, tenant, platform, json).await,
        TokenCommand::Revoke { store, id } => revoke(store, &id).await,
    }
}

/// Who runs the command, as audit events name them.
fn cli_actor() -> String {
    format!(
        "cli:{}",
        std::env::var("USER").unwrap_or_else(|_| "operator".into())
    )
}

async fn create(
    store: StoreArgs,
    tenant: Option<String>,
    role: TokenRole,
    expires_in: Option<String>,
) -> CmdResult {
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
    let now = clock.now();
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
    let actor = cli_actor();
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

async fn list(store: StoreArgs, tenant: Option<String>, platform: bool, json: bool) -> CmdResult {
    // Not checked against the policy: a tenant dropped from it may still hold tokens, and
    // listing them is how they are found and revoked.
    let tenant = match (tenant, platform) {
        (_, true) => Some(TenantId::platform()),
        (Some(t), false) => Some(TenantId::new(t).map_err(invalid)?),
        (None, false) => None,
    };
    let store = super::open_store(&store).await?;
    let tokens = store
        .tokens(tenant.as_ref())
        .await
        .map_err(|e| super::server_failure(e.into()))?;
    if json {
        let rows: Vec<Value> = tokens.iter().map(token_json).collect();
        let text = serde_json::to_string_pretty(&rows).map_err(|e| Failure::Internal(e.into()))?;
        println!("{text}");
        return Ok(());
    }
    println!(
        "{:<16}  {:<16}  {:<8}  {:<20}  {:<20}  {:<20}  REVOKED",
        "ID", "TENANT", "ROLE", "CREATED", "EXPIRES", "LAST USED"
    );
    for t in &tokens {
        println!(
            "{:<16}  {:<16}  {:<8}  {:<20}  {:<20}  {:<20}  {}",
            t.id,
            holder(&t.tenant),
            t.role,
            time(t.created_at),
            t.expires_at.map_or_else(|| "never".to_owned(), time),
            t.last_used_at.map_or_else(|| "never".to_owned(), time),
            t.revoked_at.map_or_else(|| "-".to_owned(), time),
        );
    }
    if tokens.is_empty() {
        eprintln!("no tokens");
    }
    Ok(())
}

/// A token as `token list --json` prints it: every field but the secret's hash, which is of
/// no use to a reader and would let anyone holding the output test guesses offline.
fn token_json(t: &TokenRow) -> Value {
    let when = |t: Option<Timestamp>| t.map(|t| t.to_string());
    json!({
        "id": t.id,
        "tenant": (!t.tenant.is_platform()).then(|| t.tenant.as_str()),
        "platform": t.tenant.is_platform(),
        "role": t.role,
        "created_at": t.created_at.to_string(),
        "expires_at": when(t.expires_at),
        "last_used_at": when(t.last_used_at),
        "revoked_at": when(t.revoked_at),
    })
}

/// The tenant column: the platform pseudo-tenant's stored id means nothing to a reader.
fn holder(tenant: &TenantId) -> &str {
    if tenant.is_platform() {
        "(platform)"
    } else {
        tenant.as_str()
    }
}

/// A time in the table, to the second.
fn time(t: Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

async fn revoke(store: StoreArgs, id: &str) -> CmdResult {
    if id.starts_with("cst_") {
        // Never echoed: it may be a whole token, secret included, pasted by mistake.
        return Err(invalid(
            "give the token's id (the 16 hex digits after cst_, as `custodian token list` shows it), not the token",
        ));
    }
    let state = super::open_state(&store).await?;
    let Some(token) = state
        .store
        .find_token(id)
        .await
        .map_err(|e| super::server_failure(e.into()))?
    else {
        return Err(invalid(format!(
            "no token with id {id:?}; `custodian token list` shows the tokens"
        )));
    };
    if let Some(at) = token.revoked_at {
        eprintln!(
            "token {id} ({}) was already revoked at {}; nothing changed",
            describe(&token),
            time(at)
        );
        return Ok(());
    }
    // Whole microseconds, as both stores keep times, so the row read back can be told apart
    // from one a concurrent revocation wrote first.
    let now = state.clock.now();
    let at = Timestamp::from_microsecond(now.as_microsecond())
        .map_err(|e| Failure::Internal(e.into()))?;
    let (log, entry) = revocation_entry(&state.audit, &cli_actor(), &token, at)
        .await
        .map_err(super::server_failure)?;
    let revoked = state
        .store
        .revoke_token(id, at, &log, entry)
        .await
        .map_err(|e| super::server_failure(e.into()))?;
    match revoked {
        Some(row) if row.revoked_at == Some(at) => {
            eprintln!(
                "token {id} ({}) revoked at {}; every request with it is refused from now on",
                describe(&row),
                time(at)
            );
        }
        Some(row) => {
            eprintln!(
                "token {id} ({}) was already revoked at {}; nothing changed",
                describe(&row),
                row.revoked_at.map_or_else(|| "-".to_owned(), time)
            );
        }
        // Tokens are never deleted, so this takes a database changed underneath us.
        None => {
            return Err(Failure::Internal(anyhow::anyhow!(
                "token {id} disappeared while it was being revoked"
            )));
        }
    }
    Ok(())
}

/// `tenant acme, role writer` or `platform, role operator`.
fn describe(token: &TokenRow) -> String {
    if token.tenant.is_platform() {
        format!("platform, role {}", token.role)
    } else {
        format!("tenant {}, role {}", token.tenant, token.role)
    }
}

/// The audit entry of a token's revocation, and the log it belongs to: the one its issuance
/// went to (see [`auth::issue_token`]), the tenant's, or the system log for a platform token.
/// Sealed here and appended by the store in the transaction that revokes, so a revocation
/// never happens unaudited.
async fn revocation_entry(
    audit: &Auditor,
    actor: &str,
    token: &TokenRow,
    at: Timestamp,
) -> Result<(AuditLog, custodian_store::AuditEntry), custodian_server::ServerError> {
    let (log, audited_tenant) = if token.tenant.is_platform() {
        (AuditLog::System, None)
    } else {
        (
            AuditLog::Tenant(token.tenant.clone()),
            Some(token.tenant.clone()),
        )
    };
    let event = AuditEvent {
        time: at,
        action: "tokens.revoke".into(),
        subsystem: "cli".into(),
        actor: actor.into(),
        tenant: audited_tenant,
        subjects: Vec::new(),
        objects: vec![format!("token:{}", token.id)],
        before: None,
        after: None,
        decision: Decision::Allow,
        reason: Some(format!("role {}", token.role)),
        request_id: None,
        grant: None,
    };
    let entry = audit.seal(&log, &event).await?;
    Ok((log, entry))
}
