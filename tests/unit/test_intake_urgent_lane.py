"""The urgent intake lane: which facts take it, and that the referral service's outbox and the bus client put
them there (the tracking worker's own agent on it: tests/e2e/test_tracking_urgent_lane.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlmodel import Session, select

from devtools.samples import DEMO_LA, DEMO_SCHOOL_URN, sample_event_dict
from services.referral.app import MIGRATIONS
from services.referral.clients import create_client
from services.referral.models import ApiClient, ClientKind, ReferralOutbox
from services.referral.service import Intake, check
from shared.db import make_engine, migrate
from shared.events.catalogue import decode_inbound
from shared.events.envelope import Envelope
from shared.events.inbound import INBOUND_EVENT_CLASSES
from shared.events.internal import ChildFact
from shared.events.urgency import is_urgent
from shared.retention import PERSONAL_DATA_TOPICS
from shared.topics import ALL_TOPICS, CHILD_EVENTS, INTAKE, URGENT_CHILD_EVENTS, URGENT_INTAKE, intake_for

ORDINARY_TYPES = ("pupil-registered", "pupil-left-roll", "absence-threshold-crossed", "child-located")


def event(event_type: str, *, concern: bool = False, **kwargs: Any) -> Envelope:
    data = sample_event_dict(event_type, **kwargs)
    data["payload"]["safeguarding_concern"] = concern
    return decode_inbound(data)


@pytest.mark.parametrize("event_type", ORDINARY_TYPES)
def test_an_ordinary_fact_takes_the_ordinary_lane(event_type: str) -> None:
    fact = event(event_type)
    assert not is_urgent(fact)
    assert intake_for(fact) is INTAKE


@pytest.mark.parametrize("event_type", ORDINARY_TYPES)
def test_any_fact_with_a_safeguarding_concern_takes_the_urgent_lane(event_type: str) -> None:
    fact = event(event_type, concern=True)
    assert is_urgent(fact)
    assert intake_for(fact) is URGENT_INTAKE


def test_whereabouts_unknown_takes_the_urgent_lane_without_a_concern() -> None:
    fact = event("whereabouts-unknown", school_urn=None)
    assert fact.payload.safeguarding_concern is False  # type: ignore[attr-defined]
    assert intake_for(fact) is URGENT_INTAKE


def test_every_inbound_fact_can_carry_the_concern_that_makes_it_urgent() -> None:
    # The lane is decided from the sender's own flag: every inbound payload has it.
    for cls in INBOUND_EVENT_CLASSES:
        assert "safeguarding_concern" in cls.model_fields["payload"].annotation.model_fields  # type: ignore[union-attr]


def test_the_urgent_lane_is_a_topic_like_intake() -> None:
    assert URGENT_INTAKE in ALL_TOPICS  # created with the others (cme topics, the tracking worker)
    assert URGENT_INTAKE in PERSONAL_DATA_TOPICS  # its records are purged at retention like intake's
    assert URGENT_INTAKE.key_of is INTAKE.key_of  # a child's urgent facts stay in order among themselves
    assert URGENT_INTAKE.events == INTAKE.events


@pytest.fixture
def engine_url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'referral.db'}"
    migrate(url, MIGRATIONS, "referral")
    return url


def _clients(intake: Intake) -> tuple[ApiClient, ApiClient]:
    school, _ = create_client(
        intake.engine, kind=ClientKind.SCHOOL, name="s", la_code=DEMO_LA, school_urn=DEMO_SCHOOL_URN
    )
    team, _ = create_client(intake.engine, kind=ClientKind.AGENCY, name="CME team", la_code=DEMO_LA)
    return school, team


def _outbox_topics(intake: Intake) -> dict[str, str]:
    with Session(intake.engine) as session:
        return {row.event_id: row.topic for row in session.exec(select(ReferralOutbox)).all()}


def _accepted(client: ApiClient, data: dict[str, Any]) -> Envelope:
    checked = check(client, data)
    assert isinstance(checked, Envelope), checked
    return checked


def test_the_outbox_row_of_an_urgent_fact_names_the_urgent_topic(engine_url: str) -> None:
    intake = Intake(make_engine(engine_url), "intake", "intake-urgent")
    school, team = _clients(intake)
    roll = _accepted(school, sample_event_dict("pupil-registered", child_serial=1))
    concern = sample_event_dict("pupil-left-roll", child_serial=2)
    concern["payload"]["safeguarding_concern"] = True
    left = _accepted(school, concern)
    missing = _accepted(team, sample_event_dict("whereabouts-unknown", child_serial=3, school_urn=None))
    intake.store(school, [roll, left])
    intake.store(team, [missing])
    assert _outbox_topics(intake) == {
        str(roll.event_id): "intake",
        str(left.event_id): "intake-urgent",
        str(missing.event_id): "intake-urgent",
    }


def test_without_an_urgent_topic_every_fact_takes_the_intake_topic(engine_url: str) -> None:
    intake = Intake(make_engine(engine_url), "intake")
    _, team = _clients(intake)
    missing = _accepted(team, sample_event_dict("whereabouts-unknown", child_serial=3, school_urn=None))
    intake.store(team, [missing])
    assert _outbox_topics(intake) == {str(missing.event_id): "intake"}


def test_the_urgent_lane_through_the_case_fold_is_keyed_as_child_events() -> None:
    # Same key as child-events: a child's partition number is the same on both, so the fold ahead runs on
    # the worker that holds the child's partition of the table.
    assert URGENT_CHILD_EVENTS.key == CHILD_EVENTS.key and URGENT_CHILD_EVENTS.key_of is CHILD_EVENTS.key_of
    assert URGENT_CHILD_EVENTS in ALL_TOPICS and URGENT_CHILD_EVENTS in PERSONAL_DATA_TOPICS
    assert URGENT_CHILD_EVENTS.events == (ChildFact,)
    assert 0 < URGENT_CHILD_EVENTS.retention_ms <= 7 * 24 * 3600 * 1000  # a copy: the record is child-events
