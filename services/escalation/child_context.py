"""What escalation knows of a child's social-care context (status, social worker, flags, concern), from its
copy of the case and per child, case or no case: the context rules match on."""

from __future__ import annotations

from collections.abc import Collection, Mapping

from sqlalchemy import insert
from sqlmodel import Session, col, select

from services.escalation.models import (
    EscalationCase,
    EscalationChild,
)
from services.escalation.rules import MatchContext
from services.escalation.unit_of_work import children_by_la
from shared.logs import get_logger
from shared.sql import any_of

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
    if (child, la) in session.info.get(FRESH, ()):
        return NOTHING_KNOWN
    if (child, la) in session.info.get(ROWLESS, ()):
        return None
    row = session.get(EscalationChild, (child, la))
    if row is None:
        return None
    return MatchContext(
        has_social_worker=row.has_social_worker,
        social_care_status=row.social_care_status,
        vulnerabilities=frozenset(v for v in row.vulnerabilities.split(",") if v),
        safeguarding_concern=row.safeguarding_concern,
    )


Kept = tuple[bool, str, str, bool]  # a row's has_social_worker, social_care_status, vulnerabilities, concern


def kept_of(ctx: MatchContext) -> Kept:
    return (
        ctx.has_social_worker,
        ctx.social_care_status or "none",
        ",".join(sorted(ctx.vulnerabilities)),
        ctx.safeguarding_concern,
    )


# A row as ``load_children`` writes it: nothing known (the table's defaults).
NOTHING_KNOWN = MatchContext(social_care_status="none")
NOTHING: Kept = kept_of(NOTHING_KNOWN)


def remember_child(session: Session, child: str, la: str, ctx: MatchContext) -> None:
    """Keep ``ctx`` as what escalation knows of the child; nothing is written when it is what was already kept
    (most facts, a roll load's above all, say nothing new about the child)."""
    kept = kept_of(ctx)
    fresh: set[tuple[str, str]] = session.info.get(FRESH, set())
    if (child, la) in fresh:
        if kept == NOTHING:
            return
        fresh.discard((child, la))  # read back below, and changed: the session holds it from now on
    rowless: set[tuple[str, str]] = session.info.get(ROWLESS, set())
    if (child, la) in rowless:
        # The batch read found no row: make it without asking again (the question would also flush every
        # row and case the batch has made so far, one INSERT each, instead of together at its end).
        rowless.discard((child, la))
        row = None
    else:
        row = session.get(EscalationChild, (child, la))
        if row is not None and kept == (
            row.has_social_worker,
            row.social_care_status,
            row.vulnerabilities,
            row.safeguarding_concern,
        ):
            return
    row = row or EscalationChild(child_id=child, la_code=la)
    row.has_social_worker, row.social_care_status, row.vulnerabilities, row.safeguarding_concern = kept
    session.add(row)


LOADED, FRESH = "escalation_children_loaded", "escalation_children_fresh"
CASELESS = "escalation_children_caseless"
ROWLESS = "escalation_children_rowless"  # read by the batch and found to have no row (nor made one yet)


def case_of(session: Session, child: str, la: str) -> EscalationCase | None:
    """The child's case, None without asking the database when the batch knows it has none."""
    if (child, la) in session.info.get(CASELESS, ()):
        return None
    return session.get(EscalationCase, (child, la))


def case_made(session: Session, child: str, la: str) -> None:
    """A transition opened the child's case: ``case_of`` asks the session from now on."""
    session.info.get(CASELESS, set()).discard((child, la))


def load_children(
    session: Session,
    first_is_fact: Mapping[tuple[str, str], bool],
    unsettled: Collection[tuple[str, str]] = (),
) -> None:
    """Read what escalation knows of a batch's children (their rows and cases) in two statements per LA, so
    each record's ``session.get`` finds them in the session instead of asking the database one at a time.

    ``first_is_fact``: per (child, LA) of the batch, whether the first of its records that reads or writes
    that knowledge is a child fact (a transition otherwise). A child with neither a row nor a case, whose
    first such record is a fact, gets its row now, with nothing known, in one INSERT for the batch: that
    fact would write it before anything else read it (``handle_child_fact`` remembers every fact but a
    retraction), and then writes only what it adds. Until something changes it, the row is known without
    reading it back (``FRESH``). What is kept at the end of the batch is what the facts one by one kept.
    Any other child found without a row is known to have none (``ROWLESS``) until ``remember_child`` makes it.

    A child with no case is known to have none (``case_of``) until a transition makes it (``case_made``),
    except the ``unsettled`` (a re-fold may make their case elsewhere)."""
    by_la = children_by_la(first_is_fact)
    loaded: list[object] = session.info.setdefault(LOADED, [])  # held: the session keeps only weak references
    fresh: set[tuple[str, str]] = session.info.setdefault(FRESH, set())
    caseless: set[tuple[str, str]] = session.info.setdefault(CASELESS, set())
    rowless: set[tuple[str, str]] = session.info.setdefault(ROWLESS, set())
    for la, children in by_la.items():
        rows = session.exec(
            select(EscalationChild).where(
                col(EscalationChild.la_code) == la, any_of(session, col(EscalationChild.child_id), children)
            )
        ).all()
        cases = session.exec(
            select(EscalationCase).where(
                col(EscalationCase.la_code) == la, any_of(session, col(EscalationCase.child_id), children)
            )
        ).all()
        loaded += [*rows, *cases]
        with_case = {c.child_id for c in cases}
        caseless.update((c, la) for c in children if c not in with_case and (c, la) not in unsettled)
        known = {r.child_id for r in rows} | with_case
        new = [child for child in children if first_is_fact[(child, la)] and child not in known]
        if new:
            session.execute(insert(EscalationChild), [{"child_id": child, "la_code": la} for child in new])
            fresh.update((child, la) for child in new)
        made = {r.child_id for r in rows}.union(new)
        rowless.update((child, la) for child in children if child not in made)
