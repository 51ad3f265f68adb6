"""Escalation by event time: the horizon, what a late fact cancels and what it does not, the policy for what
fell due in the past, and the same alerts whatever the interleaving of reads and ticks (SQLite, literal dates
on the default 2025/26 calendar)."""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from services.escalation.app import MIGRATIONS
from services.escalation.child_facts import handle_child_fact
from services.escalation.firing import fire_deadline
from services.escalation.models import (
    DeadlineStatus,
    EscalationDeadline,
    EscalationOutbox,
    EscalationRecord,
    EscalationStep,
)
from services.escalation.rules import RuleSet
from services.escalation.timer import due_deadline_ids
from services.escalation.transitions import handle_transition
from services.escalation.unit_of_work import Deps, as_utc, mark_processed, set_record_partition
from services.escalation.watermarks import Horizon, advance_watermark, load_horizon, watermarks
from shared.db import make_engine, migrate, session_scope
from shared.events.catalogue import decode_event
from shared.events.envelope import Envelope
from shared.events.internal import CaseClockExpired, CaseState, CaseTransition, Escalation
from shared.school_calendar import CalendarRegistry
from tests.support.escalation import sqlite_store, transition

TOPIC = "test-cme.escalations.v1"
TRANSITIONS, FACTS = "t.case-transitions", "t.child-events"
MISSING, WHEREABOUTS, IN_EDUCATION = (
    CaseState.MISSING_EDUCATION,
    CaseState.WHEREABOUTS_UNKNOWN,
    CaseState.IN_EDUCATION,
)


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


# Missing education from Mon 3 Nov 2025 10:00: the 10 school-day clock runs out at the end of Mon 17 Nov
# (23:59:59 London = UTC in November).
ENTERED = utc(2025, 11, 3, 10)
DUE = utc(2025, 11, 17, 23, 59, 59)


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    yield from sqlite_store(tmp_path)


@pytest.fixture(scope="module")
def deps() -> Deps:
    return Deps(RuleSet.load(), CalendarRegistry(), TOPIC)


def read(engine: Engine, deps: Deps, event: Envelope, now: datetime, partition: int = 0) -> str:
    """What the worker does with one record: apply it and move the partition's watermark."""
    with session_scope(engine) as session:
        set_record_partition(session, partition)
        if not mark_processed(session, event.event_id, TRANSITIONS):
            return "duplicate"
        if event.event_type == "case-transition":
            action = handle_transition(session, deps, event, now).action  # type: ignore[arg-type]
        else:
            action = handle_child_fact(session, deps, event, now).action  # type: ignore[arg-type]
        advance_watermark(session, TRANSITIONS, partition, event.occurred_at)
    return action


def caught_up(engine: Engine, moment: datetime, partitions: tuple[int, ...] = (0,)) -> None:
    """Both input topics of these partitions read to the end at ``moment``."""
    with session_scope(engine) as session:
        for p in partitions:
            advance_watermark(session, TRANSITIONS, p, moment)
            advance_watermark(session, FACTS, p, moment)


def tick(engine: Engine, deps: Deps, now: datetime) -> list[str]:
    """One timer pass on the stored horizon; the actions of what it decided."""
    actions: list[str] = []
    while True:
        with Session(engine) as session:
            horizon = load_horizon(session, (TRANSITIONS, FACTS), now)
            ids = due_deadline_ids(session, now, 50, horizon)
        if not ids:
            return actions
        for deadline_id in ids:
            with session_scope(engine) as session:
                actions.append(fire_deadline(session, deps, deadline_id, now, horizon).action)


def published(engine: Engine) -> list[Escalation]:
    with Session(engine) as session:
        rows = session.exec(select(EscalationOutbox).order_by(col(EscalationOutbox.id))).all()
    return [e for e in (decode_event(r.value) for r in rows) if isinstance(e, Escalation)]


def brief(engine: Engine) -> list[tuple[str, str, int, datetime]]:
    return [
        (e.payload.rule_id, e.payload.action.value, e.payload.step_index, e.occurred_at)
        for e in published(engine)
    ]


def steps(engine: Engine) -> list[tuple[int, str, bool, str | None, bool]]:
    with Session(engine) as session:
        rows = session.exec(select(EscalationStep).order_by(col(EscalationStep.step_index))).all()
    return [(r.step_index, r.level, r.published, r.withheld, r.late) for r in rows]


# -- the horizon --------------------------------------------------------------------------------------------


def test_horizon_is_the_lowest_watermark_of_the_inputs_capped_at_now(engine: Engine) -> None:
    with session_scope(engine) as session:
        advance_watermark(session, TRANSITIONS, 0, utc(2025, 11, 5))
        advance_watermark(session, FACTS, 0, utc(2025, 11, 4))
        advance_watermark(session, TRANSITIONS, 1, utc(2025, 11, 9))  # partition 1: no child facts read yet
        advance_watermark(session, FACTS, 0, utc(2025, 11, 1))  # never backwards
    with Session(engine) as session:
        assert watermarks(session, [FACTS]) == {(FACTS, 0): utc(2025, 11, 4)}
        horizon = load_horizon(session, (TRANSITIONS, FACTS), utc(2025, 11, 4, 0, 0, 30))
    assert horizon.as_of(0) == utc(2025, 11, 4)
    assert horizon.as_of(1) is None  # nothing decided on a partition not read on every input
    assert horizon.live(0)  # 30 s behind now, within the 60 s live window
    later = Horizon(utc(2025, 11, 6), {0: utc(2025, 11, 4)})
    assert not later.live(0)
    assert later.decidable(0, utc(2025, 11, 3), ended_at=utc(2025, 11, 3, 12))  # ended: decided, silently
    assert not later.decidable(0, utc(2025, 11, 3), ended_at=None)  # still open: waits for the backlog
    assert not later.decidable(
        0, utc(2025, 11, 4, 1), ended_at=utc(2025, 11, 3, 12)
    )  # not due by the horizon
    ahead = Horizon(utc(2025, 11, 6), {0: utc(2025, 12, 1)})  # read ahead of a simulated clock
    assert ahead.as_of(0) == utc(2025, 11, 6)


# -- the three cases ------------------------------------------------------------------------------


def test_a_fact_read_after_the_tick_with_event_time_before_the_due_time_cancels(
    engine: Engine, deps: Deps
) -> None:
    child = uuid.uuid4()
    read(engine, deps, transition(child, MISSING, ENTERED), ENTERED)
    # Tue 18 Nov 08:00: the clock is due, but the partition has only been read up to Mon 17 Nov 12:00 (a
    # backlog): the tick decides nothing. (Before event time, this tick alerted the caseworker.)
    caught_up(engine, utc(2025, 11, 17, 12))
    assert tick(engine, deps, utc(2025, 11, 18, 8)) == []
    # The backlog holds the child's return to school on Mon 17 Nov 09:00, before the clock ran out.
    back = transition(child, IN_EDUCATION, utc(2025, 11, 17, 9), from_state=MISSING)
    assert read(engine, deps, back, utc(2025, 11, 18, 8)) == "applied"
    caught_up(engine, utc(2025, 11, 18, 8, 0, 5))
    assert tick(engine, deps, utc(2025, 11, 18, 8, 0, 5)) == []
    assert published(engine) == []
    with Session(engine) as session:
        (deadline,) = session.exec(select(EscalationDeadline)).all()
    assert deadline.status == DeadlineStatus.CANCELLED


def test_a_fact_with_event_time_after_the_due_time_does_not_cancel(engine: Engine, deps: Deps) -> None:
    child = uuid.uuid4()
    read(engine, deps, transition(child, MISSING, ENTERED), ENTERED)
    # Read before any tick (a backlog), the return on Tue 18 Nov 09:00 comes after the clock ran out: the
    # clock was due while the child was missing and is decided, not cancelled.
    back = transition(child, IN_EDUCATION, utc(2025, 11, 18, 9), from_state=MISSING)
    read(engine, deps, back, utc(2025, 11, 20, 12))
    with Session(engine) as session:
        (deadline,) = session.exec(select(EscalationDeadline)).all()
    assert deadline.ended_at is not None
    assert (deadline.status, as_utc(deadline.ended_at)) == (DeadlineStatus.PENDING, utc(2025, 11, 18, 9))
    assert deadline.end_reason == "case_resolved:in_education"
    # Decided on Thu 20 Nov: the episode closed before now, so it is recorded and alerts nobody.
    caught_up(engine, utc(2025, 11, 20, 12))
    assert tick(engine, deps, utc(2025, 11, 20, 12)) == ["recorded_episode_closed"]
    assert published(engine) == []
    assert steps(engine) == [(0, "caseworker", False, "episode_closed", False)]
    with Session(engine) as session:
        (esc,) = session.exec(select(EscalationRecord)).all()
    assert (esc.status, esc.close_reason) == ("resolved", "case_resolved:in_education")
    # A new episode is not blocked by the recorded one.
    read(engine, deps, transition(child, MISSING, utc(2025, 11, 24, 10), from_state=IN_EDUCATION), ENTERED)
    with Session(engine) as session:
        assert (
            len(session.exec(select(EscalationDeadline).where(EscalationDeadline.status == "pending")).all())
            == 1
        )


def test_live_the_alert_goes_out_at_the_due_time_and_the_later_return_withdraws_it(
    engine: Engine, deps: Deps
) -> None:
    child = uuid.uuid4()
    read(engine, deps, transition(child, MISSING, ENTERED), ENTERED)
    caught_up(engine, utc(2025, 11, 18, 0, 0, 1))
    assert tick(engine, deps, utc(2025, 11, 18, 0, 0, 1)) == ["fired"]
    read(
        engine,
        deps,
        transition(child, IN_EDUCATION, utc(2025, 11, 18, 9), from_state=MISSING),
        utc(2025, 11, 18, 9),
    )
    assert brief(engine) == [
        ("missing_education_no_outcome", "raised", 0, DUE),
        ("missing_education_no_outcome", "cancelled", 0, utc(2025, 11, 18, 9)),
    ]
    assert steps(engine) == [(0, "caseworker", True, None, False)]
    assert not any(e.payload.late for e in published(engine))


def test_an_immediate_rule_fires_once_for_an_open_episode_however_late_it_is_seen(
    engine: Engine, deps: Deps
) -> None:
    child = uuid.uuid4()
    missing = transition(child, WHEREABOUTS, ENTERED)
    now = utc(2025, 11, 20, 12)  # read 17 days late: a worker that was down, a backlog
    read(engine, deps, missing, now)
    # The partition is still a backlog (read up to Tue 4 Nov): an open episode waits, nothing is lost.
    caught_up(engine, utc(2025, 11, 4))
    assert tick(engine, deps, now) == []
    caught_up(engine, now)
    assert tick(engine, deps, now) == ["fired", "fired", "fired"]  # each step its own deadline, in due order
    # Caseworker, and the ladder steps due since (5 school days: Mon 10 Nov; 5 more: Mon 17 Nov), each with
    # the time it fell due, once; all marked late.
    assert brief(engine) == [
        ("whereabouts_unknown", "raised", 0, ENTERED),
        ("whereabouts_unknown", "stepped_up", 1, utc(2025, 11, 10, 23, 59, 59)),
        ("whereabouts_unknown", "stepped_up", 2, DUE),
    ]
    sent_late = [(i, sent, late) for i, _, sent, _, late in steps(engine)]
    assert sent_late == [(0, True, True), (1, True, True), (2, True, True)]
    assert all(e.payload.late for e in published(engine))
    assert read(engine, deps, missing, now) == "duplicate"
    assert tick(engine, deps, utc(2026, 1, 5)) == []
    assert len(published(engine)) == 3


def test_an_immediate_alert_for_an_episode_that_closed_in_the_backlog_is_recorded_not_sent(
    engine: Engine, deps: Deps
) -> None:
    child = uuid.uuid4()
    now = utc(2025, 11, 20, 12)
    read(engine, deps, transition(child, WHEREABOUTS, ENTERED), now)
    read(engine, deps, transition(child, IN_EDUCATION, utc(2025, 11, 5, 9), from_state=WHEREABOUTS), now)
    caught_up(engine, utc(2025, 11, 6))  # still a backlog: what already ended is decided
    assert tick(engine, deps, now) == ["recorded_episode_closed"]
    assert published(engine) == []
    # Steps due before the return (caseworker on 3 Nov) are recorded; the 10 Nov step never fell due.
    assert steps(engine) == [(0, "caseworker", False, "episode_closed", False)]


def test_a_child_reported_now_is_alerted_now_while_the_partition_is_a_backlog(
    engine: Engine, deps: Deps
) -> None:
    """A bulk load left the partition ten minutes behind. A child whose whereabouts became unknown a few
    seconds ago (read ahead of the bulk, as the urgent lane reads it) is alerted at once, not when the bulk is
    read: what the backlog still holds is dated before the episode began, so it cannot end it. A child whose
    episode began before the live window still waits for the backlog, as any open episode does."""
    now = utc(2025, 11, 20, 12)
    reported = now - timedelta(seconds=5)
    older = now - timedelta(minutes=5)
    fresh_child, older_child = uuid.uuid4(), uuid.uuid4()
    read(engine, deps, transition(fresh_child, WHEREABOUTS, reported), now)
    read(engine, deps, transition(older_child, WHEREABOUTS, older), now)
    caught_up(engine, now - timedelta(minutes=10))  # every input read only up to ten minutes ago: a backlog
    assert tick(engine, deps, now) == ["fired"]
    assert brief(engine) == [("whereabouts_unknown", "raised", 0, reported)]
    assert not published(engine)[0].payload.late
    # The backlog read: the older episode is still open, so it is alerted now, marked late (due 5 minutes
    # ago, beyond the live window); the fresh one is not alerted twice.
    caught_up(engine, now)
    assert tick(engine, deps, now) == ["fired"]
    assert [(e.payload.step_index, e.occurred_at, e.payload.late) for e in published(engine)] == [
        (0, reported, False),
        (0, older, True),
    ]


def test_a_fresh_alert_sent_from_a_backlog_is_withdrawn_by_an_end_the_backlog_held(
    engine: Engine, deps: Deps
) -> None:
    """The one thing a backlog can hold about an episode that began now: its end, at or after that instant.
    Read after the alert, it withdraws it (``cancelled``), as on a live partition."""
    now = utc(2025, 11, 20, 12)
    reported = now - timedelta(seconds=20)
    child = uuid.uuid4()
    read(engine, deps, transition(child, WHEREABOUTS, reported), now)
    caught_up(engine, now - timedelta(minutes=10))
    assert tick(engine, deps, now) == ["fired"]
    found = now - timedelta(seconds=10)
    read(engine, deps, transition(child, IN_EDUCATION, found, from_state=WHEREABOUTS), now)
    caught_up(engine, now)
    tick(engine, deps, now)
    assert brief(engine) == [
        ("whereabouts_unknown", "raised", 0, reported),
        ("whereabouts_unknown", "cancelled", 0, found),
    ]


def test_a_step_due_before_the_end_is_decided_before_the_escalation_closes(
    engine: Engine, deps: Deps
) -> None:
    child = uuid.uuid4()
    read(engine, deps, transition(child, WHEREABOUTS, ENTERED), ENTERED)
    caught_up(engine, ENTERED)
    assert tick(engine, deps, ENTERED) == ["fired"]  # caseworker, live
    # The senior officer step fell due at the end of Mon 10 Nov; the child was found on Wed 12 Nov, and both
    # are only read on Thu 13 Nov.
    now = utc(2025, 11, 13, 9)
    read(engine, deps, transition(child, IN_EDUCATION, utc(2025, 11, 12, 9), from_state=WHEREABOUTS), now)
    caught_up(engine, now)
    assert tick(engine, deps, now) == ["recorded_episode_closed"]
    assert brief(engine) == [
        ("whereabouts_unknown", "raised", 0, ENTERED),
        ("whereabouts_unknown", "cancelled", 0, utc(2025, 11, 12, 9)),
    ]
    assert steps(engine) == [
        (0, "caseworker", True, None, False),
        (1, "senior_cme_officer", False, "episode_closed", False),
    ]


# -- the same facts, the same alerts ------------------------------------------------------------------------


def _episodes(child: uuid.UUID) -> list[Envelope]:
    """One child's year: missing, placed, whereabouts unknown, missing again, in event-time order."""
    return [
        transition(child, MISSING, utc(2025, 11, 3, 10)),
        transition(child, IN_EDUCATION, utc(2025, 11, 20, 9), from_state=MISSING),
        transition(child, WHEREABOUTS, utc(2025, 12, 1, 11), from_state=IN_EDUCATION),
        transition(child, MISSING, utc(2025, 12, 9, 14), from_state=WHEREABOUTS),
        transition(child, IN_EDUCATION, utc(2026, 1, 6, 9), from_state=MISSING),
        transition(child, WHEREABOUTS, utc(2026, 1, 20, 10), from_state=IN_EDUCATION),
    ]


def _replay(
    engine: Engine, deps: Deps, events: list[Envelope], frozen: datetime, seed: int
) -> set[tuple[str, str, int]]:
    """Read the events in order with the clock frozen at ``frozen``; ticks fall at random points, the
    horizon moves as records are read and reaches now at the end."""
    rng = random.Random(seed)
    for event in events:
        read(engine, deps, event, frozen)
        with session_scope(engine) as session:  # the child-events partition holds nothing older
            advance_watermark(session, FACTS, 0, event.occurred_at)
        if rng.random() < 0.5:
            tick(engine, deps, frozen)
    caught_up(engine, frozen)
    tick(engine, deps, frozen)
    return {
        (str(e.payload.escalation_id), e.payload.action.value, e.payload.step_index)
        for e in published(engine)
    }


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_a_replay_gives_the_same_alerts_whatever_the_interleaving(
    tmp_path: Path, deps: Deps, seed: int
) -> None:
    children = [uuid.UUID(int=i) for i in range(1, 4)]
    events = sorted((e for c in children for e in _episodes(c)), key=lambda e: e.occurred_at)
    frozen = utc(2026, 1, 21, 12)
    results = []
    for run in range(2):
        url = f"sqlite:///{tmp_path / f'replay-{run}.db'}"
        migrate(url, MIGRATIONS, "escalation")
        eng = make_engine(url)
        try:
            results.append(_replay(eng, deps, events, frozen, seed * 10 + run))
        finally:
            eng.dispose()
    assert results[0] == results[1]
    # Only the episode still open at the frozen time alerts (whereabouts unknown since Tue 20 Jan: the
    # caseworker); the earlier ones closed before now and alerted nobody.
    assert {(a, s) for _, a, s in results[0]} == {("raised", 0)}
    assert len(results[0]) == len(children)


def test_a_late_record_changes_nothing_already_decided(engine: Engine, deps: Deps) -> None:
    # A fact older than its partition's watermark (tracking's output interleaves children): the clock it
    # would have cancelled was decided on the horizon, which had passed it.
    child = uuid.uuid4()
    read(engine, deps, transition(child, MISSING, ENTERED), ENTERED)
    caught_up(engine, utc(2025, 11, 18, 0, 0, 1))
    assert tick(engine, deps, utc(2025, 11, 18, 0, 0, 1)) == ["fired"]
    late = transition(child, IN_EDUCATION, utc(2025, 11, 17, 9), from_state=MISSING)
    read(engine, deps, late, utc(2025, 11, 18, 0, 0, 2))
    assert [a for _, a, _, _ in brief(engine)] == ["raised", "cancelled"]
    assert published(engine)[-1].occurred_at == utc(2025, 11, 17, 9)
    assert timedelta(0) < published(engine)[-1].occurred_at - ENTERED


# -- issue 14: a transfer never registered moves the case (moves_case), decided on event time ------------

TRANSFER = CaseState.TRANSFER_PENDING


def clocks_expired(engine: Engine) -> list[CaseClockExpired]:
    with Session(engine) as session:
        rows = session.exec(select(EscalationOutbox).order_by(col(EscalationOutbox.id))).all()
    return [e for e in (decode_event(r.value) for r in rows) if isinstance(e, CaseClockExpired)]


def lapse_transition(child: uuid.UUID, expired: CaseClockExpired) -> CaseTransition:
    """What tracking publishes when it folds the clock: transfer_pending -> missing_education at the due
    time, caused by the clock."""
    t = transition(child, MISSING, expired.occurred_at, from_state=TRANSFER)
    payload = t.payload.model_copy(
        update={"cause_event_id": expired.event_id, "cause_event_type": "case-clock-expired"}
    )
    return t.model_copy(update={"payload": payload})


def test_a_transfer_clock_tells_tracking_once_decided_on_the_horizon(engine: Engine, deps: Deps) -> None:
    """Left for a named school on Mon 3 Nov 2025 10:00, never registered: at the end of Mon 17 Nov the
    caseworker is alerted and tracking is told (a case-clock-expired dated the due time, naming the wait)."""
    child = uuid.uuid4()
    read(engine, deps, transition(child, TRANSFER, ENTERED), ENTERED)
    caught_up(engine, utc(2025, 11, 17, 23))
    assert tick(engine, deps, utc(2025, 11, 18, 8)) == []  # the partition is not read up to the due time
    assert clocks_expired(engine) == []
    caught_up(engine, utc(2025, 11, 18, 8))
    assert tick(engine, deps, utc(2025, 11, 18, 8)) == ["fired"]
    [expired] = clocks_expired(engine)
    assert expired.occurred_at == DUE and expired.payload.due_at == DUE
    assert expired.payload.clock_started_at == ENTERED and expired.payload.state == TRANSFER
    assert expired.payload.rule_id == "transfer_not_registered" and str(expired.payload.child_id) == str(
        child
    )
    assert brief(engine) == [("transfer_not_registered", "raised", 0, DUE)]
    with Session(engine) as session:
        row = session.exec(
            select(EscalationOutbox).where(EscalationOutbox.event_id == str(expired.event_id))
        ).one()
    assert row.topic == deps.child_events_topic and row.key == str(child)


def test_a_registration_dated_before_the_due_time_read_from_a_backlog_moves_nothing(
    engine: Engine, deps: Deps
) -> None:
    child = uuid.uuid4()
    read(engine, deps, transition(child, TRANSFER, ENTERED), ENTERED)
    caught_up(engine, utc(2025, 11, 17, 12))
    assert tick(engine, deps, utc(2025, 11, 18, 8)) == []
    read(engine, deps, transition(child, IN_EDUCATION, utc(2025, 11, 14, 9), from_state=TRANSFER), ENTERED)
    caught_up(engine, utc(2025, 11, 18, 8))
    assert tick(engine, deps, utc(2025, 11, 18, 8)) == []
    assert clocks_expired(engine) == [] and published(engine) == []


def test_the_move_to_missing_education_keeps_the_transfer_alert_and_starts_its_clocks(
    engine: Engine, deps: Deps
) -> None:
    child = uuid.uuid4()
    read(engine, deps, transition(child, TRANSFER, ENTERED), ENTERED)
    caught_up(engine, utc(2025, 11, 18, 8))
    assert tick(engine, deps, utc(2025, 11, 18, 8)) == ["fired"]
    [expired] = clocks_expired(engine)
    assert read(engine, deps, lapse_transition(child, expired), utc(2025, 11, 18, 8)) == "applied"
    # Not withdrawn as a case that moved on: the alert is the news of the move, and its ladder goes on.
    assert brief(engine) == [("transfer_not_registered", "raised", 0, DUE)]
    with Session(engine) as session:
        pending = session.exec(
            select(EscalationDeadline).where(EscalationDeadline.status == DeadlineStatus.PENDING)
        ).all()
    due = {(d.rule_id, d.kind, d.watch_key): as_utc(d.due_at) for d in pending}
    # Missing education's own clock from the due time: 10 school days after Mon 17 Nov is Mon 1 Dec.
    assert due[("missing_education_no_outcome", "rule", "missing_education")] == utc(2025, 12, 1, 23, 59, 59)
    assert due[("transfer_not_registered", "step", "missing_education")] == utc(2025, 11, 24, 23, 59, 59)
    caught_up(engine, utc(2025, 11, 25, 8))
    assert tick(engine, deps, utc(2025, 11, 25, 8)) == ["fired"]
    assert brief(engine)[-1] == ("transfer_not_registered", "stepped_up", 1, utc(2025, 11, 24, 23, 59, 59))


def test_a_late_registration_dated_before_the_due_time_undoes_the_move_and_withdraws_the_alert(
    engine: Engine, deps: Deps
) -> None:
    """Tracking re-folds the registration of Fri 14 Nov, read after the move: its transition from missing
    education is dated before the move (the state escalation holds), and is applied, not taken as stale."""
    child = uuid.uuid4()
    read(engine, deps, transition(child, TRANSFER, ENTERED), ENTERED)
    caught_up(engine, utc(2025, 11, 18, 8))
    tick(engine, deps, utc(2025, 11, 18, 8))
    [expired] = clocks_expired(engine)
    read(engine, deps, lapse_transition(child, expired), utc(2025, 11, 18, 8))
    registered = transition(child, IN_EDUCATION, utc(2025, 11, 14, 9), from_state=MISSING)
    assert read(engine, deps, registered, utc(2025, 11, 19, 9)) == "applied"
    assert brief(engine) == [
        ("transfer_not_registered", "raised", 0, DUE),
        ("transfer_not_registered", "cancelled", 0, utc(2025, 11, 14, 9)),
    ]
    with Session(engine) as session:
        assert (
            session.exec(
                select(EscalationDeadline).where(EscalationDeadline.status == DeadlineStatus.PENDING)
            ).all()
            == []
        )
    # A transition from a state escalation does not hold, dated earlier, is still stale.
    stray = transition(child, WHEREABOUTS, utc(2025, 11, 10, 9), from_state=TRANSFER)
    assert read(engine, deps, stray, utc(2025, 11, 19, 9)) == "stale"
