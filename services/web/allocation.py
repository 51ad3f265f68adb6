"""Automatic allocation: every open case of an LA gets an owner by the LA's allocation policy, without anybody
clicking, and a case the policy cannot allocate says why (the "Nobody's" queue).

The policy is per LA (``CME_WEB_ALLOCATION_FILE``, YAML; docs/WEB.md "Allocation"):

    "801":
      default: team:cme              # every new case of the LA, unless a school rule says otherwise
      schools:                       # by the school that last named the child when the case opened (URN)
        "100001": team:north
        "100002": alex

The decision is a pure function of the policy, the LA's active casework accounts and two facts tracking keeps
in event time (the case is open, and the school of the latest fact by the moment it opened), so it does not
depend on when the allocator ran or which replica got there first. It is made once: an owner is written only
where there is none (a person's "Take" or reassignment always wins and is never overwritten), audited as
``case_owner_auto`` by ``cme-web-allocation``. A person who sets the owner to nobody hands the case back to
the policy. Ownership is the web's own (``web_case_work``): the allocator learns which cases are open by
asking tracking (``POST /v1/cases/query``, scoped to the LA by its token), every few seconds and before the
Nobody's queue is shown.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import yaml
from sqlalchemy import update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from services.web import metrics
from services.web.clients import ServiceClient
from services.web.models import WebAudit, WebCaseWork, WebUser
from services.web.settings import WebSettings
from shared.auth import CASE_READERS, Role, issue_token
from shared.identifiers import ascii_digits, validate_la_code
from shared.logs import get_logger

log = get_logger(__name__)
ALLOCATOR = "cme-web-allocation"  # the subject of automatic assignments in web_audit and at tracking
TEAM_PREFIX = "team:"
QUERY_PAGE = 500  # tracking's largest page
TOKEN_TTL_S = 120
RETRY_FAILED_AFTER = timedelta(minutes=5)  # the background round; the Nobody's queue tries every failed case


class PolicyError(ValueError):
    pass


@dataclass(frozen=True)
class LAPolicy:
    default: str | None = None
    schools: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Accounts:
    """Who can own a case of the LA now: active casework accounts, and teams with such a member."""

    people: frozenset[str]
    teams: frozenset[str]

    def can_own(self, owner: str) -> bool:
        if owner.startswith(TEAM_PREFIX):
            return owner.removeprefix(TEAM_PREFIX) in self.teams
        return owner in self.people


@dataclass(frozen=True)
class Decision:
    owner: str | None
    rule: str  # which rule decided ("school 100001", "the LA's default"), in words
    problem: str | None = None  # why there is no owner


def decide(policy: LAPolicy | None, opening_school_urn: str | None, accounts: Accounts) -> Decision:
    """The owner of a newly open case: the rule for its school, else the LA's default; no owner (and why)
    when the LA has no policy or the owner it names cannot hold cases."""
    if policy is None:
        return Decision(None, "none", "no allocation policy for this LA: ask an administrator to set one")
    if opening_school_urn and opening_school_urn in policy.schools:
        owner, rule = policy.schools[opening_school_urn], f"the rule for school {opening_school_urn}"
    elif policy.default:
        owner, rule = policy.default, "the LA's default"
    else:
        school = f"school {opening_school_urn}" if opening_school_urn else "no known school"
        return Decision(None, "none", f"no allocation rule matches ({school}) and the policy has no default")
    if not accounts.can_own(owner):
        shown = f"team {owner.removeprefix(TEAM_PREFIX)}" if owner.startswith(TEAM_PREFIX) else owner
        return Decision(None, rule, f"{rule} names {shown}, who has no active casework account in this LA")
    return Decision(owner, rule)


# --- the policy file ---------------------------------------------------------------------------------


def parse_policies(document: Any) -> dict[str, LAPolicy]:
    if document is None:
        return {}
    if not isinstance(document, Mapping):
        raise PolicyError("the allocation file is a mapping of LA codes to policies")
    out: dict[str, LAPolicy] = {}
    for code, body in document.items():
        try:
            la = validate_la_code(str(code))
        except ValueError as exc:
            raise PolicyError(f"LA {code!r}: {exc}") from exc
        body = body or {}
        if not isinstance(body, Mapping):
            raise PolicyError(f"LA {la}: a policy has 'default' and 'schools'")
        default = body.get("default")
        schools = body.get("schools") or {}
        if not isinstance(schools, Mapping):
            raise PolicyError(f"LA {la}: 'schools' maps a school's URN to an owner")
        for urn in schools:
            if not ascii_digits(str(urn)) or len(str(urn)) != 6:
                raise PolicyError(f"LA {la}: {urn!r} is not a school URN (six digits)")
        owners = [default, *schools.values()] if default else list(schools.values())
        for owner in owners:
            if not isinstance(owner, str) or not owner.strip() or owner == TEAM_PREFIX:
                raise PolicyError(f"LA {la}: an owner is a username or team:<name>, not {owner!r}")
        out[la] = LAPolicy(default=default, schools={str(k): str(v) for k, v in schools.items()})
    return out


def load_policies(path: Path | None) -> dict[str, LAPolicy]:
    if path is None:
        return {}
    return parse_policies(yaml.safe_load(Path(path).read_text()))


# --- applying decisions --------------------------------------------------------------------------------


def accounts_of(engine: Engine, la_code: str) -> Accounts:
    with Session(engine) as session:
        users = session.exec(
            select(WebUser).where(WebUser.la_code == la_code, col(WebUser.disabled).is_(False))
        ).all()
    active = [u for u in users if u.role in CASE_READERS]
    return Accounts(frozenset(u.username for u in active), frozenset(u.team for u in active if u.team))


def _audit(session: Session, la_code: str, action: str, case_id: str, detail: str) -> None:
    session.add(
        WebAudit(
            subject=ALLOCATOR, role=Role.SERVICE, la_code=la_code, action=action, target=case_id,
            reason="allocation policy", detail=detail[:200],
        )
    )  # fmt: skip


def apply(engine: Engine, la_code: str, case_id: str, decision: Decision) -> str:
    """Write the decision where the case has no owner; "allocated", "failed", "unchanged" or "owned"."""
    now = datetime.now(UTC)
    with Session(engine) as session:
        work = session.get(WebCaseWork, case_id)
        if work is not None and (work.la_code != la_code or work.owner):
            return "owned"
        if decision.owner is not None:
            values: dict[str, Any] = {
                "owner": decision.owner, "owner_set_by": ALLOCATOR, "owner_set_at": now,
                "owner_source": "policy", "allocation_problem": None, "allocation_tried_at": now,
            }  # fmt: skip
            outcome, action, detail = (
                "allocated",
                "case_owner_auto",
                f"owner {decision.owner} by {decision.rule}",
            )
        else:
            values = {"allocation_problem": decision.problem, "allocation_tried_at": now}
            unchanged = work is not None and work.allocation_problem == decision.problem
            outcome, action, detail = (
                ("unchanged", "", "")
                if unchanged
                else ("failed", "case_allocation_failed", decision.problem or "")
            )
        if work is None:
            session.add(WebCaseWork(case_id=case_id, la_code=la_code, **values))
        else:
            # Only where nobody owns it yet: a person who took the case meanwhile keeps it.
            done = session.execute(
                update(WebCaseWork)
                .where(col(WebCaseWork.case_id) == case_id, col(WebCaseWork.owner).is_(None))
                .values(**values)
            )
            if done.rowcount == 0:  # type: ignore[attr-defined]
                session.rollback()
                return "owned"
        if action:
            _audit(session, la_code, action, case_id, detail)
        try:
            session.commit()
        except IntegrityError:  # another replica wrote the same case first: its decision stands
            session.rollback()
            return "owned"
    return outcome


def allocate_items(
    engine: Engine, la_code: str, policy: LAPolicy | None, items: Iterable[dict[str, Any]]
) -> dict[str, int]:
    """Decide and write an owner for each open case of tracking's ``/v1/cases/query`` items."""
    accounts = accounts_of(engine, la_code)
    counts: dict[str, int] = {}
    for item in items:
        decision = decide(policy, item.get("opening_school_urn"), accounts)
        outcome = apply(engine, la_code, item["case"]["case_id"], decision)
        counts[outcome] = counts.get(outcome, 0) + 1
        if outcome in ("allocated", "failed"):
            metrics.ALLOCATIONS.labels(outcome=outcome).inc()
    return counts


def _settled(engine: Engine, la_code: str, failed_since: datetime | None) -> list[str]:
    """Cases not to ask about: those with an owner, and those that failed since ``failed_since``."""
    with Session(engine) as session:
        rows = session.exec(
            select(WebCaseWork.case_id, WebCaseWork.owner, WebCaseWork.allocation_tried_at).where(
                WebCaseWork.la_code == la_code
            )
        ).all()
    return [
        case_id
        for case_id, owner, tried in rows
        if owner or (failed_since is not None and tried is not None and aware(tried) >= failed_since)
    ]


def aware(at: datetime) -> datetime:
    return at if at.tzinfo else at.replace(tzinfo=UTC)  # SQLite gives naive UTC back


async def allocate_la(
    settings: WebSettings,
    engine: Engine,
    policies: Mapping[str, LAPolicy],
    la_code: str,
    transport: httpx.AsyncBaseTransport | None = None,
    failed_since: datetime | None = None,
) -> dict[str, int]:
    """Allocate every open case of the LA that nobody owns (tracking scopes the query to the LA). A case whose
    allocation failed since ``failed_since`` is not asked about again (None: every case is)."""
    token = issue_token(settings, ALLOCATOR, Role.SERVICE, la_code, TOKEN_TTL_S)
    owned = _settled(engine, la_code, failed_since)
    counts: dict[str, int] = {}
    offset = 0
    async with ServiceClient(settings, "tracking", token, transport) as tracking:
        while True:
            body = {
                "reason": "automatic allocation", "open_only": True, "exclude_case_ids": owned or None,
                "sort": "oldest", "offset": offset, "limit": QUERY_PAGE,
            }  # fmt: skip
            result = await tracking.call("POST", "/v1/cases/query", json=body)
            items = result["items"]
            got = await asyncio.to_thread(allocate_items, engine, la_code, policies.get(la_code), items)
            for k, v in got.items():
                counts[k] = counts.get(k, 0) + v
            offset += len(items)
            if not items or offset >= int(result["total"]):
                return counts


def las_to_allocate(engine: Engine, policies: Mapping[str, LAPolicy]) -> list[str]:
    """The LAs with a policy and those with casework accounts (whose unallocated cases must say why)."""
    with Session(engine) as session:
        users = session.exec(select(WebUser.la_code, WebUser.role).where(col(WebUser.disabled).is_(False)))
        with_staff = {la for la, role in users.all() if role in CASE_READERS}
    return sorted(set(policies) | with_staff)
