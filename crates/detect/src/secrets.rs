//! Secret detectors in the style of gitleaks: cloud and SaaS credentials recognised by their
//! literal prefixes, JWTs, PEM private keys, and high-entropy values assigned to
//! `password`/`secret`/`api_key`-like keys.
//!
//! One case-sensitive Aho-Corasick automaton finds every token prefix in a single pass; each hit
//! then runs its rule's anchored regex on a bounded window after the hit. Generic secrets and
//! AWS secret keys are found from the other end: every `=` or `:` (found with memchr) is an
//! assignment candidate whose key name, at most 64 bytes before it, is searched for words such as
//! `password` or `aws`. Text without prefixes or operators therefore costs two fast passes and
//! nothing else. Rules check that a token is not glued to the word before it before running any
//! regex; that, bounded windows, and AWS windows that never rescan what an earlier one covered,
//! keep the total work linear in the text even when it repeats a prefix millions of times.

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, AhoCorasickKind, MatchKind};
use base64::Engine as _;
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
    key_words: AhoCorasick,
    aws_key_id: Regex,
    aws_secret: Regex,
    github: Regex,
    gitlab: Regex,
    slack: Regex,
    slack_webhook: Regex,
    stripe: Regex,
    pem_begin: Regex,
    pem_end: Regex,
    entropy_threshold: f64,
}

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
            // Searched in short key names only: a DFA without a prefilter has the least
            // per-search overhead.
            key_words: AhoCorasickBuilder::new()
                .ascii_case_insensitive(true)
                .match_kind(MatchKind::LeftmostLongest)
                .kind(Some(AhoCorasickKind::DFA))
                .prefilter(false)
                .build(KEY_WORDS.iter().map(|(k, _)| k))
                .map_err(|_| DetectError::Pattern("secret key words"))?,
            aws_key_id: compile(
                r"(?-u)^(?:A3T[A-Z0-9]|AKIA|ASIA|ABIA|ACCA)[A-Z2-7]{16}",
                "aws key id",
            )?,
            aws_secret: compile(r"(?-u)[A-Za-z0-9/+]{40}", "aws secret")?,
            github: compile(
                r"(?-u)^(?:gh[pousr]_[A-Za-z0-9]{36}|github_pat_[A-Za-z0-9_]{82})",
                "github",
            )?,
            gitlab: compile(
                r"(?-u)^glpat-[A-Za-z0-9_\-]{20,100}(?:\.[A-Za-z0-9_\-]{2,40}){0,3}",
                "gitlab",
            )?,
            slack: compile(
                r"(?-u)^xox[bpar]-[A-Za-z0-9]{1,40}(?:-[A-Za-z0-9]{1,64}){1,6}",
                "slack",
            )?,
            slack_webhook: compile(
                r"(?-u)^hooks\.slack\.com/(?:services|workflows|triggers)/[A-Za-z0-9+/_\-]{20,160}",
                "slack webhook",
            )?,
            stripe: compile(r"(?-u)^[sr]k_(?:live|test)_[A-Za-z0-9]{10,247}", "stripe")?,
            pem_begin: compile(
                r"(?-u)^-----BEGIN[A-Z0-9 ]{0,40}PRIVATE KEY(?: BLOCK)?-----",
                "pem begin",
            )?,
            pem_end: compile(
                r"(?-u)^-----END[A-Z0-9 ]{0,40}PRIVATE KEY(?: BLOCK)?-----",
                "pem end",
            )?,
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
        // PEM headers wait until every END line is known; other hits are handled at once.
        let Scratch {
            pem_begins,
            pem_ends,
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
                    self.token(b, start, &self.github, Entity::GithubToken, 0.95, out)
                }
                Trigger::Gitlab if enabled.contains(Entity::GitlabToken) => {
                    self.token(b, start, &self.gitlab, Entity::GitlabToken, 0.95, out)
                }
                Trigger::Slack if enabled.contains(Entity::SlackToken) => {
                    self.token(b, start, &self.slack, Entity::SlackToken, 0.9, out)
                }
                Trigger::SlackWebhook if enabled.contains(Entity::SlackWebhookUrl) => {
                    self.slack_webhook(b, start, out)
                }
                Trigger::Stripe if enabled.contains(Entity::StripeKey) => {
                    self.token(b, start, &self.stripe, Entity::StripeKey, 0.95, out)
                }
                Trigger::Jwt if enabled.contains(Entity::Jwt) => self.jwt(b, start, out),
                Trigger::PemBegin if enabled.contains(Entity::PrivateKey) => pem_begins.push(start),
                Trigger::PemEnd => pem_ends.push(start),
                Trigger::Bearer if enabled.contains(Entity::GenericSecret) => {
                    self.bearer(b, start, end, out)
                }
                _ => {}
            }
        }
        for &start in pem_begins.iter() {
            self.pem(b, start, pem_ends, out);
        }
        let generic = enabled.contains(Entity::GenericSecret);
        let aws = enabled.contains(Entity::AwsSecretAccessKey);
        if generic || aws {
            let mut state = Progress::default();
            for op in memchr::memchr2_iter(b'=', b':', b) {
                self.assignment(b, op, generic, aws, &mut state, out);
            }
        }
    }

    fn aws_key_id(&self, b: &[u8], start: usize, out: &mut Vec<Candidate>) {
        if start > 0 && b[start - 1].is_ascii_alphanumeric() {
            return;
        }
        let Some(m) = self.aws_key_id.find(window(b, start, 20)) else {
            return;
        };
        let end = start + m.end();
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

    /// A prefixed token whose format is entirely described by `re` (anchored at the prefix).
    fn token(
        &self,
        b: &[u8],
        start: usize,
        re: &Regex,
        entity: Entity,
        score: f32,
        out: &mut Vec<Candidate>,
    ) {
        let token_char = |c: u8| c.is_ascii_alphanumeric() || c == b'_' || c == b'-';
        if start > 0 && token_char(b[start - 1]) {
            return;
        }
        let Some(m) = re.find(window(b, start, TOKEN_MAX)) else {
            return;
        };
        let end = start + m.end();
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
        let Some(m) = self.slack_webhook.find(window(b, start, TOKEN_MAX)) else {
            return;
        };
        let end = start + m.end();
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
        let Some(m) = self.pem_begin.find(window(b, start, 80)) else {
            return;
        };
        let body_start = start + m.end();
        // The first END line after the header, found among the automaton's hits by binary
        // search so that many BEGIN lines never rescan the same text.
        let i = ends.partition_point(|&e| e < body_start);
        let end_line = ends
            .get(i)
            .filter(|&&e| e - body_start <= PEM_MAX)
            .and_then(|&e| self.pem_end.find(window(b, e, 80)).map(|m| e + m.end()));
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
        let key_char = |c: u8| c.is_ascii_alphanumeric() || c == b'/' || c == b'+';
        let after_char = |c: u8| key_char(c) || c == b'=';
        let win_end = (start + AWS_CONTEXT_MAX).min(b.len());
        // Step back far enough to see a key straddling the previous window's end.
        let from = start.max(scanned.saturating_sub(41));
        if from >= win_end {
            return scanned.max(win_end);
        }
        let mut pos = from;
        while let Some(m) = self.aws_secret.find_at(&b[..win_end], pos) {
            let (s, e) = (m.start(), m.end());
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
        generic: bool,
        aws: bool,
        state: &mut Progress,
        out: &mut Vec<Candidate>,
    ) {
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
        // Most operators are the colons of times, MAC and IPv6 addresses and prose: a cheap
        // test rules out their "keys" before the automaton searches them.
        let Some((ks, ke)) = key_before(b, op).filter(|&(ks, ke)| may_hold_key_word(&b[ks..ke]))
        else {
            return;
        };
        let (mut is_secret, mut is_aws) = (false, false);
        for m in self.key_words.find_iter(&b[ks..ke]) {
            if !keyword_boundaries(b, ks + m.start(), ks + m.end()) {
                continue;
            }
            match KEY_WORDS[m.pattern().as_usize()].1 {
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

    fn bearer(&self, b: &[u8], start: usize, end: usize, out: &mut Vec<Candidate>) {
        if start > 0 && b[start - 1].is_ascii_alphanumeric() {
            return;
        }
        let Some((vs, ve)) = bearer_value(b, end) else {
            return;
        };
        let value = &b[vs..ve];
        if b.get(ve).is_some_and(u8::is_ascii_alphanumeric)
            || shannon_entropy(value) < self.entropy_threshold
            || is_placeholder(value)
        {
            return;
        }
        out.push(Candidate::new(Entity::GenericSecret, vs, ve, 0.75));
    }
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

/// The lists one call of [`Secrets::detect`] fills, kept between scans (see `scan::Scratch`).
#[derive(Debug, Default)]
pub(crate) struct Scratch {
    pem_begins: Vec<usize>,
    pem_ends: Vec<usize>,
}

impl Scratch {
    pub(crate) fn clear(&mut self) {
        self.pem_begins.clear();
        self.pem_ends.clear();
    }

    /// Whether an unusually large text grew a list beyond what ordinary ones need.
    pub(crate) fn oversized(&self) -> bool {
        self.pem_begins.capacity() + self.pem_ends.capacity() > 4096
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
/// and `.`, containing a letter.
fn key_before(b: &[u8], op: usize) -> Option<(usize, usize)> {
    let mut end = op;
    let mut spaces = 0;
    while end > 0 && matches!(b[end - 1], b' ' | b'\t') && spaces < 8 {
        end -= 1;
        spaces += 1;
    }
    if end > 0 && matches!(b[end - 1], b'"' | b'\'' | b'`' | b']') {
        end -= 1;
    }
    let key_char = |c: u8| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'.');
    let mut start = end;
    while start > 0 && end - start < KEY_MAX && key_char(b[start - 1]) {
        start -= 1;
    }
    b[start..end]
        .iter()
        .any(u8::is_ascii_alphabetic)
        .then_some((start, end))
}

/// Whether `key` can contain one of [`KEY_WORDS`]: each of them holds one of the letter pairs
/// `pa`, `pw`, `se`, `ap`, `to` or `aw` (ASCII case ignored), and a key without any is
/// not searched further.
fn may_hold_key_word(key: &[u8]) -> bool {
    // `| 0x20` lower-cases ASCII letters and turns no other byte into a letter.
    key.windows(2).any(|w| {
        matches!(
            [w[0] | 0x20, w[1] | 0x20],
            [b'p', b'a' | b'w'] | [b's', b'e'] | [b'a', b'p' | b'w'] | [b't', b'o']
        )
    })
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

/// The parts that can start with a byte, and that can have a byte second: together they leave
/// few places where a part is compared in full.
static DUMMY_FIRST: [u32; 256] = dummy_byte_table(0);
static DUMMY_SECOND: [u32; 256] = dummy_byte_table(1);

/// Whether `v` contains one of [`DUMMY_PARTS`], ASCII case ignored.
fn has_dummy_part(v: &[u8]) -> bool {
    // Every part has at least four bytes.
    for i in 0..v.len().saturating_sub(3) {
        let mut parts = DUMMY_FIRST[usize::from(v[i])] & DUMMY_SECOND[usize::from(v[i + 1])];
        while parts != 0 {
            let p = DUMMY_PARTS[parts.trailing_zeros() as usize];
            if v[i..]
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
    if has_dummy_part || DUMMY_WORDS.iter().any(|w| w.eq_ignore_ascii_case(v)) {
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

    #[test]
    fn every_key_word_passes_the_pair_test() {
        for (w, _) in KEY_WORDS {
            assert!(may_hold_key_word(w.as_bytes()), "{w}");
            assert!(may_hold_key_word(w.to_ascii_uppercase().as_bytes()), "{w}");
        }
        for k in ["2026-11-05T09", "1a", "db8", "name", "count", "@[\\]^_"] {
            assert!(!may_hold_key_word(k.as_bytes()), "{k}");
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
