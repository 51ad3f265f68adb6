"""cme-tracking: `worker` (the faust worker), `api` (the read API), `serve` (both in one process)."""

from __future__ import annotations

import argparse
import sys
import threading

from services.tracking.settings import TrackingSettings
from shared.gc_policy import freeze_startup_heap
from shared.logs import configure_logging
from shared.startup import warn_if_local_defaults


def run_worker(settings: TrackingSettings) -> None:
    import faust

    from services.tracking.stream import readiness
    from services.tracking.stream.app import create_faust_app, prepare_dependencies
    from shared.startup import retry_until_done

    # Started before Kafka or PostgreSQL, the worker waits for them (the API, if any, answers not ready).
    retry_until_done("tracking", "topics and case store", lambda: prepare_dependencies(settings))
    app = create_faust_app(settings, prepare=False)
    readiness.watch(app)
    # The worker owns the event loop and stops cleanly on SIGTERM/SIGINT (tables flushed, offsets committed).
    worker = faust.Worker(app, loglevel="WARNING", quiet=True)
    # faust's terminal spinner sets the root logger to DEBUG so that it can spin on every record: aiokafka and
    # faust then build a debug record per message (22,000 in a 3,000-event run). No spinner: WARNING stays.
    worker.spinner = None
    freeze_startup_heap()
    worker.execute_from_commandline()


def run_api(settings: TrackingSettings, with_worker: bool = False) -> None:
    import uvicorn

    from services.tracking.app import create_app
    from services.tracking.stream.readiness import worker_check

    app = create_app(settings, extra_checks={"worker": worker_check()} if with_worker else None)
    freeze_startup_heap()
    uvicorn.run(app, host=settings.bind_host, port=settings.tracking_port, log_level="warning")


def _same_store(a: str, b: str) -> bool:
    """The same database however the URL is spelled (driver, password, options aside)."""
    from sqlalchemy.engine import make_url

    ua, ub = make_url(a), make_url(b)
    return (ua.get_backend_name(), ua.host, ua.port or 5432, ua.database) == (
        ub.get_backend_name(),
        ub.host,
        ub.port or 5432,
        ub.database,
    )


def run_rebuild(
    settings: TrackingSettings,
    command: str,
    into: str | None,
    batch: int,
    check: bool,
    partitions: list[int] | None = None,
) -> int:
    from services.tracking import rebuild

    if not into:
        print("--into DATABASE_URL is required", file=sys.stderr)
        return 2
    if _same_store(into, settings.database_url):
        print("--into must name a store other than the live one (CME_DATABASE_URL)", file=sys.stderr)
        return 2
    if command == "rebuild":
        report = rebuild.rebuild(
            settings,
            into,
            batch=batch,
            deployment=settings.deployment_las,
            partitions=partitions,
            on_progress=rebuild.printer(),
        )
        print(
            f"rebuilt {report.events:,} events in {report.seconds:.1f} s "
            f"(resumed after {report.resumed_from:,}; skipped {report.skipped}, "
            f"duplicates {report.duplicates}, purged {report.purged})"
        )
        if not check:
            return 0
    differences = rebuild.compare(settings.database_url, into)
    for line in rebuild.describe(differences):
        print(line)
    return 0 if all(d.equal for d in differences) else 1


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="cme-tracking", description=__doc__)
    parser.add_argument(
        "command",
        nargs="?",
        default="serve",
        choices=["serve", "worker", "api", "migrate", "rebuild", "rebuild-check"],
        help="rebuild: replay cme.child-events.v1 into the fresh case store --into (resumable); "
        "rebuild-check: compare the store --into with the live one (CME_DATABASE_URL)",
    )
    parser.add_argument(
        "--into", metavar="DATABASE_URL", help="the store to rebuild (rebuild, rebuild-check)"
    )
    parser.add_argument("--batch", type=int, default=2000, help="records per committed batch (rebuild)")
    parser.add_argument("--check", action="store_true", help="compare with the live store after the rebuild")
    parser.add_argument(
        "--partitions",
        help="comma-separated child-events partitions to rebuild (default all): one process per share, "
        "same --into, runs them in parallel",
    )
    args = parser.parse_args(argv)
    settings = TrackingSettings()
    configure_logging("tracking", settings.log_level, settings.log_json)
    warn_if_local_defaults("tracking", settings)
    if args.command in ("rebuild", "rebuild-check"):
        parts = [int(p) for p in args.partitions.split(",")] if args.partitions else None
        raise SystemExit(run_rebuild(settings, args.command, args.into, args.batch, args.check, parts))
    if args.command == "migrate":
        from services.tracking.stream.app import migrate_store

        migrate_store(settings.database_url)
    elif args.command == "worker":
        run_worker(settings)
    elif args.command == "api":
        run_api(settings)
    else:
        # Import both halves before the thread starts: two threads importing sqlalchemy at once can see it
        # half-initialised (ImportError).
        import services.tracking.app
        import services.tracking.stream.app
        import services.tracking.stream.readiness  # noqa: F401

        # One process, two jobs: the API's readiness includes the worker's.
        threading.Thread(target=run_api, args=(settings, True), name="tracking-api", daemon=True).start()
        run_worker(settings)


if __name__ == "__main__":
    main()
