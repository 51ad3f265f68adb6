"""Cost of one escalation due-check with 10,000 and with 1,000,000 open deadlines, SQLite and PostgreSQL.

The due-check is the timer's query (``services.escalation.timer.due_deadline_ids``): pending deadlines
due by now, oldest first, one batch. Only a handful of the rows are due; the rest fall due over the next
two years.
With the (status, due_at) index its cost should follow what is due, not what is open: the printed ratio
(1M / 10k) should stay near 1, where a scan would be near 100.

Rows are bulk-loaded (executemany on SQLite, COPY on PostgreSQL) with a short rule_json (the due-check never
reads it; the real rule text would only make the table bigger, not the index scan longer).

PostgreSQL: CME_BENCH_DATABASE_URL (a server where we may create databases), else the test cluster at
127.0.0.1:55433 (user cme, password cme-local); skipped when unreachable.
Results: bench/results/escalation_due.json.
Run: .venv/bin/python bench/escalation_due.py [--sizes 10000 1000000] [--repeat 200]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import insert, text
from sqlalchemy.engine import Engine, make_url
from sqlmodel import Session

from services.escalation.app import MIGRATIONS
from services.escalation.models import EscalationDeadline
from services.escalation.timer import due_deadline_ids
from shared.db import make_engine, migrate

NOW = datetime(2026, 1, 12, 9, 0, tzinfo=UTC)
DUE = 5  # deadlines already due at NOW
BATCH = 200  # the service's default due batch
DEFAULT_PG = "postgresql://cme:cme-local@127.0.0.1:55433/postgres"
RESULTS = (
    Path(os.environ.get("CME_BENCH_RESULTS_DIR", Path(__file__).resolve().parent / "results"))
    / "escalation_due.json"
)
COLUMNS = (
    "id", "kind", "status", "due_at", "la_code", "child_id", "case_id", "rule_id", "watch_key",
    "trigger_event_id", "escalation_id", "step_index", "rule_order", "rule_json", "rule_fingerprint",
    "created_at", "fired_at", "cancelled_at", "cancel_reason",
)  # fmt: skip


def _rows(n: int) -> Any:
    """n pending deadlines: DUE of them due before NOW, the rest spread over the next two years."""
    created = NOW - timedelta(days=30)
    for i in range(n):
        due = (
            NOW - timedelta(minutes=i + 1) if i < DUE else NOW + timedelta(minutes=1 + (i * 7919) % 1_051_200)
        )
        child, trigger = str(uuid.UUID(int=10**12 + i)), str(uuid.UUID(int=2 * 10**12 + i))
        yield (
            str(uuid.UUID(int=i + 1)), "rule", "pending", due, "801", child, None,
            "missing_education_no_outcome", "missing_education", trigger, None, None, 0, "{}", "0" * 64,
            created, None, None, None,
        )  # fmt: skip


def _load_sqlite(engine: Engine, n: int) -> None:
    chunk: list[dict[str, Any]] = []
    with engine.begin() as conn:
        for row in _rows(n):
            chunk.append(dict(zip(COLUMNS, row, strict=True)))
            if len(chunk) == 50_000:
                conn.execute(insert(EscalationDeadline), chunk)
                chunk = []
        if chunk:
            conn.execute(insert(EscalationDeadline), chunk)
        conn.execute(text("ANALYZE"))


def _load_postgres(engine: Engine, n: int) -> None:
    raw = engine.raw_connection()
    try:
        cur = raw.cursor()
        with cur.copy(f"COPY escalation_deadlines ({', '.join(COLUMNS)}) FROM STDIN") as copy:  # type: ignore[attr-defined]
            for row in _rows(n):
                copy.write_row(row)
        raw.commit()
        cur.execute("ANALYZE escalation_deadlines")
        raw.commit()
    finally:
        raw.close()


def _measure(engine: Engine, repeat: int) -> dict[str, Any]:
    timings: list[float] = []
    with Session(engine) as session:
        for _ in range(5):  # warm the cache and the prepared statement
            due_deadline_ids(session, NOW, BATCH)
        for _ in range(repeat):
            started = time.perf_counter()
            ids = due_deadline_ids(session, NOW, BATCH)
            timings.append((time.perf_counter() - started) * 1000)
    assert len(ids) == DUE, f"expected {DUE} due, got {len(ids)}"
    timings.sort()
    return {
        "median_ms": round(statistics.median(timings), 4),
        "p95_ms": round(timings[int(0.95 * (len(timings) - 1))], 4),
        "min_ms": round(timings[0], 4),
        "due": len(ids),
    }


def _plan(engine: Engine) -> str:
    sql = (
        "SELECT id FROM escalation_deadlines WHERE status = 'pending' AND due_at <= :now "
        "ORDER BY due_at, rule_order, id LIMIT 200"
    )
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            rows = conn.execute(
                text("EXPLAIN QUERY PLAN " + sql), {"now": NOW.strftime("%Y-%m-%d %H:%M:%S.%f")}
            )
            return " | ".join(str(r[-1]) for r in rows)
        rows = conn.execute(text("EXPLAIN " + sql), {"now": NOW})
        return " | ".join(str(r[0]).strip() for r in rows)


def bench_sqlite(n: int, repeat: int, workdir: Path) -> dict[str, Any]:
    url = f"sqlite:///{workdir / f'due_{n}.db'}"
    migrate(url, MIGRATIONS, "escalation")
    engine = make_engine(url)
    started = time.perf_counter()
    _load_sqlite(engine, n)
    load_s = time.perf_counter() - started
    result = {
        "open_deadlines": n,
        "load_s": round(load_s, 1),
        **_measure(engine, repeat),
        "plan": _plan(engine),
    }
    engine.dispose()
    return result


def bench_postgres(n: int, repeat: int, admin_url: str) -> dict[str, Any]:
    name = f"cme_bench_due_{n}_{uuid.uuid4().hex[:6]}"
    admin = make_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(admin_url.replace("postgresql://", "postgresql+psycopg://", 1)).set(database=name)
    db_url = url.render_as_string(hide_password=False)
    try:
        migrate(db_url, MIGRATIONS, "escalation")
        engine = make_engine(db_url)
        started = time.perf_counter()
        _load_postgres(engine, n)
        load_s = time.perf_counter() - started
        result = {
            "open_deadlines": n,
            "load_s": round(load_s, 1),
            **_measure(engine, repeat),
            "plan": _plan(engine),
        }
        engine.dispose()
        return result
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _postgres_reachable(url: str) -> bool:
    try:
        engine = make_engine(url, pool_size=1)
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        engine.dispose()
        return True
    except Exception as exc:  # unreachable or refused: skip PostgreSQL, say why
        print(f"PostgreSQL not reachable ({type(exc).__name__}); skipping it")
        return False


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs=2, default=[10_000, 1_000_000])
    parser.add_argument("--repeat", type=int, default=200)
    args = parser.parse_args()
    small, large = args.sizes
    results: dict[str, Any] = {"now": NOW.isoformat(), "due": DUE, "batch": BATCH, "backends": {}}
    with tempfile.TemporaryDirectory(prefix="cme-bench-") as tmp:
        results["backends"]["sqlite"] = [bench_sqlite(n, args.repeat, Path(tmp)) for n in (small, large)]
    pg_url = os.environ.get("CME_BENCH_DATABASE_URL", DEFAULT_PG)
    if _postgres_reachable(pg_url):
        results["backends"]["postgresql"] = [bench_postgres(n, args.repeat, pg_url) for n in (small, large)]

    print(f"\nOne due-check ({DUE} due, batch {BATCH}), median (p95) in ms:")
    print(f"{'backend':<12}{f'{small:,} open':>22}{f'{large:,} open':>22}{'ratio (median)':>18}")
    for backend, (a, b) in results["backends"].items():
        ratio = b["median_ms"] / a["median_ms"] if a["median_ms"] else float("nan")
        results["backends"][backend] = {"small": a, "large": b, "ratio_large_to_small": round(ratio, 2)}
        cells = [f"{r['median_ms']:.3f} ({r['p95_ms']:.3f})" for r in (a, b)]
        print(f"{backend:<12}{cells[0]:>22}{cells[1]:>22}{ratio:>18.2f}")
        print(f"{'':<12}plan: {b['plan']}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nwritten to {RESULTS}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
