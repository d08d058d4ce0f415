//! Audit append rate with batching, on SQLite and (when reachable) PostgreSQL: batches of
//! 1,000 events of 200 bytes appended to one log, each batch one transaction (entries, the
//! subtree nodes they complete, and the head), target ≥ 100,000 events/s on SQLite.
//! Bodies are appended in clear here: sealing them under period keys is measured with the
//! rest of the server's audit path in the `ingest` bench of the `custodian` package.
//! `cargo bench -p custodian-store --bench audit_append`.

use std::time::Instant;

use custodian_store::{AuditEntry, AuditLog, PostgresStore, SqliteStore, Store, testing};

const BATCH: usize = 1000;
const BATCHES: usize = 100;

async fn run(name: &str, store: &dyn Store) {
    let log = AuditLog::System;
    let batches: Vec<Vec<Vec<u8>>> = (0..BATCHES)
        .map(|b| {
            (0..BATCH)
                .map(|i| {
                    let mut e = format!("{{\"batch\":{b},\"i\":{i},\"action\":\"records.read\"}}")
                        .into_bytes();
                    e.resize(200, b' ');
                    e
                })
                .collect()
        })
        .collect();
    let started = Instant::now();
    for batch in batches {
        // Leaf hashing is part of appending: it stays inside the timed loop.
        let entries = batch.into_iter().map(AuditEntry::clear).collect();
        store.append_audit(&log, entries).await.expect("append");
    }
    let secs = started.elapsed().as_secs_f64();
    let events = (BATCH * BATCHES) as f64;
    println!(
        "{name}: {:.0} events/s ({} batches of {BATCH} in {secs:.2}s)",
        events / secs,
        BATCHES
    );
}

#[tokio::main]
async fn main() {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!("audit append benchmark on {cores} core(s)");
    let dir = tempfile::tempdir().expect("temp dir");
    let sqlite = SqliteStore::open(&dir.path().join("bench.db"))
        .await
        .expect("sqlite");
    run("SQLite (synchronous=FULL)", &sqlite).await;
    if testing::postgres_available().await {
        let schema = testing::unique_schema("bench_audit");
        let pg = PostgresStore::connect(&testing::postgres_url(), Some(&schema))
            .await
            .expect("postgres");
        run("PostgreSQL", &pg).await;
        testing::drop_schema(&schema).await;
    }
}
