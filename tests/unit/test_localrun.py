"""The local runner: a failed start leaves no process behind."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from devtools import localrun
from shared.settings import Settings


def test_a_service_that_fails_to_start_takes_the_started_ones_down(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    started: list[subprocess.Popen[bytes]] = []

    def spawn(
        service: localrun.ServiceProcess, env: dict[str, str], logs: Path, settings: Settings
    ) -> subprocess.Popen[bytes]:
        if service.name == "tracking":
            raise FileNotFoundError("cme-tracking")
        proc = subprocess.Popen(["sleep", "60"])
        started.append(proc)
        return proc

    monkeypatch.setattr(localrun, "spawn", spawn)
    with pytest.raises(FileNotFoundError):
        localrun.start_services(Settings(data_dir=tmp_path), {}, tmp_path / "logs")
    assert started and all(proc.poll() is not None for proc in started)


def test_the_urgent_escalation_process_runs_escalation_in_its_role_on_its_own_port() -> None:
    settings = Settings(escalation_port=9003, escalation_urgent_port=9013)
    base = {"CME_ESCALATION_PORT": "9003", "CME_ESCALATION_ROLE": "in_order", "CME_LOG_LEVEL": "INFO"}
    urgent = localrun.ESCALATION_URGENT
    assert urgent.argv()[0].endswith("cme-escalation")
    env = urgent.env(base, settings)
    assert env["CME_ESCALATION_ROLE"] == "urgent"
    assert env["CME_ESCALATION_PORT"] == "9013"
    assert env["CME_LOG_LEVEL"] == "INFO"
    assert base["CME_ESCALATION_ROLE"] == "in_order"  # the caller's environment is left as it was
    # A service's own process takes the environment as given.
    (escalation,) = [s for s in localrun.SERVICES if s.name == "escalation"]
    assert escalation.env(base, settings) == base


def test_the_urgent_escalation_process_starts_only_when_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spawned: list[str] = []

    def spawn(
        service: localrun.ServiceProcess, env: dict[str, str], logs: Path, settings: Settings
    ) -> subprocess.Popen[bytes]:
        spawned.append(service.name)
        return subprocess.Popen(["true"])

    monkeypatch.setattr(localrun, "spawn", spawn)
    monkeypatch.setattr(localrun, "wait_ready", lambda *args: None)
    localrun.start_services(Settings(data_dir=tmp_path), {}, tmp_path / "logs")
    assert "escalation-urgent" not in spawned and "escalation" in spawned
    spawned.clear()
    only = frozenset({"escalation", "escalation-urgent"})
    localrun.start_services(Settings(data_dir=tmp_path), {}, tmp_path / "logs", only=only)
    assert spawned == ["escalation", "escalation-urgent"]


class _FakeServer:
    """A stand-in for the local broker or cluster: what a start does, without the JVM or initdb."""

    def __init__(self, data_dir: Path, *, running: bool = False, fails: bool = False) -> None:
        self.data_dir = data_dir
        self.is_running = running
        self.fails = fails
        self.stopped = False
        self.bootstrap = "127.0.0.1:9092"
        self.version = "test"
        self.port = 55432
        self.url = "postgresql+psycopg://cme@127.0.0.1:55432/cme"

    def running(self) -> bool:
        return self.is_running

    def start(self) -> float:
        if self.fails:
            raise subprocess.CalledProcessError(1, ["pg_ctl", "start"])
        self.is_running = True
        return 0.1

    def stop(self) -> None:
        self.stopped = True


def test_a_database_that_cannot_start_names_its_log_and_stops_the_broker_it_started(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from shared.localstack import stack

    broker = _FakeServer(tmp_path / "kafka")
    cluster = _FakeServer(tmp_path / "postgres", fails=True)
    monkeypatch.setattr(stack, "local_broker", lambda settings: broker)
    monkeypatch.setattr(stack, "local_postgres", lambda settings: cluster)
    with pytest.raises(stack.StackError, match=str(tmp_path / "postgres" / "server.log")):
        stack.stack_up(Settings(data_dir=tmp_path), with_postgres=True)
    assert broker.stopped


def test_a_run_stops_only_what_it_started(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from shared.localstack import stack

    broker = _FakeServer(tmp_path / "kafka", running=True)  # someone's `cme stack up`: it stays up
    cluster = _FakeServer(tmp_path / "postgres")
    monkeypatch.setattr(stack, "local_broker", lambda settings: broker)
    monkeypatch.setattr(stack, "local_postgres", lambda settings: cluster)
    monkeypatch.setattr("shared.kafka.ensure_topics", lambda settings: [])
    started = stack.stack_up(Settings(data_dir=tmp_path), with_postgres=True)
    assert started.env["CME_DATABASE_URL"] == cluster.url
    started.stop()
    assert cluster.stopped and not broker.stopped


def test_the_demo_is_new_facts_on_a_later_day_and_the_same_facts_on_the_same_day() -> None:
    from datetime import date

    from devtools.demo import demo_events

    monday = [event["event_id"] for _, event in demo_events(date(2025, 11, 3))]
    again = [event["event_id"] for _, event in demo_events(date(2025, 11, 3))]
    tuesday = [event["event_id"] for _, event in demo_events(date(2025, 11, 4))]
    assert monday == again
    assert not set(monday) & set(tuesday)
    assert len(set(monday)) == len(monday)


def test_the_demo_directory_covers_every_la_the_demo_reaches() -> None:
    import yaml

    from devtools.demo import demo_events
    from devtools.localrun import DEMO_DIRECTORY
    from devtools.samples import DEMO_LA

    directory = yaml.safe_load(DEMO_DIRECTORY.read_text())["las"]
    reached = {DEMO_LA}
    for _, event in demo_events():
        destination = event["payload"].get("destination") or {}
        if destination.get("la_code"):
            reached.add(destination["la_code"])
    assert reached - {DEMO_LA}, "the demo hands a child to another LA"
    assert reached <= set(directory), f"no directory for {reached - set(directory)}"


def test_the_demo_allocates_every_new_case_of_its_la_to_the_demo_team(tmp_path: Path) -> None:
    from devtools.samples import DEMO_LA
    from services.web.allocation import load_policies

    policies = load_policies(localrun._demo_allocation(Settings(data_dir=tmp_path)))
    assert set(policies) == {DEMO_LA}
    assert policies[DEMO_LA].default == f"team:{localrun.DEMO_TEAM}"


def test_a_service_started_on_the_local_defaults_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    from shared.settings import local_defaults_warning

    for name in ("CME_KAFKA_BOOTSTRAP", "CME_TOPIC_PREFIX"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir("/")  # no .env file
    assert "local defaults" in (local_defaults_warning(Settings()) or "")
    monkeypatch.setenv("CME_TOPIC_PREFIX", "mine-")
    assert local_defaults_warning(Settings()) is None


def test_the_token_command_mints_a_token_the_apis_accept(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from devtools import cli
    from shared.auth import Role, verify_token
    from shared.settings import get_settings

    monkeypatch.setenv("CME_SIGNING_KEY", "token-command-test-key-0123456789abcdef")
    get_settings.cache_clear()
    try:
        assert cli.main(["token", "--la", "801", "--role", "ops", "--sub", "ops.alice", "--ttl", "60"]) == 0
        token = capsys.readouterr().out.strip()
        principal = verify_token(get_settings(), token)
        assert (principal.sub, principal.role, principal.la_code) == ("ops.alice", Role.OPS, "801")
        assert cli.main(["token", "--la", "999", "--role", "ops", "--sub", "x"]) == 2
    finally:
        get_settings.cache_clear()
