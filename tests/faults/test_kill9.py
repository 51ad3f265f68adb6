"""kill -9 each service in the middle of a stream of referrals, restart it, and check nothing was lost,
applied twice, escalated twice or mailed twice.

The stream runs in a background thread like a school's MIS: it retries an event (same event_id) until the
referral API accepts it, so while the referral service itself is dead the stream waits and then resumes.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.settings import Settings
from tests.support.kafka import wait_until
from tests.support.pipeline import Pipeline, running_pipeline

pytestmark = [pytest.mark.faults, pytest.mark.e2e]


@pytest.fixture
def pipeline(kafka_settings: Settings, postgres_url: str, tmp_path: Path) -> Iterator[Pipeline]:
    with running_pipeline(kafka_settings, postgres_url, tmp_path) as pipeline:
        yield pipeline


@pytest.mark.parametrize("victim", ["referral", "tracking", "escalation", "notify"])
def test_kill9_mid_stream(pipeline: Pipeline, victim: str) -> None:
    stream = pipeline.stream_children(range(1, 7), interval_s=0.2)
    # Kill once the stream is flowing: some events through, some still to come or in flight.
    wait_until(lambda: len(pipeline.accepted) >= 4, timeout_s=30, what="the stream to start")
    pipeline.kill9(victim)
    pipeline.restart(victim)
    pipeline.join_stream(stream)
    pipeline.wait_all_processed()
    pipeline.wait_alerts()
    pipeline.check_guarantees()
