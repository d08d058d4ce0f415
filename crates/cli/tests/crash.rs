//! Crash durability of the real binary: a record whose batch was acknowledged (200) must read
//! back, byte for byte, after the server process is killed with SIGKILL mid-ingest and started
//! again on the same data. Three kill/restart cycles per backend; acknowledged ids accumulate
//! across cycles and every one of them is checked after every restart.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::value::RawValue;

mod process;

use process::{Backend, Server};

const TENANT: &str = "acme";
const CYCLES: usize = 3;
const CLIENTS: usize = 4;
const MAX_BATCH: u64 = 50;
const PAYLOAD_BYTES: usize = 1024;
const VERIFY_TASKS: usize = 8;
const LOG_FILTER: &str = "info,tower_http=warn";

/// The server's own clock adapter: the one place allowed to read the system time.
fn now() -> jiff::Timestamp {
    custodian_core::clock::Clock::now(&custodian_server::clock::SystemClock)
}

/// xorshift64*: enough randomness for batch sizes, delays and payloads, no extra dependency.
struct Rng(u64);

impl Rng {
    fn seeded() -> Rng {
        Rng((ulid::Ulid::new().random() as u64) | 1)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn range(&mut self, lo: u64, hi_inclusive: u64) -> u64 {
        lo + self.next() % (hi_inclusive - lo + 1)
    }
}

/// What was sent for one acknowledged record.
#[derive(Clone, Debug)]
struct Sent {
    data_type: &'static str,
    subject: String,
    payload: String,
}

#[derive(Deserialize)]
struct Accepted {
    accepted: usize,
    ids: Vec<String>,
}

#[derive(Deserialize)]
struct ReadBack {
    id: String,
    #[serde(rename = "type")]
    data_type: String,
    subjects: Vec<String>,
    payload: Box<RawValue>,
}

/// A ~1 KiB JSON object with a marker no other record has, and text that exercises escapes and
/// non-ASCII, so an exact read-back means the bytes survived.
fn payload(rng: &mut Rng, marker: &str) -> String {
    const ALPHABET: &[char] = &[
        'a', 'b', 'c', 'd', 'e', 'f', 'x', 'y', 'z', '0', '7', ' ', '"', '\\', '\n', 'é', 'ü', '€',
        '✓', '/',
    ];
    let mut text = String::new();
    while text.len() < PAYLOAD_BYTES - 160 {
        text.push(ALPHABET[(rng.next() % ALPHABET.len() as u64) as usize]);
    }
    let value = serde_json::json!({
        "marker": marker,
        "seq": rng.next() % 1_000_000,
        "amount": (rng.next() % 100_000) as f64 / 100.0,
        "flags": [rng.next().is_multiple_of(2), null, "x"],
        "text": text,
    });
    serde_json::to_string(&value).expect("serialise payload")
}

struct Batch {
    body: String,
    sent: Vec<Sent>,
}

fn batch(rng: &mut Rng, tag: &str, seq: u64) -> Batch {
    let n = rng.range(1, MAX_BATCH);
    let event_time = now().to_string();
    let mut body = String::new();
    let mut sent = Vec::with_capacity(n as usize);
    for i in 0..n {
        let data_type = if rng.next().is_multiple_of(2) {
            "app_log"
        } else {
            "customer_record"
        };
        let marker = format!("{tag}-{seq}-{i}-{:016x}", rng.next());
        let subject = format!("subject-{}", rng.next() % 500);
        let payload = payload(rng, &marker);
        body.push_str(&format!(
            r#"{{"type":"{data_type}","subjects":["{subject}"],"event_time":"{event_time}","payload":{payload}}}"#
        ));
        body.push('\n');
        sent.push(Sent {
            data_type,
            subject,
            payload,
        });
    }
    Batch { body, sent }
}

#[derive(Default)]
struct Ledger {
    /// Every acknowledged record, over all cycles.
    acked: Mutex<Vec<(String, Sent)>>,
    batches: AtomicUsize,
    /// Failures seen while the server was meant to be up.
    unexpected: Mutex<Vec<String>>,
}

/// One client: sends batches until `stop`, recording acknowledged ids with what was sent.
async fn ingest_client(
    base: String,
    token: String,
    tag: String,
    stop: Arc<AtomicBool>,
    in_flight: Arc<AtomicUsize>,
    ledger: Arc<Ledger>,
) {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .expect("http client");
    let mut rng = Rng::seeded();
    let url = format!("{base}/v1/tenants/{TENANT}/records");
    let mut seq = 0u64;
    while !stop.load(Ordering::SeqCst) {
        seq += 1;
        let b = batch(&mut rng, &tag, seq);
        in_flight.fetch_add(1, Ordering::SeqCst);
        let result = http
            .post(&url)
            .bearer_auth(&token)
            .header("content-type", "application/x-ndjson")
            .body(b.body)
            .send()
            .await;
        // A response is acknowledged only once its whole body has arrived and parses.
        let outcome = match result {
            Ok(r) if r.status() == reqwest::StatusCode::OK => match r.json::<Accepted>().await {
                Ok(a) => Ok(a),
                Err(e) => Err(format!("200 with unreadable body: {e}")),
            },
            Ok(r) => {
                let status = r.status();
                Err(format!(
                    "status {status}: {}",
                    r.text().await.unwrap_or_default()
                ))
            }
            Err(e) => Err(format!("request failed: {e}")),
        };
        in_flight.fetch_sub(1, Ordering::SeqCst);
        match outcome {
            Ok(a) => {
                assert_eq!(a.accepted, b.sent.len(), "accepted count");
                assert_eq!(a.ids.len(), b.sent.len(), "one id per line");
                ledger
                    .acked
                    .lock()
                    .unwrap()
                    .extend(a.ids.into_iter().zip(b.sent));
                ledger.batches.fetch_add(1, Ordering::SeqCst);
            }
            // The server is being killed: failures are expected and the batch is unacknowledged.
            Err(_) if stop.load(Ordering::SeqCst) => break,
            Err(e) => {
                ledger.unexpected.lock().unwrap().push(e);
                break;
            }
        }
    }
}

/// Reads every acknowledged record back and compares it with what was sent.
async fn verify_all(base: &str, token: &str, acked: Vec<(String, Sent)>) -> Vec<String> {
    let acked = Arc::new(acked);
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..VERIFY_TASKS {
        let (acked, next) = (acked.clone(), next.clone());
        let (base, token) = (base.to_owned(), token.to_owned());
        tasks.push(tokio::spawn(async move {
            let http = reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .expect("http client");
            let mut problems = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some((id, sent)) = acked.get(i) else {
                    break;
                };
                let url = format!("{base}/v1/tenants/{TENANT}/records/{id}");
                let r = match http.get(&url).bearer_auth(&token).send().await {
                    Ok(r) => r,
                    Err(e) => {
                        problems.push(format!("{id}: request failed: {e}"));
                        continue;
                    }
                };
                let status = r.status();
                let text = r.text().await.unwrap_or_default();
                if status != reqwest::StatusCode::OK {
                    problems.push(format!("{id}: acknowledged but reads {status}: {text}"));
                    continue;
                }
                match serde_json::from_str::<ReadBack>(&text) {
                    Ok(got) => {
                        if got.id != *id
                            || got.data_type != sent.data_type
                            || got.subjects != [sent.subject.clone()]
                            || got.payload.get() != sent.payload
                        {
                            problems.push(format!(
                                "{id}: read back differs from what was sent\n  sent: {} {:?} {}\n  got:  {} {:?} {}",
                                sent.data_type,
                                sent.subject,
                                sent.payload,
                                got.data_type,
                                got.subjects,
                                got.payload.get()
                            ));
                        }
                    }
                    Err(e) => problems.push(format!("{id}: unreadable answer ({e}): {text}")),
                }
            }
            problems
        }));
    }
    let mut problems = Vec::new();
    for t in tasks {
        problems.extend(t.await.expect("verify task"));
    }
    problems
}

/// The two tests run one after the other: each gets the machine's cores to itself, so a cycle
/// sees as many batches as the build can serve.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn crash_cycles(backend: Backend) {
    let _serial = SERIAL.lock().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let data_dir = dir.path().join("data");
    let ledger = Arc::new(Ledger::default());
    let mut rng = Rng::seeded();

    let mut server = Server::start(
        &backend,
        &data_dir,
        dir.path().join("serve-0.log"),
        LOG_FILTER,
    )
    .await;
    let token = backend.create_token(&data_dir, Some(TENANT), "writer");

    for cycle in 1..=CYCLES {
        let stop = Arc::new(AtomicBool::new(false));
        let in_flight = Arc::new(AtomicUsize::new(0));
        let batches_before = ledger.batches.load(Ordering::SeqCst);
        let clients: Vec<_> = (0..CLIENTS)
            .map(|c| {
                tokio::spawn(ingest_client(
                    server.base.clone(),
                    token.clone(),
                    format!("c{cycle}.{c}"),
                    stop.clone(),
                    in_flight.clone(),
                    ledger.clone(),
                ))
            })
            .collect();
        // The kill comes at a random moment once ingest is under way (not during start-up).
        let deadline = Instant::now() + Duration::from_secs(60);
        while ledger.batches.load(Ordering::SeqCst) == batches_before
            && ledger.unexpected.lock().unwrap().is_empty()
        {
            assert!(
                Instant::now() < deadline,
                "[{}] cycle {cycle}: no batch acknowledged within 60 s; log:\n{}",
                backend.name,
                server.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let delay = Duration::from_millis(rng.range(300, 800));
        tokio::time::sleep(delay).await;
        // Stop first, then kill: any failure a client saw before `stop` was set is a real one.
        stop.store(true, Ordering::SeqCst);
        let pending = in_flight.load(Ordering::SeqCst);
        server.kill();
        for c in clients {
            c.await.expect("ingest client panicked");
        }
        let unexpected = ledger.unexpected.lock().unwrap().clone();
        assert!(
            unexpected.is_empty(),
            "[{}] cycle {cycle}: requests failed while the server was up: {unexpected:#?}\nlog:\n{}",
            backend.name,
            server.log_tail()
        );
        let batches = ledger.batches.load(Ordering::SeqCst) - batches_before;
        assert!(
            batches > 0,
            "[{}] cycle {cycle}: no batch was acknowledged in {delay:?}; log:\n{}",
            backend.name,
            server.log_tail()
        );

        server = Server::start(
            &backend,
            &data_dir,
            dir.path().join(format!("serve-{cycle}.log")),
            LOG_FILTER,
        )
        .await;
        let acked = ledger.acked.lock().unwrap().clone();
        let total = acked.len();
        let started = Instant::now();
        let problems = verify_all(&server.base, &token, acked).await;
        eprintln!(
            "[{}] cycle {cycle}: killed {delay:?} after the first acknowledgement with {pending} request(s) in flight; \
             {batches} batches acknowledged this cycle; {total} acknowledged records verified in {:?}",
            backend.name,
            started.elapsed()
        );
        assert!(
            problems.is_empty(),
            "[{}] cycle {cycle}: {} of {total} acknowledged records are missing or wrong after SIGKILL + restart; first ones:\n{}",
            backend.name,
            problems.len(),
            problems[..problems.len().min(10)].join("\n")
        );
    }
    let total = ledger.acked.lock().unwrap().len();
    assert!(total > 0, "nothing was acknowledged in {CYCLES} cycles");
    let distinct: std::collections::HashSet<String> = ledger
        .acked
        .lock()
        .unwrap()
        .iter()
        .map(|(id, _)| id.clone())
        .collect();
    assert_eq!(
        distinct.len(),
        total,
        "the server handed out a record id twice"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_records_survive_sigkill_sqlite() {
    crash_cycles(Backend::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_records_survive_sigkill_postgres() {
    let Some((backend, schema)) = Backend::postgres("crash").await else {
        return;
    };
    crash_cycles(backend).await;
    // The records really went to the fresh schema, not to `public`.
    let out = std::process::Command::new("psql")
        .arg(&schema.admin_url)
        .args(["-qtA", "-c"])
        .arg(format!("SELECT count(*) FROM {}.records", schema.schema))
        .output()
        .expect("run psql");
    let count: u64 = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0);
    assert!(
        count > 0,
        "no records in schema {}: search_path was not applied",
        schema.schema
    );
}
