"""Casework in the web, in-process with tracking's, notify's and referral's real APIs: taking an alert, case
owners and the work queues (mine, my team's, nobody's, filters, overdue reviews), review dates, and enquiries
and outcomes recorded as facts through the intake (school calendar dates: the scenario's autumn term 2025)."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlmodel import Session, col, select

from services.referral.models import ReferralOutbox
from services.web import facts, words
from services.web.models import WebAudit, WebCaseWork
from shared.db import make_engine
from shared.events import decode_event
from tests.unit.test_web_pages import Web, csrf_of, sign_in, web  # noqa: F401  (the fixture)

FIXED_NOW = datetime(2025, 11, 20, 10, 0, tzinfo=UTC)  # a Thursday in the autumn term


def _outbox(w: Web) -> list[object]:
    with Session(make_engine(w.settings.database_url)) as session:
        return [
            decode_event(r.value)
            for r in session.exec(select(ReferralOutbox).order_by(col(ReferralOutbox.id))).all()
        ]


def _form_id(page: str) -> str:
    found = re.search(r'name="form_id" value="([0-9a-f-]{36})"', page)
    assert found, "no form id on the page"
    return found.group(1)


def _open_case(w: Web, case_id: str) -> str:
    csrf = csrf_of(w.client.get(f"/cases/{case_id}").text)
    page = w.client.post(f"/cases/{case_id}", data={"reason": "casework", "csrf_token": csrf})
    assert page.status_code == 200, page.text[:300]
    return page.text


def test_taking_an_alert_makes_the_case_mine_and_the_queues_follow(web: Web) -> None:  # noqa: F811
    case_id = web.store.records[web.store.child_ids[1]].case_id
    sign_in(web, "cw801")
    inbox = web.client.get("/inbox")
    assert "Waiting for you" in inbox.text and re.search(r'id="waiting-count">1<', inbox.text)
    kid = web.store.kids[1]
    assert f"{kid['forename']} {kid['surname']}" in inbox.text  # the table names the child
    took = web.client.post(f"/alerts/{web.alert_id}/take", data={"csrf_token": csrf_of(inbox.text)})
    assert took.status_code == 200 and "Why are you opening this record?" in took.text  # the reason first
    assert 'id="case-owner">cw801<' in _open_case(web, case_id)
    mine = web.client.get("/cases", params={"scope": "mine"})
    assert re.search(r'id="case-count">1 case<', mine.text) and case_id in mine.text
    assert "Whereabouts unknown" in mine.text
    nobody = web.client.get("/cases", params={"scope": "unassigned", "closed": "true"})
    assert case_id not in nobody.text
    everyone = web.client.get("/cases", params={"scope": "all", "closed": "true"})
    with Session(make_engine(web.settings.database_url)) as session:
        from services.tracking.models import TrackingCase

        la_cases = len(session.exec(select(TrackingCase).where(TrackingCase.la_code == "801")).all())
    assert re.search(rf'id="case-count">{la_cases} cases<', everyone.text)  # tracking's own count
    filtered = web.client.get("/cases", params={"scope": "all", "state": "awaiting_provision"})
    assert case_id not in filtered.text and "Awaiting a place" in filtered.text

    sign_in(web, "cw801b")  # same team: sees it in the team's queue, not in their own
    assert case_id in web.client.get("/cases", params={"scope": "team"}).text
    assert case_id not in web.client.get("/cases", params={"scope": "mine"}).text
    page = _open_case(web, case_id)
    refused = web.client.post(
        f"/cases/{case_id}/review", data={"review_due": "2099-01-05", "csrf_token": csrf_of(page)}
    )
    assert refused.status_code == 403  # only the owner (or a manager) sets the review date

    sign_in(web, "cw803")  # another LA: nothing of it, and no way to take it
    assert case_id not in web.client.get("/cases", params={"scope": "all", "closed": "true"}).text
    csrf = csrf_of(web.client.get("/inbox").text)
    assert (
        web.client.post(f"/cases/{case_id}/owner", data={"owner": "me", "csrf_token": csrf}).status_code
        == 404
    )
    assert web.client.post(f"/alerts/{web.alert_id}/take", data={"csrf_token": csrf}).status_code == 404

    with Session(make_engine(web.settings.database_url)) as session:
        audit = {(a.subject, a.action) for a in session.exec(select(WebAudit)).all()}
    assert {("cw801", "alert_take"), ("cw801", "case_owner"), ("cw801", "case_queue")} <= audit


def test_review_dates_and_overdue_reviews(web: Web) -> None:  # noqa: F811
    case_id = web.store.records[web.store.child_ids[2]].case_id
    sign_in(web, "cw801")
    page = _open_case(web, case_id)
    csrf = csrf_of(page)
    assert (
        web.client.post(
            f"/cases/{case_id}/owner", data={"owner": "team:north", "csrf_token": csrf}
        ).status_code
        == 200
    )
    assert (
        web.client.post(
            f"/cases/{case_id}/owner", data={"owner": "nobody-here", "csrf_token": csrf}
        ).status_code
        == 422
    )
    past = web.client.post(f"/cases/{case_id}/review", data={"review_due": "2020-01-06", "csrf_token": csrf})
    assert past.status_code == 422
    due = (date.today() + timedelta(days=7)).isoformat()
    set_ = web.client.post(f"/cases/{case_id}/review", data={"review_due": due, "csrf_token": csrf})
    assert set_.status_code == 200 and f'id="case-review">{due}' in set_.text  # a team member sets it
    [fact] = _outbox(web)  # and it is a fact on the child's timeline, through intake
    assert fact.event_type == "review-date-set" and fact.payload.review_on.isoformat() == due  # type: ignore[attr-defined]
    assert case_id not in web.client.get("/cases", params={"scope": "team", "overdue": "true"}).text
    with Session(make_engine(web.settings.database_url)) as session:  # a week passes without a review
        work = session.get(WebCaseWork, case_id)
        assert work is not None and work.owner == "team:north"
        work.review_due = date.today() - timedelta(days=1)
        session.add(work)
        session.commit()
    overdue = web.client.get("/cases", params={"scope": "team", "overdue": "true"})
    assert (
        case_id in overdue.text
        and "Overdue" in overdue.text
        and re.search(r'id="case-count">1 case<', overdue.text)
    )


def test_enquiries_and_outcomes_are_facts_through_the_intake(web: Web) -> None:  # noqa: F811
    case_id = web.store.records[web.store.child_ids[1]].case_id
    upn = web.store.kids[1]["upn"]
    sign_in(web, "cw801")
    page = _open_case(web, case_id)
    csrf, form_id = csrf_of(page), _form_id(page)
    enquiry = {
        "csrf_token": csrf, "form_id": form_id, "on": "2025-11-18", "enquiry_type": "health",
        "outcome": "not_located", "contact": "GP practice", "note": "Not registered with the practice",
    }  # fmt: skip
    first = web.client.post(f"/cases/{case_id}/enquiry", data=enquiry, follow_redirects=False)
    assert first.status_code == 303 and first.headers["location"] == f"/cases/{case_id}?recorded=enquiry"
    again = web.client.post(f"/cases/{case_id}/enquiry", data=enquiry, follow_redirects=False)
    assert again.status_code == 303  # a resent form: the same event, a duplicate at intake
    offered = web.client.post(f"/cases/{case_id}/outcome", data={
        "csrf_token": csrf, "form_id": form_id, "on": "2025-11-19", "event_type": "place-offered",
        "provision_type": "school", "school_urn": "100001",
    }, follow_redirects=False)  # fmt: skip
    assert offered.status_code == 303
    started = web.client.post(f"/cases/{case_id}/outcome", data={
        "csrf_token": csrf, "form_id": form_id, "on": "2025-11-20", "event_type": "provision-started",
        "provision_type": "school", "school_urn": "100001",
    }, follow_redirects=False)  # fmt: skip
    assert started.status_code == 303
    wrong = web.client.post(f"/cases/{case_id}/outcome", data={
        "csrf_token": csrf, "form_id": str(uuid.uuid4()), "on": "2025-11-20", "event_type": "moved-abroad",
    })  # fmt: skip
    assert wrong.status_code == 422 and "Check country" in wrong.text and "Nothing was recorded" in wrong.text
    forged = web.client.post(f"/cases/{case_id}/enquiry", data={**enquiry, "csrf_token": "forged"})
    assert forged.status_code == 403

    events = _outbox(web)
    assert [e.event_type for e in events] == ["enquiry-recorded", "place-offered", "provision-started"]  # type: ignore[attr-defined]
    for event in events:
        assert event.payload.child.upn == upn and event.source.client_id == "cme-web-801"  # type: ignore[attr-defined]
    assert events[0].payload.enquiry_type == "health" and events[0].payload.outcome == "not_located"  # type: ignore[attr-defined]
    assert events[0].occurred_at.date() == date(2025, 11, 18)  # type: ignore[attr-defined]  # event time: the day named
    assert events[2].payload.school_urn == "100001" and events[2].payload.full_time is True  # type: ignore[attr-defined]

    sign_in(web, "cw803")  # another LA's caseworker records nothing on LA 801's child
    csrf = csrf_of(web.client.get("/inbox").text)
    refused = web.client.post(
        f"/cases/{case_id}/enquiry", data={**enquiry, "csrf_token": csrf, "form_id": str(uuid.uuid4())}
    )
    assert refused.status_code == 404 and len(_outbox(web)) == 3


# --- pure parts --------------------------------------------------------------------------------------------

CHILD = {
    "child_id": str(uuid.uuid4()), "forename": "Ada", "surname": "Lovelace", "date_of_birth": "2014-03-09",
    "sex": "F", "identifiers": [{"kind": "upn", "value": "B801200005001"}],
}  # fmt: skip


def test_facts_name_the_child_by_its_strong_identifier_else_by_name_and_birth_date() -> None:
    assert facts.child_identity(CHILD) == {"upn": "B801200005001"}
    named = facts.child_identity({**CHILD, "identifiers": []})
    assert named == {"forename": "Ada", "surname": "Lovelace", "date_of_birth": "2014-03-09", "sex": "F"}


def test_a_form_makes_one_event_per_kind_and_event_time_is_the_day_named() -> None:
    form_id = str(uuid.uuid4())
    a = facts.enquiry(
        form_id, CHILD, "801", date(2025, 11, 18), "police", "information_received", "PC Smith", "", FIXED_NOW
    )
    b = facts.enquiry(
        form_id, CHILD, "801", date(2025, 11, 18), "police", "information_received", "PC Smith", "", FIXED_NOW
    )
    c = facts.outcome("child-located", form_id, CHILD, "801", date(2025, 11, 18), {}, FIXED_NOW)
    assert a.event.event_id == b.event.event_id != c.event.event_id
    assert a.event.occurred_at == datetime(2025, 11, 18, 12, tzinfo=UTC)
    today = facts.note(form_id, CHILD, "801", "Spoke to the aunt", FIXED_NOW)
    assert today.event.occurred_at == FIXED_NOW and today.summary == "Note: Spoke to the aunt"
    assert a.summary.startswith("Police: Information found") and "Contact: PC Smith" in a.event.payload.note  # type: ignore[attr-defined]


def test_forms_that_do_not_make_a_valid_fact_are_refused_with_what_to_fix() -> None:
    form_id = str(uuid.uuid4())
    for event_type, form, expected in (
        ("moved-out-of-area", {}, "new la code"),
        ("moved-abroad", {"country": "Poland"}, "country"),
        ("provision-started", {"provision_type": "school", "school_urn": "12"}, "school urn"),
    ):
        try:
            facts.outcome(event_type, form_id, CHILD, "801", date(2025, 11, 18), form, FIXED_NOW)
        except facts.FactRefused as exc:
            assert any(expected in m for m in exc.messages), exc.messages
        else:
            raise AssertionError(f"{event_type} {form} was accepted")
    try:
        facts.outcome("child-located", form_id, CHILD, "801", date(2025, 11, 21), {}, FIXED_NOW)
    except facts.FactRefused as exc:
        assert exc.messages == ["The date cannot be in the future."]
    else:
        raise AssertionError("a future date was accepted")
    try:
        facts.enquiry(
            "not-a-uuid", CHILD, "801", date(2025, 11, 18), "police", "no_response", "", "", FIXED_NOW
        )
    except facts.FactRefused:
        pass
    else:
        raise AssertionError("a form without its id was accepted")


def test_codes_read_as_words_and_new_codes_need_only_a_label() -> None:
    assert words.state_words("whereabouts_unknown") == "Whereabouts unknown"
    assert words.state_words("part_time_provision") == "Part-time provision"
    assert words.state_words("some_new_state") == "Some new state"  # a code with no label yet: its words
    assert words.reason_words("awaiting_place") == "Awaiting a school place"
    assert words.fact_words("moved-abroad:confirmed") == "Moved abroad (confirmed)"
    assert words.in_words(None) == "—"
    for table in (
        words.STATES,
        words.REASONS,
        words.FACTS,
        words.ENQUIRY_TYPES,
        words.LEVELS,
        words.RESOLUTIONS,
    ):
        assert all("_" not in label for label in table.values())


@pytest.mark.skipif(not facts.supported(facts.CLOSE), reason="the catalogue has no case-outcome-recorded yet")
def test_a_case_closes_with_an_outcome_that_names_the_education(web: Web) -> None:  # noqa: F811
    case_id = web.store.records[web.store.child_ids[1]].case_id
    sign_in(web, "cw801")
    page = _open_case(web, case_id)
    assert 'id="close-form"' in page
    csrf, form_id = csrf_of(page), _form_id(page)
    base = {"csrf_token": csrf, "form_id": form_id, "on": "2025-11-20"}
    unnamed = web.client.post(f"/cases/{case_id}/close", data={**base, "outcome": "school"})
    assert unnamed.status_code == 422 and _outbox(web) == []  # a school outcome names the school
    closed = web.client.post(
        f"/cases/{case_id}/close",
        data={**base, "outcome": "school", "school_urn": "100002"},
        follow_redirects=False,
    )
    assert closed.status_code == 303
    [event] = _outbox(web)
    assert event.event_type == facts.CLOSE  # type: ignore[attr-defined]
    assert event.payload.outcome == "school" and event.payload.school_urn == "100002"  # type: ignore[attr-defined]
    with Session(make_engine(web.settings.database_url)) as session:  # as tracking keeps a closed case
        from services.tracking.models import TrackingCase

        case = session.get(TrackingCase, case_id)
        assert case is not None
        case.state, case.outcome, case.outcome_ref = "in_education", "school", "100002"
        session.add(case)
        session.commit()
    assert 'id="case-outcome">Registered at a school: 100002<' in web.client.get(f"/cases/{case_id}").text


def test_ops_and_admin_get_no_casework(web: Web) -> None:  # noqa: F811
    case_id = web.store.records[web.store.child_ids[1]].case_id
    sign_in(web, "ops1")
    csrf = csrf_of(web.client.get("/ops").text)
    assert web.client.get("/cases").status_code == 403
    fact = {"form_id": str(uuid.uuid4()), "on": "2025-11-18"}
    for path, data in (
        (f"/alerts/{web.alert_id}/take", {}),
        (f"/cases/{case_id}/owner", {"owner": "me"}),
        (f"/cases/{case_id}/review", {"review_due": "2099-01-05"}),
        (f"/cases/{case_id}/enquiry", {**fact, "enquiry_type": "police", "outcome": "no_response"}),
        (f"/cases/{case_id}/outcome", {**fact, "event_type": "child-located"}),
        (f"/cases/{case_id}/close", {**fact, "outcome": "school", "school_urn": "100002"}),
    ):
        assert web.client.post(path, data={**data, "csrf_token": csrf}).status_code == 403, path
    assert _outbox(web) == []


def test_days_missing_are_school_days_on_the_la_calendar() -> None:
    from services.web import casework
    from shared.school_calendar import CalendarRegistry

    item = {
        "case": {"case_id": "c", "child_id": "k", "state": "whereabouts_unknown", "reason": None},
        "forename": "Ada", "surname": "Lovelace", "date_of_birth": "2014-03-09", "school_urn": "108000",
        "spells": [
            {"start": "2025-09-01T09:00:00+00:00", "state": "on_roll_at_risk"},
            {"start": "2025-11-03T09:00:00+00:00", "state": "missing_education"},  # Monday after half term
            {"start": "2025-11-04T09:00:00+00:00", "state": "whereabouts_unknown"},  # the run goes on
        ],
    }  # fmt: skip
    calendar = CalendarRegistry(None).calendar_for("801")
    line = casework.summary(item, date(2025, 11, 10), calendar)
    assert line.days_missing == 5  # Tue 4 to Mon 10 November: five school days (seven calendar days)
    assert casework.summary(item, date(2025, 11, 10)).days_missing == 7
    assert (line.name, line.age, line.state) == ("Ada Lovelace", 11, "Whereabouts unknown")


def test_a_reason_is_stated_only_where_the_event_carries_one() -> None:
    form_id = str(uuid.uuid4())
    found = facts.enquiry(
        form_id, CHILD, "801", date(2025, 11, 18), "other_la", "information_received", "", "", FIXED_NOW,
        reason="left_la",
    )  # fmt: skip
    assert found.event.payload.reason == "left_la"  # type: ignore[attr-defined]
    located = facts.outcome(
        "child-located", form_id, CHILD, "801", date(2025, 11, 18), {"reason": "awaiting_place"}, FIXED_NOW
    )
    assert located.event.payload.reason == "awaiting_place"  # type: ignore[attr-defined]
    assert not facts.allows_reason("place-offered")
    try:
        facts.enquiry(form_id, CHILD, "801", date(2025, 11, 18), "police", "no_response", "", "", FIXED_NOW,
                      reason="not_a_reason")  # fmt: skip
    except facts.FactRefused as exc:
        assert exc.messages == ["Check reason."]
    else:
        raise AssertionError("an unknown reason was accepted")


def test_the_inbox_filters_by_ladder_step_with_notify_counts(web: Web) -> None:  # noqa: F811
    sign_in(web, "cw801")
    mine = web.client.get("/inbox", params={"level": "caseworker"})
    assert re.search(r'id="alert-count">1 alert<', mine.text) and web.alert_id in mine.text
    senior = web.client.get("/inbox", params={"level": "senior_cme_officer", "show": "all"})
    assert re.search(r'id="alert-count">0 alerts<', senior.text) and web.alert_id not in senior.text
    assert 'href="/inbox?show=open&sort=newest&page=1&level=senior_cme_officer"' in senior.text  # kept
    assert web.client.get("/inbox", params={"level": "Robert'); DROP"}).status_code == 422


def test_every_resolution_reason_has_words() -> None:
    from shared.events.vocab import ResolutionReason

    assert set(words.RESOLUTIONS) == {r.value for r in ResolutionReason}


def test_the_inbox_filters_mine_and_my_teams_with_true_counts_and_pages(web: Web) -> None:  # noqa: F811
    from services.notify.models import NotifyAlert

    engine = make_engine(web.settings.database_url)
    mine_case = web.store.records[web.store.child_ids[1]].case_id  # has the fixture's alert
    team_case = web.store.records[web.store.child_ids[2]].case_id  # owned by a team member
    other_case = web.store.records[web.store.child_ids[3]].case_id  # owned by nobody
    ids: dict[str, set[str]] = {mine_case: {web.alert_id}, team_case: set(), other_case: set()}
    with Session(engine) as session:
        for n in range(70):
            case_id = team_case if n < 60 else other_case
            alert_id = str(uuid.uuid4())
            ids[case_id].add(alert_id)
            session.add(
                NotifyAlert(
                    alert_id=alert_id, escalation_id=str(uuid.uuid4()), step_index=0, la_code="801",
                    child_id=str(uuid.uuid4()), case_id=case_id, level="caseworker", rule_id="r",
                    reason_code="whereabouts_unknown", case_state="awaiting_provision",
                    source_event_id=str(uuid.uuid4()), source_topic="t", source_partition=0, source_offset=n,
                    escalated_at=FIXED_NOW - timedelta(hours=n % 7),  # ties: paging must not lose any
                )
            )  # fmt: skip
        session.add(WebCaseWork(case_id=team_case, la_code="801", owner="cw801b", owner_source="person"))
        session.commit()
    sign_in(web, "cw801")
    csrf = csrf_of(web.client.get("/inbox").text)
    web.client.post(f"/alerts/{web.alert_id}/take", data={"csrf_token": csrf})

    def reached(whose: str) -> tuple[int, list[str]]:
        first = web.client.get("/inbox", params={"whose": whose, "sort": "oldest"})
        count = re.search(r'id="alert-count">(\d+) alert', first.text)
        assert count, first.text[:500]
        total, seen = int(count.group(1)), []
        for page in range(1, -(-total // 50) + 1):
            text = web.client.get("/inbox", params={"whose": whose, "sort": "oldest", "page": page}).text
            seen += re.findall(r'data-alert-id="([0-9a-f-]{36})"', text)
        return total, seen

    total, seen = reached("mine")
    assert total == 1 and seen == [web.alert_id]
    total, seen = reached("team")  # cw801's team: north (cw801, cw801b)
    assert total == 61 and sorted(seen) == sorted(ids[mine_case] | ids[team_case])
    total, seen = reached("all")
    assert total == 71 and sorted(seen) == sorted(set().union(*ids.values()))
    mine = web.client.get("/inbox", params={"whose": "mine"})
    assert re.search(r'id="waiting-count">1<', mine.text) and "whose=mine" in mine.text

    sign_in(web, "cw803")  # another LA: its "all" has none of them; its "mine" is empty
    assert reached("all") == (0, []) and reached("mine") == (0, [])


def test_search_results_name_the_child_keep_data_out_of_urls_and_audit_the_read(web: Web) -> None:  # noqa: F811
    from services.tracking.models import TrackingReadAudit
    from services.web.casework import age_on

    case_id = web.store.records[web.store.child_ids[1]].case_id
    kid = web.store.kids[1]
    sign_in(web, "cw801")
    csrf = csrf_of(web.client.get("/search").text)
    found = web.client.post(
        "/search", data={"upn": kid["upn"], "reason": "call from a school", "csrf_token": csrf}
    )
    assert found.status_code == 200 and str(found.url).endswith("/search")  # no child data in the URL
    row = re.search(rf'data-case-id="{case_id}">.*?</tr>', found.text, re.S)
    assert row, found.text[-2000:]
    age = age_on(date.fromisoformat(kid["date_of_birth"]), date.today())
    assert f"{kid['forename']} {kid['surname']}" in row.group(0) and f"age {age}" in row.group(0)
    assert kid["date_of_birth"] in row.group(0) and "Whereabouts unknown" in row.group(0)
    by_name = web.client.post(
        "/search",
        data={
            "surname": kid["surname"],
            "date_of_birth": kid["date_of_birth"],
            "reason": "call",
            "csrf_token": csrf,
        },
    )
    assert f"{kid['forename']} {kid['surname']}" in by_name.text
    engine = make_engine(web.settings.database_url)
    with Session(engine) as session:
        web_audit = session.exec(select(WebAudit).where(WebAudit.action == "search_result")).all()
        read = session.exec(
            select(TrackingReadAudit).where(
                TrackingReadAudit.action == "case_list", TrackingReadAudit.reason == "call from a school"
            )
        ).all()
    assert ("cw801", case_id, "call from a school") in {(a.subject, a.target, a.reason) for a in web_audit}
    assert [r.subject for r in read] == ["cw801"]  # tracking recorded the read of the names, and why

    sign_in(web, "cw803")  # another LA: nothing found, no name shown
    csrf = csrf_of(web.client.get("/search").text)
    nothing = web.client.post("/search", data={"upn": kid["upn"], "reason": "curious", "csrf_token": csrf})
    assert "0 found" in nothing.text and kid["surname"] not in nothing.text
