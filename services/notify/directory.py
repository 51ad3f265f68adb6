"""The LA directory as plain data, parsed from YAML, and who receives an alert for a ladder level.

Pure logic (no database): the store (``directory_store``) loads the same structure from the notify_* tables.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from typing import Any

from services.notify.models import Channel
from shared.events.internal import LadderLevel
from shared.identifiers import validate_la_code

EMAIL_CHANNELS = (Channel.SMTP, Channel.GOVUK_NOTIFY)


class DirectoryError(ValueError):
    pass


@dataclass(frozen=True)
class Absence:
    starts_at: datetime
    ends_at: datetime
    cover_person_id: str

    def covers(self, at: datetime) -> bool:
        return self.starts_at <= at < self.ends_at


@dataclass(frozen=True)
class Person:
    person_id: str
    display_name: str
    email: str
    absences: tuple[Absence, ...] = ()

    def away_at(self, at: datetime) -> Absence | None:
        return next((a for a in self.absences if a.covers(at)), None)


@dataclass(frozen=True)
class Team:
    team_id: str
    display_name: str
    email: str | None = None
    members: tuple[str, ...] = ()


@dataclass(frozen=True)
class Webhook:
    webhook_id: str
    url: str
    secret_env: str
    levels: frozenset[LadderLevel]


@dataclass(frozen=True)
class LADirectory:
    la_code: str
    email_channel: Channel = Channel.SMTP
    people: Mapping[str, Person] = field(default_factory=dict)
    teams: Mapping[str, Team] = field(default_factory=dict)
    roles: Mapping[LadderLevel, tuple[str, ...]] = field(default_factory=dict)
    webhooks: tuple[Webhook, ...] = ()


@dataclass(frozen=True)
class Recipient:
    """One delivery target: the ledger's (recipient, channel) and where to send."""

    key: str  # "person:<id>", "team:<id>", "webhook:<id>"
    channel: Channel
    address: str
    on_behalf_of: str | None = None  # set when a cover receives for an absent person
    secret_env: str | None = None


def resolve_recipients(directory: LADirectory, level: LadderLevel, at: datetime) -> list[Recipient]:
    """Everyone who must receive an alert at ``level`` at time ``at``, each once, in directory order.

    A team with a shared inbox receives at the inbox; a team without one, at each member. A person away at
    ``at`` is replaced by their cover (following cover chains); when no one in the chain is available the
    original person still receives (an auto-forward may catch it: an alert is never silently dropped).
    """
    recipients: list[Recipient] = []
    seen: set[tuple[str, Channel]] = set()

    def add(recipient: Recipient) -> None:
        if (recipient.key, recipient.channel) not in seen:
            seen.add((recipient.key, recipient.channel))
            recipients.append(recipient)

    def add_person(person_id: str) -> None:
        person = directory.people.get(person_id)
        if person is None:
            raise DirectoryError(f"LA {directory.la_code}: unknown person {person_id!r}")
        actual = _available(directory, person, at)
        add(
            Recipient(
                key=f"person:{actual.person_id}",
                channel=directory.email_channel,
                address=actual.email,
                on_behalf_of=f"person:{person.person_id}" if actual is not person else None,
            )
        )

    for member in directory.roles.get(level, ()):
        kind, _, ident = member.partition(":")
        if kind == "person":
            add_person(ident)
        elif kind == "team":
            team = directory.teams.get(ident)
            if team is None:
                raise DirectoryError(f"LA {directory.la_code}: unknown team {ident!r}")
            if team.email:
                add(
                    Recipient(key=f"team:{team.team_id}", channel=directory.email_channel, address=team.email)
                )
            else:
                for person_id in team.members:
                    add_person(person_id)
        else:
            raise DirectoryError(
                f"LA {directory.la_code}: role member {member!r} is not person:<id> or team:<id>"
            )
    for hook in directory.webhooks:
        if level in hook.levels:
            add(
                Recipient(
                    key=f"webhook:{hook.webhook_id}",
                    channel=Channel.WEBHOOK,
                    address=hook.url,
                    secret_env=hook.secret_env,
                )
            )
    return recipients


def _available(directory: LADirectory, person: Person, at: datetime) -> Person:
    current = person
    visited = {person.person_id}
    while (absence := current.away_at(at)) is not None:
        cover = directory.people.get(absence.cover_person_id)
        if cover is None or cover.person_id in visited:
            return person  # no one in the chain is available: the original still receives
        visited.add(cover.person_id)
        current = cover
    return current


# --- parsing the YAML file ---


def parse_directory(document: Mapping[str, Any]) -> list[LADirectory]:
    """Validate and parse the directory document (see directory.example.yaml); errors name LA and field."""
    las = document.get("las")
    if not isinstance(las, Mapping) or not las:
        raise DirectoryError("the directory needs a non-empty 'las' mapping")
    return [_parse_la(str(code), body or {}) for code, body in las.items()]


def _parse_la(code: str, body: Mapping[str, Any]) -> LADirectory:
    try:
        la_code = validate_la_code(code)
    except ValueError as exc:
        raise DirectoryError(f"LA {code!r}: {exc}") from exc
    where = f"LA {la_code}"
    try:
        email_channel = Channel(body.get("email_channel", Channel.SMTP.value))
    except ValueError as exc:
        raise DirectoryError(f"{where}: email_channel must be one of smtp, govuk_notify") from exc
    if email_channel not in EMAIL_CHANNELS:
        raise DirectoryError(f"{where}: email_channel must be one of smtp, govuk_notify")
    people: dict[str, Person] = {}
    for raw in body.get("people", []) or []:
        pid = _text(raw, "id", where)
        absences = tuple(
            Absence(
                starts_at=_instant(_req(a, "from", f"{where} person {pid}")),
                ends_at=_instant(_req(a, "until", f"{where} person {pid}")),
                cover_person_id=_text(a, "cover", f"{where} person {pid} absence"),
            )
            for a in raw.get("absences", []) or []
        )
        people[pid] = Person(
            pid, str(raw.get("name", pid)), _text(raw, "email", f"{where} person {pid}"), absences
        )
    teams: dict[str, Team] = {}
    for raw in body.get("teams", []) or []:
        tid = _text(raw, "id", where)
        members = tuple(str(m) for m in raw.get("members", []) or [])
        email = raw.get("email")
        if not email and not members:
            raise DirectoryError(f"{where} team {tid}: needs an email inbox or members")
        teams[tid] = Team(tid, str(raw.get("name", tid)), str(email) if email else None, members)
    roles: dict[LadderLevel, tuple[str, ...]] = {}
    for role, members in (body.get("roles", {}) or {}).items():
        try:
            level = LadderLevel(role)
        except ValueError as exc:
            raise DirectoryError(f"{where}: unknown role {role!r}") from exc
        roles[level] = tuple(str(m) for m in members or [])
    webhooks = tuple(
        Webhook(
            webhook_id=_text(raw, "id", f"{where} webhook"),
            url=_text(raw, "url", f"{where} webhook"),
            secret_env=_text(raw, "secret_env", f"{where} webhook"),
            levels=frozenset(LadderLevel(v) for v in raw.get("levels", [lv.value for lv in LadderLevel])),
        )
        for raw in body.get("webhooks", []) or []
    )
    directory = LADirectory(la_code, email_channel, people, teams, roles, webhooks)
    _check_references(directory)
    return directory


def _check_references(d: LADirectory) -> None:
    for person in d.people.values():
        for absence in person.absences:
            if absence.cover_person_id not in d.people:
                raise DirectoryError(
                    f"LA {d.la_code} person {person.person_id}: unknown cover {absence.cover_person_id!r}"
                )
            if absence.ends_at <= absence.starts_at:
                raise DirectoryError(
                    f"LA {d.la_code} person {person.person_id}: absence ends before it starts"
                )
    for team in d.teams.values():
        for member in team.members:
            if member not in d.people:
                raise DirectoryError(f"LA {d.la_code} team {team.team_id}: unknown member {member!r}")
    for level, members in d.roles.items():
        for member in members:
            kind, _, ident = member.partition(":")
            known = (kind == "person" and ident in d.people) or (kind == "team" and ident in d.teams)
            if not known:
                raise DirectoryError(f"LA {d.la_code} role {level.value}: unknown member {member!r}")


def _req(raw: Mapping[str, Any], key: str, where: str) -> Any:
    if key not in raw or raw[key] in (None, ""):
        raise DirectoryError(f"{where}: '{key}' is required")
    return raw[key]


def _text(raw: Mapping[str, Any], key: str, where: str) -> str:
    return str(_req(raw, key, where))


def _instant(value: Any) -> datetime:
    """A date means the start of that day (UTC); a datetime without a zone is taken as UTC."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, date):
        return datetime.combine(value, time(0), tzinfo=UTC)
    parsed = datetime.fromisoformat(str(value))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
