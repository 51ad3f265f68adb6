"""Start a service again and again, polling its readiness from the first millisecond, and count the starts
that crash or never become ready: the check for start-up races that one test run does not show.

    .venv/bin/python -m bench.start_loop --service tracking --starts 50

Needs the tests' broker and PostgreSQL (started here as `make test` does, unless CME_TEST_KAFKA_BOOTSTRAP /
CME_TEST_DATABASE_URL name others). Each start gets its own topic prefix and database, as a new deployment.
Prints one line per start and a summary; exits 1 if any start failed.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import httpx

from devtools.localrun import SERVICES, log_tail
from shared.localstack.net import free_port
from tests.e2e.tracking_support import stop
from tests.support import stack


def one_start(service: str, bootstrap: str, database_url: str, workdir: Path, timeout_s: float) -> str:
    spec = next(s for s in SERVICES if s.name == service)
    port = free_port()
    log_path = workdir / f"{service}.log"
    env = {
        **os.environ,
        "CME_KAFKA_BOOTSTRAP": bootstrap,
        "CME_TOPIC_PREFIX": f"s{uuid.uuid4().hex[:10]}-",
        "CME_TOPIC_PARTITIONS": "2",
        "CME_DATABASE_URL": database_url,
        "CME_DATA_DIR": str(workdir),
        "CME_SIGNING_KEY": "start-loop-signing-key-0123456789abcdef",
        f"CME_{service.upper()}_PORT": str(port),
    }
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(spec.argv(), env=env, stdout=log, stderr=subprocess.STDOUT)  # noqa: S603
    started = time.monotonic()
    try:
        while time.monotonic() - started < timeout_s:
            if proc.poll() is not None:
                return f"exited with {proc.returncode}" + log_tail(log_path, 15)
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health/ready", timeout=1).status_code == 200:
                    return f"ready in {time.monotonic() - started:.1f} s"
            except httpx.HTTPError:
                pass
            time.sleep(0.001)
        return f"not ready after {timeout_s:.0f} s" + log_tail(log_path, 15)
    finally:
        stop(proc)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--service", default="tracking", choices=[s.name for s in SERVICES])
    parser.add_argument("--starts", type=int, default=50)
    parser.add_argument("--timeout", type=float, default=120.0)
    args = parser.parse_args()
    failures = 0
    with stack.kafka_bootstrap() as bootstrap, stack.postgres() as (url, cluster):
        for n in range(1, args.starts + 1):
            database_url = cluster.create_database(f"s_{uuid.uuid4().hex[:12]}") if cluster else url
            with tempfile.TemporaryDirectory(prefix="cme-start-") as tmp:
                result = one_start(args.service, bootstrap, database_url, Path(tmp), args.timeout)
            ok = result.startswith("ready")
            failures += not ok
            print(f"start {n:>3}: {result}", flush=True)
    print(f"{args.service}: {args.starts - failures} of {args.starts} starts ready, {failures} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
