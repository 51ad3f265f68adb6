"""Prometheus metrics of the escalation service (labels: rule ids and ladder levels, never child data)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

OPEN_DEADLINES = Gauge(
    "cme_escalation_open_deadlines", "Pending durable timers (rule clocks and ladder steps)"
)
OPEN_ESCALATIONS = Gauge("cme_escalation_open_escalations", "Escalations still alerting (not acknowledged)")
RAISED = Counter("cme_escalation_raised_total", "Escalations raised (step 0 alerted)", ["level", "rule"])
STEPPED_UP = Counter("cme_escalation_stepped_up_total", "Ladder steps after the first", ["level", "rule"])
CANCELLED = Counter("cme_escalation_cancelled_total", "Alerting escalations cancelled", ["level", "rule"])
ACKNOWLEDGED = Counter("cme_escalation_acknowledged_total", "Escalations acknowledged", ["rule"])
DUPLICATES = Counter(
    "cme_escalation_duplicate_steps_total",
    "Steps not published because another escalation of the case alerted the same level at the same time",
    ["level", "rule"],
)
DUE_CHECK_SECONDS = Histogram(
    "cme_escalation_due_check_seconds",
    "Duration of one due-check query",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0),
)
LOCK_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5)
LOCK_WAIT = Histogram(
    "cme_escalation_unit_of_work_wait_seconds",
    "Time a unit of work waited for its turn (one at a time per process), by who asked: the in-order "
    "consumer, the urgent consumer, the due-check",
    ["by"],
    buckets=LOCK_BUCKETS,
)
LOCK_HELD = Histogram(
    "cme_escalation_unit_of_work_seconds",
    "Time a unit of work held its turn, by who held it",
    ["by"],
    buckets=LOCK_BUCKETS,
)
TIMER_LAG = Histogram(
    "cme_escalation_timer_lag_seconds",
    "How late a deadline fired (now - due_at), in the service's time",
    buckets=(0.1, 0.5, 1, 2, 5, 10, 30, 60, 300, 3600),
)
RECORDS = Counter(
    "cme_escalation_records_total", "Records consumed, by topic kind and outcome", ["kind", "outcome"]
)
WITHHELD = Counter(
    "cme_escalation_withheld_steps_total",
    "Steps that fell due while the episode was open but were decided after a fact had ended it (a backlog):"
    " recorded, alerting nobody",
    ["level", "rule"],
)
LATE = Counter(
    "cme_escalation_late_steps_total",
    "Steps published more than the live window after they fell due (a backlog, a worker that was down)",
    ["level", "rule"],
)
LATE_RECORDS = Counter(
    "cme_escalation_late_records_total",
    "Input records whose event time was older than their partition's watermark when read",
    ["kind"],
)
HORIZON_LAG = Gauge(
    "cme_escalation_horizon_lag_seconds",
    "How far behind now each input's watermark of a partition is (input: transitions, child_events,"
    " tracking), in the service's time; a partition's horizon is held by its input with the largest lag",
    ["partition", "input"],
)
DUE_CHECK_COMPLETED = Gauge(
    "cme_escalation_due_check_completed_timestamp_seconds",
    "When this process last completed a due-check (Unix time): every statutory clock is decided by one; an"
    " alert fires when no process has completed one for a while",
)
