"""Local accounts: argon2id password hashes in web_users, one role and one LA per account."""

from __future__ import annotations

import re

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy.engine import Engine
from sqlmodel import Session

from services.web.models import WebUser
from shared.auth import Role

_HASHER = PasswordHasher()
# Run for unknown usernames too, so the response time does not tell which usernames exist.
_DUMMY_HASH = _HASHER.hash("not-a-real-password")
USERNAME_RE = re.compile(r"^[A-Za-z0-9._@-]{2,128}$")
PEOPLE_ROLES = tuple(r for r in Role if r != Role.SERVICE)
MIN_PASSWORD_LENGTH = 12


class UserError(ValueError):
    pass


TEAM_RE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


def create_user(
    engine: Engine, username: str, la_code: str, role: Role, password: str, team: str | None = None
) -> WebUser:
    if not USERNAME_RE.match(username):
        raise UserError("username: 2-128 letters, digits or . _ @ -")
    if not re.fullmatch(r"[0-9]{3}", la_code):
        raise UserError("LA code must be 3 digits")
    if role not in PEOPLE_ROLES:
        raise UserError(f"role must be one of {', '.join(PEOPLE_ROLES)}")
    if team is not None and not TEAM_RE.match(team):
        raise UserError("team: 1-64 letters, digits or . _ -")
    if len(password) < MIN_PASSWORD_LENGTH:
        raise UserError(f"password must be at least {MIN_PASSWORD_LENGTH} characters")
    with Session(engine, expire_on_commit=False) as session:
        if session.get(WebUser, username) is not None:
            raise UserError(f"user {username} exists")
        user = WebUser(
            username=username,
            la_code=la_code,
            role=role.value,
            password_hash=_HASHER.hash(password),
            team=team,
        )
        session.add(user)
        session.commit()
        return user


def authenticate(engine: Engine, username: str, password: str) -> WebUser | None:
    """The user when the password is right and the account enabled, else None (whatever was wrong)."""
    with Session(engine, expire_on_commit=False) as session:
        user = session.get(WebUser, username) if USERNAME_RE.match(username) else None
        try:
            _HASHER.verify(user.password_hash if user else _DUMMY_HASH, password)
        except (VerificationError, InvalidHashError):
            return None
        if user is None or user.disabled:
            return None
        if _HASHER.check_needs_rehash(user.password_hash):
            user.password_hash = _HASHER.hash(password)
            session.add(user)
            session.commit()
        return user
