//! Just-in-time grants: temporary, approved access of a platform principal (support, an
//! operator) to one tenant's records, and break-glass access of a tenant's security officer.
//!
//! Nobody on the platform has standing access to records ("production access always off"). A
//! grant is requested with a scope (data types, subjects, read-only or not), a reason, a ticket
//! and a duration of at most the policy's `access.jit_max`. It becomes active only when enough
//! distinct principals holding the approver role, none of them the requester, approve it: one,
//! or `access.restricted_approvers` when its scope reaches Restricted data (the two-person
//! rule). It then lasts its duration from the last approval, unless revoked first. A request
//! nobody decides lapses after `jit_max`.
//!
//! Break-glass is the emergency path: a tenant's security officer opens a grant on their own
//! tenant at once, with a reason and no approval; it is flagged and stays "pending review"
//! until another principal reviews it.
//!
//! Every transition is a pure function of the grant, the acting principal and the time; the
//! server stores the result and audits it. [`authorize_with`] is the access decision of
//! [`crate::access`] extended by the caller's grants.

use std::fmt;

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};

use crate::access::{Action, Denial, Principal, Role, authorize};
use crate::ids::{Class, DataTypeName, TenantId};

/// What a grant reaches within its tenant.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantScope {
    /// The data types whose records it reaches; empty: every data type.
    pub data_types: Vec<DataTypeName>,
    /// Keyed pseudonyms (hex) of the subjects whose records it reaches, sorted; empty: every
    /// subject. Never subject ids in clear.
    pub subjects: Vec<String>,
    /// Whether it also permits changes (delete, rectify) besides reads.
    pub write: bool,
}

impl GrantScope {
    /// The actions a grant of this scope permits.
    pub fn permits(&self, action: Action) -> bool {
        match action {
            Action::ReadRecord | Action::ListSubjectRecords => true,
            Action::DeleteRecord | Action::RectifyRecord => self.write,
            _ => false,
        }
    }

    /// Whether a record of `data_type`, naming subjects with these pseudonyms (hex), is in
    /// scope. A subject-scoped grant reaches a record that names at least one of its subjects.
    pub fn reaches(&self, data_type: &DataTypeName, subjects: &[String]) -> bool {
        let type_ok = self.data_types.is_empty() || self.data_types.contains(data_type);
        let subject_ok =
            self.subjects.is_empty() || subjects.iter().any(|s| self.subjects.contains(s));
        type_ok && subject_ok
    }

    /// Whether the subject with this pseudonym (hex) is in scope.
    pub fn reaches_subject(&self, subject: &str) -> bool {
        self.subjects.is_empty() || self.subjects.iter().any(|s| s == subject)
    }
}

/// One approval of a grant.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Approval {
    pub by: String,
    pub at: Timestamp,
}

/// How a grant ended before its time, or its break-glass review.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Note {
    pub by: String,
    pub at: Timestamp,
    pub text: String,
}

/// A grant and its history. Stored whole; `version` increases with every transition so that
/// two concurrent transitions cannot both be stored (the second finds a newer version).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    /// `grt_` followed by a lower-case ULID.
    pub id: String,
    pub tenant: TenantId,
    /// The principal the grant admits.
    pub grantee: String,
    pub grantee_role: Role,
    pub scope: GrantScope,
    pub reason: String,
    pub ticket: String,
    /// How long the grant lasts once active, in seconds.
    pub duration_secs: i64,
    pub requested_at: Timestamp,
    /// A request nobody decided lapses at this instant.
    pub decide_by: Timestamp,
    /// Whether the scope reaches Restricted data, decided from the policy at request time.
    pub restricted: bool,
    /// Distinct approvals needed: 1, or `restricted_approvers` for a Restricted scope; 0 for
    /// break-glass.
    pub approvals_needed: u8,
    pub approvals: Vec<Approval>,
    pub break_glass: bool,
    pub activated_at: Option<Timestamp>,
    pub expires_at: Option<Timestamp>,
    pub denied: Option<Note>,
    pub revoked: Option<Note>,
    /// The review of a break-glass grant.
    pub review: Option<Note>,
    pub version: u32,
}

/// Where a grant stands at an instant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GrantStatus {
    /// Waiting for approvals.
    Pending,
    Active,
    /// Was active; its time is over.
    Expired,
    /// Nobody decided it in time.
    Lapsed,
    Denied,
    Revoked,
}

impl GrantStatus {
    pub const ALL: [GrantStatus; 6] = [
        GrantStatus::Pending,
        GrantStatus::Active,
        GrantStatus::Expired,
        GrantStatus::Lapsed,
        GrantStatus::Denied,
        GrantStatus::Revoked,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            GrantStatus::Pending => "pending",
            GrantStatus::Active => "active",
            GrantStatus::Expired => "expired",
            GrantStatus::Lapsed => "lapsed",
            GrantStatus::Denied => "denied",
            GrantStatus::Revoked => "revoked",
        }
    }

    pub fn parse(s: &str) -> Option<GrantStatus> {
        GrantStatus::ALL.into_iter().find(|g| g.as_str() == s)
    }
}

impl fmt::Display for GrantStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a grant transition was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum GrantError {
    #[error("role {0} may not request grants; support and operators do")]
    CannotRequest(Role),
    #[error("only a security officer of tenant {0} may open break-glass access to it")]
    CannotBreakGlass(TenantId),
    #[error("the duration {asked} is longer than the policy's access.jit_max of {max}")]
    TooLong { asked: String, max: String },
    #[error("{0}")]
    InvalidDuration(String),
    #[error("{0} must be given")]
    Missing(&'static str),
    #[error("a requester can never approve their own request")]
    SelfApproval,
    #[error("{0} approved this grant already; another approver is needed")]
    AlreadyApproved(String),
    #[error("only a principal with the approver role may {0} grants")]
    NotApprover(&'static str),
    #[error("the grant is {0}; only a pending request can be {1}")]
    NotPending(GrantStatus, &'static str),
    #[error("the grant is {0}; only a pending or active grant can be revoked")]
    NotRevocable(GrantStatus),
    #[error(
        "only the grantee, an approver, or the tenant's admin or security officer may revoke this grant"
    )]
    CannotRevoke,
    #[error("only break-glass grants are reviewed")]
    NotBreakGlass,
    #[error("this break-glass grant was reviewed already")]
    AlreadyReviewed,
    #[error("the principal who opened break-glass access cannot review it")]
    SelfReview,
    #[error("only an approver, or the tenant's admin or auditor, may review break-glass access")]
    CannotReview,
}

impl GrantError {
    /// Whether the error refuses the principal (it may not do this to this grant, whatever
    /// the grant's state), rather than the grant's state or the request's content.
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            GrantError::CannotRequest(_)
                | GrantError::CannotBreakGlass(_)
                | GrantError::SelfApproval
                | GrantError::NotApprover(_)
                | GrantError::CannotRevoke
                | GrantError::SelfReview
                | GrantError::CannotReview
        )
    }
}

/// A grant as asked for, before the server names it and the policy classifies its scope.
#[derive(Clone, Debug)]
pub struct GrantRequest {
    pub tenant: TenantId,
    pub scope: GrantScope,
    pub reason: String,
    pub ticket: String,
    pub duration_secs: i64,
}

/// What the policy says about a request: how long grants may last, and whether this one's
/// scope reaches Restricted data and so needs more approvers.
#[derive(Clone, Copy, Debug)]
pub struct GrantRules {
    pub jit_max_secs: i64,
    pub restricted: bool,
    pub restricted_approvers: u8,
}

/// Parses a grant duration: a whole number of minutes (`30m`), hours (`4h`) or days (`1d`).
pub fn parse_duration(s: &str) -> Result<i64, GrantError> {
    let bad = || {
        GrantError::InvalidDuration(format!(
            "invalid duration {s:?}: write a whole number of minutes, hours or days, e.g. 30m, 4h, 1d"
        ))
    };
    let s = s.trim();
    let (digits, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: i64 = digits.parse().map_err(|_| bad())?;
    let secs = match unit {
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(bad()),
    };
    // Anything past a year is refused by jit_max anyway; this only keeps the maths in range.
    match n.checked_mul(secs) {
        Some(total) if n > 0 && total <= 366 * 86_400 => Ok(total),
        _ if n == 0 => Err(GrantError::InvalidDuration(
            "a grant must last longer than zero".into(),
        )),
        _ => Err(bad()),
    }
}

/// Shows seconds in the largest unit that divides them exactly.
pub fn format_duration(secs: i64) -> String {
    match secs {
        s if s % 86_400 == 0 => format!("{}d", s / 86_400),
        s if s % 3600 == 0 => format!("{}h", s / 3600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

fn checked_text(value: &str, what: &'static str) -> Result<String, GrantError> {
    let value = value.trim();
    if value.is_empty() {
        return Err(GrantError::Missing(what));
    }
    Ok(value.to_owned())
}

fn after(t: Timestamp, secs: i64) -> Timestamp {
    // Durations are at most a year past a valid instant: far inside jiff's range.
    t.saturating_add(SignedDuration::from_secs(secs))
        .expect("a duration without calendar units always adds")
}

impl Grant {
    /// A request by a platform principal; pending until approved.
    pub fn request(
        id: String,
        requester: &Principal,
        request: GrantRequest,
        rules: GrantRules,
        now: Timestamp,
    ) -> Result<Grant, GrantError> {
        if !matches!(requester.role, Role::Support | Role::Operator)
            || !requester.tenant.is_platform()
        {
            return Err(GrantError::CannotRequest(requester.role));
        }
        let approvals_needed = if rules.restricted {
            rules.restricted_approvers.max(1)
        } else {
            1
        };
        Self::new(id, requester, request, rules, approvals_needed, now)
    }

    /// Break-glass: a security officer of the tenant opens a grant on it, active at once.
    pub fn break_glass(
        id: String,
        officer: &Principal,
        request: GrantRequest,
        rules: GrantRules,
        now: Timestamp,
    ) -> Result<Grant, GrantError> {
        if officer.role != Role::SecurityOfficer || officer.tenant != request.tenant {
            return Err(GrantError::CannotBreakGlass(request.tenant));
        }
        let mut grant = Self::new(id, officer, request, rules, 0, now)?;
        grant.break_glass = true;
        grant.activated_at = Some(now);
        grant.expires_at = Some(after(now, grant.duration_secs));
        Ok(grant)
    }

    fn new(
        id: String,
        by: &Principal,
        request: GrantRequest,
        rules: GrantRules,
        approvals_needed: u8,
        now: Timestamp,
    ) -> Result<Grant, GrantError> {
        if request.duration_secs > rules.jit_max_secs {
            return Err(GrantError::TooLong {
                asked: format_duration(request.duration_secs),
                max: format_duration(rules.jit_max_secs),
            });
        }
        if request.duration_secs <= 0 {
            return Err(GrantError::InvalidDuration(
                "a grant must last longer than zero".into(),
            ));
        }
        let mut scope = request.scope;
        scope.subjects.sort_unstable();
        scope.subjects.dedup();
        scope
            .data_types
            .sort_unstable_by(|a, b| a.as_str().cmp(b.as_str()));
        scope.data_types.dedup();
        Ok(Grant {
            id,
            tenant: request.tenant,
            grantee: by.id.clone(),
            grantee_role: by.role,
            scope,
            reason: checked_text(&request.reason, "a reason")?,
            ticket: checked_text(&request.ticket, "a ticket id")?,
            duration_secs: request.duration_secs,
            requested_at: now,
            decide_by: after(now, rules.jit_max_secs),
            restricted: rules.restricted,
            approvals_needed,
            approvals: Vec::new(),
            break_glass: false,
            activated_at: None,
            expires_at: None,
            denied: None,
            revoked: None,
            review: None,
            version: 0,
        })
    }

    pub fn status(&self, now: Timestamp) -> GrantStatus {
        if self.denied.is_some() {
            GrantStatus::Denied
        } else if self.revoked.is_some() {
            GrantStatus::Revoked
        } else if let Some(expires) = self.expires_at {
            if now < expires {
                GrantStatus::Active
            } else {
                GrantStatus::Expired
            }
        } else if now < self.decide_by {
            GrantStatus::Pending
        } else {
            GrantStatus::Lapsed
        }
    }

    /// A break-glass grant nobody has reviewed yet.
    pub fn pending_review(&self) -> bool {
        self.break_glass && self.review.is_none()
    }

    fn require_pending(&self, now: Timestamp, verb: &'static str) -> Result<(), GrantError> {
        match self.status(now) {
            GrantStatus::Pending => Ok(()),
            other => Err(GrantError::NotPending(other, verb)),
        }
    }

    fn require_other_approver(&self, by: &Principal, verb: &'static str) -> Result<(), GrantError> {
        if by.role != Role::Approver || !by.tenant.is_platform() {
            return Err(GrantError::NotApprover(verb));
        }
        if by.id == self.grantee {
            return Err(GrantError::SelfApproval);
        }
        Ok(())
    }

    /// Adds `by`'s approval; the grant becomes active with the last one it needs.
    pub fn approve(&self, by: &Principal, now: Timestamp) -> Result<Grant, GrantError> {
        self.require_other_approver(by, "approve")?;
        self.require_pending(now, "approved")?;
        if self.approvals.iter().any(|a| a.by == by.id) {
            return Err(GrantError::AlreadyApproved(by.id.clone()));
        }
        let mut next = self.clone();
        next.approvals.push(Approval {
            by: by.id.clone(),
            at: now,
        });
        if next.approvals.len() >= usize::from(next.approvals_needed) {
            next.activated_at = Some(now);
            next.expires_at = Some(after(now, next.duration_secs));
        }
        next.version += 1;
        Ok(next)
    }

    pub fn deny(&self, by: &Principal, reason: &str, now: Timestamp) -> Result<Grant, GrantError> {
        self.require_other_approver(by, "deny")?;
        self.require_pending(now, "denied")?;
        let mut next = self.clone();
        next.denied = Some(Note {
            by: by.id.clone(),
            at: now,
            text: checked_text(reason, "a reason")?,
        });
        next.version += 1;
        Ok(next)
    }

    /// Ends a pending or active grant now: by its grantee, an approver, or the tenant's admin
    /// or security officer.
    pub fn revoke(
        &self,
        by: &Principal,
        reason: &str,
        now: Timestamp,
    ) -> Result<Grant, GrantError> {
        let allowed = by.id == self.grantee
            || (by.role == Role::Approver && by.tenant.is_platform())
            || (matches!(by.role, Role::Admin | Role::SecurityOfficer) && by.tenant == self.tenant);
        if !allowed {
            return Err(GrantError::CannotRevoke);
        }
        let status = self.status(now);
        if !matches!(status, GrantStatus::Pending | GrantStatus::Active) {
            return Err(GrantError::NotRevocable(status));
        }
        let mut next = self.clone();
        next.revoked = Some(Note {
            by: by.id.clone(),
            at: now,
            text: checked_text(reason, "a reason")?,
        });
        next.version += 1;
        Ok(next)
    }

    /// Closes the review of a break-glass grant: by an approver or the tenant's admin or
    /// auditor, never by whoever opened it. A grant can be reviewed whatever its status.
    pub fn review(&self, by: &Principal, note: &str, now: Timestamp) -> Result<Grant, GrantError> {
        if !self.break_glass {
            return Err(GrantError::NotBreakGlass);
        }
        if by.id == self.grantee {
            return Err(GrantError::SelfReview);
        }
        let allowed = (by.role == Role::Approver && by.tenant.is_platform())
            || (matches!(by.role, Role::Admin | Role::Auditor) && by.tenant == self.tenant);
        if !allowed {
            return Err(GrantError::CannotReview);
        }
        if self.review.is_some() {
            return Err(GrantError::AlreadyReviewed);
        }
        let mut next = self.clone();
        next.review = Some(Note {
            by: by.id.clone(),
            at: now,
            text: checked_text(note, "a review note")?,
        });
        next.version += 1;
        Ok(next)
    }

    /// Whether this grant admits `principal` to `action` on `tenant` at `now`.
    pub fn admits(
        &self,
        principal: &Principal,
        tenant: &TenantId,
        action: Action,
        now: Timestamp,
    ) -> bool {
        self.grantee == principal.id
            && self.grantee_role == principal.role
            && self.tenant == *tenant
            && self.status(now) == GrantStatus::Active
            && self.scope.permits(action)
    }

    /// Whether a record is within this grant: in scope, and Restricted only when the grant
    /// was approved for Restricted data (or is break-glass).
    pub fn reaches(&self, data_type: &DataTypeName, class: Class, subjects: &[String]) -> bool {
        (class != Class::Restricted || self.restricted) && self.scope.reaches(data_type, subjects)
    }
}

/// On whose authority a request is allowed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Authority<'g> {
    /// The principal's role in its own tenant (or a platform role's standing permission).
    Role,
    /// An active grant; only the records it reaches may be touched.
    Grant(&'g Grant),
}

/// Whether a refusal by [`authorize`] could be lifted by a grant, so that the caller's grants
/// are worth loading: a role without the permission, asking for an action grants carry.
pub fn grant_may_help(principal: &Principal, denial: &Denial) -> bool {
    match denial {
        Denial::RoleLacksPermission { action, .. } => {
            matches!(
                principal.role,
                Role::Support | Role::Operator | Role::SecurityOfficer
            ) && GrantScope {
                data_types: Vec::new(),
                subjects: Vec::new(),
                write: true,
            }
            .permits(*action)
        }
        _ => false,
    }
}

/// The access decision with the caller's grants: [`authorize`] first; a role refusal is
/// lifted by an active grant of this principal on this tenant that permits the action. The
/// grant's scope still has to reach each record touched ([`Grant::reaches`]).
pub fn authorize_with<'g>(
    principal: &Principal,
    tenant: Option<&TenantId>,
    action: Action,
    grants: &'g [Grant],
    now: Timestamp,
) -> Result<Authority<'g>, Denial> {
    let denial = match authorize(principal, tenant, action) {
        Ok(()) => return Ok(Authority::Role),
        Err(d) => d,
    };
    let Some(tenant) = tenant else {
        return Err(denial);
    };
    if !grant_may_help(principal, &denial) {
        return Err(denial);
    }
    grants
        .iter()
        .find(|g| g.admits(principal, tenant, action, now))
        .map(Authority::Grant)
        .ok_or(Denial::NoActiveGrant {
            role: principal.role,
            action,
        })
}

#[cfg(test)]
mod tests;
