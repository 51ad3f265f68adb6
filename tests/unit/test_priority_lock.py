"""shared/priority_lock.py: one holder at a time; when the lock is let go, urgent waiters go before the
others, each kind first come first served; a task that lets it go cannot take it back ahead of a waiter; a
waiter cancelled before its turn leaves the queue, one cancelled as it was handed the lock hands it on."""

from __future__ import annotations

import asyncio
import random

from shared.priority_lock import PriorityLock


async def _hold_until(lock: PriorityLock, release: asyncio.Event) -> None:
    async with lock.hold():
        await release.wait()


async def _take_turn(lock: PriorityLock, order: list[str], name: str, urgent: bool) -> None:
    async with lock.hold(urgent=urgent):
        order.append(name)
        await asyncio.sleep(0)


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def test_urgent_waiters_go_before_earlier_others_each_kind_in_arrival_order() -> None:
    async def scenario() -> list[str]:
        lock, order = PriorityLock(), list[str]()
        release = asyncio.Event()

        first = asyncio.create_task(_hold_until(lock, release))
        await _settle()
        tasks = []
        for name, urgent in (("batch-1", False), ("urgent-1", True), ("batch-2", False), ("urgent-2", True)):
            tasks.append(asyncio.create_task(_take_turn(lock, order, name, urgent)))
            await _settle()
        assert lock.waiting() == (2, 2)
        release.set()
        await asyncio.gather(first, *tasks)
        assert not lock.locked()
        return order

    assert asyncio.run(asyncio.wait_for(scenario(), 10)) == ["urgent-1", "urgent-2", "batch-1", "batch-2"]


def test_a_task_that_lets_the_lock_go_does_not_take_it_back_ahead_of_a_waiter() -> None:
    """The urgent task asks again at once after each turn: the batch waiting meanwhile still gets a turn
    between two of them (no starvation)."""

    async def scenario() -> list[str]:
        lock, order = PriorityLock(), list[str]()

        async def busy_urgent() -> None:
            for i in range(3):
                async with lock.hold(urgent=True):
                    order.append(f"urgent-{i}")
                    await asyncio.sleep(0.001)

        async def batch() -> None:
            await asyncio.sleep(0.0005)  # asks while the first urgent turn is held
            async with lock.hold():
                order.append("batch")

        await asyncio.gather(busy_urgent(), batch())
        return order

    assert asyncio.run(asyncio.wait_for(scenario(), 10)) == ["urgent-0", "batch", "urgent-1", "urgent-2"]


def test_a_waiter_cancelled_before_its_turn_leaves_the_queue_and_the_next_one_gets_the_lock() -> None:
    async def scenario() -> list[str]:
        lock, order = PriorityLock(), list[str]()
        release = asyncio.Event()

        first = asyncio.create_task(_hold_until(lock, release))
        await _settle()
        cancelled = asyncio.create_task(_take_turn(lock, order, "cancelled", True))
        kept = asyncio.create_task(_take_turn(lock, order, "kept", False))
        await _settle()
        cancelled.cancel()
        await _settle()
        assert lock.waiting() == (0, 1)
        release.set()
        await asyncio.gather(first, kept)
        assert cancelled.cancelled() and not lock.locked()
        return order

    assert asyncio.run(asyncio.wait_for(scenario(), 10)) == ["kept"]


def test_a_waiter_cancelled_as_it_is_handed_the_lock_hands_it_on() -> None:
    async def scenario() -> list[str]:
        lock, order = PriorityLock(), list[str]()
        release = asyncio.Event()
        waiters: list[asyncio.Task[None]] = []

        async def holder() -> None:
            await _hold_until(lock, release)
            # The lock has just been handed to the first waiter, which has not run yet.
            assert lock.locked()
            waiters[0].cancel()

        first = asyncio.create_task(holder())
        await _settle()
        waiters += [
            asyncio.create_task(_take_turn(lock, order, "handed", True)),
            asyncio.create_task(_take_turn(lock, order, "after", True)),
        ]
        await _settle()
        release.set()
        await asyncio.gather(first, waiters[1])
        await _settle()
        assert waiters[0].cancelled() and not lock.locked()
        return order

    assert asyncio.run(asyncio.wait_for(scenario(), 10)) == ["after"]


def test_one_holder_at_a_time_whatever_the_mix() -> None:
    async def scenario() -> int:
        lock, rng = PriorityLock(), random.Random(7)
        inside, turns = 0, 0

        async def worker(urgent: bool) -> None:
            nonlocal inside, turns
            for _ in range(20):
                async with lock.hold(urgent=urgent):
                    inside += 1
                    assert inside == 1
                    await asyncio.sleep(rng.random() / 1000)
                    inside -= 1
                    turns += 1
                await asyncio.sleep(0)

        await asyncio.gather(*(worker(i % 3 == 0) for i in range(9)))
        assert not lock.locked() and lock.waiting() == (0, 0)
        return turns

    assert asyncio.run(asyncio.wait_for(scenario(), 10)) == 180
