"""Resolving an alert from the web needs a reason from the fixed list (issue 14): without one the form is
refused (422) and nothing reaches notify; with one notify records it, its AlertAck carries it, and both audits
keep it. Resolving stops the alerts, never closes the case."""

from __future__ import annotations

from sqlmodel import Session, select

from services.notify.models import NotifyAlert, NotifyAudit, NotifyOutbox
from services.tracking.models import TrackingCase
from services.web.models import WebAudit
from shared.db import make_engine
from shared.events import decode_event
from shared.events.internal import AlertAck
from tests.unit.test_web_pages import Web, csrf_of, sign_in, web  # noqa: F401  (the fixture)


def test_resolve_needs_a_reason_and_keeps_the_case_open(web: Web) -> None:  # noqa: F811
    sign_in(web, "cw801")
    inbox = web.client.get("/inbox")
    assert 'name="resolution_reason"' in inbox.text and 'value="enquiries_continuing"' in inbox.text
    csrf = csrf_of(inbox.text)
    refused = web.client.post(f"/alerts/{web.alert_id}/resolve", data={"csrf_token": csrf})
    assert refused.status_code == 422
    bad = web.client.post(
        f"/alerts/{web.alert_id}/resolve", data={"csrf_token": csrf, "resolution_reason": "case closed"}
    )
    assert bad.status_code == 422
    engine = make_engine(web.settings.database_url)
    with Session(engine) as session:
        alert = session.get(NotifyAlert, web.alert_id)
        assert alert is not None and alert.state == "open"
        state_before = {c.case_id: c.state for c in session.exec(select(TrackingCase)).all()}
    done = web.client.post(
        f"/alerts/{web.alert_id}/resolve",
        data={"csrf_token": csrf, "resolution_reason": "enquiries_continuing"},
    )
    assert done.status_code == 200, done.text
    with Session(engine) as session:
        alert = session.get(NotifyAlert, web.alert_id)
        assert alert is not None and alert.ack_action == "resolved"
        [ack] = [e for e in map(decode_event, (r.value for r in session.exec(select(NotifyOutbox)).all()))
                 if isinstance(e, AlertAck)]  # fmt: skip
        assert ack.payload.resolution_reason == "enquiries_continuing"
        audits = session.exec(select(NotifyAudit).where(NotifyAudit.alert_id == web.alert_id)).all()
        assert [a.detail for a in audits if a.action == "resolved_api"] == [
            "resolution_reason=enquiries_continuing"
        ]
        web_audit = session.exec(select(WebAudit).where(WebAudit.action == "alert_resolve")).all()
        assert [a.detail for a in web_audit] == ["resolution_reason=enquiries_continuing"]
        # The case is where it was: only an outcome closes a case.
        assert {c.case_id: c.state for c in session.exec(select(TrackingCase)).all()} == state_before
