"""The faust-streaming app settings every stream worker shares (tracking, attendance).

Our topics carry the shared JSON events as raw bytes; faust never creates our topics (``ensure_topics`` does),
only its own changelogs; every send waits for all in-sync replicas. Every such worker skips no record
(``shared.stream_offsets``) and leaves no partition unread (``shared.stream_stalls``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import faust

from shared.kafka import faust_broker_options
from shared.logs import get_logger
from shared.settings import Settings
from shared.stream_offsets import disable_gap_booking
from shared.stream_stalls import watch_for_stalls

log = get_logger(__name__)

StoreChoice = Literal["auto", "rocksdb", "memory"]


def store_url(choice: StoreChoice) -> str:
    """RocksDB (rocksdict) in production; memory in unit tests; "auto" picks RocksDB when it is installed."""
    if choice == "auto":
        try:
            import rocksdict  # noqa: F401
        except ImportError:
            choice = "memory"
        else:
            choice = "rocksdb"
    return f"{choice}://"


def stream_app(settings: Settings, app_id: str, store: StoreChoice, state_dir: str) -> faust.App:
    """A faust app; its id (so its consumer group and changelog topics) and its local state folder under the
    data dir should carry the settings' topic prefix, so side-by-side runs do not share them."""
    data_dir = Path(settings.data_dir) / state_dir
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    disable_gap_booking()  # our topics are never compacted: see shared/stream_offsets.py
    app = faust.App(
        app_id,
        **faust_broker_options(settings),
        store=store_url(store),
        datadir=str(data_dir),
        topic_partitions=settings.topic_partitions,
        topic_replication_factor=settings.topic_replication,
        topic_disable_leader=True,
        key_serializer="raw",
        value_serializer="raw",
        web_enabled=False,
        producer_acks=-1,
        consumer_auto_offset_reset="earliest",
        table_standby_replicas=settings.stream_standby_replicas,
        producer_linger=settings.stream_producer_linger_s,
        broker_commit_interval=0.5,
    )
    log_group_membership(app)
    watch_for_stalls(app, settings.stream_stall_after_s, check_every_s=settings.stream_stall_after_s / 3)
    return app


def _partitions(tps: Any) -> list[str]:
    return sorted(f"{tp.topic}:{tp.partition}" for tp in tps)


def log_group_membership(app: faust.App) -> None:
    """Log each assignment, revocation and finished recovery, so an operator (or a failed test's log tail) can
    see which partitions a worker held when a child's facts stopped moving: faust itself logs these only at
    debug level."""

    @app.on_partitions_revoked.connect  # type: ignore[arg-type]  # faust types async receivers wrongly
    async def _revoked(sender: Any, *args: Any, **_: Any) -> None:  # args: (the revoked partitions,)
        log.info("stream_partitions_revoked", partitions=_partitions(args[0]))

    @app.on_partitions_assigned.connect  # type: ignore[arg-type]
    async def _assigned(sender: Any, *args: Any, **_: Any) -> None:  # args: (the assigned partitions,)
        log.info("stream_partitions_assigned", partitions=_partitions(args[0]))

    @app.on_rebalance_complete.connect  # type: ignore[arg-type]
    async def _complete(sender: Any, *_: Any, **__: Any) -> None:
        log.info("stream_rebalance_complete", generation=getattr(sender, "consumer_generation_id", None))


def raw_topic(app: faust.App, name: str) -> Any:
    return app.topic(name, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")
