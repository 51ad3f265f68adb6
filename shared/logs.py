"""structlog JSON logging with correlation ids, and a last line of defence against personal data in logs."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import MutableMapping
from typing import Any

import orjson
import structlog

# Keys that may carry a child's or a family's personal data: never written to a log line.
PERSONAL_KEYS = frozenset(
    {
        "forename", "surname", "name", "full_name", "date_of_birth", "dob", "upn", "former_upn", "uln",
        "nhs_number", "postcode", "address", "email", "phone", "note", "concern", "child", "payload",
        "la_child_id", "password", "api_key", "token",
    }
)  # fmt: skip
REDACTED = "[redacted]"


def redact_personal_data(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key in list(event_dict):
        if key.lower() in PERSONAL_KEYS:
            event_dict[key] = REDACTED
    return event_dict


def _dumps(obj: Any, default: Any = None) -> str:
    # JSON allows raw U+2028/U+2029 in strings, but some log viewers and shippers break lines on them: escape
    # them, so no input can start what looks like a new log line.
    text = orjson.dumps(obj, default=default or str).decode()
    return text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


def configure_logging(service: str, level: str = "INFO", json: bool = True) -> None:
    """Log one JSON object a line to stderr, bound to the service name and contextvars (correlation_id)."""
    # Colours only for a person at a terminal (and never with NO_COLOR): not in files, pipes or CI logs.
    colours = sys.stderr.isatty() and not os.environ.get("NO_COLOR")
    renderer: Any = (
        structlog.processors.JSONRenderer(serializer=_dumps)
        if json
        else structlog.dev.ConsoleRenderer(colors=colours)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            redact_personal_data,
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        # Not cached: module-level loggers must follow a later configure (tests, a log level changed later);
        # building the logger per call costs microseconds against milliseconds of I/O per event.
        cache_logger_on_first_use=False,
    )
    structlog.contextvars.bind_contextvars(service=service)
    # Libraries (aiokafka, uvicorn, faust) log through stdlib logging: keep them, at warning and above.
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING, format="%(levelname)s %(name)s %(message)s")


def bind_event(event: Any) -> None:
    """Put the event's safe identifiers (event id and type, correlation id, LA, URN) on every log line that
    follows in this task or thread, replacing the previous event's: consumers call it after decoding."""
    structlog.contextvars.bind_contextvars(**event.log_fields())


def get_logger(name: str | None = None) -> Any:
    return structlog.get_logger(name)
