"""School files through the API: a leavers CSV and the Common Transfer File, parsed safely, per row."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, func, select

from devtools.samples import DEMO_LA, DEMO_SCHOOL_URN, make_upn
from services.referral.app import create_app
from services.referral.clients import create_client
from services.referral.models import ClientKind, ReferralOutbox
from shared.settings import Settings
from tests.support.ctf import Ctf, Pupil, School, build_ctf

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


def csv_headers(auth: dict[str, str]) -> dict[str, str]:
    return {**auth, "Content-Type": "text/csv"}


def xml_headers(auth: dict[str, str]) -> dict[str, str]:
    return {**auth, "Content-Type": "application/xml"}


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
    again = await http.post(
        "/v1/imports/leavers-csv", content=LEAVERS_CSV.encode(), headers=csv_headers(school)
    )
    assert (
        again.json()["duplicates"] == 2 and outbox_count(engine) == 2
    )  # a re-sent file publishes nothing new


async def test_leavers_csv_needs_its_columns(files) -> None:  # type: ignore[no-untyped-def]
    http, school, _, _ = files
    r = await http.post(
        "/v1/imports/leavers-csv", content=b"UPN,Surname\r\nX,Y\r\n", headers=csv_headers(school)
    )
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
        "/v1/imports/ctf?deletion_ground=n",
        content=ctf("<LEA>MMM</LEA><Estab>MMMM</Estab>"),
        headers=xml_headers(school),
    )
    assert r.json()["accepted"] == 1
    assert outbox_values(engine)[0]["payload"]["destination"]["ctf_destination"] == "MMMMMMM"  # type: ignore[index]


async def test_ctf_to_a_named_school_uses_ground_a(files) -> None:  # type: ignore[no-untyped-def]
    http, school, _, engine = files
    dest = "<LEA>803</LEA><Estab>2001</Estab><URN>109001</URN>"
    r = await http.post("/v1/imports/ctf", content=ctf(dest), headers=xml_headers(school))
    assert r.json()["accepted"] == 1, r.text
    payload = outbox_values(engine)[0]["payload"]
    assert payload["deletion_ground"] == "a"  # type: ignore[index]
    assert payload["destination"] == {  # type: ignore[index]
        "known": True, "school_urn": "109001", "la_code": "803", "school_estab": "2001"
    }  # fmt: skip


async def test_ctf_from_another_school_is_403(files) -> None:  # type: ignore[no-untyped-def]
    http, school, _, engine = files
    r = await http.post(
        "/v1/imports/ctf?deletion_ground=i", content=ctf(source_urn="108001"), headers=xml_headers(school)
    )
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
    r = await http.post("/v1/imports/ctf?deletion_ground=i", content=body, headers=xml_headers(school))
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


# --- intake fidelity: files made by other people's software -----------------------------------------------

HILL = School(lea=DEMO_LA, estab="2000", name="Hill Primary School", entry_date="2019-09-04")
UUID_TEXT = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
CUMBRIA_UPN = make_upn("909", 3001, 15, 7)  # issued in Cumbria before 2023, kept for life
CARDIFF_UPN = make_upn("681", 2010, 16, 9)  # issued by a Welsh LA


def leavers(*, leaving: str | None = "2025-10-24", reason: str | None = None) -> list[Pupil]:
    """Pupils who left Hill (two after an earlier school elsewhere), as a DfE-built CTF describes them."""
    earlier = School(
        lea="909", estab="3001", name="Fell School", entry_date="2015-09-02", leaving_date="2019-07-19"
    )
    left = School(**{**HILL.__dict__, "leaving_date": leaving, "leaving_reason": reason})
    return [
        Pupil(upn=UPN1, surname="Example", forename="Alex", dob="2014-03-01", sex="F", history=(left,)),
        Pupil(
            upn=UPN2,
            surname="Sample",
            forename="Sam",
            dob="2014-05-02",
            sex="M",
            uln="9276308686",
            history=(left,),
        ),
        Pupil(
            upn=CUMBRIA_UPN,
            surname="Fell",
            forename="Kim",
            dob="2013-12-11",
            sex="F",
            history=(earlier, left),
        ),
        Pupil(upn=CARDIFF_UPN, surname="Taff", forename="Rhys", dob="2014-01-20", sex="M", history=(left,)),
    ]


def hill_ctf(dest_lea: str, dest_estab: str, dest_urn: str | None = None, **kw: Any) -> bytes:
    return build_ctf(
        Ctf(source_lea=DEMO_LA, source_estab="2000", source_urn=DEMO_SCHOOL_URN, dest_lea=dest_lea,
            dest_estab=dest_estab, dest_urn=dest_urn, pupils=kw.pop("pupils", None) or leavers(), **kw)
    )  # fmt: skip


@pytest.mark.parametrize(
    ("lea", "estab", "code", "ground"), [("XXX", "XXXX", "XXXXXXX", "i"), ("MMM", "MMMM", "MMMMMMM", "n")]
)
async def test_an_independently_built_ctf_gives_every_pupil_with_sex_and_leaving_date(  # type: ignore[no-untyped-def]
    files, lea: str, estab: str, code: str, ground: str
) -> None:
    http, school, _, engine = files
    r = await http.post(
        f"/v1/imports/ctf?deletion_ground={ground}", content=hill_ctf(lea, estab), headers=xml_headers(school)
    )
    assert r.status_code == 200 and r.json()["accepted"] == 4, r.text
    values: list[Any] = outbox_values(engine)
    events = {e["payload"]["child"]["upn"]: e["payload"] for e in values}
    assert set(events) == {UPN1, UPN2, CUMBRIA_UPN, CARDIFF_UPN}  # former and Welsh LAs' UPNs too
    assert {upn: p["child"]["sex"] for upn, p in events.items()} == {
        UPN1: "F", UPN2: "M", CUMBRIA_UPN: "F", CARDIFF_UPN: "M"
    }  # fmt: skip
    assert {p["leaving_date"] for p in events.values()} == {"2025-10-24"}  # not the file's DateTime
    assert {str(p["destination"]) for p in events.values()} == {
        str({"known": False, "ctf_destination": code})
    }
    assert events[UPN2]["child"]["uln"] == "9276308686"


async def test_older_files_gender_is_still_read(files) -> None:  # type: ignore[no-untyped-def]
    http, school, _, engine = files
    pupil = Pupil(upn=UPN1, surname="Example", forename="Alex", dob="2014-03-01", sex=None, gender="M",
                  history=(School(**{**HILL.__dict__, "leaving_date": "2025-10-24"}),))  # fmt: skip
    r = await http.post(
        "/v1/imports/ctf?deletion_ground=i",
        content=hill_ctf("XXX", "XXXX", pupils=[pupil]),
        headers=xml_headers(school),
    )
    assert r.json()["accepted"] == 1, r.text
    assert outbox_values(engine)[0]["payload"]["child"]["sex"] == "M"  # type: ignore[index]


async def test_a_pupil_without_a_leaving_date_is_refused_not_given_the_files_date(  # type: ignore[no-untyped-def]
    files,
) -> None:
    http, school, _, engine = files
    pupils = leavers()
    no_date = Pupil(
        upn=make_upn(DEMO_LA, 2000, 14, 3), surname="Nodate", forename="Jo", dob="2014-02-02", history=(HILL,)
    )
    r = await http.post(
        "/v1/imports/ctf?deletion_ground=i",
        content=hill_ctf("XXX", "XXXX", pupils=[*pupils, no_date]),
        headers=xml_headers(school),
    )
    body = r.json()
    assert body["accepted"] == 4 and body["rejected"] == 1, body
    assert body["results"][4]["errors"][0] == {
        "field": "SchoolHistory.School.LeavingDate",
        "rule": "required",
        "message": "the pupil has no LeavingDate at the source school in SchoolHistory",
    }
    assert outbox_count(engine) == 4


async def test_a_file_whose_pupils_never_left_is_not_a_leavers_file(files) -> None:  # type: ignore[no-untyped-def]
    http, school, _, engine = files
    r = await http.post(
        "/v1/imports/ctf?deletion_ground=i",
        content=hill_ctf("XXX", "XXXX", pupils=leavers(leaving=None)),
        headers=xml_headers(school),
    )
    assert r.status_code == 422 and r.json()["errors"][0]["rule"] == "not_a_leavers_file", r.text
    assert outbox_count(engine) == 0


@pytest.mark.parametrize("urn", [None, DEMO_SCHOOL_URN])
async def test_a_results_file_sent_back_to_its_own_school_is_refused_whole(  # type: ignore[no-untyped-def]
    files, urn: str | None
) -> None:
    """As the Multiplication Tables Check builds it: DestSchool is the source school. A ground in the query
    does not turn it into leavers."""
    http, school, _, engine = files
    for query in ("", "?deletion_ground=i"):
        r = await http.post(
            f"/v1/imports/ctf{query}",
            content=hill_ctf(DEMO_LA, "2000", urn, document_name="MTC results"),
            headers=xml_headers(school),
        )
        assert r.status_code == 422, r.text
        [problem] = r.json()["errors"]
        assert (problem["field"], problem["rule"]) == ("Header.DestSchool", "not_a_leavers_file")
        assert "source school itself" in problem["message"]
    assert outbox_count(engine) == 0


async def test_a_destination_named_by_lea_and_estab_keeps_both(files) -> None:  # type: ignore[no-untyped-def]
    http, school, _, engine = files
    r = await http.post("/v1/imports/ctf", content=hill_ctf("803", "4021"), headers=xml_headers(school))
    assert r.json()["accepted"] == 4, r.text
    payload = outbox_values(engine)[0]["payload"]
    assert payload["destination"] == {"known": True, "la_code": "803", "school_estab": "4021"}  # type: ignore[index]
    assert payload["deletion_ground"] == "a"  # type: ignore[index]  # a named school: registered elsewhere


@pytest.mark.parametrize(
    ("route", "content_type"),
    [("/v1/imports/ctf?deletion_ground=i", "text/plain"), ("/v1/imports/ctf?deletion_ground=i", None),
     ("/v1/imports/leavers-csv", "application/json"), ("/v1/imports/leavers-csv", None)],
)  # fmt: skip
async def test_a_file_route_reads_only_its_media_type(  # type: ignore[no-untyped-def]
    files, route: str, content_type: str | None
) -> None:
    http, school, _, engine = files
    body = hill_ctf("XXX", "XXXX") if "ctf" in route else LEAVERS_CSV.encode()
    headers = {**school, **({"Content-Type": content_type} if content_type else {})}
    r = await http.post(route, content=body, headers=headers)
    assert r.status_code == 415 and r.json()["errors"][0]["rule"] == "unsupported_media_type", r.text
    assert outbox_count(engine) == 0
    labelled = "text/xml; charset=utf-8" if "ctf" in route else "application/vnd.ms-excel"
    ok = await http.post(route, content=body, headers={**school, "Content-Type": labelled})
    assert ok.status_code == 200, ok.text


async def test_csv_problems_name_the_column_and_never_echo_the_value(files) -> None:  # type: ignore[no-untyped-def]
    http, school, _, _ = files
    wrong_letter = "B" + UPN1[1:] if UPN1[0] != "B" else "C" + UPN1[1:]
    csv_text = (
        "UPN,Forename,Surname,DOB,Sex,LeavingDate,DeletionGround,DestinationURN,DestinationLA\r\n"
        f"{wrong_letter},Alex,Example,01/03/2014,F,03/11/2025,i,XXXXXXX,\r\n"
        f"{CUMBRIA_UPN},Kim,Fell,11/12/2013,F,03/11/2025,i,XXXXXXX,\r\n"
        f"{UPN2},Sam,Sample,02/05/2014,M,03/11/2025,i,,909\r\n"
    )
    r = await http.post("/v1/imports/leavers-csv", content=csv_text.encode(), headers=csv_headers(school))
    results = r.json()["results"]
    assert [x["outcome"] for x in results] == ["rejected", "accepted", "rejected"], results
    assert results[0]["errors"][0]["field"] == "UPN"
    assert results[2]["errors"][0]["field"] == "DestinationLA"  # Cumbria is no LA now: a destination is
    # Event ids are random UUIDs and may contain "909" by chance: the check is on everything else.
    answer = UUID_TEXT.sub("<id>", r.text).replace(CUMBRIA_UPN, "")
    assert wrong_letter[1:] not in answer and "909" not in answer


async def test_get_on_the_batch_route_is_405(files) -> None:  # type: ignore[no-untyped-def]
    http, school, _, _ = files
    r = await http.get("/v1/events/batch", headers=school)
    assert r.status_code == 405 and r.headers["allow"] == "POST", r.text
    assert (await http.get("/v1/events/not-a-uuid", headers=school)).status_code == 422


async def test_a_reimported_row_with_a_new_destination_points_to_the_correction(files) -> None:  # type: ignore[no-untyped-def]
    http, school, _, engine = files
    first = await http.post(
        "/v1/imports/leavers-csv", content=LEAVERS_CSV.encode(), headers=csv_headers(school)
    )
    event_id = first.json()["results"][0]["event_id"]
    changed = LEAVERS_CSV.replace("i,XXXXXXX,", "i,MMMMMMM,", 1)
    again = await http.post("/v1/imports/leavers-csv", content=changed.encode(), headers=csv_headers(school))
    row = again.json()["results"][0]
    assert (row["outcome"], row["status_code"], row["event_id"]) == ("conflict", 409, event_id)
    assert "/v1/events/{event_id}/correction" in row["errors"][0]["message"]
    fix = {"destination": {"known": False, "ctf_destination": "MMMMMMM"}}
    r = await http.post(f"/v1/events/{event_id}/correction", json=fix, headers=school)
    assert r.status_code == 202, r.text
    assert outbox_count(engine) == 3
