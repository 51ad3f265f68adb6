"""Kill -9 the escalation worker (a real ``cme-escalation serve`` process) while deadlines are pending; after
a restart every due escalation is published exactly once (counted on the topic)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from sqlmodel import Session, col, select

from services.escalation.models import EscalationDeadline, EscalationOutbox
from services.escalation.timesource import write_time_file
from shared.db import make_engine
from shared.events.catalogue import decode_event, encode_event
from shared.events.internal import CaseState, Escalation
from shared.localstack.net import free_port
from shared.settings import PROJECT_ROOT, Settings
from shared.topics import CASE_TRANSITIONS, ESCALATIONS
from tests.support.escalation import tracking_caught_up, transition
from tests.support.kafka import produce, read_topic, wait_until

pytestmark = pytest.mark.e2e

CHILDREN = 4


class Worker:
    def __init__(self, settings: Settings, time_file: Path, log_path: Path) -> None:
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
        }
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "services.escalation.main", "serve"],
            cwd=PROJECT_ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        wait_until(self._ready, timeout_s=60, interval_s=0.3, what="escalation worker ready")

    def _ready(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"worker exited: {self.log_path.read_text()[-3000:]}")
        try:
            return httpx.get(f"http://127.0.0.1:{self.port}/health/ready", timeout=3).status_code == 200
        except httpx.HTTPError:
            return False

    def kill(self) -> None:
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


@pytest.fixture
def time_file(tmp_path: Path) -> Path:
    path = tmp_path / "now.txt"
    write_time_file(path, datetime(2025, 11, 3, 9, 0, tzinfo=UTC))
    return path


@pytest.fixture
def worker(pg_settings: Settings, time_file: Path, tmp_path: Path) -> Iterator[Worker]:
    w = Worker(pg_settings, time_file, tmp_path / "worker.log")
    yield w
    w.stop()


def _count(settings: Settings, status: str) -> int:
    engine = make_engine(settings.database_url)
    try:
        with Session(engine) as session:
            return len(
                session.exec(select(EscalationDeadline.id).where(EscalationDeadline.status == status)).all()
            )
    finally:
        engine.dispose()


def _unpublished(settings: Settings) -> int:
    engine = make_engine(settings.database_url)
    try:
        with Session(engine) as session:
            stmt = select(EscalationOutbox.id).where(col(EscalationOutbox.published_at).is_(None))
            return len(session.exec(stmt).all())
    finally:
        engine.dispose()


def test_killed_worker_restarts_and_fires_each_due_escalation_once(
    pg_settings: Settings, worker: Worker, time_file: Path
) -> None:
    worker.start()
    tracking_caught_up(
        pg_settings
    )  # no tracking here: its mark, caught up (escalation's horizon waits for it)
    children = [uuid.uuid4() for _ in range(CHILDREN)]
    missing_at = datetime(2025, 11, 3, 10, 0, tzinfo=UTC)
    produce(
        pg_settings,
        CASE_TRANSITIONS.name(pg_settings),
        [
            (str(c).encode(), encode_event(transition(c, CaseState.WHEREABOUTS_UNKNOWN, missing_at)))
            for c in children
        ],
    )
    wait_until(lambda: _count(pg_settings, "pending") == CHILDREN, what="every clock started and pending")
    # 10:00 Mon 3 Nov: every child's caseworker is alerted; the senior officer steps are pending.
    write_time_file(time_file, datetime(2025, 11, 3, 10, 0, tzinfo=UTC))
    wait_until(lambda: _count(pg_settings, "fired") == CHILDREN, what="every raise fired")
    wait_until(lambda: _unpublished(pg_settings) == 0, what="raises published")
    worker.kill()

    # While it is down, time moves past the first step-up (end of Mon 10 Nov).
    write_time_file(time_file, datetime(2025, 11, 11, 8, 0, tzinfo=UTC))
    worker.start()
    expected = CHILDREN * 2
    wait_until(lambda: _count(pg_settings, "fired") == expected, what="every step-up fired")
    wait_until(lambda: _unpublished(pg_settings) == 0, what="outbox drained")
    records = read_topic(pg_settings, ESCALATIONS.name(pg_settings), expect=expected, timeout_s=30)
    events = [e for e in (decode_event(r.value) for r in records) if isinstance(e, Escalation)]
    per_step = Counter((e.payload.child_id, e.payload.step_index, e.payload.action.value) for e in events)
    assert len(events) == expected, per_step
    assert set(per_step.values()) == {1}
    assert {(c, 0, "raised") for c in children} | {(c, 1, "stepped_up") for c in children} == set(per_step)
    assert {e.occurred_at for e in events if e.payload.step_index == 1} == {
        datetime(2025, 11, 10, 23, 59, 59, tzinfo=UTC)
    }
    assert _count(pg_settings, "pending") == CHILDREN  # the social care steps, due at the end of Mon 17 Nov
