//! Data-subject rights benchmark: how fast a subject's records are found among many, how long
//! an access export of a subject with 1,000 records takes, and how erasure time grows with the
//! subject's record count, on SQLite and (when reachable) PostgreSQL.
//!
//! `cargo bench -p custodian --bench subjects`. Environment:
//! - `CUSTODIAN_BENCH_SUBJECT_RECORDS`: records of the large set, one subject each, spread over
//!   a hundredth as many subjects (default 10,000,000 on each backend: on 2 cores the SQLite
//!   load took ~8 min, the PostgreSQL one ~5 min, and the whole run ~18 min);
//! - `CUSTODIAN_BENCH_SUBJECT_LOOKUPS`: timed subject lookups (default 2,000);
//! - `CUSTODIAN_BENCH_SUBJECT_LOOKUP_SECS`: the most the lookups may take (default 120 s): when
//!   lookups are slow, fewer are made, and the report says how many;
//! - `CUSTODIAN_BENCH_ONLY=sqlite|postgres`: run one backend only;
//! - `CUSTODIAN_TEST_DATABASE_URL`: the PostgreSQL server (default the local one).
//!
//! Per backend, on one fresh store:
//! 1. Load: the large set (`app_log` lines with ~200-byte payloads, subjects `subject-000000`
//!    on, each record naming one subject drawn at random) plus the subjects measured below,
//!    whose records are spread at random over the same batches, as a subject's records arrive
//!    among everyone else's. The batches carry event times from 30 days ago to now in order, as
//!    a stream that arrived over the last month would (nothing expires during the run).
//!    Batches of ~1,000 are sealed by `custodian_server::ingest::prepare_batch` and stored by
//!    `Store::insert_records` with their audit entry, one task per core, no HTTP. The load
//!    time and rate are printed, with the bytes written per record (SQLite: what this process
//!    wrote to storage, `/proc/self/io`; PostgreSQL: the WAL, via `psql`) every tenth of the
//!    way; then the store settles as older data would have (SQLite: the staged subject-index
//!    entries are merged; PostgreSQL: `VACUUM ANALYZE` and a checkpoint, through `psql`).
//! 2. Lookup: `Store::list_subject_records(tenant, pseudonym, None, 100)` for random subjects
//!    of the large set, one at a time: p50, p99 and max (target: p99 under 10 ms).
//! 3. Export: `subjects::export` of a subject with 1,000 records (500 `app_log`, 500
//!    `auth_log`), the archive drained to its last byte; 5 runs, the median. The first archive
//!    is checked (manifest lists 1,000 records).
//! 4. Erasure: `subjects::erase` of subjects with 10, 100, 1,000 and 10,000 records, after one
//!    warm-up erasure. Besides the total, the time until the subject key's destruction began
//!    is read from the key store's shred log (the product stamps each shred as it starts), and
//!    a lone shred of one subject key is timed apart: together they say when the records
//!    became unreadable. The rest follows the shred: the unwrap check, the certificate,
//!    purging the rows and index entries, the answer.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use custodian_core::ids::TenantId;
use custodian_crypto::DataKeyId;
use custodian_server::audit::Actor;
use custodian_server::clock::SystemClock;
use custodian_server::keys::TenantKeys;
use custodian_server::subjects::{Asked, ErasureOutcome, ExportManifest};
use custodian_server::{AppState, ServerError};
use custodian_store::{ShredScope, StoreConfig, testing};
use jiff::{Timestamp, ToSpan};

#[path = "support/node.rs"]
mod node;

use node::{Backend, Node};

const POLICY: &str = include_str!("../../../examples/policies/default.toml");
const TENANT: &str = "acme";
const RECORDS_PER_BATCH: usize = 1000;
/// Records per subject in the large set, on average.
const RECORDS_PER_SUBJECT: usize = 100;
const DEFAULT_RECORDS_SQLITE: usize = 10_000_000;
const DEFAULT_RECORDS_POSTGRES: usize = 10_000_000;
const DEFAULT_LOOKUPS: usize = 2000;
/// The most the lookups may take, in seconds.
const DEFAULT_LOOKUP_SECS: usize = 120;
const LOOKUP_LIMIT: u32 = 100;
const EXPORT_RECORDS: usize = 1000;
const EXPORT_RUNS: usize = 5;
const ERASURE_SIZES: [usize; 4] = [10, 100, 1000, 10_000];
/// Records of the subject erased first, untimed but for the report.
const WARMUP_RECORDS: usize = 10;
/// Lone shreds of a subject key, timed apart from any erasure.
const SHRED_RUNS: usize = 5;
/// Event times lie over this many days back from now.
const EVENT_DAYS: i64 = 30;

fn env(name: &str) -> Option<usize> {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|n| *n > 0)
}

/// The server's own clock adapter: the one place allowed to read the system time.
fn now() -> Timestamp {
    custodian_core::clock::Clock::now(&SystemClock)
}

fn tenant() -> TenantId {
    TenantId::new(TENANT).expect("tenant id")
}

fn actor() -> Actor {
    Actor {
        id: "token:0123456789abcdef".to_owned(),
        request_id: Some(ulid::Ulid::new().to_string()),
        grant: None,
    }
}

/// A subject of the large set.
fn bulk_subject(n: usize) -> String {
    format!("subject-{n:06}")
}

fn export_subject() -> String {
    "subject-export-1000".to_owned()
}

fn erasure_subject(records: usize) -> String {
    format!("subject-erase-{records}")
}

/// Erased first, so no measured erasure pays for the first use of anything.
fn warmup_subject() -> String {
    "subject-erase-warmup".to_owned()
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

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

#[derive(Clone, Copy, PartialEq)]
enum DataType {
    AppLog,
    AuthLog,
}

/// One NDJSON line naming `subject`, with a ~200-byte payload and an event time up to a
/// minute before `at`.
fn line(out: &mut String, rng: &mut Rng, at: Timestamp, data_type: DataType, subject: &str) {
    let event_time = at - (rng.below(60) as i64).seconds();
    match data_type {
        DataType::AppLog => {
            let level = ["info", "info", "info", "warn", "error", "debug"][rng.below(6)];
            let method = ["GET", "GET", "POST", "PUT", "DELETE"][rng.below(5)];
            let resource = ["orders", "invoices", "carts", "profile", "search"][rng.below(5)];
            let status = [200, 200, 201, 204, 400, 404, 500][rng.below(7)];
            let _ = writeln!(
                out,
                r#"{{"type":"app_log","subjects":["{subject}"],"event_time":"{event_time}","payload":{{"level":"{level}","service":"svc-{:02}","method":"{method}","path":"/api/v1/{resource}/{}","status":{status},"latency_ms":{},"bytes":{},"msg":"request completed","trace":"{:016x}"}}}}"#,
                rng.below(40),
                rng.below(10_000_000),
                rng.below(5000),
                rng.below(200_000),
                rng.next(),
            );
        }
        DataType::AuthLog => {
            let event = [
                "login",
                "login",
                "logout",
                "password_change",
                "mfa_challenge",
            ][rng.below(5)];
            let method = ["password", "sso", "webauthn", "totp"][rng.below(4)];
            let outcome = ["success", "success", "success", "failure"][rng.below(4)];
            let _ = writeln!(
                out,
                r#"{{"type":"auth_log","subjects":["{subject}"],"event_time":"{event_time}","payload":{{"event":"{event}","method":"{method}","outcome":"{outcome}","ip":"198.51.100.{}","mfa":{},"client":"web","user_agent":"Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Firefox/128.0","session":"{:016x}"}}}}"#,
                rng.below(256),
                rng.below(2) == 0,
                rng.next(),
            );
        }
    }
}

/// One batch to load: a run of the large set and some records of the measured subjects.
struct Planned {
    bulk: usize,
    /// Index into [`Plan::special`].
    special: std::ops::Range<usize>,
}

struct Plan {
    batches: Vec<Planned>,
    /// Records of the measured subjects, in a random order.
    special: Vec<(String, DataType)>,
    subjects: usize,
}

impl Plan {
    fn new(records: usize) -> Plan {
        let subjects = (records / RECORDS_PER_SUBJECT).max(1);
        let mut special: Vec<(String, DataType)> = Vec::new();
        for i in 0..EXPORT_RECORDS {
            let t = if i % 2 == 0 {
                DataType::AppLog
            } else {
                DataType::AuthLog
            };
            special.push((export_subject(), t));
        }
        for n in ERASURE_SIZES {
            special.extend((0..n).map(|_| (erasure_subject(n), DataType::AppLog)));
        }
        special.extend((0..WARMUP_RECORDS).map(|_| (warmup_subject(), DataType::AppLog)));
        let mut rng = Rng(0x853c_49e6_748f_ea9b);
        for i in (1..special.len()).rev() {
            special.swap(i, rng.below(i + 1));
        }
        let count = records.div_ceil(RECORDS_PER_BATCH);
        let batches = (0..count)
            .map(|b| {
                let bulk = RECORDS_PER_BATCH.min(records - b * RECORDS_PER_BATCH);
                let from = b * special.len() / count;
                let to = (b + 1) * special.len() / count;
                Planned {
                    bulk,
                    special: from..to,
                }
            })
            .collect();
        Plan {
            batches,
            special,
            subjects,
        }
    }
}

impl Node {
    /// Waits for the work a store does in the background after a large load, so it is not
    /// timed as part of what follows: data a day old has long been through it.
    async fn settle(&self) {
        let started = Instant::now();
        match &self.config {
            StoreConfig::Sqlite { path } => {
                let conn = rusqlite::Connection::open_with_flags(
                    path,
                    rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
                )
                .expect("open the database to watch it");
                let mut first = None;
                loop {
                    let (rows, bytes): (i64, i64) = conn
                        .query_row(
                            "SELECT COUNT(*), COALESCE(SUM(LENGTH(entries)), 0) FROM subject_staging",
                            [],
                            |r| Ok((r.get(0)?, r.get(1)?)),
                        )
                        .expect("count staged subject entries");
                    first.get_or_insert((rows, bytes / 58));
                    if rows == 0 {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                // A few more checkpoint rounds of the maintenance thread.
                tokio::time::sleep(Duration::from_secs(2)).await;
                let (rows, entries) = first.unwrap_or_default();
                let size = std::fs::metadata(path).map_or(0, |m| m.len());
                println!(
                    "  settled in {:.1} s (staged subject-index entries at the end of the load: {entries} in {rows} batch rows, merged by the maintenance thread); database file {:.2} GB",
                    started.elapsed().as_secs_f64(),
                    size as f64 / 1e9
                );
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
                let size = psql(&format!(
                    "SELECT pg_total_relation_size('{schema}.records') + pg_total_relation_size('{schema}.record_subjects')"
                ))
                .and_then(|s| s.parse::<u64>().ok());
                println!(
                    "  settled in {:.1} s (VACUUM ANALYZE, CHECKPOINT); records + record_subjects {}",
                    started.elapsed().as_secs_f64(),
                    size.map_or("size unknown".to_owned(), |s| format!(
                        "{:.2} GB",
                        s as f64 / 1e9
                    ))
                );
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
/// it with its audit entry. Returns the record count.
async fn ingest(state: &Arc<AppState>, keys: &Arc<TenantKeys>, body: Vec<u8>) -> usize {
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
    let audit = state
        .audit
        .entry(&state.audit.ingest_event(&actor(), &tenant, &batch))
        .await
        .expect("audit entry");
    let stored = batch.records.len();
    state
        .store
        .insert_records(&tenant, batch.records, None, audit)
        .await
        .expect("insert_records");
    stored
}

/// Loads the plan, one task per core, printing progress every tenth of it.
async fn load(node: &Node, plan: Plan, records: usize) {
    // Every subject's key is made first, from one task, so the load measures sealing and
    // storing rather than key creation (a subject's first record makes its key).
    let key_started = Instant::now();
    let mut names: Vec<String> = (0..plan.subjects).map(bulk_subject).collect();
    names.push(export_subject());
    names.extend(ERASURE_SIZES.iter().map(|n| erasure_subject(*n)));
    names.push(warmup_subject());
    let subjects: Vec<DataKeyId> = names
        .iter()
        .map(|s| DataKeyId::Subject(node.keys.pseudonym(s)))
        .collect();
    for chunk in subjects.chunks(RECORDS_PER_BATCH) {
        node.state
            .keys
            .data_keys(&tenant(), chunk, true, "")
            .await
            .expect("subject keys");
    }
    println!(
        "  {} subject keys made in {:.1} s (not counted in the load)",
        subjects.len(),
        key_started.elapsed().as_secs_f64()
    );
    let total = records + plan.special.len();
    let count = plan.batches.len();
    let plan = Arc::new(plan);
    let next = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let base = now() - 1.minute();
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    let backend = node.backend;
    let written_before = written(backend);
    // The last progress line: seconds since the start, records, bytes written.
    let mark = Arc::new(std::sync::Mutex::new((0.0, 0, written_before)));
    let started = Instant::now();
    let tasks: Vec<_> = (0..workers)
        .map(|_| {
            let (plan, next, done, mark) = (plan.clone(), next.clone(), done.clone(), mark.clone());
            let (state, keys) = (node.state.clone(), node.keys.clone());
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(batch) = plan.batches.get(i) else {
                        break;
                    };
                    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ (i as u64 + 1));
                    // Batches arrive over the last EVENT_DAYS days in order, each with the
                    // event times of its moment, as a live stream's would.
                    let behind = EVENT_DAYS * 86_400 * (count - 1 - i) as i64 / count as i64;
                    let at = base - behind.seconds();
                    let n = batch.bulk + batch.special.len();
                    let mut body = String::with_capacity(n * 330);
                    for _ in 0..batch.bulk {
                        let subject = bulk_subject(rng.below(plan.subjects));
                        line(&mut body, &mut rng, at, DataType::AppLog, &subject);
                    }
                    for (subject, t) in &plan.special[batch.special.clone()] {
                        line(&mut body, &mut rng, at, *t, subject);
                    }
                    let stored = ingest(&state, &keys, body.into_bytes()).await;
                    assert_eq!(stored, n);
                    let before = done.fetch_add(n, Ordering::Relaxed);
                    let tenth = total.div_ceil(10);
                    if (before + n) / tenth > before / tenth && before + n < total {
                        let secs = started.elapsed().as_secs_f64();
                        let written = written(backend);
                        let mut last = mark.lock().unwrap();
                        let (at, records, bytes) = *last;
                        *last = (secs, before + n, written);
                        drop(last);
                        println!(
                            "    {:>3}%: {} records in {secs:.0} s ({:.0} records/s so far; since the last line {:.0} records/s{})",
                            (before + n) * 100 / total,
                            before + n,
                            (before + n) as f64 / secs,
                            (before + n - records) as f64 / (secs - at),
                            per_record(bytes, written, before + n - records, backend),
                        );
                    }
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("load task");
    }
    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "{} load: {total} records ({records} over {} subjects + {} of the measured subjects) in {elapsed:.1} s = {:.0} records/s ({workers} tasks{})",
        node.backend.name(),
        plan.subjects,
        plan.special.len(),
        total as f64 / elapsed,
        per_record(written_before, written(backend), total, backend),
    );
}

/// Bytes written so far: for SQLite what this process sent to storage (`/proc/self/io`), for
/// PostgreSQL the WAL position (via `psql`, when installed; its data files are written later
/// by the checkpointer).
fn written(backend: Backend) -> Option<u64> {
    match backend {
        Backend::Sqlite => std::fs::read_to_string("/proc/self/io")
            .ok()?
            .lines()
            .find_map(|l| l.strip_prefix("write_bytes: "))?
            .trim()
            .parse()
            .ok(),
        Backend::Postgres => psql("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::bigint")?
            .parse()
            .ok(),
    }
}

/// `; X KiB written per record` between two readings of [`written`], or nothing.
fn per_record(before: Option<u64>, after: Option<u64>, records: usize, backend: Backend) -> String {
    let what = match backend {
        Backend::Sqlite => "written to disk",
        Backend::Postgres => "of WAL",
    };
    match (before, after) {
        (Some(b), Some(a)) if records > 0 => format!(
            "; {:.1} KiB {what} per record",
            a.saturating_sub(b) as f64 / 1024.0 / records as f64
        ),
        _ => String::new(),
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// The `q`-quantile of sorted durations (nearest rank).
fn quantile(sorted: &[Duration], q: f64) -> Duration {
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// Lookups of random subjects of the large set, one at a time, for at most `budget`.
async fn lookups(node: &Node, subjects: usize, lookups: usize, budget: Duration) {
    let tenant = tenant();
    let mut rng = Rng(0xda94_2042_e4dd_58b5);
    let mut times = Vec::with_capacity(lookups);
    let mut found = 0usize;
    let started = Instant::now();
    for _ in 0..lookups {
        if started.elapsed() > budget {
            println!(
                "  (lookups stopped after {} of {lookups}: the {} s budget is spent; CUSTODIAN_BENCH_SUBJECT_LOOKUP_SECS)",
                times.len(),
                budget.as_secs()
            );
            break;
        }
        let pseudonym = node.keys.pseudonym(&bulk_subject(rng.below(subjects)));
        let started = Instant::now();
        let page = node
            .state
            .store
            .list_subject_records(&tenant, &pseudonym, None, LOOKUP_LIMIT)
            .await
            .expect("list_subject_records");
        times.push(started.elapsed());
        assert!(page.len() <= LOOKUP_LIMIT as usize);
        assert!(
            page.iter().all(|r| r.key_subjects.contains(&pseudonym)),
            "a listed record names another subject"
        );
        found += page.len();
    }
    times.sort();
    let p99 = quantile(&times, 0.99);
    let lookups = times.len();
    println!(
        "{} subject lookup (list_subject_records, first page of up to {LOOKUP_LIMIT}), {lookups} random subjects of {subjects}: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms, mean {:.2} ms; {:.1} records per lookup; target p99 < 10 ms: {}",
        node.backend.name(),
        ms(quantile(&times, 0.5)),
        ms(p99),
        ms(*times.last().expect("lookups")),
        ms(times.iter().sum::<Duration>()) / lookups as f64,
        found as f64 / lookups as f64,
        if p99 < Duration::from_millis(10) {
            "met"
        } else {
            "MISSED"
        },
    );
}

/// Access exports of the subject with [`EXPORT_RECORDS`] records, drained to the last byte.
async fn exports(node: &Node) {
    let mut times = Vec::new();
    let mut sizes = Vec::new();
    for run in 0..EXPORT_RUNS {
        let started = Instant::now();
        let (_request, mut rx) = custodian_server::subjects::export(
            node.state.clone(),
            actor(),
            tenant(),
            &export_subject(),
            &Asked {
                kind: "access",
                reference: "BENCH-1",
                reason: "bench",
            },
        )
        .await
        .expect("export");
        let mut archive = Vec::new();
        while let Some(chunk) = rx.recv().await {
            archive.extend_from_slice(&chunk.expect("export chunk"));
        }
        times.push(started.elapsed());
        sizes.push(archive.len());
        if run == 0 {
            check_archive(&archive);
        }
    }
    assert!(sizes.iter().all(|s| *s == sizes[0]), "archive sizes differ");
    let bytes = sizes[0];
    let med = median(times.clone());
    println!(
        "{} export of a subject with {EXPORT_RECORDS} records (2 data types): median {:.3} s of {EXPORT_RUNS} runs (min {:.3} s, max {:.3} s), {bytes} bytes = {:.2} MB/s, {:.0} records/s",
        node.backend.name(),
        med.as_secs_f64(),
        times.iter().min().expect("runs").as_secs_f64(),
        times.iter().max().expect("runs").as_secs_f64(),
        bytes as f64 / 1e6 / med.as_secs_f64(),
        EXPORT_RECORDS as f64 / med.as_secs_f64(),
    );
}

/// The archive holds the manifest, and the manifest every record of the subject.
fn check_archive(archive: &[u8]) {
    let mut tar = tar::Archive::new(archive);
    let mut manifest = None;
    for entry in tar.entries().expect("tar entries") {
        let mut entry = entry.expect("tar entry");
        if entry.path().expect("entry path").to_str() == Some("manifest.json") {
            let mut text = Vec::new();
            std::io::Read::read_to_end(&mut entry, &mut text).expect("manifest");
            manifest = Some(serde_json::from_slice::<ExportManifest>(&text).expect("manifest"));
        }
    }
    let manifest = manifest.expect("the archive has a manifest");
    let records: u64 = manifest.files.iter().filter_map(|f| f.records).sum();
    assert_eq!(records, EXPORT_RECORDS as u64, "every record exported");
}

/// The lone shred of a fresh subject key, timed: the key-destruction step of an erasure.
async fn lone_shreds(node: &Node) -> Duration {
    let tenant = tenant();
    let mut times = Vec::new();
    for i in 0..SHRED_RUNS {
        let id = DataKeyId::Subject(node.keys.pseudonym(&format!("subject-shred-probe-{i}")));
        node.state
            .keys
            .data_keys(&tenant, std::slice::from_ref(&id), true, "")
            .await
            .expect("probe key");
        let started = Instant::now();
        let destroyed = node
            .state
            .keys
            .shred(&tenant, ShredScope::Keys(vec![id.encode()]))
            .await
            .expect("shred");
        times.push(started.elapsed());
        assert_eq!(destroyed.len(), 1);
    }
    median(times)
}

struct Erased {
    records: usize,
    total: Duration,
    /// From the call until the shred of the subject key began (the shred log's stamp).
    before_shred: Duration,
}

/// Erases `subject`, who has `n` records, and checks the outcome; returns the time taken and
/// the time until the shred of the subject key began.
async fn erase_one(node: &Node, subject: &str, n: usize) -> Erased {
    let tenant = tenant();
    let pseudonym = node.keys.pseudonym(subject);
    let started_at = now();
    let started = Instant::now();
    let (_request, outcome) = custodian_server::subjects::erase(
        &node.state,
        &actor(),
        &tenant,
        subject,
        &Asked {
            kind: "erasure",
            reference: "BENCH-2",
            reason: "bench",
        },
    )
    .await
    .expect("erase");
    let total = started.elapsed();
    match outcome {
        ErasureOutcome::Erased {
            erased: count,
            anonymised: 0,
            held,
            ..
        } if held.is_empty() => assert_eq!(count, n as u64, "every record erased"),
        ErasureOutcome::Erased {
            erased: count,
            anonymised,
            ..
        } => panic!("erased {count}, anonymised {anonymised} or held some of {n}"),
        ErasureOutcome::AlreadyErased { .. } => panic!("{subject} was already erased"),
        ErasureOutcome::Refused { .. } => panic!("erasure of {subject} refused"),
        ErasureOutcome::Scheduled { .. } => {
            panic!("erasure of {subject} scheduled: its data types have no cancel window")
        }
    }
    // Untimed: the key is gone and so are the rows.
    match node
        .state
        .keys
        .data_keys(&tenant, &[DataKeyId::Subject(pseudonym)], false, "")
        .await
    {
        Err(ServerError::KeyDestroyed { .. }) => {}
        Ok(_) => panic!("the key of {subject} still unwraps after its erasure"),
        Err(e) => panic!("the key of {subject}: {e}"),
    }
    let left = node
        .state
        .store
        .list_subject_records(&tenant, &pseudonym, None, 10)
        .await
        .expect("list_subject_records");
    assert!(left.is_empty(), "records of {subject} left after erasure");
    let key = DataKeyId::Subject(pseudonym).encode();
    let log = node
        .state
        .keys
        .store()
        .snapshot()
        .await
        .expect("key store")
        .shred_log;
    let at = log
        .iter()
        .find(|e| e.tenant == tenant && e.id == key)
        .expect("the subject key in the shred log")
        .at;
    Erased {
        records: n,
        total,
        before_shred: at.duration_since(started_at).unsigned_abs(),
    }
}

/// Erasure of each measured subject, smallest first, after a warm-up erasure.
async fn erasures(node: &Node) {
    let warmup = erase_one(node, &warmup_subject(), WARMUP_RECORDS).await;
    println!(
        "{} first erasure since start (warm-up, {WARMUP_RECORDS} records, not compared): {:.1} ms, shred began after {:.1} ms",
        node.backend.name(),
        ms(warmup.total),
        ms(warmup.before_shred)
    );
    let mut erased = Vec::new();
    for n in ERASURE_SIZES {
        erased.push(erase_one(node, &erasure_subject(n), n).await);
    }
    let shred = lone_shreds(node).await;
    for e in &erased {
        let after = e.total.saturating_sub(e.before_shred);
        println!(
            "{} erasure of a subject with {:>5} records: {:>8.1} ms total = {:>8.1} ms before the shred of the subject key began (request logged, holds checked, every record listed) + {:>7.1} ms from then on (the shred, then the unwrap check, the certificate, purging the rows, the answer: {:.3} ms per record)",
            node.backend.name(),
            e.records,
            ms(e.total),
            ms(e.before_shred),
            ms(after),
            ms(after) / e.records as f64,
        );
    }
    let (small, large) = (&erased[0], &erased[erased.len() - 1]);
    let unreadable = |e: &Erased| e.before_shred + shred;
    let after = |e: &Erased| e.total.saturating_sub(e.before_shred);
    println!(
        "{} erasure, {} vs {} records ({:.0}x the records): total {:.1} ms vs {:.1} ms = {:.1}x; records unreadable after ~{:.1} ms vs ~{:.1} ms = {:.1}x (until the shred began, plus a lone shred); from the shred on {:.1} ms vs {:.1} ms = {:.1}x; the key destruction itself (a lone shred of one subject key, median of {SHRED_RUNS}) {:.2} ms whatever the count",
        node.backend.name(),
        large.records,
        small.records,
        large.records as f64 / small.records as f64,
        ms(large.total),
        ms(small.total),
        large.total.as_secs_f64() / small.total.as_secs_f64(),
        ms(unreadable(large)),
        ms(unreadable(small)),
        unreadable(large).as_secs_f64() / unreadable(small).as_secs_f64(),
        ms(after(large)),
        ms(after(small)),
        after(large).as_secs_f64() / after(small).as_secs_f64(),
        ms(shred),
    );
}

async fn bench_backend(backend: Backend, records: usize, lookup_count: usize, budget: Duration) {
    let node = Node::fresh(backend).await;
    let plan = Plan::new(records);
    let subjects = plan.subjects;
    load(&node, plan, records).await;
    node.settle().await;
    lookups(&node, subjects, lookup_count, budget).await;
    exports(&node).await;
    erasures(&node).await;
    node.close().await;
}

fn main() {
    // `cargo bench` passes `--bench`; with harness = false there is nothing else to parse.
    let records = env("CUSTODIAN_BENCH_SUBJECT_RECORDS");
    let lookup_count = env("CUSTODIAN_BENCH_SUBJECT_LOOKUPS").unwrap_or(DEFAULT_LOOKUPS);
    let budget = Duration::from_secs(
        env("CUSTODIAN_BENCH_SUBJECT_LOOKUP_SECS").unwrap_or(DEFAULT_LOOKUP_SECS) as u64,
    );
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let special = EXPORT_RECORDS + ERASURE_SIZES.iter().sum::<usize>() + WARMUP_RECORDS;
    let set = |backend_default: usize| match records {
        Some(n) => format!("{n} records (CUSTODIAN_BENCH_SUBJECT_RECORDS)"),
        None => format!("{backend_default} records (the default)"),
    };
    println!(
        "custodian data-subject rights benchmark on {cores} core(s): a large set of ~{RECORDS_PER_SUBJECT} records per subject \
         (SQLite {}, PostgreSQL {}; app_log, ~200-byte payloads, one subject each) plus {special} records of the measured subjects, \
         sealed and stored in batches of ~{RECORDS_PER_BATCH}; {lookup_count} lookups",
        set(DEFAULT_RECORDS_SQLITE),
        set(DEFAULT_RECORDS_POSTGRES),
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(async {
        let only = std::env::var("CUSTODIAN_BENCH_ONLY").unwrap_or_default();
        if only.is_empty() || only == "sqlite" {
            println!("\nSQLite, one fresh database");
            bench_backend(
                Backend::Sqlite,
                records.unwrap_or(DEFAULT_RECORDS_SQLITE),
                lookup_count,
                budget,
            )
            .await;
        }
        if only.is_empty() || only == "postgres" {
            if testing::postgres_available().await {
                println!(
                    "\nPostgreSQL ({}), one fresh schema",
                    testing::postgres_url()
                );
                bench_backend(
                    Backend::Postgres,
                    records.unwrap_or(DEFAULT_RECORDS_POSTGRES),
                    lookup_count,
                    budget,
                )
                .await;
            } else {
                println!(
                    "\n*** PostgreSQL at {} is not reachable: its figures are SKIPPED ***",
                    testing::postgres_url()
                );
            }
        }
    });
}
