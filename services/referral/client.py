"""For MIS integrations that prefer the bus: validate locally with the referral service's own rules and
produce the same envelope onto the intake topic (or its urgent lane, ``shared.events.urgency``, as the API
does), with the school's Kafka credentials (``CME_KAFKA_*``).

Library::

    with IntakeProducer(Settings(), la_code="801", school_urn="108000", system="SIMS") as producer:
        results = producer.send([event_dict, ...])

CLI::

    python -m services.referral.client send --file events.jsonl --la 801 --urn 108000 --system SIMS

The producer is idempotent with acks=all; the event_id is the idempotency key downstream (tracking ignores an
event_id it has seen), so re-sending a file after a failure is safe.
"""

from __future__ import annotations

import argparse
import sys
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

import orjson
from kafka import KafkaProducer

from services.referral.models import ClientKind, Problem
from services.referral.service import partition_key
from services.referral.validation import Scope, parse_event, scope_problems, service_rule_problems
from shared.events.envelope import Envelope, utcnow
from shared.kafka import kafka_python_config
from shared.settings import Settings
from shared.topics import intake_for


@dataclass
class SendResult:
    index: int
    event_id: str | None
    ok: bool
    problems: list[Problem] = field(default_factory=list)


class IntakeProducer:
    def __init__(
        self, settings: Settings, *, la_code: str, school_urn: str | None = None, system: str = "mis"
    ) -> None:
        self.settings = settings
        self.scope = Scope(
            kind=ClientKind.SCHOOL if school_urn else ClientKind.AGENCY,
            la_code=la_code,
            school_urn=school_urn,
        )
        self.system = system
        self.client_id = f"kafka:{settings.kafka_sasl_username}" if settings.kafka_sasl_username else None
        self._producer: KafkaProducer | None = None

    def prepare(
        self, data: dict[str, Any], now: datetime | None = None
    ) -> tuple[Envelope | None, list[Problem]]:
        """Stamp the source from this client's configuration, then run the service's checks."""
        data = dict(data)
        data.setdefault("event_id", str(uuid.uuid4()))
        source = data.get("source")
        given: dict[str, Any] = source if isinstance(source, dict) else {}
        data["source"] = {
            "system": given.get("system") or self.system,
            "la_code": self.scope.la_code,
            "school_urn": self.scope.school_urn,
            "client_id": self.client_id,
        }
        data["recorded_at"] = utcnow().isoformat()
        event, problems = parse_event(data)
        if event is None:
            return None, problems
        problems = scope_problems(event, self.scope) + service_rule_problems(event, now or datetime.now(UTC))
        return (None, problems) if problems else (event, [])

    def _kafka(self) -> KafkaProducer:
        if self._producer is None:
            self._producer = KafkaProducer(
                acks="all", enable_idempotence=True, linger_ms=5, **kafka_python_config(self.settings)
            )
        return self._producer

    def send(self, items: Iterable[dict[str, Any]], timeout_s: float = 30.0) -> list[SendResult]:
        """Validate every item; produce the valid ones and wait for the broker's acknowledgement of each."""
        results: list[SendResult] = []
        pending: list[tuple[SendResult, Any]] = []
        for index, item in enumerate(items):
            event, problems = self.prepare(item)
            result = SendResult(
                index=index, event_id=str(event.event_id) if event else None, ok=False, problems=problems
            )
            results.append(result)
            if event is not None:
                future = self._kafka().send(
                    intake_for(event).name(self.settings),  # the urgent lane or the ordinary one
                    key=partition_key(event).encode(),
                    value=event.model_dump_json().encode(),
                )
                pending.append((result, future))
        for result, future in pending:
            try:
                future.get(timeout=timeout_s)
                result.ok = True
            except Exception as exc:  # the broker refused or timed out: report, the caller may retry
                result.problems.append(
                    Problem(field="kafka", rule="not_acknowledged", message=type(exc).__name__)
                )
        return results

    def close(self) -> None:
        if self._producer is not None:
            self._producer.flush()
            self._producer.close()
            self._producer = None

    def __enter__(self) -> IntakeProducer:
        return self

    def __exit__(self, *_: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.close()


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    lines = path.read_text(encoding="utf-8").splitlines()
    return [orjson.loads(line) for line in lines if line.strip()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m services.referral.client", description=__doc__.split("\n\n")[0]
    )
    sub = parser.add_subparsers(dest="command", required=True)
    send = sub.add_parser("send", help="validate and produce the events of a JSON-lines file")
    send.add_argument("--file", type=Path, required=True, help="one event a line (JSON)")
    send.add_argument("--la", required=True, help="the LA this client sends for (3-digit DfE number)")
    send.add_argument("--urn", help="the school's URN (school integrations)")
    send.add_argument("--system", default="mis", help="the sending system's name, e.g. SIMS")
    send.add_argument("--check", action="store_true", help="validate only; produce nothing")
    args = parser.parse_args(argv)
    try:
        items = _read_jsonl(args.file)
    except (OSError, orjson.JSONDecodeError) as exc:
        print(f"error: cannot read {args.file}: {exc}", file=sys.stderr)
        return 2
    with IntakeProducer(Settings(), la_code=args.la, school_urn=args.urn, system=args.system) as producer:
        if args.check:
            results = []
            for i, item in enumerate(items):
                event, problems = producer.prepare(item)
                results.append(
                    SendResult(i, str(event.event_id) if event else None, event is not None, problems)
                )
        else:
            results = producer.send(items)
    for r in results:
        line = {
            "line": r.index + 1,
            "event_id": r.event_id,
            "ok": r.ok,
            "errors": [p.model_dump() for p in r.problems],
        }
        print(orjson.dumps(line).decode())
    return 0 if all(r.ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
