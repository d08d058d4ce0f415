use proptest::prelude::*;

use super::*;

const HOUR: i64 = 3600;

fn t(secs: i64) -> Timestamp {
    Timestamp::from_second(1_800_000_000 + secs).unwrap()
}

fn tenant(s: &str) -> TenantId {
    TenantId::from_stored(s).unwrap()
}

fn who(id: &str, tenant_id: &str, role: Role) -> Principal {
    Principal {
        id: id.into(),
        tenant: tenant(tenant_id),
        role,
    }
}

fn support() -> Principal {
    who("oidc:corp:sam", "_platform", Role::Support)
}

fn approver(n: u8) -> Principal {
    who(
        &format!("oidc:corp:approver{n}"),
        "_platform",
        Role::Approver,
    )
}

fn rules(restricted: bool) -> GrantRules {
    GrantRules {
        jit_max_secs: 24 * HOUR,
        restricted,
        restricted_approvers: 2,
    }
}

fn ask(duration_secs: i64) -> GrantRequest {
    GrantRequest {
        tenant: tenant("acme"),
        scope: GrantScope {
            data_types: vec![DataTypeName::new("ticket").unwrap()],
            subjects: Vec::new(),
            write: false,
        },
        reason: "customer asked us to look at ticket 42".into(),
        ticket: "SUP-42".into(),
        duration_secs,
    }
}

fn pending(restricted: bool) -> Grant {
    Grant::request(
        "grt_1".into(),
        &support(),
        ask(4 * HOUR),
        rules(restricted),
        t(0),
    )
    .unwrap()
}

#[test]
fn one_approval_activates_an_ordinary_grant_for_its_duration() {
    let g = pending(false);
    assert_eq!(g.status(t(0)), GrantStatus::Pending);
    let g = g.approve(&approver(1), t(60)).unwrap();
    assert_eq!(g.status(t(60)), GrantStatus::Active);
    assert_eq!(g.expires_at, Some(t(60 + 4 * HOUR)));
    assert_eq!(g.status(t(60 + 4 * HOUR - 1)), GrantStatus::Active);
    assert_eq!(g.status(t(60 + 4 * HOUR)), GrantStatus::Expired);
    assert_eq!(g.version, 1);
}

#[test]
fn restricted_scope_needs_two_distinct_approvers() {
    let g = pending(true);
    assert_eq!(g.approvals_needed, 2);
    let g = g.approve(&approver(1), t(10)).unwrap();
    assert_eq!(g.status(t(10)), GrantStatus::Pending);
    assert_eq!(
        g.approve(&approver(1), t(20)),
        Err(GrantError::AlreadyApproved("oidc:corp:approver1".into()))
    );
    let g = g.approve(&approver(2), t(30)).unwrap();
    assert_eq!(g.status(t(30)), GrantStatus::Active);
    assert_eq!(g.expires_at, Some(t(30 + 4 * HOUR)));
}

#[test]
fn a_requester_never_approves_their_own_request() {
    // Even one who also holds the approver role under the same identity.
    let g = pending(false);
    let same = who("oidc:corp:sam", "_platform", Role::Approver);
    assert_eq!(g.approve(&same, t(1)), Err(GrantError::SelfApproval));
    assert_eq!(g.deny(&same, "no", t(1)), Err(GrantError::SelfApproval));
}

#[test]
fn only_platform_approvers_decide() {
    let g = pending(false);
    for p in [
        who("token:a", "acme", Role::Admin),
        who("token:b", "acme", Role::SecurityOfficer),
        who("token:c", "_platform", Role::Operator),
        who("token:d", "_platform", Role::Support),
        // A tenant credential that claims the approver role is not a platform approver.
        who("token:e", "acme", Role::Approver),
    ] {
        assert_eq!(
            g.approve(&p, t(1)),
            Err(GrantError::NotApprover("approve")),
            "{p:?}"
        );
    }
}

#[test]
fn approval_after_lapse_or_decision_is_refused() {
    let g = pending(false);
    // Nobody decided within jit_max.
    assert_eq!(g.status(t(24 * HOUR)), GrantStatus::Lapsed);
    assert_eq!(
        g.approve(&approver(1), t(24 * HOUR)),
        Err(GrantError::NotPending(GrantStatus::Lapsed, "approved"))
    );
    let denied = g.deny(&approver(1), "no ticket on file", t(5)).unwrap();
    assert_eq!(denied.status(t(6)), GrantStatus::Denied);
    assert_eq!(
        denied.approve(&approver(2), t(7)),
        Err(GrantError::NotPending(GrantStatus::Denied, "approved"))
    );
    let active = g.approve(&approver(1), t(5)).unwrap();
    assert_eq!(
        active.approve(&approver(2), t(6)),
        Err(GrantError::NotPending(GrantStatus::Active, "approved"))
    );
    // An expired grant cannot be approved back to life.
    assert_eq!(
        active.approve(&approver(2), t(5 + 4 * HOUR)),
        Err(GrantError::NotPending(GrantStatus::Expired, "approved"))
    );
}

#[test]
fn duration_above_jit_max_is_refused() {
    let err = Grant::request("g".into(), &support(), ask(25 * HOUR), rules(false), t(0));
    assert_eq!(
        err,
        Err(GrantError::TooLong {
            asked: "25h".into(),
            max: "1d".into()
        })
    );
    assert!(Grant::request("g".into(), &support(), ask(24 * HOUR), rules(false), t(0)).is_ok());
    assert!(Grant::request("g".into(), &support(), ask(0), rules(false), t(0)).is_err());
}

#[test]
fn reason_and_ticket_are_required() {
    let mut r = ask(HOUR);
    r.reason = "  ".into();
    assert_eq!(
        Grant::request("g".into(), &support(), r, rules(false), t(0)),
        Err(GrantError::Missing("a reason"))
    );
    let mut r = ask(HOUR);
    r.ticket = String::new();
    assert_eq!(
        Grant::request("g".into(), &support(), r, rules(false), t(0)),
        Err(GrantError::Missing("a ticket id"))
    );
}

#[test]
fn only_support_and_operators_request() {
    for role in Role::ALL {
        let holder = if role.is_platform() {
            "_platform"
        } else {
            "acme"
        };
        let got = Grant::request(
            "g".into(),
            &who("p", holder, role),
            ask(HOUR),
            rules(false),
            t(0),
        );
        assert_eq!(
            got.is_ok(),
            matches!(role, Role::Support | Role::Operator),
            "{role}"
        );
    }
}

#[test]
fn break_glass_is_active_at_once_flagged_and_awaits_review() {
    let officer = who("token:so", "acme", Role::SecurityOfficer);
    let g = Grant::break_glass("g".into(), &officer, ask(2 * HOUR), rules(true), t(0)).unwrap();
    assert!(g.break_glass && g.pending_review());
    assert_eq!(g.status(t(0)), GrantStatus::Active);
    assert_eq!(g.expires_at, Some(t(2 * HOUR)));
    // Reaches Restricted data without approvals.
    let ticket = DataTypeName::new("ticket").unwrap();
    assert!(g.reaches(&ticket, Class::Restricted, &[]));
    assert_eq!(
        g.review(&officer, "fine", t(1)),
        Err(GrantError::SelfReview)
    );
    assert_eq!(
        g.review(&who("token:r", "acme", Role::Reader), "fine", t(1)),
        Err(GrantError::CannotReview)
    );
    assert_eq!(
        g.review(&who("token:x", "globex", Role::Admin), "fine", t(1)),
        Err(GrantError::CannotReview)
    );
    let reviewed = g
        .review(
            &who("token:ad", "acme", Role::Admin),
            "justified: outage",
            t(1),
        )
        .unwrap();
    assert!(!reviewed.pending_review());
    assert_eq!(
        reviewed.review(&approver(1), "again", t(2)),
        Err(GrantError::AlreadyReviewed)
    );
    // Only the tenant's own security officer breaks glass.
    assert_eq!(
        Grant::break_glass(
            "g".into(),
            &who("token:so2", "globex", Role::SecurityOfficer),
            ask(HOUR),
            rules(false),
            t(0)
        ),
        Err(GrantError::CannotBreakGlass(tenant("acme")))
    );
    assert_eq!(
        pending(false).review(&approver(1), "x", t(1)),
        Err(GrantError::NotBreakGlass)
    );
}

#[test]
fn revocation_ends_a_grant_and_only_the_right_people_revoke() {
    let active = pending(false).approve(&approver(1), t(0)).unwrap();
    let other_support = who("oidc:corp:kim", "_platform", Role::Support);
    assert_eq!(
        active.revoke(&other_support, "x", t(1)),
        Err(GrantError::CannotRevoke)
    );
    assert_eq!(
        active.revoke(&who("a", "globex", Role::Admin), "x", t(1)),
        Err(GrantError::CannotRevoke)
    );
    for by in [
        support(),
        approver(2),
        who("a", "acme", Role::Admin),
        who("s", "acme", Role::SecurityOfficer),
    ] {
        let revoked = active.revoke(&by, "done", t(10)).unwrap();
        assert_eq!(revoked.status(t(10)), GrantStatus::Revoked);
        assert!(!revoked.admits(&support(), &tenant("acme"), Action::ReadRecord, t(10)));
    }
    let expired_at = t(4 * HOUR);
    assert_eq!(
        active.revoke(&support(), "late", expired_at),
        Err(GrantError::NotRevocable(GrantStatus::Expired))
    );
}

#[test]
fn scope_limits_actions_types_subjects_and_restricted_data() {
    let g = pending(false).approve(&approver(1), t(0)).unwrap();
    let acme = tenant("acme");
    assert!(g.admits(&support(), &acme, Action::ReadRecord, t(1)));
    assert!(g.admits(&support(), &acme, Action::ListSubjectRecords, t(1)));
    assert!(!g.admits(&support(), &acme, Action::DeleteRecord, t(1)));
    assert!(!g.admits(&support(), &acme, Action::ExportSubject, t(1)));
    assert!(!g.admits(&support(), &tenant("globex"), Action::ReadRecord, t(1)));
    // The same id in another role is another principal.
    let as_operator = who("oidc:corp:sam", "_platform", Role::Operator);
    assert!(!g.admits(&as_operator, &acme, Action::ReadRecord, t(1)));
    let ticket = DataTypeName::new("ticket").unwrap();
    let invoice = DataTypeName::new("invoice").unwrap();
    assert!(g.reaches(&ticket, Class::Confidential, &[]));
    assert!(!g.reaches(&invoice, Class::Confidential, &[]));
    // Approved by one person: Restricted records stay out of reach.
    assert!(!g.reaches(&ticket, Class::Restricted, &[]));
    let mut subject_scoped = g.clone();
    subject_scoped.scope.subjects = vec!["aa".into(), "bb".into()];
    assert!(subject_scoped.reaches(&ticket, Class::Internal, &["cc".into(), "bb".into()]));
    assert!(!subject_scoped.reaches(&ticket, Class::Internal, &["cc".into()]));
    assert!(!subject_scoped.reaches(&ticket, Class::Internal, &[]));
    assert!(subject_scoped.scope.reaches_subject("aa"));
    assert!(!subject_scoped.scope.reaches_subject("cc"));
}

#[test]
fn durations_parse_in_minutes_hours_and_days() {
    assert_eq!(parse_duration("30m"), Ok(1800));
    assert_eq!(parse_duration("4h"), Ok(4 * HOUR));
    assert_eq!(parse_duration(" 1d "), Ok(24 * HOUR));
    for bad in [
        "",
        "h",
        "4",
        "4mo",
        "-1h",
        "1.5h",
        "99999999999999999999h",
        "400d",
    ] {
        assert!(parse_duration(bad).is_err(), "{bad}");
    }
    assert!(matches!(
        parse_duration("0h"),
        Err(GrantError::InvalidDuration(_))
    ));
    assert_eq!(format_duration(5400), "90m");
    assert_eq!(format_duration(7200), "2h");
}

#[test]
fn grants_round_trip_through_json() {
    let g = pending(true).approve(&approver(1), t(3)).unwrap();
    let json = serde_json::to_string(&g).unwrap();
    assert_eq!(serde_json::from_str::<Grant>(&json).unwrap(), g);
}

// The property the access issue names: no request reaches another tenant's data without an
// active, approved grant. Grants are built through the real transitions (requests, approvals
// by arbitrary principals, denials, revocations, break-glass) at arbitrary times, so every
// stored state is one the server could hold.

const TENANTS: [&str; 3] = ["acme", "globex", "_platform"];
const IDS: [&str; 4] = ["p0", "p1", "p2", "p3"];

fn any_principal() -> impl Strategy<Value = Principal> {
    (0..IDS.len(), 0..TENANTS.len(), 0..Role::ALL.len())
        .prop_map(|(i, t, r)| who(IDS[i], TENANTS[t], Role::ALL[r]))
}

#[derive(Clone, Debug)]
enum Step {
    Approve(Principal),
    Deny(Principal),
    Revoke(Principal),
    Review(Principal),
}

fn any_step() -> impl Strategy<Value = (i64, Step)> {
    (
        0..6 * HOUR,
        any_principal(),
        prop_oneof![Just(0u8), Just(1), Just(2), Just(3)],
    )
        .prop_map(|(dt, p, kind)| {
            let step = match kind {
                0 => Step::Approve(p),
                1 => Step::Deny(p),
                2 => Step::Revoke(p),
                _ => Step::Review(p),
            };
            (dt, step)
        })
}

fn any_grant() -> impl Strategy<Value = Option<Grant>> {
    (
        any_principal(),
        0..2usize,
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        1..30 * HOUR,
        0..48 * HOUR,
        prop::collection::vec(any_step(), 0..6),
    )
        .prop_map(
            |(by, tenant_i, restricted, write, glass, duration, start, steps)| {
                let request = GrantRequest {
                    tenant: tenant(TENANTS[tenant_i]),
                    scope: GrantScope {
                        data_types: Vec::new(),
                        subjects: Vec::new(),
                        write,
                    },
                    reason: "r".into(),
                    ticket: "T-1".into(),
                    duration_secs: duration,
                };
                let mut now = t(start);
                let mut grant = if glass {
                    Grant::break_glass("g".into(), &by, request, rules(restricted), now)
                } else {
                    Grant::request("g".into(), &by, request, rules(restricted), now)
                }
                .ok()?;
                for (dt, step) in steps {
                    now = t(now.as_second() - 1_800_000_000 + dt);
                    let next = match &step {
                        Step::Approve(p) => grant.approve(p, now),
                        Step::Deny(p) => grant.deny(p, "no", now),
                        Step::Revoke(p) => grant.revoke(p, "done", now),
                        Step::Review(p) => grant.review(p, "ok", now),
                    };
                    if let Ok(next) = next {
                        grant = next;
                    }
                }
                Some(grant)
            },
        )
}

/// Actions that hand out or change a tenant's records.
fn touches_records(action: Action) -> bool {
    matches!(
        action,
        Action::IngestRecords
            | Action::ReadRecord
            | Action::ListSubjectRecords
            | Action::DeleteRecord
            | Action::ExportSubject
            | Action::EraseSubject
            | Action::RectifyRecord
            | Action::Detokenize
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4096))]

    #[test]
    fn no_foreign_data_without_an_active_approved_grant(
        principal in any_principal(),
        target in 0..2usize,
        action in (0..Action::ALL.len()).prop_map(|i| Action::ALL[i]),
        grants in prop::collection::vec(any_grant(), 0..5),
        now in 0..60 * HOUR,
    ) {
        let grants: Vec<Grant> = grants.into_iter().flatten().collect();
        let target = tenant(TENANTS[target]);
        let now = t(now);
        let on = (!action.is_platform()).then_some(&target);
        match authorize_with(&principal, on, action, &grants, now) {
            Err(_) => {}
            Ok(Authority::Role) => {
                // Standing access to records only ever comes from membership.
                if touches_records(action) {
                    prop_assert_eq!(&principal.tenant, &target);
                }
                prop_assert!(authorize(&principal, on, action).is_ok());
            }
            Ok(Authority::Grant(g)) => {
                prop_assert!(touches_records(action));
                prop_assert_eq!(&g.tenant, &target);
                prop_assert_eq!(&g.grantee, &principal.id);
                prop_assert_eq!(g.grantee_role, principal.role);
                prop_assert_eq!(g.status(now), GrantStatus::Active);
                prop_assert!(g.denied.is_none() && g.revoked.is_none());
                prop_assert!(now < g.expires_at.unwrap());
                if g.break_glass {
                    // Only the tenant's own security officer, and flagged for review.
                    prop_assert_eq!(principal.role, Role::SecurityOfficer);
                    prop_assert_eq!(&principal.tenant, &target);
                } else {
                    prop_assert!(principal.tenant.is_platform());
                    let mut approvers: Vec<&str> =
                        g.approvals.iter().map(|a| a.by.as_str()).collect();
                    approvers.sort_unstable();
                    approvers.dedup();
                    prop_assert!(approvers.len() >= usize::from(g.approvals_needed));
                    let least = if g.restricted { 2 } else { 1 };
                    prop_assert!(g.approvals_needed >= least);
                    prop_assert!(!approvers.contains(&principal.id.as_str()));
                    prop_assert!(g.approvals.iter().all(|a| a.at <= now));
                }
                if !g.scope.write {
                    prop_assert!(matches!(action, Action::ReadRecord | Action::ListSubjectRecords));
                }
            }
        }
    }
}
