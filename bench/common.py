"""What the benchmark parts share: one result row, a scratch PostgreSQL database, Kafka helpers, timing."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import make_url

from shared.db import make_engine
from shared.settings import PROJECT_ROOT, Settings

DEFAULT_PG = "postgresql://cme:cme-local@127.0.0.1:55433/postgres"
DEFAULT_KAFKA = "127.0.0.1:19092"
BIN = PROJECT_ROOT / ".venv" / "bin"


@dataclass
class Row:
    """One line of the table: a measured number, the baseline measured in the same run, and their ratio."""

    part: str
    metric: str
    value: float
    unit: str
    baseline: str = ""
    baseline_value: float | None = None
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ratio(self) -> float | None:
        if self.baseline_value in (None, 0):
            return None
        return round(self.value / self.baseline_value, 3)  # type: ignore[operator]

    def as_dict(self) -> dict[str, Any]:
        return {
            "part": self.part,
            "metric": self.metric,
            "value": self.value,
            "unit": self.unit,
            "baseline": self.baseline,
            "baseline_value": self.baseline_value,
            "ratio": self.ratio,
            "note": self.note,
            **({"detail": self.extra} if self.extra else {}),
        }


def admin_url() -> str:
    return os.environ.get("CME_BENCH_DATABASE_URL", DEFAULT_PG)


@contextmanager
def scratch_database(label: str) -> Iterator[str]:
    """A fresh PostgreSQL database for one part (dropped afterwards); yields its SQLAlchemy URL."""
    name = f"cme_bench_{label}_{uuid.uuid4().hex[:6]}"
    admin = make_engine(admin_url(), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    base = admin_url().replace("postgresql://", "postgresql+psycopg://", 1)
    url = make_url(base).set(database=name).render_as_string(hide_password=False)
    try:
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def bench_settings(database_url: str, data_dir: Any, partitions: int = 2) -> Settings:
    return Settings(
        kafka_bootstrap=os.environ.get("CME_KAFKA_BOOTSTRAP", DEFAULT_KAFKA),
        topic_prefix=f"bench{uuid.uuid4().hex[:8]}-",
        topic_partitions=partitions,
        database_url=database_url,
        data_dir=data_dir,
    )


def service_env(settings: Settings, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "CME_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
        "CME_TOPIC_PREFIX": settings.topic_prefix,
        "CME_TOPIC_PARTITIONS": str(settings.topic_partitions),
        "CME_DATABASE_URL": settings.database_url,
        "CME_DATA_DIR": str(settings.data_dir),
        # Quiet for timing; a test that must explain a failure asks for more (CME_BENCH_LOG_LEVEL=INFO).
        "CME_LOG_LEVEL": os.environ.get("CME_BENCH_LOG_LEVEL", "WARNING"),
        **extra,
    }


def produce_fast(settings: Settings, topic: str, records: Sequence[tuple[bytes | None, bytes]]) -> float:
    """Bulk-produce (idempotent, acks=all, batched); returns the seconds it took."""
    from kafka import KafkaProducer

    from shared.kafka import kafka_python_config

    producer = KafkaProducer(
        acks="all",
        enable_idempotence=True,
        linger_ms=20,
        batch_size=512 * 1024,
        max_request_size=4 * 1024 * 1024,
        **kafka_python_config(settings),
    )
    started = time.perf_counter()
    for key, value in records:
        producer.send(topic, key=key, value=value)
    producer.flush()
    producer.close()
    return time.perf_counter() - started


def delete_topics(settings: Settings) -> None:
    """Remove the run's topics (prefix) from the shared broker, so benchmarks do not fill its disk."""
    from kafka.admin import KafkaAdminClient

    from shared.kafka import kafka_python_config

    admin = KafkaAdminClient(**kafka_python_config(settings))
    try:
        names = [t for t in admin.list_topics() if t.startswith(settings.topic_prefix)]
        if names:
            admin.delete_topics(names)
    except Exception as exc:  # cleanup only: say so and carry on
        print(f"  (could not delete topics: {type(exc).__name__})", file=sys.stderr)
    finally:
        admin.close()


def wait_for(predicate: Callable[[], Any], timeout_s: float, interval_s: float = 0.25) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval_s)
    raise TimeoutError(f"not done after {timeout_s:.0f}s")


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[index]


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)
