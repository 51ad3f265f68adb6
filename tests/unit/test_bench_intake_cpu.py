"""The intake benchmark's CPU columns: each run reports what the server process and the load generator used,
so a rate bounded by the load generator (near a whole core) is read as the generator's, not the server's."""

from __future__ import annotations

import os
import sys
import time

from bench.intake import Run, measured, process_cpu_s


def _run(seconds: float = 2.0, accepted: int = 1000) -> Run:
    return Run("referral", "single", seconds, 10, accepted, accepted / seconds, 1.0, 2.0, 0)


def test_a_process_cpu_is_read_from_proc_and_an_unknown_process_has_none() -> None:
    if not sys.platform.startswith("linux"):
        assert process_cpu_s(os.getpid()) is None
        return
    before = process_cpu_s(os.getpid())
    deadline = time.process_time() + 0.05
    while time.process_time() < deadline:
        pass
    after = process_cpu_s(os.getpid())
    assert before is not None and after is not None and after > before
    assert process_cpu_s(2**22 + 12345) is None  # above Linux's largest pid


def test_a_run_carries_the_cpu_used_during_it_and_slices_add_up() -> None:
    def busy() -> Run:
        deadline = time.process_time() + 0.05
        while time.process_time() < deadline:
            pass
        return _run()

    run = measured(os.getpid(), busy)  # the server here is this process: both sides see the same work
    assert run.client_cpu_s >= 0.05
    if run.server_cpu_s is not None:
        assert run.server_cpu_s >= 0.04  # /proc counts in clock ticks (10 ms)
    one = _run()
    one.server_cpu_s, one.client_cpu_s = 1.0, 2.0
    two = _run()
    two.server_cpu_s, two.client_cpu_s = 0.6, 1.0
    merged = one.merged(two)
    assert (merged.server_cpu_s, merged.client_cpu_s) == (1.6, 3.0)
    assert (merged.server_cores, merged.client_cores) == (0.4, 0.75)
    assert merged.server_us_per_event == 800.0
    two.server_cpu_s = None
    assert one.merged(two).server_cpu_s is None and one.merged(two).server_us_per_event is None
