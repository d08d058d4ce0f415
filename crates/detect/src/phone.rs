//! Phone number validation against libphonenumber's metadata, as shipped by the `phonenumber`
//! crate.
//!
//! The metadata (number patterns and possible lengths per region and number type) comes from
//! `phonenumber`, which tracks Google's libphonenumber releases. Matching is done here with
//! patterns compiled once, because `phonenumber::parse` looks every pattern up in a single
//! 100-entry LRU cache behind a global mutex: with more than a handful of regions in play the
//! cache thrashes (a parse took 10–20 µs) and every scanning thread queues on the lock. Each
//! pattern is compiled to a fully built DFA, which reads a number with one table step per digit;
//! a regex search's fixed cost (choosing a strategy, borrowing a cache, the lazy DFA's tables
//! going cold between numbers) was most of the time a phone number took.
//!
//! A number is valid, as in libphonenumber's `isValidNumber`, when its national significant
//! number matches the region's general pattern entirely and the pattern of at least one number
//! type (fixed line, mobile, toll free, …) with one of that type's possible lengths.

use std::sync::OnceLock;

use phonenumber::Metadata;
use phonenumber::metadata::{DATABASE, Descriptor};
use regex::{Regex, RegexBuilder};
use regex_automata::dfa::{Automaton, StartKind, dense};
use regex_automata::util::primitives::StateID;
use regex_automata::util::{start, syntax};
use regex_automata::{Anchored, MatchKind};

use crate::DetectError;

/// Country calling codes are at most three digits.
const CODES: usize = 1000;

pub(crate) struct PhoneRules {
    /// The configured regions, for numbers written in national format.
    regions: Vec<RegionRules>,
    /// For each configured region, the other regions sharing its calling code (Canada and the
    /// Caribbean for the US, the Crown Dependencies for the UK): a number dialled in national
    /// format is valid if it is valid in any of them, as in libphonenumber, which reads
    /// `(204) 723-1750` with default region US as +1 204 723 1750, a Canadian number.
    siblings: Vec<Siblings>,
    /// Whether a calling code exists, and its regions' rules, compiled on first use.
    known: Vec<bool>,
    codes: Vec<OnceLock<Vec<RegionRules>>>,
}

/// The regions sharing a configured region's calling code.
struct Siblings {
    /// The union of their general patterns, so that a number none of them can have (most of
    /// those tried) costs one search instead of one per region: the NANP has two dozen.
    any: Option<Rule>,
    regions: Vec<RegionRules>,
}

impl Siblings {
    fn valid(&self, nsn: &str) -> bool {
        self.any.as_ref().is_none_or(|a| a.matches(nsn))
            && self.regions.iter().any(|r| r.valid(nsn))
    }
}

struct RegionRules {
    id: String,
    code: u16,
    national_prefix: Option<Vec<u8>>,
    general: Rule,
    types: Vec<Rule>,
}

struct Rule {
    re: WholeMatch,
    lengths: Vec<u16>,
}

/// A pattern matched against a whole string.
enum WholeMatch {
    Dfa {
        dfa: Box<dense::DFA<Vec<u32>>>,
        start: StateID,
    },
    /// For a pattern whose DFA would be larger than [`DFA_LIMIT`] (none in the metadata today,
    /// as a test checks).
    Regex(Regex),
}

/// The most memory one pattern's DFA may take.
const DFA_LIMIT: usize = 1 << 20;

impl WholeMatch {
    /// Compiles a libphonenumber pattern, which is written for whole-string matching with
    /// insignificant whitespace and uses `\d` for ASCII digits.
    fn new(pattern: &str) -> Option<WholeMatch> {
        let pattern = format!("^(?:{pattern})$");
        let dfa = dense::Builder::new()
            .syntax(
                syntax::Config::new()
                    .unicode(false)
                    .utf8(false)
                    .ignore_whitespace(true),
            )
            .configure(
                dense::Config::new()
                    .start_kind(StartKind::Anchored)
                    // Every match, so that a shorter alternative never hides a whole-string one.
                    .match_kind(MatchKind::All)
                    .dfa_size_limit(Some(DFA_LIMIT))
                    .determinize_size_limit(Some(4 * DFA_LIMIT)),
            )
            .build(&pattern);
        if let Ok(dfa) = dfa
            && let Ok(start) = dfa.start_state(&start::Config::new().anchored(Anchored::Yes))
        {
            return Some(WholeMatch::Dfa {
                dfa: Box::new(dfa),
                start,
            });
        }
        RegexBuilder::new(&pattern)
            .ignore_whitespace(true)
            .unicode(false)
            .build()
            .ok()
            .map(WholeMatch::Regex)
    }

    fn is_match(&self, s: &str) -> bool {
        match self {
            WholeMatch::Dfa { dfa, start } => {
                let mut state = *start;
                for &b in s.as_bytes() {
                    state = dfa.next_state(state, b);
                    if dfa.is_dead_state(state) {
                        return false;
                    }
                }
                dfa.is_match_state(dfa.next_eoi_state(state))
            }
            WholeMatch::Regex(re) => re.is_match(s),
        }
    }
}

impl Rule {
    fn compile(d: &Descriptor, inherited: &[u16]) -> Option<Rule> {
        let re = WholeMatch::new(d.national_number().as_str())?;
        let own = d.possible_length();
        let lengths = if own.is_empty() { inherited } else { own };
        Some(Rule {
            re,
            lengths: lengths.to_vec(),
        })
    }

    /// One rule matching what any of `descs` matches (with any of their lengths).
    fn union(descs: &[&Descriptor]) -> Option<Rule> {
        if descs.is_empty() {
            return None;
        }
        let body = descs
            .iter()
            .map(|d| format!("(?:\n{}\n)", d.national_number().as_str()))
            .collect::<Vec<_>>()
            .join("|");
        let re = WholeMatch::new(&body)?;
        let mut lengths: Vec<u16> = descs
            .iter()
            .flat_map(|d| d.possible_length().iter().copied())
            .collect();
        if descs.iter().any(|d| d.possible_length().is_empty()) {
            lengths.clear();
        }
        lengths.sort_unstable();
        lengths.dedup();
        Some(Rule { re, lengths })
    }

    fn matches(&self, nsn: &str) -> bool {
        (self.lengths.is_empty() || self.lengths.contains(&(nsn.len() as u16)))
            && self.re.is_match(nsn)
    }
}

impl RegionRules {
    fn compile(meta: &Metadata) -> Option<RegionRules> {
        let d = meta.descriptors();
        let general = Rule::compile(d.general(), &[])?;
        let types = [
            d.fixed_line(),
            d.mobile(),
            d.toll_free(),
            d.premium_rate(),
            d.shared_cost(),
            d.personal_number(),
            d.voip(),
            d.pager(),
            d.uan(),
            d.voicemail(),
        ]
        .into_iter()
        .flatten()
        .filter_map(|t| Rule::compile(t, &general.lengths))
        .collect();
        Some(RegionRules {
            id: meta.id().to_owned(),
            code: meta.country_code(),
            national_prefix: meta.national_prefix().map(|p| p.as_bytes().to_vec()),
            general,
            types,
        })
    }

    /// Whether `nsn` (a national significant number) is a valid number of this region.
    fn valid(&self, nsn: &str) -> bool {
        self.general.matches(nsn) && self.types.iter().any(|t| t.matches(nsn))
    }

    /// The national significant numbers that `digits`, written in this region's national
    /// format, can stand for. Where the region has a national (trunk) prefix it must be written
    /// (`030 901820`, not `30 901820`), except in the NANP, where `415 555 2671` is the usual
    /// form.
    fn national_readings<'a>(&self, digits: &'a str) -> [Option<&'a str>; 2] {
        let Some(prefix) = self.national_prefix.as_deref() else {
            return [Some(digits), None];
        };
        let stripped = digits
            .as_bytes()
            .starts_with(prefix)
            .then(|| &digits[prefix.len()..]);
        [stripped, (self.code == 1).then_some(digits)]
    }

    /// The national significant number after a country code: written without the trunk
    /// prefix, or with it (`+44 (0)20 …`), which libphonenumber also accepts.
    fn international_number<'a>(&self, rest: &'a str) -> Option<&'a str> {
        if self.valid(rest) {
            return Some(rest);
        }
        let prefix = self.national_prefix.as_deref()?;
        rest.as_bytes()
            .starts_with(prefix)
            .then(|| &rest[prefix.len()..])
            .filter(|nsn| self.valid(nsn))
    }
}

impl PhoneRules {
    /// Compiles the rules of `regions` (ISO 3166-1 alpha-2 codes) now; other countries' rules
    /// are compiled when a number with their calling code is first seen.
    pub(crate) fn new(regions: &[String]) -> Result<PhoneRules, DetectError> {
        let regions = regions
            .iter()
            .map(|r| {
                let upper = r.to_ascii_uppercase();
                DATABASE
                    .by_id(upper.as_str())
                    .filter(|_| upper.len() == 2)
                    .and_then(RegionRules::compile)
                    .ok_or_else(|| DetectError::UnknownRegion(r.clone()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let siblings = regions
            .iter()
            .map(|r| {
                let metas: Vec<&Metadata> = DATABASE
                    .by_code(&r.code)
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|m| !regions.iter().any(|c| c.id == m.id()))
                    .collect();
                let generals: Vec<&Descriptor> =
                    metas.iter().map(|m| m.descriptors().general()).collect();
                Siblings {
                    any: Rule::union(&generals),
                    regions: metas.into_iter().filter_map(RegionRules::compile).collect(),
                }
            })
            .collect();
        let known = (0..CODES as u16)
            .map(|c| DATABASE.region(&c).is_some())
            .collect();
        Ok(PhoneRules {
            regions,
            siblings,
            known,
            codes: (0..CODES).map(|_| OnceLock::new()).collect(),
        })
    }

    pub(crate) fn has_regions(&self) -> bool {
        !self.regions.is_empty()
    }

    /// `Some(test)` if `digits` (ASCII digits written after a '+') is a valid number of some
    /// country; `test` marks numbers reserved for fiction (see [`is_fictional`]).
    pub(crate) fn international(&self, digits: &str) -> Option<bool> {
        // Calling codes form a prefix code: at most one of the three readings exists.
        let (code, rest) = (1..=3).find_map(|len| {
            let code: usize = digits.get(..len)?.parse().ok()?;
            self.known
                .get(code)
                .copied()
                .unwrap_or(false)
                .then(|| (code, &digits[len..]))
        })?;
        let rules = self.codes.get(code)?.get_or_init(|| {
            DATABASE
                .by_code(&(code as u16))
                .unwrap_or_default()
                .into_iter()
                .filter_map(RegionRules::compile)
                .collect()
        });
        rules.iter().find_map(|r| {
            r.international_number(rest)
                .map(|nsn| is_fictional(r.code, nsn))
        })
    }

    /// `Some(test)` if `digits` is a valid national-format number of a configured region, or of
    /// a region sharing its calling code.
    pub(crate) fn national(&self, digits: &str) -> Option<bool> {
        let nsn = |r: &RegionRules| {
            r.national_readings(digits)
                .into_iter()
                .flatten()
                .find(|nsn| r.valid(nsn))
        };
        let own = self
            .regions
            .iter()
            .find_map(|r| nsn(r).map(|n| (r.code, n)));
        own.or_else(|| {
            self.regions
                .iter()
                .zip(&self.siblings)
                .find_map(|(r, siblings)| {
                    // Read as the configured region reads it (its trunk prefix), valid in a
                    // sibling.
                    r.national_readings(digits)
                        .into_iter()
                        .flatten()
                        .find(|n| siblings.valid(n))
                        .map(|n| (r.code, n))
                })
        })
        .map(|(code, n)| is_fictional(code, n))
    }
}

/// Numbers reserved for fiction and documentation: NANP 555-0100 to 555-0199, and Ofcom's
/// drama ranges 07700 900000–900999 and 020 7946 0000–0999.
fn is_fictional(code: u16, nsn: &str) -> bool {
    match code {
        1 => nsn.len() == 10 && &nsn[3..6] == "555" && &nsn[6..8] == "01",
        44 => nsn.starts_with("7700900") || nsn.starts_with("2079460"),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> PhoneRules {
        let regions = ["US", "GB", "DE"].map(String::from);
        PhoneRules::new(&regions).expect("known regions")
    }

    #[test]
    fn national_and_international() {
        let r = rules();
        assert_eq!(r.national("4155552671"), Some(false));
        assert_eq!(r.national("14155552671"), Some(false));
        assert_eq!(r.national("02079460958"), Some(true));
        assert_eq!(r.national("030901820"), Some(false));
        assert_eq!(r.national("1234567"), None);
        // Germany's trunk prefix is written in national format.
        assert_eq!(r.national("30901820"), None);
        assert_eq!(r.international("14155552671"), Some(false));
        assert_eq!(r.international("442079460958"), Some(true));
        assert_eq!(r.international("4402079460958"), Some(true));
        assert_eq!(r.international("33142685300"), Some(false));
        assert_eq!(r.international("999123456789"), None);
        assert_eq!(r.international("1"), None);
    }

    #[test]
    fn national_numbers_of_regions_sharing_a_calling_code() {
        let r = rules();
        // Canada and the Dominican Republic share +1 with the US, Jersey +44 with the UK.
        assert_eq!(r.national("8679883180"), Some(false));
        assert_eq!(r.national("12047231750"), Some(false));
        assert_eq!(r.national("8497498707"), Some(false));
        assert_eq!(r.national("01534456789"), Some(false));
        // Read with the configured region's trunk prefix: Jersey's number needs its 0.
        assert_eq!(r.national("1534456789"), None);
        // Still no NANP area code starts with 0 or 1.
        assert_eq!(r.national("1047231750"), None);
        let us_only = PhoneRules::new(&["US".to_owned()]).expect("US");
        assert_eq!(us_only.national("2047231750"), Some(false));
        assert_eq!(us_only.national("01534456789"), None);
    }

    #[test]
    fn every_metadata_pattern_is_a_dfa() {
        let mut patterns = 0;
        for meta in DATABASE.iter() {
            let rules = RegionRules::compile(meta).expect("compiles");
            for rule in std::iter::once(&rules.general).chain(&rules.types) {
                assert!(matches!(rule.re, WholeMatch::Dfa { .. }), "{}", meta.id());
                patterns += 1;
            }
        }
        assert!(patterns > 1000, "{patterns}");
    }

    /// A pattern whose DFA would be too large is matched by a regex, with the same answers.
    #[test]
    fn oversized_patterns_fall_back_to_a_regex() {
        let exploding = WholeMatch::new("[01]*1[01]{24}").expect("compiles");
        assert!(matches!(exploding, WholeMatch::Regex(_)));
        let small = WholeMatch::new("[01]*1[01]{2}").expect("compiles");
        assert!(matches!(small, WholeMatch::Dfa { .. }));
        for (s, want) in [
            ("100", true),
            ("0100", true),
            ("011", false),
            ("1", false),
            ("", false),
        ] {
            assert_eq!(small.is_match(s), want, "{s}");
        }
        let long_yes = format!("1{}", "0".repeat(24));
        assert!(exploding.is_match(&long_yes));
        assert!(!exploding.is_match(&"0".repeat(30)));
        assert!(!exploding.is_match("12"));
    }

    #[test]
    fn unknown_regions_are_refused() {
        for bad in ["XX", "001", "usa", ""] {
            assert!(PhoneRules::new(&[bad.to_owned()]).is_err(), "{bad}");
        }
    }

    /// On pseudo-random digit strings, a number valid here is valid for `phonenumber` too, and
    /// the two agree on most numbers (`phonenumber` matches patterns as prefixes, not whole
    /// strings, so it accepts some that libphonenumber and this module reject; and it accepts
    /// national numbers without their trunk prefix, which this module does outside the NANP
    /// only).
    #[test]
    fn agrees_with_phonenumber_on_random_numbers() {
        let r = rules();
        let mut x: u64 = 0x2545_F491_4F6C_DD1D;
        let (mut ours_only, mut theirs_only, mut both) = (0, 0, 0);
        for i in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let len = 7 + (i % 6);
            let digits: String = format!("{x:020}")[..len].to_owned();
            let digits = if i % 2 == 0 {
                format!("0{}", &digits[1..])
            } else {
                digits
            };
            let ours = r.national(&digits).is_some();
            let valid_in = |reg: &str| {
                phonenumber::parse(reg.parse().ok(), &digits)
                    .is_ok_and(|n| phonenumber::is_valid(&n))
            };
            // Outside the NANP this module wants the trunk prefix written; `phonenumber` does not.
            let theirs =
                valid_in("US") || (digits.starts_with('0') && (valid_in("GB") || valid_in("DE")));
            match (ours, theirs) {
                (true, true) => both += 1,
                (true, false) => ours_only += 1,
                (false, true) => theirs_only += 1,
                _ => {}
            }
        }
        assert!(both > 1000, "both {both}");
        assert_eq!(
            ours_only, 0,
            "valid here only: {ours_only}; there only: {theirs_only}"
        );
        assert!(
            theirs_only * 10 < both,
            "valid there only: {theirs_only} of {both}"
        );
    }

    /// Every example number in the metadata validates, and agrees with `phonenumber` itself.
    #[test]
    fn metadata_examples_validate() {
        let r = rules();
        let mut checked = 0;
        for meta in DATABASE.iter() {
            let d = meta.descriptors();
            for desc in [d.fixed_line(), d.mobile(), d.toll_free()]
                .into_iter()
                .flatten()
            {
                let Some(example) = desc.example() else {
                    continue;
                };
                let full = format!("{}{example}", meta.country_code());
                let ours = r.international(&full).is_some();
                let theirs = phonenumber::parse(None, format!("+{full}"))
                    .is_ok_and(|n| phonenumber::is_valid(&n));
                if theirs {
                    assert!(ours, "{} example +{full}", meta.id());
                    checked += 1;
                }
            }
        }
        assert!(checked > 400, "only {checked} examples checked");
    }
}
