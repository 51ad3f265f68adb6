"""The attendance service's own settings (env prefix CME_, like the shared ones)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from shared.settings import Settings, service_settings


class AttendanceSettings(Settings):
    # Table store of the faust worker: RocksDB (rocksdict) in production, memory in tests; "auto" picks
    # RocksDB when rocksdict is installed.
    attendance_store: Literal["auto", "rocksdb", "memory"] = "auto"
    # Per-LA overrides of the absence-threshold rules (<la_code>.yaml); None: the shipped defaults only.
    attendance_rules_dir: Path | None = None
    # Largest bulk upload accepted (bytes); bigger bodies get 413. 5 MB is about 40,000 marks as JSON.
    attendance_upload_max_bytes: int = Field(default=5_000_000, ge=1024)
    attendance_upload_max_marks: int = Field(default=50_000, ge=1)
    # The worker takes up to this many marks at once (per-partition batches: one table write per pupil per
    # batch, the batch's events acknowledged together) ...
    attendance_batch_max: int = Field(default=500, ge=1, le=10_000)
    # ... or what arrived within this many seconds: a lone mark waits at most this long.
    attendance_batch_linger_s: float = Field(default=0.05, gt=0, le=5)


def attendance_settings(base: Settings | None = None, **overrides: Any) -> AttendanceSettings:
    """Attendance settings from the environment, or carrying over an explicit shared Settings object."""
    return service_settings(AttendanceSettings, base, **overrides)
