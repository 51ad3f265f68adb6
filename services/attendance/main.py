"""cme-attendance: `worker` (the faust worker), `api` (the bulk upload API), `serve` (both in one process)."""

from __future__ import annotations

import argparse
import threading

from services.attendance.settings import AttendanceSettings, attendance_settings
from shared.gc_policy import freeze_startup_heap
from shared.logs import configure_logging
from shared.startup import warn_if_local_defaults


def run_worker(settings: AttendanceSettings) -> None:
    import faust

    from services.attendance.worker import create_faust_app

    app = create_faust_app(settings)
    # The worker owns the event loop and stops cleanly on SIGTERM/SIGINT (tables flushed, offsets committed).
    worker = faust.Worker(app, loglevel="WARNING", quiet=True)
    # faust's terminal spinner sets the root logger to DEBUG so that it can spin on every record: aiokafka and
    # faust then build a debug record per message sent (~5% of the worker's time). No spinner: WARNING stays.
    worker.spinner = None
    freeze_startup_heap()
    worker.execute_from_commandline()


def run_api(settings: AttendanceSettings) -> None:
    import uvicorn

    from services.attendance.app import create_app

    app = create_app(settings)
    freeze_startup_heap()
    uvicorn.run(app, host=settings.bind_host, port=settings.attendance_port, log_level="warning")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="cme-attendance", description=__doc__)
    parser.add_argument("command", nargs="?", default="serve", choices=["serve", "worker", "api"])
    args = parser.parse_args(argv)
    settings = attendance_settings()
    configure_logging("attendance", settings.log_level, settings.log_json)
    warn_if_local_defaults("attendance", settings)
    if args.command == "worker":
        run_worker(settings)
    elif args.command == "api":
        run_api(settings)
    else:
        # Import both halves before the thread starts: two threads importing sqlalchemy at once can see it
        # half-initialised (ImportError: partially initialized module 'sqlalchemy.sql._typing').
        import services.attendance.app
        import services.attendance.worker  # noqa: F401

        threading.Thread(target=run_api, args=(settings,), name="attendance-api", daemon=True).start()
        run_worker(settings)


if __name__ == "__main__":
    main()
