//! Audit append benchmark through the server's audit service: batches of 1,000 typical events
//! (a record read: one subject pseudonym, one record id, a request id) appended to one tenant
//! log, each batch one transaction. Two ways, alternated on one store so disk drift falls on
//! both alike:
//! - clear: canonical encoding, leaf hash, append (the store's own rate);
//! - sealed: the same plus sealing each body under the log's period key, as the server does.
//!
//! The ratio is what sealing bodies for retention costs the append path. Target: ≥ 100,000
//! events/s on SQLite. `cargo bench -p custodian --bench audit`; `CUSTODIAN_BENCH_ONLY=sqlite|
//! postgres` runs one backend.

use std::sync::Arc;
use std::time::{Duration, Instant};

use custodian_core::audit::{AuditEvent, Decision};
use custodian_core::policy::Policy;
use custodian_server::clock::SystemClock;
use custodian_server::{AppState, ServerConfig};
use custodian_store::{AuditEntry, AuditLog, StoreConfig, testing};

const POLICY: &str = include_str!("../../../examples/policies/default.toml");
const BATCH: usize = 1000;
const BATCHES_PER_ROUND: usize = 20;
const ROUNDS: usize = 5;

fn events(state: &AppState, n: usize) -> Vec<AuditEvent> {
    let now = custodian_core::clock::Clock::now(&SystemClock);
    (0..n)
        .map(|i| {
            let mut e = state.audit.event(
                &custodian_server::audit::Actor {
                    id: "token:0123456789abcdef".into(),
                    request_id: Some(ulid::Ulid::new().to_string()),
                    grant: None,
                },
                "records.read",
                Some(&"acme".parse().expect("tenant")),
                Decision::Allow,
            );
            e.time = now;
            e.subjects = vec![format!("{i:064x}")];
            e.objects = vec![ulid::Ulid::new().to_string()];
            e
        })
        .collect()
}

/// One round: `BATCHES_PER_ROUND` batches appended, sealed or in clear; its duration.
async fn round(state: &AppState, log: &AuditLog, sealed: bool) -> Duration {
    let batches: Vec<Vec<AuditEvent>> = (0..BATCHES_PER_ROUND)
        .map(|_| events(state, BATCH))
        .collect();
    let started = Instant::now();
    for batch in batches {
        let mut entries = Vec::with_capacity(batch.len());
        for event in &batch {
            entries.push(if sealed {
                state.audit.seal(log, event).await.expect("seal")
            } else {
                AuditEntry::clear(event.canonical_bytes())
            });
        }
        state
            .store
            .append_audit(log, entries)
            .await
            .expect("append");
    }
    started.elapsed()
}

async fn run(name: &str, store_config: StoreConfig) {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = ServerConfig {
        listen: "127.0.0.1:0".parse().expect("address"),
        data_dir: dir.path().to_owned(),
        database_url: None,
        body_limit: custodian_server::DEFAULT_BODY_LIMIT,
    };
    let policy = Policy::parse("default.toml", POLICY).expect("default policy is valid");
    let state: Arc<AppState> =
        custodian_server::build_state(policy, &config, &store_config, Arc::new(SystemClock))
            .await
            .expect("server state");
    let log = AuditLog::Tenant("acme".parse().expect("tenant"));
    round(&state, &log, true).await;
    let mut times = [Vec::new(), Vec::new()];
    for r in 0..2 * ROUNDS {
        let sealed = r % 2 == 1;
        times[usize::from(sealed)].push(round(&state, &log, sealed).await);
    }
    let events = (BATCH * BATCHES_PER_ROUND) as f64;
    let [clear, sealed] = times.map(|mut t| {
        t.sort();
        events / t[t.len() / 2].as_secs_f64()
    });
    println!("{name}: clear   {clear:>9.0} events/s (median of {ROUNDS} rounds)");
    println!("{name}: sealed  {sealed:>9.0} events/s (median of {ROUNDS} rounds)");
    println!(
        "{name}: sealing bodies costs {:+.1}% of append throughput ({:.2} us per event); target >= 100000 events/s",
        (clear / sealed - 1.0) * 100.0,
        (1.0 / sealed - 1.0 / clear) * 1e6
    );
}

#[tokio::main]
async fn main() {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "audit append through the audit service, {cores} core(s), batches of {BATCH} events, {BATCHES_PER_ROUND} batches per round"
    );
    let only = std::env::var("CUSTODIAN_BENCH_ONLY").unwrap_or_default();
    if only.is_empty() || only == "sqlite" {
        let dir = tempfile::tempdir().expect("temp dir");
        run(
            "SQLite",
            StoreConfig::Sqlite {
                path: custodian_store::sqlite_path(dir.path()),
            },
        )
        .await;
    }
    if (only.is_empty() || only == "postgres") && testing::postgres_available().await {
        let schema = testing::unique_schema("bench_audit_sealed");
        run(
            "PostgreSQL",
            StoreConfig::Postgres {
                url: testing::postgres_url(),
                schema: Some(schema.clone()),
            },
        )
        .await;
        testing::drop_schema(&schema).await;
    }
}
