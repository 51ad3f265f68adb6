"""Prometheus metrics of the referral service (labels never carry personal data)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

EVENTS_ACCEPTED = Counter(
    "cme_referral_events_accepted_total", "Events accepted into the outbox", ["event_type"]
)
EVENTS_DUPLICATE = Counter(
    "cme_referral_events_duplicate_total", "Retries answered from the idempotency record", ["event_type"]
)
EVENTS_REJECTED = Counter(
    "cme_referral_events_rejected_total", "Events refused, by the first rule they broke", ["reason"]
)
EVENTS_PUBLISHED = Counter("cme_referral_events_published_total", "Outbox rows published to the intake topic")
OUTBOX_DEPTH = Gauge("cme_referral_outbox_depth", "Accepted events not yet published to Kafka")
REQUEST_LATENCY = Histogram(
    "cme_referral_request_seconds",
    "HTTP request latency by route template",
    ["method", "route", "status"],
    buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
