//! Signed notes and checkpoints against published examples: golang.org/x/mod/sumdb/note (the
//! reference implementation of the signed-note format), a real sum.golang.org checkpoint with
//! witness cosignatures (transparency-dev/formats), and the C2SP specification's example.
//!
//! Each value used below is checked to occur verbatim in its fixture file first.

mod common;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use common::fixture;
use custodian_tlog::note::{NoteSigner, key_id};
use custodian_tlog::{Checkpoint, CheckpointSigner, Error, Verifier, leaf_hash, open};

const PETER_VKEY: &str = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
const PETER_SKEY: &str =
    "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";
const ENOCH_VKEY: &str = "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop";
const TEXT: &str = "If you think cryptography is the answer to your problem,\n\
                    then you don't know what your problem is.\n";
const PETER_SIG: &str = "— PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n";
const ENOCH_SIG: &str = "— EnochRoot rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwnWLox33WWd1RvMc+QQ=\n";

const SUMDB_VKEY: &str = "sum.golang.org+033de0ae+Ac4zctda0e5eza+HJyk9SxEdh+s3Ux18htTTAD8OuAn8";
const SUMDB_NOTE: &str = "go.sum database tree\n6476701\nmb8QLQIs0Z0yP5Cstq6guj87oXWeC9gEM8oVikmm9Wk=\n\n— sum.golang.org Az3grsLX85Gz+s1SiTbgkuqxgItqFq7gsMUEyVnrsa9LM7Us9S+1xbFIGu95949rj4nPRYfvimWEPWL+o3GeoWwOoAw=\n";

fn sumdb_fixture_contains(s: &str) {
    assert!(
        fixture("formats-log-note_test.go.txt").contains(s),
        "not in fixture: {s}"
    );
}

fn note_fixture_contains(s: &str) {
    assert!(
        fixture("sumdb-note_test.go.txt").contains(s),
        "not in fixture: {s}"
    );
}

#[test]
fn constants_are_verbatim_copies() {
    for s in [PETER_VKEY, PETER_SKEY, ENOCH_VKEY] {
        note_fixture_contains(s);
    }
    // The Go test writes the signature lines with a \n escape and the text across lines.
    note_fixture_contains(&PETER_SIG.replace('\n', "\\n"));
    note_fixture_contains(&ENOCH_SIG.replace('\n', "\\n"));
    note_fixture_contains(&format!("want := `{TEXT}\n{PETER_SIG}`"));
    sumdb_fixture_contains(SUMDB_VKEY);
    sumdb_fixture_contains(&format!("noteString := `{SUMDB_NOTE}`"));
}

// ---------------------------------------------------------------------------------------------
// golang.org/x/mod/sumdb/note

#[test]
fn peter_neumann_verifier_key_parses_and_round_trips() {
    let v = Verifier::parse(PETER_VKEY).unwrap();
    assert_eq!(v.name(), "PeterNeumann");
    assert_eq!(v.key_id(), 0xc74f20a3);
    assert_eq!(key_id(v.name(), v.public_key()), 0xc74f20a3);
    assert_eq!(v.verifier_key(), PETER_VKEY);
    assert_eq!(v.to_string(), PETER_VKEY);
    assert_eq!(PETER_VKEY.parse::<Verifier>().unwrap(), v);
    assert_eq!(Verifier::parse(ENOCH_VKEY).unwrap().key_id(), 0xaf0cfe78);
}

/// TestNewVerifier's manglings: every proper substring and every single-byte increment of the
/// key string must be rejected, plus a wrong-length key and an unknown algorithm with
/// re-computed key ids.
#[test]
fn mangled_verifier_keys_are_rejected() {
    let b = PETER_VKEY.as_bytes();
    let mut tried = 0;
    for i in 0..=b.len() {
        for j in i + 1..=b.len() {
            if i == 0 && j == b.len() {
                continue;
            }
            let s = String::from_utf8_lossy(&b[i..j]);
            assert!(Verifier::parse(&s).is_err(), "accepted {s:?}");
            tried += 1;
        }
    }
    for i in 0..b.len() {
        let mut m = b.to_vec();
        m[i] = m[i].wrapping_add(1);
        let s = String::from_utf8_lossy(&m);
        assert!(Verifier::parse(&s).is_err(), "accepted {s:?}");
        tried += 1;
    }
    assert!(tried > 2000);
    let wrong_len = "PeterNeumann+cc469956+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TWBADKEY==";
    let unknown_alg = "PeterNeumann+173116ae+ZRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
    note_fixture_contains(wrong_len);
    note_fixture_contains(unknown_alg);
    assert!(matches!(
        Verifier::parse(wrong_len),
        Err(Error::MalformedKey(_))
    ));
    assert!(matches!(
        Verifier::parse(unknown_alg),
        Err(Error::MalformedKey(_))
    ));
}

/// TestSign: the reference signer's output for PeterNeumann's key, byte for byte (Ed25519
/// signatures are deterministic, so the same seed and text give the same note).
#[test]
fn signing_reproduces_the_published_note_bit_for_bit() {
    let signer = NoteSigner::from_signer_key(PETER_SKEY).unwrap();
    assert_eq!(signer.verifier_key(), PETER_VKEY);
    assert_eq!(signer.key_id(), 0xc74f20a3);
    let note = signer.sign_text(TEXT).unwrap();
    assert_eq!(note, format!("{TEXT}\n{PETER_SIG}"));

    // The same through the checkpoint signer's seed constructor.
    let key = STANDARD
        .decode(PETER_SKEY.splitn(5, '+').nth(4).unwrap())
        .unwrap();
    let seed: [u8; 32] = key[1..].try_into().unwrap();
    let from_seed = CheckpointSigner::from_seed("PeterNeumann", &seed).unwrap();
    assert_eq!(from_seed.verifier_key(), PETER_VKEY);
    assert_eq!(from_seed.note_signer().sign_text(TEXT).unwrap(), note);

    // Mangled signer keys (TestNewSigner) are rejected: substrings and byte increments.
    let b = PETER_SKEY.as_bytes();
    for i in 0..b.len() {
        let mut m = b.to_vec();
        m[i] = m[i].wrapping_add(1);
        assert!(NoteSigner::from_signer_key(&String::from_utf8_lossy(&m)).is_err());
        assert!(NoteSigner::from_signer_key(&PETER_SKEY[..i]).is_err());
    }
    // Key material never reaches Debug output.
    let debug = format!("{signer:?}");
    assert!(debug.contains("PeterNeumann") && debug.contains("c74f20a3"));
    assert!(!debug.contains("AYEKFALV"));
}

#[test]
fn open_verifies_the_published_signatures() {
    let peter = Verifier::parse(PETER_VKEY).unwrap();
    let enoch = Verifier::parse(ENOCH_VKEY).unwrap();
    let both = format!("{TEXT}\n{PETER_SIG}{ENOCH_SIG}");
    // Each key finds its own line and skips the other's.
    assert_eq!(peter.open_text(&both).unwrap(), TEXT);
    assert_eq!(enoch.open_text(&both).unwrap(), TEXT);
    assert_eq!(
        peter.open_text(&format!("{TEXT}\n{PETER_SIG}")).unwrap(),
        TEXT
    );

    // Only the other key's signature: no signature by this key.
    assert!(matches!(
        peter.open_text(&format!("{TEXT}\n{ENOCH_SIG}")),
        Err(Error::NoSignature {
            key_id: 0xc74f20a3,
            ..
        })
    ));

    // TestOpen's tampered signature: four characters spliced into the base64.
    let bad = format!("{TEXT}\n{}ABCD{}", &PETER_SIG[..60], &PETER_SIG[60..]);
    assert!(matches!(
        peter.open_text(&bad),
        Err(Error::BadSignature { .. })
    ));

    // TestOpen's malformed messages.
    let bad_msgs = [
        TEXT.to_owned(),
        format!("{TEXT}\n"),
        format!("{TEXT}\n{}", &PETER_SIG[..PETER_SIG.len() - 1]),
        format!("\x01{TEXT}\n{PETER_SIG}"),
        format!(
            "{TEXT}\n— Bad Name x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM="
        ),
        format!("{TEXT}\n{PETER_SIG}Unexpected line.\n"),
    ];
    for msg in &bad_msgs {
        assert!(
            matches!(peter.open_text(msg), Err(Error::MalformedNote(_))),
            "accepted {msg:?}"
        );
    }
    // More than 100 signature lines.
    let many = format!("{TEXT}\n{}", PETER_SIG.repeat(101));
    assert!(matches!(
        peter.open_text(&many),
        Err(Error::MalformedNote(_))
    ));
    assert_eq!(
        peter
            .open_text(&format!("{TEXT}\n{}", PETER_SIG.repeat(100)))
            .unwrap(),
        TEXT
    );

    // Any change to the signed text breaks the signature.
    for i in 0..TEXT.len() {
        let mut t = TEXT.as_bytes().to_vec();
        t[i] ^= 0x01;
        let Ok(t) = String::from_utf8(t) else {
            continue;
        };
        let msg = format!("{t}\n{PETER_SIG}");
        assert!(peter.open_text(&msg).is_err(), "byte {i}");
    }
}

// ---------------------------------------------------------------------------------------------
// A real sum.golang.org checkpoint (transparency-dev/formats log/note_test.go)

#[test]
fn sumdb_checkpoint_opens() {
    let v = Verifier::parse(SUMDB_VKEY).unwrap();
    assert_eq!(v.key_id(), 0x033de0ae);
    let cp = open(SUMDB_NOTE, &v).unwrap();
    assert_eq!(cp.origin, "go.sum database tree");
    assert_eq!(cp.size, 6476701);
    assert_eq!(
        STANDARD.encode(cp.root),
        "mb8QLQIs0Z0yP5Cstq6guj87oXWeC9gEM8oVikmm9Wk="
    );
    assert!(cp.extensions.is_empty());
    // The body re-encodes to exactly the signed text.
    assert_eq!(
        format!("{}\n", cp.to_body().unwrap()),
        SUMDB_NOTE[..SUMDB_NOTE.find("\n\n").unwrap() + 2]
    );

    // The same note opened with another key has no signature by it.
    let other = Verifier::parse(PETER_VKEY).unwrap();
    assert!(matches!(
        open(SUMDB_NOTE, &other),
        Err(Error::NoSignature { .. })
    ));
}

/// BenchmarkParse appends witness cosignatures to the same checkpoint; each verifies under its
/// own published key, and the log's signature still verifies alongside them.
#[test]
fn witness_cosignatures_on_the_sumdb_checkpoint() {
    let witnesses = [
        (
            "monkeys+db4d9f7e+AULaJMvTtDLHPUcUrjdDad9vDlh/PTfC2VV60JUtCfWT",
            "— monkeys 202ffh9ve46Mqbhuyb4wnC2Pwdan5EsXQym/tF1ggXJqhjGosU4T5intH4iKMRgDLxrnXuIjRaU2NbvAnaepM6Y+8ww=",
        ),
        (
            "bananas+cf639f13+AaPjhFnPCQnid/Ql32KWhmh+uk72FVRfK+2DLmO3BI3M",
            "— bananas z2OfE+2bbsBZ7NLgfuslc0v7NFW2QyexJ7fhePpoL2N/P7N/COd5S+JNHbQEAlYzz2C5sg0E+x/MggS1mDR6t3/9rQw=",
        ),
        (
            "witness+f13a86db+AdYV1Ztajd9BvyjP2HgpwrqYL6TjOwIjGMOq8Bu42xbN",
            "— witness 8TqG25yWGFLdT7WPf/WoyeG3LwqtkXP+8S3yykOVm6EMh4hPgCke6eSVPU4BdtXNMPJBXKF+UpDbGgCdcpR8SVSoqAU=",
        ),
    ];
    let mut cosigned = SUMDB_NOTE.to_owned();
    for (vkey, line) in witnesses {
        sumdb_fixture_contains(vkey);
        sumdb_fixture_contains(line);
        cosigned.push_str(line);
        cosigned.push('\n');
    }
    let log = Verifier::parse(SUMDB_VKEY).unwrap();
    let head = open(&cosigned, &log).unwrap();
    for (vkey, _) in witnesses {
        let w = Verifier::parse(vkey).unwrap();
        assert_eq!(open(&cosigned, &w).unwrap(), head, "{vkey}");
    }
}

#[test]
fn formats_test_key_pairs_match() {
    let text = fixture("formats-log-note_test.go.txt");
    let value = |name: &str| -> String {
        let at = &text[text.find(&format!("\t{name} = \"")).unwrap() + name.len() + 5..];
        at[..at.find('"').unwrap()].to_owned()
    };
    for (vk, sk) in [
        ("logVK", "logSK"),
        ("known1VK", "known1SK"),
        ("known2VK", "known2SK"),
        ("unknownVK", "unknownSK"),
    ] {
        let signer = CheckpointSigner::from_signer_key(&value(sk)).unwrap();
        assert_eq!(signer.verifier_key(), value(vk));
        let cp = Checkpoint::new("TestParseCheckpoint", 42, leaf_hash(b"abcdef"));
        let note = signer.sign(&cp).unwrap();
        assert_eq!(
            open(&note, &Verifier::parse(&value(vk)).unwrap()).unwrap(),
            cp
        );
    }
}

// ---------------------------------------------------------------------------------------------
// The C2SP tlog-checkpoint example

#[test]
fn c2sp_example_is_well_formed() {
    let text = fixture("c2sp-tlog-checkpoint.md.txt");
    let note = text.split("---\n").nth(1).unwrap();
    let body = &note[..note.find("\n\n").unwrap() + 1];
    let cp = Checkpoint::parse_body(body).unwrap();
    assert_eq!(cp.origin, "example.com/behind-the-sofa");
    assert_eq!(cp.size, 20852163);
    assert_eq!(cp.to_body().unwrap(), body);
    // Grammatically a signed note; no key of ours signed it.
    let someone = CheckpointSigner::from_seed("example.com/behind-the-sofa", &[7; 32]).unwrap();
    assert!(matches!(
        open(note, someone.verifier()),
        Err(Error::NoSignature { .. })
    ));
}

// ---------------------------------------------------------------------------------------------
// Our own checkpoints

fn signer() -> CheckpointSigner {
    CheckpointSigner::from_seed("custodian.example/audit", &[42; 32]).unwrap()
}

#[test]
fn sign_and_open_round_trip() {
    let s = signer();
    let v = Verifier::parse(&s.verifier_key()).unwrap();
    assert_eq!(&v, s.verifier());
    let mut cp = Checkpoint::new("custodian.example/audit", 1_000_000, leaf_hash(b"root"));
    let note = s.sign(&cp).unwrap();
    assert!(note.starts_with("custodian.example/audit\n1000000\n"));
    assert!(note.contains("\n\n— custodian.example/audit "));
    assert_eq!(open(&note, &v).unwrap(), cp);

    cp.extensions = vec!["ext one".into(), "ext two".into()];
    let note = s.sign(&cp).unwrap();
    assert_eq!(open(&note, &v).unwrap(), cp);

    let empty = Checkpoint::new("o", 0, custodian_tlog::empty_root());
    assert_eq!(open(&s.sign(&empty).unwrap(), &v).unwrap(), empty);
}

#[test]
fn every_byte_of_a_signed_checkpoint_matters() {
    let s = signer();
    let cp = Checkpoint::new("custodian.example/audit", 77, leaf_hash(b"r"));
    let note = s.sign(&cp).unwrap();
    let bytes = note.as_bytes();
    for i in 0..bytes.len() {
        for bit in 0..8 {
            let mut m = bytes.to_vec();
            m[i] ^= 1 << bit;
            let Ok(m) = String::from_utf8(m) else {
                continue;
            };
            match open(&m, s.verifier()) {
                Err(_) => {}
                // Only the base64 padding bits' spelling could survive; STANDARD rejects
                // non-canonical trailing bits, so nothing should.
                Ok(got) => panic!("flip at byte {i} bit {bit} still opened: {got:?}"),
            }
        }
    }
}

#[test]
fn strict_checkpoint_bodies() {
    let root = STANDARD.encode(leaf_hash(b"r"));
    let ok = format!("origin\n5\n{root}\n");
    Checkpoint::parse_body(&ok).unwrap();
    let bad = [
        format!("origin\n5\n{root}"),                        // no final newline
        format!("\n5\n{root}\n"),                            // empty origin
        format!("origin\n05\n{root}\n"),                     // leading zero
        format!("origin\n+5\n{root}\n"),                     // sign
        format!("origin\n-5\n{root}\n"),                     // negative
        format!("origin\n 5\n{root}\n"),                     // space
        format!("origin\n18446744073709551616\n{root}\n"),   // 2^64
        format!("origin\n\n{root}\n"),                       // empty size
        "origin\n5\n".to_owned(),                            // missing root
        "origin\n5\nYmFuYW5hcw==\n".to_owned(),              // root not 32 bytes
        format!("origin\n5\n{}\n", &root[..root.len() - 1]), // bad padding
        format!("origin\n5\n{}\n", root.replace('=', "")),   // unpadded
        format!("origin\n5\n{root}\n\n"),                    // empty extension line
        format!("origin\r\n5\n{root}\n"),                    // CR
        format!("origin\n5\n{root}\next\n\nmore\n"),         // blank line inside
    ];
    for b in &bad {
        assert!(
            matches!(
                Checkpoint::parse_body(b),
                Err(Error::MalformedCheckpoint(_))
            ),
            "accepted {b:?}"
        );
    }
    assert_eq!(
        Checkpoint::parse_body(&format!("origin\n18446744073709551615\n{root}\n"))
            .unwrap()
            .size,
        u64::MAX
    );
    assert_eq!(
        Checkpoint::parse_body(&format!("o\n0\n{root}\n"))
            .unwrap()
            .size,
        0
    );

    // A root whose last base64 character carries non-zero trailing bits decodes to the same
    // bytes under a lenient decoder; it must be refused so one checkpoint has one spelling.
    // 32 bytes are 43 base64 digits and '=': the last digit's two low bits are padding.
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut spelled = root.clone().into_bytes();
    let at = ALPHABET.iter().position(|&c| c == spelled[42]).unwrap();
    spelled[42] = ALPHABET[at ^ 1];
    let noncanonical = String::from_utf8(spelled).unwrap();
    assert!(matches!(
        Checkpoint::parse_body(&format!("o\n1\n{noncanonical}\n")),
        Err(Error::MalformedCheckpoint(_))
    ));

    // Signing refuses what opening would refuse.
    let s = signer();
    let h = leaf_hash(b"r");
    assert!(s.sign(&Checkpoint::new("", 1, h)).is_err());
    assert!(s.sign(&Checkpoint::new("two\nlines", 1, h)).is_err());
    let mut cp = Checkpoint::new("o", 1, h);
    cp.extensions = vec![String::new()];
    assert!(s.sign(&cp).is_err());
    assert!(s.note_signer().sign_text("no newline").is_err());
    assert!(s.note_signer().sign_text("tab\there\n").is_err());
    assert!(CheckpointSigner::from_seed("bad name", &[1; 32]).is_err());
    assert!(CheckpointSigner::from_seed("a+b", &[1; 32]).is_err());
    assert!(CheckpointSigner::from_seed("", &[1; 32]).is_err());
}

#[test]
fn other_keys_lines_are_skipped_but_must_be_well_formed() {
    let s = signer();
    let other = CheckpointSigner::from_seed("witness.example", &[9; 32]).unwrap();
    let cp = Checkpoint::new("custodian.example/audit", 3, leaf_hash(b"x"));
    let note = s.sign(&cp).unwrap();
    let body = cp.to_body().unwrap();
    let witness_line = other
        .note_signer()
        .sign_text(&body)
        .unwrap()
        .split("\n\n")
        .nth(1)
        .unwrap()
        .to_owned();
    let cosigned = format!("{note}{witness_line}");
    assert_eq!(open(&cosigned, s.verifier()).unwrap(), cp);
    assert_eq!(open(&cosigned, other.verifier()).unwrap(), cp);

    // A forged line claiming our name and key id fails even next to a valid one.
    let mut forged = witness_line.replace("witness.example", "custodian.example/audit");
    let sig = forged.rsplit(' ').next().unwrap().trim_end().to_owned();
    let mut raw = STANDARD.decode(&sig).unwrap();
    raw[..4].copy_from_slice(&s.verifier().key_id().to_be_bytes());
    forged = forged.replace(&sig, &STANDARD.encode(raw));
    assert!(matches!(
        open(&format!("{note}{forged}"), s.verifier()),
        Err(Error::BadSignature { .. })
    ));
    // A line with a signature too short for Ed25519 but claiming our key.
    let short = format!(
        "— custodian.example/audit {}\n",
        STANDARD.encode([&s.verifier().key_id().to_be_bytes()[..], &[0u8; 10]].concat())
    );
    assert!(matches!(
        open(&format!("{note}{short}"), s.verifier()),
        Err(Error::BadSignature { .. })
    ));
}
