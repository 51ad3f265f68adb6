"""Profile of the pure state machine in-process (issue 21): the two loops ``bench.memory.apply_events`` times
over one synthetic LA's year (decode alone; decode, ``apply_child_fact`` and the record's JSON),
under cProfile, by total and by cumulative time. Also their ratio, timed without the profiler, ``--runs``
times in turn.

    .venv/bin/python -m bench.profile_state_machine [--pupils 20000] [--top 25] [--runs 3] [--no-profile]
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import statistics

from bench.memory import apply_events
from devtools.synthetic import generate


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pupils", type=int, default=20_000)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--runs", type=int, default=3, help="timed runs (no profiler) for the ratio")
    parser.add_argument("--no-profile", action="store_true")
    args = parser.parse_args()
    events = generate(las=1, pupils_per_la=args.pupils, seed=21).events
    decode: list[float] = []
    applied: list[float] = []
    for _ in range(args.runs):
        _, rates = apply_events(events, args.pupils)
        decode.append(rates["decode_per_s"])
        applied.append(rates["apply_per_s"])
        print(
            f"{rates['events']} events: decode {decode[-1]:,.0f}/s, "
            f"decode + apply + JSON {applied[-1]:,.0f}/s, ratio {applied[-1] / decode[-1]:.3f}"
        )
    if args.runs:
        # On a loaded machine the best pass of each loop is the least disturbed one.
        ratios = sorted(a / d for a, d in zip(applied, decode, strict=True))
        print(
            f"ratio of the best rates {max(applied) / max(decode):.3f}; per pass min "
            f"{ratios[0]:.3f}, median {statistics.median(ratios):.3f}, max {ratios[-1]:.3f}"
        )
    if args.no_profile:
        return
    profile = cProfile.Profile()
    profile.enable()
    apply_events(events, args.pupils)
    profile.disable()
    stats = pstats.Stats(profile)
    for order in ("tottime", "cumulative"):
        print(f"\n--- by {order} ---")
        stats.sort_stats(order).print_stats(args.top)


if __name__ == "__main__":
    main()
