"""`cme-notify` as a process: load the directory with the CLI, serve, deliver one escalation, report ready."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

import httpx
import pytest

from shared.events import encode_event
from shared.settings import PROJECT_ROOT, Settings
from shared.topics import ESCALATIONS
from tests.integration.test_notify_support import SmtpSink, escalation, free_port
from tests.support.kafka import produce, wait_until

pytestmark = pytest.mark.integration


@pytest.fixture
def smtp() -> Iterator[SmtpSink]:
    sink = SmtpSink().start()
    yield sink
    sink.stop()


def test_serve_delivers_and_reports_ready(kafka_settings: Settings, smtp: SmtpSink) -> None:
    port = free_port()
    env = {
        **os.environ,
        "CME_KAFKA_BOOTSTRAP": kafka_settings.kafka_bootstrap,
        "CME_TOPIC_PREFIX": kafka_settings.topic_prefix,
        "CME_DATABASE_URL": kafka_settings.database_url,
        "CME_NOTIFY_PORT": str(port),
        "CME_NOTIFY_SMTP_PORT": str(smtp.port),
        "CME_NOTIFY_POLL_INTERVAL_S": "0.2",
        "CME_NOTIFY_DIRECTORY_PATH": str(PROJECT_ROOT / "services" / "notify" / "directory.example.yaml"),
    }
    cli = [sys.executable, "-m", "services.notify.main"]
    loaded = subprocess.run(
        [*cli, "load-directory"], env=env, cwd=PROJECT_ROOT, capture_output=True, text=True
    )
    assert loaded.returncode == 0, loaded.stderr
    assert "801" in loaded.stdout
    server = subprocess.Popen([*cli, "serve"], env=env, cwd=PROJECT_ROOT, stderr=subprocess.PIPE, text=True)
    try:

        def ready() -> bool:
            try:
                return httpx.get(f"http://127.0.0.1:{port}/health/ready", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(ready, timeout_s=30, what="the service to be ready")
        event = escalation(la_code="801")
        produce(kafka_settings, ESCALATIONS.name(kafka_settings), [(b"k", encode_event(event))])
        (message,) = wait_until(lambda: smtp.received(), timeout_s=30, what="the alert email")
        assert message["To"] == "jo.smith@example.gov.uk"
        assert message["Auto-Submitted"] == "auto-generated"
        metrics = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
        assert 'cme_notify_deliveries_total{channel="smtp",outcome="sent"} 1.0' in metrics
        assert "cme_notify_pending_acks 1.0" in metrics
    finally:
        server.terminate()
        _, stderr = server.communicate(timeout=20)
    # uvicorn shuts down gracefully on SIGTERM, then re-raises the signal: -15 is a clean exit.
    assert server.returncode in (0, -15), stderr[-2000:]
    assert "notify_worker_stopped" in stderr and "Traceback" not in stderr
    assert "jo.smith" not in stderr  # no address in the logs
