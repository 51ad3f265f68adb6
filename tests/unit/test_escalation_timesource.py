"""Simulated time: in-process and file-driven clocks never run backwards and refuse naive times."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from services.escalation.settings import EscalationSettings
from services.escalation.timesource import FileTime, SimulatedTime, SystemTime, write_time_file

T0 = datetime(2025, 11, 3, 9, 0, tzinfo=UTC)


def test_simulated_time_moves_only_forwards() -> None:
    clock = SimulatedTime(T0)
    assert clock.advance(timedelta(days=7)) == T0 + timedelta(days=7)
    with pytest.raises(ValueError):
        clock.set(T0)
    with pytest.raises(ValueError):
        SimulatedTime(datetime(2025, 11, 3, 9, 0))


def test_file_time_reads_each_call_and_keeps_the_last_good_value(tmp_path: Path) -> None:
    path = tmp_path / "now.txt"
    clock = FileTime(path)
    with pytest.raises(RuntimeError):
        clock.now()  # no file yet: the worker refuses to start
    write_time_file(path, T0)
    assert clock.now() == T0
    write_time_file(path, T0 + timedelta(days=1))
    assert clock.now() == T0 + timedelta(days=1)
    path.write_text("not a time")
    assert clock.now() == T0 + timedelta(days=1)
    write_time_file(path, T0)  # backwards: ignored
    assert clock.now() == T0 + timedelta(days=1)


def test_settings_choose_the_time_source(tmp_path: Path) -> None:
    assert isinstance(EscalationSettings().time_source(), SystemTime)
    chosen = EscalationSettings(escalation_simulated_time_file=tmp_path / "now.txt").time_source()
    assert isinstance(chosen, FileTime) and chosen.simulated
