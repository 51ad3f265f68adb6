"""A person's decisions on review items: link two records of one child (ChildMerged) or not, confirm or
reject a cross-LA match, undo a link (ChildSplit). Each decision, its audit row and its event (queued with
``publish`` in the same session's outbox) are committed together by the caller, or not at all; event ids are
derived from the review item, so a republished decision is deduplicated."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from sqlmodel import Session, col, select

from services.tracking import crossla
from services.tracking.audit import audit_read
from services.tracking.crossla import CrossLAMatcher
from services.tracking.errors import Conflict, NotFound, Unprocessable
from services.tracking.models import (
    TrackingChild,
    TrackingCrossLALink,
    TrackingResolution,
    TrackingReviewItem,
)
from shared.auth import Principal
from shared.events.envelope import Source, utcnow
from shared.events.internal import ChildFact, ChildMerged, ChildMergedPayload, ChildSplit, ChildSplitPayload

# Queues a review decision's event in the decision's session (the caller commits both together).
Publish = Callable[[Session, ChildMerged | ChildSplit | ChildFact], None]


def review_items(session: Session, who: Principal, status: str) -> list[dict[str, Any]]:
    rows = session.exec(
        select(TrackingReviewItem)
        .where(TrackingReviewItem.la_code == who.la_code, TrackingReviewItem.status == status)
        .order_by(col(TrackingReviewItem.created_at))
    ).all()
    return [r.model_dump(mode="json") for r in rows]


def merge_pair(item: TrackingReviewItem) -> tuple[str, str]:
    """(surviving, merged) child of a linked review item: the same choice the link made."""
    assert item.other_child_id is not None
    survivor, gone = sorted((item.child_id, item.other_child_id))
    return survivor, gone


def facts_of(session: Session, la_code: str, child_id: str) -> list[uuid.UUID]:
    """The inbound facts that belong to a merged child: resolved to it before the merge, or matched one of
    its identifiers afterwards (identity then followed the merge to the survivor)."""
    rows = session.exec(
        select(TrackingResolution.event_id).where(
            TrackingResolution.la_code == la_code,
            (col(TrackingResolution.child_id) == child_id)
            | (col(TrackingResolution.matched_child_id) == child_id),
        )
    ).all()
    return sorted(uuid.UUID(r) for r in rows)


def _item(session: Session, who: Principal, review_id: uuid.UUID) -> TrackingReviewItem:
    item = session.get(TrackingReviewItem, str(review_id))
    if item is None or item.la_code != who.la_code:
        raise NotFound("no such review item")
    return item


def decide(
    session: Session,
    who: Principal,
    review_id: uuid.UUID,
    decision: str,
    reason: str,
    matcher: CrossLAMatcher,
    publish: Publish,
) -> dict[str, Any]:
    """A person's decision on an open review item: ``link`` / ``not_link`` a possible duplicate (link queues
    ChildMerged), ``confirm`` / ``reject`` a cross-LA match (confirm queues the closing fact)."""
    item = _item(session, who, review_id)
    if item.status != "open":
        raise Conflict(f"already decided: {item.status}")
    if (item.kind == crossla.REVIEW_KIND) != (decision in ("confirm", "reject")):
        raise Unprocessable("a cross-LA match is confirmed or rejected; other items are linked or not linked")
    if item.kind == crossla.REVIEW_KIND:
        return _decide_cross_la(session, who, item, decision, reason, matcher, publish)
    merged: ChildMerged | None = None
    if decision == "link":
        if item.other_child_id is None:
            raise Unprocessable("this review item names one child: nothing to link")
        survivor, gone = merge_pair(item)  # deterministic, either is fine
        merged = ChildMerged(
            event_id=uuid.uuid5(review_id, "merge"),
            occurred_at=utcnow(),
            source=Source(system="cme-tracking", la_code=who.la_code),
            payload=ChildMergedPayload(
                surviving_child_id=uuid.UUID(survivor),
                merged_child_id=uuid.UUID(gone),
                la_code=who.la_code,
                decided_by=who.sub,
                review_item_id=review_id,
            ),
        )
        child = session.get(TrackingChild, gone)
        if child is not None:
            child.merged_into = survivor  # new facts for either child's identifiers now resolve to one
            session.add(child)
    item.status = "linked" if merged else "not_linked"
    item.decided_by, item.decided_at = who.sub, utcnow()
    session.add(item)
    audit_read(session, who, f"review_{decision}", item.child_id, reason)
    if merged is not None:
        publish(session, merged)
    return {"review_id": str(review_id), "status": item.status}


def _decide_cross_la(
    session: Session,
    who: Principal,
    item: TrackingReviewItem,
    decision: str,
    reason: str,
    matcher: CrossLAMatcher,
    publish: Publish,
) -> dict[str, Any]:
    link = session.exec(
        select(TrackingCrossLALink).where(
            (col(TrackingCrossLALink.sought_review_id) == item.review_id)
            | (col(TrackingCrossLALink.found_review_id) == item.review_id)
        )
    ).first()
    if link is None or link.status != "open":
        raise Conflict("the match was decided already")
    closing = matcher.closing_fact(session, link, who.sub) if decision == "confirm" else None
    crossla.decide(session, link, decision, who.la_code, who.sub, reason)
    if link.peer is not None and matcher.federation is not None:
        # The other LA is on another deployment: it learns the decision by a signed message.
        matcher.federation.send_decision(session, link, decision, who.la_code)
    audit_read(session, who, f"review_{decision}", item.child_id, reason)
    if closing is not None:
        publish(session, closing)
    return {"review_id": item.review_id, "status": link.status}


def undo_link(
    session: Session, who: Principal, review_id: uuid.UUID, reason: str, publish: Publish
) -> dict[str, Any]:
    """Undo a person's link of two children: queues ChildSplit, which gives the merged child back its facts
    and re-folds both cases. New facts with the merged child's identifiers resolve to it again."""
    item = _item(session, who, review_id)
    if item.status != "linked":
        raise Conflict(f"only a linked item can be undone: {item.status}")
    survivor, gone = merge_pair(item)
    surviving_child = session.get(TrackingChild, survivor)
    if surviving_child is not None and surviving_child.merged_into is not None:
        # Its facts now sit with a third child: undo that later merge first.
        raise Conflict("the surviving child was merged again since: undo that merge first")
    split = ChildSplit(
        event_id=uuid.uuid5(review_id, "split"),
        occurred_at=utcnow(),
        source=Source(system="cme-tracking", la_code=who.la_code),
        payload=ChildSplitPayload(
            child_id=uuid.UUID(survivor),
            new_child_id=uuid.UUID(gone),
            la_code=who.la_code,
            moved_event_ids=facts_of(session, who.la_code, gone),
            decided_by=who.sub,
        ),
    )
    merged_child = session.get(TrackingChild, gone)
    if merged_child is not None:
        merged_child.merged_into = None  # its identifiers name it again
        session.add(merged_child)
    item.status = "split"
    item.decided_by, item.decided_at = who.sub, utcnow()
    session.add(item)
    audit_read(session, who, "review_undo_link", item.child_id, reason)
    publish(session, split)
    return {"review_id": str(review_id), "status": "split", "moved_facts": len(split.payload.moved_event_ids)}
