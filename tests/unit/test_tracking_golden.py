"""The case logic's outputs, byte for byte, for a fixed stream of facts (issue 21): a golden digest recorded
from the code before the state machine was made faster, so a speed-up that changes any record, transition,
handover or timeline row fails here.

The stream: two synthetic LAs, facts shuffled within windows of 400 (late facts re-fold their case), some
facts delivered twice, handovers and confirmations delivered to the other LA a few facts later, and
escalation's transfer clock expiring for every transfer that starts one. Both ways the worker holds a record
are used: the object the previous event left (within a batch) and the record read back from its JSON (a
later batch). Each output record must also equal its own JSON read back: a model built without validation
must be the model validation would build.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import uuid
from collections import Counter
from dataclasses import asdict
from datetime import timedelta
from functools import cache
from typing import Any

from devtools.synthetic import generate
from services.tracking.cases import ChildRecord, Outcome, apply_child_fact, apply_clock_expired, new_record
from shared.events.catalogue import decode_inbound, encode_event
from shared.events.envelope import Envelope, Source
from shared.events.internal import (
    CaseClockExpired,
    CaseClockExpiredPayload,
    CaseState,
    ChildFact,
    ChildFactPayload,
    MatchKind,
)

# sha256 of every output in order, recorded on the code before issue 21's state machine changes (ffcafb5).
GOLDEN = "c56f49468956a516db27cbc7fa809d7b35a388e3a98352595621299344a2868a"
RECORDED_AT = re.compile(r'"recorded_at":"[^"]*"')
NAMESPACE = uuid.UUID("0b6f2a4e-31c7-4d8e-9a15-6e2f7c3b9d40")


def _encoded(event: Envelope) -> str:
    """The event as published, but for when it was built (processing time, not the facts'), and without the
    transitions' ``provisional`` field, added after the digest was recorded: the fold in order always says
    false (only the urgent lane's fold ahead says true), and the digest without it is the recorded one."""
    encoded = RECORDED_AT.sub('"recorded_at":"-"', encode_event(event).decode())
    return encoded.replace(',"provisional":false', "")


def _lines(out: Outcome) -> list[str]:
    lines = [
        f"duplicate={out.duplicate} purged={out.purged} source={out.source_system}",
        out.record.model_dump_json(),
        json.dumps(out.register_details, sort_keys=True),
        out.register_before.model_dump_json(),
    ]
    lines += [json.dumps(asdict(row), sort_keys=True, default=str) for row in out.timeline]
    lines += [_encoded(t) for t in out.transitions]
    lines += [_encoded(h) for h in out.handovers]
    lines += [f"{key} {_encoded(f)}" for key, f in out.forwards]
    lines += [f"refused {event_id} {kind}" for event_id, kind in out.refused]
    return lines


def _child_fact(inbound: Envelope, child_id: uuid.UUID, la: str) -> ChildFact:
    return ChildFact(
        event_id=inbound.event_id,
        occurred_at=inbound.occurred_at,
        source=Source(system="cme-tracking", la_code=la),
        payload=ChildFactPayload(
            child_id=child_id, la_code=la, match=MatchKind.EXACT, fact=inbound.model_dump(mode="json")
        ),
    )


def _clock_expired(transition: Any) -> CaseClockExpired:
    p = transition.payload
    started = p.cause_occurred_at
    return CaseClockExpired(
        event_id=uuid.uuid5(NAMESPACE, f"clock:{transition.event_id}"),
        occurred_at=started + timedelta(days=20),
        source=Source(system="cme-escalation", la_code=p.la_code),
        payload=CaseClockExpiredPayload(
            child_id=p.child_id,
            case_id=p.case_id,
            la_code=p.la_code,
            rule_id="transfer_not_registered",
            state=CaseState.TRANSFER_PENDING,
            clock_started_at=started,
            due_at=started + timedelta(days=20),
        ),
    )


@cache
def run() -> tuple[str, Counter[str]]:
    population = generate(las=2, pupils_per_la=4_000, seed=21)
    deployment = frozenset(population.la_codes)
    rng = random.Random(21)
    events: list[Any] = list(population.events)
    for start in range(0, len(events), 400):
        window = events[start : start + 400]
        rng.shuffle(window)
        events[start : start + 400] = window
    for i in range(0, len(events), 23):  # delivered again a little later
        events.insert(min(i + 30, len(events)), events[i])
    queue: list[Any] = list(events)
    records: dict[str, ChildRecord] = {}
    digest = hashlib.sha256()
    stats: Counter[str] = Counter()
    position = 0
    while position < len(queue):
        item = queue[position]
        position += 1
        if isinstance(item, CaseClockExpired):
            child_id = str(item.payload.child_id)
            record = records[child_id]
            out = apply_clock_expired(record, item)
        else:
            inbound = item if isinstance(item, Envelope) else decode_inbound(item)
            la = str(inbound.source.la_code)
            if la not in deployment:
                continue
            child = uuid.uuid5(NAMESPACE, f"{la}:{inbound.payload.child.upn}")  # type: ignore[attr-defined]
            child_id = str(child)
            record = records.get(child_id) or new_record(child_id, la)
            # Half the facts come with their envelope decoded (a replay), half only inside the ChildFact.
            out = apply_child_fact(
                record, _child_fact(inbound, child, la), deployment, inbound=inbound if position % 2 else None
            )
        for line in _lines(out):
            digest.update(line.encode())
            digest.update(b"\n")
        raw = out.record.model_dump_json()
        again = ChildRecord.model_validate_json(raw)
        assert again == out.record, "a record differs from its own JSON read back"
        for t in out.transitions:
            assert type(t).model_validate_json(encode_event(t)) == t, "a transition differs from its JSON"
        # Within a batch the worker keeps the object; across batches it reads the JSON back.
        records[child_id] = out.record if position % 3 else again
        stats["duplicate" if out.duplicate else "applied"] += 1
        stats.update(row.verdict for row in out.timeline)
        stats["transitions"] += len(out.transitions)
        for t in out.transitions:
            if "transfer_pending" in [d.name for d in t.payload.deadlines_started]:
                queue.insert(min(position + 40, len(queue)), _clock_expired(t))
                stats["clocks"] += 1
        for h in out.handovers:
            stats[h.event_type] += 1
            queue.insert(min(position + 5, len(queue)), h)
    return digest.hexdigest(), stats


def test_the_scenario_covers_late_duplicate_handed_over_and_lapsed_facts() -> None:
    _, stats = run()
    print(dict(stats))
    assert stats["applied"] > 2_000 and stats["duplicate"] > 50
    assert stats["late"] + stats["late-applied"] > 50
    assert stats["moved-out-of-area"] > 0 and stats["handover-confirmed"] > 0
    assert stats["clocks"] > 0 and stats["transitions"] > 1_000


def test_the_outputs_are_those_recorded_before_the_speed_up() -> None:
    digest, _ = run()
    assert digest == GOLDEN
