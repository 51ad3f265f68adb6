"""The same facts give the same clocks, whatever order they arrive in (issue 22): a child's facts run through
tracking's own case code (``services.tracking.cases``) in a given arrival order, and what it publishes
(the child facts and the case transitions, a re-fold's carrying the case's event-time history) through
escalation's units of work on a real (SQLite) database, with the timer on the partition's horizon.

Every test here fails on the code before the history: a late fact that changes no state (a registration
between two missing episodes, an unknown-whereabouts episode inside a missing one) published nothing, so
escalation's clocks followed the order the facts arrived in."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from services.escalation.child_facts import handle_child_fact
from services.escalation.firing import fire_deadline
from services.escalation.models import EscalationCase, EscalationDeadline, EscalationOutbox
from services.escalation.rules import RuleSet
from services.escalation.timer import due_deadline_ids
from services.escalation.transitions import handle_transition
from services.escalation.unit_of_work import Deps, as_utc, mark_processed, set_record_partition
from services.escalation.watermarks import advance_watermark, load_horizon
from services.tracking.cases import ChildRecord, apply_child_fact, new_record
from shared.db import make_engine, migrate, session_scope
from shared.events.catalogue import decode_event
from shared.events.internal import CaseTransition, ChildFact, Escalation
from shared.school_calendar import CalendarRegistry
from tests.support.escalation import LA, child_fact, sqlite_store

MIGRATIONS = Path(__file__).resolve().parents[2] / "services" / "escalation" / "migrations"
TOPIC = "test-cme.escalations.v1"
TRANSITIONS, FACTS = "t.case-transitions", "t.child-events"
CHILD = uuid.UUID("6b1f2a4e-1d3c-4e5f-8a9b-0c1d2e3f4a5b")

# Missing education from Mon 16 Sep 2024 (09:30): the 10 school-day clock is due at the end of Mon 30 Sep.
LEFT = child_fact(CHILD, "pupil-left-roll", date(2024, 9, 16))
REGISTERED = child_fact(CHILD, "pupil-registered", date(2024, 9, 26))  # back in school before the due time
LEFT_AGAIN = child_fact(CHILD, "pupil-left-roll", date(2024, 10, 10))
UNKNOWN = child_fact(CHILD, "whereabouts-unknown", date(2024, 10, 14))
LOCATED = child_fact(CHILD, "child-located", date(2024, 10, 16))
DUE = datetime(2024, 9, 30, 22, 59, 59, tzinfo=UTC)  # 23:59:59 London (BST)


def utc(year: int, month: int, day: int) -> datetime:
    return datetime(year, month, day, tzinfo=UTC)


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    yield from sqlite_store(tmp_path)


@pytest.fixture(scope="module")
def deps() -> Deps:
    return Deps(RuleSet.load(), CalendarRegistry(), TOPIC)


class Pipeline:
    """Tracking's case code, then escalation, one record at a time, as the workers would."""

    def __init__(self, engine: Engine, deps: Deps, now: datetime) -> None:
        self.engine, self.deps, self.now = engine, deps, now
        self.record: ChildRecord = new_record(str(CHILD), LA)
        self.carriers: list[CaseTransition] = []

    def feed(self, *facts: ChildFact) -> None:
        for fact in facts:
            out = apply_child_fact(self.record, fact)
            self.record = out.record
            self.read(fact, FACTS)
            for transition in out.transitions:
                if transition.payload.history is not None:
                    self.carriers.append(transition)
                self.read(transition, TRANSITIONS)

    def read(self, event: ChildFact | CaseTransition, topic: str) -> None:
        with session_scope(self.engine) as session:
            set_record_partition(session, 0)
            if not mark_processed(session, event.event_id, topic):
                return
            if isinstance(event, CaseTransition):
                handle_transition(session, self.deps, event, self.now)
            else:
                handle_child_fact(session, self.deps, event, self.now)
            advance_watermark(session, topic, 0, event.occurred_at)

    def tick(self, horizon_at: datetime) -> None:
        """Both inputs read to the end at ``horizon_at``, the service's clock there (a live worker); the timer
        decides what that lets it."""
        self.now = max(self.now, horizon_at)
        with session_scope(self.engine) as session:
            advance_watermark(session, TRANSITIONS, 0, horizon_at)
            advance_watermark(session, FACTS, 0, horizon_at)
        while True:
            with Session(self.engine) as session:
                horizon = load_horizon(session, (TRANSITIONS, FACTS), self.now)
                found = due_deadline_ids(session, self.now, 1, horizon)
            if not found:
                return
            with session_scope(self.engine) as session:
                fire_deadline(session, self.deps, found[0], self.now, horizon)


def clocks(engine: Engine) -> set[tuple[str, str, str, datetime, str, datetime | None]]:
    """Every deadline: (id, rule, kind, due, status, end of its episode)."""
    with Session(engine) as session:
        rows = session.exec(select(EscalationDeadline)).all()
    return {
        (
            r.id,
            r.rule_id,
            str(r.kind),
            as_utc(r.due_at),
            str(r.status),
            as_utc(r.ended_at) if r.ended_at is not None else None,
        )
        for r in rows
    }


def alerts(engine: Engine) -> list[tuple[str, str, int, datetime]]:
    with Session(engine) as session:
        rows = session.exec(select(EscalationOutbox).order_by(col(EscalationOutbox.id))).all()
    events = [e for e in (decode_event(r.value) for r in rows) if isinstance(e, Escalation)]
    return [(e.payload.rule_id, e.payload.action.value, e.payload.step_index, e.occurred_at) for e in events]


def correlations(engine: Engine) -> dict[uuid.UUID, uuid.UUID | None]:
    """Each Escalation event's id and correlation id (the transition or fact that started its clock)."""
    with Session(engine) as session:
        rows = session.exec(select(EscalationOutbox)).all()
    events = [e for e in (decode_event(r.value) for r in rows) if isinstance(e, Escalation)]
    return {e.event_id: e.correlation_id for e in events}


def case_state(engine: Engine) -> tuple[str, datetime]:
    with Session(engine) as session:
        case = session.get(EscalationCase, (str(CHILD), LA))
        assert case is not None
        return case.state, as_utc(case.state_since)


# -- a fact read after the tick ------------------------------------------------------------------------------


def test_a_late_fact_dated_before_the_due_time_cancels_the_clock_though_no_state_changed(
    engine: Engine, deps: Deps
) -> None:
    run = Pipeline(engine, deps, now=utc(2024, 9, 1))
    run.feed(LEFT, LEFT_AGAIN)  # left again on 10 Oct: still missing, nothing to publish
    run.tick(utc(2024, 9, 27))  # the horizon is short of the due time: nothing decided
    assert alerts(engine) == []
    # Read after the tick, dated 26 Sep: back in school before the 30 Sep clock was due, missing again from
    # 10 Oct. Tracking's state is missing education before and after: the history carries it.
    run.feed(REGISTERED)
    assert len(run.carriers) == 1
    run.tick(utc(2024, 10, 31))
    rules = {(rule, action) for rule, action, _, _ in alerts(engine)}
    assert ("missing_education_no_outcome", "raised") in rules  # the second episode's, due 24 Oct
    assert all(at > utc(2024, 10, 10) for _, _, _, at in alerts(engine))  # nothing from the first one
    assert case_state(engine) == ("missing_education", LEFT_AGAIN.occurred_at)


def test_a_late_fact_dated_after_the_due_time_does_not_cancel_what_fell_due(
    engine: Engine, deps: Deps
) -> None:
    run = Pipeline(engine, deps, now=utc(2024, 9, 1))
    run.feed(LEFT)
    run.tick(utc(2024, 10, 2))  # the clock due 30 Sep fell due while missing: alerted
    assert [(a, s, at) for _, a, s, at in alerts(engine)] == [("raised", 0, DUE)]
    run.feed(UNKNOWN)  # 14 Oct: the missing episode ends there (the step due 7 Oct is still to come)
    # Read late, dated 3 Oct, after the due time: back in school on 3 Oct, whereabouts unknown on 14 Oct.
    registered = child_fact(CHILD, "pupil-registered", date(2024, 10, 3))
    run.feed(registered)
    run.tick(utc(2024, 10, 31))
    missing = [(a, s, at) for r, a, s, at in alerts(engine) if r == "missing_education_no_outcome"]
    # The raised alert stands; it is withdrawn at the registration; the step-up due 7 Oct never goes.
    assert missing == [("raised", 0, DUE), ("cancelled", 0, registered.occurred_at)]


def test_an_immediate_rule_fires_once_for_an_open_episode_however_late_it_is_seen(
    engine: Engine, deps: Deps
) -> None:
    run = Pipeline(engine, deps, now=utc(2024, 9, 1))
    later = child_fact(CHILD, "pupil-left-roll", date(2024, 10, 20))  # a stay in the state, read first
    run.feed(LEFT, later)
    run.tick(utc(2024, 10, 21))
    run.feed(UNKNOWN)  # dated 14 Oct, read after 20 Oct's fact: whereabouts unknown since, still open
    run.tick(utc(2024, 11, 30))
    [carrier] = run.carriers
    # Tracking republishing the history (a redelivery under another id) alerts nobody twice.
    again = carrier.model_copy(update={"event_id": uuid.uuid4()})
    run.read(again, TRANSITIONS)
    run.tick(utc(2024, 11, 30))
    raised = [at for r, a, s, at in alerts(engine) if r == "whereabouts_unknown" and s == 0]
    assert raised == [UNKNOWN.occurred_at]


# -- the same facts in any order -----------------------------------------------------------------------------

FACTS_OF_THE_YEAR = (LEFT, REGISTERED, LEFT_AGAIN, UNKNOWN, LOCATED)


def _in_order(engine: Engine, deps: Deps, order: tuple[ChildFact, ...]) -> Pipeline:
    run = Pipeline(engine, deps, now=utc(2024, 9, 1))
    run.feed(*order)
    return run


@pytest.mark.parametrize(
    "order",
    [
        (UNKNOWN, LEFT, LOCATED, REGISTERED, LEFT_AGAIN),
        (LEFT, LEFT_AGAIN, LOCATED, UNKNOWN, REGISTERED),
        (LOCATED, LEFT_AGAIN, REGISTERED, UNKNOWN, LEFT),
        tuple(reversed(FACTS_OF_THE_YEAR)),
    ],
    ids=["shuffled", "late-in-the-middle", "mostly-backwards", "reversed"],
)
def test_the_same_facts_in_another_order_give_the_same_clocks_and_ids(
    tmp_path: Path, deps: Deps, order: tuple[ChildFact, ...]
) -> None:
    results = []
    for name, facts in (("in-order", FACTS_OF_THE_YEAR), ("arrival", order)):
        url = f"sqlite:///{tmp_path / name}.db"
        migrate(url, MIGRATIONS, "escalation")
        engine = make_engine(url)
        try:
            run = _in_order(engine, deps, facts)
            before_tick = clocks(engine)
            run.tick(utc(2024, 11, 30))
            results.append(
                (before_tick, clocks(engine), alerts(engine), case_state(engine), correlations(engine))
            )
        finally:
            engine.dispose()
    (clocks_a, decided_a, alerts_a, case_a, corr_a), (clocks_b, decided_b, alerts_b, case_b, corr_b) = results
    assert clocks_a == clocks_b  # the same deadlines, ids, due times and episode ends before any tick
    assert decided_a == decided_b
    assert sorted(alerts_a) == sorted(alerts_b)
    # Each event correlates with the transition tracking publishes in order, not the late fact's carrier.
    assert corr_a == corr_b
    assert case_a == case_b
    # The year has both missing episodes' clocks and the unknown-whereabouts alert.
    rules = {rule for _, rule, *_ in clocks_a}
    assert {"missing_education_no_outcome", "whereabouts_unknown"} <= rules


def test_every_order_of_four_facts_gives_the_same_clocks(tmp_path: Path, deps: Deps) -> None:
    facts = (LEFT, REGISTERED, LEFT_AGAIN, UNKNOWN)
    seen: set[frozenset[tuple[str, str, str, datetime, str, datetime | None]]] = set()
    for n, order in enumerate(itertools.permutations(facts)):
        url = f"sqlite:///{tmp_path / str(n)}.db"
        migrate(url, MIGRATIONS, "escalation")
        engine = make_engine(url)
        try:
            _in_order(engine, deps, order)
            seen.add(frozenset(clocks(engine)))
        finally:
            engine.dispose()
    assert len(seen) == 1, f"{len(seen)} different sets of clocks from 24 orders"


def test_the_history_names_the_transitions_tracking_publishes_in_order(engine: Engine, deps: Deps) -> None:
    """The clock a re-fold starts has the id the in-order transition gives it: the history names it."""
    run = Pipeline(engine, deps, now=utc(2024, 9, 1))
    run.feed(LEFT, LEFT_AGAIN, REGISTERED)
    [carrier] = run.carriers
    assert carrier.payload.history is not None
    in_order = Pipeline(engine, deps, now=utc(2024, 9, 1))
    in_order.record = new_record(str(CHILD), LA)
    published: list[uuid.UUID] = []
    for fact in (LEFT, REGISTERED, LEFT_AGAIN):
        out = apply_child_fact(in_order.record, fact)
        in_order.record = out.record
        published += [t.event_id for t in out.transitions]
    assert [s.event_id for s in carrier.payload.history.steps] == published[1:]


# -- an end lifted after the timer decided -------------------------------------------------------------------


def test_a_correction_that_lifts_the_end_reopens_what_was_recorded_for_a_closed_episode(
    tmp_path: Path, deps: Deps
) -> None:
    """Missing from 16 Sep (the clock due 30 Sep); a deletion for home education dated 3 Oct ends the episode
    (a resolution); the timer decides with both read: the 30 Sep clock is recorded for a closed episode,
    alerting nobody. Then the school corrects that deletion (no home education: the child is still missing).
    The episode never closed, so what was recorded is decided again, as if the correction had been read
    before the timer: alerted (late), with its ladder. Before, the escalation stayed closed and the child,
    still missing, was never alerted on again."""
    home_educated = child_fact(CHILD, "pupil-left-roll", date(2024, 10, 3), deletion_ground="f")
    correction = child_fact(
        CHILD, "pupil-left-roll", date(2024, 10, 3), corrects_event_id=home_educated.payload.fact["event_id"]
    )
    results = []
    for name, (first, then) in {
        "correction-read-first": ((LEFT, home_educated, correction), ()),
        "correction-read-after-the-timer": ((LEFT, home_educated), (correction,)),
    }.items():
        url = f"sqlite:///{tmp_path / name}.db"
        migrate(url, MIGRATIONS, "escalation")
        engine = make_engine(url)
        try:
            run = _in_order(engine, deps, first)
            run.tick(utc(2024, 10, 10))
            if then:
                assert alerts(engine) == []  # recorded for a closed episode
                run.feed(*then)
                assert len(run.carriers) == 1
            run.tick(utc(2024, 10, 31))
            results.append((sorted(alerts(engine)), clocks(engine), case_state(engine)))
        finally:
            engine.dispose()
    assert results[0] == results[1]
    missing = [(a, s, at) for r, a, s, at in results[0][0] if r == "missing_education_no_outcome"]
    assert ("raised", 0, DUE) in missing
    assert [s for a, s, _ in missing if a == "stepped_up"] == [1, 2]


def test_a_correction_that_lifts_the_end_of_an_alerted_episode_alerts_again(
    engine: Engine, deps: Deps
) -> None:
    """As above, but a live worker alerted the 30 Sep clock before the deletion for home education (3 Oct)
    was read; that deletion withdrew the alert (``cancelled``: the child was home educated). The school's
    correction says the child is still missing: notify never restarts a withdrawn escalation, so the rule
    starts again, due at the lifted end (3 Oct), and its ladder goes out again (late). Before, nobody was
    told again: the child was out of sight."""
    home_educated = child_fact(CHILD, "pupil-left-roll", date(2024, 10, 3), deletion_ground="f")
    correction = child_fact(
        CHILD, "pupil-left-roll", date(2024, 10, 3), corrects_event_id=home_educated.payload.fact["event_id"]
    )
    run = _in_order(engine, deps, (LEFT,))
    run.tick(utc(2024, 10, 2))
    run.feed(home_educated)
    run.tick(utc(2024, 10, 10))
    missing = [(a, s, at) for r, a, s, at in alerts(engine) if r == "missing_education_no_outcome"]
    assert missing == [("raised", 0, DUE), ("cancelled", 0, home_educated.occurred_at)]
    run.feed(correction)
    [carrier] = run.carriers
    run.tick(utc(2024, 10, 31))
    again = [(a, s, at) for r, a, s, at in alerts(engine) if r == "missing_education_no_outcome"][2:]
    # Step 0 is the caseworker at the close of that school day (its delay: 0 school days).
    assert again[0] == ("raised", 0, datetime(2024, 10, 3, 22, 59, 59, tzinfo=UTC))
    assert [s for a, s, _ in again if a == "stepped_up"] == [1, 2]
    # Tracking republishing the history (a redelivery under another id) starts nothing twice.
    run.read(carrier.model_copy(update={"event_id": uuid.uuid4()}), TRANSITIONS)
    run.tick(utc(2024, 10, 31))
    assert len([a for r, a, *_ in alerts(engine) if r == "missing_education_no_outcome"]) == 2 + len(again)
