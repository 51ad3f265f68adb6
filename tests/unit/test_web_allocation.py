"""Automatic allocation: the per-LA policy (pure), and the web in-process with tracking's real API allocating
every open case that nobody owns, audited, never over a person's choice, with the Nobody's queue showing only
what the policy could not allocate (and why) and counts that equal the store's."""

from __future__ import annotations

import asyncio
import random
import re
from datetime import UTC, date, datetime
from typing import Any

import pytest
from sqlmodel import Session, col, select

from devtools.samples import DEMO_SCHOOL_URN
from services.tracking.models import TrackingCase
from services.web import allocation, worker
from services.web.allocation import Accounts, Decision, LAPolicy, PolicyError, decide, parse_policies
from services.web.models import WebAudit, WebCaseWork
from shared.db import make_engine
from shared.events.internal import RESOLVED_STATES
from tests.unit.test_web_pages import Web, csrf_of, sign_in, web  # noqa: F401  (the fixture)
from tests.unit.test_web_reports import LA, OTHER_LA

ACCOUNTS = Accounts(people=frozenset({"alex", "sam"}), teams=frozenset({"north"}))
POLICY = LAPolicy(default="team:north", schools={"100001": "alex", "100002": "team:south"})


def test_the_school_rule_wins_then_the_default() -> None:
    assert decide(POLICY, "100001", ACCOUNTS) == Decision("alex", "the rule for school 100001")
    assert decide(POLICY, "999999", ACCOUNTS) == Decision("team:north", "the LA's default")
    assert decide(POLICY, None, ACCOUNTS).owner == "team:north"


def test_no_owner_says_why() -> None:
    none = decide(None, "100001", ACCOUNTS)
    assert none.owner is None and "no allocation policy" in (none.problem or "")
    team_gone = decide(POLICY, "100002", ACCOUNTS)  # team south has no active casework member
    assert team_gone.owner is None and "team south" in (team_gone.problem or "")
    person_gone = decide(LAPolicy(default="jo"), None, ACCOUNTS)
    assert person_gone.owner is None and "jo, who has no active casework account" in (
        person_gone.problem or ""
    )
    no_default = decide(LAPolicy(schools={"100001": "alex"}), "100003", ACCOUNTS)
    assert no_default.owner is None and "no allocation rule matches (school 100003)" in (
        no_default.problem or ""
    )


def test_the_same_facts_give_the_same_owners_in_any_order() -> None:
    cases = [(f"case-{i}", random.choice(["100001", "100002", "100003", None])) for i in range(200)]
    first = {case: decide(POLICY, urn, ACCOUNTS) for case, urn in cases}
    random.shuffle(cases)
    assert {case: decide(POLICY, urn, ACCOUNTS) for case, urn in cases} == first


def test_the_policy_file_is_checked() -> None:
    parsed = parse_policies({"801": {"default": "team:cme", "schools": {"100001": "alex"}}, 803: None})
    assert parsed["801"] == LAPolicy("team:cme", {"100001": "alex"}) and parsed["803"] == LAPolicy()
    for bad in (
        {"8x1": {"default": "a"}},
        {"801": {"schools": {"1234": "alex"}}},
        {"801": {"default": "team:"}},
        {"801": {"schools": ["alex"]}},
        ["801"],
    ):
        with pytest.raises(PolicyError):
            parse_policies(bad)


def _allocate(w: Web, la: str = LA) -> dict[str, int]:
    app: Any = w.client.app
    return asyncio.run(
        allocation.allocate_la(
            w.settings,
            app.state.engine,
            app.state.policies,
            la,
            app.state.transports["tracking"],
        )
    )


def _open_cases(w: Web, la: str = LA) -> set[str]:
    with Session(make_engine(w.settings.database_url)) as session:
        rows = session.exec(
            select(TrackingCase.case_id).where(
                TrackingCase.la_code == la,
                col(TrackingCase.state).not_in([str(s) for s in RESOLVED_STATES]),
                col(TrackingCase.merged_into).is_(None),
            )
        ).all()
    return set(rows)


def _work(w: Web) -> dict[str, WebCaseWork]:
    with Session(make_engine(w.settings.database_url)) as session:
        return {r.case_id: r for r in session.exec(select(WebCaseWork)).all()}


def test_every_open_case_gets_an_owner_without_anybody_clicking(web: Web) -> None:  # noqa: F811
    taken = web.store.records[web.store.child_ids[1]].case_id
    # A later fact from another school: the case still opened at the school that reported it.
    later = web.store.records[web.store.child_ids[2]].case_id
    web.store.fact(2, "absence-threshold-crossed", date(2025, 11, 14), school_urn="108009")
    web.client.app.state.policies = {  # type: ignore[attr-defined]
        LA: LAPolicy(default="team:north", schools={DEMO_SCHOOL_URN: "cw801b", "108009": "mgr801"})
    }
    sign_in(web, "cw801")  # a person takes one case before the allocator's round: theirs stays theirs
    csrf = csrf_of(web.client.get("/inbox").text)
    assert web.client.post(f"/alerts/{web.alert_id}/take", data={"csrf_token": csrf}).status_code == 200

    counts = _allocate(web)
    open_cases = _open_cases(web)
    work = _work(web)
    assert counts.get("allocated") == len(open_cases) - 1 and not counts.get("failed")
    assert all(work[c].owner for c in open_cases)  # every open case has an owner
    assert work[taken].owner == "cw801" and work[taken].owner_source == "person"
    by_policy = {c: work[c] for c in open_cases - {taken}}
    assert {w.owner_source for w in by_policy.values()} == {"policy"}
    # The opening school decides: left the roll at DEMO_SCHOOL_URN (cw801b); referred with no school: team.
    assert {w.owner for w in by_policy.values()} <= {"cw801b", "team:north"}
    assert work[later].owner == "cw801b"  # the later school's rule (mgr801) did not apply
    assert not set(work) & _open_cases(web, OTHER_LA)  # another LA's cases are not this LA's work
    with Session(make_engine(web.settings.database_url)) as session:
        auto = session.exec(select(WebAudit).where(WebAudit.action == "case_owner_auto")).all()
    assert {a.target for a in auto} == set(by_policy) and {a.subject for a in auto} == {allocation.ALLOCATOR}

    assert _allocate(web).get("allocated") is None  # a second round (or a second replica) changes nothing
    assert {c: w.owner for c, w in _work(web).items()} == {c: w.owner for c, w in work.items()}

    nobody = web.client.get("/cases", params={"scope": "unassigned"})
    assert re.search(r'id="case-count">0 cases<', nobody.text)
    mine = web.client.get("/cases", params={"scope": "team"})  # cw801's team: north, cw801b and cw801
    row = re.search(rf'data-case-id="{later}">.*?</tr>', mine.text, re.S)
    assert row and "108009" in row.group(0)  # the school shown is the latest; the opening one decided
    assert re.search(rf'id="case-count">{len(open_cases)} cases<', mine.text)
    # A person reassigns an automatically allocated case: a person's choice from then on.
    other = sorted(by_policy)[0]
    csrf = csrf_of(mine.text)
    assert (
        web.client.post(f"/cases/{other}/owner", data={"owner": "mgr801", "csrf_token": csrf}).status_code
        == 200
    )
    assert _work(web)[other].owner == "mgr801" and _work(web)[other].owner_source == "person"
    _allocate(web)
    assert _work(web)[other].owner == "mgr801"


def test_nobodys_queue_shows_only_what_the_policy_could_not_allocate(web: Web) -> None:  # noqa: F811
    web.client.app.state.policies = {LA: LAPolicy(default="ghost")}  # type: ignore[attr-defined]
    sign_in(web, "cw801")
    open_cases = _open_cases(web)
    nobody = web.client.get("/cases", params={"scope": "unassigned"})  # allocates before listing
    assert re.search(rf'id="case-count">{len(open_cases)} cases<', nobody.text)
    assert nobody.text.count("Not allocated: the LA&#39;s default names ghost") == len(open_cases)
    web.client.get("/cases", params={"scope": "unassigned"})
    with Session(make_engine(web.settings.database_url)) as session:
        failed = session.exec(select(WebAudit).where(WebAudit.action == "case_allocation_failed")).all()
    assert len(failed) == len(open_cases)  # audited when it failed, not at every look

    web.client.app.state.policies = {LA: LAPolicy(default="team:north")}  # type: ignore[attr-defined]
    fixed = web.client.get("/cases", params={"scope": "unassigned"})
    assert re.search(r'id="case-count">0 cases<', fixed.text)
    everyone = web.client.get("/cases", params={"scope": "team"})
    assert re.search(rf'id="case-count">{len(open_cases)} cases<', everyone.text)
    assert everyone.text.count("by the LA's policy") == len(open_cases)

    # Handing a case back ("nobody"): the policy decides again.
    case_id = sorted(open_cases)[0]
    csrf = csrf_of(everyone.text)
    web.client.post(f"/cases/{case_id}/owner", data={"owner": "", "csrf_token": csrf})
    assert _work(web)[case_id].owner is None
    web.client.get("/cases", params={"scope": "unassigned"})
    assert _work(web)[case_id].owner == "team:north" and _work(web)[case_id].owner_source == "policy"


def test_the_background_round_allocates_and_retries_failures_only_after_a_while(web: Web) -> None:  # noqa: F811
    app: Any = web.client.app
    policies = {LA: LAPolicy(default="team:north")}
    settings = web.settings.model_copy(update={"web_allocation_interval_s": 0.05})
    open_cases = _open_cases(web)

    async def rounds() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(
            worker.run_allocator(settings, app.state.engine, policies, app.state.transports, stop)
        )
        deadline = asyncio.get_running_loop().time() + 20
        while not all(w.owner for c, w in _work(web).items() if c in open_cases) or not open_cases <= set(
            _work(web)
        ):
            assert asyncio.get_running_loop().time() < deadline, "the round did not allocate every case"
            await asyncio.sleep(0.05)
        stop.set()
        await asyncio.wait_for(task, 10)

    asyncio.run(rounds())  # nobody signed in or clicked
    assert {_work(web)[c].owner for c in open_cases} == {"team:north"}

    # A failure is not asked about again by the background round until RETRY_FAILED_AFTER has passed.
    case_id = sorted(open_cases)[0]
    with Session(make_engine(web.settings.database_url)) as session:
        work = session.get(WebCaseWork, case_id)
        assert work is not None
        work.owner, work.owner_source = None, None
        session.add(work)
        session.commit()
    app.state.policies = {LA: LAPolicy(default="ghost")}
    assert _allocate(web) == {"failed": 1}
    recent = datetime.now(UTC) - allocation.RETRY_FAILED_AFTER
    later = asyncio.run(
        allocation.allocate_la(
            web.settings, app.state.engine, app.state.policies, LA, app.state.transports["tracking"], recent
        )
    )
    assert later == {}  # tracking was asked for nothing: the failure is recent
    assert _allocate(web) == {"unchanged": 1}  # the Nobody's queue path asks again (and audits nothing new)


def test_taking_an_alert_overrides_the_policy_but_not_a_person(web: Web) -> None:  # noqa: F811
    case_id = web.store.records[web.store.child_ids[1]].case_id  # the fixture's alert is on this case
    web.client.app.state.policies = {LA: LAPolicy(default="team:north")}  # type: ignore[attr-defined]
    _allocate(web)
    assert (_work(web)[case_id].owner, _work(web)[case_id].owner_source) == ("team:north", "policy")
    sign_in(web, "cw801b")
    csrf = csrf_of(web.client.get("/inbox").text)
    web.client.post(f"/alerts/{web.alert_id}/take", data={"csrf_token": csrf})
    assert (_work(web)[case_id].owner, _work(web)[case_id].owner_source) == ("cw801b", "person")
    sign_in(web, "cw801")
    csrf = csrf_of(web.client.get("/inbox").text)
    web.client.post(f"/alerts/{web.alert_id}/take", data={"csrf_token": csrf})
    assert _work(web)[case_id].owner == "cw801b"  # another person's choice stands
