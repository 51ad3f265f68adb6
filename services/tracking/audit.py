"""Who read what: every read of a child's record, list or report is written to ``tracking_read_audit`` in the
read's own transaction (the caller commits)."""

from __future__ import annotations

from sqlmodel import Session

from services.tracking.models import TrackingReadAudit
from shared.auth import Principal


def audit_read(session: Session, who: Principal, action: str, child_id: str | None, reason: str) -> None:
    session.add(
        TrackingReadAudit(
            subject=who.sub,
            role=who.role,
            la_code=who.la_code,
            action=action,
            child_id=child_id,
            reason=reason,
        )
    )
