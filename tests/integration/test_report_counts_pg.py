"""The reports' SQL on PostgreSQL (the unit tests run it on SQLite): the counts and the not-in-full-time-
education pages (an array parameter here) equal the whole-history replay, on the known scenario and a small
synthetic LA with late facts, built through the bulk insert and the spells' refresh as the worker does."""

from __future__ import annotations

from datetime import date

from services.tracking.stream.app import MIGRATIONS
from shared.db import make_engine, migrate
from tests.unit.test_report_counts import assert_same_reports, synthetic_store
from tests.unit.test_web_reports import LA, build_scenario


def test_the_scenario_and_a_synthetic_la_on_postgresql(postgres_url: str) -> None:
    migrate(postgres_url, MIGRATIONS, "tracking")
    engine = make_engine(postgres_url)
    try:
        build_scenario(engine)
        days = [
            date(2025, 7, 1),
            date(2025, 11, 3),
            date(2025, 11, 12),
            date(2025, 11, 20),
            date(2026, 1, 15),
        ]
        assert_same_reports(engine, LA, days, page=2)
        la = synthetic_store(engine, pupils=600, seed=12)
        assert_same_reports(engine, la, [date(2024, 10, 15), date(2025, 1, 31), date(2025, 5, 20)], page=40)
    finally:
        engine.dispose()
