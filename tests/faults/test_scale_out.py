"""Scale out, proven: two instances of every service on the real broker and PostgreSQL under a synthetic
school year (devtools.synthetic: 4 LAs x 30,000 pupils, 51,485 events, plus an attendance feed straight onto
the bus), one instance of each pair killed with SIGKILL mid-stream and started again. The same input through
one instance of each service is the reference.

Checked: every event the API accepted reaches the case store; no escalation step is raised twice; no email is
sent twice but for SMTP's documented crash copy (a message the relay took just before the kill -9, resent
with its Message-ID: at most one extra per crash, of a delivery the ledger records once); and the case store
is that of the single-instance run. Escalation's clocks and alerts are compared
and printed, not asserted equal: they follow tracking's transitions, whose order follows arrival. So do the
transfer lapses escalation feeds back to tracking (case-clock-expired): counted and printed, left out of the
compared facts; every case still ends in the same state with the same outcome. Child and
case ids are internal (made when a child is first seen, which depends on arrival order), so the runs are
compared by what identifies a child outside the system: its LA and UPN. Timeline verdicts are what each fact
met on arrival (a fact that arrives after a later one is recorded as late), so the timeline is compared as the
set of facts per child, and the case by its state and context.

Escalation runs on simulated time frozen six weeks into the school year: every fact of the year goes
through escalation (its clocks are started, cancelled and kept, and compared between the runs), and the
clocks due by then fire, so notify delivers a few thousand alerts under the load, as the written policy for a
backlog derives them (docs/ESCALATION.md), the same whatever the arrival order or the crash. (Frozen after the
last event, a whole year of ladders would fire at once: ~25,000 emails, which on this machine is a test of
SMTP, not of scale-out.) CME_SCALE_PUPILS_PER_LA makes it smaller for a quick run while developing.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from kafka import KafkaProducer
from sqlalchemy import text

from devtools.localrun import SERVICES, ServiceProcess, log_tail, wait_ready
from devtools.synthetic import generate
from services.referral.clients import create_client
from services.referral.models import ClientKind
from shared.db import make_engine
from shared.events.catalogue import decode_event
from shared.kafka import ensure_topics, kafka_python_config
from shared.localstack.net import free_port
from shared.settings import Settings
from shared.topics import (
    ALERT_ACKS,
    ATTENDANCE,
    CASE_TRANSITIONS,
    CHILD_EVENTS,
    DEAD_LETTER,
    ESCALATIONS,
    INTAKE,
    TopicSpec,
)
from tests.support import attendance_feed
from tests.support.kafka import Pending, read_topic, wait_until, wait_while_progressing
from tests.support.pipeline import SIGNING_KEY, SmtpServer, body_of, set_clock, start_smtp, wait_until_settled

pytestmark = [pytest.mark.faults, pytest.mark.e2e]

# 30,000 a LA gives the synthetic year of 51,485 events (the size the issue asks for, run by hand: see
# docs/ARCHITECTURE.md, Operations); `make test` runs 3,000 a LA (5,144 events) to stay within CI's time.
PUPILS_PER_LA = int(os.environ.get("CME_SCALE_PUPILS_PER_LA", "3000"))
SEED = 11
FROZEN_AT = "2024-10-15T18:00:00+00:00"  # six weeks into the synthetic year (2024-09-02 to 2025-07-18)
SCALED = ("referral", "tracking", "escalation", "notify", "attendance")
BATCH = 250
CASE_LINK = re.compile(r"/cases/([0-9a-f-]{36})")
# Columns that are wall-clock times or internal ids: not part of what two runs must agree on.
INTERNAL = {"case_id", "child_id", "updated_at", "created_at", "merged_into", "id"}
# What a clock is, by the facts: not its ids, partition (a function of the internal child id) or wall times.
DEADLINE_COLUMNS = (
    "rule_id", "kind", "status", "due_at", "trigger_event_id", "step_index", "rule_fingerprint",
    "cancel_reason", "ended_at",
)  # fmt: skip


@dataclass
class Instance:
    name: str  # e.g. "tracking-2"
    service: ServiceProcess
    port: int
    data_dir: Path
    proc: subprocess.Popen[bytes] | None = None


@dataclass
class Deployment:
    """``replicas`` instances of each scaled service, sharing one broker prefix, one database, one clock."""

    kafka: Settings
    database_url: str
    tmp_path: Path
    smtp: SmtpServer
    replicas: int
    las: list[str]
    instances: list[Instance] = field(default_factory=list)
    accepted: set[str] = field(default_factory=set)
    refused: list[dict[str, Any]] = field(default_factory=list)
    held: set[str] = field(default_factory=set)  # killed on purpose: not restarted by the supervisor

    def __post_init__(self) -> None:
        self.tmp_path.mkdir(parents=True, exist_ok=True)
        self.clock = self.tmp_path / "now.txt"
        set_clock(self.clock, FROZEN_AT)
        self.log_dir = self.tmp_path / "logs"
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.env = {
            **os.environ,
            "CME_KAFKA_BOOTSTRAP": self.kafka.kafka_bootstrap,
            "CME_TOPIC_PREFIX": self.kafka.topic_prefix,
            "CME_TOPIC_PARTITIONS": str(self.kafka.topic_partitions),
            "CME_DATABASE_URL": self.database_url,
            "CME_SIGNING_KEY": SIGNING_KEY,
            "CME_LOG_JSON": "true",
            "CME_LOG_LEVEL": "WARNING",
            "CME_NOTIFY_SMTP_PORT": str(self.smtp.port),
            "CME_NOTIFY_POLL_INTERVAL_S": "0.2",
            "CME_ESCALATION_SIMULATED_TIME_FILE": str(self.clock),
            "CME_ESCALATION_TICK_S": "0.5",
            "CME_TRACKING_STORE": "rocksdb",
            "CME_ATTENDANCE_STORE": "rocksdb",
        }
        for spec in SERVICES:
            if spec.name not in SCALED:
                continue
            for n in range(1, self.replicas + 1):
                name = f"{spec.name}-{n}"
                self.instances.append(Instance(name, spec, free_port(), self.tmp_path / name))
        directory = "las:\n" + "".join(
            f'  "{la}":\n'
            "    email_channel: smtp\n"
            f"    people: [{{id: cw, name: Caseworker, email: cw@{la}.test}},"
            f" {{id: senior, name: Senior, email: senior@{la}.test}}]\n"
            f"    teams: [{{id: mash, name: MASH, email: mash@{la}.test}}]\n"
            "    roles: {caseworker: [person:cw], senior_cme_officer: [person:senior],"
            " childrens_social_care: [team:mash], police: [team:mash]}\n"
            for la in self.las
        )
        path = self.tmp_path / "directory.yaml"
        path.write_text(directory)
        subprocess.run(
            [str(Path(sys.executable).parent / "cme-notify"), "load-directory", str(path)],
            env=self.env, check=True, capture_output=True,
        )  # fmt: skip

    def of(self, service: str) -> list[Instance]:
        return [i for i in self.instances if i.service.name == service]

    def spawn(self, inst: Instance) -> None:
        inst.data_dir.mkdir(parents=True, exist_ok=True)
        env = {
            **self.env,
            f"CME_{inst.service.name.upper()}_PORT": str(inst.port),
            # Each instance its own local state (RocksDB folders of the faust workers).
            "CME_DATA_DIR": str(inst.data_dir),
        }
        log = open(self.log_dir / f"{inst.name}.log", "ab")  # noqa: SIM115 - owned by the child process
        inst.proc = subprocess.Popen(inst.service.argv(), env=env, stdout=log, stderr=subprocess.STDOUT)

    def wait_ready(self, inst: Instance, timeout_s: float = 600) -> None:
        assert inst.proc is not None
        url = f"http://127.0.0.1:{inst.port}/health/ready"
        wait_ready(url, timeout_s, inst.proc, self.log_dir / f"{inst.name}.log")

    def start(self) -> None:
        for inst in self.instances:
            self.spawn(inst)
        for inst in self.instances:
            self.wait_ready(inst)

    def kill9(self, inst: Instance) -> None:
        assert inst.proc is not None
        self.held.add(inst.name)
        inst.proc.send_signal(signal.SIGKILL)
        inst.proc.wait(timeout=10)

    def restart(self, inst: Instance) -> None:
        self.spawn(inst)
        self.held.discard(inst.name)

    def exited(self) -> list[str]:
        return [
            i.name for i in self.instances if i.name not in self.held and i.proc and i.proc.poll() is not None
        ]

    def stop(self) -> None:
        for inst in self.instances:
            if inst.proc and inst.proc.poll() is None:
                inst.proc.send_signal(signal.SIGTERM)
        for inst in self.instances:
            if inst.proc:
                try:
                    inst.proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    inst.proc.kill()
                    inst.proc.wait(timeout=10)

    # -- feeding -------------------------------------------------------------------------------------------

    def api_keys(self, events: list[dict[str, Any]]) -> dict[tuple[str, str | None], str]:
        """One client per sender (each school of the feed, and each LA's CME team), made in the database."""
        engine = make_engine(self.database_url)
        keys: dict[tuple[str, str | None], str] = {}
        try:
            for la, urn in sorted({_sender(e) for e in events}, key=str):
                kind = ClientKind.SCHOOL if urn else ClientKind.AGENCY
                name = f"{la}/{urn}"
                _, key = create_client(
                    engine, kind=kind, name=name, la_code=la, school_urn=urn, rate_per_s=1e6, burst=10**6
                )
                keys[(la, urn)] = key
        finally:
            engine.dispose()
        return keys

    def post(self, key: str, batch: list[dict[str, Any]], turn: int) -> None:
        """Post a batch until every item is accepted (or refused for cause), trying the referral instances in
        turn: a client of a scaled service retries on another replica when one is down."""
        apis = self.of("referral")
        deadline = time.monotonic() + 600
        pending = batch
        while pending:
            inst = apis[turn % len(apis)]
            turn += 1
            try:
                response = httpx.post(
                    f"http://127.0.0.1:{inst.port}/v1/events/batch",
                    json={"events": pending},
                    headers={"Authorization": f"Bearer {key}"},
                    timeout=30,
                )
            except httpx.HTTPError:
                response = None
            if response is not None and response.status_code == 200:
                retry = []
                for item in response.json()["results"]:
                    event = pending[item["index"]]
                    if item["outcome"] in ("accepted", "duplicate"):
                        self.accepted.add(event["event_id"])
                    elif item["status_code"] >= 500:
                        retry.append(event)
                    else:
                        self.refused.append({"event": event["event_type"], "errors": item["errors"]})
                pending = retry
            elif response is not None and response.status_code < 500 and response.status_code != 429:
                raise AssertionError(f"batch refused: {response.status_code} {response.text[:300]}")
            if pending:
                assert time.monotonic() < deadline, "a batch was not accepted within 600 s"
                time.sleep(0.3)

    def feed(
        self, events: list[dict[str, Any]], keys: dict[tuple[str, str | None], str], on_progress: Any
    ) -> None:
        """In event-time order, a slice at a time; within a slice each sender's events go as batches, four
        senders at once (as many MIS integrations would)."""
        with ThreadPoolExecutor(4) as pool:
            for start in range(0, len(events), 4 * BATCH):
                by_sender: dict[tuple[str, str | None], list[dict[str, Any]]] = defaultdict(list)
                for event in events[start : start + 4 * BATCH]:
                    by_sender[_sender(event)].append(event)
                jobs = [
                    pool.submit(self.post, keys[sender], batch[i : i + BATCH], n + i)
                    for n, (sender, batch) in enumerate(by_sender.items())
                    for i in range(0, len(batch), BATCH)
                ]
                for job in jobs:
                    job.result()
                on_progress(len(self.accepted))

    # -- reading the outcome ---------------------------------------------------------------------------------

    def rows(self, sql: str, **params: Any) -> list[dict[str, Any]]:
        engine = make_engine(self.database_url)
        try:
            with engine.connect() as conn:
                return [dict(r._mapping) for r in conn.execute(text(sql), params)]
        finally:
            engine.dispose()


def _sender(event: dict[str, Any]) -> tuple[str, str | None]:
    return event["source"]["la_code"], event["source"].get("school_urn")


def snapshot(dep: Deployment) -> dict[str, Any]:
    """What two runs of the same input must agree on, keyed by (LA, UPN) instead of internal ids."""

    def external(column: str, value: Any) -> str:
        """An event id the outside world sent stays itself; one tracking derived (a handover, its
        confirmation) is made from internal child ids, so only its existence is compared."""
        if column.endswith("event_id") and value is not None and str(value) not in dep.accepted:
            return "derived"
        return str(value)

    upn_of = {
        r["child_id"]: (r["la_code"], r["value"])
        for r in dep.rows("SELECT child_id, la_code, value FROM tracking_identifiers WHERE kind = 'upn'")
    }
    # A transfer clock's lapse (case-clock-expired) is escalation's decision fed back to tracking: like the
    # clocks and alerts it follows tracking's transitions, whose order follows arrival (issue 22), so it is
    # counted and printed, not compared; the facts the world sent and the case each ends in are compared.
    lapses: Counter[Any] = Counter()
    facts: dict[Any, Counter[tuple[str, str]]] = defaultdict(Counter)
    for row in dep.rows("SELECT child_id, event_id, event_type FROM tracking_timeline"):
        child = upn_of.get(row["child_id"], ("?", row["child_id"]))
        if row["event_type"] == "case-clock-expired":
            lapses[child] += 1
            continue
        facts[child][(external("event_id", row["event_id"]), row["event_type"])] += 1
    cases = {}
    case_key: dict[str, Any] = {}
    for row in dep.rows("SELECT * FROM tracking_cases"):
        key = upn_of.get(row["child_id"], ("?", row["child_id"]))
        case_key[row["case_id"]] = key
        case = {k: external(k, v) for k, v in row.items() if k not in INTERNAL}
        case["facts_applied"] = str(int(row["facts_applied"]) - lapses[key])
        cases[key] = tuple(sorted(case.items()))
    clocks: Counter[tuple[Any, ...]] = Counter()
    for row in dep.rows("SELECT * FROM escalation_deadlines"):
        clocks[(upn_of.get(row["child_id"]), *(str(row.get(c)) for c in DEADLINE_COLUMNS))] += 1
    records = read_topic(dep.kafka, ESCALATIONS.name(dep.kafka), expect=0, timeout_s=300)
    steps: Counter[tuple[Any, ...]] = Counter()
    # Within a run, one event per escalation and step (a recurring rule, such as the review of an open case,
    # raises a new escalation each period: several per child and rule are right, two for one step are not).
    per_step: Counter[tuple[str, str, int]] = Counter()
    seen_ids: set[str] = set()
    for record in records:
        event = decode_event(record.value)
        if str(event.event_id) in seen_ids:
            continue  # a redelivery of one event is the same event
        seen_ids.add(str(event.event_id))
        p = event.payload
        per_step[(str(p.escalation_id), p.action.value, p.step_index)] += 1
        steps[(upn_of.get(str(p.child_id)), p.rule_id, p.action.value, p.level.value, p.step_index)] += 1
    mail: Counter[tuple[Any, ...]] = Counter()
    message_ids: Counter[str] = Counter()
    for message in list(dep.smtp.box.messages):
        message_ids[message["Message-ID"]] += 1
        found = CASE_LINK.search(body_of(message).replace("=\r\n", "").replace("=\n", ""))
        mail[(message["To"], case_key.get(found.group(1)) if found else None, message["Subject"])] += 1
    in_store = {r["event_id"] for r in dep.rows("SELECT DISTINCT event_id FROM tracking_timeline")}
    ledger = {
        r["provider_ref"]: (r["state"], r["attempts"])
        for r in dep.rows("SELECT provider_ref, state, attempts FROM notify_delivery WHERE channel = 'smtp'")
    }
    return {
        "cases": cases, "facts": dict(facts), "clocks": clocks, "steps": steps, "per_step": per_step,
        "mail": mail, "message_ids": message_ids, "ledger": ledger, "accepted": set(dep.accepted),
        "in_store": in_store, "lapses": sum(lapses.values()),
    }  # fmt: skip


def second_copies(outcome: dict[str, Any], crashes: int) -> list[str]:
    """The Message-IDs mailed more than once, each checked against SMTP's documented crash guarantee
    (docs/NOTIFY.md): at least once, at most one extra copy per crash, only for a delivery the ledger records
    once as sent after more than one attempt (it was resumed), and every copy with the same Message-ID."""
    copied = sorted(mid for mid, n in outcome["message_ids"].items() if n > 1)
    for mid in copied:
        copies, (state, attempts) = outcome["message_ids"][mid], outcome["ledger"].get(mid, ("absent", 0))
        assert state == "sent" and attempts >= 2, f"{mid} mailed {copies} times; ledger: {state}, {attempts}"
        assert copies <= 1 + crashes, f"{mid} mailed {copies} times after {crashes} crash(es)"
    return copied


def run(
    kafka: Settings, database_url: str, tmp_path: Path, replicas: int, events: list[dict[str, Any]],
    marks: list[tuple[bytes, bytes]], las: list[str], expected_attendance: int,
) -> dict[str, Any]:  # fmt: skip
    smtp = start_smtp()
    dep = Deployment(kafka, database_url, tmp_path, smtp, replicas, las)
    try:
        dep.start()
        keys = dep.api_keys(events)
        killed = threading.Event()

        def crash_mid_stream(accepted: int) -> None:
            # Once 40% is in: SIGKILL one instance of every pair at once, then start them again.
            if replicas > 1 and not killed.is_set() and accepted >= 0.4 * len(events):
                killed.set()
                victims = [dep.of(name)[0] for name in SCALED]
                for inst in victims:
                    dep.kill9(inst)
                for inst in victims:
                    dep.restart(inst)

        produce_all(kafka, ATTENDANCE.name(kafka), marks[: len(marks) // 2])
        dep.feed(events, keys, crash_mid_stream)
        produce_all(kafka, ATTENDANCE.name(kafka), marks[len(marks) // 2 :])
        for inst in dep.instances:
            dep.wait_ready(inst)  # the restarted ones have recovered
        assert not dep.refused, dep.refused[:5]
        assert len(dep.accepted) == len(events)

        def all_in_store() -> bool | Pending:
            in_store = {r["event_id"] for r in dep.rows("SELECT DISTINCT event_id FROM tracking_timeline")}
            missing = dep.accepted - in_store
            expected = len(events) + expected_attendance
            if missing or len(in_store) < expected:
                return Pending(
                    f"{len(missing)} accepted events missing (e.g. {sorted(missing)[:3]}); "
                    f"{len(in_store)} of {expected} facts and attendance events in the timeline",
                    progress=len(in_store),
                )
            return True

        try:
            wait_while_progressing(
                all_in_store, stall_s=300, what="every accepted fact and attendance event in the case store"
            )
        except AssertionError as stalled:
            raise AssertionError(f"{stalled}; {where_it_stopped(dep)}") from stalled
        # Escalation has read every transition and fact (its group's committed offsets are at the ends), and
        # then nothing is due, unpublished or undelivered: nothing more can come on a frozen clock.
        wait_until(
            lambda: escalation_lag(kafka) == 0, timeout_s=1800, interval_s=2, what="escalation to read all"
        )
        wait_until_settled(database_url, FROZEN_AT, timeout_s=1800)
        assert not dep.exited(), f"instances exited on their own: {dep.exited()}"
        return snapshot(dep)
    except AssertionError as failure:
        # What each instance said last: the cause of a stall is in a service's log, not in the test's.
        tails = "".join(log_tail(dep.log_dir / f"{i.name}.log", 15) for i in dep.instances)
        raise AssertionError(f"{failure}{tails}") from failure
    finally:
        dep.stop()
        smtp.stop()


@pytest.fixture(scope="module")
def population() -> Iterator[tuple[list[dict[str, Any]], list[str]]]:
    pop = generate(las=4, pupils_per_la=PUPILS_PER_LA, seed=SEED)
    yield pop.events, pop.la_codes


# The whole test's ceiling grows with the feed: the waits inside fail on a stall long before this.
@pytest.mark.timeout(max(3600, PUPILS_PER_LA // 3000 * 1200))
def test_two_of_everything_with_kill9_give_the_single_instance_result(
    kafka_bootstrap: str, postgres_server: Any, tmp_path: Path,
    population: tuple[list[dict[str, Any]], list[str]],
) -> None:  # fmt: skip
    events, las = population
    marks = attendance_feed.feed(seed=SEED, pupils=60, days=45)
    emitted, _ = attendance_feed.one_by_one(marks)
    attendance_events = len({orjson_id(e.value) for e in emitted})
    directory_las = sorted({*las, "801", "802"})
    _, cluster = postgres_server
    assert cluster is not None, "needs a cluster where the test may create databases"

    results = []
    for replicas in (1, 2):
        kafka = Settings(
            kafka_bootstrap=kafka_bootstrap, topic_prefix=f"t{uuid.uuid4().hex[:10]}-", topic_partitions=4
        )
        ensure_topics(kafka)
        db = cluster.create_database(f"t_{uuid.uuid4().hex[:12]}")
        started = time.monotonic()
        outcome = run(
            kafka, db, tmp_path / f"x{replicas}", replicas, events, marks, directory_las, attendance_events
        )
        outcome["seconds"] = round(time.monotonic() - started)
        results.append(outcome)
        print(
            f"replicas={replicas}: {len(events)} events + {len(marks)} marks, {len(outcome['cases'])} cases, "
            f"{sum(outcome['clocks'].values())} clocks, {sum(outcome['steps'].values())} escalation events, "
            f"{sum(outcome['mail'].values())} emails, {outcome['lapses']} transfer lapses, "
            f"{outcome['seconds']} s"
        )

    single, scaled = results
    for outcome in results:
        missing = outcome["accepted"] - outcome["in_store"]
        assert not missing, f"{len(missing)} accepted events not in the case store"
        # SMTP cannot be asked whether it took a message: a kill -9 between the relay's 250 and the ledger's
        # commit resends (same Message-ID). Without a crash, never; with one, only as documented.
        copied = second_copies(outcome, crashes=0 if outcome is single else 1)
        print(f"replicas={1 if outcome is single else 2}: {len(copied)} Message-IDs mailed twice")
        twice = [k for k, n in outcome["per_step"].items() if n > 1]
        assert not twice, f"an escalation step raised twice: {twice[:3]}"
    assert scaled["facts"] == single["facts"], "the case store's facts per child differ"
    differ = [k for k in single["cases"] if scaled["cases"].get(k) != single["cases"][k]]
    assert not differ and len(scaled["cases"]) == len(single["cases"]), f"cases differ: {differ[:3]}"
    # Escalation reads tracking's transitions, whose order (and same-state or late re-fold transitions)
    # follows the order facts reached tracking, which differs between the runs; what it must not do is raise
    # a step twice or mail twice (above). How far its clocks and alerts agree is printed for the record.
    for part in ("clocks", "steps", "mail"):
        common = sum((single[part] & scaled[part]).values())
        total_single, total_scaled = sum(single[part].values()), sum(scaled[part].values())
        print(f"{part}: single {total_single}, scaled {total_scaled}, same {common}")


def where_it_stopped(dep: Deployment) -> str:
    """Where accepted facts wait: referral's outbox, a consumer group's lag, the dead-letter topic."""
    kafka = dep.kafka
    unpublished = dep.rows("SELECT count(*) AS n FROM referral_outbox WHERE published_at IS NULL")[0]["n"]
    tracking = group_lag(kafka, f"{kafka.topic_prefix}cme-tracking", (INTAKE, CHILD_EVENTS))
    attendance = group_lag(kafka, f"{kafka.topic_prefix}cme-attendance", (ATTENDANCE,))
    reasons: Counter[str] = Counter()
    for record in read_topic(kafka, DEAD_LETTER.name(kafka), expect=0, timeout_s=300):
        letter = decode_event(record.value).payload
        reasons[f"{letter.service}: {letter.error_type}: {letter.error[:100]}"] += 1
    return (
        f"referral outbox unpublished: {unpublished}; tracking lag: {tracking}; "
        f"attendance lag: {attendance}; dead letters: {dict(reasons)}; instances exited: {dep.exited()}"
    )


def escalation_lag(settings: Settings) -> int:
    """Records on escalation's input topics that its consumer group has not committed yet."""
    return sum(
        group_lag(
            settings, f"{settings.topic_prefix}cme-escalation", (CASE_TRANSITIONS, CHILD_EVENTS, ALERT_ACKS)
        ).values()
    )


def group_lag(settings: Settings, group: str, specs: tuple[TopicSpec, ...]) -> dict[str, int]:
    """Per topic, the records a consumer group has not committed yet."""
    from kafka import KafkaAdminClient, KafkaConsumer
    from kafka.structs import TopicPartition

    config = kafka_python_config(settings)
    admin = KafkaAdminClient(**config)
    consumer = KafkaConsumer(**config)
    try:
        committed = admin.list_group_offsets(group).get(group, {})
        topics = [t.name(settings) for t in specs]
        partitions = [
            TopicPartition(topic, p) for topic in topics for p in consumer.partitions_for_topic(topic) or ()
        ]
        lag: Counter[str] = Counter()
        for tp, end in consumer.end_offsets(partitions).items():
            lag[tp.topic.removeprefix(settings.topic_prefix)] += end - (
                committed[tp].offset if tp in committed else 0
            )
        return dict(lag)
    finally:
        consumer.close()
        admin.close()


def orjson_id(value: bytes) -> str:
    return str(orjson.loads(value)["event_id"])


def produce_all(settings: Settings, topic: str, records: list[tuple[bytes, bytes]]) -> None:
    """Send in order and wait for every acknowledgement at the end (one round trip per record is too slow)."""
    config = kafka_python_config(settings)
    producer = KafkaProducer(acks="all", enable_idempotence=True, linger_ms=5, **config)
    try:
        futures = [producer.send(topic, key=key, value=value) for key, value in records]
        producer.flush(timeout=120)
        for future in futures:
            future.get(timeout=30)
    finally:
        producer.close()
