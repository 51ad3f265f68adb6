"""Micro-benchmark of ``shared.events.catalogue.decode_inbound`` (issue 21): CPU per event on one synthetic
LA's year of inbound events (``devtools.synthetic``), from dicts (as the referral API's batch check and the
workers' consumers see them) and from JSON bytes. Best of ``--runs``, timed with the process CPU clock.

    .venv/bin/python -m bench.decode_inbound [--pupils 5000] [--runs 5] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import time
from collections.abc import Callable
from typing import Any

import orjson

from devtools.synthetic import generate
from shared.events import decode_inbound


def per_event_us(events: list[Any], decode: Callable[[Any], object], runs: int) -> float:
    best = float("inf")
    for _ in range(runs):
        started = time.process_time()
        for event in events:
            decode(event)
        best = min(best, time.process_time() - started)
    return best / len(events) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pupils", type=int, default=5_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--profile", action="store_true", help="cProfile one pass over the dicts")
    parser.add_argument("--top", type=int, default=20)
    args = parser.parse_args()
    dicts = generate(las=1, pupils_per_la=args.pupils, seed=21).events
    blobs = [orjson.dumps(event) for event in dicts]
    for event in dicts[:50]:
        decode_inbound(event)  # warm (the adapter is built on first use)
    if args.profile:
        profile = cProfile.Profile()
        profile.enable()
        for event in dicts:
            decode_inbound(event)
        profile.disable()
        pstats.Stats(profile).sort_stats("tottime").print_stats(args.top)
    from_dict = per_event_us(dicts, decode_inbound, args.runs)
    from_json = per_event_us(blobs, decode_inbound, args.runs)
    print(
        f"decode_inbound, {len(dicts)} events, best of {args.runs}: "
        f"{from_dict:.2f} us an event from a dict, {from_json:.2f} us from JSON bytes"
    )


if __name__ == "__main__":
    main()
