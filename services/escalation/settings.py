"""The escalation service's settings: the shared ones plus the timer and simulated time (env prefix CME_)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from services.escalation.timesource import FileTime, SystemTime, TimeSource
from shared.settings import Settings

# What one escalation process runs (docs/ESCALATION.md, "Roles: the urgent lane in a process of its own"):
# "all" (one process does everything), or, split so that a bulk load never holds the urgent lane's turn or
# its interpreter, "in_order" processes (the transitions, child facts and acks) beside "urgent" ones
# (tracking's provisional transitions). Every role runs the timer and the outbox relay.
EscalationRole = Literal["all", "in_order", "urgent"]


class EscalationSettings(Settings):
    # How often the timer looks for due deadlines when nothing wakes it earlier (seconds, real time).
    escalation_tick_s: float = Field(default=1.0, gt=0)
    # Deadlines fired per due-check (one transaction each); a full batch is followed at once by another.
    escalation_due_batch: int = Field(default=200, ge=1)
    # How far behind now a partition's event-time horizon may be and still count as live (seconds): a
    # deadline whose episode is still open is alerted only from a live partition (a backlog waits until it
    # has caught up), and an alert more than this late after its due time is recorded as late.
    escalation_live_window_s: float = Field(default=60.0, gt=0)
    # Tracking's progress marks (docs/ESCALATION.md "Tracking's lag in the watermark"): a partition's horizon
    # waits until tracking says it has folded every fact up to it. Off only for a rolling upgrade in which
    # escalation runs before a tracking that sends the marks (upgrade tracking first, then escalation, and
    # leave this on); off, a clock may be decided while tracking lags behind on the facts that would end it.
    escalation_require_tracking_mark: bool = True
    escalation_role: EscalationRole = "all"
    # Simulated time for drills and process-level tests: a file holding one ISO-8601 timestamp. Unset (the
    # default) means the real clock; never set it in production.
    escalation_simulated_time_file: Path | None = None

    def time_source(self) -> TimeSource:
        if self.escalation_simulated_time_file is not None:
            return FileTime(self.escalation_simulated_time_file)
        return SystemTime()
