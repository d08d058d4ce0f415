//! Legal holds placed and released, each with its audit entry in the same transaction.
//! Placing waits for a destruction in progress, so no hold lands between a destruction's hold
//! check and its shred.

use custodian_core::audit::Decision;
use custodian_core::hold::{Hold, HoldScope, Release};
use custodian_core::ids::TenantId;
use custodian_store::ReleaseOutcome;

use crate::audit::Actor;
use crate::{AppState, ServerError};

/// Places a hold and audits it in one transaction. Waits for a running destruction to end.
pub async fn place_hold(
    state: &AppState,
    actor: &Actor,
    tenant: &TenantId,
    scope: HoldScope,
    case_id: String,
    reason: String,
) -> Result<Hold, ServerError> {
    let _destruction = state.destruction.lock().await;
    let hold = Hold {
        id: format!("hold_{}", ulid::Ulid::new().to_string().to_lowercase()),
        scope,
        case_id,
        reason,
        placed_by: actor.id.clone(),
        placed_at: state.clock.now(),
        released: None,
    };
    let mut event = state
        .audit
        .event(actor, "holds.place", Some(tenant), Decision::Allow);
    event.objects = vec![hold.id.clone(), hold.case_id.clone()];
    event.after = Some(format!("{} ({})", hold.scope, hold.reason));
    state
        .store
        .insert_hold(tenant, &hold, state.audit.entry(&event).await?)
        .await?;
    Ok(hold)
}

/// Releases a hold and audits it in one transaction; overdue records it kept become due at
/// the next sweep.
pub async fn release_hold(
    state: &AppState,
    actor: &Actor,
    tenant: &TenantId,
    id: &str,
) -> Result<ReleaseOutcome, ServerError> {
    let release = Release {
        by: actor.id.clone(),
        at: state.clock.now(),
    };
    let mut event = state
        .audit
        .event(actor, "holds.release", Some(tenant), Decision::Allow);
    event.objects = vec![id.to_owned()];
    Ok(state
        .store
        .release_hold(tenant, id, release, state.audit.entry(&event).await?)
        .await?)
}
