"""Prometheus metrics of the attendance service (labels carry codes and outcomes, never pupils)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

MARKS = Counter(
    "cme_attendance_marks_total",
    "Session marks processed by the worker, by outcome (applied, unchanged, stale, not_school_day, invalid)",
    ["outcome"],
)
THRESHOLD_EVENTS = Counter(
    "cme_attendance_threshold_events_total",
    "Absence-threshold crossings and retractions emitted onto the intake topic",
    ["event_type", "rule"],
)
UPLOADED = Counter(
    "cme_attendance_uploaded_marks_total", "Marks accepted by the bulk upload and produced to Kafka"
)
UPLOAD_REJECTED = Counter(
    "cme_attendance_upload_rejected_total", "Bulk uploads refused, by reason", ["reason"]
)
APPLY_SECONDS = Histogram(
    "cme_attendance_apply_seconds",
    "Time to apply one mark to a pupil's state (decode to re-encode), the mean over a batch",
    buckets=(0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.01, 0.05),
)
BATCH_MARKS = Histogram(
    "cme_attendance_batch_marks",
    "Marks per batch of one partition taken by the worker",
    buckets=(1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500),
)
BATCH_SECONDS = Histogram(
    "cme_attendance_batch_seconds",
    "Time to process a batch of one partition: fold, send and await the broker's acks, write the states",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
BATCH_FALLBACKS = Counter(
    "cme_attendance_batch_fallbacks_total",
    "Batches redone one mark at a time because a mark failed (it alone is dead-lettered)",
)
