"""Absence-threshold rules as data: defaults in ``rules/defaults.yaml``, overridable per LA.

An override file ``<dir>/<la_code>.yaml`` has the defaults' shape and names only what changes::

    rules:
      unauthorised_10_consecutive_days: {codes: [G, N, O]}   # this LA does not count U
      persistent_10_percent: {min_sessions: 60}
      severe_50_percent: {enabled: false}

Fields are merged over the defaults, then the merged rule is validated. Every error raises
:class:`AttendanceRuleError` naming the LA (or "defaults"), the rule and the field.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from services.attendance.codes import CODE_BYTE, COUNTABLE_CODES, translation
from shared.events.attendance import AttendanceCode
from shared.events.vocab import AbsenceRule

DEFAULT_RULES_PATH = Path(__file__).resolve().parent / "rules" / "defaults.yaml"
LA_CODE_RE = re.compile(r"^[0-9]{3}$")

Kind = Literal["run", "cumulative", "percentage"]
# The kind of each rule is part of its meaning (a sickness return is cumulative by statute): not configurable.
RULE_KIND: dict[AbsenceRule, Kind] = {
    AbsenceRule.UNAUTHORISED_10_DAYS: "run",
    AbsenceRule.CONTINUOUS_GNO_20_DAYS: "run",
    AbsenceRule.SICKNESS_15_DAYS: "cumulative",
    AbsenceRule.PERSISTENT_10_PERCENT: "percentage",
    AbsenceRule.SEVERE_50_PERCENT: "percentage",
}
# A stable small number per rule, used in the compact state (append only).
RULE_INDEX: dict[AbsenceRule, int] = {rule: i for i, rule in enumerate(AbsenceRule)}
RULE_BY_INDEX: dict[int, AbsenceRule] = {i: rule for rule, i in RULE_INDEX.items()}


class AttendanceRuleError(ValueError):
    """A rules file is invalid; the message names the LA, the rule and the field."""


class RuleConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    enabled: bool = True
    kind: Kind
    school_days: int | None = Field(default=None, ge=1, le=190)
    codes: tuple[AttendanceCode, ...] = ()
    percent: float | None = Field(default=None, gt=0, le=100)
    min_sessions: int | None = Field(default=None, ge=1, le=400)

    @field_validator("codes")
    @classmethod
    def _absence_codes_only(cls, codes: tuple[AttendanceCode, ...]) -> tuple[AttendanceCode, ...]:
        wrong = [c.value for c in codes if c not in COUNTABLE_CODES]
        if wrong:
            raise ValueError(f"codes {wrong} are not absence codes (present, D, X, Z and # cannot count)")
        if len(set(codes)) != len(codes):
            raise ValueError("codes contain duplicates")
        return codes


@dataclass(frozen=True, slots=True)
class CompiledRule:
    """A validated rule with its byte tables, ready for the state to evaluate."""

    rule: AbsenceRule
    kind: Kind
    school_days: int
    percent: float
    min_sessions: int
    code_bytes: frozenset[int]
    # run rules: code byte -> 1 (counts), 2 (breaks the run), 0 (neutral: no mark, X, Z, #)
    run_table: bytes

    @property
    def index(self) -> int:
        return RULE_INDEX[self.rule]


def _compile(rule: AbsenceRule, cfg: RuleConfig, where: str) -> CompiledRule:
    def need(field: str, value: Any) -> Any:
        if value is None or value == ():
            raise AttendanceRuleError(
                f"{where}, rule {rule.value}, field {field}: required for a {cfg.kind} rule"
            )
        return value

    if cfg.kind != RULE_KIND[rule]:
        raise AttendanceRuleError(
            f"{where}, rule {rule.value}, field kind: must be {RULE_KIND[rule]!r}, got {cfg.kind!r}"
        )
    school_days, percent, min_sessions = 0, 0.0, 0
    if cfg.kind in ("run", "cumulative"):
        school_days = need("school_days", cfg.school_days)
        need("codes", cfg.codes)
    else:
        percent = need("percent", cfg.percent)
        min_sessions = need("min_sessions", cfg.min_sessions)
    counted = {code: 1 for code in cfg.codes}
    neutral = {c: 0 for c in AttendanceCode if c.value in ("X", "Z", "#")}
    return CompiledRule(
        rule=rule,
        kind=cfg.kind,
        school_days=school_days,
        percent=percent,
        min_sessions=min_sessions,
        code_bytes=frozenset(CODE_BYTE[c] for c in cfg.codes),
        run_table=translation({**neutral, **counted}, default=2, unmarked=0),
    )


def _describe(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "<root>"
        parts.append(f"field {loc}: {str(err['msg']).removeprefix('Value error, ')}")
    return "; ".join(parts)


def _read(path: Path, where: str) -> dict[str, Any]:
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise AttendanceRuleError(f"{where} ({path}): cannot read: {exc}") from exc
    if not isinstance(raw, dict) or set(raw) != {"rules"} or not isinstance(raw["rules"], dict):
        raise AttendanceRuleError(f"{where} ({path}): expected one key, 'rules', holding a mapping")
    for name, body in raw["rules"].items():
        if name not in {r.value for r in AbsenceRule}:
            known = [r.value for r in AbsenceRule]
            raise AttendanceRuleError(f"{where}, rule {name}: unknown rule (known: {known})")
        if not isinstance(body, dict):
            raise AttendanceRuleError(f"{where}, rule {name}: expected a mapping of fields")
    return raw["rules"]  # type: ignore[no-any-return]


def _build(raw: dict[str, dict[str, Any]], where: str) -> dict[AbsenceRule, CompiledRule | None]:
    """Validated rules of one LA (None: disabled)."""
    out: dict[AbsenceRule, CompiledRule | None] = {}
    for name, body in raw.items():
        rule = AbsenceRule(name)
        try:
            cfg = RuleConfig.model_validate(body)
        except ValidationError as exc:
            raise AttendanceRuleError(f"{where}, rule {name}: {_describe(exc)}") from exc
        out[rule] = _compile(rule, cfg, where) if cfg.enabled else None
    return out


class AttendanceRules:
    """Effective rules per LA: the defaults, with each LA's override fields merged over them."""

    def __init__(self, defaults_path: Path = DEFAULT_RULES_PATH, overrides_dir: Path | None = None) -> None:
        self._raw_defaults = _read(defaults_path, "defaults")
        missing = {r.value for r in AbsenceRule} - set(self._raw_defaults)
        if missing:
            raise AttendanceRuleError(f"defaults ({defaults_path}): rules {sorted(missing)} are not defined")
        self._defaults = self._active(_build(self._raw_defaults, "defaults"))
        self._by_la: dict[str, tuple[CompiledRule, ...]] = {}
        if overrides_dir is not None:
            if not overrides_dir.is_dir():
                raise AttendanceRuleError(f"attendance rules directory {overrides_dir} does not exist")
            for path in sorted(overrides_dir.iterdir()):
                if path.suffix not in (".yaml", ".yml"):
                    continue
                if not LA_CODE_RE.match(path.stem):
                    raise AttendanceRuleError(f"{path}: the file name must be <3-digit LA code>.yaml")
                self._by_la[path.stem] = self._load_override(path)

    @staticmethod
    def _active(rules: dict[AbsenceRule, CompiledRule | None]) -> tuple[CompiledRule, ...]:
        return tuple(r for r in rules.values() if r is not None)

    def _load_override(self, path: Path) -> tuple[CompiledRule, ...]:
        where = f"LA {path.stem}"
        override = _read(path, where)
        merged = {name: {**body, **override.get(name, {})} for name, body in self._raw_defaults.items()}
        return self._active(_build(merged, where))

    def for_la(self, la_code: str) -> tuple[CompiledRule, ...]:
        return self._by_la.get(la_code, self._defaults)

    def overridden(self) -> frozenset[str]:
        return frozenset(self._by_la)
