//! Ingest benchmark: batches of 1,000 records of ~1 KiB sent over HTTP on loopback to an
//! in-process server, with 2 and 4 concurrent client connections, against SQLite and (when
//! reachable) PostgreSQL. Every configuration starts on a fresh, empty store. The clients run in
//! the same process and runtime as the server, so they share its cores.
//!
//! `cargo bench -p custodian --bench ingest`. Environment:
//! - `CUSTODIAN_BENCH_BATCHES`: timed batches per configuration (default 60, after 2 warm-up);
//! - `CUSTODIAN_BENCH_ONLY=sqlite|postgres`: run one backend only;
//! - `CUSTODIAN_TEST_DATABASE_URL`: the PostgreSQL server (default the local one).
//!
//! Besides the end-to-end figure, two in-process phases are measured on the same bodies, so the
//! report says where the time goes:
//! - seal: `custodian_server::ingest::prepare_batch` (validate + encrypt + pseudonymise) plus the
//!   body hash, the baseline: the CPU work every record needs whatever the transport and store;
//! - store: `Store::insert_records` on batches sealed beforehand, with the same concurrency;
//! - key hierarchy: the whole pipeline minus HTTP (validate, seal, audit entry, store) against
//!   the same pipeline without pseudonyms, key lookup and encryption, alternated on fresh stores;
//!   the difference is what encryption and key lookup add to ingest;
//! - audit: the same pipeline with each batch's real audit entry (the sealed ingest event)
//!   against a fixed stub entry, alternated on one store: what the audit adds to ingest.
//!
//! Each store figure also shows the bytes written per record: for SQLite what this process sent
//! to storage (`/proc/self/io`), for PostgreSQL the WAL generated (via `psql`, when installed).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use custodian_core::access::Role;
use custodian_core::ids::TenantId;
use custodian_core::policy::Policy;
use custodian_server::audit::Actor;
use custodian_server::clock::SystemClock;
use custodian_server::ingest::SealedBatch;
use custodian_server::{AppState, ServerConfig};
use custodian_store::{IdempotentResponse, StoreConfig, StoredRecord, testing};

#[path = "support/listener.rs"]
mod listener;

use listener::Listener;

const POLICY: &str = include_str!("../../../examples/policies/default.toml");
const TENANT: &str = "acme";
const RECORDS_PER_BATCH: usize = 1000;
const PAYLOAD_BYTES: usize = 1024;
const WARMUP_BATCHES: usize = 2;
const DEFAULT_BATCHES: usize = 60;
const CONCURRENCY: &[usize] = &[2, 4];
/// Distinct bodies; the timed loop cycles through them.
const DISTINCT_BODIES: usize = 16;

/// The server's own clock adapter: the one place allowed to read the system time.
fn now() -> jiff::Timestamp {
    custodian_core::clock::Clock::now(&custodian_server::clock::SystemClock)
}

/// xorshift64*: varied content without a `rand` dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

const WORDS: &[&str] = &[
    "request",
    "completed",
    "user",
    "login",
    "timeout",
    "retry",
    "invoice",
    "shipped",
    "error",
    "warning",
    "cache",
    "miss",
    "hit",
    "database",
    "latency",
    "Zürich",
    "café",
    "order",
    "payment",
    "declined",
    "accepted",
    "session",
    "expired",
    "token",
    "refresh",
    "upload",
    "download",
    "\"q\"",
];

fn text(rng: &mut Rng, len: usize) -> String {
    let mut s = String::with_capacity(len + 16);
    while s.len() < len {
        s.push_str(WORDS[(rng.next() % WORDS.len() as u64) as usize]);
        s.push(' ');
    }
    s
}

/// One NDJSON line: ~1 KiB payload, one subject, `app_log` or `customer_record`.
fn record_line(rng: &mut Rng, event_time: &str, n: u64) -> String {
    let customer = rng.next().is_multiple_of(3);
    let data_type = if customer {
        "customer_record"
    } else {
        "app_log"
    };
    let subject = format!("user-{}", rng.next() % 100_000);
    let level = ["info", "warn", "error", "debug"][(rng.next() % 4) as usize];
    let status = [200, 201, 204, 400, 404, 500][(rng.next() % 6) as usize];
    let payload = if customer {
        serde_json::json!({
            "customer_id": format!("C{:08}", rng.next() % 100_000_000),
            "name": text(rng, 24),
            "email": format!("u{}@example.com", rng.next() % 1_000_000),
            "balance": (rng.next() % 10_000_000) as f64 / 100.0,
            "tags": [text(rng, 10), text(rng, 12)],
            "notes": text(rng, PAYLOAD_BYTES - 250),
            "n": n,
        })
    } else {
        serde_json::json!({
            "level": level,
            "service": format!("svc-{}", rng.next() % 40),
            "latency_ms": rng.next() % 5000,
            "status": status,
            "message": text(rng, PAYLOAD_BYTES - 200),
            "trace": format!("{:032x}", (u128::from(rng.next()) << 64) | u128::from(rng.next())),
            "n": n,
        })
    };
    format!(
        r#"{{"type":"{data_type}","subjects":["{subject}"],"event_time":"{event_time}","payload":{payload}}}"#
    )
}

fn build_bodies(count: usize) -> Vec<&'static [u8]> {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let event_time = now().to_string();
    let mut n = 0;
    (0..count)
        .map(|_| {
            let mut body = String::with_capacity(RECORDS_PER_BATCH * 1200);
            for _ in 0..RECORDS_PER_BATCH {
                n += 1;
                body.push_str(&record_line(&mut rng, &event_time, n));
                body.push('\n');
            }
            // Leaked on purpose: `&'static [u8]` bodies go to reqwest without a copy.
            &*Box::leak(body.into_bytes().into_boxed_slice())
        })
        .collect()
}

struct Measured {
    records: usize,
    bytes: usize,
    elapsed: Duration,
}

impl Measured {
    fn rate(&self) -> f64 {
        self.records as f64 / self.elapsed.as_secs_f64()
    }
    fn mib_s(&self) -> f64 {
        self.bytes as f64 / (1024.0 * 1024.0) / self.elapsed.as_secs_f64()
    }
    fn line(&self, label: &str) -> String {
        format!(
            "  {label:<34} {:>9.0} records/s  {:>7.1} MiB/s  ({} records in {:.2?})",
            self.rate(),
            self.mib_s(),
            self.records,
            self.elapsed
        )
    }
}

fn idempotency_key(prefix: &str, i: usize) -> String {
    format!("{prefix}-{}-{i}", ulid::Ulid::new())
}

/// `batches` batches over HTTP from `concurrency` clients, each with its own connection.
async fn http_ingest(
    base: &str,
    token: &str,
    bodies: &[&'static [u8]],
    concurrency: usize,
    batches: usize,
) -> Measured {
    let next = Arc::new(AtomicUsize::new(0));
    let url = format!("{base}/v1/tenants/{TENANT}/records");
    let clients: Vec<reqwest::Client> = (0..concurrency)
        .map(|_| {
            reqwest::Client::builder()
                .timeout(Duration::from_secs(300))
                .pool_max_idle_per_host(1)
                .build()
                .expect("http client")
        })
        .collect();
    // Open every connection before timing.
    for c in &clients {
        let r = c
            .get(format!("{base}/healthz"))
            .send()
            .await
            .expect("healthz");
        assert!(r.status().is_success());
    }
    let bytes: usize = (0..batches).map(|i| bodies[i % bodies.len()].len()).sum();
    let started = Instant::now();
    let tasks: Vec<_> = clients
        .into_iter()
        .map(|http| {
            let (next, url, token) = (next.clone(), url.clone(), token.to_owned());
            let bodies = bodies.to_vec();
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= batches {
                        break;
                    }
                    let r = http
                        .post(&url)
                        .bearer_auth(&token)
                        .header("content-type", "application/x-ndjson")
                        .header("idempotency-key", idempotency_key("bench", i))
                        .body(bodies[i % bodies.len()])
                        .send()
                        .await
                        .expect("POST records");
                    let status = r.status();
                    let text = r.text().await.expect("response body");
                    assert_eq!(status, reqwest::StatusCode::OK, "ingest failed: {text}");
                    let answer: serde_json::Value =
                        serde_json::from_str(&text).expect("JSON answer");
                    assert_eq!(answer["accepted"], RECORDS_PER_BATCH);
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("client task");
    }
    Measured {
        records: batches * RECORDS_PER_BATCH,
        bytes,
        elapsed: started.elapsed(),
    }
}

/// Validate + seal (`prepare_batch`) on `threads` threads, in-process, no I/O, under the
/// server's policy.
fn seal_only(
    state: &AppState,
    runtime: &tokio::runtime::Handle,
    bodies: &[&'static [u8]],
    threads: usize,
    batches: usize,
) -> Measured {
    seal_under(&state.policy, state, runtime, bodies, threads, batches)
}

/// [`seal_only`] under `policy` (same tenants and data types as the server's).
fn seal_under(
    policy: &Policy,
    state: &AppState,
    runtime: &tokio::runtime::Handle,
    bodies: &[&'static [u8]],
    threads: usize,
    batches: usize,
) -> Measured {
    let tenant = TenantId::new(TENANT).expect("tenant id");
    let tenant_policy = policy.tenant(&tenant).expect("tenant in policy");
    let tenant_keys = runtime
        .block_on(state.keys.tenant(&tenant))
        .expect("tenant keys");
    let next = AtomicUsize::new(0);
    let bytes: usize = (0..batches).map(|i| bodies[i % bodies.len()].len()).sum();
    let started = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= batches {
                        break;
                    }
                    let body = bodies[i % bodies.len()];
                    // The data keys come from the key service, as in the handler (cached
                    // after the warm-up, as on a running server).
                    let resolve = |ids: &[custodian_crypto::DataKeyId]| {
                        runtime.block_on(state.keys.data_keys(&tenant, ids, true, ""))
                    };
                    let sealed = custodian_server::ingest::prepare_batch(
                        policy,
                        tenant_policy,
                        &tenant_keys,
                        resolve,
                        now(),
                        body,
                    )
                    .expect("prepare_batch")
                    .expect("valid batch");
                    // The handler also hashes the body (for idempotency).
                    std::hint::black_box(custodian_crypto::sha256(body));
                    assert_eq!(sealed.records.len(), RECORDS_PER_BATCH);
                    std::hint::black_box(sealed);
                }
            });
        }
    });
    Measured {
        records: batches * RECORDS_PER_BATCH,
        bytes,
        elapsed: started.elapsed(),
    }
}

/// `Store::insert_records` alone (records, subject index, idempotency row and the batch's audit
/// entry in one transaction), on batches sealed beforehand, from `concurrency` tasks.
async fn store_only(
    state: &Arc<AppState>,
    bodies: &[&'static [u8]],
    concurrency: usize,
    batches: usize,
) -> Measured {
    let tenant = TenantId::new(TENANT).expect("tenant id");
    let tenant_policy = state.policy.tenant(&tenant).expect("tenant in policy");
    let tenant_keys = state.keys.tenant(&tenant).await.expect("tenant keys");
    let runtime = tokio::runtime::Handle::current();
    // Sealed records plus the audit entry the handler writes with them (same shape: every id
    // and every subject pseudonym of the batch), all built before timing.
    let actor = Actor {
        id: "token:0123456789abcdef".to_owned(),
        request_id: Some(ulid::Ulid::new().to_string()),
        grant: None,
    };
    let mut sealed: Vec<(Vec<StoredRecord>, custodian_store::AuditEntry)> = (0..batches)
        .map(|i| {
            let resolve = |ids: &[custodian_crypto::DataKeyId]| {
                tokio::task::block_in_place(|| {
                    runtime.block_on(state.keys.data_keys(&tenant, ids, true, ""))
                })
            };
            let batch = custodian_server::ingest::prepare_batch(
                &state.policy,
                tenant_policy,
                &tenant_keys,
                resolve,
                now(),
                bodies[i % bodies.len()],
            )
            .expect("prepare_batch")
            .expect("valid batch");
            let event = state.audit.ingest_event(&actor, &tenant, &batch);
            (
                batch.records,
                custodian_store::AuditEntry::clear(event.canonical_bytes()),
            )
        })
        .collect();
    let bytes: usize = (0..batches).map(|i| bodies[i % bodies.len()].len()).sum();
    let queue = Arc::new(std::sync::Mutex::new(
        sealed.drain(..).enumerate().collect::<Vec<_>>(),
    ));
    let started = Instant::now();
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let (queue, state, tenant) = (queue.clone(), state.clone(), tenant.clone());
            tokio::spawn(async move {
                loop {
                    let Some((i, (records, audit))) = queue.lock().unwrap().pop() else {
                        break;
                    };
                    store_batch(&state, &tenant, "store", i, records, audit).await;
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("store task");
    }
    Measured {
        records: batches * RECORDS_PER_BATCH,
        bytes,
        elapsed: started.elapsed(),
    }
}

/// `Store::insert_records` as the handler calls it, with an idempotency row of the size the
/// handler stores for a batch.
async fn store_batch(
    state: &AppState,
    tenant: &TenantId,
    tag: &str,
    i: usize,
    records: Vec<StoredRecord>,
    audit: custodian_store::AuditEntry,
) {
    let idem = IdempotentResponse {
        key: idempotency_key(tag, i),
        request_hash: [i as u8; 32],
        status: 200,
        body: vec![b'x'; 30 * RECORDS_PER_BATCH],
    };
    state
        .store
        .insert_records(tenant, records, Some(idem), audit)
        .await
        .expect("insert_records");
}

/// `prepare_batch` as the handler calls it: validate, pseudonymise, look up (or make) the data
/// keys, seal.
fn sealer(state: &Arc<AppState>) -> impl Fn(&[u8]) -> SealedBatch + Clone + Send + 'static {
    let tenant = TenantId::new(TENANT).expect("tenant id");
    let runtime = tokio::runtime::Handle::current();
    let tenant_keys = Arc::new(
        tokio::task::block_in_place(|| runtime.block_on(state.keys.tenant(&tenant)))
            .expect("tenant keys"),
    );
    let state = state.clone();
    move |body: &[u8]| {
        let tenant_policy = state.policy.tenant(&tenant).expect("tenant in policy");
        let resolve = |ids: &[custodian_crypto::DataKeyId]| {
            runtime.block_on(state.keys.data_keys(&tenant, ids, true, ""))
        };
        custodian_server::ingest::prepare_batch(
            &state.policy,
            tenant_policy,
            &tenant_keys,
            resolve,
            now(),
            body,
        )
        .expect("prepare_batch")
        .expect("valid batch")
    }
}

/// `batches` batches sealed now, to be stored later without the key hierarchy's work.
async fn preseal(
    state: &Arc<AppState>,
    bodies: &[&'static [u8]],
    batches: usize,
) -> Vec<SealedBatch> {
    let seal = sealer(state);
    let bodies = bodies.to_vec();
    tokio::task::spawn_blocking(move || {
        (0..batches)
            .map(|i| seal(bodies[i % bodies.len()]))
            .collect()
    })
    .await
    .expect("pre-seal")
}

/// What the pipeline writes as a batch's audit entry.
#[derive(Clone, Copy, PartialEq, Eq)]
enum AuditMode {
    /// The real one: the ingest event naming every record and subject, sealed under the
    /// log's period key.
    Full,
    /// A fixed two-byte entry in clear: the store still appends an entry, nothing else.
    Stub,
}

/// The median round: a WAL checkpoint or index merge can stall any one round several-fold.
fn median(mut rounds: Vec<Measured>) -> Measured {
    rounds.sort_by_key(|m| m.elapsed);
    rounds.swap_remove(rounds.len() / 2)
}

/// What scanning free text at ingest adds to the CPU stage: `prepare_batch` with no class
/// asking for detection, against the same with `pii = "flag"` and `pii = "redact"` on every
/// class the bench's records have, in alternating rounds on one thread; medians. The records
/// are ~1 KiB of words with one documentation email address in a third of them.
fn detection_overhead(
    state: &AppState,
    runtime: &tokio::runtime::Handle,
    bodies: &[&'static [u8]],
    batches: usize,
) -> Vec<String> {
    const ROUNDS: usize = 7;
    let with = |action: &str| {
        let text = format!(
            "{POLICY}\n[classes.internal]\npii = \"{action}\"\n\n[classes.confidential]\npii = \"{action}\"\n"
        );
        Policy::parse("detect.toml", &text).expect("policy with detection")
    };
    let policies = [state.policy.as_ref().clone(), with("flag"), with("redact")];
    let per_round = (batches / 4).max(1);
    let mut rounds: [Vec<Measured>; 3] = Default::default();
    for _ in 0..ROUNDS {
        for (i, policy) in policies.iter().enumerate() {
            rounds[i].push(seal_under(policy, state, runtime, bodies, 1, per_round));
        }
    }
    let [off, flag, redact] = rounds.map(median);
    let us = |m: &Measured| 1e6 / m.rate();
    vec![
        off.line("no detection (median round)"),
        flag.line("pii = \"flag\" (median round)"),
        redact.line("pii = \"redact\" (median round)"),
        format!(
            "  detection adds {:.2} us per record with flag ({:+.1}%), {:.2} us with redact ({:+.1}%), to validate + seal; scan rate {:.0} MB/s of record text",
            us(&flag) - us(&off),
            (off.rate() / flag.rate() - 1.0) * 100.0,
            us(&redact) - us(&off),
            (off.rate() / redact.rate() - 1.0) * 100.0,
            flag.bytes as f64
                / 1e6
                / (flag.elapsed.as_secs_f64() - off.elapsed.as_secs_f64()).max(1e-9),
        ),
    ]
}

/// The ingest pipeline in-process, as the handler runs it minus HTTP: the CPU stage on the
/// blocking pool, then the audit entry and `Store::insert_records`, from `concurrency` tasks.
/// The CPU stage seals each batch (validate, pseudonymise, look up keys, seal); given
/// `presealed` batches it only validates the lines and serialises their bodies, and stores
/// those instead, so the two differ by exactly the key hierarchy's work.
async fn pipeline(
    state: &Arc<AppState>,
    bodies: &[&'static [u8]],
    concurrency: usize,
    batches: usize,
    presealed: Option<Vec<SealedBatch>>,
    audit: AuditMode,
) -> Measured {
    let tenant = TenantId::new(TENANT).expect("tenant id");
    let seal = sealer(state);
    let queue: Vec<(usize, Option<SealedBatch>)> = match presealed {
        Some(batches) => batches.into_iter().map(Some).enumerate().collect(),
        None => (0..batches).map(|i| (i, None)).collect(),
    };
    let batches = queue.len();
    let queue = Arc::new(std::sync::Mutex::new(queue));
    let bytes: usize = (0..batches).map(|i| bodies[i % bodies.len()].len()).sum();
    let actor = Actor {
        id: "token:0123456789abcdef".to_owned(),
        request_id: Some(ulid::Ulid::new().to_string()),
        grant: None,
    };
    let started = Instant::now();
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let (queue, state, tenant, seal, actor) = (
                queue.clone(),
                state.clone(),
                tenant.clone(),
                seal.clone(),
                actor.clone(),
            );
            let bodies = bodies.to_vec();
            tokio::spawn(async move {
                loop {
                    let Some((i, presealed)) = queue.lock().unwrap().pop() else {
                        break;
                    };
                    let (state_cpu, tenant_cpu, seal) =
                        (state.clone(), tenant.clone(), seal.clone());
                    let body = bodies[i % bodies.len()];
                    let batch = tokio::task::spawn_blocking(move || {
                        let batch = match presealed {
                            Some(batch) => {
                                let policy = &state_cpu.policy;
                                let tenant_policy =
                                    policy.tenant(&tenant_cpu).expect("tenant in policy");
                                let text = std::str::from_utf8(body).expect("UTF-8");
                                let lines = custodian_server::ingest::validate_batch(
                                    policy,
                                    tenant_policy,
                                    now(),
                                    text,
                                )
                                .unwrap_or_else(|_| panic!("valid batch"));
                                let mut plaintext = Vec::new();
                                for line in lines {
                                    std::hint::black_box(line.expiry.bucket(now()));
                                    plaintext.clear();
                                    serde_json::to_writer(
                                        &mut plaintext,
                                        &custodian_server::ingest::SealedBody {
                                            subjects: line.subjects,
                                            payload: line.payload,
                                            findings: Vec::new(),
                                        },
                                    )
                                    .expect("serialise");
                                    std::hint::black_box(&plaintext);
                                }
                                batch
                            }
                            None => seal(body),
                        };
                        std::hint::black_box(custodian_crypto::sha256(body));
                        batch
                    })
                    .await
                    .expect("CPU stage");
                    let entry = match audit {
                        AuditMode::Full => state
                            .audit
                            .entry(&state.audit.ingest_event(&actor, &tenant, &batch))
                            .await
                            .expect("audit entry"),
                        AuditMode::Stub => custodian_store::AuditEntry::clear(b"{}".to_vec()),
                    };
                    store_batch(&state, &tenant, "pipeline", i, batch.records, entry).await;
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("pipeline task");
    }
    Measured {
        records: batches * RECORDS_PER_BATCH,
        bytes,
        elapsed: started.elapsed(),
    }
}

struct RunningServer {
    state: Arc<AppState>,
    listener: Listener,
    token: String,
    _dir: tempfile::TempDir,
}

async fn start_server(store_config: StoreConfig) -> RunningServer {
    let dir = tempfile::tempdir().expect("temp dir");
    let policy = Policy::parse("default.toml", POLICY).expect("default policy is valid");
    let config = ServerConfig {
        listen: "127.0.0.1:0".parse().expect("address"),
        data_dir: dir.path().to_owned(),
        database_url: None,
        body_limit: custodian_server::DEFAULT_BODY_LIMIT,
    };
    let state =
        custodian_server::build_state(policy, &config, &store_config, Arc::new(SystemClock))
            .await
            .expect("build server state");
    let issued = custodian_server::auth::issue_token(
        &state.audit,
        &SystemClock,
        &custodian_server::auth::TokenIssuer {
            actor: "bench",
            subsystem: "bench",
        },
        &TenantId::new(TENANT).expect("tenant id"),
        Role::Writer,
        None,
    )
    .await
    .expect("issue token");
    RunningServer {
        listener: Listener::start(state.clone(), config.listen).await,
        state,
        token: issued.token.as_str().to_owned(),
        _dir: dir,
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Backend {
    Sqlite,
    Postgres,
}

/// A fresh, empty store for one configuration, so every figure starts from the same state.
struct FreshStore {
    config: StoreConfig,
    schema: Option<String>,
    _dir: tempfile::TempDir,
}

impl FreshStore {
    fn new(backend: Backend) -> FreshStore {
        let dir = tempfile::tempdir().expect("temp dir");
        match backend {
            Backend::Sqlite => FreshStore {
                config: StoreConfig::Sqlite {
                    path: custodian_store::sqlite_path(dir.path()),
                },
                schema: None,
                _dir: dir,
            },
            Backend::Postgres => {
                let schema = testing::unique_schema("bench");
                FreshStore {
                    config: StoreConfig::Postgres {
                        url: testing::postgres_url(),
                        schema: Some(schema.clone()),
                    },
                    schema: Some(schema),
                    _dir: dir,
                }
            }
        }
    }
}

impl Drop for FreshStore {
    fn drop(&mut self) {
        if let Some(schema) = &self.schema {
            psql(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"));
        }
    }
}

/// Runs one statement with `psql` (best effort: diagnostics only) and returns its output.
fn psql(sql: &str) -> Option<String> {
    let out = std::process::Command::new("psql")
        .arg(testing::postgres_url())
        .args(["-qtA", "-c", sql])
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// Where the bytes go: for SQLite what this process wrote to storage (`/proc/self/io`), for
/// PostgreSQL the WAL it generated (its data files are written later by the checkpointer).
enum WriteProbe {
    Process(u64),
    Wal(String),
    None,
}

impl WriteProbe {
    fn start(backend: Backend) -> WriteProbe {
        match backend {
            Backend::Sqlite => process_write_bytes().map_or(WriteProbe::None, WriteProbe::Process),
            Backend::Postgres => {
                psql("SELECT pg_current_wal_lsn()").map_or(WriteProbe::None, WriteProbe::Wal)
            }
        }
    }

    fn per_record(&self, records: usize) -> String {
        let bytes = match self {
            WriteProbe::Process(before) => {
                process_write_bytes().map(|after| after.saturating_sub(*before))
            }
            WriteProbe::Wal(lsn) => psql(&format!(
                "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '{lsn}')::bigint"
            ))
            .and_then(|s| s.parse().ok()),
            WriteProbe::None => None,
        };
        let what = match self {
            WriteProbe::Process(_) => "written to disk",
            _ => "of WAL",
        };
        bytes.map_or(String::new(), |b| {
            format!(
                "  [{:.1} KiB {what} per record]",
                b as f64 / 1024.0 / records as f64
            )
        })
    }
}

fn process_write_bytes() -> Option<u64> {
    std::fs::read_to_string("/proc/self/io")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("write_bytes: "))?
        .trim()
        .parse()
        .ok()
}

async fn bench_backend(
    backend: Backend,
    bodies: &[&'static [u8]],
    batches: usize,
    seal_rate: f64,
) -> f64 {
    let mut best = 0f64;
    for &c in CONCURRENCY {
        let store = FreshStore::new(backend);
        let server = start_server(store.config.clone()).await;
        http_ingest(
            &server.listener.base,
            &server.token,
            bodies,
            c,
            WARMUP_BATCHES,
        )
        .await;
        let probe = WriteProbe::start(backend);
        let m = http_ingest(&server.listener.base, &server.token, bodies, c, batches).await;
        best = best.max(m.rate());
        println!(
            "{}  = {:.2}x seal-only (all cores){}",
            m.line(&format!("HTTP + store, {c} connections")),
            m.rate() / seal_rate,
            probe.per_record(m.records)
        );
        server.listener.stop().await;
    }
    for &c in CONCURRENCY {
        let store = FreshStore::new(backend);
        let server = start_server(store.config.clone()).await;
        store_only(&server.state, bodies, c, WARMUP_BATCHES).await;
        let probe = WriteProbe::start(backend);
        let m = store_only(&server.state, bodies, c, batches).await;
        println!(
            "{}{}",
            m.line(&format!("store only (pre-sealed), {c} tasks")),
            probe.per_record(m.records)
        );
        server.listener.stop().await;
    }
    key_hierarchy_overhead(backend, bodies, batches, best).await;
    audit_overhead(backend, bodies, batches, best).await;
    best
}

/// What the audit adds to ingest: the pipeline (keys included, known subjects) with each
/// batch's real audit entry against the same pipeline with a fixed two-byte entry, in
/// alternating rounds on one store. The difference is building the event (every record id
/// and subject pseudonym of the batch), its canonical encoding, sealing it under the period
/// key, hashing its leaf and writing its larger body; the tree nodes and head are written in
/// both.
async fn audit_overhead(
    backend: Backend,
    bodies: &[&'static [u8]],
    batches: usize,
    http_rate: f64,
) {
    const ROUNDS: usize = 20;
    let concurrency = std::thread::available_parallelism().map_or(1, |n| n.get());
    let store = FreshStore::new(backend);
    let server = start_server(store.config.clone()).await;
    // Every subject gets its key first: the rounds measure the steady state.
    pipeline(
        &server.state,
        bodies,
        concurrency,
        bodies.len(),
        None,
        AuditMode::Full,
    )
    .await;
    let per_round = (batches / 10).max(1);
    let mut rounds: [Vec<Measured>; 2] = [Vec::new(), Vec::new()];
    for round in 0..2 * ROUNDS {
        let full = round % 2 == 1;
        let mode = if full {
            AuditMode::Full
        } else {
            AuditMode::Stub
        };
        let m = pipeline(&server.state, bodies, concurrency, per_round, None, mode).await;
        rounds[usize::from(full)].push(m);
    }
    let [stub, full] = rounds.map(median);
    println!(
        "{}",
        stub.line(&format!(
            "stub audit entry, {concurrency} tasks, median round"
        ))
    );
    println!(
        "{}",
        full.line(&format!(
            "sealed ingest event, {concurrency} tasks, median round"
        ))
    );
    let added_us = (1.0 / full.rate() - 1.0 / stub.rate()) * 1e6;
    let http_us = 1e6 / http_rate;
    println!(
        "  the audit adds {:+.1}% to the in-process pipeline (median of {ROUNDS} alternating rounds each): \
         {added_us:.2} us per record, {:.0} us per batch of {RECORDS_PER_BATCH}; {:+.1}% of end-to-end HTTP ingest \
         ({http_us:.1} us per record)",
        (stub.rate() / full.rate() - 1.0) * 100.0,
        added_us * RECORDS_PER_BATCH as f64,
        added_us / (http_us - added_us) * 100.0
    );
    server.listener.stop().await;
}

/// What the key hierarchy (pseudonyms, key lookup, key derivation, AES-256-GCM) adds to the
/// ingest pipeline. Cold: the first batches on a fresh store, where nearly every record names a
/// subject never seen, so its key is made, wrapped and made durable before the record is
/// sealed. Steady: once every subject has a key, the pipeline with and without the key
/// hierarchy in alternating rounds on the same store, each round after the same untimed
/// pre-sealing pause, so the disk's drift and the store's background work fall on both alike.
/// HTTP is left out, so the overhead is a share of less work than a real request does: an
/// upper bound on what a client sees.
async fn key_hierarchy_overhead(
    backend: Backend,
    bodies: &[&'static [u8]],
    batches: usize,
    http_rate: f64,
) {
    const ROUNDS: usize = 20;
    let concurrency = std::thread::available_parallelism().map_or(1, |n| n.get());
    let store = FreshStore::new(backend);
    let server = start_server(store.config.clone()).await;
    let cold = pipeline(
        &server.state,
        bodies,
        concurrency,
        bodies.len(),
        None,
        AuditMode::Full,
    )
    .await;
    println!(
        "{}",
        cold.line(&format!("keys, cold (new subjects), {concurrency} tasks"))
    );
    let per_round = (batches / 10).max(1);
    let mut rounds: [Vec<Measured>; 2] = [Vec::new(), Vec::new()];
    for round in 0..2 * ROUNDS {
        let with_keys = round % 2 == 1;
        let presealed = preseal(&server.state, bodies, per_round).await;
        let presealed = (!with_keys).then_some(presealed);
        let m = pipeline(
            &server.state,
            bodies,
            concurrency,
            per_round,
            presealed,
            AuditMode::Full,
        )
        .await;
        rounds[usize::from(with_keys)].push(m);
    }
    let [without, with] = rounds.map(median);
    println!(
        "{}",
        without.line(&format!(
            "no keys (pre-sealed), {concurrency} tasks, median round"
        ))
    );
    println!(
        "{}",
        with.line(&format!(
            "keys, steady (known subjects), {concurrency} tasks, median round"
        ))
    );
    // Per record: what the key hierarchy adds to the pipeline, and that time as a share of
    // the best end-to-end HTTP ingest measured above, without it.
    let added_us = (1.0 / with.rate() - 1.0 / without.rate()) * 1e6;
    let http_us = 1e6 / http_rate;
    println!(
        "  key hierarchy adds {:+.1}% steady (median of {ROUNDS} alternating rounds each), {:+.1}% cold, \
         to the in-process pipeline; steady it costs {added_us:.2} us per record, {:+.1}% of end-to-end HTTP ingest \
         ({http_us:.1} us per record) (target <= +10%)",
        (without.rate() / with.rate() - 1.0) * 100.0,
        (without.rate() / cold.rate() - 1.0) * 100.0,
        added_us / (http_us - added_us) * 100.0
    );
    server.listener.stop().await;
}

fn main() {
    // `cargo bench` passes `--bench`; with harness = false there is nothing else to parse.
    let batches = std::env::var("CUSTODIAN_BENCH_BATCHES")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|n| *n > 0)
        .unwrap_or(DEFAULT_BATCHES);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");

    let bodies = build_bodies(DISTINCT_BODIES.min(batches.max(WARMUP_BATCHES)));
    let avg_line =
        bodies.iter().map(|b| b.len()).sum::<usize>() / (bodies.len() * RECORDS_PER_BATCH);
    println!(
        "custodian ingest benchmark: {cores} core(s), batches of {RECORDS_PER_BATCH} records \
         (~{avg_line} bytes per NDJSON line), {WARMUP_BATCHES} warm-up + {batches} timed batches per configuration"
    );

    runtime.block_on(async {
        // Baseline: validate + seal in-process, with a throwaway SQLite store for the key.
        let dir = tempfile::tempdir().expect("temp dir");
        let baseline = start_server(StoreConfig::Sqlite {
            path: custodian_store::sqlite_path(dir.path()),
        })
        .await;
        let state = baseline.state.clone();
        let bodies_ref = bodies.clone();
        let handle = tokio::runtime::Handle::current();
        let (one, all, detection) = tokio::task::spawn_blocking(move || {
            seal_only(&state, &handle, &bodies_ref, 1, WARMUP_BATCHES);
            let one = seal_only(&state, &handle, &bodies_ref, 1, batches);
            let all = seal_only(&state, &handle, &bodies_ref, cores, batches);
            let detection = detection_overhead(&state, &handle, &bodies_ref, batches);
            (one, all, detection)
        })
        .await
        .expect("seal baseline");
        baseline.listener.stop().await;
        println!(
            "\nbaseline: validate + key lookup + seal (prepare_batch + body SHA-256), in-process"
        );
        println!("{}", one.line("1 thread"));
        println!("{}", all.line(&format!("{cores} threads")));
        let seal_rate = all.rate();
        println!("\ndetection at ingest (free-text scan of every record), in-process, 1 thread");
        for line in detection {
            println!("{line}");
        }

        let only = std::env::var("CUSTODIAN_BENCH_ONLY").unwrap_or_default();
        let mut summary = Vec::new();
        if only.is_empty() || only == "sqlite" {
            println!("\nSQLite (WAL, synchronous=FULL), a fresh database per configuration");
            let best = bench_backend(Backend::Sqlite, &bodies, batches, seal_rate).await;
            summary.push(format!("SQLite {best:.0} records/s (target 50000)"));
        }
        if (only.is_empty() || only == "postgres") && testing::postgres_available().await {
            println!(
                "\nPostgreSQL ({}), a fresh schema per configuration",
                testing::postgres_url()
            );
            let best = bench_backend(Backend::Postgres, &bodies, batches, seal_rate).await;
            summary.push(format!("PostgreSQL {best:.0} records/s (target 20000)"));
        } else if only.is_empty() || only == "postgres" {
            println!("\nPostgreSQL: not reachable, skipped");
        }
        println!(
            "\nbest end-to-end on {cores} core(s): {}",
            summary.join("; ")
        );
    });
}
