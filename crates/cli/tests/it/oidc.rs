//! OIDC bearer tokens end to end, against a real OpenID Connect provider (`oidc-provider` on
//! Node, `scripts/oidc-provider/server.mjs`) issuing JWT access tokens by the client_credentials
//! grant: a token reaches its own tenant only and acts in its role; roles the policy marks
//! `mfa_required` need `amr` to show MFA; expired, foreign, forged, malformed and oversized
//! tokens are each a clear 401 and audited; a key rotation at the provider is picked up by a
//! JWKS refetch and the cache counters show in the metrics; a provider that cannot be reached
//! is a 503, not a fault of the token.
//!
//! Without Node or the provider's npm packages (`scripts/install-test-deps` installs both) the
//! tests skip loudly, and fail under `CI=true`.

use std::time::Duration;

use custodian_core::access::Role;
use custodian_core::policy::Policy;
use jiff::ToSpan;
use serde_json::{Value, json};

use crate::harness::{Backend, DEFAULT_BODY_LIMIT, TestServer, now, record_line, rfc3339, unique};
use crate::oidc_provider::{OidcProvider, provider_missing};

const AUDIENCE: &str = "urn:custodian:it";

/// The test clients: each token carries its client's tenant, roles and `amr`.
fn clients() -> Value {
    let client = |id: &str, tenant: Option<&str>, roles: &[&str]| {
        let mut c =
            json!({ "client_id": id, "client_secret": format!("{id}-secret"), "roles": roles });
        if let Some(t) = tenant {
            c["tenant"] = json!(t);
        }
        c
    };
    let mut es = client("acme-reader-es256", Some("acme"), &["reader"]);
    es["alg"] = json!("ES256");
    let mut ed = client("acme-reader-eddsa", Some("acme"), &["reader"]);
    ed["alg"] = json!("EdDSA");
    let mut mfa = client("acme-admin-mfa", Some("acme"), &["admin"]);
    mfa["amr"] = json!(["pwd", "mfa"]);
    let mut short = client("acme-reader-short", Some("acme"), &["reader"]);
    short["ttl"] = json!(1);
    json!([
        client("acme-reader", Some("acme"), &["reader"]),
        es,
        ed,
        client("acme-admin", Some("acme"), &["admin"]),
        mfa,
        short,
        client("acme-viewer", Some("acme"), &["viewer", "editor"]),
        client("platform-operator", None, &["operator"]),
    ])
}

impl OidcProvider {
    /// `None` (after a loud notice) when Node or the npm packages are missing outside CI.
    async fn start() -> Option<OidcProvider> {
        if let Some(why) = provider_missing() {
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!(
                    "the OIDC test provider cannot run and CI=true: {why}; run scripts/install-test-deps"
                );
            }
            eprintln!("\n*** SKIPPING OIDC test: {why}; run scripts/install-test-deps ***\n");
            return None;
        }
        Some(OidcProvider::launch(&clients(), AUDIENCE).await)
    }

    async fn token(&self, client_id: &str) -> String {
        self.token_for(client_id, AUDIENCE).await
    }

    /// A token the provider would never issue (see server.mjs).
    async fn forge(&self, kind: &str) -> String {
        let reply = self
            .http
            .get(format!(
                "{}/test/forge?kind={kind}&client_id=acme-reader",
                self.issuer
            ))
            .send()
            .await
            .expect("forge request");
        assert!(
            reply.status().is_success(),
            "forge {kind}: {}",
            reply.status()
        );
        reply.text().await.expect("forged token")
    }

    /// The default policy trusting this provider (leeway 0: expiry tests need not wait).
    fn policy(&self) -> Policy {
        let text = crate::harness::default_policy_text().replace(
            "restricted_approvers = 2\n",
            &format!(
                "restricted_approvers = 2\n\n[access.oidc.test]\nissuer = \"{}\"\naudience = \"{AUDIENCE}\"\nleeway = \"0s\"\n",
                self.issuer
            ),
        );
        assert!(text.contains("[access.oidc.test]"));
        Policy::parse("oidc.toml", &text).unwrap_or_else(|d| panic!("invalid test policy:\n{d}"))
    }
}

async fn setup() -> Option<(OidcProvider, TestServer)> {
    let provider = OidcProvider::start().await?;
    let server = TestServer::start_with(Backend::Sqlite, DEFAULT_BODY_LIMIT, provider.policy())
        .await
        .expect("SQLite is always available");
    Some((provider, server))
}

async fn one_record(server: &TestServer, tenant: &str) -> String {
    let admin = server.token(tenant, Role::Admin).await;
    let t = rfc3339(now() - 1.hour());
    server
        .ingest(
            tenant,
            &admin,
            &record_line("app_log", &[&unique("subject")], &t, json!({ "n": 1 })),
        )
        .await
        .remove(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oidc_tokens_reach_their_tenant_in_their_role() {
    let Some((provider, server)) = setup().await else {
        return;
    };
    let acme_record = one_record(&server, "acme").await;
    let globex_record = one_record(&server, "globex").await;

    // A reader reads a record of its tenant, whichever key type signed its token.
    for client in ["acme-reader", "acme-reader-es256", "acme-reader-eddsa"] {
        let token = provider.token(client).await;
        let record = server
            .get_record("acme", &token, &acme_record)
            .await
            .ok_json();
        assert_eq!(record["id"], acme_record, "{client}");
    }
    let reader = provider.token("acme-reader").await;
    // Another tenant's path: 403, as for an API token.
    let foreign = server.get_record("globex", &reader, &globex_record).await;
    let problem = foreign.problem(403, "forbidden");
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("another tenant"),
        "{problem}"
    );
    // The role is the token's: a reader may not delete.
    server
        .delete(&format!("/v1/tenants/acme/records/{acme_record}"), &reader)
        .await
        .problem(403, "forbidden");

    // Admin is in the policy's mfa_required: refused without MFA, admitted with it.
    let admin = provider.token("acme-admin").await;
    let refused = server.get_record("acme", &admin, &acme_record).await;
    let problem = refused.problem(403, "mfa-required");
    let detail = problem["detail"].as_str().unwrap();
    assert!(
        detail.contains("oidc:test:acme-admin acts as admin"),
        "{detail}"
    );
    assert!(detail.contains("mfa_required"), "{detail}");
    let admin_mfa = provider.token("acme-admin-mfa").await;
    server
        .get_record("acme", &admin_mfa, &acme_record)
        .await
        .ok_json();
    server.get("/problems/mfa-required", None).await.ok_json();
    // An API token of the same role needs no MFA: operators issue those offline.
    let api_admin = server.token("acme", Role::Admin).await;
    server
        .get_record("acme", &api_admin, &acme_record)
        .await
        .ok_json();

    // No role custodian knows: a valid token that may do nothing.
    let viewer = provider.token("acme-viewer").await;
    let problem = server
        .get_record("acme", &viewer, &acme_record)
        .await
        .problem(403, "forbidden");
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("custodian_roles"),
        "{problem}"
    );

    // A platform role without a tenant claim is a platform principal.
    let operator = provider.token("platform-operator").await;
    server
        .get("/v1/system/keys", Some(&operator))
        .await
        .ok_json();
    server
        .get_record("acme", &operator, &acme_record)
        .await
        .problem(403, "forbidden");

    // Every decision is in acme's log under the OIDC principal's id, or its reason.
    let events = server.audit_events("acme").await;
    let find = |action: &str, decision: &str, actor: &str| {
        events
            .iter()
            .any(|e| e["action"] == action && e["decision"] == decision && e["actor"] == actor)
    };
    assert!(
        find("records.read", "allow", "oidc:test:acme-reader"),
        "{events:#?}"
    );
    assert!(find("records.read", "allow", "oidc:test:acme-reader-eddsa"));
    assert!(find("records.delete", "deny", "oidc:test:acme-reader"));
    assert!(find("records.read", "allow", "oidc:test:acme-admin-mfa"));
    assert!(
        events.iter().any(|e| e["decision"] == "deny"
            && e["actor"] == "oidc:test:acme-admin"
            && e["reason"]
                .as_str()
                .is_some_and(|r| r.contains("oidc:test:acme-admin acts as admin"))),
        "the MFA refusal is audited under the verified identity it refused"
    );
    assert!(
        !events.iter().any(|e| e["actor"] == "anonymous"
            && e["reason"]
                .as_str()
                .is_some_and(|r| r.contains("acts as admin"))),
        "{events:#?}"
    );
    let globex = server.audit_events("globex").await;
    assert!(
        globex.iter().any(|e| e["decision"] == "deny"
            && e["actor"] == "oidc:test:acme-reader"
            && e["action"] == "records.read"),
        "{globex:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_oidc_tokens_are_clear_401s_and_audited() {
    let Some((provider, server)) = setup().await else {
        return;
    };
    let record = one_record(&server, "acme").await;
    // Warm the key cache, so the forged tokens below are judged on the keys, not on a fetch.
    let good = provider.token("acme-reader").await;
    server.get_record("acme", &good, &record).await.ok_json();

    // A real token with a one-second lifetime, with the policy's leeway of 0.
    let short = provider.token("acme-reader-short").await;
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let other_audience = provider.token_for("acme-reader", "urn:someone-else").await;
    let oversized = format!(
        "{}.{}.{}",
        "eyJhbGciOiJSUzI1NiJ9",
        "e".repeat(17 * 1024),
        "c2ln"
    );
    let (head, _) = good.rsplit_once('.').unwrap();
    let tampered_signature = format!("{head}.{}", "A".repeat(342));
    let cases: Vec<(&str, String, &str)> = vec![
        ("expired", short, "the token expired at"),
        (
            "wrong audience",
            other_audience,
            "meant for another audience",
        ),
        (
            "wrong issuer",
            provider.forge("wrong-issuer").await,
            "not an OIDC provider this server trusts",
        ),
        (
            "alg none",
            provider.forge("none").await,
            "\"none\" is not allowed: unsigned tokens are never accepted",
        ),
        (
            "HS256 keyed with the public key",
            provider.forge("hs256-public-key").await,
            "\"HS256\" is not allowed: HMAC tokens are never accepted",
        ),
        (
            "unknown key",
            provider.forge("unknown-kid").await,
            "signed by a key the issuer does not publish",
        ),
        (
            "bad signature",
            tampered_signature,
            "signature does not verify",
        ),
        (
            "malformed",
            "eyJub3Q.anNvbg.c2ln".to_owned(),
            "not a well-formed JWT",
        ),
        (
            "oversized",
            oversized,
            "tokens over 16384 bytes are refused",
        ),
    ];
    for (what, token, says) in &cases {
        let reply = server.get_record("acme", token, &record).await;
        let problem = reply.problem(401, "unauthorized");
        let detail = problem["detail"].as_str().unwrap();
        assert!(detail.contains(says), "{what}: {detail}");
    }

    // Each refusal is in acme's log, with its reason and without the token.
    let events = server.audit_events("acme").await;
    let denials: Vec<&str> = events
        .iter()
        .filter(|e| e["decision"] == "deny" && e["action"] == "records.read")
        .filter_map(|e| e["reason"].as_str())
        .collect();
    for (what, token, says) in &cases {
        let reason = denials
            .iter()
            .find(|r| r.contains(says))
            .unwrap_or_else(|| panic!("{what} not audited: {denials:#?}"));
        for part in token.split('.').filter(|p| p.len() > 8) {
            assert!(
                !reason.contains(part),
                "{what}: the audit reason quotes the token"
            );
        }
    }
    assert_eq!(denials.len(), cases.len(), "{denials:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_rotation_is_picked_up_and_the_cache_is_counted() {
    let Some((provider, server)) = setup().await else {
        return;
    };
    let record = one_record(&server, "acme").await;
    let before = provider.token("acme-reader").await;
    for _ in 0..3 {
        server.get_record("acme", &before, &record).await.ok_json();
    }
    let rotation = provider.rotate().await;
    let after = provider.token("acme-reader").await;
    let kid = |token: &str| -> String {
        use base64::Engine;
        let header = token.split('.').next().unwrap();
        let header: Value = serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(header)
                .unwrap(),
        )
        .unwrap();
        header["kid"].as_str().unwrap().to_owned()
    };
    assert_ne!(kid(&before), kid(&after));
    assert!(
        rotation["kids"]
            .as_array()
            .unwrap()
            .contains(&json!(kid(&after))),
        "{rotation}"
    );
    // The new kid is not cached: the verifier fetches the key set again and admits the token.
    server.get_record("acme", &after, &record).await.ok_json();
    server.get_record("acme", &after, &record).await.ok_json();
    // The old key is no longer published, so tokens signed by it stop working.
    let stale = server.get_record("acme", &before, &record).await;
    let problem = stale.problem(401, "unauthorized");
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("signed by a key the issuer does not publish"),
        "{problem}"
    );

    let metrics = server.get("/metrics", None).await.text();
    let counter = |name: &str| -> f64 {
        metrics
            .lines()
            .find(|l| l.starts_with(name) && l.contains("issuer=\"test\""))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in\n{metrics}"))
    };
    // Hits: the repeated reads; misses: the first fetch and the rotation's.
    assert!(counter("custodian_oidc_jwks_cache_hits_total") >= 3.0);
    assert!(counter("custodian_oidc_jwks_cache_misses_total") >= 2.0);

    // With the provider gone, a node that never fetched its keys cannot check a token: 503,
    // not a 401 that would blame the token, and audited like any refusal.
    drop(provider);
    let fresh_node = server.another_node().await;
    let problem = fresh_node
        .get_record("acme", &after, &record)
        .await
        .problem(503, "identity-provider-unavailable");
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("the signing keys of OIDC provider test could not be fetched"),
        "{problem}"
    );
    drop(fresh_node);
    let events = server.audit_events("acme").await;
    assert!(
        events.iter().any(|e| e["decision"] == "deny"
            && e["reason"]
                .as_str()
                .is_some_and(|r| r.contains("could not be fetched"))),
        "{events:#?}"
    );
}
