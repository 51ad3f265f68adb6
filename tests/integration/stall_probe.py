"""A faust worker built like tracking's and attendance's (``shared.streams.stream_app``, micro-batches under
the offset guard) that copies every record of ``<prefix>stall-in`` to ``<prefix>stall-out``, and then loses a
partition the way faust can, for the stall watch's test (test_stream_stalls.py).

``STALL_PROBE_FAULT`` says how, once its first record of partition 1 is done:

- ``read-offset``: faust's read offset for the partition jumps past its records, so its drain loop drops
  each one as already read (the "DROPPED MESSAGE ROFF" branch of ``Consumer._drain_messages``);
- ``fetch-set``: the partition leaves faust's fetch set as if its stream buffer were full, and the buffer's
  "pressure dropped" callback never comes, so it is never fetched again.
"""

from __future__ import annotations

import os
from typing import Any

from shared.logs import configure_logging
from shared.settings import get_settings
from shared.stream_batching import batches, release
from shared.streams import raw_topic, stream_app

FAULT = os.environ.get("STALL_PROBE_FAULT", "")
FAULTY_PARTITION = 1

settings = get_settings()
configure_logging("stall-probe", "INFO", json=True)
app = stream_app(settings, f"{settings.topic_prefix}stall-probe", "memory", state_dir="stall-probe")
source = raw_topic(app, f"{settings.topic_prefix}stall-in")
copies = raw_topic(app, f"{settings.topic_prefix}stall-out")
faulted: set[Any] = set()


def lose(tp: Any) -> None:
    consumer: Any = app.consumer  # faust's private bookkeeping, as the fault needs it
    if FAULT == "read-offset":
        consumer._read_offset[tp] = 10**9
    elif FAULT == "fetch-set":
        consumer._get_active_partitions().discard(tp)
        consumer._buffered_partitions.add(tp)


@app.agent(source)
async def copy(stream: Any) -> None:
    async for events in batches(stream, 100, 0.05):
        pending = [await copies.send(key=e.key, value=e.value) for e in events]
        for fut in pending:
            await fut
        release(events)
        for event in events:
            tp = event.message.tp
            if tp.partition == FAULTY_PARTITION and tp not in faulted:
                faulted.add(tp)
                lose(tp)
