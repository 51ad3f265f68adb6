"""The ops page (ops and admin roles): every service's readiness and figures, the web's own included."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from prometheus_client import REGISTRY, generate_latest

from services.web import opsview
from services.web.context import Ops
from services.web.pages.common import render

router = APIRouter()


@router.get("/ops", response_class=HTMLResponse)
async def ops_page(request: Request, ctx: Ops) -> HTMLResponse:
    own = opsview.ServiceStatus(name="web", url=f"http://127.0.0.1:{ctx.settings.web_port}", ready="ready")
    own.figures, own.by_label = opsview.summarise("web", generate_latest(REGISTRY).decode())
    statuses = await opsview.all_statuses(ctx.settings, own)
    return render(
        request, "ops.html", ctx, statuses=statuses, now=datetime.now().isoformat(timespec="seconds")
    )
