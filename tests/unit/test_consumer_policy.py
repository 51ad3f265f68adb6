"""The one dead-letter policy (``shared.consumer.decide``): what is retried, how often, what goes to the
dead-letter topic."""

from __future__ import annotations

from pydantic import BaseModel, ValidationError
from sqlalchemy.exc import IntegrityError, OperationalError

from shared.consumer import MAX_ATTEMPTS, backoff, decide


class _Strict(BaseModel):
    n: int


def _validation_error() -> ValidationError:
    try:
        _Strict.model_validate({"n": "x"})
    except ValidationError as exc:
        return exc
    raise AssertionError("no error")


def test_poison_is_dead_lettered_on_the_first_try() -> None:
    for error in (_validation_error(), ValueError("bad json"), KeyError("payload"), TypeError("none")):
        assert (decide(error, 1).action, decide(error, 1).reason) == ("dead_letter", "poison")


def test_a_transient_error_is_retried_however_many_times_it_failed() -> None:
    outage = OperationalError("SELECT 1", {}, Exception("connection refused"))
    for attempt in (1, MAX_ATTEMPTS, 100):
        assert (decide(outage, attempt).action, decide(outage, attempt).reason) == ("retry", "transient")
    assert decide(ConnectionError(), 50).action == "retry"


def test_another_error_is_retried_up_to_the_attempts_then_dead_lettered() -> None:
    bug = IntegrityError("INSERT", {}, Exception("duplicate key"))
    assert [decide(bug, a).action for a in range(1, MAX_ATTEMPTS + 1)] == ["retry"] * (MAX_ATTEMPTS - 1) + [
        "dead_letter"
    ]
    assert decide(bug, MAX_ATTEMPTS).reason == "attempts"


def test_the_backoff_doubles_up_to_ten_seconds() -> None:
    assert [backoff(a) for a in range(1, 8)] == [0.5, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
