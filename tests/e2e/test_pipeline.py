"""The whole pipeline as separate processes on the real broker and PostgreSQL, with a real SMTP server.

A school reports two pupils who left the roll to an unknown destination and could not be found. Each
caseworker alert arrives by email with no personal data; one is acknowledged through its link and its ladder
stops; the other is ignored and steps up to the senior CME officer when five school days pass (simulated time
in the escalation service); once that child is located the escalation is cancelled and nothing more is sent.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text

from devtools.localrun import SERVICES, start_services, stop_services
from devtools.samples import child, sample_event_dict
from shared.auth import Role, issue_token
from shared.db import make_engine
from shared.localstack.net import free_port
from shared.settings import Settings
from tests.support.kafka import wait_until
from tests.support.pipeline import (
    DIRECTORY,
    LA,
    Mailbox,
    body_of,
    set_clock,
    start_smtp,
    wait_until_settled,
)

pytestmark = pytest.mark.e2e

SIGNING_KEY = "pipeline-test-signing-key-0123456789"


@pytest.fixture
def mailbox() -> Iterator[tuple[Mailbox, int]]:
    smtp = start_smtp()
    try:
        yield smtp.box, smtp.port
    finally:
        smtp.stop()


def test_referral_to_alert_ack_and_step_up(
    kafka_settings: Settings, postgres_url: str, mailbox: tuple[Mailbox, int], tmp_path: Path
) -> None:
    box, smtp_port = mailbox
    ports = {s.name: free_port() for s in SERVICES}
    clock = tmp_path / "now.txt"
    set_clock(clock, "2025-11-04T12:00:00+00:00")
    directory = tmp_path / "directory.yaml"
    directory.write_text(DIRECTORY)
    env = {
        **os.environ,
        "CME_KAFKA_BOOTSTRAP": kafka_settings.kafka_bootstrap,
        "CME_TOPIC_PREFIX": kafka_settings.topic_prefix,
        "CME_TOPIC_PARTITIONS": "2",
        "CME_DATABASE_URL": postgres_url,
        "CME_DATA_DIR": str(tmp_path),
        "CME_SIGNING_KEY": SIGNING_KEY,
        "CME_LOG_JSON": "true",
        **{f"CME_{name.upper()}_PORT": str(port) for name, port in ports.items()},
        "CME_NOTIFY_SMTP_PORT": str(smtp_port),
        "CME_NOTIFY_POLL_INTERVAL_S": "0.2",
        "CME_NOTIFY_PUBLIC_BASE_URL": f"http://127.0.0.1:{ports['notify']}",
        "CME_ESCALATION_SIMULATED_TIME_FILE": str(clock),
        "CME_ESCALATION_TICK_S": "0.2",
    }
    port_settings = {f"{name}_port": port for name, port in ports.items()}
    settings = Settings.model_validate({**port_settings, "data_dir": tmp_path})
    bin_dir = Path(sys.executable).parent
    subprocess.run([bin_dir / "cme-notify", "load-directory", str(directory)], env=env, check=True)

    def api_key(*args: str) -> str:
        out = subprocess.run(
            [bin_dir / "cme-referral", "clients", "create", "--la", LA, *args],
            env=env, check=True, capture_output=True, text=True,
        ).stdout  # fmt: skip
        found = re.search(r"api key:\s+(\S+)", out)
        assert found, out
        return found.group(1)

    school_key = api_key("--kind", "school", "--name", "e2e school", "--urn", "108000")
    cme_team_key = api_key("--kind", "agency", "--name", "LA CME team")

    procs = start_services(settings, env, tmp_path / "logs")
    try:
        base_url = f"http://127.0.0.1:{ports['referral']}"
        school = httpx.Client(
            base_url=base_url, headers={"Authorization": f"Bearer {school_key}"}, timeout=10
        )
        cme_team = httpx.Client(
            base_url=base_url, headers={"Authorization": f"Bearer {cme_team_key}"}, timeout=10
        )
        kids = {n: child(n) for n in (1, 2)}
        submitted: list[tuple[httpx.Client, str]] = []
        for kid in kids.values():
            # The school deletes the pupil from its roll; the LA's enquiries then fail to find the child.
            left = sample_event_dict("pupil-left-roll", kid=kid, on=date(2025, 11, 3))
            unknown = sample_event_dict("whereabouts-unknown", kid=kid, on=date(2025, 11, 4), school_urn=None)
            for sender, event in ((school, left), (cme_team, unknown)):
                response = sender.post("/v1/events", json=event)
                assert response.status_code == 202, response.text
                submitted.append((sender, event["event_id"]))

        # Every accepted event is published and processed into a case.
        def all_processed() -> bool:
            return all(c.get(f"/v1/events/{i}").json()["status"] == "processed" for c, i in submitted)

        wait_until(all_processed, timeout_s=60, what="referral status processed")

        # Each child's caseworker alert arrives once, by email, with no personal data.
        wait_until(lambda: len(box.to("caseworker@la.test")) >= 2, timeout_s=60, what="two caseworker emails")
        caseworker_mail = box.to("caseworker@la.test")
        for message in box.messages:
            content = message["Subject"] + body_of(message)
            for kid in kids.values():
                for personal in (
                    kid["upn"],
                    kid["forename"],
                    kid["surname"],
                    kid["date_of_birth"],
                    kid["postcode"],
                ):
                    assert personal not in content

        # The caseworker reads child 1's case: the tracking API shows it, scoped to the LA.
        token = issue_token(Settings(signing_key=SIGNING_KEY), "cw", Role.CASEWORKER, LA)
        tracking = httpx.Client(
            base_url=f"http://127.0.0.1:{ports['tracking']}", headers={"Authorization": f"Bearer {token}"}
        )
        found = tracking.post(
            "/v1/children/search", json={"upn": kids[1]["upn"], "reason": "alert follow-up"}
        )
        assert found.status_code == 200, found.text
        [case] = found.json()
        assert case["state"] == "whereabouts_unknown"
        other_la = issue_token(Settings(signing_key=SIGNING_KEY), "cw2", Role.CASEWORKER, "803")
        hidden = tracking.get(
            f"/v1/children/{case['child_id']}",
            params={"reason": "curious"},
            headers={"Authorization": f"Bearer {other_la}"},
        )
        assert hidden.status_code == 404

        # Acknowledge the alert about child 1 through the one-time link in its email.
        links = {m["Message-ID"]: re.search(r"(http://\S+/v1/ack/\S+)", body_of(m)) for m in caseworker_mail}
        assert all(links.values()), [body_of(m) for m in caseworker_mail]
        case_links = {m["Message-ID"]: body_of(m) for m in caseworker_mail}
        child1_mail = next(mid for mid, body in case_links.items() if case["case_id"] in body)
        link = links[child1_mail]
        assert link
        assert httpx.get(link.group(1)).status_code == 200  # the confirm page changes nothing
        assert httpx.post(link.group(1)).status_code == 200
        # The ack travels notify -> outbox -> Kafka -> escalation: wait until the escalation service has it.
        engine = make_engine(postgres_url)
        with engine.connect() as conn:
            wait_until(
                lambda: conn.execute(
                    text("SELECT count(*) FROM escalation_escalations WHERE acknowledged_step IS NOT NULL")
                ).scalar(),
                timeout_s=60,
                what="the escalation service to record the acknowledgement",
            )
        engine.dispose()

        # Five school days on (end of Tue 11 Nov) the ignored alert steps up; the acknowledged one does not.
        set_clock(clock, "2025-11-12T12:00:00+00:00")
        wait_until(lambda: box.to("senior@la.test"), timeout_s=60, what="senior CME officer email")
        senior_mail = box.to("senior@la.test")
        assert len(senior_mail) == 1
        assert case["case_id"] not in body_of(senior_mail[0])

        # Child 2 is located: the escalation is cancelled; ten more school days pass and nothing else is sent.
        located = sample_event_dict("child-located", kid=kids[2], on=date(2025, 11, 12), school_urn=None)
        assert cme_team.post("/v1/events", json=located).status_code == 202
        wait_until(
            lambda: cme_team.get(f"/v1/events/{located['event_id']}").json()["status"] == "processed",
            timeout_s=60,
            what="child-located processed",
        )
        set_clock(clock, "2025-11-27T12:00:00+00:00")
        wait_until_settled(postgres_url, "2025-11-27T12:00:00+00:00")
        assert box.to("mash@la.test") == []
        assert len(box.to("senior@la.test")) == 1
        # Child 1 was acknowledged with no outcome: its case came back to the caseworker at the close of the
        # 10th school day after the acknowledgement (Tue 18 Nov; open_case_review), once; child 2's was
        # cancelled by the move, not acknowledged, and its new state's clock has not run out.
        reviews = [m for m in box.to("caseworker@la.test") if "open_case_review" in m["Subject"]]
        assert len(reviews) == 1 and case["case_id"] in body_of(reviews[0])
        assert len(box.to("caseworker@la.test")) == 3
    finally:
        stop_services(procs)
    for name in ("referral", "tracking", "escalation", "notify"):
        log = (tmp_path / "logs" / f"{name}.log").read_text()
        for kid in kids.values():
            assert kid["upn"] not in log, f"{name} logged a UPN"
            assert kid["surname"] not in log, f"{name} logged a surname"
