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
    "Time to apply one mark to a pupil's state (decode to re-encode)",
    buckets=(0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.01, 0.05),
)
