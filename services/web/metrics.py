"""Prometheus metrics of the web (labels carry pages, groups and topics, never people)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

SIGN_INS = Counter("cme_web_sign_ins_total", "Sign-in attempts by outcome", ["outcome"])
PAGE_VIEWS = Counter("cme_web_page_views_total", "Pages served, by page", ["page"])
DOWNLOADS = Counter("cme_web_downloads_total", "CSV downloads of children's data, by report", ["report"])
ALLOCATIONS = Counter(
    "cme_web_allocations_total",
    "Open cases the allocation policy gave an owner (allocated) or could not (failed), by outcome",
    ["outcome"],
)
CSRF_REFUSED = Counter("cme_web_csrf_refused_total", "Form posts refused for a missing or wrong CSRF token")
CONSUMER_LAG = Gauge(
    "cme_consumer_lag",
    "Messages not yet consumed, by consumer group and topic (read from Kafka by the web's lag exporter)",
    ["group", "topic"],
)
DEAD_LETTER_DEPTH = Gauge(
    "cme_dead_letter_depth", "Messages held on the dead-letter topic (sum of its partitions' offsets)"
)
