"""``cme``: the umbrella command for a local run: the stack, topics, schemas, and the whole pipeline."""

from __future__ import annotations

import argparse
import sys

from shared.localstack.stack import StackError, local_broker, local_postgres, stack_down, stack_up
from shared.settings import PROJECT_ROOT, get_settings


def _cmd_stack(args: argparse.Namespace) -> int:
    settings = get_settings()
    if args.action == "up":
        try:
            env = stack_up(settings, args.postgres).env
        except StackError as exc:
            print(f"cme stack up: {exc}", file=sys.stderr)
            return 1
        for key, value in env.items():
            print(f"export {key}={value}")
    elif args.action == "down":
        stack_down(settings)
    else:
        print(f"kafka running: {local_broker(settings).running()}")
        print(f"postgres running: {local_postgres(settings).running()}")
    return 0


def _cmd_topics(_: argparse.Namespace) -> int:
    from shared.kafka import ensure_topics

    created = ensure_topics(get_settings())
    print("created: " + (", ".join(created) if created else "nothing (all topics exist)"))
    return 0


def _cmd_kafka_fetch(_: argparse.Namespace) -> int:
    from shared.localstack.kafka import fetch

    print(fetch())
    return 0


def _cmd_schemas(args: argparse.Namespace) -> int:
    from devtools import schemas

    if args.action == "export":
        for path in schemas.export():
            print(path.relative_to(PROJECT_ROOT))
        return 0
    problems = schemas.drift()
    for problem in problems:
        print(f"out of date: {problem}", file=sys.stderr)
    if problems:
        print("run `cme schemas export` and commit the result", file=sys.stderr)
    return 1 if problems else 0


def _cmd_run(args: argparse.Namespace) -> int:
    from devtools.localrun import run_pipeline

    return run_pipeline(
        get_settings(), with_postgres=args.postgres, demo=not args.no_demo, exit_after=args.exit_after
    )


def _cmd_dead_letters(args: argparse.Namespace) -> int:
    from shared.deadletter_replay import find_dead_letter, format_dead_letter, read_dead_letters, replay

    settings = get_settings()
    if args.action == "list":
        letters = read_dead_letters(settings)
        for letter in letters:
            if args.service in (None, letter.payload.service):
                print(format_dead_letter(letter))
        return 0
    if not args.event_id:
        print("replay needs --event-id (the dead letter's id, from `cme dead-letters list`)", file=sys.stderr)
        return 2
    found = find_dead_letter(settings, args.event_id)
    if found is None:
        print(f"no dead letter {args.event_id}", file=sys.stderr)
        return 1
    done = replay(settings, found, args.to_topic)
    print(f"replayed {done.dead_letter_id} to {done.topic}[{done.partition}]@{done.offset}")
    return 0


def _cmd_purge(args: argparse.Namespace) -> int:
    from shared.db import make_engine
    from shared.retention import RetentionPolicy, purge

    settings = get_settings()
    policy = RetentionPolicy(
        closed_case_days=args.closed_case_days,
        published_outbox_days=args.outbox_days,
        topic_days=args.topic_days,
    )
    engine = make_engine(settings.database_url)
    try:
        report = purge(settings, engine, policy, topics=not args.no_topics)
    finally:
        engine.dispose()
    print("\n".join(report.lines()))
    return 0


def _cmd_token(args: argparse.Namespace) -> int:
    """A bearer token for the tracking, notify, escalation and attendance APIs, signed with the key."""
    from shared.auth import Role, issue_token
    from shared.identifiers import validate_la_code

    settings = get_settings()
    try:
        la_code = validate_la_code(args.la)
    except ValueError as exc:
        print(f"cme token: --la: {exc}", file=sys.stderr)
        return 2
    token = issue_token(settings, sub=args.sub, role=Role(args.role), la_code=la_code, ttl_s=args.ttl)
    print(token)
    print(
        f"token for {args.sub} ({args.role}, LA {la_code}), valid {args.ttl} s; send it as "
        "'Authorization: Bearer <token>'. Every use is scoped to that LA and audited under that name.",
        file=sys.stderr,
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cme", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    stack = sub.add_parser("stack", help="the local Kafka broker and PostgreSQL")
    stack.add_argument("action", choices=["up", "down", "status"])
    stack.add_argument(
        "--postgres", action="store_true", help="also start PostgreSQL (default store: SQLite)"
    )
    stack.set_defaults(func=_cmd_stack)

    topics = sub.add_parser("topics", help="create the topics that do not exist yet")
    topics.set_defaults(func=_cmd_topics)

    fetch = sub.add_parser(
        "kafka-fetch", help="download the Kafka broker jars from Maven Central into .cache"
    )
    fetch.set_defaults(func=_cmd_kafka_fetch)

    schemas = sub.add_parser("schemas", help="JSON Schemas and the AsyncAPI document under docs/")
    schemas.add_argument("action", choices=["export", "check"])
    schemas.set_defaults(func=_cmd_schemas)

    dead = sub.add_parser("dead-letters", help="list dead letters, or replay one after fixing its cause")
    dead.add_argument("action", choices=["list", "replay"])
    dead.add_argument("--event-id", help="replay: the dead letter's event id")
    dead.add_argument("--to-topic", help="replay: publish here instead of the original topic (full name)")
    dead.add_argument("--service", help="list: only the dead letters of this service")
    dead.set_defaults(func=_cmd_dead_letters)

    from shared.retention import RetentionPolicy

    defaults = RetentionPolicy()
    purge = sub.add_parser("purge", help="delete personal data past its retention period (docs/RETENTION.md)")
    purge.add_argument("--closed-case-days", type=int, default=defaults.closed_case_days)
    purge.add_argument("--outbox-days", type=int, default=defaults.published_outbox_days)
    purge.add_argument("--topic-days", type=int, default=defaults.topic_days)
    purge.add_argument(
        "--no-topics",
        action="store_true",
        help="leave Kafka alone: no DeleteRecords, and no child-purged events (tracking keeps its copies)",
    )
    purge.set_defaults(func=_cmd_purge)

    from shared.auth import Role

    token = sub.add_parser(
        "token",
        help="a bearer token for the APIs (tracking, notify, escalation, attendance) for a person or tool",
    )
    token.add_argument("--la", required=True, help="the LA number the token is scoped to, e.g. 801")
    token.add_argument("--role", required=True, choices=[r.value for r in Role])
    token.add_argument("--sub", required=True, help="who uses it: a person's or tool's name, kept in audits")
    token.add_argument("--ttl", type=int, default=3600, help="seconds it is valid (default 3600)")
    token.set_defaults(func=_cmd_token)

    run = sub.add_parser(
        "run",
        help="the whole pipeline: Kafka (and PostgreSQL), the six services (referral, tracking, escalation, "
        "notify, attendance, web), a demo feed; Ctrl-C or SIGTERM stops what it started",
    )
    run.add_argument("--postgres", action="store_true", help="use PostgreSQL instead of SQLite")
    run.add_argument(
        "--no-demo",
        action="store_true",
        help="no demo events, no demo sign-ins and no demo LA directory",
    )
    run.add_argument("--exit-after", type=float, default=None, help="stop after N seconds (smoke tests)")
    run.set_defaults(func=_cmd_run)
    return parser


def main(argv: list[str] | None = None) -> int:
    from shared.logs import configure_logging

    settings = get_settings()
    configure_logging("cme", settings.log_level, json=False)
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    raise SystemExit(main())
