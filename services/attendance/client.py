"""Direct Kafka intake for a school's MIS or its data processor: validate marks, produce them keyed by UPN.

    from services.attendance.client import AttendanceClient
    with AttendanceClient(settings) as client:
        client.send_rows([{"upn": ..., "school_urn": ..., "la_code": ..., "date": "2025-01-07",
                           "session": "AM", "code": "N", "recorded_at": "2025-01-07T09:05:00Z"}])

Command line: ``python -m services.attendance.client marks.csv`` (or ``.json``), with the CME_ Kafka settings.
The producer is idempotent with acks=all; ``send`` returns only once the broker has acknowledged every mark.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType
from typing import Any

from kafka import KafkaProducer

from services.attendance.intake import RowError, parse_rows, rows_from_csv, rows_from_json
from shared.events.attendance import AttendanceMark
from shared.events.catalogue import encode_event
from shared.kafka import kafka_python_config
from shared.settings import Settings, get_settings
from shared.topics import ATTENDANCE


class InvalidMarks(ValueError):
    def __init__(self, errors: list[RowError]) -> None:
        super().__init__(f"{len(errors)} invalid field(s); first: {errors[0] if errors else None}")
        self.errors = errors


class AttendanceClient:
    def __init__(self, settings: Settings, producer: KafkaProducer | None = None) -> None:
        self.topic = ATTENDANCE.name(settings)
        self.producer = producer or KafkaProducer(
            acks="all", enable_idempotence=True, linger_ms=20, **kafka_python_config(settings)
        )

    def send(self, marks: Iterable[AttendanceMark], timeout_s: float = 60.0) -> int:
        """Produce validated marks keyed by UPN; raises if the broker does not acknowledge every one."""
        futures = [
            self.producer.send(self.topic, key=m.payload.upn.encode(), value=encode_event(m)) for m in marks
        ]
        self.producer.flush(timeout=timeout_s)
        for future in futures:
            future.get(timeout=timeout_s)
        return len(futures)

    def send_rows(self, rows: list[Any]) -> int:
        """Validate rows (flat, or full envelopes) with the shared schema; none is sent if any is invalid."""
        marks, errors = parse_rows(rows)
        if errors:
            raise InvalidMarks(errors)
        return self.send(marks)

    def close(self) -> None:
        self.producer.close()

    def __enter__(self) -> AttendanceClient:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="cme-attendance-send", description="Send attendance marks to Kafka")
    parser.add_argument("file", type=Path, help="a .csv or .json file of marks")
    args = parser.parse_args(argv)
    body = args.file.read_bytes()
    rows = rows_from_csv(body) if args.file.suffix.lower() == ".csv" else rows_from_json(body)
    try:
        with AttendanceClient(get_settings()) as client:
            sent = client.send_rows(rows)
    except InvalidMarks as exc:
        for err in exc.errors:
            print(f"row {err['row']} field {err['field']}: {err['error']}", file=sys.stderr)
        return 1
    print(f"sent {sent} marks")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
