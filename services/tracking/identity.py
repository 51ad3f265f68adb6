"""Identity resolution: which child (in the sender's LA) an inbound fact is about.

1. A fact seen before resolves as it did (tracking_resolutions, keyed by event_id): redelivery is harmless.
2. Exact: any strong identifier (UPN or former UPN, ULN, NHS number, LA child id) already known -> that child.
3. Scored: candidates from two blocks (date of birth with day/month transposition folded in; phonetic surname
   and year of birth), scored by ``matching.score``; link, review or new by the thresholds.

Race freedom between workers: strong identifiers are unique per LA in the database (a loser of a race gets an
IntegrityError, rolls back and retries, and then matches the winner exactly); on PostgreSQL the scored path
takes transaction-scoped advisory locks on the record's block keys (sorted, so no deadlock), so two records
that
could be candidates of each other are resolved one after the other. SQLite has a single writer anyway.
"""

from __future__ import annotations

import uuid
import zlib
from dataclasses import dataclass
from datetime import date

from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlmodel import Session, col, or_, select

from services.tracking.matching import (
    Decision,
    Person,
    decide,
    dob_block,
    name_block,
    normalise_name,
    score,
)
from services.tracking.models import TrackingChild, TrackingIdentifier, TrackingResolution, TrackingReviewItem
from shared.events.envelope import Envelope
from shared.events.internal import MatchKind
from shared.logs import get_logger

log = get_logger(__name__)
NAMESPACE = uuid.UUID("0b6a3a55-3b7e-4f0e-9a8e-3f4f2a9e1c11")
STRONG_KINDS = ("upn", "uln", "nhs_number", "la_child_id")


@dataclass(frozen=True)
class Resolution:
    child_id: str
    match: MatchKind
    score: float | None
    created: bool


def child_id_for(event_id: str) -> str:
    """A new child's id is derived from the event that first named it: a retried resolution makes the same
    id."""
    return str(uuid.uuid5(NAMESPACE, f"child:{event_id}"))


def review_id_for(kind: str, *parts: str) -> str:
    return str(uuid.uuid5(NAMESPACE, f"review:{kind}:{':'.join(parts)}"))


def strong_identifiers(child: dict[str, object]) -> list[tuple[str, str]]:
    ids: list[tuple[str, str]] = []
    for field_name, kind in (
        ("upn", "upn"),
        ("former_upn", "upn"),
        ("uln", "uln"),
        ("nhs_number", "nhs_number"),
        ("la_child_id", "la_child_id"),
    ):
        value = child.get(field_name)
        if value:
            ids.append((kind, str(value)))
    return ids


def _person(child: dict[str, object]) -> Person:
    dob = child.get("date_of_birth")
    return Person(
        forename=child.get("forename"),  # type: ignore[arg-type]
        surname=child.get("surname"),  # type: ignore[arg-type]
        date_of_birth=date.fromisoformat(dob) if isinstance(dob, str) else None,
        sex=child.get("sex"),  # type: ignore[arg-type]
        postcode=child.get("postcode"),  # type: ignore[arg-type]
        upns=frozenset(str(v) for k in ("upn", "former_upn") if (v := child.get(k))),
    )


class IdentityResolver:
    def __init__(self, engine: Engine, attempts: int = 5) -> None:
        self.engine = engine
        self.attempts = attempts

    def resolve(self, event: Envelope) -> Resolution:
        """Resolve (and record) the child of an inbound event; safe to call again for the same event."""
        for attempt in range(1, self.attempts + 1):
            try:
                with Session(self.engine, expire_on_commit=False) as session:
                    result = self._resolve(session, event)
                    session.commit()
                    return result
            except (IntegrityError, OperationalError) as exc:
                # Lost a race on a strong identifier (or SQLite was busy): the next attempt sees the winner.
                log.info(
                    "identity_retry", event_id=str(event.event_id), attempt=attempt, error=type(exc).__name__
                )
                if attempt == self.attempts:
                    raise
        raise AssertionError("unreachable")

    def _resolve(self, session: Session, event: Envelope) -> Resolution:
        event_id = str(event.event_id)
        la_code = str(event.source.la_code)
        done = session.get(TrackingResolution, event_id)
        if done is not None:
            return Resolution(done.child_id, MatchKind(done.match), done.score, created=False)
        child = event.payload.child.model_dump(mode="json")
        person = _person(child)
        ids = strong_identifiers(child)
        blocks = self._blocks(la_code, person)
        self._lock(session, [f"{la_code}:{k}:{v}" for k, v in ids] + blocks)

        matched = self._exact(session, la_code, ids)
        match_score: float | None = None
        review: tuple[str, str, float | None] | None = None
        matched_child_id: str | None = None
        if len(matched) > 1:
            review = ("conflicting_identifiers", matched[1][0], None)
        if matched:
            (child_id, matched_child_id), kind = matched[0], MatchKind.EXACT
        else:
            best = self._best_candidate(session, la_code, person, blocks)
            decision = decide(best[1]) if best else Decision.NEW
            if best and decision == Decision.LINK:
                child_id, kind, match_score = best[0], MatchKind.SCORED, best[1]
            else:
                child_id = child_id_for(event_id)
                kind = MatchKind.REVIEW if best and decision == Decision.REVIEW else MatchKind.NEW
                if best and decision == Decision.REVIEW:
                    match_score = best[1]
                    review = ("possible_duplicate", best[0], best[1])
        self._record_child(session, child_id, la_code, event_id, child, person, blocks)
        for k, v in ids:
            self._claim(session, la_code, k, v, child_id, event_id)
        if review is not None:
            rkind, other, rscore = review
            rid = review_id_for(rkind, *sorted((child_id, other)))
            if session.get(TrackingReviewItem, rid) is None:
                session.add(
                    TrackingReviewItem(
                        review_id=rid,
                        la_code=la_code,
                        kind=rkind,
                        child_id=child_id,
                        other_child_id=other,
                        event_id=event_id,
                        score=rscore,
                        detail=f"match score {rscore}" if rscore else None,
                    )
                )
        session.add(
            TrackingResolution(
                event_id=event_id,
                child_id=child_id,
                la_code=la_code,
                match=kind,
                score=match_score,
                matched_child_id=matched_child_id,
            )
        )
        session.flush()  # surface a lost race on an identifier now, inside the retry loop
        return Resolution(child_id, kind, match_score, created=kind in (MatchKind.NEW, MatchKind.REVIEW))

    @staticmethod
    def _blocks(la_code: str, person: Person) -> list[str]:
        if person.date_of_birth is None:
            return []
        blocks = [dob_block(la_code, person.date_of_birth)]
        if person.surname:
            blocks.append(name_block(la_code, person.surname, person.date_of_birth))
        return blocks

    def _lock(self, session: Session, keys: list[str]) -> None:
        if self.engine.dialect.name != "postgresql":
            return
        # One round trip for all the keys: a function scan of unnest() takes them in array order, so the
        # locks are still taken in sorted-key order (no deadlock).
        ordered = [zlib.crc32(key.encode()) - 2**31 for key in sorted(set(keys))]
        if ordered:
            session.execute(
                text("SELECT pg_advisory_xact_lock(k) FROM unnest(CAST(:keys AS bigint[])) AS k"),
                {"keys": ordered},
            )

    @staticmethod
    def surviving(session: Session, child_id: str) -> str:
        """Follow merges to the child that now carries the facts."""
        seen: set[str] = set()
        while child_id not in seen:
            seen.add(child_id)
            row = session.get(TrackingChild, child_id)
            if row is None or row.merged_into is None:
                return child_id
            child_id = row.merged_into
        return child_id

    def _exact(self, session: Session, la_code: str, ids: list[tuple[str, str]]) -> list[tuple[str, str]]:
        """The children the event's strong identifiers name: (the child carrying the facts now, the child
        that claimed the identifier), earliest-known first."""
        if not ids:
            return []
        conds = [(col(TrackingIdentifier.kind) == k) & (col(TrackingIdentifier.value) == v) for k, v in ids]
        rows = session.exec(
            select(TrackingIdentifier).where(TrackingIdentifier.la_code == la_code, or_(*conds))
        ).all()
        found: list[tuple[str, str]] = []
        for row in sorted(rows, key=lambda r: r.id or 0):
            survivor = self.surviving(session, row.child_id)
            if survivor not in (s for s, _ in found):
                found.append((survivor, row.child_id))
        return found

    def _best_candidate(
        self, session: Session, la_code: str, person: Person, blocks: list[str]
    ) -> tuple[str, float] | None:
        if not blocks:
            return None
        rows = session.exec(
            select(TrackingChild).where(
                TrackingChild.la_code == la_code,
                col(TrackingChild.merged_into).is_(None),
                or_(col(TrackingChild.dob_block).in_(blocks), col(TrackingChild.name_block).in_(blocks)),
            )
        ).all()
        # The candidates' UPNs in one query, not one per candidate (a date-of-birth block of a large LA holds
        # hundreds of children).
        upns_of: dict[str, set[str]] = {}
        if rows:
            for child_id, upn in session.exec(
                select(TrackingIdentifier.child_id, TrackingIdentifier.value).where(
                    col(TrackingIdentifier.child_id).in_([row.child_id for row in rows]),
                    TrackingIdentifier.kind == "upn",
                )
            ).all():
                upns_of.setdefault(child_id, set()).add(upn)
        best: tuple[str, float] | None = None
        for row in rows:
            upns = frozenset(upns_of.get(row.child_id, ()))
            candidate = Person(row.forename, row.surname, row.date_of_birth, row.sex, row.postcode, upns)
            value = score(person, candidate)
            if best is None or value > best[1] or (value == best[1] and row.child_id < best[0]):
                best = (row.child_id, value)
        return best

    @staticmethod
    def _record_child(
        session: Session,
        child_id: str,
        la_code: str,
        event_id: str,
        child: dict[str, object],
        person: Person,
        blocks: list[str],
    ) -> None:
        row = session.get(TrackingChild, child_id)
        if row is None:
            row = TrackingChild(child_id=child_id, la_code=la_code, created_by_event_id=event_id)
        # Fill what the child's record lacks; a later source never overwrites what an earlier one said.
        for name, value in (
            ("forename", person.forename),
            ("surname", person.surname),
            ("date_of_birth", person.date_of_birth),
            ("sex", person.sex),
            ("postcode", person.postcode),
        ):
            if value and getattr(row, name) is None:
                setattr(row, name, value)
        if row.surname_norm is None and person.surname:
            row.surname_norm = normalise_name(person.surname)
        if row.dob_block is None and blocks:
            row.dob_block = blocks[0]
            row.name_block = blocks[1] if len(blocks) > 1 else None
        session.add(row)

    @staticmethod
    def _claim(session: Session, la_code: str, kind: str, value: str, child_id: str, event_id: str) -> None:
        existing = session.exec(
            select(TrackingIdentifier).where(
                TrackingIdentifier.la_code == la_code,
                TrackingIdentifier.kind == kind,
                TrackingIdentifier.value == value,
            )
        ).first()
        if existing is None:
            session.add(
                TrackingIdentifier(
                    la_code=la_code, kind=kind, value=value, child_id=child_id, first_event_id=event_id
                )
            )
            session.flush()
