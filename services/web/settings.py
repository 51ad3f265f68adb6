"""The web's own settings (env prefix CME_, like the shared ones)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field

from shared.settings import Settings, service_settings


class WebSettings(Settings):
    # Send the session cookie only over HTTPS; must be true in production (behind TLS).
    web_cookie_secure: bool = False
    web_session_ttl_s: int = Field(default=8 * 3600, ge=300)
    # Where the other services answer, from the web's side. Empty: 127.0.0.1 and the port settings.
    web_referral_url: str = ""
    web_tracking_url: str = ""
    web_escalation_url: str = ""
    web_notify_url: str = ""
    web_attendance_url: str = ""
    web_http_timeout_s: float = Field(default=10.0, gt=0)
    # Per-LA school population (total and vulnerable groups) for the snapshot's rates; see docs/WEB.md.
    web_population_file: Path | None = None
    # How often the lag exporter reads consumer-group offsets from Kafka (0 turns it off).
    web_lag_interval_s: float = Field(default=15.0, ge=0)
    # Per-LA automatic allocation policy (YAML; docs/WEB.md "Allocation"); unset: no LA has one, and new
    # cases wait in the Nobody's queue saying so.
    web_allocation_file: Path | None = None
    # How often open cases nobody owns are allocated by the policy (0 turns the background round off; the
    # Nobody's queue still allocates before it lists).
    web_allocation_interval_s: float = Field(default=10.0, ge=0)
    # An LA's OpenID Connect provider (the seam in services/web/identity.py); unset: local accounts only.
    web_oidc_issuer: str | None = None
    web_oidc_client_id: str | None = None
    web_oidc_role_claim: str = "cme_role"
    web_oidc_la_claim: str = "cme_la_code"

    def service_url(self, name: str) -> str:
        explicit: str = getattr(self, f"web_{name}_url")
        return explicit.rstrip("/") or f"http://127.0.0.1:{getattr(self, f'{name}_port')}"


def web_settings(base: Settings | None = None, **overrides: Any) -> WebSettings:
    """Web settings from the environment, or carrying over an explicit shared Settings object."""
    return service_settings(WebSettings, base, **overrides)
