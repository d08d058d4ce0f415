//! Just-in-time grants over HTTP on both backends: the whole flow (request, approval, reads in
//! scope, refusals out of scope, revocation, expiry), the two-person rule, break-glass with its
//! review, reasons, every bad input, and a randomised walk checking that no principal ever
//! reads another tenant's records without an active, approved grant.

use custodian_core::access::Role;
use custodian_core::grant::GrantStatus;
use custodian_core::ids::TenantId;
use custodian_store::AuditLog;
use jiff::{SignedDuration, ToSpan};
use reqwest::Method;
use serde_json::{Value, json};

use crate::harness::{
    TestServer, default_policy_text, now, on_both_backends, record_line, rfc3339, unique,
};

on_both_backends!(
    the_grant_flow_end_to_end,
    restricted_data_needs_two_approvers,
    break_glass_opens_at_once_and_awaits_review,
    bad_grant_input_is_refused_and_audited,
    no_foreign_read_without_an_active_approved_grant
);

/// `token:<id>`, the principal id of an API token.
fn principal_of(token: &str) -> String {
    format!("token:{}", &token[4..20])
}

async fn request_grant(server: &TestServer, token: &str, body: Value) -> Value {
    let reply = server.post_json("/v1/grants", token, &body).await;
    assert_eq!(reply.status, 201, "{}", reply.text());
    reply.json()
}

async fn act(
    server: &TestServer,
    token: &str,
    id: &str,
    verb: &str,
    body: Value,
) -> crate::harness::Reply {
    server
        .post_json(&format!("/v1/grants/{id}/{verb}"), token, &body)
        .await
}

fn grant_body(data_types: &[&str], subjects: &[&str], duration: &str) -> Value {
    json!({
        "tenant": "acme",
        "data_types": data_types,
        "subjects": subjects,
        "reason": "customer reports a failed login; checking their auth trail",
        "ticket": "SUP-4711",
        "duration": duration,
    })
}

struct Seeded {
    admin: String,
    /// app_log of `s1`, customer_record of `s1`, payment of `s1`, app_log of `s2`.
    ids: Vec<String>,
    s1: String,
    s2: String,
}

async fn seed(server: &TestServer) -> Seeded {
    let admin = server.token("acme", Role::Admin).await;
    let (s1, s2) = (unique("s1"), unique("s2"));
    let t = rfc3339(now() - 1.hour());
    let body = [
        record_line("app_log", &[&s1], &t, json!({"msg": "login failed"})),
        record_line("customer_record", &[&s1], &t, json!({"plan": "pro"})),
        record_line("payment", &[&s1], &t, json!({"amount": 12})),
        record_line("app_log", &[&s2], &t, json!({"msg": "other person"})),
    ]
    .join("\n");
    let ids = server.ingest("acme", &admin, &body).await;
    Seeded { admin, ids, s1, s2 }
}

async fn the_grant_flow_end_to_end(server: TestServer) {
    let data = seed(&server).await;
    let support = server.platform_token(Role::Support).await;
    let approver = server.platform_token(Role::Approver).await;

    // Always off: no standing access to records.
    let refused = server.get_record("acme", &support, &data.ids[0]).await;
    assert!(
        refused.problem(403, "forbidden")["detail"]
            .as_str()
            .unwrap()
            .contains("no standing access")
    );

    let grant = request_grant(
        &server,
        &support,
        grant_body(&["app_log", "customer_record"], &[&data.s1], "2h"),
    )
    .await;
    let id = grant["id"].as_str().unwrap().to_owned();
    assert_eq!(grant["status"], "pending");
    assert_eq!(grant["approvals_needed"], 1);
    assert_eq!(grant["restricted"], false);
    // Subjects are kept as pseudonyms only.
    assert!(!grant.to_string().contains(&data.s1));
    // Pending is not active.
    server
        .get_record("acme", &support, &data.ids[0])
        .await
        .problem(403, "forbidden");
    // The requester's role cannot approve.
    act(&server, &support, &id, "approve", json!({}))
        .await
        .problem(403, "forbidden");

    let active = act(&server, &approver, &id, "approve", json!({}))
        .await
        .ok_json();
    assert_eq!(active["status"], "active");
    assert_eq!(active["approvals"][0]["by"], principal_of(&approver));

    // In scope: read, with the grant's reason standing in for X-Custodian-Reason (support is
    // in the default policy's reason_required).
    let record = server
        .get_record("acme", &support, &data.ids[0])
        .await
        .ok_json();
    assert_eq!(record["payload"]["msg"], "login failed");
    // Out of scope: another data type, another subject, another tenant, a write.
    for (i, why) in [(2, "payment"), (3, "other subject")] {
        let r = server.get_record("acme", &support, &data.ids[i]).await;
        assert!(
            r.problem(403, "forbidden")["detail"]
                .as_str()
                .unwrap()
                .contains(&id),
            "{why}"
        );
    }
    server
        .get_record("globex", &support, &data.ids[0])
        .await
        .problem(403, "forbidden");
    server
        .delete(
            &format!("/v1/tenants/acme/records/{}", data.ids[0]),
            &support,
        )
        .await
        .problem(403, "forbidden");
    // Listing the subject leaves out what the grant does not reach.
    let page = server
        .list_subject("acme", &support, &data.s1, "")
        .await
        .ok_json();
    let listed: Vec<&str> = page["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(listed.len(), 2, "{page}");
    assert!(listed.contains(&data.ids[0].as_str()) && listed.contains(&data.ids[1].as_str()));
    server
        .list_subject("acme", &support, &data.s2, "")
        .await
        .problem(403, "forbidden");

    // The audit says who read what under which grant, and why.
    let log = server.audit_events("acme").await;
    let read = log
        .iter()
        .find(|e| {
            e["action"] == "records.read"
                && e["decision"] == "allow"
                && e["actor"] == principal_of(&support)
        })
        .expect("the read is audited");
    assert_eq!(read["grant"], id.as_str());
    assert_eq!(
        read["reason"],
        "customer reports a failed login; checking their auth trail"
    );
    assert!(
        log.iter()
            .any(|e| e["action"] == "grants.request" && e["grant"] == id.as_str())
    );
    assert!(
        log.iter()
            .any(|e| e["action"] == "grants.decide" && e["decision"] == "allow")
    );
    assert!(log.iter().any(|e| e["action"] == "records.read"
        && e["decision"] == "deny"
        && e["grant"] == id.as_str()));

    // An explicit reason wins over the grant's.
    let reason = [("x-custodian-reason", "verifying the fix for SUP-4711")];
    let path = format!("/v1/tenants/acme/records/{}", data.ids[1]);
    let r = server
        .send(Method::GET, &path, Some(&support), &reason, None)
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let log = server.audit_events("acme").await;
    assert_eq!(
        log.last().unwrap()["reason"],
        "verifying the fix for SUP-4711"
    );

    // The grantee ends it; it admits nothing more and cannot be approved back.
    let revoked = act(&server, &support, &id, "revoke", json!({"reason": "done"}))
        .await
        .ok_json();
    assert_eq!(revoked["status"], "revoked");
    server
        .get_record("acme", &support, &data.ids[0])
        .await
        .problem(403, "forbidden");
    act(&server, &approver, &id, "approve", json!({}))
        .await
        .problem(409, "grant-conflict");

    // Expiry: an approved grant ends on time.
    let grant = request_grant(&server, &support, grant_body(&["app_log"], &[], "1h")).await;
    let id2 = grant["id"].as_str().unwrap().to_owned();
    act(&server, &approver, &id2, "approve", json!({}))
        .await
        .ok_json();
    server
        .get_record("acme", &support, &data.ids[3])
        .await
        .ok_json();
    server.clock.advance(SignedDuration::from_mins(61));
    server
        .get_record("acme", &support, &data.ids[3])
        .await
        .problem(403, "forbidden");
    let shown = server
        .get(&format!("/v1/grants/{id2}"), Some(&approver))
        .await
        .ok_json();
    assert_eq!(shown["status"], "expired");
    // Approval after expiry is refused, and audited.
    let late = act(&server, &approver, &id2, "approve", json!({})).await;
    assert!(
        late.problem(409, "grant-conflict")["detail"]
            .as_str()
            .unwrap()
            .contains("expired")
    );
    let log = server.audit_events("acme").await;
    let denial = log.last().unwrap();
    assert_eq!(denial["decision"], "deny");
    assert_eq!(denial["action"], "grants.decide");

    // Listing: the approver sees every tenant's, the tenant's admin its own, globex none.
    let all = server.get("/v1/grants", Some(&approver)).await.ok_json();
    assert_eq!(all["grants"].as_array().unwrap().len(), 2);
    let own = server.get("/v1/grants", Some(&data.admin)).await.ok_json();
    assert_eq!(own["grants"].as_array().unwrap().len(), 2);
    let globex = server.token("globex", Role::Admin).await;
    let theirs = server.get("/v1/grants", Some(&globex)).await.ok_json();
    assert!(theirs["grants"].as_array().unwrap().is_empty());
    server
        .get(&format!("/v1/grants/{id2}"), Some(&globex))
        .await
        .problem(404, "grant-not-found");
    let expired = server
        .get("/v1/grants?status=expired&tenant=acme", Some(&approver))
        .await
        .ok_json();
    assert_eq!(expired["grants"].as_array().unwrap().len(), 1);
    assert_eq!(expired["grants"][0]["id"], id2.as_str());
}

async fn restricted_data_needs_two_approvers(server: TestServer) {
    let data = seed(&server).await;
    let support = server.platform_token(Role::Support).await;
    let first = server.platform_token(Role::Approver).await;
    let second = server.platform_token(Role::Approver).await;
    let grant = request_grant(&server, &support, grant_body(&["payment"], &[], "4h")).await;
    let id = grant["id"].as_str().unwrap().to_owned();
    assert_eq!(grant["restricted"], true);
    assert_eq!(grant["approvals_needed"], 2);
    let once = act(&server, &first, &id, "approve", json!({}))
        .await
        .ok_json();
    assert_eq!(once["status"], "pending");
    server
        .get_record("acme", &support, &data.ids[2])
        .await
        .problem(403, "forbidden");
    // The same approver twice does not make two.
    let again = act(&server, &first, &id, "approve", json!({})).await;
    assert!(
        again.problem(409, "grant-conflict")["detail"]
            .as_str()
            .unwrap()
            .contains("already")
    );
    let twice = act(&server, &second, &id, "approve", json!({}))
        .await
        .ok_json();
    assert_eq!(twice["status"], "active");
    let record = server
        .get_record("acme", &support, &data.ids[2])
        .await
        .ok_json();
    assert_eq!(record["payload"]["amount"], 12);
    // A grant approved once, for all data types, does not reach Restricted records.
    let broad = request_grant(&server, &support, grant_body(&["app_log"], &[], "4h")).await;
    assert_eq!(broad["approvals_needed"], 1);
}

async fn break_glass_opens_at_once_and_awaits_review(server: TestServer) {
    let data = seed(&server).await;
    let officer = server.token("acme", Role::SecurityOfficer).await;
    // A security officer has no standing read of records.
    server
        .get_record("acme", &officer, &data.ids[2])
        .await
        .problem(403, "forbidden");
    let reply = server
        .post_json(
            "/v1/grants/break-glass",
            &officer,
            &grant_body(&[], &[], "1h"),
        )
        .await;
    assert_eq!(reply.status, 201, "{}", reply.text());
    let grant = reply.json();
    let id = grant["id"].as_str().unwrap().to_owned();
    assert_eq!(grant["status"], "active");
    assert_eq!(grant["break_glass"], true);
    assert_eq!(grant["pending_review"], true);
    // Restricted data too, without approval.
    server
        .get_record("acme", &officer, &data.ids[2])
        .await
        .ok_json();
    // Alerted: a metric and a flagged audit event.
    let metrics = server.get("/metrics", None).await.text();
    // Other tests in this process may break glass too: at least this one is counted.
    let counted = metrics
        .lines()
        .find_map(|l| l.strip_prefix("custodian_break_glass_total{tenant=\"acme\"} "))
        .and_then(|n| n.trim().parse::<u64>().ok());
    assert!(counted >= Some(1), "{metrics}");
    let log = server.audit_events("acme").await;
    let opened = log
        .iter()
        .find(|e| e["action"] == "grants.break_glass")
        .unwrap();
    assert!(
        opened["reason"]
            .as_str()
            .unwrap()
            .starts_with("BREAK-GLASS")
    );
    // Another tenant's officer cannot break into acme.
    let foreign = server.token("globex", Role::SecurityOfficer).await;
    server
        .post_json(
            "/v1/grants/break-glass",
            &foreign,
            &grant_body(&[], &[], "1h"),
        )
        .await
        .problem(403, "forbidden");
    // Reviewed by someone else, once.
    act(&server, &officer, &id, "review", json!({"reason": "fine"}))
        .await
        .problem(403, "forbidden");
    let auditor = server.token("acme", Role::Auditor).await;
    let reviewed = act(
        &server,
        &auditor,
        &id,
        "review",
        json!({"reason": "outage INC-9, access justified"}),
    )
    .await
    .ok_json();
    assert_eq!(reviewed["pending_review"], false);
    assert_eq!(reviewed["review"]["by"], principal_of(&auditor));
    act(
        &server,
        &data.admin,
        &id,
        "review",
        json!({"reason": "again"}),
    )
    .await
    .problem(409, "grant-conflict");
}

async fn bad_grant_input_is_refused_and_audited(server: TestServer) {
    let support = server.platform_token(Role::Support).await;
    let approver = server.platform_token(Role::Approver).await;
    let reader = server.token("acme", Role::Reader).await;
    let before = server.audit_events("acme").await.len();

    // Longer than jit_max (24h in the default policy).
    let long = server
        .post_json("/v1/grants", &support, &grant_body(&[], &[], "25h"))
        .await;
    assert!(
        long.problem(400, "invalid-request")["detail"]
            .as_str()
            .unwrap()
            .contains("jit_max")
    );
    for (field, value) in [
        ("duration", json!("forever")),
        ("duration", json!("0h")),
        ("reason", json!("  ")),
        ("ticket", json!("")),
        ("data_types", json!(["no_such_type"])),
    ] {
        let mut body = grant_body(&[], &[], "1h");
        body[field] = value;
        server
            .post_json("/v1/grants", &support, &body)
            .await
            .problem(400, "invalid-request");
    }
    // Each refusal above is in acme's log.
    let log = server.audit_events("acme").await;
    assert_eq!(
        log[before..]
            .iter()
            .filter(|e| e["action"] == "grants.request" && e["decision"] == "deny")
            .count(),
        6
    );
    // A tenant's own principals do not request grants.
    server
        .post_json("/v1/grants", &reader, &grant_body(&[], &[], "1h"))
        .await
        .problem(403, "forbidden");
    // An unknown tenant: 404, audited in the system log.
    let mut body = grant_body(&[], &[], "1h");
    body["tenant"] = json!("initech");
    let unknown = server.post_json("/v1/grants", &support, &body).await;
    unknown.problem(404, "unknown-tenant");
    let system = AuditLog::System;
    let size = server.state.store.audit_size(&system).await.unwrap();
    let last: Value =
        serde_json::from_slice(&server.audit_bodies(&system, size - 1, size).await[0]).unwrap();
    assert_eq!(last["action"], "grants.request");
    assert_eq!(last["decision"], "deny");
    // Malformed bodies and unknown fields.
    let r = server
        .send(
            Method::POST,
            "/v1/grants",
            Some(&support),
            &[("content-type", "application/json")],
            Some(b"{not json".to_vec()),
        )
        .await;
    r.problem(400, "invalid-request");
    let mut extra = grant_body(&[], &[], "1h");
    extra["approved"] = json!(true);
    server
        .post_json("/v1/grants", &support, &extra)
        .await
        .problem(400, "invalid-request");
    // Unknown grant ids answer alike for every caller.
    act(&server, &approver, "grt_nope", "approve", json!({}))
        .await
        .problem(404, "grant-not-found");
    // Deny needs a reason; a denied request cannot then be approved.
    let grant = request_grant(&server, &support, grant_body(&[], &[], "1h")).await;
    let id = grant["id"].as_str().unwrap();
    // Another support principal may not end someone else's grant.
    let colleague = server.platform_token(Role::Support).await;
    let r = act(
        &server,
        &colleague,
        id,
        "revoke",
        json!({"reason": "mine now"}),
    )
    .await;
    assert!(
        r.problem(403, "forbidden")["detail"]
            .as_str()
            .unwrap()
            .contains("only the grantee")
    );
    act(&server, &approver, id, "deny", json!({}))
        .await
        .problem(400, "invalid-request");
    let denied = act(
        &server,
        &approver,
        id,
        "deny",
        json!({"reason": "no ticket on file"}),
    )
    .await
    .ok_json();
    assert_eq!(denied["status"], "denied");
    act(&server, &approver, id, "approve", json!({}))
        .await
        .problem(409, "grant-conflict");
    // No credential at all.
    server
        .get("/v1/grants", None)
        .await
        .problem(401, "unauthorized");
    // A bad status filter.
    server
        .get("/v1/grants?status=open", Some(&approver))
        .await
        .problem(400, "invalid-request");
}

/// A small deterministic generator, so a failing walk can be replayed from its seed.
struct Walk(u64);

impl Walk {
    fn next(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

/// Random principals take random steps (request, approve, deny, revoke grants; read and list
/// records of either tenant; time passes); after every successful read, the reader must be a
/// member of the tenant or hold a grant that is active, approved by enough others, and
/// reaches the record.
async fn no_foreign_read_without_an_active_approved_grant(server: TestServer) {
    let t = rfc3339(now() - 1.hour());
    let mut records: Vec<(String, String, String)> = Vec::new(); // (tenant, id, subject)
    for tenant in ["acme", "globex"] {
        let admin = server.token(tenant, Role::Admin).await;
        let subjects = [unique("a"), unique("b")];
        let body = [
            record_line("app_log", &[&subjects[0]], &t, json!({"n": 1})),
            record_line("payment", &[&subjects[0]], &t, json!({"n": 2})),
            record_line("customer_record", &[&subjects[1]], &t, json!({"n": 3})),
        ]
        .join("\n");
        for (i, id) in server
            .ingest(tenant, &admin, &body)
            .await
            .into_iter()
            .enumerate()
        {
            records.push((tenant.to_owned(), id, subjects[[0, 0, 1][i]].clone()));
        }
    }
    let mut principals: Vec<(String, Option<&str>)> = Vec::new(); // (token, member of)
    for tenant in ["acme", "globex"] {
        for role in [
            Role::Admin,
            Role::Reader,
            Role::SecurityOfficer,
            Role::Auditor,
        ] {
            principals.push((server.token(tenant, role).await, Some(tenant)));
        }
    }
    for role in [
        Role::Support,
        Role::Support,
        Role::Operator,
        Role::Approver,
        Role::Approver,
    ] {
        principals.push((server.platform_token(role).await, None));
    }
    let reason = [("x-custodian-reason", "walk")];
    let mut grant_ids: Vec<String> = Vec::new();
    let mut walk = Walk(0x9e37_79b9_7f4a_7c15);
    // (allowed, refused, allowed to a non-member under a grant)
    let mut reads = (0, 0, 0);
    // Principals 8..11 request grants, 11..13 approve them: three steps in four are taken by
    // whoever would take them, the rest by anyone, so the walk reaches active grants often.
    let pick = |walk: &mut Walk, usual: std::ops::Range<usize>| {
        let i = if walk.next(4) == 0 {
            walk.next(principals.len())
        } else {
            usual.start + walk.next(usual.len())
        };
        principals[i].clone()
    };
    for _ in 0..300 {
        let step = walk.next(8);
        let (token, member) = match step {
            0 | 1 => pick(&mut walk, 8..11),
            2 | 3 => pick(&mut walk, 11..13),
            // Mostly those who could hold grants, so reads under grants happen.
            _ => pick(&mut walk, 8..11),
        };
        match step {
            0 | 1 => {
                let tenant = ["acme", "globex"][walk.next(2)];
                let types = [vec![], vec!["app_log"], vec!["payment"]][walk.next(3)].clone();
                let subjects: Vec<&str> = match walk.next(3) {
                    0 => records
                        .iter()
                        .filter(|r| r.0 == tenant)
                        .map(|r| r.2.as_str())
                        .take(1)
                        .collect(),
                    _ => vec![],
                };
                let mut body = grant_body(&types, &subjects, ["30m", "2h", "1d"][walk.next(3)]);
                body["tenant"] = json!(tenant);
                let path = if walk.next(4) == 0 {
                    "/v1/grants/break-glass"
                } else {
                    "/v1/grants"
                };
                let r = server.post_json(path, &token, &body).await;
                if r.status == 201 {
                    grant_ids.push(r.json()["id"].as_str().unwrap().to_owned());
                }
            }
            2 | 3 if !grant_ids.is_empty() => {
                let id = grant_ids[walk.next(grant_ids.len())].clone();
                let (verb, body) = [
                    ("approve", json!({})),
                    ("approve", json!({})),
                    ("deny", json!({"reason": "no"})),
                    ("revoke", json!({"reason": "done"})),
                ][walk.next(4)]
                .clone();
                let r = act(&server, &token, &id, verb, body).await;
                assert!(
                    [200, 403, 404, 409].contains(&r.status.as_u16()),
                    "{}",
                    r.text()
                );
            }
            4 => server.clock.advance(SignedDuration::from_mins(20)),
            _ => {
                let (tenant, id, subject) = records[walk.next(records.len())].clone();
                let r = if walk.next(2) == 0 {
                    server
                        .send(
                            Method::GET,
                            &format!("/v1/tenants/{tenant}/records/{id}"),
                            Some(&token),
                            &reason,
                            None,
                        )
                        .await
                } else {
                    server
                        .send(
                            Method::GET,
                            &format!("/v1/tenants/{tenant}/subjects/{subject}/records"),
                            Some(&token),
                            &reason,
                            None,
                        )
                        .await
                };
                assert!([200, 403].contains(&r.status.as_u16()), "{}", r.text());
                if r.status != 200 {
                    reads.1 += 1;
                    continue;
                }
                reads.0 += 1;
                if member == Some(tenant.as_str()) {
                    continue;
                }
                // Not a member: an active grant must stand behind the read.
                let who = principal_of(&token);
                let tenant_id = TenantId::new(&tenant).unwrap();
                let at = server.state.clock.now();
                let live = server
                    .state
                    .store
                    .live_grants(&tenant_id, &who, at)
                    .await
                    .unwrap();
                let backing = live.iter().find(|g| g.status(at) == GrantStatus::Active);
                let g = backing.unwrap_or_else(|| {
                    panic!("{who} read {tenant}'s {id} without an active grant")
                });
                reads.2 += 1;
                // Break-glass is only ever a member's (its own security officer's).
                assert!(!g.break_glass, "{g:?}");
                let mut approvers: Vec<&str> = g.approvals.iter().map(|a| a.by.as_str()).collect();
                approvers.sort_unstable();
                approvers.dedup();
                assert!(approvers.len() >= usize::from(g.approvals_needed.max(1)));
                assert!(!approvers.contains(&who.as_str()));
            }
        }
    }
    // The walk must have exercised both outcomes.
    assert!(reads.0 > 0 && reads.1 > 0 && reads.2 > 0, "{reads:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_the_policy_names_must_say_why_they_read() {
    let text = default_policy_text().replace(
        "reason_required = [\"operator\", \"support\"]",
        "reason_required = [\"reader\"]",
    );
    let policy = custodian_core::policy::Policy::parse("reason.toml", &text).unwrap();
    let server = TestServer::start_with(
        crate::harness::Backend::Sqlite,
        custodian_server::DEFAULT_BODY_LIMIT,
        policy,
    )
    .await
    .unwrap();
    let data = seed(&server).await;
    let reader = server.token("acme", Role::Reader).await;
    let path = format!("/v1/tenants/acme/records/{}", data.ids[0]);
    let missing = server.get(&path, Some(&reader)).await;
    assert!(
        missing.problem(400, "reason-required")["detail"]
            .as_str()
            .unwrap()
            .contains("X-Custodian-Reason")
    );
    for bad in ["", "   "] {
        server
            .send(
                Method::GET,
                &path,
                Some(&reader),
                &[("x-custodian-reason", bad)],
                None,
            )
            .await
            .problem(400, "invalid-request");
    }
    let why = "ticket 88: customer asked for their login history";
    let r = server
        .send(
            Method::GET,
            &path,
            Some(&reader),
            &[("x-custodian-reason", why)],
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    // Other roles still read without one.
    server
        .get_record("acme", &data.admin, &data.ids[0])
        .await
        .ok_json();
    let log = server.audit_events("acme").await;
    let reads: Vec<&Value> = log
        .iter()
        .filter(|e| e["action"] == "records.read" && e["actor"] == principal_of(&reader))
        .collect();
    assert_eq!(reads[0]["decision"], "deny");
    assert_eq!(reads.last().unwrap()["decision"], "allow");
    assert_eq!(reads.last().unwrap()["reason"], why);
}

/// The same flow through `custodian grant`, as support, an approver and a reader of records
/// would run it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_requests_approves_lists_and_revokes() {
    let server = TestServer::sqlite().await;
    let data = seed(&server).await;
    let support = server.platform_token(Role::Support).await;
    let approver = server.platform_token(Role::Approver).await;
    let base = server.base.clone();
    let run = |token: String, args: Vec<String>| {
        let base = base.clone();
        async move {
            let mut all = vec![
                args[0].clone(),
                args[1].clone(),
                "--server".into(),
                base,
                "--token".into(),
                token,
            ];
            all.extend(args[2..].iter().cloned());
            let refs: Vec<&str> = all.iter().map(String::as_str).collect();
            crate::harness::custodian_cli(&refs).await
        }
    };
    let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let out = run(
        support.clone(),
        args(&[
            "grant",
            "request",
            "--tenant",
            "acme",
            "--type",
            "app_log",
            "--subject",
            &data.s1,
            "--reason",
            "checking a failed login",
            "--ticket",
            "SUP-9",
            "--duration",
            "30m",
        ]),
    )
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let grant: Value = serde_json::from_slice(&out.stdout).unwrap();
    let id = grant["id"].as_str().unwrap().to_owned();
    assert!(String::from_utf8_lossy(&out.stderr).contains("custodian grant approve"));

    // Support cannot approve; the exit code says refused, the message says why.
    let out = run(support.clone(), args(&["grant", "approve", &id])).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("approver"));
    let out = run(approver.clone(), args(&["grant", "approve", &id])).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("now active"));

    let out = run(
        approver.clone(),
        args(&["grant", "list", "--status", "active"]),
    )
    .await;
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains(&id) && table.contains("SUP-9"), "{table}");

    // Reading under the grant with `records get`.
    let out = crate::harness::custodian_cli(&[
        "records",
        "get",
        "--server",
        &server.base,
        "--token",
        &support,
        "--tenant",
        "acme",
        &data.ids[0],
    ])
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let out = run(
        support.clone(),
        args(&["grant", "revoke", &id, "--reason", "done"]),
    )
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run(support.clone(), args(&["grant", "show", &id])).await;
    let shown: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(shown["status"], "revoked");
    // A duration above jit_max: refused with the reason, exit 1.
    let out = run(
        support,
        args(&[
            "grant",
            "request",
            "--tenant",
            "acme",
            "--reason",
            "r",
            "--ticket",
            "T",
            "--duration",
            "2d",
        ]),
    )
    .await;
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("jit_max"));
}
