//! Detectors against known valid and known invalid values of every entity: a value with the
//! right shape but a failing checksum or a reserved range must not be reported.

use custodian_detect::{DetectError, Entity, Finding, ScanConfig, Scanner};

fn scanner() -> Scanner {
    Scanner::new(ScanConfig::default()).expect("default config is valid")
}

/// (entity, matched text, test flag) of every finding.
fn found(text: &str) -> Vec<(Entity, String, bool)> {
    scanner()
        .scan(text)
        .into_iter()
        .map(|f| (f.entity, text[f.range()].to_owned(), f.test))
        .collect()
}

fn finds(text: &str, entity: Entity, value: &str) -> bool {
    found(text)
        .iter()
        .any(|(e, v, _)| *e == entity && v == value)
}

fn finds_entity(text: &str, entity: Entity) -> bool {
    found(text).iter().any(|(e, _, _)| *e == entity)
}

fn single(text: &str) -> Finding {
    let all = scanner().scan(text);
    assert_eq!(all.len(), 1, "{text:?}: {all:?}");
    all[0]
}

/// Appends the Luhn check digit to `body`.
fn with_luhn(body: &str) -> String {
    let sum: u32 = body
        .bytes()
        .rev()
        .enumerate()
        .map(|(i, b)| {
            let d = u32::from(b - b'0');
            if i % 2 == 0 {
                let d2 = d * 2;
                if d2 > 9 { d2 - 9 } else { d2 }
            } else {
                d
            }
        })
        .sum();
    format!("{body}{}", (10 - sum % 10) % 10)
}

/// The same number with its last digit changed, so the Luhn check fails.
fn break_luhn(n: &str) -> String {
    let last = n.as_bytes()[n.len() - 1] - b'0';
    format!("{}{}", &n[..n.len() - 1], (last + 1) % 10)
}

#[test]
fn emails() {
    assert!(finds(
        "mail jane.doe+tag@mail.acme.io now",
        Entity::EmailAddress,
        "jane.doe+tag@mail.acme.io"
    ));
    assert!(finds(
        "<a.b_c@sub.domain.co.uk>",
        Entity::EmailAddress,
        "a.b_c@sub.domain.co.uk"
    ));
    let f = found("write to someone@example.com or x@docs.example.org");
    assert_eq!(f.len(), 2);
    assert!(
        f.iter()
            .all(|(e, _, test)| *e == Entity::EmailAddress && *test)
    );
    for bad in [
        "user@localhost",
        "user@domain.c",
        "a..b@acme.io",
        "@acme.io",
        "user@-acme.io",
        "user.@acme.io",
        "git clone https://deploy@git.acme.io/repo.git",
        "ssh://git@github.com/acme/repo",
    ] {
        assert!(!finds_entity(bad, Entity::EmailAddress), "{bad}");
    }
    assert!(finds(
        "mailto:jane@acme.io",
        Entity::EmailAddress,
        "jane@acme.io"
    ));
}

#[test]
fn credit_cards() {
    let valid = [
        with_luhn("411111111111111"[..12].to_owned().as_str()),
        with_luhn("453914880343646"),
        with_luhn("545454545454545"),
        with_luhn("222100000000000"),
        with_luhn("272099999999999"),
        with_luhn("34000000000000"),
        with_luhn("37000000000000"),
        with_luhn("601100000000000"),
        with_luhn("644000000000000"),
        with_luhn("650000000000000"),
        with_luhn("622126000000000"),
        with_luhn("352800000000000"),
        with_luhn("358900000000000"),
        with_luhn("3000000000000"),
        with_luhn("3095000000000"),
        with_luhn("3600000000000"),
        with_luhn("621000000000000"),
        with_luhn("453914880343646123"),
    ];
    for card in &valid {
        let text = format!("paid with {card}.");
        assert!(
            finds(&text, Entity::CreditCard, card),
            "{card}: {:?}",
            found(&text)
        );
        assert!(!found(&text)[0].2, "{card} is not a test card");
        let broken = break_luhn(card);
        assert!(
            !finds_entity(&format!("paid with {broken}."), Entity::CreditCard),
            "{broken}"
        );
    }
    // Right Luhn, wrong length for the issuer, or no issuer at all.
    for bad in [
        with_luhn("41111111111111"),  // Visa with 15 digits
        with_luhn("5454545454545"),   // Mastercard with 14
        with_luhn("340000000000000"), // Amex with 16
        with_luhn("272100000000000"), // 2721 is past the Mastercard range
        with_luhn("911111111111111"), // no issuer starts with 9
        with_luhn("100000000000000"),
    ] {
        assert!(
            !finds_entity(&format!("n {bad} n"), Entity::CreditCard),
            "{bad}"
        );
    }
    // Grouped forms.
    assert!(finds(
        "4539 1488 0343 6467 exp 12/27",
        Entity::CreditCard,
        "4539 1488 0343 6467"
    ));
    assert!(finds(
        "4539-1488-0343-6467",
        Entity::CreditCard,
        "4539-1488-0343-6467"
    ));
    assert!(finds(
        "amex 3782 822463 10005",
        Entity::CreditCard,
        "3782 822463 10005"
    ));
    // Part of a longer number, a decimal or a dotted identifier.
    for bad in [
        "45391488034364670",
        "145391488034364671",
        "0.4539148803436467",
        "4539148803436467.5",
        "x4539148803436467",
    ] {
        assert!(!finds_entity(bad, Entity::CreditCard), "{bad}");
    }
    // The tail of a longer grouped number is not a card of its own, even when it passes Luhn
    // (3474 3569 5394 106 is an Amex-shaped tail of a 19-digit number failing its check).
    for bad in [
        "Card number: 4070 3474 3569 5394 106, exp 04/26",
        "pan=9999 4539 1488 0343 6467",
    ] {
        assert!(
            !finds_entity(bad, Entity::CreditCard),
            "{bad}: {:?}",
            found(bad)
        );
    }
    // Two cards in a row, and a card after a short group (an expiry date), still are.
    let two = "4539 1488 0343 6467 4111 1111 1111 1111";
    assert!(finds(two, Entity::CreditCard, "4539 1488 0343 6467"));
    assert!(finds(two, Entity::CreditCard, "4111 1111 1111 1111"));
    assert!(finds(
        "exp 12/27 4539 1488 0343 6467",
        Entity::CreditCard,
        "4539 1488 0343 6467"
    ));
}

#[test]
fn test_cards_are_flagged_not_dropped() {
    for card in custodian_detect::validate::TEST_CARD_NUMBERS {
        let text = format!("card {card}");
        let f = found(&text);
        assert!(
            f.iter()
                .any(|(e, v, test)| *e == Entity::CreditCard && v == card && *test),
            "{card}: {f:?}"
        );
    }
    assert!(finds(
        "4111 1111 1111 1111",
        Entity::CreditCard,
        "4111 1111 1111 1111"
    ));
    let dropping = Scanner::new(ScanConfig {
        drop_test: true,
        ..ScanConfig::default()
    })
    .expect("config");
    assert!(dropping.scan("card 4242424242424242").is_empty());
}

#[test]
fn ibans() {
    for iban in [
        "DE89370400440532013000",
        "GB82WEST12345698765432",
        "FR1420041010050500013M02606",
        "NL91ABNA0417164300",
        "ES9121000418450200051332",
        "IT60X0542811101000000123456",
        "CH9300762011623852957",
        "BE68539007547034",
        "NO9386011117947",
        "PL61109010140000071219812874",
        "SE4550000000058398257466",
        "AT611904300234573201",
        "MT84MALT011000012345MTLCAST001S",
    ] {
        let text = format!("IBAN: {iban}, thanks");
        assert!(
            finds(&text, Entity::IbanCode, iban),
            "{iban}: {:?}",
            found(&text)
        );
        // One character changed: the mod-97 check fails.
        let mut broken = iban.as_bytes().to_vec();
        let last = broken.len() - 1;
        broken[last] = if broken[last] == b'1' { b'2' } else { b'1' };
        let broken = String::from_utf8(broken).expect("ascii");
        assert!(
            !finds_entity(&format!("IBAN: {broken}"), Entity::IbanCode),
            "{broken}"
        );
    }
    assert!(finds(
        "pay DE89 3704 0044 0532 0130 00 BIC COBADEFFXXX",
        Entity::IbanCode,
        "DE89 3704 0044 0532 0130 00"
    ));
    assert!(finds(
        "GB82 WEST 1234 5698 7654 32.",
        Entity::IbanCode,
        "GB82 WEST 1234 5698 7654 32"
    ));
    // A run shaped like an IBAN whose checksum fails is not an IBAN, and its digit groups are
    // not phone numbers or cards either.
    for bad in [
        "account DE08 3045 5566 5139 4865 99 BIC ZLJIES2J5U3",
        "IBAN ES66 2718 0452 5021 2123 8205",
        "account IT80 I988 5274 1026 5985 0996 356 BIC EIWPIT3QM1Q",
        "IBAN FR65 0882 7202 9781 5606 0694 128.",
        "IBAN DE88370400440532013000",
    ] {
        assert!(found(bad).is_empty(), "{bad}: {:?}", found(bad));
    }
    for bad in [
        "DE8937040044053201300",   // one character short
        "DE893704004405320130001", // one too many, glued
        "XX89370400440532013000",  // no such country
        "de89370400440532013000",  // lower case
        "DE00370400440532013000",  // check digits 00
    ] {
        assert!(!finds_entity(bad, Entity::IbanCode), "{bad}");
    }
}

#[test]
fn us_ssns() {
    assert!(finds("ssn 536-22-5555", Entity::UsSsn, "536-22-5555"));
    assert!(finds("id 536 22 5555.", Entity::UsSsn, "536 22 5555"));
    // A bare nine-digit number needs a context word.
    assert!(finds("SSN: 536225555", Entity::UsSsn, "536225555"));
    assert!(!finds_entity("order 536225555 shipped", Entity::UsSsn));
    for bad in [
        "000-12-3456",
        "666-12-3456",
        "900-12-3456",
        "999-12-3456",
        "123-00-4567",
        "123-45-0000",
        "078-05-1120",
        "219-09-9999",
        "123-45-6789",
        "111-11-1111",
    ] {
        let text = format!("ssn {bad}");
        assert!(!finds_entity(&text, Entity::UsSsn), "{bad}");
    }
    // Not a lone SSN: part of a longer number.
    assert!(!finds_entity("ssn 536-22-5555-1", Entity::UsSsn));
    assert!(!finds_entity("ssn 1536-22-5555", Entity::UsSsn));
    // An invalid SSN grouped 3-2-4 is not a phone number instead.
    for bad in ["ssn=078 05 1120", "ssn=043 28 0000", "SSN: 666-12-3456"] {
        assert!(found(bad).is_empty(), "{bad}: {:?}", found(bad));
    }
    // After a '+' nine digits are a phone number, not a bare SSN.
    assert!(!finds_entity("ssn +498146054", Entity::UsSsn));
}

#[test]
fn ip_addresses() {
    let f = single("client 10.1.2.3 connected");
    assert_eq!((f.entity, f.test), (Entity::IpAddress, false));
    assert!(finds("from 192.0.2.1", Entity::IpAddress, "192.0.2.1"));
    assert!(
        found("from 192.0.2.1")[0].2,
        "documentation range is flagged"
    );
    assert!(found("from 203.0.113.9")[0].2);
    assert!(found("from 198.51.100.200")[0].2);
    assert!(!found("from 198.51.101.200")[0].2);
    for bad in [
        "256.1.2.3",
        "1.2.3.4.5",
        "version 1.2.3.4.5.6",
        "10.1.2",
        "1.2.3.999",
    ] {
        assert!(!finds_entity(bad, Entity::IpAddress), "{bad}");
    }
    assert!(finds(
        "addr fe80::1ff:fe23:4567:890a%eth0",
        Entity::IpAddress,
        "fe80::1ff:fe23:4567:890a"
    ));
    assert!(finds("ping ::1", Entity::IpAddress, "::1"));
    assert!(finds(
        "[2001:db8:85a3::8a2e:370:7334]:443",
        Entity::IpAddress,
        "2001:db8:85a3::8a2e:370:7334"
    ));
    assert!(found("2001:db8::1")[0].2, "documentation range is flagged");
    assert!(!found("2600:1f18::1")[0].2);
    assert!(finds(
        "mapped ::ffff:10.0.0.1 here",
        Entity::IpAddress,
        "::ffff:10.0.0.1"
    ));
    for bad in [
        "12:30:45",
        "std::vector<int>",
        "1:2:3:4:5:6:7:8:9",
        "a::b::c",
        "::",
        "fe80:::1",
    ] {
        assert!(
            !finds_entity(bad, Entity::IpAddress),
            "{bad}: {:?}",
            found(bad)
        );
    }
}

#[test]
fn mac_addresses() {
    for mac in [
        "00:1A:2B:3C:4D:5E",
        "00-1a-2b-3c-4d-5e",
        "001a.2b3c.4d5e",
        "aa:bb:cc:dd:ee:01",
    ] {
        let text = format!("hwaddr {mac} up");
        assert!(
            finds(&text, Entity::MacAddress, mac),
            "{mac}: {:?}",
            found(&text)
        );
        // At the end of a sentence.
        let text = format!("The hardware address is {mac}.");
        assert!(
            finds(&text, Entity::MacAddress, mac),
            "{mac}: {:?}",
            found(&text)
        );
    }
    assert!(!finds_entity(
        "address is 001a.2b3c.4d5e.6f70.",
        Entity::MacAddress
    ));
    for bad in [
        "00:00:00:00:00:00",
        "ff:ff:ff:ff:ff:ff",
        "00:1A:2B:3C:4D:5E:6F",
        "00:1A:2B:3C:4D",
        "00:1A-2B:3C-4D:5E",
    ] {
        assert!(!finds_entity(bad, Entity::MacAddress), "{bad}");
    }
}

#[test]
fn phone_numbers() {
    for (text, phone) in [
        ("call +1 415 555 2671 now", "+1 415 555 2671"),
        ("call (415) 555-2671 now", "(415) 555-2671"),
        ("call 415.555.2671", "415.555.2671"),
        ("tel +49 30 901820", "+49 30 901820"),
        ("tel +33 1 42 68 53 00", "+33 1 42 68 53 00"),
        ("tel +81 3-3224-9999", "+81 3-3224-9999"),
        ("ring 030 901820", "030 901820"),
        ("mobile 07911 123456", "07911 123456"),
        // Groupings libphonenumber's national formats use for newer ranges.
        ("tel 015692 757636", "015692 757636"),
        ("tel 0707875 0819", "0707875 0819"),
        // Nine digits after a '+' or a context word: a phone number, not a bare SSN.
        ("call +498146054 now", "+498146054"),
        ("mobile=+43 1 445309383 id=1", "+43 1 445309383"),
        ("phone 030117297, ssn 233-90-8658", "030117297"),
        // Other NANP countries, dialled as US numbers are: Canada, the Dominican Republic.
        ("call (867) 988-3180", "(867) 988-3180"),
        ("Phone: (204) 723-1750", "(204) 723-1750"),
        ("Tel. 849-749-8707", "849-749-8707"),
        ("tel 289.822.5273", "289.822.5273"),
        // One run of digits, after a context word.
        ("call 2092780420 tomorrow", "2092780420"),
        ("Please ring Kyle on 07486614935.", "07486614935"),
        ("can be reached on 015896591306 today", "015896591306"),
        ("mobile=2506627944 customer_id=1", "2506627944"),
        ("called from 2072434249 about", "2072434249"),
        ("Telephone: 07486614935", "07486614935"),
        ("{\"phoneNumber\": \"2092780420\"}", "2092780420"),
        ("phone_number=2092780420", "2092780420"),
    ] {
        assert!(
            finds(text, Entity::PhoneNumber, phone),
            "{text}: {:?}",
            found(text)
        );
    }
    // Fictional ranges are flagged.
    assert!(found("+44 20 7946 0958")[0].2);
    assert!(found("(212) 555-0123")[0].2);
    for bad in [
        "call +1 415 555 267",   // too short for NANP
        "call (123) 456-7890",   // NANP area codes do not start with 1
        "call +999 1234 5678",   // no such country code
        "on 2024-01-15 at noon", // a date
        "v 10.20.30.40",         // an IPv4 address
        "call 555-12-1234",
        // A run of digits without a context word is an ID as often as a phone number, and a
        // context word must be a word: `tel` in `telemetry` is not one.
        "order 2092780420 shipped",
        "ref 07486614935",
        "telemetry 2092780420",
        "dialog_id=2092780420",
        "cellar 07486614935",
        "(867) 988-318",
        // Part of an identifier, a path or a version string.
        "call about ORD-2026-089396",
        "Please ring Lars on 01282 114887 about ticket ORD-2022-706308.",
        "Chrome/0.39.8880.38319 Safari/537.36",
        "call /users/2092780420 or id_2092780420",
        // Card-shaped groups failing Luhn are not a card followed by a phone number.
        "The customer paid with card 6011 4454 0446 2621.",
        "pan=4793 0637 7029 9170",
        "pan=4393 2144 9263 0833 026",
    ] {
        let phones: Vec<_> = found(bad)
            .into_iter()
            .filter(|(e, v, _)| *e == Entity::PhoneNumber && v != "01282 114887")
            .collect();
        assert!(phones.is_empty(), "{bad}: {phones:?}");
    }
    let us_only = Scanner::new(ScanConfig {
        phone_regions: vec!["us".into()],
        ..ScanConfig::default()
    })
    .expect("config");
    assert!(us_only.scan("ring 030 901820").is_empty());
    assert!(matches!(
        Scanner::new(ScanConfig {
            phone_regions: vec!["ZZ".into()],
            ..ScanConfig::default()
        }),
        Err(DetectError::UnknownRegion(_))
    ));
}

#[test]
fn context_words_raise_scores() {
    let plain = single("ref 4539 1488 0343 6467").score;
    let with_context = single("credit card 4539 1488 0343 6467").score;
    assert!(with_context > plain, "{with_context} <= {plain}");
    let plain = single("id 536-22-5555").score;
    let with_context = single("social security number: 536-22-5555").score;
    assert!(with_context > plain);
    // A context word inside another word does not count.
    let inside = single("discard 4539 1488 0343 6467").score;
    assert_eq!(inside, plain_card_score());
}

fn plain_card_score() -> f32 {
    single("ref 4539 1488 0343 6467").score
}

#[test]
fn aws_keys() {
    assert!(finds(
        "key AKIAZ7VRSQ5TLA3MBQWE used",
        Entity::AwsAccessKeyId,
        "AKIAZ7VRSQ5TLA3MBQWE"
    ));
    assert!(finds(
        "ASIAZ7VRSQ5TLA3MBQWE",
        Entity::AwsAccessKeyId,
        "ASIAZ7VRSQ5TLA3MBQWE"
    ));
    assert!(
        found("AKIAIOSFODNN7EXAMPLE")[0].2,
        "AWS's documentation key is flagged"
    );
    for bad in [
        "akiaz7vrsq5tla3mbqwe",
        "AKIAZ7VRSQ5TLA3MBQW",
        "AKIAZ7VRSQ5TLA3MBQWE1",
        "XAKIAZ7VRSQ5TLA3MBQWE",
        "AKIAZ7VRSQ5TLA3MBQW0",
        "AKIAXXXXXXXXXXXXXXXX",
        "Paste your token here: AKIAXXXXXXXXXXXXXXXX",
    ] {
        assert!(!finds_entity(bad, Entity::AwsAccessKeyId), "{bad}");
    }
    let secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYzzKEYabc12";
    for text in [
        format!("aws_secret_access_key = {secret}"),
        format!("AWS_SECRET_ACCESS_KEY=\"{secret}\""),
        format!("{{\"SecretAccessKey\": \"{secret}\"}}"),
        format!("export AWS_KEY={secret}"),
    ] {
        assert!(
            finds(&text, Entity::AwsSecretAccessKey, secret),
            "{text}: {:?}",
            found(&text)
        );
    }
    // Without an AWS key name the same string is not an AWS secret.
    assert!(!finds_entity(
        &format!("blob {secret}"),
        Entity::AwsSecretAccessKey
    ));
    // A hex digest is not a secret key even next to "aws".
    assert!(!finds_entity(
        "aws_commit = 0123456789abcdef0123456789abcdef01234567",
        Entity::AwsSecretAccessKey
    ));
}

#[test]
fn vendor_tokens() {
    let ghp = "ghp_aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789";
    assert!(finds(&format!("token {ghp}"), Entity::GithubToken, ghp));
    assert!(!finds_entity(&ghp[..ghp.len() - 1], Entity::GithubToken));
    assert!(!finds_entity(&format!("x{ghp}"), Entity::GithubToken));
    assert!(!finds_entity(
        "ghp_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
        Entity::GithubToken
    ));
    let pat: String = "github_pat_"
        .chars()
        .chain(
            "11ABCDEFG0aB3dE5gH7jK9mN1pQ3sT5vW7yZ9bC1eF3hJ5kL7nP9rS1uV3xY5zA7cE9gI1kM3oQ5sU7wY9aC1eG3"
                .chars()
                .take(82),
        )
        .collect();
    assert_eq!(pat.len(), 93);
    assert!(finds(&pat, Entity::GithubToken, &pat));
    assert!(finds(
        "glpat-AbCdEfGhIjKlMnOpQrSt",
        Entity::GitlabToken,
        "glpat-AbCdEfGhIjKlMnOpQrSt"
    ));
    assert!(!finds_entity("glpat-short", Entity::GitlabToken));
    let slack = "xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx";
    assert!(finds(slack, Entity::SlackToken, slack));
    let hook = "https://hooks.slack.com/services/T024BE7LD/B01ABCDEF12/q1W2e3R4t5Y6u7I8o9P0aSdF";
    assert!(finds(
        &format!("post to {hook} now"),
        Entity::SlackWebhookUrl,
        hook
    ));
    assert!(!finds_entity(
        "https://hooks.slack.com/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX",
        Entity::SlackWebhookUrl
    ));
    let live = "sk_live_4eC39HqLyjWDarjtT1zdp7dc";
    assert!(finds(live, Entity::StripeKey, live));
    assert!(!found(live)[0].2);
    let test = "sk_test_4eC39HqLyjWDarjtT1zdp7dc";
    assert!(found(test)[0].2, "Stripe test-mode keys are flagged");
    assert!(finds(
        "rk_live_51H8aBcDeFgHiJkLmNoPq",
        Entity::StripeKey,
        "rk_live_51H8aBcDeFgHiJkLmNoPq"
    ));
}

#[test]
fn jwts() {
    let jwt = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c";
    assert!(finds(
        &format!("Authorization: Bearer {jwt}"),
        Entity::Jwt,
        jwt
    ));
    // The token is one finding, not also a generic secret after `Bearer` or a key name; with
    // JWTs not asked for, the generic rule still reports it.
    for text in [
        format!("Authorization: Bearer {jwt}"),
        format!(r#"{{"access_token": "{jwt}"}}"#),
    ] {
        let all = found(&text);
        assert_eq!(all.len(), 1, "{all:?}");
        assert_eq!(all[0].0, Entity::Jwt);
        let generic_only = Scanner::new(ScanConfig {
            entities: vec![Entity::GenericSecret],
            ..ScanConfig::default()
        })
        .expect("scanner");
        let f = generic_only.scan(&text);
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(&text[f[0].range()], jwt);
    }
    // {"typ":"JWT"} has no "alg"; "eyJub3QganNvbg" is not JSON.
    for bad in [
        "eyJ0eXAiOiJKV1QifQ.eyJzdWIiOiIxIn0.c2ln",
        "eyJub3QganNvbg.eyJzdWIiOiIxIn0.c2ln",
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0",
    ] {
        assert!(!finds_entity(bad, Entity::Jwt), "{bad}");
    }
}

#[test]
fn private_keys() {
    let body = "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7VJTUt9Us8cKj\nMzEfYyjiWA4R4/M2bS1GB4t7NXp98C3SC6dVMvDuictGeurT8jNbvJZHtCSuYEvu\n";
    let key = format!("-----BEGIN PRIVATE KEY-----\n{body}-----END PRIVATE KEY-----");
    let text = format!("config:\n{key}\nend");
    assert!(finds(&text, Entity::PrivateKey, &key));
    let rsa = key.replace("PRIVATE KEY", "RSA PRIVATE KEY");
    assert!(finds(&rsa, Entity::PrivateKey, &rsa));
    // Escaped inside a JSON string.
    let json = format!("{{\"key\": \"{}\"}}", key.replace('\n', "\\n"));
    assert!(finds_entity(&json, Entity::PrivateKey));
    // Truncated before its END line: still reported, with a lower score.
    let truncated = format!("-----BEGIN EC PRIVATE KEY-----\n{body}");
    let f = single(&truncated);
    assert_eq!(f.entity, Entity::PrivateKey);
    assert!(f.score < 0.99);
    for bad in [
        "-----BEGIN PRIVATE KEY-----\n...\n-----END PRIVATE KEY-----",
        &key.replace("PRIVATE KEY", "PUBLIC KEY"),
        &key.replace("PRIVATE KEY", "CERTIFICATE"),
    ] {
        assert!(!finds_entity(bad, Entity::PrivateKey), "{bad}");
    }
}

#[test]
fn generic_secrets() {
    for (text, value) in [
        ("password = \"s3cr3t-Tr0ub4dor&3\"", "s3cr3t-Tr0ub4dor&3"),
        ("DB_PASSWORD=Xk9#mQ2!vL7pZ", "Xk9#mQ2!vL7pZ"),
        (
            "\"api_key\": \"a8f5f167f44f4964e6c998dee827110c\"",
            "a8f5f167f44f4964e6c998dee827110c",
        ),
        ("dbPassword := 'Zq8!rT4#wY2m'", "Zq8!rT4#wY2m"),
        ("client_secret: 9fK2mQ7xLp4R", "9fK2mQ7xLp4R"),
        // A dot does not make a random value a reference to code.
        ("password=E6K7.ws6hFl4", "E6K7.ws6hFl4"),
        ("APP_PASSWORD=e4l.ePTIQNWkuq2", "e4l.ePTIQNWkuq2"),
        (
            "Authorization: Bearer abcDEF123ghiJKL456mnoPQR789",
            "abcDEF123ghiJKL456mnoPQR789",
        ),
    ] {
        assert!(
            finds(text, Entity::GenericSecret, value),
            "{text}: {:?}",
            found(text)
        );
    }
    for bad in [
        "password=${DB_PASSWORD}",
        "password: <password>",
        "password = changeme",
        "password = 'your_password_here'",
        "api_key: \"aaaaaaaaaaaaaaaa\"",
        "api_key: xxxxxxxxxxxxxxxx",
        "tokenizer = BertTokenizerFast123",
        "if password == \"abcdefgh12\"",
        "password = get_password()",
        "secret: config.secret_value",
        "password = settings.DB_PASSWORD2",
        "password: hello",
        "Your password: is incorrect",
        "token_count = 12345",
    ] {
        assert!(
            !finds_entity(bad, Entity::GenericSecret),
            "{bad}: {:?}",
            found(bad)
        );
    }
}

#[test]
fn specific_secrets_win_over_generic_ones() {
    let f = found("api_key=sk_live_4eC39HqLyjWDarjtT1zdp7dc");
    assert_eq!(f.len(), 1, "{f:?}");
    assert_eq!(f[0].0, Entity::StripeKey);
}

#[test]
fn configuration() {
    let only_email = Scanner::new(ScanConfig {
        entities: vec![Entity::EmailAddress],
        ..ScanConfig::default()
    })
    .expect("config");
    let text = "a@acme.io 4539 1488 0343 6467 10.0.0.1";
    let f = only_email.scan(text);
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].entity, Entity::EmailAddress);

    let allowing = Scanner::new(ScanConfig {
        allow: vec!["support@acme.io".into()],
        ..ScanConfig::default()
    })
    .expect("config");
    assert!(allowing.scan("write to support@acme.io").is_empty());
    assert_eq!(allowing.scan("write to sales@acme.io").len(), 1);

    let strict = Scanner::new(ScanConfig {
        min_score: 0.9,
        ..ScanConfig::default()
    })
    .expect("config");
    assert!(strict.scan("at 10.1.2.3").is_empty());
    assert_eq!(strict.scan("client ip 10.1.2.3").len(), 1);

    for bad in [
        ScanConfig {
            min_score: 1.5,
            ..ScanConfig::default()
        },
        ScanConfig {
            min_score: f32::NAN,
            ..ScanConfig::default()
        },
        ScanConfig {
            entropy_threshold: -1.0,
            ..ScanConfig::default()
        },
        ScanConfig {
            context_window: 1 << 20,
            ..ScanConfig::default()
        },
    ] {
        assert!(matches!(Scanner::new(bad), Err(DetectError::Config(_))));
    }
}

#[test]
fn findings_are_sorted_and_disjoint() {
    let text = "a@acme.io, 4539 1488 0343 6467, 536-22-5555, +1 415 555 2671, DE89370400440532013000, 10.0.0.1, ghp_aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789";
    let f = scanner().scan(text);
    assert_eq!(f.len(), 7, "{f:?}");
    assert!(f.windows(2).all(|w| w[0].end <= w[1].start));
}

#[test]
fn scanner_is_shareable() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Scanner>();
    let s = std::sync::Arc::new(scanner());
    let handles: Vec<_> = (0..4)
        .map(|i| {
            let s = s.clone();
            std::thread::spawn(move || {
                s.scan(&format!("call +1 415 555 267{i} or +44 20 7946 095{i}"))
                    .len()
            })
        })
        .collect();
    for h in handles {
        assert!(h.join().is_ok_and(|n| n >= 1));
    }
}

#[test]
fn debug_output_never_holds_values() {
    let text = "card 4539 1488 0343 6467 for jane@acme.io";
    let f = scanner().scan(text);
    let dbg = format!("{f:?}");
    assert!(!dbg.contains("4539") && !dbg.contains("jane"), "{dbg}");
    let allowing = Scanner::new(ScanConfig {
        allow: vec!["jane@acme.io".into()],
        ..ScanConfig::default()
    })
    .expect("config");
    assert!(!format!("{allowing:?}").contains("jane"));
}
