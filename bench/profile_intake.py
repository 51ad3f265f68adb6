"""Profile of the referral intake path in-process on PostgreSQL: where the time of one request goes.

``create_app`` (no relay, no status consumer) on a scratch PostgreSQL database, driven through httpx's
ASGITransport by C concurrent clients for N requests (single events or batches). Profiles every thread (the
app's DB work runs in worker threads) with yappi when it is installed (``pip install yappi``: a tool, not a
dependency), else the event-loop thread only with cProfile. Prints wall time per request and the top
functions by total time spent inside them and by cumulative time.

    .venv/bin/python -m bench.profile_intake [--mode single|batch] [--requests 400] [--batch 100]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import os
import pstats
import time
import uuid
from typing import Any

import httpx
import orjson

from bench.common import scratch_database
from bench.intake import baseline_app, next_event
from services.referral.app import MIGRATIONS, create_app
from services.referral.clients import create_client
from services.referral.models import ClientKind
from shared.db import make_engine, migrate
from shared.kafka import ensure_topics
from shared.settings import Settings


def bodies(mode: str, requests: int, batch: int) -> list[tuple[str, bytes]]:
    """The requests' paths and bodies, built before anything is timed or profiled: generating an event costs
    ~16 us of CPU (``next_event``), as much as the bare endpoint's whole answer to it in a batch."""
    if mode == "single":
        return [("/v1/events", orjson.dumps(next_event())) for _ in range(requests)]
    return [
        ("/v1/events/batch", orjson.dumps({"events": [next_event() for _ in range(batch)]}))
        for _ in range(requests)
    ]


async def drive(
    app: Any, key: str, mode: str, todo: list[tuple[str, bytes]], batch: int, concurrency: int
) -> tuple[float, float]:
    """Send ``todo`` from ``concurrency`` clients: wall seconds, and process CPU seconds (both sides of the
    in-process transport) of the sending alone (not the app's start-up, the warm-up or the bodies)."""
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://referral") as http:

        async def worker() -> None:
            while todo:
                path, body = todo.pop()
                r = await http.post(path, content=body, headers=headers)
                ok = r.status_code == 202 if mode == "single" else r.json().get("accepted") == batch
                assert ok, r.text

        # warm up (imports, pool, first statement preparation) before timing
        await http.post("/v1/events", content=orjson.dumps(next_event()), headers=headers)
        started, cpu = time.perf_counter(), time.process_time()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return time.perf_counter() - started, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--mode", choices=["single", "batch"], default="single")
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--no-profile", action="store_true", help="time only (no profiler overhead)")
    parser.add_argument(
        "--relay", action="store_true", help="run the outbox relay too (the real broker, as the service does)"
    )
    args = parser.parse_args()
    with scratch_database("profile_intake") as url:
        migrate(url, MIGRATIONS, "referral")
        engine = make_engine(url)
        _, key = create_client(
            engine,
            kind=ClientKind.SCHOOL,
            name="profile",
            la_code="801",
            school_urn="108000",
            rate_per_s=1e6,
            burst=10**6,
        )
        engine.dispose()
        settings = Settings(
            database_url=url,
            kafka_bootstrap=os.environ.get("CME_KAFKA_BOOTSTRAP", "127.0.0.1:19092"),
            topic_prefix=f"profile{uuid.uuid4().hex[:8]}-",
        )
        if args.relay:
            ensure_topics(settings)
        app = create_app(settings, background=args.relay)

        todo = bodies(args.mode, args.requests, args.batch)

        async def run() -> tuple[float, float]:
            async with app.router.lifespan_context(app):
                return await drive(app, key, args.mode, todo, args.batch, args.concurrency)

        try:
            import yappi  # type: ignore[import-not-found,import-untyped,unused-ignore]
        except ImportError:
            yappi = None
        if args.no_profile:
            elapsed, cpu = asyncio.run(run())
            bare_todo = bodies(args.mode, args.requests, args.batch)
            bare_elapsed, bare_cpu = asyncio.run(
                drive(baseline_app(), key, args.mode, bare_todo, args.batch, args.concurrency)
            )
            per = args.batch if args.mode == "batch" else 1
            print(
                f"CPU (this process, both sides of the in-process transport): referral "
                f"{cpu / args.requests / per * 1e6:.0f} us an event, bare FastAPI "
                f"{bare_cpu / args.requests / per * 1e6:.0f} us an event; wall {elapsed:.2f} s vs "
                f"{bare_elapsed:.2f} s"
            )
        elif yappi is not None:
            yappi.set_clock_type(os.environ.get("YAPPI_CLOCK", "cpu"))
            yappi.start()
            elapsed, _ = asyncio.run(run())
            yappi.stop()
            for sort in ("tsub", "ttot"):
                print(
                    f"\n--- top {args.top} by {sort} (all threads, yappi clock {yappi.get_clock_type()}) ---"
                )
                stats = yappi.get_func_stats().sort(sort)
                stats.print_all(
                    columns={0: ("name", 90), 1: ("ncall", 10), 2: ("tsub", 8), 3: ("ttot", 8)},
                    out=_Head(args.top + 3),
                )
        else:
            profile = cProfile.Profile()
            profile.enable()
            elapsed, _ = asyncio.run(run())
            profile.disable()
            out = io.StringIO()
            pstats.Stats(profile, stream=out).sort_stats("tottime").print_stats(args.top)
            print(out.getvalue())
    per = args.batch if args.mode == "batch" else 1
    print(
        f"{args.mode}: {args.requests} requests x {per} events, {args.concurrency} clients: {elapsed:.2f} s, "
        f"{elapsed / args.requests * 1000:.2f} ms a request, {args.requests * per / elapsed:.0f} events/s"
    )


class _Head(io.StringIO):
    """Print only the first n lines of a yappi table."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.n = n

    def write(self, s: str) -> int:
        for line in s.splitlines(keepends=True):
            if self.n > 0:
                print(line, end="")
                self.n -= line.count("\n")
        return len(s)


if __name__ == "__main__":
    main()
