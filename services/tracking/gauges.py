"""The open-cases-by-state gauge, read from the case store at scrape time (right whichever worker wrote
it)."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector, CollectorRegistry
from sqlalchemy import func
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from services.tracking.models import TrackingCase


class OpenCasesCollector(Collector):
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def collect(self) -> Iterator[GaugeMetricFamily]:
        gauge = GaugeMetricFamily("cme_tracking_cases", "Cases by LA and state", labels=["la_code", "state"])
        try:
            with Session(self.engine) as session:
                rows = session.exec(
                    select(TrackingCase.la_code, TrackingCase.state, func.count())
                    .where(col(TrackingCase.merged_into).is_(None), col(TrackingCase.state).is_not(None))
                    .group_by(col(TrackingCase.la_code), col(TrackingCase.state))
                ).all()
        except Exception:  # tables not there yet: report nothing rather than fail the scrape
            rows = []
        for la_code, state, count in rows:
            gauge.add_metric([la_code, str(state)], count)
        yield gauge


_registered: dict[int, OpenCasesCollector] = {}


def register_open_cases_gauge(engine: Engine, registry: CollectorRegistry) -> None:
    """One collector per registry: a second app in the same process (tests) replaces the first's engine."""
    existing = _registered.get(id(registry))
    if existing is not None:
        existing.engine = engine
        return
    collector = OpenCasesCollector(engine)
    registry.register(collector)
    _registered[id(registry)] = collector
