"""The kept test broker's housekeeping: which tests' topics are stale (tests/support/stack.py)."""

from __future__ import annotations

import os
from pathlib import Path

from tests.support.stack import STALE_TEST_TOPIC_S, stale_test_topics

NOW = 1_800_000_000.0


def _partition(logs: Path, name: str, written: float) -> None:
    directory = logs / name
    directory.mkdir(parents=True)
    segment = directory / "00000000000000000000.log"
    segment.write_bytes(b"")
    os.utime(segment, (written, written))


def test_only_tests_topics_idle_for_hours_are_stale(tmp_path: Path) -> None:
    old, recent = NOW - STALE_TEST_TOPIC_S - 60, NOW - 60
    _partition(tmp_path, "t0123456789-cme.intake.v1-0", old)
    _partition(tmp_path, "t0123456789-cme.intake.v1-1", old)
    # One partition written recently keeps the whole topic (a running test of another session).
    _partition(tmp_path, "tabcdef0123-cme.intake.v1-0", old)
    _partition(tmp_path, "tabcdef0123-cme.intake.v1-1", recent)
    _partition(tmp_path, "t01234567-cme.escalations.v1-0", old)  # an 8-digit prefix (the SASL test's)
    # Not a test's: the developer's own stack, the broker's internal topics, deletions in progress.
    _partition(tmp_path, "cme.intake.v1-0", old)
    _partition(tmp_path, "__consumer_offsets-0", old)
    _partition(tmp_path, "t0123456789-cme.alert-acks.v1-0.86de7083d0d94f508247aa0d58e2ea6f-delete", old)
    (tmp_path / "meta.properties").write_text("")

    assert stale_test_topics(tmp_path, NOW) == ["t01234567-cme.escalations.v1", "t0123456789-cme.intake.v1"]
    assert stale_test_topics(tmp_path, NOW - 3600) == []
    assert stale_test_topics(tmp_path / "absent", NOW) == []
