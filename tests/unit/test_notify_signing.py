"""Signing: one-time acknowledgement link tokens, webhook signatures and the Notify API JWT."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from datetime import UTC, datetime, timedelta

import orjson
import pytest

from services.notify.channels.govuk_notify import make_jwt, split_api_key
from services.notify.links import AckLinkClaims, InvalidLink, make_ack_token, verify_ack_token
from services.notify.webhook_signing import (
    MemoryReplayGuard,
    WebhookRejected,
    signed_headers,
    verify_webhook,
)
from shared.auth import InvalidToken, verify_token
from shared.settings import Settings

KEY = "test-signing-key"
NOW = datetime(2026, 11, 23, 12, tzinfo=UTC)
CLAIMS = AckLinkClaims("alert-1", "delivery-1", "person:jsmith", NOW + timedelta(days=7))


# --- acknowledgement links ---


def test_link_token_round_trips() -> None:
    assert verify_ack_token(KEY, make_ack_token(KEY, CLAIMS), NOW) == CLAIMS


def test_link_token_expires() -> None:
    token = make_ack_token(KEY, CLAIMS)
    with pytest.raises(InvalidLink, match="expired"):
        verify_ack_token(KEY, token, CLAIMS.expires_at)


def test_link_token_signed_with_another_key_is_refused() -> None:
    with pytest.raises(InvalidLink, match="signature"):
        verify_ack_token(KEY, make_ack_token("other-key", CLAIMS), NOW)


def test_link_token_with_altered_claims_is_refused() -> None:
    _, sig = make_ack_token(KEY, CLAIMS).split(".")
    forged = (
        base64.urlsafe_b64encode(
            orjson.dumps({"a": "another-alert", "t": "delivery-1", "r": "person:jsmith", "e": 9999999999})
        )
        .decode()
        .rstrip("=")
    )
    with pytest.raises(InvalidLink):
        verify_ack_token(KEY, f"{forged}.{sig}", NOW)


@pytest.mark.parametrize("token", ["", "nodot", "a.b.c", "!!!.???"])
def test_malformed_link_tokens_are_refused(token: str) -> None:
    with pytest.raises(InvalidLink):
        verify_ack_token(KEY, token, NOW)


def test_link_token_is_not_a_bearer_token() -> None:
    # Both are signed from the same deployment key; domain separation keeps them apart.
    settings = Settings(signing_key=KEY)  # type: ignore[arg-type]
    with pytest.raises(InvalidToken):
        verify_token(settings, make_ack_token(KEY, CLAIMS))


def test_link_token_carries_no_personal_data() -> None:
    body = make_ack_token(KEY, CLAIMS).split(".")[0]
    decoded = orjson.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    assert set(decoded) == {"a", "t", "r", "e"}


# --- webhooks ---

SECRET = "webhook-secret"
BODY = b'{"type":"cme.alert","case_id":"c"}'


def test_webhook_signature_verifies_once_then_is_a_replay() -> None:
    guard = MemoryReplayGuard()
    headers = signed_headers(SECRET, "d-1", BODY)
    assert verify_webhook(SECRET, headers, BODY, guard) == "d-1"
    with pytest.raises(WebhookRejected) as caught:
        verify_webhook(SECRET, headers, BODY, guard)
    assert caught.value.replay


def test_webhook_signature_is_hmac_sha256_over_timestamp_delivery_and_body() -> None:
    headers = signed_headers(SECRET, "d-1", BODY, now=1_700_000_000)
    expected = hmac.new(SECRET.encode(), b"1700000000.d-1." + BODY, hashlib.sha256).hexdigest()
    assert headers["X-CME-Signature"] == f"v1={expected}"
    assert headers["X-CME-Timestamp"] == "1700000000"


def test_webhook_with_altered_body_or_wrong_secret_is_refused() -> None:
    headers = signed_headers(SECRET, "d-1", BODY)
    with pytest.raises(WebhookRejected, match="bad signature"):
        verify_webhook(SECRET, headers, BODY + b" ", MemoryReplayGuard())
    with pytest.raises(WebhookRejected, match="bad signature"):
        verify_webhook("other", headers, BODY, MemoryReplayGuard())


def test_webhook_replayed_under_a_new_delivery_id_is_refused() -> None:
    headers = dict(signed_headers(SECRET, "d-1", BODY))
    headers["X-CME-Delivery"] = "d-2"
    with pytest.raises(WebhookRejected, match="bad signature"):
        verify_webhook(SECRET, headers, BODY, MemoryReplayGuard())


def test_stale_webhook_is_refused_even_with_a_good_signature() -> None:
    now = time.time()
    headers = signed_headers(SECRET, "d-1", BODY, now=now - 301)
    with pytest.raises(WebhookRejected, match="stale"):
        verify_webhook(SECRET, headers, BODY, MemoryReplayGuard(), now=now)
    future = signed_headers(SECRET, "d-2", BODY, now=now + 301)
    with pytest.raises(WebhookRejected, match="stale"):
        verify_webhook(SECRET, future, BODY, MemoryReplayGuard(), now=now)


def test_webhook_missing_headers_are_refused() -> None:
    with pytest.raises(WebhookRejected, match="timestamp"):
        verify_webhook(SECRET, {}, BODY, MemoryReplayGuard())
    with pytest.raises(WebhookRejected, match="missing"):
        verify_webhook(SECRET, {"X-CME-Timestamp": str(int(time.time()))}, BODY, MemoryReplayGuard())


def test_header_names_are_case_insensitive() -> None:
    headers = {k.lower(): v for k, v in signed_headers(SECRET, "d-1", BODY).items()}
    assert verify_webhook(SECRET, headers, BODY, MemoryReplayGuard()) == "d-1"


# --- GOV.UK Notify API key and JWT ---

SERVICE_ID = "26785a09-ab16-4eb0-8407-a37497a57506"
SECRET_KEY = "3d844edf-8d35-48ac-975b-e847b4f122b0"


def test_api_key_splits_into_service_id_and_secret() -> None:
    assert split_api_key(f"my_test_key-{SERVICE_ID}-{SECRET_KEY}") == (SERVICE_ID, SECRET_KEY)
    with pytest.raises(ValueError):
        split_api_key("short")


def test_jwt_is_hs256_with_iss_and_iat() -> None:
    token = make_jwt(SERVICE_ID, SECRET_KEY, now=1_700_000_000)
    header, claims, signature = token.split(".")

    def decode(part: str) -> dict[str, object]:
        return orjson.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))  # type: ignore[no-any-return]

    assert decode(header) == {"typ": "JWT", "alg": "HS256"}
    assert decode(claims) == {"iss": SERVICE_ID, "iat": 1_700_000_000}
    expected = hmac.new(SECRET_KEY.encode(), f"{header}.{claims}".encode(), hashlib.sha256).digest()
    assert base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4)) == expected
