"""A poison message: a valid escalation for an LA whose directory has nobody to alert.

notify cannot route it: it goes to the dead-letter topic with the error and the original topic, partition and
offset; the partition keeps flowing (a later escalation with the same key, so on the same partition, is
delivered); once the LA's directory is loaded (the fix), ``cme dead-letters replay`` re-submits it and the
alert goes out, once.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from shared.deadletter_replay import read_dead_letters
from shared.events.catalogue import encode_event
from shared.events.envelope import Source
from shared.events.internal import CaseState, Escalation, EscalationAction, EscalationPayload, LadderLevel
from shared.settings import Settings
from shared.topics import ESCALATIONS
from tests.support.kafka import produce, wait_until
from tests.support.pipeline import Pipeline, body_of, running_pipeline

pytestmark = [pytest.mark.faults, pytest.mark.e2e]

UNROUTED_LA = "802"
DIRECTORY_802 = """
las:
  "802":
    email_channel: smtp
    people:
      - {id: cw802, name: Caseworker, email: caseworker802@la.test}
    roles:
      caseworker: [person:cw802]
"""


def escalation(child_id: uuid.UUID, la: str) -> Escalation:
    return Escalation(
        event_id=uuid.uuid4(),
        occurred_at=datetime.now(UTC),
        source=Source(system="cme-escalation", la_code=la),
        payload=EscalationPayload(
            escalation_id=uuid.uuid4(), child_id=child_id, case_id=uuid.uuid5(child_id, "case"), la_code=la,
            rule_id="unknown-whereabouts", rule_fingerprint="f" * 16, action=EscalationAction.RAISED,
            level=LadderLevel.CASEWORKER, step_index=0, case_state=CaseState.WHEREABOUTS_UNKNOWN,
            reason_code="unknown-whereabouts",
        ),
    )  # fmt: skip


@pytest.fixture
def pipeline(kafka_settings: Settings, postgres_url: str, tmp_path: Path) -> Iterator[Pipeline]:
    with running_pipeline(kafka_settings, postgres_url, tmp_path, services=("notify",)) as pipeline:
        yield pipeline


def test_poison_dead_lettered_partition_flows_and_replay_delivers(pipeline: Pipeline) -> None:
    settings = pipeline.kafka
    topic = ESCALATIONS.name(settings)
    child_id = uuid.uuid4()
    key = str(child_id).encode()
    poison = escalation(child_id, UNROUTED_LA)
    healthy = escalation(child_id, "801")  # same key: same partition, behind the poison
    produce(settings, topic, [(key, encode_event(poison)), (key, encode_event(healthy))])

    # The partition keeps flowing: the healthy escalation behind the poison is delivered.
    box = pipeline.smtp.box
    wait_until(lambda: box.to("caseworker@la.test"), timeout_s=30, what="the healthy alert")

    # The poison is on the dead-letter topic with the error and where it came from.
    letters = wait_until(
        lambda: [d for d in read_dead_letters(settings) if d.payload.original_topic == topic],
        timeout_s=30,
        what="the dead letter",
    )
    [letter] = letters
    assert letter.payload.service == "notify"
    assert letter.payload.error_type == "LookupError"
    assert UNROUTED_LA in letter.payload.error
    assert letter.payload.offset >= 0 and letter.payload.partition >= 0
    assert base64.b64decode(letter.payload.value_base64) == encode_event(poison)
    assert letter.payload.key == str(child_id)
    listed = pipeline.cme("dead-letters", "list", "--service", "notify")
    assert str(letter.event_id) in listed and f"{topic}[{letter.payload.partition}]" in listed

    # The fix: LA 802's directory arrives. Then the replay re-submits the original record, and it is alerted.
    pipeline.load_directory(DIRECTORY_802)
    out = pipeline.cme("dead-letters", "replay", "--event-id", str(letter.event_id))
    assert f"replayed {letter.event_id} to {topic}" in out
    wait_until(lambda: box.to("caseworker802@la.test"), timeout_s=30, what="the replayed alert")
    [mail] = box.to("caseworker802@la.test")
    assert str(poison.payload.case_id) in body_of(mail)

    # Replaying again changes nothing: the same event id is a duplicate, no second email.
    pipeline.cme("dead-letters", "replay", "--event-id", str(letter.event_id))
    produce(settings, topic, [(key, encode_event(escalation(child_id, "801")))])  # a marker behind it
    wait_until(lambda: len(box.to("caseworker@la.test")) == 2, timeout_s=30, what="the marker alert")
    assert len(box.to("caseworker802@la.test")) == 1
    assert len(box.to("caseworker@la.test")) == 2
