"""The directory in the notify_* tables: loaded from the YAML file, read back for recipient resolution."""

from __future__ import annotations

import uuid
from pathlib import Path

import yaml
from sqlmodel import Session, col, delete, select

from services.notify.directory import Absence, LADirectory, Person, Team, Webhook, parse_directory
from services.notify.models import (
    Channel,
    NotifyAbsence,
    NotifyLA,
    NotifyPerson,
    NotifyRoleMember,
    NotifyTeam,
    NotifyTeamMember,
    NotifyWebhook,
    aware,
)
from shared.events.internal import LadderLevel

_TABLES = (
    NotifyAbsence,
    NotifyRoleMember,
    NotifyTeamMember,
    NotifyTeam,
    NotifyPerson,
    NotifyWebhook,
    NotifyLA,
)


def read_directory_file(path: Path) -> list[LADirectory]:
    return parse_directory(yaml.safe_load(path.read_text(encoding="utf-8")) or {})


def store_directory(session: Session, directories: list[LADirectory]) -> None:
    """Replace each named LA's directory in the caller's transaction (other LAs are untouched)."""
    for d in directories:
        for table in _TABLES:
            session.exec(delete(table).where(col(table.la_code) == d.la_code))  # type: ignore[attr-defined]
        version = uuid.uuid4().hex  # a new one every time: see NotifyLA.version
        session.add(NotifyLA(la_code=d.la_code, email_channel=d.email_channel.value, version=version))
        for p in d.people.values():
            session.add(
                NotifyPerson(
                    la_code=d.la_code, person_id=p.person_id, display_name=p.display_name, email=p.email
                )
            )
            for a in p.absences:
                session.add(
                    NotifyAbsence(
                        la_code=d.la_code,
                        person_id=p.person_id,
                        starts_at=a.starts_at,
                        ends_at=a.ends_at,
                        cover_person_id=a.cover_person_id,
                    )
                )
        for t in d.teams.values():
            session.add(
                NotifyTeam(la_code=d.la_code, team_id=t.team_id, display_name=t.display_name, email=t.email)
            )
            for m in t.members:
                session.add(NotifyTeamMember(la_code=d.la_code, team_id=t.team_id, person_id=m))
        for level, members in d.roles.items():
            for position, member in enumerate(members):
                session.add(
                    NotifyRoleMember(la_code=d.la_code, role=level.value, member=member, position=position)
                )
        for w in d.webhooks:
            levels = ",".join(sorted(lv.value for lv in w.levels))
            session.add(
                NotifyWebhook(
                    la_code=d.la_code,
                    webhook_id=w.webhook_id,
                    url=w.url,
                    secret_env=w.secret_env,
                    levels=levels,
                )
            )


# This process's copies of the directories it has read: la_code -> (the stored version, the directory).
_READ: dict[str, tuple[str, LADirectory]] = {}


def load_directory(session: Session, la_code: str) -> LADirectory | None:
    """The LA's directory as stored, read in the caller's transaction. Its version is read every time (one
    row): while it matches the copy this process read before, the copy is returned instead of reading the
    six tables again, once for each alert."""
    la = session.get(NotifyLA, la_code)
    if la is None:
        return None
    kept = _READ.get(la_code)
    if la.version and kept is not None and kept[0] == la.version:
        return kept[1]
    directory = _read_directory(session, la)
    if la.version:
        _READ[la_code] = (la.version, directory)
    return directory


def _read_directory(session: Session, la: NotifyLA) -> LADirectory:
    la_code = la.la_code
    absences: dict[str, list[Absence]] = {}
    for a in session.exec(select(NotifyAbsence).where(NotifyAbsence.la_code == la_code)).all():
        absences.setdefault(a.person_id, []).append(
            Absence(aware(a.starts_at), aware(a.ends_at), a.cover_person_id)
        )
    people = {
        p.person_id: Person(p.person_id, p.display_name, p.email, tuple(absences.get(p.person_id, ())))
        for p in session.exec(select(NotifyPerson).where(NotifyPerson.la_code == la_code)).all()
    }
    members: dict[str, list[str]] = {}
    for m in session.exec(select(NotifyTeamMember).where(NotifyTeamMember.la_code == la_code)).all():
        members.setdefault(m.team_id, []).append(m.person_id)
    teams = {
        t.team_id: Team(t.team_id, t.display_name, t.email, tuple(sorted(members.get(t.team_id, []))))
        for t in session.exec(select(NotifyTeam).where(NotifyTeam.la_code == la_code)).all()
    }
    roles: dict[LadderLevel, list[str]] = {}
    role_rows = session.exec(
        select(NotifyRoleMember)
        .where(NotifyRoleMember.la_code == la_code)
        .order_by(col(NotifyRoleMember.position))
    ).all()
    for r in role_rows:
        roles.setdefault(LadderLevel(r.role), []).append(r.member)
    webhooks = tuple(
        Webhook(
            w.webhook_id, w.url, w.secret_env, frozenset(LadderLevel(v) for v in w.levels.split(",") if v)
        )
        for w in session.exec(select(NotifyWebhook).where(NotifyWebhook.la_code == la_code)).all()
    )
    return LADirectory(
        la_code=la_code,
        email_channel=Channel(la.email_channel),
        people=people,
        teams=teams,
        roles={k: tuple(v) for k, v in roles.items()},
        webhooks=webhooks,
    )
