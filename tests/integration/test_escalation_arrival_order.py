"""The same facts give the same alerts whatever order they arrive in (issue 22), on the real broker and
PostgreSQL: a synthetic school year (``devtools.synthetic``, small) fed through tracking's own case code
(``services.tracking.cases.apply_child_fact``) twice, once in the population's order and once with each
child's facts shuffled among that child's places in the stream (late facts and re-folds, as a school that
reports late or an LA loading its history out of order gives), and what tracking publishes for each (child
facts and case transitions, a re-fold's carrying the case's event-time history) into escalation.

Both give the identical set of (child, rule, step) alerts, under the same escalation ids, the same clocks
(state and event rules) and the same steps recorded, withheld ones included. The timer decides once every
record is read (a backlog after an outage, decided on the whole input): decisions taken while later records
still arrive out of event-time order are the residual documented in docs/ESCALATION.md ("Facts behind the
watermark").
"""

from __future__ import annotations

import asyncio
import os
import time
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from devtools.synthetic import generate
from services.escalation.models import DeadlineKind, EscalationDeadline, EscalationStep
from services.escalation.settings import EscalationSettings
from services.escalation.worker import EscalationWorker
from shared.localstack.postgres import PostgresCluster
from tests.integration.test_escalation_replay import (
    RunResult,
    _decide_until,
    _fresh_database,
    _processed,
    _result,
    _settings,
    _wait,
    in_process,
)
from tests.support.escalation import Replay, produce_inputs, replay_of, shuffled_within_children

pytestmark = [pytest.mark.integration, pytest.mark.timeout(1800)]

LAS, SEED = 2, 23
PUPILS_PER_LA = int(os.environ.get("CME_ARRIVAL_PUPILS_PER_LA", "700"))


Clock = tuple[str, str, str, datetime, str]  # (deadline id, child, rule, due, status)


def _clocks(engine: Engine) -> set[Clock]:
    """Every rule clock escalation started, state and event rules alike: its id (a function of the facts),
    child, rule, due time and status. An event rule's fact read after the transition that resolved the case
    later starts its clock too (ended at once where that resolution ends it), so the two input topics may
    interleave any way."""
    with Session(engine) as session:
        rows = session.exec(
            select(EscalationDeadline).where(EscalationDeadline.kind == DeadlineKind.RULE)
        ).all()
    return {(r.id, r.child_id, r.rule_id, r.due_at.astimezone(UTC), str(r.status)) for r in rows}


Step = tuple[str, int, str, datetime, bool, str | None]


def _steps(engine: Engine) -> set[Step]:
    """Every step recorded (escalation id, step, level, due, published, withheld), withheld ones included."""
    with Session(engine) as session:
        rows = session.exec(select(EscalationStep)).all()
    return {
        (r.escalation_id, r.step_index, r.level, r.due_at.astimezone(UTC), r.published, r.withheld)
        for r in rows
    }


async def decided_after_reading(
    settings: EscalationSettings, replay: Replay, frozen: datetime, monkeypatch: pytest.MonkeyPatch
) -> tuple[RunResult, set[Clock], set[Step]]:
    """Everything published at once; the worker reads it all, then the timer decides up to ``frozen`` (its
    due-check does nothing until then, from the worker's first tick on)."""
    gate = asyncio.Event()
    decide = EscalationWorker.run_due_check

    async def after_reading(worker: EscalationWorker) -> int:
        return await decide(worker) if gate.is_set() else 0

    monkeypatch.setattr(EscalationWorker, "run_due_check", after_reading)
    started = time.monotonic()
    await asyncio.to_thread(produce_inputs, settings, replay.inputs)
    async with in_process(settings, frozen) as run:
        await _wait(lambda: _processed(run.engine) >= len(replay.inputs), "every record read")
        gate.set()
        await _decide_until(run, frozen)
        return _result(run.engine, started), _clocks(run.engine), _steps(run.engine)


async def test_the_same_facts_in_another_arrival_order_give_the_same_alerts(
    kafka_bootstrap: str,
    postgres_server: tuple[str, PostgresCluster | None],
    tmp_path_factory: pytest.TempPathFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    population = generate(las=LAS, pupils_per_la=PUPILS_PER_LA, seed=SEED)
    shuffled = shuffled_within_children(population.events, SEED)
    moved = sum(1 for a, b in zip(population.events, shuffled, strict=True) if a is not b)
    in_order, arrived = replay_of(population), replay_of(population, shuffled)
    # Tracking re-folded cases for the late facts: some transitions carry a history.
    assert sum(1 for i in arrived.inputs if b'"history":{' in i.value) > 10
    frozen = max(i.at for i in in_order.inputs) + timedelta(hours=1)
    results: list[tuple[RunResult, set[Clock], set[Step]]] = []
    for replay in (in_order, arrived):
        tmp = tmp_path_factory.mktemp("arrival")
        settings = _settings(kafka_bootstrap, _fresh_database(postgres_server), tmp)
        results.append(await decided_after_reading(settings, replay, frozen, monkeypatch))
    (first, first_clocks, first_steps), (second, second_clocks, second_steps) = results
    print(
        f"in order: {len(first.alerts)} alerts, {first.withheld} withheld, {first.seconds:.0f} s | "
        f"shuffled ({moved} facts moved): {len(second.alerts)} alerts, {second.withheld} withheld, "
        f"{second.seconds:.0f} s"
    )
    assert len(first.alerts) > 50
    assert {a[:3] for a in first.alerts} == {a[:3] for a in second.alerts}  # (child, rule, step)
    assert first.alerts == second.alerts  # and when each fell due, under the same escalation ids
    assert first.sent == second.sent
    # Every clock, decided or not, under the same id: the clocks are a function of the facts.
    assert first_clocks == second_clocks, (
        f"{len(first_clocks - second_clocks)} deadlines only in order, "
        f"{len(second_clocks - first_clocks)} only shuffled"
    )
    # And every step recorded, the withheld ones (episode closed) included: whether a child fact is read
    # before or after the transition that resolved the case later no longer decides them.
    assert first.withheld == second.withheld
    assert first_steps == second_steps, (
        f"{len(first_steps - second_steps)} steps only in order, "
        f"{len(second_steps - first_steps)} only shuffled"
    )
