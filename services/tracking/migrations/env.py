"""Alembic environment of the tracking service (its own version table, its own tracking_* tables)."""

from sqlmodel import SQLModel

import services.tracking.models  # noqa: F401  (registers the tables on SQLModel.metadata)
from shared.migrations_env import run

run(SQLModel.metadata, "tracking")
