//! No plaintext at rest: payloads and subject ids carrying unique markers are read back intact
//! over the API, yet no byte of them appears in the SQLite files (database, WAL, shared memory;
//! while running and after shutdown) or in any row of the PostgreSQL schema.

use std::path::Path;

use custodian_core::access::Role;
use jiff::ToSpan;
use serde_json::json;

use crate::harness::{TestServer, ids_of, now, psql, record_line, rfc3339, sorted, unique};

/// Unique strings sent in payloads and as subject ids.
struct Markers(Vec<String>);

impl Markers {
    /// The markers and their lowercase hex encodings (how PostgreSQL prints bytea).
    fn needles(&self) -> Vec<String> {
        self.0
            .iter()
            .flat_map(|m| {
                let hex: String = m.bytes().map(|b| format!("{b:02x}")).collect();
                [m.clone(), hex]
            })
            .collect()
    }

    /// Panics when `haystack` (from `place`) holds any marker.
    fn assert_absent(&self, haystack: &[u8], place: &str) {
        for needle in self.needles() {
            assert!(
                !haystack
                    .windows(needle.len())
                    .any(|w| w == needle.as_bytes()),
                "{needle:?} is stored in clear in {place}"
            );
        }
    }
}

/// Ingests records whose payloads (values and keys) and subject ids carry markers, in several
/// data types, and checks that they read back intact.
async fn ingest_marked_records(server: &TestServer) -> Markers {
    let token = server.token("acme", Role::Writer).await;
    let in_value = unique("payload-value");
    let in_key = unique("payload-key");
    let subject = unique("subject");
    let second_subject = unique("subject");
    let t = rfc3339(now() - 1.hour());
    let payload = json!({"message": in_value.clone(), in_key.clone(): true});
    let body = ["app_log", "customer_record", "payment", "incident_artifact"]
        .iter()
        .map(|data_type| record_line(data_type, &[&subject, &second_subject], &t, payload.clone()))
        .collect::<Vec<_>>()
        .join("\n");
    // With an Idempotency-Key, so the stored answer is scanned too.
    let ids = ids_of(
        &server
            .post_records("acme", &token, &body, Some(&unique("key")))
            .await
            .ok_json(),
    );
    assert_eq!(ids.len(), 4);
    for id in &ids {
        let record = server.get_record("acme", &token, id).await.ok_json();
        assert_eq!(record["payload"], payload);
        assert_eq!(record["subjects"], json!([subject, second_subject]));
    }
    assert_eq!(
        server.subject_ids("acme", &token, &subject, 100).await,
        sorted(ids)
    );
    Markers(vec![in_value, in_key, subject, second_subject])
}

/// Every file under `dir`, recursively, with its contents. A file SQLite removes meanwhile
/// (a journal) is skipped.
pub(crate) fn files_under(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).expect("read data dir") {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                pending.push(path);
            } else {
                match std::fs::read(&path) {
                    Ok(bytes) => files.push((path.display().to_string(), bytes)),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => panic!("read {}: {e}", path.display()),
                }
            }
        }
    }
    files
}

fn assert_dir_clean(dir: &Path, markers: &Markers, when: &str) {
    let files = files_under(dir);
    assert!(
        files.iter().any(|(name, _)| name.ends_with("custodian.db")),
        "no database in {}",
        dir.display()
    );
    // The scan sees what is stored in clear by design (tenant ids), so it would see markers.
    assert!(
        files
            .iter()
            .any(|(_, bytes)| bytes.windows(4).any(|w| w == b"acme")),
        "the scan found no tenant id in {}: it reads the wrong files",
        dir.display()
    );
    for (name, bytes) in &files {
        markers.assert_absent(bytes, &format!("{name} ({when})"));
    }
}

#[tokio::test]
async fn sqlite_files_hold_no_plaintext() {
    let server = TestServer::sqlite().await;
    let markers = ingest_marked_records(&server).await;
    assert_dir_clean(server.data_dir(), &markers, "server running");
    let data_dir = server.stop().await;
    assert_dir_clean(data_dir.path(), &markers, "server stopped");
}

#[tokio::test]
async fn postgres_rows_hold_no_plaintext() {
    let Some(server) = TestServer::postgres().await else {
        return;
    };
    let markers = ingest_marked_records(&server).await;
    let schema = server.schema.clone().expect("schema");
    let tables = psql(&format!(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = '{schema}' ORDER BY 1"
    ))
    .expect("list tables");
    let tables: Vec<&str> = tables.lines().filter(|l| !l.is_empty()).collect();
    for expected in ["api_tokens", "idempotency", "record_subjects", "records"] {
        assert!(tables.contains(&expected), "{expected} missing: {tables:?}");
    }
    let mut everything = String::new();
    for table in &tables {
        let rows = psql(&format!("SELECT t::text FROM {schema}.{table} t"))
            .unwrap_or_else(|e| panic!("dump {table}: {e}"));
        markers.assert_absent(rows.as_bytes(), &format!("table {schema}.{table}"));
        everything.push_str(&rows);
    }
    assert!(
        everything.contains("acme") && everything.contains("\\x"),
        "the dump shows no tenant id or bytea: it reads the wrong rows"
    );
    let count = psql(&format!("SELECT count(*) FROM {schema}.records")).unwrap();
    assert_eq!(count.trim(), "4");
}
