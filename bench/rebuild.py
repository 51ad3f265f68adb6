"""Rebuild from the log at a stated fraction of the national year, extrapolated to all of it.

A synthetic population (``devtools.synthetic``) becomes the child-events topic the identity agent would have
written (one ChildFact per inbound fact, a child being its UPN within its LA, as ``services.tracking.replay``
does; handovers between LAs are not routed, so each LA's facts are its own), produced to a fresh topic. Then
``services.tracking.rebuild.rebuild`` replays it into a fresh PostgreSQL database, timed. Baseline, same run
and topic: the same kafka-python consumer reading and decoding (``decode_event``) every record, which is the
floor of any replay. National: 3.9 million facts a year (docs/PERFORMANCE.md "National scale arithmetic"),
at the measured rate.

    .venv/bin/python -m bench.rebuild --las 4 --pupils 25000
"""

from __future__ import annotations

import argparse
import time
import uuid
from pathlib import Path
from typing import Any

import orjson

from bench.common import Row, bench_settings, delete_topics, log, produce_fast, scratch_database
from devtools.synthetic import generate
from shared.events.catalogue import decode_event, decode_inbound, encode_event
from shared.events.envelope import Source
from shared.events.internal import ChildFact, ChildFactPayload, MatchKind
from shared.kafka import ensure_topics
from shared.settings import Settings
from shared.topics import CHILD_EVENTS

NATIONAL_FACTS = 3_900_000
NATIONAL_PUPILS = 9_092_073
NAMESPACE = uuid.UUID("5d0c8a43-52a7-4f3b-9d0e-6b1f1e0c2a77")


def child_events(las: int, pupils: int, seed: int) -> list[tuple[bytes, bytes]]:
    records = []
    for data in generate(las=las, pupils_per_la=pupils, seed=seed).events:
        event = decode_inbound(data)
        la = str(event.source.la_code)
        child_id = uuid.uuid5(NAMESPACE, f"{la}:{event.payload.child.upn}")  # type: ignore[attr-defined]
        fact = ChildFact(
            event_id=event.event_id,
            occurred_at=event.occurred_at,
            source=Source(system="cme-tracking", la_code=la),
            payload=ChildFactPayload(child_id=child_id, la_code=la, match=MatchKind.EXACT, fact=data),
        )
        records.append((str(child_id).encode(), encode_event(fact)))
    return records


def raw_consume(settings: Settings, total: int) -> float:
    """Seconds for the rebuild's consumer, reading and decoding every record and nothing else."""
    from kafka import KafkaConsumer, TopicPartition

    from shared.kafka import kafka_python_config

    topic = CHILD_EVENTS.name(settings)
    consumer = KafkaConsumer(
        enable_auto_commit=False,
        group_id=None,
        max_poll_records=2000,
        fetch_max_bytes=64 * 1024 * 1024,
        max_partition_fetch_bytes=16 * 1024 * 1024,
        **kafka_python_config(settings),
    )
    try:
        tps = [TopicPartition(topic, p) for p in range(settings.topic_partitions)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        started, seen = time.perf_counter(), 0
        while seen < total:
            for messages in consumer.poll(timeout_ms=1000, max_records=2000).values():
                for message in messages:
                    decode_event(message.value)
                    seen += 1
        return time.perf_counter() - started
    finally:
        consumer.close()


def _rebuild_share(settings: Settings, url: str, partitions: list[int], out: Any) -> None:
    from services.tracking.rebuild import rebuild

    report = rebuild(settings, url, batch=2000, partitions=partitions)
    out.put((report.events, report.seconds))


def parallel_rebuild(settings: Settings, url: str, workers: int) -> tuple[int, float]:
    """``workers`` processes, each on its share of the partitions, into the same store: (events, seconds of
    the slowest, from its start to its last commit: the interpreter's start-up is a constant, left out)."""
    import multiprocessing

    from services.tracking.rebuild import prepare_target

    prepare_target(url).dispose()  # migrated once, before the processes race to do it
    ctx = multiprocessing.get_context("spawn")
    results = ctx.Queue()
    shares = [list(range(settings.topic_partitions))[i::workers] for i in range(workers)]
    procs = [ctx.Process(target=_rebuild_share, args=(settings, url, share, results)) for share in shares]
    for proc in procs:
        proc.start()
    done = [results.get(timeout=3600) for _ in procs]
    for proc in procs:
        proc.join()
        if proc.exitcode != 0:
            raise RuntimeError(f"a rebuild process failed ({proc.exitcode})")
    return sum(n for n, _ in done), max(s for _, s in done)


def run(workdir: Path, las: int, pupils: int, seed: int = 11, workers: int = 1) -> list[Row]:

    records = child_events(las, pupils, seed)
    n = len(records)
    share = las * pupils / NATIONAL_PUPILS
    log(f"rebuild: {n:,} facts of {las} LAs x {pupils:,} pupils ({100 * share:.2f}% of the national pupils)")
    with scratch_database("rebuild") as url:
        settings = bench_settings(url, workdir, partitions=4)
        ensure_topics(settings, (CHILD_EVENTS,))
        try:
            produce_fast(settings, CHILD_EVENTS.name(settings), records)
            baseline_s = raw_consume(settings, n)
            events, seconds = parallel_rebuild(settings, url, workers)
            assert events == n, (events, n)
        finally:
            delete_topics(settings)
    rate, base = n / seconds, n / baseline_s
    national_s = NATIONAL_FACTS / rate
    result: dict[str, Any] = {
        "facts": n,
        "las": las,
        "pupils_per_la": pupils,
        "share_of_national_pupils": share,
        "workers": workers,
        "rebuild_s": seconds,
        "rebuild_per_s": rate,
        "raw_consume_decode_per_s": base,
        "national_facts": NATIONAL_FACTS,
        "national_s_extrapolated": national_s,
    }
    log(
        f"rebuild: {rate:,.0f} facts/s (raw {base:,.0f}/s); "
        f"national {NATIONAL_FACTS:,} facts ~{national_s / 60:.1f} min"
    )
    return [
        Row(
            "rebuild",
            f"facts/s child-events -> fresh case store ({n:,} facts, {workers} processes, PostgreSQL)",
            round(rate),
            "events/s",
            "kafka-python consume + decode_event",
            round(base),
            extra=result,
        ),
        Row(
            "rebuild",
            f"national year, {NATIONAL_FACTS:,} facts (extrapolated from {n:,}, {workers} processes)",
            round(national_s / 60, 1),
            "min",
            "target",
            10,
        ),
    ]


def main(argv: list[str] | None = None) -> None:
    import tempfile

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--las", type=int, default=4)
    parser.add_argument("--pupils", type=int, default=25_000, help="pupils per LA")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--workers", type=int, default=1, help="rebuild processes (4 partitions shared out)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    rows = run(Path(tempfile.mkdtemp(prefix="cme-rebuild-")), args.las, args.pupils, args.seed, args.workers)
    for row in rows:
        print(row.as_dict())
    if args.out:
        args.out.write_bytes(orjson.dumps([r.as_dict() for r in rows], option=orjson.OPT_INDENT_2))


if __name__ == "__main__":
    main()
