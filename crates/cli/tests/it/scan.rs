//! `custodian scan` with the real binary: findings as JSON lines without values, redaction,
//! exit codes for CI use, stdin, and input that is not UTF-8.

use std::io::Write;
use std::process::{Command, Stdio};

fn scan(args: &[&str], input: &[u8]) -> (Option<i32>, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_custodian"))
        .arg("scan")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.code(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

const TEXT: &[u8] =
    b"hello\ncontact alice@acme-corp.io card 4539 1488 0343 6467\ntest card 4111111111111111\n";

#[test]
fn findings_name_entity_and_place_but_never_the_value() {
    let (code, out, err) = scan(&[], TEXT);
    assert_eq!(code, Some(1), "{err}");
    let findings: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let summary: Vec<(u64, &str, bool)> = findings
        .iter()
        .map(|f| {
            (
                f["line"].as_u64().unwrap(),
                f["entity"].as_str().unwrap(),
                f["test"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            (2, "EMAIL_ADDRESS", false),
            (2, "CREDIT_CARD", false),
            (3, "CREDIT_CARD", true)
        ]
    );
    assert_eq!(findings[0]["start"], 8);
    assert!(!out.contains("alice") && !out.contains("4539") && !err.contains("alice"));
}

#[test]
fn redaction_keeps_everything_else() {
    let (code, out, _) = scan(&["--redact"], TEXT);
    assert_eq!(code, Some(1));
    assert_eq!(
        out,
        "hello\ncontact <EMAIL_ADDRESS> card <CREDIT_CARD>\ntest card <CREDIT_CARD>\n"
    );
}

#[test]
fn clean_or_test_only_input_exits_0() {
    assert_eq!(scan(&[], b"nothing to see\n").0, Some(0));
    assert_eq!(
        scan(&[], b"docs use 4111111111111111 and 192.0.2.1").0,
        Some(0)
    );
    let (code, _, err) = scan(&[], b"\xff\xfe binary \x00 junk\n");
    assert_eq!(code, Some(0), "{err}");
}

#[test]
fn a_missing_file_is_a_clear_error() {
    let (code, _, err) = scan(&["/nonexistent/file.txt"], b"");
    assert_eq!(code, Some(1));
    assert!(err.contains("cannot open /nonexistent/file.txt"), "{err}");
}

#[test]
fn transform_de_identifies_record_lines_as_ingest_would() {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.toml");
    std::fs::write(
        &policy,
        format!(
            "{}\n[classes.internal]\npii = \"redact\"\n\n[data_types.profile]\nclass = \"internal\"\nretention = \"tier\"\n\n[data_types.profile.fields]\nemail = \"pseudonymize\"\ncard = \"tokenize\"\naccount = \"fpe\"\n",
            crate::harness::default_policy_text()
        ),
    )
    .unwrap();
    let key = dir.path().join("transform.key");
    std::fs::write(&key, "ab".repeat(32)).unwrap();
    let input = concat!(
        r#"{"type":"profile","subjects":["s1"],"event_time":"2026-01-01T00:00:00Z","payload":{"email":"lu@corp.io","card":"4539578763621486","note":"reach me at +1 415 555 2671"}}"#,
        "\n\n",
        r#"{"type":"nope","payload":{}}"#,
        "\n",
        r#"{"type":"profile","payload":{"account":"12"}}"#,
        "\n"
    );
    let run = |extra: &[&str]| {
        let mut args = vec!["--transform", policy.to_str().unwrap()];
        args.extend_from_slice(extra);
        scan(&args, input.as_bytes())
    };
    let (code, out, err) = run(&["--key-file", key.to_str().unwrap()]);
    assert_eq!(code, Some(1), "two lines are refused: {err}");
    assert!(err.contains("line 3: unknown data type \"nope\""), "{err}");
    assert!(
        err.contains("line 4: field account: format-preserving encryption cannot apply"),
        "{err}"
    );
    assert!(!err.contains("\"12\""), "{err}");
    let lines: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1);
    let payload = &lines[0]["payload"];
    assert_eq!(
        lines[0]["event_time"], "2026-01-01T00:00:00Z",
        "other fields kept"
    );
    assert!(payload["card"].as_str().unwrap().starts_with("tok_"));
    assert_ne!(payload["email"], "lu@corp.io");
    assert_eq!(payload["note"], "reach me at <PHONE_NUMBER>");
    assert_eq!(lines[0]["findings"][0]["entity"], "PHONE_NUMBER");
    assert!(!out.contains("4539578763621486") && !out.contains("lu@corp.io"));
    // The same key file gives the same pseudonyms and tokens; no key file, other ones.
    let (_, again, _) = run(&["--key-file", key.to_str().unwrap()]);
    assert_eq!(again, out);
    let (_, fresh, err) = run(&[]);
    assert!(err.contains("no --key-file"), "{err}");
    let fresh: serde_json::Value = serde_json::from_str(fresh.lines().next().unwrap()).unwrap();
    assert_ne!(fresh["payload"]["email"], payload["email"]);
}

#[test]
fn transform_applies_entity_rules_inside_free_text() {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.toml");
    let rules = "\n[data_types.ticket]\nclass = \"internal\"\nretention = \"tier\"\n\n[data_types.ticket.fields]\n\"note[CREDIT_CARD]\" = \"tokenize\"\n\"*[EMAIL_ADDRESS]\" = \"pseudonymize\"\n\"*[IP_ADDRESS]\" = \"truncate_ip\"\n\"*[PHONE_NUMBER]\" = { transform = \"mask\", keep_last = 4 }\n";
    std::fs::write(
        &policy,
        format!("{}{rules}", crate::harness::default_policy_text()),
    )
    .unwrap();
    let key = dir.path().join("transform.key");
    std::fs::write(&key, "cd".repeat(32)).unwrap();
    let input = concat!(
        r#"{"type":"ticket","subjects":["s1"],"payload":{"note":"card 4539 5787 6362 1486 from lu@corp.io at 81.2.69.160, call +1 415 555 2671","title":"mail lu@corp.io"}}"#,
        "\n"
    );
    let args = [
        "--transform",
        policy.to_str().unwrap(),
        "--key-file",
        key.to_str().unwrap(),
    ];
    let (code, out, err) = scan(&args, input.as_bytes());
    assert_eq!(code, Some(0), "nothing refused: {err}");
    let line: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    let note = line["payload"]["note"].as_str().unwrap();
    let words: Vec<&str> = note.split_whitespace().collect();
    assert_eq!(words[0], "card");
    assert!(words[1].starts_with("tok_"), "{note}");
    assert!(words[3].starts_with("pse_"), "{note}");
    assert!(
        note.ends_with("at 81.2.69.0, call +* *** *** 2671"),
        "{note}"
    );
    // The `*` rule covers every field; one pseudonym per address within a key.
    assert_eq!(line["payload"]["title"], format!("mail {}", words[3]));
    let entities: Vec<&str> = line["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["entity"].as_str().unwrap())
        .collect();
    assert_eq!(
        entities,
        [
            "CREDIT_CARD",
            "EMAIL_ADDRESS",
            "IP_ADDRESS",
            "PHONE_NUMBER",
            "EMAIL_ADDRESS"
        ]
    );
    for value in ["4539", "lu@corp.io", "81.2.69.160", "555 2671"] {
        assert!(!out.contains(value), "{value} in {out}");
    }
    // Deterministic under one key file.
    assert_eq!(scan(&args, input.as_bytes()).1, out);
}

#[test]
fn transform_refuses_an_entity_rule_that_cannot_apply() {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.toml");
    let rules = "\n[data_types.ticket]\nclass = \"internal\"\nretention = \"tier\"\n\n[data_types.ticket.fields]\n\"note[CREDIT_CARD]\" = \"truncate_ip\"\n\"*[EMAIL_ADRESS]\" = \"redact\"\n";
    std::fs::write(
        &policy,
        format!("{}{rules}", crate::harness::default_policy_text()),
    )
    .unwrap();
    let (code, out, err) = scan(
        &["--transform", policy.to_str().unwrap()],
        b"{\"type\":\"ticket\",\"payload\":{}}\n",
    );
    assert_eq!(code, Some(1), "{err}");
    assert!(out.is_empty(), "{out}");
    assert!(
        err.contains(
            "truncate IP cannot apply to CREDIT_CARD: truncate_ip applies to IP_ADDRESS only"
        ),
        "{err}"
    );
    assert!(err.contains("unknown entity \"EMAIL_ADRESS\""), "{err}");
}
