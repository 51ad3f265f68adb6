"""Per-LA rule configuration, the mark schema (2024 codes) and the bulk-row parser."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from devtools.samples import make_upn
from services.attendance.intake import parse_rows, rows_from_csv
from services.attendance.rules import AttendanceRuleError, AttendanceRules
from shared.events.attendance import AttendanceCode, AttendanceMark
from shared.events.vocab import AbsenceRule

UPN = make_upn("801", 2000, 14, 1)


def row(**over: object) -> dict[str, object]:
    base = {"upn": UPN, "school_urn": "108000", "la_code": "801", "date": "2024-09-23", "session": "AM",
            "code": "N", "recorded_at": "2024-09-23T09:05:00Z"}  # fmt: skip
    return {**base, **over}


def test_defaults_define_every_rule() -> None:
    rules = {r.rule: r for r in AttendanceRules().for_la("801")}
    assert set(rules) == set(AbsenceRule)
    assert rules[AbsenceRule.UNAUTHORISED_10_DAYS].school_days == 10
    assert rules[AbsenceRule.CONTINUOUS_GNO_20_DAYS].school_days == 20
    assert rules[AbsenceRule.SICKNESS_15_DAYS].school_days == 15
    assert rules[AbsenceRule.SEVERE_50_PERCENT].percent == 50


def test_an_la_override_merges_fields_and_can_disable(tmp_path: Path) -> None:
    (tmp_path / "202.yaml").write_text(
        "rules:\n  unauthorised_10_consecutive_days: {codes: [G, N, O], school_days: 8}\n"
        "  severe_50_percent: {enabled: false}\n"
    )
    rules = AttendanceRules(overrides_dir=tmp_path)
    camden = {r.rule: r for r in rules.for_la("202")}
    assert camden[AbsenceRule.UNAUTHORISED_10_DAYS].school_days == 8
    assert AbsenceRule.SEVERE_50_PERCENT not in camden
    assert len(rules.for_la("801")) == 5  # other LAs keep the defaults


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("rules:\n  sickness_15_days: {school_days: 0}\n", "LA 202, rule sickness_15_days: field school_"),
        ("rules:\n  continuous_gno_20_days: {codes: [N, '/']}\n", "field codes"),
        ("rules:\n  continuous_gno_20_days: {codes: [H]}\n", "rule continuous_gno_20_days: field codes"),
        ("rules:\n  persistent_10_percent: {kind: run}\n", "rule persistent_10_percent, field kind"),
        ("rules:\n  truancy: {school_days: 3}\n", "LA 202, rule truancy: unknown rule"),
        ("rules:\n  severe_50_percent: {percnt: 40}\n", "field percnt"),
    ],
)
def test_bad_overrides_name_la_rule_and_field(tmp_path: Path, body: str, expected: str) -> None:
    (tmp_path / "202.yaml").write_text(body)
    with pytest.raises(AttendanceRuleError, match=expected):
        AttendanceRules(overrides_dir=tmp_path)


def test_every_2024_code_is_accepted_and_old_codes_are_not() -> None:
    for code in AttendanceCode:
        [mark], errors = parse_rows([row(code=code.value)])
        assert errors == [] and mark.payload.code == code
    for old in ("H", "J", "Y", "F", "#1"):
        _, errors = parse_rows([row(code=old)])
        assert [e["field"] for e in errors] == ["payload.code"]


def test_row_errors_name_the_row_and_field_not_the_value() -> None:
    marks, errors = parse_rows([row(), row(upn="A801200014009"), row(session="EVE"), row(date="2024-02-30")])
    assert len(marks) == 1
    where = [(e["row"], e["field"]) for e in errors]
    assert where == [(2, "payload.upn"), (3, "payload.session"), (4, "payload.date")]
    assert "A801200014009" not in str(errors)


def test_rows_are_scoped_to_the_callers_la() -> None:
    _, errors = parse_rows([row()], la_code="802")
    assert errors == [{"row": 1, "field": "la_code", "error": "not the LA your token acts for"}]


def test_the_same_row_twice_is_the_same_event_and_csv_reads_like_json() -> None:
    [a], _ = parse_rows([row()])
    [b], _ = parse_rows(
        rows_from_csv(
            (
                "upn,school_urn,la_code,date,session,code,recorded_at\n"
                f"{UPN},108000,801,2024-09-23,AM,N,2024-09-23T09:05:00Z\n"
            ).encode()
        )
    )
    assert a.event_id == b.event_id and a == b.model_copy(update={"recorded_at": a.recorded_at})


def test_a_mark_naming_two_schools_is_refused() -> None:
    [mark], _ = parse_rows([row()])
    data = mark.model_dump(mode="json")
    data["source"]["school_urn"] = "108001"
    with pytest.raises(ValidationError, match=r"differs from source\.school_urn"):
        AttendanceMark.model_validate(data)
