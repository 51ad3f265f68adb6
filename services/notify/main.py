"""``cme-notify``: serve the notify service (default), or load the LA directory from its YAML file."""

from __future__ import annotations

import argparse
from pathlib import Path

from services.notify.settings import NotifySettings, notify_settings
from shared.db import session_scope
from shared.gc_policy import freeze_startup_heap
from shared.logs import configure_logging
from shared.startup import warn_if_local_defaults


def _serve(settings: NotifySettings) -> int:
    import uvicorn

    from services.notify.app import create_app

    app = create_app(settings)
    freeze_startup_heap()
    uvicorn.run(app, host=settings.bind_host, port=settings.notify_port, log_config=None)
    return 0


def _load_directory(settings: NotifySettings, path: Path | None) -> int:
    from services.notify.app import prepare_database
    from services.notify.directory_store import read_directory_file, store_directory

    source = path or settings.notify_directory_path
    if source is None:
        raise SystemExit("give a directory file, or set CME_NOTIFY_DIRECTORY_PATH")
    directories = read_directory_file(source)
    engine = prepare_database(settings)
    with session_scope(engine) as session:
        store_directory(session, directories)
    print(f"loaded the directory of {len(directories)} LA(s): {', '.join(d.la_code for d in directories)}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cme-notify", description=__doc__)
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("serve", help="run the API, the escalation consumer and the dispatcher (default)")
    load = sub.add_parser("load-directory", help="replace the directory of each LA named in a YAML file")
    load.add_argument("path", nargs="?", type=Path, help="default: CME_NOTIFY_DIRECTORY_PATH")
    return parser


def main(argv: list[str] | None = None) -> int:
    settings = notify_settings()
    configure_logging("notify", settings.log_level, json=settings.log_json)
    warn_if_local_defaults("notify", settings)
    args = build_parser().parse_args(argv)
    if args.command == "load-directory":
        return _load_directory(settings, args.path)
    return _serve(settings)


if __name__ == "__main__":
    raise SystemExit(main())
