"""``cme purge`` really deletes: a child whose case closed longer ago than the retention period disappears
from every table of every service (children merged into it too), other children stay; published outbox copies
past their period go; records on the personal-data topics older than the cutoff are deleted from Kafka."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import MetaData, String, Table, inspect, or_, select
from sqlmodel import Session

from shared.db import make_engine
from shared.retention import RetentionPolicy, purge
from shared.settings import Settings
from shared.topics import CASE_TRANSITIONS, CHILD_EVENTS, INTAKE
from tests.support.kafka import produce, read_topic

pytestmark = [pytest.mark.security, pytest.mark.integration]

LA = "801"
NOW = datetime.now(UTC)
LONG_AGO = NOW - timedelta(days=7 * 365)


def _migrate_all(settings: Settings) -> None:
    from services.escalation.app import prepare_database as escalation_db
    from services.escalation.settings import EscalationSettings
    from services.notify.app import prepare_database as notify_db
    from services.notify.settings import NotifySettings
    from services.referral.app import MIGRATIONS as REFERRAL_MIGRATIONS
    from services.tracking.stream.app import MIGRATIONS as TRACKING_MIGRATIONS
    from shared.db import migrate

    migrate(settings.database_url, TRACKING_MIGRATIONS, "tracking")
    migrate(settings.database_url, REFERRAL_MIGRATIONS, "referral")
    escalation_db(EscalationSettings(**settings.model_dump())).dispose()
    notify_db(NotifySettings(**settings.model_dump())).dispose()


def _seed_child(
    session: Session, state: str, updated: datetime, merged_into: str | None = None, on_register: bool = False
) -> str:
    from services.notify.models import NotifyAlert, NotifyDelivery
    from services.referral.models import Submission
    from services.tracking.models import (
        TrackingCase,
        TrackingChild,
        TrackingCrossLALink,
        TrackingIdentifier,
        TrackingReadAudit,
        TrackingRegisterEntry,
        TrackingRegisterHistory,
        TrackingResolution,
        TrackingReviewItem,
        TrackingTimelineEntry,
    )

    child_id, case_id, alert_id, event_id = (str(uuid.uuid4()) for _ in range(4))
    session.add_all([
        TrackingChild(child_id=child_id, la_code=LA, forename="Purgeable", surname=f"Child{child_id[:6]}",
                      date_of_birth=date(2012, 5, 4), merged_into=merged_into, created_by_event_id=event_id),
        TrackingIdentifier(la_code=LA, kind="upn", value=f"P{child_id[:12]}", child_id=child_id,
                           first_event_id=event_id),
        TrackingResolution(event_id=event_id, child_id=child_id, la_code=LA, match="exact"),
        TrackingCase(case_id=case_id, child_id=child_id, la_code=LA, state=state, merged_into=merged_into,
                     updated_at=updated),
        TrackingTimelineEntry(child_id=child_id, la_code=LA, event_id=event_id, event_type="pupil-left-roll",
                              occurred_at=updated, verdict="move", to_state=state),
        TrackingReviewItem(review_id=str(uuid.uuid4()), la_code=LA, kind="possible_duplicate",
                           child_id=child_id, event_id=event_id),
        TrackingReadAudit(subject="cw", role="caseworker", la_code=LA, action="read_child", child_id=child_id,
                          reason="follow-up"),
        TrackingCrossLALink(link_id=str(uuid.uuid4()), sought_la_code=LA, sought_child_id=child_id,
                            sought_state=state, found_la_code="803", found_child_id=str(uuid.uuid4()),
                            event_id=str(uuid.uuid4()), fact_type="pupil-registered",
                            fact_occurred_at=updated,
                            match="exact", identifier_kind="upn", sought_review_id=str(uuid.uuid4()),
                            found_review_id=str(uuid.uuid4())),
        TrackingResolution(event_id=str(uuid.uuid4()), child_id=str(uuid.uuid4()), la_code=LA, match="scored",
                           matched_child_id=child_id),
        NotifyAlert(alert_id=alert_id, escalation_id=str(uuid.uuid4()), step_index=0, la_code=LA,
                    child_id=child_id, case_id=case_id, level="caseworker", rule_id="r", reason_code="r",
                    case_state=state, source_event_id=event_id, source_topic="t", source_partition=0,
                    source_offset=0, escalated_at=updated),
        NotifyDelivery(delivery_id=str(uuid.uuid4()), alert_id=alert_id, escalation_id=str(uuid.uuid4()),
                       step_index=0, recipient="person:cw", channel="email", la_code=LA,
                       address="caseworker@la.test"),
        Submission(event_id=event_id, client_id="c", event_type="pupil-left-roll", request_hash="h",
                   response_code=202, response_body={}, child_id=child_id),
        # The register of children not in school: an entry (left, unless on_register) and a history row with
        # the parents' details.
        TrackingRegisterEntry(child_id=child_id, la_code=LA, on_register=on_register,
                              category="missing_education"),
        TrackingRegisterHistory(child_id=child_id, la_code=LA, event_id=event_id,
                                event_type="not-in-school-notice", occurred_at=updated, change="added",
                                details='{"parents": [{"name": "P"}]}'),
    ])  # fmt: skip
    session.commit()
    return child_id


def _rows_naming(engine, value: str) -> dict[str, int]:  # type: ignore[no-untyped-def]
    """Every row of every service table with ``value`` in any text column: the proof of deletion."""
    found: dict[str, int] = {}
    with engine.connect() as conn:
        meta = MetaData()
        for name in inspect(conn).get_table_names():
            if name.startswith("alembic"):
                continue
            table = Table(name, meta, autoload_with=conn)
            text_cols = [c for c in table.c if isinstance(c.type, String)]
            if not text_cols:
                continue
            n = len(conn.execute(select(table).where(or_(*(c == value for c in text_cols)))).all())
            if n:
                found[name] = n
    return found


def test_purge_deletes_closed_children_everywhere_and_nothing_else(
    pg_settings: Settings, tmp_path: Path
) -> None:
    from services.referral.models import ReferralOutbox
    from shared.logs import configure_logging

    configure_logging("cme", json=True)  # as `cme purge` logs: its report must be JSON-serialisable
    _migrate_all(pg_settings)
    engine = make_engine(pg_settings.database_url)
    with Session(engine) as session:
        expired = _seed_child(session, "in_education", LONG_AGO)
        merged = _seed_child(session, "in_education", LONG_AGO, merged_into=expired)
        recent = _seed_child(session, "in_education", NOW - timedelta(days=30))
        still_open = _seed_child(session, "whereabouts_unknown", LONG_AGO)
        # Home educated (a resolved case) for years and still on the register: the duty lasts, so it stays.
        on_register = _seed_child(session, "electively_home_educated", LONG_AGO, on_register=True)
        session.add_all([
            ReferralOutbox(event_id=str(uuid.uuid4()), topic="t", value=b"old copy",
                           published_at=NOW - timedelta(days=90)),
            ReferralOutbox(event_id=str(uuid.uuid4()), topic="t", value=b"fresh copy",
                           published_at=NOW - timedelta(days=1)),
            ReferralOutbox(event_id=str(uuid.uuid4()), topic="t", value=b"unpublished"),
        ])  # fmt: skip
        session.commit()
    assert _rows_naming(engine, expired)["tracking_children"] == 2  # its own row and the merged child's

    # Old and new records on a personal-data topic, and on a topic without personal data.
    intake, transitions = INTAKE.name(pg_settings), CASE_TRANSITIONS.name(pg_settings)
    old_ms = int(LONG_AGO.timestamp() * 1000)
    from kafka import KafkaProducer

    from shared.kafka import kafka_python_config

    producer = KafkaProducer(acks="all", **kafka_python_config(pg_settings))
    for topic in (intake, transitions):
        for i in range(3):
            producer.send(topic, key=b"k", value=b"old-%d" % i, timestamp_ms=old_ms + i).get(timeout=30)
    producer.close()
    produce(pg_settings, intake, [(b"k", b"new-0")])

    # The command as an operator runs it.
    env = {
        **os.environ,
        "CME_DATABASE_URL": pg_settings.database_url,
        "CME_KAFKA_BOOTSTRAP": pg_settings.kafka_bootstrap,
        "CME_TOPIC_PREFIX": pg_settings.topic_prefix,
    }
    out = subprocess.run(
        [Path(sys.executable).parent / "cme", "purge"], env=env, capture_output=True, text=True, check=True
    ).stdout
    assert "children purged: 2" in out, out
    assert "records" in out and f"{intake}[" in out, out

    # Gone, for real: no row in any table holds the purged children's ids.
    assert _rows_naming(engine, expired) == {}
    assert _rows_naming(engine, merged) == {}
    # Kept: the recently closed child and the open case, whole.
    whole = {"tracking_children", "tracking_cases", "tracking_timeline", "notify_alert",
             "tracking_register_entries", "tracking_register_history"}  # fmt: skip
    for kept in (recent, still_open, on_register):
        assert set(_rows_naming(engine, kept)) >= whole
    with Session(engine) as session:
        values = sorted(row.value for row in session.query(ReferralOutbox).all())
    assert values == [b"fresh copy", b"unpublished"]

    # Kafka: the old intake records are deleted, the new one stays; the topic without personal data is kept.
    assert [r.value for r in read_topic(pg_settings, intake, expect=1, timeout_s=10)] == [b"new-0"]
    assert len(read_topic(pg_settings, transitions, expect=3, timeout_s=10)) == 3

    # Tracking is told to drop its own copy of each purged child (its faust table record).
    announced = [
        json.loads(r.value) for r in read_topic(pg_settings, CHILD_EVENTS.name(pg_settings), expect=2)
    ]
    assert sorted(e["payload"]["child_id"] for e in announced) == sorted([expired, merged])
    assert {e["event_type"] for e in announced} == {"child-purged"}

    # A second run finds nothing more to do.
    again = purge(pg_settings, engine, RetentionPolicy(), topics=True)
    assert again.children == 0 and sum(again.rows.values()) == 0 and sum(again.records.values()) == 0
    engine.dispose()
