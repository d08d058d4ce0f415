//! The Shamir root of trust end to end: a server that starts sealed, `operator init` printing
//! shares once, unseal share by share (wrong, foreign and repeated shares refused without
//! losing progress, K-1 shares leave it sealed), sealing by an operator, and a restart.

use custodian_core::access::Role;
use custodian_core::policy::Policy;
use jiff::ToSpan;
use reqwest::Method;
use serde_json::{Value, json};

use crate::harness::{
    Backend, DEFAULT_BODY_LIMIT, TestServer, custodian_cli, default_policy_text, now, record_line,
};

fn shamir_policy() -> Policy {
    let text = default_policy_text().replace(
        "[keys]\nroot = \"dev\"\n",
        "[keys]\nroot = \"shamir\"\nshamir = { shares = 5, threshold = 3 }\n",
    );
    Policy::parse("shamir.toml", &text).unwrap_or_else(|d| panic!("{d}"))
}

async fn unseal(server: &TestServer, share: &str) -> crate::harness::Reply {
    let body = json!({ "share": share }).to_string().into_bytes();
    server
        .send(
            Method::POST,
            "/v1/system/unseal",
            None,
            &[("content-type", "application/json")],
            Some(body),
        )
        .await
}

async fn status(server: &TestServer) -> Value {
    server.get("/v1/system/seal-status", None).await.ok_json()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shamir_init_unseal_seal_and_restart() {
    let server = TestServer::start_with(Backend::Sqlite, DEFAULT_BODY_LIMIT, shamir_policy())
        .await
        .unwrap();
    let writer = server.token("acme", Role::Writer).await;
    let operator = server.operator_token().await;
    let s = status(&server).await;
    assert_eq!(
        (s["initialized"].clone(), s["sealed"].clone()),
        (json!(false), json!(true))
    );
    // Sealed: data routes answer 503 `sealed`, nothing is read or stored.
    let t = (now() - 1.hour()).to_string();
    let line = record_line("app_log", &["alice"], &t, json!({"msg": "hello"}));
    server
        .post_records("acme", &writer, &line, None)
        .await
        .problem(503, "sealed");

    // Init through the CLI: five shares printed once; a second init is refused.
    let out = custodian_cli(&[
        "operator",
        "init",
        "--server",
        &server.base,
        "--shares",
        "5",
        "--threshold",
        "3",
    ])
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let shares: Vec<String> = stdout
        .lines()
        .filter_map(|l| l.split_once(": ").map(|(_, s)| s.to_owned()))
        .collect();
    assert_eq!(shares.len(), 5, "{stdout}");
    let again = server
        .send(
            Method::POST,
            "/v1/system/init",
            None,
            &[("content-type", "application/json")],
            Some(br#"{"shares": 5, "threshold": 3}"#.to_vec()),
        )
        .await;
    again.problem(409, "already-initialized");
    // The shares are stored nowhere: not in the key store, not in the data directory.
    for share in &shares {
        let hex = &share["cus1-".len()..];
        for entry in walk(server.data_dir()) {
            let bytes = std::fs::read(&entry).unwrap();
            assert!(
                !bytes.windows(hex.len()).any(|w| w == hex.as_bytes()),
                "a share is in {}",
                entry.display()
            );
        }
    }

    // Wrong, foreign and repeated shares are refused; progress is kept.
    unseal(&server, "cus1-nonsense")
        .await
        .problem(422, "invalid-share");
    let foreign = custodian_crypto::shamir::split(&[7; 32], 5, 3).unwrap()[0].to_text();
    let refused = unseal(&server, &foreign).await;
    refused.problem(422, "invalid-share");
    assert!(
        refused.text().contains("not one of this deployment"),
        "{}",
        refused.text()
    );
    let s = unseal(&server, &shares[0]).await.ok_json();
    assert_eq!(
        (s["sealed"].clone(), s["progress"].clone()),
        (json!(true), json!(1))
    );
    unseal(&server, &shares[0])
        .await
        .problem(422, "invalid-share");
    let s = unseal(&server, &shares[3]).await.ok_json();
    assert_eq!(
        (s["sealed"].clone(), s["progress"].clone()),
        (json!(true), json!(2))
    );
    // K-1 shares: still sealed.
    server
        .post_records("acme", &writer, &line, None)
        .await
        .problem(503, "sealed");
    let s = unseal(&server, &shares[4]).await.ok_json();
    assert_eq!(
        (s["sealed"].clone(), s["progress"].clone()),
        (json!(false), json!(0))
    );

    let ids = server.ingest("acme", &writer, &line).await;
    let read = server.get_record("acme", &writer, &ids[0]).await.ok_json();
    assert_eq!(read["payload"], json!({"msg": "hello"}));

    // Sealing needs an operator; then every data route is sealed again.
    server
        .send(Method::POST, "/v1/system/seal", Some(&writer), &[], None)
        .await
        .problem(403, "forbidden");
    let out = custodian_cli(&[
        "operator",
        "seal",
        "--server",
        &server.base,
        "--token",
        &operator,
    ])
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    server
        .get_record("acme", &writer, &ids[0])
        .await
        .problem(503, "sealed");
    let auditor = server.token("acme", Role::Auditor).await;
    server
        .get("/v1/tenants/acme/audit/checkpoint", Some(&auditor))
        .await
        .problem(503, "sealed");

    // Another subset unseals, through the CLI reading the share from its argument.
    for share in [&shares[1], &shares[2], &shares[4]] {
        let out = custodian_cli(&["operator", "unseal", "--server", &server.base, share]).await;
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert_eq!(status(&server).await["sealed"], json!(false));
    server.get_record("acme", &writer, &ids[0]).await.ok_json();

    // A restarted node starts sealed and unseals with any three shares.
    let node = server.another_node().await;
    assert_eq!(status(&node).await["sealed"], json!(true));
    node.get_record("acme", &writer, &ids[0])
        .await
        .problem(503, "sealed");
    for share in [&shares[0], &shares[1], &shares[2]] {
        unseal(&node, share).await.ok_json();
    }
    let read = node.get_record("acme", &writer, &ids[0]).await.ok_json();
    assert_eq!(read["payload"], json!({"msg": "hello"}));
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}
