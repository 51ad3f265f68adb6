"""The escalation service's units of work on a real (SQLite) database, with simulated time: clocks start and
are cancelled, the ladder steps up and stops, deadlines fire exactly once, rule versions stick."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

import pytest
import yaml
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from devtools.samples import sample_event_dict
from services.escalation.acks import handle_ack
from services.escalation.child_facts import handle_child_fact
from services.escalation.firing import fire_deadline
from services.escalation.merges import handle_merge
from services.escalation.models import (
    DeadlineStatus,
    EscalationCase,
    EscalationDeadline,
    EscalationOutbox,
    EscalationRecord,
)
from services.escalation.rules import DEFAULT_RULES_PATH, RuleSet
from services.escalation.timer import due_deadline_ids
from services.escalation.transitions import handle_transition
from services.escalation.unit_of_work import Deps, mark_processed
from shared.case_ids import case_id_for
from shared.db import session_scope
from shared.events.catalogue import decode_event
from shared.events.envelope import Envelope, Source
from shared.events.internal import (
    AckAction,
    AlertAckPayload,
    CaseState,
    ChildMerged,
    ChildMergedPayload,
    Escalation,
)
from shared.events.vocab import SocialCareStatus
from shared.school_calendar import LONDON, CalendarRegistry
from tests.support.escalation import LA, ack, child_fact, sqlite_store, transition

TOPIC = "test-cme.escalations.v1"


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    yield from sqlite_store(tmp_path)


@pytest.fixture(scope="module")
def deps() -> Deps:
    return Deps(RuleSet.load(), CalendarRegistry(), TOPIC)


def apply(engine: Engine, deps: Deps, event: Envelope, now: datetime) -> str:
    with session_scope(engine) as session:
        if not mark_processed(session, event.event_id, "t"):
            return "duplicate"
        if event.event_type == "case-transition":
            return handle_transition(session, deps, event, now).action  # type: ignore[arg-type]
        if event.event_type == "child-fact":
            return handle_child_fact(session, deps, event, now).action  # type: ignore[arg-type]
        if event.event_type == "child-merged":
            return handle_merge(session, deps, event, now).action  # type: ignore[arg-type]
        return handle_ack(session, deps, event, now).action  # type: ignore[arg-type]


def run_timer(engine: Engine, deps: Deps, now: datetime) -> int:
    fired = 0
    while True:
        with Session(engine) as session:
            ids = due_deadline_ids(session, now, 50)
        if not ids:
            return fired
        for deadline_id in ids:
            with session_scope(engine) as session:
                fired += fire_deadline(session, deps, deadline_id, now).action == "fired"


def published(engine: Engine) -> list[Escalation]:
    with Session(engine) as session:
        rows = session.exec(select(EscalationOutbox).order_by(col(EscalationOutbox.id))).all()
    events = [decode_event(r.value) for r in rows]
    return [e for e in events if isinstance(e, Escalation)]


def summary(events: list[Escalation]) -> list[tuple[str, str, str, int]]:
    return [
        (e.payload.rule_id, e.payload.action.value, e.payload.level.value, e.payload.step_index)
        for e in events
    ]


def pending(engine: Engine) -> int:
    with Session(engine) as session:
        return len(
            session.exec(select(EscalationDeadline.id).where(EscalationDeadline.status == "pending")).all()
        )


def test_missing_child_steps_up_until_acknowledged(engine: Engine, deps: Deps) -> None:
    child = uuid.uuid4()
    missing = transition(child, CaseState.WHEREABOUTS_UNKNOWN, utc(2025, 11, 3, 10, 0))
    assert apply(engine, deps, missing, utc(2025, 11, 3, 10, 0)) == "applied"
    assert run_timer(engine, deps, utc(2025, 11, 3, 9, 59)) == 0  # before the event time: nothing
    assert run_timer(engine, deps, utc(2025, 11, 3, 10, 0)) == 1
    assert summary(published(engine)) == [("whereabouts_unknown", "raised", "caseworker", 0)]
    raised = published(engine)[0]
    assert raised.payload.next_step_due_at == utc(2025, 11, 10, 23, 59, 59)
    assert raised.payload.case_state == CaseState.WHEREABOUTS_UNKNOWN
    # Not yet: the end of Mon 10 Nov is the 5th school day.
    assert run_timer(engine, deps, utc(2025, 11, 10, 23, 59)) == 0
    assert run_timer(engine, deps, utc(2025, 11, 11, 0, 0)) == 1
    assert summary(published(engine))[-1] == ("whereabouts_unknown", "stepped_up", "senior_cme_officer", 1)
    escalation_id = raised.payload.escalation_id
    assert apply(engine, deps, ack(escalation_id, child, 3, AckAction.ACKNOWLEDGED), utc(2025, 11, 11)) == (
        "ignored_not_alerted"
    )
    assert apply(engine, deps, ack(escalation_id, child, 1, AckAction.ACKNOWLEDGED), utc(2025, 11, 11)) == (
        "acknowledged"
    )
    # Acknowledged with no outcome: the ladder stops, and the case comes back to its caseworker every 10
    # school days from the acknowledgement (Tue 11 Nov): the end of Tue 25 Nov, then of Tue 9 Dec.
    assert pending(engine) == 1
    assert run_timer(engine, deps, utc(2026, 1, 1)) == 2
    reviews = published(engine)[2:]
    assert summary(reviews) == [("open_case_review", "raised", "caseworker", 0)] * 2
    assert [r.occurred_at for r in reviews] == [utc(2025, 11, 25, 23, 59, 59), utc(2025, 12, 9, 23, 59, 59)]
    assert all(r.payload.case_state == CaseState.WHEREABOUTS_UNKNOWN for r in reviews)


def test_resolution_cancels_and_tells_notify(engine: Engine, deps: Deps) -> None:
    child = uuid.uuid4()
    apply(
        engine,
        deps,
        transition(child, CaseState.WHEREABOUTS_UNKNOWN, utc(2025, 11, 3, 10)),
        utc(2025, 11, 3, 10),
    )
    run_timer(engine, deps, utc(2025, 11, 3, 10))
    located = transition(
        child, CaseState.IN_EDUCATION, utc(2025, 11, 5, 12), from_state=CaseState.WHEREABOUTS_UNKNOWN
    )
    assert apply(engine, deps, located, utc(2025, 11, 5, 12)) == "applied"
    assert summary(published(engine)) == [
        ("whereabouts_unknown", "raised", "caseworker", 0),
        ("whereabouts_unknown", "cancelled", "caseworker", 0),
    ]
    assert published(engine)[-1].payload.reason_code == "case_resolved:in_education"
    assert pending(engine) == 0
    assert run_timer(engine, deps, utc(2026, 1, 1)) == 0


def test_moving_on_cancels_only_rules_watching_the_old_state(engine: Engine, deps: Deps) -> None:
    child = uuid.uuid4()
    apply(
        engine,
        deps,
        transition(child, CaseState.MISSING_EDUCATION, utc(2025, 11, 3, 10)),
        utc(2025, 11, 3, 10),
    )
    exclusion = child_fact(child, "exclusion-issued", date(2025, 11, 3))
    assert apply(engine, deps, exclusion, utc(2025, 11, 3, 10)) == "applied"
    assert pending(engine) == 2  # missing_education_no_outcome + permanent_exclusion_no_provision
    moved = transition(
        child, CaseState.AWAITING_PROVISION, utc(2025, 11, 4, 9), from_state=CaseState.MISSING_EDUCATION
    )
    apply(engine, deps, moved, utc(2025, 11, 4, 9))
    with Session(engine) as session:
        rows = session.exec(select(EscalationDeadline).where(EscalationDeadline.status == "pending")).all()
    assert sorted(r.rule_id for r in rows) == [
        "awaiting_provision_20_days",
        "permanent_exclusion_no_provision",
    ]
    # Excluded Mon 3 Nov (day 1): day 6 ends Mon 10 Nov; nothing has been published yet (no alert was due).
    assert run_timer(engine, deps, utc(2025, 11, 10, 23, 59)) == 0
    assert run_timer(engine, deps, utc(2025, 11, 11, 0, 0)) == 1
    assert summary(published(engine)) == [("permanent_exclusion_no_provision", "raised", "caseworker", 0)]
    assert published(engine)[0].payload.case_state == CaseState.AWAITING_PROVISION


def test_each_deadline_fires_exactly_once_and_redeliveries_are_no_ops(engine: Engine, deps: Deps) -> None:
    child = uuid.uuid4()
    missing = transition(child, CaseState.WHEREABOUTS_UNKNOWN, utc(2025, 11, 3, 10))
    apply(engine, deps, missing, utc(2025, 11, 3, 10))
    assert apply(engine, deps, missing, utc(2025, 11, 3, 10)) == "duplicate"
    with Session(engine) as session:
        (deadline_id,) = due_deadline_ids(session, utc(2025, 11, 3, 10), 10)
    with session_scope(engine) as session:
        assert fire_deadline(session, deps, deadline_id, utc(2025, 11, 3, 10)).action == "fired"
    with session_scope(engine) as session:
        assert fire_deadline(session, deps, deadline_id, utc(2025, 11, 3, 10)).action == "already_fired"
    # The same state again (e.g. a flag changed) does not start a second escalation for the same rule.
    again = transition(
        child, CaseState.WHEREABOUTS_UNKNOWN, utc(2025, 11, 4, 10), from_state=CaseState.WHEREABOUTS_UNKNOWN
    )
    apply(engine, deps, again, utc(2025, 11, 4, 10))
    run_timer(engine, deps, utc(2025, 11, 4, 10))
    assert summary(published(engine)) == [("whereabouts_unknown", "raised", "caseworker", 0)]


def test_stale_transitions_are_ignored(engine: Engine, deps: Deps) -> None:
    child = uuid.uuid4()
    apply(engine, deps, transition(child, CaseState.IN_EDUCATION, utc(2025, 11, 5)), utc(2025, 11, 5))
    late = transition(child, CaseState.WHEREABOUTS_UNKNOWN, utc(2025, 11, 3))
    assert apply(engine, deps, late, utc(2025, 11, 6)) == "stale"
    assert pending(engine) == 0


def test_social_care_child_missing_alerts_each_level_once(engine: Engine, deps: Deps) -> None:
    child = uuid.uuid4()
    missing = transition(
        child, CaseState.WHEREABOUTS_UNKNOWN, utc(2025, 11, 7, 16),
        social_care=SocialCareStatus.CHILD_PROTECTION_PLAN, has_social_worker=True,
    )  # fmt: skip
    apply(engine, deps, missing, utc(2025, 11, 7, 16))
    run_timer(engine, deps, utc(2025, 11, 7, 16))
    assert summary(published(engine)) == [
        ("whereabouts_unknown", "raised", "caseworker", 0),
        ("known_to_social_care_whereabouts_unknown", "raised", "childrens_social_care", 0),
        # its caseworker step is not sent again: the caseworker was alerted for this case at this instant
    ]
    run_timer(engine, deps, utc(2025, 11, 8, 16))
    assert summary(published(engine))[-1] == (
        "known_to_social_care_whereabouts_unknown",
        "stepped_up",
        "police",
        2,
    )


def test_concern_alerts_police_and_social_care_at_once(engine: Engine, deps: Deps) -> None:
    child = uuid.uuid4()
    missing = transition(
        child, CaseState.WHEREABOUTS_UNKNOWN, utc(2025, 11, 3, 10), safeguarding_concern=True
    )
    apply(engine, deps, missing, utc(2025, 11, 3, 10))
    run_timer(engine, deps, utc(2025, 11, 3, 10))
    levels = [(rule, level) for rule, _, level, _ in summary(published(engine))]
    assert ("whereabouts_unknown_with_concerns", "police") in levels
    assert ("whereabouts_unknown_with_concerns", "childrens_social_care") in levels
    assert levels.count(("whereabouts_unknown", "caseworker")) == 1


def test_running_escalation_keeps_its_rule_version(engine: Engine, deps: Deps, tmp_path: Path) -> None:
    child = uuid.uuid4()
    apply(
        engine,
        deps,
        transition(child, CaseState.WHEREABOUTS_UNKNOWN, utc(2025, 11, 3, 10)),
        utc(2025, 11, 3, 10),
    )
    run_timer(engine, deps, utc(2025, 11, 3, 10))
    # The LA now shortens the senior officer step to 1 school day: the running escalation keeps 5.
    raw = next(
        r for r in yaml.safe_load(DEFAULT_RULES_PATH.read_text())["rules"] if r["id"] == "whereabouts_unknown"
    )
    raw["version"], raw["ladder"][1]["delay"]["amount"] = 2, 1
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / f"{LA}.yaml").write_text(yaml.safe_dump({"replace": [raw]}))
    changed = Deps(RuleSet.load(overrides_dir=tmp_path / "rules"), CalendarRegistry(), TOPIC)
    assert run_timer(engine, changed, utc(2025, 11, 5, 0, 0)) == 0
    assert run_timer(engine, changed, utc(2025, 11, 11, 0, 0)) == 1
    events = published(engine)
    assert {e.payload.rule_fingerprint for e in events} == {
        deps.rules.rule(LA, "whereabouts_unknown").fingerprint
    }
    # A new case under the new version uses it.
    other = uuid.uuid4()
    apply(
        engine,
        changed,
        transition(other, CaseState.WHEREABOUTS_UNKNOWN, utc(2025, 11, 3, 10)),
        utc(2025, 11, 3, 10),
    )
    run_timer(engine, changed, utc(2025, 11, 5, 0, 0))
    assert published(engine)[-1].payload.child_id == other
    assert published(engine)[-1].payload.step_index == 1


def test_ack_from_another_la_is_ignored_and_resolve_closes(engine: Engine, deps: Deps) -> None:
    child = uuid.uuid4()
    apply(
        engine,
        deps,
        transition(child, CaseState.WHEREABOUTS_UNKNOWN, utc(2025, 11, 3, 10)),
        utc(2025, 11, 3, 10),
    )
    run_timer(engine, deps, utc(2025, 11, 3, 10))
    escalation_id = published(engine)[0].payload.escalation_id
    foreign = ack(escalation_id, child, 0, AckAction.ACKNOWLEDGED, la="202")
    assert apply(engine, deps, foreign, utc(2025, 11, 4)) == "ignored_unknown"
    assert pending(engine) == 1
    assert (
        apply(engine, deps, ack(escalation_id, child, 0, AckAction.RESOLVED), utc(2025, 11, 4)) == "resolved"
    )
    assert summary(published(engine))[-1] == ("whereabouts_unknown", "cancelled", "caseworker", 0)
    assert published(engine)[-1].payload.reason_code == "resolved_by_user"
    assert pending(engine) == 1  # resolving closes the escalation, not the case: its review is pending


def test_absence_retraction_cancels_its_clock(engine: Engine, deps: Deps) -> None:
    child = uuid.uuid4()
    crossing = child_fact(child, "absence-threshold-crossed", date(2025, 11, 3))
    apply(engine, deps, crossing, utc(2025, 11, 3, 10))
    assert pending(engine) == 1
    retraction = child_fact(
        child,
        "absence-threshold-retracted",
        date(2025, 11, 3),
        retracts_event_id=str(crossing.payload.fact["event_id"]),
    )
    assert apply(engine, deps, retraction, utc(2025, 11, 3, 11)) == "retraction"
    with Session(engine) as session:
        statuses = session.exec(select(EscalationDeadline.status)).all()
    assert statuses == [DeadlineStatus.CANCELLED]


def test_a_second_exclusion_after_an_acknowledged_one_starts_afresh(engine: Engine, deps: Deps) -> None:
    child = uuid.uuid4()
    apply(engine, deps, child_fact(child, "exclusion-issued", date(2025, 11, 3)), utc(2025, 11, 3, 10))
    run_timer(engine, deps, utc(2025, 11, 11))
    first = published(engine)[0].payload.escalation_id
    assert apply(
        engine, deps, child_fact(child, "exclusion-issued", date(2025, 11, 12)), utc(2025, 11, 12)
    ) == ("applied")
    assert pending(engine) == 1  # the first escalation's senior step only: the new exclusion waits its turn
    apply(engine, deps, ack(first, child, 0, AckAction.ACKNOWLEDGED), utc(2025, 11, 12))
    apply(engine, deps, child_fact(child, "exclusion-issued", date(2026, 1, 6)), utc(2026, 1, 6))
    # Excluded Tue 6 Jan 2026 (day 1): day 6 is Tue 13 Jan.
    run_timer(engine, deps, utc(2026, 1, 14))
    events = published(engine)
    assert summary(events)[-1] == ("permanent_exclusion_no_provision", "raised", "caseworker", 0)
    assert events[-1].occurred_at == utc(2026, 1, 13, 23, 59, 59)
    assert events[-1].payload.escalation_id != first


def test_a_clock_started_before_the_case_is_known_names_trackings_case(engine: Engine, deps: Deps) -> None:
    # child-facts and case-transitions are separate topics: the fact can win the race. The escalation must
    # still name the case tracking opens (one id per child and LA), or the alert links to no case.
    child = uuid.uuid4()
    apply(engine, deps, child_fact(child, "exclusion-issued", date(2025, 11, 3)), utc(2025, 11, 3, 10))
    run_timer(engine, deps, utc(2025, 11, 11))
    [raised] = published(engine)
    assert str(raised.payload.case_id) == case_id_for(str(child), LA)


def test_an_event_rule_names_the_case_state_tracking_gave_never_a_guess(engine: Engine, deps: Deps) -> None:
    # Read before any transition of the child: escalation does not know the case's state (tracking opens no
    # case at all for a sickness notice or a fair access referral), so the alert says so: no state.
    first, second = uuid.uuid4(), uuid.uuid4()
    apply(engine, deps, child_fact(first, "exclusion-issued", date(2025, 11, 3)), utc(2025, 11, 3, 10))
    # Tracking's transition read first: its state, whatever the fact was.
    opened = transition(second, CaseState.ON_ROLL_AT_RISK, utc(2025, 11, 3, 9))
    apply(engine, deps, opened, utc(2025, 11, 3, 10))
    apply(engine, deps, child_fact(second, "exclusion-issued", date(2025, 11, 3)), utc(2025, 11, 3, 10))
    run_timer(engine, deps, utc(2025, 11, 11))
    states = {
        e.payload.child_id: e.payload.case_state
        for e in published(engine)
        if e.payload.rule_id == "permanent_exclusion_no_provision"
    }
    assert states == {first: None, second: CaseState.ON_ROLL_AT_RISK}


def _merge(survivor: uuid.UUID, merged: uuid.UUID, facts: list[dict[str, object]]) -> ChildMerged:
    return ChildMerged(
        event_id=uuid.uuid4(),
        occurred_at=utc(2025, 11, 4, 9),
        source=Source(system="cme-tracking", la_code=LA),
        payload=ChildMergedPayload(
            surviving_child_id=survivor, merged_child_id=merged, la_code=LA, decided_by="officer", facts=facts
        ),
    )


def test_a_merged_childs_clocks_stop_and_a_restored_case_starts_them_again(
    engine: Engine, deps: Deps
) -> None:
    survivor, merged = uuid.uuid4(), uuid.uuid4()
    apply(
        engine,
        deps,
        transition(merged, CaseState.WHEREABOUTS_UNKNOWN, utc(2025, 11, 3, 10)),
        utc(2025, 11, 3),
    )
    run_timer(engine, deps, utc(2025, 11, 3, 10))
    assert summary(published(engine)) == [("whereabouts_unknown", "raised", "caseworker", 0)]
    # Tracking's forward of the merge to the survivor carries facts and stops nothing.
    assert apply(engine, deps, _merge(survivor, merged, [{"x": 1}]), utc(2025, 11, 4, 9)) == "not_watched"
    assert pending(engine) == 1
    assert apply(engine, deps, _merge(survivor, merged, []), utc(2025, 11, 4, 9)) == "merged"
    assert summary(published(engine))[-1] == ("whereabouts_unknown", "cancelled", "caseworker", 0)
    assert published(engine)[-1].payload.reason_code == "merged_into_another_child"
    assert pending(engine) == 0
    assert run_timer(engine, deps, utc(2026, 1, 1)) == 0
    # Undone: tracking re-opens the merged child's case as its own, and its clock runs again.
    reopened = transition(merged, CaseState.WHEREABOUTS_UNKNOWN, utc(2025, 11, 5, 9))
    assert apply(engine, deps, reopened, utc(2025, 11, 5, 9)) == "applied"
    assert run_timer(engine, deps, utc(2025, 11, 5, 9)) == 1
    assert summary(published(engine))[-1] == ("whereabouts_unknown", "raised", "caseworker", 0)


def test_a_social_worker_allocated_while_missing_starts_only_the_social_care_rule(
    engine: Engine, deps: Deps
) -> None:
    child = uuid.uuid4()
    apply(
        engine, deps, transition(child, CaseState.WHEREABOUTS_UNKNOWN, utc(2025, 11, 3, 10)), utc(2025, 11, 3)
    )
    run_timer(engine, deps, utc(2025, 11, 3, 10))
    [raised] = published(engine)
    apply(engine, deps, ack(raised.payload.escalation_id, child, 0, AckAction.RESOLVED), utc(2025, 11, 3, 11))
    # Still missing; children's social care now holds a plan for the child.
    context = transition(
        child, CaseState.WHEREABOUTS_UNKNOWN, utc(2025, 11, 7, 16), from_state=CaseState.WHEREABOUTS_UNKNOWN,
        social_care=SocialCareStatus.CHILD_PROTECTION_PLAN, has_social_worker=True,
    )  # fmt: skip
    assert apply(engine, deps, context, utc(2025, 11, 7, 16)) == "applied"
    run_timer(engine, deps, utc(2025, 11, 7, 16))
    raised_now = [s for s in summary(published(engine)) if s[1] == "raised"]
    # The resolved whereabouts rule does not start again; the social care one does.
    assert [r for r, *_ in raised_now] == ["whereabouts_unknown", "known_to_social_care_whereabouts_unknown"]
    # The same context again (a redelivery under a new id) starts nothing more.
    again = transition(
        child, CaseState.WHEREABOUTS_UNKNOWN, utc(2025, 11, 7, 17), from_state=CaseState.WHEREABOUTS_UNKNOWN,
        social_care=SocialCareStatus.CHILD_PROTECTION_PLAN, has_social_worker=True,
    )  # fmt: skip
    apply(engine, deps, again, utc(2025, 11, 7, 17))
    assert pending(engine) == 2  # the social care escalation's next step, and the resolved one's review


# -- the sixth-day clock: day 1 is the exclusion's first school day ------------------------------------------


@pytest.mark.parametrize(
    ("start", "day_six"),
    [
        # Mon 27 Oct 2025 is in half term: day 1 is Mon 3 Nov, day 6 Mon 10 Nov (not Fri 7 Nov).
        (date(2025, 10, 27), date(2025, 11, 10)),
        # Sat 8 Nov 2025: day 1 is Mon 10 Nov, day 6 Mon 17 Nov.
        (date(2025, 11, 8), date(2025, 11, 17)),
        # Mon 4 May 2026 is the early May bank holiday: day 1 Tue 5 May, day 6 Tue 12 May.
        (date(2026, 5, 4), date(2026, 5, 12)),
        # A school day: Wed 11 Feb 2026 is day 1; half term 16-20 Feb; day 6 is Wed 25 Feb.
        (date(2026, 2, 11), date(2026, 2, 25)),
    ],
)
def test_sixth_day_counts_from_the_first_school_day_of_the_exclusion(
    engine: Engine, deps: Deps, start: date, day_six: date
) -> None:
    child = uuid.uuid4()
    assert apply(engine, deps, child_fact(child, "exclusion-issued", start), utc(2025, 10, 1)) == "applied"
    end_of_day_six = datetime.combine(day_six, time(23, 59, 59), tzinfo=LONDON).astimezone(UTC)
    assert run_timer(engine, deps, end_of_day_six - timedelta(seconds=1)) == 0
    assert run_timer(engine, deps, end_of_day_six) == 1
    [raised] = published(engine)
    assert (raised.payload.rule_id, raised.occurred_at) == (
        "permanent_exclusion_no_provision",
        end_of_day_six,
    )


def test_a_ground_o_deletion_starts_the_sixth_day_clock(engine: Engine, deps: Deps) -> None:
    child = uuid.uuid4()
    deleted = child_fact(
        child, "pupil-left-roll", date(2025, 11, 12), deletion_ground="o", enquiries_completed=False
    )
    assert apply(engine, deps, deleted, utc(2025, 11, 12, 10)) == "applied"
    # Left on Wed 12 Nov (day 1): day 6 is Wed 19 Nov.
    assert run_timer(engine, deps, utc(2025, 11, 19, 23, 59)) == 0
    assert run_timer(engine, deps, utc(2025, 11, 20)) == 1
    assert summary(published(engine)) == [("permanent_exclusion_no_provision", "raised", "caseworker", 0)]
    assert published(engine)[0].occurred_at == utc(2025, 11, 19, 23, 59, 59)


def test_a_ground_o_deletion_after_the_exclusion_starts_no_second_clock(engine: Engine, deps: Deps) -> None:
    child = uuid.uuid4()
    apply(engine, deps, child_fact(child, "exclusion-issued", date(2025, 11, 3)), utc(2025, 11, 3, 10))
    run_timer(engine, deps, utc(2025, 11, 11))
    first = published(engine)[0].payload.escalation_id
    apply(engine, deps, ack(first, child, 0, AckAction.ACKNOWLEDGED), utc(2025, 11, 11, 9))
    deleted = child_fact(child, "pupil-left-roll", date(2025, 12, 1), deletion_ground="o")
    assert apply(engine, deps, deleted, utc(2025, 12, 1, 10)) == "applied"
    assert pending(engine) == 0  # acknowledged and still being worked on: the deletion repeats the duty
    assert run_timer(engine, deps, utc(2026, 1, 31)) == 0


def test_only_a_resolution_stops_the_sixth_day_clock(engine: Engine, deps: Deps) -> None:
    child = uuid.uuid4()
    apply(engine, deps, child_fact(child, "exclusion-issued", date(2025, 11, 3)), utc(2025, 11, 3, 10))
    # Offered a place, and missing again: the exclusion's clock keeps running through both.
    for state, at in (
        (CaseState.PLACE_OFFERED, utc(2025, 11, 5)),
        (CaseState.MISSING_EDUCATION, utc(2025, 11, 6)),
    ):
        apply(engine, deps, transition(child, state, at), at)
    assert run_timer(engine, deps, utc(2025, 11, 11)) == 1
    assert summary(published(engine))[0][:2] == ("permanent_exclusion_no_provision", "raised")


# -- joint enquiries for grounds (h) and (i) -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("ground", "completed", "flagged"), [("h", False, True), ("i", False, True), ("i", True, False)]
)
def test_deletion_without_joint_enquiries_is_flagged_at_once(
    engine: Engine, deps: Deps, ground: str, completed: bool, flagged: bool
) -> None:
    child = uuid.uuid4()
    deleted = child_fact(
        child, "pupil-left-roll", date(2025, 11, 7), deletion_ground=ground, enquiries_completed=completed
    )
    apply(engine, deps, deleted, utc(2025, 11, 7, 9, 30))
    run_timer(engine, deps, utc(2025, 11, 7, 9, 30))
    expected = [("deletion_without_joint_enquiries", "raised", "caseworker", 0)] if flagged else []
    assert summary(published(engine)) == expected


# -- one context: flags on the event itself ------------------------------------------------------------------


def test_flags_on_the_exclusion_itself_reach_event_rules(engine: Engine, deps: Deps, tmp_path: Path) -> None:
    overrides = tmp_path / "rules"
    overrides.mkdir()
    (overrides / f"{LA}.yaml").write_text(
        yaml.safe_dump(
            {
                "add": [
                    {
                        "id": "looked_after_excluded",
                        "version": 1,
                        "description": "A looked-after child excluded: the virtual school head at once.",
                        "citation": "Local practice: the virtual school is told of any exclusion.",
                        "watches": {"event": "exclusion-issued"},
                        "clock": {"unit": "hours", "amount": 0},
                        "immediate": True,
                        "conditions": [{"social_care_status_in": ["looked_after"]}],
                        "ladder": [
                            {"level": "childrens_social_care", "delay": {"unit": "hours", "amount": 0}}
                        ],
                    }
                ]
            }
        )
    )
    local = Deps(RuleSet.load(DEFAULT_RULES_PATH, overrides), CalendarRegistry(), TOPIC)
    child = uuid.uuid4()
    kid = sample_event_dict("exclusion-issued")["payload"]["child"] | {"vulnerabilities": ["looked_after"]}
    excluded = child_fact(child, "exclusion-issued", date(2025, 11, 3), child=kid)
    apply(engine, local, excluded, utc(2025, 11, 3, 10))
    run_timer(engine, local, utc(2025, 11, 3, 10))
    assert ("looked_after_excluded", "raised", "childrens_social_care", 0) in summary(published(engine))


# -- the sickness notice ------------------------------------------------------------------------------------


def test_a_sickness_notice_alerts_the_caseworker_on_the_next_school_day_close(
    engine: Engine, deps: Deps
) -> None:
    child = uuid.uuid4()
    # Reported on Sat 8 Nov 2025: the caseworker at the end of Mon 10 Nov, not on the weekend.
    notice = child_fact(child, "sickness-absence-notified", date(2025, 11, 8), expected_school_days=20)
    assert apply(engine, deps, notice, utc(2025, 11, 8, 9, 30)) == "applied"
    assert run_timer(engine, deps, utc(2025, 11, 10, 23, 59)) == 0
    assert run_timer(engine, deps, utc(2025, 11, 11)) == 1
    assert summary(published(engine)) == [("sickness_15_days_provision", "raised", "caseworker", 0)]


# -- the fair access clock: from the agreement to consider the child to a place allocated -------------------


def test_fair_access_clock_runs_from_the_referral_and_a_place_offered_ends_it(
    engine: Engine, deps: Deps
) -> None:
    placed, waiting = uuid.uuid4(), uuid.uuid4()
    for child in (placed, waiting):
        referred = child_fact(child, "fair-access-referred", date(2025, 11, 3))
        assert apply(engine, deps, referred, utc(2025, 11, 3, 10)) == "applied"
    # A place is offered for one child on Wed 26 Nov, before the 20th school day (Mon 1 Dec): its clock ends.
    offered = child_fact(placed, "place-offered", date(2025, 11, 26))
    assert apply(engine, deps, offered, utc(2025, 11, 26, 10)) == "ended"
    assert run_timer(engine, deps, utc(2025, 12, 1, 23, 59)) == 0
    assert run_timer(engine, deps, utc(2025, 12, 2)) == 1
    [raised] = published(engine)
    assert raised.payload.child_id == waiting and raised.payload.rule_id == "fair_access_place_20_days"
    assert raised.occurred_at == utc(2025, 12, 1, 23, 59, 59)


# --- issue 14: reviews of open cases, resolve reasons, home education and child protection ---------------


def test_resolving_needs_a_reason_keeps_the_case_and_the_review_comes_back(
    engine: Engine, deps: Deps
) -> None:
    with pytest.raises(ValueError, match="resolution_reason"):
        AlertAckPayload(
            escalation_id=uuid.uuid4(), child_id=uuid.uuid4(), la_code=LA, step_index=0,
            action=AckAction.RESOLVED, by_user="officer-17",
        )  # fmt: skip
    child = uuid.uuid4()
    # Left for a named school on Mon 3 Nov 2025 and never registered: the caseworker at the end of Mon 17 Nov.
    apply(
        engine,
        deps,
        transition(child, CaseState.TRANSFER_PENDING, utc(2025, 11, 3, 10)),
        utc(2025, 11, 3, 10),
    )
    assert run_timer(engine, deps, utc(2025, 11, 17, 23, 59)) == 0
    assert run_timer(engine, deps, utc(2025, 11, 18, 9)) == 1
    raised = published(engine)[0]
    assert summary([raised]) == [("transfer_not_registered", "raised", "caseworker", 0)]
    resolved = ack(raised.payload.escalation_id, child, 0, AckAction.RESOLVED)
    assert apply(engine, deps, resolved, utc(2025, 11, 18, 9)) == "resolved"
    with Session(engine) as session:
        esc = session.get(EscalationRecord, str(raised.payload.escalation_id))
        assert esc is not None and esc.close_reason == "resolved:enquiries_continuing"
        case = session.get(EscalationCase, (str(child), LA))
        assert case is not None and case.state == CaseState.TRANSFER_PENDING  # resolving closes no case
    # 10 school days after Tue 18 Nov: the end of Tue 2 Dec.
    assert run_timer(engine, deps, utc(2025, 12, 2, 23, 59)) == 0
    assert run_timer(engine, deps, utc(2025, 12, 3, 9)) == 1
    assert summary(published(engine))[-1] == ("open_case_review", "raised", "caseworker", 0)
    # The child registers: the case is resolved with an outcome and the reviews stop.
    registered = transition(
        child, CaseState.IN_EDUCATION, utc(2025, 12, 4, 9), from_state=CaseState.TRANSFER_PENDING
    )
    apply(engine, deps, registered, utc(2025, 12, 4, 9))
    assert pending(engine) == 0
    assert run_timer(engine, deps, utc(2026, 3, 1)) == 0


def test_a_review_stops_when_the_case_moves_to_another_state(engine: Engine, deps: Deps) -> None:
    child = uuid.uuid4()
    apply(
        engine,
        deps,
        transition(child, CaseState.AWAITING_LA_CONFIRMATION, utc(2025, 11, 3, 10)),
        utc(2025, 11, 3, 10),
    )
    assert run_timer(engine, deps, utc(2025, 11, 3, 10)) == 1  # the task to contact the other LA, at once
    task = published(engine)[0]
    assert summary([task]) == [("handover_outside_deployment", "raised", "caseworker", 0)]
    apply(
        engine, deps, ack(task.payload.escalation_id, child, 0, AckAction.ACKNOWLEDGED), utc(2025, 11, 4, 9)
    )
    assert pending(engine) == 1  # the review
    moved = transition(
        child,
        CaseState.WHEREABOUTS_UNKNOWN,
        utc(2025, 11, 6, 9),
        from_state=CaseState.AWAITING_LA_CONFIRMATION,
    )
    apply(engine, deps, moved, utc(2025, 11, 6, 9))
    with Session(engine) as session:
        rules = session.exec(
            select(EscalationDeadline.rule_id).where(EscalationDeadline.status == DeadlineStatus.PENDING)
        ).all()
    assert "open_case_review" not in rules  # the new state's own rules apply instead


@pytest.mark.parametrize(
    ("notice_type", "rule_id"),
    [
        ("home-education-notified", "home_education_child_protection"),
        ("not-in-school-notice", "not_in_school_notice_child_protection"),  # a parent's notice (s.436D)
    ],
)
@pytest.mark.parametrize("flagged_on_the_fact", [True, False])
def test_home_education_for_a_child_under_child_protection_alerts_social_care_at_once(
    engine: Engine, deps: Deps, flagged_on_the_fact: bool, notice_type: str, rule_id: str
) -> None:
    child = uuid.uuid4()
    at = utc(2025, 11, 7, 16)
    if not flagged_on_the_fact:  # tracking's transition carried the status before the notice arrived
        apply(
            engine, deps,
            transition(child, CaseState.ON_ROLL_AT_RISK, at - timedelta(days=3),
                       social_care=SocialCareStatus.CHILD_PROTECTION_PLAN, has_social_worker=True),
            at,
        )  # fmt: skip
    notice = child_fact(child, notice_type, at.date())
    if flagged_on_the_fact:
        notice.payload.fact["payload"]["child"]["vulnerabilities"] = ["child_protection_plan"]  # type: ignore[index]
    assert rule_id in started_rules(engine, deps, notice, at)
    assert run_timer(engine, deps, at) >= 1
    raised = [e for e in published(engine) if e.payload.rule_id == rule_id]
    assert summary(raised) == [
        (rule_id, "raised", "childrens_social_care", 0),
        (rule_id, "stepped_up", "caseworker", 1),
    ]


def test_a_register_review_sets_the_next_review_like_a_review_date(engine: Engine, deps: Deps) -> None:
    child = uuid.uuid4()
    apply(
        engine,
        deps,
        transition(child, CaseState.ELECTIVELY_HOME_EDUCATED, utc(2025, 11, 3, 10)),
        utc(2025, 11, 3, 10),
    )
    review = child_fact(child, "register-entry-recorded", date(2025, 11, 4), review_on="2026-01-12")
    assert started_rules(engine, deps, review, utc(2025, 11, 4, 10)) == ["review_date_due"]
    assert run_timer(engine, deps, utc(2026, 1, 12, 23, 59)) == 0
    assert run_timer(engine, deps, utc(2026, 1, 13, 0, 0)) == 1


@pytest.mark.parametrize("status", ["child_protection_plan", "child_protection_enquiry"])
def test_a_child_protection_status_learnt_with_no_case_open_still_routes_the_notice(
    engine: Engine, deps: Deps, status: str
) -> None:
    """The status arrives (Mon 3 Nov 2025) while the child has no case (tracking publishes no transition for
    it); the home-education notice of Fri 7 Nov carries no flag and reaches escalation before tracking's
    transition: the status escalation remembers per child still sends it to social care at once."""
    child = uuid.uuid4()
    change = child_fact(child, "social-care-status-changed", date(2025, 11, 3), status=status,
                        has_social_worker=True)  # fmt: skip
    assert apply(engine, deps, change, utc(2025, 11, 3, 10)) == "not_watched"
    at = utc(2025, 11, 7, 16)
    notice = child_fact(child, "home-education-notified", at.date())
    assert "home_education_child_protection" in started_rules(engine, deps, notice, at)
    assert run_timer(engine, deps, at) >= 1
    raised = [e for e in published(engine) if e.payload.rule_id == "home_education_child_protection"]
    assert summary(raised)[0] == ("home_education_child_protection", "raised", "childrens_social_care", 0)
    # A later status event ending the plan is remembered too: a new notice is not routed to social care.
    ended = child_fact(child, "social-care-status-changed", date(2025, 11, 10), status="none",
                       has_social_worker=False)  # fmt: skip
    apply(engine, deps, ended, utc(2025, 11, 10, 10))
    again = child_fact(child, "home-education-notified", date(2025, 11, 11))
    assert "home_education_child_protection" not in started_rules(engine, deps, again, utc(2025, 11, 11, 16))


def test_a_review_date_alerts_on_that_school_day(engine: Engine, deps: Deps) -> None:
    child = uuid.uuid4()
    apply(
        engine,
        deps,
        transition(child, CaseState.ELECTIVELY_HOME_EDUCATED, utc(2025, 11, 3, 10)),
        utc(2025, 11, 3, 10),
    )
    review = child_fact(child, "review-date-set", date(2025, 11, 4), review_on="2026-01-12")
    assert started_rules(engine, deps, review, utc(2025, 11, 4, 10)) == ["review_date_due"]
    assert run_timer(engine, deps, utc(2026, 1, 12, 23, 59)) == 0
    assert run_timer(engine, deps, utc(2026, 1, 13, 0, 0)) == 1
    assert summary(published(engine)) == [("review_date_due", "raised", "caseworker", 0)]
    assert published(engine)[0].payload.case_state == CaseState.ELECTIVELY_HOME_EDUCATED


def started_rules(engine: Engine, deps: Deps, event: Envelope, now: datetime) -> list[str]:
    with session_scope(engine) as session:
        assert mark_processed(session, event.event_id, "t")
        return handle_child_fact(session, deps, event, now).started  # type: ignore[arg-type]


def test_fifteen_sick_days_without_the_notice_start_the_same_duty_once(engine: Engine, deps: Deps) -> None:
    noticed, silent = uuid.uuid4(), uuid.uuid4()
    notice = child_fact(noticed, "sickness-absence-notified", date(2025, 11, 3), expected_school_days=20)
    apply(engine, deps, notice, utc(2025, 11, 3, 9, 30))
    run_timer(engine, deps, utc(2025, 11, 4))
    first = published(engine)[0].payload.escalation_id
    apply(engine, deps, ack(first, noticed, 0, AckAction.ACKNOWLEDGED), utc(2025, 11, 4, 9))
    for child in (noticed, silent):  # the attendance stream: 15 school days missed through sickness
        crossed = child_fact(
            child, "absence-threshold-crossed", date(2025, 11, 24), rule="sickness_15_days", school_days=15,
            first_absent_date="2025-11-03",
        )  # fmt: skip
        apply(engine, deps, crossed, utc(2025, 11, 24, 9, 30))
    run_timer(engine, deps, utc(2025, 11, 25))
    raised = [e for e in published(engine) if e.payload.action == "raised"]
    # The school that gave notice is not alerted on again; the silent one is, as if it had given notice.
    assert [(e.payload.child_id, e.payload.rule_id) for e in raised] == [
        (noticed, "sickness_15_days_provision"),
        (silent, "sickness_15_days_provision"),
    ]
