"""Fixtures: a real Kafka broker and a real PostgreSQL for the session, unique topics per test."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shared.kafka import ensure_topics
from shared.localstack.postgres import PostgresCluster
from shared.settings import Settings
from tests.support import stack


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    with stack.kafka_bootstrap() as bootstrap:
        yield bootstrap


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[tuple[str, PostgresCluster | None]]:
    with stack.postgres() as server:
        yield server


@pytest.fixture
def postgres_url(postgres_server: tuple[str, PostgresCluster | None]) -> str:
    """A fresh, empty database for this test when the cluster is ours; the shared one otherwise."""
    url, cluster = postgres_server
    if cluster is None:
        return url
    return cluster.create_database(f"t_{uuid.uuid4().hex[:12]}")


@pytest.fixture
def topic_prefix() -> str:
    return f"t{uuid.uuid4().hex[:10]}-"


@pytest.fixture
def kafka_settings(kafka_bootstrap: str, topic_prefix: str, tmp_path) -> Settings:  # type: ignore[no-untyped-def]
    """Settings on the real broker with this test's own topics (created here), SQLite in tmp_path."""
    settings = Settings(
        kafka_bootstrap=kafka_bootstrap,
        topic_prefix=topic_prefix,
        topic_partitions=2,
        database_url=f"sqlite:///{tmp_path / 'cme.db'}",
        data_dir=tmp_path,
        log_json=True,
    )
    ensure_topics(settings)
    return settings


@pytest.fixture
def pg_settings(kafka_settings: Settings, postgres_url: str) -> Settings:
    """Like kafka_settings, with the case store on the real PostgreSQL."""
    return kafka_settings.model_copy(update={"database_url": postgres_url})


LOG_TAIL_LINES = 30
LOG_TAIL_FILES = 12


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Iterator[None]:
    """A failed test that ran services as processes shows the end of each service's log (every harness
    writes them under the test's tmp_path): the cause of a stall is in a service's log, and CI keeps only
    what pytest prints."""
    outcome: Any = yield
    report = outcome.get_result()
    tmp_path = getattr(item, "funcargs", {}).get("tmp_path")
    if report.when != "call" or not report.failed or not isinstance(tmp_path, Path):
        return
    logs = sorted(
        (p for p in tmp_path.rglob("*.log") if _is_text(p)), key=lambda p: p.stat().st_mtime, reverse=True
    )
    for log in sorted(logs[:LOG_TAIL_FILES]):
        tail = log.read_text(errors="replace").splitlines()[-LOG_TAIL_LINES:]
        if tail:
            report.sections.append((f"last lines of {log.relative_to(tmp_path)}", "\n".join(tail)))


def _is_text(path: Path) -> bool:
    """A service's log, not a Kafka data segment (also named *.log; binary, full of NUL bytes)."""
    with path.open("rb") as f:
        f.seek(max(0, path.stat().st_size - 65536))
        return b"\x00" not in f.read()
