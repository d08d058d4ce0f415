//! OpenID Connect bearer tokens: verifying a JWT access token from one of the policy's
//! `[access.oidc.<name>]` providers and reading who it names. This module owns provider
//! discovery, the cache of each provider's signing keys (JWKS), signature and claim checks, and
//! the mapping of claims to an [`OidcIdentity`]. What that identity may do (the roles that need
//! MFA, the permission matrix) is decided by [`crate::auth`] and
//! [`custodian_core::access::authorize`].
//!
//! Nothing in a token is believed before its signature verifies, except the `iss` used to pick
//! the provider whose keys then check it. Only public-key algorithms are accepted, each only
//! with a key of its own type, so `alg: none` and an HMAC token keyed with a published public
//! key both fail. Times (`exp`, `nbf`) are checked against the server's [`Clock`] with the
//! provider's leeway, as API token expiry is.
//!
//! Keys are fetched through discovery (`<issuer>/.well-known/openid-configuration` names the
//! `jwks_uri`) and kept for [`JWKS_TTL`]. A token signed by a key the cache does not hold (after
//! a rotation at the provider) makes the verifier fetch the keys again, at most once per
//! [`UNKNOWN_KEY_REFETCH`] per provider, so a flood of tokens with invented key ids cannot turn
//! this server into a load on the provider.
//!
//! A client sends the same access token with every request until it expires, and checking its
//! signature is most of the cost of verifying it (an ES256 or EdDSA check costs several times
//! the rest of authentication and the access decision together). So a token whose signature
//! verified is remembered, by the SHA-256 of the whole token (never the token itself), with its
//! claims and the key set that checked it: the same token is accepted again without a signature
//! check only while that very key set is still the one in use and fresh, and its claims (`exp`,
//! `nbf`, roles, tenant) are checked again at each use. A fetch replaces the key set and so
//! voids every remembered token. A remembered token counts as a key-cache hit in the metrics:
//! the cached key set vouches for it.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use custodian_core::access::Role;
use custodian_core::clock::Clock;
use custodian_core::ids::TenantId;
use custodian_core::policy::{JwsAlgorithm, OidcIssuer};
use jiff::{SignedDuration, Timestamp};
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::clock::SystemClock;

/// Tokens longer than this are refused before any decoding: real access tokens are a few
/// KiB at most, and a bearer is read on every request.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;
/// How long fetched keys are used before they are fetched again.
pub const JWKS_TTL: SignedDuration = SignedDuration::from_secs(5 * 60);
/// The least time between two fetches caused by a token whose key is not in the cache.
pub const UNKNOWN_KEY_REFETCH: SignedDuration = SignedDuration::from_secs(30);
/// After a failed fetch, requests that need one fail at once for this long rather than each
/// waiting on an unreachable provider in turn.
pub const FAILED_FETCH_BACKOFF: SignedDuration = SignedDuration::from_secs(10);
/// Discovery documents and key sets larger than this are refused.
const MAX_DOCUMENT_BYTES: usize = 512 * 1024;
/// Longest `sub` accepted: it becomes part of the principal id written to the audit log.
const MAX_SUBJECT_CHARS: usize = 255;
/// The most tokens remembered as verified; beyond it, the ones that can no longer be used are
/// forgotten, then all of them.
const MAX_VERIFIED_TOKENS: usize = 4096;

/// Why a token was refused. The messages say what is wrong and never repeat the token.
#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    #[error("the bearer token is {len} bytes; tokens over {max} bytes are refused unread")]
    TooLarge { len: usize, max: usize },
    #[error("the bearer token is not a well-formed JWT: {0}")]
    Malformed(String),
    #[error("the token's issuer (iss) is not an OIDC provider this server trusts")]
    UnknownIssuer,
    #[error("the token's signature algorithm {alg:?} is not allowed: {why}")]
    AlgorithmNotAllowed { alg: String, why: String },
    #[error(
        "the token was signed by a key the issuer does not publish (its key id is unknown, even after fetching the issuer's keys again)"
    )]
    UnknownKey,
    #[error("the token's signature does not verify against the issuer's key")]
    BadSignature,
    #[error("the token expired at {at}")]
    Expired { at: Timestamp },
    #[error("the token is not valid before {at}")]
    NotYetValid { at: Timestamp },
    #[error("the token is meant for another audience; this server accepts aud {expected:?}")]
    WrongAudience { expected: String },
    #[error("the token has no {0} claim")]
    MissingClaim(String),
    #[error("the token's {claim} claim {why}")]
    BadClaim { claim: String, why: String },
    #[error("none of the roles in the token's {claim} claim is a custodian role ({valid})")]
    NoKnownRole { claim: String, valid: String },
    #[error("the signing keys of OIDC provider {provider} could not be fetched: {reason}")]
    ProviderUnavailable { provider: String, reason: String },
    #[error("OIDC verification is misconfigured: {0}")]
    Internal(String),
}

impl OidcError {
    /// Whether the token was valid but names no usable role or tenant: a question of what
    /// it may do (403), not of who sent it (401).
    pub fn is_authorisation(&self) -> bool {
        matches!(self, OidcError::NoKnownRole { .. })
    }

    /// Whether the fault is on the provider's side or ours rather than in the token.
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            OidcError::ProviderUnavailable { .. } | OidcError::Internal(_)
        )
    }
}

/// Who a verified token names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OidcIdentity {
    /// The name of the policy's `[access.oidc.<name>]` provider that issued the token.
    pub issuer: String,
    /// The token's `sub`.
    pub subject: String,
    /// From the tenant claim; the platform pseudo-tenant when the claim is absent and the
    /// first role is a platform role, or when it reads `_platform`.
    pub tenant: TenantId,
    /// The roles of the roles claim that custodian knows, in the claim's order, each once.
    /// Never empty.
    pub roles: Vec<Role>,
    /// Whether `amr` holds one of the provider's `mfa_amr` values or `acr` is one of its
    /// `mfa_acr` values.
    pub mfa: bool,
    pub expires_at: Timestamp,
}

impl OidcIdentity {
    /// `oidc:<provider>:<sub>`, the principal id audited for this caller.
    pub fn principal_id(&self) -> String {
        format!("oidc:{}:{}", self.issuer, self.subject)
    }
}

/// A client for discovery and key fetches: short timeouts, since a request waits on it.
pub fn http_client() -> Result<reqwest::Client, OidcError> {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(10))
        .redirect(reqwest::redirect::Policy::limited(3))
        .build()
        .map_err(|e| OidcError::Internal(format!("cannot build the HTTP client: {e}")))
}

/// Verifies OIDC access tokens against the configured providers.
pub struct OidcVerifier {
    providers: Vec<Provider>,
    http: reqwest::Client,
    clock: Arc<dyn Clock>,
    /// Tokens whose signature verified, by the SHA-256 of the whole token.
    verified: RwLock<HashMap<[u8; 32], Verified>>,
}

/// A token whose signature verified: its claims, and the key set that checked it.
struct Verified {
    /// Index into [`OidcVerifier::providers`].
    provider: usize,
    /// The key set of the check: the token is accepted again only while this very set is the
    /// provider's current one.
    keys: Arc<KeySet>,
    claims: Arc<Map<String, Value>>,
}

struct Provider {
    config: OidcIssuer,
    /// The keys in use, replaced whole on each fetch; never held across an await.
    keys: RwLock<Arc<KeySet>>,
    /// Held while fetching, so concurrent misses cause one fetch, not one each.
    fetch: tokio::sync::Mutex<FetchState>,
}

#[derive(Default)]
struct KeySet {
    keys: Vec<Jwk>,
    fetched_at: Option<Timestamp>,
}

#[derive(Default)]
struct FetchState {
    /// From discovery; forgotten when a fetch fails, so the next one discovers again.
    jwks_uri: Option<String>,
    /// When a token with a key not in the cache last caused a fetch.
    last_unknown_key_fetch: Option<Timestamp>,
    /// The last fetch's failure, when it failed: when and why.
    last_failure: Option<(Timestamp, String)>,
}

/// What a lookup in a key set found for a token's `kid` and `alg`.
enum Lookup<'k> {
    Found(&'k Jwk),
    Missing,
    /// The key exists but cannot check this algorithm: why.
    Unfit(String),
}

/// The parts of the JOSE header read before verification.
#[derive(Deserialize)]
struct RawHeader {
    alg: Option<Value>,
    kid: Option<Value>,
}

impl OidcVerifier {
    /// A verifier for `issuers`, fetching keys with `http`, on the system clock.
    pub fn new(issuers: Vec<OidcIssuer>, http: reqwest::Client) -> OidcVerifier {
        OidcVerifier {
            providers: issuers
                .into_iter()
                .map(|config| Provider {
                    config,
                    keys: RwLock::new(Arc::new(KeySet::default())),
                    fetch: tokio::sync::Mutex::new(FetchState::default()),
                })
                .collect(),
            http,
            clock: Arc::new(SystemClock),
            verified: RwLock::new(HashMap::new()),
        }
    }

    /// The same verifier on another clock (the server's, so tests can move time).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> OidcVerifier {
        self.clock = clock;
        self
    }

    /// Verifies `token` and returns who it names.
    pub async fn verify(&self, token: &str) -> Result<OidcIdentity, OidcError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(OidcError::TooLarge {
                len: token.len(),
                max: MAX_TOKEN_BYTES,
            });
        }
        let digest = custodian_crypto::sha256(token.as_bytes());
        if let Some((provider, claims)) = self.remembered(&digest) {
            metrics::counter!("custodian_oidc_jwks_cache_hits_total", "issuer" => provider.config.name.clone())
                .increment(1);
            return identity_from_claims(&provider.config, &claims, self.clock.now());
        }
        let (header, claims) = inspect(token)?;
        let iss = match claims.get("iss") {
            Some(Value::String(iss)) => iss.as_str(),
            Some(_) => {
                return Err(OidcError::BadClaim {
                    claim: "iss".into(),
                    why: "is not a string".into(),
                });
            }
            None => return Err(OidcError::MissingClaim("iss".into())),
        };
        let (index, provider) = self
            .providers
            .iter()
            .enumerate()
            .find(|(_, p)| p.config.issuer == iss)
            .ok_or(OidcError::UnknownIssuer)?;
        let alg = check_algorithm(header.alg.as_ref(), &provider.config.algorithms)?;
        let kid = match &header.kid {
            None => None,
            Some(Value::String(kid)) => Some(kid.as_str()),
            Some(_) => {
                return Err(OidcError::Malformed(
                    "the header's kid is not a string".into(),
                ));
            }
        };
        let (jwk, keys) = self.key_for(provider, kid, alg).await?;
        let claims = Arc::new(verify_signed(token, &jwk, alg, &provider.config)?);
        let identity = identity_from_claims(&provider.config, &claims, self.clock.now())?;
        self.remember(digest, index, keys, claims);
        Ok(identity)
    }

    /// The provider and claims of a token whose signature verified under the provider's
    /// current key set, while that set is fresh.
    fn remembered(&self, digest: &[u8; 32]) -> Option<(&Provider, Arc<Map<String, Value>>)> {
        let verified = self.verified.read().unwrap_or_else(|e| e.into_inner());
        let entry = verified.get(digest)?;
        let provider = &self.providers[entry.provider];
        let current = provider.snapshot();
        let fresh = current
            .fetched_at
            .is_some_and(|t| self.clock.now().duration_since(t) < JWKS_TTL);
        (fresh && Arc::ptr_eq(&entry.keys, &current)).then(|| (provider, entry.claims.clone()))
    }

    /// Remembers a token whose signature `keys` verified. When full, forgets the tokens that
    /// can no longer be used (expired, or of a key set since replaced), then, if that is not
    /// enough, every token.
    fn remember(
        &self,
        digest: [u8; 32],
        provider: usize,
        keys: Arc<KeySet>,
        claims: Arc<Map<String, Value>>,
    ) {
        let now = self.clock.now();
        let mut verified = self.verified.write().unwrap_or_else(|e| e.into_inner());
        if verified.len() >= MAX_VERIFIED_TOKENS {
            verified.retain(|_, v| {
                Arc::ptr_eq(&v.keys, &self.providers[v.provider].snapshot())
                    && numeric_date(&v.claims, "exp")
                        .ok()
                        .flatten()
                        .is_some_and(|exp| exp > now)
            });
            if verified.len() >= MAX_VERIFIED_TOKENS {
                verified.clear();
            }
        }
        verified.insert(
            digest,
            Verified {
                provider,
                keys,
                claims,
            },
        );
    }

    /// The key that checks a token of `provider` with `kid` and `alg`, and the key set it was
    /// found in: from the cache when it is fresh and holds it, otherwise from a fetch.
    async fn key_for(
        &self,
        provider: &Provider,
        kid: Option<&str>,
        alg: JwsAlgorithm,
    ) -> Result<(Jwk, Arc<KeySet>), OidcError> {
        let name = provider.config.name.clone();
        let snapshot = provider.snapshot();
        let now = self.clock.now();
        let fresh = snapshot
            .fetched_at
            .is_some_and(|t| now.duration_since(t) < JWKS_TTL);
        if fresh {
            match lookup(&snapshot.keys, kid, alg) {
                Lookup::Found(jwk) => {
                    let jwk = jwk.clone();
                    metrics::counter!("custodian_oidc_jwks_cache_hits_total", "issuer" => name)
                        .increment(1);
                    return Ok((jwk, snapshot));
                }
                Lookup::Unfit(why) => return Err(unfit(alg, why)),
                Lookup::Missing => {}
            }
        }
        metrics::counter!("custodian_oidc_jwks_cache_misses_total", "issuer" => name).increment(1);
        let mut state = provider.fetch.lock().await;
        // Another request may have fetched while this one waited.
        let current = provider.snapshot();
        let refreshed = current.fetched_at != snapshot.fetched_at
            && current
                .fetched_at
                .is_some_and(|t| self.clock.now().duration_since(t) < JWKS_TTL);
        if !refreshed {
            let now = self.clock.now();
            if fresh {
                // The cache is fresh but lacks the key: fetch again only if no such fetch
                // happened lately.
                let recent = state
                    .last_unknown_key_fetch
                    .is_some_and(|t| now.duration_since(t) < UNKNOWN_KEY_REFETCH);
                if recent {
                    return Err(OidcError::UnknownKey);
                }
                state.last_unknown_key_fetch = Some(now);
            }
            self.fetch_keys(provider, &mut state).await?;
        }
        drop(state);
        let current = provider.snapshot();
        match lookup(&current.keys, kid, alg) {
            Lookup::Found(jwk) => Ok((jwk.clone(), current.clone())),
            Lookup::Unfit(why) => Err(unfit(alg, why)),
            Lookup::Missing => Err(OidcError::UnknownKey),
        }
    }

    /// Fetches the provider's keys and replaces the cached set, unless a fetch failed less than
    /// [`FAILED_FETCH_BACKOFF`] ago: then it fails at once with that failure's reason.
    async fn fetch_keys(
        &self,
        provider: &Provider,
        state: &mut FetchState,
    ) -> Result<(), OidcError> {
        let now = self.clock.now();
        if let Some((at, reason)) = &state.last_failure
            && now.duration_since(*at) < FAILED_FETCH_BACKOFF
        {
            return Err(OidcError::ProviderUnavailable {
                provider: provider.config.name.clone(),
                reason: format!("{reason} (not retried for {FAILED_FETCH_BACKOFF:#})"),
            });
        }
        let fetched = self.fetch_keys_now(provider, state).await;
        if let Err(OidcError::ProviderUnavailable { reason, .. }) = &fetched {
            tracing::warn!(provider = %provider.config.name, %reason, "cannot fetch OIDC signing keys");
            state.last_failure = Some((now, reason.clone()));
        } else {
            state.last_failure = None;
        }
        fetched
    }

    /// One fetch: discovery when the key set's address is not known yet, then the key set.
    async fn fetch_keys_now(
        &self,
        provider: &Provider,
        state: &mut FetchState,
    ) -> Result<(), OidcError> {
        let config = &provider.config;
        let unavailable = |reason: String| OidcError::ProviderUnavailable {
            provider: config.name.clone(),
            reason,
        };
        let jwks_uri = match &state.jwks_uri {
            Some(uri) => uri.clone(),
            None => {
                let url = format!(
                    "{}/.well-known/openid-configuration",
                    config.issuer.trim_end_matches('/')
                );
                let doc = self.get_json(&url).await.map_err(unavailable)?;
                // OpenID Connect Discovery §4.3: the document must name the issuer it was
                // fetched for, or its keys could be another provider's.
                if doc.get("issuer").and_then(Value::as_str) != Some(config.issuer.as_str()) {
                    return Err(unavailable(format!(
                        "the discovery document at {url} names another issuer"
                    )));
                }
                let uri = doc.get("jwks_uri").and_then(Value::as_str).ok_or_else(|| {
                    unavailable(format!("the discovery document at {url} has no jwks_uri"))
                })?;
                check_jwks_uri(&config.issuer, uri).map_err(unavailable)?;
                uri.to_owned()
            }
        };
        let doc = match self.get_json(&jwks_uri).await {
            Ok(doc) => doc,
            Err(reason) => {
                state.jwks_uri = None;
                return Err(unavailable(reason));
            }
        };
        state.jwks_uri = Some(jwks_uri.clone());
        let Some(Value::Array(entries)) = doc.get("keys") else {
            return Err(unavailable(format!(
                "{jwks_uri} is not a JWK set (no keys array)"
            )));
        };
        // A key custodian cannot use (an HMAC secret, an encryption key, an unknown type) is
        // left out rather than failing the set: the provider may publish keys for others.
        let keys: Vec<Jwk> = entries
            .iter()
            .filter_map(|entry| serde_json::from_value::<Jwk>(entry.clone()).ok())
            .filter(usable)
            .collect();
        tracing::info!(
            provider = %config.name,
            keys = keys.len(),
            published = entries.len(),
            "fetched OIDC signing keys"
        );
        let set = KeySet {
            keys,
            fetched_at: Some(self.clock.now()),
        };
        *provider.keys.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(set);
        Ok(())
    }

    /// GETs a JSON document of at most [`MAX_DOCUMENT_BYTES`]; errors say what failed.
    async fn get_json(&self, url: &str) -> Result<Value, String> {
        let mut response = self
            .http
            .get(url)
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| format!("GET {url}: {e}"))?;
        if !response.status().is_success() {
            return Err(format!("GET {url}: HTTP {}", response.status()));
        }
        if response
            .content_length()
            .is_some_and(|n| n > MAX_DOCUMENT_BYTES as u64)
        {
            return Err(format!("GET {url}: larger than {MAX_DOCUMENT_BYTES} bytes"));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| format!("GET {url}: {e}"))?
        {
            body.extend_from_slice(&chunk);
            if body.len() > MAX_DOCUMENT_BYTES {
                return Err(format!("GET {url}: larger than {MAX_DOCUMENT_BYTES} bytes"));
            }
        }
        serde_json::from_slice(&body).map_err(|e| format!("GET {url}: not JSON ({e})"))
    }

    /// Installs `keys` as `provider`'s fresh key set, as a fetch would.
    #[cfg(test)]
    fn preload(&self, provider: &str, keys: Vec<Jwk>) {
        let p = self
            .providers
            .iter()
            .find(|p| p.config.name == provider)
            .expect("configured provider");
        *p.keys.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(KeySet {
            keys: keys.into_iter().filter(usable).collect(),
            fetched_at: Some(self.clock.now()),
        });
    }
}

impl Provider {
    fn snapshot(&self) -> Arc<KeySet> {
        self.keys.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// Whether `s` has the shape of a compact JWS: three dot-separated base64url segments, the
/// first two non-empty. Shape only: nothing is decoded.
pub fn looks_like_jwt(s: &str) -> bool {
    let b64url = |seg: &str| {
        seg.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    let mut parts = s.split('.');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(h), Some(p), Some(sig), None) => {
            !h.is_empty() && !p.is_empty() && b64url(h) && b64url(p) && b64url(sig)
        }
        _ => false,
    }
}

/// Checks size and shape and decodes the header and the (unverified) claims.
fn inspect(token: &str) -> Result<(RawHeader, Map<String, Value>), OidcError> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(OidcError::TooLarge {
            len: token.len(),
            max: MAX_TOKEN_BYTES,
        });
    }
    if !looks_like_jwt(token) {
        return Err(OidcError::Malformed(
            "expected three base64url segments separated by dots".into(),
        ));
    }
    let mut parts = token.split('.');
    let (Some(header), Some(payload)) = (parts.next(), parts.next()) else {
        return Err(OidcError::Malformed("expected three segments".into()));
    };
    let header: RawHeader = serde_json::from_slice(&b64url_decode(header, "header")?)
        .map_err(|_| OidcError::Malformed("the header is not a JSON object".into()))?;
    let claims: Map<String, Value> = serde_json::from_slice(&b64url_decode(payload, "payload")?)
        .map_err(|_| OidcError::Malformed("the payload is not a JSON object".into()))?;
    Ok((header, claims))
}

fn b64url_decode(segment: &str, what: &str) -> Result<Vec<u8>, OidcError> {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(segment)
        .map_err(|_| OidcError::Malformed(format!("the {what} is not base64url")))
}

/// An attacker-chosen `alg`, made safe to quote in an error and the audit log.
fn quote_alg(alg: &str) -> String {
    alg.chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .take(16)
        .collect()
}

/// The header's `alg` when the provider allows it; never `none` or an HMAC algorithm, whatever
/// the configuration says (the policy parser refuses them too).
fn check_algorithm(
    alg: Option<&Value>,
    allowed: &[JwsAlgorithm],
) -> Result<JwsAlgorithm, OidcError> {
    let Some(Value::String(alg)) = alg else {
        return Err(OidcError::Malformed("the header has no alg string".into()));
    };
    let refuse = |why: String| OidcError::AlgorithmNotAllowed {
        alg: quote_alg(alg),
        why,
    };
    if alg.eq_ignore_ascii_case("none") {
        return Err(refuse("unsigned tokens are never accepted".into()));
    }
    if alg.to_ascii_uppercase().starts_with("HS") {
        return Err(refuse(
            "HMAC tokens are never accepted; only signatures by the provider's private key are"
                .into(),
        ));
    }
    match JwsAlgorithm::parse(alg) {
        Some(a) if allowed.contains(&a) => Ok(a),
        Some(_) => Err(refuse(format!(
            "the provider's algorithms in the policy are {}",
            allowed
                .iter()
                .map(|a| a.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ))),
        None => Err(refuse("it is not a JWS algorithm custodian knows".into())),
    }
}

fn jwt_algorithm(alg: JwsAlgorithm) -> Algorithm {
    match alg {
        JwsAlgorithm::RS256 => Algorithm::RS256,
        JwsAlgorithm::RS384 => Algorithm::RS384,
        JwsAlgorithm::RS512 => Algorithm::RS512,
        JwsAlgorithm::PS256 => Algorithm::PS256,
        JwsAlgorithm::PS384 => Algorithm::PS384,
        JwsAlgorithm::PS512 => Algorithm::PS512,
        JwsAlgorithm::ES256 => Algorithm::ES256,
        JwsAlgorithm::ES384 => Algorithm::ES384,
        JwsAlgorithm::EdDSA => Algorithm::EdDSA,
    }
}

/// Keys that can check some allowed algorithm: public signing keys of a known type.
fn usable(jwk: &Jwk) -> bool {
    let signing = jwk
        .common
        .public_key_use
        .as_ref()
        .is_none_or(|u| *u == PublicKeyUse::Signature);
    let public_type = matches!(
        jwk.algorithm,
        AlgorithmParameters::RSA(_)
            | AlgorithmParameters::EllipticCurve(_)
            | AlgorithmParameters::OctetKeyPair(_)
    );
    signing && public_type
}

/// Why `jwk` cannot check a token signed with `alg`, if it cannot: the key's type (and
/// curve) must be the algorithm's, and a key that names its algorithm must name this one.
fn key_fits(jwk: &Jwk, alg: JwsAlgorithm) -> Result<(), String> {
    if let Some(key_alg) = jwk.common.key_algorithm {
        let named = key_algorithm_name(key_alg);
        if named != Some(alg.as_str()) {
            return Err(format!(
                "the issuer's key is for {}",
                named.unwrap_or("another algorithm")
            ));
        }
    }
    let fits = match (&jwk.algorithm, alg) {
        (
            AlgorithmParameters::RSA(_),
            JwsAlgorithm::RS256
            | JwsAlgorithm::RS384
            | JwsAlgorithm::RS512
            | JwsAlgorithm::PS256
            | JwsAlgorithm::PS384
            | JwsAlgorithm::PS512,
        ) => true,
        (AlgorithmParameters::EllipticCurve(p), JwsAlgorithm::ES256) => {
            p.curve == EllipticCurve::P256
        }
        (AlgorithmParameters::EllipticCurve(p), JwsAlgorithm::ES384) => {
            p.curve == EllipticCurve::P384
        }
        (AlgorithmParameters::OctetKeyPair(p), JwsAlgorithm::EdDSA) => {
            p.curve == EllipticCurve::Ed25519
        }
        _ => false,
    };
    if fits {
        Ok(())
    } else {
        Err(format!(
            "the issuer's key is {}, which does not sign {alg}",
            key_type(jwk)
        ))
    }
}

fn key_algorithm_name(alg: KeyAlgorithm) -> Option<&'static str> {
    Some(match alg {
        KeyAlgorithm::RS256 => "RS256",
        KeyAlgorithm::RS384 => "RS384",
        KeyAlgorithm::RS512 => "RS512",
        KeyAlgorithm::PS256 => "PS256",
        KeyAlgorithm::PS384 => "PS384",
        KeyAlgorithm::PS512 => "PS512",
        KeyAlgorithm::ES256 => "ES256",
        KeyAlgorithm::ES384 => "ES384",
        KeyAlgorithm::EdDSA => "EdDSA",
        KeyAlgorithm::HS256 => "HS256",
        KeyAlgorithm::HS384 => "HS384",
        KeyAlgorithm::HS512 => "HS512",
        _ => return None,
    })
}

fn key_type(jwk: &Jwk) -> &'static str {
    match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => "an RSA key",
        AlgorithmParameters::EllipticCurve(p) => match p.curve {
            EllipticCurve::P256 => "an EC P-256 key",
            EllipticCurve::P384 => "an EC P-384 key",
            _ => "an EC key",
        },
        AlgorithmParameters::OctetKeyPair(_) => "an OKP (Ed25519) key",
        AlgorithmParameters::OctetKey(_) => "a symmetric key",
        _ => "a key of unknown type",
    }
}

fn unfit(alg: JwsAlgorithm, why: String) -> OidcError {
    OidcError::AlgorithmNotAllowed {
        alg: alg.as_str().to_owned(),
        why,
    }
}

/// Finds the key for `kid` (or, for a token without one, the only key that fits `alg`).
fn lookup<'k>(keys: &'k [Jwk], kid: Option<&str>, alg: JwsAlgorithm) -> Lookup<'k> {
    match kid {
        Some(kid) => match keys
            .iter()
            .find(|k| k.common.key_id.as_deref() == Some(kid))
        {
            None => Lookup::Missing,
            Some(jwk) => match key_fits(jwk, alg) {
                Ok(()) => Lookup::Found(jwk),
                Err(why) => Lookup::Unfit(why),
            },
        },
        None => {
            let mut fitting = keys.iter().filter(|k| key_fits(k, alg).is_ok());
            match (fitting.next(), fitting.next()) {
                (Some(jwk), None) => Lookup::Found(jwk),
                // Several candidates and no kid to choose: refuse rather than try each.
                _ => Lookup::Missing,
            }
        }
    }
}

/// Checks signature, `iss` and `aud` with `jsonwebtoken` and returns the claims.
fn verify_signed(
    token: &str,
    jwk: &Jwk,
    alg: JwsAlgorithm,
    config: &OidcIssuer,
) -> Result<Map<String, Value>, OidcError> {
    // `decode` panics when no crypto backend can be chosen (e.g. two backend features
    // unified into one build): refuse instead.
    if jsonwebtoken::crypto::CryptoProvider::try_get_default().is_none() {
        return Err(OidcError::Internal(
            "jsonwebtoken has no single crypto backend in this build".into(),
        ));
    }
    let key = DecodingKey::from_jwk(jwk).map_err(|e| OidcError::ProviderUnavailable {
        provider: config.name.clone(),
        reason: format!("its key cannot be used: {e}"),
    })?;
    // One algorithm, the one checked against the allowlist and the key's type.
    let mut validation = Validation::new(jwt_algorithm(alg));
    // Times are checked against the server's clock in `identity_from_claims`.
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    validation.set_issuer(&[config.issuer.as_str()]);
    validation.set_audience(&[config.audience.as_str()]);
    jsonwebtoken::decode::<Map<String, Value>>(token, &key, &validation)
        .map(|data| data.claims)
        .map_err(|e| jwt_error(e, config))
}

fn jwt_error(e: jsonwebtoken::errors::Error, config: &OidcIssuer) -> OidcError {
    use jsonwebtoken::errors::ErrorKind;
    match e.kind() {
        ErrorKind::InvalidSignature => OidcError::BadSignature,
        ErrorKind::InvalidAudience => OidcError::WrongAudience {
            expected: config.audience.clone(),
        },
        ErrorKind::InvalidIssuer => OidcError::UnknownIssuer,
        ErrorKind::MissingRequiredClaim(claim) => OidcError::MissingClaim(claim.clone()),
        ErrorKind::InvalidClaimFormat(claim) => OidcError::BadClaim {
            claim: claim.clone(),
            why: "has the wrong type".into(),
        },
        ErrorKind::InvalidAlgorithm
        | ErrorKind::MissingAlgorithm
        | ErrorKind::UnsupportedAlgorithm
        | ErrorKind::InvalidAlgorithmName => OidcError::AlgorithmNotAllowed {
            alg: String::new(),
            why: "it does not match the issuer's key".into(),
        },
        ErrorKind::InvalidRsaKey(_)
        | ErrorKind::InvalidEcdsaKey
        | ErrorKind::InvalidEddsaKey
        | ErrorKind::InvalidKeyFormat => OidcError::ProviderUnavailable {
            provider: config.name.clone(),
            reason: "its key cannot be used".into(),
        },
        // Base64, JSON, UTF-8, crit headers and the like: the token itself is damaged.
        _ => OidcError::Malformed("it does not decode as a signed JWT".into()),
    }
}

/// A NumericDate claim (seconds since the epoch; fractions are dropped).
fn numeric_date(claims: &Map<String, Value>, claim: &str) -> Result<Option<Timestamp>, OidcError> {
    let bad = |why: &str| OidcError::BadClaim {
        claim: claim.into(),
        why: why.into(),
    };
    match claims.get(claim) {
        None => Ok(None),
        Some(Value::Number(n)) => {
            let secs = n
                .as_i64()
                .or_else(|| {
                    n.as_f64()
                        .filter(|f| f.is_finite())
                        .map(|f| f.floor() as i64)
                })
                .ok_or_else(|| bad("is not a time"))?;
            Timestamp::from_second(secs)
                .map(Some)
                .map_err(|_| bad("is out of range"))
        }
        Some(_) => Err(bad("is not a number of seconds")),
    }
}

/// Strings of a claim that is an array of strings or a single string.
fn strings<'c>(
    claims: &'c Map<String, Value>,
    claim: &str,
) -> Result<Option<Vec<&'c str>>, OidcError> {
    match claims.get(claim) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(vec![s.as_str()])),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| {
                v.as_str().ok_or_else(|| OidcError::BadClaim {
                    claim: claim.into(),
                    why: "holds something other than strings".into(),
                })
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        Some(_) => Err(OidcError::BadClaim {
            claim: claim.into(),
            why: "is neither a string nor an array of strings".into(),
        }),
    }
}

/// Maps verified claims to an identity: checks `exp` and `nbf` at `now` with the provider's
/// leeway, reads `sub`, the tenant and roles claims and whether MFA was used.
///
/// The role rule: the roles claim lists role names; the ones custodian does not know are
/// ignored (a provider's groups often serve other applications too) and the rest keep the
/// claim's order. Callers act in the first of them.
fn identity_from_claims(
    config: &OidcIssuer,
    claims: &Map<String, Value>,
    now: Timestamp,
) -> Result<OidcIdentity, OidcError> {
    let leeway = SignedDuration::from_secs(i64::try_from(config.leeway_secs).unwrap_or(i64::MAX));
    let exp = numeric_date(claims, "exp")?.ok_or_else(|| OidcError::MissingClaim("exp".into()))?;
    // RFC 7519 §4.1.4: not accepted on or after exp.
    if now >= exp.saturating_add(leeway).unwrap_or(Timestamp::MAX) {
        return Err(OidcError::Expired { at: exp });
    }
    if let Some(nbf) = numeric_date(claims, "nbf")?
        && now < nbf.saturating_sub(leeway).unwrap_or(Timestamp::MIN)
    {
        return Err(OidcError::NotYetValid { at: nbf });
    }
    let subject = match claims.get("sub") {
        Some(Value::String(s)) => s.clone(),
        Some(_) => {
            return Err(OidcError::BadClaim {
                claim: "sub".into(),
                why: "is not a string".into(),
            });
        }
        None => return Err(OidcError::MissingClaim("sub".into())),
    };
    if subject.is_empty()
        || subject.chars().count() > MAX_SUBJECT_CHARS
        || subject.chars().any(char::is_control)
    {
        return Err(OidcError::BadClaim {
            claim: "sub".into(),
            why: format!("must be 1 to {MAX_SUBJECT_CHARS} characters without control characters"),
        });
    }
    let role_names = strings(claims, &config.roles_claim)?
        .ok_or_else(|| OidcError::MissingClaim(config.roles_claim.clone()))?;
    let mut roles: Vec<Role> = Vec::new();
    for role in role_names.into_iter().filter_map(Role::parse) {
        if !roles.contains(&role) {
            roles.push(role);
        }
    }
    let Some(first) = roles.first().copied() else {
        return Err(OidcError::NoKnownRole {
            claim: config.roles_claim.clone(),
            valid: Role::valid_names(),
        });
    };
    let tenant = match claims.get(&config.tenant_claim) {
        None | Some(Value::Null) if first.is_platform() => TenantId::platform(),
        None | Some(Value::Null) => {
            return Err(OidcError::MissingClaim(config.tenant_claim.clone()));
        }
        Some(Value::String(t)) => TenantId::from_stored(t).map_err(|_| OidcError::BadClaim {
            claim: config.tenant_claim.clone(),
            why: "is not a valid tenant id".into(),
        })?,
        Some(_) => {
            return Err(OidcError::BadClaim {
                claim: config.tenant_claim.clone(),
                why: "is not a string".into(),
            });
        }
    };
    let amr = strings(claims, "amr")?.unwrap_or_default();
    let acr = match claims.get("acr") {
        Some(Value::String(acr)) => Some(acr.as_str()),
        _ => None,
    };
    let mfa = amr.iter().any(|m| config.mfa_amr.iter().any(|c| c == m))
        || acr.is_some_and(|a| config.mfa_acr.iter().any(|c| c == a));
    Ok(OidcIdentity {
        issuer: config.name.clone(),
        subject,
        tenant,
        roles,
        mfa,
        expires_at: exp,
    })
}

/// The key set must come from the provider's own origin or over TLS: a discovery document
/// cannot send the verifier to fetch keys over plain HTTP elsewhere.
fn check_jwks_uri(issuer: &str, uri: &str) -> Result<(), String> {
    if uri.starts_with("https://") {
        return Ok(());
    }
    let origin_end = issuer
        .strip_prefix("http://")
        .map(|rest| "http://".len() + rest.find('/').unwrap_or(rest.len()));
    match origin_end {
        Some(end) if uri.starts_with(&issuer[..end]) && uri[end..].starts_with('/') => Ok(()),
        _ => Err(format!(
            "its jwks_uri {uri:?} is neither https:// nor on the issuer's own loopback origin"
        )),
    }
}

#[cfg(test)]
mod tests;
