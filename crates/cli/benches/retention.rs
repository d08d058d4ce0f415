//! Retention benchmark: how soon expired records become unreadable and how soon their rows are
//! purged, and what a sweep costs ingest running beside it, on SQLite and (when reachable)
//! PostgreSQL.
//!
//! `cargo bench -p custodian --bench retention`. Environment:
//! - `CUSTODIAN_BENCH_RETENTION_RECORDS`: expired records in the large due set (default
//!   1,000,000); the small set holds a tenth of them; both spread over 30 expiry buckets;
//! - `CUSTODIAN_BENCH_INGEST_SECS`: how long ingest runs alone before the sweep (default 5);
//! - `CUSTODIAN_BENCH_ONLY=sqlite|postgres`: run one backend only;
//! - `CUSTODIAN_TEST_DATABASE_URL`: the PostgreSQL server (default the local one).
//!
//! The records are `app_log` lines with ~100-byte payloads and one subject each (from a pool of
//! 10,000), sealed by `custodian_server::ingest::prepare_batch` and stored by
//! `Store::insert_records` with their audit entry, 1,000 to a batch, as the ingest handler
//! does. Their event times lie 150 to 179 days back, so with the 180-day retention of the
//! default policy they fall in 30 daily expiry buckets from tomorrow on; every sweep runs at an
//! instant after the last of those buckets closes. Filling is not timed; afterwards the store
//! is left to settle as month-old data would be (SQLite: the staged subject-index entries are
//! merged; PostgreSQL: `VACUUM ANALYZE` and a checkpoint, through `psql` when installed).
//!
//! Per backend, each configuration on a fresh store:
//! 1. the large set in two phases. Unreadable: find the due buckets (`due_buckets`), then shred
//!    each bucket's data key, one shred per bucket as the sweeper does (then, untimed: every
//!    bucket key fails to unwrap, a record of every bucket fails to open). Purged: then
//!    `retention::sweep`, which finds the keys already shredded, verifies each destruction and
//!    purges each bucket with its certificate.
//! 2. the small set, the same: the time to unreadable should follow the buckets, not the
//!    records.
//! 3. the large set, one full `retention::sweep` (every due key shredded first, then each
//!    bucket verified and purged); the key store's shred log tells when the last key went.
//! 4. the large set, with in-process ingest (`prepare_batch` + `insert_records`, one task per
//!    core, no HTTP) running alone, then while a full sweep destroys the set: throughput and
//!    batch latency of both. The sweep and the ingest share the process and its cores.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use custodian_core::ids::{DataTypeName, RecordId, TenantId};
use custodian_crypto::DataKeyId;
use custodian_server::audit::Actor;
use custodian_server::clock::SystemClock;
use custodian_server::keys::TenantKeys;
use custodian_server::{AppState, ServerError};
use custodian_store::{BucketSummary, ShredScope, StoreConfig, testing};
use jiff::{Timestamp, ToSpan};

#[path = "support/node.rs"]
mod node;

use node::{Backend, Node};

const POLICY: &str = include_str!("../../../examples/policies/default.toml");
const TENANT: &str = "acme";
const DATA_TYPE: &str = "app_log";
/// `app_log`'s retention in the default policy, in days.
const RETENTION_DAYS: i64 = 180;
const BUCKETS: usize = 30;
const RECORDS_PER_BATCH: usize = 1000;
const SUBJECTS: u64 = 10_000;
const DEFAULT_RECORDS: usize = 1_000_000;
const DEFAULT_INGEST_SECS: usize = 5;
/// Distinct bodies the concurrent ingest cycles through.
const INGEST_BODIES: usize = 16;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|n| *n > 0)
        .unwrap_or(default)
}

/// The server's own clock adapter: the one place allowed to read the system time.
fn now() -> Timestamp {
    custodian_core::clock::Clock::now(&SystemClock)
}

fn tenant() -> TenantId {
    TenantId::new(TENANT).expect("tenant id")
}

fn data_type() -> DataTypeName {
    DataTypeName::new(DATA_TYPE).expect("data type name")
}

fn bucket_key(bucket: &str) -> DataKeyId {
    DataKeyId::Bucket {
        data_type: data_type(),
        bucket: bucket.to_owned(),
    }
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

/// An NDJSON batch of `count` `app_log` lines with ~100-byte payloads, one subject each.
fn body(rng: &mut Rng, event_time: &str, first: u64, count: usize) -> Vec<u8> {
    let mut s = String::with_capacity(count * 240);
    for n in first..first + count as u64 {
        let level = ["info", "warn", "error", "debug"][(rng.next() % 4) as usize];
        let status = [200, 201, 204, 400, 404, 500][(rng.next() % 6) as usize];
        let _ = writeln!(
            s,
            r#"{{"type":"{DATA_TYPE}","subjects":["user-{}"],"event_time":"{event_time}","payload":{{"level":"{level}","service":"svc-{:02}","status":{status},"latency_ms":{},"msg":"request completed","n":{n}}}}}"#,
            rng.next() % SUBJECTS,
            rng.next() % 40,
            rng.next() % 5000,
        );
    }
    s.into_bytes()
}

impl Node {
    /// Waits for the work a store does in the background after a large fill, so it is not
    /// timed as part of what follows: data a month old has long been through it.
    async fn settle(&self) {
        match &self.config {
            StoreConfig::Sqlite { path } => {
                let conn = rusqlite::Connection::open_with_flags(
                    path,
                    rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
                )
                .expect("open the database to watch it");
                loop {
                    let staged: i64 = conn
                        .query_row("SELECT COUNT(*) FROM subject_staging", [], |r| r.get(0))
                        .expect("count staged subject entries");
                    if staged == 0 {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                // A few more checkpoint rounds of the maintenance thread.
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
            StoreConfig::Postgres { schema, .. } => {
                let schema = schema.as_deref().expect("bench schema");
                let vacuumed = psql(&format!(
                    "VACUUM ANALYZE {schema}.records, {schema}.record_subjects"
                ))
                .is_some();
                let checkpointed = psql("CHECKPOINT").is_some();
                if !vacuumed || !checkpointed {
                    println!(
                        "  (psql unavailable or refused: VACUUM ANALYZE {vacuumed}, CHECKPOINT {checkpointed})"
                    );
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

/// Runs one statement with `psql` (best effort) and returns its output.
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

/// Seals `body` as the ingest handler does (`prepare_batch`, off the async threads) and stores
/// it with its audit entry. Returns the first record's id and bucket, and the record count.
async fn ingest(
    state: &Arc<AppState>,
    keys: &Arc<TenantKeys>,
    body: Vec<u8>,
) -> (RecordId, String, usize) {
    let tenant = tenant();
    let batch = {
        let (state, keys, tenant) = (state.clone(), keys.clone(), tenant.clone());
        tokio::task::spawn_blocking(move || {
            let runtime = tokio::runtime::Handle::current();
            let tenant_policy = state.policy.tenant(&tenant).expect("tenant in policy");
            let resolve =
                |ids: &[DataKeyId]| runtime.block_on(state.keys.data_keys(&tenant, ids, true, ""));
            custodian_server::ingest::prepare_batch(
                &state.policy,
                tenant_policy,
                &keys,
                resolve,
                now(),
                &body,
            )
            .expect("prepare_batch")
            .expect("valid batch")
        })
        .await
        .expect("seal task")
    };
    let actor = Actor {
        id: "token:0123456789abcdef".to_owned(),
        request_id: Some(ulid::Ulid::new().to_string()),
        grant: None,
    };
    let audit = state
        .audit
        .entry(&state.audit.ingest_event(&actor, &tenant, &batch))
        .await
        .expect("audit entry");
    let first = (
        batch.ids[0],
        batch.records[0].key_bucket.clone(),
        batch.records.len(),
    );
    state
        .store
        .insert_records(&tenant, batch.records, None, audit)
        .await
        .expect("insert_records");
    first
}

/// What a fill left: a sample record of every bucket, and when to sweep.
struct DueSet {
    records: usize,
    /// Bucket name to the id of one of its records.
    samples: BTreeMap<String, RecordId>,
    /// An instant after every bucket of the set closed.
    sweep_at: Timestamp,
}

/// Writes `records` expired-to-be records over [`BUCKETS`] daily expiry buckets, one task per
/// core. Batches go round the buckets, as records with spread event times arrive.
async fn fill(node: &Node, records: usize) -> DueSet {
    // Midday UTC, so every bucket's records share one event day whatever the hour now.
    let midday = now()
        .to_zoned(jiff::tz::TimeZone::UTC)
        .date()
        .at(12, 0, 0, 0)
        .to_zoned(jiff::tz::TimeZone::UTC)
        .expect("midday")
        .timestamp();
    let event_times: Vec<String> = (0..BUCKETS as i64)
        .map(|k| (midday - (24 * (RETENTION_DAYS - 1 - k)).hours()).to_string())
        .collect();
    let mut per_bucket: Vec<Vec<usize>> = (0..BUCKETS)
        .map(|k| {
            let n = records / BUCKETS + usize::from(k < records % BUCKETS);
            let mut chunks = vec![RECORDS_PER_BATCH; n / RECORDS_PER_BATCH];
            if !n.is_multiple_of(RECORDS_PER_BATCH) {
                chunks.push(n % RECORDS_PER_BATCH);
            }
            chunks.reverse();
            chunks
        })
        .collect();
    let mut plan: Vec<(usize, usize, u64)> = Vec::new();
    let mut first = 0u64;
    while per_bucket.iter().any(|c| !c.is_empty()) {
        for (k, chunks) in per_bucket.iter_mut().enumerate() {
            if let Some(n) = chunks.pop() {
                plan.push((k, n, first));
                first += n as u64;
            }
        }
    }
    // Every subject's key is made first, from one task, so the fill measures sealing and
    // storing rather than key creation.
    let subjects: Vec<DataKeyId> = (0..SUBJECTS)
        .map(|n| DataKeyId::Subject(node.keys.pseudonym(&format!("user-{n}"))))
        .collect();
    for chunk in subjects.chunks(RECORDS_PER_BATCH) {
        node.state
            .keys
            .data_keys(&tenant(), chunk, true, "")
            .await
            .expect("subject keys");
    }
    let plan = Arc::new(plan);
    let event_times = Arc::new(event_times);
    let next = Arc::new(AtomicUsize::new(0));
    let samples = Arc::new(Mutex::new(BTreeMap::new()));
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    let started = Instant::now();
    let tasks: Vec<_> = (0..workers)
        .map(|_| {
            let (plan, event_times, next, samples) = (
                plan.clone(),
                event_times.clone(),
                next.clone(),
                samples.clone(),
            );
            let (state, keys) = (node.state.clone(), node.keys.clone());
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(&(k, n, first)) = plan.get(i) else {
                        break;
                    };
                    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ (i as u64 + 1));
                    let body = body(&mut rng, &event_times[k], first, n);
                    let (id, bucket, stored) = ingest(&state, &keys, body).await;
                    assert_eq!(stored, n);
                    samples.lock().unwrap().entry(bucket).or_insert(id);
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("fill task");
    }
    let elapsed = started.elapsed().as_secs_f64();
    let samples = std::mem::take(&mut *samples.lock().unwrap());
    assert_eq!(samples.len(), BUCKETS, "one bucket per event day");
    let sweep_at = samples
        .keys()
        .map(|b| custodian_core::retention::bucket_closes_at(b).expect("a dated bucket"))
        .max()
        .expect("buckets")
        + 1.hour();
    println!(
        "  filled {records} records in {elapsed:.1} s ({:.0} records/s; not timed)",
        records as f64 / elapsed
    );
    node.settle().await;
    DueSet {
        records,
        samples,
        sweep_at,
    }
}

/// The due buckets, checked to be the whole set.
async fn due_buckets(node: &Node, due: &DueSet) -> Vec<BucketSummary> {
    let buckets = node
        .state
        .store
        .due_buckets(None, due.sweep_at)
        .await
        .expect("due_buckets");
    assert_eq!(buckets.len(), BUCKETS, "every bucket is due");
    assert_eq!(
        buckets.iter().map(|b| b.records).sum::<u64>(),
        due.records as u64
    );
    buckets
}

/// Every bucket key fails to unwrap, and a sample record of every bucket fails to open.
async fn assert_unreadable(node: &Node, due: &DueSet) {
    let tenant = tenant();
    for (bucket, id) in &due.samples {
        match node
            .state
            .keys
            .data_keys(&tenant, &[bucket_key(bucket)], false, "")
            .await
        {
            Err(ServerError::KeyDestroyed { .. }) => {}
            Ok(_) => panic!("bucket key of {bucket} still unwraps after its shred"),
            Err(e) => panic!("bucket key of {bucket}: {e}"),
        }
        let record = node
            .state
            .store
            .get_record(&tenant, *id)
            .await
            .expect("get_record")
            .expect("the row is still there before the purge");
        match custodian_server::records::open(&node.state, &tenant, &record).await {
            Err(ServerError::KeyDestroyed { .. }) => {}
            Ok(_) => panic!("record {id} of {bucket} still opens after its bucket's shred"),
            Err(e) => panic!("record {id} of {bucket}: {e}"),
        }
    }
}

/// After a sweep: a certificate per bucket, every record counted, nothing left due.
async fn assert_purged(
    node: &Node,
    due: &DueSet,
    report: &custodian_server::retention::SweepReport,
) {
    assert_eq!(
        report.destroyed.len(),
        BUCKETS,
        "one certificate per bucket"
    );
    assert!(report.held.is_empty());
    assert_eq!(
        report.destroyed.iter().map(|c| c.record_count).sum::<u64>(),
        due.records as u64
    );
    let left = node
        .state
        .store
        .due_buckets(None, due.sweep_at)
        .await
        .expect("due_buckets");
    assert!(left.is_empty(), "buckets left after the sweep: {left:?}");
}

struct Split {
    find: Duration,
    shred: Duration,
}

impl Split {
    fn unreadable(&self) -> Duration {
        self.find + self.shred
    }
}

fn rate_k(rows: usize, d: Duration) -> String {
    format!("{:.0}k", rows as f64 / d.as_secs_f64() / 1000.0)
}

/// Configurations 1 and 2: unreadable (find + shred every bucket key), then purged (sweep).
async fn split(backend: Backend, records: usize) -> Split {
    let node = Node::fresh(backend).await;
    let due = fill(&node, records).await;
    let tenant = tenant();
    let started = Instant::now();
    let buckets = due_buckets(&node, &due).await;
    let find = started.elapsed();
    let shredding = Instant::now();
    for b in &buckets {
        let destroyed = node
            .state
            .keys
            .shred(
                &b.tenant,
                ShredScope::Keys(vec![
                    DataKeyId::Bucket {
                        data_type: b.data_type.clone(),
                        bucket: b.bucket.clone(),
                    }
                    .encode(),
                ]),
            )
            .await
            .expect("shred");
        assert_eq!(destroyed.len(), 1);
    }
    let shred = shredding.elapsed();
    let unreadable = started.elapsed();
    assert_eq!(buckets[0].tenant, tenant);
    assert_unreadable(&node, &due).await;
    let sweeping = Instant::now();
    let report = custodian_server::retention::sweep(&node.state, due.sweep_at)
        .await
        .expect("sweep");
    let purge = sweeping.elapsed();
    assert_purged(&node, &due, &report).await;
    println!(
        "{} {records} records / {BUCKETS} buckets: unreadable in {:.3} s (find due buckets {:.3} s + shred {BUCKETS} keys {:.3} s, {:.2} ms per bucket), purged in {:.1} s (sweep after the shreds {:.1} s, {} rows/s)",
        node.backend.name(),
        unreadable.as_secs_f64(),
        find.as_secs_f64(),
        shred.as_secs_f64(),
        shred.as_secs_f64() * 1e3 / BUCKETS as f64,
        (unreadable + purge).as_secs_f64(),
        purge.as_secs_f64(),
        rate_k(records, purge),
    );
    node.close().await;
    Split { find, shred }
}

/// Seconds from `started` until the shred log's first and last entry for a key of the set.
fn shred_times(
    log: &[custodian_store::ShredEntry],
    due: &DueSet,
    started: Timestamp,
) -> (f64, f64) {
    let keys: Vec<String> = due.samples.keys().map(|b| bucket_key(b).encode()).collect();
    let at: Vec<Timestamp> = log
        .iter()
        .filter(|e| e.tenant.as_str() == TENANT && keys.contains(&e.id))
        .map(|e| e.at)
        .collect();
    assert_eq!(at.len(), BUCKETS, "every bucket key in the shred log");
    let secs = |t: &Timestamp| t.duration_since(started).as_secs_f64();
    (
        at.iter().map(secs).fold(f64::INFINITY, f64::min),
        at.iter().map(secs).fold(0.0, f64::max),
    )
}

/// Configuration 3: one full sweep, as the sweeper runs it.
async fn full_sweep(backend: Backend, records: usize) {
    let node = Node::fresh(backend).await;
    let due = fill(&node, records).await;
    let started_at = now();
    let started = Instant::now();
    let report = custodian_server::retention::sweep(&node.state, due.sweep_at)
        .await
        .expect("sweep");
    let elapsed = started.elapsed();
    assert_purged(&node, &due, &report).await;
    let log = node
        .state
        .keys
        .store()
        .snapshot()
        .await
        .expect("key store")
        .shred_log;
    let (first, last) = shred_times(&log, &due, started_at);
    println!(
        "{} full sweep, {records} records / {BUCKETS} buckets: first key shredded after {first:.3} s, last after {last:.2} s, purged in {:.1} s ({} rows/s)",
        node.backend.name(),
        elapsed.as_secs_f64(),
        rate_k(records, elapsed),
    );
    node.close().await;
}

/// Completed ingest batches: when each ended, how long it took, how many records.
type Completed = Arc<Mutex<Vec<(Instant, Duration, usize)>>>;

struct Window {
    records: usize,
    elapsed: Duration,
    p50: Duration,
    max: Duration,
}

impl Window {
    fn of(done: &[(Instant, Duration, usize)], from: Instant, to: Instant) -> Window {
        let mut latencies: Vec<Duration> = Vec::new();
        let mut records = 0;
        for (end, latency, n) in done {
            if *end >= from && *end < to {
                latencies.push(*latency);
                records += n;
            }
        }
        latencies.sort();
        Window {
            records,
            elapsed: to - from,
            p50: latencies
                .get(latencies.len() / 2)
                .copied()
                .unwrap_or_default(),
            max: latencies.last().copied().unwrap_or_default(),
        }
    }

    fn rate(&self) -> f64 {
        self.records as f64 / self.elapsed.as_secs_f64()
    }

    fn line(&self) -> String {
        format!(
            "{:.0} records/s ({} records in {:.1} s; batch of {RECORDS_PER_BATCH} latency p50 {:.0} ms, max {:.0} ms)",
            self.rate(),
            self.records,
            self.elapsed.as_secs_f64(),
            self.p50.as_secs_f64() * 1e3,
            self.max.as_secs_f64() * 1e3
        )
    }
}

/// Configuration 4: ingest alone for `window`, then while a full sweep destroys the set.
async fn sweep_under_ingest(backend: Backend, records: usize, window: Duration) {
    let node = Node::fresh(backend).await;
    let due = fill(&node, records).await;
    // Records of today: they expire in 180 days, long after the sweep's instant, so the sweep
    // leaves their bucket alone.
    let event_time = now().to_string();
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let bodies: Arc<Vec<Vec<u8>>> = Arc::new(
        (0..INGEST_BODIES)
            .map(|i| {
                body(
                    &mut rng,
                    &event_time,
                    (i * RECORDS_PER_BATCH) as u64,
                    RECORDS_PER_BATCH,
                )
            })
            .collect(),
    );
    let stop = Arc::new(AtomicBool::new(false));
    let done: Completed = Arc::new(Mutex::new(Vec::new()));
    let next = Arc::new(AtomicUsize::new(0));
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    let tasks: Vec<_> = (0..workers)
        .map(|_| {
            let (bodies, stop, done, next) =
                (bodies.clone(), stop.clone(), done.clone(), next.clone());
            let (state, keys) = (node.state.clone(), node.keys.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let started = Instant::now();
                    let (_, _, n) = ingest(&state, &keys, bodies[i % bodies.len()].clone()).await;
                    let end = Instant::now();
                    done.lock().unwrap().push((end, end - started, n));
                }
            })
        })
        .collect();
    // Warm-up: the new bucket's key is made and cached, as on a running server.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let alone_from = Instant::now();
    tokio::time::sleep(window).await;
    let alone_to = Instant::now();
    let report = custodian_server::retention::sweep(&node.state, due.sweep_at)
        .await
        .expect("sweep");
    let sweep_to = Instant::now();
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.expect("ingest task");
    }
    assert_purged(&node, &due, &report).await;
    let (alone, during) = {
        let done = done.lock().unwrap();
        (
            Window::of(&done, alone_from, alone_to),
            Window::of(&done, alone_to, sweep_to),
        )
    };
    println!(
        "{} ingest alone ({workers} tasks): {}",
        node.backend.name(),
        alone.line()
    );
    println!(
        "{} ingest during a full sweep of {records} records / {BUCKETS} buckets (sweep {:.1} s): {} = {:.2}x alone, sweeper overhead {:.0}%",
        node.backend.name(),
        during.elapsed.as_secs_f64(),
        during.line(),
        during.rate() / alone.rate(),
        (1.0 - during.rate() / alone.rate()) * 100.0
    );
    node.close().await;
}

async fn bench_backend(backend: Backend, records: usize, window: Duration) {
    let small = (records / 10).max(BUCKETS);
    let large = split(backend, records).await;
    let small_split = split(backend, small).await;
    println!(
        "{} unreadable, {records} vs {small} records over the same {BUCKETS} buckets: {:.3} s vs {:.3} s ({:.2}x for {:.0}x the records); shreds alone {:.3} s vs {:.3} s ({:.2}x); finding the due buckets {:.3} s vs {:.3} s ({:.2}x)",
        backend.name(),
        large.unreadable().as_secs_f64(),
        small_split.unreadable().as_secs_f64(),
        large.unreadable().as_secs_f64() / small_split.unreadable().as_secs_f64(),
        records as f64 / small as f64,
        large.shred.as_secs_f64(),
        small_split.shred.as_secs_f64(),
        large.shred.as_secs_f64() / small_split.shred.as_secs_f64(),
        large.find.as_secs_f64(),
        small_split.find.as_secs_f64(),
        large.find.as_secs_f64() / small_split.find.as_secs_f64(),
    );
    full_sweep(backend, records).await;
    sweep_under_ingest(backend, records, window).await;
}

fn main() {
    // `cargo bench` passes `--bench`; with harness = false there is nothing else to parse.
    let records = env("CUSTODIAN_BENCH_RETENTION_RECORDS", DEFAULT_RECORDS).max(BUCKETS);
    let window =
        Duration::from_secs(env("CUSTODIAN_BENCH_INGEST_SECS", DEFAULT_INGEST_SECS) as u64);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "custodian retention benchmark on {cores} core(s): {records} expired records over {BUCKETS} daily expiry buckets \
         ({DATA_TYPE}, ~100-byte payloads, one subject each of {SUBJECTS}), sealed and stored in batches of {RECORDS_PER_BATCH}"
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(async {
        let only = std::env::var("CUSTODIAN_BENCH_ONLY").unwrap_or_default();
        if only.is_empty() || only == "sqlite" {
            println!("\nSQLite, a fresh database per configuration");
            bench_backend(Backend::Sqlite, records, window).await;
        }
        if only.is_empty() || only == "postgres" {
            if testing::postgres_available().await {
                println!(
                    "\nPostgreSQL ({}), a fresh schema per configuration",
                    testing::postgres_url()
                );
                bench_backend(Backend::Postgres, records, window).await;
            } else {
                println!(
                    "\n*** PostgreSQL at {} is not reachable: its figures are SKIPPED ***",
                    testing::postgres_url()
                );
            }
        }
    });
}
