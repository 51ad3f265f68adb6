"""The web's reports at LA size: how long the reports page and the CSV returns take for one LA's cases.

One synthetic LA (``devtools.synthetic``; ~1 tracked child in 3 pupils, so 150,000 pupils give ~50,000 cases)
is made into a case store the way the live worker makes it: its facts as the child-events topic, rebuilt
into a fresh PostgreSQL database (``services.tracking.rebuild``). Then, in process and as the web does it:
tracking's ``GET /v1/reports/history`` (all of the LA's cases with their spells), the web's parse of it into
``CaseHistory`` models, and the report functions (``services/web/reports.py``) for the reports page (snapshot
and 12-month trends) and the two CSV returns. Compared with the 0.5 s target (issue 21).

    .venv/bin/python -m bench.reports --pupils 150000
"""

from __future__ import annotations

import argparse
import tempfile
import time
from datetime import date
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import text

from bench.common import Row, bench_settings, delete_topics, log, produce_fast, scratch_database
from bench.rebuild import child_events
from shared.kafka import ensure_topics
from shared.topics import CHILD_EVENTS

TARGET_S = 0.5
CENSUS = date(2026, 1, 15)  # a census day late in the synthetic school year's autumn term


def _timed(fn: Any) -> tuple[Any, float]:
    started = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - started


def measure(url: str, la: str) -> dict[str, Any]:
    from services.tracking import api as tracking_api
    from services.tracking.crossla import CrossLAMatcher
    from services.web import reports
    from shared.auth import Role, issue_token
    from shared.db import make_engine
    from shared.school_calendar import CalendarRegistry
    from shared.settings import Settings, get_settings

    signing = Settings(signing_key="bench-reports-signing-key-0123456789")  # type: ignore[arg-type]

    def refuse(session: object, event: object) -> None:
        raise AssertionError("reports publish nothing")

    engine = make_engine(url)
    app = FastAPI()
    app.state.engine = engine
    app.state.matcher = CrossLAMatcher()
    app.state.publish = refuse
    app.dependency_overrides[get_settings] = lambda: signing
    app.include_router(tracking_api.router)
    token = issue_token(signing, "manager1", Role.MANAGER, la)
    calendar = CalendarRegistry().default
    with engine.connect() as conn:
        cases = int(conn.execute(text("SELECT count(*) FROM tracking_cases")).scalar_one())
        rows = int(conn.execute(text("SELECT count(*) FROM tracking_timeline")).scalar_one())
    with TestClient(app) as client:

        def fetch() -> Any:
            response = client.get(
                "/v1/reports/history",
                params={"reason": "bench report"},
                headers={"Authorization": f"Bearer {token}"},
            )
            assert response.status_code == 200, response.text
            return response

        fetch()  # warm: imports, the first connection
        response, fetch_s = _timed(fetch)
    size = len(response.content)
    histories, parse_s = _timed(lambda: [reports.CaseHistory.model_validate(h) for h in response.json()])
    _, page_s = _timed(
        lambda: (reports.snapshot(histories, CENSUS, calendar, None), reports.trends(histories, CENSUS))
    )
    _, dfe_s = _timed(lambda: reports.dfe_return(histories, CENSUS))
    _, fte_s = _timed(lambda: reports.not_in_full_time_education(histories, CENSUS))
    engine.dispose()
    return {
        "cases": cases,
        "timeline_rows": rows,
        "history_bytes": size,
        "tracking_history_s": fetch_s,
        "web_parse_s": parse_s,
        "page_compute_s": page_s,
        "dfe_compute_s": dfe_s,
        "not_in_fte_compute_s": fte_s,
        "reports_page_s": fetch_s + parse_s + page_s,
        "dfe_csv_s": fetch_s + parse_s + dfe_s,
        "not_in_fte_csv_s": fetch_s + parse_s + fte_s,
    }


def run(workdir: Path, pupils: int, seed: int = 5) -> list[Row]:
    from devtools.synthetic import choose_las
    from services.tracking.rebuild import rebuild

    la = choose_las(1, seed)[0]
    records = child_events(1, pupils, seed)
    log(f"reports: {len(records):,} facts of one LA ({la}) of {pupils:,} pupils; building its case store")
    with scratch_database("reports") as url:
        settings = bench_settings(url, workdir)
        ensure_topics(settings, (CHILD_EVENTS,))
        try:
            produce_fast(settings, CHILD_EVENTS.name(settings), records)
            rebuild(settings, url, batch=2000)
        finally:
            delete_topics(settings)
        result = measure(url, la)
    log(f"reports: {result}")
    n = result["cases"]
    return [
        Row(
            "reports",
            f"reports page (history fetch + parse + snapshot + trends), {n:,} cases",
            round(result["reports_page_s"], 3),
            "s",
            "target",
            TARGET_S,
            f"history {result['history_bytes'] / 1e6:.1f} MB in {result['tracking_history_s']:.2f} s, "
            f"parse {result['web_parse_s']:.2f} s",
            extra=result,
        ),
        Row(
            "reports",
            f"DfE CME return CSV, {n:,} cases",
            round(result["dfe_csv_s"], 3),
            "s",
            "target",
            TARGET_S,
        ),
        Row(
            "reports",
            f"not in full-time education CSV, {n:,} cases",
            round(result["not_in_fte_csv_s"], 3),
            "s",
            "target",
            TARGET_S,
        ),
    ]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--pupils", type=int, default=150_000)
    parser.add_argument("--seed", type=int, default=5)
    args = parser.parse_args(argv)
    for row in run(Path(tempfile.mkdtemp(prefix="cme-reports-")), args.pupils, args.seed):
        print(row.as_dict())


if __name__ == "__main__":
    main()
