//! Fuzz target: the scanner over arbitrary bytes, then every finding through the transforms
//! ingest applies to free text.
//!
//! Beyond "does not panic", it checks what callers rely on: findings lie inside the text, on
//! character boundaries, sorted and disjoint, with scores in 0..=1; redaction and masking
//! rebuild the text around them; tokens open again to the value; format-preserving encryption
//! round-trips whenever it accepts a value.

use std::sync::LazyLock;

use custodian_detect::transform::{self, MaskOptions};
use custodian_detect::{Entity, ScanConfig, Scanner, SecretKey};

static SCANNER: LazyLock<Scanner> =
    LazyLock::new(|| Scanner::new(ScanConfig::default()).expect("the default config is valid"));
static TOKEN_KEY: LazyLock<SecretKey> = LazyLock::new(|| SecretKey::new(&[7; 64]));
static FPE_KEY: LazyLock<SecretKey> = LazyLock::new(|| SecretKey::new(&[9; 32]));

fn check(data: &[u8]) {
    // Ingest and `custodian scan` read invalid UTF-8 lossily; so does this target.
    let text = String::from_utf8_lossy(data);
    let findings = SCANNER.scan(&text);
    let mut pos = 0;
    for f in &findings {
        assert!(
            f.start >= pos && f.start < f.end && f.end <= text.len(),
            "{f:?}"
        );
        assert!(
            text.is_char_boundary(f.start) && text.is_char_boundary(f.end),
            "{f:?}"
        );
        assert!((0.0..=1.0).contains(&f.score), "{f:?}");
        pos = f.end;
    }
    let redacted = transform::apply(&text, &findings, |f, _| {
        Ok(transform::redact(f.entity, None))
    })
    .expect("findings from scan apply to the scanned text");
    let removed: usize = findings.iter().map(|f| f.end - f.start).sum();
    let added: usize = findings.iter().map(|f| f.entity.as_str().len() + 2).sum();
    assert_eq!(redacted.len(), text.len() - removed + added);
    let masked = transform::apply(&text, &findings, |_, v| {
        Ok(transform::mask(v, &MaskOptions::default()))
    })
    .expect("masking applies");
    assert_eq!(masked.chars().count(), text.chars().count());
    for f in &findings {
        let value = &text[f.range()];
        let token =
            transform::tokenize(&TOKEN_KEY, b"fuzz/scan", value).expect("tokens take any text");
        assert_eq!(
            transform::detokenize(&TOKEN_KEY, b"fuzz/scan", &token).expect("a token opens"),
            value
        );
        if matches!(
            f.entity,
            Entity::CreditCard | Entity::PhoneNumber | Entity::UsSsn | Entity::IbanCode
        ) && let Ok(enciphered) = transform::fpe(&FPE_KEY, b"fuzz/scan", value)
        {
            assert_eq!(enciphered.len(), value.len());
            assert_eq!(
                transform::fpe_decrypt(&FPE_KEY, b"fuzz/scan", &enciphered).expect("round trip"),
                value
            );
        }
        if f.entity == Entity::IpAddress {
            transform::truncate_ip(value).expect("a detected address parses");
        }
    }
}

fn main() {
    afl::fuzz!(|data: &[u8]| check(data));
}
