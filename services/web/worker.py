"""The web's background work, started by the app's lifespan: the lag exporter and the allocation round.

Consumer lag and dead-letter depth are read from Kafka (every service's groups at once) and exported as gauges
on the web's /metrics: the one place that sees all groups without each service measuring its own. The
allocation round gives each LA's open cases nobody owns an owner by the LA's policy (``allocation``)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Mapping
from datetime import UTC, datetime

import httpx
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from sqlalchemy.engine import Engine

from services.web import metrics
from services.web.allocation import RETRY_FAILED_AFTER, LAPolicy, allocate_la, las_to_allocate
from services.web.settings import WebSettings
from shared.kafka import aiokafka_config
from shared.logs import get_logger
from shared.topics import DEAD_LETTER

log = get_logger(__name__)


async def measure_once(settings: WebSettings) -> dict[tuple[str, str], int]:
    """Lag per (group, topic) for the groups that consume this deployment's topics (its topic prefix)."""
    admin = AIOKafkaAdminClient(request_timeout_ms=5000, **aiokafka_config(settings))
    consumer = AIOKafkaConsumer(request_timeout_ms=5000, **aiokafka_config(settings))
    await admin.start()
    await consumer.start()
    lags: dict[tuple[str, str], int] = {}
    try:
        groups = [g[0] if isinstance(g, tuple) else g.group_id for g in await admin.list_consumer_groups()]
        for group in groups:
            offsets = await admin.list_consumer_group_offsets(group)
            ours = {
                tp: meta.offset
                for tp, meta in offsets.items()
                if tp.topic.startswith(settings.topic("cme.")) and meta.offset >= 0
            }
            if not ours:
                continue
            ends = await consumer.end_offsets(list(ours))
            for tp, committed in ours.items():
                key = (group, tp.topic)
                lags[key] = lags.get(key, 0) + max(0, ends[tp] - committed)
        dead = DEAD_LETTER.name(settings)
        parts = consumer.partitions_for_topic(dead) or set()
        if not parts:
            await consumer._client.force_metadata_update()  # aiokafka has no public call for this
            parts = consumer.partitions_for_topic(dead) or set()
        dead_tps = [TopicPartition(dead, p) for p in parts]
        depth = sum((await consumer.end_offsets(dead_tps)).values()) if dead_tps else 0
        metrics.DEAD_LETTER_DEPTH.set(depth)
    finally:
        await consumer.stop()
        await admin.close()
    for (group, topic), lag in lags.items():
        metrics.CONSUMER_LAG.labels(group=group, topic=topic).set(lag)
    return lags


async def run_lag_exporter(
    settings: WebSettings, stop: asyncio.Event, turns: dict[str, float | None] | None = None
) -> None:
    """``turns``: where the loop notes each turn (``time.monotonic()``, liveness: a stuck exporter would leave
    the lag gauges, and the lag alert, at their last values)."""
    while not stop.is_set():
        if turns is not None:
            turns["lag-exporter"] = time.monotonic()
        try:
            await measure_once(settings)
        except Exception as exc:  # Kafka away: keep the last values; readiness reports the broker
            log.warning("lag_measure_failed", error=type(exc).__name__)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), settings.web_lag_interval_s)


async def run_allocator(
    settings: WebSettings,
    engine: Engine,
    policies: Mapping[str, LAPolicy],
    transports: Mapping[str, httpx.AsyncBaseTransport],
    stop: asyncio.Event,
    ready: asyncio.Event | None = None,
    turns: dict[str, float | None] | None = None,
) -> None:
    """Every ``CME_WEB_ALLOCATION_INTERVAL_S``, allocate each LA's open cases that nobody owns (once the
    web's tables are migrated: ``ready``); each turn noted in ``turns`` (liveness)."""
    while not stop.is_set():
        if turns is not None:
            turns["allocator"] = time.monotonic()
        if ready is None or ready.is_set():
            try:
                las = await asyncio.to_thread(las_to_allocate, engine, policies)
            except Exception as exc:  # the database away: the next round tries again
                log.warning("allocation_round_failed", error=type(exc).__name__)
                las = []
            for la_code in las:
                if turns is not None:  # a round over many LAs is one turn per LA: it is moving
                    turns["allocator"] = time.monotonic()
                # A failed case is tried again after a while (an account created, a team joined), not in every
                # round: an LA without a policy would otherwise be read whole every few seconds.
                since = datetime.now(UTC) - RETRY_FAILED_AFTER
                try:
                    counts = await allocate_la(
                        settings, engine, policies, la_code, transports.get("tracking"), since
                    )
                except Exception as exc:  # tracking down or slow: the next round tries again
                    log.warning("allocation_round_failed", la_code=la_code, error=type(exc).__name__)
                    continue
                if counts.get("allocated") or counts.get("failed"):
                    log.info("cases_allocated", la_code=la_code, **counts)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), settings.web_allocation_interval_s)
