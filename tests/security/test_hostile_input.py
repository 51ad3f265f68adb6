"""Hostile input against the HTTP APIs: malicious XML for the CTF import, oversized and malformed bodies,
header injection and log injection.

In-process apps (no broker needed: the referral app without its relay, the others on a broker address that
is never dialled because only the ASGI layer is exercised, or on the session's broker where a lifespan needs
it); the log injection test reads the JSON log lines the services write.
"""

from __future__ import annotations

import http.server
import io
import json
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import structlog
from fastapi import FastAPI
from fastapi.testclient import TestClient

from devtools.samples import DEMO_LA, DEMO_SCHOOL_URN, sample_event_dict
from services.referral.app import create_app as referral_app
from services.referral.clients import create_client
from services.referral.models import ClientKind
from shared.auth import Role, issue_token
from shared.localstack.net import free_port
from shared.logs import configure_logging
from shared.settings import Settings

pytestmark = [pytest.mark.security]

SIGNING_KEY = "hostile-input-signing-key-0123456789abcdef"
FORGED_LINE = '{"event":"FORGED-LINE","level":"critical","la_code":"801"}'
INJECTIONS = (
    "\n" + FORGED_LINE,
    "\r\n" + FORGED_LINE,
    "\u2028" + FORGED_LINE,  # a JSON-legal line separator some log viewers split on
    "\x1b[2K\x1b[1A\x1b[31m" + FORGED_LINE,  # ANSI: erase the line, move up, paint red
)


# -- the apps -----------------------------------------------------------------------------------------------


@pytest.fixture
def referral(tmp_path: Path) -> Iterator[tuple[TestClient, dict[str, str], Any]]:
    app = referral_app(
        Settings(database_url=f"sqlite:///{tmp_path / 'r.db'}", kafka_bootstrap="127.0.0.1:1"),
        background=False,
    )
    engine = app.state.referral.engine
    _, key = create_client(
        engine, kind=ClientKind.SCHOOL, name="s", la_code=DEMO_LA, school_urn=DEMO_SCHOOL_URN,
        rate_per_s=1000, burst=1000,
    )  # fmt: skip
    with TestClient(app) as client:
        yield client, {"Authorization": f"Bearer {key}"}, engine


@pytest.fixture
def tracking(pg_settings: Settings) -> Iterator[TestClient]:
    from services.tracking.app import create_app
    from services.tracking.settings import TrackingSettings

    app = create_app(TrackingSettings(**{**pg_settings.model_dump(), "signing_key": SIGNING_KEY}))
    with TestClient(app) as client:
        yield client


@pytest.fixture
def notify(pg_settings: Settings) -> Iterator[TestClient]:
    from services.notify.app import create_app
    from services.notify.settings import NotifySettings

    app: FastAPI = create_app(
        NotifySettings(**{**pg_settings.model_dump(), "signing_key": SIGNING_KEY}), run_worker=False
    )
    with TestClient(app) as client:
        yield client


def _token(role: Role = Role.MANAGER) -> dict[str, str]:
    return {"Authorization": f"Bearer {issue_token(Settings(signing_key=SIGNING_KEY), 'h', role, DEMO_LA)}"}


def _outbox(engine: Any) -> int:
    from sqlalchemy import text

    with engine.connect() as conn:
        return int(conn.execute(text("SELECT count(*) FROM referral_outbox")).scalar() or 0)


# -- malicious XML ------------------------------------------------------------------------------------------


class _Recorder(http.server.BaseHTTPRequestHandler):
    hits: list[str] = []

    def do_GET(self) -> None:
        _Recorder.hits.append(self.path)
        body = b"<!ENTITY % all \"<!ENTITY send SYSTEM 'http://127.0.0.1/leak'>\"> %all;"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def dtd_server() -> Iterator[str]:
    """An HTTP server that would serve an attacker's DTD, and records whether anybody fetched it."""
    _Recorder.hits = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), _Recorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()


def _ctf_with(prolog: str, document_name: str = "CTF", extra: str = "") -> bytes:
    return f"""<?xml version="1.0"?>
{prolog}
<CTfile {extra}><Header><DocumentName>{document_name}</DocumentName></Header></CTfile>""".encode()


def test_malicious_xml_is_refused_and_nothing_fetched(
    referral: tuple[TestClient, dict[str, str], Any], dtd_server: str
) -> None:
    client, school, engine = referral
    attacks = {
        "parameter entity": _ctf_with(
            f'<!DOCTYPE CTfile [<!ENTITY % remote SYSTEM "{dtd_server}/param.dtd"> %remote;]>', "&send;"
        ),
        "external DTD": _ctf_with(f'<!DOCTYPE CTfile SYSTEM "{dtd_server}/ext.dtd">'),
        "public DTD": _ctf_with(f'<!DOCTYPE CTfile PUBLIC "-//CME//X" "{dtd_server}/pub.dtd">'),
        "external entity (http)": _ctf_with(
            f'<!DOCTYPE CTfile [<!ENTITY x SYSTEM "{dtd_server}/x">]>', "&x;"
        ),
        "quadratic blowup": _ctf_with('<!DOCTYPE CTfile [<!ENTITY a "' + "A" * 50_000 + '">]>', "&a;" * 50),
        "xinclude": _ctf_with(
            "", f'<xi:include xmlns:xi="http://www.w3.org/2001/XInclude" href="{dtd_server}/xi"/>'
        ),
    }
    for name, body in attacks.items():
        r = client.post("/v1/imports/ctf?deletion_ground=i", content=body,
                        headers={**school, "Content-Type": "application/xml"})  # fmt: skip
        refused = 400 <= r.status_code < 500 or (r.status_code == 200 and r.json()["accepted"] == 0)
        assert refused, (name, r.status_code, r.text)
        assert "root:" not in r.text and "AAAA" not in r.text, name
    assert _Recorder.hits == [], f"the parser fetched {_Recorder.hits}"
    assert _outbox(engine) == 0


def test_huge_attribute_and_deep_nesting_are_refused_quickly(
    referral: tuple[TestClient, dict[str, str], Any],
) -> None:
    client, school, engine = referral
    headers = {**school, "Content-Type": "application/xml"}
    huge_attribute = _ctf_with("", extra='a="' + "x" * (6 * 1024 * 1024) + '"')
    r = client.post("/v1/imports/ctf?deletion_ground=i", content=huge_attribute, headers=headers)
    assert r.status_code == 413, r.status_code
    deep = b'<?xml version="1.0"?><CTfile>' + b"<a>" * 100_000 + b"</a>" * 100_000 + b"</CTfile>"
    r = client.post("/v1/imports/ctf?deletion_ground=i", content=deep, headers=headers)
    assert 400 <= r.status_code < 500, r.status_code
    assert _outbox(engine) == 0


# -- oversized and malformed bodies -------------------------------------------------------------------------


def _chunks(size: int) -> Iterator[bytes]:
    block = b"[" + b" " * (64 * 1024)
    sent = 0
    while sent < size:
        yield block
        sent += len(block)


@pytest.mark.integration
def test_oversized_bodies_are_413_before_authentication(
    tracking: TestClient, notify: TestClient, referral: tuple[TestClient, dict[str, str], Any]
) -> None:
    ref, _, _ = referral
    for client, path in (
        (tracking, "/v1/children/search"),
        (notify, "/v1/alerts/x/ack"),
        (ref, "/v1/events"),
    ):
        declared = client.post(path, content=b"{" + b" " * (8 * 1024 * 1024) + b"}",
                               headers={"Content-Type": "application/json"})  # fmt: skip
        assert declared.status_code == 413, (path, declared.status_code)
        chunked = client.post(
            path, content=_chunks(8 * 1024 * 1024), headers={"Content-Type": "application/json"}
        )
        # Refused as soon as the limit passes (FastAPI reports a body it could not finish reading as 400), or
        # before the body is read at all (the referral API checks the key first: 401).
        assert chunked.status_code in (400, 401, 413), (path, "chunked", chunked.status_code)


MALFORMED = [
    b"",
    b"{",
    b"null",
    b"[]",
    b'"a string"',
    b"\xff\xfe\x00{",
    b'{"reason": "' + b"\\ud800" + b'", "upn": 1}',
    b'{"reason": "aaa", "upn": {"$ne": null}}',
    b"[" * 10_000 + b"]" * 10_000,
    b'{"reason": "aaa", "upn": "' + b"9" * 100_000 + b'"}',
]


@pytest.mark.integration
def test_malformed_bodies_are_4xx_never_5xx(
    tracking: TestClient, notify: TestClient, referral: tuple[TestClient, dict[str, str], Any]
) -> None:
    ref, school, _ = referral
    targets = (
        (tracking, "/v1/children/search", _token()),
        (tracking, f"/v1/review-items/{uuid.uuid4()}/decision", _token()),
        (notify, "/v1/alerts/x/ack", _token()),
        (ref, "/v1/events", school),
        (ref, "/v1/events/batch", school),
        (ref, "/v1/referrals", school),
    )
    for client, path, auth in targets:
        for body in MALFORMED:
            r = client.post(path, content=body, headers={**auth, "Content-Type": "application/json"})
            assert 400 <= r.status_code < 500, (path, body[:40], r.status_code, r.text[:200])


# -- header injection ---------------------------------------------------------------------------------------


def test_crlf_in_header_values_never_reaches_a_response_header(
    referral: tuple[TestClient, dict[str, str], Any],
) -> None:
    """HTTP clients refuse CR/LF in a header value; an attacker's raw socket does not. Drive the ASGI app
    directly with such values in the Idempotency-Key (the one header the referral API stores and compares)
    and check no response header was split or echoed."""
    client, school, _ = referral
    app = client.app
    for value in (b"k\r\nSet-Cookie: pwned=1", b"k\nLocation: http://evil.test", b"k\x00x", b"\xff\xfe"):
        body = json.dumps({"child": {}}).encode()
        sent: list[dict[str, Any]] = []
        scope = {
            "type": "http", "http_version": "1.1", "method": "POST", "path": "/v1/referrals",
            "raw_path": b"/v1/referrals", "query_string": b"", "root_path": "", "scheme": "http",
            "server": ("testserver", 80), "client": ("127.0.0.1", 1),
            "headers": [
                (b"host", b"testserver"), (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"authorization", school["Authorization"].encode()), (b"idempotency-key", value),
            ],
        }  # fmt: skip
        messages = [{"type": "http.request", "body": body, "more_body": False}]
        client.portal.call(app, scope, _receive_from(messages), _send_to(sent))  # type: ignore[union-attr, arg-type, call-arg]
        start = next(m for m in sent if m["type"] == "http.response.start")
        assert start["status"] < 500, (value, start["status"])
        for name, header_value in start["headers"]:
            assert b"\r" not in header_value and b"\n" not in header_value, (name, header_value)
            assert name.lower() not in (b"set-cookie", b"location"), (name, header_value)
            assert b"pwned" not in header_value and b"evil.test" not in header_value


def _receive_from(messages: list[dict[str, Any]]) -> Any:
    async def receive() -> dict[str, Any]:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    return receive


def _send_to(sent: list[dict[str, Any]]) -> Any:
    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    return send


# -- log injection ------------------------------------------------------------------------------------------


@pytest.fixture
def json_log() -> Iterator[io.StringIO]:
    """The services' JSON logging, written to a buffer the test reads back."""
    buffer = io.StringIO()
    configure_logging("hostile", "DEBUG", json=True)
    structlog.configure(
        logger_factory=structlog.PrintLoggerFactory(file=buffer), cache_logger_on_first_use=False
    )
    try:
        yield buffer
    finally:
        structlog.reset_defaults()
        configure_logging("tests", "INFO", json=True)


def assert_no_forged_line(text: str) -> None:
    """Every line is one JSON object, and the attacker's line never stands on its own."""
    assert "\u2028" not in text and "\u2029" not in text, "a raw line separator reached the log"
    for line in text.split("\n"):
        if not line.strip():
            continue
        parsed = json.loads(line)  # a raw newline from input would leave a fragment that is not JSON
        assert isinstance(parsed, dict)
        assert parsed.get("event") != "FORGED-LINE", line
        assert "\x1b" not in line, "a raw terminal escape reached the log"


@pytest.mark.integration
def test_log_injection_cannot_forge_a_line(
    json_log: io.StringIO, referral: tuple[TestClient, dict[str, str], Any], tracking: TestClient
) -> None:
    client, school, _ = referral
    for injected in INJECTIONS:
        # Values that reach log lines: an Idempotency-Key, free-text fields, a reason, ids in paths, the
        # user agent, and a validation error quoting the input.
        event = sample_event_dict("whereabouts-unknown", la_code=DEMO_LA, school_urn=None)
        event["payload"]["notes"] = injected
        event["source"]["system"] = injected
        client.post("/v1/events", json=event, headers={**school, "User-Agent": "x"})
        header_safe = injected.replace("\n", " ").replace("\r", " ").encode()  # raw UTF-8 bytes
        client.post(
            "/v1/referrals", json={"concern": injected}, headers={**school, "Idempotency-Key": header_safe}
        )
        tracking.post("/v1/children/search", json={"reason": injected, "upn": injected}, headers=_token())
        tracking.get(f"/v1/children/{uuid.uuid4()}", params={"reason": injected}, headers=_token())
        tracking.get("/v1/children/" + quote(injected), params={"reason": injected}, headers=_token())
        structlog.get_logger("hostile").warning("probe", field=injected, child_note=injected)
    text = json_log.getvalue()
    assert "probe" in text and "events_submitted" in text  # the buffer really holds the services' lines
    assert_no_forged_line(text)
