"""The local runner: a failed start leaves no process behind."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from shared import localrun
from shared.settings import Settings


def test_a_service_that_fails_to_start_takes_the_started_ones_down(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    started: list[subprocess.Popen[bytes]] = []

    def spawn(service: localrun.ServiceProcess, env: dict[str, str], logs: Path) -> subprocess.Popen[bytes]:
        if service.name == "tracking":
            raise FileNotFoundError("cme-tracking")
        proc = subprocess.Popen(["sleep", "60"])
        started.append(proc)
        return proc

    monkeypatch.setattr(localrun, "spawn", spawn)
    with pytest.raises(FileNotFoundError):
        localrun.start_services(Settings(data_dir=tmp_path), {}, tmp_path / "logs")
    assert started and all(proc.poll() is not None for proc in started)
