"""Sending what the ledger says must be sent: claim, send, record; retry with backoff; dead-letter at the end.

A row moves pending -> sending (claimed, with a lease, attempts + 1, committed) -> send -> sent (committed).
A worker that dies after the send and before the last commit leaves the row in ``sending``; once its lease
runs out another worker takes it over and first asks the channel whether the earlier attempt got through
(GOV.UK Notify: by reference), else resends under the same idempotency key (webhook delivery id: the receiver
answers 409; SMTP: the same Message-ID). See docs/NOTIFY.md for the guarantee per channel.
"""

from __future__ import annotations

import asyncio
import base64
import time
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import ParamSpec, TypeVar

import orjson
from sqlalchemy import and_, or_
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from services.notify import metrics
from services.notify.channels.base import ChannelSender, PermanentFailure, Sent, TransientFailure
from services.notify.messages import build_message
from services.notify.models import (
    Channel,
    DeliveryState,
    NotifyAlert,
    NotifyAudit,
    NotifyDelivery,
    NotifyOutbox,
    aware,
)
from services.notify.service import NOTIFY_NAMESPACE, SERVICE
from services.notify.settings import NotifySettings
from shared.db import session_scope
from shared.events.envelope import Source, utcnow
from shared.events.internal import DeadLetter, DeadLetterPayload
from shared.logs import get_logger
from shared.outbox import add_to_outbox

log = get_logger(__name__)

P = ParamSpec("P")
R = TypeVar("R")

# The ledger's transactions get threads of their own. Sent through the shared default pool, the commit that
# records an accepted message queued behind the other sends of its batch (50 by default, on 6 threads here),
# and every second of that queue was a window in which a crash meant a second SMTP copy.
LEDGER_THREADS = 2

# Test hook: called after the channel accepted a message and before the ledger records it.
AfterSend = Callable[[NotifyDelivery], None]


@dataclass(frozen=True)
class Claimed:
    delivery: NotifyDelivery
    alert: NotifyAlert
    resumed: bool  # found in "sending" with an expired lease: a worker died mid-send


def backoff(settings: NotifySettings, attempts: int) -> timedelta:
    seconds = min(settings.notify_backoff_base_s * (2 ** max(attempts - 1, 0)), settings.notify_backoff_max_s)
    return timedelta(seconds=seconds)


class Dispatcher:
    def __init__(
        self,
        settings: NotifySettings,
        engine: Engine,
        channels: Mapping[Channel, ChannelSender],
        dead_letter_topic: str,
        after_send: AfterSend | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._settings = settings
        self._engine = engine
        self._channels = channels
        self._dead_letter_topic = dead_letter_topic
        self._after_send = after_send
        self._clock = clock
        self._ledger = ThreadPoolExecutor(LEDGER_THREADS, thread_name_prefix="notify-ledger")
        self.wake = asyncio.Event()
        self.last_turn: float | None = None  # time.monotonic() at the loop's latest turn (liveness)

    async def _in_ledger(self, fn: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
        return await asyncio.get_running_loop().run_in_executor(self._ledger, lambda: fn(*args, **kwargs))

    def close(self) -> None:
        self._ledger.shutdown(wait=True)

    async def run(self, stop: asyncio.Event) -> None:
        try:
            while not stop.is_set():
                self.last_turn = time.monotonic()
                try:
                    handled = await self.run_once()
                except Exception:
                    log.exception("dispatch_failed")
                    handled = 0
                if not handled:
                    self.wake.clear()
                    waiters = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(self.wake.wait())]
                    await asyncio.wait(
                        waiters,
                        timeout=self._settings.notify_poll_interval_s,
                        return_when=asyncio.FIRST_COMPLETED,
                    )
                    for waiter in waiters:
                        waiter.cancel()
        finally:
            self.close()

    async def run_once(self) -> int:
        claimed = await self._in_ledger(self._claim)
        if claimed:
            await asyncio.gather(*(self._deliver(c) for c in claimed))
        return len(claimed)

    def _claim(self) -> list[Claimed]:
        now = self._clock()
        lease = now + timedelta(seconds=self._settings.notify_send_lease_s)
        with session_scope(self._engine) as session:
            due = or_(
                and_(
                    col(NotifyDelivery.state) == DeliveryState.PENDING.value,
                    col(NotifyDelivery.next_attempt_at) <= now,
                ),
                and_(
                    col(NotifyDelivery.state) == DeliveryState.SENDING.value,
                    col(NotifyDelivery.lease_until) < now,
                ),
            )
            stmt = (
                select(NotifyDelivery)
                .where(due)
                .order_by(col(NotifyDelivery.next_attempt_at))
                .limit(self._settings.notify_send_batch)
                .with_for_update(skip_locked=True)
            )
            rows = list(session.exec(stmt).all())
            claimed: list[Claimed] = []
            for row in rows:
                resumed = row.state == DeliveryState.SENDING.value
                row.state = DeliveryState.SENDING.value
                row.attempts += 1
                row.lease_until = lease
                session.add(row)
                alert = session.get(NotifyAlert, row.alert_id)
                assert alert is not None, "a ledger row always has its alert"
                claimed.append(Claimed(row, alert, resumed))
            return claimed

    async def _deliver(self, claimed: Claimed) -> None:
        delivery, alert = claimed.delivery, claimed.alert
        channel = Channel(delivery.channel)
        sender = self._channels.get(channel)
        ids = {
            "delivery_id": delivery.delivery_id,
            "alert_id": alert.alert_id,
            "channel": channel.value,
            "la_code": delivery.la_code,
            "attempt": delivery.attempts,
        }
        try:
            if sender is None:
                raise PermanentFailure(f"channel {channel.value} is not configured")
            message = build_message(self._settings, alert, delivery)
            outcome: Sent | None = None
            if claimed.resumed or delivery.attempts > 1:
                # An earlier attempt may have got through (a crash mid-send, or a timeout after the channel
                # accepted): ask the channel first where it can tell (GOV.UK Notify, by reference).
                outcome = await sender.find_previous(delivery, message)
            if claimed.resumed:
                metrics.RESUMED.labels(channel=channel.value, how="found" if outcome else "resent").inc()
                log.warning("delivery_resumed_after_crash", found_previous=outcome is not None, **ids)
            if outcome is None:
                outcome = await sender.send(delivery, message)
            accepted = time.monotonic()
        except TransientFailure as exc:
            await self._in_ledger(self._failed, delivery, alert, str(exc), permanent=False)
            return
        except PermanentFailure as exc:
            await self._in_ledger(self._failed, delivery, alert, str(exc), permanent=True)
            return
        if self._after_send is not None:
            self._after_send(delivery)
        await self._in_ledger(self._sent, delivery, outcome)
        metrics.UNRECORDED.labels(channel=channel.value).observe(time.monotonic() - accepted)
        metrics.DELIVERIES.labels(
            channel=channel.value, outcome="already" if outcome.already else "sent"
        ).inc()
        latency = (self._clock() - aware(delivery.created_at)).total_seconds()
        metrics.DELIVERY_LATENCY.labels(channel=channel.value).observe(max(latency, 0.0))
        log.info("delivery_sent", already=outcome.already, **ids)

    def _sent(self, delivery: NotifyDelivery, outcome: Sent) -> None:
        with session_scope(self._engine) as session:
            row = session.get(NotifyDelivery, delivery.id, with_for_update=True)
            if row is None or row.state != DeliveryState.SENDING.value:
                return
            row.state = DeliveryState.SENT.value
            row.sent_at = self._clock()
            row.provider_ref = outcome.provider_ref
            row.lease_until = None
            row.last_error = None
            session.add(row)

    def _failed(self, delivery: NotifyDelivery, alert: NotifyAlert, error: str, permanent: bool) -> None:
        channel = delivery.channel
        now = self._clock()
        with session_scope(self._engine) as session:
            row = session.get(NotifyDelivery, delivery.id, with_for_update=True)
            if row is None or row.state != DeliveryState.SENDING.value:
                return
            row.last_error = error[:500]
            row.lease_until = None
            if permanent or row.attempts >= self._settings.notify_max_attempts:
                row.state = DeliveryState.DEAD.value
                session.add(row)
                self._dead_letter(session, row, alert, error, now)
                metrics.DELIVERIES.labels(channel=channel, outcome="dead").inc()
                metrics.DEAD_LETTERED.labels(channel=channel).inc()
                # The ops alert: an error line the log pipeline pages on, and the metric above.
                log.error(
                    "delivery_dead_lettered",
                    delivery_id=row.delivery_id,
                    alert_id=row.alert_id,
                    channel=channel,
                    la_code=row.la_code,
                    attempts=row.attempts,
                    error=error,
                )
                return
            row.state = DeliveryState.PENDING.value
            row.next_attempt_at = now + backoff(self._settings, row.attempts)
            session.add(row)
        metrics.DELIVERIES.labels(channel=channel, outcome="retry").inc()
        metrics.RETRIES.labels(channel=channel).inc()
        log.warning(
            "delivery_retry_scheduled",
            delivery_id=delivery.delivery_id,
            channel=channel,
            attempts=delivery.attempts,
            error=error,
        )

    def _dead_letter(
        self, session: Session, row: NotifyDelivery, alert: NotifyAlert, error: str, now: datetime
    ) -> None:
        # One dead letter per delivery (its id derives from the delivery id), carrying the escalation's
        # coordinates on the bus; the value names the delivery by ids only.
        value = orjson.dumps(
            {
                "delivery_id": row.delivery_id,
                "alert_id": row.alert_id,
                "escalation_id": row.escalation_id,
                "step_index": row.step_index,
                "recipient": row.recipient,
                "channel": row.channel,
            }
        )
        event = DeadLetter(
            event_id=uuid.uuid5(NOTIFY_NAMESPACE, f"dead:{row.delivery_id}"),
            occurred_at=now,
            source=Source(system="cme-notify", la_code=row.la_code),
            payload=DeadLetterPayload(
                original_topic=alert.source_topic,
                partition=alert.source_partition,
                offset=alert.source_offset,
                key=alert.child_id,
                value_base64=base64.b64encode(value).decode(),
                error_type="DeliveryFailed",
                error=error[:2000],
                service=SERVICE,
                attempts=row.attempts,
            ),
        )
        add_to_outbox(session, NotifyOutbox, self._dead_letter_topic, alert.child_id, event)
        session.add(
            NotifyAudit(
                at=now,
                la_code=row.la_code,
                actor="cme-notify",
                action="delivery_dead_lettered",
                alert_id=row.alert_id,
                escalation_id=row.escalation_id,
                detail=f"{row.channel} {row.recipient} after {row.attempts} attempts",
            )
        )
