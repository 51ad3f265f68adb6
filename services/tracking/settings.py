"""The tracking service's own settings (env prefix CME_, like the shared ones)."""

from __future__ import annotations

from typing import Literal

from shared.settings import Settings


class TrackingSettings(Settings):
    # Table store of the faust worker: RocksDB (via rocksdict) in production, memory in unit tests;
    # "auto" picks RocksDB when rocksdict is installed.
    tracking_store: Literal["auto", "rocksdb", "memory"] = "auto"
    tracking_worker_name: str = "tracking"


def tracking_settings(base: Settings | None = None) -> TrackingSettings:
    """Tracking settings from the environment, or carrying over an explicit shared Settings object."""
    if base is None:
        return TrackingSettings()
    if isinstance(base, TrackingSettings):
        return base
    return TrackingSettings(**base.model_dump())
