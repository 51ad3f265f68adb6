"""Development tooling (``devtools/``: the ``cme`` command, the local stack and run, the demo, synthetic data,
samples, the mail catcher) is a package of its own: runtime code never imports it, and its modules import
each other without a cycle. Both are read from the source (every import, a function's late imports included),
so a new import that breaks either fails here."""

from __future__ import annotations

import ast
import importlib
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DEV = "devtools"
RUNTIME = ("services", "shared")
# Runtime packages' modules that are development tools themselves, never imported by a running service.
DEV_TOOLS_IN_RUNTIME = {
    # ``python -m services.tracking.replay``: replays a synthetic school year through tracking's case logic.
    "services/tracking/replay.py",
}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """Every module ``path`` imports (absolute names; relative imports resolved against its package)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)  # `from pkg import module`
    return found


def is_dev(name: str) -> bool:
    return name == DEV or name.startswith(f"{DEV}.")


def test_no_runtime_module_imports_the_dev_tooling() -> None:
    offenders = {
        str(path.relative_to(ROOT)): sorted(n for n in imports_of(path) if is_dev(n))
        for top in RUNTIME
        for path in sorted((ROOT / top).rglob("*.py"))
        if str(path.relative_to(ROOT)) not in DEV_TOOLS_IN_RUNTIME
    }
    offenders = {path: names for path, names in offenders.items() if names}
    assert not offenders, f"runtime modules import the dev tooling: {offenders}"


def cycles_in(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every import cycle in ``graph`` (module -> the modules it imports), each as the path round it."""
    cycles: list[list[str]] = []

    def visit(name: str, trail: list[str]) -> None:
        for target in sorted(graph.get(name, set())):
            if target in trail:
                cycles.append([*trail[trail.index(target) :], target])
            else:
                visit(target, [*trail, target])

    for start in sorted(graph):
        visit(start, [start])
    return cycles


def test_the_dev_modules_import_each_other_without_a_cycle() -> None:
    modules = {module_name(p): p for p in sorted((ROOT / DEV).rglob("*.py"))}
    assert "devtools.cli" in modules and "devtools.localrun" in modules
    graph = {
        name: {n for n in imports_of(path) if n in modules and n != name} for name, path in modules.items()
    }
    # The graph is read: the command starts the local run.
    assert "devtools.localrun" in graph["devtools.cli"]
    assert not cycles_in(graph), f"import cycles among the dev modules: {cycles_in(graph)[:5]}"


def test_a_cycle_is_seen() -> None:
    """The cycle check can fail: two modules importing each other, or three in a ring, are found."""
    assert cycles_in({"a": {"b"}, "b": {"a"}})
    assert cycles_in({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}})
    assert not cycles_in({"a": {"b", "c"}, "b": {"c"}, "c": set()})


def test_every_console_script_names_a_function_that_imports() -> None:
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["cme"] == "devtools.cli:main"
    for name, target in scripts.items():
        module, _, function = target.partition(":")
        assert callable(getattr(importlib.import_module(module), function)), name


def test_the_package_list_ships_the_dev_tooling_beside_the_runtime() -> None:
    """``cme`` (topics, schemas, purge, token, dead letters, the local run) ships with the services."""
    found = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]
    assert f"{DEV}*" in found["include"]
