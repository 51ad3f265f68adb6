"""faust's own floor on a topic (issue 21): a faust agent that reads and decodes every record and does nothing
else, in the worker's micro-batches, in a process of its own as the tracking worker runs.

The tracking benchmark compares the worker with a raw aiokafka consumer; this measures the stream framework
between the two on the same topic and in the same run: faust's consumer, its per-record event and offset
bookkeeping, ``take_events`` and the release of each batch (``shared.stream_batching``), with no table, no
database and no sends. What the worker loses to faust is the raw consumer's rate against this one; what it
loses to its own work is this rate against the worker's.

    .venv/bin/python -m bench.faust_floor --topic NAME --total N --out result.json   (CME_* settings from env)

Prints nothing; writes ``{"events", "seconds", "per_second"}`` (the events after the first batch over their
time, start-up excluded, as the worker is timed) to ``--out`` and stops.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import time
import uuid
from pathlib import Path
from typing import Any

from services.tracking.settings import TrackingSettings
from services.tracking.stream.handling import send_all
from shared.events.catalogue import decode_inbound
from shared.stream_batching import batches, release
from shared.streams import raw_topic, stream_app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--total", type=int, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument(
        "--forward-to",
        help="the tracking worker's shape: a first agent sends each record on to this topic (awaiting the "
        "acks per batch, as identity does) and a second agent reads it there; timed at the second",
    )
    args = parser.parse_args()

    import faust

    settings = TrackingSettings()  # the worker's batch size and linger, from the same environment
    # A group of its own, so it reads the topic from the start whatever else has read it.
    app_id = f"{settings.topic_prefix}faust-floor-{uuid.uuid4().hex[:6]}"
    app = stream_app(settings, app_id, "memory", state_dir=f"{app_id}-state")
    source = raw_topic(app, args.topic)
    batch_max, within_s = settings.tracking_batch_max, settings.tracking_batch_within_s
    seen = first_count = 0
    first_at = 0.0

    if args.forward_to:
        onward = raw_topic(app, args.forward_to)

        @app.agent(source, name=f"{app_id}-forward")
        async def forward(stream: Any) -> None:
            async for events in batches(stream, batch_max, within_s):
                for event in events:
                    decode_inbound(event.value)
                await send_all("faust-floor", [(onward, event.key, event.value) for event in events])
                release(events)

        source = onward

    @app.agent(source, name=f"{app_id}-read")
    async def read(stream: Any) -> None:
        nonlocal seen, first_count, first_at
        async for events in batches(stream, batch_max, within_s):
            for event in events:
                decode_inbound(event.value)
            seen += len(events)
            release(events)
            if not first_at:
                # Steady state, as the worker is timed: the events after the first batch, over their time.
                first_at, first_count = time.perf_counter(), seen
            if seen >= args.total:
                seconds = max(time.perf_counter() - first_at, 1e-6)
                rate = (seen - first_count) / seconds
                result = {"events": seen, "seconds": round(seconds, 2), "per_second": round(rate, 1)}
                args.out.write_text(json.dumps(result))
                os.kill(os.getpid(), signal.SIGTERM)

    worker = faust.Worker(app, loglevel="WARNING", quiet=True)
    worker.spinner = None
    worker.execute_from_commandline()


if __name__ == "__main__":
    main()
