"""The web in headless Chromium (Playwright driving /usr/bin/chromium) against the whole pipeline run as
processes: the new case gets its owner by the LA's allocation policy before anybody signs in; a caseworker
signs in, sees the new alert, takes it (the case is theirs), acknowledges it, and the
ladder stops (no step-up email after simulated school days pass); they record three enquiries, the child
located, a place offered and provision started at a school, all through the intake: the case closes and its
timeline shows every step in order. A caseworker of another LA sees none of it. Every page is checked for
WCAG 2.2 A/AA with axe-core. Screenshots go to docs/screenshots/ when CME_UPDATE_SCREENSHOTS=1."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiosmtpd.controller import Controller
from playwright.sync_api import sync_playwright
from sqlalchemy import text

from devtools.localrun import start_services, stop_services
from devtools.samples import child, sample_event_dict
from services.web import words
from services.web.reports import CME_STATES
from shared.db import make_engine
from shared.localstack.net import free_port
from shared.settings import PROJECT_ROOT, Settings
from tests.support.a11y import violations
from tests.support.kafka import wait_until
from tests.support.pipeline import DIRECTORY, LA, Mailbox, set_clock, wait_until_settled

pytestmark = pytest.mark.e2e
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]  # fmt: skip
# The README's screenshots are refreshed only on request (CME_UPDATE_SCREENSHOTS=1); other runs keep theirs in
# the test's own folder, so a test run does not rewrite tracked files.
DOC_SHOTS = PROJECT_ROOT / "docs" / "screenshots"
PASSWORD = "browser-test-password-1"
NEW_SCHOOL = "100002"  # the URN of the school the child is placed at
CME_WORDS = {words.state_words(s) for s in CME_STATES}
SIGNING_KEY = "web-browser-test-signing-key-0123456789"


@pytest.fixture
def mailbox() -> Iterator[tuple[Mailbox, int]]:
    box, port = Mailbox(), free_port()
    controller = Controller(box, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield box, port
    finally:
        controller.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    # `make test` installs Debian's chromium; only someone who opted out (CME_BROWSER_TESTS=0) may skip.
    if not CHROMIUM.exists():
        if os.environ.get("CME_BROWSER_TESTS") == "0":
            pytest.skip("browser tests turned off with CME_BROWSER_TESTS=0")
        pytest.fail("Debian's chromium is missing: run scripts/install-system-deps.sh")
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def test_caseworker_acknowledges_in_the_browser_and_the_ladder_stops(
    browser: Any, kafka_settings: Settings, postgres_url: str, mailbox: tuple[Mailbox, int], tmp_path: Path
) -> None:
    box, smtp_port = mailbox
    ports = {n: free_port() for n in ("referral", "tracking", "escalation", "notify", "attendance", "web")}
    shots = DOC_SHOTS if os.environ.get("CME_UPDATE_SCREENSHOTS") == "1" else tmp_path / "screenshots"
    shots.mkdir(parents=True, exist_ok=True)
    clock = tmp_path / "now.txt"
    set_clock(clock, "2025-11-04T12:00:00+00:00")
    directory = tmp_path / "directory.yaml"
    directory.write_text(DIRECTORY)
    policy = tmp_path / "allocation.yaml"  # the LA's CME caseworker gets every new case
    policy.write_text(f'"{LA}":\n  default: cw801\n')
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
        "CME_NOTIFY_SMTP_PORT": str(smtp_port),
        "CME_NOTIFY_POLL_INTERVAL_S": "0.2",
        "CME_NOTIFY_PUBLIC_BASE_URL": f"http://127.0.0.1:{ports['notify']}",
        "CME_NOTIFY_CASE_BASE_URL": f"{web_url}/cases",
        "CME_ESCALATION_SIMULATED_TIME_FILE": str(clock),
        "CME_ESCALATION_TICK_S": "0.2",
        "CME_WEB_LAG_INTERVAL_S": "2",
        "CME_WEB_ALLOCATION_FILE": str(policy),
        "CME_WEB_ALLOCATION_INTERVAL_S": "1",
    }
    bin_dir = Path(sys.executable).parent
    subprocess.run([bin_dir / "cme-notify", "load-directory", str(directory)], env=env, check=True)
    for username, la, role in (
        ("cw801", LA, "caseworker"),
        ("cw803", "803", "caseworker"),
        ("ops1", LA, "ops"),
    ):
        subprocess.run(
            [bin_dir / "cme-web", "users", "create", "--la", la, "--role", role, "--username", username],
            env={**env, "CME_WEB_NEW_PASSWORD": PASSWORD}, check=True, capture_output=True,
        )  # fmt: skip

    def api_key(*args: str) -> str:
        out = subprocess.run(
            [bin_dir / "cme-referral", "clients", "create", "--la", LA, *args],
            env=env, check=True, capture_output=True, text=True,
        ).stdout  # fmt: skip
        found = re.search(r"api key:\s+(\S+)", out)
        assert found, out
        return found.group(1)

    school_key = api_key("--kind", "school", "--name", "web school", "--urn", "108000")
    team_key = api_key("--kind", "agency", "--name", "LA CME team")
    settings = Settings(**{f"{n}_port": p for n, p in ports.items()}, data_dir=tmp_path)  # type: ignore[arg-type]
    procs = start_services(settings, env, tmp_path / "logs")
    kid = child(1)
    try:
        base = f"http://127.0.0.1:{ports['referral']}"
        for key, event in (
            (school_key, sample_event_dict("pupil-left-roll", kid=kid, on=date(2025, 11, 3))),
            (
                team_key,
                sample_event_dict("whereabouts-unknown", kid=kid, on=date(2025, 11, 4), school_urn=None),
            ),
        ):
            sent = httpx.post(f"{base}/v1/events", json=event, headers={"Authorization": f"Bearer {key}"})
            assert sent.status_code == 202, sent.text
        wait_until(lambda: box.to("caseworker@la.test"), timeout_s=90, what="the caseworker's alert email")
        # Nobody has signed in or clicked: the new case already has its owner, by the LA's policy (audited).
        engine = make_engine(postgres_url)
        with engine.connect() as conn:

            def allocated() -> list[Any]:
                return list(
                    conn.execute(
                        text(
                            "SELECT w.owner, w.owner_source, a.subject FROM web_case_work w "
                            "JOIN web_audit a ON a.target = w.case_id AND a.action = 'case_owner_auto' "
                            "WHERE w.la_code = :la"
                        ),
                        {"la": LA},
                    ).all()
                )

            wait_until(allocated, timeout_s=30, what="the new case allocated by the LA's policy")
            assert [tuple(r) for r in allocated()] == [("cw801", "policy", "cme-web-allocation")]
        engine.dispose()

        page = browser.new_page(viewport={"width": 1200, "height": 900})

        def sign_in(username: str) -> None:
            page.context.clear_cookies()
            page.goto(f"{web_url}/sign-in")
            page.fill("#username", username)
            page.fill("#password", PASSWORD)
            page.click("button[type=submit]")

        page.goto(f"{web_url}/sign-in")
        page.screenshot(path=str(shots / "sign-in.png"))
        signed_out_problems = violations(page)
        sign_in("cw801")
        page.wait_for_selector("tr[data-alert-id]")  # the new alert is in the inbox (waiting alerts only)
        assert page.inner_text("#waiting-count") == "1"
        page.screenshot(path=str(shots / "inbox.png"), full_page=True)

        problems = {"sign-in": signed_out_problems, "inbox": violations(page)}
        case_id = page.get_attribute("tr[data-alert-id]", "data-case-id")
        case_url = f"{web_url}/cases/{case_id}"
        page.click("tr[data-alert-id] form[action$='/take'] button")  # take the alert: the case is mine
        page.fill("#reason", "following up the escalation alert")
        page.click("button[type=submit] >> text=Open the record")
        page.wait_for_selector("dd.state")
        assert page.url == case_url and page.inner_text("dd.state") == "Whereabouts unknown"
        assert page.inner_text("#case-owner") == "cw801"  # the policy's owner: taking the alert kept it
        problems["case"] = violations(page)
        page.click("#case-alerts form[action$='/ack'] button")  # acknowledge from the case page
        page.wait_for_selector("#case-alerts .govuk-tag >> text=Acknowledged")

        # The ack reaches the escalation service through notify's outbox and Kafka.
        engine = make_engine(postgres_url)
        with engine.connect() as conn:
            wait_until(
                lambda: conn.execute(
                    text("SELECT count(*) FROM escalation_escalations WHERE acknowledged_step IS NOT NULL")
                ).scalar(),
                timeout_s=60, what="the escalation service to record the acknowledgement",
            )  # fmt: skip
        engine.dispose()

        page.goto(f"{web_url}/search")
        page.fill("#upn", kid["upn"])
        page.fill("#reason", "checking the record")
        page.click("button[type=submit] >> text=Search")
        page.wait_for_selector("#search-results tbody tr")
        assert kid["upn"] not in page.url
        assert f"{kid['forename']} {kid['surname']}" in page.inner_text("#search-results")
        problems["search"] = violations(page)
        page.screenshot(path=str(shots / "search.png"), full_page=True)
        page.goto(f"{web_url}/inbox?whose=mine&show=all")  # the alerts of my cases
        assert page.inner_text("#alert-count") == "1 alert"
        problems["my alerts"] = violations(page)
        page.goto(f"{web_url}/cases?scope=unassigned")  # every open case has an owner: nobody's is empty
        assert page.inner_text("#case-count") == "0 cases"
        problems["nobody's cases"] = violations(page)
        page.goto(f"{web_url}/review")
        problems["review"] = violations(page)
        page.screenshot(path=str(shots / "review-queue.png"), full_page=True)
        page.goto(f"{web_url}/reports?on=2025-11-20")
        assert page.inner_text("#whereabouts-unknown") == "1"
        problems["reports"] = violations(page)
        page.screenshot(path=str(shots / "snapshot-report.png"), full_page=True)

        # Five school days on, the acknowledged alert does not step up: no email to the senior officer.
        set_clock(clock, "2025-11-12T12:00:00+00:00")
        wait_until_settled(postgres_url, "2025-11-12T12:00:00+00:00")
        assert box.to("senior@la.test") == []
        assert len(box.to("caseworker@la.test")) == 1

        # The casework: three enquiries, the child located, a place offered, provision started at a school.
        page.goto(case_url)  # reopened within the half hour: the reason given stands (and is audited again)
        page.wait_for_selector("dd.state")
        for on, asked, result, contact in (
            ("2025-11-05", "siblings_schools", "not_located", "Head of year, Hillside Primary"),
            ("2025-11-06", "health", "no_response", "School nursing team"),
            ("2025-11-07", "housing", "information_received", "Housing options"),
        ):
            page.fill("#enquiry-on", on)
            page.select_option("#enquiry_type", asked)
            page.check(f"#outcome-{result}")
            page.fill("#contact", contact)
            page.fill("#enquiry-note", f"{contact}: asked on {on}")
            with page.expect_navigation():
                page.click("#enquiry-form button[type=submit]")
            page.wait_for_selector("#recorded-title")
        for event_type, on, fields in (
            ("child-located", "2025-11-10", {}),
            ("place-offered", "2025-11-11", {"school_urn": NEW_SCHOOL}),
            ("provision-started", "2025-11-17", {"school_urn": NEW_SCHOOL}),
        ):
            page.click(f"#outcome-{event_type}-details summary")
            page.fill(f"#{event_type}-on", on)
            for name, value in fields.items():
                page.fill(f"form[data-outcome='{event_type}'] input[name='{name}']", value)
            with page.expect_navigation():
                page.click(f"form[data-outcome='{event_type}'] button[type=submit]")
            page.wait_for_selector("#recorded-title")
        steps = ["Enquiry recorded"] * 3 + ["Child located", "Place offered", "Provision started"]

        def timeline() -> list[str]:
            page.goto(case_url)
            return [
                c.split(" (")[0] for c in page.locator("#timeline tbody tr td:nth-child(2)").all_inner_texts()
            ]

        wait_until(
            lambda: timeline()[-6:] == steps, timeout_s=60, what="the six facts on the timeline, in order"
        )
        assert page.inner_text("dd.state") not in CME_WORDS  # the case is closed: education confirmed

        def facts_shown() -> str:
            page.goto(case_url)
            return str(page.inner_text("#case-facts"))

        wait_until(lambda: NEW_SCHOOL in facts_shown(), timeout_s=30, what="the outcome naming the school")
        assert "Registered at a school: " + NEW_SCHOOL in page.inner_text("#case-outcome")
        last = page.locator("#timeline tbody tr").last
        assert NEW_SCHOOL in last.inner_text()  # ... at the school named
        assert "recorded by cw801" in page.inner_text("#timeline")
        problems["case with its timeline"] = violations(page)
        page.screenshot(path=str(shots / "case.png"), full_page=True)
        page.goto(f"{web_url}/cases?scope=mine&closed=true")
        assert case_id in page.content() and page.inner_text("#case-count") == "1 case"
        problems["my cases"] = violations(page)
        page.screenshot(path=str(shots / "my-cases.png"), full_page=True)
        assert not {k: v for k, v in problems.items() if v}, problems  # WCAG 2.2 A/AA by axe-core

        # Another LA's caseworker: the case is not found and the search finds nothing.
        sign_in("cw803")
        page.wait_for_url(f"{web_url}/inbox")
        page.goto(case_url)
        page.fill("#reason", "curious")
        response_status = []
        page.on("response", lambda r: response_status.append(r.status) if r.url == case_url else None)
        page.click("button[type=submit] >> text=Open the record")
        page.wait_for_selector("text=There is no such case in your local authority")
        assert 404 in response_status
        page.goto(f"{web_url}/search")
        page.fill("#upn", kid["upn"])
        page.fill("#reason", "curious")
        page.click("button[type=submit] >> text=Search")
        page.wait_for_selector("text=0 found")
        assert case_id not in page.content()
        for url in (f"{web_url}/cases?scope=all&closed=true", f"{web_url}/inbox?show=all"):
            page.goto(url)
            assert case_id not in page.content() and kid["surname"] not in page.content()

        sign_in("ops1")
        page.wait_for_url(f"{web_url}/ops")
        assert page.locator("article.service.ok").count() == 6
        assert not violations(page), violations(page)  # the ops page too: WCAG 2.2 A/AA
        page.screenshot(path=str(shots / "ops.png"), full_page=True)
    finally:
        stop_services(procs)
    log = (tmp_path / "logs" / "web.log").read_text()
    for personal in (kid["upn"], kid["surname"], kid["date_of_birth"]):
        assert personal not in log
