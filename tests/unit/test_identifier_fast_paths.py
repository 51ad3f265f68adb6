"""The fast UPN and postcode validators accept, normalise and reject exactly as the rule-by-rule code did
(issue 21). The code before the change is kept here as the oracle and both are run over many generated
inputs, valid and invalid, including what Python's own string methods treat loosely: non-ASCII digits
(``str.isdigit`` is true for Arabic-Indic and full-width digits), letters whose upper case is ASCII
(dotless i, long s), letters whose upper case is longer (sharp s, ligatures), and Unicode whitespace."""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Iterator

import pytest

from shared.identifiers import (
    UPN_ALPHABET,
    UPN_LA_CODES,
    _upn_is_valid,
    validate_postcode,
    validate_upn,
)

# --- The oracle: shared/identifiers.py as of main 415d0e2 -------------------------------------------------
_OLD_UPN_SHAPE = re.compile(r"^[A-Z][0-9]{3}[0-9]{4}[0-9]{2}[0-9]{2}[0-9A-Z]$")


def old_upn_check_letter(body: str) -> str:
    total = 0
    for weight, char in enumerate(body, start=2):
        value = UPN_ALPHABET.index(char) if char.isalpha() else int(char)
        total += weight * value
    return UPN_ALPHABET[total % 23]


def old_validate_upn(value: str) -> str:
    upn = value.strip().upper()
    if len(upn) != 13:
        raise ValueError("UPN must be 13 characters")
    if not _OLD_UPN_SHAPE.match(upn):
        raise ValueError("UPN must be a check letter, 11 digits and a final digit or letter (temporary UPN)")
    if upn[-1].isalpha() and upn[-1] not in UPN_ALPHABET:
        raise ValueError("a temporary UPN's final letter cannot be I, O or S")
    if upn[1:4] not in UPN_LA_CODES:
        raise ValueError("UPN characters 2-4 are not the number of any LA that issues UPNs")
    if upn[0] != old_upn_check_letter(upn[1:]):
        raise ValueError("UPN check letter does not match the digits")
    return upn


def old_validate_postcode(value: str) -> str:
    compact = value.replace(" ", "").upper()
    if not re.fullmatch(r"[A-Z]{1,2}[0-9][0-9A-Z]?[0-9][A-Z]{2}", compact):
        raise ValueError("postcode is not a UK postcode")
    return f"{compact[:-3]} {compact[-3:]}"


# --- Generated inputs -------------------------------------------------------------------------------------
ARABIC_INDIC = "".join(chr(0x660 + d) for d in range(10))
FULL_WIDTH = "".join(chr(0xFF10 + d) for d in range(10))
DEVANAGARI = "".join(chr(0x966 + d) for d in range(10))
SUPERSCRIPT = "\u2070\u00b9\u00b2\u00b3" + "".join(chr(0x2074 + d) for d in range(6))  # isdigit(), not int()
# dotless i and long s (upper case I and S), sharp s and the ff ligature (upper case longer), A grave,
# e acute, the Kelvin sign, full-width A and a, sigma
ODD_LETTERS = "\u0131\u017f\u00df\ufb00\u00c0\u00e9\u212a\uff21\uff41\u03a3"
WHITESPACE = [" ", "\t", "\n", "\r", "\x0b", "\x0c", "\x1c", "\x1f", "\x85", "\xa0", "\u2003", "\u3000"]
ALL_DIGITS = "0123456789" + ARABIC_INDIC + FULL_WIDTH + DEVANAGARI + SUPERSCRIPT


def valid_upn(rng: random.Random, temporary: bool = False) -> str:
    la = rng.choice(sorted(UPN_LA_CODES))
    rest = "".join(rng.choice("0123456789") for _ in range(8))
    last = rng.choice(UPN_ALPHABET) if temporary else rng.choice("0123456789")
    body = la + rest + last
    return old_upn_check_letter(body) + body


def mutate(rng: random.Random, text: str) -> str:
    """One or two random edits of the kinds a feed gets wrong."""
    for _ in range(rng.choice((1, 1, 2))):
        if not text:
            return text
        i = rng.randrange(len(text))
        kind = rng.randrange(12)
        if kind == 0:  # another check letter (any A-Z), or another first character
            text = rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ") + text[1:]
        elif kind == 1:
            text = text.lower() if rng.random() < 0.5 else text[:i] + text[i].lower() + text[i + 1 :]
        elif kind == 2:  # whitespace around or inside
            space = rng.choice(WHITESPACE)
            text = rng.choice((space + text, text + space, text[:i] + space + text[i:]))
        elif kind == 3:  # a character dropped or doubled: wrong length
            text = text[:i] + text[i + 1 :] if rng.random() < 0.5 else text[:i] + text[i] + text[i:]
        elif kind == 4:  # a non-ASCII digit of the same value where an ASCII one was
            if text[i] in "0123456789":
                alphabet = rng.choice((ARABIC_INDIC, FULL_WIDTH, DEVANAGARI, SUPERSCRIPT))
                text = text[:i] + alphabet[int(text[i])] + text[i + 1 :]
        elif kind == 5:
            text = text[:i] + rng.choice(ODD_LETTERS) + text[i + 1 :]
        elif kind == 6:  # a temporary UPN's forbidden letters, or any letter, last
            text = text[:-1] + rng.choice("IOS" + UPN_ALPHABET)
        elif kind == 7:  # another digit anywhere (usually breaks the check letter)
            text = text[:i] + rng.choice("0123456789") + text[i + 1 :]
        elif kind == 8:  # an LA that issues no UPNs (or any three digits)
            text = text[:1] + f"{rng.randrange(1000):03d}" + text[4:]
        elif kind == 9:  # two neighbours swapped
            if i + 1 < len(text):
                text = text[:i] + text[i + 1] + text[i] + text[i + 2 :]
        elif kind == 10:  # any digit of any script, anywhere
            text = text[:i] + rng.choice(ALL_DIGITS) + text[i + 1 :]
        else:  # truncated or extended
            text = text[:i] if rng.random() < 0.5 else text + rng.choice("0123456789A")
    return text


def random_text(rng: random.Random) -> str:
    alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabc " + ARABIC_INDIC + FULL_WIDTH + ODD_LETTERS
    return "".join(rng.choice(alphabet) for _ in range(rng.choice((0, 1, 12, 13, 13, 13, 14, 20))))


def upn_inputs(count: int, seed: int = 21) -> Iterator[str]:
    rng = random.Random(seed)
    for n in range(count):
        good = valid_upn(rng, temporary=n % 5 == 0)
        choice = n % 4
        if choice == 0:
            yield good
        elif choice == 3:
            yield random_text(rng) if n % 8 == 3 else mutate(rng, mutate(rng, good))
        else:
            yield mutate(rng, good)


def outcome(validate: Callable[[str], str], value: str) -> tuple[str, str]:
    try:
        return "ok", validate(value)
    except ValueError as exc:  # any other exception is a failure of the test
        return "error", str(exc)


def test_upn_matches_the_old_rules_on_generated_inputs() -> None:
    accepted = rejected = 0
    messages: set[str] = set()
    for value in upn_inputs(60_000):
        expected = outcome(old_validate_upn, value)
        assert outcome(validate_upn, value) == expected, ascii(value)
        if expected[0] == "ok":
            accepted += 1
            # the table check agrees with the rules wherever the input reaches it
            assert _upn_is_valid(expected[1])
        else:
            rejected += 1
            messages.add(expected[1])
    # the generator reaches both sides and every rule's message (a test that cannot fail is a defect)
    assert accepted > 15_000 and rejected > 20_000
    assert len(messages) == 5, messages


def test_upn_on_every_check_letter_and_every_final_character() -> None:
    rng = random.Random(7)
    for _ in range(400):
        good = valid_upn(rng)
        for first in "ABCDEFGHIJKLMNOPQRSTUVWXYZ":
            value = first + good[1:]
            assert outcome(validate_upn, value) == outcome(old_validate_upn, value), value
        for last in "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ":
            body = good[1:-1] + last
            for value in (old_upn_check_letter(body) + body if last not in "IOS" else "A" + body, "B" + body):
                assert outcome(validate_upn, value) == outcome(old_validate_upn, value), value


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("B801200005001", ("ok", "B801200005001")),
        (" b801200005001\t", ("ok", "B801200005001")),
        ("\x1cB801200005001", ("ok", "B801200005001")),  # str.strip() removes the separators too
        ("B80120000500", ("error", "UPN must be 13 characters")),
        ("B\uff1801200005001", ("error", "UPN must be a check letter, 11 digits and a final digit or letter "
                                    "(temporary UPN)")),
        ("B\u066801200005001", ("error", "UPN must be a check letter, 11 digits and a final digit or letter "
                                   "(temporary UPN)")),
        ("\u0131801200005001", ("error", "UPN check letter does not match the digits")),  # upper() makes it I
        ("A80120000500I", ("error", "a temporary UPN's final letter cannot be I, O or S")),
        ("A80120000500\u017f", ("error", "a temporary UPN's final letter cannot be I, O or S")),
        ("A999200005001", ("error", "UPN characters 2-4 are not the number of any LA that issues UPNs")),
        ("C801200005001", ("error", "UPN check letter does not match the digits")),
    ],
)  # fmt: skip
def test_upn_known_cases(value: str, expected: tuple[str, str]) -> None:
    assert outcome(old_validate_upn, value) == expected
    assert outcome(validate_upn, value) == expected


def postcode_inputs(count: int, seed: int = 22) -> Iterator[str]:
    rng = random.Random(seed)
    letters = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    for n in range(count):
        outward = (
            "".join(rng.choice(letters) for _ in range(rng.choice((1, 2))))
            + rng.choice("0123456789")
            + rng.choice(("", rng.choice("0123456789" + letters)))
        )
        inward = rng.choice("0123456789") + rng.choice(letters) + rng.choice(letters)
        good = rng.choice((f"{outward} {inward}", outward + inward, f" {outward.lower()}  {inward} "))
        yield good if n % 3 == 0 else mutate(rng, good)


def test_postcode_matches_the_old_rules_on_generated_inputs() -> None:
    results = [outcome(old_validate_postcode, v) for v in postcode_inputs(20_000)]
    for value, expected in zip(postcode_inputs(20_000), results, strict=True):
        assert outcome(validate_postcode, value) == expected, ascii(value)
    assert 5_000 < sum(r[0] == "ok" for r in results) < 15_000
