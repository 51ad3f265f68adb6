"""Signing and hashing between deployments (docs/SECURITY.md "Between deployments").

Each pair of deployments shares one secret (``CME_TRACKING_PEERS``). Two keys are derived from it, so one
use cannot stand in for the other: the **signing key** signs every request (HMAC-SHA256 over the method,
path, timestamp, nonce and the body's SHA-256), and the **digest key** hashes a strong identifier
(HMAC-SHA256 over "kind:value"): a peer learns a keyed hash, never a UPN, and cannot test guessed UPNs
against another pair's hashes. A request is accepted once: within ``WINDOW_S`` of its timestamp and with a
nonce not seen before from that peer (the nonces are kept for longer than the window).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime

from shared.identifiers import ascii_digits

PEER_HEADER = "X-CME-Peer"
TIMESTAMP_HEADER = "X-CME-Timestamp"
NONCE_HEADER = "X-CME-Nonce"
SIGNATURE_HEADER = "X-CME-Signature"
WINDOW_S = 300  # a signed request older or newer than this (clock skew included) is refused


def _derive(secret: str, purpose: bytes) -> bytes:
    return hmac.new(secret.encode(), purpose, hashlib.sha256).digest()


def digest(secret: str, kind: str, value: str) -> str:
    """The keyed hash of a strong identifier, as this pair of deployments agrees it."""
    key = _derive(secret, b"cme-identifier-digest-v1")
    return hmac.new(key, f"{kind}:{value.strip().upper()}".encode(), hashlib.sha256).hexdigest()


def _payload(method: str, path: str, timestamp: str, nonce: str, body: bytes) -> bytes:
    return "\n".join((method.upper(), path, timestamp, nonce, hashlib.sha256(body).hexdigest())).encode()


def sign(secret: str, method: str, path: str, body: bytes, sender: str, now: datetime) -> dict[str, str]:
    """The headers of a signed request from ``sender``."""
    timestamp = str(int(now.timestamp()))
    nonce = secrets.token_hex(16)
    key = _derive(secret, b"cme-request-signature-v1")
    signature = hmac.new(key, _payload(method, path, timestamp, nonce, body), hashlib.sha256).hexdigest()
    return {
        PEER_HEADER: sender,
        TIMESTAMP_HEADER: timestamp,
        NONCE_HEADER: nonce,
        SIGNATURE_HEADER: signature,
    }


@dataclass(frozen=True)
class Verdict:
    ok: bool
    reason: str = ""  # why refused: a code, never the request's content


def verify(
    secret: str, method: str, path: str, body: bytes, headers: dict[str, str], now: datetime
) -> Verdict:
    """Whether the signature and timestamp hold (the nonce is checked against the store by the caller)."""
    timestamp, nonce, signature = (
        headers.get(h.lower(), "") for h in (TIMESTAMP_HEADER, NONCE_HEADER, SIGNATURE_HEADER)
    )
    if not (ascii_digits(timestamp) and 16 <= len(nonce) <= 64 and nonce.isalnum() and signature):
        return Verdict(False, "malformed signature headers")
    if abs(now.timestamp() - int(timestamp)) > WINDOW_S:
        return Verdict(False, "timestamp outside the window")
    key = _derive(secret, b"cme-request-signature-v1")
    want = hmac.new(key, _payload(method, path, timestamp, nonce, body), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(want, signature):
        return Verdict(False, "bad signature")
    return Verdict(True)
