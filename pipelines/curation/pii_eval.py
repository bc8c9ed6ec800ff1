"""A labelled set for the PII stage, and precision/recall per kind on it.

The set is built deterministically from sentence templates with known PII values at
known places, plus hard negatives that look like PII but are not (version strings,
dates, ISBNs, order numbers, digit runs that fail Luhn or mod-97, C++ scopes). It is a
measurement of the redactor's rules, not of real-world prevalence.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass

from lathe.pii import KINDS, find_pii

POSITIVES = {
    "email": ["ada.lovelace@example.org", "j.smith+news@mail.example.co.uk", "ops-team@lathe.dev"],
    "phone": ["+1 415-555-0132", "(020) 7946 0958", "+44 20 7946 0958", "415.555.0199", "+49 30 901820 12"],
    "ip_address": ["192.168.1.10", "10.0.0.254", "2001:db8::8a2e:370:7334", "fe80::1ff:fe23:4567:890a"],
    "credit_card": ["4111 1111 1111 1111", "5500-0000-0000-0004", "378282246310005", "6011111111111117"],
    "iban": ["GB82 WEST 1234 5698 7654 32", "DE89370400440532013000", "FR1420041010050500013M02606"],
    "us_ssn": ["078-05-1120", "219-09-9999", "457-55-5462"],
    "secret": [
        "AKIAIOSFODNN7EXAMPLE",
        "ghp_0123456789abcdefghijABCDEFGHIJ012345",
        "sk-proj-abcdefghijklmnopqrstuvwx1234",
        "xoxb-123456789012-abcdefABCDEF",
    ],
}
NEGATIVES = [
    "Python 3.11.7 was released",
    "on 2024-01-15 at 10:30:00",
    "ISBN 978-0-306-40615-7",
    "order number 123456789",
    "card 4111 1111 1111 1112 is invalid",
    "account GB00 WEST 1234 5698 7654 32 fails its check",
    "use std::vector and a::b",
    "pi is 3.14159265",
    "the range 1-10 and 20-30",
    "port 8080 on version 1.2.3",
    "build 1.2.3.4.5 of the tool",
]
TEMPLATES = [
    "Please contact us at {v} if anything looks wrong.",
    "The value {v} appeared in the log.",
    "Reference: {v}. See the appendix for details.",
    "{v} was listed in the form, next to the name field.",
]


@dataclass(frozen=True)
class LabelledExample:
    text: str
    spans: tuple[tuple[int, int, str], ...]


def labelled_set(seed: int = 7) -> list[LabelledExample]:
    rng = random.Random(seed)
    examples = []
    for kind, values in POSITIVES.items():
        for value in values:
            for template in TEMPLATES:
                prefix, suffix = template.split("{v}")
                negative = rng.choice(NEGATIVES)
                text = f"{negative}. {prefix}{value}{suffix}"
                start = len(negative) + 2 + len(prefix)
                examples.append(LabelledExample(text, ((start, start + len(value), kind),)))
    for negative in NEGATIVES:
        examples.append(LabelledExample(negative, ()))
    return examples


def evaluate(examples: list[LabelledExample] | None = None) -> dict[str, dict[str, float]]:
    """Precision and recall per kind: a found span counts when it matches a labelled one exactly."""
    examples = examples or labelled_set()
    tp: Counter = Counter()
    fp: Counter = Counter()
    fn: Counter = Counter()
    for example in examples:
        found = set(find_pii(example.text))
        truth = set(example.spans)
        for span in found:
            (tp if span in truth else fp)[span[2]] += 1
        for span in truth - found:
            fn[span[2]] += 1
    scores = {}
    for kind in KINDS:
        precision = tp[kind] / (tp[kind] + fp[kind]) if tp[kind] + fp[kind] else 1.0
        recall = tp[kind] / (tp[kind] + fn[kind]) if tp[kind] + fn[kind] else 1.0
        scores[kind] = {"precision": round(precision, 3), "recall": round(recall, 3), "support": tp[kind] + fn[kind]}
    return scores
