"""Each service's Alembic migrations build exactly the tables its SQLModel models describe: a column, index or
table added to a model without a migration (or the other way round) fails here, not at a deployment's
start."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlmodel import SQLModel

from shared.db import make_engine, migrate
from shared.settings import PROJECT_ROOT

SERVICES_WITH_TABLES = ("referral", "tracking", "escalation", "notify", "web")
for _service in SERVICES_WITH_TABLES:
    importlib.import_module(f"services.{_service}.models")


@pytest.mark.parametrize("service", SERVICES_WITH_TABLES)
def test_migrations_build_what_the_models_describe(service: str, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'migrated.db'}"
    migrate(url, PROJECT_ROOT / "services" / service / "migrations", service)

    def own(obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any) -> bool:
        return type_ != "table" or bool(name and name.startswith(f"{service}_"))

    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"include_object": own, "compare_type": True})
            differences = compare_metadata(context, SQLModel.metadata)
    finally:
        engine.dispose()
    assert differences == [], f"{service}: models and migrations differ: {differences[:5]}"
