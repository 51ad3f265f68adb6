"""Where the escalation service gets "now" from: the real clock, or a simulated one for tests and drills.

The timer loop asks its :class:`TimeSource` for the time on every tick, so a simulated school year runs in
seconds. Three implementations:

* :class:`SystemTime`: the machine's clock (production).
* :class:`SimulatedTime`: set and advanced in-process (unit and integration tests).
* :class:`FileTime`: reads an ISO-8601 timestamp from a file on each call, so a test (or an operator running
  a drill) can move the time of a separate ``cme-escalation serve`` process. Enabled only when
  ``CME_ESCALATION_SIMULATED_TIME_FILE`` names a file; never on by default.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Protocol


class TimeSource(Protocol):
    def now(self) -> datetime:
        """The current time, timezone-aware UTC."""
        ...

    @property
    def simulated(self) -> bool: ...


def _aware_utc(moment: datetime) -> datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("simulated time must be timezone-aware")
    return moment.astimezone(UTC)


class SystemTime:
    simulated = False

    def now(self) -> datetime:
        return datetime.now(UTC)


class SimulatedTime:
    """A clock that only moves when told to (thread-safe: the timer runs DB work in threads)."""

    simulated = True

    def __init__(self, start: datetime) -> None:
        self._now = _aware_utc(start)
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            return self._now

    def set(self, moment: datetime) -> None:
        moment = _aware_utc(moment)
        with self._lock:
            if moment < self._now:
                raise ValueError("simulated time never runs backwards")
            self._now = moment

    def advance(self, delta: timedelta) -> datetime:
        with self._lock:
            self._now += delta
            return self._now


class FileTime:
    """Simulated time read from a file holding one ISO-8601 timestamp (with offset), e.g.
    ``2025-11-03T09:00:00+00:00``. A missing or unreadable file, or a time earlier than one already seen,
    keeps the last good value, so a half-written file never moves time backwards."""

    simulated = True

    def __init__(self, path: Path) -> None:
        self._path = path
        self._last: datetime | None = None
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            try:
                text = self._path.read_text(encoding="utf-8").strip()
                moment = _aware_utc(datetime.fromisoformat(text))
            except (OSError, ValueError):
                moment = None
            if moment is not None and (self._last is None or moment >= self._last):
                self._last = moment
            if self._last is None:
                raise RuntimeError(f"simulated time file {self._path} holds no valid timestamp yet")
            return self._last


def write_time_file(path: Path, moment: datetime) -> None:
    """Atomically replace the simulated time file (write then rename), for tests and drills."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(_aware_utc(moment).isoformat(), encoding="utf-8")
    tmp.replace(path)
