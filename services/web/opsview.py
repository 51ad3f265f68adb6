"""The ops page's view of every service: readiness and a few key figures scraped from its /metrics."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import httpx
from prometheus_client.parser import text_string_to_metric_families

from services.web.settings import WebSettings

SERVICES = ("referral", "tracking", "escalation", "notify", "attendance")

# (label on the page, metric family name as the parser names it, optional label filter)
KEY_FIGURES: dict[str, tuple[tuple[str, str], ...]] = {
    "referral": (
        ("events accepted", "cme_referral_events_accepted"),
        ("events rejected", "cme_referral_events_rejected"),
        ("outbox depth", "cme_referral_outbox_depth"),
    ),
    "tracking": (
        ("events processed", "cme_tracking_events_processed"),
        ("transitions", "cme_tracking_transitions"),
        ("cases", "cme_tracking_cases"),
        ("dead letters", "cme_tracking_dead_letters"),
    ),
    "escalation": (
        ("open escalations", "cme_escalation_open_escalations"),
        ("raised", "cme_escalation_raised"),
        ("stepped up", "cme_escalation_stepped_up"),
        ("open deadlines", "cme_escalation_open_deadlines"),
    ),
    "notify": (
        ("deliveries", "cme_notify_deliveries"),
        ("pending acks", "cme_notify_pending_acks"),
        ("dead-lettered deliveries", "cme_notify_dead_lettered"),
        ("unroutable", "cme_notify_unroutable"),
    ),
    "attendance": (
        ("marks", "cme_attendance_marks"),
        ("threshold events", "cme_attendance_threshold_events"),
    ),
    "web": (
        ("consumer lag (all groups)", "cme_consumer_lag"),
        ("dead-letter depth", "cme_dead_letter_depth"),
        ("sign-ins", "cme_web_sign_ins"),
    ),
}


@dataclass
class ServiceStatus:
    name: str
    url: str
    ready: str = "unknown"
    checks: dict[str, str] = field(default_factory=dict)
    figures: list[tuple[str, float | None]] = field(default_factory=list)
    by_label: dict[str, list[tuple[str, float]]] = field(default_factory=dict)


def summarise(
    name: str, text: str
) -> tuple[list[tuple[str, float | None]], dict[str, list[tuple[str, float]]]]:
    """Sum each key family over its samples (counters: the _total samples); keep per-label rows too."""
    families = {f.name: f for f in text_string_to_metric_families(text)}
    figures: list[tuple[str, float | None]] = []
    by_label: dict[str, list[tuple[str, float]]] = {}
    for label, family_name in KEY_FIGURES.get(name, ()):
        family = families.get(family_name)
        if family is None:
            figures.append((label, None))
            continue
        samples = [s for s in family.samples if not s.name.endswith("_created")]
        figures.append((label, sum(s.value for s in samples)))
        rows = [
            (",".join(f"{k}={v}" for k, v in sorted(s.labels.items())), s.value) for s in samples if s.labels
        ]
        if rows:
            by_label[label] = rows
    return figures, by_label


async def service_status(client: httpx.AsyncClient, name: str, url: str) -> ServiceStatus:
    status = ServiceStatus(name=name, url=url)
    try:
        ready = await client.get(f"{url}/health/ready")
        body = ready.json()
        status.ready = "ready" if ready.status_code == 200 else "not ready"
        status.checks = {k: str(v) for k, v in body.get("checks", {}).items()}
    except (httpx.HTTPError, ValueError) as exc:
        status.ready = f"unreachable ({type(exc).__name__})"
        return status
    try:
        scraped = await client.get(f"{url}/metrics")
        status.figures, status.by_label = summarise(name, scraped.text)
    except (httpx.HTTPError, ValueError) as exc:
        status.checks["metrics"] = f"error: {type(exc).__name__}"
    return status


async def all_statuses(settings: WebSettings, own: ServiceStatus) -> list[ServiceStatus]:
    """The five services over HTTP, and the web's own status (passed in: no request to itself)."""
    targets = [(name, settings.service_url(name)) for name in SERVICES]
    async with httpx.AsyncClient(timeout=5) as client:
        found = await asyncio.gather(*(service_status(client, n, u) for n, u in targets))
    return [*found, own]
