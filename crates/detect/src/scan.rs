//! The scanner: configuration, context words, allowlists, and the resolution of overlapping
//! findings into one sorted list.
//!
//! Detectors live in `pii` (personal data found by pattern and validator, each run only where
//! the single pass over the bytes says it can match) and `secrets` (credentials found from a
//! literal prefix or an assignment to a secret-sounding key). They produce candidates; this
//! module scores them with context, drops what the configuration excludes, and keeps the best of
//! overlapping candidates. The working lists of a scan are kept per thread and reused, so a scan
//! allocates only the list it returns.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashSet};

use crate::DetectError;
use crate::entity::{Entity, EntitySet};
use crate::pii::Pii;
use crate::secrets::Secrets;
use crate::swar;

/// One sensitive value found in scanned text.
///
/// Offsets are byte offsets into the scanned `&str`, always on `char` boundaries, so
/// `&text[f.start..f.end]` is the value. The value itself is deliberately not stored.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Finding {
    pub entity: Entity,
    pub start: usize,
    pub end: usize,
    /// Confidence in 0..=1: the detector's base score, raised when a context word for the
    /// entity appears shortly before the value.
    pub score: f32,
    /// The value validates but is reserved for documentation or testing (a processor's test
    /// card, an RFC 5737 address, an `example.com` mailbox, a Stripe test key, AWS's example
    /// key): reported so a policy can decide, rather than silently dropped.
    pub test: bool,
}

impl Finding {
    /// The byte range of the value in the scanned text.
    pub fn range(&self) -> std::ops::Range<usize> {
        self.start..self.end
    }
}

/// How a [`Scanner`] behaves. `ScanConfig::default()` enables every entity.
#[derive(Debug, Clone)]
pub struct ScanConfig {
    /// The entities to look for; the others' detectors do not run.
    pub entities: Vec<Entity>,
    /// Findings scoring below this (after context) are dropped. In 0..=1.
    pub min_score: f32,
    /// How many bytes before a value are searched for context words. At most 1024.
    pub context_window: usize,
    /// ISO 3166-1 alpha-2 regions whose national phone number formats are recognised (numbers
    /// written with a leading `+` and country code are recognised for every region). Each region
    /// added makes more digit groups valid phone numbers somewhere, so keep this to the regions
    /// the data comes from.
    pub phone_regions: Vec<String>,
    /// Minimum Shannon entropy, in bits per byte, of a value assigned to a `password`, `secret`,
    /// `api_key`, … key for it to count as a generic secret. In 0..=8.
    pub entropy_threshold: f64,
    /// Drop findings flagged `test` instead of reporting them.
    pub drop_test: bool,
    /// Exact values never reported (a tenant's own support address, a known public key id).
    pub allow: Vec<String>,
}

impl Default for ScanConfig {
    fn default() -> Self {
        ScanConfig {
            entities: Entity::ALL.to_vec(),
            min_score: 0.3,
            context_window: 48,
            phone_regions: vec!["US".into(), "GB".into(), "DE".into()],
            entropy_threshold: 3.0,
            drop_test: false,
            allow: Vec::new(),
        }
    }
}

/// What a detector proposes before context, allowlists and overlap resolution.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Candidate {
    pub(crate) entity: Entity,
    pub(crate) start: usize,
    pub(crate) end: usize,
    pub(crate) score: f32,
    pub(crate) test: bool,
    /// Report only if a context word is present (a bare nine-digit number is an SSN only when
    /// the text says so).
    pub(crate) needs_context: bool,
}

impl Candidate {
    pub(crate) fn new(entity: Entity, start: usize, end: usize, score: f32) -> Candidate {
        Candidate {
            entity,
            start,
            end,
            score,
            test: false,
            needs_context: false,
        }
    }

    pub(crate) fn test(mut self, test: bool) -> Candidate {
        self.test = test;
        self
    }
}

/// How much a context word raises a score (Presidio's default context similarity factor).
const CONTEXT_BOOST: f32 = 0.35;

/// Words that, shortly before a value, make it likelier to be the entity. Matched
/// case-insensitively at the start of a word.
const CONTEXT_WORDS: &[(&str, &[Entity])] = &[
    ("card", &[Entity::CreditCard]),
    ("credit", &[Entity::CreditCard]),
    ("debit", &[Entity::CreditCard]),
    ("visa", &[Entity::CreditCard]),
    ("mastercard", &[Entity::CreditCard]),
    ("amex", &[Entity::CreditCard]),
    ("american express", &[Entity::CreditCard]),
    ("discover", &[Entity::CreditCard]),
    ("jcb", &[Entity::CreditCard]),
    ("diners", &[Entity::CreditCard]),
    ("unionpay", &[Entity::CreditCard]),
    ("cc", &[Entity::CreditCard]),
    ("payment", &[Entity::CreditCard, Entity::IbanCode]),
    ("ssn", &[Entity::UsSsn]),
    ("social security", &[Entity::UsSsn]),
    ("social sec", &[Entity::UsSsn]),
    ("ss#", &[Entity::UsSsn]),
    ("ssa", &[Entity::UsSsn]),
    ("taxpayer", &[Entity::UsSsn]),
    ("iban", &[Entity::IbanCode]),
    ("bank", &[Entity::IbanCode]),
    ("account", &[Entity::IbanCode]),
    ("acct", &[Entity::IbanCode]),
    ("bic", &[Entity::IbanCode]),
    ("swift", &[Entity::IbanCode]),
    ("transfer", &[Entity::IbanCode]),
    ("phone", &[Entity::PhoneNumber]),
    ("tel", &[Entity::PhoneNumber]),
    ("telephone", &[Entity::PhoneNumber]),
    ("telefon", &[Entity::PhoneNumber]),
    ("mobile", &[Entity::PhoneNumber]),
    ("cell", &[Entity::PhoneNumber]),
    ("cellphone", &[Entity::PhoneNumber]),
    ("cellular", &[Entity::PhoneNumber]),
    ("fax", &[Entity::PhoneNumber]),
    ("call", &[Entity::PhoneNumber]),
    ("contact", &[Entity::PhoneNumber, Entity::EmailAddress]),
    ("whatsapp", &[Entity::PhoneNumber]),
    ("sms", &[Entity::PhoneNumber]),
    ("ring", &[Entity::PhoneNumber]),
    ("reach", &[Entity::PhoneNumber]),
    ("dial", &[Entity::PhoneNumber]),
    ("hotline", &[Entity::PhoneNumber]),
    ("landline", &[Entity::PhoneNumber]),
    ("voicemail", &[Entity::PhoneNumber]),
    ("email", &[Entity::EmailAddress]),
    ("e-mail", &[Entity::EmailAddress]),
    ("mail", &[Entity::EmailAddress]),
    ("ip", &[Entity::IpAddress]),
    ("address", &[Entity::IpAddress]),
    ("addr", &[Entity::IpAddress, Entity::MacAddress]),
    ("host", &[Entity::IpAddress]),
    ("client", &[Entity::IpAddress]),
    ("remote", &[Entity::IpAddress]),
    ("src", &[Entity::IpAddress]),
    ("dst", &[Entity::IpAddress]),
    ("mac", &[Entity::MacAddress]),
    ("hwaddr", &[Entity::MacAddress]),
    ("ether", &[Entity::MacAddress]),
    ("bssid", &[Entity::MacAddress]),
];

/// For each letter `a`..=`z`, the [`CONTEXT_WORDS`] (as bits) starting with it.
const CONTEXT_FIRST: [u64; 26] = {
    let mut t = [0u64; 26];
    let mut k = 0;
    while k < CONTEXT_WORDS.len() {
        let first = CONTEXT_WORDS[k].0.as_bytes()[0].to_ascii_lowercase();
        t[(first - b'a') as usize] |= 1 << k;
        k += 1;
    }
    t
};

/// Each byte's class for the context reader: 0 for neither letter nor digit, [`DIGIT`], or
/// [`LETTER`] plus the letter's place in the alphabet, either case.
const BYTE_CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut c = 0;
    while c < 26 {
        t[b'a' as usize + c] = LETTER + c as u8;
        t[b'A' as usize + c] = LETTER + c as u8;
        c += 1;
    }
    let mut d = b'0';
    while d <= b'9' {
        t[d as usize] = DIGIT;
        d += 1;
    }
    t
};
const DIGIT: u8 = 1;
const LETTER: u8 = 2;

/// For each entity (by discriminant), the [`CONTEXT_WORDS`] (as bits) that are its context.
const CONTEXT_OF: [u64; 32] = {
    let mut t = [0u64; 32];
    let mut k = 0;
    while k < CONTEXT_WORDS.len() {
        let entities = CONTEXT_WORDS[k].1;
        let mut e = 0;
        while e < entities.len() {
            t[entities[e] as usize] |= 1 << k;
            e += 1;
        }
        k += 1;
    }
    t
};

/// What the context window before a candidate holds.
#[derive(Debug, Default, Clone, Copy)]
struct Context {
    /// A context word for the entity starts a word there.
    near: bool,
    /// One is a whole word, perhaps inflected.
    word: bool,
}

/// Endings that leave a context word the same word (`calls`, `called`, `caller`, `reached`,
/// `reachable`, `ringing`).
const INFLECTIONS: &[&[u8]] = &[
    b"s", b"es", b"d", b"ed", b"er", b"ers", b"ing", b"ings", b"able",
];

/// Whether a context word ending at `end` ends a word there: not followed by more letters,
/// except an inflection or the next word of a camelCase or snake_case name (`phoneNumber`,
/// `phone_number`); `telemetry` and `dialog` do not hold `tel` and `dial`.
fn ends_word(b: &[u8], end: usize) -> bool {
    let rest = &b[end..];
    // Counted up to one more than the longest inflection.
    let letters = rest
        .iter()
        .take(6)
        .take_while(|c| c.is_ascii_alphabetic())
        .count();
    if letters == 0 {
        return true;
    }
    let camel = end > 0 && b[end - 1].is_ascii_lowercase() && rest[0].is_ascii_uppercase();
    camel
        || INFLECTIONS
            .iter()
            .any(|i| i.eq_ignore_ascii_case(&rest[..letters]))
}

/// A reusable, thread-safe detector built from a [`ScanConfig`].
pub struct Scanner {
    enabled: EntitySet,
    min_score: f32,
    context_window: usize,
    drop_test: bool,
    allow: HashSet<String>,
    pii: Pii,
    secrets: Secrets,
}

impl std::fmt::Debug for Scanner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The allowlist can hold personal data (a support mailbox): print only its size.
        f.debug_struct("Scanner")
            .field("enabled", &self.enabled)
            .field("min_score", &self.min_score)
            .field("context_window", &self.context_window)
            .field("drop_test", &self.drop_test)
            .field("allow", &self.allow.len())
            .finish_non_exhaustive()
    }
}

impl Scanner {
    /// Compiles the detectors. Fails only on a configuration out of range (a score outside
    /// 0..=1, an unknown phone region, …).
    pub fn new(config: ScanConfig) -> Result<Scanner, DetectError> {
        if !(0.0..=1.0).contains(&config.min_score) {
            return Err(DetectError::Config("min_score must be in 0..=1"));
        }
        if !(0.0..=8.0).contains(&config.entropy_threshold) {
            return Err(DetectError::Config("entropy_threshold must be in 0..=8"));
        }
        if config.context_window > 1024 {
            return Err(DetectError::Config(
                "context_window must be at most 1024 bytes",
            ));
        }
        Ok(Scanner {
            enabled: EntitySet::of(&config.entities),
            min_score: config.min_score,
            context_window: config.context_window,
            drop_test: config.drop_test,
            allow: config.allow.into_iter().collect(),
            pii: Pii::new(&config.phone_regions)?,
            secrets: Secrets::new(config.entropy_threshold)?,
        })
    }

    /// Every sensitive value in `text`, sorted by start offset and without overlaps: where
    /// candidates overlap, the highest score wins, then a specific secret rule over personal
    /// data over the generic `key = value` rule, then the longer match.
    pub fn scan(&self, text: &str) -> Vec<Finding> {
        if text.is_empty() {
            return Vec::new();
        }
        // Most texts are short (a log line, a note), where allocating the working lists would
        // cost more than the search: each thread keeps one set and reuses it.
        SCRATCH.with(|cell| match cell.try_borrow_mut() {
            Ok(mut scratch) => self.scan_with(text, &mut scratch),
            // Only if a scan were ever to run inside another on the same thread.
            Err(_) => self.scan_with(text, &mut Scratch::default()),
        })
    }

    fn scan_with(&self, text: &str, scratch: &mut Scratch) -> Vec<Finding> {
        scratch.clear();
        let Scratch {
            candidates,
            pii,
            secrets,
        } = scratch;
        if self.enabled.any_secret() {
            self.secrets.detect(text, self.enabled, candidates, secrets);
        }
        // The personal-data detectors skip the JWTs and private keys found.
        self.pii
            .detect(text, self.enabled, secrets.tokens(), candidates, pii);
        candidates.retain_mut(|c| self.keep(text, c));
        resolve_overlaps(candidates)
    }

    /// Whether a candidate survives the configuration and its context; raises its score when a
    /// context word is present.
    fn keep(&self, text: &str, c: &mut Candidate) -> bool {
        if !self.enabled.contains(c.entity)
            || c.start >= c.end
            || !text.is_char_boundary(c.start)
            || !text.is_char_boundary(c.end)
        {
            return false;
        }
        if self.drop_test && c.test {
            return false;
        }
        if !self.allow.is_empty()
            && text
                .get(c.start..c.end)
                .is_some_and(|v| self.allow.contains(v))
        {
            return false;
        }
        if !c.entity.is_secret() {
            let context = self.context(text, c.start, c.entity);
            if c.needs_context && !context.word {
                return false;
            }
            if context.near {
                c.score = (c.score + CONTEXT_BOOST).min(1.0);
            }
        }
        c.score >= self.min_score
    }

    /// Whether a context word for `entity` starts a word within the window before `start`
    /// (which raises a score), and whether one is a word of its own, perhaps inflected (which a
    /// candidate reported only with context needs: `call` and `called` count, `call_id` and
    /// `telemetry` do not).
    fn context(&self, text: &str, start: usize, entity: Entity) -> Context {
        if self.context_window == 0 {
            return Context::default();
        }
        let from = floor_char_boundary(text, start.saturating_sub(self.context_window));
        context_in(text.as_bytes(), from, start, entity)
    }
}

/// What [`Scanner::context`] finds in `b[from..start]`: context words for `entity` are looked
/// for only where a word starts (the window's first byte counts as one) with a letter that one
/// of them starts with. Word starts are found eight bytes at a time (see [`word_starts`]), so
/// the bytes between them cost no branch each.
fn context_in(b: &[u8], from: usize, start: usize, entity: Entity) -> Context {
    let mut found = Context::default();
    let words = CONTEXT_OF[entity as usize];
    let window = &b[from..start];
    let mut after_alnum = false;
    for (chunk_no, chunk) in window.chunks(8).enumerate() {
        let mut starts = word_starts(chunk, &mut after_alnum);
        while starts != 0 {
            let p = chunk_no * 8 + (starts.trailing_zeros() / 8) as usize;
            starts &= starts - 1;
            let class = BYTE_CLASS[usize::from(window[p])];
            let mut candidates = CONTEXT_FIRST[usize::from(class - LETTER)] & words;
            while candidates != 0 {
                let word = CONTEXT_WORDS[candidates.trailing_zeros() as usize]
                    .0
                    .as_bytes();
                candidates &= candidates - 1;
                if !window[p..]
                    .get(..word.len())
                    .is_some_and(|w| w.eq_ignore_ascii_case(word))
                {
                    continue;
                }
                found.near = true;
                if ends_word(b, from + p + word.len()) {
                    found.word = true;
                    return found;
                }
            }
        }
    }
    found
}

/// The letters of `chunk` (at most eight bytes) that start a word, as the high bit of their
/// byte in a little-endian word; `after_alnum` says whether the byte before the chunk was a
/// letter or digit, and is updated for the next chunk.
fn word_starts(chunk: &[u8], after_alnum: &mut bool) -> u64 {
    let x = swar::load(chunk, 0);
    // Upper case folded to lower: setting 0x20 moves no other byte into a..=z.
    let letters = swar::in_range(x | (0x20 * 0x0101_0101_0101_0101), b'a', b'z');
    let alnum = letters | swar::in_range(x, b'0', b'9');
    let before = (alnum << 8) | (u64::from(*after_alnum) << 7);
    let last = chunk.len().max(1) * 8 - 1;
    *after_alnum = alnum >> last & 1 == 1;
    letters & !before
}

/// The working lists of one scan, kept per thread between scans.
#[derive(Default)]
struct Scratch {
    candidates: Vec<Candidate>,
    pii: crate::pii::Scratch,
    secrets: crate::secrets::Scratch,
}

impl Scratch {
    /// Empties the lists, and gives back the memory of one that an unusually large text grew,
    /// so that a thread does not hold it for ever.
    fn clear(&mut self) {
        if self.candidates.capacity() > 4096 || self.pii.oversized() || self.secrets.oversized() {
            *self = Scratch::default();
        }
        self.candidates.clear();
        self.pii.clear();
        self.secrets.clear();
    }
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

/// Keeps the best of overlapping candidates (see [`Scanner::scan`]) and sorts by offset.
fn resolve_overlaps(candidates: &mut [Candidate]) -> Vec<Finding> {
    if candidates.is_empty() {
        return Vec::new();
    }
    candidates.sort_by(|a, b| {
        b.score
            .total_cmp(&a.score)
            .then(a.entity.rank().cmp(&b.entity.rank()))
            .then((b.end - b.start).cmp(&(a.end - a.start)))
            .then(a.start.cmp(&b.start))
    });
    let finding = |c: &Candidate| Finding {
        entity: c.entity,
        start: c.start,
        end: c.end,
        score: c.score,
        test: c.test,
    };
    // Most texts hold one value or none.
    if let [c] = candidates {
        return vec![finding(c)];
    }
    // The usual handful: compare with every accepted one, without building a map.
    if candidates.len() <= 64 {
        let mut accepted = 0u64;
        for (i, c) in candidates.iter().enumerate() {
            let overlaps = candidates[..i]
                .iter()
                .enumerate()
                .any(|(j, a)| accepted >> j & 1 == 1 && a.start < c.end && c.start < a.end);
            if !overlaps {
                accepted |= 1 << i;
            }
        }
        let mut out: Vec<Finding> = candidates
            .iter()
            .enumerate()
            .filter(|(i, _)| accepted >> i & 1 == 1)
            .map(|(_, c)| finding(c))
            .collect();
        // Accepted findings are disjoint and non-empty: their starts differ.
        out.sort_unstable_by_key(|f| f.start);
        return out;
    }
    // Accepted intervals never overlap, so the one starting last before a candidate's end is
    // the only one that can overlap it.
    let mut accepted: BTreeMap<usize, (usize, Candidate)> = BTreeMap::new();
    for &mut c in candidates {
        let overlaps = accepted
            .range(..c.end)
            .next_back()
            .is_some_and(|(_, &(end, _))| end > c.start);
        if !overlaps {
            accepted.insert(c.start, (c.end, c));
        }
    }
    accepted.into_values().map(|(_, c)| finding(&c)).collect()
}

/// The largest char boundary of `text` at or below `i` (`str::floor_char_boundary` is not
/// stable yet).
pub(crate) fn floor_char_boundary(text: &str, i: usize) -> usize {
    let mut i = i.min(text.len());
    while !text.is_char_boundary(i) {
        i -= 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cand(entity: Entity, start: usize, end: usize, score: f32) -> Candidate {
        Candidate::new(entity, start, end, score)
    }

    #[test]
    fn overlaps_keep_highest_score_then_secrets() {
        let out = resolve_overlaps(&mut [
            cand(Entity::PhoneNumber, 0, 10, 0.5),
            cand(Entity::CreditCard, 0, 16, 0.9),
            cand(Entity::EmailAddress, 20, 30, 0.9),
            cand(Entity::GenericSecret, 40, 60, 0.9),
            cand(Entity::StripeKey, 40, 60, 0.9),
            cand(Entity::UsSsn, 100, 109, 0.5),
        ]);
        let got: Vec<_> = out.iter().map(|f| (f.entity, f.start)).collect();
        assert_eq!(
            got,
            vec![
                (Entity::CreditCard, 0),
                (Entity::EmailAddress, 20),
                (Entity::StripeKey, 40),
                (Entity::UsSsn, 100)
            ]
        );
    }

    /// The small-input path and the map agree with a plain quadratic reading of the rule.
    #[test]
    fn overlap_resolution_matches_the_rule() {
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = |m: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % m
        };
        for n in [1, 5, 63, 64, 65, 200] {
            for _ in 0..20 {
                let cands: Vec<Candidate> = (0..n)
                    .map(|_| {
                        let start = next(300) as usize;
                        let len = 1 + next(20) as usize;
                        let entity = Entity::ALL[next(17) as usize];
                        let score = [0.4, 0.5, 0.9][next(3) as usize];
                        cand(entity, start, start + len, score)
                    })
                    .collect();
                let mut sorted = cands.clone();
                sorted.sort_by(|a, b| {
                    b.score
                        .total_cmp(&a.score)
                        .then(a.entity.rank().cmp(&b.entity.rank()))
                        .then((b.end - b.start).cmp(&(a.end - a.start)))
                        .then(a.start.cmp(&b.start))
                });
                let mut want: Vec<Candidate> = Vec::new();
                for c in sorted {
                    if !want.iter().any(|a| a.start < c.end && c.start < a.end) {
                        want.push(c);
                    }
                }
                want.sort_by_key(|c| c.start);
                let got = resolve_overlaps(&mut cands.clone());
                let key = |e: Entity, s: usize, t: usize| (e, s, t);
                assert_eq!(
                    got.iter()
                        .map(|f| key(f.entity, f.start, f.end))
                        .collect::<Vec<_>>(),
                    want.iter()
                        .map(|c| key(c.entity, c.start, c.end))
                        .collect::<Vec<_>>(),
                    "{n}"
                );
            }
        }
    }

    #[test]
    fn context_words_end_words() {
        let ends = |text: &str, word: &str| ends_word(text.as_bytes(), word.len());
        assert!(ends("call 1", "call"));
        assert!(ends("called", "call"));
        assert!(ends("Calls:", "Call"));
        assert!(ends("reachable", "reach"));
        assert!(ends("phoneNumber", "phone"));
        assert!(ends("phone_number", "phone"));
        assert!(ends("tel.", "tel"));
        assert!(!ends("telemetry", "tel"));
        assert!(!ends("TELEMETRY", "TEL"));
        assert!(!ends("dialog", "dial"));
        assert!(!ends("ringtone", "ring"));
    }

    /// The word-start reader finds what an automaton over the window finds.
    mod context_matches_an_automaton {
        use super::super::*;
        use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
        use proptest::prelude::*;

        fn by_automaton(
            ac: &AhoCorasick,
            b: &[u8],
            from: usize,
            start: usize,
            entity: Entity,
        ) -> (bool, bool) {
            let mut found = (false, false);
            let window = &b[from..start];
            for m in ac.find_overlapping_iter(window) {
                if !CONTEXT_WORDS[m.pattern().as_usize()].1.contains(&entity)
                    || (m.start() > 0 && window[m.start() - 1].is_ascii_alphanumeric())
                {
                    continue;
                }
                found.0 = true;
                if ends_word(b, from + m.end()) {
                    found.1 = true;
                    break;
                }
            }
            found
        }

        fn text() -> impl Strategy<Value = Vec<u8>> {
            let mut units: Vec<&'static [u8]> =
                CONTEXT_WORDS.iter().map(|(w, _)| w.as_bytes()).collect();
            units.extend([
                &b"PHONE"[..],
                b"Tel",
                b"s",
                b"ing",
                b"Number",
                b"_",
                b"x",
                b"9",
                b" ",
                b":",
                b"\xc3\xa9",
            ]);
            prop::collection::vec(prop::sample::select(units), 0..12)
                .prop_map(|parts| parts.concat())
        }

        proptest! {
            #[test]
            fn same_context(t in text(), from in 0usize..20, cut in 0usize..8, e in 0usize..17) {
                let ac = AhoCorasickBuilder::new()
                    .ascii_case_insensitive(true)
                    .match_kind(MatchKind::Standard)
                    .build(CONTEXT_WORDS.iter().map(|(w, _)| w))
                    .expect("builds");
                let entity = Entity::ALL[e];
                let start = t.len().saturating_sub(cut);
                let from = from.min(start);
                let got = context_in(&t, from, start, entity);
                prop_assert_eq!((got.near, got.word), by_automaton(&ac, &t, from, start, entity));
            }
        }
    }

    #[test]
    fn floor_boundary() {
        let s = "aé";
        assert_eq!(floor_char_boundary(s, 2), 1);
        assert_eq!(floor_char_boundary(s, 9), 3);
    }
}
