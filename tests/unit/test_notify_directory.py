"""Directory parsing and recipient resolution: roles, teams, cover when a person is away."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from services.notify.directory import DirectoryError, parse_directory, resolve_recipients
from services.notify.models import Channel
from shared.events.internal import LadderLevel

EXAMPLE = Path(__file__).resolve().parents[2] / "services" / "notify" / "directory.example.yaml"
DURING_HOLIDAY = datetime(2026, 12, 28, 9, tzinfo=UTC)
ORDINARY_DAY = datetime(2026, 11, 24, 9, tzinfo=UTC)


def _doc(**la: object) -> dict[str, object]:
    base: dict[str, object] = {
        "people": [
            {"id": "a", "email": "a@example.gov.uk"},
            {"id": "b", "email": "b@example.gov.uk"},
            {"id": "c", "email": "c@example.gov.uk"},
        ],
        "roles": {"caseworker": ["person:a"]},
    }
    base.update(la)
    return {"las": {"801": base}}


def test_example_directory_parses_and_routes_every_level() -> None:
    (d,) = parse_directory(yaml.safe_load(EXAMPLE.read_text()))
    assert d.la_code == "801"
    for level in LadderLevel:
        assert resolve_recipients(d, level, ORDINARY_DAY), level


def test_caseworker_receives_by_email_on_an_ordinary_day() -> None:
    (d,) = parse_directory(yaml.safe_load(EXAMPLE.read_text()))
    (r,) = resolve_recipients(d, LadderLevel.CASEWORKER, ORDINARY_DAY)
    assert (r.key, r.channel, r.address, r.on_behalf_of) == (
        "person:jsmith",
        Channel.SMTP,
        "jo.smith@example.gov.uk",
        None,
    )


def test_cover_receives_while_the_person_is_away() -> None:
    (d,) = parse_directory(yaml.safe_load(EXAMPLE.read_text()))
    (r,) = resolve_recipients(d, LadderLevel.CASEWORKER, DURING_HOLIDAY)
    assert (r.key, r.address, r.on_behalf_of) == (
        "person:rpatel",
        "ravi.patel@example.gov.uk",
        "person:jsmith",
    )


def test_absence_until_is_exclusive() -> None:
    (d,) = parse_directory(yaml.safe_load(EXAMPLE.read_text()))
    back = datetime(2027, 1, 4, 0, tzinfo=UTC)
    (r,) = resolve_recipients(d, LadderLevel.CASEWORKER, back)
    assert r.key == "person:jsmith"


def test_cover_chain_is_followed_and_a_cycle_falls_back_to_the_original() -> None:
    away = {"from": "2026-12-01", "until": "2027-01-01"}
    doc = _doc(
        people=[
            {"id": "a", "email": "a@x.gov.uk", "absences": [{**away, "cover": "b"}]},
            {"id": "b", "email": "b@x.gov.uk", "absences": [{**away, "cover": "c"}]},
            {"id": "c", "email": "c@x.gov.uk"},
        ]
    )
    (d,) = parse_directory(doc)
    (r,) = resolve_recipients(d, LadderLevel.CASEWORKER, DURING_HOLIDAY)
    assert (r.key, r.on_behalf_of) == ("person:c", "person:a")

    cyclic = _doc(
        people=[
            {"id": "a", "email": "a@x.gov.uk", "absences": [{**away, "cover": "b"}]},
            {"id": "b", "email": "b@x.gov.uk", "absences": [{**away, "cover": "a"}]},
        ]
    )
    (d,) = parse_directory(cyclic)
    (r,) = resolve_recipients(d, LadderLevel.CASEWORKER, DURING_HOLIDAY)
    assert (r.key, r.on_behalf_of) == ("person:a", None)  # never dropped: the original still receives


def test_team_inbox_versus_members_and_no_duplicates() -> None:
    doc = _doc(
        teams=[
            {"id": "mash", "email": "mash@x.gov.uk"},
            {"id": "duty", "members": ["a", "b"]},
        ],
        roles={"childrens_social_care": ["team:mash", "team:duty", "person:a"]},
    )
    (d,) = parse_directory(doc)
    keys = [r.key for r in resolve_recipients(d, LadderLevel.CHILDRENS_SOCIAL_CARE, ORDINARY_DAY)]
    assert keys == ["team:mash", "person:a", "person:b"]


def test_cover_who_is_also_in_the_role_receives_once() -> None:
    doc = _doc(
        people=[
            {
                "id": "a",
                "email": "a@x.gov.uk",
                "absences": [{"from": "2026-12-01", "until": "2027-01-01", "cover": "b"}],
            },
            {"id": "b", "email": "b@x.gov.uk"},
        ],
        roles={"caseworker": ["person:a", "person:b"]},
    )
    (d,) = parse_directory(doc)
    assert [r.key for r in resolve_recipients(d, LadderLevel.CASEWORKER, DURING_HOLIDAY)] == ["person:b"]


def test_webhooks_receive_only_their_levels() -> None:
    hook = {"id": "cms", "url": "https://cms.example/hook", "secret_env": "X", "levels": ["police"]}
    (d,) = parse_directory(_doc(webhooks=[hook]))
    assert [r.channel for r in resolve_recipients(d, LadderLevel.CASEWORKER, ORDINARY_DAY)] == [Channel.SMTP]
    assert resolve_recipients(d, LadderLevel.POLICE, ORDINARY_DAY)[0].channel is Channel.WEBHOOK


def test_govuk_notify_as_the_email_channel() -> None:
    (d,) = parse_directory(_doc(email_channel="govuk_notify"))
    assert resolve_recipients(d, LadderLevel.CASEWORKER, ORDINARY_DAY)[0].channel is Channel.GOVUK_NOTIFY


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"roles": {"caseworker": ["person:nobody"]}}, "unknown member 'person:nobody'"),
        ({"roles": {"headteacher": ["person:a"]}}, "unknown role 'headteacher'"),
        ({"email_channel": "fax"}, "email_channel"),
        ({"email_channel": "webhook"}, "email_channel"),
        ({"teams": [{"id": "t"}]}, "needs an email inbox or members"),
        ({"people": [{"id": "a"}]}, "'email' is required"),
        (
            {
                "people": [
                    {
                        "id": "a",
                        "email": "a@x",
                        "absences": [{"from": "2026-01-02", "until": "2026-01-01", "cover": "a"}],
                    }
                ]
            },
            "absence ends before it starts",
        ),
    ],
)
def test_invalid_directories_are_refused_with_a_reason(change: dict[str, object], message: str) -> None:
    with pytest.raises(DirectoryError, match=message):
        parse_directory(_doc(**change))


def test_bad_la_code_is_refused() -> None:
    with pytest.raises(DirectoryError, match="LA '8x1'"):
        parse_directory({"las": {"8x1": {}}})
