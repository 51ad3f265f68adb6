"""Every service starts when Kafka and PostgreSQL are not up yet: it is live at once, answers not ready (and
503 with Retry-After on its own routes) while it waits, and becomes ready by itself when they come.

Kafka and PostgreSQL are reached through forwarders that open late (tests/support/tcp_proxy.py): until then
nothing listens on the addresses the services were given, as with servers that have not started."""

from __future__ import annotations

import os
import subprocess
import uuid
from pathlib import Path

import httpx
import pytest
from sqlalchemy.engine import make_url

from devtools.localrun import SERVICES, spawn, stop_services, wait_ready
from shared.localstack.net import free_port
from shared.settings import Settings
from tests.support.kafka import wait_until
from tests.support.pipeline import SIGNING_KEY
from tests.support.tcp_proxy import LateProxy

pytestmark = pytest.mark.e2e


def _status(url: str) -> int:
    try:
        return httpx.get(url, timeout=2).status_code
    except httpx.HTTPError:
        return 0


def _body(url: str) -> str:
    try:
        return httpx.get(url, timeout=2).text
    except httpx.HTTPError:
        return ""


def test_every_service_waits_for_kafka_and_postgres_then_becomes_ready(
    kafka_bootstrap: str, postgres_url: str, tmp_path: Path
) -> None:
    broker_host, _, broker_port = kafka_bootstrap.rpartition(":")
    db = make_url(postgres_url)
    kafka_proxy = LateProxy(broker_host, int(broker_port))
    db_proxy = LateProxy(db.host or "127.0.0.1", db.port or 5432)
    ports = {s.name: free_port() for s in SERVICES}
    settings = Settings(topic_prefix=f"t{uuid.uuid4().hex[:10]}-")
    env = {
        **os.environ,
        "CME_KAFKA_BOOTSTRAP": f"127.0.0.1:{kafka_proxy.port}",
        "CME_TOPIC_PREFIX": settings.topic_prefix,
        "CME_TOPIC_PARTITIONS": "2",
        "CME_DATABASE_URL": db.set(port=db_proxy.port).render_as_string(hide_password=False),
        "CME_DATA_DIR": str(tmp_path),
        "CME_SIGNING_KEY": SIGNING_KEY,
        "CME_LOG_JSON": "true",
        **{f"CME_{name.upper()}_PORT": str(port) for name, port in ports.items()},
    }
    log_dir = tmp_path / "logs"
    log_dir.mkdir()
    procs: dict[str, subprocess.Popen[bytes]] = {}
    try:
        for service in SERVICES:
            procs[service.name] = spawn(service, env, log_dir, settings)

        # Live, not ready, and the service's own routes say "starting" with a Retry-After.
        for service in SERVICES:
            base = f"http://127.0.0.1:{ports[service.name]}"
            live = f"{base}/health/live"
            wait_until(lambda url=live: _status(url) == 200, 60, what=f"{service.name} live")  # type: ignore[misc]
            assert _status(f"{base}/health/ready") == 503, service.name
            assert procs[service.name].poll() is None, f"{service.name} exited while waiting"
        refused = httpx.post(f"http://127.0.0.1:{ports['referral']}/v1/events", json={}, timeout=5)
        assert refused.status_code == 503
        assert refused.headers["Retry-After"]
        assert refused.json()["errors"][0]["rule"] == "starting"

        # Every service has tried its first start step against nothing, failed, and waits to retry: alive.
        for service in SERVICES:
            ready = f"http://127.0.0.1:{ports[service.name]}/health/ready"
            wait_until(lambda url=ready: "Error)" in _body(url), 60, what=f"{service.name} retrying")  # type: ignore[misc]
        assert all(p.poll() is None for p in procs.values()), "a service gave up waiting"

        db_proxy.open()
        kafka_proxy.open()
        for service in SERVICES:
            url = f"http://127.0.0.1:{ports[service.name]}/health/ready"
            wait_ready(url, 150, procs[service.name], log_dir / f"{service.name}.log")
    finally:
        stop_services(procs)
        kafka_proxy.close()
        db_proxy.close()
