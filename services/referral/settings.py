"""The referral service's own settings (env prefix CME_, like the shared ones)."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from shared.settings import Settings, service_settings


class ReferralSettings(Settings):
    # How long the outbox relay sleeps when it finds nothing to publish; the API wakes it on every accepted
    # submission, so this only bounds how late a row committed by another process is published.
    referral_relay_idle_s: float = Field(default=0.5, gt=0, le=60)
    # Records the status consumer (cme.child-events.v1 -> "processed") takes in one transaction.
    referral_status_batch: int = Field(default=500, ge=1, le=10_000)


def referral_settings(base: Settings | None = None, **overrides: Any) -> ReferralSettings:
    """Referral settings from the environment, or carrying over an explicit shared Settings object."""
    return service_settings(ReferralSettings, base, **overrides)
