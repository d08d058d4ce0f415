//! Access decisions. One pure function, [`authorize`], decides every request by role; routes
//! never do their own checks. Deny by default: an action is allowed only when the permission
//! matrix lists the principal's role for it and the principal belongs to the tenant it acts on.
//! [`crate::grant::authorize_with`] extends it with just-in-time grants.
//!
//! The matrix is published as `docs/permissions.md`, rendered by [`permission_matrix`] and
//! checked against it by a test, so the documented and the enforced matrix cannot drift.
//!
//! Platform roles (operator, support, approver) belong to principals of the platform
//! pseudo-tenant (see [`TenantId::platform`]), never to a tenant's, and pass the membership
//! check of every tenant; the role check then admits them only to the few actions their role
//! carries. No platform role has standing access to records: support and operators reach them
//! only through an active, approved grant (see [`crate::grant`]).

use std::fmt;

use crate::ids::TenantId;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    Admin,
    Writer,
    Reader,
    Auditor,
    SecurityOfficer,
    Operator,
    Support,
    Approver,
}

impl Role {
    pub const ALL: [Role; 8] = [
        Role::Admin,
        Role::Writer,
        Role::Reader,
        Role::Auditor,
        Role::SecurityOfficer,
        Role::Operator,
        Role::Support,
        Role::Approver,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Writer => "writer",
            Role::Reader => "reader",
            Role::Auditor => "auditor",
            Role::SecurityOfficer => "security-officer",
            Role::Operator => "operator",
            Role::Support => "support",
            Role::Approver => "approver",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }

    /// Platform roles are held by operators of the deployment, not by a tenant's members.
    pub fn is_platform(self) -> bool {
        matches!(self, Role::Operator | Role::Support | Role::Approver)
    }

    pub fn valid_names() -> String {
        Role::ALL.map(Role::as_str).join(", ")
    }
}

impl serde::Serialize for Role {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for Role {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Role::parse(&s).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "unknown role {s:?}; valid: {}",
                Role::valid_names()
            ))
        })
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    IngestRecords,
    ReadRecord,
    ListSubjectRecords,
    DeleteRecord,
    ReadAudit,
    ReadKeyStatus,
    RotateKeys,
    PlaceHold,
    ReleaseHold,
    ListHolds,
    ReadRetentionPlan,
    ReadDeletions,
    RecordEvent,
    CancelDeletion,
    TerminateTenant,
    ExportSubject,
    EraseSubject,
    RectifyRecord,
    ReadSubjectRequests,
    Detokenize,
    RequestGrant,
    BreakGlass,
    DecideGrant,
    RevokeGrant,
    ReviewGrant,
    ListGrants,
    /// Platform actions, on no tenant.
    ListKeyStatus,
    SealServer,
    BackupKeys,
    RestoreKeys,
    ReadAllRetentionPlans,
    RunSweep,
    ReadSystemAudit,
    ListAllGrants,
}

impl Action {
    pub const ALL: [Action; 34] = [
        Action::IngestRecords,
        Action::ReadRecord,
        Action::ListSubjectRecords,
        Action::DeleteRecord,
        Action::ReadAudit,
        Action::ReadKeyStatus,
        Action::RotateKeys,
        Action::PlaceHold,
        Action::ReleaseHold,
        Action::ListHolds,
        Action::ReadRetentionPlan,
        Action::ReadDeletions,
        Action::RecordEvent,
        Action::CancelDeletion,
        Action::TerminateTenant,
        Action::ExportSubject,
        Action::EraseSubject,
        Action::RectifyRecord,
        Action::ReadSubjectRequests,
        Action::Detokenize,
        Action::RequestGrant,
        Action::BreakGlass,
        Action::DecideGrant,
        Action::RevokeGrant,
        Action::ReviewGrant,
        Action::ListGrants,
        Action::ListKeyStatus,
        Action::SealServer,
        Action::BackupKeys,
        Action::RestoreKeys,
        Action::ReadAllRetentionPlans,
        Action::RunSweep,
        Action::ReadSystemAudit,
        Action::ListAllGrants,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Action::IngestRecords => "records.ingest",
            Action::ReadRecord => "records.read",
            Action::ListSubjectRecords => "records.list_subject",
            Action::DeleteRecord => "records.delete",
            Action::ReadAudit => "audit.read",
            Action::ReadKeyStatus => "keys.status",
            Action::RotateKeys => "keys.rotate",
            Action::PlaceHold => "holds.place",
            Action::ReleaseHold => "holds.release",
            Action::ListHolds => "holds.list",
            Action::ReadRetentionPlan => "retention.plan",
            Action::ReadDeletions => "deletions.read",
            Action::RecordEvent => "retention.event",
            Action::CancelDeletion => "deletions.cancel",
            Action::TerminateTenant => "tenants.terminate",
            Action::ExportSubject => "subjects.export",
            Action::EraseSubject => "subjects.erase",
            Action::RectifyRecord => "subjects.rectify",
            Action::ReadSubjectRequests => "subjects.requests",
            Action::Detokenize => "tokens.detokenize",
            Action::RequestGrant => "grants.request",
            Action::BreakGlass => "grants.break_glass",
            Action::DecideGrant => "grants.decide",
            Action::RevokeGrant => "grants.revoke",
            Action::ReviewGrant => "grants.review",
            Action::ListGrants => "grants.list",
            Action::ListAllGrants => "grants.list_all",
            Action::ReadAllRetentionPlans => "retention.plan_all",
            Action::RunSweep => "retention.sweep",
            Action::ReadSystemAudit => "audit.read_system",
            Action::ListKeyStatus => "keys.status_all",
            Action::SealServer => "operator.seal",
            Action::BackupKeys => "keys.backup",
            Action::RestoreKeys => "keys.restore",
        }
    }

    fn allowed_roles(self) -> &'static [Role] {
        match self {
            Action::IngestRecords => &[Role::Admin, Role::Writer],
            Action::ReadRecord | Action::ListSubjectRecords => {
                &[Role::Admin, Role::Writer, Role::Reader]
            }
            Action::DeleteRecord => &[Role::Admin],
            Action::ReadAudit => &[Role::Admin, Role::Auditor],
            Action::ReadKeyStatus | Action::RotateKeys => &[Role::Admin, Role::Operator],
            Action::PlaceHold | Action::ReleaseHold => &[Role::Admin, Role::SecurityOfficer],
            Action::ListHolds => &[Role::Admin, Role::Auditor, Role::SecurityOfficer],
            Action::ReadRetentionPlan => &[Role::Admin, Role::Auditor, Role::Operator],
            Action::ReadDeletions => &[Role::Admin, Role::Auditor],
            Action::RecordEvent => &[Role::Admin, Role::Writer],
            Action::CancelDeletion => &[Role::Admin],
            Action::TerminateTenant => &[Role::Operator],
            Action::ExportSubject | Action::EraseSubject | Action::RectifyRecord => &[Role::Admin],
            Action::ReadSubjectRequests => &[Role::Admin, Role::Auditor],
            Action::Detokenize => &[Role::Admin, Role::SecurityOfficer],
            Action::RequestGrant => &[Role::Operator, Role::Support],
            Action::BreakGlass => &[Role::SecurityOfficer],
            Action::DecideGrant => &[Role::Approver],
            // Support and operators may revoke only grants of their own; see `Grant::revoke`.
            Action::RevokeGrant => &[
                Role::Admin,
                Role::SecurityOfficer,
                Role::Operator,
                Role::Support,
                Role::Approver,
            ],
            Action::ReviewGrant => &[Role::Admin, Role::Auditor, Role::Approver],
            Action::ListGrants => &[
                Role::Admin,
                Role::Auditor,
                Role::SecurityOfficer,
                Role::Operator,
                Role::Support,
                Role::Approver,
            ],
            Action::ListAllGrants => &[Role::Operator, Role::Support, Role::Approver],
            Action::ListKeyStatus
            | Action::SealServer
            | Action::BackupKeys
            | Action::RestoreKeys
            | Action::ReadAllRetentionPlans
            | Action::RunSweep
            | Action::ReadSystemAudit => &[Role::Operator],
        }
    }

    /// Actions that change what custodian holds (and so must reach an audit mirror that is
    /// required): everything but reads, and sealing, which only ever takes keys away.
    pub fn writes(self) -> bool {
        matches!(
            self,
            Action::IngestRecords
                | Action::DeleteRecord
                | Action::RotateKeys
                | Action::PlaceHold
                | Action::ReleaseHold
                | Action::RecordEvent
                | Action::CancelDeletion
                | Action::TerminateTenant
                | Action::ExportSubject
                | Action::EraseSubject
                | Action::RectifyRecord
                | Action::RestoreKeys
                | Action::RunSweep
                | Action::RequestGrant
                | Action::BreakGlass
                | Action::DecideGrant
                | Action::RevokeGrant
                | Action::ReviewGrant
        )
    }

    /// Actions on the deployment as a whole rather than on one tenant.
    pub fn is_platform(self) -> bool {
        matches!(
            self,
            Action::ListKeyStatus
                | Action::SealServer
                | Action::BackupKeys
                | Action::RestoreKeys
                | Action::ReadAllRetentionPlans
                | Action::RunSweep
                | Action::ReadSystemAudit
                | Action::ListAllGrants
        )
    }

    /// Actions that hand record payloads to the caller with no body of their own to say why
    /// (an export and a detokenization always carry a reason): these carry a purpose, which
    /// `access.reason_required` makes mandatory for some roles.
    pub fn reads_payload(self) -> bool {
        matches!(self, Action::ReadRecord | Action::ListSubjectRecords)
    }
}

/// An authenticated caller: who, which tenant it belongs to, and in which role.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    pub id: String,
    pub tenant: TenantId,
    pub role: Role,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Denial {
    /// The principal belongs to another tenant.
    OtherTenant,
    /// A platform action asked of a tenant, or a tenant action without a tenant.
    WrongScope,
    /// The principal's role does not carry this permission.
    RoleLacksPermission { role: Role, action: Action },
    /// The role has no standing access to this action, and no active grant carries it.
    NoActiveGrant { role: Role, action: Action },
    /// The grant the principal acts under does not reach this record or subject.
    OutsideGrant { grant: String },
}

impl fmt::Display for Denial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Denial::OtherTenant => f.write_str("the credential belongs to another tenant"),
            Denial::WrongScope => {
                f.write_str("this action belongs to another scope (platform or tenant)")
            }
            Denial::RoleLacksPermission { role, action } => write!(
                f,
                "role {role} may not perform {}; it needs one of: {}",
                action.as_str(),
                action
                    .allowed_roles()
                    .iter()
                    .map(|r| r.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Denial::NoActiveGrant { role, action } => write!(
                f,
                "role {role} has no standing access to {}, and the caller holds no active grant on this tenant that permits it; request one with `custodian grant request`",
                action.as_str()
            ),
            Denial::OutsideGrant { grant } => write!(
                f,
                "grant {grant} does not reach this data (its data types, subjects or classification)"
            ),
        }
    }
}

/// The permission matrix as a Markdown table: one row per action, one column per role.
pub fn permission_matrix() -> String {
    let mut out = String::from("| action |");
    for role in Role::ALL {
        out.push_str(&format!(" {role} |"));
    }
    out.push_str("\n|---|");
    out.push_str(&":-:|".repeat(Role::ALL.len()));
    out.push('\n');
    for action in Action::ALL {
        let scope = if action.is_platform() {
            " (platform)"
        } else {
            ""
        };
        out.push_str(&format!("| `{}`{scope} |", action.as_str()));
        for role in Role::ALL {
            let mark = if action.allowed_roles().contains(&role) {
                " ✓ |"
            } else {
                "   |"
            };
            out.push_str(mark);
        }
        out.push('\n');
    }
    out
}

/// The one access decision, for an action on `tenant` or, with `None`, on the platform.
/// Tenant membership first, so a foreign credential learns nothing about which actions exist
/// for the tenant. A platform principal passes the membership check of every tenant, and the
/// role check then admits it only to the few actions its role carries.
pub fn authorize(
    principal: &Principal,
    tenant: Option<&TenantId>,
    action: Action,
) -> Result<(), Denial> {
    let platform = principal.tenant.is_platform();
    // A credential whose role and scope disagree is refused, whatever it asks.
    if platform != principal.role.is_platform() {
        return Err(Denial::WrongScope);
    }
    match tenant {
        Some(t) if action.is_platform() || t.is_platform() => return Err(Denial::WrongScope),
        Some(t) if !platform && principal.tenant != *t => return Err(Denial::OtherTenant),
        None if !action.is_platform() => return Err(Denial::WrongScope),
        None if !platform => return Err(Denial::OtherTenant),
        _ => {}
    }
    if action.allowed_roles().contains(&principal.role) {
        Ok(())
    } else {
        Err(Denial::RoleLacksPermission {
            role: principal.role,
            action,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn principal(tenant: &str, role: Role) -> Principal {
        Principal {
            id: "tok_1".into(),
            tenant: TenantId::from_stored(tenant).unwrap(),
            role,
        }
    }

    fn on(tenant: &TenantId, action: Action) -> Option<&TenantId> {
        (!action.is_platform()).then_some(tenant)
    }

    #[test]
    fn matrix_is_exactly_as_documented() {
        use Action::*;
        use Role::*;
        let acme = TenantId::new("acme").unwrap();
        for role in Role::ALL {
            for action in Action::ALL {
                let expected = matches!(
                    (role, action),
                    (
                        Admin,
                        IngestRecords
                            | ReadRecord
                            | ListSubjectRecords
                            | DeleteRecord
                            | ReadAudit
                            | ReadKeyStatus
                            | RotateKeys
                            | PlaceHold
                            | ReleaseHold
                            | ListHolds
                            | ReadRetentionPlan
                            | ReadDeletions
                            | RecordEvent
                            | CancelDeletion
                            | ExportSubject
                            | EraseSubject
                            | RectifyRecord
                            | ReadSubjectRequests
                            | Detokenize
                            | RevokeGrant
                            | ReviewGrant
                            | ListGrants
                    ) | (
                        Writer,
                        IngestRecords | ReadRecord | ListSubjectRecords | RecordEvent
                    ) | (Reader, ReadRecord | ListSubjectRecords)
                        | (
                            Auditor,
                            ReadAudit
                                | ListHolds
                                | ReadRetentionPlan
                                | ReadDeletions
                                | ReadSubjectRequests
                                | ReviewGrant
                                | ListGrants
                        )
                        | (
                            SecurityOfficer,
                            PlaceHold
                                | ReleaseHold
                                | ListHolds
                                | Detokenize
                                | BreakGlass
                                | RevokeGrant
                                | ListGrants
                        )
                        | (
                            Operator,
                            ReadKeyStatus
                                | RotateKeys
                                | ReadRetentionPlan
                                | TerminateTenant
                                | ListKeyStatus
                                | SealServer
                                | BackupKeys
                                | RestoreKeys
                                | ReadAllRetentionPlans
                                | RunSweep
                                | ReadSystemAudit
                                | RequestGrant
                                | RevokeGrant
                                | ListGrants
                                | ListAllGrants
                        )
                        | (
                            Support,
                            RequestGrant | RevokeGrant | ListGrants | ListAllGrants
                        )
                        | (
                            Approver,
                            DecideGrant | RevokeGrant | ReviewGrant | ListGrants | ListAllGrants
                        )
                );
                let holder = if role.is_platform() {
                    "_platform"
                } else {
                    "acme"
                };
                let got = authorize(&principal(holder, role), on(&acme, action), action).is_ok();
                assert_eq!(got, expected, "{role} {action:?}");
            }
        }
    }

    #[test]
    fn published_matrix_is_the_enforced_one() {
        let published = include_str!("../../../docs/permissions.md");
        let table = permission_matrix();
        assert!(
            published.contains(&table),
            "docs/permissions.md is out of date; replace its table with:\n{table}"
        );
    }

    #[test]
    fn role_and_scope_must_agree() {
        let acme = TenantId::new("acme").unwrap();
        for role in Role::ALL {
            let mismatched = if role.is_platform() {
                "acme"
            } else {
                "_platform"
            };
            for action in Action::ALL {
                assert_eq!(
                    authorize(&principal(mismatched, role), on(&acme, action), action),
                    Err(Denial::WrongScope),
                    "{role} {action:?}"
                );
            }
        }
    }

    #[test]
    fn platform_actions_need_no_tenant_and_tenant_actions_need_one() {
        let acme = TenantId::new("acme").unwrap();
        let operator = principal("_platform", Role::Operator);
        let admin = principal("acme", Role::Admin);
        for action in Action::ALL {
            let wrong = if action.is_platform() {
                Some(&acme)
            } else {
                None
            };
            assert!(authorize(&operator, wrong, action).is_err(), "{action:?}");
            assert!(authorize(&admin, wrong, action).is_err(), "{action:?}");
        }
        // Nobody acts on the platform pseudo-tenant as if it were a tenant.
        let platform = TenantId::platform();
        assert_eq!(
            authorize(&operator, Some(&platform), Action::RotateKeys),
            Err(Denial::WrongScope)
        );
        assert!(TenantId::new("_platform").is_err());
    }

    #[test]
    fn another_tenant_is_always_denied() {
        let globex = TenantId::new("globex").unwrap();
        for role in Role::ALL {
            for action in Action::ALL {
                if role.is_platform() || action.is_platform() {
                    continue;
                }
                assert_eq!(
                    authorize(&principal("acme", role), Some(&globex), action),
                    Err(Denial::OtherTenant)
                );
            }
        }
    }

    #[test]
    fn roles_parse_from_their_names() {
        for r in Role::ALL {
            assert_eq!(Role::parse(r.as_str()), Some(r));
        }
        assert_eq!(Role::parse("tenant-admin"), None);
    }

    #[test]
    fn denial_says_which_roles_would_do() {
        let d = authorize(
            &principal("acme", Role::Reader),
            Some(&TenantId::new("acme").unwrap()),
            Action::DeleteRecord,
        )
        .unwrap_err();
        assert_eq!(
            d.to_string(),
            "role reader may not perform records.delete; it needs one of: admin"
        );
    }
}
