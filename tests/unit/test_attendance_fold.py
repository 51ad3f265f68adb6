"""Batched folding (``MarkHandler.fold``) against one-record-at-a-time handling (``MarkHandler.handle``): the
same events (ids, payloads, order per pupil), the same final states, redelivery changes nothing, and a bad
record in a batch is reported alone while the others go through."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, date, datetime

import orjson
import pytest

from services.attendance.fold import Emitted, MarkHandler
from services.attendance.rules import AttendanceRules
from services.attendance.state import AttendanceEngine, Outcome, PupilAttendance, SessionMark
from shared.school_calendar import CalendarRegistry
from tests.support.attendance_feed import Record, comparable, feed, handler, mark_record, one_by_one


def nothing_stored(key: bytes) -> bytes | None:
    return None


def batched(
    records: list[Record], rng: random.Random, max_batch: int
) -> tuple[list[Emitted], dict[bytes, bytes]]:
    h = handler()
    table: dict[bytes, bytes] = {}
    emitted: list[Emitted] = []
    i = 0
    while i < len(records):
        n = rng.randint(1, max_batch)
        folded = h.fold(records[i : i + n], table.get)
        assert not folded.poisoned and not folded.one_by_one
        emitted += folded.emitted
        table.update(folded.states)
        i += n
    return emitted, table


@pytest.mark.parametrize("seed", range(6))
def test_batches_emit_exactly_what_one_by_one_emits_and_end_in_the_same_states(seed: int) -> None:
    records = feed(seed)
    expected, expected_table = one_by_one(records)
    assert len(expected) >= 3, "the feed should cross and retract thresholds"
    for max_batch in (2, 25, 500):
        emitted, table = batched(records, random.Random(seed * 100 + max_batch), max_batch)
        assert comparable(emitted) == comparable(expected)
        assert table == expected_table


def test_a_redelivered_batch_changes_nothing() -> None:
    records = feed(7, days=30)
    h = handler()
    table: dict[bytes, bytes] = {}
    first = h.fold(records, table.get)
    table.update(first.states)
    assert first.emitted
    again = h.fold(records, table.get)
    assert again.emitted == [] and again.states == {}
    assert set(again.outcomes) <= {"stale", "not_school_day"}


def test_a_poison_record_is_reported_alone_and_the_rest_goes_through() -> None:
    records = feed(3, days=20)
    upn = records[0][0]
    valid = orjson.loads(records[5][1])
    bad_code = orjson.dumps({**valid, "payload": {**valid["payload"], "code": "H"}})  # not a 2024 code
    poison = {
        10: (upn, b"{not json"),
        40: (b"A801200014999", records[0][1]),
        77: (valid["payload"]["upn"].encode(), bad_code),
    }
    batch = list(records)
    for index in sorted(poison):
        batch.insert(index, poison[index])
    folded = handler().fold(batch, nothing_stored)
    assert folded.one_by_one
    assert [p.index for p in folded.poisoned] == sorted(poison)
    assert {type(p.error).__name__ for p in folded.poisoned} == {"ValidationError", "ValueError"}
    assert folded.outcomes["invalid"] == 3
    expected, expected_table = one_by_one(records)
    assert comparable(folded.emitted) == comparable(expected)
    assert folded.states == expected_table


class FailsOnOneMark(AttendanceEngine):
    """An engine with a bug that one mark triggers (not a validation error)."""

    def __init__(self, event_id: uuid.UUID) -> None:
        super().__init__(CalendarRegistry(), AttendanceRules())
        self.event_id = event_id

    def apply(self, state: PupilAttendance, mark: SessionMark) -> Outcome:
        if mark.event_id == self.event_id:
            raise ZeroDivisionError("a bug")
        return super().apply(state, mark)


def test_a_record_that_trips_a_bug_is_isolated_like_a_poison_record() -> None:
    records = feed(5, days=25)
    culprit = 60
    event_id = uuid.UUID(orjson.loads(records[culprit][1])["event_id"])
    folded = MarkHandler(FailsOnOneMark(event_id)).fold(records, nothing_stored)
    assert [(p.index, type(p.error).__name__) for p in folded.poisoned] == [(culprit, "ZeroDivisionError")]
    expected, expected_table = one_by_one(records[:culprit] + records[culprit + 1 :])
    assert comparable(folded.emitted) == comparable(expected)
    assert folded.states == expected_table


def test_the_fold_writes_each_pupil_once_and_only_pupils_it_changed() -> None:
    records = feed(11, pupils=3, days=12)
    h = handler()
    table: dict[bytes, bytes] = {}
    reads: list[bytes] = []

    def lookup(key: bytes) -> bytes | None:
        reads.append(key)
        return table.get(key)

    folded = h.fold(records, lookup)
    assert sorted(reads) == sorted(set(reads))  # each pupil's state read once per batch
    assert set(folded.states) == {key for key, _ in records}
    table.update(folded.states)
    weekend = mark_record(
        records[0][0].decode(),
        "801",
        "108000",
        date(2024, 9, 7),
        "AM",
        "N",
        datetime(2024, 9, 7, 9, tzinfo=UTC),
    )
    assert h.fold([weekend], table.get).states == {}  # not a school day: nothing to write
