"""Prometheus metrics of the tracking service (labels carry types and states, never personal data)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

EVENTS_PROCESSED = Counter(
    "cme_tracking_events_processed_total",
    "Events processed, by agent, event type and outcome",
    ["agent", "event_type", "outcome"],
)
TRANSITIONS = Counter(
    "cme_tracking_transitions_total", "Case transitions published", ["from_state", "to_state"]
)
MATCHES = Counter("cme_tracking_identity_matches_total", "Identity resolutions by kind of match", ["match"])
CROSS_LA_MATCHES = Counter(
    "cme_tracking_cross_la_matches_total",
    "Cross-LA matches made (a child sought by one LA named in another), by kind of match and direction",
    ["match", "direction"],
)
LATENCY = Histogram(
    "cme_tracking_processing_seconds",
    "Time to process one event, by agent",
    ["agent"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
SEND_SECONDS = Histogram(
    "cme_tracking_send_seconds",
    "Time from handing a batch's outputs to the producer to the broker's last acknowledgement, by agent",
    ["agent"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
DEAD_LETTERS = Counter("cme_tracking_dead_letters_total", "Records sent to the dead-letter topic", ["agent"])
BATCH_SIZE = Histogram(
    "cme_tracking_batch_size",
    "Records per micro-batch, by agent",
    ["agent"],
    buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000),
)
BATCH_FALLBACKS = Counter(
    "cme_tracking_batch_fallbacks_total",
    "Batches that failed as a whole and were processed one record at a time (a poison record, or a failure "
    "that outlasted the retries)",
    ["agent"],
)
