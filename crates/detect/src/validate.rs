//! Validators: the checks that turn "looks like a card number" into "is a card number".
//!
//! Each function takes the value in its compact form (digits only, or upper-case alphanumerics
//! for IBANs) and answers without allocating more than a few bytes. They are public so that
//! ingest code can validate a field it already knows the type of without scanning it.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::LazyLock;

/// Whether `digits` (ASCII digits only) passes the Luhn mod-10 check. Any other byte fails.
pub fn luhn(digits: &[u8]) -> bool {
    if digits.is_empty() {
        return false;
    }
    let mut sum = 0u32;
    for (i, &b) in digits.iter().rev().enumerate() {
        if !b.is_ascii_digit() {
            return false;
        }
        let mut d = u32::from(b - b'0');
        if i % 2 == 1 {
            d *= 2;
            if d > 9 {
                d -= 9;
            }
        }
        sum += d;
    }
    sum.is_multiple_of(10)
}

/// A payment card network, recognised from the issuer identification number (the leading
/// digits) together with the number's length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CardIssuer {
    Visa,
    Mastercard,
    Amex,
    Discover,
    Jcb,
    DinersClub,
    UnionPay,
}

/// The leading `n` digits of `digits` as a number (`digits` is known to be ASCII digits).
fn prefix(digits: &[u8], n: usize) -> u32 {
    digits
        .iter()
        .take(n)
        .fold(0, |acc, &b| acc * 10 + u32::from(b.wrapping_sub(b'0')))
}

/// The network of a card number (ASCII digits only), if its prefix and length fit one.
///
/// The ranges are the networks' published IIN ranges: Visa 4 (13, 16 or 19 digits); Mastercard
/// 51–55 and 2221–2720 (16); American Express 34 and 37 (15); Discover 6011, 644–649, 65 and the
/// co-branded 622126–622925 (16–19); JCB 3528–3589 (16–19); Diners Club 300–305, 3095, 36, 38
/// and 39 (14–19); UnionPay 62 (16–19). The Luhn check is separate: see [`card_number`].
pub fn card_issuer(digits: &[u8]) -> Option<CardIssuer> {
    if !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let len = digits.len();
    let p1 = prefix(digits, 1);
    let p2 = prefix(digits, 2);
    let p3 = prefix(digits, 3);
    let p4 = prefix(digits, 4);
    let p6 = prefix(digits, 6);
    if p1 == 4 {
        matches!(len, 13 | 16 | 19).then_some(CardIssuer::Visa)
    } else if (51..=55).contains(&p2) || (2221..=2720).contains(&p4) {
        (len == 16).then_some(CardIssuer::Mastercard)
    } else if p2 == 34 || p2 == 37 {
        (len == 15).then_some(CardIssuer::Amex)
    } else if p4 == 6011 || (644..=649).contains(&p3) || p2 == 65 || (622126..=622925).contains(&p6)
    {
        (16..=19).contains(&len).then_some(CardIssuer::Discover)
    } else if (3528..=3589).contains(&p4) {
        (16..=19).contains(&len).then_some(CardIssuer::Jcb)
    } else if (300..=305).contains(&p3) || p4 == 3095 || p2 == 36 || p2 == 38 || p2 == 39 {
        (14..=19).contains(&len).then_some(CardIssuer::DinersClub)
    } else if p2 == 62 {
        (16..=19).contains(&len).then_some(CardIssuer::UnionPay)
    } else {
        None
    }
}

/// Whether `digits` is a plausible payment card number: a known network's prefix and length,
/// and a valid Luhn check digit.
pub fn card_number(digits: &[u8]) -> bool {
    card_issuer(digits).is_some() && luhn(digits)
}

/// Card numbers published by the networks and payment processors for testing. They validate,
/// so they are reported, but flagged as test data.
pub const TEST_CARD_NUMBERS: &[&str] = &[
    "4111111111111111",
    "4242424242424242",
    "4012888888881881",
    "4222222222222",
    "4000056655665556",
    "4005519200000004",
    "4012000033330026",
    "4217651111111119",
    "4000000000000002",
    "4000000000009995",
    "5555555555554444",
    "5105105105105100",
    "5200828282828210",
    "2223003122003222",
    "2222400070000005",
    "378282246310005",
    "371449635398431",
    "378734493671000",
    "6011111111111117",
    "6011000990139424",
    "6011000400000000",
    "3530111333300000",
    "3566002020360505",
    "3566111111111113",
    "30569309025904",
    "38520000023237",
    "36227206271667",
    "3056930009020004",
    "6200000000000005",
];

/// Whether `digits` is one of [`TEST_CARD_NUMBERS`].
pub fn is_test_card(digits: &[u8]) -> bool {
    TEST_CARD_NUMBERS.iter().any(|t| t.as_bytes() == digits)
}

/// IBAN lengths by country (ISO 13616 registry): every SEPA country and the other countries
/// that issue IBANs, sorted by country code. An IBAN from a country missing here is not
/// recognised.
const IBAN_LENGTHS: &[(&[u8; 2], usize)] = &[
    (b"AD", 24),
    (b"AE", 23),
    (b"AL", 28),
    (b"AT", 20),
    (b"AZ", 28),
    (b"BA", 20),
    (b"BE", 16),
    (b"BG", 22),
    (b"BH", 22),
    (b"BI", 27),
    (b"BR", 29),
    (b"BY", 28),
    (b"CH", 21),
    (b"CR", 22),
    (b"CY", 28),
    (b"CZ", 24),
    (b"DE", 22),
    (b"DJ", 27),
    (b"DK", 18),
    (b"DO", 28),
    (b"EE", 20),
    (b"EG", 29),
    (b"ES", 24),
    (b"FI", 18),
    (b"FK", 18),
    (b"FO", 18),
    (b"FR", 27),
    (b"GB", 22),
    (b"GE", 22),
    (b"GI", 23),
    (b"GL", 18),
    (b"GR", 27),
    (b"GT", 28),
    (b"HR", 21),
    (b"HU", 28),
    (b"IE", 22),
    (b"IL", 23),
    (b"IQ", 23),
    (b"IS", 26),
    (b"IT", 27),
    (b"JO", 30),
    (b"KW", 30),
    (b"KZ", 20),
    (b"LB", 28),
    (b"LC", 32),
    (b"LI", 21),
    (b"LT", 20),
    (b"LU", 20),
    (b"LV", 21),
    (b"LY", 25),
    (b"MC", 27),
    (b"MD", 24),
    (b"ME", 22),
    (b"MK", 19),
    (b"MN", 20),
    (b"MR", 27),
    (b"MT", 31),
    (b"MU", 30),
    (b"NI", 28),
    (b"NL", 18),
    (b"NO", 15),
    (b"OM", 23),
    (b"PK", 24),
    (b"PL", 28),
    (b"PS", 29),
    (b"PT", 25),
    (b"QA", 29),
    (b"RO", 24),
    (b"RS", 22),
    (b"RU", 33),
    (b"SA", 24),
    (b"SC", 31),
    (b"SD", 18),
    (b"SE", 24),
    (b"SI", 19),
    (b"SK", 24),
    (b"SM", 27),
    (b"SO", 23),
    (b"ST", 25),
    (b"SV", 28),
    (b"TL", 23),
    (b"TN", 24),
    (b"TR", 26),
    (b"UA", 29),
    (b"VA", 22),
    (b"VG", 24),
    (b"XK", 20),
];

/// The IBAN length of a country (two upper-case letters), if it issues IBANs.
pub fn iban_length(country: &[u8]) -> Option<usize> {
    let &[a, b] = country else { return None };
    IBAN_LENGTHS
        .binary_search_by(|(c, _)| (**c).cmp(&[a, b]))
        .ok()
        .map(|i| IBAN_LENGTHS[i].1)
}

/// Whether `iban` (compact: upper-case letters and digits, no spaces) is a valid IBAN: a known
/// country, that country's length, check digits in 02..=98, and the ISO 7064 mod-97 checksum.
pub fn iban(iban: &[u8]) -> bool {
    if iban.len() < 5
        || !iban[..2].iter().all(u8::is_ascii_uppercase)
        || !iban[2..4].iter().all(u8::is_ascii_digit)
        || !iban[4..]
            .iter()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
    {
        return false;
    }
    if iban_length(&iban[..2]) != Some(iban.len()) {
        return false;
    }
    let check = prefix(&iban[2..4], 2);
    if !(2..=98).contains(&check) {
        return false;
    }
    // Move country and check digits to the end, read letters as 10..=35, and reduce mod 97 as
    // we go so the number never needs more than a u32.
    let mut rem = 0u32;
    for &b in iban[4..].iter().chain(&iban[..4]) {
        rem = if b.is_ascii_digit() {
            (rem * 10 + u32::from(b - b'0')) % 97
        } else {
            (rem * 100 + u32::from(b - b'A') + 10) % 97
        };
    }
    rem == 1
}

/// US Social Security numbers that satisfy the numbering rules but are known not to belong to
/// anyone: the Woolworth wallet card (078-05-1120), the SSA's 1940s advertising number
/// (219-09-9999) and the ubiquitous example 123-45-6789.
const INVALID_SSNS: &[&[u8; 9]] = &[b"078051120", b"219099999", b"123456789"];

/// Whether `digits` (nine ASCII digits) can be an issued US Social Security number: area not
/// 000, 666 or 900–999, group not 00, serial not 0000, not one of the well-known invalid numbers,
/// and not a single repeated digit.
pub fn us_ssn(digits: &[u8]) -> bool {
    if digits.len() != 9 || !digits.iter().all(u8::is_ascii_digit) {
        return false;
    }
    let area = prefix(digits, 3);
    let group = prefix(&digits[3..], 2);
    let serial = prefix(&digits[5..], 4);
    if area == 0 || area == 666 || area >= 900 || group == 0 || serial == 0 {
        return false;
    }
    if digits.iter().all(|&d| d == digits[0]) {
        return false;
    }
    !INVALID_SSNS.iter().any(|bad| bad.as_slice() == digits)
}

/// Whether an IPv4 address lies in a documentation range (RFC 5737: 192.0.2.0/24,
/// 198.51.100.0/24, 203.0.113.0/24).
pub fn is_documentation_ipv4(ip: Ipv4Addr) -> bool {
    matches!(
        ip.octets(),
        [192, 0, 2, _] | [198, 51, 100, _] | [203, 0, 113, _]
    )
}

/// Whether an IPv6 address lies in the documentation range 2001:db8::/32 (RFC 3849).
pub fn is_documentation_ipv6(ip: Ipv6Addr) -> bool {
    let s = ip.segments();
    s[0] == 0x2001 && s[1] == 0x0db8
}

/// `c * log2(c)` for the counts of values short enough to be secrets, so that entropy costs no
/// logarithm per symbol.
static C_LOG2_C: LazyLock<Vec<f64>> = LazyLock::new(|| {
    (0..=ENTROPY_TABLE)
        .map(|c| {
            if c < 2 {
                0.0
            } else {
                c as f64 * (c as f64).log2()
            }
        })
        .collect()
});
const ENTROPY_TABLE: usize = 1100;

/// Shannon entropy of `bytes` in bits per byte (0 for empty input).
pub fn shannon_entropy(bytes: &[u8]) -> f64 {
    if bytes.is_empty() {
        return 0.0;
    }
    let mut counts = [0u32; 256];
    for &b in bytes {
        counts[usize::from(b)] += 1;
    }
    let n = bytes.len();
    if n > ENTROPY_TABLE {
        let n = n as f64;
        return counts
            .iter()
            .filter(|&&c| c > 0)
            .map(|&c| {
                let p = f64::from(c) / n;
                -p * p.log2()
            })
            .sum();
    }
    // H = log2(n) - sum(c log2 c) / n, visiting each distinct byte once (its count is cleared
    // when first seen) rather than all 256 counters.
    let table = &*C_LOG2_C;
    let mut sum = 0.0;
    for &b in bytes {
        let c = std::mem::take(&mut counts[usize::from(b)]) as usize;
        sum += table[c];
    }
    ((table[n] - sum) / n as f64).max(0.0)
}

/// Whether an e-mail domain is reserved for documentation or testing (RFC 2606 and RFC 6761):
/// example.com/.net/.org and their subdomains, and the .example, .test, .invalid and .localhost
/// top-level domains.
pub fn is_reserved_email_domain(domain: &str) -> bool {
    let d = domain.trim_end_matches('.').as_bytes();
    // `d` is `base` or ends with `.base`, ASCII case ignored.
    let under = |base: &str| {
        let base = base.as_bytes();
        d.len() >= base.len()
            && d[d.len() - base.len()..].eq_ignore_ascii_case(base)
            && (d.len() == base.len() || d[d.len() - base.len() - 1] == b'.')
    };
    ["example.com", "example.net", "example.org"]
        .iter()
        .chain(&["example", "test", "invalid", "localhost"])
        .any(|b| under(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn luhn_known_values() {
        assert!(luhn(b"79927398713"));
        assert!(!luhn(b"79927398710"));
        assert!(!luhn(b""));
        assert!(!luhn(b"12a4"));
    }

    #[test]
    fn every_test_card_validates() {
        for card in TEST_CARD_NUMBERS {
            assert!(card_number(card.as_bytes()), "{card}");
        }
    }

    #[test]
    fn issuers() {
        assert_eq!(card_issuer(b"4111111111111111"), Some(CardIssuer::Visa));
        assert_eq!(
            card_issuer(b"5555555555554444"),
            Some(CardIssuer::Mastercard)
        );
        assert_eq!(
            card_issuer(b"2223003122003222"),
            Some(CardIssuer::Mastercard)
        );
        assert_eq!(card_issuer(b"378282246310005"), Some(CardIssuer::Amex));
        assert_eq!(card_issuer(b"6011111111111117"), Some(CardIssuer::Discover));
        assert_eq!(card_issuer(b"6221260000000000"), Some(CardIssuer::Discover));
        assert_eq!(card_issuer(b"3530111333300000"), Some(CardIssuer::Jcb));
        assert_eq!(card_issuer(b"30569309025904"), Some(CardIssuer::DinersClub));
        assert_eq!(card_issuer(b"6200000000000005"), Some(CardIssuer::UnionPay));
        // Right prefix, wrong length; unknown prefixes.
        assert_eq!(card_issuer(b"37828224631000"), None);
        assert_eq!(card_issuer(b"555555555555444"), None);
        assert_eq!(card_issuer(b"2721000000000000"), None);
        assert_eq!(card_issuer(b"1234567812345670"), None);
        assert_eq!(card_issuer(b"9111111111111111"), None);
    }

    #[test]
    fn iban_table_is_sorted() {
        assert!(IBAN_LENGTHS.windows(2).all(|w| w[0].0 < w[1].0));
        assert_eq!(iban_length(b"DE"), Some(22));
        assert_eq!(iban_length(b"AD"), Some(24));
        assert_eq!(iban_length(b"XK"), Some(20));
        assert_eq!(iban_length(b"US"), None);
        assert_eq!(iban_length(b"D"), None);
    }

    #[test]
    fn iban_checksums() {
        assert!(iban(b"DE89370400440532013000"));
        assert!(iban(b"GB82WEST12345698765432"));
        assert!(iban(b"FR1420041010050500013M02606"));
        assert!(iban(b"NO9386011117947"));
        assert!(iban(b"MT84MALT011000012345MTLCAST001S"));
        // One digit changed; wrong length; unknown country; lower case.
        assert!(!iban(b"DE89370400440532013001"));
        assert!(!iban(b"GB82WEST1234569876543"));
        assert!(!iban(b"ZZ89370400440532013000"));
        assert!(!iban(b"de89370400440532013000"));
        assert!(!iban(b""));
    }

    #[test]
    fn ssn_rules() {
        assert!(us_ssn(b"536225555"));
        assert!(us_ssn(b"001010001"));
        for bad in [
            "000123456",
            "666123456",
            "900123456",
            "999123456",
            "123004567",
            "123450000",
            "078051120",
            "219099999",
            "123456789",
            "111111111",
            "12345678",
            "12345678a",
        ] {
            assert!(!us_ssn(bad.as_bytes()), "{bad}");
        }
    }

    #[test]
    fn entropy() {
        assert_eq!(shannon_entropy(b""), 0.0);
        assert_eq!(shannon_entropy(b"aaaa"), 0.0);
        assert!((shannon_entropy(b"abcd") - 2.0).abs() < 1e-9);
        // The table and the direct formula agree, below and above the table's length.
        let direct = |v: &[u8]| {
            let mut counts = [0u32; 256];
            v.iter().for_each(|&b| counts[usize::from(b)] += 1);
            let n = v.len() as f64;
            counts
                .iter()
                .filter(|&&c| c > 0)
                .map(|&c| -(f64::from(c) / n) * (f64::from(c) / n).log2())
                .sum::<f64>()
        };
        let mut x: u32 = 7;
        for len in [1, 2, 7, 40, 200, 1100, 1101, 5000] {
            let v: Vec<u8> = (0..len)
                .map(|_| {
                    x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                    b"aAbB0123456789+/xyz"[(x >> 16) as usize % 19]
                })
                .collect();
            assert!((shannon_entropy(&v) - direct(&v)).abs() < 1e-9, "{len}");
        }
    }

    #[test]
    fn reserved_domains() {
        assert!(is_reserved_email_domain("example.com"));
        assert!(is_reserved_email_domain("mail.EXAMPLE.org"));
        assert!(is_reserved_email_domain("host.test"));
        assert!(!is_reserved_email_domain("notexample.com"));
        assert!(!is_reserved_email_domain("gmail.com"));
        assert!(is_reserved_email_domain("Example.COM."));
        assert!(is_reserved_email_domain("a.b.INVALID"));
        assert!(is_reserved_email_domain("localhost"));
        assert!(!is_reserved_email_domain("mytest"));
        assert!(!is_reserved_email_domain("example.community"));
        assert!(!is_reserved_email_domain(""));
    }
}
