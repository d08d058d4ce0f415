//! The access export (GDPR Art. 15 and 20): everything held about a subject as a tar archive
//! streamed to the caller, never written to disk in clear.
//!
//! ```text
//! data/<data type>.json   a JSON array of the subject's records of that type, decrypted
//! schema.json             JSON Schema of the records, and each data type's class and retention
//! manifest.json           the files with their SHA-256 and size, the request, the tenant
//! manifest.sig            a signed note (the deployment's audit key) over manifest.json
//! ```
//!
//! Tar needs each file's size before its bytes, so the records are read twice: once to size and
//! hash each file, once to send it. Memory stays constant (a page of records and their ids),
//! whatever the subject's size. Field values de-identified at ingest are exported as stored.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use aws_lc_rs::digest;
use axum::body::Bytes;
use custodian_core::ids::{Class, RecordId, TenantId};
use custodian_store::{StoredRecord, SubjectRequest};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::mpsc;

use super::{Asked, Pages, answer, open_request};
use crate::audit::{Actor, hex};
use crate::ingest::SealedBody;
use crate::{AppState, ServerError};

/// The first line of an export's signed note, and the manifest's `format`.
pub const EXPORT_FORMAT: &str = "custodian subject export v1";
const BLOCK: usize = 512;

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ExportManifest {
    pub format: String,
    pub tenant: String,
    /// The subject's keyed pseudonym (hex): the id itself is in the records.
    pub subject: String,
    pub request: String,
    pub generated_at: Timestamp,
    pub files: Vec<ExportFile>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ExportFile {
    pub path: String,
    pub bytes: u64,
    pub sha256: String,
    /// The records in the file (data files only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub records: Option<u64>,
}

impl ExportManifest {
    /// The text the signed note carries: it names the manifest by its hash.
    pub fn signed_text(tenant: &str, request: &str, manifest: &[u8]) -> String {
        format!(
            "{EXPORT_FORMAT}\ntenant {tenant}\nrequest {request}\nmanifest.json sha256 {}\n",
            hex(&custodian_crypto::sha256(manifest))
        )
    }
}

/// One data file: its records (by id, as first read), size and hash.
struct DataFile {
    ids: HashSet<RecordId>,
    bytes: u64,
    hash: digest::Context,
}

type Chunks = mpsc::Sender<Result<Bytes, std::io::Error>>;

/// Logs an access request for `subject` and starts the export; the archive arrives on the
/// returned channel. The request is answered when the last byte is sent.
pub async fn export(
    state: Arc<AppState>,
    actor: Actor,
    tenant: TenantId,
    subject: &str,
    asked: &Asked<'_>,
) -> Result<
    (
        SubjectRequest,
        mpsc::Receiver<Result<Bytes, std::io::Error>>,
    ),
    ServerError,
> {
    let pseudonym = state.keys.tenant(&tenant).await?.pseudonym(subject);
    let request = open_request(&state, &actor, &tenant, pseudonym, asked).await?;
    // Sizing first: an error here is still an HTTP error, not a cut-off archive.
    let files = size_files(&state, &tenant, &pseudonym).await?;
    let (tx, rx) = mpsc::channel(8);
    let answered = request.clone();
    tokio::spawn(async move {
        let sent = send(&state, &actor, &tenant, &pseudonym, &request, files, &tx).await;
        if let Err(e) = sent {
            tracing::error!(request = %request.id, error = %e, "subject export failed midway");
            let _ = tx.send(Err(std::io::Error::other(e.to_string()))).await;
        }
    });
    Ok((answered, rx))
}

async fn size_files(
    state: &AppState,
    tenant: &TenantId,
    pseudonym: &[u8; 32],
) -> Result<BTreeMap<String, DataFile>, ServerError> {
    let mut files: BTreeMap<String, DataFile> = BTreeMap::new();
    let mut pages = Pages::new(tenant, pseudonym);
    while let Some(page) = pages.next(state).await? {
        for record in page {
            let item = record_json(state, tenant, &record).await?;
            let file = files
                .entry(record.data_type.to_string())
                .or_insert_with(|| DataFile {
                    ids: HashSet::new(),
                    bytes: 0,
                    hash: digest::Context::new(&digest::SHA256),
                });
            let separator: &[u8] = if file.ids.is_empty() { b"[\n" } else { b",\n" };
            file.hash.update(separator);
            file.hash.update(&item);
            file.bytes += (separator.len() + item.len()) as u64;
            file.ids.insert(record.id);
        }
    }
    for file in files.values_mut() {
        file.hash.update(b"\n]\n");
        file.bytes += 3;
    }
    Ok(files)
}

#[allow(clippy::too_many_arguments)]
async fn send(
    state: &AppState,
    actor: &Actor,
    tenant: &TenantId,
    pseudonym: &[u8; 32],
    request: &SubjectRequest,
    files: BTreeMap<String, DataFile>,
    tx: &Chunks,
) -> Result<(), ServerError> {
    let now = state.clock.now();
    let mut listed = Vec::new();
    let mut total = 0u64;
    for (data_type, file) in files {
        let path = format!("data/{data_type}.json");
        push(tx, header(&path, file.bytes, now)?).await?;
        let mut sent = 0u64;
        let mut first = true;
        let mut pages = Pages::new(tenant, pseudonym);
        while let Some(page) = pages.next(state).await? {
            for record in page {
                if record.data_type.as_str() != data_type || !file.ids.contains(&record.id) {
                    continue;
                }
                let mut chunk = if first {
                    b"[\n".to_vec()
                } else {
                    b",\n".to_vec()
                };
                first = false;
                chunk.extend_from_slice(&record_json(state, tenant, &record).await?);
                sent += chunk.len() as u64;
                push(tx, chunk).await?;
            }
        }
        sent += 3;
        if sent != file.bytes {
            return Err(ServerError::Internal(format!(
                "the subject's {data_type} records changed during the export; ask again"
            )));
        }
        push(tx, b"\n]\n".to_vec()).await?;
        push(tx, padding(file.bytes)).await?;
        total += file.ids.len() as u64;
        listed.push(ExportFile {
            path,
            bytes: file.bytes,
            sha256: hex(file.hash.finish().as_ref()),
            records: Some(file.ids.len() as u64),
        });
    }
    let schema = serde_json::to_vec_pretty(&schema(state, tenant, &listed))
        .map_err(|e| ServerError::Internal(e.to_string()))?;
    listed.push(ExportFile {
        path: "schema.json".into(),
        bytes: schema.len() as u64,
        sha256: hex(&custodian_crypto::sha256(&schema)),
        records: None,
    });
    send_file(tx, "schema.json", schema, now).await?;
    let manifest = ExportManifest {
        format: EXPORT_FORMAT.into(),
        tenant: tenant.to_string(),
        subject: hex(pseudonym),
        request: request.id.clone(),
        generated_at: now,
        files: listed.clone(),
    };
    let manifest =
        serde_json::to_vec_pretty(&manifest).map_err(|e| ServerError::Internal(e.to_string()))?;
    let note = state.audit.sign_note(&ExportManifest::signed_text(
        tenant.as_str(),
        &request.id,
        &manifest,
    ))?;
    send_file(tx, "manifest.json", manifest, now).await?;
    send_file(tx, "manifest.sig", note.into_bytes(), now).await?;
    push(tx, vec![0; 2 * BLOCK]).await?;
    let outcome = json!({"records": total, "files": listed});
    answer(state, actor, request, "completed", &outcome, None).await?;
    Ok(())
}

/// One exported record: its facts in clear, its subjects and payload decrypted.
async fn record_json(
    state: &AppState,
    tenant: &TenantId,
    record: &StoredRecord,
) -> Result<Vec<u8>, ServerError> {
    let plaintext = crate::records::open(state, tenant, record).await?;
    let body: SealedBody<'_> = serde_json::from_slice(&plaintext)
        .map_err(|e| ServerError::Internal(format!("sealed body: {e}")))?;
    let retention = state
        .policy
        .tenant(tenant)
        .zip(state.policy.data_type(record.data_type.as_str()))
        .map(|(t, d)| state.policy.effective_retention(t, d).to_string());
    let mut item = json!({
        "id": record.id.to_string(),
        "type": record.data_type.as_str(),
        "class": Class::as_str(record.class),
        "subjects": body.subjects,
        "event_time": record.event_time,
        "ingest_time": record.ingest_time,
        "expires_at": record.expires_at,
        "retention": retention,
        "payload": body.payload,
    });
    if !body.findings.is_empty() {
        item["findings"] = json!(body.findings);
    }
    serde_json::to_vec(&item).map_err(|e| ServerError::Internal(e.to_string()))
}

/// JSON Schema (2020-12) of the exported records, with what the policy says of each type.
fn schema(state: &AppState, tenant: &TenantId, files: &[ExportFile]) -> serde_json::Value {
    let tenant_policy = state.policy.tenant(tenant);
    let types: serde_json::Map<String, serde_json::Value> = files
        .iter()
        .filter_map(|f| {
            let name = f.path.strip_prefix("data/")?.strip_suffix(".json")?;
            let t = state.policy.data_type(name)?;
            Some((
                name.to_owned(),
                json!({
                    "file": f.path,
                    "description": t.description,
                    "class": Class::as_str(t.class),
                    "retention": tenant_policy.map(|tp| state.policy.effective_retention(tp, t).to_string()),
                    "fields_deidentified_at_ingest": t.fields.iter().map(|r| json!({"field": r.field, "transform": r.transform.to_string()})).collect::<Vec<_>>(),
                }),
            ))
        })
        .collect();
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "custodian subject export: the records of one data type",
        "type": "array",
        "items": {
            "type": "object",
            "required": ["id", "type", "class", "subjects", "event_time", "ingest_time", "payload"],
            "properties": {
                "id": {"type": "string", "description": "record id (ULID)"},
                "type": {"type": "string", "description": "data type"},
                "class": {"type": "string", "description": "classification"},
                "subjects": {"type": "array", "items": {"type": "string"}, "description": "the subject ids the record names"},
                "event_time": {"type": "string", "format": "date-time"},
                "ingest_time": {"type": "string", "format": "date-time"},
                "expires_at": {"type": ["string", "null"], "format": "date-time", "description": "when retention ends; null while it waits for an event or is kept until deleted"},
                "retention": {"type": ["string", "null"], "description": "the retention rule that applies"},
                "payload": {"description": "the record as sent, with fields de-identified at ingest as stored"},
                "findings": {"type": "array", "description": "personal data or secrets detection found in the payload's free text at ingest: field, entity, byte offsets (never values)"}
            }
        },
        "x-custodian-data-types": types,
    })
}

async fn push(tx: &Chunks, bytes: Vec<u8>) -> Result<(), ServerError> {
    tx.send(Ok(Bytes::from(bytes)))
        .await
        .map_err(|_| ServerError::Internal("the client went away during the export".into()))
}

async fn send_file(
    tx: &Chunks,
    path: &str,
    bytes: Vec<u8>,
    now: Timestamp,
) -> Result<(), ServerError> {
    let len = bytes.len() as u64;
    push(tx, header(path, len, now)?).await?;
    push(tx, bytes).await?;
    push(tx, padding(len)).await
}

fn header(path: &str, size: u64, now: Timestamp) -> Result<Vec<u8>, ServerError> {
    let mut h = tar::Header::new_ustar();
    h.set_path(path)
        .map_err(|e| ServerError::Internal(format!("tar path {path}: {e}")))?;
    h.set_size(size);
    h.set_mode(0o644);
    h.set_mtime(now.as_second().max(0) as u64);
    h.set_entry_type(tar::EntryType::Regular);
    h.set_cksum();
    Ok(h.as_bytes().to_vec())
}

fn padding(size: u64) -> Vec<u8> {
    vec![0; (BLOCK - (size as usize % BLOCK)) % BLOCK]
}

/// What a verified export holds.
#[derive(Debug)]
pub struct VerifiedExport {
    pub manifest: ExportManifest,
    /// The records in the data files.
    pub records: u64,
}

/// Checks an export offline: every file the manifest lists is present once with its size and
/// SHA-256, nothing else is in the archive, the manifest parses, and the signed note verifies
/// with `verifier` and names this manifest's hash, tenant and request. The error says what
/// failed.
pub fn verify_export(
    input: impl std::io::Read,
    verifier: &custodian_tlog::Verifier,
) -> Result<VerifiedExport, String> {
    let mut archive = tar::Archive::new(input);
    let mut seen: BTreeMap<String, (u64, String)> = BTreeMap::new();
    let (mut manifest, mut note) = (None, None);
    let entries = archive
        .entries()
        .map_err(|e| format!("not a tar archive: {e}"))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| format!("the archive is damaged: {e}"))?;
        let path = entry
            .path()
            .map_err(|e| format!("an entry has a bad path: {e}"))?
            .to_string_lossy()
            .into_owned();
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut entry, &mut bytes)
            .map_err(|e| format!("{path}: cannot be read ({e}); the archive is truncated"))?;
        let digest = hex(&custodian_crypto::sha256(&bytes));
        match path.as_str() {
            "manifest.json" => manifest = Some(bytes),
            "manifest.sig" => {
                note = Some(String::from_utf8(bytes).map_err(|_| "manifest.sig is not text")?)
            }
            _ => {
                if seen
                    .insert(path.clone(), (bytes.len() as u64, digest))
                    .is_some()
                {
                    return Err(format!("{path} appears twice"));
                }
            }
        }
    }
    let manifest_bytes = manifest.ok_or("manifest.json is missing")?;
    let note = note.ok_or("manifest.sig is missing")?;
    let manifest: ExportManifest = serde_json::from_slice(&manifest_bytes)
        .map_err(|e| format!("manifest.json is not a manifest: {e}"))?;
    if manifest.format != EXPORT_FORMAT {
        return Err(format!("unknown export format {:?}", manifest.format));
    }
    let signed = verifier
        .open_text(&note)
        .map_err(|e| format!("manifest.sig does not verify with this key: {e}"))?;
    let expected =
        ExportManifest::signed_text(&manifest.tenant, &manifest.request, &manifest_bytes);
    if signed != expected {
        return Err(
            "manifest.sig signs another manifest (its hash, tenant or request differ): manifest.json was changed"
                .into(),
        );
    }
    let mut records = 0;
    for file in &manifest.files {
        let Some((bytes, sha256)) = seen.remove(&file.path) else {
            return Err(format!(
                "{} is listed in the manifest but missing",
                file.path
            ));
        };
        if bytes != file.bytes || sha256 != file.sha256 {
            return Err(format!(
                "{} does not match the manifest (SHA-256 {sha256}, expected {}): it was changed",
                file.path, file.sha256
            ));
        }
        records += file.records.unwrap_or(0);
    }
    if let Some(extra) = seen.keys().next() {
        return Err(format!("{extra} is in the archive but not in the manifest"));
    }
    Ok(VerifiedExport { manifest, records })
}
