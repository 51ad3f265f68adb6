"""``python -m bench``: every benchmark against a baseline measured in the same run; one table, one JSON.

    .venv/bin/python -m bench                      # the full run (~12 minutes on 2 cores)
    .venv/bin/python -m bench --quick              # small sizes, a smoke run (< 1 minute for the cheap parts)
    .venv/bin/python -m bench --only memory escalation --out /tmp/bench

Parts: intake, tracking (throughput and recovery), e2e, sustained (alert latency under a 500 facts/s load),
memory, escalation, attendance, rebuild (from the log, extrapolated to the national year), reports (the web's
reports at LA size). Uses the broker named
by CME_KAFKA_BOOTSTRAP and the PostgreSQL named by CME_BENCH_DATABASE_URL; without them it starts the tests'
local broker (127.0.0.1:19092) and PostgreSQL (127.0.0.1:55433) as `make test` does, and stops them at the
end unless they were already running. Writes <out>/summary.json (default bench/results/).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from bench.common import Row, admin_url, log, scratch_database
from shared.settings import PROJECT_ROOT

RESULTS = PROJECT_ROOT / "bench" / "results"
PARTS = ("intake", "tracking", "e2e", "sustained", "memory", "escalation", "attendance", "rebuild", "reports")


@dataclass(frozen=True)
class Sizes:
    intake_seconds: float
    tracking_events: int
    recovery_children: list[int]
    e2e_children: int
    e2e_rate: float
    memory_pupils: int
    memory_million: bool
    due_sizes: tuple[int, int]
    due_repeat: int
    attendance_args: list[str]
    timeout_s: float
    rebuild_las: int = 4
    rebuild_pupils: int = 25_000
    reports_pupils: int = 150_000  # one LA: ~50,000 cases
    sustained: tuple[int, float] = (500, 60)  # facts/s, seconds


FULL = Sizes(
    intake_seconds=10,
    tracking_events=3000,
    recovery_children=[25_000, 50_000, 100_000],
    e2e_children=100,
    e2e_rate=2.0,
    memory_pupils=220_000,
    memory_million=True,
    due_sizes=(10_000, 1_000_000),
    due_repeat=200,
    attendance_args=[
        "--pupils",
        "1000",
        "--days",
        "20",
        "--engine-pupils",
        "3000",
        "--memory-pupils",
        "100000",
    ],
    timeout_s=900,
)
QUICK = Sizes(
    intake_seconds=2,
    tracking_events=100,
    recovery_children=[1_000],
    e2e_children=5,
    e2e_rate=2.0,
    memory_pupils=2_000,
    memory_million=False,
    due_sizes=(1_000, 10_000),
    due_repeat=20,
    attendance_args=[
        "--pupils",
        "100",
        "--days",
        "5",
        "--engine-pupils",
        "200",
        "--memory-pupils",
        "1000",
        "--term-days",
        "10",
    ],
    timeout_s=180,
    rebuild_las=1,
    rebuild_pupils=2_000,
    reports_pupils=2_000,
    sustained=(50, 5),
)


def _out() -> Path:
    """Where the colleagues' scripts write their JSON (``--out``, passed on to them by the environment)."""
    return Path(os.environ.get("CME_BENCH_RESULTS_DIR", RESULTS))


def _python(args: list[str], timeout_s: float) -> None:
    """Run one of the colleagues' benchmark scripts as it is run by hand (its own table goes to stderr)."""
    subprocess.run(  # noqa: S603 - our own modules
        [sys.executable, *args], cwd=PROJECT_ROOT, check=True, timeout=timeout_s, stdout=sys.stderr
    )


def part_intake(sizes: Sizes, workdir: Path) -> list[Row]:
    with scratch_database("intake") as url:
        _python(
            [
                "-m",
                "bench.intake",
                "--db",
                "postgres",
                "--database-url",
                url,
                "--seconds",
                str(sizes.intake_seconds),
            ],
            sizes.timeout_s,
        )
    result = orjson.loads((_out() / "intake.json").read_bytes())["postgres"]
    rows = []
    for mode, ratio in result["ratio_referral_to_bare"].items():
        ours = next(r for r in result["runs"] if r["mode"] == mode and r["target"] == "referral")
        bare = next(r for r in result["runs"] if r["mode"] == mode and r["target"] == "bare FastAPI")
        rows.append(
            Row(
                "intake",
                f"accepted events/s over HTTP, {mode} (PostgreSQL, {result['concurrency']} clients)",
                ours["events_per_s"],
                "events/s",
                "bare FastAPI endpoint",
                bare["events_per_s"],
                f"p99 {ours['p99_ms']} ms vs {bare['p99_ms']} ms; ratio {ratio}; cores: service "
                f"{ours.get('server_cores')}, bare {bare.get('server_cores')}, load generator "
                f"{ours.get('client_cores')} / {bare.get('client_cores')}",
                {"run": ours, "bare": bare},
            )
        )
    return rows


def part_tracking(sizes: Sizes, workdir: Path) -> list[Row]:
    from bench import tracking

    return tracking.run(workdir, sizes.tracking_events, sizes.recovery_children, sizes.timeout_s)


def part_e2e(sizes: Sizes, workdir: Path) -> list[Row]:
    from bench import e2e

    return e2e.run(workdir, sizes.e2e_children, sizes.e2e_rate, sizes.timeout_s)


def part_sustained(sizes: Sizes, workdir: Path) -> list[Row]:
    from bench import e2e_sustained

    rate, seconds = sizes.sustained
    return e2e_sustained.run(
        workdir, rate, seconds, alerts_per_s=10, urgent_every=5, timeout_s=sizes.timeout_s
    )


def part_memory(sizes: Sizes, workdir: Path) -> list[Row]:
    from bench import memory

    return memory.run(sizes.memory_pupils, sizes.memory_million)


def part_escalation(sizes: Sizes, workdir: Path) -> list[Row]:
    small, large = sizes.due_sizes
    env_url = {**os.environ, "CME_BENCH_DATABASE_URL": admin_url()}  # includes CME_BENCH_RESULTS_DIR
    subprocess.run(  # noqa: S603
        [
            sys.executable,
            "bench/escalation_due.py",
            "--sizes",
            str(small),
            str(large),
            "--repeat",
            str(sizes.due_repeat),
        ],
        cwd=PROJECT_ROOT,
        check=True,
        timeout=sizes.timeout_s * 2,
        stdout=sys.stderr,
        env=env_url,
    )
    result = orjson.loads((_out() / "escalation_due.json").read_bytes())
    rows = []
    for backend, r in result["backends"].items():
        rows.append(
            Row(
                "escalation",
                f"due-check, {large:,} open deadlines ({backend}), median",
                r["large"]["median_ms"],
                "ms",
                f"same query, {small:,} open",
                r["small"]["median_ms"],
                f"p95 {r['large']['p95_ms']} ms; index scan, cost follows what is due",
                r,
            )
        )
    return rows


def part_attendance(sizes: Sizes, workdir: Path) -> list[Row]:
    _python(["-m", "bench.attendance", *sizes.attendance_args], sizes.timeout_s * 2)
    result = orjson.loads((_out() / "attendance.json").read_bytes())
    base = result["baseline_raw_consume"]["per_second"]
    return [
        Row(
            "attendance",
            "marks/s, faust worker from Kafka (RocksDB)",
            round(result["faust_worker"]["per_second"]),
            "marks/s",
            "raw aiokafka consume + decode",
            round(base),
            f"national need {result['national']['marks_per_second_needed']:.0f} marks/s",
        ),
        Row(
            "attendance",
            "marks/s, pure engine in-process",
            round(result["pure_engine"]["per_second"]),
            "marks/s",
            "raw aiokafka consume + decode",
            round(base),
        ),
    ]


def part_rebuild(sizes: Sizes, workdir: Path) -> list[Row]:
    from bench import rebuild

    # One process (the rate per process, comparable run to run) and one per core (the national wall time on
    # this machine: the processes share the partitions out, docs/TRACKING.md "Rebuild from the log").
    rows = rebuild.run(workdir, sizes.rebuild_las, sizes.rebuild_pupils)
    cores = os.cpu_count() or 1
    if cores > 1:
        rows += rebuild.run(workdir, sizes.rebuild_las, sizes.rebuild_pupils, workers=min(cores, 4))
    return rows


def part_reports(sizes: Sizes, workdir: Path) -> list[Row]:
    from bench import reports

    return reports.run(workdir, sizes.reports_pupils)


RUNNERS: dict[str, Callable[[Sizes, Path], list[Row]]] = {
    "intake": part_intake,
    "tracking": part_tracking,
    "e2e": part_e2e,
    "sustained": part_sustained,
    "memory": part_memory,
    "escalation": part_escalation,
    "attendance": part_attendance,
    "rebuild": part_rebuild,
    "reports": part_reports,
}


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:,.4g}"


def table(rows: list[Row]) -> str:
    cells = ("part", "metric", "value", "unit", "baseline (same run)", "base", "ratio")
    header = "{:<11}{:<78}{:>12} {:<9}{:<44}{:>10}{:>9}".format(*cells)
    lines = [header, "-" * len(header)]
    for r in rows:
        lines.append(
            f"{r.part:<11}{r.metric[:77]:<78}{_fmt(r.value):>12} {r.unit:<9}{r.baseline[:43]:<44}"
            f"{_fmt(r.baseline_value):>10}{_fmt(r.ratio):>9}"
        )
    return "\n".join(lines)


@contextlib.contextmanager
def local_stack() -> Iterator[None]:
    """The tests' broker and PostgreSQL, started here unless the environment names others."""
    from tests.support import stack

    with contextlib.ExitStack() as started:
        if not os.environ.get("CME_KAFKA_BOOTSTRAP"):
            os.environ["CME_KAFKA_BOOTSTRAP"] = started.enter_context(stack.kafka_bootstrap())
        if not os.environ.get("CME_BENCH_DATABASE_URL"):
            _, cluster = started.enter_context(stack.postgres())
            if cluster is not None:
                os.environ["CME_BENCH_DATABASE_URL"] = cluster.url.rsplit("/", 1)[0] + "/postgres"
        yield


def main(argv: list[str] | None = None) -> int:
    with local_stack():
        return run(argv)


def run(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run")
    parser.add_argument("--only", nargs="+", choices=PARTS, help="run only these parts")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where summary.json goes")
    args = parser.parse_args(argv)
    os.environ["CME_BENCH_RESULTS_DIR"] = str(args.out.resolve())  # the part scripts write there too
    sizes = QUICK if args.quick else FULL
    workdir = Path(tempfile.mkdtemp(prefix="cme-bench-"))
    rows: list[Row] = []
    errors: dict[str, str] = {}
    timings: dict[str, float] = {}
    for name in args.only or PARTS:
        log(f"--- {name}")
        started = time.perf_counter()
        try:
            rows += RUNNERS[name](sizes, workdir)
        except Exception as exc:  # one broken part must not lose the others' numbers; reported and exit 1
            errors[name] = f"{type(exc).__name__}: {exc}"
            log(f"{name} failed: {errors[name]}")
        timings[name] = round(time.perf_counter() - started, 1)
    print(table(rows))
    for name, error in errors.items():
        print(f"FAILED {name}: {error}")
    summary: dict[str, Any] = {
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "mode": "quick" if args.quick else "full",
        "sizes": sizes.__dict__,
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "part_seconds": timings,
        "rows": [r.as_dict() for r in rows],
        "errors": errors,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    out = args.out / "summary.json"
    out.write_bytes(orjson.dumps(summary, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY))
    print(f"wrote {out}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
