"""Escalation's consumer in-process on PostgreSQL (issue 21): what a child fact and a transition cost it.

An ``EscalationWorker``'s ``handle_records`` (the consumer's unit of work: one partition's records in one
transaction) is fed the records tracking publishes, built by tracking's own pure code
(``tests.support.escalation.replay_of``), in batches of up to ``--batch`` records of one topic partition
(as a consumer reading a backlog gets them), on a fresh database per pass (the test cluster, see
``bench.common``). Two loads:

- bulk: a school loading its roll, ``--bulk`` pupil-registered facts about as many children, as
  ``bench.e2e_sustained`` sends (no rule watches them; each opens an in-education case, one transition);
- year: a synthetic LA's school year (``devtools.synthetic``, ``--pupils``), child facts and the case
  transitions they cause.

Baseline, same run: decoding the same records alone (``decode_event``, and ``decode_inbound`` of a child
fact's inbound fact), which every consumer pays. Prints records/s of each kind, the ratio to the baseline,
the SQL statements and wall time per record, and a digest of the state each pass left (deadlines / children
/ cases: two versions of the code must print the same). ``--profile KIND`` adds cProfile of one more pass of
the first load, of the batches of child facts, of transitions or of all.

    .venv/bin/python -m bench.profile_escalation [--bulk 6000] [--pupils 2000] [--runs 2]
    .venv/bin/python -m bench.profile_escalation --only bulk --runs 0 --profile "child facts"
"""

from __future__ import annotations

import argparse
import cProfile
import hashlib
import pstats
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.engine import Engine

from bench.common import scratch_database
from bench.e2e_sustained import BULK_ESTAB, _kid
from devtools.samples import sample_event_dict
from devtools.synthetic import Population, generate
from services.escalation.app import load_deps, prepare_database
from services.escalation.settings import EscalationSettings
from services.escalation.timesource import SimulatedTime
from services.escalation.worker import EscalationWorker
from shared.consumer import Record
from shared.events.catalogue import decode_event, decode_inbound
from shared.events.internal import ChildFact
from shared.logs import configure_logging
from shared.topics import CHILD_EVENTS
from tests.support.escalation import ReplayInput, partition_of, replay_of

LA = "801"
PARTITIONS = 2
BULK_IDS = uuid.UUID("0b1c2d3e-4f50-4a6b-8c7d-9e0f1a2b3c4d")  # the bulk facts' ids, the same every run
PREFIX = "bench-"
SETTINGS = EscalationSettings(topic_prefix=PREFIX, topic_partitions=PARTITIONS)  # topic names only


@dataclass
class Load:
    name: str
    batches: list[list[Record]]
    facts: int
    records: int
    frozen: Any  # the simulated now: an hour after the last event (a backlog being read)


def batches_of(inputs: list[ReplayInput], size: int) -> list[list[Record]]:
    """Per topic partition, in order, up to ``size`` records a batch, the partitions taken in turn."""
    queues: dict[tuple[str, int], list[Record]] = {}
    for item in inputs:
        topic = item.topic.name(SETTINGS)
        partition = partition_of(item.key, PARTITIONS)
        queue = queues.setdefault((topic, partition), [])
        queue.append(Record(topic, partition, len(queue), item.key, item.value))
    batches: list[list[Record]] = []
    cursors = dict.fromkeys(queues, 0)
    while any(cursors[k] < len(q) for k, q in queues.items()):
        for key, queue in queues.items():
            start = cursors[key]
            if start < len(queue):
                batches.append(queue[start : start + size])
                cursors[key] = start + size
    return batches


def load_of(name: str, population: Population, size: int) -> Load:
    replay = replay_of(population)
    facts = sum(1 for i in replay.inputs if i.topic is CHILD_EVENTS)
    frozen = max(i.at for i in replay.inputs) + timedelta(hours=1)
    return Load(name, batches_of(replay.inputs, size), facts, len(replay.inputs), frozen)


def bulk_population(children: int) -> Population:
    events = [
        sample_event_dict(
            "pupil-registered", kid=_kid(BULK_ESTAB, i), la_code=LA, event_id=uuid.uuid5(BULK_IDS, str(i))
        )
        for i in range(children)
    ]
    return Population(seed=0, la_codes=[LA], schools=[], pupils=[], events=events)


FACTS, TRANSITIONS = "child facts", "transitions"


def kind_of(batch: list[Record]) -> str:
    return FACTS if batch[0].topic == CHILD_EVENTS.name(SETTINGS) else TRANSITIONS


def decode_pass(load: Load) -> dict[str, float]:
    """The baseline: decode every record (and a child fact's inbound fact) as the worker does first; seconds
    per kind of record."""
    seconds = dict.fromkeys((FACTS, TRANSITIONS), 0.0)
    for batch in load.batches:
        started = time.perf_counter()
        for raw in batch:
            item = decode_event(raw.value)
            if isinstance(item, ChildFact):
                decode_inbound(item.payload.fact)
        seconds[kind_of(batch)] += time.perf_counter() - started
    return seconds


@dataclass
class Pass:
    seconds: dict[str, float]  # per kind of record (a batch holds one topic partition's records)
    statements: dict[str, int]
    records: dict[str, int]
    digest: str


def state_digest(engine: Engine) -> str:
    """A digest of what the pass decided and remembered (clocks, escalations, per-child context), to check
    that two versions of the code decide the same: deadlines/children/cases."""
    queries = [
        "SELECT child_id, la_code, rule_id, kind, status, due_at, end_reason FROM escalation_deadlines"
        " ORDER BY 1, 3, 6, 4",
        "SELECT child_id, la_code, has_social_worker, social_care_status, vulnerabilities,"
        " safeguarding_concern FROM escalation_children ORDER BY 1, 2",
        "SELECT child_id, la_code, state, vulnerabilities, safeguarding_concern, resolutions"
        " FROM escalation_cases ORDER BY 1, 2",
    ]
    digests = []
    with engine.connect() as conn:
        for query in queries:
            digest = hashlib.sha256()
            for row in conn.execute(text(query)):
                digest.update(repr(tuple(row)).encode())
            digests.append(digest.hexdigest()[:6])
    return "/".join(digests)


def handle_pass(load: Load, profile: cProfile.Profile | None = None, profiled: str = "all") -> Pass:
    """Every batch through a fresh worker's ``handle_records`` on a fresh database (``profile``: of the
    batches of the ``profiled`` kind)."""
    with scratch_database("profile_escalation") as url, tempfile.TemporaryDirectory() as tmp:
        settings = EscalationSettings(
            topic_prefix=PREFIX, topic_partitions=PARTITIONS, database_url=url, data_dir=Path(tmp)
        )
        engine = prepare_database(settings)
        worker = EscalationWorker(settings, engine, load_deps(settings), SimulatedTime(load.frozen))
        statements = 0

        def count(*_: Any) -> None:
            nonlocal statements
            statements += 1

        event.listen(engine, "before_cursor_execute", count)
        # Warm up (imports, the pool, statement caches) on the first record, not timed.
        batches = [load.batches[0][1:], *load.batches[1:]]
        worker.handle_records(load.batches[0][:1])
        result = Pass({}, {}, {}, "")
        for batch in batches:
            if not batch:
                continue
            kind, statements = kind_of(batch), 0
            profiling = profile if profiled in (kind, "all") else None
            if profiling is not None:
                profiling.enable()
            started = time.perf_counter()
            worker.handle_records(batch)
            elapsed = time.perf_counter() - started
            if profiling is not None:
                profiling.disable()
            result.seconds[kind] = result.seconds.get(kind, 0.0) + elapsed
            result.statements[kind] = result.statements.get(kind, 0) + statements
            result.records[kind] = result.records.get(kind, 0) + len(batch)
        result.digest = state_digest(engine)
        engine.dispose()
    return result


def measure(load: Load, runs: int) -> None:
    print(f"\n{load.name}: {load.records} records ({load.facts} child facts) in {len(load.batches)} batches")
    for run in range(runs):
        decode = decode_pass(load)
        handled = handle_pass(load)
        total = sum(handled.seconds.values())
        print(
            f"  run {run + 1}: all records {load.records / total:,.0f}/s, decode alone"
            f" {load.records / sum(decode.values()):,.0f}/s; state {handled.digest}"
        )
        for kind, seconds in handled.seconds.items():
            n = handled.records[kind]
            rate, base = n / seconds, n / decode[kind]
            print(
                f"    {kind}: {rate:,.0f}/s ({seconds / n * 1e6:,.0f} us and"
                f" {handled.statements[kind] / n:.2f} statements each), decode alone {base:,.0f}/s,"
                f" ratio {rate / base:.4f}"
            )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--bulk", type=int, default=6000, help="pupil-registered facts (children) in the bulk load"
    )
    parser.add_argument("--pupils", type=int, default=2000, help="pupils of the synthetic LA's year")
    parser.add_argument("--batch", type=int, default=200, help="records a batch (the consumer's max_records)")
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--only", choices=["bulk", "year"], default=None)
    parser.add_argument(
        "--profile",
        choices=[FACTS, TRANSITIONS, "all"],
        help="cProfile one more pass of the first load, of the batches of this kind",
    )
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--log-level", default="WARNING", help="the worker's log level (services at WARNING)")
    args = parser.parse_args()
    configure_logging("escalation", args.log_level)
    loads: Iterator[Load] = (
        load
        for load in (
            load_of("bulk", bulk_population(args.bulk), args.batch) if args.only in (None, "bulk") else None,
            load_of("year", generate(las=[LA], pupils_per_la=args.pupils, seed=21), args.batch)
            if args.only in (None, "year")
            else None,
        )
        if load is not None
    )
    first: Load | None = None
    for load in loads:
        first = first or load
        measure(load, args.runs)
    if args.profile and first is not None:
        profile = cProfile.Profile()
        handle_pass(first, profile, args.profile)
        stats = pstats.Stats(profile)
        for order in ("tottime", "cumulative"):
            print(f"\n--- {first.name}, by {order} ---")
            stats.sort_stats(order).print_stats(args.top)


if __name__ == "__main__":
    main()
