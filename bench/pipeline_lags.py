"""Where a running pipeline's time goes: consumer group lags and escalation's horizon lags, sampled while a
benchmark runs (``bench/e2e_sustained.py``), so a latency can be read against the queue that held it.

A sample is taken every ``every_s`` seconds from a thread of its own:

- each consumer group of the measurement's topic prefix: records not yet committed, summed over its
  partitions (tracking's identity and case agents, escalation, notify);
- escalation's ``cme_escalation_horizon_lag_seconds`` by input (``child_events``, ``transitions``,
  ``tracking``), the largest over partitions: how far behind escalation's clock each input holds the horizon.
"""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

from bench.common import log
from shared.kafka import kafka_python_config
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
        from kafka import KafkaAdminClient

        admin = KafkaAdminClient(**kafka_python_config(self.settings))
        started = time.perf_counter()
        try:
            with httpx.Client(base_url=self.escalation_url, timeout=5) as http:
                while not self._stop.wait(self.every_s):
                    sample = LagSample(
                        time.perf_counter() - started, self._group_lags(admin), self._horizon(http)
                    )
                    self.samples.append(sample)
                    log(f"sustained: {sample.line()}")
        finally:
            admin.close()

    def _group_lags(self, admin: Any) -> dict[str, int]:
        from kafka.admin import OffsetSpec

        prefix = self.settings.topic_prefix
        out: dict[str, int] = {}
        names = []
        for group in admin.list_groups():
            name = group.get("group_id") if isinstance(group, dict) else group[0]
            if isinstance(name, str) and name.startswith(prefix):
                names.append(name)
        for name, offsets in (admin.list_group_offsets(names) if names else {}).items():
            committed = {tp: meta.offset for tp, meta in offsets.items() if tp.topic.startswith(prefix)}
            ends = (
                admin.list_partition_offsets({tp: OffsetSpec.LATEST for tp in committed}) if committed else {}
            )
            for tp, offset in committed.items():
                key = f"{name[len(prefix) :]}:{tp.topic[len(prefix) :]}"
                out[key] = out.get(key, 0) + max(0, ends[tp].offset - max(0, offset))
        return out

    def _horizon(self, http: httpx.Client) -> dict[str, float]:
        try:
            return horizon_lags(http.get("/metrics").text)
        except httpx.HTTPError:
            return {}
