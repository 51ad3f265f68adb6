"""The web's pages, one module per part of the site, each with a module-level ``router``: sign-in, the alert
inbox and alert actions, the work queues, the case page and its casework forms, search, the duplicate review
queue, the register, reports and CSV returns, and the ops page.

Handlers are thin: they check the session, role and CSRF token, call the domain modules (``casework``,
``queue``, ``facts``, ``reports``, ``allocation``) and the services, audit, and render. Every page needs
a session (else: redirect to /sign-in); every POST checks the CSRF token; children's data is fetched from
tracking and notify with the person's own token, so those services apply the LA scope; personal data (UPN,
names, dates of birth, notes) is only ever in POST bodies and pages, never in URLs or logs.
"""

from __future__ import annotations

from fastapi import APIRouter

from services.web.pages import alerts, cases, ops, queue, register, reports, review, search, sign_in

ROUTERS: tuple[APIRouter, ...] = (
    sign_in.router,
    alerts.router,
    queue.router,
    cases.router,
    search.router,
    review.router,
    register.router,
    reports.router,
    ops.router,
)
