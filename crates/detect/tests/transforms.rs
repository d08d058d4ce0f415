//! Properties of the de-identification transforms, and known-answer tests pinning the
//! cryptographic crates underneath them (NIST SP 800-38G FF1 samples).

use aes::{Aes128, Aes192, Aes256};
use custodian_detect::transform::{
    self, Generalization, MaskOptions, date_shift, date_shift_days, detokenize, fpe, fpe_decrypt,
    generalize, mask, pseudonymize, redact, tokenize, truncate_ip,
};
use custodian_detect::{DetectError, Entity, ScanConfig, Scanner, SecretKey};
use fpe::ff1::{FF1, FlexibleNumeralString};
use proptest::prelude::*;

fn key(byte: u8, len: usize) -> SecretKey {
    SecretKey::new(&vec![byte; len])
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

#[test]
fn redaction() {
    assert_eq!(redact(Entity::EmailAddress, None), "<EMAIL_ADDRESS>");
    assert_eq!(redact(Entity::UsSsn, Some("[REDACTED]")), "[REDACTED]");
}

#[test]
fn masking() {
    let card = "4111 1111 1111 1111";
    assert_eq!(mask(card, &MaskOptions::default()), "**** **** **** 1111");
    let flat = MaskOptions {
        keep_separators: false,
        ..MaskOptions::default()
    };
    assert_eq!(mask(card, &flat), "***************1111");
    let none = MaskOptions {
        keep_last: 0,
        mask_char: '#',
        ..MaskOptions::default()
    };
    assert_eq!(mask("536-22-5555", &none), "###-##-####");
    assert_eq!(mask("abc", &MaskOptions::default()), "abc");
    assert_eq!(mask("", &MaskOptions::default()), "");
    // Characters, not bytes.
    assert_eq!(mask("José Müller", &MaskOptions::default()), "**** **ller");
}

#[test]
fn pseudonyms_are_stable_per_key_and_differ_across_keys() {
    let (k1, k2) = (key(1, 32), key(2, 32));
    let a = pseudonymize(&k1, "alice@acme.io").expect("pseudonym");
    assert_eq!(a, pseudonymize(&k1, "alice@acme.io").expect("pseudonym"));
    assert_ne!(a, pseudonymize(&k2, "alice@acme.io").expect("pseudonym"));
    assert_ne!(a, pseudonymize(&k1, "alice@acme.com").expect("pseudonym"));
    assert!(a.starts_with("pse_"));
    assert_eq!(a.len(), 4 + 26);
    assert!(
        a[4..]
            .bytes()
            .all(|c| c.is_ascii_lowercase() || (b'2'..=b'7').contains(&c))
    );
    assert!(matches!(
        pseudonymize(&key(1, 15), "x"),
        Err(DetectError::KeyLength { got: 15, .. })
    ));
}

/// The constructions pinned against values computed independently (Python's `hmac` and
/// `base64`): changing the domain label, truncation or encoding would silently break joins on
/// data pseudonymised or shifted before.
#[test]
fn keyed_constructions_known_answers() {
    let k = SecretKey::new(b"0123456789abcdef0123456789abcdef");
    assert_eq!(
        pseudonymize(&k, "alice@acme.io").expect("pseudonym"),
        "pse_lfw6qeod6nxpjpxpsxteakroii"
    );
    assert_eq!(date_shift_days(&key(5, 32), "alice", 30).expect("days"), -6);
}

#[test]
fn tokens_round_trip() {
    for k in [key(7, 32), key(7, 64)] {
        for value in ["alice@acme.io", "", "ünïcødé ✓", &"x".repeat(5000)] {
            let t = tokenize(&k, b"tenant-a/email", value).expect("tokenize");
            assert!(t.starts_with("tok_"));
            assert!(!t.contains(value) || value.is_empty());
            assert_eq!(
                detokenize(&k, b"tenant-a/email", &t).expect("detokenize"),
                value
            );
            // Deterministic: same key, context and value give the same token.
            assert_eq!(t, tokenize(&k, b"tenant-a/email", value).expect("tokenize"));
        }
    }
    let a = tokenize(&key(1, 32), b"", "v").expect("tokenize");
    let b = tokenize(&key(2, 32), b"", "v").expect("tokenize");
    assert_ne!(a, b);
}

#[test]
fn tokens_reject_tampering_wrong_keys_and_contexts() {
    let k = key(9, 64);
    let t = tokenize(&k, b"ctx", "4111111111111111").expect("tokenize");
    assert_eq!(
        detokenize(&key(8, 64), b"ctx", &t),
        Err(DetectError::TokenRejected)
    );
    assert_eq!(
        detokenize(&k, b"other", &t),
        Err(DetectError::TokenRejected)
    );
    assert!(matches!(
        detokenize(&key(9, 32), b"ctx", &t),
        Err(DetectError::TokenRejected)
    ));
    // Flip every character of the body in turn: never a plaintext, never a panic.
    let body = &t[4..];
    for i in 0..body.len() {
        let mut chars: Vec<char> = body.chars().collect();
        chars[i] = if chars[i] == 'A' { 'B' } else { 'A' };
        let tampered: String = format!("tok_{}", chars.into_iter().collect::<String>());
        if tampered == t {
            continue;
        }
        assert!(detokenize(&k, b"ctx", &tampered).is_err(), "position {i}");
    }
    // Truncated, extended, not base64url, no prefix.
    assert!(detokenize(&k, b"ctx", &t[..t.len() - 2]).is_err());
    assert!(detokenize(&k, b"ctx", &format!("{t}AA")).is_err());
    assert!(matches!(
        detokenize(&k, b"ctx", "tok_!!!"),
        Err(DetectError::MalformedToken(_))
    ));
    assert!(matches!(
        detokenize(&k, b"ctx", "tok_AAAA"),
        Err(DetectError::MalformedToken(_))
    ));
    assert!(matches!(
        detokenize(&k, b"ctx", &t[4..]),
        Err(DetectError::MalformedToken(_))
    ));
    assert!(matches!(
        tokenize(&key(1, 16), b"", "v"),
        Err(DetectError::KeyLength { got: 16, .. })
    ));
}

/// NIST SP 800-38G FF1 samples with radix 10, through this crate's `fpe`.
#[test]
fn ff1_nist_samples_radix_10() {
    let k128 = hex("2B7E151628AED2A6ABF7158809CF4F3C");
    let k192 = hex("2B7E151628AED2A6ABF7158809CF4F3CEF4359D8D580AA4F");
    let k256 = hex("2B7E151628AED2A6ABF7158809CF4F3CEF4359D8D580AA4F7F036D6F04FC6A94");
    let tweak = hex("39383736353433323130");
    for (n, key, tweak, want) in [
        (1, &k128, &[][..], "2433477484"),
        (2, &k128, &tweak[..], "6124200773"),
        (4, &k192, &[][..], "2830668132"),
        (5, &k192, &tweak[..], "2496655549"),
        (7, &k256, &[][..], "6657667009"),
        (8, &k256, &tweak[..], "1001623463"),
    ] {
        let k = SecretKey::new(key);
        assert_eq!(
            fpe(&k, tweak, "0123456789").expect("ff1"),
            want,
            "sample {n}"
        );
        assert_eq!(
            fpe_decrypt(&k, tweak, want).expect("ff1"),
            "0123456789",
            "sample {n}"
        );
    }
}

/// NIST samples 3, 6 and 9 (radix 36), through the `fpe` crate directly: it is unaudited, so
/// pin it on every published sample, not only the decimal ones this crate uses.
#[test]
fn ff1_nist_samples_radix_36() {
    fn numerals(s: &str) -> Vec<u16> {
        s.chars()
            .map(|c| c.to_digit(36).expect("base 36") as u16)
            .collect()
    }
    let pt = FlexibleNumeralString::from(numerals("0123456789abcdefghi"));
    let tweak = hex("3737373770717273373737");
    let k = hex("2B7E151628AED2A6ABF7158809CF4F3CEF4359D8D580AA4F7F036D6F04FC6A94");
    let ct: Vec<u16> = FF1::<Aes128>::new(&k[..16], 36)
        .expect("radix")
        .encrypt(&tweak, &pt)
        .expect("sample 3")
        .into();
    assert_eq!(ct, numerals("a9tv40mll9kdu509eum"));
    let ct: Vec<u16> = FF1::<Aes192>::new(&k[..24], 36)
        .expect("radix")
        .encrypt(&tweak, &pt)
        .expect("sample 6")
        .into();
    assert_eq!(ct, numerals("xbj3kv35jrawxv32ysr"));
    let ct: Vec<u16> = FF1::<Aes256>::new(&k, 36)
        .expect("radix")
        .encrypt(&tweak, &pt)
        .expect("sample 9")
        .into();
    assert_eq!(ct, numerals("xs8a0azh2avyalyzuwd"));
}

#[test]
fn fpe_keeps_the_format() {
    let k = key(3, 32);
    let card = "4111-1111-1111-1111";
    let enc = fpe(&k, b"card", card).expect("fpe");
    assert_eq!(enc.len(), card.len());
    assert_ne!(enc, card);
    for (a, b) in enc.chars().zip(card.chars()) {
        assert_eq!(a.is_ascii_digit(), b.is_ascii_digit());
        if !b.is_ascii_digit() {
            assert_eq!(a, b);
        }
    }
    assert_eq!(fpe_decrypt(&k, b"card", &enc).expect("decrypt"), card);
    assert_ne!(enc, fpe(&k, b"other tweak", card).expect("fpe"));
    assert_ne!(enc, fpe(&key(4, 32), b"card", card).expect("fpe"));
    // Non-ASCII text around the digits stays put.
    let phone = "☎ +44 (20) 7946-0958 ✓";
    let enc = fpe(&k, b"", phone).expect("fpe");
    assert_eq!(fpe_decrypt(&k, b"", &enc).expect("decrypt"), phone);
    assert!(enc.starts_with("☎ +") && enc.ends_with(" ✓"));
}

#[test]
fn fpe_refuses_short_values_and_bad_keys() {
    let k = key(3, 16);
    for v in ["12345", "12-34-5", "", "no digits", "١٢٣٤٥٦٧"] {
        assert!(
            matches!(
                fpe(&k, b"", v),
                Err(DetectError::TooFewDigits { min: 6, .. })
            ),
            "{v}"
        );
    }
    assert_eq!(
        fpe(&k, b"", "12-345"),
        Err(DetectError::TooFewDigits { got: 5, min: 6 })
    );
    assert!(fpe(&k, b"", "123456").is_ok());
    assert!(matches!(
        fpe(&k, b"", &"1".repeat(2000)),
        Err(DetectError::TooManyDigits { .. })
    ));
    for len in [0, 15, 17, 31, 64] {
        assert!(matches!(
            fpe(&key(1, len), b"", "123456"),
            Err(DetectError::KeyLength { .. })
        ));
    }
    // The error names counts, never the value.
    let msg = fpe(&k, b"", "98765")
        .map_err(|e| e.to_string())
        .unwrap_err();
    assert!(!msg.contains("98765"), "{msg}");
}

#[test]
fn ip_truncation() {
    assert_eq!(truncate_ip("192.0.2.77").expect("v4"), "192.0.2.0");
    assert_eq!(truncate_ip(" 10.20.30.40 ").expect("v4"), "10.20.30.0");
    assert_eq!(
        truncate_ip("2001:db8:85a3:8d3:1319:8a2e:370:7348").expect("v6"),
        "2001:db8:85a3::"
    );
    assert_eq!(truncate_ip("::1").expect("v6"), "::");
    for bad in ["", "256.1.1.1", "example.com", "1.2.3"] {
        assert!(
            matches!(truncate_ip(bad), Err(DetectError::InvalidInput(_))),
            "{bad}"
        );
    }
}

#[test]
fn date_shift_is_consistent_per_subject_and_in_range() {
    let k = key(5, 32);
    let d = date_shift_days(&k, "alice", 30).expect("days");
    assert!((-30..=30).contains(&d) && d != 0, "{d}");
    assert_eq!(d, date_shift_days(&k, "alice", 30).expect("days"));
    // Intervals between one subject's dates survive.
    let a = date_shift(&k, "alice", "2024-02-28", 30).expect("shift");
    let b = date_shift(&k, "alice", "2024-03-01", 30).expect("shift");
    let (a, b): (jiff::civil::Date, jiff::civil::Date) =
        (a.parse().expect("date"), b.parse().expect("date"));
    assert_eq!((b - a).get_days(), 2);
    // RFC 3339: the date moves, time and offset stay as written.
    let ts = date_shift(&k, "alice", "2024-03-01T10:30:00+02:00", 30).expect("shift");
    assert_eq!(&ts[10..], "T10:30:00+02:00");
    assert_eq!(&ts[..10], b.to_string());
    // Subjects get different offsets (with 60 possible, most of 50 subjects differ from alice).
    let differing = (0..50)
        .filter(|i| date_shift_days(&k, &format!("subject-{i}"), 30).ok() != Some(d))
        .count();
    assert!(differing > 40, "{differing}");
    // Every offset over many subjects stays in range, never zero, and both signs occur.
    let offsets: Vec<i32> = (0..2000)
        .map(|i| date_shift_days(&k, &i.to_string(), 7).expect("days"))
        .collect();
    assert!(offsets.iter().all(|&o| (-7..=7).contains(&o) && o != 0));
    assert!(offsets.iter().any(|&o| o < 0) && offsets.iter().any(|&o| o > 0));
    // Another key, another offset for most subjects.
    let other = key(6, 32);
    let changed = (0..50)
        .filter(|i| {
            date_shift_days(&k, &i.to_string(), 365).ok()
                != date_shift_days(&other, &i.to_string(), 365).ok()
        })
        .count();
    assert!(changed > 45, "{changed}");
}

#[test]
fn date_shift_refuses_bad_input() {
    let k = key(5, 32);
    for bad in [
        "",
        "2024-13-01",
        "2024-02-30",
        "24-01-01",
        "2024/01/01",
        "2024-01-01Tgarbage",
        "2024-01-01 and more",
    ] {
        assert!(
            matches!(
                date_shift(&k, "s", bad, 30),
                Err(DetectError::InvalidInput(_))
            ),
            "{bad}"
        );
    }
    assert!(matches!(
        date_shift(&k, "s", "2024-01-01", 0),
        Err(DetectError::InvalidInput(_))
    ));
    assert!(matches!(
        date_shift(&k, "s", "2024-01-01", 4000),
        Err(DetectError::InvalidInput(_))
    ));
    assert!(matches!(
        date_shift(&key(5, 8), "s", "2024-01-01", 30),
        Err(DetectError::KeyLength { .. })
    ));
    // Shifting past year 9999 is refused, whichever way this subject's offset points.
    let near_end = date_shift(&k, "s", "9999-12-31", 3650);
    let near_start = date_shift(&k, "s", "0001-01-01", 3650);
    assert!(
        near_end == Err(DetectError::DateOutOfRange)
            || near_start == Err(DetectError::DateOutOfRange)
    );
}

#[test]
fn generalization() {
    assert_eq!(
        generalize(Generalization::Year, "1987-06-05").expect("year"),
        "1987"
    );
    assert_eq!(
        generalize(Generalization::Year, "1987-06-05T12:00:00Z").expect("year"),
        "1987"
    );
    for (age, band) in [
        ("0", "0-9"),
        ("34", "30-39"),
        ("89", "80-89"),
        ("90", "90+"),
        ("120", "90+"),
    ] {
        assert_eq!(generalize(Generalization::AgeBand, age).expect("age"), band);
    }
    assert_eq!(
        generalize(Generalization::Postcode, "94107").expect("zip"),
        "941"
    );
    assert_eq!(
        generalize(Generalization::Postcode, "SW1A 1AA").expect("postcode"),
        "SW1"
    );
    for (kind, bad) in [
        (Generalization::Year, "June 1987"),
        (Generalization::AgeBand, "-3"),
        (Generalization::AgeBand, "thirty"),
        (Generalization::Postcode, "12"),
    ] {
        assert!(
            matches!(generalize(kind, bad), Err(DetectError::InvalidInput(_))),
            "{bad}"
        );
    }
}

#[test]
fn apply_rewrites_findings() {
    let scanner = Scanner::new(ScanConfig::default()).expect("scanner");
    let text = "Mail jane@acme.io, card 4539 1488 0343 6467, from 10.1.2.3.";
    let findings = scanner.scan(text);
    let k = key(1, 32);
    let out = transform::apply(text, &findings, |f, value| match f.entity {
        Entity::EmailAddress => pseudonymize(&k, value),
        Entity::CreditCard => Ok(mask(value, &MaskOptions::default())),
        Entity::IpAddress => truncate_ip(value),
        other => Ok(redact(other, None)),
    })
    .expect("apply");
    assert!(out.starts_with("Mail pse_"), "{out}");
    assert!(
        out.contains("card **** **** **** 6467, from 10.1.2.0."),
        "{out}"
    );
    assert!(!out.contains("jane"));
    // Findings that do not fit the text are refused, not sliced.
    let mut bad = findings.clone();
    bad[0].end = text.len() + 10;
    assert!(transform::apply(text, &bad, |_, v| Ok(v.to_owned())).is_err());
    let mut reversed = findings;
    reversed.reverse();
    assert!(transform::apply(text, &reversed, |_, v| Ok(v.to_owned())).is_err());
}

proptest! {
    #[test]
    fn fpe_round_trips_any_digit_string(digits in "[0-9]{6,40}", seps in proptest::collection::vec(0usize..3, 40), tweak in proptest::collection::vec(any::<u8>(), 0..16)) {
        // Sprinkle separators between digits to check they stay in place.
        let mut value = String::new();
        for (i, c) in digits.chars().enumerate() {
            value.push(c);
            match seps[i] {
                1 => value.push('-'),
                2 => value.push(' '),
                _ => {}
            }
        }
        let k = key(11, 24);
        let enc = fpe(&k, &tweak, &value).expect("fpe");
        prop_assert_eq!(enc.len(), value.len());
        prop_assert_eq!(fpe_decrypt(&k, &tweak, &enc).expect("decrypt"), value);
    }

    #[test]
    fn tokens_round_trip_any_string(value in any::<String>(), context in proptest::collection::vec(any::<u8>(), 0..32)) {
        let k = key(12, 32);
        let t = tokenize(&k, &context, &value).expect("tokenize");
        prop_assert_eq!(detokenize(&k, &context, &t).expect("detokenize"), value);
    }

    #[test]
    fn detokenize_never_panics(token in any::<String>()) {
        let _ = detokenize(&key(12, 32), b"", &token);
        let _ = detokenize(&key(12, 32), b"", &format!("tok_{token}"));
    }

    #[test]
    fn unkeyed_transforms_never_panic(value in any::<String>()) {
        let _ = mask(&value, &MaskOptions::default());
        let _ = truncate_ip(&value);
        let _ = generalize(Generalization::Year, &value);
        let _ = generalize(Generalization::AgeBand, &value);
        let _ = generalize(Generalization::Postcode, &value);
        let _ = date_shift(&key(1, 16), "s", &value, 10);
        let _ = fpe(&key(1, 16), b"", &value);
    }
}
