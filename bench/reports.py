"""The web's reports at LA size: how long the reports page and the CSV returns take for one LA's cases.

One synthetic LA (``devtools.synthetic``; ~1 tracked child in 3 pupils, so 150,000 pupils give ~50,000 cases)
is made into a case store the way the live worker makes it: its facts as the child-events topic, rebuilt
into a fresh PostgreSQL database (``services.tracking.rebuild``, which writes each case's spells as it
projects). Then, in process and as the web does it, for the reports page (snapshot and 12-month trends), the
DfE CME return and the termly return, and the list of children not in full-time education:

- the path the web uses: tracking's counts of the spells in SQL (``GET /v1/reports/counts``,
  ``/v1/reports/return``, ``/v1/reports/not-in-full-time-education`` a page at a time) and the web's figures
  from them (``services/web/reports.py``, ``*_from``);
- the baseline, the path before issue 21, measured in the same run: tracking's ``GET /v1/reports/history``
  (every case's whole history), the web's parse into ``CaseHistory`` models and the replay of each figure.

The two paths' figures are compared (they must be equal). Compared with the 0.5 s target (issue 21).

    .venv/bin/python -m bench.reports --pupils 150000
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable
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
REPEATS = 5  # the new path's calls are short: the median of a few


def _timed(fn: Any) -> tuple[Any, float]:
    started = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - started


def _median(fn: Callable[[], Any]) -> tuple[Any, float]:
    runs = [_timed(fn) for _ in range(REPEATS)]
    return runs[0][0], statistics.median(t for _, t in runs)


def measure(url: str, la: str, census: date = CENSUS) -> dict[str, Any]:
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
    headers = {"Authorization": f"Bearer {token}"}
    calendar = CalendarRegistry().default
    with engine.connect() as conn:
        cases = int(conn.execute(text("SELECT count(*) FROM tracking_cases")).scalar_one())
        rows = int(conn.execute(text("SELECT count(*) FROM tracking_timeline")).scalar_one())
        spells = int(conn.execute(text("SELECT count(*) FROM tracking_spells")).scalar_one())
    on = census.isoformat()
    first, last = reports.academic_year_before(census)
    with TestClient(app) as client:

        def get(path: str, **params: Any) -> Any:
            response = client.get(path, params={"reason": "bench report", **params}, headers=headers)
            assert response.status_code == 200, response.text
            return response

        # The web's path: counts in SQL, figures from them.
        def page() -> tuple[Any, Any]:
            counts = reports.ReportCounts.model_validate(get("/v1/reports/counts", on=on).json())
            return reports.snapshot_from(counts, calendar, None), reports.trends_from(counts)

        def returned() -> Any:
            data = get(
                "/v1/reports/return", on=on, ehe_from=first.isoformat(), ehe_to=last.isoformat()
            ).json()
            return reports.ReturnCounts.model_validate(data)

        def not_in_fte() -> list[tuple[str, ...]]:
            children: list[reports.FTEChild] = []
            params: dict[str, Any] = {"on": on}
            while True:
                page = reports.NotInFTEPage.model_validate_json(
                    get("/v1/reports/not-in-full-time-education", **params).content
                )
                children += page.rows
                if not page.next_after:
                    return reports.not_in_fte_from(children, census)
                params["after"] = page.next_after

        page()  # warm: imports, the first connection
        (snap, points), page_s = _median(page)
        dfe, dfe_s = _median(lambda: reports.dfe_return_from(returned()))
        termly, termly_s = _median(lambda: reports.termly_return_from(returned()))
        fte, fte_s = _median(not_in_fte)

        # The baseline: every history over the wire, parsed, each figure replayed.
        response, fetch_s = _timed(lambda: get("/v1/reports/history"))
    size = len(response.content)
    histories, parse_s = _timed(lambda: [reports.CaseHistory.model_validate(h) for h in response.json()])
    (old_snap, old_points), old_page_s = _timed(
        lambda: (reports.snapshot(histories, census, calendar, None), reports.trends(histories, census))
    )
    old_dfe, old_dfe_s = _timed(lambda: reports.dfe_return(histories, census))
    old_termly, old_termly_s = _timed(lambda: reports.termly_return(histories, census))
    old_fte, old_fte_s = _timed(lambda: reports.not_in_full_time_education(histories, census))
    engine.dispose()
    same = (snap, points, dfe, termly, fte) == (old_snap, old_points, old_dfe, old_termly, old_fte)
    assert same, "the SQL counts and the replay of the histories disagree"
    return {
        "cases": cases,
        "timeline_rows": rows,
        "spell_rows": spells,
        "cme_on_census_day": snap.cme_total,
        "not_in_fte_children": len(fte),
        "reports_page_s": page_s,
        "dfe_csv_s": dfe_s,
        "termly_csv_s": termly_s,
        "not_in_fte_csv_s": fte_s,
        "same_figures": same,
        "load_average": round(os.getloadavg()[0], 1),
        "baseline": {
            "history_bytes": size,
            "tracking_history_s": fetch_s,
            "web_parse_s": parse_s,
            "page_compute_s": old_page_s,
            "reports_page_s": fetch_s + parse_s + old_page_s,
            "dfe_csv_s": fetch_s + parse_s + old_dfe_s,
            "termly_csv_s": fetch_s + parse_s + old_termly_s,
            "not_in_fte_csv_s": fetch_s + parse_s + old_fte_s,
        },
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
            _, rebuild_s = _timed(lambda: rebuild(settings, url, batch=2000))
        finally:
            delete_topics(settings)
        result = measure(url, la)
    result["rebuild_s"] = rebuild_s  # with the spells written as it projects
    log(f"reports: {result}")
    n, old = result["cases"], result["baseline"]
    load = f"load average {result['load_average']}"

    def row(metric: str, key: str, note: str = "") -> Row:
        return Row(
            "reports",
            f"{metric}, {n:,} cases",
            round(result[key], 3),
            "s",
            f"before issue 21 (whole histories), same run: {old[key]:.2f} s; target",
            TARGET_S,
            f"{note}{load}",
            extra=result if key == "reports_page_s" else {},
        )

    return [
        row(
            "reports page (SQL counts: snapshot + 12-month trends)",
            "reports_page_s",
            f"history was {old['history_bytes'] / 1e6:.1f} MB in {old['tracking_history_s']:.2f} s, "
            f"parse {old['web_parse_s']:.2f} s; ",
        ),
        row("DfE CME return CSV", "dfe_csv_s"),
        row("DfE termly return CSV (EHE + CME)", "termly_csv_s"),
        row(
            f"not in full-time education CSV ({result['not_in_fte_children']:,} children)", "not_in_fte_csv_s"
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
