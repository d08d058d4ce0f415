//! Fuzz target: each transform on arbitrary values, keys and contexts. The first byte picks
//! the transform; the rest is split into a key, a context and a value.
//!
//! Errors are fine (a value FF1 cannot take, a malformed token); panics are not, and
//! reversible transforms must give the value back.

use custodian_detect::SecretKey;
use custodian_detect::transform::{self, Generalization, MaskOptions};

fn check(data: &[u8]) {
    let Some((&op, rest)) = data.split_first() else {
        return;
    };
    let (key_len, rest) = match rest.split_first() {
        Some((&k, rest)) => (usize::from(k) % 80, rest),
        None => (0, rest),
    };
    let key_len = key_len.min(rest.len());
    let (key, rest) = rest.split_at(key_len);
    let split = rest.iter().position(|&b| b == 0).unwrap_or(0);
    let (context, value) = rest.split_at(split);
    let key = SecretKey::new(key);
    let value = String::from_utf8_lossy(value);
    match op % 9 {
        0 => {
            if let Ok(t) = transform::tokenize(&key, context, &value) {
                assert_eq!(
                    transform::detokenize(&key, context, &t).expect("opens"),
                    value
                );
            }
        }
        1 => {
            let _ = transform::detokenize(&key, context, &value);
        }
        2 => {
            if let Ok(c) = transform::fpe(&key, context, &value) {
                assert_eq!(c.len(), value.len());
                assert_eq!(
                    transform::fpe_decrypt(&key, context, &c).expect("round trip"),
                    value
                );
            }
        }
        3 => {
            let _ = transform::fpe_decrypt(&key, context, &value);
        }
        4 => {
            let _ = transform::pseudonymize(&key, &value);
        }
        5 => {
            let subject = String::from_utf8_lossy(context);
            let _ = transform::date_shift(&key, &subject, &value, transform::MAX_SHIFT_DAYS);
            let _ = transform::date_shift_days(&key, &subject, u32::from(op));
        }
        6 => {
            for kind in [
                Generalization::Year,
                Generalization::AgeBand,
                Generalization::Postcode,
            ] {
                let _ = transform::generalize(kind, &value);
            }
        }
        7 => {
            let _ = transform::truncate_ip(&value);
        }
        _ => {
            let opts = MaskOptions {
                keep_last: usize::from(op / 9),
                keep_separators: op & 1 == 0,
                mask_char: '*',
            };
            assert_eq!(
                transform::mask(&value, &opts).chars().count(),
                value.chars().count()
            );
        }
    }
}

fn main() {
    afl::fuzz!(|data: &[u8]| check(data));
}
