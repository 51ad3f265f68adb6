"""Helpers for the notify tests (no tests here): a real SMTP server, a real webhook receiver, a real
GOV.UK Notify-style API server, and builders for directories and escalation events."""

from __future__ import annotations

import base64
import email
import hashlib
import hmac
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

import orjson
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope
from aiosmtpd.smtp import Session as SmtpSession
from sqlalchemy.engine import Engine

from services.notify import settings as notify_config
from services.notify.directory import parse_directory
from services.notify.directory_store import store_directory
from services.notify.settings import NotifySettings
from services.notify.webhook_signing import MemoryReplayGuard, WebhookRejected, verify_webhook
from shared.db import session_scope
from shared.events.envelope import Source
from shared.events.internal import CaseState, Escalation, EscalationAction, EscalationPayload, LadderLevel
from shared.localstack.net import free_port

NOTIFY_SERVICE_ID = "26785a09-ab16-4eb0-8407-a37497a57506"
NOTIFY_SECRET = "3d844edf-8d35-48ac-975b-e847b4f122b0"
NOTIFY_API_KEY = f"cme_test-{NOTIFY_SERVICE_ID}-{NOTIFY_SECRET}"
TEMPLATE_ID = "f33517ff-2a88-4f6e-b855-c550268ce08a"
WEBHOOK_SECRET_ENV = "CME_TEST_NOTIFY_WEBHOOK_SECRET"
WEBHOOK_SECRET = "a-shared-webhook-secret"


# --- SMTP --------------------------------------------------------------------------------------------------


class _SmtpHandler:
    def __init__(self, sink: SmtpSink) -> None:
        self.sink = sink

    async def handle_RCPT(
        self, server: SMTP, session: SmtpSession, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        if address in self.sink.refuse:
            return "550 5.1.1 mailbox unavailable"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: SmtpSession, envelope: Envelope) -> str:
        data = envelope.content if isinstance(envelope.content, bytes) else str(envelope.content).encode()
        with self.sink.lock:
            self.sink.messages.append(email.message_from_bytes(data))
        return "250 Message accepted for delivery"


@dataclass
class SmtpSink:
    """A real SMTP server (aiosmtpd) on a free port, keeping what it accepts."""

    port: int = field(default_factory=free_port)
    messages: list[Message] = field(default_factory=list)
    refuse: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self._controller = Controller(_SmtpHandler(self), hostname="127.0.0.1", port=self.port)

    def start(self) -> SmtpSink:
        self._controller.start()
        return self

    def stop(self) -> None:
        self._controller.stop()

    def received(self) -> list[Message]:
        with self.lock:
            return list(self.messages)

    def to(self, address: str) -> list[Message]:
        return [m for m in self.received() if m["To"] == address]


# --- a small HTTP server in a thread ---------------------------------------------------------------------


class _Server:
    handler: type[BaseHTTPRequestHandler]

    def __init__(self) -> None:
        self.port = free_port()
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), self.handler)
        self._server.owner = self  # type: ignore[attr-defined]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Any:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass

    @property
    def owner(self) -> Any:
        return self.server.owner  # type: ignore[attr-defined]

    def reply(self, code: int, body: dict[str, Any]) -> None:
        data = orjson.dumps(body)
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length", "0")))


# --- webhook receiver --------------------------------------------------------------------------------------


class _WebhookHandler(_Handler):
    def do_POST(self) -> None:
        body = self.body()
        receiver: WebhookReceiver = self.owner
        headers = {k: v for k, v in self.headers.items()}
        try:
            delivery_id = verify_webhook(WEBHOOK_SECRET, headers, body, receiver.guard)
        except WebhookRejected as exc:
            with receiver.lock:
                receiver.rejected.append(str(exc))
            self.reply(409 if exc.replay else 401, {"error": str(exc)})
            return
        with receiver.lock:
            receiver.accepted.append((delivery_id, orjson.loads(body)))
            receiver.raw.append((headers, body))
        self.reply(200, {"ok": True})


class WebhookReceiver(_Server):
    """An LA case-management system's endpoint, verifying with ``verify_webhook``."""

    handler = _WebhookHandler

    def __init__(self) -> None:
        super().__init__()
        self.guard = MemoryReplayGuard()
        self.accepted: list[tuple[str, dict[str, Any]]] = []
        self.rejected: list[str] = []
        self.raw: list[tuple[dict[str, str], bytes]] = []


# --- GOV.UK Notify-style API -------------------------------------------------------------------------------


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class _NotifyHandler(_Handler):
    def _authorised(self) -> bool:
        auth = self.headers.get("Authorization", "")
        try:
            header, claims, sig = auth.removeprefix("Bearer ").split(".")
            expected = hmac.new(
                NOTIFY_SECRET.encode(), f"{header}.{claims}".encode(), hashlib.sha256
            ).digest()
            parsed = orjson.loads(_unb64(claims))
            return (
                hmac.compare_digest(expected, _unb64(sig))
                and orjson.loads(_unb64(header)).get("alg") == "HS256"
                and parsed.get("iss") == NOTIFY_SERVICE_ID
                and abs(time.time() - int(parsed.get("iat", 0))) <= 30
            )
        except Exception:
            return False

    def do_POST(self) -> None:
        api: FakeNotifyApi = self.owner
        if not self._authorised():
            self.reply(403, {"errors": [{"error": "AuthError"}]})
            return
        if self.path != "/v2/notifications/email":
            self.reply(404, {})
            return
        request = orjson.loads(self.body())
        if request.get("template_id") != TEMPLATE_ID or "email_address" not in request:
            self.reply(400, {"errors": [{"error": "BadRequestError"}]})
            return
        notification = {"id": str(uuid.uuid4()), **request}
        with api.lock:
            api.notifications.append(notification)
            stall = api.stall_next_reply_s
            api.stall_next_reply_s = 0.0
        if stall:
            time.sleep(stall)  # accepted, but the answer comes too late for the client
        self.reply(201, {"id": notification["id"], "reference": request.get("reference")})

    def do_GET(self) -> None:
        api: FakeNotifyApi = self.owner
        if not self._authorised():
            self.reply(403, {"errors": [{"error": "AuthError"}]})
            return
        url = urlparse(self.path)
        reference = parse_qs(url.query).get("reference", [None])[0]
        with api.lock:
            found = [n for n in api.notifications if reference is None or n.get("reference") == reference]
        self.reply(200, {"notifications": found, "links": {}})


class FakeNotifyApi(_Server):
    handler = _NotifyHandler

    def __init__(self) -> None:
        super().__init__()
        self.notifications: list[dict[str, Any]] = []
        self.stall_next_reply_s = 0.0


# --- builders ----------------------------------------------------------------------------------------------


def notify_settings(base: Any, smtp: SmtpSink | None = None, **overrides: Any) -> NotifySettings:
    values: dict[str, Any] = {
        "notify_smtp_port": smtp.port if smtp else free_port(),
        "notify_case_base_url": "https://cme.example.gov.uk/cases",
        "notify_public_base_url": "https://notify.example.gov.uk",
        "notify_poll_interval_s": 0.1,
        "notify_backoff_base_s": 0.05,
        "notify_backoff_max_s": 0.2,
        "notify_smtp_timeout_s": 5,
    }
    values.update(overrides)
    return notify_config.notify_settings(base, **values)


def seed_directory(engine: Engine, document: dict[str, Any]) -> None:
    with session_scope(engine) as session:
        store_directory(session, parse_directory(document))


def escalation(
    *,
    escalation_id: uuid.UUID | None = None,
    la_code: str = "801",
    action: EscalationAction = EscalationAction.RAISED,
    level: LadderLevel = LadderLevel.CASEWORKER,
    step_index: int = 0,
    case_id: uuid.UUID | None = None,
    child_id: uuid.UUID | None = None,
    occurred_at: datetime | None = None,
    reason_code: str = "whereabouts_unknown",
) -> Escalation:
    return Escalation(
        event_id=uuid.uuid4(),
        occurred_at=occurred_at or datetime.now(UTC),
        source=Source(system="cme-escalation", la_code=la_code),
        payload=EscalationPayload(
            escalation_id=escalation_id or uuid.uuid4(),
            child_id=child_id or uuid.uuid4(),
            case_id=case_id or uuid.uuid4(),
            la_code=la_code,
            rule_id="whereabouts_unknown",
            rule_fingerprint="sha256:test",
            action=action,
            level=level,
            step_index=step_index,
            case_state=CaseState.WHEREABOUTS_UNKNOWN,
            reason_code=reason_code,
            next_step_due_at=datetime.now(UTC) + timedelta(days=2),
        ),
    )


def step(event: Escalation, **changes: Any) -> Escalation:
    """The same escalation, at another step or action, as a new event."""
    payload = event.payload.model_copy(update=changes)
    return event.model_copy(
        update={"event_id": uuid.uuid4(), "occurred_at": datetime.now(UTC), "payload": payload}
    )
