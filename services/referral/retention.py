"""What ``cme purge`` deletes in referral (``shared.retention``): the idempotency record of each accepted
event names its child."""

from __future__ import annotations

from shared.retention import PurgeHook

PURGE = PurgeHook(service="referral", deletes={"referral_submissions": {"child_id": "child"}})
