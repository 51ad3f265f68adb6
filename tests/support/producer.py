"""A stand-in for the aiokafka producer of an outbox relay, for tests of the relay rather than the broker."""

from __future__ import annotations

import asyncio


class RecordingProducer:
    """Records what was sent, by whom (``name``), and acknowledges each send after ``ack_delay_s`` (a broker
    acknowledges a little after the send)."""

    def __init__(
        self, sent: list[tuple[str, bytes]], name: str = "producer", ack_delay_s: float = 0.0
    ) -> None:
        self.sent = sent
        self.name = name
        self.ack_delay_s = ack_delay_s

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    async def send(self, topic: str, value: bytes, key: bytes | None = None) -> asyncio.Future[None]:
        self.sent.append((self.name, value))
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self.ack_delay_s:
            asyncio.get_running_loop().call_later(self.ack_delay_s, done.set_result, None)
        else:
            done.set_result(None)
        return done
