"""Escalation rules as data: statutory defaults shipped in ``rule_data/defaults.yaml``, overridable per LA.

A rule watches a case state (snake_case, e.g. ``whereabouts_unknown``) or an event type (kebab-case, e.g.
``exclusion-issued``). When the watched state is entered or the event arrives, and the rule's conditions hold
for the child, the rule's clock starts; when it runs out the first ladder step is alerted, and each later
step is alerted ``delay`` after the previous one unless someone has acknowledged. An ``immediate`` rule fires
at the moment of entry, whatever the day (safeguarding does not wait for a school day).

Per-LA override files (``<override_dir>/<la_code>.yaml``) have three optional sections::

    replace:            # whole rules, matched by id against the defaults
      - {id: whereabouts_unknown, version: 2, ...}
    disable: [place_offered_not_started]
    add:                # new rules with ids the defaults do not use
      - {id: local_rule, version: 1, ...}

Everything is validated at load; errors raise :class:`RuleConfigError` naming the LA, rule id and field.
States, ladder levels, social-care statuses, vulnerabilities and event types come from ``shared.events`` (the
same vocabularies the events carry), and ``reason_in`` values are checked against the code list of what the
rule watches (see :data:`REASON_VOCABULARY`), so a typo fails at load instead of never matching.
A running escalation should store the rule's :attr:`Rule.canonical_json` (or at least its
:attr:`Rule.fingerprint`) so a later change of configuration never alters it mid-flight.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails

from shared.events.inbound import INBOUND_EVENT_CLASSES
from shared.events.internal import CaseState, CaseTransitionPayload, LadderLevel
from shared.events.vocab import (
    AbsenceRule,
    DeletionGround,
    ExclusionType,
    MissingReason,
    SocialCareStatus,
    Vulnerability,
)
from shared.school_calendar import SchoolCalendar

__all__ = [
    "CASE_STATES",
    "DEFAULT_RULES_PATH",
    "EVENT_TYPES",
    "REASON_VOCABULARY",
    "Clock",
    "Condition",
    "LadderStep",
    "MatchContext",
    "Rule",
    "RuleConfigError",
    "RuleOverride",
    "RuleSet",
    "Watches",
    "load_defaults",
    "load_override",
]

DEFAULT_RULES_PATH = Path(__file__).resolve().parent / "rule_data" / "defaults.yaml"

CASE_STATES: frozenset[str] = frozenset(CaseState)
# Inbound event types a rule may watch (the escalation service sees them wrapped in child facts).
# ``case-review`` is escalation's own: an open case whose alert was acknowledged, resolved or ran out of steps
# comes back to its caseworker on the LA's review cadence until an outcome closes the case.
CASE_REVIEW = "case-review"
EVENT_TYPES: frozenset[str] = frozenset(
    str(cls.model_fields["event_type"].default) for cls in INBOUND_EVENT_CLASSES
) | {CASE_REVIEW}

# What MatchContext.reason holds for each watch, hence the values reason_in may use. A state's reason is the
# case's CME reason category (CaseTransitionPayload.reason); events carry their own code lists. Watches not
# listed carry no reason, so a reason_in on them could never match and is refused.
_STATE_REASONS: frozenset[str] = frozenset(MissingReason)
REASON_VOCABULARY: dict[str, frozenset[str]] = {
    **{state: _STATE_REASONS for state in CASE_STATES},
    "exclusion-issued": frozenset(ExclusionType),  # ExclusionIssuedPayload.exclusion_type
    "absence-threshold-crossed": frozenset(AbsenceRule),  # AbsenceThresholdCrossedPayload.rule
    "pupil-left-roll": frozenset(DeletionGround),  # PupilLeftRollPayload.deletion_ground (reg 9(1) letter)
}

# Social-care statuses a vulnerability flag on any inbound event also tells us about: a school or agency
# that marks a child as on a child protection plan has told the LA the child is known to social care,
# whether or not a social-care-status-changed event ever arrives.
SOCIAL_CARE_FLAGS: frozenset[str] = frozenset(
    s.value
    for s in (
        SocialCareStatus.CHILD_IN_NEED,
        SocialCareStatus.CHILD_PROTECTION_PLAN,
        SocialCareStatus.LOOKED_AFTER,
    )
)
# States whose clock may move the case when it runs out (``Rule.moves_case``): tracking's table has the row
# (a transfer with no registration becomes missing education). Other states' clocks only alert.
MOVABLE_STATES: frozenset[str] = frozenset({CaseState.TRANSFER_PENDING.value})
# Watches whose context carries enquiries_completed (PupilLeftRollPayload.enquiries_completed).
ENQUIRY_WATCHES: frozenset[str] = frozenset({"pupil-left-roll"})


Slug = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]*$")]

LA_CODE_RE = re.compile(r"^[0-9]{3}$")
_OVERRIDE_SECTIONS = ("replace", "disable", "add")


class RuleConfigError(ValueError):
    """Rules file invalid; the message names the LA (or "defaults"), the rule id and the field."""


# ----------------------------------------------------------------------------------------------------
# Models
# ----------------------------------------------------------------------------------------------------


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Clock(_Frozen):
    """A duration in school days (per the LA's calendar) or in wall-clock hours."""

    unit: Literal["school_days", "hours"]
    amount: int = Field(ge=0)

    def due_at(self, start: datetime, calendar: SchoolCalendar) -> datetime:
        """When a clock started at ``start`` (timezone-aware) runs out, as an aware UTC datetime.

        School days end at the close of the n-th school day after ``start``
        (see ``SchoolCalendar.deadline_for``).
        """
        if start.tzinfo is None or start.utcoffset() is None:
            raise ValueError("Clock.due_at needs a timezone-aware datetime")
        if self.unit == "hours":
            return (start + timedelta(hours=self.amount)).astimezone(UTC)
        return calendar.deadline_for(start, self.amount)


class LadderStep(_Frozen):
    """Alert ``level`` once ``delay`` has passed since the previous step (or since the rule fired, for step 0)
    without an acknowledgement. A zero delay alerts together with the previous step."""

    level: LadderLevel
    delay: Clock


class Condition(_Frozen):
    """Every field that is set must hold (AND). A rule's condition list is OR-ed."""

    has_social_worker: bool | None = None
    safeguarding_concern: bool | None = None
    social_care_status_in: tuple[SocialCareStatus, ...] | None = Field(default=None, min_length=1)
    reason_in: tuple[Slug, ...] | None = Field(default=None, min_length=1)
    vulnerability_any: tuple[Vulnerability, ...] | None = Field(default=None, min_length=1)
    enquiries_completed: bool | None = None  # pupil-left-roll: the joint reasonable enquiries were completed

    @model_validator(mode="after")
    def _not_empty(self) -> Condition:
        if (
            self.has_social_worker is None
            and self.safeguarding_concern is None
            and self.social_care_status_in is None
            and self.reason_in is None
            and self.vulnerability_any is None
            and self.enquiries_completed is None
        ):
            # An empty condition would silently match everyone; an empty `conditions` list says that openly.
            raise ValueError(
                "a condition must set at least one field (leave `conditions` empty to match all)"
            )
        return self

    def matches(self, ctx: MatchContext) -> bool:
        if self.has_social_worker is not None and ctx.has_social_worker != self.has_social_worker:
            return False
        if self.safeguarding_concern is not None and ctx.safeguarding_concern != self.safeguarding_concern:
            return False
        if self.social_care_status_in is not None and ctx.social_care_statuses.isdisjoint(
            self.social_care_status_in
        ):
            return False
        if self.reason_in is not None and ctx.reason not in self.reason_in:
            return False
        if self.enquiries_completed is not None and ctx.enquiries_completed != self.enquiries_completed:
            return False
        return not (
            self.vulnerability_any is not None and ctx.vulnerabilities.isdisjoint(self.vulnerability_any)
        )


class Watches(_Frozen):
    """Exactly one of a case state or an event type."""

    state: CaseState | None = None
    event: str | None = None

    @field_validator("event")
    @classmethod
    def _known_event(cls, value: str | None) -> str | None:
        if value is not None and value not in EVENT_TYPES:
            raise ValueError(
                f"unknown event type {value!r}; expected one of {', '.join(sorted(EVENT_TYPES))}"
            )
        return value

    @model_validator(mode="after")
    def _exactly_one(self) -> Watches:
        if (self.state is None) == (self.event is None):
            raise ValueError("set exactly one of `state` or `event`")
        return self

    @property
    def key(self) -> str:
        """The state or event name: states are snake_case and events kebab-case, so keys never collide."""
        return self.state.value if self.state is not None else str(self.event)


class Rule(_Frozen):
    id: Slug
    version: int = Field(ge=1)
    description: str = Field(min_length=1)
    citation: str = Field(min_length=1)
    watches: Watches
    clock: Clock
    conditions: tuple[Condition, ...] = ()
    ladder: tuple[LadderStep, ...] = Field(min_length=1)
    immediate: bool = False
    # Event types that end an event rule's clock and escalations for the child (a place allocated ends the
    # fair access clock); a resolved case ends every rule anyway.
    ends_on: tuple[str, ...] = ()
    # When the clock runs out with the case still in the watched state (decided on event time), escalation
    # tells tracking (a case-clock-expired fact dated the due time) and the case moves as tracking's table
    # says: transfer_pending -> missing_education. Only for the states in MOVABLE_STATES.
    moves_case: bool = False

    @field_validator("conditions")
    @classmethod
    def _reasons_in_vocabulary(
        cls, conditions: tuple[Condition, ...], info: ValidationInfo
    ) -> tuple[Condition, ...]:
        watches = info.data.get("watches")
        if not isinstance(watches, Watches):
            return conditions
        allowed = REASON_VOCABULARY.get(watches.key, frozenset())
        for i, cond in enumerate(conditions):
            unknown = sorted(set(cond.reason_in or ()) - allowed)
            if unknown:
                expected = (
                    ", ".join(sorted(allowed)) if allowed else f"nothing: {watches.key} carries no reason"
                )
                raise ValueError(
                    f"conditions[{i}].reason_in has {', '.join(unknown)}, not a reason code of {watches.key}"
                    f" (expected {expected})"
                )
            if cond.enquiries_completed is not None and watches.key not in ENQUIRY_WATCHES:
                raise ValueError(
                    f"conditions[{i}].enquiries_completed: {watches.key} carries no enquiries_completed"
                    f" (only {', '.join(sorted(ENQUIRY_WATCHES))} does)"
                )
        return conditions

    @field_validator("ends_on")
    @classmethod
    def _ends_on_events(cls, value: tuple[str, ...], info: ValidationInfo) -> tuple[str, ...]:
        unknown = sorted(set(value) - EVENT_TYPES)
        if unknown:
            raise ValueError(f"unknown event type {', '.join(unknown)} in ends_on")
        watches = info.data.get("watches")
        if value and isinstance(watches, Watches) and watches.event is None:
            raise ValueError("ends_on is for event rules: a state rule ends when the case leaves the state")
        return value

    @field_validator("immediate")
    @classmethod
    def _immediate_has_no_clock(cls, value: bool, info: ValidationInfo) -> bool:
        clock = info.data.get("clock")
        if value and isinstance(clock, Clock) and clock.amount != 0:
            raise ValueError("an immediate rule fires at once, so its clock amount must be 0")
        return value

    @model_validator(mode="after")
    def _moves_a_movable_state(self) -> Rule:
        if self.moves_case and (self.watches.state is None or self.watches.key not in MOVABLE_STATES):
            raise ValueError(
                f"moves_case is for rules watching {', '.join(sorted(MOVABLE_STATES))} (tracking's table"
                f" moves no other state on a clock), not {self.watches.key}"
            )
        return self

    def applies_to(self, ctx: MatchContext) -> bool:
        return not self.conditions or any(c.matches(ctx) for c in self.conditions)

    @cached_property
    def canonical_json(self) -> str:
        """Sorted-key, whitespace-free JSON of the whole rule: what a running escalation should store."""
        # moves_case only when set: a rule without it keeps the fingerprint it had before the field existed.
        data = self.model_dump(mode="json", exclude=None if self.moves_case else {"moves_case"})
        return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)

    @cached_property
    def fingerprint(self) -> str:
        """sha256 hex of :attr:`canonical_json`: equal fingerprints mean identical rules."""
        return hashlib.sha256(self.canonical_json.encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True)
class MatchContext:
    """What the escalation service knows about the child when matching rules: the one context every rule
    reads, however the service learnt it (the social-care status event, vulnerability flags or a
    safeguarding concern on any inbound event, a caseworker's record; see docs/ESCALATION.md)."""

    has_social_worker: bool = False
    social_care_status: str | None = None  # a SocialCareStatus value
    reason: str | None = None  # from the vocabulary REASON_VOCABULARY names for the watch
    vulnerabilities: frozenset[str] = field(default_factory=frozenset)  # Vulnerability values
    safeguarding_concern: bool = False
    enquiries_completed: bool | None = None  # pupil-left-roll only

    def __post_init__(self) -> None:
        if not isinstance(self.vulnerabilities, frozenset):
            object.__setattr__(self, "vulnerabilities", frozenset(self.vulnerabilities))

    @property
    def social_care_statuses(self) -> frozenset[str]:
        """Every social-care status the child is known to have: the recorded status and the social-care
        vulnerability flags (child_in_need, child_protection_plan, looked_after) any event carried."""
        known = set(self.vulnerabilities & SOCIAL_CARE_FLAGS)
        if self.social_care_status and self.social_care_status != SocialCareStatus.NONE.value:
            known.add(self.social_care_status)  # a child protection enquiry is a status no flag carries
        return frozenset(known)

    def with_fact(
        self,
        *,
        vulnerabilities: Iterable[str] = (),
        safeguarding_concern: bool = False,
        social_care_status: str | None = None,
        has_social_worker: bool | None = None,
    ) -> MatchContext:
        """This context with what one more inbound fact says about the child (flags only ever add; a
        social-care-status-changed event replaces the status and its flags)."""
        flags = set(self.vulnerabilities)
        status, worker = self.social_care_status, self.has_social_worker
        if social_care_status is not None:
            status = social_care_status
            flags -= SOCIAL_CARE_FLAGS
            worker = bool(has_social_worker)
        return MatchContext(
            has_social_worker=worker,
            social_care_status=status,
            reason=self.reason,
            vulnerabilities=frozenset(flags | set(vulnerabilities)),
            safeguarding_concern=self.safeguarding_concern or safeguarding_concern,
            enquiries_completed=self.enquiries_completed,
        )

    @classmethod
    def from_transition(
        cls, payload: CaseTransitionPayload, safeguarding_concern: bool = False
    ) -> MatchContext:
        """Context for a state rule from a case transition."""
        return cls(
            has_social_worker=payload.has_social_worker,
            social_care_status=payload.social_care_status.value,
            reason=payload.reason.value if payload.reason is not None else None,
            vulnerabilities=frozenset(v.value for v in payload.vulnerabilities),
            safeguarding_concern=safeguarding_concern or payload.safeguarding_concern,
        )


@dataclass(frozen=True)
class RuleOverride:
    """One LA's changes to the defaults."""

    replace: Mapping[str, Rule] = field(default_factory=dict)
    disable: frozenset[str] = frozenset()
    add: Mapping[str, Rule] = field(default_factory=dict)


# ----------------------------------------------------------------------------------------------------
# Loading and validation
# ----------------------------------------------------------------------------------------------------


def _loc(loc: Iterable[int | str]) -> str:
    out = ""
    for item in loc:
        out += f"[{item}]" if isinstance(item, int) else (f".{item}" if out else str(item))
    return out or "<rule>"


def _describe(err: ErrorDetails) -> str:
    ctx = err.get("ctx") or {}
    kind = err["type"]
    if kind == "greater_than_equal":
        return f"must be >= {ctx['ge']}"
    if kind == "missing":
        return "is required"
    if kind == "extra_forbidden":
        return "is not a known field"
    if kind == "too_short":
        return f"must have at least {ctx.get('min_length')} item(s)"
    if kind == "string_pattern_mismatch":
        return f"must match {ctx.get('pattern')}"
    return str(err["msg"]).removeprefix("Value error, ")


def _where(la: str) -> str:
    return "defaults" if la == "defaults" else f"LA {la}"


def _parse_rule(raw: Any, la: str, origin: str) -> Rule:
    rule_id = raw.get("id") if isinstance(raw, dict) else None
    label = f"{_where(la)}, rule {rule_id if isinstance(rule_id, str) and rule_id else '<no id>'}"
    if not isinstance(raw, dict):
        raise RuleConfigError(f"{label}: expected a mapping ({origin})")
    try:
        return Rule.model_validate(raw)
    except ValidationError as exc:
        errors = exc.errors()
        # A bad item also makes pydantic call its list "too short"; report only the item.
        errors = [
            e
            for e in errors
            if not (
                e["type"] == "too_short"
                and any(
                    len(o["loc"]) > len(e["loc"]) and o["loc"][: len(e["loc"])] == e["loc"] for o in errors
                )
            )
        ]
        details = "; ".join(f"field {_loc(e['loc'])}: {_describe(e)}" for e in errors)
        raise RuleConfigError(f"{label}, {details} ({origin})") from exc


def _read_yaml(path: Path, la: str) -> Any:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise RuleConfigError(f"{_where(la)}: cannot read {path}: {exc}") from exc


def _parse_rule_list(raw: Any, la: str, origin: str, section: str) -> dict[str, Rule]:
    if raw is None:
        return {}
    if not isinstance(raw, list):
        raise RuleConfigError(f"{_where(la)}, field {section}: must be a list of rules ({origin})")
    rules: dict[str, Rule] = {}
    for item in raw:
        rule = _parse_rule(item, la, origin)
        if rule.id in rules:
            raise RuleConfigError(
                f"{_where(la)}, rule {rule.id}, field id: defined twice in {section} ({origin})"
            )
        rules[rule.id] = rule
    return rules


def load_defaults(path: Path = DEFAULT_RULES_PATH) -> list[Rule]:
    raw = _read_yaml(path, "defaults")
    if not isinstance(raw, dict) or set(raw) != {"rules"}:
        raise RuleConfigError(f"defaults: {path} must be a mapping with a single `rules` list")
    return list(_parse_rule_list(raw["rules"], "defaults", str(path), "rules").values())


def load_override(path: Path, la_code: str) -> RuleOverride:
    raw = _read_yaml(path, la_code)
    if raw is None:
        return RuleOverride()
    if not isinstance(raw, dict):
        raise RuleConfigError(f"LA {la_code}: {path} must be a mapping with replace/disable/add")
    unknown = sorted(set(raw) - set(_OVERRIDE_SECTIONS))
    if unknown:
        raise RuleConfigError(
            f"LA {la_code}, field {unknown[0]}: unknown section, expected one of "
            f"{', '.join(_OVERRIDE_SECTIONS)} ({path})"
        )
    disable_raw = raw.get("disable") or []
    if not isinstance(disable_raw, list) or not all(isinstance(x, str) for x in disable_raw):
        raise RuleConfigError(f"LA {la_code}, field disable: must be a list of rule ids ({path})")
    return RuleOverride(
        replace=_parse_rule_list(raw.get("replace"), la_code, str(path), "replace"),
        disable=frozenset(disable_raw),
        add=_parse_rule_list(raw.get("add"), la_code, str(path), "add"),
    )


# ----------------------------------------------------------------------------------------------------
# The rule set
# ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Effective:
    rules: tuple[Rule, ...]
    by_watch: Mapping[str, tuple[Rule, ...]]


def _index(rules: Sequence[Rule]) -> _Effective:
    by_watch: dict[str, list[Rule]] = {}
    for rule in rules:
        by_watch.setdefault(rule.watches.key, []).append(rule)
    return _Effective(tuple(rules), {k: tuple(v) for k, v in by_watch.items()})


class RuleSet:
    """Effective rules per LA: the defaults with each LA's replace/disable/add applied, indexed by watch key.

    Everything is resolved in the constructor: lookups are a dict access and bad overrides fail at start-up.
    """

    def __init__(self, defaults: Sequence[Rule], overrides: Mapping[str, RuleOverride] | None = None) -> None:
        ids = [r.id for r in defaults]
        duplicates = sorted({i for i in ids if ids.count(i) > 1})
        if duplicates:
            raise RuleConfigError(f"defaults, rule {duplicates[0]}, field id: defined twice")
        self._defaults = tuple(defaults)
        self._default_effective = _index(self._defaults)
        self._by_la: dict[str, _Effective] = {}
        for la_code, override in (overrides or {}).items():
            self._by_la[la_code] = _index(self._apply(la_code, override))

    def _apply(self, la_code: str, override: RuleOverride) -> list[Rule]:
        if not LA_CODE_RE.match(la_code):
            raise RuleConfigError(f"LA {la_code}: LA code must be 3 digits")
        known = {r.id for r in self._defaults}
        for rule_id in sorted(override.replace):
            if rule_id not in known:
                raise RuleConfigError(
                    f"LA {la_code}, rule {rule_id}, field id: "
                    "replace names no default rule (use add for new rules)"
                )
        for rule_id in sorted(override.disable):
            if rule_id not in known:
                raise RuleConfigError(
                    f"LA {la_code}, rule {rule_id}, field disable: no default rule has this id"
                )
            if rule_id in override.replace:
                raise RuleConfigError(f"LA {la_code}, rule {rule_id}, field disable: rule is also replaced")
        for rule_id in sorted(override.add):
            if rule_id in known:
                raise RuleConfigError(
                    f"LA {la_code}, rule {rule_id}, field id: "
                    "add uses a default rule id (use replace instead)"
                )
        rules = [override.replace.get(r.id, r) for r in self._defaults if r.id not in override.disable]
        rules.extend(override.add.values())
        return rules

    @classmethod
    def load(cls, defaults_path: Path = DEFAULT_RULES_PATH, overrides_dir: Path | None = None) -> RuleSet:
        """Read the defaults and every ``<la_code>.yaml`` in ``overrides_dir`` (other suffixes ignored)."""
        defaults = load_defaults(defaults_path)
        overrides: dict[str, RuleOverride] = {}
        if overrides_dir is not None:
            if not overrides_dir.is_dir():
                raise RuleConfigError(f"rule override directory {overrides_dir} does not exist")
            for path in sorted(overrides_dir.iterdir()):
                if path.suffix not in (".yaml", ".yml"):
                    continue
                if not LA_CODE_RE.match(path.stem):
                    raise RuleConfigError(f"{path}: file name must be <la_code>.yaml with a 3-digit LA code")
                if path.stem in overrides:
                    raise RuleConfigError(f"LA {path.stem}: more than one override file ({path})")
                overrides[path.stem] = load_override(path, path.stem)
        return cls(defaults, overrides)

    @property
    def defaults(self) -> tuple[Rule, ...]:
        return self._defaults

    def _effective(self, la_code: str) -> _Effective:
        return self._by_la.get(la_code, self._default_effective)

    def rules_for(self, la_code: str) -> tuple[Rule, ...]:
        """The enabled rules for an LA, defaults order first, then the LA's added rules."""
        return self._effective(la_code).rules

    def rule(self, la_code: str, rule_id: str) -> Rule:
        for rule in self._effective(la_code).rules:
            if rule.id == rule_id:
                return rule
        raise KeyError(f"LA {la_code} has no enabled rule {rule_id}")

    def match_rules(self, la_code: str, state_or_event: str, context: MatchContext) -> list[Rule]:
        """Rules for this LA that watch ``state_or_event`` and whose conditions hold for ``context``."""
        candidates = self._effective(la_code).by_watch.get(state_or_event, ())
        return [r for r in candidates if r.applies_to(context)]
