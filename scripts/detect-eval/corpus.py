#!/usr/bin/env python3
"""Generates the labelled corpus that custodian's detection is evaluated on.

Writes JSON Lines, one record per line:

    {"text": "...", "spans": [{"start": 12, "end": 31, "entity": "EMAIL_ADDRESS"}], "category": "..."}

`start`/`end` are Unicode code point offsets into `text` (Python string indices; the text is not
ASCII-only, since Faker names carry accents), `end` exclusive. `category` names the template
group the record came from: an entity name for records built around that entity, `MIXED` for
records holding several, and `NEG:<kind>` for hard negatives, records in which nothing is
sensitive although something looks like it (GUIDs, order numbers, timestamps, version strings,
documented test values, numbers failing Luhn/IBAN checksums, invalid SSNs, placeholders, ...).

Every labelled value is valid by the rules of its kind (Luhn and issuer prefix for cards, mod-97
for IBANs, libphonenumber's `is_valid_number` for phone numbers, SSA rules for SSNs) and is not
a value reserved for documentation or testing: those appear only as hard negatives. Phone
numbers are judged by python-phonenumbers, the library Presidio's phone recognizer is built on,
so Presidio finds nearly all of them by construction; custodian reads the same libphonenumber
metadata through the Rust `phonenumber` crate, whose release may be older.

The output is a pure function of `--seed`, `--records` and the pinned package versions
(requirements.txt): one `random.Random` drives every choice, each Faker instance is seeded
from the seed, dates come from fixed bounds, and the script re-runs itself with PYTHONHASHSEED=0
because some Faker providers pick from sets.
"""

from __future__ import annotations

import argparse
import base64
import datetime
import ipaddress
import json
import os
import random
import re
import string
import sys
import uuid
from typing import Callable

import phonenumbers
from faker import Faker

PLACEHOLDER = re.compile(r"\[\[(\w+)\]\]")

rng = random.Random()
fakers: dict[str, Faker] = {}


def fake(locale: str = "en_US") -> Faker:
    return fakers[locale]


LOCALES = ["en_US", "en_GB", "de_DE", "fr_FR", "nl_NL", "es_ES", "it_IT"]


def rand_str(alphabet: str, n: int) -> str:
    return "".join(rng.choice(alphabet) for _ in range(n))


ALNUM = string.ascii_letters + string.digits
B64 = string.ascii_letters + string.digits + "+/"
B64URL = string.ascii_letters + string.digits + "-_"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


# --------------------------------------------------------------------------------------------
# Labelled values


RESERVED_EMAIL = re.compile(r"(^|\.)(example\.(com|net|org)|test|invalid|localhost|example)$")


def email() -> str:
    while True:
        f = fake(rng.choice(LOCALES))
        kind = rng.randrange(5)
        if kind == 0:
            v = f.ascii_free_email()
        elif kind == 1:
            v = f.ascii_company_email()
        elif kind == 2:
            user = f.user_name()
            v = f"{user}+{rng.choice(['news', 'billing', 'dev', 'x'])}@{f.free_email_domain()}"
        elif kind == 3:
            first, last = fake().first_name().lower(), fake().last_name().lower()
            v = f"{first}.{last}@{rng.choice(['mail', 'eu', 'corp', 'hr'])}.{fake().domain_name()}"
        else:
            v = fake().ascii_email()
        v = v.strip()
        if v.isascii() and not RESERVED_EMAIL.search(v.split("@", 1)[1].lower()):
            return v


# Numbers reserved for fiction: NANP 555-0100..0199 and Ofcom's drama ranges (national
# significant number prefixes). Faker's en_GB provider only writes drama numbers, so British
# numbers are made here instead.
OFCOM_DRAMA = (
    "1134960", "1144960", "1154960", "1164960", "1174960", "1184960", "1214960", "1314960",
    "1414960", "1514960", "1614960", "1914980", "2079460", "2896496", "2920180", "1632960",
    "7700900", "8081570", "9098790", "3069990",
)


def _fictional(n: phonenumbers.PhoneNumber) -> bool:
    nsn = phonenumbers.national_significant_number(n)
    if n.country_code == 1:
        return nsn[3:6] == "555" and nsn[6:8] == "01"
    if n.country_code == 44:
        return nsn.startswith(OFCOM_DRAMA)
    return False


PHONE_NATIONAL = ["US", "GB", "DE"]
PHONE_INTL_ONLY = ["FR", "NL", "ES", "IT", "CH", "AT", "IE", "AU", "CA"]
PHONE_TYPES = [phonenumbers.PhoneNumberType.FIXED_LINE, phonenumbers.PhoneNumberType.MOBILE]
F = phonenumbers.PhoneNumberFormat


def random_number(region: str) -> phonenumbers.PhoneNumber:
    """A valid, non-fictional number of `region`: libphonenumber's example number of a random
    type with all but its first zero to two digits replaced at random."""
    while True:
        ex = phonenumbers.example_number_for_type(region, rng.choice(PHONE_TYPES))
        if ex is None:
            continue
        nsn = phonenumbers.national_significant_number(ex)
        keep = rng.randrange(0, 3)
        digits = nsn[:keep] + rand_str(string.digits, len(nsn) - keep)
        n = phonenumbers.parse(f"+{ex.country_code}{digits}")
        if phonenumbers.is_valid_number(n) and not _fictional(n):
            return n


def faker_number(region: str) -> str | None:
    """A number as Faker writes it for the US or Germany, if libphonenumber finds it valid."""
    raw = fake({"US": "en_US", "DE": "de_DE"}[region]).phone_number()
    if "x" in raw.lower():
        return None
    try:
        n = phonenumbers.parse(raw, region)
    except phonenumbers.NumberParseException:
        return None
    return raw if phonenumbers.is_valid_number(n) and not _fictional(n) else None


def phone() -> str:
    """A valid number of a region custodian and Presidio are both configured for, in one of the
    ways people write them, or a number of another country written internationally."""
    if rng.random() < 0.2:
        n = random_number(rng.choice(PHONE_INTL_ONLY))
        return phonenumbers.format_number(n, rng.choice([F.INTERNATIONAL, F.E164]))
    region = rng.choice(PHONE_NATIONAL)
    if region != "GB" and rng.random() < 0.3:
        raw = faker_number(region)
        if raw is not None:
            return raw
    n = random_number(region)
    national = phonenumbers.format_number(n, F.NATIONAL)
    intl = phonenumbers.format_number(n, F.INTERNATIONAL)
    variants = [national, national, intl, phonenumbers.format_number(n, F.E164)]
    nsn = phonenumbers.national_significant_number(n)
    if region == "US":
        variants += [f"{nsn[:3]}-{nsn[3:6]}-{nsn[6:]}", f"{nsn[:3]}.{nsn[3:6]}.{nsn[6:]}",
                     f"+1 {nsn[:3]}-{nsn[3:6]}-{nsn[6:]}", nsn]
    else:
        # "+44 (0)20 7946 0958": the trunk prefix in parentheses, as often written.
        variants += [intl.replace(" ", " (0)", 1), national.replace(" ", "", 1)]
    return rng.choice(variants)


TEST_CARDS = {
    "4111111111111111", "4242424242424242", "4012888888881881", "4222222222222",
    "5555555555554444", "5105105105105100", "378282246310005", "371449635398431",
    "6011111111111117", "6011000990139424", "3530111333300000", "3566002020360505",
    "30569309025904", "38520000023237",
}


def luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def group_card(digits: str) -> str:
    style = rng.randrange(3)
    if style == 0:
        return digits
    sep = " " if style == 1 else "-"
    if len(digits) == 15:
        return sep.join([digits[:4], digits[4:10], digits[10:]])
    if len(digits) == 14:
        return sep.join([digits[:4], digits[4:10], digits[10:]])
    return sep.join(digits[i : i + 4] for i in range(0, len(digits), 4))


CARD_TYPES = ["visa16", "visa16", "visa16", "visa13", "visa19", "mastercard", "mastercard",
              "amex", "discover", "jcb16", "diners"]


def issuer_ok(d: str) -> bool:
    """The networks' published IIN ranges and lengths (Faker's JCB numbers start with any 35)."""
    n, p2, p3, p4, p6 = len(d), int(d[:2]), int(d[:3]), int(d[:4]), int(d[:6])
    if d[0] == "4":
        return n in (13, 16, 19)
    if 51 <= p2 <= 55 or 2221 <= p4 <= 2720:
        return n == 16
    if p2 in (34, 37):
        return n == 15
    if p4 == 6011 or 644 <= p3 <= 649 or p2 == 65 or 622126 <= p6 <= 622925:
        return 16 <= n <= 19
    if 3528 <= p4 <= 3589:
        return 16 <= n <= 19
    if 300 <= p3 <= 305 or p4 == 3095 or p2 in (36, 38, 39):
        return 14 <= n <= 19
    return False


def card_digits() -> str:
    while True:
        v = fake().credit_card_number(rng.choice(CARD_TYPES))
        if v not in TEST_CARDS and luhn_ok(v) and issuer_ok(v):
            return v


def credit_card() -> str:
    d = card_digits()
    # 13-digit numbers have no settled grouping: written ungrouped.
    return d if len(d) == 13 else group_card(d)


IBAN_LOCALES = ["de_DE", "en_GB", "fr_FR", "nl_NL", "es_ES", "it_IT"]


def iban_ok(iban: str) -> bool:
    s = iban[4:] + iban[:4]
    return int("".join(str(int(c, 36)) for c in s)) % 97 == 1


def iban_compact() -> str:
    while True:
        v = fake(rng.choice(IBAN_LOCALES)).iban()
        if iban_ok(v):
            return v


def group_iban(v: str) -> str:
    if rng.random() < 0.5:
        return v
    return " ".join(v[i : i + 4] for i in range(0, len(v), 4))


def iban() -> str:
    return group_iban(iban_compact())


def ssn_digits() -> str:
    while True:
        v = fake().ssn().replace("-", "")
        if v not in ("078051120", "219099999", "123456789") and len(set(v)) > 1:
            return v


def ssn(style: int | None = None) -> str:
    d = ssn_digits()
    style = rng.choice([0, 0, 0, 1]) if style is None else style
    sep = "-" if style == 0 else " "
    return f"{d[:3]}{sep}{d[3:5]}{sep}{d[5:]}"


def ssn_bare() -> str:
    return ssn_digits()


DOC_V4 = [ipaddress.ip_network(n) for n in ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24")]


def ipv4() -> str:
    while True:
        v = fake().ipv4_private() if rng.random() < 0.4 else fake().ipv4_public()
        if not any(ipaddress.ip_address(v) in n for n in DOC_V4):
            return v


def ipv6() -> str:
    while True:
        style = rng.randrange(5)
        if style == 0:
            v = fake().ipv6()
        elif style == 1:
            v = ipaddress.IPv6Address(fake().ipv6()).exploded
        elif style == 2:
            v = "fe80::" + ":".join(f"{rng.randrange(65536):x}" for _ in range(4))
        elif style == 3:
            a = ipaddress.IPv6Address(fake().ipv6())
            words = a.exploded.split(":")
            words[rng.randrange(2, 6)] = "0"
            words[rng.randrange(2, 6)] = "0"
            v = str(ipaddress.IPv6Address(":".join(words)))
        else:
            v = f"2a02:{rng.randrange(65536):x}:{rng.randrange(65536):x}::{rng.randrange(1, 65536):x}"
        if rng.random() < 0.2:
            v = v.upper()
        a = ipaddress.IPv6Address(v)
        if a in ipaddress.ip_network("2001:db8::/32") or a.is_unspecified or a.is_loopback:
            continue
        return v


def ip() -> str:
    return ipv4() if rng.random() < 0.6 else ipv6()


def mac() -> str:
    while True:
        octets = [rng.randrange(256) for _ in range(6)]
        if all(o == 0 for o in octets) or all(o == 255 for o in octets):
            continue
        style = rng.randrange(5)
        if style == 0:
            return ":".join(f"{o:02x}" for o in octets)
        if style == 1:
            return ":".join(f"{o:02X}" for o in octets)
        if style == 2:
            return "-".join(f"{o:02X}" for o in octets)
        if style == 3:
            h = "".join(f"{o:02x}" for o in octets)
            return ".".join(h[i : i + 4] for i in range(0, 12, 4))
        return fake().mac_address()


AWS_ID_ALPHABET = string.ascii_uppercase + "234567"


def aws_key_id() -> str:
    return rng.choice(["AKIA", "AKIA", "AKIA", "ASIA"]) + rand_str(AWS_ID_ALPHABET, 16)


def aws_secret() -> str:
    while True:
        v = rand_str(B64, 40)
        if any(c.isupper() for c in v) and any(c.islower() for c in v):
            return v


def github_token() -> str:
    if rng.random() < 0.2:
        return "github_pat_" + rand_str(ALNUM, 22) + "_" + rand_str(ALNUM, 59)
    return rng.choice(["ghp_", "ghp_", "gho_", "ghs_", "ghu_"]) + rand_str(ALNUM, 36)


def gitlab_token() -> str:
    return "glpat-" + rand_str(ALNUM + "-_", 20)


def slack_token() -> str:
    prefix = rng.choice(["xoxb", "xoxb", "xoxp"])
    return (f"{prefix}-{rand_str(string.digits, rng.choice([11, 12, 13]))}"
            f"-{rand_str(string.digits, rng.choice([11, 12, 13]))}-{rand_str(ALNUM, 24)}")


def slack_webhook() -> str:
    return ("https://hooks.slack.com/services/T" + rand_str(string.ascii_uppercase + string.digits, 8)
            + "/B" + rand_str(string.ascii_uppercase + string.digits, rng.choice([8, 10]))
            + "/" + rand_str(ALNUM, 24))


def stripe_key() -> str:
    prefix = rng.choice(["sk_live_", "sk_live_", "rk_live_"])
    return prefix + rand_str(ALNUM, rng.choice([24, 34, 99]))


def jwt() -> str:
    alg = rng.choice(["HS256", "RS256", "ES256"])
    header = {"alg": alg, "typ": "JWT"}
    if rng.random() < 0.3:
        header["kid"] = rand_str(ALNUM, 12)
    f = fake()
    payload = {"sub": str(rng.randrange(10**6, 10**9)), "name": f.name(),
               "iat": rng.randrange(1_600_000_000, 1_800_000_000)}
    if rng.random() < 0.5:
        payload["email"] = f.ascii_free_email()
    sig_len = {"HS256": 43, "RS256": 342, "ES256": 86}[alg]
    return ".".join([
        b64url(json.dumps(header, separators=(",", ":")).encode()),
        b64url(json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()),
        rand_str(B64URL, sig_len),
    ])


def pem_body(lines: int) -> list[str]:
    raw = bytes(rng.randrange(256) for _ in range(48 * lines))
    b = base64.b64encode(raw).decode()
    return [b[i : i + 64] for i in range(0, len(b), 64)]


def private_key(escaped: bool = False) -> str:
    kind = rng.choice(["RSA ", "EC ", "", "OPENSSH ", "ENCRYPTED "])
    body = pem_body(rng.randrange(3, 12))
    lines = [f"-----BEGIN {kind}PRIVATE KEY-----", *body, f"-----END {kind}PRIVATE KEY-----"]
    return ("\\n" if escaped else "\n").join(lines)


def service_account_email() -> str:
    f = fake()
    return f"{f.user_name()}@{f.word()}-{rng.randrange(10**5, 10**6)}.iam.gserviceaccount.com"


def private_key_escaped() -> str:
    return private_key(escaped=True)


BARE_PW = string.ascii_letters + string.digits + "!@#%^*_+-.~"


def password_bare() -> str:
    while True:
        v = rand_str(BARE_PW, rng.randrange(10, 24))
        if sum(c.isdigit() for c in v) and sum(c.isalpha() for c in v):
            return v


def password_quoted() -> str:
    if rng.random() < 0.5:
        return fake().password(length=rng.randrange(12, 24), special_chars=True)
    return password_bare()


def api_key_hex() -> str:
    return rand_str("0123456789abcdef", rng.choice([32, 40, 64]))


def opaque_token() -> str:
    return rand_str(ALNUM, rng.randrange(32, 48))


# --------------------------------------------------------------------------------------------
# Fillers (never labelled)


def name() -> str:
    return fake(rng.choice(LOCALES)).name()


def first() -> str:
    return fake(rng.choice(LOCALES)).first_name()


def company() -> str:
    return fake().company()


def city() -> str:
    return fake(rng.choice(LOCALES)).city()


# Fixed bounds: Faker's relative dates ("-3y", "now") would make the corpus depend on the day.
EPOCH_FROM = datetime.datetime(2021, 1, 1, tzinfo=datetime.timezone.utc)
EPOCH_TO = datetime.datetime(2027, 1, 1, tzinfo=datetime.timezone.utc)


def when() -> datetime.datetime:
    return fake().date_time_between(start_date=EPOCH_FROM, end_date=EPOCH_TO,
                                    tzinfo=datetime.timezone.utc)


def date() -> str:
    return when().strftime(rng.choice(["%Y-%m-%d", "%d %B %Y", "%B %d, %Y", "%m/%d/%Y"]))


def iso() -> str:
    d = when()
    return d.strftime("%Y-%m-%dT%H:%M:%S") + rng.choice(["Z", ".%03dZ" % rng.randrange(1000), "+02:00"])


def time() -> str:
    return f"{rng.randrange(24):02d}:{rng.randrange(60):02d}"


def amount() -> str:
    return f"{rng.randrange(1, 5000)}.{rng.randrange(100):02d}"


def exp() -> str:
    return f"{rng.randrange(1, 13):02d}/{rng.randrange(25, 33)}"


def cardtype() -> str:
    return rng.choice(["Visa", "Mastercard", "Amex", "Discover", "card"])


def bic() -> str:
    return fake(rng.choice(IBAN_LOCALES)).swift(length=rng.choice([8, 11]))


def host() -> str:
    return fake().hostname()


def url_path() -> str:
    return "/" + "/".join(fake().words(rng.randrange(1, 4))) + rng.choice(["", ".html", "/"])


def status() -> str:
    return str(rng.choice([200, 201, 204, 301, 302, 400, 401, 403, 404, 500, 503]))


def nbytes() -> str:
    return str(rng.randrange(0, 200_000))


def ms() -> str:
    return str(rng.randrange(1, 5000))


def custid() -> str:
    return str(rng.randrange(10_000, 999_999))


def word() -> str:
    return fake().word()


def sentence() -> str:
    return fake().sentence(nb_words=rng.randrange(5, 12))


def repo() -> str:
    return f"{fake().user_name()}/{fake().word()}-{fake().word()}"


def apache_ts() -> str:
    d = when()
    return d.strftime("%d/%b/%Y:%H:%M:%S +0000")


def street_address() -> str:
    return fake().street_address()


def env_name() -> str:
    return rng.choice(["DB", "POSTGRES", "REDIS", "SMTP", "APP", "ADMIN", "MYSQL", "LDAP"])


# Hard negatives -----------------------------------------------------------------------------


def guid() -> str:
    u = uuid.UUID(int=rng.getrandbits(128), version=4)
    style = rng.randrange(4)
    if style == 0:
        return str(u)
    if style == 1:
        return "{" + str(u).upper() + "}"
    if style == 2:
        return u.hex
    return str(u).upper()


def order_no() -> str:
    style = rng.randrange(6)
    if style == 0:
        return str(rng.randrange(10**5, 10**12))
    if style == 1:
        return f"ORD-{rng.randrange(2019, 2027)}-{rng.randrange(10**6):06d}"
    if style == 2:
        return f"{rng.randrange(100, 999)}-{rng.randrange(10**6, 10**7)}-{rng.randrange(10**6, 10**7)}"
    if style == 3:
        return f"INV-{rng.randrange(10**4, 10**5)}-{rng.randrange(1000, 9999)}"
    if style == 4:
        return f"{rng.randrange(10**3, 10**4)} {rng.randrange(10**3, 10**4)} {rng.randrange(10**3, 10**4)}"
    return f"#{rng.randrange(10**7, 10**9)}"


def timestamp() -> str:
    d = when()
    epoch = int(d.timestamp())
    style = rng.randrange(9)
    return [
        d.strftime("%Y-%m-%dT%H:%M:%S.") + f"{rng.randrange(1000):03d}Z",
        d.strftime("%Y-%m-%d %H:%M:%S,") + f"{rng.randrange(1000):03d}",
        str(epoch),
        str(epoch * 1000 + rng.randrange(1000)),
        str(epoch * 1_000_000 + rng.randrange(10**6)),
        d.strftime("%d/%m/%Y %H:%M"),
        d.strftime("%Y%m%dT%H%M%SZ"),
        d.strftime("%Y%m%d%H%M%S"),
        d.strftime("%b %d %H:%M:%S"),
    ][style]


def version() -> str:
    style = rng.randrange(7)
    a, b, c = rng.randrange(0, 20), rng.randrange(0, 40), rng.randrange(0, 300)
    return [
        f"v{a}.{b}.{c}",
        f"{a}.{b}.{c}-beta.{rng.randrange(1, 9)}",
        f"{rng.randrange(1, 7)}.{b}.{c}-{rng.randrange(1, 30)}-amd64",
        f"{rng.randrange(90, 130)}.0.{rng.randrange(4000, 7000)}.{rng.randrange(10, 300)}",
        f"10.0.{rng.randrange(17000, 26000)}.{rng.randrange(1000, 5000)}",
        f"{a}.{b}.{rng.randrange(1000, 9999)}.{rng.randrange(1000, 99999)}",
        f"{rng.randrange(2018, 2027)}.{rng.randrange(1, 13)}.{rng.randrange(1, 4)}",
    ][style]


def sha() -> str:
    return rand_str("0123456789abcdef", rng.choice([40, 64]))


def bad_luhn_card() -> str:
    d = card_digits()
    last = (int(d[-1]) + rng.randrange(1, 10)) % 10
    d = d[:-1] + str(last)
    return d if len(d) == 13 else group_card(d)


def bad_iban() -> str:
    v = iban_compact()
    check = int(v[2:4])
    new = (check + rng.randrange(1, 97)) % 97
    new = max(new, 2)
    if new == check:
        new = 2 if check != 2 else 3
    bad = v[:2] + f"{new:02d}" + v[4:]
    if iban_ok(bad):  # vanishingly rare, but never label a valid IBAN as negative
        bad = v[:-1] + str((int(v[-1]) + 1) % 10) if v[-1].isdigit() else v[:-2] + "00"
    return group_iban(bad)


def bad_ssn() -> str:
    d = ssn_digits()
    style = rng.randrange(6)
    if style == 0:
        d = "000" + d[3:]
    elif style == 1:
        d = "666" + d[3:]
    elif style == 2:
        d = str(rng.randrange(900, 1000)) + d[3:]
    elif style == 3:
        d = d[:3] + "00" + d[5:]
    elif style == 4:
        d = d[:5] + "0000"
    else:
        d = rng.choice(["078051120", "219099999", "123456789", "111111111", "999999999"])
    sep = rng.choice(["-", "-", " "])
    return f"{d[:3]}{sep}{d[3:5]}{sep}{d[5:]}"


def bad_ip() -> str:
    style = rng.randrange(4)
    o = [rng.randrange(256) for _ in range(4)]
    if style == 0:
        o[rng.randrange(4)] = rng.randrange(256, 1000)
        return ".".join(map(str, o))
    if style == 1:
        return ".".join(map(str, o + [rng.randrange(256)]))
    if style == 2:
        return f"{rng.randrange(1, 10)}.{rng.randrange(10)}.{rng.randrange(10)}.{rng.randrange(10)}.{rng.randrange(10)}"
    return ":".join(f"{rng.randrange(65536):x}" for _ in range(9))


def test_value() -> str:
    return rng.choice([
        "4111 1111 1111 1111", "4242 4242 4242 4242", "4111111111111111", "5555 5555 5555 4444",
        "4012 8888 8888 1881", "3782 822463 10005", "6011 1111 1111 1117", "5105 1051 0510 5100",
        "0000 0000 0000 0000", "1234 5678 9012 3456", "123-45-6789", "000-00-0000",
        "078-05-1120", "(555) 555-0123", "+1 212-555-0147", "555-0100",
        "AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "1234567890",
    ])


def doc_value() -> str:
    return rng.choice([
        f"{fake().user_name()}@example.com", f"{fake().user_name()}@example.org",
        f"admin@{fake().word()}.test", f"192.0.2.{rng.randrange(1, 255)}",
        f"198.51.100.{rng.randrange(1, 255)}", f"203.0.113.{rng.randrange(1, 255)}",
        f"2001:db8::{rng.randrange(1, 65536):x}", f"2001:db8:{rng.randrange(65536):x}::1",
    ])


def placeholder_assignment() -> str:
    key = rng.choice(["password", "DB_PASSWORD", "api_key", "secret", "auth_token", "client_secret"])
    value = rng.choice([
        "changeme", "${DB_PASSWORD}", "<your-api-key>", "get_password()", "xxxxxxxxxxxxxxxx",
        "********", "{{ vault_secret }}", "os.environ['SECRET_KEY']", "config.secret",
        "%PASSWORD%", "$SECRET", "your_api_key_here", "REDACTED", "none", "true", "password",
        "process.env.API_KEY", "<redacted>", "null",
    ])
    op = rng.choice(["=", ": ", " = ", "="])
    return f"{key}{op}{value}"


def placeholder_token() -> str:
    return rng.choice([
        "ghp_" + "x" * 36, "sk_live_" + "x" * 24, "xoxb-xxxxxxxxxxx-xxxxxxxxxxx-" + "x" * 24,
        "glpat-" + "x" * 20, "AKIAXXXXXXXXXXXXXXXX", "-----BEGIN PRIVATE KEY-----\n...\n-----END PRIVATE KEY-----",
        "Bearer <token>", "eyJhbGciOi...",
    ])


def isbn() -> str:
    return fake().isbn13()


def coordinates() -> str:
    lat, lon = fake().latitude(), fake().longitude()
    return f"{float(lat):.5f}, {float(lon):.5f}"


def money() -> str:
    return f"${rng.randrange(1, 10**7):,}.{rng.randrange(100):02d}"


def tracking() -> str:
    return rng.choice([
        "1Z" + rand_str(string.ascii_uppercase + string.digits, 16),
        rand_str(string.digits, 12),
        rand_str(string.digits, 22),
    ])


# --------------------------------------------------------------------------------------------
# Templates

# Upper-case placeholders are labelled with the entity; lower-case ones are unlabelled fillers.
LABELLED: dict[str, tuple[str, Callable[[], str]]] = {
    "EMAIL": ("EMAIL_ADDRESS", email),
    "SA_EMAIL": ("EMAIL_ADDRESS", service_account_email),
    "PHONE": ("PHONE_NUMBER", phone),
    "CARD": ("CREDIT_CARD", credit_card),
    "IBAN": ("IBAN_CODE", iban),
    "SSN": ("US_SSN", ssn),
    "SSN_BARE": ("US_SSN", ssn_bare),
    "IP": ("IP_ADDRESS", ip),
    "IPV4": ("IP_ADDRESS", ipv4),
    "IPV6": ("IP_ADDRESS", ipv6),
    "MAC": ("MAC_ADDRESS", mac),
    "AWS_ID": ("AWS_ACCESS_KEY_ID", aws_key_id),
    "AWS_SECRET": ("AWS_SECRET_ACCESS_KEY", aws_secret),
    "GITHUB": ("GITHUB_TOKEN", github_token),
    "GITLAB": ("GITLAB_TOKEN", gitlab_token),
    "SLACK": ("SLACK_TOKEN", slack_token),
    "SLACK_HOOK": ("SLACK_WEBHOOK_URL", slack_webhook),
    "STRIPE": ("STRIPE_KEY", stripe_key),
    "JWT": ("JWT", jwt),
    "PEM": ("PRIVATE_KEY", private_key),
    "PEM_ESCAPED": ("PRIVATE_KEY", private_key_escaped),
    "PW": ("GENERIC_SECRET", password_bare),
    "PW_QUOTED": ("GENERIC_SECRET", password_quoted),
    "HEX_KEY": ("GENERIC_SECRET", api_key_hex),
    "OPAQUE": ("GENERIC_SECRET", opaque_token),
}

FILLERS: dict[str, Callable[[], str]] = {
    f.__name__: f
    for f in [
        name, first, company, city, date, iso, time, amount, exp, cardtype, bic, host, url_path,
        status, nbytes, ms, custid, word, sentence, repo, apache_ts, street_address, env_name,
        guid, order_no, timestamp, version, sha, bad_luhn_card, bad_iban, bad_ssn, bad_ip,
        test_value, doc_value, placeholder_assignment, placeholder_token, isbn, coordinates,
        money, tracking,
    ]
}

# (category, weight, templates)
GROUPS: list[tuple[str, int, list[str]]] = [
    ("EMAIL_ADDRESS", 300, [
        "Please contact [[name]] at [[EMAIL]] for details.",
        "From: [[name]] <[[EMAIL]]>",
        "Send the signed form to [[EMAIL]] before [[date]].",
        "[[name]] changed the account e-mail to [[EMAIL]] yesterday.",
        "Reply to mailto:[[EMAIL]] if the order [[order_no]] did not arrive.",
        "user=[[EMAIL]] action=login status=[[status]] took=[[ms]]ms",
        "CC: [[EMAIL]], [[EMAIL]]",
        "[[sentence]] Questions go to [[EMAIL]].",
        '{"customer": "[[name]]", "email": "[[EMAIL]]", "created": "[[iso]]"}',
        "Invoice for [[company]] was mailed to [[EMAIL]].",
    ]),
    ("PHONE_NUMBER", 360, [
        "Call me at [[PHONE]] tomorrow.",
        "Phone: [[PHONE]]",
        "[[name]] can be reached on [[PHONE]] during office hours.",
        "Our [[city]] office number is [[PHONE]].",
        "mobile=[[PHONE]] customer_id=[[custid]]",
        "If the line is busy, try [[PHONE]] instead.",
        "[[sentence]] Tel. [[PHONE]]",
        "Please ring [[first]] on [[PHONE]] about ticket [[order_no]].",
        "Emergency contact: [[name]], [[PHONE]]",
        "The courier left a note with the number [[PHONE]] on it.",
    ]),
    ("CREDIT_CARD", 330, [
        "Card number: [[CARD]], exp [[exp]]",
        "The customer paid with [[cardtype]] [[CARD]].",
        "Charge [[CARD]] for $[[amount]] on [[date]].",
        "payment_method=card pan=[[CARD]] amount=[[amount]]",
        "Please update the card on file ([[CARD]]) before [[date]].",
        "[[name]] read out [[CARD]] over the phone.",
        "Transaction declined for [[CARD]] at [[company]].",
        "[[CARD]]",
    ]),
    ("IBAN_CODE", 300, [
        "Please transfer the amount to IBAN [[IBAN]].",
        "Beneficiary: [[name]], account [[IBAN]], BIC [[bic]]",
        "Refund of [[amount]] EUR sent to [[IBAN]] on [[date]].",
        "[[name]] changed their bank details to [[IBAN]].",
        "iban=[[IBAN]] holder=\"[[name]]\"",
        "Die Zahlung geht an [[IBAN]] ([[city]]).",
        "[[IBAN]]",
    ]),
    ("US_SSN", 300, [
        "SSN: [[SSN]]",
        "Social Security Number [[SSN]] on file for [[name]].",
        "[[name]] (ssn [[SSN]]) requested a copy of the report.",
        "The applicant's SSN is [[SSN]].",
        "Please verify social security number [[SSN_BARE]] against the W-2.",
        "ssn=[[SSN]] dob=[[date]]",
        "[[name]], [[street_address]], SSN [[SSN]]",
        "Employee [[custid]]: social security [[SSN]]",
    ]),
    ("IP_ADDRESS", 360, [
        "Login from [[IP]] at [[time]].",
        "client_ip=[[IPV4]] method=GET path=[[url_path]] status=[[status]]",
        "Blocked connection attempt from [[IP]].",
        "The server [[host]] resolves to [[IPV4]].",
        '[[IPV4]] - - [[[apache_ts]]] "GET [[url_path]] HTTP/1.1" [[status]] [[nbytes]]',
        "inet6 [[IPV6]] prefixlen 64 scopeid 0x20<link>",
        "Allowed [[IPV6]] on port 443.",
        "[[iso]] sshd: Failed password for [[word]] from [[IP]] port [[custid]]",
        "Address [[IPV6]] was assigned to [[host]].",
        "Remote address: [[IP]]",
    ]),
    ("MAC_ADDRESS", 240, [
        "Device [[MAC]] joined the network.",
        "MAC address: [[MAC]]",
        "ether [[MAC]] txqueuelen 1000 (Ethernet)",
        "DHCPACK on [[IPV4]] to [[MAC]] via eth0",
        "The printer's hardware address is [[MAC]].",
        "bssid=[[MAC]] ssid=[[word]]-[[word]]",
    ]),
    ("AWS_ACCESS_KEY_ID", 150, [
        "aws_access_key_id = [[AWS_ID]]",
        "Using access key [[AWS_ID]] for the upload to s3://[[word]]-[[word]].",
        "AWS_ACCESS_KEY_ID=[[AWS_ID]]",
        '{"AccessKeyId": "[[AWS_ID]]", "Expiration": "[[iso]]"}',
    ]),
    ("AWS_SECRET_ACCESS_KEY", 150, [
        "aws_secret_access_key = [[AWS_SECRET]]",
        "export AWS_SECRET_ACCESS_KEY=[[AWS_SECRET]]",
        "[default]\naws_access_key_id = [[AWS_ID]]\naws_secret_access_key = [[AWS_SECRET]]",
        '{"AccessKeyId": "[[AWS_ID]]", "SecretAccessKey": "[[AWS_SECRET]]"}',
    ]),
    ("GITHUB_TOKEN", 150, [
        "GITHUB_TOKEN=[[GITHUB]]",
        "git clone https://[[GITHUB]]@github.com/[[repo]].git",
        "The CI log printed [[GITHUB]] in plain text.",
        "Authorization: token [[GITHUB]]",
    ]),
    ("GITLAB_TOKEN", 120, [
        "Use the personal access token [[GITLAB]] to push.",
        'PRIVATE-TOKEN: [[GITLAB]]',
        "gitlab_token: [[GITLAB]]",
    ]),
    ("SLACK_TOKEN", 120, [
        "SLACK_BOT_TOKEN=[[SLACK]]",
        "The bot authenticates with [[SLACK]].",
        'client = WebClient(token="[[SLACK]]")',
    ]),
    ("SLACK_WEBHOOK_URL", 100, [
        "Alerts are posted to [[SLACK_HOOK]]",
        'webhook_url: "[[SLACK_HOOK]]"',
        "curl -X POST -d '{\"text\":\"deploy done\"}' [[SLACK_HOOK]]",
    ]),
    ("STRIPE_KEY", 120, [
        "STRIPE_SECRET_KEY=[[STRIPE]]",
        "stripe.api_key = \"[[STRIPE]]\"",
        "Rotated the live key [[STRIPE]] after the incident.",
    ]),
    ("JWT", 150, [
        "Authorization: Bearer [[JWT]]",
        "token=[[JWT]]",
        "The session cookie was [[JWT]]; it expired at [[iso]].",
        '{"id_token": "[[JWT]]"}',
    ]),
    ("PRIVATE_KEY", 120, [
        "key.pem:\n[[PEM]]\n",
        "Here is the deploy key:\n[[PEM]]",
        '{"type": "service_account", "private_key": "[[PEM_ESCAPED]]\\n", "client_email": "[[SA_EMAIL]]"}',
    ]),
    ("GENERIC_SECRET", 300, [
        "password=[[PW]]",
        "[[env_name]]_PASSWORD=[[PW]]",
        'db_password: "[[PW_QUOTED]]"',
        '"api_key": "[[HEX_KEY]]"',
        "secret = '[[PW_QUOTED]]'",
        "api_key=[[HEX_KEY]]",
        "Authorization: Bearer [[OPAQUE]]",
        "spring.datasource.password=[[PW]]",
        "  password: [[PW]]\n  username: [[word]]",
        "client_secret := \"[[OPAQUE]]\"",
    ]),
    ("MIXED", 400, [
        "[[name]] ([[EMAIL]], [[PHONE]]) paid with [[CARD]] from [[IP]].",
        '{"user": "[[EMAIL]]", "ip": "[[IPV4]]", "ts": "[[iso]]", "order": "[[order_no]]"}',
        "Customer [[name]], SSN [[SSN]], phone [[PHONE]], IBAN [[IBAN]].",
        "[[iso]] INFO request_id=[[guid]] user=[[EMAIL]] ip=[[IP]] took=[[ms]]ms",
        "Refund to [[IBAN]] requested by [[EMAIL]] on [[date]] (ticket [[order_no]]).",
        "DB_HOST=[[IPV4]]\nDB_USER=[[word]]\nDB_PASSWORD=[[PW]]\nSTRIPE_KEY=[[STRIPE]]",
        "Device [[MAC]] at [[IPV6]] belongs to [[name]] <[[EMAIL]]>.",
        "Escalated: [[name]] called from [[PHONE]] about card [[CARD]] (exp [[exp]]).",
    ]),
    ("NEG:guid", 200, [
        "Request [[guid]] completed in [[ms]] ms.",
        "trace_id=[[guid]] span_id=[[guid]]",
        "Object [[guid]] was created by job [[guid]].",
        "CLSID [[guid]]",
    ]),
    ("NEG:order_number", 220, [
        "Order [[order_no]] has shipped.",
        "Your order number is [[order_no]].",
        "Invoice [[order_no]] is due on [[date]].",
        "Tracking number [[tracking]], reference [[order_no]].",
        "Customer [[custid]] placed order [[order_no]] for [[money]].",
    ]),
    ("NEG:timestamp", 220, [
        "Job started at [[timestamp]] and finished at [[timestamp]].",
        "ts=[[timestamp]] level=info msg=\"[[sentence]]\"",
        "[[timestamp]] [[word]] worker heartbeat",
        "Last modified: [[timestamp]]",
    ]),
    ("NEG:version", 200, [
        "Upgraded [[word]] to [[version]].",
        "Running [[word]] [[version]] (build [[version]]).",
        "User-Agent: Mozilla/5.0 (X11; Linux x86_64) Chrome/[[version]] Safari/537.36",
        "Requires [[word]] >= [[version]] and kernel [[version]].",
    ]),
    ("NEG:test_value", 200, [
        "Use [[test_value]] in the sandbox.",
        "Test fixture: [[test_value]]",
        "The docs show [[test_value]] as the example value.",
    ]),
    ("NEG:documentation", 120, [
        "Examples in the docs use [[doc_value]].",
        "See the sample config: host [[doc_value]].",
    ]),
    ("NEG:bad_luhn", 180, [
        "Card number: [[bad_luhn_card]], exp [[exp]]",
        "The customer paid with [[cardtype]] [[bad_luhn_card]].",
        "pan=[[bad_luhn_card]]",
    ]),
    ("NEG:bad_iban", 160, [
        "Please transfer the amount to IBAN [[bad_iban]].",
        "account [[bad_iban]] BIC [[bic]]",
    ]),
    ("NEG:bad_ssn", 180, [
        "SSN: [[bad_ssn]]",
        "Social security number [[bad_ssn]] was rejected as invalid.",
        "ssn=[[bad_ssn]]",
    ]),
    ("NEG:bad_ip", 120, [
        "Connection from [[bad_ip]] refused.",
        "ip=[[bad_ip]] port=[[custid]]",
    ]),
    ("NEG:placeholder", 200, [
        "[[placeholder_assignment]]",
        "Set [[placeholder_assignment]] in your .env file.",
        "Paste your token here: [[placeholder_token]]",
    ]),
    ("NEG:hash", 120, [
        "commit [[sha]]",
        "sha256:[[sha]] pulled in [[ms]]ms",
        "ETag: \"[[sha]]\"",
    ]),
    ("NEG:prose_numbers", 200, [
        "[[name]] lives at [[street_address]], [[city]].",
        "ISBN [[isbn]] is out of print.",
        "Coordinates [[coordinates]] mark the depot.",
        "The budget for [[company]] is [[money]] for [[date]].",
        "Room 4B seats [[ms]] people; the lease ends [[date]].",
        "[[sentence]] [[sentence]]",
    ]),
]


def render(template: str) -> tuple[str, list[dict]]:
    out: list[str] = []
    spans: list[dict] = []
    pos = 0
    for i, part in enumerate(PLACEHOLDER.split(template)):
        if i % 2 == 0:
            out.append(part)
            pos += len(part)
            continue
        if part in LABELLED:
            entity, gen = LABELLED[part]
            value = gen()
            spans.append({"start": pos, "end": pos + len(value), "entity": entity})
        else:
            value = FILLERS[part]()
        out.append(value)
        pos += len(value)
    return "".join(out), spans


def main() -> int:
    # Some Faker providers pick from sets, whose order depends on string hashing: fix the hash
    # seed, or the corpus would differ between runs.
    if os.environ.get("PYTHONHASHSEED") != "0":
        os.environ["PYTHONHASHSEED"] = "0"
        os.execv(sys.executable, [sys.executable, *sys.argv])
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="where to write the JSON Lines corpus")
    ap.add_argument("--seed", type=int, default=20261105)
    ap.add_argument("--records", type=int, default=6000,
                    help="approximate number of records (group sizes are scaled to it)")
    args = ap.parse_args()

    rng.seed(args.seed)
    for i, locale in enumerate(LOCALES):
        f = Faker(locale)
        f.seed_instance(args.seed + i)
        fakers[locale] = f

    total_weight = sum(w for _, w, _ in GROUPS)
    records = []
    for category, weight, templates in GROUPS:
        n = max(1, round(args.records * weight / total_weight))
        for k in range(n):
            text, spans = render(templates[k % len(templates)])
            records.append({"text": text, "spans": spans, "category": category})
    rng.shuffle(records)

    counts: dict[str, int] = {}
    with open(args.out, "w", encoding="utf-8", newline="\n") as fh:
        for r in records:
            for s in r["spans"]:
                counts[s["entity"]] = counts.get(s["entity"], 0) + 1
            fh.write(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n")
    size = sum(len(r["text"].encode()) for r in records)
    print(f"corpus: {len(records)} records, {size / 1e6:.2f} MB of text, "
          f"{sum(counts.values())} labelled spans -> {args.out}", file=sys.stderr)
    for e in sorted(counts):
        print(f"  {e:<24} {counts[e]}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
