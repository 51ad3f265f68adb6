"""A minimal faust-streaming app for the backbone test: intake facts in, a transformed summary out."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import faust
import orjson

from shared.events import decode_inbound
from shared.kafka import faust_broker_options
from shared.settings import get_settings
from shared.topics import INTAKE

settings = get_settings()
app = faust.App(
    f"{settings.topic_prefix}faust-probe",
    store="memory://",
    datadir=str(settings.data_dir / "faust-probe"),  # not faust's default, a folder in the working directory
    topic_partitions=settings.topic_partitions,
    web_enabled=False,
    **faust_broker_options(settings),
)
intake = app.topic(INTAKE.name(settings), key_type=bytes, value_type=bytes, value_serializer="raw")
summaries = app.topic(
    f"{settings.topic_prefix}probe-out", key_type=bytes, value_type=bytes, value_serializer="raw"
)
seen_by_la = app.Table("seen-by-la", default=int, partitions=settings.topic_partitions)


@app.agent(intake)
async def summarise(stream: Any) -> AsyncIterator[None]:
    async for value in stream:
        event = decode_inbound(value)
        la = event.source.la_code or "unknown"
        seen_by_la[la] += 1
        summary = {"event_id": str(event.event_id), "event_type": event.event_type, "la_code": la}
        await summaries.send(key=la.encode(), value=orjson.dumps(summary))
        yield None
