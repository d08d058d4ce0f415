//! The server on a PKCS#11 root key in SoftHSM2: records sealed and read back, a restarted node
//! finding the same HSM key, and clear start-up errors for a wrong PIN or a missing key. Its
//! own test binary with one test, because the PKCS#11 module reads its configuration from the
//! process environment once.

#[allow(dead_code, unused_imports, unused_macros)]
#[path = "it/harness.rs"]
mod harness;

use std::sync::Arc;

use custodian_core::access::Role;
use custodian_core::policy::Policy;
use custodian_crypto::testing::{SoftHsm, TOKEN_LABEL, USER_PIN};
use custodian_server::ServerConfig;
use custodian_server::clock::SystemClock;
use harness::{Backend, DEFAULT_BODY_LIMIT, TestServer, default_policy_text, now, record_line};
use jiff::ToSpan;
use serde_json::json;

const PIN_ENV: &str = "CUSTODIAN_TEST_HSM_PIN";

fn pkcs11_policy(module: &str, key_label: &str) -> Policy {
    let text = default_policy_text().replace(
        "[keys]\nroot = \"dev\"\n",
        &format!(
            "[keys]\nroot = \"pkcs11\"\npkcs11 = {{ module = \"{module}\", token_label = \"{TOKEN_LABEL}\", key_label = \"{key_label}\", pin_env = \"{PIN_ENV}\" }}\n"
        ),
    );
    Policy::parse("pkcs11.toml", &text).unwrap_or_else(|d| panic!("{d}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_on_a_softhsm_root_key() {
    let hsm_dir = tempfile::tempdir().unwrap();
    let Some(hsm) = SoftHsm::init(hsm_dir.path()) else {
        return;
    };
    // SAFETY: the only test in this binary; set before the module loads and before any other
    // thread of this test reads the environment.
    unsafe {
        std::env::set_var("SOFTHSM2_CONF", &hsm.conf);
        std::env::set_var(PIN_ENV, USER_PIN);
    }
    let policy = pkcs11_policy(&hsm.module, "custodian-root");
    let server = TestServer::start_with(Backend::Sqlite, DEFAULT_BODY_LIMIT, policy.clone())
        .await
        .unwrap();
    assert_eq!(server.state.keys.root_provider(), "pkcs11");
    let token = server.token("acme", Role::Writer).await;
    let t = (now() - 1.hour()).to_string();
    let ids = server
        .ingest(
            "acme",
            &token,
            &record_line("app_log", &["alice"], &t, json!({"msg": "in the HSM"})),
        )
        .await;
    // A second node opens the same HSM key and reads the record.
    let node = server.another_node().await;
    let read = node.get_record("acme", &token, &ids[0]).await.ok_json();
    assert_eq!(read["payload"], json!({"msg": "in the HSM"}));
    let status = node.get("/v1/system/seal-status", None).await.ok_json();
    assert_eq!(status["provider"], "pkcs11");
    assert_eq!(status["sealed"], false);
    drop(node);

    // Start-up faults are distinct and clear, and nothing is created by them.
    let config = ServerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: server.data_dir().to_owned(),
        database_url: None,
        body_limit: DEFAULT_BODY_LIMIT,
    };
    let store_config = config.store_config();
    let start = |policy: Policy| {
        let (config, store_config) = (config.clone(), store_config.clone());
        async move {
            custodian_server::build_state(policy, &config, &store_config, Arc::new(SystemClock))
                .await
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default()
        }
    };
    let missing_key = start(pkcs11_policy(&hsm.module, "another-label")).await;
    assert!(missing_key.contains("no key labelled"), "{missing_key}");
    let absent_module = start(pkcs11_policy("/nonexistent/libpkcs11.so", "custodian-root")).await;
    assert!(
        absent_module.contains("cannot be loaded"),
        "{absent_module}"
    );
    // The dev root key cannot open this deployment's keys.
    let dev = start(Policy::parse("default.toml", &default_policy_text()).unwrap()).await;
    assert!(dev.contains("pkcs11 provider"), "{dev}");
}
