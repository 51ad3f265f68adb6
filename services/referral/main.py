"""``cme-referral``: serve the API (default) or administer API clients."""

from __future__ import annotations

import argparse
import sys

from services.referral.models import ClientKind


def _engine():  # type: ignore[no-untyped-def]
    from services.referral.app import MIGRATIONS
    from services.referral.settings import referral_settings
    from shared.db import make_engine, migrate

    settings = referral_settings()
    migrate(settings.database_url, MIGRATIONS, "referral")
    return make_engine(settings.database_url)


def _serve(_: argparse.Namespace) -> int:
    import uvicorn

    from services.referral.app import create_app
    from services.referral.settings import referral_settings
    from shared.gc_policy import freeze_startup_heap
    from shared.logs import configure_logging
    from shared.startup import warn_if_local_defaults

    settings = referral_settings()
    configure_logging("referral", settings.log_level, settings.log_json)
    warn_if_local_defaults("referral", settings)
    app = create_app(settings)
    freeze_startup_heap()
    uvicorn.run(app, host=settings.bind_host, port=settings.referral_port, log_level="warning")
    return 0


def _clients(args: argparse.Namespace) -> int:
    from services.referral import clients

    engine = _engine()
    if args.action == "create":
        client, key = clients.create_client(
            engine,
            kind=ClientKind(args.kind),
            name=args.name,
            la_code=args.la,
            school_urn=args.urn,
            school_estab=args.estab,
            rate_per_s=args.rate,
            burst=args.burst,
        )
        print(f"client id: {client.id}")
        print(f"api key:   {key}")
        print("Store the key now: only its hash is kept and it cannot be shown again.", file=sys.stderr)
    elif args.action == "rotate":
        print(f"api key:   {clients.rotate_key(engine, args.client_id)}")
    elif args.action == "revoke":
        if not clients.revoke_client(engine, args.client_id):
            print(f"no client {args.client_id}", file=sys.stderr)
            return 1
        print(f"revoked {args.client_id}")
    else:
        for c in clients.list_clients(engine):
            state = f"revoked {c.revoked_at:%Y-%m-%d}" if c.revoked_at else "active"
            print(f"{c.id}  {c.kind:<6}  LA {c.la_code}  URN {c.school_urn or '-':<6}  {state:<18}  {c.name}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cme-referral", description=__doc__)
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("serve", help="run the HTTP API (default)").set_defaults(func=_serve)
    sub.add_parser("migrate", help="apply the database migrations").set_defaults(
        func=lambda _: _engine() and 0
    )
    clients = sub.add_parser("clients", help="create, list, rotate and revoke API clients")
    actions = clients.add_subparsers(dest="action", required=True)
    create = actions.add_parser("create", help="create a client and print its key (shown once)")
    create.add_argument("--kind", choices=[k.value for k in ClientKind], required=True)
    create.add_argument("--name", required=True)
    create.add_argument("--la", required=True, help="3-digit DfE LA number")
    create.add_argument("--urn", help="the school's URN (school clients)")
    create.add_argument("--estab", help="the school's 4-digit DfE establishment number, as in its CTF files")
    create.add_argument("--rate", type=float, default=50.0, help="events a second (default 50)")
    create.add_argument("--burst", type=int, default=1000, help="burst of events (default 1000)")
    actions.add_parser("list", help="list clients (never their keys)")
    for name in ("revoke", "rotate"):
        action = actions.add_parser(name, help=f"{name} a client's key")
        action.add_argument("client_id")
    clients.set_defaults(func=_clients)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    func = getattr(args, "func", _serve)
    try:
        return int(func(args))
    except (ValueError, LookupError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
