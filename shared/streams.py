"""The faust-streaming app settings every stream worker shares (tracking, attendance).

Our topics carry the shared JSON events as raw bytes; faust never creates our topics (``ensure_topics`` does),
only its own changelogs; every send waits for all in-sync replicas.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import faust

from shared.kafka import faust_broker_options
from shared.settings import Settings
from shared.stream_offsets import disable_gap_booking

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
    return faust.App(
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


def raw_topic(app: faust.App, name: str) -> Any:
    return app.topic(name, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")
