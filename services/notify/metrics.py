"""Prometheus metrics of the notify service (labels carry channels and outcomes, never people)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

DELIVERIES = Counter(
    "cme_notify_deliveries_total", "Delivery attempts by channel and outcome", ["channel", "outcome"]
)
DELIVERY_LATENCY = Histogram(
    "cme_notify_delivery_latency_seconds",
    "From the decision to send (ledger row written) to the channel accepting the message",
    ["channel"],
    buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600),
)
UNRECORDED = Histogram(
    "cme_notify_unrecorded_seconds",
    "From the channel accepting a message to the ledger recording it: a crash inside this window resends"
    " (a second SMTP copy with the same Message-ID)",
    ["channel"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10),
)
RETRIES = Counter("cme_notify_retries_total", "Deliveries scheduled for another attempt", ["channel"])
DEAD_LETTERED = Counter(
    "cme_notify_dead_lettered_total", "Deliveries given up after the last retry (ops alert)", ["channel"]
)
RESUMED = Counter(
    "cme_notify_resumed_total",
    "Deliveries found mid-send after a crash, by how they were resolved",
    ["channel", "how"],
)
UNROUTABLE = Counter(
    "cme_notify_unroutable_total", "Escalations with no recipient in the directory (ops alert)"
)
PENDING_ACKS = Gauge("cme_notify_pending_acks", "Open alerts delivered and not yet acknowledged")
ACKS = Counter("cme_notify_acks_total", "Acknowledgements recorded, by route", ["via"])
