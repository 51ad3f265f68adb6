"""A busy LA: 2,000 open alerts on 250 cases, on PostgreSQL, through the web in-process with tracking's,
notify's and referral's real APIs. Every alert is reachable through the inbox's pages (each exactly once,
alerts sharing a timestamp included), every case page lists exactly its own alerts, assign and note work on
the oldest alert, and every count the web shows equals the store's."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func
from sqlmodel import Session, col, select

from services.notify.app import MIGRATIONS as NOTIFY_MIGRATIONS
from services.notify.app import create_app as notify_app
from services.notify.models import NotifyAlert
from services.notify.settings import notify_settings
from services.referral.app import create_app as referral_app
from services.tracking.models import TrackingCase, TrackingChild, TrackingIdentifier, TrackingTimelineEntry
from services.tracking.stream.app import MIGRATIONS
from services.web.app import create_app
from services.web.models import WebAlertNote, WebAlertWork, WebCaseWork
from services.web.settings import WebSettings
from services.web.users import create_user
from shared.auth import Role
from shared.db import make_engine, migrate
from shared.settings import Settings
from tests.unit.test_web_pages import csrf_of
from tests.unit.test_web_reports import tracking_app

pytestmark = pytest.mark.integration

LA, OTHER_LA = "801", "803"
CASES, ALERTS_PER_CASE = 250, 8
PASSWORD = "correct horse battery staple"
BASE = datetime(2025, 11, 3, 9, 0, tzinfo=UTC)  # autumn term 2025
GHOST_SCHOOL, UNALLOCATABLE = "100009", 10


def _alert(case_id: str, child_id: str, n: int, la: str = LA, state: str = "open") -> NotifyAlert:
    return NotifyAlert(
        alert_id=str(uuid.uuid4()),
        escalation_id=str(uuid.uuid4()),
        step_index=n % 4,
        la_code=la,
        child_id=child_id,
        case_id=case_id,
        level="caseworker",
        rule_id="whereabouts_unknown",
        reason_code="whereabouts_unknown",
        case_state="whereabouts_unknown",
        source_event_id=str(uuid.uuid4()),
        source_topic="t",
        source_partition=0,
        source_offset=n,
        # Four alerts of a case share each timestamp: paging must not lose or repeat tied alerts.
        escalated_at=BASE + timedelta(hours=n // 4),
        next_step_due_at=BASE + timedelta(days=5, hours=n),
        state=state,
    )


def test_two_thousand_open_alerts_are_all_reachable_and_counted(
    pg_settings: Settings, tmp_path: Path
) -> None:
    settings = WebSettings(**{**pg_settings.model_dump(), "signing_key": "web-scale-signing-key-0123456789"})
    policy = tmp_path / "allocation.yaml"
    policy.write_text(f'"{LA}":\n  default: cw801\n  schools: {{"{GHOST_SCHOOL}": ghost}}\n')
    # The allocation runs when the Nobody's queue is asked for (the background round is off: counts below
    # are checked against the store at a known moment).
    settings = settings.model_copy(
        update={"web_lag_interval_s": 0, "web_allocation_interval_s": 0, "web_allocation_file": policy}
    )
    migrate(settings.database_url, MIGRATIONS, "tracking")
    migrate(settings.database_url, NOTIFY_MIGRATIONS, "notify")
    engine = make_engine(settings.database_url)
    alerts_of: dict[str, set[str]] = {}
    with Session(engine) as session:
        for i in range(CASES):
            child_id, case_id = str(uuid.uuid4()), str(uuid.uuid4())
            session.add(
                TrackingChild(
                    child_id=child_id,
                    la_code=LA,
                    forename=f"Kid{i}",
                    surname=f"Family{i:03d}",
                    date_of_birth=date(2013, 1, 1) + timedelta(days=i),
                    created_by_event_id=str(uuid.uuid4()),
                )
            )
            session.add(
                TrackingIdentifier(
                    la_code=LA,
                    kind="la_child_id",
                    value=f"K{i:05d}",
                    child_id=child_id,
                    first_event_id=str(uuid.uuid4()),
                )
            )
            session.add(
                TrackingCase(
                    case_id=case_id,
                    child_id=child_id,
                    la_code=LA,
                    state="whereabouts_unknown",
                    cause_occurred_at=BASE + timedelta(minutes=i),
                )
            )
            session.add(
                TrackingTimelineEntry(
                    child_id=child_id,
                    la_code=LA,
                    event_id=str(uuid.uuid4()),
                    event_type="whereabouts-unknown",
                    event_kind="whereabouts-unknown",
                    occurred_at=BASE,
                    # The first cases opened at a school whose rule names an owner with no account.
                    school_urn=GHOST_SCHOOL if i < UNALLOCATABLE else None,
                    verdict="move",
                    to_state="whereabouts_unknown",
                )
            )
            for n in range(ALERTS_PER_CASE):
                alert = _alert(case_id, child_id, i * ALERTS_PER_CASE + n)
                session.add(alert)
                alerts_of.setdefault(case_id, set()).add(alert.alert_id)
            # Not waiting: an acknowledged alert of the same case, and another LA's alert.
            closed = _alert(case_id, child_id, i * ALERTS_PER_CASE + 1, state="acknowledged")
            session.add(closed)
            alerts_of[case_id].add(closed.alert_id)
            session.add(_alert(str(uuid.uuid4()), str(uuid.uuid4()), i * ALERTS_PER_CASE, la=OTHER_LA))
        session.commit()
        open_ids = set(
            session.exec(
                select(NotifyAlert.alert_id).where(NotifyAlert.la_code == LA, NotifyAlert.state == "open")
            ).all()
        )
        stored_open = session.exec(
            select(func.count())
            .select_from(NotifyAlert)
            .where(NotifyAlert.la_code == LA, NotifyAlert.state == "open")
        ).one()
    assert stored_open == len(open_ids) == CASES * ALERTS_PER_CASE >= 2000

    tracking = tracking_app(engine, [])
    tracking.dependency_overrides = {k: (lambda: settings) for k in tracking.dependency_overrides}
    notify = notify_app(notify_settings(settings), run_worker=False)
    referral = referral_app(settings, background=False)
    app = create_app(
        settings,
        transports={
            "tracking": httpx.ASGITransport(tracking),
            "notify": httpx.ASGITransport(notify),
            "referral": httpx.ASGITransport(referral),
        },
    )
    create_user(app.state.engine, "cw801", LA, Role.CASEWORKER, PASSWORD)
    with TestClient(notify), TestClient(referral), TestClient(app, base_url="http://testserver") as client:
        login = client.get("/sign-in")
        client.post(
            "/sign-in", data={"username": "cw801", "password": PASSWORD, "csrf_token": csrf_of(login.text)}
        )

        # Every waiting alert through the inbox's pages, each once, with the store's count.
        seen: list[str] = []
        first = client.get("/inbox", params={"show": "open", "sort": "newest", "page": 1})
        assert first.status_code == 200
        assert re.search(rf'id="waiting-count">{stored_open}<', first.text)
        pages = int(re.search(r"page 1 of (\d+)", first.text).group(1))  # type: ignore[union-attr]
        assert pages == -(-stored_open // 50)
        for n in range(1, pages + 1):
            page = (
                first
                if n == 1
                else client.get("/inbox", params={"show": "open", "sort": "newest", "page": n})
            )
            assert re.search(rf'id="alert-count">{stored_open} alerts, page {n} of {pages}<', page.text)
            seen += re.findall(r'<tr class="govuk-table__row" data-alert-id="([0-9a-f-]{36})"', page.text)
        assert len(seen) == len(set(seen)) == stored_open and set(seen) == open_ids
        assert "Family" in first.text  # the table names the children

        # Every case page lists exactly its own alerts (open and acknowledged), whatever the LA's volume.
        csrf = csrf_of(first.text)
        for case_id, expected in alerts_of.items():
            page = client.post(f"/cases/{case_id}", data={"reason": "scale check", "csrf_token": csrf})
            assert page.status_code == 200
            table = page.text.split('id="case-alerts"', 1)[1].split("</table>", 1)[0]
            assert set(re.findall(r'data-alert-id="([0-9a-f-]{36})"', table)) == expected, case_id
            assert f"Alerts ({len(expected)})" in page.text

        # Assign and note on the oldest alert: far beyond any first page.
        with Session(engine) as session:
            oldest = session.exec(
                select(NotifyAlert)
                .where(NotifyAlert.la_code == LA)
                .order_by(col(NotifyAlert.escalated_at), col(NotifyAlert.alert_id))
                .limit(1)
            ).one()
        assert oldest.alert_id not in first.text
        assigned = client.post(
            f"/alerts/{oldest.alert_id}/assign",
            data={"assignee": "cw801", "csrf_token": csrf},
            follow_redirects=False,
        )
        noted = client.post(
            f"/alerts/{oldest.alert_id}/note",
            data={"text": "Letter sent", "csrf_token": csrf, "form_id": str(uuid.uuid4())},
            follow_redirects=False,
        )
        assert assigned.status_code == noted.status_code == 303
        with Session(engine) as session:
            work = session.get(WebAlertWork, oldest.alert_id)
            notes = session.exec(select(WebAlertNote).where(WebAlertNote.alert_id == oldest.alert_id)).all()
        assert work is not None and work.assigned_to == "cw801" and [n.text for n in notes] == ["Letter sent"]

        # The work queue's count is tracking's, over all pages.
        queue = client.get("/cases", params={"scope": "all"})
        assert re.search(rf'id="case-count">{CASES} cases, page 1 of {-(-CASES // 50)}<', queue.text)
        last = client.get("/cases", params={"scope": "all", "page": -(-CASES // 50)})
        assert (
            len(re.findall(r'<tr class="govuk-table__row" data-case-id=', last.text))
            == CASES - 50 * (CASES // 50)
            or 50
        )

        # Allocation at scale: the Nobody's queue allocates first, then lists only what the policy could not
        # (each with the reason); every count equals the store's.
        nobody = client.get("/cases", params={"scope": "unassigned"})
        with Session(engine) as session:
            owned = session.exec(select(WebCaseWork).where(col(WebCaseWork.owner).is_not(None))).all()
            failed = session.exec(select(WebCaseWork).where(col(WebCaseWork.owner).is_(None))).all()
        assert len(owned) == CASES - UNALLOCATABLE and {w.owner for w in owned} == {"cw801"}
        assert len(failed) == UNALLOCATABLE and all("ghost" in (w.allocation_problem or "") for w in failed)
        assert re.search(rf'id="case-count">{UNALLOCATABLE} cases<', nobody.text)
        assert nobody.text.count("Not allocated: the rule for school 100009 names ghost") == UNALLOCATABLE
        mine = client.get("/cases", params={"scope": "mine"})
        assert re.search(rf'id="case-count">{len(owned)} cases, page 1 of {-(-len(owned) // 50)}<', mine.text)

        # The inbox's "mine": every waiting alert of my cases, each once, with the store's count.
        mine_ids = {w.case_id for w in owned}
        with Session(engine) as session:
            my_open = set(
                session.exec(
                    select(NotifyAlert.alert_id).where(
                        NotifyAlert.la_code == LA,
                        NotifyAlert.state == "open",
                        col(NotifyAlert.case_id).in_(mine_ids),
                    )
                ).all()
            )
        params = {"show": "open", "sort": "due", "whose": "mine"}
        first = client.get("/inbox", params={**params, "page": 1})
        pages = -(-len(my_open) // 50)
        assert re.search(rf'id="alert-count">{len(my_open)} alerts, page 1 of {pages}<', first.text)
        assert re.search(rf'id="waiting-count">{len(my_open)}<', first.text)
        seen = []
        for n in range(1, pages + 1):
            page = client.get("/inbox", params={**params, "page": n})
            seen += re.findall(r'<tr class="govuk-table__row" data-alert-id="([0-9a-f-]{36})"', page.text)
        assert len(seen) == len(set(seen)) == len(my_open) and set(seen) == my_open
