"""What ``cme purge`` deletes in the web (``shared.retention``): the work and notes people kept on a purged
child's alerts and cases (alert ids are notify's, case ids tracking's)."""

from __future__ import annotations

from shared.retention import PurgeHook

PURGE = PurgeHook(
    service="web",
    deletes={
        "web_alert_notes": {"alert_id": "alert"},
        "web_alert_work": {"alert_id": "alert"},
        "web_case_work": {"case_id": "case"},
        "web_recorded_facts": {"case_id": "case"},
    },
)
