//! Access decisions. One pure function, [`authorize`], decides every request; routes never do
//! their own checks. Deny by default: an action is allowed only when the permission matrix below
//! lists the principal's role for it and the principal belongs to the tenant it acts on.
//!
//! | action                 | admin | writer | reader | auditor |
//! |------------------------|:-----:|:------:|:------:|:-------:|
//! | ingest records         |   ✓   |   ✓    |        |         |
//! | read a record          |   ✓   |   ✓    |   ✓    |         |
//! | list subject's records |   ✓   |   ✓    |   ✓    |         |
//! | delete a record        |   ✓   |        |        |         |
//! | read the audit log     |   ✓   |        |        |    ✓    |
//!
//! Platform roles (operator, support, approver) and the tenant role security-officer exist in
//! the policy vocabulary but hold no standing access to records.

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

    pub fn valid_names() -> String {
        Role::ALL.map(Role::as_str).join(", ")
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
}

impl Action {
    pub const ALL: [Action; 5] = [
        Action::IngestRecords,
        Action::ReadRecord,
        Action::ListSubjectRecords,
        Action::DeleteRecord,
        Action::ReadAudit,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Action::IngestRecords => "records.ingest",
            Action::ReadRecord => "records.read",
            Action::ListSubjectRecords => "records.list_subject",
            Action::DeleteRecord => "records.delete",
            Action::ReadAudit => "audit.read",
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
        }
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
    /// The principal's role does not carry this permission.
    RoleLacksPermission { role: Role, action: Action },
}

impl fmt::Display for Denial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Denial::OtherTenant => f.write_str("the credential belongs to another tenant"),
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
        }
    }
}

/// The one access decision. Tenant membership first, so a foreign credential learns nothing
/// about which actions exist for the tenant.
pub fn authorize(principal: &Principal, tenant: &TenantId, action: Action) -> Result<(), Denial> {
    if principal.tenant != *tenant {
        return Err(Denial::OtherTenant);
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
            tenant: TenantId::new(tenant).unwrap(),
            role,
        }
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
                    (Admin, _)
                        | (Writer, IngestRecords | ReadRecord | ListSubjectRecords)
                        | (Reader, ReadRecord | ListSubjectRecords)
                        | (Auditor, ReadAudit)
                );
                let got = authorize(&principal("acme", role), &acme, action).is_ok();
                assert_eq!(got, expected, "{role} {action:?}");
            }
        }
    }

    #[test]
    fn another_tenant_is_always_denied() {
        let globex = TenantId::new("globex").unwrap();
        for role in Role::ALL {
            for action in Action::ALL {
                assert_eq!(
                    authorize(&principal("acme", role), &globex, action),
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
            &TenantId::new("acme").unwrap(),
            Action::DeleteRecord,
        )
        .unwrap_err();
        assert_eq!(
            d.to_string(),
            "role reader may not perform records.delete; it needs one of: admin"
        );
    }
}
