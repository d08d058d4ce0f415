//! API tokens: issuing them (shown once, only a hash kept) and turning a bearer header into a
//! [`Principal`]. The tenant of every request comes from here, never from a request body.
//!
//! A token reads `cst_<id>_<secret>`: 16 hex digits of id, by which the row is found, and 64 hex
//! digits (256 bits) of secret, whose SHA-256 is compared in constant time with the stored hash.
//! A fast hash suffices because the secret is random, not a password.
//!
//! A bearer that is not an API token but has the shape of a JWT is an OIDC access token: it is
//! checked by [`crate::oidc::OidcVerifier`] against the policy's `[access.oidc]` providers and
//! becomes a principal `oidc:<provider>:<sub>` (see [`oidc_principal`] for its role and MFA).

use custodian_core::access::{Principal, Role};
use custodian_core::clock::Clock;
use custodian_core::ids::TenantId;
use custodian_store::{AuditLog, Store, TokenRow};
use jiff::Timestamp;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::problem::{Kind, Problem};
use crate::{AppState, ServerError};

const PREFIX: &str = "cst_";
/// `last_used_at` is written at most this often per token, to keep reads off the write path.
const TOUCH_INTERVAL_SECS: i64 = 60;

/// A newly issued token: the secret string is shown once and then dropped.
pub struct IssuedToken {
    pub token: Zeroizing<String>,
    pub row: TokenRow,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Who issues a token, for its audit entry.
pub struct TokenIssuer<'a> {
    /// e.g. `cli:alice`.
    pub actor: &'a str,
    /// e.g. `cli`.
    pub subsystem: &'a str,
}

/// Creates a token for `tenant` with `role`, stores its hash with its audit entry and returns
/// the token once.
pub async fn issue_token(
    audit: &crate::audit::Auditor,
    clock: &dyn Clock,
    issuer: &TokenIssuer<'_>,
    tenant: &TenantId,
    role: Role,
    expires_at: Option<Timestamp>,
) -> Result<IssuedToken, ServerError> {
    let id = hex(&custodian_crypto::random_bytes::<8>()?);
    let secret = Zeroizing::new(hex(custodian_crypto::random_key()?.as_ref()));
    let row = TokenRow {
        id: id.clone(),
        tenant: tenant.clone(),
        role: role.as_str().to_owned(),
        secret_hash: custodian_crypto::sha256(secret.as_bytes()),
        created_at: clock.now(),
        expires_at,
        revoked_at: None,
        last_used_at: None,
    };
    // Audited in the tenant's log (a platform token in the system log), in the transaction
    // that stores it: a token never exists without its entry.
    let (log, audited_tenant) = if tenant.is_platform() {
        (AuditLog::System, None)
    } else {
        (AuditLog::Tenant(tenant.clone()), Some(tenant.clone()))
    };
    let event = custodian_core::audit::AuditEvent {
        time: row.created_at,
        action: "tokens.create".into(),
        subsystem: issuer.subsystem.into(),
        actor: issuer.actor.into(),
        tenant: audited_tenant,
        subjects: Vec::new(),
        objects: vec![format!("token:{id}")],
        before: None,
        after: None,
        decision: custodian_core::audit::Decision::Allow,
        reason: Some(format!("role {role}")),
        request_id: None,
        grant: None,
    };
    let entry = audit.seal(&log, &event).await?;
    audit.store().insert_token(row.clone(), &log, entry).await?;
    Ok(IssuedToken {
        token: Zeroizing::new(format!("{PREFIX}{id}_{}", secret.as_str())),
        row,
    })
}

fn unauthorized(detail: &str) -> Problem {
    Problem::new(Kind::Unauthorized, detail)
}

/// Splits `cst_<id>_<secret>`; `None` when the shape is wrong.
fn parse_token(token: &str) -> Option<(&str, &str)> {
    let rest = token.strip_prefix(PREFIX)?;
    let (id, secret) = rest.split_once('_')?;
    let is_hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
    (is_hex(id, 16) && is_hex(secret, 64)).then_some((id, secret))
}

/// A refused credential: the answer, and the principal it proved to be when the refusal came
/// after verification (a genuine OIDC identity without the second factor its role needs), so
/// that the refusal is audited under that identity rather than as `anonymous`.
#[derive(Debug)]
pub struct Refusal {
    pub problem: Problem,
    pub principal: Option<String>,
}

impl From<Problem> for Refusal {
    fn from(problem: Problem) -> Refusal {
        Refusal {
            problem,
            principal: None,
        }
    }
}

impl From<Refusal> for Problem {
    fn from(refusal: Refusal) -> Problem {
        refusal.problem
    }
}

/// Authenticates an `Authorization` header value: an API token (`cst_…`) or, when the policy
/// trusts OIDC providers, a JWT access token from one of them.
pub async fn authenticate(state: &AppState, header: Option<&str>) -> Result<Principal, Refusal> {
    let header = header.ok_or_else(|| {
        unauthorized(
            "send `Authorization: Bearer <token>`; create a token with `custodian token create`",
        )
    })?;
    // Scheme names are case-insensitive (RFC 9110 §11.1).
    let token = header
        .split_once(' ')
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
        .ok_or_else(|| unauthorized("the Authorization header must use the Bearer scheme"))?;
    if !token.starts_with(PREFIX) && crate::oidc::looks_like_jwt(token) {
        return oidc_principal(state, token).await;
    }
    Ok(api_token_principal(state.store.as_ref(), state.clock.as_ref(), token).await?)
}

/// An OIDC caller: `oidc:<provider>:<sub>`, in the tenant its token names, acting in the
/// first role of its roles claim that custodian knows (unknown names are skipped; a provider
/// that sends several should send the intended one first).
///
/// A role that the policy's `access.mfa_required` lists is granted only when the token shows
/// multi-factor authentication (`amr`/`acr`, as the provider's `mfa_amr`/`mfa_acr` say);
/// otherwise the request is refused with `mfa-required`, naming the principal, and audited as
/// every refused credential is.
async fn oidc_principal(state: &AppState, token: &str) -> Result<Principal, Refusal> {
    let Some(verifier) = &state.oidc else {
        return Err(unauthorized(
            "the bearer token is a JWT, but the policy trusts no OIDC provider ([access.oidc]); send a custodian token (cst_…)",
        )
        .into());
    };
    let identity = verifier.verify(token).await.map_err(|e| match e {
        crate::oidc::OidcError::Internal(_) => ServerError::Internal(e.to_string()).into_problem(),
        // The verifier logs the failed fetch itself, once per attempt.
        e if e.is_unavailable() => Problem::new(Kind::IdentityProviderUnavailable, e.to_string()),
        e if e.is_authorisation() => Problem::new(Kind::Forbidden, e.to_string()),
        e => unauthorized(&e.to_string()),
    })?;
    let id = identity.principal_id();
    let Some(&role) = identity.roles.first() else {
        return Err(
            ServerError::Internal(format!("{id} was verified without a role"))
                .into_problem()
                .into(),
        );
    };
    if state.policy.access.mfa_required.contains(&role) && !identity.mfa {
        let problem = Problem::new(
            Kind::MfaRequired,
            format!(
                "{id} acts as {role}, a role the policy's access.mfa_required lists, and its token does not show multi-factor authentication; sign in with a second factor and send the new token"
            ),
        );
        return Err(Refusal {
            problem,
            principal: Some(id),
        });
    }
    Ok(Principal {
        id,
        tenant: identity.tenant,
        role,
    })
}

/// An API token's principal.
///
/// API tokens are exempt from `access.mfa_required`: they are not sign-ins but credentials
/// that operators with access to the store issue offline (`custodian token create`), each
/// audited as it is created, so no second factor is there to show.
async fn api_token_principal(
    store: &dyn Store,
    clock: &dyn Clock,
    token: &str,
) -> Result<Principal, Problem> {
    let (id, secret) = parse_token(token).ok_or_else(|| {
        unauthorized("the bearer token is not a custodian token (cst_…) nor a JWT access token")
    })?;
    let row = store
        .find_token(id)
        .await
        .map_err(|e| ServerError::from(e).into_problem())?;
    let presented = custodian_crypto::sha256(secret.as_bytes());
    let Some(row) = row else {
        return Err(unauthorized("the token is not valid"));
    };
    if !bool::from(presented.ct_eq(&row.secret_hash)) {
        return Err(unauthorized("the token is not valid"));
    }
    let now = clock.now();
    if row.revoked_at.is_some() {
        return Err(unauthorized("the token was revoked"));
    }
    if row.expires_at.is_some_and(|e| e <= now) {
        return Err(unauthorized("the token has expired"));
    }
    let role = Role::parse(&row.role).ok_or_else(|| {
        ServerError::Internal(format!("token {id} has unknown role")).into_problem()
    })?;
    let stale = row
        .last_used_at
        .is_none_or(|t| now.as_second() - t.as_second() >= TOUCH_INTERVAL_SECS);
    if stale {
        // Best effort: a failed touch must not fail the request it belongs to.
        if let Err(e) = store.touch_token(id, now).await {
            tracing::warn!(token = id, error = %e, "could not record token use");
        }
    }
    Ok(Principal {
        id: format!("token:{id}"),
        tenant: row.tenant,
        role,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_shape_is_checked() {
        let id = "0123456789abcdef";
        let secret = "a".repeat(64);
        assert_eq!(
            parse_token(&format!("cst_{id}_{secret}")),
            Some((id, secret.as_str()))
        );
        assert_eq!(parse_token(&format!("cst_{id}_{}", "a".repeat(63))), None);
        assert_eq!(parse_token(&format!("xyz_{id}_{secret}")), None);
        assert_eq!(parse_token(&format!("cst_{id}{secret}")), None);
        assert_eq!(
            parse_token(&format!("cst_{}_{secret}", "g".repeat(16))),
            None
        );
        assert_eq!(parse_token(""), None);
    }
}
