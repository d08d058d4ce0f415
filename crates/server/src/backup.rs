//! Key-store backups: the whole key store (wrapped keys, shred log, root record) as one JSON
//! document, sealed with AES-256-GCM under a one-off key that the root key wraps. A backup is
//! useless without the deployment's root key, and restoring one replays the shred log (see
//! [`custodian_store::KeyStore::restore`]), so it never brings back a key shredded since.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use custodian_core::ids::TenantId;
use custodian_crypto::RootKeyProvider;
use custodian_store::keys::{AuditShred, WrappedAuditKey};
use custodian_store::{KeySnapshot, ShredEntry, WrappedDataKey, WrappedKek};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::ServerError;

const FORMAT: &str = "custodian-key-backup/v1";
const BACKUP_SECRET: &str = "key-store-backup";

/// The file: a readable header and the sealed body.
#[derive(Serialize, Deserialize)]
struct BackupFile {
    format: String,
    created_at: Timestamp,
    root_provider: String,
    /// The one-off key, wrapped by the root key.
    wrapped_key: String,
    /// The body, sealed under the one-off key with the header as associated data.
    body: String,
}

#[derive(Serialize, Deserialize)]
struct Body {
    index_keys: Vec<(String, String)>,
    /// tenant, version, wrapped, created at.
    keks: Vec<(String, u32, String, Timestamp)>,
    /// tenant, id, KEK version, wrapped.
    data_keys: Vec<(String, String, u32, String)>,
    shred_log: Vec<(String, String, Timestamp)>,
    meta: Vec<(String, String)>,
    /// log, period, id, wrapped. Absent from backups made before audit period keys.
    #[serde(default)]
    audit_keys: Vec<(String, String, String, String)>,
    /// log, period, destroyed at.
    #[serde(default)]
    audit_shreds: Vec<(String, String, Timestamp)>,
}

fn invalid(reason: impl std::fmt::Display) -> ServerError {
    ServerError::InvalidBackup(reason.to_string())
}

fn header_aad(format: &str, created_at: &Timestamp, provider: &str) -> Vec<u8> {
    format!("{format}\n{created_at}\n{provider}\n").into_bytes()
}

/// Seals `snapshot` under the root key.
pub fn seal(
    root: &dyn RootKeyProvider,
    snapshot: KeySnapshot,
    now: Timestamp,
) -> Result<Vec<u8>, ServerError> {
    let b64 = |b: &[u8]| STANDARD.encode(b);
    let body = Body {
        index_keys: snapshot
            .index_keys
            .iter()
            .map(|(t, w)| (t.to_string(), b64(w)))
            .collect(),
        keks: snapshot
            .keks
            .iter()
            .map(|(t, k)| (t.to_string(), k.version, b64(&k.wrapped), k.created_at))
            .collect(),
        data_keys: snapshot
            .data_keys
            .iter()
            .map(|(t, k)| (t.to_string(), k.id.clone(), k.kek_version, b64(&k.wrapped)))
            .collect(),
        shred_log: snapshot
            .shred_log
            .iter()
            .map(|e| (e.tenant.to_string(), e.id.clone(), e.at))
            .collect(),
        meta: snapshot
            .meta
            .iter()
            .map(|(n, v)| (n.clone(), b64(v)))
            .collect(),
        audit_keys: snapshot
            .audit_keys
            .iter()
            .map(|k| {
                (
                    k.log.clone(),
                    k.period.clone(),
                    k.id.clone(),
                    b64(&k.wrapped),
                )
            })
            .collect(),
        audit_shreds: snapshot
            .audit_shreds
            .iter()
            .map(|e| (e.log.clone(), e.period.clone(), e.at))
            .collect(),
    };
    let plain = zeroize::Zeroizing::new(
        serde_json::to_vec(&body).map_err(|e| ServerError::Internal(e.to_string()))?,
    );
    let (key, wrapped_key) = root.new_secret(BACKUP_SECRET)?;
    let aad = header_aad(FORMAT, &now, root.name());
    let sealed = custodian_crypto::seal_blob(&key, &aad, &plain)?;
    let file = BackupFile {
        format: FORMAT.into(),
        created_at: now,
        root_provider: root.name().into(),
        wrapped_key: b64(&wrapped_key),
        body: b64(&sealed),
    };
    serde_json::to_vec_pretty(&file).map_err(|e| ServerError::Internal(e.to_string()))
}

/// Opens a backup made under `root`; a damaged or foreign file is `InvalidBackup`.
pub fn open(root: &dyn RootKeyProvider, bytes: &[u8]) -> Result<KeySnapshot, ServerError> {
    let file: BackupFile = serde_json::from_slice(bytes)
        .map_err(|e| invalid(format!("not a key-store backup: {e}")))?;
    if file.format != FORMAT {
        return Err(invalid(format!(
            "unknown backup format {:?} (this server reads {FORMAT})",
            file.format
        )));
    }
    let unb64 = |s: &str| {
        STANDARD
            .decode(s)
            .map_err(|e| invalid(format!("bad base64: {e}")))
    };
    let key = root
        .unwrap_secret(BACKUP_SECRET, &unb64(&file.wrapped_key)?)
        .map_err(|_| {
            invalid(format!(
                "the backup's key does not open under this deployment's {} root key: it was made by another deployment or is damaged",
                root.name()
            ))
        })?;
    let aad = header_aad(&file.format, &file.created_at, &file.root_provider);
    let plain = custodian_crypto::open_blob(&key, &aad, &unb64(&file.body)?)
        .map_err(|_| invalid("the backup body is damaged or its header was altered"))?;
    let body: Body = serde_json::from_slice(&plain).map_err(invalid)?;
    let tenant = |t: &str| TenantId::from_stored(t).map_err(invalid);
    Ok(KeySnapshot {
        index_keys: body
            .index_keys
            .iter()
            .map(|(t, w)| Ok((tenant(t)?, unb64(w)?)))
            .collect::<Result<_, ServerError>>()?,
        keks: body
            .keks
            .iter()
            .map(|(t, version, w, created_at)| {
                Ok((
                    tenant(t)?,
                    WrappedKek {
                        version: *version,
                        wrapped: unb64(w)?,
                        created_at: *created_at,
                    },
                ))
            })
            .collect::<Result<_, ServerError>>()?,
        data_keys: body
            .data_keys
            .iter()
            .map(|(t, id, kek_version, w)| {
                Ok((
                    tenant(t)?,
                    WrappedDataKey {
                        id: id.clone(),
                        kek_version: *kek_version,
                        wrapped: unb64(w)?,
                    },
                ))
            })
            .collect::<Result<_, ServerError>>()?,
        shred_log: body
            .shred_log
            .iter()
            .map(|(t, id, at)| {
                Ok(ShredEntry {
                    tenant: tenant(t)?,
                    id: id.clone(),
                    at: *at,
                })
            })
            .collect::<Result<_, ServerError>>()?,
        meta: body
            .meta
            .iter()
            .map(|(n, v)| Ok((n.clone(), unb64(v)?)))
            .collect::<Result<_, ServerError>>()?,
        audit_keys: body
            .audit_keys
            .iter()
            .map(|(log, period, id, w)| {
                Ok(WrappedAuditKey {
                    log: log.clone(),
                    period: period.clone(),
                    id: id.clone(),
                    wrapped: unb64(w)?,
                })
            })
            .collect::<Result<_, ServerError>>()?,
        audit_shreds: body
            .audit_shreds
            .iter()
            .map(|(log, period, at)| AuditShred {
                log: log.clone(),
                period: period.clone(),
                at: *at,
            })
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use custodian_crypto::SoftwareRootKey;

    fn snapshot() -> KeySnapshot {
        let acme = TenantId::new("acme").unwrap();
        let at: Timestamp = "2026-05-01T00:00:00Z".parse().unwrap();
        KeySnapshot {
            index_keys: vec![(acme.clone(), vec![1, 2])],
            keks: vec![(
                acme.clone(),
                WrappedKek {
                    version: 2,
                    wrapped: vec![3; 40],
                    created_at: at,
                },
            )],
            data_keys: vec![(
                acme.clone(),
                WrappedDataKey {
                    id: "s/ab".into(),
                    kek_version: 2,
                    wrapped: vec![4; 60],
                },
            )],
            shred_log: vec![ShredEntry {
                tenant: acme,
                id: "b/x/d2026-01-01".into(),
                at,
            }],
            meta: vec![("root".into(), b"{}".to_vec())],
            audit_keys: vec![WrappedAuditKey {
                log: "acme".into(),
                period: "2026-05".into(),
                id: "ak-01".into(),
                wrapped: vec![8; 48],
            }],
            audit_shreds: vec![AuditShred {
                log: "_system".into(),
                period: "2025-04".into(),
                at,
            }],
        }
    }

    #[test]
    fn round_trip_under_the_same_root_only() {
        let root = SoftwareRootKey::new("dev", &[5; 32]);
        let now: Timestamp = "2026-06-01T00:00:00Z".parse().unwrap();
        let bytes = seal(&root, snapshot(), now).unwrap();
        let opened = open(&root, &bytes).unwrap();
        assert_eq!(opened.audit_keys, snapshot().audit_keys);
        assert_eq!(opened.audit_shreds, snapshot().audit_shreds);
        assert_eq!(opened, snapshot());
        // Wrapped keys are inside the sealed body, not readable in the file.
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert!(!text.contains("s/ab") && !text.contains(&STANDARD.encode([4u8; 60])));
        assert!(!text.contains("ak-01") && !text.contains(&STANDARD.encode([8u8; 48])));

        let stranger = SoftwareRootKey::new("dev", &[6; 32]);
        let err = open(&stranger, &bytes).unwrap_err().to_string();
        assert!(err.contains("another deployment"), "{err}");

        // The header is bound to the body.
        let altered = text.replace("2026-06-01", "2026-06-02");
        let err = open(&root, altered.as_bytes()).unwrap_err().to_string();
        assert!(err.contains("damaged or its header was altered"), "{err}");
        let err = open(&root, b"{}").unwrap_err().to_string();
        assert!(err.contains("not a key-store backup"), "{err}");
    }

    #[test]
    fn bodies_from_before_audit_keys_still_read() {
        let body: Body = serde_json::from_str(
            r#"{"index_keys":[],"keks":[],"data_keys":[],"shred_log":[],"meta":[]}"#,
        )
        .unwrap();
        assert!(body.audit_keys.is_empty() && body.audit_shreds.is_empty());
    }
}
