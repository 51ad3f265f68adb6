"""Notify's own settings: the shared ones plus the channels, links and retry policy (env prefix CME_)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr

from shared.settings import Settings, service_settings


class NotifySettings(Settings):
    # The LA directory (people, teams, roles, cover, webhooks) loaded by `cme-notify load-directory`.
    notify_directory_path: Path | None = None

    # Links in messages carry only the case UUID: {case_base_url}/{case_id}.
    notify_case_base_url: str = "http://127.0.0.1:8080/cases"
    # Where this service is reachable by the people who click an acknowledgement link.
    notify_public_base_url: str = "http://127.0.0.1:8004"
    notify_link_ttl_s: int = Field(default=7 * 24 * 3600, ge=60)

    # Email over SMTP.
    notify_smtp_host: str = "127.0.0.1"
    notify_smtp_port: int = 25
    notify_smtp_starttls: bool = False
    notify_smtp_username: str | None = None
    notify_smtp_password: SecretStr | None = None
    notify_smtp_timeout_s: float = Field(default=20.0, gt=0)
    notify_mail_from: str = "cme-alerts@localhost"

    # GOV.UK Notify-style API: the key is "<name>-<service id uuid>-<secret uuid>", as Notify issues it.
    notify_govuk_base_url: str = "https://api.notifications.service.gov.uk"
    notify_govuk_api_key: SecretStr | None = None
    notify_govuk_template_id: str | None = None
    notify_http_timeout_s: float = Field(default=10.0, gt=0)

    # Delivery: retries with exponential backoff, then the dead-letter topic.
    notify_max_attempts: int = Field(default=6, ge=1)
    notify_backoff_base_s: float = Field(default=30.0, gt=0)
    notify_backoff_max_s: float = Field(default=3600.0, gt=0)
    # A row claimed for sending and not finished within the lease is taken to be from a crashed worker.
    # Keep it well above the channel timeouts, or two workers could send the same row at once.
    notify_send_lease_s: float = Field(default=120.0, gt=0)
    notify_poll_interval_s: float = Field(default=1.0, gt=0)
    notify_send_batch: int = Field(default=50, ge=1)


def notify_settings(base: Settings | None = None, **overrides: Any) -> NotifySettings:
    """Notify settings from the environment, or carrying over an explicit shared Settings object."""
    return service_settings(NotifySettings, base, **overrides)
