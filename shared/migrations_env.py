"""The body of every service's Alembic env.py: one version table and one table prefix per service."""

from __future__ import annotations

from typing import Any

from alembic import context
from sqlalchemy import MetaData

from shared.db import make_engine


def run(metadata: MetaData, service: str) -> None:
    config = context.config
    url = config.get_main_option("sqlalchemy.url")
    assert url, "sqlalchemy.url must be set"
    prefix = f"{service}_"

    def include_object(obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any) -> bool:
        # The metadata is shared by all services in one process: only this service's tables count.
        return type_ != "table" or bool(name and name.startswith(prefix))

    options: dict[str, Any] = {
        "target_metadata": metadata,
        "version_table": f"alembic_version_{service}",
        "include_object": include_object,
        "render_as_batch": url.startswith("sqlite"),  # SQLite alters tables by copying them
    }
    if context.is_offline_mode():
        context.configure(url=url, literal_binds=True, **options)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = make_engine(url)
    with engine.connect() as connection:
        context.configure(connection=connection, **options)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()
