//! The PKCS#11 root-key provider: the root key is a non-extractable AES-256 key inside an HSM,
//! and every wrap and unwrap is an AES-GCM operation the HSM performs (with the wrapping context
//! as associated data), so the root key never exists in this process. Reached through the
//! `cryptoki` crate, which loads the vendor's module at run time.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Mutex, OnceLock};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::mechanism::aead::GcmParams;
use cryptoki::object::{Attribute, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;
use zeroize::Zeroizing;

use crate::{CryptoError, RootKeyProvider};

const WRAP_FORMAT_PKCS11: u8 = 0x11;
const IV_LEN: usize = 12;
const TAG_BITS: u64 = 128;

/// Where the HSM key is and how to log in.
#[derive(Clone)]
pub struct Pkcs11Config {
    /// Path of the vendor's PKCS#11 module (`.so`).
    pub module: String,
    /// The slot id, or the first slot whose token has `token_label`.
    pub slot: Option<u64>,
    pub token_label: Option<String>,
    /// Label of the AES key object.
    pub key_label: String,
    pub pin: Zeroizing<String>,
}

impl fmt::Debug for Pkcs11Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pkcs11Config")
            .field("module", &self.module)
            .field("slot", &self.slot)
            .field("token_label", &self.token_label)
            .field("key_label", &self.key_label)
            .finish_non_exhaustive()
    }
}

/// A logged-in session to the HSM and the handle of the root key inside it.
pub struct Pkcs11RootKey {
    // Sessions are not Sync; wraps are rare (KEKs are cached), so one session suffices.
    session: Mutex<Session>,
    key: ObjectHandle,
    key_label: String,
}

impl fmt::Debug for Pkcs11RootKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pkcs11RootKey({})", self.key_label)
    }
}

fn hsm(what: &str, e: CkError) -> CryptoError {
    let reason = match &e {
        CkError::Pkcs11(RvError::PinIncorrect, _) => "the PIN is wrong".to_owned(),
        CkError::Pkcs11(RvError::PinLocked, _) => "the PIN is locked".to_owned(),
        CkError::Pkcs11(RvError::TokenNotPresent, _) => "no token is present".to_owned(),
        CkError::LibraryLoading(e) => format!("the module cannot be loaded ({e})"),
        other => other.to_string(),
    };
    CryptoError::Hsm(format!("{what}: {reason}"))
}

impl Pkcs11RootKey {
    /// Loads the module, logs in, and finds the root key, creating it when `create` is set
    /// and none exists. Returns the provider and whether the key was created.
    pub fn open(config: &Pkcs11Config, create: bool) -> Result<(Pkcs11RootKey, bool), CryptoError> {
        let context = module_context(&config.module)?;
        let slot = find_slot(&context, config)?;
        let session = context
            .open_rw_session(slot)
            .map_err(|e| hsm("opening an HSM session", e))?;
        // Login is per process and token: another provider of this process may have done it.
        match session.login(UserType::User, Some(&AuthPin::from(config.pin.as_str()))) {
            Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => {}
            Err(e) => return Err(hsm("logging in to the HSM token", e)),
        }
        let template = [
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::Label(config.key_label.as_bytes().to_vec()),
        ];
        let found = session
            .find_objects(&template)
            .map_err(|e| hsm("looking up the root key", e))?;
        let (key, created) = match found.as_slice() {
            [key] => (*key, false),
            [] if create => (generate_key(&session, &config.key_label)?, true),
            [] => {
                return Err(CryptoError::Hsm(format!(
                    "the HSM token has no key labelled {:?}; this deployment's root key is in another token or was deleted",
                    config.key_label
                )));
            }
            _ => {
                return Err(CryptoError::Hsm(format!(
                    "the HSM token has {} keys labelled {:?}; labels must be unique",
                    found.len(),
                    config.key_label
                )));
            }
        };
        Ok((
            Pkcs11RootKey {
                session: Mutex::new(session),
                key,
                key_label: config.key_label.clone(),
            },
            created,
        ))
    }

    fn session(&self) -> std::sync::MutexGuard<'_, Session> {
        self.session.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The process's context for a module: a PKCS#11 module is initialised once per process, and
/// every provider opened on it shares that initialisation.
fn module_context(module: &str) -> Result<Pkcs11, CryptoError> {
    static CONTEXTS: OnceLock<Mutex<HashMap<String, Pkcs11>>> = OnceLock::new();
    let mut contexts = CONTEXTS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    if let Some(context) = contexts.get(module) {
        return Ok(context.clone());
    }
    let context = Pkcs11::new(module).map_err(|e| hsm(&format!("PKCS#11 module {module}"), e))?;
    match context.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
        Ok(()) | Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
        Err(e) => return Err(hsm("initialising the PKCS#11 module", e)),
    }
    contexts.insert(module.to_owned(), context.clone());
    Ok(context)
}

fn find_slot(context: &Pkcs11, config: &Pkcs11Config) -> Result<Slot, CryptoError> {
    let slots = context
        .get_slots_with_initialized_token()
        .map_err(|e| hsm("listing HSM slots", e))?;
    if let Some(id) = config.slot {
        return slots
            .into_iter()
            .find(|s| s.id() == id)
            .ok_or_else(|| CryptoError::Hsm(format!("HSM slot {id} has no initialised token")));
    }
    let Some(label) = &config.token_label else {
        return slots
            .into_iter()
            .next()
            .ok_or_else(|| CryptoError::Hsm("the HSM has no initialised token".into()));
    };
    for slot in slots {
        let info = context
            .get_token_info(slot)
            .map_err(|e| hsm("reading HSM token information", e))?;
        if info.label().trim_end() == label {
            return Ok(slot);
        }
    }
    Err(CryptoError::Hsm(format!(
        "no HSM token is labelled {label:?}"
    )))
}

/// A token object that never leaves the HSM: sensitive, not extractable, only for
/// encrypt/decrypt.
fn generate_key(session: &Session, label: &str) -> Result<ObjectHandle, CryptoError> {
    let template = [
        Attribute::Class(ObjectClass::SECRET_KEY),
        Attribute::KeyType(KeyType::AES),
        Attribute::ValueLen(32.into()),
        Attribute::Token(true),
        Attribute::Private(true),
        Attribute::Sensitive(true),
        Attribute::Extractable(false),
        Attribute::Encrypt(true),
        Attribute::Decrypt(true),
        Attribute::Label(label.as_bytes().to_vec()),
    ];
    session
        .generate_key(&Mechanism::AesKeyGen, &template)
        .map_err(|e| hsm("generating the root key in the HSM", e))
}

impl RootKeyProvider for Pkcs11RootKey {
    fn name(&self) -> &'static str {
        "pkcs11"
    }

    fn wrap(&self, context: &[u8], secret: &[u8; 32]) -> Result<Vec<u8>, CryptoError> {
        let mut iv = crate::random_bytes::<IV_LEN>()?;
        let mut out = vec![WRAP_FORMAT_PKCS11];
        out.extend_from_slice(&iv);
        let params = GcmParams::new(&mut iv, context, TAG_BITS.into())
            .map_err(|e| hsm("preparing AES-GCM", e))?;
        let sealed = self
            .session()
            .encrypt(&Mechanism::AesGcm(params), self.key, secret)
            .map_err(|e| hsm("wrapping a key in the HSM", e))?;
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    fn unwrap(&self, context: &[u8], wrapped: &[u8]) -> Result<Zeroizing<[u8; 32]>, CryptoError> {
        let Some((&format, rest)) = wrapped.split_first() else {
            return Err(CryptoError::Malformed("empty ciphertext"));
        };
        if format != WRAP_FORMAT_PKCS11 {
            return Err(CryptoError::Malformed(
                "not wrapped by a PKCS#11 root key (unknown format version)",
            ));
        }
        let (iv, sealed) = match rest.split_first_chunk::<IV_LEN>() {
            Some((iv, sealed)) if sealed.len() >= 16 => (iv, sealed),
            _ => return Err(CryptoError::Malformed("too short")),
        };
        let mut iv = *iv;
        let params = GcmParams::new(&mut iv, context, TAG_BITS.into())
            .map_err(|e| hsm("preparing AES-GCM", e))?;
        let plain = self
            .session()
            .decrypt(&Mechanism::AesGcm(params), self.key, sealed)
            .map_err(|e| match e {
                // How HSMs say the tag did not verify: the standard codes, and SoftHSM2's
                // CKR_GENERAL_ERROR. A broken HSM fails the root check at start instead.
                CkError::Pkcs11(
                    RvError::EncryptedDataInvalid
                    | RvError::EncryptedDataLenRange
                    | RvError::GeneralError,
                    _,
                ) => CryptoError::Decrypt,
                other => hsm("unwrapping a key in the HSM", other),
            })?;
        crate::root::key32(&Zeroizing::new(plain))
    }
}
