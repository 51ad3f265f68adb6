"""A faust worker that loses a partition (as faust can, silently) reads it again: the stall watch of
shared/stream_stalls.py, on a real broker, in a worker process built like tracking's (stall_probe.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaProducer
from kafka.admin import KafkaAdminClient, NewTopic

from shared.kafka import kafka_python_config
from shared.settings import PROJECT_ROOT, Settings
from tests.e2e.tracking_support import stop
from tests.support.kafka import read_topic, wait_until

pytestmark = pytest.mark.integration

STALL_AFTER_S = 4


def _send(settings: Settings, topic: str, records: list[tuple[int, bytes]]) -> None:
    producer = KafkaProducer(acks="all", **kafka_python_config(settings))
    try:
        for partition, value in records:
            producer.send(topic, key=value, value=value, partition=partition).get(timeout=30)
    finally:
        producer.close()


def _copies(settings: Settings, expect: int, timeout_s: float = 30) -> set[bytes]:
    return {r.value for r in read_topic(settings, f"{settings.topic_prefix}stall-out", expect, timeout_s)}


def _log_lines(path: Path, event: str) -> list[dict[str, Any]]:
    lines = []
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith("{") and f'"{event}"' in line:
            lines.append(json.loads(line))
    return lines


@pytest.mark.parametrize("fault", ["read-offset", "fetch-set"])
def test_a_lost_partition_is_read_again_from_its_committed_offset(
    kafka_settings: Settings, tmp_path: Path, fault: str
) -> None:
    source, out = f"{kafka_settings.topic_prefix}stall-in", f"{kafka_settings.topic_prefix}stall-out"
    admin = KafkaAdminClient(**kafka_python_config(kafka_settings))
    admin.create_topics([NewTopic(t, num_partitions=2, replication_factor=1) for t in (source, out)])
    admin.close()
    log_path = tmp_path / "probe.log"
    env = {
        **os.environ,
        "CME_KAFKA_BOOTSTRAP": kafka_settings.kafka_bootstrap,
        "CME_TOPIC_PREFIX": kafka_settings.topic_prefix,
        "CME_TOPIC_PARTITIONS": "2",
        "CME_DATA_DIR": str(tmp_path),
        "CME_STREAM_STALL_AFTER_S": str(STALL_AFTER_S),
        "STALL_PROBE_FAULT": fault,
    }
    with open(log_path, "ab") as log:
        worker = subprocess.Popen(
            [sys.executable, "-m", "faust", "-A", "tests.integration.stall_probe", "worker", "-l", "warn",
             "--without-web"],
            cwd=PROJECT_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        # One record on each partition; the probe loses partition 1 once its first record is done.
        _send(kafka_settings, source, [(0, b"first-0"), (1, b"first-1")])
        assert _copies(kafka_settings, 2, timeout_s=90) == {b"first-0", b"first-1"}
        later = [(1, b"lost-1"), (0, b"kept-0"), (1, b"lost-2"), (0, b"kept-1"), (1, b"lost-3")]
        _send(kafka_settings, source, later)
        expected = {b"first-0", b"first-1"} | {value for _, value in later}
        wait_until(
            lambda: _copies(kafka_settings, 0) >= expected,
            timeout_s=60,
            what="every record copied, the lost partition's too",
        )
        stalls = wait_until(lambda: _log_lines(log_path, "stream_partition_stalled"), what="the stall logged")
    finally:
        stop(worker)
    # The lost partition, read again from where the group stood (after first-1), and only it: the healthy
    # partition, quiet and caught up, is never touched. Its end is 4 once the three later records are in (a
    # send slower than the stall wait, on a loaded machine, lets the watch see it at 2 or 3).
    assert [(s["topic"], s["partition"], s["committed"]) for s in stalls] == [(source, 1, 1)]
    assert 2 <= stalls[0]["end"] <= 4
    if fault == "read-offset":
        assert stalls[0]["read_offset"] == 10**9
    else:
        assert (stalls[0]["fetching"], stalls[0]["buffered"]) == (False, True)
    assert "Traceback" not in log_path.read_text(errors="replace")
