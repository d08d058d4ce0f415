//! Anonymisation of a JSON payload whose subject exercised the right to erasure, for data types
//! the policy keeps for aggregate use (`delete = "anonymize"`): the value of every field a
//! field rule names is removed, every occurrence of a subject's id is replaced, every token or
//! pseudonym that an entity rule left inside free text is removed (they are keyed, so they
//! would still link the record to a person), and every identifier the scanner finds in the
//! remaining text is replaced by its entity's placeholder.
//!
//! It is irreversible by construction: nothing is keyed, nothing of a replaced value is kept,
//! so unlike pseudonymisation or tokenisation no key can ever link the record back.

use serde_json::Value;

use crate::scan::Scanner;
use crate::transform::{PSEUDONYM_PREFIX, TOKEN_PREFIX, redact};

/// The placeholder for a value an identifying field held.
pub const REMOVED: &str = "<REMOVED>";
/// The placeholder for an occurrence of a subject's id.
pub const SUBJECT: &str = "<SUBJECT>";

/// What to anonymise against.
pub struct Anonymiser<'a> {
    pub scanner: &'a Scanner,
    /// Field paths whose values identify someone, dot-separated from the payload's root
    /// (`email`, `contact.phone`): their values are removed whole.
    pub identifying_fields: &'a [String],
    /// The ids of the record's subjects, as sent at ingest.
    pub subjects: &'a [String],
}

/// How many values were replaced.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Replaced {
    pub fields: usize,
    pub subjects: usize,
    pub detected: usize,
}

impl Anonymiser<'_> {
    /// Anonymises `payload` in place.
    pub fn anonymise(&self, payload: &mut Value) -> Replaced {
        let mut replaced = Replaced::default();
        self.walk(payload, &mut String::new(), &mut replaced);
        replaced
    }

    fn walk(&self, value: &mut Value, path: &mut String, replaced: &mut Replaced) {
        if !path.is_empty() && self.identifying_fields.iter().any(|f| f == path) {
            if !value.is_null() {
                *value = Value::String(REMOVED.to_owned());
                replaced.fields += 1;
            }
            return;
        }
        match value {
            Value::Object(map) => {
                for (key, child) in map.iter_mut() {
                    let len = path.len();
                    if !path.is_empty() {
                        path.push('.');
                    }
                    path.push_str(key);
                    self.walk(child, path, replaced);
                    path.truncate(len);
                }
            }
            // Array elements share their array's path: a rule on `emails` covers each.
            Value::Array(items) => {
                for item in items {
                    self.walk(item, path, replaced);
                }
            }
            Value::String(text) => {
                if let Some(clean) = self.clean(text, replaced) {
                    *text = clean;
                }
            }
            Value::Number(n) => {
                let text = n.to_string();
                if let Some(clean) = self.clean(&text, replaced) {
                    *value = Value::String(clean);
                }
            }
            Value::Bool(_) | Value::Null => {}
        }
    }

    /// `text` with subject ids and detected identifiers replaced; `None` when nothing was.
    fn clean(&self, text: &str, replaced: &mut Replaced) -> Option<String> {
        let mut out = text.to_owned();
        for subject in self.subjects.iter().filter(|s| !s.is_empty()) {
            let n = out.matches(subject.as_str()).count();
            if n > 0 {
                out = out.replace(subject.as_str(), SUBJECT);
                replaced.subjects += n;
            }
        }
        if let Some(clean) = remove_keyed_values(&out, replaced) {
            out = clean;
        }
        let findings = self.scanner.scan(&out);
        if findings.is_empty() {
            return (out != text).then_some(out);
        }
        // Findings are sorted and do not overlap: rebuild the text around them.
        let mut rebuilt = String::with_capacity(out.len());
        let mut at = 0;
        for f in &findings {
            rebuilt.push_str(&out[at..f.start]);
            rebuilt.push_str(&redact(f.entity, None));
            at = f.end;
        }
        rebuilt.push_str(&out[at..]);
        replaced.detected += findings.len();
        Some(rebuilt)
    }
}

/// `text` with every token and pseudonym (`tok_…`, `pse_…` at the start of a word, followed by
/// at least 16 characters of their alphabets) replaced by [`REMOVED`]; `None` when it has none.
fn remove_keyed_values(text: &str, replaced: &mut Replaced) -> Option<String> {
    let b = text.as_bytes();
    let word = |c: u8| c.is_ascii_alphanumeric() || c == b'_' || c == b'-';
    let mut out = String::new();
    let mut copied = 0;
    let mut i = 0;
    while let Some(found) = memchr::memchr(b'_', &b[i..]) {
        let us = i + found;
        i = us + 1;
        // The three letters before the '_', at the start of a word.
        let Some(start) = us.checked_sub(3) else {
            continue;
        };
        let prefix = &text.as_bytes()[start..=us];
        if !(prefix == TOKEN_PREFIX.as_bytes() || prefix == PSEUDONYM_PREFIX.as_bytes())
            || (start > 0 && word(b[start - 1]))
            || start < copied
        {
            continue;
        }
        let len = b[us + 1..].iter().take_while(|&&c| word(c)).count();
        if len < 16 {
            continue;
        }
        let end = us + 1 + len;
        // Every byte before `start` and from `end` on is ASCII or part of text not touched.
        out.push_str(&text[copied..start]);
        out.push_str(REMOVED);
        copied = end;
        i = end;
        replaced.detected += 1;
    }
    if copied == 0 {
        return None;
    }
    out.push_str(&text[copied..]);
    Some(out)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::ScanConfig;

    fn scanner() -> Scanner {
        Scanner::new(ScanConfig::default()).unwrap()
    }

    #[test]
    fn identifying_fields_subject_ids_and_detected_values_are_replaced() {
        let scanner = scanner();
        let fields = vec!["name".to_owned(), "contact.phone".to_owned()];
        let subjects = vec!["cust-4411".to_owned()];
        let a = Anonymiser {
            scanner: &scanner,
            identifying_fields: &fields,
            subjects: &subjects,
        };
        let mut payload = json!({
            "name": "Ada Lovelace",
            "contact": {"phone": "+44 20 7946 0018", "city": "London"},
            "note": "customer cust-4411 wrote from ada@lovelace.org about order 1234",
            "tags": ["vip", "cust-4411"],
            "visits": 12,
            "missing": null,
        });
        let replaced = a.anonymise(&mut payload);
        assert_eq!(
            payload,
            json!({
                "name": REMOVED,
                "contact": {"phone": REMOVED, "city": "London"},
                "note": "customer <SUBJECT> wrote from <EMAIL_ADDRESS> about order 1234",
                "tags": ["vip", SUBJECT],
                "visits": 12,
                "missing": null,
            })
        );
        assert_eq!(
            replaced,
            Replaced {
                fields: 2,
                subjects: 2,
                detected: 1
            }
        );
        let text = payload.to_string();
        for gone in ["Ada", "7946", "cust-4411", "lovelace"] {
            assert!(!text.contains(gone), "{gone} left in {text}");
        }
    }

    #[test]
    fn a_rule_on_an_array_covers_every_element_and_numbers_are_scanned() {
        let scanner = scanner();
        let fields = vec!["emails".to_owned()];
        let a = Anonymiser {
            scanner: &scanner,
            identifying_fields: &fields,
            subjects: &[],
        };
        let mut payload = json!({"emails": ["a@b.org", "c@d.org"], "card": 4111111111111111u64});
        a.anonymise(&mut payload);
        assert_eq!(payload["emails"], json!(REMOVED));
        assert_eq!(payload["card"], json!("<CREDIT_CARD>"));
    }

    #[test]
    fn tokens_and_pseudonyms_left_in_free_text_are_removed() {
        let scanner = scanner();
        let a = Anonymiser {
            scanner: &scanner,
            identifying_fields: &[],
            subjects: &[],
        };
        let key = crate::SecretKey::new(&[3; 64]);
        let token =
            crate::transform::tokenize(&key, b"t/x/note[CREDIT_CARD]", "4539578763621486").unwrap();
        let pseudonym = crate::transform::pseudonymize(&key, "lu@corp.io").unwrap();
        let mut payload = json!({
            "note": format!("card {token}, mail {pseudonym}; my_tok_abcdefghijklmnopqrstu stays; tok_short too")
        });
        let replaced = a.anonymise(&mut payload);
        assert_eq!(
            payload["note"],
            "card <REMOVED>, mail <REMOVED>; my_tok_abcdefghijklmnopqrstu stays; tok_short too"
        );
        assert_eq!(replaced.detected, 2);
    }

    #[test]
    fn clean_payloads_are_left_alone() {
        let scanner = scanner();
        let a = Anonymiser {
            scanner: &scanner,
            identifying_fields: &[],
            subjects: &["".to_owned()],
        };
        let original = json!({"count": 3, "kind": "login", "ok": true, "list": [1, 2]});
        let mut payload = original.clone();
        assert_eq!(a.anonymise(&mut payload), Replaced::default());
        assert_eq!(payload, original);
    }
}
