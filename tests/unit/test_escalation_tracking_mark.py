"""Tracking's mark in escalation's horizon (SQLite; the consumer's assignment and end offsets stand in for the
broker, which the integration test uses): a clock due at T is decided only once tracking has folded every fact
up to T on its partition, even when escalation has read both of its inputs to their end; except a deadline due
at the instant its clock started (an immediate rule and its zero-delay steps), which a live partition decides
on what escalation has read (the urgent lane's provisional transitions)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiokafka import TopicPartition
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, func, select

from services.escalation.app import MIGRATIONS, load_deps
from services.escalation.models import (
    DeadlineKind,
    EscalationDeadline,
    EscalationProcessedEvent,
    EscalationRecord,
    EscalationStep,
    EscalationWatermark,
)
from services.escalation.settings import EscalationSettings
from services.escalation.timesource import SimulatedTime
from services.escalation.watermarks import (
    NO_TIME,
    EndSamples,
    advance_watermark,
    load_horizon,
    tracking_mark_topic,
    watermarks,
)
from services.escalation.worker import EscalationWorker
from shared.consumer import ConsumerLoop, Record
from shared.db import make_engine, migrate
from shared.events.catalogue import encode_event
from shared.events.internal import CaseState, CaseTransition, tracking_progress
from shared.outbox import OutboxRelay
from shared.topics import CASE_TRANSITIONS, CHILD_EVENTS, URGENT_TRANSITIONS, TopicSpec
from tests.support.escalation import LA, transition

PARTITION = 1


def utc(day: int, hour: int, minute: int = 0, second: int = 0) -> datetime:
    return datetime(2025, 11, day, hour, minute, second, tzinfo=UTC)


NOW = utc(3, 12)
# The clock under test runs out at 11:59:30, within the live window of now, so it is alerted when decided: the
# LA's whereabouts-unknown rule below counts an hour (not immediate, so tracking's mark holds it).
DUE_AT = utc(3, 11, 59, 30)
MISSING_AT = utc(3, 10, 59, 30)
HOUR_LATER_RULE = """
replace:
  - id: whereabouts_unknown
    version: 9
    description: Whereabouts unknown for an hour (a test's rule, so that the clock is not immediate).
    citation: none (test)
    watches: {state: whereabouts_unknown}
    clock: {unit: hours, amount: 1}
    ladder:
      - {level: caseworker, delay: {unit: hours, amount: 0}}
"""


class FakeConsumer:
    """What ``mark_caught_up`` asks the consumer: its assignment, the partitions' ends, its positions."""

    def __init__(self, ends: dict[TopicPartition, int]) -> None:
        self.ends = ends

    def assignment(self) -> set[TopicPartition]:
        return set(self.ends)

    async def end_offsets(self, partitions: list[TopicPartition]) -> dict[TopicPartition, int]:
        return {tp: self.ends[tp] for tp in partitions}

    async def position(self, tp: TopicPartition) -> int:
        return self.ends[tp]  # everything read and handled


def make_settings(tmp_path: Path, *, immediate: bool = False, **extra: Any) -> EscalationSettings:
    """``immediate``: the default rules (whereabouts unknown alerts at once); else the hour-later rule."""
    rules = tmp_path / ("default-rules" if immediate else "hour-later-rules")
    rules.mkdir(exist_ok=True)
    if not immediate:
        (rules / f"{LA}.yaml").write_text(HOUR_LATER_RULE)
    return EscalationSettings(
        topic_prefix="t-", database_url=f"sqlite:///{tmp_path / 'esc.db'}", rules_dir=rules, **extra
    )


@pytest.fixture
def settings(tmp_path: Path) -> EscalationSettings:
    return make_settings(tmp_path)


@pytest.fixture
def engine(settings: EscalationSettings) -> Iterator[Engine]:
    migrate(settings.database_url, MIGRATIONS, "escalation")
    eng = make_engine(settings.database_url)
    yield eng
    eng.dispose()


def make_worker(settings: EscalationSettings, engine: Engine, facts_end: int = 3) -> EscalationWorker:
    worker = EscalationWorker(settings, engine, load_deps(settings), SimulatedTime(NOW))
    worker._loop.consumer = FakeConsumer(  # type: ignore[assignment]
        {
            TopicPartition(CASE_TRANSITIONS.name(settings), PARTITION): 10,
            TopicPartition(CHILD_EVENTS.name(settings), PARTITION): facts_end,
        }
    )
    return worker


@pytest.fixture
def worker(settings: EscalationSettings, engine: Engine) -> EscalationWorker:
    return make_worker(settings, engine)


class Feed:
    """Records on partition PARTITION of the transitions topic, at increasing offsets."""

    def __init__(self, worker: EscalationWorker, settings: EscalationSettings) -> None:
        self.worker, self.settings, self.offset = worker, settings, 0

    def send(self, value: bytes, partition: int = PARTITION, topic: TopicSpec = CASE_TRANSITIONS) -> str:
        raw = Record(topic.name(self.settings), partition, self.offset, b"k", value)
        self.offset += 1
        return self.worker.handle_records([raw])[0].action

    def mark(self, next_offset: int, folded_to: datetime | None, partition: int = PARTITION) -> str:
        return self.send(encode_event(tracking_progress(partition, next_offset, folded_to)), partition)


def raised(engine: Engine) -> int:
    """The rule clocks decided (fired)."""
    with Session(engine) as session:
        stmt = select(func.count()).select_from(EscalationDeadline)
        stmt = stmt.where(EscalationDeadline.kind == DeadlineKind.RULE, EscalationDeadline.status == "fired")
        return int(session.exec(stmt).one())


def tracking_mark(engine: Engine, settings: EscalationSettings) -> EscalationWatermark | None:
    with Session(engine) as session:
        return session.get(EscalationWatermark, (tracking_mark_topic(CHILD_EVENTS.name(settings)), PARTITION))


def input_marks(engine: Engine, settings: EscalationSettings) -> dict[tuple[str, int], datetime]:
    with Session(engine) as session:
        return watermarks(session, [CASE_TRANSITIONS.name(settings), CHILD_EVENTS.name(settings)])


async def test_a_due_clock_waits_until_tracking_has_folded_up_to_its_due_time(
    worker: EscalationWorker, settings: EscalationSettings, engine: Engine
) -> None:
    feed = Feed(worker, settings)
    assert feed.send(encode_event(transition(uuid.uuid4(), CaseState.WHEREABOUTS_UNKNOWN, MISSING_AT))) == (
        "applied"
    )
    # Escalation has read both inputs to their end, but tracking has said nothing: nothing is decided.
    assert await worker.run_due_check() == 0
    assert input_marks(engine, settings)[(CHILD_EVENTS.name(settings), PARTITION)] == NOW
    # Tracking has folded the partition up to 11:59:29, no further (its offset is behind the facts' end).
    assert feed.mark(2, utc(3, 11, 59, 29)) == "progress"
    assert await worker.run_due_check() == 0
    assert raised(engine) == 0
    # Reading the transitions topic to its end moved its watermark no further than tracking's mark.
    assert input_marks(engine, settings)[(CASE_TRANSITIONS.name(settings), PARTITION)] == utc(3, 11, 59, 29)
    # Tracking passes the due time: the clock is decided.
    feed.mark(2, utc(3, 11, 59, 31))
    await worker.run_due_check()
    assert raised(engine) == 1


async def test_tracking_folded_to_the_partitions_end_is_caught_up_at_now(
    worker: EscalationWorker, settings: EscalationSettings, engine: Engine
) -> None:
    feed = Feed(worker, settings)
    feed.send(encode_event(transition(uuid.uuid4(), CaseState.WHEREABOUTS_UNKNOWN, MISSING_AT)))
    feed.mark(2, None)  # one record of the child-events partition (end: 3) still to fold: no time claimed
    assert await worker.run_due_check() == 0
    mark = tracking_mark(engine, settings)
    assert mark is not None and mark.next_offset == 2 and mark.watermark.replace(tzinfo=UTC) == NO_TIME
    feed.mark(3, None)  # every record before the end asked for after now: tracking is caught up at now
    await worker.run_due_check()
    mark = tracking_mark(engine, settings)
    assert mark is not None and mark.watermark.replace(tzinfo=UTC) == NOW
    assert raised(engine) == 1


def test_the_mark_never_moves_backwards_and_is_nothing_else(
    worker: EscalationWorker, settings: EscalationSettings, engine: Engine
) -> None:
    feed = Feed(worker, settings)
    feed.mark(7, utc(3, 11))
    feed.mark(3, utc(3, 9))  # a repeat after a crash, or a worker that had read less
    feed.mark(5, None)
    mark = tracking_mark(engine, settings)
    assert mark is not None and mark.next_offset == 7 and mark.watermark.replace(tzinfo=UTC) == utc(3, 11)
    feed.mark(8, utc(3, 11, 30))
    mark = tracking_mark(engine, settings)
    assert mark is not None and mark.next_offset == 8 and mark.watermark.replace(tzinfo=UTC) == utc(3, 11, 30)
    # It moves neither the transitions topic's watermark nor leaves a processed-event row.
    assert input_marks(engine, settings) == {}
    with Session(engine) as session:
        assert session.exec(select(func.count()).select_from(EscalationProcessedEvent)).one() == 0


def test_a_mark_on_another_partition_than_the_one_it_names_is_not_applied(
    worker: EscalationWorker, settings: EscalationSettings, engine: Engine
) -> None:
    raw = Record(
        CASE_TRANSITIONS.name(settings), 2, 0, None, encode_event(tracking_progress(1, 5, utc(3, 11)))
    )
    assert worker.handle_records([raw])[0].action == "misrouted"
    with Session(engine) as session:
        rows = session.exec(select(EscalationWatermark).where(col(EscalationWatermark.partition) >= 0)).all()
    assert rows == []


def test_the_horizon_is_the_lowest_of_the_three_marks(
    worker: EscalationWorker, settings: EscalationSettings, engine: Engine
) -> None:
    Feed(worker, settings).mark(1, utc(3, 9))
    with Session(engine) as session:
        horizon = load_horizon(session, worker._horizon_topics, NOW)
    assert horizon.as_of(PARTITION) is None  # escalation has read neither input yet
    with Session(engine) as session:
        advance_watermark(session, CASE_TRANSITIONS.name(settings), PARTITION, utc(3, 11))
        advance_watermark(session, CHILD_EVENTS.name(settings), PARTITION, utc(3, 11))
        session.commit()
        horizon = load_horizon(session, worker._horizon_topics, NOW)
    assert horizon.as_of(PARTITION) == utc(3, 9)  # tracking's mark holds it


async def test_without_the_mark_required_escalation_decides_on_its_own_inputs(
    tmp_path: Path, engine: Engine
) -> None:
    settings = make_settings(tmp_path, escalation_require_tracking_mark=False)
    worker = make_worker(settings, engine)
    Feed(worker, settings).send(
        encode_event(transition(uuid.uuid4(), CaseState.WHEREABOUTS_UNKNOWN, MISSING_AT))
    )
    await worker.run_due_check()
    assert raised(engine) == 1  # a rolling upgrade, tracking not yet sending marks: as before the mark


async def test_a_mark_behind_a_growing_partition_is_caught_up_at_the_end_it_covers(
    settings: EscalationSettings, engine: Engine
) -> None:
    clock = SimulatedTime(NOW)
    worker = EscalationWorker(settings, engine, load_deps(settings), clock)
    facts = TopicPartition(CHILD_EVENTS.name(settings), PARTITION)
    consumer = FakeConsumer({TopicPartition(CASE_TRANSITIONS.name(settings), PARTITION): 0, facts: 3})
    worker._loop.consumer = consumer  # type: ignore[assignment]
    await worker.mark_caught_up()  # at 12:00 the partition ended at offset 3
    clock.set(utc(3, 12, 0, 1))
    consumer.ends[facts] = 5  # a second later, at 5: facts keep coming
    await worker.mark_caught_up()
    feed = Feed(worker, settings)
    feed.mark(4, None)  # tracking has folded up to offset 4: what was published by 12:00, not by 12:00:01
    await worker.mark_caught_up()
    mark = tracking_mark(engine, settings)
    assert mark is not None and mark.watermark.replace(tzinfo=UTC) == NOW
    feed.mark(5, None)
    await worker.mark_caught_up()
    mark = tracking_mark(engine, settings)
    assert mark is not None and mark.watermark.replace(tzinfo=UTC) == utc(3, 12, 0, 1)


def test_on_a_clock_that_stands_still_only_the_latest_end_stands_for_now() -> None:
    samples = EndSamples()
    samples.add(0, NOW, 0)  # the partition was empty ...
    samples.add(0, NOW, 1)  # ... and a fact came while simulated time stood still: published "by" NOW too
    assert samples.caught_up_at(0, 0) is None
    assert samples.caught_up_at(0, 1) == NOW
    samples.add(0, utc(3, 12, 0, 1), 4)
    assert samples.caught_up_at(0, 3) == NOW  # the mark covers the older end only
    assert samples.caught_up_at(0, 9) == utc(3, 12, 0, 1)


# The caseworker (from both whereabouts-unknown rules), social care and the police, all at once.
AT_RISK_ALERTS = ["caseworker", "caseworker", "childrens_social_care", "police"]


def published_levels(engine: Engine) -> list[str]:
    with Session(engine) as session:
        steps = session.exec(select(EscalationStep).where(col(EscalationStep.published).is_(True))).all()
        return sorted(s.level for s in steps)


def at_risk_transition(at: datetime, child: uuid.UUID | None = None) -> CaseTransition:
    return transition(child or uuid.uuid4(), CaseState.WHEREABOUTS_UNKNOWN, at, safeguarding_concern=True)


async def test_an_immediate_clock_on_a_live_partition_is_decided_on_what_escalation_has_read(
    tmp_path: Path, engine: Engine
) -> None:
    """A child at risk, reported at 11:59:30 while tracking has folded the partition only to 11:59:10 (a bulk
    load ahead of it): the alerts due at the instant the episode began go out, to social care and the police
    too; the senior officer's step a school day later waits for tracking's mark like any other."""
    settings = make_settings(tmp_path, immediate=True)
    worker = make_worker(settings, engine)
    feed = Feed(worker, settings)
    feed.mark(2, utc(3, 11, 59, 10))
    assert feed.send(encode_event(at_risk_transition(utc(3, 11, 59, 30)))) == "applied"
    await worker.run_due_check()
    assert published_levels(engine) == AT_RISK_ALERTS
    with Session(engine) as session:
        pending = session.exec(select(EscalationDeadline).where(EscalationDeadline.status == "pending")).all()
    # The senior officers' steps (a school day, five school days on): not immediate, held by tracking's mark.
    assert sorted((d.rule_id, d.step_index) for d in pending) == [
        ("whereabouts_unknown", 1),
        ("whereabouts_unknown_with_concerns", 3),
    ]


async def test_an_immediate_clock_on_a_backlog_waits_for_the_full_horizon_unless_its_episode_began_now(
    tmp_path: Path, engine: Engine
) -> None:
    """Tracking an hour behind (an outage, a rebuild, a bulk load): a backlog. A child reported at risk ten
    minutes ago waits for the full horizon as every other clock does: a fact still queued may have ended the
    episode. A child reported at risk 30 s ago is alerted at once: what the backlog holds about it is dated
    before the episode began and cannot end it, so urgent alerts do not queue behind the bulk
    (docs/ESCALATION.md)."""
    settings = make_settings(tmp_path, immediate=True)
    worker = make_worker(settings, engine)
    feed = Feed(worker, settings)
    feed.mark(2, utc(3, 11))
    feed.send(encode_event(at_risk_transition(utc(3, 11, 50))))
    assert await worker.run_due_check() == 0
    assert published_levels(engine) == []
    feed.send(encode_event(at_risk_transition(utc(3, 11, 59, 30))))
    await worker.run_due_check()
    assert published_levels(engine) == AT_RISK_ALERTS
    feed.mark(3, utc(3, 11, 59, 40))
    await worker.run_due_check()
    assert published_levels(engine) == sorted(AT_RISK_ALERTS * 2)


async def test_a_provisional_transition_and_its_in_order_twin_are_each_applied_once(
    tmp_path: Path, engine: Engine
) -> None:
    """Tracking's urgent lane publishes a transition folded ahead (provisional), then the same one (same event
    id) from the fold in order: each is applied once, and the clock it starts is started once."""
    settings = make_settings(tmp_path, immediate=True)
    worker = make_worker(settings, engine)
    feed = Feed(worker, settings)
    in_order = at_risk_transition(utc(3, 11, 59, 30))
    ahead = in_order.model_copy(update={"payload": in_order.payload.model_copy(update={"provisional": True})})
    assert feed.send(encode_event(ahead), topic=URGENT_TRANSITIONS) == "applied"
    assert feed.send(encode_event(ahead), topic=URGENT_TRANSITIONS) == "duplicate"  # a redelivery
    assert input_marks(engine, settings) == {}  # read ahead of the inputs' order: no watermark moves
    assert feed.send(encode_event(in_order)) == "applied"
    assert feed.send(encode_event(in_order)) == "duplicate"
    with Session(engine) as session:
        clocks = session.exec(
            select(EscalationDeadline).where(EscalationDeadline.kind == DeadlineKind.RULE)
        ).all()
    assert len(clocks) == 2  # whereabouts unknown, and with concerns: each once
    feed.mark(3, utc(3, 11, 59, 40))
    await worker.run_due_check()
    assert published_levels(engine) == AT_RISK_ALERTS


def provisional(event: CaseTransition) -> CaseTransition:
    return event.model_copy(update={"payload": event.payload.model_copy(update={"provisional": True})})


@pytest.mark.parametrize("lane", ["urgent", "in_order"])
async def test_the_alerts_a_transition_starts_at_once_are_decided_in_its_own_turn(
    tmp_path: Path, engine: Engine, lane: str
) -> None:
    """On a live partition, the consumer's turn that applies an at-risk child's transition also decides the
    alerts due at once (what the next due-check would decide, in the same order), so they do not wait for
    the due-check's two turns behind a bulk load's batches."""
    settings = make_settings(tmp_path, immediate=True)
    worker = make_worker(settings, engine)
    Feed(worker, settings).mark(2, utc(3, 11, 59, 10))
    await worker.run_due_check()  # both inputs read to their end: the partition is live, nothing due yet
    assert published_levels(engine) == []
    assert not worker.relay.wakeup.is_set()  # nothing decided, nothing to publish
    event = at_risk_transition(utc(3, 11, 59, 30))
    if lane == "urgent":
        raw = Record(URGENT_TRANSITIONS.name(settings), PARTITION, 0, b"k", encode_event(provisional(event)))
        await worker._handle_urgent([raw])
    else:
        raw = Record(CASE_TRANSITIONS.name(settings), PARTITION, 1, b"k", encode_event(event))
        await worker._handle_in_order([raw])
    assert published_levels(engine) == AT_RISK_ALERTS
    # The outbox relay is woken to publish them now, not at its next idle poll.
    assert worker.relay.wakeup.is_set()


async def test_a_failed_decision_in_the_consumers_turn_leaves_it_to_the_due_check(
    tmp_path: Path, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The records are committed first; a decision that fails in the same turn does not fail them (they are
    not redelivered or dead-lettered for it), and the due-check decides what it left."""
    settings = make_settings(tmp_path, immediate=True)
    worker = make_worker(settings, engine)
    Feed(worker, settings).mark(2, utc(3, 11, 59, 10))
    await worker.run_due_check()
    decide = worker._fire

    def broken(*args: Any) -> int:
        raise RuntimeError("the database went away mid-decision")

    monkeypatch.setattr(worker, "_fire", broken)
    event = provisional(at_risk_transition(utc(3, 11, 59, 30)))
    await worker._handle_urgent(
        [Record(URGENT_TRANSITIONS.name(settings), PARTITION, 0, b"k", encode_event(event))]
    )
    with Session(engine) as session:
        assert session.exec(select(func.count()).select_from(EscalationProcessedEvent)).one() == 1
    assert published_levels(engine) == []
    monkeypatch.setattr(worker, "_fire", decide)
    await worker.run_due_check()
    assert published_levels(engine) == AT_RISK_ALERTS


def clocks_of(engine: Engine, child: uuid.UUID) -> dict[str, tuple[str, str | None]]:
    """The child's rule clocks: rule id -> (status, cancel reason)."""
    with Session(engine) as session:
        rows = session.exec(
            select(EscalationDeadline).where(
                EscalationDeadline.child_id == str(child), EscalationDeadline.kind == DeadlineKind.RULE
            )
        ).all()
    return {d.rule_id: (d.status, d.cancel_reason) for d in rows}


def escalation_statuses(engine: Engine) -> list[str]:
    with Session(engine) as session:
        return sorted(e.status for e in session.exec(select(EscalationRecord)).all())


@pytest.mark.parametrize("decided_before_the_bulk", [False, True])
async def test_an_in_order_transition_at_the_same_instant_read_after_a_provisional_one_does_not_end_it(
    tmp_path: Path, engine: Engine, decided_before_the_bulk: bool
) -> None:
    """A pupil off roll and reported whereabouts unknown at the same instant (a CI run of the bench): the
    urgent lane applies the second transition before the in-order consumer reads the first. The first comes
    before it in the case's order, so its end (the case moved on to missing education) must neither cancel
    the clock the provisional transition started nor withdraw the alert it raised; the twin confirms it."""
    settings = make_settings(tmp_path, immediate=True)
    worker = make_worker(settings, engine)
    feed = Feed(worker, settings)
    feed.mark(2, utc(3, 11, 59, 10))
    await worker.run_due_check()
    child, at = uuid.uuid4(), utc(3, 11, 59, 30)
    left_roll = transition(child, CaseState.MISSING_EDUCATION, at)
    unknown = transition(child, CaseState.WHEREABOUTS_UNKNOWN, at, from_state=CaseState.MISSING_EDUCATION)
    assert feed.send(encode_event(provisional(unknown)), topic=URGENT_TRANSITIONS) == "applied"
    if decided_before_the_bulk:
        await worker.run_due_check()
        assert published_levels(engine) == ["caseworker"]
    assert feed.send(encode_event(left_roll)) == "applied"
    assert feed.send(encode_event(unknown)) == "applied"
    feed.mark(3, utc(3, 11, 59, 40))
    await worker.run_due_check()
    assert published_levels(engine) == ["caseworker"]
    assert escalation_statuses(engine) == ["open"]  # raised, never withdrawn
    clocks = clocks_of(engine, child)
    assert clocks["whereabouts_unknown"] == ("fired", None)
    # The clock of the state the child passed through was ended by the step after it, as in order.
    assert clocks["missing_education_no_outcome"] == ("cancelled", "case_moved_on:whereabouts_unknown")
    with Session(engine) as session:
        assert not session.exec(select(EscalationDeadline).where(col(EscalationDeadline.provisional))).all()


async def test_an_in_order_transition_dated_before_a_provisional_one_is_applied_in_its_place(
    tmp_path: Path, engine: Engine
) -> None:
    """The fact queued ahead is dated a minute before the urgent one: it is the case's earlier step, not a
    stale one, so its clock is started and ended by event time where the twin ends it."""
    settings = make_settings(tmp_path, immediate=True)
    worker = make_worker(settings, engine)
    feed = Feed(worker, settings)
    child = uuid.uuid4()
    left_roll = transition(child, CaseState.MISSING_EDUCATION, utc(3, 11, 58, 30))
    unknown = transition(
        child, CaseState.WHEREABOUTS_UNKNOWN, utc(3, 11, 59, 30), from_state=CaseState.MISSING_EDUCATION
    )
    feed.send(encode_event(provisional(unknown)), topic=URGENT_TRANSITIONS)
    assert feed.send(encode_event(left_roll)) == "applied"
    assert clocks_of(engine, child)["whereabouts_unknown"] == ("pending", None)
    assert feed.send(encode_event(unknown)) == "applied"
    clocks = clocks_of(engine, child)
    assert clocks["missing_education_no_outcome"] == ("cancelled", "case_moved_on:whereabouts_unknown")
    feed.mark(3, utc(3, 11, 59, 40))
    await worker.run_due_check()
    assert published_levels(engine) == ["caseworker"]


async def test_once_the_twin_is_read_a_same_instant_end_after_it_ends_the_clock(
    tmp_path: Path, engine: Engine
) -> None:
    """The twin read, the provisional clock is an ordinary one: an in-order end at the same instant, read
    after the twin, comes after it in the case's order and cancels the undecided clock."""
    settings = make_settings(tmp_path, immediate=True)
    worker = make_worker(settings, engine)
    feed = Feed(worker, settings)
    child, at = uuid.uuid4(), utc(3, 11, 59, 30)
    unknown = transition(child, CaseState.WHEREABOUTS_UNKNOWN, at, from_state=CaseState.MISSING_EDUCATION)
    located = transition(child, CaseState.MISSING_EDUCATION, at, from_state=CaseState.WHEREABOUTS_UNKNOWN)
    feed.send(encode_event(provisional(unknown)), topic=URGENT_TRANSITIONS)
    feed.send(encode_event(unknown))
    assert feed.send(encode_event(located)) == "applied"
    assert clocks_of(engine, child)["whereabouts_unknown"] == ("cancelled", "case_moved_on:missing_education")


@pytest.mark.parametrize(
    ("role", "consumers"),
    [
        ("all", ["escalation-consumer", "escalation-urgent-consumer"]),
        ("in_order", ["escalation-consumer"]),
        ("urgent", ["escalation-urgent-consumer"]),
    ],
)
async def test_each_role_runs_its_consumers_and_every_role_the_timer_and_the_relay(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, role: str, consumers: list[str]
) -> None:
    """docs/ESCALATION.md, "Roles": the urgent lane's consumer in a process of its own, or with the rest."""
    settings = make_settings(tmp_path, escalation_role=role)
    migrate(settings.database_url, MIGRATIONS, "escalation")
    engine = make_engine(settings.database_url)
    started: list[str] = []
    ran: list[str] = []

    async def start(loop: ConsumerLoop, stop: asyncio.Event | None = None) -> bool:
        started.append(loop.name)
        return True

    async def run(loop: ConsumerLoop, stop: asyncio.Event) -> None:
        ran.append(loop.name)
        await stop.wait()

    async def relay(self: OutboxRelay, stop: asyncio.Event) -> None:
        ran.append("relay")
        await stop.wait()

    async def timer(self: EscalationWorker) -> None:
        ran.append("timer")
        await self._stop.wait()

    monkeypatch.setattr(ConsumerLoop, "start", start)
    monkeypatch.setattr(ConsumerLoop, "run", run)
    monkeypatch.setattr(OutboxRelay, "run", relay)
    monkeypatch.setattr(EscalationWorker, "_timer", timer)
    worker = EscalationWorker(settings, engine, load_deps(settings), SimulatedTime(NOW))
    try:
        await worker.start()
        await asyncio.sleep(0.05)
        assert sorted(started) == consumers
        assert sorted(ran) == sorted([*consumers, "relay", "timer"])
        # Without the in-order consumer there is nothing to mark caught up: the other role's process does it.
        if "escalation-consumer" not in consumers:
            assert await worker.mark_caught_up() == 0
    finally:
        await worker.stop()
        engine.dispose()
