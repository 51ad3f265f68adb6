"""What ``cme purge`` deletes in escalation (``shared.retention``): the clocks, escalations and steps of a
purged child's cases."""

from __future__ import annotations

from shared.retention import PurgeHook

CHILD_OR_CASE = {"child_id": "child", "case_id": "case"}
PURGE = PurgeHook(
    service="escalation",
    deletes={
        "escalation_cases": CHILD_OR_CASE,
        "escalation_children": {"child_id": "child"},
        "escalation_deadlines": CHILD_OR_CASE,
        "escalation_escalations": CHILD_OR_CASE,
        "escalation_steps": {"case_id": "case"},
    },
)
