"""SQLModel engine and session helpers, and Alembic migrations run per service.

Each service owns its tables (named with the service's prefix) and its own Alembic history, recorded in its
own version table, so services can be deployed and migrated one at a time against one database.
"""

from __future__ import annotations

import threading
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import event, text
from sqlalchemy.engine import Engine
from sqlmodel import Session, create_engine


def make_engine(url: str, **kwargs: Any) -> Engine:
    if url.startswith("sqlite"):
        db_path = url.split("///", 1)[-1]
        if db_path and db_path != ":memory:":
            Path(db_path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30}, **kwargs)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _: Any) -> None:
            cursor = dbapi_conn.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")  # readers do not block the writer
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

        return engine
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    kwargs.setdefault("pool_pre_ping", True)  # a restarted Postgres must not break the next request
    kwargs.setdefault("pool_size", 10)
    engine = create_engine(url, **kwargs)

    @event.listens_for(engine, "connect")
    def _custom_plans(dbapi_conn: Any, _: Any) -> None:
        # psycopg prepares a statement run five times, and the server then plans it once for any parameters:
        # for a batch's "= ANY(array)" or IN list that generic plan was up to twice as slow as planning
        # each run for its own values (docs/PERFORMANCE.md). Planning costs far less than that.
        with dbapi_conn.cursor() as cursor:
            cursor.execute("SET plan_cache_mode = force_custom_plan")
        dbapi_conn.commit()

    return engine


@contextmanager
def session_scope(engine: Engine) -> Iterator[Session]:
    """One unit of work: committed on success, rolled back on any error."""
    with Session(engine, expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


def alembic_config(url: str, script_location: Path, service: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(script_location))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    cfg.attributes["service"] = service
    return cfg


# Alembic's ``context`` is module-global: two threads of one process must not migrate at the same time.
_MIGRATION_LOCK = threading.Lock()


def migrate(
    url: str, script_location: Path, service: str, after: Callable[[str], object] | None = None
) -> None:
    """Bring the service's tables to the newest revision (idempotent; safe at every start), then run
    ``after(url)`` (a service bringing its derived rows up to date), under the same turn.

    Replicas of a service start together: on PostgreSQL an advisory lock per service makes them take turns,
    so the second finds the schema up to date instead of racing the first to create it.
    """
    with _MIGRATION_LOCK:
        if not url.startswith("postgresql"):
            command.upgrade(alembic_config(url, script_location, service), "head")
            if after is not None:
                after(url)
            return
        engine = make_engine(url, pool_size=1)
        key = zlib.crc32(f"cme-migrate-{service}".encode())
        try:
            with engine.connect() as conn:
                conn.execute(text("SELECT pg_advisory_lock(:key)"), {"key": key})
                try:
                    command.upgrade(alembic_config(url, script_location, service), "head")
                    if after is not None:
                        after(url)
                finally:
                    conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": key})
        finally:
            engine.dispose()
