"""When CPython's cyclic garbage collector looks at what, for the two shapes of process here.

**A service** (a faust worker, an API): what exists once it has started (modules, pydantic and SQLAlchemy
schemas, the validators' tables, the app) lives as long as the process, yet every full collection traverses it
again. ``freeze_startup_heap`` moves it out of the collector's view once, just before the process starts its
work. The tracking worker, ``python -m bench.tracking --events 10000``, runs alternated: 566-655 events/s as
it was, 655-730 with the heap frozen (docs/PERFORMANCE.md). Collecting less often as well (thresholds of
20,000 instead of 700) gave 760-786, but it also delays the release of whatever only the collector frees, by
minutes in an idle worker; a clean-clone CI run then saw a restarted tracking worker stop after its first
fact (not explained, not reproduced in 6 runs here), so the thresholds stay CPython's.

**A batch loop that keeps a growing heap** (the rebuild's record of every child). CPython's automatic
collections run every 700 allocations and, as the heap of long-lived objects grows, re-scan more and more of
it: in the rebuild they took about a third of the wall time (21,673 facts: 7.1-7.3 s with them, 4.5 s with
none; docs/PERFORMANCE.md, "Rebuild from the log"). Here they are off for the loop, and after each batch one
full collection takes the batch's cyclic garbage, then what survived is frozen (``gc.freeze``): the next
collection scans only what the next batch made, so the work is proportional to the batch, and memory stays
bounded (a batch's cycles live until its end, no longer).
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator
from contextlib import contextmanager


def freeze_startup_heap() -> None:
    """Collect once, then leave everything alive now out of later collections (it still frees by reference
    count; only a cycle among these objects that later becomes garbage is kept)."""
    gc.collect()
    gc.freeze()


def _collect_batch() -> None:
    gc.collect()
    gc.freeze()


@contextmanager
def collected_per_batch() -> Iterator[Callable[[], None]]:
    """Automatic collection off inside; call what it yields after each batch. On leaving, automatic collection
    is as it was. What the batches froze stays frozen (no partial ``gc.unfreeze`` exists, and a full one would
    also thaw a service's ``freeze_startup_heap``): it is still freed by reference count when dropped."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield _collect_batch
    finally:
        if enabled:
            gc.enable()
