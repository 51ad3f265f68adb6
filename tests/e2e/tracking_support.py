"""Run the tracking worker as a real process against the test broker and database, and read its case store."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import Any

from sqlalchemy import text

from devtools.samples import sample_event
from shared.db import make_engine
from shared.events import encode_event
from shared.events.envelope import Envelope
from shared.kafka import ensure_topics
from shared.settings import PROJECT_ROOT, Settings
from shared.topics import INTAKE, intake_key
from tests.support.kafka import produce, wait_until

WORKER = PROJECT_ROOT / ".venv" / "bin" / "cme-tracking"


def make_settings(bootstrap: str, database_url: str, data_dir: Path) -> Settings:
    settings = Settings(
        kafka_bootstrap=bootstrap,
        topic_prefix=f"t{uuid.uuid4().hex[:10]}-",
        topic_partitions=2,
        database_url=database_url,
        data_dir=data_dir,
    )
    ensure_topics(settings)
    return settings


@contextmanager
def tracking_worker(settings: Settings, log_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    env = {
        **os.environ,
        "CME_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
        "CME_TOPIC_PREFIX": settings.topic_prefix,
        "CME_TOPIC_PARTITIONS": str(settings.topic_partitions),
        "CME_DATABASE_URL": settings.database_url,
        "CME_DATA_DIR": str(settings.data_dir),
        "CME_TRACKING_STORE": "rocksdb",
        # A partition faust loses is read again well inside the tests' 60 s waits (shared/stream_stalls.py).
        "CME_STREAM_STALL_AFTER_S": "10",
    }
    with open(log_path, "ab") as log:
        proc = subprocess.Popen([str(WORKER), "worker"], env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        yield proc
    except Exception:  # a failed assertion or a wait that ran out
        print_stacks(proc, log_path)
        raise
    finally:
        stop(proc)


def print_stacks(proc: subprocess.Popen[bytes], log_path: Path, max_lines: int = 400) -> None:
    """A wait that ran out inside a worker's lifetime may be a stalled worker: before it is stopped, ask it
    for every thread's stack and every asyncio task (mode's SIGUSR1 handler writes them to its stderr, the
    log) and print them with the failure. No answer within 10 s means its event loop itself is blocked."""
    if proc.poll() is not None:
        print(f"tracking worker {proc.pid} had already exited with {proc.returncode}")
        return
    start = log_path.stat().st_size
    proc.send_signal(signal.SIGUSR1)

    def dumped() -> bytes | None:
        tail = log_path.read_bytes()[start:]
        return tail if b"TASKS" in tail else None

    try:
        wait_until(dumped, timeout_s=10, interval_s=0.5, what="the worker's stack dump")
    except AssertionError:
        print(f"tracking worker {proc.pid} did not answer SIGUSR1 within 10 s: its event loop is blocked")
        return
    sizes: list[int] = []

    def settled() -> bool:  # the dump is written in one go: done when the log stops growing for a poll
        sizes.append(log_path.stat().st_size)
        return len(sizes) > 1 and sizes[-1] == sizes[-2]

    with contextlib.suppress(AssertionError):
        wait_until(settled, timeout_s=5, interval_s=0.5, what="the end of the dump")
    lines = log_path.read_bytes()[start:].decode(errors="replace").splitlines()
    print(f"--- tracking worker {proc.pid}: threads and tasks when the test failed ---")
    print("\n".join(lines[:max_lines]))


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            # Killed, the worker never leaves its group: a successor then waits for the session timeout (60 s)
            # before it is given this worker's partitions. Say so, in case a later wait runs out.
            print(f"tracking worker {proc.pid} did not stop within 30 s of SIGTERM; killed")
            proc.kill()
            proc.wait()


def send(settings: Settings, events: list[Envelope]) -> None:
    """Publish like the referral service: keyed by the source child identifier (UPN, else LA id, else event
    id)."""
    produce(settings, INTAKE.name(settings), [(intake_key(e), encode_event(e)) for e in events])


def query(settings: Settings, sql: str, **params: Any) -> list[dict[str, Any]]:
    engine = make_engine(settings.database_url)
    try:
        with engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(text(sql), params)]
    except Exception:  # tables not migrated yet by a worker still starting
        return []
    finally:
        engine.dispose()


def case_of(settings: Settings, event_id: uuid.UUID) -> dict[str, Any] | None:
    """The case of the child an inbound event was resolved to (None until it is there)."""
    rows = query(
        settings,
        "SELECT c.* FROM tracking_cases c JOIN tracking_resolutions r ON r.child_id = c.child_id "
        "WHERE r.event_id = :e",
        e=str(event_id),
    )
    return rows[0] if rows else None


def wait_state(
    settings: Settings, event_id: uuid.UUID, state: str, facts: int | None = None, timeout_s: float = 60
) -> dict[str, Any]:
    seen: list[Any] = [None]

    def ready() -> dict[str, Any] | None:
        case = seen[0] = case_of(settings, event_id)
        if case and case["state"] == state and (facts is None or case["facts_applied"] == facts):
            return case
        return None

    try:
        return wait_until(ready, timeout_s=timeout_s, what=f"case in {state}")  # type: ignore[no-any-return]
    except AssertionError as exc:
        last = seen[0] and {k: seen[0][k] for k in ("state", "facts_applied", "cause_event_id")}
        raise AssertionError(f"{exc}; case was {last}") from None


def event(event_type: str, serial: int, day: int, la_code: str = "801", **kw: Any) -> Envelope:
    return sample_event(event_type, child_serial=serial, on=date(2025, 11, day), la_code=la_code, **kw)
