//! Opening and re-sealing stored records: the one place record ciphertext is decrypted. A
//! record moves to another bucket key (re-key) when a hold keeps it past its bucket's
//! destruction, or when the event that starts its retention clock arrives; it is sealed anew
//! with another body or other subjects when a subject's data is rectified or anonymised.

use custodian_core::ids::TenantId;
use custodian_crypto::{DataKey, DataKeyId, RecordAad, RecordKeys};
use custodian_store::StoredRecord;
use zeroize::Zeroizing;

use crate::{AppState, ServerError};

/// The keys a record sealed under `bucket` and `subjects` names: the bucket's, then the
/// subjects' in order.
fn key_ids(record: &StoredRecord, bucket: &str, subjects: &[[u8; 32]]) -> Vec<DataKeyId> {
    let mut ids = vec![DataKeyId::Bucket {
        data_type: record.data_type.clone(),
        bucket: bucket.to_owned(),
    }];
    ids.extend(subjects.iter().copied().map(DataKeyId::Subject));
    ids
}

fn aad<'a>(
    tenant: &'a TenantId,
    record: &'a StoredRecord,
    bucket: &'a str,
    subjects: &'a [[u8; 32]],
) -> RecordAad<'a> {
    RecordAad {
        tenant,
        record: record.id,
        data_type: &record.data_type,
        class: record.class,
        bucket,
        subjects,
    }
}

/// The record's sealed body (subjects and payload), decrypted. A destroyed key gives
/// `KeyDestroyed`; a ciphertext that does not verify, an integrity error.
pub async fn open(
    state: &AppState,
    tenant: &TenantId,
    record: &StoredRecord,
) -> Result<Zeroizing<Vec<u8>>, ServerError> {
    let ids = key_ids(record, &record.key_bucket, &record.key_subjects);
    let keys = state
        .keys
        .data_keys(tenant, &ids, false, &record.id.to_string())
        .await?;
    let subjects: Vec<&DataKey> = ids[1..].iter().map(|id| keys[id].as_ref()).collect();
    let aad = aad(tenant, record, &record.key_bucket, &record.key_subjects);
    Ok(RecordKeys {
        bucket: &keys[&ids[0]],
        subjects: &subjects,
    }
    .open(&aad, &record.sealed)?)
}

/// The record sealed anew under `bucket`'s key (made if it does not exist yet). The plaintext
/// lives only in memory, zeroed on drop.
pub async fn reseal(
    state: &AppState,
    tenant: &TenantId,
    record: &StoredRecord,
    bucket: &str,
) -> Result<Vec<u8>, ServerError> {
    let plaintext = open(state, tenant, record).await?;
    seal_as(
        state,
        tenant,
        record,
        bucket,
        &record.key_subjects,
        &plaintext,
    )
    .await
}

/// `plaintext` sealed as the body of `record` under `bucket`'s key and the keys of `subjects`
/// (sorted, distinct; made if they do not exist yet).
pub async fn seal_as(
    state: &AppState,
    tenant: &TenantId,
    record: &StoredRecord,
    bucket: &str,
    subjects: &[[u8; 32]],
    plaintext: &[u8],
) -> Result<Vec<u8>, ServerError> {
    let ids = key_ids(record, bucket, subjects);
    let keys = state
        .keys
        .data_keys(tenant, &ids, true, &record.id.to_string())
        .await?;
    let subject_keys: Vec<&DataKey> = ids[1..].iter().map(|id| keys[id].as_ref()).collect();
    Ok(RecordKeys {
        bucket: &keys[&ids[0]],
        subjects: &subject_keys,
    }
    .seal(&aad(tenant, record, bucket, subjects), plaintext)?)
}
