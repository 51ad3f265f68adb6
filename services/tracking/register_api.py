"""Read API of the LA's register of children not in school (Education Act 1996 s.436B-436G).

The register holds more personal data than a case (the child's home address, parents, providers): every read
is scoped to the caller's LA (another LA's entry is 404, never listed) and audited (tracking_read_audit,
``register_list`` / ``register_read``); searches go in a POST body, never in a URL; nothing here logs."""

from __future__ import annotations

import json
import uuid
from datetime import date, datetime
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, status
from pydantic import BaseModel, Field
from sqlmodel import Session, col, func, select

from services.tracking.audit import audit_read
from services.tracking.deps import EngineDep, ReasonQuery
from services.tracking.matching import normalise_name
from services.tracking.models import (
    TrackingChild,
    TrackingIdentifier,
    TrackingRegisterEntry,
    TrackingRegisterHistory,
)
from services.tracking.register import CATEGORIES
from services.tracking.schemas import Reason
from shared.auth import CaseReader
from shared.events.vocab import EducationSuitability

Category = Annotated[str, Field(pattern="^(" + "|".join(CATEGORIES) + ")$")]


class RegisterQuery(BaseModel):
    """A page of the LA's register, filtered; ``total`` counts every entry the filters match."""

    reason: Reason
    on_register: bool = Field(default=True, description="False: children who have left the register")
    categories: list[Category] | None = Field(default=None, max_length=len(CATEGORIES))
    education: list[EducationSuitability] | None = None
    review_due_by: date | None = Field(default=None, description="Entries with a review on or before")
    surname: str | None = Field(default=None, max_length=100)
    sort: Annotated[str, Field(pattern="^(oldest|newest|surname|review)$")] = "oldest"
    offset: int = Field(default=0, ge=0, le=10_000_000)
    limit: int = Field(default=50, ge=1, le=500)


class RegisterEntryOut(BaseModel):
    child_id: str
    la_code: str
    forename: str | None
    surname: str | None
    date_of_birth: date | None
    upn: str | None
    on_register: bool
    category: str | None
    education: str | None
    arrangement: str | None
    ehe_reason: str | None
    since: datetime | None
    changed_at: datetime | None
    left_at: datetime | None
    left_reason: str | None
    left_ref: str | None  # the school's URN, the accepting LA, the country, the deletion ground
    review_on: date | None
    handed_to: str | None
    school_urn: str | None


class RegisterPage(BaseModel):
    total: int
    items: list[RegisterEntryOut]


class RegisterHistoryOut(BaseModel):
    event_id: str
    event_type: str
    occurred_at: datetime
    change: str
    on_register: bool
    category: str | None
    education: str | None
    left_reason: str | None
    left_ref: str | None
    source_system: str | None


class RegisterEntryDetail(RegisterEntryOut):
    """The entry with the Act's information (s.436C(1)): the latest each fact brought, in event time."""

    home_address: str | None = None
    postcode: str | None = None
    parents: list[dict[str, Any]] = []
    providers: list[dict[str, Any]] = []
    notes: list[str] = []
    sources: list[str] = []  # the systems whose facts built the entry
    history: list[RegisterHistoryOut] = []


ORDER = {
    "oldest": (col(TrackingRegisterEntry.since), col(TrackingRegisterEntry.child_id)),
    "newest": (col(TrackingRegisterEntry.since).desc(), col(TrackingRegisterEntry.child_id)),
    "surname": (col(TrackingChild.surname_norm), col(TrackingRegisterEntry.child_id)),
    "review": (col(TrackingRegisterEntry.review_on), col(TrackingRegisterEntry.child_id)),
}


def _upns(session: Session, la_code: str, child_ids: list[str]) -> dict[str, str]:
    rows = session.exec(
        select(TrackingIdentifier.child_id, TrackingIdentifier.value).where(
            TrackingIdentifier.la_code == la_code,
            TrackingIdentifier.kind == "upn",
            col(TrackingIdentifier.child_id).in_(child_ids),
        )
    ).all()
    return {c: v for c, v in rows}


def _entry_out(entry: TrackingRegisterEntry, child: TrackingChild | None, upn: str | None) -> dict[str, Any]:
    return {
        **entry.model_dump(exclude={"updated_at"}),
        "forename": child.forename if child else None,
        "surname": child.surname if child else None,
        "date_of_birth": child.date_of_birth if child else None,
        "upn": upn,
    }


def act_information(rows: list[TrackingRegisterHistory]) -> dict[str, Any]:
    """The latest home address, parents and providers the facts brought, in event-time order: a provider's
    return replaces that provider's line (by name), ``ceased`` takes it off."""
    out: dict[str, Any] = {"home_address": None, "postcode": None, "parents": [], "notes": []}
    providers: dict[str, dict[str, Any]] = {}
    for row in sorted(rows, key=lambda r: (r.occurred_at, r.event_id)):
        if not row.details:
            continue
        d = json.loads(row.details)
        if d.get("address"):
            out["home_address"] = d["address"]
        if d.get("postcode"):
            out["postcode"] = d["postcode"]
        if d.get("parents"):
            out["parents"] = d["parents"]
        if "providers" in d:
            providers = {p["name"]: p for p in d["providers"]}
        if d.get("provider"):
            if d.get("ceased"):
                providers.pop(d["provider"]["name"], None)
            else:
                providers[d["provider"]["name"]] = d["provider"]
        if d.get("note"):
            out["notes"].append(d["note"])
    out["providers"] = list(providers.values())
    return out


router = APIRouter(prefix="/v1", tags=["register"])


@router.post("/register/query")
def query_register(body: RegisterQuery, who: CaseReader, engine: EngineDep) -> RegisterPage:
    """One page of the LA's register of children not in school; audited as ``register_list``."""
    filters: list[Any] = [
        TrackingRegisterEntry.la_code == who.la_code,
        TrackingRegisterEntry.on_register == body.on_register,
    ]
    if body.categories:
        filters.append(col(TrackingRegisterEntry.category).in_(body.categories))
    if body.education:
        filters.append(col(TrackingRegisterEntry.education).in_([str(e) for e in body.education]))
    if body.review_due_by is not None:
        filters.append(col(TrackingRegisterEntry.review_on) <= body.review_due_by)
    if body.surname:
        filters.append(col(TrackingChild.surname_norm) == normalise_name(body.surname))
    joined = select(TrackingRegisterEntry, TrackingChild).join(
        TrackingChild,
        col(TrackingChild.child_id) == col(TrackingRegisterEntry.child_id),
        isouter=True,
    )
    with Session(engine, expire_on_commit=False) as session:
        total = session.exec(
            select(func.count())
            .select_from(TrackingRegisterEntry)
            .join(
                TrackingChild,
                col(TrackingChild.child_id) == col(TrackingRegisterEntry.child_id),
                isouter=True,
            )
            .where(*filters)
        ).one()
        rows = session.exec(
            joined.where(*filters).order_by(*ORDER[body.sort]).offset(body.offset).limit(body.limit)
        ).all()
        upns = _upns(session, who.la_code, [e.child_id for e, _ in rows])
        audit_read(session, who, "register_list", None, body.reason)
        session.commit()
    items = [RegisterEntryOut.model_validate(_entry_out(e, c, upns.get(e.child_id))) for e, c in rows]
    return RegisterPage(total=int(total), items=items)


@router.get("/register/{child_id}")
def read_entry(
    child_id: uuid.UUID,
    who: CaseReader,
    engine: EngineDep,
    reason: ReasonQuery,
) -> RegisterEntryDetail:
    """A register entry with the Act's information and its history; audited as ``register_read``."""
    with Session(engine, expire_on_commit=False) as session:
        entry = session.get(TrackingRegisterEntry, str(child_id))
        if entry is None or entry.la_code != who.la_code:
            raise HTTPException(status.HTTP_404_NOT_FOUND, "no such register entry")
        child = session.get(TrackingChild, entry.child_id)
        rows = list(
            session.exec(
                select(TrackingRegisterHistory).where(
                    TrackingRegisterHistory.child_id == entry.child_id,
                    TrackingRegisterHistory.la_code == who.la_code,
                )
            ).all()
        )
        upn = _upns(session, who.la_code, [entry.child_id]).get(entry.child_id)
        audit_read(session, who, "register_read", entry.child_id, reason)
        session.commit()
    ordered = sorted(rows, key=lambda r: (r.occurred_at, r.event_id))
    return RegisterEntryDetail.model_validate(
        {
            **_entry_out(entry, child, upn),
            **act_information(ordered),
            "sources": sorted({r.source_system for r in ordered if r.source_system}),
            "history": [RegisterHistoryOut.model_validate(r.model_dump()) for r in ordered],
        }
    )
