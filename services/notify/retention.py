"""What ``cme purge`` deletes in notify (``shared.retention``): a purged child's escalations and alerts, and
everything keyed by those alerts (deliveries with staff addresses, link uses, audit). The alert ids are
notify's to know: it adds them as the "alert" ids, which the web's alert tables are purged by too."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.engine import Connection

from shared.retention import Ids, PurgeHook, Tables


def alerts_of(conn: Connection, tables: Tables, ids: Ids) -> Ids:
    alerts = tables.get("notify_alert")
    if alerts is None or not ids.get("child"):
        return {}
    return {
        "alert": set(
            conn.execute(select(alerts.c.alert_id).where(alerts.c.child_id.in_(ids["child"]))).scalars()
        )
    }


ALERT = {"alert_id": "alert"}
PURGE = PurgeHook(
    service="notify",
    deletes={
        "notify_alert": {
            "child_id": "child",
            "case_id": "case",
            "alert_id": "alert",
        },  # found by child: the same rows
        "notify_escalation": {"child_id": "child", "case_id": "case"},
        "notify_delivery": ALERT,
        "notify_link_use": ALERT,
        "notify_audit": ALERT,
    },
    derive=alerts_of,
)
