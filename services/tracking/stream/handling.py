"""What every agent does with a record it cannot process, under the one dead-letter policy of
``shared.consumer`` (poison dead-lettered at once, transient errors retried until they pass, other errors
retried MAX_ATTEMPTS times); and with a batch that fails as a whole: process its records one by one, so only
the bad one is dead-lettered."""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from services.tracking.metrics import (
    BATCH_FALLBACKS,
    BATCH_SIZE,
    DEAD_LETTERS,
    EVENTS_PROCESSED,
    SEND_SECONDS,
)
from shared.consumer import MAX_ATTEMPTS, Decision, decide
from shared.deadletter import dead_letter_for
from shared.events.catalogue import encode_event
from shared.logs import get_logger
from shared.stream_batching import batches, release

log = get_logger(__name__)


async def send_and_wait(topic: Any, key: bytes | None, value: bytes) -> None:
    """Publish and wait for the broker's ack, so the input offset is committed only after the output
    exists."""
    fut = await topic.send(key=key, value=value)
    await fut


async def send_all(agent: str, messages: Sequence[tuple[Any, bytes | None, bytes]]) -> None:
    """Publish (topic, key, value) in order, then wait for all the broker's acks together: one wait for the
    batch instead of one per message. The producer keeps the order within a partition."""
    started = time.perf_counter()
    pending = [await topic.send(key=key, value=value) for topic, key, value in messages]
    if pending:
        await asyncio.gather(*pending)
        SEND_SECONDS.labels(agent).observe(time.perf_counter() - started)


async def run_in_batches(
    stream: Any,
    ctx: Any,
    agent: str,
    handler: Callable[[Sequence[Any]], Awaitable[None]],
    before_release: Callable[[Sequence[Any]], Awaitable[None]] | None = None,
) -> None:
    """Every agent's loop: the stream in micro-batches, each handled under the dead-letter policy, then
    ``before_release`` (what must happen before the batch's offsets may be committed), then released."""
    settings = ctx.settings
    async for events in batches(stream, settings.tracking_batch_max, settings.tracking_batch_within_s):
        BATCH_SIZE.labels(agent).observe(len(events))
        dead = await process_batch_or_one_by_one(agent, ctx.dead_letter, events, handler)
        if dead:
            EVENTS_PROCESSED.labels(agent, "unknown", "dead_letter").inc(dead)
        if before_release is not None:
            await before_release(events)
        release(events)


async def _until_decided(
    run: Callable[[], Awaitable[None]], max_attempts: int, **where: Any
) -> tuple[BaseException, int, Decision] | None:
    """Run under the shared policy, retrying in place: None once it passes, or the error, the attempts and the
    decision once the policy says dead-letter."""
    attempt = 0
    while True:
        attempt += 1
        try:
            await run()
            return None
        except Exception as exc:
            decision = decide(exc, attempt, max_attempts)
            log.warning("handler_failed", attempt=attempt, decision=decision.action, reason=decision.reason,
                        error_type=type(exc).__name__, **where)  # fmt: skip
            if decision.action == "dead_letter":
                return exc, attempt, decision
            await asyncio.sleep(decision.delay_s)


async def process_batch_or_one_by_one(
    agent: str,
    dead_letter_topic: Any,
    events: Sequence[Any],
    handler: Callable[[Sequence[Any]], Awaitable[None]],
    max_attempts: int = MAX_ATTEMPTS,
) -> int:
    """Run ``handler`` for a whole batch under the shared dead-letter policy (``shared.consumer.decide``): a
    transient error is retried until it passes. If the batch fails with a poison error (or keeps failing),
    process its records one by one with ``process_or_dead_letter``: the bad record alone is dead-lettered and
    the others go through (every side effect is idempotent, so what the failed batch did before it failed is
    repeated harmlessly). Returns the number of records dead-lettered."""
    if len(events) > 1:
        failed = await _until_decided(
            functools.partial(handler, events), max_attempts, agent=agent, batch=len(events)
        )
        if failed is None:
            return 0
        BATCH_FALLBACKS.labels(agent).inc()
        log.warning("batch_one_by_one", agent=agent, batch=len(events))
    dead = 0
    for event in events:
        if not await process_or_dead_letter(
            agent, dead_letter_topic, event, functools.partial(handler, [event]), max_attempts
        ):
            dead += 1
    return dead


async def process_or_dead_letter(
    agent: str,
    dead_letter_topic: Any,
    event: Any,
    handler: Callable[[], Awaitable[None]],
    max_attempts: int = MAX_ATTEMPTS,
) -> bool:
    """Run ``handler`` for one record under the shared dead-letter policy; on a poison record (or repeated
    failure) publish a dead letter and return False, so the partition keeps flowing."""
    msg = event.message
    where = {"agent": agent, "topic": msg.topic, "partition": msg.partition, "offset": msg.offset}
    failed = await _until_decided(handler, max_attempts, **where)
    if failed is None:
        return True
    error, attempts, decision = failed
    value = event.value if isinstance(event.value, bytes) else bytes(event.value or b"")
    letter = dead_letter_for(
        service="tracking",
        topic=msg.topic,
        partition=msg.partition,
        offset=msg.offset,
        key=event.key,
        value=value,
        error=error,
        attempts=attempts,
    )
    await send_and_wait(dead_letter_topic, event.key, encode_event(letter))
    DEAD_LETTERS.labels(agent).inc()
    log.error(
        "dead_lettered", attempts=attempts, reason=decision.reason, error_type=type(error).__name__, **where
    )
    return False
