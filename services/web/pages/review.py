"""The possible-duplicate review queue: tracking's review items, a person's decision on one (with a reason),
and undoing a link a person made."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Form, HTTPException, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from services.web.clients import ServiceError
from services.web.context import Reader
from services.web.pages.common import Csrf, Reason, posted, render

router = APIRouter()


@router.get("/review", response_class=HTMLResponse)
async def review_queue(request: Request, ctx: Reader) -> HTMLResponse:
    async with ctx.service("tracking") as tracking:
        items = await tracking.call("GET", "/v1/review-items")
        linked = await tracking.call("GET", "/v1/review-items", params={"status": "linked"})
        cross_la = await tracking.call("GET", "/v1/cross-la/status")
    return render(request, "review.html", ctx, items=items, linked=linked, cross_la=cross_la)


@router.post("/review/{review_id}")
async def review_decision(
    review_id: uuid.UUID,
    ctx: Reader,
    csrf_token: Csrf,
    reason: Reason,
    decision: Annotated[str, Form(pattern="^(link|not_link|confirm|reject)$")],
) -> Response:
    posted(ctx, csrf_token)
    try:
        async with ctx.service("tracking") as tracking:
            await tracking.call(
                "POST",
                f"/v1/review-items/{review_id}/decision",
                json={"decision": decision, "reason": reason},
            )
    except ServiceError as exc:
        raise HTTPException(exc.status_code, exc.detail) from exc
    ctx.audit(f"review_{decision}", str(review_id), reason)
    return RedirectResponse("/review", status.HTTP_303_SEE_OTHER)


@router.post("/review/{review_id}/undo")
async def review_undo(review_id: uuid.UUID, ctx: Reader, csrf_token: Csrf, reason: Reason) -> Response:
    """Undo a link a person made: the two records become two children again."""
    posted(ctx, csrf_token)
    try:
        async with ctx.service("tracking") as tracking:
            await tracking.call("POST", f"/v1/review-items/{review_id}/undo", json={"reason": reason})
    except ServiceError as exc:
        raise HTTPException(exc.status_code, exc.detail) from exc
    ctx.audit("review_undo_link", str(review_id), reason)
    return RedirectResponse("/review", status.HTTP_303_SEE_OTHER)
