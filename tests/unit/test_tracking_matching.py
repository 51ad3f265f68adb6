"""The scored matcher: the same child under small differences links; twins and strangers do not."""

from __future__ import annotations

from datetime import date

from services.tracking.matching import Decision, Person, decide, dob_block, name_block, score, surname_key

ALEX = Person("Alex", "Smith", date(2014, 3, 1), "F", "BS1 5TR")


def test_identical_records_link() -> None:
    assert decide(score(ALEX, ALEX)) == Decision.LINK


def test_spelling_variant_or_missing_postcode_still_links() -> None:
    assert decide(score(ALEX, Person("Alex", "Smyth", date(2014, 3, 1), "F", "BS1 5TR"))) == Decision.LINK
    assert decide(score(ALEX, Person("Alex", "Smith", date(2014, 3, 1), "F", None))) == Decision.LINK


def test_two_doubts_at_once_go_to_a_person() -> None:
    assert decide(score(ALEX, Person("Alex", "Smyth", date(2014, 3, 1), "F", None))) == Decision.REVIEW


def test_transposed_day_and_month_goes_to_a_person() -> None:
    other = Person("Alex", "Smith", date(2014, 1, 3), "F", "BS1 5TR")
    assert decide(score(ALEX, other)) == Decision.REVIEW
    assert dob_block("801", ALEX.date_of_birth) == dob_block("801", other.date_of_birth)  # type: ignore[arg-type]


def test_twins_are_not_linked_automatically() -> None:
    twin = Person("Sam", "Smith", date(2014, 3, 1), "M", "BS1 5TR")
    assert decide(score(ALEX, twin)) != Decision.LINK


def test_different_date_of_birth_or_upn_is_a_different_child() -> None:
    assert score(ALEX, Person("Alex", "Smith", date(2015, 3, 1), "F", "BS1 5TR")) == 0.0
    a = Person("Alex", "Smith", date(2014, 3, 1), upns=frozenset({"A"}))
    b = Person("Alex", "Smith", date(2014, 3, 1), upns=frozenset({"B"}))
    assert score(a, b) == 0.0


def test_stranger_is_new() -> None:
    assert decide(score(ALEX, Person("Jordan", "Okafor", date(2014, 3, 2), "M", "M1 1AA"))) == Decision.NEW


def test_phonetic_block_key() -> None:
    assert surname_key("Smith") == surname_key("Smyth")
    assert name_block("801", "Smith", date(2014, 1, 1)) == name_block("801", "SMYTH", date(2014, 5, 5))
