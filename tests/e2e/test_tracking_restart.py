"""Stop the worker, lose its local RocksDB, send more facts, start it again: the state comes back from the
changelog and the case store is what one uninterrupted run produces."""

from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path

import pytest

from devtools.samples import child
from shared.localstack.postgres import PostgresCluster
from shared.settings import Settings
from shared.topics import CASE_TRANSITIONS
from tests.e2e.tracking_support import event, make_settings, query, send, tracking_worker, wait_state
from tests.support.kafka import read_topic, transitions_only

pytestmark = pytest.mark.e2e

CASE_COLUMNS = "state, reason, cause_event_id, open_deadlines, facts_applied, destination_la_code"


def _facts() -> tuple[list, list]:  # type: ignore[type-arg]
    a = child(21, forename="Kit", surname="Restart", date_of_birth="2013-02-02")
    b = child(22, forename="Lou", surname="Rerun", date_of_birth="2012-12-12")
    before = [event("pupil-left-roll", 21, 3, kid=a), event("pupil-registered", 22, 3, kid=b)]
    after = [
        event("whereabouts-unknown", 21, 10, kid=a),
        event("child-located", 21, 12, kid=a),
        event("moved-out-of-area", 22, 7, kid=b),
    ]
    return before, after


def _store(settings: Settings) -> tuple[list[dict[str, object]], list[dict[str, object]]]:
    cases = query(settings, f"SELECT {CASE_COLUMNS} FROM tracking_cases ORDER BY cause_event_id")
    timeline = query(
        settings, "SELECT event_id, verdict, from_state, to_state FROM tracking_timeline ORDER BY event_id"
    )
    return cases, timeline


def _db(server: tuple[str, PostgresCluster | None]) -> str:
    url, cluster = server
    return cluster.create_database(f"t_{uuid.uuid4().hex[:12]}") if cluster else url


def test_restart_recovers_from_changelog(
    kafka_bootstrap: str, postgres_server: tuple[str, PostgresCluster | None], tmp_path: Path
) -> None:
    before, after = _facts()
    settings = make_settings(kafka_bootstrap, _db(postgres_server), tmp_path / "a")
    with tracking_worker(settings, tmp_path / "a.log"):
        send(settings, before)
        wait_state(settings, before[0].event_id, "missing_education")
        wait_state(settings, before[1].event_id, "in_education")
    # Lose the local table store: only the changelog topic can bring the state back.
    shutil.rmtree(Path(settings.data_dir) / f"{settings.topic_prefix}tracking-faust", ignore_errors=True)
    send(settings, after)
    with tracking_worker(settings, tmp_path / "a.log"):
        wait_state(settings, before[0].event_id, "awaiting_provision", facts=3)
        wait_state(settings, before[1].event_id, "handed_over", facts=2)
        transitions = [
            json.loads(r.value)["payload"]
            for r in read_topic(settings, CASE_TRANSITIONS.name(settings), 6, 30, transitions_only)
        ]
    # Recovered, not restarted from nothing: the first fact after the restart moves on from the old state.
    steps = {(t["from_state"], t["to_state"]) for t in transitions}
    assert ("missing_education", "whereabouts_unknown") in steps and ("in_education", "handed_over") in steps
    assert steps == {
        (None, "missing_education"),
        (None, "in_education"),
        ("missing_education", "whereabouts_unknown"),
        ("whereabouts_unknown", "awaiting_provision"),
        ("in_education", "handed_over"),
    }  # + handover case
    assert len({json.dumps(t, sort_keys=True) for t in transitions}) == 6
    interrupted = _store(settings)

    # The same facts in one uninterrupted run.
    reference = make_settings(kafka_bootstrap, _db(postgres_server), tmp_path / "b")
    with tracking_worker(reference, tmp_path / "b.log"):
        send(reference, before + after)
        wait_state(reference, before[0].event_id, "awaiting_provision", facts=3)
        wait_state(reference, before[1].event_id, "handed_over", facts=2)
        from tests.support.kafka import wait_until

        wait_until(lambda: len(_store(reference)[0]) == len(interrupted[0]), what="the handed-over case")
    assert _store(reference) == interrupted
