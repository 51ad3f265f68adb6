"""cme-web: `serve` (default) runs the web; `users create` adds a local account (password from stdin or the
CME_WEB_NEW_PASSWORD environment variable, never from the command line)."""

from __future__ import annotations

import argparse
import getpass
import os
import sys

from services.web.settings import WebSettings, web_settings
from shared.auth import Role
from shared.gc_policy import freeze_startup_heap
from shared.logs import configure_logging
from shared.startup import warn_if_local_defaults


def serve(settings: WebSettings) -> None:
    import uvicorn

    from services.web.app import create_app

    app = create_app(settings)
    freeze_startup_heap()
    uvicorn.run(app, host=settings.bind_host, port=settings.web_port, log_level="warning")


def read_password(stdin_flag: bool) -> str:
    from_env = os.environ.get("CME_WEB_NEW_PASSWORD")
    if from_env:
        return from_env
    if stdin_flag or not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\n")
    first = getpass.getpass("password: ")
    if first != getpass.getpass("again: "):
        raise SystemExit("passwords differ")
    return first


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="cme-web", description=__doc__)
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("serve", help="run the web (default)")
    users = sub.add_parser("users", help="local accounts").add_subparsers(dest="users_command", required=True)
    create = users.add_parser("create", help="add a local account")
    create.add_argument("--la", required=True, help="3-digit LA code")
    create.add_argument("--role", required=True, choices=[r.value for r in Role if r != Role.SERVICE])
    create.add_argument("--username", required=True)
    create.add_argument("--team", help="the caseworker's team (for the 'my team's cases' queue)")
    create.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    args = parser.parse_args(argv)
    settings = web_settings()
    configure_logging("web", settings.log_level, settings.log_json)
    warn_if_local_defaults("web", settings)
    if args.command == "users":
        from services.web.app import prepare_database
        from services.web.users import UserError, create_user

        engine = prepare_database(settings)
        try:
            create_user(
                engine, args.username, args.la, Role(args.role), read_password(args.password_stdin), args.team
            )
        except UserError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        print(f"user {args.username} created ({args.role}, LA {args.la})")
        return 0
    serve(settings)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
