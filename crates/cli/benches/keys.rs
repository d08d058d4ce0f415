//! Key-hierarchy benchmark, on SQLite in a temp dir with the development root key:
//! - raw AES-256-GCM throughput of the chosen library (aws-lc-rs), for context;
//! - rotating a tenant with `CUSTODIAN_BENCH_KEYS` (default 100,000) wrapped keys while a
//!   second node reads keys it has never cached (each read a key-store lookup and an unwrap
//!   under whichever KEK version wraps it), counting reads served and failed during it;
//! - shredding one expiry bucket holding 1,000 records and one holding
//!   `CUSTODIAN_BENCH_SHRED_RECORDS` (default 1,000,000): the time must not grow with it.
//!
//! `cargo bench -p custodian --bench keys`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use custodian_core::ids::{Class, DataTypeName, RecordId, TenantId};
use custodian_core::policy::Policy;
use custodian_crypto::DataKeyId;
use custodian_server::clock::SystemClock;
use custodian_server::{AppState, ServerConfig};
use custodian_store::{ShredScope, StoredRecord};

const POLICY: &str = include_str!("../../../examples/policies/default.toml");

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

async fn node(dir: &std::path::Path) -> Arc<AppState> {
    let config = ServerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.to_owned(),
        database_url: None,
        body_limit: custodian_server::DEFAULT_BODY_LIMIT,
    };
    let policy = Policy::parse("default.toml", POLICY).unwrap();
    custodian_server::build_state(
        policy,
        &config,
        &config.store_config(),
        Arc::new(SystemClock),
    )
    .await
    .unwrap()
}

fn aes_gcm() {
    let key = [7u8; 32];
    for size in [1024usize, 16 * 1024] {
        let plain = vec![0x5au8; size];
        let total: usize = 256 * 1024 * 1024;
        let n = total / size;
        let start = Instant::now();
        for _ in 0..n {
            std::hint::black_box(custodian_crypto::seal_blob(&key, b"aad", &plain).unwrap());
        }
        let secs = start.elapsed().as_secs_f64();
        println!(
            "AES-256-GCM seal, {size:>6} B messages, 1 thread: {:8.0} MB/s ({:.0} messages/s)",
            total as f64 / secs / 1e6,
            n as f64 / secs
        );
    }
}

fn subject(i: u64) -> DataKeyId {
    let mut id = [0u8; 32];
    id[..8].copy_from_slice(&i.to_be_bytes());
    id[8..16].copy_from_slice(&i.wrapping_mul(0x9e37_79b9_7f4a_7c15).to_be_bytes());
    DataKeyId::Subject(id)
}

async fn rotation(dir: &std::path::Path, tenant: &TenantId, keys: u64) {
    let writer = node(dir).await;
    let start = Instant::now();
    for chunk in (0..keys).collect::<Vec<_>>().chunks(1000) {
        let ids: Vec<DataKeyId> = chunk.iter().map(|i| subject(*i)).collect();
        writer.keys.data_keys(tenant, &ids, true, "").await.unwrap();
    }
    println!(
        "created {keys} wrapped subject keys in {:.2} s",
        start.elapsed().as_secs_f64()
    );
    // The reader is another node: nothing it reads is in its cache yet.
    let reader = node(dir).await;
    reader.keys.tenant(tenant).await.unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let (served, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let reads = {
        let (reader, stop, served, failed, tenant) = (
            reader.clone(),
            stop.clone(),
            served.clone(),
            failed.clone(),
            tenant.clone(),
        );
        tokio::spawn(async move {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                match reader
                    .keys
                    .data_keys(&tenant, &[subject(i % keys)], false, "")
                    .await
                {
                    Ok(_) => served.fetch_add(1, Ordering::Relaxed),
                    Err(e) => {
                        eprintln!("read failed during rotation: {e}");
                        failed.fetch_add(1, Ordering::Relaxed)
                    }
                };
                i += 7919;
            }
        })
    };
    let start = Instant::now();
    let rotation = writer.keys.rotate(tenant).await.unwrap();
    let secs = start.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    reads.await.unwrap();
    println!(
        "rotation v{} -> v{}: {} keys rewrapped in {secs:.2} s ({:.0} keys/s); old versions destroyed {:?}",
        rotation.from_version,
        rotation.to_version,
        rotation.rewrapped,
        rotation.rewrapped as f64 / secs,
        rotation.destroyed_versions
    );
    println!(
        "  reads on another node during the rotation: {} served, {} failed",
        served.load(Ordering::Relaxed),
        failed.load(Ordering::Relaxed)
    );
}

async fn shred(dir: &std::path::Path, tenant: &TenantId, records: usize, bucket: &str) {
    let state = node(dir).await;
    let data_type = DataTypeName::new("app_log").unwrap();
    let key = DataKeyId::Bucket {
        data_type: data_type.clone(),
        bucket: bucket.to_owned(),
    };
    state
        .keys
        .data_keys(tenant, std::slice::from_ref(&key), true, "")
        .await
        .unwrap();
    let now = custodian_core::clock::Clock::now(&SystemClock);
    let start = Instant::now();
    let mut left = records;
    while left > 0 {
        let n = left.min(10_000);
        let batch: Vec<StoredRecord> = (0..n)
            .map(|_| StoredRecord {
                id: RecordId::from_ulid(ulid::Ulid::new()),
                data_type: data_type.clone(),
                class: Class::Internal,
                event_time: now,
                ingest_time: now,
                expires_at: None,
                pending_event: None,
                event_ref: None,
                key_bucket: bucket.to_owned(),
                key_subjects: Vec::new(),
                // The shred never reads records; 100 bytes stand in for a sealed payload.
                sealed: vec![0xa5; 100],
            })
            .collect();
        state
            .store
            .insert_records(
                tenant,
                batch,
                None,
                custodian_store::AuditEntry::clear(b"bench".to_vec()),
            )
            .await
            .unwrap();
        left -= n;
    }
    let filled = start.elapsed().as_secs_f64();
    // Let the data store's background checkpoint of those writes finish first: it shares the
    // disk's fsyncs with the key store, and would time the disk rather than the shred.
    tokio::time::sleep(std::time::Duration::from_secs(5)).await;
    let start = Instant::now();
    let destroyed = state
        .keys
        .shred(tenant, ShredScope::Keys(vec![key.encode()]))
        .await
        .unwrap();
    let micros = start.elapsed().as_secs_f64() * 1e6;
    assert_eq!(destroyed.len(), 1);
    println!(
        "shred of a bucket of {records:>9} records: {micros:8.0} µs (records written in {filled:.1} s, not timed)"
    );
}

fn main() {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!("custodian key benchmark on {cores} cores");
    aes_gcm();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let tenant = TenantId::new("acme").unwrap();
        rotation(
            dir.path(),
            &tenant,
            env("CUSTODIAN_BENCH_KEYS", 100_000) as u64,
        )
        .await;
        let globex = TenantId::new("globex").unwrap();
        shred(dir.path(), &globex, 1_000, "d2027-01-01").await;
        shred(
            dir.path(),
            &globex,
            env("CUSTODIAN_BENCH_SHRED_RECORDS", 1_000_000),
            "d2027-01-02",
        )
        .await;
    });
}
