"""A referral through the front door may state why the child is missing education; the event carries it."""

from __future__ import annotations

from pathlib import Path

import httpx
from sqlmodel import Session, select

from devtools.samples import DEMO_LA, child
from services.referral.app import create_app
from services.referral.clients import create_client
from services.referral.models import ClientKind, ReferralOutbox
from shared.events.catalogue import decode_inbound
from shared.settings import Settings


async def test_a_referral_states_its_reason_and_a_wrong_one_is_refused(tmp_path: Path) -> None:
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'referral.db'}", kafka_bootstrap="127.0.0.1:1")
    app = create_app(settings, background=False)
    engine = app.state.referral.engine
    _, key = create_client(
        engine, kind=ClientKind.AGENCY, name="health", la_code=DEMO_LA, rate_per_s=1000.0, burst=1000
    )
    headers = {"Authorization": f"Bearer {key}"}
    body = {"child": child(5), "referrer_type": "health", "concern": "long-term illness, no school place"}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://referral") as http:
        stated = await http.post("/v1/referrals", json={**body, "reason": "health"}, headers=headers)
        unknown = await http.post("/v1/referrals", json={**body, "reason": "bored"}, headers=headers)
    assert stated.status_code == 202, stated.text
    assert unknown.status_code == 422 and unknown.json()["errors"][0]["field"].endswith("reason")
    with Session(engine) as session:
        [row] = session.exec(select(ReferralOutbox)).all()
    event = decode_inbound(row.value)
    assert event.event_type == "referral-received" and event.payload.reason == "health"
