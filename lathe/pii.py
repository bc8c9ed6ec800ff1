"""Personal data and secrets in text: find them, or redact each with a typed placeholder.

One detector for the platform: curation's redaction stage (pipelines/curation) cleans
documents with it, and the gateway's ``pii`` guardrail masks or blocks requests and
answers with it.

Kinds: e-mail, phone number, IPv4/IPv6 address, credit card (Luhn-checked), IBAN
(mod-97 checked), US SSN, and secrets shaped like API keys. Checksums keep ordinary
digit runs (ISBNs, order numbers, version strings) from being taken for cards or IBANs.

    text, counts = redact("mail me at ada@example.org")
    # "mail me at <EMAIL>", {"email": 1}
"""

from __future__ import annotations

import ipaddress
import re
from collections import Counter
from collections.abc import Callable, Iterable

PLACEHOLDERS = {
    "email": "<EMAIL>",
    "phone": "<PHONE>",
    "ip_address": "<IP_ADDRESS>",
    "credit_card": "<CREDIT_CARD>",
    "iban": "<IBAN>",
    "us_ssn": "<US_SSN>",
    "secret": "<SECRET>",
}
KINDS = tuple(PLACEHOLDERS)


def luhn_valid(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def iban_valid(candidate: str) -> bool:
    compact = candidate.replace(" ", "").upper()
    if not 15 <= len(compact) <= 34:
        return False
    rearranged = compact[4:] + compact[:4]
    try:
        number = int("".join(str(int(ch, 36)) for ch in rearranged))
    except ValueError:
        return False
    return number % 97 == 1


def _ipv6_valid(candidate: str) -> bool:
    # "a::b" and "std::vector" parse as IPv6; a real address has digits and some length.
    hex_chars = sum(ch != ":" for ch in candidate)
    if hex_chars < 4 or not any(ch.isdigit() for ch in candidate):
        return False
    try:
        ipaddress.IPv6Address(candidate)
    except ValueError:
        return False
    return True


_OCTET = re.compile(r"25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d")


def _ipv4_valid(candidate: str) -> bool:
    return all(_OCTET.fullmatch(octet) for octet in candidate.split("."))


def _card_valid(candidate: str) -> bool:
    digits = re.sub(r"[ -]", "", candidate)
    return 13 <= len(digits) <= 19 and luhn_valid(digits)


# Order matters: secrets and cards before phones, so a phone pattern never eats them.
_PATTERNS: list[tuple[str, re.Pattern, Callable[[str], bool] | None]] = [
    (
        "secret",
        re.compile(
            r"\b(?:AKIA[0-9A-Z]{16}|gh[pousr]_[A-Za-z0-9]{36}|sk-(?:proj-)?[A-Za-z0-9_\-]{20,}"
            r"|xox[baprs]-[A-Za-z0-9\-]{10,}|AIza[0-9A-Za-z_\-]{35}|lk-[A-Za-z0-9_\-]{30,})\b"
        ),
        None,
    ),
    ("email", re.compile(r"\b[A-Za-z0-9._%+\-]+@[A-Za-z0-9.\-]+\.[A-Za-z]{2,}\b"), None),
    ("iban", re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?\b"), iban_valid),
    ("credit_card", re.compile(r"\b\d(?:[ -]?\d){12,18}\b"), _card_valid),
    ("us_ssn", re.compile(r"\b(?!000|666|9\d\d)\d{3}-(?!00)\d{2}-(?!0000)\d{4}\b"), None),
    # Four dotted numbers, each octet checked after the match: one pattern of alternatives
    # per octet costs ten times as much on every position of a long text.
    ("ip_address", re.compile(r"(?<![\d.])\d{1,3}(?:\.\d{1,3}){3}(?!\d|\.\d)"), _ipv4_valid),
    (
        "ip_address",
        re.compile(r"(?=[0-9A-Fa-f:])(?<![\w:])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?![\w:])"),
        _ipv6_valid,
    ),
    (
        # International numbers written with their country code: +CC and 2-5 groups.
        "phone",
        re.compile(r"(?<![\w+])\+\d{1,3}(?:[ .\-]\d{1,6}){2,5}(?![\w-])(?![ .\-]\d)"),
        lambda m: 8 <= sum(ch.isdigit() for ch in m) <= 15,
    ),
    (
        "phone",
        re.compile(
            r"(?=[+(\d])(?<![\w+])(?<!\d[ .\-])(?:\+\d{1,3}[ .\-]?)?(?:\(\d{2,4}\)[ .\-]?|\d{2,4}[ .\-])"
            r"\d{3,4}[ .\-]\d{3,4}(?![\w-])(?![ .\-]\d)"
        ),
        None,
    ),
]


# A character each match of a kind holds: a text without it skips that kind's patterns.
_NEEDS = {"email": "@", "us_ssn": "-"}


def find_pii(text: str, kinds: Iterable[str] = KINDS) -> list[tuple[int, int, str]]:
    """Non-overlapping (start, end, kind) spans, earlier patterns winning."""
    wanted = set(kinds)
    taken: list[tuple[int, int, str]] = []
    for kind, pattern, check in _PATTERNS:
        if kind not in wanted or (kind in _NEEDS and _NEEDS[kind] not in text):
            continue
        for match in pattern.finditer(text):
            start, end = match.span()
            if check is not None and not check(match.group()):
                continue
            if any(start < e and s < end for s, e, _ in taken):
                continue
            taken.append((start, end, kind))
    return sorted(taken)


def redact(text: str, kinds: Iterable[str] = KINDS) -> tuple[str, Counter]:
    spans = find_pii(text, kinds)
    counts: Counter = Counter()
    out, last = [], 0
    for start, end, kind in spans:
        out.append(text[last:start])
        out.append(PLACEHOLDERS[kind])
        counts[kind] += 1
        last = end
    out.append(text[last:])
    return "".join(out), counts
