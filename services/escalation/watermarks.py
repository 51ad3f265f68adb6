"""Event-time horizons: how far escalation has read each input partition, so which deadlines it may decide.

A child's transitions and facts arrive in event-time order on one partition of each input topic (both are
keyed by child_id and have the same partition count, so a child has the same partition number on both). A
partition's **watermark** is an event time up to which every fact on it has been applied: the event time of
the newest record read, or, when the consumer has read everything the partition held at a moment ``t`` of the
service's clock, ``t`` itself (nothing older can still be unread, unless a fact arrives late: see
docs/ESCALATION.md). A third mark per partition is tracking's: how far tracking has folded the partition of
the child-events topic into transitions (its ``tracking-progress`` records on the transitions topic, stored
under ``tracking_mark_topic``). A partition's **horizon** is the lowest of its marks, capped at now.

A deadline due at ``T`` is decided only once its partition's horizon has reached ``T``: by then every fact
about the child up to ``T`` has been applied, so whether the episode was still open at ``T`` no longer depends
on how far each consumer had read when the timer ticked. While a partition is a backlog (its horizon more
than the live window behind now), a deadline is decided only if a fact already ended its episode (recorded,
alerting nobody), or if it is immediate and its episode began within the live window (a child reported at risk
now); one whose episode is still open waits until the partition is live, when it is alerted, marked late if it
fell due more than the live window ago. See docs/ESCALATION.md for the policy.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import case, func
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import Session, col, select

from services.escalation.models import EscalationWatermark
from shared.events.envelope import utcnow

DEFAULT_LIVE_WINDOW = timedelta(seconds=60)
# Tracking's mark before it claims any event time (a worker that has only said where its partition stands).
NO_TIME = datetime(1970, 1, 1, tzinfo=UTC)


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


@dataclass(frozen=True)
class Horizon:
    """What the timer may decide at ``now``.

    ``partitions`` maps an input partition to its horizon (the lowest watermark of the input topics); a
    partition missing from it has not been read on every input topic yet and decides nothing. ``None`` means
    every partition is caught up with now: a single-process caller that applies every input before asking
    (the unit tests, a replay in one thread).
    """

    now: datetime
    partitions: Mapping[int, datetime] | None = None
    live_window: timedelta = DEFAULT_LIVE_WINDOW

    @classmethod
    def caught_up(cls, now: datetime, live_window: timedelta = DEFAULT_LIVE_WINDOW) -> Horizon:
        return cls(_utc(now), None, live_window)

    def as_of(self, partition: int) -> datetime | None:
        """The event time up to which this partition's facts are all applied (never after now)."""
        if self.partitions is None:
            return self.now
        mark = self.partitions.get(partition)
        return None if mark is None else min(_utc(mark), self.now)

    def as_of_deadline(
        self, partition: int, due_at: datetime, clock_started_at: datetime | None
    ) -> datetime | None:
        """The horizon a deadline is decided on. The horizon holds a deadline due at T until every fact dated
        before T is read and folded, because one of them may end the episode. No fact dated before an
        episode began can end it, so a deadline due at the instant its clock started (an immediate rule and
        its zero-delay steps: the social care and police alerts of a child at risk) waits for none of them,
        while the partition is live: it is decided as soon as it exists, that is as soon as the transition
        that starts it is read (under a bulk load, a provisional one from tracking's urgent lane), not when
        tracking has folded the bulk and escalation read it. A backlog keeps the full horizon, except for an
        episode that began within the live window of now (``fresh``): what the backlog holds is older, or
        would be read after the decision on a live partition too (docs/ESCALATION.md, "Immediate deadlines
        and the urgent lane")."""
        full = self.as_of(partition)
        if full is None or not self.immediate(due_at, clock_started_at):
            return full
        return self.now if self.live(partition) or self.fresh(clock_started_at) else full

    @staticmethod
    def immediate(due_at: datetime, clock_started_at: datetime | None) -> bool:
        """Due at the instant its clock started: an immediate rule, or a zero-delay step of its ladder."""
        return clock_started_at is not None and _utc(due_at) <= _utc(clock_started_at)

    def fresh(self, clock_started_at: datetime | None) -> bool:
        """The clock started within the live window of now: the episode began now, as far as anybody can know,
        so no fact a backlog still holds about the time before it can end it."""
        return clock_started_at is not None and _utc(clock_started_at) >= self.now - self.live_window

    def live(self, partition: int) -> bool:
        """The partition is read up to within the live window of now: what is open at its horizon is open now,
        as far as anybody can know."""
        as_of = self.as_of(partition)
        return as_of is not None and as_of >= self.now - self.live_window

    def decidable(
        self,
        partition: int,
        due_at: datetime,
        ended_at: datetime | None,
        clock_started_at: datetime | None = None,
    ) -> bool:
        """A deadline can be decided: its horizon (``as_of_deadline``) has passed its due time, and either the
        partition is live, or the deadline is immediate and its episode began within the live window (a child
        reported at risk now is alerted now, whatever backlog the bulk has left), or a fact at or before the
        horizon already ended the episode (then it alerts nobody, whenever it is decided)."""
        as_of = self.as_of_deadline(partition, due_at, clock_started_at)
        if as_of is None or _utc(due_at) > as_of:
            return False
        began_now = self.immediate(due_at, clock_started_at) and self.fresh(clock_started_at)
        if self.live(partition) or began_now:
            return True
        return ended_at is not None and _utc(ended_at) <= as_of

    def is_late(self, due_at: datetime) -> bool:
        """An alert sent now for a step due then is late: it fell due more than the live window ago."""
        return _utc(due_at) < self.now - self.live_window


def tracking_mark_topic(child_events_topic: str) -> str:
    """The key, in ``escalation_watermarks.topic``, of tracking's marks of ``child_events_topic``: no Kafka
    topic has this name (Kafka topic names have no ':')."""
    return f"tracking:{child_events_topic}"


def advance_watermark(session: Session, topic: str, partition: int, moment: datetime) -> None:
    """Move the partition's watermark to ``moment`` if that is later (never backwards), in the caller's
    transaction."""
    moment = _utc(moment)
    dialect = session.get_bind().dialect.name
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    stmt = insert(EscalationWatermark).values(
        topic=topic, partition=partition, watermark=moment, updated_at=utcnow()
    )
    stmt = stmt.on_conflict_do_update(
        index_elements=["topic", "partition"],
        set_={"watermark": stmt.excluded.watermark, "updated_at": stmt.excluded.updated_at},
        where=col(EscalationWatermark.watermark) < stmt.excluded.watermark,
    )
    session.execute(stmt)


def advance_tracking_mark(
    session: Session, topic: str, partition: int, next_offset: int, folded_to: datetime | None
) -> None:
    """Move tracking's mark of the partition forward (its offset and its event time, each never backwards),
    in the caller's transaction."""
    dialect = session.get_bind().dialect.name
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    moment = NO_TIME if folded_to is None else _utc(folded_to)
    stmt = insert(EscalationWatermark).values(
        topic=topic, partition=partition, watermark=moment, next_offset=next_offset, updated_at=utcnow()
    )
    held = EscalationWatermark.__table__.c  # type: ignore[attr-defined]
    stmt = stmt.on_conflict_do_update(
        index_elements=["topic", "partition"],
        set_={
            "watermark": case(
                (held.watermark < stmt.excluded.watermark, stmt.excluded.watermark), else_=held.watermark
            ),
            "next_offset": case(
                (func.coalesce(held.next_offset, -1) < stmt.excluded.next_offset, stmt.excluded.next_offset),
                else_=held.next_offset,
            ),
            "updated_at": stmt.excluded.updated_at,
        },
    )
    session.execute(stmt)


@dataclass
class EndSamples:
    """The ends of the child-events partitions as this worker asked for them, each after sampling the time:
    when tracking's mark says it has folded a partition before an offset at or past an end asked for after t,
    every fact published by t is folded, so tracking is caught up at t. Kept for a while, so a mark that
    lags a second behind a partition that never stops growing still finds the moment it covers."""

    keep: int = 3600  # samples per partition (a due-check takes one per tick, and after each poll)
    samples: dict[int, deque[tuple[datetime, int]]] = field(default_factory=dict)

    def add(self, partition: int, sampled: datetime, end: int) -> None:
        found = self.samples.setdefault(partition, deque(maxlen=self.keep))
        sampled = _utc(sampled)
        # A clock that has not moved (simulated time stands still): what was published "by t" includes what
        # came since the last sample at t, so only the latest end asked for after t stands for it.
        while found and found[-1][0] >= sampled:
            found.pop()
        found.append((sampled, end))

    def caught_up_at(self, partition: int, next_offset: int) -> datetime | None:
        """The latest moment tracking's ``next_offset`` covers (None: none sampled); older samples go."""
        found = self.samples.get(partition)
        if not found:
            return None
        covered = None
        while found and found[0][1] <= next_offset:
            covered = found.popleft()
        if covered is not None:
            found.appendleft(covered)  # still the answer until a later sample is covered
            return covered[0]
        return None


def tracking_offsets(session: Session, topic: str) -> dict[int, int]:
    """Per partition, the offset before which tracking has folded every record (``topic``: the mark's)."""
    rows = session.exec(select(EscalationWatermark).where(col(EscalationWatermark.topic) == topic)).all()
    return {r.partition: r.next_offset for r in rows if r.next_offset is not None}


def watermarks(session: Session, topics: Iterable[str]) -> dict[tuple[str, int], datetime]:
    names = list(topics)
    rows = session.exec(select(EscalationWatermark).where(col(EscalationWatermark.topic).in_(names))).all()
    return {(r.topic, r.partition): _utc(r.watermark) for r in rows}


def load_horizon(
    session: Session, topics: Iterable[str], now: datetime, live_window: timedelta = DEFAULT_LIVE_WINDOW
) -> Horizon:
    """The horizon of every partition read on all of ``topics`` (the inputs a deadline depends on)."""
    names = list(topics)
    marks = watermarks(session, names)
    partitions = {p for _, p in marks}
    horizon = {
        p: min(marks[(t, p)] for t in names) for p in partitions if all((t, p) in marks for t in names)
    }
    return Horizon(_utc(now), horizon, live_window)
