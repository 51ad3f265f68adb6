"""End-to-end latency: from the referral API's 2xx to the caseworker alert's SMTP receipt.

All services run as processes (referral, tracking, escalation in its two roles as deployed, notify) on the
test broker and a scratch PostgreSQL database, like tests/e2e/test_pipeline.py; the escalation service runs
on a simulated clock that does not move, so only the immediate rules fire: a whereabouts-unknown fact raises
an immediate caseworker alert.
Each synthetic child is first taken off roll (unknown destination) as warm-up; then the whereabouts-unknown
facts are sent at a fixed rate, and each alert (its case link names the case) is matched to the fact's 2xx.

Baseline, same run: one Kafka hop (produce acks=all -> a consumer that is already polling), times the five
hops the alert takes (intake, child-events, case-transitions, escalations, notify's outbox publish).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from aiosmtpd.controller import Controller
from sqlalchemy import text

from bench import whereabouts
from bench.common import (
    BIN,
    Row,
    bench_settings,
    delete_topics,
    log,
    percentile,
    scratch_database,
    service_env,
    wait_for,
)
from devtools.localrun import SERVICES, start_services, stop_services
from devtools.samples import sample_event_dict
from devtools.synthetic import generate
from shared.case_ids import case_id_for
from shared.db import make_engine
from shared.kafka import aiokafka_config, ensure_topics
from shared.localstack.net import free_port
from shared.settings import Settings

LA = "801"
HOPS = 5
SIGNING_KEY = "bench-e2e-signing-key-0123456789abcdef"
DIRECTORY = """
las:
  "801":
    email_channel: smtp
    people:
      - {id: cw, name: Caseworker, email: caseworker@la.test}
      - {id: senior, name: Senior CME officer, email: senior@la.test}
    teams:
      - {id: mash, name: MASH duty, email: mash@la.test}
      - {id: police, name: Police CME liaison, email: police@la.test}
    roles:
      caseworker: [person:cw]
      senior_cme_officer: [person:senior]
      childrens_social_care: [team:mash]
      police: [team:police]
"""
SERVICE_NAMES = frozenset(s.name for s in SERVICES)
CASE_LINK = re.compile(r"/cases/([0-9a-f-]{36})")


class Mailbox:
    """Keeps (receipt time, case id) of every message it is given."""

    def __init__(self) -> None:
        self.received: list[tuple[float, str, str]] = []
        self._lock = threading.Lock()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        now = time.perf_counter()
        body = envelope.content.decode(errors="replace").replace("=\r\n", "").replace("=\n", "")
        found = CASE_LINK.search(body)
        with self._lock:
            self.received.append((now, found.group(1) if found else "", ",".join(envelope.rcpt_tos)))
        return "250 OK"

    def snapshot(self) -> list[tuple[float, str, str]]:
        with self._lock:
            return list(self.received)


async def kafka_hop(settings: Settings, samples: int) -> list[float]:
    """Latency of one produce (acks=all) -> consume hop on the same broker, in seconds."""
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    topic = f"{settings.topic_prefix}bench-hop"
    _create_topic(settings, topic)
    producer = AIOKafkaProducer(acks="all", **aiokafka_config(settings))
    consumer = AIOKafkaConsumer(topic, auto_offset_reset="latest", **aiokafka_config(settings))
    await producer.start()
    await producer.send_and_wait(topic, b"warm-up")
    await consumer.start()
    out: list[float] = []
    try:
        await consumer.getmany(timeout_ms=500)
        for _ in range(samples):
            started = time.perf_counter()
            await producer.send_and_wait(topic, b"x")
            while not await consumer.getmany(timeout_ms=1000):
                pass
            out.append(time.perf_counter() - started)
    finally:
        await consumer.stop()
        await producer.stop()
    return sorted(out)


def raw_hops(workdir: Path, samples: int = 50) -> list[float]:
    """The baseline: raw produce -> consume hops on a topic of its own, measured with no service running."""
    settings = bench_settings("", workdir / "hop")
    try:
        return asyncio.run(kafka_hop(settings, samples))
    finally:
        delete_topics(settings)


def _create_topic(settings: Settings, topic: str) -> None:
    from kafka.admin import KafkaAdminClient, NewTopic

    from shared.kafka import kafka_python_config

    admin = KafkaAdminClient(**kafka_python_config(settings))
    try:
        admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])
    finally:
        admin.close()


def _api_key(env: dict[str, str], *args: str) -> str:
    out = subprocess.run(  # noqa: S603 - our own CLI
        [str(BIN / "cme-referral"), "clients", "create", "--la", LA, *args],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    found = re.search(r"api key:\s+(\S+)", out)
    if not found:
        raise RuntimeError("cme-referral clients create printed no key")
    return found.group(1)


@dataclass(frozen=True)
class Pipeline:
    """The running services of one measurement, and what a sender needs to reach them."""

    url: str  # the referral API
    school_key: str
    team_key: str
    database_url: str
    settings: Settings  # topics, broker and prefix of this measurement
    clock: Path  # escalation's simulated time file
    escalation_url: str  # its ops endpoints (metrics)
    tracking_url: str = ""  # tracking's ops endpoints (metrics)
    urgent_url: str = ""  # escalation's urgent process's ops endpoints, when it runs one


@contextlib.contextmanager
def running_pipeline(workdir: Path, box: Mailbox, label: str) -> Iterator[Pipeline]:
    """Referral, tracking, escalation and notify as processes on a scratch database and fresh topics, notify
    delivering to ``box``; escalation's simulated clock stands still, so only immediate rules fire."""
    smtp_port = free_port()
    controller = Controller(box, hostname="127.0.0.1", port=smtp_port)
    controller.start()
    try:
        with scratch_database(label) as db_url:
            base = bench_settings(db_url, workdir / label)
            try:
                with _services(base, smtp_port) as pipeline:
                    yield pipeline
            finally:
                delete_topics(base)
    finally:
        controller.stop()


@contextlib.contextmanager
def _services(base: Settings, smtp_port: int) -> Iterator[Pipeline]:
    data_dir = Path(base.data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    ensure_topics(base)
    # Escalation as deployed (docker-compose.yml): its urgent lane in a process of its own, unless
    # CME_BENCH_ESCALATION=one asks for the single process (to compare the two).
    split = os.environ.get("CME_BENCH_ESCALATION", "split") != "one"
    names = ("referral", "tracking", "escalation", "notify", *(("escalation-urgent",) if split else ()))
    ports = {name: free_port() for name in names}
    clock = data_dir / "now.txt"
    clock.write_text("2025-11-04T12:00:00+00:00")
    directory = data_dir / "directory.yaml"
    directory.write_text(DIRECTORY)
    env = service_env(
        base,
        CME_SIGNING_KEY=SIGNING_KEY,
        CME_NOTIFY_SMTP_PORT=str(smtp_port),
        CME_NOTIFY_POLL_INTERVAL_S="0.2",
        CME_NOTIFY_PUBLIC_BASE_URL=f"http://127.0.0.1:{ports['notify']}",
        CME_ESCALATION_SIMULATED_TIME_FILE=str(clock),
        CME_ESCALATION_TICK_S="0.2",
        # The urgent process's port is given to it by its own ServiceProcess (under CME_ESCALATION_PORT).
        **{f"CME_{name.upper()}_PORT": str(port) for name, port in ports.items() if name in SERVICE_NAMES},
        CME_ESCALATION_ROLE="in_order" if split else "all",
    )
    subprocess.run([str(BIN / "cme-notify"), "load-directory", str(directory)], env=env, check=True)  # noqa: S603
    # The bulk sender is a school loading its roll: its key allows far more than the default 50 events/s.
    school_key = _api_key(
        env, "--kind", "school", "--name", "bench school", "--urn", "108000", "--rate", "100000"
    )
    team_key = _api_key(env, "--kind", "agency", "--name", "bench CME team", "--rate", "1000")
    settings = Settings(
        referral_port=ports["referral"],
        tracking_port=ports["tracking"],
        escalation_port=ports["escalation"],
        notify_port=ports["notify"],
        escalation_urgent_port=ports.get("escalation-urgent", 0),
        data_dir=data_dir,
    )
    procs = start_services(settings, env, data_dir / "logs", only=frozenset(ports))
    try:
        yield Pipeline(
            f"http://127.0.0.1:{ports['referral']}",
            school_key,
            team_key,
            base.database_url,
            base,
            clock,
            f"http://127.0.0.1:{ports['escalation']}",
            f"http://127.0.0.1:{ports['tracking']}",
            f"http://127.0.0.1:{ports['escalation-urgent']}" if split else "",
        )
    finally:
        stop_services(procs)


def run(workdir: Path, children: int, rate_per_s: float, timeout_s: float) -> list[Row]:
    box = Mailbox()
    with running_pipeline(workdir, box, "e2e") as pipeline:
        latencies, sent = _measure(pipeline, box, children, rate_per_s, timeout_s)
    hop = raw_hops(workdir)
    hop_p50 = percentile(hop, 0.5) * HOPS * 1000
    load = f"{children} alerts at {rate_per_s:g} facts/s"
    detail = {"matched": len(latencies), "sent": sent, "kafka_hop_ms": [round(x * 1000, 2) for x in hop]}
    return [
        Row(
            "e2e",
            f"API 2xx -> SMTP receipt, p{int(q * 100)} ({load})",
            round(percentile(latencies, q) * 1000),
            "ms",
            f"{HOPS} x raw Kafka hop p{int(q * 100)}",
            round(percentile(hop, q) * HOPS * 1000, 1),
            f"{len(latencies)} of {sent} matched",
            detail if q == 0.5 else {},
        )
        for q in (0.5, 0.95, 0.99)
    ] + [Row("e2e", "raw Kafka hop p50 (x5 = baseline)", round(hop_p50 / HOPS, 2), "ms")]


def _measure(
    pipeline: Pipeline, box: Mailbox, children: int, rate_per_s: float, timeout_s: float
) -> tuple[list[float], int]:
    url = pipeline.url
    school_key, team_key = pipeline.school_key, pipeline.team_key
    pupils = generate(las=[LA], pupils_per_la=children, seed=99).pupils[:children]
    school = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {school_key}"}, timeout=30)
    team = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {team_key}"}, timeout=30)
    try:
        log(f"e2e: warm-up, {children} children off roll to an unknown destination")
        for pupil in pupils:
            event = sample_event_dict("pupil-left-roll", kid=pupil.identity(), la_code=LA)
            school.post("/v1/events", json=event).raise_for_status()
        engine = make_engine(pipeline.database_url)

        def cases_open() -> bool:
            with engine.connect() as conn:
                n = conn.execute(text("SELECT count(*) FROM tracking_cases WHERE state IS NOT NULL")).scalar()
            return int(n or 0) >= children

        wait_for(cases_open, timeout_s)
        log(f"e2e: {children} whereabouts-unknown facts at {rate_per_s}/s")
        sent: dict[str, float] = {}
        interval = 1 / rate_per_s
        started = time.perf_counter()
        for i, pupil in enumerate(pupils):
            time.sleep(max(0.0, started + i * interval - time.perf_counter()))
            event = sample_event_dict(
                "whereabouts-unknown", kid=pupil.identity(), la_code=LA, school_urn=None
            )
            response = team.post("/v1/events", json=event)
            response.raise_for_status()
            sent[event["event_id"]] = time.perf_counter()
        try:
            wait_for(lambda: len([m for m in box.snapshot() if m[0] >= started]) >= children, timeout_s)
        except TimeoutError as exc:
            arrived = len([m for m in box.snapshot() if m[0] >= started])
            where = whereabouts.report(pipeline.database_url, sent, LA)
            raise TimeoutError(f"{exc}: {arrived} of {children} alerts arrived\n{where}") from exc
        with engine.connect() as conn:
            resolved = conn.execute(
                text("SELECT event_id, child_id FROM tracking_resolutions WHERE event_id = ANY(:ids)"),
                {"ids": list(sent)},
            ).all()
        engine.dispose()
        case_of = {case_id_for(str(child), LA): str(event) for event, child in resolved}
        latencies: list[float] = []
        for received_at, case_id, _ in sorted(box.snapshot()):
            event_id = case_of.pop(case_id, None)  # the first alert of each case after its fact
            if event_id is not None and received_at >= sent[event_id]:
                latencies.append(received_at - sent[event_id])
        latencies.sort()
    finally:
        school.close()
        team.close()
    return latencies, len(sent)
