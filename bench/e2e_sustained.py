"""Latency under sustained load (issue 21): from the referral API's 2xx to the alert's SMTP receipt while a
bulk load runs through the same pipeline, routine and urgent alerts apart.

All services run as processes (referral, tracking, escalation, notify), as in ``bench/e2e.py``. For
``seconds`` the sender keeps ``rate`` facts a second going into the referral API, of three kinds, each about a
child of its own:

- bulk: pupil-registered facts in batches, a school loading its roll (tracking resolves and folds each one; no
  case opens, no alert);
- routine: single whereabouts-unknown facts from the LA's CME team (a case in whereabouts_unknown: the
  caseworker's immediate alert);
- urgent: the same with a safeguarding concern (children's social care and the police at once, as well).

A routine latency is the caseworker's first email about the case after the fact's 2xx; an urgent one the later
of the social care and police emails. The urgent alerts must not queue behind the bulk load: their latency is
printed apart. The drain is how long tracking took, after the last 2xx, to resolve every fact sent.

Baseline, same run: five raw Kafka hops (the alert's path is intake, child-events, case-transitions,
escalations and notify's publish), as in the e2e part.

    .venv/bin/python -m bench --only sustained                 # 500 facts/s for 60 s
    .venv/bin/python -m bench.e2e_sustained --rate 100 --seconds 10
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
from sqlalchemy import text

from bench import pipeline_lags, urgent_hops, whereabouts
from bench.common import Row, log, percentile, wait_for
from bench.e2e import HOPS, LA, Mailbox, Pipeline, raw_hops, running_pipeline
from bench.pipeline_lags import LagSampler, histogram_means
from devtools.samples import child, make_upn, sample_event_dict
from devtools.synthetic import FORENAMES, SURNAMES
from services.escalation.timesource import write_time_file
from shared.case_ids import case_id_for
from shared.db import make_engine

BATCHES_PER_S = 10  # the bulk goes in as ten batches a second
CASEWORKER, SOCIAL_CARE, POLICE = "caseworker@la.test", "mash@la.test", "police@la.test"
BULK_ESTAB, ALERT_ESTAB = 2000, 6000  # UPN ranges that keep the bulk and the alerted children apart
# Escalation's clock starts where bench/e2e.py left it (a Tuesday in term; time never moves backwards).
CLOCK_START = datetime(2025, 11, 4, 12, 0, tzinfo=UTC)


class RunningClock:
    """Escalation's simulated time, running with real time: each fact happens at the moment it is sent, as on
    a live feed. (On a clock that stands still, facts from before it are a backlog by definition: escalation
    holds their alerts until the load has stopped, docs/ESCALATION.md.)"""

    def __init__(self, path: Path, every_s: float = 0.1) -> None:
        self._path, self._every_s = path, every_s
        self._t0 = time.perf_counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="clock", daemon=True)

    def now(self) -> datetime:
        return CLOCK_START + timedelta(seconds=time.perf_counter() - self._t0)

    def __enter__(self) -> RunningClock:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while True:
            write_time_file(self._path, self.now())
            if self._stop.wait(self._every_s):
                return


@dataclass
class Sent:
    """What the sender managed: 2xx times of the alerting facts by event id, and the counts."""

    routine: dict[str, float] = field(default_factory=dict)
    urgent: dict[str, float] = field(default_factory=dict)
    bulk: int = 0
    refused: int = 0
    failures: list[BaseException] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def _sender(sent: Sent, target: Callable[..., None], *args: Any) -> threading.Thread:
    """A sender thread whose failure ends the measurement (a thread's exception is otherwise only printed)."""

    def body() -> None:
        try:
            target(*args)
        except BaseException as exc:
            with sent.lock:
                sent.failures.append(exc)

    return threading.Thread(target=body)


# A real LA's surnames: a few common ones (devtools.synthetic's 30, each ~0.7% of the children here, like
# England's commonest) and a long tail. Identity resolution compares a fact with the children of its surname
# and birth year: with the 30 names alone (``--common-names``, the worst case) each such block held ~40x a
# real LA's, and identity's cost grew with it.
NAME_TAILS = (
    *("ton", "ley", "ford", "wood", "field", "worth", "by", "ham", "well", "stone"),
    *("bridge", "more", "dale", "cott", "lock", "ridge", "hurst", "combe", "bury", "wick"),
)
LONG_TAIL = tuple(f"{name}{tail}" for name in SURNAMES for tail in NAME_TAILS)  # 600 rarer surnames


def _surname(i: int, estab: int, common_names: bool) -> str:
    if common_names or (i * 31 + estab) % 5 == 0:  # a fifth of the children share the 30 common names
        return SURNAMES[(i * 31 + estab) % len(SURNAMES)]
    return LONG_TAIL[(i * 7919 + estab) % len(LONG_TAIL)]


def _kid(estab: int, i: int, common_names: bool = False) -> dict[str, Any]:
    """A child of its own, with names and a date of birth spread as an LA's are: identity resolution looks
    for candidates by surname and date of birth, so children who all shared both made every fact compare
    with every child before it (tracking fell to ~12 facts/s at 18,000 children)."""
    upn = make_upn(LA, estab + i // 999, 14, i % 999 + 1)
    born = date(2008, 9, 1) + timedelta(days=(i * 7919 + estab) % 4800)  # aged 4 to 17, scattered
    return child(
        i % 999 + 1,
        LA,
        upn=upn,
        forename=FORENAMES[(i + estab) % len(FORENAMES)],
        surname=_surname(i, estab, common_names),
        date_of_birth=born.isoformat(),
    )


def _fact(event_type: str, kid: dict[str, Any], clock: RunningClock, **source: Any) -> dict[str, Any]:
    event = sample_event_dict(event_type, kid=kid, la_code=LA, **source)
    event["occurred_at"] = clock.now().isoformat()
    return event


def _send_bulk(
    pipeline: Pipeline,
    clock: RunningClock,
    per_batch: int,
    seconds: float,
    started: float,
    sent: Sent,
    common_names: bool,
) -> None:
    headers = {"Authorization": f"Bearer {pipeline.school_key}", "Content-Type": "application/json"}
    serial = 0
    with httpx.Client(base_url=pipeline.url, headers=headers, timeout=60) as school:
        for tick in range(int(seconds * BATCHES_PER_S)):
            time.sleep(max(0.0, started + tick / BATCHES_PER_S - time.perf_counter()))
            events = []
            for _ in range(per_batch):
                events.append(_fact("pupil-registered", _kid(BULK_ESTAB, serial, common_names), clock))
                serial += 1
            response = school.post("/v1/events/batch", content=orjson.dumps({"events": events}))
            response.raise_for_status()
            body = response.json()
            with sent.lock:
                sent.bulk += body["accepted"]
                sent.refused += body["rejected"] + body["duplicates"]


def _send_alerting(
    pipeline: Pipeline,
    clock: RunningClock,
    per_s: int,
    urgent_every: int,
    seconds: float,
    started: float,
    sent: Sent,
    common_names: bool,
) -> None:
    headers = {"Authorization": f"Bearer {pipeline.team_key}"}
    with httpx.Client(base_url=pipeline.url, headers=headers, timeout=60) as team:
        for i in range(int(seconds * per_s)):
            time.sleep(max(0.0, started + i / per_s - time.perf_counter()))
            event = _fact("whereabouts-unknown", _kid(ALERT_ESTAB, i, common_names), clock, school_urn=None)
            urgent = urgent_every > 0 and i % urgent_every == 0
            event["payload"]["safeguarding_concern"] = urgent
            team.post("/v1/events", json=event).raise_for_status()
            with sent.lock:
                (sent.urgent if urgent else sent.routine)[event["event_id"]] = time.perf_counter()


def _first_emails(
    box: Mailbox, case_of: dict[str, str], sent_at: dict[str, float], recipients: set[str]
) -> dict[tuple[str, str], float]:
    """(case, recipient) -> that recipient's first email about the case after its fact's 2xx (receipt)."""
    first: dict[tuple[str, str], float] = {}
    for received_at, case_id, rcpts in box.snapshot():
        for rcpt in rcpts.split(","):
            event_id = case_of.get(case_id)
            if event_id in sent_at and rcpt in recipients and received_at >= sent_at[event_id]:
                first.setdefault((case_id, rcpt), received_at)
    return first


def _latencies(
    box: Mailbox, case_of: dict[str, str], sent_at: dict[str, float], recipients: set[str]
) -> list[float]:
    """Per alerting fact: the time from its 2xx to the last of ``recipients``' first emails about its case."""
    first = _first_emails(box, case_of, sent_at, recipients)
    out = []
    for case_id, event_id in case_of.items():
        if event_id in sent_at and all((case_id, r) in first for r in recipients):
            out.append(max(first[(case_id, r)] for r in recipients) - sent_at[event_id])
    return sorted(out)


def _unmatched(
    box: Mailbox, case_of: dict[str, str], sent_at: dict[str, float], recipients: set[str]
) -> list[str]:
    """The alerting facts some of whose ``recipients`` have no email about the case yet (unresolved ones
    too)."""
    first = _first_emails(box, case_of, sent_at, recipients)
    done = {e for c, e in case_of.items() if all((c, r) in first for r in recipients)}
    return [event_id for event_id in sent_at if event_id not in done]


def run(
    workdir: Path,
    rate: int,
    seconds: float,
    alerts_per_s: int,
    urgent_every: int,
    timeout_s: float,
    common_names: bool = False,
) -> list[Row]:
    bulk_per_batch = max(0, (rate - alerts_per_s) // BATCHES_PER_S)
    box = Mailbox()
    sent = Sent()
    with (
        running_pipeline(workdir, box, "sustained") as pipeline,
        RunningClock(pipeline.clock) as clock,
        LagSampler(pipeline.settings, pipeline.escalation_url) as lags,
    ):
        log(
            f"sustained: {rate} facts/s for {seconds:g} s"
            f" ({alerts_per_s}/s alerting, 1 in {urgent_every} urgent)"
        )
        started = time.perf_counter() + 0.5
        # The 2xx times as wall clock, to compare with Kafka's timestamps.
        wall_offset = time.time() - time.perf_counter()
        senders = [
            _sender(sent, _send_bulk, pipeline, clock, bulk_per_batch, seconds, started, sent, common_names),
            _sender(
                sent,
                _send_alerting,
                pipeline,
                clock,
                alerts_per_s,
                urgent_every,
                seconds,
                started,
                sent,
                common_names,
            ),
        ]
        for sender in senders:
            sender.start()
        for sender in senders:
            sender.join()
        if sent.failures:
            failure = sent.failures[0]
            detail = failure.response.text[:500] if isinstance(failure, httpx.HTTPStatusError) else ""
            raise RuntimeError(f"a sender failed: {failure!r} {detail}") from failure
        last_2xx = time.perf_counter()
        offered = sent.bulk + sent.refused + len(sent.routine) + len(sent.urgent)
        achieved = offered / (last_2xx - started)
        engine = make_engine(pipeline.database_url)
        total = sent.bulk + len(sent.routine) + len(sent.urgent)

        def resolved() -> int:
            with engine.connect() as conn:
                return int(conn.execute(text("SELECT count(*) FROM tracking_resolutions")).scalar() or 0)

        wait_for(lambda: resolved() >= total, timeout_s)
        drain = time.perf_counter() - last_2xx
        with engine.connect() as conn:
            resolutions = conn.execute(
                text("SELECT event_id, child_id FROM tracking_resolutions WHERE event_id = ANY(:ids)"),
                {"ids": [*sent.routine, *sent.urgent]},
            ).all()
        engine.dispose()
        case_of = {case_id_for(str(child_id), LA): str(event_id) for event_id, child_id in resolutions}

        def measured() -> tuple[list[float], list[float]]:
            return (
                _latencies(box, case_of, sent.routine, {CASEWORKER}),
                _latencies(box, case_of, sent.urgent, {SOCIAL_CARE, POLICE}),
            )

        def all_delivered() -> bool:
            routine, urgent = measured()
            return len(routine) >= len(sent.routine) and len(urgent) >= len(sent.urgent)

        try:
            wait_for(all_delivered, timeout_s)
        except TimeoutError:
            log("sustained: not every alert arrived in time; the table says how many were matched")
            missing = _unmatched(box, case_of, sent.routine, {CASEWORKER}) + _unmatched(
                box, case_of, sent.urgent, {SOCIAL_CARE, POLICE}
            )
            log(whereabouts.report(pipeline.database_url, missing, LA))
        routine, urgent = measured()
        per_hop = urgent_hops.hops(
            pipeline.settings,
            {event_id: (at + wall_offset) * 1000 for event_id, at in sent.urgent.items()},
            {str(event_id): str(child_id) for event_id, child_id in resolutions},
            pipeline.database_url,
        )
        log(f"sustained: urgent alerts' hops: {urgent_hops.summary(per_hop)}")
        where = _where_the_time_went(pipeline)
        for what, means in where.items():
            log(f"sustained: {what}: {pipeline_lags.summary(means)}")
    hop = raw_hops(workdir)
    load = f"{rate} facts/s for {seconds:g} s"
    rows_out = [
        Row(
            "sustained",
            f"offered facts/s ({load})",
            round(achieved, 1),
            "facts/s",
            "target rate",
            rate,
            f"{sent.bulk} bulk, {sent.refused} refused,"
            f" {len(sent.routine)} routine, {len(sent.urgent)} urgent",
        ),
        Row(
            "sustained",
            f"tracking drain after the last 2xx ({load})",
            round(drain, 1),
            "s",
            extra={"lags": [sample.as_dict() for sample in lags.samples]},
        ),
    ]
    for name, values, count in (
        ("routine (caseworker)", routine, sent.routine),
        ("urgent (social care + police)", urgent, sent.urgent),
    ):
        for q in (0.5, 0.95, 0.99):
            rows_out.append(
                Row(
                    "sustained",
                    f"API 2xx -> SMTP, {name}, p{int(q * 100)} ({load})",
                    round(percentile(values, q) * 1000) if values else -1,
                    "ms",
                    f"{HOPS} x raw Kafka hop p{int(q * 100)}",
                    round(percentile(hop, q) * HOPS * 1000, 1),
                    f"{len(values)} of {len(count)} matched",
                )
            )
    rows_out.append(
        Row(
            "sustained",
            f"urgent alert, per hop to the escalation record, p50 ({load})",
            round(
                sum(
                    percentile(sorted(v), 0.5)
                    for hop, v in per_hop.items()
                    if v and hop in urgent_hops.END_TO_END
                )
            ),
            "ms",
            note=urgent_hops.summary(per_hop),
            extra={"hops_ms": {name: sorted(v) for name, v in per_hop.items()}, "means": where},
        )
    )
    return rows_out


def _where_the_time_went(pipeline: Pipeline) -> dict[str, dict[str, dict[str, float]]]:
    """Means of the services' own timings over the run: escalation's units of work (waiting for their
    turn, holding it), the age of the records its consumers fetched, and tracking's sends (the producer
    and the broker) and processing per agent."""
    urls = [url for url in (pipeline.escalation_url, pipeline.urgent_url) if url]  # both roles' processes
    escalation = "\n".join(httpx.get(f"{url}/metrics", timeout=5).text for url in urls)
    tracking = httpx.get(f"{pipeline.tracking_url}/metrics", timeout=5).text
    wanted = {
        "escalation, waiting for a turn": (escalation, "cme_escalation_unit_of_work_wait_seconds", "by"),
        "escalation, holding a turn": (escalation, "cme_escalation_unit_of_work_seconds", "by"),
        "escalation, age of a fetched record": (escalation, "cme_consumer_record_age_seconds", "consumer"),
        "tracking, a batch's sends to their acks": (tracking, "cme_tracking_send_seconds", "agent"),
        "tracking, per record processed": (tracking, "cme_tracking_processing_seconds", "agent"),
    }
    return {what: histogram_means(*args) for what, args in wanted.items()}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rate", type=int, default=500, help="facts a second, all kinds (default 500)")
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--alerts-per-s", type=int, default=10, help="alerting facts a second (default 10)")
    parser.add_argument(
        "--urgent-every", type=int, default=5, help="1 alerting fact in N is urgent (default 5)"
    )
    parser.add_argument("--timeout", type=float, default=900)
    parser.add_argument(
        "--common-names",
        action="store_true",
        help="every child named from the 30 common surnames (the worst case for identity resolution)",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="cme-bench-") as tmp:
        for row in run(
            Path(tmp),
            args.rate,
            args.seconds,
            args.alerts_per_s,
            args.urgent_every,
            args.timeout,
            args.common_names,
        ):
            ratio = f"  x{row.ratio}" if row.ratio is not None else ""
            print(
                f"{row.metric}: {row.value} {row.unit}"
                f"  [{row.baseline} {row.baseline_value}]{ratio}  {row.note}"
            )


if __name__ == "__main__":
    main()
