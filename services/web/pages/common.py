"""What every page module uses: the template environment, ``render``, the CSRF check and the form fields
several pages share. Personal data (UPN, names, dates of birth, notes) is only ever in POST bodies and pages,
never in URLs or logs."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Annotated, Any

from fastapi import Form, HTTPException, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates
from jinja2 import ChoiceLoader, Environment, FileSystemLoader, PackageLoader, PrefixLoader

from services.web import metrics, words
from services.web.context import Ctx
from services.web.sessions import check_csrf
from shared.events.vocab import ResolutionReason

TEMPLATES_DIR = Path(__file__).parent.parent / "templates"
templates = Jinja2Templates(
    env=Environment(
        loader=ChoiceLoader(
            [
                FileSystemLoader(str(TEMPLATES_DIR)),
                # GOV.UK Design System components: {% from "govuk_frontend_jinja/components/.../macro.html" %}
                PrefixLoader({"govuk_frontend_jinja": PackageLoader("govuk_frontend_jinja")}),
            ]
        ),
        autoescape=True,
    )
)
templates.env.filters.update(
    state_words=words.state_words, reason_words=words.reason_words, fact_words=words.fact_words,
    in_words=words.in_words,
)  # fmt: skip
# Resolving an alert needs one of these (audited); it stops the alerts and never closes the case.
templates.env.globals["RESOLUTION_REASONS"] = [
    (r.value, words.in_words(r.value, words.RESOLUTIONS)) for r in ResolutionReason
]
Reason = Annotated[str, Form(min_length=3, max_length=500)]
Csrf = Annotated[str, Form()]
# Where an action returns to: the inbox (with its page and filters) or a case page; never another site.
BACK_PATTERN = r"^/(inbox|cases)(/[0-9a-f-]{36})?(\?[A-Za-z0-9=&_-]*)?$"
PAGE_SIZE = 50


def posted(ctx: Ctx, csrf: str) -> None:
    check_csrf(ctx.settings, ctx.token, csrf)


def render(request: Request, name: str, ctx: Ctx | None, code: int = 200, **values: Any) -> HTMLResponse:
    metrics.PAGE_VIEWS.labels(page=name.removesuffix(".html")).inc()
    values.update(ctx=ctx, who=ctx.who if ctx else None, csrf=ctx.csrf if ctx else None)
    return templates.TemplateResponse(request, name, values, status_code=code)


def pages_of(total: int) -> int:
    """How many pages of PAGE_SIZE rows ``total`` rows make (at least one)."""
    return max(1, -(-total // PAGE_SIZE))


def day_of(value: str) -> date:
    """A form's YYYY-MM-DD date, or 422."""
    try:
        return date.fromisoformat(value)
    except ValueError as exc:
        raise HTTPException(422, "dates are YYYY-MM-DD") from exc
