//! No key material, token or payload reaches a log or the disk in clear. The real binary serves
//! a whole key lifecycle with every log target at TRACE (HTTP, SQL drivers, HSM, ours): init
//! and unseal from shares, ingest, reads, a bad token, a wrong share, a delete, a rotation, a
//! key-store backup and restore, a seal and a second unseal. Then every secret the deployment
//! holds is unwrapped from its key store (root key from the shares or the dev key file, every
//! KEK version seen, index keys, DEKs, subject keys, the audit signing seed) and the server's
//! log, every CLI command's stderr and every file in the data directory are searched for each
//! in raw, hex, base64 and `Debug` forms. Three deployments: Shamir on SQLite, the dev key on
//! PostgreSQL (its driver logs statement parameters at DEBUG) and a SoftHSM2 key on SQLite
//! (where the PIN is the secret).

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use base64::Engine;
use custodian_crypto::testing::exposed;
use custodian_crypto::{DataKeyId, RootKeyProvider, SoftwareRootKey};
use custodian_store::{KeySnapshot, StoreConfig};
use serde_json::{Value, json};
use zeroize::Zeroizing;

mod process;

use process::{BIN, Backend, Server};

const TENANTS: [&str; 2] = ["acme", "globex"];
const POLICY: &str = include_str!("../../../examples/policies/default.toml");
const PIN_ENV: &str = "CUSTODIAN_LEAK_TEST_HSM_PIN";

/// One secret and the byte strings that would give it away.
struct Secret {
    what: String,
    forms: Vec<Vec<u8>>,
}

impl Secret {
    /// A text secret (token, share, PIN, payload marker): searched as is.
    fn text(what: impl Into<String>, value: &str) -> Secret {
        Secret {
            what: what.into(),
            forms: vec![value.as_bytes().to_vec()],
        }
    }

    /// A 32-byte key: raw, hex (both cases), base64 (standard and URL-safe, padded or not) and
    /// the start of Rust's `Debug` list of its bytes.
    fn key(what: impl Into<String>, key: &[u8; 32]) -> Secret {
        use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE_NO_PAD};
        let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
        let debug = format!("{:?}", &key[..8]);
        Secret {
            what: what.into(),
            forms: vec![
                key.to_vec(),
                hex.clone().into_bytes(),
                hex.to_uppercase().into_bytes(),
                STANDARD.encode(key).into_bytes(),
                STANDARD_NO_PAD.encode(key).into_bytes(),
                URL_SAFE_NO_PAD.encode(key).into_bytes(),
                debug.trim_end_matches(']').as_bytes().to_vec(),
            ],
        }
    }
}

/// Every (secret, place) where a form of a secret occurs in `haystack`.
fn leaks(secrets: &[Secret], place: &str, haystack: &[u8]) -> Vec<String> {
    secrets
        .iter()
        .filter(|s| {
            s.forms
                .iter()
                .any(|f| haystack.windows(f.len()).any(|w| w == f.as_slice()))
        })
        .map(|s| format!("{} found in {place}", s.what))
        .collect()
}

#[test]
fn every_form_of_a_planted_key_is_found() {
    let key: [u8; 32] = std::array::from_fn(|i| (i as u8).wrapping_mul(37).wrapping_add(11));
    let secret = Secret::key("planted", &key);
    assert_eq!(secret.forms.len(), 7);
    for form in &secret.forms {
        let mut log = b"2026-11-23T10:00:00Z DEBUG something happened key=".to_vec();
        log.extend_from_slice(form);
        log.extend_from_slice(b" and more\n");
        assert_eq!(
            leaks(std::slice::from_ref(&secret), "log", &log),
            ["planted found in log"]
        );
    }
    assert!(leaks(&[secret], "log", b"nothing to see here").is_empty());
}

/// How a deployment's root key is held.
enum Root {
    Shamir,
    Dev,
    Pkcs11 {
        _hsm_dir: tempfile::TempDir,
        module: String,
    },
}

impl Root {
    fn policy_keys(&self) -> String {
        match self {
            Root::Shamir => "root = \"shamir\"\nshamir = { shares = 3, threshold = 2 }\n".into(),
            Root::Dev => "root = \"dev\"\n".into(),
            Root::Pkcs11 { module, .. } => format!(
                "root = \"pkcs11\"\npkcs11 = {{ module = \"{module}\", token_label = \"{}\", key_label = \"leak-check-root\", pin_env = \"{PIN_ENV}\" }}\n",
                custodian_crypto::testing::TOKEN_LABEL
            ),
        }
    }
}

/// A deployment under test: its data, its server and what every command printed.
struct Deployment {
    backend: Backend,
    dir: tempfile::TempDir,
    server: Option<Server>,
    http: reqwest::Client,
    operator: String,
    admin: String,
    /// Texts that must hold no secret: CLI stderr, and stdout where nothing secret is printed.
    outputs: Vec<(String, Vec<u8>)>,
    secrets: Vec<Secret>,
}

impl Deployment {
    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn base(&self) -> &str {
        &self.server.as_ref().expect("server running").base
    }

    /// Runs a CLI command against the server; its stderr (and stdout unless it legitimately
    /// prints a secret) is kept for the search.
    fn cli(&mut self, args: &[&str], stdin: Option<&str>, stdout_is_secret: bool) -> Output {
        let mut cmd = Command::new(BIN);
        cmd.args(args)
            .args(["--server", self.base(), "--token", &self.operator])
            .env("CUSTODIAN_LOG", "trace")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn custodian");
        if let Some(input) = stdin {
            use std::io::Write;
            child
                .stdin
                .take()
                .expect("stdin")
                .write_all(input.as_bytes())
                .expect("write stdin");
        }
        drop(child.stdin.take());
        let out = child.wait_with_output().expect("run custodian");
        let name = format!("stderr of custodian {}", args[..2].join(" "));
        self.outputs.push((name, out.stderr.clone()));
        if !stdout_is_secret {
            let name = format!("stdout of custodian {}", args[..2].join(" "));
            self.outputs.push((name, out.stdout.clone()));
        }
        out
    }

    fn cli_ok(&mut self, args: &[&str], stdin: Option<&str>, stdout_is_secret: bool) -> String {
        let out = self.cli(args, stdin, stdout_is_secret);
        assert!(
            out.status.success(),
            "custodian {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("UTF-8 output")
    }

    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
        body: Option<String>,
    ) -> (u16, String) {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base()))
            .bearer_auth(token);
        if let Some(body) = body {
            request = request
                .header("content-type", "application/x-ndjson")
                .body(body);
        }
        let r = request.send().await.expect("request");
        let status = r.status().as_u16();
        (status, r.text().await.expect("body"))
    }

    /// Every key the key store holds now, unwrapped: KEKs, index keys and data keys.
    async fn collect_keys(&mut self, root: &dyn RootKeyProvider, when: &str) {
        let config = match &self.backend.database_url {
            None => StoreConfig::Sqlite {
                path: custodian_store::sqlite_path(&self.data_dir()),
            },
            Some(url) => StoreConfig::Postgres {
                url: url.clone(),
                schema: None,
            },
        };
        let store = custodian_store::open_key_store(&config)
            .await
            .expect("open key store");
        let KeySnapshot {
            index_keys,
            keks,
            data_keys,
            audit_keys,
            ..
        } = store.snapshot().await.expect("key-store snapshot");
        for (tenant, wrapped) in index_keys {
            let key = exposed::index_key(root, &tenant, &wrapped).expect("unwrap index key");
            self.secrets
                .push(Secret::key(format!("index key of {tenant} ({when})"), &key));
        }
        let mut unwrapped_keks = Vec::new();
        for (tenant, kek) in keks {
            let key = exposed::kek(root, &tenant, kek.version, &kek.wrapped).expect("unwrap KEK");
            self.secrets.push(Secret::key(
                format!("KEK {tenant} v{} ({when})", kek.version),
                &key,
            ));
            unwrapped_keks.push((tenant, kek.version, key));
        }
        for (tenant, data_key) in data_keys {
            let (_, version, kek) = unwrapped_keks
                .iter()
                .find(|(t, v, _)| *t == tenant && *v == data_key.kek_version)
                .expect("the data key's KEK version exists");
            let id = DataKeyId::decode(&data_key.id).expect("data key id");
            let key = exposed::data_key(kek, &tenant, *version, &id, &data_key.wrapped)
                .expect("unwrap data key");
            self.secrets.push(Secret::key(
                format!("data key {} of {tenant} ({when})", data_key.id),
                &key,
            ));
        }
        let data = custodian_store::open(&config).await.expect("open store");
        if let Some(wrapped) = data
            .system_secret("audit-checkpoint-signing-key")
            .await
            .expect("read system secret")
        {
            let seed = root
                .unwrap_secret("audit-checkpoint-signing-key", &wrapped)
                .expect("unwrap signing seed");
            self.secrets
                .push(Secret::key(format!("audit signing seed ({when})"), &seed));
        }
        let wrapped = data
            .system_secret("audit-body-key")
            .await
            .expect("read system secret")
            .expect("the audit body key exists once unsealed");
        let body_secret = root
            .unwrap_secret("audit-body-key", &wrapped)
            .expect("unwrap audit body secret");
        for key in audit_keys {
            let slot = custodian_crypto::PeriodSlot {
                log: &key.log,
                period: &key.period,
                id: &key.id,
            };
            let bytes = exposed::audit_period_key(&body_secret, &slot, &key.wrapped)
                .expect("unwrap audit period key");
            self.secrets.push(Secret::key(
                format!("audit period key {}/{} ({when})", key.log, key.id),
                &bytes,
            ));
        }
        self.secrets.push(Secret::key(
            format!("audit body secret ({when})"),
            &body_secret,
        ));
    }
}

fn record_line(data_type: &str, subject: &str, marker: &str) -> String {
    let event_time =
        custodian_core::clock::Clock::now(&custodian_server::clock::SystemClock).to_string();
    json!({
        "type": data_type,
        "subjects": [subject],
        "event_time": event_time,
        "payload": {"marker": marker, "note": "leak check"},
    })
    .to_string()
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read data dir") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            files.extend(files_under(&path));
        } else {
            files.push(path);
        }
    }
    files
}

async fn key_lifecycle_leaves_no_secret_behind(backend: Backend, root: Root) {
    let dir = tempfile::tempdir().expect("temp dir");
    let policy_path = dir.path().join("policy.toml");
    let policy = POLICY.replace("root = \"dev\"\n", &root.policy_keys());
    std::fs::write(&policy_path, policy).expect("write policy");
    let backend = backend.with_policy(policy_path);
    let data_dir = dir.path().join("data");
    let operator = backend.create_token(&data_dir, None, "operator");
    let writers: Vec<String> = TENANTS
        .iter()
        .map(|t| backend.create_token(&data_dir, Some(t), "writer"))
        .collect();
    let admin = backend.create_token(&data_dir, Some("acme"), "admin");
    let mut secrets: Vec<Secret> = writers
        .iter()
        .chain([&operator, &admin])
        .enumerate()
        .map(|(i, t)| Secret::text(format!("API token {i}"), t))
        .collect();
    if matches!(root, Root::Pkcs11 { .. }) {
        secrets.push(Secret::text("HSM PIN", custodian_crypto::testing::USER_PIN));
    }
    let server = Server::start(&backend, &data_dir, dir.path().join("serve.log"), "trace").await;
    let mut d = Deployment {
        backend,
        dir,
        server: Some(server),
        http: reqwest::Client::new(),
        operator,
        admin: admin.clone(),
        outputs: Vec::new(),
        secrets,
    };

    // The root of trust: shares printed once, then two unseal calls (one share on the command
    // line, one on stdin) after a mistyped share is refused.
    let mut shares = Vec::new();
    if matches!(root, Root::Shamir) {
        let printed = d.cli_ok(
            &["operator", "init", "--shares", "3", "--threshold", "2"],
            None,
            true,
        );
        shares = printed
            .lines()
            .filter_map(|l| l.split_whitespace().last())
            .filter(|s| s.starts_with("cus1-"))
            .map(str::to_owned)
            .collect();
        assert_eq!(shares.len(), 3, "init printed: {printed}");
        let mut mistyped = shares[0].clone().into_bytes();
        let last = mistyped.len() - 1;
        mistyped[last] = if mistyped[last] == b'0' { b'1' } else { b'0' };
        let mistyped = String::from_utf8(mistyped).expect("ASCII");
        assert!(
            !d.cli(&["operator", "unseal", &mistyped], None, false)
                .status
                .success()
        );
        d.cli_ok(&["operator", "unseal", &shares[0]], None, false);
        d.cli_ok(&["operator", "unseal"], Some(&shares[1]), false);
        for (i, share) in shares.iter().enumerate() {
            d.secrets
                .push(Secret::text(format!("share {}", i + 1), share));
        }
    }

    // Records of both tenants, with markers that must stay encrypted; reads, a subject listing,
    // a bad token and a bad body.
    let mut ids = Vec::new();
    for (tenant, writer) in TENANTS.iter().zip(&writers) {
        for n in 0..3 {
            let marker = format!("plaintext-marker-{}", ulid::Ulid::new());
            let body = [
                record_line("app_log", &format!("user-{n}"), &marker),
                record_line("customer_record", &format!("user-{n}"), &marker),
            ]
            .join("\n");
            let (status, answer) = d
                .send(
                    reqwest::Method::POST,
                    &format!("/v1/tenants/{tenant}/records"),
                    writer,
                    Some(body),
                )
                .await;
            assert_eq!(status, 200, "{answer}");
            let answer: Value = serde_json::from_str(&answer).expect("JSON");
            for id in answer["ids"].as_array().expect("ids") {
                ids.push((tenant, writer.clone(), id.as_str().expect("id").to_owned()));
            }
            d.secrets.push(Secret::text("payload marker", &marker));
        }
    }
    for (tenant, token, id) in &ids {
        let path = format!("/v1/tenants/{tenant}/records/{id}");
        let (status, body) = d.send(reqwest::Method::GET, &path, token, None).await;
        assert_eq!(status, 200, "{body}");
    }
    let (status, _) = d
        .send(
            reqwest::Method::GET,
            "/v1/tenants/acme/subjects/user-1/records",
            &writers[0],
            None,
        )
        .await;
    assert_eq!(status, 200);
    let forged = format!("{}x", &writers[0][..writers[0].len() - 1]);
    d.secrets.push(Secret::text("forged API token", &forged));
    let (status, _) = d
        .send(reqwest::Method::GET, "/v1/tenants/acme/keys", &forged, None)
        .await;
    assert_eq!(status, 401);
    let (status, _) = d
        .send(
            reqwest::Method::POST,
            "/v1/tenants/acme/records",
            &writers[0],
            Some("{not json".into()),
        )
        .await;
    assert_eq!(status, 422);
    let (tenant, _, id) = &ids[0];
    let (status, body) = d
        .send(
            reqwest::Method::DELETE,
            &format!("/v1/tenants/{tenant}/records/{id}"),
            &d.admin,
            None,
        )
        .await;
    assert!(status == 200 || status == 204, "{status}: {body}");
    let (status, _) = d
        .send(
            reqwest::Method::GET,
            "/v1/tenants/acme/audit/checkpoint",
            &d.admin,
            None,
        )
        .await;
    assert_eq!(status, 200);

    // The root key, and every key as it is before the rotation destroys the old KEK. The HSM
    // key cannot be extracted (that is the point): a second session on the token unwraps what
    // it wraps.
    let root_key: Box<dyn RootKeyProvider> = match &root {
        Root::Shamir => {
            let parsed: Vec<_> = shares[..2]
                .iter()
                .map(|s| custodian_crypto::shamir::Share::parse(s).expect("share"))
                .collect();
            let key = custodian_crypto::shamir::combine(&parsed).expect("combine shares");
            d.secrets.push(Secret::key("root key (from shares)", &key));
            Box::new(SoftwareRootKey::new("shamir", &key))
        }
        Root::Dev => {
            let text =
                std::fs::read_to_string(d.data_dir().join("dev-root.key")).expect("dev key file");
            let hex = text
                .lines()
                .find(|l| !l.starts_with('#') && !l.trim().is_empty())
                .expect("key line");
            let key: Zeroizing<[u8; 32]> = Zeroizing::new(std::array::from_fn(|i| {
                u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).expect("hex")
            }));
            d.secrets.push(Secret::key("dev root key", &key));
            Box::new(SoftwareRootKey::new("dev", &key))
        }
        Root::Pkcs11 { module, .. } => {
            let config = custodian_crypto::Pkcs11Config {
                module: module.clone(),
                slot: None,
                token_label: Some(custodian_crypto::testing::TOKEN_LABEL.to_owned()),
                key_label: "leak-check-root".to_owned(),
                pin: Zeroizing::new(custodian_crypto::testing::USER_PIN.to_owned()),
            };
            let (hsm_key, created) =
                custodian_crypto::Pkcs11RootKey::open(&config, false).expect("open the HSM key");
            assert!(!created, "the server made the HSM key");
            Box::new(hsm_key)
        }
    };
    d.collect_keys(root_key.as_ref(), "before rotation").await;

    // Rotation, key status, backup and restore, seal and unseal again.
    d.cli_ok(&["keys", "rotate", "--tenant", "acme"], None, false);
    d.cli_ok(&["keys", "status"], None, false);
    let backup = d.dir.path().join("keys.backup");
    let backup_arg = backup.to_str().expect("UTF-8 path").to_owned();
    d.cli_ok(&["keys", "backup", "--out", &backup_arg], None, false);
    d.cli_ok(&["keys", "restore", &backup_arg], None, false);
    if matches!(root, Root::Shamir) {
        d.cli_ok(&["operator", "seal"], None, false);
        d.cli_ok(&["operator", "unseal", &shares[2]], None, false);
        d.cli_ok(&["operator", "unseal", &shares[0]], None, false);
    }
    for (tenant, token, id) in &ids[1..] {
        let path = format!("/v1/tenants/{tenant}/records/{id}");
        let (status, body) = d.send(reqwest::Method::GET, &path, token, None).await;
        assert_eq!(status, 200, "after rotation and restore: {body}");
    }
    let server_log = {
        let mut server = d.server.take().expect("server");
        server.kill();
        server.log_text()
    };
    d.collect_keys(root_key.as_ref(), "after rotation").await;
    // Enough was exercised for the search to mean something.
    let keys = d
        .secrets
        .iter()
        .filter(|s| s.forms.len() > 1)
        .map(|s| s.what.as_str())
        .collect::<Vec<_>>();
    assert!(
        keys.iter().filter(|w| w.starts_with("KEK acme")).count() >= 2
            && keys.iter().filter(|w| w.starts_with("data key")).count() >= 8
            && keys.iter().any(|w| w.starts_with("index key"))
            && keys.iter().any(|w| w.starts_with("audit signing seed"))
            && keys.iter().any(|w| w.starts_with("audit body secret"))
            && keys
                .iter()
                .filter(|w| w.starts_with("audit period key"))
                .count()
                >= 2,
        "too few keys collected: {keys:?}"
    );
    assert!(
        server_log.lines().count() > 100 && server_log.contains(" DEBUG "),
        "the server logged too little for the search to mean anything:\n{server_log}"
    );

    let mut found = leaks(&d.secrets, "the server log", server_log.as_bytes());
    for (place, text) in &d.outputs {
        found.extend(leaks(&d.secrets, place, text));
    }
    // On disk: everything except the dev key file, which holds the dev root key by design.
    for file in files_under(d.dir.path()) {
        if file.file_name().is_some_and(|n| n == "dev-root.key") {
            continue;
        }
        // SQLite removes its journal files as it goes: one may vanish after the listing.
        let bytes = match std::fs::read(&file) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => panic!("read {}: {e}", file.display()),
        };
        found.extend(leaks(&d.secrets, &file.display().to_string(), &bytes));
    }
    assert!(
        found.is_empty(),
        "secrets leaked ({} secrets searched):\n{}",
        d.secrets.len(),
        found.join("\n")
    );
    eprintln!(
        "[{}] searched {} secrets in {} log lines, {} CLI outputs and the data directory: none found",
        d.backend.name,
        d.secrets.len(),
        server_log.lines().count(),
        d.outputs.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shamir_on_sqlite_leaves_no_secret_in_logs_or_files() {
    key_lifecycle_leaves_no_secret_behind(Backend::sqlite(), Root::Shamir).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_key_on_postgres_leaves_no_secret_in_logs() {
    let Some((backend, _schema)) = Backend::postgres("leaks").await else {
        return;
    };
    key_lifecycle_leaves_no_secret_behind(backend, Root::Dev).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hsm_pin_and_wrapped_keys_stay_out_of_logs() {
    let hsm_dir = tempfile::tempdir().expect("temp dir");
    let Some(hsm) = custodian_crypto::testing::SoftHsm::init(hsm_dir.path()) else {
        return;
    };
    // SAFETY: set before this process loads the module (to unwrap what the server wrapped);
    // the standard library's environment lock orders it with the other tests' process spawns.
    unsafe {
        std::env::set_var("SOFTHSM2_CONF", &hsm.conf);
    }
    let backend = Backend::sqlite()
        .with_env("SOFTHSM2_CONF", hsm.conf.to_str().expect("UTF-8 path"))
        .with_env(PIN_ENV, custodian_crypto::testing::USER_PIN);
    key_lifecycle_leaves_no_secret_behind(
        backend,
        Root::Pkcs11 {
            _hsm_dir: hsm_dir,
            module: hsm.module,
        },
    )
    .await;
}
