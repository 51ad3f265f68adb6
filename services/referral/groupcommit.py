"""Group commit: the events of concurrent requests stored in one transaction, each answered after its commit.

A single event's request used to pay a transaction of its own (a round trip for each statement and a WAL
flush at commit). Here requests hand their checked events to one writer: while it commits one group, the
next requests queue, and the writer takes them all as the next group (up to ``max_events``). Nothing changes
for the caller: its outcomes come back only after the transaction holding its events has committed, so a 2xx
still means "in the store with its outbox row". If a group's transaction fails, each request of it is retried
in a transaction of its own, so one request's failure is never another's; a request whose own transaction
fails gets the error (a 503 from the app's handler: nothing of it was committed).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from services.referral.service import Intake, Item, Outcome

GROUP_MAX_EVENTS = 1000


@dataclass
class _Request:
    items: list[Item]
    answer: asyncio.Future[list[Outcome]] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class GroupCommit:
    def __init__(self, intake: Intake, max_events: int = GROUP_MAX_EVENTS) -> None:
        self.intake = intake
        self.max_events = max_events
        self._queue: list[_Request] = []
        self._writer: asyncio.Task[None] | None = None
        self.groups = 0  # transactions committed (the tests read it)

    async def store(self, items: list[Item]) -> list[Outcome]:
        """The outcomes of these events, once the transaction that stored them has committed."""
        request = _Request(items)
        self._queue.append(request)
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write())
        return await asyncio.shield(request.answer)  # a client gone away must not cancel the others' group

    async def _write(self) -> None:
        group: list[_Request] = []
        try:
            while self._queue:
                group, size = [], 0
                while self._queue and (not group or size + len(self._queue[0].items) <= self.max_events):
                    request = self._queue.pop(0)
                    group.append(request)
                    size += len(request.items)
                await self._commit(group)
        except BaseException as exc:  # cancelled at shutdown: no request may wait for ever
            for request in group + self._queue:
                _settle(request, RuntimeError("the writer stopped before the commit was known"))
            self._queue.clear()
            if not isinstance(exc, Exception):
                raise

    async def _commit(self, group: list[_Request]) -> None:
        items = [item for request in group for item in request.items]
        try:
            outcomes = await asyncio.to_thread(self.intake.store_items, items)
        except Exception as exc:
            if len(group) == 1:
                _settle(group[0], exc)
                return
            for request in group:  # each on its own: one request's failure is never another's
                try:
                    _settle(request, await asyncio.to_thread(self.intake.store_items, request.items))
                except Exception as own:
                    _settle(request, own)
            return
        self.groups += 1
        start = 0
        for request in group:
            _settle(request, outcomes[start : start + len(request.items)])
            start += len(request.items)


def _settle(request: _Request, result: list[Outcome] | Exception) -> None:
    if request.answer.done():
        return
    if isinstance(result, Exception):
        request.answer.set_exception(result)
    else:
        request.answer.set_result(result)
