"""Marks per second through the attendance processor, against a raw aiokafka consume-and-decode loop in the
same run, and the memory per pupil of its state.

1. pure engine: ``AttendanceEngine.apply`` on in-memory states (no JSON, no serialisation);
2. handler: what the agent does per record apart from I/O: JSON decode and validation of the mark, state
   from bytes, apply, state to bytes (``MarkHandler.handle``);
   fold: the same per batch (``MarkHandler.fold``, ``--batch-max`` marks): each pupil's state decoded and
   encoded once per batch, as the worker does;
3. baseline: a raw aiokafka consumer reading the marks from the broker and decoding each with the shared
   schema (``AttendanceMark.model_validate_json``), nothing else;
4. faust worker: the real ``cme-attendance worker`` process (RocksDB store, batches of ``--batch-max`` or
   ``--batch-linger`` seconds) consuming the same topic; the rate is measured from its consumer group's
   committed offsets (start-up excluded);
5. memory: states for ``--memory-pupils`` pupils x a term of marks, built from realistic templates, measured
   with tracemalloc (Python objects, as held in memory) and as stored bytes (what RocksDB keeps).

    .venv/bin/python -m bench.attendance --kafka 127.0.0.1:19092 --pupils 1000 --days 30

Prints a table and writes bench/results/attendance.json. The broker, producer and consumers share the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
import tracemalloc
import uuid
from datetime import UTC, date, datetime
from datetime import time as dtime
from pathlib import Path
from typing import Any

import orjson

from devtools.samples import make_upn
from services.attendance.codes import CODE_BYTE
from services.attendance.fold import MarkHandler
from services.attendance.rules import AttendanceRules
from services.attendance.settings import AttendanceSettings
from services.attendance.state import AttendanceEngine, PupilAttendance, SessionMark
from services.attendance.worker import app_id
from shared.events.attendance import AttendanceCode, AttendanceMark
from shared.events.catalogue import encode_event
from shared.events.envelope import Source
from shared.kafka import aiokafka_config, ensure_topics, kafka_python_config
from shared.school_calendar import CalendarRegistry
from shared.settings import PROJECT_ROOT
from shared.topics import ATTENDANCE, DEAD_LETTER, INTAKE

RESULTS = (
    Path(os.environ.get("CME_BENCH_RESULTS_DIR", PROJECT_ROOT / "bench" / "results")) / "attendance.json"
)
LA = "801"
URN = "108000"
TERM_START = date(2024, 9, 4)  # autumn 2024 on the default calendar (2-3 Sep are INSET days)
CAL = CalendarRegistry().calendar_for(LA)
# A realistic mix: most pupils attend; some miss the odd session; a few are persistently or long absent.
PROFILES = (("attends", 0.80), ("odd_absence", 0.12), ("persistent", 0.06), ("missing", 0.02))


def school_days(n: int) -> list[date]:
    out = [CAL.add_school_days(TERM_START, 0)]
    while len(out) < n:
        out.append(CAL.next_school_day(out[-1]))
    return out


def pupil_codes(profile: str, rng: random.Random) -> tuple[str, str]:
    if profile == "missing":
        return ("N", "N") if rng.random() < 0.5 else ("O", "O")
    p_absent = {"attends": 0.01, "odd_absence": 0.05, "persistent": 0.15}[profile]
    am = rng.choice("INOMC") if rng.random() < p_absent else "/"
    pm = am if am != "/" and rng.random() < 0.8 else "\\"
    return am, pm


def make_marks(pupils: int, days: int, seed: int = 1) -> list[SessionMark]:
    """Marks in the order a national feed delivers them: day by day, every pupil's AM then PM."""
    rng = random.Random(seed)
    upns = [make_upn(LA, 2000 + i // 999, 14, i % 999 + 1) for i in range(pupils)]
    profiles = rng.choices([p for p, _ in PROFILES], [w for _, w in PROFILES], k=pupils)
    marks: list[SessionMark] = []
    for d in school_days(days):
        for upn, profile in zip(upns, profiles, strict=True):
            am, pm = pupil_codes(profile, rng)
            for is_pm, code in ((False, am), (True, pm)):
                at = datetime.combine(d, dtime(13 if is_pm else 9, 5), tzinfo=UTC)
                marks.append(
                    SessionMark(upn, URN, LA, d, is_pm, CODE_BYTE[AttendanceCode(code)], at, 0, uuid.uuid4())
                )
    return marks


def to_event(m: SessionMark) -> AttendanceMark:
    code = next(c for c, b in CODE_BYTE.items() if b == m.code)
    return AttendanceMark(
        event_id=m.event_id,
        occurred_at=m.occurred_at,
        source=Source(system="bench-mis", la_code=LA, school_urn=URN),
        payload={
            "upn": m.upn,
            "school_urn": URN,
            "date": m.day,
            "session": "PM" if m.pm else "AM",
            "code": code,
        },
    )


def bench_engine(marks: list[SessionMark]) -> dict[str, Any]:
    engine = AttendanceEngine(CalendarRegistry(), AttendanceRules())
    states: dict[str, PupilAttendance] = {}
    emitted = 0
    start = time.perf_counter()
    for m in marks:
        state = states.get(m.upn)
        if state is None:
            state = states[m.upn] = PupilAttendance()
        emitted += len(engine.apply(state, m).events)
    seconds = time.perf_counter() - start
    return {"marks": len(marks), "seconds": seconds, "per_second": len(marks) / seconds, "emitted": emitted}


def bench_handler(records: list[tuple[bytes, bytes]]) -> dict[str, Any]:
    handler = MarkHandler(AttendanceEngine(CalendarRegistry(), AttendanceRules()))
    table: dict[bytes, bytes] = {}
    emitted = 0
    start = time.perf_counter()
    for key, value in records:
        handled = handler.handle(key, value, table.get(key))
        if handled.state is not None:
            table[key] = handled.state
        emitted += len(handled.emitted)
    seconds = time.perf_counter() - start
    n = len(records)
    return {"marks": n, "seconds": seconds, "per_second": n / seconds, "emitted": emitted}


def bench_fold(records: list[tuple[bytes, bytes]], batch: int) -> dict[str, Any]:
    """What the agent does per batch apart from I/O: ``MarkHandler.fold`` over consecutive records (the
    worker folds per partition; here all records are one partition), each pupil's state once per batch."""
    handler = MarkHandler(AttendanceEngine(CalendarRegistry(), AttendanceRules()))
    table: dict[bytes, bytes] = {}
    emitted = 0
    start = time.perf_counter()
    for i in range(0, len(records), batch):
        folded = handler.fold(records[i : i + batch], table.get)
        table.update(folded.states)
        emitted += len(folded.emitted)
    seconds = time.perf_counter() - start
    n = len(records)
    return {"marks": n, "seconds": seconds, "per_second": n / seconds, "emitted": emitted, "batch": batch}


def bench_memory(pupils: int, days: int) -> dict[str, Any]:
    """States of ``pupils`` pupils after a term: built from 200 simulated pupils, then copied via bytes."""
    templates_marks = make_marks(200, days, seed=2)
    engine = AttendanceEngine(CalendarRegistry(), AttendanceRules())
    templates: dict[str, PupilAttendance] = {}
    for m in templates_marks:
        engine.apply(templates.setdefault(m.upn, PupilAttendance()), m)
    blobs = [s.to_bytes() for s in templates.values()]
    stored = sum(len(b) for b in blobs) / len(blobs)
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    held = {i: PupilAttendance.from_bytes(blobs[i % len(blobs)]) for i in range(pupils)}
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    assert len(held) == pupils
    return {
        "pupils": pupils,
        "school_days": days,
        "in_memory_bytes_per_pupil": (after - before) / pupils,
        "stored_bytes_per_pupil": stored,
    }


def produce(settings: AttendanceSettings, records: list[tuple[bytes, bytes]]) -> None:
    from kafka import KafkaProducer

    producer = KafkaProducer(
        acks="all",
        enable_idempotence=True,
        linger_ms=20,
        batch_size=256 * 1024,
        **kafka_python_config(settings),
    )
    topic = ATTENDANCE.name(settings)
    for key, value in records:
        producer.send(topic, key=key, value=value)
    producer.flush()
    producer.close()


async def raw_consume(settings: AttendanceSettings, total: int) -> dict[str, Any]:
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(
        ATTENDANCE.name(settings), group_id=None, auto_offset_reset="earliest", enable_auto_commit=False,
        max_poll_records=2000, **aiokafka_config(settings),
    )  # fmt: skip
    await consumer.start()
    seen = 0
    start = time.perf_counter()
    try:
        while seen < total:
            batches = await consumer.getmany(timeout_ms=1000, max_records=2000)
            for records in batches.values():
                for record in records:
                    AttendanceMark.model_validate_json(record.value)
                    seen += 1
    finally:
        await consumer.stop()
    seconds = time.perf_counter() - start
    return {"marks": seen, "seconds": seconds, "per_second": seen / seconds}


def committed(settings: AttendanceSettings) -> int:
    """Offsets the worker's consumer group has committed on the marks topic (read without joining it)."""
    from kafka import KafkaConsumer, TopicPartition

    cfg = kafka_python_config(settings)
    consumer = KafkaConsumer(group_id=app_id(settings), enable_auto_commit=False, **cfg)
    try:
        topic = ATTENDANCE.name(settings)
        parts = consumer.partitions_for_topic(topic) or set()
        return sum(consumer.committed(TopicPartition(topic, p)) or 0 for p in parts)
    finally:
        consumer.close()


def faust_worker(settings: AttendanceSettings, total: int, timeout_s: float) -> dict[str, Any]:
    env = {
        **os.environ,
        "CME_ATTENDANCE_BATCH_MAX": str(settings.attendance_batch_max),
        "CME_ATTENDANCE_BATCH_LINGER_S": str(settings.attendance_batch_linger_s),
        "CME_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
        "CME_TOPIC_PREFIX": settings.topic_prefix,
        "CME_TOPIC_PARTITIONS": str(settings.topic_partitions),
        "CME_DATA_DIR": str(settings.data_dir),
        "CME_ATTENDANCE_STORE": "rocksdb",
        "CME_LOG_LEVEL": "WARNING",
    }
    worker = subprocess.Popen(
        [sys.executable, "-m", "services.attendance.main", "worker"],
        cwd=PROJECT_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + timeout_s
        first_at, first_offset = None, 0
        done = 0
        while time.monotonic() < deadline:
            done = committed(settings)
            now = time.perf_counter()
            if first_at is None and done > 0:
                first_at, first_offset = now, done
            if done >= total:
                break
            time.sleep(0.25)
        end = time.perf_counter()
    finally:
        worker.terminate()
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            worker.kill()
    if first_at is None or done < total:
        raise RuntimeError(f"faust worker committed {done} of {total} marks before the deadline")
    seconds = end - first_at
    return {"marks": done - first_offset, "seconds": seconds, "per_second": (done - first_offset) / seconds}


def main() -> None:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=formatter)
    parser.add_argument("--kafka", default=os.environ.get("CME_KAFKA_BOOTSTRAP", "127.0.0.1:19092"))
    parser.add_argument("--pupils", type=int, default=1000)
    parser.add_argument("--days", type=int, default=30, help="school days of marks (two sessions a day)")
    parser.add_argument("--engine-pupils", type=int, default=5000)
    parser.add_argument("--memory-pupils", type=int, default=100_000)
    parser.add_argument("--term-days", type=int, default=70, help="a term of school days for the memory test")
    parser.add_argument("--partitions", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=600)
    defaults = AttendanceSettings.model_fields
    parser.add_argument("--batch-max", type=int, default=defaults["attendance_batch_max"].default)
    parser.add_argument(
        "--batch-linger", type=float, default=defaults["attendance_batch_linger_s"].default, help="seconds"
    )
    args = parser.parse_args()

    engine_marks = make_marks(args.engine_pupils, args.term_days)
    engine = bench_engine(engine_marks)
    del engine_marks
    marks = make_marks(args.pupils, args.days, seed=3)
    records = [(m.upn.encode(), encode_event(to_event(m))) for m in marks]
    handler = bench_handler(records)
    fold = bench_fold(records, args.batch_max)
    memory = bench_memory(args.memory_pupils, args.term_days)

    tmp = Path(tempfile.mkdtemp(prefix="cme-bench-attendance-"))
    settings = AttendanceSettings(
        kafka_bootstrap=args.kafka, topic_prefix=f"bench{uuid.uuid4().hex[:8]}-",
        topic_partitions=args.partitions, data_dir=tmp,
        attendance_batch_max=args.batch_max, attendance_batch_linger_s=args.batch_linger,
    )  # fmt: skip
    ensure_topics(settings, (ATTENDANCE, INTAKE, DEAD_LETTER))
    produce(settings, records)
    baseline = asyncio.run(raw_consume(settings, len(records)))
    worker = faust_worker(settings, len(records), args.timeout)

    rows = [
        ("raw aiokafka consume + decode (baseline)", baseline),
        ("faust worker from Kafka (RocksDB)", worker),
        ("handler: decode + state bytes + apply", handler),
        (f"fold: batches of {args.batch_max}, state once per pupil", fold),
        ("pure engine apply (in memory)", engine),
    ]
    print(f"\n{'path':<44} {'marks':>9} {'seconds':>8} {'marks/s':>10} {'vs baseline':>12}")
    for name, r in rows:
        ratio = r["per_second"] / baseline["per_second"]
        print(f"{name:<44} {r['marks']:>9} {r['seconds']:>8.2f} {r['per_second']:>10.0f} {ratio:>11.2f}x")
    print(
        f"\nstate per pupil after {memory['school_days']} school days ({memory['pupils']} pupils): "
        f"{memory['in_memory_bytes_per_pupil']:.0f} B in memory, "
        f"{memory['stored_bytes_per_pupil']:.0f} B stored"
    )
    national = 9_092_073 * 2 / 3600  # every pupil's two sessions delivered within an hour
    workers = national / worker["per_second"]
    print(f"national feed: {national:.0f} marks/s needed -> {workers:.1f} faust workers at the measured rate")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_bytes(
        orjson.dumps(
            {
                "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
                "params": vars(args),
                "baseline_raw_consume": baseline,
                "faust_worker": worker,
                "handler": handler,
                "fold": fold,
                "pure_engine": engine,
                "memory": memory,
                "national": {"marks_per_second_needed": national, "workers_at_measured_rate": workers},
            },
            option=orjson.OPT_INDENT_2,
        )
    )
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
