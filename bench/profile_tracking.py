"""Profile of the tracking hot path in-process on PostgreSQL: where the time of one event goes.

Each synthetic intake event goes through what the worker does apart from Kafka: the codec (encode/decode as on
the topics), identity resolution (``IdentityResolver.resolve``), the state machine (``apply_child_fact``
and the record's JSON) and the projection into the case store (``project``). Prints milliseconds per event for
each stage and the cProfile top functions by cumulative time.

    .venv/bin/python -m bench.profile_tracking [--events 600] [--top 30]
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import time
import uuid

from bench.common import scratch_database
from services.tracking.cases import ChildRecord, apply_child_fact, new_record
from services.tracking.identity import IdentityResolver
from services.tracking.projection import project
from services.tracking.stream.app import MIGRATIONS
from shared.db import make_engine, migrate
from shared.events.catalogue import decode_event, decode_inbound, encode_event
from shared.events.envelope import Source
from shared.events.internal import ChildFact, ChildFactPayload
from shared.synthetic import generate


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=600)
    parser.add_argument("--top", type=int, default=30)
    args = parser.parse_args()
    events = generate(las=1, pupils_per_la=int(args.events / 0.4) + 100, seed=5).events[: args.events]
    stages = {"codec": 0.0, "resolve": 0.0, "apply": 0.0, "project": 0.0}
    profile = cProfile.Profile()
    with scratch_database("profile") as url:
        migrate(url, MIGRATIONS, "tracking")
        engine = make_engine(url)
        resolver = IdentityResolver(engine)
        records: dict[str, str] = {}
        profile.enable()
        for event in events:
            t0 = time.perf_counter()
            inbound = decode_inbound(encode_event(decode_inbound(event)))
            t1 = time.perf_counter()
            resolution = resolver.resolve(inbound)
            t2 = time.perf_counter()
            la = str(inbound.source.la_code)
            fact = ChildFact(
                event_id=inbound.event_id,
                occurred_at=inbound.occurred_at,
                source=Source(system="cme-tracking", la_code=la),
                correlation_id=inbound.event_id,
                payload=ChildFactPayload(
                    child_id=uuid.UUID(resolution.child_id),
                    la_code=la,
                    match=resolution.match,
                    match_score=resolution.score,
                    fact=inbound.model_dump(mode="json"),
                ),
            )
            decoded = decode_event(encode_event(fact))
            assert isinstance(decoded, ChildFact)
            raw = records.get(resolution.child_id)
            record = ChildRecord.model_validate_json(raw) if raw else new_record(resolution.child_id, la)
            t3 = time.perf_counter()
            outcome = apply_child_fact(record, decoded)
            for transition in outcome.transitions:
                encode_event(transition)
            records[resolution.child_id] = outcome.record.model_dump_json()
            t4 = time.perf_counter()
            project(engine, outcome)
            t5 = time.perf_counter()
            stages["codec"] += (t1 - t0) + (t3 - t2)
            stages["resolve"] += t2 - t1
            stages["apply"] += t4 - t3
            stages["project"] += t5 - t4
        profile.disable()
        engine.dispose()
    n = len(events)
    print("ms per event: " + ", ".join(f"{k} {v / n * 1000:.2f}" for k, v in stages.items()))
    pstats.Stats(profile).sort_stats("cumulative").print_stats(args.top)


if __name__ == "__main__":
    main()
