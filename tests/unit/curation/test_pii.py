import pytest

from lathe.pii import iban_valid, luhn_valid, redact
from pipelines.curation.pii_eval import evaluate


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("write to ada.lovelace@example.org today", "email"),
        ("call +1 415-555-0132 now", "phone"),
        ("call (020) 7946 0958 now", "phone"),
        ("host 192.168.1.10 is up", "ip_address"),
        ("host 2001:db8::8a2e:370:7334 is up", "ip_address"),
        ("card 4111 1111 1111 1111 charged", "credit_card"),
        ("iban DE89370400440532013000 paid", "iban"),
        ("ssn 078-05-1120 on file", "us_ssn"),
        ("key AKIAIOSFODNN7EXAMPLE leaked", "secret"),
    ],
)
def test_each_kind_is_replaced_by_its_placeholder(text, kind):
    redacted, counts = redact(text)
    assert counts == {kind: 1}
    assert f"<{kind.upper()}>" in redacted


@pytest.mark.parametrize(
    "text",
    [
        "Python 3.11.7 and build 1.2.3.4.5",
        "card 4111 1111 1111 1112 fails Luhn",
        "ISBN 978-0-306-40615-7",
        "std::vector and a::b",
        "released 2023-10-02 at 10:30:00",
    ],
)
def test_lookalikes_are_left_alone(text):
    assert redact(text) == (text, {})


def test_checksums():
    assert luhn_valid("4111111111111111") and not luhn_valid("4111111111111112")
    assert iban_valid("GB82 WEST 1234 5698 7654 32") and not iban_valid("GB00 WEST 1234 5698 7654 32")


def test_kinds_can_be_chosen():
    redacted, counts = redact("a@b.co and 192.168.0.1", kinds=["email"])
    assert redacted == "<EMAIL> and 192.168.0.1" and counts == {"email": 1}


def test_labelled_set_scores():
    scores = evaluate()
    for kind, s in scores.items():
        assert s["support"] > 0, kind
        assert s["precision"] >= 0.95 and s["recall"] >= 0.95, (kind, s)
