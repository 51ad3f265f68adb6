"""The web's pages in-process, with tracking's and notify's real APIs (ASGI, SQLite): sign-in, CSRF, LA and
role scoping, the alert inbox's acknowledgement through notify, audited downloads, sign-out."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session, col, select

from services.notify.app import create_app as notify_app
from services.notify.models import NotifyAlert, NotifyOutbox
from services.notify.settings import notify_settings
from services.referral.app import create_app as referral_app
from services.referral.models import ReferralOutbox
from services.tracking.models import TrackingCase, TrackingCrossLALink, TrackingReviewItem
from services.tracking.stream.app import MIGRATIONS
from services.web.app import create_app
from services.web.models import WebAudit
from services.web.settings import WebSettings
from services.web.users import create_user
from shared.auth import Role, issue_token
from shared.db import make_engine, migrate
from shared.events import decode_event
from shared.events.internal import ChildFact, ChildSplit
from tests.unit.test_web_reports import LA, OTHER_LA, CaseStore, build_scenario, tracking_app

PASSWORD = "correct horse battery staple"


@dataclass
class Web:
    client: TestClient
    store: CaseStore
    settings: WebSettings
    alert_id: str
    published: list[object]


@pytest.fixture
def web(tmp_path: Path) -> Iterator[Web]:
    url = f"sqlite:///{tmp_path / 'cme.db'}"
    settings = WebSettings(
        database_url=url, data_dir=tmp_path, signing_key="web-page-tests-signing-key-0123456789",  # type: ignore[arg-type]
        web_lag_interval_s=0, web_allocation_interval_s=0, kafka_bootstrap="127.0.0.1:1",
    )  # fmt: skip
    migrate(url, MIGRATIONS, "tracking")
    engine = make_engine(url)
    store = build_scenario(engine)
    published: list[object] = []
    tracking = tracking_app(engine, published)
    tracking.dependency_overrides = {k: (lambda: settings) for k in tracking.dependency_overrides}
    notify = notify_app(notify_settings(settings), run_worker=False)
    case_id = store.records[store.child_ids[1]].case_id
    alert_id = str(uuid.uuid4())
    with Session(engine) as session:
        session.add(
            NotifyAlert(
                alert_id=alert_id, escalation_id=str(uuid.uuid4()), step_index=0, la_code=LA,
                child_id=store.child_ids[1], case_id=case_id, level="caseworker",
                rule_id="whereabouts_unknown", reason_code="whereabouts_unknown",
                case_state="whereabouts_unknown", source_event_id=str(uuid.uuid4()),
                source_topic="t", source_partition=0, source_offset=0, escalated_at=datetime.now(UTC),
            )
        )  # fmt: skip
        session.commit()
    referral = referral_app(settings, background=False)  # intake without its relay: facts stay in the outbox
    app = create_app(
        settings,
        transports={
            "tracking": httpx.ASGITransport(tracking),
            "notify": httpx.ASGITransport(notify),
            "referral": httpx.ASGITransport(referral),
        },
    )
    for name, la, role, team in (
        ("cw801", LA, Role.CASEWORKER, "north"), ("cw801b", LA, Role.CASEWORKER, "north"),
        ("cw803", OTHER_LA, Role.CASEWORKER, None), ("ops1", LA, Role.OPS, None),
        ("mgr801", LA, Role.MANAGER, None),
    ):  # fmt: skip
        create_user(app.state.engine, name, la, role, PASSWORD, team)
    # The services' lifespans run (their start steps), as they would under uvicorn.
    with TestClient(notify), TestClient(referral), TestClient(app, base_url="http://testserver") as client:
        yield Web(client, store, settings, alert_id, published)


def csrf_of(page: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert found, page
    return found.group(1)


def sign_in(web: Web, username: str, password: str = PASSWORD) -> httpx.Response:
    web.client.cookies.clear()
    page = web.client.get("/sign-in")
    return web.client.post(
        "/sign-in",
        data={"username": username, "password": password, "csrf_token": csrf_of(page.text)},
        follow_redirects=False,
    )


def test_sign_in_sets_a_strict_httponly_cookie_and_wrong_passwords_fail(web: Web) -> None:
    bad = sign_in(web, "cw801", "wrong password!!")
    assert bad.status_code == 303 and bad.headers["location"] == "/sign-in?error=1"
    assert "cme_session" not in bad.cookies
    good = sign_in(web, "cw801")
    assert good.status_code == 303 and good.headers["location"] == "/inbox"
    cookie = good.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie.replace("Strict", "strict")
    assert "Secure" not in cookie  # a local run; web_cookie_secure=true in production
    assert web.client.get("/inbox").status_code == 200


def test_pages_need_a_session(web: Web) -> None:
    for path in ("/inbox", "/search", "/review", "/reports", "/ops", f"/cases/{uuid.uuid4()}"):
        response = web.client.get(path, follow_redirects=False)
        assert response.status_code == 303 and response.headers["location"] == "/sign-in", path


def test_every_post_needs_the_csrf_token(web: Web) -> None:
    page = web.client.get("/sign-in")
    no_token = web.client.post("/sign-in", data={"username": "cw801", "password": PASSWORD})
    assert no_token.status_code in (403, 422)
    mismatched = web.client.post(
        "/sign-in", data={"username": "cw801", "password": PASSWORD, "csrf_token": csrf_of(page.text) + "x"}
    )
    assert mismatched.status_code == 403
    sign_in(web, "cw801")
    good = csrf_of(web.client.get("/inbox").text)
    for path, data in (
        (f"/alerts/{web.alert_id}/ack", {}),
        ("/search", {"reason": "follow-up", "upn": web.store.kids[1]["upn"]}),
        (f"/cases/{web.store.records[web.store.child_ids[1]].case_id}", {"reason": "follow-up"}),
        ("/sign-out", {}),
    ):
        refused = web.client.post(path, data={**data, "csrf_token": "forged"}, follow_redirects=False)
        assert refused.status_code == 403, path
    with Session(make_engine(web.settings.database_url)) as session:
        assert session.get(NotifyAlert, web.alert_id).state == "open"  # type: ignore[union-attr]
    assert web.client.get("/inbox").status_code == 200  # the forged sign-out did nothing
    assert good


def test_case_page_search_and_scoping_to_the_la(web: Web) -> None:
    case_id = web.store.records[web.store.child_ids[1]].case_id
    upn = web.store.kids[1]["upn"]
    sign_in(web, "cw801")
    csrf = csrf_of(web.client.get("/search").text)
    found = web.client.post("/search", data={"upn": upn, "reason": "alert follow-up", "csrf_token": csrf})
    assert found.status_code == 200 and f"/cases/{case_id}" in found.text
    case = web.client.post(f"/cases/{case_id}", data={"reason": "alert follow-up", "csrf_token": csrf})
    assert case.status_code == 200
    assert "Whereabouts unknown" in case.text and "Left a school&#39;s roll" in case.text
    assert "whereabouts_unknown</" not in case.text  # states in words, never raw codes
    assert upn not in str(case.url) and upn not in str(found.url)

    sign_in(web, "cw803")
    csrf = csrf_of(web.client.get("/search").text)
    hidden = web.client.post(f"/cases/{case_id}", data={"reason": "curious", "csrf_token": csrf})
    assert hidden.status_code == 404
    nothing = web.client.post("/search", data={"upn": upn, "reason": "curious", "csrf_token": csrf})
    assert nothing.status_code == 200 and "0 found" in nothing.text and case_id not in nothing.text
    assert web.alert_id not in web.client.get("/inbox").text  # another LA's alert is not listed

    with Session(make_engine(web.settings.database_url)) as session:
        audit = session.exec(select(WebAudit).where(WebAudit.target == case_id)).all()
    assert {(a.subject, a.action, a.reason) for a in audit} >= {
        ("cw801", "case_read", "alert follow-up"),
        ("cw803", "case_read_refused", "curious"),
    }


def test_roles_see_only_their_pages(web: Web) -> None:
    sign_in(web, "ops1")
    assert web.client.get("/inbox").status_code == 403
    ops = web.client.get("/ops")
    assert ops.status_code == 200 and 'data-service="tracking"' in ops.text
    sign_in(web, "cw801")
    assert web.client.get("/ops").status_code == 403


def test_inbox_acknowledges_through_notify_and_keeps_assign_and_notes(web: Web) -> None:
    sign_in(web, "cw801")
    inbox = web.client.get("/inbox")
    assert web.alert_id in inbox.text
    csrf = csrf_of(inbox.text)
    assert (
        web.client.post(
            f"/alerts/{web.alert_id}/assign", data={"assignee": "cw801", "csrf_token": csrf}
        ).status_code
        == 200
    )
    assert (
        web.client.post(
            f"/alerts/{web.alert_id}/note", data={"text": "Phoned the family", "csrf_token": csrf}
        ).status_code
        == 200
    )
    acked = web.client.post(
        f"/alerts/{web.alert_id}/ack", data={"csrf_token": csrf, "back": "/inbox?show=all&sort=newest&page=1"}
    )
    assert (
        acked.status_code == 200 and "Phoned the family" in acked.text and "assigned to cw801" in acked.text
    )
    assert web.alert_id not in web.client.get("/inbox").text  # no longer waiting
    # The note is a fact on the child's timeline too: an enquiry-recorded event in intake's outbox, naming the
    # child by the UPN tracking holds, from the web's own client of the LA.
    with Session(make_engine(web.settings.database_url)) as session:
        [row] = session.exec(select(ReferralOutbox)).all()
    event = decode_event(row.value)
    assert event.event_type == "enquiry-recorded" and event.source.client_id == "cme-web-801"
    assert event.payload.outcome == "note" and event.payload.note == "Phoned the family"
    assert event.payload.child.upn == web.store.kids[1]["upn"]
    with Session(make_engine(web.settings.database_url)) as session:
        alert = session.get(NotifyAlert, web.alert_id)
        assert alert is not None and alert.state == "acknowledged" and alert.acknowledged_by == "cw801"
        outbox = session.exec(select(NotifyOutbox)).all()
    assert len(outbox) == 1  # one AlertAck to the escalation service: the ladder stops
    sign_in(web, "cw803")
    csrf = csrf_of(web.client.get("/inbox").text)
    assert (
        web.client.post(f"/alerts/{web.alert_id}/note", data={"text": "x", "csrf_token": csrf}).status_code
        == 404
    )


def test_csv_downloads_are_audited(web: Web) -> None:
    sign_in(web, "cw801")
    page = web.client.get("/reports", params={"on": "2025-11-20"})
    assert page.status_code == 200 and "<svg" in page.text
    assert re.search(r'id="cme-total">3<', page.text)
    csrf = csrf_of(page.text)
    fte = web.client.post(
        "/reports/not-in-full-time-education.csv",
        data={"on": "2025-11-20", "reason": "Ofsted", "csrf_token": csrf},
    )
    assert fte.status_code == 200 and fte.headers["content-type"].startswith("text/csv")
    assert (
        fte.text.splitlines()[0]
        == "unique_id,date_of_birth,upn,provision_type,hours_per_week,exclusion_type,provision_start_date"
    )
    assert len(fte.text.splitlines()) == 5
    dfe = web.client.post(
        "/reports/dfe-cme-return.csv", data={"on": "2025-11-20", "reason": "DfE census", "csrf_token": csrf}
    )
    assert dfe.status_code == 200 and "cme_at_any_point_in_previous_year" in dfe.text
    termly = web.client.post(
        "/reports/dfe-termly-return.csv",
        data={"on": "2025-11-20", "reason": "DfE termly", "csrf_token": csrf},
    )
    assert termly.status_code == 200 and "ehe_on_census_day,,,,,1" in termly.text  # child 5, home educated
    assert "cme_on_census_day,,,,,3" in termly.text
    with Session(make_engine(web.settings.database_url)) as session:
        downloads = session.exec(select(WebAudit).where(WebAudit.action == "download_csv")).all()
    assert sorted((d.target, d.reason) for d in downloads) == [
        ("dfe_cme_return:2025-11-20", "DfE census"),
        ("dfe_termly_return:2025-11-20", "DfE termly"),
        ("not_in_full_time_education:2025-11-20", "Ofsted"),
    ]


def test_sign_out_revokes_the_session(web: Web) -> None:
    sign_in(web, "cw801")
    token = web.client.cookies["cme_session"]
    csrf = csrf_of(web.client.get("/inbox").text)
    assert web.client.post("/sign-out", data={"csrf_token": csrf}, follow_redirects=False).status_code == 303
    web.client.cookies.set("cme_session", token)
    assert web.client.get("/inbox", follow_redirects=False).status_code == 303


def test_health_and_metrics(web: Web) -> None:
    assert web.client.get("/health/live").json() == {"status": "ok", "checks": {"loops": "ok"}}
    assert "cme_web_sign_ins_total" in web.client.get("/metrics").text


class _Unreachable(httpx.AsyncBaseTransport):
    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)


def test_a_service_that_does_not_answer_gives_503_not_500(web: Web) -> None:
    assert sign_in(web, "cw801").status_code == 303
    case_id = web.store.records[web.store.child_ids[1]].case_id
    form = web.client.get(f"/cases/{case_id}")
    web.client.app.state.transports["tracking"] = _Unreachable()  # type: ignore[attr-defined]
    page = web.client.post(
        f"/cases/{case_id}", data={"reason": "checking the alert", "csrf_token": csrf_of(form.text)}
    )
    assert page.status_code == 503
    assert page.headers["Retry-After"] == "10"
    assert "not answering" in page.text


def test_a_link_made_in_error_is_undone_from_the_review_page(web: Web) -> None:
    first, second = sorted((web.store.child_ids[1], web.store.child_ids[2]))
    review_id = str(uuid.uuid4())
    with Session(make_engine(web.settings.database_url)) as session:
        session.add(
            TrackingReviewItem(
                review_id=review_id, la_code=LA, kind="possible_duplicate", child_id=first,
                other_child_id=second, event_id=str(uuid.uuid4()), score=0.9, status="linked",
                decided_by="cw801",
            )
        )  # fmt: skip
        session.commit()
    sign_in(web, "cw803")  # another LA's caseworker neither sees nor undoes it
    page = web.client.get("/review")
    assert review_id not in page.text
    refused = web.client.post(
        f"/review/{review_id}/undo", data={"reason": "not ours", "csrf_token": csrf_of(page.text)}
    )
    assert refused.status_code == 404 and web.published == []

    sign_in(web, "cw801")
    page = web.client.get("/review")
    assert f'action="/review/{review_id}/undo"' in page.text
    forged = web.client.post(f"/review/{review_id}/undo", data={"reason": "oops", "csrf_token": "forged"})
    assert forged.status_code == 403 and web.published == []
    undone = web.client.post(
        f"/review/{review_id}/undo",
        data={"reason": "two children", "csrf_token": csrf_of(page.text)},
        follow_redirects=False,
    )
    assert undone.status_code == 303
    [split] = web.published
    assert isinstance(split, ChildSplit)
    assert (str(split.payload.child_id), str(split.payload.new_child_id)) == (first, second)
    assert f'action="/review/{review_id}/undo"' not in web.client.get("/review").text
    with Session(make_engine(web.settings.database_url)) as session:
        actions = [a.action for a in session.exec(select(WebAudit)).all()]
    assert "review_undo_link" in actions


def test_a_large_body_is_refused_before_sign_in(web: Web) -> None:
    big = web.client.post("/sign-in", content=b"username=" + b"x" * (65 * 1024), headers={
        "Content-Type": "application/x-www-form-urlencoded"})  # fmt: skip
    assert big.status_code == 413


def test_an_api_token_in_the_session_cookie_is_not_a_session(web: Web) -> None:
    api_token = issue_token(web.settings, "cw801", Role.CASEWORKER, LA)
    web.client.cookies.clear()
    web.client.cookies.set("cme_session", api_token)
    answer = web.client.get("/inbox", follow_redirects=False)
    assert answer.status_code in (302, 303) and "/sign-in" in answer.headers["location"]


def test_a_cross_la_match_is_confirmed_from_the_review_page_each_la_its_own_side(web: Web) -> None:
    """Issue 18: 801's child, whereabouts unknown, named by a fact in 803: each LA's review page shows its own
    item (never the other's) with confirm / reject; 801's confirmation sends the closing fact to its case."""
    sought, found = web.store.child_ids[1], str(uuid.uuid4())
    link_id, fact_id = str(uuid.uuid4()), str(uuid.uuid4())
    review_801, review_803 = str(uuid.uuid4()), str(uuid.uuid4())
    with Session(make_engine(web.settings.database_url)) as session:
        case = session.exec(select(TrackingCase).where(TrackingCase.child_id == sought)).one()
        case.state = "whereabouts_unknown"
        session.add(case)
        session.add(
            TrackingCrossLALink(
                link_id=link_id, sought_la_code=LA, sought_child_id=sought,
                sought_state="whereabouts_unknown", found_la_code=OTHER_LA, found_child_id=found,
                event_id=fact_id, fact_type="pupil-registered", match="exact", identifier_kind="upn",
                fact_occurred_at=datetime(2025, 12, 1, 9, 30, tzinfo=UTC),
                sought_review_id=review_801, found_review_id=review_803,
            )
        )  # fmt: skip
        for review_id, la, child_id, detail in (
            (review_801, LA, sought, "possible location: LA 803 (pupil-registered 2025-12-01); exact on upn"),
            (review_803, OTHER_LA, found, "sought by LA 801 (whereabouts_unknown since 2025-11-03)"),
        ):
            session.add(
                TrackingReviewItem(
                    review_id=review_id, la_code=la, kind="cross_la_match", child_id=child_id,
                    event_id=fact_id, detail=detail,
                )
            )  # fmt: skip
        session.commit()

    sign_in(web, "cw803")
    page = web.client.get("/review")
    assert "sought by LA 801" in page.text and review_801 not in page.text and sought not in page.text
    assert f'action="/review/{review_803}"' in page.text and 'value="confirm"' in page.text
    assert "Cross-LA matching is off" not in page.text  # on for every LA in this deployment

    sign_in(web, "cw801")
    page = web.client.get("/review")
    assert "possible location: LA 803" in page.text and review_803 not in page.text
    done = web.client.post(
        f"/review/{review_801}",
        data={"decision": "confirm", "reason": "803 confirmed by phone", "csrf_token": csrf_of(page.text)},
        follow_redirects=False,
    )
    assert done.status_code == 303, done.text
    [closing] = web.published
    assert isinstance(closing, ChildFact) and str(closing.payload.child_id) == sought
    fact = closing.payload.fact["payload"]
    assert isinstance(fact, dict)
    assert (fact["outcome"], fact["la_code"]) == ("other_la_accepted", OTHER_LA)
    assert f'action="/review/{review_801}"' not in web.client.get("/review").text
    sign_in(web, "cw803")
    assert f'action="/review/{review_803}"' not in web.client.get("/review").text  # decided for both


def test_the_register_page_filters_opens_an_entry_and_records_a_review(web: Web) -> None:
    sign_in(web, "cw801")
    page = web.client.get("/register")
    assert page.status_code == 200 and "Register of children not in school" in page.text
    csrf = csrf_of(page.text)
    everyone = web.client.post("/register", data={"reason": "weekly look", "csrf_token": csrf})
    # Children 1 (whereabouts unknown), 2 (excluded), 3 (part-time), 5 (home educated), 6 (missing).
    assert re.search(r'id="register-total">5 on the register<', everyone.text), everyone.text
    home = web.client.post(
        "/register",
        data={"reason": "EHE visits", "category": "elective_home_education", "csrf_token": csrf},
    )
    child5 = web.store.child_ids[5]
    assert re.search(r'id="register-total">1 on the register<', home.text)
    assert f'href="/register/{child5}"' in home.text
    assert web.client.post("/register", data={"reason": "no csrf"}).status_code in (403, 422)
    # Opening an entry asks why first; the entry then shows the register's fields and a review form.
    assert "Why are you opening this entry?" in web.client.get(f"/register/{child5}").text
    entry = web.client.post(f"/register/{child5}", data={"reason": "annual review", "csrf_token": csrf})
    assert entry.status_code == 200 and 'id="entry-category">Home educated<' in entry.text
    form_id = re.search(r'name="form_id" value="([^"]+)"', entry.text)
    assert form_id
    recorded = web.client.post(
        f"/register/{child5}/review",
        data={"csrf_token": csrf, "form_id": form_id.group(1), "suitability": "suitable",
              "review_on": "2099-03-01", "note": "Visited; work seen"},
        follow_redirects=True,
    )  # fmt: skip
    assert recorded.status_code == 200 and "The review is recorded" in recorded.text
    with Session(make_engine(web.settings.database_url)) as session:
        [row] = session.exec(select(ReferralOutbox)).all()
        audits = session.exec(select(WebAudit).where(col(WebAudit.action).startswith("register"))).all()
    event = decode_event(row.value)
    assert event.event_type == "register-entry-recorded" and event.source.client_id == "cme-web-801"
    assert event.payload.suitability == "suitable" and event.payload.child.upn == web.store.kids[5]["upn"]
    assert {a.action for a in audits} == {"register_list", "register_read", "register_review"}
    # Another LA's caseworker: not found, and never listed.
    sign_in(web, "cw803")
    csrf = csrf_of(web.client.get("/register").text)
    assert (
        web.client.post(f"/register/{child5}", data={"reason": "look", "csrf_token": csrf}).status_code == 404
    )
    other = web.client.post("/register", data={"reason": "weekly look", "csrf_token": csrf})
    assert child5 not in other.text


def test_a_report_day_outside_any_case_is_a_clear_422(web: Web) -> None:
    sign_in(web, "cw801")
    for day in ("0001-01-01", "2200-01-01"):
        page = web.client.get("/reports", params={"on": day})
        assert page.status_code == 422 and "1990-01-01" in page.text, (day, page.status_code)
