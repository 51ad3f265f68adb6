"""A Common Transfer File made by an independent builder (tests/support/ctf.py, written from the DfE CTF
structure), posted to the referral service with its outbox relay running: the pupil-left-roll events that
reach cme.intake.v1 on the real broker carry every pupil (UPNs of former and Welsh LAs too), their sex from
<Sex>, their leaving date from SchoolHistory, the destination code, and are keyed by UPN."""

from __future__ import annotations

from typing import Any

import pytest

from devtools.samples import DEMO_LA, DEMO_SCHOOL_URN, make_upn
from services.referral.clients import create_client
from services.referral.models import ClientKind
from shared.events import decode_inbound
from shared.settings import Settings
from tests.integration.test_referral_intake import intake_records, running
from tests.support.ctf import Ctf, Pupil, School, build_ctf

pytestmark = pytest.mark.integration

HILL = School(lea=DEMO_LA, estab="2000", name="Hill Primary School", entry_date="2019-09-04")


def pupils() -> list[Pupil]:
    left = School(**{**HILL.__dict__, "leaving_date": "2025-10-24"})
    fell = School(
        lea="909", estab="3001", name="Fell School", entry_date="2015-09-02", leaving_date="2019-07-19"
    )
    return [
        Pupil(make_upn(DEMO_LA, 2000, 14, 21), "Example", "Alex", "2014-03-01", sex="F", history=(left,)),
        Pupil(make_upn("909", 3001, 15, 22), "Fell", "Kim", "2013-12-11", sex="M", history=(fell, left)),
        Pupil(make_upn("681", 2010, 16, 23), "Taff", "Rhys", "2014-01-20", sex="M", history=(left,)),
    ]


@pytest.mark.parametrize(("dest", "ground"), [("XXXXXXX", "i"), ("MMMMMMM", "n")])
async def test_an_independent_ctf_reaches_the_intake_topic(
    kafka_settings: Settings, dest: str, ground: str
) -> None:
    body = build_ctf(
        Ctf(
            source_lea=DEMO_LA,
            source_estab="2000",
            source_urn=DEMO_SCHOOL_URN,
            dest_lea=dest[:3],
            dest_estab=dest[3:],
            pupils=pupils(),
        )
    )
    async with running(kafka_settings) as (http, app):
        _, key = create_client(
            app.state.referral.engine,
            kind=ClientKind.SCHOOL,
            name="Hill (independent CTF)",
            la_code=DEMO_LA,
            school_urn=DEMO_SCHOOL_URN,
            school_estab="2000",
        )
        r = await http.post(
            f"/v1/imports/ctf?deletion_ground={ground}",
            content=body,
            headers={"Authorization": f"Bearer {key}", "Content-Type": "application/xml"},
        )
        assert r.status_code == 200 and r.json()["accepted"] == 3, r.text
        records = await intake_records(kafka_settings, expect=3)
    events: dict[str, Any] = {}
    for record in records:
        event = decode_inbound(record.value)
        assert record.key.decode() == event.payload.child.upn  # keyed by the child, as the relay does
        events[event.payload.child.upn] = event.payload
    assert len(records) == 3 and set(events) == {p.upn for p in pupils()}
    assert {upn: str(p.child.sex) for upn, p in events.items()} == {p.upn: str(p.sex) for p in pupils()}
    assert {p.leaving_date.isoformat() for p in events.values()} == {"2025-10-24"}
    assert {p.destination.ctf_destination for p in events.values()} == {dest}
    assert {p.destination.known for p in events.values()} == {False}
    assert {str(p.deletion_ground) for p in events.values()} == {ground}
