"""Profile of the tracking hot path in-process on PostgreSQL: where the time of one event goes.

Synthetic intake events go through what the worker does apart from Kafka, in micro-batches as the worker
takes them: the codec (encode/decode as on the topics), identity resolution
(``IdentityResolver.resolve_batch``), the state machine (``apply_child_fact`` and the record's JSON) and the
projection into the case store (``project_many``). Prints milliseconds per event for each stage and the
cProfile top functions by cumulative time. ``--batch 1`` is one event at a time (one transaction each).

    .venv/bin/python -m bench.profile_tracking [--events 600] [--batch 200] [--top 30]
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import time

from bench.common import scratch_database
from devtools.synthetic import generate
from services.tracking.cases import ChildRecord, apply_child_fact, new_record
from services.tracking.identity import IdentityResolver
from services.tracking.projection import project_many
from services.tracking.settings import TrackingSettings
from services.tracking.stream.app import MIGRATIONS
from services.tracking.stream.identity_agent import child_fact
from shared.db import make_engine, migrate
from shared.events.catalogue import decode_event, decode_inbound, encode_event
from shared.events.internal import ChildFact


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=600)
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--sort", default="cumulative", help="pstats order: cumulative, tottime, ...")
    parser.add_argument(
        "--batch",
        type=int,
        default=TrackingSettings().tracking_batch_max,
        help="records per micro-batch, as the worker takes them (1: one at a time)",
    )
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
        for start in range(0, len(events), args.batch):
            chunk = events[start : start + args.batch]
            t0 = time.perf_counter()
            inbounds = [decode_inbound(encode_event(decode_inbound(event))) for event in chunk]
            t1 = time.perf_counter()
            resolutions = resolver.resolve_batch(inbounds)
            t2 = time.perf_counter()
            facts = []
            for inbound, resolution in zip(inbounds, resolutions, strict=True):
                decoded = decode_event(encode_event(child_fact(inbound, resolution)))
                assert isinstance(decoded, ChildFact)
                facts.append(decoded)
            t3 = time.perf_counter()
            # As the case agent: in order, each child's record as the batch left it, table written last.
            working: dict[str, ChildRecord] = {}
            outcomes = []
            for fact in facts:
                child_id = str(fact.payload.child_id)
                record = working.get(child_id)
                if record is None:
                    raw = records.get(child_id)
                    record = (
                        ChildRecord.model_validate_json(raw)
                        if raw
                        else new_record(child_id, fact.payload.la_code)
                    )
                outcome = apply_child_fact(record, fact)
                working[child_id] = outcome.record
                if not outcome.duplicate:
                    outcomes.append(outcome)
                    for transition in outcome.transitions:
                        encode_event(transition)
            for child_id, record in working.items():
                records[child_id] = record.model_dump_json()
            t4 = time.perf_counter()
            project_many(engine, outcomes)
            t5 = time.perf_counter()
            stages["codec"] += (t1 - t0) + (t3 - t2)
            stages["resolve"] += t2 - t1
            stages["apply"] += t4 - t3
            stages["project"] += t5 - t4
        profile.disable()
        engine.dispose()
    n = len(events)
    total = sum(stages.values())
    print(f"batch {args.batch}, {n} events: {n / total:.0f} events/s in-process")
    print("ms per event: " + ", ".join(f"{k} {v / n * 1000:.2f}" for k, v in stages.items()))
    pstats.Stats(profile).sort_stats(args.sort).print_stats(args.top)


if __name__ == "__main__":
    main()
