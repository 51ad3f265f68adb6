"""One-time acknowledgement links: an HMAC-signed token naming the alert, the recipient and an expiry.

The token is signed with a key derived from ``settings.signing_key`` for this purpose only, so a link token
can never pass as a bearer token (or the other way round). Single use is enforced by the database
(``notify_link_use``), not by the token. The token names no child: only the alert's and the delivery's UUIDs.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass
from datetime import UTC, datetime

import orjson

_PURPOSE = b"cme-notify-ack-link-v1"


class InvalidLink(Exception):
    pass


@dataclass(frozen=True)
class AckLinkClaims:
    alert_id: str
    token_id: str  # the delivery id: one link per delivery
    recipient: str
    expires_at: datetime


def _key(signing_key: str) -> bytes:
    return hmac.new(signing_key.encode(), _PURPOSE, hashlib.sha256).digest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def make_ack_token(signing_key: str, claims: AckLinkClaims) -> str:
    body = _b64(
        orjson.dumps(
            {
                "a": claims.alert_id,
                "t": claims.token_id,
                "r": claims.recipient,
                "e": int(claims.expires_at.timestamp()),
            }
        )
    )
    sig = hmac.new(_key(signing_key), body.encode(), hashlib.sha256).digest()
    return f"{body}.{_b64(sig)}"


def verify_ack_token(signing_key: str, token: str, now: datetime) -> AckLinkClaims:
    """The claims of a genuine, unexpired token; :class:`InvalidLink` otherwise (never says which part)."""
    try:
        body, sig = token.split(".", 1)
        expected = hmac.new(_key(signing_key), body.encode(), hashlib.sha256).digest()
        if not hmac.compare_digest(expected, _unb64(sig)):
            raise InvalidLink("bad signature")
        raw = orjson.loads(_unb64(body))
        claims = AckLinkClaims(
            alert_id=str(raw["a"]),
            token_id=str(raw["t"]),
            recipient=str(raw["r"]),
            expires_at=datetime.fromtimestamp(int(raw["e"]), UTC),
        )
    except InvalidLink:
        raise
    except Exception as exc:  # malformed base64, JSON or claims
        raise InvalidLink("malformed link") from exc
    if claims.expires_at <= now:
        raise InvalidLink("link expired")
    return claims
