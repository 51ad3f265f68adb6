"""The shared consumer loop outlives a failed fetch (a rebalance refusing it, the broker away): before, the
exception ended the loop and left the service running but "not ready", its partitions unread."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from shared import consumer as consumer_module
from shared.consumer import ConsumerLoop


class FlakyConsumer:
    def __init__(self, stop: asyncio.Event) -> None:
        self.stop, self.calls = stop, 0

    async def getmany(self, timeout_ms: int, max_records: int) -> dict[Any, list[Any]]:
        self.calls += 1
        if self.calls == 1:
            raise RuntimeError("fetch refused during a rebalance")
        self.stop.set()
        return {}


async def _noop(*args: Any) -> None:
    return None


def test_a_failed_fetch_is_logged_and_the_loop_polls_again(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(consumer_module, "RETRY_S", 0.01)

    async def scenario() -> int:
        stop = asyncio.Event()
        loop = ConsumerLoop("test", lambda: None, _noop, _noop)  # type: ignore[arg-type]
        fake = FlakyConsumer(stop)
        loop.consumer = fake  # type: ignore[assignment]
        await asyncio.wait_for(loop.run(stop), timeout=10)
        return fake.calls

    assert asyncio.run(scenario()) == 2
