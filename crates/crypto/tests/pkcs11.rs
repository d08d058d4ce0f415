//! The PKCS#11 root-key provider against a real SoftHSM2 token: round trips, a non-extractable
//! key, and a distinct error for each fault (wrong PIN, absent module, wrong token, absent key,
//! tampered wrap). One test function, because the module reads its configuration from the
//! process environment once.

use custodian_core::ids::TenantId;
use custodian_crypto::testing::{SoftHsm, TOKEN_LABEL, USER_PIN};
use custodian_crypto::{CryptoError, Pkcs11Config, Pkcs11RootKey, RootKeyProvider};
use zeroize::Zeroizing;

fn config(hsm: &SoftHsm, pin: &str) -> Pkcs11Config {
    Pkcs11Config {
        module: hsm.module.clone(),
        slot: None,
        token_label: Some(TOKEN_LABEL.into()),
        key_label: "custodian-root".into(),
        pin: Zeroizing::new(pin.into()),
    }
}

fn hsm_error(result: Result<(Pkcs11RootKey, bool), CryptoError>) -> String {
    match result {
        Err(CryptoError::Hsm(reason)) => reason,
        Err(other) => panic!("expected an HSM error, got {other}"),
        Ok(_) => panic!("expected an HSM error, got a key"),
    }
}

#[test]
fn pkcs11_root_key_against_softhsm() {
    let dir = tempfile::tempdir().unwrap();
    let Some(hsm) = SoftHsm::init(dir.path()) else {
        return;
    };
    // SAFETY: the only test in this binary, set before the module is loaded or any thread
    // reads the environment.
    unsafe { std::env::set_var("SOFTHSM2_CONF", &hsm.conf) };

    // Faults first: nothing is created by a failed open.
    let absent = hsm_error(Pkcs11RootKey::open(&config(&hsm, USER_PIN), false));
    assert!(absent.contains("no key labelled"), "{absent}");
    let wrong_pin = hsm_error(Pkcs11RootKey::open(&config(&hsm, "0000"), true));
    assert!(wrong_pin.contains("PIN is wrong"), "{wrong_pin}");
    let mut no_module = config(&hsm, USER_PIN);
    no_module.module = dir.path().join("missing.so").display().to_string();
    let err = hsm_error(Pkcs11RootKey::open(&no_module, true));
    assert!(err.contains("cannot be loaded"), "{err}");
    let mut wrong_token = config(&hsm, USER_PIN);
    wrong_token.token_label = Some("not-a-token".into());
    let err = hsm_error(Pkcs11RootKey::open(&wrong_token, true));
    assert!(err.contains("no HSM token is labelled"), "{err}");

    // First open creates the key; the next finds it.
    let (root, created) = Pkcs11RootKey::open(&config(&hsm, USER_PIN), true).unwrap();
    assert!(created);
    let root: &dyn RootKeyProvider = &root;
    assert_eq!(root.name(), "pkcs11");
    let tenant = TenantId::new("acme").unwrap();
    let (kek, wrapped) = root.new_kek(&tenant, 1).unwrap();
    let check = root.new_root_check().unwrap();
    let (secret, wrapped_secret) = root.new_secret("audit").unwrap();

    let (again, created) = Pkcs11RootKey::open(&config(&hsm, USER_PIN), true).unwrap();
    assert!(!created, "a second open must reuse the key");
    let again: &dyn RootKeyProvider = &again;
    again.verify_root_check(&check).unwrap();
    let unwrapped = again.unwrap_kek(&tenant, 1, &wrapped).unwrap();
    assert_eq!(unwrapped.version(), kek.version());
    let id = custodian_crypto::DataKeyId::Subject([3; 32]);
    let dek = custodian_crypto::DataKey::generate().unwrap();
    unwrapped
        .unwrap(&id, &kek.wrap(&id, &dek).unwrap())
        .unwrap();
    assert_eq!(
        *again.unwrap_secret("audit", &wrapped_secret).unwrap(),
        *secret
    );

    // Bound to its context, and tampering is detected inside the HSM.
    let moved = again.unwrap_kek(&tenant, 2, &wrapped);
    assert!(matches!(moved, Err(CryptoError::Decrypt)), "{moved:?}");
    let mut tampered = wrapped.clone();
    *tampered.last_mut().unwrap() ^= 1;
    assert!(matches!(
        again.unwrap_kek(&tenant, 1, &tampered),
        Err(CryptoError::Decrypt)
    ));
    assert!(matches!(
        again.unwrap_kek(&tenant, 1, &wrapped[..10]),
        Err(CryptoError::Malformed(_))
    ));
    // A software root key's wraps are not the HSM's.
    let software = custodian_crypto::SoftwareRootKey::new("dev", &[1; 32]);
    let (_, soft_wrapped) = (&software as &dyn RootKeyProvider)
        .new_kek(&tenant, 1)
        .unwrap();
    assert!(matches!(
        again.unwrap_kek(&tenant, 1, &soft_wrapped),
        Err(CryptoError::Malformed(_))
    ));
    assert!(matches!(
        (&software as &dyn RootKeyProvider).verify_root_check(&check),
        Err(CryptoError::Malformed(_)) | Err(CryptoError::WrongRootKey)
    ));
}
