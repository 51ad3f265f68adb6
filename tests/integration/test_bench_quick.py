"""``python -m bench --quick`` on the cheap parts, so the benchmark code cannot rot unnoticed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import orjson

from shared.settings import PROJECT_ROOT, Settings


def test_quick_bench_prints_one_table_and_writes_json(
    kafka_settings: Settings, postgres_server: tuple[str, object], tmp_path: Path
) -> None:
    admin_url, _ = postgres_server
    env = {
        **os.environ,
        "CME_KAFKA_BOOTSTRAP": kafka_settings.kafka_bootstrap,
        "CME_BENCH_DATABASE_URL": admin_url,
        # The services' logs (under the bench's /tmp/cme-bench-* work folder) then say where a fact stopped.
        "CME_BENCH_LOG_LEVEL": "INFO",
    }
    parts = ["memory", "e2e", "sustained"]
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--only", *parts, "--out", str(tmp_path)],
        cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=480,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    assert done.stdout.count("baseline (same run)") == 1  # one table
    summary = orjson.loads((tmp_path / "summary.json").read_bytes())
    assert summary["mode"] == "quick" and not summary["errors"]
    rows = {(r["part"], r["metric"].split(" (")[0]): r for r in summary["rows"]}
    state_machine = rows[("tracking", "pure state machine in-process")]
    assert state_machine["value"] > 0 and state_machine["ratio"] > 0
    assert rows[("memory", "table record stored per tracked child")]["value"] > 100
    latency = [r for r in summary["rows"] if r["part"] == "e2e" and r["metric"].startswith("API 2xx")]
    assert len(latency) == 3
    assert all(r["value"] > 0 and r["baseline_value"] > 0 for r in latency)
    assert "5 of 5 matched" in latency[0]["note"]  # every alert was matched to its fact's 2xx
    # The sustained load at its quick size (50 facts/s for 5 s): every alert, routine and urgent, matched.
    offered = rows[("sustained", "offered facts/s")]
    assert offered["value"] > 0 and offered["baseline_value"] == 50
    sustained = [r for r in summary["rows"] if r["part"] == "sustained" and r["metric"].startswith("API 2xx")]
    assert len(sustained) == 6 and all(r["value"] > 0 for r in sustained)
    assert "40 of 40 matched" in sustained[0]["note"] and "10 of 10 matched" in sustained[3]["note"]
