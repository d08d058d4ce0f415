//! Access-control benchmark: what authentication and the access decision cost per request,
//! set against a whole record GET, for an API token and for an OIDC JWT access token; and how
//! often the OIDC verifier's key cache (JWKS) answers, across one signing-key rotation at the
//! provider. On SQLite and (when reachable) PostgreSQL.
//!
//! `cargo bench -p custodian --bench access`. Environment:
//! - `CUSTODIAN_BENCH_ACCESS_GETS`: timed record GETs per credential kind (default 3,000, after
//!   200 warm-up), one at a time, and as many again from [`CONNECTIONS`] connections at once;
//! - `CUSTODIAN_BENCH_ACCESS_CALLS`: timed authentication calls per credential kind (default
//!   20,000, after 1,000 warm-up);
//! - `CUSTODIAN_BENCH_ACCESS_FIRST_USES`: distinct JWTs per signing algorithm, each timed on its
//!   first use (default 200);
//! - `CUSTODIAN_BENCH_ONLY=sqlite|postgres`: run one backend only;
//! - `CUSTODIAN_TEST_DATABASE_URL`: the PostgreSQL server (default the local one).
//!
//! The OIDC provider is the project's test provider (`scripts/oidc-provider`, on Node;
//! `scripts/install-test-deps` installs it), started on a free loopback port. It issues JWT
//! access tokens (RS256, ES256 or EdDSA, by client) through the client_credentials grant,
//! carrying the tenant and roles claims.
//! Without Node or its packages the JWT figures are skipped, loudly.
//!
//! Per backend, one node on a fresh store whose policy trusts the provider as
//! `[access.oidc.bench]`, served on 127.0.0.1:0 by `custodian_server::serve`:
//! 1. One `customer_record` with a ~1 KiB payload is stored over HTTP.
//! 2. GET `/v1/tenants/acme/records/{id}` over one keep-alive connection, one request at a
//!    time, with a reader API token and with a reader JWT, in alternating rounds: p50, p99 and
//!    requests/s. Each GET is the whole read path: authentication, the decision, the record
//!    read, the data key (cached), decryption, and the audit entry written before the answer.
//!    Halfway through, the provider rotates its signing keys and a new JWT (a new key id) is
//!    used from then on: its first request makes the verifier fetch the key set again. Then
//!    the same number of GETs from [`CONNECTIONS`] connections at once: requests/s.
//! 3. Authentication and the decision alone, on the same node and the same `Authorization`
//!    values: `custodian_server::auth::authenticate` (API token: the token row lookup, SHA-256,
//!    constant-time compare; JWT: the verifier, then the MFA rule) then
//!    `custodian_core::access::authorize` for a record read, per call, in alternating rounds.
//!    The verifier remembers a token whose signature verified (by its hash, bound to the key
//!    set that checked it), so a JWT is timed twice: the same token again, as a client sends
//!    it until it expires, and distinct tokens on their first use, when the signature is
//!    checked with the cached key set. ES256 and EdDSA tokens of the same provider are timed
//!    too, and set against the RS256 GET. Broken down: the token row lookup alone
//!    (`Store::find_token`) and `authorize` alone.
//! 4. "authorisation overhead = X% of a record GET" per credential kind: the p50 of step 3
//!    over the p50 of a GET with that credential (goal: under 5%); for JWTs also on a token's
//!    first use.
//! 5. The JWKS cache hit rate of the node's verifier over the run, from the server's
//!    `/metrics` (`custodian_oidc_jwks_cache_hits_total` and `…_misses_total`, issuer
//!    `bench`), and what it would be under steady traffic.
//!
//! The clients run in the same process and runtime as the server, so they share its cores.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use custodian_core::access::{Action, Principal, Role, authorize};
use custodian_core::grant::{
    Authority, Grant, GrantRequest, GrantRules, GrantScope, authorize_with,
};
use custodian_core::ids::TenantId;
use custodian_core::policy::Policy;
use custodian_server::AppState;
use custodian_server::clock::SystemClock;
use custodian_store::testing;
use serde_json::{Value, json};

// This bench reads only some of the shared node's fields.
#[path = "support/listener.rs"]
mod listener;
#[allow(dead_code)]
#[path = "support/node.rs"]
mod node;
#[path = "../tests/support/oidc_provider.rs"]
mod oidc_provider;

use listener::Listener;
use node::{Backend, Node};
use oidc_provider::{OidcProvider, provider_missing};

const POLICY: &str = include_str!("../../../examples/policies/default.toml");
const TENANT: &str = "acme";
/// The name of the provider in the policy, and the `issuer` label of its metrics.
const PROVIDER: &str = "bench";
const AUDIENCE: &str = "urn:custodian:bench";
/// The provider's clients whose tokens read records of [`TENANT`] (role reader), by signing
/// algorithm: the GETs use the first, the in-process phase all.
const JWT_CLIENTS: [(&str, &str); 3] = [
    ("RS256", "acme-reader"),
    ("ES256", "acme-reader-es256"),
    ("EdDSA", "acme-reader-eddsa"),
];
const DEFAULT_GETS: usize = 3000;
const WARMUP_GETS: usize = 200;
/// Rounds of GETs, alternating the credential kinds; the keys rotate after half of them.
const GET_ROUNDS: usize = 6;
/// Connections of the concurrent GETs.
const CONNECTIONS: usize = 4;
const DEFAULT_CALLS: usize = 20_000;
const WARMUP_CALLS: usize = 1000;
const CALL_ROUNDS: usize = 4;
/// Distinct tokens per signing algorithm, each authenticated once: the first use of a token,
/// when its signature is checked (the verifier remembers a token that verified).
const DEFAULT_FIRST_USES: usize = 200;
/// `authorize` alone is timed over this many calls at once: one call is a few nanoseconds.
const AUTHORIZE_CALLS: usize = 1_000_000;
/// Payload of the stored record, in bytes (about).
const PAYLOAD_BYTES: usize = 1024;
/// The goal: authentication and the decision under this share of a record GET.
const GOAL_PERCENT: f64 = 5.0;

fn env(name: &str) -> Option<usize> {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|n| *n > 0)
}

fn tenant() -> TenantId {
    TenantId::new(TENANT).expect("tenant id")
}

/// The server's own clock adapter: the one place allowed to read the system time.
fn now() -> jiff::Timestamp {
    custodian_core::clock::Clock::now(&SystemClock)
}

/// The credential a request carries.
#[derive(Clone, Copy, PartialEq)]
enum Kind {
    ApiToken,
    Jwt,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::ApiToken => "API token",
            Kind::Jwt => "JWT (RS256)",
        }
    }
}

impl OidcProvider {
    /// `None`, after a loud notice, when Node or the provider's packages are missing.
    async fn start() -> Option<OidcProvider> {
        if let Some(why) = provider_missing() {
            println!(
                "\n*** the OIDC test provider cannot run ({why}): the JWT figures are SKIPPED; run scripts/install-test-deps ***"
            );
            return None;
        }
        let clients: Vec<Value> = JWT_CLIENTS
            .iter()
            .map(|(alg, id)| {
                json!({
                    "client_id": id,
                    "client_secret": format!("{id}-secret"),
                    "tenant": TENANT,
                    "roles": ["reader"],
                    "alg": alg,
                })
            })
            .collect();
        Some(OidcProvider::launch(&Value::Array(clients), AUDIENCE).await)
    }

    /// An access token of `client` for custodian's audience.
    async fn token_of(&self, client: &str) -> String {
        self.token_for(client, AUDIENCE).await
    }

    /// An RS256 access token, the kind the GETs carry.
    async fn token(&self) -> String {
        self.token_of(JWT_CLIENTS[0].1).await
    }

    /// The default policy, trusting this provider as [`PROVIDER`].
    fn policy(&self) -> Policy {
        let text = format!(
            "{POLICY}\n[access.oidc.{PROVIDER}]\nissuer = \"{}\"\naudience = \"{AUDIENCE}\"\n",
            self.issuer
        );
        Policy::parse("access-bench.toml", &text)
            .unwrap_or_else(|d| panic!("invalid bench policy:\n{d}"))
    }
}

/// A node served over loopback HTTP, with its credentials and one stored record.
struct Served {
    node: Node,
    /// A reader API token of [`TENANT`].
    api_token: String,
    record: String,
    listener: Listener,
}

async fn issue(state: &AppState, role: Role) -> String {
    issue_for(state, &tenant(), role).await
}

async fn issue_for(state: &AppState, holder: &TenantId, role: Role) -> String {
    let issued = custodian_server::auth::issue_token(
        &state.audit,
        &SystemClock,
        &custodian_server::auth::TokenIssuer {
            actor: "bench",
            subsystem: "bench",
        },
        holder,
        role,
        None,
    )
    .await
    .expect("issue token");
    issued.token.as_str().to_owned()
}

/// A customer record of about [`PAYLOAD_BYTES`]: contact details and free-text notes.
fn record_line() -> String {
    const NOTES: &str = "Customer called about the invoice of last month; the payment was declined \
        twice by the bank and went through on the third attempt. Asked for the receipts to be \
        sent again to the billing address and for the plan to move from monthly to yearly at the \
        next renewal. Prefers e-mail over phone; available on weekdays after 14:00 CET. ";
    let mut notes = String::new();
    while notes.len() < PAYLOAD_BYTES - 420 {
        notes.push_str(NOTES);
    }
    notes.truncate(PAYLOAD_BYTES - 420);
    let payload = json!({
        "customer_id": "C00421337",
        "name": "Alice Martin",
        "email": "alice.martin@example.com",
        "phone": "+33 1 23 45 67 89",
        "address": { "street": "12 rue de la Paix", "city": "Paris", "postcode": "75002", "country": "FR" },
        "plan": "pro",
        "balance": 1234.56,
        "tags": ["vip", "billing", "renewal-2027"],
        "created": "2024-03-18T10:22:00Z",
        "notes": notes,
    });
    let event_time = now() - jiff::SignedDuration::from_secs(3600);
    format!(
        r#"{{"type":"customer_record","subjects":["alice-martin"],"event_time":"{event_time}","payload":{payload}}}"#
    )
}

async fn serve(node: Node) -> Served {
    let state = node.state.clone();
    let listener = Listener::start(state.clone(), "127.0.0.1:0".parse().expect("address")).await;
    let writer = issue(&state, Role::Writer).await;
    let api_token = issue(&state, Role::Reader).await;
    let reply = reqwest::Client::new()
        .post(format!("{}/v1/tenants/{TENANT}/records", listener.base))
        .bearer_auth(&writer)
        .header("content-type", "application/x-ndjson")
        .body(record_line())
        .send()
        .await
        .expect("POST records");
    let status = reply.status();
    let answer: Value = reply.json().await.expect("ingest answer");
    assert!(status.is_success(), "ingest: {status} {answer}");
    let record = answer["ids"][0].as_str().expect("record id").to_owned();
    Served {
        node,
        api_token,
        record,
        listener,
    }
}

impl Served {
    fn record_url(&self) -> String {
        format!(
            "{}/v1/tenants/{TENANT}/records/{}",
            self.listener.base, self.record
        )
    }

    /// The node's JWKS cache counters (hits, misses) of [`PROVIDER`], as `/metrics` shows them:
    /// one recorder serves the whole process, so callers take differences.
    async fn jwks_counters(&self) -> (u64, u64) {
        let text = reqwest::get(format!("{}/metrics", self.listener.base))
            .await
            .expect("GET /metrics")
            .text()
            .await
            .expect("metrics text");
        let counter = |name: &str| -> u64 {
            let label = format!("issuer=\"{PROVIDER}\"");
            text.lines()
                .find(|l| l.starts_with(name) && l.contains(&label))
                .and_then(|l| l.rsplit(' ').next())
                .and_then(|v| v.parse::<f64>().ok())
                .map_or(0, |v| v as u64)
        };
        (
            counter("custodian_oidc_jwks_cache_hits_total"),
            counter("custodian_oidc_jwks_cache_misses_total"),
        )
    }

    async fn stop(self) {
        self.listener.stop().await;
        self.node.close().await;
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(1)
        .build()
        .expect("http client")
}

/// One GET of the record; its status must be 200 and its body the record.
async fn get(http: &reqwest::Client, url: &str, bearer: &str) -> usize {
    let reply = http
        .get(url)
        .bearer_auth(bearer)
        .send()
        .await
        .expect("GET record");
    let status = reply.status();
    let body = reply.bytes().await.expect("record body");
    assert_eq!(
        status,
        reqwest::StatusCode::OK,
        "GET record: {}",
        String::from_utf8_lossy(&body)
    );
    body.len()
}

/// `n` GETs one after another on `http`'s connection, each timed.
async fn timed_gets(
    http: &reqwest::Client,
    url: &str,
    bearer: &str,
    n: usize,
    times: &mut Vec<Duration>,
) {
    for _ in 0..n {
        let started = Instant::now();
        get(http, url, bearer).await;
        times.push(started.elapsed());
    }
}

/// `n` GETs from [`CONNECTIONS`] connections at once: requests/s.
async fn concurrent_gets(url: &str, bearer: &str, n: usize) -> f64 {
    let clients: Vec<reqwest::Client> = (0..CONNECTIONS).map(|_| client()).collect();
    // Open every connection before timing.
    for c in &clients {
        get(c, url, bearer).await;
    }
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let tasks: Vec<_> = clients
        .into_iter()
        .map(|http| {
            let (next, url, bearer) = (next.clone(), url.to_owned(), bearer.to_owned());
            tokio::spawn(async move {
                while next.fetch_add(1, Ordering::Relaxed) < n {
                    get(&http, &url, &bearer).await;
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("client task");
    }
    n as f64 / started.elapsed().as_secs_f64()
}

/// Latency figures of one series.
struct Stats {
    p50: Duration,
    p99: Duration,
    mean: Duration,
    count: usize,
}

impl Stats {
    fn of(mut times: Vec<Duration>) -> Stats {
        times.sort();
        let count = times.len();
        Stats {
            p50: quantile(&times, 0.5),
            p99: quantile(&times, 0.99),
            mean: times.iter().sum::<Duration>() / count as u32,
            count,
        }
    }

    fn per_second(&self) -> f64 {
        1.0 / self.mean.as_secs_f64()
    }
}

/// The `q`-quantile of sorted durations (nearest rank).
fn quantile(sorted: &[Duration], q: f64) -> Duration {
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// What the GET phase measured, per credential kind.
struct Gets {
    api: Stats,
    jwt: Option<Stats>,
    api_concurrent: f64,
    jwt_concurrent: Option<f64>,
    /// The JWT in use after the rotation.
    jwt_after: Option<String>,
    response_bytes: usize,
}

/// Step 2: GETs one at a time in alternating rounds (the provider's keys rotate halfway),
/// then GETs from several connections at once.
async fn gets(served: &Served, provider: Option<&OidcProvider>, n: usize) -> Gets {
    let url = served.record_url();
    let http = client();
    let response_bytes = get(&http, &url, &served.api_token).await;
    let mut jwt = match provider {
        Some(p) => Some(p.token().await),
        None => None,
    };
    // Warm-up: connections, caches, the verifier's first key-set fetch.
    let mut scratch = Vec::new();
    timed_gets(&http, &url, &served.api_token, WARMUP_GETS, &mut scratch).await;
    if let Some(jwt) = &jwt {
        timed_gets(&http, &url, jwt, WARMUP_GETS, &mut scratch).await;
    }
    let per_round = n.div_ceil(GET_ROUNDS);
    let (mut api, mut jwt_times) = (Vec::new(), Vec::new());
    for round in 0..GET_ROUNDS {
        if round == GET_ROUNDS / 2
            && let Some(p) = provider
        {
            p.rotate().await;
            jwt = Some(p.token().await);
        }
        // Alternate which kind goes first, so neither always follows the other.
        let order = if round % 2 == 0 {
            [Kind::ApiToken, Kind::Jwt]
        } else {
            [Kind::Jwt, Kind::ApiToken]
        };
        for kind in order {
            match (kind, &jwt) {
                (Kind::ApiToken, _) => {
                    timed_gets(&http, &url, &served.api_token, per_round, &mut api).await;
                }
                (Kind::Jwt, Some(jwt)) => {
                    timed_gets(&http, &url, jwt, per_round, &mut jwt_times).await;
                }
                (Kind::Jwt, None) => {}
            }
        }
    }
    let api_concurrent = concurrent_gets(&url, &served.api_token, n).await;
    let jwt_concurrent = match &jwt {
        Some(jwt) => Some(concurrent_gets(&url, jwt, n).await),
        None => None,
    };
    Gets {
        api: Stats::of(api),
        jwt: jwt.is_some().then(|| Stats::of(jwt_times)),
        api_concurrent,
        jwt_concurrent,
        jwt_after: jwt,
        response_bytes,
    }
}

/// `n` calls of authentication + the decision for a record read, each timed.
async fn auth_calls(state: &AppState, header: &str, n: usize, times: &mut Vec<Duration>) {
    let tenant = tenant();
    for _ in 0..n {
        let started = Instant::now();
        let principal = custodian_server::auth::authenticate(state, Some(header))
            .await
            .expect("authenticated");
        authorize(&principal, Some(&tenant), Action::ReadRecord).expect("allowed");
        times.push(started.elapsed());
        std::hint::black_box(principal);
    }
}

/// A support token with an approved, active grant on the bench tenant, stored as the grant
/// routes store one.
async fn support_with_grant(state: &AppState) -> String {
    let token = issue_for(state, &TenantId::platform(), Role::Support).await;
    let id = token
        .strip_prefix("cst_")
        .and_then(|t| t.split('_').next())
        .expect("token id");
    let support = Principal {
        id: format!("token:{id}"),
        tenant: TenantId::platform(),
        role: Role::Support,
    };
    let approver = Principal {
        id: "token:approver".into(),
        tenant: TenantId::platform(),
        role: Role::Approver,
    };
    let request = GrantRequest {
        tenant: tenant(),
        scope: GrantScope {
            data_types: Vec::new(),
            subjects: Vec::new(),
            write: false,
        },
        reason: "bench".into(),
        ticket: "BENCH-1".into(),
        duration_secs: 86_400,
    };
    let rules = GrantRules {
        jit_max_secs: 86_400,
        restricted: false,
        restricted_approvers: 2,
    };
    let grant = Grant::request("grt_bench".into(), &support, request, rules, now())
        .and_then(|g| g.approve(&approver, now()))
        .expect("an approved grant");
    let entry = custodian_store::AuditEntry::clear(b"{}".to_vec());
    state
        .store
        .insert_grant(&grant, entry)
        .await
        .expect("store the grant");
    token
}

/// `n` calls of authentication + the decision of a record read under a grant (the role is
/// refused, the principal's live grants are read, and the grant admits it), each timed.
async fn grant_calls(state: &AppState, header: &str, n: usize, times: &mut Vec<Duration>) {
    let tenant = tenant();
    for _ in 0..n {
        let started = Instant::now();
        let principal = custodian_server::auth::authenticate(state, Some(header))
            .await
            .expect("authenticated");
        let at = now();
        let grants = state
            .store
            .live_grants(&tenant, &principal.id, at)
            .await
            .expect("live grants");
        let authority = authorize_with(&principal, Some(&tenant), Action::ReadRecord, &grants, at)
            .expect("allowed under the grant");
        assert!(matches!(authority, Authority::Grant(_)));
        times.push(started.elapsed());
    }
}

/// `n` lookups of the token row alone, each timed.
async fn find_token_calls(state: &AppState, id: &str, n: usize, times: &mut Vec<Duration>) {
    for _ in 0..n {
        let started = Instant::now();
        let row = state.store.find_token(id).await.expect("find_token");
        times.push(started.elapsed());
        assert!(row.is_some(), "the token row exists");
    }
}

/// The mean time of one `authorize` call for `principal`.
fn authorize_alone(principal: &custodian_core::access::Principal) -> Duration {
    let tenant = tenant();
    let started = Instant::now();
    for _ in 0..AUTHORIZE_CALLS {
        std::hint::black_box(authorize(
            std::hint::black_box(principal),
            Some(std::hint::black_box(&tenant)),
            Action::ReadRecord,
        ))
        .expect("allowed");
    }
    started.elapsed() / AUTHORIZE_CALLS as u32
}

/// JWTs of one signing algorithm for the in-process phase.
struct Jwts {
    alg: &'static str,
    /// Used again and again, as a client does until it expires.
    repeated: String,
    /// Each used once.
    distinct: Vec<String>,
}

/// What the in-process phase measured for one signing algorithm.
struct JwtCalls {
    alg: &'static str,
    repeated: Stats,
    first_use: Stats,
}

/// What the in-process phase measured.
struct Calls {
    api: Stats,
    /// A support API token reading under an approved grant.
    granted: Stats,
    /// RS256 (the GETs' JWT) first.
    jwt: Vec<JwtCalls>,
    find_token: Stats,
    authorize: Duration,
}

/// Step 3: authentication + decision alone, and its parts, in alternating rounds.
async fn calls(served: &Served, jwts: &[Jwts], n: usize) -> Calls {
    let state = &served.node.state;
    let api_header = format!("Bearer {}", served.api_token);
    let bearer = |t: &str| format!("Bearer {t}");
    let token_id = served
        .api_token
        .strip_prefix("cst_")
        .and_then(|t| t.split('_').next())
        .expect("token id")
        .to_owned();
    let mut scratch = Vec::new();
    auth_calls(state, &api_header, WARMUP_CALLS, &mut scratch).await;
    for j in jwts {
        auth_calls(state, &bearer(&j.repeated), WARMUP_CALLS, &mut scratch).await;
    }
    let grant_header = format!("Bearer {}", support_with_grant(state).await);
    grant_calls(state, &grant_header, WARMUP_CALLS, &mut scratch).await;
    let mut granted = Vec::new();
    let per_round = n.div_ceil(CALL_ROUNDS);
    let (mut api, mut find) = (Vec::new(), Vec::new());
    let mut repeated: Vec<Vec<Duration>> = vec![Vec::new(); jwts.len()];
    let mut first: Vec<Vec<Duration>> = vec![Vec::new(); jwts.len()];
    for round in 0..CALL_ROUNDS {
        auth_calls(state, &api_header, per_round, &mut api).await;
        grant_calls(state, &grant_header, per_round, &mut granted).await;
        find_token_calls(state, &token_id, per_round / 4, &mut find).await;
        for (i, j) in jwts.iter().enumerate() {
            auth_calls(state, &bearer(&j.repeated), per_round, &mut repeated[i]).await;
            let chunk = j.distinct.len().div_ceil(CALL_ROUNDS);
            for token in j.distinct.iter().skip(round * chunk).take(chunk) {
                auth_calls(state, &bearer(token), 1, &mut first[i]).await;
            }
        }
    }
    Calls {
        api: Stats::of(api),
        granted: Stats::of(granted),
        jwt: jwts
            .iter()
            .zip(repeated.into_iter().zip(first))
            .map(|(j, (repeated, first))| JwtCalls {
                alg: j.alg,
                repeated: Stats::of(repeated),
                first_use: Stats::of(first),
            })
            .collect(),
        find_token: Stats::of(find),
        authorize: authorize_alone(
            &custodian_server::auth::authenticate(state, Some(&api_header))
                .await
                .expect("authenticated"),
        ),
    }
}

/// Prints the overhead of `auth` on a GET that took `get`; returns it in percent (p50s).
fn overhead(backend: Backend, what: &str, auth: &Stats, get: &Stats) -> f64 {
    let percent = 100.0 * auth.p50.as_secs_f64() / get.p50.as_secs_f64();
    println!(
        "  {} {what}: authorisation overhead = {percent:.2}% of a record GET (authentication + decision p50 {:.1} µs / GET p50 {:.3} ms; means {:.1} µs / {:.3} ms = {:.2}%); goal < {GOAL_PERCENT}%: {}",
        backend.name(),
        us(auth.p50),
        ms(get.p50),
        us(auth.mean),
        ms(get.mean),
        100.0 * auth.mean.as_secs_f64() / get.mean.as_secs_f64(),
        if percent < GOAL_PERCENT {
            "met"
        } else {
            "MISSED"
        },
    );
    percent
}

/// Runs every step on one backend; returns the summary lines.
async fn bench_backend(
    backend: Backend,
    provider: Option<&OidcProvider>,
    gets_n: usize,
    calls_n: usize,
    first_uses: usize,
) -> Vec<String> {
    let node = match provider {
        Some(p) => Node::with_policy(backend, p.policy()).await,
        None => Node::fresh(backend).await,
    };
    let served = serve(node).await;
    let (hits_before, misses_before) = served.jwks_counters().await;

    let measured = gets(&served, provider, gets_n).await;
    println!(
        "  record GET over loopback HTTP ({} bytes answered; {} GETs per credential, one at a time on one keep-alive connection, in {GET_ROUNDS} alternating rounds after {WARMUP_GETS} warm-up):",
        measured.response_bytes, measured.api.count,
    );
    let line = |kind: Kind, s: &Stats, concurrent: f64| {
        println!(
            "    {:<12} p50 {:.3} ms, p99 {:.3} ms, mean {:.3} ms = {:.0} requests/s; {CONNECTIONS} connections at once: {concurrent:.0} requests/s",
            kind.name(),
            ms(s.p50),
            ms(s.p99),
            ms(s.mean),
            s.per_second(),
        );
    };
    line(Kind::ApiToken, &measured.api, measured.api_concurrent);
    if let (Some(s), Some(c)) = (&measured.jwt, measured.jwt_concurrent) {
        line(Kind::Jwt, s, c);
    }

    // The GETs' RS256 token (issued after the rotation), then the other algorithms'; and
    // distinct tokens of each, for their first use.
    let mut jwts = Vec::new();
    if let (Some(p), Some(rs256)) = (provider, measured.jwt_after) {
        for (i, (alg, client)) in JWT_CLIENTS.iter().enumerate() {
            let repeated = if i == 0 {
                rs256.clone()
            } else {
                p.token_of(client).await
            };
            let mut distinct = Vec::with_capacity(first_uses);
            for _ in 0..first_uses {
                distinct.push(p.token_of(client).await);
            }
            jwts.push(Jwts {
                alg,
                repeated,
                distinct,
            });
        }
    }
    let calls = calls(&served, &jwts, calls_n).await;
    println!(
        "  authentication + decision alone, in-process on the same node ({} calls per credential in {CALL_ROUNDS} alternating rounds after {WARMUP_CALLS} warm-up; JWTs also on their first use, {first_uses} tokens each):",
        calls.api.count
    );
    println!(
        "    {:<12} p50 {:.1} µs, p99 {:.1} µs, mean {:.1} µs; of which the token row lookup (Store::find_token) p50 {:.1} µs, p99 {:.1} µs",
        Kind::ApiToken.name(),
        us(calls.api.p50),
        us(calls.api.p99),
        us(calls.api.mean),
        us(calls.find_token.p50),
        us(calls.find_token.p99),
    );
    for j in &calls.jwt {
        println!(
            "    {:<12} the same token again: p50 {:.1} µs, p99 {:.1} µs, mean {:.1} µs; a token's first use (signature checked): p50 {:.1} µs, p99 {:.1} µs",
            format!("JWT ({})", j.alg),
            us(j.repeated.p50),
            us(j.repeated.p99),
            us(j.repeated.mean),
            us(j.first_use.p50),
            us(j.first_use.p99),
        );
    }
    println!(
        "    authorize alone: {:.1} ns per call (mean of {AUTHORIZE_CALLS})",
        calls.authorize.as_secs_f64() * 1e9
    );

    println!(
        "    {:<12} p50 {:.1} µs, p99 {:.1} µs, mean {:.1} µs (a support token: role refused, live grants read, grant admits)",
        "under grant",
        us(calls.granted.p50),
        us(calls.granted.p99),
        us(calls.granted.mean),
    );

    let mut summary = Vec::new();
    let api = overhead(backend, Kind::ApiToken.name(), &calls.api, &measured.api);
    summary.push(format!(
        "{} {}: {api:.2}%",
        backend.name(),
        Kind::ApiToken.name()
    ));
    let granted = overhead(
        backend,
        "API token under a grant, against the API-token GET",
        &calls.granted,
        &measured.api,
    );
    summary.push(format!("{} under a grant: {granted:.2}%", backend.name()));
    if let Some(get) = &measured.jwt {
        for (i, j) in calls.jwt.iter().enumerate() {
            // The GETs carried the RS256 token; the others are set against the same GET.
            let against = if i == 0 {
                ""
            } else {
                ", against the RS256 GET"
            };
            let what = format!("JWT ({}){against}", j.alg);
            let percent = overhead(backend, &what, &j.repeated, get);
            let first = 100.0 * j.first_use.p50.as_secs_f64() / get.p50.as_secs_f64();
            println!("    (on a token's first use, once per token: {first:.2}% of a record GET)");
            summary.push(format!(
                "{} JWT ({}): {percent:.2}% (first use {first:.2}%)",
                backend.name(),
                j.alg
            ));
        }
    }

    if provider.is_some() {
        let (hits, misses) = served.jwks_counters().await;
        let (hits, misses) = (hits - hits_before, misses - misses_before);
        let rate = 100.0 * hits as f64 / (hits + misses).max(1) as f64;
        println!(
            "  JWKS cache over the run (this node, /metrics): {hits} hits, {misses} misses = {rate:.3}% hit rate, across one signing-key rotation at the provider (a miss fetches the key set: the first token, and the first token after the rotation)"
        );
        if let Some(get) = &measured.jwt {
            // Under steady traffic the cache misses once per TTL, when the key set goes stale.
            let ttl = custodian_server::oidc::JWKS_TTL.as_secs_f64();
            let per_ttl = get.per_second() * ttl;
            println!(
                "    steady state at the one-connection JWT rate ({:.0} requests/s): one miss per {ttl:.0} s (JWKS_TTL) = {:.4}% hit rate, plus one miss per key rotation",
                get.per_second(),
                100.0 * (per_ttl - 1.0) / per_ttl,
            );
        }
        summary.push(format!(
            "{} JWKS cache hit rate {rate:.3}% ({hits} hits, {misses} misses)",
            backend.name()
        ));
    }
    served.stop().await;
    summary
}

/// The 1, 5 and 15-minute load averages (`/proc/loadavg`): other work on the machine shows in
/// every figure here.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg").map_or_else(
        |_| "unknown".to_owned(),
        |l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "),
    )
}

fn main() {
    // `cargo bench` passes `--bench`; with harness = false there is nothing else to parse.
    let gets_n = env("CUSTODIAN_BENCH_ACCESS_GETS").unwrap_or(DEFAULT_GETS);
    let calls_n = env("CUSTODIAN_BENCH_ACCESS_CALLS").unwrap_or(DEFAULT_CALLS);
    let first_uses = env("CUSTODIAN_BENCH_ACCESS_FIRST_USES").unwrap_or(DEFAULT_FIRST_USES);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "custodian access-control benchmark on {cores} core(s): record GETs with an API token and an OIDC JWT, \
         {gets_n} per credential timed one at a time and {gets_n} from {CONNECTIONS} connections; \
         authentication + decision alone, {calls_n} calls per credential and {first_uses} first uses of JWTs per algorithm"
    );
    println!("load average at the start: {}", load_average());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(async {
        let provider = OidcProvider::start().await;
        if let Some(p) = &provider {
            println!("OIDC provider: the project's test provider at {}", p.issuer);
        }
        let only = std::env::var("CUSTODIAN_BENCH_ONLY").unwrap_or_default();
        let mut summary = Vec::new();
        if only.is_empty() || only == "sqlite" {
            println!("\nSQLite, one fresh database");
            summary.extend(bench_backend(Backend::Sqlite, provider.as_ref(), gets_n, calls_n, first_uses).await);
        }
        if only.is_empty() || only == "postgres" {
            if testing::postgres_available().await {
                println!(
                    "\nPostgreSQL ({}), one fresh schema",
                    testing::postgres_url()
                );
                summary.extend(
                    bench_backend(Backend::Postgres, provider.as_ref(), gets_n, calls_n, first_uses).await,
                );
            } else {
                println!(
                    "\n*** PostgreSQL at {} is not reachable: its figures are SKIPPED ***",
                    testing::postgres_url()
                );
            }
        }
        println!("\nload average at the end: {}", load_average());
        println!(
            "summary on {cores} core(s), authorisation overhead per record GET (goal < {GOAL_PERCENT}%): {}",
            summary.join("; ")
        );
    });
}
