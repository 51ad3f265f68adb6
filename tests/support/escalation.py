"""Builders for the escalation service's inputs (transitions, child facts, acks) in tests."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from typing import Any

from shared.events.envelope import Source
from shared.events.internal import (
    AckAction,
    AlertAck,
    AlertAckPayload,
    CaseState,
    CaseTransition,
    CaseTransitionPayload,
    ChildFact,
    ChildFactPayload,
    MatchKind,
)
from shared.events.vocab import SocialCareStatus
from shared.samples import sample_event_dict

LA = "801"


def case_id_of(child_id: uuid.UUID) -> uuid.UUID:
    return uuid.uuid5(child_id, "case")


def transition(
    child_id: uuid.UUID,
    to_state: CaseState,
    at: datetime,
    *,
    from_state: CaseState | None = None,
    la: str = LA,
    social_care: SocialCareStatus = SocialCareStatus.NONE,
    has_social_worker: bool = False,
    safeguarding_concern: bool = False,
) -> CaseTransition:
    return CaseTransition(
        event_id=uuid.uuid4(),
        occurred_at=at,
        source=Source(system="cme-tracking", la_code=la),
        payload=CaseTransitionPayload(
            child_id=child_id,
            case_id=case_id_of(child_id),
            la_code=la,
            from_state=from_state,
            to_state=to_state,
            cause_event_id=uuid.uuid4(),
            cause_event_type="test",
            cause_occurred_at=at,
            social_care_status=social_care,
            has_social_worker=has_social_worker,
            safeguarding_concern=safeguarding_concern,
        ),
    )


def child_fact(child_id: uuid.UUID, event_type: str, on: date, la: str = LA, **payload: Any) -> ChildFact:
    fact = sample_event_dict(event_type, on=on, la_code=la)
    fact["payload"].update(payload)
    return ChildFact(
        event_id=uuid.uuid4(),
        occurred_at=datetime.fromisoformat(fact["occurred_at"]),
        source=Source(system="cme-tracking", la_code=la),
        payload=ChildFactPayload(child_id=child_id, la_code=la, match=MatchKind.EXACT, fact=fact),
    )


def ack(
    escalation_id: uuid.UUID, child_id: uuid.UUID, step_index: int, action: AckAction, la: str = LA
) -> AlertAck:
    return AlertAck(
        event_id=uuid.uuid4(),
        occurred_at=datetime.now(UTC),
        source=Source(system="cme-notify", la_code=la),
        payload=AlertAckPayload(
            escalation_id=escalation_id, child_id=child_id, la_code=la, step_index=step_index,
            action=action, by_user="officer-17",
        ),
    )  # fmt: skip
