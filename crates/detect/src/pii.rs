//! Personal-data detectors: e-mail addresses, phone numbers, payment cards, IBANs, US SSNs, IP
//! and MAC addresses.
//!
//! One pass over the bytes ([`Layout::fill`]) finds where anything can match: digit groups,
//! runs of hex digits and colons, two capitals before two digits (an IBAN's start), an '@'.
//! Only digits, ':' and '@' make that pass do any work, and it skips the rest eight bytes at a
//! time; it starts nothing inside a JWT or a private key the secret detectors found. The
//! detectors then run there and nowhere else. Every candidate is read by a hand-written reader
//! of a fixed shape (IBANs, cards, SSNs, IPv4, IPv6 and MAC addresses, e-mail addresses from
//! each '@', phone numbers from each '+' or digit group), each checked equal, match for match,
//! to the regex it replaced: on the short texts scanned one by one at ingest, a regex search's
//! fixed cost was most of its detector's time. Boundary checks and a validator follow.
//!
//! Boundaries are checked in code rather than with look-around (which the linear-time `regex`
//! crate lacks): a candidate must not be glued to more digits or letters, nor be one piece of a
//! longer dotted or dashed number such as a version string or an OID. Where a greedy match can
//! swallow a neighbouring number (`4111 1111 1111 1111 2024`), the shorter prefixes ending at a
//! group separator are tried too. A span already taken by a card, SSN, IBAN or IPv4 address is
//! not parsed again as a phone number, and neither are the digits of a run shaped like an IBAN
//! or a grouped card number whose check fails, nor a number glued to a word by `-`, `_` or `/`
//! (`ORD-2026-089396`, `Chrome/0.39.8880.38319`). A run of digits without separators is a phone
//! number only after a context word.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use crate::DetectError;
use crate::entity::{Entity, EntitySet};
use crate::phone::PhoneRules;
use crate::scan::Candidate;
use crate::{swar, validate};

pub(crate) struct Pii {
    phone: PhoneRules,
}

/// The regexes the hand-written readers below replaced, kept as the tests' oracles.
#[cfg(test)]
fn compile(pattern: &str, name: &'static str) -> Result<regex::bytes::Regex, DetectError> {
    regex::bytes::Regex::new(pattern).map_err(|_| DetectError::Pattern(name))
}

/// What the single pass over the text found worth a closer look.
#[derive(Debug, Default)]
pub(crate) struct Layout {
    at: bool,
    /// Runs of digits joined by at most two of ` .-()`, with at least four digits.
    numeric: Vec<Cluster>,
    /// Runs of hex digits, colons, dots and dashes shaped enough like an IPv6 or MAC address.
    hex: Vec<HexRun>,
    /// Offsets of two upper-case letters followed by two digits: where an IBAN can start.
    iban: Vec<usize>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct HexRun {
    start: usize,
    end: usize,
    /// Enough colons for IPv6: a `::` or seven single ones.
    ipv6: bool,
    /// Five colons or dashes, or two dots, as a MAC address has.
    mac: bool,
}

#[derive(Debug, Clone, Copy)]
struct Cluster {
    start: usize,
    end: usize,
    digits: usize,
    dots: usize,
    dashes: usize,
}

/// Bytes that can continue a digit group: `415 555-2671`, `(0)30 1234`, `10.0.0.1`.
fn joins_digits(c: u8) -> bool {
    matches!(c, b' ' | b'.' | b'-' | b'(' | b')')
}

/// Bytes of an IPv6 or MAC address.
fn hex_run_byte(c: u8) -> bool {
    HEX_RUN[usize::from(c)] != 0
}

/// The kinds of byte in an IPv6 or MAC address, as a table so that walking a run costs a load
/// per byte: 0 for none, then a hex digit, ':', '-' and '.'.
const HEX_RUN: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut c = 0;
    while c < 256 {
        if (c as u8).is_ascii_hexdigit() {
            t[c] = RUN_HEX;
        }
        c += 1;
    }
    t[b':' as usize] = RUN_COLON;
    t[b'-' as usize] = RUN_DASH;
    t[b'.' as usize] = RUN_DOT;
    t
};
const RUN_HEX: u8 = 1;
const RUN_COLON: u8 = 2;
const RUN_DASH: u8 = 3;
const RUN_DOT: u8 = 4;

const K_DIGIT: u8 = 1;
const K_COLON: u8 = 2;
const K_AT: u8 = 4;

/// The bytes that start work in [`Layout::fill`]; every other byte costs one table load.
const TRIGGERS: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut d = b'0';
    while d <= b'9' {
        t[d as usize] = K_DIGIT;
        d += 1;
    }
    t[b':' as usize] = K_COLON;
    t[b'@' as usize] = K_AT;
    t
};

/// The lists one call of [`Pii::detect`] fills, kept between scans (see `scan::Scratch`).
#[derive(Debug, Default)]
pub(crate) struct Scratch {
    layout: Layout,
    /// Every IBAN-shaped run, valid or not: `(start, end)`, sorted and disjoint.
    ibans: Vec<(usize, usize)>,
}

impl Scratch {
    pub(crate) fn clear(&mut self) {
        self.layout.clear();
        self.ibans.clear();
    }

    /// Whether an unusually large text grew a list beyond what ordinary ones need.
    pub(crate) fn oversized(&self) -> bool {
        let l = &self.layout;
        l.numeric.capacity() + l.hex.capacity() + l.iban.capacity() + self.ibans.capacity() > 4096
    }
}

/// The offset of the first byte at or after `from` that [`TRIGGERS`] marks (a digit, ':' or
/// '@'), or `b.len()`: the bytes 0x30 to 0x3A and 0x40, tested eight at a time.
fn next_trigger(b: &[u8], from: usize) -> usize {
    swar::position(b, from, |x| {
        swar::in_range(x, b'0', b':') | swar::in_range(x, b'@', b'@')
    })
}

/// How many ASCII digits `b` has in a row from `i`, counted eight bytes at a time.
fn digit_run(b: &[u8], i: usize) -> usize {
    swar::position(b, i, |x| !swar::in_range(x, b'0', b'9') & swar::HIGH) - i.min(b.len())
}

impl Layout {
    fn clear(&mut self) {
        self.at = false;
        self.numeric.clear();
        self.hex.clear();
        self.iban.clear();
    }

    #[cfg(test)]
    fn of(b: &[u8]) -> Layout {
        let mut l = Layout::default();
        l.fill(b, &[]);
        l
    }

    /// One pass over the bytes, so that detectors run on the few places that can match instead
    /// of each searching the whole text. Only digits, ':' and '@' start any work, and none
    /// inside an `opaque` span (sorted, disjoint).
    fn fill(&mut self, b: &[u8], opaque: &[(usize, usize)]) {
        let l = self;
        // Hex runs are examined once: none starts before this offset.
        let mut hex_done = 0;
        let mut i = 0;
        let mut opaque = opaque.iter().peekable();
        while i < b.len() {
            // Nothing starts inside an opaque span: continue after it.
            while let Some(&&(start, end)) = opaque.peek() {
                if i < start {
                    break;
                }
                if i < end {
                    i = end;
                    hex_done = hex_done.max(end);
                }
                opaque.next();
            }
            let Some(&byte) = b.get(i) else {
                break;
            };
            match TRIGGERS[usize::from(byte)] {
                0 => {
                    // Most bytes are not a trigger: skip to the next one eight at a time.
                    i = next_trigger(b, i + 1);
                }
                K_AT => {
                    l.at = true;
                    i += 1;
                }
                K_COLON => {
                    // An address has a hex digit or another colon next to its colons; a colon
                    // in prose or JSON (`"key": 1`) has neither.
                    let hexish = |c: &u8| c.is_ascii_hexdigit() || *c == b':';
                    if i >= hex_done
                        && (b.get(i + 1).is_some_and(hexish) || (i > 0 && hexish(&b[i - 1])))
                    {
                        l.hex_run_around(b, i, &mut hex_done);
                    }
                    i += 1;
                }
                _ => {
                    let start = i;
                    let mut c = Cluster {
                        start,
                        end: start,
                        digits: 0,
                        dots: 0,
                        dashes: 0,
                    };
                    // Digit runs joined by one or two joiners; joiners after the last run are
                    // counted too.
                    loop {
                        let run = digit_run(b, i);
                        c.digits += run;
                        c.end = i + run;
                        i = c.end;
                        let joiners = b[i..].iter().take(2).take_while(|&&j| joins_digits(j));
                        for &j in joiners {
                            c.dots += usize::from(j == b'.');
                            c.dashes += usize::from(j == b'-');
                            i += 1;
                        }
                        if i == c.end || !b.get(i).is_some_and(u8::is_ascii_digit) {
                            break;
                        }
                    }
                    // An IBAN starts with two upper-case letters and two check digits.
                    if start >= 2
                        && b[start - 2].is_ascii_uppercase()
                        && b[start - 1].is_ascii_uppercase()
                        && b.get(start + 1).is_some_and(u8::is_ascii_digit)
                    {
                        l.iban.push(start - 2);
                    }
                    // Digits touching hex letters, or with the dashes or dots of one, may be part
                    // of a MAC address (00-1A-2B-…, 00-11-22-33-44-55, 0011.2233.4455); colons
                    // are handled on their own.
                    let touches_hex = (start > 0 && hex_run_byte(b[start - 1]))
                        || b.get(c.end)
                            .is_some_and(|&n| n.is_ascii_hexdigit() || n == b':');
                    if start >= hex_done && (touches_hex || c.dashes >= 5 || c.dots >= 2) {
                        l.hex_run_around(b, start, &mut hex_done);
                    }
                    if c.digits >= 4 {
                        l.numeric.push(c);
                    }
                    // Resume right after the last digit: a joiner that ended the group may start
                    // the next one, and an '@' or ':' after it must still be seen.
                    i = c.end.max(start + 1);
                }
            }
        }
    }

    /// Records the maximal run of hex-address bytes around `i` if it is shaped enough like an
    /// IPv6 or MAC address (two colons, five dashes, or two dots).
    fn hex_run_around(&mut self, b: &[u8], i: usize, hex_done: &mut usize) {
        if i < *hex_done {
            return;
        }
        let mut start = i;
        while start > *hex_done && hex_run_byte(b[start - 1]) {
            start -= 1;
        }
        // Bytes of each kind, indexed by the kind.
        let mut count = [0usize; 5];
        let (mut double, mut prev) = (false, 0);
        let mut end = start;
        while let Some(&c) = b.get(end) {
            let kind = HEX_RUN[usize::from(c)];
            if kind == 0 {
                break;
            }
            count[usize::from(kind)] += 1;
            double |= kind == RUN_COLON && prev == RUN_COLON;
            prev = kind;
            end += 1;
        }
        let [_, _, colons, dashes, mut dots] = count;
        *hex_done = end.max(i + 1);
        // A full stop after the run ends the sentence: `address is 0011.2233.4455.`
        let mut last = end;
        while last > start && b[last - 1] == b'.' {
            last -= 1;
            dots -= 1;
        }
        let run = HexRun {
            start,
            end,
            ipv6: double || colons >= 7,
            mac: colons >= 5 || dashes >= 5 || dots == 2,
        };
        if run.ipv6 || run.mac {
            self.hex.push(run);
        }
    }
}

impl Pii {
    pub(crate) fn new(regions: &[String]) -> Result<Pii, DetectError> {
        Ok(Pii {
            phone: PhoneRules::new(regions)?,
        })
    }

    /// Runs the detectors that `enabled` asks for where the layout says they can match, and
    /// not from inside an `opaque` span (sorted and disjoint): the base64 of a token or key,
    /// whose digits are no numbers.
    pub(crate) fn detect(
        &self,
        text: &str,
        enabled: EntitySet,
        opaque: &[(usize, usize)],
        out: &mut Vec<Candidate>,
        scratch: &mut Scratch,
    ) {
        let b = text.as_bytes();
        let Scratch { layout, ibans } = scratch;
        layout.fill(b, opaque);
        if enabled.contains(Entity::EmailAddress) && layout.at {
            self.emails(b, out);
        }
        // IBANs first. Every run shaped like one (a country code, check digits and enough
        // letters and digits after them) is reported if its checksum holds, and either way its
        // digit groups are not then parsed as cards, SSNs or phone numbers: an IBAN with a typo
        // is still an account number.
        let mut after = 0;
        for &start in &layout.iban {
            if start >= after
                && let Some((end, valid)) = iban_at(b, start)
            {
                if valid && enabled.contains(Entity::IbanCode) {
                    out.push(Candidate::new(Entity::IbanCode, start, end, 0.95));
                }
                ibans.push((start, end));
                after = end;
            }
        }
        let phones = enabled.contains(Entity::PhoneNumber);
        for c in &layout.numeric {
            let in_iban = ibans
                .get(ibans.partition_point(|&(_, e)| e <= c.start))
                .is_some_and(|&(s, e)| s <= c.start && c.end <= e);
            if in_iban {
                continue;
            }
            // Include a '(' or '+' just before the first digit; end at the last digit.
            let from = c.start.saturating_sub(1);
            let hay = &b[..c.end];
            let first = out.len();
            // Cards and SSNs have nine digits or more: shorter clusters need no digit runs.
            if c.digits >= 9 {
                let runs = Runs::of(&b[c.start..c.end]);
                if enabled.contains(Entity::CreditCard) && c.digits >= 13 && runs.may_hold_card() {
                    self.cards(hay, b, from, ibans, out);
                }
                if enabled.contains(Entity::UsSsn) && runs.may_hold_ssn() {
                    self.ssns(hay, b, from, ibans, out);
                }
            }
            if enabled.contains(Entity::IpAddress) && c.dots >= 3 {
                self.ipv4s(hay, b, from, out);
            }
            // A lone date (2026-11-05) is the commonest seven-plus-digit group in logs.
            let lone_date = c.digits == 8 && looks_like_other_number(&b[c.start..c.end]);
            // A cluster that is one card, SSN or address holds no phone number either.
            let whole_taken = out[first..]
                .iter()
                .any(|t| !t.needs_context && t.start <= c.start && c.end <= t.end);
            if phones && c.digits >= 7 && !lone_date && !whole_taken {
                // A span already taken by a card, SSN or address is not also parsed as a phone
                // number: parsing is the most expensive check here.
                let taken = Taken {
                    found: out.len() - first,
                    ibans,
                };
                if b[from] == b'+' {
                    self.phones_intl(hay, b, from, first, &taken, out);
                }
                // Digits grouped as a card number are one (with a failing check digit, or
                // already found), never a phone number followed by more digits.
                let card_shaped = c.digits >= 13 && card_shaped(&b[c.start..c.end]);
                if self.phone.has_regions() && !card_shaped {
                    self.phones_national(hay, b, from, first, &taken, out);
                }
            }
        }
        for run in &layout.hex {
            let hay = &b[..run.end];
            if run.ipv6 && enabled.contains(Entity::IpAddress) {
                self.ipv6s(hay, b, run.start, out);
            }
            if run.mac && enabled.contains(Entity::MacAddress) {
                self.macs(hay, b, run.start, out);
            }
        }
    }

    fn emails(&self, b: &[u8], out: &mut Vec<Candidate>) {
        let mut pos = 0;
        while let Some((start, end)) = email_match(b, pos) {
            pos = end;
            // A local part glued to more local-part characters is longer than the 64 bytes the
            // pattern allows, and a domain glued to more name characters is cut short.
            if start > 0 && email_local_char(b[start - 1]) {
                continue;
            }
            if end < b.len() && (b[end].is_ascii_alphanumeric() || b[end] == b'-' || b[end] == b'_')
            {
                continue;
            }
            // `https://user@host/…`: the user part of a URL (often a token), not a mailbox.
            if b[..start].ends_with(b"://") {
                continue;
            }
            let value = &b[start..end];
            let Some(at) = value.iter().position(|&c| c == b'@') else {
                continue;
            };
            let (local, domain) = (&value[..at], &value[at + 1..]);
            if local.len() > 64
                || domain.len() > 253
                || local.ends_with(b".")
                || local.windows(2).any(|w| w == b"..")
            {
                continue;
            }
            let test = std::str::from_utf8(domain).is_ok_and(validate::is_reserved_email_domain);
            out.push(Candidate::new(Entity::EmailAddress, start, end, 0.9).test(test));
        }
    }

    /// Card numbers in `hay[from..]`; `b` is the whole text, for boundary checks.
    fn cards(
        &self,
        hay: &[u8],
        b: &[u8],
        from: usize,
        ibans: &[(usize, usize)],
        out: &mut Vec<Candidate>,
    ) {
        let mut pos = from;
        // End of the last card found here: the next one may follow it after a space.
        let mut last_end = None;
        while (pos == from || has_digits(hay, pos, 13))
            && let Some((start, m_end)) = word_match(hay, pos, card_at)
        {
            pos = start + 1;
            if !numeric_left_ok(b, start)
                || (continues_digit_groups(b, start, &b[start..m_end])
                    && last_end != Some(start - 1))
            {
                continue;
            }
            let groups = Digits::of(&b[start..m_end]);
            let found = (13..=groups.len.min(19)).rev().find_map(|n| {
                let end = start + groups.ends[n - 1];
                (groups.is_group_end(b, end)
                    && numeric_right_ok(b, end)
                    && !overlaps_any(ibans, start, end)
                    && validate::card_number(&groups.digits[..n]))
                .then_some((n, end))
            });
            if let Some((n, end)) = found {
                let test = validate::is_test_card(&groups.digits[..n]);
                out.push(Candidate::new(Entity::CreditCard, start, end, 0.9).test(test));
                pos = end;
                last_end = Some(end);
            }
        }
    }

    fn ssns(
        &self,
        hay: &[u8],
        b: &[u8],
        from: usize,
        ibans: &[(usize, usize)],
        out: &mut Vec<Candidate>,
    ) {
        let mut pos = from;
        while (pos == from || has_digits(hay, pos, 9))
            && let Some((start, end)) = word_match(hay, pos, ssn_at)
        {
            pos = end;
            // After a '+' the digits are an international phone number.
            if !numeric_left_ok(b, start)
                || !numeric_right_ok(b, end)
                || (start > 0 && b[start - 1] == b'+')
                || overlaps_any(ibans, start, end)
            {
                continue;
            }
            let span = &b[start..end];
            let d = Digits::of(span);
            if d.len != 9 || !validate::us_ssn(&d.digits[..9]) {
                continue;
            }
            let mut c = Candidate::new(Entity::UsSsn, start, end, 0.5);
            if span.contains(&b' ') {
                c.score = 0.4;
            } else if !span.contains(&b'-') {
                // Any nine-digit number passes the SSN rules a third of the time: report a bare
                // one only when the text says it is an SSN.
                c.score = 0.3;
                c.needs_context = true;
            }
            out.push(c);
        }
    }

    fn phones_intl(
        &self,
        hay: &[u8],
        b: &[u8],
        from: usize,
        first: usize,
        taken: &Taken<'_>,
        out: &mut Vec<Candidate>,
    ) {
        let mut pos = from;
        while (pos == from || has_digits(hay, pos, 7))
            && let Some((start, m_end)) = international_phone_match(hay, pos)
        {
            pos = start + 1;
            if start > 0 && (b[start - 1].is_ascii_alphanumeric() || b[start - 1] == b'+') {
                continue;
            }
            let d = Digits::of(&b[start..m_end]);
            let found = (7..=d.len.min(15)).rev().find_map(|n| {
                let end = start + d.ends[n - 1];
                if !d.is_group_end(b, end)
                    || !numeric_right_ok(b, end)
                    || taken.overlaps(&out[first..], start, end)
                    || !phone_shaped(&b[start..end])
                {
                    return None;
                }
                std::str::from_utf8(&d.digits[..n])
                    .ok()
                    .and_then(|digits| self.phone.international(digits))
                    .map(|test| (end, test))
            });
            if let Some((end, test)) = found {
                out.push(Candidate::new(Entity::PhoneNumber, start, end, 0.6).test(test));
                pos = end;
            }
        }
    }

    fn phones_national(
        &self,
        hay: &[u8],
        b: &[u8],
        from: usize,
        first: usize,
        taken: &Taken<'_>,
        out: &mut Vec<Candidate>,
    ) {
        let mut pos = from;
        while (pos == from || has_digits(hay, pos, 7))
            && let Some((start, m_end)) = national_phone_match(hay, pos)
        {
            pos = start + 1;
            if !numeric_left_ok(b, start)
                || (start > 0 && b[start - 1] == b'+')
                || glued_to_word(b, start)
            {
                continue;
            }
            let d = Digits::of(&b[start..m_end]);
            let found = (7..=d.len.min(12)).rev().find_map(|n| {
                let end = start + d.ends[n - 1];
                if !d.is_group_end(b, end)
                    || !numeric_right_ok(b, end)
                    || taken.overlaps(&out[first..], start, end)
                    || !phone_shaped(&b[start..end])
                    || looks_like_other_number(&b[start..end])
                {
                    return None;
                }
                std::str::from_utf8(&d.digits[..n])
                    .ok()
                    .and_then(|digits| self.phone.national(digits))
                    .map(|test| (end, test))
            });
            if let Some((end, test)) = found {
                let mut c = Candidate::new(Entity::PhoneNumber, start, end, 0.5).test(test);
                if b[start..end].iter().all(u8::is_ascii_digit) {
                    // A run of digits is a valid number somewhere as often as not (an order
                    // number, an ID): a phone number only when the text says so.
                    c.score = 0.4;
                    c.needs_context = true;
                }
                out.push(c);
                pos = end;
            }
        }
    }

    fn ipv4s(&self, hay: &[u8], b: &[u8], from: usize, out: &mut Vec<Candidate>) {
        let mut pos = from;
        while (pos == from || has_digits(hay, pos, 4))
            && let Some((start, end)) = word_match(hay, pos, ipv4_at)
        {
            pos = end;
            if !numeric_left_ok(b, start) || !numeric_right_ok(b, end) {
                continue;
            }
            let Some(ip) = std::str::from_utf8(&b[start..end])
                .ok()
                .and_then(|s| Ipv4Addr::from_str(s).ok())
            else {
                continue;
            };
            let test = validate::is_documentation_ipv4(ip);
            out.push(Candidate::new(Entity::IpAddress, start, end, 0.6).test(test));
        }
    }

    fn ipv6s(&self, hay: &[u8], b: &[u8], from: usize, out: &mut Vec<Candidate>) {
        let hexish = |c: u8| c.is_ascii_alphanumeric() || c == b'_' || c == b':' || c == b'.';
        let mut pos = from;
        while let Some((start, m_end)) = ipv6_match(hay, pos) {
            pos = m_end.max(start + 1);
            if start > 0 && hexish(b[start - 1]) {
                continue;
            }
            // "fe80::1: error" ends the match on the colon of the prose.
            let mut end = m_end;
            let mut ip = None;
            while end > start {
                if let Some(parsed) = std::str::from_utf8(&b[start..end])
                    .ok()
                    .and_then(|s| Ipv6Addr::from_str(s).ok())
                {
                    ip = Some(parsed);
                    break;
                }
                if b[end - 1] != b':' {
                    break;
                }
                end -= 1;
            }
            let Some(ip) = ip else { continue };
            if end < b.len()
                && (b[end].is_ascii_alphanumeric()
                    || b[end] == b'_'
                    || (b[end] == b':' && end == m_end))
            {
                continue;
            }
            // "::" alone is the unspecified address, and more often C++ or Rust than a network.
            if !b[start..end].iter().any(u8::is_ascii_hexdigit) {
                continue;
            }
            let test = validate::is_documentation_ipv6(ip);
            out.push(Candidate::new(Entity::IpAddress, start, end, 0.6).test(test));
        }
    }

    fn macs(&self, hay: &[u8], b: &[u8], from: usize, out: &mut Vec<Candidate>) {
        let mut pos = from;
        // The shortest MAC address, 0011.2233.4455, has 14 bytes.
        while hay.len() >= pos + 14
            && let Some((start, end)) = word_match(hay, pos, mac_at)
        {
            pos = end;
            // Six groups glued to a seventh are part of an IPv6 address or an EUI-64.
            let sep = |c: u8| c == b':' || c == b'-' || c == b'.';
            if (start >= 2 && sep(b[start - 1]) && b[start - 2].is_ascii_hexdigit())
                || (end + 1 < b.len() && sep(b[end]) && b[end + 1].is_ascii_hexdigit())
            {
                continue;
            }
            let mut hex = b[start..end].iter().filter(|c| c.is_ascii_hexdigit());
            // All-zero and broadcast addresses identify nobody.
            if hex.clone().all(|&c| c == b'0') || hex.all(|&c| c == b'f' || c == b'F') {
                continue;
            }
            out.push(Candidate::new(Entity::MacAddress, start, end, 0.6));
        }
    }
}

/// The leftmost span at or after `pos` that the regex
///
/// ```text
/// (?i)[0-9a-f]{0,4}(?::[0-9a-f]{0,4}){2,7}(?:\.[0-9]{1,3}){0,3}
/// ```
///
/// matches. Every match holds a colon at most four hex digits after its start, and everything
/// after the first two groups is optional, so the greedy reading from each colon is the match:
/// the hex digits just before the colon (up to four, none before `pos`), then as many groups
/// and dotted parts as there are.
fn ipv6_match(hay: &[u8], pos: usize) -> Option<(usize, usize)> {
    let hex_run = |from: usize, max: usize| {
        hay[from.min(hay.len())..]
            .iter()
            .take(max)
            .take_while(|c| c.is_ascii_hexdigit())
            .count()
    };
    memchr::memchr_iter(b':', hay.get(pos..)?).find_map(|colon| {
        let colon = pos + colon;
        let mut start = colon;
        while start > pos && colon - start < 4 && hay[start - 1].is_ascii_hexdigit() {
            start -= 1;
        }
        let (mut end, mut groups) = (colon, 0);
        while groups < 7 && hay.get(end) == Some(&b':') {
            end += 1 + hex_run(end + 1, 4);
            groups += 1;
        }
        if groups < 2 {
            return None;
        }
        for _ in 0..3 {
            let digits = hay[(end + 1).min(hay.len())..]
                .iter()
                .take(3)
                .take_while(|c| c.is_ascii_digit())
                .count();
            if hay.get(end) != Some(&b'.') || digits == 0 {
                break;
            }
            end += 1 + digits;
        }
        Some((start, end))
    })
}

/// The leftmost span at or after `pos` that the regex `\+[0-9][0-9 .()\-]{5,24}[0-9]` matches:
/// a '+', a digit, then as many digits and separators as the greedy repetition can take (at
/// most 25 before the last digit) given back down to the last digit among them.
fn international_phone_match(hay: &[u8], pos: usize) -> Option<(usize, usize)> {
    let body = |c: &u8| c.is_ascii_digit() || matches!(c, b' ' | b'.' | b'(' | b')' | b'-');
    memchr::memchr_iter(b'+', hay.get(pos..)?).find_map(|plus| {
        let start = pos + plus;
        if !hay.get(start + 1).is_some_and(u8::is_ascii_digit) {
            return None;
        }
        let rest = &hay[start + 2..];
        let run = rest.iter().take(25).take_while(|c| body(c)).count();
        // The last digit of the run, with at least five bytes before it.
        (5..run)
            .rev()
            .find(|&k| rest[k].is_ascii_digit())
            .map(|k| (start, start + 2 + k + 1))
    })
}

/// A byte of a word, as the regex `\b` (ASCII) sees it.
fn is_word(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

/// The leftmost span at or after `pos` that starts a word and that `at` reads there (its end,
/// which must end a word too). The fixed-shape readers below replace regexes of the form
/// `\b(?:…)\b` whose fixed cost per search was most of their detectors' time; each is checked
/// against its regex in the tests.
fn word_match(
    hay: &[u8],
    pos: usize,
    at: fn(&[u8], usize) -> Option<usize>,
) -> Option<(usize, usize)> {
    (pos..hay.len()).find_map(|s| {
        let starts_word = is_word(hay[s]) && (s == 0 || !is_word(hay[s - 1]));
        if !starts_word {
            return None;
        }
        at(hay, s)
            .filter(|&e| e == hay.len() || !is_word(hay[e]))
            .map(|e| (s, e))
    })
}

/// Whether `h[from..from + n]` are `n` bytes that `class` accepts.
fn all_of(h: &[u8], from: usize, n: usize, class: fn(&u8) -> bool) -> bool {
    h.get(from..from + n).is_some_and(|w| w.iter().all(class))
}

/// `(?:[0-9]{1,3}\.){3}[0-9]{1,3}` at `s`, followed by the end of a word (see [`word_match`]):
/// four runs of one to three digits joined by dots. A longer run cannot be cut to fit, since a
/// dot or the end of the word must follow it.
fn ipv4_at(h: &[u8], s: usize) -> Option<usize> {
    let mut i = s;
    for group in 0..4 {
        let run = h[i.min(h.len())..]
            .iter()
            .take(4)
            .take_while(|c| c.is_ascii_digit())
            .count();
        if !(1..=3).contains(&run) {
            return None;
        }
        i += run;
        if group < 3 {
            if h.get(i) != Some(&b'.') {
                return None;
            }
            i += 1;
        }
    }
    Some(i)
}

/// A card number's shape at `s`: card numbers are written ungrouped, in fours (the last group
/// shorter for 13 and 19 digits), or 4-6-5 / 4-6-4 (Amex, Diners), not as arbitrary digit
/// groups. This is the regex
///
/// ```text
/// [0-9]{13,19}|[0-9]{4}(?:[ \-][0-9]{4}){2,3}(?:[ \-][0-9]{1,4})?|[0-9]{4}[ \-][0-9]{6}[ \-][0-9]{4,5}
/// ```
///
/// followed by the end of a word (see [`word_match`]), with its alternatives and repetitions
/// tried in the order the regex engine prefers them.
fn card_at(h: &[u8], s: usize) -> Option<usize> {
    let digits_from = |from: usize| {
        h.get(from..)
            .unwrap_or_default()
            .iter()
            .take(20)
            .take_while(|c| c.is_ascii_digit())
            .count()
    };
    let ends_word = |e: usize| e == h.len() || !is_word(h[e]);
    let sep = |i: usize| matches!(h.get(i), Some(b' ' | b'-'));
    // Ungrouped: the whole run, when it ends a word.
    let run = digits_from(s);
    if (13..=19).contains(&run) && ends_word(s + run) {
        return Some(s + run);
    }
    if run != 4 || !sep(s + 4) {
        return None;
    }
    // In fours: up to three more groups of exactly four; the regex prefers three, then a short
    // last group, then none.
    let mut after = [0usize; 4];
    let mut groups = 0;
    while groups < 3 {
        let at = s + 4 + 5 * groups;
        if !(sep(at) && all_of(h, at + 1, 4, u8::is_ascii_digit)) {
            break;
        }
        groups += 1;
        after[groups] = at + 5;
    }
    for k in (2..=groups).rev() {
        let p = after[k];
        if sep(p) {
            let tail = digits_from(p + 1);
            if (1..=4).contains(&tail) && ends_word(p + 1 + tail) {
                return Some(p + 1 + tail);
            }
        }
        if ends_word(p) {
            return Some(p);
        }
    }
    // 4-6-4 and 4-6-5.
    if digits_from(s + 5) >= 6 && sep(s + 11) {
        let last = digits_from(s + 12);
        if (4..=5).contains(&last) && ends_word(s + 12 + last) {
            return Some(s + 12 + last);
        }
    }
    None
}

/// `[0-9]{3}-[0-9]{2}-[0-9]{4}|[0-9]{3} [0-9]{2} [0-9]{4}|[0-9]{9}` at `s`, tried in that
/// order with the end of a word after each (see [`word_match`]).
fn ssn_at(h: &[u8], s: usize) -> Option<usize> {
    let digits = |from: usize, n: usize| all_of(h, from, n, u8::is_ascii_digit);
    let ends_word = |e: usize| e == h.len() || !is_word(h[e]);
    for sep in [b'-', b' '] {
        if digits(s, 3)
            && h.get(s + 3) == Some(&sep)
            && digits(s + 4, 2)
            && h.get(s + 6) == Some(&sep)
            && digits(s + 7, 4)
            && ends_word(s + 11)
        {
            return Some(s + 11);
        }
    }
    (digits(s, 9) && ends_word(s + 9)).then_some(s + 9)
}

/// `[0-9a-f]{2}(?::[0-9a-f]{2}){5}|[0-9a-f]{2}(?:-[0-9a-f]{2}){5}|[0-9a-f]{4}\.[0-9a-f]{4}\.[0-9a-f]{4}`
/// (ASCII case ignored) at `s`, tried in that order with the end of a word after each (see
/// [`word_match`]).
fn mac_at(h: &[u8], s: usize) -> Option<usize> {
    let hex = |from: usize, n: usize| all_of(h, from, n, u8::is_ascii_hexdigit);
    let ends_word = |e: usize| e == h.len() || !is_word(h[e]);
    for sep in [b':', b'-'] {
        let groups =
            (0..6).all(|g| hex(s + 3 * g, 2) && (g == 0 || h.get(s + 3 * g - 1) == Some(&sep)));
        if groups && ends_word(s + 17) {
            return Some(s + 17);
        }
    }
    let dotted = hex(s, 4)
        && h.get(s + 4) == Some(&b'.')
        && hex(s + 5, 4)
        && h.get(s + 9) == Some(&b'.')
        && hex(s + 10, 4);
    (dotted && ends_word(s + 14)).then_some(s + 14)
}

fn email_local_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'%' | b'+' | b'-')
}

/// The leftmost span at or after `pos` shaped like an e-mail address: a local part of 1 to 64
/// characters starting with a letter or digit, an '@', one to eight DNS labels each followed by
/// a dot, and a top-level domain of 2 to 63 letters. This is, match for match, the regex
///
/// ```text
/// [A-Za-z0-9][A-Za-z0-9._%+\-]{0,63}@(?:[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?\.){1,8}[A-Za-z]{2,63}
/// ```
///
/// read by hand from each '@' (found with memchr) rather than searched for over the whole text:
/// the regex had no literal to start from, so it read every byte of every text with an '@'.
fn email_match(b: &[u8], pos: usize) -> Option<(usize, usize)> {
    memchr::memchr_iter(b'@', b.get(pos..)?).find_map(|at| {
        let at = pos + at;
        // The local part ends at the '@' and starts at its leftmost letter or digit that only
        // local-part characters separate from it, within 64 bytes and not before `pos`.
        let lowest = pos.max(at.saturating_sub(64));
        let mut run = at;
        while run > lowest && email_local_char(b[run - 1]) {
            run -= 1;
        }
        let start = (run..at).find(|&i| b[i].is_ascii_alphanumeric())?;
        Some((start, email_domain_end(b, at + 1)?))
    })
}

/// The end of the domain the e-mail regex of [`email_match`] reads from `d`: as many labels as
/// it can take (up to eight), then as many letters of a top-level domain as it can (up to 63),
/// giving back labels when no top-level domain follows them, as the regex backtracks.
fn email_domain_end(b: &[u8], d: usize) -> Option<usize> {
    let mut tld_starts = [0usize; 8];
    let mut labels = 0;
    let mut i = d;
    while labels < 8 {
        let label = b[i.min(b.len())..]
            .iter()
            .take(64)
            .take_while(|c| c.is_ascii_alphanumeric() || **c == b'-')
            .count();
        if !(1..=63).contains(&label)
            || b.get(i + label) != Some(&b'.')
            || !b[i].is_ascii_alphanumeric()
            || !b[i + label - 1].is_ascii_alphanumeric()
        {
            break;
        }
        i += label + 1;
        tld_starts[labels] = i;
        labels += 1;
    }
    tld_starts[..labels].iter().rev().find_map(|&t| {
        let letters = b[t.min(b.len())..]
            .iter()
            .take(63)
            .take_while(|c| c.is_ascii_alphabetic())
            .count();
        (letters >= 2).then_some(t + letters)
    })
}

/// The IBAN-shaped run starting at `start` (two upper-case letters and two digits there), if
/// there is one: the end of the run and whether it is a valid IBAN, that is exactly the
/// country's length of letters and digits, optionally grouped by single spaces or dashes,
/// passing the mod-97 check, and not glued to more letters or digits. A run of at least twelve
/// such characters that fails is still shaped like an account number.
fn iban_at(b: &[u8], start: usize) -> Option<(usize, bool)> {
    if start > 0 && (b[start - 1].is_ascii_alphanumeric() || b[start - 1] == b'_') {
        return None;
    }
    let len = validate::iban_length(b.get(start..start + 2)?)?;
    let mut compact = [0u8; 34];
    let mut n = 0;
    let mut i = start;
    while i < b.len() && n < len {
        let c = b[i];
        if c.is_ascii_uppercase() || c.is_ascii_digit() {
            compact[n] = c;
            n += 1;
            i += 1;
        } else if (c == b' ' || c == b'-')
            && n >= 4
            && b.get(i + 1)
                .is_some_and(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
        {
            i += 1;
        } else {
            break;
        }
    }
    let glued = b
        .get(i)
        .is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'_');
    let valid = n == len && !glued && validate::iban(&compact[..n]);
    (valid || n >= 12).then_some((i, valid))
}

/// The leftmost span at or after `pos` shaped like a nationally written phone number: digit
/// groups of 2 to 8 joined by single spaces, dots or dashes (`030 901820`, `415.555.2671`,
/// `0707875 0819`), after a first group of up to 8 digits or of up to 5 in parentheses
/// (`(415) 555-2671`), or one run of 7 to 12 digits. This is, match for match, the regex
///
/// ```text
/// (?:\([0-9]{1,5}\)[ .\-]?|\b[0-9]{1,8}[ .\-])[0-9]{2,8}(?:[ .\-][0-9]{2,8}){0,3}|\b[0-9]{7,12}\b
/// ```
///
/// read by hand: the regex engine's fixed cost per search was most of the phone detector's.
fn national_phone_match(hay: &[u8], pos: usize) -> Option<(usize, usize)> {
    (pos..hay.len()).find_map(|s| national_phone_at(hay, s).map(|e| (s, e)))
}

/// The end of the span [`national_phone_match`] reads at `s`, if it matches there.
fn national_phone_at(hay: &[u8], s: usize) -> Option<usize> {
    let sep = |i: usize| hay.get(i).is_some_and(|&c| matches!(c, b' ' | b'.' | b'-'));
    let word = |i: usize| {
        hay.get(i)
            .is_some_and(|&c| c.is_ascii_alphanumeric() || c == b'_')
    };
    // Digits from `i`, counted up to 13: enough to tell every case below apart.
    let run = |i: usize| {
        hay.get(i..)
            .unwrap_or_default()
            .iter()
            .take(13)
            .take_while(|c| c.is_ascii_digit())
            .count()
    };
    // A group of 2 to 8 digits at `p`, then up to three more after single separators.
    let groups = |p: usize| {
        let len = run(p);
        if len < 2 {
            return None;
        }
        let mut q = p + len.min(8);
        let mut more = 0;
        while len <= 8 && more < 3 && sep(q) {
            let next = run(q + 1);
            if next < 2 {
                break;
            }
            q += 1 + next.min(8);
            more += 1;
            if next > 8 {
                break;
            }
        }
        Some(q)
    };
    match hay[s] {
        b'(' => {
            let k = run(s + 1);
            if !(1..=5).contains(&k) || hay.get(s + 1 + k) != Some(&b')') {
                return None;
            }
            let p = s + 2 + k;
            if sep(p) { groups(p + 1) } else { groups(p) }
        }
        c if c.is_ascii_digit() && (s == 0 || !word(s - 1)) => {
            let len = run(s);
            let grouped = (len <= 8 && sep(s + len))
                .then(|| groups(s + len + 1))
                .flatten();
            grouped.or_else(|| ((7..=12).contains(&len) && !word(s + len)).then_some(s + len))
        }
        _ => None,
    }
}

/// Whether a whole cluster is grouped as card numbers are, by single spaces or dashes: 4-4-4,
/// 4-4-4-4, either followed by a group of 1 to 4, or 4-6-4 and 4-6-5. (The regex
/// `^(?:[0-9]{4}(?:[ \-][0-9]{4}){2,3}(?:[ \-][0-9]{1,4})?|[0-9]{4}[ \-][0-9]{6}[ \-][0-9]{4,5})$`.)
fn card_shaped(span: &[u8]) -> bool {
    let mut lens = [0usize; 5];
    let mut n = 0;
    let mut run = 0;
    for &c in span {
        if c.is_ascii_digit() {
            run += 1;
            continue;
        }
        if run == 0 || !(c == b' ' || c == b'-') || n == lens.len() {
            return false;
        }
        lens[n] = run;
        n += 1;
        run = 0;
    }
    if run == 0 || n == lens.len() {
        return false;
    }
    lens[n] = run;
    matches!(
        lens[..=n],
        [4, 4, 4] | [4, 4, 4, 1..=4] | [4, 4, 4, 4, 1..=4] | [4, 6, 4 | 5]
    )
}

/// Whether `hay[pos..]` holds at least `n` digits: fewer cannot make the next candidate, and
/// counting them is cheaper than a regex search that finds nothing. (From the start of a
/// cluster it does: the detectors run only on clusters with enough digits, so their searches
/// count only once they have moved past it.)
fn has_digits(hay: &[u8], pos: usize, n: usize) -> bool {
    let mut count = 0;
    for &c in hay.get(pos..).unwrap_or_default() {
        count += usize::from(c.is_ascii_digit());
        if count >= n {
            return true;
        }
    }
    false
}

/// Whether `start..end` overlaps one of `spans` (sorted and disjoint).
fn overlaps_any(spans: &[(usize, usize)], start: usize, end: usize) -> bool {
    let i = spans.partition_point(|&(_, e)| e <= start);
    spans.get(i).is_some_and(|&(s, _)| s < end)
}

/// Whether a grouped card candidate `span` at `start` continues the digit groups before it
/// (`4070 [3474 3569 5394 106]`): a group of three or more digits and the separator the
/// candidate uses come right before it, so the card-shaped run is longer than the candidate.
fn continues_digit_groups(b: &[u8], start: usize, span: &[u8]) -> bool {
    let Some(sep) = span.iter().copied().find(|c| !c.is_ascii_digit()) else {
        return false;
    };
    start >= 4 && b[start - 1] == sep && b[start - 4..start - 1].iter().all(u8::is_ascii_digit)
}

/// Whether a number at `start` is glued to the word before it by a `-`, `_`, `/` or `\`: one
/// part of an identifier, path or version (`ORD-2026-089396`, `Chrome/0.39.8880.38319`).
fn glued_to_word(b: &[u8], start: usize) -> bool {
    start >= 2
        && matches!(b[start - 1], b'-' | b'_' | b'/' | b'\\')
        && b[start - 2].is_ascii_alphanumeric()
}

/// The lengths of the digit runs of a cluster (the first [`Runs::MAX`] of them), so that the
/// card and SSN searches run only where their digit groups can be.
struct Runs {
    lens: [u8; Runs::MAX],
    n: usize,
    /// More runs than recorded: every check answers yes.
    overflow: bool,
}

impl Runs {
    const MAX: usize = 12;

    fn of(span: &[u8]) -> Runs {
        let mut r = Runs {
            lens: [0; Runs::MAX],
            n: 0,
            overflow: false,
        };
        let mut len = 0usize;
        for &c in span.iter().chain(std::iter::once(&b' ')) {
            if c.is_ascii_digit() {
                len += 1;
            } else if len > 0 {
                if r.n == Runs::MAX {
                    r.overflow = true;
                    break;
                }
                r.lens[r.n] = len.min(255) as u8;
                r.n += 1;
                len = 0;
            }
        }
        r
    }

    fn lens(&self) -> &[u8] {
        &self.lens[..self.n]
    }

    /// Whether a card number can be here: 13 to 19 digits in one run, or a group of four
    /// followed by one of four or six (4-4-4-4, 4-6-5).
    fn may_hold_card(&self) -> bool {
        self.overflow
            || self.lens().iter().any(|l| (13..=19).contains(l))
            || self
                .lens()
                .windows(2)
                .any(|w| w[0] == 4 && (w[1] == 4 || w[1] == 6))
    }

    /// Whether an SSN can be here: nine digits in one run, or runs of three, two and four.
    fn may_hold_ssn(&self) -> bool {
        self.overflow || self.lens().contains(&9) || self.lens().windows(3).any(|w| w == [3, 2, 4])
    }
}

/// The digits of a candidate span and where each one ends, so shorter candidates ending at a
/// digit group boundary can be tried without re-reading the span.
struct Digits {
    digits: [u8; 20],
    /// `ends[k]` is the offset (from the span start) just past digit `k`.
    ends: [usize; 20],
    len: usize,
}

impl Digits {
    fn of(span: &[u8]) -> Digits {
        let mut d = Digits {
            digits: [0; 20],
            ends: [0; 20],
            len: 0,
        };
        for (i, &c) in span.iter().enumerate() {
            if c.is_ascii_digit() {
                if d.len == d.digits.len() {
                    break;
                }
                d.digits[d.len] = c;
                d.ends[d.len] = i + 1;
                d.len += 1;
            }
        }
        d
    }

    /// Whether a candidate ending at `end` stops at the end of a digit group.
    fn is_group_end(&self, b: &[u8], end: usize) -> bool {
        !b.get(end).is_some_and(u8::is_ascii_digit)
    }
}

/// Spans a phone candidate may not overlap: the cluster's cards, SSNs and IPv4 addresses (the
/// first `found` candidates pushed for it) and every IBAN-shaped run. A candidate that is
/// reported only after a context word (a bare nine-digit SSN) does not take its span: without
/// the word it is dropped, and with it the scores decide.
struct Taken<'a> {
    found: usize,
    ibans: &'a [(usize, usize)],
}

impl Taken<'_> {
    fn overlaps(&self, cluster: &[Candidate], start: usize, end: usize) -> bool {
        // IBANs are sorted and disjoint, so their ends are sorted too.
        let i = self.ibans.partition_point(|&(_, e)| e <= start);
        self.ibans.get(i).is_some_and(|&(s, _)| s < end)
            || cluster[..self.found.min(cluster.len())]
                .iter()
                .any(|c| !c.needs_context && c.start < end && start < c.end)
    }
}

/// Whether a phone candidate is punctuated like a phone number: balanced parentheses, at most
/// one level deep, and no two separators in a row except around a parenthesis.
fn phone_shaped(span: &[u8]) -> bool {
    let mut depth = 0i32;
    let mut prev_sep = false;
    for &c in span {
        match c {
            b'0'..=b'9' => prev_sep = false,
            b'(' => {
                depth += 1;
                if depth > 1 {
                    return false;
                }
            }
            b')' => {
                depth -= 1;
                if depth < 0 {
                    return false;
                }
            }
            b'+' => {}
            _ => {
                if prev_sep {
                    return false;
                }
                prev_sep = true;
            }
        }
    }
    depth == 0
}

/// Digit groups that are far likelier a date (2024-01-15, 15.01.2024), an IPv4 address or an
/// SSN than a phone number.
fn looks_like_other_number(span: &[u8]) -> bool {
    let runs = Runs::of(span);
    if runs.overflow {
        return false;
    }
    let groups = runs.lens();
    let dotted = span.contains(&b'.');
    // 3-2-4 with dashes or spaces is how SSNs are written, and no national plan groups phone
    // numbers so.
    let ssn_shaped = groups == [3, 2, 4] && !dotted;
    matches!(
        groups,
        [4, 2, 2] | [4, 2, 2, _] | [2, 2, 4] | [1 | 2, 1 | 2, 4]
    ) || ssn_shaped
        || (dotted && groups.len() == 4 && groups.iter().all(|&g| g <= 3))
}

/// Punctuation that joins digit groups into one larger number (1.2.3.4.5, 12/31/2024, 10:30).
fn joiner(c: u8) -> bool {
    matches!(c, b'.' | b',' | b'-' | b'/' | b':')
}

/// Whether a number starting at `start` is not the tail of a longer word or number.
fn numeric_left_ok(b: &[u8], start: usize) -> bool {
    if start == 0 {
        return true;
    }
    let p = b[start - 1];
    if p.is_ascii_alphanumeric() || p == b'_' {
        return false;
    }
    !(joiner(p) && start >= 2 && b[start - 2].is_ascii_digit())
}

/// Whether a number ending at `end` is not the head of a longer word or number.
fn numeric_right_ok(b: &[u8], end: usize) -> bool {
    let Some(&n) = b.get(end) else {
        return true;
    };
    if n.is_ascii_alphanumeric() || n == b'_' {
        return false;
    }
    !(joiner(n) && b.get(end + 1).is_some_and(u8::is_ascii_digit))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boundaries() {
        assert!(numeric_left_ok(b"x 123", 2));
        assert!(!numeric_left_ok(b"1.123", 2));
        assert!(!numeric_left_ok(b"a123", 1));
        assert!(numeric_right_ok(b"123. ", 3));
        assert!(!numeric_right_ok(b"123.4", 3));
    }

    #[test]
    fn next_trigger_finds_every_trigger() {
        let mut bytes: Vec<u8> = (0..=255u8).collect();
        bytes.extend((0..=255u8).rev());
        for from in 0..bytes.len() {
            for len in from..(from + 20).min(bytes.len()) {
                let b = &bytes[..len];
                let want = (from..b.len())
                    .find(|&i| TRIGGERS[usize::from(b[i])] != 0)
                    .unwrap_or(b.len().max(from));
                assert_eq!(next_trigger(b, from), want, "{from} {len}");
            }
        }
        for (text, want) in [
            (&b"hello world, all fine"[..], 21),
            (b"abcdefgh@x", 8),
            (b"\xc3\xa9\xc3\xa9 kilo 9", 10),
        ] {
            assert_eq!(next_trigger(text, 0), want);
        }
    }

    #[test]
    fn layout_finds_places_to_look() {
        let l = Layout::of(b"call 415-555-2671 or DE89 3704; at 2001:db8::1 x@y 12 34");
        assert!(l.at);
        let spans: Vec<_> = l
            .numeric
            .iter()
            .map(|c| (c.start, c.end, c.digits))
            .collect();
        assert_eq!(
            spans,
            vec![(5, 17, 10), (23, 30, 6), (35, 39, 4), (51, 56, 4)]
        );
        assert_eq!(l.iban, vec![21]);
        let hex: Vec<_> = l
            .hex
            .iter()
            .map(|h| (h.start, h.end, h.ipv6, h.mac))
            .collect();
        assert_eq!(hex, vec![(35, 46, true, false)]);
    }

    #[test]
    fn digit_runs_counted_by_words() {
        let texts: [&[u8]; 5] = [
            b"",
            b"0123456789012345678x9/:",
            b"12345678",
            b"a1b22c333d4444e55555f666666g7777777h88888888i",
            b"\xff9\x809\xb9\x399",
        ];
        for t in texts {
            for i in 0..=t.len() {
                let naive = t[i..].iter().take_while(|c| c.is_ascii_digit()).count();
                assert_eq!(digit_run(t, i), naive, "{t:?} at {i}");
            }
        }
    }

    /// Nothing starts inside an opaque span; a group starting before one is read whole.
    #[test]
    fn layout_skips_opaque_spans() {
        let b = b"415-555-2671 tok eyJ4155552671.e30.sig 12345 ab:cd:ef:01:23:45";
        let mut l = Layout::default();
        l.fill(b, &[(17, 38), (46, 50)]);
        let spans: Vec<_> = l.numeric.iter().map(|c| (c.start, c.end)).collect();
        assert_eq!(spans, vec![(0, 12), (39, 44)]);
        assert!(l.hex.is_empty());
        l.clear();
        l.fill(b, &[(1, 3), (17, 38)]);
        let spans: Vec<_> = l.numeric.iter().map(|c| (c.start, c.end)).collect();
        assert_eq!(spans, vec![(0, 12), (39, 44)]);
        assert_eq!(l.hex.len(), 1);
    }

    #[test]
    fn card_shapes() {
        let re = compile(
            r"(?-u)^(?:[0-9]{4}(?:[ \-][0-9]{4}){2,3}(?:[ \-][0-9]{1,4})?|[0-9]{4}[ \-][0-9]{6}[ \-][0-9]{4,5})$",
            "card shape",
        )
        .expect("compiles");
        // Every grouping of up to five groups of 1 to 7 digits, joined by ' ', '-' or '.'.
        let mut checked = 0;
        for groups in 1..=5u32 {
            for code in 0..7u32.pow(groups) * 3u32.pow(groups - 1) {
                let mut c = code;
                let mut span = Vec::new();
                for g in 0..groups {
                    if g > 0 {
                        span.push(b" -."[(c % 3) as usize]);
                        c /= 3;
                    }
                    span.extend(std::iter::repeat_n(b'7', 1 + (c % 7) as usize));
                    c /= 7;
                }
                assert_eq!(card_shaped(&span), re.is_match(&span), "{span:?}");
                checked += 1;
            }
        }
        assert!(checked > 100_000);
        assert!(card_shaped(b"4111 1111 1111 1111"));
        assert!(!card_shaped(b"4111  1111 1111 1111"));
        assert!(!card_shaped(b"4111 1111 1111 1111 1111 1"));
    }

    #[test]
    fn phone_shapes() {
        assert!(phone_shaped(b"(415) 555-2671"));
        assert!(!phone_shaped(b"415--555-2671"));
        assert!(!phone_shaped(b"((415) 555-2671"));
        assert!(looks_like_other_number(b"2024-01-15"));
        assert!(looks_like_other_number(b"15.01.2024"));
        assert!(looks_like_other_number(b"10.1.20.30"));
        assert!(!looks_like_other_number(b"415.555.2671"));
        assert!(looks_like_other_number(b"078-05-1120"));
        assert!(looks_like_other_number(b"078 05 1120"));
    }

    mod national_phone_reader_matches_its_regex {
        use super::super::*;
        use proptest::prelude::*;
        use regex::bytes::Regex;

        fn by_regex(re: &Regex, hay: &[u8], pos: usize) -> Option<(usize, usize)> {
            re.find_at(hay, pos).map(|m| (m.start(), m.end()))
        }

        fn regex() -> Regex {
            compile(
                r"(?-u)(?:\([0-9]{1,5}\)[ .\-]?|\b[0-9]{1,8}[ .\-])[0-9]{2,8}(?:[ .\-][0-9]{2,8}){0,3}|\b[0-9]{7,12}\b",
                "phone_national",
            )
            .expect("compiles")
        }

        fn text() -> impl Strategy<Value = Vec<u8>> {
            let unit = prop::sample::select(vec![
                &b"1"[..],
                b"12",
                b"123",
                b"4155",
                b"55526",
                b"0301234",
                b"123456789",
                b"1234567890123",
                b" ",
                b".",
                b"-",
                b"(",
                b")",
                b"+",
                b"a",
                b"_",
                b"/",
                b"\xc3\xa9",
            ]);
            prop::collection::vec(unit, 0..16).prop_map(|parts| parts.concat())
        }

        proptest! {
            #[test]
            fn same_matches(t in text(), pos in 0usize..40) {
                let re = regex();
                let pos = pos.min(t.len());
                prop_assert_eq!(national_phone_match(&t, pos), by_regex(&re, &t, pos));
            }
        }

        #[test]
        fn examples() {
            let re = regex();
            for t in [
                "(415) 555-2671",
                "(415)555-2671",
                "(415) -555",
                "030 901820",
                "0707875 0819",
                "x030 901820",
                "1234567890123 1",
                "123456789 12 34 56 78 90",
                "12 1 123",
                "1.2.3.4.5",
                "(123456) 1234",
                "415-555-26711111111",
            ] {
                for pos in 0..t.len() {
                    assert_eq!(
                        national_phone_match(t.as_bytes(), pos),
                        by_regex(&re, t.as_bytes(), pos),
                        "{t} at {pos}"
                    );
                }
            }
        }
    }

    /// The fixed-shape readers, and those that search from a position themselves, against the
    /// regexes they replaced.
    mod fixed_readers_match_their_regexes {
        use super::super::*;
        use proptest::prelude::*;
        use regex::bytes::Regex;

        /// A reader and the regex it replaced.
        type Pair = (Regex, fn(&[u8], usize) -> Option<usize>);

        fn regexes() -> [Pair; 4] {
            [
                (
                    compile(
                        r"(?-u)\b(?:[0-9]{13,19}|[0-9]{4}(?:[ \-][0-9]{4}){2,3}(?:[ \-][0-9]{1,4})?|[0-9]{4}[ \-][0-9]{6}[ \-][0-9]{4,5})\b",
                        "card",
                    )
                    .expect("compiles"),
                    card_at,
                ),
                (
                    compile(r"(?-u)\b(?:[0-9]{1,3}\.){3}[0-9]{1,3}\b", "ipv4").expect("compiles"),
                    ipv4_at,
                ),
                (
                    compile(
                        r"(?-u)\b(?:[0-9]{3}-[0-9]{2}-[0-9]{4}|[0-9]{3} [0-9]{2} [0-9]{4}|[0-9]{9})\b",
                        "ssn",
                    )
                    .expect("compiles"),
                    ssn_at,
                ),
                (
                    compile(
                        r"(?i-u)\b(?:[0-9a-f]{2}(?::[0-9a-f]{2}){5}|[0-9a-f]{2}(?:-[0-9a-f]{2}){5}|[0-9a-f]{4}\.[0-9a-f]{4}\.[0-9a-f]{4})\b",
                        "mac",
                    )
                    .expect("compiles"),
                    mac_at,
                ),
            ]
        }

        /// Readers that search from a position themselves, as `find_at` does.
        type Search = (Regex, fn(&[u8], usize) -> Option<(usize, usize)>);

        fn searches() -> [Search; 2] {
            [
                (
                    compile(
                        r"(?i-u)[0-9a-f]{0,4}(?::[0-9a-f]{0,4}){2,7}(?:\.[0-9]{1,3}){0,3}",
                        "ipv6",
                    )
                    .expect("compiles"),
                    ipv6_match,
                ),
                (
                    compile(r"(?-u)\+[0-9][0-9 .()\-]{5,24}[0-9]", "phone_intl").expect("compiles"),
                    international_phone_match,
                ),
            ]
        }

        fn same(t: &[u8], re: &Regex, reader: impl Fn(&[u8], usize) -> Option<(usize, usize)>) {
            for pos in 0..=t.len() {
                assert_eq!(
                    reader(t, pos),
                    re.find_at(t, pos).map(|m| (m.start(), m.end())),
                    "{:?} at {pos} with {re}",
                    String::from_utf8_lossy(t)
                );
            }
        }

        fn check(t: &[u8]) {
            for (re, at) in regexes() {
                same(t, &re, |t, pos| word_match(t, pos, at));
            }
            for (re, find) in searches() {
                same(t, &re, find);
            }
        }

        fn text() -> impl Strategy<Value = Vec<u8>> {
            let unit = prop::sample::select(vec![
                &b"1"[..],
                b"12",
                b"123",
                b"1234",
                b"123456",
                b"123456789",
                b"1234567890123",
                b"4111 1111 1111 1111",
                b"0a",
                b"Ff",
                b"abcd",
                b".",
                b"-",
                b":",
                b" ",
                b"_",
                b"g",
                b"::",
                b"+",
                b"fe80",
                b"12345",
                b"(0)",
                b"\xc3\xa9",
            ]);
            prop::collection::vec(unit, 0..16).prop_map(|parts| parts.concat())
        }

        proptest! {
            #[test]
            fn same_matches(t in text()) {
                check(&t);
            }
        }

        #[test]
        fn examples() {
            for t in [
                "4111111111111111",
                "4111 1111 1111 1111",
                "4111-1111-1111-1111-111",
                "4111 1111 1111 1111 11111",
                "4111 1111 1111 1111 1111 1111",
                "4111 1111 1111",
                "4111 1111 1111x",
                "4111 1111 1111 1",
                "3782 822463 10005",
                "3782 822463 1000",
                "3782 822463 100055",
                "3782 8224631 10005",
                "41111111111111111111",
                "4111 1111 1111 1111 2024",
                "10.0.0.1",
                "1.2.3.4.5",
                "1234.1.1.1",
                "1.2.3.4567",
                "a1.2.3.4",
                "1.2.3.4a",
                "078-05-1120",
                "078 05 1120",
                "078051120",
                "0780511201",
                "078-05 1120",
                "00:1a:2B:3c:4d:5e",
                "00-1a-2b-3c-4d-5e",
                "0011.2233.4455",
                "00:1a:2b:3c:4d:5e:6f",
                "x00:1a:2b:3c:4d:5e",
                "00:1a:2b-3c:4d:5e",
                "2001:db8::1",
                "fe80::1: error",
                "::ffff:192.0.2.128",
                "1:2:3:4:5:6:7:8:9:10",
                "12345:6789::1",
                "a:b",
                ":::::::::",
                "2001:0db8:85a3:0000:0000:8a2e:0370:7334.1.2.3.4",
                "+44 20 7946 0958",
                "+1 (415) 555-2671 ext",
                "+1 2345",
                "++44 20 7946 0958",
                "+4420794609581234567890123456789",
                "+44-------------------------1",
                "call +x +33 1 42 68 53 00.",
            ] {
                check(t.as_bytes());
            }
        }
    }

    mod email_reader_matches_its_regex {
        use super::super::*;
        use proptest::prelude::*;

        fn by_regex(hay: &[u8]) -> Vec<(usize, usize)> {
            let re = compile(
                r"(?-u)[A-Za-z0-9][A-Za-z0-9._%+\-]{0,63}@(?:[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?\.){1,8}[A-Za-z]{2,63}",
                "email",
            )
            .expect("compiles");
            re.find_iter(hay).map(|m| (m.start(), m.end())).collect()
        }

        fn by_reader(hay: &[u8]) -> Vec<(usize, usize)> {
            let mut pos = 0;
            std::iter::from_fn(|| {
                let m = email_match(hay, pos)?;
                pos = m.1;
                Some(m)
            })
            .collect()
        }

        fn text() -> impl Strategy<Value = Vec<u8>> {
            let unit = prop::sample::select(vec![
                &b"a"[..],
                b"Z9",
                b"ab",
                b"com",
                b"x1-y",
                b"@",
                b".",
                b"..",
                b"-",
                b"_",
                b"%",
                b"+",
                b" ",
                b"9",
                b"\xc3\xa9",
                b"abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyzabcdefghijklm",
            ]);
            prop::collection::vec(unit, 0..20).prop_map(|parts| parts.concat())
        }

        proptest! {
            #[test]
            fn same_matches(t in text()) {
                prop_assert_eq!(by_reader(&t), by_regex(&t));
            }
        }

        #[test]
        fn examples() {
            let long = "a".repeat(70);
            let long_label = "b".repeat(64);
            for t in [
                "alice@acme-corp.io",
                "a@b.c.d",
                "a@b.com@c.org",
                "x.y@a.b.c.d.e.f.g.h.i.j.com",
                "-a@b.co",
                ".a@b.co",
                "a@-b.co",
                "a@b-.co",
                "a@b.c1",
                "a@b.co1x",
                "@@a@b.co",
                "a@b.co.",
                &format!("{long}@b.co"),
                &format!("a@{long_label}.co"),
                &format!("a@b.{long}"),
                "mail me: bob@x.org, carol@y.net; dave@@z.io",
            ] {
                assert_eq!(by_reader(t.as_bytes()), by_regex(t.as_bytes()), "{t}");
            }
        }
    }

    #[test]
    fn longer_tokens() {
        assert!(glued_to_word(b"ORD-2026", 4));
        assert!(glued_to_word(b"Chrome/0.39", 7));
        assert!(glued_to_word(b"id_2092780420", 3));
        assert!(!glued_to_word(b"tel 2092780420", 4));
        assert!(!glued_to_word(b"-2092780420", 1));
        assert!(continues_digit_groups(
            b"4070 3474 3569 5394 106",
            5,
            b"3474 3569 5394 106"
        ));
        assert!(!continues_digit_groups(
            b"12/27 4539 1488 0343 6467",
            6,
            b"4539 1488 0343 6467"
        ));
        assert!(!continues_digit_groups(
            b"4070-4539 1488 0343 6467",
            5,
            b"4539 1488 0343 6467"
        ));
    }

    #[test]
    fn iban_shapes() {
        let valid = b"DE89 3704 0044 0532 0130 00 x";
        assert_eq!(iban_at(valid, 0), Some((27, true)));
        let bad = b"DE88 3704 0044 0532 0130 00 x";
        assert_eq!(iban_at(bad, 0), Some((27, false)));
        // Too short to be an account number.
        assert_eq!(iban_at(b"DE88 3704 x", 0), None);
        assert_eq!(iban_at(b"xDE89370400440532013000", 1), None);
    }

    #[test]
    fn mac_runs_end_before_a_full_stop() {
        let l = Layout::of(b"address is bc64.5430.6329.");
        assert!(l.hex.iter().any(|h| h.mac), "{:?}", l.hex);
        let l = Layout::of(b"address is bc64.5430.6329.7a08.");
        assert!(!l.hex.iter().any(|h| h.mac), "{:?}", l.hex);
    }
}
