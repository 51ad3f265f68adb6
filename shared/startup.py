"""Start whatever is up yet: a service brings its dependencies (database migrations, Kafka clients,
background workers) up in the background, retrying each step, instead of exiting when PostgreSQL or Kafka is
not there yet.

Meanwhile the HTTP server runs: /health/live answers at once, /health/ready answers 503 naming the step it
waits for, and every other route answers 503 with Retry-After (``StartupGate``). A deployment's readiness
probe, not a crash loop, says the service is waiting; it becomes ready by itself when the dependency comes.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy.exc import OperationalError
from starlette.types import ASGIApp, Receive, Scope, Send

from shared.db import migrate
from shared.logs import get_logger
from shared.ops import NotReady, ReadinessCheck
from shared.settings import Settings, local_defaults_warning

log = get_logger(__name__)

Step = Callable[[], Awaitable[None]]
FIRST_RETRY_S = 0.5
MAX_RETRY_S = 5.0
# How long a service's start waits for its steps before it serves anyway. With its dependencies up, the steps
# finish well within it, so the first request a client can make finds the service ready (tests and the local
# run rely on that); with a dependency down, the service is live and not ready after this long.
STARTUP_GRACE_S = 15.0
RETRY_AFTER_S = "5"
# Paths that answer while the service starts: liveness, readiness (saying why it is not ready), metrics.
OPS_PATHS = ("/health/", "/metrics")
STARTING_BODY = json.dumps(
    {
        "errors": [
            {"field": "service", "rule": "starting", "message": "the service is starting; try again shortly"}
        ]
    }
).encode()


@dataclass(frozen=True)
class StartStep:
    name: str
    run: Step
    undo: Step | None = None  # cleans up a half-done attempt before the next one


def migrations(
    database_url: str, directory: Path, service: str, after: Callable[[str], object] | None = None
) -> list[StartStep]:
    """Apply the migrations (and ``after``, as ``shared.db.migrate`` does) now when the database answers, so
    an app built with its database up is complete before anything uses it (tests build apps without running
    their lifespan); otherwise as a start step."""
    try:
        migrate(database_url, directory, service, after)
        return []
    except OperationalError as exc:  # the database is not there (yet): no half-applied state to worry about
        log.warning("startup_database_unavailable", service=service, error=type(exc.orig).__name__)

    async def run() -> None:
        await asyncio.to_thread(migrate, database_url, directory, service, after)

    return [StartStep("database", run)]


@dataclass
class Startup:
    """Named steps run in order; each is retried until it succeeds. One object per app: the readiness check
    and the gate read it. ``pending`` says whether the app has start steps at all: an app with none (its
    database migrated when it was built, no background work) is ready without a lifespan, as tests use it.
    """

    service: str
    pending: bool = True
    waiting_for: str | None = "start"
    last_error: str = ""
    done: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        if not self.pending:
            self.waiting_for = None
            self.done.set()

    async def run(self, *steps: StartStep) -> None:
        self.done.clear()
        for step in steps:
            delay = FIRST_RETRY_S
            self.waiting_for = step.name
            while True:
                try:
                    await step.run()
                    break
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # any failure of a dependency: wait and try again
                    self.last_error = type(exc).__name__
                    log.warning(
                        "startup_waiting", service=self.service, step=step.name, error=self.last_error,
                        retry_in_s=delay,
                    )  # fmt: skip
                    if step.undo is not None:
                        try:
                            await step.undo()
                        except Exception as undo_exc:  # the undo is best effort; the retry starts clean
                            log.warning("startup_undo_failed", step=step.name, error=type(undo_exc).__name__)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, MAX_RETRY_S)
        self.waiting_for = None
        self.done.set()
        log.info("startup_complete", service=self.service)

    async def begin(self, *steps: StartStep, grace_s: float = STARTUP_GRACE_S) -> asyncio.Task[None]:
        """Run the steps in the background; return once they are done or after ``grace_s``, whichever first.
        The caller cancels the returned task when the service stops."""
        task = asyncio.create_task(self.run(*steps), name=f"{self.service}-startup")
        try:
            await asyncio.wait_for(asyncio.shield(task), timeout=grace_s)
        except TimeoutError:
            log.warning("startup_serving_before_ready", service=self.service, waiting_for=self.waiting_for)
        return task

    def check(self) -> ReadinessCheck:
        async def check() -> None:
            if not self.done.is_set():
                reason = f" ({self.last_error})" if self.last_error else ""
                raise NotReady(f"starting: waiting for {self.waiting_for}{reason}")

        return check


def retry_until_done(service: str, name: str, step: Callable[[], object]) -> None:
    """For a stream worker's start (synchronous, before its event loop runs): retry ``step`` until it
    succeeds, so a worker started before Kafka or PostgreSQL waits for them instead of exiting."""
    delay = FIRST_RETRY_S
    while True:
        try:
            step()
            return
        except Exception as exc:  # any failure of a dependency: wait and try again
            error = type(exc).__name__
            log.warning("startup_waiting", service=service, step=name, error=error, retry_in_s=delay)
            time.sleep(delay)
            delay = min(delay * 2, MAX_RETRY_S)


class StartupGate:
    """ASGI middleware: until startup is done, every route but the ops endpoints answers 503 + Retry-After."""

    def __init__(self, app: ASGIApp, startup: Startup) -> None:
        self.app = app
        self.startup = startup

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or self.startup.done.is_set()
            or str(scope.get("path", "")).startswith(OPS_PATHS)
        ):
            await self.app(scope, receive, send)
            return
        body = STARTING_BODY
        await send(
            {
                "type": "http.response.start",
                "status": 503,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"retry-after", RETRY_AFTER_S.encode()),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


def warn_if_local_defaults(service: str, settings: Settings) -> None:
    warning = local_defaults_warning(settings)
    if warning:
        log.warning("local_defaults", service=service, detail=warning)


async def stop_background(tasks: list[asyncio.Task[None]], stop: asyncio.Event, grace_s: float = 5.0) -> None:
    """Stop an app's background loops (outbox relay, consumers): set ``stop``, give them ``grace_s`` to
    finish, cancel the rest. A Kafka client stuck connecting must not hold up shutdown: what is unpublished
    stays in its outbox, what is not committed is read again."""
    stop.set()
    if not tasks:
        return
    _done, pending = await asyncio.wait(tasks, timeout=grace_s)
    for task in pending:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
