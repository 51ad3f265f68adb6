"""Cross-LA matching on the real PostgreSQL: two identity workers resolving facts of one child in LA 803 at
the same time (two schools, two intake partitions) make one link with 801's sought child, not two; and a
population of two LAs resolved in batches with the matcher gives the same resolutions as without it, plus
exactly the links the sought children call for."""

from __future__ import annotations

import threading
import uuid
from datetime import date

from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from devtools.samples import child, sample_event_dict
from services.tracking.crossla import CrossLAMatcher
from services.tracking.identity import IdentityResolver
from services.tracking.models import TrackingCase, TrackingCrossLALink, TrackingResolution, TrackingReviewItem
from services.tracking.stream.app import MIGRATIONS
from shared.db import make_engine, migrate
from shared.events.catalogue import decode_inbound
from shared.events.envelope import Envelope
from shared.settings import Settings


def _engine(pg_settings: Settings) -> Engine:
    migrate(pg_settings.database_url, MIGRATIONS, "tracking")
    return make_engine(pg_settings.database_url)


def _event(event_type: str, la: str, on: date, kid: dict[str, object]) -> Envelope:
    return decode_inbound(sample_event_dict(event_type, on=on, la_code=la, kid=kid, school_urn=None))


def _sought(engine: Engine, resolver: IdentityResolver, kid: dict[str, object]) -> str:
    missing = _event("whereabouts-unknown", "801", date(2025, 11, 3), kid)
    child_id = resolver.resolve(missing).child_id
    with Session(engine) as session:
        session.add(
            TrackingCase(
                case_id=str(uuid.uuid4()),
                child_id=child_id,
                la_code="801",
                state="whereabouts_unknown",
                cause_occurred_at=missing.occurred_at,
            )
        )
        session.commit()
    return child_id


def test_two_workers_at_once_make_one_link(pg_settings: Settings) -> None:
    engine = _engine(pg_settings)
    kid = child(71, "801")
    sought = _sought(engine, IdentityResolver(engine), kid)
    facts = [
        _event("pupil-registered", "803", date(2025, 12, 1), kid),
        _event("absence-threshold-crossed", "803", date(2025, 12, 1), kid),
    ]
    barrier, errors = threading.Barrier(2), []

    def work(event: Envelope) -> None:
        resolver = IdentityResolver(make_engine(pg_settings.database_url), cross_la=CrossLAMatcher())
        barrier.wait()
        try:
            resolver.resolve(event)
        except Exception as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(f,)) for f in facts]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors
    with Session(engine) as session:
        found = {r.child_id for r in session.exec(select(TrackingResolution)).all() if r.la_code == "803"}
        [link] = session.exec(select(TrackingCrossLALink)).all()
        items = session.exec(
            select(TrackingReviewItem).where(TrackingReviewItem.kind == "cross_la_match")
        ).all()
    assert len(found) == 1 and link.sought_child_id == sought and link.found_child_id in found
    assert sorted(i.la_code for i in items) == ["801", "803"]


def test_batches_with_the_matcher_resolve_as_without_it(pg_settings: Settings) -> None:
    engine = _engine(pg_settings)
    plain = IdentityResolver(engine)
    kids = [child(n, "801") for n in range(100, 140)]
    sought = {_sought(engine, plain, kid) for kid in kids[:10]}  # ten sought, thirty not
    # 803 registers all forty (their UPNs were issued by 801), in batches of 16.
    events = [_event("pupil-registered", "803", date(2025, 12, 1), kid) for kid in kids]
    matcher = IdentityResolver(engine, cross_la=CrossLAMatcher())
    resolved = [r for i in range(0, len(events), 16) for r in matcher.resolve_batch(events[i : i + 16])]
    assert all(r.created for r in resolved)  # identity itself is untouched: new children in 803
    with Session(engine) as session:
        links = session.exec(select(TrackingCrossLALink)).all()
    assert {link.sought_child_id for link in links} == sought and len(links) == 10
    assert {link.found_child_id for link in links} == {r.child_id for r in resolved[:10]}
    # Redelivered as one batch: the same resolutions, no new link.
    assert matcher.resolve_batch(events) == [
        r.__class__(r.child_id, r.match, r.score, False) for r in resolved
    ]
    with Session(engine) as session:
        assert len(session.exec(select(TrackingCrossLALink)).all()) == 10
