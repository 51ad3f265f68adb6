"""Identity resolution in batches (one transaction per batch) gives what resolving one event at a time gives:
the same children, identifiers, resolutions and review items, whatever the batch size, including events of
one batch that name the same new child, repeat an event, or link by score to a child made earlier in the
batch."""

from __future__ import annotations

import copy
import uuid
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from devtools.samples import child, sample_event_dict
from devtools.synthetic import generate
from services.tracking.identity import IdentityResolver, Resolution
from services.tracking.models import TrackingChild, TrackingIdentifier, TrackingResolution, TrackingReviewItem
from services.tracking.stream.app import MIGRATIONS
from shared.db import make_engine, migrate
from shared.events.catalogue import decode_inbound
from shared.events.envelope import Envelope

NS = uuid.UUID("6c1f7d1e-3a8b-4d8e-9b61-0f1a2b3c4d5e")


def _variant(event: dict[str, Any], tag: str, **child: Any) -> dict[str, Any]:
    out = copy.deepcopy(event)
    out["event_id"] = str(uuid.uuid5(NS, f"{tag}:{event['event_id']}"))
    kid = out["payload"]["child"]
    for name, value in child.items():
        if value is None:
            kid.pop(name, None)
        else:
            kid[name] = value
    return out


def scenario() -> list[Envelope]:
    """Synthetic facts plus variants that take every path of resolution: no UPN but the same person (a
    scored link), a twin (review or new), a new UPN with the old one as former UPN, an LA id claimed by one
    child used with another's UPN (conflicting identifiers), and redeliveries right behind the original."""
    base = generate(las=1, pupils_per_la=300, seed=3).events
    events: list[dict[str, Any]] = []
    for i, event in enumerate(base):
        events.append(event)
        upn = event["payload"]["child"].get("upn")
        if i % 5 == 0:
            events.append(_variant(event, "noupn", upn=None, la_child_id=f"LA{i}"))
        if i % 7 == 0:
            events.append(_variant(event, "twin", upn=None, forename="Twinkle"))
        if i % 11 == 0:
            events.append(copy.deepcopy(event))
        if i % 13 == 0 and upn:
            events.append(_variant(event, "newupn", upn=None, former_upn=upn, la_child_id=f"NEW{i}"))
        if i % 17 == 0 and upn and i >= 5:
            events.append(_variant(event, "conflict", la_child_id="LA5"))
        if i % 19 == 0:
            events.append(_variant(event, "nodob", upn=None, date_of_birth=None, la_child_id=f"N{i}"))
    return [decode_inbound(e) for e in events]


def _engine(tmp_path: Path, name: str) -> Engine:
    url = f"sqlite:///{tmp_path / name}"
    migrate(url, MIGRATIONS, "tracking")
    return make_engine(url)


def _tables(engine: Engine) -> dict[str, list[tuple[Any, ...]]]:
    with Session(engine) as session:
        return {
            "children": sorted(
                (c.child_id, c.la_code, c.forename, c.surname, c.surname_norm, c.date_of_birth, c.sex,
                 c.postcode, c.dob_block, c.name_block, c.merged_into, c.created_by_event_id)
                for c in session.exec(select(TrackingChild)).all()
            ),
            "identifiers": sorted(
                (i.la_code, i.kind, i.value, i.child_id, i.first_event_id)
                for i in session.exec(select(TrackingIdentifier)).all()
            ),
            "resolutions": sorted(
                (r.event_id, r.child_id, r.la_code, r.match, r.score, r.matched_child_id)
                for r in session.exec(select(TrackingResolution)).all()
            ),
            "reviews": sorted(
                (r.review_id, r.kind, r.child_id, r.other_child_id, r.event_id, r.score)
                for r in session.exec(select(TrackingReviewItem)).all()
            ),
        }  # fmt: skip


@pytest.fixture(scope="module")
def events() -> list[Envelope]:
    return scenario()


@pytest.fixture(scope="module")
def one_by_one(
    events: list[Envelope], tmp_path_factory: pytest.TempPathFactory
) -> tuple[list[Resolution], Any]:
    engine = _engine(tmp_path_factory.mktemp("single"), "single.db")
    resolver = IdentityResolver(engine)
    results = [resolver.resolve(e) for e in events]
    return results, _tables(engine)


def test_scenario_takes_every_path(one_by_one: tuple[list[Resolution], Any]) -> None:
    results, tables = one_by_one
    assert {r.match for r in results} >= {"new", "exact", "scored", "review"}
    assert {r[1] for r in tables["reviews"]} == {"possible_duplicate", "conflicting_identifiers"}
    assert any(not r.created for r in results)


@pytest.mark.parametrize("size", [2, 9, 64, 10_000])
def test_batches_resolve_as_one_by_one(
    size: int, events: list[Envelope], one_by_one: tuple[list[Resolution], Any], tmp_path: Path
) -> None:
    engine = _engine(tmp_path, "batch.db")
    resolver = IdentityResolver(engine)
    results: list[Resolution] = []
    for start in range(0, len(events), size):
        results += resolver.resolve_batch(events[start : start + size])
    expected_results, expected_tables = one_by_one
    assert results == expected_results
    assert _tables(engine) == expected_tables


def test_a_batch_resolved_again_changes_nothing(events: list[Envelope], tmp_path: Path) -> None:
    engine = _engine(tmp_path, "again.db")
    resolver = IdentityResolver(engine)
    first = resolver.resolve_batch(events[:80])
    tables = _tables(engine)
    again = resolver.resolve_batch(events[:80])
    assert [(r.child_id, r.match, r.score) for r in again] == [(r.child_id, r.match, r.score) for r in first]
    assert not any(r.created for r in again)
    assert _tables(engine) == tables


def test_a_scored_match_on_a_merged_childs_details_goes_to_its_survivor(tmp_path: Path) -> None:
    engine = _engine(tmp_path, "merged.db")
    resolver = IdentityResolver(engine)
    gone_kid = child(1, "801", forename="Morgan", surname="Fairweather", date_of_birth="2013-06-07")
    kept_kid = child(
        2, "801", forename="Morgan", surname="Fayre", date_of_birth="2013-06-07", postcode="LS1 1AA"
    )
    gone = resolver.resolve(decode_inbound(sample_event_dict("pupil-left-roll", kid=gone_kid, la_code="801")))
    kept = resolver.resolve(decode_inbound(sample_event_dict("pupil-left-roll", kid=kept_kid, la_code="801")))
    with Session(engine) as session:  # a person linked them, as the review decision does
        row = session.get(TrackingChild, gone.child_id)
        assert row is not None
        row.merged_into = kept.child_id
        session.add(row)
        session.commit()
    again = {**gone_kid, "upn": None, "la_child_id": "LA-77"}  # the merged child's details, no identifier
    event = decode_inbound(sample_event_dict("whereabouts-unknown", kid=again, la_code="801"))
    [resolution] = resolver.resolve_batch([event])
    assert (resolution.child_id, resolution.match) == (kept.child_id, "scored")
    with Session(engine) as session:
        recorded = session.get(TrackingResolution, str(event.event_id))
        assert recorded is not None and recorded.matched_child_id == gone.child_id
