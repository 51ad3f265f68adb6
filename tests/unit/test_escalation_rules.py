"""Escalation rules: defaults load and match, per-LA replace/disable/add, validation errors, fingerprints."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from services.escalation.rules import (
    CASE_STATES,
    DEFAULT_RULES_PATH,
    Clock,
    Condition,
    MatchContext,
    Rule,
    RuleConfigError,
    RuleOverride,
    RuleSet,
)
from shared.events.internal import CaseState, CaseTransitionPayload
from shared.events.vocab import MissingReason, SocialCareStatus, Vulnerability
from shared.school_calendar import CalendarRegistry, SchoolCalendar

LA = "202"


@pytest.fixture(scope="module")
def rules() -> RuleSet:
    return RuleSet.load()


@pytest.fixture(scope="module")
def cal() -> SchoolCalendar:
    return CalendarRegistry().default


def ids(found: list[Rule]) -> list[str]:
    return [r.id for r in found]


def _default_raw(rule_id: str) -> dict[str, Any]:
    raw = yaml.safe_load(DEFAULT_RULES_PATH.read_text())
    return next(r for r in raw["rules"] if r["id"] == rule_id)


def _write(dir_: Path, la: str, data: object) -> None:
    (dir_ / f"{la}.yaml").write_text(yaml.safe_dump(data, sort_keys=False))


# -- defaults -----------------------------------------------------------------------------------------------

EXPECTED_DEFAULTS = {
    "whereabouts_unknown",
    "whereabouts_unknown_with_concerns",
    "known_to_social_care_missing_education",
    "known_to_social_care_whereabouts_unknown",
    "missing_education_no_outcome",
    "permanent_exclusion_no_provision",
    "deletion_without_joint_enquiries",
    "sickness_15_days_provision",
    "fair_access_place_20_days",
    "awaiting_provision_20_days",
    "place_offered_not_started",
    "unauthorised_absence_10_days",
    "continuous_absence_20_days",
    "transfer_not_registered",
    "handover_not_confirmed",
    "handover_outside_deployment",
    "home_education_child_protection",
    "home_education_deletion_child_protection",
    "not_in_school_notice_child_protection",
    "part_time_provision_review",
    "review_date_due",
    "open_case_review",
}


def test_every_default_rule_loads_with_citation_and_ladder(rules: RuleSet) -> None:
    assert {r.id for r in rules.defaults} == EXPECTED_DEFAULTS
    for rule in rules.defaults:
        assert rule.version >= 1
        assert len(rule.citation) > 40, rule.id
        assert "Statutory" in rule.citation or "Local practice" in rule.citation, rule.id
        assert rule.ladder, rule.id
        assert rule.watches.state in CASE_STATES or (rule.watches.event and "-" in rule.watches.event)
    assert rules.rules_for("999") == rules.defaults


def test_statutory_numbers_in_defaults(rules: RuleSet) -> None:
    excl = rules.rule(LA, "permanent_exclusion_no_provision")
    assert excl.clock == Clock(unit="school_days", amount=5)
    assert excl.watches.event == "exclusion-issued"
    assert "SI 2007/1870" in excl.citation and "sixth" in excl.citation
    joint = rules.rule(LA, "deletion_without_joint_enquiries")
    assert "9(1)(h)" in joint.citation and "9(1)(i)" in joint.citation
    # The CME guidance is cited as its current (August 2024) version, never the superseded 2016 text.
    for rule in rules.defaults:
        assert "2016" not in rule.citation, rule.id
    assert "August 2024" in DEFAULT_RULES_PATH.read_text()
    fap = rules.rule(LA, "awaiting_provision_20_days")
    assert fap.clock == Clock(unit="school_days", amount=20)
    assert "School Admissions Code 2021" in fap.citation
    absence = rules.rule(LA, "unauthorised_absence_10_days")
    assert absence.watches.event == "absence-threshold-crossed"
    assert "reg 13" in absence.citation and "SI 2024/208" in absence.citation
    assert rules.rule(LA, "place_offered_not_started").clock.amount == 10
    assert rules.rule(LA, "missing_education_no_outcome").clock.amount == 10


def test_whereabouts_unknown_ladder(rules: RuleSet) -> None:
    rule = rules.rule(LA, "whereabouts_unknown")
    assert rule.immediate
    assert [(s.level, s.delay.unit, s.delay.amount) for s in rule.ladder] == [
        ("caseworker", "hours", 0),
        ("senior_cme_officer", "school_days", 5),
        ("childrens_social_care", "school_days", 5),
    ]


def test_social_care_rules_go_straight_to_mash(rules: RuleSet) -> None:
    for rule_id in ("known_to_social_care_missing_education", "known_to_social_care_whereabouts_unknown"):
        rule = rules.rule(LA, rule_id)
        assert rule.immediate and rule.clock == Clock(unit="hours", amount=0)
        first_two = [(s.level, s.delay.amount) for s in rule.ladder[:2]]
        assert first_two == [("childrens_social_care", 0), ("caseworker", 0)]
    concerns = rules.rule(LA, "whereabouts_unknown_with_concerns")
    immediate_levels = [s.level for s in concerns.ladder if s.delay.amount == 0]
    assert immediate_levels == ["caseworker", "childrens_social_care", "police"]


# -- matching -----------------------------------------------------------------------------------------------

PLAIN = MatchContext()


@pytest.mark.parametrize(
    ("watched", "context", "expected"),
    [
        ("whereabouts_unknown", PLAIN, ["whereabouts_unknown"]),
        (
            "whereabouts_unknown",
            MatchContext(safeguarding_concern=True),
            ["whereabouts_unknown", "whereabouts_unknown_with_concerns"],
        ),
        (
            "whereabouts_unknown",
            MatchContext(
                vulnerabilities=frozenset({"ehcp", "young_carer"})
            ),  # at risk, but no concern recorded
            ["whereabouts_unknown"],
        ),
        (
            "whereabouts_unknown",
            MatchContext(social_care_status="none", has_social_worker=False),
            ["whereabouts_unknown"],
        ),
        (
            "whereabouts_unknown",
            MatchContext(has_social_worker=True),
            ["whereabouts_unknown", "known_to_social_care_whereabouts_unknown"],
        ),
        ("missing_education", PLAIN, ["missing_education_no_outcome"]),
        (
            "missing_education",
            MatchContext(social_care_status="child_protection_plan"),
            ["known_to_social_care_missing_education", "missing_education_no_outcome"],
        ),
        (
            "missing_education",
            MatchContext(social_care_status="looked_after", has_social_worker=True),
            ["known_to_social_care_missing_education", "missing_education_no_outcome"],
        ),
        (
            "exclusion-issued",
            MatchContext(reason="permanent"),
            ["permanent_exclusion_no_provision"],
        ),
        ("exclusion-issued", MatchContext(reason="suspension"), []),
        ("exclusion-issued", MatchContext(reason="suspension", has_social_worker=True), []),
        ("exclusion-issued", PLAIN, []),
        (
            "absence-threshold-crossed",
            MatchContext(reason="unauthorised_10_consecutive_days"),
            ["unauthorised_absence_10_days"],
        ),
        (
            "absence-threshold-crossed",
            MatchContext(reason="continuous_gno_20_days"),
            ["continuous_absence_20_days"],
        ),
        ("absence-threshold-crossed", MatchContext(reason="sickness_15_days"), []),
        # A social-care flag on any event is the same as the social-care status event.
        (
            "whereabouts_unknown",
            MatchContext(vulnerabilities=frozenset({"child_protection_plan"})),
            ["whereabouts_unknown", "known_to_social_care_whereabouts_unknown"],
        ),
        (
            "whereabouts_unknown",
            MatchContext(vulnerabilities=frozenset({"looked_after", "ehcp"}), social_care_status="none"),
            ["whereabouts_unknown", "known_to_social_care_whereabouts_unknown"],
        ),
        (
            "missing_education",
            MatchContext(vulnerabilities=frozenset({"child_in_need"})),
            ["known_to_social_care_missing_education", "missing_education_no_outcome"],
        ),
        (
            "missing_education",
            MatchContext(safeguarding_concern=True),
            ["known_to_social_care_missing_education", "missing_education_no_outcome"],
        ),
        (
            "pupil-left-roll",
            MatchContext(reason="h", enquiries_completed=False),
            ["deletion_without_joint_enquiries"],
        ),
        (
            "pupil-left-roll",
            MatchContext(reason="i", enquiries_completed=False),
            ["deletion_without_joint_enquiries"],
        ),
        ("pupil-left-roll", MatchContext(reason="i", enquiries_completed=True), []),
        ("sickness-absence-notified", PLAIN, ["sickness_15_days_provision"]),
        ("fair-access-referred", PLAIN, ["fair_access_place_20_days"]),
        ("pupil-left-roll", MatchContext(reason="g", enquiries_completed=False), []),
        ("absence-threshold-crossed", PLAIN, []),
        ("awaiting_provision", PLAIN, ["awaiting_provision_20_days"]),
        ("place_offered", MatchContext(has_social_worker=True), ["place_offered_not_started"]),
        ("in_education", MatchContext(has_social_worker=True), []),
        ("electively_home_educated", PLAIN, []),
        ("left_area", PLAIN, []),
        ("moved_abroad", PLAIN, []),
        ("on_roll_at_risk", PLAIN, []),
        ("pupil-registered", PLAIN, []),
    ],
)
def test_match_rules(rules: RuleSet, watched: str, context: MatchContext, expected: list[str]) -> None:
    assert ids(rules.match_rules(LA, watched, context)) == expected


def test_condition_fields_are_anded_and_list_is_ored() -> None:
    cond = Condition(has_social_worker=True, reason_in=("permanent",))
    assert cond.matches(MatchContext(has_social_worker=True, reason="permanent"))
    assert not cond.matches(MatchContext(has_social_worker=True, reason="suspension"))
    assert not cond.matches(MatchContext(has_social_worker=False, reason="permanent"))
    raw = _default_raw("missing_education_no_outcome") | {
        "conditions": [{"has_social_worker": True}, {"vulnerability_any": ["ehcp", "youth_justice"]}]
    }
    rule = Rule.model_validate(raw)
    assert rule.applies_to(MatchContext(has_social_worker=True))
    assert rule.applies_to(MatchContext(vulnerabilities=frozenset({"youth_justice", "young_carer"})))
    assert not rule.applies_to(MatchContext(vulnerabilities=frozenset({"young_carer"})))
    assert not rule.applies_to(PLAIN)


def test_social_care_statuses_come_from_status_and_flags() -> None:
    assert MatchContext().social_care_statuses == frozenset()
    assert MatchContext(social_care_status="none").social_care_statuses == frozenset()
    both = MatchContext(
        social_care_status="child_in_need", vulnerabilities=frozenset({"looked_after", "ehcp"})
    )
    assert both.social_care_statuses == {"child_in_need", "looked_after"}


def test_context_with_fact_adds_flags_and_a_status_event_replaces_them() -> None:
    known = MatchContext(vulnerabilities=frozenset({"ehcp", "child_in_need"}), reason="x")
    flagged = known.with_fact(vulnerabilities=["child_protection_plan"], safeguarding_concern=True)
    assert flagged.vulnerabilities == {"ehcp", "child_in_need", "child_protection_plan"}
    assert flagged.safeguarding_concern and flagged.reason == "x"
    # A concern once raised stays raised; a later event without it does not clear it.
    assert flagged.with_fact().safeguarding_concern
    closed = flagged.with_fact(social_care_status="none", has_social_worker=False)
    assert closed.vulnerabilities == {"ehcp"} and closed.social_care_statuses == frozenset()
    allocated = known.with_fact(social_care_status="looked_after", has_social_worker=True)
    assert allocated.has_social_worker and allocated.social_care_statuses == {"looked_after"}


def test_ends_on_names_known_events_on_event_rules_only() -> None:
    fair = _default_raw("fair_access_place_20_days")
    assert Rule.model_validate(fair).ends_on == ("place-offered", "provision-started")
    with pytest.raises(ValidationError, match="unknown event type place-ofered"):
        Rule.model_validate(fair | {"ends_on": ["place-ofered"]})
    state_rule = _default_raw("missing_education_no_outcome") | {"ends_on": ["place-offered"]}
    with pytest.raises(ValidationError, match="ends_on is for event rules"):
        Rule.model_validate(state_rule)


def test_moves_case_only_on_a_state_tracking_moves_on_a_clock() -> None:
    transfer = Rule.model_validate(_default_raw("transfer_not_registered"))
    assert transfer.moves_case and '"moves_case":true' in transfer.canonical_json
    # A rule without it keeps the canonical form (and fingerprint) it had before the field existed.
    assert (
        '"moves_case":'
        not in Rule.model_validate(_default_raw("missing_education_no_outcome")).canonical_json
    )
    for other in ("handover_not_confirmed", "missing_education_no_outcome", "review_date_due"):
        with pytest.raises(ValidationError, match="moves_case is for rules watching transfer_pending"):
            Rule.model_validate(_default_raw(other) | {"moves_case": True})


def test_a_child_protection_enquiry_is_a_social_care_status_rules_can_match() -> None:
    enquiry = MatchContext(social_care_status="child_protection_enquiry")
    assert enquiry.social_care_statuses == {"child_protection_enquiry"}
    rule = Rule.model_validate(_default_raw("home_education_child_protection"))
    assert rule.applies_to(enquiry) and not rule.applies_to(MatchContext(social_care_status="child_in_need"))


def test_enquiries_completed_only_on_deletions() -> None:
    raw = _default_raw("missing_education_no_outcome") | {"conditions": [{"enquiries_completed": False}]}
    with pytest.raises(ValidationError, match="carries no enquiries_completed"):
        Rule.model_validate(raw)


def test_match_context_coerces_vulnerabilities() -> None:
    ctx = MatchContext(vulnerabilities=["ehcp"])  # type: ignore[arg-type]
    assert ctx.vulnerabilities == frozenset({"ehcp"})


def test_context_from_case_transition(rules: RuleSet) -> None:
    payload = CaseTransitionPayload(
        child_id=uuid.uuid4(),
        case_id=uuid.uuid4(),
        la_code=LA,
        from_state=CaseState.MISSING_EDUCATION,
        to_state=CaseState.WHEREABOUTS_UNKNOWN,
        cause_event_id=uuid.uuid4(),
        cause_event_type="whereabouts-unknown",
        cause_occurred_at=datetime(2025, 11, 3, 10, 0, tzinfo=UTC),
        reason=MissingReason.WHEREABOUTS_UNKNOWN,
        vulnerabilities=[Vulnerability.EHCP],
        social_care_status=SocialCareStatus.LOOKED_AFTER,
    )
    ctx = MatchContext.from_transition(payload)
    assert ctx == MatchContext(
        social_care_status="looked_after", reason="whereabouts_unknown", vulnerabilities=frozenset({"ehcp"})
    )
    found = ids(rules.match_rules(LA, payload.to_state, ctx))
    assert found == ["whereabouts_unknown", "known_to_social_care_whereabouts_unknown"]


# -- clocks -------------------------------------------------------------------------------------------------


def test_permanent_exclusion_fires_at_close_of_day_six(rules: RuleSet, cal: SchoolCalendar) -> None:
    clock = rules.rule(LA, "permanent_exclusion_no_provision").clock
    # Excluded Mon 3 Nov 2025 (day 1): Tue 2, Wed 3, Thu 4, Fri 5, Mon 10 Nov is day 6.
    assert clock.due_at(datetime(2025, 11, 3, 11, 0, tzinfo=UTC), cal) == datetime(
        2025, 11, 10, 23, 59, 59, tzinfo=UTC
    )
    # Excluded Thu 23 Oct 2025: Fri 24 is day 2, half term, then Mon 3 .. Thu 6 Nov are days 3-6.
    assert clock.due_at(datetime(2025, 10, 23, 11, 0, tzinfo=UTC), cal) == datetime(
        2025, 11, 6, 23, 59, 59, tzinfo=UTC
    )


def test_hours_clock(cal: SchoolCalendar) -> None:
    start = datetime(2025, 12, 24, 18, 0, tzinfo=UTC)  # Christmas Eve: hours ignore the calendar
    assert Clock(unit="hours", amount=24).due_at(start, cal) == datetime(2025, 12, 25, 18, 0, tzinfo=UTC)
    with pytest.raises(ValueError):
        Clock(unit="hours", amount=1).due_at(datetime(2025, 12, 24, 18, 0), cal)


# -- fingerprints -------------------------------------------------------------------------------------------


def test_fingerprint_is_stable_and_content_sensitive(rules: RuleSet) -> None:
    rule = rules.rule(LA, "whereabouts_unknown")
    assert len(rule.fingerprint) == 64 and int(rule.fingerprint, 16) >= 0
    again = Rule.model_validate_json(rule.canonical_json)
    assert again.fingerprint == rule.fingerprint
    assert Rule.model_validate(_default_raw("whereabouts_unknown")).fingerprint == rule.fingerprint
    changed = _default_raw("whereabouts_unknown")
    changed["ladder"][1]["delay"]["amount"] = 3
    assert Rule.model_validate(changed).fingerprint != rule.fingerprint
    assert len({r.fingerprint for r in rules.defaults}) == len(rules.defaults)
    assert json.loads(rule.canonical_json)["id"] == "whereabouts_unknown"


# -- per-LA overrides ---------------------------------------------------------------------------------------


def _override_dir(tmp_path: Path) -> Path:
    replacement = _default_raw("whereabouts_unknown")
    replacement["version"] = 2
    replacement["ladder"][1]["delay"]["amount"] = 3
    added = {
        "id": "ehcp_missing_education",
        "version": 1,
        "description": "A child with an EHCP missing education: senior officer review after 5 school days.",
        "citation": "Local practice: children with SEN are over-represented among CME.",
        "watches": {"state": "missing_education"},
        "clock": {"unit": "school_days", "amount": 5},
        "conditions": [{"vulnerability_any": ["ehcp"]}, {"reason_in": ["sen"]}],
        "ladder": [{"level": "caseworker", "delay": {"unit": "school_days", "amount": 0}}],
    }
    _write(tmp_path, LA, {"replace": [replacement], "disable": ["place_offered_not_started"], "add": [added]})
    (tmp_path / "notes.md").write_text("ignored")
    return tmp_path


def test_override_replace_disable_add(tmp_path: Path, rules: RuleSet) -> None:
    rs = RuleSet.load(overrides_dir=_override_dir(tmp_path))
    la_ids = [r.id for r in rs.rules_for(LA)]
    assert "place_offered_not_started" not in la_ids
    assert la_ids[-1] == "ehcp_missing_education"
    assert len(la_ids) == len(EXPECTED_DEFAULTS)  # one disabled, one added
    replaced = rs.rule(LA, "whereabouts_unknown")
    assert replaced.version == 2 and replaced.ladder[1].delay.amount == 3
    assert replaced.fingerprint != rules.rule(LA, "whereabouts_unknown").fingerprint
    assert rs.match_rules(LA, "place_offered", PLAIN) == []
    ehcp = MatchContext(vulnerabilities=frozenset({"ehcp"}))
    assert ids(rs.match_rules(LA, "missing_education", ehcp)) == [
        "missing_education_no_outcome",
        "ehcp_missing_education",
    ]
    assert (
        ids(rs.match_rules(LA, "missing_education", MatchContext(reason="sen")))[-1]
        == "ehcp_missing_education"
    )
    assert ids(rs.match_rules(LA, "missing_education", PLAIN)) == ["missing_education_no_outcome"]
    assert ids(rs.match_rules("303", "missing_education", ehcp)) == ["missing_education_no_outcome"]
    # Other LAs keep the defaults.
    assert rs.rules_for("303") == rules.defaults
    assert ids(rs.match_rules("303", "place_offered", PLAIN)) == ["place_offered_not_started"]
    with pytest.raises(KeyError):
        rs.rule(LA, "place_offered_not_started")


def test_bad_override_names_la_rule_and_field(tmp_path: Path) -> None:
    bad = _default_raw("whereabouts_unknown")
    bad["clock"] = {"unit": "school_days", "amount": -1}
    bad["immediate"] = False
    _write(tmp_path, LA, {"replace": [bad]})
    with pytest.raises(RuleConfigError) as info:
        RuleSet.load(overrides_dir=tmp_path)
    assert "LA 202, rule whereabouts_unknown, field clock.amount: must be >= 0" in str(info.value)


@pytest.mark.parametrize(
    ("section", "patch", "expected"),
    [
        (
            "replace",
            {"ladder": [{"level": "mayor", "delay": {"unit": "hours", "amount": 0}}]},
            "field ladder[0].level",
        ),
        ("replace", {"ladder": []}, "field ladder: must have at least 1"),
        ("replace", {"citation": None}, "field citation"),
        (
            "replace",
            {"watches": {"state": "missing_education", "event": "exclusion-issued"}},
            "field watches",
        ),
        ("replace", {"watches": {"event": "exclusion-issue"}}, "field watches.event: unknown event type"),
        (
            "replace",
            {
                "watches": {"event": "exclusion-issued"},
                "conditions": [{"reason_in": ["permanent_exclusion"]}],
            },
            "field conditions: conditions[0].reason_in has permanent_exclusion, not a reason code of "
            "exclusion-issued (expected permanent, suspension)",
        ),
        (
            "replace",
            {"watches": {"event": "place-offered"}, "conditions": [{"reason_in": ["fair_access"]}]},
            "place-offered carries no reason",
        ),
        (
            "replace",
            {"conditions": [{"vulnerability_any": ["runaway"]}]},
            "field conditions[0].vulnerability_any[0]",
        ),
        ("replace", {"watches": {"state": "lost"}}, "field watches.state"),
        ("replace", {"clock": {"unit": "hours", "amount": 4}}, "field immediate: an immediate rule"),
        ("replace", {"conditions": [{}]}, "field conditions[0]"),
        (
            "replace",
            {"conditions": [{"social_care_status_in": ["known"]}]},
            "field conditions[0].social_care_status_in",
        ),
        ("replace", {"colour": "red"}, "field colour: is not a known field"),
        (
            "add",
            {"id": "whereabouts_unknown"},
            "rule whereabouts_unknown, field id: add uses a default rule id",
        ),
        ("replace", {"id": "no_such_rule"}, "rule no_such_rule, field id: replace names no default rule"),
    ],
)
def test_override_errors(tmp_path: Path, section: str, patch: dict[str, Any], expected: str) -> None:
    raw = _default_raw("whereabouts_unknown") | patch
    _write(tmp_path, LA, {section: [raw]})
    with pytest.raises(RuleConfigError) as info:
        RuleSet.load(overrides_dir=tmp_path)
    message = str(info.value)
    assert message.startswith("LA 202"), message
    assert expected in message, message


def test_disable_errors(tmp_path: Path) -> None:
    _write(tmp_path, LA, {"disable": ["no_such_rule"]})
    with pytest.raises(RuleConfigError, match="LA 202, rule no_such_rule, field disable"):
        RuleSet.load(overrides_dir=tmp_path)
    _write(
        tmp_path, LA, {"replace": [_default_raw("whereabouts_unknown")], "disable": ["whereabouts_unknown"]}
    )
    with pytest.raises(RuleConfigError, match="also replaced"):
        RuleSet.load(overrides_dir=tmp_path)


def test_unknown_section_and_bad_file_name(tmp_path: Path) -> None:
    _write(tmp_path, LA, {"remove": ["whereabouts_unknown"]})
    with pytest.raises(RuleConfigError, match="LA 202, field remove: unknown section"):
        RuleSet.load(overrides_dir=tmp_path)
    (tmp_path / f"{LA}.yaml").unlink()
    _write(tmp_path, "camden", {"disable": []})
    with pytest.raises(RuleConfigError, match=r"camden\.yaml"):
        RuleSet.load(overrides_dir=tmp_path)


def test_empty_override_file_means_defaults(tmp_path: Path, rules: RuleSet) -> None:
    (tmp_path / f"{LA}.yaml").write_text("")
    assert RuleSet.load(overrides_dir=tmp_path).rules_for(LA) == rules.defaults


def test_defaults_file_errors(tmp_path: Path) -> None:
    one = _default_raw("whereabouts_unknown")
    path = tmp_path / "defaults.yaml"
    path.write_text(yaml.safe_dump({"rules": [one, one]}))
    with pytest.raises(RuleConfigError, match="defaults, rule whereabouts_unknown, field id: defined twice"):
        RuleSet.load(defaults_path=path)
    path.write_text(yaml.safe_dump({"rules": [one | {"version": 0}]}))
    with pytest.raises(
        RuleConfigError, match="defaults, rule whereabouts_unknown, field version: must be >= 1"
    ):
        RuleSet.load(defaults_path=path)


def test_programmatic_override_validation(rules: RuleSet) -> None:
    with pytest.raises(RuleConfigError, match="LA 202, rule nope, field disable"):
        RuleSet(rules.defaults, {LA: RuleOverride(disable=frozenset({"nope"}))})
    with pytest.raises(RuleConfigError, match="3 digits"):
        RuleSet(rules.defaults, {"2020": RuleOverride()})


def test_models_are_immutable(rules: RuleSet) -> None:
    rule = rules.rule(LA, "whereabouts_unknown")
    with pytest.raises(ValidationError):
        rule.version = 9  # type: ignore[misc]
