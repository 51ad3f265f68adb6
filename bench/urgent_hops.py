"""Where an urgent alert's time goes under the sustained load: for each urgent fact, when each hop of its
path put it on the next topic (the records' Kafka CreateTime, all stamped by this machine's clock), from the
API's 2xx to the social care and police escalation records. The last hop, to the SMTP receipt, is notify's.

    2xx -> cme.intake-urgent.v1            referral's outbox relay
        -> cme.child-events-urgent.v1      tracking, identity (urgent lane)
        -> cme.case-transitions-urgent.v1  tracking, fold ahead
        -> cme.escalations.v1              escalation (urgent consumer, timer, outbox relay)
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Mapping
from datetime import UTC
from typing import Any

import orjson
from sqlalchemy import text

from bench.common import percentile
from shared.db import make_engine
from shared.settings import Settings
from shared.topics import ESCALATIONS, URGENT_CHILD_EVENTS, URGENT_INTAKE, URGENT_TRANSITIONS

URGENT_LEVELS = ("childrens_social_care", "police")
END_TO_END = ("relay", "identity", "fold ahead", "escalation")  # the path; escalation's parts are apart


def _records(settings: Settings, topic: str, timeout_s: float = 120.0) -> list[Any]:
    """Every record of ``topic`` up to its end now, read by assignment; a broker that stops answering ends
    the read at ``timeout_s`` with what was read (the hops then count fewer facts, and say how many)."""
    from kafka import KafkaConsumer, TopicPartition

    from shared.kafka import kafka_python_config

    consumer = KafkaConsumer(enable_auto_commit=False, **kafka_python_config(settings))
    try:
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        if not tps:
            return []
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        ends = consumer.end_offsets(tps)
        out: list[Any] = []
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and any(consumer.position(tp) < ends[tp] for tp in tps):
            for batch in consumer.poll(timeout_ms=500).values():
                out.extend(batch)
        return out
    finally:
        consumer.close()


def _alerts(payload: Mapping[str, Any]) -> bool:
    """An escalation record that alerts an urgent level."""
    return payload.get("level") in URGENT_LEVELS and payload.get("action") in ("raised", "stepped_up")


def _escalation_marks(database_url: str) -> tuple[dict[str, float], dict[tuple[str, str], float]]:
    """Escalation's own wall-clock marks (ms): each child's first deadline row (the transition read and
    handled), and the outbox row of each child's first escalation record per urgent level (decided)."""
    engine = make_engine(database_url)
    try:
        with engine.connect() as conn:
            created = {
                str(child): at.timestamp() * 1000
                for child, at in conn.execute(
                    text("SELECT child_id, min(created_at) FROM escalation_deadlines GROUP BY child_id")
                ).all()
            }
            decided: dict[tuple[str, str], float] = {}
            for value, at in conn.execute(
                text("SELECT value, created_at FROM escalation_outbox WHERE topic LIKE '%escalations%'")
            ).all():
                payload = orjson.loads(bytes(value))["payload"]
                if payload.get("level") in URGENT_LEVELS and payload.get("action") in (
                    "raised",
                    "stepped_up",
                ):
                    key = (str(payload["child_id"]), payload["level"])
                    moment = at.replace(tzinfo=at.tzinfo or UTC).timestamp() * 1000
                    decided[key] = min(decided.get(key, moment), moment)
    finally:
        engine.dispose()
    return created, decided


def hops(
    settings: Settings,
    sent_wall_ms: Mapping[str, float],
    child_of: Mapping[str, str],
    database_url: str | None = None,
) -> dict[str, list[float]]:
    """Per hop, the milliseconds each urgent fact spent in it (``sent_wall_ms``: its 2xx, wall clock, by event
    id; ``child_of``: its child id). With escalation's database, its hop is also split in three: reading
    the provisional transition to its deadline row, deciding the deadline (the due-check), and the outbox
    relay's publish."""
    intake = {
        orjson.loads(r.value)["event_id"]: r.timestamp
        for r in _records(settings, URGENT_INTAKE.name(settings))
    }
    facts = {
        orjson.loads(r.value)["event_id"]: r.timestamp
        for r in _records(settings, URGENT_CHILD_EVENTS.name(settings))
    }
    folded: dict[str, int] = {}
    for r in _records(settings, URGENT_TRANSITIONS.name(settings)):
        cause = orjson.loads(r.value)["payload"]["cause_event_id"]
        folded[cause] = min(folded.get(cause, r.timestamp), r.timestamp)
    # The first escalation record of each urgent level per child; the later of the two is the alert's.
    first: dict[tuple[str, str], int] = {}
    for r in _records(settings, ESCALATIONS.name(settings)):
        payload = orjson.loads(r.value)["payload"]
        if _alerts(payload):
            key = (str(payload["child_id"]), payload["level"])
            first[key] = min(first.get(key, r.timestamp), r.timestamp)
    created, decided = _escalation_marks(database_url) if database_url else ({}, {})
    names = END_TO_END
    parts = ("escalation: read", "escalation: decide", "escalation: publish")
    out: dict[str, list[float]] = {name: [] for name in names + (parts if database_url else ())}
    for event_id, sent in sent_wall_ms.items():
        child = child_of.get(event_id)
        levels = [first.get((child, level)) for level in URGENT_LEVELS] if child else []
        alerted = [at for at in levels if at is not None]
        path: list[float | None] = [sent, intake.get(event_id), facts.get(event_id), folded.get(event_id)]
        last = max(alerted) if alerted and len(alerted) == len(URGENT_LEVELS) else None
        path.append(last)
        for name, (a, b) in zip(names, itertools.pairwise(path), strict=True):
            if a is not None and b is not None:
                out[name].append(float(b) - float(a))
        if database_url and child and last is not None:
            last_level = next(lv for lv, at in zip(URGENT_LEVELS, levels, strict=True) if at == last)
            inside = [folded.get(event_id), created.get(child), decided.get((child, last_level)), last]
            for name, (a, b) in zip(parts, itertools.pairwise(inside), strict=True):
                if a is not None and b is not None:
                    out[name].append(float(b) - float(a))
    return out


def summary(found: Mapping[str, list[float]]) -> str:
    return "; ".join(
        f"{name} p50 {percentile(sorted(v), 0.5):.0f} / p95 {percentile(sorted(v), 0.95):.0f} ms (n={len(v)})"
        for name, v in found.items()
        if v
    )
