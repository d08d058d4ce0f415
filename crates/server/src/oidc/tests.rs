//! Claim mapping, algorithm and key checks, key caching against an in-process provider, and
//! a property test of the parsing path.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair,
};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use jsonwebtoken::jwk::{
    CommonParameters, EllipticCurveKeyParameters, EllipticCurveKeyType, OctetKeyPairParameters,
    OctetKeyPairType, OctetKeyParameters, OctetKeyType, RSAKeyParameters, RSAKeyType,
};
use jsonwebtoken::{EncodingKey, Header};
use proptest::prelude::*;
use serde_json::json;

use super::*;
use crate::clock::ShiftedClock;

const AUD: &str = "urn:custodian:test";

fn config(name: &str, issuer: &str) -> OidcIssuer {
    OidcIssuer {
        name: name.into(),
        issuer: issuer.into(),
        audience: AUD.into(),
        algorithms: OidcIssuer::DEFAULT_ALGORITHMS.to_vec(),
        leeway_secs: 60,
        tenant_claim: OidcIssuer::DEFAULT_TENANT_CLAIM.into(),
        roles_claim: OidcIssuer::DEFAULT_ROLES_CLAIM.into(),
        mfa_amr: OidcIssuer::DEFAULT_MFA_AMR.map(String::from).to_vec(),
        mfa_acr: vec![],
    }
}

fn ts(s: &str) -> Timestamp {
    s.parse().unwrap()
}

/// A signing key with its public JWK.
struct TestKey {
    encoding: EncodingKey,
    jwk: Jwk,
    alg: Algorithm,
}

fn common(kid: &str, alg: Option<KeyAlgorithm>) -> CommonParameters {
    CommonParameters {
        key_id: Some(kid.into()),
        key_algorithm: alg,
        public_key_use: Some(PublicKeyUse::Signature),
        ..Default::default()
    }
}

fn ed25519(kid: &str) -> TestKey {
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
    let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
    TestKey {
        encoding: EncodingKey::from_ed_der(pkcs8.as_ref()),
        jwk: Jwk {
            common: common(kid, Some(KeyAlgorithm::EdDSA)),
            algorithm: AlgorithmParameters::OctetKeyPair(OctetKeyPairParameters {
                key_type: OctetKeyPairType::OctetKeyPair,
                curve: EllipticCurve::Ed25519,
                x: B64.encode(pair.public_key().as_ref()),
            }),
        },
        alg: Algorithm::EdDSA,
    }
}

fn p256(kid: &str) -> TestKey {
    let rng = SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref()).unwrap();
    // Uncompressed point: 0x04 || x || y.
    let point = pair.public_key().as_ref();
    TestKey {
        encoding: EncodingKey::from_ec_der(pkcs8.as_ref()),
        jwk: Jwk {
            // No `alg` on the key, as many providers publish them: the type decides.
            common: common(kid, None),
            algorithm: AlgorithmParameters::EllipticCurve(EllipticCurveKeyParameters {
                key_type: EllipticCurveKeyType::EC,
                curve: EllipticCurve::P256,
                x: B64.encode(&point[1..33]),
                y: B64.encode(&point[33..65]),
            }),
        },
        alg: Algorithm::ES256,
    }
}

fn rsa_jwk(kid: &str) -> Jwk {
    Jwk {
        common: common(kid, Some(KeyAlgorithm::RS256)),
        algorithm: AlgorithmParameters::RSA(RSAKeyParameters {
            key_type: RSAKeyType::RSA,
            n: B64.encode([0xc5; 256]),
            e: B64.encode([1, 0, 1]),
        }),
    }
}

fn sign(key: &TestKey, claims: &Value) -> String {
    let mut header = Header::new(key.alg);
    header.kid = key.jwk.common.key_id.clone();
    jsonwebtoken::encode(&header, claims, &key.encoding).unwrap()
}

/// A token from parts, with any header and signature.
fn compact(header: &Value, claims: &Value, signature: &[u8]) -> String {
    format!(
        "{}.{}.{}",
        B64.encode(header.to_string()),
        B64.encode(claims.to_string()),
        B64.encode(signature)
    )
}

fn hmac_sha256(key: &[u8], message: &[u8]) -> Vec<u8> {
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, key);
    aws_lc_rs::hmac::sign(&key, message).as_ref().to_vec()
}

fn claims_at(issuer: &str, now: Timestamp) -> Value {
    json!({
        "iss": issuer,
        "sub": "client-1",
        "aud": AUD,
        "iat": now.as_second(),
        "exp": now.as_second() + 300,
        "custodian_tenant": "acme",
        "custodian_roles": ["reader"],
    })
}

fn map(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        other => panic!("not an object: {other}"),
    }
}

// ----- claim mapping -----

#[test]
fn claims_map_to_an_identity() {
    let c = config("corp", "https://idp.example");
    let now = ts("2026-06-01T12:00:00Z");
    let mut claims = claims_at("https://idp.example", now);
    claims["custodian_roles"] = json!(["viewer", "writer", "reader", "writer"]);
    claims["amr"] = json!(["pwd", "otp"]);
    let id = identity_from_claims(&c, &map(claims), now).unwrap();
    assert_eq!(
        id,
        OidcIdentity {
            issuer: "corp".into(),
            subject: "client-1".into(),
            tenant: TenantId::new("acme").unwrap(),
            roles: vec![Role::Writer, Role::Reader],
            mfa: true,
            expires_at: Timestamp::from_second(now.as_second() + 300).unwrap(),
        }
    );
    assert_eq!(id.principal_id(), "oidc:corp:client-1");
}

#[test]
fn mfa_is_shown_by_amr_or_acr_as_configured() {
    let mut c = config("corp", "https://idp.example");
    c.mfa_acr = vec!["urn:loa:3".into()];
    let now = ts("2026-06-01T12:00:00Z");
    let with = |extra: Value| {
        let mut claims = claims_at("https://idp.example", now);
        for (k, v) in extra.as_object().unwrap() {
            claims[k] = v.clone();
        }
        identity_from_claims(&c, &map(claims), now).map(|id| id.mfa)
    };
    assert!(!with(json!({})).unwrap());
    assert!(!with(json!({ "amr": ["pwd"] })).unwrap());
    assert!(with(json!({ "amr": ["pwd", "hwk"] })).unwrap());
    assert!(
        with(json!({ "amr": "mfa" })).unwrap(),
        "a lone string counts"
    );
    assert!(!with(json!({ "acr": "urn:loa:2" })).unwrap());
    assert!(with(json!({ "acr": "urn:loa:3" })).unwrap());
    assert!(matches!(
        with(json!({ "amr": [1, 2] })),
        Err(OidcError::BadClaim { .. })
    ));
}

#[test]
fn claim_names_come_from_the_policy() {
    let mut c = config("corp", "https://idp.example");
    c.tenant_claim = "org".into();
    c.roles_claim = "groups".into();
    let now = ts("2026-06-01T12:00:00Z");
    let claims = json!({
        "iss": "https://idp.example", "sub": "u", "aud": AUD, "exp": now.as_second() + 60,
        "org": "globex", "groups": "admin",
        "custodian_tenant": "acme", "custodian_roles": ["reader"],
    });
    let id = identity_from_claims(&c, &map(claims), now).unwrap();
    assert_eq!(id.tenant.as_str(), "globex");
    assert_eq!(id.roles, vec![Role::Admin]);
}

#[test]
fn platform_roles_belong_to_the_platform_pseudo_tenant() {
    let c = config("corp", "https://idp.example");
    let now = ts("2026-06-01T12:00:00Z");
    let with = |tenant: Option<&str>, roles: Value| {
        let mut claims = claims_at("https://idp.example", now);
        let m = claims.as_object_mut().unwrap();
        m.remove("custodian_tenant");
        if let Some(t) = tenant {
            m.insert("custodian_tenant".into(), json!(t));
        }
        m.insert("custodian_roles".into(), roles);
        identity_from_claims(&c, &map(claims), now)
    };
    let op = with(None, json!(["operator"])).unwrap();
    assert!(op.tenant.is_platform());
    assert!(
        with(Some("_platform"), json!(["operator"]))
            .unwrap()
            .tenant
            .is_platform()
    );
    // A tenant's claim stays as written; `authorize` refuses the mismatch of scope.
    assert_eq!(
        with(Some("acme"), json!(["operator"]))
            .unwrap()
            .tenant
            .as_str(),
        "acme"
    );
    assert!(matches!(
        with(None, json!(["admin"])),
        Err(OidcError::MissingClaim(c)) if c == "custodian_tenant"
    ));
    assert!(matches!(
        with(Some("Not A Tenant"), json!(["admin"])),
        Err(OidcError::BadClaim { claim, .. }) if claim == "custodian_tenant"
    ));
    assert!(matches!(
        with(Some("_other"), json!(["admin"])),
        Err(OidcError::BadClaim { .. })
    ));
}

#[test]
fn roles_must_include_one_custodian_knows() {
    let c = config("corp", "https://idp.example");
    let now = ts("2026-06-01T12:00:00Z");
    let with = |roles: Value| {
        let mut claims = claims_at("https://idp.example", now);
        claims["custodian_roles"] = roles;
        identity_from_claims(&c, &map(claims), now)
    };
    let none = with(json!(["viewer", "Admin"])).unwrap_err();
    assert!(none.is_authorisation());
    assert!(none.to_string().contains("custodian_roles"), "{none}");
    assert!(matches!(
        with(json!([])),
        Err(OidcError::NoKnownRole { .. })
    ));
    assert!(matches!(with(json!(7)), Err(OidcError::BadClaim { .. })));
    let mut claims = claims_at("https://idp.example", now);
    claims.as_object_mut().unwrap().remove("custodian_roles");
    assert!(matches!(
        identity_from_claims(&c, &map(claims), now),
        Err(OidcError::MissingClaim(c)) if c == "custodian_roles"
    ));
}

#[test]
fn exp_and_nbf_are_checked_with_the_leeway() {
    let mut c = config("corp", "https://idp.example");
    c.leeway_secs = 30;
    let exp = ts("2026-06-01T12:00:00Z");
    let mut claims = claims_at("https://idp.example", exp);
    claims["exp"] = json!(exp.as_second());
    claims["nbf"] = json!(exp.as_second() - 600);
    let claims = map(claims);
    let at = |s: i64| identity_from_claims(&c, &claims, exp + SignedDuration::from_secs(s));
    assert!(at(29).is_ok());
    assert!(matches!(at(30), Err(OidcError::Expired { at }) if at == exp));
    let early = at(-600 - 31).unwrap_err();
    assert!(matches!(early, OidcError::NotYetValid { .. }), "{early}");
    assert!(at(-600 - 30).is_ok());
    c.leeway_secs = 0;
    let at = |s: i64| identity_from_claims(&c, &claims, exp + SignedDuration::from_secs(s));
    assert!(at(-1).is_ok());
    assert!(at(0).is_err(), "not accepted on or after exp");
    let expired = at(5).unwrap_err().to_string();
    assert_eq!(expired, "the token expired at 2026-06-01T12:00:00Z");
}

#[test]
fn subjects_are_bounded_and_printable() {
    let c = config("corp", "https://idp.example");
    let now = ts("2026-06-01T12:00:00Z");
    for sub in [json!(""), json!("a\nb"), json!("x".repeat(256)), json!(42)] {
        let mut claims = claims_at("https://idp.example", now);
        claims["sub"] = sub.clone();
        assert!(
            matches!(
                identity_from_claims(&c, &map(claims), now),
                Err(OidcError::BadClaim { .. })
            ),
            "{sub}"
        );
    }
    let mut claims = claims_at("https://idp.example", now);
    claims["sub"] = json!("auth0|abc:def@example.com");
    assert!(identity_from_claims(&c, &map(claims), now).is_ok());
}

// ----- algorithms and keys -----

#[test]
fn none_and_hmac_are_never_allowed() {
    let all = JwsAlgorithm::ALL.to_vec();
    for alg in ["none", "None", "NONE", "HS256", "HS384", "HS512", "hs256"] {
        let e = check_algorithm(Some(&json!(alg)), &all).unwrap_err();
        assert!(
            matches!(&e, OidcError::AlgorithmNotAllowed { .. }),
            "{alg}: {e}"
        );
    }
    let e = check_algorithm(Some(&json!("HS256")), &all)
        .unwrap_err()
        .to_string();
    assert!(e.contains("HMAC tokens are never accepted"), "{e}");
    let e = check_algorithm(Some(&json!("none")), &all)
        .unwrap_err()
        .to_string();
    assert!(e.contains("unsigned tokens are never accepted"), "{e}");
}

#[test]
fn the_allowlist_decides_among_public_key_algorithms() {
    let allowed = [JwsAlgorithm::ES256];
    assert_eq!(
        check_algorithm(Some(&json!("ES256")), &allowed).unwrap(),
        JwsAlgorithm::ES256
    );
    let e = check_algorithm(Some(&json!("RS256")), &allowed)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("the provider's algorithms in the policy are ES256"),
        "{e}"
    );
    let e = check_algorithm(Some(&json!("ES512")), &allowed)
        .unwrap_err()
        .to_string();
    assert!(e.contains("not a JWS algorithm custodian knows"), "{e}");
    assert!(matches!(
        check_algorithm(None, &allowed),
        Err(OidcError::Malformed(_))
    ));
    assert!(matches!(
        check_algorithm(Some(&json!(256)), &allowed),
        Err(OidcError::Malformed(_))
    ));
    // What an attacker writes in alg is quoted only in a tame form.
    let e = check_algorithm(
        Some(&json!("<script>alert(1)</script>XXXXXXXXXXXXXXXX")),
        &allowed,
    )
    .unwrap_err();
    let OidcError::AlgorithmNotAllowed { alg, .. } = e else {
        panic!("{e}")
    };
    assert_eq!(alg, "scriptalert1scri");
}

#[test]
fn an_algorithm_needs_a_key_of_its_own_type() {
    let rsa = rsa_jwk("r");
    let ec = p256("e").jwk;
    let ed = ed25519("d").jwk;
    assert!(key_fits(&rsa, JwsAlgorithm::RS256).is_ok());
    assert!(key_fits(&ec, JwsAlgorithm::ES256).is_ok());
    assert!(key_fits(&ed, JwsAlgorithm::EdDSA).is_ok());
    for (jwk, alg) in [
        (&rsa, JwsAlgorithm::ES256),
        (&rsa, JwsAlgorithm::EdDSA),
        (&ec, JwsAlgorithm::RS256),
        (&ec, JwsAlgorithm::ES384),
        (&ec, JwsAlgorithm::EdDSA),
        (&ed, JwsAlgorithm::ES256),
        (&ed, JwsAlgorithm::PS256),
    ] {
        assert!(key_fits(jwk, alg).is_err(), "{} {alg}", key_type(jwk));
    }
    // A key that names its algorithm is used for that one only.
    assert!(key_fits(&rsa, JwsAlgorithm::PS256).is_err());
    let mut rsa_any = rsa.clone();
    rsa_any.common.key_algorithm = None;
    assert!(key_fits(&rsa_any, JwsAlgorithm::PS256).is_ok());
    // Symmetric and encryption keys are dropped from the set altogether.
    let oct = Jwk {
        common: common("s", Some(KeyAlgorithm::HS256)),
        algorithm: AlgorithmParameters::OctetKey(OctetKeyParameters {
            key_type: OctetKeyType::Octet,
            value: B64.encode(b"secret"),
        }),
    };
    assert!(!usable(&oct));
    let mut enc = rsa.clone();
    enc.common.public_key_use = Some(PublicKeyUse::Encryption);
    assert!(!usable(&enc));
    assert!(usable(&rsa) && usable(&ec) && usable(&ed));
}

#[test]
fn tokens_without_kid_use_the_only_fitting_key() {
    let ec = p256("e").jwk;
    let ed = ed25519("d").jwk;
    let keys = vec![ec.clone(), ed.clone()];
    assert!(matches!(lookup(&keys, None, JwsAlgorithm::EdDSA), Lookup::Found(k) if *k == ed));
    let two = vec![ed.clone(), ed25519("d2").jwk];
    assert!(matches!(
        lookup(&two, None, JwsAlgorithm::EdDSA),
        Lookup::Missing
    ));
    assert!(matches!(
        lookup(&keys, Some("e"), JwsAlgorithm::EdDSA),
        Lookup::Unfit(_)
    ));
    assert!(matches!(
        lookup(&keys, Some("x"), JwsAlgorithm::EdDSA),
        Lookup::Missing
    ));
}

#[test]
fn jwt_shape_is_three_base64url_segments() {
    assert!(looks_like_jwt("eyJh.eyJz.c2ln"));
    assert!(
        looks_like_jwt("eyJh.eyJz."),
        "alg none has an empty signature"
    );
    for s in [
        "",
        "a.b",
        "a.b.c.d",
        ".b.c",
        "a..c",
        "a.b.c d",
        "a.b+/.c",
        "cst_0123456789abcdef_aa",
        "a.b.c=",
    ] {
        assert!(!looks_like_jwt(s), "{s:?}");
    }
}

#[test]
fn jwks_uris_stay_on_tls_or_the_loopback_origin() {
    assert!(check_jwks_uri("https://idp.example", "https://keys.example/jwks").is_ok());
    assert!(check_jwks_uri("http://127.0.0.1:4000", "http://127.0.0.1:4000/jwks").is_ok());
    assert!(check_jwks_uri("http://127.0.0.1:4000/", "http://127.0.0.1:4000/jwks").is_ok());
    for (issuer, uri) in [
        ("https://idp.example", "http://idp.example/jwks"),
        ("http://127.0.0.1:4000", "http://127.0.0.1:40001/jwks"),
        ("http://127.0.0.1:4000", "http://10.0.0.1:4000/jwks"),
        ("http://localhost", "http://localhost.evil.example/jwks"),
    ] {
        assert!(check_jwks_uri(issuer, uri).is_err(), "{issuer} {uri}");
    }
}

#[test]
fn the_build_has_one_crypto_backend() {
    assert!(jsonwebtoken::crypto::CryptoProvider::try_get_default().is_some());
}

// ----- verification with preloaded keys (no provider) -----

/// A verifier for `http://127.0.0.1:9` (nothing listens: a fetch fails at once) holding `keys`.
fn preloaded(keys: Vec<Jwk>) -> (OidcVerifier, String) {
    let issuer = "http://127.0.0.1:9".to_owned();
    let v = OidcVerifier::new(vec![config("test", &issuer)], http_client().unwrap());
    v.preload("test", keys);
    (v, issuer)
}

fn now() -> Timestamp {
    SystemClock.now()
}

#[tokio::test]
async fn a_valid_token_verifies_with_each_key_type() {
    let ed = ed25519("ed-1");
    let ec = p256("ec-1");
    let (v, issuer) = preloaded(vec![ed.jwk.clone(), ec.jwk.clone()]);
    for key in [&ed, &ec] {
        let id = v
            .verify(&sign(key, &claims_at(&issuer, now())))
            .await
            .unwrap();
        assert_eq!(id.principal_id(), "oidc:test:client-1");
        assert_eq!(id.roles, vec![Role::Reader]);
        assert!(!id.mfa);
    }
}

#[tokio::test]
async fn forged_and_foreign_tokens_are_refused() {
    let ed = ed25519("ed-1");
    let ec = p256("ec-1");
    let (v, issuer) = preloaded(vec![ed.jwk.clone(), ec.jwk.clone()]);
    let claims = claims_at(&issuer, now());
    let err = |t: String| {
        let v = &v;
        async move { v.verify(&t).await.unwrap_err() }
    };

    // alg none, with and without a signature.
    let none = compact(&json!({ "alg": "none", "kid": "ed-1" }), &claims, b"");
    assert!(matches!(
        err(none).await,
        OidcError::AlgorithmNotAllowed { .. }
    ));
    // HS256 keyed with the published public key, in each form an attacker might try.
    let AlgorithmParameters::EllipticCurve(p) = &ec.jwk.algorithm else {
        unreachable!()
    };
    let public_forms: Vec<Vec<u8>> = vec![
        serde_json::to_vec(&ec.jwk).unwrap(),
        [B64.decode(&p.x).unwrap(), B64.decode(&p.y).unwrap()].concat(),
        p.x.as_bytes().to_vec(),
    ];
    for secret in public_forms {
        let header = json!({ "alg": "HS256", "typ": "JWT", "kid": "ec-1" });
        let input = format!(
            "{}.{}",
            B64.encode(header.to_string()),
            B64.encode(claims.to_string())
        );
        let token = format!(
            "{input}.{}",
            B64.encode(hmac_sha256(&secret, input.as_bytes()))
        );
        let e = err(token).await;
        assert!(matches!(e, OidcError::AlgorithmNotAllowed { .. }), "{e}");
    }
    // A signature by another key under a published kid.
    let impostor = ed25519("ed-1");
    assert!(matches!(
        err(sign(&impostor, &claims)).await,
        OidcError::BadSignature
    ));
    // A real signature, with the payload changed afterwards.
    let good = sign(&ed, &claims);
    let mut parts: Vec<&str> = good.split('.').collect();
    let mut changed = claims.clone();
    changed["custodian_tenant"] = json!("globex");
    let changed = B64.encode(changed.to_string());
    parts[1] = &changed;
    assert!(matches!(
        err(parts.join(".")).await,
        OidcError::BadSignature
    ));
    // The right key type under another key's kid.
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some("ed-1".into());
    let mismatched = jsonwebtoken::encode(&header, &claims, &ec.encoding).unwrap();
    let e = err(mismatched).await;
    assert!(
        matches!(&e, OidcError::AlgorithmNotAllowed { why, .. } if why.contains("key is for EdDSA")),
        "{e}"
    );
    // Another audience; another issuer.
    let mut other_aud = claims.clone();
    other_aud["aud"] = json!("urn:someone-else");
    let e = err(sign(&ed, &other_aud)).await;
    assert!(matches!(e, OidcError::WrongAudience { .. }), "{e}");
    assert!(e.to_string().contains(AUD));
    let mut several = claims.clone();
    several["aud"] = json!(["urn:someone-else", AUD]);
    assert!(v.verify(&sign(&ed, &several)).await.is_ok());
    let mut other_iss = claims.clone();
    other_iss["iss"] = json!("https://idp.invalid");
    assert!(matches!(
        err(sign(&ed, &other_iss)).await,
        OidcError::UnknownIssuer
    ));
    let mut no_iss = claims.clone();
    no_iss.as_object_mut().unwrap().remove("iss");
    assert!(matches!(err(sign(&ed, &no_iss)).await, OidcError::MissingClaim(c) if c == "iss"));
    let mut no_aud = claims.clone();
    no_aud.as_object_mut().unwrap().remove("aud");
    assert!(matches!(err(sign(&ed, &no_aud)).await, OidcError::MissingClaim(c) if c == "aud"));
    // Expired (beyond the 60 s leeway) and not yet valid.
    let mut expired = claims.clone();
    expired["exp"] = json!(now().as_second() - 61);
    assert!(matches!(
        err(sign(&ed, &expired)).await,
        OidcError::Expired { .. }
    ));
    let mut early = claims.clone();
    early["nbf"] = json!(now().as_second() + 120);
    assert!(matches!(
        err(sign(&ed, &early)).await,
        OidcError::NotYetValid { .. }
    ));
    // Too large, before anything is read.
    let mut big = claims.clone();
    big["padding"] = json!("x".repeat(MAX_TOKEN_BYTES));
    let e = err(sign(&ed, &big)).await;
    assert!(matches!(e, OidcError::TooLarge { .. }), "{e}");
    // Garbage.
    for t in ["a.b.c", "eyJ.eyJ.", "!!!.???.***", "e30.e30.e30"] {
        let e = err(t.to_owned()).await;
        assert!(
            matches!(e, OidcError::Malformed(_) | OidcError::MissingClaim(_)),
            "{t}: {e}"
        );
    }
}

#[tokio::test]
async fn error_messages_never_repeat_the_token() {
    let ed = ed25519("ed-1");
    let (v, issuer) = preloaded(vec![ed.jwk.clone()]);
    let mut claims = claims_at(&issuer, now());
    claims["exp"] = json!(now().as_second() - 3600);
    let expired = sign(&ed, &claims);
    let mut other_aud = claims_at(&issuer, now());
    other_aud["aud"] = json!("urn:x");
    for token in [
        expired.clone(),
        sign(&ed, &other_aud),
        format!("{expired}x"),
        format!("{}.AAAA", expired.rsplit_once('.').unwrap().0),
    ] {
        let msg = v.verify(&token).await.unwrap_err().to_string();
        for part in token.split('.').filter(|p| p.len() > 8) {
            assert!(!msg.contains(part), "{msg}");
        }
    }
}

// ----- key fetching against an in-process provider -----

#[derive(Default)]
struct MockProvider {
    issuer: Mutex<String>,
    jwks: Mutex<Value>,
    discovery_hits: AtomicUsize,
    jwks_hits: AtomicUsize,
    /// Discovery names this issuer instead of the real one, when set.
    claimed_issuer: Mutex<Option<String>>,
    /// The key set answers 503 while set.
    down: std::sync::atomic::AtomicBool,
}

async fn mock_provider(keys: &[&Jwk]) -> Arc<MockProvider> {
    use axum::extract::State;
    use axum::routing::get;
    let mock = Arc::new(MockProvider::default());
    *mock.jwks.lock().unwrap() = json!({ "keys": keys });
    let app = axum::Router::new()
        .route(
            "/.well-known/openid-configuration",
            get(|State(m): State<Arc<MockProvider>>| async move {
                m.discovery_hits.fetch_add(1, Ordering::SeqCst);
                let issuer = m.issuer.lock().unwrap().clone();
                let claimed = m.claimed_issuer.lock().unwrap().clone();
                axum::Json(json!({
                    "issuer": claimed.unwrap_or(issuer.clone()),
                    "jwks_uri": format!("{issuer}/jwks"),
                }))
            }),
        )
        .route(
            "/jwks",
            get(|State(m): State<Arc<MockProvider>>| async move {
                use axum::response::IntoResponse;
                m.jwks_hits.fetch_add(1, Ordering::SeqCst);
                if m.down.load(Ordering::SeqCst) {
                    return axum::http::StatusCode::SERVICE_UNAVAILABLE.into_response();
                }
                axum::Json(m.jwks.lock().unwrap().clone()).into_response()
            }),
        )
        .with_state(mock.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    *mock.issuer.lock().unwrap() = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    mock
}

impl MockProvider {
    fn issuer(&self) -> String {
        self.issuer.lock().unwrap().clone()
    }

    fn hits(&self) -> (usize, usize) {
        (
            self.discovery_hits.load(Ordering::SeqCst),
            self.jwks_hits.load(Ordering::SeqCst),
        )
    }

    fn publish(&self, keys: &[&Jwk]) {
        *self.jwks.lock().unwrap() = json!({ "keys": keys });
    }
}

fn verifier_for(mock: &MockProvider, clock: Arc<ShiftedClock>) -> OidcVerifier {
    OidcVerifier::new(vec![config("test", &mock.issuer())], http_client().unwrap())
        .with_clock(clock)
}

#[tokio::test]
async fn keys_are_discovered_cached_and_refetched_on_rotation_at_most_every_30_seconds() {
    let old = ed25519("gen-1");
    let mock = mock_provider(&[&old.jwk]).await;
    let clock = Arc::new(ShiftedClock::default());
    let v = verifier_for(&mock, clock.clone());
    let claims = || claims_at(&mock.issuer(), clock.now());

    v.verify(&sign(&old, &claims())).await.unwrap();
    assert_eq!(mock.hits(), (1, 1), "discovery, then the key set");
    for _ in 0..5 {
        v.verify(&sign(&old, &claims())).await.unwrap();
    }
    assert_eq!(mock.hits(), (1, 1), "served from the cache");

    // The provider rotates: a token under the new kid makes the verifier fetch once.
    let new = ed25519("gen-2");
    mock.publish(&[&new.jwk]);
    v.verify(&sign(&new, &claims())).await.unwrap();
    assert_eq!(mock.hits(), (1, 2), "no new discovery, one more key fetch");
    // Invented kids within 30 s cause no fetch at all.
    for i in 0..20 {
        let stranger = ed25519(&format!("stranger-{i}"));
        let e = v.verify(&sign(&stranger, &claims())).await.unwrap_err();
        assert!(matches!(e, OidcError::UnknownKey), "{e}");
    }
    assert_eq!(mock.hits(), (1, 2));
    // 30 s later, one more.
    clock.advance(SignedDuration::from_secs(31));
    let stranger = ed25519("stranger-late");
    assert!(v.verify(&sign(&stranger, &claims())).await.is_err());
    assert!(v.verify(&sign(&stranger, &claims())).await.is_err());
    assert_eq!(mock.hits(), (1, 3));
    // The old key is gone from the provider, so from the verifier.
    let e = v.verify(&sign(&old, &claims())).await.unwrap_err();
    assert!(matches!(e, OidcError::UnknownKey), "{e}");
    // After the TTL, the set is fetched again for a known kid too.
    v.verify(&sign(&new, &claims())).await.unwrap();
    assert_eq!(mock.hits(), (1, 3));
    clock.advance(SignedDuration::from_secs(5 * 60));
    v.verify(&sign(&new, &claims())).await.unwrap();
    assert_eq!(mock.hits(), (1, 4));
}

#[tokio::test]
async fn a_verified_token_is_not_checked_again_but_its_claims_and_key_set_are() {
    let key = ed25519("k");
    let mock = mock_provider(&[&key.jwk]).await;
    let clock = Arc::new(ShiftedClock::default());
    let v = verifier_for(&mock, clock.clone());
    let token = sign(&key, &claims_at(&mock.issuer(), clock.now()));
    v.verify(&token).await.unwrap();
    assert_eq!(mock.hits(), (1, 1));
    for _ in 0..5 {
        v.verify(&token).await.unwrap();
    }
    assert_eq!(mock.hits(), (1, 1));
    {
        let verified = v.verified.read().unwrap();
        assert_eq!(verified.len(), 1, "remembered once");
        assert!(
            verified.contains_key(&custodian_crypto::sha256(token.as_bytes())),
            "keyed by the token's hash"
        );
    }
    // Past the key set's TTL the remembered token is checked again against a fresh set.
    clock.advance(SignedDuration::from_secs(5 * 60 + 1));
    v.verify(&token).await.unwrap();
    assert_eq!(mock.hits(), (1, 2));
    // Past exp (plus the leeway) it is refused, remembered or not.
    clock.advance(SignedDuration::from_secs(60));
    let e = v.verify(&token).await.unwrap_err();
    assert!(matches!(e, OidcError::Expired { .. }), "{e}");
}

#[tokio::test]
async fn a_remembered_token_is_void_once_its_key_set_is_replaced() {
    let old = ed25519("gen-1");
    let mock = mock_provider(&[&old.jwk]).await;
    let clock = Arc::new(ShiftedClock::default());
    let v = verifier_for(&mock, clock.clone());
    let token = sign(&old, &claims_at(&mock.issuer(), clock.now()));
    v.verify(&token).await.unwrap();
    // The provider rotates; until the verifier fetches again, its keys are the old ones.
    let new = ed25519("gen-2");
    mock.publish(&[&new.jwk]);
    v.verify(&token).await.unwrap();
    v.verify(&sign(&new, &claims_at(&mock.issuer(), clock.now())))
        .await
        .unwrap();
    assert_eq!(mock.hits(), (1, 2));
    let e = v.verify(&token).await.unwrap_err();
    assert!(matches!(e, OidcError::UnknownKey), "{e}");
}

#[tokio::test]
async fn remembered_tokens_are_bounded() {
    let key = ed25519("k");
    let (v, issuer) = preloaded(vec![key.jwk.clone()]);
    for i in 0..=MAX_VERIFIED_TOKENS {
        let mut claims = claims_at(&issuer, now());
        claims["sub"] = json!(format!("client-{i}"));
        v.verify(&sign(&key, &claims)).await.unwrap();
        assert!(v.verified.read().unwrap().len() <= MAX_VERIFIED_TOKENS);
    }
    assert_eq!(
        v.verified.read().unwrap().len(),
        1,
        "all still usable: forgotten at once"
    );
}

#[tokio::test]
async fn concurrent_misses_cause_one_fetch() {
    let key = ed25519("k");
    let mock = mock_provider(&[&key.jwk]).await;
    let v = Arc::new(verifier_for(&mock, Arc::new(ShiftedClock::default())));
    let token = sign(&key, &claims_at(&mock.issuer(), now()));
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let (v, token) = (v.clone(), token.clone());
            tokio::spawn(async move { v.verify(&token).await.map(|_| ()) })
        })
        .collect();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert_eq!(mock.hits(), (1, 1));
}

#[tokio::test]
async fn a_discovery_document_must_name_its_issuer() {
    let key = ed25519("k");
    let mock = mock_provider(&[&key.jwk]).await;
    *mock.claimed_issuer.lock().unwrap() = Some("https://someone-else.example".into());
    let v = verifier_for(&mock, Arc::new(ShiftedClock::default()));
    let e = v
        .verify(&sign(&key, &claims_at(&mock.issuer(), now())))
        .await
        .unwrap_err();
    assert!(e.is_unavailable());
    assert!(e.to_string().contains("names another issuer"), "{e}");
}

#[tokio::test]
async fn a_failing_provider_is_not_asked_again_at_once() {
    let key = ed25519("k");
    let mock = mock_provider(&[&key.jwk]).await;
    mock.down.store(true, Ordering::SeqCst);
    let clock = Arc::new(ShiftedClock::default());
    let v = verifier_for(&mock, clock.clone());
    let token = || sign(&key, &claims_at(&mock.issuer(), clock.now()));
    let e = v.verify(&token()).await.unwrap_err();
    assert!(e.is_unavailable(), "{e}");
    assert!(e.to_string().contains("HTTP 503"), "{e}");
    for _ in 0..5 {
        let e = v.verify(&token()).await.unwrap_err();
        assert!(e.to_string().contains("not retried for"), "{e}");
    }
    // Discovery is repeated after a failed key fetch, in case the provider moved its keys.
    assert_eq!(mock.hits(), (1, 1));
    mock.down.store(false, Ordering::SeqCst);
    clock.advance(SignedDuration::from_secs(11));
    v.verify(&token()).await.unwrap();
    assert_eq!(mock.hits(), (2, 2));
}

#[tokio::test]
async fn an_unreachable_provider_is_reported_as_such() {
    let key = ed25519("k");
    let v = OidcVerifier::new(
        vec![config("down", "http://127.0.0.1:9")],
        http_client().unwrap(),
    );
    let e = v
        .verify(&sign(&key, &claims_at("http://127.0.0.1:9", now())))
        .await
        .unwrap_err();
    assert!(e.is_unavailable(), "{e}");
    assert!(
        e.to_string()
            .starts_with("the signing keys of OIDC provider down could not be fetched"),
        "{e}"
    );
}

// ----- the parsing path never panics -----

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn b64_segment() -> impl Strategy<Value = String> {
    prop::collection::vec(any::<u8>(), 0..64).prop_map(|b| B64.encode(b))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn arbitrary_input_is_an_error_never_a_panic(
        text in ".{0,200}",
        bytes in prop::collection::vec(any::<u8>(), 0..300),
        (h, p, s) in (b64_segment(), b64_segment(), b64_segment()),
        alg in prop::sample::select(vec!["none", "HS256", "RS256", "ES256", "EdDSA", "PS512", "", "ES256K"]),
        kid in prop::option::of("[a-z0-9-]{0,12}"),
        claims in prop::collection::btree_map("[a-z_]{1,10}", any::<i64>(), 0..6),
    ) {
        let ed = ed25519("ed-1");
        let (v, issuer) = preloaded(vec![ed.jwk.clone()]);
        let rt = runtime();
        let mut payload = serde_json::to_value(&claims).unwrap();
        payload["iss"] = json!(issuer);
        let header = match kid {
            Some(kid) => json!({ "alg": alg, "kid": kid }),
            None => json!({ "alg": alg }),
        };
        let structured = compact(&header, &payload, s.as_bytes());
        let lossy = String::from_utf8_lossy(&bytes).into_owned();
        for input in [text.clone(), lossy, format!("{h}.{p}.{s}"), structured] {
            prop_assert!(rt.block_on(v.verify(&input)).is_err(), "accepted {input:?}");
        }
    }

    #[test]
    fn a_mutated_real_token_is_refused(
        position in any::<prop::sample::Index>(),
        replacement in prop::sample::select(
            "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.=+/ ".chars().collect::<Vec<_>>()
        ),
        cut in any::<prop::sample::Index>(),
        how in 0..3u8,
    ) {
        let ed = ed25519("ed-1");
        let (v, issuer) = preloaded(vec![ed.jwk.clone()]);
        let rt = runtime();
        let token = sign(&ed, &claims_at(&issuer, now()));
        prop_assert!(rt.block_on(v.verify(&token)).is_ok());
        let mut chars: Vec<char> = token.chars().collect();
        let mutated: String = match how {
            0 => {
                let i = position.index(chars.len());
                if chars[i] == replacement {
                    return Ok(());
                }
                chars[i] = replacement;
                chars.into_iter().collect()
            }
            1 => chars[..cut.index(chars.len())].iter().collect(),
            _ => {
                chars.insert(position.index(chars.len() + 1), replacement);
                chars.into_iter().collect()
            }
        };
        prop_assert!(rt.block_on(v.verify(&mutated)).is_err(), "accepted {mutated:?}");
    }
}
