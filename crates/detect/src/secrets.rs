//! Secret detectors in the style of gitleaks: cloud and SaaS credentials recognised by their
//! literal prefixes, JWTs, PEM private keys, and high-entropy values assigned to
//! `password`/`secret`/`api_key`-like keys.
//!
//! One case-sensitive Aho-Corasick automaton finds every token prefix in a single pass; each hit
//! then reads its rule's token format on a bounded window after the hit. Generic secrets and
//! AWS secret keys are found from the other end: every `=` or `:` (found with memchr) is an
//! assignment candidate whose key name, at most 64 bytes before it, is searched for words such as
//! `password` or `aws`. Text without prefixes or operators therefore costs two fast passes and
//! nothing else. Rules check that a token is not glued to the word before it before reading
//! it; that, bounded windows, and AWS windows that never rescan what an earlier one covered,
//! keep the total work linear in the text even when it repeats a prefix millions of times.
//!
//! Texts are short and scanned one at a time, so a regex search's fixed cost outweighed its
//! work: every format is read by a small hand-written reader instead, each documented with the
//! regex it replaces and tested against it, match for match.

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use base64::Engine as _;
#[cfg(test)]
use regex::bytes::Regex;

use crate::DetectError;
use crate::entity::{Entity, EntitySet};
use crate::scan::Candidate;
use crate::validate::shannon_entropy;

/// What a prefix hit starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Trigger {
    AwsKeyId,
    Github,
    Gitlab,
    Slack,
    SlackWebhook,
    Stripe,
    Jwt,
    PemBegin,
    PemEnd,
    Bearer,
}

/// Literal token prefixes, matched case-sensitively as the token formats are: a case-sensitive
/// automaton skips through prose an order of magnitude faster than a case-insensitive one.
const PREFIXES: &[(&str, Trigger)] = &[
    ("AKIA", Trigger::AwsKeyId),
    ("ASIA", Trigger::AwsKeyId),
    ("ABIA", Trigger::AwsKeyId),
    ("ACCA", Trigger::AwsKeyId),
    ("A3T", Trigger::AwsKeyId),
    ("ghp_", Trigger::Github),
    ("gho_", Trigger::Github),
    ("ghu_", Trigger::Github),
    ("ghs_", Trigger::Github),
    ("ghr_", Trigger::Github),
    ("github_pat_", Trigger::Github),
    ("glpat-", Trigger::Gitlab),
    ("xoxb-", Trigger::Slack),
    ("xoxp-", Trigger::Slack),
    ("xoxa-", Trigger::Slack),
    ("xoxr-", Trigger::Slack),
    ("hooks.slack.com/", Trigger::SlackWebhook),
    ("sk_live_", Trigger::Stripe),
    ("rk_live_", Trigger::Stripe),
    ("sk_test_", Trigger::Stripe),
    ("rk_test_", Trigger::Stripe),
    ("eyJ", Trigger::Jwt),
    ("-----BEGIN", Trigger::PemBegin),
    ("-----END", Trigger::PemEnd),
    ("Bearer", Trigger::Bearer),
    ("bearer", Trigger::Bearer),
    ("BEARER", Trigger::Bearer),
];

/// What a word inside a key name says about the value assigned to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyWord {
    /// The value is a credential: report it if it looks random enough.
    Secret,
    /// The value may be an AWS secret access key.
    Aws,
    /// Both (`aws_secret_access_key`, `SecretAccessKey`).
    AwsSecret,
}

/// Words that make a key name a secret's name, matched case-insensitively inside the key of a
/// `key = value` or `key: value` assignment, leftmost-longest so that `secret_access_key` is
/// one word rather than also `secret`.
const KEY_WORDS: &[(&str, KeyWord)] = &[
    ("password", KeyWord::Secret),
    ("passwd", KeyWord::Secret),
    ("passphrase", KeyWord::Secret),
    ("pwd", KeyWord::Secret),
    ("secret", KeyWord::Secret),
    ("api_key", KeyWord::Secret),
    ("apikey", KeyWord::Secret),
    ("api-key", KeyWord::Secret),
    ("access_token", KeyWord::Secret),
    ("auth_token", KeyWord::Secret),
    ("token", KeyWord::Secret),
    ("aws", KeyWord::Aws),
    ("secretaccesskey", KeyWord::AwsSecret),
    ("secret_access_key", KeyWord::AwsSecret),
    ("secret-access-key", KeyWord::AwsSecret),
];

/// Texts shorter than this are searched for prefixes in a padded copy.
const PADDED: usize = 24;

/// The longest key name looked at before an assignment operator.
const KEY_MAX: usize = 64;

/// How far past a hit a rule may look. A PEM key's END line may be far away (an RSA-8192 key is
/// about 6.5 KB); every other token is short.
const PEM_MAX: usize = 64 * 1024;
const JWT_MAX: usize = 16 * 1024;
const TOKEN_MAX: usize = 512;
const AWS_CONTEXT_MAX: usize = 160;

pub(crate) struct Secrets {
    prefixes: AhoCorasick,
    /// The same prefixes as a SIMD (Teddy) searcher alone, where the CPU has one (AVX2): without
    /// the automaton around it, its fixed cost per search is a fraction of the automaton's,
    /// which matters on short texts scanned one by one, and its "fat" variant (16 buckets)
    /// confirms fewer false candidates than the automaton's choice.
    packed: Option<aho_corasick::packed::Searcher>,
    entropy_threshold: f64,
}

/// The regexes the token readers replace, compiled as they were: kept as the tests' oracle.
#[cfg(test)]
fn compile(pattern: &str, name: &'static str) -> Result<Regex, DetectError> {
    Regex::new(pattern).map_err(|_| DetectError::Pattern(name))
}

impl Secrets {
    pub(crate) fn new(entropy_threshold: f64) -> Result<Secrets, DetectError> {
        Ok(Secrets {
            prefixes: AhoCorasickBuilder::new()
                .match_kind(MatchKind::LeftmostLongest)
                .build(PREFIXES.iter().map(|(k, _)| k))
                .map_err(|_| DetectError::Pattern("secret prefixes"))?,
            // No prefix is a prefix of another, so leftmost-first finds what leftmost-longest
            // finds.
            packed: aho_corasick::packed::Config::new()
                .match_kind(aho_corasick::packed::MatchKind::LeftmostFirst)
                .only_teddy(true)
                .only_teddy_fat(Some(true))
                .builder()
                .extend(PREFIXES.iter().map(|(k, _)| k))
                .build(),
            entropy_threshold,
        })
    }

    pub(crate) fn detect(
        &self,
        text: &str,
        enabled: EntitySet,
        out: &mut Vec<Candidate>,
        scratch: &mut Scratch,
    ) {
        let b = text.as_bytes();
        let first = out.len();
        // PEM headers wait until every END line is known, and `Bearer` values until every JWT
        // is; other hits are handled at once.
        let Scratch {
            pem_begins,
            pem_ends,
            bearers,
            tokens,
        } = scratch;
        // Teddy searches only haystacks of a minimum length (18 bytes here) and falls back to a
        // slower search below it: a short text is searched in a copy padded with NUL bytes,
        // which no prefix contains, so every hit lies inside the text.
        let mut padded = [0u8; PADDED];
        let hay = match b.len() < PADDED {
            true => {
                padded[..b.len()].copy_from_slice(b);
                &padded[..]
            }
            false => b,
        };
        let packed = self.packed.iter().flat_map(|p| {
            p.find_iter(hay)
                .map(|m| (m.start(), m.end(), m.pattern().as_usize()))
        });
        let automaton = self
            .packed
            .is_none()
            .then(|| {
                self.prefixes
                    .find_iter(b)
                    .map(|m| (m.start(), m.end(), m.pattern().as_usize()))
            })
            .into_iter()
            .flatten();
        for (start, end, pattern) in packed.chain(automaton) {
            match PREFIXES[pattern].1 {
                Trigger::AwsKeyId if enabled.contains(Entity::AwsAccessKeyId) => {
                    self.aws_key_id(b, start, out)
                }
                Trigger::Github if enabled.contains(Entity::GithubToken) => {
                    self.token(b, start, github_len, Entity::GithubToken, 0.95, out)
                }
                Trigger::Gitlab if enabled.contains(Entity::GitlabToken) => {
                    self.token(b, start, gitlab_len, Entity::GitlabToken, 0.95, out)
                }
                Trigger::Slack if enabled.contains(Entity::SlackToken) => {
                    self.token(b, start, slack_len, Entity::SlackToken, 0.9, out)
                }
                Trigger::SlackWebhook if enabled.contains(Entity::SlackWebhookUrl) => {
                    self.slack_webhook(b, start, out)
                }
                Trigger::Stripe if enabled.contains(Entity::StripeKey) => {
                    self.token(b, start, stripe_len, Entity::StripeKey, 0.95, out)
                }
                Trigger::Jwt if enabled.contains(Entity::Jwt) => self.jwt(b, start, out),
                Trigger::PemBegin if enabled.contains(Entity::PrivateKey) => pem_begins.push(start),
                Trigger::PemEnd => pem_ends.push(start),
                Trigger::Bearer if enabled.contains(Entity::GenericSecret) => {
                    bearers.push((start, end))
                }
                _ => {}
            }
        }
        for &start in pem_begins.iter() {
            self.pem(b, start, pem_ends, out);
        }
        // A value inside a JWT or a private key is not judged again as a generic secret: the
        // token outscores it, and its entropy and placeholder checks would read the whole token.
        token_spans(&out[first..], tokens);
        let in_token = |at: usize| tokens.iter().any(|&(s, e)| s <= at && at < e);
        for &(start, end) in bearers.iter() {
            self.bearer(b, start, end, in_token, out);
        }
        let generic = enabled.contains(Entity::GenericSecret);
        let aws = enabled.contains(Entity::AwsSecretAccessKey);
        if generic || aws {
            let mut state = Progress::default();
            for op in memchr::memchr2_iter(b'=', b':', b) {
                self.assignment(b, op, enabled, in_token, &mut state, out);
            }
        }
    }

    fn aws_key_id(&self, b: &[u8], start: usize, out: &mut Vec<Candidate>) {
        if start > 0 && b[start - 1].is_ascii_alphanumeric() {
            return;
        }
        let Some(len) = aws_key_id_len(window(b, start, 20)) else {
            return;
        };
        let end = start + len;
        if b.get(end).is_some_and(u8::is_ascii_alphanumeric) {
            return;
        }
        // AWS's documentation key (AKIAIOSFODNN7EXAMPLE) is reported as test data; a stand-in
        // such as AKIAXXXXXXXXXXXXXXXX is not reported at all.
        let test = contains_example(&b[start..end]);
        if !test && is_placeholder(&b[start + 4..end]) {
            return;
        }
        out.push(Candidate::new(Entity::AwsAccessKeyId, start, end, 0.95).test(test));
    }

    /// A prefixed token whose format is entirely described by `read` (which returns the length
    /// of the token at the start of its window, prefix included).
    fn token(
        &self,
        b: &[u8],
        start: usize,
        read: fn(&[u8]) -> Option<usize>,
        entity: Entity,
        score: f32,
        out: &mut Vec<Candidate>,
    ) {
        let token_char = |c: u8| c.is_ascii_alphanumeric() || c == b'_' || c == b'-';
        if start > 0 && token_char(b[start - 1]) {
            return;
        }
        let Some(len) = read(window(b, start, TOKEN_MAX)) else {
            return;
        };
        let end = start + len;
        if b.get(end).is_some_and(|&c| token_char(c)) {
            return;
        }
        let value = &b[start..end];
        let body = value
            .iter()
            .position(|&c| c == b'_' || c == b'-')
            .map_or(value, |i| &value[i + 1..]);
        if is_placeholder(body) {
            return;
        }
        let test = (entity == Entity::StripeKey && value[3..].starts_with(b"test_"))
            || contains_example(value);
        out.push(Candidate::new(entity, start, end, score).test(test));
    }

    fn slack_webhook(&self, b: &[u8], start: usize, out: &mut Vec<Candidate>) {
        let Some(len) = slack_webhook_len(window(b, start, TOKEN_MAX)) else {
            return;
        };
        let end = start + len;
        let last_segment = b[start..end]
            .rsplit(|&c| c == b'/')
            .next()
            .unwrap_or_default();
        if is_placeholder(last_segment) {
            return;
        }
        // Report the whole URL, scheme included, so redaction leaves no half of it behind.
        let mut from = start;
        for scheme in [&b"https://"[..], b"http://"] {
            if b[..start].ends_with(scheme) {
                from = start - scheme.len();
            }
        }
        out.push(Candidate::new(Entity::SlackWebhookUrl, from, end, 0.95));
    }

    fn jwt(&self, b: &[u8], start: usize, out: &mut Vec<Candidate>) {
        let seg_char = |c: u8| c.is_ascii_alphanumeric() || c == b'_' || c == b'-' || c == b'.';
        if start > 0 && seg_char(b[start - 1]) {
            return;
        }
        let Some(len) = jwt_len(window(b, start, JWT_MAX)) else {
            return;
        };
        let end = start + len;
        let value = &b[start..end];
        let mut parts = value.split(|&c| c == b'.');
        let (Some(header), Some(payload)) = (parts.next(), parts.next()) else {
            return;
        };
        let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let Ok(header) = engine.decode(header) else {
            return;
        };
        // A JWS/JWE header is a JSON object naming its algorithm; anything else starting with
        // "eyJ" is just base64 of some JSON.
        let has_alg = serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(&header)
            .is_ok_and(|h| h.get("alg").is_some_and(serde_json::Value::is_string));
        if !has_alg || engine.decode(payload).is_err() {
            return;
        }
        out.push(Candidate::new(Entity::Jwt, start, end, 0.95));
    }

    fn pem(&self, b: &[u8], start: usize, ends: &[usize], out: &mut Vec<Candidate>) {
        let Some(len) = pem_line_len(window(b, start, 80), b"-----BEGIN") else {
            return;
        };
        let body_start = start + len;
        // The first END line after the header, found among the automaton's hits by binary
        // search so that many BEGIN lines never rescan the same text.
        let i = ends.partition_point(|&e| e < body_start);
        let end_line = ends
            .get(i)
            .filter(|&&e| e - body_start <= PEM_MAX)
            .and_then(|&e| pem_line_len(window(b, e, 80), b"-----END").map(|len| e + len));
        let body_end = match end_line {
            Some(end) => end,
            // A key cut off before its END line (a truncated log line) is still a key: take
            // the base64 body that follows, including escaped newlines of JSON strings.
            None => {
                let mut e = body_start;
                while e < b.len()
                    && e - body_start < PEM_MAX
                    && (b[e].is_ascii_alphanumeric() || b"+/=\\ \t\r\n".contains(&b[e]))
                {
                    e += 1;
                }
                while e > body_start && b[e - 1].is_ascii_whitespace() {
                    e -= 1;
                }
                e
            }
        };
        // Documentation writes "-----BEGIN PRIVATE KEY-----\n...\n-----END …": a key has at
        // least a few dozen base64 characters. Count only the first ones.
        let body = &b[body_start..body_end.min(body_start + 256)];
        let base64_chars = body
            .iter()
            .filter(|c| c.is_ascii_alphanumeric() || **c == b'+' || **c == b'/')
            .count();
        if base64_chars < 40 {
            return;
        }
        let score = if end_line.is_some() { 0.99 } else { 0.85 };
        out.push(Candidate::new(Entity::PrivateKey, start, body_end, score));
    }

    /// Looks for a 40-character AWS secret access key shortly after an AWS keyword. Returns how
    /// far the text has been searched, so overlapping windows are not searched twice.
    fn aws_secret(
        &self,
        b: &[u8],
        start: usize,
        scanned: usize,
        out: &mut Vec<Candidate>,
    ) -> usize {
        // `=` may pad the key on the right, but on the left it is the assignment operator.
        let key_char = aws_key_char;
        let after_char = |c: u8| key_char(c) || c == b'=';
        let win_end = (start + AWS_CONTEXT_MAX).min(b.len());
        // Step back far enough to see a key straddling the previous window's end.
        let from = start.max(scanned.saturating_sub(41));
        if from >= win_end {
            return scanned.max(win_end);
        }
        let mut pos = from;
        while let Some((s, e)) = aws_key_run(&b[..win_end], pos) {
            let glued = (s > 0 && key_char(b[s - 1])) || b.get(e).is_some_and(|&c| after_char(c));
            if glued {
                // Skip the rest of this run: no 40-character key starts inside it.
                pos = s + 1;
                while pos < win_end && key_char(b[pos]) {
                    pos += 1;
                }
                continue;
            }
            let v = &b[s..e];
            // Base64 of 30 random bytes: mixed case and high entropy; a hex digest or a path
            // of lower-case words is neither.
            if v.iter().any(u8::is_ascii_uppercase)
                && v.iter().any(u8::is_ascii_lowercase)
                && shannon_entropy(v) >= 4.0
            {
                let test = contains_example(v);
                out.push(Candidate::new(Entity::AwsSecretAccessKey, s, e, 0.9).test(test));
            }
            pos = e;
        }
        win_end
    }

    /// `password = value`, `"api_key": "value"`, `SECRET: value`, `dbPassword := value`, … with
    /// the operator at `op`. Returns how far AWS secret keys have been searched for.
    fn assignment(
        &self,
        b: &[u8],
        op: usize,
        enabled: EntitySet,
        in_token: impl Fn(usize) -> bool,
        state: &mut Progress,
        out: &mut Vec<Candidate>,
    ) {
        let generic = enabled.contains(Entity::GenericSecret);
        let aws = enabled.contains(Entity::AwsSecretAccessKey);
        // An operator inside a value already read (`a=b` in a URL, base64 padding) starts
        // nothing: skipping it also keeps `password=password=…` linear.
        if op < state.value_end {
            return;
        }
        // The second character of `:=`, `=>`, `==`, and comparisons (`!=`, `<=`, `>=`) or
        // paths (`::`) are not assignments of their own.
        if op > 0 && b"=:!<>".contains(&b[op - 1]) {
            return;
        }
        let next = b.get(op + 1).copied();
        if next == Some(b'=') && b[op] == b'=' || next == Some(b':') {
            return;
        }
        let (ks, ke) = key_before(b, op);
        let (mut is_secret, mut is_aws) = (false, false);
        let mut from = 0;
        while let Some((s, e, word)) = next_key_word(&b[ks..ke], from) {
            from = e;
            if !keyword_boundaries(b, ks + s, ks + e) {
                continue;
            }
            match KEY_WORDS[word].1 {
                KeyWord::Secret => is_secret = true,
                KeyWord::Aws => is_aws = true,
                KeyWord::AwsSecret => (is_secret, is_aws) = (true, true),
            }
        }
        if aws && is_aws {
            state.aws_scanned = self.aws_secret(b, op, state.aws_scanned, out);
        }
        if !(generic && is_secret) {
            return;
        }
        let Some((vs, ve, quoted)) = assigned_value(b, op) else {
            return;
        };
        // A bare value cut at the length limit may end inside a multi-byte character.
        let ve = floor_boundary(b, ve);
        state.value_end = ve;
        if in_token(vs) {
            return;
        }
        let v = &b[vs..ve];
        if !quoted {
            // `password = get_password()`, `secret: config.secret`: code, not a value.
            if b.get(ve).is_some_and(|c| b"([".contains(c)) || is_code_reference(v) {
                return;
            }
        }
        // Entropy first: it is the cheaper test, and rules out most stand-ins on its own.
        if v.len() >= 6 && shannon_entropy(v) >= self.entropy_threshold && !is_placeholder(v) {
            out.push(Candidate::new(Entity::GenericSecret, vs, ve, 0.7));
        }
    }

    fn bearer(
        &self,
        b: &[u8],
        start: usize,
        end: usize,
        in_token: impl Fn(usize) -> bool,
        out: &mut Vec<Candidate>,
    ) {
        if start > 0 && b[start - 1].is_ascii_alphanumeric() {
            return;
        }
        let Some((vs, ve)) = bearer_value(b, end) else {
            return;
        };
        let value = &b[vs..ve];
        if in_token(vs)
            || b.get(ve).is_some_and(u8::is_ascii_alphanumeric)
            || shannon_entropy(value) < self.entropy_threshold
            || is_placeholder(value)
        {
            return;
        }
        out.push(Candidate::new(Entity::GenericSecret, vs, ve, 0.75));
    }
}

/// How many bytes from `w[from]` on are in `class` (none if `from` is past the end).
fn run(w: &[u8], from: usize, class: impl Fn(u8) -> bool) -> usize {
    w.get(from..)
        .unwrap_or_default()
        .iter()
        .take_while(|&&c| class(c))
        .count()
}

/// Whether `w[from..from + len]` exists and is all in `class`.
fn all_in(w: &[u8], from: usize, len: usize, class: impl Fn(u8) -> bool) -> bool {
    w.get(from..from + len)
        .is_some_and(|s| s.iter().all(|&c| class(c)))
}

/// `[A-Za-z0-9_\-]`, the characters of GitLab tokens (and of the text tokens are glued to).
fn word_or_dash(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c == b'-'
}

// The token readers below each replace an anchored regex, run on the window after a prefix hit,
// with a hand-written reader of the same fixed shape: on texts this short, a regex search's
// fixed cost (strategy choice, cache borrow, cold lazy-DFA tables) was most of each rule's cost.
// Each returns the length of the regex's (leftmost-first) match at the start of `w`; the tests
// check them against the regexes, match for match.

/// An AWS access key ID: `^(?:A3T[A-Z0-9]|AKIA|ASIA|ABIA|ACCA)[A-Z2-7]{16}`, always 20 bytes.
fn aws_key_id_len(w: &[u8]) -> Option<usize> {
    let w = w.get(..20)?;
    let prefix = matches!(&w[..4], b"AKIA" | b"ASIA" | b"ABIA" | b"ACCA")
        || (w.starts_with(b"A3T") && (w[3].is_ascii_uppercase() || w[3].is_ascii_digit()));
    let base32 = |c: &u8| c.is_ascii_uppercase() || (b'2'..=b'7').contains(c);
    (prefix && w[4..].iter().all(base32)).then_some(20)
}

/// A GitHub token: `^(?:gh[pousr]_[A-Za-z0-9]{36}|github_pat_[A-Za-z0-9_]{82})`, 40 or 93 bytes.
fn github_len(w: &[u8]) -> Option<usize> {
    if let [b'g', b'h', b'p' | b'o' | b'u' | b's' | b'r', b'_', ..] = w {
        return all_in(w, 4, 36, |c| c.is_ascii_alphanumeric()).then_some(40);
    }
    let fine = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    (w.starts_with(b"github_pat_") && all_in(w, 11, 82, fine)).then_some(93)
}

/// A GitLab personal access token:
/// `^glpat-[A-Za-z0-9_\-]{20,100}(?:\.[A-Za-z0-9_\-]{2,40}){0,3}`. No run can hold a dot, so
/// each greedy run takes all it can (up to its limit) and a dotted group follows only where a
/// run stopped at a dot: backtracking never finds another match.
fn gitlab_len(w: &[u8]) -> Option<usize> {
    if !w.starts_with(b"glpat-") {
        return None;
    }
    let n = run(w, 6, word_or_dash);
    if n < 20 {
        return None;
    }
    let mut end = 6 + n.min(100);
    for _ in 0..3 {
        if w.get(end) != Some(&b'.') {
            break;
        }
        let m = run(w, end + 1, word_or_dash);
        if m < 2 {
            break;
        }
        end += 1 + m.min(40);
    }
    Some(end)
}

/// A Slack token: `^xox[bpar]-[A-Za-z0-9]{1,40}(?:-[A-Za-z0-9]{1,64}){1,6}`. A first run longer
/// than 40 is followed by a letter or digit where the required `-` should be, whatever length
/// it is cut to, so it matches nothing; a later run longer than 64 ends the token at 64.
fn slack_len(w: &[u8]) -> Option<usize> {
    if !matches!(w, [b'x', b'o', b'x', b'b' | b'p' | b'a' | b'r', b'-', ..]) {
        return None;
    }
    let alnum = |c: u8| c.is_ascii_alphanumeric();
    let n = run(w, 5, alnum);
    if n == 0 || n > 40 {
        return None;
    }
    let mut end = 5 + n;
    let mut groups = 0;
    while groups < 6 && w.get(end) == Some(&b'-') {
        let m = run(w, end + 1, alnum);
        if m == 0 {
            break;
        }
        end += 1 + m.min(64);
        groups += 1;
    }
    (groups > 0).then_some(end)
}

/// A Slack webhook URL without its scheme:
/// `^hooks\.slack\.com/(?:services|workflows|triggers)/[A-Za-z0-9+/_\-]{20,160}`.
fn slack_webhook_len(w: &[u8]) -> Option<usize> {
    let rest = w.strip_prefix(b"hooks.slack.com/")?;
    let kind = [&b"services/"[..], b"workflows/", b"triggers/"]
        .into_iter()
        .find(|k| rest.starts_with(k))?;
    let from = w.len() - rest.len() + kind.len();
    let n = run(w, from, |c| word_or_dash(c) || c == b'+' || c == b'/');
    (n >= 20).then(|| from + n.min(160))
}

/// A Stripe secret or restricted key: `^[sr]k_(?:live|test)_[A-Za-z0-9]{10,247}`.
fn stripe_len(w: &[u8]) -> Option<usize> {
    if !matches!(w, [b's' | b'r', b'k', b'_', ..])
        || !(w[3..].starts_with(b"live_") || w[3..].starts_with(b"test_"))
    {
        return None;
    }
    let n = run(w, 8, |c| c.is_ascii_alphanumeric());
    (n >= 10).then(|| 8 + n.min(247))
}

/// A PEM private key's BEGIN or END line, `head` being `-----BEGIN` or `-----END`:
/// `^-----BEGIN[A-Z0-9 ]{0,40}PRIVATE KEY(?: BLOCK)?-----`. `PRIVATE KEY` and ` BLOCK` are
/// made of the label's own characters and `-` is not one, so a match's label run, `PRIVATE
/// KEY` included, is the whole run of label characters after `head`: it must end right at the
/// closing dashes, with `PRIVATE KEY` or `PRIVATE KEY BLOCK` preceded by at most 40 bytes.
fn pem_line_len(w: &[u8], head: &[u8]) -> Option<usize> {
    if !w.starts_with(head) {
        return None;
    }
    let from = head.len();
    let end = from
        + run(w, from, |c| {
            c.is_ascii_uppercase() || c.is_ascii_digit() || c == b' '
        });
    if !w[end..].starts_with(b"-----") {
        return None;
    }
    let label = &w[from..end];
    let fits = |name: &[u8]| label.ends_with(name) && label.len() - name.len() <= 40;
    (fits(b"PRIVATE KEY") || fits(b"PRIVATE KEY BLOCK")).then_some(end + 5)
}

/// `[A-Za-z0-9/+]`, the characters of an AWS secret access key (base64 without padding).
fn aws_key_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'/' || c == b'+'
}

/// The first 40 [`aws_key_char`]s in a row in `h` at or after `pos`: what the regex
/// `[A-Za-z0-9/+]{40}` finds with `find_at(h, pos)`.
fn aws_key_run(h: &[u8], pos: usize) -> Option<(usize, usize)> {
    let mut len = 0;
    for (i, &c) in h.iter().enumerate().skip(pos) {
        if !aws_key_char(c) {
            len = 0;
            continue;
        }
        len += 1;
        if len == 40 {
            return Some((i + 1 - 40, i + 1));
        }
    }
    None
}

/// The length of the JWT-shaped token at the start of `w`: three segments of base64url
/// characters joined by dots, the first starting with `eyJ` (base64 of `{"`) and at least five
/// long, the second at least two, the third possibly empty (an unsecured JWT). This is, match
/// for match, the regex `^eyJ[A-Za-z0-9_\-]{2,}\.[A-Za-z0-9_\-]{2,}\.[A-Za-z0-9_\-]*`, read by
/// hand: segments cannot hold a dot, so each greedy run ends where the next dot is.
fn jwt_len(w: &[u8]) -> Option<usize> {
    let segment = |from: usize| {
        w.get(from..)
            .unwrap_or_default()
            .iter()
            .take_while(|&&c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-')
            .count()
    };
    if !w.starts_with(b"eyJ") {
        return None;
    }
    let header = 3 + segment(3);
    if header < 5 || w.get(header) != Some(&b'.') {
        return None;
    }
    let payload = segment(header + 1);
    let dot = header + 1 + payload;
    if payload < 2 || w.get(dot) != Some(&b'.') {
        return None;
    }
    Some(dot + 1 + segment(dot + 1))
}

/// The spans of the JWTs and private keys among `candidates`, sorted and merged into `spans`.
fn token_spans(candidates: &[Candidate], spans: &mut Vec<(usize, usize)>) {
    spans.extend(
        candidates
            .iter()
            .filter(|c| matches!(c.entity, Entity::Jwt | Entity::PrivateKey))
            .map(|c| (c.start, c.end)),
    );
    spans.sort_unstable();
    spans.dedup_by(|next, kept| {
        let overlaps = next.0 < kept.1;
        if overlaps {
            kept.1 = kept.1.max(next.1);
        }
        overlaps
    });
}

/// The lists one call of [`Secrets::detect`] fills, kept between scans (see `scan::Scratch`).
#[derive(Debug, Default)]
pub(crate) struct Scratch {
    pem_begins: Vec<usize>,
    pem_ends: Vec<usize>,
    /// Where each `Bearer` keyword starts and ends.
    bearers: Vec<(usize, usize)>,
    /// The spans of the JWTs and private keys found, sorted and disjoint.
    tokens: Vec<(usize, usize)>,
}

impl Scratch {
    /// The JWTs and private keys the last scan found, sorted and disjoint: their base64 holds
    /// digits that are part of the encoding, not numbers written in the text, so the
    /// personal-data detectors skip them. (A number read there would overlap the token, and lose
    /// to it.)
    pub(crate) fn tokens(&self) -> &[(usize, usize)] {
        &self.tokens
    }

    pub(crate) fn clear(&mut self) {
        self.pem_begins.clear();
        self.pem_ends.clear();
        self.bearers.clear();
        self.tokens.clear();
    }

    /// Whether an unusually large text grew a list beyond what ordinary ones need.
    pub(crate) fn oversized(&self) -> bool {
        self.pem_begins.capacity()
            + self.pem_ends.capacity()
            + self.bearers.capacity()
            + self.tokens.capacity()
            > 4096
    }
}

/// The value assigned by the operator at `op` (`=>`, `:=`, `=` or `:`): after at most eight
/// spaces or tabs, 1 to 200 characters within double, single or back quotes and on one line, or
/// 1 to 200 bare characters up to white space, a quote or one of `;,&(){}[]<>`. Returns its
/// byte range and whether it was quoted. (Read by hand: a regex with capture groups cost more
/// than the rest of the secret rules together.)
fn assigned_value(b: &[u8], op: usize) -> Option<(usize, usize, bool)> {
    const MAX: usize = 200;
    let rest = &b[op..];
    let mut i = match rest {
        [b'=', b'>', ..] | [b':', b'=', ..] => 2,
        [b'=' | b':', ..] => 1,
        _ => return None,
    };
    let spaces = rest[i..]
        .iter()
        .take(8)
        .take_while(|&&c| c == b' ' || c == b'\t')
        .count();
    i += spaces;
    let &first = rest.get(i)?;
    if matches!(first, b'"' | b'\'' | b'`') {
        let body = &rest[i + 1..];
        let len = body
            .iter()
            .take(MAX + 1)
            .position(|&c| c == first || c == b'\r' || c == b'\n')?;
        return (len > 0 && body[len] == first).then_some((op + i + 1, op + i + 1 + len, true));
    }
    let bare = |c: u8| {
        !matches!(
            c,
            b' ' | b'\t'
                | b'\n'
                | 0x0B
                | 0x0C
                | b'\r'
                | b'"'
                | b'\''
                | b'`'
                | b';'
                | b','
                | b'&'
                | b'('
                | b')'
                | b'{'
                | b'}'
                | b'['
                | b']'
                | b'<'
                | b'>'
        )
    };
    let len = rest[i..].iter().take(MAX).take_while(|&&c| bare(c)).count();
    (len > 0).then_some((op + i, op + i + len, false))
}

/// The token after `Bearer` (which ends at `end`): one or more spaces or tabs, then 16 to 1024
/// characters of `A-Za-z0-9-._~+/`, then any `=` padding, all within 1100 bytes.
fn bearer_value(b: &[u8], end: usize) -> Option<(usize, usize)> {
    let w = window(b, end, 1100);
    let spaces = w.iter().take_while(|&&c| c == b' ' || c == b'\t').count();
    if spaces == 0 {
        return None;
    }
    let token =
        |c: &u8| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~' | b'+' | b'/');
    let len = w[spaces..]
        .iter()
        .take(1024)
        .take_while(|c| token(c))
        .count();
    if len < 16 {
        return None;
    }
    let pad = w[spaces + len..].iter().take_while(|&&c| c == b'=').count();
    Some((end + spaces, end + spaces + len + pad))
}

/// The largest char boundary at or below `i` in `b`, which is valid UTF-8.
fn floor_boundary(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && i > 0 && (b[i] & 0xC0) == 0x80 {
        i -= 1;
    }
    i
}

/// How far the assignment rule has read, so no byte is read again by a later operator.
#[derive(Debug, Default)]
struct Progress {
    /// End of the AWS secret key search windows so far.
    aws_scanned: usize,
    /// End of the last value read after an operator.
    value_end: usize,
}

/// The key name before the assignment operator at `op`: `password` in `password = x`,
/// `"password": x` and `[password] = x`, at most [`KEY_MAX`] bytes of letters, digits, `_`, `-`
/// and `.` (possibly none, or no letter: such a key holds no key word).
fn key_before(b: &[u8], op: usize) -> (usize, usize) {
    let spaces = b[..op]
        .iter()
        .rev()
        .take(8)
        .take_while(|&&c| c == b' ' || c == b'\t')
        .count();
    let mut end = op - spaces;
    if end > 0 && matches!(b[end - 1], b'"' | b'\'' | b'`' | b']') {
        end -= 1;
    }
    let len = b[..end]
        .iter()
        .rev()
        .take(KEY_MAX)
        .take_while(|&&c| KEY_NAME_BYTES[usize::from(c)])
        .count();
    (end - len, end)
}

/// Which bytes key names are made of: ASCII letters and digits, `_`, `-` and `.` (a table: the
/// walk back over a key name is the assignment rule's most frequent work).
static KEY_NAME_BYTES: [bool; 256] = {
    let mut t = [false; 256];
    let mut c = 0;
    while c < 256 {
        let b = c as u8;
        t[c] = b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.';
        c += 1;
    }
    t
};

/// For each byte, the [`KEY_WORDS`] (as bits) whose byte at `at` it is, ASCII case ignored.
const fn key_word_byte_table(at: usize) -> [u16; 256] {
    assert!(KEY_WORDS.len() <= 16, "one bit per word");
    let mut t = [0u16; 256];
    let mut k = 0;
    while k < KEY_WORDS.len() {
        let c = KEY_WORDS[k].0.as_bytes()[at];
        t[c.to_ascii_uppercase() as usize] |= 1 << k;
        t[c.to_ascii_lowercase() as usize] |= 1 << k;
        k += 1;
    }
    t
}

/// The key words that can start with a byte, and that can have a byte second: most key names
/// (and the "keys" before the colons of times, addresses and prose) have no place where both
/// agree, and are ruled out by two look-ups per byte.
static KEY_WORD_FIRST: [u16; 256] = key_word_byte_table(0);
static KEY_WORD_SECOND: [u16; 256] = key_word_byte_table(1);

/// The first of the [`KEY_WORDS`] in `key[from..]` (its range in `key` and its index), as a
/// leftmost-longest Aho-Corasick automaton of them, ASCII case ignored, finds it: of the words
/// starting leftmost, the longest. Called again from the end of each match, it finds what the
/// automaton's `find_iter` finds. (Read by hand: the automaton's fixed cost per search was most
/// of the cost of key names, which are short.)
fn next_key_word(key: &[u8], from: usize) -> Option<(usize, usize, usize)> {
    // Every word has at least three bytes.
    for i in from..key.len().saturating_sub(2) {
        let mut words =
            KEY_WORD_FIRST[usize::from(key[i])] & KEY_WORD_SECOND[usize::from(key[i + 1])];
        let mut longest: Option<(usize, usize)> = None;
        while words != 0 {
            let k = words.trailing_zeros() as usize;
            let w = KEY_WORDS[k].0.as_bytes();
            if longest.is_none_or(|(len, _)| w.len() > len)
                && key[i..]
                    .get(..w.len())
                    .is_some_and(|s| s.eq_ignore_ascii_case(w))
            {
                longest = Some((w.len(), k));
            }
            words &= words - 1;
        }
        if let Some((len, k)) = longest {
            return Some((i, i + len, k));
        }
    }
    None
}

/// `b[start..start + max]`, cut short at the end of the text.
fn window(b: &[u8], start: usize, max: usize) -> &[u8] {
    &b[start..(start + max).min(b.len())]
}

/// Whether a keyword hit is a key name of its own rather than part of a longer word: `token`
/// in `api_token` or `tokenSecret` counts, in `tokenizer` or `stoken` it does not.
fn keyword_boundaries(b: &[u8], start: usize, end: usize) -> bool {
    let first_upper = b[start].is_ascii_uppercase();
    let last_lower = b[end - 1].is_ascii_lowercase();
    if start > 0 {
        let p = b[start - 1];
        // camelCase: `dbPassword`.
        let camel = p.is_ascii_lowercase() && first_upper;
        if p.is_ascii_alphabetic() && !camel {
            return false;
        }
    }
    match b.get(end) {
        Some(&n) if n.is_ascii_lowercase() => false,
        Some(&n) if n.is_ascii_uppercase() => last_lower,
        _ => true,
    }
}

/// AWS and others mark their documentation credentials with "EXAMPLE".
fn contains_example(v: &[u8]) -> bool {
    // Compared only where an 'e' is (found with memchr): comparing seven bytes at every
    // position cost more than the token rules themselves.
    memchr::memchr2_iter(b'e', b'E', v).any(|i| {
        v.get(i..i + 7)
            .is_some_and(|w| w.eq_ignore_ascii_case(b"example"))
    })
}

/// A bare value that names something in code (`config.secret`, `self.password`) rather than
/// being a literal. Names are words joined by `_`, each of letters then digits (`oauth2_client`,
/// `SECRET_KEY`); a part mixing the two at random (`E6K7.ws6hFl4`) makes the value a password
/// with a dot in it.
fn is_code_reference(v: &[u8]) -> bool {
    let word = |w: &[u8]| {
        let letters = w.iter().take_while(|c| c.is_ascii_alphabetic()).count();
        w[letters..].iter().all(u8::is_ascii_digit)
    };
    let ident = |part: &[u8]| {
        part.first()
            .is_some_and(|c| c.is_ascii_alphabetic() || *c == b'_')
            && part.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'_')
            && part.split(|&c| c == b'_').all(word)
    };
    v.contains(&b'.') && v.split(|&c| c == b'.').all(ident)
        || v.starts_with(b"process.env")
        || v.starts_with(b"os.environ")
}

/// Substrings that mark a value as a stand-in (matched in lower case).
const DUMMY_PARTS: &[&[u8]] = &[
    b"changeme",
    b"change_me",
    b"change-me",
    b"changeit",
    b"example",
    b"placeholder",
    b"your_",
    b"your-",
    b"yourpassword",
    b"yoursecret",
    b"xxxx",
    b"****",
    b"....",
    b"redacted",
    b"dummy",
    b"replace_me",
    b"replaceme",
    b"insert_",
    b"fixme",
    b"todo",
    b"secret_here",
    b"password_here",
];

/// For each byte, the [`DUMMY_PARTS`] (as bits) whose byte at `at` it is, ASCII case ignored.
const fn dummy_byte_table(at: usize) -> [u32; 256] {
    let mut t = [0u32; 256];
    let mut k = 0;
    while k < DUMMY_PARTS.len() {
        let c = DUMMY_PARTS[k][at];
        t[c as usize] |= 1 << k;
        t[c.to_ascii_uppercase() as usize] |= 1 << k;
        t[c.to_ascii_lowercase() as usize] |= 1 << k;
        k += 1;
    }
    t
}

/// The parts that can have a byte first, second and third: together they leave few places
/// where a part is compared in full.
static DUMMY_FIRST: [u32; 256] = dummy_byte_table(0);
static DUMMY_SECOND: [u32; 256] = dummy_byte_table(1);
static DUMMY_THIRD: [u32; 256] = dummy_byte_table(2);

/// Whether `v` contains one of [`DUMMY_PARTS`], ASCII case ignored.
fn has_dummy_part(v: &[u8]) -> bool {
    // One pass, one table look-up per byte and table: the parts that can start at the byte
    // before last (`first`), at the one before that with the last byte second (`first_two`).
    let (mut first, mut first_two) = (0u32, 0u32);
    // Every part has at least four bytes: its third byte is never the text's last.
    for (j, &c) in v[..v.len().saturating_sub(1)].iter().enumerate() {
        let c = usize::from(c);
        let mut parts = first_two & DUMMY_THIRD[c];
        first_two = first & DUMMY_SECOND[c];
        first = DUMMY_FIRST[c];
        while parts != 0 {
            let p = DUMMY_PARTS[parts.trailing_zeros() as usize];
            if v[j - 2..]
                .get(..p.len())
                .is_some_and(|w| w.eq_ignore_ascii_case(p))
            {
                return true;
            }
            parts &= parts - 1;
        }
    }
    false
}

/// Whole values that stand in for a secret (matched ASCII case ignored), all 3 to 9 bytes long.
const DUMMY_WORDS: &[&[u8]] = &[
    b"password",
    b"passwd",
    b"secret",
    b"token",
    b"none",
    b"null",
    b"nil",
    b"true",
    b"false",
    b"undefined",
    b"empty",
    b"string",
    b"test",
    b"testing",
    b"admin",
    b"default",
    b"masked",
];

/// Values that stand in for a secret rather than being one: template variables, angle-bracket
/// hints, well-known dummy words, and runs of one or two characters.
pub(crate) fn is_placeholder(v: &[u8]) -> bool {
    if v.is_empty() {
        return true;
    }
    let starts = |p: &[u8]| v.starts_with(p);
    if starts(b"${")
        || starts(b"$(")
        || starts(b"{{")
        || starts(b"%(")
        || starts(b"#{")
        || starts(b"<")
        || v.ends_with(b"}}")
        || v.ends_with(b">")
        || (v.len() > 2 && v[0] == b'%' && v[v.len() - 1] == b'%')
        || (v.len() > 1 && v[0] == b'$' && (v[1].is_ascii_alphabetic() || v[1] == b'_'))
    {
        return true;
    }
    let has_dummy_part = has_dummy_part(v);
    // The words are 3 to 9 bytes long: most values are longer and compared with none.
    if has_dummy_part
        || (3..=9).contains(&v.len()) && DUMMY_WORDS.iter().any(|w| w.eq_ignore_ascii_case(v))
    {
        return true;
    }
    // At most two distinct bytes: stop at the first third one.
    let first = v[0];
    let Some(&second) = v.iter().find(|&&c| c != first) else {
        return true;
    };
    v.iter().all(|&c| c == first || c == second)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_spans_are_sorted_and_merged() {
        let mut spans = vec![];
        token_spans(
            &[
                Candidate::new(Entity::PrivateKey, 50, 90, 0.99),
                Candidate::new(Entity::PhoneNumber, 0, 10, 0.5),
                Candidate::new(Entity::Jwt, 20, 30, 0.95),
                Candidate::new(Entity::PrivateKey, 60, 120, 0.85),
                Candidate::new(Entity::Jwt, 30, 40, 0.95),
            ],
            &mut spans,
        );
        assert_eq!(spans, vec![(20, 30), (30, 40), (50, 120)]);
    }

    #[test]
    fn dummy_words_are_3_to_9_bytes_long() {
        assert!(DUMMY_WORDS.iter().all(|w| (3..=9).contains(&w.len())));
    }

    #[test]
    fn placeholders() {
        for p in [
            "${DB_PASSWORD}",
            "<password>",
            "changeme",
            "{{ secret }}",
            "%PASSWORD%",
            "$SECRET",
            "xxxxxxxx",
            "********",
            "your_api_key_here",
            "EXAMPLEKEY",
            "aaaaaaaa",
            "abababab",
        ] {
            assert!(is_placeholder(p.as_bytes()), "{p}");
        }
        for s in ["s3cr3t-Tr0ub4dor&3", "hunter22x", "wJalrXUtnFEMI"] {
            assert!(!is_placeholder(s.as_bytes()), "{s}");
        }
    }

    /// The two-byte filter finds every part an automaton finds.
    mod dummy_parts_match_an_automaton {
        use super::super::*;
        use proptest::prelude::*;

        fn text() -> impl Strategy<Value = Vec<u8>> {
            let mut units: Vec<&'static [u8]> = DUMMY_PARTS.to_vec();
            units.extend([
                &b"CHANGEME"[..],
                b"Example",
                b"x",
                b"X",
                b"*",
                b".",
                b"_",
                b"your",
                b"e",
                b"\xc3\xa9",
            ]);
            prop::collection::vec(prop::sample::select(units), 0..8)
                .prop_map(|parts| parts.concat())
        }

        proptest! {
            #[test]
            fn same_answer(t in text()) {
                let ac = AhoCorasickBuilder::new()
                    .ascii_case_insensitive(true)
                    .build(DUMMY_PARTS)
                    .expect("builds");
                prop_assert_eq!(has_dummy_part(&t), ac.is_match(&t));
            }
        }
    }

    /// The SIMD searcher, on padded short texts, finds what the automaton finds.
    mod packed_prefixes_match_the_automaton {
        use super::super::*;
        use proptest::prelude::*;

        /// Start, end and pattern of each hit.
        type Hits = Vec<(usize, usize, usize)>;

        fn hits(s: &Secrets, b: &[u8]) -> (Hits, Hits) {
            let mut padded = [0u8; PADDED];
            let hay = if b.len() < PADDED {
                padded[..b.len()].copy_from_slice(b);
                &padded[..]
            } else {
                b
            };
            let packed = s
                .packed
                .as_ref()
                .map(|p| {
                    p.find_iter(hay)
                        .map(|m| (m.start(), m.end(), m.pattern().as_usize()))
                        .collect()
                })
                .unwrap_or_else(|| {
                    s.prefixes
                        .find_iter(b)
                        .map(|m| (m.start(), m.end(), m.pattern().as_usize()))
                        .collect()
                });
            let automaton = s
                .prefixes
                .find_iter(b)
                .map(|m| (m.start(), m.end(), m.pattern().as_usize()))
                .collect();
            (packed, automaton)
        }

        fn text() -> impl Strategy<Value = Vec<u8>> {
            let mut units: Vec<&'static [u8]> =
                PREFIXES.iter().map(|(p, _)| p.as_bytes()).collect();
            units.extend([
                &b"A"[..],
                b"AK",
                b"gh",
                b"-",
                b"e",
                b"x",
                b" ",
                b"_",
                b"\xc3\xa9",
            ]);
            prop::collection::vec(prop::sample::select(units), 0..20)
                .prop_map(|parts| parts.concat())
        }

        proptest! {
            #[test]
            fn same_hits(t in text()) {
                let s = Secrets::new(3.0).expect("builds");
                let (packed, automaton) = hits(&s, &t);
                prop_assert_eq!(packed, automaton);
            }
        }
    }

    /// The token readers agree with the anchored regexes they replace, match for match.
    mod token_readers_match_their_regexes {
        use super::super::*;
        use proptest::prelude::*;

        /// A reader and the regex it replaced.
        type Pair = (&'static str, fn(&[u8]) -> Option<usize>);

        const READERS: &[Pair] = &[
            (
                r"(?-u)^(?:A3T[A-Z0-9]|AKIA|ASIA|ABIA|ACCA)[A-Z2-7]{16}",
                aws_key_id_len,
            ),
            (
                r"(?-u)^(?:gh[pousr]_[A-Za-z0-9]{36}|github_pat_[A-Za-z0-9_]{82})",
                github_len,
            ),
            (
                r"(?-u)^glpat-[A-Za-z0-9_\-]{20,100}(?:\.[A-Za-z0-9_\-]{2,40}){0,3}",
                gitlab_len,
            ),
            (
                r"(?-u)^xox[bpar]-[A-Za-z0-9]{1,40}(?:-[A-Za-z0-9]{1,64}){1,6}",
                slack_len,
            ),
            (
                r"(?-u)^hooks\.slack\.com/(?:services|workflows|triggers)/[A-Za-z0-9+/_\-]{20,160}",
                slack_webhook_len,
            ),
            (r"(?-u)^[sr]k_(?:live|test)_[A-Za-z0-9]{10,247}", stripe_len),
            (
                r"(?-u)^-----BEGIN[A-Z0-9 ]{0,40}PRIVATE KEY(?: BLOCK)?-----",
                pem_begin_len,
            ),
            (
                r"(?-u)^-----END[A-Z0-9 ]{0,40}PRIVATE KEY(?: BLOCK)?-----",
                pem_end_len,
            ),
        ];

        fn pem_begin_len(w: &[u8]) -> Option<usize> {
            pem_line_len(w, b"-----BEGIN")
        }

        fn pem_end_len(w: &[u8]) -> Option<usize> {
            pem_line_len(w, b"-----END")
        }

        /// Every reader against its regex, on `t` and on the windows the rules cut from it.
        fn check(t: &[u8]) {
            for (pattern, read) in READERS {
                let re = compile(pattern, "reader oracle").expect("compiles");
                check_with(&re, *read, t);
            }
        }

        fn check_with(re: &Regex, read: fn(&[u8]) -> Option<usize>, t: &[u8]) {
            for w in [
                t,
                window(t, 0, 20),
                window(t, 0, 80),
                window(t, 0, TOKEN_MAX),
            ] {
                assert_eq!(
                    read(w),
                    re.find(w).map(|m| m.end()),
                    "{re} on {:?}",
                    String::from_utf8_lossy(w)
                );
            }
        }

        /// Token prefixes, good and nearly good, each put before every generated body.
        const PREFIXES: &[&[u8]] = &[
            b"",
            b"AKIA",
            b"ASIA",
            b"A3T",
            b"A3TA",
            b"ACCA",
            b"ghp_",
            b"ghx_",
            b"github_pat_",
            b"glpat-",
            b"xoxb-",
            b"xoxr-",
            b"xox-",
            b"hooks.slack.com/services/",
            b"hooks.slack.com/workflows/",
            b"hooks.slack.com/triggers/",
            b"hooks.slack.com/other/",
            b"sk_live_",
            b"rk_test_",
            b"sk_prod_",
        ];

        /// Run lengths around the regexes' limits, short ones (separator groups) most often.
        fn count() -> impl Strategy<Value = usize> {
            prop_oneof![
                4 => 1..4usize,
                1 => 8..=12usize,
                1 => 14..=22usize,
                1 => 34..=42usize,
                1 => 60..=68usize,
                1 => 80..=102usize,
                1 => 155..=165usize,
                1 => 240..=250usize,
            ]
        }

        /// Runs of token characters of lengths around the limits, each after the first behind a
        /// separator (dashes and dots most often, as the formats join their parts with them).
        fn body() -> impl Strategy<Value = Vec<u8>> {
            let separator = prop::sample::select(vec![
                &b"-"[..],
                b"-",
                b"-",
                b".",
                b".",
                b".",
                b"",
                b"--",
                b"..",
                b"/",
                b"+",
                b" ",
                b"=",
                b"\xc3\xa9",
            ]);
            let word = prop::sample::select(vec![&b"a"[..], b"Z", b"Q", b"9", b"2", b"1", b"_"]);
            // The first run follows the prefix directly.
            let groups = prop::collection::vec((separator, word.clone(), count()), 0..10);
            (word, count(), groups).prop_map(|(first, n, groups)| {
                let mut t = first.repeat(n);
                for (separator, word, n) in groups {
                    t.extend_from_slice(separator);
                    t.extend(word.repeat(n));
                }
                t
            })
        }

        /// A PEM BEGIN or END line: a label of words, dashes and the words of `PRIVATE KEY
        /// BLOCK`, at lengths around the label's limit of 40.
        fn pem_text() -> impl Strategy<Value = Vec<u8>> {
            let head = prop::sample::select(vec![&b"-----BEGIN"[..], b"-----END", b"-----BEGIN "]);
            let unit = prop::sample::select(vec![
                &b"PRIVATE KEY"[..],
                b"PRIVATE KEY-----",
                b"PRIVATE KEY BLOCK-----",
                b" BLOCK",
                b"-----",
                b"-",
                b" ",
                b"RSA ",
                b"EC",
                b"A",
                b"9",
                b"a",
                b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789",
                b"\n",
            ]);
            (head, prop::collection::vec(unit, 0..8)).prop_map(|(head, units)| {
                let mut t = head.to_vec();
                for u in units {
                    t.extend_from_slice(u);
                }
                t
            })
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(2000))]

            #[test]
            fn same_tokens(body in body()) {
                for (pattern, read) in READERS {
                    let re = compile(pattern, "reader oracle").expect("compiles");
                    for prefix in PREFIXES {
                        check_with(&re, *read, &[prefix, &body[..]].concat());
                    }
                }
            }

            #[test]
            fn same_pem_lines(t in pem_text()) {
                check(&t);
            }
        }

        /// The first 40-byte run of `[A-Za-z0-9/+]` from every position, as `aws_secret`
        /// searches it.
        mod aws_key_runs {
            use super::super::super::*;
            use super::count;
            use proptest::prelude::*;

            fn text() -> impl Strategy<Value = Vec<u8>> {
                let unit = prop::sample::select(vec![
                    &b"a"[..],
                    b"Z",
                    b"0",
                    b"/",
                    b"+",
                    b"=",
                    b" ",
                    b"-",
                    b"\xc3\xa9",
                ]);
                prop::collection::vec((unit, count()), 0..6)
                    .prop_map(|runs| runs.into_iter().flat_map(|(u, n)| u.repeat(n)).collect())
            }

            proptest! {
                #[test]
                fn same_runs(t in text()) {
                    let re = compile(r"(?-u)[A-Za-z0-9/+]{40}", "aws secret").expect("compiles");
                    for pos in 0..=t.len() {
                        prop_assert_eq!(
                            aws_key_run(&t, pos),
                            re.find_at(&t, pos).map(|m| (m.start(), m.end()))
                        );
                    }
                }
            }
        }

        #[test]
        fn examples() {
            let a = |n: usize| "a".repeat(n);
            let mut texts = vec![
                "AKIAIOSFODNN7EXAMPLE".to_owned(),
                "A3T0IOSFODNN7EXAMPLE".to_owned(),
                "A3TaIOSFODNN7EXAMPLE".to_owned(),
                "AKIAIOSFODNN7EXAMPL".to_owned(),
                "AKIAIOSFODNN7EXAMP1E".to_owned(),
                format!("ghp_{}", a(36)),
                format!("ghp_{}", a(35)),
                format!("github_pat_{}_", a(81)),
                format!("glpat-{}", a(19)),
                format!("glpat-{}.ab.cd.ef.gh", a(20)),
                format!("glpat-{}.ab", a(101)),
                format!("glpat-{}.{}x", a(20), a(41)),
                format!("glpat-{}.a.bc", a(20)),
                "xoxb-1-2-3-4-5-6-7-8".to_owned(),
                format!("xoxb-{}-1", a(40)),
                format!("xoxb-{}-1", a(41)),
                format!("xoxp-1-{}-2", a(65)),
                "xoxa-1--2".to_owned(),
                "xoxb--abc-def".to_owned(),
                format!("hooks.slack.com/services/{}", a(19)),
                format!("hooks.slack.com/services/{}", a(161)),
                format!("sk_live_{}", a(9)),
                format!("rk_test_{}", a(248)),
                "-----BEGIN PRIVATE KEY-----".to_owned(),
                "-----BEGINPRIVATE KEY BLOCK-----".to_owned(),
                "-----END RSA PRIVATE KEY-----".to_owned(),
                format!("-----BEGIN{}PRIVATE KEY-----", "A".repeat(40)),
                format!("-----BEGIN{}PRIVATE KEY-----", "A".repeat(41)),
                format!("-----BEGIN{}PRIVATE KEY BLOCK-----", "A".repeat(40)),
                format!("-----BEGIN{}PRIVATE KEY BLOCK-----", "A".repeat(41)),
                format!("-----BEGIN{}PRIVATE KEY BLOCK-----", "A".repeat(34)),
                "-----BEGIN PRIVATE KEY PRIVATE KEY-----".to_owned(),
                "-----BEGIN PRIVATE KEY BLOCK BLOCK-----".to_owned(),
            ];
            texts.push(format!("{}\n", texts[0]));
            for t in texts {
                check(t.as_bytes());
            }
        }
    }

    mod jwt_reader_matches_its_regex {
        use super::super::*;
        use proptest::prelude::*;

        fn by_regex(w: &[u8]) -> Option<usize> {
            compile(
                r"(?-u)^eyJ[A-Za-z0-9_\-]{2,}\.[A-Za-z0-9_\-]{2,}\.[A-Za-z0-9_\-]*",
                "jwt",
            )
            .expect("compiles")
            .find(w)
            .map(|m| m.end())
        }

        fn text() -> impl Strategy<Value = Vec<u8>> {
            let unit = prop::sample::select(vec![
                &b"eyJ"[..],
                b"a",
                b"Zz9",
                b"-",
                b"_",
                b".",
                b"..",
                b" ",
                b"=",
                b"\xc3\xa9",
            ]);
            prop::collection::vec(unit, 0..14).prop_map(|parts| parts.concat())
        }

        proptest! {
            #[test]
            fn same_ends(t in text()) {
                prop_assert_eq!(jwt_len(&t), by_regex(&t));
            }
        }

        #[test]
        fn examples() {
            for t in [
                "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.abc",
                "eyJhbGciOiJub25lIn0.eyJ4Ijox.",
                "eyJhb.eyJ",
                "eyJ.ab.c",
                "eyJab.a.c",
                "eyJab..c",
                "eyJab.cd",
                "eyJab.cd.ef.gh",
                "xeyJab.cd.ef",
            ] {
                assert_eq!(jwt_len(t.as_bytes()), by_regex(t.as_bytes()), "{t}");
            }
        }
    }

    /// The key word reader finds what an Aho-Corasick automaton finds.
    mod key_words_match_an_automaton {
        use super::super::*;
        use proptest::prelude::*;

        /// Start, end and word of each match.
        fn by_automaton(key: &[u8]) -> Vec<(usize, usize, usize)> {
            AhoCorasickBuilder::new()
                .ascii_case_insensitive(true)
                .match_kind(MatchKind::LeftmostLongest)
                .build(KEY_WORDS.iter().map(|(k, _)| k))
                .expect("builds")
                .find_iter(key)
                .map(|m| (m.start(), m.end(), m.pattern().as_usize()))
                .collect()
        }

        fn by_reader(key: &[u8]) -> Vec<(usize, usize, usize)> {
            let mut found = vec![];
            let mut from = 0;
            while let Some(m) = next_key_word(key, from) {
                from = m.1;
                found.push(m);
            }
            found
        }

        fn key() -> impl Strategy<Value = Vec<u8>> {
            let mut units: Vec<Vec<u8>> = KEY_WORDS
                .iter()
                .flat_map(|(w, _)| [w.as_bytes().to_vec(), w.to_ascii_uppercase().into_bytes()])
                .collect();
            units.extend(
                [
                    &b"pass"[..],
                    b"Pa",
                    b"secret_",
                    b"SecretAccess",
                    b"access",
                    b"auth",
                    b"api",
                    b"tok",
                    b"aw",
                    b"s",
                    b"w",
                    b"_",
                    b"-",
                    b".",
                    b"1",
                    b"x",
                    b"\xc3\xa9",
                ]
                .map(<[u8]>::to_vec),
            );
            prop::collection::vec(prop::sample::select(units), 0..8)
                .prop_map(|parts| parts.concat())
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(2000))]

            #[test]
            fn same_matches(k in key()) {
                prop_assert_eq!(by_reader(&k), by_automaton(&k));
            }
        }

        #[test]
        fn examples() {
            for k in [
                "aws_secret_access_key",
                "SecretAccessKey",
                "secretaccesskeys",
                "access_token",
                "xaccess_token",
                "passwordpasswd",
                "api-key-token",
                "2026-11-05T09",
                "@[\\]^_",
                "pw",
            ] {
                assert_eq!(by_reader(k.as_bytes()), by_automaton(k.as_bytes()), "{k}");
            }
        }
    }

    #[test]
    fn keyword_boundary_rules() {
        let t = b"tokenizer api_token dbPassword PASSWORDS password:";
        let at = |needle: &str| {
            let n = needle.as_bytes();
            t.windows(n.len()).position(|w| w == n).unwrap_or(0)
        };
        assert!(!keyword_boundaries(t, at("tokenizer"), at("tokenizer") + 5));
        assert!(keyword_boundaries(t, at("token "), at("token ") + 5));
        assert!(keyword_boundaries(t, at("Password"), at("Password") + 8));
        assert!(!keyword_boundaries(t, at("PASSWORDS"), at("PASSWORDS") + 8));
        assert!(keyword_boundaries(t, at("password:"), at("password:") + 8));
    }

    /// The hand-written readers agree with the regexes they replace.
    mod readers_match_their_regexes {
        use super::super::*;
        use proptest::prelude::*;

        fn assignment_regex() -> Regex {
            compile(
                r#"(?-u)^(=>|:=|=|:)[ \t]{0,8}(?:"([^"\r\n]{1,200})"|'([^'\r\n]{1,200})'|`([^`\r\n]{1,200})`|([^\s"'`;,&(){}\[\]<>]{1,200}))"#,
                "assignment",
            )
            .expect("compiles")
        }

        fn by_regex(re: &Regex, b: &[u8]) -> Option<(usize, usize, bool)> {
            let caps = re.captures(window(b, 0, 300))?;
            let quoted = (2..=4).find_map(|i| caps.get(i));
            let v = quoted.or_else(|| caps.get(5))?;
            // `:=` or `=>` with nothing valid after them falls back to a one-character `=` or
            // `>` value, which is never reported; the reader reports nothing.
            if v.start() == 1 && b.starts_with(b":=") {
                return None;
            }
            Some((v.start(), v.end(), quoted.is_some()))
        }

        fn input() -> impl Strategy<Value = Vec<u8>> {
            let op = prop::sample::select(vec![&b"="[..], b":", b":=", b"=>", b"=="]);
            let unit = prop::sample::select(vec![
                &b" "[..],
                b"\t",
                b"\"",
                b"'",
                b"`",
                b"\n",
                b"\r",
                b"\x0b",
                b";",
                b"<",
                b"]",
                b"=",
                b"a",
                b"Z9",
                b"x/+",
                b"\xc3\xa9",
                b"abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz",
            ]);
            (op, prop::collection::vec(unit, 0..12)).prop_map(|(op, parts)| {
                let mut v = op.to_vec();
                for p in parts {
                    v.extend_from_slice(p);
                }
                v
            })
        }

        proptest! {
            #[test]
            fn assignment(b in input()) {
                let re = assignment_regex();
                prop_assert_eq!(assigned_value(&b, 0), by_regex(&re, &b));
            }

            #[test]
            fn bearer(b in prop::collection::vec(prop::sample::select(
                vec![b' ', b'\t', b'a', b'Z', b'0', b'-', b'.', b'~', b'=', b'!', b'/']), 0..1300)) {
                let re = compile(r"(?-u)^[ \t]+([A-Za-z0-9\-._~+/]{16,1024}=*)", "bearer")
                    .expect("compiles");
                let want = re
                    .captures(window(&b, 0, 1100))
                    .and_then(|c| c.get(1))
                    .map(|m| (m.start(), m.end()));
                prop_assert_eq!(bearer_value(&b, 0), want);
            }
        }

        #[test]
        fn long_values() {
            let re = assignment_regex();
            for n in [199, 200, 201, 250] {
                let v = "k".repeat(n);
                for b in [format!("= {v}"), format!("=\"{v}\""), format!(": '{v}'x")] {
                    assert_eq!(
                        assigned_value(b.as_bytes(), 0),
                        by_regex(&re, b.as_bytes()),
                        "{n} {b}"
                    );
                }
            }
            // Operators followed by more operator characters, quotes left open, nothing.
            for b in [
                ":== ",
                ":=\"abc",
                "=>'",
                ":",
                "= \t x",
                ":=         x",
                "=>>",
            ] {
                assert_eq!(
                    assigned_value(b.as_bytes(), 0),
                    by_regex(&re, b.as_bytes()),
                    "{b:?}"
                );
            }
        }
    }

    #[test]
    fn code_references() {
        assert!(is_code_reference(b"config.secret"));
        assert!(is_code_reference(b"process.env.TOKEN"));
        assert!(is_code_reference(b"settings.SECRET_KEY"));
        assert!(is_code_reference(b"oauth2_client.secret2"));
        assert!(is_code_reference(b"self._db_password"));
        assert!(!is_code_reference(b"Tr0ub4dor&3"));
        assert!(!is_code_reference(b"a.b-c"));
        // Letters and digits mixed at random: a password with a dot in it.
        assert!(!is_code_reference(b"E6K7.ws6hFl4"));
        assert!(!is_code_reference(b"e4l.ePTIQNWkuq2"));
    }
}
