//! Hostile and pathological input: the scanner must finish, not panic, and return offsets that
//! slice the text on character boundaries, sorted and disjoint. No timing is asserted; a
//! super-linear path would show up as a test that does not finish.

use std::sync::LazyLock;

use custodian_detect::{Finding, ScanConfig, Scanner};
use proptest::prelude::*;

static SCANNER: LazyLock<Scanner> =
    LazyLock::new(|| Scanner::new(ScanConfig::default()).expect("default config is valid"));

/// Scans and checks every structural promise of `scan`.
fn scan_checked(text: &str) -> Vec<Finding> {
    let findings = SCANNER.scan(text);
    for f in &findings {
        assert!(f.start < f.end && f.end <= text.len(), "{f:?}");
        assert!(
            text.is_char_boundary(f.start) && text.is_char_boundary(f.end),
            "{f:?}"
        );
        assert!((0.0..=1.0).contains(&f.score), "{f:?}");
        assert!(text.get(f.range()).is_some());
    }
    assert!(
        findings.windows(2).all(|w| w[0].end <= w[1].start),
        "overlap or unsorted"
    );
    findings
}

#[test]
fn ten_megabytes_of_digits() {
    let text = "7".repeat(10 << 20);
    assert!(scan_checked(&text).is_empty());
    let mixed: String = (0u64..(10 << 20) / 10)
        .map(|i| format!("{:010}", i * 7919))
        .collect();
    scan_checked(&mixed);
}

#[test]
fn long_runs_of_grouped_digits() {
    // Every 13–19 digit window of these is a card-shaped candidate.
    scan_checked(&"4 ".repeat(1 << 20));
    scan_checked(&"4111 ".repeat(1 << 18));
    scan_checked(&"415-555-".repeat(1 << 17));
    scan_checked(&"+1 ".repeat(1 << 19));
    scan_checked(&"1.".repeat(1 << 20));
    scan_checked(&"(1) ".repeat(1 << 18));
}

#[test]
fn repeated_prefixes_and_keywords() {
    for unit in [
        "eyJ",
        "eyJhbGciOiJub25lIn0.",
        "AKIA",
        "ghp_",
        "glpat-",
        "xoxb-1-",
        "sk_live_",
        "Bearer ",
        "hooks.slack.com/",
        "-----BEGIN PRIVATE KEY-----",
        "-----END PRIVATE KEY-----",
        "password=",
        "password=\"",
        "aws_secret=",
        "aws ",
        "a:",
        "::",
        ":=",
        "==",
        "@",
        "a@b.",
        "DE89",
        "GB82 WEST ",
        "00:",
        "fe80::",
        "ff-",
    ] {
        let text = unit.repeat((2 << 20) / unit.len());
        scan_checked(&text);
    }
    // Many BEGIN lines and a single END far away.
    let text = format!(
        "{}{}",
        "-----BEGIN RSA PRIVATE KEY-----\nMIIE\n".repeat(50_000),
        "-----END RSA PRIVATE KEY-----"
    );
    scan_checked(&text);
    // One huge key body with no END line.
    let text = format!("-----BEGIN PRIVATE KEY-----\n{}", "QUJD".repeat(1 << 20));
    assert_eq!(scan_checked(&text).len(), 1);
}

#[test]
fn deeply_nested_quotes_and_brackets() {
    scan_checked(&"\"".repeat(1 << 20));
    scan_checked(&"\"password\": ".repeat(1 << 16));
    scan_checked(&format!(
        "{}{}",
        "{\"a\":".repeat(1 << 17),
        "}".repeat(1 << 17)
    ));
    scan_checked(&format!(
        "{}x{}",
        "[(\"'`".repeat(1 << 17),
        "`'\")]".repeat(1 << 17)
    ));
    scan_checked(&"\\\"".repeat(1 << 19));
}

#[test]
fn multibyte_characters_next_to_matches() {
    for text in [
        "é4539148803436467é",
        "日本4539 1488 0343 6467語",
        "ü jane@acme.io ü",
        "ñjane@acme.ioñ",
        "→536-22-5555←",
        "±10.1.2.3±",
        "€DE89370400440532013000€",
        "☎+14155552671☎",
        "password=ééééééééééééééééééééééééééééé",
        "🔑AKIAZ7VRSQ5TLA3MBQWE🔑",
        "«eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl»",
        "µ00:1A:2B:3C:4D:5Eµ",
        "\u{200b}2001:db8::1\u{200b}",
    ] {
        scan_checked(text);
    }
    // A bare value longer than the 200-byte limit, of 2-, 3- and 4-byte characters.
    for c in ['é', '語', '🔑'] {
        let text = format!("password={}", c.to_string().repeat(150));
        scan_checked(&text);
        let text = format!("api_key=Ab1{}", c.to_string().repeat(150));
        scan_checked(&text);
    }
}

#[test]
fn control_characters_and_odd_whitespace() {
    let text: String = (0u8..=127).map(char::from).cycle().take(1 << 20).collect();
    scan_checked(&text);
    scan_checked("\0\0\0 4539148803436467 \0\0");
    scan_checked("\r\n\t\u{feff}password =\t\"Zq8!rT4#wY2m\"\r\n");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn scan_never_panics_on_any_string(text in any::<String>()) {
        scan_checked(&text);
    }

    /// Strings from the alphabet the detectors care about, where candidates are dense.
    #[test]
    fn scan_never_panics_on_dense_candidates(text in "[0-9a-fA-Z .:@+()\\-_=\"'/éü]{0,300}") {
        scan_checked(&text);
    }

    /// Known values with arbitrary text around them are still found, at the same place.
    #[test]
    fn values_are_found_wherever_they_are(before in "[a-z ,.;é]{0,20}", after in "[a-z ,.;é]{0,20}") {
        let value = "4539 1488 0343 6467";
        let text = format!("{before} {value} {after}");
        let f = scan_checked(&text);
        let start = before.len() + 1;
        prop_assert!(f.iter().any(|f| f.start == start && f.end == start + value.len()), "{:?}", f);
    }
}
