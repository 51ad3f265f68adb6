"""``cme run``: the whole pipeline on one machine: Kafka, the database, the six services, a demo feed."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from devtools.samples import DEMO_LA
from shared.settings import Settings

BIN = Path(sys.executable).parent
DEMO_SMTP_PORT = 8025
DEMO_DIRECTORY = Path(__file__).parent / "demo_directory.yaml"


@dataclass(frozen=True)
class ServiceProcess:
    name: str
    port_setting: str
    program: str = ""  # the service whose CLI it runs, when the process is one role of it (default: name)
    role_env: tuple[tuple[str, str], ...] = ()  # the settings that give the process its role

    def argv(self) -> list[str]:
        return [str(BIN / f"cme-{self.program or self.name}"), "serve"]

    def env(self, base: dict[str, str], settings: Settings) -> dict[str, str]:
        """The process's environment: a role's settings, and its own port under the service's setting."""
        if not self.program:
            return base
        port = str(getattr(settings, self.port_setting))
        return {**base, **dict(self.role_env), f"CME_{self.program.upper()}_PORT": port}


SERVICES = (
    ServiceProcess("referral", "referral_port"),
    ServiceProcess("tracking", "tracking_port"),
    ServiceProcess("escalation", "escalation_port"),
    ServiceProcess("notify", "notify_port"),
    ServiceProcess("attendance", "attendance_port"),
    ServiceProcess("web", "web_port"),
)
# Escalation's urgent lane in a process of its own (docs/ESCALATION.md, "Roles"), beside an "escalation"
# started with CME_ESCALATION_ROLE=in_order: what the benchmark's pipelines and docker-compose.yml run.
ESCALATION_URGENT = ServiceProcess(
    "escalation-urgent", "escalation_urgent_port", "escalation", (("CME_ESCALATION_ROLE", "urgent"),)
)
PROCESSES = (*SERVICES, ESCALATION_URGENT)


def log_tail(log_path: Path | None, lines: int = 40) -> str:
    """The last lines of a service's log, for a failure message that explains itself."""
    if log_path is None or not log_path.exists():
        return ""
    tail = log_path.read_text(errors="replace").splitlines()[-lines:]
    return f"\n--- last {len(tail)} lines of {log_path} ---\n" + "\n".join(tail)


def wait_ready(
    url: str, timeout_s: float, proc: subprocess.Popen[bytes], log_path: Path | None = None
) -> None:
    deadline = time.monotonic() + timeout_s
    said = ""  # the last readiness answer: which check is failing
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{url}: the process exited with {proc.returncode}" + log_tail(log_path))
        try:
            response = httpx.get(url, timeout=2)
            if response.status_code == 200:
                return
            said = f" (last answer {response.status_code}: {response.text[:300]})"
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"{url} not ready after {timeout_s:.0f}s{said}" + log_tail(log_path))


def spawn(
    service: ServiceProcess, env: dict[str, str], log_dir: Path, settings: Settings
) -> subprocess.Popen[bytes]:
    log = open(log_dir / f"{service.name}.log", "ab")  # noqa: SIM115 - owned by the child process
    own_env = service.env(env, settings)
    return subprocess.Popen(service.argv(), env=own_env, stdout=log, stderr=subprocess.STDOUT)


def start_services(
    settings: Settings, env: dict[str, str], log_dir: Path, only: frozenset[str] | None = None
) -> dict[str, subprocess.Popen[bytes]]:
    """Start the services (``only`` those named, if given; the processes of ``PROCESSES`` that are not
    ``SERVICES`` only when named) and wait until each answers /health/ready."""
    log_dir.mkdir(parents=True, exist_ok=True)
    procs: dict[str, subprocess.Popen[bytes]] = {}
    services = list(SERVICES) if only is None else [s for s in PROCESSES if s.name in only]
    try:
        for service in services:
            procs[service.name] = spawn(service, env, log_dir, settings)
        for service in services:
            port = getattr(settings, service.port_setting)
            log_path = log_dir / f"{service.name}.log"
            wait_ready(f"http://127.0.0.1:{port}/health/ready", 120, procs[service.name], log_path)
            print(f"{service.name} ready on http://127.0.0.1:{port}", file=sys.stderr)
    except BaseException:
        stop_services(procs)  # the caller never gets the processes: do not leave them running
        raise
    return procs


def stop_services(procs: dict[str, subprocess.Popen[bytes]]) -> None:
    for proc in procs.values():
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in procs.values():
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


DEMO_WEB_ACCOUNTS = (("demo.caseworker", "caseworker"), ("demo.manager", "manager"), ("demo.ops", "ops"))


DEMO_TEAM = "cme-team"


def _demo_web_accounts(settings: Settings, env: dict[str, str]) -> None:
    """Local sign-ins for the demo LA. The password is made once per data folder and kept there, never in
    the code; accounts that exist from an earlier run are left as they are."""
    password_file = settings.data_dir / "demo-web-password.txt"
    if not password_file.exists():
        password_file.write_text(secrets.token_urlsafe(12))
        password_file.chmod(0o600)
    account_env = {**env, "CME_WEB_NEW_PASSWORD": password_file.read_text().strip()}
    for username, role in DEMO_WEB_ACCOUNTS:
        create = ["users", "create", "--la", DEMO_LA, "--role", role, "--username", username]
        if role not in ("ops", "admin"):
            create += ["--team", DEMO_TEAM]  # the demo's caseworkers share "my team's cases"
        subprocess.run(
            [str(BIN / "cme-web"), *create],
            env=account_env,
            check=False,
            capture_output=True,
        )
    names = ", ".join(name for name, _ in DEMO_WEB_ACCOUNTS)
    print(
        f"web: http://127.0.0.1:{settings.web_port}/sign-in as {names}; password in {password_file}",
        file=sys.stderr,
    )


def _demo_allocation(settings: Settings) -> Path:
    """The demo LA's allocation policy (docs/WEB.md, "Allocation"): every new case to the demo's CME team,
    so each open case has an owner from the start, as it would in an LA."""
    path = settings.data_dir / "demo-allocation.yaml"
    path.write_text(f'"{DEMO_LA}":\n  default: team:{DEMO_TEAM}\n')
    return path


def _interrupt_on_sigterm() -> None:
    """A process manager stops ``cme run`` with SIGTERM: treat it as Ctrl-C, so the same clean-up runs."""

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)


def run_pipeline(settings: Settings, with_postgres: bool, demo: bool, exit_after: float | None) -> int:
    from devtools.mailcatcher import start_mail_catcher
    from shared.localstack.stack import StackError, stack_up

    _interrupt_on_sigterm()
    try:
        stack = stack_up(settings, with_postgres)
    except StackError as exc:
        print(f"cme run: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    procs: dict[str, subprocess.Popen[bytes]] = {}
    catcher = None
    try:
        mail_dir = settings.data_dir / "mail"
        catcher = start_mail_catcher(mail_dir, DEMO_SMTP_PORT)
        env = {
            **os.environ,
            **stack.env,
            "CME_NOTIFY_SMTP_PORT": str(DEMO_SMTP_PORT),
            "CME_NOTIFY_PUBLIC_BASE_URL": f"http://127.0.0.1:{settings.notify_port}",
            "CME_WEB_PORT": str(settings.web_port),
        }
        if demo:
            load = [str(BIN / "cme-notify"), "load-directory", str(DEMO_DIRECTORY)]
            subprocess.run(load, env=env, check=True)
            env["CME_WEB_ALLOCATION_FILE"] = str(_demo_allocation(settings))
        procs = start_services(settings, env, settings.data_dir / "logs")
        print(f"alerts are delivered as .eml files in {mail_dir}", file=sys.stderr)
        if demo:
            _demo_web_accounts(settings, env)
            from devtools.demo import feed_demo

            feed_demo(settings, env)
        else:
            print(
                "no demo: load your LA directory with `cme-notify load-directory FILE` and create sign-ins "
                "with `cme-web users create`",
                file=sys.stderr,
            )
        print(
            "pipeline running; logs in " + str(settings.data_dir / "logs") + "; Ctrl-C stops it",
            file=sys.stderr,
        )
        deadline = time.monotonic() + exit_after if exit_after else None
        while deadline is None or time.monotonic() < deadline:
            # Supervise like a deployment would (restartPolicy: Always): a faust worker exits when the broker
            # goes away, and must come back when it returns.
            for service in SERVICES:
                proc = procs.get(service.name)
                if proc is not None and proc.poll() is not None:
                    print(f"{service.name} exited with {proc.returncode}; restarting it", file=sys.stderr)
                    procs[service.name] = spawn(service, env, settings.data_dir / "logs", settings)
            time.sleep(1)
        return 0
    except KeyboardInterrupt:
        return 0
    except (RuntimeError, TimeoutError, subprocess.CalledProcessError) as exc:
        print(f"cme run: {exc}", file=sys.stderr)
        return 1
    finally:
        # Everything this run started stops with it; a broker or database that was already running stays.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        stop_services(procs)
        if catcher is not None:
            catcher.stop()
        stack.stop()
