"""The background half of the service: the escalation consumer, the dispatcher and the outbox relay."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from sqlalchemy.engine import Engine

from services.notify.channels.base import ChannelSender
from services.notify.channels.email_smtp import SmtpSender
from services.notify.channels.govuk_notify import GovukNotifySender
from services.notify.channels.webhook import WebhookSender
from services.notify.config import NotifySettings
from services.notify.consumer import EscalationConsumer
from services.notify.dispatcher import AfterSend, Dispatcher
from services.notify.models import Channel, NotifyOutbox
from shared.kafka import ensure_topics
from shared.logs import get_logger
from shared.outbox import OutboxRelay, new_producer
from shared.topics import ALERT_ACKS, DEAD_LETTER, ESCALATIONS

log = get_logger(__name__)


def default_channels(settings: NotifySettings) -> dict[Channel, ChannelSender]:
    channels: dict[Channel, ChannelSender] = {
        Channel.SMTP: SmtpSender(settings),
        Channel.WEBHOOK: WebhookSender(settings),
    }
    if settings.notify_govuk_api_key is not None and settings.notify_govuk_template_id:
        channels[Channel.GOVUK_NOTIFY] = GovukNotifySender(settings)
    return channels


class NotifyWorker:
    def __init__(
        self,
        settings: NotifySettings,
        engine: Engine,
        channels: dict[Channel, ChannelSender] | None = None,
        after_send: AfterSend | None = None,
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.channels = channels if channels is not None else default_channels(settings)
        self.dispatcher = Dispatcher(settings, engine, self.channels, DEAD_LETTER.name(settings), after_send)
        self.consumer = EscalationConsumer(settings, engine, on_alerted=self.dispatcher.wake.set)
        self.relay = OutboxRelay(engine, NotifyOutbox, lambda: new_producer(settings, "cme-notify"))
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[Any]] = []

    async def start(self, consume: bool = True, dispatch: bool = True, relay: bool = True) -> None:
        self._stop.clear()
        await asyncio.to_thread(ensure_topics, self.settings, (ESCALATIONS, ALERT_ACKS, DEAD_LETTER))
        if relay:
            self._tasks.append(
                self._watch(asyncio.create_task(self.relay.run(self._stop), name="outbox-relay"))
            )
        if consume:
            await self.consumer.start()
            self._tasks.append(
                self._watch(asyncio.create_task(self.consumer.run(self._stop), name="escalation-consumer"))
            )
        if dispatch:
            self._tasks.append(
                self._watch(asyncio.create_task(self.dispatcher.run(self._stop), name="dispatcher"))
            )
        log.info("notify_worker_started", consume=consume, dispatch=dispatch, relay=relay)

    def _watch(self, task: asyncio.Task[Any]) -> asyncio.Task[Any]:
        """A background loop that ends before ``stop`` says why in the log (readiness then reports it)."""

        def ended(done: asyncio.Task[Any]) -> None:
            if self._stop.is_set() or done.cancelled():
                return
            error = done.exception()
            log.error(
                "background_loop_stopped",
                loop=done.get_name(),
                error_type=type(error).__name__ if error else None,
                error=str(error)[:200] if error else None,
            )

        task.add_done_callback(ended)
        return task

    def failed_task(self) -> str | None:
        """The name of a background loop that has died (readiness reports it), or None."""
        if self._stop.is_set():
            return None
        for task in self._tasks:
            if task.done():
                return task.get_name()
        return None

    async def stop(self) -> None:
        self._stop.set()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(task, timeout=10)
        self._tasks.clear()
        await self.consumer.stop()
        for channel in self.channels.values():
            await channel.aclose()
        log.info("notify_worker_stopped")
