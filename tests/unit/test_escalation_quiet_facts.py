"""Facts no rule watches (a school loading its roll) cost escalation's consumer next to nothing (issue 21),
and lose nothing: what such a fact says of the child is still remembered for a later fact or transition, a
fact a rule ends on still ends its clock, and a batch decides what its records decide one at a time (SQLite
here; ``tests/integration/test_escalation_quiet_facts_pg.py`` runs the same on PostgreSQL)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import bindparam, text
from sqlalchemy.engine import Engine

from devtools.samples import sample_event_dict
from devtools.synthetic import generate
from services.escalation.app import MIGRATIONS, load_deps
from services.escalation.child_facts import handle_child_fact
from services.escalation.settings import EscalationSettings
from services.escalation.timer import decide_due
from services.escalation.timesource import SimulatedTime
from services.escalation.transitions import handle_transition
from services.escalation.unit_of_work import Deps
from services.escalation.worker import EscalationWorker
from shared.consumer import Record
from shared.db import make_engine, migrate, session_scope
from shared.events.catalogue import decode_event, encode_event
from shared.events.envelope import Envelope, Source
from shared.events.internal import CaseState, CaseTransition, ChildFact, ChildFactPayload, MatchKind
from shared.events.vocab import SocialCareStatus
from shared.topics import CASE_TRANSITIONS, CHILD_EVENTS, TopicSpec
from tests.support.escalation import LA, child_fact, replay_of, shuffled_within_children, transition
from tests.support.statements import statements_sent

NOW = datetime(2026, 9, 1, tzinfo=UTC)  # the worker's now: after every fact here (a backlog being read)


@pytest.fixture
def new_database(tmp_path: Path) -> Callable[[], str]:
    """A fresh database's URL at each call (PostgreSQL in the integration twin of this module)."""
    names = iter(range(1000))
    return lambda: f"sqlite:///{tmp_path / f'esc-{next(names)}.db'}"


@pytest.fixture
def settings(new_database: Callable[[], str]) -> EscalationSettings:
    return EscalationSettings(topic_prefix="t-", database_url=new_database())


@pytest.fixture
def engine(settings: EscalationSettings) -> Iterator[Engine]:
    migrate(settings.database_url, MIGRATIONS, "escalation")
    eng = make_engine(settings.database_url)
    yield eng
    eng.dispose()


@pytest.fixture
def worker(settings: EscalationSettings, engine: Engine) -> EscalationWorker:
    return EscalationWorker(settings, engine, load_deps(settings), SimulatedTime(NOW))


class Batches:
    """Records as the consumer hands them over: per topic, offsets in order."""

    def __init__(self, settings: EscalationSettings) -> None:
        self.settings = settings
        self.offsets: dict[str, int] = {}

    def raw(self, spec: TopicSpec, value: bytes) -> Record:
        topic = spec.name(self.settings)
        offset = self.offsets.get(topic, 0)
        self.offsets[topic] = offset + 1
        return Record(topic, 0, offset, b"k", value)

    def of(self, items: Sequence[Envelope]) -> list[Record]:
        return [
            self.raw(CHILD_EVENTS if isinstance(item, ChildFact) else CASE_TRANSITIONS, encode_event(item))
            for item in items
        ]


def registered(child: uuid.UUID, on: date, flags: Sequence[str] = ()) -> ChildFact:
    """A pupil-registered fact (no rule watches it), with the child's vulnerability flags."""
    fact = sample_event_dict("pupil-registered", on=on, la_code=LA)
    fact["payload"]["child"]["vulnerabilities"] = list(flags)
    return ChildFact(
        event_id=uuid.uuid4(),
        occurred_at=datetime.fromisoformat(fact["occurred_at"]),
        source=Source(system="cme-tracking", la_code=LA),
        payload=ChildFactPayload(child_id=child, la_code=LA, match=MatchKind.EXACT, fact=fact),
    )


def roll(n: int, on: date) -> list[ChildFact]:
    return [registered(uuid.uuid4(), on) for _ in range(n)]


def remembered(engine: Engine, child: uuid.UUID) -> tuple[Any, ...] | None:
    with engine.connect() as conn:
        row = conn.execute(
            text(
                "SELECT has_social_worker, social_care_status, vulnerabilities, safeguarding_concern"
                " FROM escalation_children WHERE child_id = :c"
            ),
            {"c": str(child)},
        ).first()
    return None if row is None else tuple(row)


@pytest.mark.parametrize("known_before", [False, True], ids=["new_child", "known_child"])
def test_a_roll_fact_carrying_a_flag_is_remembered_for_a_later_notice(
    worker: EscalationWorker, settings: EscalationSettings, engine: Engine, known_before: bool
) -> None:
    """The flag rides on a fact no rule watches, in the middle of a roll load; the home-education notice that
    follows carries none and must still go to children's social care at once."""
    batches, child = Batches(settings), uuid.uuid4()
    if known_before:  # remembered with nothing to say, in an earlier batch
        assert [
            o.action for o in worker.handle_records(batches.of([registered(child, date(2025, 9, 3))]))
        ] == ["not_watched"]
        assert remembered(engine, child) == (False, "none", "", False)
    flagged = registered(child, date(2025, 11, 3), ["child_protection_plan", "sen_support"])
    load = [*roll(10, date(2025, 11, 3)), flagged, *roll(10, date(2025, 11, 3))]
    assert {o.action for o in worker.handle_records(batches.of(load))} == {"not_watched"}
    assert remembered(engine, child) == (False, "none", "child_protection_plan,sen_support", False)
    # A later fact that says nothing keeps what was learnt (flags only ever add).
    worker.handle_records(batches.of([registered(child, date(2025, 11, 4)), *roll(5, date(2025, 11, 4))]))
    assert remembered(engine, child) == (False, "none", "child_protection_plan,sen_support", False)
    notice = child_fact(child, "home-education-notified", date(2025, 11, 7))
    [outcome] = worker.handle_records(batches.of([notice]))
    assert "home_education_child_protection" in outcome.started


def test_a_fact_a_rule_ends_on_still_ends_its_clock_among_quiet_facts(
    worker: EscalationWorker, settings: EscalationSettings, engine: Engine
) -> None:
    """place-offered starts no clock (no rule watches it) but ends the fair access clock (ends_on)."""
    batches, child = Batches(settings), uuid.uuid4()
    referred = child_fact(child, "fair-access-referred", date(2025, 11, 3))
    assert worker.handle_records(batches.of([referred]))[0].started == ["fair_access_place_20_days"]
    offered = child_fact(child, "place-offered", date(2025, 11, 26))
    load = [*roll(5, date(2025, 11, 26)), offered, *roll(5, date(2025, 11, 26))]
    actions = [o.action for o in worker.handle_records(batches.of(load))]
    assert actions == ["not_watched"] * 5 + ["ended"] + ["not_watched"] * 5
    with engine.connect() as conn:
        ended = conn.execute(
            text("SELECT end_reason FROM escalation_deadlines WHERE child_id = :c"), {"c": str(child)}
        ).all()
    assert ended == [("ended_by:place-offered",)]


@pytest.mark.parametrize("first", ["fact", "transition"])
def test_a_notice_after_a_new_childs_transition_in_the_batch_reads_what_the_transition_said(
    worker: EscalationWorker, settings: EscalationSettings, engine: Engine, first: str
) -> None:
    """One batch about a new child, opening with its registration (the batch writes its row, nothing known)
    or with tracking's transition (the batch finds no row); the transition says the child is on a child
    protection plan; after another registration saying nothing, a notice of home education reads what the
    transition said, not the row as the batch first wrote or found it, and the row keeps it."""
    batches, child = Batches(settings), uuid.uuid4()
    on_plan = transition(
        child,
        CaseState.IN_EDUCATION,
        datetime(2025, 11, 3, 10, tzinfo=UTC),
        social_care=SocialCareStatus.CHILD_PROTECTION_PLAN,
        has_social_worker=True,
    )
    notice = child_fact(child, "home-education-notified", date(2025, 11, 7))
    opening = [registered(child, date(2025, 11, 3)), on_plan] if first == "fact" else [on_plan]
    load = [*opening, registered(child, date(2025, 11, 4)), notice]
    outcomes = worker.handle_records(batches.of(load))
    assert "home_education_child_protection" in outcomes[-1].started
    assert remembered(engine, child) == (True, "child_protection_plan", "", False)


@pytest.mark.parametrize("known_before", [False, True], ids=["new_children", "known_children"])
def test_quiet_facts_cost_no_statement_each(
    worker: EscalationWorker, settings: EscalationSettings, engine: Engine, known_before: bool
) -> None:
    """A batch of facts no rule watches, saying nothing new, costs the same statements for 5 facts as for 50:
    the batch's reads and writes, none per fact."""
    batches = Batches(settings)
    counts = []
    for n in (5, 50):
        load = roll(n, date(2025, 11, 3))
        if known_before:
            worker.handle_records(batches.of(load))
            load = [registered(f.payload.child_id, date(2025, 11, 4)) for f in load]
        with statements_sent(engine) as sent:
            assert {o.action for o in worker.handle_records(batches.of(load))} == {"not_watched"}
        counts.append(len(sent))
    assert counts[0] == counts[1], counts


def state(engine: Engine) -> list[list[tuple[Any, ...]]]:
    """What the records decided and remembered: clocks, escalations, per-child context, cases."""
    queries = [
        "SELECT child_id, rule_id, status, close_reason, ended_at FROM escalation_escalations"
        " ORDER BY child_id, rule_id, id",
        "SELECT child_id, rule_id, kind, status, due_at, end_reason, trigger_event_id"
        " FROM escalation_deadlines ORDER BY child_id, rule_id, due_at, kind, trigger_event_id",
        "SELECT child_id, has_social_worker, social_care_status, vulnerabilities, safeguarding_concern"
        " FROM escalation_children ORDER BY child_id",
        "SELECT child_id, state, vulnerabilities, safeguarding_concern, resolutions FROM escalation_cases"
        " ORDER BY child_id",
    ]
    with engine.connect() as conn:
        return [[tuple(r) for r in conn.execute(text(q))] for q in queries]


def reference(engine: Engine, deps: Deps, value: bytes, now: datetime) -> None:
    """One record in a transaction of its own through the units of work alone: no batch reads ahead."""
    item = decode_event(value)
    with session_scope(engine) as session:
        if isinstance(item, CaseTransition):
            handle_transition(session, deps, item, now)
        else:
            assert isinstance(item, ChildFact)
            handle_child_fact(session, deps, item, now)


def decide(engine: Engine, deps: Deps, now: datetime) -> None:
    """The timer, caught up with ``now``: every clock due by then decided (alerts raised, ladders stepped)."""
    while True:
        with session_scope(engine) as session:
            if not decide_due(session, deps, now, None, 50):
                return


@pytest.mark.parametrize("arrival", ["in_order", "shuffled"])
def test_a_year_in_batches_decides_what_each_record_alone_decides(
    settings: EscalationSettings, new_database: Callable[[], str], arrival: str
) -> None:
    """A synthetic LA's year as tracking publishes it (child facts and the transitions they cause; shuffled:
    each child's facts out of event-time order, so tracking re-folds histories), through the worker in
    batches of 200 records, and one record per transaction through the units of work alone, the timer
    deciding what is due after each 200 records in both: the same clocks, escalations, remembered context
    and cases. The batch's reads ahead (children, cases, children with nothing running) change nothing."""
    population = generate(las=[LA], pupils_per_la=800, seed=21)
    events = shuffled_within_children(population.events, seed=5) if arrival == "shuffled" else None
    replay = replay_of(population, events)
    results = []
    for batched in (True, False):
        url = new_database()
        run = settings.model_copy(update={"database_url": url})
        migrate(url, MIGRATIONS, "escalation")
        engine = make_engine(url)
        try:
            deps = load_deps(run)
            now = min(i.at for i in replay.inputs)
            clock = SimulatedTime(now)
            worker = EscalationWorker(run, engine, deps, clock)
            batches = Batches(run)
            for start in range(0, len(replay.inputs), 200):
                chunk = replay.inputs[start : start + 200]
                now = max(now, *(i.at for i in chunk))  # the clock never runs backwards
                if batched:
                    clock.set(now)
                    worker.handle_records([batches.raw(i.topic, i.value) for i in chunk])
                else:
                    for i in chunk:
                        reference(engine, deps, i.value, now)
                decide(engine, deps, now)
            results.append(state(engine))
        finally:
            engine.dispose()
    batched_state, alone = results
    assert all(batched_state)  # the year started clocks, raised alerts, remembered children, opened cases
    assert batched_state == alone


def test_new_childrens_first_transitions_cost_no_statement_each(
    worker: EscalationWorker, settings: EscalationSettings, engine: Engine
) -> None:
    """Transitions that open the cases of children escalation has never heard of (a roll load's transitions
    read before its facts) cost the same statements for 5 children as for 50: the batch found no row for
    them, so none is asked for again (asking would also write each new case and row on its own), and every
    child's case and row are written."""
    batches = Batches(settings)
    counts = []
    for n in (5, 50):
        children = [uuid.uuid4() for _ in range(n)]
        at = datetime(2025, 11, 3, 9, tzinfo=UTC)
        load = [transition(child, CaseState.IN_EDUCATION, at) for child in children]
        with statements_sent(engine) as sent:
            worker.handle_records(batches.of(load))
        counts.append(len(sent))
        assert all(remembered(engine, child) == (False, "none", "", False) for child in children)
        with engine.connect() as conn:
            cases = conn.execute(
                text("SELECT count(*) FROM escalation_cases WHERE child_id IN :ids").bindparams(
                    bindparam("ids", expanding=True)
                ),
                {"ids": [str(child) for child in children]},
            ).scalar_one()
        assert cases == n
    assert counts[0] == counts[1], counts
