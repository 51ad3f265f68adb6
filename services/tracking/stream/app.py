"""The tracking faust application: topics, the per-child table, and the agents (identity on each intake lane,
cases, and the urgent lane's fold ahead)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faust
from sqlalchemy.engine import Engine

from services.tracking.settings import TrackingSettings, tracking_settings
from services.tracking.spells import ensure_current as ensure_spells_current
from shared.db import make_engine, migrate
from shared.kafka import ensure_topics
from shared.settings import Settings
from shared.streams import raw_topic, stream_app
from shared.topics import (
    CASE_TRANSITIONS,
    CHILD_EVENTS,
    DEAD_LETTER,
    INTAKE,
    URGENT_CHILD_EVENTS,
    URGENT_INTAKE,
    URGENT_TRANSITIONS,
)

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"
CHILDREN_TABLE = "children"


@dataclass
class StreamContext:
    """What the agents share: settings, the database, and the topics and table of this app."""

    settings: TrackingSettings
    engine: Engine
    intake: Any
    urgent_intake: Any  # the urgent lane of intake (shared/events/urgency.py)
    child_events: Any
    urgent_child_events: Any  # copies of the urgent lane's facts, folded ahead (fold_ahead_agent.py)
    transitions: Any
    urgent_transitions: Any  # the fold ahead's provisional transitions
    dead_letter: Any
    children: Any


def migrate_store(database_url: str) -> None:
    """Tracking's migrations, then its derived rows brought up to date (spells.py), as every start does."""
    migrate(database_url, MIGRATIONS, "tracking", after=ensure_spells_current)


def app_id(settings: Settings) -> str:
    # The prefix makes each test (and each side-by-side deployment) its own consumer group and changelogs.
    return f"{settings.topic_prefix}cme-tracking"


def prepare_dependencies(settings: Settings) -> None:
    """Create the shared topics and migrate the case store, so faust never races to auto-create a topic it
    does not own."""
    cfg = tracking_settings(settings)
    topics = (INTAKE, URGENT_INTAKE, CHILD_EVENTS, URGENT_CHILD_EVENTS, CASE_TRANSITIONS, URGENT_TRANSITIONS)
    ensure_topics(cfg, (*topics, DEAD_LETTER))
    migrate_store(cfg.database_url)


def create_faust_app(settings: Settings, *, prepare: bool = True) -> faust.App:
    """Build the faust app, first preparing its topics and case store (``prepare``)."""
    cfg = tracking_settings(settings)
    if prepare:
        prepare_dependencies(cfg)
    app = stream_app(cfg, app_id(cfg), cfg.tracking_store, state_dir=f"{cfg.topic_prefix}tracking-faust")
    ctx = StreamContext(
        settings=cfg,
        engine=make_engine(cfg.database_url),
        intake=raw_topic(app, INTAKE.name(cfg)),
        urgent_intake=raw_topic(app, URGENT_INTAKE.name(cfg)),
        child_events=raw_topic(app, CHILD_EVENTS.name(cfg)),
        urgent_child_events=raw_topic(app, URGENT_CHILD_EVENTS.name(cfg)),
        transitions=raw_topic(app, CASE_TRANSITIONS.name(cfg)),
        urgent_transitions=raw_topic(app, URGENT_TRANSITIONS.name(cfg)),
        dead_letter=raw_topic(app, DEAD_LETTER.name(cfg)),
        children=app.Table(
            # Keys are child_id strings, values ChildRecord JSON strings (faust's json codec for tables).
            CHILDREN_TABLE,
            default=None,
            partitions=cfg.topic_partitions,
            key_type=str,
            value_type=str,
        ),
    )
    from services.tracking.stream import case_agent, fold_ahead_agent, identity_agent

    identity_agent.register(app, ctx)
    case_agent.register(app, ctx)
    fold_ahead_agent.register(app, ctx)
    app.tracking_context = ctx  # type: ignore[attr-defined]
    return app
