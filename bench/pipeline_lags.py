"""Where a running pipeline's time goes: consumer group lags and escalation's horizon lags, sampled while a
benchmark runs (``bench/e2e_sustained.py``), so a latency can be read against the queue that held it.

A sample is taken every ``every_s`` seconds from a thread of its own:

- each consumer group reading the measurement's topics: records not yet committed per topic, summed over its
  partitions (the web's lag exporter's ``measure_once``: tracking's agents, escalation, notify);
- escalation's ``cme_escalation_horizon_lag_seconds`` by input (``child_events``, ``transitions``,
  ``tracking``), the largest over partitions: how far behind escalation's clock each input holds the horizon.
"""

from __future__ import annotations

import asyncio
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

from bench.common import log
from services.web.settings import WebSettings, web_settings
from services.web.worker import measure_once
from shared.settings import Settings

HORIZON_LINE = re.compile(r"^cme_escalation_horizon_lag_seconds\{([^}]*)\}\s+(\S+)$", re.MULTILINE)
INPUT_LABEL = re.compile(r'input="([^"]+)"')


@dataclass
class LagSample:
    elapsed_s: float
    groups: dict[str, int]  # 'group:topic' (prefix removed) -> records behind, over its partitions
    horizon_s: dict[str, float]  # escalation input -> seconds its horizon lags escalation's clock

    def line(self) -> str:
        groups = " ".join(f"{g}={n}" for g, n in sorted(self.groups.items()))
        horizon = " ".join(f"{i}={s:.1f}s" for i, s in sorted(self.horizon_s.items()))
        return f"t+{self.elapsed_s:.0f}s lag [{groups}] horizon [{horizon}]"

    def as_dict(self) -> dict[str, Any]:
        return {"t": round(self.elapsed_s, 1), "groups": self.groups, "horizon_s": self.horizon_s}


def horizon_lags(metrics_text: str) -> dict[str, float]:
    """The largest horizon lag per input in a Prometheus exposition of escalation's metrics."""
    out: dict[str, float] = {}
    for labels, value in HORIZON_LINE.findall(metrics_text):
        found = INPUT_LABEL.search(labels)
        if found:
            out[found.group(1)] = max(out.get(found.group(1), 0.0), float(value))
    return out


def histogram_means(metrics_text: str, name: str, label: str) -> dict[str, dict[str, float]]:
    """A Prometheus histogram's observations per value of ``label``: how many, and their mean in ms (over
    every process whose exposition ``metrics_text`` holds)."""
    line = re.compile(rf'^{name}_(sum|count)\{{[^}}]*{label}="([^"]+)"[^}}]*\}}\s+(\S+)$', re.MULTILINE)
    totals: dict[str, dict[str, float]] = {}
    for kind, value_of_label, value in line.findall(metrics_text):
        found = totals.setdefault(value_of_label, {})
        found[kind] = found.get(kind, 0.0) + float(value)
    return {
        key: {"count": t["count"], "mean_ms": round(t.get("sum", 0.0) / t["count"] * 1000, 1)}
        for key, t in totals.items()
        if t.get("count")
    }


def summary(means: dict[str, dict[str, float]]) -> str:
    return ", ".join(f"{key} {t['mean_ms']:g} ms (x{int(t['count'])})" for key, t in sorted(means.items()))


@dataclass
class LagSampler:
    """Samples the lags of one measurement until stopped; ``samples`` is the timeline."""

    settings: Settings
    escalation_url: str
    every_s: float = 2.0
    samples: list[LagSample] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> LagSampler:
        self._thread = threading.Thread(target=self._run, name="lag-sampler", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def _run(self) -> None:
        web = web_settings(self.settings)
        started = time.perf_counter()
        with httpx.Client(base_url=self.escalation_url, timeout=5) as http:
            while not self._stop.wait(self.every_s):
                sample = LagSample(time.perf_counter() - started, self._group_lags(web), self._horizon(http))
                self.samples.append(sample)
                log(f"sustained: {sample.line()}")

    def _group_lags(self, web: WebSettings) -> dict[str, int]:
        """The web's own lag measure (every group reading this prefix's topics), keyed 'group:topic' without
        the prefix."""
        prefix = self.settings.topic_prefix
        lags = asyncio.run(measure_once(web))
        return {f"{g.removeprefix(prefix)}:{t.removeprefix(prefix)}": n for (g, t), n in lags.items()}

    def _horizon(self, http: httpx.Client) -> dict[str, float]:
        try:
            return horizon_lags(http.get("/metrics").text)
        except httpx.HTTPError:
            return {}
