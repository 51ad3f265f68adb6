"""Scored matching of two records of a child when no strong identifier joins them, and the blocking keys that
keep each lookup to a handful of candidates.

Thresholds (see docs/TRACKING.md for why): a score of LINK_THRESHOLD or more links the records to one child; a
score in [REVIEW_THRESHOLD, LINK_THRESHOLD) creates a new child and a possible-duplicate review item for a
person; below REVIEW_THRESHOLD the records are different children.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from datetime import date
from enum import StrEnum

import jellyfish
from rapidfuzz.distance import JaroWinkler

LINK_THRESHOLD = 0.92
REVIEW_THRESHOLD = 0.75

WEIGHTS = {"surname": 0.30, "forename": 0.20, "date_of_birth": 0.30, "sex": 0.05, "postcode": 0.15}


class Decision(StrEnum):
    LINK = "link"
    REVIEW = "review"
    NEW = "new"


@dataclass(frozen=True)
class Person:
    forename: str | None = None
    surname: str | None = None
    date_of_birth: date | None = None
    sex: str | None = None
    postcode: str | None = None
    upns: frozenset[str] = field(default_factory=frozenset)


def normalise_name(name: str | None) -> str:
    """Lower case, accents and punctuation removed, hyphens and spaces collapsed: 'O'Brien-Smith' ->
    'obriensmith'."""
    if not name:
        return ""
    plain = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z]", "", plain.lower())


def surname_key(surname: str | None) -> str:
    """Phonetic blocking key: Smith, Smyth and Smithe share one."""
    name = normalise_name(surname)
    return jellyfish.metaphone(name) if name else ""


def dob_block(la_code: str, dob: date) -> str:
    """Dates of birth with day and month swapped (a common keying error) share one block."""
    low, high = sorted((dob.day, dob.month))
    return f"{la_code}:dob:{dob.year}:{low:02d}{high:02d}"


def name_block(la_code: str, surname: str | None, dob: date) -> str:
    return f"{la_code}:name:{surname_key(surname)}:{dob.year}"


def _name_similarity(a: str | None, b: str | None) -> float | None:
    na, nb = normalise_name(a), normalise_name(b)
    if not na or not nb:
        return None
    return float(JaroWinkler.similarity(na, nb))


def _dob_similarity(a: date | None, b: date | None) -> float | None:
    if a is None or b is None:
        return None
    if a == b:
        return 1.0
    if a.year == b.year and (a.day, a.month) == (b.month, b.day):
        return 0.6  # day and month transposed: plausible keying error, not proof
    if abs((a - b).days) <= 1:
        return 0.5
    return 0.0


def _postcode_similarity(a: str | None, b: str | None) -> float | None:
    if not a or not b:
        return None
    pa, pb = a.replace(" ", "").upper(), b.replace(" ", "").upper()
    if pa == pb:
        return 1.0
    # Outward code (district): everything but the last three characters.
    return 0.6 if pa[:-3] == pb[:-3] else 0.0


def _sex_similarity(a: str | None, b: str | None) -> float | None:
    if not a or not b or "U" in (a, b):
        return None
    return 1.0 if a == b else 0.0


def _parts(a: Person, b: Person) -> dict[str, float | None]:
    """Each field's similarity (None: missing on either side)."""
    return {
        "surname": _name_similarity(a.surname, b.surname),
        "forename": _name_similarity(a.forename, b.forename),
        "date_of_birth": _dob_similarity(a.date_of_birth, b.date_of_birth),
        "sex": _sex_similarity(a.sex, b.sex),
        "postcode": _postcode_similarity(a.postcode, b.postcode),
    }


AGREES = 0.9  # a field whose similarity reaches this agreed (a spelling variant of a name still does)


def fields_agreed(a: Person, b: Person) -> list[str]:
    """The fields both records have and that agree: what a person reviewing a match is told besides the
    score (the names of the fields, never their values)."""
    return [name for name, value in _parts(a, b).items() if value is not None and value >= AGREES]


def score(a: Person, b: Person) -> float:
    """Similarity in [0, 1]; a missing field on either side counts half (neither evidence for nor against)."""
    if a.upns and b.upns and not (a.upns & b.upns):
        return 0.0  # two different UPNs are two different pupils
    parts = _parts(a, b)
    if parts["date_of_birth"] == 0.0:
        return 0.0  # a different date of birth is a different child, however alike the names
    total = sum(WEIGHTS[k] * (0.5 if v is None else v) for k, v in parts.items())
    return round(total, 4)


def decide(value: float) -> Decision:
    if value >= LINK_THRESHOLD:
        return Decision.LINK
    if value >= REVIEW_THRESHOLD:
        return Decision.REVIEW
    return Decision.NEW
