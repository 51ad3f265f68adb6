"""Per-client token buckets: each client may submit ``rate`` events a second, in bursts of up to ``burst``."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    """In-process buckets (one API process per deployment; behind several, each enforces its share)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._buckets: dict[str, _Bucket] = {}
        self._lock = threading.Lock()
        self._clock = clock

    def take(self, client_id: str, rate: float, burst: int, cost: int = 1) -> float:
        """Take ``cost`` tokens; returns 0 when allowed, else the seconds to wait before retrying."""
        now = self._clock()
        with self._lock:
            bucket = self._buckets.setdefault(client_id, _Bucket(tokens=float(burst), updated=now))
            bucket.tokens = min(float(burst), bucket.tokens + (now - bucket.updated) * rate)
            bucket.updated = now
            if cost > burst:
                return math.inf  # can never fit: the caller must send smaller batches
            if bucket.tokens >= cost:
                bucket.tokens -= cost
                return 0.0
            return (cost - bucket.tokens) / rate
