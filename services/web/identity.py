"""The sign-in seam: how a person proves who they are, and which role and LA the session carries.

Local accounts (``LocalAccounts``) are the implementation shipped here. An LA's OpenID Connect provider plugs
in behind the same ``IdentityProvider`` interface: ``start`` returns the provider's authorisation URL (with
state and nonce), and ``complete`` exchanges the callback's code, checks the ID token (issuer, audience,
nonce, signature from the provider's JWKS), and maps its claims (``web_oidc_role_claim``,
``web_oidc_la_claim``) onto a ``SignedInPerson``. The web then issues the same ``shared.auth`` token as for a
local account, so nothing downstream changes. See docs/WEB.md, "Sign-in".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from sqlalchemy.engine import Engine

from services.web.users import authenticate
from shared.auth import Role


@dataclass(frozen=True)
class SignedInPerson:
    subject: str
    role: Role
    la_code: str


class IdentityProvider(Protocol):
    name: str

    def password_sign_in(self, username: str, password: str) -> SignedInPerson | None:
        """Local accounts only; a redirect-based provider returns None."""
        ...


class RedirectIdentityProvider(IdentityProvider, Protocol):
    """What an OIDC provider adds: the redirect out and the callback back in."""

    def start(self, redirect_uri: str) -> tuple[str, str]:
        """The provider's authorisation URL and the state to keep in a short-lived cookie."""
        ...

    def complete(self, code: str, state: str, expected_state: str, redirect_uri: str) -> SignedInPerson: ...


class LocalAccounts:
    name = "local"

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def password_sign_in(self, username: str, password: str) -> SignedInPerson | None:
        user = authenticate(self.engine, username, password)
        if user is None:
            return None
        return SignedInPerson(subject=user.username, role=Role(user.role), la_code=user.la_code)
