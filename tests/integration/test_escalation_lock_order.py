"""Two escalation instances never deadlock on ``escalation_deadlines`` (PostgreSQL "deadlock detected"): one
instance's timer claims a child's deadlines in (due_at, rule_order, id) order, several per transaction, while
another instance's consumer ends that child's episodes. The consumer locks the child's pending deadlines in
the timer's order before changing any (``episodes.lock_child_deadlines``); an UPDATE of many rows alone locks
them in index and table order, and with two deadlines due at one instant the two waited for each other
(reproduced: "deadlock detected" without the lock).
"""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlmodel import Session, col, select

from services.escalation.episodes import start_clock
from services.escalation.firing import fire_deadline
from services.escalation.models import DeadlineStatus, EscalationDeadline
from services.escalation.rules import RuleSet
from services.escalation.transitions import handle_transition
from services.escalation.unit_of_work import Deps, mark_processed
from shared.db import make_engine, migrate, session_scope
from shared.events.internal import CaseState
from shared.localstack.postgres import PostgresCluster
from shared.school_calendar import CalendarRegistry
from tests.integration.test_escalation_replay import _fresh_database
from tests.support.escalation import LA, transition
from tests.support.kafka import wait_until

pytestmark = pytest.mark.integration

MIGRATIONS = Path(__file__).resolve().parents[2] / "services" / "escalation" / "migrations"
DUE = datetime(2025, 11, 3, 12, tzinfo=UTC)


def test_a_consumer_and_another_instances_timer_do_not_deadlock(
    postgres_server: tuple[str, PostgresCluster | None],
) -> None:
    url = _fresh_database(postgres_server)
    migrate(url, MIGRATIONS, "escalation")
    engine = make_engine(url)
    deps = Deps(RuleSet.load(), CalendarRegistry(), "t.escalations")
    child = uuid.uuid4()
    rule = next(r for r in deps.rules.rules_for(LA) if r.id == "whereabouts_unknown")
    with session_scope(engine) as session:
        # Two clocks due at one instant (several rules for one state change): the timer decides them in rule
        # order; the second in rule order is first in the table (and in the due-time index's tie order), so
        # an UPDATE of both locks it first.
        for order, trigger in ((1, "second"), (0, "first")):
            start_clock(
                session, rule, order, child=str(child), la=LA, case_id=None,
                trigger_event_id=str(uuid.uuid5(child, trigger)), due_at=DUE, partition=0,
            )  # fmt: skip
    with Session(engine) as session:
        earlier, later = session.exec(
            select(EscalationDeadline.id).order_by(col(EscalationDeadline.rule_order))
        ).all()
    now = DUE + timedelta(days=1)
    errors: list[BaseException] = []

    def consumer() -> None:
        try:
            with session_scope(engine) as session:
                found = transition(child, CaseState.IN_EDUCATION, DUE - timedelta(hours=1))
                mark_processed(session, found.event_id, "t")
                handle_transition(session, deps, found, now)
        except BaseException as exc:
            errors.append(exc)

    def waiting_on_a_lock() -> bool:
        with engine.connect() as conn:
            waiting = conn.execute(
                sa.text("SELECT count(*) FROM pg_stat_activity"
                        " WHERE datname = current_database() AND wait_event_type = 'Lock'")
            ).scalar()  # fmt: skip
        return bool(waiting) or bool(errors)

    with session_scope(engine) as timer:
        assert fire_deadline(timer, deps, earlier, now).action == "fired"  # claimed, not committed
        thread = threading.Thread(target=consumer)
        thread.start()
        wait_until(waiting_on_a_lock, 30, 0.05, "the consumer to wait for the claimed deadline")
        fire_deadline(timer, deps, later, now)  # the timer's next claim, in the same transaction
    thread.join(timeout=60)
    assert not thread.is_alive()
    assert errors == []
    with Session(engine) as session:
        statuses = {d.id: d.status for d in session.exec(select(EscalationDeadline)).all()}
    # Both clocks fell due after the return (dated before them), but the timer claimed them first (it read
    # a horizon past their due time): the timer decided them; the return, applied after,
    # cancelled the next ladder steps they scheduled (due after it).
    assert statuses.pop(earlier) == statuses.pop(later) == DeadlineStatus.FIRED
    assert set(statuses.values()) == {DeadlineStatus.CANCELLED}
    engine.dispose()
