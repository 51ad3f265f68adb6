"""Kafka client configuration (kafka-python, aiokafka, faust) from one set of settings, and topic creation."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from collections.abc import Callable
from typing import Any

from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError

from shared.logs import get_logger
from shared.settings import Settings
from shared.topics import ALL_TOPICS, TopicSpec

log = get_logger(__name__)
RETRY_S = 1.0  # how long a client waits before trying an absent broker again


def _ssl_context(settings: Settings) -> ssl.SSLContext | None:
    if settings.kafka_security_protocol not in ("SSL", "SASL_SSL"):
        return None
    ctx = ssl.create_default_context(
        cafile=str(settings.kafka_ssl_cafile) if settings.kafka_ssl_cafile else None
    )
    if settings.kafka_ssl_certfile:
        ctx.load_cert_chain(str(settings.kafka_ssl_certfile), str(settings.kafka_ssl_keyfile or ""))
    return ctx


def _sasl(settings: Settings) -> dict[str, Any]:
    if not settings.kafka_security_protocol.startswith("SASL"):
        return {}
    return {
        "sasl_mechanism": settings.kafka_sasl_mechanism or "SCRAM-SHA-512",
        "sasl_plain_username": settings.kafka_sasl_username,
        "sasl_plain_password": settings.kafka_sasl_password.get_secret_value()
        if settings.kafka_sasl_password
        else None,
    }


def kafka_python_config(settings: Settings) -> dict[str, Any]:
    """Connection options for kafka-python clients (producer, consumer, admin)."""
    cfg: dict[str, Any] = {
        "bootstrap_servers": settings.kafka_bootstrap.split(","),
        "security_protocol": settings.kafka_security_protocol,
    }
    ctx = _ssl_context(settings)
    if ctx:
        cfg["ssl_context"] = ctx
    cfg.update(_sasl(settings))
    return cfg


def aiokafka_config(settings: Settings) -> dict[str, Any]:
    """Connection options for aiokafka clients."""
    cfg: dict[str, Any] = {
        "bootstrap_servers": settings.kafka_bootstrap,
        "security_protocol": settings.kafka_security_protocol,
    }
    ctx = _ssl_context(settings)
    if ctx:
        cfg["ssl_context"] = ctx
    cfg.update(_sasl(settings))
    return cfg


def faust_broker_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for ``faust.App`` that point it at the broker with the same security."""
    import faust  # imported here: faust is heavy and only the stream workers need it

    opts: dict[str, Any] = {"broker": ",".join(f"kafka://{h}" for h in settings.kafka_bootstrap.split(","))}
    ctx = _ssl_context(settings)
    if settings.kafka_security_protocol.startswith("SASL"):
        sasl = _sasl(settings)
        opts["broker_credentials"] = faust.SASLCredentials(
            username=sasl["sasl_plain_username"],
            password=sasl["sasl_plain_password"],
            mechanism=sasl["sasl_mechanism"],
            ssl_context=ctx,
        )
    elif ctx:
        opts["broker_credentials"] = faust.SSLCredentials(ctx)
    return opts


def ensure_topics(
    settings: Settings, specs: tuple[TopicSpec, ...] = ALL_TOPICS, timeout_s: float = 60.0
) -> list[str]:
    """Create the topics that do not exist yet (idempotent); returns the names created."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            admin = KafkaAdminClient(client_id="cme-topic-admin", **kafka_python_config(settings))
            break
        except KafkaError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
    created: list[str] = []
    try:
        existing = set(admin.list_topics())
        for spec in specs:
            name = spec.name(settings)
            if name in existing:
                continue
            topic = NewTopic(
                name,
                num_partitions=settings.topic_partitions,
                replication_factor=settings.topic_replication,
                topic_configs=spec.config(),
            )
            try:
                admin.create_topics([topic])
                created.append(name)
            except TopicAlreadyExistsError:
                pass  # another process created it between our list and create
        _wait_for_leaders(admin, [s.name(settings) for s in specs], deadline)
    finally:
        admin.close()
    if created:
        log.info("topics_created", topics=created)
    return created


def _wait_for_leaders(admin: KafkaAdminClient, names: list[str], deadline: float) -> None:
    """New topics are usable only once every partition has a leader: wait, so the first send does not fail."""
    while True:
        described = admin.describe_topics(names)
        ready = all(
            t.get("error_code", 0) == 0
            and t["partitions"]
            and all(p.get("leader_id", p.get("leader", -1)) >= 0 for p in t["partitions"])
            for t in described
        )
        if ready or time.monotonic() > deadline:
            return
        time.sleep(0.2)


async def start_with_retry(make: Callable[[], Any], stop: asyncio.Event, what: str) -> Any | None:
    """Start a Kafka client (aiokafka producer or consumer), retrying while the broker is away; None if asked
    to stop first. A service starts before its broker and waits for it, it does not crash."""
    while not stop.is_set():
        client = make()
        try:
            await client.start()
            return client
        except Exception as exc:
            log.warning("kafka_unavailable", client=what, error=type(exc).__name__)
            with contextlib.suppress(Exception):
                await client.stop()
            await wait_for_event(stop, RETRY_S)
    return None


async def wait_for_event(event: asyncio.Event, timeout_s: float) -> None:
    """Wait until ``event`` is set or ``timeout_s`` has passed, whichever comes first."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(event.wait(), timeout=timeout_s)
