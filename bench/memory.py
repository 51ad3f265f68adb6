"""Memory per tracked child: the tracking table's record, built by the pure state machine in-process.

A synthetic year for ``pupils`` pupils is applied event by event with ``apply_child_fact`` (no Kafka, no
database), one ChildRecord per child that has any event (a tracked child). Measured per child:

- stored bytes: the record as the faust table keeps it (JSON; what RocksDB and the changelog hold);
- in-memory bytes: tracemalloc of the records held as JSON strings in a dict (faust's in-memory store);
- total at 1,000,000 children: per-child x 1M (linear: records are independent); with ``million`` the 1M
  records are really built (copies of the sample's with new ids) and measured.

Also the in-process rate of the state machine (decode + apply + serialise) against decode alone.
"""

from __future__ import annotations

import time
import tracemalloc
import uuid
from typing import Any

from bench.common import Row, log
from devtools.synthetic import generate
from services.tracking.cases import ChildRecord, apply_child_fact, new_record
from services.tracking.identity import child_id_for
from shared.events.catalogue import decode_inbound
from shared.events.envelope import Source
from shared.events.internal import ChildFact, ChildFactPayload, MatchKind


def apply_year(pupils: int) -> tuple[dict[str, str], dict[str, Any]]:
    return apply_events(generate(las=1, pupils_per_la=pupils, seed=21).events, pupils)


def apply_events(events: list[dict[str, Any]], pupils: int) -> tuple[dict[str, str], dict[str, Any]]:
    """Decode alone, then decode + apply + the record's JSON, over the same events (one LA's year)."""
    child_of: dict[str, str] = {}
    records: dict[str, str] = {}
    started = time.perf_counter()
    for event in events:
        decode_inbound(event)
    decode_s = time.perf_counter() - started
    started = time.perf_counter()
    for event in events:
        inbound = decode_inbound(event)
        upn = event["payload"]["child"]["upn"]
        child_id = child_of.get(upn) or child_of.setdefault(upn, child_id_for(str(inbound.event_id)))
        la = str(inbound.source.la_code)
        fact = ChildFact(
            event_id=inbound.event_id,
            occurred_at=inbound.occurred_at,
            source=Source(system="cme-tracking", la_code=la),
            payload=ChildFactPayload(
                child_id=uuid.UUID(child_id), la_code=la, match=MatchKind.EXACT, fact=event
            ),
        )
        raw = records.get(child_id)
        record = ChildRecord.model_validate_json(raw) if raw else new_record(child_id, la)
        # The fact decoded above is passed down, as a replay does: decoded once in this loop (the live case
        # agent decodes it once too, in its own process after identity's decode; see docs/PERFORMANCE.md).
        outcome = apply_child_fact(record, fact, inbound=inbound)
        records[child_id] = outcome.record.model_dump_json()
    apply_s = time.perf_counter() - started
    n = len(events)
    return records, {
        "pupils": pupils,
        "events": n,
        "decode_per_s": round(n / decode_s, 1),
        "apply_per_s": round(n / apply_s, 1),
    }


def held_bytes(records: dict[str, str], count: int) -> float:
    """tracemalloc bytes of ``count`` records held as {child_id: json} (copies of the sample, new ids)."""
    templates = list(records.items())
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    held: dict[str, str] = {}
    for i in range(count):
        key, value = templates[i % len(templates)]
        new_id = str(uuid.UUID(int=(1 << 90) + i))
        held[new_id] = value.replace(key, new_id)
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    return float(after - before)


def run(pupils: int, million: bool) -> list[Row]:
    log(f"memory: applying a synthetic year for {pupils} pupils in-process")
    records, rates = apply_year(pupils)
    children = len(records)
    stored = sum(len(k) + len(v.encode()) for k, v in records.items()) / children
    in_memory = held_bytes(records, children) / children
    rows = [
        Row(
            "tracking",
            f"pure state machine in-process ({rates['events']} events)",
            rates["apply_per_s"],
            "events/s",
            "decode_inbound alone",
            rates["decode_per_s"],
            "decode + apply_child_fact + JSON",
            rates,
        ),
        Row(
            "memory",
            f"table record stored per tracked child ({children} children of {pupils} pupils)",
            round(stored),
            "B",
            note=f"x1M = {stored * 1e6 / 2**30:.2f} GiB in RocksDB/changelog (linear)",
        ),
        Row(
            "memory",
            "table record in memory per tracked child (dict of JSON)",
            round(in_memory),
            "B",
            note=f"x1M = {in_memory * 1e6 / 2**30:.2f} GiB (linear)",
        ),
    ]
    if million:
        log("memory: holding 1,000,000 records in memory")
        total = held_bytes(records, 1_000_000)
        rows.append(
            Row(
                "memory",
                "1,000,000 table records held in memory (measured)",
                round(total / 2**30, 2),
                "GiB",
                "linear extrapolation from the sample",
                round(in_memory * 1e6 / 2**30, 2),
            )
        )
    return rows
