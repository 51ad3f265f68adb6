"""Retention reaches the worker's own copy: a child-purged event deletes the child's record from the faust
table (a tombstone on its compacted changelog); a worker recovering from the changelog has no trace of it."""

from __future__ import annotations

import shutil
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest

from devtools.samples import child
from services.tracking.stream.app import CHILDREN_TABLE, app_id
from shared.events.catalogue import encode_event
from shared.localstack.postgres import PostgresCluster
from shared.retention import purged_event
from shared.topics import CHILD_EVENTS
from tests.e2e.tracking_support import event, make_settings, query, send, tracking_worker, wait_state
from tests.support.kafka import produce, read_topic, wait_until

pytestmark = pytest.mark.e2e


def test_purged_child_leaves_a_tombstone_and_no_record(
    kafka_bootstrap: str, postgres_server: tuple[str, PostgresCluster | None], tmp_path: Path
) -> None:
    url, cluster = postgres_server
    settings = make_settings(
        kafka_bootstrap, cluster.create_database(f"t_{uuid.uuid4().hex[:12]}") if cluster else url, tmp_path
    )
    gone = child(61, forename="Pat", surname="Purged", date_of_birth="2010-01-01")
    kept = child(62, forename="Sam", surname="Kept", date_of_birth="2010-02-02")
    first = [event("pupil-registered", 61, 3, kid=gone), event("pupil-registered", 62, 3, kid=kept)]
    changelog = f"{app_id(settings)}-{CHILDREN_TABLE}-changelog"
    with tracking_worker(settings, tmp_path / "worker.log"):
        send(settings, first)
        gone_case = wait_state(settings, first[0].event_id, "in_education")
        wait_state(settings, first[1].event_id, "in_education")
        child_id = str(gone_case["child_id"])
        # What `cme purge` publishes (it then deletes the rows; here they stay, to show none is re-projected).
        purge = purged_event(child_id, "801", datetime.now(UTC))
        produce(settings, CHILD_EVENTS.name(settings), [(child_id.encode(), encode_event(purge))] * 2)

        def tombstone() -> bool:
            records = read_topic(settings, changelog, expect=1, timeout_s=5)
            return any(r.key and child_id.encode() in r.key and r.value is None for r in records)

        wait_until(tombstone, timeout_s=60, what="a tombstone for the purged child on the changelog")

    # Recover from the changelog alone: the purged child's record is gone, the other child's is there.
    shutil.rmtree(Path(settings.data_dir) / f"{settings.topic_prefix}tracking-faust", ignore_errors=True)
    later = [event("child-located", 61, 10, kid=gone), event("child-located", 62, 10, kid=kept)]
    send(settings, later)
    with tracking_worker(settings, tmp_path / "worker.log"):
        # If the first worker's leave did not reach the group, its partitions come back only after faust's
        # 60 s session timeout and a second recovery (seen once in a loaded CI rehearsal): allow for that.
        after_handover = 150
        # Same child id (its identifiers were not deleted here), but its earlier fact is forgotten.
        forgotten = wait_state(
            settings, later[0].event_id, "awaiting_provision", facts=1, timeout_s=after_handover
        )
        assert forgotten["child_id"] == child_id
        wait_state(settings, later[1].event_id, "in_education", facts=2, timeout_s=after_handover)
    dead = query(settings, "SELECT 1 FROM tracking_timeline WHERE event_id = :e", e=str(purge.event_id))
    assert dead == []  # the purge is not a fact of the child's case
