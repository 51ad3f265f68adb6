"""Tracking worker throughput from Kafka to the case store, and its recovery time after a restart.

Throughput: N synthetic intake events are pre-loaded on a fresh topic prefix; the real ``cme-tracking worker``
(a process, RocksDB store, PostgreSQL case store) is started and timed until every event has its timeline row
in the case store (identity resolution, the child-events hop, the state machine, projection and transitions
all done). Baseline, same run and topic: a raw aiokafka consumer that reads and validates each event
(``decode_inbound``), the practical ceiling for a Python consumer; and between the two, on the same topic,
do-nothing faust agents (``bench/faust_floor.py``: the worker's micro-batches, decode, nothing else; one
agent, and two with a topic between them as the worker has), the ceiling of any faust agent here. The worker
is reported against both.

Recovery: the worker is restarted (a) with its local RocksDB kept (the baseline: start-up cost only) and (b)
with the local store deleted after K children's records were added to the table's changelog, so it must replay
them; time = process start until a new probe event is in the case store (faust processes nothing until its
tables are recovered). Sizes K are fitted linearly and extrapolated to 1,000,000 children.
"""

from __future__ import annotations

import asyncio
import dataclasses
import shutil
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import text

from bench.common import (
    BIN,
    Row,
    bench_settings,
    delete_topics,
    log,
    produce_fast,
    scratch_database,
    service_env,
    stop_process,
    wait_for,
)
from devtools.samples import child, sample_event
from devtools.synthetic import generate
from services.tracking.stream.app import CHILDREN_TABLE, MIGRATIONS, app_id
from shared.db import make_engine, migrate
from shared.events.catalogue import decode_inbound, encode_event
from shared.kafka import aiokafka_config, ensure_topics, kafka_python_config
from shared.settings import Settings
from shared.topics import CASE_TRANSITIONS, CHILD_EVENTS, DEAD_LETTER, INTAKE, intake_key

# The topic between the two do-nothing agents of faust's floor (bench/faust_floor.py), like child-events.
FLOOR_HOP = dataclasses.replace(CHILD_EVENTS, base_name="bench.faust-floor-hop.v1")
EVENTS_PER_PUPIL = 0.42  # what devtools.synthetic yields in a year (to size the population for N events)


def synthetic_intake(n_events: int, seed: int = 42) -> list[tuple[bytes, bytes]]:
    """The first ``n_events`` of a synthetic year for two LAs, as the referral service publishes them."""
    pupils = int(n_events / EVENTS_PER_PUPIL / 2) + 100
    pop = generate(las=2, pupils_per_la=pupils, seed=seed)
    envelopes = [decode_inbound(e) for e in pop.events[:n_events]]
    return [(intake_key(e), encode_event(e)) for e in envelopes]


async def raw_consume(settings: Settings, topic: str, total: int) -> dict[str, float]:
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(
        topic,
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        max_poll_records=2000,
        **aiokafka_config(settings),
    )
    await consumer.start()
    seen = 0
    started = time.perf_counter()
    try:
        while seen < total:
            for records in (await consumer.getmany(timeout_ms=1000, max_records=2000)).values():
                for record in records:
                    decode_inbound(record.value)
                    seen += 1
    finally:
        await consumer.stop()
    seconds = time.perf_counter() - started
    return {"events": seen, "seconds": round(seconds, 2), "per_second": round(seen / seconds, 1)}


def start_worker(settings: Settings, log_path: Path, **extra_env: str) -> subprocess.Popen[bytes]:
    env = service_env(settings, CME_TRACKING_STORE="rocksdb", **extra_env)
    with open(log_path, "ab") as out:
        argv = [str(BIN / "cme-tracking"), "worker"]
        return subprocess.Popen(argv, env=env, stdout=out, stderr=out)  # noqa: S603 - our own entry point


def faust_floor(
    settings: Settings, topic: str, total: int, timeout_s: float, forward_to: str | None = None
) -> dict[str, Any]:
    """A do-nothing faust agent on the same topic, a process as the worker is (``bench/faust_floor.py``);
    with ``forward_to``, two agents and a topic between them: the worker's shape (identity, child-events,
    the case agent)."""
    out = Path(settings.data_dir) / f"faust-floor-{uuid.uuid4().hex[:6]}.json"
    argv = [str(BIN / "python"), "-m", "bench.faust_floor", "--topic", topic, "--total", str(total)]
    if forward_to:
        argv += ["--forward-to", forward_to]
    with open(Path(settings.data_dir) / "faust-floor.log", "ab") as log_file:
        proc = subprocess.Popen(  # noqa: S603 - our own module
            [*argv, "--out", str(out)], env=service_env(settings), stdout=log_file, stderr=log_file
        )
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        stop_process(proc)
    if not out.exists():
        raise RuntimeError(f"the do-nothing faust agent did not read {total} events (exit {proc.returncode})")
    result: dict[str, Any] = orjson.loads(out.read_bytes())
    return result


def timeline_count(engine: Any, ids: list[str]) -> int:
    try:
        with engine.connect() as conn:
            return int(
                conn.execute(
                    text("SELECT count(*) FROM tracking_timeline WHERE event_id = ANY(:ids)"), {"ids": ids}
                ).scalar_one()
            )
    except Exception:  # the worker has not migrated yet
        return 0


def worker_throughput(
    settings: Settings, records: list[tuple[bytes, bytes]], timeout_s: float
) -> dict[str, Any]:
    ids = [str(orjson.loads(v)["event_id"]) for _, v in records]
    engine = make_engine(settings.database_url)
    proc = start_worker(settings, Path(settings.data_dir) / "tracking-worker.log")
    launched = time.perf_counter()
    first_at: float | None = None
    first_count = done = 0
    try:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and proc.poll() is None:
            done = timeline_count(engine, ids)
            now = time.perf_counter()
            if first_at is None and done > 0:
                first_at, first_count = now, done
            if done >= len(ids):
                break
            time.sleep(0.5)
        finished = time.perf_counter()
    finally:
        stop_process(proc)
        engine.dispose()
    if first_at is None or done < len(ids):
        raise RuntimeError(f"tracking worker processed {done} of {len(ids)} events before the deadline")
    steady = max(finished - first_at, 1e-6)
    return {
        "events": len(ids),
        "seconds_from_launch": round(finished - launched, 2),
        "seconds_steady": round(steady, 2),
        "per_second": round((len(ids) - first_count) / steady, 1),
        "per_second_incl_startup": round(len(ids) / (finished - launched), 1),
    }


def lone_event_latency(
    settings: Settings, records: list[tuple[bytes, bytes]], timeout_s: float, **worker_env: str
) -> dict[str, Any]:
    """Milliseconds from producing one event (nothing else in flight) to its timeline row, p50/max over
    ``records`` sent one after the other: what micro-batching costs a lone event (the batch linger)."""
    from kafka import KafkaProducer

    from shared.kafka import kafka_python_config

    engine = make_engine(settings.database_url)
    proc = start_worker(settings, Path(settings.data_dir) / "tracking-latency.log", **worker_env)
    producer = KafkaProducer(acks="all", enable_idempotence=True, **kafka_python_config(settings))
    topic = INTAKE.name(settings)
    millis: list[float] = []
    try:
        for i, (key, value) in enumerate(records):
            event_id = str(orjson.loads(value)["event_id"])
            started = time.perf_counter()
            producer.send(topic, key=key, value=value).get(timeout=30)
            wait_for(lambda e=event_id: timeline_count(engine, [e]) == 1, timeout_s, 0.005)  # type: ignore[misc]
            if i:  # the first one waits for the worker to start
                millis.append((time.perf_counter() - started) * 1000)
    finally:
        producer.close()
        stop_process(proc)
        engine.dispose()
    millis.sort()
    return {
        "events": len(millis),
        "p50_ms": round(millis[len(millis) // 2], 1),
        "max_ms": round(millis[-1], 1),
    }


def case_store_bytes(database_url: str) -> dict[str, Any]:
    engine = make_engine(database_url)
    try:
        with engine.connect() as conn:
            children = int(conn.execute(text("SELECT count(*) FROM tracking_children")).scalar_one())
            tables = conn.execute(
                text(
                    "SELECT relname, pg_total_relation_size(c.oid) FROM pg_class c "
                    "JOIN pg_namespace n ON n.oid = c.relnamespace "
                    "WHERE n.nspname = 'public' AND c.relkind = 'r' AND relname LIKE 'tracking_%'"
                )
            ).all()
    finally:
        engine.dispose()
    sizes = {str(name): int(size) for name, size in tables}
    total = sum(sizes.values())
    return {
        "children": children,
        "bytes_total": total,
        "bytes_per_child": total / max(children, 1),
        "tables": sizes,
    }


def read_changelog(settings: Settings, limit: int) -> list[tuple[bytes, bytes]]:
    from kafka import KafkaConsumer, TopicPartition

    topic = f"{app_id(settings)}-{CHILDREN_TABLE}-changelog"
    consumer = KafkaConsumer(enable_auto_commit=False, **kafka_python_config(settings))
    try:
        parts = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        latest: dict[bytes, bytes] = {}
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(latest) < limit:
            batches = consumer.poll(timeout_ms=1000)
            if not batches:
                break
            for batch in batches.values():
                for r in batch:
                    if r.key and r.value:
                        latest[r.key] = r.value
        return list(latest.items())[:limit]
    finally:
        consumer.close()


def changelog_copies(
    templates: list[tuple[bytes, bytes]], count: int, start: int
) -> list[tuple[bytes, bytes]]:
    """``count`` child records made from real ones with new child ids (the changelog's key and value)."""
    out = []
    for i in range(count):
        key, value = templates[i % len(templates)]
        old_id = key.strip(b'"')  # the table's keys are JSON strings: keep the quoting, swap the id
        new_id = str(uuid.UUID(int=(1 << 100) + start + i)).encode()
        out.append((key.replace(old_id, new_id), value.replace(old_id, new_id)))
    return out


def probe_restart(settings: Settings, cold: bool, timeout_s: float) -> float:
    """Seconds from launching the worker to a new event being in the case store."""
    if cold:
        shutil.rmtree(Path(settings.data_dir) / f"{settings.topic_prefix}tracking-faust", ignore_errors=True)
    kid = child(1, la_code="801", upn=None, la_child_id=f"probe-{uuid.uuid4().hex[:12]}")
    probe = sample_event("pupil-left-roll", la_code="801", kid=kid)
    engine = make_engine(settings.database_url)
    proc = start_worker(settings, Path(settings.data_dir) / "tracking-worker.log")
    launched = time.perf_counter()
    try:
        produce_fast(settings, INTAKE.name(settings), [(intake_key(probe), encode_event(probe))])
        wait_for(lambda: timeline_count(engine, [str(probe.event_id)]) == 1, timeout_s, 0.2)
        return time.perf_counter() - launched
    finally:
        stop_process(proc)
        engine.dispose()


def fit(points: list[tuple[int, float]]) -> tuple[float, float]:
    """Least squares t = a + b * n."""
    n = len(points)
    mx = sum(p[0] for p in points) / n
    my = sum(p[1] for p in points) / n
    var = sum((p[0] - mx) ** 2 for p in points)
    b = sum((p[0] - mx) * (p[1] - my) for p in points) / var if var else 0.0
    return my - b * mx, b


def run(workdir: Path, n_events: int, recovery_sizes: list[int], timeout_s: float) -> list[Row]:
    rows: list[Row] = []
    with scratch_database("tracking") as db_url:
        settings = bench_settings(db_url, workdir / "tracking")
        Path(settings.data_dir).mkdir(parents=True, exist_ok=True)
        ensure_topics(settings, (INTAKE, CHILD_EVENTS, CASE_TRANSITIONS, DEAD_LETTER, FLOOR_HOP))
        migrate(db_url, MIGRATIONS, "tracking")
        try:
            log(f"tracking: generating and pre-loading {n_events} synthetic intake events")
            records = synthetic_intake(n_events)
            produce_fast(settings, INTAKE.name(settings), records)
            baseline = asyncio.run(raw_consume(settings, INTAKE.name(settings), len(records)))
            log(f"tracking: raw aiokafka consume+decode {baseline['per_second']} events/s; now faust's floor")
            floor = faust_floor(settings, INTAKE.name(settings), len(records), timeout_s)
            two_hops = faust_floor(
                settings, INTAKE.name(settings), len(records), timeout_s, forward_to=FLOOR_HOP.name(settings)
            )
            log(
                f"tracking: do-nothing faust agent {floor['per_second']} events/s, two agents and a topic "
                f"{two_hops['per_second']} events/s; now the worker"
            )
            worker = worker_throughput(settings, records, timeout_s)
            log(f"tracking: worker {worker['per_second']} events/s")
            rows.append(
                Row(
                    "tracking",
                    f"events/s Kafka -> case store ({len(records)} events, 2 partitions, 1 worker)",
                    worker["per_second"],
                    "events/s",
                    "raw aiokafka consume + decode_inbound",
                    baseline["per_second"],
                    "steady state (start-up excluded)",
                    {"worker": worker, "baseline": baseline},
                )
            )
            rows.append(
                Row(
                    "tracking",
                    f"events/s, a do-nothing faust agent on the same topic ({len(records)} events, decode, "
                    "micro-batches)",
                    floor["per_second"],
                    "events/s",
                    "raw aiokafka consume + decode_inbound",
                    baseline["per_second"],
                    "faust's own per-record path: the ceiling of any faust agent here",
                    {"floor": floor, "baseline": baseline},
                )
            )
            rows.append(
                Row(
                    "tracking",
                    f"events/s, two do-nothing faust agents and a topic between them ({len(records)} events)",
                    two_hops["per_second"],
                    "events/s",
                    "raw aiokafka consume + decode_inbound",
                    baseline["per_second"],
                    "the worker's shape (identity -> child-events -> case agent), doing nothing",
                    {"floor": two_hops, "baseline": baseline},
                )
            )
            rows.append(
                Row(
                    "tracking",
                    f"events/s Kafka -> case store against the same shape doing nothing ({len(records)} "
                    "events)",
                    worker["per_second"],
                    "events/s",
                    "two do-nothing faust agents and a topic, above",
                    two_hops["per_second"],
                    "what the worker's own work costs, faust's share taken out",
                    {"worker": worker, "floor": two_hops},
                )
            )
            store = case_store_bytes(db_url)
            rows.append(
                Row(
                    "memory",
                    "case store (PostgreSQL) bytes per tracked child",
                    round(store["bytes_per_child"]),
                    "B",
                    note=f"{store['children']} children measured; "
                    f"{store['bytes_per_child'] * 1e6 / 2**30:.2f} GiB at 1M (linear)",
                    extra=store,
                )
            )
            if recovery_sizes:
                rows += recovery(settings, recovery_sizes, timeout_s)
        finally:
            delete_topics(settings)
    return rows


def recovery(settings: Settings, sizes: list[int], timeout_s: float) -> list[Row]:
    templates = read_changelog(settings, 2000)
    if not templates:
        raise RuntimeError("the tracking changelog is empty")
    log(f"tracking recovery: {len(templates)} real child records as templates")
    warm = probe_restart(settings, cold=False, timeout_s=timeout_s)
    log(f"tracking recovery: warm restart {warm:.1f}s")
    changelog = f"{app_id(settings)}-{CHILDREN_TABLE}-changelog"
    loaded = len(templates)  # the real records are in the changelog too
    points: list[tuple[int, float]] = []
    for size in sorted(sizes):
        extra = size - loaded
        if extra > 0:
            produce_fast(settings, changelog, changelog_copies(templates, extra, loaded))
            loaded = size
        seconds = probe_restart(settings, cold=True, timeout_s=timeout_s)
        points.append((loaded, seconds))
        log(f"tracking recovery: {loaded} children, cold restart {seconds:.1f}s")
    a, b = fit(points) if len(points) > 1 else (warm, (points[0][1] - warm) / points[0][0])
    at_million = a + b * 1_000_000
    rows = [
        Row(
            "recovery",
            f"restart, local store lost, {n:,} children in the changelog",
            round(s, 1),
            "s",
            "restart with local RocksDB kept",
            round(warm, 1),
            "process start -> a new event in the case store",
        )
        for n, s in points
    ]
    rows.append(
        Row(
            "recovery",
            "restart, local store lost, 1,000,000 children (extrapolated)",
            round(at_million, 1),
            "s",
            "restart with local RocksDB kept",
            round(warm, 1),
            f"linear fit t = {a:.1f}s + {b * 1e6:.1f}s per million over {[n for n, _ in points]}",
            {"points": points, "intercept_s": a, "seconds_per_child": b},
        )
    )
    return rows


def main(argv: list[str] | None = None) -> None:
    """Throughput alone (no recovery), e.g. ``python -m bench.tracking --events 3000``."""
    import argparse
    import tempfile

    parser = argparse.ArgumentParser(description="tracking worker throughput vs raw aiokafka consume")
    parser.add_argument("--events", type=int, default=3000)
    parser.add_argument(
        "--recovery", type=int, nargs="*", default=[], help="recovery sizes (none by default)"
    )
    parser.add_argument("--timeout", type=float, default=900)
    parser.add_argument(
        "--latency",
        type=int,
        default=0,
        help="instead: a lone event's latency over N events sent one at a time, batches vs one at a time",
    )
    args = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="cme-bench-tracking-"))
    if args.latency:
        print(orjson.dumps(latency(workdir, args.latency, args.timeout)).decode())
        return
    for row in run(workdir, args.events, args.recovery, args.timeout):
        print(orjson.dumps(row.as_dict()).decode())


def latency(workdir: Path, n_events: int, timeout_s: float) -> dict[str, Any]:
    """Lone-event latency with the default micro-batches and with batches of one (each on a fresh prefix)."""
    out: dict[str, Any] = {}
    for label, env in (("batches", {}), ("one_at_a_time", {"CME_TRACKING_BATCH_MAX": "1"})):
        with scratch_database("tracking_latency") as db_url:
            settings = bench_settings(db_url, workdir / f"latency-{label}")
            Path(settings.data_dir).mkdir(parents=True, exist_ok=True)
            ensure_topics(settings, (INTAKE, CHILD_EVENTS, CASE_TRANSITIONS, DEAD_LETTER, FLOOR_HOP))
            migrate(db_url, MIGRATIONS, "tracking")
            try:
                out[label] = lone_event_latency(settings, synthetic_intake(n_events + 1), timeout_s, **env)
            finally:
                delete_topics(settings)
        log(f"tracking latency {label}: {out[label]}")
    return out


if __name__ == "__main__":
    main()
