"""What escalation knows of a child's social-care context (status, social worker, flags, concern), from its
copy of the case and per child, case or no case: the context rules match on."""

from __future__ import annotations

from sqlmodel import Session

from services.escalation.models import (
    EscalationCase,
    EscalationChild,
)
from services.escalation.rules import MatchContext
from shared.logs import get_logger

log = get_logger(__name__)


def case_context(case: EscalationCase, reason: str | None) -> MatchContext:
    """What escalation last heard of the child's context, from its copy of the case."""
    return MatchContext(
        has_social_worker=case.has_social_worker,
        social_care_status=case.social_care_status,
        reason=reason,
        vulnerabilities=frozenset(v for v in case.vulnerabilities.split(",") if v),
        safeguarding_concern=case.safeguarding_concern,
    )


def child_context(session: Session, child: str, la: str) -> MatchContext | None:
    """What escalation knows of the child's social-care context, per child, case or no case."""
    row = session.get(EscalationChild, (child, la))
    if row is None:
        return None
    return MatchContext(
        has_social_worker=row.has_social_worker,
        social_care_status=row.social_care_status,
        vulnerabilities=frozenset(v for v in row.vulnerabilities.split(",") if v),
        safeguarding_concern=row.safeguarding_concern,
    )


def remember_child(session: Session, child: str, la: str, ctx: MatchContext) -> None:
    row = session.get(EscalationChild, (child, la)) or EscalationChild(child_id=child, la_code=la)
    row.has_social_worker = ctx.has_social_worker
    row.social_care_status = ctx.social_care_status or "none"
    row.vulnerabilities = ",".join(sorted(ctx.vulnerabilities))
    row.safeguarding_concern = ctx.safeguarding_concern
    session.add(row)
