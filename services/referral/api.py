"""The /v1 HTTP API: submit events (one or a batch), referrals, school files; look up an event's status."""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, NamedTuple

import orjson
from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import ValidationError
from sqlalchemy.engine import Engine

from services.referral import imports
from services.referral.groupcommit import GroupCommit
from services.referral.keycache import ClientCache
from services.referral.keys import secret_matches, split_token
from services.referral.metrics import EVENTS_ACCEPTED, EVENTS_DUPLICATE, EVENTS_REJECTED
from services.referral.models import (
    ApiClient,
    BatchResponse,
    ClientKind,
    CorrectionRequest,
    ErrorResponse,
    EventStatus,
    ItemOutcome,
    ItemResult,
    Problem,
    ReferralRequest,
)
from services.referral.openapi import (
    ACCEPTED_RESPONSE,
    BATCH_BODY,
    CORRECTION_BODY,
    CSV_BODY,
    CTF_BODY,
    EVENT_BODY,
    REFERRAL_BODY,
    error_responses,
)
from services.referral.ratelimit import RateLimiter
from services.referral.service import Intake, Item, Outcome, check, derived_event_id, rejection
from services.referral.validation import schema_problems
from shared.auth import InvalidToken, Role, verify_token
from shared.events.envelope import Envelope
from shared.logs import get_logger
from shared.outbox import OutboxRelay
from shared.settings import Settings

log = get_logger(__name__)
MAX_BATCH = 500


class ApiError(Exception):
    """An answer other than success, always as ``{"errors": [{field, rule, message}]}``."""

    def __init__(
        self, status_code: int, problems: list[Problem], headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(problems[0].rule if problems else str(status_code))
        self.status_code = status_code
        self.problems = problems
        self.headers = headers or {}

    def response(self) -> JSONResponse:
        body = ErrorResponse(errors=self.problems).model_dump()
        return JSONResponse(body, self.status_code, headers=self.headers)


@dataclass
class ReferralState:
    engine: Engine
    intake: Intake
    limiter: RateLimiter
    relay: OutboxRelay
    settings: Settings
    clients: ClientCache
    writer: GroupCommit


# Called by ``authenticate``, not declared as a dependency (FastAPI would solve it on every request); the
# OpenAPI document still names it on every route that authenticates (``install_openapi``).
bearer = HTTPBearer(auto_error=False, description="The client's API key: `Authorization: Bearer cmek_...`")


# The subject of the web's service tokens: facts caseworkers record in the web come through intake like any
# other source's, under a client of their own LA ("cme-web-<la>").
WEB_SERVICE_SUBJECT = "cme-web"


def web_client(settings: Settings, token: str) -> ApiClient | None:
    """The web's own client for the token's LA, if the token is a valid service token of the web (minted per
    call, short-lived, audience api); None for anything else, which then fails as any invalid key does."""
    try:
        principal = verify_token(settings, token)
    except InvalidToken:
        return None
    if principal.role != Role.SERVICE or principal.sub != WEB_SERVICE_SUBJECT:
        return None
    return ApiClient(
        id=f"{WEB_SERVICE_SUBJECT}-{principal.la_code}",
        name="CME Tracker web",
        kind=ClientKind.AGENCY.value,
        la_code=principal.la_code,
        key_id="",
        key_hash="",
    )


class Caller(NamedTuple):
    """What every /v1 route needs: the service's state and the authenticated client."""

    state: ReferralState
    client: ApiClient


async def authenticate(request: Request) -> Caller:
    """The API client named by the bearer key (looked up through a short cache, the secret checked every
    time), or the web's client of an LA named by a service token of the web; with the service's state.

    One dependency, async, with no sub-dependencies: FastAPI's solving of each dependency costs ~15-20 us of
    CPU a request (measured: state, bearer and client as three cost ~55 us against none, one ~20 us)."""
    state: ReferralState = request.app.state.referral
    credentials: HTTPAuthorizationCredentials | None = await bearer(request)
    unauthorised = {"WWW-Authenticate": "Bearer"}
    if credentials is None:
        raise ApiError(
            401,
            [Problem(field="Authorization", rule="api_key_required", message="send your API key")],
            unauthorised,
        )
    parts = split_token(credentials.credentials)
    if parts is None and "." in credentials.credentials:
        web = web_client(state.settings, credentials.credentials)
        if web is not None:
            return Caller(state, web)
    client = None
    if parts is not None:
        client = state.clients.cached(parts[0]) or await asyncio.to_thread(state.clients.load, parts[0])
    # One answer for unknown, wrong and revoked keys: the caller learns nothing about which clients exist.
    if client is None or parts is None or not secret_matches(parts[1], client.key_hash) or client.revoked_at:
        raise ApiError(
            401,
            [Problem(field="Authorization", rule="api_key_invalid", message="invalid or revoked API key")],
            unauthorised,
        )
    return Caller(state, client)


Authenticated = Annotated[Caller, Depends(authenticate)]


def charge(state: ReferralState, client: ApiClient, cost: int = 1) -> None:
    wait_s = state.limiter.take(client.id, client.rate_per_s, client.burst, cost)
    if wait_s == float("inf"):
        raise ApiError(
            429,
            [
                Problem(
                    field="body",
                    rule="batch_over_burst",
                    message=f"send at most {client.burst} events a request",
                )
            ],
            {"Retry-After": "60"},
        )
    if wait_s > 0:
        retry_after = str(max(1, int(wait_s + 0.999)))
        raise ApiError(
            429,
            [Problem(field="Authorization", rule="rate_limited", message="too many events; slow down")],
            {"Retry-After": retry_after},
        )


def _count(outcomes: list[Outcome]) -> None:
    """The outcome counters, one increment per label (not per event: a batch of 500 is a few calls)."""
    counts: Counter[tuple[Any, str]] = Counter()
    for o in outcomes:
        if o.outcome == ItemOutcome.ACCEPTED:
            counts[EVENTS_ACCEPTED, o.event_type or "unknown"] += 1
        elif o.outcome == ItemOutcome.DUPLICATE:
            counts[EVENTS_DUPLICATE, o.event_type or "unknown"] += 1
        else:
            counts[EVENTS_REJECTED, o.errors[0].rule if o.errors else o.outcome.value] += 1
    for (metric, label), n in counts.items():
        metric.labels(label).inc(n)


# Checking a few events on the event loop costs less than a hop to a worker thread (~40 us an event).
INLINE_CHECK_MAX = 5


def _checked(
    client: ApiClient, data: list[Any], digests: list[str | None] | None
) -> tuple[list[Outcome | Envelope], list[Item]]:
    now = datetime.now(UTC)
    checked = [check(client, item, now) for item in data]
    items = [
        Item.of(client, c, d)
        for c, d in zip(checked, digests or [None] * len(data), strict=True)
        if isinstance(c, Envelope)
    ]
    return checked, items


async def _submit(
    state: ReferralState, client: ApiClient, data: list[Any], digests: list[str | None] | None = None
) -> list[Outcome]:
    """Check each item, store the good ones (group commit: answered once committed), and wake the relay."""
    if len(data) <= INLINE_CHECK_MAX:
        checked, items = _checked(client, data, digests)
    else:
        checked, items = await asyncio.to_thread(_checked, client, data, digests)
    stored = iter(await state.writer.store(items) if items else [])
    outcomes = [next(stored) if isinstance(c, Envelope) else c for c in checked]
    _count(outcomes)
    if any(o.outcome == ItemOutcome.ACCEPTED for o in outcomes):
        state.relay.wakeup.set()
    log.info(
        "events_submitted",
        client_id=client.id,
        la_code=client.la_code,
        school_urn=client.school_urn,
        **{k.value: sum(o.outcome == k for o in outcomes) for k in ItemOutcome},
    )
    return outcomes


def _results(outcomes: list[Outcome], indexes: list[int] | None = None) -> BatchResponse:
    results = [
        ItemResult(
            index=indexes[i] if indexes else i,
            event_id=o.event_id,
            outcome=o.outcome,
            status_code=o.status_code,
            errors=o.errors,
        )
        for i, o in enumerate(outcomes)
    ]
    return BatchResponse(
        accepted=sum(o.outcome == ItemOutcome.ACCEPTED for o in outcomes),
        duplicates=sum(o.outcome == ItemOutcome.DUPLICATE for o in outcomes),
        rejected=sum(o.outcome not in (ItemOutcome.ACCEPTED, ItemOutcome.DUPLICATE) for o in outcomes),
        results=results,
    )


router = APIRouter(prefix="/v1")


@router.post(
    "/events",
    status_code=202,
    summary="Submit one inbound event",
    description=(
        "Validates the event (schema and service rules) and accepts it into the durable outbox: 202 means it "
        "will be published to the intake topic. `event_id` is the idempotency key: a retry of the same event "
        "gets the first response again; the same `event_id` with other content is a 409."
    ),
    responses={202: ACCEPTED_RESPONSE, **error_responses(403, 409, 413, 422)},
    openapi_extra={"requestBody": EVENT_BODY},
    tags=["events"],
)
async def submit_event(request: Request, caller: Authenticated) -> JSONResponse:
    state, client = caller
    charge(state, client)
    outcome = (await _submit(state, client, [await request.body()]))[0]
    return JSONResponse(outcome.body, outcome.status_code)


@router.post(
    "/events/batch",
    response_model=BatchResponse,
    summary="Submit up to 500 events, with a result for each",
    description="Each item is checked and accepted or refused on its own, as `POST /v1/events` would.",
    responses=error_responses(413, 422),
    openapi_extra={"requestBody": BATCH_BODY},
    tags=["events"],
)
async def submit_batch(request: Request, caller: Authenticated) -> BatchResponse:
    state, client = caller
    try:
        body = orjson.loads(await request.body())
    except orjson.JSONDecodeError as exc:
        raise ApiError(
            422, [Problem(field="body", rule="json_invalid", message="the body is not JSON")]
        ) from exc
    events = body.get("events") if isinstance(body, dict) else None
    if not isinstance(events, list) or not 1 <= len(events) <= MAX_BATCH or set(body) != {"events"}:
        raise ApiError(
            422,
            [
                Problem(
                    field="events",
                    rule="batch_shape",
                    message=f'send {{"events": [...]}} with 1 to {MAX_BATCH} events',
                )
            ],
        )
    charge(state, client, len(events))
    return _results(await _submit(state, client, events))


@router.post(
    "/referrals",
    status_code=202,
    summary="Refer a child believed to be missing education",
    description=(
        "For agencies and members of the public (through the LA's front door). The server assigns the "
        "event_id; send an `Idempotency-Key` header to make retries safe (the same key gives the same event)."
    ),
    responses={202: ACCEPTED_RESPONSE, **error_responses(403, 409, 413, 422)},
    openapi_extra={"requestBody": REFERRAL_BODY},
    tags=["referrals"],
)
async def submit_referral(
    request: Request,
    caller: Authenticated,
    idempotency_key: Annotated[
        str | None, Header(alias="Idempotency-Key", min_length=1, max_length=200)
    ] = None,
) -> JSONResponse:
    state, client = caller
    try:  # read here, not by FastAPI, so a body that is not even JSON gets the same 422 as any other error
        referral = ReferralRequest.model_validate_json(await request.body())
    except ValidationError as exc:
        raise ApiError(422, schema_problems(exc)) from exc
    charge(state, client)
    event_id = (
        derived_event_id(client.id, f"referral\n{idempotency_key}") if idempotency_key else uuid.uuid4()
    )
    event = {
        "event_id": str(event_id),
        "event_type": "referral-received",
        "occurred_at": (referral.occurred_at or datetime.now(UTC)).isoformat(),
        "correlation_id": str(referral.correlation_id) if referral.correlation_id else None,
        "source": {"system": "referral-api", "la_code": client.la_code, "school_urn": client.school_urn},
        "payload": referral.model_dump(
            mode="json", exclude={"occurred_at", "correlation_id"}, exclude_none=True
        ),
    }
    # The key stands for the request as sent, so a retry compares requests, not server-filled times.
    digest = hashlib.sha256(referral.model_dump_json().encode()).hexdigest()
    outcome = (await _submit(state, client, [event], [digest]))[0]
    return JSONResponse(outcome.body, outcome.status_code)


@router.get(
    "/events/{event_id}",
    response_model=EventStatus,
    summary="Where a submitted event has got to",
    description=(
        "accepted (in the outbox) -> published (on the intake topic) -> processed (resolved to a child's "
        "case). A client sees only its own events."
    ),
    responses=error_responses(404, 422),
    operation_id="event_status",
    tags=["events"],
)
async def event_status(event_id: uuid.UUID, caller: Authenticated) -> EventStatus:
    state, client = caller
    charge(state, client)
    status = await asyncio.to_thread(state.intake.status, client, event_id)
    if status is None:
        raise ApiError(
            404,
            [Problem(field="event_id", rule="not_found", message="no event with this id from this client")],
        )
    return status


@router.post(
    "/events/{event_id}/correction",
    status_code=202,
    summary="Correct a leaver's destination (a new event that replaces the one named)",
    description=(
        "For a `pupil-left-roll` this client sent: the new destination (and the ground or leaving date if "
        "they change with it). The server builds a new `pupil-left-roll` with everything else of the "
        "original and `payload.corrects_event_id` naming it; tracking folds it in the original's place. "
        "A retry of the same correction gets the same answer; an event already corrected is a 409 naming "
        "the correction (correct that one). Once the original has left the outbox (published rows are kept "
        "30 days) this is a 410: send the corrected `pupil-left-roll` with `payload.corrects_event_id` to "
        "`POST /v1/events` instead."
    ),
    responses={202: ACCEPTED_RESPONSE, **error_responses(403, 404, 409, 410, 413, 422)},
    openapi_extra={"requestBody": CORRECTION_BODY},
    tags=["events"],
)
async def correct_leaver(event_id: uuid.UUID, request: Request, caller: Authenticated) -> JSONResponse:
    state, client = caller
    try:
        correction = CorrectionRequest.model_validate_json(await request.body())
    except ValidationError as exc:
        raise ApiError(422, schema_problems(exc)) from exc
    charge(state, client)
    original, value = await asyncio.to_thread(state.intake.original, client, event_id)
    if original is None:
        raise ApiError(
            404,
            [Problem(field="event_id", rule="not_found", message="no event with this id from this client")],
        )
    if original.event_type != "pupil-left-roll":
        raise ApiError(
            422,
            [
                Problem(
                    field="event_id",
                    rule="not_a_leaver",
                    message="only a pupil-left-roll's destination is corrected this way",
                )
            ],
        )
    if value is None:
        raise ApiError(
            410,
            [
                Problem(
                    field="event_id",
                    rule="original_not_held",
                    message="the original is no longer held: send the corrected pupil-left-roll to "
                    "POST /v1/events with payload.corrects_event_id",
                )
            ],
        )
    digest = hashlib.sha256(f"{event_id}\n{correction.model_dump_json()}".encode()).hexdigest()
    event = corrected_leaver(
        orjson.loads(value), correction, derived_event_id(client.id, f"correction\n{digest}")
    )
    outcome = (await _submit(state, client, [event], [digest]))[0]
    return JSONResponse(outcome.body, outcome.status_code)


def corrected_leaver(
    original: dict[str, Any], correction: CorrectionRequest, event_id: uuid.UUID
) -> dict[str, Any]:
    """The original pupil-left-roll with the corrected fields, naming it in corrects_event_id (the server's
    stamps, recorded_at and the client id, are set again when it is accepted)."""
    payload = {
        **original["payload"],
        **correction.model_dump(mode="json", exclude_none=True),
        "corrects_event_id": original["event_id"],
    }
    occurred_at = original["occurred_at"]
    if correction.leaving_date is not None:
        occurred_at = imports.occurred_at_for(correction.leaving_date)
    source = {k: v for k, v in original["source"].items() if k != "client_id"}
    return {
        "event_id": str(event_id),
        "event_type": "pupil-left-roll",
        "occurred_at": occurred_at,
        "correlation_id": original.get("correlation_id") or original["event_id"],
        "source": source,
        "payload": payload,
    }


def _school_only(client: ApiClient) -> None:
    if client.kind != ClientKind.SCHOOL:
        raise ApiError(
            403,
            [
                Problem(
                    field="Authorization",
                    rule="school_client_required",
                    message="school files come from a school's client",
                )
            ],
        )


def _media_type(request: Request, accepted: tuple[str, ...], what: str) -> None:
    """A file route reads only the type it documents: anything else is a 415, never a guess."""
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type not in accepted:
        raise ApiError(
            415,
            [
                Problem(
                    field="Content-Type",
                    rule="unsupported_media_type",
                    message=f"send the {what} as {' or '.join(accepted)}",
                )
            ],
        )


async def _import(
    state: ReferralState, client: ApiClient, rows: list[imports.Row], fields: dict[str, str]
) -> BatchResponse:
    """Submit a file's rows; every problem names the file's column or element, not the event's field."""
    charge(state, client, max(1, len(rows)))
    good = [r for r in rows if r.event is not None]
    stored = iter(await _submit(state, client, [r.event for r in good]) if good else [])
    outcomes = [next(stored) if r.event is not None else rejection(422, r.problems) for r in rows]
    for row, outcome in zip(rows, outcomes, strict=True):
        if outcome.errors:
            outcome.errors = imports.in_file_terms(outcome.errors, fields)
        if outcome.outcome == ItemOutcome.CONFLICT and row.event is not None:
            outcome.event_id = uuid.UUID(row.event["event_id"])  # the first import's event: correct that
            outcome.errors = [_imported_before(p) for p in outcome.errors]
    return _results(outcomes, [r.index for r in rows])


def _imported_before(problem: Problem) -> Problem:
    """A row whose pupil and leaving date were imported before with other details (a new destination)."""
    if problem.rule != "event_id_reused":
        return problem
    return problem.model_copy(
        update={
            "message": "this pupil's leaving on this date was imported before with other details: to correct "
            "its destination, POST /v1/events/{event_id}/correction with this row's event_id"
        }
    )


@router.post(
    "/imports/leavers-csv",
    response_model=BatchResponse,
    summary="Import a CSV of leavers (one pupil-left-roll per row)",
    description="Columns: "
    + ", ".join(imports.CSV_REQUIRED)
    + " (required), "
    + ", ".join(imports.CSV_OPTIONAL)
    + " (optional). Results are per row, numbered as a spreadsheet numbers them.",
    responses=error_responses(403, 413, 415, 422),
    openapi_extra={"requestBody": CSV_BODY},
    tags=["imports"],
)
async def import_leavers_csv(request: Request, caller: Authenticated) -> BatchResponse:
    state, client = caller
    _school_only(client)
    _media_type(request, imports.CSV_MEDIA_TYPES, "leavers CSV")
    try:
        rows = imports.leavers_from_csv(client, await request.body())
    except imports.FileRejected as exc:
        raise ApiError(422, exc.problems) from exc
    return await _import(state, client, rows, imports.CSV_FIELDS)


@router.post(
    "/imports/ctf",
    response_model=BatchResponse,
    summary="Import the Common Transfer File of leaving pupils",
    description=(
        "The DfE CTF XML the school sends when pupils leave: one pupil-left-roll per Pupil. Destination "
        "XXXXXXX is unknown, MMMMMMM independent or outside England and Wales. DTDs and entities are "
        "refused. A file whose DestSchool is its own SourceSchool, or whose pupils have no LeavingDate at "
        "the source school, is not a file of leavers: 422 `not_a_leavers_file`."
    ),
    responses=error_responses(400, 403, 413, 415, 422),
    openapi_extra={"requestBody": CTF_BODY},
    tags=["imports"],
)
async def import_ctf(
    request: Request,
    caller: Authenticated,
    deletion_ground: Annotated[
        str | None, Query(pattern="^[a-o]$", description="Regulation 9(1) ground for every pupil in the file")
    ] = None,
) -> BatchResponse:
    state, client = caller
    _school_only(client)
    _media_type(request, imports.CTF_MEDIA_TYPES, "Common Transfer File")
    try:
        root = imports.parse_ctf(await request.body())
    except imports.FileRejected as exc:
        raise ApiError(400, exc.problems) from exc
    forbidden = imports.ctf_source_problems(client, root)
    if forbidden:
        raise ApiError(403, forbidden)
    try:
        rows = imports.leavers_from_ctf(client, root, deletion_ground)
    except imports.FileRejected as exc:
        raise ApiError(422, exc.problems) from exc
    return await _import(state, client, rows, imports.CTF_FIELDS)


def validation_problems(exc: ValidationError | Any) -> list[Problem]:
    """FastAPI's request errors in the service's shape (the 'body' / 'query' prefix kept only as context)."""
    problems = schema_problems(exc) if isinstance(exc, ValidationError) else []
    for err in getattr(exc, "errors", list)() if not problems else []:
        loc = [str(p) for p in err.get("loc", ()) if p != "body"]
        problems.append(
            Problem(
                field=".".join(loc) or "body",
                rule=str(err.get("type", "invalid")),
                message=str(err.get("msg", "")),
            )
        )
    return problems
