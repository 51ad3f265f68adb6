"""Process-level harness for fault and security tests: the services as real processes on a real broker,
PostgreSQL and SMTP server, with helpers to kill and restart them and to check the three guarantees.

The guarantees every fault test checks (``Pipeline.check_guarantees``):
- every accepted event reaches the case store once in effect (one resolution, one timeline row);
- every due escalation fires once (one distinct ``raised`` event per escalation on the escalations topic,
  one escalation per child);
- no alert is sent twice (no two emails with the same Message-ID or for the same case and recipient).
"""

from __future__ import annotations

import contextlib
import email
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from email.message import Message
from pathlib import Path
from typing import Any

import httpx
from aiosmtpd.controller import Controller
from sqlalchemy import text

from devtools.localrun import SERVICES, ServiceProcess, wait_ready
from devtools.samples import child, sample_event_dict
from shared.db import make_engine
from shared.events.catalogue import decode_event
from shared.localstack.net import free_port
from shared.settings import Settings
from shared.topics import ESCALATIONS
from tests.support.kafka import read_topic, wait_until

BIN = Path(sys.executable).parent
LA = "801"
SIGNING_KEY = "faults-test-signing-key-0123456789abcdef"
DIRECTORY = """
las:
  "801":
    email_channel: smtp
    people:
      - {id: cw, name: Caseworker, email: caseworker@la.test}
      - {id: senior, name: Senior CME officer, email: senior@la.test}
    teams:
      - {id: mash, name: MASH duty, email: mash@la.test}
    roles:
      caseworker: [person:cw]
      senior_cme_officer: [person:senior]
      childrens_social_care: [team:mash]
      police: [team:mash]
"""
CASEWORKER = "caseworker@la.test"
# The four services of the referral -> alert path; attendance is not needed for these flows.
PIPELINE_SERVICES = ("referral", "tracking", "escalation", "notify")


class Mailbox:
    """An aiosmtpd handler that keeps every message it is given."""

    def __init__(self) -> None:
        self.messages: list[Message] = []
        self._lock = threading.Lock()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self._lock:
            self.messages.append(email.message_from_bytes(envelope.content))
        return "250 OK"

    def to(self, address: str) -> list[Message]:
        with self._lock:
            return [m for m in self.messages if address in m["To"]]


@dataclass
class SmtpServer:
    box: Mailbox
    port: int
    controller: Controller

    def stop(self) -> None:
        self.controller.stop()


def start_smtp() -> SmtpServer:
    box = Mailbox()
    port = free_port()
    controller = Controller(box, hostname="127.0.0.1", port=port)
    controller.start()
    return SmtpServer(box, port, controller)


def body_of(message: Message) -> str:
    payload = message.get_payload(decode=True)
    assert isinstance(payload, bytes)
    return payload.decode()


def set_clock(path: Path, iso: str) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(iso)
    tmp.replace(path)  # atomic: the service never reads half a timestamp


@dataclass
class Accepted:
    """An event the referral API answered 202 for."""

    event_id: str
    kid_n: int
    event_type: str


@dataclass
class Pipeline:
    """The services of one test, their environment, and what the test submitted."""

    kafka: Settings
    database_url: str
    tmp_path: Path
    smtp: SmtpServer
    services: tuple[str, ...] = PIPELINE_SERVICES
    extra_env: dict[str, str] = field(default_factory=dict)
    ports: dict[str, int] = field(init=False)
    env: dict[str, str] = field(init=False)
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict, init=False)
    accepted: list[Accepted] = field(default_factory=list, init=False)
    # Every answer the retrying client got, by status ("error": no connection): what a client sees in a fault.
    answers: Counter[str] = field(default_factory=Counter, init=False)
    # Processes that exited by themselves and were started again, as a supervisor (Kubernetes) would.
    unexpected_exits: list[tuple[str, int]] = field(default_factory=list, init=False)
    school_key: str = field(default="", init=False)
    team_key: str = field(default="", init=False)

    def __post_init__(self) -> None:
        self.tmp_path.mkdir(parents=True, exist_ok=True)
        self.ports = {s.name: free_port() for s in SERVICES}
        self.clock = self.tmp_path / "now.txt"
        set_clock(self.clock, "2025-11-04T12:00:00+00:00")
        self.log_dir = self.tmp_path / "logs"
        self.log_dir.mkdir(exist_ok=True)
        self.env = {
            **os.environ,
            "CME_KAFKA_BOOTSTRAP": self.kafka.kafka_bootstrap,
            "CME_TOPIC_PREFIX": self.kafka.topic_prefix,
            "CME_TOPIC_PARTITIONS": str(self.kafka.topic_partitions),
            "CME_DATABASE_URL": self.database_url,
            "CME_DATA_DIR": str(self.tmp_path),
            "CME_SIGNING_KEY": SIGNING_KEY,
            "CME_LOG_JSON": "true",
            **{f"CME_{name.upper()}_PORT": str(port) for name, port in self.ports.items()},
            "CME_NOTIFY_SMTP_PORT": str(self.smtp.port),
            "CME_NOTIFY_POLL_INTERVAL_S": "0.2",
            # A send claimed by a notify killed before it sent is taken over when its lease runs out: 120 s
            # by default, longer than the tests wait for an alert (a kill -9 of notify that landed between
            # claim and send failed the kill test with the alert still leased).
            "CME_NOTIFY_SEND_LEASE_S": "10",
            "CME_NOTIFY_PUBLIC_BASE_URL": f"http://127.0.0.1:{self.ports['notify']}",
            "CME_ESCALATION_SIMULATED_TIME_FILE": str(self.clock),
            "CME_ESCALATION_TICK_S": "0.2",
            **self.extra_env,
        }
        self.load_directory(DIRECTORY)
        if "referral" in self.services:
            self.school_key = self.create_api_key(
                "--kind", "school", "--name", "fault school", "--urn", "108000"
            )  # fmt: skip
            self.team_key = self.create_api_key("--kind", "agency", "--name", "LA CME team")

    def load_directory(self, yaml_text: str) -> None:
        """Replace the notify directory of each LA named in ``yaml_text`` (cme-notify load-directory)."""
        path = self.tmp_path / f"directory-{time.monotonic_ns()}.yaml"
        path.write_text(yaml_text)
        subprocess.run(
            [BIN / "cme-notify", "load-directory", str(path)], env=self.env, check=True, capture_output=True
        )

    def cme(self, *args: str) -> str:
        """Run the ``cme`` umbrella command with this pipeline's environment; returns its stdout."""
        done = subprocess.run([BIN / "cme", *args], env=self.env, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        return done.stdout

    # -- processes ---------------------------------------------------------------------------------------

    def create_api_key(self, *args: str, la: str = LA) -> str:
        out = subprocess.run(
            [BIN / "cme-referral", "clients", "create", "--la", la, *args],
            env=self.env, check=True, capture_output=True, text=True,
        ).stdout  # fmt: skip
        found = re.search(r"api key:\s+(\S+)", out)
        assert found, out
        return found.group(1)

    def _spec(self, name: str) -> ServiceProcess:
        return next(s for s in SERVICES if s.name == name)

    def spawn(self, name: str) -> None:
        log = open(self.log_dir / f"{name}.log", "ab")  # noqa: SIM115 - owned by the child process
        self.procs[name] = subprocess.Popen(
            self._spec(name).argv(), env=self.env, stdout=log, stderr=subprocess.STDOUT
        )

    def wait_ready(self, name: str, timeout_s: float = 90) -> None:
        url = f"http://127.0.0.1:{self.ports[name]}/health/ready"
        wait_ready(url, timeout_s, self.procs[name], self.log_dir / f"{name}.log")

    def start(self) -> None:
        for name in self.services:
            self.spawn(name)
        for name in self.services:
            self.wait_ready(name)
        self._held: set[str] = set()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._supervisor = threading.Thread(target=self._supervise, daemon=True)
        self._supervisor.start()

    def _supervise(self) -> None:
        """Restart a service that exits on its own (restartPolicy: Always): the deployment's answer to a
        process that gives up, e.g. a faust worker that crashes while the broker is away."""
        while not self._stopping.wait(0.5):
            with self._lock:
                for name, proc in list(self.procs.items()):
                    if name not in self._held and proc.poll() is not None:
                        self.unexpected_exits.append((name, proc.returncode))
                        self.spawn(name)

    def kill9(self, name: str) -> None:
        """SIGKILL: no shutdown hooks, no flush, no commit — the crash the guarantees must survive."""
        with self._lock:
            self._held.add(name)  # down on purpose: the test restarts it, not the supervisor
            proc = self.procs[name]
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)

    def restart(self, name: str) -> None:
        with self._lock:
            self.spawn(name)
            self._held.discard(name)
        self.wait_ready(name)

    def stop(self) -> None:
        if hasattr(self, "_stopping"):
            self._stopping.set()
            self._supervisor.join(timeout=5)
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)

    def logs(self) -> dict[str, str]:
        return {p.stem: p.read_text(errors="replace") for p in self.log_dir.glob("*.log")}

    # -- clients -----------------------------------------------------------------------------------------

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.ports[name]}"

    def referral_client(self, key: str) -> httpx.Client:
        return httpx.Client(
            base_url=self.url("referral"), headers={"Authorization": f"Bearer {key}"}, timeout=10
        )

    def submit_with_retry(self, client: httpx.Client, event: dict[str, Any], timeout_s: float = 60) -> None:
        """What a well-behaved client does: retry the same event (same event_id) until it is accepted.

        A connection error or a 5xx (the service down, or its database away) is retried; the event_id makes
        the retry idempotent, so an event accepted just before a crash is not accepted twice."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                response = client.post("/v1/events", json=event)
                self.answers[str(response.status_code)] += 1
                if response.status_code in (200, 202):
                    return
                assert response.status_code >= 500 or response.status_code == 429, response.text
            except httpx.HTTPError:
                self.answers["error"] += 1
            if time.monotonic() > deadline:
                raise AssertionError(f"event {event['event_id']} not accepted within {timeout_s}s")
            time.sleep(0.3)

    def submit_child(self, n: int, **personal: Any) -> dict[str, Any]:
        """Child n leaves a school roll to an unknown destination and is not found: one caseworker alert.
        ``personal`` overrides the sample child's details (names, date of birth...); returns the child."""
        kid = child(n, **personal)
        left = sample_event_dict("pupil-left-roll", kid=kid, on=date(2025, 11, 3))
        unknown = sample_event_dict("whereabouts-unknown", kid=kid, on=date(2025, 11, 4), school_urn=None)
        with self.referral_client(self.school_key) as school, self.referral_client(self.team_key) as team:
            for sender, event in ((school, left), (team, unknown)):
                self.submit_with_retry(sender, event)
                self.accepted.append(Accepted(event["event_id"], n, event["event_type"]))
        return kid

    def stream_children(
        self, numbers: range, interval_s: float = 0.0, until: threading.Event | None = None
    ) -> threading.Thread:
        """Submit children from a background thread: the stream a fault lands in the middle of. With
        ``until``, the stream ends when that is set (or ``numbers`` runs out), so a fault that takes a while
        to happen still lands in the middle of it."""
        errors: list[BaseException] = []

        def run() -> None:
            try:
                for n in numbers:
                    if until is not None and until.is_set():
                        break
                    self.submit_child(n)
                    if interval_s:
                        time.sleep(interval_s)
            except BaseException as exc:  # re-raised in the test thread by join_stream
                errors.append(exc)

        thread = threading.Thread(target=run, daemon=True)
        thread.errors = errors  # type: ignore[attr-defined]
        thread.start()
        return thread

    @staticmethod
    def join_stream(thread: threading.Thread, timeout_s: float = 120) -> None:
        thread.join(timeout_s)
        assert not thread.is_alive(), "the submitting stream did not finish"
        errors: list[BaseException] = thread.errors  # type: ignore[attr-defined]
        if errors:
            raise errors[0]

    # -- the guarantees ----------------------------------------------------------------------------------

    def children(self) -> set[int]:
        return {a.kid_n for a in self.accepted}

    def _scalar(self, sql: str, **params: Any) -> Any:
        engine = make_engine(self.database_url)
        try:
            with engine.connect() as conn:
                return conn.execute(text(sql), params).scalar()
        finally:
            engine.dispose()

    def _rows(self, sql: str, **params: Any) -> list[Any]:
        engine = make_engine(self.database_url)
        try:
            with engine.connect() as conn:
                return list(conn.execute(text(sql), params))
        finally:
            engine.dispose()

    def all_in_case_store(self) -> bool:
        ids = [a.event_id for a in self.accepted]
        found = self._rows(
            "SELECT count(DISTINCT event_id) FROM tracking_timeline WHERE event_id = ANY(:ids)", ids=ids
        )
        return bool(found[0][0] == len(ids))

    def wait_all_processed(self, timeout_s: float = 90) -> None:
        wait_until(self.all_in_case_store, timeout_s=timeout_s, what="every accepted event in the case store")

    def wait_alerts(self, timeout_s: float = 90) -> None:
        expected = len(self.children())
        wait_until(
            lambda: len(self.smtp.box.to(CASEWORKER)) >= expected,
            timeout_s=timeout_s,
            what=f"{expected} caseworker alerts",
        )

    def check_guarantees(self) -> None:
        ids = [a.event_id for a in self.accepted]
        # 1. Accepted once, in the case store once: one resolution and one timeline row per event.
        assert len(ids) == len(set(ids))
        timeline = Counter(
            r[0]
            for r in self._rows("SELECT event_id FROM tracking_timeline WHERE event_id = ANY(:ids)", ids=ids)
        )
        assert set(timeline) == set(ids), f"missing from the case store: {set(ids) - set(timeline)}"
        assert max(timeline.values()) == 1, f"applied twice: {[k for k, v in timeline.items() if v > 1]}"
        resolutions = self._scalar(
            "SELECT count(*) FROM tracking_resolutions WHERE event_id = ANY(:ids)", ids=ids
        )
        assert resolutions == len(ids)
        cases = self._scalar(
            "SELECT count(*) FROM tracking_cases WHERE state = 'whereabouts_unknown' AND la_code = :la", la=LA
        )
        assert cases == len(self.children())

        # 2. Each due escalation fires once: one escalation per child, one distinct `raised` event for it.
        records = read_topic(self.kafka, ESCALATIONS.name(self.kafka), expect=len(self.children()))
        events = [decode_event(r.value) for r in records]
        raised = {(e.event_id, e.payload.escalation_id) for e in events if e.payload.action == "raised"}
        per_escalation = Counter(esc for _, esc in raised)
        assert max(per_escalation.values(), default=0) == 1, per_escalation
        per_child = Counter(e.payload.child_id for e in events if e.payload.action == "raised")
        assert len(per_child) == len(self.children()), per_child
        raised_ids = {e for e, _ in raised}
        assert len({e.payload.escalation_id for e in events if e.payload.action == "raised"}) == len(
            raised_ids
        ), "an escalation raised twice under different event ids"

        # 3. No alert is sent twice: one caseworker email per case, no Message-ID twice.
        mail = self.smtp.box.to(CASEWORKER)
        message_ids = Counter(m["Message-ID"] for m in mail)
        assert max(message_ids.values()) == 1, f"an email sent twice: {message_ids.most_common(1)}"
        assert len(mail) == len(self.children()), f"{len(mail)} caseworker emails for {len(self.children())}"
        bodies = [body_of(m) for m in mail]
        for (case_id,) in self._rows("SELECT case_id FROM tracking_cases WHERE la_code = :la", la=LA):
            assert sum(case_id in b for b in bodies) == 1, f"case {case_id}: not exactly one caseworker email"


@contextlib.contextmanager
def running_pipeline(kafka: Settings, database_url: str, tmp_path: Path, **kw: Any) -> Iterator[Pipeline]:
    """Start the pipeline (and its SMTP server); stop both afterwards, whatever happened."""
    smtp = start_smtp()
    pipeline: Pipeline | None = None
    try:
        pipeline = Pipeline(kafka, database_url, tmp_path, smtp, **kw)
        pipeline.start()
        yield pipeline
    finally:
        if pipeline is not None:
            pipeline.stop()
        smtp.stop()


def wait_until_settled(database_url: str, now: str, timeout_s: float = 60) -> None:
    """A negative check needs the pipeline to be quiet, not a fixed sleep: nothing is due in escalation,
    everything escalation published has been consumed by notify, and no delivery is waiting."""
    engine = make_engine(database_url)
    queries = (
        "SELECT count(*) FROM escalation_deadlines WHERE status = 'pending' AND due_at <= :now",
        "SELECT count(*) FROM escalation_outbox WHERE published_at IS NULL",
        "SELECT count(*) FROM escalation_outbox o"
        " LEFT JOIN notify_processed_event p ON p.event_id = o.event_id"
        " WHERE o.topic LIKE '%escalations%' AND p.event_id IS NULL",
        "SELECT count(*) FROM notify_delivery WHERE state IN ('pending', 'sending')",
    )
    moment = datetime.fromisoformat(now)
    with engine.connect() as conn:

        def settled() -> bool:
            return all(conn.execute(text(q), {"now": moment}).scalar() == 0 for q in queries)

        wait_until(settled, timeout_s=timeout_s, what="the pipeline to settle")
    engine.dispose()
