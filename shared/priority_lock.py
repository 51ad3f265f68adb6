"""An asyncio lock whose urgent waiters go first.

Escalation does one unit of work at a time in a process (one lock), and its in-order consumer holds that lock
for a batch of up to 200 records at a time under a bulk load. With a first-come lock an urgent transition,
then the due-check that decides what it started, each queued behind whatever batch had asked first: two or
three batches' worth of waiting on the path of a social-care alert. Here, when the lock is let go it is
handed to the longest-waiting urgent waiter if there is one, else to the longest-waiting other one. A task
that lets the lock go is never waiting at that moment, so the others are never starved by one busy urgent
task; they wait at most for the urgent waiters queued when the lock is let go.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator


class PriorityLock:
    def __init__(self) -> None:
        self._locked = False
        self._urgent: deque[asyncio.Future[None]] = deque()
        self._others: deque[asyncio.Future[None]] = deque()

    def locked(self) -> bool:
        return self._locked

    def waiting(self) -> tuple[int, int]:
        """How many wait: (urgent, others)."""
        return (
            sum(not f.done() for f in self._urgent),
            sum(not f.done() for f in self._others),
        )

    @contextlib.asynccontextmanager
    async def hold(self, urgent: bool = False) -> AsyncIterator[None]:
        await self._acquire(urgent)
        try:
            yield
        finally:
            self._release()

    async def _acquire(self, urgent: bool) -> None:
        if not self._locked:
            self._locked = True
            return
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        queue = self._urgent if urgent else self._others
        queue.append(turn)
        try:
            await turn
        except asyncio.CancelledError:
            if turn.done() and not turn.cancelled():
                self._release()  # handed the lock as it was cancelled: hand it on
            else:
                with contextlib.suppress(ValueError):
                    queue.remove(turn)
            raise

    def _release(self) -> None:
        """Hand the lock straight to the next waiter (it stays locked), or unlock it."""
        for queue in (self._urgent, self._others):
            while queue:
                turn = queue.popleft()
                if not turn.done():
                    turn.set_result(None)
                    return
        self._locked = False
