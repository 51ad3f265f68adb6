"""Each service declares what ``cme purge`` deletes in its own tables (``services/<svc>/retention.py``), and
no table that names a child can be left out silently: a new table with a child's, case's or alert's id (or a
child's personal details) fails here until its service's hook says how its rows go."""

from __future__ import annotations

import importlib

from sqlalchemy import Table
from sqlmodel import SQLModel

from shared.retention import PurgeHook, service_hooks

SERVICES_WITH_TABLES = ("referral", "tracking", "escalation", "notify", "web")
for _service in SERVICES_WITH_TABLES:
    importlib.import_module(f"services.{_service}.models")

# Columns whose value names a child: its id (or another child's in a merge or a link), its case, its alert.
ID_KINDS = {"child", "case", "alert"}
# A child's personal details: a table holding them must be purged with the child even without an id column.
PERSONAL = {"forename", "surname", "date_of_birth", "upn", "postcode", "home_address"}


def _names_child(column: str) -> bool:
    return column.endswith("child_id") or column in ("case_id", "alert_id")


def _service_tables() -> dict[str, Table]:
    return {
        n: t
        for n, t in SQLModel.metadata.tables.items()
        if n.startswith(tuple(f"{s}_" for s in SERVICES_WITH_TABLES))
    }


def _hooks() -> dict[str, PurgeHook]:
    return {h.service: h for h in service_hooks()}


def test_every_service_with_tables_declares_its_purge() -> None:
    assert set(_hooks()) == set(SERVICES_WITH_TABLES)


def test_every_column_naming_a_child_is_purged_by_its_services_hook() -> None:
    hooks = _hooks()
    forgotten = []
    for name, table in _service_tables().items():
        naming = {c.name for c in table.c if _names_child(c.name)}
        personal = {c.name for c in table.c if c.name in PERSONAL}
        service = name.split("_", 1)[0]
        declared = hooks[service].columns().get(name, set())
        if naming != declared or (personal and not declared):
            forgotten.append((name, sorted(naming), sorted(declared)))
    assert forgotten == [], f"tables whose purge is not declared as their columns say: {forgotten}"


def test_hooks_name_only_their_own_existing_tables_and_columns() -> None:
    tables = _service_tables()
    for hook in service_hooks():
        for name, cols in [*hook.deletes.items(), *hook.unlinks.items()]:
            assert name.startswith(f"{hook.service}_"), (hook.service, name)
            assert name in tables, (hook.service, name)
            assert set(cols) <= set(tables[name].c.keys()), (name, cols)
            assert set(cols.values()) <= ID_KINDS, (name, cols)
        assert hook.last <= set(hook.deletes)


def test_one_service_says_which_children_are_due() -> None:
    owners = [h.service for h in service_hooks() if h.due is not None]
    assert owners == ["tracking"]
    assert all(h.located is None for h in service_hooks() if h.due is None)
    # The alert ids the web's tables are purged by are derived by notify.
    assert [h.service for h in service_hooks() if h.derive is not None] == ["notify"]
