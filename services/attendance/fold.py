"""Mark records to pupil states and threshold events, without I/O (the faust agent does the I/O).

``MarkHandler.handle`` takes one record against the pupil's stored state, as the agent did before batching.
``MarkHandler.fold`` takes a partition's batch (offset order): each pupil's state is decoded once, every mark
of the batch applied to it in order, and encoded once, so the agent writes each pupil's table entry once per
batch. The fold is the one-at-a-time loop with the state's decode and encode hoisted out of it, so it emits
the same events (same ids, same order per pupil) and ends in the same states. When any record of the batch
fails, the batch is redone one record at a time (each from the state the records before it left), so the
failing record alone is reported as poisoned and every other record goes through as it would have alone.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from services.attendance.state import AttendanceEngine, PupilAttendance, SessionMark
from shared.events.attendance import AttendanceMark
from shared.events.catalogue import encode_event
from shared.events.envelope import Envelope
from shared.logs import bind_event

# Outcomes after which the pupil's state is written (stale and not_school_day leave it as it was).
STATE_CHANGING = frozenset({"applied", "unchanged"})

# (key, value) of a record on cme.attendance.v1: the UPN and the JSON mark.
Record = tuple[bytes, bytes]
# The stored state of a pupil (table read), None when the pupil has none yet.
StateLookup = Callable[[bytes], bytes | None]


@dataclass(frozen=True, slots=True)
class Emitted:
    """An event to send onto the intake topic, keyed by the pupil's UPN like the mark that caused it."""

    key: bytes
    value: bytes
    event_id: str
    event_type: str
    rule: str


@dataclass(slots=True)
class Handled:
    """What one record leads to: the events to send, and the pupil's new state (None: leave it as it is)."""

    outcome: str
    emitted: list[Emitted]
    state: bytes | None


@dataclass(frozen=True, slots=True)
class Poisoned:
    """A record that cannot be processed: its position in the batch and why."""

    index: int
    error: Exception


@dataclass(slots=True)
class Folded:
    """What a batch leads to: the events to send (record order), each changed pupil's new state (once), the
    outcome counts, and the poisoned records (only when the batch fell back to one record at a time)."""

    emitted: list[Emitted] = field(default_factory=list)
    states: dict[bytes, bytes] = field(default_factory=dict)
    outcomes: Counter[str] = field(default_factory=Counter)
    poisoned: list[Poisoned] = field(default_factory=list)
    one_by_one: bool = False


class _RecordFailed(Exception):
    pass


class MarkHandler:
    """Decode, apply and encode: everything the agent does apart from the I/O (benchmarked)."""

    def __init__(self, engine: AttendanceEngine) -> None:
        self.engine = engine

    def decode(self, key: bytes, value: bytes) -> AttendanceMark:
        mark = AttendanceMark.model_validate_json(value)
        if key != mark.payload.upn.encode():
            # The table is partitioned like the topic: a mark keyed otherwise would split a pupil's state.
            raise ValueError("record key is not the mark's UPN")
        return mark

    def handle(self, key: bytes, value: bytes, stored: bytes | None) -> Handled:
        """One record against the pupil's stored state; raises on a record that cannot be processed."""
        mark = self.decode(key, value)
        bind_event(mark)
        state = PupilAttendance.from_bytes(stored) if stored else PupilAttendance()
        outcome = self.engine.apply(state, SessionMark.from_event(mark))
        changed = outcome.status in STATE_CHANGING
        return Handled(outcome.status, _encode(key, outcome.events), state.to_bytes() if changed else None)

    def fold(self, records: Sequence[Record], stored: StateLookup) -> Folded:
        """A batch of one partition's records, in offset order. Never raises for a bad record: it comes back
        in ``poisoned`` (errors of ``stored`` itself propagate)."""
        try:
            return self._fold(records, stored)
        except _RecordFailed:
            return self._one_by_one(records, stored)

    def _fold(self, records: Sequence[Record], stored: StateLookup) -> Folded:
        out = Folded()
        states: dict[bytes, PupilAttendance] = {}
        changed: dict[bytes, None] = {}  # keys in first-change order
        apply = self.engine.apply
        for key, value in records:
            try:
                mark = SessionMark.from_event(self.decode(key, value))
                state = states.get(key)
                if state is None:
                    raw = stored(key)
                    state = states[key] = PupilAttendance.from_bytes(raw) if raw else PupilAttendance()
                outcome = apply(state, mark)
                if outcome.events:
                    out.emitted += _encode(key, outcome.events)
            except Exception as exc:  # any failure: redo the batch one record at a time to isolate it
                raise _RecordFailed from exc
            out.outcomes[outcome.status] += 1
            if outcome.status in STATE_CHANGING:
                changed[key] = None
        out.states = {key: states[key].to_bytes() for key in changed}
        return out

    def _one_by_one(self, records: Sequence[Record], stored: StateLookup) -> Folded:
        out = Folded(one_by_one=True)
        for index, (key, value) in enumerate(records):
            current = out.states[key] if key in out.states else stored(key)
            try:
                handled = self.handle(key, value, current)
            except Exception as exc:  # whatever the cause, this record alone: dead-lettered, the rest flow
                out.poisoned.append(Poisoned(index, exc))
                out.outcomes["invalid"] += 1
                continue
            out.emitted += handled.emitted
            out.outcomes[handled.outcome] += 1
            if handled.state is not None:
                out.states[key] = handled.state
        return out


def _encode(key: bytes, events: list[Envelope]) -> list[Emitted]:
    return [
        Emitted(key, encode_event(e), str(e.event_id), e.event_type, str(getattr(e.payload, "rule", "")))
        for e in events
    ]
