"""Cross-LA matching after projection, for a whole batch at once (``match_sought`` / ``match_found`` in
services/tracking/crossla.py: a few queries per batch, not a few per child) gives the links and review items
that one call per child gives, on SQLite and on the real PostgreSQL.

The world: five children known to LA 801 and (four of them) to LA 803 by the same UPN. 801's cases are
whereabouts unknown; 803's are in education, one child with two facts there (the later one is the found
fact), one pair raised before (not again), one child with no UPN in 803 (nothing to match)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from devtools.samples import child, sample_event_dict
from services.tracking.crossla import REVIEW_KIND, CrossLAMatcher, link_id_for
from services.tracking.identity import IdentityResolver
from services.tracking.models import (
    TrackingCase,
    TrackingCrossLALink,
    TrackingReviewItem,
    TrackingTimelineEntry,
)
from services.tracking.stream.app import MIGRATIONS
from shared.db import make_engine, migrate
from shared.events.catalogue import decode_inbound
from shared.events.internal import CaseState

MISSING_ON = date(2025, 11, 3)
REGISTERED_ON = date(2025, 11, 24)
LATER_ON = date(2025, 12, 1)
KIDS = [child(i, "801") for i in range(1, 5)] + [
    child(5, "801", forename="Sam", surname="Other", date_of_birth="2013-07-09")
]


@pytest.fixture(params=["sqlite", "postgresql"])
def engines(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Engine, Engine]]:
    """Two empty case stores of the same kind: one for the batch, one for one call per child."""
    urls = []
    for name in ("batch", "one_by_one"):
        if request.param == "sqlite":
            urls.append(f"sqlite:///{tmp_path / f'{name}.db'}")
        else:
            urls.append(request.getfixturevalue("postgres_url") if name == "batch" else _another_pg(request))
    engines = []
    for url in urls:
        migrate(url, MIGRATIONS, "tracking")
        engines.append(make_engine(url))
    yield engines[0], engines[1]
    for engine in engines:
        engine.dispose()


def _another_pg(request: pytest.FixtureRequest) -> str:
    _, cluster = request.getfixturevalue("postgres_server")
    if cluster is None:
        pytest.skip("a second database needs the test cluster")
    return str(cluster.create_database(f"t_{uuid.uuid4().hex[:12]}"))


def _case(session: Session, child_id: str, la_code: str, state: CaseState, on: date) -> None:
    session.add(
        TrackingCase(
            case_id=str(uuid.uuid4()),
            child_id=child_id,
            la_code=la_code,
            state=str(state),
            cause_occurred_at=datetime.combine(on, time(9), UTC),
        )
    )


def _fact(session: Session, child_id: str, la_code: str, event_type: str, on: date) -> None:
    session.add(
        TrackingTimelineEntry(
            child_id=child_id,
            la_code=la_code,
            event_id=str(uuid.uuid4()),
            event_type=event_type,
            occurred_at=datetime.combine(on, time(9), UTC),
            verdict="move",
        )
    )


def _world(engine: Engine, matcher: CrossLAMatcher) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """Children resolved in both LAs (before any case is stored); returns (801's pairs, 803's pairs)."""
    resolver = IdentityResolver(engine, cross_la=matcher)
    sought, found = [], []
    for i, kid in enumerate(KIDS):
        missing = sample_event_dict("whereabouts-unknown", on=MISSING_ON, la_code="801", kid=kid)
        sought.append((resolver.resolve(decode_inbound(missing)).child_id, "801"))
        there = dict(kid, upn=None) if i == 4 else kid  # the fifth: 803 does not know the UPN
        registered = sample_event_dict("pupil-registered", on=REGISTERED_ON, la_code="803", kid=there)
        found.append((resolver.resolve(decode_inbound(registered)).child_id, "803"))
    return sought, found


def _store_sought(engine: Engine, sought: list[tuple[str, str]]) -> None:
    with Session(engine) as session:
        for child_id, la_code in sought:
            _case(session, child_id, la_code, CaseState.WHEREABOUTS_UNKNOWN, MISSING_ON)
        session.commit()


def _store_found(engine: Engine, found: list[tuple[str, str]], raised_before: str) -> None:
    with Session(engine) as session:
        for i, (child_id, la_code) in enumerate(found):
            _case(session, child_id, la_code, CaseState.IN_EDUCATION, REGISTERED_ON)
            _fact(session, child_id, la_code, "pupil-registered", REGISTERED_ON)
            if i == 1:
                _fact(session, child_id, la_code, "absence-threshold-crossed", LATER_ON)
        session.commit()
        session.add(_raised(raised_before))
        session.commit()


def _raised(link_id: str) -> TrackingCrossLALink:
    """A link a person rejected earlier: the pair is not raised again."""
    return TrackingCrossLALink(
        link_id=link_id,
        sought_la_code="801",
        sought_child_id="x",
        sought_state="whereabouts_unknown",
        found_la_code="803",
        found_child_id="y",
        event_id="e",
        fact_type="pupil-registered",
        fact_occurred_at=datetime.combine(REGISTERED_ON, time(9), UTC),
        match="exact",
        status="rejected",
        sought_review_id=str(uuid.uuid4()),
        found_review_id=str(uuid.uuid4()),
    )


def _outcome(engine: Engine, names: dict[str, str]) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """Links and review items, each child by its name in the world (ids are made afresh in each store)."""
    with Session(engine) as session:
        links = sorted(
            (
                names[link.sought_child_id],
                names[link.found_child_id],
                link.fact_type,
                link.fact_occurred_at.date(),
                link.match,
            )
            for link in session.exec(select(TrackingCrossLALink)).all()
            if link.status != "rejected"
        )
        items = sorted(
            (item.la_code, names[str(item.child_id)], item.detail)
            for item in session.exec(select(TrackingReviewItem)).all()
            if item.kind == REVIEW_KIND
        )
    return links, items


@pytest.mark.parametrize("direction", ["case_became_sought", "case_projected"])
def test_a_batch_links_what_one_call_per_child_links(engines: tuple[Engine, Engine], direction: str) -> None:
    outcomes = []
    match: Callable[[Engine, Sequence[tuple[str, str]]], int]
    for engine, batched in zip(engines, (True, False), strict=True):
        matcher = CrossLAMatcher()
        sought, found = _world(engine, matcher)
        raised_before = link_id_for(sought[2][0], found[2][0])
        if direction == "case_became_sought":  # 803's cases first; 801's become sought afterwards
            _store_found(engine, found, raised_before)
            _store_sought(engine, sought)
            calls, match = [*sought, sought[0]], matcher.match_sought  # a child twice in one batch
        else:  # 801's cases first; 803's are projected afterwards
            _store_sought(engine, sought)
            _store_found(engine, found, raised_before)
            calls, match = [*found, found[0]], matcher.match_found
        made = match(engine, calls) if batched else sum(match(engine, [pair]) for pair in calls)
        assert made == 3, (
            "the first, second and fourth child: the third was raised before, the fifth has no UPN"
        )
        assert match(engine, calls) == 0  # again: nothing more
        names = {c: f"{la}:{i}" for pairs in (sought, found) for i, (c, la) in enumerate(pairs)}
        outcomes.append(_outcome(engine, names))
        links, items = outcomes[-1]
        assert [(s, f) for s, f, *_ in links] == [(f"801:{i}", f"803:{i}") for i in (0, 1, 3)]
        second = next(link for link in links if link[1] == "803:1")
        assert (second[2], second[3]) == ("absence-threshold-crossed", LATER_ON)  # the latest fact there
        assert len(items) == 6
    assert outcomes[0] == outcomes[1]


def test_both_checks_in_one_transaction_link_what_they_link_apart_and_a_pair_once(
    engines: tuple[Engine, Engine],
) -> None:
    """The case agent's call after a projection (``after_projection``): the first two children's 801
    cases have just become sought, and the 803 cases of the first and of the last three were just
    projected. The first child's pair is named by both checks: linked once."""
    outcomes = []
    for engine, together in zip(engines, (True, False), strict=True):
        matcher = CrossLAMatcher()
        sought, found = _world(engine, matcher)
        _store_found(engine, found, link_id_for(sought[2][0], found[2][0]))
        _store_sought(engine, sought)
        became_sought, now_here = sought[:2], [found[0], *found[2:]]
        if together:
            with Session(engine) as session:
                made = matcher.after_projection(session, became_sought, now_here)
                session.commit()
        else:
            made = matcher.match_sought(engine, became_sought) + matcher.match_found(engine, now_here)
        assert made == 3
        names = {c: f"{la}:{i}" for pairs in (sought, found) for i, (c, la) in enumerate(pairs)}
        outcomes.append(_outcome(engine, names))
        assert [(s, f) for s, f, *_ in outcomes[-1][0]] == [(f"801:{i}", f"803:{i}") for i in (0, 1, 3)]
    assert outcomes[0] == outcomes[1]
