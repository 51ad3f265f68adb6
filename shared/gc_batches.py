"""Garbage collection for a batch loop that keeps a growing heap (the rebuild's record of every child).

CPython's automatic collections run every 700 allocations and, as the heap of long-lived objects grows,
re-scan more and more of it: in the rebuild they took about a third of the wall time (21,673 facts: 7.1-7.3 s
with them, 4.5 s with none; docs/PERFORMANCE.md, "Rebuild from the log"). Here they are off for the loop, and
after each batch one full collection takes the batch's cyclic garbage, then what survived is frozen
(``gc.freeze``): the next collection scans only what the next batch made, so the work is proportional to the
batch, and memory stays bounded (a batch's cycles live until its end, no longer).
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator
from contextlib import contextmanager


def _collect_batch() -> None:
    gc.collect()
    gc.freeze()


@contextmanager
def collected_per_batch() -> Iterator[Callable[[], None]]:
    """Automatic collection off inside; call what it yields after each batch. On leaving, collection is as it
    was and the frozen objects go back to the oldest generation (a later full collection sees them again)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield _collect_batch
    finally:
        gc.unfreeze()
        if enabled:
            gc.enable()
