//! The `custodian` binary: policy check/render on the example policies, `serve` start-up
//! failures and exit codes, and a real `serve` process driven by `token create` and
//! `records put|get`.

use std::fs::File;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use custodian_core::access::Role;
use custodian_core::ids::TenantId;
use jiff::ToSpan;
use serde_json::{Value, json};

use crate::harness::{
    ABSENT_ID, TestServer, now, policies_dir, record_line, rfc3339, sorted, unique,
};

/// How long any command may take before the test calls it hung.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// A finished run of the binary.
#[derive(Debug)]
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// A `custodian` process with its output going to files in a temp dir (no pipe can fill up).
struct Process {
    child: Child,
    outputs: tempfile::TempDir,
}

impl Process {
    fn spawn(args: &[&str]) -> Process {
        let outputs = tempfile::tempdir().expect("temp dir");
        let file = |name: &str| File::create(outputs.path().join(name)).expect("output file");
        let child = Command::new(env!("CARGO_BIN_EXE_custodian"))
            .args(args)
            // Nothing from the environment may change what the test asked for.
            .env_remove("CUSTODIAN_POLICY")
            .env_remove("CUSTODIAN_DATA_DIR")
            .env_remove("CUSTODIAN_DATABASE_URL")
            .env_remove("CUSTODIAN_LISTEN")
            .env_remove("CUSTODIAN_ADDR")
            .env_remove("CUSTODIAN_TOKEN")
            .env_remove("CUSTODIAN_TENANT")
            .env_remove("CUSTODIAN_LOG_FORMAT")
            .env("CUSTODIAN_LOG", "info")
            .stdin(Stdio::null())
            .stdout(file("stdout"))
            .stderr(file("stderr"))
            .spawn()
            .expect("spawn custodian");
        Process { child, outputs }
    }

    fn stdout(&self) -> String {
        std::fs::read_to_string(self.outputs.path().join("stdout")).unwrap_or_default()
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(self.outputs.path().join("stderr")).unwrap_or_default()
    }

    /// Waits for the exit, killing the process and failing after [`COMMAND_TIMEOUT`].
    fn wait(mut self) -> Run {
        let deadline = Instant::now() + COMMAND_TIMEOUT;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                break status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!(
                    "custodian did not exit within {COMMAND_TIMEOUT:?}; stderr:\n{}",
                    self.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        Run {
            code: status.code(),
            stdout: self.stdout(),
            stderr: self.stderr(),
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn custodian(args: &[&str]) -> Run {
    Process::spawn(args).wait()
}

/// [`custodian`] off the async workers, so an in-process server keeps answering meanwhile.
async fn custodian_async(args: &[&str]) -> Run {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        custodian(&args.iter().map(String::as_str).collect::<Vec<_>>())
    })
    .await
    .expect("command thread")
}

fn path(p: &Path) -> String {
    p.display().to_string()
}

fn toml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("policy dir")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no policies in {}", dir.display());
    files
}

/// A loopback port nothing listens on (bound, then released).
fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

#[test]
fn policy_check_accepts_every_example() {
    for file in toml_files(&policies_dir()) {
        let run = custodian(&["policy", "check", &path(&file)]);
        assert_eq!(run.code, Some(0), "{}: {run:?}", file.display());
        assert!(run.stdout.contains(": valid ("), "{run:?}");
        let table = run
            .stdout
            .lines()
            .skip_while(|l| !l.contains("EFFECTIVE RETENTION"))
            .collect::<Vec<_>>();
        assert!(
            table.len() > 1,
            "{}: no retention table: {run:?}",
            file.display()
        );
        assert!(table[0].starts_with("TENANT"), "{run:?}");
    }
    let run = custodian(&[
        "policy",
        "check",
        &path(&policies_dir().join("default.toml")),
    ]);
    for row in [
        "acme    app_log            internal      180d (tier standard 12mo, lowered to the type's maximum)",
        "globex  incident_artifact  confidential  90d after ticket_closed",
    ] {
        assert!(run.stdout.contains(row), "{row:?} missing: {}", run.stdout);
    }
}

#[test]
fn policy_check_points_at_each_error() {
    let broken = toml_files(&policies_dir().join("broken"));
    for file in broken {
        let run = custodian(&["policy", "check", &path(&file)]);
        assert_eq!(run.code, Some(1), "{}: {run:?}", file.display());
        assert!(
            run.stdout.is_empty(),
            "no table for a broken policy: {run:?}"
        );
        assert!(run.stderr.contains("the policy is invalid"), "{run:?}");
        let prefix = format!("{}:", file.display());
        let diagnostics: Vec<&str> = run
            .stderr
            .lines()
            .filter_map(|l| l.strip_prefix(&prefix))
            .collect();
        assert!(!diagnostics.is_empty(), "no file:line:col in {run:?}");
        let text = std::fs::read_to_string(&file).unwrap();
        for d in diagnostics {
            let mut parts = d.splitn(3, ':');
            let line: usize = parts.next().unwrap().parse().expect("line number");
            let column: usize = parts.next().unwrap().parse().expect("column number");
            let message = parts.next().unwrap();
            assert!(message.starts_with(" error: "), "{d}");
            // The position points at the offending text, which the message names.
            let source_line = text.lines().nth(line - 1).expect("line in file");
            let at: String = source_line
                .chars()
                .skip(column - 1)
                .take_while(|c| !matches!(c, ' ' | '=' | ',' | '}'))
                .collect();
            let at = at.trim_matches('"');
            assert!(
                !at.is_empty() && message.contains(at),
                "{}:{line}:{column} points at {at:?}, which {message:?} does not name",
                file.display()
            );
        }
    }
}

#[test]
fn policy_render_escapes_markup() {
    let file = policies_dir().join("004-saas.toml");
    let raw = "<div class=\"text-muted\">";
    assert!(
        std::fs::read_to_string(&file).unwrap().contains(raw),
        "the example no longer carries the markup this test is about"
    );
    let html = custodian(&["policy", "render", &path(&file), "--format", "html"]);
    assert_eq!(html.code, Some(0), "{html:?}");
    assert!(html.stdout.starts_with("<!DOCTYPE html>"));
    assert!(!html.stdout.contains(raw));
    assert!(
        html.stdout
            .contains("&lt;div class=&quot;text-muted&quot;&gt;")
    );
    let md = custodian(&["policy", "render", &path(&file)]);
    assert_eq!(md.code, Some(0), "{md:?}");
    assert!(!md.stdout.contains(raw));
    assert!(md.stdout.contains("&lt;div class="));
}

#[test]
fn serve_refuses_an_invalid_policy_without_listening() {
    let data = tempfile::tempdir().unwrap();
    let policy = policies_dir().join("broken/unknown-tier.toml");
    let port = closed_port();
    let run = custodian(&[
        "serve",
        "--policy",
        &path(&policy),
        "--data-dir",
        &path(data.path()),
        "--listen",
        &format!("127.0.0.1:{port}"),
    ]);
    assert_eq!(run.code, Some(1), "{run:?}");
    assert!(
        run.stderr
            .contains("unknown-tier.toml:16:8: error: tenants.acme.tier: unknown tier \"gold\""),
        "{run:?}"
    );
    assert!(!run.stderr.contains("listening"), "{run:?}");
    assert!(
        !data.path().join("custodian.db").exists(),
        "nothing is opened for an invalid policy"
    );
}

#[test]
fn serve_with_an_unreachable_database_exits_3() {
    let data = tempfile::tempdir().unwrap();
    let run = custodian(&[
        "serve",
        "--data-dir",
        &path(data.path()),
        "--database-url",
        "postgres://nobody@127.0.0.1:1/none",
        "--listen",
        "127.0.0.1:0",
    ]);
    assert_eq!(run.code, Some(3), "{run:?}");
    assert!(run.stderr.contains("unreachable"), "{run:?}");
    assert!(!run.stderr.contains("listening"), "{run:?}");
}

#[test]
fn serve_refuses_plain_http_off_loopback() {
    let data = tempfile::tempdir().unwrap();
    let run = custodian(&[
        "serve",
        "--data-dir",
        &path(data.path()),
        "--listen",
        "0.0.0.0:0",
    ]);
    assert_eq!(run.code, Some(1), "{run:?}");
    assert!(run.stderr.contains("non-loopback"), "{run:?}");
}

#[test]
fn token_create_refuses_unknown_tenants() {
    let data = tempfile::tempdir().unwrap();
    let run = custodian(&[
        "token",
        "create",
        "--data-dir",
        &path(data.path()),
        "--tenant",
        "initech",
        "--role",
        "writer",
    ]);
    assert_eq!(run.code, Some(1), "{run:?}");
    assert!(run.stdout.is_empty(), "no token printed: {run:?}");
    assert!(
        run.stderr
            .contains("tenant initech is not in the policy; known tenants: acme, globex"),
        "{run:?}"
    );
}

#[test]
fn records_get_without_a_server_exits_3() {
    let port = closed_port();
    let run = custodian(&[
        "records",
        "get",
        "--server",
        &format!("http://127.0.0.1:{port}"),
        "--token",
        "cst_0000000000000000_0000000000000000000000000000000000000000000000000000000000000000",
        "--tenant",
        "acme",
        ABSENT_ID,
    ]);
    assert_eq!(run.code, Some(3), "{run:?}");
    assert!(run.stderr.contains("cannot reach the server"), "{run:?}");
}

/// A `custodian serve` child process, killed when dropped.
struct ServeProcess {
    process: Process,
    addr: SocketAddr,
}

impl ServeProcess {
    /// Starts `serve` on a free loopback port and waits until `/healthz` answers.
    async fn start(data_dir: &Path) -> ServeProcess {
        let process = Process::spawn(&[
            "serve",
            "--data-dir",
            &path(data_dir),
            "--listen",
            "127.0.0.1:0",
            "--log-format",
            "json",
        ]);
        let deadline = Instant::now() + COMMAND_TIMEOUT;
        let addr = loop {
            let bound = process.stderr().lines().find_map(|line| {
                let event: Value = serde_json::from_str(line).ok()?;
                event["fields"]["message"]
                    .as_str()?
                    .contains("listening")
                    .then(|| event["fields"]["addr"].as_str()?.parse().ok())?
            });
            if let Some(addr) = bound {
                break addr;
            }
            assert!(
                Instant::now() < deadline,
                "serve did not start; stderr:\n{}",
                process.stderr()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let health = reqwest::get(format!("http://{addr}/healthz"))
            .await
            .expect("healthz");
        assert_eq!(health.status(), 200);
        ServeProcess { process, addr }
    }
}

#[tokio::test]
async fn serve_token_put_get_against_a_real_process() {
    let data = tempfile::tempdir().unwrap();
    let serve = ServeProcess::start(data.path()).await;
    let server = format!("http://{}", serve.addr);

    let token = custodian_async(&[
        "token",
        "create",
        "--data-dir",
        &path(data.path()),
        "--tenant",
        "acme",
        "--role",
        "admin",
        "--expires-in",
        "1d",
    ])
    .await;
    assert_eq!(token.code, Some(0), "{token:?}");
    assert!(token.stderr.contains("shown only once"), "{token:?}");
    let token = token.stdout.trim().to_owned();
    assert!(token.starts_with("cst_"), "{token}");

    let marker = unique("hello");
    let subject = unique("alice");
    let t = rfc3339(now() - 1.hour());
    let records = data.path().join("records.ndjson");
    std::fs::write(
        &records,
        [
            record_line("app_log", &[&subject], &t, json!({"msg": marker})),
            record_line("customer_record", &[&subject], &t, json!({"name": "Alice"})),
            String::new(),
        ]
        .join("\n"),
    )
    .unwrap();
    let client = ["--server", &server, "--token", &token, "--tenant", "acme"];
    let put = custodian_async(
        &[
            &["records", "put", &path(&records), "--batch-size", "1"],
            &client[..],
        ]
        .concat(),
    )
    .await;
    assert_eq!(put.code, Some(0), "{put:?}");
    let ids: Vec<&str> = put.stdout.lines().collect();
    assert_eq!(ids.len(), 2, "{put:?}");
    assert!(
        put.stderr.contains("stored 2 records for tenant acme"),
        "{put:?}"
    );

    let get = custodian_async(&[&["records", "get", ids[0]], &client[..]].concat()).await;
    assert_eq!(get.code, Some(0), "{get:?}");
    let record: Value = serde_json::from_str(&get.stdout).expect("JSON record");
    assert_eq!(record["id"], ids[0]);
    assert_eq!(record["payload"], json!({"msg": marker}));
    assert_eq!(record["subjects"], json!([subject]));

    // A refused request exits 1 with the server's explanation.
    let absent = ["records", "get", ABSENT_ID];
    let missing = custodian_async(&[&absent[..], &client[..]].concat()).await;
    assert_eq!(missing.code, Some(1), "{missing:?}");
    assert!(
        missing.stderr.contains("Record not found (404"),
        "{missing:?}"
    );

    // SIGTERM stops the server gracefully.
    let pid = serve.process.child.id().to_string();
    let kill = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(kill.success());
    let stopped = tokio::task::spawn_blocking(move || serve.process.wait())
        .await
        .unwrap();
    assert_eq!(stopped.code, Some(0), "{stopped:?}");
    assert!(stopped.stderr.contains("custodian stopped"), "{stopped:?}");
}

/// `custodian records put FILE` for tenant acme against an in-process server.
async fn records_put(server: &TestServer, token: &str, file: &Path, batch_size: u32) -> Run {
    custodian_async(&[
        "records",
        "put",
        &path(file),
        "--batch-size",
        &batch_size.to_string(),
        "--server",
        &server.base,
        "--token",
        token,
        "--tenant",
        "acme",
    ])
    .await
}

#[tokio::test]
async fn records_put_names_the_file_line_of_a_bad_record() {
    let server = TestServer::sqlite().await;
    let token = server.token("acme", Role::Writer).await;
    let subject = unique("s");
    let t = rfc3339(now() - 1.hour());
    let good = record_line("app_log", &[&subject], &t, json!({}));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("batch.ndjson");
    std::fs::write(
        &file,
        [
            good.clone(),
            good.clone(),
            good.clone(),
            record_line("nope", &[&subject], &t, json!({})),
            good,
        ]
        .join("\n"),
    )
    .unwrap();
    let run = records_put(&server, &token, &file, 2).await;
    assert_eq!(run.code, Some(1), "{run:?}");
    assert!(
        run.stderr.contains("line 4: unknown data type \"nope\""),
        "the file's line number, not the batch's: {run:?}"
    );
    assert!(!run.stderr.contains("line 2:"), "{run:?}");
    // The first batch (lines 1-2) went in before the bad one was refused; its ids were printed.
    let printed: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(printed.len(), 2, "{run:?}");
    assert_eq!(
        server.subject_ids("acme", &token, &subject, 100).await,
        sorted(printed.into_iter().map(String::from).collect())
    );
}

#[tokio::test]
async fn records_put_reports_a_batch_over_the_body_limit() {
    let server = TestServer::start(crate::harness::Backend::Sqlite, 512)
        .await
        .unwrap();
    let token = server.token("acme", Role::Writer).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("big.ndjson");
    let line = record_line(
        "app_log",
        &[],
        &rfc3339(now()),
        json!({"pad": "x".repeat(600)}),
    );
    std::fs::write(&file, line).unwrap();
    let run = records_put(&server, &token, &file, 10).await;
    assert_eq!(run.code, Some(1), "{run:?}");
    assert!(
        run.stderr.contains("Request body too large (413"),
        "{run:?}"
    );
}

/// Blank lines are allowed anywhere in NDJSON (the server skips them), so a batch boundary
/// falling on one, or a file ending in an empty line, must not fail the upload.
#[tokio::test]
async fn records_put_skips_blank_lines() {
    let server = TestServer::sqlite().await;
    let token = server.token("acme", Role::Writer).await;
    let subject = unique("s");
    let line = record_line("app_log", &[&subject], &rfc3339(now()), json!({}));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("blank.ndjson");
    std::fs::write(&file, format!("{line}\n\n{line}\n\n")).unwrap();
    let run = records_put(&server, &token, &file, 1).await;
    assert_eq!(run.code, Some(0), "{run:?}");
    assert_eq!(
        server
            .subject_ids("acme", &token, &subject, 100)
            .await
            .len(),
        2
    );
}

/// The retention commands against an in-process server whose clock is moved ahead: holds
/// placed, listed and released; the dry run; a sweep; certificates listed, saved, verified
/// offline (and a tampered copy refused), and the quarterly review; a tenant terminated.
#[tokio::test]
async fn retention_commands_place_holds_plan_sweep_and_prove_deletions() {
    let server = TestServer::sqlite().await;
    let admin = server.token("acme", Role::Admin).await;
    let writer = server.token("acme", Role::Writer).await;
    let operator = server.operator_token().await;
    let t = rfc3339(server.now() - 1.hour());
    let body = ["alice", "bob"]
        .map(|s| record_line("app_log", &[s], &t, json!({"who": s})))
        .join("\n");
    let ids = server.ingest("acme", &writer, &body).await;
    let as_admin = |args: &[&str]| {
        let mut all: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        all.extend(
            [
                "--server",
                &server.base,
                "--token",
                &admin,
                "--tenant",
                "acme",
            ]
            .map(String::from),
        );
        all
    };
    let run = |args: Vec<String>| async move {
        custodian_async(&args.iter().map(String::as_str).collect::<Vec<_>>()).await
    };

    let placed = run(as_admin(&[
        "hold",
        "place",
        "--subject",
        "alice",
        "--case",
        "CASE-1",
        "--reason",
        "litigation",
    ]))
    .await;
    assert_eq!(placed.code, Some(0), "{}", placed.stderr);
    let hold = placed.stdout.trim().to_owned();
    assert!(hold.starts_with("hold_"), "{}", placed.stdout);
    let no_scope = run(as_admin(&["hold", "place", "--case", "C", "--reason", "r"])).await;
    assert_eq!(no_scope.code, Some(1));
    assert!(
        no_scope.stderr.contains("give the hold's scope"),
        "{}",
        no_scope.stderr
    );
    let listed = run(as_admin(&["hold", "list"])).await;
    assert!(
        listed.stdout.contains(&hold) && listed.stdout.contains("active"),
        "{}",
        listed.stdout
    );

    server
        .clock
        .advance(jiff::SignedDuration::from_hours(200 * 24));
    let plan = custodian_async(&[
        "retention",
        "plan",
        "--server",
        &server.base,
        "--token",
        &operator,
    ])
    .await;
    assert_eq!(plan.code, Some(0), "{}", plan.stderr);
    assert!(
        plan.stdout.contains("partial") && plan.stdout.contains("acme"),
        "{}",
        plan.stdout
    );
    let bad_date = custodian_async(&[
        "retention",
        "plan",
        "--at",
        "someday",
        "--server",
        &server.base,
        "--token",
        &operator,
    ])
    .await;
    assert_eq!(bad_date.code, Some(1));
    assert!(
        bad_date.stderr.contains("--at \"someday\""),
        "{}",
        bad_date.stderr
    );
    let swept = custodian_async(&[
        "retention",
        "sweep",
        "--server",
        &server.base,
        "--token",
        &operator,
    ])
    .await;
    assert_eq!(swept.code, Some(0), "{}", swept.stderr);
    assert!(
        swept.stderr.contains("1 records destroyed"),
        "{}",
        swept.stderr
    );
    server.get_record("acme", &writer, &ids[0]).await.ok_json();

    let released = run(as_admin(&["hold", "release", &hold])).await;
    assert_eq!(released.code, Some(0), "{}", released.stderr);
    let twice = run(as_admin(&["hold", "release", &hold])).await;
    assert_eq!(twice.code, Some(1));
    assert!(
        twice.stderr.contains("already released"),
        "{}",
        twice.stderr
    );
    custodian_async(&[
        "retention",
        "sweep",
        "--server",
        &server.base,
        "--token",
        &operator,
    ])
    .await;

    let listed = run(as_admin(&["deletions", "list", "--json"])).await;
    let certificates: Value = serde_json::from_str(&listed.stdout).unwrap();
    assert_eq!(
        certificates.as_array().unwrap().len(),
        2,
        "{}",
        listed.stdout
    );
    let id = certificates[0]["id"].as_str().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("certificate.note");
    let saved = run(as_admin(&["deletions", "get", id, "--out", &path(&file)])).await;
    assert_eq!(saved.code, Some(0), "{}", saved.stderr);
    let key = server.state.audit.verifier_key().unwrap();
    let verified = custodian_async(&["deletions", "verify", &path(&file), "--key", &key]).await;
    assert_eq!(verified.code, Some(0), "{}", verified.stderr);
    assert!(
        verified.stderr.contains("OK: certificate"),
        "{}",
        verified.stderr
    );
    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::write(
        &file,
        text.replace("\"record_count\":1", "\"record_count\":9"),
    )
    .unwrap();
    let tampered = custodian_async(&["deletions", "verify", &path(&file), "--key", &key]).await;
    assert_eq!(tampered.code, Some(1));
    assert!(
        tampered.stderr.contains("does not verify"),
        "{}",
        tampered.stderr
    );
    let quarter = {
        let d = server.now().to_zoned(jiff::tz::TimeZone::UTC).date();
        format!("{}Q{}", d.year(), (d.month() - 1) / 3 + 1)
    };
    let review = run(as_admin(&["deletions", "review", "--quarter", &quarter])).await;
    assert_eq!(review.code, Some(0), "{}", review.stderr);
    assert!(
        review
            .stdout
            .contains("2 deletion certificate(s), 2 record(s) destroyed"),
        "{}",
        review.stdout
    );
    assert!(review.stdout.contains("all verify") && review.stdout.contains("Sign-off"));
    let bad_quarter = run(as_admin(&["deletions", "review", "--quarter", "2026Q5"])).await;
    assert_eq!(bad_quarter.code, Some(1));

    let terminated = custodian_async(&[
        "tenant",
        "terminate",
        "acme",
        "--reason",
        "contract ended",
        "--server",
        &server.base,
        "--token",
        &operator,
    ])
    .await;
    assert_eq!(terminated.code, Some(0), "{}", terminated.stderr);
    let again = custodian_async(&[
        "tenant",
        "terminate",
        "acme",
        "--reason",
        "again",
        "--server",
        &server.base,
        "--token",
        &operator,
    ])
    .await;
    assert_eq!(again.code, Some(1));
    assert!(
        again.stderr.contains("already terminated"),
        "{}",
        again.stderr
    );
    let withdrawn = custodian_async(&[
        "tenant",
        "cancel-termination",
        "acme",
        "--server",
        &server.base,
        "--token",
        &operator,
    ])
    .await;
    assert_eq!(withdrawn.code, Some(0), "{}", withdrawn.stderr);
    let now = rfc3339(server.now());
    server
        .ingest(
            "acme",
            &writer,
            &record_line("app_log", &["c"], &now, json!({})),
        )
        .await;
}

/// `custodian token create|list|revoke` on an in-process server's data directory: the CLI and
/// the server share its SQLite file, so a revocation by the CLI holds at the server's next
/// request.
// Multi-threaded: the in-process server must keep serving while a CLI child blocks a thread.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_list_and_revoke_on_a_running_server() {
    let server = TestServer::sqlite().await;
    let data_dir = path(server.data_dir());
    let store_args = ["--data-dir", data_dir.as_str()];
    let create = async |extra: &[&str]| {
        let run = custodian_async(&[&["token", "create"], &store_args[..], extra].concat()).await;
        assert_eq!(run.code, Some(0), "{run:?}");
        let token = run.stdout.trim().to_owned();
        // `cst_<16 hex id>_<64 hex secret>`.
        let id = token[4..20].to_owned();
        let secret = token[21..].to_owned();
        assert_eq!(token, format!("cst_{id}_{secret}"));
        (token, id, secret)
    };
    let writer = create(&["--tenant", "acme", "--role", "writer"]).await;
    let reader = create(&[
        "--tenant",
        "acme",
        "--role",
        "reader",
        "--expires-in",
        "30d",
    ])
    .await;
    let operator = create(&["--role", "operator"]).await;
    let all = [&writer, &reader, &operator];
    // Neither a token, nor its secret, nor the secret's stored hash may appear in a listing.
    let assert_no_secrets = |run: &Run| {
        let output = format!("{}{}", run.stdout, run.stderr);
        for (token, _, secret) in all {
            let hash: String = custodian_crypto::sha256(secret.as_bytes())
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            assert!(!output.contains(token.as_str()), "token printed: {run:?}");
            assert!(!output.contains(secret.as_str()), "secret printed: {run:?}");
            assert!(!output.contains(&hash), "secret hash printed: {run:?}");
        }
    };
    let list = async |extra: &[&str]| {
        let run = custodian_async(&[&["token", "list"], &store_args[..], extra].concat()).await;
        assert_eq!(run.code, Some(0), "{run:?}");
        assert_no_secrets(&run);
        run
    };
    let list_json = async |extra: &[&str]| -> Vec<Value> {
        let run = list(&[&["--json"], extra].concat()).await;
        let rows: Value = serde_json::from_str(&run.stdout).expect("JSON listing");
        rows.as_array().expect("an array").clone()
    };

    // The table: one line per token under a header, the platform's first.
    let table = list(&[]).await;
    let lines: Vec<&str> = table.stdout.lines().collect();
    assert_eq!(lines.len(), 4, "{table:?}");
    for column in [
        "ID",
        "TENANT",
        "ROLE",
        "CREATED",
        "EXPIRES",
        "LAST USED",
        "REVOKED",
    ] {
        assert!(lines[0].contains(column), "{table:?}");
    }
    assert!(lines[1].starts_with(&operator.1), "{table:?}");
    assert!(lines[1].contains("(platform)") && lines[1].contains("operator"));
    let acme_ids = sorted(vec![writer.1.clone(), reader.1.clone()]);
    for (line, id) in lines[2..].iter().zip(&acme_ids) {
        assert!(line.starts_with(id.as_str()), "{table:?}");
        assert!(line.contains("acme"), "{table:?}");
    }

    // JSON: every field but the hash; one tenant's tokens in id order; the platform's alone.
    let acme = list_json(&["--tenant", "acme"]).await;
    let ids: Vec<&str> = acme.iter().map(|t| t["id"].as_str().unwrap()).collect();
    assert_eq!(ids, acme_ids);
    for t in &acme {
        let keys: Vec<&str> = t.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(
            sorted(keys),
            [
                "created_at",
                "expires_at",
                "id",
                "last_used_at",
                "platform",
                "revoked_at",
                "role",
                "tenant"
            ]
        );
        assert_eq!(t["tenant"], "acme");
        assert_eq!(t["revoked_at"], Value::Null);
        if t["id"] == writer.1.as_str() {
            assert_eq!(t["role"], "writer");
            assert_eq!(t["expires_at"], Value::Null);
        } else {
            assert_eq!(t["role"], "reader");
            let expires: jiff::Timestamp = t["expires_at"].as_str().unwrap().parse().unwrap();
            assert!(expires > now() + (29 * 24).hours() && expires < now() + (31 * 24).hours());
        }
    }
    let platform = list_json(&["--platform"]).await;
    assert_eq!(platform.len(), 1);
    assert_eq!(platform[0]["id"], operator.1.as_str());
    assert_eq!(platform[0]["tenant"], Value::Null);
    assert_eq!(platform[0]["platform"], true);
    assert!(list_json(&["--tenant", "globex"]).await.is_empty());

    // All three tokens work.
    let read = format!("/v1/tenants/acme/records/{ABSENT_ID}");
    for (token, ..) in [&writer, &reader] {
        server
            .get(&read, Some(token))
            .await
            .problem(404, "record-not-found");
    }
    server
        .get("/v1/system/keys", Some(&operator.0))
        .await
        .ok_json();

    // Revoking the writer token: said so, audited once in acme's log, refused at once.
    let acme_log = custodian_store::AuditLog::Tenant(TenantId::new("acme").unwrap());
    let audited = server.state.store.audit_size(&acme_log).await.unwrap();
    let revoke = async |id: &str| {
        custodian_async(&[&["token", "revoke", id], &store_args[..]].concat()).await
    };
    let run = revoke(&writer.1).await;
    assert_eq!(run.code, Some(0), "{run:?}");
    assert!(
        run.stderr.contains(&format!(
            "token {} (tenant acme, role writer) revoked at",
            writer.1
        )),
        "{run:?}"
    );
    let size = server.state.store.audit_size(&acme_log).await.unwrap();
    assert_eq!(size, audited + 1, "one entry for the revocation");
    let problem = server
        .get(&read, Some(&writer.0))
        .await
        .problem(401, "unauthorized");
    assert!(
        problem["detail"].as_str().unwrap().contains("revoked"),
        "{problem}"
    );
    server
        .get(&read, Some(&reader.0))
        .await
        .problem(404, "record-not-found");
    server
        .get("/v1/system/keys", Some(&operator.0))
        .await
        .ok_json();
    let events = server.audit_bodies(&acme_log, audited, size).await;
    let event: Value = serde_json::from_slice(&events[0]).unwrap();
    assert_eq!(event["action"], "tokens.revoke");
    assert_eq!(event["subsystem"], "cli");
    assert_eq!(event["tenant"], "acme");
    assert_eq!(event["decision"], "allow");
    assert_eq!(event["reason"], "role writer");
    assert_eq!(event["objects"], json!([format!("token:{}", writer.1)]));
    assert!(
        event["actor"].as_str().unwrap().starts_with("cli:"),
        "{event}"
    );

    // The listing shows it revoked, and the others in use.
    let acme = list_json(&["--tenant", "acme"]).await;
    for t in &acme {
        if t["id"] == writer.1.as_str() {
            let revoked: jiff::Timestamp = t["revoked_at"].as_str().unwrap().parse().unwrap();
            let audited_at: jiff::Timestamp = event["time"].as_str().unwrap().parse().unwrap();
            assert_eq!(
                revoked, audited_at,
                "the event carries the revocation's time"
            );
        } else {
            assert_eq!(t["revoked_at"], Value::Null);
            assert!(t["last_used_at"].is_string(), "{t}");
        }
    }
    let table = list(&["--tenant", "acme"]).await;
    let revoked_line = table
        .stdout
        .lines()
        .find(|l| l.starts_with(writer.1.as_str()))
        .expect("the revoked token is still listed");
    assert!(
        !revoked_line.trim_end().ends_with(" -"),
        "revocation time shown: {table:?}"
    );

    // Again: nothing changes, nothing is audited, and that is not an error.
    let audited = server.state.store.audit_size(&acme_log).await.unwrap();
    let run = revoke(&writer.1).await;
    assert_eq!(run.code, Some(0), "{run:?}");
    assert!(run.stderr.contains("was already revoked"), "{run:?}");
    assert_eq!(
        server.state.store.audit_size(&acme_log).await.unwrap(),
        audited
    );
    assert_eq!(list_json(&["--tenant", "acme"]).await, acme);

    // An unknown id, and a whole token given for an id (never echoed), are invalid input.
    let run = revoke("0123456789abcdef").await;
    assert_eq!(run.code, Some(1), "{run:?}");
    assert!(
        run.stderr.contains("no token with id \"0123456789abcdef\""),
        "{run:?}"
    );
    let run = revoke(&reader.0).await;
    assert_eq!(run.code, Some(1), "{run:?}");
    assert!(run.stderr.contains("not the token"), "{run:?}");
    assert!(!run.stderr.contains(&reader.2), "{run:?}");
    server
        .get(&read, Some(&reader.0))
        .await
        .problem(404, "record-not-found");
}
