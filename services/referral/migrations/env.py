"""Alembic environment of the referral service: its own version table and only its ``referral_*`` tables."""

from sqlmodel import SQLModel

import services.referral.models  # noqa: F401 - registers the tables on the metadata
from shared.migrations_env import run

run(SQLModel.metadata, "referral")
