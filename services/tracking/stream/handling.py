"""What every agent does with a record it cannot process: retry what may be transient, dead-letter the
rest; and with a batch that fails as a whole: process its records one by one, so only the bad one is
dead-lettered."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from pydantic import ValidationError
from sqlalchemy.exc import OperationalError

from services.tracking.metrics import BATCH_FALLBACKS, DEAD_LETTERS
from shared.deadletter import dead_letter_for
from shared.events.catalogue import encode_event
from shared.logs import get_logger

log = get_logger(__name__)

# Errors that say the record itself is wrong: retrying cannot help.
POISON = (ValidationError, ValueError, KeyError, TypeError, AssertionError)


async def send_and_wait(topic: Any, key: bytes | None, value: bytes) -> None:
    """Publish and wait for the broker's ack, so the input offset is committed only after the output
    exists."""
    fut = await topic.send(key=key, value=value)
    await fut


async def send_all(messages: Sequence[tuple[Any, bytes | None, bytes]]) -> None:
    """Publish (topic, key, value) in order, then wait for all the broker's acks together: one wait for the
    batch instead of one per message. The producer keeps the order within a partition."""
    pending = [await topic.send(key=key, value=value) for topic, key, value in messages]
    if pending:
        await asyncio.gather(*pending)


async def process_batch_or_one_by_one(
    agent: str,
    dead_letter_topic: Any,
    events: Sequence[Any],
    handler: Callable[[Sequence[Any]], Awaitable[None]],
    attempts: int = 5,
) -> int:
    """Run ``handler`` for a whole batch, retrying what may be transient like ``process_or_dead_letter``.
    If the batch fails with a poison error (or keeps failing), process its records one by one with
    ``process_or_dead_letter``: the bad record alone is dead-lettered and the others go through (every side
    effect is idempotent, so what the failed batch did before it failed is repeated harmlessly). Returns the
    number of records dead-lettered."""
    if len(events) > 1:
        error: BaseException | None = None
        for attempt in range(1, attempts + 1):
            try:
                await handler(events)
                return 0
            except POISON as exc:
                error = exc
                break
            except OperationalError as exc:  # the database is away: wait and retry the batch
                error = exc
                log.warning(
                    "transient_failure",
                    agent=agent,
                    attempt=attempt,
                    batch=len(events),
                    error_type=type(exc).__name__,
                )
                await asyncio.sleep(min(0.5 * 2**attempt, 10))
            except Exception as exc:
                error = exc
                log.warning(
                    "batch_failed",
                    agent=agent,
                    attempt=attempt,
                    batch=len(events),
                    error_type=type(exc).__name__,
                )
                await asyncio.sleep(0.2 * attempt)
        BATCH_FALLBACKS.labels(agent).inc()
        log.warning("batch_one_by_one", agent=agent, batch=len(events), error_type=type(error).__name__)
    dead = 0
    for event in events:
        if not await process_or_dead_letter(
            agent, dead_letter_topic, event, functools.partial(handler, [event])
        ):
            dead += 1
    return dead


async def process_or_dead_letter(
    agent: str,
    dead_letter_topic: Any,
    event: Any,
    handler: Callable[[], Awaitable[None]],
    attempts: int = 5,
) -> bool:
    """Run ``handler`` for one record; on a poison record (or repeated failure) publish a dead letter and
    return
    False, so the partition keeps flowing."""
    error: BaseException | None = None
    for attempt in range(1, attempts + 1):
        try:
            await handler()
            return True
        except POISON as exc:
            error = exc
            break
        except OperationalError as exc:  # the database is away: wait and retry, do not lose the record
            error = exc
            log.warning("transient_failure", agent=agent, attempt=attempt, error_type=type(exc).__name__)
            await asyncio.sleep(min(0.5 * 2**attempt, 10))
        except Exception as exc:
            error = exc
            log.warning("handler_failed", agent=agent, attempt=attempt, error_type=type(exc).__name__)
            await asyncio.sleep(0.2 * attempt)
    assert error is not None
    msg = event.message
    letter = dead_letter_for(
        service="tracking",
        topic=msg.topic,
        partition=msg.partition,
        offset=msg.offset,
        key=event.key,
        value=event.value if isinstance(event.value, bytes) else bytes(event.value or b""),
        error=error,
    )
    await send_and_wait(dead_letter_topic, event.key, encode_event(letter))
    DEAD_LETTERS.labels(agent).inc()
    log.error(
        "dead_lettered",
        agent=agent,
        topic=msg.topic,
        partition=msg.partition,
        offset=msg.offset,
        error_type=type(error).__name__,
    )
    return False
