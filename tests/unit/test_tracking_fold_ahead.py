"""The urgent lane's fold ahead (services/tracking/stream/fold_ahead_agent.py), as pure logic: each urgent
fact applied to the child's record as the table holds it, its transitions marked provisional and identical
otherwise to what the fold in order publishes; duplicates and re-folds left to the fold in order."""

from __future__ import annotations

import uuid
from datetime import date
from typing import Any

from devtools.samples import sample_event
from services.tracking.cases import ChildRecord, apply_child_fact, new_record
from services.tracking.identity import Resolution
from services.tracking.stream.fold_ahead_agent import fold_ahead
from services.tracking.stream.identity_agent import child_fact
from shared.events.internal import ChildFact, MatchKind

CHILD = str(uuid.uuid4())


def fact(event_type: str, day: int, **kw: Any) -> ChildFact:
    inbound = sample_event(event_type, child_serial=7, on=date(2025, 11, day), la_code="801", **kw)
    return child_fact(inbound, Resolution(child_id=CHILD, match=MatchKind.EXACT, score=None, created=False))


def in_order(record: ChildRecord, facts: list[ChildFact]) -> tuple[ChildRecord, list[Any]]:
    transitions = []
    for f in facts:
        outcome = apply_child_fact(record, f)
        record = outcome.record
        transitions += outcome.transitions
    return record, transitions


def test_the_transitions_are_the_fold_in_orders_marked_provisional() -> None:
    left = fact("pupil-left-roll", 3)
    on_record, _ = in_order(new_record(CHILD, "801"), [left])
    missing = fact("whereabouts-unknown", 10, school_urn=None)
    [folded] = fold_ahead([(CHILD, missing)], {CHILD: on_record})
    _, expected = in_order(on_record, [missing])
    assert folded.result == "provisional"
    assert [t.payload.provisional for t in folded.transitions] == [True]
    assert [t.event_id for t in folded.transitions] == [t.event_id for t in expected]
    assert [t.payload.model_copy(update={"provisional": False}) for t in folded.transitions] == [
        t.payload for t in expected
    ]
    assert str(folded.transitions[0].payload.from_state) == "missing_education"


def test_a_later_fact_of_the_same_child_in_the_batch_goes_on_from_the_earlier_one() -> None:
    missing = fact("whereabouts-unknown", 10, school_urn=None)
    located = fact("child-located", 11)
    folded = fold_ahead([(CHILD, missing), (CHILD, located)], {CHILD: None})
    _, expected = in_order(new_record(CHILD, "801"), [missing, located])
    got = [t for f in folded for t in f.transitions]
    assert [(t.payload.from_state, t.payload.to_state) for t in got] == [
        (t.payload.from_state, t.payload.to_state) for t in expected
    ]
    assert got[1].payload.from_state == got[0].payload.to_state


def test_what_the_record_has_seen_or_a_late_fact_is_left_to_the_fold_in_order() -> None:
    missing = fact("whereabouts-unknown", 10, school_urn=None)
    seen, _ = in_order(new_record(CHILD, "801"), [missing])
    [again] = fold_ahead([(CHILD, missing)], {CHILD: seen})
    assert again.result == "left_to_fold" and again.transitions == []
    # Older than the record's newest fact, and changing the state from then on: a re-fold, with a history.
    later, _ = in_order(new_record(CHILD, "801"), [fact("pupil-left-roll", 3), missing])
    [late] = fold_ahead([(CHILD, fact("child-located", 5))], {CHILD: later})
    assert late.result == "left_to_fold" and late.transitions == []
