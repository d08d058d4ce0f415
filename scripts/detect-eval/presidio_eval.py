#!/usr/bin/env python3
"""Runs Microsoft Presidio's analyzer over the evaluation corpus and records what it reports.

Presidio is set up with only its pattern/checksum recognizers for the entities custodian also
detects (e-mail, phone, credit card, IBAN, US SSN, IP and MAC address) and a blank spaCy English
pipeline instead of a downloaded model: no NER recognizer runs, so nothing here needs a model
from outside PyPI. The blank pipeline gets one component that sets each token's lemma to its
lower-cased text, because a blank pipeline has no lemmatizer and Presidio's context enhancer
compares lemmas with its context words ("ssn", "card", "phone", ...); without it no context word
would ever match. The phone recognizer looks for national numbers of the regions custodian's
default configuration has (US, GB, DE); numbers written with '+' are found for every country by
both. tldextract, which the e-mail recognizer uses to check the domain, is pointed at its bundled
public suffix list so that it never tries the network.

Writes one JSON document:

    {"tool": "presidio", "versions": {...}, "records": N, "bytes": B, "chars": C,
     "wall_seconds": s, "cpu_seconds": s, "score_threshold": 0.0, "entities": [...],
     "predictions": [[{"start": 0, "end": 5, "entity": "EMAIL_ADDRESS", "score": 0.5}, ...], ...]}

with one prediction list per corpus record, in corpus order, offsets in code points (Python
string indices) as in the corpus. Timing covers `AnalyzerEngine.analyze` on every record, one
record per call, on one thread, after a short warm-up.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from importlib import metadata

import spacy
import tldextract
from spacy.language import Language

# Before the recognizers are imported, so the e-mail recognizer's `tldextract.extract` resolves
# to an extractor that uses the suffix list shipped with tldextract and never fetches one.
_OFFLINE_TLD = tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None, fallback_to_snapshot=True)
tldextract.extract = _OFFLINE_TLD  # type: ignore[assignment]

from presidio_analyzer import AnalyzerEngine, RecognizerRegistry  # noqa: E402
from presidio_analyzer.nlp_engine import SpacyNlpEngine  # noqa: E402
from presidio_analyzer.predefined_recognizers import (  # noqa: E402
    CreditCardRecognizer,
    EmailRecognizer,
    IbanRecognizer,
    IpRecognizer,
    MacAddressRecognizer,
    PhoneRecognizer,
    UsSsnRecognizer,
)

ENTITIES = [
    "EMAIL_ADDRESS",
    "PHONE_NUMBER",
    "CREDIT_CARD",
    "IBAN_CODE",
    "US_SSN",
    "IP_ADDRESS",
    "MAC_ADDRESS",
]

PHONE_REGIONS = ("US", "GB", "DE")


@Language.component("lower_lemma")
def lower_lemma(doc):
    for token in doc:
        token.lemma_ = token.lower_
    return doc


class BlankSpacyNlpEngine(SpacyNlpEngine):
    """Presidio's spaCy engine over `spacy.blank("en")`: tokens, stop words and lemmas (see
    `lower_lemma`), no named entities, and nothing to download."""

    def __init__(self) -> None:
        super().__init__(models=[{"lang_code": "en", "model_name": "blank:en"}])

    def load(self) -> None:
        nlp = spacy.blank("en")
        nlp.add_pipe("lower_lemma")
        self.nlp = {"en": nlp}


def build_analyzer(score_threshold: float) -> AnalyzerEngine:
    registry = RecognizerRegistry(supported_languages=["en"])
    for recognizer in [
        EmailRecognizer(),
        PhoneRecognizer(supported_regions=PHONE_REGIONS),
        CreditCardRecognizer(),
        IbanRecognizer(),
        UsSsnRecognizer(),
        IpRecognizer(),
        MacAddressRecognizer(),
    ]:
        registry.add_recognizer(recognizer)
    return AnalyzerEngine(
        registry=registry,
        nlp_engine=BlankSpacyNlpEngine(),
        supported_languages=["en"],
        default_score_threshold=score_threshold,
    )


def version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--corpus", required=True, help="corpus.jsonl written by corpus.py")
    ap.add_argument("--out", required=True, help="where to write Presidio's predictions (JSON)")
    ap.add_argument("--score-threshold", type=float, default=0.0,
                    help="AnalyzerEngine's default_score_threshold (Presidio's default is 0)")
    args = ap.parse_args()

    logging.getLogger("presidio-analyzer").setLevel(logging.ERROR)

    with open(args.corpus, encoding="utf-8") as fh:
        texts = [json.loads(line)["text"] for line in fh if line.strip()]

    analyzer = build_analyzer(args.score_threshold)

    for text in texts[:50]:
        analyzer.analyze(text=text, language="en", entities=ENTITIES)

    predictions = []
    cpu0, wall0 = time.process_time(), time.perf_counter()
    for text in texts:
        results = analyzer.analyze(text=text, language="en", entities=ENTITIES)
        predictions.append(results)
    wall = time.perf_counter() - wall0
    cpu = time.process_time() - cpu0

    out = {
        "tool": "presidio",
        "versions": {
            "presidio-analyzer": version("presidio-analyzer"),
            "spacy": version("spacy"),
            "phonenumbers": version("phonenumbers"),
            "tldextract": version("tldextract"),
            "python": sys.version.split()[0],
        },
        "config": f"pattern recognizers only, spacy.blank('en') + lower-case lemmas, "
                  f"phone regions {','.join(PHONE_REGIONS)}, score_threshold {args.score_threshold}",
        "records": len(texts),
        "bytes": sum(len(t.encode("utf-8")) for t in texts),
        "chars": sum(len(t) for t in texts),
        "wall_seconds": wall,
        "cpu_seconds": cpu,
        "score_threshold": args.score_threshold,
        "entities": ENTITIES,
        "predictions": [
            [
                {"start": r.start, "end": r.end, "entity": r.entity_type,
                 "score": round(float(r.score), 4)}
                for r in sorted(results, key=lambda r: (r.start, r.end, r.entity_type))
            ]
            for results in predictions
        ],
    }
    with open(args.out, "w", encoding="utf-8") as fh:
        json.dump(out, fh, ensure_ascii=False)
        fh.write("\n")
    mb = out["bytes"] / 1e6
    print(f"presidio: {len(texts)} records, {mb:.2f} MB in {wall:.1f} s wall / {cpu:.1f} s CPU "
          f"({mb / wall:.3f} MB/s) -> {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
