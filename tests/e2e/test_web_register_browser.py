"""The register of children not in school in headless Chromium against the whole pipeline run as processes:
a parent's notice comes in through intake; a caseworker views the register, filters it, opens the entry (with
a reason), records a review, and sees the entry take it. Every page is checked for WCAG 2.2 A/AA (axe-core);
no parent's name or the child's UPN reaches the web's log."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import pytest

from devtools.localrun import start_services, stop_services
from devtools.samples import child, sample_event_dict
from shared.localstack.net import free_port
from shared.settings import Settings
from tests.e2e.test_web_browser import DOC_SHOTS, PASSWORD, SIGNING_KEY, browser  # noqa: F401
from tests.support.a11y import violations
from tests.support.kafka import wait_until
from tests.support.pipeline import DIRECTORY, LA

pytestmark = pytest.mark.e2e
PARENT = {
    "name": "Isembard Fallowfield",
    "home_address": "3 Cinder Lane, Bristol",
    "provides_education": True,
}


def test_caseworker_views_filters_opens_and_reviews_the_register(
    browser: Any,  # noqa: F811
    kafka_settings: Settings,
    postgres_url: str,
    tmp_path: Path,
) -> None:
    ports = {n: free_port() for n in ("referral", "tracking", "escalation", "notify", "attendance", "web")}
    shots = DOC_SHOTS if os.environ.get("CME_UPDATE_SCREENSHOTS") == "1" else tmp_path / "screenshots"
    shots.mkdir(parents=True, exist_ok=True)
    directory = tmp_path / "directory.yaml"
    directory.write_text(DIRECTORY)
    web_url = f"http://127.0.0.1:{ports['web']}"
    env = {
        **os.environ,
        "CME_KAFKA_BOOTSTRAP": kafka_settings.kafka_bootstrap,
        "CME_TOPIC_PREFIX": kafka_settings.topic_prefix,
        "CME_TOPIC_PARTITIONS": "2",
        "CME_DATABASE_URL": postgres_url,
        "CME_DATA_DIR": str(tmp_path),
        "CME_SIGNING_KEY": SIGNING_KEY,
        **{f"CME_{name.upper()}_PORT": str(port) for name, port in ports.items()},
        "CME_NOTIFY_SMTP_PORT": str(free_port()),
        "CME_WEB_LAG_INTERVAL_S": "2",
    }
    bin_dir = Path(sys.executable).parent
    subprocess.run([bin_dir / "cme-notify", "load-directory", str(directory)], env=env, check=True)
    subprocess.run(
        [bin_dir / "cme-web", "users", "create", "--la", LA, "--role", "caseworker", "--username", "cw801"],
        env={**env, "CME_WEB_NEW_PASSWORD": PASSWORD}, check=True, capture_output=True,
    )  # fmt: skip
    out = subprocess.run(
        [bin_dir / "cme-referral", "clients", "create", "--la", LA, "--kind", "agency", "--name", "portal"],
        env=env, check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    found = re.search(r"api key:\s+(\S+)", out)
    assert found, out
    settings = Settings(**{f"{n}_port": p for n, p in ports.items()}, data_dir=tmp_path)  # type: ignore[arg-type]
    procs = start_services(settings, env, tmp_path / "logs")
    kid = {**child(71), "address": PARENT["home_address"]}
    try:
        notice = sample_event_dict("not-in-school-notice", kid=kid, on=date(2025, 11, 3), school_urn=None)
        notice["payload"]["parents"] = [PARENT]
        sent = httpx.post(
            f"http://127.0.0.1:{ports['referral']}/v1/events", json=notice,
            headers={"Authorization": f"Bearer {found.group(1)}"}, timeout=30,
        )  # fmt: skip
        assert sent.status_code == 202, sent.text

        page = browser.new_page(viewport={"width": 1200, "height": 900})
        page.goto(f"{web_url}/sign-in")
        page.fill("#username", "cw801")
        page.fill("#password", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url(f"{web_url}/inbox")

        def register(category: str = "", education: str = "") -> str:
            page.goto(f"{web_url}/register")
            page.select_option("#category", category)
            page.select_option("#education", education)
            page.fill("#reason", "weekly register check")
            page.click("button[type=submit] >> text=Show the register")
            page.wait_for_selector("#register-total")
            return str(page.inner_text("#register-total"))

        problems: dict[str, Any] = {}
        wait_until(lambda: register() == "1 on the register", timeout_s=90, what="the notice on the register")
        assert kid["upn"] not in page.url
        problems["register"] = violations(page)
        assert register("elective_home_education", "not_yet_assessed") == "1 on the register"
        assert register("missing_education") == "0 on the register"
        register("elective_home_education")
        page.screenshot(path=str(shots / "register.png"), full_page=True)

        page.click("#register-entries a")
        page.fill("#reason", "first visit after the notice")
        page.click("button[type=submit] >> text=Open the entry")
        page.wait_for_selector("#entry-category")
        entry_url = page.url
        assert page.inner_text("#entry-category") == "Home educated"
        assert page.inner_text("#entry-education") == "Not yet assessed"
        assert PARENT["name"] in page.inner_text("#entry-parents")
        problems["register entry"] = violations(page)

        page.select_option("#suitability", "suitable")
        page.fill("#review_on", "2099-02-01")
        page.fill("#note", "Visited the family; a broad curriculum seen")
        with page.expect_navigation():
            page.click("#register-review button[type=submit]")
        page.wait_for_selector("#recorded-title")

        def education_shown() -> str:
            page.goto(entry_url)  # reopened within the half hour: the reason given stands
            return str(page.inner_text("#entry-education"))

        wait_until(lambda: education_shown() == "Suitable", timeout_s=60, what="the review on the entry")
        assert page.inner_text("#entry-review") == "2099-02-01"
        assert "Register entry recorded" in page.inner_text("#entry-history")
        problems["register entry reviewed"] = violations(page)
        page.screenshot(path=str(shots / "register-entry.png"), full_page=True)
        assert not {k: v for k, v in problems.items() if v}, problems  # WCAG 2.2 A/AA by axe-core
    finally:
        stop_services(procs)
    log = (tmp_path / "logs" / "web.log").read_text()
    for personal in (kid["upn"], PARENT["name"], PARENT["home_address"]):
        assert str(personal) not in log
