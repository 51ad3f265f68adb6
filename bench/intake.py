"""Accepted events per second of the referral service, against a bare FastAPI endpoint in the same run.

Starts the real service (``cme-referral serve``: uvicorn, one worker, outbox relay to the real broker) on
SQLite or PostgreSQL, and a bare FastAPI app that parses the JSON body and answers 202. Concurrent httpx
clients submit for a fixed time: single events (POST /v1/events) and batches (POST /v1/events/batch). Prints a
table and writes bench/results/intake.json.

    .venv/bin/python -m bench.intake --db sqlite --seconds 10
    .venv/bin/python -m bench.intake --db postgres --database-url postgresql://...

Client and servers share the machine: on a small box the load generator takes part of the CPU. Each run also
reports the CPU the server process and the load generator used (cores, from /proc on Linux): when the load
generator is near a whole core, the rate is the generator's, not the server's.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from devtools.samples import sample_event_dict
from shared.localstack.net import free_port
from shared.settings import PROJECT_ROOT

# CME_BENCH_RESULTS_DIR: where `python -m bench --out` wants it (a smoke run must not overwrite the results).
RESULTS = Path(os.environ.get("CME_BENCH_RESULTS_DIR", PROJECT_ROOT / "bench" / "results")) / "intake.json"
EVENT_TYPES = ("pupil-left-roll", "exclusion-issued", "pupil-registered", "home-education-notified")


def baseline_app() -> FastAPI:
    """The floor: FastAPI + uvicorn parsing a JSON body and answering 202, nothing else."""
    app = FastAPI()

    @app.post("/v1/events")
    async def accept(request: Request) -> JSONResponse:
        body = await request.json()
        return JSONResponse({"event_id": body.get("event_id"), "status": "accepted"}, 202)

    @app.post("/v1/events/batch")
    async def accept_batch(request: Request) -> JSONResponse:
        body = await request.json()
        return JSONResponse({"accepted": len(body["events"])}, 200)

    return app


def _serve_baseline(port: int) -> None:
    import uvicorn

    uvicorn.run(baseline_app(), host="127.0.0.1", port=port, log_level="warning")


@dataclass
class Run:
    target: str
    mode: str
    seconds: float
    requests: int
    events_accepted: int
    events_per_s: float
    p50_ms: float
    p99_ms: float
    errors: int
    latencies: list[float] = field(default_factory=list, repr=False)
    server_cpu_s: float | None = None  # the server process's CPU over the run (None without /proc)
    client_cpu_s: float = 0.0  # this process's: the load generator's

    @property
    def server_cores(self) -> float | None:
        return round(self.server_cpu_s / self.seconds, 2) if self.server_cpu_s is not None else None

    @property
    def client_cores(self) -> float:
        return round(self.client_cpu_s / self.seconds, 2) if self.seconds else 0.0

    @property
    def server_us_per_event(self) -> float | None:
        if self.server_cpu_s is None or not self.events_accepted:
            return None
        return round(self.server_cpu_s / self.events_accepted * 1e6, 1)

    def merged(self, other: Run) -> Run:
        """Two slices of one target and mode as one run."""
        latencies = sorted(self.latencies + other.latencies)
        seconds = self.seconds + other.seconds
        accepted = self.events_accepted + other.events_accepted
        return Run(
            target=self.target,
            mode=self.mode,
            seconds=round(seconds, 2),
            requests=self.requests + other.requests,
            events_accepted=accepted,
            events_per_s=round(accepted / seconds, 1) if seconds else 0.0,
            p50_ms=_p(latencies, 0.5),
            p99_ms=_p(latencies, 0.99),
            errors=self.errors + other.errors,
            latencies=latencies,
            server_cpu_s=(
                None
                if self.server_cpu_s is None or other.server_cpu_s is None
                else self.server_cpu_s + other.server_cpu_s
            ),
            client_cpu_s=self.client_cpu_s + other.client_cpu_s,
        )


def _p(sorted_latencies: list[float], q: float) -> float:
    if not sorted_latencies:
        return 0.0
    if q == 0.5:
        return round(statistics.median(sorted_latencies) * 1000, 2)
    return round(sorted_latencies[int(len(sorted_latencies) * q) - 1] * 1000, 2)


def process_cpu_s(pid: int) -> float | None:
    """User + system CPU seconds a process has used so far (Linux's /proc), or None where there is none."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measured(pid: int, run: Callable[[], Run]) -> Run:
    """``run``, with the CPU that the server process ``pid`` and this one (the load generator) used in it."""
    server, client = process_cpu_s(pid), time.process_time()
    result = run()
    client_cpu = time.process_time() - client
    after = process_cpu_s(pid)
    result.server_cpu_s = None if server is None or after is None else round(after - server, 3)
    result.client_cpu_s = round(client_cpu, 3)
    return result


_serial = 0


def next_event() -> dict[str, Any]:
    """A new valid event (fresh event_id, a UPN with a correct check letter)."""
    global _serial
    _serial += 1
    return sample_event_dict(EVENT_TYPES[_serial % len(EVENT_TYPES)], child_serial=1 + _serial % 999)


async def load(
    base_url: str,
    headers: dict[str, str],
    mode: str,
    batch: int,
    seconds: float,
    concurrency: int,
    target: str,
) -> Run:
    latencies: list[float] = []
    accepted = requests = errors = 0
    deadline = time.perf_counter() + seconds

    async def worker(http: httpx.AsyncClient) -> None:
        nonlocal accepted, requests, errors
        while time.perf_counter() < deadline:
            if mode == "single":
                path, body = "/v1/events", orjson.dumps(next_event())
            else:
                path, body = (
                    "/v1/events/batch",
                    orjson.dumps({"events": [next_event() for _ in range(batch)]}),
                )
            start = time.perf_counter()
            r = await http.post(path, content=body, headers={**headers, "Content-Type": "application/json"})
            latencies.append(time.perf_counter() - start)
            requests += 1
            if r.status_code == 202:
                accepted += 1
            elif r.status_code == 200:
                data = r.json()
                accepted += int(data.get("accepted", 0))
            else:
                errors += 1

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=60) as http:
        started = time.perf_counter()
        await asyncio.gather(*(worker(http) for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    latencies.sort()
    return Run(
        target=target,
        mode=mode if mode == "single" else f"batch of {batch}",
        seconds=round(elapsed, 2),
        requests=requests,
        events_accepted=accepted,
        events_per_s=round(accepted / elapsed, 1),
        p50_ms=_p(latencies, 0.5),
        p99_ms=_p(latencies, 0.99),
        errors=errors,
        latencies=latencies,
    )


def _or_dash(value: float | None) -> str:
    return "-" if value is None else f"{value:g}"


def wait_http(url: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"{url} did not come up")


def metric(base_url: str, name: str) -> float:
    for line in httpx.get(f"{base_url}/metrics", timeout=5).text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def wait_until(predicate: Callable[[], bool], timeout_s: float) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout_s:
        if predicate():
            return time.monotonic() - start
        time.sleep(0.2)
    return float("nan")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--database-url", help="PostgreSQL URL for --db postgres (an empty database)")
    parser.add_argument("--kafka", default=os.environ.get("CME_KAFKA_BOOTSTRAP", "127.0.0.1:19092"))
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument(
        "--slices",
        type=int,
        default=1,
        help="split each run into this many slices, alternating bare and referral, so that both see the same "
        "background load on a shared machine (1: one run of each, one after the other)",
    )
    parser.add_argument("--serve-baseline", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_baseline:
        _serve_baseline(args.serve_baseline)
        return 0

    from services.referral.app import MIGRATIONS
    from services.referral.clients import create_client
    from services.referral.models import ClientKind
    from shared.db import make_engine, migrate
    from shared.kafka import ensure_topics
    from shared.settings import Settings

    workdir = Path(tempfile.mkdtemp(prefix="cme-bench-"))
    if args.db == "postgres":
        if not args.database_url:
            raise SystemExit("--db postgres needs --database-url (an empty database)")
        database_url = args.database_url
    else:
        database_url = f"sqlite:///{workdir / 'referral.db'}"
    prefix = f"bench{uuid.uuid4().hex[:8]}-"
    settings = Settings(database_url=database_url, kafka_bootstrap=args.kafka, topic_prefix=prefix)
    ensure_topics(settings)
    migrate(database_url, MIGRATIONS, "referral")
    engine = make_engine(database_url)
    _, key = create_client(
        engine,
        kind=ClientKind.SCHOOL,
        name="bench",
        la_code="801",
        school_urn="108000",
        rate_per_s=1e6,
        burst=10**6,
    )
    engine.dispose()
    headers = {"Authorization": f"Bearer {key}"}

    service_port, baseline_port = free_port(), free_port()
    env = {
        **os.environ,
        "CME_DATABASE_URL": database_url,
        "CME_KAFKA_BOOTSTRAP": args.kafka,
        "CME_TOPIC_PREFIX": prefix,
        "CME_REFERRAL_PORT": str(service_port),
        "CME_BIND_HOST": "127.0.0.1",
    }
    log = (workdir / "service.log").open("wb")
    service = subprocess.Popen(
        [sys.executable, "-m", "services.referral.main", "serve"],
        env=env,
        stdout=log,
        stderr=log,
        cwd=PROJECT_ROOT,
    )
    baseline = subprocess.Popen(  # noqa: S603
        [sys.executable, "-m", "bench.intake", "--serve-baseline", str(baseline_port)],
        cwd=PROJECT_ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    service_url, baseline_url = f"http://127.0.0.1:{service_port}", f"http://127.0.0.1:{baseline_port}"
    runs: list[Run] = []
    try:
        wait_http(f"{service_url}/health/live")
        wait_http(f"{baseline_url}/docs")
        for mode in ("single", "batch"):
            merged: dict[str, Run] = {}
            for _ in range(max(1, args.slices)):
                for target, url, pid in (
                    ("bare FastAPI", baseline_url, baseline.pid),
                    ("referral", service_url, service.pid),
                ):
                    seconds = args.seconds / max(1, args.slices)
                    coroutine = load(url, headers, mode, args.batch, seconds, args.concurrency, target)
                    run = measured(pid, functools.partial(asyncio.run, coroutine))
                    merged[target] = merged[target].merged(run) if target in merged else run
            for target, run in merged.items():
                runs.append(run)
                print(f"  {target:<13} {run.mode:<13} {run.events_per_s:>9.1f} events/s", file=sys.stderr)
        accepted = sum(r.events_accepted for r in runs if r.target == "referral")
        drain_s = wait_until(
            lambda: metric(service_url, "cme_referral_events_published_total") >= accepted, 120
        )
    finally:
        for proc in (service, baseline):
            proc.terminate()
        for proc in (service, baseline):
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log.close()

    ratios = {}
    for mode in ("single", f"batch of {args.batch}"):
        bare = next(r for r in runs if r.mode == mode and r.target == "bare FastAPI")
        ours = next(r for r in runs if r.mode == mode and r.target == "referral")
        ratios[mode] = round(ours.events_per_s / bare.events_per_s, 3) if bare.events_per_s else None
    print(
        f"\nreferral intake benchmark: {args.db}, {args.concurrency} concurrent clients, "
        f"{args.seconds:g}s a run"
    )
    print(
        f"{'target':<14}{'mode':<14}{'events/s':>10}{'requests':>10}{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}"
        f"{'server cores':>14}{'server us/event':>17}{'client cores':>14}"
    )
    for r in runs:
        print(
            f"{r.target:<14}{r.mode:<14}{r.events_per_s:>10.1f}{r.requests:>10}{r.p50_ms:>9.2f}{r.p99_ms:>9.2f}"
            f"{r.errors:>8}{_or_dash(r.server_cores):>14}{_or_dash(r.server_us_per_event):>17}"
            f"{r.client_cores:>14.2f}"
        )
    for mode, ratio in ratios.items():
        print(f"referral / bare FastAPI, {mode}: {ratio}")
    print(f"all {accepted} accepted events published to Kafka {drain_s:.1f}s after the load ended")
    result = {
        "benchmark": "referral intake",
        "database": args.db,
        "concurrency": args.concurrency,
        "seconds_per_run": args.seconds,
        "batch_size": args.batch,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "slices": args.slices,
        "runs": [
            {
                **{k: v for k, v in asdict(r).items() if k != "latencies"},
                "server_cores": r.server_cores,
                "server_cpu_us_per_event": r.server_us_per_event,
                "client_cores": r.client_cores,
            }
            for r in runs
        ],
        "ratio_referral_to_bare": ratios,
        "publish_drain_seconds_after_load": round(drain_s, 2),
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    existing = orjson.loads(RESULTS.read_bytes()) if RESULTS.exists() else {}
    existing = existing if isinstance(existing, dict) else {}
    existing[args.db] = result
    RESULTS.write_bytes(orjson.dumps(existing, option=orjson.OPT_INDENT_2))
    print(f"wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
