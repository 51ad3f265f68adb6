"""Identity resolution: which child (in the sender's LA) an inbound fact is about.

1. A fact seen before resolves as it did (tracking_resolutions, keyed by event_id): redelivery is harmless.
2. Exact: any strong identifier (UPN or former UPN, ULN, NHS number, LA child id) already known -> that child.
3. Scored: candidates from two blocks (date of birth with day/month transposition folded in; phonetic surname
   and year of birth), scored by ``matching.score``; link, review or new by the thresholds. A link to a merged
   child's details goes to its survivor, recorded as matched through the merged child (like an identifier).
4. A batch is resolved in one transaction, in order, each event seeing what the earlier ones wrote; what the
   batch needs is read in a few queries after its advisory locks are held (``resolve_batch``).

Race freedom between workers: strong identifiers are unique per LA in the database (a loser of a race gets an
IntegrityError, rolls back and retries, and then matches the winner exactly); on PostgreSQL the scored path
takes transaction-scoped advisory locks on the record's block keys (sorted, so no deadlock), so two records
that
could be candidates of each other are resolved one after the other. SQLite has a single writer anyway.
"""

from __future__ import annotations

import uuid
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import date
from typing import Any

from sqlalchemy import bindparam, text, update
from sqlalchemy import select as sa_select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlmodel import Session, col, or_, select

from services.tracking.bulk import insert_rows
from services.tracking.crossla import CrossLAMatcher, Named
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
from shared.events.envelope import Envelope, utcnow
from shared.events.internal import MatchKind
from shared.logs import get_logger
from shared.sql import any_of

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


@dataclass(frozen=True)
class _Pending:
    """An inbound event prepared for resolution: what it names and where it would block."""

    event_id: str
    la_code: str
    child: dict[str, object]
    person: Person
    ids: list[tuple[str, str]]
    blocks: list[str]

    @classmethod
    def of(cls, event: Envelope) -> _Pending:
        la_code = str(event.source.la_code)
        child = event.payload.child.model_dump(mode="json")
        person = _person(child)
        return cls(
            str(event.event_id),
            la_code,
            child,
            person,
            strong_identifiers(child),
            IdentityResolver._blocks(la_code, person),
        )

    def lock_keys(self) -> list[str]:
        return [f"{self.la_code}:{k}:{v}" for k, v in self.ids] + self.blocks


# The columns of tracking_children a batch reads, and those a later source may fill in (never overwrite).
_CHILD_COLUMNS = (
    "child_id",
    "la_code",
    "forename",
    "surname",
    "surname_norm",
    "date_of_birth",
    "sex",
    "postcode",
    "dob_block",
    "name_block",
    "merged_into",
    "created_by_event_id",
)
_FILLED_COLUMNS = (
    "forename",
    "surname",
    "surname_norm",
    "date_of_birth",
    "sex",
    "postcode",
    "dob_block",
    "name_block",
)


@dataclass
class _Child:
    """A row of tracking_children as the batch sees it (plain data: no ORM object to build per row)."""

    child_id: str
    la_code: str
    forename: str | None = None
    surname: str | None = None
    surname_norm: str | None = None
    date_of_birth: date | None = None
    sex: str | None = None
    postcode: str | None = None
    dob_block: str | None = None
    name_block: str | None = None
    merged_into: str | None = None
    created_by_event_id: str = ""
    new: bool = False  # to insert at the end of the batch
    filled: bool = False  # an existing row the batch filled in: to update at the end


def _select_children(session: Session, where: Any) -> list[_Child]:
    columns = [getattr(TrackingChild.__table__.c, name) for name in _CHILD_COLUMNS]  # type: ignore[attr-defined]
    return [_Child(*row) for row in session.execute(sa_select(*columns).where(where)).all()]


def _write_children(session: Session, children: Sequence[_Child]) -> None:
    """Insert the batch's new children and fill in the existing ones it completed (only the columns a
    resolution fills: a concurrent merge decision's merged_into is left alone)."""
    now = utcnow()
    insert_rows(
        session,
        TrackingChild,
        [
            {**{name: getattr(c, name) for name in _CHILD_COLUMNS}, "created_at": now}
            for c in children
            if c.new
        ],
    )
    filled = [c for c in children if c.filled and not c.new]
    if filled:
        table = TrackingChild.__table__  # type: ignore[attr-defined]
        session.execute(
            update(table)
            .where(table.c.child_id == bindparam("b_child_id"))
            .values({name: bindparam(f"b_{name}") for name in _FILLED_COLUMNS}),
            [{f"b_{name}": getattr(c, name) for name in ("child_id", *_FILLED_COLUMNS)} for c in filled],
        )


@dataclass
class _BatchState:
    """What one batch's transaction has read of the tables, plus what it wrote so far: each event is resolved
    from here without a query of its own, and sees what the events before it in the batch wrote: the rows are
    plain data kept here, and what the batch changed is written in bulk at its end, in the same transaction.
    Read after the batch's advisory locks are held, so no other resolver can change these rows until the
    commit."""

    resolved: dict[str, Resolution] = field(default_factory=dict)
    # Strong identifiers the batch names, by (la_code, kind, value) -> the child that claimed it; rank orders
    # them earliest-known first.
    identifiers: dict[tuple[str, str, str], str] = field(default_factory=dict)
    rank: dict[tuple[str, str, str], tuple[int, int]] = field(default_factory=dict)
    # Children read or made (None: known not to exist); block -> children in it (candidates for scoring,
    # merged ones too: a match on a merged child's details goes to its survivor).
    children: dict[str, _Child | None] = field(default_factory=dict)
    block_members: dict[str, set[str]] = field(default_factory=dict)
    # UPNs of children whose UPNs were read (scoring needs them), kept up to date with the batch's claims.
    upns: dict[str, set[str]] = field(default_factory=dict)
    upns_loaded: set[str] = field(default_factory=set)
    reviews: set[str] = field(default_factory=set)
    # Rows the batch adds to the append-only tables (tracking_identifiers, tracking_resolutions).
    new_identifiers: list[dict[str, Any]] = field(default_factory=list)
    new_resolutions: list[dict[str, Any]] = field(default_factory=list)

    def index_blocks(self, row: _Child, blocks: set[str]) -> None:
        for block in (row.dob_block, row.name_block):
            if block is not None and block in blocks:
                self.block_members.setdefault(block, set()).add(row.child_id)


class IdentityResolver:
    def __init__(self, engine: Engine, attempts: int = 5, cross_la: CrossLAMatcher | None = None) -> None:
        self.engine = engine
        self.attempts = attempts
        # Cross-LA matching (``crossla``), in the batch's transaction after its own LA's resolution; None:
        # identity stays within each LA.
        self.cross_la = cross_la

    def resolve(self, event: Envelope) -> Resolution:
        """Resolve (and record) the child of an inbound event; safe to call again for the same event."""
        return self.resolve_batch([event])[0]

    def resolve_batch(self, events: Sequence[Envelope]) -> list[Resolution]:
        """Resolve a batch in order, in one transaction (one commit): the same resolutions as resolving the
        events one after the other, since each event sees what the earlier ones wrote. Safe to call again."""
        for attempt in range(1, self.attempts + 1):
            try:
                with Session(self.engine, expire_on_commit=False) as session:
                    results = self._resolve_batch(session, events)
                    session.commit()
                    return results
            except (IntegrityError, OperationalError) as exc:
                # Lost a race on a strong identifier (or SQLite was busy, or a deadlock with a resolver that
                # does not lock): the next attempt, in a new transaction, sees the winner.
                log.info(
                    "identity_retry",
                    event_id=str(events[0].event_id) if events else None,
                    batch=len(events),
                    attempt=attempt,
                    error=type(exc).__name__,
                )
                if attempt == self.attempts:
                    raise
        raise AssertionError("unreachable")

    def _resolve_batch(self, session: Session, events: Sequence[Envelope]) -> list[Resolution]:
        state = _BatchState()
        event_ids = {str(e.event_id) for e in events}
        for event_id, child_id, match, match_score in session.exec(
            select(
                TrackingResolution.event_id,
                TrackingResolution.child_id,
                TrackingResolution.match,
                TrackingResolution.score,
            ).where(any_of(session, col(TrackingResolution.event_id), event_ids))
        ).all():
            state.resolved[event_id] = Resolution(child_id, MatchKind(match), match_score, created=False)
        pending = [_Pending.of(e) for e in events if str(e.event_id) not in state.resolved]
        if pending:
            self._lock(session, [key for p in pending for key in p.lock_keys()])
            self._prefetch(session, state, pending)
        by_id = {p.event_id: p for p in pending}
        results: list[Resolution] = []
        for event in events:
            event_id = str(event.event_id)
            done = state.resolved.get(event_id)
            if done is not None:  # seen before, or earlier in this batch
                results.append(replace(done, created=False))
            else:
                results.append(self._resolve(session, state, by_id[event_id]))
        session.flush()  # review items
        _write_children(session, [c for c in state.children.values() if c is not None])
        # A lost race on an identifier surfaces here, inside the retry loop.
        insert_rows(session, TrackingIdentifier, state.new_identifiers)
        insert_rows(session, TrackingResolution, state.new_resolutions)
        if self.cross_la is not None and by_id:
            self.cross_la.match(
                session,
                [
                    Named(
                        event_id=p.event_id,
                        event_type=event.event_type,
                        occurred_at=event.occurred_at,
                        la_code=p.la_code,
                        child_id=result.child_id,
                        created=result.created,
                        ids=p.ids,
                        person=p.person,
                    )
                    for event, result in zip(events, results, strict=True)
                    if (p := by_id.get(str(event.event_id))) is not None
                ],
            )
        return results

    def _prefetch(self, session: Session, state: _BatchState, pending: list[_Pending]) -> None:
        """Three queries for the whole batch: its strong identifiers; the children they name, the children a
        new child of the batch would be, and the children in the batch's blocks; those candidates' UPNs."""
        las = {p.la_code for p in pending}
        wanted = {(p.la_code, k, v) for p in pending for k, v in p.ids}
        if wanted:
            rows = session.execute(
                sa_select(
                    col(TrackingIdentifier.la_code),
                    col(TrackingIdentifier.kind),
                    col(TrackingIdentifier.value),
                    col(TrackingIdentifier.child_id),
                    col(TrackingIdentifier.id),
                ).where(
                    any_of(session, col(TrackingIdentifier.la_code), las),
                    any_of(session, col(TrackingIdentifier.kind), {k for _, k, _ in wanted}),
                    any_of(session, col(TrackingIdentifier.value), {v for _, _, v in wanted}),
                )
            ).all()
            for la_code, kind, value, child_id, row_id in rows:
                key = (la_code, kind, value)
                if key in wanted:
                    state.identifiers[key] = child_id
                    state.rank[key] = (0, row_id or 0)
        blocks = {b for p in pending for b in p.blocks}
        child_ids = set(state.identifiers.values())
        child_ids |= {child_id_for(p.event_id) for p in pending}
        named = any_of(session, col(TrackingChild.child_id), child_ids)
        in_blocks = any_of(session, col(TrackingChild.la_code), las) & or_(
            any_of(session, col(TrackingChild.dob_block), blocks),
            any_of(session, col(TrackingChild.name_block), blocks),
        )
        children = _select_children(session, or_(named, in_blocks) if blocks else named)
        for child_id in child_ids:
            state.children[child_id] = None
        for child in children:
            state.children[child.child_id] = child
            state.index_blocks(child, blocks)
        candidates = {c for members in state.block_members.values() for c in members}
        self._load_upns(session, state, candidates)

    @staticmethod
    def _load_upns(session: Session, state: _BatchState, child_ids: set[str]) -> None:
        missing = child_ids - state.upns_loaded
        if not missing:
            return
        for child_id, upn in session.exec(
            select(TrackingIdentifier.child_id, TrackingIdentifier.value).where(
                any_of(session, col(TrackingIdentifier.child_id), missing), TrackingIdentifier.kind == "upn"
            )
        ).all():
            state.upns.setdefault(child_id, set()).add(upn)
        state.upns_loaded |= missing

    @staticmethod
    def _child(session: Session, state: _BatchState, child_id: str) -> _Child | None:
        if child_id not in state.children:  # a merge chain leading outside what the batch read
            found = _select_children(session, col(TrackingChild.child_id) == child_id)
            state.children[child_id] = found[0] if found else None
        return state.children[child_id]

    def _resolve(self, session: Session, state: _BatchState, p: _Pending) -> Resolution:
        event_id, la_code = p.event_id, p.la_code
        matched = self._exact(session, state, la_code, p.ids)
        match_score: float | None = None
        review: tuple[str, str, float | None] | None = None
        matched_child_id: str | None = None
        if len(matched) > 1:
            review = ("conflicting_identifiers", matched[1][0], None)
        if matched:
            (child_id, matched_child_id), kind = matched[0], MatchKind.EXACT
        else:
            best = self._best_candidate(session, state, la_code, p.person, p.blocks)
            decision = decide(best[1]) if best else Decision.NEW
            if best and decision == Decision.LINK:
                # A merged child's details still match: the fact goes to its survivor, recorded as matched
                # through the merged child (so undoing the merge moves it back), as for an identifier.
                matched_child_id = best[0]
                child_id, kind, match_score = (
                    self._surviving(session, state, best[0]),
                    MatchKind.SCORED,
                    best[1],
                )
            else:
                child_id = child_id_for(event_id)
                kind = MatchKind.REVIEW if best and decision == Decision.REVIEW else MatchKind.NEW
                if best and decision == Decision.REVIEW:
                    match_score = best[1]
                    review = ("possible_duplicate", self._surviving(session, state, best[0]), best[1])
        self._record_child(session, state, child_id, la_code, event_id, p.person, p.blocks)
        for k, v in p.ids:
            self._claim(session, state, la_code, k, v, child_id, event_id)
        if review is not None:
            rkind, other, rscore = review
            rid = review_id_for(rkind, *sorted((child_id, other)))
            if rid not in state.reviews and session.get(TrackingReviewItem, rid) is None:
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
            state.reviews.add(rid)
        state.new_resolutions.append(
            {
                "event_id": event_id,
                "child_id": child_id,
                "la_code": la_code,
                "match": str(kind),
                "score": match_score,
                "matched_child_id": matched_child_id,
                "resolved_at": utcnow(),
            }
        )
        resolution = Resolution(
            child_id, kind, match_score, created=kind in (MatchKind.NEW, MatchKind.REVIEW)
        )
        state.resolved[event_id] = resolution
        return resolution

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

    def _surviving(self, session: Session, state: _BatchState, child_id: str) -> str:
        """``surviving`` over what the batch read."""
        seen: set[str] = set()
        while child_id not in seen:
            seen.add(child_id)
            row = self._child(session, state, child_id)
            if row is None or row.merged_into is None:
                return child_id
            child_id = row.merged_into
        return child_id

    def _exact(
        self, session: Session, state: _BatchState, la_code: str, ids: list[tuple[str, str]]
    ) -> list[tuple[str, str]]:
        """The children the event's strong identifiers name: (the child carrying the facts now, the child
        that claimed the identifier), earliest-known first."""
        keys = {(la_code, k, v) for k, v in ids if (la_code, k, v) in state.identifiers}
        found: list[tuple[str, str]] = []
        for key in sorted(keys, key=state.rank.__getitem__):
            claimed_by = state.identifiers[key]
            survivor = self._surviving(session, state, claimed_by)
            if survivor not in (s for s, _ in found):
                found.append((survivor, claimed_by))
        return found

    def _best_candidate(
        self, session: Session, state: _BatchState, la_code: str, person: Person, blocks: list[str]
    ) -> tuple[str, float] | None:
        if not blocks:
            return None
        rows: list[_Child] = []
        for child_id in sorted({c for b in blocks for c in state.block_members.get(b, ())}):
            row = state.children.get(child_id)
            if (
                row is not None
                and row.la_code == la_code
                and (row.dob_block in blocks or row.name_block in blocks)
            ):
                rows.append(row)
        # Candidates that came into a block during the batch may not have had their UPNs read yet.
        self._load_upns(session, state, {row.child_id for row in rows})
        best: tuple[str, float] | None = None
        for row in rows:
            upns = frozenset(state.upns.get(row.child_id, ()))
            candidate = Person(row.forename, row.surname, row.date_of_birth, row.sex, row.postcode, upns)
            value = score(person, candidate)
            if best is None or value > best[1] or (value == best[1] and row.child_id < best[0]):
                best = (row.child_id, value)
        return best

    def _record_child(
        self,
        session: Session,
        state: _BatchState,
        child_id: str,
        la_code: str,
        event_id: str,
        person: Person,
        blocks: list[str],
    ) -> None:
        row = self._child(session, state, child_id)
        if row is None:
            row = _Child(child_id=child_id, la_code=la_code, created_by_event_id=event_id, new=True)
            state.children[child_id] = row
            state.upns_loaded.add(child_id)  # a new child has no UPNs but those the batch claims
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
                row.filled = True
        if row.surname_norm is None and person.surname:
            row.surname_norm = normalise_name(person.surname)
            row.filled = True
        if row.dob_block is None and blocks:
            row.filled = True
            row.dob_block = blocks[0]
            row.name_block = blocks[1] if len(blocks) > 1 else None
            for block in (row.dob_block, row.name_block):  # a candidate for the rest of the batch now
                if block is not None:
                    state.block_members.setdefault(block, set()).add(child_id)

    @staticmethod
    def _claim(
        session: Session,
        state: _BatchState,
        la_code: str,
        kind: str,
        value: str,
        child_id: str,
        event_id: str,
    ) -> None:
        key = (la_code, kind, value)
        if key in state.identifiers:  # the batch read every identifier it names: this one is taken
            return
        state.new_identifiers.append(
            {
                "la_code": la_code,
                "kind": kind,
                "value": value,
                "child_id": child_id,
                "first_event_id": event_id,
            }
        )
        state.identifiers[key] = child_id
        state.rank[key] = (1, len(state.rank))
        if kind == "upn":
            state.upns.setdefault(child_id, set()).add(value)
