"""A deletion under ground (h) or (i) without the joint enquiries is accepted, and the 202 tells the school
which grounds need them (the LA's caseworker is alerted by escalation's deletion_without_joint_enquiries)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from devtools.samples import DEMO_LA, DEMO_SCHOOL_URN, sample_event_dict
from services.referral.app import create_app
from services.referral.clients import create_client
from services.referral.models import ClientKind
from services.referral.validation import advisories
from shared.events.catalogue import decode_inbound
from shared.settings import Settings


def leaver(ground: str, completed: bool) -> dict[str, Any]:
    event = sample_event_dict("pupil-left-roll")
    event["payload"].update(deletion_ground=ground, enquiries_completed=completed)
    if ground == "o":
        event["payload"]["destination"] = {"known": False}
    return event


@pytest.mark.parametrize(
    ("ground", "completed", "warned"),
    [("h", False, True), ("i", False, True), ("h", True, False), ("i", True, False), ("o", False, False)],
)
def test_only_grounds_h_and_i_without_enquiries_are_warned(
    ground: str, completed: bool, warned: bool
) -> None:
    found = advisories(decode_inbound(leaver(ground, completed)))
    assert bool(found) == warned
    if warned:
        [warning] = found
        assert warning.field == "payload.enquiries_completed" and warning.rule == "joint_enquiries_required"
        assert "(h) and (i)" in warning.message and f"ground ({ground})" in warning.message


async def test_the_202_names_the_grounds_and_a_replay_says_the_same(tmp_path: Path) -> None:
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'referral.db'}", kafka_bootstrap="127.0.0.1:1")
    app = create_app(settings, background=False)
    _, key = create_client(
        app.state.referral.engine, kind=ClientKind.SCHOOL, name="school", la_code=DEMO_LA,
        school_urn=DEMO_SCHOOL_URN, rate_per_s=1000.0, burst=1000,
    )  # fmt: skip
    headers = {"Authorization": f"Bearer {key}"}
    event = leaver("i", False)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://referral") as http:
        first = await http.post("/v1/events", json=event, headers=headers)
        again = await http.post("/v1/events", json=event, headers=headers)
        done = await http.post("/v1/events", json=leaver("i", True), headers=headers)
    assert first.status_code == 202, first.text
    [warning] = first.json()["warnings"]
    assert warning["rule"] == "joint_enquiries_required"
    assert again.json()["warnings"] == first.json()["warnings"]  # idempotent replay: the same answer
    assert done.status_code == 202 and done.json()["warnings"] == []
