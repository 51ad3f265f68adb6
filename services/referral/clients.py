"""Creating, listing, rotating and revoking API clients (used by the CLI and the tests)."""

from __future__ import annotations

import uuid

from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from services.referral.keys import hash_secret, new_key
from services.referral.models import ApiClient, ApiClientPublic, ClientKind
from shared.db import session_scope
from shared.events.envelope import utcnow
from shared.identifiers import ascii_digits, validate_la_code, validate_urn


def create_client(
    engine: Engine,
    *,
    kind: ClientKind,
    name: str,
    la_code: str,
    school_urn: str | None = None,
    school_estab: str | None = None,
    rate_per_s: float = 50.0,
    burst: int = 1000,
) -> tuple[ApiClient, str]:
    """Create a client; returns it and its key, which is not stored and cannot be shown again."""
    la_code = validate_la_code(la_code)
    if kind == ClientKind.SCHOOL:
        if not school_urn:
            raise ValueError("a school client needs its URN")
        school_urn = validate_urn(school_urn)
    elif school_urn:
        raise ValueError("an agency client is scoped to an LA, not a school")
    if school_estab is not None and not (len(school_estab) == 4 and ascii_digits(school_estab)):
        raise ValueError("the establishment number is 4 digits")
    if rate_per_s <= 0 or burst < 1:
        raise ValueError("rate and burst must be positive")
    key = new_key()
    client = ApiClient(
        id=str(uuid.uuid4()),
        name=name,
        kind=kind.value,
        la_code=la_code,
        school_urn=school_urn,
        school_estab=school_estab,
        key_id=key.key_id,
        key_hash=hash_secret(key.secret),
        rate_per_s=rate_per_s,
        burst=burst,
    )
    with session_scope(engine) as session:
        session.add(client)
    return client, key.token


def rotate_key(engine: Engine, client_id: str) -> str:
    """Give a client a new key (the old one stops working at once); returns the new key."""
    key = new_key()
    with session_scope(engine) as session:
        client = session.get(ApiClient, client_id)
        if client is None or client.revoked_at is not None:
            raise LookupError(f"no active client {client_id}")
        client.key_id, client.key_hash = key.key_id, hash_secret(key.secret)
        session.add(client)
    return key.token


def revoke_client(engine: Engine, client_id: str) -> bool:
    """Revoke a client's key; returns False when there is no such client."""
    with session_scope(engine) as session:
        client = session.get(ApiClient, client_id)
        if client is None:
            return False
        if client.revoked_at is None:
            client.revoked_at = utcnow()
            session.add(client)
    return True


def list_clients(engine: Engine) -> list[ApiClientPublic]:
    with Session(engine) as session:
        rows = session.exec(select(ApiClient).order_by(col(ApiClient.created_at))).all()
        return [ApiClientPublic.model_validate(row, from_attributes=True) for row in rows]
