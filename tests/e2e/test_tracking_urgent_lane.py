"""The urgent lane with the real tracking worker, broker and PostgreSQL: a fact that says a child may be at
risk now is resolved and folded while the ordinary lane is still working through a roll load queued in front
of it, and nothing on either lane is lost.

The bulk is on the topics before the worker starts, so the comparison is of order, not of time: on the
ordinary lane the whereabouts-unknown fact would wait behind its partition's share of the load (about half of
it); on its own lane it is taken in the worker's first batches. Two queues are tried: the roll waiting for
identity on intake, and the roll already resolved, waiting for the case agent on child-events, where the fold
ahead publishes the urgent fact's transition before the roll's (provisional, on a topic of its own), and the
fold in order the same transition again after them.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest

from devtools.samples import child, make_upn
from devtools.synthetic import FORENAMES, SURNAMES
from services.tracking.identity import Resolution
from services.tracking.stream.identity_agent import child_fact
from shared.events import encode_event
from shared.events.catalogue import decode_event
from shared.events.internal import CaseTransition, MatchKind
from shared.localstack.postgres import PostgresCluster
from shared.settings import Settings
from shared.topics import (
    CASE_TRANSITIONS,
    CHILD_EVENTS,
    INTAKE,
    URGENT_INTAKE,
    URGENT_TRANSITIONS,
    intake_for,
    intake_key,
)
from tests.e2e.tracking_support import event, make_settings, query, tracking_worker, wait_state
from tests.support.kafka import produce, read_topic, transitions_only, wait_until

pytestmark = pytest.mark.e2e

BULK = 6000  # a school's roll load: several seconds of the ordinary lane's work


@pytest.fixture
def settings(
    kafka_bootstrap: str, postgres_server: tuple[str, PostgresCluster | None], tmp_path: Path
) -> Settings:
    url, cluster = postgres_server
    db = cluster.create_database(f"t_{uuid.uuid4().hex[:12]}") if cluster else url
    return make_settings(kafka_bootstrap, db, tmp_path)


@pytest.fixture
def worker_log(settings: Settings) -> Iterator[Path]:
    yield Path(settings.data_dir) / "worker.log"


def resolved(settings: Settings, event_ids: list[str]) -> int:
    rows = query(
        settings,
        "SELECT count(*) AS n FROM tracking_resolutions WHERE event_id = ANY(:ids)",
        ids=event_ids,
    )
    return int(rows[0]["n"]) if rows else 0


def ahead_of(settings: Settings, urgent_id: str, bulk_ids: list[str]) -> dict[str, int]:
    """How many bulk facts identity resolved, and the case agent folded, before the urgent one."""
    rows = query(
        settings,
        """SELECT
             (SELECT count(*) FROM tracking_resolutions b, tracking_resolutions u
               WHERE u.event_id = :urgent AND b.event_id = ANY(:ids)
                 AND b.resolved_at < u.resolved_at) AS resolved,
             (SELECT count(*) FROM tracking_timeline b, tracking_timeline u
               WHERE u.event_id = :urgent AND b.event_id = ANY(:ids) AND b.id < u.id) AS folded""",
        urgent=urgent_id,
        ids=bulk_ids,
    )
    return {"resolved": int(rows[0]["resolved"]), "folded": int(rows[0]["folded"])}


def pupil(n: int, estab: int) -> dict[str, Any]:
    """A child of its own, named and born as an LA's children are spread (not one block for all)."""
    return child(
        n % 999 + 1,
        "801",
        upn=make_upn("801", estab + n // 999, 14, n % 999 + 1),
        forename=FORENAMES[n % len(FORENAMES)],
        surname=SURNAMES[(n * 31) % len(SURNAMES)],
        date_of_birth=(date(2008, 9, 1) + timedelta(days=(n * 7919) % 4800)).isoformat(),
    )


def test_an_urgent_fact_is_not_queued_behind_a_bulk_load(settings: Settings, worker_log: Path) -> None:
    bulk = [event("pupil-registered", 1, 3, kid=pupil(n, 2000)) for n in range(BULK)]
    missing = event("whereabouts-unknown", 1, 4, kid=pupil(1, 7000), school_urn=None)
    assert all(intake_for(e) is INTAKE for e in bulk) and intake_for(missing) is URGENT_INTAKE
    produce(settings, INTAKE.name(settings), [(intake_key(e), encode_event(e)) for e in bulk])
    produce(settings, URGENT_INTAKE.name(settings), [(intake_key(missing), encode_event(missing))])
    bulk_ids = [str(e.event_id) for e in bulk]

    with tracking_worker(settings, worker_log):
        case = wait_state(settings, missing.event_id, "whereabouts_unknown", timeout_s=120)
        # Everything on both lanes ends in the case store.
        wait_until(lambda: resolved(settings, bulk_ids) == BULK, timeout_s=300, what="the bulk resolved")

    assert case["facts_applied"] == 1
    # Order is read from the store's own writes, not from when a poll happened to look: how many of the bulk
    # were resolved (identity) and folded (the case agent's timeline) before the urgent fact was. On the
    # ordinary lane it would come after its partition's ~3,000; on its own lane it is among the first.
    ahead = ahead_of(settings, str(missing.event_id), bulk_ids)
    assert ahead["resolved"] < BULK // 4, f"{ahead['resolved']} of {BULK} bulk facts resolved first"
    assert ahead["folded"] < BULK // 4, f"{ahead['folded']} of {BULK} bulk facts folded first"


def folded(settings: Settings, event_ids: list[str]) -> int:
    rows = query(
        settings,
        "SELECT count(DISTINCT event_id) AS n FROM tracking_timeline WHERE event_id = ANY(:ids)",
        ids=event_ids,
    )
    return int(rows[0]["n"]) if rows else 0


def test_an_urgent_fact_is_folded_ahead_of_a_resolved_bulk_load(settings: Settings, worker_log: Path) -> None:
    # The roll already resolved: on child-events, in front of the case agent, when the urgent fact comes.
    roll = [event("pupil-registered", 1, 3, kid=pupil(n, 2000)) for n in range(BULK)]
    resolved_roll = [
        child_fact(e, Resolution(child_id=str(uuid.uuid4()), match=MatchKind.NEW, score=None, created=True))
        for e in roll
    ]
    produce(
        settings,
        CHILD_EVENTS.name(settings),
        [(str(f.payload.child_id).encode(), encode_event(f)) for f in resolved_roll],
    )
    missing = event("whereabouts-unknown", 1, 4, kid=pupil(1, 7000), school_urn=None)
    produce(settings, URGENT_INTAKE.name(settings), [(intake_key(missing), encode_event(missing))])
    roll_ids = [str(e.event_id) for e in roll]

    with tracking_worker(settings, worker_log):
        wait_state(settings, missing.event_id, "whereabouts_unknown", timeout_s=120)
        wait_until(lambda: folded(settings, roll_ids) == BULK, timeout_s=300, what="the roll folded")

    records = read_topic(settings, CASE_TRANSITIONS.name(settings), expect=BULK + 1, keep=transitions_only)
    provisional = read_topic(settings, URGENT_TRANSITIONS.name(settings), expect=1)
    [ahead] = provisional  # the fold ahead's, on a topic of its own
    [in_order] = [
        r for r in records if str(decode_transition(r.value).payload.cause_event_id) == str(missing.event_id)
    ]
    assert decode_transition(ahead.value).payload.provisional is True
    assert decode_transition(in_order.value).payload.provisional is False
    assert decode_transition(ahead.value).event_id == decode_transition(in_order.value).event_id
    assert ahead.partition == in_order.partition and ahead.key == in_order.key
    same_partition = [r for r in records if r.partition == in_order.partition and r.key != in_order.key]
    roll_on_partition = len(same_partition)
    assert roll_on_partition > BULK // 8, "the roll's share of the urgent child's partition"
    # Sent by the same worker: its send times order the two topics. Folded ahead, the urgent fact's transition
    # went out among the first of its partition's; in order, behind the whole roll of it.
    before_ahead = sum(1 for r in same_partition if r.timestamp < ahead.timestamp)
    before_in_order = sum(1 for r in same_partition if r.offset < in_order.offset)
    assert before_ahead < roll_on_partition // 4, f"{before_ahead} of {roll_on_partition} transitions first"
    assert before_in_order == roll_on_partition


def decode_transition(value: bytes) -> CaseTransition:
    found = decode_event(value)
    assert isinstance(found, CaseTransition)
    return found
