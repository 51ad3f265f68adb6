"""The same facts give the same alerts, whatever the lag, replay or crash (issue 22), on the real broker and
PostgreSQL.

Input: a synthetic school year (devtools.synthetic, seed 22): by hand, 2 LAs x 24,000 pupils (20,714 inbound
events; about half an hour on this 2-core machine when quiet): ``CME_REPLAY_PUPILS_PER_LA=24000``; in
``make test``, 2 LAs x 1,400 pupils (about 1,200 events), which CI's time allows.
Feeding the whole pipeline (referral, tracking, escalation) six times is too slow for this machine, so
the test feeds escalation's own input topics directly with what tracking publishes: each inbound event as
the child fact identity resolution would publish, and the case transitions tracking's own pure code
(``services.tracking.cases.apply_child_fact``) derives from it (36,883 records). Three ways, each twice:

1. paced: each school day's records are published as the simulated clock reaches that day, and the clock
   stops at every due time (in-process worker, ``SimulatedTime``);
2. backlog: every record published at once, the clock frozen an hour after the last event (in-process);
3. as 2 with a real ``cme-escalation serve`` process killed (SIGKILL) and restarted mid-way (``FileTime``).

Run 1 alerts exactly what was due while the case was in the watched state (checked against the transitions
for every rule without conditions, and for soundness for every state rule); runs 2 and 3 alert the identical
set, and that set is what docs/ESCALATION.md's policy derives from run 1: its alerts of the escalations
still open at the frozen time. Escalation ids are the same in every run.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine, make_url
from sqlmodel import Session, col, func, select

from devtools.synthetic import generate
from services.escalation.app import load_deps, prepare_database
from services.escalation.models import (
    DeadlineStatus,
    EscalationDeadline,
    EscalationOutbox,
    EscalationProcessedEvent,
    EscalationRecord,
    EscalationStatus,
    EscalationStep,
)
from services.escalation.rules import RuleSet
from services.escalation.settings import EscalationSettings
from services.escalation.timesource import SimulatedTime, write_time_file
from services.escalation.worker import EscalationWorker
from shared.events.catalogue import decode_event
from shared.events.internal import CaseState, Escalation, EscalationAction
from shared.kafka import ensure_topics
from shared.localstack.net import free_port
from shared.localstack.postgres import PostgresCluster
from shared.school_calendar import LONDON, CalendarRegistry
from shared.settings import PROJECT_ROOT
from tests.support.escalation import Replay, ReplayInput, produce_inputs, replay_of, replay_producer
from tests.support.kafka import wait_until

# Minutes on a quiet machine, far longer on a loaded one: -m 'not replay' deselects it (make test runs it).
pytestmark = [pytest.mark.integration, pytest.mark.replay, pytest.mark.timeout(3600)]

LAS, SEED = 2, 22
PUPILS_PER_LA = int(os.environ.get("CME_REPLAY_PUPILS_PER_LA", "1400"))
Alert = tuple[str, str, int, datetime]  # (child id, rule id, step index, when the step fell due)


@pytest.fixture(scope="module")
def replay() -> Replay:
    found = replay_of(generate(las=LAS, pupils_per_la=PUPILS_PER_LA, seed=SEED))
    assert found.events >= (20_000 if PUPILS_PER_LA >= 24_000 else 1_000)
    return found


@pytest.fixture(scope="module")
def frozen(replay: Replay) -> datetime:
    return max(i.at for i in replay.inputs) + timedelta(hours=1)


@dataclass
class RunResult:
    alerts: dict[Alert, str]  # published raised / stepped_up (from the outbox) -> escalation id
    open_escalations: set[str]  # escalation ids still open at the end
    sent: set[Alert]  # steps published or suppressed as a duplicate (not withheld)
    withheld: int
    late: int
    seconds: float


def _result(engine: Engine, started: float) -> RunResult:
    with Session(engine) as session:
        events = [decode_event(r.value) for r in session.exec(select(EscalationOutbox)).all()]
        escalations = session.exec(select(EscalationRecord)).all()
        steps = session.exec(select(EscalationStep)).all()
    by_id = {e.id: e for e in escalations}
    alerts = [
        e for e in events if isinstance(e, Escalation) and e.payload.action != EscalationAction.CANCELLED
    ]
    return RunResult(
        alerts={
            (
                str(e.payload.child_id),
                e.payload.rule_id,
                e.payload.step_index,
                e.occurred_at.astimezone(UTC),
            ): str(e.payload.escalation_id)
            for e in alerts
        },
        open_escalations={e.id for e in escalations if e.status == EscalationStatus.OPEN},
        sent={
            (
                by_id[s.escalation_id].child_id,
                by_id[s.escalation_id].rule_id,
                s.step_index,
                s.due_at.astimezone(UTC),
            )
            for s in steps
            if s.withheld is None
        },
        withheld=sum(1 for s in steps if s.withheld is not None),
        late=sum(1 for s in steps if s.late),
        seconds=time.monotonic() - started,
    )


# -- infrastructure -----------------------------------------------------------------------------------------


def _fresh_database(server: tuple[str, PostgresCluster | None]) -> str:
    url, cluster = server
    name = f"t_{uuid.uuid4().hex[:12]}"
    if cluster is not None:
        return cluster.create_database(name)
    admin = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    finally:
        admin.dispose()
    return make_url(url).set(database=name).render_as_string(hide_password=False)


def _settings(kafka_bootstrap: str, database_url: str, tmp_path: Path) -> EscalationSettings:
    settings = EscalationSettings(
        kafka_bootstrap=kafka_bootstrap,
        topic_prefix=f"t{uuid.uuid4().hex[:10]}-",
        topic_partitions=2,
        database_url=database_url,
        data_dir=tmp_path,
        log_json=True,
        escalation_tick_s=0.2,
    )
    ensure_topics(settings)
    return settings


def _processed(engine: Engine) -> int:
    with Session(engine) as session:
        return int(session.exec(select(func.count()).select_from(EscalationProcessedEvent)).one())


def _undecided_by(engine: Engine, moment: datetime) -> datetime | None:
    """The earliest pending deadline due by ``moment`` (None: everything due by then is decided)."""
    with Session(engine) as session:
        found = session.exec(
            select(EscalationDeadline.due_at)
            .where(
                EscalationDeadline.status == DeadlineStatus.PENDING, col(EscalationDeadline.due_at) <= moment
            )
            .order_by(col(EscalationDeadline.due_at))
            .limit(1)
        ).first()
    return None if found is None else found.astimezone(UTC)


# Waits are bounded by the test's timeout, not by a guess at this machine's speed (a loaded 2-core machine
# reads a few dozen records a second).
WAIT_S = 3000.0


async def _wait(predicate: object, what: str, timeout_s: float = WAIT_S) -> None:
    await asyncio.to_thread(wait_until, predicate, timeout_s, 0.05, what)


@dataclass
class InProcess:
    settings: EscalationSettings
    engine: Engine
    clock: SimulatedTime
    worker: EscalationWorker


@contextlib.asynccontextmanager
async def in_process(settings: EscalationSettings, start: datetime) -> AsyncIterator[InProcess]:
    engine = await asyncio.to_thread(prepare_database, settings)
    clock = SimulatedTime(start)
    worker = EscalationWorker(settings, engine, load_deps(settings), clock)
    await worker.start()
    try:
        yield InProcess(settings, engine, clock, worker)
    finally:
        await worker.stop()
        engine.dispose()


async def _decide_until(run: InProcess, moment: datetime) -> None:
    """Stop the clock at every due time up to ``moment`` and let the worker decide what is due there."""
    while (due := await asyncio.to_thread(_undecided_by, run.engine, moment)) is not None:
        if due > run.clock.now():
            run.clock.set(due)
        deadline = time.monotonic() + 600
        while await asyncio.to_thread(_undecided_by, run.engine, due) is not None:
            if await run.worker.run_due_check() == 0:
                await asyncio.sleep(0.02)  # the consumer has yet to read up to the due time
            assert time.monotonic() < deadline, f"nothing decided at {due}"
    if moment > run.clock.now():
        run.clock.set(moment)


def _day(moment: datetime) -> date:
    return moment.astimezone(LONDON).date()


async def paced_run(settings: EscalationSettings, replay: Replay, frozen: datetime) -> RunResult:
    """Run 1: each day's records are published when the clock reaches that day; the clock then stops at
    every due time, so each deadline is decided at its due time with every fact up to it applied."""
    days: dict[date, list[ReplayInput]] = {}
    for item in replay.inputs:
        days.setdefault(_day(item.at), []).append(item)
    first = min(days)
    started = time.monotonic()
    producer = replay_producer(settings)
    try:
        async with in_process(settings, datetime.combine(first, datetime.min.time(), tzinfo=LONDON)) as run:
            published = 0
            for day in sorted(days):
                midnight = datetime.combine(day, datetime.min.time(), tzinfo=LONDON).astimezone(UTC)
                await _decide_until(run, midnight - timedelta(microseconds=1))
                await asyncio.to_thread(produce_inputs, settings, days[day], producer)
                published += len(days[day])
                await _wait(lambda n=published: _processed(run.engine) >= n, f"records of {day} read")
            await _decide_until(run, frozen)
            return _result(run.engine, started)
    finally:
        producer.close()


async def backlog_run(settings: EscalationSettings, replay: Replay, frozen: datetime) -> RunResult:
    """Run 2: everything published at once, the clock frozen after the last event."""
    started = time.monotonic()
    await asyncio.to_thread(produce_inputs, settings, replay.inputs)
    async with in_process(settings, frozen) as run:
        await _wait(lambda: _processed(run.engine) >= len(replay.inputs), "every record read")
        await _decide_until(run, frozen)
        return _result(run.engine, started)


class ServeProcess:
    """A real ``cme-escalation serve`` on simulated time (a time file)."""

    def __init__(self, settings: EscalationSettings, time_file: Path, log_path: Path) -> None:
        self.port = free_port()
        self.env = {
            **os.environ,
            "CME_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
            "CME_TOPIC_PREFIX": settings.topic_prefix,
            "CME_TOPIC_PARTITIONS": str(settings.topic_partitions),
            "CME_DATABASE_URL": settings.database_url,
            "CME_ESCALATION_PORT": str(self.port),
            "CME_ESCALATION_SIMULATED_TIME_FILE": str(time_file),
            "CME_ESCALATION_TICK_S": "0.2",
            "CME_LOG_LEVEL": "WARNING",
        }
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "services.escalation.main", "serve"],
            cwd=PROJECT_ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        wait_until(self._ready, timeout_s=120, interval_s=0.3, what="escalation worker ready")

    def _ready(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"worker exited: {self.log_path.read_text()[-3000:]}")
        try:
            return httpx.get(f"http://127.0.0.1:{self.port}/health/ready", timeout=3).status_code == 200
        except httpx.HTTPError:
            return False

    def kill9(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


def killed_run(settings: EscalationSettings, replay: Replay, frozen: datetime, tmp_path: Path) -> RunResult:
    """Run 3: as run 2, with the worker process killed (SIGKILL) once it has read about 40% of the backlog,
    then restarted."""
    started = time.monotonic()
    produce_inputs(settings, replay.inputs)
    time_file = tmp_path / f"time-{settings.topic_prefix}"
    write_time_file(time_file, frozen)
    engine = prepare_database(settings)
    worker = ServeProcess(settings, time_file, tmp_path / f"serve-{settings.topic_prefix}.log")
    try:
        worker.start()
        wait_until(lambda: _processed(engine) >= len(replay.inputs) * 0.4, WAIT_S, 0.05, "40% read")
        worker.kill9()
        killed_at = _processed(engine)
        assert killed_at < len(replay.inputs), "killed too late to matter"
        worker.start()
        wait_until(lambda: _processed(engine) >= len(replay.inputs), WAIT_S, 0.2, "every record read")
        wait_until(lambda: _undecided_by(engine, frozen) is None, WAIT_S, 0.2, "everything due decided")
        return _result(engine, started)
    finally:
        worker.stop()
        engine.dispose()


# -- what run 1 must alert ----------------------------------------------------------------------------------


def in_state_alerts(replay: Replay, rules: RuleSet, frozen: datetime) -> dict[str, set[Alert]]:
    """Per rule watching a state without conditions: every (child, rule, step) due while the child's case
    was in that state, by event time (the state entered before the due time, not left at or before it),
    up to the frozen time."""
    calendars = CalendarRegistry()
    expected: dict[str, set[Alert]] = {}
    for child, states in replay.states.items():
        la = replay.la_of[child]
        calendar = calendars.calendar_for(la)
        for rule in rules.rules_for(la):
            if rule.watches.state is None or rule.conditions:
                continue
            found = expected.setdefault(rule.id, set())
            entered: datetime | None = None
            for at, state in [*states, (frozen + timedelta(days=3650), None)]:
                if state == rule.watches.state:
                    if entered is None:
                        entered = at
                    continue
                if entered is None:
                    continue
                left = min(at, frozen + timedelta(microseconds=1))
                due = rule.clock.due_at(entered, calendar)
                for index, step in enumerate(rule.ladder):
                    due = step.delay.due_at(due, calendar)
                    if due >= left:
                        break
                    found.add((child, rule.id, index, due.astimezone(UTC)))
                entered = None
    return expected


def state_at(states: list[tuple[datetime, CaseState]], moment: datetime) -> CaseState | None:
    """The case's state at ``moment`` by event time (after every transition at or before it)."""
    current = None
    for at, state in states:
        if at > moment:
            break
        current = state
    return current


# -- the tests ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def rules() -> RuleSet:
    return RuleSet.load()


@pytest.fixture(scope="module")
async def paced(
    replay: Replay,
    frozen: datetime,
    kafka_bootstrap: str,
    postgres_server: tuple[str, PostgresCluster | None],
    tmp_path_factory: pytest.TempPathFactory,
) -> list[RunResult]:
    runs = []
    for _ in range(2):
        tmp = tmp_path_factory.mktemp("paced")
        settings = _settings(kafka_bootstrap, _fresh_database(postgres_server), tmp)
        runs.append(await paced_run(settings, replay, frozen))
    return runs


def _summary(name: str, run: RunResult) -> str:
    return (
        f"{name}: {len(run.alerts)} alerts, {run.withheld} steps withheld, {run.late} late, "
        f"{run.seconds:.0f} s"
    )


def test_paced_replay_alerts_exactly_what_fell_due_in_the_watched_state(
    paced: list[RunResult], replay: Replay, rules: RuleSet, frozen: datetime
) -> None:
    first, second = paced
    print(_summary("paced 1", first), "|", _summary("paced 2", second))
    assert first.alerts == second.alerts  # the same alerts, under the same escalation ids
    assert first.sent == second.sent
    # Every rule watching a state without conditions: exactly the steps due while the case was in it.
    for rule_id, expected in in_state_alerts(replay, rules, frozen).items():
        assert {a for a in first.sent if a[1] == rule_id} == expected, rule_id
    # Every state rule's alert (conditions or not) fell due while the case was in its state.
    watched = {r.id: r.watches.state for la in set(replay.la_of.values()) for r in rules.rules_for(la)}
    for child, rule_id, _, due in first.alerts:
        if watched.get(rule_id) is not None:
            assert state_at(replay.states[child], due) == watched[rule_id], (child, rule_id, due)
    # The year alerts on thousands of crossings, exclusions and episodes (770 at make test's size).
    assert len(first.alerts) > (10_000 if PUPILS_PER_LA >= 24_000 else 500)


async def test_backlog_and_crash_replays_alert_what_the_policy_derives_from_the_paced_one(
    paced: list[RunResult],
    replay: Replay,
    frozen: datetime,
    kafka_bootstrap: str,
    postgres_server: tuple[str, PostgresCluster | None],
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    live = paced[0]
    # The policy: an episode still open at the frozen time gets its alerts (late); one that closed alerts
    # nobody.
    policy = {a: esc for a, esc in live.alerts.items() if esc in live.open_escalations}
    assert 0 < len(policy) < len(live.alerts)
    results: list[tuple[str, RunResult]] = []
    for n in (1, 2):
        tmp = tmp_path_factory.mktemp("backlog")
        settings = _settings(kafka_bootstrap, _fresh_database(postgres_server), tmp)
        results.append((f"backlog {n}", await backlog_run(settings, replay, frozen)))
    for n in (1, 2):
        tmp = tmp_path_factory.mktemp("killed")
        settings = _settings(kafka_bootstrap, _fresh_database(postgres_server), tmp)
        results.append((f"killed {n}", await asyncio.to_thread(killed_run, settings, replay, frozen, tmp)))
    print(" | ".join(_summary(name, run) for name, run in results), f"| policy: {len(policy)} alerts")
    for name, run in results:
        assert run.alerts == policy, name
