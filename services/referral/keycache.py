"""API clients by key id, held for a few seconds: most requests authenticate without a database read.

Only the lookup is cached; the secret is checked against the stored hash on every request. An entry lives
``ttl_s`` seconds, so a revoked or rotated key stops working within that time in every API process (the CLI
that revokes runs elsewhere and cannot reach this cache). Unknown key ids are never cached: a new client works
at once. The cache holds at most ``max_entries`` clients (the oldest go first).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from services.referral.models import ApiClient

KEY_CACHE_TTL_S = 2.0  # how long a revoked key may still work: a bounded, documented delay
KEY_CACHE_MAX = 10_000


class ClientCache:
    def __init__(
        self,
        engine: Engine,
        ttl_s: float = KEY_CACHE_TTL_S,
        max_entries: int = KEY_CACHE_MAX,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.engine = engine
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self.clock = clock  # the tests move it on
        self._entries: dict[str, tuple[float, ApiClient]] = {}
        self._lock = threading.Lock()

    def cached(self, key_id: str) -> ApiClient | None:
        """The client of a key id read less than ``ttl_s`` ago, else None (then ``load`` it)."""
        entry = self._entries.get(key_id)
        if entry is None or self.clock() - entry[0] >= self.ttl_s:
            return None
        return entry[1]

    def load(self, key_id: str) -> ApiClient | None:
        """Read the client of a key id from the database (blocking: run it off the event loop) and hold it."""
        read_at = self.clock()
        with Session(self.engine) as session:
            client = session.exec(select(ApiClient).where(ApiClient.key_id == key_id)).first()
        with self._lock:
            self._entries.pop(key_id, None)
            if client is not None:
                while len(self._entries) >= self.max_entries:
                    self._entries.pop(next(iter(self._entries)))
                self._entries[key_id] = (read_at, client)
        return client
