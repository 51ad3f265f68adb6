"""A tracking replica is ready only once its worker has joined its group and recovered its table."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest

from services.tracking.stream import readiness


class _Event:
    def __init__(self, done: bool) -> None:
        self.done = done

    def is_set(self) -> bool:
        return self.done


def _app(rebalancing: bool = False, in_recovery: bool = False, recovered: bool = True) -> Any:
    recovery = SimpleNamespace(completed=_Event(recovered))
    return SimpleNamespace(
        rebalancing=rebalancing, in_recovery=in_recovery, tables=SimpleNamespace(recovery=recovery)
    )


async def _check() -> None:
    await readiness.worker_check()()


@pytest.mark.parametrize(
    ("app", "ready"),
    [
        (None, False),
        (_app(recovered=False), False),
        (_app(rebalancing=True), False),
        (_app(in_recovery=True), False),
        (_app(), True),
    ],
)
def test_worker_readiness(app: Any, ready: bool) -> None:
    readiness.watch(app)
    try:
        if ready:
            asyncio.run(_check())
        else:
            with pytest.raises(RuntimeError):
                asyncio.run(_check())
    finally:
        readiness.watch(None)
