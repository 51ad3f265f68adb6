"""The same facts give the same clocks, steps and alerts whatever the interleaving of escalation's two input
topics (issue 22): a child fact (``cme.child-events.v1``) and the case transitions tracking publishes
(``cme.case-transitions.v1``) are read by one consumer in whatever order the broker hands the two topics
over, so a transition dated after a fact can be read before it. Tracking's own case code gives the
transitions; escalation reads them either right after each fact (the child-events consumer keeping up) or
with every child fact held back until all the transitions were read (that consumer lagging).

Before the fix, an event rule's fact read after the transition that resolved the case later started no clock
("already resolved") while read first it started one that the resolution ended: different deadlines and
withheld steps from the same facts. A resolution caused by the very fact that starts an immediate event rule
(tracking resolving a case escalation holds to be under child protection) cancelled that alert in one order
and never started it in the other."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import date, datetime
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from devtools.samples import child as kid
from services.escalation.models import EscalationStep
from services.escalation.rules import RuleSet
from services.escalation.unit_of_work import Deps, as_utc
from services.tracking.cases import apply_child_fact
from shared.db import make_engine, migrate
from shared.events.internal import CaseState, CaseTransition, ChildFact
from shared.events.vocab import SocialCareStatus
from shared.school_calendar import CalendarRegistry
from tests.support.escalation import LA, child_fact, transition
from tests.unit.test_escalation_arrival_order import (
    CHILD,
    FACTS,
    MIGRATIONS,
    TOPIC,
    TRANSITIONS,
    Pipeline,
    alerts,
    clocks,
    utc,
)

Step = tuple[str, int, str, datetime, bool, str | None]


@pytest.fixture(scope="module")
def deps() -> Deps:
    return Deps(RuleSet.load(), CalendarRegistry(), TOPIC)


def steps(engine: Engine) -> set[Step]:
    """Every step recorded: (escalation id, step, level, due, published, withheld)."""
    with Session(engine) as session:
        rows = session.exec(select(EscalationStep)).all()
    return {(r.escalation_id, r.step_index, r.level, as_utc(r.due_at), r.published, r.withheld) for r in rows}


class Interleaved(Pipeline):
    """Tracking's case code, then escalation; ``facts_lag``: every child fact is read after all the
    transitions (the child-events consumer behind the transitions consumer)."""

    def run(self, facts: Sequence[ChildFact], *, facts_lag: bool) -> None:
        held: list[ChildFact] = []
        for fact in facts:
            out = apply_child_fact(self.record, fact)
            self.record = out.record
            if facts_lag:
                held.append(fact)
            else:
                self.read(fact, FACTS)
            for t in out.transitions:
                self.read(t, TRANSITIONS)
        for fact in held:
            self.read(fact, FACTS)


Clocks = set[tuple[str, str, str, datetime, str, datetime | None]]
Result = tuple[Clocks, Clocks, set[Step], list[tuple[str, str, int, datetime]]]


def _both_orders(
    tmp_path: Path, deps: Deps, facts: Sequence[ChildFact], until: datetime
) -> tuple[Result, Result]:
    results: list[Result] = []
    for lag in (False, True):
        url = f"sqlite:///{tmp_path / ('lagging' if lag else 'keeping-up')}.db"
        migrate(url, MIGRATIONS, "escalation")
        engine = make_engine(url)
        try:
            run = Interleaved(engine, deps, now=utc(2024, 9, 1))
            run.run(facts, facts_lag=lag)
            before = clocks(engine)
            run.tick(until)
            results.append((before, clocks(engine), steps(engine), sorted(alerts(engine))))
        finally:
            engine.dispose()
    return results[0], results[1]


def _exclusion(on: date) -> ChildFact:
    return child_fact(CHILD, "exclusion-issued", on, start_date=on.isoformat())


# Permanently excluded from Mon 16 Sep 2024: day 6 ends Mon 23 Sep (the sixth-day clock, then +1 school day).
EXCLUDED = _exclusion(date(2024, 9, 16))


@pytest.mark.parametrize(
    "later",
    [
        [child_fact(CHILD, "pupil-registered", date(2024, 10, 1))],  # after day 6: the clock fell due
        [child_fact(CHILD, "pupil-registered", date(2024, 9, 19))],  # before day 6: it never did
        # Resolved, then missing again before the exclusion fact is read: the first resolution ends it.
        [
            child_fact(CHILD, "pupil-registered", date(2024, 10, 1)),
            child_fact(CHILD, "pupil-left-roll", date(2024, 10, 8)),
        ],
        # Resolved twice (in school, then home educated): the first one ends it.
        [
            child_fact(CHILD, "pupil-registered", date(2024, 9, 24)),
            child_fact(CHILD, "home-education-notified", date(2024, 10, 2)),
        ],
        # A deletion under ground (o) while the exclusion's own clock runs starts no second clock, whether or
        # not the resolution that ends that clock later was read first ("already running" as of the fact).
        [
            child_fact(CHILD, "pupil-left-roll", date(2024, 9, 20), deletion_ground="o"),
            child_fact(CHILD, "pupil-registered", date(2024, 10, 1)),
        ],
    ],
    ids=[
        "registered-after-day-6",
        "registered-before-day-6",
        "resolved-then-missing",
        "resolved-twice",
        "ground-o-deletion-while-the-exclusion-runs",
    ],
)
def test_an_event_clock_is_the_same_whether_its_fact_or_the_resolution_is_read_first(
    tmp_path: Path, deps: Deps, later: list[ChildFact]
) -> None:
    keeping_up, lagging = _both_orders(tmp_path, deps, [EXCLUDED, *later], utc(2024, 11, 30))
    assert keeping_up[0] == lagging[0]  # the same deadlines, ids, due times and ends before any tick
    assert keeping_up[1] == lagging[1]  # and decided the same way
    assert keeping_up[2] == lagging[2]  # the same steps, withheld ones included
    assert keeping_up[3] == lagging[3]
    assert any(rule == "permanent_exclusion_no_provision" for _, rule, *_ in keeping_up[0])


def test_a_clock_due_before_the_resolution_read_first_is_decided_by_the_policy(
    tmp_path: Path, deps: Deps
) -> None:
    """Registered on 1 Oct after the sixth day (23 Sep): decided after reading both, the step due 23 Sep is
    recorded for a closed episode (alerting nobody), in either order."""
    registered = child_fact(CHILD, "pupil-registered", date(2024, 10, 1))
    keeping_up, lagging = _both_orders(tmp_path, deps, [EXCLUDED, registered], utc(2024, 11, 30))
    for result in (keeping_up, lagging):
        recorded = result[2]
        assert {(i, withheld) for _, i, _, _, _, withheld in recorded} == {
            (0, "episode_closed"),
            (1, "episode_closed"),
        }


# -- an immediate alert and the transition its own fact causes -----------------------------------------------

CP = kid(1, LA, vulnerabilities=["child_protection_plan"])
CPP = SocialCareStatus.CHILD_PROTECTION_PLAN


@pytest.mark.parametrize(
    ("facts", "rule"),
    [
        (
            [child_fact(CHILD, "home-education-notified", date(2024, 9, 16), child=CP)],
            "home_education_child_protection",
        ),
        (
            [
                child_fact(
                    CHILD, "social-care-status-changed", date(2024, 9, 10), status="child_protection_plan"
                ),
                child_fact(CHILD, "pupil-registered", date(2024, 9, 11)),
                child_fact(CHILD, "home-education-notified", date(2024, 9, 16)),
            ],
            "home_education_child_protection",
        ),
        (
            [
                child_fact(CHILD, "pupil-registered", date(2024, 9, 5)),
                child_fact(CHILD, "pupil-left-roll", date(2024, 9, 16), deletion_ground="f", child=CP),
            ],
            "home_education_deletion_child_protection",
        ),
    ],
    ids=["notice-flagged", "status-then-notice", "deletion-ground-f"],
)  # fmt: skip
def test_the_home_education_child_protection_alert_goes_in_both_read_orders(
    tmp_path: Path, deps: Deps, facts: list[ChildFact], rule: str
) -> None:
    keeping_up, lagging = _both_orders(tmp_path, deps, facts, utc(2024, 9, 20))
    assert keeping_up == lagging
    raised = keeping_up[3]
    assert (rule, "raised", 0, facts[-1].occurred_at) in raised


def _caused_by(fact: ChildFact, t: CaseTransition) -> CaseTransition:
    inbound = uuid.UUID(str(fact.payload.fact["event_id"]))
    return t.model_copy(update={"payload": t.payload.model_copy(update={"cause_event_id": inbound})})


@pytest.mark.parametrize("transition_first", [False, True])
def test_a_resolution_caused_by_the_alerting_fact_never_cancels_its_immediate_alert(
    tmp_path: Path, deps: Deps, transition_first: bool
) -> None:
    """A notice of home education for a child under a child protection plan, which tracking (here holding
    another view of it than the LA's rules: rules are data an LA overrides, tracking's refusal is code)
    turns into home education, a resolved state, at the notice's own time. The alert to children's social
    care goes, whichever is read first: the resolution its own fact causes never ends it. It failed in both
    orders before: read first, the resolution at the same instant cancelled the clock due then; read second,
    the fact found the case already resolved and started none."""
    url = f"sqlite:///{tmp_path / 'esc.db'}"
    migrate(url, MIGRATIONS, "escalation")
    engine = make_engine(url)
    try:
        run = Pipeline(engine, deps, now=utc(2024, 9, 1))
        status = child_fact(
            CHILD, "social-care-status-changed", date(2024, 9, 10), status="child_protection_plan"
        )
        notice = child_fact(CHILD, "home-education-notified", date(2024, 9, 16))
        run.read(status, FACTS)
        at = notice.occurred_at
        home_educated = _caused_by(
            notice,
            transition(
                CHILD,
                CaseState.ELECTIVELY_HOME_EDUCATED,
                at,
                from_state=CaseState.IN_EDUCATION,
                social_care=CPP,
            ),
        )
        in_school = transition(CHILD, CaseState.IN_EDUCATION, utc(2024, 9, 11), social_care=CPP)
        run.read(in_school, TRANSITIONS)
        for event, topic in ((home_educated, TRANSITIONS), (notice, FACTS))[
            :: -1 if not transition_first else 1
        ]:
            run.read(event, topic)
        run.tick(utc(2024, 9, 20))
        raised = [(r, a, s) for r, a, s, _ in alerts(engine)]
        assert ("home_education_child_protection", "raised", 0) in raised
        assert ("home_education_child_protection", "stepped_up", 1) in raised
    finally:
        engine.dispose()
