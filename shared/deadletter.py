"""Dead letters: a message a handler cannot process is kept, with the error and where it came from."""

from __future__ import annotations

import base64
import uuid
from typing import Any

from shared.events.envelope import Source
from shared.events.internal import DeadLetter, DeadLetterPayload

DEAD_LETTER_NAMESPACE = uuid.UUID("6f0b5b8e-2f7e-4f55-9d1e-5f3c1d2a7b10")


def dead_letter_for(
    *,
    service: str,
    la_code: str | None = None,
    topic: str,
    partition: int,
    offset: int,
    key: bytes | None,
    value: bytes,
    error: BaseException,
    attempts: int = 1,
) -> DeadLetter:
    """Build the dead-letter event. Its event_id is derived from (topic, partition, offset), so a handler that
    dead-letters the same record twice (after a crash) produces the same event, which consumers
    deduplicate."""
    event_id = uuid.uuid5(DEAD_LETTER_NAMESPACE, f"{topic}:{partition}:{offset}")
    return DeadLetter(
        event_id=event_id,
        occurred_at=_now(),
        source=Source(system=f"cme-{service}", la_code=la_code),
        payload=DeadLetterPayload(
            original_topic=topic,
            partition=partition,
            offset=offset,
            key=key.decode(errors="replace") if key else None,
            value_base64=base64.b64encode(value).decode(),
            error_type=type(error).__name__,
            # Validation errors can quote input values: keep the message short and let ops read the payload.
            error=_safe_error(error),
            service=service,
            attempts=attempts,
        ),
    )


def _safe_error(error: BaseException) -> str:
    from pydantic import ValidationError

    if isinstance(error, ValidationError):
        parts = [
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in error.errors(include_input=False)
        ]
        return "; ".join(parts)[:2000]
    return str(error)[:2000]


def _now() -> Any:
    from shared.events.envelope import utcnow

    return utcnow()
