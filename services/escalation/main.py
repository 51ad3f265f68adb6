"""``cme-escalation``: serve the escalation service (default), apply its migrations, or check the rules and
calendars (defaults plus every LA override) without starting anything."""

from __future__ import annotations

import argparse

from services.escalation.settings import EscalationSettings
from shared.gc_policy import freeze_startup_heap
from shared.logs import configure_logging
from shared.startup import warn_if_local_defaults


def _serve(settings: EscalationSettings) -> int:
    import uvicorn

    from services.escalation.app import create_app

    app = create_app(settings)
    freeze_startup_heap()
    uvicorn.run(app, host=settings.bind_host, port=settings.escalation_port, log_config=None)
    return 0


def _migrate(settings: EscalationSettings) -> int:
    from services.escalation.app import prepare_database

    prepare_database(settings).dispose()
    print("escalation tables are at the newest revision")
    return 0


def _check(settings: EscalationSettings) -> int:
    from services.escalation.app import load_deps
    from services.escalation.rules import RuleConfigError
    from shared.school_calendar import CalendarConfigError

    try:
        deps = load_deps(settings)
    except (RuleConfigError, CalendarConfigError) as exc:
        print(f"invalid: {exc}")
        return 1
    print(f"{len(deps.rules.defaults)} default rules valid; LA calendars: "
          f"{', '.join(sorted(deps.calendars.overridden())) or 'default only'}")  # fmt: skip
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cme-escalation", description=__doc__)
    sub = parser.add_subparsers(dest="command")
    sub.add_parser(
        "serve", help="run the consumer, the timer, the outbox relay and the ops endpoints (default)"
    )
    sub.add_parser("migrate", help="create or upgrade the escalation_* tables")
    sub.add_parser(
        "check-config", help="validate the rules (CME_RULES_DIR) and calendars (CME_CALENDARS_DIR)"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    settings = EscalationSettings()
    configure_logging("escalation", settings.log_level, json=settings.log_json)
    warn_if_local_defaults("escalation", settings)
    args = build_parser().parse_args(argv)
    if args.command == "migrate":
        return _migrate(settings)
    if args.command == "check-config":
        return _check(settings)
    return _serve(settings)


if __name__ == "__main__":
    raise SystemExit(main())
