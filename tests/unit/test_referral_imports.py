"""School files through the API: a leavers CSV and the Common Transfer File, parsed safely, per row."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, func, select

from services.referral.app import create_app
from services.referral.clients import create_client
from services.referral.models import ClientKind, ReferralOutbox
from shared.samples import DEMO_LA, DEMO_SCHOOL_URN, make_upn
from shared.settings import Settings

UPN1, UPN2 = make_upn(DEMO_LA, 2000, 14, 1), make_upn(DEMO_LA, 2000, 14, 2)


@pytest.fixture
async def files(
    tmp_path: Path,
) -> AsyncIterator[tuple[httpx.AsyncClient, dict[str, str], dict[str, str], object]]:
    app = create_app(
        Settings(database_url=f"sqlite:///{tmp_path / 'r.db'}", kafka_bootstrap="127.0.0.1:1"),
        background=False,
    )
    engine = app.state.referral.engine
    _, school_key = create_client(
        engine,
        kind=ClientKind.SCHOOL,
        name="Hill",
        la_code=DEMO_LA,
        school_urn=DEMO_SCHOOL_URN,
        school_estab="2000",
    )
    _, agency_key = create_client(engine, kind=ClientKind.AGENCY, name="Health", la_code=DEMO_LA)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://r") as http:
        yield (
            http,
            {"Authorization": f"Bearer {school_key}"},
            {"Authorization": f"Bearer {agency_key}"},
            engine,
        )


def outbox_values(engine: Engine) -> list[dict[str, object]]:
    with Session(engine) as session:
        return [without_nulls(orjson.loads(v)) for v in session.exec(select(ReferralOutbox.value)).all()]


def without_nulls(data: Any) -> Any:
    if isinstance(data, dict):
        return {k: without_nulls(v) for k, v in data.items() if v is not None}
    return data


def outbox_count(engine: Engine) -> int:
    with Session(engine) as session:
        return int(session.exec(select(func.count()).select_from(ReferralOutbox)).one())


LEAVERS_CSV = (
    "\ufeffUPN,Forename,Surname,DOB,Sex,LeavingDate,DeletionGround,DestinationURN,DestinationLA\r\n"
    f"{UPN1},Alex,Example,01/03/2014,F,03/11/2025,i,XXXXXXX,\r\n"
    f"{UPN2},Sam,Example,2014-05-02,M,2025-11-04,(a),108001,801\r\n"
    f"{UPN1},Kim,Example,31/02/2014,F,03/11/2025,i,,\r\n"
    f"{UPN2},Lee,Example,2014-05-02,M,2025-11-04,z,,\r\n"
    ",,,,,,,,\r\n"
)


async def test_leavers_csv_gives_a_result_per_row(files) -> None:  # type: ignore[no-untyped-def]
    http, school, _, engine = files
    r = await http.post(
        "/v1/imports/leavers-csv",
        content=LEAVERS_CSV.encode(),
        headers={**school, "Content-Type": "text/csv"},
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert [(x["index"], x["outcome"]) for x in body["results"]] == [
        (2, "accepted"), (3, "accepted"), (4, "rejected"), (5, "rejected")
    ]  # fmt: skip
    assert body["results"][2]["errors"][0]["field"] == "DOB"
    assert body["results"][3]["errors"][0]["field"] == "DeletionGround"
    events = sorted(outbox_values(engine), key=lambda e: e["payload"]["leaving_date"])  # type: ignore[index]
    assert events[0]["payload"]["destination"] == {"known": False, "ctf_destination": "XXXXXXX"}  # type: ignore[index]
    assert events[1]["payload"]["destination"]["school_urn"] == "108001"  # type: ignore[index]
    assert events[1]["payload"]["deletion_ground"] == "a"  # type: ignore[index]
    again = await http.post("/v1/imports/leavers-csv", content=LEAVERS_CSV.encode(), headers=school)
    assert (
        again.json()["duplicates"] == 2 and outbox_count(engine) == 2
    )  # a re-sent file publishes nothing new


async def test_leavers_csv_needs_its_columns(files) -> None:  # type: ignore[no-untyped-def]
    http, school, _, _ = files
    r = await http.post("/v1/imports/leavers-csv", content=b"UPN,Surname\r\nX,Y\r\n", headers=school)
    assert r.status_code == 422
    assert {e["field"] for e in r.json()["errors"]} == {
        "header.Forename", "header.DOB", "header.LeavingDate", "header.DeletionGround"
    }  # fmt: skip


async def test_files_come_only_from_a_school_client(files) -> None:  # type: ignore[no-untyped-def]
    http, _, agency, _ = files
    r = await http.post("/v1/imports/leavers-csv", content=LEAVERS_CSV.encode(), headers=agency)
    assert r.status_code == 403 and r.json()["errors"][0]["rule"] == "school_client_required"


def ctf(dest: str = "<LEA>XXX</LEA><Estab>XXXX</Estab>", source_urn: str = DEMO_SCHOOL_URN) -> bytes:
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<CTfile>
  <Header>
    <DocumentName>Common Transfer File</DocumentName><CTFversion>25.0</CTFversion>
    <DateTime>2025-11-05T10:00:00</DateTime>
    <SourceSchool><LEA>{DEMO_LA}</LEA><Estab>2000</Estab><URN>{source_urn}</URN>
      <SchoolName>Hill Primary</SchoolName><AcademicYear>2025</AcademicYear></SourceSchool>
    <DestSchool>{dest}</DestSchool>
  </Header>
  <CTFpupilData>
    <Pupil>
      <UPN>{UPN1}</UPN><Surname>Example</Surname><Forename>Alex</Forename><DOB>2014-03-01</DOB><Gender>F</Gender>
      <SchoolHistory>
        <School><LEA>{DEMO_LA}</LEA><Estab>2000</Estab><EntryDate>2018-09-03</EntryDate>
          <LeavingDate>2025-11-03</LeavingDate></School>
      </SchoolHistory>
    </Pupil>
  </CTFpupilData>
</CTfile>""".encode()


async def test_ctf_of_a_lost_pupil_becomes_pupil_left_roll(files) -> None:  # type: ignore[no-untyped-def]
    http, school, _, engine = files
    headers = {**school, "Content-Type": "application/xml"}
    no_ground = await http.post("/v1/imports/ctf", content=ctf(), headers=headers)
    assert no_ground.status_code == 200
    assert no_ground.json()["results"][0]["errors"][0]["field"] == "deletion_ground"
    r = await http.post("/v1/imports/ctf?deletion_ground=i", content=ctf(), headers=headers)
    assert r.status_code == 200 and r.json()["accepted"] == 1, r.text
    [event] = outbox_values(engine)
    assert event["event_type"] == "pupil-left-roll"
    assert event["payload"]["leaving_date"] == "2025-11-03"  # type: ignore[index]
    assert event["payload"]["destination"] == {"known": False, "ctf_destination": "XXXXXXX"}  # type: ignore[index]
    assert event["payload"]["child"]["upn"] == UPN1  # type: ignore[index]


async def test_ctf_to_independent_school_or_abroad(files) -> None:  # type: ignore[no-untyped-def]
    http, school, _, engine = files
    r = await http.post(
        "/v1/imports/ctf?deletion_ground=n", content=ctf("<LEA>MMM</LEA><Estab>MMMM</Estab>"), headers=school
    )
    assert r.json()["accepted"] == 1
    assert outbox_values(engine)[0]["payload"]["destination"]["ctf_destination"] == "MMMMMMM"  # type: ignore[index]


async def test_ctf_to_a_named_school_uses_ground_a(files) -> None:  # type: ignore[no-untyped-def]
    http, school, _, engine = files
    dest = "<LEA>803</LEA><Estab>2001</Estab><URN>109001</URN>"
    r = await http.post("/v1/imports/ctf", content=ctf(dest), headers=school)
    assert r.json()["accepted"] == 1, r.text
    payload = outbox_values(engine)[0]["payload"]
    assert payload["deletion_ground"] == "a"  # type: ignore[index]
    assert payload["destination"] == {"known": True, "school_urn": "109001", "la_code": "803"}  # type: ignore[index]


async def test_ctf_from_another_school_is_403(files) -> None:  # type: ignore[no-untyped-def]
    http, school, _, engine = files
    r = await http.post("/v1/imports/ctf?deletion_ground=i", content=ctf(source_urn="108001"), headers=school)
    assert r.status_code == 403 and r.json()["errors"][0]["field"] == "Header.SourceSchool.URN"
    assert outbox_count(engine) == 0


XML_BOMB = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
  <!ENTITY lol "lol">
  <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
  <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
]>
<CTfile><Header><DocumentName>&lol3;</DocumentName></Header></CTfile>"""

XXE = b"""<?xml version="1.0"?>
<!DOCTYPE CTfile [<!ENTITY secret SYSTEM "file:///etc/passwd">]>
<CTfile><Header><DocumentName>&secret;</DocumentName></Header></CTfile>"""


@pytest.mark.parametrize(
    ("body", "rule"), [(XML_BOMB, "xml_forbidden"), (XXE, "xml_forbidden"), (b"<CTfile><", "xml_format")]
)
async def test_unsafe_or_broken_xml_is_400(files, body: bytes, rule: str) -> None:  # type: ignore[no-untyped-def]
    http, school, _, engine = files
    r = await http.post("/v1/imports/ctf?deletion_ground=i", content=body, headers=school)
    assert r.status_code == 400 and r.json()["errors"][0]["rule"] == rule
    assert "root:" not in r.text and outbox_count(engine) == 0


@pytest.mark.parametrize("body", [b"\r0", b'UPN,Forename\r\n"unclosed', b"UPN\x00,DOB\n1,2"])
async def test_a_file_that_is_not_csv_is_refused_with_422_not_a_server_error(
    files: tuple[httpx.AsyncClient, dict[str, str], dict[str, str], object], body: bytes
) -> None:
    http, school, _, engine = files
    response = await http.post(
        "/v1/imports/leavers-csv", content=body, headers={**school, "Content-Type": "text/csv"}
    )
    assert response.status_code == 422, response.text
    rules = {p["rule"] for p in response.json()["errors"]}
    assert rules <= {"csv_format", "column_required"}
    assert outbox_count(engine) == 0  # type: ignore[arg-type]
