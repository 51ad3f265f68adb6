"""No personal data in logs, URLs or metrics: an end-to-end run with distinctive children, then every
captured service log, every /metrics page, every alert email and every link in them is searched for the
children's names, dates of birth (in the forms people and systems write them), postcodes and UPNs."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import httpx
import pytest

from devtools.samples import sample_event_dict
from shared.auth import Role, issue_token
from shared.settings import Settings
from tests.support.kafka import wait_until
from tests.support.pipeline import CASEWORKER, LA, SIGNING_KEY, Pipeline, body_of, running_pipeline

pytestmark = [pytest.mark.security, pytest.mark.e2e]

KIDS = {
    1: {
        "forename": "Quillon",
        "surname": "Marrowbrook",
        "date_of_birth": "2013-07-19",
        "postcode": "BS7 9QX",
    },
    2: {"forename": "Ottoline", "surname": "Vexworthy", "date_of_birth": "2015-02-27", "postcode": "BS3 4LW"},
}


# A home address, a parent's name and a provider's name on the register (s.436C): never outside the register.
REGISTER_SECRETS = ("12 Thistlewick Mews", "Perpetua Hollowbrand", "Gallowglass Learning")


def personal_strings(kid: dict[str, str]) -> list[str]:
    born = date.fromisoformat(kid["date_of_birth"])
    return [
        kid["upn"], kid["forename"], kid["surname"], kid["postcode"], kid["postcode"].replace(" ", ""),
        born.isoformat(), born.strftime("%d/%m/%Y"), born.strftime("%Y%m%d"),
    ]  # fmt: skip


@pytest.fixture
def pipeline(kafka_settings: Settings, postgres_url: str, tmp_path: Path) -> Iterator[Pipeline]:
    with running_pipeline(kafka_settings, postgres_url, tmp_path) as pipeline:
        yield pipeline


def test_no_personal_data_in_logs_metrics_mail_or_urls(pipeline: Pipeline) -> None:
    kids = {n: pipeline.submit_child(n, **details) for n, details in KIDS.items()}
    pipeline.wait_all_processed()
    pipeline.wait_alerts()

    # Reads that handle personal data: search by UPN and by name + date of birth (in the body), read a child.
    token = issue_token(Settings(signing_key=SIGNING_KEY), "cw", Role.CASEWORKER, LA)
    with httpx.Client(base_url=pipeline.url("tracking"), headers={"Authorization": f"Bearer {token}"}) as api:
        by_upn = api.post("/v1/children/search", json={"upn": kids[1]["upn"], "reason": "scan test"})
        assert by_upn.status_code == 200 and len(by_upn.json()) == 1, by_upn.text
        by_name = api.post(
            "/v1/children/search",
            json={"surname": kids[2]["surname"], "date_of_birth": kids[2]["date_of_birth"], "reason": "scan"},
        )
        assert by_name.status_code == 200 and len(by_name.json()) == 1, by_name.text
        record = api.get(f"/v1/children/{by_upn.json()[0]['child_id']}", params={"reason": "scan test"})
        assert record.status_code == 200 and record.json()["surname"] == kids[1]["surname"]
        # A search that fails validation must not echo the personal data back either.
        refused = api.post("/v1/children/search", json={"upn": kids[1]["upn"] + "XXXXXXXX", "reason": "r"})
        assert refused.status_code == 422 and kids[1]["upn"] not in refused.text

    # Found in another LA (issue 18): a school in LA 803 registers child 1 (the same UPN). Both LAs' review
    # items, the report and a decision (reject: the alert below stays) go through logs, URLs and the audit.
    school_803 = pipeline.create_api_key(
        "--kind", "school", "--name", "803 school", "--urn", "140001", la="803"
    )
    registered = sample_event_dict(
        "pupil-registered", kid=kids[1], on=date(2025, 12, 1), la_code="803", school_urn="140001"
    )
    registered["payload"]["school_urn"] = "140001"
    with pipeline.referral_client(school_803) as school:
        pipeline.submit_with_retry(school, registered)
    cross_texts: list[str] = []
    with httpx.Client(base_url=pipeline.url("tracking"), headers={"Authorization": f"Bearer {token}"}) as api:
        items = wait_until(
            lambda: [i for i in api.get("/v1/review-items").json() if i["kind"] == "cross_la_match"],
            timeout_s=60,
            what="the cross-LA review item",
        )
        cross_texts.append(str(items))
        cross_texts.append(api.get("/v1/reports/cross-la", params={"reason": "scan"}).text)
        decided = api.post(
            f"/v1/review-items/{items[0]['review_id']}/decision",
            json={"decision": "reject", "reason": "scan"},
        )
        assert decided.status_code == 200, decided.text
    audit = pipeline._rows("SELECT reason FROM tracking_read_audit WHERE action LIKE 'cross_la_%'")
    assert audit
    cross_texts += [row[0] for row in audit]

    # The register of children not in school (issue 16): a parent's notice and a provider's return carry the
    # parents' names and addresses and the provider's; the register is listed and read.
    notice = sample_event_dict("not-in-school-notice", kid={**kids[2], "address": REGISTER_SECRETS[0]},
                               on=date(2025, 12, 2), school_urn=None)  # fmt: skip
    notice["payload"]["parents"] = [{"name": REGISTER_SECRETS[1], "home_address": REGISTER_SECRETS[0]}]
    notice["payload"]["providers"] = [{"name": REGISTER_SECRETS[2], "provider_type": "individual_tutor"}]
    provider_return = sample_event_dict("education-provider-return", kid=kids[2], on=date(2025, 12, 3),
                                        school_urn=None)  # fmt: skip
    provider_return["payload"]["provider"] = {
        "name": REGISTER_SECRETS[2],
        "provider_type": "individual_tutor",
    }
    with pipeline.referral_client(pipeline.team_key) as team:
        pipeline.submit_with_retry(team, notice)
        pipeline.submit_with_retry(team, provider_return)
    with httpx.Client(base_url=pipeline.url("tracking"), headers={"Authorization": f"Bearer {token}"}) as api:

        def entry() -> dict[str, object] | None:
            page = api.post(
                "/v1/register/query", json={"reason": "scan", "surname": kids[2]["surname"]}
            ).json()
            if not page["items"]:
                return None
            read = api.get(f"/v1/register/{page['items'][0]['child_id']}", params={"reason": "scan"}).json()
            types = [h["event_type"] for h in read["history"]]
            return read if "education-provider-return" in types else None

        read = wait_until(entry, timeout_s=60, what="the register entry with the provider's return")
        assert read["parents"] and read["providers"]

    # Acknowledge one alert through its link: the link itself is a URL that must carry nothing personal.
    mail = pipeline.smtp.box.to(CASEWORKER)
    links = [m.group(1) for msg in mail if (m := re.search(r"(http://\S+/v1/ack/\S+)", body_of(msg)))]
    assert links and httpx.post(links[0]).status_code == 200

    pages = {
        f"{name} /metrics": httpx.get(f"{pipeline.url(name)}/metrics").text for name in pipeline.services
    }
    assert all("cme_" in page for page in pages.values())
    corpus = {
        **{f"{name} log": text for name, text in pipeline.logs().items()},
        **pages,
        **{
            f"email {i}": msg["Subject"] + "\n" + body_of(msg)
            for i, msg in enumerate(pipeline.smtp.box.messages)
        },
        "links": "\n".join(links),
        "cross-LA review items, report and audit": "\n".join(cross_texts),
    }
    assert all(corpus.values())
    found = [
        (where, secret)
        for where, text in corpus.items()
        for secret in [*(s for kid in kids.values() for s in personal_strings(kid)), *REGISTER_SECRETS]
        if secret.lower() in text.lower()
    ]
    assert not found, f"personal data found: {found}"
