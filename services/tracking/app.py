"""create_app(settings) -> FastAPI: the tracking read API, ops endpoints and the outbox relay that
publishes review decisions. The only app factory of the HTTP side; the faust worker's is
``stream.app.create_faust_app``."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from prometheus_client import REGISTRY
from sqlmodel import Session

from services.tracking import api, peer_api, register_api
from services.tracking.gauges import register_open_cases_gauge
from services.tracking.models import TrackingOutbox
from services.tracking.peer_api import PeerSender
from services.tracking.peers import matcher_for
from services.tracking.settings import tracking_settings
from services.tracking.spells import ensure_current as ensure_spells_current
from services.tracking.stream.app import MIGRATIONS
from shared import request_errors
from shared.bodylimit import BodySizeLimit
from shared.db import make_engine
from shared.events.internal import ChildFact, ChildMerged, ChildSplit
from shared.openapi_errors import document_errors
from shared.ops import ReadinessCheck, database_check, kafka_check, loops_turning, ops_router
from shared.outbox import OutboxRelay, add_to_outbox, new_producer
from shared.settings import Settings, get_settings
from shared.startup import StartStep, Startup, StartupGate, migrations, stop_background
from shared.topics import CHILD_EVENTS


def create_app(settings: Settings, extra_checks: dict[str, ReadinessCheck] | None = None) -> FastAPI:
    steps = migrations(settings.database_url, MIGRATIONS, "tracking", after=ensure_spells_current)
    engine = make_engine(settings.database_url)
    relay = OutboxRelay(engine, TrackingOutbox, lambda: new_producer(settings, "cme-tracking-api"))
    startup = Startup("tracking")
    kafka_ready = kafka_check(settings)
    cfg = tracking_settings(settings)
    matcher = matcher_for(cfg)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        stop = asyncio.Event()
        tasks: list[asyncio.Task[None]] = []

        async def start_relay() -> None:
            tasks.append(asyncio.create_task(relay.run(stop), name="outbox-relay"))

        starting = await startup.begin(
            *steps, StartStep("kafka", kafka_ready), StartStep("relay", start_relay)
        )
        # Messages to other deployments (docs/TRACKING.md "Between deployments"), if there are any.
        sender = (
            asyncio.create_task(PeerSender(engine, matcher.federation, cfg.tracking_peer_poll_s).run())
            if matcher.federation is not None
            else None
        )
        try:
            yield
        finally:
            starting.cancel()
            if sender is not None:
                sender.cancel()
            await asyncio.gather(starting, *([sender] if sender else []), return_exceptions=True)
            relay.wakeup.set()
            await stop_background(tasks, stop)
            engine.dispose()

    def publish(session: Session, event: ChildMerged | ChildSplit | ChildFact) -> None:
        """Queue a review decision's event in the decision's own transaction (the caller commits); the relay
        publishes it. Keyed by the child whose record acts first: the merged child hands its facts on; a split
        starts at the surviving child; a fact (a cross-LA confirmation) goes to its child."""
        key = event.payload.merged_child_id if isinstance(event, ChildMerged) else event.payload.child_id
        add_to_outbox(session, TrackingOutbox, CHILD_EVENTS.name(settings), str(key), event)

    app = FastAPI(title="CME Tracker: tracking", lifespan=lifespan)
    app.state.engine = engine
    app.state.matcher = matcher
    app.state.publish = publish
    app.dependency_overrides[get_settings] = lambda: settings
    app.include_router(api.router)
    app.include_router(peer_api.router)
    app.include_router(register_api.router)
    checks = {
        "start": startup.check(),
        "database": database_check(engine),
        "kafka": kafka_ready,
        **(extra_checks or {}),
    }
    # The faust worker's partitions have their own watch (shared/stream_stalls.py); this is the API's relay.
    live = {"loops": loops_turning(lambda: {"outbox-relay": relay.last_turn}, settings.loop_stalled_after_s)}
    app.include_router(ops_router(checks, live_checks=live))
    register_open_cases_gauge(engine, REGISTRY)
    document_errors(
        app,
        {
            ("POST", "/v1/review-items/{review_id}/decision"): (409,),
            ("POST", "/v1/review-items/{review_id}/undo"): (409,),
        },
    )
    app.add_middleware(BodySizeLimit)  # before FastAPI buffers a body, even an unauthenticated one
    request_errors.install(app)  # 422 without echoing input (personal data, unencodable surrogates)
    app.add_middleware(StartupGate, startup=startup)
    return app
