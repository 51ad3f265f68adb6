"""Where the tests get a real Kafka broker and a real PostgreSQL from.

In order: an external one named by an environment variable (CME_TEST_KAFKA_BOOTSTRAP, CME_TEST_DATABASE_URL);
testcontainers when a Docker daemon answers; otherwise the local stack (Kafka from Maven Central on the JDK,
PostgreSQL from Debian's packages) started in .cache/test-stack and stopped at the end of the session.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from shared.localstack.kafka import KafkaBroker
from shared.localstack.postgres import PostgresCluster
from shared.settings import PROJECT_ROOT

TEST_STACK_DIR = PROJECT_ROOT / ".cache" / "test-stack"
KAFKA_TEST_PORT = int(os.environ.get("CME_TEST_KAFKA_PORT", "19092"))
POSTGRES_TEST_PORT = int(os.environ.get("CME_TEST_POSTGRES_PORT", "55433"))
KAFKA_IMAGE = "apache/kafka:4.1.1"
# A test's topics: its own prefix (t + 8 to 10 hex digits), then the topic; a partition's log directory adds
# "-<partition>".
TEST_TOPIC_DIR = re.compile(r"^(t[0-9a-f]{8,10}-.+)-[0-9]+$")
STALE_TEST_TOPIC_S = 3 * 3600
POSTGRES_IMAGE = "postgres:16-alpine"


def docker_available() -> bool:
    if os.environ.get("CME_TEST_NO_DOCKER") or not shutil.which("docker"):
        return False
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=5).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@contextlib.contextmanager
def kafka_bootstrap() -> Iterator[str]:
    external = os.environ.get("CME_TEST_KAFKA_BOOTSTRAP")
    if external:
        yield external
        return
    if docker_available():
        from testcontainers.kafka import KafkaContainer

        with KafkaContainer(KAFKA_IMAGE).with_kraft() as container:
            yield container.get_bootstrap_server()
        return
    data_dir = TEST_STACK_DIR / f"kafka-{KAFKA_TEST_PORT}"
    broker = KafkaBroker(data_dir=data_dir, port=KAFKA_TEST_PORT, controller_port=KAFKA_TEST_PORT + 1)
    started_here = not broker.running()
    broker.start()
    if os.environ.get("CME_TEST_KEEP_STACK"):
        prune_stale_test_topics(broker.bootstrap, data_dir / "logs")
    try:
        yield broker.bootstrap
    finally:
        if started_here and not os.environ.get("CME_TEST_KEEP_STACK"):
            broker.stop()


def stale_test_topics(logs_dir: Path, now: float, age_s: float = STALE_TEST_TOPIC_S) -> list[str]:
    """Tests' topics none of whose partitions' files has been written for ``age_s`` (another session's
    running test writes its own, so they are newer)."""
    newest: dict[str, float] = {}
    for partition in logs_dir.iterdir() if logs_dir.is_dir() else ():
        match = TEST_TOPIC_DIR.match(partition.name)
        if match is None or not partition.is_dir():
            continue
        written = max((f.stat().st_mtime for f in partition.iterdir()), default=partition.stat().st_mtime)
        newest[match[1]] = max(newest.get(match[1], 0.0), written)
    return sorted(topic for topic, written in newest.items() if now - written > age_s)


def prune_stale_test_topics(bootstrap: str, logs_dir: Path) -> None:
    """A kept test broker (CME_TEST_KEEP_STACK) keeps every test's topics: after some 20,000 partitions it
    cannot open its files any more ("Too many open files") and stops, and every test after that fails. A
    session that keeps the stack deletes the tests' topics left idle for hours."""
    stale = stale_test_topics(logs_dir, time.time())
    if not stale:
        return
    from kafka.admin import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="cme-test-prune")
    try:
        for start in range(0, len(stale), 500):
            admin.delete_topics(stale[start : start + 500], timeout_ms=60_000)
    except Exception as exc:  # housekeeping only: the tests run either way
        print(f"(could not delete stale test topics: {type(exc).__name__}: {exc})")
    finally:
        admin.close()


@contextlib.contextmanager
def postgres() -> Iterator[tuple[str, PostgresCluster | None]]:
    """Yields the URL of a database the tests own, and the local cluster when it is ours to control."""
    external = os.environ.get("CME_TEST_DATABASE_URL")
    if external:
        yield external, None
        return
    if docker_available():
        from testcontainers.postgres import PostgresContainer

        with PostgresContainer(POSTGRES_IMAGE, driver="psycopg") as container:
            yield container.get_connection_url(), None
        return
    # Under /tmp: the postgres user must be able to reach it; one cluster per port.
    data_dir = Path("/tmp") / f"cme-test-pg-{POSTGRES_TEST_PORT}"
    cluster = PostgresCluster(data_dir=data_dir, port=POSTGRES_TEST_PORT)
    started_here = not cluster.running()
    cluster.start()
    try:
        yield cluster.url, cluster
    finally:
        if started_here and not os.environ.get("CME_TEST_KEEP_STACK"):
            cluster.stop()
