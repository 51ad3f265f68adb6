"""The register of children not in school (Education Act 1996 s.436B-436G), end to end: the services as
processes on the real broker and PostgreSQL. A parent's notice (through the referral API, like any fact)
creates the entry; a provider's return updates it; registering at a school removes it with the URN; a child
on the register who moves to another LA of the deployment appears on that LA's register while the first LA
keeps it (handed over) until the second confirms. No parent's name or address reaches any service's log."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import httpx
import pytest

from devtools.samples import child
from shared.auth import Role, issue_token
from shared.settings import Settings
from tests.e2e.test_education_confirmed import DEPLOYMENT, OTHER_LA, Run, event
from tests.support.kafka import wait_until
from tests.support.pipeline import LA, SIGNING_KEY, running_pipeline

pytestmark = pytest.mark.e2e

PARENT = {
    "name": "Morwenna Quillfeather",
    "home_address": "7 Lantern Row, Bristol",
    "provides_education": True,
    "hours_per_week_educating": 18,
}
TUTOR = {"name": "Tallowmere Tutors", "provider_type": "tuition_centre", "hours_per_week": 4}
HOME = "7 Lantern Row, Bristol"
PERSONAL = (str(PARENT["name"]), str(PARENT["home_address"]), str(TUTOR["name"]))


def notice(kid: dict[str, Any], on: date, **payload: Any) -> dict[str, Any]:
    return event("not-in-school-notice", {**kid, "address": HOME}, on, school=None,
                 notified_on=on.isoformat(), arrangement="home_education", parents=[PARENT],
                 providers=[TUTOR], ehe_reason="mental_health", **payload)  # fmt: skip


class Register:
    """Tracking's register API as an LA's caseworker sees it."""

    def __init__(self, r: Run, la: str) -> None:
        token = issue_token(Settings(signing_key=SIGNING_KEY), f"cw{la}", Role.CASEWORKER, la)
        self.client = httpx.Client(
            base_url=r.p.url("tracking"), headers={"Authorization": f"Bearer {token}"}, timeout=10
        )

    def child_id(self, kid: dict[str, Any]) -> str | None:
        found = self.client.post("/v1/children/search", json={"upn": kid["upn"], "reason": "e2e register"})
        assert found.status_code == 200, found.text
        rows = found.json()
        return str(rows[0]["child_id"]) if rows else None

    def entry(self, kid: dict[str, Any]) -> dict[str, Any] | None:
        child_id = self.child_id(kid)
        if child_id is None:
            return None
        read = self.client.get(f"/v1/register/{child_id}", params={"reason": "e2e register"})
        if read.status_code == 404:
            return None
        assert read.status_code == 200, read.text
        return dict(read.json())

    def wait(self, kid: dict[str, Any], what: str, check: Any) -> dict[str, Any]:
        seen: dict[str, Any] = {}

        def reached() -> bool:
            seen.clear()
            seen.update(self.entry(kid) or {})
            return bool(seen) and bool(check(seen))

        wait_until(reached, timeout_s=90, what=f"{what} (last seen {seen})")
        return seen

    def listed(self, **filters: Any) -> list[str]:
        page = self.client.post("/v1/register/query", json={"reason": "e2e register", **filters})
        assert page.status_code == 200, page.text
        return [i["child_id"] for i in page.json()["items"]]


def test_notice_return_registration_and_a_move_on_the_real_broker(
    kafka_settings: Settings, postgres_url: str, tmp_path: Path
) -> None:
    home, mover = child(61), child(62)
    with running_pipeline(kafka_settings, postgres_url, tmp_path, extra_env=DEPLOYMENT) as pipeline:
        r = Run(pipeline, postgres_url)
        reg801, reg803 = Register(r, LA), Register(r, OTHER_LA)
        try:
            # 1. A parent's notice creates the entry, with the Act's information.
            r.send("team", notice(home, date(2025, 11, 3)))
            added = reg801.wait(home, "the notice's entry", lambda e: e["on_register"])
            assert (added["category"], added["education"]) == ("elective_home_education", "not_yet_assessed")
            assert added["home_address"] == HOME and added["parents"][0]["name"] == PARENT["name"]
            assert [h["change"] for h in added["history"]] == ["added"]
            assert r.case(home)["state"] == "electively_home_educated"
            assert added["child_id"] in reg801.listed(categories=["elective_home_education"])

            # 2. The provider's return updates it.
            r.send("team", event("education-provider-return", home, date(2025, 11, 10), school=None,
                                 returned_on="2025-11-10",
                                 provider={**TUTOR, "hours_per_week": 9}))  # fmt: skip
            updated = reg801.wait(home, "the provider's return", lambda e: len(e["history"]) == 2)
            assert updated["providers"] == [{**TUTOR, "hours_per_week": 9}]
            assert updated["on_register"] and updated["history"][-1]["change"] == "updated"

            # 3. Registering at a school removes it, with the URN.
            r.send("school", event("pupil-registered", home, date(2025, 12, 1), school_urn="108000"))
            left = reg801.wait(home, "off the register", lambda e: not e["on_register"])
            assert (left["left_reason"], left["left_ref"]) == ("registered_at_school", "108000")
            assert added["child_id"] not in reg801.listed()
            assert added["child_id"] in reg801.listed(on_register=False)

            # 4. A child on 801's register moves to 803: on 803's register, and 801 keeps it until 803 has it.
            r.send("team", notice(mover, date(2025, 11, 3)))
            reg801.wait(mover, "the mover's entry", lambda e: e["on_register"])
            r.send("team", event("moved-out-of-area", mover, date(2025, 11, 17), school=None,
                                 new_la_code=OTHER_LA, moved_on="2025-11-17"))  # fmt: skip
            there = reg803.wait(mover, "on 803's register", lambda e: e["on_register"])
            assert there["la_code"] == OTHER_LA and there["category"] == "missing_education"
            assert there["education"] == "unknown"  # 803 has yet to learn what education the child has
            handed = reg801.wait(mover, "handed over by 801", lambda e: e["category"] == "handed_over")
            assert handed["on_register"] and handed["handed_to"] == OTHER_LA
            assert there["child_id"] not in reg801.listed() and handed["child_id"] not in reg803.listed()
            r.processed()
        finally:
            reg801.client.close()
            reg803.client.close()
            r.engine.dispose()
        logs = pipeline.logs()
    for name, log in logs.items():
        for value in (*PERSONAL, home["upn"], mover["upn"]):
            assert value not in log, f"{name} logged personal data"
